//! Tokens a public-key server must refuse: alg none, key confusion, wrong keys, stale, malformed.

use super::support::{b64, claims, sign_with, unsigned};
use jsonwebtoken::{Algorithm, EncodingKey};
use roaming_runtime::TokenSigner;
use roaming_runtime::auth::{Claims, now_secs};

/// A fully valid token of `signer` with its payload replaced, keeping header and signature.
fn with_payload(token: &str, payload: &serde_json::Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    format!("{}.{}.{}", parts[0], b64(&payload.to_string()), parts[2])
}

/// Every token that a server verifying with `public_pem` (private half `private_pem`,
/// algorithm `alg`) must refuse, by name.
pub fn forged_tokens(
    alg: Algorithm,
    private_pem: &str,
    public_pem: &str,
    other_private_pem: &str,
    foreign_private_pem: &str,
) -> Vec<(String, String)> {
    let now = now_secs();
    let good = TokenSigner::from_private_pem(private_pem).unwrap();
    let valid = good.sign(&claims("alice", true));
    let payload = serde_json::json!({"sub": "alice", "exp": now + 600, "role": "service"});
    let mut out: Vec<(String, String)> = Vec::new();
    for none in ["none", "None", "NONE", "nOnE"] {
        out.push((
            format!("alg {none}, empty signature"),
            unsigned(&format!(r#"{{"alg":"{none}","typ":"JWT"}}"#), &payload, ""),
        ));
        out.push((
            format!("alg {none}, copied signature"),
            unsigned(
                &format!(r#"{{"alg":"{none}","typ":"JWT"}}"#),
                &payload,
                valid.split('.').nth(2).unwrap(),
            ),
        ));
    }
    let alg_name = match alg {
        Algorithm::EdDSA => "EdDSA",
        _ => "RS256",
    };
    out.push((
        format!("alg {alg_name}, no signature"),
        unsigned(
            &format!(r#"{{"alg":"{alg_name}","typ":"JWT"}}"#),
            &payload,
            "",
        ),
    ));
    // HS/RS (HS/Ed) key confusion: an HMAC keyed with the public key's PEM text, which is
    // public. A server that let the token pick the algorithm would accept it.
    for hs in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        for (what, secret) in [
            ("PEM text", public_pem.as_bytes().to_vec()),
            ("PEM text, trimmed", public_pem.trim().as_bytes().to_vec()),
        ] {
            out.push((
                format!("{hs:?} keyed with the public key's {what}"),
                sign_with(
                    hs,
                    &EncodingKey::from_secret(&secret),
                    &claims("alice", true),
                ),
            ));
        }
    }
    // Another key of the same kind, and a key of the other kind.
    out.push((
        format!("{alg_name} signed with another key"),
        TokenSigner::from_private_pem(other_private_pem)
            .unwrap()
            .sign(&claims("alice", true)),
    ));
    out.push((
        "signed with a key of the other kind".into(),
        TokenSigner::from_private_pem(foreign_private_pem)
            .unwrap()
            .sign(&claims("alice", true)),
    ));
    if alg == Algorithm::RS256 {
        // The right RSA key, but an algorithm the server does not expect.
        let rsa = EncodingKey::from_rsa_pem(private_pem.as_bytes()).unwrap();
        for other in [
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ] {
            out.push((
                format!("{other:?} with the server's RSA key"),
                sign_with(other, &rsa, &claims("alice", true)),
            ));
        }
    }
    // A valid token altered: claims swapped under the same signature, signature bit-flipped.
    out.push((
        "payload replaced (sub bob) under a valid signature".into(),
        with_payload(
            &valid,
            &serde_json::json!({"sub": "bob", "exp": now + 600, "role": "service"}),
        ),
    ));
    out.push((
        "payload replaced (role service) under a user token's signature".into(),
        with_payload(
            &good.sign(&claims("alice", false)),
            &serde_json::json!({"sub": "alice", "exp": now + 600, "role": "service"}),
        ),
    ));
    let mut flipped = valid.clone().into_bytes();
    let at = flipped.len() - 5;
    flipped[at] = if flipped[at] == b'A' { b'B' } else { b'A' };
    out.push((
        "signature altered".into(),
        String::from_utf8(flipped).unwrap(),
    ));
    out.push((
        "signature truncated".into(),
        valid[..valid.len() - 8].into(),
    ));
    // Time claims (the server allows 5 s of leeway).
    for (what, exp, nbf) in [
        ("expired an hour ago", now - 3600, None),
        ("expired a minute ago", now - 60, None),
        ("not valid for another hour", now + 7200, Some(now + 3600)),
        ("not valid for another minute", now + 7200, Some(now + 60)),
    ] {
        out.push((
            what.into(),
            good.sign(&Claims {
                sub: "alice".into(),
                exp,
                iat: Some(now),
                nbf,
                role: Some("service".into()),
                ..Default::default()
            }),
        ));
    }
    // Malformed or missing claims, correctly signed.
    let enc = match alg {
        Algorithm::EdDSA => EncodingKey::from_ed_pem(private_pem.as_bytes()).unwrap(),
        _ => EncodingKey::from_rsa_pem(private_pem.as_bytes()).unwrap(),
    };
    for (what, body) in [
        ("no exp", serde_json::json!({"sub": "alice"})),
        ("no sub", serde_json::json!({"exp": now + 600})),
        (
            "exp as a string",
            serde_json::json!({"sub": "alice", "exp": (now + 600).to_string()}),
        ),
        (
            "role as a list",
            serde_json::json!({"sub": "alice", "exp": now + 600, "role": ["service"]}),
        ),
        (
            "sub as a number",
            serde_json::json!({"sub": 42, "exp": now + 600}),
        ),
        (
            "user sub breaking the id rule",
            serde_json::json!({"sub": "alice bob", "exp": now + 600}),
        ),
        (
            "user sub with a colon",
            serde_json::json!({"sub": "p:alice", "exp": now + 600}),
        ),
    ] {
        out.push((what.into(), sign_with(alg, &enc, &body)));
    }
    out.push(("garbage".into(), "not.a.jwt".into()));
    out.push(("empty".into(), String::new()));
    out.push(("two parts".into(), valid.rsplit_once('.').unwrap().0.into()));
    out
}
