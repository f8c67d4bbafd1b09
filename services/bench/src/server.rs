//! The server under test runs in a child process: this same binary re-executed with the
//! hidden `serve` subcommand, which builds the server from `roaming serve`'s own default
//! configuration (`App::from_config`) and serves it on `127.0.0.1:0`. A separate process keeps the server's CPU
//! time and RSS (read from `/proc/<pid>`) apart from the load generator's.
//!
//! The child prints `listening <addr>` on stdout once it accepts connections, and stops when
//! its stdin closes (the parent exits or drops it), so it never outlives the bench.

use anyhow::{Context as _, bail};
use roaming::App;
use roaming::config::ServeConfig;
use roaming_runtime::guard::GuardSettings;
use roaming_store::db::PoolSettings;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// The environment variable that hands the HS256 secret to the child (never on its command
/// line, where `ps` would show it).
pub const SECRET_ENV: &str = "ROAMING_BENCH_JWT_SECRET";

/// The hidden `serve` subcommand's settings: the few the bench varies; everything else is
/// `roaming serve`'s default.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// The database to serve.
    #[arg(long)]
    pub database_url: String,
    /// Database connections of the server's pool.
    #[arg(long, default_value_t = PoolSettings::DEFAULT.max_size)]
    pub pool_size: usize,
    /// Most calls in progress at once.
    #[arg(long, default_value_t = GuardSettings::DEFAULT.max_concurrent_calls)]
    pub max_concurrent_calls: usize,
}

/// Runs the server in this (child) process until stdin closes.
pub async fn serve_child(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = ServeConfig::defaults();
    config.keys.jwt_secret =
        Some(std::env::var(SECRET_ENV).context("the bench passes the secret")?);
    config.database.database_url = args.database_url;
    config.pool.pool_size = args.pool_size;
    config.protection.max_concurrent_calls = args.max_concurrent_calls;
    config.drain_timeout = Duration::from_secs(2).into();
    let app = App::from_config(config).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    println!("listening {addr}");
    let stdin_closed = async {
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 64];
        while let Ok(n) = stdin.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    roaming::serve(app, listener, stdin_closed).await
}

/// The running child server.
pub struct ServerProcess {
    child: Child,
    /// Its gRPC address.
    pub addr: SocketAddr,
    /// Its process id (for `/proc`).
    pub pid: u32,
}

impl ServerProcess {
    /// Starts the child and waits until it listens.
    pub async fn start(database_url: &str, pool_size: usize, secret: &str) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("locating the bench binary")?;
        let mut child = Command::new(exe)
            .arg("serve")
            .arg("--database-url")
            .arg(database_url)
            .arg("--pool-size")
            .arg(pool_size.to_string())
            .env(SECRET_ENV, secret)
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting the server process")?;
        let pid = child.id().context("the server process has no pid")?;
        let stdout = child.stdout.take().context("server stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .context("the server did not start within 60 s")??
            .context("the server exited before listening")?;
        let Some(addr) = line.strip_prefix("listening ") else {
            bail!("unexpected server output: {line:?}");
        };
        let addr: SocketAddr = addr.parse()?;
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self { child, addr, pid })
    }

    /// Closes the child's stdin (its shutdown signal) and waits for it to exit.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        drop(self.child.stdin.take());
        match tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await {
            Ok(status) => {
                status?;
            }
            Err(_) => {
                self.child.kill().await?;
            }
        }
        Ok(())
    }
}
