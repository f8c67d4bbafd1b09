//! Raw protobuf bodies no typed client can send: bad UTF-8 in string fields, broken wire format.

use super::support::{NOW_MS, fingerprint};
use bytes::{Buf, BufMut};
use rand::{Rng as _, SeedableRng as _};
use roaming_proto::conversation::v1 as cpb;
use roaming_proto::history::v1 as hpb;
use roaming_testkit::{TestApp, peer};
use std::collections::{BTreeMap, HashMap};
use tonic::{Code, Status};

/// Sends and receives raw message bytes, so that a request can carry what no typed client
/// encodes (a string field that is not UTF-8, a broken wire format).
#[derive(Clone, Copy, Default)]
struct RawCodec;

struct RawEncoder;
struct RawDecoder;

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n).to_vec()))
    }
}

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

async fn raw_call(
    channel: &tonic::transport::Channel,
    token: &str,
    act_as: Option<&str>,
    path: &'static str,
    streaming: bool,
    body: Vec<u8>,
) -> Result<(), Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let mut req = tonic::Request::new(body);
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    if let Some(u) = act_as {
        req.metadata_mut()
            .insert("x-roaming-user", u.parse().unwrap());
    }
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    if streaming {
        let mut stream = grpc
            .server_streaming(req, path, RawCodec)
            .await?
            .into_inner();
        while stream.message().await?.is_some() {}
        Ok(())
    } else {
        grpc.unary(req, path, RawCodec).await.map(|_| ())
    }
}

/// Bytes that are not UTF-8, of the same length as the marker they replace.
const NOT_UTF8: [u8; 8] = [0xC3, 0x28, 0xFF, 0xFE, 0x80, 0xC0, 0xAF, 0xED];
const MARK: &str = "QqMARKqQ";

/// `encoded` with every occurrence of the marker replaced by invalid UTF-8.
fn poison(encoded: Vec<u8>) -> Vec<u8> {
    let mark = MARK.as_bytes();
    let mut out = encoded;
    let mut i = 0;
    let mut replaced = 0;
    while i + mark.len() <= out.len() {
        if &out[i..i + mark.len()] == mark {
            out[i..i + mark.len()].copy_from_slice(&NOT_UTF8);
            replaced += 1;
            i += mark.len();
        } else {
            i += 1;
        }
    }
    assert!(replaced > 0, "the marker is in the encoding");
    out
}

#[tokio::test]
async fn raw_bodies_with_bad_utf8_or_a_broken_wire_format_are_refused_and_write_nothing() {
    raw_bodies(false).await;
}

/// Bad input is INVALID_ARGUMENT, never INTERNAL. tonic answers a body
/// that does not decode with INTERNAL before any Roaming code runs; the guard layer has to
/// rewrite it (see docs/reliability.md).
#[tokio::test]
async fn raw_bodies_that_do_not_decode_are_invalid_argument_not_internal() {
    raw_bodies(true).await;
}

async fn raw_bodies(strict_code: bool) {
    use prost::Message as _;
    let app = TestApp::spawn().await;
    app.peer("alice", "bob", "hello").await;
    let channel = tonic::transport::Endpoint::from_shared(app.endpoint.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let user = app.token("alice", false);
    let service = app.token("gateway", true);
    let sql = app.sql().await;
    let before = fingerprint(&sql).await;

    let cref = |id: &str| Some(peer(id));
    let message = |sender: &str, recipient: &str, cid: &str, k: &str, v: &str| hpb::NewMessage {
        conversation_type: 1,
        sender: sender.into(),
        recipient: recipient.into(),
        r#type: 1,
        body: b"x".to_vec(),
        attributes: HashMap::from([(k.to_owned(), v.to_owned())]),
        client_msg_id: cid.into(),
    };
    // (what, path, streaming, service caller, encoded body with the marker in one field)
    let mut bodies: Vec<(&str, &'static str, bool, bool, Vec<u8>)> = vec![
        (
            "NewMessage.sender",
            "/roaming.history.v1.HistoryService/AppendMessages",
            false,
            true,
            hpb::AppendMessagesRequest {
                messages: vec![message(MARK, "bob", "c", "k", "v")],
            }
            .encode_to_vec(),
        ),
        (
            "NewMessage.recipient",
            "/roaming.history.v1.HistoryService/AppendMessages",
            false,
            true,
            hpb::AppendMessagesRequest {
                messages: vec![message("alice", MARK, "c", "k", "v")],
            }
            .encode_to_vec(),
        ),
        (
            "NewMessage.client_msg_id",
            "/roaming.history.v1.HistoryService/AppendMessages",
            false,
            true,
            hpb::AppendMessagesRequest {
                messages: vec![message("alice", "bob", MARK, "k", "v")],
            }
            .encode_to_vec(),
        ),
        (
            "NewMessage.attributes key",
            "/roaming.history.v1.HistoryService/AppendMessages",
            false,
            true,
            hpb::AppendMessagesRequest {
                messages: vec![message("alice", "bob", "c", MARK, "v")],
            }
            .encode_to_vec(),
        ),
        (
            "NewMessage.attributes value",
            "/roaming.history.v1.HistoryService/AppendMessages",
            false,
            true,
            hpb::AppendMessagesRequest {
                messages: vec![message("alice", "bob", "c", "k", MARK)],
            }
            .encode_to_vec(),
        ),
        (
            "FetchHistoryRequest.conversation.id",
            "/roaming.history.v1.HistoryService/FetchHistory",
            true,
            false,
            hpb::FetchHistoryRequest {
                conversation: cref(MARK),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "FetchHistoryRequest.start_msg_id",
            "/roaming.history.v1.HistoryService/FetchHistory",
            true,
            false,
            hpb::FetchHistoryRequest {
                conversation: cref("bob"),
                start_msg_id: MARK.into(),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "FetchHistoryRequest.cursor",
            "/roaming.history.v1.HistoryService/FetchHistory",
            true,
            false,
            hpb::FetchHistoryRequest {
                conversation: cref("bob"),
                cursor: MARK.into(),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "FetchHistoryRequest.senders",
            "/roaming.history.v1.HistoryService/FetchHistory",
            true,
            false,
            hpb::FetchHistoryRequest {
                conversation: cref("bob"),
                senders: vec!["alice".into(), MARK.into()],
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "RemoveMessagesRequest.msg_ids",
            "/roaming.history.v1.HistoryService/RemoveMessages",
            false,
            false,
            hpb::RemoveMessagesRequest {
                conversation: cref("bob"),
                msg_ids: vec![MARK.into()],
            }
            .encode_to_vec(),
        ),
        (
            "RemoveMessagesRequest.conversation.id",
            "/roaming.history.v1.HistoryService/RemoveMessages",
            false,
            false,
            hpb::RemoveMessagesRequest {
                conversation: cref(MARK),
                msg_ids: vec!["1".into()],
            }
            .encode_to_vec(),
        ),
        (
            "RemoveMessagesBeforeRequest.conversation.id",
            "/roaming.history.v1.HistoryService/RemoveMessagesBefore",
            false,
            false,
            hpb::RemoveMessagesBeforeRequest {
                conversation: cref(MARK),
                before_time_ms: NOW_MS,
            }
            .encode_to_vec(),
        ),
        (
            "ListConversationsRequest.cursor",
            "/roaming.conversation.v1.ConversationService/ListConversations",
            false,
            false,
            cpb::ListConversationsRequest {
                cursor: MARK.into(),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "RemoveConversationRequest.conversation.id",
            "/roaming.conversation.v1.ConversationService/RemoveConversation",
            false,
            false,
            cpb::RemoveConversationRequest {
                conversation: cref(MARK),
                delete_messages: true,
                scope: 1,
            }
            .encode_to_vec(),
        ),
        (
            "AddMembersRequest.user_ids",
            "/roaming.conversation.v1.ConversationService/AddMembers",
            false,
            true,
            cpb::AddMembersRequest {
                conversation: Some(roaming_testkit::conv(
                    roaming_proto::common::v1::ConversationType::Group,
                    "team",
                )),
                user_ids: vec!["bob".into(), MARK.into()],
            }
            .encode_to_vec(),
        ),
        (
            "RemoveMembersRequest.conversation.id",
            "/roaming.conversation.v1.ConversationService/RemoveMembers",
            false,
            true,
            cpb::RemoveMembersRequest {
                conversation: Some(roaming_testkit::conv(
                    roaming_proto::common::v1::ConversationType::Group,
                    MARK,
                )),
                user_ids: vec!["bob".into()],
            }
            .encode_to_vec(),
        ),
    ];
    for b in &mut bodies {
        b.4 = poison(std::mem::take(&mut b.4));
    }
    let mut codes: BTreeMap<String, u64> = BTreeMap::new();
    let mut violations = Vec::new();
    let mut sent = 0;
    for (what, path, streaming, as_service, body) in &bodies {
        let (token, act_as) = if *as_service {
            (&service, None)
        } else {
            (&user, None)
        };
        let got = raw_call(&channel, token, act_as, path, *streaming, body.clone()).await;
        sent += 1;
        let status = got.err();
        let code = status.as_ref().map_or(Code::Ok, |s| s.code());
        *codes.entry(format!("{code:?}")).or_default() += 1;
        let field = what.split(' ').next().unwrap().rsplit('.').next().unwrap();
        let named = status.as_ref().is_some_and(|s| s.message().contains(field));
        let refused = if strict_code {
            code == Code::InvalidArgument
        } else {
            matches!(code, Code::InvalidArgument | Code::Internal)
        };
        if !refused || !named {
            violations.push(format!("bad UTF-8 in {what}: {status:?}"));
        }
    }

    // Broken wire format: every valid body above cut short or with garbage appended, and
    // random bytes. Nothing may be written, nothing may panic; the answer is a refusal.
    let mut broken = 0;
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    for (what, path, streaming, as_service, body) in &bodies {
        let token = if *as_service { &service } else { &user };
        let mut variants = vec![
            body[..body.len() / 2].to_vec(),
            [body.as_slice(), &[0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F]].concat(),
            [body.as_slice(), &[0x07]].concat(),
        ];
        for _ in 0..5 {
            let n = rng.random_range(1..64);
            variants.push((0..n).map(|_| rng.random::<u8>()).collect());
        }
        for v in variants {
            let got = raw_call(&channel, token, None, path, *streaming, v.clone()).await;
            broken += 1;
            let code = got.as_ref().err().map_or(Code::Ok, |s| s.code());
            *codes.entry(format!("{code:?}")).or_default() += 1;
            let bad = if strict_code {
                matches!(code, Code::Internal | Code::Unknown | Code::Unavailable)
            } else {
                matches!(code, Code::Unknown | Code::Unavailable)
            };
            if bad {
                violations.push(format!("broken {what} ({v:?}): {got:?}"));
            }
        }
    }
    assert_eq!(
        before,
        fingerprint(&sql).await,
        "a refused raw body wrote something"
    );
    println!(
        "input[raw{}]: {sent} bodies with bad UTF-8 (one per string field of every request) and \
         {broken} with a broken wire format; codes {codes:?}; violations {}",
        if strict_code { ", strict codes" } else { "" },
        violations.len()
    );
    assert!(
        violations.is_empty(),
        "{violations:#?}\n(undecodable bodies come back INTERNAL from tonic's codec until the guard \
         layer rewrites them: services/reliability/docs/patches/\
         guard-undecodable-is-invalid-argument.patch)"
    );
}
