//! The server's guard layer, around every call: admission (a concurrency limit that refuses
//! excess calls at once with RESOURCE_EXHAUSTED instead of queueing them), a server-side
//! deadline, gRPC metrics, and RESOURCE_EXHAUSTED for over-size messages.

use crate::metrics as m;
use http::{HeaderValue, Request, Response};
use http_body::{Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::body::Body;
use tonic::{Code, Status};

/// Settings of the guard.
#[derive(Debug, Clone, Copy)]
pub struct GuardSettings {
    /// Most calls in progress at once (streams included); more are refused.
    pub max_concurrent_calls: usize,
    /// Longest a call may take to produce its response (a stream's first page).
    pub request_timeout: Duration,
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
        let path = request.uri().path().to_owned();
        if is_infrastructure(&path) {
            return Box::pin(self.inner.call(request));
        }
        let method = path.rsplit('/').next().unwrap_or_default().to_owned();
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                metrics::counter!(m::SHED, "method" => method.clone()).increment(1);
                metrics::counter!(m::REQUESTS, "method" => method, "code" => "ResourceExhausted")
                    .increment(1);
                let status = Status::resource_exhausted(
                    "the server is at its concurrency limit; retry with backoff",
                );
                return Box::pin(async move { Ok(status.into_http()) });
            }
        };
        // Swap in a clone: the ready one serves this call (tower's documented pattern).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let timeout = self.timeout;
        Box::pin(async move {
            let started = Instant::now();
            metrics::gauge!(m::IN_FLIGHT, "method" => method.clone()).increment(1.0);
            let mut observation = Observation {
                method,
                started,
                permit: Some(permit),
                done: false,
            };
            let response = match tokio::time::timeout(timeout, inner.call(request)).await {
                Ok(Ok(response)) => response,
                Ok(Err(e)) => {
                    observation.finish("Internal");
                    return Err(e);
                }
                Err(_) => {
                    Status::deadline_exceeded("the server's request timeout passed").into_http()
                }
            };
            let (mut parts, body) = response.into_parts();
            if let Some(code) = parts.headers.get("grpc-status").and_then(code_of) {
                // Trailers-only response: the call is over.
                let code = rewrite_oversize(&mut parts.headers, code);
                observation.finish(code_name(code));
                return Ok(Response::from_parts(parts, body));
            }
            Ok(Response::from_parts(
                parts,
                Body::new(ObservedBody {
                    inner: body,
                    observation,
                }),
            ))
        })
    }
}

fn code_of(value: &HeaderValue) -> Option<Code> {
    value.to_str().ok()?.parse::<i32>().ok().map(Code::from_i32)
}

/// tonic answers an over-size request with OUT_OF_RANGE ("decoded message length too large",
/// percent-encoded in `grpc-message`); gRPC (and SPEC.md) call a transport
/// message-size limit RESOURCE_EXHAUSTED.
fn rewrite_oversize(headers: &mut http::HeaderMap, code: Code) -> Code {
    let oversize = code == Code::OutOfRange
        && headers
            .get("grpc-message")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|m| m.contains("too large") || m.contains("too%20large"));
    if oversize {
        headers.insert(
            "grpc-status",
            HeaderValue::from(Code::ResourceExhausted as i32),
        );
        return Code::ResourceExhausted;
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
    method: String,
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
        let method = self.method.clone();
        metrics::gauge!(m::IN_FLIGHT, "method" => method.clone()).decrement(1.0);
        metrics::counter!(m::REQUESTS, "method" => method.clone(), "code" => code).increment(1);
        metrics::histogram!(m::DURATION, "method" => method, "code" => code)
            .record(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for Observation {
    fn drop(&mut self) {
        // The body was dropped before its trailers: the client went away.
        self.finish("Cancelled");
    }
}

/// A response body that records the call's status when its trailers pass.
struct ObservedBody {
    inner: Body,
    observation: Observation,
}

impl http_body::Body for ObservedBody {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &mut polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_mut() {
                    if let Some(code) = trailers.get("grpc-status").and_then(code_of) {
                        let code = rewrite_oversize(trailers, code);
                        self.observation.finish(code_name(code));
                    }
                }
            }
            Poll::Ready(Some(Err(_))) => self.observation.finish("Internal"),
            Poll::Ready(None) => self.observation.finish("Ok"),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
