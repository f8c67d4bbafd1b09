//! The client's error type: one variant per gRPC status code, plus the client's own failures.

use tonic::Code;

/// What a client call can fail with.
///
/// A non-OK answer from the server becomes the variant named after its gRPC code, carrying the
/// server's message; [`Error::code`] gives the code back. The remaining variants are failures
/// on the client's side.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The endpoint is not a valid URI, or the connection could not be made.
    #[error("connection: {0}")]
    Connect(String),
    /// The token or act-as user is not valid metadata.
    #[error("credentials: {0}")]
    Credentials(String),
    /// The server sent something the client cannot represent (a missing field, an unknown
    /// conversation type).
    #[error("invalid response: {0}")]
    InvalidResponse(String),
    /// A local-store operation was asked of a client that has no local store.
    #[error("this client has no local store")]
    NoLocalStore,
    /// The local store failed (SQLite).
    #[error("local store: {0}")]
    LocalStore(String),
    /// The local store holds another user's copy (its sync token was made for another user
    /// than the client's): a local store belongs to one user.
    #[error("local store of another user: {0}")]
    ForeignLocalStore(String),

    /// `CANCELLED`: the call was cancelled (also tonic's answer when the request timeout
    /// expires).
    #[error("cancelled: {0}")]
    Cancelled(String),
    /// `UNKNOWN`.
    #[error("unknown: {0}")]
    Unknown(String),
    /// `INVALID_ARGUMENT`: the request broke a rule; the message names the field and the rule.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// `DEADLINE_EXCEEDED`: the call's deadline passed.
    #[error("deadline exceeded: {0}")]
    DeadlineExceeded(String),
    /// `NOT_FOUND`: e.g. an unknown anchor message.
    #[error("not found: {0}")]
    NotFound(String),
    /// `ALREADY_EXISTS`.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// `PERMISSION_DENIED`: e.g. not a member of the group, or a user token on a service RPC.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// `RESOURCE_EXHAUSTED`: a load limit was hit (concurrency, rate, message size).
    #[error("resource exhausted: {0}")]
    ResourceExhausted(String),
    /// `FAILED_PRECONDITION`.
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// `ABORTED`.
    #[error("aborted: {0}")]
    Aborted(String),
    /// `OUT_OF_RANGE`.
    #[error("out of range: {0}")]
    OutOfRange(String),
    /// `UNIMPLEMENTED`: e.g. this server process does not serve that service.
    #[error("unimplemented: {0}")]
    Unimplemented(String),
    /// `INTERNAL`.
    #[error("internal: {0}")]
    Internal(String),
    /// `UNAVAILABLE`: the server (or its database) cannot be reached right now. Retryable.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// `DATA_LOSS`.
    #[error("data loss: {0}")]
    DataLoss(String),
    /// `UNAUTHENTICATED`: the token is missing, malformed, expired or refused.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
}

impl Error {
    /// True when repeating the same call later may succeed: `UNAVAILABLE` only. The client
    /// retries such failures itself on calls that are safe to repeat (see
    /// [`RetryPolicy`](crate::RetryPolicy)).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable(_))
    }

    /// The gRPC code of a server answer; `None` for the client's own failures.
    pub fn code(&self) -> Option<Code> {
        Some(match self {
            Error::Connect(_)
            | Error::Credentials(_)
            | Error::InvalidResponse(_)
            | Error::NoLocalStore
            | Error::LocalStore(_)
            | Error::ForeignLocalStore(_) => return None,
            Error::Cancelled(_) => Code::Cancelled,
            Error::Unknown(_) => Code::Unknown,
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::DeadlineExceeded(_) => Code::DeadlineExceeded,
            Error::NotFound(_) => Code::NotFound,
            Error::AlreadyExists(_) => Code::AlreadyExists,
            Error::PermissionDenied(_) => Code::PermissionDenied,
            Error::ResourceExhausted(_) => Code::ResourceExhausted,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::Aborted(_) => Code::Aborted,
            Error::OutOfRange(_) => Code::OutOfRange,
            Error::Unimplemented(_) => Code::Unimplemented,
            Error::Internal(_) => Code::Internal,
            Error::Unavailable(_) => Code::Unavailable,
            Error::DataLoss(_) => Code::DataLoss,
            Error::Unauthenticated(_) => Code::Unauthenticated,
        })
    }
}

/// True when the status is the transport's "connection closed before this call was sent"
/// (hyper's `Canceled`, which tonic reports as `CANCELLED`): nothing reached the server, so
/// it means the same as `UNAVAILABLE`. A request timeout, also `CANCELLED`, is not this.
fn closed_before_sent(status: &tonic::Status) -> bool {
    let mut transport = false;
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        if e.is::<tonic::TimeoutExpired>() {
            return false;
        }
        transport |= e.is::<tonic::transport::Error>();
        source = e.source();
    }
    status.code() == Code::Cancelled && transport
}

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Self {
        let message = status.message().to_owned();
        if closed_before_sent(&status) {
            return Error::Unavailable(format!("connection closed: {message}"));
        }
        match status.code() {
            // A status that says OK yet is an error cannot be trusted to mean anything.
            Code::Ok => Error::Unknown(format!("error with status OK: {message}")),
            Code::Cancelled => Error::Cancelled(message),
            Code::Unknown => Error::Unknown(message),
            Code::InvalidArgument => Error::InvalidArgument(message),
            Code::DeadlineExceeded => Error::DeadlineExceeded(message),
            Code::NotFound => Error::NotFound(message),
            Code::AlreadyExists => Error::AlreadyExists(message),
            Code::PermissionDenied => Error::PermissionDenied(message),
            Code::ResourceExhausted => Error::ResourceExhausted(message),
            Code::FailedPrecondition => Error::FailedPrecondition(message),
            Code::Aborted => Error::Aborted(message),
            Code::OutOfRange => Error::OutOfRange(message),
            Code::Unimplemented => Error::Unimplemented(message),
            Code::Internal => Error::Internal(message),
            Code::Unavailable => Error::Unavailable(message),
            Code::DataLoss => Error::DataLoss(message),
            Code::Unauthenticated => Error::Unauthenticated(message),
        }
    }
}

#[cfg(feature = "local-store")]
impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::LocalStore(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_code_maps_to_its_own_variant_and_back() {
        for n in 1..=16 {
            let code = Code::from(n);
            let error = Error::from(tonic::Status::new(code, "m"));
            assert_eq!(error.code(), Some(code), "{error:?}");
            assert_eq!(error.is_retryable(), code == Code::Unavailable);
        }
        assert_eq!(
            Error::from(tonic::Status::new(Code::Ok, "?")).code(),
            Some(Code::Unknown)
        );
    }
}
