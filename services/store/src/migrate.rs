//! Schema migrations: embedded SQL files applied in order, once, under an advisory lock.
//!
//! Every replica runs `migrate` at start. The transaction-scoped advisory lock makes the
//! others wait until the first has finished; they then find nothing left to apply. Applied
//! migrations are recorded with a checksum, and a changed file is refused rather than
//! silently skipped.

use crate::error::{Error, Result};

/// `(version, name, sql)` of every migration, in order.
pub const MIGRATIONS: &[(i32, &str, &str)] =
    &[(1, "init", include_str!("../migrations/0001_init.sql"))];

/// Arbitrary but fixed: the advisory lock key that serialises migrators.
const LOCK_KEY: i64 = 0x0052_6f61_6d69_6e67; // "Roaming"

/// Applies every pending migration; returns how many were applied.
pub async fn run(client: &mut tokio_postgres::Client) -> Result<usize> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS roaming_migrations (
             version    integer PRIMARY KEY,
             name       text    NOT NULL,
             checksum   text    NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await?;
    let applied = tx
        .query("SELECT version, checksum FROM roaming_migrations", &[])
        .await?;
    let mut count = 0;
    for (version, name, sql) in MIGRATIONS {
        let sum = checksum(sql);
        match applied.iter().find(|r| r.get::<_, i32>(0) == *version) {
            Some(row) if row.get::<_, String>(1) == sum => continue,
            Some(_) => {
                return Err(Error::Internal(format!(
                    "migration {version} ({name}) was changed after it was applied"
                )));
            }
            None => {}
        }
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO roaming_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            &[version, name, &sum],
        )
        .await?;
        tracing::info!(version, name, "applied migration");
        count += 1;
    }
    let newest: Option<i32> = tx
        .query_one("SELECT max(version) FROM roaming_migrations", &[])
        .await?
        .get(0);
    let known = MIGRATIONS.last().map(|m| m.0);
    if newest > known {
        return Err(Error::Internal(format!(
            "the database has migration {newest:?}, newer than this binary knows ({known:?})"
        )));
    }
    tx.commit().await?;
    Ok(count)
}

/// FNV-1a over the file: stable across builds and platforms, enough to notice an edit.
fn checksum(sql: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in sql.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}
