//! The typed conversation calls: the paging list and conversation removal.

use crate::support::*;
use futures::TryStreamExt;
use roaming_client::{
    Conversation, ConversationRef, ConversationType, Error, NewMessage, RemovalScope,
};
use roaming_testkit::Clock as _;
use roaming_testkit::{DAY_MS, TestApp};

fn ids(list: &[Conversation]) -> Vec<String> {
    list.iter().map(|c| c.conversation.id.clone()).collect()
}

#[tokio::test]
async fn the_list_stream_pages_through_every_conversation_newest_first() {
    let app = TestApp::spawn().await;
    for peer in ["p1", "p2", "p3", "p4", "p5"] {
        seed(&app, peer, "alice", 1).await;
    }
    let alice = app.user("alice").await;

    let pages: Vec<_> = alice
        .list_conversations()
        .page_size(2)
        .pages()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(pages.len(), 3);
    assert!(pages[0].next_cursor.is_some() && pages[2].next_cursor.is_none());
    let all: Vec<_> = pages.into_iter().flat_map(|p| p.conversations).collect();
    assert_eq!(ids(&all), ["p5", "p4", "p3", "p2", "p1"]);
    assert_eq!(all[0].conversation.kind, ConversationType::Peer);
    let last = all[0].last_message.as_ref().unwrap();
    assert_eq!((last.sender.as_str(), last.text()), ("p5", Some("m0")));
    assert_eq!(all[0].last_activity_ms, last.server_time_ms);

    let streamed: Vec<_> = alice
        .list_conversations()
        .page_size(3)
        .conversations()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(streamed, all);

    let first = alice
        .list_conversations()
        .page_size(4)
        .page()
        .await
        .unwrap();
    let rest = alice
        .list_conversations()
        .page_size(4)
        .cursor(first.next_cursor.unwrap())
        .page()
        .await
        .unwrap();
    assert_eq!(ids(&rest.conversations), ["p1"]);
}

#[tokio::test]
async fn chatrooms_are_listed_only_when_asked_and_the_window_can_be_widened() {
    let app = TestApp::spawn().await;
    let gateway = app.service().await;
    seed(&app, "old", "alice", 1).await;
    app.clock.advance(10 * DAY_MS);
    seed(&app, "bob", "alice", 1).await;
    let room = ConversationRef::chatroom("lobby");
    gateway.add_members(&room, ["alice"]).await.unwrap();
    gateway
        .append([NewMessage::new(ConversationType::Chatroom, "alice", "lobby", "r1").text("hi")])
        .await
        .unwrap();
    let alice = app.user("alice").await;

    let default = alice.list_conversations().page().await.unwrap();
    assert_eq!(ids(&default.conversations), ["bob"]);
    let rooms = alice
        .list_conversations()
        .types([ConversationType::Chatroom])
        .page()
        .await
        .unwrap();
    assert_eq!(rooms.conversations[0].conversation, room);
    let wide = alice
        .list_conversations()
        .active_since_ms(app.clock.now_ms() - 30 * DAY_MS)
        .page()
        .await
        .unwrap();
    assert_eq!(ids(&wide.conversations), ["bob", "old"]);
}

#[tokio::test]
async fn removing_a_conversation_for_me_hides_it_from_me_only() {
    let app = TestApp::spawn().await;
    seed(&app, "alice", "bob", 3).await;
    let alice = app.user("alice").await;
    let bob = ConversationRef::peer("bob");

    alice
        .remove_conversation(&bob, true, RemovalScope::ForMe)
        .await
        .unwrap();
    assert!(
        alice
            .list_conversations()
            .page()
            .await
            .unwrap()
            .conversations
            .is_empty()
    );
    let page = alice.fetch_history(bob.clone()).page().await.unwrap();
    assert!(page.messages.is_empty());
    // Idempotent.
    alice
        .remove_conversation(&bob, true, RemovalScope::ForMe)
        .await
        .unwrap();

    let as_bob = app.user("bob").await;
    assert_eq!(
        as_bob
            .list_conversations()
            .page()
            .await
            .unwrap()
            .conversations
            .len(),
        1
    );
}

#[tokio::test]
async fn removing_for_everyone_is_for_service_callers_and_reaches_every_participant() {
    let app = TestApp::spawn().await;
    seed(&app, "alice", "bob", 3).await;
    let bob = ConversationRef::peer("bob");

    let refused = app
        .user("alice")
        .await
        .remove_conversation(&bob, true, RemovalScope::ForEveryone)
        .await;
    assert!(
        matches!(refused, Err(Error::PermissionDenied(_))),
        "{refused:?}"
    );

    app.service_as("alice")
        .await
        .remove_conversation(&bob, true, RemovalScope::ForEveryone)
        .await
        .unwrap();
    let as_bob = app.user("bob").await;
    assert!(
        as_bob
            .list_conversations()
            .page()
            .await
            .unwrap()
            .conversations
            .is_empty()
    );
    let page = as_bob
        .fetch_history(ConversationRef::peer("alice"))
        .page()
        .await
        .unwrap();
    assert!(page.messages.is_empty());
}
