//! Domain values the typed API takes and returns, and their conversions from and to the
//! generated contract types.

use crate::error::Error;
use roaming_proto::common::v1 as pb;
use roaming_proto::conversation::v1 as cpb;
use roaming_proto::history::v1 as hpb;
use std::collections::HashMap;
use std::fmt;

/// The kind of a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConversationType {
    /// One-on-one; seen by each participant under the *other* participant's id.
    Peer,
    /// A group with members managed by backend callers.
    Group,
    /// A chatroom: like a group, but listed only when asked for.
    Chatroom,
}

impl ConversationType {
    /// The contract's enum value.
    pub fn to_proto(self) -> pb::ConversationType {
        match self {
            ConversationType::Peer => pb::ConversationType::Peer,
            ConversationType::Group => pb::ConversationType::Group,
            ConversationType::Chatroom => pb::ConversationType::Chatroom,
        }
    }

    /// From the contract's wire value; `None` for UNSPECIFIED or unknown values.
    pub fn from_i32(value: i32) -> Option<Self> {
        match pb::ConversationType::try_from(value).ok()? {
            pb::ConversationType::Peer => Some(ConversationType::Peer),
            pb::ConversationType::Group => Some(ConversationType::Group),
            pb::ConversationType::Chatroom => Some(ConversationType::Chatroom),
            pb::ConversationType::Unspecified => None,
        }
    }
}

/// A conversation as the caller sees it: `(type, id)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConversationRef {
    /// The conversation's kind.
    pub kind: ConversationType,
    /// PEER: the *other* user's id. GROUP / CHATROOM: the group's or room's id.
    pub id: String,
}

impl ConversationRef {
    /// A conversation of `kind` with `id`.
    pub fn new(kind: ConversationType, id: impl Into<String>) -> Self {
        Self {
            kind,
            id: id.into(),
        }
    }

    /// The one-on-one conversation with user `other`.
    pub fn peer(other: impl Into<String>) -> Self {
        Self::new(ConversationType::Peer, other)
    }

    /// The group `id`.
    pub fn group(id: impl Into<String>) -> Self {
        Self::new(ConversationType::Group, id)
    }

    /// The chatroom `id`.
    pub fn chatroom(id: impl Into<String>) -> Self {
        Self::new(ConversationType::Chatroom, id)
    }

    /// The contract's message.
    pub fn to_proto(&self) -> pb::ConversationRef {
        pb::ConversationRef {
            r#type: self.kind.to_proto() as i32,
            id: self.id.clone(),
        }
    }
}

impl fmt::Display for ConversationRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ConversationType::Peer => "peer",
            ConversationType::Group => "group",
            ConversationType::Chatroom => "chatroom",
        };
        write!(f, "{kind}:{}", self.id)
    }
}

impl TryFrom<pb::ConversationRef> for ConversationRef {
    type Error = Error;

    fn try_from(value: pb::ConversationRef) -> Result<Self, Error> {
        let kind = ConversationType::from_i32(value.r#type).ok_or_else(|| {
            Error::InvalidResponse(format!("unknown conversation type {}", value.r#type))
        })?;
        Ok(Self { kind, id: value.id })
    }
}

/// The kind of a message's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// Text.
    Text,
    /// An image.
    Image,
    /// A video.
    Video,
    /// A voice or audio clip.
    Audio,
    /// A file.
    File,
    /// A location.
    Location,
    /// An application-defined payload.
    Custom,
    /// A command message (the SDK's CMD).
    Command,
    /// A value this client version does not know (kept as sent, for forward compatibility).
    Other(i32),
}

impl MessageType {
    /// The contract's wire value.
    pub fn to_i32(self) -> i32 {
        let known = match self {
            MessageType::Text => pb::MessageType::Text,
            MessageType::Image => pb::MessageType::Image,
            MessageType::Video => pb::MessageType::Video,
            MessageType::Audio => pb::MessageType::Audio,
            MessageType::File => pb::MessageType::File,
            MessageType::Location => pb::MessageType::Location,
            MessageType::Custom => pb::MessageType::Custom,
            MessageType::Command => pb::MessageType::Command,
            MessageType::Other(n) => return n,
        };
        known as i32
    }

    /// From the contract's wire value.
    pub fn from_i32(value: i32) -> Self {
        match pb::MessageType::try_from(value) {
            Ok(pb::MessageType::Text) => MessageType::Text,
            Ok(pb::MessageType::Image) => MessageType::Image,
            Ok(pb::MessageType::Video) => MessageType::Video,
            Ok(pb::MessageType::Audio) => MessageType::Audio,
            Ok(pb::MessageType::File) => MessageType::File,
            Ok(pb::MessageType::Location) => MessageType::Location,
            Ok(pb::MessageType::Custom) => MessageType::Custom,
            Ok(pb::MessageType::Command) => MessageType::Command,
            Ok(pb::MessageType::Unspecified) | Err(_) => MessageType::Other(value),
        }
    }
}

/// A stored message, as its reader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Server-assigned, globally unique id (a 64-bit number written in decimal).
    pub msg_id: String,
    /// The conversation as the reader sees it.
    pub conversation: ConversationRef,
    /// Position inside the conversation: 1, 2, 3, … without gaps, in commit order.
    pub seq: i64,
    /// The sending user.
    pub sender: String,
    /// PEER: the receiving user. GROUP / CHATROOM: the group's or room's id.
    pub recipient: String,
    /// The payload kind.
    pub kind: MessageType,
    /// The payload, opaque to the server.
    pub body: Vec<u8>,
    /// Application key/value pairs (the SDK's "ext").
    pub attributes: HashMap<String, String>,
    /// Server time of storage, ms since the Unix epoch.
    pub server_time_ms: i64,
    /// The sender's idempotency key.
    pub client_msg_id: String,
    /// How many times it was edited (0: never).
    pub edit_version: u32,
    /// Server time of the last edit, ms since the Unix epoch (0: never edited).
    pub edited_at_ms: i64,
}

impl Message {
    /// The body as UTF-8 text, when it is.
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }

    /// The contract's message.
    pub fn to_proto(&self) -> pb::Message {
        pb::Message {
            msg_id: self.msg_id.clone(),
            conversation: Some(self.conversation.to_proto()),
            seq: self.seq,
            sender: self.sender.clone(),
            recipient: self.recipient.clone(),
            r#type: self.kind.to_i32(),
            body: self.body.clone(),
            attributes: self.attributes.clone(),
            server_time_ms: self.server_time_ms,
            client_msg_id: self.client_msg_id.clone(),
            edit_version: self.edit_version,
            edited_at_ms: self.edited_at_ms,
        }
    }
}

impl TryFrom<pb::Message> for Message {
    type Error = Error;

    fn try_from(m: pb::Message) -> Result<Self, Error> {
        let conversation = m
            .conversation
            .ok_or_else(|| Error::InvalidResponse("message without a conversation".into()))?
            .try_into()?;
        Ok(Self {
            msg_id: m.msg_id,
            conversation,
            seq: m.seq,
            sender: m.sender,
            recipient: m.recipient,
            kind: MessageType::from_i32(m.r#type),
            body: m.body,
            attributes: m.attributes,
            server_time_ms: m.server_time_ms,
            client_msg_id: m.client_msg_id,
            edit_version: m.edit_version,
            edited_at_ms: m.edited_at_ms,
        })
    }
}

/// One entry of the conversation list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    /// The conversation, as the caller sees it.
    pub conversation: ConversationRef,
    /// Its newest message visible to the caller.
    pub last_message: Option<Message>,
    /// Time of its last activity, ms since the epoch.
    pub last_activity_ms: i64,
    /// The caller's read state, pin and marks.
    pub state: ReadState,
}

/// What the caller has read of a conversation and how they organised it: the same on every
/// one of their devices (the feed carries it).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReadState {
    /// The caller's read marker: every seq at or below it is read.
    pub read_seq: i64,
    /// Messages visible to the caller above `read_seq` sent by somebody else (exact,
    /// saturating at the server's cap, 999 by default): the badge.
    pub unread_count: i64,
    /// PEER: the other participant's read marker (read receipts: the caller's messages at or
    /// below it were read); 0 for groups.
    pub peer_read_seq: i64,
    /// When the caller first pinned it (ms since the epoch); `None` when not pinned.
    pub pinned_at_ms: Option<i64>,
    /// The caller's marks (labels), sorted.
    pub marks: Vec<String>,
}

impl ReadState {
    /// Pinned by the caller.
    pub fn pinned(&self) -> bool {
        self.pinned_at_ms.is_some()
    }

    /// Whether the other participant has read the message at `seq` (PEER only).
    pub fn peer_has_read(&self, seq: i64) -> bool {
        seq <= self.peer_read_seq
    }
}

impl TryFrom<cpb::Conversation> for Conversation {
    type Error = Error;

    fn try_from(c: cpb::Conversation) -> Result<Self, Error> {
        Ok(Self {
            conversation: c
                .conversation
                .ok_or_else(|| Error::InvalidResponse("conversation without a reference".into()))?
                .try_into()?,
            last_message: c.last_message.map(Message::try_from).transpose()?,
            last_activity_ms: c.last_activity_ms,
            state: ReadState {
                read_seq: c.read_seq,
                unread_count: c.unread_count,
                peer_read_seq: c.peer_read_seq,
                pinned_at_ms: c.pinned.then_some(c.pinned_at_ms),
                marks: c.marks,
            },
        })
    }
}

/// The outcome of [`Client::mark_read`](crate::Client::mark_read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadMarker {
    /// The caller's read marker now (it never moves back).
    pub read_seq: i64,
    /// The caller's unread count now.
    pub unread_count: i64,
}

/// One conversation's change from [`SyncConversations`](crate::Client::sync): its state as
/// the caller sees it now, and what happened to its history since the sync token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationChange {
    /// The conversation, as the caller sees it.
    pub conversation: ConversationRef,
    /// In the caller's list now; `false`: a device drops it (removed one-way, every message
    /// hidden, membership ended).
    pub listed: bool,
    /// The newest message visible to the caller (`None` when not listed).
    pub last_message: Option<Message>,
    /// As in the conversation list (0 when not listed).
    pub last_activity_ms: i64,
    /// The conversation's newest stored seq.
    pub last_seq: i64,
    /// Every seq at or below it is hidden from the caller.
    pub hidden_through_seq: i64,
    /// Messages hidden from the caller by id since the token (empty in a snapshot).
    pub removed_msg_ids: Vec<String>,
    /// Messages recalled for everybody since the token (empty in a snapshot).
    pub recalled_msg_ids: Vec<String>,
    /// The current content of messages edited since the token (empty in a snapshot).
    pub edited_messages: Vec<Message>,
    /// GROUP: the caller is a member (always true for PEER).
    pub is_member: bool,
    /// The caller's read state, pin and marks now.
    pub state: ReadState,
}

impl ConversationChange {
    /// The list entry it describes, when listed.
    pub fn entry(&self) -> Option<Conversation> {
        self.listed.then(|| Conversation {
            conversation: self.conversation.clone(),
            last_message: self.last_message.clone(),
            last_activity_ms: self.last_activity_ms,
            state: self.state.clone(),
        })
    }
}

impl TryFrom<cpb::ConversationChange> for ConversationChange {
    type Error = Error;

    fn try_from(c: cpb::ConversationChange) -> Result<Self, Error> {
        let change = Self {
            conversation: c
                .conversation
                .ok_or_else(|| Error::InvalidResponse("change without a conversation".into()))?
                .try_into()?,
            listed: c.listed,
            last_message: c.last_message.map(Message::try_from).transpose()?,
            last_activity_ms: c.last_activity_ms,
            last_seq: c.last_seq,
            hidden_through_seq: c.hidden_through_seq,
            removed_msg_ids: c.removed_msg_ids,
            recalled_msg_ids: c.recalled_msg_ids,
            edited_messages: c
                .edited_messages
                .into_iter()
                .map(Message::try_from)
                .collect::<Result<_, _>>()?,
            is_member: c.is_member,
            state: ReadState {
                read_seq: c.read_seq,
                unread_count: c.unread_count,
                peer_read_seq: c.peer_read_seq,
                pinned_at_ms: c.pinned.then_some(c.pinned_at_ms),
                marks: c.marks,
            },
        };
        if change.listed && change.last_message.is_none() {
            return Err(Error::InvalidResponse(format!(
                "listed change of {} without a last message",
                change.conversation
            )));
        }
        Ok(change)
    }
}

/// One bucket of consecutive seqs of a conversation, as `DigestHistory` describes it (and
/// [`LocalStore::digest`](crate::LocalStore::digest) computes it over the local copy).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DigestBucket {
    /// First seq (inclusive).
    pub from_seq: i64,
    /// Last seq (inclusive).
    pub to_seq: i64,
    /// Messages in the bucket visible to the caller.
    pub count: i64,
    /// Lowercase hex of the first 16 bytes of SHA-256 over `seq` (8 bytes, big-endian) ||
    /// `msg_id` (8 bytes, big-endian, the number) || `edit_version` (4 bytes, big-endian) of
    /// those messages in seq order.
    pub digest: String,
}

impl From<hpb::HistoryBucket> for DigestBucket {
    fn from(b: hpb::HistoryBucket) -> Self {
        Self {
            from_seq: b.from_seq,
            to_seq: b.to_seq,
            count: b.count,
            digest: b.digest,
        }
    }
}

/// The order in which history is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// Newest first (the SDK's "UP"); the default.
    #[default]
    Backward,
    /// Oldest first.
    Forward,
}

impl Direction {
    /// The contract's enum value.
    pub fn to_proto(self) -> hpb::Direction {
        match self {
            Direction::Backward => hpb::Direction::Backward,
            Direction::Forward => hpb::Direction::Forward,
        }
    }
}

/// One page of history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    /// The page's messages, in the direction's order.
    pub messages: Vec<Message>,
    /// Resumes right after this page (present on every page, the last one included).
    pub next_cursor: String,
    /// True when no further message existed in the direction when the page was read.
    pub is_end: bool,
}

/// One page of the conversation list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationPage {
    /// Most recently active first.
    pub conversations: Vec<Conversation>,
    /// Resumes after this page; `None` when there is no further page.
    pub next_cursor: Option<String>,
}

/// A message to store through [`Client::append`](crate::Client::append) (service callers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// The conversation's kind.
    pub conversation_type: ConversationType,
    /// The sending user.
    pub sender: String,
    /// PEER: the receiving user. GROUP / CHATROOM: the group's or room's id.
    pub recipient: String,
    /// The payload kind.
    pub kind: MessageType,
    /// The payload.
    pub body: Vec<u8>,
    /// Application key/value pairs.
    pub attributes: HashMap<String, String>,
    /// The sender's idempotency key (1-64 characters): appending the same key twice stores
    /// one message, which is what makes appends safe to retry.
    pub client_msg_id: String,
}

impl NewMessage {
    /// An empty TEXT message from `sender` to `recipient` (a user for PEER, a group or room
    /// id otherwise), with the idempotency key `client_msg_id`.
    pub fn new(
        conversation_type: ConversationType,
        sender: impl Into<String>,
        recipient: impl Into<String>,
        client_msg_id: impl Into<String>,
    ) -> Self {
        Self {
            conversation_type,
            sender: sender.into(),
            recipient: recipient.into(),
            kind: MessageType::Text,
            body: Vec::new(),
            attributes: HashMap::new(),
            client_msg_id: client_msg_id.into(),
        }
    }

    /// A TEXT body.
    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.kind = MessageType::Text;
        self.body = text.into().into_bytes();
        self
    }

    /// A body of any kind.
    pub fn body(mut self, kind: MessageType, body: impl Into<Vec<u8>>) -> Self {
        self.kind = kind;
        self.body = body.into();
        self
    }

    /// Adds one attribute.
    pub fn attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.insert(key.into(), value.into());
        self
    }

    /// The contract's message.
    pub fn to_proto(&self) -> hpb::NewMessage {
        hpb::NewMessage {
            conversation_type: self.conversation_type.to_proto() as i32,
            sender: self.sender.clone(),
            recipient: self.recipient.clone(),
            r#type: self.kind.to_i32(),
            body: self.body.clone(),
            attributes: self.attributes.clone(),
            client_msg_id: self.client_msg_id.clone(),
        }
    }
}

/// The outcome of one appended message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendResult {
    /// The stored message, as its sender sees it.
    pub message: Message,
    /// True when it had been stored before (same conversation, sender and client_msg_id).
    pub duplicate: bool,
}

/// What happened to one id of a removal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovalStatus {
    /// Now hidden from the caller.
    Removed,
    /// Was already hidden from the caller.
    AlreadyRemoved,
    /// No such message in this conversation.
    NotFound,
}

/// The outcome for one id of [`Client::remove_messages`](crate::Client::remove_messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovalResult {
    /// The id, as requested.
    pub msg_id: String,
    /// What happened to it.
    pub status: RemovalStatus,
}

impl TryFrom<hpb::RemovalResult> for RemovalResult {
    type Error = Error;

    fn try_from(r: hpb::RemovalResult) -> Result<Self, Error> {
        let status = match hpb::RemovalStatus::try_from(r.status) {
            Ok(hpb::RemovalStatus::Removed) => RemovalStatus::Removed,
            Ok(hpb::RemovalStatus::AlreadyRemoved) => RemovalStatus::AlreadyRemoved,
            Ok(hpb::RemovalStatus::NotFound) => RemovalStatus::NotFound,
            Ok(hpb::RemovalStatus::Unspecified) | Err(_) => {
                return Err(Error::InvalidResponse(format!(
                    "unknown removal status {}",
                    r.status
                )));
            }
        };
        Ok(Self {
            msg_id: r.msg_id,
            status,
        })
    }
}

/// How far a conversation removal reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RemovalScope {
    /// One-way: only the caller's view, on all of the caller's devices (the default).
    #[default]
    ForMe,
    /// Every participant's view (service callers only).
    ForEveryone,
}

impl RemovalScope {
    /// The contract's enum value.
    pub fn to_proto(self) -> cpb::RemovalScope {
        match self {
            RemovalScope::ForMe => cpb::RemovalScope::ForMe,
            RemovalScope::ForEveryone => cpb::RemovalScope::ForEveryone,
        }
    }
}

/// Converts a list of contract messages.
pub(crate) fn messages(list: Vec<pb::Message>) -> Result<Vec<Message>, Error> {
    list.into_iter().map(Message::try_from).collect()
}
