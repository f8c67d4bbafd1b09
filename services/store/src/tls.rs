//! TLS to PostgreSQL: libpq's `sslmode` and `sslrootcert`, read from the database URL, and
//! the rustls connector that every connection uses (the pool, direct connections, cancel
//! requests).
//!
//! tokio-postgres knows only `sslmode=disable|prefer|require` and no `sslrootcert`, so
//! [`split`] takes both out of the URL (either form: `postgres://…?sslmode=…` or
//! `key=value …`) before the driver parses the rest; the driver is then told only whether to
//! ask for TLS and whether to insist, and the connector does the verifying:
//!
//! | `sslmode` | driver | certificate chain | host name |
//! |---|---|---|---|
//! | `disable` | no TLS | — | — |
//! | `prefer` (default) | TLS if the server offers it | checked only when `sslrootcert` is given | not checked |
//! | `require` | TLS or fail | checked only when `sslrootcert` is given | not checked |
//! | `verify-ca` | TLS or fail | checked | not checked |
//! | `verify-full` | TLS or fail | checked | checked |
//!
//! As in libpq, `require` with a root certificate behaves as `verify-ca`. The chain is
//! checked against `sslrootcert` (a PEM file of one or more CA certificates), or, without it
//! or with `sslrootcert=system`, against the Mozilla roots compiled into the binary
//! (webpki-roots), so the image needs no CA bundle.

use crate::db::UrlError;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{WebPkiServerVerifier, verify_server_cert_signed_by_trust_anchor};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;

/// The connector every database connection is opened with.
pub type Tls = tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode`, as far as a client without client certificates uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// TLS when the server offers it, else plaintext.
    Prefer,
    /// TLS or no connection; the certificate is checked only against a given `sslrootcert`.
    Require,
    /// TLS, and the server's certificate chains to a trusted root (any host name).
    VerifyCa,
    /// TLS, the chain is trusted, and the certificate names the host connected to.
    VerifyFull,
}

impl SslMode {
    /// Without `sslmode` in the URL (libpq's default).
    pub const DEFAULT: SslMode = SslMode::Prefer;

    /// Every mode, by its name in the URL.
    pub const ALL: [SslMode; 5] = [
        SslMode::Disable,
        SslMode::Prefer,
        SslMode::Require,
        SslMode::VerifyCa,
        SslMode::VerifyFull,
    ];

    /// The name in the URL.
    pub fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn parse(value: &str) -> Result<SslMode, UrlError> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == value)
            .ok_or_else(|| {
                UrlError::new(format!(
                    "sslmode {:?} is unknown: use disable, prefer, require, verify-ca or \
                     verify-full",
                    shorten(value)
                ))
            })
    }

    /// What the driver is told: whether to ask for TLS, and whether to insist.
    pub fn driver(self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as Driver;
        match self {
            SslMode::Disable => Driver::Disable,
            SslMode::Prefer => Driver::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => Driver::Require,
        }
    }
}

/// The roots a server's certificate must chain to (`sslrootcert`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    /// A PEM file of one or more CA certificates.
    File(PathBuf),
    /// `sslrootcert=system`: the Mozilla roots compiled into the binary.
    System,
}

/// What the URL says about TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// `sslmode`.
    pub mode: SslMode,
    /// `sslrootcert`.
    pub root_cert: Option<RootCert>,
}

/// Parameters the driver does not support and that would otherwise be refused as unknown
/// with no explanation.
const UNSUPPORTED: [&str; 4] = ["sslcert", "sslkey", "sslpassword", "sslcrl"];

/// Takes `sslmode` and `sslrootcert` out of `url` (a `postgres://` URL or a key=value
/// string): the rest, for the driver, and what they said. Errors never echo the URL.
pub fn split(url: &str) -> Result<(String, TlsSettings), UrlError> {
    let mut mode = None;
    let mut root_cert = None;
    let mut take = |key: &str, value: &str| -> Result<bool, UrlError> {
        match key {
            "sslmode" => mode = Some(SslMode::parse(value)?),
            "sslrootcert" if value == "system" => root_cert = Some(RootCert::System),
            "sslrootcert" if value.is_empty() => {
                return Err(UrlError::new(
                    "sslrootcert is empty: give a PEM file's path",
                ));
            }
            "sslrootcert" => root_cert = Some(RootCert::File(PathBuf::from(value))),
            k if UNSUPPORTED.contains(&k) => {
                return Err(UrlError::new(format!(
                    "{k} is not supported (no client certificates or CRLs); TLS takes \
                     sslmode and sslrootcert"
                )));
            }
            _ => return Ok(false),
        }
        Ok(true)
    };
    let rest = match url_body(url) {
        Some(body_start) => split_url(url, body_start, &mut take)?,
        None => split_key_values(url, &mut take)?,
    };
    let settings = TlsSettings {
        mode: mode.unwrap_or(SslMode::DEFAULT),
        root_cert,
    };
    Ok((rest, settings))
}

/// Where a URL's body starts (after `postgres://` or `postgresql://`), when it is one.
fn url_body(url: &str) -> Option<usize> {
    ["postgres://", "postgresql://"]
        .into_iter()
        .find(|p| url.starts_with(p))
        .map(str::len)
}

/// The URL without the parameters `take` took. The query starts at the first `?` after the
/// credentials, as the driver reads it (a password may hold a `?`, never an `@`).
fn split_url(
    url: &str,
    body_start: usize,
    take: &mut impl FnMut(&str, &str) -> Result<bool, UrlError>,
) -> Result<String, UrlError> {
    let body = &url[body_start..];
    let after_credentials = body.find('@').map_or(0, |i| i + 1);
    let Some(q) = body[after_credentials..].find('?') else {
        return Ok(url.to_owned());
    };
    let query_start = body_start + after_credentials + q;
    let (head, query) = (&url[..query_start], &url[query_start + 1..]);
    let mut kept = Vec::new();
    for pair in query.split('&') {
        // A pair without `=` is left for the driver to refuse.
        let taken = match pair.split_once('=') {
            Some((key, value)) => take(&decode(key)?, &decode(value)?)?,
            None => false,
        };
        if !taken {
            kept.push(pair);
        }
    }
    Ok(if kept.is_empty() {
        head.to_owned()
    } else {
        format!("{head}?{}", kept.join("&"))
    })
}

fn decode(s: &str) -> Result<Cow<'_, str>, UrlError> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map_err(|_| UrlError::malformed())
}

/// A key=value string without the parameters `take` took, the others written back quoted.
/// Reads values as the driver does: `'quoted'` or bare, `\` escaping the next character.
fn split_key_values(
    s: &str,
    take: &mut impl FnMut(&str, &str) -> Result<bool, UrlError>,
) -> Result<String, UrlError> {
    let mut kept = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        if key.is_empty() {
            break;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(UrlError::malformed());
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let quoted = chars.next_if_eq(&'\'').is_some();
        let mut value = String::new();
        let mut closed = false;
        while let Some(c) = chars.next() {
            match c {
                '\'' if quoted => {
                    closed = true;
                    break;
                }
                c if c.is_whitespace() && !quoted => break,
                '\\' => value.extend(chars.next()),
                c => value.push(c),
            }
        }
        if (quoted && !closed) || (!quoted && value.is_empty()) {
            return Err(UrlError::malformed());
        }
        if !take(&key, &value)? {
            let escaped = value.replace('\\', "\\\\").replace('\'', "\\'");
            kept.push(format!("{key}='{escaped}'"));
        }
    }
    Ok(kept.join(" "))
}

/// At most 32 characters of a value, for an error message.
fn shorten(value: &str) -> String {
    value.chars().take(32).collect()
}

/// The connector for `settings`: rustls with ring, offering ALPN `postgresql` (as libpq
/// does, so that servers and proxies that negotiate it accept the connection), verifying as
/// the module's table says. Reads the root certificate file now, so a bad one stops the
/// server at start.
pub fn connector(settings: &TlsSettings) -> Result<Tls, UrlError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = match &settings.root_cert {
        None => None,
        Some(RootCert::System) => Some(mozilla_roots()),
        Some(RootCert::File(path)) => Some(read_roots(path)?),
    };
    let verifier: Arc<dyn ServerCertVerifier> = match (settings.mode, roots) {
        (SslMode::VerifyFull, roots) => WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots.unwrap_or_else(mozilla_roots)),
            provider.clone(),
        )
        .build()
        .map_err(|e| UrlError::new(format!("sslrootcert: {e}")))?,
        (SslMode::VerifyCa, roots) => Arc::new(ChainOnly {
            roots: roots.unwrap_or_else(mozilla_roots),
            provider: provider.clone(),
        }),
        (SslMode::Prefer | SslMode::Require, Some(roots)) => Arc::new(ChainOnly {
            roots,
            provider: provider.clone(),
        }),
        // Disable never reaches the connector.
        (SslMode::Disable | SslMode::Prefer | SslMode::Require, _) => Arc::new(Unverified {
            provider: provider.clone(),
        }),
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| UrlError::new(format!("TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(Tls::new(config))
}

fn mozilla_roots() -> RootCertStore {
    RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

fn read_roots(path: &std::path::Path) -> Result<RootCertStore, UrlError> {
    let shown = path.display();
    let pem = std::fs::read(path)
        .map_err(|e| UrlError::new(format!("sslrootcert {shown}: cannot read it: {e}")))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| UrlError::new(format!("sslrootcert {shown}: not a PEM file: {e}")))?;
    if certs.is_empty() {
        return Err(UrlError::new(format!(
            "sslrootcert {shown}: holds no PEM certificate"
        )));
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| {
            UrlError::new(format!(
                "sslrootcert {shown}: a certificate is not usable as a root: {e}"
            ))
        })?;
    }
    Ok(roots)
}

/// The handshake-signature half of a [`ServerCertVerifier`], the same whether or not the
/// certificate itself is checked: the signatures are always verified with the provider's
/// algorithms (a struct with a `provider: Arc<CryptoProvider>` field).
macro_rules! handshake_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls12_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.provider
                .signature_verification_algorithms
                .supported_schemes()
        }
    };
}

/// `verify-ca` (and `require` with a root certificate): the chain must lead to a trusted
/// root; the host name is not compared.
#[derive(Debug)]
struct ChainOnly {
    roots: RootCertStore,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    handshake_signatures!();
}

/// `prefer` and `require` without a root certificate: encrypted, the certificate not checked
/// (as libpq does). The handshake's signatures are still verified, so the session is bound to
/// the key of the certificate that was presented.
#[derive(Debug)]
struct Unverified {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    handshake_signatures!();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(url: &str) -> (String, TlsSettings) {
        split(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    fn err(url: &str) -> String {
        match split(url) {
            Ok(v) => panic!("{url}: expected an error, got {v:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn urls_lose_sslmode_and_sslrootcert_and_keep_the_rest() {
        let (rest, tls) = ok(
            "postgres://u:p@db:5432/roaming?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=x",
        );
        assert_eq!(rest, "postgres://u:p@db:5432/roaming?application_name=x");
        assert_eq!(tls.mode, SslMode::VerifyFull);
        assert_eq!(tls.root_cert, Some(RootCert::File("/etc/ca.pem".into())));

        let (rest, tls) = ok("postgresql://db/roaming?sslmode=verify-ca");
        assert_eq!(rest, "postgresql://db/roaming");
        assert_eq!((tls.mode, tls.root_cert), (SslMode::VerifyCa, None));

        let (rest, tls) = ok("postgres://postgres@127.0.0.1:5432/roaming");
        assert_eq!(rest, "postgres://postgres@127.0.0.1:5432/roaming");
        assert_eq!(tls.mode, SslMode::Prefer, "libpq's default");

        // A `?` in the password is not the query.
        let (rest, tls) = ok("postgres://u:a?b@db/roaming?sslmode=require&sslrootcert=system");
        assert_eq!(rest, "postgres://u:a?b@db/roaming");
        assert_eq!(
            (tls.mode, tls.root_cert),
            (SslMode::Require, Some(RootCert::System))
        );
    }

    #[test]
    fn key_value_strings_lose_sslmode_and_sslrootcert_and_keep_the_rest() {
        let (rest, tls) = ok(
            "host=db  user=u password='it is' sslmode = verify-full sslrootcert='/a b/ca.pem' dbname=r\\ x",
        );
        assert_eq!(rest, "host='db' user='u' password='it is' dbname='r x'");
        assert_eq!(tls.mode, SslMode::VerifyFull);
        assert_eq!(tls.root_cert, Some(RootCert::File("/a b/ca.pem".into())));

        let (rest, _) = ok(r"host=db password='a\'b\\c'");
        assert_eq!(rest, r"host='db' password='a\'b\\c'");
        let parsed: tokio_postgres::Config = rest.parse().unwrap();
        assert_eq!(parsed.get_password(), Some(&b"a'b\\c"[..]));
    }

    #[test]
    fn errors_name_the_parameter_and_never_the_url() {
        let e = err("postgres://u:secret@db/roaming?sslmode=verify-all");
        assert!(e.contains("sslmode \"verify-all\" is unknown"), "{e}");
        assert!(!e.contains("secret"), "{e}");
        let e = err("host=db password=secret sslmode=strict");
        assert!(e.contains("sslmode \"strict\""), "{e}");
        assert!(!e.contains("secret"), "{e}");
        let e = err("postgres://db/roaming?sslcert=%2Fc.pem");
        assert!(e.contains("sslcert is not supported"), "{e}");
        let e = err("postgres://db/roaming?sslrootcert=");
        assert!(e.contains("sslrootcert is empty"), "{e}");
        let e = err("host=db password='secret");
        assert_eq!(e, "the database URL is malformed");
    }

    #[test]
    fn an_unreadable_or_empty_root_certificate_file_is_refused_by_name() {
        let missing = TlsSettings {
            mode: SslMode::VerifyFull,
            root_cert: Some(RootCert::File("/nonexistent/roaming-ca.pem".into())),
        };
        let e = connector(&missing).err().expect("refused").to_string();
        assert!(
            e.starts_with("sslrootcert /nonexistent/roaming-ca.pem: cannot read it"),
            "{e}"
        );

        let dir = std::env::temp_dir().join(format!("roaming-tls-unit-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let settings = TlsSettings {
            mode: SslMode::Require,
            root_cert: Some(RootCert::File(empty.clone())),
        };
        let e = connector(&settings).err().expect("refused").to_string();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(e.ends_with("holds no PEM certificate"), "{e}");
        assert!(e.contains(&empty.display().to_string()), "{e}");
    }

    #[test]
    fn every_mode_builds_a_connector_without_a_root_file() {
        for mode in SslMode::ALL {
            let settings = TlsSettings {
                mode,
                root_cert: None,
            };
            assert!(connector(&settings).is_ok(), "{mode:?}");
        }
        assert_eq!(
            SslMode::VerifyCa.driver(),
            tokio_postgres::config::SslMode::Require
        );
    }
}
