//! Removals (docs/reference.md): the newest visible message after each kind of deletion, and
//! RemoveConversation in both scopes.

use crate::helpers::*;
use roaming_client::Client;
use roaming_client::proto::common::v1::{ConversationRef, ConversationType, Message};
use roaming_client::proto::conversation::v1 as cpb;
use roaming_client::proto::history::v1 as hpb;
use tonic::Code;

/// `user`'s whole default list (PEER and GROUP, 50 at most).
async fn listed(app: &TestApp, user: &str) -> Vec<cpb::Conversation> {
    app.user(user)
        .await
        .conversations()
        .list_conversations(cpb::ListConversationsRequest {
            page_size: 50,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .conversations
}

/// The conversations of `user`'s list, as `user` names them.
async fn listed_refs(app: &TestApp, user: &str) -> Vec<ConversationRef> {
    listed(app, user)
        .await
        .into_iter()
        .map(|c| c.conversation.expect("conversation"))
        .collect()
}

/// The newest visible message `user`'s list shows for `conversation`, if it is listed.
async fn last_listed(app: &TestApp, user: &str, conversation: &ConversationRef) -> Option<Message> {
    listed(app, user)
        .await
        .into_iter()
        .find(|c| c.conversation.as_ref() == Some(conversation))
        .map(|c| c.last_message.expect("last_message"))
}

/// `user`'s whole history of `conversation`, oldest first, as text.
async fn history(app: &TestApp, user: &str, conversation: ConversationRef) -> Vec<String> {
    bodies(
        &app.fetch_all(user, conversation, hpb::Direction::Forward)
            .await,
    )
}

async fn remove_conversation(
    client: &Client,
    conversation: ConversationRef,
    delete_messages: bool,
    scope: cpb::RemovalScope,
) -> Result<(), tonic::Status> {
    client
        .conversations()
        .remove_conversation(cpb::RemoveConversationRequest {
            conversation: Some(conversation),
            delete_messages,
            scope: scope as i32,
        })
        .await
        .map(|_| ())
}

/// Three messages alice <-> bob, one second apart: "one", "two", "three" (returned).
async fn three_messages(app: &TestApp) -> Vec<Message> {
    let mut out = Vec::new();
    for (sender, recipient, text) in [
        ("alice", "bob", "one"),
        ("bob", "alice", "two"),
        ("alice", "bob", "three"),
    ] {
        out.push(app.peer(sender, recipient, text).await);
        app.clock.advance(1000);
    }
    out
}

#[tokio::test]
async fn removing_the_latest_message_shows_the_previous_one_in_the_callers_list_only() {
    let app = TestApp::spawn().await;
    let sent = three_messages(&app).await;
    let removed = app
        .user("alice")
        .await
        .history()
        .remove_messages(hpb::RemoveMessagesRequest {
            conversation: Some(peer("bob")),
            msg_ids: vec![sent[2].msg_id.clone()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        removed.results[0].status,
        hpb::RemovalStatus::Removed as i32
    );

    let alice_last = last_listed(&app, "alice", &peer("bob")).await.unwrap();
    assert_eq!(alice_last.msg_id, sent[1].msg_id);
    assert_eq!(bodies(std::slice::from_ref(&alice_last)), vec!["two"]);
    assert_eq!(alice_last.conversation, Some(peer("bob")));

    let bob_last = last_listed(&app, "bob", &peer("alice")).await.unwrap();
    assert_eq!(bob_last.msg_id, sent[2].msg_id);

    // Removing the next one as well walks further back.
    app.user("alice")
        .await
        .history()
        .remove_messages(hpb::RemoveMessagesRequest {
            conversation: Some(peer("bob")),
            msg_ids: vec![sent[1].msg_id.clone()],
        })
        .await
        .unwrap();
    let alice_last = last_listed(&app, "alice", &peer("bob")).await.unwrap();
    assert_eq!(alice_last.msg_id, sent[0].msg_id);
}

#[tokio::test]
async fn a_conversation_whose_every_message_was_removed_by_id_drops_out_for_the_caller_only() {
    let app = TestApp::spawn().await;
    let sent = three_messages(&app).await;
    app.peer("carol", "alice", "other conversation").await;
    app.user("alice")
        .await
        .history()
        .remove_messages(hpb::RemoveMessagesRequest {
            conversation: Some(peer("bob")),
            msg_ids: sent.iter().map(|m| m.msg_id.clone()).collect(),
        })
        .await
        .unwrap();
    assert_eq!(listed_refs(&app, "alice").await, vec![peer("carol")]);
    assert_eq!(listed_refs(&app, "bob").await, vec![peer("alice")]);

    // A newer message brings it back, showing that message.
    let fresh = app.peer("bob", "alice", "four").await;
    let last = last_listed(&app, "alice", &peer("bob")).await.unwrap();
    assert_eq!(last.msg_id, fresh.msg_id);
}

#[tokio::test]
async fn removing_messages_before_everything_drops_the_conversation_for_the_caller_only() {
    let app = TestApp::spawn().await;
    let sent = three_messages(&app).await;
    app.user("alice")
        .await
        .history()
        .remove_messages_before(hpb::RemoveMessagesBeforeRequest {
            conversation: Some(peer("bob")),
            before_time_ms: sent[2].server_time_ms,
        })
        .await
        .unwrap();
    assert!(listed_refs(&app, "alice").await.is_empty());
    assert!(history(&app, "alice", peer("bob")).await.is_empty());
    assert_eq!(listed_refs(&app, "bob").await, vec![peer("alice")]);
    assert_eq!(
        history(&app, "bob", peer("alice")).await,
        vec!["one", "two", "three"]
    );

    let fresh = app.peer("bob", "alice", "four").await;
    let last = last_listed(&app, "alice", &peer("bob")).await.unwrap();
    assert_eq!(last.msg_id, fresh.msg_id);
    assert_eq!(history(&app, "alice", peer("bob")).await, vec!["four"]);
}

#[tokio::test]
async fn removing_messages_before_part_of_them_keeps_the_newest_in_the_list() {
    let app = TestApp::spawn().await;
    let sent = three_messages(&app).await;
    app.user("alice")
        .await
        .history()
        .remove_messages_before(hpb::RemoveMessagesBeforeRequest {
            conversation: Some(peer("bob")),
            before_time_ms: sent[1].server_time_ms,
        })
        .await
        .unwrap();
    let last = last_listed(&app, "alice", &peer("bob")).await.unwrap();
    assert_eq!(last.msg_id, sent[2].msg_id);
    assert_eq!(history(&app, "alice", peer("bob")).await, vec!["three"]);
}

#[tokio::test]
async fn a_conversation_removed_for_me_leaves_only_my_list_and_keeps_its_history() {
    let app = TestApp::spawn().await;
    three_messages(&app).await;
    app.peer("carol", "alice", "stays").await;
    let alice = app.user("alice").await;
    // The default scope (UNSPECIFIED) is FOR_ME.
    remove_conversation(&alice, peer("bob"), false, cpb::RemovalScope::Unspecified)
        .await
        .unwrap();

    assert_eq!(listed_refs(&app, "alice").await, vec![peer("carol")]);
    assert_eq!(listed_refs(&app, "bob").await, vec![peer("alice")]);
    assert_eq!(
        history(&app, "alice", peer("bob")).await,
        vec!["one", "two", "three"]
    );
    assert_eq!(
        history(&app, "bob", peer("alice")).await,
        vec!["one", "two", "three"]
    );
    // Every device of alice's: a service acting for her sees the same list.
    let page = app
        .service_as("alice")
        .await
        .conversations()
        .list_conversations(cpb::ListConversationsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.conversations.len(), 1);
    assert_eq!(page.conversations[0].conversation, Some(peer("carol")));

    // Explicit FOR_ME does the same, and bob's own removal is his alone.
    remove_conversation(
        &app.user("bob").await,
        peer("alice"),
        false,
        cpb::RemovalScope::ForMe,
    )
    .await
    .unwrap();
    assert!(listed_refs(&app, "bob").await.is_empty());
    assert_eq!(listed_refs(&app, "carol").await, vec![peer("alice")]);
}

#[tokio::test]
async fn a_conversation_removed_for_me_comes_back_when_a_newer_message_arrives() {
    let app = TestApp::spawn().await;
    three_messages(&app).await;
    let alice = app.user("alice").await;
    remove_conversation(&alice, peer("bob"), false, cpb::RemovalScope::ForMe)
        .await
        .unwrap();
    assert!(listed_refs(&app, "alice").await.is_empty());

    let fresh = app.peer("bob", "alice", "four").await;
    let listed = listed(&app, "alice").await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].conversation, Some(peer("bob")));
    assert_eq!(
        listed[0].last_message.as_ref().unwrap().msg_id,
        fresh.msg_id
    );
    assert_eq!(listed[0].last_activity_ms, fresh.server_time_ms);
    // Without delete_messages, the old messages were never hidden.
    assert_eq!(
        history(&app, "alice", peer("bob")).await,
        vec!["one", "two", "three", "four"]
    );
}

#[tokio::test]
async fn a_conversation_removed_for_me_with_its_messages_shows_only_newer_messages_when_it_returns()
{
    let app = TestApp::spawn().await;
    three_messages(&app).await;
    let alice = app.user("alice").await;
    remove_conversation(&alice, peer("bob"), true, cpb::RemovalScope::ForMe)
        .await
        .unwrap();
    assert!(listed_refs(&app, "alice").await.is_empty());
    assert!(history(&app, "alice", peer("bob")).await.is_empty());
    assert_eq!(listed_refs(&app, "bob").await, vec![peer("alice")]);
    assert_eq!(
        history(&app, "bob", peer("alice")).await,
        vec!["one", "two", "three"]
    );

    let fresh = app.peer("bob", "alice", "four").await;
    let last = last_listed(&app, "alice", &peer("bob")).await.unwrap();
    assert_eq!(last.msg_id, fresh.msg_id);
    assert_eq!(history(&app, "alice", peer("bob")).await, vec!["four"]);
    let backward = bodies(
        &app.fetch_all("alice", peer("bob"), hpb::Direction::Backward)
            .await,
    );
    assert_eq!(backward, vec!["four"]);
    assert_eq!(
        history(&app, "bob", peer("alice")).await,
        vec!["one", "two", "three", "four"]
    );
}

#[tokio::test]
async fn removing_a_conversation_for_me_twice_is_harmless() {
    let app = TestApp::spawn().await;
    three_messages(&app).await;
    let alice = app.user("alice").await;
    for delete_messages in [false, false, true, true] {
        remove_conversation(
            &alice,
            peer("bob"),
            delete_messages,
            cpb::RemovalScope::ForMe,
        )
        .await
        .unwrap();
        assert!(listed_refs(&app, "alice").await.is_empty());
    }
    assert!(history(&app, "alice", peer("bob")).await.is_empty());
    // A later removal without delete_messages does not bring hidden messages back.
    remove_conversation(&alice, peer("bob"), false, cpb::RemovalScope::ForMe)
        .await
        .unwrap();
    assert!(history(&app, "alice", peer("bob")).await.is_empty());
    assert_eq!(
        history(&app, "bob", peer("alice")).await,
        vec!["one", "two", "three"]
    );
}

#[tokio::test]
async fn a_group_removed_for_me_leaves_only_my_list() {
    let app = TestApp::spawn().await;
    let team = conv(ConversationType::Group, "team");
    app.add_members(ConversationType::Group, "team", &["alice", "bob"])
        .await;
    app.send(ConversationType::Group, "bob", "team", "one")
        .await;
    remove_conversation(
        &app.user("alice").await,
        team.clone(),
        true,
        cpb::RemovalScope::ForMe,
    )
    .await
    .unwrap();
    assert!(listed_refs(&app, "alice").await.is_empty());
    assert!(history(&app, "alice", team.clone()).await.is_empty());
    assert_eq!(listed_refs(&app, "bob").await, vec![team.clone()]);
    assert_eq!(history(&app, "bob", team.clone()).await, vec!["one"]);

    app.clock.advance(1000);
    app.send(ConversationType::Group, "bob", "team", "two")
        .await;
    assert_eq!(listed_refs(&app, "alice").await, vec![team.clone()]);
    assert_eq!(history(&app, "alice", team).await, vec!["two"]);
}

#[tokio::test]
async fn removing_a_group_one_is_not_a_member_of_is_permission_denied() {
    let app = TestApp::spawn().await;
    app.add_members(ConversationType::Group, "team", &["bob"])
        .await;
    app.send(ConversationType::Group, "bob", "team", "one")
        .await;
    let result = remove_conversation(
        &app.user("mallory").await,
        conv(ConversationType::Group, "team"),
        true,
        cpb::RemovalScope::ForMe,
    )
    .await;
    assert_eq!(result.unwrap_err().code(), Code::PermissionDenied);
    assert_eq!(
        history(&app, "bob", conv(ConversationType::Group, "team")).await,
        vec!["one"]
    );
}

#[tokio::test]
async fn removing_a_conversation_for_everyone_needs_a_service_token() {
    let app = TestApp::spawn().await;
    three_messages(&app).await;
    let result = remove_conversation(
        &app.user("alice").await,
        peer("bob"),
        true,
        cpb::RemovalScope::ForEveryone,
    )
    .await;
    assert_eq!(result.unwrap_err().code(), Code::PermissionDenied);
    // Nothing changed.
    assert_eq!(listed_refs(&app, "alice").await, vec![peer("bob")]);
    assert_eq!(listed_refs(&app, "bob").await, vec![peer("alice")]);
    assert_eq!(
        history(&app, "alice", peer("bob")).await,
        vec!["one", "two", "three"]
    );
}

#[tokio::test]
async fn a_conversation_removed_for_everyone_leaves_both_lists_and_keeps_the_history() {
    let app = TestApp::spawn().await;
    three_messages(&app).await;
    app.peer("carol", "bob", "stays").await;
    remove_conversation(
        &app.service_as("alice").await,
        peer("bob"),
        false,
        cpb::RemovalScope::ForEveryone,
    )
    .await
    .unwrap();
    assert!(listed_refs(&app, "alice").await.is_empty());
    assert_eq!(listed_refs(&app, "bob").await, vec![peer("carol")]);
    assert_eq!(
        history(&app, "alice", peer("bob")).await,
        vec!["one", "two", "three"]
    );
    assert_eq!(
        history(&app, "bob", peer("alice")).await,
        vec!["one", "two", "three"]
    );

    // Idempotent.
    remove_conversation(
        &app.service_as("alice").await,
        peer("bob"),
        false,
        cpb::RemovalScope::ForEveryone,
    )
    .await
    .unwrap();

    app.clock.advance(1000);
    let fresh = app.peer("alice", "bob", "four").await;
    assert_eq!(
        last_listed(&app, "alice", &peer("bob"))
            .await
            .unwrap()
            .msg_id,
        fresh.msg_id
    );
    assert_eq!(
        last_listed(&app, "bob", &peer("alice"))
            .await
            .unwrap()
            .msg_id,
        fresh.msg_id
    );
}

#[tokio::test]
async fn a_conversation_removed_for_everyone_with_its_messages_leaves_every_history_empty() {
    let app = TestApp::spawn().await;
    three_messages(&app).await;
    remove_conversation(
        &app.service_as("alice").await,
        peer("bob"),
        true,
        cpb::RemovalScope::ForEveryone,
    )
    .await
    .unwrap();
    assert!(listed_refs(&app, "alice").await.is_empty());
    assert!(listed_refs(&app, "bob").await.is_empty());
    assert!(history(&app, "alice", peer("bob")).await.is_empty());
    assert!(history(&app, "bob", peer("alice")).await.is_empty());

    app.clock.advance(1000);
    let fresh = app.peer("bob", "alice", "four").await;
    for (user, other) in [("alice", "bob"), ("bob", "alice")] {
        assert_eq!(
            history(&app, user, peer(other)).await,
            vec!["four"],
            "{user}"
        );
        let last = last_listed(&app, user, &peer(other)).await.unwrap();
        assert_eq!(last.msg_id, fresh.msg_id, "{user}");
    }
}

#[tokio::test]
async fn a_group_removed_for_everyone_leaves_every_members_list() {
    let app = TestApp::spawn().await;
    let team = conv(ConversationType::Group, "team");
    app.add_members(ConversationType::Group, "team", &["alice", "bob", "carol"])
        .await;
    app.send(ConversationType::Group, "bob", "team", "one")
        .await;
    remove_conversation(
        &app.service_as("alice").await,
        team.clone(),
        true,
        cpb::RemovalScope::ForEveryone,
    )
    .await
    .unwrap();
    for user in ["alice", "bob", "carol"] {
        assert!(listed_refs(&app, user).await.is_empty(), "{user}");
        assert!(history(&app, user, team.clone()).await.is_empty(), "{user}");
    }
}

#[tokio::test]
async fn a_service_purges_a_group_for_everyone_without_naming_a_user() {
    let app = TestApp::spawn().await;
    let team = conv(ConversationType::Group, "team");
    app.add_members(ConversationType::Group, "team", &["alice", "bob"])
        .await;
    app.send(ConversationType::Group, "bob", "team", "one")
        .await;
    remove_conversation(
        &app.service().await,
        team.clone(),
        true,
        cpb::RemovalScope::ForEveryone,
    )
    .await
    .unwrap();
    for user in ["alice", "bob"] {
        assert!(listed_refs(&app, user).await.is_empty(), "{user}");
        assert!(history(&app, user, team.clone()).await.is_empty(), "{user}");
    }
    // A PEER conversation still needs the user it is seen by.
    let peer_purge = remove_conversation(
        &app.service().await,
        peer("bob"),
        true,
        cpb::RemovalScope::ForEveryone,
    )
    .await;
    assert_status(peer_purge, Code::InvalidArgument, "x-roaming-user");
}

#[tokio::test]
async fn an_unknown_removal_scope_is_invalid() {
    let app = TestApp::spawn().await;
    three_messages(&app).await;
    for client in [app.user("alice").await, app.service_as("alice").await] {
        let result = client
            .conversations()
            .remove_conversation(cpb::RemoveConversationRequest {
                conversation: Some(peer("bob")),
                delete_messages: true,
                scope: 7,
            })
            .await;
        assert_status(result, Code::InvalidArgument, "scope");
    }
    assert_eq!(
        history(&app, "alice", peer("bob")).await,
        vec!["one", "two", "three"]
    );
    assert_eq!(listed_refs(&app, "alice").await, vec![peer("bob")]);
}

#[tokio::test]
async fn removing_a_conversation_needs_a_valid_conversation() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let missing = alice
        .conversations()
        .remove_conversation(cpb::RemoveConversationRequest::default())
        .await;
    assert_status(missing, Code::InvalidArgument, "conversation");
    let bad_type = remove_conversation(
        &alice,
        ConversationRef {
            r#type: 42,
            id: "bob".into(),
        },
        false,
        cpb::RemovalScope::ForMe,
    )
    .await;
    assert_status(bad_type, Code::InvalidArgument, "conversation.type");
    let bad_id =
        remove_conversation(&alice, peer("not valid!"), false, cpb::RemovalScope::ForMe).await;
    assert_status(bad_id, Code::InvalidArgument, "conversation.id");
}
