//! Unknown paths without a token must not grow the server's memory or its metrics.
//!
//! The attack: every request names a new path, up to ~16 KB long, and carries no token.
//! Formerly the request path became the `method` label of the metrics, so every request
//! added a time series (and its bytes) for good, and the scrape grew with it. Now labels come
//! from the contract's fixed set of RPC names (anything else is `unknown`). The server runs
//! in a child process (`support::ServerProcess`) with metrics on, so that its resident memory
//! is its own; 2,000 requests warm it up (connections, allocator arenas), then 20,000 more
//! must leave its RSS within 10 MB of where it was, and one scrape under 1 MB.

use super::support::*;
use bytes::Bytes;
use futures::StreamExt as _;
use rand::{Rng as _, SeedableRng as _};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::Code;

const WARM_UP: usize = 2_000;
const REQUESTS: usize = 20_000;
const CONNECTIONS: usize = 4;
const IN_FLIGHT: usize = 16;
/// The longest path: the server accepts 16 KiB of headers (hyper's default
/// SETTINGS_MAX_HEADER_LIST_SIZE), the rest of the request's headers included.
const MAX_PATH: usize = 15_000;

/// The `i`-th request's path: a quarter under each real service (unknown method), half under
/// a service that does not exist; most 16 B-1 KB long, one in ten 1-15 KB (every path costs
/// HPACK work on both sides, dear in a debug build).
fn path(rng: &mut rand::rngs::StdRng, i: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.";
    let len = if i % 10 == 9 {
        rng.random_range(1024..MAX_PATH)
    } else {
        rng.random_range(16..1024)
    };
    let tail: String = (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    match i % 4 {
        0 => format!("/roaming.history.v1.HistoryService/{i}{tail}"),
        1 => format!("/roaming.conversation.v1.ConversationService/{i}{tail}"),
        _ => format!("/x{i}.{}/{tail}", &tail[..tail.len().min(40)]),
    }
}

/// Sends `n` requests (from the `first`-th on) over `connections`, `IN_FLIGHT` at a time;
/// returns how many the server answered UNAUTHENTICATED and UNIMPLEMENTED.
async fn send(connections: &[Arc<RawConnection>], first: usize, n: usize) -> (usize, usize) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(first as u64);
    let paths: Vec<String> = (first..first + n).map(|i| path(&mut rng, i)).collect();
    let answers: Vec<Code> = futures::stream::iter(paths.into_iter().enumerate())
        .map(|(i, path)| {
            let connection = connections[i % connections.len()].clone();
            async move {
                match connection.call(&path, None, None, Bytes::new()).await {
                    Ok(Answer::Status(code, _)) => code,
                    Ok(Answer::Open(_)) => panic!("unknown_paths: {path:.60}… was served"),
                    Err(e) => panic!(
                        "unknown_paths: a request ({} bytes of path) failed: {e}",
                        path.len()
                    ),
                }
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let unauthenticated = answers
        .iter()
        .filter(|c| **c == Code::Unauthenticated)
        .count();
    let unimplemented = answers
        .iter()
        .filter(|c| **c == Code::Unimplemented)
        .count();
    assert_eq!(
        unauthenticated + unimplemented,
        n,
        "unknown_paths: answers other than UNAUTHENTICATED and UNIMPLEMENTED"
    );
    (unauthenticated, unimplemented)
}

pub async fn scenario() {
    let server = ServerProcess::start("unknown-paths", &[("ROAMING_METRICS_ADDR", "127.0.0.1:0")]);
    let mut connections = Vec::new();
    for _ in 0..CONNECTIONS {
        connections.push(Arc::new(
            RawConnection::connect(server.addr, 65_535).await.unwrap(),
        ));
    }
    send(&connections, 0, WARM_UP).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_before = server.rss_kib();
    let scrape_before = server.scrape().await;

    let started = Instant::now();
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(rss_before));
    let sampler = {
        let (sampling, peak, pid) = (sampling.clone(), peak.clone(), server.pid);
        tokio::spawn(async move {
            while sampling.load(std::sync::atomic::Ordering::SeqCst) {
                peak.fetch_max(rss_kib_of(pid), std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let (unauthenticated, unimplemented) = send(&connections, WARM_UP, REQUESTS).await;
    let took = started.elapsed();
    sampling.store(false, std::sync::atomic::Ordering::SeqCst);
    sampler.await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_after = server.rss_kib();
    let rss_peak = peak
        .load(std::sync::atomic::Ordering::SeqCst)
        .max(rss_after);
    let scrape = server.scrape().await;

    let unknown = metric_sum(
        &scrape,
        "roaming_grpc_requests_total",
        &[r#"method="unknown""#],
    );
    let series = scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count();
    let longest_line = scrape.lines().map(str::len).max().unwrap_or(0);
    let growth_mib = rss_after.saturating_sub(rss_before) as f64 / 1024.0;
    let peak_growth_mib = rss_peak.saturating_sub(rss_before) as f64 / 1024.0;
    println!(
        "unknown_paths: requests={REQUESTS} warm_up={WARM_UP} took_ms={} unauthenticated={unauthenticated} \
         unimplemented={unimplemented} rss_before_mib={:.1} rss_after_mib={:.1} \
         rss_growth_mib={growth_mib:.2} rss_peak_growth_mib={peak_growth_mib:.2} \
         scrape_before_bytes={} scrape_bytes={} sample_lines={series} longest_line={longest_line} \
         requests_labelled_unknown={unknown} log={:?}",
        took.as_millis(),
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        scrape_before.len(),
        scrape.len(),
        server.log,
    );
    assert!(
        unknown >= (WARM_UP + REQUESTS) as f64,
        "unknown_paths: the requests did not reach the guard's metrics ({unknown} labelled unknown)"
    );
    assert!(
        growth_mib < 10.0,
        "unknown_paths: the server's RSS grew by {growth_mib:.1} MiB over {REQUESTS} requests"
    );
    assert!(
        scrape.len() < 1024 * 1024,
        "unknown_paths: one scrape is {} bytes",
        scrape.len()
    );
    assert!(
        longest_line < 1024,
        "unknown_paths: a metrics line of {longest_line} bytes (a path in a label?)"
    );
}
