//! The client's local-store side: offline reads, local deletion, and filling the local
//! copy's seq holes from the server.

use crate::connect::Client;
use crate::error::Error;
use crate::events::StoreEvent;
use crate::local::{LocalQuery, LocalStore};
use crate::types::{Conversation, ConversationRef, Direction, Message};
use futures::StreamExt;

impl Client {
    /// The local store, when this client keeps one.
    pub fn local_store(&self) -> Option<&LocalStore> {
        self.local.as_ref()
    }

    /// The same client, keeping its local copy in `store`.
    pub fn with_local_store(mut self, store: LocalStore) -> Self {
        self.local = Some(store);
        self
    }

    fn store(&self) -> Result<LocalStore, Error> {
        self.local.clone().ok_or(Error::NoLocalStore)
    }

    /// Receives the local store's [`StoreEvent`]s from now on (see
    /// [`LocalStore::subscribe`]): what [`Client::sync`] and [`Client::verify`] changed,
    /// after each commit.
    pub fn events(&self) -> Result<tokio::sync::broadcast::Receiver<StoreEvent>, Error> {
        Ok(self.store()?.subscribe())
    }

    /// The conversations in the local store, most recently active first. Works offline.
    pub async fn local_conversations(&self) -> Result<Vec<Conversation>, Error> {
        self.store()?.call(|s| s.conversations()).await
    }

    /// One page of a conversation's local history. Works offline.
    pub async fn local_history(
        &self,
        conversation: &ConversationRef,
        query: LocalQuery,
    ) -> Result<Vec<Message>, Error> {
        let conversation = conversation.clone();
        self.store()?
            .call(move |s| s.history(&conversation, &query))
            .await
    }

    /// Deletes a conversation from the local store only (the SDK's `deleteConversation`):
    /// the server, and so the user's other devices, keep it. With `with_messages`, its local
    /// messages go too.
    pub async fn delete_local_conversation(
        &self,
        conversation: &ConversationRef,
        with_messages: bool,
    ) -> Result<(), Error> {
        let conversation = conversation.clone();
        self.store()?
            .call(move |s| s.delete_conversation(&conversation, with_messages))
            .await
    }

    /// Fetches from the server the messages missing between the local copy's complete seq
    /// ranges (see [`LocalStore::gaps`]), saves them and closes the holes. Every fetch
    /// through [`Client::fetch_history`] does this first; returns how many messages were
    /// brought in.
    pub async fn fill_gaps(&self, conversation: &ConversationRef) -> Result<usize, Error> {
        let store = self.store()?;
        let c = conversation.clone();
        let gaps = store.call(move |s| s.gaps(&c)).await?;
        let mut saved = 0;
        for gap in gaps {
            let (lo, hi) = (*gap.start(), *gap.end());
            let c = conversation.clone();
            let (lower, upper) = store
                .call(move |s| s.neighbours(&c, lo - 1, hi + 1))
                .await?;
            let found = match self
                .fetch_hole(conversation, lo, hi, &lower, &upper, true)
                .await
            {
                // The anchor is gone from the server (purged): bound the read by time instead.
                Err(Error::NotFound(_)) => {
                    self.fetch_hole(conversation, lo, hi, &lower, &upper, false)
                        .await?
                }
                other => other?,
            };
            saved += found.len();
            let c = conversation.clone();
            store
                .call(move |s| {
                    s.save_messages(&found)?;
                    s.cover(&c, lo - 1, hi + 1)
                })
                .await?;
        }
        Ok(saved)
    }

    /// Reads forward from the message below the hole until past its top; returns the
    /// messages inside it.
    pub(crate) async fn fetch_hole(
        &self,
        conversation: &ConversationRef,
        lo: i64,
        hi: i64,
        lower: &Option<Message>,
        upper: &Option<Message>,
        by_anchor: bool,
    ) -> Result<Vec<Message>, Error> {
        let size = u32::try_from((hi - lo + 1).clamp(1, 50)).unwrap_or(50);
        let mut request = self
            .fetch_history(conversation.clone())
            .direction(Direction::Forward)
            .page_size(size)
            .save_locally(false);
        match (lower, by_anchor) {
            (Some(m), true) => request = request.start_msg_id(m.msg_id.clone()),
            (Some(m), false) => request = request.start_time_ms(m.server_time_ms),
            (None, _) => {}
        }
        if let (Some(m), false) = (upper, by_anchor) {
            request = request.end_time_ms(m.server_time_ms);
        }
        let mut pages = request.pages();
        let mut found = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page?;
            let past = page.messages.last().is_some_and(|m| m.seq >= hi);
            found.extend(
                page.messages
                    .into_iter()
                    .filter(|m| (lo..=hi).contains(&m.seq)),
            );
            if past || page.is_end {
                break;
            }
        }
        Ok(found)
    }
}
