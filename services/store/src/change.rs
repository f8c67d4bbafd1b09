//! Recall and edit: changes to a stored message for everybody, by its sender.
//!
//! Both are one statement each ([`sql::RECALL`], [`sql::EDIT`]): the access check, the
//! message's row locked and checked under the lock, changed in place (a recall erases its
//! content) only when every rule holds, and the conversation stamped for the change feed (a
//! GROUP's row, a PEER conversation's two participant rows: never a row per member). One
//! round trip, atomic; the answer carries what the rules read, so the reason for a refusal
//! is decided here, in Rust.

use crate::error::{Error, Result};
use crate::history::view_of;
use crate::rows::{self, attributes_to_json};
use crate::{Store, sql};
use roaming_domain::{Conversation, ConversationKind, MsgId, StoredMessage, UserId};
use std::collections::HashMap;

/// What a recall or an edit may do, as server settings.
#[derive(Debug, Clone, Copy)]
pub struct ChangeRules {
    /// A recall must come within this long after the message's `server_time_ms`.
    pub recall_window_ms: i64,
    /// Most edits of one message.
    pub max_edits: u32,
}

impl Store {
    /// Recalls `msg_id` of `conversation` for everybody, acting for `user`, who must have
    /// sent it; idempotent. Unknown or purged: `NotFound`; another sender: `PermissionDenied`;
    /// past the window at `now_ms`: `FailedPrecondition`. One statement ([`sql::RECALL`]).
    pub async fn recall(
        &self,
        user: &UserId,
        conversation: &Conversation,
        msg_id: MsgId,
        now_ms: i64,
        rules: ChangeRules,
    ) -> Result<()> {
        let key = conversation.key();
        let group = conversation.kind() != ConversationKind::Peer;
        with_conn!(self, |client| {
            let statement = client.prepare_cached(&sql::RECALL).await?;
            let row = client
                .query_opt(
                    &statement,
                    &[
                        &key,
                        &user.as_str(),
                        &msg_id.0,
                        &group,
                        &now_ms,
                        &rules.recall_window_ms,
                    ],
                )
                .await?;
            let target = judge(row.as_ref(), user, conversation, msg_id)?;
            if row.as_ref().is_some_and(|r| r.get::<_, bool>("changed")) || target.recalled {
                return Ok(());
            }
            if now_ms.saturating_sub(target.server_time_ms) > rules.recall_window_ms {
                return Err(Error::FailedPrecondition(format!(
                    "msg_id: message {msg_id} was stored more than {} s ago, past the recall \
                     window",
                    rules.recall_window_ms / 1000
                )));
            }
            Err(unexplained(msg_id))
        })
    }

    /// Replaces the body and attributes of `msg_id` for everybody, acting for its sender
    /// `user`, at `now_ms`; returns the message as it is now. Unknown, purged or recalled:
    /// `NotFound`; another sender: `PermissionDenied`; past the most edits:
    /// `FailedPrecondition`. One statement ([`sql::EDIT`]).
    #[allow(clippy::too_many_arguments)]
    pub async fn edit(
        &self,
        user: &UserId,
        conversation: &Conversation,
        msg_id: MsgId,
        body: &[u8],
        attributes: &HashMap<String, String>,
        now_ms: i64,
        rules: ChangeRules,
    ) -> Result<StoredMessage> {
        let key = conversation.key();
        let group = conversation.kind() != ConversationKind::Peer;
        let attributes = attributes_to_json(attributes);
        let max_edits = i32::try_from(rules.max_edits).unwrap_or(i32::MAX);
        with_conn!(self, |client| {
            let statement = client.prepare_cached(&sql::EDIT).await?;
            let row = client
                .query_opt(
                    &statement,
                    &[
                        &key,
                        &user.as_str(),
                        &msg_id.0,
                        &group,
                        &body,
                        &attributes,
                        &now_ms,
                        &max_edits,
                    ],
                )
                .await?;
            let target = judge(row.as_ref(), user, conversation, msg_id)?;
            if let Some(row) = row
                .as_ref()
                .filter(|r| r.get::<_, Option<i64>>("seq").is_some())
            {
                return rows::message(conversation, row);
            }
            if target.recalled {
                return Err(not_found(msg_id, "was recalled"));
            }
            if target.edit_version >= i64::from(rules.max_edits) {
                return Err(Error::FailedPrecondition(format!(
                    "msg_id: message {msg_id} was edited {} times, the most allowed",
                    rules.max_edits
                )));
            }
            Err(unexplained(msg_id))
        })
    }
}

/// The target message as the statement saw it under its lock.
struct Target {
    server_time_ms: i64,
    recalled: bool,
    edit_version: i64,
}

/// The rules every change checks, read from a [`sql::RECALL`] / [`sql::EDIT`] answer: `user`
/// may reach the conversation, the message is in it and not purged, and `user` sent it. The
/// statement changed nothing unless they all hold; the caller judges its own rule (window,
/// edits) and whether it changed.
fn judge(
    row: Option<&tokio_postgres::Row>,
    user: &UserId,
    conversation: &Conversation,
    msg_id: MsgId,
) -> Result<Target> {
    view_of(row, user, conversation)?;
    let Some(row) = row.filter(|r| r.get::<_, Option<i64>>("t_seq").is_some()) else {
        return Err(not_found(msg_id, "is not in this conversation"));
    };
    let seq: i64 = row.try_get("t_seq")?;
    if seq <= row.try_get::<_, i64>("purged_through_seq")? {
        return Err(not_found(msg_id, "was purged"));
    }
    let sender: &str = row.try_get("t_sender")?;
    if sender != user.as_str() {
        return Err(Error::PermissionDenied(format!(
            "msg_id: message {msg_id} was sent by somebody else; only its sender's messages \
             can be changed"
        )));
    }
    Ok(Target {
        server_time_ms: row.try_get("t_server_time_ms")?,
        recalled: row.try_get("t_recalled")?,
        edit_version: i64::from(row.try_get::<_, i32>("t_edit_version")?),
    })
}

fn not_found(msg_id: MsgId, why: &str) -> Error {
    Error::NotFound(format!("msg_id: message {msg_id} {why}"))
}

/// Every rule held by the statement's own answer, yet nothing changed: not a state the
/// statement can reach (its gate is the same rules), so a defect to report, not to retry.
fn unexplained(msg_id: MsgId) -> Error {
    Error::Internal(format!(
        "message {msg_id}: the change met every rule but changed nothing"
    ))
}
