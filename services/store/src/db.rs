//! Connecting: the pool (with wait/create/recycle timeouts) and creating the database.

use crate::error::{Error, Result};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};
use std::str::FromStr;
use std::time::Duration;
use tokio_postgres::NoTls;

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

/// Parses a `postgres://` URL (or key=value string) without ever echoing it: URLs carry
/// passwords, so the error says only that it is malformed.
pub fn parse_url(url: &str) -> Result<tokio_postgres::Config> {
    tokio_postgres::Config::from_str(url)
        .map_err(|_| Error::Internal("the database URL is malformed".to_owned()))
}

/// Builds the pool. Connections are opened lazily, so this succeeds while the database is down.
pub fn pool(mut config: tokio_postgres::Config, settings: &PoolSettings) -> Result<Pool> {
    let ms = settings.statement_timeout.as_millis();
    // synchronous_commit stays on (the server default): an acknowledged append survives a crash.
    config.options(format!(
        "-c statement_timeout={ms} -c synchronous_commit=on"
    ));
    config.application_name("roaming");
    config.connect_timeout(settings.create_timeout);
    let manager = Manager::from_config(
        config,
        NoTls,
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
pub async fn connect(config: &tokio_postgres::Config) -> Result<tokio_postgres::Client> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "direct database connection ended");
        }
    });
    Ok(client)
}

/// Creates the URL's database when it does not exist, through the server's `postgres`
/// database. Safe when several processes do it at once. A database that exists is never
/// touched through `postgres`, so production users need no rights there.
pub async fn ensure_database(config: &tokio_postgres::Config) -> Result<()> {
    let Some(name) = config.get_dbname().map(str::to_owned) else {
        return Ok(());
    };
    match config.connect(NoTls).await {
        Ok(_) => return Ok(()),
        // invalid_catalog_name: the database does not exist yet.
        Err(e) if e.code().map(|c| c.code()) == Some("3D000") => {}
        Err(e) => return Err(e.into()),
    }
    let mut admin = config.clone();
    admin.dbname("postgres");
    let client = connect(&admin).await?;
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some();
    if exists {
        return Ok(());
    }
    let sql = format!("CREATE DATABASE {}", quote_ident(&name));
    match client.batch_execute(&sql).await {
        Ok(()) => {
            tracing::info!(database = %name, "created database");
            Ok(())
        }
        // duplicate_database, or the unique index on pg_database when two creators race.
        Err(e) if matches!(e.code().map(|c| c.code()), Some("42P04") | Some("23505")) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Quotes an SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
