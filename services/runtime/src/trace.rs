//! One span per RPC, opened by the guard layer and filled in as the call learns who calls and
//! about what, and the audit trail of what service tokens do.
//!
//! Everything logged inside a call carries the span's fields (rpc, caller `sub`, acting user,
//! conversation); the guard records the status code and the latency when the call ends and
//! logs one `call finished` line at INFO.

use crate::auth::Caller;
use prost::Message as _;
use roaming_domain::Conversation;
use std::collections::HashMap;
use std::sync::LazyLock;
use tracing::Span;
use tracing::field::Empty;

/// The label of a request path that names no Roaming RPC.
pub const UNKNOWN_RPC: &str = "unknown";

/// What the contract says about one RPC.
#[derive(Debug, Clone, Copy)]
struct RpcInfo {
    name: &'static str,
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
            for method in &service.method {
                let name: &'static str = Box::leak(method.name().to_owned().into_boxed_str());
                let info = RpcInfo {
                    name,
                    server_streaming: method.server_streaming(),
                };
                names.insert(format!("/{package}.{}/{name}", service.name()), info);
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
pub fn rpc_span(rpc: &'static str) -> Span {
    tracing::info_span!(
        "rpc",
        rpc,
        sub = Empty,
        user = Empty,
        conversation = Empty,
        code = Empty,
        latency_ms = Empty
    )
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
