//! Every call is one span (rpc, caller, acting user, conversation, status code, latency) in
//! the real binary's log at `RUST_LOG=info`, and service-token actions leave audit lines.

use crate::helpers::*;
use roaming_client::proto::common::v1::ConversationType;
use roaming_client::proto::history::v1 as hpb;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Command;

/// `roaming serve` over the test's database, logging JSON lines at info; returns the child
/// and its log lines.
async fn serve_binary(
    app: &TestApp,
) -> (
    tokio::process::Child,
    tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    String,
) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_roaming"))
        .arg("serve")
        .env_clear()
        .env("ROAMING_LISTEN_ADDR", "127.0.0.1:0")
        .env("ROAMING_DATABASE_URL", &app.db_url)
        .env("ROAMING_JWT_SECRET", roaming_testkit::SECRET)
        .env("ROAMING_LOG_JSON", "true")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("roaming serve starts");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the server logs within 30 s")
            .unwrap()
            .expect("the server is running");
        let event: serde_json::Value = serde_json::from_str(&line).expect("JSON log lines");
        if event["fields"]["message"] == "serving" {
            break event["fields"]["addr"].as_str().unwrap().to_owned();
        }
    };
    (child, lines, format!("http://{addr}"))
}

/// The next log line for which `pick` says yes.
async fn next_event(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    pick: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the awaited line within 30 s")
            .unwrap()
            .expect("the server is running");
        let event: serde_json::Value = serde_json::from_str(&line).expect("JSON log lines");
        if pick(&event) {
            return event;
        }
    }
}

#[tokio::test]
async fn every_call_logs_one_span_with_its_rpc_caller_conversation_code_and_latency() {
    let app = TestApp::spawn().await;
    let (_child, mut lines, endpoint) = serve_binary(&app).await;
    let gateway = roaming_client::Client::builder(endpoint.clone())
        .token(app.token("gateway", true))
        .connect()
        .await
        .unwrap();
    gateway
        .history()
        .append_messages(one_message(
            ConversationType::Peer,
            "alice",
            "bob",
            "hi",
            "t-1",
        ))
        .await
        .unwrap();
    let audit = next_event(&mut lines, |e| e["target"] == "roaming::audit").await;
    assert_eq!(audit["fields"]["service"], "gateway");
    assert_eq!(audit["fields"]["action"], "append");
    assert_eq!(audit["fields"]["conversation"], "p:alice:bob");
    assert_eq!(audit["span"]["rpc"], "AppendMessages", "{audit}");

    let alice = roaming_client::Client::builder(endpoint)
        .token(app.token("alice", false))
        .connect()
        .await
        .unwrap();
    let mut pages = alice
        .history()
        .fetch_history(hpb::FetchHistoryRequest {
            conversation: Some(peer("bob")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    while pages.message().await.unwrap().is_some() {}
    let finished = next_event(&mut lines, |e| {
        e["fields"]["message"] == "call finished" && e["span"]["rpc"] == "FetchHistory"
    })
    .await;
    let span = &finished["span"];
    assert_eq!(span["name"], "rpc");
    assert_eq!(span["sub"], "alice");
    assert_eq!(span["user"], "alice");
    assert_eq!(span["conversation"], "p:alice:bob");
    assert_eq!(span["code"], "Ok");
    assert!(span["latency_ms"].as_f64().is_some(), "{finished}");

    // A refused call is one span too, with its code.
    let refused = alice
        .history()
        .remove_messages(hpb::RemoveMessagesRequest {
            conversation: Some(peer("bob")),
            msg_ids: vec!["not-an-id".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    let finished = next_event(&mut lines, |e| {
        e["fields"]["message"] == "call finished" && e["span"]["rpc"] == "RemoveMessages"
    })
    .await;
    assert_eq!(finished["span"]["code"], "InvalidArgument");
}
