//! Shared helpers: typed clients, seeding conversations, and a server that can be restarted
//! on the same port.

use roaming_client::{Client, LocalStore, Message, RetryPolicy};
use roaming_store::{ManualClock, Store};
use roaming_testkit::{TestApp, TestOptions};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// A typed client of `user` with an in-memory local store.
pub async fn with_store(app: &TestApp, user: &str) -> (Client, LocalStore) {
    let store = LocalStore::in_memory().unwrap();
    let client = Client::builder(app.endpoint.clone())
        .token(app.token(user, false))
        .local_store(store.clone())
        .retry(fast_retry())
        .connect()
        .await
        .unwrap();
    (client, store)
}

/// Retry quickly, for tests.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 50,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        multiplier: 2.0,
        max_elapsed: Duration::from_secs(20),
    }
}

/// `n` PEER messages from `sender` to `recipient`, one second apart, as typed messages seen
/// by the sender.
pub async fn seed(app: &TestApp, sender: &str, recipient: &str, n: usize) -> Vec<Message> {
    let mut out = Vec::new();
    for i in 0..n {
        let m = app.peer(sender, recipient, &format!("m{i}")).await;
        out.push(Message::try_from(m).unwrap());
        app.clock.advance(1_000);
    }
    out
}

/// The bodies as text.
pub fn texts(messages: &[Message]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m.text().unwrap_or("?").to_owned())
        .collect()
}

/// The seqs.
pub fn seqs(messages: &[Message]) -> Vec<i64> {
    messages.iter().map(|m| m.seq).collect()
}

/// A server over an existing test database, bound to a chosen address.
pub struct Server {
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Server {
    /// Serves `store` on `addr` (the address a stopped server had).
    pub async fn start(addr: SocketAddr, store: Store, clock: Arc<ManualClock>) -> Self {
        // The settings TestApp::spawn uses, so a restarted server behaves the same.
        let options = TestOptions::default();
        let app = TestOptions {
            drain_timeout: Duration::from_secs(1),
            ..options
        }
        .build_app(store, clock);
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(addr).unwrap();
        let listener = socket.listen(128).unwrap();
        let (tx, rx) = oneshot::channel();
        let handle = tokio::spawn(roaming::serve(app, listener, async {
            let _ = rx.await;
        }));
        Self {
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    /// Stops it and waits until it has.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            let _ = h.await;
        }
    }
}

/// Restarts the stopped `app`'s server on its address after `delay`.
pub fn restart_after(app: &TestApp, delay: Duration) -> tokio::task::JoinHandle<Server> {
    let (addr, store, clock) = (app.addr, app.store.clone(), app.clock.clone());
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        Server::start(addr, store, clock).await
    })
}
