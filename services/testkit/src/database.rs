//! Each test's own database, created and dropped through [`crate::admin_url`], on plain
//! PostgreSQL or on a Citus cluster.
//!
//! When the maintenance database behind `ROAMING_TEST_DATABASE_URL` has the `citus`
//! extension and its metadata names a coordinator and workers (`citus_set_coordinator_host`,
//! `citus_add_node`), every test database becomes a Citus database of the same cluster:
//! created on every node (`citus.enable_create_database_propagation`), the extension created
//! in it on every node, the coordinator and the workers registered in it. `roaming migrate`
//! (run by the server at start) then finds the extension and distributes the tables, as it
//! does in production. Nothing else in a test knows which one it runs on.

use std::time::Duration;
use tokio::sync::OnceCell;
use tokio_postgres::{Client, Config, NoTls};

/// The nodes of the Citus cluster the tests run on.
#[derive(Debug, Clone)]
pub struct Citus {
    /// The coordinator's host and port, as its metadata has them.
    pub coordinator: (String, u16),
    /// The primary workers' hosts and ports.
    pub workers: Vec<(String, u16)>,
    /// The `citus_version()` of the coordinator.
    pub version: String,
}

/// The Citus cluster behind [`crate::admin_url`], `None` on plain PostgreSQL (asked once per
/// process).
pub async fn citus() -> Option<&'static Citus> {
    static CITUS: OnceCell<Option<Citus>> = OnceCell::const_new();
    CITUS
        .get_or_init(|| async {
            let admin = connect(&admin_config()).await;
            let has_citus: bool = admin
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')",
                    &[],
                )
                .await
                .expect("reading the maintenance database's extensions")
                .get(0);
            if !has_citus {
                return None;
            }
            let nodes = admin
                .query(
                    "SELECT groupid, nodename, nodeport FROM pg_dist_node
                     WHERE noderole = 'primary' AND isactive ORDER BY groupid, nodeid",
                    &[],
                )
                .await
                .expect("reading the Citus metadata of the maintenance database");
            let node =
                |row: &tokio_postgres::Row| (row.get::<_, String>(1), row.get::<_, i32>(2) as u16);
            let coordinator = nodes
                .iter()
                .find(|r| r.get::<_, i32>(0) == 0)
                .map(node)
                .expect(
                    "the test database has the citus extension but no coordinator in its \
                     metadata: run citus_set_coordinator_host and citus_add_node there first",
                );
            let workers = nodes
                .iter()
                .filter(|r| r.get::<_, i32>(0) != 0)
                .map(node)
                .collect();
            let version = admin
                .query_one("SELECT citus_version()", &[])
                .await
                .expect("citus_version()")
                .get(0);
            Some(Citus {
                coordinator,
                workers,
                version,
            })
        })
        .await
        .as_ref()
}

/// Creates database `name` (on every node of a Citus cluster, with the extension and the
/// nodes registered in it).
pub async fn create(name: &str) {
    let admin = connect(&admin_config()).await;
    let quoted = quote_ident(name);
    let Some(cluster) = citus().await else {
        admin
            .batch_execute(&format!("CREATE DATABASE {quoted}"))
            .await
            .expect("CREATE DATABASE");
        return;
    };
    // CREATE DATABASE must be a statement of its own (no implicit transaction around it).
    admin
        .batch_execute("SET citus.enable_create_database_propagation = on")
        .await
        .expect("enabling database propagation");
    admin
        .batch_execute(&format!("CREATE DATABASE {quoted}"))
        .await
        .expect("CREATE DATABASE on the Citus cluster");
    // The coordinator checks each worker's extension when the worker is added.
    for (host, port) in &cluster.workers {
        let worker = connect(&node_config(host, *port, name)).await;
        worker
            .batch_execute("CREATE EXTENSION citus")
            .await
            .expect("CREATE EXTENSION citus on a worker");
    }
    let (host, port) = &cluster.coordinator;
    let coordinator = connect(&node_config(host, *port, name)).await;
    coordinator
        .batch_execute("CREATE EXTENSION citus")
        .await
        .expect("CREATE EXTENSION citus on the coordinator");
    coordinator
        .execute(
            "SELECT citus_set_coordinator_host($1, $2)",
            &[host, &i32::from(*port)],
        )
        .await
        .expect("citus_set_coordinator_host");
    for (host, port) in &cluster.workers {
        coordinator
            .execute("SELECT citus_add_node($1, $2)", &[host, &i32::from(*port)])
            .await
            .expect("citus_add_node");
    }
}

/// The URL of test database `name`: [`crate::admin_url`] with its database replaced, its
/// parameters (`?sslmode=...`) kept.
pub fn url(name: &str) -> String {
    let admin = crate::admin_url();
    let (path, query) = match admin.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (admin.as_str(), None),
    };
    let Some((base, _)) = path.rsplit_once('/') else {
        panic!("ROAMING_TEST_DATABASE_URL must end in /<database>");
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

/// [`create`] from synchronous code (on a thread of its own: the caller may be inside a
/// runtime).
pub fn create_blocking(name: &str) {
    let name = name.to_owned();
    std::thread::spawn(move || runtime().block_on(create(&name)))
        .join()
        .expect("creating the test database");
}

/// Drops database `name` (on every node of a Citus cluster), disconnecting its sessions;
/// failures are ignored (it may never have been created). Blocks, on a thread of its own:
/// called from `Drop`, which cannot await, while the test's runtime may be shutting down.
pub fn drop_blocking(name: &str) {
    let name = name.to_owned();
    let _ = std::thread::spawn(move || {
        runtime().block_on(async move {
            let Ok((admin, conn)) = admin_config().connect(NoTls).await else {
                return;
            };
            tokio::spawn(conn);
            if citus().await.is_some() {
                let _ = admin
                    .batch_execute("SET citus.enable_create_database_propagation = on")
                    .await;
            }
            let _ = admin
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    quote_ident(&name)
                ))
                .await;
        })
    })
    .join();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

fn admin_config() -> Config {
    crate::admin_url()
        .parse()
        .expect("ROAMING_TEST_DATABASE_URL is a PostgreSQL URL")
}

/// The admin URL's credentials, for database `name` on another node.
fn node_config(host: &str, port: u16, name: &str) -> Config {
    let admin = admin_config();
    let mut config = Config::new();
    if let Some(user) = admin.get_user() {
        config.user(user);
    }
    if let Some(password) = admin.get_password() {
        config.password(password);
    }
    config
        .host(host)
        .port(port)
        .dbname(name)
        .connect_timeout(Duration::from_secs(30));
    config
}

async fn connect(config: &Config) -> Client {
    let (client, conn) = config
        .connect(NoTls)
        .await
        .expect("the test database (see roaming_testkit::admin_url) must accept connections");
    tokio::spawn(conn);
    client
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
