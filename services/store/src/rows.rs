//! Row mappers: one function per shape of result row, reading columns by name (a message
//! result's positions are found once per result, [`MessageColumns`]), so the domain types
//! that went into the store come back out of it.

use crate::error::{Error, Result};
use roaming_domain::{Conversation, ConversationKind, MessageKind, MsgId, StoredMessage, UserId};
use std::collections::HashMap;
use tokio_postgres::Row;

/// A message row ([`crate::sql::MESSAGE_COLUMNS`]) of `conversation`.
pub(crate) fn message(conversation: &Conversation, row: &Row) -> Result<StoredMessage> {
    MessageColumns::of(row)?.read(conversation, row)
}

/// Where the message columns ([`crate::sql::MESSAGE_COLUMNS`]) are in a result's rows, found
/// once per result: reading by name looks the name up among the row's columns on every
/// `try_get`, which for a page of 51 rows of a statement with 17 columns was ~500 string
/// scans per page (`RowIndex::__idx` and `memcmp` in the server's profile,
/// services/bench/docs/results.md).
#[derive(Debug, Clone, Copy)]
pub(crate) struct MessageColumns {
    msg_id: usize,
    seq: usize,
    sender: usize,
    msg_type: usize,
    body: usize,
    attributes: usize,
    server_time_ms: usize,
    client_msg_id: usize,
    edit_version: usize,
    edited_at_ms: usize,
}

impl MessageColumns {
    /// The positions in `row`'s result (every row of one result has the same columns).
    pub(crate) fn of(row: &Row) -> Result<Self> {
        let at = |name: &str| {
            row.columns()
                .iter()
                .position(|c| c.name() == name)
                .ok_or_else(|| Error::Internal(format!("a message row without column {name}")))
        };
        Ok(Self {
            msg_id: at("msg_id")?,
            seq: at("seq")?,
            sender: at("sender")?,
            msg_type: at("msg_type")?,
            body: at("body")?,
            attributes: at("attributes")?,
            server_time_ms: at("server_time_ms")?,
            client_msg_id: at("client_msg_id")?,
            edit_version: at("edit_version")?,
            edited_at_ms: at("edited_at_ms")?,
        })
    }

    /// The message in `row` (of the result these positions were found in).
    pub(crate) fn read(&self, conversation: &Conversation, row: &Row) -> Result<StoredMessage> {
        let sender: &str = row.try_get(self.sender)?;
        let kind: i16 = row.try_get(self.msg_type)?;
        let attributes: serde_json::Value = row.try_get(self.attributes)?;
        Ok(StoredMessage {
            msg_id: MsgId(row.try_get(self.msg_id)?),
            conversation: conversation.clone(),
            seq: row.try_get(self.seq)?,
            sender: UserId::parse("sender", sender)
                .map_err(|e| Error::Internal(format!("stored message: {e}")))?,
            kind: MessageKind::from_i16(kind)
                .ok_or_else(|| Error::Internal(format!("stored message: msg_type {kind}")))?,
            body: row.try_get(self.body)?,
            attributes: attributes_from_json(attributes),
            server_time_ms: row.try_get(self.server_time_ms)?,
            client_msg_id: row.try_get(self.client_msg_id)?,
            edit_version: u32::try_from(row.try_get::<_, i32>(self.edit_version)?).unwrap_or(0),
            edited_at_ms: row.try_get(self.edited_at_ms)?,
        })
    }
}

/// The read-state columns of a list or feed row (`sql::read_state`).
pub(crate) fn read_state(row: &Row) -> Result<crate::ReadState> {
    Ok(crate::ReadState {
        read_seq: row.try_get("read_seq")?,
        unread_count: row.try_get("unread_count")?,
        peer_read_seq: row.try_get("peer_read_seq")?,
        pinned_at_ms: row.try_get("pinned_at_ms")?,
        marks: row.try_get("marks")?,
    })
}

/// The conversation of a row with `conv_key` and `kind` columns.
pub(crate) fn conversation(row: &Row) -> Result<Conversation> {
    let key: &str = row.try_get("conv_key")?;
    let kind: i16 = row.try_get("kind")?;
    Conversation::from_key(key)
        .filter(|c| Some(c.kind()) == ConversationKind::from_i16(kind))
        .ok_or_else(|| Error::Internal(format!("malformed conversation key {key:?}")))
}

fn attributes_from_json(value: serde_json::Value) -> HashMap<String, String> {
    match value {
        serde_json::Value::Object(map) => map
            .into_iter()
            .filter_map(|(k, v)| match v {
                serde_json::Value::String(s) => Some((k, s)),
                _ => None,
            })
            .collect(),
        _ => HashMap::new(),
    }
}

/// Attributes as the `jsonb` column stores them.
pub(crate) fn attributes_to_json(attributes: &HashMap<String, String>) -> serde_json::Value {
    serde_json::Value::Object(
        attributes
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect(),
    )
}
