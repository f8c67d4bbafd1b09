//! The Roaming server as a library: open the store, then serve either service or both on one
//! listener with health, reflection and graceful shutdown. `main.rs` is a thin CLI over it,
//! and the integration tests call it with a listener on `127.0.0.1:0`. [`telemetry`] is the
//! log and trace set-up `roaming serve` installs first.

mod app;
pub mod config;
pub mod local_pg;
mod server;
pub mod telemetry;

pub use app::{App, open_store};
pub use server::{LIVENESS, serve, serve_metrics};
