//! Roaming's store: the PostgreSQL data layer that both services share, over the domain
//! values of `roaming-domain`.
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
mod change;
pub mod citus;
mod conn;
pub mod db;
pub mod error;
mod history;
mod list;
mod membership;
pub mod migrate;
mod read;
mod rows;
pub mod sql;
mod sync;
pub mod tls;

pub use append::AppendOutcome;
pub use change::ChangeRules;
pub use error::{Error, Result};
pub use history::{
    Bucket, DigestQuery, Direction, EMPTY_DIGEST, Page, PageQuery, PageStart, RemovalStatus,
};
pub use list::{ConversationSummary, ListQuery, ReadState};
pub use read::{Organised, ReadMarker};
pub use sync::{ConversationState, SyncPage, SyncQuery};

use deadpool_postgres::Pool;

/// The data layer: a connection pool and the queries that run on it.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    /// The pool's TLS connector, for the cancel requests of abandoned operations (a cancel
    /// request is a connection of its own, encrypted as the pool's are).
    tls: db::Tls,
    /// Which shapes of the multi-row statements the database needs ([`sql::Layout`]).
    layout: sql::Layout,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("pool", &self.pool.status())
            .finish()
    }
}

impl Store {
    /// A store over `pool`, whose connections are opened with `tls` (the same connector
    /// opens the cancel requests).
    pub fn new(pool: Pool, tls: db::Tls) -> Self {
        Self {
            pool,
            tls,
            layout: sql::Layout::Single,
        }
    }

    /// The same store for a database of `layout` (see [`citus::layout`]).
    pub fn with_layout(mut self, layout: sql::Layout) -> Self {
        self.layout = layout;
        self
    }

    /// The layout the store's statements are shaped for.
    pub fn layout(&self) -> sql::Layout {
        self.layout
    }

    /// Opens the pool for `db` (lazily: no connection is made yet).
    pub fn open(db: db::DbConfig, settings: &db::PoolSettings) -> Result<Self> {
        let tls = db.tls.clone();
        Ok(Self::new(db::pool(db, settings)?, tls))
    }

    /// The pool (for health checks and metrics).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Succeeds when a pooled connection answers.
    pub async fn ping(&self) -> Result<()> {
        let conn = self.conn().await?;
        let result = conn
            .simple_query(sql::PING)
            .await
            .map(|_| ())
            .map_err(Error::from);
        conn.finish();
        result
    }

    /// A connection for one operation; see [`conn::Conn`] for why it is not a bare pool object.
    pub(crate) async fn conn(&self) -> Result<conn::Conn> {
        // Opened before the pool wait, so the span counts it.
        let span = conn::Conn::span();
        Ok(conn::Conn::new(
            self.pool.get().await?,
            self.tls.clone(),
            span,
        ))
    }
}
