//! Cursor keys: a cursor forged with a key derived from a public key is refused; a rotation
//! keeps old cursors open through `ROAMING_CURSOR_KEY_PREVIOUS` and refuses them once it is
//! dropped; with a cursor key, rotating the JWT key keeps every cursor.

use super::support::{Raw, key};
use roaming::config::ServeConfig;
use roaming_proto::conversation::v1 as cpb;
use roaming_proto::history::v1 as hpb;
use roaming_runtime::{CursorSealer, TokenSigner};
use roaming_testkit::{RunningServer, TestApp, peer};
use tonic::Code;

const K1: &str = "reliability-cursor-key-one-0123456789abcdef";
const K2: &str = "reliability-cursor-key-two-0123456789abcdef";
const OTHER_SECRET: &str = "reliability-rotated-jwt-secret-0123456789";

/// A next_cursor of each kind, made by one server.
#[derive(Debug, Clone)]
struct Cursors {
    history: String,
    list: String,
}

/// What resuming from a cursor of each kind answered.
#[derive(Debug, PartialEq, Eq)]
struct Resumed {
    history: Code,
    list: Code,
}

const OPENS: Resumed = Resumed {
    history: Code::Ok,
    list: Code::Ok,
};
const REFUSED: Resumed = Resumed {
    history: Code::InvalidArgument,
    list: Code::InvalidArgument,
};

fn history_request(cursor: Option<&str>) -> hpb::FetchHistoryRequest {
    hpb::FetchHistoryRequest {
        conversation: Some(peer("bob")),
        cursor: cursor.unwrap_or_default().to_owned(),
        page_size: 1,
        ..Default::default()
    }
}

fn list_request(cursor: Option<&str>) -> cpb::ListConversationsRequest {
    cpb::ListConversationsRequest {
        page_size: 1,
        cursor: cursor.unwrap_or_default().to_owned(),
        ..Default::default()
    }
}

/// Alice's first history page (of 3 messages with bob) and first list page (of 3
/// conversations) on `endpoint`: both have a next page.
async fn first_cursors(endpoint: &str, token: &str) -> Cursors {
    let raw = Raw::connect(endpoint).await;
    let page = raw
        .history(Some(token), None)
        .fetch_history(history_request(None))
        .await
        .expect("first history page")
        .into_inner()
        .message()
        .await
        .unwrap()
        .unwrap();
    assert!(!page.is_end && !page.next_cursor.is_empty());
    let list = raw
        .conversations(Some(token), None)
        .list_conversations(list_request(None))
        .await
        .expect("first list page")
        .into_inner();
    assert!(!list.next_cursor.is_empty());
    Cursors {
        history: page.next_cursor,
        list: list.next_cursor,
    }
}

/// Resumes from `cursors` on `endpoint`; an INVALID_ARGUMENT must name the cursor.
async fn resume(endpoint: &str, token: &str, cursors: &Cursors) -> Resumed {
    let raw = Raw::connect(endpoint).await;
    let code = |status: &tonic::Status| {
        if status.code() == Code::InvalidArgument {
            assert!(status.message().starts_with("cursor"), "{status:?}");
        }
        status.code()
    };
    let history = match raw
        .history(Some(token), None)
        .fetch_history(history_request(Some(&cursors.history)))
        .await
    {
        Ok(response) => {
            let page = response.into_inner().message().await.unwrap().unwrap();
            assert_eq!(
                page.messages.len(),
                1,
                "the resumed page holds the next message"
            );
            Code::Ok
        }
        Err(status) => code(&status),
    };
    let list = match raw
        .conversations(Some(token), None)
        .list_conversations(list_request(Some(&cursors.list)))
        .await
    {
        Ok(response) => {
            assert_eq!(response.into_inner().conversations.len(), 1);
            Code::Ok
        }
        Err(status) => code(&status),
    };
    Resumed { history, list }
}

/// Alice's three peer conversations, bob's with three messages.
async fn seed(app: &TestApp) {
    for text in ["one", "two", "three"] {
        app.peer("alice", "bob", text).await;
    }
    app.peer("carol", "alice", "hi alice").await;
    app.peer("alice", "dave", "hi dave").await;
}

/// Another server over `app`'s database, built from `app`'s configuration as `configure`
/// changes it.
async fn server(app: &TestApp, configure: impl FnOnce(&mut ServeConfig)) -> RunningServer {
    let mut config = app.config.clone();
    configure(&mut config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    app.serve_also(config, listener)
}

fn public_key(config: &mut ServeConfig, pem: &str, cursor_key: Option<&str>) {
    config.keys.jwt_secret = None;
    config.keys.jwt_public_key = Some(pem.to_owned());
    config.keys.cursor_key = cursor_key.map(str::to_owned);
}

/// `cursor` with its payload sealed again by `sealer`, after `edit`.
fn reseal(
    genuine: &CursorSealer,
    sealer: &CursorSealer,
    cursor: &str,
    edit: impl Fn(&mut Vec<u8>),
) -> String {
    let mut payload = genuine
        .open(cursor)
        .expect("the test knows the server's key");
    edit(&mut payload);
    sealer.seal(&payload)
}

#[tokio::test]
async fn cursors_forged_with_a_key_derived_from_the_public_key_are_refused() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    let genuine = CursorSealer::from_settings(Some(K1), None, None).unwrap();
    let mut tried = 0;
    for (private, public) in [
        ("ed25519_private.pem", "ed25519_public.pem"),
        ("rsa_private.pem", "rsa_public.pem"),
    ] {
        let public = key(public);
        let server = server(&app, |c| public_key(c, &public, Some(K1))).await;
        let alice = TokenSigner::from_private_pem(&key(private))
            .unwrap()
            .sign(&super::support::claims("alice", false));
        let cursors = first_cursors(&server.endpoint, &alice).await;
        assert_eq!(resume(&server.endpoint, &alice, &cursors).await, OPENS);

        // The key the server used to seal with: derived from the public key's setting, which
        // anybody can read. Cursors sealed with it, as they are or rewound to the start.
        let mut forged = Vec::new();
        for material in [public.as_str(), public.trim()] {
            let derived = CursorSealer::derive(material.as_bytes());
            for rewound in [false, true] {
                // The position: a history cursor's last 8 bytes, a list cursor's bytes 17..25.
                let at = |p: &mut Vec<u8>, from: usize| {
                    if rewound {
                        p[from..from + 8].copy_from_slice(&i64::MAX.to_be_bytes());
                    }
                };
                let cursors = Cursors {
                    history: reseal(&genuine, &derived, &cursors.history, |p| at(p, 18)),
                    list: reseal(&genuine, &derived, &cursors.list, |p| at(p, 17)),
                };
                forged.push((if rewound { "rewound" } else { "as made" }, cursors));
            }
        }
        for (what, cursors) in &forged {
            assert_eq!(
                resume(&server.endpoint, &alice, cursors).await,
                REFUSED,
                "{public:.40}: a cursor {what}, sealed with the public key's derivation"
            );
            tried += 2;
        }
        // The same payloads sealed with the real key open: only the key was wrong.
        let resealed = Cursors {
            history: reseal(&genuine, &genuine, &cursors.history, |_| {}),
            list: reseal(&genuine, &genuine, &cursors.list, |_| {}),
        };
        assert_eq!(resume(&server.endpoint, &alice, &resealed).await, OPENS);
    }
    println!(
        "security[cursors]: EdDSA and RS256 servers with ROAMING_CURSOR_KEY: {tried} cursors \
         sealed with a key derived from the public key (as made, rewound) → {tried} \
         INVALID_ARGUMENT, 0 accepted"
    );
}

#[tokio::test]
async fn a_cursor_key_rotation_opens_old_cursors_until_the_previous_key_is_dropped() {
    // Server "k1": the test secret and cursor key K1.
    let app = TestApp::spawn_with(|c| c.keys.cursor_key = Some(K1.into())).await;
    seed(&app).await;
    let alice = app.token("alice", false);
    let old = first_cursors(&app.endpoint, &alice).await;

    // Rotating: K2 seals, K1 still opens.
    let rotating = server(&app, |c| {
        c.keys.cursor_key = Some(K2.into());
        c.keys.cursor_key_previous = Some(K1.into());
    })
    .await;
    assert_eq!(
        resume(&rotating.endpoint, &alice, &old).await,
        OPENS,
        "K1 cursors during the rotation"
    );
    let new = first_cursors(&rotating.endpoint, &alice).await;
    assert_eq!(resume(&rotating.endpoint, &alice, &new).await, OPENS);
    assert_eq!(
        resume(&app.endpoint, &alice, &new).await,
        REFUSED,
        "a rotating server seals with the new key only"
    );

    // Done: K2 alone. New cursors open, old ones are refused.
    let rotated = server(&app, |c| c.keys.cursor_key = Some(K2.into())).await;
    assert_eq!(resume(&rotated.endpoint, &alice, &new).await, OPENS);
    assert_eq!(
        resume(&rotated.endpoint, &alice, &old).await,
        REFUSED,
        "the previous key was dropped"
    );
    println!(
        "security[cursors]: rotation K1 → K2: K1 cursors open while K1 is the previous key, \
         INVALID_ARGUMENT once it is dropped; cursors made during the rotation are sealed with K2"
    );
}

#[tokio::test]
async fn with_a_cursor_key_rotating_the_jwt_key_keeps_every_cursor() {
    let app = TestApp::spawn_with(|c| c.keys.cursor_key = Some(K1.into())).await;
    seed(&app).await;
    let cursors = first_cursors(&app.endpoint, &app.token("alice", false)).await;

    // Another HS256 secret, same cursor key.
    let rotated = server(&app, |c| c.keys.jwt_secret = Some(OTHER_SECRET.into())).await;
    let alice = TokenSigner::hs256(OTHER_SECRET).mint(
        "alice",
        false,
        roaming_runtime::auth::now_secs(),
        600,
    );
    assert_eq!(resume(&rotated.endpoint, &alice, &cursors).await, OPENS);
    // From the secret to a public key, same cursor key.
    let public = key("ed25519_public.pem");
    let moved = server(&app, |c| public_key(c, &public, Some(K1))).await;
    let alice = TokenSigner::from_private_pem(&key("ed25519_private.pem"))
        .unwrap()
        .sign(&super::support::claims("alice", false));
    assert_eq!(resume(&moved.endpoint, &alice, &cursors).await, OPENS);
}

#[tokio::test]
async fn without_a_cursor_key_rotating_the_hs256_secret_invalidates_cursors_unless_kept_as_previous()
 {
    // The documented cost of not setting ROAMING_CURSOR_KEY, and the way out of it.
    let app = TestApp::spawn().await;
    seed(&app).await;
    let derived = first_cursors(&app.endpoint, &app.token("alice", false)).await;
    let alice = TokenSigner::hs256(OTHER_SECRET).mint(
        "alice",
        false,
        roaming_runtime::auth::now_secs(),
        600,
    );
    let rotated = server(&app, |c| c.keys.jwt_secret = Some(OTHER_SECRET.into())).await;
    assert_eq!(resume(&rotated.endpoint, &alice, &derived).await, REFUSED);
    let moving = server(&app, |c| {
        c.keys.jwt_secret = Some(OTHER_SECRET.into());
        c.keys.cursor_key = Some(K1.into());
        c.keys.cursor_key_previous = Some(roaming_testkit::SECRET.into());
    })
    .await;
    assert_eq!(
        resume(&moving.endpoint, &alice, &derived).await,
        OPENS,
        "the old JWT secret as the previous cursor key"
    );
}
