//! RemoveMessages and RemoveMessagesBefore: one-way, idempotent, never undone.

use crate::helpers::*;
use roaming_client::proto::common::v1::{ConversationType, Message};
use roaming_client::proto::history::v1::{self as hpb, Direction, RemovalStatus};
use tonic::Code;

async fn remove(
    app: &TestApp,
    user: &str,
    conversation: &str,
    ids: Vec<String>,
) -> Result<Vec<(String, i32)>, tonic::Status> {
    let response = app
        .user(user)
        .await
        .history()
        .remove_messages(hpb::RemoveMessagesRequest {
            conversation: Some(peer(conversation)),
            msg_ids: ids,
        })
        .await?
        .into_inner();
    Ok(response
        .results
        .into_iter()
        .map(|r| (r.msg_id, r.status))
        .collect())
}

async fn remove_before(
    app: &TestApp,
    user: &str,
    conversation: &str,
    before_time_ms: i64,
) -> Result<(), tonic::Status> {
    app.user(user)
        .await
        .history()
        .remove_messages_before(hpb::RemoveMessagesBeforeRequest {
            conversation: Some(peer(conversation)),
            before_time_ms,
        })
        .await
        .map(|_| ())
}

async fn five(app: &TestApp) -> Vec<Message> {
    let mut out = Vec::new();
    for i in 0..5 {
        out.push(app.peer("alice", "bob", &format!("m{i}")).await);
        app.clock.advance(1_000);
    }
    out
}

#[tokio::test]
async fn removal_by_id_reports_each_id_and_hides_only_from_the_caller() {
    let app = TestApp::spawn().await;
    let msgs = five(&app).await;
    let elsewhere = app.peer("alice", "carol", "x").await;
    let ids = vec![
        msgs[1].msg_id.clone(),
        msgs[3].msg_id.clone(),
        "424242424".into(),
        elsewhere.msg_id.clone(),
    ];
    let results = remove(&app, "alice", "bob", ids.clone()).await.unwrap();
    let expect = |s: RemovalStatus| s as i32;
    assert_eq!(
        results,
        vec![
            (ids[0].clone(), expect(RemovalStatus::Removed)),
            (ids[1].clone(), expect(RemovalStatus::Removed)),
            (ids[2].clone(), expect(RemovalStatus::NotFound)),
            (ids[3].clone(), expect(RemovalStatus::NotFound)),
        ]
    );
    assert_eq!(
        bodies(
            &app.fetch_all("alice", peer("bob"), Direction::Forward)
                .await
        ),
        vec!["m0", "m2", "m4"]
    );
    // One-way: bob, and alice's other conversation, are untouched.
    assert_eq!(
        app.fetch_all("bob", peer("alice"), Direction::Forward)
            .await
            .len(),
        5
    );
    assert_eq!(
        app.fetch_all("alice", peer("carol"), Direction::Forward)
            .await
            .len(),
        1
    );
    // Idempotent.
    let again = remove(&app, "alice", "bob", vec![ids[0].clone()])
        .await
        .unwrap();
    assert_eq!(
        again,
        vec![(ids[0].clone(), expect(RemovalStatus::AlreadyRemoved))]
    );
}

#[tokio::test]
async fn removed_messages_never_come_back_on_another_device_or_after_a_retry() {
    let app = TestApp::spawn().await;
    let original = app
        .send_with_id(ConversationType::Peer, "alice", "bob", "oops", "dup-1")
        .await;
    remove(&app, "alice", "bob", vec![original.msg_id.clone()])
        .await
        .unwrap();
    // The gateway retries the same message: a duplicate, still hidden from alice.
    let retried = app
        .send_with_id(ConversationType::Peer, "alice", "bob", "oops", "dup-1")
        .await;
    assert_eq!(retried.msg_id, original.msg_id);
    // A second device of alice's (a fresh client and token) sees nothing, in either direction.
    assert!(
        app.fetch_all("alice", peer("bob"), Direction::Forward)
            .await
            .is_empty()
    );
    assert!(
        app.fetch_all("alice", peer("bob"), Direction::Backward)
            .await
            .is_empty()
    );
    // And an anchor on the removed message still works for paging around it.
    let next = app.peer("bob", "alice", "after").await;
    let pages = fetch_pages(
        &app.user("alice").await,
        hpb::FetchHistoryRequest {
            conversation: Some(peer("bob")),
            direction: Direction::Forward as i32,
            start_msg_id: original.msg_id,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        pages[0].messages,
        vec![Message {
            conversation: Some(peer("bob")),
            ..next
        }]
    );
}

#[tokio::test]
async fn removal_requests_are_validated_whole() {
    let app = TestApp::spawn().await;
    let msgs = five(&app).await;
    let too_many: Vec<String> = (1..=51).map(|i| i.to_string()).collect();
    assert_status(
        remove(&app, "alice", "bob", too_many).await,
        Code::InvalidArgument,
        "msg_ids",
    );
    assert_status(
        remove(&app, "alice", "bob", vec![]).await,
        Code::InvalidArgument,
        "msg_ids",
    );
    let mixed = vec![msgs[0].msg_id.clone(), "not-a-number".into()];
    assert_status(
        remove(&app, "alice", "bob", mixed).await,
        Code::InvalidArgument,
        "msg_ids[1]",
    );
    // Nothing was removed by the rejected call.
    assert_eq!(
        app.fetch_all("alice", peer("bob"), Direction::Forward)
            .await
            .len(),
        5
    );
    let fifty: Vec<String> = (1..=50).map(|i| i.to_string()).collect();
    assert!(remove(&app, "alice", "bob", fifty).await.is_ok());
    assert_status(
        remove_before(&app, "alice", "bob", -1).await,
        Code::InvalidArgument,
        "before_time_ms",
    );
    let no_conversation = app
        .user("alice")
        .await
        .history()
        .remove_messages(hpb::RemoveMessagesRequest {
            conversation: None,
            msg_ids: vec!["1".into()],
        })
        .await;
    assert_status(no_conversation, Code::InvalidArgument, "conversation");
}

#[tokio::test]
async fn removal_by_time_hides_what_was_stored_at_or_before_it_and_never_moves_back() {
    let app = TestApp::spawn().await;
    let msgs = five(&app).await;
    remove_before(&app, "alice", "bob", msgs[2].server_time_ms)
        .await
        .unwrap();
    assert_eq!(
        bodies(
            &app.fetch_all("alice", peer("bob"), Direction::Forward)
                .await
        ),
        vec!["m3", "m4"]
    );
    assert_eq!(
        app.fetch_all("bob", peer("alice"), Direction::Forward)
            .await
            .len(),
        5
    );
    // A later call with an earlier time changes nothing.
    remove_before(&app, "alice", "bob", msgs[0].server_time_ms)
        .await
        .unwrap();
    assert_eq!(
        bodies(
            &app.fetch_all("alice", peer("bob"), Direction::Forward)
                .await
        ),
        vec!["m3", "m4"]
    );
    // Ids hidden by the watermark report ALREADY_REMOVED.
    let r = remove(&app, "alice", "bob", vec![msgs[1].msg_id.clone()])
        .await
        .unwrap();
    assert_eq!(r[0].1, RemovalStatus::AlreadyRemoved as i32);
}

#[tokio::test]
async fn messages_stored_after_a_removal_by_time_are_never_hidden_by_it() {
    let app = TestApp::spawn().await;
    let msgs = five(&app).await;
    // A time in the future: everything so far is hidden, nothing later.
    let future = msgs[4].server_time_ms + 3_600_000;
    remove_before(&app, "alice", "bob", future).await.unwrap();
    assert!(
        app.fetch_all("alice", peer("bob"), Direction::Forward)
            .await
            .is_empty()
    );
    let later = app.peer("bob", "alice", "later").await;
    assert!(later.server_time_ms <= future);
    assert_eq!(
        bodies(
            &app.fetch_all("alice", peer("bob"), Direction::Forward)
                .await
        ),
        vec!["later"]
    );
}

#[tokio::test]
async fn removing_from_a_conversation_that_never_started_changes_nothing() {
    let app = TestApp::spawn().await;
    remove_before(&app, "alice", "nobody", 1_900_000_000_000)
        .await
        .unwrap();
    let r = remove(&app, "alice", "nobody", vec!["12345".into()])
        .await
        .unwrap();
    assert_eq!(r[0].1, RemovalStatus::NotFound as i32);
    let m = app.peer("nobody", "alice", "first").await;
    assert_eq!(
        app.fetch_all("alice", peer("nobody"), Direction::Forward)
            .await,
        vec![Message {
            conversation: Some(peer("nobody")),
            ..m
        }]
    );
}

#[tokio::test]
async fn group_members_remove_one_way_and_outsiders_are_refused() {
    let app = TestApp::spawn().await;
    app.add_members(ConversationType::Group, "g", &["alice", "bob"])
        .await;
    let m = app
        .send(ConversationType::Group, "bob", "g", "hi all")
        .await;
    let group = conv(ConversationType::Group, "g");
    let removal = |user: &'static str| {
        let group = group.clone();
        let id = m.msg_id.clone();
        let app = &app;
        async move {
            app.user(user)
                .await
                .history()
                .remove_messages(hpb::RemoveMessagesRequest {
                    conversation: Some(group),
                    msg_ids: vec![id],
                })
                .await
        }
    };
    assert_eq!(
        removal("mallory").await.unwrap_err().code(),
        Code::PermissionDenied
    );
    assert_eq!(
        removal("alice").await.unwrap().into_inner().results[0].status,
        RemovalStatus::Removed as i32
    );
    assert!(
        app.fetch_all("alice", group.clone(), Direction::Forward)
            .await
            .is_empty()
    );
    assert_eq!(
        app.fetch_all("bob", group, Direction::Forward).await.len(),
        1
    );
}
