//! What `roaming serve` installs before anything else: the log lines, and, when
//! `ROAMING_OTLP_ENDPOINT` is set, trace export over OTLP/gRPC beside them.
//!
//! The spans exported are Roaming's own (targets `roaming*`): each call's span (which
//! continues the caller's `traceparent`, see `roaming_runtime::trace`) and the store's
//! operations in it. The gRPC client that exports them is never traced itself. The standard
//! `OTEL_*` variables (service name, sampler, batch and exporter settings) apply; the service
//! name is `roaming` unless they name one.

use crate::config::ServeConfig;
use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig as _, WithTonicConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use roaming_runtime::telemetry as logs;
use tracing_subscriber::Layer as _;

/// The installed telemetry; [`Telemetry::shutdown`] exports what is still buffered.
#[derive(Debug)]
#[must_use = "shut it down on exit, or the last spans are lost"]
pub struct Telemetry {
    traces: Option<SdkTracerProvider>,
}

/// Installs the process's subscriber as `config` says: log lines (`log_json`), and trace
/// export when `otlp_endpoint` is set. Call it once, inside the Tokio runtime (the exporter's
/// connection lives there). Fails on an endpoint that is not an `http://` or `https://` URI,
/// and, with an endpoint, when a global subscriber is installed already (its spans would go
/// nowhere).
pub fn init(config: &ServeConfig) -> anyhow::Result<Telemetry> {
    let Some(endpoint) = &config.otlp_endpoint else {
        logs::init(config.log_json);
        return Ok(Telemetry { traces: None });
    };
    let https = endpoint.starts_with("https://");
    if !https && !endpoint.starts_with("http://") {
        anyhow::bail!(
            "ROAMING_OTLP_ENDPOINT (--otlp-endpoint) {endpoint:?}: give the scheme, \
             http://host:port (plaintext) or https://host:port (TLS)"
        );
    }
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint.clone());
    if https {
        // The collector's certificate is checked against the Mozilla roots.
        exporter =
            exporter.with_tls_config(tonic::transport::ClientTlsConfig::new().with_webpki_roots());
    }
    let exporter = exporter
        .build()
        .with_context(|| format!("ROAMING_OTLP_ENDPOINT (--otlp-endpoint) {endpoint:?}"))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource())
        .build();
    let layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("roaming"))
        // Roaming's spans and events only: not hyper's, h2's or tonic's, whose spans in the
        // exporter's own calls would be exported in turn.
        .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
            meta.target().starts_with("roaming")
        }))
        .boxed();
    if !logs::init_with(config.log_json, Some(layer)) {
        let _ = provider.shutdown();
        anyhow::bail!("ROAMING_OTLP_ENDPOINT: a tracing subscriber is installed already");
    }
    tracing::info!(
        endpoint = endpoint.as_str(),
        "exporting traces over OTLP/gRPC"
    );
    Ok(Telemetry {
        traces: Some(provider),
    })
}

/// `service.name` from `OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES`, else `roaming`;
/// `service.version` this build's.
fn resource() -> Resource {
    let detected = Resource::builder().build();
    let named = detected
        .get(&opentelemetry::Key::from_static_str("service.name"))
        .is_some_and(|name| !name.as_str().starts_with("unknown_service"));
    let mut builder = Resource::builder().with_attribute(opentelemetry::KeyValue::new(
        "service.version",
        env!("CARGO_PKG_VERSION"),
    ));
    if !named {
        builder = builder.with_service_name("roaming");
    }
    builder.build()
}

impl Telemetry {
    /// Exports the spans still buffered (waiting at most the exporter's timeout) and stops the
    /// exporter. Call it after the server has stopped, so that the last calls' spans are in.
    pub async fn shutdown(self) {
        let Some(provider) = self.traces else {
            return;
        };
        // The batch processor's thread exports over a connection that this runtime drives:
        // wait for it off the runtime's threads.
        match tokio::task::spawn_blocking(move || provider.shutdown()).await {
            Ok(Ok(())) => tracing::debug!("trace export flushed"),
            Ok(Err(e)) => tracing::warn!(error = %e, "trace export did not flush"),
            Err(e) => tracing::warn!(error = %e, "trace export did not flush"),
        }
    }
}
