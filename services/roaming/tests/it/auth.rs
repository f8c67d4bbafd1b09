//! Callers and authentication: tokens, roles and act-as.

use crate::helpers::*;
use roaming_client::proto::common::v1::ConversationType;
use roaming_client::proto::history::v1 as hpb;
use roaming_runtime::auth::{Audience, Claims, TokenRules, now_secs};
use roaming_runtime::{Authenticator, TokenSigner};
use std::time::Duration;
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
        ..Default::default()
    });
    let not_yet = app.signer.sign(&Claims {
        sub: "alice".into(),
        exp: now + 7200,
        iat: None,
        nbf: Some(now + 3600),
        role: None,
        ..Default::default()
    });
    let wrong_key = TokenSigner::hs256("another-secret-0123456789abcdef0123456789")
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
        .append_messages(one_message(
            ConversationType::Peer,
            "alice",
            "bob",
            "hi",
            "c1",
        ))
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
    let err = Authenticator::from_settings(None, None, &TokenRules::DEFAULT)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ROAMING_JWT_SECRET") && err.contains("ROAMING_JWT_PUBLIC_KEY"),
        "{err}"
    );
}

const AUDIENCE: &str = "roaming-api";
const ISSUER: &str = "https://idp.example";
/// A test-only Ed25519 public key (the reliability suite's `tests/keys/ed25519_public.pem`).
const ED25519_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAigmWfAVX30vR5bleBwF/LSR6JAXunLFpTdycQUqyBw0=
-----END PUBLIC KEY-----
";
const CURSOR_KEY: &str = "test-cursor-key-0123456789abcdef0123456789";

/// A user token for alice with these claims (and `sub`), signed with the test secret.
fn alice_with(app: &TestApp, claims: Claims) -> String {
    app.signer.sign(&Claims {
        sub: "alice".into(),
        ..claims
    })
}

/// Asserts UNAUTHENTICATED saying `why`, without repeating any of `token_text`.
#[track_caller]
fn refused<T: std::fmt::Debug>(result: Result<T, tonic::Status>, why: &str, token_text: &[&str]) {
    let status = result.expect_err(why);
    assert_eq!(status.code(), Code::Unauthenticated, "{why}: {status:?}");
    assert!(
        status.message().contains(why),
        "{:?} should say {why:?}",
        status.message()
    );
    for text in token_text {
        assert!(
            !status.message().contains(text),
            "{:?} repeats {text:?}",
            status.message()
        );
    }
}

#[tokio::test]
async fn a_configured_audience_and_issuer_are_required_and_must_match() {
    let app = TestApp::spawn_with(|c| {
        c.keys.jwt_audience = Some(AUDIENCE.into());
        c.keys.jwt_issuer = Some(ISSUER.into());
    })
    .await;
    let now = now_secs();
    let valid = |aud: Option<Audience>, iss: Option<&str>| Claims {
        exp: now + 600,
        iat: Some(now),
        aud,
        iss: iss.map(str::to_owned),
        ..Default::default()
    };
    let one = |a: &str| Some(Audience::One(a.into()));
    let many = |a: &[&str]| Some(Audience::Many(a.iter().map(|s| s.to_string()).collect()));
    // The test app's signer carries the configured audience and issuer.
    assert!(
        fetch_with(&app, Some(&app.token("alice", false)), None)
            .await
            .is_ok()
    );
    for (what, claims) in [
        ("aud as a string", valid(one(AUDIENCE), Some(ISSUER))),
        (
            "aud as an array holding it",
            valid(many(&["other-api", AUDIENCE]), Some(ISSUER)),
        ),
    ] {
        let token = alice_with(&app, claims);
        assert!(fetch_with(&app, Some(&token), None).await.is_ok(), "{what}");
    }
    for (claims, why, echoed) in [
        (valid(None, Some(ISSUER)), "the aud claim is required", None),
        (
            valid(one("billing-api"), Some(ISSUER)),
            "audience (aud) is not this server",
            Some("billing-api"),
        ),
        (
            valid(one("roaming-API"), Some(ISSUER)),
            "audience (aud) is not this server",
            Some("roaming-API"),
        ),
        (
            valid(many(&["billing-api", "mail-api"]), Some(ISSUER)),
            "audience (aud) is not this server",
            Some("billing-api"),
        ),
        (
            valid(many(&[]), Some(ISSUER)),
            "audience (aud) is not this server",
            None,
        ),
        (
            valid(one(AUDIENCE), None),
            "the iss claim is required",
            None,
        ),
        (
            valid(one(AUDIENCE), Some("https://evil.example")),
            "issuer (iss) is not the expected one",
            Some("evil.example"),
        ),
    ] {
        let token = alice_with(&app, claims);
        let echoed: Vec<&str> = echoed.into_iter().collect();
        refused(fetch_with(&app, Some(&token), None).await, why, &echoed);
    }
}

#[tokio::test]
async fn without_a_configured_audience_a_token_naming_one_is_refused() {
    let app = TestApp::spawn().await;
    let now = now_secs();
    let token = alice_with(
        &app,
        Claims {
            exp: now + 600,
            aud: Some(Audience::One("billing-api".into())),
            ..Default::default()
        },
    );
    refused(
        fetch_with(&app, Some(&token), None).await,
        "names an audience (aud), and this server is configured with none",
        &["billing-api"],
    );
}

#[tokio::test]
async fn tokens_valid_for_too_long_are_refused_u64_max_exp_included() {
    // The default maximum (a day) refuses exp = u64::MAX, with or without iat.
    let app = TestApp::spawn().await;
    let now = now_secs();
    for iat in [Some(now), None] {
        let token = alice_with(
            &app,
            Claims {
                exp: u64::MAX,
                iat,
                ..Default::default()
            },
        );
        refused(
            fetch_with(&app, Some(&token), None).await,
            "valid for longer than this server accepts",
            &[u64::MAX.to_string().as_str()],
        );
    }
    let day = TokenRules::DEFAULT_MAX_LIFETIME.as_secs();
    let a_day = app.signer.mint("alice", false, now, day);
    assert!(
        fetch_with(&app, Some(&a_day), None).await.is_ok(),
        "a day is fine"
    );
    let issued_later = alice_with(
        &app,
        Claims {
            exp: u64::MAX,
            iat: Some(u64::MAX - 60),
            ..Default::default()
        },
    );
    refused(
        fetch_with(&app, Some(&issued_later), None).await,
        "issued in the future (iat)",
        &[],
    );

    // A server with a shorter maximum.
    let app =
        TestApp::spawn_with(|c| c.keys.jwt_max_lifetime = Duration::from_secs(3600).into()).await;
    let hour = app.signer.mint("gateway", true, now, 3600);
    assert!(fetch_with(&app, Some(&hour), Some("alice")).await.is_ok());
    let two_hours = app.signer.mint("gateway", true, now, 7200);
    refused(
        fetch_with(&app, Some(&two_hours), Some("alice")).await,
        "exp - iat over 3600 s",
        &[],
    );
    let no_iat = alice_with(
        &app,
        Claims {
            exp: now + 7200,
            ..Default::default()
        },
    );
    refused(
        fetch_with(&app, Some(&no_iat), None).await,
        "over 3600 s from now",
        &[],
    );
}

/// A store whose pool opens no connection until asked (`App::new` needs one).
fn idle_store() -> roaming_store::Store {
    let db = roaming_store::db::parse_url("postgres://postgres@127.0.0.1:1/never_opened").unwrap();
    roaming_store::Store::open(db, &roaming_store::db::PoolSettings::DEFAULT).unwrap()
}

/// `App::new`'s error for `test_config()` as `configure` changes it.
fn app_error(configure: impl FnOnce(&mut roaming::config::ServeConfig)) -> String {
    let mut config = test_config();
    configure(&mut config);
    format!("{:#}", roaming::App::new(config, idle_store()).unwrap_err())
}

#[tokio::test]
async fn app_new_refuses_short_secrets_public_keys_without_a_cursor_key_and_bad_cursor_keys() {
    let short = "only-31-bytes-of-secret-0123456";
    assert_eq!(short.len(), 31);
    let err = app_error(|c| c.keys.jwt_secret = Some(short.into()));
    assert!(
        err.contains("ROAMING_JWT_SECRET must be at least 32 bytes (it has 31"),
        "{err}"
    );
    assert!(!err.contains(short), "{err}");
    let err = Authenticator::from_settings(Some(short), None, &TokenRules::DEFAULT)
        .unwrap_err()
        .to_string();
    assert!(err.contains("RFC 7518"), "{err}");

    let public = |c: &mut roaming::config::ServeConfig| {
        c.keys.jwt_secret = None;
        c.keys.jwt_public_key = Some(ED25519_PUBLIC.into());
    };
    let err = app_error(public);
    assert!(
        err.contains("ROAMING_CURSOR_KEY is required with ROAMING_JWT_PUBLIC_KEY"),
        "{err}"
    );
    let err = app_error(|c| {
        public(c);
        c.keys.cursor_key = Some("short-cursor-key".into());
    });
    assert!(
        err.contains("ROAMING_CURSOR_KEY must be at least 32 bytes (it has 16)"),
        "{err}"
    );
    assert!(!err.contains("short-cursor-key"), "{err}");
    let err = app_error(|c| {
        public(c);
        c.keys.cursor_key = Some(CURSOR_KEY.into());
        c.keys.cursor_key_previous = Some("short-previous".into());
    });
    assert!(
        err.contains("ROAMING_CURSOR_KEY_PREVIOUS must be at least 32 bytes"),
        "{err}"
    );
    let err = app_error(|c| c.keys.cursor_key_previous = Some(CURSOR_KEY.into()));
    assert!(
        err.contains("ROAMING_CURSOR_KEY_PREVIOUS is set without ROAMING_CURSOR_KEY"),
        "{err}"
    );
    let err = app_error(|c| c.keys.jwt_audience = Some(String::new()));
    assert!(
        err.contains("ROAMING_JWT_AUDIENCE is set but empty"),
        "{err}"
    );
    let err = app_error(|c| c.keys.jwt_max_lifetime = Duration::ZERO.into());
    assert!(
        err.contains("ROAMING_JWT_MAX_LIFETIME must be more than 0"),
        "{err}"
    );

    // What is accepted: a public key with a cursor key; a secret with or without one.
    let mut config = test_config();
    public(&mut config);
    config.keys.cursor_key = Some(CURSOR_KEY.into());
    assert!(roaming::App::new(config, idle_store()).is_ok());
    let mut config = test_config();
    config.keys.cursor_key = Some(CURSOR_KEY.into());
    assert!(roaming::App::new(config, idle_store()).is_ok());
    assert!(roaming::App::new(test_config(), idle_store()).is_ok());
}

/// `roaming <args>` with only `env` for settings; (success, stderr).
fn run_roaming(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_roaming"));
    command.args(args);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ROAMING_") || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    // The key checks come before the database: a malformed URL makes a regression fail at
    // once instead of waiting for a database.
    command.env("ROAMING_DATABASE_URL", "not a database url");
    command.envs(env.iter().copied());
    let output = command.output().expect("roaming runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_binary_refuses_to_start_with_a_short_secret_or_a_public_key_without_a_cursor_key() {
    let short = "short-secret-0123456789";
    for (env, says, secret) in [
        (
            vec![("ROAMING_JWT_SECRET", short)],
            "ROAMING_JWT_SECRET must be at least 32 bytes",
            Some(short),
        ),
        (
            vec![("ROAMING_JWT_PUBLIC_KEY", ED25519_PUBLIC)],
            "ROAMING_CURSOR_KEY is required with ROAMING_JWT_PUBLIC_KEY",
            None,
        ),
        (
            vec![
                ("ROAMING_JWT_PUBLIC_KEY", ED25519_PUBLIC),
                ("ROAMING_CURSOR_KEY", "cursor-key-too-short"),
            ],
            "ROAMING_CURSOR_KEY must be at least 32 bytes",
            Some("cursor-key-too-short"),
        ),
    ] {
        let (ok, _, stderr) = run_roaming(&["serve"], &env);
        assert!(!ok, "serve started with {env:?}");
        assert!(
            stderr.contains(says),
            "stderr {stderr:?} should say {says:?}"
        );
        assert!(
            !stderr.contains("database"),
            "refused before the database: {stderr}"
        );
        if let Some(secret) = secret {
            assert!(
                !stderr.contains(secret),
                "stderr repeats the secret: {stderr}"
            );
        }
    }
    let (ok, _, stderr) = run_roaming(
        &["token", "--sub", "alice"],
        &[("ROAMING_JWT_SECRET", short)],
    );
    assert!(
        !ok && stderr.contains("ROAMING_JWT_SECRET must be at least 32 bytes"),
        "{stderr}"
    );
}

#[test]
fn roaming_token_mints_audience_and_issuer() {
    let secret = roaming_testkit::SECRET;
    let rules = TokenRules {
        audience: Some(AUDIENCE.into()),
        issuer: Some(ISSUER.into()),
        ..TokenRules::DEFAULT
    };
    let auth = Authenticator::from_settings(Some(secret), None, &rules).unwrap();
    let check = |token: &str| {
        let mut metadata = tonic::metadata::MetadataMap::new();
        metadata.insert(
            "authorization",
            format!("Bearer {}", token.trim()).parse().unwrap(),
        );
        auth.authenticate(&metadata)
    };
    let (ok, token, stderr) = run_roaming(
        &[
            "token", "--sub", "alice", "--aud", AUDIENCE, "--iss", ISSUER,
        ],
        &[("ROAMING_JWT_SECRET", secret)],
    );
    assert!(ok, "{stderr}");
    assert_eq!(check(&token).unwrap().subject, "alice");
    // From the server's own settings' environment twins, too.
    let (ok, token, stderr) = run_roaming(
        &["token", "--sub", "gateway", "--role", "service"],
        &[
            ("ROAMING_JWT_SECRET", secret),
            ("ROAMING_JWT_AUDIENCE", AUDIENCE),
            ("ROAMING_JWT_ISSUER", ISSUER),
        ],
    );
    assert!(ok, "{stderr}");
    assert!(check(&token).unwrap().is_service);
    // Without them, the server refuses it.
    let (ok, token, _) = run_roaming(
        &["token", "--sub", "alice"],
        &[("ROAMING_JWT_SECRET", secret)],
    );
    assert!(ok);
    assert!(check(&token).is_err());
}
