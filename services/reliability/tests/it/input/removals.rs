//! Generated RemoveMessages and RemoveMessagesBefore requests and their validation.

use super::fields::{conversation_field, msg_id_field};
use super::support::{Case, Expect, Who, parsed, user_scoped_who};
use proptest::prelude::*;
use roaming_domain::Limits;
use roaming_proto::history::v1 as hpb;
use tonic::Status;

pub fn remove_case() -> BoxedStrategy<Case<hpb::RemoveMessagesRequest>> {
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

pub fn validate_remove(case: &Case<hpb::RemoveMessagesRequest>) -> Result<(), Status> {
    parsed(roaming_history::RemoveIds::parse(
        case.req.clone(),
        &case.who.caller(),
        &Limits::DEFAULT,
    ))
}

pub fn remove_before_case() -> BoxedStrategy<Case<hpb::RemoveMessagesBeforeRequest>> {
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

pub fn validate_remove_before(case: &Case<hpb::RemoveMessagesBeforeRequest>) -> Result<(), Status> {
    parsed(roaming_history::RemoveBefore::parse(
        case.req.clone(),
        &case.who.caller(),
    ))
}
