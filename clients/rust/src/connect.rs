//! Connecting: endpoint, credentials, timeouts.

use crate::error::Error;
use roaming_proto::conversation::v1::conversation_service_client::ConversationServiceClient;
use roaming_proto::history::v1::history_service_client::HistoryServiceClient;
use std::time::Duration;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// Default time allowed to open the connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default deadline of each call.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The metadata attached to every call: the bearer token and, for service callers, the user
/// they act for.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    authorization: Option<AsciiMetadataValue>,
    act_as: Option<AsciiMetadataValue>,
}

impl tonic::service::Interceptor for Credentials {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.authorization {
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

/// Builds a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    endpoint: String,
    token: Option<String>,
    act_as: Option<String>,
    connect_timeout: Duration,
    request_timeout: Duration,
}

impl ClientBuilder {
    /// The bearer token (a user token, or a service token with [`ClientBuilder::act_as`]).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// For service tokens: the user whose view user-scoped calls reach.
    pub fn act_as(mut self, user: impl Into<String>) -> Self {
        self.act_as = Some(user.into());
        self
    }

    /// Time allowed to open the connection.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Deadline of each call (sent to the server as `grpc-timeout`).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Connects.
    pub async fn connect(self) -> Result<Client, Error> {
        let endpoint = Endpoint::from_shared(self.endpoint.clone())
            .map_err(|e| Error::Connect(e.to_string()))?
            .connect_timeout(self.connect_timeout)
            .timeout(self.request_timeout)
            .user_agent(concat!("roaming-client-rust/", env!("CARGO_PKG_VERSION")))
            .map_err(|e| Error::Connect(e.to_string()))?;
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| Error::Connect(e.to_string()))?;
        Client::from_channel(channel, self.token.as_deref(), self.act_as.as_deref())
    }
}

/// A connection to a Roaming server, with credentials. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    channel: Channel,
    credentials: Credentials,
}

impl Client {
    /// Starts building a client for `endpoint` (e.g. `http://127.0.0.1:50051`).
    pub fn builder(endpoint: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            endpoint: endpoint.into(),
            token: None,
            act_as: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }

    /// A client over an existing channel.
    pub fn from_channel(
        channel: Channel,
        token: Option<&str>,
        act_as: Option<&str>,
    ) -> Result<Self, Error> {
        let authorization = token
            .map(|t| {
                MetadataValue::try_from(format!("Bearer {t}"))
                    .map_err(|_| Error::Credentials("the token is not valid ASCII metadata".into()))
            })
            .transpose()?;
        let act_as = act_as
            .map(|u| {
                MetadataValue::try_from(u).map_err(|_| {
                    Error::Credentials("the act-as user is not valid ASCII metadata".into())
                })
            })
            .transpose()?;
        Ok(Self {
            channel,
            credentials: Credentials {
                authorization,
                act_as,
            },
        })
    }

    /// The same connection with another token and act-as user.
    pub fn with_credentials(
        &self,
        token: Option<&str>,
        act_as: Option<&str>,
    ) -> Result<Self, Error> {
        Self::from_channel(self.channel.clone(), token, act_as)
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
}
