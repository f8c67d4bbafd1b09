//! The checker's model of a history: one registry of messages, and who removed what, and when.

use super::history::{Detail, Msg, Op, Outcome};
use roaming_proto::history::v1 as hpb;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Watermark-type removals of one user in one conversation: (time, seq) steps, as a prefix
/// maximum over time.
#[derive(Default, Clone)]
pub struct Steps(Vec<(u64, i64)>);

impl Steps {
    fn finish(&mut self) {
        self.0.sort();
        let mut best = 0;
        for s in &mut self.0 {
            best = best.max(s.1);
            s.1 = best;
        }
    }

    /// The highest seq reached by a step strictly before `t`.
    pub fn before(&self, t: u64) -> i64 {
        let i = self.0.partition_point(|(time, _)| *time < t);
        if i == 0 { 0 } else { self.0[i - 1].1 }
    }
}

#[derive(Default)]
pub struct Report {
    pub violations: Vec<String>,
    pub checked: BTreeMap<&'static str, u64>,
}

impl Report {
    pub fn check(&mut self, what: &'static str, ok: bool, detail: impl FnOnce() -> String) {
        *self.checked.entry(what).or_default() += 1;
        if !ok && self.violations.len() < 10_000 {
            self.violations.push(format!("{what}: {}", detail()));
        }
    }
}

pub struct Checker<'a> {
    pub ops: &'a [Op],
    /// msg_id → message.
    pub registry: HashMap<i64, Msg>,
    /// key → seq → msg_id.
    pub by_seq: HashMap<String, BTreeMap<i64, i64>>,
    /// msg_id → (append invoke, append complete); complete is u64::MAX when unknown.
    pub appended: HashMap<i64, (u64, u64)>,
    /// (user, key) → watermark removals: possible (by invoke) and definite (by complete).
    pub possible_floor: HashMap<(String, String), Steps>,
    definite_floor: HashMap<(String, String), Steps>,
    /// (user, msg_id) → earliest invoke of a removal by id that may cover it / earliest
    /// completion of one that did.
    possible_id: HashMap<(String, i64), u64>,
    definite_id: HashMap<(String, i64), u64>,
    /// (user, key) → (invoke, complete) of successful RemoveConversation FOR_ME calls.
    pub conversation_removals: HashMap<(String, String), Vec<(u64, u64)>>,
    /// key → (invoke, complete) of every acknowledged message, newest first.
    pub appends_by_key: HashMap<String, Vec<(u64, u64)>>,
}

impl<'a> Checker<'a> {
    pub fn new(ops: &'a [Op], report: &mut Report) -> Self {
        let mut c = Checker {
            ops,
            registry: HashMap::new(),
            by_seq: HashMap::new(),
            appended: HashMap::new(),
            possible_floor: HashMap::new(),
            definite_floor: HashMap::new(),
            possible_id: HashMap::new(),
            definite_id: HashMap::new(),
            conversation_removals: HashMap::new(),
            appends_by_key: HashMap::new(),
        };
        c.build_registry(report);
        c.build_removals(report);
        for op in ops {
            if let Detail::RemoveConversation { key, .. } = &op.detail {
                if op.outcome == Outcome::Ok {
                    c.conversation_removals
                        .entry((op.user.clone(), key.clone()))
                        .or_default()
                        .push((op.invoke, op.complete));
                }
            }
        }
        for (key, seqs) in &c.by_seq {
            let v = seqs
                .values()
                .rev()
                .filter_map(|id| c.appended.get(id).copied())
                .collect();
            c.appends_by_key.insert(key.clone(), v);
        }
        c
    }

    fn observe(&mut self, m: &Msg, report: &mut Report) {
        match self.registry.get(&m.msg_id) {
            Some(known) => report.check(
                "a msg_id always denotes the same message",
                known == m,
                || format!("{known:?} vs {m:?}"),
            ),
            None => {
                self.registry.insert(m.msg_id, m.clone());
            }
        }
        let slot = self
            .by_seq
            .entry(m.key.clone())
            .or_default()
            .entry(m.seq)
            .or_insert(m.msg_id);
        report.check(
            "one message per (conversation, seq)",
            *slot == m.msg_id,
            || format!("{} seq {} is {} and {}", m.key, m.seq, slot, m.msg_id),
        );
    }

    fn build_registry(&mut self, report: &mut Report) {
        let unknown_appends = self
            .ops
            .iter()
            .any(|o| matches!(o.detail, Detail::Append { .. }) && o.outcome == Outcome::Unknown);
        let mut by_cid: HashMap<(String, String, String), i64> = HashMap::new();
        for op in self.ops {
            if let Detail::Append {
                batch,
                results,
                retry_of,
            } = &op.detail
            {
                if op.outcome != Outcome::Ok {
                    continue;
                }
                report.check(
                    "an append answers one result per message",
                    results.len() == batch.len(),
                    || format!("{} results for {} messages", results.len(), batch.len()),
                );
                let mut first_in_batch: HashMap<&(String, String, String), i64> = HashMap::new();
                for ((m, dup), b) in results.iter().zip(batch) {
                    self.observe(m, report);
                    report.check(
                        "an append result is the message sent",
                        (&m.key, &m.sender, &m.client_msg_id) == (&b.0, &b.1, &b.2),
                        || format!("{m:?} for {b:?}"),
                    );
                    let entry = self.appended.entry(m.msg_id).or_insert((u64::MAX, 0));
                    entry.0 = entry.0.min(op.invoke);
                    if !dup {
                        entry.1 = op.complete;
                    }
                    let original = *by_cid.entry(b.clone()).or_insert(m.msg_id);
                    report.check(
                        "one stored message per (conversation, sender, client_msg_id)",
                        original == m.msg_id,
                        || format!("{b:?} stored as {original} and {}", m.msg_id),
                    );
                    if let Some(&first) = first_in_batch.get(b) {
                        report.check(
                            "a repeat within a batch is a duplicate of the first",
                            *dup && first == m.msg_id,
                            || format!("{b:?}"),
                        );
                    }
                    first_in_batch.entry(b).or_insert(m.msg_id);
                    if retry_of.is_some() {
                        report.check("a retry returns the original as a duplicate", *dup, || {
                            format!("retry of {b:?} stored anew as {}", m.msg_id)
                        });
                    }
                }
            }
        }
        // A message whose first acknowledgement was a duplicate (its original's ack was
        // lost) has no known completion: treat it as appended at its first sighting.
        for v in self.appended.values_mut() {
            if v.1 == 0 {
                v.1 = v.0;
            }
        }
        for op in self.ops {
            let msgs: Vec<&Msg> = match &op.detail {
                Detail::Read { messages, .. } => messages.iter().collect(),
                Detail::List { entries } => entries.iter().map(|e| &e.1).collect(),
                _ => continue,
            };
            for m in msgs {
                self.observe(m, report);
                report.check(
                    "every message read was acknowledged",
                    self.appended.contains_key(&m.msg_id) || unknown_appends,
                    || format!("{m:?} read by {} was never acknowledged", op.user),
                );
            }
        }
    }

    /// The highest seq of `key` whose message satisfies `f`.
    fn max_seq(&self, key: &str, f: impl Fn(&Msg, (u64, u64)) -> bool) -> i64 {
        let Some(seqs) = self.by_seq.get(key) else {
            return 0;
        };
        seqs.iter()
            .rev()
            .find(|(_, id)| {
                let m = &self.registry[id];
                // A message seen but never acknowledged (its append's outcome is unknown)
                // may have been stored any time: possibly early, surely only at the end.
                f(m, self.appended.get(id).copied().unwrap_or((0, u64::MAX)))
            })
            .map(|(s, _)| *s)
            .unwrap_or(0)
    }

    fn build_removals(&mut self, report: &mut Report) {
        let mut removed_count: HashMap<(String, i64), u32> = HashMap::new();
        for op in self.ops {
            if op.outcome == Outcome::Fail {
                continue;
            }
            let ok = op.outcome == Outcome::Ok;
            let complete = if ok { op.complete } else { u64::MAX };
            match &op.detail {
                Detail::RemoveBefore { key, time } => {
                    let t = *time;
                    let possible = self.max_seq(key, |m, (inv, _)| m.time <= t && inv < complete);
                    let definite =
                        self.max_seq(key, |m, (_, done)| m.time <= t && done < op.invoke);
                    let k = (op.user.clone(), key.clone());
                    self.possible_floor
                        .entry(k.clone())
                        .or_default()
                        .0
                        .push((op.invoke, possible));
                    if ok {
                        self.definite_floor
                            .entry(k)
                            .or_default()
                            .0
                            .push((op.complete, definite));
                    }
                }
                Detail::RemoveConversation { key, delete: true } => {
                    let possible = self.max_seq(key, |_, (inv, _)| inv < complete);
                    let definite = self.max_seq(key, |_, (_, done)| done < op.invoke);
                    let k = (op.user.clone(), key.clone());
                    self.possible_floor
                        .entry(k.clone())
                        .or_default()
                        .0
                        .push((op.invoke, possible));
                    if ok {
                        self.definite_floor
                            .entry(k)
                            .or_default()
                            .0
                            .push((op.complete, definite));
                    }
                }
                Detail::RemoveIds { key, ids, statuses } => {
                    if ok {
                        report.check(
                            "a removal answers one status per id",
                            statuses.len() == ids.len(),
                            || format!("{statuses:?} for {ids:?}"),
                        );
                    }
                    // An id repeated in one call gets the same status twice (README).
                    let mut counted: HashSet<i64> = HashSet::new();
                    for (i, id) in ids.iter().enumerate() {
                        let own = self.registry.get(id).is_some_and(|m| &m.key == key);
                        let status = statuses.get(i).copied().unwrap_or(0);
                        if ok {
                            let expected_found = status != hpb::RemovalStatus::NotFound as i32;
                            report.check(
                                "NOT_FOUND exactly for ids of other conversations",
                                own == expected_found,
                                || format!("{id} in {key}: status {status}"),
                            );
                        }
                        if !own {
                            continue;
                        }
                        let k = (op.user.clone(), *id);
                        let p = self.possible_id.entry(k.clone()).or_insert(u64::MAX);
                        *p = (*p).min(op.invoke);
                        if ok {
                            let d = self.definite_id.entry(k.clone()).or_insert(u64::MAX);
                            *d = (*d).min(op.complete);
                            if status == hpb::RemovalStatus::Removed as i32 && counted.insert(*id) {
                                *removed_count.entry(k).or_default() += 1;
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        for ((user, id), n) in removed_count {
            report.check("REMOVED at most once per (user, message)", n <= 1, || {
                format!("{user} got REMOVED {n} times for {id}")
            });
        }
        for s in self.possible_floor.values_mut() {
            s.finish();
        }
        for s in self.definite_floor.values_mut() {
            s.finish();
        }
    }

    pub fn definitely_removed_before(&self, user: &str, m: &Msg, t: u64) -> bool {
        let k = (user.to_owned(), m.key.clone());
        self.definite_floor
            .get(&k)
            .is_some_and(|s| m.seq <= s.before(t))
            || self
                .definite_id
                .get(&(user.to_owned(), m.msg_id))
                .is_some_and(|d| *d < t)
    }

    pub fn possibly_removed_before(&self, user: &str, m: &Msg, t: u64) -> bool {
        let k = (user.to_owned(), m.key.clone());
        self.possible_floor
            .get(&k)
            .is_some_and(|s| m.seq <= s.before(t))
            || self
                .possible_id
                .get(&(user.to_owned(), m.msg_id))
                .is_some_and(|p| *p < t)
    }

    /// The highest seq of `key` certainly stored before `t`.
    pub fn stored_before(&self, key: &str, t: u64) -> i64 {
        self.max_seq(key, |_, (_, done)| done < t)
    }
}
