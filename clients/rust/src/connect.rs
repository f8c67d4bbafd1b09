//! Connecting: endpoint, credentials (a fixed token or a provider), timeouts, TLS, retry.

use crate::error::Error;
use crate::retry::RetryPolicy;
use roaming_proto::conversation::v1::conversation_service_client::ConversationServiceClient;
use roaming_proto::history::v1::history_service_client::HistoryServiceClient;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// Default time allowed to open the connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default deadline of each call.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The user agent sent with every call (tonic appends its own).
pub const USER_AGENT: &str = concat!("roaming-client-rust/", env!("CARGO_PKG_VERSION"));

/// Supplies the bearer token, asked once per call: implement it to refresh tokens before
/// they expire. Any `Fn() -> String + Send + Sync` closure is a provider.
pub trait TokenProvider: Send + Sync + 'static {
    /// The token to send now. An error fails the call with `UNAUTHENTICATED`.
    fn token(&self) -> Result<String, TokenError>;
}

impl<F> TokenProvider for F
where
    F: Fn() -> String + Send + Sync + 'static,
{
    fn token(&self) -> Result<String, TokenError> {
        Ok(self())
    }
}

/// Why a [`TokenProvider`] has no token to give.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("token provider: {0}")]
pub struct TokenError(pub String);

/// The metadata attached to every call: the bearer token (fixed, or from a provider) and,
/// for service callers, the user they act for.
#[derive(Clone, Default)]
pub struct Credentials {
    authorization: Option<AsciiMetadataValue>,
    provider: Option<Arc<dyn TokenProvider>>,
    act_as: Option<AsciiMetadataValue>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the token.
        f.debug_struct("Credentials")
            .field("token", &self.authorization.as_ref().map(|_| "<redacted>"))
            .field("provider", &self.provider.as_ref().map(|_| "<provider>"))
            .field("act_as", &self.act_as)
            .finish()
    }
}

fn bearer(token: &str) -> Result<AsciiMetadataValue, Error> {
    MetadataValue::try_from(format!("Bearer {token}"))
        .map_err(|_| Error::Credentials("the token is not valid ASCII metadata".into()))
}

impl Credentials {
    fn new(token: Option<&str>, act_as: Option<&str>) -> Result<Self, Error> {
        let authorization = token.map(bearer).transpose()?;
        let act_as = act_as
            .map(|u| {
                MetadataValue::try_from(u).map_err(|_| {
                    Error::Credentials("the act-as user is not valid ASCII metadata".into())
                })
            })
            .transpose()?;
        Ok(Self {
            authorization,
            provider: None,
            act_as,
        })
    }
}

impl tonic::service::Interceptor for Credentials {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(provider) = &self.provider {
            let token = provider
                .token()
                .map_err(|e| tonic::Status::unauthenticated(e.to_string()))?;
            let value =
                bearer(&token).map_err(|e| tonic::Status::unauthenticated(e.to_string()))?;
            request.metadata_mut().insert("authorization", value);
        } else if let Some(v) = &self.authorization {
            request.metadata_mut().insert("authorization", v.clone());
        }
        if let Some(v) = &self.act_as {
            request.metadata_mut().insert("x-roaming-user", v.clone());
        }
        Ok(request)
    }
}

/// Raw history client with credentials attached.
pub type RawHistoryClient = HistoryServiceClient<InterceptedService<Channel, Credentials>>;
/// Raw conversation client with credentials attached.
pub type RawConversationClient =
    ConversationServiceClient<InterceptedService<Channel, Credentials>>;

/// A transport error with its causes: tonic's own message is only "transport error", the
/// reason (connection refused, a certificate not trusted, ...) is in its sources.
fn with_causes(err: &tonic::transport::Error) -> String {
    let mut text = err.to_string();
    let mut cause = std::error::Error::source(err);
    while let Some(c) = cause {
        // Wrappers often repeat their inner error's message: say it once.
        let message = c.to_string();
        if !text.ends_with(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        cause = c.source();
    }
    text
}

/// Builds a [`Client`]: `Client::builder(endpoint).token(..).connect().await`.
#[derive(Clone)]
pub struct ClientBuilder {
    endpoint: String,
    token: Option<String>,
    provider: Option<Arc<dyn TokenProvider>>,
    act_as: Option<String>,
    connect_timeout: Duration,
    request_timeout: Duration,
    retry: RetryPolicy,
    #[cfg(feature = "tls")]
    tls: Option<tonic::transport::ClientTlsConfig>,
    #[cfg(feature = "local-store")]
    local: Option<crate::local::LocalStore>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("endpoint", &self.endpoint)
            .field("act_as", &self.act_as)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// The bearer token (a user token, or a service token with [`ClientBuilder::act_as`]).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// A token provider asked before every call (takes precedence over
    /// [`ClientBuilder::token`]); use it to refresh tokens.
    pub fn token_provider(mut self, provider: impl TokenProvider) -> Self {
        self.provider = Some(Arc::new(provider));
        self
    }

    /// For service tokens: the user whose view user-scoped calls reach.
    pub fn act_as(mut self, user: impl Into<String>) -> Self {
        self.act_as = Some(user.into());
        self
    }

    /// Time allowed to open the connection (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Deadline of each call, sent to the server as `grpc-timeout` (default 30 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How calls that are safe to repeat are retried on `UNAVAILABLE`
    /// (default: [`RetryPolicy::default`]; [`RetryPolicy::none`] turns retrying off).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// TLS settings. Without them, an `https://` endpoint uses the platform's trusted roots.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, config: tonic::transport::ClientTlsConfig) -> Self {
        self.tls = Some(config);
        self
    }

    /// Keeps a local copy of what this client fetches in `store` (one store per user, as on
    /// a device).
    #[cfg(feature = "local-store")]
    pub fn local_store(mut self, store: crate::local::LocalStore) -> Self {
        self.local = Some(store);
        self
    }

    fn endpoint(&self) -> Result<Endpoint, Error> {
        let connect = |e: tonic::transport::Error| Error::Connect(with_causes(&e));
        let endpoint = Endpoint::from_shared(self.endpoint.clone())
            .map_err(connect)?
            .connect_timeout(self.connect_timeout)
            .timeout(self.request_timeout)
            .user_agent(USER_AGENT)
            .map_err(connect)?;
        #[cfg(feature = "tls")]
        let endpoint = match (&self.tls, self.endpoint.starts_with("https:")) {
            (Some(config), _) => endpoint.tls_config(config.clone()).map_err(connect)?,
            (None, true) => endpoint
                .tls_config(tonic::transport::ClientTlsConfig::new().with_enabled_roots())
                .map_err(connect)?,
            (None, false) => endpoint,
        };
        Ok(endpoint)
    }

    fn build(self, channel: Channel) -> Result<Client, Error> {
        let mut client =
            Client::from_channel(channel, self.token.as_deref(), self.act_as.as_deref())?;
        client.credentials.provider = self.provider;
        client.retry = self.retry;
        #[cfg(feature = "local-store")]
        {
            client.local = self.local;
        }
        Ok(client)
    }

    /// Connects now; fails with [`Error::Connect`] when the server cannot be reached.
    pub async fn connect(self) -> Result<Client, Error> {
        let channel = self
            .endpoint()?
            .connect()
            .await
            .map_err(|e| Error::Connect(with_causes(&e)))?;
        self.build(channel)
    }

    /// Returns at once and connects on the first call (so a client can start offline and
    /// read its local store, or wait out a server that is still starting).
    pub fn connect_lazy(self) -> Result<Client, Error> {
        let channel = self.endpoint()?.connect_lazy();
        self.build(channel)
    }
}

/// A connection to a Roaming server, with credentials. Cheap to clone.
///
/// The typed calls ([`Client::fetch_history`], [`Client::list_conversations`], the removals,
/// [`Client::append`], the membership calls) retry on `UNAVAILABLE` and keep the local store
/// up to date; [`Client::history`] and [`Client::conversations`] reach the raw generated
/// clients for anything else.
#[derive(Debug, Clone)]
pub struct Client {
    channel: Channel,
    pub(crate) credentials: Credentials,
    pub(crate) retry: RetryPolicy,
    #[cfg(feature = "local-store")]
    pub(crate) local: Option<crate::local::LocalStore>,
}

impl Client {
    /// Starts building a client for `endpoint` (e.g. `http://127.0.0.1:50051`).
    pub fn builder(endpoint: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            endpoint: endpoint.into(),
            token: None,
            provider: None,
            act_as: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            retry: RetryPolicy::default(),
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "local-store")]
            local: None,
        }
    }

    /// A client over an existing channel, with the default retry policy and no local store.
    pub fn from_channel(
        channel: Channel,
        token: Option<&str>,
        act_as: Option<&str>,
    ) -> Result<Self, Error> {
        Ok(Self {
            channel,
            credentials: Credentials::new(token, act_as)?,
            retry: RetryPolicy::default(),
            #[cfg(feature = "local-store")]
            local: None,
        })
    }

    /// The same connection and retry policy with another token and act-as user. The result
    /// has no local store (a local store belongs to one user); attach one with
    /// `with_local_store`.
    pub fn with_credentials(
        &self,
        token: Option<&str>,
        act_as: Option<&str>,
    ) -> Result<Self, Error> {
        let mut client = Self::from_channel(self.channel.clone(), token, act_as)?;
        client.retry = self.retry.clone();
        Ok(client)
    }

    /// The same client with another retry policy.
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The retry policy of the typed calls.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// The raw generated history client, credentials attached.
    pub fn history(&self) -> RawHistoryClient {
        HistoryServiceClient::with_interceptor(self.channel.clone(), self.credentials.clone())
    }

    /// The raw generated conversation client, credentials attached.
    pub fn conversations(&self) -> RawConversationClient {
        ConversationServiceClient::with_interceptor(self.channel.clone(), self.credentials.clone())
    }

    /// The underlying channel.
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// The user whose view this client's user-scoped calls reach: the act-as user when one
    /// is set, else the `sub` claim of a user token (read from the JWT, not verified: the
    /// server does that). `None` for a service token without an act-as user, or a token that
    /// is not a JWT.
    pub fn user_id(&self) -> Option<String> {
        if let Some(user) = &self.credentials.act_as {
            return user.to_str().ok().map(str::to_owned);
        }
        let token = match &self.credentials.provider {
            Some(provider) => provider.token().ok()?,
            None => self
                .credentials
                .authorization
                .as_ref()?
                .to_str()
                .ok()?
                .strip_prefix("Bearer ")?
                .to_owned(),
        };
        jwt_user(&token)
    }
}

/// The `sub` of a JWT that is not a service token.
fn jwt_user(token: &str) -> Option<String> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    if claims.get("role").and_then(|r| r.as_str()) == Some("service") {
        return None;
    }
    claims.get("sub")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_user_is_the_act_as_user_or_the_sub_of_a_user_token() {
        use base64::Engine as _;
        let jwt = |claims: &str| {
            let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
            format!("{}.{}.sig", b64(r#"{"alg":"HS256"}"#), b64(claims))
        };
        let channel = Endpoint::from_static("http://127.0.0.1:1").connect_lazy();
        let user = jwt(r#"{"sub":"alice","exp":1}"#);
        let service = jwt(r#"{"sub":"gateway","role":"service"}"#);
        let of = |token: Option<&str>, act_as: Option<&str>| {
            Client::from_channel(channel.clone(), token, act_as)
                .unwrap()
                .user_id()
        };
        assert_eq!(of(Some(&user), None).as_deref(), Some("alice"));
        assert_eq!(of(Some(&service), None), None);
        assert_eq!(of(Some(&service), Some("bob")).as_deref(), Some("bob"));
        assert_eq!(of(Some("opaque"), None), None);
        assert_eq!(of(None, None), None);
    }
}
