//! Recall and edit: changes for everybody by the sender, seen by both participants and by a
//! second device of each through the list, history, unread counts, sync and digests.

use crate::helpers::*;
use roaming_client::proto::common::v1::{ConversationRef, ConversationType, Message};
use roaming_client::proto::conversation::v1 as cpb;
use roaming_client::proto::history::v1 as hpb;
use tonic::Code;

async fn recall(
    client: &roaming_client::Client,
    conversation: ConversationRef,
    msg_id: &str,
) -> Result<(), tonic::Status> {
    client
        .history()
        .recall_message(hpb::RecallMessageRequest {
            conversation: Some(conversation),
            msg_id: msg_id.to_owned(),
        })
        .await
        .map(drop)
}

async fn edit(
    client: &roaming_client::Client,
    conversation: ConversationRef,
    msg_id: &str,
    body: &str,
) -> Result<Message, tonic::Status> {
    client
        .history()
        .edit_message(hpb::EditMessageRequest {
            conversation: Some(conversation),
            msg_id: msg_id.to_owned(),
            body: body.as_bytes().to_vec(),
            attributes: [("edited".to_owned(), "yes".to_owned())].into(),
        })
        .await
        .map(|r| r.into_inner().message.unwrap())
}

async fn entry(client: &roaming_client::Client, id: &str) -> cpb::Conversation {
    client
        .conversations()
        .list_conversations(cpb::ListConversationsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .conversations
        .into_iter()
        .find(|c| c.conversation.as_ref().unwrap().id == id)
        .expect("listed")
}

#[tokio::test]
async fn a_recalled_message_disappears_for_everybody_and_every_device_learns_it() {
    let app = TestApp::spawn().await;
    app.peer("alice", "bob", "one").await;
    let two = app.peer("alice", "bob", "two (a typo)").await;
    let alice_laptop = app.user("alice").await;
    let bob_phone = app.user("bob").await;
    let (_, alice_token) = sync_changes(&alice_laptop, "").await;
    let (_, bob_token) = sync_changes(&bob_phone, "").await;
    assert_eq!(entry(&bob_phone, "alice").await.unread_count, 2);
    let digest_before = bob_phone
        .history()
        .digest_history(hpb::DigestHistoryRequest {
            conversation: Some(peer("alice")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    let gateway = app.service_as("alice").await;
    recall(&gateway, peer("bob"), &two.msg_id).await.unwrap();
    // Idempotent.
    recall(&gateway, peer("bob"), &two.msg_id).await.unwrap();

    for (user, other) in [("alice", "bob"), ("bob", "alice")] {
        let history = app
            .fetch_all(user, peer(other), hpb::Direction::Backward)
            .await;
        assert_eq!(bodies(&history), ["one"], "{user}'s history");
    }
    let bob_entry = entry(&bob_phone, "alice").await;
    assert_eq!(bodies(&[bob_entry.last_message.clone().unwrap()]), ["one"]);
    assert_eq!(
        bob_entry.unread_count, 1,
        "a recalled message leaves the count"
    );
    let (changes, _) = sync_changes(&bob_phone, &bob_token).await;
    assert_eq!(
        changes[0].recalled_msg_ids,
        std::slice::from_ref(&two.msg_id)
    );
    let (changes, _) = sync_changes(&alice_laptop, &alice_token).await;
    assert_eq!(
        changes[0].recalled_msg_ids,
        std::slice::from_ref(&two.msg_id)
    );
    let digest_after = bob_phone
        .history()
        .digest_history(hpb::DigestHistoryRequest {
            conversation: Some(peer("alice")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(digest_after.buckets[0].count, 1);
    assert_ne!(
        digest_after.buckets[0].digest,
        digest_before.buckets[0].digest
    );

    // The content is erased; the idempotency key survives.
    let body: Vec<u8> = app
        .sql()
        .await
        .query_one(
            "SELECT body FROM messages WHERE conv_key = 'p:alice:bob' AND seq = 2",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(body.is_empty());
    let retry = app
        .service()
        .await
        .history()
        .append_messages(one_message(
            ConversationType::Peer,
            "alice",
            "bob",
            "two (a typo)",
            &two.client_msg_id,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(retry.results[0].duplicate);
    assert_eq!(
        app.fetch_all("bob", peer("alice"), hpb::Direction::Backward)
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn only_the_sender_within_the_window_through_a_service_may_recall() {
    let app = TestApp::spawn().await;
    let m = app.peer("alice", "bob", "hi").await;
    // A user token: backend callers only.
    assert_status(
        recall(&app.user("alice").await, peer("bob"), &m.msg_id).await,
        Code::PermissionDenied,
        "service",
    );
    // The gateway acting for the other participant.
    assert_status(
        recall(&app.service_as("bob").await, peer("alice"), &m.msg_id).await,
        Code::PermissionDenied,
        "sender",
    );
    // Without an acting user.
    assert_status(
        recall(&app.service().await, peer("bob"), &m.msg_id).await,
        Code::InvalidArgument,
        "x-roaming-user",
    );
    let gateway = app.service_as("alice").await;
    assert_status(
        recall(&gateway, peer("bob"), "99999999").await,
        Code::NotFound,
        "msg_id",
    );
    assert_status(
        recall(&gateway, peer("bob"), "nope").await,
        Code::InvalidArgument,
        "msg_id",
    );
    // Outside the window (the server's clock, moved by the test).
    app.clock.advance(2 * 60 * 1000 + 1);
    let late = recall(&gateway, peer("bob"), &m.msg_id).await.unwrap_err();
    assert_eq!(late.code(), Code::FailedPrecondition);
    // The sender's own one-way removal does not prevent a recall.
    let fresh = app.peer("alice", "bob", "again").await;
    app.user("alice")
        .await
        .history()
        .remove_messages(hpb::RemoveMessagesRequest {
            conversation: Some(peer("bob")),
            msg_ids: vec![fresh.msg_id.clone()],
        })
        .await
        .unwrap();
    recall(&gateway, peer("bob"), &fresh.msg_id).await.unwrap();
    assert_eq!(
        bodies(
            &app.fetch_all("bob", peer("alice"), hpb::Direction::Backward)
                .await
        ),
        ["hi"]
    );
    // Purged: NOT_FOUND.
    app.service_as("alice")
        .await
        .conversations()
        .remove_conversation(cpb::RemoveConversationRequest {
            conversation: Some(peer("bob")),
            delete_messages: true,
            scope: cpb::RemovalScope::ForEveryone as i32,
        })
        .await
        .unwrap();
    assert_status(
        recall(&gateway, peer("bob"), &m.msg_id).await,
        Code::NotFound,
        "purged",
    );
}

#[tokio::test]
async fn an_edit_replaces_the_content_for_everybody_and_reaches_every_device() {
    let app = TestApp::spawn().await;
    app.add_members(ConversationType::Group, "team", &["alice", "bob"])
        .await;
    let m = app
        .send(ConversationType::Group, "alice", "team", "helo")
        .await;
    let later = app.send(ConversationType::Group, "bob", "team", "hi").await;
    let bob = app.user("bob").await;
    let (_, bob_token) = sync_changes(&bob, "").await;
    let before = entry(&bob, "team").await;

    app.clock.advance(10 * 60 * 1000); // edits have no window
    let gateway = app.service_as("alice").await;
    let edited = edit(
        &gateway,
        conv(ConversationType::Group, "team"),
        &m.msg_id,
        "hello",
    )
    .await
    .unwrap();
    assert_eq!(
        (edited.edit_version, edited.seq, edited.server_time_ms),
        (1, m.seq, m.server_time_ms)
    );
    assert_eq!(edited.edited_at_ms, app.clock.now_ms());
    assert_eq!(
        edited.attributes.get("edited").map(String::as_str),
        Some("yes")
    );

    let history = app
        .fetch_all(
            "bob",
            conv(ConversationType::Group, "team"),
            hpb::Direction::Forward,
        )
        .await;
    assert_eq!(bodies(&history), ["hello", "hi"]);
    assert_eq!(history[0].edit_version, 1);
    // The list order and unread count do not move.
    let after = entry(&bob, "team").await;
    assert_eq!(after.last_activity_ms, before.last_activity_ms);
    assert_eq!(after.last_message.unwrap().msg_id, later.msg_id);
    assert_eq!(after.unread_count, before.unread_count);
    let (changes, _) = sync_changes(&bob, &bob_token).await;
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].edited_messages.len(), 1);
    assert_eq!(bodies(&changes[0].edited_messages), ["hello"]);

    // At most 10 edits.
    for n in 2..=10 {
        let e = edit(
            &gateway,
            conv(ConversationType::Group, "team"),
            &m.msg_id,
            &format!("v{n}"),
        )
        .await
        .unwrap();
        assert_eq!(e.edit_version, n);
    }
    let eleventh = edit(
        &gateway,
        conv(ConversationType::Group, "team"),
        &m.msg_id,
        "v11",
    )
    .await
    .unwrap_err();
    assert_eq!(eleventh.code(), Code::FailedPrecondition);

    // Same limits as a new message.
    let big = gateway
        .history()
        .edit_message(hpb::EditMessageRequest {
            conversation: Some(conv(ConversationType::Group, "team")),
            msg_id: later.msg_id.clone(),
            body: vec![0; 64 * 1024 + 1],
            attributes: Default::default(),
        })
        .await;
    assert_status(big, Code::InvalidArgument, "body");
    // Somebody else's message, a recalled one, an unknown one.
    assert_status(
        edit(
            &gateway,
            conv(ConversationType::Group, "team"),
            &later.msg_id,
            "x",
        )
        .await,
        Code::PermissionDenied,
        "sender",
    );
    let fresh = app
        .send(ConversationType::Group, "alice", "team", "oops")
        .await;
    recall(
        &gateway,
        conv(ConversationType::Group, "team"),
        &fresh.msg_id,
    )
    .await
    .unwrap();
    assert_status(
        edit(
            &gateway,
            conv(ConversationType::Group, "team"),
            &fresh.msg_id,
            "x",
        )
        .await,
        Code::NotFound,
        "recalled",
    );
    assert_status(
        edit(
            &gateway,
            conv(ConversationType::Group, "team"),
            "99999999",
            "x",
        )
        .await,
        Code::NotFound,
        "msg_id",
    );
}

#[tokio::test]
async fn a_recall_racing_an_edit_and_a_removal_ends_in_one_state_on_every_device() {
    let app = std::sync::Arc::new(TestApp::spawn().await);
    let mut targets = Vec::new();
    for i in 0..20 {
        targets.push(app.peer("alice", "bob", &format!("m{i}")).await);
    }
    // One message nobody touches keeps the conversation listed.
    app.peer("bob", "alice", "stays").await;
    let bob = app.user("bob").await;
    let alice = app.user("alice").await;
    let (_, bob_token) = sync_changes(&bob, "").await;
    let (_, alice_token) = sync_changes(&alice, "").await;
    // Each task says how its call ended: a recall and a removal always succeed, an edit
    // succeeds or finds the message recalled; anything else fails the test by name.
    let mut tasks: Vec<tokio::task::JoinHandle<Result<(), String>>> = Vec::new();
    for m in targets.clone() {
        let app2 = app.clone();
        let id = m.msg_id.clone();
        tasks.push(tokio::spawn(async move {
            let gateway = app2.service_as("alice").await;
            recall(&gateway, peer("bob"), &id)
                .await
                .map_err(|s| format!("recall of {id}: {s:?}"))
        }));
        let app2 = app.clone();
        let id = m.msg_id.clone();
        tasks.push(tokio::spawn(async move {
            let gateway = app2.service_as("alice").await;
            match edit(&gateway, peer("bob"), &id, "edited").await {
                Ok(_) => Ok(()),
                Err(s) if s.code() == Code::NotFound => Ok(()),
                Err(s) => Err(format!("edit of {id}: {s:?}")),
            }
        }));
        let app2 = app.clone();
        let id = m.msg_id.clone();
        tasks.push(tokio::spawn(async move {
            let bob = app2.user("bob").await;
            bob.history()
                .remove_messages(hpb::RemoveMessagesRequest {
                    conversation: Some(peer("alice")),
                    msg_ids: vec![id.clone()],
                })
                .await
                .map(drop)
                .map_err(|s| format!("removal of {id}: {s:?}"))
        }));
    }
    let mut failures = Vec::new();
    for t in tasks {
        if let Err(e) = t.await.unwrap() {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    // Every message was recalled (the recall always succeeds within the window): whatever the
    // order, nobody sees any of them, and both feeds report every one recalled.
    for (user, other) in [("bob", "alice"), ("alice", "bob")] {
        let left = app
            .fetch_all(user, peer(other), hpb::Direction::Backward)
            .await;
        assert_eq!(bodies(&left), ["stays"], "{user}");
    }
    for (client, token) in [(&bob, &bob_token), (&alice, &alice_token)] {
        let (changes, _) = sync_changes(client, token).await;
        assert_eq!(changes.len(), 1);
        let mut recalled = changes[0].recalled_msg_ids.clone();
        recalled.sort();
        let mut all: Vec<String> = targets.iter().map(|m| m.msg_id.clone()).collect();
        all.sort();
        assert_eq!(recalled, all);
        assert!(changes[0].edited_messages.is_empty());
        assert!(changes[0].listed);
        assert_eq!(
            bodies(&[changes[0].last_message.clone().unwrap()]),
            ["stays"]
        );
    }
}
