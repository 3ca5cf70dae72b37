//! Strict verification of JWS compact tokens (JWTs) from one issuer, against its JWKS.
//!
//! Only the signature primitive comes from `jsonwebtoken`; parsing and every check are here so
//! that each refusal carries one precise [`TokenError::code`]. The order is fixed: structure,
//! algorithm allow-list, key lookup, signature, and only then claims, so nothing unsigned ever
//! reaches the claim checks. `jku`, `x5u`, `x5c` and `jwk` headers are ignored: keys come only
//! from the issuer's own key set. See docs/auth-tokens.md.

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use jsonwebtoken::Algorithm;
use serde::de::{Deserialize, Deserializer, Error as _, MapAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Value};

use super::jwks::JwksCache;

/// Longest token looked at; anything longer is refused before decoding.
pub const MAX_TOKEN_BYTES: usize = 8192;

/// What one issuer's tokens must satisfy.
#[derive(Debug, Clone)]
pub struct IssuerPolicy {
    /// Compared byte for byte with `iss` (a trailing slash makes a different issuer).
    pub issuer: String,
    /// `aud` must be (or, as an array, contain) one of these; empty refuses every token.
    pub audiences: Vec<String>,
    /// When `aud` does not match, accept an `azp` equal to one of `audiences`.
    pub accept_azp: bool,
    /// Allowed `alg` values. Symmetric (HS*) algorithms are never accepted, whatever is listed:
    /// a JWKS holds public keys, and HMAC with a public key is the classic forgery.
    pub algorithms: Vec<Algorithm>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    pub leeway: Duration,
}

impl IssuerPolicy {
    fn allows(&self, algorithm: Algorithm) -> bool {
        !matches!(
            algorithm,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        ) && self.algorithms.contains(&algorithm)
    }

    fn audience_matches(&self, claims: &Map<String, Value>) -> bool {
        let listed = |aud: &str| self.audiences.iter().any(|a| a == aud);
        // RFC 7519 §4.1.3: a string or an array of strings; an array with anything but strings
        // is refused outright rather than searched.
        let by_aud = match claims.get("aud") {
            Some(Value::String(aud)) => listed(aud),
            Some(Value::Array(items)) => {
                items.iter().all(Value::is_string)
                    && items.iter().filter_map(Value::as_str).any(listed)
            }
            _ => false,
        };
        by_aud
            || (self.accept_azp
                && claims
                    .get("azp")
                    .and_then(Value::as_str)
                    .is_some_and(listed))
    }
}

/// Why a token is refused. Messages never contain the token or any part of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token: longer than {} bytes", MAX_TOKEN_BYTES)]
    TooLong,
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("the token's issuer is not accepted here")]
    UnknownIssuer,
    #[error("the token's algorithm ({}) is not allowed for its issuer", alg_name(.0))]
    AlgorithmNotAllowed(Option<Algorithm>),
    #[error("the token has a critical header extension (crit), which is not supported")]
    UnsupportedHeader,
    #[error("the token names no key (kid) and its issuer publishes several")]
    MissingKeyId,
    #[error("the token's key (kid) is not in its issuer's key set")]
    UnknownKey,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token expired at {0}")]
    Expired(DateTime<Utc>),
    #[error("the token is not valid yet ({0} is in the future)")]
    NotYetValid(&'static str),
    #[error("the token has no expiry time (exp)")]
    MissingExp,
    #[error("the token is not meant for this service (aud)")]
    BadAudience,
    #[error("the token's subject (sub) is missing, empty or not a string")]
    BadSubject,
    #[error("the signing keys of the token's issuer could not be fetched")]
    KeysUnavailable,
}

fn alg_name(alg: &Option<Algorithm>) -> String {
    alg.map_or_else(|| "none or unrecognised".to_owned(), |a| format!("{a:?}"))
}

impl TokenError {
    /// The stable reason code sent to clients.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLong | Self::Malformed(_) => "malformed_token",
            Self::UnknownIssuer => "unknown_issuer",
            Self::AlgorithmNotAllowed(_) => "algorithm_not_allowed",
            Self::UnsupportedHeader => "unsupported_header",
            Self::MissingKeyId => "missing_key_id",
            Self::UnknownKey => "unknown_key",
            Self::BadSignature => "bad_signature",
            Self::Expired(_) => "token_expired",
            Self::NotYetValid(_) => "token_not_yet_valid",
            Self::MissingExp => "missing_exp",
            Self::BadAudience => "bad_audience",
            Self::BadSubject => "bad_subject",
            Self::KeysUnavailable => "keys_unavailable",
        }
    }
}

/// A token whose signature and claims have been checked.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    pub subject: String,
    pub claims: Map<String, Value>,
    pub expires_at: DateTime<Utc>,
    pub key_id: Option<String>,
    pub algorithm: Algorithm,
}

/// A JSON object whose top-level names are unique. RFC 7515 §5.2 allows refusing duplicates,
/// and refusing them means fleetmon can never read a different `alg` or `sub` than another
/// parser of the same token would.
struct UniqueObject(Map<String, Value>);

impl<'de> Deserialize<'de> for UniqueObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = UniqueObject;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<UniqueObject, A::Error> {
                let mut object = Map::new();
                while let Some((name, value)) = access.next_entry::<String, Value>()? {
                    match object.entry(name) {
                        Entry::Vacant(slot) => slot.insert(value),
                        Entry::Occupied(_) => return Err(A::Error::custom("duplicate name")),
                    };
                }
                Ok(UniqueObject(object))
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// A token split into its parts, each decoded and shaped as JWS requires; nothing verified yet.
struct Compact<'a> {
    alg: String,
    kid: Option<String>,
    /// Whether the header has `crit` (RFC 7515 §4.1.11: extensions the recipient must
    /// understand; fleetmon understands none).
    critical: bool,
    claims: Map<String, Value>,
    /// `header.payload` as sent: what the signature covers.
    signing_input: &'a str,
    signature: &'a str,
    signature_is_empty: bool,
}

fn decode_segment(segment: &str) -> Result<Vec<u8>, TokenError> {
    // The engine refuses padding and non-canonical trailing bits: one token, one encoding.
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| TokenError::Malformed("a segment is not base64url"))
}

fn decode_object(segment: &str, what: &'static str) -> Result<Map<String, Value>, TokenError> {
    serde_json::from_slice::<UniqueObject>(&decode_segment(segment)?)
        .map(|object| object.0)
        .map_err(|_| TokenError::Malformed(what))
}

impl<'a> Compact<'a> {
    fn parse(token: &'a str) -> Result<Self, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLong);
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed("not three dot-separated segments"));
        };
        let mut fields =
            decode_object(header, "the header is not a JSON object with unique names")?;
        let Some(Value::String(alg)) = fields.remove("alg") else {
            return Err(TokenError::Malformed("the header has no alg string"));
        };
        let kid = match fields.remove("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid),
            Some(_) => return Err(TokenError::Malformed("kid is not a string")),
        };
        Ok(Self {
            alg,
            kid,
            critical: fields.contains_key("crit"),
            claims: decode_object(
                payload,
                "the payload is not a JSON object with unique names",
            )?,
            signing_input: &token[..header.len() + 1 + payload.len()],
            signature,
            signature_is_empty: decode_segment(signature)?.is_empty(),
        })
    }

    fn algorithm(&self, policy: &IssuerPolicy) -> Result<Algorithm, TokenError> {
        match Algorithm::from_str(&self.alg) {
            Ok(algorithm) if policy.allows(algorithm) => Ok(algorithm),
            known => Err(TokenError::AlgorithmNotAllowed(known.ok())),
        }
    }
}

/// Reads `iss` without verifying anything else, to pick the issuer whose [`Verifier`] then
/// checks the token. The token's shape is checked as strictly as [`Verifier::verify`] does.
pub fn unverified_issuer(token: &str) -> Result<String, TokenError> {
    match Compact::parse(token)?.claims.remove("iss") {
        Some(Value::String(issuer)) => Ok(issuer),
        _ => Err(TokenError::UnknownIssuer),
    }
}

/// Verifies one issuer's tokens.
pub struct Verifier {
    policy: IssuerPolicy,
    keys: JwksCache,
}

impl Verifier {
    pub fn new(policy: IssuerPolicy, keys: JwksCache) -> Self {
        Self { policy, keys }
    }

    pub fn policy(&self) -> &IssuerPolicy {
        &self.policy
    }

    /// The issuer's key cache (for its fetch counter, say).
    pub fn keys(&self) -> &JwksCache {
        &self.keys
    }

    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        let token = Compact::parse(token)?;
        if token.critical {
            return Err(TokenError::UnsupportedHeader);
        }
        let algorithm = token.algorithm(&self.policy)?;
        let key = self.keys.key(token.kid.as_deref()).await?;
        if token.signature_is_empty
            || !key.verifies(algorithm, token.signing_input.as_bytes(), token.signature)
        {
            return Err(TokenError::BadSignature);
        }
        check_claims(&self.policy, token.claims, unix_now(), algorithm, token.kid)
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// A NumericDate claim (RFC 7519 §2: seconds since the epoch, fractions allowed), if present.
fn numeric_date(
    claims: &Map<String, Value>,
    name: &'static str,
    not_a_number: &'static str,
) -> Result<Option<(f64, DateTime<Utc>)>, TokenError> {
    let Some(value) = claims.get(name) else {
        return Ok(None);
    };
    let seconds = value.as_f64().ok_or(TokenError::Malformed(not_a_number))?;
    // Saturating float-to-int conversion; out-of-range values fail in from_timestamp.
    let whole = seconds.floor();
    let nanos = ((seconds - whole) * 1e9) as u32;
    let at = DateTime::from_timestamp(whole as i64, nanos)
        .ok_or(TokenError::Malformed("a time claim is out of range"))?;
    Ok(Some((seconds, at)))
}

/// The claim checks, after the signature has been verified; `now` in seconds since the epoch.
fn check_claims(
    policy: &IssuerPolicy,
    claims: Map<String, Value>,
    now: f64,
    algorithm: Algorithm,
    key_id: Option<String>,
) -> Result<VerifiedToken, TokenError> {
    if claims.get("iss").and_then(Value::as_str) != Some(policy.issuer.as_str()) {
        return Err(TokenError::UnknownIssuer);
    }
    let leeway = policy.leeway.as_secs_f64();
    let (exp, expires_at) =
        numeric_date(&claims, "exp", "exp is not a number")?.ok_or(TokenError::MissingExp)?;
    if now >= exp + leeway {
        return Err(TokenError::Expired(expires_at));
    }
    for (name, not_a_number) in [
        ("nbf", "nbf is not a number"),
        ("iat", "iat is not a number"),
    ] {
        if let Some((at, _)) = numeric_date(&claims, name, not_a_number)? {
            if at > now + leeway {
                return Err(TokenError::NotYetValid(name));
            }
        }
    }
    if !policy.audience_matches(&claims) {
        return Err(TokenError::BadAudience);
    }
    let subject = match claims.get("sub") {
        Some(Value::String(sub)) if !sub.is_empty() => sub.clone(),
        _ => return Err(TokenError::BadSubject),
    };
    Ok(VerifiedToken {
        subject,
        claims,
        expires_at,
        key_id,
        algorithm,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const NOW: f64 = 1_800_000_000.0;

    fn policy() -> IssuerPolicy {
        IssuerPolicy {
            issuer: "https://id.example".into(),
            audiences: vec!["fleetmon".into(), "other".into()],
            accept_azp: false,
            algorithms: vec![Algorithm::ES256, Algorithm::HS256],
            leeway: Duration::from_secs(60),
        }
    }

    fn claims(extra: Value) -> Map<String, Value> {
        let mut claims = json!({
            "iss": "https://id.example", "aud": "fleetmon", "sub": "user-1", "exp": NOW + 300.0,
        });
        let Value::Object(base) = &mut claims else {
            unreachable!()
        };
        let Value::Object(extra) = extra else {
            panic!("extra claims must be an object")
        };
        for (name, value) in extra {
            if value.is_null() {
                base.remove(&name);
            } else {
                base.insert(name, value);
            }
        }
        base.clone()
    }

    fn check(policy: &IssuerPolicy, extra: Value) -> Result<VerifiedToken, TokenError> {
        check_claims(policy, claims(extra), NOW, Algorithm::ES256, None)
    }

    fn code(policy: &IssuerPolicy, extra: Value) -> &'static str {
        match check(policy, extra) {
            Ok(_) => "ok",
            Err(e) => e.code(),
        }
    }

    #[test]
    fn accepted_claims_are_returned_with_their_expiry() {
        let token = check(&policy(), json!({"exp": NOW + 0.5, "org": "o1"})).unwrap();
        assert_eq!(token.subject, "user-1");
        assert_eq!(token.claims["org"], "o1");
        assert_eq!(token.expires_at.timestamp(), NOW as i64);
        assert_eq!(token.expires_at.timestamp_subsec_millis(), 500);
    }

    #[test]
    fn expiry_honours_the_leeway_on_both_sides() {
        let p = policy();
        assert_eq!(code(&p, json!({"exp": NOW - 59.0})), "ok");
        assert_eq!(code(&p, json!({"exp": NOW - 60.0})), "token_expired");
        assert_eq!(
            code(&p, json!({"nbf": NOW + 60.0, "iat": NOW + 60.0})),
            "ok"
        );
        assert_eq!(code(&p, json!({"nbf": NOW + 61.0})), "token_not_yet_valid");
        assert_eq!(code(&p, json!({"iat": NOW + 61.0})), "token_not_yet_valid");
    }

    #[test]
    fn time_claims_must_be_numbers_in_range() {
        let p = policy();
        assert_eq!(code(&p, json!({"exp": null})), "missing_exp");
        for bad in [
            json!({"exp": "1900000000"}),
            json!({"nbf": true}),
            json!({"iat": [1]}),
        ] {
            assert_eq!(code(&p, bad), "malformed_token");
        }
        assert_eq!(code(&p, json!({"exp": 1e300})), "malformed_token");
    }

    #[test]
    fn audiences_may_be_a_string_or_an_array_of_strings() {
        let p = policy();
        assert_eq!(code(&p, json!({"aud": "other"})), "ok");
        assert_eq!(code(&p, json!({"aud": ["x", "fleetmon"]})), "ok");
        for bad in [
            json!({"aud": null}),
            json!({"aud": "fleetmon2"}),
            json!({"aud": ["x", "y"]}),
            json!({"aud": []}),
            json!({"aud": ["fleetmon", 7]}),
            json!({"aud": {"fleetmon": true}}),
        ] {
            assert_eq!(code(&p, bad), "bad_audience");
        }
    }

    #[test]
    fn azp_stands_in_for_aud_only_when_enabled() {
        let mut p = policy();
        let clerk_like = json!({"aud": null, "azp": "fleetmon"});
        assert_eq!(code(&p, clerk_like.clone()), "bad_audience");
        p.accept_azp = true;
        assert_eq!(code(&p, clerk_like), "ok");
        assert_eq!(code(&p, json!({"aud": null, "azp": "x"})), "bad_audience");
    }

    #[test]
    fn an_empty_audience_list_refuses_everything() {
        let mut p = policy();
        p.audiences.clear();
        assert_eq!(code(&p, json!({})), "bad_audience");
    }

    #[test]
    fn issuer_and_subject_are_exact() {
        let p = policy();
        assert_eq!(
            code(&p, json!({"iss": "https://id.example/"})),
            "unknown_issuer"
        );
        assert_eq!(code(&p, json!({"iss": null})), "unknown_issuer");
        for bad in [json!({"sub": null}), json!({"sub": ""}), json!({"sub": 42})] {
            assert_eq!(code(&p, bad), "bad_subject");
        }
    }

    #[test]
    fn symmetric_algorithms_are_never_allowed() {
        let p = policy();
        assert!(p.allows(Algorithm::ES256));
        assert!(!p.allows(Algorithm::HS256), "listed, yet refused");
        assert!(!p.allows(Algorithm::EdDSA));
    }

    fn segment(value: &Value) -> String {
        URL_SAFE_NO_PAD.encode(value.to_string())
    }

    #[test]
    fn the_issuer_is_read_only_from_well_formed_tokens() {
        let header = segment(&json!({"alg": "ES256"}));
        let token = format!("{header}.{}.c2ln", segment(&json!({"iss": "https://id"})));
        assert_eq!(unverified_issuer(&token).unwrap(), "https://id");
        let no_iss = format!("{header}.{}.c2ln", segment(&json!({"iss": 1})));
        assert_eq!(unverified_issuer(&no_iss), Err(TokenError::UnknownIssuer));
        for bad in [
            format!("{header}.{}", segment(&json!({"iss": "https://id"}))),
            format!("{header}.{}.c2ln.", segment(&json!({"iss": "https://id"}))),
            format!("{header}.{}.c2ln", URL_SAFE_NO_PAD.encode("[1]")),
            format!("{header}.{}.c2ln", URL_SAFE_NO_PAD.encode("{\"iss\":")),
            format!("{header}.e30=.c2ln"),
            format!("{header}.e30.c2l"),
            format!(
                "{header}.{}.c2ln",
                URL_SAFE_NO_PAD.encode(r#"{"iss":"a","iss":"b"}"#)
            ),
            "x".repeat(MAX_TOKEN_BYTES + 1),
        ] {
            assert_eq!(
                unverified_issuer(&bad).map_err(|e| e.code()),
                Err("malformed_token"),
                "{bad:.60}"
            );
        }
    }

    #[test]
    fn messages_name_the_algorithm_but_never_the_token() {
        let refused = TokenError::AlgorithmNotAllowed(Some(Algorithm::HS256));
        assert_eq!(
            refused.to_string(),
            "the token's algorithm (HS256) is not allowed for its issuer"
        );
        assert!(TokenError::AlgorithmNotAllowed(None)
            .to_string()
            .contains("none or unrecognised"));
    }
}
