//! Read markers, unread counts, receipts, pins and marks through the typed calls: each call
//! keeps the caller's local entry right at once, and the user's other devices (and the peer,
//! for receipts) learn it by `sync`; refused calls change nothing, locally either.

use crate::support::*;
use roaming_client::{Conversation, ConversationRef, Error, LocalStore, ReadMarker, StoreEvent};
use roaming_testkit::TestApp;
use roaming_testkit::mirror::mirror_differences;

fn bob() -> ConversationRef {
    ConversationRef::peer("bob")
}

fn entry(store: &LocalStore, conversation: &ConversationRef) -> Conversation {
    store
        .conversation(conversation)
        .unwrap()
        .unwrap_or_else(|| panic!("{conversation} is in the local store"))
}

async fn assert_mirrors(app: &TestApp, user: &str, store: &LocalStore) {
    let differences = mirror_differences(app, user, store).await;
    assert!(differences.is_empty(), "{differences:#?}");
}

async fn listed(request: roaming_client::ListRequest) -> Vec<String> {
    request
        .save_locally(false)
        .page()
        .await
        .unwrap()
        .conversations
        .into_iter()
        .map(|c| c.conversation.id)
        .collect()
}

#[tokio::test]
async fn a_badge_cleared_on_one_device_clears_on_the_other_and_tells_the_peer() {
    let app = TestApp::spawn().await;
    let sent = seed(&app, "bob", "alice", 3).await;
    let (phone, phone_store) = with_store(&app, "alice").await;
    let (laptop, laptop_store) = with_store(&app, "alice").await;
    let (bobs, bobs_store) = with_store(&app, "bob").await;
    for device in [&phone, &laptop, &bobs] {
        device.sync().await.unwrap();
    }
    let badge = entry(&laptop_store, &bob()).state;
    assert_eq!((badge.read_seq, badge.unread_count), (0, 3));
    // The sender's own messages are read by sending them.
    let theirs = entry(&bobs_store, &ConversationRef::peer("alice")).state;
    assert_eq!((theirs.read_seq, theirs.unread_count), (3, 0));

    // The phone reads the first two: its own entry says so at once.
    let read = phone
        .mark_read(&bob(), Some(&sent[1].msg_id))
        .await
        .unwrap();
    assert_eq!(
        read,
        ReadMarker {
            read_seq: 2,
            unread_count: 1
        }
    );
    let badge = entry(&phone_store, &bob()).state;
    assert_eq!((badge.read_seq, badge.unread_count), (2, 1));
    // An older id never moves the marker back.
    assert_eq!(
        phone
            .mark_read(&bob(), Some(&sent[0].msg_id))
            .await
            .unwrap(),
        read
    );

    // The laptop learns it by sync, as an updated entry.
    let mut events = laptop.events().unwrap();
    laptop.sync().await.unwrap();
    let badge = entry(&laptop_store, &bob()).state;
    assert_eq!((badge.read_seq, badge.unread_count), (2, 1));
    let updates: Vec<StoreEvent> = std::iter::from_fn(|| events.try_recv().ok()).collect();
    assert!(
        updates.iter().any(|e| matches!(e,
            StoreEvent::ConversationUpdated(c) if c.conversation == bob() && c.state.unread_count == 1)),
        "{updates:?}"
    );

    // Bob's device learns the receipt.
    bobs.sync().await.unwrap();
    let receipt = entry(&bobs_store, &ConversationRef::peer("alice")).state;
    assert_eq!(receipt.peer_read_seq, 2);
    assert!(receipt.peer_has_read(sent[1].seq) && !receipt.peer_has_read(sent[2].seq));

    // Up to the newest; then alice's reply keeps it read.
    let all = laptop.mark_read(&bob(), None).await.unwrap();
    assert_eq!((all.read_seq, all.unread_count), (3, 0));
    app.peer("alice", "bob", "thanks").await;
    app.peer("bob", "alice", "you're welcome").await;
    phone.sync().await.unwrap();
    let badge = entry(&phone_store, &bob()).state;
    assert_eq!((badge.read_seq, badge.unread_count), (4, 1));

    // A foreign id is refused and changes nothing, on the server or locally.
    let foreign = app.peer("carol", "alice", "hello").await;
    let refused = phone
        .mark_read(&bob(), Some(&foreign.msg_id))
        .await
        .unwrap_err();
    assert!(matches!(refused, Error::NotFound(_)), "{refused:?}");
    assert_eq!(entry(&phone_store, &bob()).state, badge);

    for (user, device, store) in [
        ("alice", &phone, &phone_store),
        ("alice", &laptop, &laptop_store),
        ("bob", &bobs, &bobs_store),
    ] {
        device.sync().await.unwrap();
        assert_mirrors(&app, user, store).await;
    }
}

#[tokio::test]
async fn pins_and_marks_follow_the_user_to_every_device_and_filter_the_list() {
    let app = TestApp::spawn_with(|c| c.max_pinned = 2).await;
    for other in ["bob", "carol", "dave"] {
        app.peer(other, "alice", "hi").await;
        app.clock.advance(1_000);
    }
    let (phone, phone_store) = with_store(&app, "alice").await;
    let (laptop, laptop_store) = with_store(&app, "alice").await;
    phone.sync().await.unwrap();
    laptop.sync().await.unwrap();

    let first = phone.pin(&bob(), true).await.unwrap().expect("pinned");
    assert_eq!(entry(&phone_store, &bob()).state.pinned_at_ms, Some(first));
    app.clock.advance(1_000);
    let carol = ConversationRef::peer("carol");
    assert!(phone.pin(&carol, true).await.unwrap().unwrap() > first);
    // Pinning again keeps the first time.
    assert_eq!(phone.pin(&bob(), true).await.unwrap(), Some(first));
    // One more than the limit is refused, and nothing changes locally.
    let dave = ConversationRef::peer("dave");
    let refused = phone.pin(&dave, true).await.unwrap_err();
    assert!(
        matches!(refused, Error::FailedPrecondition(_)),
        "{refused:?}"
    );
    assert!(!entry(&phone_store, &dave).state.pinned());

    let marks = phone
        .mark_conversation(&bob(), ["work", "family"], Vec::<String>::new())
        .await
        .unwrap();
    assert_eq!(marks, ["family", "work"]);
    assert_eq!(entry(&phone_store, &bob()).state.marks, marks);
    let bad = phone
        .mark_conversation(&bob(), ["no spaces"], ["work"])
        .await
        .unwrap_err();
    assert!(matches!(bad, Error::InvalidArgument(_)), "{bad:?}");
    assert_eq!(entry(&phone_store, &bob()).state.marks, marks);

    // The laptop: pins and marks by sync, most recently pinned first offline too.
    laptop.sync().await.unwrap();
    let pinned: Vec<String> = laptop_store
        .pinned_conversations()
        .unwrap()
        .into_iter()
        .map(|c| c.conversation.id)
        .collect();
    assert_eq!(pinned, ["carol", "bob"]);
    assert_eq!(entry(&laptop_store, &bob()).state.marks, ["family", "work"]);
    assert_eq!(entry(&laptop_store, &bob()).state.pinned_at_ms, Some(first));

    // The typed list filters.
    assert_eq!(
        listed(laptop.list_conversations().pinned_only(true)).await,
        ["carol", "bob"]
    );
    assert_eq!(
        listed(laptop.list_conversations().mark("work")).await,
        ["bob"]
    );
    assert!(
        listed(laptop.list_conversations().mark("other"))
            .await
            .is_empty()
    );
    assert!(
        listed(
            laptop
                .list_conversations()
                .pinned_only(true)
                .mark("family")
                .page_size(1)
        )
        .await
        .contains(&"bob".to_owned())
    );

    // Unpinning on the laptop frees a place; the phone learns it.
    assert_eq!(laptop.pin(&carol, false).await.unwrap(), None);
    assert!(!entry(&laptop_store, &carol).state.pinned());
    assert!(phone.pin(&dave, true).await.unwrap().is_some());
    phone.sync().await.unwrap();
    laptop.sync().await.unwrap();
    assert!(!entry(&phone_store, &carol).state.pinned());
    assert!(entry(&laptop_store, &dave).state.pinned());
    assert_mirrors(&app, "alice", &phone_store).await;
    assert_mirrors(&app, "alice", &laptop_store).await;
}

#[tokio::test]
async fn a_store_made_before_read_state_opens_with_nothing_read_and_nothing_pinned() {
    let db = TempDb::new();
    {
        // The version-2 layout of the entries, with one entry in it.
        let old = rusqlite::Connection::open(&db.0).unwrap();
        old.execute_batch(
            "CREATE TABLE conversations (
                 conv_type INTEGER NOT NULL, conv_id TEXT NOT NULL,
                 last_activity_ms INTEGER NOT NULL, last_message BLOB,
                 PRIMARY KEY (conv_type, conv_id));
             INSERT INTO conversations VALUES (1, 'bob', 1000, NULL);
             PRAGMA user_version = 2;",
        )
        .unwrap();
    }
    let store = LocalStore::open(&db.0).unwrap();
    let entry = entry(&store, &bob());
    assert_eq!(entry.last_activity_ms, 1000);
    assert_eq!(entry.state, Default::default());
    // Opening it again finds the columns there.
    drop(store);
    LocalStore::open(&db.0).unwrap();
}
