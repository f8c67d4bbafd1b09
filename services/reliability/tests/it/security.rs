//! Security: tokens that must be refused (alg none, HS/RS key confusion,
//! wrong keys, unexpected algorithms, expired and not-yet-valid, malformed claims), public-key
//! configurations (EdDSA, RS256) accepting what their key signed, roles and act-as on every
//! RPC, and 10,000 randomized cross-user requests that must never return a row of anybody
//! else's view.

mod cross_user;
mod forged;
mod roles;
mod support;
mod tokens;
mod world;
