//! End-to-end tests: a real PostgreSQL (a fresh database per test), the server on
//! `127.0.0.1:0`, and the real client.

use roaming_testkit as helpers;

mod auth;
mod config;
mod conversation_list;
mod conversation_membership;
mod conversation_removal;
mod dev;
mod history_append;
mod history_concurrency;
mod history_fetch;
mod history_remove;
mod lock_order;
mod protection;
mod read_state;
mod recall_edit;
mod server;
mod sync;
mod tracing_spans;
