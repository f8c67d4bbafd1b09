//! Bad input (issue 7, item 7): property tests over every request of both services.
//!
//! Generators build mostly-invalid requests (invalid ids, unknown enum values, oversized
//! fields, NUL characters, malformed, altered, foreign and other-key cursors) and record which
//! fields they broke. Then:
//! - 10,000 cases per RPC (more with `ROAMING_RELIABILITY_LONG=1`) through the services' own
//!   validation (`roaming_history::fuzzing`, `roaming_conversation::fuzzing`): every refusal is
//!   INVALID_ARGUMENT naming a broken field (PERMISSION_DENIED where the caller lacks the role),
//!   every request with no broken field passes, nothing panics;
//! - a few hundred cases per RPC end to end through the real server: the server answers
//!   exactly what the validation said (same code, same message); valid ones answer OK,
//!   PERMISSION_DENIED or NOT_FOUND; never INTERNAL; rejected requests write nothing (table
//!   counts and content hashes compared);
//! - raw protobuf bodies no typed client can send (bad UTF-8 in every string field, broken
//!   wire format) never crash or reach the database;
//! - the fuzz corpus (`fuzz/corpus/<target>/`) replayed through the fuzz targets' bodies.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::{Buf, BufMut};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use rand::SeedableRng as _;
use roaming_conversation::ListSettings;
use roaming_proto::common::v1::ConversationRef;
use roaming_proto::conversation::v1 as cpb;
use roaming_proto::history::v1 as hpb;
use roaming_runtime::{Caller, CursorSealer};
use roaming_store::{Limits, UserId};
use roaming_testkit::{DAY_MS, SECRET, TestApp, peer};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::time::Instant;
use tonic::{Code, Status};

/// The test server's clock (TestApp's ManualClock starts here).
const NOW_MS: i64 = 1_800_000_000_000;

fn sealer() -> CursorSealer {
    CursorSealer::derive(SECRET.as_bytes())
}

fn other_sealer() -> CursorSealer {
    CursorSealer::derive(b"another deployment's secret")
}

fn defaults() -> ListSettings {
    ListSettings {
        page_size: 10,
        window_ms: 7 * DAY_MS,
    }
}

fn cases() -> u32 {
    if std::env::var_os("ROAMING_RELIABILITY_LONG").is_some() {
        100_000
    } else {
        10_000
    }
}

// ---------------------------------------------------------------------------------------
// Callers and expectations.

/// Who sends a generated request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    /// alice's own token.
    User,
    /// A service token acting for alice.
    ServiceAsUser,
    /// A service token naming nobody.
    ServiceAlone,
}

impl Who {
    fn caller(self) -> Caller {
        let alice = || Some(UserId::parse("sub", "alice").unwrap());
        match self {
            Who::User => Caller {
                subject: "alice".into(),
                is_service: false,
                act_as: alice(),
            },
            Who::ServiceAsUser => Caller {
                subject: "gateway".into(),
                is_service: true,
                act_as: alice(),
            },
            Who::ServiceAlone => Caller {
                subject: "gateway".into(),
                is_service: true,
                act_as: None,
            },
        }
    }
}

fn user_scoped_who() -> impl Strategy<Value = Who> {
    prop_oneof![
        16 => Just(Who::User),
        3 => Just(Who::ServiceAsUser),
        1 => Just(Who::ServiceAlone),
    ]
}

fn backend_who() -> impl Strategy<Value = Who> {
    prop_oneof![
        19 => Just(Who::ServiceAlone),
        1 => Just(Who::User),
    ]
}

/// What the services must answer.
#[derive(Debug, Clone, PartialEq)]
enum Expect {
    /// Valid.
    Pass,
    /// INVALID_ARGUMENT whose message starts with one of these (`field: ` or `field[`).
    Invalid(Vec<String>),
    /// PERMISSION_DENIED (the caller lacks the service role).
    Denied,
}

impl Expect {
    fn from_faults(faults: Vec<String>) -> Self {
        if faults.is_empty() {
            Expect::Pass
        } else {
            Expect::Invalid(faults)
        }
    }
}

/// A generated request with what it must get.
#[derive(Debug, Clone)]
struct Case<R> {
    req: R,
    who: Who,
    expect: Expect,
}

/// Whether `message` names `field` (as `field: rule`, or `field[..]` for map entries).
fn names(message: &str, field: &str) -> bool {
    message.starts_with(&format!("{field}: ")) || message.starts_with(&format!("{field}[\""))
}

/// Checks one verdict against its expectation; returns the named field, if any.
fn judge(result: &Result<(), Status>, expect: &Expect) -> Result<Option<String>, String> {
    match (expect, result) {
        (Expect::Pass, Ok(())) => Ok(None),
        (Expect::Invalid(fields), Err(s)) if s.code() == Code::InvalidArgument => {
            match fields.iter().find(|f| names(s.message(), f)) {
                Some(f) => Ok(Some(f.clone())),
                None => Err(format!("{:?} names none of {fields:?}", s.message())),
            }
        }
        (Expect::Denied, Err(s)) if s.code() == Code::PermissionDenied => Ok(Some("(role)".into())),
        (e, r) => Err(format!("expected {e:?}, got {r:?}")),
    }
}

// ---------------------------------------------------------------------------------------
// Field generators: (value, the fields it breaks).

fn is_id(s: &str) -> bool {
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

fn ids_of(len: std::ops::RangeInclusive<usize>) -> BoxedStrategy<String> {
    (any::<u64>(), len)
        .prop_map(|(seed, n)| from_alphabet(seed, n, ID_CHARS))
        .boxed()
}

fn text_of(len: std::ops::RangeInclusive<usize>, nul: bool) -> BoxedStrategy<String> {
    (any::<u64>(), len)
        .prop_map(move |(seed, n)| any_text(seed, n, nul))
        .boxed()
}

fn good_id() -> BoxedStrategy<String> {
    prop_oneof![
        3 => prop::sample::select(vec!["alice", "bob", "carol", "team", "u-1", "a.b_c", "x"])
            .prop_map(String::from),
        1 => ids_of(1..=64),
    ]
    .boxed()
}

fn bad_id() -> BoxedStrategy<String> {
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
fn bad_enum(valid: std::ops::RangeInclusive<i32>) -> BoxedStrategy<i32> {
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
fn conversation_field() -> BoxedStrategy<(Option<ConversationRef>, Vec<String>)> {
    let f = |s: &str| vec![s.to_owned()];
    prop_oneof![
        12 => (1..=3i32, good_id()).prop_map(|(t, id)| (Some(ConversationRef { r#type: t, id }), vec![])),
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
fn group_field() -> BoxedStrategy<(Option<ConversationRef>, Vec<String>)> {
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
fn id_list(
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

fn msg_id_field(field: String) -> BoxedStrategy<(String, Vec<String>)> {
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
fn free_text(max_chars: usize) -> BoxedStrategy<String> {
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
fn with_nul() -> BoxedStrategy<String> {
    (ids_of(0..=6), ids_of(0..=6))
        .prop_map(|(a, b)| format!("{a}\0{b}"))
        .boxed()
}

// ---------------------------------------------------------------------------------------
// AppendMessages.

fn new_message() -> BoxedStrategy<(hpb::NewMessage, Vec<&'static str>)> {
    let attributes = prop_oneof![
        12 => prop::collection::btree_map(free_text(12), prop_oneof![Just(String::new()), free_text(20)], 0..4)
            .prop_map(|m| (m, vec![])),
        1 => (33usize..40).prop_map(|n| ((0..n).map(|i| (format!("k{i}"), "v".to_owned())).collect(), vec!["attributes"])),
        1 => Just((BTreeMap::from([(String::new(), "v".to_owned())]), vec!["attributes"])),
        1 => (1025usize..1100).prop_map(|n| (BTreeMap::from([("k".repeat(n), "v".to_owned())]), vec!["attributes"])),
        1 => (1025usize..1100).prop_map(|n| (BTreeMap::from([("k".to_owned(), "v".repeat(n))]), vec!["attributes"])),
        1 => with_nul().prop_map(|s| (BTreeMap::from([(s, "v".to_owned())]), vec!["attributes"])),
        1 => with_nul().prop_map(|s| (BTreeMap::from([("k".to_owned(), s)]), vec!["attributes"])),
    ];
    let body = prop_oneof![
        12 => prop::collection::vec(any::<u8>(), 0..64).prop_map(|b| (b, vec![])),
        1 => Just((vec![0u8; 65536], vec![])),
        1 => (65537usize..66000).prop_map(|n| (vec![0xAB; n], vec!["body"])),
    ];
    let client_msg_id = prop_oneof![
        12 => free_text(64).prop_map(|s| (s, vec![])),
        1 => Just((String::new(), vec!["client_msg_id"])),
        1 => (65usize..80).prop_map(|n| ("é".repeat(n), vec!["client_msg_id"])),
        1 => with_nul().prop_map(|s| (s, vec!["client_msg_id"])),
    ];
    let kind = prop_oneof![
        10 => (1..=3i32).prop_map(|k| (k, vec![])),
        1 => bad_enum(1..=3).prop_map(|k| (k, vec!["conversation_type"])),
    ];
    let id = |name: &'static str| {
        prop_oneof![
            8 => good_id().prop_map(|v| (v, vec![])),
            1 => bad_id().prop_map(move |v| (v, vec![name])),
        ]
    };
    let message_type = prop_oneof![
        10 => (1..=8i32).prop_map(|k| (k, vec![])),
        1 => prop_oneof![9..=i32::MAX, i32::MIN..0].prop_map(|k| (k, vec!["type"])),
    ];
    (
        kind,
        id("sender"),
        id("recipient"),
        message_type,
        body,
        attributes,
        client_msg_id,
    )
        .prop_map(|(k, s, r, t, b, a, c)| {
            let mut faults = Vec::new();
            for f in [&k.1, &s.1, &r.1, &t.1, &b.1, &a.1, &c.1] {
                faults.extend(f.iter().copied());
            }
            (
                hpb::NewMessage {
                    conversation_type: k.0,
                    sender: s.0,
                    recipient: r.0,
                    r#type: t.0,
                    body: b.0,
                    attributes: a.0.into_iter().collect::<HashMap<_, _>>(),
                    client_msg_id: c.0,
                },
                faults,
            )
        })
        .boxed()
}

fn append_case() -> BoxedStrategy<Case<hpb::AppendMessagesRequest>> {
    let batch = prop_oneof![
        20 => prop::collection::vec(new_message(), 1..4).prop_map(|v| {
            let mut faults = Vec::new();
            let messages = v.into_iter().enumerate().map(|(i, (m, f))| {
                faults.extend(f.into_iter().map(|name| format!("messages[{i}].{name}")));
                m
            }).collect();
            (messages, faults)
        }),
        1 => Just((Vec::new(), vec!["messages".to_owned()])),
        1 => (101usize..=130, new_message()).prop_map(|(n, (mut m, _))| {
            m.body.truncate(16);
            (vec![m; n], vec!["messages".to_owned()])
        }),
    ];
    (batch, backend_who())
        .prop_map(|((messages, faults), who)| Case {
            req: hpb::AppendMessagesRequest { messages },
            who,
            expect: if who == Who::User {
                Expect::Denied
            } else {
                Expect::from_faults(faults)
            },
        })
        .boxed()
}

fn validate_append(case: &Case<hpb::AppendMessagesRequest>) -> Result<(), Status> {
    roaming_history::fuzzing::validate_append(
        case.req.clone(),
        &case.who.caller(),
        &Limits::default(),
    )
}

// ---------------------------------------------------------------------------------------
// Cursors.

/// How a generated request's cursor is made.
#[derive(Debug, Clone)]
enum CursorChoice {
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

fn cursor_choice() -> BoxedStrategy<CursorChoice> {
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
fn make_cursor(
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

// ---------------------------------------------------------------------------------------
// FetchHistory.

fn time_field(field: &'static str) -> BoxedStrategy<(Option<i64>, Vec<String>)> {
    prop_oneof![
        6 => Just((None, vec![])),
        4 => (0..=2 * NOW_MS).prop_map(|t| (Some(t), vec![])),
        1 => Just((Some(0), vec![])),
        1 => (i64::MIN..0).prop_map(move |t| (Some(t), vec![field.to_owned()])),
    ]
    .boxed()
}

fn fetch_case() -> BoxedStrategy<Case<hpb::FetchHistoryRequest>> {
    let direction = prop_oneof![
        10 => (0..=2i32).prop_map(|d| (d, vec![])),
        1 => bad_enum(0..=2).prop_map(|d| (d, vec!["direction".to_owned()])),
    ];
    let page_size = prop_oneof![
        10 => (0..=50u32).prop_map(|n| (n, vec![])),
        1 => (51..=u32::MAX).prop_map(|n| (n, vec!["page_size".to_owned()])),
    ];
    let max_pages = prop_oneof![
        10 => (0..=100u32).prop_map(|n| (n, vec![])),
        1 => (101..=u32::MAX).prop_map(|n| (n, vec!["max_pages".to_owned()])),
    ];
    let types = prop::collection::vec(
        prop_oneof![8 => (1..=8i32).prop_map(|t| (t, false)), 1 => bad_enum(1..=8).prop_map(|t| (t, true))],
        0..4,
    )
    .prop_map(|v| {
        let faults = v
            .iter()
            .enumerate()
            .filter(|(_, (_, bad))| *bad)
            .map(|(i, _)| format!("types[{i}]"))
            .collect::<Vec<_>>();
        (v.into_iter().map(|(t, _)| t).collect::<Vec<_>>(), faults)
    });
    let start = prop_oneof![
        5 => Just((String::new(), vec![])),
        1 => msg_id_field("start_msg_id".to_owned()).prop_filter("empty is no anchor", |(s, _)| !s.is_empty()),
    ];
    (
        (
            conversation_field(),
            direction,
            page_size,
            max_pages,
            time_field("start_time_ms"),
            time_field("end_time_ms"),
        ),
        (
            id_list("senders", 0, 20, 1),
            types,
            start,
            cursor_choice(),
            user_scoped_who(),
        ),
    )
        .prop_map(
            |((c, d, ps, mp, st, et), (senders, types, start, cursor, who))| {
                let mut faults: Vec<String> = Vec::new();
                for f in [&c.1, &d.1, &ps.1, &mp.1, &st.1, &et.1, &senders.1, &types.1] {
                    faults.extend(f.iter().cloned());
                }
                if let (Some(s), Some(e)) = (st.0, et.0) {
                    if s > e {
                        faults.push("start_time_ms".into());
                    }
                }
                let mut req = hpb::FetchHistoryRequest {
                    conversation: c.0,
                    direction: d.0,
                    start_msg_id: String::new(),
                    cursor: String::new(),
                    page_size: ps.0,
                    max_pages: mp.0,
                    start_time_ms: st.0,
                    end_time_ms: et.0,
                    senders: senders.0,
                    types: types.0,
                };
                let caller = who.caller();
                let limits = Limits::default();
                let base = req.clone();
                let genuine = |s: &CursorSealer, p: i64| {
                    roaming_history::fuzzing::fetch_cursor(base.clone(), &caller, &limits, s, p)
                        .ok()
                };
                let foreign = |k: u8, p: i64| {
                    let mut v = base.clone();
                    match k {
                        0 => {
                            let c = v.conversation.get_or_insert_with(Default::default);
                            c.id = format!("{}x", c.id);
                            if c.id.len() > 64 {
                                c.id = "y".into();
                            }
                        }
                        1 => v.direction = if v.direction == 2 { 1 } else { 2 },
                        _ => {
                            v.end_time_ms = Some(v.end_time_ms.map_or(NOW_MS * 3, |e| e + 1));
                        }
                    }
                    roaming_history::fuzzing::fetch_cursor(v, &caller, &limits, &sealer(), p).ok()
                };
                let (cursor_text, cursor_fault) = make_cursor(&cursor, genuine, foreign);
                req.cursor = cursor_text;
                req.start_msg_id = start.0;
                if !req.cursor.is_empty() && !req.start_msg_id.is_empty() {
                    faults.push("cursor".into());
                } else {
                    faults.extend(start.1);
                    if cursor_fault {
                        faults.push("cursor".into());
                    }
                }
                if who == Who::ServiceAlone {
                    faults = vec!["x-roaming-user".into()];
                }
                Case {
                    req,
                    who,
                    expect: Expect::from_faults(faults),
                }
            },
        )
        .boxed()
}

fn validate_fetch(case: &Case<hpb::FetchHistoryRequest>) -> Result<(), Status> {
    roaming_history::fuzzing::validate_fetch(
        case.req.clone(),
        &case.who.caller(),
        &Limits::default(),
        &sealer(),
    )
}

// ---------------------------------------------------------------------------------------
// RemoveMessages, RemoveMessagesBefore.

fn remove_case() -> BoxedStrategy<Case<hpb::RemoveMessagesRequest>> {
    let ids = prop_oneof![
        12 => prop::collection::vec(msg_id_field(String::new()), 1..6).prop_map(|v| {
            let faults = v.iter().enumerate().filter(|(_, (_, f))| !f.is_empty())
                .map(|(i, _)| format!("msg_ids[{i}]")).collect::<Vec<_>>();
            (v.into_iter().map(|(s, _)| s).collect::<Vec<_>>(), faults)
        }),
        1 => Just((Vec::new(), vec!["msg_ids".to_owned()])),
        1 => (51usize..80).prop_map(|n| (vec!["1".to_owned(); n], vec!["msg_ids".to_owned()])),
    ];
    (conversation_field(), ids, user_scoped_who())
        .prop_map(|(c, ids, who)| {
            let mut faults = c.1;
            faults.extend(ids.1);
            if who == Who::ServiceAlone {
                faults = vec!["x-roaming-user".into()];
            }
            Case {
                req: hpb::RemoveMessagesRequest {
                    conversation: c.0,
                    msg_ids: ids.0,
                },
                who,
                expect: Expect::from_faults(faults),
            }
        })
        .boxed()
}

fn validate_remove(case: &Case<hpb::RemoveMessagesRequest>) -> Result<(), Status> {
    roaming_history::fuzzing::validate_remove(&case.req, &case.who.caller(), &Limits::default())
}

fn remove_before_case() -> BoxedStrategy<Case<hpb::RemoveMessagesBeforeRequest>> {
    let time = prop_oneof![
        4 => (0..=i64::MAX).prop_map(|t| (t, vec![])),
        1 => Just((0, vec![])),
        2 => (i64::MIN..0).prop_map(|t| (t, vec!["before_time_ms".to_owned()])),
    ];
    (conversation_field(), time, user_scoped_who())
        .prop_map(|(c, t, who)| {
            let mut faults = c.1;
            faults.extend(t.1);
            if who == Who::ServiceAlone {
                faults = vec!["x-roaming-user".into()];
            }
            Case {
                req: hpb::RemoveMessagesBeforeRequest {
                    conversation: c.0,
                    before_time_ms: t.0,
                },
                who,
                expect: Expect::from_faults(faults),
            }
        })
        .boxed()
}

fn validate_remove_before(case: &Case<hpb::RemoveMessagesBeforeRequest>) -> Result<(), Status> {
    roaming_history::fuzzing::validate_remove_before(&case.req, &case.who.caller())
}

// ---------------------------------------------------------------------------------------
// ListConversations, RemoveConversation, AddMembers, RemoveMembers.

fn list_case() -> BoxedStrategy<Case<cpb::ListConversationsRequest>> {
    let page_size = prop_oneof![
        10 => (0..=50u32).prop_map(|n| (n, vec![])),
        1 => (51..=u32::MAX).prop_map(|n| (n, vec!["page_size".to_owned()])),
    ];
    let since = prop_oneof![
        4 => Just((0, vec![])),
        4 => (1..=i64::MAX).prop_map(|t| (t, vec![])),
        1 => (i64::MIN..0).prop_map(|t| (t, vec!["active_since_ms".to_owned()])),
    ];
    let types = prop::collection::vec(
        prop_oneof![8 => (1..=3i32).prop_map(|t| (t, false)), 1 => bad_enum(1..=3).prop_map(|t| (t, true))],
        0..5,
    )
    .prop_map(|v| {
        let faults = v
            .iter()
            .enumerate()
            .filter(|(_, (_, bad))| *bad)
            .map(|(i, _)| format!("types[{i}]"))
            .collect::<Vec<_>>();
        (v.into_iter().map(|(t, _)| t).collect::<Vec<_>>(), faults)
    });
    let key = prop_oneof![
        Just("p:alice:bob".to_owned()),
        Just("g:team".to_owned()),
        ids_of(0..=40),
    ];
    (
        page_size,
        since,
        types,
        cursor_choice(),
        any::<i64>(),
        key,
        user_scoped_who(),
    )
        .prop_map(|(ps, since, types, cursor, activity, key, who)| {
            let mut faults: Vec<String> = Vec::new();
            for f in [&ps.1, &since.1, &types.1] {
                faults.extend(f.iter().cloned());
            }
            let mut req = cpb::ListConversationsRequest {
                page_size: ps.0,
                cursor: String::new(),
                active_since_ms: since.0,
                types: types.0,
            };
            let base = req.clone();
            let limits = Limits::default();
            let genuine = |s: &CursorSealer, p: i64| {
                roaming_conversation::fuzzing::list_cursor(
                    &base,
                    defaults(),
                    &limits,
                    s,
                    NOW_MS,
                    activity.wrapping_add(p),
                    &key,
                )
                .ok()
            };
            let foreign = |k: u8, p: i64| {
                let mut v = base.clone();
                if k == 2 && base.active_since_ms > 0 {
                    v.active_since_ms = base.active_since_ms.wrapping_add(1).max(1);
                    if v.active_since_ms == base.active_since_ms {
                        v.active_since_ms -= 1;
                    }
                } else {
                    // Another set of kinds than the request's (empty means PEER and GROUP).
                    let mut kinds: Vec<i32> = if v.types.is_empty() {
                        vec![1, 2]
                    } else {
                        v.types.clone()
                    };
                    kinds.sort_unstable();
                    kinds.dedup();
                    v.types = if kinds == [3] { vec![1] } else { vec![3] };
                }
                roaming_conversation::fuzzing::list_cursor(
                    &v,
                    defaults(),
                    &limits,
                    &sealer(),
                    NOW_MS,
                    p,
                    &key,
                )
                .ok()
            };
            let (text, cursor_fault) = make_cursor(&cursor, genuine, foreign);
            req.cursor = text;
            if cursor_fault {
                faults.push("cursor".into());
            }
            if who == Who::ServiceAlone {
                faults = vec!["x-roaming-user".into()];
            }
            Case {
                req,
                who,
                expect: Expect::from_faults(faults),
            }
        })
        .boxed()
}

fn validate_list(case: &Case<cpb::ListConversationsRequest>) -> Result<(), Status> {
    roaming_conversation::fuzzing::validate_list(
        &case.req,
        &case.who.caller(),
        defaults(),
        &Limits::default(),
        &sealer(),
        NOW_MS,
    )
}

fn remove_conversation_case() -> BoxedStrategy<Case<cpb::RemoveConversationRequest>> {
    let scope = prop_oneof![
        10 => (0..=2i32).prop_map(|s| (s, false)),
        2 => bad_enum(0..=2).prop_map(|s| (s, true)),
    ];
    (
        conversation_field(),
        any::<bool>(),
        scope,
        user_scoped_who(),
    )
        .prop_map(|(c, delete, scope, who)| {
            // A service purging a group or chatroom for everyone names no user.
            let purges_group = scope.0 == 2
                && who == Who::ServiceAlone
                && c.0.as_ref().is_some_and(|c| c.r#type == 2 || c.r#type == 3);
            let expect = if scope.1 {
                Expect::Invalid(vec!["scope".into()])
            } else if scope.0 == 2 && who == Who::User {
                Expect::Denied
            } else if who == Who::ServiceAlone && !purges_group {
                Expect::Invalid(vec!["x-roaming-user".into()])
            } else {
                Expect::from_faults(c.1)
            };
            Case {
                req: cpb::RemoveConversationRequest {
                    conversation: c.0,
                    delete_messages: delete,
                    scope: scope.0,
                },
                who,
                expect,
            }
        })
        .boxed()
}

fn validate_remove_conversation(case: &Case<cpb::RemoveConversationRequest>) -> Result<(), Status> {
    roaming_conversation::fuzzing::validate_remove_conversation(&case.req, &case.who.caller())
}

fn members_case() -> BoxedStrategy<Case<(Option<ConversationRef>, Vec<String>)>> {
    (group_field(), id_list("user_ids", 1, 100, 1), backend_who())
        .prop_map(|(c, users, who)| {
            let mut faults = c.1;
            faults.extend(users.1);
            Case {
                req: (c.0, users.0),
                who,
                expect: if who == Who::User {
                    Expect::Denied
                } else {
                    Expect::from_faults(faults)
                },
            }
        })
        .boxed()
}

fn add_members_req(case: &Case<(Option<ConversationRef>, Vec<String>)>) -> cpb::AddMembersRequest {
    cpb::AddMembersRequest {
        conversation: case.req.0.clone(),
        user_ids: case.req.1.clone(),
    }
}

fn remove_members_req(
    case: &Case<(Option<ConversationRef>, Vec<String>)>,
) -> cpb::RemoveMembersRequest {
    cpb::RemoveMembersRequest {
        conversation: case.req.0.clone(),
        user_ids: case.req.1.clone(),
    }
}

fn validate_add_members(case: &Case<(Option<ConversationRef>, Vec<String>)>) -> Result<(), Status> {
    roaming_conversation::fuzzing::validate_add_members(
        &add_members_req(case),
        &case.who.caller(),
        &Limits::default(),
    )
}

fn validate_remove_members(
    case: &Case<(Option<ConversationRef>, Vec<String>)>,
) -> Result<(), Status> {
    roaming_conversation::fuzzing::validate_remove_members(
        &remove_members_req(case),
        &case.who.caller(),
        &Limits::default(),
    )
}

// ---------------------------------------------------------------------------------------
// The property runs.

#[derive(Default, Debug)]
struct Figures {
    cases: u64,
    passed: u64,
    invalid: u64,
    denied: u64,
    fields: BTreeMap<String, u64>,
}

fn property<R: Clone + Debug + 'static>(
    rpc: &str,
    strategy: BoxedStrategy<Case<R>>,
    validate: fn(&Case<R>) -> Result<(), Status>,
) -> Figures {
    let started = Instant::now();
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases: cases(),
            failure_persistence: None,
            max_shrink_iters: 2000,
            ..Config::default()
        },
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let figures = std::cell::RefCell::new(Figures::default());
    let outcome = runner.run(&strategy, |case| {
        let result = validate(&case);
        let named = judge(&result, &case.expect).map_err(TestCaseError::fail)?;
        let mut f = figures.borrow_mut();
        f.cases += 1;
        match &result {
            Ok(()) => f.passed += 1,
            Err(s) if s.code() == Code::PermissionDenied => f.denied += 1,
            Err(_) => f.invalid += 1,
        }
        if let Some(field) = named {
            // Index-free, so the figures stay short: messages[3].sender → messages[].sender.
            let generic: String = {
                let mut out = String::new();
                let mut skip = false;
                for ch in field.chars() {
                    match ch {
                        '[' => {
                            skip = true;
                            out.push('[');
                        }
                        ']' => {
                            skip = false;
                            out.push(']');
                        }
                        _ if skip => {}
                        c => out.push(c),
                    }
                }
                out
            };
            *f.fields.entry(generic).or_default() += 1;
        }
        Ok(())
    });
    if let Err(e) = outcome {
        panic!("{rpc}: {e}");
    }
    let f = figures.into_inner();
    println!(
        "input[{rpc}]: {} cases in {:.1?}: {} valid, {} INVALID_ARGUMENT, {} PERMISSION_DENIED, \
         0 other codes, 0 panics; fields named: {:?}",
        f.cases,
        started.elapsed(),
        f.passed,
        f.invalid,
        f.denied,
        f.fields
    );
    f
}

#[test]
fn append_messages_validation_holds_for_generated_requests() {
    let f = property("AppendMessages", append_case(), validate_append);
    assert!(f.invalid > f.cases / 2, "mostly invalid requests");
}

#[test]
fn fetch_history_validation_holds_for_generated_requests() {
    let f = property("FetchHistory", fetch_case(), validate_fetch);
    assert!(f.invalid > f.cases / 2 && f.passed > 0);
}

#[test]
fn remove_messages_validation_holds_for_generated_requests() {
    let f = property("RemoveMessages", remove_case(), validate_remove);
    assert!(f.invalid > f.cases / 3 && f.passed > 0);
}

#[test]
fn remove_messages_before_validation_holds_for_generated_requests() {
    let f = property(
        "RemoveMessagesBefore",
        remove_before_case(),
        validate_remove_before,
    );
    assert!(f.invalid > f.cases / 3 && f.passed > 0);
}

#[test]
fn list_conversations_validation_holds_for_generated_requests() {
    let f = property("ListConversations", list_case(), validate_list);
    assert!(f.invalid > f.cases / 3 && f.passed > 0);
}

#[test]
fn remove_conversation_validation_holds_for_generated_requests() {
    let f = property(
        "RemoveConversation",
        remove_conversation_case(),
        validate_remove_conversation,
    );
    assert!(f.invalid > f.cases / 3 && f.passed > 0 && f.denied > 0);
}

#[test]
fn add_members_validation_holds_for_generated_requests() {
    let f = property("AddMembers", members_case(), validate_add_members);
    assert!(f.invalid > f.cases / 3 && f.passed > 0 && f.denied > 0);
}

#[test]
fn remove_members_validation_holds_for_generated_requests() {
    let f = property("RemoveMembers", members_case(), validate_remove_members);
    assert!(f.invalid > f.cases / 3 && f.passed > 0 && f.denied > 0);
}

// ---------------------------------------------------------------------------------------
// End to end through the real server.

/// Row counts and content hashes of every table.
async fn fingerprint(sql: &tokio_postgres::Client) -> Vec<String> {
    let row = sql
        .query_one(
            "SELECT (SELECT count(*) FROM messages)::text, \
                    (SELECT count(*) FROM tombstones)::text, \
                    (SELECT md5(coalesce(string_agg(c::text, ',' ORDER BY conv_key), '')) \
                       FROM conversations c), \
                    (SELECT md5(coalesce(string_agg(u::text, ',' ORDER BY conv_key, user_id), '')) \
                       FROM user_conversations u), \
                    (SELECT last_value::text FROM message_ids)",
            &[],
        )
        .await
        .unwrap();
    (0..5).map(|i| row.get::<_, String>(i)).collect()
}

fn samples<T: Debug>(strategy: &BoxedStrategy<T>, n: usize, seed: u8) -> Vec<T> {
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32]),
    );
    (0..n)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect()
}

/// Sends `req` as `who` to the test server and returns the call's status.
struct E2e<'a> {
    app: &'a TestApp,
    clients: HashMap<&'static str, roaming_client::Client>,
}

impl<'a> E2e<'a> {
    async fn new(app: &'a TestApp) -> Self {
        let mut clients = HashMap::new();
        clients.insert("user", app.user("alice").await);
        clients.insert("service_as", app.service_as("alice").await);
        clients.insert("service", app.service().await);
        Self { app, clients }
    }

    fn client(&self, who: Who) -> &roaming_client::Client {
        &self.clients[match who {
            Who::User => "user",
            Who::ServiceAsUser => "service_as",
            Who::ServiceAlone => "service",
        }]
    }
}

#[derive(Default, Debug)]
struct E2eFigures {
    rejected: u64,
    accepted: u64,
    codes: BTreeMap<String, u64>,
}

/// The server's answer to a request the validation rejected must be that very status.
fn same_status(rpc: &str, pure: &Status, got: Result<(), Status>, f: &mut E2eFigures) {
    f.rejected += 1;
    match got {
        Ok(()) => panic!("{rpc}: validation said {pure:?}, the server accepted"),
        Err(s) => {
            *f.codes.entry(format!("{:?}", s.code())).or_default() += 1;
            assert_eq!(
                (s.code(), s.message()),
                (pure.code(), pure.message()),
                "{rpc}: server and validation disagree"
            );
        }
    }
}

/// A request the validation accepted may find nothing or be refused access, never more.
fn acceptable(rpc: &str, got: Result<(), Status>, what: &dyn Debug, f: &mut E2eFigures) {
    f.accepted += 1;
    let code = match &got {
        Ok(()) => Code::Ok,
        Err(s) => s.code(),
    };
    *f.codes.entry(format!("{code:?}")).or_default() += 1;
    assert!(
        matches!(code, Code::Ok | Code::PermissionDenied | Code::NotFound),
        "{rpc}: a valid request got {got:?}: {what:?}"
    );
}

/// Runs `n` generated cases of one RPC through the server: rejected ones first (nothing may
/// be written), then accepted ones.
async fn end_to_end<R, Fut>(
    app: &TestApp,
    e2e: &E2e<'_>,
    rpc: &str,
    cases: Vec<Case<R>>,
    validate: fn(&Case<R>) -> Result<(), Status>,
    send: impl Fn(&roaming_client::Client, Case<R>) -> Fut,
) -> E2eFigures
where
    R: Clone + Debug,
    Fut: std::future::Future<Output = Result<(), Status>>,
{
    let sql = app.sql().await;
    let mut f = E2eFigures::default();
    let (rejected, accepted): (Vec<_>, Vec<_>) =
        cases.into_iter().partition(|c| validate(c).is_err());
    let before = fingerprint(&sql).await;
    for case in rejected {
        let pure = validate(&case).unwrap_err();
        let got = send(e2e.client(case.who), case.clone()).await;
        same_status(rpc, &pure, got, &mut f);
    }
    assert_eq!(
        before,
        fingerprint(&sql).await,
        "{rpc}: a rejected request wrote something"
    );
    for case in accepted {
        let debug = format!("{:?}", case.req);
        let got = send(e2e.client(case.who), case).await;
        acceptable(rpc, got, &debug, &mut f);
    }
    println!(
        "input[{rpc}] end to end: {} rejected (server status identical to validation's, \
         tables unchanged), {} accepted; codes {:?}",
        f.rejected, f.accepted, f.codes
    );
    f
}

fn e2e_cases() -> usize {
    if std::env::var_os("ROAMING_RELIABILITY_LONG").is_some() {
        2000
    } else {
        300
    }
}

#[tokio::test]
async fn generated_requests_end_to_end_get_the_validations_answer_and_write_nothing() {
    let app = TestApp::spawn().await;
    // Something to find: alice talks to bob and is in "team".
    for i in 0..5 {
        app.peer("alice", "bob", &format!("m{i}")).await;
    }
    app.add_members(
        roaming_proto::common::v1::ConversationType::Group,
        "team",
        &["alice", "bob"],
    )
    .await;
    let e2e = E2e::new(&app).await;
    let n = e2e_cases();
    let started = Instant::now();

    end_to_end(
        &app,
        &e2e,
        "AppendMessages",
        samples(&append_case(), n, 1),
        validate_append,
        |c, case| {
            let mut h = c.history();
            async move { h.append_messages(case.req).await.map(|_| ()) }
        },
    )
    .await;
    end_to_end(
        &app,
        &e2e,
        "FetchHistory",
        samples(&fetch_case(), n, 2),
        validate_fetch,
        |c, case| {
            let mut h = c.history();
            async move {
                let mut stream = h.fetch_history(case.req).await?.into_inner();
                while stream.message().await?.is_some() {}
                Ok(())
            }
        },
    )
    .await;
    end_to_end(
        &app,
        &e2e,
        "RemoveMessages",
        samples(&remove_case(), n, 3),
        validate_remove,
        |c, case| {
            let mut h = c.history();
            async move { h.remove_messages(case.req).await.map(|_| ()) }
        },
    )
    .await;
    end_to_end(
        &app,
        &e2e,
        "RemoveMessagesBefore",
        samples(&remove_before_case(), n, 4),
        validate_remove_before,
        |c, case| {
            let mut h = c.history();
            async move { h.remove_messages_before(case.req).await.map(|_| ()) }
        },
    )
    .await;
    end_to_end(
        &app,
        &e2e,
        "ListConversations",
        samples(&list_case(), n, 5),
        validate_list,
        |c, case| {
            let mut h = c.conversations();
            async move { h.list_conversations(case.req).await.map(|_| ()) }
        },
    )
    .await;
    end_to_end(
        &app,
        &e2e,
        "RemoveConversation",
        samples(&remove_conversation_case(), n, 6),
        validate_remove_conversation,
        |c, case| {
            let mut h = c.conversations();
            async move { h.remove_conversation(case.req).await.map(|_| ()) }
        },
    )
    .await;
    end_to_end(
        &app,
        &e2e,
        "AddMembers",
        samples(&members_case(), n, 7),
        validate_add_members,
        |c, case| {
            let mut h = c.conversations();
            let req = add_members_req(&case);
            async move { h.add_members(req).await.map(|_| ()) }
        },
    )
    .await;
    end_to_end(
        &app,
        &e2e,
        "RemoveMembers",
        samples(&members_case(), n, 8),
        validate_remove_members,
        |c, case| {
            let mut h = c.conversations();
            let req = remove_members_req(&case);
            async move { h.remove_members(req).await.map(|_| ()) }
        },
    )
    .await;
    println!(
        "input: end to end, {n} cases × 8 RPCs in {:.1?}",
        started.elapsed()
    );
    let _ = e2e.app;
}

// ---------------------------------------------------------------------------------------
// Raw protobuf bodies.

/// Sends and receives raw message bytes, so that a request can carry what no typed client
/// encodes (a string field that is not UTF-8, a broken wire format).
#[derive(Clone, Copy, Default)]
struct RawCodec;

struct RawEncoder;
struct RawDecoder;

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n).to_vec()))
    }
}

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

async fn raw_call(
    channel: &tonic::transport::Channel,
    token: &str,
    act_as: Option<&str>,
    path: &'static str,
    streaming: bool,
    body: Vec<u8>,
) -> Result<(), Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let mut req = tonic::Request::new(body);
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    if let Some(u) = act_as {
        req.metadata_mut()
            .insert("x-roaming-user", u.parse().unwrap());
    }
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    if streaming {
        let mut stream = grpc
            .server_streaming(req, path, RawCodec)
            .await?
            .into_inner();
        while stream.message().await?.is_some() {}
        Ok(())
    } else {
        grpc.unary(req, path, RawCodec).await.map(|_| ())
    }
}

/// Bytes that are not UTF-8, of the same length as the marker they replace.
const NOT_UTF8: [u8; 8] = [0xC3, 0x28, 0xFF, 0xFE, 0x80, 0xC0, 0xAF, 0xED];
const MARK: &str = "QqMARKqQ";

/// `encoded` with every occurrence of the marker replaced by invalid UTF-8.
fn poison(encoded: Vec<u8>) -> Vec<u8> {
    let mark = MARK.as_bytes();
    let mut out = encoded;
    let mut i = 0;
    let mut replaced = 0;
    while i + mark.len() <= out.len() {
        if &out[i..i + mark.len()] == mark {
            out[i..i + mark.len()].copy_from_slice(&NOT_UTF8);
            replaced += 1;
            i += mark.len();
        } else {
            i += 1;
        }
    }
    assert!(replaced > 0, "the marker is in the encoding");
    out
}

#[tokio::test]
async fn raw_bodies_with_bad_utf8_or_a_broken_wire_format_are_refused_and_write_nothing() {
    raw_bodies(false).await;
}

/// SPEC.md §5 and issue 7: bad input is INVALID_ARGUMENT, never INTERNAL. tonic answers a body
/// that does not decode with INTERNAL before any Roaming code runs; the guard layer has to
/// rewrite it (see docs/reliability.md).
#[tokio::test]
async fn raw_bodies_that_do_not_decode_are_invalid_argument_not_internal() {
    raw_bodies(true).await;
}

async fn raw_bodies(strict_code: bool) {
    use prost::Message as _;
    let app = TestApp::spawn().await;
    app.peer("alice", "bob", "hello").await;
    let channel = tonic::transport::Endpoint::from_shared(app.endpoint.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let user = app.token("alice", false);
    let service = app.token("gateway", true);
    let sql = app.sql().await;
    let before = fingerprint(&sql).await;

    let cref = |id: &str| Some(peer(id));
    let message = |sender: &str, recipient: &str, cid: &str, k: &str, v: &str| hpb::NewMessage {
        conversation_type: 1,
        sender: sender.into(),
        recipient: recipient.into(),
        r#type: 1,
        body: b"x".to_vec(),
        attributes: HashMap::from([(k.to_owned(), v.to_owned())]),
        client_msg_id: cid.into(),
    };
    // (what, path, streaming, service caller, encoded body with the marker in one field)
    let mut bodies: Vec<(&str, &'static str, bool, bool, Vec<u8>)> = vec![
        (
            "NewMessage.sender",
            "/roaming.history.v1.HistoryService/AppendMessages",
            false,
            true,
            hpb::AppendMessagesRequest {
                messages: vec![message(MARK, "bob", "c", "k", "v")],
            }
            .encode_to_vec(),
        ),
        (
            "NewMessage.recipient",
            "/roaming.history.v1.HistoryService/AppendMessages",
            false,
            true,
            hpb::AppendMessagesRequest {
                messages: vec![message("alice", MARK, "c", "k", "v")],
            }
            .encode_to_vec(),
        ),
        (
            "NewMessage.client_msg_id",
            "/roaming.history.v1.HistoryService/AppendMessages",
            false,
            true,
            hpb::AppendMessagesRequest {
                messages: vec![message("alice", "bob", MARK, "k", "v")],
            }
            .encode_to_vec(),
        ),
        (
            "NewMessage.attributes key",
            "/roaming.history.v1.HistoryService/AppendMessages",
            false,
            true,
            hpb::AppendMessagesRequest {
                messages: vec![message("alice", "bob", "c", MARK, "v")],
            }
            .encode_to_vec(),
        ),
        (
            "NewMessage.attributes value",
            "/roaming.history.v1.HistoryService/AppendMessages",
            false,
            true,
            hpb::AppendMessagesRequest {
                messages: vec![message("alice", "bob", "c", "k", MARK)],
            }
            .encode_to_vec(),
        ),
        (
            "FetchHistoryRequest.conversation.id",
            "/roaming.history.v1.HistoryService/FetchHistory",
            true,
            false,
            hpb::FetchHistoryRequest {
                conversation: cref(MARK),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "FetchHistoryRequest.start_msg_id",
            "/roaming.history.v1.HistoryService/FetchHistory",
            true,
            false,
            hpb::FetchHistoryRequest {
                conversation: cref("bob"),
                start_msg_id: MARK.into(),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "FetchHistoryRequest.cursor",
            "/roaming.history.v1.HistoryService/FetchHistory",
            true,
            false,
            hpb::FetchHistoryRequest {
                conversation: cref("bob"),
                cursor: MARK.into(),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "FetchHistoryRequest.senders",
            "/roaming.history.v1.HistoryService/FetchHistory",
            true,
            false,
            hpb::FetchHistoryRequest {
                conversation: cref("bob"),
                senders: vec!["alice".into(), MARK.into()],
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "RemoveMessagesRequest.msg_ids",
            "/roaming.history.v1.HistoryService/RemoveMessages",
            false,
            false,
            hpb::RemoveMessagesRequest {
                conversation: cref("bob"),
                msg_ids: vec![MARK.into()],
            }
            .encode_to_vec(),
        ),
        (
            "RemoveMessagesRequest.conversation.id",
            "/roaming.history.v1.HistoryService/RemoveMessages",
            false,
            false,
            hpb::RemoveMessagesRequest {
                conversation: cref(MARK),
                msg_ids: vec!["1".into()],
            }
            .encode_to_vec(),
        ),
        (
            "RemoveMessagesBeforeRequest.conversation.id",
            "/roaming.history.v1.HistoryService/RemoveMessagesBefore",
            false,
            false,
            hpb::RemoveMessagesBeforeRequest {
                conversation: cref(MARK),
                before_time_ms: NOW_MS,
            }
            .encode_to_vec(),
        ),
        (
            "ListConversationsRequest.cursor",
            "/roaming.conversation.v1.ConversationService/ListConversations",
            false,
            false,
            cpb::ListConversationsRequest {
                cursor: MARK.into(),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "RemoveConversationRequest.conversation.id",
            "/roaming.conversation.v1.ConversationService/RemoveConversation",
            false,
            false,
            cpb::RemoveConversationRequest {
                conversation: cref(MARK),
                delete_messages: true,
                scope: 1,
            }
            .encode_to_vec(),
        ),
        (
            "AddMembersRequest.user_ids",
            "/roaming.conversation.v1.ConversationService/AddMembers",
            false,
            true,
            cpb::AddMembersRequest {
                conversation: Some(roaming_testkit::conv(
                    roaming_proto::common::v1::ConversationType::Group,
                    "team",
                )),
                user_ids: vec!["bob".into(), MARK.into()],
            }
            .encode_to_vec(),
        ),
        (
            "RemoveMembersRequest.conversation.id",
            "/roaming.conversation.v1.ConversationService/RemoveMembers",
            false,
            true,
            cpb::RemoveMembersRequest {
                conversation: Some(roaming_testkit::conv(
                    roaming_proto::common::v1::ConversationType::Group,
                    MARK,
                )),
                user_ids: vec!["bob".into()],
            }
            .encode_to_vec(),
        ),
    ];
    for b in &mut bodies {
        b.4 = poison(std::mem::take(&mut b.4));
    }
    let mut codes: BTreeMap<String, u64> = BTreeMap::new();
    let mut violations = Vec::new();
    let mut sent = 0;
    for (what, path, streaming, as_service, body) in &bodies {
        let (token, act_as) = if *as_service {
            (&service, None)
        } else {
            (&user, None)
        };
        let got = raw_call(&channel, token, act_as, path, *streaming, body.clone()).await;
        sent += 1;
        let status = got.err();
        let code = status.as_ref().map_or(Code::Ok, |s| s.code());
        *codes.entry(format!("{code:?}")).or_default() += 1;
        let field = what.split(' ').next().unwrap().rsplit('.').next().unwrap();
        let named = status.as_ref().is_some_and(|s| s.message().contains(field));
        let refused = if strict_code {
            code == Code::InvalidArgument
        } else {
            matches!(code, Code::InvalidArgument | Code::Internal)
        };
        if !refused || !named {
            violations.push(format!("bad UTF-8 in {what}: {status:?}"));
        }
    }

    // Broken wire format: every valid body above cut short or with garbage appended, and
    // random bytes. Nothing may be written, nothing may panic; the answer is a refusal.
    let mut broken = 0;
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    for (what, path, streaming, as_service, body) in &bodies {
        let token = if *as_service { &service } else { &user };
        let mut variants = vec![
            body[..body.len() / 2].to_vec(),
            [body.as_slice(), &[0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F]].concat(),
            [body.as_slice(), &[0x07]].concat(),
        ];
        for _ in 0..5 {
            let n = rng.random_range(1..64);
            variants.push((0..n).map(|_| rng.random::<u8>()).collect());
        }
        for v in variants {
            let got = raw_call(&channel, token, None, path, *streaming, v.clone()).await;
            broken += 1;
            let code = got.as_ref().err().map_or(Code::Ok, |s| s.code());
            *codes.entry(format!("{code:?}")).or_default() += 1;
            let bad = if strict_code {
                matches!(code, Code::Internal | Code::Unknown | Code::Unavailable)
            } else {
                matches!(code, Code::Unknown | Code::Unavailable)
            };
            if bad {
                violations.push(format!("broken {what} ({v:?}): {got:?}"));
            }
        }
    }
    assert_eq!(
        before,
        fingerprint(&sql).await,
        "a refused raw body wrote something"
    );
    println!(
        "input[raw{}]: {sent} bodies with bad UTF-8 (one per string field of every request) and \
         {broken} with a broken wire format; codes {codes:?}; violations {}",
        if strict_code { ", strict codes" } else { "" },
        violations.len()
    );
    assert!(
        violations.is_empty(),
        "{violations:#?}\n(undecodable bodies come back INTERNAL from tonic's codec until the guard \
         layer rewrites them: services/reliability/docs/patches/\
         guard-undecodable-is-invalid-argument.patch)"
    );
}

// ---------------------------------------------------------------------------------------
// The fuzz corpus, replayed.

#[test]
fn the_fuzz_corpus_replays_through_the_fuzz_targets() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let mut total = 0;
    let mut per_target = Vec::new();
    for (name, target) in roaming_reliability::fuzz_targets::TARGETS {
        let dir = root.join(name);
        let mut n = 0;
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e} (the corpus is committed)", dir.display()));
        for entry in entries {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| target(&data));
            assert!(outcome.is_ok(), "{name}: {} panicked", path.display());
            n += 1;
        }
        assert!(n > 0, "{name}: empty corpus");
        per_target.push(format!("{name} {n}"));
        total += n;
    }
    // The seeds were sealed by fuzz/seed_corpus.py: the genuine ones must open, or the corpus
    // would only exercise the MAC check.
    let sealer = roaming_reliability::fuzz_targets::sealer();
    for (target, file) in [
        ("history_cursor", "genuine_backward"),
        ("list_cursor", "genuine"),
    ] {
        let text = std::fs::read_to_string(root.join(target).join(file)).unwrap();
        let opened = if target == "history_cursor" {
            roaming_history::fuzzing::open_cursor(&sealer, &text)
        } else {
            roaming_conversation::fuzzing::open_cursor(&sealer, &text)
        };
        assert!(opened.is_ok(), "{target}/{file}: {opened:?}");
    }
    println!(
        "input[fuzz corpus]: {total} inputs replayed, 0 failures ({})",
        per_target.join(", ")
    );
}
