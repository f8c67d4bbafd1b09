//! The conversation service: `roaming.conversation.v1.ConversationService` over the store.

mod cursor;
mod requests;
mod service;

pub use service::{ConversationService, ListSettings};
