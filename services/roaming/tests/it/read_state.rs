//! Read markers, exact unread counts, read receipts, pins and marks (and their reaching the
//! caller's other devices through the list and the change feed).

use crate::helpers::*;
use roaming_client::proto::common::v1::{ConversationRef, ConversationType};
use roaming_client::proto::conversation::v1 as cpb;
use roaming_client::proto::history::v1 as hpb;
use tonic::Code;

async fn mark_read(
    client: &roaming_client::Client,
    conversation: ConversationRef,
    msg_id: &str,
) -> Result<cpb::MarkReadResponse, tonic::Status> {
    client
        .conversations()
        .mark_read(cpb::MarkReadRequest {
            conversation: Some(conversation),
            msg_id: msg_id.to_owned(),
        })
        .await
        .map(|r| r.into_inner())
}

async fn list(
    client: &roaming_client::Client,
    request: cpb::ListConversationsRequest,
) -> Vec<cpb::Conversation> {
    client
        .conversations()
        .list_conversations(request)
        .await
        .expect("list")
        .into_inner()
        .conversations
}

async fn entry(client: &roaming_client::Client, id: &str) -> cpb::Conversation {
    list(client, cpb::ListConversationsRequest::default())
        .await
        .into_iter()
        .find(|c| c.conversation.as_ref().unwrap().id == id)
        .unwrap_or_else(|| panic!("{id} is listed"))
}

async fn pin(
    client: &roaming_client::Client,
    conversation: ConversationRef,
    pinned: bool,
) -> Result<i64, tonic::Status> {
    client
        .conversations()
        .pin_conversation(cpb::PinConversationRequest {
            conversation: Some(conversation),
            pinned,
        })
        .await
        .map(|r| r.into_inner().pinned_at_ms)
}

async fn marks(
    client: &roaming_client::Client,
    conversation: ConversationRef,
    add: &[&str],
    remove: &[&str],
) -> Result<Vec<String>, tonic::Status> {
    client
        .conversations()
        .mark_conversation(cpb::MarkConversationRequest {
            conversation: Some(conversation),
            add_marks: add.iter().map(|m| m.to_string()).collect(),
            remove_marks: remove.iter().map(|m| m.to_string()).collect(),
        })
        .await
        .map(|r| r.into_inner().marks)
}

#[tokio::test]
async fn mark_read_moves_forward_only_and_counts_what_others_sent_above_it() {
    let app = TestApp::spawn().await;
    let mut from_bob = Vec::new();
    for i in 0..5 {
        from_bob.push(app.peer("bob", "alice", &format!("b{i}")).await);
    }
    let alice = app.user("alice").await;
    assert_eq!(entry(&alice, "bob").await.unread_count, 5);
    let r = mark_read(&alice, peer("bob"), &from_bob[2].msg_id)
        .await
        .unwrap();
    assert_eq!((r.read_seq, r.unread_count), (3, 2));
    // An older id changes nothing and answers the current state.
    let r = mark_read(&alice, peer("bob"), &from_bob[0].msg_id)
        .await
        .unwrap();
    assert_eq!((r.read_seq, r.unread_count), (3, 2));
    // Empty: up to the newest.
    let r = mark_read(&alice, peer("bob"), "").await.unwrap();
    assert_eq!((r.read_seq, r.unread_count), (5, 0));
    let e = entry(&alice, "bob").await;
    assert_eq!((e.read_seq, e.unread_count), (5, 0));

    // One's own messages are never unread: sending reads the conversation.
    app.peer("bob", "alice", "b5").await;
    assert_eq!(entry(&alice, "bob").await.unread_count, 1);
    app.peer("alice", "bob", "a reply").await;
    let e = entry(&alice, "bob").await;
    assert_eq!((e.read_seq, e.unread_count), (7, 0));

    // Unhappy paths.
    let carol_msg = app.peer("carol", "alice", "c").await;
    assert_status(
        mark_read(&alice, peer("bob"), &carol_msg.msg_id).await,
        Code::NotFound,
        "msg_id",
    );
    assert_status(
        mark_read(&alice, peer("bob"), "99999999").await,
        Code::NotFound,
        "msg_id",
    );
    assert_status(
        mark_read(&alice, peer("nobody"), "").await,
        Code::NotFound,
        "conversation",
    );
    assert_status(
        mark_read(&alice, peer("bob"), "x1").await,
        Code::InvalidArgument,
        "msg_id",
    );
    app.add_members(ConversationType::Group, "g", &["bob"])
        .await;
    assert_status(
        mark_read(&alice, conv(ConversationType::Group, "g"), "").await,
        Code::PermissionDenied,
        "member",
    );
}

#[tokio::test]
async fn unread_counts_leave_out_removed_hidden_and_purged_messages_and_saturate() {
    let app = TestApp::spawn_with(|c| c.max_unread_count = 5).await;
    let mut sent = Vec::new();
    for i in 0..4 {
        sent.push(app.peer("bob", "alice", &format!("b{i}")).await);
    }
    let alice = app.user("alice").await;
    alice
        .history()
        .remove_messages(hpb::RemoveMessagesRequest {
            conversation: Some(peer("bob")),
            msg_ids: vec![sent[1].msg_id.clone()],
        })
        .await
        .unwrap();
    assert_eq!(entry(&alice, "bob").await.unread_count, 3);
    alice
        .history()
        .remove_messages_before(hpb::RemoveMessagesBeforeRequest {
            conversation: Some(peer("bob")),
            before_time_ms: sent[2].server_time_ms - 1,
        })
        .await
        .unwrap();
    // Everything is stored at one (manual) time: the watermark hides none of them yet.
    assert_eq!(entry(&alice, "bob").await.unread_count, 3);
    app.clock.advance(1000);
    for i in 0..10 {
        app.peer("bob", "alice", &format!("more{i}")).await;
    }
    assert_eq!(
        entry(&alice, "bob").await.unread_count,
        5,
        "saturates at the setting"
    );
    alice
        .history()
        .remove_messages_before(hpb::RemoveMessagesBeforeRequest {
            conversation: Some(peer("bob")),
            before_time_ms: sent[0].server_time_ms,
        })
        .await
        .unwrap();
    // The four first messages are now at or below the watermark; 10 remain.
    let r = mark_read(&alice, peer("bob"), &sent[0].msg_id)
        .await
        .unwrap();
    assert_eq!(r.unread_count, 5);

    // A purge with its messages takes everything out of everyone's count.
    app.add_members(ConversationType::Group, "g", &["alice", "bob"])
        .await;
    for i in 0..3 {
        app.send(ConversationType::Group, "bob", "g", &format!("g{i}"))
            .await;
    }
    assert_eq!(entry(&alice, "g").await.unread_count, 3);
    app.service()
        .await
        .conversations()
        .remove_conversation(cpb::RemoveConversationRequest {
            conversation: Some(conv(ConversationType::Group, "g")),
            delete_messages: true,
            scope: cpb::RemovalScope::ForEveryone as i32,
        })
        .await
        .unwrap();
    app.send(ConversationType::Group, "bob", "g", "after").await;
    assert_eq!(entry(&alice, "g").await.unread_count, 1);
}

#[tokio::test]
async fn a_read_marker_and_a_receipt_reach_the_other_devices_and_the_peer() {
    let app = TestApp::spawn().await;
    let m = app.peer("alice", "bob", "hi bob").await;
    app.peer("alice", "bob", "are you there").await;
    let alice = app.user("alice").await;
    let bob_phone = app.user("bob").await;
    let bob_laptop = app.user("bob").await;
    let (_, alice_token) = sync_changes(&alice, "").await;
    let (_, laptop_token) = sync_changes(&bob_laptop, "").await;

    let r = mark_read(&bob_phone, peer("alice"), &m.msg_id)
        .await
        .unwrap();
    assert_eq!((r.read_seq, r.unread_count), (1, 1));
    let (changes, laptop_token) = sync_changes(&bob_laptop, &laptop_token).await;
    assert_eq!(changes.len(), 1);
    assert_eq!((changes[0].read_seq, changes[0].unread_count), (1, 1));
    let e = entry(&bob_laptop, "alice").await;
    assert_eq!((e.read_seq, e.unread_count), (1, 1));
    // Alice learns how far bob read: the receipt.
    let (changes, _) = sync_changes(&alice, &alice_token).await;
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].peer_read_seq, 1);
    assert_eq!(entry(&alice, "bob").await.peer_read_seq, 1);
    // Marking read again changes nothing: no change for the other devices.
    mark_read(&bob_phone, peer("alice"), &m.msg_id)
        .await
        .unwrap();
    let (changes, _) = sync_changes(&bob_laptop, &laptop_token).await;
    assert!(changes.is_empty(), "{changes:?}");
    // Groups have no receipts.
    app.add_members(ConversationType::Group, "g", &["alice", "bob"])
        .await;
    app.send(ConversationType::Group, "bob", "g", "x").await;
    assert_eq!(entry(&alice, "g").await.peer_read_seq, 0);
}

#[tokio::test]
async fn pins_keep_their_time_are_limited_and_list_most_recently_pinned_first() {
    let app = TestApp::spawn_with(|c| c.max_pinned = 3).await;
    for i in 0..5 {
        app.peer(&format!("u{i}"), "alice", "hi").await;
        app.clock.advance(1000);
    }
    let alice = app.user("alice").await;
    let first_pinned = pin(&alice, peer("u0"), true).await.unwrap();
    assert!(first_pinned > 0);
    assert_eq!(entry(&alice, "u0").await.pinned_at_ms, first_pinned);
    app.clock.advance(1000);
    pin(&alice, peer("u2"), true).await.unwrap();
    app.clock.advance(1000);
    pin(&alice, peer("u1"), true).await.unwrap();
    app.clock.advance(1000);
    // Pinning again keeps the first time, even at the limit, and says so.
    assert_eq!(pin(&alice, peer("u0"), true).await.unwrap(), first_pinned);
    assert_eq!(entry(&alice, "u0").await.pinned_at_ms, first_pinned);
    let refused = pin(&alice, peer("u3"), true).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains('3'), "{}", refused.message());

    // Most recently pinned first, whatever the activity (u0 is 5 s old), page by page.
    let pinned_request = |cursor: String| cpb::ListConversationsRequest {
        pinned_only: true,
        page_size: 2,
        cursor,
        active_since_ms: 1,
        ..Default::default()
    };
    let page = alice
        .conversations()
        .list_conversations(pinned_request(String::new()))
        .await
        .unwrap()
        .into_inner();
    let mut order: Vec<String> = page
        .conversations
        .iter()
        .map(|c| c.conversation.clone().unwrap().id)
        .collect();
    assert!(!page.next_cursor.is_empty());
    let page_cursor = page.next_cursor.clone();
    let rest = alice
        .conversations()
        .list_conversations(pinned_request(page.next_cursor))
        .await
        .unwrap()
        .into_inner();
    order.extend(
        rest.conversations
            .iter()
            .map(|c| c.conversation.clone().unwrap().id),
    );
    assert_eq!(order, ["u1", "u2", "u0"]);
    assert!(rest.next_cursor.is_empty());
    // A cursor of the pinned list is not one of the activity list.
    assert_status(
        alice
            .conversations()
            .list_conversations(cpb::ListConversationsRequest {
                cursor: page_cursor.clone(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "cursor",
    );

    // Unpinning frees a place.
    assert_eq!(pin(&alice, peer("u2"), false).await.unwrap(), 0);
    assert!(!entry(&alice, "u2").await.pinned);
    pin(&alice, peer("u3"), true).await.unwrap();
    assert_status(
        pin(&alice, peer("nobody"), true).await,
        Code::NotFound,
        "conversation",
    );
}

#[tokio::test]
async fn marks_are_validated_limited_sorted_and_filter_the_list() {
    let app = TestApp::spawn_with(|c| c.max_marks = 3).await;
    for i in 0..4 {
        app.peer(&format!("u{i}"), "alice", "hi").await;
        app.clock.advance(1000);
    }
    app.add_members(ConversationType::Group, "team", &["alice"])
        .await;
    app.send(ConversationType::Group, "alice", "team", "g")
        .await;
    let alice = app.user("alice").await;
    assert_eq!(
        marks(&alice, peer("u1"), &["work", "Important", "a.b-c_d"], &[])
            .await
            .unwrap(),
        ["Important", "a.b-c_d", "work"]
    );
    // Adding a present one or removing an absent one is no error.
    assert_eq!(
        marks(&alice, peer("u1"), &["work"], &["absent"])
            .await
            .unwrap(),
        ["Important", "a.b-c_d", "work"]
    );
    let refused = marks(&alice, peer("u1"), &["fourth"], &[])
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(
        marks(&alice, peer("u1"), &["fourth"], &["Important"])
            .await
            .unwrap(),
        ["a.b-c_d", "fourth", "work"]
    );
    for (add, remove, field) in [
        (vec!["x"], vec!["x"], "remove_marks"),
        (vec![""], vec![], "add_marks[0]"),
        (vec!["has space"], vec![], "add_marks[0]"),
        (vec![], vec!["é"], "remove_marks[0]"),
    ] {
        assert_status(
            marks(&alice, peer("u1"), &add, &remove).await,
            Code::InvalidArgument,
            field,
        );
    }
    let long = "m".repeat(33);
    assert_status(
        marks(&alice, peer("u1"), &[long.as_str()], &[]).await,
        Code::InvalidArgument,
        "add_marks[0]",
    );
    assert_status(
        marks(&alice, peer("nobody"), &["x"], &[]).await,
        Code::NotFound,
        "conversation",
    );

    // The filter combines with types and pages with its cursor.
    for id in ["u0", "u2", "u3"] {
        marks(&alice, peer(id), &["work"], &[]).await.unwrap();
    }
    marks(
        &alice,
        conv(ConversationType::Group, "team"),
        &["work"],
        &[],
    )
    .await
    .unwrap();
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = alice
            .conversations()
            .list_conversations(cpb::ListConversationsRequest {
                mark: "work".into(),
                types: vec![ConversationType::Peer as i32],
                page_size: 2,
                cursor: cursor.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        for c in &page.conversations {
            assert!(c.marks.contains(&"work".to_owned()));
            seen.push(c.conversation.clone().unwrap().id);
        }
        if page.next_cursor.is_empty() {
            break;
        }
        cursor = page.next_cursor;
    }
    assert_eq!(seen, ["u3", "u2", "u1", "u0"], "never repeats or skips");
    assert_status(
        alice
            .conversations()
            .list_conversations(cpb::ListConversationsRequest {
                mark: "bad mark".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "mark",
    );
}

#[tokio::test]
async fn removing_a_conversation_for_me_drops_its_pin_and_marks_and_keeps_the_read_marker() {
    let app = TestApp::spawn().await;
    app.peer("bob", "alice", "one").await;
    app.peer("bob", "alice", "two").await;
    let alice = app.user("alice").await;
    mark_read(&alice, peer("bob"), "").await.unwrap();
    pin(&alice, peer("bob"), true).await.unwrap();
    marks(&alice, peer("bob"), &["work"], &[]).await.unwrap();
    let (_, token) = sync_changes(&alice, "").await;
    alice
        .conversations()
        .remove_conversation(cpb::RemoveConversationRequest {
            conversation: Some(peer("bob")),
            ..Default::default()
        })
        .await
        .unwrap();
    let (changes, _) = sync_changes(&alice, &token).await;
    assert!(!changes[0].listed && !changes[0].pinned && changes[0].marks.is_empty());
    app.peer("bob", "alice", "three").await;
    let e = entry(&alice, "bob").await;
    assert!(!e.pinned && e.marks.is_empty());
    assert_eq!((e.read_seq, e.unread_count), (2, 1));
}

#[tokio::test]
async fn unread_counts_under_concurrent_writers_equal_a_recount_from_history() {
    let app = std::sync::Arc::new(TestApp::spawn().await);
    let members: Vec<String> = (0..9).map(|i| format!("w{i}")).collect();
    let mut all: Vec<&str> = members.iter().map(String::as_str).collect();
    all.push("reader");
    app.add_members(ConversationType::Group, "busy", &all).await;
    let mut writers = Vec::new();
    for w in 0..8 {
        let app = app.clone();
        writers.push(tokio::spawn(async move {
            for n in 0..25 {
                app.send_with_id(
                    ConversationType::Group,
                    &format!("w{w}"),
                    "busy",
                    "x",
                    &format!("w{w}-{n}"),
                )
                .await;
            }
        }));
    }
    // The reader reads and removes while the writers write.
    let reader = app.user("reader").await;
    for _ in 0..10 {
        mark_read(&reader, conv(ConversationType::Group, "busy"), "")
            .await
            .unwrap();
        let newest = app
            .fetch_all(
                "reader",
                conv(ConversationType::Group, "busy"),
                hpb::Direction::Backward,
            )
            .await;
        if let Some(m) = newest.get(3) {
            reader
                .history()
                .remove_messages(hpb::RemoveMessagesRequest {
                    conversation: Some(conv(ConversationType::Group, "busy")),
                    msg_ids: vec![m.msg_id.clone()],
                })
                .await
                .unwrap();
        }
    }
    for w in writers {
        w.await.unwrap();
    }
    // Quiescence, with some unread for sure.
    for n in 0..3 {
        app.send_with_id(
            ConversationType::Group,
            "w0",
            "busy",
            "last",
            &format!("last-{n}"),
        )
        .await;
    }
    let e = entry(&reader, "busy").await;
    let visible = app
        .fetch_all(
            "reader",
            conv(ConversationType::Group, "busy"),
            hpb::Direction::Backward,
        )
        .await;
    let recount = visible
        .iter()
        .filter(|m| m.seq > e.read_seq && m.sender != "reader")
        .count() as i64;
    assert_eq!(e.unread_count, recount.min(999));
    assert!(e.unread_count >= 3);
}
