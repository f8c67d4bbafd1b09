//! Consistency checker (issue 7, item 6), Jepsen-style.
//!
//! Many concurrent clients — a gateway appending (with retries of earlier batches), and every
//! user on two "devices" (separate connections) paging forward and backward by following
//! cursors, listing conversations, removing messages by id and by time, and removing
//! conversations for themselves (with and without their messages) — on a few peer
//! conversations and a group. Every call is recorded with its invocation and completion time
//! and its outcome (ok / fail / unknown). A checker then goes through the whole history:
//!
//! - registry: one message per msg_id, per (conversation, seq) and per (conversation, sender,
//!   client_msg_id); retries return the original id and seq; the database holds exactly the
//!   acknowledged messages, gapless per conversation;
//! - every read: seq strictly monotone in the read's direction, across pages and across calls
//!   following a cursor, no duplicate, each message labelled as its reader sees it, no empty
//!   page that is not the end;
//! - one-way removal: a message definitely removed by a user before a read began is never in
//!   it (history or the list's last_message); a message a read skipped (a gap between what it
//!   returned, or what an `is_end` says is not there) is explained by a removal of that user
//!   that may have covered it — so nothing acknowledged is missing for anyone else;
//! - no resurrection: once any device of a user saw a message hidden, no read of that user
//!   invoked later, on any device, returns it;
//! - the conversation list: last_message belongs to the conversation and is visible; a
//!   conversation removed for me stays off the list until a newer message may have arrived;
//!   after quiescence, last_message is exactly the newest visible message;
//! - removal statuses: REMOVED at most once per (user, message), never for a message that was
//!   already removed, NOT_FOUND only for ids of other conversations.
//!
//! Bounded: 10 s of load by default (up to 30 s on a busy machine, until 300 messages were
//! appended), 60 s with `ROAMING_RELIABILITY_LONG=1` (up to 180 s, 2,000 messages).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use roaming_proto::common::v1::{ConversationRef, ConversationType, Message};
use roaming_proto::conversation::v1 as cpb;
use roaming_proto::history::v1 as hpb;
use roaming_testkit::{TestApp, conv, new_message, peer};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::Code;

const USERS: [&str; 6] = ["u0", "u1", "u2", "u3", "u4", "u5"];
const PEERS: [(&str, &str); 5] = [
    ("u0", "u1"),
    ("u0", "u2"),
    ("u1", "u2"),
    ("u3", "u4"),
    ("u3", "u5"),
];
const GROUP: &str = "grp";
const MEMBERS: [&str; 5] = ["u0", "u1", "u2", "u3", "u4"];
const DEVICES: usize = 2;
const WRITERS: usize = 3;
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Set when the load phase ends.
type Stop = Arc<AtomicBool>;

fn peer_key(a: &str, b: &str) -> String {
    if a <= b {
        format!("p:{a}:{b}")
    } else {
        format!("p:{b}:{a}")
    }
}

/// The storage key of `c` as `viewer` names it.
fn key_of(viewer: &str, c: &ConversationRef) -> String {
    if c.r#type == ConversationType::Peer as i32 {
        peer_key(viewer, &c.id)
    } else {
        format!("g:{}", c.id)
    }
}

/// `viewer`'s name for the conversation `key`.
fn ref_of(viewer: &str, key: &str) -> ConversationRef {
    match key.strip_prefix("p:") {
        Some(rest) => {
            let (a, b) = rest.split_once(':').unwrap();
            peer(if a == viewer { b } else { a })
        }
        None => conv(ConversationType::Group, &key[2..]),
    }
}

/// A message as observed (acknowledged or read).
#[derive(Debug, Clone, PartialEq)]
struct Msg {
    msg_id: i64,
    key: String,
    seq: i64,
    sender: String,
    client_msg_id: String,
    body: Vec<u8>,
    time: i64,
}

impl Msg {
    fn of(viewer: &str, m: &Message) -> (Self, Option<String>) {
        let c = m.conversation.clone().unwrap_or_default();
        let key = key_of(viewer, &c);
        // The label a reader gets must be its own view of the conversation.
        let label_ok = c == ref_of(viewer, &key);
        (
            Self {
                msg_id: m.msg_id.parse().unwrap_or(-1),
                key,
                seq: m.seq,
                sender: m.sender.clone(),
                client_msg_id: m.client_msg_id.clone(),
                body: m.body.clone(),
                time: m.server_time_ms,
            },
            (!label_ok).then(|| format!("{viewer} got {} labelled {c:?}", m.msg_id)),
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Ok,
    Fail,
    Unknown,
}

/// Where a read starts: an end, or right after a seq (a cursor's position).
#[derive(Debug, Clone, Copy)]
enum Start {
    End,
    After(i64),
}

#[derive(Debug, Clone)]
enum Detail {
    Append {
        /// (key, sender, client_msg_id) per message.
        batch: Vec<(String, String, String)>,
        results: Vec<(Msg, bool)>,
        retry_of: Option<usize>,
    },
    Read {
        key: String,
        forward: bool,
        start: Start,
        messages: Vec<Msg>,
        /// (messages, is_end) per page.
        pages: Vec<(usize, bool)>,
        /// The stream ended normally (not cut by an error).
        complete: bool,
        /// Part of a chain following cursors: the chain's id.
        chain: usize,
    },
    List {
        entries: Vec<(String, Msg, i64)>,
    },
    RemoveIds {
        key: String,
        ids: Vec<i64>,
        statuses: Vec<i32>,
    },
    RemoveBefore {
        key: String,
        time: i64,
    },
    RemoveConversation {
        key: String,
        delete: bool,
    },
}

#[derive(Debug, Clone)]
struct Op {
    process: String,
    user: String,
    invoke: u64,
    complete: u64,
    outcome: Outcome,
    code: Option<Code>,
    detail: Detail,
}

impl Op {
    fn kind(&self) -> &'static str {
        match &self.detail {
            Detail::Append { retry_of: None, .. } => "append",
            Detail::Append { .. } => "append (retry)",
            Detail::Read { forward: true, .. } => "fetch forward",
            Detail::Read { .. } => "fetch backward",
            Detail::List { .. } => "list",
            Detail::RemoveIds { .. } => "remove by id",
            Detail::RemoveBefore { .. } => "remove before time",
            Detail::RemoveConversation { delete: true, .. } => "remove conversation +messages",
            Detail::RemoveConversation { .. } => "remove conversation",
        }
    }
}

/// The recorded history.
struct History {
    started: Instant,
    ops: Mutex<Vec<Op>>,
    /// Acknowledged messages, for workers to pick ids and times from: key → msgs.
    known: Mutex<HashMap<String, Vec<Msg>>>,
    /// Messages labelled with another view of their conversation than their reader's.
    mislabelled: Mutex<Vec<String>>,
}

impl History {
    fn now(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    fn push(&self, op: Op) {
        self.ops.lock().unwrap().push(op);
    }
}

fn outcome_of(r: &Result<(), tonic::Status>) -> (Outcome, Option<Code>) {
    match r {
        Ok(()) => (Outcome::Ok, None),
        Err(s) => match s.code() {
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
                (Outcome::Unknown, Some(s.code()))
            }
            c => (Outcome::Fail, Some(c)),
        },
    }
}

async fn timed<T>(
    f: impl std::future::Future<Output = Result<T, tonic::Status>>,
) -> Result<T, tonic::Status> {
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(r) => r,
        Err(_) => Err(tonic::Status::deadline_exceeded("client-side timeout")),
    }
}

// ---------------------------------------------------------------------------------------
// Workers.

async fn writer(app: Arc<TestApp>, history: Arc<History>, w: usize, stop: Stop, seed: u64) {
    let client = app.service().await;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut n = 0u64;
    let mut sent: Vec<(usize, Vec<hpb::NewMessage>)> = Vec::new();
    let mut mine: Vec<usize> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let (messages, retry_of) = if !sent.is_empty() && rng.random_bool(0.1) {
            let (i, m) = &sent[rng.random_range(0..sent.len())];
            (m.clone(), Some(*i))
        } else {
            let mut batch = Vec::new();
            for _ in 0..rng.random_range(1..=3) {
                n += 1;
                let cid = format!("w{w}-{n}");
                let m = if rng.random_bool(0.7) {
                    let (a, b) = PEERS[rng.random_range(0..PEERS.len())];
                    let (s, r) = if rng.random_bool(0.5) { (a, b) } else { (b, a) };
                    new_message(ConversationType::Peer, s, r, &cid, &cid)
                } else {
                    let s = MEMBERS[rng.random_range(0..MEMBERS.len())];
                    new_message(ConversationType::Group, s, GROUP, &cid, &cid)
                };
                batch.push(m);
            }
            if rng.random_bool(0.05) {
                // The same message twice in one batch: stored once.
                batch.push(batch[0].clone());
            }
            (batch, None)
        };
        let batch: Vec<(String, String, String)> = messages
            .iter()
            .map(|m| {
                let key = if m.conversation_type == ConversationType::Peer as i32 {
                    peer_key(&m.sender, &m.recipient)
                } else {
                    format!("g:{}", m.recipient)
                };
                (key, m.sender.clone(), m.client_msg_id.clone())
            })
            .collect();
        app.clock.advance(1);
        let invoke = history.now();
        let r = timed(
            client
                .history()
                .append_messages(hpb::AppendMessagesRequest {
                    messages: messages.clone(),
                }),
        )
        .await;
        let complete = history.now();
        let mut results = Vec::new();
        if let Ok(resp) = &r {
            for (res, m) in resp.get_ref().results.iter().zip(&messages) {
                let msg = res.message.clone().unwrap_or_default();
                results.push((Msg::of(&m.sender, &msg).0, res.duplicate));
            }
        }
        let (outcome, code) = outcome_of(&r.as_ref().map(|_| ()).map_err(Clone::clone));
        let mut ops = history.ops.lock().unwrap();
        let index = ops.len();
        if outcome == Outcome::Ok {
            let mut known = history.known.lock().unwrap();
            for (m, dup) in &results {
                if !dup {
                    known.entry(m.key.clone()).or_default().push(m.clone());
                }
            }
            if retry_of.is_none() {
                sent.push((index, messages));
                mine.push(index);
            }
        }
        ops.push(Op {
            process: format!("gateway/{w}"),
            user: "gateway".into(),
            invoke,
            complete,
            outcome,
            code,
            detail: Detail::Append {
                batch,
                results,
                retry_of,
            },
        });
    }
}

/// The conversations `user` takes part in (and, for the outsider, the group it is not in).
fn conversations_of(user: &str) -> Vec<String> {
    let mut out: Vec<String> = PEERS
        .iter()
        .filter(|(a, b)| *a == user || *b == user)
        .map(|(a, b)| peer_key(a, b))
        .collect();
    out.push(format!("g:{GROUP}"));
    out
}

fn is_member(user: &str) -> bool {
    MEMBERS.contains(&user)
}

/// One read call: all its pages.
#[allow(clippy::too_many_arguments)]
async fn read_call(
    client: &roaming_client::Client,
    history: &History,
    process: &str,
    user: &str,
    key: &str,
    forward: bool,
    start: Start,
    cursor: String,
    page_size: u32,
    max_pages: u32,
    chain: usize,
) -> (Outcome, String) {
    let req = hpb::FetchHistoryRequest {
        conversation: Some(ref_of(user, key)),
        direction: if forward {
            hpb::Direction::Forward
        } else {
            hpb::Direction::Backward
        } as i32,
        cursor,
        page_size,
        max_pages,
        ..Default::default()
    };
    let invoke = history.now();
    let mut messages = Vec::new();
    let mut pages = Vec::new();
    let mut next = String::new();
    let mut labels = Vec::new();
    let r: Result<(), tonic::Status> = timed(async {
        let mut stream = client.history().fetch_history(req).await?.into_inner();
        while let Some(page) = stream.message().await? {
            pages.push((page.messages.len(), page.is_end));
            for m in &page.messages {
                let (msg, label) = Msg::of(user, m);
                labels.extend(label);
                messages.push(msg);
            }
            next = page.next_cursor;
        }
        Ok(())
    })
    .await;
    let complete = history.now();
    let (outcome, code) = outcome_of(&r);
    let completed = r.is_ok();
    history.push(Op {
        process: process.into(),
        user: user.into(),
        invoke,
        complete,
        outcome,
        code,
        detail: Detail::Read {
            key: key.into(),
            forward,
            start,
            messages,
            pages,
            complete: completed,
            chain,
        },
    });
    history.mislabelled.lock().unwrap().extend(labels);
    (outcome, next)
}

/// A follow-the-cursor session: 1-4 calls, each resuming where the previous one ended.
async fn read_chain(
    client: &roaming_client::Client,
    history: &History,
    process: &str,
    user: &str,
    key: &str,
    rng: &mut StdRng,
    chain: usize,
) {
    let forward = rng.random_bool(0.5);
    let mut start = Start::End;
    let mut cursor = String::new();
    for _ in 0..rng.random_range(1..=4) {
        let (outcome, next) = read_call(
            client,
            history,
            process,
            user,
            key,
            forward,
            start,
            cursor.clone(),
            rng.random_range(1..=10),
            rng.random_range(1..=3),
            chain,
        )
        .await;
        if outcome != Outcome::Ok || next.is_empty() {
            return;
        }
        // The position the cursor resumes after: the last seq this chain returned.
        let ops = history.ops.lock().unwrap();
        let last = ops.iter().rev().find_map(|o| match &o.detail {
            Detail::Read {
                chain: c, messages, ..
            } if *c == chain => Some(messages.last().map(|m| m.seq)),
            _ => None,
        });
        drop(ops);
        if let Some(Some(seq)) = last {
            start = Start::After(seq);
        }
        cursor = next;
    }
}

async fn list_call(client: &roaming_client::Client, history: &History, process: &str, user: &str) {
    let invoke = history.now();
    let mut entries = Vec::new();
    let mut labels = Vec::new();
    let r: Result<(), tonic::Status> = timed(async {
        let mut cursor = String::new();
        loop {
            let page = client
                .conversations()
                .list_conversations(cpb::ListConversationsRequest {
                    page_size: 50,
                    cursor: cursor.clone(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            for e in &page.conversations {
                let c = e.conversation.clone().unwrap_or_default();
                let key = key_of(user, &c);
                let (m, label) = Msg::of(user, &e.last_message.clone().unwrap_or_default());
                labels.extend(label);
                entries.push((key, m, e.last_activity_ms));
            }
            if page.next_cursor.is_empty() {
                return Ok(());
            }
            cursor = page.next_cursor;
        }
    })
    .await;
    let complete = history.now();
    let (outcome, code) = outcome_of(&r);
    history.push(Op {
        process: process.into(),
        user: user.into(),
        invoke,
        complete,
        outcome,
        code,
        detail: Detail::List { entries },
    });
    history.mislabelled.lock().unwrap().extend(labels);
}

async fn device(
    app: Arc<TestApp>,
    history: Arc<History>,
    user: &'static str,
    d: usize,
    stop: Stop,
    seed: u64,
    chains: Arc<std::sync::atomic::AtomicUsize>,
) {
    let client = app.user(user).await;
    let process = format!("{user}/device{d}");
    let mut rng = StdRng::seed_from_u64(seed);
    let convs = conversations_of(user);
    while !stop.load(Ordering::Relaxed) {
        let key = convs[rng.random_range(0..convs.len())].clone();
        let roll = rng.random_range(0..100);
        if roll < 55 {
            let chain = chains.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            read_chain(&client, &history, &process, user, &key, &mut rng, chain).await;
        } else if roll < 70 {
            list_call(&client, &history, &process, user).await;
        } else if roll < 86 {
            // By id: 1-3 acknowledged ids of this conversation, sometimes one of another.
            let mut ids: Vec<i64> = {
                let known = history.known.lock().unwrap();
                let msgs = known.get(&key).map(Vec::as_slice).unwrap_or(&[]);
                if msgs.is_empty() {
                    Vec::new()
                } else {
                    (0..rng.random_range(1..=3))
                        .map(|_| msgs[rng.random_range(0..msgs.len())].msg_id)
                        .collect()
                }
            };
            if rng.random_bool(0.1) {
                let known = history.known.lock().unwrap();
                let other = known
                    .iter()
                    .filter(|(k, v)| **k != key && !v.is_empty())
                    .map(|(_, v)| v[0].msg_id)
                    .next();
                ids.extend(other);
            }
            if ids.is_empty() {
                continue;
            }
            let invoke = history.now();
            let r = timed(
                client
                    .history()
                    .remove_messages(hpb::RemoveMessagesRequest {
                        conversation: Some(ref_of(user, &key)),
                        msg_ids: ids.iter().map(i64::to_string).collect(),
                    }),
            )
            .await;
            let complete = history.now();
            let statuses = r
                .as_ref()
                .map(|x| x.get_ref().results.iter().map(|s| s.status).collect())
                .unwrap_or_default();
            let (outcome, code) = outcome_of(&r.map(|_| ()));
            history.push(Op {
                process: process.clone(),
                user: user.into(),
                invoke,
                complete,
                outcome,
                code,
                detail: Detail::RemoveIds { key, ids, statuses },
            });
        } else if roll < 90 {
            // By time: the time of an acknowledged message, well in the past of most.
            let time = {
                let known = history.known.lock().unwrap();
                let msgs = known.get(&key).map(Vec::as_slice).unwrap_or(&[]);
                if msgs.is_empty() {
                    continue;
                }
                // Mostly early messages, so that whole histories are not wiped every time.
                msgs[rng.random_range(0..msgs.len().div_ceil(3))].time
            };
            let invoke = history.now();
            let r = timed(client.history().remove_messages_before(
                hpb::RemoveMessagesBeforeRequest {
                    conversation: Some(ref_of(user, &key)),
                    before_time_ms: time,
                },
            ))
            .await;
            let complete = history.now();
            let (outcome, code) = outcome_of(&r.map(|_| ()));
            history.push(Op {
                process: process.clone(),
                user: user.into(),
                invoke,
                complete,
                outcome,
                code,
                detail: Detail::RemoveBefore { key, time },
            });
        } else if roll < 93 {
            let delete = rng.random_bool(0.5);
            let invoke = history.now();
            let r = timed(client.conversations().remove_conversation(
                cpb::RemoveConversationRequest {
                    conversation: Some(ref_of(user, &key)),
                    delete_messages: delete,
                    scope: cpb::RemovalScope::ForMe as i32,
                },
            ))
            .await;
            let complete = history.now();
            let (outcome, code) = outcome_of(&r.map(|_| ()));
            history.push(Op {
                process: process.clone(),
                user: user.into(),
                invoke,
                complete,
                outcome,
                code,
                detail: Detail::RemoveConversation { key, delete },
            });
        } else {
            let chain = chains.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            read_chain(&client, &history, &process, user, &key, &mut rng, chain).await;
        }
    }
}

// ---------------------------------------------------------------------------------------
// The checker.

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

/// Watermark-type removals of one user in one conversation: (time, seq) steps, as a prefix
/// maximum over time.
#[derive(Default, Clone)]
struct Steps(Vec<(u64, i64)>);

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
    fn before(&self, t: u64) -> i64 {
        let i = self.0.partition_point(|(time, _)| *time < t);
        if i == 0 { 0 } else { self.0[i - 1].1 }
    }
}

#[derive(Default)]
struct Report {
    violations: Vec<String>,
    checked: BTreeMap<&'static str, u64>,
}

impl Report {
    fn check(&mut self, what: &'static str, ok: bool, detail: impl FnOnce() -> String) {
        *self.checked.entry(what).or_default() += 1;
        if !ok && self.violations.len() < 10_000 {
            self.violations.push(format!("{what}: {}", detail()));
        }
    }
}

struct Checker<'a> {
    ops: &'a [Op],
    /// msg_id → message.
    registry: HashMap<i64, Msg>,
    /// key → seq → msg_id.
    by_seq: HashMap<String, BTreeMap<i64, i64>>,
    /// msg_id → (append invoke, append complete); complete is u64::MAX when unknown.
    appended: HashMap<i64, (u64, u64)>,
    /// (user, key) → watermark removals: possible (by invoke) and definite (by complete).
    possible_floor: HashMap<(String, String), Steps>,
    definite_floor: HashMap<(String, String), Steps>,
    /// (user, msg_id) → earliest invoke of a removal by id that may cover it / earliest
    /// completion of one that did.
    possible_id: HashMap<(String, i64), u64>,
    definite_id: HashMap<(String, i64), u64>,
    /// (user, key) → (invoke, complete) of successful RemoveConversation FOR_ME calls.
    conversation_removals: HashMap<(String, String), Vec<(u64, u64)>>,
    /// key → (invoke, complete) of every acknowledged message, newest first.
    appends_by_key: HashMap<String, Vec<(u64, u64)>>,
}

impl<'a> Checker<'a> {
    fn new(ops: &'a [Op], report: &mut Report) -> Self {
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

    fn definitely_removed_before(&self, user: &str, m: &Msg, t: u64) -> bool {
        let k = (user.to_owned(), m.key.clone());
        self.definite_floor
            .get(&k)
            .is_some_and(|s| m.seq <= s.before(t))
            || self
                .definite_id
                .get(&(user.to_owned(), m.msg_id))
                .is_some_and(|d| *d < t)
    }

    fn possibly_removed_before(&self, user: &str, m: &Msg, t: u64) -> bool {
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
    fn stored_before(&self, key: &str, t: u64) -> i64 {
        self.max_seq(key, |_, (_, done)| done < t)
    }

    fn run(&self, report: &mut Report) -> Figures {
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

/// Runs the checker over copies of `ops` with one kind of anomaly planted in each, and
/// returns how many violations it found for each.
fn plant_anomalies(ops: &[Op], checker: &Checker) -> Vec<(&'static str, usize)> {
    let mut out = Vec::new();
    let violations = |ops: &[Op]| {
        let mut report = Report::default();
        let c = Checker::new(ops, &mut report);
        c.run(&mut report);
        report.violations.len()
    };
    let reads = |ops: &[Op]| -> Vec<usize> {
        ops.iter()
            .enumerate()
            .filter(|(_, o)| matches!(&o.detail, Detail::Read { messages, complete: true, .. } if messages.len() >= 3))
            .map(|(i, _)| i)
            .collect()
    };
    let candidates = reads(ops);
    let mut edit = |what: &'static str, f: &dyn Fn(&mut Vec<Msg>)| {
        let mut found = 0;
        for &i in candidates.iter().take(3) {
            let mut copy = ops.to_vec();
            if let Detail::Read { messages, .. } = &mut copy[i].detail {
                f(messages);
            }
            found += violations(&copy);
        }
        out.push((what, found));
    };
    edit(
        "a lost message (one dropped from the middle of a read)",
        &|m| {
            m.remove(1);
        },
    );
    edit("a duplicate within a read", &|m| {
        let d = m[1].clone();
        m.insert(1, d);
    });
    edit("two messages out of order", &|m| m.swap(0, 1));
    edit("a message with another seq", &|m| m[1].seq += 1_000_000);
    // A message its reader had surely removed, shown again by a later read of that reader.
    let mut found = 0;
    'outer: for (i, op) in ops.iter().enumerate() {
        let Detail::Read {
            key,
            forward,
            messages,
            complete: true,
            ..
        } = &op.detail
        else {
            continue;
        };
        if messages.is_empty() {
            continue;
        }
        for m in checker.registry.values() {
            if &m.key == key
                && checker.definitely_removed_before(&op.user, m, op.invoke)
                && !messages.iter().any(|x| x.msg_id == m.msg_id)
            {
                let mut copy = ops.to_vec();
                if let Detail::Read { messages, .. } = &mut copy[i].detail {
                    // Keep the read's order so that only the resurrection is wrong.
                    messages.push(m.clone());
                    messages.sort_by_key(|x| if *forward { x.seq } else { -x.seq });
                }
                found += violations(&copy);
                if found > 0 {
                    break 'outer;
                }
            }
        }
    }
    out.push(("a resurrected message", found));
    out
}

#[derive(Default, Debug)]
struct Figures {
    reads: u64,
    messages_read: u64,
    hidden_seqs: u64,
    lists: u64,
    list_entries: u64,
}

// ---------------------------------------------------------------------------------------
// The test.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_clients_never_lose_duplicate_reorder_or_resurrect_messages() {
    let long = std::env::var_os("ROAMING_RELIABILITY_LONG").is_some();
    let load = Duration::from_secs(if long { 60 } else { 10 });
    let min_appended = if long { 2000 } else { 300 };
    let app = Arc::new(TestApp::spawn().await);
    app.add_members(ConversationType::Group, GROUP, &MEMBERS)
        .await;
    let history = Arc::new(History {
        started: Instant::now(),
        ops: Mutex::new(Vec::new()),
        known: Mutex::new(HashMap::new()),
        mislabelled: Mutex::new(Vec::new()),
    });
    // Load for `load`, longer (up to three times) until enough was appended to be worth
    // checking, when the machine is busy with other tests.
    let stop: Stop = Arc::new(AtomicBool::new(false));
    let monitor = {
        let (stop, history) = (stop.clone(), history.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let appended = history
                    .known
                    .lock()
                    .unwrap()
                    .values()
                    .map(Vec::len)
                    .sum::<usize>();
                let elapsed = started.elapsed();
                if (elapsed >= load && appended >= min_appended) || elapsed >= 3 * load {
                    stop.store(true, Ordering::Relaxed);
                    return;
                }
            }
        })
    };
    let chains = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        tasks.push(tokio::spawn(writer(
            app.clone(),
            history.clone(),
            w,
            stop.clone(),
            100 + w as u64,
        )));
    }
    for (u, user) in USERS.iter().enumerate() {
        for d in 0..DEVICES {
            tasks.push(tokio::spawn(device(
                app.clone(),
                history.clone(),
                user,
                d,
                stop.clone(),
                (1000 + u * 10 + d) as u64,
                chains.clone(),
            )));
        }
    }
    for t in tasks {
        t.await.expect("no worker panicked");
    }
    monitor.await.unwrap();
    let loaded = history.started.elapsed();

    // Quiescence: every device of every user reads every conversation whole, both ways, and
    // lists its conversations.
    let mut final_views: HashMap<(String, String), Vec<Vec<i64>>> = HashMap::new();
    for user in USERS {
        for d in 0..DEVICES {
            let client = app.user(user).await;
            let process = format!("{user}/device{d}/final");
            for key in conversations_of(user) {
                if key.starts_with("g:") && !is_member(user) {
                    continue;
                }
                for forward in [true, false] {
                    let chain = chains.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let mut start = Start::End;
                    let mut cursor = String::new();
                    let mut all = Vec::new();
                    loop {
                        let (outcome, next) = read_call(
                            &client,
                            &history,
                            &process,
                            user,
                            &key,
                            forward,
                            start,
                            cursor.clone(),
                            7,
                            5,
                            chain,
                        )
                        .await;
                        assert_eq!(outcome, Outcome::Ok, "final read");
                        let ops = history.ops.lock().unwrap();
                        let Some(Detail::Read {
                            messages, pages, ..
                        }) = ops.last().map(|o| &o.detail)
                        else {
                            unreachable!()
                        };
                        all.extend(messages.iter().map(|m| m.msg_id));
                        if let Some(m) = messages.last() {
                            start = Start::After(m.seq);
                        }
                        let end = pages.last().is_some_and(|p| p.1);
                        drop(ops);
                        if end {
                            break;
                        }
                        cursor = next;
                    }
                    if !forward {
                        all.reverse();
                    }
                    final_views
                        .entry((user.to_owned(), key.clone()))
                        .or_default()
                        .push(all);
                }
            }
            list_call(&client, &history, &process, user).await;
        }
    }
    let elapsed = history.started.elapsed();
    let ops = std::mem::take(&mut *history.ops.lock().unwrap());

    let checking = Instant::now();
    let mut report = Report::default();
    let checker = Checker::new(&ops, &mut report);
    let fig = checker.run(&mut report);
    let mislabelled = std::mem::take(&mut *history.mislabelled.lock().unwrap());
    report.checked.insert(
        "a message carries its reader's view of the conversation",
        fig.messages_read + fig.list_entries,
    );
    report.violations.extend(mislabelled);

    // Final views: both directions and both devices agree; every acknowledged message is
    // there unless its reader may have removed it, and none its reader surely removed is.
    let end = u64::MAX;
    for ((user, key), views) in &final_views {
        let first = &views[0];
        report.check(
            "every device and direction sees the same final history",
            views.iter().all(|v| v == first),
            || format!("{user} {key}: {views:?}"),
        );
        let got: HashSet<i64> = first.iter().copied().collect();
        for id in checker.by_seq.get(key).into_iter().flat_map(|s| s.values()) {
            let m = &checker.registry[id];
            if got.contains(id) {
                report.check(
                    "a removed message is not in the final history",
                    !checker.definitely_removed_before(user, m, end),
                    || format!("{user} {key}: {id}"),
                );
            } else {
                report.check(
                    "every acknowledged message is in the final history of those who kept it",
                    checker.possibly_removed_before(user, m, end),
                    || format!("{user} {key}: {id} seq {} lost", m.seq),
                );
            }
        }
    }
    // The final lists: last_message is the newest visible message; a conversation with
    // visible messages is listed unless its reader removed it and nothing newer came.
    for op in ops.iter().filter(|o| o.process.ends_with("/final")) {
        let Detail::List { entries } = &op.detail else {
            continue;
        };
        let listed: HashMap<&String, &Msg> = entries.iter().map(|(k, m, _)| (k, m)).collect();
        for key in conversations_of(&op.user) {
            if key.starts_with("g:") && !is_member(&op.user) {
                continue;
            }
            let view = &final_views[&(op.user.clone(), key.clone())][0];
            let newest = view.last().copied();
            match listed.get(&key) {
                Some(m) => report.check(
                    "the final list's last_message is the newest visible message",
                    Some(m.msg_id) == newest,
                    || format!("{} {key}: {} vs {newest:?}", op.user, m.msg_id),
                ),
                None => {
                    let removed = ops.iter().any(|r| {
                        matches!(&r.detail, Detail::RemoveConversation { key: k, .. } if *k == key)
                            && r.user == op.user
                            && r.outcome != Outcome::Fail
                    });
                    report.check(
                        "a conversation with visible messages is listed unless removed",
                        newest.is_none() || removed,
                        || format!("{} {key} not listed", op.user),
                    );
                }
            }
        }
    }

    // The database: exactly the acknowledged messages, gapless per conversation.
    let sql = app.sql().await;
    let rows = sql
        .query(
            "SELECT conv_key, count(*), max(seq), array_agg(msg_id) FROM messages GROUP BY conv_key",
            &[],
        )
        .await
        .unwrap();
    let mut stored_ids: HashSet<i64> = HashSet::new();
    for row in &rows {
        let (key, count, max, ids): (String, i64, i64, Vec<i64>) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        report.check("seq gapless in storage", count == max, || {
            format!("{key}: {count} messages, max seq {max}")
        });
        stored_ids.extend(ids);
    }
    let acked: HashSet<i64> = checker.appended.keys().copied().collect();
    let unknown_appends = ops
        .iter()
        .filter(|o| matches!(o.detail, Detail::Append { .. }) && o.outcome == Outcome::Unknown)
        .count();
    report.check(
        "every acknowledged message is stored (0 lost)",
        acked.is_subset(&stored_ids),
        || {
            format!(
                "{} acknowledged but not stored",
                acked.difference(&stored_ids).count()
            )
        },
    );
    report.check(
        "nothing stored that was not acknowledged (0 phantom)",
        unknown_appends > 0 || stored_ids.is_subset(&acked),
        || {
            format!(
                "{} stored but never acknowledged",
                stored_ids.difference(&acked).count()
            )
        },
    );

    // Figures.
    let mut by_kind: BTreeMap<&str, [u64; 3]> = BTreeMap::new();
    for op in &ops {
        let slot = by_kind.entry(op.kind()).or_default();
        slot[op.outcome as usize] += 1;
    }
    let total: u64 = by_kind.values().flatten().sum();
    println!(
        "consistency: {} clients ({WRITERS} gateway writers, {} users × {DEVICES} devices) for \
         {loaded:.1?} of load, {total} operations recorded in {elapsed:.1?} (final reads \
         included), checked in {:.1?}",
        WRITERS + USERS.len() * DEVICES,
        USERS.len(),
        checking.elapsed()
    );
    for (kind, [ok, fail, unknown]) in &by_kind {
        println!("consistency:   {kind:<30} ok {ok:>6}  fail {fail:>5}  unknown {unknown:>3}");
    }
    println!(
        "consistency:   {} messages acknowledged ({} conversations, max seq {}), {} reads \
         returning {} messages, {} seqs inferred hidden, {} lists with {} entries",
        acked.len(),
        rows.len(),
        rows.iter().map(|r| r.get::<_, i64>(2)).max().unwrap_or(0),
        fig.reads,
        fig.messages_read,
        fig.hidden_seqs,
        fig.lists,
        fig.list_entries
    );
    let checks: u64 = report.checked.values().sum();
    println!(
        "consistency:   {checks} invariant checks over {} invariants, violations {}",
        report.checked.len(),
        report.violations.len()
    );
    for (what, n) in &report.checked {
        println!("consistency:     {n:>9}  {what}");
    }
    // The checker checks: each kind of anomaly, planted in a copy of this history, is found.
    let planted = plant_anomalies(&ops, &checker);
    for (what, found) in &planted {
        println!("consistency:   planted {what}: found {found}");
    }
    assert!(
        planted.iter().all(|(_, found)| *found > 0),
        "the checker missed a planted anomaly: {planted:?}"
    );
    assert!(
        report.violations.is_empty(),
        "{} violations; first ones:\n{}",
        report.violations.len(),
        report.violations[..report.violations.len().min(20)].join("\n")
    );
}
