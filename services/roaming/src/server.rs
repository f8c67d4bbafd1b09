//! Composing the services into one tonic server, and shutting it down gracefully.

use crate::config::ServiceName;
use anyhow::Context as _;
use roaming_conversation::{ConversationService, ListSettings};
use roaming_history::HistoryService;
use roaming_proto::conversation::v1::conversation_service_server::ConversationServiceServer;
use roaming_proto::history::v1::history_service_server::HistoryServiceServer;
use roaming_runtime::guard::{GuardLayer, GuardSettings};
use roaming_runtime::{Authenticator, CursorSealer, auth};
use roaming_store::db::{self, PoolSettings};
use roaming_store::{Clock, Limits, Store};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::interceptor::InterceptedService;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// Everything a running server needs.
#[derive(Debug, Clone)]
pub struct App {
    /// The data layer.
    pub store: Store,
    /// Token verification.
    pub auth: Arc<Authenticator>,
    /// Cursor sealing (same key on every replica).
    pub sealer: CursorSealer,
    /// The time source.
    pub clock: Arc<dyn Clock>,
    /// Which services to serve.
    pub services: Vec<ServiceName>,
    /// Request-shape limits.
    pub limits: Limits,
    /// Conversation-list defaults.
    pub list: ListSettings,
    /// How long calls may finish after shutdown begins.
    pub drain_timeout: Duration,
    /// Admission limit and server-side request deadline.
    pub guard: GuardSettings,
    /// Largest request message accepted (bigger: RESOURCE_EXHAUSTED).
    pub max_message_bytes: usize,
    /// Connections are closed gracefully after this age, so load spreads after a scale-out.
    pub max_connection_age: Option<Duration>,
    /// HTTP/2 keepalive ping interval (dead peers are dropped after a further 10 s).
    pub keepalive_interval: Duration,
}

/// Creates the database if missing, applies migrations, and returns a pooled store.
pub async fn open_store(database_url: &str, pool: &PoolSettings) -> anyhow::Result<Store> {
    let config = db::parse_url(database_url)?;
    db::ensure_database(&config)
        .await
        .context("creating the database")?;
    let mut client = db::connect(&config)
        .await
        .context("connecting to the database")?;
    roaming_store::migrate::run(&mut client)
        .await
        .context("migrating the database")?;
    drop(client);
    Ok(Store::new(db::pool(config, pool)?))
}

/// Health service name that is SERVING whenever the process answers (liveness probes);
/// the empty name and the service names follow the database (readiness).
pub const LIVENESS: &str = "liveness";

const SERVICE_NAMES: [(&str, ServiceName); 2] = [
    ("roaming.history.v1.HistoryService", ServiceName::History),
    (
        "roaming.conversation.v1.ConversationService",
        ServiceName::Conversation,
    ),
];

async fn set_health(reporter: &HealthReporter, services: &[ServiceName], status: ServingStatus) {
    reporter.set_service_status("", status).await;
    for (name, service) in SERVICE_NAMES {
        if services.contains(&service) {
            reporter.set_service_status(name, status).await;
        }
    }
}

/// Serves until `shutdown` completes, then: health NOT_SERVING, 50 ms later open streams
/// ended with UNAVAILABLE, unary calls still served for a grace (a quarter of
/// `drain_timeout`, at most 2 s), then no new connections (GOAWAY), and in-flight calls
/// given the rest of `drain_timeout` to finish.
pub async fn serve(
    app: App,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (reporter, health) = tonic_health::server::health_reporter();
    let (stop_streams, streams_stopped) = watch::channel(false);

    let interceptor = auth::interceptor(app.auth.clone());
    let history = app.services.contains(&ServiceName::History).then(|| {
        let service = HistoryService::new(
            app.store.clone(),
            app.limits.clone(),
            app.clock.clone(),
            app.sealer.clone(),
            streams_stopped.clone(),
        );
        let server =
            HistoryServiceServer::new(service).max_decoding_message_size(app.max_message_bytes);
        InterceptedService::new(server, interceptor.clone())
    });
    let conversation = app.services.contains(&ServiceName::Conversation).then(|| {
        let service = ConversationService::new(
            app.store.clone(),
            app.limits.clone(),
            app.list,
            app.clock.clone(),
            app.sealer.clone(),
        );
        let server = ConversationServiceServer::new(service)
            .max_decoding_message_size(app.max_message_bytes);
        InterceptedService::new(server, interceptor.clone())
    });

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(roaming_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(roaming_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    // SERVING only once the database answers; a watcher keeps the status true afterwards.
    let status = if database_answers(&app.store).await {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    set_health(&reporter, &app.services, status).await;
    // Liveness says only that the process answers: a database outage must not make the
    // orchestrator restart replicas that will serve again as soon as it is back.
    reporter
        .set_service_status(LIVENESS, ServingStatus::Serving)
        .await;
    let (draining_tx, mut draining) = watch::channel(false);
    let watcher = tokio::spawn(watch_database(
        app.store.clone(),
        reporter.clone(),
        app.services.clone(),
        draining.clone(),
    ));

    let addr = listener.local_addr()?;
    tracing::info!(%addr, services = ?app.services, "serving");
    let shutdown_reporter = reporter.clone();
    let services = app.services.clone();
    let grace = not_serving_grace(app.drain_timeout);
    let graceful = async move {
        shutdown.await;
        tracing::info!(
            ?grace,
            "shutting down: NOT_SERVING, ending streams, draining calls"
        );
        let _ = draining_tx.send(true);
        set_health(&shutdown_reporter, &services, ServingStatus::NotServing).await;
        // NOT_SERVING goes out first, a moment ahead of anything else; then open streams end
        // with UNAVAILABLE (their readers resume elsewhere from their last cursor). Unary
        // calls are still served for a grace period, so that health checkers and load
        // balancers see NOT_SERVING and route new calls elsewhere before the connections go
        // away. Before, NOT_SERVING, the streams' UNAVAILABLE and the GOAWAY left at the
        // same instant: clients could not see the first before the others, and callers still
        // routed here failed at once (found by the reliability suite's shutdown test). The
        // pause and the grace count within the drain deadline.
        tokio::time::sleep(NOT_SERVING_LEAD).await;
        let _ = stop_streams.send(true);
        tokio::time::sleep(grace).await;
    };
    let mut builder = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(app.keepalive_interval))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .tcp_nodelay(true);
    if let Some(age) = app.max_connection_age {
        builder = builder.max_connection_age(age);
    }
    let server = builder
        .layer(GuardLayer::new(app.guard))
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_optional_service(history)
        .add_optional_service(conversation)
        .serve_with_incoming_shutdown(
            // TCP_NODELAY on every accepted connection. The builder's `tcp_nodelay` is ignored
            // by `serve_with_incoming*`, so with a bare listener stream Nagle's algorithm held
            // back small response frames until the client's delayed ACK: ~40 ms added to
            // every call (found by the reliability suite's overload test, whose normal p50
            // was 47 ms for a one-page read).
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            graceful,
        );
    tokio::pin!(server);
    let drain_timeout = app.drain_timeout;
    let result = tokio::select! {
        r = &mut server => r.map_err(anyhow::Error::from),
        _ = async {
            let _ = draining.wait_for(|d| *d).await;
            tokio::time::sleep(drain_timeout).await;
        } => {
            tracing::warn!(?drain_timeout, "drain deadline passed; closing remaining calls");
            Ok(())
        }
    };
    watcher.abort();
    result
}

/// How far NOT_SERVING leads the end of open streams on shutdown.
const NOT_SERVING_LEAD: Duration = Duration::from_millis(50);

/// How long the server keeps serving unary calls after reporting NOT_SERVING: a quarter of
/// the drain deadline, at most 2 s.
fn not_serving_grace(drain_timeout: Duration) -> Duration {
    (drain_timeout / 4).min(Duration::from_secs(2))
}

/// Longest a health ping may take. A frozen or unreachable database accepts the TCP
/// connection and then never answers: a ping that got an idle pooled connection waited on
/// `SELECT 1` for as long as the database was frozen, and meanwhile health kept saying
/// SERVING (seen while writing the reliability suite's frozen-database test, which checks
/// that health says NOT_SERVING during a freeze). Dropping the ping cancels its statement
/// and detaches its connection.
const PING_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether a pooled connection answers `SELECT 1` within `PING_TIMEOUT`.
async fn database_answers(store: &Store) -> bool {
    matches!(
        tokio::time::timeout(PING_TIMEOUT, store.ping()).await,
        Ok(Ok(()))
    )
}

/// Reports NOT_SERVING while the database does not answer, SERVING again when it does.
async fn watch_database(
    store: Store,
    reporter: HealthReporter,
    services: Vec<ServiceName>,
    draining: watch::Receiver<bool>,
) {
    let mut last = None;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        if *draining.borrow() {
            return;
        }
        let ok = database_answers(&store).await;
        if last != Some(ok) {
            let status = if ok {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            set_health(&reporter, &services, status).await;
            last = Some(ok);
        }
    }
}

/// Serves Prometheus metrics at `GET /metrics` on `listener` until `shutdown`.
pub async fn serve_metrics(
    listener: TcpListener,
    store: Store,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let handle = roaming_runtime::metrics::install();
    let render = move || {
        let handle = handle.clone();
        let store = store.clone();
        async move {
            let s = store.pool().status();
            roaming_runtime::metrics::record_pool(
                roaming_runtime::metrics::deadpool_status::Status {
                    max_size: s.max_size,
                    size: s.size,
                    available: s.available,
                    waiting: s.waiting,
                },
            );
            handle.render()
        }
    };
    let router = axum::Router::new().route("/metrics", axum::routing::get(render));
    tracing::info!(addr = %listener.local_addr()?, "serving metrics at /metrics");
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}
