//! The run's results: JSON, a markdown table, the verdict on each target, and an SVG chart
//! drawn with plotters (latency vs stored messages; service vs ceiling).

use crate::load::LoadReport;
use crate::procfs::Machine;
use crate::runner::Measured;
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One measured cell: a scenario at one concurrency, through the service and its ceiling.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cell {
    /// Scenario name.
    pub scenario: String,
    /// `read`, `write`, `mixed`.
    pub kind: String,
    /// Concurrent workers.
    pub concurrency: usize,
    /// Messages stored when the cell ran (loaded; appends of earlier cells not counted).
    pub stored_messages: u64,
    /// Through the client and the server.
    pub service: Measured,
    /// The ceiling, when the scenario has one.
    pub ceiling: Option<Measured>,
    /// What the ceiling is.
    pub ceiling_is: String,
    /// The same calls through the store alone, without gRPC, the server and the client (see
    /// `store_is`; the field keeps its name so that earlier runs' JSON still renders).
    pub store_sql: Option<Measured>,
    /// What `store_sql` measured ([`STORE_API`]; empty in runs before it, which replayed the
    /// store's statements, [`STORE_SQL_AS_ISSUED`]).
    #[serde(default)]
    pub store_is: String,
    /// Service / ceiling throughput (ops/s for reads, messages/s for writes).
    pub ratio: Option<f64>,
}

impl Cell {
    /// The throughput the ratio compares: operations (reads) or messages (writes) per second.
    pub fn rate(kind: &str, m: &Measured) -> f64 {
        if kind == "write" {
            m.items_per_sec
        } else {
            m.ops_per_sec
        }
    }
}

/// What a cell's `store_sql` figure is now: the store's own calls in the bench process.
pub const STORE_API: &str = "the store's own API called in the bench process \
     (`roaming_store::Store`: `anchor_seq` + `fetch_page`, `list_conversations`, `append`), \
     on a pool of the same size";

/// What it was in runs whose cells have no `store_is`.
pub const STORE_SQL_AS_ISSUED: &str = "the store's statements issued directly as the store \
     issued them then (reads: the view and anchor lookups unprepared, the page prepared; \
     writes: BEGIN, lock, duplicate check, bump + INSERT, COMMIT, prepared)";

/// One load stage.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stage {
    /// Messages stored after this stage.
    pub stored_messages: u64,
    /// What loading took.
    pub load: LoadReport,
    /// `pg_total_relation_size('messages')` after the stage, bytes.
    pub messages_table_bytes: i64,
    /// Whole database size after the stage, bytes.
    pub database_bytes: i64,
}

/// One target of the issue, judged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Verdict {
    /// The target as the issue states it.
    pub target: String,
    /// The figures it was judged on.
    pub measured: String,
    /// Met, missed, or not judged by this run (`None`).
    pub met: Option<bool>,
}

/// Everything one run produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// `YYYY-MM-DD` (UTC).
    pub date: String,
    /// When the run started (RFC 3339, UTC).
    pub started: String,
    /// The command that reproduces it.
    pub command: String,
    /// The machine.
    pub machine: Machine,
    /// PostgreSQL's version and the settings that matter here.
    pub postgres: BTreeMap<String, String>,
    /// The bench's settings.
    pub config: BTreeMap<String, String>,
    /// Load stages.
    pub stages: Vec<Stage>,
    /// Measured cells: probes of every stage, then the full matrix at the top stage.
    pub cells: Vec<Cell>,
    /// Server peak RSS over the run (`VmHWM`), MB.
    pub server_peak_rss_mb: f64,
    /// Wall time of the whole run, seconds.
    pub wall_secs: f64,
    /// 1-minute load average when the run started and when it ended.
    pub loadavg: (f64, f64),
    /// Targets.
    pub verdicts: Vec<Verdict>,
}

fn find<'a>(cells: &'a [Cell], scenario: &str, c: usize, stored: Option<u64>) -> Option<&'a Cell> {
    cells.iter().rev().find(|x| {
        x.scenario == scenario
            && x.concurrency == c
            && stored.is_none_or(|s| x.stored_messages == s)
    })
}

fn human(n: u64) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000_000 => format!("{:.1}M", n as f64 / 1e6),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n if n >= 1_000 => format!("{:.1}k", n as f64 / 1e3),
        n => n.to_string(),
    }
}

fn rate(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Judges the issue's targets on the cells.
pub fn verdicts(cells: &[Cell], stages: &[Stage], server_peak_rss_mb: f64) -> Vec<Verdict> {
    let top = stages.last().map_or(0, |s| s.stored_messages);
    let mut out = Vec::new();

    // 1. History page of 50 at >= 0.8 x the ceiling at C=16.
    let mut parts = Vec::new();
    let mut met = Some(true);
    for dir in ["backward", "forward"] {
        match find(cells, &format!("history_page_50_{dir}"), 16, Some(top)) {
            Some(c) => {
                let ratio = c.ratio.unwrap_or(0.0);
                let ceiling = c.ceiling.as_ref().map_or(0.0, |m| m.ops_per_sec);
                parts.push(format!(
                    "{dir}: {} vs {} pages/s = {ratio:.2}",
                    rate(c.service.ops_per_sec),
                    rate(ceiling)
                ));
                if ratio < 0.8 {
                    met = Some(false);
                }
            }
            None => met = None,
        }
    }
    out.push(Verdict {
        target: "history page of 50 ≥ 0.8 × the ceiling's throughput at C=16".into(),
        measured: parts.join("; "),
        met,
    });

    // 2. History page latency at 10M <= 1.2 x at 100k.
    let base = stages
        .iter()
        .map(|s| s.stored_messages)
        .find(|&s| s == 100_000 && s != top)
        .or_else(|| stages.first().map(|s| s.stored_messages));
    let mut parts = Vec::new();
    let mut met = if top >= 10_000_000 && base == Some(100_000) {
        Some(true)
    } else {
        None
    };
    if let Some(base) = base {
        for c in [1, 16] {
            let (Some(a), Some(b)) = (
                find(cells, "history_page_50_backward", c, Some(base)),
                find(cells, "history_page_50_backward", c, Some(top)),
            ) else {
                continue;
            };
            let r50 = b.service.latency.p50_ms / a.service.latency.p50_ms.max(1e-9);
            let r99 = b.service.latency.p99_ms / a.service.latency.p99_ms.max(1e-9);
            parts.push(format!(
                "C={c}: p50 {} → {} ms (×{r50:.2}), p99 {} → {} ms (×{r99:.2}) from {} to {} stored",
                ms(a.service.latency.p50_ms),
                ms(b.service.latency.p50_ms),
                ms(a.service.latency.p99_ms),
                ms(b.service.latency.p99_ms),
                human(base),
                human(top)
            ));
            if r50 > 1.2 && met.is_some() {
                met = Some(false);
            }
        }
    }
    if met.is_none() {
        parts.push(format!(
            "(judged only when the run loads 100k and 10M; this one went to {})",
            human(top)
        ));
    }
    out.push(Verdict {
        target: "history page latency at 10M stored messages ≤ 1.2 × that at 100k (p50)".into(),
        measured: parts.join("; "),
        met,
    });

    // 3. List with 1,000 conversations: p99 <= 2 x a history page's p99.
    let mut parts = Vec::new();
    let mut met = Some(true);
    for c in [1, 16] {
        let list = find(cells, "list_1000_conversations", c, Some(top));
        let page = find(cells, "history_page_50_backward", c, Some(top));
        let page20 = find(cells, "history_page_20_backward", c, Some(top));
        match (list, page) {
            (Some(l), Some(p)) => {
                let r = l.service.latency.p99_ms / p.service.latency.p99_ms.max(1e-9);
                let r20 = page20
                    .map(|p| {
                        format!(
                            " (vs page-20: ×{:.2})",
                            l.service.latency.p99_ms / p.service.latency.p99_ms.max(1e-9)
                        )
                    })
                    .unwrap_or_default();
                parts.push(format!(
                    "C={c}: list p99 {} ms vs page-50 p99 {} ms = ×{r:.2}{r20}",
                    ms(l.service.latency.p99_ms),
                    ms(p.service.latency.p99_ms)
                ));
                if r > 2.0 {
                    met = Some(false);
                }
            }
            _ => met = None,
        }
    }
    out.push(Verdict {
        target: "conversation list, 1,000 conversations: p99 ≤ 2 × a history page's p99".into(),
        measured: parts.join("; "),
        met,
    });

    // 4a. Single append >= 0.7 x raw INSERT.
    let mut parts = Vec::new();
    let mut met = None;
    for c in [1, 16, 64] {
        if let Some(x) = find(cells, "append_single", c, Some(top)) {
            let ratio = x.ratio.unwrap_or(0.0);
            parts.push(format!(
                "C={c}: {} vs {} msg/s = {ratio:.2}",
                rate(x.service.items_per_sec),
                rate(x.ceiling.as_ref().map_or(0.0, |m| m.items_per_sec))
            ));
            if c == 16 {
                met = Some(ratio >= 0.7);
            }
        }
    }
    out.push(Verdict {
        target: "single-message append ≥ 0.7 × the raw INSERT ceiling (C=16)".into(),
        measured: parts.join("; "),
        met,
    });

    // 4b. Batched append >= 20,000 msg/s.
    let mut best: Option<(usize, f64)> = None;
    let mut parts = Vec::new();
    for c in [1, 16, 64] {
        if let Some(x) = find(cells, "append_batch_100", c, Some(top)) {
            parts.push(format!("C={c}: {} msg/s", rate(x.service.items_per_sec)));
            if best.is_none_or(|(_, b)| x.service.items_per_sec > b) {
                best = Some((c, x.service.items_per_sec));
            }
        }
    }
    out.push(Verdict {
        target: "batched append (100 per call) ≥ 20,000 msg/s".into(),
        measured: parts.join("; "),
        met: best.map(|(_, b)| b >= 20_000.0),
    });

    // 5. Server RSS.
    let max_sampled = cells
        .iter()
        .map(|c| c.service.server_rss_max_mb)
        .fold(0.0, f64::max);
    out.push(Verdict {
        target: "server RSS ≤ 150 MB throughout".into(),
        measured: format!(
            "largest sample {max_sampled:.1} MB, peak (VmHWM) {server_peak_rss_mb:.1} MB"
        ),
        met: Some(max_sampled.max(server_peak_rss_mb) <= 150.0),
    });
    out
}

/// The markdown page of a run: settings, stages, the table, the verdicts.
pub fn markdown(r: &Report, svg_name: &str) -> String {
    let mut s = String::new();
    let top = r.stages.last().map_or(0, |s| s.stored_messages);
    let _ = writeln!(s, "Run of {} ({} UTC).\n", r.date, r.started);
    let _ = writeln!(s, "```sh\n{}\n```\n", r.command);
    let _ = writeln!(
        s,
        "Machine: {} × {}, {:.1} GiB, Linux {}. PostgreSQL: {}.\n",
        r.machine.nproc,
        r.machine.cpu_model,
        r.machine.memory_bytes as f64 / (1u64 << 30) as f64,
        r.machine.kernel,
        r.postgres.get("version").cloned().unwrap_or_default()
    );
    let settings: Vec<String> = r
        .postgres
        .iter()
        .filter(|(k, _)| k.as_str() != "version")
        .map(|(k, v)| format!("`{k}={v}`"))
        .collect();
    let _ = writeln!(s, "PostgreSQL settings: {}.\n", settings.join(", "));
    let _ = writeln!(
        s,
        "Load average (1 min) at start / end: {:.2} / {:.2}.\n",
        r.loadavg.0, r.loadavg.1
    );
    let config: Vec<String> = r.config.iter().map(|(k, v)| format!("`{k}={v}`")).collect();
    let _ = writeln!(s, "Bench settings: {}.\n", config.join(", "));

    let _ = writeln!(s, "### Load\n");
    let _ = writeln!(
        s,
        "| stored after | added | conversations | COPY s | msg/s (COPY) | VACUUM ANALYZE + CHECKPOINT s | messages table | database |"
    );
    let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|---:|---:|");
    for st in &r.stages {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.1} | {} | {:.1} | {:.0} MB | {:.0} MB |",
            human(st.stored_messages),
            human(st.load.messages),
            st.load.conversations,
            st.load.copy_secs,
            rate(st.load.messages_per_sec),
            st.load.vacuum_secs,
            st.messages_table_bytes as f64 / 1e6,
            st.database_bytes as f64 / 1e6
        );
    }

    let _ = writeln!(s, "\n### History page latency vs stored messages\n");
    let _ = writeln!(
        s,
        "`history_page_50_backward` (random anchors over all stored messages).\n"
    );
    let _ = writeln!(
        s,
        "| stored | C | service pages/s | p50 ms | p99 ms | p999 ms | ceiling pages/s | ceiling p50 | ceiling p99 | ratio |"
    );
    let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for c in r
        .cells
        .iter()
        .filter(|c| c.scenario == "history_page_50_backward" && c.concurrency <= 16)
    {
        let (cp, c50, c99) = c.ceiling.as_ref().map_or((0.0, 0.0, 0.0), |m| {
            (m.ops_per_sec, m.latency.p50_ms, m.latency.p99_ms)
        });
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} |",
            human(c.stored_messages),
            c.concurrency,
            rate(c.service.ops_per_sec),
            ms(c.service.latency.p50_ms),
            ms(c.service.latency.p99_ms),
            ms(c.service.latency.p999_ms),
            rate(cp),
            ms(c50),
            ms(c99),
            c.ratio.unwrap_or(0.0)
        );
    }

    let _ = writeln!(s, "\n### All scenarios at {} stored messages\n", human(top));
    let _ = writeln!(
        s,
        "Throughput is calls/s (reads) or messages/s (writes); latency per call in ms. \
         Ceiling: the store's SQL issued directly with a pool of the same size (reads), the raw \
         INSERT (writes). CPU in % of one core (the machine has {} cores) over the service's \
         measured window: server process, PostgreSQL backends of the bench database, the load \
         generator, and everything else on the machine (other work disturbing the figures).\n",
        r.machine.nproc
    );
    let _ = writeln!(
        s,
        "| scenario | C | service /s | p50 | p99 | p999 | ceiling /s | ceil p50 | ceil p99 | service/ceiling | server CPU % | PG CPU % | bench CPU % | other CPU % | server RSS MB | errors |"
    );
    let _ = writeln!(
        s,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for c in r.cells.iter().filter(|c| c.stored_messages == top) {
        let svc = Cell::rate(&c.kind, &c.service);
        let (ceil, c50, c99) = match &c.ceiling {
            Some(m) => (
                rate(Cell::rate(&c.kind, m)),
                ms(m.latency.p50_ms),
                ms(m.latency.p99_ms),
            ),
            None => ("–".into(), "–".into(), "–".into()),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {} |",
            c.scenario,
            c.concurrency,
            rate(svc),
            ms(c.service.latency.p50_ms),
            ms(c.service.latency.p99_ms),
            ms(c.service.latency.p999_ms),
            ceil,
            c50,
            c99,
            c.ratio.map_or("–".into(), |r| format!("{r:.2}")),
            c.service.server_cpu_pct,
            c.service.postgres_cpu_pct,
            c.service.client_cpu_pct,
            c.service.other_cpu_pct,
            c.service.server_rss_max_mb,
            c.service.errors
        );
    }

    let with_store_sql: Vec<&Cell> = r.cells.iter().filter(|c| c.store_sql.is_some()).collect();
    if !with_store_sql.is_empty() {
        let what = match with_store_sql[0].store_is.as_str() {
            "" => STORE_SQL_AS_ISSUED,
            is => is,
        };
        let _ = writeln!(
            s,
            "\nWhere the gap is: between the ceiling and the service, the same calls through \
             {what}. Ceiling → store: what the store adds to its SQL; store → service: cost of \
             gRPC, the server and the client.\n"
        );
        let _ = writeln!(
            s,
            "| scenario | stored | C | service /s | store /s | ceiling /s | store p50 | store p99 |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|");
        for c in with_store_sql {
            let m = c.store_sql.as_ref().expect("filtered");
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                c.scenario,
                human(c.stored_messages),
                c.concurrency,
                rate(Cell::rate(&c.kind, &c.service)),
                rate(Cell::rate(&c.kind, m)),
                rate(c.ceiling.as_ref().map_or(0.0, |x| Cell::rate(&c.kind, x))),
                ms(m.latency.p50_ms),
                ms(m.latency.p99_ms)
            );
        }
    }

    let mixed: Vec<&Cell> = r.cells.iter().filter(|c| c.kind == "mixed").collect();
    if !mixed.is_empty() {
        let _ = writeln!(
            s,
            "\nMixed workload by operation (50 % open a conversation, 20 % scroll, 10 % list, 20 % append):\n"
        );
        let _ = writeln!(s, "| C | operation | calls | p50 | p99 | p999 |");
        let _ = writeln!(s, "|---:|---|---:|---:|---:|---:|");
        for c in mixed {
            for (label, n, l) in &c.service.by_label {
                let _ = writeln!(
                    s,
                    "| {} | {label} | {n} | {} | {} | {} |",
                    c.concurrency,
                    ms(l.p50_ms),
                    ms(l.p99_ms),
                    ms(l.p999_ms)
                );
            }
        }
    }

    let errors: Vec<String> = r
        .cells
        .iter()
        .filter_map(|c| {
            c.service.first_error.as_ref().map(|e| {
                format!(
                    "- {} C={}: {} errors, first: {e}",
                    c.scenario, c.concurrency, c.service.errors
                )
            })
        })
        .collect();
    if !errors.is_empty() {
        let _ = writeln!(s, "\nErrors:\n\n{}", errors.join("\n"));
    }

    let _ = writeln!(s, "\n### Targets\n");
    let _ = writeln!(s, "| target | measured | verdict |");
    let _ = writeln!(s, "|---|---|---|");
    for v in &r.verdicts {
        let verdict = match v.met {
            Some(true) => "**met**",
            Some(false) => "**missed**",
            None => "not judged",
        };
        let _ = writeln!(s, "| {} | {} | {verdict} |", v.target, v.measured);
    }
    let _ = writeln!(
        s,
        "\nServer peak RSS (VmHWM): {:.1} MB. Wall time: {:.0} s.\n\n![chart]({svg_name})",
        r.server_peak_rss_mb, r.wall_secs
    );
    s
}

/// The chart's size in pixels.
const CHART: (u32, u32) = (1100, 540);

/// Fonts the SVG names; whatever renders it picks one. The chart never loads a font: plotters
/// (without its font features) estimates text extents from the character count.
const FONT: &str = "Helvetica, Arial, sans-serif";

const SERVICE_C1: RGBColor = RGBColor(0x1f, 0x5f, 0xbf);
const SERVICE_C16: RGBColor = RGBColor(0x7f, 0xb0, 0xff);
const CEILING_C1: RGBColor = RGBColor(0xc0, 0x58, 0x0a);
const CEILING_C16: RGBColor = RGBColor(0xf2, 0xa6, 0x5a);
const WRITE: RGBColor = RGBColor(0x2a, 0x9d, 0x5b);
const TARGET: RGBColor = RGBColor(0xcc, 0x00, 0x00);
const FRAME: RGBColor = RGBColor(0x99, 0x99, 0x99);
const GRID: RGBColor = RGBColor(0xe6, 0xe6, 0xe6);
const NOTE: RGBColor = RGBColor(0x44, 0x44, 0x44);

/// One line of the latency panel.
struct Series {
    label: &'static str,
    concurrency: usize,
    ceiling: bool,
    p99: bool,
    colour: RGBColor,
}

const SERIES: [Series; 8] = [
    Series {
        label: "service C=1 p50",
        concurrency: 1,
        ceiling: false,
        p99: false,
        colour: SERVICE_C1,
    },
    Series {
        label: "service C=1 p99",
        concurrency: 1,
        ceiling: false,
        p99: true,
        colour: SERVICE_C1,
    },
    Series {
        label: "service C=16 p50",
        concurrency: 16,
        ceiling: false,
        p99: false,
        colour: SERVICE_C16,
    },
    Series {
        label: "service C=16 p99",
        concurrency: 16,
        ceiling: false,
        p99: true,
        colour: SERVICE_C16,
    },
    Series {
        label: "ceiling C=1 p50",
        concurrency: 1,
        ceiling: true,
        p99: false,
        colour: CEILING_C1,
    },
    Series {
        label: "ceiling C=1 p99",
        concurrency: 1,
        ceiling: true,
        p99: true,
        colour: CEILING_C1,
    },
    Series {
        label: "ceiling C=16 p50",
        concurrency: 16,
        ceiling: true,
        p99: false,
        colour: CEILING_C16,
    },
    Series {
        label: "ceiling C=16 p99",
        concurrency: 16,
        ceiling: true,
        p99: true,
        colour: CEILING_C16,
    },
];

impl Series {
    /// This series' latency in `c`, ms.
    fn value(&self, c: &Cell) -> Option<f64> {
        let m = if self.ceiling {
            c.ceiling.as_ref()?
        } else {
            &c.service
        };
        Some(if self.p99 {
            m.latency.p99_ms
        } else {
            m.latency.p50_ms
        })
    }
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// A text style of `px` pixels (plotters writes `font-size` as its size / 1.24).
fn text(px: f64, colour: &'static RGBColor) -> TextStyle<'static> {
    (FONT, px * 1.24).into_font().color(colour)
}

fn bold(px: f64) -> TextStyle<'static> {
    (FONT, px * 1.24, FontStyle::Bold).into_font().color(&BLACK)
}

/// A panel's title and the line under it, at `x` from the left edge.
fn title(root: &Area, x: i32, title: &str, subtitle: &str) -> anyhow::Result<()> {
    root.draw(&Text::new(title.to_owned(), (x, 10), bold(14.0)))?;
    root.draw(&Text::new(subtitle.to_owned(), (x, 28), text(12.0, &NOTE)))?;
    Ok(())
}

/// The chart: left, history-page latency against stored messages (both axes log scale);
/// right, service throughput as a fraction of its ceiling per scenario at C=16.
pub fn svg(r: &Report) -> anyhow::Result<String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, CHART).into_drawing_area();
        root.fill(&WHITE)?;
        latency_panel(r, &root)?;
        ratio_panel(r, &root)?;
        root.draw(&Text::new(
            format!(
                "{} · {} × {} · {}",
                r.date, r.machine.nproc, r.machine.cpu_model, r.command
            ),
            (30, CHART.1 as i32 - 22),
            text(11.0, &RGBColor(0x55, 0x55, 0x55)),
        ))?;
        root.present()?;
    }
    Ok(out)
}

/// Left panel: `history_page_50_backward` latency, p50 and p99, service and ceiling, C=1
/// and C=16, against stored messages; the legend below it.
fn latency_panel(r: &Report, root: &Area) -> anyhow::Result<()> {
    title(
        root,
        30,
        "History page of 50 (backward, random anchor)",
        "latency vs stored messages, both axes log scale",
    )?;
    let cells: Vec<&Cell> = r
        .cells
        .iter()
        .filter(|c| c.scenario == "history_page_50_backward")
        .collect();
    let mut xs: Vec<u64> = cells.iter().map(|c| c.stored_messages).collect();
    xs.sort_unstable();
    xs.dedup();
    let values: Vec<f64> = cells
        .iter()
        .filter(|c| c.concurrency <= 16)
        .flat_map(|c| SERIES.iter().filter_map(|s| s.value(c)))
        .filter(|v| *v > 0.0)
        .collect();
    let ymin = values.iter().copied().fold(f64::MAX, f64::min).min(1.0);
    let ymax = values.iter().copied().fold(0.0, f64::max).max(1.0);
    let decades = (
        ymin.log10().floor(),
        ymax.log10().ceil().max(ymin.log10().floor() + 1.0),
    );
    let (y_lo, y_hi) = (10f64.powf(decades.0), 10f64.powf(decades.1));
    let mut y_ticks = Vec::new();
    let mut decade = decades.0;
    while decade <= decades.1 {
        for m in [1.0, 2.0, 5.0] {
            let v = 10f64.powf(decade) * m;
            if v <= y_hi * (1.0 + 1e-9) {
                y_ticks.push(v);
            }
        }
        decade += 1.0;
    }
    let (x_lo, x_hi) = match (xs.first(), xs.last()) {
        (Some(&a), Some(&b)) if b > a => (a as f64, b as f64),
        (Some(&a), _) => (a as f64 / 10f64.sqrt(), a as f64 * 10f64.sqrt()),
        _ => (1e4, 1e7),
    };

    let area = root.clone().shrink((12, 44), (468, 380));
    let mut chart = ChartBuilder::on(&area)
        .margin_top(6)
        .margin_right(10)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(
            (x_lo..x_hi)
                .log_scale()
                .with_key_points(xs.iter().map(|&n| n as f64).collect()),
            (y_lo..y_hi).log_scale().with_key_points(y_ticks),
        )?;
    chart
        .configure_mesh()
        .bold_line_style(GRID)
        .axis_style(FRAME)
        .label_style(text(12.0, &BLACK))
        .axis_desc_style(text(12.0, &BLACK))
        .x_label_formatter(&|v| human(v.round() as u64))
        .y_label_formatter(&|v| ms(*v))
        .x_desc("stored messages")
        .y_desc("latency, ms")
        .draw()?;
    chart.plotting_area().draw(&Rectangle::new(
        [(x_lo, y_lo), (x_hi, y_hi)],
        FRAME.stroke_width(1),
    ))?;

    let legend_top = 436;
    for (i, s) in SERIES.iter().enumerate() {
        let points: Vec<(f64, f64)> = xs
            .iter()
            .filter_map(|&n| {
                let c = cells
                    .iter()
                    .find(|c| c.stored_messages == n && c.concurrency == s.concurrency)?;
                let v = s.value(c).filter(|v| *v > 0.0)?;
                Some((n as f64, v))
            })
            .collect();
        let line = s.colour.stroke_width(2);
        if s.p99 {
            chart.draw_series(DashedLineSeries::new(points.clone(), 6, 4, line))?;
        } else {
            chart.draw_series(LineSeries::new(points.clone(), line))?;
        }
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, s.colour.filled())))?;

        // Legend below the plot, two columns of four.
        let x = 70 + 200 * (i / 4) as i32;
        let y = legend_top + 16 * (i % 4) as i32;
        if s.p99 {
            root.draw(&DashedPathElement::new(
                vec![(x, y), (x + 22, y)],
                6,
                4,
                line,
            ))?;
        } else {
            root.draw(&PathElement::new(vec![(x, y), (x + 22, y)], line))?;
        }
        root.draw(&Text::new(
            s.label,
            (x + 28, y),
            text(12.0, &BLACK).pos(Pos::new(HPos::Left, VPos::Center)),
        ))?;
    }
    Ok(())
}

/// Right panel: service ÷ ceiling throughput of every scenario with a ceiling at C=16 and the
/// top stage, one bar each, with the targets' thresholds.
fn ratio_panel(r: &Report, root: &Area) -> anyhow::Result<()> {
    let top = r.stages.last().map_or(0, |s| s.stored_messages);
    title(
        root,
        560,
        &format!("Service ÷ ceiling throughput, C=16, {} stored", human(top)),
        "reads: the store's SQL issued directly; writes: the raw INSERT",
    )?;
    let rows: Vec<&Cell> = r
        .cells
        .iter()
        .filter(|c| c.stored_messages == top && c.concurrency == 16 && c.ceiling.is_some())
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let n = rows.len() as f64;
    let scale_max = rows
        .iter()
        .filter_map(|c| c.ratio)
        .fold(1.0, f64::max)
        .max(1.0);
    // Row i spans y in [n - i - 1, n - i], top row first.
    let row_top = |i: usize| n - i as f64;
    const ROW_PX: u32 = 30;

    let area = root
        .clone()
        .shrink((560, 44), (520, ROW_PX * rows.len() as u32 + 6 + 24));
    let mut chart = ChartBuilder::on(&area)
        .margin_top(6)
        .margin_right(20)
        .x_label_area_size(24)
        .y_label_area_size(200)
        .build_cartesian_2d(0.0..scale_max, 0.0..n)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_labels(6)
        .bold_line_style(RGBColor(0xee, 0xee, 0xee))
        .light_line_style(TRANSPARENT)
        .axis_style(FRAME)
        .label_style(text(12.0, &BLACK))
        .x_label_formatter(&|v| format!("{v:.2}"))
        .draw()?;

    for (target, label, below) in [(0.8, "0.8 (reads)", 30), (0.7, "0.7 (append)", 42)] {
        chart.draw_series(DashedLineSeries::new(
            [(target, 0.0), (target, n)],
            3,
            3,
            TARGET.stroke_width(1),
        ))?;
        let (x, y) = chart.backend_coord(&(target, 0.0));
        root.draw(&Text::new(
            label,
            (x, y + below - 6),
            text(10.0, &TARGET).pos(Pos::new(HPos::Center, VPos::Top)),
        ))?;
    }

    for (i, c) in rows.iter().enumerate() {
        let ratio = c.ratio.unwrap_or(0.0);
        let (colour, unit) = if c.kind == "write" {
            (WRITE, "msg/s")
        } else {
            (SERVICE_C1, "/s")
        };
        let svc = Cell::rate(&c.kind, &c.service);
        let ceil = c.ceiling.as_ref().map_or(0.0, |m| Cell::rate(&c.kind, m));
        let y = row_top(i);
        chart.draw_series(std::iter::once(
            EmptyElement::at((0.0, y - 0.5))
                + Text::new(
                    c.scenario.clone(),
                    (-6, 0),
                    text(12.0, &BLACK).pos(Pos::new(HPos::Right, VPos::Center)),
                ),
        ))?;
        chart.draw_series(std::iter::once(Rectangle::new(
            [(0.0, y - 0.1), (ratio.max(scale_max / 600.0), y - 0.7)],
            colour.filled(),
        )))?;
        chart.draw_series(std::iter::once(
            EmptyElement::at((0.0, y - 0.72))
                + Text::new(
                    format!("{ratio:.2} = {} / {} {unit}", rate(svc), rate(ceil)),
                    (2, 0),
                    text(10.0, &RGBColor(0x33, 0x33, 0x33)),
                ),
        ))?;
    }
    Ok(())
}

/// Writes `results.md` and `results.svg` of `r` into `out`; returns the markdown.
pub fn write_files(r: &Report, out: &std::path::Path) -> anyhow::Result<String> {
    let md = markdown(r, "results.svg");
    std::fs::write(out.join("results.md"), &md)?;
    std::fs::write(out.join("results.svg"), svg(r)?)?;
    Ok(md)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed_run() -> Report {
        serde_json::from_str(include_str!("../docs/results.json")).expect("the committed run")
    }

    #[test]
    fn the_chart_shows_every_series_stage_and_scenario() {
        let report = committed_run();
        let chart = svg(&report).expect("drawn");
        for s in &SERIES {
            assert!(chart.contains(s.label), "legend entry {}", s.label);
        }
        for stage in ["100k", "1M", "10M"] {
            assert!(chart.contains(&format!("\n{stage}\n")), "x label {stage}");
        }
        // Three stages, eight series: a point each.
        assert_eq!(chart.matches("<circle").count(), 24);
        let rows: Vec<&Cell> = report
            .cells
            .iter()
            .filter(|c| c.stored_messages == 10_000_000 && c.concurrency == 16)
            .filter(|c| c.ceiling.is_some())
            .collect();
        assert_eq!(rows.len(), 10);
        for c in rows {
            assert!(
                chart.contains(&format!("\n{}\n", c.scenario)),
                "{}",
                c.scenario
            );
            let ratio = format!("{:.2} = ", c.ratio.expect("a ceiling, a ratio"));
            assert!(chart.contains(&ratio), "{} {ratio}", c.scenario);
        }
        assert!(chart.contains("0.8 (reads)") && chart.contains("0.7 (append)"));
    }

    #[test]
    fn a_run_without_cells_still_draws() {
        let mut report = committed_run();
        report.cells.clear();
        report.stages.clear();
        let chart = svg(&report).expect("drawn");
        assert!(chart.starts_with("<svg") && chart.trim_end().ends_with("</svg>"));
    }
}
