//! Real signing keys for JWT tests and the auth benchmark: P-256 and Ed25519 from `ring`, RSA
//! from the `rsa` crate, each with its public JWK. (The benchmark includes this file by path.)

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `header.payload.signature`, signed with `key` under `algorithm` whatever the header says.
pub fn sign_with(
    key: &EncodingKey,
    algorithm: Algorithm,
    header: &Value,
    claims: &Value,
) -> String {
    let signing_input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
    let signature = jsonwebtoken::crypto::sign(signing_input.as_bytes(), key, algorithm)
        .expect("sign the test token");
    format!("{signing_input}.{signature}")
}

pub struct TestKey {
    pub kid: String,
    pub algorithm: Algorithm,
    /// The public key as its issuer would publish it.
    pub jwk: Value,
    encoding: EncodingKey,
}

impl TestKey {
    pub fn es256(kid: &str) -> Self {
        let rng = SystemRandom::new();
        let alg = &ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("generate a P-256 key");
        let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).expect("P-256 key");
        // Uncompressed point: 0x04, then x and y, 32 bytes each.
        let point = pair.public_key().as_ref();
        Self {
            kid: kid.into(),
            algorithm: Algorithm::ES256,
            jwk: json!({
                "kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..]),
                "kid": kid, "use": "sig", "alg": "ES256",
            }),
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
        }
    }

    pub fn ed25519(kid: &str) -> Self {
        let pkcs8 =
            Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("generate an Ed25519 key");
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("Ed25519 key");
        Self {
            kid: kid.into(),
            algorithm: Algorithm::EdDSA,
            jwk: json!({
                "kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key()), "kid": kid,
                "use": "sig", "alg": "EdDSA",
            }),
            encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
        }
    }

    /// A 2048-bit RSA key (slow to make: generate once and share).
    pub fn rs256(kid: &str) -> Self {
        let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).expect("generate RSA key");
        let der = key.to_pkcs1_der().expect("encode RSA key");
        Self {
            kid: kid.into(),
            algorithm: Algorithm::RS256,
            jwk: json!({
                "kty": "RSA", "n": b64(key.n().to_bytes_be()), "e": b64(key.e().to_bytes_be()),
                "kid": kid, "use": "sig", "alg": "RS256",
            }),
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
        }
    }

    /// The header an honest issuer would send with this key.
    pub fn header(&self) -> Value {
        json!({"alg": self.algorithm, "kid": self.kid, "typ": "JWT"})
    }

    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        sign_with(&self.encoding, self.algorithm, header, claims)
    }
}

/// A JWKS document publishing `keys`.
pub fn jwks(keys: &[&TestKey]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() })
}
