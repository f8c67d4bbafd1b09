use crate::support::{INIT_SQL, TestDb, lock_is_free};
use roaming_store::{Error, migrate};
use std::time::Duration;

#[tokio::test]
async fn a_changed_applied_migration_is_refused() {
    let db = TestDb::create().await;
    let mut client = db.connect().await;
    migrate::run(&mut client).await.unwrap();
    // As if V1__init.sql had been edited after this database applied it: the history holds
    // the checksum of the file as it was then.
    let earlier =
        refinery::Migration::unapplied("V1__init", &format!("{INIT_SQL}-- edited\n")).unwrap();
    client
        .execute(
            "UPDATE refinery_schema_history SET checksum = $1 WHERE version = 1",
            &[&earlier.checksum().to_string()],
        )
        .await
        .unwrap();

    let err = migrate::run(&mut client).await.unwrap_err();
    assert!(
        matches!(&err, Error::Internal(m) if m.contains("V1__init was changed after it was applied")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_database_with_a_migration_newer_than_the_binary_is_refused() {
    let db = TestDb::create().await;
    let mut client = db.connect().await;
    migrate::run(&mut client).await.unwrap();
    client
        .execute(
            "INSERT INTO refinery_schema_history (version, name, applied_on, checksum)
             VALUES (999, 'future', '2030-01-01T00:00:00Z', '1')",
            &[],
        )
        .await
        .unwrap();

    let err = migrate::run(&mut client).await.unwrap_err();
    assert!(
        matches!(&err, Error::Internal(m) if m.contains("V999__future") && m.contains("newer than this binary")),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_lock_is_released_when_a_run_is_refused() {
    let db = TestDb::create().await;
    let mut client = db.connect().await;
    migrate::run(&mut client).await.unwrap();
    client
        .execute("UPDATE refinery_schema_history SET checksum = '1'", &[])
        .await
        .unwrap();

    migrate::run(&mut client).await.unwrap_err();
    // The refusing connection is still open, yet another session can take the lock.
    assert!(lock_is_free(&db).await);
}

#[tokio::test]
async fn a_lost_connection_is_reported_as_unavailable() {
    let db = TestDb::create().await;
    let mut client = db.connect().await;
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let other = db.connect().await;
    other
        .execute("SELECT pg_terminate_backend($1::integer)", &[&pid])
        .await
        .unwrap();
    // Let the termination reach the client's connection.
    for _ in 0..50 {
        if client.is_closed() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let err = migrate::run(&mut client).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
}
