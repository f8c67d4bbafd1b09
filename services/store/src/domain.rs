//! Validated domain values: ids, conversations, message kinds, limits and the clock.

use crate::error::FieldError;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};

/// Longest user, group or room id.
pub const MAX_ID_LEN: usize = 64;

/// A user id (also the shape of a group or room id): 1-64 characters of `[A-Za-z0-9_.-]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserId(String);

impl UserId {
    /// Checks `value` against the id rule; `field` names it in the error.
    pub fn parse(field: &str, value: &str) -> Result<Self, FieldError> {
        if value.is_empty() {
            return Err(FieldError::new(field, "is required"));
        }
        if value.len() > MAX_ID_LEN {
            return Err(FieldError::new(field, "must be at most 64 characters"));
        }
        if !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        {
            return Err(FieldError::new(field, "must contain only [A-Za-z0-9_.-]"));
        }
        Ok(Self(value.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for UserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The kind of a conversation; the numbers are the contract's enum values and the schema's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConversationKind {
    /// One-on-one.
    Peer = 1,
    /// Group.
    Group = 2,
    /// Chatroom.
    Chatroom = 3,
}

impl ConversationKind {
    /// From the contract's enum number; 0 and unknown values are errors.
    pub fn from_i32(field: &str, value: i32) -> Result<Self, FieldError> {
        match value {
            1 => Ok(Self::Peer),
            2 => Ok(Self::Group),
            3 => Ok(Self::Chatroom),
            0 => Err(FieldError::new(
                field,
                "is required (CONVERSATION_TYPE_UNSPECIFIED)",
            )),
            other => Err(FieldError::new(
                field,
                format!("unknown conversation type {other}"),
            )),
        }
    }

    /// The schema's `kind` value.
    pub fn as_i16(self) -> i16 {
        self as i16
    }

    fn from_i16(value: i16) -> Option<Self> {
        Self::from_i32("kind", value.into()).ok()
    }
}

/// A conversation as the server stores it, independent of who looks at it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Conversation {
    /// A one-on-one conversation; `low <= high` so both participants name the same one.
    Peer {
        /// The participant whose id sorts first.
        low: UserId,
        /// The participant whose id sorts last (equal to `low` for notes to self).
        high: UserId,
    },
    /// A group, by id.
    Group(UserId),
    /// A chatroom, by id.
    Chatroom(UserId),
}

impl Conversation {
    /// The conversation `viewer` names `(kind, id)`.
    pub fn from_view(kind: ConversationKind, id: UserId, viewer: &UserId) -> Self {
        match kind {
            ConversationKind::Peer => {
                let (low, high) = if viewer <= &id {
                    (viewer.clone(), id)
                } else {
                    (id, viewer.clone())
                };
                Self::Peer { low, high }
            }
            ConversationKind::Group => Self::Group(id),
            ConversationKind::Chatroom => Self::Chatroom(id),
        }
    }

    /// The conversation a new message from `sender` to `recipient` belongs to.
    pub fn of_message(kind: ConversationKind, sender: &UserId, recipient: UserId) -> Self {
        Self::from_view(kind, recipient, sender)
    }

    /// Its kind.
    pub fn kind(&self) -> ConversationKind {
        match self {
            Self::Peer { .. } => ConversationKind::Peer,
            Self::Group(_) => ConversationKind::Group,
            Self::Chatroom(_) => ConversationKind::Chatroom,
        }
    }

    /// The storage key, the distribution column of every table: `p:<low>:<high>`,
    /// `g:<id>` or `r:<id>`. Ids cannot contain `:`, so keys never collide.
    pub fn key(&self) -> String {
        match self {
            Self::Peer { low, high } => format!("p:{low}:{high}"),
            Self::Group(id) => format!("g:{id}"),
            Self::Chatroom(id) => format!("r:{id}"),
        }
    }

    /// Parses a storage key back (for rows read from the database).
    pub fn from_key(key: &str) -> Option<Self> {
        let (tag, rest) = key.split_once(':')?;
        let id = |s: &str| UserId::parse("key", s).ok();
        match tag {
            "p" => {
                let (low, high) = rest.split_once(':')?;
                Some(Self::Peer {
                    low: id(low)?,
                    high: id(high)?,
                })
            }
            "g" => Some(Self::Group(id(rest)?)),
            "r" => Some(Self::Chatroom(id(rest)?)),
            _ => None,
        }
    }

    /// Whether `user` is one of a PEER conversation's two participants.
    pub fn is_peer_participant(&self, user: &UserId) -> bool {
        matches!(self, Self::Peer { low, high } if low == user || high == user)
    }

    /// The id `viewer` uses for this conversation (PEER: the other participant).
    pub fn id_seen_by(&self, viewer: &UserId) -> &UserId {
        match self {
            Self::Peer { low, high } => {
                if low == viewer {
                    high
                } else {
                    low
                }
            }
            Self::Group(id) | Self::Chatroom(id) => id,
        }
    }

    /// Everyone who takes part without being added (PEER: both participants).
    pub fn implicit_participants(&self) -> Vec<&UserId> {
        match self {
            Self::Peer { low, high } if low == high => vec![low],
            Self::Peer { low, high } => vec![low, high],
            Self::Group(_) | Self::Chatroom(_) => Vec::new(),
        }
    }
}

/// Message payload kinds; the numbers are the contract's and the schema's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

    /// The schema's `msg_type` value.
    pub fn as_i16(self) -> i16 {
        self as i16
    }
}

/// A message id: a positive 64-bit number, written as a decimal string in the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MsgId(pub i64);

impl MsgId {
    /// Parses the decimal form.
    pub fn parse(field: &str, value: &str) -> Result<Self, FieldError> {
        if value.is_empty() {
            return Err(FieldError::new(field, "is required"));
        }
        match value.parse::<i64>() {
            Ok(n) if n > 0 && value.bytes().all(|b| b.is_ascii_digit()) => Ok(Self(n)),
            _ => Err(FieldError::new(
                field,
                "must be a positive decimal 64-bit message id",
            )),
        }
    }
}

impl std::fmt::Display for MsgId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A validated message to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    /// Where it goes.
    pub conversation: Conversation,
    /// Who sent it.
    pub sender: UserId,
    /// PEER: the receiving user; GROUP / CHATROOM: the group or room id.
    pub recipient: UserId,
    /// Payload kind.
    pub kind: MessageKind,
    /// Opaque payload.
    pub body: Vec<u8>,
    /// The SDK's "ext".
    pub attributes: HashMap<String, String>,
    /// The sender's idempotency key.
    pub client_msg_id: String,
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
    pub sender: String,
    /// Who or what received it.
    pub recipient: String,
    /// Payload kind, as the schema's number.
    pub kind: i16,
    /// Opaque payload.
    pub body: Vec<u8>,
    /// Application attributes.
    pub attributes: HashMap<String, String>,
    /// Server time of storage (ms since the epoch).
    pub server_time_ms: i64,
    /// The sender's idempotency key.
    pub client_msg_id: String,
}

/// The request-shape limits of SPEC.md §5; every one is a server setting.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest message body in bytes.
    pub max_body_bytes: usize,
    /// Most attributes on one message.
    pub max_attributes: usize,
    /// Largest attribute key or value in bytes.
    pub max_attribute_bytes: usize,
    /// Most messages in one AppendMessages call.
    pub max_append_batch: usize,
    /// Largest history page.
    pub max_page_size: u32,
    /// Most pages in one FetchHistory stream.
    pub max_pages: u32,
    /// Most ids in one RemoveMessages call.
    pub max_removal_ids: usize,
    /// Most users in one membership call.
    pub max_members_per_call: usize,
    /// Most senders in a history filter.
    pub max_sender_filter: usize,
    /// Largest conversation-list page.
    pub max_conversation_page: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            max_attributes: 32,
            max_attribute_bytes: 1024,
            max_append_batch: 100,
            max_page_size: 50,
            max_pages: 100,
            max_removal_ids: 50,
            max_members_per_call: 100,
            max_sender_filter: 20,
            max_conversation_page: 50,
        }
    }
}

/// Where the services read the time from, so tests can move it instead of sleeping.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
    }
}

/// A clock that only moves when told to (tests).
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock reading `now_ms`.
    pub fn new(now_ms: i64) -> Self {
        Self(AtomicI64::new(now_ms))
    }

    /// Sets the reading.
    pub fn set(&self, now_ms: i64) {
        self.0.store(now_ms, Ordering::SeqCst);
    }

    /// Moves the reading forward by `ms`.
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

pub(crate) fn kind_from_row(value: i16) -> ConversationKind {
    ConversationKind::from_i16(value).unwrap_or(ConversationKind::Peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uid(s: &str) -> UserId {
        UserId::parse("u", s).unwrap()
    }

    #[test]
    fn user_ids_follow_the_rule() {
        assert!(UserId::parse("f", "alice_B-1.x").is_ok());
        assert_eq!(UserId::parse("f", "").unwrap_err().rule, "is required");
        assert!(UserId::parse("f", &"a".repeat(65)).is_err());
        assert!(UserId::parse("f", &"a".repeat(64)).is_ok());
        assert!(UserId::parse("f", "a:b").is_err());
        assert!(UserId::parse("f", "émile").is_err());
    }

    #[test]
    fn both_peers_name_the_same_conversation() {
        let a = Conversation::from_view(ConversationKind::Peer, uid("bob"), &uid("alice"));
        let b = Conversation::from_view(ConversationKind::Peer, uid("alice"), &uid("bob"));
        assert_eq!(a, b);
        assert_eq!(a.key(), "p:alice:bob");
        assert_eq!(a.id_seen_by(&uid("alice")).as_str(), "bob");
        assert_eq!(a.id_seen_by(&uid("bob")).as_str(), "alice");
        assert_eq!(Conversation::from_key(&a.key()), Some(a));
    }

    #[test]
    fn groups_and_rooms_with_one_id_are_different_conversations() {
        let g = Conversation::Group(uid("x"));
        let r = Conversation::Chatroom(uid("x"));
        assert_ne!(g.key(), r.key());
        assert_eq!(Conversation::from_key(&r.key()), Some(r));
    }

    #[test]
    fn msg_ids_are_positive_decimals() {
        assert_eq!(MsgId::parse("f", "42").unwrap(), MsgId(42));
        for bad in ["", "0", "-1", "+5", "1e3", "abc", "99999999999999999999"] {
            assert!(MsgId::parse("f", bad).is_err(), "{bad}");
        }
    }
}
