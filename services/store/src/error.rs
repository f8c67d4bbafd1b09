//! The store's error type: validation failures, access outcomes and classified database errors.

use roaming_domain::FieldError;

/// Everything a store call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed (checked before anything is written).
    #[error("{0}")]
    Invalid(#[from] FieldError),
    /// An anchor or other named object does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Well formed, but the state forbids it (a recall past its window, one edit too many).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The caller may not reach this conversation.
    #[error("{0}")]
    PermissionDenied(String),
    /// The database cannot be reached right now (retryable).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database cancelled the statement (statement timeout or cancel request).
    #[error("database statement cancelled: {0}")]
    Cancelled(String),
    /// Anything else: a bug or an unexpected database state. Never shown to callers.
    #[error("internal store error: {0}")]
    Internal(String),
}

/// Short alias used throughout the store.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<tokio_postgres::Error> for Error {
    fn from(err: tokio_postgres::Error) -> Self {
        Error::from_postgres(&err)
    }
}

impl Error {
    /// Classifies a driver error seen by reference (as when another library wraps it, like
    /// the migration runner's errors): the same rules as `From<tokio_postgres::Error>`.
    pub(crate) fn from_postgres(err: &tokio_postgres::Error) -> Self {
        if err.is_closed() {
            return Error::Unavailable(with_causes(err));
        }
        if let Some(db) = err.as_db_error() {
            let code = db.code().code();
            return match code {
                // connection_exception class, admin/crash shutdown, cannot_connect_now,
                // too_many_connections, serialization failure, deadlock: all retryable.
                c if c.starts_with("08") => Error::Unavailable(db.message().to_owned()),
                "57P01" | "57P02" | "57P03" | "53300" | "40001" | "40P01" => {
                    Error::Unavailable(db.message().to_owned())
                }
                "57014" => Error::Cancelled(db.message().to_owned()),
                _ => Error::Internal(format!("{code}: {}", db.message())),
            };
        }
        // No server error attached: an I/O or protocol failure on the connection.
        let io = std::error::Error::source(err).and_then(|s| s.downcast_ref::<std::io::Error>());
        // The TLS handshake refused the server's certificate: a configuration to fix (the
        // URL's sslmode or sslrootcert, or the server's certificate), not worth retrying.
        if let Some(rustls::Error::InvalidCertificate(_)) = io
            .and_then(|io| io.get_ref())
            .and_then(|e| e.downcast_ref::<rustls::Error>())
        {
            return Error::Internal(format!(
                "{} (the database's certificate is not trusted: check sslmode and \
                 sslrootcert in the database URL)",
                with_causes(err)
            ));
        }
        if io.is_some() {
            Error::Unavailable(with_causes(err))
        } else {
            Error::Internal(with_causes(err))
        }
    }
}

/// The driver's message and its causes ("error performing TLS handshake: invalid peer
/// certificate: UnknownIssuer"): the driver's own message names only the kind of failure.
fn with_causes(err: &tokio_postgres::Error) -> String {
    let mut text = err.to_string();
    let mut cause = std::error::Error::source(err);
    while let Some(c) = cause {
        // Wrappers often repeat their inner error's message: say it once.
        let message = c.to_string();
        if !text.ends_with(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        cause = c.source();
    }
    text
}

impl From<deadpool_postgres::PoolError> for Error {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        use deadpool_postgres::PoolError;
        match err {
            PoolError::Backend(e) => e.into(),
            PoolError::Timeout(_) | PoolError::Closed => Error::Unavailable(err.to_string()),
            PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_) => {
                Error::Internal(err.to_string())
            }
        }
    }
}
