//! Row mappers: one function per shape of result row, reading columns by name, so the
//! domain types that went into the store come back out of it.

use crate::error::{Error, Result};
use roaming_domain::{Conversation, ConversationKind, MessageKind, MsgId, StoredMessage, UserId};
use std::collections::HashMap;
use tokio_postgres::Row;

/// A message row ([`crate::sql::MESSAGE_COLUMNS`]) of `conversation`.
pub(crate) fn message(conversation: &Conversation, row: &Row) -> Result<StoredMessage> {
    let sender: &str = row.try_get("sender")?;
    let kind: i16 = row.try_get("msg_type")?;
    let attributes: serde_json::Value = row.try_get("attributes")?;
    Ok(StoredMessage {
        msg_id: MsgId(row.try_get("msg_id")?),
        conversation: conversation.clone(),
        seq: row.try_get("seq")?,
        sender: UserId::parse("sender", sender)
            .map_err(|e| Error::Internal(format!("stored message: {e}")))?,
        kind: MessageKind::from_i16(kind)
            .ok_or_else(|| Error::Internal(format!("stored message: msg_type {kind}")))?,
        body: row.try_get("body")?,
        attributes: attributes_from_json(attributes),
        server_time_ms: row.try_get("server_time_ms")?,
        client_msg_id: row.try_get("client_msg_id")?,
        edit_version: u32::try_from(row.try_get::<_, i32>("edit_version")?).unwrap_or(0),
        edited_at_ms: row.try_get("edited_at_ms")?,
    })
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
