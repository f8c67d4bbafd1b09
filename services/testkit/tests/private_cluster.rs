//! The testkit's fallback: with no test database configured and nothing on 127.0.0.1:5432, a
//! test process gets a private cluster of its own, used by its tests and stopped once the
//! process has ended.

use roaming_client::proto::common::v1::ConversationType;
use roaming_client::proto::history::v1 as hpb;
use roaming_testkit::{TestApp, TestDatabase, bodies, choose_test_database, peer};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// Set in the child process that `a_test_process_..._is_stopped_after_it` starts.
const CHILD: &str = "ROAMING_TESTKIT_FALLBACK_CHILD";
/// What the child prints: the cluster's port and directory.
const READY: &str = "PRIVATE-CLUSTER";

#[test]
fn the_database_is_the_configured_one_else_5432_when_it_listens_else_a_private_cluster() {
    let listening = TcpListener::bind("127.0.0.1:0").unwrap();
    let open = listening.local_addr().unwrap();
    let closed: SocketAddr = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    assert_eq!(choose_test_database(None, open), TestDatabase::Local);
    assert_eq!(choose_test_database(None, closed), TestDatabase::Private);
    assert_eq!(
        choose_test_database(Some(""), closed),
        TestDatabase::Private
    );
    assert_eq!(
        choose_test_database(Some("private"), open),
        TestDatabase::Private
    );
    // A configured URL is used as it is, even when the server it names is down.
    let url = format!("postgres://postgres@{closed}/postgres");
    assert_eq!(
        choose_test_database(Some(&url), open),
        TestDatabase::Configured(url.clone())
    );
}

#[test]
fn a_test_process_with_no_database_runs_on_a_private_cluster_that_is_stopped_after_it() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_stores_and_reads_through_the_private_cluster",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .env("ROAMING_TEST_DATABASE_URL", "private")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("1 passed"),
        "the child ran its test:\n{stdout}"
    );
    let ready = stdout
        .lines()
        .find_map(|l| l.split_once(READY).map(|(_, rest)| rest.trim().to_owned()))
        .unwrap_or_else(|| panic!("the child names its cluster:\n{stdout}\n{stderr}"));
    let (port, dir) = ready.split_once(' ').unwrap();
    let port: u16 = port.parse().unwrap();
    let dir = PathBuf::from(dir);
    // The child has exited: its watcher stops the cluster and removes its directory.
    let deadline = Instant::now() + Duration::from_secs(60);
    while dir.exists() || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(
            Instant::now() < deadline,
            "the private cluster at {} (port {port}) outlived its process by 60 s",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Run only by the test above, in a process of its own.
#[tokio::test]
#[ignore = "run by a_test_process_with_no_database_runs_on_a_private_cluster_that_is_stopped_after_it"]
async fn child_stores_and_reads_through_the_private_cluster() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let app = TestApp::spawn().await;
    let cluster = roaming_testkit::private_cluster();
    assert_eq!(
        roaming_testkit::admin_url(),
        format!("postgres://postgres@127.0.0.1:{}/postgres", cluster.port())
    );
    app.send(ConversationType::Peer, "alice", "bob", "hi bob")
        .await;
    let history = app
        .fetch_all("alice", peer("bob"), hpb::Direction::Backward)
        .await;
    assert_eq!(bodies(&history), ["hi bob"]);
    // A second test app of the same process shares the cluster.
    let other = TestApp::spawn().await;
    assert_eq!(
        other
            .fetch_all("alice", peer("bob"), hpb::Direction::Backward)
            .await
            .len(),
        0
    );
    println!("{READY} {} {}", cluster.port(), cluster.dir().display());
}
