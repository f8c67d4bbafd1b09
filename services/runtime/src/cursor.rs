//! Sealed cursors: opaque to callers, and any change to one is detected.
//!
//! A cursor is `base64url(payload || tag)` where `tag` is a truncated HMAC-SHA256 of the
//! payload under a key every replica derives from the same setting, so a cursor made by one
//! replica opens on any other, and a malformed or altered one opens on none.
//!
//! The key comes from `ROAMING_CURSOR_KEY`, a secret of its own ([`CursorSealer::from_settings`]).
//! Without it, an HS256 server derives it from its JWT secret (rotating that secret then
//! invalidates every cursor); a public-key server refuses to start, because a key derived from
//! a public key is public and anybody could seal cursors with it. During a rotation
//! `ROAMING_CURSOR_KEY_PREVIOUS` still opens cursors; nothing is ever sealed with it.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

const TAG_LEN: usize = 16;

/// The shortest `ROAMING_CURSOR_KEY` (and `ROAMING_CURSOR_KEY_PREVIOUS`), in bytes: as long as
/// the HMAC-SHA256 output (RFC 2104 §3; RFC 7518 §3.2 asks the same of HS256 keys).
pub const MIN_CURSOR_KEY_BYTES: usize = 32;

/// A bad cursor-key setting, reported at start-up.
#[derive(Debug, thiserror::Error)]
pub enum CursorKeyError {
    /// A public-key server was given no cursor key.
    #[error(
        "ROAMING_CURSOR_KEY is required with ROAMING_JWT_PUBLIC_KEY: a key derived from a public \
         key is public, so anybody could forge cursors. Set ROAMING_CURSOR_KEY to a random secret \
         of at least {MIN_CURSOR_KEY_BYTES} bytes (e.g. `openssl rand -base64 48`), the same on \
         every replica"
    )]
    Missing,
    /// A key setting is shorter than [`MIN_CURSOR_KEY_BYTES`].
    #[error(
        "{setting} must be at least {min} bytes (it has {len}); use a random secret, e.g. \
         `openssl rand -base64 48`",
        min = MIN_CURSOR_KEY_BYTES
    )]
    Short {
        /// The setting's name.
        setting: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// The previous key was given without a current one.
    #[error(
        "ROAMING_CURSOR_KEY_PREVIOUS is set without ROAMING_CURSOR_KEY: the previous key only \
         opens cursors during a rotation; set ROAMING_CURSOR_KEY to the new key"
    )]
    PreviousWithoutCurrent,
}

/// Where a sealer's key came from (for the start-up log; never the key itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorKeySource {
    /// `ROAMING_CURSOR_KEY`.
    CursorKey,
    /// Derived from `ROAMING_JWT_SECRET`.
    JwtSecret,
    /// Given directly (tests, fuzzing).
    Material,
}

/// Seals and opens cursors.
#[derive(Clone)]
pub struct CursorSealer {
    key: [u8; 32],
    /// Opens cursors too (a rotation's old key); never seals.
    previous: Option<[u8; 32]>,
    source: CursorKeySource,
}

impl std::fmt::Debug for CursorSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CursorSealer")
            .field("source", &self.source)
            .field("previous", &self.previous.is_some())
            .finish_non_exhaustive()
    }
}

fn derive_key(material: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"roaming cursor key v1\0");
    hasher.update(material);
    hasher.finalize().into()
}

fn mac(key: &[u8; 32], payload: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    mac.update(payload);
    mac
}

impl CursorSealer {
    /// A sealer whose key is derived from `material`. Every source goes through the same
    /// derivation, so `ROAMING_CURSOR_KEY_PREVIOUS` set to the old `ROAMING_JWT_SECRET` keeps
    /// the cursors of an HS256 server that had no cursor key open while it moves to one.
    pub fn derive(material: &[u8]) -> Self {
        Self {
            key: derive_key(material),
            previous: None,
            source: CursorKeySource::Material,
        }
    }

    /// The sealer of a server's settings: `ROAMING_CURSOR_KEY` (with
    /// `ROAMING_CURSOR_KEY_PREVIOUS` opening only) when set; otherwise one derived from the
    /// HS256 `jwt_secret`. A public-key server (`jwt_secret` `None`) must have a cursor key.
    pub fn from_settings(
        cursor_key: Option<&str>,
        previous: Option<&str>,
        jwt_secret: Option<&str>,
    ) -> Result<Self, CursorKeyError> {
        let checked = |setting: &'static str, key: &str| {
            if key.len() < MIN_CURSOR_KEY_BYTES {
                Err(CursorKeyError::Short {
                    setting,
                    len: key.len(),
                })
            } else {
                Ok(derive_key(key.as_bytes()))
            }
        };
        match (cursor_key, previous, jwt_secret) {
            (Some(key), previous, _) => Ok(Self {
                key: checked("ROAMING_CURSOR_KEY", key)?,
                previous: previous
                    .map(|p| checked("ROAMING_CURSOR_KEY_PREVIOUS", p))
                    .transpose()?,
                source: CursorKeySource::CursorKey,
            }),
            (None, Some(_), _) => Err(CursorKeyError::PreviousWithoutCurrent),
            (None, None, Some(secret)) => Ok(Self {
                key: derive_key(secret.as_bytes()),
                previous: None,
                source: CursorKeySource::JwtSecret,
            }),
            (None, None, None) => Err(CursorKeyError::Missing),
        }
    }

    /// Where the key came from.
    pub fn source(&self) -> CursorKeySource {
        self.source
    }

    /// Whether a previous key also opens cursors.
    pub fn has_previous(&self) -> bool {
        self.previous.is_some()
    }

    /// The opaque text form of `payload`, sealed with the current key.
    pub fn seal(&self, payload: &[u8]) -> String {
        let full = mac(&self.key, payload).finalize().into_bytes();
        let mut bytes = payload.to_vec();
        bytes.extend_from_slice(&full[..TAG_LEN]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The payload of a cursor this sealer made (with the current or the previous key), or
    /// `None` for anything else.
    pub fn open(&self, cursor: &str) -> Option<Vec<u8>> {
        let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
        if bytes.len() < TAG_LEN {
            return None;
        }
        let (payload, tag) = bytes.split_at(bytes.len() - TAG_LEN);
        // verify_truncated_left compares in constant time.
        let opens = |key: &[u8; 32]| mac(key, payload).verify_truncated_left(tag).is_ok();
        (opens(&self.key) || self.previous.as_ref().is_some_and(opens)).then(|| payload.to_vec())
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

    const K1: &str = "cursor-key-one-0123456789abcdef0123456789";
    const K2: &str = "cursor-key-two-0123456789abcdef0123456789";
    const JWT: &str = "jwt-secret-0123456789abcdef0123456789";

    #[test]
    fn a_public_key_server_needs_a_cursor_key_and_short_keys_are_refused() {
        let missing = CursorSealer::from_settings(None, None, None).unwrap_err();
        assert!(matches!(missing, CursorKeyError::Missing));
        let text = missing.to_string();
        assert!(
            text.contains("ROAMING_CURSOR_KEY") && text.contains("ROAMING_JWT_PUBLIC_KEY"),
            "{text}"
        );
        let short = "k".repeat(MIN_CURSOR_KEY_BYTES - 1);
        for (key, previous, setting) in [
            (Some(short.as_str()), None, "ROAMING_CURSOR_KEY"),
            (
                Some(K1),
                Some(short.as_str()),
                "ROAMING_CURSOR_KEY_PREVIOUS",
            ),
        ] {
            let text = CursorSealer::from_settings(key, previous, None)
                .unwrap_err()
                .to_string();
            assert!(text.starts_with(setting), "{text}");
            assert!(text.contains("at least 32 bytes (it has 31)"), "{text}");
            assert!(!text.contains(&short), "the key is not echoed: {text}");
        }
        assert!(matches!(
            CursorSealer::from_settings(None, Some(K1), Some(JWT)).unwrap_err(),
            CursorKeyError::PreviousWithoutCurrent
        ));
        let exactly = "k".repeat(MIN_CURSOR_KEY_BYTES);
        assert!(CursorSealer::from_settings(Some(&exactly), None, None).is_ok());
    }

    #[test]
    fn the_previous_key_opens_but_never_seals() {
        let old = CursorSealer::from_settings(Some(K1), None, None).unwrap();
        let rotating = CursorSealer::from_settings(Some(K2), Some(K1), None).unwrap();
        let new = CursorSealer::from_settings(Some(K2), None, None).unwrap();
        let sealed_before = old.seal(b"before");
        assert_eq!(
            rotating.open(&sealed_before).as_deref(),
            Some(&b"before"[..])
        );
        let sealed_during = rotating.seal(b"during");
        assert!(
            old.open(&sealed_during).is_none(),
            "sealed with the new key"
        );
        assert_eq!(new.open(&sealed_during).as_deref(), Some(&b"during"[..]));
        assert!(
            new.open(&sealed_before).is_none(),
            "the old key was dropped"
        );
    }

    #[test]
    fn with_a_cursor_key_the_jwt_secret_does_not_matter() {
        let a = CursorSealer::from_settings(Some(K1), None, Some(JWT)).unwrap();
        let b = CursorSealer::from_settings(
            Some(K1),
            None,
            Some("another-jwt-secret-0123456789abcdef"),
        )
        .unwrap();
        let c = CursorSealer::from_settings(Some(K1), None, None).unwrap();
        let cursor = a.seal(b"p");
        assert!(b.open(&cursor).is_some() && c.open(&cursor).is_some());
        assert_eq!(a.source(), CursorKeySource::CursorKey);
        // Without one, the key is derived from the JWT secret, as before cursor keys existed.
        let derived = CursorSealer::from_settings(None, None, Some(JWT)).unwrap();
        assert_eq!(derived.source(), CursorKeySource::JwtSecret);
        assert!(
            CursorSealer::derive(JWT.as_bytes())
                .open(&derived.seal(b"p"))
                .is_some()
        );
        assert!(derived.open(&cursor).is_none());
        // Moving such a server onto a cursor key: the old secret as the previous key.
        let moved = CursorSealer::from_settings(Some(K1), Some(JWT), Some(JWT)).unwrap();
        assert!(moved.open(&derived.seal(b"p")).is_some());
    }
}
