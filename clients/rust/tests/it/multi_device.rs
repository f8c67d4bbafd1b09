//! Two devices of one user, each with its own local store: what one does reaches the other's
//! store by `sync`; a device past the change retention is rebuilt; `verify` repairs exactly
//! the buckets that differ; events; each page applied with its token, atomically; repeats
//! change nothing; a store belongs to one user.

use crate::support::*;
use futures::TryStreamExt;
use roaming_client::proto::history::v1 as hpb;
use roaming_client::{
    Client, ConversationRef, Direction, Error, LocalQuery, LocalStore, Message, RemovalScope,
    StoreEvent,
};
use roaming_testkit::mirror::mirror_differences;
use roaming_testkit::{DAY_MS, TestApp};
use tokio::sync::broadcast;

fn bob() -> ConversationRef {
    ConversationRef::peer("bob")
}

fn all_of(store: &LocalStore, conversation: &ConversationRef) -> Vec<Message> {
    store
        .history(
            conversation,
            &LocalQuery {
                direction: Direction::Forward,
                start_msg_id: None,
                limit: usize::MAX,
            },
        )
        .unwrap()
}

#[track_caller]
fn assert_no_differences(differences: Vec<String>) {
    assert!(differences.is_empty(), "{differences:#?}");
}

async fn assert_mirrors(app: &TestApp, user: &str, store: &LocalStore) {
    assert_no_differences(mirror_differences(app, user, store).await);
}

/// Every event sent so far.
fn drain(events: &mut broadcast::Receiver<StoreEvent>) -> Vec<StoreEvent> {
    let mut out = Vec::new();
    while let Ok(event) = events.try_recv() {
        out.push(event);
    }
    out
}

/// Reads a conversation's whole history through `client` (saving it locally).
async fn read_all(client: &Client, conversation: ConversationRef) -> Vec<Message> {
    client
        .fetch_history(conversation)
        .messages()
        .try_collect()
        .await
        .unwrap()
}

/// A raw SQLite connection to a store file, as a tamperer (or a test) has it.
fn raw(db: &TempDb) -> rusqlite::Connection {
    rusqlite::Connection::open(&db.0).unwrap()
}

#[tokio::test]
async fn removals_on_one_device_reach_the_other_devices_store_by_sync() {
    let app = TestApp::spawn().await;
    let sent = seed(&app, "bob", "alice", 6).await;
    seed(&app, "carol", "alice", 2).await;
    let (phone, phone_store) = with_store(&app, "alice").await;
    let (laptop, store) = with_store(&app, "alice").await;
    for device in [&phone, &laptop] {
        let report = device.sync().await.unwrap();
        assert!(report.snapshot && !report.rebuilt);
        assert_eq!((report.pages, report.changes), (1, 2));
        read_all(device, bob()).await;
    }
    assert_mirrors(&app, "alice", &store).await;
    let mut events = laptop.events().unwrap();

    // By id: the newest message, so the list entry falls back to the one before.
    phone
        .remove_messages(&bob(), [sent[5].msg_id.clone()])
        .await
        .unwrap();
    let report = laptop.sync().await.unwrap();
    assert!(!report.snapshot);
    assert_eq!((report.changes, report.messages_removed), (1, 1));
    assert_eq!(seqs(&all_of(&store, &bob())), [1, 2, 3, 4, 5]);
    let entry = store
        .conversations()
        .unwrap()
        .into_iter()
        .find(|c| c.conversation == bob())
        .unwrap();
    assert_eq!(entry.last_message.as_ref().unwrap().seq, 5);
    assert_eq!(
        drain(&mut events),
        [
            StoreEvent::MessagesRemoved {
                conversation: bob(),
                msg_ids: vec![sent[5].msg_id.clone()],
            },
            StoreEvent::ConversationUpdated(Box::new(entry)),
        ]
    );

    // Before a time: the list entry keeps its last message; its unread count drops by the
    // three hidden messages.
    phone
        .remove_messages_before(&bob(), sent[2].server_time_ms)
        .await
        .unwrap();
    laptop.sync().await.unwrap();
    assert_eq!(seqs(&all_of(&store, &bob())), [4, 5]);
    let entry = store.conversation(&bob()).unwrap().unwrap();
    assert_eq!(entry.last_message.as_ref().unwrap().seq, 5);
    assert_eq!(entry.state.unread_count, 2);
    assert_eq!(
        drain(&mut events),
        [
            StoreEvent::MessagesRemoved {
                conversation: bob(),
                msg_ids: sent[..3].iter().map(|m| m.msg_id.clone()).collect(),
            },
            StoreEvent::ConversationUpdated(Box::new(entry)),
        ]
    );

    // A conversation, one-way, without its messages: on the laptop it goes, messages too.
    let carol = ConversationRef::peer("carol");
    read_all(&laptop, carol.clone()).await;
    phone
        .remove_conversation(&carol, false, RemovalScope::ForMe)
        .await
        .unwrap();
    let report = laptop.sync().await.unwrap();
    assert_eq!(report.conversations_removed, 1);
    assert!(!store.stored_conversations().unwrap().contains(&carol));
    assert!(all_of(&store, &carol).is_empty());
    assert_eq!(
        drain(&mut events),
        [StoreEvent::ConversationRemoved(carol.clone())]
    );

    // Both devices mirror the server once the phone syncs too.
    phone.sync().await.unwrap();
    assert_mirrors(&app, "alice", &store).await;
    assert_mirrors(&app, "alice", &phone_store).await;
}

#[tokio::test]
async fn new_messages_reach_the_other_devices_store_by_sync() {
    let app = TestApp::spawn().await;
    seed(&app, "bob", "alice", 3).await;
    let (laptop, store) = with_store(&app, "alice").await;
    laptop.sync().await.unwrap();
    read_all(&laptop, bob()).await;
    let mut events = laptop.events().unwrap();

    // Bob writes four more, alice (on her phone) answers, erin starts a conversation.
    let mut newer = seed(&app, "bob", "alice", 4).await;
    newer.extend(seed(&app, "alice", "bob", 1).await);
    seed(&app, "erin", "alice", 1).await;
    let report = laptop.sync().await.unwrap();
    assert_eq!(report.changes, 2);
    assert_eq!(report.messages_received, 6);
    assert_eq!(seqs(&all_of(&store, &bob())), (1..=8).collect::<Vec<_>>());
    assert_eq!(store.complete_ranges(&bob()).unwrap(), [1..=8]);
    // Erin's conversation: its entry and last message, no history fetched.
    let erin = ConversationRef::peer("erin");
    assert_eq!(seqs(&all_of(&store, &erin)), [1]);
    assert_eq!(store.complete_ranges(&erin).unwrap(), [1..=1]);

    let got = drain(&mut events);
    let received: Vec<(ConversationRef, Vec<i64>)> = got
        .iter()
        .filter_map(|e| match e {
            StoreEvent::MessagesReceived {
                conversation,
                messages,
            } => Some((conversation.clone(), seqs(messages))),
            _ => None,
        })
        .collect();
    assert_eq!(received.len(), 2, "{got:?}");
    assert!(received.contains(&(bob(), vec![4, 5, 6, 7, 8])), "{got:?}");
    assert!(received.contains(&(erin.clone(), vec![1])), "{got:?}");
    let updated: Vec<(ConversationRef, i64)> = got
        .iter()
        .filter_map(|e| match e {
            StoreEvent::ConversationUpdated(c) => {
                Some((c.conversation.clone(), c.last_message.as_ref().unwrap().seq))
            }
            _ => None,
        })
        .collect();
    assert_eq!(updated.len(), 2, "{got:?}");
    assert!(updated.contains(&(bob(), 8)) && updated.contains(&(erin, 1)));
    assert_mirrors(&app, "alice", &store).await;

    // Nothing new: an empty delta, no event.
    let report = laptop.sync().await.unwrap();
    assert_eq!((report.pages, report.changes), (1, 0));
    assert!(drain(&mut events).is_empty());
}

#[tokio::test]
async fn purges_and_membership_reach_the_store_by_sync() {
    use roaming_client::proto::common::v1::ConversationType as Kind;
    let app = TestApp::spawn().await;
    let team = ConversationRef::group("team");
    app.add_members(Kind::Group, "team", &["alice", "bob"])
        .await;
    for text in ["a", "b", "c"] {
        app.send(Kind::Group, "bob", "team", text).await;
    }
    let (laptop, store) = with_store(&app, "alice").await;
    laptop.sync().await.unwrap();
    assert_eq!(read_all(&laptop, team.clone()).await.len(), 3);
    let mut events = laptop.events().unwrap();
    let service = app.service().await;

    // Purged for everyone with its messages: off the list, nothing of it stays.
    service
        .remove_conversation(&team, true, RemovalScope::ForEveryone)
        .await
        .unwrap();
    laptop.sync().await.unwrap();
    assert!(store.stored_conversations().unwrap().is_empty());
    assert_eq!(
        drain(&mut events),
        [StoreEvent::ConversationRemoved(team.clone())]
    );

    // A newer message brings it back, with only what is visible.
    app.send(Kind::Group, "bob", "team", "d").await;
    laptop.sync().await.unwrap();
    assert_eq!(texts(&all_of(&store, &team)), ["d"]);
    assert_mirrors(&app, "alice", &store).await;

    // Membership ended: dropped.
    service.remove_members(&team, ["alice"]).await.unwrap();
    laptop.sync().await.unwrap();
    assert!(store.stored_conversations().unwrap().is_empty());
    assert_mirrors(&app, "alice", &store).await;
}

#[tokio::test]
async fn an_offline_device_past_retention_is_rebuilt_from_a_snapshot_and_converges() {
    let app = TestApp::spawn().await;
    let sent = seed(&app, "bob", "alice", 5).await;
    seed(&app, "carol", "alice", 2).await;
    let (phone, _) = with_store(&app, "alice").await;
    let (laptop, store) = with_store(&app, "alice").await;
    phone.sync().await.unwrap();
    laptop.sync().await.unwrap();
    read_all(&laptop, bob()).await;
    let stale_token = store.sync_token().unwrap();
    let mut events = laptop.events().unwrap();

    // The laptop is away for 31 days while the phone removes and a new conversation starts.
    app.clock.advance(31 * DAY_MS);
    phone
        .remove_messages(&bob(), [sent[1].msg_id.clone()])
        .await
        .unwrap();
    phone
        .remove_conversation(&ConversationRef::peer("carol"), true, RemovalScope::ForMe)
        .await
        .unwrap();
    seed(&app, "dave", "alice", 1).await;

    let report = laptop.sync().await.unwrap();
    assert!(report.rebuilt && report.snapshot, "{report:?}");
    assert_ne!(store.sync_token().unwrap(), stale_token);
    let events = drain(&mut events);
    assert_eq!(
        events.first(),
        Some(&StoreEvent::MirrorReset { rebuilt: true }),
        "{events:?}"
    );
    // The history fetched before was replaced: bob's conversation is back to its entry.
    assert_eq!(seqs(&all_of(&store, &bob())), [5]);
    let listed: Vec<String> = store
        .conversations()
        .unwrap()
        .into_iter()
        .map(|c| c.conversation.id)
        .collect();
    assert_eq!(listed, ["dave", "bob"]);
    assert_mirrors(&app, "alice", &store).await;

    // From here on, deltas again.
    seed(&app, "bob", "alice", 1).await;
    let report = laptop.sync().await.unwrap();
    assert!(!report.snapshot && !report.rebuilt);
    assert_eq!(seqs(&all_of(&store, &bob())), [5, 6]);
    assert_mirrors(&app, "alice", &store).await;
}

#[tokio::test]
async fn verify_finds_and_refetches_exactly_the_buckets_that_differ() {
    let app = TestApp::spawn().await;
    let sent = seed(&app, "bob", "alice", 30).await;
    let db = TempDb::new();
    let store = LocalStore::open(&db.0).unwrap();
    let alice = on_store(&app, "alice", store.clone()).await;
    alice.sync().await.unwrap();
    read_all(&alice, bob()).await;
    let clean = alice.verify(&bob()).bucket_size(10).await.unwrap();
    assert_eq!(clean.range, Some(1..=30));
    assert_eq!(clean.buckets_checked, 3);
    assert!(clean.differing.is_empty() && clean.buckets_refetched == 0);

    // Corrupt the copy: a row dropped behind the client's back, and a stale edit version.
    raw(&db)
        .execute("DELETE FROM messages WHERE conv_id = 'bob' AND seq = 7", [])
        .unwrap();
    let mut stale = all_of(&store, &bob())
        .into_iter()
        .find(|m| m.seq == 23)
        .unwrap();
    stale.edit_version = 3;
    store.save_messages(&[stale]).unwrap();
    let mut events = alice.events().unwrap();

    let report = alice.verify(&bob()).bucket_size(10).await.unwrap();
    assert_eq!(report.buckets_checked, 3);
    assert_eq!(report.differing, [1..=10, 21..=30]);
    assert_eq!(report.buckets_refetched, 2);
    assert_eq!(report.messages_refetched, 20);
    assert_eq!(
        drain(&mut events),
        [
            StoreEvent::MessagesReplaced {
                conversation: bob(),
                from_seq: 21,
                to_seq: 30
            },
            StoreEvent::MessagesReplaced {
                conversation: bob(),
                from_seq: 1,
                to_seq: 10
            },
        ]
    );
    let server = read_all(&app.user("alice").await, bob()).await;
    let mut local = all_of(&store, &bob());
    local.reverse();
    assert_eq!(local, server);
    assert_mirrors(&app, "alice", &store).await;

    // A removal this device missed (made elsewhere, not yet synced) is found the same way.
    app.user("alice")
        .await
        .history()
        .remove_messages(hpb::RemoveMessagesRequest {
            conversation: Some(bob().to_proto()),
            msg_ids: vec![sent[14].msg_id.clone()],
        })
        .await
        .unwrap();
    let report = alice.verify(&bob()).bucket_size(10).await.unwrap();
    assert_eq!(report.differing, [11..=20]);
    assert_eq!(report.messages_refetched, 9);
    assert!(!seqs(&all_of(&store, &bob())).contains(&15));
    let again = alice.verify(&bob()).bucket_size(10).await.unwrap();
    assert!(again.differing.is_empty());
}

#[tokio::test]
async fn a_failure_between_pages_leaves_the_store_at_the_previous_pages_token() {
    let app = TestApp::spawn().await;
    for i in 0..5 {
        seed(&app, &format!("u{i}"), "alice", 1).await;
    }
    let db = TempDb::new();
    let store = LocalStore::open(&db.0).unwrap();
    let alice = on_store(&app, "alice", store.clone()).await;

    // Pages of two, newest first: [u4, u3], [u2, u1], [u0]. Writing u2 fails, so the second
    // page's transaction fails as a crash there would.
    raw(&db)
        .execute_batch(
            "CREATE TRIGGER fail_u2 BEFORE INSERT ON conversations WHEN NEW.conv_id = 'u2'
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
        )
        .unwrap();
    let error = alice.sync().page_size(2).await.unwrap_err();
    assert!(
        matches!(&error, Error::LocalStore(m) if m.contains("injected failure")),
        "{error:?}"
    );
    let after_first = store.sync_token().unwrap();
    assert!(after_first.is_some(), "the first page's token is stored");
    let held: Vec<String> = store
        .stored_conversations()
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(
        held,
        ["u3", "u4"],
        "the first page only, nothing of the second"
    );

    // The next sync resumes right after the first page: the rest, no snapshot again.
    raw(&db).execute_batch("DROP TRIGGER fail_u2").unwrap();
    let report = alice.sync().page_size(2).await.unwrap();
    assert!(!report.snapshot, "{report:?}");
    assert_eq!((report.pages, report.changes), (2, 3));
    assert_eq!(store.conversations().unwrap().len(), 5);
    assert_mirrors(&app, "alice", &store).await;
}

#[tokio::test]
async fn repeated_changes_change_nothing_and_announce_nothing() {
    let app = TestApp::spawn().await;
    let sent = seed(&app, "bob", "alice", 4).await;
    seed(&app, "carol", "alice", 1).await;
    let db = TempDb::new();
    let store = LocalStore::open(&db.0).unwrap();
    let alice = on_store(&app, "alice", store.clone()).await;
    alice.sync().await.unwrap();
    read_all(&alice, bob()).await;
    let old_token = store.sync_token().unwrap().unwrap();

    let phone = app.user("alice").await;
    phone
        .remove_messages(&bob(), [sent[0].msg_id.clone()])
        .await
        .unwrap();
    phone
        .remove_conversation(&ConversationRef::peer("carol"), false, RemovalScope::ForMe)
        .await
        .unwrap();
    seed(&app, "bob", "alice", 2).await;
    let first = alice.sync().await.unwrap();
    assert_eq!(first.changes, 2);
    let state = |store: &LocalStore| {
        (
            store.conversations().unwrap(),
            all_of(store, &bob()),
            store.complete_ranges(&bob()).unwrap(),
            store.stored_conversations().unwrap(),
        )
    };
    let before = state(&store);

    // The same changes again, from the older token.
    raw(&db)
        .execute("UPDATE sync_state SET token = ?1", [&old_token])
        .unwrap();
    let mut events = alice.events().unwrap();
    let again = alice.sync().await.unwrap();
    assert_eq!(again.changes, 2);
    assert_eq!(
        (
            again.conversations_updated,
            again.conversations_removed,
            again.messages_received,
            again.messages_removed
        ),
        (0, 0, 0, 0),
        "{again:?}"
    );
    assert!(drain(&mut events).is_empty());
    assert_eq!(state(&store), before);
    assert_mirrors(&app, "alice", &store).await;
}

#[tokio::test]
async fn a_store_holding_another_users_token_is_refused() {
    let app = TestApp::spawn().await;
    seed(&app, "bob", "alice", 1).await;
    seed(&app, "alice", "bob", 1).await;
    let db = TempDb::new();
    let alice = on_store(&app, "alice", LocalStore::open(&db.0).unwrap()).await;
    alice.sync().await.unwrap();
    let store = LocalStore::open(&db.0).unwrap();
    assert_eq!(store.owner().unwrap().as_deref(), Some("alice"));
    let token = store.sync_token().unwrap();

    let bob = on_store(&app, "bob", store.clone()).await;
    assert_eq!(bob.user_id().as_deref(), Some("bob"));
    let error = bob.sync().await.unwrap_err();
    assert!(
        matches!(&error, Error::ForeignLocalStore(m) if m.contains("alice") && m.contains("bob")),
        "{error:?}"
    );
    assert_eq!(store.sync_token().unwrap(), token, "nothing changed");

    // A store that does not know whose token it holds: the server tells.
    raw(&db)
        .execute("UPDATE sync_state SET user = NULL", [])
        .unwrap();
    let error = bob.sync().await.unwrap_err();
    assert!(
        matches!(&error, Error::ForeignLocalStore(m) if m.contains("another user")),
        "{error:?}"
    );
    assert_eq!(store.sync_token().unwrap(), token);
}
