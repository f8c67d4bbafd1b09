//! `App`: everything a running server needs, assembled in one place from the configuration.
//! The binary, the test harness, the bench and the reliability suite all build it here, so a
//! new setting reaches every one of them.

use crate::config::ServeConfig;
use anyhow::Context as _;
use roaming_domain::{Clock, SystemClock};
use roaming_runtime::{Authenticator, CursorSealer};
use roaming_store::Store;
use roaming_store::db::{self, PoolSettings};
use std::sync::Arc;

/// A server ready to serve: its configuration and the parts built from it.
#[derive(Debug, Clone)]
pub struct App {
    /// The configuration it was built from.
    pub config: ServeConfig,
    /// The data layer.
    pub store: Store,
    /// Token verification.
    pub auth: Arc<Authenticator>,
    /// Cursor sealing (same key on every replica: `ROAMING_CURSOR_KEY`, or one derived from
    /// the HS256 secret).
    pub sealer: CursorSealer,
    /// The time source.
    pub clock: Arc<dyn Clock>,
    /// TLS for the gRPC port (`ROAMING_TLS_CERT` / `ROAMING_TLS_KEY`); plaintext when `None`.
    pub tls: Option<tonic::transport::ServerTlsConfig>,
}

impl App {
    /// Builds the server's parts from `config` over an opened `store`. Fails, before anything
    /// is served, when a key or TLS setting is missing or bad (the token key, the token rules,
    /// the cursor key: a public-key server needs `ROAMING_CURSOR_KEY`).
    pub fn new(config: ServeConfig, store: Store) -> anyhow::Result<Self> {
        let auth = config.keys.authenticator()?;
        let sealer = config.keys.cursor_sealer()?;
        let tls = config.tls.server_tls()?;
        Ok(Self {
            config,
            store,
            auth: Arc::new(auth),
            sealer,
            clock: Arc::new(SystemClock),
            tls,
        })
    }

    /// Opens the configured database (creating and migrating it) and builds the server.
    pub async fn from_config(config: ServeConfig) -> anyhow::Result<Self> {
        let store = open_store(&config.database.database_url, &config.pool.to_settings()).await?;
        Self::new(config, store)
    }

    /// The same server reading time from `clock` (tests move time instead of sleeping).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
}

/// Creates the database if missing, applies migrations, and returns a pooled store. Every
/// connection (these and the pool's) is opened as the URL's `sslmode` and `sslrootcert` say.
pub async fn open_store(database_url: &str, pool: &PoolSettings) -> anyhow::Result<Store> {
    let config = db::parse_url(database_url)
        .map_err(|e| anyhow::anyhow!("ROAMING_DATABASE_URL (--database-url): {e}"))?;
    db::ensure_database(&config)
        .await
        .context("creating the database")?;
    let mut client = db::connect(&config)
        .await
        .context("connecting to the database")?;
    roaming_store::migrate::run(&mut client)
        .await
        .context("migrating the database")?;
    let layout = roaming_store::citus::layout(&client)
        .await
        .context("reading the database's extensions")?;
    drop(client);
    Ok(Store::open(config, pool)?.with_layout(layout))
}
