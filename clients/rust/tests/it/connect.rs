//! Connecting: tokens and token providers, act-as, lazy connections, raw clients.

use crate::support::*;
use futures::TryStreamExt;
use roaming_client::{Client, ConversationRef, Error, RetryPolicy, TokenError, TokenProvider};
use roaming_testkit::TestApp;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Hands out its tokens in order, repeating the last one.
struct Rotating {
    tokens: Mutex<Vec<String>>,
    asked: AtomicUsize,
}

impl TokenProvider for Rotating {
    fn token(&self) -> Result<String, TokenError> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        let mut tokens = self.tokens.lock().unwrap();
        match tokens.len() {
            0 => Err(TokenError("no token".into())),
            1 => Ok(tokens[0].clone()),
            _ => Ok(tokens.remove(0)),
        }
    }
}

#[tokio::test]
async fn a_token_provider_is_asked_before_every_call_so_a_refreshed_token_is_used() {
    let app = TestApp::spawn().await;
    seed(&app, "alice", "bob", 1).await;
    let now = roaming_runtime::auth::now_secs();
    let expired = app.signer.mint("alice", false, now - 7_200, 3_600);
    let provider = std::sync::Arc::new(Rotating {
        tokens: Mutex::new(vec![expired, app.token("alice", false)]),
        asked: AtomicUsize::new(0),
    });
    let shared = provider.clone();
    let client = Client::builder(app.endpoint.clone())
        .token("ignored: the provider wins")
        .token_provider(move || shared.token().unwrap())
        .connect()
        .await
        .unwrap();

    let first = client.list_conversations().page().await;
    assert!(matches!(first, Err(Error::Unauthenticated(_))), "{first:?}");
    let second = client.list_conversations().page().await.unwrap();
    assert_eq!(second.conversations.len(), 1);
    client
        .fetch_history(ConversationRef::peer("bob"))
        .page()
        .await
        .unwrap();
    assert_eq!(provider.asked.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_provider_without_a_token_fails_the_call_as_unauthenticated() {
    let app = TestApp::spawn().await;
    let client = Client::builder(app.endpoint.clone())
        .token_provider(Rotating {
            tokens: Mutex::new(Vec::new()),
            asked: AtomicUsize::new(0),
        })
        .connect()
        .await
        .unwrap();
    let result = client.list_conversations().page().await;
    match result {
        Err(Error::Unauthenticated(m)) => assert!(m.contains("no token"), "{m}"),
        other => panic!("expected UNAUTHENTICATED, got {other:?}"),
    }
}

#[tokio::test]
async fn a_missing_or_bad_token_is_unauthenticated_and_not_retried() {
    let app = TestApp::spawn().await;
    for client in [
        app.client_with(None, None).await,
        app.client_with(Some("not-a-jwt"), None).await,
    ] {
        let error = client.list_conversations().page().await.unwrap_err();
        assert!(matches!(error, Error::Unauthenticated(_)), "{error:?}");
        assert!(!error.is_retryable());
        assert_eq!(error.code(), Some(tonic::Code::Unauthenticated));
    }
}

#[tokio::test]
async fn a_service_caller_acts_for_the_named_user() {
    let app = TestApp::spawn().await;
    seed(&app, "alice", "bob", 2).await;
    let as_bob = app.service_as("bob").await;
    let list: Vec<_> = as_bob
        .list_conversations()
        .conversations()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].conversation, ConversationRef::peer("alice"));
    let without_user = app.service().await;
    let error = without_user.list_conversations().page().await.unwrap_err();
    assert!(matches!(error, Error::InvalidArgument(_)), "{error:?}");
}

#[tokio::test]
async fn connecting_to_nothing_fails_and_a_lazy_client_connects_on_first_use() {
    let error = Client::builder("http://127.0.0.1:1")
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Connect(_)), "{error:?}");
    let error = Client::builder("not a uri").connect().await.unwrap_err();
    assert!(matches!(error, Error::Connect(_)), "{error:?}");

    let app = TestApp::spawn().await;
    seed(&app, "alice", "bob", 1).await;
    let lazy = Client::builder(app.endpoint.clone())
        .token(app.token("alice", false))
        .connect_lazy()
        .unwrap();
    let page = lazy
        .fetch_history(ConversationRef::peer("bob"))
        .page()
        .await
        .unwrap();
    assert_eq!(texts(&page.messages), ["m0"]);
}

#[tokio::test]
async fn raw_generated_clients_stay_reachable_with_credentials_attached() {
    let app = TestApp::spawn().await;
    seed(&app, "alice", "bob", 1).await;
    let client = app.user("alice").await.with_retry(RetryPolicy::none());
    assert_eq!(client.retry_policy(), &RetryPolicy::none());
    let raw = client
        .conversations()
        .list_conversations(
            roaming_client::proto::conversation::v1::ListConversationsRequest::default(),
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(raw.conversations.len(), 1);
    let other = client
        .with_credentials(Some(&app.token("bob", false)), None)
        .unwrap();
    let page = other
        .fetch_history(ConversationRef::peer("alice"))
        .page()
        .await
        .unwrap();
    assert_eq!(texts(&page.messages), ["m0"]);
    assert!(roaming_client::USER_AGENT.ends_with(env!("CARGO_PKG_VERSION")));
}
