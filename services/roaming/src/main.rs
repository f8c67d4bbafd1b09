//! `roaming`: serve, serve over a private PostgreSQL (`dev`), migrate, or mint a token.

use clap::{Parser, Subcommand};
use roaming::App;
use roaming::config::{DatabaseArgs, ServeConfig, read_pem};
use roaming::local_pg;
use roaming_runtime::cursor::CursorKeySource;
use roaming_runtime::{TokenSigner, auth, telemetry};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Roaming: message roaming (conversation list and history) over gRPC.
#[derive(Debug, Parser)]
#[command(name = "roaming", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the services (both by default) on one port, migrating the database first.
    Serve(Box<ServeConfig>),
    /// Like `serve`, over a private PostgreSQL cluster in --data-dir made from the locally
    /// installed PostgreSQL binaries (initdb on first use, a free loopback port, stopped on
    /// exit): for a machine where no PostgreSQL server runs. --database-url is ignored.
    Dev(Box<DevArgs>),
    /// Create the database if missing and apply the schema, then exit.
    Migrate {
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Print a token for local testing.
    Token(TokenArgs),
}

#[derive(Debug, clap::Args)]
struct DevArgs {
    /// The private cluster's directory (created, and initialised on first use; kept between
    /// runs, so is the data).
    #[arg(long, env = "ROAMING_DEV_DATA_DIR", default_value = ".roaming-dev")]
    data_dir: PathBuf,
    /// The cluster's port on 127.0.0.1 (default: a free one at each start).
    #[arg(long, env = "ROAMING_DEV_PG_PORT")]
    pg_port: Option<u16>,
    #[command(flatten)]
    serve: ServeConfig,
}

#[derive(Debug, clap::Args)]
struct TokenArgs {
    /// The token's subject: a user id, or a service's name with --role service.
    #[arg(long)]
    sub: String,
    /// `service` mints a service token (backend callers).
    #[arg(long)]
    role: Option<String>,
    /// How long the token is valid (e.g. 1h, 30m); the server refuses tokens valid for longer
    /// than its ROAMING_JWT_MAX_LIFETIME.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    ttl: Duration,
    /// The token's audience (`aud`): the server's ROAMING_JWT_AUDIENCE, when it has one.
    #[arg(long, env = "ROAMING_JWT_AUDIENCE")]
    aud: Option<String>,
    /// The token's issuer (`iss`): the server's ROAMING_JWT_ISSUER, when it has one.
    #[arg(long, env = "ROAMING_JWT_ISSUER")]
    iss: Option<String>,
    /// HS256 secret (the server's ROAMING_JWT_SECRET, at least 32 bytes).
    #[arg(long, env = "ROAMING_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// Ed25519 or RSA private key (PEM text or path), for servers configured with a public key.
    #[arg(long, env = "ROAMING_JWT_PRIVATE_KEY", hide_env_values = true)]
    jwt_private_key: Option<String>,
}

/// mimalloc instead of glibc malloc: the server allocates per message of every page (rows,
/// strings, prost buffers), and glibc's malloc and free were ~14 % of its CPU per page
/// (services/bench/docs/results.md, "Server CPU per page"); the price is ~13 MB more RSS.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(*args).await,
        Command::Dev(args) => dev(*args).await,
        Command::Migrate { database } => {
            telemetry::init(false);
            roaming::open_store(
                &database.database_url,
                &roaming_store::db::PoolSettings::DEFAULT,
            )
            .await?;
            tracing::info!("database is migrated");
            Ok(())
        }
        Command::Token(args) => {
            let signer = match (
                &args.jwt_secret,
                read_pem(args.jwt_private_key.as_deref(), "ROAMING_JWT_PRIVATE_KEY")?,
            ) {
                (_, Some(pem)) => TokenSigner::from_private_pem(&pem)?,
                (Some(secret), None) => {
                    auth::check_hs256_secret(secret)?;
                    TokenSigner::hs256(secret)
                }
                (None, None) => anyhow::bail!(
                    "no signing key: set ROAMING_JWT_SECRET (or --jwt-secret), or ROAMING_JWT_PRIVATE_KEY"
                ),
            }
            .with_audience(args.aud)
            .with_issuer(args.iss);
            let service = match args.role.as_deref() {
                None => false,
                Some(auth::SERVICE_ROLE) => true,
                Some(other) => anyhow::bail!("--role must be `service` (got {other:?})"),
            };
            println!(
                "{}",
                signer.mint(&args.sub, service, auth::now_secs(), args.ttl.as_secs())
            );
            Ok(())
        }
    }
}

/// `roaming dev`: a private cluster in `data_dir` (see `roaming::local_pg`), then `serve`
/// over it, then the cluster is stopped, whether serving ended by a signal or an error.
async fn dev(args: DevArgs) -> anyhow::Result<()> {
    let DevArgs {
        data_dir,
        pg_port,
        serve: config,
    } = args;
    let telemetry = roaming::telemetry::init(&config)?;
    let result = dev_over(&data_dir, pg_port, config).await;
    telemetry.shutdown().await;
    result
}

async fn dev_over(
    data_dir: &Path,
    pg_port: Option<u16>,
    mut config: ServeConfig,
) -> anyhow::Result<()> {
    // A bad key setting is reported before anything is made.
    config.keys.authenticator()?;
    std::fs::create_dir_all(data_dir)?;
    let lock = claim_data_dir(data_dir)?;
    let mut cluster = local_pg::Cluster::init(data_dir, "")?;
    cluster.start(pg_port)?;
    tracing::info!(
        port = cluster.port(),
        data = %cluster.data_dir().display(),
        log = %cluster.log_path().display(),
        "private PostgreSQL started (psql -h 127.0.0.1 -p <port> -U postgres roaming)"
    );
    config.database.database_url = cluster.url("roaming");
    let served = serve_until_signal(config).await;
    match cluster.stop(local_pg::StopMode::Fast) {
        Ok(()) => tracing::info!("private PostgreSQL stopped"),
        Err(e) => tracing::error!(error = format!("{e:#}"), "stopping the private PostgreSQL"),
    }
    let _ = std::fs::remove_file(lock);
    served
}

/// Writes `dir/roaming-dev.pid`, refusing when another live `roaming dev` wrote it (it would
/// have its cluster stopped under it).
fn claim_data_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    let lock = dir.join("roaming-dev.pid");
    let me = std::process::id();
    if let Some(pid) = std::fs::read_to_string(&lock)
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
    {
        if pid != me && local_pg::process_runs(pid, "roaming") {
            anyhow::bail!(
                "another `roaming dev` (pid {pid}) uses {}; stop it or choose another --data-dir",
                dir.display()
            );
        }
    }
    std::fs::write(&lock, format!("{me}\n"))?;
    Ok(lock)
}

async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let telemetry = roaming::telemetry::init(&config)?;
    let result = serve_until_signal(config).await;
    // The last calls' spans go out before the process exits.
    telemetry.shutdown().await;
    result
}

async fn serve_until_signal(config: ServeConfig) -> anyhow::Result<()> {
    // Refuse to start without a usable token key and cursor key, or with a bad TLS setting,
    // before touching the database.
    config.keys.authenticator()?;
    let sealer = config.keys.cursor_sealer()?;
    match sealer.source() {
        CursorKeySource::JwtSecret => tracing::info!(
            "cursors are sealed with a key derived from ROAMING_JWT_SECRET: rotating it \
             invalidates outstanding cursors; set ROAMING_CURSOR_KEY to keep them apart"
        ),
        _ => tracing::info!(
            previous_key = sealer.has_previous(),
            "cursors are sealed with ROAMING_CURSOR_KEY"
        ),
    }
    config.tls.server_tls()?;
    let store = open_store_patiently(&config).await?;
    let listener = tokio::net::TcpListener::bind(config.listen_addr).await?;
    let metrics_addr = config.metrics_addr;
    let app = App::new(config, store)?;
    let stop_metrics = tokio_util::sync::CancellationToken::new();
    if let Some(addr) = metrics_addr {
        let metrics_listener = tokio::net::TcpListener::bind(addr).await?;
        let store = app.store.clone();
        let stopped = stop_metrics.clone().cancelled_owned();
        tokio::spawn(async move {
            if let Err(e) = roaming::serve_metrics(metrics_listener, store, stopped).await {
                tracing::error!(error = %e, "metrics endpoint failed");
            }
        });
    }
    roaming::serve(app, listener, shutdown_signal()).await?;
    stop_metrics.cancel();
    tracing::info!("stopped");
    Ok(())
}

/// Opens (creates, migrates) the store, waiting for the database with backoff: replicas that
/// start before PostgreSQL is reachable wait for it instead of crash-looping. A malformed
/// URL or a failed migration is not worth waiting for.
async fn open_store_patiently(config: &ServeConfig) -> anyhow::Result<roaming_store::Store> {
    let mut delay = Duration::from_millis(250);
    loop {
        match roaming::open_store(&config.database.database_url, &config.pool.to_settings()).await {
            Ok(store) => return Ok(store),
            Err(e) if is_connection_error(&e) => {
                // The error chain names the failure, never the URL (it may hold a password).
                tracing::warn!(error = format!("{e:#}"), retry_in = ?delay, "database not reachable yet");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown_signal() => anyhow::bail!("stopped while waiting for the database"),
                }
                delay = (delay * 2).min(Duration::from_secs(10));
            }
            Err(e) => return Err(e),
        }
    }
}

fn is_connection_error(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<roaming_store::Error>(),
            Some(roaming_store::Error::Unavailable(_))
        )
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
