//! JWT verification per token with a warm key cache, for ES256, EdDSA and RS256, against the
//! physical limit measured in the same run: the bare signature primitive
//! (`jsonwebtoken::crypto::verify`) on the same token and key.
//!
//! `cargo bench -p fleetmon-server --bench auth` (`BENCH_TOKENS=N` verifications per round,
//! default 2000; `BENCH_ROUNDS=N`, default 5). Each figure is the median round.

#[path = "support/env.rs"]
mod env;
#[path = "../tests/it/jwt_keys.rs"]
mod jwt_keys;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use env::env_or;
use fleetmon_server::auth::jwks::{
    parse_jwk_set, BoxFuture, CacheSettings, FetchError, JwksCache, KeyFetcher,
};
use fleetmon_server::auth::jwt::{IssuerPolicy, Verifier};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::DecodingKey;
use jwt_keys::{jwks, TestKey};
use serde_json::json;

const ISSUER: &str = "https://issuer.bench";
const AUDIENCE: &str = "fleetmon-api";

/// Keys from memory: the benchmark measures verification, not the network.
struct StaticKeys(JwkSet);

impl KeyFetcher for StaticKeys {
    fn fetch(&self) -> BoxFuture<'_, Result<JwkSet, FetchError>> {
        Box::pin(async move { Ok(self.0.clone()) })
    }
}

/// Median over `rounds` of the time per call of `round(tokens)`, which makes `tokens` calls.
fn median_per_token(rounds: usize, tokens: usize, mut round: impl FnMut(usize)) -> Duration {
    let mut times: Vec<Duration> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            round(tokens);
            start.elapsed() / tokens as u32
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn per_second(per_token: Duration) -> f64 {
    1.0 / per_token.as_secs_f64()
}

fn main() {
    let tokens = env_or("BENCH_TOKENS", 2000).max(1);
    let rounds = env_or("BENCH_ROUNDS", 5).max(1);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "user-42", "iat": now, "exp": now + 3600,
        "email": "ada@example.test", "name": "Ada",
    });

    println!("JWT verification, warm cache: {rounds} rounds of {tokens} tokens, median round");
    println!(
        "{:<6} {:>12} {:>12} {:>12} {:>12} {:>10}",
        "alg", "verify µs", "verify /s", "bare µs", "bare /s", "ratio"
    );
    for key in [
        TestKey::es256("ec-1"),
        TestKey::ed25519("ed-1"),
        TestKey::rs256("rsa-1"),
    ] {
        let token = key.sign(&key.header(), &claims);
        let document = serde_json::to_vec(&jwks(&[&key])).unwrap();
        let set = parse_jwk_set(&document).expect("the benchmark's JWKS");
        let decoding = DecodingKey::from_jwk(&set.keys[0]).unwrap();
        let policy = IssuerPolicy {
            issuer: ISSUER.into(),
            audiences: vec![AUDIENCE.into()],
            accept_azp: false,
            algorithms: vec![key.algorithm],
            leeway: Duration::from_secs(60),
        };
        let cache = JwksCache::new(Arc::new(StaticKeys(set)), CacheSettings::default());
        let verifier = Verifier::new(policy, cache);
        runtime
            .block_on(verifier.verify(&token))
            .expect("the benchmark's token verifies");

        let full = median_per_token(rounds, tokens, |n| {
            runtime.block_on(async {
                for _ in 0..n {
                    black_box(verifier.verify(black_box(&token)).await.unwrap());
                }
            })
        });
        let (signing_input, signature) = token.rsplit_once('.').unwrap();
        let bare = median_per_token(rounds, tokens, |n| {
            for _ in 0..n {
                let ok = jsonwebtoken::crypto::verify(
                    black_box(signature),
                    black_box(signing_input.as_bytes()),
                    &decoding,
                    key.algorithm,
                );
                assert!(black_box(ok).unwrap());
            }
        });
        assert_eq!(verifier.keys().fetch_count(), 1, "the cache stayed warm");
        println!(
            "{:<6} {:>12.1} {:>12.0} {:>12.1} {:>12.0} {:>10.3}",
            format!("{:?}", key.algorithm),
            full.as_secs_f64() * 1e6,
            per_second(full),
            bare.as_secs_f64() * 1e6,
            per_second(bare),
            full.as_secs_f64() / bare.as_secs_f64(),
        );
    }
}
