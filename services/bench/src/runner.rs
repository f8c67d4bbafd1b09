//! Runs one measured cell: C workers issuing one operation after another for a bounded time
//! and number of requests, latency in an HDR histogram (microseconds), the server's CPU and
//! RSS, PostgreSQL's backends' CPU and the load generator's own CPU around the window.

use crate::procfs;
use futures::future::BoxFuture;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Bounds of one cell.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Unmeasured warm-up.
    pub warmup: Duration,
    /// Measured window.
    pub duration: Duration,
    /// Most measured requests (the window ends early when reached).
    pub max_requests: u64,
}

/// What an operation reports: items it moved (messages, conversations) and, for mixed
/// workloads, which kind of operation it was.
pub struct Done {
    /// Messages or conversations read or written.
    pub items: u64,
    /// Operation label (mixed workload), or empty.
    pub label: &'static str,
}

impl Done {
    /// `items` of an unlabelled operation.
    pub fn items(items: u64) -> Self {
        Self { items, label: "" }
    }
}

/// One operation of worker `w`, number `i`.
pub type Op = Arc<dyn Fn(usize, u64) -> BoxFuture<'static, Result<Done, String>> + Send + Sync>;

/// Where the server and database live, for CPU and memory figures.
#[derive(Clone)]
pub struct Probes {
    /// The server process, when one runs.
    pub server_pid: Option<u32>,
    /// A connection that lists the bench database's backends.
    pub admin: Arc<tokio_postgres::Client>,
    /// The bench database's name.
    pub database: String,
}

impl Probes {
    async fn backend_cpu(&self) -> HashMap<u32, Duration> {
        let rows = self
            .admin
            .query(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&self.database],
            )
            .await
            .unwrap_or_default();
        rows.iter()
            .map(|r| {
                let pid = r.get::<_, i32>(0) as u32;
                (pid, procfs::cpu_time(pid))
            })
            .collect()
    }
}

/// Latency summary in milliseconds.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Latency {
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// Mean.
    pub mean_ms: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            p50_ms: ms(h.value_at_quantile(0.5)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        }
    }
}

/// The figures of one cell.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Measured {
    /// Measured operations that succeeded.
    pub ops: u64,
    /// Failed operations (warm-up included).
    pub errors: u64,
    /// The first error seen.
    pub first_error: Option<String>,
    /// Length of the measured window, seconds.
    pub secs: f64,
    /// Operations per second.
    pub ops_per_sec: f64,
    /// Items (messages, conversations) per second.
    pub items_per_sec: f64,
    /// Latency of successful operations.
    pub latency: Latency,
    /// Per-label latency and rate (mixed workload).
    pub by_label: Vec<(String, u64, Latency)>,
    /// Server CPU over the window, percent of one core.
    pub server_cpu_pct: f64,
    /// Largest server RSS sampled during the cell (warm-up included), MB.
    pub server_rss_max_mb: f64,
    /// PostgreSQL backends of this database, CPU percent of one core.
    pub postgres_cpu_pct: f64,
    /// The load generator (this process), CPU percent of one core.
    pub client_cpu_pct: f64,
    /// Everything else on the machine (other users' builds and tests), CPU percent of one
    /// core: how much the figures were disturbed.
    pub other_cpu_pct: f64,
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")
}

/// Runs `op` with `concurrency` workers within `bounds`.
pub async fn run(concurrency: usize, bounds: Bounds, probes: &Probes, op: Op) -> Measured {
    let start = Instant::now();
    let measure_from = start + bounds.warmup;
    let deadline = measure_from + bounds.duration;
    let measured = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error: Arc<std::sync::Mutex<Option<String>>> = Arc::default();

    // RSS sampler (every 50 ms, warm-up included) and CPU snapshots at the window's edges.
    let stop_sampler = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop_sampler.clone();
        let pid = probes.server_pid;
        tokio::spawn(async move {
            let mut max_rss = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if let Some(pid) = pid {
                    max_rss = max_rss.max(procfs::memory(pid).rss);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            max_rss
        })
    };
    let edges = {
        let probes = probes.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(measure_from.into()).await;
            let t0 = Instant::now();
            let server0 = probes.server_pid.map(procfs::cpu_time);
            let client0 = procfs::cpu_time(std::process::id());
            let pg0 = probes.backend_cpu().await;
            let machine0 = procfs::machine_busy();
            (t0, server0, client0, pg0, machine0)
        })
    };

    let mut workers = Vec::with_capacity(concurrency);
    for w in 0..concurrency {
        let op = op.clone();
        let measured = measured.clone();
        let errors = errors.clone();
        let first_error = first_error.clone();
        workers.push(tokio::spawn(async move {
            let mut h = new_histogram();
            let mut labels: HashMap<&'static str, Histogram<u64>> = HashMap::new();
            let mut items = 0u64;
            let mut last_done = measure_from;
            let mut i = 0u64;
            loop {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                let in_window = now >= measure_from;
                if in_window && measured.fetch_add(1, Ordering::Relaxed) >= bounds.max_requests {
                    break;
                }
                let t = Instant::now();
                let result = op(w, i).await;
                i += 1;
                let done_at = Instant::now();
                let us = done_at.duration_since(t).as_micros().max(1) as u64;
                match result {
                    Ok(done) if in_window => {
                        h.saturating_record(us);
                        items += done.items;
                        if !done.label.is_empty() {
                            labels
                                .entry(done.label)
                                .or_insert_with(new_histogram)
                                .saturating_record(us);
                        }
                        last_done = done_at;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if in_window {
                            measured.fetch_sub(1, Ordering::Relaxed);
                        }
                        errors.fetch_add(1, Ordering::Relaxed);
                        {
                            let mut first = first_error.lock().unwrap_or_else(|p| p.into_inner());
                            if first.is_none() {
                                *first = Some(e);
                            }
                        }
                        // An error storm must not spin: back off a little.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
            (h, labels, items, last_done)
        }));
    }
    let mut total = new_histogram();
    let mut labels: HashMap<&'static str, Histogram<u64>> = HashMap::new();
    let mut items = 0u64;
    let mut window_end = measure_from;
    for wk in workers {
        if let Ok((h, l, n, last)) = wk.await {
            let _ = total.add(&h);
            for (k, v) in l {
                let _ = labels.entry(k).or_insert_with(new_histogram).add(&v);
            }
            items += n;
            window_end = window_end.max(last);
        }
    }
    let end = Instant::now();
    let server1 = probes.server_pid.map(procfs::cpu_time);
    let client1 = procfs::cpu_time(std::process::id());
    let pg1 = probes.backend_cpu().await;
    let machine1 = procfs::machine_busy();
    stop_sampler.store(true, Ordering::Relaxed);
    let max_rss = sampler.await.unwrap_or(0);
    let (t0, server0, client0, pg0, machine0) = match edges.await {
        Ok(v) => v,
        Err(_) => (
            measure_from,
            None,
            Duration::ZERO,
            HashMap::new(),
            Duration::ZERO,
        ),
    };

    let cpu_secs = end.duration_since(t0).as_secs_f64().max(1e-9);
    let pct = |d: Duration| 100.0 * d.as_secs_f64() / cpu_secs;
    let pg_delta: Duration = pg1
        .iter()
        .map(|(pid, t1)| t1.saturating_sub(pg0.get(pid).copied().unwrap_or_default()))
        .sum();
    let server_cpu = match (server0, server1) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => Duration::ZERO,
    };
    let client_cpu = client1.saturating_sub(client0);
    let other = machine1
        .saturating_sub(machine0)
        .saturating_sub(server_cpu + pg_delta + client_cpu);
    let secs = window_end
        .duration_since(measure_from)
        .as_secs_f64()
        .max(1e-9);
    let ops = total.len();
    let mut by_label: Vec<(String, u64, Latency)> = labels
        .iter()
        .map(|(k, h)| ((*k).to_owned(), h.len(), Latency::of(h)))
        .collect();
    by_label.sort_by(|a, b| a.0.cmp(&b.0));
    Measured {
        ops,
        errors: errors.load(Ordering::Relaxed),
        first_error: first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone(),
        secs,
        ops_per_sec: ops as f64 / secs,
        items_per_sec: items as f64 / secs,
        latency: Latency::of(&total),
        by_label,
        server_cpu_pct: pct(server_cpu),
        server_rss_max_mb: max_rss as f64 / (1024.0 * 1024.0),
        postgres_cpu_pct: pct(pg_delta),
        client_cpu_pct: pct(client_cpu),
        other_cpu_pct: pct(other),
    }
}
