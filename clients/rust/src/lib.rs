//! Rust client for Roaming's history and conversation services.
//!
//! ```no_run
//! # async fn demo() -> Result<(), roaming_client::Error> {
//! let client = roaming_client::Client::builder("http://127.0.0.1:50051")
//!     .token("<jwt>")
//!     .connect()
//!     .await?;
//! let mut history = client.history();
//! # Ok(()) }
//! ```

mod connect;
mod error;

pub use connect::{Client, ClientBuilder, Credentials};
pub use error::Error;
/// The generated contract types and raw clients.
pub use roaming_proto as proto;
