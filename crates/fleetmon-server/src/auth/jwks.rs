//! One issuer's signing keys (a JWKS, RFC 7517), cached by `kid`.
//!
//! The first use fetches; keys older than the TTL are fetched again; an unknown `kid` triggers
//! at most one extra fetch per `min_refresh_interval`, so a flood of made-up `kid`s reaches the
//! issuer at most once per interval. One fetch runs at a time and concurrent callers share its
//! result. A failed or hanging fetch (bounded by `fetch_timeout`) keeps the last good keys and is
//! retried after `min_refresh_interval`. A successful fetch replaces the set whole, so a key the
//! issuer stopped publishing stops verifying.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey};
use reqwest::{redirect, Url};
use serde::Deserialize;

use super::jwt::TokenError;

/// Largest JWKS document read; the body is cut off as soon as it grows past this.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where an issuer's keys come from: its JWKS URL, or (for the local provider) the database.
pub trait KeyFetcher: Send + Sync + 'static {
    fn fetch(&self) -> BoxFuture<'_, Result<JwkSet, FetchError>>;
}

/// Why keys could not be had. Messages name the source, never a response body.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("JWKS URL is not valid: {0}")]
    InvalidUrl(String),
    #[error("JWKS URL {0} uses plain http, which is allowed only for loopback hosts")]
    InsecureUrl(String),
    #[error("JWKS request to {url} failed: {reason}")]
    Request { url: String, reason: String },
    #[error("JWKS endpoint {url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("JWKS document from {url} is larger than {} bytes", MAX_JWKS_BYTES)]
    TooLarge { url: String },
    #[error("JWKS document from {url} is not a key set: {reason}")]
    BadDocument { url: String, reason: String },
    #[error("no keys within {0:?}")]
    Timeout(Duration),
    /// For fetchers other than HTTP, e.g. the database of the local provider.
    #[error("the key source failed: {0}")]
    Source(String),
}

/// Fetches a JWKS over HTTPS (or plain HTTP to loopback), with a timeout and a size cap.
pub struct HttpKeyFetcher {
    client: reqwest::Client,
    url: Url,
    /// The URL as named in errors and logs: without credentials, query or fragment.
    shown: String,
}

impl HttpKeyFetcher {
    pub fn new(url: &str, timeout: Duration) -> Result<Self, FetchError> {
        let url = Url::parse(url).map_err(|e| FetchError::InvalidUrl(e.to_string()))?;
        let shown = format!(
            "{}://{}{}",
            url.scheme(),
            url.host_str().unwrap_or_default(),
            url.port().map(|p| format!(":{p}")).unwrap_or_default()
        ) + url.path();
        match url.scheme() {
            "https" => {}
            "http" if super::is_loopback(&url) => {}
            "http" => return Err(FetchError::InsecureUrl(shown)),
            _ => {
                return Err(FetchError::InvalidUrl(format!(
                    "{shown} is not an http(s) URL"
                )))
            }
        }
        // Redirects are followed only where the first URL could have pointed itself.
        let redirects = redirect::Policy::custom(|attempt| {
            if attempt.previous().len() >= 3 {
                attempt.error("too many redirects")
            } else if super::secure_transport(attempt.url()) {
                attempt.follow()
            } else {
                attempt.error("redirect to a plain-http, non-loopback URL")
            }
        });
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(redirects)
            .user_agent(concat!("fleetmon/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FetchError::Request {
                url: shown.clone(),
                reason: error_chain(&e),
            })?;
        Ok(Self { client, url, shown })
    }

    async fn fetch_set(&self) -> Result<JwkSet, FetchError> {
        let failed = |e: reqwest::Error| FetchError::Request {
            url: self.shown.clone(),
            reason: error_chain(&e.without_url()),
        };
        let mut response = self
            .client
            .get(self.url.clone())
            .header(
                reqwest::header::ACCEPT,
                "application/jwk-set+json, application/json",
            )
            .send()
            .await
            .map_err(failed)?;
        if !response.status().is_success() {
            return Err(FetchError::Status {
                url: self.shown.clone(),
                status: response.status().as_u16(),
            });
        }
        let too_large = || FetchError::TooLarge {
            url: self.shown.clone(),
        };
        if response
            .content_length()
            .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        parse_jwk_set(&body).map_err(|reason| FetchError::BadDocument {
            url: self.shown.clone(),
            reason,
        })
    }
}

impl KeyFetcher for HttpKeyFetcher {
    fn fetch(&self) -> BoxFuture<'_, Result<JwkSet, FetchError>> {
        Box::pin(self.fetch_set())
    }
}

/// An error and its causes on one line (reqwest's own message alone says little).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}

/// A JWKS document; keys that `jsonwebtoken` cannot represent (other key types, curves or
/// algorithms) are left out rather than failing the whole set.
pub fn parse_jwk_set(body: &[u8]) -> Result<JwkSet, String> {
    #[derive(Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let document: Document = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let keys = document
        .keys
        .into_iter()
        .filter_map(|key| serde_json::from_value::<Jwk>(key).ok())
        .collect();
    Ok(JwkSet { keys })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyKind {
    fn signs_with(self, algorithm: Algorithm) -> bool {
        use Algorithm::*;
        matches!(
            (self, algorithm),
            (Self::Rsa, RS256 | RS384 | RS512 | PS256 | PS384 | PS512)
                | (Self::P256, ES256)
                | (Self::P384, ES384)
                | (Self::Ed25519, EdDSA)
        )
    }
}

/// A public key fit for verifying signatures.
pub(crate) struct VerifyKey {
    kind: KeyKind,
    /// The JWK's own `alg`, when it names one: then only that algorithm verifies with it.
    algorithm: Option<Algorithm>,
    key: DecodingKey,
}

impl VerifyKey {
    /// `None` for keys not meant for signatures (`use`, `key_ops`, an encryption `alg`) and for
    /// key types JWTs from a JWKS must not use (symmetric `oct` keys, unsupported curves).
    fn from_jwk(jwk: &Jwk) -> Option<Self> {
        let common = &jwk.common;
        if common
            .public_key_use
            .as_ref()
            .is_some_and(|u| *u != PublicKeyUse::Signature)
            || common
                .key_operations
                .as_ref()
                .is_some_and(|ops| !ops.contains(&KeyOperations::Verify))
        {
            return None;
        }
        let algorithm = match &common.key_algorithm {
            Some(alg) => Some(Algorithm::from_str(&alg.to_string()).ok()?),
            None => None,
        };
        let kind = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => KeyKind::Rsa,
            AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
                EllipticCurve::P256 => KeyKind::P256,
                EllipticCurve::P384 => KeyKind::P384,
                _ => return None,
            },
            AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
                KeyKind::Ed25519
            }
            _ => return None,
        };
        if algorithm.is_some_and(|alg| !kind.signs_with(alg)) {
            return None;
        }
        Some(Self {
            kind,
            algorithm,
            key: DecodingKey::from_jwk(jwk).ok()?,
        })
    }

    /// Whether `signature` (base64url) is this key's signature of `message` under `algorithm`.
    /// A key of another type than the algorithm needs never verifies.
    pub(crate) fn verifies(&self, algorithm: Algorithm, message: &[u8], signature: &str) -> bool {
        // The kind check also keeps jsonwebtoken from mixing key and algorithm families.
        self.kind.signs_with(algorithm)
            && self.algorithm.is_none_or(|alg| alg == algorithm)
            && jsonwebtoken::crypto::verify(signature, message, &self.key, algorithm)
                .unwrap_or(false)
    }
}

/// The usable keys of one successful fetch.
struct KeySet {
    by_kid: HashMap<String, Arc<VerifyKey>>,
    all: Vec<Arc<VerifyKey>>,
    fetched_at: Instant,
}

impl KeySet {
    fn new(jwks: &JwkSet) -> Self {
        let mut by_kid = HashMap::new();
        let mut all = Vec::new();
        for jwk in &jwks.keys {
            let Some(key) = VerifyKey::from_jwk(jwk) else {
                continue;
            };
            let key = Arc::new(key);
            if let Some(kid) = &jwk.common.key_id {
                if by_kid.contains_key(kid) {
                    // Two keys under one kid: neither is trusted to be the one meant.
                    tracing::warn!(kid, "JWKS has several keys with one kid; ignoring it");
                    by_kid.insert(kid.clone(), None);
                    continue;
                }
                by_kid.insert(kid.clone(), Some(key.clone()));
            }
            all.push(key);
        }
        let by_kid = by_kid
            .into_iter()
            .filter_map(|(kid, key)| Some((kid, key?)))
            .collect();
        Self {
            by_kid,
            all,
            fetched_at: Instant::now(),
        }
    }

    fn find(&self, kid: Option<&str>) -> Result<Arc<VerifyKey>, TokenError> {
        match kid {
            Some(kid) => self.by_kid.get(kid).cloned().ok_or(TokenError::UnknownKey),
            None => match self.all.as_slice() {
                [only] => Ok(only.clone()),
                [] => Err(TokenError::UnknownKey),
                _ => Err(TokenError::MissingKeyId),
            },
        }
    }
}

#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// Keys older than this are fetched again before use.
    pub ttl: Duration,
    /// At most one fetch per interval for unknown `kid`s; also the wait after a failed fetch.
    pub min_refresh_interval: Duration,
    /// How long one fetch may take before the last good keys are used instead.
    pub fetch_timeout: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(600),
            min_refresh_interval: Duration::from_secs(30),
            fetch_timeout: Duration::from_secs(5),
        }
    }
}

/// What the cache knows, as seen at one moment.
#[derive(Clone, Default)]
struct State {
    /// The last good keys.
    keys: Option<Arc<KeySet>>,
    last_attempt: Option<Instant>,
    last_failed: bool,
    /// The last fetch made for an unknown `kid`: the rate limit of such fetches.
    last_unknown_kid_fetch: Option<Instant>,
    /// Completed fetch attempts, so a caller that waited for the fetch lock can tell that
    /// someone else fetched meanwhile.
    attempts: u64,
}

fn within(at: Option<Instant>, interval: Duration) -> bool {
    at.is_some_and(|at| at.elapsed() < interval)
}

impl State {
    fn expired(&self, settings: &CacheSettings) -> bool {
        let stale = self
            .keys
            .as_ref()
            .is_none_or(|keys| keys.fetched_at.elapsed() >= settings.ttl);
        // After a failure, back off instead of fetching on every request.
        stale && !(self.last_failed && within(self.last_attempt, settings.min_refresh_interval))
    }
}

#[derive(Clone, Copy)]
enum Trigger {
    Expired,
    UnknownKey,
}

/// The key cache of one issuer.
pub struct JwksCache {
    fetcher: Arc<dyn KeyFetcher>,
    settings: CacheSettings,
    state: RwLock<State>,
    /// Held while fetching: one fetch at a time.
    fetching: tokio::sync::Mutex<()>,
    fetches: AtomicU64,
}

impl JwksCache {
    pub fn new(fetcher: Arc<dyn KeyFetcher>, settings: CacheSettings) -> Self {
        Self {
            fetcher,
            settings,
            state: RwLock::default(),
            fetching: tokio::sync::Mutex::new(()),
            fetches: AtomicU64::new(0),
        }
    }

    /// Fetches started so far, successful or not.
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    fn state(&self) -> State {
        self.state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The key a token names (or the only key, when it names none).
    pub(crate) async fn key(&self, kid: Option<&str>) -> Result<Arc<VerifyKey>, TokenError> {
        let state = self.refresh(self.state(), Trigger::Expired).await;
        let keys = state.keys.as_ref().ok_or(TokenError::KeysUnavailable)?;
        match keys.find(kid) {
            Err(TokenError::UnknownKey) if kid.is_some() => {
                let state = self.refresh(state, Trigger::UnknownKey).await;
                let keys = state.keys.as_ref().ok_or(TokenError::KeysUnavailable)?;
                keys.find(kid)
            }
            found => found,
        }
    }

    fn due(&self, state: &State, trigger: Trigger) -> bool {
        match trigger {
            Trigger::Expired => state.expired(&self.settings),
            Trigger::UnknownKey => !within(
                state.last_unknown_kid_fetch,
                self.settings.min_refresh_interval,
            ),
        }
    }

    /// Fetches if `trigger` is due and no one else fetched since `seen` (while this caller
    /// waited for its turn, say); returns the state after.
    async fn refresh(&self, seen: State, trigger: Trigger) -> State {
        // Checked before waiting, too, so that refused kids never queue behind a slow fetch.
        if !self.due(&seen, trigger) {
            return seen;
        }
        let _turn = self.fetching.lock().await;
        let state = self.state();
        if state.attempts != seen.attempts || !self.due(&state, trigger) {
            return state;
        }
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let timeout = self.settings.fetch_timeout;
        let fetched = match tokio::time::timeout(timeout, self.fetcher.fetch()).await {
            Ok(fetched) => fetched.map(|jwks| KeySet::new(&jwks)),
            Err(_) => Err(FetchError::Timeout(timeout)),
        };
        crate::instruments::jwks_refresh(fetched.is_ok());
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        state.attempts += 1;
        state.last_attempt = Some(Instant::now());
        state.last_failed = fetched.is_err();
        if matches!(trigger, Trigger::UnknownKey) {
            state.last_unknown_kid_fetch = state.last_attempt;
        }
        match fetched {
            Ok(keys) => state.keys = Some(Arc::new(keys)),
            Err(error) => tracing::warn!(
                %error,
                have_last_good_keys = state.keys.is_some(),
                "could not fetch signing keys"
            ),
        }
        state.clone()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn key_set(keys: serde_json::Value) -> KeySet {
        let body = serde_json::to_vec(&json!({ "keys": keys })).unwrap();
        KeySet::new(&parse_jwk_set(&body).unwrap())
    }

    // A valid Ed25519 public key (RFC 8037 §A.2).
    const ED_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    fn ed(kid: &str) -> serde_json::Value {
        json!({"kty": "OKP", "crv": "Ed25519", "x": ED_X, "kid": kid})
    }

    #[test]
    fn only_signature_keys_of_supported_types_are_kept() {
        let set = key_set(json!([
            ed("a"),
            {"kty": "OKP", "crv": "Ed25519", "x": ED_X, "kid": "enc", "use": "enc"},
            {"kty": "OKP", "crv": "Ed25519", "x": ED_X, "kid": "ops", "key_ops": ["encrypt"]},
            {"kty": "OKP", "crv": "Ed25519", "x": ED_X, "kid": "rsa-alg", "alg": "RS256"},
            {"kty": "OKP", "crv": "Ed25519", "x": ED_X, "kid": "oaep", "alg": "RSA-OAEP"},
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {"kty": "EC", "crv": "secp256k1", "x": ED_X, "y": ED_X, "kid": "k1"},
            {"kty": "EC", "crv": "P-521", "x": ED_X, "y": ED_X, "kid": "p521"},
            {"kty": "OKP", "crv": "X25519", "x": ED_X, "kid": "x25519"},
            {"kty": "whatever", "kid": "odd"},
            {"kty": "OKP", "crv": "Ed25519", "x": ED_X, "kid": "sig", "use": "sig", "alg": "EdDSA"},
        ]));
        let mut kids: Vec<_> = set.by_kid.keys().cloned().collect();
        kids.sort();
        assert_eq!(kids, ["a", "sig"]);
    }

    #[test]
    fn a_document_without_keys_is_refused() {
        assert!(parse_jwk_set(b"{}").is_err());
        assert!(parse_jwk_set(b"[]").is_err());
        assert!(parse_jwk_set(b"{\"keys\": []}").unwrap().keys.is_empty());
    }

    #[test]
    fn kid_lookup_and_the_single_key_rule() {
        let one = key_set(json!([ed("a")]));
        assert!(one.find(Some("a")).is_ok());
        assert!(one.find(None).is_ok(), "the only key needs no kid");
        assert_eq!(one.find(Some("b")).err(), Some(TokenError::UnknownKey));
        let two = key_set(json!([ed("a"), ed("b")]));
        assert_eq!(two.find(None).err(), Some(TokenError::MissingKeyId));
        let none = key_set(json!([]));
        assert_eq!(none.find(None).err(), Some(TokenError::UnknownKey));
    }

    #[test]
    fn a_kid_used_twice_is_trusted_for_neither_key() {
        let set = key_set(json!([ed("a"), ed("a"), ed("b")]));
        assert_eq!(set.find(Some("a")).err(), Some(TokenError::UnknownKey));
        assert!(set.find(Some("b")).is_ok());
    }

    #[test]
    fn keys_verify_only_the_algorithms_of_their_type() {
        let set = key_set(json!([ed("a")]));
        let key = set.find(Some("a")).unwrap();
        // Wrong type for the key: refused before the primitive runs.
        assert!(!key.verifies(Algorithm::RS256, b"m", "c2ln"));
        assert!(!key.verifies(Algorithm::ES256, b"m", "c2ln"));
        assert!(!key.verifies(Algorithm::HS256, b"m", "c2ln"));
        assert!(
            !key.verifies(Algorithm::EdDSA, b"m", "c2ln"),
            "not its signature"
        );
    }

    #[test]
    fn plain_http_only_to_loopback() {
        let t = Duration::from_secs(1);
        for ok in [
            "https://id.example/jwks",
            "http://127.0.0.1:9/jwks",
            "http://127.8.0.1/jwks",
            "http://[::1]:9/jwks",
            "http://localhost:9/jwks",
        ] {
            assert!(HttpKeyFetcher::new(ok, t).is_ok(), "{ok}");
        }
        for bad in [
            "http://id.example/jwks",
            "http://10.0.0.1/jwks",
            "http://localhost.example/jwks",
        ] {
            let refused = HttpKeyFetcher::new(bad, t).err().unwrap();
            assert!(matches!(refused, FetchError::InsecureUrl(_)), "{bad}");
        }
        for bad in ["ftp://id.example/jwks", "not a url", "file:///etc/passwd"] {
            let refused = HttpKeyFetcher::new(bad, t).err().unwrap();
            assert!(matches!(refused, FetchError::InvalidUrl(_)), "{bad}");
        }
    }

    #[test]
    fn urls_in_errors_carry_no_credentials_or_query() {
        let refused = HttpKeyFetcher::new(
            "http://user:pw@id.example/jwks?key=s3cret",
            Duration::from_secs(1),
        )
        .err()
        .unwrap();
        assert_eq!(
            refused.to_string(),
            "JWKS URL http://id.example/jwks uses plain http, which is allowed only for loopback hosts"
        );
    }
}
