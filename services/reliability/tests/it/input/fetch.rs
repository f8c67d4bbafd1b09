//! Generated FetchHistory requests (time range, filters, anchor, cursor) and their validation.

use super::cursors::{cursor_choice, make_cursor};
use super::fields::{bad_enum, conversation_field, id_list, msg_id_field};
use super::support::{Case, Expect, NOW_MS, Who, parsed, sealer, user_scoped_who};
use proptest::prelude::*;
use roaming_domain::Limits;
use roaming_proto::history::v1 as hpb;
use roaming_runtime::CursorSealer;
use tonic::Status;

fn time_field(field: &'static str) -> BoxedStrategy<(Option<i64>, Vec<String>)> {
    prop_oneof![
        6 => Just((None, vec![])),
        4 => (0..=2 * NOW_MS).prop_map(|t| (Some(t), vec![])),
        1 => Just((Some(0), vec![])),
        1 => (i64::MIN..0).prop_map(move |t| (Some(t), vec![field.to_owned()])),
    ]
    .boxed()
}

pub fn fetch_case() -> BoxedStrategy<Case<hpb::FetchHistoryRequest>> {
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
                let limits = Limits::DEFAULT;
                let base = req.clone();
                let genuine = |s: &CursorSealer, p: i64| {
                    roaming_history::Fetch::parse(base.clone(), &caller, &limits, s)
                        .ok()
                        .map(|f| f.cursor_at(s, p))
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
                    roaming_history::Fetch::parse(v, &caller, &limits, &sealer())
                        .ok()
                        .map(|f| f.cursor_at(&sealer(), p))
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

pub fn validate_fetch(case: &Case<hpb::FetchHistoryRequest>) -> Result<(), Status> {
    parsed(roaming_history::Fetch::parse(
        case.req.clone(),
        &case.who.caller(),
        &Limits::DEFAULT,
        &sealer(),
    ))
}
