//! Token verification: EdDSA, RS256 and HS256 servers accept their own tokens, refuse forged ones.

use super::forged::forged_tokens;
use super::support::{
    Meta, Raw, b64, claims, codes_of_every_rpc, fingerprint, key, sign_with, unsigned,
};
use jsonwebtoken::{Algorithm, EncodingKey};
use roaming_proto::common::v1::ConversationType;
use roaming_proto::conversation::v1 as cpb;
use roaming_proto::history::v1 as hpb;
use roaming_runtime::TokenSigner;
use roaming_runtime::auth::now_secs;
use roaming_testkit::{RunningServer, TestApp, one_message, peer};
use std::time::Duration;
use tonic::Code;

/// A second server over a test's database whose tokens are verified with a public key.
async fn key_server(app: &TestApp, public_pem: &str) -> RunningServer {
    let mut config = app.config.clone();
    config.keys.jwt_secret = None;
    config.keys.jwt_public_key = Some(public_pem.to_owned());
    // A public-key server needs its own cursor key (see cursors.rs).
    config.keys.cursor_key = Some("tokens-test-cursor-key-0123456789abcdef".to_owned());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    app.serve_also(config, listener)
}

async fn public_key_configuration(
    alg: Algorithm,
    private: &str,
    public: &str,
    other: &str,
    foreign: &str,
) {
    let (private, public, other, foreign) = (key(private), key(public), key(other), key(foreign));
    let app = TestApp::spawn().await;
    let mut server = key_server(&app, &public).await;
    let raw = Raw::connect(&server.endpoint).await;
    let sql = app.sql().await;

    // Correctly signed tokens work, user and service alike, on every RPC they may call.
    let signer = TokenSigner::from_private_pem(&private).unwrap();
    let service = signer.sign(&claims("gateway", true));
    let alice = signer.sign(&claims("alice", false));
    let appended = raw
        .history(Some(&service), None)
        .append_messages(one_message(
            ConversationType::Peer,
            "alice",
            "bob",
            "signed",
            "k-1",
        ))
        .await
        .expect("a correctly signed service token appends");
    assert_eq!(appended.get_ref().results.len(), 1);
    let mut stream = raw
        .history(Some(&alice), None)
        .fetch_history(hpb::FetchHistoryRequest {
            conversation: Some(peer("bob")),
            ..Default::default()
        })
        .await
        .expect("a correctly signed user token fetches")
        .into_inner();
    let page = stream.message().await.unwrap().unwrap();
    assert_eq!(page.messages.len(), 1);
    let listed = raw
        .conversations(Some(&service), Some("bob"))
        .list_conversations(cpb::ListConversationsRequest::default())
        .await
        .expect("a service token acting for bob lists")
        .into_inner();
    assert_eq!(listed.conversations.len(), 1);
    // The test server (HS256) and this one share the database but not the key.
    assert_eq!(
        raw.history(Some(&app.token("alice", false)), None)
            .fetch_history(hpb::FetchHistoryRequest {
                conversation: Some(peer("bob")),
                ..Default::default()
            })
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated,
        "an HS256 token of another server's secret"
    );

    let before = fingerprint(&sql).await;
    let forged = forged_tokens(alg, &private, &public, &other, &foreign);
    let mut refused = 0;
    for (what, token) in &forged {
        for (rpc, code) in codes_of_every_rpc(&raw, Raw::meta(Some(token), Some("alice"))).await {
            assert_eq!(code, Code::Unauthenticated, "{alg:?} server, {what}, {rpc}");
            refused += 1;
        }
    }
    // Authorization that is not a bearer token at all.
    for header in [
        format!("Basic {}", b64("alice:secret")),
        "Bearer".into(),
        "Bearer ".into(),
        format!("Token {alice}"),
        format!("Bearer{alice}"),
    ] {
        let meta = Meta {
            authorization: Some(header.clone()),
            ..Meta::default()
        };
        for (rpc, code) in codes_of_every_rpc(&raw, meta).await {
            assert_eq!(code, Code::Unauthenticated, "{header:?}, {rpc}");
            refused += 1;
        }
    }
    assert_eq!(
        before,
        fingerprint(&sql).await,
        "refused calls wrote nothing"
    );
    println!(
        "security[{alg:?}]: {} forged tokens + 5 malformed headers × 8 RPCs → {refused} refused \
         UNAUTHENTICATED, 0 accepted; correctly signed user and service tokens accepted; \
         nothing written",
        forged.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(10), server.stop()).await;
}

#[tokio::test]
async fn an_eddsa_server_accepts_its_key_and_refuses_forged_confused_and_stale_tokens() {
    public_key_configuration(
        Algorithm::EdDSA,
        "ed25519_private.pem",
        "ed25519_public.pem",
        "ed25519_other_private.pem",
        "rsa_private.pem",
    )
    .await;
}

#[tokio::test]
async fn an_rs256_server_accepts_its_key_and_refuses_forged_confused_and_stale_tokens() {
    public_key_configuration(
        Algorithm::RS256,
        "rsa_private.pem",
        "rsa_public.pem",
        "rsa_other_private.pem",
        "ed25519_private.pem",
    )
    .await;
}

#[tokio::test]
async fn an_hs256_server_refuses_public_key_algorithms_and_other_hmac_sizes() {
    let app = TestApp::spawn().await;
    let raw = Raw::connect(&app.endpoint).await;
    let secret = roaming_testkit::SECRET.as_bytes();
    let mut forged = vec![
        (
            "HS384 with the server's secret",
            sign_with(
                Algorithm::HS384,
                &EncodingKey::from_secret(secret),
                &claims("alice", true),
            ),
        ),
        (
            "HS512 with the server's secret",
            sign_with(
                Algorithm::HS512,
                &EncodingKey::from_secret(secret),
                &claims("alice", true),
            ),
        ),
        (
            "RS256",
            TokenSigner::from_private_pem(&key("rsa_private.pem"))
                .unwrap()
                .sign(&claims("alice", true)),
        ),
        (
            "EdDSA",
            TokenSigner::from_private_pem(&key("ed25519_private.pem"))
                .unwrap()
                .sign(&claims("alice", true)),
        ),
        (
            "HS256 with the secret's prefix",
            TokenSigner::hs256(&roaming_testkit::SECRET[..16]).mint("alice", true, now_secs(), 60),
        ),
    ];
    let payload = serde_json::json!({"sub": "alice", "exp": now_secs() + 600, "role": "service"});
    forged.push((
        "alg none",
        unsigned(r#"{"alg":"none","typ":"JWT"}"#, &payload, ""),
    ));
    let sql = app.sql().await;
    let before = fingerprint(&sql).await;
    let mut refused = 0;
    for (what, token) in &forged {
        for (rpc, code) in codes_of_every_rpc(&raw, Raw::meta(Some(token), None)).await {
            assert_eq!(code, Code::Unauthenticated, "{what}, {rpc}");
            refused += 1;
        }
    }
    assert_eq!(before, fingerprint(&sql).await);
    println!(
        "security[HS256]: {} foreign-algorithm tokens × 8 RPCs → {refused} refused",
        forged.len()
    );
}
