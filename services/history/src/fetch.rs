//! The FetchHistory stream: up to `max_pages` pages, each with a cursor that resumes after it.

use crate::cursor::HistoryCursor;
use crate::requests::FetchPlan;
use futures::Stream;
use roaming_proto::history::v1 as pb;
use roaming_runtime::{ApiError, CursorSealer, convert};
use roaming_store::{Page, PageQuery, Store, UserId};
use tokio::sync::watch;
use tonic::Status;

/// Everything the stream needs between pages.
pub(crate) struct Pager {
    pub store: Store,
    pub sealer: CursorSealer,
    pub user: UserId,
    pub plan: FetchPlan,
    /// Exclusive position of the next page.
    pub position: i64,
    pub pages_sent: u32,
    pub shutdown: watch::Receiver<bool>,
}

impl Pager {
    /// Reads the next page and turns it into a response; `None` once the stream is done.
    pub async fn next_page(&mut self) -> Result<(pb::FetchHistoryResponse, bool), ApiError> {
        let query = PageQuery {
            direction: self.plan.direction,
            after_seq: self.position,
            limit: self.plan.page_size,
            start_time_ms: self.plan.start_time_ms,
            end_time_ms: self.plan.end_time_ms,
            senders: self.plan.senders.clone(),
            kinds: self.plan.kinds.clone(),
        };
        let Page { messages, is_end } = self
            .store
            .fetch_page(&self.user, &self.plan.conversation, &query)
            .await?;
        if let Some(last) = messages.last() {
            self.position = last.seq;
        }
        self.pages_sent += 1;
        let cursor = HistoryCursor {
            direction: self.plan.direction,
            conversation: HistoryCursor::conversation_fingerprint(&self.plan.conversation.key()),
            filters: self.plan.filters,
            position: self.position,
        };
        let done = is_end || self.pages_sent >= self.plan.max_pages;
        let response = pb::FetchHistoryResponse {
            messages: messages
                .into_iter()
                .map(|m| convert::message(m, &self.user))
                .collect(),
            next_cursor: cursor.seal(&self.sealer),
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
