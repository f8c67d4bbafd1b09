//! The user's read state and organisation of a conversation: read markers, pins, marks.

use crate::error::{Error, Result};
use crate::history::{view, view_of};
use crate::{Store, sql};
use roaming_domain::{Conversation, ConversationKind, MsgId, UserId};

/// Where MarkRead leaves the marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadMarker {
    /// Every seq at or below it is read.
    pub read_seq: i64,
    /// Visible messages above it sent by somebody else (saturating).
    pub unread_count: i64,
}

/// Why a pin or mark change was refused by the state (the caller's request was well formed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Organised {
    /// Done: the conversation's pin time now (`None`: not pinned).
    Done {
        /// When the user first pinned it, ms since the epoch.
        pinned_at_ms: Option<i64>,
    },
    /// The limit (pins per user, marks per conversation) would be passed.
    LimitReached,
}

impl Store {
    /// Marks `conversation` read by `user` up to `msg_id` (its seq), or up to the newest
    /// stored message. The marker never moves back. An unknown id, one of another
    /// conversation, or a PEER conversation that never started: `NotFound`. One statement
    /// ([`sql::MARK_READ_PEER`] / [`sql::MARK_READ_GROUP`]).
    pub async fn mark_read(
        &self,
        user: &UserId,
        conversation: &Conversation,
        msg_id: Option<MsgId>,
        unread_cap: i64,
    ) -> Result<ReadMarker> {
        let key = conversation.key();
        let group = conversation.kind() != ConversationKind::Peer;
        with_conn!(self, |client| {
            let text = if group {
                &sql::MARK_READ_GROUP
            } else {
                &sql::MARK_READ_PEER
            };
            let statement = client.prepare_cached(text).await?;
            let row = client
                .query_opt(
                    &statement,
                    &[
                        &key,
                        &user.as_str(),
                        &msg_id.map(|id| id.0),
                        &group,
                        &unread_cap,
                    ],
                )
                .await?;
            if !view_of(row.as_ref(), user, conversation)?.exists {
                return Err(not_started(conversation, user));
            }
            let row = row.ok_or_else(|| {
                Error::Internal("MarkRead: an existing conversation answered no row".into())
            })?;
            if let Some(id) = msg_id {
                if row.try_get::<_, Option<i64>>("target_seq")?.is_none() {
                    return Err(Error::NotFound(format!(
                        "msg_id: message {id} is not in this conversation"
                    )));
                }
            }
            Ok(ReadMarker {
                read_seq: row.try_get("read_seq")?,
                unread_count: row.try_get("unread_count")?,
            })
        })
    }

    /// Pins (at `now_ms`, kept when already pinned) or unpins `conversation` for `user`; at
    /// most `max_pinned` pinned conversations per user.
    pub async fn pin(
        &self,
        user: &UserId,
        conversation: &Conversation,
        pinned: bool,
        now_ms: i64,
        max_pinned: i64,
    ) -> Result<Organised> {
        let key = conversation.key();
        with_conn!(self, |client| {
            let tx = client.transaction().await?;
            let view = view(&tx, user, conversation).await?;
            if !view.exists {
                return Err(not_started(conversation, user));
            }
            if pinned {
                tx.execute(sql::LOCK_PINS, &[&user.as_str()]).await?;
                let others: i64 = tx
                    .query_one(sql::PINNED_OTHERS, &[&user.as_str(), &key])
                    .await?
                    .get(0);
                if others >= max_pinned {
                    // Pinning a pinned one again is fine whatever the count.
                    let already: Option<i64> = tx
                        .query_one(sql::PINNED_AT, &[&key, &user.as_str()])
                        .await?
                        .get(0);
                    if already.is_none() {
                        return Ok(Organised::LimitReached);
                    }
                }
            }
            let at = pinned.then_some(now_ms);
            tx.execute(sql::PIN, &[&key, &user.as_str(), &at]).await?;
            // A repeated pin keeps the first time: read back what the row holds.
            let pinned_at_ms: Option<i64> = tx
                .query_one(sql::PINNED_AT, &[&key, &user.as_str()])
                .await?
                .get(0);
            tx.commit().await?;
            Ok(Organised::Done { pinned_at_ms })
        })
    }

    /// Adds and removes `user`'s marks on `conversation`, keeping at most `max_marks`;
    /// returns the marks now (sorted), or `None` when the limit would be passed.
    pub async fn mark(
        &self,
        user: &UserId,
        conversation: &Conversation,
        add: &[String],
        remove: &[String],
        max_marks: i64,
    ) -> Result<Option<Vec<String>>> {
        let key = conversation.key();
        with_conn!(self, |client| {
            let view = view(&**client, user, conversation).await?;
            if !view.exists {
                return Err(not_started(conversation, user));
            }
            let statement = client.prepare_cached(sql::MARK).await?;
            let row = client
                .query_opt(
                    &statement,
                    &[&key, &user.as_str(), &add, &remove, &max_marks],
                )
                .await?;
            Ok(match row {
                Some(row) => Some(row.try_get("marks")?),
                None => None,
            })
        })
    }
}

fn not_started(conversation: &Conversation, user: &UserId) -> Error {
    Error::NotFound(format!(
        "conversation: no message was ever stored with {}",
        conversation.id_seen_by(user)
    ))
}
