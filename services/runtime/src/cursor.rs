//! Sealed cursors: opaque to callers, and any change to one is detected.
//!
//! A cursor is `base64url(payload || tag)` where `tag` is a truncated HMAC-SHA256 of the
//! payload under a key every replica derives from the same setting, so a cursor made by one
//! replica opens on any other, and a malformed or altered one opens on none.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

const TAG_LEN: usize = 16;

/// Seals and opens cursors.
#[derive(Clone)]
pub struct CursorSealer {
    key: [u8; 32],
}

impl std::fmt::Debug for CursorSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorSealer(..)")
    }
}

impl CursorSealer {
    /// A sealer whose key is derived from `material` (the server's signing-key setting).
    pub fn derive(material: &[u8]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"roaming cursor key v1\0");
        hasher.update(material);
        Self {
            key: hasher.finalize().into(),
        }
    }

    fn tag(&self, payload: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("any key length");
        mac.update(payload);
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        tag
    }

    /// The opaque text form of `payload`.
    pub fn seal(&self, payload: &[u8]) -> String {
        let mut bytes = payload.to_vec();
        bytes.extend_from_slice(&self.tag(payload));
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The payload of a cursor this sealer made, or `None` for anything else.
    pub fn open(&self, cursor: &str) -> Option<Vec<u8>> {
        let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
        if bytes.len() < TAG_LEN {
            return None;
        }
        let (payload, tag) = bytes.split_at(bytes.len() - TAG_LEN);
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("any key length");
        mac.update(payload);
        // verify_truncated_left compares in constant time.
        mac.verify_truncated_left(tag).ok()?;
        Some(payload.to_vec())
    }
}

/// A short fingerprint of `parts`, to bind a cursor to its request's shape.
pub fn fingerprint(parts: &[&[u8]]) -> [u8; 8] {
    let mut hasher = Sha256::new();
    for p in parts {
        hasher.update((p.len() as u64).to_le_bytes());
        hasher.update(p);
    }
    let full = hasher.finalize();
    let mut out = [0u8; 8];
    out.copy_from_slice(&full[..8]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_cursor_opens_and_an_altered_one_does_not() {
        let s = CursorSealer::derive(b"secret");
        let c = s.seal(b"payload");
        assert_eq!(s.open(&c).as_deref(), Some(&b"payload"[..]));
        let mut altered = c.clone().into_bytes();
        altered[2] = if altered[2] == b'A' { b'B' } else { b'A' };
        assert!(s.open(std::str::from_utf8(&altered).unwrap()).is_none());
        assert!(s.open("not a cursor!").is_none());
        assert!(s.open("").is_none());
        assert!(CursorSealer::derive(b"other").open(&c).is_none());
    }
}
