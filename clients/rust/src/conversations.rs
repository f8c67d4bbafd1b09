//! The conversation service, typed: the paging conversation list, removal, membership, read
//! markers, pins and marks.

use crate::connect::Client;
use crate::error::Error;
use crate::types::{
    Conversation, ConversationPage, ConversationRef, ConversationType, ReadMarker, RemovalScope,
};
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use roaming_proto::conversation::v1 as cpb;

/// A conversation-list read being set up: chain options, then take
/// [`pages`](Self::pages), [`conversations`](Self::conversations) or one
/// [`page`](Self::page). Made by [`Client::list_conversations`].
///
/// The streams follow `next_cursor` until the list ends, retry each call on `UNAVAILABLE`,
/// and (with a local store) save every page locally unless
/// [`save_locally(false)`](Self::save_locally) is set.
#[derive(Debug, Clone)]
#[must_use = "a list request does nothing until its pages are read"]
pub struct ListRequest {
    client: Client,
    page_size: u32,
    cursor: Option<String>,
    active_since_ms: i64,
    types: Vec<ConversationType>,
    pinned_only: bool,
    mark: String,
    save: bool,
}

impl ListRequest {
    /// Conversations per page: 1-50 (0 means the server's default, 10).
    pub fn page_size(mut self, size: u32) -> Self {
        self.page_size = size;
        self
    }

    /// Resumes from a previous page's `next_cursor` (same `types` and `active_since_ms`).
    pub fn cursor(mut self, cursor: impl Into<String>) -> Self {
        self.cursor = Some(cursor.into()).filter(|c: &String| !c.is_empty());
        self
    }

    /// Only conversations active at or after this time (ms since the epoch); 0, the
    /// default, means the server's window (7 days by default).
    pub fn active_since_ms(mut self, ms: i64) -> Self {
        self.active_since_ms = ms;
        self
    }

    /// Only these kinds (default: PEER and GROUP; chatrooms only when asked for).
    pub fn types(mut self, types: impl IntoIterator<Item = ConversationType>) -> Self {
        self.types = types.into_iter().collect();
        self
    }

    /// Only pinned conversations, most recently pinned first, whatever their activity (the
    /// activity window does not apply; `types` and `mark` do).
    pub fn pinned_only(mut self, pinned_only: bool) -> Self {
        self.pinned_only = pinned_only;
        self
    }

    /// Only conversations carrying this mark (empty, the default: any).
    pub fn mark(mut self, mark: impl Into<String>) -> Self {
        self.mark = mark.into();
        self
    }

    /// Whether fetched conversations are saved to the local store (default: yes, when the
    /// client has one).
    pub fn save_locally(mut self, save: bool) -> Self {
        self.save = save;
        self
    }

    async fn fetch(&self, cursor: Option<String>) -> Result<ConversationPage, Error> {
        let request = cpb::ListConversationsRequest {
            page_size: self.page_size,
            cursor: cursor.unwrap_or_default(),
            active_since_ms: self.active_since_ms,
            types: self.types.iter().map(|t| t.to_proto() as i32).collect(),
            pinned_only: self.pinned_only,
            mark: self.mark.clone(),
        };
        let response = self
            .client
            .retry
            .run(|| {
                let mut raw = self.client.conversations();
                let request = request.clone();
                async move { Ok(raw.list_conversations(request).await?.into_inner()) }
            })
            .await?;
        let page = ConversationPage {
            conversations: response
                .conversations
                .into_iter()
                .map(Conversation::try_from)
                .collect::<Result<_, _>>()?,
            next_cursor: Some(response.next_cursor).filter(|c| !c.is_empty()),
        };
        #[cfg(feature = "local-store")]
        if let Some(store) = self.client.local.clone().filter(|_| self.save) {
            let conversations = page.conversations.clone();
            store
                .call(move |s| s.save_conversations(&conversations))
                .await?;
        }
        Ok(page)
    }

    /// The first page only (from the cursor, if one was given).
    pub async fn page(self) -> Result<ConversationPage, Error> {
        let cursor = self.cursor.clone();
        self.fetch(cursor).await
    }

    /// Every page, following `next_cursor` until the list ends.
    pub fn pages(self) -> BoxStream<'static, Result<ConversationPage, Error>> {
        let cursor = self.cursor.clone();
        stream::try_unfold(Some(cursor), move |next| {
            let request = self.clone();
            async move {
                let Some(cursor) = next else {
                    return Ok(None);
                };
                let page = request.fetch(cursor).await?;
                let next = page.next_cursor.clone().map(Some);
                Ok(Some((page, next)))
            }
        })
        .boxed()
    }

    /// Every conversation, page after page.
    pub fn conversations(self) -> BoxStream<'static, Result<Conversation, Error>> {
        self.pages()
            .map_ok(|page| stream::iter(page.conversations.into_iter().map(Ok)))
            .try_flatten()
            .boxed()
    }
}

impl Client {
    /// The caller's conversations, most recently active first, each with its newest visible
    /// message (the SDK's `fetchAllConversations`).
    ///
    /// ```no_run
    /// # async fn demo(client: roaming_client::Client) -> Result<(), roaming_client::Error> {
    /// use futures::TryStreamExt;
    /// let all: Vec<_> = client.list_conversations().page_size(50).conversations().try_collect().await?;
    /// # Ok(()) }
    /// ```
    pub fn list_conversations(&self) -> ListRequest {
        ListRequest {
            client: self.clone(),
            page_size: 0,
            cursor: None,
            active_since_ms: 0,
            types: Vec::new(),
            pinned_only: false,
            mark: String::new(),
            save: true,
        }
    }

    /// Marks the conversation read up to and including `msg_id` (`None`: its newest
    /// message), on all the caller's devices; the marker never moves back. Returns the marker
    /// and unread count now, and keeps them in the local store's entry.
    ///
    /// ```no_run
    /// # async fn demo(phone: roaming_client::Client) -> Result<(), roaming_client::Error> {
    /// use roaming_client::ConversationRef;
    /// let read = phone.mark_read(&ConversationRef::peer("bob"), None).await?;
    /// assert_eq!(read.unread_count, 0);
    /// # Ok(()) }
    /// ```
    pub async fn mark_read(
        &self,
        conversation: &ConversationRef,
        msg_id: Option<&str>,
    ) -> Result<ReadMarker, Error> {
        let request = cpb::MarkReadRequest {
            conversation: Some(conversation.to_proto()),
            msg_id: msg_id.unwrap_or_default().to_owned(),
        };
        // Retrying is safe: the marker only moves forward, to the same place.
        let response = self
            .retry
            .run(|| {
                let mut raw = self.conversations();
                let request = request.clone();
                async move { Ok(raw.mark_read(request).await?.into_inner()) }
            })
            .await?;
        let marker = ReadMarker {
            read_seq: response.read_seq,
            unread_count: response.unread_count,
        };
        #[cfg(feature = "local-store")]
        if let Some(store) = &self.local {
            let conversation = conversation.clone();
            store
                .call(move |s| {
                    s.update_state(&conversation, |state| {
                        state.read_seq = marker.read_seq;
                        state.unread_count = marker.unread_count;
                    })
                })
                .await?;
        }
        Ok(marker)
    }

    /// Pins (`true`) or unpins the conversation for the caller; returns when it was first
    /// pinned (`None` once unpinned). At most 50 pinned conversations per user by default:
    /// one more is [`Error::FailedPrecondition`].
    pub async fn pin(
        &self,
        conversation: &ConversationRef,
        pinned: bool,
    ) -> Result<Option<i64>, Error> {
        let request = cpb::PinConversationRequest {
            conversation: Some(conversation.to_proto()),
            pinned,
        };
        let response = self
            .retry
            .run(|| {
                let mut raw = self.conversations();
                let request = request.clone();
                async move { Ok(raw.pin_conversation(request).await?.into_inner()) }
            })
            .await?;
        let pinned_at_ms = pinned.then_some(response.pinned_at_ms);
        #[cfg(feature = "local-store")]
        if let Some(store) = &self.local {
            let conversation = conversation.clone();
            store
                .call(move |s| {
                    s.update_state(&conversation, |state| state.pinned_at_ms = pinned_at_ms)
                })
                .await?;
        }
        Ok(pinned_at_ms)
    }

    /// Adds and removes the caller's marks (labels: 1-32 characters of `[A-Za-z0-9_.-]`, at
    /// most 20 per conversation) on the conversation; returns its marks now, sorted.
    pub async fn mark_conversation<A: Into<String>, R: Into<String>>(
        &self,
        conversation: &ConversationRef,
        add: impl IntoIterator<Item = A>,
        remove: impl IntoIterator<Item = R>,
    ) -> Result<Vec<String>, Error> {
        let request = cpb::MarkConversationRequest {
            conversation: Some(conversation.to_proto()),
            add_marks: add.into_iter().map(Into::into).collect(),
            remove_marks: remove.into_iter().map(Into::into).collect(),
        };
        let response = self
            .retry
            .run(|| {
                let mut raw = self.conversations();
                let request = request.clone();
                async move { Ok(raw.mark_conversation(request).await?.into_inner()) }
            })
            .await?;
        #[cfg(feature = "local-store")]
        if let Some(store) = &self.local {
            let conversation = conversation.clone();
            let marks = response.marks.clone();
            store
                .call(move |s| s.update_state(&conversation, |state| state.marks = marks))
                .await?;
        }
        Ok(response.marks)
    }

    /// Removes a conversation: [`RemovalScope::ForMe`] takes it out of the caller's list on
    /// all their devices (with `delete_messages`, its messages so far are hidden from them
    /// too); [`RemovalScope::ForEveryone`] (service callers) purges it for every participant.
    /// The local store drops the conversation (and, with `delete_messages`, its messages).
    pub async fn remove_conversation(
        &self,
        conversation: &ConversationRef,
        delete_messages: bool,
        scope: RemovalScope,
    ) -> Result<(), Error> {
        let request = cpb::RemoveConversationRequest {
            conversation: Some(conversation.to_proto()),
            delete_messages,
            scope: scope.to_proto() as i32,
        };
        self.retry
            .run(|| {
                let mut raw = self.conversations();
                let request = request.clone();
                async move { Ok(raw.remove_conversation(request).await?.into_inner()) }
            })
            .await?;
        #[cfg(feature = "local-store")]
        if let Some(store) = &self.local {
            let conversation = conversation.clone();
            store
                .call(move |s| s.delete_conversation(&conversation, delete_messages))
                .await?;
        }
        Ok(())
    }

    /// Adds 1-100 users to a GROUP or CHATROOM (service callers only).
    pub async fn add_members<S: Into<String>>(
        &self,
        conversation: &ConversationRef,
        user_ids: impl IntoIterator<Item = S>,
    ) -> Result<(), Error> {
        let request = cpb::AddMembersRequest {
            conversation: Some(conversation.to_proto()),
            user_ids: user_ids.into_iter().map(Into::into).collect(),
        };
        self.unary(request, |mut raw, request| async move {
            raw.add_members(request).await.map(drop)
        })
        .await
    }

    /// Removes 1-100 users from a GROUP or CHATROOM (service callers only).
    pub async fn remove_members<S: Into<String>>(
        &self,
        conversation: &ConversationRef,
        user_ids: impl IntoIterator<Item = S>,
    ) -> Result<(), Error> {
        let request = cpb::RemoveMembersRequest {
            conversation: Some(conversation.to_proto()),
            user_ids: user_ids.into_iter().map(Into::into).collect(),
        };
        self.unary(request, |mut raw, request| async move {
            raw.remove_members(request).await.map(drop)
        })
        .await
    }

    /// One conversation-service call with the retry policy: `call` gets a fresh stub and a
    /// copy of `request` on every attempt.
    async fn unary<R, F, Fut>(&self, request: R, call: F) -> Result<(), Error>
    where
        R: Clone,
        F: Fn(crate::connect::RawConversationClient, R) -> Fut,
        Fut: std::future::Future<Output = Result<(), tonic::Status>>,
    {
        self.retry
            .run(|| {
                let attempt = call(self.conversations(), request.clone());
                async move { Ok(attempt.await?) }
            })
            .await
    }
}
