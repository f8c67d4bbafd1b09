//! The conversation service: `roaming.conversation.v1.ConversationService` over the store.
//!
//! Every RPC is a command with a pure `parse(request, &caller, settings)` (every rule of the
//! request's shape, no I/O; the fuzz targets and property tests call it directly) and an
//! `execute` that talks to the store.

pub mod cursor;
mod list;
mod members;
mod organise;
mod remove;
mod service;
mod sync;
pub mod sync_token;

pub use list::{List, ListSettings, ReadSettings};
pub use members::{Change, Members};
pub use organise::{MarkConversation, MarkRead, Pin};
pub use remove::RemoveConversation;
pub use service::{ConversationService, Settings};
pub use sync::{DEFAULT_SYNC_PAGE, MAX_SYNC_PAGE, Sync, SyncSettings};
