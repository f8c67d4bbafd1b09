//! The checker's pass over a history: every read, list and removal, then no resurrection.

use super::checker::{Checker, Report};
use super::history::{Detail, Outcome, Start};
use super::support::is_member;
use roaming_proto::history::v1 as hpb;
use std::collections::{BTreeMap, HashMap, HashSet};
use tonic::Code;

/// A union of closed seq intervals.
#[derive(Default)]
struct IntervalSet(BTreeMap<i64, i64>);

impl IntervalSet {
    fn insert(&mut self, mut lo: i64, mut hi: i64) {
        if lo > hi {
            return;
        }
        // Merge with overlapping or adjacent intervals.
        let overlapping: Vec<(i64, i64)> = self
            .0
            .range(..=hi.saturating_add(1))
            .rev()
            .take_while(|(_, h)| **h >= lo.saturating_sub(1))
            .map(|(l, h)| (*l, *h))
            .collect();
        for (l, h) in overlapping {
            self.0.remove(&l);
            lo = lo.min(l);
            hi = hi.max(h);
        }
        self.0.insert(lo, hi);
    }

    fn contains(&self, x: i64) -> bool {
        self.0.range(..=x).next_back().is_some_and(|(_, h)| *h >= x)
    }
}

impl Checker<'_> {
    pub fn run(&self, report: &mut Report) -> Figures {
        let mut fig = Figures::default();
        // (user, key) → events for the resurrection check: (time, 0 = hidden interval,
        // 1 = visible) ...
        type Event = (u64, u8, i64, i64, usize);
        let mut events: HashMap<(String, String), Vec<Event>> = HashMap::new();
        let mut chains: HashMap<usize, (bool, i64)> = HashMap::new();
        let mut chain_ids: HashMap<usize, HashSet<i64>> = HashMap::new();

        for (index, op) in self.ops.iter().enumerate() {
            match &op.detail {
                Detail::Read {
                    key,
                    forward,
                    start,
                    messages,
                    pages,
                    complete,
                    chain,
                } => {
                    let member = !key.starts_with("g:") || is_member(&op.user);
                    if !member {
                        report.check(
                            "an outsider's read of a group is PERMISSION_DENIED",
                            op.code == Some(Code::PermissionDenied),
                            || format!("{} reading {key}: {:?}", op.user, op.code),
                        );
                        continue;
                    }
                    report.check(
                        "reads succeed (or end with a retryable code)",
                        op.outcome != Outcome::Fail,
                        || format!("{} reading {key}: {:?}", op.user, op.code),
                    );
                    fig.reads += 1;
                    fig.messages_read += messages.len() as u64;
                    // Order within the call and across the chain.
                    let (dir, mut last) = *chains
                        .entry(*chain)
                        .or_insert((*forward, if *forward { 0 } else { i64::MAX }));
                    report.check("a chain keeps its direction", dir == *forward, String::new);
                    let seen = chain_ids.entry(*chain).or_default();
                    for m in messages {
                        report.check(
                            "seq strictly monotone in the read's direction (pages and cursors)",
                            if *forward { m.seq > last } else { m.seq < last },
                            || format!("{} {key}: {} after {last}", op.user, m.seq),
                        );
                        report.check("no message twice in a read", seen.insert(m.msg_id), || {
                            format!("{} {key}: {} twice", op.user, m.msg_id)
                        });
                        report.check(
                            "a read returns only its conversation's messages",
                            &m.key == key,
                            || format!("{m:?} in a read of {key}"),
                        );
                        last = m.seq;
                    }
                    chains.insert(*chain, (*forward, last));
                    for (i, (n, end)) in pages.iter().enumerate() {
                        report.check("no empty page that is not the end", *n > 0 || *end, || {
                            format!("{} {key} page {i}", op.user)
                        });
                    }
                    // Visible observations.
                    let ev = events.entry((op.user.clone(), key.clone())).or_default();
                    for m in messages {
                        report.check(
                            "a message removed by its reader never comes back (history)",
                            !self.definitely_removed_before(&op.user, m, op.invoke),
                            || {
                                format!(
                                    "{} read {} ({key} seq {}) after removing it",
                                    op.user, m.msg_id, m.seq
                                )
                            },
                        );
                        ev.push((op.invoke, 0, m.seq, m.seq, index));
                    }
                    if !complete {
                        continue;
                    }
                    // What the read says is not there (for its reader): gaps between what it
                    // returned, and beyond the last message when it reached the end.
                    let is_end = pages.last().is_some_and(|p| p.1);
                    let stored = self.stored_before(key, op.invoke);
                    let mut hidden: Vec<(i64, i64)> = Vec::new();
                    let seqs: Vec<i64> = messages.iter().map(|m| m.seq).collect();
                    if *forward {
                        let mut prev = match start {
                            Start::End => 0,
                            Start::After(s) => *s,
                        };
                        for s in &seqs {
                            hidden.push((prev + 1, s - 1));
                            prev = *s;
                        }
                        if is_end {
                            hidden.push((prev + 1, stored));
                        }
                    } else {
                        let mut prev = match start {
                            Start::End => stored + 1,
                            Start::After(s) => *s,
                        };
                        if matches!(start, Start::End) {
                            // Above the first message: only what was surely stored.
                            if let Some(first) = seqs.first() {
                                hidden.push((first + 1, stored));
                                prev = *first;
                            }
                        }
                        for s in seqs.iter().skip(usize::from(matches!(start, Start::End))) {
                            hidden.push((s + 1, prev - 1));
                            prev = *s;
                        }
                        if is_end {
                            hidden.push((1, prev - 1));
                        }
                    }
                    for (lo, hi) in hidden {
                        if lo > hi {
                            continue;
                        }
                        ev.push((op.complete, 1, lo, hi, index));
                        self.explain_hidden(&op.user, key, lo, hi, op.complete, report, &mut fig);
                    }
                }
                Detail::List { entries } => {
                    if op.outcome != Outcome::Ok {
                        continue;
                    }
                    fig.lists += 1;
                    for (key, m, activity) in entries {
                        fig.list_entries += 1;
                        report.check(
                            "a listed last_message belongs to its conversation",
                            &m.key == key,
                            || format!("{} listed {key} with {m:?}", op.user),
                        );
                        report.check(
                            "an outsider never lists the group",
                            !key.starts_with("g:") || is_member(&op.user),
                            || format!("{} listed {key}", op.user),
                        );
                        report.check(
                            "last_activity_ms is at least last_message's time",
                            *activity >= m.time,
                            || format!("{key}: {activity} < {}", m.time),
                        );
                        report.check(
                            "a message removed by its reader never comes back (list)",
                            !self.definitely_removed_before(&op.user, m, op.invoke),
                            || format!("{} listed removed {} in {key}", op.user, m.msg_id),
                        );
                        events
                            .entry((op.user.clone(), key.clone()))
                            .or_default()
                            .push((op.invoke, 0, m.seq, m.seq, index));
                        // A conversation removed for me stays off the list until a newer
                        // message may have arrived: one committed after the removal began
                        // and before the list ended.
                        let removals = self
                            .conversation_removals
                            .get(&(op.user.clone(), key.clone()))
                            .map(Vec::as_slice)
                            .unwrap_or(&[]);
                        for (r_invoke, r_complete) in removals {
                            if *r_complete >= op.invoke {
                                continue;
                            }
                            let newer = self
                                .appends_by_key
                                .get(key)
                                .into_iter()
                                .flatten()
                                .any(|(inv, done)| *done > *r_invoke && *inv < op.complete);
                            report.check(
                                "a conversation removed for me stays off my list until a newer message",
                                newer,
                                || format!("{} listed {key} after removing it", op.user),
                            );
                        }
                    }
                }
                Detail::RemoveIds { key, ids, statuses } if op.outcome == Outcome::Ok => {
                    for (id, status) in ids.iter().zip(statuses) {
                        let Some(m) = self.registry.get(id) else {
                            continue;
                        };
                        if &m.key != key {
                            continue;
                        }
                        if *status == hpb::RemovalStatus::Removed as i32 {
                            report.check(
                                "REMOVED never for a message already removed",
                                !self.definitely_removed_before(&op.user, m, op.invoke),
                                || format!("{} removed {id} twice", op.user),
                            );
                        }
                    }
                }
                _ => {}
            }
            if !matches!(op.detail, Detail::Read { .. }) {
                let outsider_group = match &op.detail {
                    Detail::RemoveIds { key, .. }
                    | Detail::RemoveBefore { key, .. }
                    | Detail::RemoveConversation { key, .. } => {
                        key.starts_with("g:") && !is_member(&op.user)
                    }
                    _ => false,
                };
                let fine = if outsider_group {
                    op.code == Some(Code::PermissionDenied)
                } else {
                    op.outcome != Outcome::Fail
                };
                report.check(
                    "calls succeed; an outsider's calls on the group are PERMISSION_DENIED",
                    fine,
                    || format!("{} {}: {:?}", op.process, op.kind(), op.code),
                );
            }
        }

        // No resurrection, model-free: per user and conversation, in time order, a visible
        // observation must not fall in what an earlier-completed read saw hidden.
        for ((user, key), mut ev) in events {
            ev.sort_by_key(|e| (e.0, e.1));
            let mut set = IntervalSet::default();
            for (t, kind, lo, hi, index) in ev {
                if kind == 1 {
                    set.insert(lo, hi);
                } else {
                    report.check(
                        "once seen removed on any device, never seen again",
                        !set.contains(lo),
                        || {
                            format!(
                                "{user} saw {key} seq {lo} again at {t} µs ({})",
                                self.ops[index].process
                            )
                        },
                    );
                }
            }
        }
        fig
    }

    #[allow(clippy::too_many_arguments)]
    fn explain_hidden(
        &self,
        user: &str,
        key: &str,
        lo: i64,
        hi: i64,
        t: u64,
        report: &mut Report,
        fig: &mut Figures,
    ) {
        let floor = self
            .possible_floor
            .get(&(user.to_owned(), key.to_owned()))
            .map_or(0, |s| s.before(t));
        fig.hidden_seqs += (hi - lo + 1) as u64;
        let Some(seqs) = self.by_seq.get(key) else {
            return;
        };
        let from = lo.max(floor + 1);
        if from > hi {
            return;
        }
        for (seq, id) in seqs.range(from..=hi) {
            let m = &self.registry[id];
            report.check(
                "a message missing from a read was removed by its reader (no gap, no loss)",
                self.possibly_removed_before(user, m, t),
                || {
                    format!(
                        "{user}: {key} seq {seq} ({id}) missing from a read completed at {t} µs"
                    )
                },
            );
        }
    }
}

#[derive(Default, Debug)]
pub struct Figures {
    pub reads: u64,
    pub messages_read: u64,
    pub hidden_seqs: u64,
    pub lists: u64,
    pub list_entries: u64,
}
