//! Retry on UNAVAILABLE: while the server restarts on the same port, safe calls succeed.

use crate::support::*;
use futures::StreamExt;
use roaming_client::{Client, ConversationRef, ConversationType, Error, NewMessage, RetryPolicy};
use roaming_testkit::TestApp;
use std::time::Duration;

async fn alice(app: &TestApp, policy: RetryPolicy) -> Client {
    Client::builder(app.endpoint.clone())
        .token(app.token("alice", false))
        .retry(policy)
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn without_retry_a_stopped_server_is_unavailable_and_that_is_retryable() {
    let mut app = TestApp::spawn().await;
    let client = alice(&app, RetryPolicy::none()).await;
    app.stop().await.unwrap();
    let error = client.list_conversations().page().await.unwrap_err();
    assert!(matches!(error, Error::Unavailable(_)), "{error:?}");
    assert!(error.is_retryable());
    let error = client
        .fetch_history(ConversationRef::peer("bob"))
        .page()
        .await
        .unwrap_err();
    assert!(error.is_retryable(), "{error:?}");
}

#[tokio::test]
async fn calls_are_retried_while_the_server_restarts_on_the_same_port() {
    let mut app = TestApp::spawn().await;
    seed(&app, "alice", "bob", 3).await;
    let client = alice(&app, fast_retry()).await;
    let gateway = Client::builder(app.endpoint.clone())
        .token(app.token("gateway", true))
        .retry(fast_retry())
        .connect()
        .await
        .unwrap();
    client.list_conversations().page().await.unwrap();
    app.stop().await.unwrap();

    let restarted = restart_after(&app, Duration::from_millis(600));
    let started = std::time::Instant::now();
    let page = client.list_conversations().page().await.unwrap();
    assert_eq!(page.conversations.len(), 1);
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "it waited for the restart"
    );
    let mut server = restarted.await.unwrap();

    // Appends are retried too, and client_msg_id keeps them single.
    server.stop().await.unwrap();
    let restarted = restart_after(&app, Duration::from_millis(600));
    let message = || NewMessage::new(ConversationType::Peer, "alice", "bob", "retry-1").text("m3");
    let stored = gateway.append([message()]).await.unwrap();
    assert!(!stored[0].duplicate);
    let again = gateway.append([message()]).await.unwrap();
    assert!(again[0].duplicate);
    assert_eq!(again[0].message.msg_id, stored[0].message.msg_id);
    let removal = client
        .remove_messages(
            &ConversationRef::peer("bob"),
            [stored[0].message.msg_id.clone()],
        )
        .await
        .unwrap();
    assert_eq!(removal.len(), 1);
    restarted.await.unwrap().stop().await.unwrap();
}

#[tokio::test]
async fn a_history_stream_carries_on_from_its_last_page_after_a_restart() {
    let mut app = TestApp::spawn().await;
    seed(&app, "alice", "bob", 6).await;
    let client = alice(&app, fast_retry()).await;
    let mut pages = client
        .fetch_history(ConversationRef::peer("bob"))
        .page_size(2)
        .pages_per_call(1)
        .pages();
    let first = pages.next().await.unwrap().unwrap();
    assert_eq!(texts(&first.messages), ["m5", "m4"]);

    app.stop().await.unwrap();
    let restarted = restart_after(&app, Duration::from_millis(600));
    let mut rest = Vec::new();
    while let Some(page) = pages.next().await {
        rest.extend(page.unwrap().messages);
    }
    assert_eq!(texts(&rest), ["m3", "m2", "m1", "m0"]);
    restarted.await.unwrap().stop().await.unwrap();
}

#[tokio::test]
async fn retrying_gives_up_within_its_bounds() {
    let mut app = TestApp::spawn().await;
    let policy = RetryPolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(10),
        ..RetryPolicy::default()
    };
    let client = alice(&app, policy).await;
    app.stop().await.unwrap();
    let started = std::time::Instant::now();
    let error = client.list_conversations().page().await.unwrap_err();
    assert!(error.is_retryable(), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}
