//! Settings: every one a flag with a `ROAMING_` environment twin. Each default is defined
//! once, next to what owns it (`Limits::DEFAULT`, `PoolSettings::DEFAULT`,
//! `GuardSettings::DEFAULT`, `ListSettings::DEFAULT`, `TokenRules::DEFAULT_MAX_LIFETIME`, and
//! the server's own below); the
//! flags refer to those, and [`ServeConfig::defaults`] reads them back from the flags.

use clap::{Args, FromArgMatches as _, ValueEnum};
use humantime::Duration as HumanDuration;
use roaming_conversation::{ListSettings, ReadSettings, SyncSettings};
use roaming_domain::Limits;
use roaming_history::ChangeSettings;
use roaming_runtime::auth::TokenRules;
use roaming_runtime::cursor::CursorKeyError;
use roaming_runtime::guard::GuardSettings;
use roaming_runtime::{Authenticator, CursorSealer};
use roaming_store::db::PoolSettings;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Default listen address.
pub const DEFAULT_LISTEN_ADDR: &str = "127.0.0.1:50051";
/// Default database: the local PostgreSQL, database `roaming` (created if missing).
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/roaming";
/// Default time open calls may take to finish after a shutdown signal.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Default largest request message: fits a full append batch of maximal messages.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// Default connection age after which connections close gracefully.
pub const DEFAULT_MAX_CONNECTION_AGE: Duration = Duration::from_secs(30 * 60);
/// Default HTTP/2 keepalive ping interval.
pub const DEFAULT_HTTP2_KEEPALIVE: Duration = Duration::from_secs(30);
/// Longest a client may take over its TLS handshake (gRPC over TLS): a connection that
/// opens and then stalls does not hold its place for longer.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS (RFC 9113 advises no fewer than 100).
pub const DEFAULT_MAX_STREAMS_PER_CONNECTION: u32 = 100;

fn human(d: Duration) -> HumanDuration {
    d.into()
}

/// Which gRPC services a process serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ServiceName {
    /// roaming.history.v1.HistoryService
    History,
    /// roaming.conversation.v1.ConversationService
    Conversation,
}

/// Where the database is.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL URL. The database is created when missing. Never logged. TLS as libpq:
    /// sslmode=disable|prefer (default)|require|verify-ca|verify-full, and sslrootcert=<PEM
    /// file of CA certificates> (without it, verify-ca and verify-full trust the Mozilla roots).
    #[arg(long, env = "ROAMING_DATABASE_URL", default_value = DEFAULT_DATABASE_URL, hide_env_values = true)]
    pub database_url: String,
}

/// The token key (exactly one of the two), what tokens must say, and the cursor key.
#[derive(Clone, Args)]
pub struct KeyArgs {
    /// HS256 secret that signs tokens (at least 32 bytes). Never logged.
    #[arg(long, env = "ROAMING_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Ed25519 or RSA public key that verifies EdDSA / RS256 tokens: PEM text, or a path to a
    /// PEM file. Needs ROAMING_CURSOR_KEY.
    #[arg(long, env = "ROAMING_JWT_PUBLIC_KEY", hide_env_values = true)]
    pub jwt_public_key: Option<String>,
    /// When set, every token must carry this audience (`aud`: this string, or an array
    /// holding it). When unset, a token that names an audience is refused.
    #[arg(long, env = "ROAMING_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// When set, every token must carry this issuer (`iss`).
    #[arg(long, env = "ROAMING_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// The longest a token may be valid: exp - iat (exp - now without iat). Longer ones are
    /// refused, `exp = u64::MAX` included.
    #[arg(long, env = "ROAMING_JWT_MAX_LIFETIME", default_value_t = human(TokenRules::DEFAULT_MAX_LIFETIME))]
    pub jwt_max_lifetime: HumanDuration,
    /// Secret that seals pagination cursors (at least 32 bytes; the same on every replica).
    /// Required with ROAMING_JWT_PUBLIC_KEY; with ROAMING_JWT_SECRET and no cursor key,
    /// cursors are sealed with a key derived from the JWT secret. Never logged.
    #[arg(long, env = "ROAMING_CURSOR_KEY", hide_env_values = true)]
    pub cursor_key: Option<String>,
    /// The cursor key before a rotation: still opens cursors, never seals. Drop it once the
    /// old cursors no longer matter. Never logged.
    #[arg(long, env = "ROAMING_CURSOR_KEY_PREVIOUS", hide_env_values = true)]
    pub cursor_key_previous: Option<String>,
}

impl std::fmt::Debug for KeyArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |v: &Option<String>| if v.is_some() { "<set>" } else { "<unset>" };
        f.debug_struct("KeyArgs")
            .field("jwt_secret", &set(&self.jwt_secret))
            .field("jwt_public_key", &set(&self.jwt_public_key))
            .field("jwt_audience", &self.jwt_audience)
            .field("jwt_issuer", &self.jwt_issuer)
            .field("jwt_max_lifetime", &self.jwt_max_lifetime)
            .field("cursor_key", &set(&self.cursor_key))
            .field("cursor_key_previous", &set(&self.cursor_key_previous))
            .finish()
    }
}

impl KeyArgs {
    /// The public key's PEM text (read from the file when the setting is a path).
    pub fn public_key_pem(&self) -> anyhow::Result<Option<String>> {
        read_pem(self.jwt_public_key.as_deref(), "ROAMING_JWT_PUBLIC_KEY")
    }

    /// What a token must say beyond its signature.
    pub fn token_rules(&self) -> TokenRules {
        TokenRules {
            audience: self.jwt_audience.clone(),
            issuer: self.jwt_issuer.clone(),
            max_lifetime: *self.jwt_max_lifetime,
        }
    }

    /// Token verification, or why these settings cannot verify tokens.
    pub fn authenticator(&self) -> anyhow::Result<Authenticator> {
        let public_key = self.public_key_pem()?;
        Ok(Authenticator::from_settings(
            self.jwt_secret.as_deref(),
            public_key.as_deref(),
            &self.token_rules(),
        )?)
    }

    /// The cursor sealer, or why these settings cannot seal cursors safely.
    pub fn cursor_sealer(&self) -> Result<CursorSealer, CursorKeyError> {
        CursorSealer::from_settings(
            self.cursor_key.as_deref(),
            self.cursor_key_previous.as_deref(),
            self.jwt_secret.as_deref(),
        )
    }
}

/// PEM text from a setting that holds either the text or a path to it.
pub fn read_pem(value: Option<&str>, setting: &str) -> anyhow::Result<Option<String>> {
    match value {
        None => Ok(None),
        Some(v) if v.trim_start().starts_with("-----BEGIN") => Ok(Some(v.to_owned())),
        Some(path) => std::fs::read_to_string(path)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("{setting}: cannot read PEM file {path}: {e}")),
    }
}

/// TLS for the gRPC port: both files or neither (plaintext, the default).
#[derive(Debug, Clone, Args)]
pub struct TlsArgs {
    /// Serve gRPC (health and reflection too) over TLS with this PEM certificate chain, the
    /// server's certificate first; needs --tls-key. Plaintext when neither is set.
    #[arg(long, env = "ROAMING_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(long, env = "ROAMING_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
}

impl TlsArgs {
    /// The server's TLS configuration, `None` for plaintext. Reads and checks both files now
    /// (PEM, and the key belongs to the certificate), so a bad setting stops the server at
    /// start and names the setting.
    pub fn server_tls(&self) -> anyhow::Result<Option<tonic::transport::ServerTlsConfig>> {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let (cert_path, key_path) = match (&self.tls_cert, &self.tls_key) {
            (None, None) => return Ok(None),
            (Some(cert), Some(key)) => (cert, key),
            (Some(_), None) => anyhow::bail!(
                "ROAMING_TLS_CERT (--tls-cert) is set but ROAMING_TLS_KEY (--tls-key) is not: \
                 set both to serve gRPC over TLS, or neither to serve plaintext"
            ),
            (None, Some(_)) => anyhow::bail!(
                "ROAMING_TLS_KEY (--tls-key) is set but ROAMING_TLS_CERT (--tls-cert) is not: \
                 set both to serve gRPC over TLS, or neither to serve plaintext"
            ),
        };
        let (cert_shown, key_shown) = (cert_path.display(), key_path.display());
        let cert = std::fs::read(cert_path)
            .map_err(|e| anyhow::anyhow!("ROAMING_TLS_CERT: cannot read {cert_shown}: {e}"))?;
        let key = std::fs::read(key_path)
            .map_err(|e| anyhow::anyhow!("ROAMING_TLS_KEY: cannot read {key_shown}: {e}"))?;
        let chain = CertificateDer::pem_slice_iter(&cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("ROAMING_TLS_CERT: {cert_shown} is not PEM: {e}"))?;
        if chain.is_empty() {
            anyhow::bail!("ROAMING_TLS_CERT: {cert_shown} holds no PEM certificate");
        }
        // The key's text never goes into a message.
        let private = PrivateKeyDer::from_pem_slice(&key).map_err(|_| {
            anyhow::anyhow!(
                "ROAMING_TLS_KEY: {key_shown} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)"
            )
        })?;
        // What tonic does with them when it serves, here to fail now: the key must belong to
        // the certificate.
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| anyhow::anyhow!("ROAMING_TLS_CERT / ROAMING_TLS_KEY: {e}"))?;
        Ok(Some(
            tonic::transport::ServerTlsConfig::new()
                .identity(tonic::transport::Identity::from_pem(cert, key))
                .timeout(TLS_HANDSHAKE_TIMEOUT),
        ))
    }
}

/// `roaming serve` settings: everything a server is built from (`App::from_config`).
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Address to listen on (host:port).
    #[arg(long, env = "ROAMING_LISTEN_ADDR", default_value = DEFAULT_LISTEN_ADDR)]
    pub listen_addr: SocketAddr,

    /// Services to run, comma-separated (Kubernetes runs each as its own Deployment).
    #[arg(long, env = "ROAMING_SERVICES", value_delimiter = ',', default_values = ["history", "conversation"])]
    pub services: Vec<ServiceName>,

    #[command(flatten)]
    pub tls: TlsArgs,

    #[command(flatten)]
    pub database: DatabaseArgs,

    #[command(flatten)]
    pub keys: KeyArgs,

    /// Conversation list: default activity window (e.g. 7d, 36h).
    #[arg(long, env = "ROAMING_CONVERSATION_WINDOW", default_value_t = human(ListSettings::DEFAULT.window))]
    pub conversation_window: HumanDuration,

    /// Change feed (SyncConversations): how old a sync token may be before the device must
    /// start again from a snapshot (FAILED_PRECONDITION).
    #[arg(long, env = "ROAMING_SYNC_RETENTION", default_value_t = human(SyncSettings::DEFAULT.retention))]
    pub sync_retention: HumanDuration,

    /// How long after storage a message may be recalled (RecallMessage; later:
    /// FAILED_PRECONDITION).
    #[arg(long, env = "ROAMING_RECALL_WINDOW", default_value_t = human(ChangeSettings::DEFAULT.recall_window))]
    pub recall_window: HumanDuration,

    /// Most edits of one message (EditMessage; one more: FAILED_PRECONDITION).
    #[arg(long, env = "ROAMING_MAX_EDITS", default_value_t = ChangeSettings::DEFAULT.max_edits, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_edits: u32,

    /// Unread counts saturate at this number.
    #[arg(long, env = "ROAMING_MAX_UNREAD_COUNT", default_value_t = ReadSettings::DEFAULT.max_unread_count, value_parser = clap::value_parser!(i64).range(1..))]
    pub max_unread_count: i64,

    /// Most pinned conversations per user (one more: FAILED_PRECONDITION).
    #[arg(long, env = "ROAMING_MAX_PINNED", default_value_t = ReadSettings::DEFAULT.max_pinned, value_parser = clap::value_parser!(i64).range(1..))]
    pub max_pinned: i64,

    /// Most marks per conversation (more: FAILED_PRECONDITION).
    #[arg(long, env = "ROAMING_MAX_MARKS", default_value_t = ReadSettings::DEFAULT.max_marks, value_parser = clap::value_parser!(i64).range(1..))]
    pub max_marks: i64,

    /// Conversation list: default page size.
    #[arg(long, env = "ROAMING_CONVERSATION_PAGE_SIZE", default_value_t = ListSettings::DEFAULT.page_size, value_parser = clap::value_parser!(u32).range(1..=i64::from(Limits::DEFAULT.max_conversation_page)))]
    pub conversation_page_size: u32,

    #[command(flatten)]
    pub limits: LimitArgs,

    #[command(flatten)]
    pub pool: PoolArgs,

    /// How long open calls may finish after a shutdown signal before the process exits.
    #[arg(long, env = "ROAMING_DRAIN_TIMEOUT", default_value_t = human(DEFAULT_DRAIN_TIMEOUT))]
    pub drain_timeout: HumanDuration,

    /// Log JSON lines instead of text (filter with RUST_LOG).
    #[arg(long, env = "ROAMING_LOG_JSON")]
    pub log_json: bool,

    /// Serve Prometheus metrics at http://<addr>/metrics (off when unset).
    #[arg(long, env = "ROAMING_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// Export traces over OTLP/gRPC to this collector (e.g. http://otel-collector:4317; off
    /// when unset). Each call's span continues the caller's W3C traceparent.
    #[arg(long, env = "ROAMING_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    #[command(flatten)]
    pub protection: ProtectionArgs,
}

/// Load protection.
#[derive(Debug, Clone, Args)]
pub struct ProtectionArgs {
    /// Most calls in progress at once (streams included); more are refused at once with
    /// RESOURCE_EXHAUSTED. Health and reflection are exempt.
    #[arg(long, env = "ROAMING_MAX_CONCURRENT_CALLS", default_value_t = GuardSettings::DEFAULT.max_concurrent_calls, value_parser = at_least_one)]
    pub max_concurrent_calls: usize,
    /// Longest a unary call may take until its whole response is out (trailers included),
    /// and a stream until its first page; then DEADLINE_EXCEEDED and the call's slot is
    /// freed. A shorter client deadline always applies.
    #[arg(long, env = "ROAMING_REQUEST_TIMEOUT", default_value_t = human(GuardSettings::DEFAULT.request_timeout))]
    pub request_timeout: HumanDuration,
    /// Most calls in progress per user: a user token's user, or the user a service token
    /// acts for (x-roaming-user); a service token acting for nobody counts as its `sub`. More
    /// are refused at once with RESOURCE_EXHAUSTED.
    #[arg(long, env = "ROAMING_MAX_CALLS_PER_USER", default_value_t = GuardSettings::DEFAULT.max_calls_per_user)]
    pub max_calls_per_user: usize,
    /// Longest a call's response (a stream's next page, a unary answer) may wait for its
    /// reader to take anything; then the call is ended with RESOURCE_EXHAUSTED and its slot
    /// freed. A peer that does not take that status within as long again has its connection
    /// closed.
    #[arg(long, env = "ROAMING_STREAM_STALL_TIMEOUT", default_value_t = human(GuardSettings::DEFAULT.stream_stall_timeout))]
    pub stream_stall_timeout: HumanDuration,
    /// Most calls one connection may have open at once (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS).
    #[arg(long, env = "ROAMING_MAX_STREAMS_PER_CONNECTION", default_value_t = DEFAULT_MAX_STREAMS_PER_CONNECTION)]
    pub max_streams_per_connection: u32,
    /// Largest request message, bytes (bigger: RESOURCE_EXHAUSTED). The default fits a full
    /// append batch of maximal messages.
    #[arg(long, env = "ROAMING_MAX_MESSAGE_BYTES", default_value_t = DEFAULT_MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,
    /// Close connections gracefully after this age, so load spreads after a scale-out.
    #[arg(long, env = "ROAMING_MAX_CONNECTION_AGE", default_value_t = human(DEFAULT_MAX_CONNECTION_AGE))]
    pub max_connection_age: HumanDuration,
    /// HTTP/2 keepalive ping interval; a peer that does not answer within 10 s is dropped.
    #[arg(long, env = "ROAMING_HTTP2_KEEPALIVE", default_value_t = human(DEFAULT_HTTP2_KEEPALIVE))]
    pub http2_keepalive: HumanDuration,
}

impl ProtectionArgs {
    /// As the guard layer's settings.
    pub fn guard(&self) -> GuardSettings {
        GuardSettings {
            max_concurrent_calls: self.max_concurrent_calls,
            request_timeout: *self.request_timeout,
            max_calls_per_user: self.max_calls_per_user,
            stream_stall_timeout: *self.stream_stall_timeout,
        }
    }
}

/// Request-shape limits.
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// Largest message body, bytes.
    #[arg(long, env = "ROAMING_MAX_BODY_BYTES", default_value_t = Limits::DEFAULT.max_body_bytes, value_parser = at_least_one)]
    pub max_body_bytes: usize,
    /// Most attributes per message.
    #[arg(long, env = "ROAMING_MAX_ATTRIBUTES", default_value_t = Limits::DEFAULT.max_attributes, value_parser = at_least_one)]
    pub max_attributes: usize,
    /// Largest attribute key or value, bytes.
    #[arg(long, env = "ROAMING_MAX_ATTRIBUTE_BYTES", default_value_t = Limits::DEFAULT.max_attribute_bytes, value_parser = at_least_one)]
    pub max_attribute_bytes: usize,
    /// Most messages per AppendMessages call.
    #[arg(long, env = "ROAMING_MAX_APPEND_BATCH", default_value_t = Limits::DEFAULT.max_append_batch, value_parser = at_least_one)]
    pub max_append_batch: usize,
    /// Largest history page.
    #[arg(long, env = "ROAMING_MAX_PAGE_SIZE", default_value_t = Limits::DEFAULT.max_page_size, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_page_size: u32,
    /// Most pages per FetchHistory stream.
    #[arg(long, env = "ROAMING_MAX_PAGES", default_value_t = Limits::DEFAULT.max_pages, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_pages: u32,
    /// Most ids per RemoveMessages call.
    #[arg(long, env = "ROAMING_MAX_REMOVAL_IDS", default_value_t = Limits::DEFAULT.max_removal_ids, value_parser = at_least_one)]
    pub max_removal_ids: usize,
    /// Most users per membership call.
    #[arg(long, env = "ROAMING_MAX_MEMBERS_PER_CALL", default_value_t = Limits::DEFAULT.max_members_per_call, value_parser = at_least_one)]
    pub max_members_per_call: usize,
    /// Encoded size a history or list page stays below, bytes: a page ends early, with its
    /// cursor, rather than pass it (one message always fits). The default is under the 4 MiB
    /// that gRPC clients accept by default.
    #[arg(long, env = "ROAMING_MAX_PAGE_BYTES", default_value_t = Limits::DEFAULT.max_page_bytes, value_parser = at_least_one)]
    pub max_page_bytes: usize,
}

/// A count setting of at least 1: a zero limit would break the contract (empty pages that
/// are not the end, batches that can hold nothing), so it is refused at start.
fn at_least_one(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

impl LimitArgs {
    /// As the store's limits.
    pub fn to_limits(&self) -> Limits {
        Limits {
            max_body_bytes: self.max_body_bytes,
            max_attributes: self.max_attributes,
            max_attribute_bytes: self.max_attribute_bytes,
            max_append_batch: self.max_append_batch,
            max_page_size: self.max_page_size,
            max_pages: self.max_pages,
            max_removal_ids: self.max_removal_ids,
            max_members_per_call: self.max_members_per_call,
            max_page_bytes: self.max_page_bytes,
            ..Limits::DEFAULT
        }
    }
}

/// Database pool settings.
#[derive(Debug, Clone, Args)]
pub struct PoolArgs {
    /// Most database connections per process.
    #[arg(long, env = "ROAMING_POOL_SIZE", default_value_t = PoolSettings::DEFAULT.max_size, value_parser = at_least_one)]
    pub pool_size: usize,
    /// How long a call waits for a free connection before UNAVAILABLE.
    #[arg(long, env = "ROAMING_POOL_WAIT_TIMEOUT", default_value_t = human(PoolSettings::DEFAULT.wait_timeout))]
    pub pool_wait_timeout: HumanDuration,
    /// How long opening a database connection may take.
    #[arg(long, env = "ROAMING_POOL_CONNECT_TIMEOUT", default_value_t = human(PoolSettings::DEFAULT.create_timeout))]
    pub pool_connect_timeout: HumanDuration,
    /// The longest any SQL statement may run (PostgreSQL statement_timeout).
    #[arg(long, env = "ROAMING_STATEMENT_TIMEOUT", default_value_t = human(PoolSettings::DEFAULT.statement_timeout))]
    pub statement_timeout: HumanDuration,
}

impl PoolArgs {
    /// As the store's pool settings.
    pub fn to_settings(&self) -> PoolSettings {
        PoolSettings {
            max_size: self.pool_size,
            wait_timeout: *self.pool_wait_timeout,
            create_timeout: *self.pool_connect_timeout,
            statement_timeout: *self.statement_timeout,
            ..PoolSettings::DEFAULT
        }
    }
}

impl ServeConfig {
    /// Every setting at its default, read from the flags' own defaults with the environment
    /// ignored: tests, the bench and the reliability suite start here and override fields.
    pub fn defaults() -> Self {
        let command = clap::Command::new("serve").mut_args(|arg| arg.env(None::<&'static str>));
        let command = Self::augment_args(command);
        let matches = command
            .try_get_matches_from(["serve"])
            .expect("every setting has a default");
        Self::from_arg_matches(&matches).expect("defaults parse")
    }

    /// The change feed's settings.
    pub fn sync(&self) -> SyncSettings {
        SyncSettings {
            retention: *self.sync_retention,
        }
    }

    /// Recall and edit settings.
    pub fn changes(&self) -> ChangeSettings {
        ChangeSettings {
            recall_window: *self.recall_window,
            max_edits: self.max_edits,
        }
    }

    /// Read state and organisation limits.
    pub fn read(&self) -> ReadSettings {
        ReadSettings {
            max_unread_count: self.max_unread_count,
            max_pinned: self.max_pinned,
            max_marks: self.max_marks,
        }
    }

    /// The conversation list's settings.
    pub fn list(&self) -> ListSettings {
        ListSettings {
            page_size: self.conversation_page_size,
            window: *self.conversation_window,
        }
    }
}
