//! The server's guard layer, around every call: admission (a concurrency limit and a
//! per-user quota that refuse excess calls at once with RESOURCE_EXHAUSTED instead of
//! queueing them), a server-side deadline (over the whole response of a unary call, the first
//! page of a stream), the client's deadline (`grpc-timeout`) over the whole call, streams
//! included, a send-stall limit (a response whose reader takes nothing is ended and its slot
//! freed), gRPC metrics, the call's span (`crate::trace`), and RESOURCE_EXHAUSTED for
//! over-size messages.
//!
//! - `quota`: the per-user quota, and why its permit is taken by the auth interceptor;
//! - `body`: the response body, the watchdog that ends stalled or overdue calls, and how
//!   hyper drives a body when the peer's window is 0;
//! - `conn`: accepted connections the watchdog can close when a peer holds an ended call.

mod body;
mod conn;
mod quota;

pub use conn::{ConnectionHandle, GuardedConnection, GuardedStream};
pub use quota::QuotaSlot;

use crate::metrics as m;
use crate::trace;
use http::{HeaderValue, Request, Response};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tonic::body::Body;
use tonic::{Code, Status};
use tracing::{Instrument as _, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Settings of the guard.
#[derive(Debug, Clone, Copy)]
pub struct GuardSettings {
    /// Most calls in progress at once (streams included); more are refused.
    pub max_concurrent_calls: usize,
    /// Longest a unary call may take until its whole response (trailers included) is out,
    /// and a stream until its first page is ready.
    pub request_timeout: Duration,
    /// Most calls in progress per user (or per service acting for nobody); more are refused.
    pub max_calls_per_user: usize,
    /// Longest a response may wait for its reader to take anything before the call is ended
    /// with RESOURCE_EXHAUSTED; a reader that then does not take the status within as long
    /// again has its connection closed.
    pub stream_stall_timeout: Duration,
}

impl GuardSettings {
    /// The defaults (the server settings' defaults refer to these).
    pub const DEFAULT: GuardSettings = GuardSettings {
        max_concurrent_calls: 512,
        request_timeout: Duration::from_secs(30),
        // An eighth of the server for any one token: far more than a user's devices have
        // in flight, and room for a gateway's concurrent appends.
        max_calls_per_user: 64,
        stream_stall_timeout: Duration::from_secs(5),
    };
}

/// The tower layer.
#[derive(Debug, Clone)]
pub struct GuardLayer {
    permits: Arc<Semaphore>,
    quota: Arc<quota::Quota>,
    timeout: Duration,
    stall: Duration,
}

impl GuardLayer {
    /// A layer with `settings`.
    pub fn new(settings: GuardSettings) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(settings.max_concurrent_calls)),
            quota: quota::Quota::new(settings.max_calls_per_user),
            timeout: settings.request_timeout,
            stall: settings.stream_stall_timeout,
        }
    }
}

impl<S> tower::Layer<S> for GuardLayer {
    type Service = Guard<S>;
    fn layer(&self, inner: S) -> Guard<S> {
        Guard {
            inner,
            permits: self.permits.clone(),
            quota: self.quota.clone(),
            timeout: self.timeout,
            stall: self.stall,
        }
    }
}

/// The service the layer wraps around the router.
#[derive(Debug, Clone)]
pub struct Guard<S> {
    inner: S,
    permits: Arc<Semaphore>,
    quota: Arc<quota::Quota>,
    timeout: Duration,
    stall: Duration,
}

/// Health and reflection are never shed: probes must answer under load.
fn is_infrastructure(path: &str) -> bool {
    path.starts_with("/grpc.health.") || path.starts_with("/grpc.reflection.")
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S> tower::Service<Request<Body>> for Guard<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let path = request.uri().path();
        if is_infrastructure(path) {
            return Box::pin(self.inner.call(request));
        }
        let method = trace::rpc_name(path);
        let streaming = trace::is_server_streaming(path);
        let span = trace::rpc_span(method);
        trace::continue_trace(&span, path, request.headers());
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                metrics::counter!(m::SHED, "method" => method).increment(1);
                metrics::counter!(m::REQUESTS, "method" => method, "code" => "ResourceExhausted")
                    .increment(1);
                span.record("code", "ResourceExhausted");
                tracing::info!(parent: &span, "call refused at the concurrency limit");
                let status = Status::resource_exhausted(
                    "the server is at its concurrency limit; retry with backoff",
                );
                return Box::pin(async move { Ok(status.into_http()) });
            }
        };
        // The auth interceptor takes the caller's place in the per-user quota into this slot
        // (see `quota` for why there); the observation below gives it back.
        let quota = QuotaSlot::new(self.quota.clone());
        request.extensions_mut().insert(quota.clone());
        // The connection's handle, for the watchdog; and its addresses where tonic's
        // `remote_addr` looks for them.
        let connection = request.extensions().get::<GuardedConnection>().cloned();
        let connection = connection.map(|c| {
            request.extensions_mut().insert(c.tcp);
            c.handle
        });
        // Swap in a clone: the ready one serves this call (tower's documented pattern).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let started = Instant::now();
        let server_deadline = started + self.timeout;
        let stall = self.stall;
        // The client's deadline covers the whole call. tonic's own grpc-timeout handling
        // (outside this layer) only bounds the response headers, answers CANCELLED rather
        // than DEADLINE_EXCEEDED, and lets a stream run on past the deadline (a stream blocked
        // on a frozen database would outlive its deadline by the whole freeze). So the guard
        // enforces it, a hair early so its answer wins.
        let client_deadline = request
            .headers()
            .get("grpc-timeout")
            .and_then(parse_grpc_timeout)
            .map(|t| started + t.saturating_sub(DEADLINE_MARGIN));
        let call_span = span.clone();
        Box::pin(
            async move {
                metrics::gauge!(m::IN_FLIGHT, "method" => method).increment(1.0);
                let mut observation = Observation {
                    method,
                    span,
                    started,
                    permit: Some(permit),
                    quota: Some(quota),
                    done: false,
                };
                let (until, message) = match client_deadline {
                    Some(d) if d <= server_deadline => (d, CLIENT_DEADLINE_PASSED),
                    _ => (server_deadline, SERVER_DEADLINE_PASSED),
                };
                let response = match tokio::time::timeout_at(until, inner.call(request)).await {
                    Ok(Ok(response)) => response,
                    Ok(Err(e)) => {
                        observation.finish("Internal");
                        return Err(e);
                    }
                    Err(_) => Status::deadline_exceeded(message).into_http(),
                };
                let (mut parts, body) = response.into_parts();
                if let Some(code) = parts.headers.get("grpc-status").and_then(code_of) {
                    // Trailers-only response: the call is over.
                    let code = rewrite_caller_faults(&mut parts.headers, code);
                    if observation.quota.as_ref().is_some_and(QuotaSlot::refused) {
                        metrics::counter!(m::QUOTA_REFUSED, "method" => method).increment(1);
                    }
                    observation.finish(code_name(code));
                    return Ok(Response::from_parts(parts, body));
                }
                // A unary call's whole response is under the server's deadline too: a
                // response its reader does not take would otherwise hold its slot for as long
                // as the reader likes. A stream's later pages are bounded by the client's
                // deadline and the stall limit.
                let deadline = if streaming {
                    client_deadline.map(|d| (d, CLIENT_DEADLINE_PASSED))
                } else {
                    Some((until, message))
                };
                let body = body::observe(body, observation, deadline, stall, connection);
                Ok(Response::from_parts(parts, body))
            }
            .instrument(call_span),
        )
    }
}

/// How much earlier than the client's deadline the guard answers: tonic's grpc-timeout
/// timer (outside this layer, armed a few microseconds earlier) must not fire first, or the
/// client would get its CANCELLED instead of DEADLINE_EXCEEDED. Timers tick by the millisecond.
const DEADLINE_MARGIN: Duration = Duration::from_millis(2);

const CLIENT_DEADLINE_PASSED: &str = "the call's deadline passed";
const SERVER_DEADLINE_PASSED: &str = "the server's request timeout passed";

/// A `grpc-timeout` header value: up to 8 digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(value: &HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?;
    if text.len() < 2 || text.len() > 9 {
        return None;
    }
    let (digits, unit) = text.split_at(text.len() - 1);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

fn code_of(value: &HeaderValue) -> Option<Code> {
    value.to_str().ok()?.parse::<i32>().ok().map(Code::from_i32)
}

/// Statuses tonic gives for the caller's faults, before any Roaming code runs, rewritten to
/// the codes the contract names (docs/reference.md, "Errors and limits"), keeping tonic's
/// message:
/// - a request whose body does not decode (a string field that is not UTF-8, a broken wire
///   format) is INTERNAL "failed to decode Protobuf message: <Type.field>: ..."; it is the
///   caller's bad input: INVALID_ARGUMENT, and prost's message names the field;
/// - an over-size request is OUT_OF_RANGE "decoded message length too large"; gRPC (and the
///   contract) call a transport message-size limit RESOURCE_EXHAUSTED.
fn rewrite_caller_faults(headers: &mut http::HeaderMap, code: Code) -> Code {
    // (tonic's code, how its message starts or what it contains, percent-encoded or not, the code to answer)
    const REWRITES: [(Code, &str, &str, Code); 2] = [
        (
            Code::Internal,
            "failed to decode Protobuf message",
            "failed%20to%20decode%20Protobuf%20message",
            Code::InvalidArgument,
        ),
        (
            Code::OutOfRange,
            "too large",
            "too%20large",
            Code::ResourceExhausted,
        ),
    ];
    let message = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    for (from, plain, encoded, to) in REWRITES {
        if code == from && (message.contains(plain) || message.contains(encoded)) {
            headers.insert("grpc-status", HeaderValue::from(to as i32));
            return to;
        }
    }
    code
}

fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "Ok",
        Code::Cancelled => "Cancelled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// The gRPC codes OpenTelemetry's RPC conventions mark as a server span's error (the
/// others are the caller's doing).
fn is_server_fault(code: &str) -> bool {
    matches!(
        code,
        "Unknown" | "DeadlineExceeded" | "Unimplemented" | "Internal" | "Unavailable" | "DataLoss"
    )
}

/// One call being measured; holds its admission permit and its quota place until the call
/// is over.
struct Observation {
    method: &'static str,
    /// The call's span: the body's polls run inside it, so a stream's later pages log in it.
    span: Span,
    started: Instant,
    permit: Option<OwnedSemaphorePermit>,
    quota: Option<QuotaSlot>,
    done: bool,
}

impl Observation {
    fn finish(&mut self, code: &'static str) {
        if self.done {
            return;
        }
        self.done = true;
        self.permit = None;
        if let Some(quota) = self.quota.take() {
            quota.release();
        }
        let method = self.method;
        let elapsed = self.started.elapsed();
        metrics::gauge!(m::IN_FLIGHT, "method" => method).decrement(1.0);
        metrics::counter!(m::REQUESTS, "method" => method, "code" => code).increment(1);
        metrics::histogram!(m::DURATION, "method" => method, "code" => code)
            .record(elapsed.as_secs_f64());
        let latency_ms = elapsed.as_secs_f64() * 1000.0;
        self.span.record("code", code);
        self.span.record("latency_ms", latency_ms);
        if is_server_fault(code) {
            // An exported span's status: the codes OpenTelemetry counts as a server's errors.
            self.span
                .set_status(opentelemetry::trace::Status::error(code));
        }
        tracing::info!(parent: &self.span, "call finished");
    }
}

impl Drop for Observation {
    fn drop(&mut self) {
        // The call ended before its trailers: the client went away.
        self.finish("Cancelled");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_values_parse_per_unit_and_bad_ones_are_ignored() {
        let parse = |s: &'static str| parse_grpc_timeout(&HeaderValue::from_static(s));
        assert_eq!(parse("1S"), Some(Duration::from_secs(1)));
        assert_eq!(parse("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse("999999u"), Some(Duration::from_micros(999_999)));
        assert_eq!(parse("5n"), Some(Duration::from_nanos(5)));
        assert_eq!(parse("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse("1H"), Some(Duration::from_secs(3600)));
        for bad in ["", "S", "1", "1x", "123456789S", "-1S", "1.5S", " 1S"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
