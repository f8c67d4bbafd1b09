//! What the bad-input tests share: the server's clock and key, callers, expectations, fingerprint.

use proptest::prelude::*;
use roaming_domain::UserId;
use roaming_runtime::{Caller, CursorSealer};
use roaming_testkit::SECRET;

/// The test server's clock (TestApp's ManualClock starts here).
pub const NOW_MS: i64 = 1_800_000_000_000;

pub fn sealer() -> CursorSealer {
    CursorSealer::derive(SECRET.as_bytes())
}

/// Who sends a generated request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// alice's own token.
    User,
    /// A service token acting for alice.
    ServiceAsUser,
    /// A service token naming nobody.
    ServiceAlone,
}

impl Who {
    pub fn caller(self) -> Caller {
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

pub fn user_scoped_who() -> impl Strategy<Value = Who> {
    prop_oneof![
        16 => Just(Who::User),
        3 => Just(Who::ServiceAsUser),
        1 => Just(Who::ServiceAlone),
    ]
}

pub fn backend_who() -> impl Strategy<Value = Who> {
    prop_oneof![
        19 => Just(Who::ServiceAlone),
        1 => Just(Who::User),
    ]
}

/// Who sends a request that a service makes for the user it acts for (recall, edit): mostly
/// a service acting for alice, sometimes alice's own token or a service naming nobody.
pub fn sender_who() -> impl Strategy<Value = Who> {
    prop_oneof![
        16 => Just(Who::ServiceAsUser),
        2 => Just(Who::User),
        2 => Just(Who::ServiceAlone),
    ]
}

/// What the services must answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    /// Valid.
    Pass,
    /// INVALID_ARGUMENT whose message starts with one of these (`field: ` or `field[`).
    Invalid(Vec<String>),
    /// PERMISSION_DENIED (the caller lacks the service role).
    Denied,
}

impl Expect {
    pub fn from_faults(faults: Vec<String>) -> Self {
        if faults.is_empty() {
            Expect::Pass
        } else {
            Expect::Invalid(faults)
        }
    }
}

/// The expectation of a user-scoped request: a service naming nobody is refused on
/// `x-roaming-user` before anything else; otherwise the request's own faults.
pub fn user_scoped(who: Who, faults: Vec<String>) -> Expect {
    if who == Who::ServiceAlone {
        Expect::Invalid(vec!["x-roaming-user".into()])
    } else {
        Expect::from_faults(faults)
    }
}

/// A generated request with what it must get.
#[derive(Debug, Clone)]
pub struct Case<R> {
    pub req: R,
    pub who: Who,
    pub expect: Expect,
}

/// Row counts and content hashes of every table.
pub async fn fingerprint(sql: &tokio_postgres::Client) -> Vec<String> {
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

/// The outcome of a handler's `parse` as the call's status would be (the command dropped).
pub fn parsed<T>(result: Result<T, roaming_runtime::ApiError>) -> Result<(), tonic::Status> {
    result.map(|_| ()).map_err(tonic::Status::from)
}
