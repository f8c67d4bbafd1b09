//! The conversation list, one-way and for-everyone conversation removal, and membership.
//!
//! The list is served from `user_conversations` (one row per participant, written when a
//! PEER conversation starts or a member is added, never per message) joined with
//! `conversations` (one row per conversation, updated per message). A message to a group of
//! any size writes one conversation row, not one per member.

use crate::error::{Error, Result};
use crate::history::view;
use crate::sql;
use crate::{
    Conversation, ConversationKind, Store, StoredMessage, UserId, domain::kind_from_row,
    message_from_row,
};

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

/// How far a conversation removal reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovalScope {
    /// The caller's view only.
    ForMe,
    /// Every participant's view.
    ForEveryone,
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
                let key: String = row.get(0);
                let kind = kind_from_row(row.get(1));
                let conversation = Conversation::from_key(&key)
                    .filter(|c| c.kind() == kind)
                    .ok_or_else(|| {
                        Error::Internal(format!("malformed conversation key {key:?}"))
                    })?;
                out.push(ConversationSummary {
                    last_activity_ms: row.get(2),
                    last_message: message_from_row(&conversation, row, 3),
                    conversation,
                    key,
                });
            }
            Ok((out, more))
        })
    }

    /// Removes `conversation` from `user`'s list (FOR_ME) or from everybody's (FOR_EVERYONE),
    /// hiding the messages stored so far as well when `delete_messages` is set. Idempotent.
    ///
    /// "So far" is the conversation's `last_seq` as committed when the statement runs: a
    /// message still being appended commits with a higher seq and stays visible, which is
    /// right, since no reader could have seen it before the removal.
    pub async fn remove_conversation(
        &self,
        user: &UserId,
        conversation: &Conversation,
        delete_messages: bool,
        scope: RemovalScope,
    ) -> Result<()> {
        with_conn!(self, |client| {
            let key = conversation.key();
            match scope {
                RemovalScope::ForMe => {
                    view(&**client, user, conversation).await?;
                    client
                        .execute(
                            "UPDATE user_conversations uc SET
                             removed_through_seq = greatest(uc.removed_through_seq, c.last_seq),
                             hidden_through_seq = CASE WHEN $3
                                 THEN greatest(uc.hidden_through_seq, c.last_seq)
                                 ELSE uc.hidden_through_seq END
                         FROM conversations c
                         WHERE c.conv_key = uc.conv_key AND uc.conv_key = $1 AND uc.user_id = $2",
                            &[&key, &user.as_str(), &delete_messages],
                        )
                        .await?;
                }
                RemovalScope::ForEveryone => {
                    client
                        .execute(
                            "UPDATE conversations SET
                             cleared_through_seq = greatest(cleared_through_seq, last_seq),
                             purged_through_seq = CASE WHEN $2
                                 THEN greatest(purged_through_seq, last_seq)
                                 ELSE purged_through_seq END
                         WHERE conv_key = $1",
                            &[&key, &delete_messages],
                        )
                        .await?;
                }
            }
            Ok(())
        })
    }

    /// Makes `users` members of a GROUP or CHATROOM (creating it on first use). A user who
    /// comes back keeps the one-way removals made before leaving.
    pub async fn add_members(&self, conversation: &Conversation, users: &[UserId]) -> Result<()> {
        let kind = conversation.kind();
        if kind == ConversationKind::Peer {
            return Err(Error::Internal("membership of a PEER conversation".into()));
        }
        with_conn!(self, |client| {
            let tx = client.transaction().await?;
            let key = conversation.key();
            tx.execute(
                "INSERT INTO conversations (conv_key, kind) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&key, &kind.as_i16()],
            )
            .await?;
            let ids: Vec<&str> = users.iter().map(UserId::as_str).collect();
            tx.execute(
                "INSERT INTO user_conversations (conv_key, user_id, kind) \
             SELECT $1, u, $3 FROM (SELECT DISTINCT unnest($2::text[]) AS u) AS d \
             ON CONFLICT (conv_key, user_id) DO UPDATE SET is_member = true",
                &[&key, &ids, &kind.as_i16()],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// Ends `users`' membership: at once they can neither fetch, append to nor list it.
    pub async fn remove_members(
        &self,
        conversation: &Conversation,
        users: &[UserId],
    ) -> Result<()> {
        with_conn!(self, |client| {
            let ids: Vec<&str> = users.iter().map(UserId::as_str).collect();
            client
                .execute(
                    "UPDATE user_conversations SET is_member = false \
                 WHERE conv_key = $1 AND user_id = ANY($2)",
                    &[&conversation.key(), &ids],
                )
                .await?;
            Ok(())
        })
    }
}
