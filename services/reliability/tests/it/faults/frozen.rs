//! Item 2: a frozen database (SIGSTOP to the postmaster and every backend for 5 s).
//!
//! Callers keep appending, streaming history and listing conversations, every call with a
//! 1 s deadline carried only as `grpc-timeout`, so what ends a call on time is the server.
//! Every call must end by its deadline (+100 ms); after SIGCONT the pool must serve again, and
//! once things settle Roaming must hold no more PostgreSQL sessions than its pool size.

use super::pg::OwnPg;
use super::support::*;
use roaming_client::proto::conversation::v1::ListConversationsRequest;
use roaming_client::proto::history::v1 as hpb;
use roaming_testkit::peer;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const SERVING: i32 = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
const NOT_SERVING: i32 = tonic_health::pb::health_check_response::ServingStatus::NotServing as i32;

const DEADLINE: Duration = Duration::from_secs(1);
const GRACE: Duration = Duration::from_millis(100);

/// One finished call.
struct Call {
    started: Instant,
    elapsed: Duration,
    /// `None`: OK; otherwise the outcome's name (see `outcome_name`).
    code: Option<String>,
    kind: &'static str,
}

async fn one_call(
    callers: &mut Callers,
    op: usize,
    n: usize,
    deadline: Duration,
) -> (Option<String>, &'static str) {
    match op % 3 {
        0 => {
            let id = format!("frozen-{n}");
            let r = callers
                .append(vec![text("alice", "bob", &id, &id)], Some(deadline))
                .await;
            (r.err().map(|s| outcome_name(&s)), "append")
        }
        1 => {
            let r = callers
                .fetch(
                    hpb::FetchHistoryRequest {
                        conversation: Some(peer("bob")),
                        page_size: 10,
                        max_pages: 6,
                        ..Default::default()
                    },
                    Some(deadline),
                )
                .await;
            (r.err().map(|s| outcome_name(&s)), "stream")
        }
        _ => {
            let request = callers.as_user(ListConversationsRequest::default(), Some(deadline));
            let r = callers.conversations.list_conversations(request).await;
            (r.err().map(|s| outcome_name(&s)), "list")
        }
    }
}

/// Health answers: when, and the status (`None`: the check failed).
type HealthLog = Arc<Mutex<Vec<(Instant, Option<i32>)>>>;

/// `[1688, 1762]`, `never` for a missing figure.
fn show(figures: &[Option<u128>]) -> String {
    let parts: Vec<String> = figures
        .iter()
        .map(|f| f.map_or("never".to_owned(), |ms| ms.to_string()))
        .collect();
    format!("[{}]", parts.join(", "))
}

pub async fn scenario() {
    let freezes = pick(1, 3);
    let freeze_for = pick(Duration::from_secs(5), Duration::from_secs(10));
    let workers = pick(12, 32);
    let config = server_config();
    let pool_max = config.pool.pool_size as i64;

    let mut pg = OwnPg::start();
    let server = Server::start(&pg.url("roaming"), &config).await;
    let mut seed = server.callers("alice");
    for chunk in 0..6 {
        let batch = (0..10)
            .map(|i| {
                let id = format!("seed-{chunk}-{i}");
                text("alice", "bob", &id, &id)
            })
            .collect();
        seed.append(batch, None).await.unwrap();
    }

    let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let mut callers = server.callers("alice");
            let (calls, stop, counter) = (calls.clone(), stop.clone(), counter.clone());
            tokio::spawn(async move {
                let mut op = w;
                while !stop.load(Ordering::SeqCst) {
                    let n = counter.fetch_add(1, Ordering::SeqCst);
                    let started = Instant::now();
                    // A safety net only: a call still running 10 s past its deadline is
                    // recorded as hung (code None would be wrong: it is Unknown here).
                    let outcome = tokio::time::timeout(
                        DEADLINE + Duration::from_secs(10),
                        one_call(&mut callers, op, n, DEADLINE),
                    )
                    .await;
                    let (code, kind) = outcome.unwrap_or((Some("Hung".to_owned()), "hung"));
                    let failed = code.is_some();
                    calls.lock().unwrap().push(Call {
                        started,
                        elapsed: started.elapsed(),
                        code,
                        kind,
                    });
                    if failed {
                        tokio::time::sleep(BACKOFF).await;
                    }
                    op += 1;
                }
            })
        })
        .collect();

    // Health, polled every 50 ms on its own connection: it must answer throughout, say
    // NOT_SERVING while the database is frozen and SERVING again afterwards.
    let health_log: HealthLog = Arc::default();
    let health_task = {
        let (log, stop) = (health_log.clone(), stop.clone());
        let channel = server.channel();
        tokio::spawn(async move {
            let mut client = HealthClient::new(channel);
            while !stop.load(Ordering::SeqCst) {
                let mut request = tonic::Request::new(HealthCheckRequest::default());
                request.set_timeout(Duration::from_millis(500));
                let status = client
                    .check(request)
                    .await
                    .ok()
                    .map(|r| r.into_inner().status);
                log.lock().unwrap().push((Instant::now(), status));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut windows = Vec::new();
    let mut recovery_ms = Vec::new();
    for _ in 0..freezes {
        let t_freeze = Instant::now();
        pg.freeze();
        tokio::time::sleep(freeze_for).await;
        pg.thaw();
        let t_thaw = Instant::now();
        windows.push((t_freeze, t_thaw));
        // The pool serves again: the first call that started after SIGCONT and succeeded.
        let waited = Instant::now();
        let back = loop {
            let first = calls
                .lock()
                .unwrap()
                .iter()
                .filter(|c| c.started >= t_thaw && c.code.is_none())
                .map(|c| c.started + c.elapsed)
                .min();
            if let Some(t) = first {
                break t;
            }
            assert!(
                waited.elapsed() < Duration::from_secs(15),
                "frozen: no call succeeded within 15 s of SIGCONT"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        recovery_ms.push(back.duration_since(t_thaw).as_millis());
        // Until health says SERVING again (the watcher pings every 2 s), at least 2 s.
        let waited = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let serving_again = health_log
                .lock()
                .unwrap()
                .iter()
                .any(|(t, s)| *t > t_thaw && *s == Some(SERVING));
            if serving_again && waited.elapsed() >= Duration::from_secs(2) {
                break;
            }
            if waited.elapsed() > Duration::from_secs(8) {
                break;
            }
        }
    }
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    health_task.await.unwrap();
    let health_log = health_log.lock().unwrap().clone();
    let health_failed = health_log.iter().filter(|(_, s)| s.is_none()).count();
    let mut not_serving_ms = Vec::new();
    let mut serving_again_ms = Vec::new();
    for (f, t) in &windows {
        let first = |after: Instant, status: i32| {
            health_log
                .iter()
                .find(|(at, s)| *at >= after && *s == Some(status))
                .map(|(at, _)| at.duration_since(after).as_millis())
        };
        not_serving_ms.push(first(*f, NOT_SERVING).filter(|_| {
            health_log
                .iter()
                .any(|(at, s)| at >= f && at <= t && *s == Some(NOT_SERVING))
        }));
        serving_again_ms.push(first(*t, SERVING));
    }

    let calls = Arc::try_unwrap(calls).ok().unwrap().into_inner().unwrap();
    let in_freeze = |c: &Call| {
        windows
            .iter()
            .any(|(f, t)| c.started + c.elapsed >= *f && c.started <= *t)
    };
    let mut codes_frozen = Codes::default();
    let mut codes_other = Codes::default();
    let mut over = Vec::new();
    let mut max_overrun_ms: i128 = i128::MIN;
    let mut frozen_calls = 0;
    for c in &calls {
        let overrun = c.elapsed.as_millis() as i128 - DEADLINE.as_millis() as i128;
        max_overrun_ms = max_overrun_ms.max(overrun);
        if c.elapsed > DEADLINE + GRACE {
            over.push(format!("{} {:?} {:?}", c.kind, c.code, c.elapsed));
        }
        let codes = if in_freeze(c) {
            frozen_calls += 1;
            &mut codes_frozen
        } else {
            &mut codes_other
        };
        codes.add_name(c.code.as_deref().unwrap_or("Ok"));
    }

    // After: a burst of calls succeeds, and no connection leaked.
    // (Each with the retried calls' deadline: this checks that the pool serves again, not
    // how fast 60 new connections are served on a busy 2-core machine.)
    let mut burst_errors = Codes::default();
    let burst: Vec<_> = (0..60)
        .map(|i| {
            let mut callers = server.callers("alice");
            tokio::spawn(async move {
                one_call(&mut callers, i, 1_000_000 + i, CALL_DEADLINE * 5)
                    .await
                    .0
            })
        })
        .collect();
    for b in burst {
        if let Some(name) = b.await.unwrap() {
            burst_errors.add_name(&name);
        }
    }
    let burst_failed = burst_errors.total();
    let sql = pg.sql("roaming").await;
    let ((sessions, active), settle) =
        wait_for_sessions(&sql, Duration::from_secs(5), |all, _| all <= pool_max).await;
    let status = server.store.pool().status();

    println!(
        "frozen: freezes={freezes} freeze_ms={} deadline_ms={} calls={} during_freeze={frozen_calls} \
         over_deadline={} max_overrun_ms={max_overrun_ms} codes_during_freeze={codes_frozen} \
         codes_otherwise={codes_other} recovery_ms={recovery_ms:?} burst_failed={burst_failed} \
         burst_errors={burst_errors} \
         sessions_after={sessions} active_after={active} settle_ms={} pool_size={} \
         pool_available={} pool_max={pool_max} health_checks={} health_failed={health_failed} \
         health_not_serving_after_ms={} health_serving_again_after_ms={}",
        freeze_for.as_millis(),
        DEADLINE.as_millis(),
        calls.len(),
        over.len(),
        settle.as_millis(),
        status.size,
        status.available,
        health_log.len(),
        show(&not_serving_ms),
        show(&serving_again_ms),
    );
    assert!(
        over.is_empty(),
        "frozen: calls ended after their deadline + {GRACE:?}: {over:?}"
    );
    assert!(frozen_calls > 0, "frozen: no call ran during the freeze");
    // A deadline ends a call with DEADLINE_EXCEEDED from the server, or, when tonic's
    // client-side timer fires first, with the client's own deadline error.
    let unexpected =
        codes_frozen.outside(&["Ok", "DeadlineExceeded", CLIENT_DEADLINE, "Unavailable"]);
    assert!(
        unexpected.is_empty(),
        "frozen: unexpected codes {codes_frozen}"
    );
    assert_eq!(burst_failed, 0, "frozen: the pool did not recover");
    assert_eq!(health_failed, 0, "frozen: health did not answer");
    assert!(
        not_serving_ms.iter().all(Option::is_some),
        "frozen: health never said NOT_SERVING during a freeze: {not_serving_ms:?}"
    );
    assert!(
        serving_again_ms.iter().all(Option::is_some),
        "frozen: health did not say SERVING again after a freeze: {serving_again_ms:?}"
    );
    assert!(
        sessions <= pool_max,
        "frozen: {sessions} roaming sessions after the freeze, pool max {pool_max}: leaked"
    );
    assert!(status.size <= pool_max as usize);
    drop(server);
    drop(pg);
}
