//! Slow clients: readers that take nothing must not hold the server's slots or memory.
//!
//! The attack: a client advertises an HTTP/2 receive window of 0, so no response byte can
//! leave, and the call would hold its admission slot until its trailers go out (never).
//! Formerly 520 such ListConversations calls of one user on 6 connections made every other
//! user's calls RESOURCE_EXHAUSTED, and 200 such FetchHistory streams held +860 MB.
//!
//! The focused tests (an in-process server, short timeouts) check each mechanism: a reader
//! that takes nothing is ended with RESOURCE_EXHAUSTED at the stall timeout and its slot
//! freed while hyper is not polling the body, the status reaches a reader that opens its
//! window afterwards, a peer that never does loses its connection one stall timeout later; a
//! unary response not taken is ended at the request timeout; a slow but steady reader and a
//! stream whose pages are slow to come from the database are not stalls; the per-user quota
//! refuses one user and not another. The scenario runs the real attack against a server in a
//! child process with `roaming serve`'s defaults.

use super::support::*;
use crate::faults::support::{Callers, Codes, quantile_ms};
use roaming_client::proto::common::v1::ConversationType;
use roaming_client::proto::conversation::v1::ListConversationsRequest;
use roaming_client::proto::history::v1 as hpb;
use roaming_testkit::{TestApp, new_message, peer};
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tonic::Code;

fn fetch(conversation: &str, page_size: u32, max_pages: u32) -> bytes::Bytes {
    encode(&hpb::FetchHistoryRequest {
        conversation: Some(peer(conversation)),
        direction: hpb::Direction::Forward as i32,
        page_size,
        max_pages,
        ..Default::default()
    })
}

fn list() -> bytes::Bytes {
    encode(&ListConversationsRequest::default())
}

/// `n` messages of `size` bytes from `sender` to `recipient`, stored through the service.
async fn store(app: &TestApp, sender: &str, recipient: &str, n: usize, size: usize) {
    let service = app.service().await;
    for chunk in (0..n).collect::<Vec<_>>().chunks(10) {
        let messages = chunk
            .iter()
            .map(|i| {
                let mut m = new_message(
                    ConversationType::Peer,
                    sender,
                    recipient,
                    "",
                    &format!("{sender}-{recipient}-{i}"),
                );
                m.body = vec![b'x'; size];
                m
            })
            .collect();
        service
            .history()
            .append_messages(hpb::AppendMessagesRequest { messages })
            .await
            .unwrap();
    }
}

async fn list_as(app: &TestApp, user: &str) -> Result<(), tonic::Status> {
    app.user(user)
        .await
        .conversations()
        .list_conversations(ListConversationsRequest::default())
        .await
        .map(|_| ())
}

/// Polls `user`'s ListConversations every 20 ms until one is admitted; how long that took.
async fn admitted_again(app: &TestApp, user: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        match list_as(app, user).await {
            Ok(()) => return started.elapsed(),
            Err(s) if s.code() == Code::ResourceExhausted && started.elapsed() < limit => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(s) => panic!("{user}'s call was not admitted again within {limit:?}: {s:?}"),
        }
    }
}

fn open(answer: Result<Answer, h2::Error>, what: &str) -> h2::RecvStream {
    match answer {
        Ok(Answer::Open(body)) => body,
        Ok(Answer::Status(code, message)) => panic!("{what}: answered {code:?} {message}"),
        Err(e) => panic!("{what}: {e}"),
    }
}

/// Stall timeout 1 s, quota 2. Two zero-window FetchHistory streams of alice fill her quota
/// (a third call of hers is refused at once, bob's is not); at the stall timeout the guard
/// ends both although hyper polls neither body, and alice is admitted again. The reader that
/// then opens its window gets the whole page that was in flight and RESOURCE_EXHAUSTED; the
/// peer that never does is disconnected one stall timeout later, and only it.
pub async fn zero_window_stream() {
    let stall = Duration::from_secs(1);
    let app = TestApp::spawn_with(|c| {
        c.protection.stream_stall_timeout = stall.into();
        c.protection.max_calls_per_user = 2;
    })
    .await;
    // Pages of 5 messages of 40 KB: a page is many pieces; there are two pages.
    store(&app, "alice", "bob", 10, 40 * 1024).await;
    let token = app.token("alice", false);
    let reader = RawConnection::connect(app.addr, 0).await.unwrap();
    let silent = RawConnection::connect(app.addr, 0).await.unwrap();
    let started = Instant::now();
    let mut later = open(
        reader
            .call(FETCH, Some(&token), None, fetch("bob", 5, 2))
            .await,
        "the reader's stream",
    );
    let mut never = open(
        silent
            .call(FETCH, Some(&token), None, fetch("bob", 5, 2))
            .await,
        "the silent stream",
    );
    let third = list_as(&app, "alice").await.unwrap_err();
    assert_eq!(third.code(), Code::ResourceExhausted, "{third:?}");
    assert!(third.message().contains("this user"), "{third:?}");
    list_as(&app, "bob")
        .await
        .expect("another user is not affected by alice's quota");

    let freed_after =
        started.elapsed() + admitted_again(&app, "alice", Duration::from_secs(5)).await;
    // Now the reader reads.
    reader.open_window(1 << 20);
    let read = tokio::time::timeout(Duration::from_secs(5), read_to_end(&mut later, None))
        .await
        .expect("the ended stream's status arrives once its reader reads");
    let messages = grpc_messages(&read.data).expect("whole messages only");
    let page = <hpb::FetchHistoryResponse as prost::Message>::decode(messages[0]).unwrap();
    let closed_after = tokio::time::timeout(Duration::from_secs(5), silent.closed())
        .await
        .map(|()| started.elapsed());
    let silent_error = never.data().await;
    // The reader's connection still serves.
    let mut list_body = open(
        reader.call(LIST, Some(&token), None, list()).await,
        "a call on the reader's connection",
    );
    let listed = read_to_end(&mut list_body, None).await;
    println!(
        "zero_window_stream: stall_ms={} freed_after_ms={} reader_messages={} page_messages={} \
         reader_status={:?} silent_connection_closed_after_ms={:?} reader_connection_open={}",
        stall.as_millis(),
        freed_after.as_millis(),
        messages.len(),
        page.messages.len(),
        read.status,
        closed_after.as_ref().map(|d| d.as_millis()),
        !reader.is_closed(),
    );
    assert!(
        freed_after >= stall - Duration::from_millis(100)
            && freed_after <= stall + Duration::from_millis(1500),
        "the slots were freed after {freed_after:?} (stall timeout {stall:?})"
    );
    assert!(read.error.is_none(), "{:?}", read.error);
    assert_eq!(messages.len(), 1, "exactly the page in flight, whole");
    assert_eq!(page.messages.len(), 5);
    let (code, message) = read.status.expect("trailers with a status");
    assert_eq!(code, Code::ResourceExhausted, "{message}");
    assert!(message.contains("not read"), "{message}");
    let closed_after = closed_after.expect("the silent peer's connection was closed");
    assert!(
        closed_after >= 2 * stall - Duration::from_millis(100)
            && closed_after <= 2 * stall + Duration::from_millis(2000),
        "the silent connection closed after {closed_after:?}"
    );
    assert!(
        matches!(silent_error, Some(Err(_))),
        "the silent stream ended with its connection: {silent_error:?}"
    );
    assert_eq!(listed.status.map(|s| s.0), Some(Code::Ok));
    assert!(!reader.is_closed());
}

/// Request timeout 1 s, stall timeout 30 s, quota 1: a unary answer (ListConversations) that
/// its reader does not take is ended at the request timeout and alice is admitted again; the
/// reader that opens its window afterwards gets the answer whole, then DEADLINE_EXCEEDED.
pub async fn zero_window_unary() {
    let timeout = Duration::from_secs(1);
    let app = TestApp::spawn_with(|c| {
        c.protection.request_timeout = timeout.into();
        c.protection.stream_stall_timeout = Duration::from_secs(30).into();
        c.protection.max_calls_per_user = 1;
    })
    .await;
    // Three conversations, each with a last message of 40 KB: the answer is many pieces.
    for other in ["bob", "carol", "dave"] {
        store(&app, "alice", other, 1, 40 * 1024).await;
    }
    let token = app.token("alice", false);
    let reader = RawConnection::connect(app.addr, 0).await.unwrap();
    let started = Instant::now();
    let mut body = open(
        reader.call(LIST, Some(&token), None, list()).await,
        "the zero-window call",
    );
    let second = list_as(&app, "alice").await.unwrap_err();
    assert_eq!(second.code(), Code::ResourceExhausted, "{second:?}");
    let freed_after =
        started.elapsed() + admitted_again(&app, "alice", Duration::from_secs(5)).await;
    reader.open_window(1 << 20);
    let read = tokio::time::timeout(Duration::from_secs(5), read_to_end(&mut body, None))
        .await
        .expect("the status arrives once the reader reads");
    let messages = grpc_messages(&read.data).expect("whole messages only");
    let answer = <roaming_client::proto::conversation::v1::ListConversationsResponse as prost::Message>::decode(
        messages[0],
    )
    .unwrap();
    println!(
        "zero_window_unary: request_timeout_ms={} freed_after_ms={} messages={} conversations={} status={:?}",
        timeout.as_millis(),
        freed_after.as_millis(),
        messages.len(),
        answer.conversations.len(),
        read.status
    );
    assert!(
        freed_after >= timeout - Duration::from_millis(100)
            && freed_after <= timeout + Duration::from_millis(1500),
        "the slot was freed after {freed_after:?} (request timeout {timeout:?})"
    );
    assert_eq!(messages.len(), 1);
    assert_eq!(answer.conversations.len(), 3);
    assert_eq!(read.status.map(|s| s.0), Some(Code::DeadlineExceeded));
}

/// Stall timeout 1 s. A reader with a 16 KB window that takes 16 KB every 500 ms reads a
/// stream of three 65 KB pages over ~6 stall timeouts to its end: it is asked for a piece at
/// a time, so it never looks stalled (were whole pages handed out, the next page would wait
/// for most of the previous one to drain, ~1.5 s). A stream whose pages take 1.5 s in
/// PostgreSQL (the body is polled and waits: the server is slow, not the reader) runs to its
/// end too.
pub async fn slow_is_not_stalled() {
    let stall = Duration::from_secs(1);
    let app = TestApp::spawn_with(|c| {
        c.protection.stream_stall_timeout = stall.into();
    })
    .await;
    store(&app, "alice", "bob", 24, 8 * 1024).await;
    let token = app.token("alice", false);
    let slow = RawConnection::connect(app.addr, 16 * 1024).await.unwrap();
    let started = Instant::now();
    let mut body = open(
        slow.call(FETCH, Some(&token), None, fetch("bob", 8, 3))
            .await,
        "the slow reader's stream",
    );
    let read = tokio::time::timeout(
        Duration::from_secs(30),
        read_to_end(&mut body, Some((16 * 1024, Duration::from_millis(500)))),
    )
    .await
    .expect("the slow reader's stream ends");
    let slow_reader_ms = started.elapsed().as_millis();
    let pages = grpc_messages(&read.data).map(|m| m.len());

    // Slow pages: `tombstones` (read by every page) becomes a view that sleeps 1.5 s per row,
    // and alice has removed one message of carol's conversation, so every page reads it.
    store(&app, "alice", "carol", 4, 100).await;
    let sql = app.sql().await;
    // One statement per call: on a Citus cluster DDL is propagated to the workers statement
    // by statement, which a multi-statement batch does not allow.
    for statement in [
        "ALTER TABLE tombstones RENAME TO tombstones_real",
        "CREATE VIEW tombstones AS SELECT conv_key, user_id, seq FROM tombstones_real \
         WHERE pg_sleep(1.5) IS NOT NULL",
        "INSERT INTO tombstones_real VALUES ('p:alice:carol', 'alice', 2)",
    ] {
        sql.batch_execute(statement).await.unwrap();
    }
    // The pool's connections of this database re-plan with the view.
    sql.batch_execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = 'roaming' AND datname = current_database() \
         AND pid <> pg_backend_pid()",
    )
    .await
    .unwrap();
    let client = app.user("alice").await;
    let started = Instant::now();
    let mut attempt = 0;
    let (slow_pages, longest_wait) = loop {
        attempt += 1;
        let outcome = async {
            let mut stream = client
                .history()
                .fetch_history(hpb::FetchHistoryRequest {
                    conversation: Some(peer("carol")),
                    page_size: 1,
                    max_pages: 3,
                    ..Default::default()
                })
                .await?
                .into_inner();
            let (mut pages, mut last, mut longest) = (0, Instant::now(), Duration::ZERO);
            while stream.message().await?.is_some() {
                pages += 1;
                longest = longest.max(last.elapsed());
                last = Instant::now();
            }
            Ok::<_, tonic::Status>((pages, longest))
        }
        .await;
        match outcome {
            Ok(outcome) => break outcome,
            // A pooled connection terminated above may fail one call first.
            Err(s) if s.code() == Code::Unavailable && attempt < 5 => continue,
            Err(s) => panic!("the slow-page stream failed: {s:?}"),
        }
    };
    let slow_pages_ms = started.elapsed().as_millis();
    println!(
        "slow_is_not_stalled: stall_ms={} slow_reader_ms={slow_reader_ms} slow_reader_pages={pages:?} \
         slow_reader_status={:?} slow_pages={slow_pages} slow_pages_ms={slow_pages_ms} \
         longest_wait_between_pages_ms={}",
        stall.as_millis(),
        read.status,
        longest_wait.as_millis(),
    );
    assert!(read.error.is_none(), "{:?}", read.error);
    assert_eq!(read.status.map(|s| s.0), Some(Code::Ok));
    assert_eq!(pages, Some(3));
    assert!(
        slow_reader_ms >= 4 * stall.as_millis(),
        "the slow reader was not slow: {slow_reader_ms} ms"
    );
    assert_eq!(slow_pages, 3);
    // A later page (the first is under the request timeout, not the stall limit) waited on
    // the database for longer than the stall timeout, and the stream was not ended.
    assert!(
        longest_wait >= stall + Duration::from_millis(300),
        "no page was slower than the stall timeout: {longest_wait:?}"
    );
}

/// The victim's phases.
const WARM: u8 = 0;
const UNLOADED: u8 = 1;
const ATTACK: u8 = 2;
const SETTLING: u8 = 3;
const UNLOADED_AFTER: u8 = 4;
const DONE: u8 = 5;

#[derive(Default)]
struct Victim {
    unloaded: Vec<Duration>,
    attack: Vec<Duration>,
    errors: Codes,
}

#[derive(Default)]
struct Attack {
    admitted: AtomicU64,
    held: AtomicI64,
    max_held: AtomicI64,
    refused_quota: AtomicU64,
    refused_global: AtomicU64,
    ended_by_server: AtomicU64,
    data_received: AtomicU64,
    connections: AtomicU64,
    other: Mutex<Codes>,
}

const USER_QUOTA: usize = 64;
/// The attacker's client threads (renamed so they can be reniced).
const ATTACKER: &str = "abuse-attacker";
const LANES: usize = 600;
const CONNECTIONS: usize = 10;

/// One attacker connection, replaced when the server closes it.
struct Slot {
    current: tokio::sync::Mutex<Option<Arc<RawConnection>>>,
}

impl Slot {
    async fn get(&self, addr: std::net::SocketAddr, attack: &Attack) -> Option<Arc<RawConnection>> {
        let mut current = self.current.lock().await;
        if current.as_ref().is_none_or(|c| c.is_closed()) {
            *current = RawConnection::connect(addr, 0).await.ok().map(Arc::new);
            if current.is_some() {
                attack.connections.fetch_add(1, Ordering::SeqCst);
            }
        }
        current.clone()
    }
}

fn jitter(from_ms: u64, to_ms: u64) -> Duration {
    Duration::from_millis(from_ms + rand::random::<u64>() % (to_ms - from_ms + 1))
}

/// One attacker lane: a zero-window call, held until the server ends it (then another, after
/// 0-1 s); a refused call is tried again after 5-10 s (the ~530 refused lanes between them
/// still try every ~15 ms, so a freed place is taken again at once; a faster flood of refused
/// calls is the overload test's subject). The lanes start over the attack's first second.
async fn lane(
    i: usize,
    slots: Arc<Vec<Slot>>,
    addr: std::net::SocketAddr,
    token: String,
    attack: Arc<Attack>,
    stop: watch::Receiver<bool>,
) {
    let (path, message) = if i % 2 == 0 {
        (LIST, list())
    } else {
        (FETCH, fetch("bob", 50, 100))
    };
    tokio::time::sleep(jitter(0, 1000)).await;
    let stopped = || *stop.borrow();
    while !stopped() {
        let Some(connection) = slots[i % CONNECTIONS].get(addr, &attack).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        match connection
            .call(path, Some(&token), None, message.clone())
            .await
        {
            Err(_) => tokio::time::sleep(jitter(0, 200)).await,
            Ok(Answer::Status(Code::ResourceExhausted, m)) => {
                if m.contains("this user") {
                    attack.refused_quota.fetch_add(1, Ordering::SeqCst);
                } else {
                    attack.refused_global.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(jitter(5000, 10_000)).await;
            }
            Ok(Answer::Status(code, _)) => {
                attack.other.lock().unwrap().add_name(&format!("{code:?}"));
                tokio::time::sleep(jitter(1000, 2000)).await;
            }
            Ok(Answer::Open(mut body)) => {
                attack.admitted.fetch_add(1, Ordering::SeqCst);
                let held = attack.held.fetch_add(1, Ordering::SeqCst) + 1;
                attack.max_held.fetch_max(held, Ordering::SeqCst);
                // Held, never read: it ends when the server ends it (with a window of 0 only
                // by closing the connection) or when the attack stops.
                loop {
                    tokio::select! {
                        frame = body.data() => match frame {
                            Some(Ok(_)) => {
                                attack.data_received.fetch_add(1, Ordering::SeqCst);
                            }
                            _ => {
                                attack.ended_by_server.fetch_add(1, Ordering::SeqCst);
                                break;
                            }
                        },
                        _ = async {
                            let mut stop = stop.clone();
                            let _ = stop.wait_for(|s| *s).await;
                        } => break,
                    }
                }
                attack.held.fetch_sub(1, Ordering::SeqCst);
                tokio::time::sleep(jitter(0, 1000)).await;
            }
        }
    }
}

fn runtime(name: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(name)
        .enable_all()
        .build()
        .unwrap()
}

/// One user (mallory) opens 600 zero-window calls (ListConversations and FetchHistory of
/// 400 KB pages) on 10 connections against a server with `roaming serve`'s defaults, and keeps
/// them up: a refused call is tried again after 2-4 s, a call the server ends is replaced.
/// Meanwhile another user (carol) calls in a loop: every call must succeed, and her p99 is
/// compared to that of the same calls without the attack (measured before and after it, in
/// this test; at most 2×, asserted in the quiet runs of `latency_bounds_asserted`); the
/// server's RSS (a child process: its memory alone) must stay within +100 MB.
pub async fn six_hundred_zero_window_calls() {
    let attack_for = Duration::from_secs(16);
    let mut server =
        ServerProcess::start("slow-clients", &[("ROAMING_METRICS_ADDR", "127.0.0.1:0")]);
    let endpoint = server.endpoint();
    let channel = |_: usize| {
        tonic::transport::Endpoint::from_shared(endpoint.clone())
            .unwrap()
            .tcp_nodelay(true)
            .connect_lazy()
    };
    // Mallory: 100 messages of 8 KB with bob (a FetchHistory page of 50 is 400 KB), and ten
    // more conversations whose last message is 8 KB (the list answer is 80 KB).
    let mut seed = Callers::new(
        channel(0),
        server.token("gateway", true),
        server.token("mallory", false),
    );
    let big = |from: &str, to: &str, id: String| {
        let mut m = crate::faults::support::text(from, to, "", &id);
        m.body = vec![b'm'; 8 * 1024];
        m
    };
    for chunk in 0..10 {
        let batch = (0..10)
            .map(|i| big("mallory", "bob", format!("mb-{chunk}-{i}")))
            .collect();
        seed.append(batch, None).await.unwrap();
    }
    let batch = (0..10)
        .map(|i| big("mallory", &format!("u{i}"), format!("mu-{i}")))
        .collect();
    seed.append(batch, None).await.unwrap();
    // Carol: small conversations.
    let batch = (0..20)
        .map(|i| crate::faults::support::text("carol", "dave", "hi", &format!("cd-{i}")))
        .chain((0..3).map(|i| {
            crate::faults::support::text("carol", &format!("e{i}"), "hey", &format!("ce-{i}"))
        }))
        .collect();
    seed.append(batch, None).await.unwrap();

    // The victim: 4 closed-loop callers on 2 connections, on a runtime of their own.
    let victim_runtime = runtime("abuse-victim");
    let attack_runtime = runtime(ATTACKER);
    // The attacker's client runs at the lowest priority: its CPU would be another machine's
    // (best effort: without root the figures are only less sharp).
    attack_runtime.spawn(async {}).await.unwrap();
    let lowered = crate::faults::overload::renice_threads(ATTACKER, 19);
    let phase = Arc::new(AtomicU8::new(WARM));
    let victim = Arc::new(Mutex::new(Victim::default()));
    let victim_channels = [channel(1), channel(2)];
    let victim_tasks: Vec<_> = (0..4)
        .map(|i| {
            let mut callers = Callers::new(
                victim_channels[i % 2].clone(),
                server.token("gateway", true),
                server.token("carol", false),
            );
            let (phase, victim) = (phase.clone(), victim.clone());
            victim_runtime.spawn(async move {
                let mut n = 0u64;
                loop {
                    let now = phase.load(Ordering::SeqCst);
                    if now == DONE {
                        return;
                    }
                    n += 1;
                    let started = Instant::now();
                    let outcome = if n % 2 == 0 {
                        let request = callers.as_user(
                            ListConversationsRequest::default(),
                            Some(Duration::from_secs(10)),
                        );
                        callers
                            .conversations
                            .list_conversations(request)
                            .await
                            .map(|_| ())
                    } else {
                        callers
                            .fetch(
                                hpb::FetchHistoryRequest {
                                    conversation: Some(peer("dave")),
                                    page_size: 20,
                                    max_pages: 1,
                                    ..Default::default()
                                },
                                Some(Duration::from_secs(10)),
                            )
                            .await
                            .map(|_| ())
                    };
                    let elapsed = started.elapsed();
                    let mut v = victim.lock().unwrap();
                    if let Err(s) = &outcome {
                        if now != WARM {
                            v.errors.add(s);
                        }
                    }
                    // A call counts in the phase it began and ended in.
                    if outcome.is_ok() && phase.load(Ordering::SeqCst) == now {
                        match now {
                            UNLOADED | UNLOADED_AFTER => v.unloaded.push(elapsed),
                            ATTACK => v.attack.push(elapsed),
                            _ => {}
                        }
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    phase.store(UNLOADED, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let unloaded_before = victim.lock().unwrap().unloaded.clone();

    // The attack.
    let rss_before = server.rss_kib();
    let scrape_before = server.scrape().await;
    let attack = Arc::new(Attack::default());
    let (stop, stopping) = watch::channel(false);
    let slots: Arc<Vec<Slot>> = Arc::new(
        (0..CONNECTIONS)
            .map(|_| Slot {
                current: tokio::sync::Mutex::new(None),
            })
            .collect(),
    );
    // The server's stream limit, as a connection sees it once the server's SETTINGS are in
    // (after a first answer).
    let max_streams = {
        let probe = RawConnection::connect(server.addr, 0).await.unwrap();
        let _ = probe
            .call("/nope.Nope/Nope", None, None, Default::default())
            .await;
        probe.max_streams()
    };
    phase.store(ATTACK, Ordering::SeqCst);
    let attack_started = Instant::now();
    let lanes: Vec<_> = (0..LANES)
        .map(|i| {
            attack_runtime.spawn(lane(
                i,
                slots.clone(),
                server.addr,
                server.token("mallory", false),
                attack.clone(),
                stopping.clone(),
            ))
        })
        .collect();
    // Memory every 100 ms; the server's calls in progress every second.
    let mut rss_peak = rss_before;
    let mut in_flight_peak = 0f64;
    let mut next_scrape = Instant::now();
    // For `attack_for`, and until the victim has had enough calls to measure a p99 and the
    // server has shown its defences as often as the checks below need (stalls ended, the
    // attacker's connections closed, calls refused by the quota): counts, not times, so a
    // loaded machine makes the attack longer, never the test fail (the flake hunt saw 9 of the
    // 10 connections closed within 16 s once).
    let mut defended = false;
    while attack_started.elapsed() < attack_for
        || victim.lock().unwrap().attack.len() < 200
        || !defended
    {
        rss_peak = rss_peak.max(server.rss_kib());
        if Instant::now() >= next_scrape {
            let scrape = server.scrape().await;
            in_flight_peak = in_flight_peak.max(metric_sum(&scrape, "roaming_grpc_in_flight", &[]));
            let so_far =
                |name: &str| metric_sum(&scrape, name, &[]) - metric_sum(&scrape_before, name, &[]);
            defended = so_far("roaming_grpc_stalled_total") >= USER_QUOTA as f64
                && so_far("roaming_connections_closed_total") >= CONNECTIONS as f64
                && so_far("roaming_grpc_quota_refused_total") >= (LANES - USER_QUOTA) as f64;
            next_scrape += Duration::from_secs(1);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rss_at_end = server.rss_kib();
    phase.store(SETTLING, Ordering::SeqCst);
    let _ = stop.send(true);
    for lane in lanes {
        lane.await.unwrap();
    }
    drop(slots);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let scrape_after = server.scrape().await;
    phase.store(UNLOADED_AFTER, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(5)).await;
    while victim.lock().unwrap().unloaded.len() < 200 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    phase.store(DONE, Ordering::SeqCst);
    for t in victim_tasks {
        t.await.unwrap();
    }
    let rss_after = server.rss_kib();
    let still_running = server.is_running();

    let mut v = std::mem::take(&mut *victim.lock().unwrap());
    let unloaded_calls = v.unloaded.len();
    let attack_calls = v.attack.len();
    let mut before = unloaded_before;
    let unloaded_before_p99 = quantile_ms(&mut before, 0.99);
    let unloaded_p50 = quantile_ms(&mut v.unloaded, 0.50);
    let unloaded_p99 = quantile_ms(&mut v.unloaded, 0.99);
    let attack_p50 = quantile_ms(&mut v.attack, 0.50);
    let attack_p99 = quantile_ms(&mut v.attack, 0.99);
    let ratio = attack_p99 / unloaded_p99;
    let growth_mib = rss_peak.saturating_sub(rss_before) as f64 / 1024.0;
    let delta =
        |name: &str| metric_sum(&scrape_after, name, &[]) - metric_sum(&scrape_before, name, &[]);
    let stalled = delta("roaming_grpc_stalled_total");
    let closed = delta("roaming_connections_closed_total");
    let quota_refused = delta("roaming_grpc_quota_refused_total");
    let shed = delta("roaming_grpc_shed_total");
    let a = &attack;
    println!(
        "slow_clients: lanes={LANES} connections={CONNECTIONS} attack_s={} quota={USER_QUOTA} \
         max_streams_per_connection={max_streams} admitted={} held_max={} refused_quota={} \
         refused_global={} ended_by_server={} data_frames={} attacker_connections={} other={} \
         server_in_flight_peak={in_flight_peak} stalled_ended={stalled} connections_closed={closed} \
         quota_refused={quota_refused} shed={shed} victim_unloaded_calls={unloaded_calls} \
         victim_attack_calls={attack_calls} victim_errors={} unloaded_p50_ms={unloaded_p50:.1} \
         unloaded_p99_ms={unloaded_p99:.1} unloaded_before_p99_ms={unloaded_before_p99:.1} \
         attack_p50_ms={attack_p50:.1} attack_p99_ms={attack_p99:.1} p99_ratio={ratio:.2} \
         rss_before_mib={:.1} rss_peak_mib={:.1} rss_growth_mib={growth_mib:.1} \
         rss_end_of_attack_mib={:.1} rss_after_mib={:.1} still_running={still_running} \
         attacker_threads_lowered={lowered} log={:?}",
        attack_for.as_secs(),
        a.admitted.load(Ordering::SeqCst),
        a.max_held.load(Ordering::SeqCst),
        a.refused_quota.load(Ordering::SeqCst),
        a.refused_global.load(Ordering::SeqCst),
        a.ended_by_server.load(Ordering::SeqCst),
        a.data_received.load(Ordering::SeqCst),
        a.connections.load(Ordering::SeqCst),
        a.other.lock().unwrap(),
        v.errors,
        rss_before as f64 / 1024.0,
        rss_peak as f64 / 1024.0,
        rss_at_end as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        server.log,
    );
    victim_runtime.shutdown_background();
    attack_runtime.shutdown_background();
    // The attack was real: the user held her whole quota, was refused beyond it, the server
    // ended her calls and closed the connections that held them.
    assert_eq!(max_streams, 100, "SETTINGS_MAX_CONCURRENT_STREAMS");
    assert!(
        a.max_held.load(Ordering::SeqCst) >= USER_QUOTA as i64,
        "the attacker never held its quota"
    );
    assert!(quota_refused >= (LANES - USER_QUOTA) as f64);
    assert!(stalled >= USER_QUOTA as f64, "stalled calls were not ended");
    assert!(
        closed >= CONNECTIONS as f64,
        "the attacker's connections were not closed"
    );
    assert_eq!(
        a.data_received.load(Ordering::SeqCst),
        0,
        "a zero window let data through"
    );
    assert_eq!(a.other.lock().unwrap().total(), 0);
    // It took nobody else's slot: the server refused nothing at its concurrency limit, and
    // its calls in progress stayed far below it (about the quota and the victim's 4; the
    // gauge also counts a call while the quota's refusal of it is being written, so under
    // load a sample can hold one or two more: it is printed, and the bound asserted is the
    // server-wide limit a user without a quota would have filled).
    let global_limit = roaming_runtime::guard::GuardSettings::DEFAULT.max_concurrent_calls;
    assert!(
        in_flight_peak < global_limit as f64 / 2.0,
        "{in_flight_peak} calls in progress, against a concurrency limit of {global_limit}"
    );
    assert_eq!(a.refused_global.load(Ordering::SeqCst), 0);
    assert_eq!(shed, 0.0);
    // The victim.
    assert_eq!(
        v.errors.total(),
        0,
        "the other user's calls failed: {}",
        v.errors
    );
    assert!(attack_calls >= 200 && unloaded_calls >= 200);
    if crate::faults::support::latency_bounds_asserted() {
        assert!(
            ratio <= 2.0,
            "the other user's p99 under the attack is {ratio:.2} × unloaded ({attack_p99:.1} ms \
             vs {unloaded_p99:.1} ms)"
        );
    }
    assert!(
        growth_mib < 100.0,
        "the server's RSS grew by {growth_mib:.1} MiB under the attack"
    );
    assert!(still_running);
}
