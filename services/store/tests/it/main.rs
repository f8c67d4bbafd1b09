//! Migration tests against a real PostgreSQL (`roaming_testkit::admin_url`: 127.0.0.1:5432,
//! `ROAMING_TEST_DATABASE_URL` naming its maintenance database, or a private cluster): each test makes a fresh database of its own and drops it.

mod citus;
mod concurrent;
mod fresh;
mod legacy;
mod refused;
mod support;
