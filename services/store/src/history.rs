//! One user's view of one conversation's history: pages, anchors and one-way removals.
//!
//! What a user may see of a conversation is `seq > floor` (floor = the user's watermark or
//! the conversation's purge, whichever is higher) minus the user's tombstones. Watermarks only
//! ever rise and tombstones are only ever added, so nothing removed can come back.

use crate::error::{Error, Result};
use crate::{Store, rows, sql};
use deadpool_postgres::GenericClient;
use roaming_domain::{Conversation, ConversationKind, MessageKind, MsgId, StoredMessage, UserId};
use std::collections::HashMap;

/// Reading order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Newest first.
    Backward,
    /// Oldest first.
    Forward,
}

impl Direction {
    /// The position before the first message in this direction.
    pub fn start(self) -> i64 {
        match self {
            Direction::Backward => i64::MAX,
            Direction::Forward => 0,
        }
    }
}

/// One page request, already validated.
#[derive(Debug, Clone)]
pub struct PageQuery {
    /// Reading order.
    pub direction: Direction,
    /// Exclusive position: the seq the page starts after (`Direction::start` for an end).
    pub after_seq: i64,
    /// Most messages in the page.
    pub limit: u32,
    /// Only at or after this server time.
    pub start_time_ms: Option<i64>,
    /// Only at or before this server time.
    pub end_time_ms: Option<i64>,
    /// Only from these senders (empty: all).
    pub senders: Vec<UserId>,
    /// Only these message kinds (empty: all).
    pub kinds: Vec<MessageKind>,
}

/// One page of history.
#[derive(Debug, Clone)]
pub struct Page {
    /// Messages in the direction's order.
    pub messages: Vec<StoredMessage>,
    /// No further matching message existed when the page was read.
    pub is_end: bool,
}

/// Per-id outcome of `remove_messages`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovalStatus {
    /// Now hidden from the caller.
    Removed,
    /// Already hidden from the caller.
    AlreadyRemoved,
    /// Not a message of this conversation.
    NotFound,
}

/// The caller's standing in a conversation.
pub(crate) struct View {
    /// `seq <= floor` is hidden from the caller.
    pub floor: i64,
    /// Whether the conversation has a row at all (a PEER conversation that never started has not).
    pub exists: bool,
}

/// Checks that `user` may read `conversation` and returns what is hidden from them.
/// Groups and chatrooms need membership; PEER conversations are reachable by their two
/// participants only, which holds by construction (the caller is one side of the key).
pub(crate) async fn view(
    client: &impl GenericClient,
    user: &UserId,
    conversation: &Conversation,
) -> Result<View> {
    let statement = client.prepare_cached(sql::VIEW).await?;
    let row = client
        .query_opt(&statement, &[&conversation.key(), &user.as_str()])
        .await?;
    let group = conversation.kind() != ConversationKind::Peer;
    let Some(row) = row else {
        if group {
            return Err(not_a_member(user, conversation));
        }
        return Ok(View {
            floor: 0,
            exists: false,
        });
    };
    let purged: i64 = row.get(0);
    let hidden: Option<i64> = row.get(1);
    let member: Option<bool> = row.get(2);
    if group && member != Some(true) {
        return Err(not_a_member(user, conversation));
    }
    Ok(View {
        floor: purged.max(hidden.unwrap_or(0)),
        exists: true,
    })
}

fn not_a_member(user: &UserId, conversation: &Conversation) -> Error {
    Error::PermissionDenied(format!(
        "{user} is not a member of {}",
        conversation.id_seen_by(user)
    ))
}

impl Store {
    /// The seq of `msg_id` in `conversation`, after checking that `user` may read it.
    pub async fn anchor_seq(
        &self,
        user: &UserId,
        conversation: &Conversation,
        msg_id: MsgId,
        field: &str,
    ) -> Result<i64> {
        with_conn!(self, |client| {
            view(&**client, user, conversation).await?;
            let statement = client.prepare_cached(sql::ANCHOR).await?;
            let row = client
                .query_opt(&statement, &[&conversation.key(), &msg_id.0])
                .await?;
            row.map(|r| r.get(0)).ok_or_else(|| {
                Error::NotFound(format!(
                    "{field}: message {msg_id} is not in this conversation"
                ))
            })
        })
    }

    /// One page of what `user` may see of `conversation`.
    pub async fn fetch_page(
        &self,
        user: &UserId,
        conversation: &Conversation,
        query: &PageQuery,
    ) -> Result<Page> {
        with_conn!(self, |client| {
            let view = view(&**client, user, conversation).await?;
            if !view.exists {
                return Ok(Page {
                    messages: Vec::new(),
                    is_end: true,
                });
            }
            let (lower, upper) = match query.direction {
                Direction::Forward => (query.after_seq.max(view.floor), i64::MAX),
                Direction::Backward => (view.floor, query.after_seq),
            };
            let filter = match (query.senders.is_empty(), query.kinds.is_empty()) {
                (true, true) => sql::PageFilter::All,
                (true, false) => sql::PageFilter::Kinds,
                (false, _) => sql::PageFilter::SendersAndKinds,
            };
            let statement = client
                .prepare_typed_cached(
                    sql::page_statement(query.direction == Direction::Backward, filter),
                    &sql::PAGE_PARAMETERS,
                )
                .await?;
            // One more than asked: whether it comes back says whether this page is the last.
            let fetch = i64::from(query.limit) + 1;
            let senders: Vec<&str> = query.senders.iter().map(UserId::as_str).collect();
            // Senders without kinds: each sender's messages of every kind.
            let kinds: Vec<i16> = if query.kinds.is_empty() {
                MessageKind::ALL.iter().map(|k| k.as_i16()).collect()
            } else {
                query.kinds.iter().map(|k| k.as_i16()).collect()
            };
            let rows = client
                .query(
                    &statement,
                    &[
                        &conversation.key(),
                        &lower,
                        &upper,
                        &query.start_time_ms,
                        &query.end_time_ms,
                        &senders,
                        &kinds,
                        &user.as_str(),
                        &fetch,
                    ],
                )
                .await?;
            let is_end = rows.len() as i64 <= i64::from(query.limit);
            let messages = rows
                .iter()
                .take(query.limit as usize)
                .map(|r| rows::message(conversation, r))
                .collect::<Result<_>>()?;
            Ok(Page { messages, is_end })
        })
    }

    /// Hides `ids` from `user` (one-way); returns a status per distinct id.
    pub async fn remove_messages(
        &self,
        user: &UserId,
        conversation: &Conversation,
        ids: &[MsgId],
    ) -> Result<HashMap<MsgId, RemovalStatus>> {
        with_conn!(self, |client| {
            let tx = client.transaction().await?;
            let view = view(&tx, user, conversation).await?;
            let key = conversation.key();
            let raw: Vec<i64> = ids.iter().map(|m| m.0).collect();
            let found = tx.query(sql::SEQS_OF_IDS, &[&key, &raw]).await?;
            let mut statuses: HashMap<MsgId, RemovalStatus> = ids
                .iter()
                .map(|&id| (id, RemovalStatus::NotFound))
                .collect();
            let mut to_hide: Vec<i64> = Vec::new();
            let mut seq_to_id: HashMap<i64, MsgId> = HashMap::new();
            for row in &found {
                let (id, seq): (i64, i64) = (row.get(0), row.get(1));
                statuses.insert(MsgId(id), RemovalStatus::AlreadyRemoved);
                if seq > view.floor {
                    to_hide.push(seq);
                    seq_to_id.insert(seq, MsgId(id));
                }
            }
            if !to_hide.is_empty() {
                // ON CONFLICT DO NOTHING + RETURNING: only tombstones written now come back, so a
                // concurrent twin call reports ALREADY_REMOVED for the ids this one took.
                let written = tx
                    .query(sql::TOMBSTONE, &[&key, &user.as_str(), &to_hide])
                    .await?;
                for row in &written {
                    if let Some(id) = seq_to_id.get(&row.get::<_, i64>(0)) {
                        statuses.insert(*id, RemovalStatus::Removed);
                    }
                }
            }
            tx.commit().await?;
            Ok(statuses)
        })
    }

    /// Hides from `user` every message of `conversation` stored at or before `before_time_ms`.
    ///
    /// The time becomes a seq watermark at the moment of the call: the newest seq stored at
    /// or before that time. Messages stored later have higher seqs and are never hidden by
    /// it, and `greatest` keeps an earlier time from lowering the watermark.
    pub async fn remove_messages_before(
        &self,
        user: &UserId,
        conversation: &Conversation,
        before_time_ms: i64,
    ) -> Result<()> {
        with_conn!(self, |client| {
            let view = view(&**client, user, conversation).await?;
            if !view.exists {
                return Ok(());
            }
            client
                .execute(
                    sql::HIDE_BEFORE_TIME,
                    &[&conversation.key(), &user.as_str(), &before_time_ms],
                )
                .await?;
            Ok(())
        })
    }
}
