//! Membership: group and chatroom membership, managed by backend callers.

use crate::helpers::*;
use roaming_client::Client;
use roaming_client::proto::common::v1::{ConversationRef, ConversationType};
use roaming_client::proto::conversation::v1 as cpb;
use roaming_client::proto::history::v1 as hpb;
use tonic::Code;

async fn add(
    client: &Client,
    conversation: ConversationRef,
    users: &[&str],
) -> Result<(), tonic::Status> {
    client
        .conversations()
        .add_members(cpb::AddMembersRequest {
            conversation: Some(conversation),
            user_ids: users.iter().map(|u| u.to_string()).collect(),
        })
        .await
        .map(|_| ())
}

async fn remove(
    client: &Client,
    conversation: ConversationRef,
    users: &[&str],
) -> Result<(), tonic::Status> {
    client
        .conversations()
        .remove_members(cpb::RemoveMembersRequest {
            conversation: Some(conversation),
            user_ids: users.iter().map(|u| u.to_string()).collect(),
        })
        .await
        .map(|_| ())
}

/// Stores one message through the service token, returning the call's outcome.
async fn try_send(
    app: &TestApp,
    kind: ConversationType,
    sender: &str,
    recipient: &str,
    text: &str,
) -> Result<hpb::AppendMessagesResponse, tonic::Status> {
    app.service()
        .await
        .history()
        .append_messages(one_message(
            kind,
            sender,
            recipient,
            text,
            &format!("{sender}-{text}"),
        ))
        .await
        .map(|r| r.into_inner())
}

/// Every page of `user`'s history of `conversation`, or the call's error.
async fn try_fetch(
    app: &TestApp,
    user: &str,
    conversation: ConversationRef,
) -> Result<Vec<String>, tonic::Status> {
    let pages = fetch_pages(
        &app.user(user).await,
        hpb::FetchHistoryRequest {
            conversation: Some(conversation),
            direction: hpb::Direction::Forward as i32,
            page_size: 50,
            max_pages: 100,
            ..Default::default()
        },
    )
    .await?;
    Ok(pages
        .into_iter()
        .flat_map(|p| bodies(&p.messages))
        .collect())
}

/// The conversations `user` lists, chatrooms included.
async fn listed(app: &TestApp, user: &str) -> Vec<ConversationRef> {
    app.user(user)
        .await
        .conversations()
        .list_conversations(cpb::ListConversationsRequest {
            page_size: 50,
            types: vec![
                ConversationType::Peer as i32,
                ConversationType::Group as i32,
                ConversationType::Chatroom as i32,
            ],
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .conversations
        .into_iter()
        .map(|c| c.conversation.expect("conversation"))
        .collect()
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    app.sql().await.query_one(sql, &[]).await.unwrap().get(0)
}

fn team() -> ConversationRef {
    conv(ConversationType::Group, "team")
}

#[tokio::test]
async fn membership_calls_with_a_user_token_are_permission_denied() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    assert_status(
        add(&alice, team(), &["alice"]).await,
        Code::PermissionDenied,
        "AddMembers",
    );
    app.add_members(ConversationType::Group, "team", &["alice", "bob"])
        .await;
    assert_status(
        remove(&alice, team(), &["bob"]).await,
        Code::PermissionDenied,
        "RemoveMembers",
    );
    // A service token acting for a user is still a service token.
    add(&app.service_as("alice").await, team(), &["carol"])
        .await
        .unwrap();
    app.send(ConversationType::Group, "bob", "team", "still here")
        .await;
    assert_eq!(
        try_fetch(&app, "bob", team()).await.unwrap(),
        vec!["still here"]
    );
    assert_eq!(
        try_fetch(&app, "carol", team()).await.unwrap(),
        vec!["still here"]
    );
}

#[tokio::test]
async fn membership_of_a_peer_conversation_is_invalid() {
    let app = TestApp::spawn().await;
    let service = app.service().await;
    assert_status(
        add(&service, peer("bob"), &["alice"]).await,
        Code::InvalidArgument,
        "conversation.type",
    );
    assert_status(
        remove(&service, peer("bob"), &["alice"]).await,
        Code::InvalidArgument,
        "conversation.type",
    );
}

#[tokio::test]
async fn membership_calls_need_a_valid_conversation() {
    let app = TestApp::spawn().await;
    let service = app.service().await;
    let missing = service
        .conversations()
        .add_members(cpb::AddMembersRequest {
            conversation: None,
            user_ids: vec!["alice".into()],
        })
        .await;
    assert_status(missing, Code::InvalidArgument, "conversation");
    assert_status(
        add(
            &service,
            conv(ConversationType::Unspecified, "team"),
            &["alice"],
        )
        .await,
        Code::InvalidArgument,
        "conversation.type",
    );
    assert_status(
        add(
            &service,
            conv(ConversationType::Group, "no spaces"),
            &["alice"],
        )
        .await,
        Code::InvalidArgument,
        "conversation.id",
    );
    assert_status(
        remove(&service, conv(ConversationType::Group, ""), &["alice"]).await,
        Code::InvalidArgument,
        "conversation.id",
    );
}

#[tokio::test]
async fn membership_calls_need_one_to_a_hundred_valid_user_ids() {
    let app = TestApp::spawn().await;
    let service = app.service().await;
    let hundred_one: Vec<String> = (0..101).map(|i| format!("user{i}")).collect();
    let hundred_one: Vec<&str> = hundred_one.iter().map(String::as_str).collect();

    assert_status(
        add(&service, team(), &[]).await,
        Code::InvalidArgument,
        "user_ids",
    );
    assert_status(
        remove(&service, team(), &[]).await,
        Code::InvalidArgument,
        "user_ids",
    );
    assert_status(
        add(&service, team(), &hundred_one).await,
        Code::InvalidArgument,
        "user_ids",
    );
    assert_status(
        remove(&service, team(), &hundred_one).await,
        Code::InvalidArgument,
        "user_ids",
    );
    assert_status(
        add(&service, team(), &["alice", "not valid!"]).await,
        Code::InvalidArgument,
        "user_ids[1]",
    );
    assert_status(
        remove(&service, team(), &["alice", "bob", ""]).await,
        Code::InvalidArgument,
        "user_ids[2]",
    );
    let too_long = "x".repeat(65);
    assert_status(
        add(&service, team(), &[too_long.as_str()]).await,
        Code::InvalidArgument,
        "user_ids[0]",
    );
    // A rejected batch adds nobody, not even its valid ids.
    assert_eq!(
        try_fetch(&app, "alice", team()).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM user_conversations").await,
        0
    );

    // Exactly 100 is fine.
    add(&service, team(), &hundred_one[..100]).await.unwrap();
    remove(&service, team(), &hundred_one[..100]).await.unwrap();
}

#[tokio::test]
async fn a_member_reads_the_whole_history_including_messages_from_before_joining() {
    let app = TestApp::spawn().await;
    app.add_members(ConversationType::Group, "team", &["alice", "bob"])
        .await;
    app.send(ConversationType::Group, "alice", "team", "one")
        .await;
    app.clock.advance(1000);
    let two = app
        .send(ConversationType::Group, "bob", "team", "two")
        .await;
    app.clock.advance(1000);

    app.add_members(ConversationType::Group, "team", &["carol"])
        .await;
    assert_eq!(
        try_fetch(&app, "carol", team()).await.unwrap(),
        vec!["one", "two"]
    );
    assert_eq!(listed(&app, "carol").await, vec![team()]);
    let page = app
        .user("carol")
        .await
        .conversations()
        .list_conversations(cpb::ListConversationsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let last = page.conversations[0].last_message.as_ref().unwrap();
    assert_eq!(last.msg_id, two.msg_id);
    assert_eq!(last.conversation, Some(team()));

    // And the new member may write.
    app.send(ConversationType::Group, "carol", "team", "three")
        .await;
    for user in ["alice", "bob", "carol"] {
        assert_eq!(
            try_fetch(&app, user, team()).await.unwrap(),
            vec!["one", "two", "three"],
            "{user}"
        );
    }
}

#[tokio::test]
async fn a_non_member_can_neither_fetch_nor_append_and_nothing_is_stored() {
    let app = TestApp::spawn().await;
    app.add_members(ConversationType::Group, "team", &["alice"])
        .await;
    app.send(ConversationType::Group, "alice", "team", "one")
        .await;

    assert_eq!(
        try_fetch(&app, "mallory", team()).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let appended = try_send(&app, ConversationType::Group, "mallory", "team", "spam").await;
    assert_eq!(appended.unwrap_err().code(), Code::PermissionDenied);
    // A batch with one member and one non-member is refused whole.
    let batch = app
        .service()
        .await
        .history()
        .append_messages(hpb::AppendMessagesRequest {
            messages: vec![
                new_message(ConversationType::Group, "alice", "team", "legit", "b1"),
                new_message(ConversationType::Group, "mallory", "team", "spam", "b2"),
            ],
        })
        .await;
    assert_eq!(batch.unwrap_err().code(), Code::PermissionDenied);

    assert_eq!(try_fetch(&app, "alice", team()).await.unwrap(), vec!["one"]);
    assert_eq!(count(&app, "SELECT count(*) FROM messages").await, 1);
    assert!(listed(&app, "mallory").await.is_empty());
    // A group that does not exist at all is no different.
    assert_eq!(
        try_fetch(&app, "alice", conv(ConversationType::Group, "nowhere"))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert_eq!(
        try_send(&app, ConversationType::Group, "alice", "nowhere", "hello")
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert_eq!(count(&app, "SELECT count(*) FROM messages").await, 1);
}

#[tokio::test]
async fn a_removed_member_can_no_longer_fetch_append_or_list_the_group() {
    let app = TestApp::spawn().await;
    app.add_members(ConversationType::Group, "team", &["alice", "bob"])
        .await;
    app.send(ConversationType::Group, "bob", "team", "one")
        .await;
    assert_eq!(listed(&app, "bob").await, vec![team()]);

    remove(&app.service().await, team(), &["bob"])
        .await
        .unwrap();
    assert_eq!(
        try_fetch(&app, "bob", team()).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    assert_eq!(
        try_send(&app, ConversationType::Group, "bob", "team", "two")
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert!(listed(&app, "bob").await.is_empty());
    // Nor can he reach it another way.
    let removal = app
        .user("bob")
        .await
        .history()
        .remove_messages_before(hpb::RemoveMessagesBeforeRequest {
            conversation: Some(team()),
            before_time_ms: app_now(&app),
        })
        .await;
    assert_eq!(removal.unwrap_err().code(), Code::PermissionDenied);

    // Alice is unaffected, and the refused message was not stored.
    assert_eq!(try_fetch(&app, "alice", team()).await.unwrap(), vec!["one"]);
    assert_eq!(listed(&app, "alice").await, vec![team()]);
}

fn app_now(app: &TestApp) -> i64 {
    use roaming_testkit::Clock;
    app.clock.now_ms()
}

#[tokio::test]
async fn re_adding_a_removed_member_restores_access() {
    let app = TestApp::spawn().await;
    app.add_members(ConversationType::Group, "team", &["alice", "bob"])
        .await;
    app.send(ConversationType::Group, "bob", "team", "one")
        .await;
    let service = app.service().await;
    remove(&service, team(), &["bob"]).await.unwrap();
    app.clock.advance(1000);
    app.send(ConversationType::Group, "alice", "team", "while away")
        .await;
    assert!(listed(&app, "bob").await.is_empty());

    add(&service, team(), &["bob"]).await.unwrap();
    assert_eq!(
        try_fetch(&app, "bob", team()).await.unwrap(),
        vec!["one", "while away"]
    );
    assert_eq!(listed(&app, "bob").await, vec![team()]);
    app.clock.advance(1000);
    try_send(&app, ConversationType::Group, "bob", "team", "back")
        .await
        .unwrap();
    assert_eq!(
        try_fetch(&app, "alice", team()).await.unwrap(),
        vec!["one", "while away", "back"]
    );
}

#[tokio::test]
async fn a_chatroom_and_a_group_with_the_same_id_are_different_conversations() {
    let app = TestApp::spawn().await;
    let group = conv(ConversationType::Group, "same");
    let room = conv(ConversationType::Chatroom, "same");
    app.add_members(ConversationType::Group, "same", &["alice", "bob"])
        .await;
    app.add_members(ConversationType::Chatroom, "same", &["alice", "carol"])
        .await;
    app.send(ConversationType::Group, "bob", "same", "in the group")
        .await;
    app.clock.advance(1000);
    app.send(ConversationType::Chatroom, "carol", "same", "in the room")
        .await;

    assert_eq!(
        try_fetch(&app, "alice", group.clone()).await.unwrap(),
        vec!["in the group"]
    );
    assert_eq!(
        try_fetch(&app, "alice", room.clone()).await.unwrap(),
        vec!["in the room"]
    );
    assert_eq!(
        listed(&app, "alice").await,
        vec![room.clone(), group.clone()]
    );

    // Membership of one gives nothing of the other.
    assert_eq!(
        try_fetch(&app, "bob", room.clone())
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert_eq!(
        try_fetch(&app, "carol", group.clone())
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert_eq!(
        try_send(&app, ConversationType::Chatroom, "bob", "same", "x")
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert_eq!(listed(&app, "bob").await, vec![group.clone()]);
    assert_eq!(listed(&app, "carol").await, vec![room.clone()]);

    // Leaving one is not leaving the other.
    remove(&app.service().await, group.clone(), &["alice"])
        .await
        .unwrap();
    assert_eq!(listed(&app, "alice").await, vec![room.clone()]);
    assert_eq!(
        try_fetch(&app, "alice", room).await.unwrap(),
        vec!["in the room"]
    );
    assert_eq!(
        try_fetch(&app, "alice", group).await.unwrap_err().code(),
        Code::PermissionDenied
    );
}

#[tokio::test]
async fn adding_and_removing_members_is_idempotent() {
    let app = TestApp::spawn().await;
    let service = app.service().await;
    add(&service, team(), &["alice", "bob"]).await.unwrap();
    add(&service, team(), &["alice", "bob"]).await.unwrap();
    add(&service, team(), &["bob", "carol"]).await.unwrap();
    app.send(ConversationType::Group, "alice", "team", "one")
        .await;
    for user in ["alice", "bob", "carol"] {
        assert_eq!(
            try_fetch(&app, user, team()).await.unwrap(),
            vec!["one"],
            "{user}"
        );
    }
    assert_eq!(
        count(&app, "SELECT count(*) FROM user_conversations").await,
        3
    );

    remove(&service, team(), &["carol"]).await.unwrap();
    remove(&service, team(), &["carol"]).await.unwrap();
    // Removing somebody who never was a member, or from a group that does not exist, is fine.
    remove(&service, team(), &["nobody"]).await.unwrap();
    remove(
        &service,
        conv(ConversationType::Group, "nowhere"),
        &["alice"],
    )
    .await
    .unwrap();
    assert_eq!(
        try_fetch(&app, "carol", team()).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    assert_eq!(try_fetch(&app, "alice", team()).await.unwrap(), vec!["one"]);
}

#[tokio::test]
async fn naming_the_same_user_twice_in_one_membership_call_is_harmless() {
    let app = TestApp::spawn().await;
    let service = app.service().await;
    add(&service, team(), &["alice", "bob", "alice"])
        .await
        .unwrap();
    app.send(ConversationType::Group, "alice", "team", "one")
        .await;
    assert_eq!(try_fetch(&app, "bob", team()).await.unwrap(), vec!["one"]);
    remove(&service, team(), &["bob", "bob"]).await.unwrap();
    assert_eq!(
        try_fetch(&app, "bob", team()).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    // Coming back with a repeated id, too.
    add(&service, team(), &["bob", "bob"]).await.unwrap();
    assert_eq!(try_fetch(&app, "bob", team()).await.unwrap(), vec!["one"]);
}

#[tokio::test]
async fn a_message_to_a_group_of_three_hundred_writes_no_per_member_rows() {
    let app = TestApp::spawn().await;
    let members: Vec<String> = (0..300).map(|i| format!("member{i:03}")).collect();
    for chunk in members.chunks(100) {
        let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
        app.add_members(ConversationType::Group, "big", &chunk)
            .await;
    }
    let rows_before = count(&app, "SELECT count(*) FROM user_conversations").await;
    assert_eq!(rows_before, 300);

    let batch: Vec<hpb::NewMessage> = (0..5)
        .map(|i| {
            new_message(
                ConversationType::Group,
                &members[i * 50],
                "big",
                &format!("message {i}"),
                &format!("big-{i}"),
            )
        })
        .collect();
    app.service()
        .await
        .history()
        .append_messages(hpb::AppendMessagesRequest { messages: batch })
        .await
        .unwrap();
    let last = app
        .send(ConversationType::Group, "member299", "big", "last")
        .await;

    assert_eq!(
        count(&app, "SELECT count(*) FROM user_conversations").await,
        rows_before
    );
    assert_eq!(count(&app, "SELECT count(*) FROM messages").await, 6);
    assert_eq!(count(&app, "SELECT count(*) FROM tombstones").await, 0);

    // Every member still sees it, with the newest message.
    let big = conv(ConversationType::Group, "big");
    for member in ["member000", "member150", "member299"] {
        let page = app
            .user(member)
            .await
            .conversations()
            .list_conversations(cpb::ListConversationsRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.conversations.len(), 1, "{member}");
        assert_eq!(page.conversations[0].conversation, Some(big.clone()));
        assert_eq!(
            page.conversations[0].last_message.as_ref().unwrap().msg_id,
            last.msg_id
        );
    }
    assert_eq!(try_fetch(&app, "member123", big).await.unwrap().len(), 6);
}
