//! The change feed never skips: 8 writers append to one big group and open new PEER
//! conversations with its members, and a remover hides messages for them, while those
//! members sync in a loop. Every acknowledged change is recorded with the time of its
//! acknowledgement, every sync call with the time it started; the checker proves that each
//! change is reflected in what a member had learned by the end of the first sync call that
//! started after the change was acknowledged.
//!
//! Later writes to the same row re-stamp it and can mask a skipped change in the group, so
//! every PEER message is the first of a new conversation (a new row that nothing re-stamps)
//! and every removal a new tombstone: a feed that missed a change committed around a
//! reader's snapshot is caught there.

use roaming_client::proto::common::v1::ConversationType;
use roaming_client::proto::history::v1 as hpb;
use roaming_testkit::{TestApp, conv, new_message, sync_changes};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

const WRITERS: usize = 8;
const READERS: usize = 4;
const MEMBERS: usize = 30;

/// One sync call of a reader: when it started, and what the reader knew at its end.
struct Call {
    started: Instant,
    last_seq: i64,
    removed: HashSet<String>,
    /// The PEER conversations it had heard of.
    peers: HashSet<String>,
}

/// Every change acknowledged to its caller.
#[derive(Default)]
struct Acks {
    /// (seq, acknowledged at)
    appends: Vec<(i64, Instant)>,
    /// (reader index, msg_id, acknowledged at)
    removals: Vec<(usize, String, Instant)>,
    /// (reader index, the other participant of a new PEER conversation, acknowledged at)
    peers: Vec<(usize, String, Instant)>,
}

fn member(i: usize) -> String {
    format!("m{i:02}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_change_reaches_every_member_by_their_next_sync() {
    let app = Arc::new(TestApp::spawn().await);
    let members: Vec<String> = (0..MEMBERS).map(member).collect();
    let refs: Vec<&str> = members.iter().map(String::as_str).collect();
    app.add_members(ConversationType::Group, "big", &refs).await;
    app.send(ConversationType::Group, "m00", "big", "seed")
        .await;

    // Each reader's snapshot comes first, so every later change is a delta to it.
    let mut readers = Vec::new();
    for r in 0..READERS {
        let client = app.user(&member(r)).await;
        let (_, token) = sync_changes(&client, "").await;
        readers.push((client, token));
    }

    let acks = Arc::new(Mutex::new(Acks::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let run_for = Duration::from_secs(3);
    const MIN_APPENDS: usize = 60;
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (app, acks, stop) = (app.clone(), acks.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let gateway = app.service().await;
            let sender = member(READERS + w);
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let m = new_message(
                    ConversationType::Group,
                    &sender,
                    "big",
                    "x",
                    &format!("w{w}-{n}"),
                );
                n += 1;
                let response = gateway
                    .history()
                    .append_messages(hpb::AppendMessagesRequest { messages: vec![m] })
                    .await
                    .expect("append")
                    .into_inner();
                let seq = response.results[0].message.as_ref().unwrap().seq;
                acks.lock().await.appends.push((seq, Instant::now()));
                // A new PEER conversation with one of the readers.
                let r = n % READERS;
                let stranger = format!("s{w}-{n}");
                let m = new_message(ConversationType::Peer, &stranger, &member(r), "hi", "p");
                gateway
                    .history()
                    .append_messages(hpb::AppendMessagesRequest { messages: vec![m] })
                    .await
                    .expect("append");
                acks.lock().await.peers.push((r, stranger, Instant::now()));
            }
        }));
    }
    // The remover hides, for each reader in turn, a message it has just seen appended.
    let remover = {
        let (app, acks, stop) = (app.clone(), acks.clone(), stop.clone());
        tokio::spawn(async move {
            let mut turn = 0;
            while !stop.load(Ordering::SeqCst) {
                let r = turn % READERS;
                turn += 1;
                let client = app.service_as(&member(r)).await;
                let mut stream = client
                    .history()
                    .fetch_history(hpb::FetchHistoryRequest {
                        conversation: Some(conv(ConversationType::Group, "big")),
                        page_size: 1,
                        ..Default::default()
                    })
                    .await
                    .expect("fetch")
                    .into_inner();
                let Some(page) = stream.message().await.expect("page") else {
                    continue;
                };
                let Some(newest) = page.messages.first() else {
                    continue;
                };
                let id = newest.msg_id.clone();
                client
                    .history()
                    .remove_messages(hpb::RemoveMessagesRequest {
                        conversation: Some(conv(ConversationType::Group, "big")),
                        msg_ids: vec![id.clone()],
                    })
                    .await
                    .expect("remove");
                acks.lock().await.removals.push((r, id, Instant::now()));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    // Readers sync in a loop, recording what they knew after each call.
    let mut reader_tasks = Vec::new();
    // Set once every writer and the remover have finished: every acknowledgement is then in.
    let quiet = Arc::new(AtomicBool::new(false));
    for (r, (client, token)) in readers.into_iter().enumerate() {
        let quiet = quiet.clone();
        reader_tasks.push(tokio::spawn(async move {
            let mut token = token;
            let mut last_seq = 1;
            let mut removed = HashSet::new();
            let mut peers = HashSet::new();
            let mut calls = Vec::new();
            // Keep syncing until one call starts after the last acknowledgement.
            loop {
                let last_call = quiet.load(Ordering::SeqCst);
                let started = Instant::now();
                let (changes, next) = sync_changes(&client, &token).await;
                token = next;
                for change in changes {
                    let other = change.conversation.as_ref().unwrap();
                    if other.r#type == ConversationType::Peer as i32 {
                        peers.insert(other.id.clone());
                        continue;
                    }
                    assert_eq!(other.id, "big");
                    assert!(
                        change.last_seq >= last_seq,
                        "reader {r}: last_seq went back from {last_seq} to {}",
                        change.last_seq
                    );
                    last_seq = change.last_seq;
                    removed.extend(change.removed_msg_ids);
                }
                calls.push(Call {
                    started,
                    last_seq,
                    removed: removed.clone(),
                    peers: peers.clone(),
                });
                if last_call {
                    break;
                }
            }
            calls
        }));
    }

    tokio::time::sleep(run_for).await;
    // However slow the machine (a loaded CI runner, a Citus cluster on two cores), the checker
    // needs enough appends racing the readers: the run lasts until there are.
    while acks.lock().await.appends.len() < MIN_APPENDS {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.unwrap();
    }
    remover.await.unwrap();
    quiet.store(true, Ordering::SeqCst);
    let mut histories = Vec::new();
    for t in reader_tasks {
        histories.push(t.await.unwrap());
    }

    // The checker.
    let acks = acks.lock().await;
    assert!(
        acks.appends.len() >= MIN_APPENDS,
        "too little load: {}",
        acks.appends.len()
    );
    let mut checked = 0;
    for (r, calls) in histories.iter().enumerate() {
        let first_after = |t: Instant| calls.iter().find(|c| c.started > t);
        for &(seq, at) in &acks.appends {
            let call = first_after(at).expect("a sync started after every acknowledgement");
            assert!(
                call.last_seq >= seq,
                "reader {r}: seq {seq} acknowledged before a sync started, which then knew only \
                 seq {}",
                call.last_seq
            );
            checked += 1;
        }
        for (who, other, at) in &acks.peers {
            if *who != r {
                continue;
            }
            let call = first_after(*at).expect("a sync started after every append");
            assert!(
                call.peers.contains(other),
                "reader {r}: a new conversation with {other} acknowledged before a sync started \
                 that did not report it"
            );
            checked += 1;
        }
        for (who, id, at) in &acks.removals {
            if *who != r {
                continue;
            }
            let call = first_after(*at).expect("a sync started after every removal");
            assert!(
                call.removed.contains(id),
                "reader {r}: removal of {id} acknowledged before a sync started that did not \
                 report it"
            );
            checked += 1;
        }
    }
    let calls: usize = histories.iter().map(Vec::len).sum();
    println!(
        "sync[never skip]: {} group appends and {} new PEER conversations by {WRITERS} \
         writers, {} removals, in {run_for:?}; {READERS} readers made {calls} sync calls; \
         {checked} (change, reader) pairs checked, 0 skipped",
        acks.appends.len(),
        acks.peers.len(),
        acks.removals.len()
    );
}
