//! The client's error type.

/// What a client call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The endpoint is not a valid URI, or the connection could not be made.
    #[error("connection: {0}")]
    Connect(String),
    /// The token or act-as user is not valid metadata.
    #[error("credentials: {0}")]
    Credentials(String),
    /// The server answered with a non-OK status.
    #[error(transparent)]
    Status(#[from] tonic::Status),
}
