//! Logging set-up: `RUST_LOG` filters, text or JSON lines on stderr, and room for one more
//! layer beside them (the roaming binary's trace export).

use std::io::IsTerminal as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// What every layer sits on: the registry under the `RUST_LOG` filter (`info` by default),
/// which applies to the log lines and to any extra layer alike.
pub type Base = tracing_subscriber::layer::Layered<EnvFilter, Registry>;

/// A layer beside the log lines, e.g. one that exports spans.
pub type ExtraLayer = Box<dyn Layer<Base> + Send + Sync>;

/// Installs the global subscriber; `json` selects JSON lines. Safe to call twice.
pub fn init(json: bool) {
    let _ = init_with(json, None);
}

/// Installs the global subscriber with `extra` beside the log lines. Returns false, and
/// changes nothing, when a global subscriber is installed already.
pub fn init_with(json: bool, extra: Option<ExtraLayer>) -> bool {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never into log files or collectors.
        .with_ansi(std::io::stderr().is_terminal());
    let lines: ExtraLayer = if json {
        // The current span and its parents on every line: the call's rpc, caller, user,
        // conversation, code and latency.
        lines
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .boxed()
    } else {
        lines.boxed()
    };
    let layers: Vec<ExtraLayer> = std::iter::once(lines).chain(extra).collect();
    tracing_subscriber::registry()
        .with(filter)
        .with(layers)
        .try_init()
        .is_ok()
}
