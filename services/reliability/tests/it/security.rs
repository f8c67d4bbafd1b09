//! Security: tokens that must be refused (alg none, HS/RS key confusion,
//! wrong keys, unexpected algorithms, expired and not-yet-valid, malformed claims), public-key
//! configurations (EdDSA, RS256) accepting what their key signed, roles and act-as on every
//! RPC, 10,000 randomized cross-user requests that must never return a row of anybody
//! else's view, forged cursors and cursor-key rotation, and doubled auth headers.

mod cross_user;
mod cursors;
mod forged;
mod headers;
mod roles;
mod support;
mod tokens;
mod world;
