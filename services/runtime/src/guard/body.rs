//! The response body the guard hands the transport, and the watchdog that ends its call.
//!
//! How hyper (1.x, HTTP/2) drives a response body: it polls `poll_frame`, and when that
//! yields data it keeps the chunk and waits for the peer's flow-control window to take it
//! (`poll_capacity`) *before* it polls the body again. So a reader that takes nothing leaves
//! the body unpolled: a timer inside `poll_frame` would never run (its wake-up only makes
//! hyper look at the window again), and trailers can never be handed over. Hence:
//!
//! - **Stall detection** watches the time since the body last handed out a frame without
//!   being asked for the next one ("the frame yielded is not consumed"; before the first
//!   poll, since the body was made). A body that is polled and answers `Pending` (its next
//!   page waits on the database) is not stalled: the server, not the reader, is slow, and
//!   that is bounded by deadlines. Data goes out in pieces of at most [`PIECE`] bytes, so a
//!   slow but steady reader is asked for more every piece, not once per (possibly
//!   megabytes-long) page: only a reader slower than `PIECE` per stall timeout looks stalled.
//! - **The watchdog** is a task of its own, so it runs whether or not hyper polls the body.
//!   When the call's deadline passes (unary: the request timeout over the whole response;
//!   any call: the client's `grpc-timeout`) it ends the call with DEADLINE_EXCEEDED; when the
//!   body has waited for its reader for the stall timeout it ends the call with
//!   RESOURCE_EXHAUSTED. Ending frees the call's admission slot and quota place at once,
//!   drops the handler's body (pending pages, their statements, buffered messages), keeps
//!   only the unsent rest of the message in flight (so the reader never sees a cut message),
//!   and arms the status trailers for whenever the transport asks next.
//! - If the reader does not take that status within another stall timeout, the peer holds a
//!   stream it neither reads nor resets, which hyper cannot end: the watchdog closes the
//!   connection (see `conn`).
//!
//! Why RESOURCE_EXHAUSTED for a stall: the server ends the call to take back what the reader
//! holds without using (an admission slot, buffered pages), the same reason as for the
//! concurrency limit and the per-user quota, and a reader may resume from its last cursor
//! after backing off. DEADLINE_EXCEEDED would say that a deadline passed, which is not the
//! case for a stream (it has none of its own) and would be mistaken for the client's own
//! deadline; it is kept for the deadlines themselves. (gRPC maps HTTP/2's ENHANCE_YOUR_CALM,
//! a peer told to use fewer resources, to RESOURCE_EXHAUSTED as well.)

use super::{Observation, code_name, code_of, rewrite_caller_faults};
use crate::metrics as m;
use bytes::Bytes;
use http::HeaderValue;
use http_body::{Frame, SizeHint};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::time::Instant;
use tonic::body::Body;
use tonic::{Code, Status};

use super::conn::ConnectionHandle;

/// The most data handed to the transport at once (HTTP/2's default frame size).
pub(super) const PIECE: usize = 16 * 1024;

/// Why the guard ends a call, and the trailers it answers.
#[derive(Debug, Clone)]
pub(super) struct Ending {
    code: Code,
    message: HeaderValue,
}

impl Ending {
    pub(super) fn deadline(message: &'static str) -> Self {
        Self {
            code: Code::DeadlineExceeded,
            message: HeaderValue::from_static(message),
        }
    }

    fn stalled(stall: Duration) -> Self {
        let message = format!(
            "the response was not read for {}, so the server ended the call; retry after a \
             backoff (a stream: from its last cursor)",
            humanize(stall)
        );
        Self {
            code: Code::ResourceExhausted,
            message: HeaderValue::from_str(&message.replace('\n', " "))
                .unwrap_or_else(|_| HeaderValue::from_static("the response was not read")),
        }
    }

    fn trailers(&self) -> http::HeaderMap {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from(self.code as i32));
        trailers.insert("grpc-message", self.message.clone());
        trailers
    }
}

fn humanize(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// What the body and its watchdog share.
struct State {
    /// The handler's body; gone once the call is over or ended.
    inner: Option<Body>,
    /// The inner body's current data frame (whole gRPC messages) and how much of it has been
    /// handed out.
    frame: Bytes,
    handed: usize,
    observation: Observation,
    /// Since when a frame handed out (or the body, before its first poll) has waited for the
    /// transport to ask for more: the reader is not taking it.
    waiting_since: Option<Instant>,
    /// The guard ended the call: these trailers go out once the rest of `frame` has.
    ending: Option<Ending>,
    /// The trailers (or the end) were handed out: nothing more.
    closed: bool,
    /// Who waits on the body (it answered `Pending`): woken when the guard ends the call.
    waker: Option<Waker>,
}

impl State {
    fn next_piece(&mut self) -> Frame<Bytes> {
        let n = (self.frame.len() - self.handed).min(PIECE);
        let piece = self.frame.slice(self.handed..self.handed + n);
        self.handed += n;
        if self.handed == self.frame.len() {
            self.frame = Bytes::new();
            self.handed = 0;
        }
        self.waiting_since = Some(Instant::now());
        Frame::data(piece)
    }

    /// Ends the call: records `ending`, keeps only the rest of the message in flight, and
    /// returns what is to be dropped and woken outside the lock.
    fn end(&mut self, ending: Ending) -> (Option<Body>, Bytes, Option<Waker>) {
        self.observation.finish(code_name(ending.code));
        self.ending = Some(ending);
        let keep = rest_of_message(&self.frame, self.handed);
        let dropped = if keep == self.frame.len() {
            Bytes::new()
        } else {
            self.frame.split_off(keep)
        };
        if self.handed == self.frame.len() {
            self.frame = Bytes::new();
            self.handed = 0;
        }
        (self.inner.take(), dropped, self.waker.take())
    }
}

/// Where the gRPC message that `handed` is in ends in `frame` (a frame of whole messages:
/// 1-byte flag, 4-byte big-endian length, the message). A frame that does not parse as whole
/// messages is kept whole.
fn rest_of_message(frame: &Bytes, handed: usize) -> usize {
    let mut at = 0usize;
    while at < handed {
        let Some(header) = frame.get(at..at + 5) else {
            return frame.len();
        };
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        at = match at.checked_add(5 + len) {
            Some(end) if end <= frame.len() => end,
            _ => return frame.len(),
        };
    }
    at
}

struct Shared {
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The body of a call's response, as the transport sees it.
pub(super) struct ObservedBody {
    shared: Arc<Shared>,
    watchdog: tokio::task::AbortHandle,
}

/// Wraps `inner` (a response that has begun: headers sent, body to follow) and starts its
/// watchdog. `deadline`: when the call must be over, and the message it ends with then.
pub(super) fn observe(
    inner: Body,
    observation: Observation,
    deadline: Option<(Instant, &'static str)>,
    stall: Duration,
    connection: Option<ConnectionHandle>,
) -> Body {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            inner: Some(inner),
            frame: Bytes::new(),
            handed: 0,
            observation,
            waiting_since: Some(Instant::now()),
            ending: None,
            closed: false,
            waker: None,
        }),
    });
    let watchdog = tokio::spawn(watch(shared.clone(), deadline, stall, connection));
    Body::new(ObservedBody {
        shared,
        watchdog: watchdog.abort_handle(),
    })
}

/// Ends the call when its deadline passes or its reader stalls; then, if the reader does not
/// take the status within another stall timeout, closes its connection.
async fn watch(
    shared: Arc<Shared>,
    deadline: Option<(Instant, &'static str)>,
    stall: Duration,
    connection: Option<ConnectionHandle>,
) {
    let (ending, method) = loop {
        let wake_at = {
            let mut state = shared.lock();
            if state.closed || state.ending.is_some() {
                return;
            }
            let now = Instant::now();
            let ending = match (deadline, state.waiting_since) {
                (Some((at, message)), _) if now >= at => Some(Ending::deadline(message)),
                (_, Some(since)) if now >= since + stall => Some(Ending::stalled(stall)),
                _ => None,
            };
            if let Some(ending) = ending {
                let method = state.observation.method;
                let span = state.observation.span.clone();
                let stalled = ending.code == Code::ResourceExhausted;
                let (inner, dropped, waker) = state.end(ending.clone());
                drop(state);
                drop(inner);
                drop(dropped);
                if let Some(waker) = waker {
                    waker.wake();
                }
                if stalled {
                    metrics::counter!(m::STALLED, "method" => method).increment(1);
                    tracing::info!(parent: &span, ?stall, "call ended: its reader took nothing");
                }
                break (ending, method);
            }
            let stall_at = state
                .waiting_since
                .map_or(now + stall, |since| since + stall);
            deadline.map_or(stall_at, |(at, _)| stall_at.min(at))
        };
        tokio::time::sleep_until(wake_at).await;
    };
    // The reader's grace to take the status.
    tokio::time::sleep(stall).await;
    let (undelivered, span) = {
        let state = shared.lock();
        (!state.closed, state.observation.span.clone())
    };
    if let (true, Some(connection)) = (undelivered, connection) {
        metrics::counter!(m::CONNECTIONS_CLOSED).increment(1);
        tracing::warn!(
            parent: &span,
            rpc = method,
            code = code_name(ending.code),
            ?stall,
            "closing the connection: the server ended a call on it whose status the peer has \
             not taken"
        );
        connection.close();
    }
}

impl http_body::Body for ObservedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let mut guard = self.shared.lock();
        let state = &mut *guard;
        // The transport asks for more: whatever was handed out was taken.
        state.waiting_since = None;
        if state.closed {
            return Poll::Ready(None);
        }
        // The call's span: a stream's later pages log in it.
        let span = state.observation.span.clone();
        let _entered = span.enter();
        if state.handed < state.frame.len() {
            return Poll::Ready(Some(Ok(state.next_piece())));
        }
        if let Some(ending) = &state.ending {
            state.closed = true;
            return Poll::Ready(Some(Ok(Frame::trailers(ending.trailers()))));
        }
        let Some(inner) = state.inner.as_mut() else {
            state.closed = true;
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Pending => {
                if !state
                    .waker
                    .as_ref()
                    .is_some_and(|w| w.will_wake(cx.waker()))
                {
                    state.waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) if data.is_empty() => Poll::Ready(Some(Ok(Frame::data(data)))),
                Ok(data) => {
                    state.frame = data;
                    state.handed = 0;
                    Poll::Ready(Some(Ok(state.next_piece())))
                }
                Err(mut frame) => {
                    if let Some(trailers) = frame.trailers_mut() {
                        let code = match trailers.get("grpc-status").and_then(code_of) {
                            Some(code) => rewrite_caller_faults(trailers, code),
                            None => Code::Unknown,
                        };
                        state.observation.finish(code_name(code));
                        state.closed = true;
                        state.inner = None;
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
            },
            Poll::Ready(Some(Err(e))) => {
                state.observation.finish("Internal");
                state.closed = true;
                state.inner = None;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                state.observation.finish("Ok");
                state.closed = true;
                state.inner = None;
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        // Only once the trailers are out: an early end would lose the status.
        self.shared.lock().closed
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

impl Drop for ObservedBody {
    fn drop(&mut self) {
        self.watchdog.abort();
        let inner = {
            let mut state = self.shared.lock();
            // Dropped before its trailers: the client went away (or its connection did).
            state.observation.finish("Cancelled");
            state.frame = Bytes::new();
            state.inner.take()
        };
        drop(inner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(len: usize) -> Vec<u8> {
        let mut m = vec![0u8];
        m.extend_from_slice(&(len as u32).to_be_bytes());
        m.extend(std::iter::repeat_n(7u8, len));
        m
    }

    #[test]
    fn the_rest_of_the_message_in_flight_is_kept_and_nothing_after_it() {
        let frame = Bytes::from([message(10), message(30_000), message(3)].concat());
        // Nothing handed out: at a boundary, nothing to keep.
        assert_eq!(rest_of_message(&frame, 0), 0);
        // Inside the first message: up to its end.
        assert_eq!(rest_of_message(&frame, 7), 15);
        // Exactly at the second message: nothing more.
        assert_eq!(rest_of_message(&frame, 15), 15);
        // Inside the second one (a piece of it went out): up to its end.
        assert_eq!(rest_of_message(&frame, 15 + PIECE), 15 + 30_005);
        // The whole frame handed out.
        assert_eq!(rest_of_message(&frame, frame.len()), frame.len());
        // Not whole messages: all of it.
        let cut = frame.slice(0..100);
        assert_eq!(rest_of_message(&cut, 50), 100);
    }
}
