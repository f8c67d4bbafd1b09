//! The change feed: pages of a user's conversations as they see them now, either all of them
//! (a snapshot) or those changed since an earlier snapshot (a delta). The argument for why a
//! delta never skips a change is in `docs/schema.md`, "The change feed".

use crate::error::{Error, Result};
use crate::{Store, rows, sql};
use roaming_domain::{Conversation, MsgId, StoredMessage, UserId};
use std::collections::HashMap;
use tokio_postgres::IsolationLevel;

/// One page request of the feed.
#[derive(Debug, Clone)]
pub struct SyncQuery {
    /// The snapshot (text form of `pg_snapshot`) the delta is relative to; `None`: a snapshot
    /// of every conversation that can be listed.
    pub since: Option<String>,
    /// Keyset position: only entries strictly after `(last_activity_ms, conv_key)` in the
    /// newest-first order; `None` for the first page.
    pub after: Option<(i64, String)>,
    /// Most changes in the page.
    pub limit: u32,
    /// Where unread counts saturate.
    pub unread_cap: i64,
}

/// One conversation as the user sees it now.
#[derive(Debug, Clone)]
pub struct ConversationState {
    /// The conversation.
    pub conversation: Conversation,
    /// Its storage key (the keyset's tie-breaker).
    pub key: String,
    /// Time of its newest stored message (the keyset's order).
    pub last_activity_ms: i64,
    /// Its newest message visible to the user; `None`: not in the user's list.
    pub last_message: Option<StoredMessage>,
    /// Its newest stored seq.
    pub last_seq: i64,
    /// Every seq at or below it is hidden from the user.
    pub hidden_through_seq: i64,
    /// Messages the user removed by id since the delta's snapshot (empty in a snapshot).
    pub removed: Vec<MsgId>,
    /// Messages recalled for everybody since the delta's snapshot.
    pub recalled: Vec<MsgId>,
    /// The current content of messages edited since the delta's snapshot that the user may
    /// still see.
    pub edited: Vec<StoredMessage>,
    /// GROUP / CHATROOM membership (true for PEER participants).
    pub is_member: bool,
    /// The user's read state of it.
    pub read: crate::ReadState,
}

/// One page of the feed.
#[derive(Debug, Clone)]
pub struct SyncPage {
    /// The snapshot this page was read in (text form of `pg_snapshot`).
    pub snapshot: String,
    /// The changes, newest activity first.
    pub changes: Vec<ConversationState>,
    /// Whether entries follow this page.
    pub more: bool,
}

impl Store {
    /// One page of `user`'s feed, read in one repeatable-read snapshot (whose text form the
    /// page returns). Never an empty page while entries follow.
    pub async fn sync_page(&self, user: &UserId, query: &SyncQuery) -> Result<SyncPage> {
        with_conn!(self, |client| {
            let tx = client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await?;
            if self.layout == sql::Layout::Citus {
                tx.batch_execute(sql::FENCE_READER).await?;
            }
            let snapshot: String = tx.query_one(sql::CURRENT_SNAPSHOT, &[]).await?.get(0);
            let statement = tx
                .prepare_typed_cached(
                    sql::sync_statement(self.layout, query.since.is_some()),
                    &sql::SYNC_PARAMETERS,
                )
                .await?;
            let (mut after_time, mut after_key) = match &query.after {
                Some((t, k)) => (*t, k.clone()),
                None => (i64::MAX, String::new()),
            };
            let fetch = i64::from(query.limit) + 1;
            let mut changes = Vec::new();
            let more = loop {
                let rows = tx
                    .query(
                        &statement,
                        &[
                            &user.as_str(),
                            &query.since,
                            &after_time,
                            &after_key,
                            &fetch,
                            &query.unread_cap,
                        ],
                    )
                    .await?;
                let more = rows.len() as i64 > i64::from(query.limit);
                for row in rows.iter().take(query.limit as usize) {
                    let state = state(row)?;
                    after_time = state.last_activity_ms;
                    after_key = state.key.clone();
                    // In a snapshot, a conversation whose every message is removed by id is
                    // not in the list (the query could not tell before looking).
                    if query.since.is_some() || state.last_message.is_some() {
                        changes.push(state);
                    }
                }
                if !changes.is_empty() || !more {
                    break more;
                }
            };
            if let Some(since) = &query.since {
                removed_since(&tx, user, since, &mut changes).await?;
                changed_since(&tx, user, since, &mut changes).await?;
            }
            tx.commit().await?;
            Ok(SyncPage {
                snapshot,
                changes,
                more,
            })
        })
    }
}

/// A row of `sql::SYNC_SNAPSHOT` / `sql::SYNC_DELTA`.
fn state(row: &tokio_postgres::Row) -> Result<ConversationState> {
    let conversation = rows::conversation(row)?;
    let listable: bool = row.try_get("listable")?;
    let has_message = row.try_get::<_, Option<i64>>("msg_id")?.is_some();
    let last_message = if listable && has_message {
        Some(rows::message(&conversation, row)?)
    } else {
        None
    };
    Ok(ConversationState {
        key: row.try_get("conv_key")?,
        last_activity_ms: row.try_get("last_time_ms")?,
        last_seq: row.try_get("last_seq")?,
        hidden_through_seq: row.try_get("floor")?,
        is_member: row.try_get("is_member")?,
        read: rows::read_state(row)?,
        removed: Vec::new(),
        recalled: Vec::new(),
        edited: Vec::new(),
        last_message,
        conversation,
    })
}

/// The keys of the changes that are in the list (what a device keeps history of).
fn listed_keys(changes: &[ConversationState]) -> Vec<&str> {
    changes
        .iter()
        .filter(|c| c.last_message.is_some())
        .map(|c| c.key.as_str())
        .collect()
}

/// Runs `statement` (parameters: the listed changes' keys, `user`, snapshot `since`) in `tx`;
/// nothing listed: no rows, and no round trip.
async fn rows_since(
    tx: &deadpool_postgres::Transaction<'_>,
    statement: &str,
    user: &UserId,
    since: &str,
    changes: &[ConversationState],
) -> Result<Vec<tokio_postgres::Row>> {
    let keys = listed_keys(changes);
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let statement = tx.prepare_cached(statement).await?;
    Ok(tx
        .query(&statement, &[&keys, &user.as_str(), &since])
        .await?)
}

/// Fills in the messages of each listed change recalled or edited since `since`.
async fn changed_since(
    tx: &deadpool_postgres::Transaction<'_>,
    user: &UserId,
    since: &str,
    changes: &mut [ConversationState],
) -> Result<()> {
    let rows = rows_since(tx, &sql::CHANGED_MESSAGES, user, since, changes).await?;
    let mut at: HashMap<&str, usize> = HashMap::new();
    for (i, c) in changes.iter().enumerate() {
        at.insert(c.key.as_str(), i);
    }
    let mut updates: Vec<(usize, bool, StoredMessage, bool)> = Vec::new();
    for row in &rows {
        let key: &str = row.try_get("conv_key")?;
        let i = *at.get(key).ok_or_else(|| {
            Error::Internal("a changed message of a conversation not in the page".into())
        })?;
        let message = rows::message(&changes[i].conversation, row)?;
        updates.push((
            i,
            row.try_get("recalled")?,
            message,
            row.try_get("removed")?,
        ));
    }
    for (i, recalled, message, removed) in updates {
        let change = &mut changes[i];
        if recalled {
            change.recalled.push(message.msg_id);
        } else if message.edit_version > 0 && message.seq > change.hidden_through_seq && !removed {
            change.edited.push(message);
        }
    }
    Ok(())
}

/// Fills in the ids each listed change's user removed since `since`.
async fn removed_since(
    tx: &deadpool_postgres::Transaction<'_>,
    user: &UserId,
    since: &str,
    changes: &mut [ConversationState],
) -> Result<()> {
    let rows = rows_since(tx, sql::REMOVED_SINCE, user, since, changes).await?;
    let mut by_key: HashMap<String, Vec<MsgId>> = HashMap::new();
    for row in &rows {
        by_key
            .entry(row.try_get("conv_key")?)
            .or_default()
            .push(MsgId(row.try_get("msg_id")?));
    }
    for change in changes {
        if let Some(ids) = by_key.remove(&change.key) {
            change.removed = ids;
        }
    }
    if by_key.is_empty() {
        Ok(())
    } else {
        Err(Error::Internal(
            "removed ids of a conversation not in the page".into(),
        ))
    }
}
