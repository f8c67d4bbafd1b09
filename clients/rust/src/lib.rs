//! Rust client for Roaming's history and conversation services: typed calls, paging
//! streams that follow cursors for you, retry on `UNAVAILABLE`, and (feature `local-store`,
//! on by default) a device-style local copy in SQLite.
//!
//! ```no_run
//! # async fn demo() -> Result<(), roaming_client::Error> {
//! use futures::TryStreamExt;
//! use roaming_client::{Client, ConversationRef, LocalStore};
//!
//! let client = Client::builder("http://127.0.0.1:50051")
//!     .token("<alice's jwt>")
//!     .local_store(LocalStore::open("alice.sqlite3")?)
//!     .connect()
//!     .await?;
//! // The conversation list, every page.
//! let conversations: Vec<_> = client.list_conversations().conversations().try_collect().await?;
//! // One conversation's whole history, newest first, 20 messages a page.
//! let mut messages = client.fetch_history(ConversationRef::peer("bob")).page_size(20).messages();
//! while let Some(message) = messages.try_next().await? {
//!     println!("{}: {}", message.sender, message.text().unwrap_or("<binary>"));
//! }
//! // Both were saved locally, and read back offline:
//! let local = client.local_conversations().await?;
//! # Ok(()) }
//! ```
//!
//! With a local store, [`Client::sync`] keeps it a mirror of the user's conversations across
//! devices (the server's change feed, each page applied with its token in one transaction,
//! rebuilt from a snapshot past the server's retention), [`Client::verify`] compares a
//! conversation's local copy with the server's digests and refetches the buckets that differ,
//! and [`Client::events`] reports what changed ([`StoreEvent`]):
//!
//! ```no_run
//! # async fn demo(laptop: roaming_client::Client) -> Result<(), roaming_client::Error> {
//! use roaming_client::{ConversationRef, StoreEvent};
//! let mut events = laptop.events()?;
//! let report = laptop.sync().await?;
//! while let Ok(event) = events.try_recv() {
//!     if let StoreEvent::MessagesRemoved { conversation, msg_ids } = event {
//!         println!("{conversation}: {msg_ids:?} removed on another device");
//!     }
//! }
//! let check = laptop.verify(&ConversationRef::peer("bob")).await?;
//! assert_eq!(check.buckets_refetched, check.differing.len());
//! # Ok(()) }
//! ```
//!
//! Cargo features: `local-store` (default) adds [`LocalStore`], sync, verify and events;
//! `tls` adds rustls-based TLS for `https://` endpoints.

#![warn(missing_docs)]

mod connect;
mod conversations;
mod error;
#[cfg(feature = "local-store")]
mod events;
#[cfg(feature = "local-store")]
mod feed;
mod history;
#[cfg(feature = "local-store")]
mod local;
mod retry;
#[cfg(feature = "local-store")]
mod sync;
mod types;
#[cfg(feature = "local-store")]
mod verify;

pub use connect::{
    Client, ClientBuilder, Credentials, DEFAULT_CONNECT_TIMEOUT, DEFAULT_REQUEST_TIMEOUT,
    RawConversationClient, RawHistoryClient, TokenError, TokenProvider, USER_AGENT,
};
pub use conversations::ListRequest;
pub use error::Error;
#[cfg(feature = "local-store")]
pub use events::{EVENT_BUFFER, StoreEvent};
#[cfg(feature = "local-store")]
pub use feed::{SyncReport, SyncRequest};
pub use history::{HistoryRequest, MAX_PAGE_SIZE};
#[cfg(feature = "local-store")]
pub use local::{LocalQuery, LocalStore};
pub use retry::RetryPolicy;
pub use types::{
    AppendResult, Conversation, ConversationChange, ConversationPage, ConversationRef,
    ConversationType, DigestBucket, Direction, HistoryPage, Message, MessageType, NewMessage,
    ReadMarker, ReadState, RemovalResult, RemovalScope, RemovalStatus,
};
#[cfg(feature = "local-store")]
pub use verify::{DEFAULT_VERIFY_BUCKET, VerifyReport, VerifyRequest};

/// The generated contract types and raw clients.
pub use roaming_proto as proto;

/// Compiles the README's example.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
