//! What the security tests share: keys, raw clients with any metadata, tokens, a call of every RPC.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use roaming_proto::common::v1::ConversationType;
use roaming_proto::conversation::v1 as cpb;
use roaming_proto::conversation::v1::conversation_service_client::ConversationServiceClient;
use roaming_proto::history::v1 as hpb;
use roaming_proto::history::v1::history_service_client::HistoryServiceClient;
use roaming_runtime::auth::{Claims, now_secs};
use roaming_testkit::{conv, one_message, peer};
use tonic::Code;
use tonic::metadata::AsciiMetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub fn key(name: &str) -> String {
    let path = format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Metadata attached to every call, sent exactly as given (no client-side checks).
#[derive(Clone, Default)]
pub struct Meta {
    pub authorization: Option<String>,
    pub act_as: Option<String>,
    /// More values appended after those (a key may repeat: a second `authorization`, ...).
    pub appended: Vec<(&'static str, String)>,
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
        for (key, value) in &self.appended {
            let v: AsciiMetadataValue = value.parse().expect("ASCII metadata");
            req.metadata_mut().append(*key, v);
        }
        Ok(req)
    }
}

pub type History = HistoryServiceClient<InterceptedService<Channel, Meta>>;
pub type Conversations = ConversationServiceClient<InterceptedService<Channel, Meta>>;

/// Raw clients over one channel, with any metadata.
#[derive(Clone)]
pub struct Raw {
    channel: Channel,
}

impl Raw {
    pub async fn connect(endpoint: &str) -> Self {
        let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
            .unwrap()
            .connect()
            .await
            .expect("connect");
        Self { channel }
    }

    pub fn meta(token: Option<&str>, act_as: Option<&str>) -> Meta {
        Meta {
            authorization: token.map(|t| format!("Bearer {t}")),
            act_as: act_as.map(str::to_owned),
            appended: Vec::new(),
        }
    }

    pub fn history(&self, token: Option<&str>, act_as: Option<&str>) -> History {
        HistoryServiceClient::with_interceptor(self.channel.clone(), Self::meta(token, act_as))
    }

    pub fn conversations(&self, token: Option<&str>, act_as: Option<&str>) -> Conversations {
        ConversationServiceClient::with_interceptor(self.channel.clone(), Self::meta(token, act_as))
    }

    pub fn history_with(&self, meta: Meta) -> History {
        HistoryServiceClient::with_interceptor(self.channel.clone(), meta)
    }
}

pub fn b64(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(s)
}

pub fn claims(sub: &str, service: bool) -> Claims {
    let now = now_secs();
    Claims {
        sub: sub.to_owned(),
        exp: now + 600,
        iat: Some(now),
        nbf: None,
        role: service.then(|| "service".to_owned()),
        ..Default::default()
    }
}

pub fn sign_with(alg: Algorithm, key: &EncodingKey, claims: &impl serde::Serialize) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).expect("sign")
}

/// An unsigned token with any header.
pub fn unsigned(header: &str, payload: &serde_json::Value, signature: &str) -> String {
    format!("{}.{}.{signature}", b64(header), b64(&payload.to_string()))
}

/// One call of every kind the interceptor guards, with `meta`; returns their codes.
pub async fn codes_of_every_rpc(raw: &Raw, meta: Meta) -> Vec<(&'static str, Code)> {
    codes_of_rpcs(raw, meta, true).await
}

/// As [`codes_of_every_rpc`], the backend-only RPCs left out unless `backend`.
pub async fn codes_of_rpcs(raw: &Raw, meta: Meta, backend: bool) -> Vec<(&'static str, Code)> {
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
                h.append_messages(one_message(
                    ConversationType::Peer,
                    "alice",
                    "bob",
                    "x",
                    &format!("sec-{}", rand::random::<u64>()),
                ))
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
pub async fn fingerprint(sql: &tokio_postgres::Client) -> Vec<String> {
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
