//! `roaming dev`: the real binary makes a private PostgreSQL cluster from the installed
//! binaries, serves over it, and stops it on SIGTERM; after a crash (SIGKILL, a stale
//! `postmaster.pid`) the next start still works and the data is kept. With no binaries it
//! says what to install.

use crate::helpers::*;
use roaming::local_pg;
use roaming_client::proto::common::v1::ConversationType;
use roaming_client::proto::history::v1 as hpb;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

const DEV_SECRET: &str = "dev-secret-change-me-0123456789abcdef";

fn roaming() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_roaming"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("ROAMING_JWT_SECRET", DEV_SECRET);
    cmd
}

/// `roaming dev --data-dir dir` on `addr`, its log appended to `log`; returns once its
/// health check answers SERVING.
async fn start_dev(dir: &Path, addr: &str, log: &Path) -> Child {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut child = roaming()
        .args(["dev", "--data-dir"])
        .arg(dir)
        .args(["--listen-addr", addr])
        .stderr(Stdio::from(log_file))
        .kill_on_drop(true)
        .spawn()
        .expect("roaming dev starts");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("roaming dev exited with {status}: {}", read(log));
        }
        if health(addr).await == Some(1) {
            return child;
        }
        assert!(
            Instant::now() < deadline,
            "roaming dev not serving within 90 s: {}",
            read(log)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn health(addr: &str) -> Option<i32> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .ok()?
        .connect_timeout(Duration::from_secs(1))
        .connect()
        .await
        .ok()?;
    tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .ok()
        .map(|r| r.into_inner().status)
}

/// A token minted by `roaming token` (as the README does).
async fn token(args: &[&str]) -> String {
    let out = roaming().arg("token").args(args).output().await.unwrap();
    assert!(out.status.success(), "roaming token: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The port in `postmaster.pid` (its fourth line) while the cluster runs.
fn cluster_port(dir: &Path) -> u16 {
    read(&dir.join("data/postmaster.pid"))
        .lines()
        .nth(3)
        .and_then(|l| l.trim().parse().ok())
        .expect("postmaster.pid names the port")
}

/// SIGTERM, a clean exit, and the cluster stopped: no postmaster.pid, its port closed.
async fn terminate(mut child: Child, dir: &Path, log: &Path) {
    let pg_port = cluster_port(dir);
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("roaming dev exits within 60 s of SIGTERM")
        .unwrap();
    assert!(
        exit.success(),
        "roaming dev exited with {exit}: {}",
        read(log)
    );
    assert!(
        !dir.join("data/postmaster.pid").exists(),
        "the cluster still runs after exit: {}",
        read(log)
    );
    assert!(
        local_pg::Cluster::wait_port_closed(pg_port, Duration::from_secs(10)),
        "something still listens on the cluster's port {pg_port}"
    );
    assert!(
        read(log).contains("private PostgreSQL stopped"),
        "{}",
        read(log)
    );
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn dev_serves_over_a_private_cluster_stops_it_on_sigterm_and_survives_a_crash() {
    let tmp = TempDir(std::env::temp_dir().join(format!(
        "roaming-dev-test-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    )));
    std::fs::create_dir_all(&tmp.0).unwrap();
    let dir = tmp.0.join("cluster");
    let log = tmp.0.join("roaming.log");
    let addr = format!("127.0.0.1:{}", local_pg::free_port());

    // First run: initdb, start, migrate, serve; one append and one fetch with dev tokens.
    let child = start_dev(&dir, &addr, &log).await;
    let endpoint = format!("http://{addr}");
    let gateway = roaming_client::Client::builder(endpoint.clone())
        .token(token(&["--sub", "gateway", "--role", "service"]).await)
        .connect()
        .await
        .unwrap();
    gateway
        .history()
        .append_messages(one_message(
            ConversationType::Peer,
            "alice",
            "bob",
            "hi bob",
            "c-1",
        ))
        .await
        .expect("append");
    let alice_token = token(&["--sub", "alice"]).await;
    let fetch = async |endpoint: &str| {
        let alice = roaming_client::Client::builder(endpoint.to_owned())
            .token(alice_token.clone())
            .connect()
            .await
            .unwrap();
        let pages = fetch_pages(
            &alice,
            hpb::FetchHistoryRequest {
                conversation: Some(peer("bob")),
                ..Default::default()
            },
        )
        .await
        .expect("fetch");
        bodies(
            &pages
                .into_iter()
                .flat_map(|p| p.messages)
                .collect::<Vec<_>>(),
        )
    };
    assert_eq!(fetch(&endpoint).await, ["hi bob"]);
    assert!(dir.join("data/postmaster.pid").exists());

    // A crash of roaming itself: SIGKILL leaves the cluster running; the next start stops
    // that leftover, starts its own, and the message is still there.
    let mut crashed = child;
    crashed.kill().await.unwrap();
    assert!(dir.join("data/postmaster.pid").exists(), "left running");
    let child = start_dev(&dir, &addr, &log).await;
    assert_eq!(fetch(&endpoint).await, ["hi bob"]);
    terminate(child, &dir, &log).await;

    // A stale postmaster.pid (a machine crash; its pid now some other process's: pid 1).
    std::fs::write(dir.join("data/postmaster.pid"), "1\n").unwrap();
    let child = start_dev(&dir, &addr, &log).await;
    assert_eq!(fetch(&endpoint).await, ["hi bob"]);
    terminate(child, &dir, &log).await;
    assert!(
        read(&log).contains("stale postmaster.pid"),
        "{}",
        read(&log)
    );
}

#[tokio::test]
async fn dev_without_postgresql_binaries_says_what_to_install() {
    let empty = TempDir(std::env::temp_dir().join(format!(
        "roaming-dev-nobin-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    )));
    std::fs::create_dir_all(&empty.0).unwrap();
    let out = roaming()
        .env("ROAMING_PG_BIN", &empty.0)
        .args(["dev", "--data-dir"])
        .arg(empty.0.join("cluster"))
        .args(["--listen-addr", "127.0.0.1:0"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("apt-get install postgresql-15") && stderr.contains("ROAMING_PG_BIN"),
        "{stderr}"
    );
}
