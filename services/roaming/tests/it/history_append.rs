//! AppendMessages: idempotent ingest, whole-batch validation, membership.

use crate::helpers::*;
use roaming_client::proto::common::v1::{ConversationType, MessageType};
use roaming_client::proto::history::v1 as hpb;
use tonic::Code;

/// Turns a valid message into one that breaks a rule.
type Breaker = Box<dyn Fn(&mut hpb::NewMessage)>;

fn append(messages: Vec<hpb::NewMessage>) -> hpb::AppendMessagesRequest {
    hpb::AppendMessagesRequest { messages }
}

#[tokio::test]
async fn appended_messages_get_ids_gapless_seqs_and_the_server_time() {
    let app = TestApp::spawn().await;
    let service = app.service().await;
    let now = app.clock.now_ms();
    let mut m = new_message(ConversationType::Peer, "alice", "bob", "hi", "c1");
    m.attributes.insert("em_ext".into(), "1".into());
    m.r#type = MessageType::Image as i32;
    let response = service
        .history()
        .append_messages(append(vec![
            m,
            new_message(ConversationType::Peer, "bob", "alice", "yo", "c1"),
        ]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.results.len(), 2);
    let first = response.results[0].message.clone().unwrap();
    let second = response.results[1].message.clone().unwrap();
    assert!(!response.results[0].duplicate && !response.results[1].duplicate);
    assert_eq!((first.seq, second.seq), (1, 2));
    assert_ne!(first.msg_id, second.msg_id);
    assert!(first.msg_id.parse::<u64>().is_ok());
    assert_eq!(first.server_time_ms, now);
    assert_eq!(first.conversation, Some(peer("bob")), "the sender's view");
    assert_eq!(second.conversation, Some(peer("alice")));
    assert_eq!(
        first.attributes.get("em_ext").map(String::as_str),
        Some("1")
    );
    assert_eq!(first.r#type, MessageType::Image as i32);
    assert_eq!(first.recipient, "bob");

    let stored = app
        .fetch_all("bob", peer("alice"), hpb::Direction::Forward)
        .await;
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0].msg_id, first.msg_id);
    assert_eq!(stored[0].attributes, first.attributes);
    assert_eq!(
        stored[0].conversation,
        Some(peer("alice")),
        "the reader's view"
    );
}

#[tokio::test]
async fn a_retried_message_is_stored_once_and_returns_the_original() {
    let app = TestApp::spawn().await;
    let original = app
        .send_with_id(ConversationType::Peer, "alice", "bob", "hi", "retry-1")
        .await;
    app.clock.advance(5_000);
    let response = app
        .service()
        .await
        .history()
        .append_messages(append(vec![new_message(
            ConversationType::Peer,
            "alice",
            "bob",
            "changed",
            "retry-1",
        )]))
        .await
        .unwrap()
        .into_inner();
    assert!(response.results[0].duplicate);
    assert_eq!(response.results[0].message, Some(original.clone()));
    // Same client_msg_id from the other sender, or in another conversation, is a new message.
    let other_sender = app
        .send_with_id(ConversationType::Peer, "bob", "alice", "x", "retry-1")
        .await;
    let other_conv = app
        .send_with_id(ConversationType::Peer, "alice", "carol", "x", "retry-1")
        .await;
    assert_eq!(other_sender.seq, 2);
    assert_eq!(other_conv.seq, 1);
    assert_eq!(
        app.fetch_all("alice", peer("bob"), hpb::Direction::Forward)
            .await
            .len(),
        2
    );
}

#[tokio::test]
async fn a_message_repeated_within_one_batch_is_stored_once() {
    let app = TestApp::spawn().await;
    let m = new_message(ConversationType::Peer, "alice", "bob", "hi", "same");
    let response = app
        .service()
        .await
        .history()
        .append_messages(append(vec![m.clone(), m]))
        .await
        .unwrap()
        .into_inner();
    assert!(!response.results[0].duplicate);
    assert!(response.results[1].duplicate);
    assert_eq!(response.results[0].message, response.results[1].message);
    assert_eq!(
        app.fetch_all("alice", peer("bob"), hpb::Direction::Forward)
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn server_time_never_decreases_within_a_conversation() {
    let app = TestApp::spawn().await;
    let first = app.peer("alice", "bob", "1").await;
    app.clock.advance(-60_000); // a replica whose clock is behind
    let second = app.peer("alice", "bob", "2").await;
    assert!(second.server_time_ms >= first.server_time_ms);
    assert_eq!(second.seq, 2);
}

#[tokio::test]
async fn a_batch_with_one_bad_message_is_rejected_whole_and_names_the_field() {
    let app = TestApp::spawn().await;
    let ok = |i: usize| {
        new_message(
            ConversationType::Peer,
            "alice",
            "bob",
            "ok",
            &format!("ok{i}"),
        )
    };
    let limits = roaming_domain::Limits::DEFAULT;
    let cases: Vec<(&str, Breaker)> = vec![
        (
            "messages[1].conversation_type",
            Box::new(|m| m.conversation_type = 0),
        ),
        (
            "messages[1].conversation_type",
            Box::new(|m| m.conversation_type = 42),
        ),
        ("messages[1].sender", Box::new(|m| m.sender = String::new())),
        (
            "messages[1].sender",
            Box::new(|m| m.sender = "bad id".into()),
        ),
        (
            "messages[1].recipient",
            Box::new(|m| m.recipient = "x".repeat(65)),
        ),
        ("messages[1].type", Box::new(|m| m.r#type = 99)),
        (
            "messages[1].body",
            Box::new(move |m| m.body = vec![0; limits.max_body_bytes + 1]),
        ),
        (
            "messages[1].attributes",
            Box::new(|m| m.attributes = (0..33).map(|i| (format!("k{i}"), "v".into())).collect()),
        ),
        (
            "messages[1].attributes",
            Box::new(|m| {
                m.attributes.insert("k".into(), "v".repeat(1025));
            }),
        ),
        (
            "messages[1].client_msg_id",
            Box::new(|m| m.client_msg_id = String::new()),
        ),
        (
            "messages[1].client_msg_id",
            Box::new(|m| m.client_msg_id = "c".repeat(65)),
        ),
    ];
    let service = app.service().await;
    for (field, breaks) in cases {
        let mut bad = ok(1);
        breaks(&mut bad);
        let result = service
            .history()
            .append_messages(append(vec![ok(0), bad, ok(2)]))
            .await;
        assert_status(result, Code::InvalidArgument, field);
    }
    assert_status(
        service.history().append_messages(append(vec![])).await,
        Code::InvalidArgument,
        "messages",
    );
    let too_many: Vec<_> = (0..101).map(ok).collect();
    assert_status(
        service.history().append_messages(append(too_many)).await,
        Code::InvalidArgument,
        "messages",
    );
    // Limits are inclusive: exactly the maximum is accepted.
    let mut edge = ok(7);
    edge.body = vec![1; limits.max_body_bytes];
    edge.client_msg_id = "c".repeat(64);
    assert!(
        service
            .history()
            .append_messages(append(vec![edge]))
            .await
            .is_ok()
    );
    // Nothing of the rejected batches was written.
    let stored = app
        .fetch_all("alice", peer("bob"), hpb::Direction::Forward)
        .await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].seq, 1);
}

#[tokio::test]
async fn a_group_sender_must_be_a_member_or_nothing_of_the_batch_is_stored() {
    let app = TestApp::spawn().await;
    app.add_members(ConversationType::Group, "g1", &["alice", "bob"])
        .await;
    let service = app.service().await;
    let result = service
        .history()
        .append_messages(append(vec![
            new_message(ConversationType::Peer, "alice", "bob", "peer", "p1"),
            new_message(ConversationType::Group, "alice", "g1", "member", "g1"),
            new_message(ConversationType::Group, "mallory", "g1", "intruder", "g2"),
        ]))
        .await;
    assert_status(result, Code::PermissionDenied, "messages[2].sender");
    assert!(
        app.fetch_all("alice", peer("bob"), hpb::Direction::Forward)
            .await
            .is_empty()
    );
    let group = conv(ConversationType::Group, "g1");
    assert!(
        app.fetch_all("alice", group.clone(), hpb::Direction::Forward)
            .await
            .is_empty()
    );

    let m = app
        .send(ConversationType::Group, "bob", "g1", "hello group")
        .await;
    assert_eq!(m.conversation, Some(group.clone()));
    assert_eq!(m.recipient, "g1");
    assert_eq!(
        bodies(&app.fetch_all("alice", group, hpb::Direction::Forward).await),
        vec!["hello group"]
    );
}

#[tokio::test]
async fn a_message_without_a_type_is_stored_as_text() {
    let app = TestApp::spawn().await;
    let mut m = new_message(ConversationType::Peer, "alice", "bob", "plain", "untyped");
    m.r#type = MessageType::Unspecified as i32;
    let response = app
        .service()
        .await
        .history()
        .append_messages(append(vec![m]))
        .await
        .unwrap()
        .into_inner();
    let stored = response.results[0].message.clone().unwrap();
    assert_eq!(stored.r#type, MessageType::Text as i32);
}
