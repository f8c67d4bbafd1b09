//! Conversation-list cursors: a keyset position `(last_activity_ms, conversation)` plus the
//! window and kinds of the first page, so that every page of one listing uses the same ones.

use roaming_runtime::{ApiError, CursorSealer};

const VERSION: u8 = 2;

/// What a list cursor carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListCursor {
    /// Fingerprint of the requested kinds.
    pub kinds: [u8; 8],
    /// The window's start, fixed by the first page.
    pub active_since_ms: i64,
    /// Last entry handed out: its activity time and storage key.
    pub last_activity_ms: i64,
    pub key: String,
}

impl ListCursor {
    pub fn seal(&self, sealer: &CursorSealer) -> String {
        let mut p = Vec::with_capacity(25 + self.key.len());
        p.push(VERSION);
        p.extend_from_slice(&self.kinds);
        p.extend_from_slice(&self.active_since_ms.to_be_bytes());
        p.extend_from_slice(&self.last_activity_ms.to_be_bytes());
        p.extend_from_slice(self.key.as_bytes());
        sealer.seal(&p)
    }

    pub fn open(sealer: &CursorSealer, text: &str) -> Result<Self, ApiError> {
        let bad = || {
            ApiError::invalid(
                "cursor",
                "is malformed or was altered; use a next_cursor as returned",
            )
        };
        let p = sealer.open(text).ok_or_else(bad)?;
        if p.len() < 25 || p[0] != VERSION {
            return Err(bad());
        }
        let take8 = |at: usize| -> [u8; 8] { p[at..at + 8].try_into().expect("length checked") };
        Ok(Self {
            kinds: take8(1),
            active_since_ms: i64::from_be_bytes(take8(9)),
            last_activity_ms: i64::from_be_bytes(take8(17)),
            key: String::from_utf8(p[25..].to_vec()).map_err(|_| bad())?,
        })
    }
}
