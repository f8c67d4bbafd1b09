//! Recall and edit through the typed calls: the caller's local store applies them at once,
//! the other participant's devices by `sync` (with the events an application redraws on);
//! refused calls (outside the window, a recalled message, a user token) change nothing.

use crate::support::*;
use futures::TryStreamExt;
use roaming_client::{Client, ConversationRef, Error, LocalStore, Message, StoreEvent};
use roaming_testkit::TestApp;
use roaming_testkit::mirror::mirror_differences;
use std::collections::HashMap;

fn alice() -> ConversationRef {
    ConversationRef::peer("alice")
}

fn bob() -> ConversationRef {
    ConversationRef::peer("bob")
}

/// The gateway acting for `user`, keeping what it fetched in `store`.
async fn gateway_for(app: &TestApp, user: &str, store: LocalStore) -> Client {
    Client::builder(app.endpoint.clone())
        .token(app.token("gateway", true))
        .act_as(user)
        .local_store(store)
        .retry(fast_retry())
        .connect()
        .await
        .unwrap()
}

async fn read_all(client: &Client, conversation: ConversationRef) -> Vec<Message> {
    client
        .fetch_history(conversation)
        .messages()
        .try_collect()
        .await
        .unwrap()
}

fn held(store: &LocalStore, msg_id: &str) -> Option<Message> {
    store.message(msg_id).unwrap()
}

#[tokio::test]
async fn edits_and_recalls_reach_the_other_participants_devices() {
    let app = TestApp::spawn().await;
    let sent = seed(&app, "alice", "bob", 3).await;
    let alices_store = LocalStore::in_memory().unwrap();
    let gateway = gateway_for(&app, "alice", alices_store.clone()).await;
    read_all(&gateway, bob()).await;
    let (bobs_phone, phone_store) = with_store(&app, "bob").await;
    let (bobs_laptop, laptop_store) = with_store(&app, "bob").await;
    for device in [&bobs_phone, &bobs_laptop] {
        device.sync().await.unwrap();
        read_all(device, alice()).await;
    }

    // Edit the newest: the sender's store holds the new version at once.
    let newest = &sent[2];
    let attributes = HashMap::from([("lang".to_owned(), "en".to_owned())]);
    let edited = gateway
        .edit(&bob(), &newest.msg_id, "m2, fixed", attributes.clone())
        .await
        .unwrap();
    assert_eq!(
        (edited.edit_version, edited.seq, edited.server_time_ms),
        (1, newest.seq, newest.server_time_ms)
    );
    assert_eq!(edited.text(), Some("m2, fixed"));
    assert_eq!(edited.attributes, attributes);
    assert_eq!(held(&alices_store, &newest.msg_id), Some(edited.clone()));
    let alices_entry = alices_store.conversation(&bob()).unwrap().unwrap();
    assert_eq!(alices_entry.last_message, Some(edited.clone()));

    // Bob's devices: by sync, announced as an edit, the entry's last message too.
    let mut events = bobs_laptop.events().unwrap();
    bobs_laptop.sync().await.unwrap();
    let on_laptop = held(&laptop_store, &newest.msg_id).unwrap();
    assert_eq!(
        (on_laptop.text(), on_laptop.edit_version),
        (Some("m2, fixed"), 1)
    );
    let entry = laptop_store.conversation(&alice()).unwrap().unwrap();
    assert_eq!(entry.last_message.unwrap().edit_version, 1);
    let seen: Vec<StoreEvent> = std::iter::from_fn(|| events.try_recv().ok()).collect();
    assert!(
        seen.iter().any(|e| matches!(e,
            StoreEvent::MessagesEdited { messages, .. } if messages[0].msg_id == newest.msg_id)),
        "{seen:?}"
    );

    // Recall the newest: gone from the sender's store at once, the entry falls back.
    gateway.recall(&bob(), &newest.msg_id).await.unwrap();
    assert_eq!(held(&alices_store, &newest.msg_id), None);
    let alices_entry = alices_store.conversation(&bob()).unwrap().unwrap();
    assert_eq!(alices_entry.last_message.unwrap().msg_id, sent[1].msg_id);
    // Idempotent.
    gateway.recall(&bob(), &newest.msg_id).await.unwrap();

    let mut events = bobs_phone.events().unwrap();
    bobs_phone.sync().await.unwrap();
    assert_eq!(held(&phone_store, &newest.msg_id), None);
    let seen: Vec<StoreEvent> = std::iter::from_fn(|| events.try_recv().ok()).collect();
    assert!(
        seen.iter().any(|e| matches!(e,
            StoreEvent::MessagesRecalled { msg_ids, .. } if msg_ids == std::slice::from_ref(&newest.msg_id))),
        "{seen:?}"
    );
    let entry = phone_store.conversation(&alice()).unwrap().unwrap();
    assert_eq!(entry.last_message.unwrap().msg_id, sent[1].msg_id);
    // The recalled message left bob's unread count (3 sent, 1 recalled).
    assert_eq!(entry.state.unread_count, 2);

    // Refused, and nothing changes: an edit of the recalled message; a recall outside the
    // window (the server's clock moved past it); bob's own token.
    let gone = gateway
        .edit(&bob(), &newest.msg_id, "again", HashMap::new())
        .await
        .unwrap_err();
    assert!(matches!(gone, Error::NotFound(_)), "{gone:?}");
    app.clock.advance(3 * 60 * 1000);
    let late = gateway.recall(&bob(), &sent[0].msg_id).await.unwrap_err();
    assert!(matches!(late, Error::FailedPrecondition(_)), "{late:?}");
    assert!(held(&alices_store, &sent[0].msg_id).is_some());
    let own = bobs_phone
        .edit(&alice(), &sent[1].msg_id, "mine now", HashMap::new())
        .await
        .unwrap_err();
    assert!(matches!(own, Error::PermissionDenied(_)), "{own:?}");

    for (device, store) in [(&bobs_phone, &phone_store), (&bobs_laptop, &laptop_store)] {
        device.sync().await.unwrap();
        let differences = mirror_differences(&app, "bob", store).await;
        assert!(differences.is_empty(), "{differences:#?}");
    }
}
