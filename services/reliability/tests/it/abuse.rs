//! Abuse resistance: what a hostile or careless caller must not be able to do to the server,
//! each attack of the security review turned into a test (figures in docs/reliability.md,
//! "Abuse resistance").

mod filters;
mod outputs;
mod purge;
