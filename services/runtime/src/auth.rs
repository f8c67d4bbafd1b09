//! Bearer-token authentication (docs/reference.md, "Callers and authentication"): who is
//! calling, and for which user.
//!
//! A user token (`sub` = user id) acts as that user. A service token (`role = "service"`)
//! may call the backend-only RPCs and acts for the user named in `x-roaming-user` on the
//! user-scoped ones. `exp` is required; only the algorithm of the configured key is accepted,
//! so `alg: none` and HS/RS key confusion are refused.

use crate::error::ApiError;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use roaming_domain::UserId;
use serde::{Deserialize, Serialize};
use tonic::metadata::MetadataMap;

/// Metadata key naming the user a service token acts for.
pub const ACT_AS_HEADER: &str = "x-roaming-user";
/// The `role` claim value of service tokens.
pub const SERVICE_ROLE: &str = "service";

/// The claims Roaming reads and writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    #[error("ROAMING_JWT_SECRET must be at least 16 bytes")]
    ShortSecret,
}

/// Verifies tokens.
#[derive(Clone)]
pub struct Authenticator {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("algorithms", &self.validation.algorithms)
            .finish()
    }
}

impl Authenticator {
    /// From the server settings: exactly one of an HS256 secret or a public key PEM.
    pub fn from_settings(
        secret: Option<&str>,
        public_key_pem: Option<&str>,
    ) -> Result<Self, KeyError> {
        let (key, algorithm) = match (secret, public_key_pem) {
            (Some(_), Some(_)) => return Err(KeyError::Both),
            (None, None) => return Err(KeyError::Missing),
            (Some(s), None) => {
                if s.len() < 16 {
                    return Err(KeyError::ShortSecret);
                }
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
        let mut validation = Validation::new(algorithm);
        validation.algorithms = vec![algorithm];
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Ok(Self { key, validation })
    }

    /// Authenticates a request's metadata.
    pub fn authenticate(&self, metadata: &MetadataMap) -> Result<Caller, ApiError> {
        let header = metadata
            .get("authorization")
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
            .map_err(|e| ApiError::Unauthenticated(format!("invalid token: {}", describe(&e))))?
            .claims;
        let is_service = claims.role.as_deref() == Some(SERVICE_ROLE);
        let act_as = match metadata.get(ACT_AS_HEADER) {
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
}

fn describe(err: &jsonwebtoken::errors::Error) -> &'static str {
    use jsonwebtoken::errors::ErrorKind;
    match err.kind() {
        ErrorKind::ExpiredSignature => "expired",
        ErrorKind::ImmatureSignature => "not valid yet (nbf)",
        ErrorKind::InvalidAlgorithm => "unexpected algorithm",
        ErrorKind::InvalidSignature => "bad signature",
        ErrorKind::MissingRequiredClaim(_) => "a required claim (exp, sub) is missing",
        _ => "malformed",
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

/// A tonic interceptor that authenticates every request and stores its [`Caller`].
pub fn interceptor(
    auth: std::sync::Arc<Authenticator>,
) -> impl Fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone {
    move |mut request: tonic::Request<()>| {
        let caller = auth.authenticate(request.metadata())?;
        crate::trace::record_caller(&caller);
        request.extensions_mut().insert(caller);
        Ok(request)
    }
}

/// Mints tokens (`roaming token`, tests).
#[derive(Clone)]
pub struct TokenSigner {
    key: EncodingKey,
    algorithm: Algorithm,
}

impl TokenSigner {
    /// From an HS256 secret.
    pub fn hs256(secret: &str) -> Self {
        Self {
            key: EncodingKey::from_secret(secret.as_bytes()),
            algorithm: Algorithm::HS256,
        }
    }

    /// From an Ed25519 or RSA private key (PEM).
    pub fn from_private_pem(pem: &str) -> Result<Self, KeyError> {
        if let Ok(key) = EncodingKey::from_ed_pem(pem.as_bytes()) {
            return Ok(Self {
                key,
                algorithm: Algorithm::EdDSA,
            });
        }
        if let Ok(key) = EncodingKey::from_rsa_pem(pem.as_bytes()) {
            return Ok(Self {
                key,
                algorithm: Algorithm::RS256,
            });
        }
        Err(KeyError::BadPem("the private key"))
    }

    /// Signs `claims`.
    pub fn sign(&self, claims: &Claims) -> String {
        jsonwebtoken::encode(&Header::new(self.algorithm), claims, &self.key)
            .expect("encoding claims cannot fail")
    }

    /// A token for `sub` (a service token when `service`), valid for `ttl_secs` from `now_secs`.
    pub fn mint(&self, sub: &str, service: bool, now_secs: u64, ttl_secs: u64) -> String {
        self.sign(&Claims {
            sub: sub.to_owned(),
            exp: now_secs + ttl_secs,
            iat: Some(now_secs),
            nbf: None,
            role: service.then(|| SERVICE_ROLE.to_owned()),
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
