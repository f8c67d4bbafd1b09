//! A private PostgreSQL per test: a `roaming::local_pg` cluster (initdb + pg_ctl, the same
//! code `roaming dev` and the testkit's fallback use) in a temporary directory, on a free
//! loopback port, so a test can stop, crash, freeze and restart it without disturbing anyone.
//!
//! initdb refuses to run as root, so when the tests run as root (CI does) every PostgreSQL
//! command runs as the `postgres` user through `runuser`, and the directory belongs to it.
//! The binaries are found as `local_pg` finds them (`ROAMING_PG_BIN`, `pg_config --bindir`,
//! `PATH`, `/usr/lib/postgresql/*/bin`).

use roaming::local_pg::Cluster;
pub use roaming::local_pg::StopMode;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

static COUNTER: AtomicU32 = AtomicU32::new(0);

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
    cluster: Cluster,
    pub port: u16,
    frozen: Vec<u32>,
}

impl OwnPg {
    /// initdb + start. Panics (with the log) when PostgreSQL cannot be started.
    pub fn start() -> OwnPg {
        Self::start_with(Setup::default())
    }

    /// initdb, then `setup`'s configuration and files, then start.
    pub fn start_with(setup: Setup<'_>) -> OwnPg {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!(
            "roaming-faults-{}-{n}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let conf = format!(
            "# roaming reliability tests\nfsync = on\nsynchronous_commit = on\n\
             shared_buffers = 32MB\n{}",
            setup.conf
        );
        let mut cluster =
            Cluster::init(&dir, &conf).unwrap_or_else(|e| panic!("private PostgreSQL: {e:#}"));
        if let Some(hba) = setup.hba {
            std::fs::write(cluster.data_dir().join("pg_hba.conf"), hba).unwrap();
        }
        for (name, contents) in setup.files {
            write_private(&cluster, name, contents);
        }
        cluster
            .start(None)
            .unwrap_or_else(|e| panic!("could not start PostgreSQL: {e:#}"));
        OwnPg {
            port: cluster.port(),
            cluster,
            frozen: Vec::new(),
        }
    }

    /// Starts it again on the same port (after a stop or a crash: then it replays the WAL).
    /// Returns when pg_ctl says it accepts connections.
    pub fn start_again(&mut self) {
        assert!(!self.cluster.is_running(), "already running");
        for _ in 0..20 {
            if self.cluster.start(Some(self.port)).is_ok() {
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
        self.cluster.stop(mode).unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// The postmaster's pid (first line of postmaster.pid).
    fn postmaster_pid(&self) -> u32 {
        self.cluster
            .postmaster_pid()
            .expect("postmaster.pid (is PostgreSQL running?)")
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
        self.cluster.log_tail()
    }

    /// The whole server log.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.cluster.log_path()).unwrap_or_default()
    }
}

impl Drop for OwnPg {
    fn drop(&mut self) {
        self.thaw();
        let _ = self.cluster.stop(StopMode::Immediate);
        if std::env::var_os("ROAMING_RELIABILITY_KEEP_PG").is_none() {
            let _ = std::fs::remove_dir_all(self.cluster.dir());
        }
    }
}

/// Writes `name` into the data directory, mode 0600, owned by the server's user.
fn write_private(cluster: &Cluster, name: &str, contents: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    let path = cluster.data_dir().join(name);
    std::fs::write(&path, contents).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    cluster
        .chown_to_server_user(&path)
        .unwrap_or_else(|e| panic!("{e:#}"));
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
