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
    /// The bare keyset page ([`BARE_IS`]), for the history-page cells: what a page of the
    /// same size costs PostgreSQL with no visibility rule at all (absent in earlier runs).
    #[serde(default)]
    pub bare: Option<Measured>,
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

    /// Service / bare keyset page throughput, for the cells that measured one.
    pub fn bare_ratio(&self) -> Option<f64> {
        let bare = self.bare.as_ref()?;
        Some(self.service.ops_per_sec / bare.ops_per_sec.max(1e-9))
    }
}

/// CPU time per call, µs, of a process that used `pct` % of one core while `m` ran: one core
/// is 1,000,000 µs per second, so `pct` % over `ops_per_sec` calls is `pct × 10,000 / rate`.
pub fn cpu_us_per_call(pct: f64, m: &Measured) -> f64 {
    let rate = if m.cpu_ops_per_sec > 0.0 {
        m.cpu_ops_per_sec
    } else {
        m.ops_per_sec
    };
    pct * 10_000.0 / rate.max(1e-9)
}

/// What a cell's `bare` figure is.
pub const BARE_IS: &str = "the bare keyset page: the page's rows by `(conv_key, seq)` after \
     the anchor's seq, limit + 1, with no visibility rule (no access check, watermark, \
     tombstone or recall filter), one prepared statement on the ceiling's pool";

/// What a cell's `store_sql` figure is now: the store's own calls in the bench process.
pub const STORE_API: &str = "the store's own API called in the bench process \
     (`roaming_store::Store`: `fetch_page` (one statement since 2026-12-01; `anchor_seq` + \
     `fetch_page` before), `list_conversations`, `append`), \
     on a pool of the same size";

/// What it was in runs whose cells have no `store_is`.
pub const STORE_SQL_AS_ISSUED: &str = "the store's statements issued directly as the store \
     issued them then (reads: the view and anchor lookups unprepared, the page prepared; \
     writes: BEGIN, lock, duplicate check, bump + INSERT, COMMIT, prepared)";

/// The kind of the cells whose reference ("ceiling") is a history page through the service,
/// measured in the same cell: the change feed and the filtered page. Their ratio is calls/s ÷
/// the reference's calls/s; its inverse is what one call costs, in reference pages.
pub const VS_PAGE: &str = "vs_page";

/// The reference of a change-feed cell.
pub const PAGE_REFERENCE: &str = "one history page of 50 through the service (FetchHistory, \
     backward from a random anchor over all stored messages), same stage and concurrency";

/// The reference of a change-feed cell measured in rounds.
pub const PAGE_REFERENCE_PHASED: &str = "one history page of 50 through the service \
     (FetchHistory, backward from a random anchor over all stored messages), same stage and \
     concurrency, measured in the same rounds (every worker's call, then the next round; no \
     untimed phase)";

/// The reference of the filtered page.
pub const UNFILTERED_REFERENCE: &str = "the unfiltered newest page of 50 of the same \
     conversation through the service, same concurrency";

/// The rare-type messages behind the filtered page.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RareReport {
    /// The conversation (the biggest loaded).
    pub conversation: String,
    /// Its messages.
    pub messages: u64,
    /// The planted type (one the loader never writes).
    pub kind: String,
    /// How many of them its reader sees.
    pub count: u64,
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
    /// The change feed's users, seeded after the first stage (absent in earlier runs).
    #[serde(default)]
    pub feed: Option<crate::feed::FeedLoad>,
    /// The rare-type messages of the filtered page (absent in earlier runs).
    #[serde(default)]
    pub rare: Option<RareReport>,
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

    // 1b. The performance issue's honest ceilings: the page against the single-statement
    // ceiling (the store issues one statement per page since 2026-12-01, so the ceiling is
    // that statement) at >= 0.6, with the bare keyset page beside it.
    let mut parts = Vec::new();
    let mut met = Some(true);
    match find(cells, "history_page_50_backward", 16, Some(top)) {
        Some(c) => {
            let ratio = c.ratio.unwrap_or(0.0);
            parts.push(format!(
                "{} pages/s, single statement {} = {ratio:.2}",
                rate(c.service.ops_per_sec),
                rate(c.ceiling.as_ref().map_or(0.0, |m| m.ops_per_sec))
            ));
            if let (Some(b), Some(r)) = (&c.bare, c.bare_ratio()) {
                parts.push(format!("bare keyset {} = {r:.2}", rate(b.ops_per_sec)));
            }
            parts.push(format!(
                "server {:.0} µs/page, PostgreSQL {:.0}, load generator {:.0}",
                cpu_us_per_call(c.service.server_cpu_pct, &c.service),
                cpu_us_per_call(c.service.postgres_cpu_pct, &c.service),
                cpu_us_per_call(c.service.client_cpu_pct, &c.service)
            ));
            if ratio < 0.6 {
                met = Some(false);
            }
        }
        None => met = None,
    }
    out.push(Verdict {
        target: "history page of 50 (backward) ≥ 0.6 × the single-statement ceiling at C=16".into(),
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
            let floor = if c == 16 {
                floor_note(cells, x, c, top)
            } else {
                String::new()
            };
            parts.push(format!(
                "C={c}: {} vs {} msg/s = {ratio:.2}{floor}",
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

/// What one call of a [`VS_PAGE`] cell costs, in reference calls (reference calls/s ÷ calls/s).
pub fn cost(c: &Cell) -> Option<f64> {
    c.ratio.filter(|r| *r > 0.0).map(|r| 1.0 / r)
}

/// The cost target of a [`VS_PAGE`] scenario, in reference pages.
pub fn cost_target(scenario: &str) -> Option<f64> {
    if scenario.starts_with("sync_delta_empty_") {
        Some(1.0)
    } else if scenario.starts_with("sync_delta_") || scenario == crate::scenarios::FILTERED {
        Some(2.0)
    } else {
        None
    }
}

/// "C=16: 812 vs 1007 /s → 1.24 pages (p50 …)" for a [`VS_PAGE`] cell.
fn cost_line(x: &Cell) -> Option<(f64, String)> {
    let ceiling = x.ceiling.as_ref()?;
    let cost = cost(x)?;
    let errors = match x.service.errors + ceiling.errors {
        0 => String::new(),
        n => format!(", {n} errors"),
    };
    Some((
        cost,
        format!(
            "C={}: {} vs {} calls/s → {cost:.2} (p50 {} vs {} ms, p99 {} vs {} ms{errors})",
            x.concurrency,
            rate(x.service.ops_per_sec),
            rate(ceiling.ops_per_sec),
            ms(x.service.latency.p50_ms),
            ms(ceiling.latency.p50_ms),
            ms(x.service.latency.p99_ms),
            ms(ceiling.latency.p99_ms),
        ),
    ))
}

/// What the gRPC floor measured beside `x` (same concurrency and stage) allows its ratio on
/// this machine (`floor::attainable`), or nothing when the floor was not measured.
fn floor_note(cells: &[Cell], x: &Cell, c: usize, top: u64) -> String {
    let Some(floor) = find(cells, crate::floor::FLOOR, c, Some(top)) else {
        return String::new();
    };
    let Some(a) = crate::floor::attainable(x, floor) else {
        return String::new();
    };
    format!(
        " (at most ≈ {:.2} here by {}: the ceiling's {:.0} µs, the gRPC floor's {:.0} µs)",
        a.ratio, a.by, a.ceiling_us, a.floor_us
    )
}

fn has_errors(x: &Cell) -> bool {
    x.service.errors > 0 || x.ceiling.as_ref().is_some_and(|c| c.errors > 0)
}

/// The read-state and change targets (judged, not asserted): unread counts add at most 20 % to a list page (the
/// statement with ÷ without them ≥ 0.8, at 10 and 1,000 conversations); MarkRead ≥ 0.7 × and
/// recall and edit ≥ 0.5 × a raw single-row UPDATE (C=16).
pub fn organise_verdicts(cells: &[Cell], stages: &[Stage]) -> Vec<Verdict> {
    let top = stages.last().map_or(0, |s| s.stored_messages);
    let mut out = Vec::new();
    // `floored`: the service against a raw statement, so the gRPC floor bounds the ratio.
    let mut ratio_verdict =
        |target: String, scenarios: Vec<&str>, levels: &[usize], bound: f64, floored: bool| {
            let mut parts = Vec::new();
            let mut met: Option<bool> = None;
            for scenario in scenarios {
                for &c in levels {
                    let Some(x) = find(cells, scenario, c, Some(top)) else {
                        continue;
                    };
                    let Some(r) = x.ratio else {
                        continue;
                    };
                    let floor = if floored {
                        floor_note(cells, x, c, top)
                    } else {
                        String::new()
                    };
                    parts.push(format!(
                        "{scenario} C={c}: {} vs {} /s = {r:.2}{floor}",
                        rate(x.service.ops_per_sec),
                        rate(x.ceiling.as_ref().map_or(0.0, |m| m.ops_per_sec))
                    ));
                    met = Some(met.unwrap_or(true) && r >= bound && !has_errors(x));
                }
            }
            out.push(Verdict {
                target,
                measured: parts.join("; "),
                met,
            });
        };
    ratio_verdict(
        "read state: unread counts and receipts add at most 20 % to a list page (the list \
         statement with them ÷ without ≥ 0.8; 10 and 1,000 conversations)"
            .into(),
        crate::organise::LIST_SCENARIOS
            .iter()
            .map(|(name, _)| *name)
            .collect(),
        &[1, 16],
        0.8,
        false,
    );
    ratio_verdict(
        "MarkRead ≥ 0.7 × a raw single-row UPDATE (C=16)".into(),
        vec![crate::organise::Change::MarkRead.name()],
        &[16],
        0.7,
        true,
    );
    ratio_verdict(
        "recall and edit ≥ 0.5 × a raw single-row UPDATE (C=16)".into(),
        vec![
            crate::organise::Change::Recall.name(),
            crate::organise::Change::Edit.name(),
        ],
        &[16],
        0.5,
        true,
    );
    out
}

/// Judges the change feed's and the filtered page's targets (none of them asserted).
pub fn feed_verdicts(cells: &[Cell], stages: &[Stage], rare: Option<&RareReport>) -> Vec<Verdict> {
    let top = stages.last().map_or(0, |s| s.stored_messages);
    let mut out = Vec::new();
    let sizes = crate::feed::FEED_SIZES;
    let levels = [1, 16];

    // Cost in reference pages, at or below a bound, for each scenario and concurrency.
    let mut cost_verdict = |target: String, scenarios: Vec<String>, bound: f64| {
        let mut parts = Vec::new();
        let mut met: Option<bool> = None;
        let mut clean = true;
        for scenario in &scenarios {
            for c in levels {
                let Some(x) = find(cells, scenario, c, Some(top)) else {
                    continue;
                };
                let Some((cost, line)) = cost_line(x) else {
                    continue;
                };
                parts.push(format!("{scenario} {line}"));
                clean &= !has_errors(x);
                met = Some(met.unwrap_or(true) && cost <= bound);
            }
        }
        out.push(Verdict {
            target,
            measured: parts.join("; "),
            met: met.filter(|_| clean),
        });
    };
    cost_verdict(
        "change feed: an empty delta costs no more than one history page of 50 (reference \
         calls/s ÷ delta calls/s ≤ 1, same cell)"
            .into(),
        sizes
            .iter()
            .map(|&n| crate::feed::SyncCall::Empty.name(n))
            .collect(),
        1.0,
    );
    cost_verdict(
        format!(
            "change feed: a delta after {} changes costs no more than 2 history pages of 50 (≤ 2)",
            crate::feed::CHANGES
        ),
        sizes
            .iter()
            .map(|&n| crate::feed::SyncCall::Changes.name(n))
            .collect(),
        2.0,
    );
    let what = rare.map_or_else(
        || "a rare type".to_owned(),
        |r| {
            format!(
                "{} {} messages among {}",
                r.count,
                r.kind,
                human(r.messages)
            )
        },
    );
    cost_verdict(
        format!(
            "filtered page ({what}, newest first) costs no more than 2 × an unfiltered page of \
             50 of the same conversation (≤ 2)"
        ),
        vec![crate::scenarios::FILTERED.to_owned()],
        2.0,
    );

    // The empty delta's cost against the number of conversations.
    let (small, big) = (
        crate::feed::SyncCall::Empty.name(sizes[0]),
        crate::feed::SyncCall::Empty.name(sizes[sizes.len() - 1]),
    );
    let mut parts = Vec::new();
    let mut met: Option<bool> = None;
    for c in levels {
        let (Some(a), Some(b)) = (
            find(cells, &small, c, Some(top)),
            find(cells, &big, c, Some(top)),
        ) else {
            continue;
        };
        let r50 = b.service.latency.p50_ms / a.service.latency.p50_ms.max(1e-9);
        let rr = a.service.ops_per_sec / b.service.ops_per_sec.max(1e-9);
        parts.push(format!(
            "C={c}: p50 {} → {} ms (×{r50:.2}), calls/s {} → {} (×{rr:.2} the time)",
            ms(a.service.latency.p50_ms),
            ms(b.service.latency.p50_ms),
            rate(a.service.ops_per_sec),
            rate(b.service.ops_per_sec)
        ));
        met = Some(met.unwrap_or(true) && r50 <= 1.2 && !has_errors(a) && !has_errors(b));
    }
    out.push(Verdict {
        target: format!(
            "change feed: the empty delta does not grow from {} to {} conversations (p50 ≤ 1.2 ×)",
            sizes[0],
            sizes[sizes.len() - 1]
        ),
        measured: parts.join("; "),
        met,
    });

    // The empty delta's cost against the stored messages.
    let first = stages.first().map_or(0, |s| s.stored_messages);
    let mut parts = Vec::new();
    let mut met: Option<bool> = None;
    for c in levels {
        let (Some(a), Some(b)) = (
            find(cells, &big, c, Some(first)),
            find(cells, &big, c, Some(top)),
        ) else {
            continue;
        };
        if first == top {
            break;
        }
        let r50 = b.service.latency.p50_ms / a.service.latency.p50_ms.max(1e-9);
        let cost_a = cost(a).unwrap_or(0.0);
        let cost_b = cost(b).unwrap_or(0.0);
        parts.push(format!(
            "C={c}: p50 {} → {} ms (×{r50:.2}) from {} to {} stored; in pages {cost_a:.2} → {cost_b:.2}",
            ms(a.service.latency.p50_ms),
            ms(b.service.latency.p50_ms),
            human(first),
            human(top)
        ));
        met = Some(met.unwrap_or(true) && r50 <= 1.2 && !has_errors(a) && !has_errors(b));
    }
    if parts.is_empty() {
        parts.push(
            "(judged when the empty delta is probed at the first and the top stage; not with \
             --quick)"
                .to_owned(),
        );
    }
    out.push(Verdict {
        target: format!(
            "change feed: the empty delta ({big}) does not grow with the stored messages (p50 at \
             the top stage ≤ 1.2 × at the first)"
        ),
        measured: parts.join("; "),
        met,
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

    if let Some(f) = &r.feed {
        let sizes: Vec<String> = f
            .sizes
            .iter()
            .map(|(n, g)| format!("{} ({} GROUPs)", human(*n as u64), g))
            .collect();
        let _ = writeln!(
            s,
            "\nChange-feed users (seeded by COPY after the first stage, not counted in `stored`): \
             {} per size with {} conversations; {} conversations, {} `user_conversations` rows, \
             {} messages, {:.1} s with `VACUUM (ANALYZE)`.",
            f.users_per_size,
            sizes.join(" and "),
            f.conversations,
            f.user_conversations,
            f.messages,
            f.secs
        );
    }
    if let Some(rare) = &r.rare {
        let _ = writeln!(
            s,
            "\nFiltered page: {} messages of `{}` (the biggest conversation, {} messages) were \
             turned into {}, a type the loader never writes.",
            rare.count,
            rare.conversation,
            human(rare.messages),
            rare.kind
        );
    }

    let _ = writeln!(s, "\n### History page latency vs stored messages\n");
    let _ = writeln!(
        s,
        "`history_page_50_backward` (random anchors over all stored messages). Ceiling: the \
         store's page statement (one statement: view, anchor and page, since 2026-12-01). \
         Bare: {BARE_IS} (runs before it: –).\n"
    );
    let _ = writeln!(
        s,
        "| stored | C | service pages/s | p50 ms | p99 ms | p999 ms | ceiling pages/s | ceiling p50 | ceiling p99 | ratio | bare pages/s | service/bare |"
    );
    let _ = writeln!(
        s,
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for c in r
        .cells
        .iter()
        .filter(|c| c.scenario == "history_page_50_backward" && c.concurrency <= 16)
    {
        let (cp, c50, c99) = c.ceiling.as_ref().map_or((0.0, 0.0, 0.0), |m| {
            (m.ops_per_sec, m.latency.p50_ms, m.latency.p99_ms)
        });
        let (bare, bare_ratio) = match (&c.bare, c.bare_ratio()) {
            (Some(b), Some(r)) => (rate(b.ops_per_sec), format!("{r:.2}")),
            _ => ("–".into(), "–".into()),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {} | {} |",
            human(c.stored_messages),
            c.concurrency,
            rate(c.service.ops_per_sec),
            ms(c.service.latency.p50_ms),
            ms(c.service.latency.p99_ms),
            ms(c.service.latency.p999_ms),
            rate(cp),
            ms(c50),
            ms(c99),
            c.ratio.unwrap_or(0.0),
            bare,
            bare_ratio
        );
    }

    let _ = writeln!(s, "\n### All scenarios at {} stored messages\n", human(top));
    let _ = writeln!(
        s,
        "Throughput is calls/s (reads) or messages/s (writes); latency per call in ms. \
         Ceiling: the store's SQL issued directly with a pool of the same size (reads), the raw \
         INSERT (writes). CPU in % of one core (the machine has {} cores) over the service's \
         measured window: server process, PostgreSQL backends of the bench database, the load \
         generator, and everything else on the machine (other work disturbing the figures); \
         µs/call: the same CPU per call of the service (server, PostgreSQL, load generator; for the cells run in rounds, `mark_read`, `recall`, `edit`, per round: the untimed append and the call).\n",
        r.machine.nproc
    );
    let _ = writeln!(
        s,
        "| scenario | C | service /s | p50 | p99 | p999 | ceiling /s | ceil p50 | ceil p99 | service/ceiling | server CPU % | PG CPU % | bench CPU % | other CPU % | server µs/call | PG µs/call | bench µs/call | server RSS MB | errors |"
    );
    let _ = writeln!(
        s,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for c in r
        .cells
        .iter()
        .filter(|c| c.stored_messages == top && c.kind != VS_PAGE)
    {
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
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {} |",
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
            cpu_us_per_call(c.service.server_cpu_pct, &c.service),
            cpu_us_per_call(c.service.postgres_cpu_pct, &c.service),
            cpu_us_per_call(c.service.client_cpu_pct, &c.service),
            c.service.server_rss_max_mb,
            c.service.errors
        );
    }

    vs_page_table(r, &mut s);

    let with_store_sql: Vec<&Cell> = r
        .cells
        .iter()
        .filter(|c| c.store_sql.is_some() && c.kind != VS_PAGE)
        .collect();
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

/// The change feed's and the filtered page's table: each cell beside its reference.
fn vs_page_table(r: &Report, s: &mut String) {
    let cells: Vec<&Cell> = r.cells.iter().filter(|c| c.kind == VS_PAGE).collect();
    if cells.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\n### Change feed and filtered page, against a history page\n"
    );
    let _ = writeln!(
        s,
        "Each call (a snapshot: the whole stream, every page) through the service, beside its \
         reference measured in the same cell: for the change feed, one history page of 50 \
         (FetchHistory, backward from a random anchor); for the filtered page, the unfiltered \
         newest page of 50 of the same conversation. `cost` = reference calls/s ÷ calls/s: \
         what one call costs in reference pages at that concurrency (target: empty delta ≤ 1, \
         delta after {} changes ≤ 2, filtered page ≤ 2). The delta after {} changes is \
         measured in rounds — every worker's {} single-message appends (untimed), then every \
         worker's delta (timed) — and so is its reference; its CPU columns include the \
         appends. `changes/call`: changes (feed) or messages (page) per call. `store API`: the \
         same calls through `roaming_store::Store` in the bench process (`sync_page` page after \
         page, `fetch_page`), without gRPC, the server and the client.\n",
        crate::feed::CHANGES,
        crate::feed::CHANGES,
        crate::feed::CHANGES
    );
    let _ = writeln!(
        s,
        "| scenario | stored | C | calls/s | p50 | p99 | p999 | changes/call | reference calls/s | ref p50 | ref p99 | cost | target | store API calls/s | store p50 | server CPU % | PG CPU % | other CPU % | errors |"
    );
    let _ = writeln!(
        s,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for c in cells {
        let (cr, c50, c99, cerr) = c.ceiling.as_ref().map_or(
            ("–".to_owned(), "–".to_owned(), "–".to_owned(), 0),
            |m| {
                (
                    rate(m.ops_per_sec),
                    ms(m.latency.p50_ms),
                    ms(m.latency.p99_ms),
                    m.errors,
                )
            },
        );
        let per_call = c.service.items_per_sec / c.service.ops_per_sec.max(1e-9);
        let verdict = match (cost(c), cost_target(&c.scenario)) {
            (Some(x), Some(t)) if x <= t => format!("≤ {t} met"),
            (Some(_), Some(t)) => format!("≤ {t} **missed**"),
            _ => "–".to_owned(),
        };
        let (store_rate, store_p50) = c
            .store_sql
            .as_ref()
            .map_or(("–".to_owned(), "–".to_owned()), |m| {
                (rate(m.ops_per_sec), ms(m.latency.p50_ms))
            });
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.0} | {} |",
            c.scenario,
            human(c.stored_messages),
            c.concurrency,
            rate(c.service.ops_per_sec),
            ms(c.service.latency.p50_ms),
            ms(c.service.latency.p99_ms),
            ms(c.service.latency.p999_ms),
            per_call,
            cr,
            c50,
            c99,
            cost(c).map_or("–".to_owned(), |x| format!("{x:.2}")),
            verdict,
            store_rate,
            store_p50,
            c.service.server_cpu_pct,
            c.service.postgres_cpu_pct,
            c.service.other_cpu_pct,
            if cerr > 0 {
                format!("{} (reference {cerr})", c.service.errors)
            } else {
                c.service.errors.to_string()
            }
        );
    }
}

/// The chart's size in pixels without the change feed's panel.
const CHART: (u32, u32) = (1100, 540);

/// Height of the upper panels when the change feed's panel follows.
const UPPER: u32 = 520;

/// Pixels per bar of the change feed's panel.
const COST_ROW: u32 = 24;

/// The [`VS_PAGE`] cells of the top stage, in run order.
fn vs_page_rows(r: &Report) -> Vec<&Cell> {
    let top = r.stages.last().map_or(0, |s| s.stored_messages);
    r.cells
        .iter()
        .filter(|c| c.kind == VS_PAGE && c.stored_messages == top && cost(c).is_some())
        .collect()
}

/// The chart's size for `r`.
fn chart_size(r: &Report) -> (u32, u32) {
    match vs_page_rows(r).len() {
        0 => CHART,
        n => (CHART.0, UPPER + 64 + COST_ROW * n as u32 + 30 + 30),
    }
}

/// Fonts the SVG names; whatever renders it picks one. The chart never loads a font: plotters
/// (without its font features) estimates text extents from the character count.
const FONT: &str = "Helvetica, Arial, sans-serif";

const SERVICE_C1: RGBColor = RGBColor(0x1f, 0x5f, 0xbf);
const SERVICE_C16: RGBColor = RGBColor(0x7f, 0xb0, 0xff);
const CEILING_C1: RGBColor = RGBColor(0xc0, 0x58, 0x0a);
const CEILING_C16: RGBColor = RGBColor(0xf2, 0xa6, 0x5a);
const WRITE: RGBColor = RGBColor(0x2a, 0x9d, 0x5b);
const TARGET: RGBColor = RGBColor(0xcc, 0x00, 0x00);
const MISSED: RGBColor = RGBColor(0xe8, 0x70, 0x70);
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
        let size = chart_size(r);
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        root.fill(&WHITE)?;
        latency_panel(r, &root)?;
        ratio_panel(r, &root)?;
        cost_panel(r, &root)?;
        root.draw(&Text::new(
            format!(
                "{} · {} × {} · {}",
                r.date, r.machine.nproc, r.machine.cpu_model, r.command
            ),
            (30, size.1 as i32 - 22),
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
        .filter(|c| c.kind != VS_PAGE)
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

/// Bottom panel (when the run has them): what one change-feed or filtered-page call costs in
/// reference pages, per scenario and concurrency at the top stage, log scale, with each
/// scenario's target.
fn cost_panel(r: &Report, root: &Area) -> anyhow::Result<()> {
    let rows = vs_page_rows(r);
    if rows.is_empty() {
        return Ok(());
    }
    let top = r.stages.last().map_or(0, |s| s.stored_messages);
    let y0 = UPPER as i32;
    root.draw(&Text::new(
        format!(
            "Change feed and filtered page: one call's cost in reference pages, {} stored",
            human(top)
        ),
        (30, y0 + 10),
        bold(14.0),
    ))?;
    root.draw(&Text::new(
        "reference calls/s ÷ calls/s, same cell (feed: a history page of 50; filtered: the \
         unfiltered page of 50); log scale; black tick: the target (green: met, red: missed)",
        (30, y0 + 28),
        text(12.0, &NOTE),
    ))?;
    let costs: Vec<f64> = rows.iter().filter_map(|c| cost(c)).collect();
    let hi = costs.iter().copied().fold(10.0, f64::max);
    let x_hi = 10f64.powf(hi.log10().ceil());
    let lo = costs.iter().copied().fold(1.0, f64::min);
    let x_lo = 10f64.powf(lo.log10().floor().min(-1.0));
    let n = rows.len() as f64;
    let (w, _) = chart_size(r);
    let area = root.clone().shrink(
        (12, y0 as u32 + 40),
        (w - 24, COST_ROW * rows.len() as u32 + 6 + 24),
    );
    let mut ticks = Vec::new();
    let mut v = x_lo;
    while v <= x_hi * (1.0 + 1e-9) {
        for m in [1.0, 2.0, 5.0] {
            if v * m <= x_hi * (1.0 + 1e-9) {
                ticks.push(v * m);
            }
        }
        v *= 10.0;
    }
    let mut chart = ChartBuilder::on(&area)
        .margin_top(6)
        .margin_right(230)
        .x_label_area_size(24)
        .y_label_area_size(250)
        .build_cartesian_2d((x_lo..x_hi).log_scale().with_key_points(ticks), 0.0..n)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .bold_line_style(RGBColor(0xee, 0xee, 0xee))
        .light_line_style(TRANSPARENT)
        .axis_style(FRAME)
        .label_style(text(12.0, &BLACK))
        .x_label_formatter(&|v| {
            if *v >= 1.0 {
                format!("{v:.0}")
            } else {
                format!("{v}")
            }
        })
        .draw()?;
    for (i, c) in rows.iter().enumerate() {
        let y = n - i as f64;
        let cost = cost(c).unwrap_or(x_lo);
        let target = cost_target(&c.scenario);
        let colour = match target {
            Some(t) if cost > t => MISSED,
            Some(_) => WRITE,
            None => SERVICE_C16,
        };
        chart.draw_series(std::iter::once(
            EmptyElement::at((x_lo, y - 0.5))
                + Text::new(
                    format!("{} C={}", c.scenario, c.concurrency),
                    (-6, 0),
                    text(12.0, &BLACK).pos(Pos::new(HPos::Right, VPos::Center)),
                ),
        ))?;
        chart.draw_series(std::iter::once(Rectangle::new(
            [(x_lo, y - 0.15), (cost.max(x_lo), y - 0.85)],
            colour.filled(),
        )))?;
        if let Some(t) = target {
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(t, y - 0.02), (t, y - 0.98)],
                BLACK.stroke_width(2),
            )))?;
        }
        let svc = c.service.ops_per_sec;
        let reference = c.ceiling.as_ref().map_or(0.0, |m| m.ops_per_sec);
        // The figure after the bar or the target tick, whichever reaches further.
        let text_at = cost.max(target.map_or(x_lo, |t| t * 1.04)).max(x_lo);
        chart.draw_series(std::iter::once(
            EmptyElement::at((text_at, y - 0.5))
                + Text::new(
                    format!(
                        "{cost:.2} = {} / {} calls/s{}",
                        rate(reference),
                        rate(svc),
                        target.map_or(String::new(), |t| format!(" (target ≤ {t})"))
                    ),
                    (6, 0),
                    text(10.0, &RGBColor(0x33, 0x33, 0x33)).pos(Pos::new(HPos::Left, VPos::Center)),
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
            .filter(|c| c.ceiling.is_some() && c.kind != VS_PAGE)
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
    fn the_cost_panel_shows_every_feed_and_filtered_cell() {
        let report = committed_run();
        let chart = svg(&report).expect("drawn");
        let rows = vs_page_rows(&report);
        assert!(!rows.is_empty(), "the committed run has change-feed cells");
        for c in &rows {
            let label = format!("{} C={}", c.scenario, c.concurrency);
            assert!(chart.contains(&label), "{label}");
            let cost = format!("{:.2} = ", cost(c).expect("a reference"));
            assert!(chart.contains(&cost), "{label} {cost}");
        }
        assert!(chart.contains(&format!("height=\"{}\"", chart_size(&report).1)));
        let md = markdown(&report, "results.svg");
        assert!(md.contains("### Change feed and filtered page"));
        for scenario in [
            "sync_snapshot_1000",
            "sync_delta_empty_100",
            "history_page_filtered_rare",
        ] {
            assert!(
                md.contains(&format!("| {scenario} |")),
                "{scenario} in the table"
            );
        }
    }

    #[test]
    fn without_feed_cells_the_chart_keeps_its_size() {
        let mut report = committed_run();
        report.cells.retain(|c| c.kind != VS_PAGE);
        assert_eq!(chart_size(&report), CHART);
        let chart = svg(&report).expect("drawn");
        assert!(chart.contains(&format!("height=\"{}\"", CHART.1)));
        assert!(!markdown(&report, "x.svg").contains("### Change feed"));
    }

    fn cell(scenario: &str, c: usize, stored: u64, rate: f64, p50: f64, reference: f64) -> Cell {
        let m = |ops_per_sec: f64, p50_ms: f64| Measured {
            ops: 100,
            ops_per_sec,
            latency: crate::runner::Latency {
                p50_ms,
                p99_ms: 2.0 * p50_ms,
                ..Default::default()
            },
            ..Default::default()
        };
        Cell {
            scenario: scenario.into(),
            kind: VS_PAGE.into(),
            concurrency: c,
            stored_messages: stored,
            service: m(rate, p50),
            ceiling: Some(m(reference, 1.0)),
            ceiling_is: PAGE_REFERENCE.into(),
            store_sql: None,
            store_is: String::new(),
            ratio: Some(rate / reference),
            bare: None,
        }
    }

    #[test]
    fn feed_verdicts_judge_costs_and_growth() {
        let stage = |n: u64| Stage {
            stored_messages: n,
            load: serde_json::from_value(serde_json::json!({
                "messages": n, "conversations": 1, "user_conversations": 1, "tombstones": 0,
                "copy_secs": 0.0, "vacuum_secs": 0.0, "messages_per_sec": 0.0,
                "rebuilt_indexes": false
            }))
            .expect("a load report"),
            messages_table_bytes: 0,
            database_bytes: 0,
        };
        let stages = [stage(10_000), stage(100_000)];
        let mut cells = Vec::new();
        for c in [1, 16] {
            // Empty deltas: as fast as a page at 100, slower at 1,000 (cost 1.25, p50 ×1.5).
            cells.push(cell(
                "sync_delta_empty_100",
                c,
                100_000,
                1000.0,
                1.0,
                1000.0,
            ));
            cells.push(cell(
                "sync_delta_empty_1000",
                c,
                100_000,
                800.0,
                1.5,
                1000.0,
            ));
            cells.push(cell("sync_delta_empty_1000", c, 10_000, 800.0, 1.4, 1000.0));
            cells.push(cell(
                "sync_delta_10_changes_100",
                c,
                100_000,
                600.0,
                2.0,
                1000.0,
            ));
            cells.push(cell(
                "sync_delta_10_changes_1000",
                c,
                100_000,
                500.0,
                2.0,
                1000.0,
            ));
            cells.push(cell(
                crate::scenarios::FILTERED,
                c,
                100_000,
                400.0,
                3.0,
                1000.0,
            ));
        }
        let v = feed_verdicts(&cells, &stages, None);
        assert_eq!(v.len(), 5);
        let met: Vec<Option<bool>> = v.iter().map(|v| v.met).collect();
        // empty ≤ 1: missed (1.25 at 1,000); 10 changes ≤ 2: met (2.0); filtered ≤ 2: missed
        // (2.5); 100 → 1,000: missed (×1.5); stored: met (1.4 → 1.5 ms is ×1.07).
        assert_eq!(
            met,
            [
                Some(false),
                Some(true),
                Some(false),
                Some(false),
                Some(true)
            ]
        );
        assert!(
            v[0].measured
                .contains("sync_delta_empty_1000 C=16: 800 vs 1000 calls/s → 1.25")
        );
        // Errors make a cost verdict unjudged.
        cells[0].service.errors = 1;
        assert_eq!(feed_verdicts(&cells, &stages, None)[0].met, None);
        // No feed cells: nothing judged.
        let none = feed_verdicts(&[], &stages, None);
        assert!(none.iter().all(|v| v.met.is_none()));
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
