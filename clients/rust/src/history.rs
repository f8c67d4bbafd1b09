//! The history service, typed: paging streams that follow `next_cursor`, removals, appends,
//! recall and edit.

use crate::connect::Client;
use crate::error::Error;
use crate::types::{
    self, AppendResult, ConversationRef, Direction, HistoryPage, Message, MessageType, NewMessage,
    RemovalResult,
};
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use roaming_proto::history::v1 as hpb;
use std::collections::HashMap;
use std::time::Instant;

/// Largest page the server accepts.
pub const MAX_PAGE_SIZE: u32 = 50;

/// A history read being set up: chain options, then take [`pages`](Self::pages),
/// [`messages`](Self::messages) or one [`page`](Self::page). Made by
/// [`Client::fetch_history`].
///
/// The streams follow `next_cursor` across as many calls as needed until the server says
/// `is_end`, resume after `UNAVAILABLE` from the last page received, and (with a local store)
/// save every page locally unless [`save_locally(false)`](Self::save_locally) is set.
#[derive(Debug, Clone)]
#[must_use = "a history request does nothing until its pages or messages are read"]
pub struct HistoryRequest {
    client: Client,
    pub(crate) conversation: ConversationRef,
    direction: Direction,
    start_msg_id: Option<String>,
    cursor: Option<String>,
    page_size: u32,
    pages_per_call: u32,
    start_time_ms: Option<i64>,
    end_time_ms: Option<i64>,
    senders: Vec<String>,
    types: Vec<MessageType>,
    save: bool,
}

impl HistoryRequest {
    /// Newest first ([`Direction::Backward`], the default) or oldest first.
    pub fn direction(mut self, direction: Direction) -> Self {
        self.direction = direction;
        self
    }

    /// Exclusive anchor: start right after this message in the direction (the SDK's
    /// `startMsgId`). Cannot be combined with [`cursor`](Self::cursor).
    pub fn start_msg_id(mut self, msg_id: impl Into<String>) -> Self {
        self.start_msg_id = Some(msg_id.into()).filter(|s: &String| !s.is_empty());
        self
    }

    /// Resumes from a previous page's `next_cursor` (same conversation, direction, filters).
    pub fn cursor(mut self, cursor: impl Into<String>) -> Self {
        self.cursor = Some(cursor.into()).filter(|s: &String| !s.is_empty());
        self
    }

    /// Messages per page: 1-50 (0 means the server's default, 20).
    pub fn page_size(mut self, size: u32) -> Self {
        self.page_size = size;
        self
    }

    /// Pages the server streams per call (1-100, default 10); the stream makes further calls
    /// as needed, so this only trades round trips against work done ahead of the reader.
    pub fn pages_per_call(mut self, pages: u32) -> Self {
        self.pages_per_call = pages;
        self
    }

    /// Only messages stored at or after this time (ms since the epoch, inclusive).
    pub fn start_time_ms(mut self, ms: i64) -> Self {
        self.start_time_ms = Some(ms);
        self
    }

    /// Only messages stored at or before this time (ms since the epoch, inclusive).
    pub fn end_time_ms(mut self, ms: i64) -> Self {
        self.end_time_ms = Some(ms);
        self
    }

    /// Only messages from these senders (at most 20).
    pub fn senders<S: Into<String>>(mut self, senders: impl IntoIterator<Item = S>) -> Self {
        self.senders = senders.into_iter().map(Into::into).collect();
        self
    }

    /// Only messages of these types.
    pub fn types(mut self, types: impl IntoIterator<Item = MessageType>) -> Self {
        self.types = types.into_iter().collect();
        self
    }

    /// Whether fetched pages are saved to the local store (default: yes, when the client has
    /// one).
    pub fn save_locally(mut self, save: bool) -> Self {
        self.save = save;
        self
    }

    #[cfg_attr(not(feature = "local-store"), allow(dead_code))]
    fn filtered(&self) -> bool {
        self.start_time_ms.is_some()
            || self.end_time_ms.is_some()
            || !self.senders.is_empty()
            || !self.types.is_empty()
    }

    fn to_proto(&self, cursor: Option<&str>, first: bool) -> hpb::FetchHistoryRequest {
        hpb::FetchHistoryRequest {
            conversation: Some(self.conversation.to_proto()),
            direction: self.direction.to_proto() as i32,
            // Only the first call uses the anchor (the server refuses it with a cursor);
            // later calls resume with the cursor.
            start_msg_id: if first {
                self.start_msg_id.clone().unwrap_or_default()
            } else {
                String::new()
            },
            cursor: cursor.unwrap_or_default().to_owned(),
            page_size: self.page_size,
            max_pages: self.pages_per_call,
            start_time_ms: self.start_time_ms,
            end_time_ms: self.end_time_ms,
            senders: self.senders.clone(),
            types: self.types.iter().map(|t| t.to_i32()).collect(),
        }
    }

    /// The first page only (the SDK's `fetchHistoryMessages`).
    pub async fn page(self) -> Result<HistoryPage, Error> {
        let mut request = self;
        request.pages_per_call = 1;
        match request.pages().next().await {
            Some(page) => page,
            None => Err(Error::InvalidResponse("the server sent no page".into())),
        }
    }

    /// Every page, following `next_cursor` until the end.
    pub fn pages(self) -> BoxStream<'static, Result<HistoryPage, Error>> {
        let state = Pager {
            cursor: self.cursor.clone(),
            first: true,
            inner: None,
            done: false,
            edge: None,
            prepared: false,
            pages_in_call: 0,
            attempt: 1,
            started: None,
            request: self,
        };
        stream::unfold(state, |mut state| async move {
            let item = state.next_page().await?;
            Some((item, state))
        })
        .boxed()
    }

    /// Every message, page after page.
    pub fn messages(self) -> BoxStream<'static, Result<Message, Error>> {
        self.pages()
            .map_ok(|page| stream::iter(page.messages.into_iter().map(Ok)))
            .try_flatten()
            .boxed()
    }
}

/// The state of a paging stream.
struct Pager {
    request: HistoryRequest,
    cursor: Option<String>,
    first: bool,
    inner: Option<tonic::Streaming<hpb::FetchHistoryResponse>>,
    done: bool,
    /// The seq of the last message read so far (or of the anchor), for local coverage.
    #[cfg_attr(not(feature = "local-store"), allow(dead_code))]
    edge: Option<i64>,
    prepared: bool,
    pages_in_call: u32,
    attempt: u32,
    started: Option<Instant>,
}

impl Pager {
    /// The next item, or `None` at the end. Errors end the stream.
    async fn next_page(&mut self) -> Option<Result<HistoryPage, Error>> {
        if self.done {
            return None;
        }
        let result = self.step().await;
        if result.is_err() {
            self.done = true;
        }
        Some(result)
    }

    async fn step(&mut self) -> Result<HistoryPage, Error> {
        if !self.prepared {
            self.prepared = true;
            self.prepare().await?;
        }
        loop {
            let Some(inner) = self.inner.as_mut() else {
                match self.open().await {
                    Ok(()) => self.pages_in_call = 0,
                    Err(e) => self.back_off(e).await?,
                }
                continue;
            };
            match inner.message().await {
                Ok(Some(page)) => {
                    self.attempt = 1;
                    self.started = None;
                    self.pages_in_call += 1;
                    return self.accept(page).await;
                }
                // The call streamed its pages without reaching the end: the next resumes.
                Ok(None) => {
                    self.inner = None;
                    if self.pages_in_call == 0 {
                        return Err(Error::InvalidResponse(
                            "a history call ended without a page".into(),
                        ));
                    }
                }
                Err(status) => {
                    self.inner = None;
                    self.back_off(status.into()).await?;
                }
            }
        }
    }

    /// Waits before trying again after a retryable failure, or gives the error back.
    async fn back_off(&mut self, error: Error) -> Result<(), Error> {
        if !error.is_retryable() {
            return Err(error);
        }
        let started = *self.started.get_or_insert_with(Instant::now);
        match self.request.client.retry.next_wait(self.attempt, started) {
            Some(wait) => {
                self.attempt += 1;
                tokio::time::sleep(wait).await;
                Ok(())
            }
            None => Err(error),
        }
    }

    async fn open(&mut self) -> Result<(), Error> {
        let proto = self.request.to_proto(self.cursor.as_deref(), self.first);
        let response = self.request.client.history().fetch_history(proto).await?;
        self.inner = Some(response.into_inner());
        Ok(())
    }

    async fn accept(&mut self, page: hpb::FetchHistoryResponse) -> Result<HistoryPage, Error> {
        let page = HistoryPage {
            messages: types::messages(page.messages)?,
            next_cursor: page.next_cursor,
            is_end: page.is_end,
        };
        let resumed = !self.first || self.cursor.is_some();
        self.first = false;
        self.cursor = Some(page.next_cursor.clone());
        if page.is_end {
            self.done = true;
        }
        #[cfg(feature = "local-store")]
        self.save(&page, resumed).await?;
        #[cfg(not(feature = "local-store"))]
        let _ = resumed;
        Ok(page)
    }

    /// The local store this read saves its pages to, if any.
    #[cfg(feature = "local-store")]
    fn saving_to(&self) -> Option<crate::local::LocalStore> {
        self.request
            .client
            .local
            .clone()
            .filter(|_| self.request.save)
    }

    /// Before the first call: fill the local copy's holes, and learn the anchor's seq.
    #[cfg(feature = "local-store")]
    async fn prepare(&mut self) -> Result<(), Error> {
        let Some(store) = self.saving_to() else {
            return Ok(());
        };
        self.request
            .client
            .fill_gaps(&self.request.conversation)
            .await?;
        if let (Some(anchor), None) = (&self.request.start_msg_id, &self.request.cursor) {
            let conversation = self.request.conversation.clone();
            let anchor = anchor.clone();
            self.edge = store
                .call(move |s| s.seq_of(&conversation, &anchor))
                .await?;
        }
        Ok(())
    }

    #[cfg(not(feature = "local-store"))]
    async fn prepare(&mut self) -> Result<(), Error> {
        Ok(())
    }

    /// Saves a page, and records which seqs it proves complete: the span from where the
    /// read stood (the previous page's last message, or the anchor) to this page's last
    /// message, down to seq 1 when a backward read reached the end.
    #[cfg(feature = "local-store")]
    async fn save(&mut self, page: &HistoryPage, resumed: bool) -> Result<(), Error> {
        let Some(store) = self.saving_to() else {
            return Ok(());
        };
        let coverage = if self.request.filtered() {
            None
        } else {
            let first = page.messages.first().map(|m| m.seq);
            let last = page.messages.last().map(|m| m.seq);
            let from_end = !resumed && self.request.start_msg_id.is_none();
            let span = match self.request.direction {
                Direction::Backward => {
                    let hi = self.edge.or(first);
                    let lo = if page.is_end { Some(1) } else { last };
                    hi.zip(lo).map(|(hi, lo)| (lo, hi))
                }
                Direction::Forward => {
                    let lo = if from_end {
                        first.map(|_| 1)
                    } else {
                        self.edge.or(first)
                    };
                    lo.zip(last)
                }
            };
            if let Some(last) = last {
                self.edge = Some(last);
            }
            span
        };
        let messages = page.messages.clone();
        let conversation = self.request.conversation.clone();
        store
            .call(move |s| {
                s.save_messages(&messages)?;
                match coverage {
                    Some((lo, hi)) => s.cover(&conversation, lo, hi),
                    None => Ok(()),
                }
            })
            .await
    }
}

impl Client {
    /// Reads a conversation's history: set options on the returned request, then stream its
    /// pages or messages.
    ///
    /// ```no_run
    /// # async fn demo(client: roaming_client::Client) -> Result<(), roaming_client::Error> {
    /// use futures::TryStreamExt;
    /// use roaming_client::{ConversationRef, Direction};
    /// let newest_first: Vec<_> = client
    ///     .fetch_history(ConversationRef::peer("bob"))
    ///     .page_size(20)
    ///     .messages()
    ///     .try_collect()
    ///     .await?;
    /// let oldest = client
    ///     .fetch_history(ConversationRef::peer("bob"))
    ///     .direction(Direction::Forward)
    ///     .page()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn fetch_history(&self, conversation: ConversationRef) -> HistoryRequest {
        HistoryRequest {
            client: self.clone(),
            conversation,
            direction: Direction::Backward,
            start_msg_id: None,
            cursor: None,
            page_size: 0,
            pages_per_call: 10,
            start_time_ms: None,
            end_time_ms: None,
            senders: Vec::new(),
            types: Vec::new(),
            save: true,
        }
    }

    /// Stores messages (service callers only: the messaging gateway). Retried on
    /// `UNAVAILABLE`: each message's `client_msg_id` makes a repeat return the stored message
    /// with `duplicate = true` instead of storing it twice.
    pub async fn append(
        &self,
        messages: impl IntoIterator<Item = NewMessage>,
    ) -> Result<Vec<AppendResult>, Error> {
        let request = hpb::AppendMessagesRequest {
            messages: messages.into_iter().map(|m| m.to_proto()).collect(),
        };
        let response = self
            .retry
            .run(|| {
                let mut raw = self.history();
                let request = request.clone();
                async move { Ok(raw.append_messages(request).await?.into_inner()) }
            })
            .await?;
        response
            .results
            .into_iter()
            .map(|r| {
                let message = r
                    .message
                    .ok_or_else(|| Error::InvalidResponse("append result without message".into()))?
                    .try_into()?;
                Ok(AppendResult {
                    message,
                    duplicate: r.duplicate,
                })
            })
            .collect()
    }

    /// One-way removal of 1-50 messages by id: hidden from the caller on every device. Also
    /// removes them from the local store.
    pub async fn remove_messages<S: Into<String>>(
        &self,
        conversation: &ConversationRef,
        msg_ids: impl IntoIterator<Item = S>,
    ) -> Result<Vec<RemovalResult>, Error> {
        let request = hpb::RemoveMessagesRequest {
            conversation: Some(conversation.to_proto()),
            msg_ids: msg_ids.into_iter().map(Into::into).collect(),
        };
        let response = self
            .retry
            .run(|| {
                let mut raw = self.history();
                let request = request.clone();
                async move { Ok(raw.remove_messages(request).await?.into_inner()) }
            })
            .await?;
        let results = response
            .results
            .into_iter()
            .map(RemovalResult::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        #[cfg(feature = "local-store")]
        if let Some(store) = &self.local {
            let conversation = conversation.clone();
            let ids = request.msg_ids;
            store
                .call(move |s| s.remove_messages(&conversation, &ids))
                .await?;
        }
        Ok(results)
    }

    /// One-way removal of every message stored at or before `before_time_ms`. Also applied to
    /// the local store.
    pub async fn remove_messages_before(
        &self,
        conversation: &ConversationRef,
        before_time_ms: i64,
    ) -> Result<(), Error> {
        let request = hpb::RemoveMessagesBeforeRequest {
            conversation: Some(conversation.to_proto()),
            before_time_ms,
        };
        self.retry
            .run(|| {
                let mut raw = self.history();
                let request = request.clone();
                async move { Ok(raw.remove_messages_before(request).await?.into_inner()) }
            })
            .await?;
        #[cfg(feature = "local-store")]
        if let Some(store) = &self.local {
            let conversation = conversation.clone();
            store
                .call(move |s| s.remove_messages_before(&conversation, before_time_ms))
                .await?;
        }
        Ok(())
    }

    /// Recalls ("unsends") a message for everybody (service callers acting for its sender,
    /// within the server's window, 2 minutes by default): it leaves every participant's
    /// history, list entry, unread counts and digests, and every device learns it on its next
    /// sync. Idempotent, so retried on `UNAVAILABLE`. Also applied to the local store.
    pub async fn recall(&self, conversation: &ConversationRef, msg_id: &str) -> Result<(), Error> {
        let request = hpb::RecallMessageRequest {
            conversation: Some(conversation.to_proto()),
            msg_id: msg_id.to_owned(),
        };
        self.retry
            .run(|| {
                let mut raw = self.history();
                let request = request.clone();
                async move { Ok(raw.recall_message(request).await?.into_inner()) }
            })
            .await?;
        #[cfg(feature = "local-store")]
        if let Some(store) = &self.local {
            let conversation = conversation.clone();
            let msg_id = msg_id.to_owned();
            store
                .call(move |s| s.recall_message(&conversation, &msg_id))
                .await?;
        }
        Ok(())
    }

    /// Replaces a message's body and attributes for everybody (service callers acting for
    /// its sender; at most 10 edits by default); returns the message as it is now, with its
    /// `edit_version` one higher. Its `seq`, time and place in the list stay.
    ///
    /// **Not retried**: an edit is not idempotent (a repeat would spend one more version), so
    /// an `UNAVAILABLE` error is returned as it is. Fetch the message to learn whether the
    /// edit was stored before trying again. Also applied to the local store.
    pub async fn edit(
        &self,
        conversation: &ConversationRef,
        msg_id: &str,
        body: impl Into<Vec<u8>>,
        attributes: HashMap<String, String>,
    ) -> Result<Message, Error> {
        let request = hpb::EditMessageRequest {
            conversation: Some(conversation.to_proto()),
            msg_id: msg_id.to_owned(),
            body: body.into(),
            attributes,
        };
        let response = self.history().edit_message(request).await?.into_inner();
        let message: Message = response
            .message
            .ok_or_else(|| Error::InvalidResponse("edit without the message".into()))?
            .try_into()?;
        #[cfg(feature = "local-store")]
        if let Some(store) = &self.local {
            let edited = message.clone();
            store.call(move |s| s.save_edit(&edited)).await?;
        }
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_the_first_call_carries_the_anchor() {
        let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:1").connect_lazy();
        let client = Client::from_channel(channel, None, None).unwrap();
        let request = client
            .fetch_history(ConversationRef::peer("bob"))
            .start_msg_id("42")
            .page_size(5);
        let first = request.to_proto(None, true);
        assert_eq!(first.start_msg_id, "42");
        assert_eq!(first.cursor, "");
        let later = request.to_proto(Some("c"), false);
        assert_eq!(later.start_msg_id, "");
        assert_eq!(later.cursor, "c");
        assert_eq!(later.page_size, 5);
    }
}
