//! The history service: `roaming.history.v1.HistoryService` over the store.

mod cursor;
mod fetch;
mod requests;
mod service;

pub use service::HistoryService;
