//! Generated requests end to end: the server answers what the validation said, writes nothing.

use super::append::{append_case, validate_append};
use super::conversations::{
    add_members_req, list_case, members_case, remove_conversation_case, remove_members_req,
    validate_add_members, validate_list, validate_remove_conversation, validate_remove_members,
};
use super::fetch::{fetch_case, validate_fetch};
use super::removals::{remove_before_case, remove_case, validate_remove, validate_remove_before};
use super::support::{Case, Who, fingerprint};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use roaming_testkit::TestApp;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::time::Instant;
use tonic::{Code, Status};

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
