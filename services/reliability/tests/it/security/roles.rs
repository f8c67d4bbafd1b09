//! Roles and act-as on every RPC: user tokens, look-alike roles, missing or foreign x-roaming-user.

use super::support::{Raw, codes_of_every_rpc, codes_of_rpcs, fingerprint, sign_with};
use jsonwebtoken::{Algorithm, EncodingKey};
use roaming_proto::common::v1::ConversationType;
use roaming_proto::conversation::v1 as cpb;
use roaming_proto::history::v1 as hpb;
use roaming_runtime::auth::now_secs;
use roaming_testkit::{TestApp, conv, peer};
use tonic::Code;

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
