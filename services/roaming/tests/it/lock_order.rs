//! Lock order: every writer of one conversation at once, and no call ever meets a deadlock.
//!
//! PostgreSQL answers a deadlock by failing one of its statements (`40P01`), which the server
//! answers UNAVAILABLE; a lock wait past `statement_timeout` is DEADLINE_EXCEEDED. Neither may
//! happen to any call here: the store takes its row locks in one order (the schema doc's "Lock
//! order": a statement that writes more than one row of a conversation takes the
//! conversation's row first). The clients do not retry, so a single deadlock fails the test by
//! the call's name.
//!
//! Sixteen tasks run seeded scripts over one PEER conversation (alice, bob) and one GROUP
//! (alice, bob, carol coming and going): appends, MarkRead by either side (a PEER MarkRead
//! writes both participants' rows), recalls and edits by the sender (several rows: the
//! message, the conversation's stamps), one-way removals of messages and of the
//! conversation, pins and marks, membership changes (several rows), and now and then a purge
//! for everyone (the conversation's row, every participant's, the messages). Afterwards, at
//! quiescence, every user's unread count equals a recount from the history they see.
//!
//! Seeded: `ROAMING_LOCK_SEED` (default 20261201); the interleaving is the scheduler's, so the
//! verdict must not depend on it.

use crate::helpers::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use roaming_client::proto::common::v1::{ConversationRef, ConversationType, Message};
use roaming_client::proto::conversation::v1 as cpb;
use roaming_client::proto::history::v1 as hpb;
use std::sync::{Arc, Mutex};
use tonic::Code;

const TASKS: u64 = 16;
const OPS_PER_TASK: usize = 30;
const GROUP: &str = "team";

fn group() -> ConversationRef {
    conv(ConversationType::Group, GROUP)
}

/// The PEER conversation as `user` names it.
fn peer_of(user: &str) -> ConversationRef {
    peer(if user == "alice" { "bob" } else { "alice" })
}

/// What the scripts stored: (message, its sender, whether it is the group's).
type Stored = Arc<Mutex<Vec<(Message, String, bool)>>>;

/// One step of a script; `Ok` when it ended as the scenario allows.
async fn step(app: &TestApp, rng: &mut StdRng, stored: &Stored) -> Result<(), String> {
    let user = if rng.random_bool(0.5) { "alice" } else { "bob" };
    let in_group = rng.random_bool(0.4);
    let conversation = if in_group { group() } else { peer_of(user) };
    let roll = rng.random_range(0..100);
    let picked = {
        let stored = stored.lock().unwrap();
        let candidates: Vec<_> = stored.iter().filter(|s| s.2 == in_group).collect();
        (!candidates.is_empty()).then(|| candidates[rng.random_range(0..candidates.len())].clone())
    };
    let named = |what: &str, s: tonic::Status| format!("{what} by {user}: {s:?}");
    match roll {
        0..=24 => {
            let (kind, recipient) = if in_group {
                (ConversationType::Group, GROUP)
            } else {
                (
                    ConversationType::Peer,
                    if user == "alice" { "bob" } else { "alice" },
                )
            };
            let client_msg_id = format!("s{}", rng.random::<u64>());
            let response = app
                .service()
                .await
                .history()
                .append_messages(hpb::AppendMessagesRequest {
                    messages: vec![new_message(kind, user, recipient, "x", &client_msg_id)],
                })
                .await
                .map_err(|s| named("append", s))?
                .into_inner();
            let message = response.results[0].message.clone().ok_or("no message")?;
            stored
                .lock()
                .unwrap()
                .push((message, user.to_owned(), in_group));
            Ok(())
        }
        25..=39 => app
            .user(user)
            .await
            .conversations()
            .mark_read(cpb::MarkReadRequest {
                conversation: Some(conversation),
                msg_id: String::new(),
            })
            .await
            .map(drop)
            .or_else(|s| allow(s, &[Code::NotFound]))
            .map_err(|s| named("MarkRead", s)),
        40..=51 => {
            let Some((message, sender, _)) = picked else {
                return Ok(());
            };
            let conversation = if in_group { group() } else { peer_of(&sender) };
            app.service_as(&sender)
                .await
                .history()
                .recall_message(hpb::RecallMessageRequest {
                    conversation: Some(conversation),
                    msg_id: message.msg_id,
                })
                .await
                .map(drop)
                // A purge for everyone may have come first.
                .or_else(|s| allow(s, &[Code::NotFound]))
                .map_err(|s| format!("recall by {sender}: {s:?}"))
        }
        52..=63 => {
            let Some((message, sender, _)) = picked else {
                return Ok(());
            };
            let conversation = if in_group { group() } else { peer_of(&sender) };
            app.service_as(&sender)
                .await
                .history()
                .edit_message(hpb::EditMessageRequest {
                    conversation: Some(conversation),
                    msg_id: message.msg_id,
                    body: b"edited".to_vec(),
                    attributes: Default::default(),
                })
                .await
                .map(drop)
                // Recalled or purged first; or edited the most times allowed.
                .or_else(|s| allow(s, &[Code::NotFound, Code::FailedPrecondition]))
                .map_err(|s| format!("edit by {sender}: {s:?}"))
        }
        64..=75 => {
            let Some((message, _, _)) = picked else {
                return Ok(());
            };
            app.user(user)
                .await
                .history()
                .remove_messages(hpb::RemoveMessagesRequest {
                    conversation: Some(conversation),
                    msg_ids: vec![message.msg_id],
                })
                .await
                .map(drop)
                .map_err(|s| named("RemoveMessages", s))
        }
        76..=83 => {
            let client = app.user(user).await;
            let mut conversations = client.conversations();
            if rng.random_bool(0.5) {
                conversations
                    .pin_conversation(cpb::PinConversationRequest {
                        conversation: Some(conversation),
                        pinned: rng.random_bool(0.5),
                    })
                    .await
                    .map(drop)
                    .or_else(|s| allow(s, &[Code::NotFound]))
                    .map_err(|s| named("PinConversation", s))
            } else {
                let mark = format!("m{}", rng.random_range(0..4));
                let (add_marks, remove_marks) = if rng.random_bool(0.5) {
                    (vec![mark], vec![])
                } else {
                    (vec![], vec![mark])
                };
                conversations
                    .mark_conversation(cpb::MarkConversationRequest {
                        conversation: Some(conversation),
                        add_marks,
                        remove_marks,
                    })
                    .await
                    .map(drop)
                    .or_else(|s| allow(s, &[Code::NotFound]))
                    .map_err(|s| named("MarkConversation", s))
            }
        }
        84..=91 => {
            let users = vec!["carol".to_owned()];
            let mut conversations = app.service().await.conversations();
            if rng.random_bool(0.5) {
                conversations
                    .add_members(cpb::AddMembersRequest {
                        conversation: Some(group()),
                        user_ids: users,
                    })
                    .await
                    .map(drop)
                    .map_err(|s| format!("AddMembers: {s:?}"))
            } else {
                conversations
                    .remove_members(cpb::RemoveMembersRequest {
                        conversation: Some(group()),
                        user_ids: users,
                    })
                    .await
                    .map(drop)
                    .map_err(|s| format!("RemoveMembers: {s:?}"))
            }
        }
        _ => {
            // Mostly one-way; now and then a purge for everyone (through a service).
            let (client, scope, what) = if roll <= 96 {
                (app.user(user).await, cpb::RemovalScope::ForMe, "FOR_ME")
            } else {
                let client = app.service_as(user).await;
                (client, cpb::RemovalScope::ForEveryone, "FOR_EVERYONE")
            };
            client
                .conversations()
                .remove_conversation(cpb::RemoveConversationRequest {
                    conversation: Some(conversation),
                    delete_messages: rng.random_bool(0.5),
                    scope: scope as i32,
                })
                .await
                .map(drop)
                .or_else(|s| allow(s, &[Code::NotFound]))
                .map_err(|s| named(&format!("RemoveConversation {what}"), s))
        }
    }
}

/// `Ok` when `status` has one of the codes the scenario allows for the call.
fn allow(status: tonic::Status, codes: &[Code]) -> Result<(), tonic::Status> {
    if codes.contains(&status.code()) {
        Ok(())
    } else {
        Err(status)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_writer_of_one_conversation_at_once_never_deadlocks() {
    let seed: u64 = std::env::var("ROAMING_LOCK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261201);
    let app = Arc::new(TestApp::spawn().await);
    app.add_members(ConversationType::Group, GROUP, &["alice", "bob", "carol"])
        .await;
    let stored: Stored = Arc::default();
    // Both conversations exist before the scripts start (MarkRead of a PEER conversation
    // that never started is NOT_FOUND, which the scripts allow, but then it locks nothing).
    for (kind, sender, recipient) in [
        (ConversationType::Peer, "alice", "bob"),
        (ConversationType::Group, "bob", GROUP),
    ] {
        let message = app.send(kind, sender, recipient, "first").await;
        stored
            .lock()
            .unwrap()
            .push((message, sender.to_owned(), kind == ConversationType::Group));
    }
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let app = app.clone();
        let stored = stored.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed.wrapping_add(task));
            let mut failures = Vec::new();
            for _ in 0..OPS_PER_TASK {
                if let Err(e) = step(&app, &mut rng, &stored).await {
                    failures.push(e);
                }
            }
            failures
        }));
    }
    let mut failures = Vec::new();
    for t in tasks {
        failures.extend(t.await.unwrap());
    }
    assert!(
        failures.is_empty(),
        "ROAMING_LOCK_SEED={seed}: calls that met a deadlock or another unexpected end: \
         {failures:#?}"
    );
    // At quiescence each user's counts are exact: a recount of what they see.
    app.peer("bob", "alice", "last").await;
    app.send(ConversationType::Group, "alice", GROUP, "last")
        .await;
    for user in ["alice", "bob"] {
        let client = app.user(user).await;
        let entries = client
            .conversations()
            .list_conversations(cpb::ListConversationsRequest::default())
            .await
            .expect("list")
            .into_inner()
            .conversations;
        for conversation in [peer_of(user), group()] {
            let Some(e) = entries
                .iter()
                .find(|e| e.conversation.as_ref() == Some(&conversation))
            else {
                panic!("{user}: {conversation:?} is listed after its last message");
            };
            let visible = app
                .fetch_all(user, conversation.clone(), hpb::Direction::Backward)
                .await;
            let recount = visible
                .iter()
                .filter(|m| m.seq > e.read_seq && m.sender != user)
                .count() as i64;
            assert_eq!(
                e.unread_count,
                recount.min(999),
                "ROAMING_LOCK_SEED={seed}: {user}'s unread count in {conversation:?}"
            );
        }
    }
}
