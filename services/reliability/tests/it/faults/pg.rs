//! A private PostgreSQL 15 per test: initdb + pg_ctl in a temporary directory, on a free
//! loopback port, so a test can stop, crash, freeze and restart it without disturbing anyone.
//!
//! initdb refuses to run as root, so when the tests run as root (CI does) every PostgreSQL
//! command runs as the `postgres` user through `runuser`, and the directory belongs to it.
//! The binaries are taken from `ROAMING_PG_BIN` (default `/usr/lib/postgresql/15/bin`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// How PostgreSQL is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// `pg_ctl stop -m fast`: sessions are terminated (57P01), a checkpoint is written.
    Fast,
    /// `pg_ctl stop -m immediate`: every process quits at once, as in a crash; the next start
    /// replays the WAL.
    Immediate,
}

impl StopMode {
    pub fn name(self) -> &'static str {
        match self {
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        }
    }
}

/// What a test adds to a private PostgreSQL before it first starts.
#[derive(Debug, Default, Clone, Copy)]
pub struct Setup<'a> {
    /// Lines appended to postgresql.conf.
    pub conf: &'a str,
    /// pg_hba.conf's whole text, instead of initdb's (trust for every local connection).
    pub hba: Option<&'a str>,
    /// Files written into the data directory as `(name, contents)`, readable by the server's
    /// user only (as PostgreSQL requires of a private key).
    pub files: &'a [(&'a str, &'a str)],
}

/// A running (or stopped, or frozen) private PostgreSQL.
pub struct OwnPg {
    dir: PathBuf,
    data: PathBuf,
    log: PathBuf,
    pub port: u16,
    bin: PathBuf,
    as_postgres: bool,
    running: bool,
    frozen: Vec<u32>,
}

fn bin_dir() -> PathBuf {
    std::env::var_os("ROAMING_PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"))
}

/// Whether this process runs as root (read from /proc: no libc, no unsafe).
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// A port that nothing listens on, below the ephemeral range (so that no outgoing connection
/// takes it as its local port while PostgreSQL is down between a stop and a restart).
fn free_port() -> u16 {
    for _ in 0..200 {
        let port = 20_000 + (rand::random::<u16>() % 10_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in 20000..30000");
}

impl OwnPg {
    /// initdb + start. Panics (with the log) when PostgreSQL cannot be started.
    pub fn start() -> OwnPg {
        Self::start_with(Setup::default())
    }

    /// initdb, then `setup`'s configuration and files, then start.
    pub fn start_with(setup: Setup<'_>) -> OwnPg {
        let bin = bin_dir();
        assert!(
            bin.join("initdb").exists(),
            "PostgreSQL 15 binaries are needed at {} (apt-get install postgresql-15, or set \
             ROAMING_PG_BIN)",
            bin.display()
        );
        let as_postgres = running_as_root();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!(
            "roaming-faults-{}-{n}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        if as_postgres {
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&dir)
                .status()
                .expect("chown");
            assert!(status.success(), "chown postgres {}", dir.display());
        }
        let data = dir.join("data");
        let mut pg = OwnPg {
            log: dir.join("postgres.log"),
            dir,
            data,
            port: 0,
            bin,
            as_postgres,
            running: false,
            frozen: Vec::new(),
        };
        // --no-sync only makes initdb itself faster; the server runs with fsync on.
        let out = pg.run(
            "initdb",
            &[
                "-D",
                path_str(&pg.data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        assert!(out.status.success(), "initdb failed: {}", describe(&out));
        let conf = format!(
            "\n# roaming reliability tests\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\nmax_connections = 200\nfsync = on\n\
             synchronous_commit = on\nshared_buffers = 32MB\nlog_min_messages = warning\n",
            pg.dir.display()
        );
        let conf_path = pg.data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path).unwrap();
        text.push_str(&conf);
        text.push_str(setup.conf);
        text.push('\n');
        std::fs::write(&conf_path, text).unwrap();
        if let Some(hba) = setup.hba {
            std::fs::write(pg.data.join("pg_hba.conf"), hba).unwrap();
        }
        for (name, contents) in setup.files {
            pg.write_private(name, contents);
        }
        // A port may be taken between choosing and binding it: try a few.
        for _ in 0..5 {
            pg.port = free_port();
            if pg.try_start() {
                return pg;
            }
        }
        panic!("could not start PostgreSQL: {}", pg.log_tail());
    }

    /// Writes `name` into the data directory, mode 0600, owned by the server's user.
    fn write_private(&self, name: &str, contents: &str) {
        use std::os::unix::fs::PermissionsExt as _;
        let path = self.data.join(name);
        std::fs::write(&path, contents).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        if self.as_postgres {
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&path)
                .status()
                .expect("chown");
            assert!(status.success(), "chown postgres {}", path.display());
        }
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        let exe = self.bin.join(program);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        cmd.args(args)
            .current_dir(&self.dir)
            .output()
            .unwrap_or_else(|e| panic!("running {program}: {e}"))
    }

    fn try_start(&mut self) -> bool {
        let opts = format!("-p {}", self.port);
        let out = self.run(
            "pg_ctl",
            &[
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                path_str(&self.data),
                "-l",
                path_str(&self.log),
                "-o",
                &opts,
            ],
        );
        self.running = out.status.success();
        self.running
    }

    /// Starts it again on the same port (after a stop or a crash: then it replays the WAL).
    /// Returns when pg_ctl says it accepts connections.
    pub fn start_again(&mut self) {
        assert!(!self.running, "already running");
        for _ in 0..20 {
            if self.try_start() {
                return;
            }
            // The old postmaster's socket may linger for a moment.
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("could not restart PostgreSQL: {}", self.log_tail());
    }

    /// Stops it with `mode`.
    pub fn stop(&mut self, mode: StopMode) {
        self.thaw();
        let out = self.run(
            "pg_ctl",
            &[
                "stop",
                "-w",
                "-t",
                "60",
                "-D",
                path_str(&self.data),
                "-m",
                mode.name(),
            ],
        );
        assert!(out.status.success(), "pg_ctl stop: {}", describe(&out));
        self.running = false;
    }

    /// The postmaster's pid (first line of postmaster.pid).
    fn postmaster_pid(&self) -> u32 {
        let text = std::fs::read_to_string(self.data.join("postmaster.pid"))
            .expect("postmaster.pid (is PostgreSQL running?)");
        text.lines().next().unwrap().trim().parse().unwrap()
    }

    /// SIGSTOP to the postmaster and every process it forked (backends, checkpointer, WAL
    /// writer...). The postmaster is stopped first, so it forks nothing while we list its
    /// children; each backend is in its own process group, so the group cannot be signalled.
    pub fn freeze(&mut self) {
        assert!(self.frozen.is_empty(), "already frozen");
        let postmaster = self.postmaster_pid();
        signal("STOP", &[postmaster]);
        let children = children_of(postmaster);
        signal("STOP", &children);
        self.frozen = std::iter::once(postmaster).chain(children).collect();
    }

    /// SIGCONT to what `freeze` stopped (children first, postmaster last).
    pub fn thaw(&mut self) {
        if self.frozen.is_empty() {
            return;
        }
        let pids: Vec<u32> = self.frozen.drain(..).rev().collect();
        signal("CONT", &pids);
    }

    /// `postgres://` URL of `database` on this server.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// A direct connection (outside any pool), for checks such as `pg_stat_activity`.
    pub async fn sql(&self, database: &str) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url(database), tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connecting to the test PostgreSQL: {e}"));
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    }

    /// The log's last lines (for failure messages).
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// The whole server log.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for OwnPg {
    fn drop(&mut self) {
        self.thaw();
        if self.running {
            let _ = self.run(
                "pg_ctl",
                &[
                    "stop",
                    "-w",
                    "-t",
                    "30",
                    "-D",
                    path_str(&self.data),
                    "-m",
                    "immediate",
                ],
            );
        }
        if std::env::var_os("ROAMING_RELIABILITY_KEEP_PG").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

fn describe(out: &Output) -> String {
    format!(
        "{}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Pids whose parent is `parent` (from /proc/<pid>/stat).
fn children_of(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces, so read after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|s| s.parse::<u32>().ok());
        if ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
}

fn signal(name: &str, pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .args(pids.iter().map(|p| p.to_string()))
        .status()
        .expect("kill");
    // A backend may have exited between listing and signalling: not an error here.
    let _ = status;
}
