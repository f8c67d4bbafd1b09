//! Messages: their payload kinds, a validated new message and a stored one.

use crate::conversation::Conversation;
use crate::error::FieldError;
use crate::ids::{MsgId, UserId};
use std::collections::HashMap;

/// Message payload kinds; the numbers are the contract's and the schema's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MessageKind {
    /// Text.
    Text = 1,
    /// Image.
    Image = 2,
    /// Video.
    Video = 3,
    /// Audio.
    Audio = 4,
    /// File.
    File = 5,
    /// Location.
    Location = 6,
    /// Custom.
    Custom = 7,
    /// Command.
    Command = 8,
}

impl MessageKind {
    /// Every kind, in number order.
    pub const ALL: [MessageKind; 8] = [
        Self::Text,
        Self::Image,
        Self::Video,
        Self::Audio,
        Self::File,
        Self::Location,
        Self::Custom,
        Self::Command,
    ];

    /// From the contract's enum number; 0 and unknown values are errors.
    pub fn from_i32(field: &str, value: i32) -> Result<Self, FieldError> {
        Ok(match value {
            1 => Self::Text,
            2 => Self::Image,
            3 => Self::Video,
            4 => Self::Audio,
            5 => Self::File,
            6 => Self::Location,
            7 => Self::Custom,
            8 => Self::Command,
            0 => {
                return Err(FieldError::new(
                    field,
                    "is required (MESSAGE_TYPE_UNSPECIFIED)",
                ));
            }
            other => {
                return Err(FieldError::new(
                    field,
                    format!("unknown message type {other}"),
                ));
            }
        })
    }

    /// From the schema's `msg_type` value.
    pub fn from_i16(value: i16) -> Option<Self> {
        Self::from_i32("msg_type", value.into()).ok()
    }

    /// The schema's `msg_type` value.
    pub fn as_i16(self) -> i16 {
        self as i16
    }
}

/// A validated message to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    /// Where it goes.
    pub conversation: Conversation,
    /// Who sent it.
    pub sender: UserId,
    /// Payload kind.
    pub kind: MessageKind,
    /// Opaque payload.
    pub body: Vec<u8>,
    /// The SDK's "ext".
    pub attributes: HashMap<String, String>,
    /// The sender's idempotency key.
    pub client_msg_id: String,
}

impl NewMessage {
    /// PEER: the receiving user; GROUP / CHATROOM: the group or room id.
    pub fn recipient(&self) -> &str {
        self.conversation.id_seen_by(&self.sender)
    }
}

/// A message as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    /// Its id.
    pub msg_id: MsgId,
    /// Its conversation.
    pub conversation: Conversation,
    /// Its position in the conversation.
    pub seq: i64,
    /// Who sent it.
    pub sender: UserId,
    /// Payload kind.
    pub kind: MessageKind,
    /// Opaque payload.
    pub body: Vec<u8>,
    /// Application attributes.
    pub attributes: HashMap<String, String>,
    /// Server time of storage (ms since the epoch).
    pub server_time_ms: i64,
    /// The sender's idempotency key.
    pub client_msg_id: String,
    /// How many times it was edited (0: never).
    pub edit_version: u32,
    /// Server time of the last edit (0: never edited).
    pub edited_at_ms: i64,
}

impl StoredMessage {
    /// PEER: the receiving user; GROUP / CHATROOM: the group or room id.
    pub fn recipient(&self) -> &str {
        self.conversation.id_seen_by(&self.sender)
    }
}
