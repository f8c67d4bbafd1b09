//! gRPC over TLS: a server configured with `ROAMING_TLS_CERT` / `ROAMING_TLS_KEY` (a
//! certificate for `localhost` only, signed by a CA the test makes), reached at
//! `https://localhost:<port>` by a client that trusts that CA. Health and reflection are
//! served over the same TLS port; a plaintext client, and a client that does not trust the
//! CA, get nothing.

use futures::TryStreamExt as _;
use roaming_client::{Client, ConversationRef, ConversationType, NewMessage, RetryPolicy};
use roaming_testkit::tls::{TempDir, TestCa};
use roaming_testkit::{RunningServer, TestApp};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// A TLS server over a test's database (the `TestApp`'s, served plaintext too).
struct TlsServer {
    app: TestApp,
    /// `https://localhost:<port>`.
    endpoint: String,
    /// The CA that signed the server's certificate, PEM.
    ca_pem: String,
    _server: RunningServer,
    _dir: TempDir,
}

impl TlsServer {
    async fn start() -> TlsServer {
        let app = TestApp::spawn().await;
        let ca = TestCa::new("Roaming client test CA");
        let cert = ca.server_cert(&["localhost"]);
        let dir = TempDir::new("roaming-client-tls");
        let mut config = roaming_testkit::test_config();
        config.database.database_url = app.db_url.clone();
        config.tls.tls_cert = Some(dir.write("server.crt", &cert.cert_pem));
        config.tls.tls_key = Some(dir.write("server.key", &cert.key_pem));
        let tls_app = roaming::App::new(config, app.store.clone()).expect("the TLS settings load");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = RunningServer::start(tls_app, listener);
        TlsServer {
            endpoint: format!("https://localhost:{}", server.addr.port()),
            ca_pem: ca.cert_pem,
            app,
            _server: server,
            _dir: dir,
        }
    }

    /// Trusting the test's CA only.
    fn tls(&self) -> ClientTlsConfig {
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca_pem))
    }

    /// A typed client holding a token for `sub`.
    async fn client(&self, sub: &str, service: bool) -> Client {
        Client::builder(self.endpoint.clone())
            .token(self.app.token(sub, service))
            .tls(self.tls())
            .connect()
            .await
            .expect("connect over TLS")
    }

    /// A raw channel over TLS.
    async fn channel(&self) -> Channel {
        Endpoint::from_shared(self.endpoint.clone())
            .unwrap()
            .tls_config(self.tls())
            .unwrap()
            .connect()
            .await
            .expect("connect over TLS")
    }
}

#[tokio::test]
async fn a_client_trusting_the_ca_appends_and_fetches_over_https() {
    let server = TlsServer::start().await;
    let gateway = server.client("gateway", true).await;
    let stored = gateway
        .append([NewMessage::new(ConversationType::Peer, "alice", "bob", "c-1").text("hi bob")])
        .await
        .expect("append over TLS");
    assert_eq!(stored.len(), 1);
    let alice = server.client("alice", false).await;
    let history: Vec<_> = alice
        .fetch_history(ConversationRef::peer("bob"))
        .messages()
        .try_collect()
        .await
        .expect("fetch over TLS");
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].body, b"hi bob");
}

#[tokio::test]
async fn health_and_reflection_answer_over_tls() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let server = TlsServer::start().await;
    let channel = server.channel().await;

    let status = tonic_health::pb::health_client::HealthClient::new(channel.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health over TLS")
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let response = ServerReflectionClient::new(channel)
        .server_reflection_info(futures::stream::iter(vec![request]))
        .await
        .expect("reflection over TLS")
        .into_inner()
        .message()
        .await
        .unwrap()
        .expect("one answer");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer {response:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names
            .iter()
            .any(|n| n == "roaming.history.v1.HistoryService"),
        "{names:?}"
    );
}

/// Connects with `builder` (no retries) and makes one call.
async fn one_call(builder: roaming_client::ClientBuilder) -> Result<(), roaming_client::Error> {
    let client = builder.retry(RetryPolicy::none()).connect().await?;
    client.list_conversations().page().await.map(|_| ())
}

#[tokio::test]
async fn a_plaintext_client_and_a_client_without_the_ca_get_nothing() {
    let server = TlsServer::start().await;
    let port = server.endpoint.rsplit(':').next().unwrap().to_owned();
    let token = server.app.token("alice", false);

    let plaintext =
        one_call(Client::builder(format!("http://127.0.0.1:{port}")).token(&token)).await;
    assert!(
        plaintext.is_err(),
        "plaintext to a TLS server: {plaintext:?}"
    );

    // The platform's roots (the client's default for https) do not include the test's CA:
    // the handshake fails (or, on a machine without a CA bundle, there are no roots at all).
    let untrusted = one_call(Client::builder(server.endpoint.clone()).token(&token)).await;
    let refused = untrusted.as_ref().err().map(ToString::to_string);
    assert!(
        refused
            .as_deref()
            .is_some_and(|e| e.contains("invalid peer certificate") || e.contains("native certs")),
        "https without the CA: {untrusted:?}"
    );
    println!("plaintext: {plaintext:?}\nuntrusted: {untrusted:?}");

    // The same server answers the client that trusts its CA (so the failures above are the
    // transport's, not the server's).
    let trusting = one_call(
        Client::builder(server.endpoint.clone())
            .token(&token)
            .tls(server.tls()),
    )
    .await;
    assert!(trusting.is_ok(), "{trusting:?}");
}
