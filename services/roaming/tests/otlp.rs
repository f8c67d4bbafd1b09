//! Traces reach an OpenTelemetry collector over OTLP/gRPC and join the caller's trace: a
//! collector's trace service (the one from the OpenTelemetry proto crate) runs in the test,
//! a server started through the testkit with `otlp_endpoint` pointing at it installs trace
//! export as `roaming serve` does (`roaming::telemetry::init`), and a call carrying a W3C
//! `traceparent` must arrive as a server span of the caller's trace, the caller's span its
//! parent, with the call's `sql` spans as its children.
//!
//! Its own test binary: the tracing subscriber is process-wide.

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use roaming_client::proto::common::v1::ConversationType;
use roaming_testkit::{TestApp, one_message};
use std::time::Duration;
use tokio::sync::mpsc;

/// The caller's trace and span, as a gateway would send them.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN_ID: &str = "00f067aa0ba902b7";

/// A collector that hands every span it receives to the test.
struct Receiver(mpsc::UnboundedSender<Span>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                for span in scope.spans {
                    let _ = self.0.send(span);
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn string_attribute<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_with_a_traceparent_is_exported_as_a_child_of_the_callers_span() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector = format!("http://{}", listener.local_addr().unwrap());
    let (spans_tx, mut spans) = mpsc::unbounded_channel();
    let receiver = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Receiver(spans_tx)))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let mut app = TestApp::spawn_with(|c| c.otlp_endpoint = Some(collector)).await;
    let gateway = app.service().await;
    let mut request = tonic::Request::new(one_message(
        ConversationType::Peer,
        "alice",
        "bob",
        "hello",
        "m-1",
    ));
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01")
            .parse()
            .unwrap(),
    );
    gateway
        .history()
        .append_messages(request)
        .await
        .expect("append");
    // A call without one starts a trace of its own.
    gateway
        .history()
        .append_messages(one_message(
            ConversationType::Peer,
            "alice",
            "bob",
            "again",
            "m-2",
        ))
        .await
        .expect("append");
    drop(gateway);
    // Stopping the server flushes the export: every span is at the collector when it returns.
    app.stop().await.unwrap();

    let mut received = Vec::new();
    while let Ok(span) = spans.try_recv() {
        received.push(span);
    }
    // Bounded in case the flush answered before the collector's handler handed them over.
    while received
        .iter()
        .filter(|s| s.name == "AppendMessages")
        .count()
        < 2
    {
        match tokio::time::timeout(Duration::from_secs(20), spans.recv()).await {
            Ok(Some(span)) => received.push(span),
            _ => panic!("two AppendMessages spans within 20 s; got {received:#?}"),
        }
    }

    let (joined, own): (Vec<&Span>, Vec<&Span>) = received
        .iter()
        .filter(|s| s.name == "AppendMessages")
        .partition(|s| hex(&s.trace_id) == TRACE_ID);
    let [call] = joined[..] else {
        panic!("one AppendMessages span of the caller's trace: {received:#?}");
    };
    assert_eq!(hex(&call.parent_span_id), PARENT_SPAN_ID, "{call:#?}");
    assert_eq!(call.kind, SpanKind::Server as i32, "{call:#?}");
    assert_eq!(string_attribute(call, "rpc"), Some("AppendMessages"));
    assert_eq!(string_attribute(call, "rpc.system"), Some("grpc"));
    assert_eq!(
        string_attribute(call, "rpc.service"),
        Some("roaming.history.v1.HistoryService")
    );
    assert_eq!(string_attribute(call, "code"), Some("Ok"));
    assert_eq!(string_attribute(call, "sub"), Some("gateway"));

    // The call's store operations are its children, within its time.
    let sql: Vec<&Span> = received
        .iter()
        .filter(|s| s.name == "sql" && s.parent_span_id == call.span_id)
        .collect();
    assert!(!sql.is_empty(), "the call's sql spans: {received:#?}");
    for span in &sql {
        assert_eq!(span.trace_id, call.trace_id);
        assert_eq!(span.kind, SpanKind::Client as i32);
        assert_eq!(string_attribute(span, "db.system"), Some("postgresql"));
        assert!(span.start_time_unix_nano >= call.start_time_unix_nano);
        assert!(span.end_time_unix_nano <= call.end_time_unix_nano);
    }

    let [other] = own[..] else {
        panic!("one AppendMessages span of a trace of its own: {received:#?}");
    };
    assert!(other.parent_span_id.is_empty(), "{other:#?}");
    assert_ne!(other.trace_id, call.trace_id);

    receiver.abort();
}
