//! Schema migrations, run by [refinery](https://docs.rs/refinery) under an advisory lock.
//!
//! The SQL files in `migrations/` (`V{version}__{name}.sql`) are embedded at build time.
//! Every replica calls [`run`] at start; it takes a session-level PostgreSQL advisory lock
//! ([`LOCK_KEY`]) on its connection, so replicas starting together wait for the first one and
//! then find nothing left to apply. Refinery applies each pending migration in its own
//! transaction and records it in [`HISTORY_TABLE`], with a checksum of its name, version and
//! SQL. It refuses a database whose applied migration differs from the embedded file
//! (divergent) and one that has a migration this binary does not know (missing).
//!
//! Databases migrated by the hand-rolled runner this replaced have their applied versions in
//! [`LEGACY_TABLE`]; [`run`] carries them over into refinery's table, inside the lock, before
//! refinery runs (see `carry_over_legacy`).

use crate::error::{Error, Result};
use refinery::{Migration, Runner};
use tokio_postgres::Client;

#[allow(unused_imports)] // the macro imports more than it uses
mod embedded {
    refinery::embed_migrations!("migrations");
}

/// The advisory lock key that serialises migrators. Arbitrary but fixed ("Roaming"): the
/// previous runner took the same key (transaction-scoped), so an old and a new binary
/// starting together exclude each other too.
pub const LOCK_KEY: i64 = 0x0052_6f61_6d69_6e67;

/// Refinery's history table (its default name, set explicitly so it cannot drift).
pub const HISTORY_TABLE: &str = "refinery_schema_history";

/// The previous runner's history table: `(version, name, checksum, applied_at)`, with an
/// FNV-1a checksum of the file. Read, never written.
pub const LEGACY_TABLE: &str = "roaming_migrations";

/// Refinery's own `CREATE TABLE IF NOT EXISTS` for [`HISTORY_TABLE`] (INT4 versions), so the
/// carry-over can fill it before refinery first runs; refinery's statement then does nothing.
const CREATE_HISTORY_TABLE: &str = "CREATE TABLE IF NOT EXISTS refinery_schema_history(
             version INT4 PRIMARY KEY,
             name VARCHAR(255),
             applied_on VARCHAR(255),
             checksum VARCHAR(255));";

/// Applies every pending migration on `client`'s database; returns how many were applied
/// (0 when the database is up to date, as for every replica but the first).
///
/// Holds the advisory lock [`LOCK_KEY`] for the whole run and releases it before returning,
/// on success and on error alike. Connection failures are [`Error::Unavailable`] (the server
/// retries them at start); a changed applied migration, a migration newer than this binary
/// and a failing migration are [`Error::Internal`]. If the returned future is dropped midway,
/// the lock stays with the session until the connection closes.
pub async fn run(client: &mut Client) -> Result<usize> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await?;
    let outcome = run_locked(client).await;
    // A failed migration's transaction has been rolled back by now (the driver queues the
    // ROLLBACK ahead of this statement on the same connection), so the unlock can run.
    let unlocked = client
        .query_one("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await;
    match (outcome, unlocked) {
        (Ok(applied), Ok(row)) => {
            if !row.get::<_, bool>(0) {
                tracing::warn!("the migration lock was not held when releasing it");
            }
            Ok(applied)
        }
        (Ok(_), Err(e)) => Err(e.into()),
        // The migration's error is the one worth reporting. If the unlock failed too, the
        // connection is most likely gone, and the server drops a session's locks with it.
        (Err(e), unlocked) => {
            if let Err(unlock) = unlocked {
                tracing::debug!(error = %unlock, "releasing the migration lock failed");
            }
            Err(e)
        }
    }
}

/// The embedded migrations, for inspection (versions, names, checksums).
pub fn migrations() -> Vec<Migration> {
    // In version order: the embedding does not promise one.
    let mut migrations = runner().get_migrations().clone();
    migrations.sort_by_key(|m| m.version());
    migrations
}

/// Refinery's runner over the embedded files, with its checks spelled out (they are also its
/// defaults): refuse divergent and missing migrations, one transaction per migration.
fn runner() -> Runner {
    let mut runner = embedded::migrations::runner()
        .set_abort_divergent(true)
        .set_abort_missing(true)
        .set_grouped(false);
    runner.set_migration_table_name(HISTORY_TABLE);
    runner
}

async fn run_locked(client: &mut Client) -> Result<usize> {
    let runner = runner();
    carry_over_legacy(client, runner.get_migrations()).await?;
    let citus = crate::citus::is_citus(client).await?;
    let report = match runner.run_async(client).await {
        Ok(report) => report,
        Err(e) => {
            let err = from_refinery(e);
            return Err(if citus { on_citus(err) } else { err });
        }
    };
    let applied = report.applied_migrations();
    for m in applied {
        tracing::info!(version = m.version(), name = m.name(), "applied migration");
    }
    // After the migrations (they create the tables), under the same lock: a replica starting
    // next finds the tables distributed and does nothing.
    crate::citus::distribute(client).await?;
    Ok(applied.len())
}

/// A migration that failed on a Citus cluster: refused with what to do, since the cause is
/// most often a statement that Citus cannot run on distributed tables (the failed migration
/// was rolled back; nothing was applied after it).
fn on_citus(err: Error) -> Error {
    match err {
        Error::Internal(m) => Error::Internal(format!(
            "a migration failed on this Citus cluster and was rolled back: {m} (Citus cannot \
             run every statement on distributed tables; see the store's docs/schema.md, \
             Distribution (Citus))"
        )),
        other => other,
    }
}

/// Copies the versions recorded in [`LEGACY_TABLE`] into [`HISTORY_TABLE`], with refinery's
/// checksum of the same embedded file and the original time, in one transaction. Runs under
/// the migration lock, on every start while the legacy table exists: rows refinery already
/// has are left alone, so it is idempotent.
///
/// Each legacy row is checked as the old runner would have: a version this binary does not
/// know, or a file whose FNV-1a checksum no longer matches, is refused instead of carried.
///
/// The legacy table is left in place, not dropped: during a rolling upgrade (or a rollback)
/// replicas of the previous release still start, and their runner needs `roaming_migrations`
/// with version 1, or it would run the init migration again and fail on every start. The
/// table is one row, read only here; a later migration can drop it once no binary older than
/// this one can be deployed.
async fn carry_over_legacy(client: &mut Client, migrations: &[Migration]) -> Result<()> {
    let legacy: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&LEGACY_TABLE])
        .await?
        .get(0);
    if !legacy {
        return Ok(());
    }
    let tx = client.transaction().await?;
    // RFC 3339 in UTC: refinery parses `applied_on` in that format (and panics otherwise).
    let rows = tx
        .query(
            "SELECT version, name, checksum,
                    to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')
             FROM roaming_migrations ORDER BY version",
            &[],
        )
        .await?;
    tx.batch_execute(CREATE_HISTORY_TABLE).await?;
    let mut carried = 0;
    for row in rows {
        let version: i32 = row.get(0);
        let name: String = row.get(1);
        let checksum: String = row.get(2);
        let applied_on: String = row.get(3);
        let Some(file) = migrations.iter().find(|m| m.version() == version) else {
            return Err(Error::Internal(format!(
                "the database has migration {version} ({name}) in {LEGACY_TABLE}, \
                 which this binary does not know: it is newer than this binary"
            )));
        };
        if fnv1a(file.sql().unwrap_or_default()) != checksum {
            return Err(Error::Internal(format!(
                "migration {file} was changed after it was applied \
                 (its checksum in {LEGACY_TABLE} no longer matches the file)"
            )));
        }
        carried += tx
            .execute(
                "INSERT INTO refinery_schema_history (version, name, applied_on, checksum)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (version) DO NOTHING",
                &[
                    &version,
                    &file.name(),
                    &applied_on,
                    &file.checksum().to_string(),
                ],
            )
            .await?;
    }
    tx.commit().await?;
    if carried > 0 {
        tracing::info!(
            carried,
            "carried migrations applied by the previous runner over to {HISTORY_TABLE}"
        );
    }
    Ok(())
}

/// The previous runner's checksum: FNV-1a over the file, as hex.
fn fnv1a(sql: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in sql.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// Maps refinery's error to the store's. A driver error anywhere in its chain is classified
/// as any other (so a lost connection stays [`Error::Unavailable`]), prefixed with refinery's
/// context; refused histories get a message that says what to do.
fn from_refinery(err: refinery::Error) -> Error {
    use refinery::error::Kind;

    let mut context = Vec::new();
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(current) = cause {
        if let Some(pg) = current.downcast_ref::<tokio_postgres::Error>() {
            return prefixed(Error::from_postgres(pg), &context.join(": "));
        }
        if let Some(refinery) = current.downcast_ref::<refinery::Error>() {
            match refinery.kind() {
                Kind::Connection(message, _) => context.push(message.as_str()),
                Kind::DivergentVersion(applied, file) => {
                    return Error::Internal(format!(
                        "migration {file} was changed after it was applied (the database has \
                         {applied} with checksum {}, the file's is {}): restore the file and \
                         put the change in a new migration",
                        applied.checksum(),
                        file.checksum()
                    ));
                }
                // Read from the database: applied there, unknown here.
                Kind::MissingVersion(m) if m.applied_on().is_some() => {
                    return Error::Internal(format!(
                        "the database has migration {m}, which this binary does not know: \
                         it is newer than this binary (or its file was removed)"
                    ));
                }
                Kind::MissingVersion(m) => {
                    return Error::Internal(format!(
                        "migration {m} is not applied but the database already has newer \
                         ones: give it a version above the newest applied"
                    ));
                }
                _ => {}
            }
        }
        cause = current.source();
    }
    Error::Internal(format!("migrations: {err}"))
}

fn prefixed(err: Error, context: &str) -> Error {
    if context.is_empty() {
        return err;
    }
    match err {
        Error::Unavailable(m) => Error::Unavailable(format!("{context}: {m}")),
        Error::Cancelled(m) => Error::Cancelled(format!("{context}: {m}")),
        Error::Internal(m) => Error::Internal(format!("{context}: {m}")),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_migration_failing_on_citus_is_refused_saying_so_and_a_lost_connection_stays_retryable() {
        let refused = on_citus(Error::Internal(
            "0A000: cannot run this on a distributed table".into(),
        ));
        let Error::Internal(message) = refused else {
            panic!("{refused:?}")
        };
        assert!(message.starts_with("a migration failed on this Citus cluster"));
        assert!(message.contains("0A000: cannot run this on a distributed table"));
        assert!(matches!(
            on_citus(Error::Unavailable("gone".into())),
            Error::Unavailable(m) if m == "gone"
        ));
    }

    #[test]
    fn the_embedded_migrations_start_with_init() {
        let all = migrations();
        assert_eq!(all[0].version(), 1);
        assert_eq!(all[0].name(), "init");
    }

    #[tokio::test]
    async fn a_connection_failure_inside_refinery_stays_unavailable() {
        use refinery::error::WrapMigrationError;
        // Nothing listens on port 1: a driver error with an I/O cause, as for a lost server.
        let pg = tokio_postgres::connect("host=127.0.0.1 port=1 user=x", tokio_postgres::NoTls)
            .await
            .err()
            .expect("nothing listens on 127.0.0.1:1");
        // Wrapped twice, as refinery does when reading the history fails.
        let err = Err::<(), _>(pg)
            .migration_err("error getting applied migrations", None)
            .migration_err("error getting current schema version", None)
            .unwrap_err();
        match from_refinery(err) {
            Error::Unavailable(m) => assert!(
                m.starts_with(
                    "error getting current schema version: error getting applied migrations: "
                ),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_init_file_still_has_the_checksum_the_previous_runner_recorded() {
        // 0001_init.sql was renamed to V1__init.sql, not edited: databases migrated by the
        // previous runner hold this checksum, and the carry-over compares against it.
        assert_eq!(fnv1a(migrations()[0].sql().unwrap()), "1d0c2d2093107095");
    }
}
