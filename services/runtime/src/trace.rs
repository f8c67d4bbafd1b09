//! One span per RPC, opened by the guard layer and filled in as the call learns who calls and
//! about what, and the audit trail of what service tokens do.
//!
//! Everything logged inside a call carries the span's fields (rpc, caller `sub`, acting user,
//! conversation); the guard records the status code and the latency when the call ends and
//! logs one `call finished` line at INFO.
//!
//! The span continues the caller's trace: a W3C `traceparent` (and `tracestate`) in the
//! request's metadata becomes its OpenTelemetry parent, so where spans are exported
//! (`ROAMING_OTLP_ENDPOINT`) a gateway's trace shows the call, and the store operations in it,
//! as its children. Without an exporter that costs nothing but reading the header.

use crate::auth::Caller;
use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use prost::Message as _;
use roaming_domain::Conversation;
use std::collections::HashMap;
use std::sync::LazyLock;
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The label of a request path that names no Roaming RPC.
pub const UNKNOWN_RPC: &str = "unknown";

/// What the contract says about one RPC.
#[derive(Debug, Clone, Copy)]
struct RpcInfo {
    name: &'static str,
    /// `<package>.<Service>`.
    service: &'static str,
    server_streaming: bool,
}

/// `/<package>.<Service>/<Method>` of every RPC in the contract, to its method name and kind.
/// Built from the compiled descriptor set, so a new RPC is known without a list to keep in step.
static RPCS: LazyLock<HashMap<String, RpcInfo>> = LazyLock::new(|| {
    let set = prost_types::FileDescriptorSet::decode(roaming_proto::FILE_DESCRIPTOR_SET)
        .expect("the compiled descriptor set decodes");
    let mut names = HashMap::new();
    for file in set.file {
        let package = file.package();
        for service in &file.service {
            let full: &'static str =
                Box::leak(format!("{package}.{}", service.name()).into_boxed_str());
            for method in &service.method {
                let name: &'static str = Box::leak(method.name().to_owned().into_boxed_str());
                let info = RpcInfo {
                    name,
                    service: full,
                    server_streaming: method.server_streaming(),
                };
                names.insert(format!("/{full}/{name}"), info);
            }
        }
    }
    names
});

/// The RPC a request path names, from the fixed set the contract defines; anything else is
/// [`UNKNOWN_RPC`]. Metric labels and span names come from here only, never from the raw path
/// (which the client chooses).
pub fn rpc_name(path: &str) -> &'static str {
    RPCS.get(path).map_or(UNKNOWN_RPC, |rpc| rpc.name)
}

/// Whether the RPC a request path names answers with a stream of messages (FetchHistory);
/// unknown paths are not.
pub fn is_server_streaming(path: &str) -> bool {
    RPCS.get(path).is_some_and(|rpc| rpc.server_streaming)
}

/// The span of one call of `rpc`; the other fields are recorded as the call learns them.
/// Exported, it is a server span named after the RPC.
pub fn rpc_span(rpc: &'static str) -> Span {
    tracing::info_span!(
        "rpc",
        otel.name = rpc,
        otel.kind = "server",
        rpc,
        sub = Empty,
        user = Empty,
        conversation = Empty,
        code = Empty,
        latency_ms = Empty
    )
}

/// Makes `span`, the span of a call to `path`, continue the caller's trace from the W3C
/// `traceparent` and `tracestate` in `headers`, and gives it the RPC semantic-convention
/// attributes. Does nothing where spans are not exported, or without a valid `traceparent`
/// (the span then starts a trace of its own). Call it before the span is first entered.
pub fn continue_trace(span: &Span, path: &str, headers: &http::HeaderMap) {
    if let Some(rpc) = RPCS.get(path) {
        span.set_attribute("rpc.system", "grpc");
        span.set_attribute("rpc.service", rpc.service);
        span.set_attribute("rpc.method", rpc.name);
    }
    if headers.contains_key("traceparent") {
        let parent = TraceContextPropagator::new().extract(&MetadataExtractor(headers));
        // Errs only where there is no exporting layer (or the span is off): nothing to join.
        let _ = span.set_parent(parent);
    }
}

/// Request metadata as the propagator reads it.
struct MetadataExtractor<'a>(&'a http::HeaderMap);

impl Extractor for MetadataExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Records the authenticated caller in the current call's span.
pub fn record_caller(caller: &Caller) {
    let span = Span::current();
    span.record("sub", caller.subject.as_str());
    if let Some(user) = &caller.act_as {
        span.record("user", user.as_str());
    }
}

/// Records the conversation a call is about in the current call's span.
pub fn record_conversation(conversation: &Conversation) {
    Span::current().record("conversation", conversation.key().as_str());
}

/// One audit line for an action a service token took (appends, purges, membership): which
/// service (`sub`), for whom, on what. Target `roaming::audit`, so it can be routed apart.
pub fn audit(caller: &Caller, action: &'static str, conversation: &Conversation, count: usize) {
    tracing::info!(
        target: "roaming::audit",
        service = caller.subject.as_str(),
        acting_user = caller.act_as.as_ref().map(|u| u.as_str()),
        action,
        conversation = conversation.key().as_str(),
        count,
        "service action"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_paths_name_their_rpc_and_anything_else_is_unknown() {
        assert_eq!(
            rpc_name("/roaming.history.v1.HistoryService/FetchHistory"),
            "FetchHistory"
        );
        assert_eq!(
            rpc_name("/roaming.conversation.v1.ConversationService/AddMembers"),
            "AddMembers"
        );
        assert_eq!(
            rpc_name("/roaming.history.v1.HistoryService/Nope"),
            UNKNOWN_RPC
        );
        assert_eq!(rpc_name(&"/x".repeat(5000)), UNKNOWN_RPC);
    }

    #[test]
    fn only_fetch_history_streams() {
        assert!(is_server_streaming(
            "/roaming.history.v1.HistoryService/FetchHistory"
        ));
        assert!(!is_server_streaming(
            "/roaming.conversation.v1.ConversationService/ListConversations"
        ));
        assert!(!is_server_streaming("/nope/FetchHistory"));
    }
}
