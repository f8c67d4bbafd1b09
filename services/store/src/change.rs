//! Recall and edit: changes to a stored message for everybody, by its sender.
//!
//! Both lock the message's row, check it under the lock, change it in place (a recall erases
//! its content) and stamp the conversation for the change feed (a GROUP's row, a PEER
//! conversation's two participant rows: never a row per member), in one transaction.

use crate::error::{Error, Result};
use crate::history::view;
use crate::rows::{self, attributes_to_json};
use crate::{Store, sql};
use roaming_domain::{Conversation, MsgId, StoredMessage, UserId};
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
    /// past the window at `now_ms`: `FailedPrecondition`.
    pub async fn recall(
        &self,
        user: &UserId,
        conversation: &Conversation,
        msg_id: MsgId,
        now_ms: i64,
        rules: ChangeRules,
    ) -> Result<()> {
        let key = conversation.key();
        with_conn!(self, |client| {
            let tx = client.transaction().await?;
            let target = lock_own(&tx, user, conversation, &key, msg_id).await?;
            if target.recalled {
                return Ok(());
            }
            if now_ms.saturating_sub(target.server_time_ms) > rules.recall_window_ms {
                return Err(Error::FailedPrecondition(format!(
                    "msg_id: message {msg_id} was stored more than {} s ago, past the recall \
                     window",
                    rules.recall_window_ms / 1000
                )));
            }
            tx.execute(sql::RECALL, &[&key, &msg_id.0]).await?;
            tx.execute(sql::TOUCH_CONVERSATION, &[&key]).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// Replaces the body and attributes of `msg_id` for everybody, acting for its sender
    /// `user`, at `now_ms`; returns the message as it is now. Unknown, purged or recalled:
    /// `NotFound`; another sender: `PermissionDenied`; past the most edits:
    /// `FailedPrecondition`.
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
        let attributes = attributes_to_json(attributes);
        with_conn!(self, |client| {
            let tx = client.transaction().await?;
            let target = lock_own(&tx, user, conversation, &key, msg_id).await?;
            if target.recalled {
                return Err(not_found(msg_id, "was recalled"));
            }
            if target.edit_version >= i64::from(rules.max_edits) {
                return Err(Error::FailedPrecondition(format!(
                    "msg_id: message {msg_id} was edited {} times, the most allowed",
                    rules.max_edits
                )));
            }
            let statement = tx.prepare_cached(&sql::EDIT).await?;
            let row = tx
                .query_one(&statement, &[&key, &msg_id.0, &body, &attributes, &now_ms])
                .await?;
            tx.execute(sql::TOUCH_CONVERSATION, &[&key]).await?;
            let message = rows::message(conversation, &row)?;
            tx.commit().await?;
            Ok(message)
        })
    }
}

struct Target {
    server_time_ms: i64,
    recalled: bool,
    edit_version: i64,
}

/// Locks `msg_id` after checking that `user` may reach the conversation, that the message
/// exists and is not purged, and that `user` sent it.
async fn lock_own(
    tx: &deadpool_postgres::Transaction<'_>,
    user: &UserId,
    conversation: &Conversation,
    key: &str,
    msg_id: MsgId,
) -> Result<Target> {
    view(tx, user, conversation).await?;
    let statement = tx.prepare_cached(sql::MESSAGE_FOR_CHANGE).await?;
    let row = tx
        .query_opt(&statement, &[&key, &msg_id.0])
        .await?
        .ok_or_else(|| not_found(msg_id, "is not in this conversation"))?;
    let seq: i64 = row.try_get("seq")?;
    let purged: i64 = row.try_get("purged_through_seq")?;
    if seq <= purged {
        return Err(not_found(msg_id, "was purged"));
    }
    let sender: &str = row.try_get("sender")?;
    if sender != user.as_str() {
        return Err(Error::PermissionDenied(format!(
            "msg_id: message {msg_id} was sent by somebody else; only its sender's messages \
             can be changed"
        )));
    }
    Ok(Target {
        server_time_ms: row.try_get("server_time_ms")?,
        recalled: row.try_get("recalled")?,
        edit_version: i64::from(row.try_get::<_, i32>("edit_version")?),
    })
}

fn not_found(msg_id: MsgId, why: &str) -> Error {
    Error::NotFound(format!("msg_id: message {msg_id} {why}"))
}
