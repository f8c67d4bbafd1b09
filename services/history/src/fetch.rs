//! The FetchHistory stream: up to `max_pages` pages, each with a cursor that resumes after it.

use crate::cursor::HistoryCursor;
use crate::requests::FetchPlan;
use futures::Stream;
use roaming_proto::history::v1 as pb;
use roaming_runtime::{ApiError, CursorSealer, convert};
use roaming_store::{Conversation, Page, PageQuery, Store, UserId};
use tokio::sync::watch;
use tonic::Status;

/// Everything the stream needs between pages. The query and the cursor are built once;
/// each page only moves their position.
pub(crate) struct Pager {
    store: Store,
    sealer: CursorSealer,
    user: UserId,
    conversation: Conversation,
    query: PageQuery,
    /// The next page's cursor fields; `position` is the last seq handed out.
    cursor: HistoryCursor,
    max_pages: u32,
    pages_sent: u32,
    shutdown: watch::Receiver<bool>,
}

impl Pager {
    /// A pager over `plan` for `user`, starting after the exclusive `position`.
    pub fn new(
        store: Store,
        sealer: CursorSealer,
        user: UserId,
        plan: FetchPlan,
        position: i64,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let cursor = HistoryCursor {
            direction: plan.direction,
            conversation: HistoryCursor::conversation_fingerprint(&plan.conversation.key()),
            filters: plan.filters,
            position,
        };
        let query = PageQuery {
            direction: plan.direction,
            after_seq: position,
            limit: plan.page_size,
            start_time_ms: plan.start_time_ms,
            end_time_ms: plan.end_time_ms,
            senders: plan.senders,
            kinds: plan.kinds,
        };
        Self {
            store,
            sealer,
            user,
            conversation: plan.conversation,
            query,
            cursor,
            max_pages: plan.max_pages,
            pages_sent: 0,
            shutdown,
        }
    }

    /// Reads the next page and turns it into a response; the bool says the stream is done.
    pub async fn next_page(&mut self) -> Result<(pb::FetchHistoryResponse, bool), ApiError> {
        let Page { messages, is_end } = self
            .store
            .fetch_page(&self.user, &self.conversation, &self.query)
            .await?;
        if let Some(last) = messages.last() {
            self.query.after_seq = last.seq;
            self.cursor.position = last.seq;
        }
        self.pages_sent += 1;
        let done = is_end || self.pages_sent >= self.max_pages;
        let response = pb::FetchHistoryResponse {
            messages: messages
                .into_iter()
                .map(|m| convert::message(m, &self.user))
                .collect(),
            next_cursor: self.cursor.seal(&self.sealer),
            is_end,
        };
        Ok((response, done))
    }

    /// The pages after `first` as a stream. Work stops when the client goes away (the stream
    /// is dropped with its in-flight query) or when the server shuts down (the stream ends
    /// with UNAVAILABLE so the client knows to resume from its last cursor elsewhere).
    pub fn into_stream(
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
                        let mut shutdown = pager.shutdown.clone();
                        if *shutdown.borrow() {
                            return Some((Err(ApiError::ShuttingDown.into()), State::Done));
                        }
                        let result = tokio::select! {
                            r = pager.next_page() => r,
                            _ = shutdown.wait_for(|s| *s) => Err(ApiError::ShuttingDown),
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
