//! The local store: saved by default, read offline, deleted locally, mirrored removals,
//! holes filled from the server.

use crate::support::*;
use futures::TryStreamExt;
use roaming_client::proto::history::v1 as hpb;
use roaming_client::{
    Client, ConversationRef, Direction, Error, LocalQuery, LocalStore, RemovalScope, RetryPolicy,
};
use roaming_testkit::TestApp;

fn bob() -> ConversationRef {
    ConversationRef::peer("bob")
}

fn everything(direction: Direction) -> LocalQuery {
    LocalQuery {
        direction,
        start_msg_id: None,
        limit: 1_000,
    }
}

#[tokio::test]
async fn fetched_conversations_and_messages_are_saved_locally_by_default() {
    let app = TestApp::spawn().await;
    seed(&app, "alice", "bob", 4).await;
    seed(&app, "carol", "alice", 1).await;
    let (alice, store) = with_store(&app, "alice").await;

    let listed = alice.list_conversations().page().await.unwrap();
    assert_eq!(
        alice.local_conversations().await.unwrap(),
        listed.conversations
    );
    let fetched: Vec<_> = alice
        .fetch_history(bob())
        .messages()
        .try_collect()
        .await
        .unwrap();
    let local = alice
        .local_history(&bob(), everything(Direction::Backward))
        .await
        .unwrap();
    assert_eq!(local, fetched);
    assert_eq!(
        store.message(&fetched[0].msg_id).unwrap().as_ref(),
        Some(&fetched[0])
    );

    // Local pages, both ways, with an anchor.
    let older = alice
        .local_history(
            &bob(),
            LocalQuery {
                start_msg_id: Some(fetched[1].msg_id.clone()),
                limit: 1,
                ..LocalQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(texts(&older), ["m1"]);
    let oldest = alice
        .local_history(
            &bob(),
            LocalQuery {
                direction: Direction::Forward,
                limit: 2,
                ..LocalQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(texts(&oldest), ["m0", "m1"]);
}

#[tokio::test]
async fn saving_can_be_turned_off_per_call() {
    let app = TestApp::spawn().await;
    seed(&app, "alice", "bob", 2).await;
    let (alice, _store) = with_store(&app, "alice").await;
    alice
        .list_conversations()
        .save_locally(false)
        .page()
        .await
        .unwrap();
    alice
        .fetch_history(bob())
        .save_locally(false)
        .page()
        .await
        .unwrap();
    assert!(alice.local_conversations().await.unwrap().is_empty());
    let local = alice
        .local_history(&bob(), LocalQuery::default())
        .await
        .unwrap();
    assert!(local.is_empty());

    let without = app.user("alice").await;
    let error = without.local_conversations().await.unwrap_err();
    assert_eq!(error, Error::NoLocalStore);
}

#[tokio::test]
async fn the_local_copy_is_read_offline_after_the_server_stops() {
    let mut app = TestApp::spawn().await;
    seed(&app, "alice", "bob", 3).await;
    let db = TempDb::new();
    let alice = Client::builder(app.endpoint.clone())
        .token(app.token("alice", false))
        .local_store(LocalStore::open(&db.0).unwrap())
        .retry(RetryPolicy::none())
        .connect()
        .await
        .unwrap();
    alice.list_conversations().page().await.unwrap();
    alice.fetch_history(bob()).page().await.unwrap();
    app.stop().await.unwrap();

    let offline = alice.fetch_history(bob()).page().await.unwrap_err();
    assert!(offline.is_retryable(), "{offline:?}");
    let local = alice
        .local_history(&bob(), LocalQuery::default())
        .await
        .unwrap();
    assert_eq!(texts(&local), ["m2", "m1", "m0"]);

    // A fresh client over the same file, started with no server at all.
    drop(alice);
    let restarted = Client::builder(app.endpoint.clone())
        .local_store(LocalStore::open(&db.0).unwrap())
        .connect_lazy()
        .unwrap();
    let conversations = restarted.local_conversations().await.unwrap();
    assert_eq!(conversations.len(), 1);
    assert_eq!(conversations[0].conversation, bob());
    assert_eq!(
        conversations[0].last_message.as_ref().unwrap().text(),
        Some("m2")
    );
    let local = restarted
        .local_history(&bob(), everything(Direction::Forward))
        .await
        .unwrap();
    assert_eq!(seqs(&local), [1, 2, 3]);
}

#[tokio::test]
async fn deleting_a_conversation_locally_keeps_it_on_the_server() {
    let app = TestApp::spawn().await;
    seed(&app, "alice", "bob", 2).await;
    seed(&app, "alice", "carol", 2).await;
    let (alice, _store) = with_store(&app, "alice").await;
    alice.list_conversations().page().await.unwrap();
    alice.fetch_history(bob()).page().await.unwrap();
    let carol = ConversationRef::peer("carol");
    alice.fetch_history(carol.clone()).page().await.unwrap();

    alice
        .delete_local_conversation(&bob(), false)
        .await
        .unwrap();
    let left = alice.local_conversations().await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].conversation, carol);
    let kept = alice
        .local_history(&bob(), LocalQuery::default())
        .await
        .unwrap();
    assert_eq!(kept.len(), 2, "messages stay without with_messages");

    alice.delete_local_conversation(&carol, true).await.unwrap();
    assert!(alice.local_conversations().await.unwrap().is_empty());
    let gone = alice
        .local_history(&carol, LocalQuery::default())
        .await
        .unwrap();
    assert!(gone.is_empty());

    // The server still has both.
    let server = alice
        .list_conversations()
        .save_locally(false)
        .page()
        .await
        .unwrap();
    assert_eq!(server.conversations.len(), 2);
}

#[tokio::test]
async fn removals_through_the_client_are_applied_to_the_local_copy() {
    let app = TestApp::spawn().await;
    let sent = seed(&app, "alice", "bob", 5).await;
    seed(&app, "alice", "carol", 2).await;
    let (alice, _store) = with_store(&app, "alice").await;
    alice.list_conversations().page().await.unwrap();
    alice.fetch_history(bob()).page().await.unwrap();

    alice
        .remove_messages(&bob(), [sent[4].msg_id.clone()])
        .await
        .unwrap();
    let local = alice
        .local_history(&bob(), LocalQuery::default())
        .await
        .unwrap();
    assert_eq!(texts(&local), ["m3", "m2", "m1", "m0"]);
    let entry = alice.local_conversations().await.unwrap();
    let entry = entry.iter().find(|c| c.conversation == bob()).unwrap();
    assert_eq!(entry.last_message.as_ref().unwrap().text(), Some("m3"));

    alice
        .remove_messages_before(&bob(), sent[1].server_time_ms)
        .await
        .unwrap();
    let local = alice
        .local_history(&bob(), LocalQuery::default())
        .await
        .unwrap();
    assert_eq!(texts(&local), ["m3", "m2"]);

    let carol = ConversationRef::peer("carol");
    alice.fetch_history(carol.clone()).page().await.unwrap();
    alice
        .remove_conversation(&carol, true, RemovalScope::ForMe)
        .await
        .unwrap();
    let listed = alice.local_conversations().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].conversation, bob());
    assert!(
        alice
            .local_history(&carol, LocalQuery::default())
            .await
            .unwrap()
            .is_empty()
    );

    // Removing a conversation without its messages keeps them locally.
    alice
        .remove_conversation(&bob(), false, RemovalScope::ForMe)
        .await
        .unwrap();
    assert!(alice.local_conversations().await.unwrap().is_empty());
    assert_eq!(
        alice
            .local_history(&bob(), LocalQuery::default())
            .await
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn holes_in_the_local_copy_are_filled_from_the_server_on_the_next_fetch() {
    let app = TestApp::spawn().await;
    let sent = seed(&app, "alice", "bob", 12).await;
    let (alice, store) = with_store(&app, "alice").await;

    // The oldest five, then the newest four: seqs 1..5 and 9..12 are local.
    let oldest = alice
        .fetch_history(bob())
        .direction(Direction::Forward)
        .page_size(5)
        .page()
        .await
        .unwrap();
    assert_eq!(seqs(&oldest.messages), [1, 2, 3, 4, 5]);
    let newest = alice
        .fetch_history(bob())
        .page_size(4)
        .page()
        .await
        .unwrap();
    assert_eq!(seqs(&newest.messages), [12, 11, 10, 9]);
    assert_eq!(store.complete_ranges(&bob()).unwrap(), vec![1..=5, 9..=12]);
    assert_eq!(store.gaps(&bob()).unwrap(), vec![6..=8]);

    // Asking for what came after the newest local message finds nothing new, but the fetch
    // brings 6..8 in first.
    let after = alice
        .fetch_history(bob())
        .direction(Direction::Forward)
        .start_msg_id(sent[11].msg_id.clone())
        .page()
        .await
        .unwrap();
    assert!(after.messages.is_empty() && after.is_end);
    let local = alice
        .local_history(&bob(), everything(Direction::Forward))
        .await
        .unwrap();
    assert_eq!(seqs(&local), (1..=12).collect::<Vec<_>>());
    assert!(store.gaps(&bob()).unwrap().is_empty());
    assert_eq!(store.complete_ranges(&bob()).unwrap(), vec![1..=12]);
}

#[tokio::test]
async fn a_hole_whose_messages_were_removed_elsewhere_closes_without_them() {
    let app = TestApp::spawn().await;
    let sent = seed(&app, "alice", "bob", 10).await;
    let (alice, store) = with_store(&app, "alice").await;
    alice
        .fetch_history(bob())
        .direction(Direction::Forward)
        .page_size(3)
        .page()
        .await
        .unwrap();
    alice
        .fetch_history(bob())
        .page_size(3)
        .page()
        .await
        .unwrap();
    assert_eq!(store.gaps(&bob()).unwrap(), vec![4..=7]);

    // Another device of alice's removes seq 5 (the raw client does not touch this store).
    app.user("alice")
        .await
        .history()
        .remove_messages(hpb::RemoveMessagesRequest {
            conversation: Some(bob().to_proto()),
            msg_ids: vec![sent[4].msg_id.clone()],
        })
        .await
        .unwrap();

    assert_eq!(alice.fill_gaps(&bob()).await.unwrap(), 3);
    assert!(store.gaps(&bob()).unwrap().is_empty());
    let local = alice
        .local_history(&bob(), everything(Direction::Forward))
        .await
        .unwrap();
    assert_eq!(seqs(&local), [1, 2, 3, 4, 6, 7, 8, 9, 10]);
    // Nothing left to fill: no further call is needed.
    assert_eq!(alice.fill_gaps(&bob()).await.unwrap(), 0);
}

#[tokio::test]
async fn a_whole_backward_read_leaves_no_holes_even_across_hidden_messages() {
    let app = TestApp::spawn().await;
    let sent = seed(&app, "alice", "bob", 9).await;
    let alice_elsewhere = app.user("alice").await;
    alice_elsewhere
        .remove_messages(&bob(), [sent[3].msg_id.clone(), sent[4].msg_id.clone()])
        .await
        .unwrap();
    let (alice, store) = with_store(&app, "alice").await;
    let all: Vec<_> = alice
        .fetch_history(bob())
        .page_size(2)
        .pages_per_call(1)
        .messages()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(seqs(&all), [9, 8, 7, 6, 3, 2, 1]);
    assert_eq!(store.complete_ranges(&bob()).unwrap(), vec![1..=9]);
}
