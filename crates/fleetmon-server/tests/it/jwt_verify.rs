//! JWT verification against a real JWKS endpoint on loopback with real ES256, EdDSA and RS256
//! keys: every refusal of issue #3's list, each asserting its exact reason code, and the key
//! cache's behaviour (refetch on unknown kid, no fetch storm, rotation, failing and hanging
//! endpoints, single-flight). No database is involved.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use fleetmon_server::auth::jwks::{
    CacheSettings, FetchError, HttpKeyFetcher, JwksCache, KeyFetcher,
};
use fleetmon_server::auth::jwt::{
    unverified_issuer, IssuerPolicy, VerifiedToken, Verifier, MAX_TOKEN_BYTES,
};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::jwt_keys::{b64, jwks, sign_with, TestKey};

const ISSUER: &str = "https://issuer.test/realms/fleet";
const AUDIENCE: &str = "fleetmon-api";
const LEEWAY: Duration = Duration::from_secs(60);

/// A JWKS endpoint whose answer (keys, status, or no answer at all) the test controls, counting
/// the requests it gets.
struct JwksServer {
    url: String,
    control: Arc<Control>,
}

struct Control {
    jwks: Mutex<Value>,
    status: AtomicU16,
    hang: AtomicBool,
    requests: AtomicUsize,
}

async fn serve_jwks(State(control): State<Arc<Control>>) -> Response {
    control.requests.fetch_add(1, Ordering::SeqCst);
    if control.hang.load(Ordering::SeqCst) {
        std::future::pending::<()>().await;
    }
    let status = StatusCode::from_u16(control.status.load(Ordering::SeqCst)).unwrap();
    let body = control.jwks.lock().unwrap().clone();
    (status, Json(body)).into_response()
}

impl JwksServer {
    async fn start(jwks: Value) -> Self {
        let control = Arc::new(Control {
            jwks: Mutex::new(jwks),
            status: AtomicU16::new(200),
            hang: AtomicBool::new(false),
            requests: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/jwks", get(serve_jwks))
            .with_state(control.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, control }
    }

    fn publish(&self, jwks: Value) {
        *self.control.jwks.lock().unwrap() = jwks;
    }

    fn set_status(&self, status: u16) {
        self.control.status.store(status, Ordering::SeqCst);
    }

    fn set_hang(&self, hang: bool) {
        self.control.hang.store(hang, Ordering::SeqCst);
    }

    fn requests(&self) -> usize {
        self.control.requests.load(Ordering::SeqCst)
    }

    fn verifier(&self, settings: CacheSettings) -> Verifier {
        let fetcher = HttpKeyFetcher::new(&self.url, settings.fetch_timeout).unwrap();
        Verifier::new(policy(), JwksCache::new(Arc::new(fetcher), settings))
    }
}

fn policy() -> IssuerPolicy {
    IssuerPolicy {
        issuer: ISSUER.into(),
        audiences: vec![AUDIENCE.into()],
        accept_azp: false,
        algorithms: vec![Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256],
        leeway: LEEWAY,
    }
}

/// Settings under which nothing expires or refetches during a test unless it says so.
fn steady() -> CacheSettings {
    CacheSettings {
        ttl: Duration::from_secs(3600),
        min_refresh_interval: Duration::from_secs(3600),
        fetch_timeout: Duration::from_secs(5),
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims() -> Value {
    json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "user-42", "iat": now(), "exp": now() + 300,
        "email": "ada@example.test",
    })
}

/// `claims()` with some claims replaced, or removed where `changes` has them as null.
fn claims_with(changes: Value) -> Value {
    let mut claims = claims();
    for (name, value) in changes.as_object().unwrap() {
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(name);
        } else {
            claims[name] = value.clone();
        }
    }
    claims
}

fn es256() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| TestKey::es256("ec-1"))
}

fn rs256() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| TestKey::rs256("rsa-1"))
}

/// An issuer publishing one key, and a verifier of its tokens with a warm cache.
async fn issuer(key: &TestKey) -> (JwksServer, Verifier) {
    let server = JwksServer::start(jwks(&[key])).await;
    let verifier = server.verifier(steady());
    let warm = verifier.verify(&key.sign(&key.header(), &claims())).await;
    assert!(warm.is_ok(), "{warm:?}");
    (server, verifier)
}

async fn code(verifier: &Verifier, token: &str) -> &'static str {
    match verifier.verify(token).await {
        Ok(_) => "accepted",
        Err(error) => {
            let message = error.to_string();
            for part in token.split('.').filter(|part| part.len() >= 8) {
                assert!(
                    !message.contains(part),
                    "the message quotes the token: {message}"
                );
            }
            error.code()
        }
    }
}

/// Fails instead of hanging the test binary if verification blocks on a hung endpoint.
async fn bounded<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), future)
        .await
        .expect("verification blocked on the key endpoint")
}

#[tokio::test]
async fn valid_tokens_of_each_algorithm_are_accepted() {
    let ed = TestKey::ed25519("ed-1");
    let keys = [es256(), &ed, rs256()];
    let server = JwksServer::start(jwks(&keys)).await;
    let verifier = server.verifier(steady());
    for key in keys {
        let token = key.sign(&key.header(), &claims());
        let verified: VerifiedToken = verifier.verify(&token).await.unwrap();
        assert_eq!(verified.subject, "user-42");
        assert_eq!(verified.algorithm, key.algorithm);
        assert_eq!(verified.key_id.as_deref(), Some(key.kid.as_str()));
        assert_eq!(verified.claims["email"], "ada@example.test");
        assert_eq!(
            verified.expires_at.timestamp(),
            claims()["exp"].as_i64().unwrap()
        );
    }
    assert_eq!(
        server.requests(),
        1,
        "one fetch serves every key of the set"
    );
    assert_eq!(verifier.keys().fetch_count(), 1);
}

#[tokio::test]
async fn tampered_tokens_fail_the_signature() {
    let key = es256();
    let (_server, verifier) = issuer(key).await;
    let token = key.sign(&key.header(), &claims());
    let (signed, signature) = token.rsplit_once('.').unwrap();

    let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
    bytes[7] ^= 0x01;
    let flipped = format!("{signed}.{}", b64(&bytes));
    assert_eq!(code(&verifier, &flipped).await, "bad_signature");

    let (header, _) = signed.split_once('.').unwrap();
    let forged = claims_with(json!({"sub": "admin"}));
    let swapped = format!("{header}.{}.{signature}", b64(forged.to_string()));
    assert_eq!(code(&verifier, &swapped).await, "bad_signature");

    assert_eq!(
        code(&verifier, &format!("{signed}.")).await,
        "bad_signature"
    );
}

#[tokio::test]
async fn unsigned_tokens_are_refused_by_algorithm() {
    let key = es256();
    let (_server, verifier) = issuer(key).await;
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = json!({"alg": alg, "kid": key.kid});
        let token = format!("{}.{}.", b64(header.to_string()), b64(claims().to_string()));
        assert_eq!(
            code(&verifier, &token).await,
            "algorithm_not_allowed",
            "{alg}"
        );
    }
}

#[tokio::test]
async fn hmac_with_the_issuers_public_key_is_refused_even_when_listed() {
    let key = es256();
    let server = JwksServer::start(jwks(&[key])).await;
    let mut policy = policy();
    policy.algorithms.push(Algorithm::HS256);
    let fetcher = HttpKeyFetcher::new(&server.url, Duration::from_secs(5)).unwrap();
    let verifier = Verifier::new(policy, JwksCache::new(Arc::new(fetcher), steady()));
    let jwk = &key.jwk;
    let point = [
        vec![4u8],
        URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap(),
        URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap(),
    ]
    .concat();
    // The public key as the raw point and as its published JWK text: what an attacker has.
    for secret in [point, jwk.to_string().into_bytes()] {
        let header = json!({"alg": "HS256", "kid": key.kid});
        let token = sign_with(
            &EncodingKey::from_secret(&secret),
            Algorithm::HS256,
            &header,
            &claims(),
        );
        assert_eq!(code(&verifier, &token).await, "algorithm_not_allowed");
    }
    assert_eq!(server.requests(), 0, "refused before any key was looked up");
}

#[tokio::test]
async fn an_algorithm_off_the_list_is_refused() {
    let ed = TestKey::ed25519("ed-1");
    let server = JwksServer::start(jwks(&[&ed, es256()])).await;
    let mut only_es256 = policy();
    only_es256.algorithms = vec![Algorithm::ES256];
    let fetcher = HttpKeyFetcher::new(&server.url, Duration::from_secs(5)).unwrap();
    let verifier = Verifier::new(only_es256, JwksCache::new(Arc::new(fetcher), steady()));
    let token = ed.sign(&ed.header(), &claims());
    assert_eq!(code(&verifier, &token).await, "algorithm_not_allowed");
    let es = es256().sign(&es256().header(), &claims());
    assert_eq!(code(&verifier, &es).await, "accepted");
}

#[tokio::test]
async fn a_key_of_another_type_than_the_algorithm_fails_the_signature() {
    let server = JwksServer::start(jwks(&[es256(), rs256()])).await;
    let verifier = server.verifier(steady());
    // Signed with the P-256 key but naming the RSA key: must not verify (nor panic).
    let header = json!({"alg": "ES256", "kid": rs256().kid});
    let token = es256().sign(&header, &claims());
    assert_eq!(code(&verifier, &token).await, "bad_signature");
}

#[tokio::test]
async fn an_unknown_kid_refetches_once_and_a_flood_causes_no_more_fetches() {
    let key = es256();
    let (server, verifier) = issuer(key).await;
    assert_eq!(server.requests(), 1);
    let stranger = TestKey::ed25519("not-published");
    let token = stranger.sign(&stranger.header(), &claims());
    assert_eq!(code(&verifier, &token).await, "unknown_key");
    assert_eq!(
        server.requests(),
        2,
        "exactly one refetch for the unknown kid"
    );
    for _ in 0..200 {
        let header = json!({"alg": "EdDSA", "kid": uuid::Uuid::new_v4().to_string()});
        assert_eq!(
            code(&verifier, &stranger.sign(&header, &claims())).await,
            "unknown_key"
        );
    }
    assert_eq!(
        server.requests(),
        2,
        "no fetch storm within the refresh interval"
    );
    assert_eq!(verifier.keys().fetch_count(), 2);
}

#[tokio::test]
async fn without_kid_only_a_single_key_set_verifies() {
    let key = es256();
    let (server, single) = issuer(key).await;
    let no_kid = key.sign(&json!({"alg": "ES256"}), &claims());
    assert_eq!(code(&single, &no_kid).await, "accepted");

    server.publish(jwks(&[key, &TestKey::es256("ec-2")]));
    let several = server.verifier(steady());
    assert_eq!(code(&several, &no_kid).await, "missing_key_id");
}

#[tokio::test]
async fn rotation_adds_keys_without_restart_and_drops_removed_ones_after_the_ttl() {
    let old = TestKey::ed25519("2026-01");
    let new = TestKey::ed25519("2026-02");
    let server = JwksServer::start(jwks(&[&old])).await;
    let ttl = Duration::from_millis(500);
    let verifier = server.verifier(CacheSettings { ttl, ..steady() });
    let old_token = old.sign(&old.header(), &claims());
    let new_token = new.sign(&new.header(), &claims());
    assert_eq!(code(&verifier, &old_token).await, "accepted");

    server.publish(jwks(&[&old, &new]));
    assert_eq!(
        code(&verifier, &new_token).await,
        "accepted",
        "new kid picked up"
    );
    assert_eq!(code(&verifier, &old_token).await, "accepted");

    server.publish(jwks(&[&new]));
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    assert_eq!(
        code(&verifier, &old_token).await,
        "unknown_key",
        "removed key refused"
    );
    assert_eq!(code(&verifier, &new_token).await, "accepted");
}

#[tokio::test]
async fn a_failing_endpoint_keeps_the_last_good_keys() {
    let key = es256();
    let server = JwksServer::start(jwks(&[key])).await;
    let ttl = Duration::from_millis(300);
    let verifier = server.verifier(CacheSettings { ttl, ..steady() });
    let token = key.sign(&key.header(), &claims());
    assert_eq!(code(&verifier, &token).await, "accepted");

    server.set_status(500);
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    assert_eq!(code(&verifier, &token).await, "accepted", "last-good keys");
    assert_eq!(server.requests(), 2, "the expired keys were refetched");
    assert_eq!(code(&verifier, &token).await, "accepted");
    assert_eq!(
        server.requests(),
        2,
        "a failed fetch is not retried at once"
    );
}

#[tokio::test]
async fn an_issuer_whose_keys_never_arrived_is_unavailable() {
    let key = es256();
    let server = JwksServer::start(jwks(&[key])).await;
    server.set_status(500);
    let verifier = server.verifier(steady());
    let token = key.sign(&key.header(), &claims());
    assert_eq!(code(&verifier, &token).await, "keys_unavailable");
    assert_eq!(code(&verifier, &token).await, "keys_unavailable");
    assert_eq!(
        server.requests(),
        1,
        "retried only after the refresh interval"
    );

    let hung = JwksServer::start(jwks(&[key])).await;
    hung.set_hang(true);
    let verifier = hung.verifier(CacheSettings {
        fetch_timeout: Duration::from_millis(200),
        ..steady()
    });
    assert_eq!(bounded(code(&verifier, &token)).await, "keys_unavailable");
}

#[tokio::test]
async fn a_hanging_endpoint_blocks_no_one_beyond_the_fetch_timeout() {
    let key = es256();
    let server = JwksServer::start(jwks(&[key])).await;
    let ttl = Duration::from_millis(300);
    let verifier = Arc::new(server.verifier(CacheSettings {
        ttl,
        fetch_timeout: Duration::from_secs(1),
        ..steady()
    }));
    let token = key.sign(&key.header(), &claims());
    assert_eq!(code(&verifier, &token).await, "accepted");

    server.set_hang(true);
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    let callers: Vec<_> = (0..20)
        .map(|_| {
            let (verifier, token) = (verifier.clone(), token.clone());
            tokio::spawn(async move { verifier.verify(&token).await.map(|t| t.subject) })
        })
        .collect();
    for caller in callers {
        let verified = bounded(caller).await.unwrap();
        assert_eq!(
            verified,
            Ok("user-42".to_owned()),
            "last-good keys while hung"
        );
    }
    assert_eq!(server.requests(), 2, "the callers shared one (hung) fetch");
}

#[tokio::test]
async fn concurrent_first_uses_share_one_fetch() {
    let key = es256();
    let server = JwksServer::start(jwks(&[key])).await;
    let verifier = Arc::new(server.verifier(steady()));
    let token = key.sign(&key.header(), &claims());
    let callers: Vec<_> = (0..20)
        .map(|_| {
            let (verifier, token) = (verifier.clone(), token.clone());
            tokio::spawn(async move { verifier.verify(&token).await.is_ok() })
        })
        .collect();
    for caller in callers {
        assert!(caller.await.unwrap());
    }
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn expiry_is_checked_with_the_leeway() {
    let key = es256();
    let (_server, verifier) = issuer(key).await;
    let token = |changes| key.sign(&key.header(), &claims_with(changes));
    let just_within = token(json!({"exp": now() - 30}));
    assert_eq!(code(&verifier, &just_within).await, "accepted");
    let just_past = token(json!({"exp": now() - 90}));
    assert_eq!(code(&verifier, &just_past).await, "token_expired");
    let as_string = token(json!({"exp": (now() + 300).to_string()}));
    assert_eq!(code(&verifier, &as_string).await, "malformed_token");
    let missing = token(json!({"exp": null}));
    assert_eq!(code(&verifier, &missing).await, "missing_exp");
}

#[tokio::test]
async fn tokens_from_the_future_are_not_valid_yet() {
    let key = es256();
    let (_server, verifier) = issuer(key).await;
    let token = |changes| key.sign(&key.header(), &claims_with(changes));
    let nbf = token(json!({"nbf": now() + 600}));
    assert_eq!(code(&verifier, &nbf).await, "token_not_yet_valid");
    let iat = token(json!({"iat": now() + 600}));
    assert_eq!(code(&verifier, &iat).await, "token_not_yet_valid");
    let skewed = token(json!({"nbf": now() + 30, "iat": now() + 30}));
    assert_eq!(
        code(&verifier, &skewed).await,
        "accepted",
        "within the leeway"
    );
    let nbf_string = token(json!({"nbf": "soon"}));
    assert_eq!(code(&verifier, &nbf_string).await, "malformed_token");
}

#[tokio::test]
async fn the_issuer_must_match_exactly() {
    let key = es256();
    let (_server, verifier) = issuer(key).await;
    for iss in [
        json!("https://other.test"),
        json!(format!("{ISSUER}/")),
        json!(null),
        json!(7),
    ] {
        let token = key.sign(&key.header(), &claims_with(json!({ "iss": iss })));
        assert_eq!(code(&verifier, &token).await, "unknown_issuer", "{iss}");
    }
    let slash = key.sign(
        &key.header(),
        &claims_with(json!({"iss": format!("{ISSUER}/")})),
    );
    assert_eq!(unverified_issuer(&slash).unwrap(), format!("{ISSUER}/"));
}

#[tokio::test]
async fn the_audience_must_name_this_service() {
    let key = es256();
    let (_server, verifier) = issuer(key).await;
    let token = |changes| key.sign(&key.header(), &claims_with(changes));
    for aud in [
        json!("another-api"),
        json!(null),
        json!(["another-api", "third"]),
        json!([AUDIENCE, 7]),
        json!([]),
        json!({"aud": AUDIENCE}),
    ] {
        let refused = token(json!({ "aud": aud }));
        assert_eq!(code(&verifier, &refused).await, "bad_audience", "{aud}");
    }
    let listed = token(json!({"aud": ["another-api", AUDIENCE]}));
    assert_eq!(code(&verifier, &listed).await, "accepted");
}

#[tokio::test]
async fn the_subject_must_be_a_non_empty_string() {
    let key = es256();
    let (_server, verifier) = issuer(key).await;
    for sub in [json!(null), json!(""), json!(42), json!(["user-42"])] {
        let token = key.sign(&key.header(), &claims_with(json!({ "sub": sub })));
        assert_eq!(code(&verifier, &token).await, "bad_subject", "{sub}");
    }
}

#[tokio::test]
async fn malformed_tokens_are_refused_before_anything_else() {
    let key = es256();
    let (server, verifier) = issuer(key).await;
    let padded = claims_with(json!({"pad": "x".repeat(MAX_TOKEN_BYTES)}));
    let oversized = key.sign(&key.header(), &padded);
    let valid = key.sign(&key.header(), &claims());
    let (header, rest) = valid.split_once('.').unwrap();
    for bad in [
        oversized,
        format!("{header}!.{rest}"),
        format!("{header}={rest}"),
        format!("{valid}.{}", b64("extra")),
        valid.replacen('.', "", 1),
        format!("{}.{rest}", b64("[\"alg\"]")),
        format!("{}.{rest}", b64(r#"{"alg":"ES256","alg":"none"}"#)),
        format!("{}.{rest}", b64(r#"{"alg":"ES256","kid":5}"#)),
        String::new(),
    ] {
        assert_eq!(code(&verifier, &bad).await, "malformed_token", "{bad:.80}");
        assert_eq!(
            unverified_issuer(&bad).map_err(|e| e.code()),
            Err("malformed_token")
        );
    }
    assert_eq!(server.requests(), 1, "no key was fetched for junk");
}

#[tokio::test]
async fn a_critical_header_extension_is_refused() {
    let key = es256();
    let (_server, verifier) = issuer(key).await;
    let header = json!({"alg": "ES256", "kid": key.kid, "crit": ["b64"], "b64": false});
    let token = key.sign(&header, &claims());
    assert_eq!(code(&verifier, &token).await, "unsupported_header");
}

#[tokio::test]
async fn key_urls_and_keys_in_the_header_are_never_used() {
    let key = es256();
    let (_server, verifier) = issuer(key).await;
    let attacker = TestKey::es256(&key.kid);
    let attackers_jwks = JwksServer::start(jwks(&[&attacker])).await;
    let header = json!({
        "alg": "ES256", "kid": key.kid, "jku": attackers_jwks.url, "x5u": attackers_jwks.url,
        "jwk": attacker.jwk,
    });
    let token = attacker.sign(&header, &claims());
    assert_eq!(code(&verifier, &token).await, "bad_signature");
    assert_eq!(attackers_jwks.requests(), 0);
}

/// A server that answers every connection with an endless chunked body, counting bytes sent.
async fn endless_body_server() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = [0u8; 1024];
        let _ = socket.read(&mut request).await;
        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
        socket.write_all(head.as_bytes()).await.unwrap();
        let chunk = format!("4000\r\n{}\r\n", "x".repeat(0x4000));
        // Bounded: 64 MiB at most, far past the cap; stops when the client hangs up.
        for _ in 0..4096 {
            if socket.write_all(chunk.as_bytes()).await.is_err() {
                break;
            }
            counter.fetch_add(0x4000, Ordering::SeqCst);
        }
    });
    (url, sent)
}

#[tokio::test]
async fn the_fetcher_cuts_off_large_bodies_and_reports_failures() {
    let (url, sent) = endless_body_server().await;
    let fetcher = HttpKeyFetcher::new(&url, Duration::from_secs(10)).unwrap();
    let refused = bounded(fetcher.fetch()).await.unwrap_err();
    assert!(matches!(refused, FetchError::TooLarge { .. }), "{refused}");
    assert!(
        sent.load(Ordering::SeqCst) < 16 << 20,
        "the body was read far past the cap"
    );

    let server = JwksServer::start(jwks(&[es256()])).await;
    let fetcher = HttpKeyFetcher::new(&server.url, Duration::from_secs(10)).unwrap();
    assert_eq!(fetcher.fetch().await.unwrap().keys.len(), 1);
    server.set_status(503);
    let refused = fetcher.fetch().await.unwrap_err();
    assert!(
        matches!(refused, FetchError::Status { status: 503, .. }),
        "{refused}"
    );
    server.set_status(200);
    server.publish(json!({"keys": "none"}));
    let refused = fetcher.fetch().await.unwrap_err();
    assert!(
        matches!(refused, FetchError::BadDocument { .. }),
        "{refused}"
    );
    server.publish(json!({"keys": [{"kty": "EC", "crv": "P-256K"}, es256().jwk]}));
    assert_eq!(
        fetcher.fetch().await.unwrap().keys.len(),
        1,
        "odd keys are skipped"
    );

    let closed = "http://127.0.0.1:1/jwks";
    let refused = HttpKeyFetcher::new(closed, Duration::from_secs(10))
        .unwrap()
        .fetch()
        .await;
    assert!(matches!(refused, Err(FetchError::Request { .. })));
}
