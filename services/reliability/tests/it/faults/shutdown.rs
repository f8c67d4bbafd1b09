//! Item 5: graceful shutdown with open streams and unary load.
//!
//! Streams are open (slow readers of a long history) and unary callers append and list in a
//! loop when the shutdown begins. Health must say NOT_SERVING before anything else happens;
//! every stream must end with a status (not silently); every unary call must either succeed
//! or fail with a retryable code (UNAVAILABLE), and every append so failed is retried on a
//! new server over the same database afterwards: nothing acknowledged is lost, nothing is
//! stored twice. The server must exit within its drain deadline.

use super::pg::OwnPg;
use super::support::*;
use roaming_client::proto::conversation::v1::ListConversationsRequest;
use roaming_client::proto::history::v1 as hpb;
use roaming_testkit::peer;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// The deadline of the retries on the next server (and its pool's connect timeout).
const RETRY_DEADLINE: Duration = Duration::from_secs(60);

/// What one kind of unary caller saw.
#[derive(Default)]
struct Unary {
    ok: usize,
    codes: Codes,
    first_failure: Option<Instant>,
    acked: HashMap<String, (String, i64)>,
    /// Appends that failed: to be retried (same ids) on the next server.
    pending: Vec<hpb::NewMessage>,
    /// Failures that are neither UNAVAILABLE nor a broken connection.
    not_retryable: Vec<String>,
}

/// How a stream ended.
#[derive(Debug)]
enum StreamEnd {
    /// With this status.
    Status(String, Instant),
    /// Complete: its last page said `is_end` (or it reached `max_pages`).
    Complete,
    /// Ended without a status before it was complete.
    Silent,
    /// Did not end within the test's bound.
    Hung,
}

pub async fn scenario() {
    let streams = pick(50, 400);
    let unary_workers = pick(8, 32);
    let drain = pick(Duration::from_secs(3), Duration::from_secs(10));
    let mut config = server_config();
    config.drain_timeout = drain.into();
    // Every stream and caller is alice: more calls than one user's quota.
    config.protection.max_calls_per_user = streams + unary_workers + 16;
    let pg = OwnPg::start();
    let mut server = Server::start(&pg.url("roaming"), &config).await;

    // A long history of 4 KiB messages: a stream of 1-message pages stays open for a while.
    let mut seed = server.callers("alice");
    for chunk in 0..4 {
        let batch = (0..50)
            .map(|i| {
                let id = format!("seed-{chunk}-{i}");
                let mut m = text("alice", "bob", "", &id);
                m.body = vec![b'x'; 4096];
                m
            })
            .collect();
        seed.append(batch, None).await.unwrap();
    }

    // Health watch: when NOT_SERVING arrives.
    let mut health = HealthClient::new(server.channel());
    let mut watch = health
        .watch(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.message().await.unwrap().unwrap().status,
        ServingStatus::Serving as i32
    );
    // Health-aware callers stop sending here once health says NOT_SERVING, as a load
    // balancer that watches health takes the backend out of rotation.
    let routed_away = Arc::new(AtomicBool::new(false));
    let routed = routed_away.clone();
    let not_serving_at = tokio::spawn(async move {
        loop {
            match watch.message().await {
                Ok(Some(m)) if m.status == ServingStatus::NotServing as i32 => {
                    routed.store(true, Ordering::SeqCst);
                    return Some(Instant::now());
                }
                Ok(Some(_)) => continue,
                _ => return None,
            }
        }
    });

    // Open streams: slow readers, one page every 20 ms.
    let opened = Arc::new(tokio::sync::Barrier::new(streams + 1));
    let stream_tasks: Vec<_> = (0..streams)
        .map(|i| {
            let callers = server.callers("alice");
            let opened = opened.clone();
            tokio::spawn(async move {
                let mut history = callers.history.clone();
                let request = callers.as_user(
                    hpb::FetchHistoryRequest {
                        conversation: Some(peer("bob")),
                        direction: if i % 2 == 0 {
                            hpb::Direction::Forward
                        } else {
                            hpb::Direction::Backward
                        } as i32,
                        page_size: 1,
                        max_pages: 100,
                        ..Default::default()
                    },
                    None,
                );
                let mut stream = history.fetch_history(request).await.unwrap().into_inner();
                let first = stream.message().await.unwrap().unwrap();
                let mut complete = first.is_end;
                let mut pages = 1;
                opened.wait().await;
                let end = tokio::time::timeout(Duration::from_secs(30), async {
                    loop {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        match stream.message().await {
                            Ok(Some(page)) => {
                                pages += 1;
                                complete = page.is_end || pages >= 100;
                            }
                            Ok(None) if complete => return StreamEnd::Complete,
                            Ok(None) => return StreamEnd::Silent,
                            Err(s) => return StreamEnd::Status(outcome_name(&s), Instant::now()),
                        }
                    }
                })
                .await;
                end.unwrap_or(StreamEnd::Hung)
            })
        })
        .collect();
    opened.wait().await;

    // Unary load: appends (each remembered until acknowledged) and list calls, from two
    // kinds of callers: health-aware ones (even workers), which send nothing new once health
    // says NOT_SERVING, and naive ones (odd workers), which keep calling regardless.
    let stop = Arc::new(AtomicBool::new(false));
    let aware = Arc::new(Mutex::new(Unary::default()));
    let naive = Arc::new(Mutex::new(Unary::default()));
    let unary_tasks: Vec<_> = (0..unary_workers)
        .map(|w| {
            let mut callers = server.callers("alice");
            let health_aware = w % 2 == 0;
            let unary = if health_aware {
                aware.clone()
            } else {
                naive.clone()
            };
            let (stop, routed_away) = (stop.clone(), routed_away.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    if health_aware && routed_away.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                    n += 1;
                    let outcome = if n % 3 == 0 {
                        let request = callers
                            .as_user(ListConversationsRequest::default(), Some(CALL_DEADLINE));
                        callers
                            .conversations
                            .list_conversations(request)
                            .await
                            .map(|_| None)
                            .map_err(|s| (s, None))
                    } else {
                        let id = format!("u{w}-{n}");
                        let message = text("alice", "bob", &id, &id);
                        match callers
                            .append(vec![message.clone()], Some(CALL_DEADLINE))
                            .await
                        {
                            Ok(r) => {
                                let m = r.results[0].message.clone().unwrap();
                                Ok(Some((id, m.msg_id, m.seq)))
                            }
                            Err(s) => Err((s, Some(message))),
                        }
                    };
                    let failed = {
                        let mut u = unary.lock().unwrap();
                        match outcome {
                            Ok(acked) => {
                                u.ok += 1;
                                if let Some((id, msg_id, seq)) = acked {
                                    u.acked.insert(id, (msg_id, seq));
                                }
                            }
                            Err((status, message)) => {
                                let name = outcome_name(&status);
                                u.first_failure.get_or_insert_with(Instant::now);
                                if name == "Unavailable" {
                                    u.codes.add_name(&name);
                                } else if let Some(failure) = connection_failure(&status) {
                                    u.codes.add_name(&failure);
                                } else {
                                    u.codes.add_name(&name);
                                    u.not_retryable
                                        .push(format!("{name}: {}", status.message()));
                                }
                                if let Some(m) = message {
                                    u.pending.push(m);
                                }
                            }
                        }
                        u.first_failure.is_some()
                    };
                    if failed {
                        tokio::time::sleep(BACKOFF).await;
                    }
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(500)).await;
    let t_shutdown = Instant::now();
    server.begin_shutdown();
    let exit = tokio::time::timeout(drain + Duration::from_secs(5), server.stop()).await;
    let exit_ms = t_shutdown.elapsed().as_millis();
    let exited_ok = matches!(exit, Ok(Ok(())));
    // The unary callers go on a little against the stopped server, then stop.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::SeqCst);
    for t in unary_tasks {
        t.await.unwrap();
    }
    let mut ends = Vec::new();
    for t in stream_tasks {
        ends.push(t.await.unwrap());
    }
    let not_serving_at = tokio::time::timeout(Duration::from_secs(1), not_serving_at)
        .await
        .ok()
        .and_then(|r| r.ok())
        .flatten();

    let mut stream_codes = Codes::default();
    let mut silent = 0;
    let mut hung = 0;
    let mut complete = 0;
    let mut first_stream_end: Option<Instant> = None;
    for end in &ends {
        match end {
            StreamEnd::Status(code, at) => {
                stream_codes.add_name(code);
                first_stream_end = Some(first_stream_end.map_or(*at, |f| f.min(*at)));
            }
            StreamEnd::Complete => complete += 1,
            StreamEnd::Silent => silent += 1,
            StreamEnd::Hung => hung += 1,
        }
    }
    let take = |u: Arc<Mutex<Unary>>| Arc::try_unwrap(u).ok().unwrap().into_inner().unwrap();
    let (aware, naive) = (take(aware), take(naive));
    let first_failure = [aware.first_failure, naive.first_failure]
        .into_iter()
        .flatten()
        .min();
    let not_serving_first = match (not_serving_at, first_stream_end, first_failure) {
        (Some(ns), s, u) => s.is_none_or(|s| ns <= s) && u.is_none_or(|u| ns <= u),
        (None, _, _) => false,
    };
    let not_serving_ms = not_serving_at.map(|t| t.duration_since(t_shutdown).as_millis());
    let since_shutdown =
        |t: Option<Instant>| t.map_or(-1, |t| t.duration_since(t_shutdown).as_millis() as i64);

    // A new server over the same database: the failed appends are retried (same ids), and
    // everything acknowledged is there exactly once.
    // What is checked here is that a retry stores each failed append once, not how fast the
    // new server answers its first calls: they open its pool's connections, which a loaded
    // machine can take seconds to fork (a retry ran past the load's 2 s deadline in a flake
    // hunt), so they get a minute.
    let mut next_config = config.clone();
    next_config.pool.pool_connect_timeout = RETRY_DEADLINE.into();
    let store = roaming::open_store(&pg.url("roaming"), &next_config.pool.to_settings())
        .await
        .unwrap();
    let next = Server::serve(store, &next_config).await;
    let mut retry = next.callers("alice");
    let pending: Vec<&hpb::NewMessage> = aware.pending.iter().chain(&naive.pending).collect();
    let mut retried_ok = 0;
    let mut had_been_stored = 0;
    let mut retry_failures = Vec::new();
    for m in &pending {
        match retry.append(vec![(*m).clone()], Some(RETRY_DEADLINE)).await {
            Ok(r) => {
                retried_ok += 1;
                if r.results[0].duplicate {
                    had_been_stored += 1;
                }
            }
            Err(s) => retry_failures.push(format!(
                "{}: {:?} {}",
                m.client_msg_id,
                s.code(),
                s.message()
            )),
        }
    }
    let stored = retry.read_all(peer("bob")).await;
    let mut by_id: HashMap<&str, usize> = HashMap::new();
    for m in &stored {
        *by_id.entry(m.client_msg_id.as_str()).or_default() += 1;
    }
    let duplicates = by_id.values().filter(|n| **n > 1).count();
    let lost = aware
        .acked
        .iter()
        .chain(&naive.acked)
        .filter(|(id, (msg_id, seq))| {
            !stored
                .iter()
                .any(|m| m.client_msg_id == **id && m.msg_id == *msg_id && m.seq == *seq)
        })
        .count();
    let pending_missing = pending
        .iter()
        .filter(|m| !by_id.contains_key(m.client_msg_id.as_str()))
        .count();

    println!(
        "shutdown: streams={streams} unary_workers={unary_workers} drain_ms={} \
         not_serving_grace_ms={} exit_ms={exit_ms} exited_ok={exited_ok} \
         not_serving_after_ms={} not_serving_first={not_serving_first} \
         first_stream_end_after_ms={} first_unary_failure_after_ms={} \
         stream_ends={stream_codes} streams_complete={complete} streams_silent={silent} \
         streams_hung={hung} health_aware_ok={} health_aware_failed={} naive_ok={} \
         naive_failed={} not_retryable={} acknowledged={} retried_on_next_server={retried_ok}/{} \
         retries_already_stored={had_been_stored} \
         lost={lost} duplicates={duplicates} pending_missing_after_retry={pending_missing}",
        drain.as_millis(),
        (drain / 4).min(Duration::from_secs(2)).as_millis(),
        not_serving_ms.map_or(-1, |ms| ms as i64),
        since_shutdown(first_stream_end),
        since_shutdown(first_failure),
        aware.ok,
        aware.codes,
        naive.ok,
        naive.codes,
        aware.not_retryable.len() + naive.not_retryable.len(),
        aware.acked.len() + naive.acked.len(),
        pending.len(),
    );
    assert!(
        exited_ok,
        "shutdown: the server did not exit cleanly: {exit:?}"
    );
    assert!(
        exit_ms <= drain.as_millis() + 100,
        "shutdown: exit after {exit_ms} ms, drain deadline {} ms",
        drain.as_millis()
    );
    assert!(
        not_serving_first,
        "shutdown: health did not say NOT_SERVING first"
    );
    assert_eq!(silent, 0, "shutdown: streams ended without a status");
    assert_eq!(hung, 0, "shutdown: streams never ended");
    assert!(
        stream_codes.outside(&["Unavailable"]).is_empty(),
        "shutdown: streams ended with {stream_codes}"
    );
    // Callers that follow health lose nothing at all: their calls in flight when
    // NOT_SERVING came finished during the grace.
    assert_eq!(
        aware.codes.total(),
        0,
        "shutdown: health-aware callers saw failures: {}",
        aware.codes
    );
    assert!(aware.ok > 0 && naive.ok > 0, "shutdown: no unary load ran");
    assert!(
        aware.not_retryable.is_empty() && naive.not_retryable.is_empty(),
        "shutdown: unary calls failed without a retryable code: {:?} {:?}",
        aware.not_retryable,
        naive.not_retryable
    );
    assert_eq!(
        retried_ok,
        pending.len(),
        "shutdown: retries failed: {retry_failures:?}"
    );
    assert_eq!(lost, 0, "shutdown: acknowledged appends lost");
    assert_eq!(duplicates, 0, "shutdown: appends stored twice");
    assert_eq!(pending_missing, 0);
    drop(next);
    drop(pg);
}
