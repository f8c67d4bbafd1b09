//! Composing the services into one tonic server, and shutting it down gracefully.

use crate::app::App;
use crate::config::ServiceName;
use roaming_conversation::ConversationService;
use roaming_history::HistoryService;
use roaming_proto::conversation::v1::conversation_service_server::{
    self as conversation_server, ConversationServiceServer,
};
use roaming_proto::history::v1::history_service_server::{
    self as history_server, HistoryServiceServer,
};
use roaming_runtime::auth;
use roaming_runtime::guard::{GuardLayer, GuardedStream};
use roaming_store::Store;
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_stream::StreamExt as _;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// Health service name that is SERVING whenever the process answers (liveness probes);
/// the empty name and the service names follow the database (readiness).
pub const LIVENESS: &str = "liveness";

const SERVICE_NAMES: [(&str, ServiceName); 2] = [
    (history_server::SERVICE_NAME, ServiceName::History),
    (conversation_server::SERVICE_NAME, ServiceName::Conversation),
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
    let config = &app.config;
    let services = config.services.clone();
    let limits = config.limits.to_limits();
    let max_message_bytes = config.protection.max_message_bytes;
    let (reporter, health) = tonic_health::server::health_reporter();
    // Cancelled on shutdown, a moment after NOT_SERVING: open streams end with UNAVAILABLE.
    let stop_streams = CancellationToken::new();
    // Cancelled when shutdown begins: the database watcher stops, the drain deadline starts.
    let draining = CancellationToken::new();

    let interceptor = auth::interceptor(app.auth.clone());
    let history = services.contains(&ServiceName::History).then(|| {
        let service = HistoryService::new(
            app.store.clone(),
            limits.clone(),
            config.changes(),
            app.clock.clone(),
            app.sealer.clone(),
            stop_streams.clone(),
        );
        let server =
            HistoryServiceServer::new(service).max_decoding_message_size(max_message_bytes);
        InterceptedService::new(server, interceptor.clone())
    });
    let conversation = services.contains(&ServiceName::Conversation).then(|| {
        let service = ConversationService::new(
            app.store.clone(),
            limits.clone(),
            roaming_conversation::Settings {
                list: config.list(),
                sync: config.sync(),
                read: config.read(),
            },
            app.clock.clone(),
            app.sealer.clone(),
            stop_streams.clone(),
        );
        let server =
            ConversationServiceServer::new(service).max_decoding_message_size(max_message_bytes);
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
    set_health(&reporter, &services, status).await;
    // Liveness says only that the process answers: a database outage must not make the
    // orchestrator restart replicas that will serve again as soon as it is back.
    reporter
        .set_service_status(LIVENESS, ServingStatus::Serving)
        .await;
    let watcher = tokio::spawn(watch_database(
        app.store.clone(),
        reporter.clone(),
        services.clone(),
        draining.clone(),
    ));

    let addr = listener.local_addr()?;
    tracing::info!(%addr, services = ?services, tls = app.tls.is_some(), "serving");
    let shutdown_reporter = reporter.clone();
    let drain_timeout = *config.drain_timeout;
    let grace = not_serving_grace(drain_timeout);
    let graceful = {
        let draining = draining.clone();
        let services = services.clone();
        async move {
            shutdown.await;
            tracing::info!(
                ?grace,
                "shutting down: NOT_SERVING, ending streams, draining calls"
            );
            draining.cancel();
            set_health(&shutdown_reporter, &services, ServingStatus::NotServing).await;
            // NOT_SERVING goes out first, a moment ahead of anything else; then open streams
            // end with UNAVAILABLE (their readers resume elsewhere from their last cursor).
            // Unary calls are still served for a grace period, so that health checkers and
            // load balancers see NOT_SERVING and route new calls elsewhere before the
            // connections go away: were all three sent at one instant, a client could not see
            // the first before the others. The pause and the grace count within the drain
            // deadline.
            tokio::time::sleep(NOT_SERVING_LEAD).await;
            stop_streams.cancel();
            tokio::time::sleep(grace).await;
        }
    };
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = app.tls.clone() {
        // tonic builds its rustls configuration with the process-wide default provider: make
        // it ring (the one this workspace compiles in), should another provider ever be
        // compiled in too. An error means one is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        builder = builder.tls_config(tls)?;
    }
    let server = builder
        .http2_keepalive_interval(Some(*config.protection.http2_keepalive))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .max_connection_age(*config.protection.max_connection_age)
        .max_concurrent_streams(Some(config.protection.max_streams_per_connection))
        .layer(GuardLayer::new(config.protection.guard()))
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_optional_service(history)
        .add_optional_service(conversation)
        .serve_with_incoming_shutdown(
            // TCP_NODELAY on every accepted connection (set here: the builder's own setting
            // applies only to listeners it binds itself). Without it Nagle's algorithm holds
            // back small response frames until the client's delayed ACK, ~40 ms a call.
            // Each connection is wrapped so that the guard can close it when its peer holds a
            // call the server ended and takes nothing (`roaming_runtime::guard::conn`).
            tonic::transport::server::TcpIncoming::from(listener)
                .with_nodelay(Some(true))
                .map(|accepted| accepted.map(GuardedStream::new)),
            graceful,
        );
    tokio::pin!(server);
    let result = tokio::select! {
        r = &mut server => r.map_err(anyhow::Error::from),
        _ = async {
            draining.cancelled().await;
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
/// connection and then never answers: without a bound, a ping on an idle pooled connection
/// would wait on `SELECT 1` for as long as the database is frozen, and health would keep
/// saying SERVING meanwhile. Dropping the ping cancels its statement and detaches its
/// connection.
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
    draining: CancellationToken,
) {
    let mut last = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = draining.cancelled() => return,
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
