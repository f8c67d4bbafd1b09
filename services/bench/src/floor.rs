//! The gRPC floor: the least a unary call through this client and server costs, measured in
//! the same run as the cells it bounds.
//!
//! `grpc_floor` calls `grpc.health.v1.Health/Check` on the server's channel: HTTP/2 framing,
//! tonic's codec and a one-field reply, with no authentication, no guard and no SQL (health
//! is never shed, `roaming_runtime::guard`). A service call costs at least this much CPU on
//! top of what its database work costs; on a machine where the server, PostgreSQL and the
//! load generator share the cores, that bounds the service/ceiling ratio of a write against a
//! raw statement issued from the bench's pool ([`attainable`]), which is what the MarkRead,
//! recall, edit and append verdicts print beside their ratios.

use crate::report::{Cell, cpu_us_per_call};
use crate::runner::{Done, Op};
use crate::scenarios::{Ctx, status};
use std::sync::Arc;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// The cell's name.
pub const FLOOR: &str = "grpc_floor";

/// One health check on the worker's channel.
pub fn health(ctx: &Arc<Ctx>) -> Op {
    ctx.op(|ctx, w, _| async move {
        let channel = ctx.clients[w % ctx.clients.len()].channel().clone();
        HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .map_err(status)?;
        Ok(Done::items(1))
    })
}

/// CPU per call outside PostgreSQL of the floor cell: server and load generator, µs.
pub fn transport_us(floor: &Cell) -> f64 {
    let m = &floor.service;
    cpu_us_per_call(m.server_cpu_pct, m) + cpu_us_per_call(m.client_cpu_pct, m)
}

/// The best service/ceiling ratio this machine allows for `cell`, and what it is made of
/// (µs). A closed-loop cell is CPU-bound here (server, PostgreSQL and load generator share
/// two cores): its call does at least its ceiling's database work and at least the floor's
/// gRPC work, so its rate is at most ceiling CPU ÷ (ceiling CPU + transport CPU) of the
/// ceiling's. A phased cell (`kind` "change": every worker's call at once, then the next
/// round) is bound by the burst's latency instead: at most ceiling p50 ÷ (ceiling p50 + the
/// floor's p50 at the same concurrency). None without a ceiling.
pub fn attainable(cell: &Cell, floor: &Cell) -> Option<Attainable> {
    let c = cell.ceiling.as_ref()?;
    let (by, ceiling_us, floor_us) = if cell.kind == "change" {
        (
            "p50 latency",
            c.latency.p50_ms * 1000.0,
            floor.service.latency.p50_ms * 1000.0,
        )
    } else {
        (
            "CPU per call",
            cpu_us_per_call(c.postgres_cpu_pct, c) + cpu_us_per_call(c.client_cpu_pct, c),
            transport_us(floor),
        )
    };
    Some(Attainable {
        by,
        ceiling_us,
        floor_us,
        ratio: ceiling_us / (ceiling_us + floor_us).max(1e-9),
    })
}

/// A bound from [`attainable`].
#[derive(Debug, Clone, Copy)]
pub struct Attainable {
    /// What bounds it: "CPU per call" or "p50 latency".
    pub by: &'static str,
    /// The ceiling's figure, µs.
    pub ceiling_us: f64,
    /// The floor's figure, µs.
    pub floor_us: f64,
    /// The bound on service ÷ ceiling.
    pub ratio: f64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::{Latency, Measured};

    fn measured(ops: f64, server: f64, postgres: f64, client: f64, p50_ms: f64) -> Measured {
        Measured {
            ops: 100,
            ops_per_sec: ops,
            cpu_ops_per_sec: ops,
            server_cpu_pct: server,
            postgres_cpu_pct: postgres,
            client_cpu_pct: client,
            latency: Latency {
                p50_ms,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn cell(kind: &str, service: Measured, ceiling: Option<Measured>) -> Cell {
        Cell {
            scenario: "x".into(),
            kind: kind.into(),
            concurrency: 16,
            stored_messages: 0,
            service,
            ceiling,
            ceiling_is: String::new(),
            store_sql: None,
            store_is: String::new(),
            ratio: None,
            bare: None,
        }
    }

    #[test]
    fn a_closed_loop_cell_is_bounded_by_cpu_and_a_phased_one_by_latency() {
        // The floor: 10,000 calls/s at 50 % server and 50 % load generator = 50 + 50 µs.
        let floor = cell("read", measured(10_000.0, 50.0, 0.0, 50.0, 0.5), None);
        assert_eq!(transport_us(&floor), 100.0);
        // A ceiling of 1,000 calls/s at 20 % PostgreSQL and 10 % load generator = 300 µs.
        let ceiling = measured(1_000.0, 0.0, 20.0, 10.0, 1.5);
        let write = cell("write", Measured::default(), Some(ceiling.clone()));
        let a = attainable(&write, &floor).expect("a ceiling");
        assert_eq!(
            (a.by, a.ceiling_us, a.floor_us),
            ("CPU per call", 300.0, 100.0)
        );
        assert!((a.ratio - 0.75).abs() < 1e-9);
        // In rounds: 1.5 ms ÷ (1.5 + 0.5 ms).
        let change = cell("change", Measured::default(), Some(ceiling));
        let a = attainable(&change, &floor).expect("a ceiling");
        assert_eq!(a.by, "p50 latency");
        assert!((a.ratio - 0.75).abs() < 1e-9);
        // No ceiling, no bound.
        assert!(attainable(&floor, &floor).is_none());
    }
}
