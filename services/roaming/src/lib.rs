//! The Roaming server as a library: open the store, then serve either service or both on one
//! listener with health, reflection and graceful shutdown. `main.rs` is a thin CLI over it,
//! and the integration tests call it with a listener on `127.0.0.1:0`.

pub mod config;
mod server;

pub use server::{App, LIVENESS, open_store, serve, serve_metrics};
