//! The typed history calls: pages and messages streams, anchors, cursors, filters, appends,
//! removals, membership.

use crate::support::*;
use futures::{StreamExt, TryStreamExt};
use roaming_client::{
    ConversationRef, ConversationType, Direction, Error, HistoryPage, MessageType, NewMessage,
    RemovalStatus,
};
use roaming_testkit::Clock as _;
use roaming_testkit::TestApp;

fn bob() -> ConversationRef {
    ConversationRef::peer("bob")
}

#[tokio::test]
async fn a_page_is_newest_first_by_default_and_oldest_first_forward() {
    let app = TestApp::spawn().await;
    let sent = seed(&app, "alice", "bob", 5).await;
    let alice = app.user("alice").await;

    let newest = alice
        .fetch_history(bob())
        .page_size(2)
        .page()
        .await
        .unwrap();
    assert_eq!(texts(&newest.messages), ["m4", "m3"]);
    assert!(!newest.is_end);
    assert!(!newest.next_cursor.is_empty());
    let m = &newest.messages[0];
    assert_eq!(m, &sent[4]);
    assert_eq!(m.conversation, bob());
    assert_eq!(
        (m.seq, m.sender.as_str(), m.kind),
        (5, "alice", MessageType::Text)
    );

    let oldest = alice
        .fetch_history(bob())
        .direction(Direction::Forward)
        .page_size(2)
        .page()
        .await
        .unwrap();
    assert_eq!(texts(&oldest.messages), ["m0", "m1"]);

    // Bob sees the same messages under alice's id.
    let as_bob = app.user("bob").await;
    let page = as_bob
        .fetch_history(ConversationRef::peer("alice"))
        .page()
        .await
        .unwrap();
    assert_eq!(page.messages.len(), 5);
    assert_eq!(
        page.messages[0].conversation,
        ConversationRef::peer("alice")
    );
}

#[tokio::test]
async fn the_page_stream_follows_cursors_across_calls_until_the_end() {
    let app = TestApp::spawn().await;
    seed(&app, "alice", "bob", 7).await;
    let alice = app.user("alice").await;

    let pages: Vec<HistoryPage> = alice
        .fetch_history(bob())
        .page_size(2)
        .pages_per_call(2)
        .pages()
        .try_collect()
        .await
        .unwrap();
    let sizes: Vec<_> = pages.iter().map(|p| p.messages.len()).collect();
    assert_eq!(sizes, [2, 2, 2, 1]);
    assert_eq!(
        pages.iter().map(|p| p.is_end).collect::<Vec<_>>(),
        [false, false, false, true]
    );
    let all: Vec<_> = pages.into_iter().flat_map(|p| p.messages).collect();
    assert_eq!(texts(&all), ["m6", "m5", "m4", "m3", "m2", "m1", "m0"]);

    let forward: Vec<_> = alice
        .fetch_history(bob())
        .direction(Direction::Forward)
        .page_size(3)
        .pages_per_call(1)
        .messages()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(seqs(&forward), [1, 2, 3, 4, 5, 6, 7]);

    // A reader may stop whenever it likes.
    let first_three: Vec<_> = alice
        .fetch_history(bob())
        .page_size(2)
        .messages()
        .take(3)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(texts(&first_three), ["m6", "m5", "m4"]);
}

#[tokio::test]
async fn an_empty_conversation_is_one_empty_last_page() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let pages: Vec<_> = alice
        .fetch_history(ConversationRef::peer("nobody"))
        .pages()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(pages.len(), 1);
    assert!(pages[0].messages.is_empty() && pages[0].is_end);
}

#[tokio::test]
async fn an_anchor_starts_right_after_that_message_and_a_cursor_resumes_a_page() {
    let app = TestApp::spawn().await;
    let sent = seed(&app, "alice", "bob", 6).await;
    let alice = app.user("alice").await;

    let older: Vec<_> = alice
        .fetch_history(bob())
        .start_msg_id(sent[3].msg_id.clone())
        .messages()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(texts(&older), ["m2", "m1", "m0"]);
    let newer = alice
        .fetch_history(bob())
        .direction(Direction::Forward)
        .start_msg_id(sent[3].msg_id.clone())
        .page()
        .await
        .unwrap();
    assert_eq!(texts(&newer.messages), ["m4", "m5"]);

    let first = alice
        .fetch_history(bob())
        .page_size(4)
        .page()
        .await
        .unwrap();
    let rest = alice
        .fetch_history(bob())
        .cursor(first.next_cursor.clone())
        .page()
        .await
        .unwrap();
    assert_eq!(texts(&rest.messages), ["m1", "m0"]);
    assert!(rest.is_end);
}

#[tokio::test]
async fn filters_narrow_by_time_sender_and_type() {
    let app = TestApp::spawn().await;
    let gateway = app.service().await;
    let t0 = app.clock.now_ms();
    let mut sent = Vec::new();
    for (i, sender) in ["alice", "bob", "alice", "bob"].iter().enumerate() {
        let recipient = if *sender == "alice" { "bob" } else { "alice" };
        let kind = if i == 3 {
            MessageType::Image
        } else {
            MessageType::Text
        };
        let message = NewMessage::new(ConversationType::Peer, *sender, recipient, format!("c{i}"))
            .body(kind, format!("m{i}").into_bytes())
            .attribute("n", i.to_string());
        sent.extend(gateway.append([message]).await.unwrap());
        app.clock.advance(1_000);
    }
    let alice = app.user("alice").await;
    let read = |request: roaming_client::HistoryRequest| async move {
        let messages: Vec<_> = request
            .direction(Direction::Forward)
            .messages()
            .try_collect()
            .await
            .unwrap();
        texts(&messages)
    };
    assert_eq!(
        read(
            alice
                .fetch_history(bob())
                .start_time_ms(t0 + 1_000)
                .end_time_ms(t0 + 2_000)
        )
        .await,
        ["m1", "m2"]
    );
    assert_eq!(
        read(alice.fetch_history(bob()).senders(["bob"])).await,
        ["m1", "m3"]
    );
    assert_eq!(
        read(alice.fetch_history(bob()).types([MessageType::Image])).await,
        ["m3"]
    );
    let image = &sent[3].message;
    assert_eq!(image.kind, MessageType::Image);
    assert_eq!(image.attributes.get("n").map(String::as_str), Some("3"));
}

#[tokio::test]
async fn bad_requests_come_back_as_their_own_error_variants() {
    let app = TestApp::spawn().await;
    let sent = seed(&app, "alice", "bob", 2).await;
    let alice = app.user("alice").await;

    let too_big = alice.fetch_history(bob()).page_size(51).page().await;
    assert!(
        matches!(too_big, Err(Error::InvalidArgument(ref m)) if m.contains("page_size")),
        "{too_big:?}"
    );
    let unknown = alice
        .fetch_history(bob())
        .start_msg_id("123456789")
        .page()
        .await;
    assert!(matches!(unknown, Err(Error::NotFound(_))), "{unknown:?}");
    let both = alice
        .fetch_history(bob())
        .start_msg_id(sent[0].msg_id.clone())
        .cursor("abc")
        .page()
        .await;
    assert!(matches!(both, Err(Error::InvalidArgument(_))), "{both:?}");
    let not_a_service = alice
        .append([NewMessage::new(ConversationType::Peer, "alice", "bob", "x").text("hi")])
        .await;
    assert!(
        matches!(not_a_service, Err(Error::PermissionDenied(_))),
        "{not_a_service:?}"
    );
    // An error ends a stream.
    let items: Vec<_> = alice
        .fetch_history(bob())
        .page_size(99)
        .pages()
        .collect()
        .await;
    assert_eq!(items.len(), 1);
    assert!(items[0].is_err());
}

#[tokio::test]
async fn append_is_idempotent_per_client_msg_id() {
    let app = TestApp::spawn().await;
    let gateway = app.service().await;
    let batch = || {
        [
            NewMessage::new(ConversationType::Peer, "alice", "bob", "k1").text("one"),
            NewMessage::new(ConversationType::Peer, "alice", "bob", "k2").text("two"),
        ]
    };
    let first = gateway.append(batch()).await.unwrap();
    assert!(first.iter().all(|r| !r.duplicate));
    assert_eq!(first[0].message.conversation, bob());
    assert_eq!(first[1].message.seq, 2);
    let again = gateway.append(batch()).await.unwrap();
    assert!(again.iter().all(|r| r.duplicate));
    assert_eq!(again[0].message.msg_id, first[0].message.msg_id);
    assert_eq!(again[1].message.client_msg_id, "k2");
    let stored: Vec<_> = app
        .user("bob")
        .await
        .fetch_history(ConversationRef::peer("alice"))
        .messages()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(texts(&stored), ["two", "one"]);
}

#[tokio::test]
async fn removals_by_id_report_each_id_and_by_time_hide_everything_up_to_it() {
    let app = TestApp::spawn().await;
    let sent = seed(&app, "alice", "bob", 5).await;
    let alice = app.user("alice").await;

    let results = alice
        .remove_messages(&bob(), [sent[1].msg_id.clone(), "424242".to_owned()])
        .await
        .unwrap();
    assert_eq!(results[0].msg_id, sent[1].msg_id);
    assert_eq!(results[0].status, RemovalStatus::Removed);
    assert_eq!(results[1].status, RemovalStatus::NotFound);
    let again = alice
        .remove_messages(&bob(), [&sent[1].msg_id])
        .await
        .unwrap();
    assert_eq!(again[0].status, RemovalStatus::AlreadyRemoved);

    alice
        .remove_messages_before(&bob(), sent[2].server_time_ms)
        .await
        .unwrap();
    let left: Vec<_> = alice
        .fetch_history(bob())
        .messages()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(texts(&left), ["m4", "m3"]);
    // One-way: bob still has everything.
    let bobs: Vec<_> = app
        .user("bob")
        .await
        .fetch_history(ConversationRef::peer("alice"))
        .messages()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(bobs.len(), 5);
}

#[tokio::test]
async fn members_read_the_group_and_a_removed_member_is_refused() {
    let app = TestApp::spawn().await;
    let gateway = app.service().await;
    let team = ConversationRef::group("team");
    gateway.add_members(&team, ["alice", "bob"]).await.unwrap();
    gateway
        .append([
            NewMessage::new(ConversationType::Group, "alice", "team", "g1").text("hello team"),
        ])
        .await
        .unwrap();
    let bob = app.user("bob").await;
    let page = bob.fetch_history(team.clone()).page().await.unwrap();
    assert_eq!(texts(&page.messages), ["hello team"]);
    assert_eq!(page.messages[0].conversation, team);

    gateway.remove_members(&team, ["bob"]).await.unwrap();
    let refused = bob.fetch_history(team.clone()).page().await;
    assert!(
        matches!(refused, Err(Error::PermissionDenied(_))),
        "{refused:?}"
    );
    let not_a_service = bob.add_members(&team, ["bob"]).await;
    assert!(
        matches!(not_a_service, Err(Error::PermissionDenied(_))),
        "{not_a_service:?}"
    );
}
