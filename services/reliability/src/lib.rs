//! Roaming's reliability suite lives in `tests/it`; see `docs/reliability.md`.

pub mod fuzz_targets;
