//! Consistency checker, Jepsen-style.
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

mod anomalies;
mod checker;
mod devices;
mod history;
mod invariants;
mod support;
mod writer;

use anomalies::plant_anomalies;
use checker::{Checker, Report};
use devices::{device, list_call, read_call};
use history::{Detail, History, Msg, Outcome, Start};
use roaming_proto::common::v1::ConversationType;
use roaming_testkit::TestApp;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{DEVICES, GROUP, MEMBERS, Stop, USERS, WRITERS, conversations_of, is_member};
use writer::writer;

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
