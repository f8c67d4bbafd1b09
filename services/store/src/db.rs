//! Connecting: the database URL (with TLS, see [`crate::tls`]), the pool (with
//! wait/create/recycle timeouts) and creating the database. Every connection, pooled or
//! direct, goes through the URL's TLS connector.

use crate::error::{Error, Result};
pub use crate::tls::{RootCert, SslMode, Tls, TlsSettings};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};
use std::str::FromStr;
use std::time::Duration;

/// How the pool connects and how long it waits.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Most connections held open.
    pub max_size: usize,
    /// How long a request waits for a free connection before `UNAVAILABLE`.
    pub wait_timeout: Duration,
    /// How long opening a connection may take.
    pub create_timeout: Duration,
    /// How long checking a pooled connection may take.
    pub recycle_timeout: Duration,
    /// PostgreSQL `statement_timeout`: no statement runs longer.
    pub statement_timeout: Duration,
}

impl PoolSettings {
    /// The defaults (the server settings' defaults refer to these).
    pub const DEFAULT: PoolSettings = PoolSettings {
        max_size: 16,
        wait_timeout: Duration::from_secs(2),
        create_timeout: Duration::from_secs(2),
        recycle_timeout: Duration::from_secs(1),
        statement_timeout: Duration::from_secs(10),
    };
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What is wrong with a database URL. Never holds the URL (URLs carry passwords): it names
/// the parameter, or says only that the URL is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UrlError(String);

impl UrlError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }

    pub(crate) fn malformed() -> Self {
        Self::new("the database URL is malformed")
    }
}

/// A parsed database URL: the driver's settings and the TLS connector built from the URL's
/// `sslmode` and `sslrootcert`.
#[derive(Clone)]
pub struct DbConfig {
    /// The driver's settings (told only whether to ask for TLS and whether to insist).
    pub pg: tokio_postgres::Config,
    /// What the URL asked for.
    pub tls_settings: TlsSettings,
    /// The connector every connection to this database uses.
    pub tls: Tls,
}

impl std::fmt::Debug for DbConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The driver's settings hold the password: only what TLS does is shown.
        f.debug_struct("DbConfig")
            .field("tls_settings", &self.tls_settings)
            .finish_non_exhaustive()
    }
}

/// Parses a `postgres://` URL (or key=value string), `sslmode` (libpq's five) and
/// `sslrootcert` included, and reads the root certificate file. Never echoes the URL.
pub fn parse_url(url: &str) -> std::result::Result<DbConfig, UrlError> {
    let (rest, tls_settings) = crate::tls::split(url)?;
    let mut pg = tokio_postgres::Config::from_str(&rest).map_err(|_| UrlError::malformed())?;
    pg.ssl_mode(tls_settings.mode.driver());
    let tls = crate::tls::connector(&tls_settings)?;
    Ok(DbConfig {
        pg,
        tls_settings,
        tls,
    })
}

/// Builds the pool. Connections are opened lazily, so this succeeds while the database is down.
pub fn pool(db: DbConfig, settings: &PoolSettings) -> Result<Pool> {
    let mut config = db.pg;
    let ms = settings.statement_timeout.as_millis();
    // synchronous_commit stays on (the server default): an acknowledged append survives a crash.
    config.options(format!(
        "-c statement_timeout={ms} -c synchronous_commit=on"
    ));
    config.application_name("roaming");
    config.connect_timeout(settings.create_timeout);
    let manager = Manager::from_config(
        config,
        db.tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(settings.max_size)
        .timeouts(Timeouts {
            wait: Some(settings.wait_timeout),
            create: Some(settings.create_timeout),
            recycle: Some(settings.recycle_timeout),
        })
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| Error::Internal(format!("building the pool: {e}")))
}

/// Connects once, outside the pool (migrations, database creation).
pub async fn connect(db: &DbConfig) -> Result<tokio_postgres::Client> {
    let (client, connection) = db.pg.connect(db.tls.clone()).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "direct database connection ended");
        }
    });
    Ok(client)
}

/// Creates the URL's database when it does not exist, through the server's `postgres`
/// database (on a Citus coordinator: on the whole cluster, see
/// [`crate::citus::create_database`]). Safe when several processes do it at once. A database that exists is never
/// touched through `postgres`, so production users need no rights there.
pub async fn ensure_database(db: &DbConfig) -> Result<()> {
    let Some(name) = db.pg.get_dbname().map(str::to_owned) else {
        return Ok(());
    };
    match db.pg.connect(db.tls.clone()).await {
        Ok(_) => return Ok(()),
        // invalid_catalog_name: the database does not exist yet.
        Err(e) if e.code().map(|c| c.code()) == Some("3D000") => {}
        Err(e) => return Err(e.into()),
    }
    let mut admin = db.clone();
    admin.pg.dbname("postgres");
    let client = connect(&admin).await?;
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some();
    if exists {
        return Ok(());
    }
    crate::citus::create_database(&client, &admin, &name).await?;
    tracing::info!(database = %name, "created database");
    Ok(())
}

/// Quotes an SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
