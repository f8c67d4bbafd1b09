//! Idempotent ingest: a batch is stored whole or not at all, each message once.
//!
//! Seq is allocated under the conversation row's lock (`SELECT ... FOR UPDATE`) in the same
//! transaction as the insert. The next writer of the conversation waits for that lock until
//! this transaction commits, so seq N+1 is never visible before seq N: seqs are gapless and in
//! commit order, and a forward reader never has a message inserted behind its position.

use crate::error::{Error, Result};
use crate::rows::{self, attributes_to_json};
use crate::{Store, sql};
use deadpool_postgres::Transaction;
use roaming_domain::{Conversation, ConversationKind, MsgId, NewMessage, StoredMessage, UserId};
use std::collections::{BTreeMap, HashMap, HashSet};

/// What happened to one message of a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct AppendOutcome {
    /// The stored message (the original one for a duplicate).
    pub message: StoredMessage,
    /// True when it had been stored before and nothing was written.
    pub duplicate: bool,
}

impl Store {
    /// Stores `batch` (already validated) at server time `now_ms`; outcomes come back in
    /// batch order. Group and chatroom senders must be members, or nothing is stored.
    pub async fn append(&self, batch: &[NewMessage], now_ms: i64) -> Result<Vec<AppendOutcome>> {
        if let [message] = batch {
            if let Some(outcome) = self.append_one_fast(message, now_ms).await? {
                return Ok(vec![outcome]);
            }
        }
        // Conversations in key order: every writer locks rows in the same order, so two
        // batches spanning the same conversations cannot deadlock.
        let mut by_conversation: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, m) in batch.iter().enumerate() {
            by_conversation
                .entry(m.conversation.key())
                .or_default()
                .push(i);
        }

        with_conn!(self, |client| {
            let tx = client.transaction().await?;
            // Several conversations may live on several workers: Citus then commits in two
            // phases, and the feed's readers must not take a snapshot between them.
            if self.layout == sql::Layout::Citus && by_conversation.len() > 1 {
                tx.batch_execute(sql::FENCE_WRITER).await?;
            }
            for (key, indexes) in &by_conversation {
                let conversation = &batch[indexes[0]].conversation;
                if conversation.kind() != ConversationKind::Peer {
                    check_senders_are_members(&tx, key, batch, indexes).await?;
                }
            }

            let mut outcomes: Vec<Option<AppendOutcome>> = vec![None; batch.len()];
            for (key, indexes) in &by_conversation {
                append_to_conversation(&tx, key, batch, indexes, now_ms, &mut outcomes).await?;
            }
            tx.commit().await?;
            outcomes
                .into_iter()
                .map(|o| o.ok_or_else(|| Error::Internal("append outcome missing".into())))
                .collect()
        })
    }
}

impl Store {
    /// The common case, one new message to an existing conversation, in one autocommit
    /// statement (one round trip instead of five): `UPDATE ... RETURNING` takes the row lock
    /// and the next seq, the insert uses them, and the commit releases the lock, so seqs stay
    /// gapless and in commit order exactly as in the transaction path.
    ///
    /// `None` sends the caller to the transaction path, which handles everything else with
    /// its precise answers: the conversation does not exist yet or the sender is not a
    /// member (no row updated, nothing written), or the message is a retry (the unique
    /// idempotency key fails the statement, which rolls the seq bump back with it).
    async fn append_one_fast(&self, m: &NewMessage, now_ms: i64) -> Result<Option<AppendOutcome>> {
        let key = m.conversation.key();
        let is_peer = m.conversation.kind() == ConversationKind::Peer;
        let attributes = attributes_to_json(&m.attributes);
        with_conn!(self, |client| {
            let statement = client.prepare_cached(sql::APPEND_ONE).await?;
            let result = client
                .query_opt(
                    &statement,
                    &[
                        &key,
                        &now_ms,
                        &is_peer,
                        &m.sender.as_str(),
                        &m.recipient(),
                        &m.kind.as_i16(),
                        &m.body.as_slice(),
                        &attributes,
                        &m.client_msg_id.as_str(),
                    ],
                )
                .await;
            let row = match result {
                Ok(Some(row)) => row,
                Ok(None) => return Ok(None),
                // unique_violation: (conv_key, sender, client_msg_id) exists, a retry.
                Err(e) if e.code().map(|c| c.code()) == Some("23505") => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            Ok(Some(AppendOutcome {
                message: stored(
                    m,
                    MsgId(row.try_get("msg_id")?),
                    row.try_get("seq")?,
                    row.try_get("server_time_ms")?,
                ),
                duplicate: false,
            }))
        })
    }
}

/// `m` as stored with `msg_id` at `seq` and `server_time_ms`.
fn stored(m: &NewMessage, msg_id: MsgId, seq: i64, server_time_ms: i64) -> StoredMessage {
    StoredMessage {
        msg_id,
        conversation: m.conversation.clone(),
        seq,
        sender: m.sender.clone(),
        kind: m.kind,
        body: m.body.clone(),
        attributes: m.attributes.clone(),
        server_time_ms,
        client_msg_id: m.client_msg_id.clone(),
        edit_version: 0,
        edited_at_ms: 0,
    }
}

async fn check_senders_are_members(
    tx: &Transaction<'_>,
    key: &str,
    batch: &[NewMessage],
    indexes: &[usize],
) -> Result<()> {
    let senders: Vec<&str> = indexes.iter().map(|&i| batch[i].sender.as_str()).collect();
    let statement = tx.prepare_cached(sql::MEMBERS).await?;
    let rows = tx.query(&statement, &[&key, &senders]).await?;
    let members: Vec<&str> = rows
        .iter()
        .map(|r| r.try_get("user_id"))
        .collect::<Result<_, _>>()?;
    for &i in indexes {
        if !members.contains(&batch[i].sender.as_str()) {
            return Err(Error::PermissionDenied(format!(
                "messages[{i}].sender: {} is not a member of {}",
                batch[i].sender,
                batch[i].recipient()
            )));
        }
    }
    Ok(())
}

/// Locks the conversation's row (creating it, and a PEER conversation's participants, on its
/// first message) and returns `(last_seq, last_time_ms)`.
async fn lock_conversation(
    tx: &Transaction<'_>,
    conversation: &Conversation,
) -> Result<(i64, i64)> {
    let key = conversation.key();
    // Prepared once per connection: every append runs these (ingest is the hot path).
    let lock = tx.prepare_cached(sql::LOCK).await?;
    let read = |row: tokio_postgres::Row| -> Result<(i64, i64)> {
        Ok((row.try_get("last_seq")?, row.try_get("last_time_ms")?))
    };
    if let Some(row) = tx.query_opt(&lock, &[&key]).await? {
        return read(row);
    }
    let kind = conversation.kind().as_i16();
    let created = tx.execute(sql::CREATE_CONVERSATION, &[&key, &kind]).await?;
    if created == 1 {
        let participants: Vec<&str> = conversation
            .implicit_participants()
            .iter()
            .map(|u| u.as_str())
            .collect();
        if !participants.is_empty() {
            tx.execute(sql::ADD_PARTICIPANTS, &[&key, &participants, &kind])
                .await?;
        }
    }
    read(tx.query_one(&lock, &[&key]).await?)
}

async fn append_to_conversation(
    tx: &Transaction<'_>,
    key: &str,
    batch: &[NewMessage],
    indexes: &[usize],
    now_ms: i64,
    outcomes: &mut [Option<AppendOutcome>],
) -> Result<()> {
    let conversation = &batch[indexes[0]].conversation;
    let (last_seq, last_time_ms) = lock_conversation(tx, conversation).await?;

    // Messages stored before (retries), found under the lock so a concurrent twin has either
    // committed (found here) or not started (it will find ours).
    let senders: Vec<&str> = indexes.iter().map(|&i| batch[i].sender.as_str()).collect();
    let client_ids: Vec<&str> = indexes
        .iter()
        .map(|&i| batch[i].client_msg_id.as_str())
        .collect();
    let duplicates = tx.prepare_cached(&sql::EXISTING).await?;
    let existing_rows = tx
        .query(&duplicates, &[&key, &senders, &client_ids])
        .await?;
    let mut by_key: HashMap<(UserId, String), StoredMessage> = HashMap::new();
    for row in &existing_rows {
        let m = rows::message(conversation, row)?;
        by_key.insert((m.sender.clone(), m.client_msg_id.clone()), m);
    }

    // Never before the conversation's newest message: server_time_ms does not decrease.
    let time = now_ms.max(last_time_ms);
    let mut fresh: Vec<usize> = Vec::new();
    let mut fresh_keys: HashSet<(UserId, String)> = HashSet::new();
    for &i in indexes {
        let m = &batch[i];
        let id = (m.sender.clone(), m.client_msg_id.clone());
        if let Some(original) = by_key.get(&id) {
            outcomes[i] = Some(AppendOutcome {
                message: original.clone(),
                duplicate: true,
            });
        } else if fresh_keys.insert(id) {
            fresh.push(i);
        }
        // Otherwise: twice in one batch, a duplicate of the first (filled in below).
    }

    if !fresh.is_empty() {
        let n = i64::try_from(fresh.len()).unwrap_or(i64::MAX);
        let seqs: Vec<i64> = (1..=n).map(|k| last_seq + k).collect();
        let senders: Vec<&str> = fresh.iter().map(|&i| batch[i].sender.as_str()).collect();
        let recipients: Vec<&str> = fresh.iter().map(|&i| batch[i].recipient()).collect();
        let kinds: Vec<i16> = fresh.iter().map(|&i| batch[i].kind.as_i16()).collect();
        let bodies: Vec<&[u8]> = fresh.iter().map(|&i| batch[i].body.as_slice()).collect();
        let attributes: Vec<serde_json::Value> = fresh
            .iter()
            .map(|&i| attributes_to_json(&batch[i].attributes))
            .collect();
        let client_ids: Vec<&str> = fresh
            .iter()
            .map(|&i| batch[i].client_msg_id.as_str())
            .collect();
        let insert = tx.prepare_cached(sql::BUMP_INSERT).await?;
        let rows = tx
            .query(
                &insert,
                &[
                    &key,
                    &(last_seq + n),
                    &time,
                    &seqs,
                    &senders,
                    &recipients,
                    &kinds,
                    &bodies,
                    &attributes,
                    &client_ids,
                    &(conversation.kind() == ConversationKind::Peer),
                ],
            )
            .await?;
        let mut ids: HashMap<i64, i64> = HashMap::new();
        for row in &rows {
            ids.insert(row.try_get("seq")?, row.try_get("msg_id")?);
        }
        for (k, &i) in fresh.iter().enumerate() {
            let m = &batch[i];
            let seq = seqs[k];
            let msg_id = *ids
                .get(&seq)
                .ok_or_else(|| Error::Internal("inserted message not returned".into()))?;
            let message = stored(m, MsgId(msg_id), seq, time);
            by_key.insert(
                (message.sender.clone(), message.client_msg_id.clone()),
                message.clone(),
            );
            outcomes[i] = Some(AppendOutcome {
                message,
                duplicate: false,
            });
        }
    }

    // In-batch repeats point at the message stored for their first occurrence.
    for &i in indexes {
        if outcomes[i].is_none() {
            let m = &batch[i];
            let original = by_key
                .get(&(m.sender.clone(), m.client_msg_id.clone()))
                .ok_or_else(|| Error::Internal("in-batch duplicate without original".into()))?;
            outcomes[i] = Some(AppendOutcome {
                message: original.clone(),
                duplicate: true,
            });
        }
    }
    Ok(())
}
