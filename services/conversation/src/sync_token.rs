//! Sync tokens: where a device's change feed stands, sealed like cursors (opaque, and any
//! change to one is detected) and bound to its user.
//!
//! A token carries the snapshot the next delta is relative to (`since`: none before the first
//! snapshot is complete) and, while a call's pages are being read, the snapshot of that
//! call's first page (`target`, which becomes the next `since` when the call ends) and the
//! keyset position after the last change handed out.

use roaming_domain::UserId;
use roaming_runtime::cursor::fingerprint;
use roaming_runtime::{ApiError, CursorSealer};

const VERSION: u8 = 1;

/// A database snapshot (text form of `pg_snapshot`, `xmin:xmax:xip,...`) and when it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub snapshot: String,
    pub at_ms: i64,
}

/// A sync token's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncToken {
    /// Fingerprint of the user it was made for.
    pub user: [u8; 8],
    /// What the delta is relative to; `None`: a snapshot.
    pub since: Option<Stamp>,
    /// A call in progress: its first page's snapshot and the position after its last change.
    pub call: Option<(Stamp, i64, String)>,
}

/// The fingerprint binding a token to `user`.
pub fn user_fingerprint(user: &UserId) -> [u8; 8] {
    fingerprint(&[b"sync user", user.as_str().as_bytes()])
}

fn put_text(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u32).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

fn put_stamp(out: &mut Vec<u8>, stamp: &Option<Stamp>) {
    match stamp {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            out.extend_from_slice(&s.at_ms.to_be_bytes());
            put_text(out, &s.snapshot);
        }
    }
}

/// Reads a payload front to back; any shortfall is a malformed token.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn i64(&mut self) -> Option<i64> {
        self.take(8)
            .map(|b| i64::from_be_bytes(b.try_into().expect("8 bytes")))
    }
    fn text(&mut self) -> Option<String> {
        let len = u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")) as usize;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
    fn stamp(&mut self) -> Option<Option<Stamp>> {
        match self.u8()? {
            0 => Some(None),
            1 => {
                let at_ms = self.i64()?;
                let snapshot = self.text()?;
                is_snapshot_text(&snapshot).then_some(Some(Stamp { snapshot, at_ms }))
            }
            _ => None,
        }
    }
}

/// `xmin:xmax:xip,...` with decimal numbers: what the server wrote (defence in depth: the seal
/// already refuses anything else).
fn is_snapshot_text(text: &str) -> bool {
    let parts: Vec<&str> = text.split(':').collect();
    parts.len() == 3
        && parts[..2]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && parts[2]
            .split(',')
            .all(|p| p.is_empty() || p.bytes().all(|b| b.is_ascii_digit()))
}

impl SyncToken {
    /// The opaque text form.
    pub fn seal(&self, sealer: &CursorSealer) -> String {
        let mut p = vec![VERSION];
        p.extend_from_slice(&self.user);
        put_stamp(&mut p, &self.since);
        match &self.call {
            None => p.push(0),
            Some((target, at, key)) => {
                p.push(1);
                put_stamp(&mut p, &Some(target.clone()));
                p.extend_from_slice(&at.to_be_bytes());
                put_text(&mut p, key);
            }
        }
        sealer.seal(&p)
    }

    /// Opens a token made for `user`.
    pub fn open(sealer: &CursorSealer, text: &str, user: &UserId) -> Result<Self, ApiError> {
        let bad = || {
            ApiError::invalid(
                "sync_token",
                "is malformed or was altered; use a next_sync_token as returned",
            )
        };
        let payload = sealer.open(text).ok_or_else(bad)?;
        let mut r = Reader(&payload);
        if r.u8() != Some(VERSION) {
            return Err(bad());
        }
        let owner: [u8; 8] = r.take(8).ok_or_else(bad)?.try_into().expect("8 bytes");
        let since = r.stamp().ok_or_else(bad)?;
        let call = match r.u8().ok_or_else(bad)? {
            0 => None,
            1 => {
                let target = r.stamp().ok_or_else(bad)?.ok_or_else(bad)?;
                let at = r.i64().ok_or_else(bad)?;
                let key = r.text().ok_or_else(bad)?;
                Some((target, at, key))
            }
            _ => return Err(bad()),
        };
        if !r.0.is_empty() {
            return Err(bad());
        }
        if owner != user_fingerprint(user) {
            return Err(ApiError::invalid("sync_token", "was made for another user"));
        }
        Ok(Self {
            user: owner,
            since,
            call,
        })
    }
}

/// Opens any sync token this server made for anybody, checking only its seal and shape (the
/// fuzz targets' entry point).
pub fn open(sealer: &CursorSealer, text: &str) -> Result<(), ApiError> {
    let user = UserId::parse("user", "fuzz").expect("a valid id");
    SyncToken::open(sealer, text, &user).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> UserId {
        UserId::parse("u", id).unwrap()
    }

    #[test]
    fn a_token_round_trips_and_is_bound_to_its_user() {
        let sealer = CursorSealer::derive(b"k");
        let token = SyncToken {
            user: user_fingerprint(&user("alice")),
            since: Some(Stamp {
                snapshot: "100:105:101,103".into(),
                at_ms: 7,
            }),
            call: Some((
                Stamp {
                    snapshot: "110:110:".into(),
                    at_ms: 9,
                },
                1_800_000_000_000,
                "p:alice:bob".into(),
            )),
        };
        let text = token.seal(&sealer);
        assert_eq!(
            SyncToken::open(&sealer, &text, &user("alice")).unwrap(),
            token
        );
        let err = SyncToken::open(&sealer, &text, &user("bob")).unwrap_err();
        assert!(err.to_string().contains("another user"), "{err}");
        assert!(SyncToken::open(&sealer, "garbage", &user("alice")).is_err());
        assert!(SyncToken::open(&CursorSealer::derive(b"x"), &text, &user("alice")).is_err());
    }
}
