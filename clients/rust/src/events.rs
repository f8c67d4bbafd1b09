//! What the application observes of the local store's changes, like the SDKs' listeners.

use crate::types::{Conversation, ConversationRef, Message};

/// How many events a subscriber may fall behind before it misses some
/// ([`tokio::sync::broadcast::error::RecvError::Lagged`]).
pub const EVENT_BUFFER: usize = 1024;

/// A change to the local store, sent to every subscriber ([`LocalStore::subscribe`],
/// [`Client::events`]) **after** it is committed: an application that reads the store on an
/// event reads the new state.
///
/// Events describe what changed locally, not what the server sent: applying a repeated
/// change (the feed may repeat one) sends nothing, and a message removed on the server that
/// this device never held is not announced.
///
/// [`Client::sync`] sends the conversation and message events; [`Client::verify`] sends
/// [`StoreEvent::MessagesReplaced`]. Calls that change the server and mirror their effect
/// locally themselves (`remove_messages`, `remove_conversation`, `mark_read`, `pin`,
/// `mark_conversation`, `recall`, `edit`, ...) send nothing: the application made them.
///
/// A change of the read state, pin or marks (from another device, or the peer's receipt) is
/// a [`StoreEvent::ConversationUpdated`]: the entry carries them. The enum is
/// `#[non_exhaustive]`, so a `match` needs a `_ =>` arm.
///
/// [`LocalStore::subscribe`]: crate::LocalStore::subscribe
/// [`Client::events`]: crate::Client::events
/// [`Client::sync`]: crate::Client::sync
/// [`Client::verify`]: crate::Client::verify
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreEvent {
    /// A conversation's list entry appeared or changed (last message, last activity): the
    /// SDK's `onConversationUpdate`. Carries the entry as stored now (boxed: it holds a
    /// whole message).
    ConversationUpdated(Box<Conversation>),
    /// A conversation left the list (removed one-way on any device, every message hidden, or
    /// membership ended), and its local messages are gone with it.
    ConversationRemoved(ConversationRef),
    /// Messages were saved locally that were not there before (new ones fetched forward, or
    /// holes filled), in seq order.
    MessagesReceived {
        /// Their conversation.
        conversation: ConversationRef,
        /// The messages, oldest first.
        messages: Vec<Message>,
    },
    /// Local messages were deleted because the server hides them now: removed by id or by
    /// time on another device, or purged for everyone.
    MessagesRemoved {
        /// Their conversation.
        conversation: ConversationRef,
        /// Their ids, in seq order.
        msg_ids: Vec<String>,
    },
    /// Local messages were deleted because their sender recalled them for everybody.
    MessagesRecalled {
        /// Their conversation.
        conversation: ConversationRef,
        /// Their ids.
        msg_ids: Vec<String>,
    },
    /// Local messages were replaced by their edited content (a higher `edit_version`).
    MessagesEdited {
        /// Their conversation.
        conversation: ConversationRef,
        /// The messages as they are now, in seq order.
        messages: Vec<Message>,
    },
    /// [`Client::verify`](crate::Client::verify) found this seq range different from the
    /// server's and replaced the local messages of it with the server's.
    MessagesReplaced {
        /// Their conversation.
        conversation: ConversationRef,
        /// First seq of the range (inclusive).
        from_seq: i64,
        /// Last seq of the range (inclusive).
        to_seq: i64,
    },
    /// The local mirror of PEER and GROUP conversations was replaced by a snapshot: on a
    /// store's first sync that found earlier data, or when the token was past the server's
    /// retention (`rebuilt`). Reload whatever is on screen.
    MirrorReset {
        /// True when a token past retention caused it.
        rebuilt: bool,
    },
}
