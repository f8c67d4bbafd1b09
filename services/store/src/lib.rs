//! Roaming's store: domain types and the PostgreSQL data layer that both services share.
//!
//! The schema and the reasons behind it are in `docs/schema.md`; every query that runs per
//! request is served by an index named in `migrations/`.

/// Runs `$body` with a pooled connection bound to `$c` (a `&mut Conn`). If the calling
/// future is dropped before the body completes, the connection cancels its statement.
macro_rules! with_conn {
    ($store:expr, |$c:ident| $body:block) => {{
        let mut conn = $store.conn().await?;
        let result = {
            let $c = &mut conn;
            async move { $body }.await
        };
        conn.finish();
        result
    }};
}

mod append;
mod conn;
pub mod db;
pub mod domain;
pub mod error;
mod history;
mod list;
pub mod migrate;
pub mod sql;

pub use append::AppendOutcome;
pub use domain::*;
pub use error::{Error, FieldError, Result};
pub use history::{Direction, Page, PageQuery, RemovalStatus};
pub use list::{ConversationSummary, ListQuery, RemovalScope};

use deadpool_postgres::Pool;
use std::collections::HashMap;
use tokio_postgres::Row;

/// The data layer: a connection pool and the queries that run on it.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("pool", &self.pool.status())
            .finish()
    }
}

impl Store {
    /// A store over `pool`.
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    /// The pool (for health checks and metrics).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Succeeds when a pooled connection answers.
    pub async fn ping(&self) -> Result<()> {
        let conn = self.conn().await?;
        let result = conn
            .simple_query("SELECT 1")
            .await
            .map(|_| ())
            .map_err(Error::from);
        conn.finish();
        result
    }

    /// A connection for one operation; see [`conn::Conn`] for why it is not a bare pool object.
    pub(crate) async fn conn(&self) -> Result<conn::Conn> {
        Ok(conn::Conn::new(self.pool.get().await?))
    }
}

/// Reads [`sql::MESSAGE_COLUMNS`] starting at column `at`.
pub(crate) fn message_from_row(conversation: &Conversation, row: &Row, at: usize) -> StoredMessage {
    let attributes: serde_json::Value = row.get(at + 6);
    StoredMessage {
        msg_id: MsgId(row.get(at)),
        conversation: conversation.clone(),
        seq: row.get(at + 1),
        sender: row.get(at + 2),
        recipient: row.get(at + 3),
        kind: row.get(at + 4),
        body: row.get(at + 5),
        attributes: attributes_from_json(attributes),
        server_time_ms: row.get(at + 7),
        client_msg_id: row.get(at + 8),
    }
}

fn attributes_from_json(value: serde_json::Value) -> HashMap<String, String> {
    match value {
        serde_json::Value::Object(map) => map
            .into_iter()
            .filter_map(|(k, v)| match v {
                serde_json::Value::String(s) => Some((k, s)),
                _ => None,
            })
            .collect(),
        _ => HashMap::new(),
    }
}

pub(crate) fn attributes_to_json(attributes: &HashMap<String, String>) -> serde_json::Value {
    serde_json::Value::Object(
        attributes
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect(),
    )
}
