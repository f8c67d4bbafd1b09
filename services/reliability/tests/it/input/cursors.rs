//! Cursor generators: genuine, foreign, other-key, altered, truncated, re-padded, garbage.

use super::fields::text_of;
use super::support::sealer;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use proptest::prelude::*;
use roaming_runtime::CursorSealer;

fn other_sealer() -> CursorSealer {
    CursorSealer::derive(b"another deployment's secret")
}

/// How a generated request's cursor is made.
#[derive(Debug, Clone)]
pub enum CursorChoice {
    None,
    /// As the server would hand it out for this very request.
    Genuine(i64),
    /// Any text.
    Text(String),
    /// base64url of random bytes (a random MAC).
    RandomBase64(Vec<u8>),
    /// Sealed with another deployment's key.
    OtherKey(i64),
    /// A random payload under this server's key.
    SealedPayload(Vec<u8>),
    /// A genuine cursor with one character changed.
    Altered(i64, usize),
    /// A genuine cursor cut short.
    Truncated(i64, usize),
    /// A genuine cursor in standard base64 with padding.
    Repadded(i64),
    /// Made for another request shape (0: conversation, 1: direction / types, 2: filters /
    /// window).
    Foreign(u8, i64),
}

pub fn cursor_choice() -> BoxedStrategy<CursorChoice> {
    prop_oneof![
        6 => Just(CursorChoice::None),
        4 => any::<i64>().prop_map(CursorChoice::Genuine),
        1 => text_of(1..=60, true).prop_map(CursorChoice::Text),
        1 => prop::collection::vec(any::<u8>(), 1..64).prop_map(CursorChoice::RandomBase64),
        1 => any::<i64>().prop_map(CursorChoice::OtherKey),
        1 => prop::collection::vec(any::<u8>(), 0..60).prop_map(CursorChoice::SealedPayload),
        1 => (any::<i64>(), any::<usize>()).prop_map(|(p, i)| CursorChoice::Altered(p, i)),
        1 => (any::<i64>(), any::<usize>()).prop_map(|(p, i)| CursorChoice::Truncated(p, i)),
        1 => any::<i64>().prop_map(CursorChoice::Repadded),
        3 => (0u8..3, any::<i64>()).prop_map(|(k, p)| CursorChoice::Foreign(k, p)),
    ]
    .boxed()
}

/// Materialises `choice`, given how to seal a genuine cursor for the request (`genuine`) and
/// for a variant of it (`foreign`). Returns the cursor and whether it is a fault.
pub fn make_cursor(
    choice: &CursorChoice,
    genuine: impl Fn(&CursorSealer, i64) -> Option<String>,
    foreign: impl Fn(u8, i64) -> Option<String>,
) -> (String, bool) {
    let s = sealer();
    let garbage = || ("definitely-not-a-cursor".to_owned(), true);
    let altered = |c: String, i: usize| {
        let mut b = c.into_bytes();
        let at = i % b.len();
        b[at] = if b[at] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).unwrap()
    };
    match choice {
        CursorChoice::None => (String::new(), false),
        CursorChoice::Genuine(p) => genuine(&s, *p).map(|c| (c, false)).unwrap_or_else(garbage),
        CursorChoice::Text(t) => (t.clone(), s.open(t).is_none()),
        CursorChoice::RandomBase64(b) => (URL_SAFE_NO_PAD.encode(b), true),
        CursorChoice::OtherKey(p) => genuine(&other_sealer(), *p)
            .map(|c| (c, true))
            .unwrap_or_else(garbage),
        CursorChoice::SealedPayload(b) => (s.seal(b), true),
        CursorChoice::Altered(p, i) => genuine(&s, *p)
            .map(|c| (altered(c, *i), true))
            .unwrap_or_else(garbage),
        CursorChoice::Truncated(p, i) => genuine(&s, *p)
            .map(|c| {
                let n = 1 + i % (c.len() - 1);
                (c[..n].to_owned(), true)
            })
            .unwrap_or_else(garbage),
        CursorChoice::Repadded(p) => genuine(&s, *p)
            .map(|c| {
                let bytes = URL_SAFE_NO_PAD.decode(&c).unwrap();
                let std = STANDARD.encode(bytes);
                // Identical when the standard form needs neither padding nor '+' / '/'.
                let fault = std != c;
                (std, fault)
            })
            .unwrap_or_else(garbage),
        CursorChoice::Foreign(k, p) => foreign(*k, *p).map(|c| (c, true)).unwrap_or_else(garbage),
    }
}
