use crate::support::{
    INIT_SQL, TestDb, exists, history, legacy_checksum, migrate_like_the_legacy_runner,
};
use roaming_store::{Error, migrate};

#[tokio::test]
async fn a_database_left_by_the_legacy_runner_migrates_without_rerunning_init() {
    let db = TestDb::create().await;
    let mut client = db.connect().await;
    migrate_like_the_legacy_runner(&mut client, &legacy_checksum(INIT_SQL)).await;
    // Data written under the old runner: re-running init would fail on the existing tables.
    client
        .execute(
            "INSERT INTO conversations (conv_key, kind) VALUES ('g:legacy', 2)",
            &[],
        )
        .await
        .unwrap();

    // Init is carried over, not re-run; only the migrations after it are applied.
    assert_eq!(
        migrate::run(&mut client).await.unwrap(),
        migrate::migrations().len() - 1
    );

    let init = &migrate::migrations()[0];
    assert_eq!(
        history(&client).await[0],
        (1, "init".to_owned(), init.checksum().to_string())
    );
    // The carried row keeps the time the old runner applied it.
    let same_time: bool = client
        .query_one(
            "SELECT h.applied_on::timestamptz = l.applied_at
             FROM refinery_schema_history h JOIN roaming_migrations l USING (version)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(same_time);
    let kept: i64 = client
        .query_one("SELECT count(*) FROM conversations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, 1);
    // Left in place for replicas of the previous release.
    assert!(exists(&client, migrate::LEGACY_TABLE).await);

    // Carried once: the next start finds everything applied and carries nothing again.
    assert_eq!(migrate::run(&mut client).await.unwrap(), 0);
    assert_eq!(history(&client).await.len(), migrate::migrations().len());
}

#[tokio::test]
async fn a_legacy_database_whose_init_file_changed_is_refused() {
    let db = TestDb::create().await;
    let mut client = db.connect().await;
    migrate_like_the_legacy_runner(&mut client, &legacy_checksum("-- another file\n")).await;

    let err = migrate::run(&mut client).await.unwrap_err();
    assert!(
        matches!(&err, Error::Internal(m) if m.contains("V1__init was changed after it was applied")),
        "{err:?}"
    );
    // Nothing was carried over.
    assert!(!exists(&client, migrate::HISTORY_TABLE).await);
}

#[tokio::test]
async fn a_legacy_database_with_a_migration_newer_than_the_binary_is_refused() {
    let db = TestDb::create().await;
    let mut client = db.connect().await;
    migrate_like_the_legacy_runner(&mut client, &legacy_checksum(INIT_SQL)).await;
    client
        .execute(
            "INSERT INTO roaming_migrations (version, name, checksum) VALUES (999, 'future', '0')",
            &[],
        )
        .await
        .unwrap();

    let err = migrate::run(&mut client).await.unwrap_err();
    assert!(
        matches!(&err, Error::Internal(m) if m.contains("migration 999 (future)") && m.contains("newer than this binary")),
        "{err:?}"
    );
    assert!(!exists(&client, migrate::HISTORY_TABLE).await);
}
