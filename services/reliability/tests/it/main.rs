//! Reliability: faults, overload, cancellation, shutdown and TLS to PostgreSQL (each test
//! with its own PostgreSQL), consistency, bad input and security (against the shared
//! PostgreSQL).

mod abuse;
mod consistency;
mod faults;
mod input;
mod security;
mod sync_never_skip;
mod tls;
