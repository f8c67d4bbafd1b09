//! The local store: a device-style SQLite copy of fetched conversations and messages, with
//! the seq ranges known to be complete so that holes can be found and filled, and the sync
//! token of the change feed, written in the same transaction as what it applied.

use crate::error::Error;
use crate::events::{EVENT_BUFFER, StoreEvent};
use crate::types::{
    Conversation, ConversationChange, ConversationRef, ConversationType, DigestBucket, Direction,
    Message, ReadState,
};
use prost::Message as _;
use roaming_proto::common::v1 as pb;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use sha2::{Digest as _, Sha256};
use std::fmt;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::broadcast;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (
    conv_type      INTEGER NOT NULL,
    conv_id        TEXT    NOT NULL,
    seq            INTEGER NOT NULL,
    msg_id         TEXT    NOT NULL UNIQUE,
    server_time_ms INTEGER NOT NULL,
    raw            BLOB    NOT NULL,
    PRIMARY KEY (conv_type, conv_id, seq)
);
-- removals before a time
CREATE INDEX IF NOT EXISTS messages_by_time ON messages (conv_type, conv_id, server_time_ms);
-- One list entry per conversation, with the user's read state and organisation as the
-- server last reported them (list pages, sync changes, the user's own calls).
CREATE TABLE IF NOT EXISTS conversations (
    conv_type        INTEGER NOT NULL,
    conv_id          TEXT    NOT NULL,
    last_activity_ms INTEGER NOT NULL,
    last_message     BLOB,
    read_seq         INTEGER NOT NULL DEFAULT 0,
    unread_count     INTEGER NOT NULL DEFAULT 0,
    peer_read_seq    INTEGER NOT NULL DEFAULT 0,
    pinned_at_ms     INTEGER,          -- NULL: not pinned
    marks            TEXT    NOT NULL DEFAULT '', -- sorted, comma-separated
    PRIMARY KEY (conv_type, conv_id)
);
-- Seq ranges [lo, hi] of which every message visible to the user is stored locally.
CREATE TABLE IF NOT EXISTS spans (
    conv_type INTEGER NOT NULL,
    conv_id   TEXT    NOT NULL,
    lo        INTEGER NOT NULL,
    hi        INTEGER NOT NULL,
    PRIMARY KEY (conv_type, conv_id, lo)
);
-- Where the change feed stands: the token the next sync resumes from, and the user it was
-- made for (a store holds one user's copy). One row, written with what the token covers.
CREATE TABLE IF NOT EXISTS sync_state (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    user  TEXT,
    token TEXT NOT NULL
);
PRAGMA user_version = 3;
";

/// Columns added to `conversations` after version 2: a store made by an older client gains
/// them (with their defaults: nothing read, nothing pinned) when it is opened.
const READ_STATE_COLUMNS: [(&str, &str); 5] = [
    ("read_seq", "INTEGER NOT NULL DEFAULT 0"),
    ("unread_count", "INTEGER NOT NULL DEFAULT 0"),
    ("peer_read_seq", "INTEGER NOT NULL DEFAULT 0"),
    ("pinned_at_ms", "INTEGER"),
    ("marks", "TEXT NOT NULL DEFAULT ''"),
];

/// The entry columns, in the order [`entry_from_row`] reads them.
const ENTRY_COLUMNS: &str = "conv_type, conv_id, last_activity_ms, last_message, read_seq, \
     unread_count, peer_read_seq, pinned_at_ms, marks";

/// Reads one `conversations` row selected with [`ENTRY_COLUMNS`].
fn entry_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawEntry> {
    Ok(RawEntry {
        conv_type: r.get(0)?,
        conv_id: r.get(1)?,
        last_activity_ms: r.get(2)?,
        last_message: r.get(3)?,
        state: ReadState {
            read_seq: r.get(4)?,
            unread_count: r.get(5)?,
            peer_read_seq: r.get(6)?,
            pinned_at_ms: r.get(7)?,
            marks: split_marks(&r.get::<_, String>(8)?),
        },
    })
}

/// A `conversations` row before its message is decoded.
struct RawEntry {
    conv_type: i32,
    conv_id: String,
    last_activity_ms: i64,
    last_message: Option<Vec<u8>>,
    state: ReadState,
}

impl RawEntry {
    fn decode(self) -> Result<Conversation, Error> {
        Ok(Conversation {
            conversation: pb::ConversationRef {
                r#type: self.conv_type,
                id: self.conv_id,
            }
            .try_into()?,
            last_message: self.last_message.as_deref().map(decode).transpose()?,
            last_activity_ms: self.last_activity_ms,
            state: self.state,
        })
    }
}

// Marks are 1-32 characters of [A-Za-z0-9_.-], so a comma never occurs in one.
fn join_marks(marks: &[String]) -> String {
    marks.join(",")
}

fn split_marks(joined: &str) -> Vec<String> {
    joined
        .split(',')
        .filter(|m| !m.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Writes a whole list entry (replacing the stored one).
fn write_entry(tx: &Transaction<'_>, c: &Conversation) -> Result<(), Error> {
    let (t, id) = key(&c.conversation);
    tx.execute(
        "INSERT OR REPLACE INTO conversations (conv_type, conv_id, last_activity_ms, last_message,
             read_seq, unread_count, peer_read_seq, pinned_at_ms, marks)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            t,
            id,
            c.last_activity_ms,
            c.last_message.as_ref().map(encode),
            c.state.read_seq,
            c.state.unread_count,
            c.state.peer_read_seq,
            c.state.pinned_at_ms,
            join_marks(&c.state.marks),
        ],
    )?;
    Ok(())
}

/// The stored entry of a conversation, if any.
fn read_entry(
    conn: &Connection,
    conversation: &ConversationRef,
) -> Result<Option<Conversation>, Error> {
    let (t, id) = key(conversation);
    conn.query_row(
        &format!("SELECT {ENTRY_COLUMNS} FROM conversations WHERE conv_type = ?1 AND conv_id = ?2"),
        params![t, id],
        entry_from_row,
    )
    .optional()?
    .map(RawEntry::decode)
    .transpose()
}

/// How to read a page of local history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalQuery {
    /// Newest first (default) or oldest first.
    pub direction: Direction,
    /// Exclusive anchor: start right after this message in `direction`; `None`: from the end.
    pub start_msg_id: Option<String>,
    /// At most this many messages (default 20).
    pub limit: usize,
}

impl Default for LocalQuery {
    fn default() -> Self {
        Self {
            direction: Direction::Backward,
            start_msg_id: None,
            limit: 20,
        }
    }
}

/// A local copy of one user's conversations and messages in SQLite, as the original SDK keeps
/// on a device. Cheap to clone (clones share the connection).
///
/// Reads work offline. Its methods block on SQLite for a short while; the [`Client`]'s
/// local methods run them on tokio's blocking pool.
///
/// [`Client::sync`] keeps it a mirror of the user's PEER and GROUP conversations (its token
/// is stored here, see [`LocalStore::sync_token`]); [`LocalStore::subscribe`] announces what
/// a sync or a verify changed.
///
/// [`Client`]: crate::Client
/// [`Client::sync`]: crate::Client::sync
#[derive(Clone)]
pub struct LocalStore {
    conn: Arc<Mutex<Connection>>,
    path: Option<PathBuf>,
    events: broadcast::Sender<StoreEvent>,
    /// Held by a sync or a verify of this store (and its clones) from start to end.
    pub(crate) exclusive: Arc<tokio::sync::Mutex<()>>,
}

impl fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalStore")
            .field("path", &self.path)
            .finish()
    }
}

fn key(c: &ConversationRef) -> (i32, &str) {
    (c.kind.to_proto() as i32, c.id.as_str())
}

fn encode(m: &Message) -> Vec<u8> {
    m.to_proto().encode_to_vec()
}

fn decode(raw: &[u8]) -> Result<Message, Error> {
    let m = pb::Message::decode(raw).map_err(|e| Error::LocalStore(e.to_string()))?;
    Message::try_from(m)
}

impl LocalStore {
    /// Opens (creating if needed) the store in the SQLite file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let conn = Connection::open(path.as_ref())?;
        Self::init(conn, Some(path.as_ref().to_owned()))
    }

    /// A store that lives in memory only, for as long as a clone of it does.
    pub fn in_memory() -> Result<Self, Error> {
        Self::init(Connection::open_in_memory()?, None)
    }

    fn init(conn: Connection, path: Option<PathBuf>) -> Result<Self, Error> {
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")?;
        conn.execute_batch(SCHEMA)?;
        let present: Vec<String> = conn
            .prepare("SELECT name FROM pragma_table_info('conversations')")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        for (column, definition) in READ_STATE_COLUMNS {
            if !present.iter().any(|p| p == column) {
                conn.execute_batch(&format!(
                    "ALTER TABLE conversations ADD COLUMN {column} {definition}"
                ))?;
            }
        }
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path,
            events: broadcast::channel(EVENT_BUFFER).0,
            exclusive: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// Receives every [`StoreEvent`] sent after this call, once it is committed. A receiver
    /// that falls more than [`EVENT_BUFFER`] events behind gets `Lagged` and then the newer
    /// ones: reload from the store in that case.
    pub fn subscribe(&self) -> broadcast::Receiver<StoreEvent> {
        self.events.subscribe()
    }

    /// The token the next [`Client::sync`](crate::Client::sync) resumes from: `None` before
    /// the first page of a first sync is applied.
    pub fn sync_token(&self) -> Result<Option<String>, Error> {
        Ok(self.sync_state()?.1)
    }

    /// The user whose sync token this store holds (`None` before the first sync, or when the
    /// syncing client's user could not be told from its credentials).
    pub fn owner(&self) -> Result<Option<String>, Error> {
        Ok(self.sync_state()?.0)
    }

    /// `(owner, token)`.
    pub(crate) fn sync_state(&self) -> Result<(Option<String>, Option<String>), Error> {
        let row: Option<(Option<String>, String)> = self
            .lock()
            .query_row("SELECT user, token FROM sync_state WHERE id = 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        Ok(match row {
            Some((user, token)) => (user, Some(token)),
            None => (None, None),
        })
    }

    /// The file this store lives in (`None` in memory).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll back).
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` in one SQLite transaction, committed when it returns `Ok` (a write path's
    /// frame: lock, begin, work, commit).
    fn in_transaction<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let value = f(&tx)?;
        tx.commit()?;
        Ok(value)
    }

    /// Runs `f` on tokio's blocking pool.
    pub(crate) async fn call<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&LocalStore) -> Result<T, Error> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| Error::LocalStore(e.to_string()))?
    }

    /// Saves messages (replacing stored copies) and brings their conversations' entries up to
    /// date, creating them when missing.
    pub fn save_messages(&self, messages: &[Message]) -> Result<(), Error> {
        self.in_transaction(|tx| {
            for m in messages {
                write_message(tx, m)?;
                touch_conversation(tx, m)?;
            }
            Ok(())
        })
    }

    /// Every conversation the store holds anything of (a list entry, messages or complete
    /// ranges), in order.
    pub fn stored_conversations(&self) -> Result<Vec<ConversationRef>, Error> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT conv_type, conv_id FROM conversations
             UNION SELECT conv_type, conv_id FROM messages
             UNION SELECT conv_type, conv_id FROM spans
             ORDER BY 1, 2",
        )?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, i32>(0)?, r.get::<_, String>(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(t, id)| ConversationRef::try_from(pb::ConversationRef { r#type: t, id }))
            .collect()
    }

    /// Saves conversation-list entries (replacing stored ones), and their last messages.
    pub fn save_conversations(&self, conversations: &[Conversation]) -> Result<(), Error> {
        self.in_transaction(|tx| {
            for c in conversations {
                write_entry(tx, c)?;
                if let Some(m) = &c.last_message {
                    write_message(tx, m)?;
                }
            }
            Ok(())
        })
    }

    /// Every local conversation, most recently active first (ties by conversation).
    pub fn conversations(&self) -> Result<Vec<Conversation>, Error> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT {ENTRY_COLUMNS} FROM conversations
             ORDER BY last_activity_ms DESC, conv_type, conv_id"
        ))?;
        let rows = stmt.query_map([], entry_from_row)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row?.decode()?);
        }
        Ok(out)
    }

    /// The local pinned conversations, most recently pinned first (as the server's
    /// `pinned_only` list orders them).
    pub fn pinned_conversations(&self) -> Result<Vec<Conversation>, Error> {
        let mut pinned: Vec<Conversation> = self
            .conversations()?
            .into_iter()
            .filter(|c| c.state.pinned())
            .collect();
        // Stable: ties keep the activity order.
        pinned.sort_by_key(|c| std::cmp::Reverse(c.state.pinned_at_ms));
        Ok(pinned)
    }

    /// The local entry of one conversation.
    pub fn conversation(
        &self,
        conversation: &ConversationRef,
    ) -> Result<Option<Conversation>, Error> {
        read_entry(&self.lock(), conversation)
    }

    /// Changes the read state of a stored entry (nothing when the store holds no entry of the
    /// conversation): the mirror of the user's own MarkRead, PinConversation or
    /// MarkConversation, so it announces nothing (see [`StoreEvent`]).
    pub(crate) fn update_state(
        &self,
        conversation: &ConversationRef,
        change: impl FnOnce(&mut ReadState),
    ) -> Result<(), Error> {
        self.in_transaction(|tx| {
            let Some(mut entry) = read_entry(tx, conversation)? else {
                return Ok(());
            };
            change(&mut entry.state);
            write_entry(tx, &entry)?;
            Ok(())
        })
    }

    /// Deletes a message recalled by its sender (the mirror of the caller's own
    /// RecallMessage); the entry's last message falls back to the newest one left.
    pub fn recall_message(
        &self,
        conversation: &ConversationRef,
        msg_id: &str,
    ) -> Result<(), Error> {
        self.remove_messages(conversation, &[msg_id.to_owned()])
    }

    /// Replaces the held copy of an edited message (and the entry's last message when it is
    /// that one) by `message`, when it is newer than what is held; a message the store does
    /// not hold stays out.
    pub fn save_edit(&self, message: &Message) -> Result<(), Error> {
        self.in_transaction(|tx| {
            if apply_edit(tx, message)? {
                replace_last_message(tx, message)?;
            }
            Ok(())
        })
    }

    /// One page of a conversation's local history.
    pub fn history(
        &self,
        conversation: &ConversationRef,
        query: &LocalQuery,
    ) -> Result<Vec<Message>, Error> {
        let (t, id) = key(conversation);
        let anchor = match &query.start_msg_id {
            Some(msg_id) => self.seq_of(conversation, msg_id)?.ok_or_else(|| {
                Error::NotFound(format!("message {msg_id} is not in the local store"))
            })?,
            None if query.direction == Direction::Backward => i64::MAX,
            None => i64::MIN,
        };
        let sql = match query.direction {
            Direction::Backward => {
                "SELECT raw FROM messages WHERE conv_type = ?1 AND conv_id = ?2 AND seq < ?3
                 ORDER BY seq DESC LIMIT ?4"
            }
            Direction::Forward => {
                "SELECT raw FROM messages WHERE conv_type = ?1 AND conv_id = ?2 AND seq > ?3
                 ORDER BY seq ASC LIMIT ?4"
            }
        };
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        let conn = self.lock();
        let mut stmt = conn.prepare(sql)?;
        let raws = stmt
            .query_map(params![t, id, anchor, limit], |r| r.get::<_, Vec<u8>>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        raws.iter().map(|raw| decode(raw)).collect()
    }

    /// A stored message by id.
    pub fn message(&self, msg_id: &str) -> Result<Option<Message>, Error> {
        let conn = self.lock();
        let raw: Option<Vec<u8>> = conn
            .query_row(
                "SELECT raw FROM messages WHERE msg_id = ?1",
                [msg_id],
                |r| r.get(0),
            )
            .optional()?;
        raw.as_deref().map(decode).transpose()
    }

    /// The seq of a stored message of `conversation`.
    pub(crate) fn seq_of(
        &self,
        conversation: &ConversationRef,
        msg_id: &str,
    ) -> Result<Option<i64>, Error> {
        let (t, id) = key(conversation);
        Ok(self
            .lock()
            .query_row(
                "SELECT seq FROM messages WHERE conv_type = ?1 AND conv_id = ?2 AND msg_id = ?3",
                params![t, id, msg_id],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Deletes a conversation locally only (the server keeps it): its list entry and, with
    /// `with_messages`, its local messages.
    pub fn delete_conversation(
        &self,
        conversation: &ConversationRef,
        with_messages: bool,
    ) -> Result<(), Error> {
        let (t, id) = key(conversation);
        self.in_transaction(|tx| {
            tx.execute(
                "DELETE FROM conversations WHERE conv_type = ?1 AND conv_id = ?2",
                params![t, id],
            )?;
            if with_messages {
                tx.execute(
                    "DELETE FROM messages WHERE conv_type = ?1 AND conv_id = ?2",
                    params![t, id],
                )?;
                tx.execute(
                    "DELETE FROM spans WHERE conv_type = ?1 AND conv_id = ?2",
                    params![t, id],
                )?;
            }
            Ok(())
        })
    }

    /// Deletes messages by id locally (the mirror of a one-way removal).
    pub fn remove_messages(
        &self,
        conversation: &ConversationRef,
        msg_ids: &[String],
    ) -> Result<(), Error> {
        let (t, id) = key(conversation);
        self.in_transaction(|tx| {
            for msg_id in msg_ids {
                tx.execute(
                    "DELETE FROM messages WHERE conv_type = ?1 AND conv_id = ?2 AND msg_id = ?3",
                    params![t, id, msg_id],
                )?;
            }
            refresh_last_message(tx, t, id)?;
            Ok(())
        })
    }

    /// Deletes every local message stored at or before `before_time_ms` (the mirror of a
    /// one-way removal by time).
    pub fn remove_messages_before(
        &self,
        conversation: &ConversationRef,
        before_time_ms: i64,
    ) -> Result<(), Error> {
        let (t, id) = key(conversation);
        self.in_transaction(|tx| {
            tx.execute(
                "DELETE FROM messages WHERE conv_type = ?1 AND conv_id = ?2 AND server_time_ms <= ?3",
                params![t, id, before_time_ms],
            )?;
            refresh_last_message(tx, t, id)?;
            Ok(())
        })
    }

    /// Records that every message visible to the user with a seq in `lo..=hi` is stored.
    pub(crate) fn cover(
        &self,
        conversation: &ConversationRef,
        lo: i64,
        hi: i64,
    ) -> Result<(), Error> {
        if lo > hi {
            return Ok(());
        }
        let (t, id) = key(conversation);
        self.in_transaction(|tx| {
            cover_in(tx, t, id, lo, hi)?;
            Ok(())
        })
    }

    /// The seq ranges known to be complete locally, in order.
    pub fn complete_ranges(
        &self,
        conversation: &ConversationRef,
    ) -> Result<Vec<RangeInclusive<i64>>, Error> {
        let (t, id) = key(conversation);
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT lo, hi FROM spans WHERE conv_type = ?1 AND conv_id = ?2 ORDER BY lo",
        )?;
        let spans = stmt
            .query_map(params![t, id], |r| {
                Ok(r.get::<_, i64>(0)?..=r.get::<_, i64>(1)?)
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(spans)
    }

    /// The holes of the local copy: seq ranges between two complete ranges, whose messages
    /// the next fetch through the client brings from the server.
    pub fn gaps(&self, conversation: &ConversationRef) -> Result<Vec<RangeInclusive<i64>>, Error> {
        let spans = self.complete_ranges(conversation)?;
        Ok(spans
            .windows(2)
            .map(|w| (*w[0].end() + 1)..=(*w[1].start() - 1))
            .collect())
    }

    /// The stored messages closest to a hole: the newest at or below `below`, the oldest at
    /// or above `above`.
    pub(crate) fn neighbours(
        &self,
        conversation: &ConversationRef,
        below: i64,
        above: i64,
    ) -> Result<(Option<Message>, Option<Message>), Error> {
        let (t, id) = key(conversation);
        let conn = self.lock();
        let one = |sql: &str, seq: i64| -> Result<Option<Message>, Error> {
            let raw: Option<Vec<u8>> = conn
                .query_row(sql, params![t, id, seq], |r| r.get(0))
                .optional()?;
            raw.as_deref().map(decode).transpose()
        };
        let lower = one(
            "SELECT raw FROM messages WHERE conv_type = ?1 AND conv_id = ?2 AND seq <= ?3
             ORDER BY seq DESC LIMIT 1",
            below,
        )?;
        let upper = one(
            "SELECT raw FROM messages WHERE conv_type = ?1 AND conv_id = ?2 AND seq >= ?3
             ORDER BY seq ASC LIMIT 1",
            above,
        )?;
        Ok((lower, upper))
    }
}

/// Where a held conversation's local copy stands, for a sync to complete it: the holes
/// between its complete ranges, and the top of the highest one.
pub(crate) struct SyncPlan {
    /// Each hole `(lo, hi)` with the stored messages around it (newest at or below `lo - 1`,
    /// oldest at or above `hi + 1`).
    pub holes: Vec<(i64, i64, Option<Message>, Option<Message>)>,
    /// The highest complete seq.
    pub top: i64,
    /// The newest stored message at or below `top`: the forward read's anchor.
    pub anchor: Option<Message>,
}

/// One change of a sync page, with what the sync fetched for it.
pub(crate) struct SyncedChange {
    pub change: ConversationChange,
    /// Messages fetched after the page was read (forward from the top, or into holes).
    pub fetched: Vec<Message>,
    /// Seq ranges the fetches proved complete.
    pub covers: Vec<(i64, i64)>,
}

/// One sync page to apply in one transaction.
pub(crate) struct SyncPageUpdate {
    pub changes: Vec<SyncedChange>,
    /// The page's `next_sync_token`.
    pub token: String,
    /// The user the token belongs to, when known.
    pub user: Option<String>,
    /// `Some(rebuilt)`: the first page of a snapshot, which replaces the mirror of PEER and
    /// GROUP conversations.
    pub reset: Option<bool>,
}

/// What applying one page changed locally.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Applied {
    pub updated: usize,
    pub removed_conversations: usize,
    pub received: usize,
    pub removed_messages: usize,
}

/// The conversation types the change feed covers (chatrooms are not synced).
const SYNCED_TYPES: [ConversationType; 2] = [ConversationType::Peer, ConversationType::Group];

impl LocalStore {
    /// How to complete a conversation's local copy: `None` when the store holds no complete
    /// range of it (then a sync keeps only its list entry and last message).
    pub(crate) fn sync_plan(
        &self,
        conversation: &ConversationRef,
    ) -> Result<Option<SyncPlan>, Error> {
        let spans = self.complete_ranges(conversation)?;
        let Some(top) = spans.last().map(|s| *s.end()) else {
            return Ok(None);
        };
        let mut holes = Vec::new();
        for w in spans.windows(2) {
            let (lo, hi) = (*w[0].end() + 1, *w[1].start() - 1);
            let (lower, upper) = self.neighbours(conversation, lo - 1, hi + 1)?;
            holes.push((lo, hi, lower, upper));
        }
        let (anchor, _) = self.neighbours(conversation, top, i64::MAX)?;
        Ok(Some(SyncPlan { holes, top, anchor }))
    }

    /// Applies one sync page and stores its token, all in one transaction (a crash leaves the
    /// store at the previous page's token with the previous page's data, or at this one's
    /// with all of it), then announces what changed.
    pub(crate) fn apply_sync_page(&self, page: SyncPageUpdate) -> Result<Applied, Error> {
        let mut events = Vec::new();
        let mut applied = Applied::default();
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        if let Some(rebuilt) = page.reset {
            let mut had = false;
            for kind in SYNCED_TYPES {
                let t = kind.to_proto() as i32;
                for table in ["messages", "conversations", "spans"] {
                    had |=
                        tx.execute(&format!("DELETE FROM {table} WHERE conv_type = ?1"), [t])? > 0;
                }
            }
            if had {
                events.push(StoreEvent::MirrorReset { rebuilt });
            }
        }
        for synced in page.changes {
            apply_change(&tx, synced, &mut events, &mut applied)?;
        }
        tx.execute(
            "INSERT INTO sync_state (id, user, token) VALUES (1, ?1, ?2)
             ON CONFLICT (id) DO UPDATE SET user = excluded.user, token = excluded.token",
            params![page.user, page.token],
        )?;
        tx.commit()?;
        drop(conn);
        self.announce(events);
        Ok(applied)
    }

    fn announce(&self, events: Vec<StoreEvent>) {
        for event in events {
            // No subscriber is not an error.
            let _ = self.events.send(event);
        }
    }

    /// The seq range the store holds of a conversation: from its lowest stored message or
    /// complete seq to its highest. `None` when it holds nothing of it.
    pub(crate) fn held_range(
        &self,
        conversation: &ConversationRef,
    ) -> Result<Option<(i64, i64)>, Error> {
        let (t, id) = key(conversation);
        let (lo, hi): (Option<i64>, Option<i64>) = self.lock().query_row(
            "SELECT min(lo), max(hi) FROM (
                 SELECT lo, hi FROM spans WHERE conv_type = ?1 AND conv_id = ?2
                 UNION ALL
                 SELECT seq, seq FROM messages WHERE conv_type = ?1 AND conv_id = ?2)",
            params![t, id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(lo.zip(hi))
    }

    /// The buckets of `bucket_size` seqs covering `from_seq..=to_seq` of the local copy,
    /// with the count and the digest `DigestHistory` computes over the server's (the last
    /// bucket possibly shorter). Compare them to the server's to find what differs; see
    /// [`Client::verify`](crate::Client::verify).
    pub fn digest(
        &self,
        conversation: &ConversationRef,
        from_seq: i64,
        to_seq: i64,
        bucket_size: i64,
    ) -> Result<Vec<DigestBucket>, Error> {
        if bucket_size < 1 {
            return Err(Error::InvalidArgument(
                "bucket_size must be at least 1".into(),
            ));
        }
        let (t, id) = key(conversation);
        let local: Vec<Message> = {
            let conn = self.lock();
            let mut stmt = conn.prepare(
                "SELECT raw FROM messages WHERE conv_type = ?1 AND conv_id = ?2
                 AND seq BETWEEN ?3 AND ?4 ORDER BY seq",
            )?;
            let raws = stmt
                .query_map(params![t, id, from_seq, to_seq], |r| r.get::<_, Vec<u8>>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            raws.iter()
                .map(|raw| decode(raw))
                .collect::<Result<_, _>>()?
        };
        let mut buckets = Vec::new();
        let mut from = from_seq.max(1);
        while from <= to_seq {
            let to = from.saturating_add(bucket_size - 1).min(to_seq);
            let inside: Vec<&Message> = local
                .iter()
                .filter(|m| (from..=to).contains(&m.seq))
                .collect();
            buckets.push(DigestBucket {
                from_seq: from,
                to_seq: to,
                count: inside.len() as i64,
                digest: digest_of(inside.iter().map(|m| {
                    // A stored id that is not a number cannot match the server's.
                    (m.seq, m.msg_id.parse::<i64>().unwrap_or(-1), m.edit_version)
                })),
            });
            from = match to.checked_add(1) {
                Some(next) => next,
                None => break,
            };
        }
        Ok(buckets)
    }

    /// Replaces the local messages of `from_seq..=to_seq` with `messages` (the server's),
    /// brings the list entry's last message up to date if it lies in the range, and
    /// announces it.
    pub(crate) fn replace_range(
        &self,
        conversation: &ConversationRef,
        from_seq: i64,
        to_seq: i64,
        messages: &[Message],
    ) -> Result<(), Error> {
        let (t, id) = key(conversation);
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        tx.execute(
            "DELETE FROM messages WHERE conv_type = ?1 AND conv_id = ?2 AND seq BETWEEN ?3 AND ?4",
            params![t, id, from_seq, to_seq],
        )?;
        // The range was just emptied: nothing to read back before writing.
        for m in messages {
            write_message(&tx, m)?;
        }
        let last_seq = last_message(&tx, conversation)?.map(|m| m.seq);
        if let Some(m) = messages.iter().find(|m| Some(m.seq) == last_seq) {
            set_last_message(&tx, m)?;
        }
        tx.commit()?;
        drop(conn);
        self.announce(vec![StoreEvent::MessagesReplaced {
            conversation: conversation.clone(),
            from_seq,
            to_seq,
        }]);
        Ok(())
    }
}

/// The list entry's last message of `conversation`, if it has an entry with one.
fn last_message(
    tx: &Transaction<'_>,
    conversation: &ConversationRef,
) -> Result<Option<Message>, Error> {
    let (t, id) = key(conversation);
    let last: Option<Option<Vec<u8>>> = tx
        .query_row(
            "SELECT last_message FROM conversations WHERE conv_type = ?1 AND conv_id = ?2",
            params![t, id],
            |r| r.get(0),
        )
        .optional()?;
    last.flatten().as_deref().map(decode).transpose()
}

/// Makes `m` its entry's last message (the caller checked it is the same seq: a newer copy).
fn set_last_message(tx: &Transaction<'_>, m: &Message) -> Result<(), Error> {
    let (t, id) = key(&m.conversation);
    tx.execute(
        "UPDATE conversations SET last_message = ?3 WHERE conv_type = ?1 AND conv_id = ?2",
        params![t, id, encode(m)],
    )?;
    Ok(())
}

/// Makes `m` the entry's last message when the entry's is the same seq (a newer copy of it).
fn replace_last_message(tx: &Transaction<'_>, m: &Message) -> Result<(), Error> {
    if last_message(tx, &m.conversation)?.is_some_and(|last| last.seq == m.seq) {
        set_last_message(tx, m)?;
    }
    Ok(())
}

/// Writes (inserts or replaces) a message in `tx`: the one statement every path stores
/// messages with.
fn write_message(tx: &Transaction<'_>, m: &Message) -> Result<(), Error> {
    let (t, id) = key(&m.conversation);
    tx.execute(
        "INSERT OR REPLACE INTO messages (conv_type, conv_id, seq, msg_id, server_time_ms, raw)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![t, id, m.seq, m.msg_id, m.server_time_ms, encode(m)],
    )?;
    Ok(())
}

/// Replaces the held copy of `m` (found by its msg_id) with `m` when `m` is a newer edit;
/// returns whether it did. A message the store does not hold stays out, and an older version
/// (a repeated change may carry one) never replaces a newer.
fn apply_edit(tx: &Transaction<'_>, m: &Message) -> Result<bool, Error> {
    let (t, id) = key(&m.conversation);
    let held: Option<Vec<u8>> = tx
        .query_row(
            "SELECT raw FROM messages WHERE conv_type = ?1 AND conv_id = ?2 AND msg_id = ?3",
            params![t, id, m.msg_id],
            |r| r.get(0),
        )
        .optional()?;
    match held.as_deref().map(decode).transpose()? {
        Some(held) if held.edit_version < m.edit_version => {
            write_message(tx, m)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Writes a message in `tx` as [`write_message`] does; returns the stored copy it replaced,
/// if any.
fn insert_message(tx: &Transaction<'_>, m: &Message) -> Result<Option<Message>, Error> {
    let (t, id) = key(&m.conversation);
    let old: Option<Vec<u8>> = tx
        .query_row(
            "SELECT raw FROM messages WHERE conv_type = ?1 AND conv_id = ?2 AND seq = ?3",
            params![t, id, m.seq],
            |r| r.get(0),
        )
        .optional()?;
    write_message(tx, m)?;
    old.as_deref().map(decode).transpose()
}

/// Applies one change in `tx` (idempotent: applying it again changes nothing and announces
/// nothing).
fn apply_change(
    tx: &Transaction<'_>,
    synced: SyncedChange,
    events: &mut Vec<StoreEvent>,
    applied: &mut Applied,
) -> Result<(), Error> {
    let SyncedChange {
        change,
        fetched,
        covers,
    } = synced;
    let conversation = change.conversation.clone();
    let (t, id) = key(&conversation);
    if !change.listed {
        let mut gone = 0;
        for table in ["messages", "conversations", "spans"] {
            gone += tx.execute(
                &format!("DELETE FROM {table} WHERE conv_type = ?1 AND conv_id = ?2"),
                params![t, id],
            )?;
        }
        if gone > 0 {
            applied.removed_conversations += 1;
            events.push(StoreEvent::ConversationRemoved(conversation));
        }
        return Ok(());
    }
    let last = change.last_message.clone().ok_or_else(|| {
        Error::InvalidResponse(format!("listed {conversation} without a last message"))
    })?;

    // What the server hides now: every seq at or below the watermark, and the removed ids.
    let mut removed: Vec<(i64, String)> = {
        let mut stmt = tx.prepare(
            "SELECT seq, msg_id FROM messages WHERE conv_type = ?1 AND conv_id = ?2 AND seq <= ?3",
        )?;
        stmt.query_map(params![t, id, change.hidden_through_seq], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?
    };
    tx.execute(
        "DELETE FROM messages WHERE conv_type = ?1 AND conv_id = ?2 AND seq <= ?3",
        params![t, id, change.hidden_through_seq],
    )?;
    for msg_id in &change.removed_msg_ids {
        let seq: Option<i64> = tx
            .query_row(
                "DELETE FROM messages WHERE conv_type = ?1 AND conv_id = ?2 AND msg_id = ?3
                 RETURNING seq",
                params![t, id, msg_id],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(seq) = seq {
            removed.push((seq, msg_id.clone()));
        }
    }
    // Recalled for everybody: gone, like a removal.
    let mut recalled = Vec::new();
    for msg_id in &change.recalled_msg_ids {
        let gone = tx.execute(
            "DELETE FROM messages WHERE conv_type = ?1 AND conv_id = ?2 AND msg_id = ?3",
            params![t, id, msg_id],
        )?;
        if gone > 0 {
            recalled.push(msg_id.clone());
        }
    }
    if !recalled.is_empty() {
        applied.removed_messages += recalled.len();
        events.push(StoreEvent::MessagesRecalled {
            conversation: conversation.clone(),
            msg_ids: recalled,
        });
    }
    // Edited: the held copy is replaced by the current content (never an older version,
    // since a repeated change may carry one; messages the device does not hold stay out).
    let mut edited = Vec::new();
    for m in &change.edited_messages {
        if apply_edit(tx, m)? {
            edited.push(m.clone());
        }
    }
    if !edited.is_empty() {
        edited.sort_by_key(|m| m.seq);
        events.push(StoreEvent::MessagesEdited {
            conversation: conversation.clone(),
            messages: edited,
        });
    }
    if !removed.is_empty() {
        removed.sort();
        applied.removed_messages += removed.len();
        events.push(StoreEvent::MessagesRemoved {
            conversation: conversation.clone(),
            msg_ids: removed.into_iter().map(|(_, id)| id).collect(),
        });
    }

    // What the server shows now: the fetched messages and the last message.
    let mut received = Vec::new();
    for m in fetched.iter().chain(std::iter::once(&last)) {
        if insert_message(tx, m)?.as_ref() != Some(m) && !received.contains(m) {
            received.push(m.clone());
        }
    }
    if !received.is_empty() {
        received.sort_by_key(|m| m.seq);
        applied.received += received.len();
        events.push(StoreEvent::MessagesReceived {
            conversation: conversation.clone(),
            messages: received,
        });
    }

    // The list entry: the change's, moved forward to a newer message fetched after it.
    let old = read_entry(tx, &conversation)?;
    let newest = fetched
        .iter()
        .filter(|m| m.seq > last.seq)
        .max_by_key(|m| m.seq)
        .unwrap_or(&last);
    let entry = Conversation {
        conversation: conversation.clone(),
        last_message: Some(newest.clone()),
        last_activity_ms: change.last_activity_ms.max(newest.server_time_ms),
        state: change.state.clone(),
    };
    write_entry(tx, &entry)?;
    if old.as_ref() != Some(&entry) {
        applied.updated += 1;
        events.push(StoreEvent::ConversationUpdated(Box::new(entry)));
    }

    // Between the last message and the newest seq nothing is visible: complete.
    cover_in(tx, t, id, last.seq, change.last_seq)?;
    for (lo, hi) in covers {
        cover_in(tx, t, id, lo, hi)?;
    }
    Ok(())
}

/// The contract's digest of `(seq, msg_id, edit_version)` triples in seq order.
pub(crate) fn digest_of(items: impl IntoIterator<Item = (i64, i64, u32)>) -> String {
    let mut hasher = Sha256::new();
    for (seq, msg_id, edit_version) in items {
        hasher.update(seq.to_be_bytes());
        hasher.update(msg_id.to_be_bytes());
        hasher.update(edit_version.to_be_bytes());
    }
    hasher.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Creates the conversation's entry if missing, and moves its last message forward when `m`
/// is newer.
fn touch_conversation(tx: &rusqlite::Transaction<'_>, m: &Message) -> Result<(), Error> {
    let (t, id) = key(&m.conversation);
    let current: Option<Option<Vec<u8>>> = tx
        .query_row(
            "SELECT last_message FROM conversations WHERE conv_type = ?1 AND conv_id = ?2",
            params![t, id],
            |r| r.get(0),
        )
        .optional()?;
    let newer = match &current {
        None | Some(None) => true,
        Some(Some(raw)) => decode(raw)?.seq < m.seq,
    };
    if newer {
        tx.execute(
            "INSERT INTO conversations (conv_type, conv_id, last_activity_ms, last_message)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (conv_type, conv_id) DO UPDATE SET
                 last_activity_ms = max(last_activity_ms, excluded.last_activity_ms),
                 last_message = excluded.last_message",
            params![t, id, m.server_time_ms, encode(m)],
        )?;
    }
    Ok(())
}

/// After a local removal: if the entry's last message is gone, the newest remaining local
/// message takes its place (none when nothing remains).
fn refresh_last_message(tx: &rusqlite::Transaction<'_>, t: i32, id: &str) -> Result<(), Error> {
    let current: Option<Option<Vec<u8>>> = tx
        .query_row(
            "SELECT last_message FROM conversations WHERE conv_type = ?1 AND conv_id = ?2",
            params![t, id],
            |r| r.get(0),
        )
        .optional()?;
    let Some(Some(raw)) = current else {
        return Ok(());
    };
    let last = decode(&raw)?;
    let still_there: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM messages WHERE msg_id = ?1)",
        [&last.msg_id],
        |r| r.get(0),
    )?;
    if !still_there {
        let newest: Option<Vec<u8>> = tx
            .query_row(
                "SELECT raw FROM messages WHERE conv_type = ?1 AND conv_id = ?2
                 ORDER BY seq DESC LIMIT 1",
                params![t, id],
                |r| r.get(0),
            )
            .optional()?;
        tx.execute(
            "UPDATE conversations SET last_message = ?3 WHERE conv_type = ?1 AND conv_id = ?2",
            params![t, id, newest],
        )?;
    }
    Ok(())
}

/// Records in `tx` that every message visible to the user with a seq in `lo..=hi` of
/// conversation `(t, id)` is stored, merging the ranges it touches.
fn cover_in(tx: &Transaction<'_>, t: i32, id: &str, lo: i64, hi: i64) -> Result<(), Error> {
    if lo > hi {
        return Ok(());
    }
    let (lo, hi) = {
        let mut stmt = tx.prepare(
            "SELECT lo, hi FROM spans WHERE conv_type = ?1 AND conv_id = ?2
                 AND lo <= ?4 + 1 AND hi >= ?3 - 1",
        )?;
        let touching = stmt
            .query_map(params![t, id, lo, hi], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        touching
            .iter()
            .fold((lo, hi), |(l, h), (a, b)| (l.min(*a), h.max(*b)))
    };
    tx.execute(
        "DELETE FROM spans WHERE conv_type = ?1 AND conv_id = ?2 AND lo <= ?4 + 1 AND hi >= ?3 - 1",
        params![t, id, lo, hi],
    )?;
    tx.execute(
        "INSERT INTO spans (conv_type, conv_id, lo, hi) VALUES (?1, ?2, ?3, ?4)",
        params![t, id, lo, hi],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::MessageType;

    fn msg(seq: i64) -> Message {
        Message {
            msg_id: format!("{}", 1000 + seq),
            conversation: ConversationRef::peer("bob"),
            seq,
            sender: "alice".into(),
            recipient: "bob".into(),
            kind: MessageType::Text,
            body: format!("m{seq}").into_bytes(),
            attributes: [("k".to_owned(), "v".to_owned())].into(),
            server_time_ms: 10 * seq,
            client_msg_id: format!("c{seq}"),
            edit_version: 0,
            edited_at_ms: 0,
        }
    }

    #[test]
    fn spans_merge_when_they_touch_and_leave_holes_otherwise() {
        let store = LocalStore::in_memory().unwrap();
        let bob = ConversationRef::peer("bob");
        store.cover(&bob, 1, 5).unwrap();
        store.cover(&bob, 9, 12).unwrap();
        assert_eq!(store.gaps(&bob).unwrap(), vec![6..=8]);
        store.cover(&bob, 6, 6).unwrap();
        assert_eq!(store.complete_ranges(&bob).unwrap(), vec![1..=6, 9..=12]);
        store.cover(&bob, 5, 9).unwrap();
        assert_eq!(store.complete_ranges(&bob).unwrap(), vec![1..=12]);
        assert!(store.gaps(&bob).unwrap().is_empty());
    }

    #[test]
    fn messages_round_trip_and_page_both_ways() {
        let store = LocalStore::in_memory().unwrap();
        let bob = ConversationRef::peer("bob");
        let all: Vec<_> = (1..=5).map(msg).collect();
        store.save_messages(&all).unwrap();
        assert_eq!(store.message("1003").unwrap(), Some(msg(3)));
        let back = store.history(
            &bob,
            &LocalQuery {
                limit: 2,
                ..Default::default()
            },
        );
        assert_eq!(back.unwrap(), vec![msg(5), msg(4)]);
        let fwd = store.history(
            &bob,
            &LocalQuery {
                direction: Direction::Forward,
                start_msg_id: Some("1002".into()),
                limit: 10,
            },
        );
        assert_eq!(fwd.unwrap(), vec![msg(3), msg(4), msg(5)]);
        let list = store.conversations().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].last_message, Some(msg(5)));
        store.remove_messages(&bob, &["1005".into()]).unwrap();
        assert_eq!(store.conversations().unwrap()[0].last_message, Some(msg(4)));
    }
}
