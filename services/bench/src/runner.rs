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

/// Untimed work before a measurement (given the concurrency), e.g. bringing sync tokens up to
/// date.
pub type Setup = Arc<dyn Fn(usize) -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// How one measurement drives its operation.
#[derive(Clone)]
pub struct Drive {
    /// Run first, untimed (its failure is counted as an error of the measurement).
    pub setup: Option<Setup>,
    /// `None`: a closed loop, every worker issuing `op` back to back. `Some`: rounds; in each,
    /// every worker runs `prepare` (untimed), then, once all are done, every worker runs `op`
    /// (timed); see [`run_phased`].
    pub prepare: Option<Op>,
    /// The measured operation.
    pub op: Op,
}

impl Drive {
    /// A closed loop of `op`.
    pub fn closed(op: Op) -> Self {
        Self {
            setup: None,
            prepare: None,
            op,
        }
    }

    /// Rounds of `prepare` (untimed) then `op` (timed).
    pub fn phased(prepare: Op, op: Op) -> Self {
        Self {
            setup: None,
            prepare: Some(prepare),
            op,
        }
    }

    /// With `setup` run before the measurement.
    pub fn with_setup(mut self, setup: Setup) -> Self {
        self.setup = Some(setup);
        self
    }
}

/// Runs `drive` with `concurrency` workers within `bounds`.
pub async fn measure(
    concurrency: usize,
    bounds: Bounds,
    probes: &Probes,
    drive: Drive,
) -> Measured {
    let setup_error = match &drive.setup {
        Some(setup) => setup(concurrency).await.err(),
        None => None,
    };
    let mut m = match drive.prepare {
        None => run(concurrency, bounds, probes, drive.op).await,
        Some(prepare) => run_phased(concurrency, bounds, probes, prepare, drive.op).await,
    };
    if let Some(e) = setup_error {
        m.errors += 1;
        m.first_error.get_or_insert(format!("setup: {e}"));
    }
    m
}

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
    /// Calls per second of the CPU window: what the CPU figures are divided by for CPU per
    /// call. The same as `ops_per_sec` for closed-loop cells; for phased cells (an untimed
    /// preparation, then the timed call, in rounds) `ops_per_sec` counts the timed phases
    /// only while the CPU is read over the whole window, so their CPU per call is per round:
    /// the preparation and the call. 0 in runs recorded before it existed.
    #[serde(default)]
    pub cpu_ops_per_sec: f64,
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

/// CPU times at one instant: the window's edges.
struct CpuMark {
    at: Instant,
    server: Option<Duration>,
    client: Duration,
    postgres: HashMap<u32, Duration>,
    machine: Duration,
}

impl CpuMark {
    async fn take(probes: &Probes) -> Self {
        let at = Instant::now();
        let server = probes.server_pid.map(procfs::cpu_time);
        let client = procfs::cpu_time(std::process::id());
        let postgres = probes.backend_cpu().await;
        let machine = procfs::machine_busy();
        Self {
            at,
            server,
            client,
            postgres,
            machine,
        }
    }

    /// A mark standing for "no measurement" (every figure 0).
    fn empty(at: Instant) -> Self {
        Self {
            at,
            server: None,
            client: Duration::ZERO,
            postgres: HashMap::new(),
            machine: Duration::ZERO,
        }
    }
}

/// CPU % of one core between two marks: (server, PostgreSQL, load generator, other).
fn cpu_between(a: &CpuMark, b: &CpuMark) -> (f64, f64, f64, f64) {
    let cpu_secs = b.at.duration_since(a.at).as_secs_f64().max(1e-9);
    let pct = |d: Duration| 100.0 * d.as_secs_f64() / cpu_secs;
    let pg_delta: Duration = b
        .postgres
        .iter()
        .map(|(pid, t1)| t1.saturating_sub(a.postgres.get(pid).copied().unwrap_or_default()))
        .sum();
    let server_cpu = match (a.server, b.server) {
        (Some(x), Some(y)) => y.saturating_sub(x),
        _ => Duration::ZERO,
    };
    let client_cpu = b.client.saturating_sub(a.client);
    let other = b
        .machine
        .saturating_sub(a.machine)
        .saturating_sub(server_cpu + pg_delta + client_cpu);
    (pct(server_cpu), pct(pg_delta), pct(client_cpu), pct(other))
}

/// Samples the server's RSS every 50 ms until `stop` is set; returns the largest, bytes.
fn rss_sampler(pid: Option<u32>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
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
    let sampler = rss_sampler(probes.server_pid, stop_sampler.clone());
    let edges = {
        let probes = probes.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(measure_from.into()).await;
            CpuMark::take(&probes).await
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
    let end = CpuMark::take(probes).await;
    stop_sampler.store(true, Ordering::Relaxed);
    let max_rss = sampler.await.unwrap_or(0);
    let start_mark = edges.await.unwrap_or_else(|_| CpuMark::empty(measure_from));
    let (server_cpu, pg_cpu, client_cpu, other_cpu) = cpu_between(&start_mark, &end);
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
        cpu_ops_per_sec: ops as f64 / secs,
        items_per_sec: items as f64 / secs,
        latency: Latency::of(&total),
        by_label,
        server_cpu_pct: server_cpu,
        server_rss_max_mb: max_rss as f64 / (1024.0 * 1024.0),
        postgres_cpu_pct: pg_cpu,
        client_cpu_pct: client_cpu,
        other_cpu_pct: other_cpu,
    }
}

/// Runs `op` in rounds with `concurrency` workers: in each round every worker runs `prepare`
/// (untimed: e.g. the writes a delta is to find), and once every worker is done, every worker
/// runs `op`, timed one by one. The cell's wall time is bounded as a closed loop's (warm-up,
/// then `duration`, `max_requests`); only rounds that start after the warm-up count.
///
/// What it reports: latency of each `op`; throughput = measured `op`s / the summed wall time
/// of the measured phases (from the phase's start until its last `op` is done), so the
/// untimed work neither adds to the latency nor shares the machine with a timed call. A
/// phase lasts as long as its slowest call, so at C > 1 this throughput is below a closed
/// loop's; compare it with a reference measured the same way. CPU figures cover the whole
/// measured window, untimed work included.
pub async fn run_phased(
    concurrency: usize,
    bounds: Bounds,
    probes: &Probes,
    prepare: Op,
    op: Op,
) -> Measured {
    let start = Instant::now();
    let measure_from = start + bounds.warmup;
    let deadline = measure_from + bounds.duration;
    let stop_sampler = Arc::new(AtomicBool::new(false));
    let sampler = rss_sampler(probes.server_pid, stop_sampler.clone());
    let mut total = new_histogram();
    let mut items = 0u64;
    let mut errors = 0u64;
    let mut first_error: Option<String> = None;
    let mut measured_secs = 0.0f64;
    let mut start_mark: Option<CpuMark> = None;
    let mut round = 0u64;
    let mut note = |e: String, errors: &mut u64| {
        *errors += 1;
        first_error.get_or_insert(e);
    };
    loop {
        let now = Instant::now();
        if now >= deadline || total.len() >= bounds.max_requests {
            break;
        }
        let in_window = now >= measure_from;
        if in_window && start_mark.is_none() {
            start_mark = Some(CpuMark::take(probes).await);
        }
        let prepared = futures::future::join_all((0..concurrency).map(|w| prepare(w, round))).await;
        for r in prepared {
            if let Err(e) = r {
                note(format!("prepare: {e}"), &mut errors);
            }
        }
        let phase = Instant::now();
        let results = futures::future::join_all((0..concurrency).map(|w| {
            let call = op(w, round);
            async move {
                let t = Instant::now();
                let r = call.await;
                (r, t.elapsed())
            }
        }))
        .await;
        let phase_secs = phase.elapsed().as_secs_f64();
        round += 1;
        let mut ok = 0;
        for (r, took) in results {
            match r {
                Ok(done) if in_window => {
                    total.saturating_record(took.as_micros().max(1) as u64);
                    items += done.items;
                    ok += 1;
                }
                Ok(_) => {}
                Err(e) => note(e, &mut errors),
            }
        }
        if in_window && ok > 0 {
            measured_secs += phase_secs;
        }
        if errors > 0 && ok == 0 {
            // An error storm must not spin: back off a little.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let end = CpuMark::take(probes).await;
    stop_sampler.store(true, Ordering::Relaxed);
    let max_rss = sampler.await.unwrap_or(0);
    let (server_cpu, pg_cpu, client_cpu, other_cpu) = match &start_mark {
        Some(mark) => cpu_between(mark, &end),
        None => (0.0, 0.0, 0.0, 0.0),
    };
    let window_secs = start_mark
        .as_ref()
        .map_or(0.0, |mark| end.at.duration_since(mark.at).as_secs_f64());
    let secs = measured_secs.max(1e-9);
    let ops = total.len();
    Measured {
        ops,
        errors,
        first_error,
        secs,
        ops_per_sec: ops as f64 / secs,
        cpu_ops_per_sec: ops as f64 / window_secs.max(1e-9),
        items_per_sec: items as f64 / secs,
        latency: Latency::of(&total),
        by_label: Vec::new(),
        server_cpu_pct: server_cpu,
        server_rss_max_mb: max_rss as f64 / (1024.0 * 1024.0),
        postgres_cpu_pct: pg_cpu,
        client_cpu_pct: client_cpu,
        other_cpu_pct: other_cpu,
    }
}
