//! Generated AppendMessages requests (backend callers) and their validation.

use super::fields::{bad_enum, bad_id, free_text, good_id, with_nul};
use super::support::{Case, Expect, Who, backend_who, parsed};
use proptest::prelude::*;
use roaming_domain::Limits;
use roaming_proto::history::v1 as hpb;
use std::collections::{BTreeMap, HashMap};
use tonic::Status;

/// A message's `attributes` (a new message's or an edit's) and the field it breaks.
pub(crate) fn attributes_field() -> BoxedStrategy<(BTreeMap<String, String>, Vec<&'static str>)> {
    prop_oneof![
        12 => prop::collection::btree_map(free_text(12), prop_oneof![Just(String::new()), free_text(20)], 0..4)
            .prop_map(|m| (m, vec![])),
        1 => (33usize..40).prop_map(|n| ((0..n).map(|i| (format!("k{i}"), "v".to_owned())).collect(), vec!["attributes"])),
        1 => Just((BTreeMap::from([(String::new(), "v".to_owned())]), vec!["attributes"])),
        1 => (1025usize..1100).prop_map(|n| (BTreeMap::from([("k".repeat(n), "v".to_owned())]), vec!["attributes"])),
        1 => (1025usize..1100).prop_map(|n| (BTreeMap::from([("k".to_owned(), "v".repeat(n))]), vec!["attributes"])),
        1 => with_nul().prop_map(|s| (BTreeMap::from([(s, "v".to_owned())]), vec!["attributes"])),
        1 => with_nul().prop_map(|s| (BTreeMap::from([("k".to_owned(), s)]), vec!["attributes"])),
    ]
    .boxed()
}

/// A message's `body` (a new message's or an edit's) and the field it breaks.
pub(crate) fn body_field() -> BoxedStrategy<(Vec<u8>, Vec<&'static str>)> {
    prop_oneof![
        12 => prop::collection::vec(any::<u8>(), 0..64).prop_map(|b| (b, vec![])),
        1 => Just((vec![0u8; 65536], vec![])),
        1 => (65537usize..66000).prop_map(|n| (vec![0xAB; n], vec!["body"])),
    ]
    .boxed()
}

fn new_message() -> BoxedStrategy<(hpb::NewMessage, Vec<&'static str>)> {
    let attributes = attributes_field();
    let body = body_field();
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

pub fn append_case() -> BoxedStrategy<Case<hpb::AppendMessagesRequest>> {
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

pub fn validate_append(case: &Case<hpb::AppendMessagesRequest>) -> Result<(), Status> {
    parsed(roaming_history::Append::parse(
        case.req.clone(),
        &case.who.caller(),
        &Limits::DEFAULT,
    ))
}
