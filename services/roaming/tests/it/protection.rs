//! Load protection, deadlines, cancellation and metrics.

use crate::helpers::*;
use roaming_client::proto::common::v1::ConversationType;
use roaming_client::proto::history::v1::{self as hpb, Direction};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn metrics_are_scraped_with_per_rpc_counts_pool_and_appends() {
    let app = TestApp::spawn().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(roaming::serve_metrics(
        listener,
        app.store.clone(),
        std::future::pending(),
    ));
    app.peer("alice", "bob", "hi").await;
    app.fetch_all("alice", peer("bob"), Direction::Forward)
        .await;
    let denied = fetch_pages(
        &app.user("mallory").await,
        hpb::FetchHistoryRequest {
            conversation: Some(conv(ConversationType::Group, "nope")),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(denied.unwrap_err().code(), Code::PermissionDenied);

    let body = http_get(addr, "/metrics").await;
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    for expected in [
        r#"roaming_grpc_requests_total{method="AppendMessages",code="Ok"}"#,
        r#"roaming_grpc_requests_total{method="FetchHistory",code="Ok"}"#,
        r#"roaming_grpc_requests_total{method="FetchHistory",code="PermissionDenied"}"#,
        r#"roaming_grpc_request_duration_seconds_bucket{method="FetchHistory",code="Ok",le="0.1"}"#,
        "roaming_grpc_in_flight{",
        "roaming_messages_appended_total",
        "roaming_db_pool_max",
        "roaming_db_pool_waiting",
    ] {
        assert!(body.contains(expected), "{expected} missing from:\n{body}");
    }
}

/// Stores `n` messages of ~60 KiB, so that a stream of 1-message pages cannot fit in the
/// transport's flow-control window and stays open while its reader does not read.
async fn heavy_conversation(app: &TestApp, n: usize) {
    let service = app.service().await;
    for chunk in (0..n).collect::<Vec<_>>().chunks(10) {
        let messages = chunk
            .iter()
            .map(|i| {
                let mut m = new_message(
                    ConversationType::Peer,
                    "alice",
                    "bob",
                    "",
                    &format!("heavy-{i}"),
                );
                m.body = vec![b'x'; 60 * 1024];
                m
            })
            .collect();
        service
            .history()
            .append_messages(hpb::AppendMessagesRequest { messages })
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn calls_beyond_the_concurrency_limit_are_refused_at_once_and_health_still_answers() {
    let app = TestApp::spawn_with(|c| c.protection.max_concurrent_calls = 2).await;
    heavy_conversation(&app, 60).await;
    let open_stream = || async {
        let client = app.user("alice").await;
        let mut stream = client
            .history()
            .fetch_history(hpb::FetchHistoryRequest {
                conversation: Some(peer("bob")),
                page_size: 1,
                max_pages: 60,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        stream.message().await.unwrap().unwrap();
        (client, stream)
    };
    let held = vec![open_stream().await, open_stream().await];

    let started = std::time::Instant::now();
    let refused = app
        .user("alice")
        .await
        .conversations()
        .list_conversations(
            roaming_client::proto::conversation::v1::ListConversationsRequest::default(),
        )
        .await;
    assert_status(refused, Code::ResourceExhausted, "concurrency limit");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "refused quickly"
    );

    let health = app.health("").await;
    assert!(health.is_ok(), "health is exempt from the limit");

    drop(held);
    // Capacity comes back once the streams are gone.
    let mut ok = false;
    for _ in 0..50 {
        if app
            .user("alice")
            .await
            .conversations()
            .list_conversations(
                roaming_client::proto::conversation::v1::ListConversationsRequest::default(),
            )
            .await
            .is_ok()
        {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "capacity returned after the streams ended");
}

#[tokio::test]
async fn a_request_larger_than_the_transport_limit_is_resource_exhausted() {
    let app = TestApp::spawn_with(|c| c.protection.max_message_bytes = 4096).await;
    let mut m = new_message(ConversationType::Peer, "alice", "bob", "", "big");
    m.body = vec![0; 8192];
    let result = app
        .service()
        .await
        .history()
        .append_messages(hpb::AppendMessagesRequest { messages: vec![m] })
        .await;
    assert_eq!(result.unwrap_err().code(), Code::ResourceExhausted);
    assert!(
        app.fetch_all("alice", peer("bob"), Direction::Forward)
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn a_call_slower_than_the_server_timeout_is_deadline_exceeded_and_its_statement_cancelled() {
    let app = TestApp::spawn_with(|c| {
        c.protection.max_concurrent_calls = 64;
        c.protection.request_timeout = Duration::from_millis(300).into();
    })
    .await;
    app.peer("alice", "bob", "first").await;
    // Another session holds the conversation's row lock, so the next append waits on it.
    let sql = app.sql().await;
    sql.batch_execute(
        "BEGIN; SELECT * FROM conversations WHERE conv_key = 'p:alice:bob' FOR UPDATE",
    )
    .await
    .unwrap();
    let slow = app
        .service()
        .await
        .history()
        .append_messages(one_message(
            ConversationType::Peer,
            "alice",
            "bob",
            "blocked",
            "blocked-1",
        ))
        .await;
    assert_eq!(slow.unwrap_err().code(), Code::DeadlineExceeded);
    // The abandoned statement was cancelled: nothing of roaming's waits on the lock any more.
    let mut waiting = i64::MAX;
    for _ in 0..50 {
        let row = sql
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'roaming' \
                 AND wait_event_type = 'Lock' AND datname = current_database()",
                &[],
            )
            .await
            .unwrap();
        waiting = row.get(0);
        if waiting == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(waiting, 0, "the blocked INSERT was cancelled");
    sql.batch_execute("COMMIT").await.unwrap();
    // Nothing was stored by the cancelled call, and the service works on.
    assert_eq!(
        bodies(
            &app.fetch_all("alice", peer("bob"), Direction::Forward)
                .await
        ),
        vec!["first"]
    );
    let next = app.peer("alice", "bob", "second").await;
    assert_eq!(next.seq, 2);
}

#[tokio::test]
async fn a_client_that_gives_up_cancels_its_statement() {
    let app = TestApp::spawn().await;
    app.peer("alice", "bob", "first").await;
    let sql = app.sql().await;
    sql.batch_execute(
        "BEGIN; SELECT * FROM conversations WHERE conv_key = 'p:alice:bob' FOR UPDATE",
    )
    .await
    .unwrap();
    let client = roaming_client::Client::builder(app.endpoint.clone())
        .token(app.token("gateway", true))
        .request_timeout(Duration::from_millis(200))
        .connect()
        .await
        .unwrap();
    let result = client
        .history()
        .append_messages(one_message(
            ConversationType::Peer,
            "alice",
            "bob",
            "blocked",
            "blocked-2",
        ))
        .await;
    assert!(matches!(
        result.unwrap_err().code(),
        Code::DeadlineExceeded | Code::Cancelled
    ));
    let mut waiting = i64::MAX;
    for _ in 0..100 {
        waiting = sql
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'roaming' \
                 AND wait_event_type = 'Lock' AND datname = current_database()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        waiting, 0,
        "the server stopped the statement when the client went away"
    );
    sql.batch_execute("COMMIT").await.unwrap();
    assert_eq!(
        app.fetch_all("alice", peer("bob"), Direction::Forward)
            .await
            .len(),
        1
    );
}
