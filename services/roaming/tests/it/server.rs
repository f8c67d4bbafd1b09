//! Health, reflection and graceful shutdown.

use crate::helpers::*;
use roaming_client::proto::common::v1::ConversationType;
use roaming_client::proto::history::v1 as hpb;
use std::time::Duration;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

async fn health(app: &TestApp, service: &str) -> Result<i32, tonic::Status> {
    app.health(service).await
}

#[tokio::test]
async fn health_answers_serving_for_both_services_without_a_token() {
    let app = TestApp::spawn().await;
    for service in [
        "",
        "roaming.history.v1.HistoryService",
        "roaming.conversation.v1.ConversationService",
        roaming::LIVENESS,
    ] {
        assert_eq!(
            health(&app, service).await.unwrap(),
            ServingStatus::Serving as i32,
            "{service}"
        );
    }
}

#[tokio::test]
async fn a_single_service_process_serves_only_that_service() {
    let app =
        TestApp::spawn_with(|c| c.services = vec![roaming::config::ServiceName::History]).await;
    assert_eq!(
        health(&app, "roaming.history.v1.HistoryService")
            .await
            .unwrap(),
        ServingStatus::Serving as i32
    );
    let unknown = health(&app, "roaming.conversation.v1.ConversationService").await;
    assert_eq!(unknown.unwrap_err().code(), tonic::Code::NotFound);
    let listed = app
        .user("alice")
        .await
        .conversations()
        .list_conversations(
            roaming_client::proto::conversation::v1::ListConversationsRequest::default(),
        )
        .await;
    assert_eq!(listed.unwrap_err().code(), tonic::Code::Unimplemented);
}

#[tokio::test]
async fn reflection_lists_the_public_services_in_both_versions() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient as V1;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let app = TestApp::spawn().await;
    let channel = tonic::transport::Endpoint::from_shared(app.endpoint.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = V1::new(channel.clone())
        .server_reflection_info(futures::stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer {response:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        "roaming.history.v1.HistoryService",
        "roaming.conversation.v1.ConversationService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }

    use tonic_reflection::pb::v1alpha::ServerReflectionRequest as AlphaReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient as V1Alpha;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest as AlphaRequest;
    let request = AlphaReflectionRequest {
        host: String::new(),
        message_request: Some(AlphaRequest::FileContainingSymbol(
            "roaming.history.v1.HistoryService".into(),
        )),
    };
    let mut responses = V1Alpha::new(channel)
        .server_reflection_info(futures::stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    assert!(response.message_response.is_some());
}

#[tokio::test]
async fn shutdown_reports_not_serving_and_ends_open_streams_with_unavailable() {
    let mut app = TestApp::spawn().await;
    // A stream of 60 one-message pages of 60 KB that the reader does not drain: 3.6 MB is more
    // than the client's stream window (2 MB) and the server's send buffer together, so some
    // pages are still to be read from the database when shutdown begins.
    let body = "x".repeat(60_000);
    for i in 0..60 {
        app.peer("alice", "bob", &format!("m{i}{body}")).await;
    }
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
    assert!(stream.message().await.unwrap().is_some());
    // Those pages wait on a lock until the server ends the stream: however fast the reader
    // drains what was sent, the stream cannot reach its end before shutdown ends it.
    let blocker = app.sql().await;
    blocker
        .batch_execute("BEGIN; LOCK TABLE messages IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();

    let channel = tonic::transport::Endpoint::from_shared(app.endpoint.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    let mut watch = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.message().await.unwrap().unwrap().status,
        ServingStatus::Serving as i32
    );

    let stopping = tokio::spawn(async move { app.stop().await });
    let status = tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await
        .unwrap();
    if let Ok(Some(s)) = status {
        assert_eq!(s.status, ServingStatus::NotServing as i32);
    }
    // The open stream ends with a status, not silently.
    let mut ended = None;
    for _ in 0..200 {
        match stream.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => break,
            Err(s) => {
                ended = Some(s.code());
                break;
            }
        }
    }
    assert_eq!(ended, Some(tonic::Code::Unavailable));
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let _ = ConversationType::Peer;
}
