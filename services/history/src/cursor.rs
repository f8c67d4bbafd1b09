//! History cursors, all of their logic: what a cursor is bound to, sealing one after a page,
//! and resuming from one (refusing a cursor made for another request).
//!
//! A cursor is a [`CursorScope`] (conversation, direction and filters, as fingerprints) plus
//! the last seq handed out, sealed by the shared [`CursorSealer`] so it is opaque and
//! tamper-evident. A resumed request may change `page_size` and `max_pages`, nothing else.

use roaming_domain::{Conversation, MessageKind, UserId};
use roaming_runtime::ApiError;
use roaming_runtime::cursor::{CursorSealer, fingerprint};
use roaming_store::Direction;

const VERSION: u8 = 1;
const LEN: usize = 1 + 1 + 8 + 8 + 8;

/// What every cursor of one FetchHistory request is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CursorScope {
    direction: Direction,
    /// Fingerprint of the conversation's storage key.
    conversation: [u8; 8],
    /// Fingerprint of the direction and the filters.
    filters: [u8; 8],
}

/// The filters a cursor is bound to (senders and kinds sorted and without repeats).
pub(crate) struct FilterSet<'a> {
    pub start_time_ms: Option<i64>,
    pub end_time_ms: Option<i64>,
    pub senders: &'a [UserId],
    pub kinds: &'a [MessageKind],
}

impl CursorScope {
    /// The scope of a request for `conversation` in `direction` with `filters`.
    pub(crate) fn new(
        conversation: &Conversation,
        direction: Direction,
        filters: FilterSet<'_>,
    ) -> Self {
        let opt = |v: Option<i64>| v.map(|x| x.to_be_bytes().to_vec()).unwrap_or_default();
        let senders: Vec<&str> = filters.senders.iter().map(UserId::as_str).collect();
        let kinds: Vec<u8> = filters
            .kinds
            .iter()
            .flat_map(|k| k.as_i16().to_be_bytes())
            .collect();
        Self {
            direction,
            conversation: fingerprint(&[b"conversation", conversation.key().as_bytes()]),
            filters: fingerprint(&[
                &[direction_byte(direction)],
                &opt(filters.start_time_ms),
                &opt(filters.end_time_ms),
                senders.join(",").as_bytes(),
                &kinds,
            ]),
        }
    }

    /// The cursor that resumes right after seq `position`.
    pub fn seal(&self, sealer: &CursorSealer, position: i64) -> String {
        let mut payload = Vec::with_capacity(LEN);
        payload.push(VERSION);
        payload.push(direction_byte(self.direction));
        payload.extend_from_slice(&self.conversation);
        payload.extend_from_slice(&self.filters);
        payload.extend_from_slice(&position.to_be_bytes());
        sealer.seal(&payload)
    }

    /// The position a cursor resumes after, if it was made for this scope.
    pub(crate) fn resume(&self, sealer: &CursorSealer, text: &str) -> Result<i64, ApiError> {
        let cursor = decode(sealer, text)?;
        if cursor.scope.conversation != self.conversation {
            return Err(ApiError::invalid(
                "cursor",
                "was made for another conversation",
            ));
        }
        if cursor.scope.direction != self.direction {
            return Err(ApiError::invalid(
                "cursor",
                "was made for another direction",
            ));
        }
        if cursor.scope.filters != self.filters {
            return Err(ApiError::invalid("cursor", "was made for other filters"));
        }
        Ok(cursor.position)
    }
}

/// A cursor's content.
struct Decoded {
    scope: CursorScope,
    position: i64,
}

/// Checks a cursor's seal and shape and reads it.
fn decode(sealer: &CursorSealer, text: &str) -> Result<Decoded, ApiError> {
    let bad = || {
        ApiError::invalid(
            "cursor",
            "is malformed or was altered; use a next_cursor as returned",
        )
    };
    let payload = sealer.open(text).ok_or_else(bad)?;
    if payload.len() != LEN || payload[0] != VERSION {
        return Err(bad());
    }
    let direction = match payload[1] {
        1 => Direction::Backward,
        2 => Direction::Forward,
        _ => return Err(bad()),
    };
    let take8 = |at: usize| -> [u8; 8] { payload[at..at + 8].try_into().expect("length checked") };
    Ok(Decoded {
        scope: CursorScope {
            direction,
            conversation: take8(2),
            filters: take8(10),
        },
        position: i64::from_be_bytes(take8(18)),
    })
}

/// Opens any history cursor this server made, checking only its seal and shape (what a
/// resumed request does before comparing scopes; the fuzz targets' entry point).
pub fn open(sealer: &CursorSealer, text: &str) -> Result<(), ApiError> {
    decode(sealer, text).map(|_| ())
}

fn direction_byte(direction: Direction) -> u8 {
    match direction {
        Direction::Backward => 1,
        Direction::Forward => 2,
    }
}
