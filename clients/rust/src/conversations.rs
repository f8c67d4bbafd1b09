//! The conversation service, typed: the paging conversation list, removal, membership.

use crate::connect::Client;
use crate::error::Error;
use crate::types::{
    Conversation, ConversationPage, ConversationRef, ConversationType, RemovalScope,
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
            ..Default::default()
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
            save: true,
        }
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
