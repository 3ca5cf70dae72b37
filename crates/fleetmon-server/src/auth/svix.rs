//! Verification of Svix-signed webhook deliveries (Stack Auth sends its webhooks through Svix).
//!
//! A delivery carries `svix-id`, `svix-timestamp` and `svix-signature` (or the Standard Webhooks
//! names `webhook-id`, `webhook-timestamp`, `webhook-signature`). The signature is
//! `base64(HMAC-SHA256(secret, "{id}.{timestamp}.{body}"))`, sent as space-separated
//! `v1,<base64>` entries: while the sender rotates its secret it signs with both, so any one
//! matching entry is enough. Several secrets can be configured here too, for rotation on our side.
//! The timestamp must be within [`TOLERANCE`] of our clock either way, which bounds how long a
//! captured delivery could be replayed; replays inside that window are refused by delivery id
//! (see `stack_sync`).

use std::fmt;

use axum::http::HeaderMap;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// How far a delivery's timestamp may be from our clock, in the past or the future.
pub const TOLERANCE: TimeDelta = TimeDelta::minutes(5);

/// The prefix Svix shows its signing secrets with.
const SECRET_PREFIX: &str = "whsec_";
/// Svix secrets are 24 bytes; anything much shorter is not a signing secret.
const MIN_SECRET_BYTES: usize = 16;
const MAX_ID_LEN: usize = 256;
/// Seconds since the epoch: 12 digits last until the year 33658.
const MAX_TIMESTAMP_DIGITS: usize = 12;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SvixError {
    #[error("secret {position} of FLEETMON_STACK_WEBHOOK_SECRET is not usable: {reason}")]
    InvalidSecret { position: usize, reason: String },
    #[error("no webhook signing secret is configured")]
    NoSecrets,
    #[error(
        "the request lacks the {0} header (send svix-id, svix-timestamp and svix-signature, or \
         their webhook-* equivalents)"
    )]
    MissingHeaders(&'static str),
    #[error("the delivery id must be 1 to {MAX_ID_LEN} visible ASCII characters")]
    MalformedDeliveryId,
    #[error("the delivery timestamp must be whole seconds since the Unix epoch")]
    MalformedTimestamp,
    #[error("the delivery timestamp is more than {} minutes old", TOLERANCE.num_minutes())]
    StaleTimestamp,
    #[error("the delivery timestamp is more than {} minutes in the future", TOLERANCE.num_minutes())]
    FutureTimestamp,
    #[error("the signature header must be space-separated `v1,<base64>` entries")]
    MalformedSignature,
    #[error("no signature of the delivery matches a configured secret")]
    BadSignature,
}

impl SvixError {
    /// The stable code sent in the error body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidSecret { .. } => "invalid_secret",
            Self::NoSecrets => "no_secrets",
            Self::MissingHeaders(_) => "missing_signature_headers",
            Self::MalformedDeliveryId => "malformed_delivery_id",
            Self::MalformedTimestamp => "malformed_timestamp",
            Self::StaleTimestamp => "stale_timestamp",
            Self::FutureTimestamp => "future_timestamp",
            Self::MalformedSignature => "malformed_signature",
            Self::BadSignature => "bad_signature",
        }
    }
}

/// One signing secret: the bytes a `whsec_<base64>` secret decodes to.
#[derive(Clone)]
pub struct WebhookSecret(Vec<u8>);

impl WebhookSecret {
    /// Parses `whsec_<base64>` (the prefix is optional, as in Svix's own libraries).
    pub fn parse(text: &str) -> Result<Self, String> {
        let encoded = text.strip_prefix(SECRET_PREFIX).unwrap_or(text);
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|_| format!("expected {SECRET_PREFIX}<base64>"))?;
        if bytes.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "it decodes to {} bytes; a signing secret has at least {MIN_SECRET_BYTES}",
                bytes.len()
            ));
        }
        Ok(Self(bytes))
    }

    /// The MAC over `{id}.{timestamp}.{body}`, with the timestamp exactly as sent.
    fn mac(&self, id: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC accepts keys of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The `v1,<base64>` signature entry a sender puts in `svix-signature`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let tag = self
            .mac(id, &timestamp.to_string(), body)
            .finalize()
            .into_bytes();
        format!("v1,{}", STANDARD.encode(tag))
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

/// The secrets deliveries may be signed with: more than one while a secret is being rotated.
#[derive(Clone)]
pub struct WebhookSecrets(Vec<WebhookSecret>);

impl WebhookSecrets {
    /// Parses a whitespace-separated list of `whsec_<base64>` secrets. Errors name the secret by
    /// position, never by value.
    pub fn parse(list: &str) -> Result<Self, SvixError> {
        let secrets = list
            .split_whitespace()
            .enumerate()
            .map(|(index, text)| {
                WebhookSecret::parse(text).map_err(|reason| SvixError::InvalidSecret {
                    position: index + 1,
                    reason,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(secrets)
    }

    pub fn new(secrets: Vec<WebhookSecret>) -> Result<Self, SvixError> {
        if secrets.is_empty() {
            return Err(SvixError::NoSecrets);
        }
        Ok(Self(secrets))
    }
}

impl fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebhookSecrets(<{} redacted>)", self.0.len())
    }
}

/// A verified delivery: its id (the same on every retry of one message) and signed timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: String,
    pub timestamp: DateTime<Utc>,
}

/// Verifies a delivery's headers and raw body against `secrets` at time `now`.
pub fn verify(
    secrets: &WebhookSecrets,
    headers: &HeaderMap,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Delivery, SvixError> {
    let id = header(
        headers,
        "svix-id",
        "webhook-id",
        SvixError::MalformedDeliveryId,
    )?;
    let timestamp = header(
        headers,
        "svix-timestamp",
        "webhook-timestamp",
        SvixError::MalformedTimestamp,
    )?;
    let signature = header(
        headers,
        "svix-signature",
        "webhook-signature",
        SvixError::MalformedSignature,
    )?;

    let id_ok = (1..=MAX_ID_LEN).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic());
    if !id_ok {
        return Err(SvixError::MalformedDeliveryId);
    }
    let seconds = parse_timestamp(timestamp)?;
    let signed_at = DateTime::from_timestamp(seconds, 0).ok_or(SvixError::MalformedTimestamp)?;
    if signed_at < now - TOLERANCE {
        return Err(SvixError::StaleTimestamp);
    }
    if signed_at > now + TOLERANCE {
        return Err(SvixError::FutureTimestamp);
    }

    let candidates = v1_signatures(signature)?;
    // Each secret's MAC is computed once and compared with every entry in constant time.
    let matched = secrets.0.iter().any(|secret| {
        let mac = secret.mac(id, timestamp, body);
        candidates
            .iter()
            .any(|candidate| mac.clone().verify_slice(candidate).is_ok())
    });
    if !matched {
        return Err(SvixError::BadSignature);
    }
    Ok(Delivery {
        id: id.to_string(),
        timestamp: signed_at,
    })
}

/// The value of the `svix-*` header, else of its Standard Webhooks twin.
fn header<'h>(
    headers: &'h HeaderMap,
    name: &'static str,
    fallback: &'static str,
    malformed: SvixError,
) -> Result<&'h str, SvixError> {
    headers
        .get(name)
        .or_else(|| headers.get(fallback))
        .ok_or(SvixError::MissingHeaders(name))?
        .to_str()
        .map_err(|_| malformed)
}

fn parse_timestamp(text: &str) -> Result<i64, SvixError> {
    let digits_only = !text.is_empty()
        && text.len() <= MAX_TIMESTAMP_DIGITS
        && text.bytes().all(|b| b.is_ascii_digit());
    if !digits_only {
        return Err(SvixError::MalformedTimestamp);
    }
    text.parse().map_err(|_| SvixError::MalformedTimestamp)
}

/// The decoded `v1` entries of a signature header. Entries of other versions are skipped (a
/// sender may add new schemes alongside v1); an entry that is not `<version>,<signature>`, or a
/// v1 entry that is not base64, makes the whole header malformed.
fn v1_signatures(header: &str) -> Result<Vec<Vec<u8>>, SvixError> {
    let mut v1 = Vec::new();
    let mut entries = 0;
    for entry in header.split_ascii_whitespace() {
        entries += 1;
        let (version, encoded) = entry
            .split_once(',')
            .filter(|(version, encoded)| !version.is_empty() && !encoded.is_empty())
            .ok_or(SvixError::MalformedSignature)?;
        if version == "v1" {
            let decoded = STANDARD
                .decode(encoded)
                .map_err(|_| SvixError::MalformedSignature)?;
            v1.push(decoded);
        }
    }
    if entries == 0 {
        return Err(SvixError::MalformedSignature);
    }
    Ok(v1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    // The example of Svix's documentation ("Verifying Webhooks Manually" and the test suite of
    // its JavaScript library). The expected signature was recomputed independently:
    //   key=$(printf %s MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw | base64 -d | xxd -p -c 256)
    //   printf %s 'msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330.{"test": 2432232314}' \
    //     | openssl dgst -sha256 -mac HMAC -macopt hexkey:$key -binary | base64
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: i64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    /// Another valid secret (24 random bytes), not the one the vector was signed with.
    const OTHER_SECRET: &str = "whsec_5Ayd0cQlm4bPb0I6pnj6ag6V3WbtGMRX";

    fn secrets(list: &str) -> WebhookSecrets {
        WebhookSecrets::parse(list).unwrap()
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    fn headers(prefix: &str, id: &str, timestamp: &str, signature: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("id", id),
            ("timestamp", timestamp),
            ("signature", signature),
        ] {
            let name = axum::http::HeaderName::try_from(format!("{prefix}-{name}")).unwrap();
            headers.insert(name, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn svix(signature: &str) -> HeaderMap {
        headers("svix", ID, &TIMESTAMP.to_string(), signature)
    }

    fn check(secrets_list: &str, headers: &HeaderMap, body: &[u8]) -> Result<Delivery, SvixError> {
        verify(&secrets(secrets_list), headers, body, at(TIMESTAMP))
    }

    #[test]
    fn the_documented_example_verifies_and_signs_to_the_known_signature() {
        let delivery = check(SECRET, &svix(SIGNATURE), BODY).unwrap();
        assert_eq!(delivery.id, ID);
        assert_eq!(delivery.timestamp, at(TIMESTAMP));
        let secret = WebhookSecret::parse(SECRET).unwrap();
        assert_eq!(secret.sign(ID, TIMESTAMP, BODY), SIGNATURE);
    }

    #[test]
    fn standard_webhooks_header_names_are_accepted() {
        let headers = headers("webhook", ID, &TIMESTAMP.to_string(), SIGNATURE);
        assert_eq!(check(SECRET, &headers, BODY).unwrap().id, ID);
    }

    #[test]
    fn a_changed_body_id_or_timestamp_breaks_the_signature() {
        let error = check(SECRET, &svix(SIGNATURE), br#"{"test": 2432232315}"#).unwrap_err();
        assert_eq!(error.code(), "bad_signature");
        let other_id = headers("svix", "msg_other", &TIMESTAMP.to_string(), SIGNATURE);
        assert_eq!(
            check(SECRET, &other_id, BODY).unwrap_err(),
            SvixError::BadSignature
        );
        let later = headers("svix", ID, &(TIMESTAMP + 1).to_string(), SIGNATURE);
        assert_eq!(
            check(SECRET, &later, BODY).unwrap_err(),
            SvixError::BadSignature
        );
    }

    #[test]
    fn a_signature_by_another_secret_is_refused() {
        let error = check(OTHER_SECRET, &svix(SIGNATURE), BODY).unwrap_err();
        assert_eq!(error, SvixError::BadSignature);
    }

    #[test]
    fn any_matching_entry_and_any_configured_secret_is_enough() {
        let stale = WebhookSecret::parse(OTHER_SECRET)
            .unwrap()
            .sign(ID, TIMESTAMP, BODY);
        // The sender rotating: an entry by its old secret, which we no longer have, and one by
        // the current secret; unknown versions are ignored.
        let rotating = svix(&format!("{stale} v1a,c29tZXRoaW5n {SIGNATURE}"));
        assert!(check(SECRET, &rotating, BODY).is_ok());
        // Us rotating: either configured secret verifies.
        assert!(check(
            &format!("{OTHER_SECRET}\n {SECRET}"),
            &svix(SIGNATURE),
            BODY
        )
        .is_ok());
        assert!(check(&format!("{SECRET} {OTHER_SECRET}"), &svix(&stale), BODY).is_ok());
    }

    #[test]
    fn timestamps_outside_five_minutes_either_way_are_refused() {
        let s = secrets(SECRET);
        let h = svix(SIGNATURE);
        let five = TOLERANCE.num_seconds();
        assert!(verify(&s, &h, BODY, at(TIMESTAMP + five)).is_ok());
        assert!(verify(&s, &h, BODY, at(TIMESTAMP - five)).is_ok());
        let late = verify(&s, &h, BODY, at(TIMESTAMP + five + 1)).unwrap_err();
        assert_eq!(late.code(), "stale_timestamp");
        let early = verify(&s, &h, BODY, at(TIMESTAMP - five - 1)).unwrap_err();
        assert_eq!(early.code(), "future_timestamp");
    }

    #[test]
    fn missing_and_malformed_headers_have_their_own_codes() {
        let mut missing = svix(SIGNATURE);
        missing.remove("svix-signature");
        assert_eq!(
            check(SECRET, &missing, BODY).unwrap_err().code(),
            "missing_signature_headers"
        );
        assert_eq!(
            check(SECRET, &HeaderMap::new(), BODY).unwrap_err().code(),
            "missing_signature_headers"
        );
        for timestamp in [
            "",
            "-1614265330",
            "+1614265330",
            "1614265330.5",
            "16142653301234",
        ] {
            let h = headers("svix", ID, timestamp, SIGNATURE);
            assert_eq!(
                check(SECRET, &h, BODY).unwrap_err(),
                SvixError::MalformedTimestamp,
                "{timestamp:?}"
            );
        }
        for signature in ["", "g0hM9SsE", "v1,", "v1,not base64!", ",abc"] {
            assert_eq!(
                check(SECRET, &svix(signature), BODY).unwrap_err(),
                SvixError::MalformedSignature,
                "{signature:?}"
            );
        }
        // Only unknown versions: nothing to check against, so nothing matches.
        assert_eq!(
            check(SECRET, &svix("v2,abcd"), BODY).unwrap_err(),
            SvixError::BadSignature
        );
        let long_id = "m".repeat(MAX_ID_LEN + 1);
        let h = headers("svix", &long_id, &TIMESTAMP.to_string(), SIGNATURE);
        assert_eq!(
            check(SECRET, &h, BODY).unwrap_err(),
            SvixError::MalformedDeliveryId
        );
    }

    #[test]
    fn secrets_are_validated_and_never_shown() {
        assert_eq!(
            WebhookSecrets::parse(" \n").unwrap_err(),
            SvixError::NoSecrets
        );
        let error = WebhookSecrets::parse(&format!("{SECRET} whsec_!!!")).unwrap_err();
        assert!(
            matches!(error, SvixError::InvalidSecret { position: 2, .. }),
            "{error:?}"
        );
        let short = WebhookSecrets::parse("whsec_c2hvcnQ=").unwrap_err();
        assert!(short.to_string().contains("5 bytes"), "{short}");
        // The prefix is optional, as in Svix's libraries.
        let bare = secrets(&SECRET[SECRET_PREFIX.len()..]);
        assert!(verify(&bare, &svix(SIGNATURE), BODY, at(TIMESTAMP)).is_ok());
        let both = secrets(&format!("{SECRET} {OTHER_SECRET}"));
        let shown = format!("{both:?} {:?}", WebhookSecret::parse(SECRET).unwrap());
        assert_eq!(
            shown,
            "WebhookSecrets(<2 redacted>) WebhookSecret(<redacted>)"
        );
    }
}
