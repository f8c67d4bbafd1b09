//! The run's results: JSON, a markdown table, the verdict on each target, and an SVG chart
//! written by hand (latency vs stored messages; service vs ceiling).

use crate::load::LoadReport;
use crate::procfs::Machine;
use crate::runner::Measured;
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
    /// The store's statements issued directly as the store issues them (reads: view and
    /// anchor unprepared; writes: the append transaction, prepared).
    pub store_sql: Option<Measured>,
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
        let _ = writeln!(
            s,
            "\nWhere the gap is: the store's statements issued directly *as the store issues \
             them* (reads: the view and anchor lookups unprepared, the page prepared; writes: \
             BEGIN, lock, duplicate check, bump + INSERT, COMMIT, prepared) sit between the \
             ceiling and the service. Ceiling → as issued: cost of the statement protocol; as \
             issued → service: cost of gRPC, the server and the client.\n"
        );
        let _ = writeln!(
            s,
            "| scenario | stored | C | service /s | store SQL as issued /s | ceiling /s | as issued p50 | as issued p99 |"
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

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The chart: left, history-page latency against stored messages (both axes log scale);
/// right, service throughput as a fraction of its ceiling per scenario at C=16.
pub fn svg(r: &Report) -> String {
    let (w, h) = (1100.0, 540.0);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="Helvetica, Arial, sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);

    // Left panel.
    let (x0, y0, pw, ph) = (70.0, 50.0, 400.0, 330.0);
    let _ = writeln!(
        s,
        r##"<text x="{}" y="22" font-size="14" font-weight="bold">History page of 50 (backward, random anchor)</text><text x="{}" y="38" font-size="12" fill="#444">latency vs stored messages, both axes log scale</text>"##,
        x0 - 40.0,
        x0 - 40.0
    );
    let series: Vec<(&str, usize, bool, &str, bool)> = vec![
        // label, concurrency, ceiling?, colour, p99?
        ("service C=1 p50", 1, false, "#1f5fbf", false),
        ("service C=1 p99", 1, false, "#1f5fbf", true),
        ("service C=16 p50", 16, false, "#7fb0ff", false),
        ("service C=16 p99", 16, false, "#7fb0ff", true),
        ("ceiling C=1 p50", 1, true, "#c0580a", false),
        ("ceiling C=1 p99", 1, true, "#c0580a", true),
        ("ceiling C=16 p50", 16, true, "#f2a65a", false),
        ("ceiling C=16 p99", 16, true, "#f2a65a", true),
    ];
    let cells: Vec<&Cell> = r
        .cells
        .iter()
        .filter(|c| c.scenario == "history_page_50_backward")
        .collect();
    let value = |c: &Cell, ceiling: bool, p99: bool| -> Option<f64> {
        let m = if ceiling {
            c.ceiling.as_ref()?
        } else {
            &c.service
        };
        Some(if p99 {
            m.latency.p99_ms
        } else {
            m.latency.p50_ms
        })
    };
    let mut xs: Vec<u64> = cells.iter().map(|c| c.stored_messages).collect();
    xs.sort_unstable();
    xs.dedup();
    let values: Vec<f64> = cells
        .iter()
        .filter(|c| c.concurrency <= 16)
        .flat_map(|c| {
            [
                value(c, false, true),
                value(c, true, true),
                value(c, false, false),
                value(c, true, false),
            ]
        })
        .flatten()
        .filter(|v| *v > 0.0)
        .collect();
    let ymin = values.iter().copied().fold(f64::MAX, f64::min).min(1.0);
    let ymax = values.iter().copied().fold(0.0, f64::max).max(1.0);
    let (ly_min, ly_max) = (
        (ymin.log10()).floor(),
        (ymax.log10()).ceil().max(ymin.log10().floor() + 1.0),
    );
    let (lx_min, lx_max) = match (xs.first(), xs.last()) {
        (Some(&a), Some(&b)) if b > a => ((a as f64).log10(), (b as f64).log10()),
        (Some(&a), _) => ((a as f64).log10() - 0.5, (a as f64).log10() + 0.5),
        _ => (4.0, 7.0),
    };
    let px = |n: u64| x0 + pw * (((n as f64).log10() - lx_min) / (lx_max - lx_min));
    let py = |v: f64| y0 + ph - ph * ((v.max(1e-6).log10() - ly_min) / (ly_max - ly_min));
    let _ = writeln!(
        s,
        r##"<rect x="{x0}" y="{y0}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>"##
    );
    let mut decade = ly_min;
    while decade <= ly_max + 1e-9 {
        for m in [1.0, 2.0, 5.0] {
            let v = 10f64.powf(decade) * m;
            if v.log10() > ly_max + 1e-9 {
                continue;
            }
            let y = py(v);
            let stroke = if m == 1.0 { "#ddd" } else { "#f2f2f2" };
            let _ = writeln!(
                s,
                r##"<line x1="{x0}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{stroke}"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                x0 + pw,
                x0 - 6.0,
                y + 4.0,
                ms(v)
            );
        }
        decade += 1.0;
    }
    for &n in &xs {
        let x = px(n);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{y0}" x2="{x:.1}" y2="{:.1}" stroke="#eee"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            y0 + ph,
            y0 + ph + 16.0,
            human(n)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">stored messages</text>"#,
        x0 + pw / 2.0,
        y0 + ph + 32.0
    );
    let _ = writeln!(
        s,
        r#"<text x="18" y="{:.1}" transform="rotate(-90 18 {:.1})" text-anchor="middle">latency, ms</text>"#,
        y0 + ph / 2.0,
        y0 + ph / 2.0
    );
    for (i, (label, conc, ceiling, colour, p99)) in series.iter().enumerate() {
        let mut points: Vec<(f64, f64)> = Vec::new();
        for &n in &xs {
            let found = cells
                .iter()
                .find(|c| c.stored_messages == n && c.concurrency == *conc)
                .and_then(|c| value(c, *ceiling, *p99));
            if let Some(v) = found {
                points.push((px(n), py(v)));
            }
        }
        let dash = if *p99 {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let path: Vec<String> = points
            .iter()
            .map(|(x, y)| format!("{x:.1},{y:.1}"))
            .collect();
        if !path.is_empty() {
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>"#,
                path.join(" ")
            );
            for (x, y) in &points {
                let _ = writeln!(
                    s,
                    r#"<circle cx="{x:.1}" cy="{y:.1}" r="3" fill="{colour}"/>"#
                );
            }
        }
        // Legend below the plot, two columns.
        let lx = x0 + 200.0 * (i / 4) as f64;
        let ly = y0 + ph + 52.0 + 16.0 * (i % 4) as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{:.1}" y2="{ly}" stroke="{colour}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{label}</text>"#,
            lx + 22.0,
            lx + 28.0,
            ly + 4.0
        );
    }

    // Right panel: service / ceiling at C=16.
    let top = r.stages.last().map_or(0, |s| s.stored_messages);
    let rows: Vec<&Cell> = r
        .cells
        .iter()
        .filter(|c| c.stored_messages == top && c.concurrency == 16 && c.ceiling.is_some())
        .collect();
    let (bx, by, bw) = (760.0, 50.0, 300.0);
    let _ = writeln!(
        s,
        r##"<text x="{:.1}" y="22" font-size="14" font-weight="bold">Service ÷ ceiling throughput, C=16, {} stored</text><text x="{:.1}" y="38" font-size="12" fill="#444">reads: the store's SQL issued directly; writes: the raw INSERT</text>"##,
        bx - 200.0,
        human(top),
        bx - 200.0
    );
    let row_h = 30.0;
    let scale_max = rows
        .iter()
        .filter_map(|c| c.ratio)
        .fold(1.0, f64::max)
        .max(1.0);
    let bxv = |v: f64| bx + bw * v / scale_max;
    for k in 0..=4 {
        let v = scale_max * k as f64 / 4.0;
        let x = bxv(v);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{by}" x2="{x:.1}" y2="{:.1}" stroke="#eee"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{v:.2}</text>"##,
            by + row_h * rows.len() as f64,
            by + row_h * rows.len() as f64 + 16.0
        );
    }
    for (target, label) in [(0.8, "0.8 (reads)"), (0.7, "0.7 (append)")] {
        let x = bxv(target);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#c00" stroke-dasharray="3 3"/><text x="{x:.1}" y="{:.1}" fill="#c00" text-anchor="middle" font-size="10">{label}</text>"##,
            by - 6.0,
            by + row_h * rows.len() as f64,
            by + row_h * rows.len() as f64 + 30.0 + if target < 0.75 { 12.0 } else { 0.0 }
        );
    }
    for (i, c) in rows.iter().enumerate() {
        let y = by + row_h * i as f64;
        let ratio = c.ratio.unwrap_or(0.0);
        let colour = if c.kind == "write" {
            "#2a9d5b"
        } else {
            "#1f5fbf"
        };
        let svc = Cell::rate(&c.kind, &c.service);
        let ceil = c.ceiling.as_ref().map_or(0.0, |m| Cell::rate(&c.kind, m));
        let unit = if c.kind == "write" { "msg/s" } else { "/s" };
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            bx - 6.0,
            y + 13.0,
            esc(&c.scenario)
        );
        let _ = writeln!(
            s,
            r#"<rect x="{bx}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{colour}"/>"#,
            y + 3.0,
            (bxv(ratio) - bx).max(0.5),
            row_h - 12.0
        );
        let _ = writeln!(
            s,
            r##"<text x="{bx}" y="{:.1}" font-size="10" fill="#333" dx="2">{ratio:.2} = {} / {} {unit}</text>"##,
            y + row_h - 0.5,
            rate(svc),
            rate(ceil)
        );
    }
    let _ = writeln!(
        s,
        r##"<text x="{:.1}" y="{:.1}" font-size="11" fill="#555">{} · {} · {}</text>"##,
        x0 - 40.0,
        h - 12.0,
        esc(&r.date),
        esc(&format!("{} × {}", r.machine.nproc, r.machine.cpu_model)),
        esc(&r.command)
    );
    let _ = writeln!(s, "</svg>");
    s
}
