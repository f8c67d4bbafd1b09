//! Security (issue 7, item 8): tokens that must be refused (alg none, HS/RS key confusion,
//! wrong keys, unexpected algorithms, expired and not-yet-valid, malformed claims), public-key
//! configurations (EdDSA, RS256) accepting what their key signed, roles and act-as on every
//! RPC, and 10,000 randomized cross-user requests that must never return a row of anybody
//! else's view.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use roaming_proto::common::v1::{ConversationRef, ConversationType, Message};
use roaming_proto::conversation::v1 as cpb;
use roaming_proto::conversation::v1::conversation_service_client::ConversationServiceClient;
use roaming_proto::history::v1 as hpb;
use roaming_proto::history::v1::history_service_client::HistoryServiceClient;
use roaming_runtime::auth::{Claims, now_secs};
use roaming_runtime::{Authenticator, CursorSealer, TokenSigner};
use roaming_testkit::{TestApp, TestOptions, conv, new_message, peer};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tonic::Code;
use tonic::metadata::AsciiMetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

fn key(name: &str) -> String {
    let path = format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Metadata attached to every call, sent exactly as given (no client-side checks).
#[derive(Clone, Default)]
struct Meta {
    authorization: Option<String>,
    act_as: Option<String>,
}

impl tonic::service::Interceptor for Meta {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(a) = &self.authorization {
            let v: AsciiMetadataValue = a.parse().expect("ASCII authorization");
            req.metadata_mut().insert("authorization", v);
        }
        if let Some(u) = &self.act_as {
            let v: AsciiMetadataValue = u.parse().expect("ASCII act-as");
            req.metadata_mut().insert("x-roaming-user", v);
        }
        Ok(req)
    }
}

type History = HistoryServiceClient<InterceptedService<Channel, Meta>>;
type Conversations = ConversationServiceClient<InterceptedService<Channel, Meta>>;

/// Raw clients over one channel, with any metadata.
#[derive(Clone)]
struct Raw {
    channel: Channel,
}

impl Raw {
    async fn connect(endpoint: &str) -> Self {
        let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
            .unwrap()
            .connect()
            .await
            .expect("connect");
        Self { channel }
    }

    fn meta(token: Option<&str>, act_as: Option<&str>) -> Meta {
        Meta {
            authorization: token.map(|t| format!("Bearer {t}")),
            act_as: act_as.map(str::to_owned),
        }
    }

    fn history(&self, token: Option<&str>, act_as: Option<&str>) -> History {
        HistoryServiceClient::with_interceptor(self.channel.clone(), Self::meta(token, act_as))
    }

    fn conversations(&self, token: Option<&str>, act_as: Option<&str>) -> Conversations {
        ConversationServiceClient::with_interceptor(self.channel.clone(), Self::meta(token, act_as))
    }

    fn history_with(&self, meta: Meta) -> History {
        HistoryServiceClient::with_interceptor(self.channel.clone(), meta)
    }
}

/// A second server over a test's database whose tokens are verified with a public key.
struct KeyServer {
    endpoint: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl KeyServer {
    async fn start(app: &TestApp, public_pem: &str) -> Self {
        let mut config = TestOptions::default().build_app(app.store.clone(), app.clock.clone());
        config.auth = Arc::new(Authenticator::from_settings(None, Some(public_pem)).unwrap());
        config.sealer = CursorSealer::derive(public_pem.as_bytes());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(roaming::serve(config, listener, async {
            let _ = rx.await;
        }));
        Self {
            endpoint: format!("http://{addr}"),
            stop: Some(tx),
            task: Some(task),
        }
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
}

fn b64(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(s)
}

fn claims(sub: &str, service: bool) -> Claims {
    let now = now_secs();
    Claims {
        sub: sub.to_owned(),
        exp: now + 600,
        iat: Some(now),
        nbf: None,
        role: service.then(|| "service".to_owned()),
    }
}

fn sign_with(alg: Algorithm, key: &EncodingKey, claims: &impl serde::Serialize) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).expect("sign")
}

/// An unsigned token with any header.
fn unsigned(header: &str, payload: &serde_json::Value, signature: &str) -> String {
    format!("{}.{}.{signature}", b64(header), b64(&payload.to_string()))
}

/// A fully valid token of `signer` with its payload replaced, keeping header and signature.
fn with_payload(token: &str, payload: &serde_json::Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    format!("{}.{}.{}", parts[0], b64(&payload.to_string()), parts[2])
}

/// One call of every kind the interceptor guards, with `meta`; returns their codes.
async fn codes_of_every_rpc(raw: &Raw, meta: Meta) -> Vec<(&'static str, Code)> {
    codes_of_rpcs(raw, meta, true).await
}

/// As [`codes_of_every_rpc`], the backend-only RPCs left out unless `backend`.
async fn codes_of_rpcs(raw: &Raw, meta: Meta, backend: bool) -> Vec<(&'static str, Code)> {
    let history = raw.history_with(meta.clone());
    let conversations =
        ConversationServiceClient::with_interceptor(raw.channel.clone(), meta.clone());
    let code = |r: Result<(), tonic::Status>| match r {
        Ok(()) => Code::Ok,
        Err(s) => s.code(),
    };
    let mut out = Vec::new();
    let mut h = history.clone();
    out.push((
        "FetchHistory",
        code(
            h.fetch_history(hpb::FetchHistoryRequest {
                conversation: Some(peer("bob")),
                ..Default::default()
            })
            .await
            .map(|_| ()),
        ),
    ));
    let mut h = history.clone();
    if backend {
        out.push((
            "AppendMessages",
            code(
                h.append_messages(hpb::AppendMessagesRequest {
                    messages: vec![new_message(
                        ConversationType::Peer,
                        "alice",
                        "bob",
                        "x",
                        &format!("sec-{}", rand::random::<u64>()),
                    )],
                })
                .await
                .map(|_| ()),
            ),
        ));
    }
    let mut h = history.clone();
    out.push((
        "RemoveMessages",
        code(
            h.remove_messages(hpb::RemoveMessagesRequest {
                conversation: Some(peer("bob")),
                msg_ids: vec!["1".into()],
            })
            .await
            .map(|_| ()),
        ),
    ));
    let mut h = history;
    out.push((
        "RemoveMessagesBefore",
        code(
            h.remove_messages_before(hpb::RemoveMessagesBeforeRequest {
                conversation: Some(peer("bob")),
                before_time_ms: 0,
            })
            .await
            .map(|_| ()),
        ),
    ));
    let mut c = conversations.clone();
    out.push((
        "ListConversations",
        code(
            c.list_conversations(cpb::ListConversationsRequest::default())
                .await
                .map(|_| ()),
        ),
    ));
    let mut c = conversations.clone();
    out.push((
        "RemoveConversation",
        code(
            c.remove_conversation(cpb::RemoveConversationRequest {
                conversation: Some(peer("bob")),
                ..Default::default()
            })
            .await
            .map(|_| ()),
        ),
    ));
    if !backend {
        return out;
    }
    let mut c = conversations.clone();
    out.push((
        "AddMembers",
        code(
            c.add_members(cpb::AddMembersRequest {
                conversation: Some(conv(ConversationType::Group, "sec-team")),
                user_ids: vec!["alice".into()],
            })
            .await
            .map(|_| ()),
        ),
    ));
    let mut c = conversations;
    out.push((
        "RemoveMembers",
        code(
            c.remove_members(cpb::RemoveMembersRequest {
                conversation: Some(conv(ConversationType::Group, "sec-team")),
                user_ids: vec!["alice".into()],
            })
            .await
            .map(|_| ()),
        ),
    ));
    out
}

/// Row counts and content hashes of every table: equal fingerprints, nothing written.
async fn fingerprint(sql: &tokio_postgres::Client) -> Vec<String> {
    let row = sql
        .query_one(
            "SELECT (SELECT count(*) FROM messages)::text, \
                    (SELECT count(*) FROM tombstones)::text, \
                    (SELECT md5(coalesce(string_agg(c::text, ',' ORDER BY conv_key), '')) \
                       FROM conversations c), \
                    (SELECT md5(coalesce(string_agg(u::text, ',' ORDER BY conv_key, user_id), '')) \
                       FROM user_conversations u)",
            &[],
        )
        .await
        .unwrap();
    (0..4).map(|i| row.get::<_, String>(i)).collect()
}

/// Every token that a server verifying with `public_pem` (private half `private_pem`,
/// algorithm `alg`) must refuse, by name.
fn forged_tokens(
    alg: Algorithm,
    private_pem: &str,
    public_pem: &str,
    other_private_pem: &str,
    foreign_private_pem: &str,
) -> Vec<(String, String)> {
    let now = now_secs();
    let good = TokenSigner::from_private_pem(private_pem).unwrap();
    let valid = good.sign(&claims("alice", true));
    let payload = serde_json::json!({"sub": "alice", "exp": now + 600, "role": "service"});
    let mut out: Vec<(String, String)> = Vec::new();
    for none in ["none", "None", "NONE", "nOnE"] {
        out.push((
            format!("alg {none}, empty signature"),
            unsigned(&format!(r#"{{"alg":"{none}","typ":"JWT"}}"#), &payload, ""),
        ));
        out.push((
            format!("alg {none}, copied signature"),
            unsigned(
                &format!(r#"{{"alg":"{none}","typ":"JWT"}}"#),
                &payload,
                valid.split('.').nth(2).unwrap(),
            ),
        ));
    }
    let alg_name = match alg {
        Algorithm::EdDSA => "EdDSA",
        _ => "RS256",
    };
    out.push((
        format!("alg {alg_name}, no signature"),
        unsigned(
            &format!(r#"{{"alg":"{alg_name}","typ":"JWT"}}"#),
            &payload,
            "",
        ),
    ));
    // HS/RS (HS/Ed) key confusion: an HMAC keyed with the public key's PEM text, which is
    // public. A server that let the token pick the algorithm would accept it.
    for hs in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        for (what, secret) in [
            ("PEM text", public_pem.as_bytes().to_vec()),
            ("PEM text, trimmed", public_pem.trim().as_bytes().to_vec()),
        ] {
            out.push((
                format!("{hs:?} keyed with the public key's {what}"),
                sign_with(
                    hs,
                    &EncodingKey::from_secret(&secret),
                    &claims("alice", true),
                ),
            ));
        }
    }
    // Another key of the same kind, and a key of the other kind.
    out.push((
        format!("{alg_name} signed with another key"),
        TokenSigner::from_private_pem(other_private_pem)
            .unwrap()
            .sign(&claims("alice", true)),
    ));
    out.push((
        "signed with a key of the other kind".into(),
        TokenSigner::from_private_pem(foreign_private_pem)
            .unwrap()
            .sign(&claims("alice", true)),
    ));
    if alg == Algorithm::RS256 {
        // The right RSA key, but an algorithm the server does not expect.
        let rsa = EncodingKey::from_rsa_pem(private_pem.as_bytes()).unwrap();
        for other in [
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ] {
            out.push((
                format!("{other:?} with the server's RSA key"),
                sign_with(other, &rsa, &claims("alice", true)),
            ));
        }
    }
    // A valid token altered: claims swapped under the same signature, signature bit-flipped.
    out.push((
        "payload replaced (sub bob) under a valid signature".into(),
        with_payload(
            &valid,
            &serde_json::json!({"sub": "bob", "exp": now + 600, "role": "service"}),
        ),
    ));
    out.push((
        "payload replaced (role service) under a user token's signature".into(),
        with_payload(
            &good.sign(&claims("alice", false)),
            &serde_json::json!({"sub": "alice", "exp": now + 600, "role": "service"}),
        ),
    ));
    let mut flipped = valid.clone().into_bytes();
    let at = flipped.len() - 5;
    flipped[at] = if flipped[at] == b'A' { b'B' } else { b'A' };
    out.push((
        "signature altered".into(),
        String::from_utf8(flipped).unwrap(),
    ));
    out.push((
        "signature truncated".into(),
        valid[..valid.len() - 8].into(),
    ));
    // Time claims (the server allows 5 s of leeway).
    for (what, exp, nbf) in [
        ("expired an hour ago", now - 3600, None),
        ("expired a minute ago", now - 60, None),
        ("not valid for another hour", now + 7200, Some(now + 3600)),
        ("not valid for another minute", now + 7200, Some(now + 60)),
    ] {
        out.push((
            what.into(),
            good.sign(&Claims {
                sub: "alice".into(),
                exp,
                iat: Some(now),
                nbf,
                role: Some("service".into()),
            }),
        ));
    }
    // Malformed or missing claims, correctly signed.
    let enc = match alg {
        Algorithm::EdDSA => EncodingKey::from_ed_pem(private_pem.as_bytes()).unwrap(),
        _ => EncodingKey::from_rsa_pem(private_pem.as_bytes()).unwrap(),
    };
    for (what, body) in [
        ("no exp", serde_json::json!({"sub": "alice"})),
        ("no sub", serde_json::json!({"exp": now + 600})),
        (
            "exp as a string",
            serde_json::json!({"sub": "alice", "exp": (now + 600).to_string()}),
        ),
        (
            "role as a list",
            serde_json::json!({"sub": "alice", "exp": now + 600, "role": ["service"]}),
        ),
        (
            "sub as a number",
            serde_json::json!({"sub": 42, "exp": now + 600}),
        ),
        (
            "user sub breaking the id rule",
            serde_json::json!({"sub": "alice bob", "exp": now + 600}),
        ),
        (
            "user sub with a colon",
            serde_json::json!({"sub": "p:alice", "exp": now + 600}),
        ),
    ] {
        out.push((what.into(), sign_with(alg, &enc, &body)));
    }
    out.push(("garbage".into(), "not.a.jwt".into()));
    out.push(("empty".into(), String::new()));
    out.push(("two parts".into(), valid.rsplit_once('.').unwrap().0.into()));
    out
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
    let server = KeyServer::start(&app, &public).await;
    let raw = Raw::connect(&server.endpoint).await;
    let sql = app.sql().await;

    // Correctly signed tokens work, user and service alike, on every RPC they may call.
    let signer = TokenSigner::from_private_pem(&private).unwrap();
    let service = signer.sign(&claims("gateway", true));
    let alice = signer.sign(&claims("alice", false));
    let appended = raw
        .history(Some(&service), None)
        .append_messages(hpb::AppendMessagesRequest {
            messages: vec![new_message(
                ConversationType::Peer,
                "alice",
                "bob",
                "signed",
                "k-1",
            )],
        })
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
            act_as: None,
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
    server.stop().await;
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

#[tokio::test]
async fn roles_and_act_as_are_enforced_on_every_rpc_and_refusals_write_nothing() {
    let app = TestApp::spawn().await;
    let raw = Raw::connect(&app.endpoint).await;
    app.peer("alice", "bob", "hello").await;
    app.add_members(ConversationType::Group, "sec-team", &["alice"])
        .await;
    let sql = app.sql().await;
    let before = fingerprint(&sql).await;
    let user = app.token("alice", false);
    let service = app.token("gateway", true);
    let sign_role = |role: serde_json::Value| {
        sign_with(
            Algorithm::HS256,
            &EncodingKey::from_secret(roaming_testkit::SECRET.as_bytes()),
            &serde_json::json!({"sub": "gateway", "exp": now_secs() + 600, "role": role}),
        )
    };
    let backend = ["AppendMessages", "AddMembers", "RemoveMembers"];
    let mut checked = 0;

    // A user token: backend RPCs are PERMISSION_DENIED; user-scoped ones are fine.
    for (rpc, code) in codes_of_every_rpc(&raw, Raw::meta(Some(&user), None)).await {
        let expected = if backend.contains(&rpc) {
            Code::PermissionDenied
        } else {
            Code::Ok
        };
        assert_eq!(code, expected, "user token, {rpc}");
        checked += 1;
    }
    // Tokens whose role is not exactly "service" are user tokens.
    for role in [
        serde_json::json!("Service"),
        serde_json::json!("SERVICE"),
        serde_json::json!("service "),
        serde_json::json!("admin"),
        serde_json::json!(""),
    ] {
        let token = sign_role(role.clone());
        for (rpc, code) in codes_of_every_rpc(&raw, Raw::meta(Some(&token), None)).await {
            if backend.contains(&rpc) {
                assert_eq!(code, Code::PermissionDenied, "role {role}, {rpc}");
            }
            checked += 1;
        }
    }
    // A user token naming another user: every user-scoped RPC is PERMISSION_DENIED (and
    // backend ones too).
    for other in ["bob", "ALICE", "alice.", "gateway"] {
        for (rpc, code) in codes_of_every_rpc(&raw, Raw::meta(Some(&user), Some(other))).await {
            assert_eq!(
                code,
                Code::PermissionDenied,
                "alice acting as {other}, {rpc}"
            );
            checked += 1;
        }
    }
    // A service token without x-roaming-user on user-scoped RPCs: INVALID_ARGUMENT naming it.
    let mut history = raw.history(Some(&service), None);
    let fetch = history
        .fetch_history(hpb::FetchHistoryRequest {
            conversation: Some(peer("bob")),
            ..Default::default()
        })
        .await;
    let status = fetch.map(|_| ()).unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("x-roaming-user"), "{status:?}");
    for (rpc, code) in codes_of_rpcs(&raw, Raw::meta(Some(&service), None), false).await {
        assert_eq!(code, Code::InvalidArgument, "service without act-as, {rpc}");
        checked += 1;
    }
    // x-roaming-user that is not a user id.
    for bad in ["not valid!", "a:b", "", &"x".repeat(65)] {
        for (rpc, code) in codes_of_every_rpc(&raw, Raw::meta(Some(&service), Some(bad))).await {
            assert_eq!(code, Code::InvalidArgument, "act-as {bad:?}, {rpc}");
            checked += 1;
        }
    }
    // FOR_EVERYONE needs the service role, whoever is named.
    for (token, act_as) in [(&user, None), (&user, Some("alice"))] {
        let r = raw
            .conversations(Some(token), act_as)
            .remove_conversation(cpb::RemoveConversationRequest {
                conversation: Some(peer("bob")),
                delete_messages: true,
                scope: cpb::RemovalScope::ForEveryone as i32,
            })
            .await;
        assert_eq!(r.unwrap_err().code(), Code::PermissionDenied);
        checked += 1;
    }
    // A service token may not act for a user on a group the user is not in.
    let r = raw
        .history(Some(&service), Some("mallory"))
        .fetch_history(hpb::FetchHistoryRequest {
            conversation: Some(conv(ConversationType::Group, "sec-team")),
            ..Default::default()
        })
        .await;
    assert_eq!(r.map(|_| ()).unwrap_err().code(), Code::PermissionDenied);
    checked += 1;
    // Nothing but the harmless user-scoped calls above wrote anything; the backend RPCs that
    // were refused wrote nothing. (The user-token RemoveConversation and removals above
    // succeeded on alice's own view, so compare only the messages and membership.)
    let after = fingerprint(&sql).await;
    assert_eq!(
        before[0], after[0],
        "no message was stored by a refused call"
    );
    let members: i64 = sql
        .query_one(
            "SELECT count(*) FROM user_conversations WHERE conv_key = 'g:sec-team' AND is_member",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(members, 1, "membership unchanged by refused calls");
    println!("security: roles and act-as: {checked} calls checked, 0 escalations");
}

// ---------------------------------------------------------------------------------------
// 10,000 randomized cross-user requests.

const USERS: [&str; 8] = ["u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7"];

/// What each conversation holds, and who may see what (the model the responses are checked
/// against).
#[derive(Default)]
struct World {
    /// conv_key → its messages, by seq.
    messages: BTreeMap<String, Vec<Message>>,
    /// msg_id → conv_key.
    conv_of: HashMap<String, String>,
    /// group or chatroom key → members.
    members: HashMap<String, HashSet<String>>,
}

impl World {
    fn key_of(&self, user: &str, c: &ConversationRef) -> Option<String> {
        match ConversationType::try_from(c.r#type).ok()? {
            ConversationType::Peer => {
                let (a, b) = if user <= c.id.as_str() {
                    (user, c.id.as_str())
                } else {
                    (c.id.as_str(), user)
                };
                Some(format!("p:{a}:{b}"))
            }
            ConversationType::Group => Some(format!("g:{}", c.id)),
            ConversationType::Chatroom => Some(format!("r:{}", c.id)),
            ConversationType::Unspecified => None,
        }
    }

    /// Whether `user` takes part in `key`.
    fn takes_part(&self, user: &str, key: &str) -> bool {
        if let Some(rest) = key.strip_prefix("p:") {
            let (a, b) = rest.split_once(':').unwrap();
            return a == user || b == user;
        }
        self.members.get(key).is_some_and(|m| m.contains(user))
    }
}

/// One-way removals that completed, per user: hidden message ids.
#[derive(Default)]
struct Hidden {
    by_user: HashMap<String, HashSet<String>>,
}

#[derive(Default, Debug)]
struct Tally {
    requests: u64,
    by_kind: BTreeMap<&'static str, u64>,
    by_code: BTreeMap<String, u64>,
    messages_checked: u64,
    entries_checked: u64,
    violations: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_random_cross_user_requests_return_no_row_of_anyone_elses_view() {
    let total: u64 = if std::env::var_os("ROAMING_RELIABILITY_LONG").is_some() {
        50_000
    } else {
        10_000
    };
    let app = TestApp::spawn().await;
    let started = Instant::now();
    let mut world = World::default();

    // Peer conversations between random pairs, two groups and a chatroom.
    let groups: [(&str, ConversationType, &[&str]); 3] = [
        ("team", ConversationType::Group, &["u0", "u1", "u2", "u3"]),
        ("ops", ConversationType::Group, &["u3", "u4", "u5"]),
        ("lobby", ConversationType::Chatroom, &["u0", "u5", "u6"]),
    ];
    for (id, kind, members) in groups {
        app.add_members(kind, id, members).await;
        let key = if kind == ConversationType::Group {
            format!("g:{id}")
        } else {
            format!("r:{id}")
        };
        world
            .members
            .insert(key, members.iter().map(|m| m.to_string()).collect());
    }
    let pairs = [
        ("u0", "u1"),
        ("u0", "u2"),
        ("u1", "u2"),
        ("u2", "u3"),
        ("u3", "u4"),
        ("u4", "u5"),
        ("u5", "u6"),
        ("u6", "u0"),
        ("u1", "u7"),
    ];
    let service = app.service().await;
    for round in 0..10 {
        let mut batch = Vec::new();
        for (a, b) in pairs {
            let (s, r) = if round % 2 == 0 { (a, b) } else { (b, a) };
            batch.push(new_message(
                ConversationType::Peer,
                s,
                r,
                &format!("{s}->{r} #{round}"),
                &format!("x-{round}-{s}-{r}"),
            ));
        }
        for (id, kind, members) in groups {
            let s = members[round % members.len()];
            batch.push(new_message(
                kind,
                s,
                id,
                &format!("{s}@{id} #{round}"),
                &format!("x-{round}-{s}-{id}"),
            ));
        }
        let results = service
            .history()
            .append_messages(hpb::AppendMessagesRequest { messages: batch })
            .await
            .unwrap()
            .into_inner()
            .results;
        for r in results {
            let m = r.message.unwrap();
            let c = m.conversation.clone().unwrap();
            let k = world.key_of(&m.sender, &c).unwrap();
            world.conv_of.insert(m.msg_id.clone(), k.clone());
            world.messages.entry(k).or_default().push(m);
        }
        app.clock.advance(1000);
    }
    let all_ids: Vec<String> = world.conv_of.keys().cloned().collect();
    let world = Arc::new(world);
    let hidden = Arc::new(Mutex::new(Hidden::default()));
    let tally = Arc::new(Mutex::new(Tally::default()));
    // Cursors handed out to anyone, reused by others.
    let cursors: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let raw = Raw::connect(&app.endpoint).await;
    let service_token = app.token("gateway", true);
    let user_tokens: HashMap<String, String> = USERS
        .iter()
        .map(|u| (u.to_string(), app.token(u, false)))
        .collect();
    let user_tokens = Arc::new(user_tokens);
    let all_ids = Arc::new(all_ids);

    const TASKS: u64 = 8;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (world, hidden, tally, cursors, raw) = (
            world.clone(),
            hidden.clone(),
            tally.clone(),
            cursors.clone(),
            raw.clone(),
        );
        let (service_token, user_tokens, all_ids) =
            (service_token.clone(), user_tokens.clone(), all_ids.clone());
        let base_time = 1_800_000_000_000i64;
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(1000 + t);
            for _ in 0..total / TASKS {
                let caller = USERS[rng.random_range(0..USERS.len())];
                // Who calls: the user, the gateway acting for them, the user pretending to
                // be someone else, the gateway naming nobody.
                let roll = rng.random_range(0..100);
                let (token, act_as, effective): (&str, Option<&str>, Option<&str>) = match roll {
                    0..70 => (&user_tokens[caller], None, Some(caller)),
                    70..85 => (&service_token, Some(caller), Some(caller)),
                    85..95 => {
                        let other = USERS[rng.random_range(0..USERS.len())];
                        let effective = (other == caller).then_some(caller);
                        (&user_tokens[caller], Some(other), effective)
                    }
                    _ => (&service_token, None, None),
                };
                let target = random_ref(&mut rng);
                let snapshot: HashSet<String> = effective
                    .and_then(|e| hidden.lock().unwrap().by_user.get(e).cloned())
                    .unwrap_or_default();
                let op = rng.random_range(0..100);
                let kind: &'static str;
                let result: Result<Vec<Message>, tonic::Status>;
                let mut removed_now: Vec<String> = Vec::new();
                let mut list_entries: Vec<cpb::Conversation> = Vec::new();
                let mut removal_statuses: Vec<hpb::RemovalResult> = Vec::new();
                let mut target_key = None;
                match op {
                    0..55 => {
                        kind = "FetchHistory";
                        let mut req = hpb::FetchHistoryRequest {
                            conversation: Some(target.clone()),
                            direction: rng.random_range(0..3),
                            page_size: rng.random_range(0..8),
                            max_pages: rng.random_range(0..4),
                            ..Default::default()
                        };
                        match rng.random_range(0..10) {
                            0..2 => {
                                req.start_msg_id =
                                    all_ids[rng.random_range(0..all_ids.len())].clone();
                            }
                            2..4 => {
                                let c = cursors.lock().unwrap();
                                if !c.is_empty() {
                                    req.cursor = c[rng.random_range(0..c.len())].clone();
                                }
                            }
                            _ => {}
                        }
                        let mut client = raw.history(Some(token), act_as);
                        result = match client.fetch_history(req).await {
                            Ok(resp) => {
                                let mut stream = resp.into_inner();
                                let mut out = Vec::new();
                                let mut err = None;
                                loop {
                                    match stream.message().await {
                                        Ok(Some(page)) => {
                                            if !page.next_cursor.is_empty() {
                                                let mut c = cursors.lock().unwrap();
                                                if c.len() < 500 {
                                                    c.push(page.next_cursor.clone());
                                                } else {
                                                    let i = rng.random_range(0..c.len());
                                                    c[i] = page.next_cursor.clone();
                                                }
                                            }
                                            out.extend(page.messages);
                                        }
                                        Ok(None) => break,
                                        Err(e) => {
                                            err = Some(e);
                                            break;
                                        }
                                    }
                                }
                                match err {
                                    Some(e) => Err(e),
                                    None => Ok(out),
                                }
                            }
                            Err(e) => Err(e),
                        };
                    }
                    55..80 => {
                        kind = "ListConversations";
                        let mut types = Vec::new();
                        for _ in 0..rng.random_range(0..3) {
                            types.push(rng.random_range(1..4));
                        }
                        let req = cpb::ListConversationsRequest {
                            page_size: rng.random_range(0..20),
                            types,
                            ..Default::default()
                        };
                        result = raw
                            .conversations(Some(token), act_as)
                            .list_conversations(req)
                            .await
                            .map(|r| {
                                list_entries = r.into_inner().conversations;
                                list_entries
                                    .iter()
                                    .filter_map(|e| e.last_message.clone())
                                    .collect()
                            });
                    }
                    80..92 => {
                        kind = "RemoveMessages";
                        let ids: Vec<String> = (0..rng.random_range(1..4))
                            .map(|_| all_ids[rng.random_range(0..all_ids.len())].clone())
                            .collect();
                        target_key = effective.and_then(|e| world.key_of(e, &target));
                        result = raw
                            .history(Some(token), act_as)
                            .remove_messages(hpb::RemoveMessagesRequest {
                                conversation: Some(target.clone()),
                                msg_ids: ids.clone(),
                            })
                            .await
                            .map(|r| {
                                removal_statuses = r.into_inner().results;
                                Vec::new()
                            });
                        if result.is_ok() {
                            for id in ids {
                                if world.conv_of.get(&id) == target_key.as_ref() {
                                    removed_now.push(id);
                                }
                            }
                        }
                    }
                    92..95 => {
                        kind = "RemoveMessagesBefore";
                        // Hides the first few rounds (1 s apart) of the conversation.
                        let before = base_time + 1000 * rng.random_range(0..3);
                        target_key = effective.and_then(|e| world.key_of(e, &target));
                        result = raw
                            .history(Some(token), act_as)
                            .remove_messages_before(hpb::RemoveMessagesBeforeRequest {
                                conversation: Some(target.clone()),
                                before_time_ms: before,
                            })
                            .await
                            .map(|_| Vec::new());
                        if result.is_ok() {
                            if let Some(k) = &target_key {
                                for m in world.messages.get(k).into_iter().flatten() {
                                    if m.server_time_ms <= before {
                                        removed_now.push(m.msg_id.clone());
                                    }
                                }
                            }
                        }
                    }
                    _ => {
                        kind = "RemoveConversation";
                        let delete = rng.random_bool(0.2);
                        target_key = effective.and_then(|e| world.key_of(e, &target));
                        result = raw
                            .conversations(Some(token), act_as)
                            .remove_conversation(cpb::RemoveConversationRequest {
                                conversation: Some(target.clone()),
                                delete_messages: delete,
                                scope: 0,
                            })
                            .await
                            .map(|_| Vec::new());
                        if result.is_ok() && delete {
                            if let Some(k) = &target_key {
                                for m in world.messages.get(k).into_iter().flatten() {
                                    removed_now.push(m.msg_id.clone());
                                }
                            }
                        }
                    }
                }

                // Check what came back.
                let mut violations = Vec::new();
                let mut checked = 0u64;
                match (&result, effective) {
                    (Ok(messages), Some(e)) => {
                        for m in messages {
                            checked += 1;
                            let Some(k) = world.conv_of.get(&m.msg_id) else {
                                violations.push(format!("{kind}: unknown message {}", m.msg_id));
                                continue;
                            };
                            if !world.takes_part(e, k) {
                                violations
                                    .push(format!("{kind} as {e} returned {} of {k}", m.msg_id));
                            }
                            let seen_as = m.conversation.as_ref().and_then(|c| world.key_of(e, c));
                            if seen_as.as_deref() != Some(k.as_str()) {
                                violations.push(format!(
                                    "{kind} as {e}: {} labelled {:?}, not {e}'s view of {k}",
                                    m.msg_id, m.conversation
                                ));
                            }
                            if snapshot.contains(&m.msg_id) {
                                violations.push(format!(
                                    "{kind} as {e} returned {} which {e} had removed",
                                    m.msg_id
                                ));
                            }
                        }
                        for entry in &list_entries {
                            let k = entry.conversation.as_ref().and_then(|c| world.key_of(e, c));
                            match k {
                                Some(k) if world.takes_part(e, &k) => {}
                                other => violations
                                    .push(format!("ListConversations as {e} listed {other:?}")),
                            }
                        }
                        if kind == "RemoveMessages" {
                            for r in &removal_statuses {
                                let own = world.conv_of.get(&r.msg_id) == target_key.as_ref();
                                if !own && r.status != hpb::RemovalStatus::NotFound as i32 {
                                    violations.push(format!(
                                        "RemoveMessages as {e}: foreign id {} got status {}",
                                        r.msg_id, r.status
                                    ));
                                }
                            }
                        }
                        if let Some(k) = &target_key {
                            if !world.takes_part(e, k)
                                && kind != "FetchHistory"
                                && k.starts_with(['g', 'r'])
                            {
                                violations.push(format!("{kind} as {e} succeeded on {k}"));
                            }
                        }
                    }
                    (Ok(_), None) => {
                        violations.push(format!(
                            "{kind} succeeded for a caller acting for nobody ({roll})"
                        ));
                    }
                    (Err(s), _) => {
                        let fine = matches!(
                            s.code(),
                            Code::PermissionDenied | Code::NotFound | Code::InvalidArgument
                        );
                        if !fine {
                            violations.push(format!("{kind}: unexpected {s:?}"));
                        }
                        if effective.is_none()
                            && !matches!(s.code(), Code::PermissionDenied | Code::InvalidArgument)
                        {
                            violations.push(format!("{kind} without a user: {s:?}"));
                        }
                    }
                }
                if let (Some(e), false) = (effective, removed_now.is_empty()) {
                    hidden
                        .lock()
                        .unwrap()
                        .by_user
                        .entry(e.to_owned())
                        .or_default()
                        .extend(removed_now);
                }
                let mut tl = tally.lock().unwrap();
                tl.requests += 1;
                *tl.by_kind.entry(kind).or_default() += 1;
                let code = match &result {
                    Ok(_) => "OK".to_owned(),
                    Err(s) => format!("{:?}", s.code()),
                };
                *tl.by_code.entry(code).or_default() += 1;
                tl.messages_checked += checked;
                tl.entries_checked += list_entries.len() as u64;
                tl.violations.extend(violations);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }

    // The final views are exact: every user sees every message of their conversations but
    // the ones they removed, and nobody else's removals changed anything for them.
    let hidden = hidden.lock().unwrap().by_user.clone();
    let mut final_checked = 0;
    let mut tally = Arc::try_unwrap(tally).ok().unwrap().into_inner().unwrap();
    for user in USERS {
        let client = app.user(user).await;
        for (k, messages) in &world.messages {
            if !world.takes_part(user, k) {
                continue;
            }
            let reference = conversation_ref_of(user, k);
            let pages = roaming_testkit::fetch_pages(
                &client,
                hpb::FetchHistoryRequest {
                    conversation: Some(reference),
                    direction: hpb::Direction::Forward as i32,
                    page_size: 50,
                    max_pages: 100,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
            let got: Vec<String> = pages
                .into_iter()
                .flat_map(|p| p.messages)
                .map(|m| m.msg_id)
                .collect();
            let empty = HashSet::new();
            let mine = hidden.get(user).unwrap_or(&empty);
            let expected: Vec<String> = messages
                .iter()
                .map(|m| m.msg_id.clone())
                .filter(|id| !mine.contains(id))
                .collect();
            final_checked += got.len();
            if got != expected {
                tally.violations.push(format!(
                    "final view of {user} on {k}: got {got:?}, expected {expected:?}"
                ));
            }
        }
    }
    // Tombstones exist only for users of the conversation.
    let sql = app.sql().await;
    let strays: i64 = sql
        .query_one(
            "SELECT count(*) FROM tombstones t WHERE NOT EXISTS (SELECT 1 FROM user_conversations u \
             WHERE u.conv_key = t.conv_key AND u.user_id = t.user_id)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    if strays != 0 {
        tally
            .violations
            .push(format!("{strays} tombstones of non-participants"));
    }
    let removals: usize = hidden.values().map(HashSet::len).sum();
    println!(
        "security: {} randomized cross-user requests in {:.1?} (8 users, 9 peer conversations, \
         2 groups, 1 chatroom; 70% own token, 15% service acting for the user, 10% user token \
         naming another user, 5% service naming nobody)",
        tally.requests,
        started.elapsed()
    );
    println!("security:   by kind {:?}", tally.by_kind);
    println!("security:   by code {:?}", tally.by_code);
    println!(
        "security:   {} returned messages and {} list entries checked, {} (user, message) \
         one-way removals, final views exact for every user ({final_checked} messages), \
         tombstones of non-participants {strays}, violations {}",
        tally.messages_checked,
        tally.entries_checked,
        removals,
        tally.violations.len()
    );
    assert!(
        tally.violations.is_empty(),
        "{} violations, first: {:#?}",
        tally.violations.len(),
        &tally.violations[..tally.violations.len().min(10)]
    );
}

fn random_ref(rng: &mut StdRng) -> ConversationRef {
    let kind = match rng.random_range(0..10) {
        0..6 => ConversationType::Peer,
        6..8 => ConversationType::Group,
        _ => ConversationType::Chatroom,
    };
    let ids = [
        "u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7", "team", "ops", "lobby", "nobody",
    ];
    let id = match kind {
        ConversationType::Peer => ids[rng.random_range(0..ids.len())],
        _ => ["team", "ops", "lobby", "u0", "nobody"][rng.random_range(0..5)],
    };
    conv(kind, id)
}

fn conversation_ref_of(user: &str, key: &str) -> ConversationRef {
    match key.split_once(':').unwrap() {
        ("p", rest) => {
            let (a, b) = rest.split_once(':').unwrap();
            peer(if a == user { b } else { a })
        }
        ("g", id) => conv(ConversationType::Group, id),
        (_, id) => conv(ConversationType::Chatroom, id),
    }
}
