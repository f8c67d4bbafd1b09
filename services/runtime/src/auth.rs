//! Bearer-token authentication (docs/reference.md, "Callers and authentication"): who is
//! calling, and for which user.
//!
//! A user token (`sub` = user id) acts as that user. A service token (`role = "service"`)
//! may call the backend-only RPCs and acts for the user named in `x-roaming-user` on the
//! user-scoped ones. `exp` is required; only the algorithm of the configured key is accepted,
//! so `alg: none` and HS/RS key confusion are refused. A configured audience and issuer are
//! required claims; a token may live at most [`TokenRules::max_lifetime`]. A request with
//! more than one `authorization` or `x-roaming-user` value is refused: which one a proxy
//! or a server reads first is not something a caller should get to choose.

use crate::error::ApiError;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use roaming_domain::UserId;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tonic::metadata::{Ascii, MetadataMap, MetadataValue};

/// Metadata key naming the user a service token acts for.
pub const ACT_AS_HEADER: &str = "x-roaming-user";
/// Metadata key of the bearer token.
pub const AUTHORIZATION_HEADER: &str = "authorization";
/// The `role` claim value of service tokens.
pub const SERVICE_ROLE: &str = "service";
/// The shortest HS256 secret, in bytes: RFC 7518 §3.2 requires a key at least as long as the
/// hash output (256 bits).
pub const MIN_HS256_SECRET_BYTES: usize = 32;
/// Clock skew tolerated on `exp`, `nbf` and `iat`, seconds.
pub const LEEWAY_SECS: u64 = 5;

/// The claims Roaming reads and writes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Claims {
    /// User id (user tokens) or the service's name (service tokens).
    pub sub: String,
    /// Expiry, seconds since the epoch (required).
    pub exp: u64,
    /// Issued at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Not before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// `"service"` for backend callers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Audience: one name or several (RFC 7519 §4.1.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
    /// Issuer (RFC 7519 §4.1.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
}

/// The `aud` claim: a string, or an array of strings (RFC 7519 §4.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// `"aud": "roaming"`.
    One(String),
    /// `"aud": ["roaming", "other"]`.
    Many(Vec<String>),
}

/// What a token must say beyond a good signature, `sub` and `exp` (the server's settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRules {
    /// When set, `aud` is required and must name it. When unset, a token that names an
    /// audience is refused: the server cannot identify itself in it (RFC 7519 §4.1.3).
    pub audience: Option<String>,
    /// When set, `iss` is required and must be it.
    pub issuer: Option<String>,
    /// The longest a token may be valid: `exp - iat`, or `exp - now` without `iat`.
    pub max_lifetime: Duration,
}

impl TokenRules {
    /// The default longest token lifetime: a day. Roaming keeps no revocation list, so a
    /// token's lifetime is how long a leaked one works; a day covers access tokens (minutes to
    /// hours) and daily-rotated service tokens, and `exp = u64::MAX` is refused.
    pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

    /// No audience, no issuer, the default lifetime.
    pub const DEFAULT: Self = Self {
        audience: None,
        issuer: None,
        max_lifetime: Self::DEFAULT_MAX_LIFETIME,
    };
}

impl Default for TokenRules {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A bad key setting, reported at start-up.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Neither setting was given.
    #[error(
        "no token key is configured: set ROAMING_JWT_SECRET (an HS256 secret) or \
         ROAMING_JWT_PUBLIC_KEY (an Ed25519 or RSA public key, PEM)"
    )]
    Missing,
    /// Both settings were given.
    #[error("set only one of ROAMING_JWT_SECRET and ROAMING_JWT_PUBLIC_KEY")]
    Both,
    /// The PEM could not be read as an Ed25519 or RSA key.
    #[error("{0} is not an Ed25519 or RSA key in PEM form")]
    BadPem(&'static str),
    /// The secret is too short to be safe.
    #[error(
        "ROAMING_JWT_SECRET must be at least {min} bytes (it has {0}; RFC 7518 §3.2): use a \
         random secret, e.g. `openssl rand -base64 48`",
        min = MIN_HS256_SECRET_BYTES
    )]
    ShortSecret(usize),
    /// An audience or issuer setting is empty.
    #[error("{0} is set but empty: give a value, or leave it unset")]
    Empty(&'static str),
    /// The lifetime bound is zero.
    #[error("ROAMING_JWT_MAX_LIFETIME must be more than 0 (it would refuse every token)")]
    ZeroLifetime,
}

/// Checks an HS256 secret's length (the server's and `roaming token`'s).
pub fn check_hs256_secret(secret: &str) -> Result<(), KeyError> {
    if secret.len() < MIN_HS256_SECRET_BYTES {
        return Err(KeyError::ShortSecret(secret.len()));
    }
    Ok(())
}

/// Verifies tokens.
#[derive(Clone)]
pub struct Authenticator {
    key: DecodingKey,
    validation: Validation,
    rules: TokenRules,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("algorithms", &self.validation.algorithms)
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// From the server settings: exactly one of an HS256 secret (at least
    /// [`MIN_HS256_SECRET_BYTES`]) or a public key PEM, and the rules tokens must follow.
    pub fn from_settings(
        secret: Option<&str>,
        public_key_pem: Option<&str>,
        rules: &TokenRules,
    ) -> Result<Self, KeyError> {
        let (key, algorithm) = match (secret, public_key_pem) {
            (Some(_), Some(_)) => return Err(KeyError::Both),
            (None, None) => return Err(KeyError::Missing),
            (Some(s), None) => {
                check_hs256_secret(s)?;
                (DecodingKey::from_secret(s.as_bytes()), Algorithm::HS256)
            }
            (None, Some(pem)) => {
                if let Ok(k) = DecodingKey::from_ed_pem(pem.as_bytes()) {
                    (k, Algorithm::EdDSA)
                } else if let Ok(k) = DecodingKey::from_rsa_pem(pem.as_bytes()) {
                    (k, Algorithm::RS256)
                } else {
                    return Err(KeyError::BadPem("ROAMING_JWT_PUBLIC_KEY"));
                }
            }
        };
        if rules.audience.as_deref() == Some("") {
            return Err(KeyError::Empty("ROAMING_JWT_AUDIENCE"));
        }
        if rules.issuer.as_deref() == Some("") {
            return Err(KeyError::Empty("ROAMING_JWT_ISSUER"));
        }
        if rules.max_lifetime.is_zero() {
            return Err(KeyError::ZeroLifetime);
        }
        let mut validation = Validation::new(algorithm);
        validation.algorithms = vec![algorithm];
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        let mut required = vec!["exp", "sub"];
        // With no audience configured, `validate_aud` still refuses a token that names one.
        validation.validate_aud = true;
        if let Some(audience) = &rules.audience {
            validation.set_audience(&[audience]);
            required.push("aud");
        }
        if let Some(issuer) = &rules.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        Ok(Self {
            key,
            validation,
            rules: rules.clone(),
        })
    }

    /// Authenticates a request's metadata.
    pub fn authenticate(&self, metadata: &MetadataMap) -> Result<Caller, ApiError> {
        let header = sole(metadata, AUTHORIZATION_HEADER)
            .map_err(|n| {
                ApiError::Unauthenticated(format!(
                    "authorization is given {n} times; send exactly one"
                ))
            })?
            .ok_or_else(|| {
                ApiError::Unauthenticated("missing authorization: Bearer <token>".into())
            })?
            .to_str()
            .map_err(|_| ApiError::Unauthenticated("authorization is not valid text".into()))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| {
                ApiError::Unauthenticated("authorization must be: Bearer <token>".into())
            })?
            .trim();
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| {
                ApiError::Unauthenticated(format!("invalid token: {}", self.describe(&e)))
            })?
            .claims;
        self.check_lifetime(&claims, now_secs())
            .map_err(|why| ApiError::Unauthenticated(format!("invalid token: {why}")))?;
        let is_service = claims.role.as_deref() == Some(SERVICE_ROLE);
        let act_as = match sole(metadata, ACT_AS_HEADER).map_err(|n| {
            ApiError::invalid(
                ACT_AS_HEADER,
                format!("is given {n} times; send exactly one"),
            )
        })? {
            None => None,
            Some(v) => {
                let text = v.to_str().map_err(|_| {
                    ApiError::invalid(ACT_AS_HEADER, "must contain only [A-Za-z0-9_.-]")
                })?;
                Some(UserId::parse(ACT_AS_HEADER, text)?)
            }
        };
        if is_service {
            return Ok(Caller {
                subject: claims.sub,
                is_service,
                act_as,
            });
        }
        let user = UserId::parse("sub", &claims.sub)
            .map_err(|e| ApiError::Unauthenticated(format!("invalid token: {e}")))?;
        if let Some(other) = &act_as {
            if other != &user {
                return Err(ApiError::PermissionDenied(format!(
                    "{ACT_AS_HEADER} needs a service token; a user token acts only as its sub"
                )));
            }
        }
        Ok(Caller {
            subject: claims.sub,
            is_service: false,
            act_as: Some(user),
        })
    }

    /// Refuses a token issued in the future or valid for longer than the rules allow.
    fn check_lifetime(&self, claims: &Claims, now: u64) -> Result<(), String> {
        let max = self.rules.max_lifetime.as_secs();
        match claims.iat {
            Some(iat) if iat > now.saturating_add(LEEWAY_SECS) => {
                Err("issued in the future (iat)".into())
            }
            Some(iat) if claims.exp.saturating_sub(iat) > max => Err(format!(
                "valid for longer than this server accepts (exp - iat over {max} s)"
            )),
            None if claims.exp.saturating_sub(now) > max.saturating_add(LEEWAY_SECS) => Err(
                format!("valid for longer than this server accepts (exp over {max} s from now)"),
            ),
            _ => Ok(()),
        }
    }

    /// Why a token was refused, in words that never repeat the token's content.
    fn describe(&self, err: &jsonwebtoken::errors::Error) -> String {
        use jsonwebtoken::errors::ErrorKind;
        match err.kind() {
            ErrorKind::ExpiredSignature => "expired".into(),
            ErrorKind::ImmatureSignature => "not valid yet (nbf)".into(),
            ErrorKind::InvalidAlgorithm => "unexpected algorithm".into(),
            ErrorKind::InvalidSignature => "bad signature".into(),
            ErrorKind::InvalidAudience if self.rules.audience.is_some() => {
                "the audience (aud) is not this server".into()
            }
            ErrorKind::InvalidAudience => {
                "it names an audience (aud), and this server is configured with none".into()
            }
            ErrorKind::InvalidIssuer => "the issuer (iss) is not the expected one".into(),
            // The name is one of the required claims (exp, sub, aud, iss), never token text.
            ErrorKind::MissingRequiredClaim(claim) => {
                format!("the {claim} claim is required (missing, or not a string)")
            }
            ErrorKind::InvalidClaimFormat(claim) => format!("the {claim} claim is not a number"),
            _ => "malformed".into(),
        }
    }
}

/// The single value of `key`: `Err(count)` when there are several.
fn sole<'a>(
    metadata: &'a MetadataMap,
    key: &str,
) -> Result<Option<&'a MetadataValue<Ascii>>, usize> {
    let mut values = metadata.get_all(key).iter();
    let first = values.next();
    match values.count() {
        0 => Ok(first),
        more => Err(more + 1),
    }
}

/// Who is calling, as the interceptor established it.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's `sub`.
    pub subject: String,
    /// Whether the token has the service role.
    pub is_service: bool,
    /// The user whose view this call reaches: the token's user, or `x-roaming-user`.
    pub act_as: Option<UserId>,
}

impl Caller {
    /// The user this call acts for (user-scoped RPCs).
    pub fn user(&self) -> Result<UserId, ApiError> {
        self.act_as.clone().ok_or_else(|| {
            ApiError::invalid(
                ACT_AS_HEADER,
                "is required when a service token calls a user-scoped RPC",
            )
        })
    }

    /// Refuses callers without the service role.
    pub fn require_service(&self, rpc: &str) -> Result<(), ApiError> {
        if self.is_service {
            Ok(())
        } else {
            Err(ApiError::PermissionDenied(format!(
                "{rpc} needs a service token"
            )))
        }
    }

    /// The caller from a request's extensions (set by [`interceptor`]).
    pub fn of<T>(request: &tonic::Request<T>) -> Result<Caller, ApiError> {
        request
            .extensions()
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::Internal("request reached a handler unauthenticated".into()))
    }
}

/// A tonic interceptor that authenticates every request, takes the caller's place in the
/// per-user quota (into the [`QuotaSlot`](crate::guard::QuotaSlot) the guard layer gave the
/// call; refused with RESOURCE_EXHAUSTED when the caller has too many calls in progress), and
/// stores its [`Caller`]. This is the first code that knows who calls; the guard, which runs
/// before routing, holds the place until the call's response is over (`guard::quota` says
/// why the work is split so).
pub fn interceptor(
    auth: std::sync::Arc<Authenticator>,
) -> impl Fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone {
    move |mut request: tonic::Request<()>| {
        let caller = auth.authenticate(request.metadata())?;
        crate::trace::record_caller(&caller);
        if let Some(slot) = request.extensions().get::<crate::guard::QuotaSlot>() {
            slot.acquire(&caller)?;
        }
        request.extensions_mut().insert(caller);
        Ok(request)
    }
}

/// Mints tokens (`roaming token`, tests).
#[derive(Clone)]
pub struct TokenSigner {
    key: EncodingKey,
    algorithm: Algorithm,
    audience: Option<String>,
    issuer: Option<String>,
}

impl TokenSigner {
    /// From an HS256 secret (any length: a server refuses a secret shorter than
    /// [`MIN_HS256_SECRET_BYTES`], see [`check_hs256_secret`]).
    pub fn hs256(secret: &str) -> Self {
        Self {
            key: EncodingKey::from_secret(secret.as_bytes()),
            algorithm: Algorithm::HS256,
            audience: None,
            issuer: None,
        }
    }

    /// From an Ed25519 or RSA private key (PEM).
    pub fn from_private_pem(pem: &str) -> Result<Self, KeyError> {
        let (key, algorithm) = if let Ok(key) = EncodingKey::from_ed_pem(pem.as_bytes()) {
            (key, Algorithm::EdDSA)
        } else if let Ok(key) = EncodingKey::from_rsa_pem(pem.as_bytes()) {
            (key, Algorithm::RS256)
        } else {
            return Err(KeyError::BadPem("the private key"));
        };
        Ok(Self {
            key,
            algorithm,
            audience: None,
            issuer: None,
        })
    }

    /// The same signer, minting tokens with `aud` set to `audience` (when given).
    pub fn with_audience(mut self, audience: Option<String>) -> Self {
        self.audience = audience;
        self
    }

    /// The same signer, minting tokens with `iss` set to `issuer` (when given).
    pub fn with_issuer(mut self, issuer: Option<String>) -> Self {
        self.issuer = issuer;
        self
    }

    /// Signs `claims` as they are.
    pub fn sign(&self, claims: &Claims) -> String {
        jsonwebtoken::encode(&Header::new(self.algorithm), claims, &self.key)
            .expect("encoding claims cannot fail")
    }

    /// A token for `sub` (a service token when `service`), valid for `ttl_secs` from
    /// `now_secs`, with this signer's audience and issuer.
    pub fn mint(&self, sub: &str, service: bool, now_secs: u64, ttl_secs: u64) -> String {
        self.sign(&Claims {
            sub: sub.to_owned(),
            exp: now_secs.saturating_add(ttl_secs),
            iat: Some(now_secs),
            nbf: None,
            role: service.then(|| SERVICE_ROLE.to_owned()),
            aud: self.audience.clone().map(Audience::One),
            iss: self.issuer.clone(),
        })
    }
}

/// Seconds since the epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::MetadataValue;

    const SECRET: &str = "unit-test-secret-0123456789abcdef0123";

    fn rules(audience: Option<&str>, issuer: Option<&str>) -> TokenRules {
        TokenRules {
            audience: audience.map(str::to_owned),
            issuer: issuer.map(str::to_owned),
            ..TokenRules::DEFAULT
        }
    }

    fn auth(rules: &TokenRules) -> Authenticator {
        Authenticator::from_settings(Some(SECRET), None, rules).expect("valid settings")
    }

    fn metadata(authorization: &[&str], act_as: &[&str]) -> MetadataMap {
        let mut m = MetadataMap::new();
        for a in authorization {
            m.append(AUTHORIZATION_HEADER, MetadataValue::try_from(*a).unwrap());
        }
        for u in act_as {
            m.append(ACT_AS_HEADER, MetadataValue::try_from(*u).unwrap());
        }
        m
    }

    /// Signs `claims` (any JSON) with the test secret.
    fn token(claims: &serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    fn check(auth: &Authenticator, claims: &serde_json::Value) -> Result<Caller, ApiError> {
        auth.authenticate(&metadata(&[&format!("Bearer {}", token(claims))], &[]))
    }

    /// Asserts UNAUTHENTICATED with a message containing `why`, that repeats no claim value.
    #[track_caller]
    fn refused(result: Result<Caller, ApiError>, why: &str) {
        match result {
            Err(ApiError::Unauthenticated(m)) => {
                assert!(m.contains(why), "{m:?} should say {why:?}");
                for echoed in ["mallory-sub", "elsewhere", "forged-issuer"] {
                    assert!(!m.contains(echoed), "{m:?} repeats token content");
                }
            }
            other => panic!("expected UNAUTHENTICATED ({why}), got {other:?}"),
        }
    }

    #[test]
    fn hs256_secrets_need_32_bytes_and_the_error_names_the_setting_not_the_value() {
        let short = "s".repeat(MIN_HS256_SECRET_BYTES - 1);
        let err = Authenticator::from_settings(Some(&short), None, &TokenRules::DEFAULT)
            .unwrap_err()
            .to_string();
        assert!(err.contains("ROAMING_JWT_SECRET") && err.contains("at least 32 bytes"));
        assert!(err.contains("it has 31"), "{err}");
        assert!(!err.contains(&short), "{err}");
        let exactly = "s".repeat(MIN_HS256_SECRET_BYTES);
        assert!(Authenticator::from_settings(Some(&exactly), None, &TokenRules::DEFAULT).is_ok());
        assert!(check_hs256_secret(&short).is_err() && check_hs256_secret(&exactly).is_ok());
    }

    #[test]
    fn empty_audience_or_issuer_and_a_zero_lifetime_are_start_up_errors() {
        for (rules, setting) in [
            (rules(Some(""), None), "ROAMING_JWT_AUDIENCE"),
            (rules(None, Some("")), "ROAMING_JWT_ISSUER"),
            (
                TokenRules {
                    max_lifetime: Duration::ZERO,
                    ..TokenRules::DEFAULT
                },
                "ROAMING_JWT_MAX_LIFETIME",
            ),
        ] {
            let err = Authenticator::from_settings(Some(SECRET), None, &rules)
                .unwrap_err()
                .to_string();
            assert!(err.contains(setting), "{err}");
        }
    }

    #[test]
    fn a_configured_audience_is_required_as_a_string_or_in_an_array() {
        let a = auth(&rules(Some("roaming"), None));
        let now = now_secs();
        let with = |aud: serde_json::Value| serde_json::json!({"sub": "alice", "exp": now + 60, "iat": now, "aud": aud});
        assert!(check(&a, &with("roaming".into())).is_ok());
        assert!(check(&a, &with(serde_json::json!(["elsewhere", "roaming"]))).is_ok());
        refused(
            check(&a, &serde_json::json!({"sub": "alice", "exp": now + 60})),
            "aud claim is required",
        );
        refused(
            check(&a, &with("elsewhere".into())),
            "audience (aud) is not this server",
        );
        refused(
            check(&a, &with("Roaming".into())),
            "audience (aud) is not this server",
        );
        refused(
            check(&a, &with(serde_json::json!(["elsewhere"]))),
            "audience (aud) is not this server",
        );
        refused(check(&a, &with(serde_json::json!([]))), "audience (aud)");
        refused(check(&a, &with(serde_json::json!(42))), "invalid token");
    }

    #[test]
    fn without_a_configured_audience_a_token_naming_one_is_refused() {
        let a = auth(&TokenRules::DEFAULT);
        let now = now_secs();
        assert!(check(&a, &serde_json::json!({"sub": "alice", "exp": now + 60})).is_ok());
        refused(
            check(
                &a,
                &serde_json::json!({"sub": "alice", "exp": now + 60, "aud": "elsewhere"}),
            ),
            "configured with none",
        );
    }

    #[test]
    fn a_configured_issuer_is_required_and_must_match() {
        let a = auth(&rules(None, Some("https://idp.example")));
        let now = now_secs();
        let with = |iss: serde_json::Value| serde_json::json!({"sub": "alice", "exp": now + 60, "iss": iss});
        assert!(check(&a, &with("https://idp.example".into())).is_ok());
        refused(
            check(&a, &serde_json::json!({"sub": "alice", "exp": now + 60})),
            "iss claim is required",
        );
        refused(check(&a, &with("forged-issuer".into())), "issuer (iss)");
        refused(
            check(&a, &with("https://idp.example/".into())),
            "issuer (iss)",
        );
        // RFC 7519: iss is one StringOrURI, never an array.
        refused(
            check(&a, &with(serde_json::json!(["https://idp.example"]))),
            "malformed",
        );
        // Without a configured issuer, iss is not read.
        assert!(check(&auth(&TokenRules::DEFAULT), &with("anything".into())).is_ok());
    }

    #[test]
    fn tokens_living_longer_than_the_maximum_or_issued_in_the_future_are_refused() {
        let a = auth(&TokenRules {
            max_lifetime: Duration::from_secs(3600),
            ..TokenRules::DEFAULT
        });
        let now = now_secs();
        let t = |exp: u64, iat: Option<u64>| match iat {
            Some(iat) => serde_json::json!({"sub": "alice", "exp": exp, "iat": iat}),
            None => serde_json::json!({"sub": "alice", "exp": exp}),
        };
        assert!(
            check(&a, &t(now + 3600, Some(now))).is_ok(),
            "exactly the maximum"
        );
        assert!(check(&a, &t(now + 3600, None)).is_ok());
        refused(
            check(&a, &t(now + 3601, Some(now))),
            "exp - iat over 3600 s",
        );
        refused(check(&a, &t(now + 3600 + 60, None)), "over 3600 s from now");
        refused(check(&a, &t(u64::MAX, Some(now))), "exp - iat over 3600 s");
        refused(check(&a, &t(u64::MAX, None)), "over 3600 s from now");
        // A short exp - iat that puts iat in the future does not get around it.
        refused(
            check(&a, &t(u64::MAX, Some(u64::MAX - 1))),
            "issued in the future",
        );
        refused(
            check(&a, &t(now + 3600, Some(now + 60))),
            "issued in the future",
        );
        assert!(
            check(&a, &t(now + 60, Some(now + LEEWAY_SECS))).is_ok(),
            "within the leeway"
        );
        // An old token's lifetime counts from iat, not from now.
        assert!(check(&a, &t(now + 60, Some(now - 3000))).is_ok());
        refused(
            check(&a, &t(now + 700, Some(now - 3000))),
            "exp - iat over 3600 s",
        );
    }

    #[test]
    fn the_default_maximum_refuses_u64_max_and_accepts_a_day() {
        let a = auth(&TokenRules::DEFAULT);
        let now = now_secs();
        let day = TokenRules::DEFAULT_MAX_LIFETIME.as_secs();
        assert!(
            check(
                &a,
                &serde_json::json!({"sub": "alice", "exp": now + day, "iat": now})
            )
            .is_ok()
        );
        refused(
            check(
                &a,
                &serde_json::json!({"sub": "alice", "exp": u64::MAX, "iat": now}),
            ),
            "valid for longer",
        );
    }

    #[test]
    fn two_authorization_or_x_roaming_user_values_are_refused() {
        let a = auth(&TokenRules::DEFAULT);
        let signer = TokenSigner::hs256(SECRET);
        let now = now_secs();
        let gateway = format!("Bearer {}", signer.mint("gateway", true, now, 60));
        let mallory = format!("Bearer {}", signer.mint("mallory-sub", false, now, 60));
        for pair in [
            [&gateway, &mallory],
            [&mallory, &gateway],
            [&gateway, &gateway],
        ] {
            let m = metadata(&[pair[0], pair[1]], &[]);
            refused(a.authenticate(&m), "authorization is given 2 times");
        }
        refused(
            a.authenticate(&metadata(&[&gateway, &mallory, &gateway], &[])),
            "given 3 times",
        );
        for users in [["alice", "bob"], ["bob", "alice"], ["alice", "alice"]] {
            let m = metadata(&[&gateway], &users);
            match a.authenticate(&m) {
                Err(ApiError::Invalid(e)) => {
                    let text = e.to_string();
                    assert!(text.starts_with(ACT_AS_HEADER), "{text}");
                    assert!(text.contains("given 2 times"), "{text}");
                }
                other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
            }
        }
        // One of each is fine.
        let caller = a.authenticate(&metadata(&[&gateway], &["alice"])).unwrap();
        assert!(caller.is_service);
        assert_eq!(caller.act_as.unwrap().as_str(), "alice");
    }

    #[test]
    fn minted_tokens_carry_the_signers_audience_and_issuer() {
        let a = auth(&rules(Some("roaming"), Some("https://idp.example")));
        let now = now_secs();
        let plain = TokenSigner::hs256(SECRET).mint("alice", false, now, 60);
        refused(
            a.authenticate(&metadata(&[&format!("Bearer {plain}")], &[])),
            "claim is required",
        );
        let signer = TokenSigner::hs256(SECRET)
            .with_audience(Some("roaming".into()))
            .with_issuer(Some("https://idp.example".into()));
        let good = signer.mint("alice", false, now, 60);
        assert!(
            a.authenticate(&metadata(&[&format!("Bearer {good}")], &[]))
                .is_ok()
        );
    }
}
