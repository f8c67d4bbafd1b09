//! Conversions between the contract's messages and the store's validated domain values.

use roaming_domain::{Conversation, ConversationKind, FieldError, StoredMessage, UserId};
use roaming_proto::common::v1 as pb;

/// `field` (a `ConversationRef`) as the conversation `viewer` names.
pub fn conversation(
    field: &str,
    value: Option<&pb::ConversationRef>,
    viewer: &UserId,
) -> Result<Conversation, FieldError> {
    let value = value.ok_or_else(|| FieldError::new(field, "is required"))?;
    let kind = ConversationKind::from_i32(&format!("{field}.type"), value.r#type)?;
    Conversation::parse(&format!("{field}.id"), kind, &value.id, viewer)
}

/// `field` (a `ConversationRef`) as a GROUP or CHATROOM, which needs no viewer to name it.
pub fn group(field: &str, value: Option<&pb::ConversationRef>) -> Result<Conversation, FieldError> {
    let value = value.ok_or_else(|| FieldError::new(field, "is required"))?;
    let kind_field = format!("{field}.type");
    let kind = ConversationKind::from_i32(&kind_field, value.r#type)?;
    Conversation::parse_group(&kind_field, kind, &format!("{field}.id"), &value.id)
}

/// The `ConversationRef` `viewer` uses for `conversation`.
pub fn conversation_ref(conversation: &Conversation, viewer: &UserId) -> pb::ConversationRef {
    pb::ConversationRef {
        r#type: conversation.kind() as i32,
        id: conversation.id_seen_by(viewer).to_owned(),
    }
}

/// A stored message as `viewer` receives it.
pub fn message(m: StoredMessage, viewer: &UserId) -> pb::Message {
    pb::Message {
        msg_id: m.msg_id.to_string(),
        conversation: Some(conversation_ref(&m.conversation, viewer)),
        seq: m.seq,
        recipient: m.recipient().to_owned(),
        sender: m.sender.as_str().to_owned(),
        r#type: m.kind as i32,
        body: m.body,
        attributes: m.attributes,
        server_time_ms: m.server_time_ms,
        client_msg_id: m.client_msg_id,
        edit_version: m.edit_version,
        edited_at_ms: m.edited_at_ms,
    }
}

/// Checks a repeated id field: `min..=max` entries, each a valid id.
pub fn user_ids(field: &str, values: &[String], max: usize) -> Result<Vec<UserId>, FieldError> {
    if values.is_empty() {
        return Err(FieldError::new(field, "needs at least 1 entry"));
    }
    if values.len() > max {
        return Err(FieldError::new(
            field,
            format!("has {} entries; at most {max}", values.len()),
        ));
    }
    values
        .iter()
        .enumerate()
        .map(|(i, v)| UserId::parse(&format!("{field}[{i}]"), v))
        .collect()
}

/// Bytes `item` adds to a response as one element of a repeated field (tag, length, body):
/// what pages count against their byte budget.
pub fn repeated_len(item: &impl prost::Message) -> usize {
    let n = item.encoded_len();
    1 + prost::encoding::encoded_len_varint(n as u64) + n
}
