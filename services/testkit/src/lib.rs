//! Test support: `TestApp` gives each test a fresh database, a migrated store and a running
//! server on `127.0.0.1:0`, plus helpers to store messages and read whole histories;
//! [`mirror`] is the check that a device's local store mirrors the server, and `tls` makes
//! certificates for TLS tests.

pub mod database;
pub mod mirror;
pub mod tls;

use roaming::config::ServeConfig;
use roaming_client::Client;
use roaming_client::proto::common::v1::{ConversationRef, ConversationType, Message, MessageType};
use roaming_client::proto::history::v1 as hpb;
pub use roaming_domain::Clock;
use roaming_runtime::TokenSigner;
use roaming_store::Store;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Once, OnceLock};
use std::time::Duration;
use tokio::sync::oneshot;

/// The HS256 secret every test server uses (at least 32 bytes, as a server requires).
pub const SECRET: &str = "roaming-test-secret-0123456789abcdef";
/// One day in milliseconds.
pub const DAY_MS: i64 = 24 * 60 * 60 * 1000;

static COUNTER: AtomicU32 = AtomicU32::new(0);
static TRACING: Once = Once::new();

/// The maintenance database used when nothing else is configured and 127.0.0.1:5432 answers.
pub const LOCAL_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Where tests create their databases (the server's maintenance database), decided once per
/// test process by [`choose_test_database`] from `ROAMING_TEST_DATABASE_URL` and whether
/// anything listens on 127.0.0.1:5432: that URL, the local server's, or a private cluster's.
pub fn admin_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let configured = std::env::var("ROAMING_TEST_DATABASE_URL").ok();
        let local = SocketAddr::from(([127, 0, 0, 1], 5432));
        match choose_test_database(configured.as_deref(), local) {
            TestDatabase::Configured(url) => url,
            TestDatabase::Local => LOCAL_ADMIN_URL.to_owned(),
            TestDatabase::Private => private_cluster().url("postgres"),
        }
    })
    .clone()
}

/// Which PostgreSQL a test process uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestDatabase {
    /// `ROAMING_TEST_DATABASE_URL`: always this one, reachable or not.
    Configured(String),
    /// The server at 127.0.0.1:5432 ([`LOCAL_ADMIN_URL`]): something listens there.
    Local,
    /// A private cluster of this process (`roaming::local_pg`, as `roaming dev` makes):
    /// `ROAMING_TEST_DATABASE_URL=private`, or unset with nothing listening on 5432.
    Private,
}

/// The choice behind [`admin_url`]: `configured` is `ROAMING_TEST_DATABASE_URL`, `local`
/// the address probed when it is unset (127.0.0.1:5432).
pub fn choose_test_database(configured: Option<&str>, local: SocketAddr) -> TestDatabase {
    match configured.map(str::trim).filter(|s| !s.is_empty()) {
        Some("private") => TestDatabase::Private,
        Some(url) => TestDatabase::Configured(url.to_owned()),
        None if std::net::TcpStream::connect_timeout(&local, Duration::from_secs(1)).is_ok() => {
            TestDatabase::Local
        }
        None => TestDatabase::Private,
    }
}

/// This process's private cluster: made and started on first use (initdb in `$TMPDIR`,
/// a free port), shared by every test of the process, stopped and removed by a watcher
/// once the process has ended (statics are never dropped).
pub fn private_cluster() -> &'static roaming::local_pg::Cluster {
    static CLUSTER: OnceLock<roaming::local_pg::Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!(
            "roaming-testkit-pg-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let fail = |e: anyhow::Error| -> ! {
            panic!(
                "no test database: ROAMING_TEST_DATABASE_URL is unset and nothing listens on \
                 127.0.0.1:5432, and a private cluster could not be made: {e:#}"
            )
        };
        // Durability does not matter to a cluster that lives as long as one test process.
        let conf = "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n";
        let mut cluster = roaming::local_pg::Cluster::init(&dir, conf).unwrap_or_else(|e| fail(e));
        cluster.start(None).unwrap_or_else(|e| fail(e));
        cluster
            .stop_when_process_exits(std::process::id(), true)
            .unwrap_or_else(|e| fail(e));
        eprintln!(
            "roaming-testkit: this test process uses a private PostgreSQL on 127.0.0.1:{} ({})",
            cluster.port(),
            cluster.dir().display()
        );
        cluster
    })
}

/// The configuration every test server starts from: the defaults of `roaming serve`, tokens
/// signed with [`SECRET`], a short drain. Tests override fields of it, never assemble a
/// server by hand.
pub fn test_config() -> ServeConfig {
    let mut config = ServeConfig::defaults();
    config.keys.jwt_secret = Some(SECRET.to_owned());
    config.drain_timeout = Duration::from_secs(5).into();
    // The pool's 2 s defaults are a production choice (answer UNAVAILABLE, let the client retry
    // elsewhere); under a loaded test machine opening a connection or waiting for one behind
    // locked rows can take longer, and a test of something else must not fail for it (a flake
    // hunt saw a recall racing an edit and a removal refused so). Tests of those timeouts set
    // their own.
    config.pool.pool_wait_timeout = Duration::from_secs(60).into();
    config.pool.pool_connect_timeout = Duration::from_secs(60).into();
    config
}

/// A clock a test moves by hand, so that time-dependent behaviour needs no sleeping.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock reading `now_ms`.
    pub fn new(now_ms: i64) -> Self {
        Self(AtomicI64::new(now_ms))
    }

    /// Sets the reading.
    pub fn set(&self, now_ms: i64) {
        self.0.store(now_ms, Ordering::SeqCst);
    }

    /// Moves the reading forward by `ms`.
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A server running in this process: `roaming::serve` on a listener, stopped by a signal.
pub struct RunningServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// `http://<addr>`.
    pub endpoint: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl RunningServer {
    /// Serves `app` on `listener` until [`RunningServer::stop`] (or drop).
    pub fn start(app: roaming::App, listener: tokio::net::TcpListener) -> Self {
        let addr = listener.local_addr().expect("a bound listener");
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(roaming::serve(app, listener, async {
            let _ = rx.await;
        }));
        Self {
            addr,
            endpoint: format!("http://{addr}"),
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Serves `app` on a new port of 127.0.0.1.
    pub async fn bind(app: roaming::App) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::start(app, listener)
    }

    /// Whether the server task is still running.
    pub fn is_running(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Begins the graceful shutdown (health NOT_SERVING, streams ended, calls drained).
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Signals shutdown and waits for the server to stop.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        self.begin_shutdown();
        match self.task.take() {
            Some(h) => h.await.expect("server task"),
            None => Ok(()),
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.begin_shutdown();
        if let Some(h) = self.task.take() {
            h.abort();
        }
    }
}

/// A running server over its own database.
pub struct TestApp {
    pub addr: SocketAddr,
    pub endpoint: String,
    pub clock: Arc<ManualClock>,
    pub signer: TokenSigner,
    pub store: Store,
    /// The configuration the server runs with (its database URL included).
    pub config: ServeConfig,
    pub db_name: String,
    pub db_url: String,
    server: RunningServer,
    /// Trace export, when the configuration has an `otlp_endpoint`.
    telemetry: Option<roaming::telemetry::Telemetry>,
}

impl TestApp {
    /// A server with the test configuration.
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// A server with the test configuration as `configure` changes it. With an
    /// `otlp_endpoint`, the process's subscriber and trace export are installed as
    /// `roaming serve` installs them (`roaming::telemetry::init`), once per process: such a
    /// test has a test target of its own. [`TestApp::stop`] flushes the export.
    pub async fn spawn_with(configure: impl FnOnce(&mut ServeConfig)) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let db_name = format!(
            "roaming_test_{}_{}_{}",
            std::process::id(),
            n,
            rand::random::<u32>()
        );
        let db_url = database::url(&db_name);
        let mut config = test_config();
        configure(&mut config);
        config.database.database_url = db_url.clone();
        database::create(&db_name).await;
        let telemetry = match config.otlp_endpoint {
            Some(_) => Some(roaming::telemetry::init(&config).expect("trace export starts")),
            None => {
                TRACING.call_once(|| {
                    if std::env::var_os("TEST_LOG").is_some() {
                        roaming_runtime::telemetry::init(false);
                    }
                });
                None
            }
        };
        let clock = Arc::new(ManualClock::new(1_800_000_000_000));
        let app = roaming::App::from_config(config.clone())
            .await
            .expect("the test database (see roaming_testkit::admin_url) must accept connections")
            .with_clock(clock.clone());
        let store = app.store.clone();
        let server = RunningServer::bind(app).await;
        Self {
            addr: server.addr,
            endpoint: server.endpoint.clone(),
            clock,
            signer: TokenSigner::hs256(SECRET)
                .with_audience(config.keys.jwt_audience.clone())
                .with_issuer(config.keys.jwt_issuer.clone()),
            store,
            config,
            db_name,
            db_url,
            server,
            telemetry,
        }
    }

    /// Another server over this test's database and clock, built from `config` (for
    /// instance this app's `config` with other keys), on `listener`.
    pub fn serve_also(
        &self,
        config: ServeConfig,
        listener: tokio::net::TcpListener,
    ) -> RunningServer {
        let app = roaming::App::new(config, self.store.clone())
            .expect("a valid configuration")
            .with_clock(self.clock.clone());
        RunningServer::start(app, listener)
    }

    /// A valid token.
    pub fn token(&self, sub: &str, service: bool) -> String {
        self.signer
            .mint(sub, service, roaming_runtime::auth::now_secs(), 3600)
    }

    /// A client with arbitrary credentials.
    pub async fn client_with(&self, token: Option<&str>, act_as: Option<&str>) -> Client {
        let mut b = Client::builder(self.endpoint.clone());
        if let Some(t) = token {
            b = b.token(t);
        }
        if let Some(u) = act_as {
            b = b.act_as(u);
        }
        b.connect().await.expect("connect")
    }

    /// A client holding `user`'s own token.
    pub async fn user(&self, user: &str) -> Client {
        self.client_with(Some(&self.token(user, false)), None).await
    }

    /// A client holding a service token (no act-as user).
    pub async fn service(&self) -> Client {
        self.client_with(Some(&self.token("gateway", true)), None)
            .await
    }

    /// A client holding a service token acting for `user`.
    pub async fn service_as(&self, user: &str) -> Client {
        self.client_with(Some(&self.token("gateway", true)), Some(user))
            .await
    }

    /// The `grpc.health.v1` status of `service` ("" for the whole server), asked without a
    /// token over a fresh connection.
    pub async fn health(&self, service: &str) -> Result<i32, tonic::Status> {
        let channel = tonic::transport::Endpoint::from_shared(self.endpoint.clone())
            .expect("a valid endpoint")
            .connect()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        tonic_health::pb::health_client::HealthClient::new(channel)
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .map(|r| r.into_inner().status)
    }

    /// A direct SQL connection to this test's database.
    pub async fn sql(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.db_url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
    }

    /// Signals shutdown and waits for the server to stop; then exports the spans still
    /// buffered, if traces are exported.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        let result = self.server.stop().await;
        if let Some(telemetry) = self.telemetry.take() {
            telemetry.shutdown().await;
        }
        result
    }

    /// Stores one message through the service token and returns it.
    pub async fn send(
        &self,
        kind: ConversationType,
        sender: &str,
        recipient: &str,
        text: &str,
    ) -> Message {
        let client_msg_id = format!("c{}", COUNTER.fetch_add(1, Ordering::SeqCst));
        self.send_with_id(kind, sender, recipient, text, &client_msg_id)
            .await
    }

    /// Stores one message with a chosen `client_msg_id`.
    pub async fn send_with_id(
        &self,
        kind: ConversationType,
        sender: &str,
        recipient: &str,
        text: &str,
        client_msg_id: &str,
    ) -> Message {
        let response = self
            .service()
            .await
            .history()
            .append_messages(one_message(kind, sender, recipient, text, client_msg_id))
            .await
            .expect("append")
            .into_inner();
        response.results[0].message.clone().expect("message")
    }

    /// Stores a PEER message.
    pub async fn peer(&self, sender: &str, recipient: &str, text: &str) -> Message {
        self.send(ConversationType::Peer, sender, recipient, text)
            .await
    }

    /// Makes `users` members of group `group`.
    pub async fn add_members(&self, kind: ConversationType, group: &str, users: &[&str]) {
        self.service()
            .await
            .conversations()
            .add_members(roaming_client::proto::conversation::v1::AddMembersRequest {
                conversation: Some(conv(kind, group)),
                user_ids: users.iter().map(|u| u.to_string()).collect(),
            })
            .await
            .expect("add members");
    }

    /// Every page of `user`'s view of a conversation in one stream call (`max_pages` 100).
    pub async fn fetch_all(
        &self,
        user: &str,
        conversation: ConversationRef,
        direction: hpb::Direction,
    ) -> Vec<Message> {
        let pages = fetch_pages(
            &self.user(user).await,
            hpb::FetchHistoryRequest {
                conversation: Some(conversation),
                direction: direction as i32,
                page_size: 50,
                max_pages: 100,
                ..Default::default()
            },
        )
        .await
        .expect("fetch");
        pages.into_iter().flat_map(|p| p.messages).collect()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.begin_shutdown();
        database::drop_blocking(&self.db_name);
    }
}

/// A conversation reference.
pub fn conv(kind: ConversationType, id: &str) -> ConversationRef {
    ConversationRef {
        r#type: kind as i32,
        id: id.to_owned(),
    }
}

/// A PEER conversation reference.
pub fn peer(id: &str) -> ConversationRef {
    conv(ConversationType::Peer, id)
}

/// A TEXT message to store.
pub fn new_message(
    kind: ConversationType,
    sender: &str,
    recipient: &str,
    text: &str,
    client_msg_id: &str,
) -> hpb::NewMessage {
    hpb::NewMessage {
        conversation_type: kind as i32,
        sender: sender.to_owned(),
        recipient: recipient.to_owned(),
        r#type: MessageType::Text as i32,
        body: text.as_bytes().to_vec(),
        attributes: Default::default(),
        client_msg_id: client_msg_id.to_owned(),
    }
}

/// An AppendMessages request of one TEXT message ([`new_message`]).
pub fn one_message(
    kind: ConversationType,
    sender: &str,
    recipient: &str,
    text: &str,
    client_msg_id: &str,
) -> hpb::AppendMessagesRequest {
    hpb::AppendMessagesRequest {
        messages: vec![new_message(kind, sender, recipient, text, client_msg_id)],
    }
}

/// Every page a FetchHistory call streams.
pub async fn fetch_pages(
    client: &Client,
    request: hpb::FetchHistoryRequest,
) -> Result<Vec<hpb::FetchHistoryResponse>, tonic::Status> {
    let mut stream = client.history().fetch_history(request).await?.into_inner();
    let mut pages = Vec::new();
    while let Some(page) = stream.message().await? {
        pages.push(page);
    }
    Ok(pages)
}

/// One whole SyncConversations call of `client` from `token` ("" for a snapshot): every
/// change of its pages, and the token its last page returned.
pub async fn sync_changes(
    client: &Client,
    token: &str,
) -> (
    Vec<roaming_client::proto::conversation::v1::ConversationChange>,
    String,
) {
    use roaming_client::proto::conversation::v1 as cpb;
    let mut stream = client
        .conversations()
        .sync_conversations(cpb::SyncConversationsRequest {
            sync_token: token.to_owned(),
            page_size: 0,
        })
        .await
        .expect("sync")
        .into_inner();
    let mut changes = Vec::new();
    let mut next = String::new();
    while let Some(page) = stream.message().await.expect("sync page") {
        changes.extend(page.changes);
        next = page.next_sync_token;
    }
    (changes, next)
}

/// The bodies of `messages` as text.
pub fn bodies(messages: &[Message]) -> Vec<String> {
    messages
        .iter()
        .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        .collect()
}

/// Asserts a status code, and that the message names `field`.
#[track_caller]
pub fn assert_status<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: tonic::Code,
    field: &str,
) {
    match result {
        Ok(v) => panic!("expected {code:?} naming {field:?}, got Ok({v:?})"),
        Err(s) => {
            assert_eq!(s.code(), code, "status: {s:?}");
            assert!(
                s.message().contains(field),
                "message {:?} should name {field:?}",
                s.message()
            );
        }
    }
}
