//! A fresh database per test, the legacy runner's setup, and small queries on the history.

use roaming_store::db;
use tokio_postgres::Client;

/// Where tests create their databases (the server's maintenance database): the testkit's
/// choice (`ROAMING_TEST_DATABASE_URL`, else 127.0.0.1:5432, else a private cluster).
pub fn admin_url() -> String {
    roaming_testkit::admin_url()
}

/// The init migration's SQL, as the previous runner embedded it.
pub const INIT_SQL: &str = include_str!("../../migrations/V1__init.sql");

/// A database of its own, dropped (even after a failed assertion) when this is dropped.
pub struct TestDb {
    name: String,
    config: db::DbConfig,
}

impl TestDb {
    /// Creates a database with a random name through the maintenance database.
    pub async fn create() -> TestDb {
        let name = format!("roaming_migrate_test_{:016x}", rand::random::<u64>());
        roaming_testkit::database::create(&name).await;
        let admin_config = db::parse_url(&admin_url()).unwrap();
        let mut config = admin_config;
        config.pg.dbname(&name);
        TestDb { name, config }
    }

    /// A new connection to the database.
    pub async fn connect(&self) -> Client {
        db::connect(&self.config).await.unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        roaming_testkit::database::drop_blocking(&self.name);
    }
}

/// The previous runner's checksum: FNV-1a over the file, as hex (copied from it on purpose,
/// so these tests pin the format that databases in the field hold).
pub fn legacy_checksum(sql: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in sql.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// Migrates the way the previous runner did: under its transaction-scoped lock, create
/// `roaming_migrations`, run 0001_init.sql and record it with the given checksum.
pub async fn migrate_like_the_legacy_runner(client: &mut Client, checksum: &str) {
    let tx = client.transaction().await.unwrap();
    tx.execute(
        "SELECT pg_advisory_xact_lock($1)",
        &[&roaming_store::migrate::LOCK_KEY],
    )
    .await
    .unwrap();
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS roaming_migrations (
             version    integer PRIMARY KEY,
             name       text    NOT NULL,
             checksum   text    NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await
    .unwrap();
    tx.batch_execute(INIT_SQL).await.unwrap();
    tx.execute(
        "INSERT INTO roaming_migrations (version, name, checksum) VALUES ($1, $2, $3)",
        &[&1i32, &"init", &checksum],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

/// `(version, name, checksum)` of every row in refinery's history, in version order.
pub async fn history(client: &Client) -> Vec<(i32, String, String)> {
    triples(
        client,
        "SELECT version, name, checksum FROM refinery_schema_history ORDER BY version",
    )
    .await
}

/// The rows of a query of three columns.
pub async fn triples<A, B, C>(client: &Client, query: &str) -> Vec<(A, B, C)>
where
    A: for<'a> tokio_postgres::types::FromSql<'a>,
    B: for<'a> tokio_postgres::types::FromSql<'a>,
    C: for<'a> tokio_postgres::types::FromSql<'a>,
{
    client
        .query(query, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

/// Whether a table (or other relation) of that name exists.
pub async fn exists(client: &Client, relation: &str) -> bool {
    client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&relation])
        .await
        .unwrap()
        .get(0)
}

/// The tables the init migration creates.
pub const INIT_TABLES: [&str; 4] = [
    "conversations",
    "messages",
    "user_conversations",
    "tombstones",
];

/// Whether another session could take the migration lock right now (it releases it again).
pub async fn lock_is_free(db: &TestDb) -> bool {
    let other = db.connect().await;
    let free: bool = other
        .query_one(
            "SELECT pg_try_advisory_lock($1)",
            &[&roaming_store::migrate::LOCK_KEY],
        )
        .await
        .unwrap()
        .get(0);
    if free {
        other
            .execute(
                "SELECT pg_advisory_unlock($1)",
                &[&roaming_store::migrate::LOCK_KEY],
            )
            .await
            .unwrap();
    }
    free
}
