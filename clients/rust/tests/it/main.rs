//! The client against a real server and PostgreSQL (a fresh database per test, the server on
//! `127.0.0.1:0`, from roaming-testkit).

mod connect;
mod conversations;
mod history;
mod local_store;
mod multi_device;
mod read_state;
mod recall_edit;
mod retry;
mod support;
mod tls;
