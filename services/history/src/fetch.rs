//! FetchHistory: parse the request (every field, and the cursor against the request's
//! scope), resolve where it starts, then stream up to `max_pages` pages, each with a cursor
//! that resumes right after it.

use crate::cursor::{CursorScope, FilterSet};
use futures::Stream;
use roaming_domain::{Conversation, Limits, MessageKind, MsgId, UserId};
use roaming_proto::history::v1 as pb;
use roaming_runtime::{ApiError, Caller, CursorSealer, convert, trace};
use roaming_store::{Direction, Page, PageQuery, PageStart, Store};
use tokio_util::sync::CancellationToken;
use tonic::Status;

/// Default history page size when the request says 0.
pub const DEFAULT_PAGE_SIZE: u32 = 20;

/// Where a fetch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// From the direction's end.
    End,
    /// After this message (resolved to its seq by the first page's statement).
    Anchor(MsgId),
    /// After this seq (from a cursor).
    Position(i64),
}

/// A validated FetchHistory call.
#[derive(Debug, Clone)]
pub struct Fetch {
    user: UserId,
    conversation: Conversation,
    start: Start,
    max_pages: u32,
    /// Encoded size a page stays below.
    max_page_bytes: usize,
    /// The page query; its start moves after each page.
    query: PageQuery,
    scope: CursorScope,
}

impl Fetch {
    /// Checks the acting user, every field, and the cursor against this request's scope.
    pub fn parse(
        req: pb::FetchHistoryRequest,
        caller: &Caller,
        limits: &Limits,
        sealer: &CursorSealer,
    ) -> Result<Self, ApiError> {
        let user = caller.user()?;
        let conversation = convert::conversation("conversation", req.conversation.as_ref(), &user)?;
        let direction = match req.direction {
            0 | 1 => Direction::Backward,
            2 => Direction::Forward,
            other => {
                return Err(ApiError::invalid(
                    "direction",
                    format!("unknown direction {other}"),
                ));
            }
        };
        let page_size = match req.page_size {
            0 => DEFAULT_PAGE_SIZE.min(limits.max_page_size),
            n if n > limits.max_page_size => {
                return Err(ApiError::invalid(
                    "page_size",
                    format!("must be at most {}", limits.max_page_size),
                ));
            }
            n => n,
        };
        let max_pages = match req.max_pages {
            0 => 1,
            n if n > limits.max_pages => {
                return Err(ApiError::invalid(
                    "max_pages",
                    format!("must be at most {}", limits.max_pages),
                ));
            }
            n => n,
        };
        for (name, value) in [
            ("start_time_ms", req.start_time_ms),
            ("end_time_ms", req.end_time_ms),
        ] {
            if value.is_some_and(|v| v < 0) {
                return Err(ApiError::invalid(name, "must not be negative"));
            }
        }
        if let (Some(s), Some(e)) = (req.start_time_ms, req.end_time_ms) {
            if s > e {
                return Err(ApiError::invalid(
                    "start_time_ms",
                    "must not be after end_time_ms",
                ));
            }
        }
        if req.senders.len() > limits.max_sender_filter {
            return Err(ApiError::invalid(
                "senders",
                format!(
                    "has {} entries; at most {}",
                    req.senders.len(),
                    limits.max_sender_filter
                ),
            ));
        }
        let mut senders = req
            .senders
            .iter()
            .enumerate()
            .map(|(i, s)| UserId::parse(&format!("senders[{i}]"), s))
            .collect::<Result<Vec<_>, _>>()?;
        let mut kinds = req
            .types
            .iter()
            .enumerate()
            .map(|(i, t)| MessageKind::from_i32(&format!("types[{i}]"), *t))
            .collect::<Result<Vec<_>, _>>()?;
        senders.sort();
        senders.dedup();
        kinds.sort_unstable();
        kinds.dedup();
        let scope = CursorScope::new(
            &conversation,
            direction,
            FilterSet {
                start_time_ms: req.start_time_ms,
                end_time_ms: req.end_time_ms,
                senders: &senders,
                kinds: &kinds,
            },
        );
        let start = match (req.start_msg_id.is_empty(), req.cursor.is_empty()) {
            (false, false) => {
                return Err(ApiError::invalid(
                    "cursor",
                    "cannot be combined with start_msg_id",
                ));
            }
            (false, true) => Start::Anchor(MsgId::parse("start_msg_id", &req.start_msg_id)?),
            (true, false) => Start::Position(scope.resume(sealer, &req.cursor)?),
            (true, true) => Start::End,
        };
        Ok(Self {
            user,
            conversation,
            start,
            max_pages,
            max_page_bytes: limits.max_page_bytes,
            query: PageQuery {
                direction,
                start: match start {
                    Start::End => PageStart::After(direction.start()),
                    Start::Position(p) => PageStart::After(p),
                    Start::Anchor(msg_id) => PageStart::AfterMessage {
                        msg_id,
                        field: "start_msg_id",
                    },
                },
                limit: page_size,
                start_time_ms: req.start_time_ms,
                end_time_ms: req.end_time_ms,
                senders,
                kinds,
            },
            scope,
        })
    }

    /// Where the fetch starts.
    pub fn start(&self) -> Start {
        self.start
    }

    /// The cursor this request's pages carry after handing out seq `position`.
    pub fn cursor_at(&self, sealer: &CursorSealer, position: i64) -> String {
        self.scope.seal(sealer, position)
    }

    /// Reads the first page (so access and anchor errors are the call's status rather than a
    /// failed first message), and returns the stream of all pages.
    pub(crate) async fn execute(
        self,
        store: Store,
        sealer: CursorSealer,
        shutdown: CancellationToken,
    ) -> Result<
        impl Stream<Item = Result<pb::FetchHistoryResponse, Status>> + Send + 'static,
        ApiError,
    > {
        trace::record_conversation(&self.conversation);
        let mut pager = Pager {
            store,
            sealer,
            fetch: self,
            pages_sent: 0,
            shutdown,
        };
        let (first, done) = pager.next_page().await?;
        Ok(pager.into_stream(first, done))
    }
}

/// Everything the stream needs between pages: each page only moves the query's position.
struct Pager {
    store: Store,
    sealer: CursorSealer,
    fetch: Fetch,
    pages_sent: u32,
    shutdown: CancellationToken,
}

impl Pager {
    /// Reads the next page and turns it into a response; the bool says the stream is done.
    async fn next_page(&mut self) -> Result<(pb::FetchHistoryResponse, bool), ApiError> {
        let f = &mut self.fetch;
        let Page {
            after_seq,
            messages,
            is_end,
        } = self
            .store
            .fetch_page(&f.user, &f.conversation, &f.query)
            .await?;
        let mut position = after_seq;
        let stored = messages.len();
        let mut page = Vec::with_capacity(stored);
        let mut bytes = 0;
        for m in messages {
            let seq = m.seq;
            let message = convert::message(m, &f.user);
            // The page ends early, before its size passes the budget (one message always
            // fits, so a page is never empty while messages remain).
            bytes += convert::repeated_len(&message);
            if bytes > f.max_page_bytes && !page.is_empty() {
                break;
            }
            position = seq;
            page.push(message);
        }
        f.query.start = PageStart::After(position);
        let is_end = is_end && page.len() == stored;
        self.pages_sent += 1;
        let done = is_end || self.pages_sent >= f.max_pages;
        let response = pb::FetchHistoryResponse {
            messages: page,
            next_cursor: f.cursor_at(&self.sealer, position),
            is_end,
        };
        Ok((response, done))
    }

    /// The pages after `first` as a stream. Work stops when the client goes away (the stream
    /// is dropped with its in-flight query) or when the server shuts down (the stream ends
    /// with UNAVAILABLE so the client knows to resume from its last cursor elsewhere).
    fn into_stream(
        self,
        first: pb::FetchHistoryResponse,
        done: bool,
    ) -> impl Stream<Item = Result<pb::FetchHistoryResponse, Status>> + Send + 'static {
        enum State {
            First(Box<pb::FetchHistoryResponse>, bool, Box<Pager>),
            More(Box<Pager>),
            Done,
        }
        futures::stream::unfold(
            State::First(Box::new(first), done, Box::new(self)),
            |state| async move {
                match state {
                    State::First(page, done, pager) => {
                        let next = if done {
                            State::Done
                        } else {
                            State::More(pager)
                        };
                        Some((Ok(*page), next))
                    }
                    State::More(mut pager) => {
                        let shutdown = pager.shutdown.clone();
                        if shutdown.is_cancelled() {
                            return Some((Err(ApiError::ShuttingDown.into()), State::Done));
                        }
                        let result = tokio::select! {
                            r = pager.next_page() => r,
                            _ = shutdown.cancelled() => Err(ApiError::ShuttingDown),
                        };
                        match result {
                            Ok((page, true)) => Some((Ok(page), State::Done)),
                            Ok((page, false)) => Some((Ok(page), State::More(pager))),
                            Err(e) => Some((Err(e.into()), State::Done)),
                        }
                    }
                    State::Done => None,
                }
            },
        )
    }
}
