//! Faults, overload, cancellation and shutdown.
//!
//! Every test starts its own PostgreSQL 15 (`faults/pg.rs`: initdb + pg_ctl in a temporary
//! directory, on a free loopback port) and runs the server in-process over it
//! (`roaming::open_store` + `roaming::serve`), so it can stop, crash, freeze and restart the
//! database without disturbing other tests. The tests run one at a time, each bounded in
//! time, and each prints its figures as one `name: key=value ...` line
//! (`cargo test -p roaming-reliability --test it faults -- --nocapture` shows them).
//!
//! `ROAMING_RELIABILITY_LONG=1` selects the long variants (more load, more restarts, longer
//! outages); the default variants are short because CI runs them in `cargo test --workspace`.
//! Figures and commands: `services/reliability/docs/reliability.md`.

mod cancel;
mod frozen;
pub(crate) mod overload;
pub(crate) mod pg;
mod restart;
mod shutdown;
pub(crate) mod support;

use std::time::Duration;
use support::{pick, run};

#[test]
fn restart_fast_under_append_load_loses_nothing() {
    run(
        "restart_fast",
        pick(Duration::from_secs(60), Duration::from_secs(600)),
        restart::scenario(pg::StopMode::Fast),
    );
}

#[test]
fn crash_immediate_under_append_load_loses_nothing() {
    run(
        "crash_immediate",
        pick(Duration::from_secs(60), Duration::from_secs(600)),
        restart::scenario(pg::StopMode::Immediate),
    );
}

#[test]
fn frozen_database_calls_end_by_their_deadline_and_the_pool_recovers() {
    run(
        "frozen",
        pick(Duration::from_secs(60), Duration::from_secs(300)),
        frozen::scenario(),
    );
}

#[test]
fn overload_at_ten_times_capacity_is_refused_quickly_and_admitted_calls_stay_fast() {
    run(
        "overload",
        pick(Duration::from_secs(60), Duration::from_secs(300)),
        overload::scenario(),
    );
}

#[test]
fn a_thousand_clients_cancelling_mid_stream_stop_database_work() {
    run(
        "cancel_streams",
        pick(Duration::from_secs(60), Duration::from_secs(300)),
        cancel::thousand_streams(),
    );
}

#[test]
fn a_client_deadline_shorter_than_a_slow_query_cancels_the_query() {
    run(
        "cancel_slow_query",
        pick(Duration::from_secs(60), Duration::from_secs(300)),
        cancel::slow_query(),
    );
}

#[test]
fn graceful_shutdown_ends_streams_and_loses_no_unary_call() {
    run(
        "shutdown",
        pick(Duration::from_secs(60), Duration::from_secs(300)),
        shutdown::scenario(),
    );
}
