//! Ambiguous metadata: two `authorization` or two `x-roaming-user` values are refused on
//! every RPC, whichever comes first, so a gateway that appends its header after a client's
//! cannot be made to act for the client's choice.

use super::support::{Meta, Raw, codes_of_every_rpc, fingerprint};
use roaming_proto::history::v1 as hpb;
use roaming_testkit::{TestApp, peer};
use tonic::Code;

#[tokio::test]
async fn two_authorization_or_two_x_roaming_user_values_are_refused_on_every_rpc() {
    let app = TestApp::spawn().await;
    app.peer("alice", "bob", "for alice and bob").await;
    app.peer("mallory", "eve", "for mallory and eve").await;
    let raw = Raw::connect(&app.endpoint).await;
    let sql = app.sql().await;
    let before = fingerprint(&sql).await;
    let service = app.token("gateway", true);
    let mallory = app.token("mallory", false);
    let bearer = |t: &str| format!("Bearer {t}");
    let mut refused = 0;

    // The client's token, then the gateway's (and the other way round, and twice the same).
    for (first, second) in [
        (&mallory, &service),
        (&service, &mallory),
        (&service, &service),
    ] {
        let meta = Meta {
            authorization: Some(bearer(first)),
            act_as: Some("alice".into()),
            appended: vec![("authorization", bearer(second))],
        };
        for (rpc, code) in codes_of_every_rpc(&raw, meta).await {
            assert_eq!(
                code,
                Code::Unauthenticated,
                "two authorization values, {rpc}"
            );
            refused += 1;
        }
    }
    // A service token; the client's x-roaming-user, then the gateway's (and so on).
    for (token, first, second) in [
        (&service, "bob", "alice"),
        (&service, "alice", "bob"),
        (&service, "alice", "alice"),
        (&mallory, "mallory", "mallory"),
    ] {
        let meta = Meta {
            authorization: Some(bearer(token)),
            act_as: Some(first.into()),
            appended: vec![("x-roaming-user", second.into())],
        };
        for (rpc, code) in codes_of_every_rpc(&raw, meta).await {
            assert_eq!(
                code,
                Code::InvalidArgument,
                "two x-roaming-user values, {rpc}"
            );
            refused += 1;
        }
    }
    // The messages say what is wrong, and repeat no header value.
    let status = raw
        .history(Some(&service), Some("bob"))
        .fetch_history(hpb::FetchHistoryRequest {
            conversation: Some(peer("alice")),
            ..Default::default()
        })
        .await
        .map(|_| ());
    assert!(status.is_ok(), "one x-roaming-user is fine: {status:?}");
    let fetch = |meta: Meta| async {
        raw.history_with(meta)
            .fetch_history(hpb::FetchHistoryRequest {
                conversation: Some(peer("alice")),
                ..Default::default()
            })
            .await
            .map(|_| ())
            .unwrap_err()
    };
    let status = fetch(Meta {
        authorization: Some(bearer(&service)),
        act_as: Some("bob".into()),
        appended: vec![("x-roaming-user", "alice".into())],
    })
    .await;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "x-roaming-user: is given 2 times; send exactly one"
    );
    let status = fetch(Meta {
        authorization: Some(bearer(&mallory)),
        appended: vec![("authorization", bearer(&service))],
        ..Meta::default()
    })
    .await;
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(
        status.message(),
        "authorization is given 2 times; send exactly one"
    );
    assert_eq!(
        before,
        fingerprint(&sql).await,
        "refused calls wrote nothing"
    );
    println!(
        "security[headers]: 3 doubled authorization + 4 doubled x-roaming-user × 8 RPCs → \
         {refused} refused (UNAUTHENTICATED / INVALID_ARGUMENT), 0 served, nothing written"
    );
}
