use crate::support::{INIT_TABLES, TestDb, exists, history, lock_is_free};
use roaming_store::migrate;

#[tokio::test]
async fn a_fresh_database_is_migrated_and_a_second_run_applies_nothing() {
    let db = TestDb::create().await;
    let mut client = db.connect().await;

    let embedded = migrate::migrations();
    assert_eq!(migrate::run(&mut client).await.unwrap(), embedded.len());
    for table in INIT_TABLES {
        assert!(exists(&client, table).await, "{table} was not created");
    }
    let expected: Vec<_> = embedded
        .iter()
        .map(|m| (m.version(), m.name().to_owned(), m.checksum().to_string()))
        .collect();
    assert_eq!(history(&client).await, expected);
    assert!(!exists(&client, migrate::LEGACY_TABLE).await);

    assert_eq!(migrate::run(&mut client).await.unwrap(), 0);
    assert_eq!(history(&client).await, expected);
}

#[tokio::test]
async fn the_lock_is_released_after_a_run() {
    let db = TestDb::create().await;
    let mut client = db.connect().await;
    migrate::run(&mut client).await.unwrap();
    // The connection that ran the migrations is still open: the lock must not be kept.
    assert!(lock_is_free(&db).await);
}
