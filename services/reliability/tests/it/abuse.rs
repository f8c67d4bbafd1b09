//! Abuse resistance: what a hostile or careless caller must not be able to do to the server,
//! each attack of the security review turned into a test (figures in docs/reliability.md,
//! "Abuse resistance"):
//!
//! - `filters`: a filtered page reads rows in proportion to the page, not the conversation;
//! - `outputs`: pages end below a byte budget; errors quote a short prefix of a value;
//! - `purge`: a purge with its messages erases their content;
//! - `unknown_paths`: requests to ever new paths, without a token, leave the server's memory
//!   and its metrics flat (labels come from the contract's fixed set of RPC names);
//! - `slow_clients`: readers that take nothing (an HTTP/2 window of 0) are ended at the
//!   stall timeout or the request timeout and their slots freed, a peer that never takes the
//!   status loses its connection, one user cannot take more than the per-user quota, and a
//!   slow but steady reader or a slow database is not taken for a stall.
//!
//! The scenarios with figures run the server in a child process (`support::ServerProcess`:
//! this test binary run again as `roaming serve` with its defaults), so that its resident
//! memory is its own and not the load generator's. Every test runs alone (the fault tests'
//! lock: these are timings on a 2-core machine) and is bounded in time. Figures:
//! `services/reliability/docs/reliability.md`, "Abuse resistance".

mod filters;
mod outputs;
mod purge;
mod slow_clients;
pub(crate) mod support;
mod unknown_paths;

use crate::faults::support::run;
use std::time::Duration;

#[test]
fn unknown_paths_without_a_token_leave_memory_and_metrics_flat() {
    run(
        "unknown_paths",
        Duration::from_secs(180),
        unknown_paths::scenario(),
    );
}

#[test]
fn a_reader_that_takes_nothing_is_ended_and_its_slot_freed_and_a_silent_peer_disconnected() {
    run(
        "zero_window_stream",
        Duration::from_secs(60),
        slow_clients::zero_window_stream(),
    );
}

#[test]
fn a_unary_answer_not_taken_is_ended_at_the_request_timeout() {
    run(
        "zero_window_unary",
        Duration::from_secs(60),
        slow_clients::zero_window_unary(),
    );
}

#[test]
fn a_slow_but_steady_reader_and_slow_pages_are_not_stalls() {
    run(
        "slow_is_not_stalled",
        Duration::from_secs(90),
        slow_clients::slow_is_not_stalled(),
    );
}

#[test]
fn six_hundred_zero_window_calls_of_one_user_lock_nobody_out() {
    run(
        "slow_clients",
        Duration::from_secs(180),
        slow_clients::six_hundred_zero_window_calls(),
    );
}
