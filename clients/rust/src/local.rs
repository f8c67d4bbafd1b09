//! The local store: a device-style SQLite copy of fetched conversations and messages, with
//! the seq ranges known to be complete so that holes can be found and filled.

use crate::error::Error;
use crate::types::{Conversation, ConversationRef, Direction, Message};
use prost::Message as _;
use roaming_proto::common::v1 as pb;
use rusqlite::{Connection, OptionalExtension, params};
use std::fmt;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

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
CREATE TABLE IF NOT EXISTS conversations (
    conv_type        INTEGER NOT NULL,
    conv_id          TEXT    NOT NULL,
    last_activity_ms INTEGER NOT NULL,
    last_message     BLOB,
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
PRAGMA user_version = 1;
";

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
/// [`Client`]: crate::Client
#[derive(Clone)]
pub struct LocalStore {
    conn: Arc<Mutex<Connection>>,
    path: Option<PathBuf>,
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
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path,
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
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        for m in messages {
            let (t, id) = key(&m.conversation);
            tx.execute(
                "INSERT OR REPLACE INTO messages (conv_type, conv_id, seq, msg_id, server_time_ms, raw)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![t, id, m.seq, m.msg_id, m.server_time_ms, encode(m)],
            )?;
            touch_conversation(&tx, m)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Saves conversation-list entries (replacing stored ones), and their last messages.
    pub fn save_conversations(&self, conversations: &[Conversation]) -> Result<(), Error> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        for c in conversations {
            let (t, id) = key(&c.conversation);
            tx.execute(
                "INSERT OR REPLACE INTO conversations (conv_type, conv_id, last_activity_ms, last_message)
                 VALUES (?1, ?2, ?3, ?4)",
                params![t, id, c.last_activity_ms, c.last_message.as_ref().map(encode)],
            )?;
            if let Some(m) = &c.last_message {
                tx.execute(
                    "INSERT OR REPLACE INTO messages (conv_type, conv_id, seq, msg_id, server_time_ms, raw)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![t, id, m.seq, m.msg_id, m.server_time_ms, encode(m)],
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Every local conversation, most recently active first (ties by conversation).
    pub fn conversations(&self) -> Result<Vec<Conversation>, Error> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT conv_type, conv_id, last_activity_ms, last_message FROM conversations
             ORDER BY last_activity_ms DESC, conv_type, conv_id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i32>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Option<Vec<u8>>>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (t, id, last_activity_ms, raw) = row?;
            let conversation = pb::ConversationRef { r#type: t, id }.try_into()?;
            let last_message = raw.as_deref().map(decode).transpose()?;
            out.push(Conversation {
                conversation,
                last_message,
                last_activity_ms,
            });
        }
        Ok(out)
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
        let mut conn = self.lock();
        let tx = conn.transaction()?;
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
        tx.commit()?;
        Ok(())
    }

    /// Deletes messages by id locally (the mirror of a one-way removal).
    pub fn remove_messages(
        &self,
        conversation: &ConversationRef,
        msg_ids: &[String],
    ) -> Result<(), Error> {
        let (t, id) = key(conversation);
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        for msg_id in msg_ids {
            tx.execute(
                "DELETE FROM messages WHERE conv_type = ?1 AND conv_id = ?2 AND msg_id = ?3",
                params![t, id, msg_id],
            )?;
        }
        refresh_last_message(&tx, t, id)?;
        tx.commit()?;
        Ok(())
    }

    /// Deletes every local message stored at or before `before_time_ms` (the mirror of a
    /// one-way removal by time).
    pub fn remove_messages_before(
        &self,
        conversation: &ConversationRef,
        before_time_ms: i64,
    ) -> Result<(), Error> {
        let (t, id) = key(conversation);
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        tx.execute(
            "DELETE FROM messages WHERE conv_type = ?1 AND conv_id = ?2 AND server_time_ms <= ?3",
            params![t, id, before_time_ms],
        )?;
        refresh_last_message(&tx, t, id)?;
        tx.commit()?;
        Ok(())
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
        let mut conn = self.lock();
        let tx = conn.transaction()?;
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
        tx.commit()?;
        Ok(())
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
