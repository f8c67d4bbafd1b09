//! Shared helpers: typed clients, seeding conversations, and a server that can be restarted
//! on the same port.

use roaming_client::{Client, LocalStore, Message, RetryPolicy};
use roaming_testkit::{RunningServer, TestApp};
use std::time::Duration;

/// A typed client of `user` with an in-memory local store.
pub async fn with_store(app: &TestApp, user: &str) -> (Client, LocalStore) {
    let store = LocalStore::in_memory().unwrap();
    (on_store(app, user, store.clone()).await, store)
}

/// A typed client of `user` keeping its local copy in `store`.
pub async fn on_store(app: &TestApp, user: &str, store: LocalStore) -> Client {
    Client::builder(app.endpoint.clone())
        .token(app.token(user, false))
        .local_store(store)
        .retry(fast_retry())
        .connect()
        .await
        .unwrap()
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

/// Restarts the stopped `app`'s server on its address after `delay`, with the configuration
/// it ran with (a shorter drain), over the same database and clock.
pub fn restart_after(app: &TestApp, delay: Duration) -> tokio::task::JoinHandle<RunningServer> {
    let mut config = app.config.clone();
    config.drain_timeout = Duration::from_secs(1).into();
    let server = roaming::App::new(config, app.store.clone())
        .expect("the test configuration")
        .with_clock(app.clock.clone());
    let addr = app.addr;
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(addr).unwrap();
        RunningServer::start(server, socket.listen(128).unwrap())
    })
}

/// A store file in the temp directory, removed on drop.
pub struct TempDb(pub std::path::PathBuf);

impl TempDb {
    pub fn new() -> Self {
        let name = format!(
            "roaming-client-test-{}-{}.sqlite3",
            std::process::id(),
            rand_suffix()
        );
        Self(std::env::temp_dir().join(name))
    }
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{SystemTime, UNIX_EPOCH};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{nanos}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.0.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}
