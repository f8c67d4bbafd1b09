use crate::support::{INIT_TABLES, TestDb, history};
use roaming_store::migrate;
use std::sync::Arc;
use tokio::sync::Barrier;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_runners_starting_at_once_all_succeed_and_the_schema_exists_once() {
    const RUNNERS: usize = 8;
    let db = TestDb::create().await;
    let mut clients = Vec::new();
    for _ in 0..RUNNERS {
        clients.push(db.connect().await);
    }
    let start = Arc::new(Barrier::new(RUNNERS));
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                migrate::run(&mut client).await
            })
        })
        .collect();
    let mut applied = Vec::new();
    for task in tasks {
        applied.push(task.await.unwrap().expect("every runner succeeds"));
    }

    // One runner applied everything; the others waited on the lock and found nothing.
    let embedded = migrate::migrations().len();
    assert_eq!(applied.iter().sum::<usize>(), embedded, "{applied:?}");
    assert_eq!(applied.iter().filter(|&&n| n > 0).count(), 1, "{applied:?}");

    let client = db.connect().await;
    assert_eq!(history(&client).await.len(), embedded);
    let tables: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE tablename = ANY($1)",
            &[&INIT_TABLES.to_vec()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, INIT_TABLES.len() as i64);
}
