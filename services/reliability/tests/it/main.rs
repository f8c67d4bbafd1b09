//! Reliability: faults, overload, cancellation, shutdown and TLS to PostgreSQL (each test
//! with its own PostgreSQL); consistency, bad input, security, the change feed and the client
//! mirror's convergence (against the shared PostgreSQL); abuse resistance (partly with the
//! server in a child process).

mod abuse;
mod consistency;
mod faults;
mod input;
mod security;
mod sync_convergence;
mod sync_never_skip;
mod tls;
