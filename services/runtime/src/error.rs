//! `ApiError`, the services' error type, and the one place it becomes a `tonic::Status`.

use roaming_domain::FieldError;
use roaming_store::Error as StoreError;
use tonic::{Code, Status};

/// Every way a Roaming RPC can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A request field broke a rule: INVALID_ARGUMENT naming the field.
    #[error("{0}")]
    Invalid(#[from] FieldError),
    /// Missing, malformed, expired or wrongly signed token.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller may not do this, or not to this conversation.
    #[error("{0}")]
    PermissionDenied(String),
    /// An anchor or named object does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Well formed, but the state forbids it (an expired sync token, ...).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A load limit was hit.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The database cannot be reached (retryable).
    #[error("{0}")]
    Unavailable(String),
    /// The server is shutting down (retryable elsewhere).
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The database gave up on a statement (statement timeout).
    #[error("{0}")]
    DeadlineExceeded(String),
    /// A bug or unexpected state; details are logged, never returned.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// INVALID_ARGUMENT for `field` breaking `rule`.
    pub fn invalid(field: impl Into<String>, rule: impl Into<String>) -> Self {
        Self::Invalid(FieldError::new(field, rule))
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Invalid(e) => Self::Invalid(e),
            StoreError::NotFound(m) => Self::NotFound(m),
            StoreError::PermissionDenied(m) => Self::PermissionDenied(m),
            StoreError::FailedPrecondition(m) => Self::FailedPrecondition(m),
            StoreError::Unavailable(m) => Self::Unavailable(m),
            StoreError::Cancelled(m) => Self::DeadlineExceeded(m),
            StoreError::Internal(m) => Self::Internal(m),
        }
    }
}

impl From<ApiError> for Status {
    fn from(err: ApiError) -> Self {
        match err {
            ApiError::Invalid(e) => Status::invalid_argument(e.to_string()),
            ApiError::Unauthenticated(m) => Status::unauthenticated(m),
            ApiError::PermissionDenied(m) => Status::permission_denied(m),
            ApiError::NotFound(m) => Status::not_found(m),
            ApiError::FailedPrecondition(m) => Status::failed_precondition(m),
            ApiError::ResourceExhausted(m) => Status::resource_exhausted(m),
            ApiError::Unavailable(detail) => {
                // The detail may name hosts or SQL state: it goes to the log only.
                tracing::warn!(error = %detail, "database unavailable");
                Status::unavailable("the database is unavailable; retry later")
            }
            ApiError::ShuttingDown => {
                Status::new(Code::Unavailable, "the server is shutting down; retry")
            }
            ApiError::DeadlineExceeded(detail) => {
                tracing::warn!(error = %detail, "database statement cancelled");
                Status::deadline_exceeded("the database did not answer in time")
            }
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                Status::internal("internal error")
            }
        }
    }
}
