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

use tokio::sync::OnceCell;

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
            let admin = admin().await;
            let (coordinator, workers) = roaming_store::citus::cluster(&admin)
                .await
                .expect("reading the maintenance database's Citus metadata")?;
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

/// Creates database `name` as `roaming serve` creates a missing one
/// (`roaming_store::citus::create_database`: on a Citus coordinator, on the whole cluster).
pub async fn create(name: &str) {
    roaming_store::citus::create_database(&admin().await, &admin_config(), name)
        .await
        .unwrap_or_else(|e| panic!("creating test database {name}: {e}"));
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
            let Ok(admin) = roaming_store::db::connect(&admin_config()).await else {
                return;
            };
            let _ = roaming_store::citus::drop_database(&admin, &name).await;
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

fn admin_config() -> roaming_store::db::DbConfig {
    roaming_store::db::parse_url(&crate::admin_url())
        .expect("ROAMING_TEST_DATABASE_URL is a PostgreSQL URL")
}

/// A connection to the maintenance database.
async fn admin() -> tokio_postgres::Client {
    roaming_store::db::connect(&admin_config())
        .await
        .expect("the test database (see roaming_testkit::admin_url) must accept connections")
}
