//! The server's guard layer, around every call: admission (a concurrency limit that refuses
//! excess calls at once with RESOURCE_EXHAUSTED instead of queueing them), a server-side
//! deadline, the client's deadline (`grpc-timeout`) over the whole call, streams included,
//! gRPC metrics, the call's span (`crate::trace`), and RESOURCE_EXHAUSTED for over-size
//! messages.

use crate::metrics as m;
use crate::trace;
use http::{HeaderValue, Request, Response};
use http_body::{Frame, SizeHint};
use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tonic::body::Body;
use tonic::{Code, Status};
use tracing::{Instrument as _, Span};

/// Settings of the guard.
#[derive(Debug, Clone, Copy)]
pub struct GuardSettings {
    /// Most calls in progress at once (streams included); more are refused.
    pub max_concurrent_calls: usize,
    /// Longest a call may take to produce its response (a stream's first page).
    pub request_timeout: Duration,
}

impl GuardSettings {
    /// The defaults (the server settings' defaults refer to these).
    pub const DEFAULT: GuardSettings = GuardSettings {
        max_concurrent_calls: 512,
        request_timeout: Duration::from_secs(30),
    };
}

/// The tower layer.
#[derive(Debug, Clone)]
pub struct GuardLayer {
    permits: Arc<Semaphore>,
    timeout: Duration,
}

impl GuardLayer {
    /// A layer with `settings`.
    pub fn new(settings: GuardSettings) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(settings.max_concurrent_calls)),
            timeout: settings.request_timeout,
        }
    }
}

impl<S> tower::Layer<S> for GuardLayer {
    type Service = Guard<S>;
    fn layer(&self, inner: S) -> Guard<S> {
        Guard {
            inner,
            permits: self.permits.clone(),
            timeout: self.timeout,
        }
    }
}

/// The service the layer wraps around the router.
#[derive(Debug, Clone)]
pub struct Guard<S> {
    inner: S,
    permits: Arc<Semaphore>,
    timeout: Duration,
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

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let path = request.uri().path();
        if is_infrastructure(path) {
            return Box::pin(self.inner.call(request));
        }
        let method = trace::rpc_name(path);
        let span = trace::rpc_span(method);
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
        // Swap in a clone: the ready one serves this call (tower's documented pattern).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let started = Instant::now();
        let server_deadline = started + self.timeout;
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
                    done: false,
                };
                let (until, message) = match client_deadline {
                    Some(d) if d <= server_deadline => (d, CLIENT_DEADLINE_PASSED),
                    _ => (server_deadline, "the server's request timeout passed"),
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
                    observation.finish(code_name(code));
                    return Ok(Response::from_parts(parts, body));
                }
                Ok(Response::from_parts(
                    parts,
                    Body::new(ObservedBody {
                        inner: body,
                        observation,
                        deadline: client_deadline.map(|d| Box::pin(tokio::time::sleep_until(d))),
                        expired: false,
                    }),
                ))
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

/// One call being measured; holds its admission permit until the call is over.
struct Observation {
    method: &'static str,
    /// The call's span: the body's polls run inside it, so a stream's later pages log in it.
    span: Span,
    started: Instant,
    permit: Option<OwnedSemaphorePermit>,
    done: bool,
}

impl Observation {
    fn finish(&mut self, code: &'static str) {
        if self.done {
            return;
        }
        self.done = true;
        self.permit = None;
        let method = self.method;
        let elapsed = self.started.elapsed();
        metrics::gauge!(m::IN_FLIGHT, "method" => method).decrement(1.0);
        metrics::counter!(m::REQUESTS, "method" => method, "code" => code).increment(1);
        metrics::histogram!(m::DURATION, "method" => method, "code" => code)
            .record(elapsed.as_secs_f64());
        let latency_ms = elapsed.as_secs_f64() * 1000.0;
        self.span.record("code", code);
        self.span.record("latency_ms", latency_ms);
        tracing::info!(parent: &self.span, "call finished");
    }
}

impl Drop for Observation {
    fn drop(&mut self) {
        // The body was dropped before its trailers: the client went away.
        self.finish("Cancelled");
    }
}

/// A response body that records the call's status when its trailers pass, and ends the call
/// with DEADLINE_EXCEEDED when the client's deadline passes first.
struct ObservedBody {
    inner: Body,
    observation: Observation,
    /// The client's deadline, if it sent one.
    deadline: Option<Pin<Box<Sleep>>>,
    /// The deadline passed: the DEADLINE_EXCEEDED trailers went out, the inner body is gone.
    expired: bool,
}

impl ObservedBody {
    /// Drops the inner body (a stream's pending page and its database statement with it:
    /// the store cancels an abandoned statement) and returns the DEADLINE_EXCEEDED trailers.
    fn expire(&mut self) -> Frame<bytes::Bytes> {
        self.inner = Body::empty();
        self.deadline = None;
        self.expired = true;
        self.observation.finish("DeadlineExceeded");
        let mut trailers = http::HeaderMap::new();
        trailers.insert(
            "grpc-status",
            HeaderValue::from(Code::DeadlineExceeded as i32),
        );
        trailers.insert(
            "grpc-message",
            HeaderValue::from_static("the call's deadline passed"),
        );
        Frame::trailers(trailers)
    }
}

impl http_body::Body for ObservedBody {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if self.expired {
            return Poll::Ready(None);
        }
        let span = self.observation.span.clone();
        let _entered = span.enter();
        // A stream that keeps producing past the deadline is cut too, not only a stalled one.
        let passed = match self.deadline.as_mut() {
            Some(sleep) => sleep.as_mut().poll(cx).is_ready(),
            None => false,
        };
        if passed {
            return Poll::Ready(Some(Ok(self.expire())));
        }
        let mut polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &mut polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_mut() {
                    // The call is over: the deadline no longer applies.
                    self.deadline = None;
                    if let Some(code) = trailers.get("grpc-status").and_then(code_of) {
                        let code = rewrite_caller_faults(trailers, code);
                        self.observation.finish(code_name(code));
                    }
                }
            }
            Poll::Ready(Some(Err(_))) => {
                self.deadline = None;
                self.observation.finish("Internal");
            }
            Poll::Ready(None) => {
                self.deadline = None;
                self.observation.finish("Ok");
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        // Not while the deadline may still add trailers: an early end would lose the status.
        self.expired || (self.deadline.is_none() && self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
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
