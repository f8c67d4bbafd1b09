//! Migration tests against a real PostgreSQL (127.0.0.1:5432, or `ROAMING_TEST_DATABASE_URL`
//! naming its maintenance database): each test makes a fresh database of its own and drops it.

mod concurrent;
mod fresh;
mod legacy;
mod refused;
mod support;
