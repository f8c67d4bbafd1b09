//! Item 4: cancellation.
//!
//! 1,000 clients open a FetchHistory stream each and read its first page; then another
//! session takes an ACCESS EXCLUSIVE lock on `messages`, so the next pages' statements wait
//! in PostgreSQL (as many as the pool has connections; the other streams wait for one). Then
//! every client goes away mid-stream. The server must stop the database work (no Roaming
//! statement left running or waiting, seen in `pg_stat_activity` while the lock is still
//! held) and its pool must be whole afterwards (a burst of calls succeeds, no more sessions
//! than the pool's size).
//!
//! Separately, a client deadline shorter than a slow statement (a history page that runs for
//! 1.5 s in PostgreSQL) must cancel that statement: PostgreSQL logs the cancellation and the
//! statement is gone long before it would have finished.

use super::pg::OwnPg;
use super::support::*;
use roaming_client::proto::history::v1 as hpb;
use roaming_testkit::peer;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Barrier, watch};

const POOL: usize = 16;

pub async fn thousand_streams() {
    let clients = pick(1_000, 3_000);
    let connections = pick(100, 300);
    let mut config = server_config();
    config.pool.pool_size = POOL;
    // Streams wait for a connection rather than fail while the lock is held, and the pool's
    // connections are opened (lazily, while a thousand calls wait for them) however slowly a
    // loaded machine forks PostgreSQL backends: a 2 s connect timeout made one stream of a
    // thousand fail to open (UNAVAILABLE) during a flake hunt. Not what this test is about.
    config.pool.pool_wait_timeout = Duration::from_secs(120).into();
    config.pool.pool_connect_timeout = Duration::from_secs(60).into();
    config.protection.max_concurrent_calls = clients + 100;
    // Every client is alice here (it is one user's thousand calls that must stop database
    // work), and each holds its stream unread while the others open theirs, for longer than
    // the stall timeout on a busy machine: neither the per-user quota nor the stall limit is
    // what this test is about.
    config.protection.max_calls_per_user = clients + 100;
    config.protection.stream_stall_timeout = Duration::from_secs(300).into();
    let pg = OwnPg::start();
    let server = Server::start(&pg.url("roaming"), &config).await;

    // A conversation whose pages are 8 KiB each (page_size 1): the transport's flow-control
    // window holds only a few of them, so a stream does not run ahead of its reader.
    let mut seed = server.callers("alice");
    for chunk in 0..4 {
        let batch = (0..50)
            .map(|i| {
                let id = format!("seed-{chunk}-{i}");
                let mut m = text("alice", "bob", "", &id);
                m.body = vec![b'x'; 8 * 1024];
                m
            })
            .collect();
        seed.append(batch, None).await.unwrap();
    }

    // Each client: open a stream, read its first page, wait; once the lock is held, ask for
    // the next pages (whose statements then wait), then go away when told.
    let channels: Vec<_> = (0..connections).map(|_| server.channel()).collect();
    let opened = Arc::new(Barrier::new(clients + 1));
    let (go_tx, go_rx) = watch::channel(0u8);
    let reading = Arc::new(AtomicUsize::new(0));
    let failed_to_open = Arc::new(std::sync::Mutex::new(Codes::default()));
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let callers = Callers::new(
                channels[i % connections].clone(),
                server.token("gateway", true),
                server.token("alice", false),
            );
            let (opened, mut go, reading, failed) = (
                opened.clone(),
                go_rx.clone(),
                reading.clone(),
                failed_to_open.clone(),
            );
            tokio::spawn(async move {
                let mut history = callers.history.clone();
                let request = callers.as_user(
                    hpb::FetchHistoryRequest {
                        conversation: Some(peer("bob")),
                        direction: hpb::Direction::Forward as i32,
                        page_size: 1,
                        max_pages: 100,
                        ..Default::default()
                    },
                    None,
                );
                let opened_stream = match history.fetch_history(request).await {
                    Ok(r) => {
                        let mut s = r.into_inner();
                        match s.message().await {
                            Ok(Some(_)) => Ok(s),
                            Ok(None) => Err("NoFirstPage".to_owned()),
                            Err(status) => Err(outcome_name(&status)),
                        }
                    }
                    Err(status) => {
                        eprintln!("cancel_streams: a stream failed to open: {status:?}");
                        Err(outcome_name(&status))
                    }
                };
                let mut stream = match opened_stream {
                    Ok(s) => Some(s),
                    Err(name) => {
                        failed.lock().unwrap().add_name(&name);
                        None
                    }
                };
                opened.wait().await;
                // 1: read on (the lock is held now).
                let _ = go.wait_for(|g| *g >= 1).await;
                if let Some(s) = stream.as_mut() {
                    reading.fetch_add(1, Ordering::SeqCst);
                    tokio::select! {
                        _ = async { while let Ok(Some(_)) = s.message().await {} } => {}
                        _ = go.wait_for(|g| *g >= 2) => {}
                    }
                }
                // 2: go away mid-stream.
                let _ = go.wait_for(|g| *g >= 2).await;
                drop(stream);
            })
        })
        .collect();
    opened.wait().await;
    let failed_to_open = failed_to_open.lock().unwrap().clone();

    let locker = pg.sql("roaming").await;
    let sql = pg.sql("roaming").await;
    locker
        .batch_execute("BEGIN; LOCK TABLE messages IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    go_tx.send(1).unwrap();
    // Wait until the pool's every connection has a statement waiting on the lock.
    let ((_, waiting_before), _) = wait_for_sessions(&sql, Duration::from_secs(15), |_, active| {
        active >= POOL as i64
    })
    .await;
    let waiting_pool = server.store.pool().status().waiting;

    let t_cancel = Instant::now();
    go_tx.send(2).unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    let clients_gone_ms = t_cancel.elapsed().as_millis();
    // Database work stops: no Roaming statement running or waiting, with the lock still held.
    let ((_, active_after), stopped_in) =
        wait_for_sessions(&sql, Duration::from_secs(5), |_, active| active == 0).await;
    // No call is left waiting for a connection (the health watcher's ping may be getting
    // one for a moment, so poll).
    let mut status_after_cancel = server.store.pool().status();
    let polled = Instant::now();
    while status_after_cancel.waiting > 0 && polled.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        status_after_cancel = server.store.pool().status();
    }
    locker.batch_execute("ROLLBACK").await.unwrap();

    // The pool is whole: a burst of calls succeeds, within the pool's size.
    let burst = pick(200, 1_000);
    // Generous: this checks that the pool serves every call, not how fast a burst of new
    // calls is served on a busy 2-core machine.
    let burst_deadline = Duration::from_secs(20);
    let started = Instant::now();
    let results: Vec<_> = (0..burst)
        .map(|i| {
            let mut callers = Callers::new(
                channels[i % connections].clone(),
                server.token("gateway", true),
                server.token("alice", false),
            );
            tokio::spawn(async move {
                if i % 2 == 0 {
                    let id = format!("burst-{i}");
                    callers
                        .append(vec![text("alice", "bob", &id, &id)], Some(burst_deadline))
                        .await
                        .map(|_| ())
                } else {
                    callers
                        .fetch(
                            hpb::FetchHistoryRequest {
                                conversation: Some(peer("bob")),
                                page_size: 5,
                                max_pages: 2,
                                ..Default::default()
                            },
                            Some(burst_deadline),
                        )
                        .await
                        .map(|_| ())
                }
            })
        })
        .collect();
    let mut burst_errors = Codes::default();
    for r in results {
        if let Err(s) = r.await.unwrap() {
            burst_errors.add(&s);
        }
    }
    let burst_ms = started.elapsed().as_millis();
    let ((sessions, _), _) =
        wait_for_sessions(&sql, Duration::from_secs(3), |all, _| all <= POOL as i64).await;
    let status = server.store.pool().status();

    println!(
        "cancel_streams: clients={clients} connections={connections} failed_to_open={failed_to_open} \
         mid_stream={} statements_waiting_before={waiting_before} \
         pool_waiters_before={waiting_pool} \
         clients_gone_ms={clients_gone_ms} active_after={active_after} work_stopped_ms={} \
         pool_after_cancel={{size: {}, available: {}, waiting: {}}} burst={burst} \
         burst_errors={burst_errors} burst_ms={burst_ms} sessions_after={sessions} \
         pool_after={{size: {}, available: {}, waiting: {}}} pool_max={POOL}",
        reading.load(Ordering::SeqCst),
        stopped_in.as_millis(),
        status_after_cancel.size,
        status_after_cancel.available,
        status_after_cancel.waiting,
        status.size,
        status.available,
        status.waiting,
    );
    assert_eq!(
        failed_to_open.total(),
        0,
        "cancel_streams: streams failed to open: {failed_to_open}"
    );
    assert!(
        waiting_before >= POOL as i64,
        "cancel_streams: the statements did not reach the lock"
    );
    assert_eq!(
        active_after, 0,
        "cancel_streams: Roaming statements still running after every client went away"
    );
    assert!(
        stopped_in <= Duration::from_secs(2),
        "cancel_streams: database work took {stopped_in:?} to stop"
    );
    assert_eq!(
        status_after_cancel.waiting, 0,
        "cancel_streams: pool waiters left"
    );
    assert_eq!(
        burst_errors.total(),
        0,
        "cancel_streams: the burst failed: {burst_errors}"
    );
    assert!(
        sessions <= POOL as i64,
        "cancel_streams: {sessions} sessions, pool max {POOL}"
    );
    assert!(status.size <= POOL);
    drop(server);
    drop(pg);
}

pub async fn slow_query() {
    let deadline = Duration::from_millis(200);
    let sleep_s = 1.5;
    let pg = OwnPg::start();
    let server = Server::start(&pg.url("roaming"), &server_config()).await;
    let mut alice = server.callers("alice");
    alice
        .append(
            vec![
                text("alice", "bob", "first", "first"),
                text("alice", "bob", "second", "second"),
            ],
            None,
        )
        .await
        .unwrap();
    // A genuinely slow statement, deterministically: in this test's private database the
    // `tombstones` table (read by every history page) becomes a view that sleeps 1.5 s for
    // each row it reads, and alice has removed the second message, so every plan of the
    // page query reads that row (the first message stays visible).
    let sql = pg.sql("roaming").await;
    sql.batch_execute(&format!(
        "ALTER TABLE tombstones RENAME TO tombstones_real; \
         CREATE VIEW tombstones AS SELECT conv_key, user_id, seq FROM tombstones_real \
         WHERE pg_sleep({sleep_s}) IS NOT NULL; \
         INSERT INTO tombstones_real VALUES ('p:alice:bob', 'alice', 2);"
    ))
    .await
    .unwrap();
    // Drop the pool's connections (and their prepared statements) so the view is used.
    sql.batch_execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = 'roaming' AND pid <> pg_backend_pid()",
    )
    .await
    .unwrap();
    let slow = hpb::FetchHistoryRequest {
        conversation: Some(peer("bob")),
        page_size: 10,
        ..Default::default()
    };
    // How long it takes with no deadline (the figure the deadline must beat). A pooled
    // connection that was terminated above may fail one call (UNAVAILABLE) first.
    let (pages, full_ms) = {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let started = Instant::now();
            match alice.fetch(slow.clone(), None).await {
                Ok(pages) => break (pages, started.elapsed().as_millis()),
                Err(s) if s.code() == tonic::Code::Unavailable && attempt < 5 => continue,
                Err(s) => panic!("cancel_slow_query: {s:?}"),
            }
        }
    };
    assert_eq!(pages.iter().map(|p| p.messages.len()).sum::<usize>(), 1);

    let log_before = pg
        .log_text()
        .matches("canceling statement due to user request")
        .count();
    let started = Instant::now();
    let outcome = alice.fetch(slow.clone(), Some(deadline)).await;
    let ended_ms = started.elapsed().as_millis();
    let code = outcome.as_ref().err().map(outcome_name);
    // The statement is gone from pg_stat_activity...
    let ((_, active), gone_in) =
        wait_for_sessions(&sql, Duration::from_secs(10), |_, active| active == 0).await;
    let gone_after_ms = started.elapsed().as_millis();
    // ...because it was cancelled (PostgreSQL logs the cancel request it obeyed).
    let mut cancelled_in_log = 0;
    for _ in 0..100 {
        cancelled_in_log = pg
            .log_text()
            .matches("canceling statement due to user request")
            .count()
            - log_before;
        if cancelled_in_log > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // And the pool serves on.
    // (It runs the 1.5 s statement too.)
    let after = alice
        .fetch(
            hpb::FetchHistoryRequest {
                conversation: Some(peer("bob")),
                page_size: 5,
                ..Default::default()
            },
            Some(Duration::from_secs(10)),
        )
        .await;

    println!(
        "cancel_slow_query: statement_ms={full_ms} \
         deadline_ms={} call_ended_ms={ended_ms} code={} statement_gone_after_ms={gone_after_ms} \
         cancelled_in_log={cancelled_in_log} served_after={}",
        deadline.as_millis(),
        code.as_deref().unwrap_or("Ok"),
        after.is_ok(),
    );
    let _ = gone_in;
    assert!(
        full_ms >= 3 * deadline.as_millis(),
        "cancel_slow_query: the statement is not slow enough ({full_ms} ms) to show anything"
    );
    assert!(
        matches!(
            code.as_deref(),
            Some("DeadlineExceeded") | Some(CLIENT_DEADLINE)
        ),
        "cancel_slow_query: the call ended with {code:?}"
    );
    assert!(
        ended_ms <= deadline.as_millis() + 100,
        "cancel_slow_query: the call ended after {ended_ms} ms"
    );
    assert_eq!(active, 0, "cancel_slow_query: the statement kept running");
    assert!(
        gone_after_ms < full_ms,
        "cancel_slow_query: the statement was gone only after {gone_after_ms} ms, when it \
         would have finished anyway ({full_ms} ms)"
    );
    assert!(
        cancelled_in_log > 0,
        "cancel_slow_query: PostgreSQL did not log a cancelled statement"
    );
    assert!(
        after.is_ok(),
        "cancel_slow_query: the pool did not serve on"
    );
    drop(server);
    drop(pg);
}
