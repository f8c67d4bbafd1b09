//! What both Roaming services share at run time: authentication, the one mapping from errors
//! to gRPC statuses, sealed cursors, proto/domain conversions, the guard layer with its
//! per-call span, and logging set-up.

pub mod auth;
pub mod convert;
pub mod cursor;
pub mod error;
pub mod guard;
pub mod metrics;
pub mod telemetry;
pub mod trace;

pub use auth::{Authenticator, Caller, TokenSigner};
pub use cursor::CursorSealer;
pub use error::ApiError;
