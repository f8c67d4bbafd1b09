//! The conversation list.
//!
//! The list is served from `user_conversations` (one row per participant, written when a
//! PEER conversation starts or a member is added, never per message) joined with
//! `conversations` (one row per conversation, updated per message). A message to a group of
//! any size writes one conversation row, not one per member.

use crate::error::Result;
use crate::{Store, rows, sql};
use roaming_domain::{Conversation, ConversationKind, StoredMessage, UserId};

/// One list page request, already validated.
#[derive(Debug, Clone)]
pub struct ListQuery {
    /// Kinds to list.
    pub kinds: Vec<ConversationKind>,
    /// Only conversations whose last activity is at or after this time.
    pub active_since_ms: i64,
    /// Keyset position: list only entries strictly after `(last_activity_ms, conv_key)` in
    /// the newest-first order; `None` for the first page.
    pub after: Option<(i64, String)>,
    /// Most entries.
    pub limit: u32,
}

/// One entry of a user's conversation list.
#[derive(Debug, Clone)]
pub struct ConversationSummary {
    /// The conversation.
    pub conversation: Conversation,
    /// Its storage key (the keyset's tie-breaker).
    pub key: String,
    /// Time of its newest stored message.
    pub last_activity_ms: i64,
    /// Its newest message visible to the caller.
    pub last_message: StoredMessage,
}

impl Store {
    /// A page of `user`'s conversations, newest activity first; the bool says whether more
    /// follow. One statement, whatever the page size.
    pub async fn list_conversations(
        &self,
        user: &UserId,
        query: &ListQuery,
    ) -> Result<(Vec<ConversationSummary>, bool)> {
        with_conn!(self, |client| {
            let kinds: Vec<i16> = query.kinds.iter().map(|k| k.as_i16()).collect();
            let (after_time, after_key) = match &query.after {
                Some((t, k)) => (*t, k.clone()),
                None => (i64::MAX, String::new()),
            };
            let statement = client.prepare_cached(&sql::LIST).await?;
            let fetch = i64::from(query.limit) + 1;
            let rows = client
                .query(
                    &statement,
                    &[
                        &user.as_str(),
                        &kinds,
                        &query.active_since_ms,
                        &after_time,
                        &after_key,
                        &fetch,
                    ],
                )
                .await?;
            let more = rows.len() as i64 > i64::from(query.limit);
            let mut out = Vec::with_capacity(rows.len());
            for row in rows.iter().take(query.limit as usize) {
                let conversation = rows::conversation(row)?;
                out.push(ConversationSummary {
                    last_activity_ms: row.try_get("last_time_ms")?,
                    last_message: rows::message(&conversation, row)?,
                    key: conversation.key(),
                    conversation,
                });
            }
            Ok((out, more))
        })
    }
}
