//! Prometheus metrics: the process-wide recorder and the names Roaming records.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

/// Calls answered, by method and gRPC status code name.
pub const REQUESTS: &str = "roaming_grpc_requests_total";
/// Call duration in seconds (for streams: until the stream ended), by method and code.
pub const DURATION: &str = "roaming_grpc_request_duration_seconds";
/// Calls (unary and streams) in progress, by method.
pub const IN_FLIGHT: &str = "roaming_grpc_in_flight";
/// Calls refused by the concurrency limit, by method.
pub const SHED: &str = "roaming_grpc_shed_total";
/// Calls refused by the per-user quota, by method.
pub const QUOTA_REFUSED: &str = "roaming_grpc_quota_refused_total";
/// Calls the guard ended because their reader took nothing for the stall timeout, by method.
pub const STALLED: &str = "roaming_grpc_stalled_total";
/// Connections closed because a call the server had ended could not deliver its status (the
/// peer took nothing for another stall timeout).
pub const CONNECTIONS_CLOSED: &str = "roaming_connections_closed_total";
/// Messages stored by AppendMessages (duplicates excluded).
pub const APPENDED: &str = "roaming_messages_appended_total";
/// AppendMessages entries that were duplicates of stored messages.
pub const DUPLICATES: &str = "roaming_messages_duplicate_total";
/// Database pool: connections open.
pub const POOL_SIZE: &str = "roaming_db_pool_connections";
/// Database pool: idle connections.
pub const POOL_AVAILABLE: &str = "roaming_db_pool_available";
/// Database pool: callers waiting for a connection.
pub const POOL_WAITING: &str = "roaming_db_pool_waiting";
/// Database pool: the configured maximum.
pub const POOL_MAX: &str = "roaming_db_pool_max";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the global recorder once per process and returns the handle that renders it.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(DURATION.to_owned()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0, 10.0,
                    ],
                )
                .expect("static bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (embedding applications); then our
            // handle renders only what we record through it, which is still correct output.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Records the pool's state as gauges (called right before each scrape).
pub fn record_pool(status: deadpool_status::Status) {
    metrics::gauge!(POOL_SIZE).set(status.size as f64);
    metrics::gauge!(POOL_AVAILABLE).set(status.available as f64);
    metrics::gauge!(POOL_WAITING).set(status.waiting as f64);
    metrics::gauge!(POOL_MAX).set(status.max_size as f64);
}

/// The pool figures, decoupled from deadpool's type.
pub mod deadpool_status {
    /// A snapshot of the pool.
    #[derive(Debug, Clone, Copy)]
    pub struct Status {
        /// Most connections.
        pub max_size: usize,
        /// Open connections.
        pub size: usize,
        /// Idle connections.
        pub available: usize,
        /// Waiting callers.
        pub waiting: usize,
    }
}
