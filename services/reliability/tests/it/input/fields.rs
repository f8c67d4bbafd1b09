//! Field generators: a value and the fields it breaks (ids, enums, refs, id lists, msg ids, text).

use proptest::prelude::*;
use roaming_proto::common::v1::ConversationRef;

/// The id rule: 1-64 characters of `[A-Za-z0-9_.-]`.
pub(crate) fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Strings built from a seed in one step: proptest's regex and `any::<String>()` strategies
/// build a value tree per character, which dominates the run time of a debug build.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const ID_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-";

/// `len` characters of `alphabet`.
fn from_alphabet(seed: u64, len: usize, alphabet: &[u8]) -> String {
    let mut st = seed;
    (0..len)
        .map(|_| alphabet[(splitmix(&mut st) % alphabet.len() as u64) as usize] as char)
        .collect()
}

/// `len` arbitrary characters: ASCII (controls included), Latin-1, other scripts, emoji,
/// the odd format character; NUL only when `nul`.
fn any_text(seed: u64, len: usize, nul: bool) -> String {
    let mut st = seed;
    (0..len)
        .map(|_| {
            let r = splitmix(&mut st);
            let c = match r % 6 {
                0 | 1 => (r >> 8) % 0x80,
                2 => 0x80 + (r >> 8) % 0x180,
                3 => 0x370 + (r >> 8) % 0x2000,
                4 => 0x4E00 + (r >> 8) % 0x5000,
                _ => [0x1F600, 0x200B, 0xFEFF, 0x202E, 0x10FFFD][((r >> 8) % 5) as usize],
            } as u32;
            match char::from_u32(c) {
                Some('\0') if !nul => 'z',
                Some(c) => c,
                None => '?',
            }
        })
        .collect()
}

pub fn ids_of(len: std::ops::RangeInclusive<usize>) -> BoxedStrategy<String> {
    (any::<u64>(), len)
        .prop_map(|(seed, n)| from_alphabet(seed, n, ID_CHARS))
        .boxed()
}

pub fn text_of(len: std::ops::RangeInclusive<usize>, nul: bool) -> BoxedStrategy<String> {
    (any::<u64>(), len)
        .prop_map(move |(seed, n)| any_text(seed, n, nul))
        .boxed()
}

pub fn good_id() -> BoxedStrategy<String> {
    prop_oneof![
        3 => prop::sample::select(vec!["alice", "bob", "carol", "team", "u-1", "a.b_c", "x"])
            .prop_map(String::from),
        1 => ids_of(1..=64),
    ]
    .boxed()
}

pub fn bad_id() -> BoxedStrategy<String> {
    let odd = vec![
        ' ', ':', '/', '@', '\0', '\n', '\t', 'é', '😀', '\u{7f}', '\u{200b}', '*', ',', '\'', '"',
        '\\', '%', '+', 'ß', 'İ', '\u{feff}',
    ];
    prop_oneof![
        Just(String::new()),
        ids_of(65..=80),
        (ids_of(0..=8), prop::sample::select(odd), ids_of(0..=8))
            .prop_map(|(a, c, b)| format!("{a}{c}{b}")),
        text_of(0..=20, true).prop_filter("not an id", |s| !is_id(s)),
    ]
    .boxed()
}

/// An enum value outside `valid` (0 included unless valid).
pub fn bad_enum(valid: std::ops::RangeInclusive<i32>) -> BoxedStrategy<i32> {
    let (lo, hi) = (*valid.start(), *valid.end());
    let mut options = vec![
        ((hi + 1)..=(hi + 5)).boxed(),
        ((hi + 1)..=i32::MAX).boxed(),
        (i32::MIN..0).boxed(),
    ];
    if lo > 0 {
        options.push(Just(0).boxed());
    }
    proptest::strategy::Union::new(options).boxed()
}

/// A `ConversationRef` field of a user-scoped request.
pub fn conversation_field() -> BoxedStrategy<(Option<ConversationRef>, Vec<String>)> {
    conversation_field_weighted(12)
}

/// A `ConversationRef` field, valid `valid` times in `valid + 4` (for requests with no other
/// field to break).
pub fn conversation_field_weighted(
    valid: u32,
) -> BoxedStrategy<(Option<ConversationRef>, Vec<String>)> {
    let f = |s: &str| vec![s.to_owned()];
    prop_oneof![
        valid => (1..=3i32, good_id()).prop_map(|(t, id)| (Some(ConversationRef { r#type: t, id }), vec![])),
        1 => Just((None, f("conversation"))),
        1 => (bad_enum(1..=3), good_id()).prop_map(move |(t, id)| (
            Some(ConversationRef { r#type: t, id }), vec!["conversation.type".to_owned()])),
        1 => (1..=3i32, bad_id()).prop_map(move |(t, id)| (
            Some(ConversationRef { r#type: t, id }), vec!["conversation.id".to_owned()])),
        1 => (bad_enum(1..=3), bad_id()).prop_map(move |(t, id)| (
            Some(ConversationRef { r#type: t, id }),
            vec!["conversation.type".to_owned(), "conversation.id".to_owned()])),
    ]
    .boxed()
}

/// The `ConversationRef` of a membership request (GROUP or CHATROOM only).
pub fn group_field() -> BoxedStrategy<(Option<ConversationRef>, Vec<String>)> {
    let t = |s: &str| vec![s.to_owned()];
    prop_oneof![
        10 => (2..=3i32, good_id()).prop_map(|(t, id)| (Some(ConversationRef { r#type: t, id }), vec![])),
        1 => Just((None, t("conversation"))),
        1 => (prop_oneof![Just(1), bad_enum(1..=3)], good_id()).prop_map(|(t, id)| (
            Some(ConversationRef { r#type: t, id }), vec!["conversation.type".to_owned()])),
        1 => (2..=3i32, bad_id()).prop_map(|(t, id)| (
            Some(ConversationRef { r#type: t, id }), vec!["conversation.id".to_owned()])),
    ]
    .boxed()
}

/// A list of user ids: (values, faults) for a field like `senders` or `user_ids`.
pub fn id_list(
    field: &'static str,
    min: usize,
    max: usize,
    bad_weight: u32,
) -> BoxedStrategy<(Vec<String>, Vec<String>)> {
    let entries = prop::collection::vec(
        prop_oneof![
            8 => good_id().prop_map(|v| (v, false)),
            bad_weight => bad_id().prop_map(|v| (v, true)),
        ],
        min..=max.min(min + 6),
    )
    .prop_map(move |v| {
        let faults = v
            .iter()
            .enumerate()
            .filter(|(_, (_, bad))| *bad)
            .map(|(i, _)| format!("{field}[{i}]"))
            .collect();
        (v.into_iter().map(|(s, _)| s).collect(), faults)
    });
    let too_many = ((max + 1)..=(max + 30), good_id())
        .prop_map(move |(n, id)| (vec![id; n], vec![field.to_owned()]));
    let mut options = vec![(12, entries.boxed()), (1, too_many.boxed())];
    if min > 0 {
        options.push((1, Just((Vec::new(), vec![field.to_owned()])).boxed()));
    }
    proptest::strategy::Union::new_weighted(options).boxed()
}

pub fn msg_id_field(field: String) -> BoxedStrategy<(String, Vec<String>)> {
    let bad = prop_oneof![
        prop::sample::select(vec![
            "0",
            "-1",
            "+1",
            " 1",
            "1 ",
            "1.0",
            "1e3",
            "0x10",
            "abc",
            "٣",
            "１",
            "99999999999999999999",
            "9223372036854775808",
            "1\0",
            "00",
        ])
        .prop_map(String::from),
        text_of(0..=24, true).prop_filter("not an id", |s| {
            s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || s.parse::<i64>().is_err()
        }),
        Just(String::new()),
    ];
    prop_oneof![
        4 => (1..=i64::MAX).prop_map(|n| (n.to_string(), vec![])),
        1 => Just(("007".to_owned(), vec![])),
        2 => bad.prop_map(move |v| (v, vec![field.clone()])),
    ]
    .boxed()
}

/// Text that is valid for `client_msg_id`, attribute keys and values: no NUL (PostgreSQL
/// text cannot hold one).
pub fn free_text(max_chars: usize) -> BoxedStrategy<String> {
    prop_oneof![
        6 => (any::<u64>(), 1..=12usize).prop_map(|(seed, n)| {
            let printable: Vec<u8> = (b' '..=b'~').collect();
            from_alphabet(seed, n, &printable)
        }),
        2 => text_of(1..=6, false),
        1 => Just("x".repeat(max_chars)),
        1 => Just("é".repeat(max_chars)),
    ]
    .boxed()
}

/// A string with a NUL somewhere.
pub fn with_nul() -> BoxedStrategy<String> {
    (ids_of(0..=6), ids_of(0..=6))
        .prop_map(|(a, b)| format!("{a}\0{b}"))
        .boxed()
}
