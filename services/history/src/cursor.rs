//! History cursors: where to resume, bound to the conversation, direction and filters.

use roaming_runtime::ApiError;
use roaming_runtime::cursor::{CursorSealer, fingerprint};
use roaming_store::Direction;

const VERSION: u8 = 1;
const LEN: usize = 1 + 1 + 8 + 8 + 8;

/// What a history cursor carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HistoryCursor {
    pub direction: Direction,
    /// Fingerprint of the conversation's storage key.
    pub conversation: [u8; 8],
    /// Fingerprint of the filters.
    pub filters: [u8; 8],
    /// The last seq handed out (exclusive resume position).
    pub position: i64,
}

impl HistoryCursor {
    pub fn conversation_fingerprint(key: &str) -> [u8; 8] {
        fingerprint(&[b"conversation", key.as_bytes()])
    }

    pub fn seal(&self, sealer: &CursorSealer) -> String {
        let mut payload = Vec::with_capacity(LEN);
        payload.push(VERSION);
        payload.push(match self.direction {
            Direction::Backward => 1,
            Direction::Forward => 2,
        });
        payload.extend_from_slice(&self.conversation);
        payload.extend_from_slice(&self.filters);
        payload.extend_from_slice(&self.position.to_be_bytes());
        sealer.seal(&payload)
    }

    pub fn open(sealer: &CursorSealer, text: &str) -> Result<Self, ApiError> {
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
        let take8 =
            |at: usize| -> [u8; 8] { payload[at..at + 8].try_into().expect("length checked") };
        Ok(Self {
            direction,
            conversation: take8(2),
            filters: take8(10),
            position: i64::from_be_bytes(take8(18)),
        })
    }
}
