//! Callers and authentication: tokens, roles and act-as.

use crate::helpers::*;
use roaming_client::proto::common::v1::ConversationType;
use roaming_client::proto::history::v1 as hpb;
use roaming_runtime::auth::{Claims, now_secs};
use tonic::Code;

fn fetch_request() -> hpb::FetchHistoryRequest {
    hpb::FetchHistoryRequest {
        conversation: Some(peer("bob")),
        ..Default::default()
    }
}

async fn fetch_with(
    app: &TestApp,
    token: Option<&str>,
    act_as: Option<&str>,
) -> Result<Vec<hpb::FetchHistoryResponse>, tonic::Status> {
    fetch_pages(&app.client_with(token, act_as).await, fetch_request()).await
}

#[tokio::test]
async fn calls_without_a_valid_token_are_unauthenticated() {
    let app = TestApp::spawn().await;
    let now = now_secs();
    let expired = app.signer.sign(&Claims {
        sub: "alice".into(),
        exp: now - 3600,
        iat: None,
        nbf: None,
        role: None,
    });
    let not_yet = app.signer.sign(&Claims {
        sub: "alice".into(),
        exp: now + 7200,
        iat: None,
        nbf: Some(now + 3600),
        role: None,
    });
    let wrong_key = roaming_runtime::TokenSigner::hs256("another-secret-0123456789")
        .mint("alice", false, now, 60);
    // alg: none, unsigned.
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&format!(r#"{{"sub":"alice","exp":{}}}"#, now + 600))
    );
    // No exp claim.
    let no_exp = {
        use hmac::{Hmac, Mac};
        let signing_input = format!(
            "{}.{}",
            b64(r#"{"alg":"HS256","typ":"JWT"}"#),
            b64(r#"{"sub":"alice"}"#)
        );
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(signing_input.as_bytes());
        let sig =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{sig}")
    };
    // A user id that breaks the id rule.
    let bad_sub = app.signer.mint("not a user!", false, now, 60);
    for (what, token) in [
        ("missing", None),
        ("garbage", Some("not-a-jwt")),
        ("expired", Some(expired.as_str())),
        ("not yet valid", Some(not_yet.as_str())),
        ("wrong key", Some(wrong_key.as_str())),
        ("alg none", Some(none.as_str())),
        ("no exp", Some(no_exp.as_str())),
        ("bad sub", Some(bad_sub.as_str())),
    ] {
        let result = fetch_with(&app, token, None).await;
        assert_eq!(result.unwrap_err().code(), Code::Unauthenticated, "{what}");
    }
}

#[tokio::test]
async fn user_tokens_cannot_call_backend_rpcs_or_act_as_others() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let append = alice
        .history()
        .append_messages(hpb::AppendMessagesRequest {
            messages: vec![new_message(
                ConversationType::Peer,
                "alice",
                "bob",
                "hi",
                "c1",
            )],
        })
        .await;
    assert_status(append, Code::PermissionDenied, "AppendMessages");

    let token = app.token("alice", false);
    let as_bob = fetch_with(&app, Some(&token), Some("bob")).await;
    assert_eq!(as_bob.unwrap_err().code(), Code::PermissionDenied);
    // Naming oneself is harmless.
    assert!(fetch_with(&app, Some(&token), Some("alice")).await.is_ok());
}

#[tokio::test]
async fn service_tokens_act_for_the_named_user_and_need_one_on_user_scoped_rpcs() {
    let app = TestApp::spawn().await;
    app.peer("alice", "bob", "hello").await;
    let token = app.token("gateway", true);
    let without = fetch_with(&app, Some(&token), None).await;
    assert_status(without, Code::InvalidArgument, "x-roaming-user");
    let invalid = fetch_with(&app, Some(&token), Some("not valid!")).await;
    assert_status(invalid, Code::InvalidArgument, "x-roaming-user");
    let pages = fetch_with(&app, Some(&token), Some("alice")).await.unwrap();
    assert_eq!(bodies(&pages[0].messages), vec!["hello"]);
    assert_eq!(pages[0].messages[0].conversation, Some(peer("bob")));
}

#[test]
fn a_server_without_a_key_refuses_to_start_and_names_the_setting() {
    let err = roaming_runtime::Authenticator::from_settings(None, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ROAMING_JWT_SECRET") && err.contains("ROAMING_JWT_PUBLIC_KEY"),
        "{err}"
    );
}
