//! A pooled connection that cancels its query when the caller goes away.
//!
//! Dropping a tokio-postgres future does not stop the statement on the server: a client that
//! gives up (deadline, cancelled stream) would leave PostgreSQL working for nobody. A `Conn`
//! that is dropped before [`Conn::finish`] sends a cancel request for whatever is running and
//! takes the connection out of the pool, so the cancel can never hit a later caller's query.
//!
//! Within a call, a `Conn` also holds a span, `sql`, from the wait for the pool to the
//! connection's return: exported (`ROAMING_OTLP_ENDPOINT`), it is the call's SQL time, as a
//! child of the call's span.

use crate::db::Tls;
use deadpool_postgres::{Client, Object};
use std::ops::{Deref, DerefMut};

/// A pooled connection for one store operation.
pub(crate) struct Conn {
    client: Option<Object>,
    /// Opens the cancel request as the pool opens connections (a server that takes only TLS
    /// connections refuses a plaintext cancel).
    tls: Tls,
    /// The operation's `sql` span (none outside a call); closes when the `Conn` goes.
    _span: tracing::Span,
}

impl Conn {
    pub(crate) fn new(client: Object, tls: Tls, span: tracing::Span) -> Self {
        Self {
            client: Some(client),
            tls,
            _span: span,
        }
    }

    /// The span of a store operation beginning now: a child of the current call's span, and
    /// none outside a call (the health watcher's pings start no traces of their own).
    pub(crate) fn span() -> tracing::Span {
        if tracing::Span::current().is_none() {
            tracing::Span::none()
        } else {
            tracing::info_span!("sql", otel.kind = "client", db.system = "postgresql")
        }
    }

    /// The operation completed (successfully or with an error): back to the pool as usual.
    pub(crate) fn finish(mut self) {
        drop(self.client.take());
    }
}

impl Deref for Conn {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client
            .as_ref()
            .expect("connection present until finish or drop")
    }
}

impl DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Client {
        self.client
            .as_mut()
            .expect("connection present until finish or drop")
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let Some(object) = self.client.take() else {
            return;
        };
        // Abandoned mid-operation. Detach the connection from the pool, cancel whatever it
        // runs, then close it (dropping the client ends its connection task).
        let client = Object::take(object);
        let token = client.cancel_token();
        let tls = self.tls.clone();
        tracing::debug!("store operation abandoned; cancelling its statement");
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Err(e) = token.cancel_query(tls).await {
                    tracing::debug!(error = %e, "cancel request failed");
                }
                drop(client);
            });
        }
    }
}
