//! What the fault tests share: a runtime per test (serialised, bounded in time, with a panic
//! counter for its threads), the server under test over a private PostgreSQL, raw gRPC
//! clients whose only deadline is the `grpc-timeout` header, and small statistics.

use roaming::config::ServeConfig;
use roaming_client::proto::common::v1::{ConversationRef, ConversationType, MessageType};
use roaming_client::proto::conversation::v1::conversation_service_client::ConversationServiceClient;
use roaming_client::proto::history::v1 as hpb;
use roaming_client::proto::history::v1::history_service_client::HistoryServiceClient;
use roaming_runtime::TokenSigner;
use roaming_store::Store;
use roaming_testkit::RunningServer;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request};

pub use roaming_testkit::SECRET;

/// Latency bounds (p99 ratios, how quickly a refusal comes) are measured and printed by
/// every run, but asserted only with `ROAMING_ASSERT_LATENCY=1`: the documented runs on a
/// quiet machine that produce the figures in docs/reliability.md. On a shared machine other
/// jobs move latencies, and a test that can fail under load is a flaky test; what such a
/// test asserts always is the behaviour (nothing fails, nothing is queued past its limit).
pub fn latency_bounds_asserted() -> bool {
    std::env::var("ROAMING_ASSERT_LATENCY").is_ok_and(|v| v == "1")
}

/// `ROAMING_RELIABILITY_LONG=1` selects the long variants.
pub fn long() -> bool {
    std::env::var("ROAMING_RELIABILITY_LONG").is_ok_and(|v| v == "1")
}

/// Short or long figure.
pub fn pick<T>(short: T, long_variant: T) -> T {
    if long() { long_variant } else { short }
}

static SERIAL: Mutex<()> = Mutex::new(());
static PANICS: AtomicUsize = AtomicUsize::new(0);
static HOOK: Once = Once::new();
const THREAD_PREFIX: &str = "roaming-faults";

/// Panics so far on the fault tests' runtime threads (the server under test runs there).
pub fn panics() -> usize {
    PANICS.load(Ordering::SeqCst)
}

/// Runs one fault test: one at a time (their figures are timings on a 2-core machine, and
/// each starts its own PostgreSQL), on a 2-worker runtime whose threads are named so a panic
/// in the server under test is counted, and failing if it takes longer than `limit`.
pub fn run<F: Future<Output = ()>>(name: &str, limit: Duration, test: F) {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with(THREAD_PREFIX) || n.starts_with("rf-"))
            {
                PANICS.fetch_add(1, Ordering::SeqCst);
            }
            previous(info);
        }));
    });
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if std::env::var_os("TEST_LOG").is_some() {
        static TRACING: Once = Once::new();
        TRACING.call_once(|| roaming_runtime::telemetry::init(false));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(format!("{THREAD_PREFIX}-{name}"))
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let outcome = runtime.block_on(async { tokio::time::timeout(limit, test).await });
    // Whatever the test left running (server, load tasks) goes with the runtime.
    runtime.shutdown_timeout(Duration::from_secs(5));
    assert!(
        outcome.is_ok(),
        "{name}: did not finish within {limit:?} (bounded test)"
    );
    println!("{name}: took_ms={}", started.elapsed().as_millis());
}

/// The configuration of a server under test: the test configuration with a pool of 8 and
/// the system clock; a test overrides fields of it.
pub fn server_config() -> ServeConfig {
    let mut config = roaming_testkit::test_config();
    config.pool.pool_size = 8;
    config
}

/// The server under test, in-process, built by `roaming::App` as `roaming serve` builds it.
pub struct Server {
    pub endpoint: String,
    pub store: Store,
    signer: TokenSigner,
    running: RunningServer,
}

impl Server {
    /// Creates and migrates `database_url`'s database, then serves on 127.0.0.1:0.
    pub async fn start(database_url: &str, config: &ServeConfig) -> Server {
        let mut config = config.clone();
        config.database.database_url = database_url.to_owned();
        let app = roaming::App::from_config(config)
            .await
            .expect("open the store on the test PostgreSQL");
        Self::run(app).await
    }

    /// Serves `store` (an existing database) on a new port.
    pub async fn serve(store: Store, config: &ServeConfig) -> Server {
        Self::run(roaming::App::new(config.clone(), store).expect("a valid configuration")).await
    }

    async fn run(app: roaming::App) -> Server {
        let store = app.store.clone();
        let running = RunningServer::bind(app).await;
        Server {
            endpoint: running.endpoint.clone(),
            store,
            signer: TokenSigner::hs256(SECRET),
            running,
        }
    }

    /// Whether the server task is still running.
    pub fn is_running(&self) -> bool {
        self.running.is_running()
    }

    /// Shuts down (if not begun yet) and waits until the server has stopped.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        self.running.stop().await
    }

    /// Begins the graceful shutdown (health NOT_SERVING, streams ended, calls drained).
    pub fn begin_shutdown(&mut self) {
        self.running.begin_shutdown();
    }

    /// A token for `sub` (a service token when `service`).
    pub fn token(&self, sub: &str, service: bool) -> String {
        self.signer
            .mint(sub, service, roaming_runtime::auth::now_secs(), 3600)
    }

    /// A new connection to the server (lazy: it connects on first use).
    pub fn channel(&self) -> Channel {
        Endpoint::from_shared(self.endpoint.clone())
            .unwrap()
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .connect_lazy()
    }

    /// Callers over one new connection.
    pub fn callers(&self, user: &str) -> Callers {
        Callers::new(
            self.channel(),
            self.token("gateway", true),
            self.token(user, false),
        )
    }
}

/// Raw gRPC clients over one channel with a service token and a user token. Every request
/// carries its deadline only as `grpc-timeout`: what ends a call on time is the server.
#[derive(Clone)]
pub struct Callers {
    pub history: HistoryServiceClient<Channel>,
    pub conversations: ConversationServiceClient<Channel>,
    service_token: String,
    user_token: String,
}

impl Callers {
    pub fn new(channel: Channel, service_token: String, user_token: String) -> Self {
        Self {
            history: HistoryServiceClient::new(channel.clone()),
            conversations: ConversationServiceClient::new(channel),
            service_token,
            user_token,
        }
    }

    /// A request with the service token.
    pub fn as_service<T>(&self, message: T, deadline: Option<Duration>) -> Request<T> {
        request(message, &self.service_token, deadline)
    }

    /// A request with the user token.
    pub fn as_user<T>(&self, message: T, deadline: Option<Duration>) -> Request<T> {
        request(message, &self.user_token, deadline)
    }

    /// Appends `messages`; the whole response.
    pub async fn append(
        &mut self,
        messages: Vec<hpb::NewMessage>,
        deadline: Option<Duration>,
    ) -> Result<hpb::AppendMessagesResponse, tonic::Status> {
        let request = self.as_service(hpb::AppendMessagesRequest { messages }, deadline);
        self.history
            .append_messages(request)
            .await
            .map(|r| r.into_inner())
    }

    /// One FetchHistory call read to its end: its pages.
    pub async fn fetch(
        &mut self,
        request: hpb::FetchHistoryRequest,
        deadline: Option<Duration>,
    ) -> Result<Vec<hpb::FetchHistoryResponse>, tonic::Status> {
        let request = self.as_user(request, deadline);
        let mut stream = self.history.fetch_history(request).await?.into_inner();
        let mut pages = Vec::new();
        while let Some(page) = stream.message().await? {
            pages.push(page);
        }
        Ok(pages)
    }

    /// Every message of the user's view of `conversation`, oldest first, following cursors
    /// (no deadline: the database is up when this runs).
    pub async fn read_all(
        &mut self,
        conversation: ConversationRef,
    ) -> Vec<roaming_client::proto::common::v1::Message> {
        let mut out = Vec::new();
        let mut cursor = String::new();
        loop {
            let pages = self
                .fetch(
                    hpb::FetchHistoryRequest {
                        conversation: Some(conversation.clone()),
                        direction: hpb::Direction::Forward as i32,
                        cursor: cursor.clone(),
                        page_size: 50,
                        max_pages: 100,
                        ..Default::default()
                    },
                    Some(Duration::from_secs(30)),
                )
                .await
                .expect("read the whole history");
            let last = pages
                .last()
                .expect("a stream has at least one page")
                .clone();
            out.extend(pages.into_iter().flat_map(|p| p.messages));
            if last.is_end {
                return out;
            }
            cursor = last.next_cursor;
        }
    }
}

fn request<T>(message: T, token: &str, deadline: Option<Duration>) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii token"),
    );
    if let Some(d) = deadline {
        request.set_timeout(d);
    }
    request
}

/// A TEXT message from `sender` to `recipient` (PEER).
pub fn text(sender: &str, recipient: &str, body: &str, client_msg_id: &str) -> hpb::NewMessage {
    hpb::NewMessage {
        conversation_type: ConversationType::Peer as i32,
        sender: sender.to_owned(),
        recipient: recipient.to_owned(),
        r#type: MessageType::Text as i32,
        body: body.as_bytes().to_vec(),
        attributes: Default::default(),
        client_msg_id: client_msg_id.to_owned(),
    }
}

/// The name a test files a failed call under: its code, except that tonic's client-side
/// deadline (the channel also honours `grpc-timeout`, and reports CANCELLED "Timeout
/// expired" with a transport error as its source) is `ClientDeadline`, so that it is not
/// mistaken for a CANCELLED sent by the server.
pub fn outcome_name(status: &tonic::Status) -> String {
    let client_side = status.code() == Code::Cancelled
        && status.message() == "Timeout expired"
        && std::error::Error::source(status).is_some();
    if client_side {
        CLIENT_DEADLINE.to_owned()
    } else {
        format!("{:?}", status.code())
    }
}

/// When a call failed because its connection broke or closed under it (not because of
/// a status the server sent): `Connection(<what>)`. The gRPC status-code table files such a
/// failure under UNAVAILABLE ("connection breaks", generated by the library), but tonic's
/// client reports it as UNKNOWN "transport error" (connection reset), CANCELLED "operation
/// was canceled" (closed before the call was sent) or INTERNAL (refused by GOAWAY).
pub fn connection_failure(status: &tonic::Status) -> Option<String> {
    let mut transport = false;
    let mut what = String::new();
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        if e.is::<tonic::TimeoutExpired>() {
            return None;
        }
        transport |= e.is::<tonic::transport::Error>();
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            what = format!("{:?}", io.kind());
        } else if format!("{e:?}").starts_with("hyper::Error(Canceled") {
            what = "ClosedBeforeSent".to_owned();
        }
        source = e.source();
    }
    let plausible = matches!(
        status.code(),
        Code::Unknown | Code::Cancelled | Code::Internal | Code::Unavailable
    );
    (transport && plausible).then(|| {
        if what.is_empty() {
            format!("Connection({:?})", status.code())
        } else {
            format!("Connection({what})")
        }
    })
}

/// See [`outcome_name`].
pub const CLIENT_DEADLINE: &str = "ClientDeadline";

/// Counts of outcomes, printed as `{Unavailable: 12, DeadlineExceeded: 3}`.
#[derive(Debug, Default, Clone)]
pub struct Codes(pub BTreeMap<String, usize>);

impl Codes {
    pub fn add(&mut self, status: &tonic::Status) {
        self.add_name(&outcome_name(status));
    }

    pub fn add_name(&mut self, name: &str) {
        *self.0.entry(name.to_owned()).or_default() += 1;
    }

    pub fn total(&self) -> usize {
        self.0.values().sum()
    }

    /// Names outside `allowed`.
    pub fn outside(&self, allowed: &[&str]) -> Vec<String> {
        self.0
            .keys()
            .filter(|k| !allowed.contains(&k.as_str()))
            .cloned()
            .collect()
    }
}

impl std::fmt::Display for Codes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{{")?;
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{k}: {v}")?;
        }
        write!(f, "}}")
    }
}

/// The `q` quantile (0..=1) of `samples`, in milliseconds.
pub fn quantile_ms(samples: &mut [Duration], q: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_unstable();
    let rank = ((samples.len() as f64 - 1.0) * q).round() as usize;
    samples[rank.min(samples.len() - 1)].as_secs_f64() * 1000.0
}

/// This process's resident memory (VmRSS), KiB.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Roaming's sessions on the test PostgreSQL: `(all, active)`, where active means running a
/// statement (including one waiting on a lock).
pub async fn roaming_sessions(sql: &tokio_postgres::Client) -> (i64, i64) {
    let row = sql
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE state = 'active') FROM pg_stat_activity \
             WHERE application_name = 'roaming' AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// Polls `roaming_sessions` until `done(all, active)` or `limit`; returns the last reading and
/// how long it took.
pub async fn wait_for_sessions(
    sql: &tokio_postgres::Client,
    limit: Duration,
    done: impl Fn(i64, i64) -> bool,
) -> ((i64, i64), Duration) {
    let started = Instant::now();
    loop {
        let reading = roaming_sessions(sql).await;
        if done(reading.0, reading.1) || started.elapsed() >= limit {
            return (reading, started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The deadline a retried call gets and the pause after a retryable failure.
pub const CALL_DEADLINE: Duration = Duration::from_secs(2);
pub const BACKOFF: Duration = Duration::from_millis(20);

/// Whether a client should retry after `status` (the same request, same `client_msg_id`).
pub fn retryable(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted
    ) || outcome_name(status) == CLIENT_DEADLINE
}
