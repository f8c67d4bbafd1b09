//! Roaming's domain values, shared by the data layer, the services and the runtime: validated
//! ids, conversations as the server stores them, messages, the request-shape limits and the
//! clock. Nothing here does I/O, so every crate can depend on it.

mod clock;
mod conversation;
mod error;
mod ids;
mod limits;
mod message;

pub use clock::{Clock, SystemClock};
pub use conversation::{Conversation, ConversationKind};
pub use error::{FieldError, QUOTE_CHARS, quote};
pub use ids::{GroupId, MAX_ID_LEN, MAX_MARK_LEN, Mark, MsgId, UserId};
pub use limits::Limits;
pub use message::{MessageKind, NewMessage, StoredMessage};
