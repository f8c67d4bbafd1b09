//! `roaming-bench`: Roaming's load driver.
//!
//! One run: a fresh database on the local PostgreSQL; the server in a child process on
//! `127.0.0.1:0`; synthetic data loaded by COPY in stages of growing size; at each stage the
//! history-page probe, and at the top stage every scenario at every concurrency, each through
//! the client and as its ceiling (the store's SQL issued directly, or the raw INSERT); the
//! change feed and the filtered page against a history page measured in the same cell
//! (`feed.rs`); the read state's cost to a list page, and MarkRead, recall and edit against a
//! raw single-row UPDATE (`organise.rs`), beside the gRPC floor that bounds those ratios
//! (`floor.rs`); then JSON, markdown and SVG, and the database is
//! dropped. Everything is loopback and bounded in time and requests. See
//! `services/bench/docs/results.md`.

mod feed;
mod floor;
mod load;
mod organise;
mod procfs;
mod report;
mod runner;
mod scenarios;
mod server;
mod shape;

use anyhow::{Context as _, anyhow};
use clap::{Parser, Subcommand};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures::FutureExt as _;
use report::{Cell, Report, Stage};
use roaming_client::Client;
use runner::{Bounds, Done, Drive, Measured, Op, Probes};
use scenarios::{Ctx, Read, Workload, Write};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Roaming's load driver: synthetic data by COPY, every scenario through the client against
/// a server on loopback, and the PostgreSQL ceiling in the same run.
#[derive(Debug, Parser)]
#[command(
    name = "roaming-bench",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Re-renders results.md and results.svg from a results.json (e.g. after changing the
    /// chart), without running anything.
    Render {
        /// The results.json of a run.
        json: PathBuf,
        /// Where results.md and results.svg go (default: beside the JSON).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// (internal) The server under test, started by the bench itself.
    #[command(hide = true)]
    Serve(server::ServeArgs),
}

#[derive(Debug, Clone, clap::Args)]
struct RunArgs {
    /// Small and short (10k and 100k messages, well under 2 minutes): what CI runs.
    #[arg(long)]
    quick: bool,
    /// Messages stored at the top stage (`100k`, `1M`, `10M` accepted). Default 1M, or 100k
    /// with --quick.
    #[arg(long, value_parser = parse_count)]
    messages: Option<u64>,
    /// Stored-message sizes at which the history-page latency is measured, comma-separated;
    /// the last is the top stage. Default: top/100, top/10, top (those ≥ 10k).
    #[arg(long, value_delimiter = ',', value_parser = parse_count)]
    stages: Option<Vec<u64>>,
    /// Concurrency levels.
    #[arg(long, value_delimiter = ',', default_values = ["1", "16", "64"])]
    concurrency: Vec<usize>,
    /// Measured time per cell. Default 4s, or 0.5s with --quick.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Unmeasured warm-up per cell. Default 1s, or 0.15s with --quick.
    #[arg(long, value_parser = humantime::parse_duration)]
    warmup: Option<Duration>,
    /// Most measured calls per cell. Default 200,000, or 20,000 with --quick.
    #[arg(long)]
    max_requests: Option<u64>,
    /// Database connections of the server's pool, and of the ceiling's.
    #[arg(long, default_value_t = 16)]
    pool_size: usize,
    /// Random anchors sampled per stage. Default 20,000, or 5,000 with --quick.
    #[arg(long)]
    anchors: Option<usize>,
    /// Parallel COPY streams of the loader.
    #[arg(long, default_value_t = 2)]
    load_connections: usize,
    /// The PostgreSQL maintenance database: the bench creates its own database beside it.
    #[arg(
        long,
        env = "ROAMING_BENCH_ADMIN_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    admin_url: String,
    /// Where results.json, results.md and results.svg go.
    #[arg(long, default_value = "target/roaming-bench")]
    out: PathBuf,
    /// Keep the database afterwards (its name is printed).
    #[arg(long)]
    keep: bool,
    /// Seed of the data set and of the picks.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Run only scenarios whose name contains one of these (comma-separated).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
}

fn parse_count(s: &str) -> Result<u64, String> {
    let s = s.trim().replace('_', "");
    let (digits, factor) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1_000),
        Some('m' | 'M') => (&s[..s.len() - 1], 1_000_000),
        _ => (s.as_str(), 1),
    };
    let v = f64::from_str(digits).map_err(|e| format!("{s:?}: {e}"))?;
    Ok((v * factor as f64).round() as u64)
}

/// Settings with the --quick defaults resolved.
#[derive(Debug, Clone)]
struct Settings {
    args: RunArgs,
    stages: Vec<u64>,
    bounds: Bounds,
    /// Bounds of the change-feed and filtered-page cells: `bounds`, or shorter with --quick
    /// (unless --warmup / --duration say otherwise), so they add only seconds to CI's run.
    feed_bounds: Bounds,
    anchors: usize,
}

impl Settings {
    fn resolve(args: RunArgs) -> anyhow::Result<Self> {
        let quick = args.quick;
        let top = args
            .messages
            .unwrap_or(if quick { 100_000 } else { 1_000_000 });
        let mut stages = match &args.stages {
            Some(s) => s.clone(),
            None => [top / 100, top / 10, top]
                .into_iter()
                .filter(|&s| s >= 10_000)
                .collect(),
        };
        stages.sort_unstable();
        stages.dedup();
        if stages.is_empty() {
            stages.push(top);
        }
        if stages[0] < 10_000 {
            anyhow::bail!("the smallest stage must be at least 10,000 messages");
        }
        let bounds = Bounds {
            warmup: args.warmup.unwrap_or(if quick {
                Duration::from_millis(150)
            } else {
                Duration::from_secs(1)
            }),
            duration: args.duration.unwrap_or(if quick {
                Duration::from_millis(500)
            } else {
                Duration::from_secs(4)
            }),
            max_requests: args
                .max_requests
                .unwrap_or(if quick { 20_000 } else { 200_000 }),
        };
        // With --quick: no warm-up, so that even a call longer than the window (a snapshot of
        // 1,000 conversations at C=16) is measured once per worker.
        let feed_bounds = Bounds {
            warmup: args
                .warmup
                .unwrap_or(if quick { Duration::ZERO } else { bounds.warmup }),
            duration: args.duration.unwrap_or(if quick {
                Duration::from_millis(50)
            } else {
                bounds.duration
            }),
            max_requests: bounds.max_requests,
        };
        let anchors = args.anchors.unwrap_or(if quick { 5_000 } else { 20_000 });
        Ok(Self {
            args,
            stages,
            bounds,
            feed_bounds,
            anchors,
        })
    }

    fn wants(&self, scenario: &str) -> bool {
        self.args.only.is_empty() || self.args.only.iter().any(|o| scenario.contains(o.as_str()))
    }

    /// The gRPC floor runs when asked for, or with any cell whose verdict it bounds.
    fn wants_floor(&self) -> bool {
        self.wants(floor::FLOOR)
            || self.wants("append_single")
            || organise::Change::ALL.iter().any(|c| self.wants(c.name()))
    }

    fn config(&self) -> BTreeMap<String, String> {
        let mut c = BTreeMap::new();
        let stages: Vec<String> = self.stages.iter().map(u64::to_string).collect();
        c.insert("stages".into(), stages.join(","));
        c.insert(
            "concurrency".into(),
            self.args
                .concurrency
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(","),
        );
        c.insert("warmup".into(), format!("{:?}", self.bounds.warmup));
        c.insert("duration".into(), format!("{:?}", self.bounds.duration));
        c.insert(
            "feed_cells".into(),
            format!(
                "warmup {:?}, duration {:?}{}",
                self.feed_bounds.warmup,
                self.feed_bounds.duration,
                if self.args.quick {
                    ", no store-API figure, no per-stage probe, the 1,000-conversation \
                     snapshot at C=1 only (--quick)"
                } else {
                    ""
                }
            ),
        );
        c.insert("max_requests".into(), self.bounds.max_requests.to_string());
        c.insert("pool_size".into(), self.args.pool_size.to_string());
        c.insert("anchors".into(), self.anchors.to_string());
        c.insert("seed".into(), self.args.seed.to_string());
        c.insert(
            "server".into(),
            "child process (roaming-bench serve: roaming::serve on 127.0.0.1:0)".into(),
        );
        c
    }
}

/// The command line that reproduces this run.
fn reproduce_command() -> String {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .map(|a| {
            if a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_=.,/:".contains(c))
            {
                a
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect();
    let mut cmd = "cargo run --release -p roaming-bench --".to_owned();
    for a in args {
        cmd.push(' ');
        cmd.push_str(&a);
    }
    cmd
}

/// The same allocator as the `roaming` binary (see its `main.rs`): this binary is also the
/// server under test (`roaming-bench serve`), which must run as `roaming serve` does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| match cli.command {
            Some(Command::Serve(args)) => runtime.block_on(server::serve_child(args)),
            Some(Command::Render { json, out }) => render(&json, out),
            None => Settings::resolve(cli.run).and_then(|s| runtime.block_on(run(s))),
        });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("roaming-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn render(json: &std::path::Path, out: Option<PathBuf>) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(json).with_context(|| format!("reading {}", json.display()))?;
    let report: Report = serde_json::from_str(&text)?;
    let out = out.unwrap_or_else(|| {
        json.parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default()
    });
    std::fs::create_dir_all(&out)?;
    report::write_files(&report, &out)?;
    println!("wrote {0}/results.md and {0}/results.svg", out.display());
    Ok(())
}

/// A direct connection, with the URL's TLS as the server opens its own.
async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    Ok(roaming_store::db::connect(&roaming_store::db::parse_url(url)?).await?)
}

/// `admin_url` naming database `name`, its parameters (`?sslmode=...`) kept.
fn database_url(admin_url: &str, name: &str) -> anyhow::Result<String> {
    let (path, query) = match admin_url.split_once('?') {
        Some((path, query)) => (path, format!("?{query}")),
        None => (admin_url, String::new()),
    };
    match path.rsplit_once('/') {
        Some((base, _)) if base.contains("://") => Ok(format!("{base}/{name}{query}")),
        _ => Err(anyhow!(
            "--admin-url must be a postgres:// URL ending in /<database>"
        )),
    }
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    let command = reproduce_command();
    println!("roaming-bench: reproduce with:\n  {command}");
    let name = format!(
        "roaming_bench_{}_{}",
        std::process::id(),
        rand::random::<u32>()
    );
    let url = database_url(&settings.args.admin_url, &name)?;
    roaming::open_store(&url, &Default::default())
        .await
        .context("creating the bench database (PostgreSQL must run at --admin-url)")?;
    println!("database {name} created and migrated");

    let outcome = tokio::select! {
        r = run_in(&settings, &name, &url, &command) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
    };

    if settings.args.keep {
        println!("kept database {name} ({url})");
    } else {
        let admin = connect(&settings.args.admin_url).await?;
        roaming_store::citus::drop_database(&admin, &name)
            .await
            .context("dropping the bench database")?;
        println!("database {name} dropped");
    }
    outcome
}

/// The ceiling's pool, over the URL's TLS as the server's pool is (and the connector, for
/// the store built over it).
fn ceiling_pool(url: &str, size: usize) -> anyhow::Result<(Pool, roaming_store::db::Tls)> {
    let db = roaming_store::db::parse_url(url)?;
    let tls = db.tls.clone();
    let mut config = db.pg;
    // The server's connection settings (see roaming-store's db.rs).
    config.options("-c statement_timeout=10000 -c synchronous_commit=on");
    config.application_name("roaming-bench-ceiling");
    let manager = Manager::from_config(
        config,
        tls.clone(),
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .build()?;
    Ok((pool, tls))
}

struct Bench<'a> {
    settings: &'a Settings,
    probes: Probes,
    cells: Vec<Cell>,
    admin: Arc<tokio_postgres::Client>,
}

impl Bench<'_> {
    #[allow(clippy::too_many_arguments)]
    async fn cell(
        &mut self,
        scenario: &str,
        kind: &'static str,
        concurrency: usize,
        stored: u64,
        service: Op,
        ceiling: Option<(Op, &'static str)>,
        store_api: Option<Op>,
        after_ceiling: Option<Arc<Mutex<scenarios::Touched>>>,
    ) -> anyhow::Result<()> {
        let bounds = self.settings.bounds;
        self.cell_with(
            scenario,
            kind,
            concurrency,
            stored,
            bounds,
            Drive::closed(service),
            ceiling.map(|(op, is)| (Drive::closed(op), is)),
            store_api.map(Drive::closed),
            None,
            after_ceiling,
        )
        .await
    }

    /// One cell: the service, then the store's API, then the ceiling, then the bare keyset
    /// page when given, one after the other with the same concurrency and bounds.
    #[allow(clippy::too_many_arguments)]
    async fn cell_with(
        &mut self,
        scenario: &str,
        kind: &'static str,
        concurrency: usize,
        stored: u64,
        bounds: Bounds,
        service: Drive,
        ceiling: Option<(Drive, &'static str)>,
        store_api: Option<Drive>,
        bare: Option<Drive>,
        after_ceiling: Option<Arc<Mutex<scenarios::Touched>>>,
    ) -> anyhow::Result<()> {
        let service = runner::measure(concurrency, bounds, &self.probes, service).await;
        let store_sql = match store_api {
            Some(drive) => Some(runner::measure(concurrency, bounds, &self.probes, drive).await),
            None => None,
        };
        let (ceiling, ceiling_is) = match ceiling {
            Some((drive, is)) => (
                Some(runner::measure(concurrency, bounds, &self.probes, drive).await),
                is,
            ),
            None => (None, ""),
        };
        let bare = match bare {
            Some(drive) => Some(runner::measure(concurrency, bounds, &self.probes, drive).await),
            None => None,
        };
        if let Some(touched) = after_ceiling {
            let touched = std::mem::take(&mut *touched.lock().unwrap_or_else(|p| p.into_inner()));
            scenarios::settle_touched(&self.admin, &touched).await?;
        }
        let ratio = ceiling
            .as_ref()
            .map(|c| Cell::rate(kind, &service) / Cell::rate(kind, c).max(1e-9));
        print_cell(
            scenario,
            kind,
            concurrency,
            &service,
            ceiling.as_ref(),
            ratio,
            bare.as_ref(),
        );
        self.cells.push(Cell {
            scenario: scenario.to_owned(),
            kind: kind.to_owned(),
            concurrency,
            stored_messages: stored,
            service,
            ceiling,
            ceiling_is: ceiling_is.to_owned(),
            store_is: if store_sql.is_some() {
                report::STORE_API.to_owned()
            } else {
                String::new()
            },
            store_sql,
            ratio,
            bare,
        });
        Ok(())
    }

    /// The cells of change-feed scenario `sync` for feed set `set` at each of `levels`.
    async fn feed_cells(
        &mut self,
        ctx: &Arc<Ctx>,
        sync: feed::SyncCall,
        set: usize,
        levels: &[usize],
        stored: u64,
    ) -> anyhow::Result<()> {
        let Some(n) = ctx
            .feed
            .as_ref()
            .and_then(|f| f.sets.get(set))
            .map(|s| s.conversations)
        else {
            return Ok(());
        };
        let scenario = sync.name(n);
        if !self.settings.wants(&scenario) {
            return Ok(());
        }
        let page = ctx.service_read(scenarios::Read::Page {
            size: 50,
            backward: true,
        });
        let quick = self.settings.args.quick;
        for &c in levels {
            // --quick keeps to seconds: a snapshot of 1,000 conversations takes about a
            // second at C=1 on this machine (see results.md), so only C=1 runs it.
            if quick && sync == feed::SyncCall::Snapshot && n >= 1_000 && c > 1 {
                continue;
            }
            let (service, store_api, ceiling, ceiling_is) = match sync {
                feed::SyncCall::Snapshot => (
                    Drive::closed(ctx.feed_service(sync, set)),
                    Drive::closed(ctx.feed_store(sync, set)),
                    Drive::closed(page.clone()),
                    report::PAGE_REFERENCE,
                ),
                feed::SyncCall::Empty => (
                    Drive::closed(ctx.feed_service(sync, set))
                        .with_setup(ctx.feed_refresh(set, false)),
                    Drive::closed(ctx.feed_store(sync, set))
                        .with_setup(ctx.feed_refresh(set, true)),
                    Drive::closed(page.clone()),
                    report::PAGE_REFERENCE,
                ),
                feed::SyncCall::Changes => (
                    Drive::phased(ctx.feed_changes(set), ctx.feed_service(sync, set))
                        .with_setup(ctx.feed_refresh(set, false)),
                    Drive::phased(ctx.feed_changes(set), ctx.feed_store(sync, set))
                        .with_setup(ctx.feed_refresh(set, true)),
                    Drive::phased(idle(), page.clone()),
                    report::PAGE_REFERENCE_PHASED,
                ),
            };
            let bounds = self.settings.feed_bounds;
            let store_api = (!self.settings.args.quick).then_some(store_api);
            self.cell_with(
                &scenario,
                report::VS_PAGE,
                c,
                stored,
                bounds,
                service,
                Some((ceiling, ceiling_is)),
                store_api,
                None,
                None,
            )
            .await?;
        }
        Ok(())
    }
}

/// An operation that does nothing (the untimed phase of a reference measured in rounds).
fn idle() -> Op {
    Arc::new(|_, _| async { Ok(Done::items(0)) }.boxed())
}

fn print_cell(
    scenario: &str,
    kind: &str,
    c: usize,
    m: &Measured,
    ceiling: Option<&Measured>,
    ratio: Option<f64>,
    bare: Option<&Measured>,
) {
    let unit = if kind == "write" { "msg/s" } else { "/s" };
    let mut line = format!(
        "  {scenario:<28} C={c:<3} {:>9.0} {unit:<5} p50 {:>7.2} p99 {:>7.2} p999 {:>7.2} ms  cpu srv {:>3.0}% pg {:>3.0}% other {:>3.0}%  rss {:>5.1} MB",
        Cell::rate(kind, m),
        m.latency.p50_ms,
        m.latency.p99_ms,
        m.latency.p999_ms,
        m.server_cpu_pct,
        m.postgres_cpu_pct,
        m.other_cpu_pct,
        m.server_rss_max_mb
    );
    if let (Some(cm), Some(r)) = (ceiling, ratio) {
        line.push_str(&format!(
            " | ceiling {:>9.0} p99 {:>7.2} → ×{r:.2}",
            Cell::rate(kind, cm),
            cm.latency.p99_ms
        ));
    }
    if let Some(b) = bare {
        line.push_str(&format!(
            " | bare {:>7.0} → ×{:.2}",
            b.ops_per_sec,
            m.ops_per_sec / b.ops_per_sec.max(1e-9)
        ));
    }
    line.push_str(&format!(
        " | µs/call srv {:.0} pg {:.0} bench {:.0}",
        report::cpu_us_per_call(m.server_cpu_pct, m),
        report::cpu_us_per_call(m.postgres_cpu_pct, m),
        report::cpu_us_per_call(m.client_cpu_pct, m)
    ));
    if m.errors > 0 {
        line.push_str(&format!(
            " | {} errors: {}",
            m.errors,
            m.first_error.as_deref().unwrap_or("")
        ));
    }
    println!("{line}");
}

async fn run_in(settings: &Settings, name: &str, url: &str, command: &str) -> anyhow::Result<()> {
    let wall = Instant::now();
    let load_start = procfs::loadavg();
    let (date, started) = procfs::now_utc();
    let machine = procfs::Machine::read();
    let admin = Arc::new(connect(url).await?);
    let mut postgres = BTreeMap::new();
    let version: String = admin
        .query_one("SELECT split_part(version(), ' on ', 1)", &[])
        .await?
        .get(0);
    postgres.insert("version".to_owned(), version);
    // On a Citus coordinator the store's list and feed take their flat shapes, and so do the
    // ceilings that issue the store's statements (roaming_store::sql::Layout).
    let layout = roaming_store::citus::layout(&admin).await?;
    if layout == roaming_store::sql::Layout::Citus {
        let citus: String = admin.query_one("SELECT citus_version()", &[]).await?.get(0);
        postgres.insert("citus".to_owned(), citus);
    }
    for row in admin
        .query(
            "SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY($1) ORDER BY name",
            &[&vec![
                "shared_buffers",
                "effective_cache_size",
                "work_mem",
                "synchronous_commit",
                "fsync",
                "max_connections",
                "jit",
                "random_page_cost",
            ]],
        )
        .await?
    {
        postgres.insert(row.get(0), row.get(1));
    }

    let secret: String = {
        use rand::Rng as _;
        rand::rng()
            .sample_iter(rand::distr::Alphanumeric)
            .take(40)
            .map(char::from)
            .collect()
    };
    let server = server::ServerProcess::start(url, settings.args.pool_size, &secret).await?;
    println!("server pid {} listening on {}", server.pid, server.addr);
    // As long-lived as the server accepts (its ROAMING_JWT_MAX_LIFETIME is the default).
    let token = roaming_runtime::TokenSigner::hs256(&secret).mint(
        "bench-gateway",
        true,
        roaming_runtime::auth::now_secs(),
        roaming_runtime::auth::TokenRules::DEFAULT_MAX_LIFETIME.as_secs(),
    );
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(
            Client::builder(format!("http://{}", server.addr))
                .token(token.clone())
                .connect()
                .await
                .map_err(|e| anyhow!("connecting to the server: {e}"))?,
        );
    }
    let (pool, tls) = ceiling_pool(url, settings.args.pool_size)?;
    let nonce = format!("b{:08x}", rand::random::<u32>());

    let mut bench = Bench {
        settings,
        probes: Probes {
            server_pid: Some(server.pid),
            admin: admin.clone(),
            database: name.to_owned(),
        },
        cells: Vec::new(),
        admin: admin.clone(),
    };
    let mut workload = Arc::new(Workload::default());
    let mut stages = Vec::new();
    let show_progress = !settings.args.no_progress;
    let mut stored = 0u64;
    let conc = &settings.args.concurrency;
    // The change feed's and the filtered page's cells run at the levels up to 16; each
    // feed worker syncs a user of its own.
    let feed_levels: Vec<usize> = conc.iter().copied().filter(|&c| c <= 16).collect();
    let wants_feed = feed::FEED_SIZES.iter().any(|&n| {
        feed::SyncCall::ALL
            .iter()
            .any(|s| settings.wants(&s.name(n)))
    });
    let mut feed: Option<Arc<feed::Feed>> = None;
    let mut feed_load: Option<feed::FeedLoad> = None;
    let mut rare_report: Option<report::RareReport> = None;

    for (i, &target) in settings.stages.iter().enumerate() {
        let budget = target - stored;
        let generation = Arc::new(shape::Generation::plan(
            i as u32,
            budget,
            scenarios::now_ms(),
            settings.args.seed,
        ));
        println!(
            "stage {}: loading {} messages ({} conversations, {} users) → {} stored",
            i + 1,
            budget,
            generation.convs.len(),
            generation.users.len(),
            target
        );
        let loaded = load::load(
            url,
            generation.clone(),
            settings.args.load_connections,
            show_progress,
        )
        .await?;
        println!(
            "  COPY {:.1} s ({:.0} msg/s), VACUUM ANALYZE + CHECKPOINT {:.1} s",
            loaded.copy_secs, loaded.messages_per_sec, loaded.vacuum_secs
        );
        stored = target;
        let mut grown = Arc::unwrap_or_clone(workload);
        grown.add(&generation);
        drop(generation);
        grown
            .sample_anchors(&admin, settings.anchors, settings.args.seed ^ i as u64)
            .await?;
        workload = Arc::new(grown);
        if i == 0 && wants_feed && !feed_levels.is_empty() {
            let users = feed_levels.iter().copied().max().unwrap_or(1);
            let plan = feed::Feed::plan(users, scenarios::now_ms());
            let loaded = feed::load(&admin, &plan).await?;
            println!(
                "  change-feed users: {} per size {:?}, {} conversations, {} messages, {:.1} s",
                loaded.users_per_size,
                loaded.sizes,
                loaded.conversations,
                loaded.messages,
                loaded.secs
            );
            feed = Some(Arc::new(plan));
            feed_load = Some(loaded);
        }
        let top = i + 1 == settings.stages.len();
        let rare = if top && settings.wants(scenarios::FILTERED) && !feed_levels.is_empty() {
            let rare = scenarios::plant_rare(&admin, &workload).await?;
            let t = &workload.targets[rare.target as usize];
            println!(
                "  planted {} {:?} messages in {} ({} messages)",
                rare.count, rare.kind, t.key, rare.messages
            );
            rare_report = Some(report::RareReport {
                conversation: t.key.clone(),
                messages: rare.messages,
                kind: format!("{:?}", rare.kind).to_uppercase(),
                count: rare.count,
            });
            Some(rare)
        } else {
            None
        };
        let sizes = admin
            .query_one(
                "SELECT pg_total_relation_size('messages'), pg_database_size(current_database())",
                &[],
            )
            .await?;
        stages.push(Stage {
            stored_messages: stored,
            load: loaded,
            messages_table_bytes: sizes.get(0),
            database_bytes: sizes.get(1),
        });

        let ctx = Arc::new(Ctx {
            workload: workload.clone(),
            clients: clients.clone(),
            pool: pool.clone(),
            store: roaming_store::Store::new(pool.clone(), tls.clone()).with_layout(layout),
            seed: settings.args.seed ^ (i as u64) << 20,
            nonce: nonce.clone(),
            ids: std::sync::atomic::AtomicU64::new((i as u64) << 40),
            feed: feed.clone(),
            rare,
        });
        let reads: Vec<Read> = if top {
            vec![
                Read::Page {
                    size: 20,
                    backward: true,
                },
                Read::Page {
                    size: 20,
                    backward: false,
                },
                Read::Page {
                    size: 50,
                    backward: true,
                },
                Read::Page {
                    size: 50,
                    backward: false,
                },
                Read::Stream,
                Read::List { heavy: false },
                Read::List { heavy: true },
            ]
        } else {
            vec![Read::Page {
                size: 50,
                backward: true,
            }]
        };
        let levels: Vec<usize> = if top {
            conc.clone()
        } else {
            conc.iter().copied().filter(|&c| c <= 16).collect()
        };
        println!(
            "stage {}: {} stored, {} anchors{}",
            i + 1,
            stored,
            ctx.workload.anchors.len(),
            if top {
                " — all scenarios"
            } else {
                " — history-page probe"
            }
        );
        for read in reads {
            let scenario = read.name();
            if !settings.wants(&scenario) {
                continue;
            }
            for &c in &levels {
                bench
                    .cell_with(
                        &scenario,
                        "read",
                        c,
                        stored,
                        settings.bounds,
                        Drive::closed(ctx.service_read(read)),
                        Some((
                            Drive::closed(ctx.ceiling_read(read)),
                            "store SQL, prepared, same pool size",
                        )),
                        Some(Drive::closed(ctx.store_read(read))),
                        ctx.bare_read(read).map(Drive::closed),
                        None,
                    )
                    .await?;
            }
        }
        // The change feed: at every stage the empty delta of the biggest set (does it grow
        // with the stored messages?; not with --quick); at the top stage every scenario of
        // every set.
        if let Some(f) = &feed {
            for set in 0..f.sets.len() {
                for sync in feed::SyncCall::ALL {
                    let probe = sync == feed::SyncCall::Empty
                        && set + 1 == f.sets.len()
                        && !settings.args.quick;
                    if top || probe {
                        bench
                            .feed_cells(&ctx, sync, set, &feed_levels, stored)
                            .await?;
                    }
                }
            }
        }
        if ctx.rare.is_some() {
            for &c in &feed_levels {
                bench
                    .cell_with(
                        scenarios::FILTERED,
                        report::VS_PAGE,
                        c,
                        stored,
                        settings.feed_bounds,
                        Drive::closed(ctx.service_filtered(true)),
                        Some((
                            Drive::closed(ctx.service_filtered(false)),
                            report::UNFILTERED_REFERENCE,
                        )),
                        (!settings.args.quick).then(|| Drive::closed(ctx.store_filtered())),
                        None,
                        None,
                    )
                    .await?;
            }
        }
        if top && settings.wants_floor() {
            // The gRPC floor, for the verdicts of the writes against raw statements
            // (services/bench/src/floor.rs).
            for &c in &feed_levels {
                bench
                    .cell(
                        floor::FLOOR,
                        "read",
                        c,
                        stored,
                        floor::health(&ctx),
                        None,
                        None,
                        None,
                    )
                    .await?;
            }
        }
        if top {
            // Read state: what the unread counts add to a list page; MarkRead, recall and
            // edit against a raw single-row UPDATE (services/bench/src/organise.rs).
            let lists: Vec<_> = organise::LIST_SCENARIOS
                .into_iter()
                .filter(|(name, _)| settings.wants(name))
                .collect();
            if !lists.is_empty() {
                let planted = organise::plant_unread(&ctx).await?;
                println!("  planted {planted} unread messages for the list users");
                for (name, entries, sum, max) in organise::unread_profile(&ctx).await? {
                    println!(
                        "  {name}: the first page's {entries} entries count {sum} unread (max {max})"
                    );
                }
            }
            for (name, heavy) in lists {
                for &c in &feed_levels {
                    bench
                        .cell(
                            name,
                            "read",
                            c,
                            stored,
                            organise::list_statement(&ctx, heavy, true),
                            Some((
                                organise::list_statement(&ctx, heavy, false),
                                organise::LIST_REFERENCE,
                            )),
                            None,
                            None,
                        )
                        .await?;
                }
            }
            for change in organise::Change::ALL {
                if !settings.wants(change.name()) {
                    continue;
                }
                for &c in &feed_levels {
                    let (prepare, slots) = organise::prepare(&ctx, change, false);
                    let (reference_prepare, reference_slots) =
                        organise::prepare(&ctx, change, true);
                    bench
                        .cell_with(
                            change.name(),
                            "change",
                            c,
                            stored,
                            settings.feed_bounds,
                            Drive::phased(prepare, organise::service(&ctx, change, slots)),
                            Some((
                                Drive::phased(
                                    reference_prepare,
                                    organise::raw_update(&ctx, change, reference_slots),
                                ),
                                organise::UPDATE_REFERENCE,
                            )),
                            None,
                            None,
                            None,
                        )
                        .await?;
                }
            }
        }
        if top {
            let mut cell_no = 0u32;
            for write in [Write::Single, Write::Batch, Write::BatchSpread] {
                if !settings.wants(write.name()) {
                    continue;
                }
                for &c in conc {
                    cell_no += 1;
                    let touched: Arc<Mutex<scenarios::Touched>> = Arc::default();
                    bench
                        .cell(
                            write.name(),
                            "write",
                            c,
                            stored,
                            ctx.service_write(write),
                            Some((
                                ctx.raw_insert(write, cell_no, touched.clone()),
                                "raw INSERT, autocommit, same pool size",
                            )),
                            Some(ctx.store_write(write)),
                            Some(touched),
                        )
                        .await?;
                }
            }
            if settings.wants("mixed") {
                for &c in conc {
                    bench
                        .cell("mixed", "mixed", c, stored, ctx.mixed(), None, None, None)
                        .await?;
                }
            }
        }
        drop(ctx);
    }

    let peak = procfs::memory(server.pid).hwm as f64 / (1024.0 * 1024.0);
    server.stop().await?;
    let mut verdicts = report::verdicts(&bench.cells, &stages, peak);
    verdicts.extend(report::organise_verdicts(&bench.cells, &stages));
    verdicts.extend(report::feed_verdicts(
        &bench.cells,
        &stages,
        rare_report.as_ref(),
    ));
    let report = Report {
        date,
        started,
        command: command.to_owned(),
        machine,
        postgres,
        config: settings.config(),
        stages,
        cells: bench.cells,
        server_peak_rss_mb: peak,
        wall_secs: wall.elapsed().as_secs_f64(),
        loadavg: (load_start, procfs::loadavg()),
        verdicts,
        feed: feed_load,
        rare: rare_report,
    };
    let out = &settings.args.out;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    let md = report::write_files(&report, out)?;
    println!("\n{md}");
    println!(
        "wrote {0}/results.json, {0}/results.md, {0}/results.svg",
        out.display()
    );
    Ok(())
}
