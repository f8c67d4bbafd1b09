//! Generated MarkRead, PinConversation, MarkConversation and SyncConversations requests (all
//! user-scoped) and their validation.

use super::cursors::{cursor_choice, make_cursor};
use super::fields::{
    bad_id, conversation_field, conversation_field_weighted, ids_of, is_id, msg_id_field,
};
use super::support::{Case, NOW_MS, parsed, sealer, user_scoped, user_scoped_who};
use proptest::prelude::*;
use roaming_conversation::sync_token::{Stamp, SyncToken, user_fingerprint};
use roaming_conversation::{ReadSettings, SyncSettings};
use roaming_domain::UserId;
use roaming_proto::conversation::v1 as cpb;
use roaming_runtime::CursorSealer;
use tonic::Status;

pub fn mark_read_case() -> BoxedStrategy<Case<cpb::MarkReadRequest>> {
    // An empty msg_id is no fault here: it marks read up to the newest message.
    let msg_id = prop_oneof![
        1 => Just((String::new(), vec![])),
        4 => msg_id_field("msg_id".to_owned())
            .prop_map(|(s, f)| if s.is_empty() { (s, vec![]) } else { (s, f) }),
    ];
    (conversation_field(), msg_id, user_scoped_who())
        .prop_map(|(c, id, who)| {
            let mut faults = c.1;
            faults.extend(id.1);
            Case {
                req: cpb::MarkReadRequest {
                    conversation: c.0,
                    msg_id: id.0,
                },
                who,
                expect: user_scoped(who, faults),
            }
        })
        .boxed()
}

pub fn validate_mark_read(case: &Case<cpb::MarkReadRequest>) -> Result<(), Status> {
    parsed(roaming_conversation::MarkRead::parse(
        &case.req,
        &case.who.caller(),
    ))
}

pub fn pin_case() -> BoxedStrategy<Case<cpb::PinConversationRequest>> {
    // The conversation is the only field to break: broken half of the time.
    (
        conversation_field_weighted(4),
        any::<bool>(),
        user_scoped_who(),
    )
        .prop_map(|(c, pinned, who)| Case {
            req: cpb::PinConversationRequest {
                conversation: c.0,
                pinned,
            },
            who,
            expect: user_scoped(who, c.1),
        })
        .boxed()
}

pub fn validate_pin(case: &Case<cpb::PinConversationRequest>) -> Result<(), Status> {
    parsed(roaming_conversation::Pin::parse(
        &case.req,
        &case.who.caller(),
    ))
}

/// The mark rule: 1-32 characters of `[A-Za-z0-9_.-]`.
fn is_mark(s: &str) -> bool {
    s.len() <= 32 && is_id(s)
}

/// A mark: often one of a few common ones (so that the two lists meet), or any valid one, too
/// long, empty, with an odd character, arbitrary text.
fn mark() -> BoxedStrategy<String> {
    prop_oneof![
        8 => prop::sample::select(vec!["work", "family", "Work", "a.b_c", "x", "-"])
            .prop_map(String::from),
        4 => ids_of(1..=32),
        1 => ids_of(33..=64),
        1 => bad_id(),
    ]
    .boxed()
}

/// Most entries of one list of a MarkConversation request (the contract's bound).
const MARKS_PER_LIST: usize = 100;

/// One list of a MarkConversation request: short lists, long ones up to the contract's 100
/// entries (valid whatever their length: the 20 marks per conversation are a state rule,
/// FAILED_PRECONDITION when executed), and lists past it.
fn mark_list() -> BoxedStrategy<Vec<String>> {
    prop_oneof![
        12 => prop::collection::vec(mark(), 0..=4),
        1 => prop::collection::vec(ids_of(1..=32), 21..=MARKS_PER_LIST),
        1 => prop::collection::vec(ids_of(1..=32), MARKS_PER_LIST + 1..=MARKS_PER_LIST + 30),
    ]
    .boxed()
}

pub fn mark_conversation_case() -> BoxedStrategy<Case<cpb::MarkConversationRequest>> {
    (
        conversation_field(),
        mark_list(),
        mark_list(),
        user_scoped_who(),
    )
        .prop_map(|(c, add, remove, who)| {
            let mut faults = c.1;
            for (field, list) in [("add_marks", &add), ("remove_marks", &remove)] {
                if list.len() > MARKS_PER_LIST {
                    faults.push(field.to_owned());
                }
                faults.extend(
                    list.iter()
                        .enumerate()
                        .filter(|(_, m)| !is_mark(m))
                        .map(|(i, _)| format!("{field}[{i}]")),
                );
            }
            // One mark in both lists: the contract names no field, so either list will do.
            if add.iter().any(|m| remove.contains(m)) {
                faults.extend(["add_marks".to_owned(), "remove_marks".to_owned()]);
            }
            Case {
                req: cpb::MarkConversationRequest {
                    conversation: c.0,
                    add_marks: add,
                    remove_marks: remove,
                },
                who,
                expect: user_scoped(who, faults),
            }
        })
        .boxed()
}

pub fn validate_mark_conversation(case: &Case<cpb::MarkConversationRequest>) -> Result<(), Status> {
    parsed(roaming_conversation::MarkConversation::parse(
        &case.req,
        &case.who.caller(),
    ))
}

fn user(id: &str) -> UserId {
    UserId::parse("user", id).unwrap()
}

fn retention_ms() -> i64 {
    SyncSettings::DEFAULT.retention.as_millis() as i64
}

/// A snapshot stamp drawn from `bits`: as the server writes them, no older than the retention
/// (exactly as old now and then, or a little in the future).
fn stamp(bits: u64) -> Stamp {
    let age = match bits % 8 {
        0 => retention_ms(),
        1 => -(((bits >> 3) % 86_400_000) as i64),
        _ => ((bits >> 3) % (retention_ms() as u64 + 1)) as i64,
    };
    let xmin = 100 + (bits >> 20) % 1000;
    let snapshot = match (bits >> 40) % 3 {
        0 => format!("{xmin}:{xmin}:"),
        1 => format!("{xmin}:{}:{}", xmin + 5, xmin + 1),
        _ => format!("{xmin}:{}:{},{}", xmin + 9, xmin + 2, xmin + 7),
    };
    Stamp {
        snapshot,
        at_ms: NOW_MS - age,
    }
}

/// A token as the server would hand `owner` one: after a snapshot or not, in the middle of a
/// call or not, as `p` picks.
fn token_for(owner: &UserId, p: i64) -> SyncToken {
    let bits = p as u64;
    let mix = bits.rotate_left(17) ^ 0x5DEE_CE66;
    SyncToken {
        user: user_fingerprint(owner),
        since: (bits & 1 == 1).then(|| stamp(mix)),
        call: (bits & 2 == 2).then(|| {
            let key = ["p:alice:bob", "g:team", "p:alice:u-1"][(bits >> 2) as usize % 3];
            (stamp(mix.rotate_left(29)), p >> 4, key.to_owned())
        }),
    }
}

pub fn sync_case() -> BoxedStrategy<Case<cpb::SyncConversationsRequest>> {
    let page_size = prop_oneof![
        10 => (0..=100u32).prop_map(|n| (n, vec![])),
        1 => Just((100u32, vec![])),
        2 => (101..=u32::MAX).prop_map(|n| (n, vec!["page_size".to_owned()])),
    ];
    (page_size, cursor_choice(), user_scoped_who())
        .prop_map(|(ps, token, who)| {
            let mut faults = ps.1;
            let alice = user("alice");
            let genuine = |s: &CursorSealer, p: i64| Some(token_for(&alice, p).seal(s));
            // Tokens of another shape: another user's (0), or alice's payload of another
            // version (1) or with a byte too many (2), under this server's key.
            let foreign = |k: u8, p: i64| {
                let s = sealer();
                if k == 0 {
                    return Some(token_for(&user("bob"), p).seal(&s));
                }
                let mut payload = s.open(&token_for(&alice, p).seal(&s))?;
                if k == 1 {
                    payload[0] = payload[0].wrapping_add(1);
                } else {
                    payload.push(0);
                }
                Some(s.seal(&payload))
            };
            let (sync_token, fault) = make_cursor(&token, genuine, foreign);
            if fault {
                faults.push("sync_token".into());
            }
            Case {
                req: cpb::SyncConversationsRequest {
                    sync_token,
                    page_size: ps.0,
                },
                who,
                expect: user_scoped(who, faults),
            }
        })
        .boxed()
}

pub fn validate_sync(case: &Case<cpb::SyncConversationsRequest>) -> Result<(), Status> {
    parsed(roaming_conversation::Sync::parse(
        &case.req,
        &case.who.caller(),
        SyncSettings::DEFAULT,
        ReadSettings::DEFAULT,
        &sealer(),
        NOW_MS,
    ))
}

#[test]
fn generated_sync_tokens_are_fresh_and_well_formed() {
    // The generator's own premise: every genuine token is within the retention.
    for p in [0, 1, 2, 3, -1, i64::MIN, i64::MAX, 0x1234_5678_9abc_def0] {
        let t = token_for(&user("alice"), p);
        for s in t.since.iter().chain(t.call.as_ref().map(|c| &c.0)) {
            assert!(NOW_MS - s.at_ms <= retention_ms(), "{p}: {s:?}");
        }
    }
}
