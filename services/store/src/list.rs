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
    /// Only pinned conversations, most recently pinned first (the keyset is then
    /// `(pinned_at_ms, conv_key)` and the window does not apply).
    pub pinned_only: bool,
    /// Only conversations carrying this mark.
    pub mark: Option<String>,
    /// Where unread counts saturate.
    pub unread_cap: i64,
}

/// The caller's read state and organisation of one conversation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReadState {
    /// Every seq at or below it is read.
    pub read_seq: i64,
    /// Visible messages above `read_seq` sent by somebody else, saturating at the cap.
    pub unread_count: i64,
    /// PEER: the other participant's marker; 0 otherwise.
    pub peer_read_seq: i64,
    /// When first pinned; `None`: not pinned.
    pub pinned_at_ms: Option<i64>,
    /// The caller's marks, sorted.
    pub marks: Vec<String>,
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
    /// The caller's read state of it.
    pub read: ReadState,
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
            let text = sql::list_statement(self.layout, query.pinned_only);
            let statement = client
                .prepare_typed_cached(text, &sql::LIST_PARAMETERS)
                .await?;
            let fetch = i64::from(query.limit) + 1;
            let mark = query.mark.as_deref().unwrap_or("");
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
                        &mark,
                        &query.unread_cap,
                    ],
                )
                .await?;
            let more = rows.len() as i64 > i64::from(query.limit);
            let mut out = Vec::with_capacity(rows.len());
            let Some(first) = rows.first() else {
                return Ok((out, more));
            };
            let columns = rows::MessageColumns::of(first)?;
            for row in rows.iter().take(query.limit as usize) {
                let conversation = rows::conversation(row)?;
                out.push(ConversationSummary {
                    last_activity_ms: row.try_get("last_time_ms")?,
                    last_message: columns.read(&conversation, row)?,
                    read: rows::read_state(row)?,
                    key: conversation.key(),
                    conversation,
                });
            }
            Ok((out, more))
        })
    }
}
