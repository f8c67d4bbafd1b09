//! Concurrency: seqs are gapless and in commit order while many writers append.

use crate::helpers::*;
use roaming_client::proto::common::v1::ConversationType;
use roaming_client::proto::history::v1::{self as hpb, Direction};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_writers_and_a_forward_reader_see_every_seq_once_in_order() {
    const WRITERS: usize = 8;
    const PER_WRITER: usize = 40;
    let app = TestApp::spawn().await;
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let service = app.service().await;
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..PER_WRITER {
                // Batches of 1-3, some repeating the previous id (retries).
                let batch: Vec<_> = (0..(i % 3 + 1))
                    .map(|k| {
                        new_message(
                            ConversationType::Peer,
                            "alice",
                            "bob",
                            &format!("w{w}-{i}-{k}"),
                            &format!("w{w}-{i}-{k}"),
                        )
                    })
                    .collect();
                let r = service
                    .history()
                    .append_messages(hpb::AppendMessagesRequest { messages: batch })
                    .await
                    .unwrap();
                acked.extend(
                    r.into_inner()
                        .results
                        .into_iter()
                        .map(|r| r.message.unwrap().seq),
                );
            }
            acked
        }));
    }
    let expected: usize = WRITERS * (0..PER_WRITER).map(|i| i % 3 + 1).sum::<usize>();

    // The reader pages forward with small pages, following next_cursor, while writers write.
    let reader = app.user("bob").await;
    let mut seen: Vec<i64> = Vec::new();
    let mut cursor = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < expected {
        assert!(
            Instant::now() < deadline,
            "reader stalled at {} of {expected}",
            seen.len()
        );
        let pages = fetch_pages(
            &reader,
            hpb::FetchHistoryRequest {
                conversation: Some(peer("alice")),
                direction: Direction::Forward as i32,
                cursor: cursor.clone(),
                page_size: 7,
                max_pages: 3,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        for p in &pages {
            assert!(
                !p.messages.is_empty() || p.is_end,
                "empty page without is_end"
            );
            seen.extend(p.messages.iter().map(|m| m.seq));
        }
        cursor = pages.last().unwrap().next_cursor.clone();
        if pages.last().unwrap().is_end {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let mut acked: Vec<i64> = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    let n = i64::try_from(expected).unwrap();
    assert_eq!(
        seen,
        (1..=n).collect::<Vec<_>>(),
        "every seq exactly once, in order"
    );
    acked.sort_unstable();
    assert_eq!(
        acked,
        (1..=n).collect::<Vec<_>>(),
        "every acknowledged seq distinct and gapless"
    );
    println!("concurrency: {WRITERS} writers, {expected} messages, reader saw all in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_retries_of_one_message_store_it_once() {
    let app = TestApp::spawn().await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let service = app.service().await;
        tasks.push(tokio::spawn(async move {
            let m = new_message(ConversationType::Peer, "alice", "bob", "once", "the-one");
            let r = service
                .history()
                .append_messages(hpb::AppendMessagesRequest { messages: vec![m] })
                .await
                .unwrap();
            let r = &r.into_inner().results[0];
            (r.message.clone().unwrap().msg_id, r.duplicate)
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let ids: std::collections::HashSet<_> = results.iter().map(|r| r.0.clone()).collect();
    assert_eq!(ids.len(), 1, "one message id for every retry");
    assert_eq!(
        results.iter().filter(|r| !r.1).count(),
        1,
        "exactly one call stored it"
    );
    assert_eq!(
        app.fetch_all("alice", peer("bob"), Direction::Forward)
            .await
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batches_spanning_the_same_conversations_in_opposite_orders_do_not_deadlock() {
    let app = TestApp::spawn().await;
    let mut tasks = Vec::new();
    for t in 0..6 {
        let service = app.service().await;
        tasks.push(tokio::spawn(async move {
            for i in 0..15 {
                let (a, b) = if t % 2 == 0 {
                    ("bob", "carol")
                } else {
                    ("carol", "bob")
                };
                let batch = vec![
                    new_message(
                        ConversationType::Peer,
                        "alice",
                        a,
                        "x",
                        &format!("{t}-{i}-a"),
                    ),
                    new_message(
                        ConversationType::Peer,
                        "alice",
                        b,
                        "y",
                        &format!("{t}-{i}-b"),
                    ),
                ];
                service
                    .history()
                    .append_messages(hpb::AppendMessagesRequest { messages: batch })
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("no deadlock")
            .unwrap();
    }
    assert_eq!(
        app.fetch_all("alice", peer("bob"), Direction::Forward)
            .await
            .len(),
        90
    );
    assert_eq!(
        app.fetch_all("alice", peer("carol"), Direction::Forward)
            .await
            .len(),
        90
    );
}
