//! Bad input: property tests over every request of both services.
//!
//! Generators build mostly-invalid requests (invalid ids, unknown enum values, oversized
//! fields, NUL characters, malformed, altered, foreign and other-key cursors and sync tokens,
//! invalid and contradictory marks, inverted and oversized seq ranges) and record which fields
//! they broke, from the contract's rules (`parse` only ever mints genuine cursors). Then:
//! - 10,000 cases per RPC (more with `ROAMING_RELIABILITY_LONG=1`) through the handlers' own
//!   `parse`, for all 15 RPCs (history: AppendMessages, FetchHistory, RemoveMessages,
//!   RemoveMessagesBefore, DigestHistory, RecallMessage, EditMessage; conversation:
//!   ListConversations, RemoveConversation, AddMembers, RemoveMembers, SyncConversations,
//!   MarkRead, PinConversation, MarkConversation): every refusal is
//!   INVALID_ARGUMENT naming a broken field (PERMISSION_DENIED where the caller lacks the role),
//!   every request with no broken field passes, nothing panics;
//! - a few hundred cases per RPC end to end through the real server (the eight RPCs before
//!   sync, read state, digests, recall and edit): the server answers
//!   exactly what `parse` said (same code, same message); valid ones answer OK,
//!   PERMISSION_DENIED or NOT_FOUND; never INTERNAL; rejected requests write nothing (table
//!   counts and content hashes compared);
//! - raw protobuf bodies no typed client can send (bad UTF-8 in every string field, broken
//!   wire format) never crash or reach the database;
//! - the fuzz corpus (`fuzz/corpus/<target>/`) replayed through the fuzz targets' bodies.

mod append;
mod conversations;
mod corpus;
mod cursors;
mod end_to_end;
mod fetch;
mod fields;
mod history_changes;
mod organise;
mod properties;
mod raw;
mod removals;
mod support;
