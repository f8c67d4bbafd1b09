//! Generated ListConversations, RemoveConversation and membership requests and their validation.

use super::cursors::{cursor_choice, make_cursor};
use super::fields::{bad_enum, conversation_field, group_field, id_list, ids_of};
use super::support::{Case, Expect, NOW_MS, Who, backend_who, parsed, sealer, user_scoped_who};
use proptest::prelude::*;
use roaming_conversation::{Change, ListSettings, ReadSettings};
use roaming_domain::Limits;
use roaming_proto::common::v1::ConversationRef;
use roaming_proto::conversation::v1 as cpb;
use roaming_runtime::CursorSealer;
use tonic::Status;

fn defaults() -> ListSettings {
    ListSettings::DEFAULT
}

pub fn list_case() -> BoxedStrategy<Case<cpb::ListConversationsRequest>> {
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
    // The mark filter: none, a valid mark, or one breaking the mark rule.
    let mark = prop_oneof![
        6 => Just((String::new(), vec![])),
        3 => "[A-Za-z0-9_.-]{1,32}".prop_map(|m| (m, vec![])),
        1 => prop_oneof!["[A-Za-z0-9]{33,40}", "[a-z]{0,5}[ :/é][a-z]{0,5}"]
            .prop_map(|m| (m, vec!["mark".to_owned()])),
    ];
    (
        (page_size, since, types),
        cursor_choice(),
        any::<i64>(),
        key,
        user_scoped_who(),
        (mark, any::<bool>()),
    )
        .prop_map(
            |((ps, since, types), cursor, activity, key, who, (mark, pinned_only))| {
                let mut faults: Vec<String> = Vec::new();
                for f in [&ps.1, &since.1, &types.1, &mark.1] {
                    faults.extend(f.iter().cloned());
                }
                let mut req = cpb::ListConversationsRequest {
                    page_size: ps.0,
                    cursor: String::new(),
                    active_since_ms: since.0,
                    types: types.0,
                    pinned_only,
                    mark: mark.0,
                };
                let base = req.clone();
                let limits = Limits::DEFAULT;
                let list_cursor =
                    |req: &cpb::ListConversationsRequest, s: &CursorSealer, at: i64| {
                        let caller = Who::User.caller();
                        roaming_conversation::List::parse(
                            req,
                            &caller,
                            defaults(),
                            ReadSettings::DEFAULT,
                            &limits,
                            s,
                            NOW_MS,
                        )
                        .ok()
                        .map(|list| list.cursor_after(s, at, &key))
                    };
                let genuine =
                    |s: &CursorSealer, p: i64| list_cursor(&base, s, activity.wrapping_add(p));
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
                    list_cursor(&v, &sealer(), p)
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
            },
        )
        .boxed()
}

pub fn validate_list(case: &Case<cpb::ListConversationsRequest>) -> Result<(), Status> {
    parsed(roaming_conversation::List::parse(
        &case.req,
        &case.who.caller(),
        defaults(),
        ReadSettings::DEFAULT,
        &Limits::DEFAULT,
        &sealer(),
        NOW_MS,
    ))
}

pub fn remove_conversation_case() -> BoxedStrategy<Case<cpb::RemoveConversationRequest>> {
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

pub fn validate_remove_conversation(
    case: &Case<cpb::RemoveConversationRequest>,
) -> Result<(), Status> {
    parsed(roaming_conversation::RemoveConversation::parse(
        &case.req,
        &case.who.caller(),
    ))
}

pub fn members_case() -> BoxedStrategy<Case<(Option<ConversationRef>, Vec<String>)>> {
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

pub fn add_members_req(
    case: &Case<(Option<ConversationRef>, Vec<String>)>,
) -> cpb::AddMembersRequest {
    cpb::AddMembersRequest {
        conversation: case.req.0.clone(),
        user_ids: case.req.1.clone(),
    }
}

pub fn remove_members_req(
    case: &Case<(Option<ConversationRef>, Vec<String>)>,
) -> cpb::RemoveMembersRequest {
    cpb::RemoveMembersRequest {
        conversation: case.req.0.clone(),
        user_ids: case.req.1.clone(),
    }
}

pub fn validate_add_members(
    case: &Case<(Option<ConversationRef>, Vec<String>)>,
) -> Result<(), Status> {
    let req = add_members_req(case);
    parsed(roaming_conversation::Members::parse(
        Change::Add,
        req.conversation.as_ref(),
        &req.user_ids,
        &case.who.caller(),
        &Limits::DEFAULT,
    ))
}

pub fn validate_remove_members(
    case: &Case<(Option<ConversationRef>, Vec<String>)>,
) -> Result<(), Status> {
    let req = remove_members_req(case);
    parsed(roaming_conversation::Members::parse(
        Change::Remove,
        req.conversation.as_ref(),
        &req.user_ids,
        &case.who.caller(),
        &Limits::DEFAULT,
    ))
}
