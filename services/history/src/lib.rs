//! The history service: `roaming.history.v1.HistoryService` over the store.
//!
//! Every RPC is a command with a pure `parse(request, &caller, settings)` (every rule of the
//! request's shape, no I/O; the fuzz targets and property tests call it directly) and an
//! `execute` that talks to the store.

mod append;
mod change;
pub mod cursor;
mod digest;
mod fetch;
mod remove;
mod service;

pub use append::{Append, MAX_CLIENT_MSG_ID_CHARS};
pub use change::{ChangeSettings, Edit, Recall};
pub use digest::{DEFAULT_BUCKET_SIZE, Digest, MAX_BUCKET_SIZE, MAX_BUCKETS};
pub use fetch::{DEFAULT_PAGE_SIZE, Fetch, Start};
pub use remove::{RemoveBefore, RemoveIds};
pub use service::HistoryService;
