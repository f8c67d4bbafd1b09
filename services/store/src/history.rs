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

/// Where a page starts (exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageStart {
    /// After this seq (`Direction::start` for an end).
    After(i64),
    /// After this message (FetchHistory's anchor); not in the conversation: `NotFound`
    /// naming `field`.
    AfterMessage {
        /// The anchor.
        msg_id: MsgId,
        /// The request field it came from, for the error.
        field: &'static str,
    },
}

/// One page request, already validated.
#[derive(Debug, Clone)]
pub struct PageQuery {
    /// Reading order.
    pub direction: Direction,
    /// Where the page starts.
    pub start: PageStart,
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
    /// The seq the page starts after (an anchor resolved): the position to resume from
    /// when the page is empty.
    pub after_seq: i64,
    /// Messages in the direction's order.
    pub messages: Vec<StoredMessage>,
    /// No further matching message existed when the page was read.
    pub is_end: bool,
}

/// A DigestHistory range, already validated: `from_seq..=to_seq` (`to_seq` `None`: through
/// the conversation's newest stored seq) in buckets of `bucket_size`.
#[derive(Debug, Clone, Copy)]
pub struct DigestQuery {
    /// First seq (inclusive, at least 1).
    pub from_seq: i64,
    /// Last seq (inclusive); `None`: the newest stored.
    pub to_seq: Option<i64>,
    /// Seqs per bucket (at least 1).
    pub bucket_size: i64,
    /// Most buckets the range may have.
    pub max_buckets: i64,
}

/// One bucket of consecutive seqs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// First seq (inclusive).
    pub from_seq: i64,
    /// Last seq (inclusive).
    pub to_seq: i64,
    /// Messages the reader may see in it.
    pub count: i64,
    /// The first 16 bytes of SHA-256 over their `seq || msg_id || edit_version`.
    pub digest: [u8; 16],
}

/// SHA-256 of nothing, first 16 bytes: the digest of an empty bucket.
pub const EMPTY_DIGEST: [u8; 16] = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
];

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
    /// The conversation's newest stored seq (0 when it does not exist).
    pub last_seq: i64,
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
    view_of(row.as_ref(), user, conversation)
}

/// [`view`]'s verdict on a row carrying [`sql::VIEW`]'s columns by name (`purged_through_seq`,
/// `hidden_through_seq`, `is_member`, `last_seq`), or on no row (no such conversation): the
/// statements that fold the view into themselves (MarkRead, recall, edit) answer with them.
pub(crate) fn view_of(
    row: Option<&tokio_postgres::Row>,
    user: &UserId,
    conversation: &Conversation,
) -> Result<View> {
    let group = conversation.kind() != ConversationKind::Peer;
    let Some(row) = row else {
        if group {
            return Err(not_a_member(user, conversation));
        }
        return Ok(View {
            floor: 0,
            last_seq: 0,
            exists: false,
        });
    };
    let purged: i64 = row.try_get("purged_through_seq")?;
    let hidden: Option<i64> = row.try_get("hidden_through_seq")?;
    let member: Option<bool> = row.try_get("is_member")?;
    if group && member != Some(true) {
        return Err(not_a_member(user, conversation));
    }
    Ok(View {
        floor: purged.max(hidden.unwrap_or(0)),
        last_seq: row.try_get("last_seq")?,
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
    /// One page of what `user` may see of `conversation`, in one statement (one round trip:
    /// the view, the anchor and the page together, see [`sql::page_statement`]); which rule
    /// refused a call is read here from the answer's view columns.
    pub async fn fetch_page(
        &self,
        user: &UserId,
        conversation: &Conversation,
        query: &PageQuery,
    ) -> Result<Page> {
        let (after, anchor) = match query.start {
            PageStart::After(seq) => (Some(seq), None),
            PageStart::AfterMessage { msg_id, field } => (None, Some((msg_id, field))),
        };
        let filter = match (query.senders.is_empty(), query.kinds.is_empty()) {
            (true, true) => sql::PageFilter::All,
            (true, false) => sql::PageFilter::Kinds,
            (false, _) => sql::PageFilter::SendersAndKinds,
        };
        // One more than asked: whether it comes back says whether this page is the last.
        let fetch = i64::from(query.limit) + 1;
        let senders: Vec<&str> = query.senders.iter().map(UserId::as_str).collect();
        // Senders without kinds: each sender's messages of every kind.
        let kinds: Vec<i16> = if query.kinds.is_empty() {
            MessageKind::ALL.iter().map(|k| k.as_i16()).collect()
        } else {
            query.kinds.iter().map(|k| k.as_i16()).collect()
        };
        let group = conversation.kind() != ConversationKind::Peer;
        let rows: Vec<tokio_postgres::Row> = with_conn!(self, |client| {
            let statement = client
                .prepare_typed_cached(
                    sql::page_statement(query.direction == Direction::Backward, filter),
                    &sql::PAGE_PARAMETERS,
                )
                .await?;
            Ok::<_, Error>(
                client
                    .query(
                        &statement,
                        &[
                            &conversation.key(),
                            &after,
                            &anchor.map(|(id, _)| id.0),
                            &query.start_time_ms,
                            &query.end_time_ms,
                            &senders,
                            &kinds,
                            &user.as_str(),
                            &fetch,
                            &group,
                        ],
                    )
                    .await?,
            )
        })?;
        let anchor_missing = || {
            anchor.map(|(id, field)| {
                Error::NotFound(format!("{field}: message {id} is not in this conversation"))
            })
        };
        if !view_of(rows.first(), user, conversation)?.exists {
            // A PEER conversation that never started: nothing in it, not even the anchor.
            return match anchor_missing() {
                Some(e) => Err(e),
                None => Ok(Page {
                    after_seq: after.unwrap_or(query.direction.start()),
                    messages: Vec::new(),
                    is_end: true,
                }),
            };
        }
        let Some(after_seq) = rows[0].try_get::<_, Option<i64>>("page_after")? else {
            return Err(anchor_missing().unwrap_or_else(|| {
                Error::Internal("a page without an anchor answered no start".into())
            }));
        };
        // An empty page is one row without a message.
        let found = if rows[0].try_get::<_, Option<i64>>("seq")?.is_some() {
            rows.len()
        } else {
            0
        };
        let is_end = found as i64 <= i64::from(query.limit);
        // Every row has the message columns (NULL in an empty page's one row).
        let columns = rows::MessageColumns::of(&rows[0])?;
        let messages = rows
            .iter()
            .take(found.min(query.limit as usize))
            .map(|r| columns.read(conversation, r))
            .collect::<Result<_>>()?;
        Ok(Page {
            after_seq,
            messages,
            is_end,
        })
    }

    /// The buckets of `query` as `user` may see `conversation`. A range resolved through the
    /// newest seq that would need more than `max_buckets` buckets is `Invalid` (`to_seq`).
    pub async fn digest(
        &self,
        user: &UserId,
        conversation: &Conversation,
        query: DigestQuery,
    ) -> Result<Vec<Bucket>> {
        with_conn!(self, |client| {
            let view = view(&**client, user, conversation).await?;
            let to_seq = query.to_seq.unwrap_or(view.last_seq);
            if to_seq < query.from_seq {
                return Ok(Vec::new());
            }
            let n = (to_seq - query.from_seq) / query.bucket_size + 1;
            if n > query.max_buckets {
                return Err(roaming_domain::FieldError::new(
                    "to_seq",
                    format!(
                        "the range through the newest seq ({to_seq}) needs {n} buckets; at most \
                         {} per call",
                        query.max_buckets
                    ),
                )
                .into());
            }
            let mut buckets: Vec<Bucket> = (0..n)
                .map(|i| {
                    let from = query.from_seq + i * query.bucket_size;
                    Bucket {
                        from_seq: from,
                        to_seq: (from + query.bucket_size - 1).min(to_seq),
                        count: 0,
                        digest: EMPTY_DIGEST,
                    }
                })
                .collect();
            if !view.exists {
                return Ok(buckets);
            }
            let statement = client.prepare_cached(sql::DIGEST).await?;
            let rows = client
                .query(
                    &statement,
                    &[
                        &conversation.key(),
                        &query.from_seq,
                        &to_seq,
                        &query.bucket_size,
                        &view.floor,
                        &user.as_str(),
                    ],
                )
                .await?;
            for row in &rows {
                let index: i64 = row.try_get("bucket")?;
                let digest: Vec<u8> = row.try_get("digest")?;
                let bucket = usize::try_from(index)
                    .ok()
                    .and_then(|i| buckets.get_mut(i))
                    .ok_or_else(|| {
                        Error::Internal(format!("digest bucket {index} out of range"))
                    })?;
                bucket.count = row.try_get("count")?;
                bucket.digest.copy_from_slice(&digest[..16]);
            }
            Ok(buckets)
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
