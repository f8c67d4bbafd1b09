//! Conversation-list cursors, all of their logic: a keyset position `(last_activity_ms,
//! conversation)` plus the window and kinds of the first page, so that every page of one
//! listing uses the same ones, and the checks that refuse a cursor made for another listing.

use roaming_domain::ConversationKind;
use roaming_runtime::cursor::fingerprint;
use roaming_runtime::{ApiError, CursorSealer};

const VERSION: u8 = 2;

/// A list cursor's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListCursor {
    /// Fingerprint of the requested kinds.
    pub kinds: [u8; 8],
    /// The window's start, fixed by the first page.
    pub active_since_ms: i64,
    /// Last entry handed out: its activity time (pinned-only listings: when it was pinned)
    /// and storage key.
    pub last_activity_ms: i64,
    pub key: String,
}

/// The fingerprint of a listing's filters: its kinds (in any order), and, when set, the
/// pinned-only order and the mark (so a cursor of one listing opens on no other).
pub(crate) fn kinds_fingerprint(
    kinds: &[ConversationKind],
    pinned_only: bool,
    mark: Option<&str>,
) -> [u8; 8] {
    let mut numbers: Vec<u8> = kinds.iter().map(|k| k.as_i16() as u8).collect();
    numbers.sort_unstable();
    if !pinned_only && mark.is_none() {
        // The fingerprint cursors had before pins and marks: those cursors still open.
        return fingerprint(&[b"kinds", &numbers]);
    }
    fingerprint(&[
        b"kinds",
        &numbers,
        &[u8::from(pinned_only)],
        mark.unwrap_or("").as_bytes(),
    ])
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

    /// Opens `text` for a listing of `kinds` whose request said `active_since_ms` (0: none),
    /// refusing a cursor made for other kinds or another window.
    pub fn resume(
        sealer: &CursorSealer,
        text: &str,
        kinds: [u8; 8],
        active_since_ms: i64,
    ) -> Result<Self, ApiError> {
        let cursor = Self::open(sealer, text)?;
        if cursor.kinds != kinds {
            return Err(ApiError::invalid(
                "cursor",
                "was made for other types or filters",
            ));
        }
        if active_since_ms != 0 && active_since_ms != cursor.active_since_ms {
            return Err(ApiError::invalid(
                "cursor",
                "was made for another active_since_ms",
            ));
        }
        Ok(cursor)
    }
}

/// Opens any list cursor this server made, checking only its seal and shape (the fuzz
/// targets' entry point).
pub fn open(sealer: &CursorSealer, text: &str) -> Result<(), ApiError> {
    ListCursor::open(sealer, text).map(|_| ())
}
