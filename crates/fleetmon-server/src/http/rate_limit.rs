//! Rate limits: ingest requests per ingest token, other API requests per client address. Each is
//! a token bucket per key, in this process's memory (a replica limits what reaches it; several
//! replicas together allow that many times the rate). Over the limit, a request is answered
//! `429 rate_limited` with `Retry-After` before any work is done for it.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};

/// The most keys a limit remembers. Beyond it the idle ones are forgotten first (a full bucket
/// is the same as none), then the least recently used: memory stays bounded (a few MiB) whatever
/// number of tokens or addresses is thrown at it.
const MAX_KEYS: usize = 100_000;

const INGEST_PATH: &str = "/api/v1/ingest";

/// `per_second` requests per second on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

/// The limits of one process.
#[derive(Default)]
pub struct RateLimits {
    ingest: Option<Buckets>,
    api: Option<Buckets>,
    /// Keyed per process, so nobody can aim many keys at one bucket.
    hasher: RandomState,
}

impl RateLimits {
    pub fn new(ingest_per_token: Option<RateLimit>, api_per_address: Option<RateLimit>) -> Self {
        Self {
            ingest: ingest_per_token.map(|limit| Buckets::new(limit, MAX_KEYS)),
            api: api_per_address.map(|limit| Buckets::new(limit, MAX_KEYS)),
            hasher: RandomState::new(),
        }
    }

    /// The limit `request` is counted against and its key, if any applies.
    fn applicable(&self, request: &Request) -> Option<(&'static str, &Buckets, u64)> {
        let path = request.uri().path();
        if path == INGEST_PATH {
            // Before the token is checked: a flood is refused without a database round trip.
            // A made-up token only ever fills a bucket of its own.
            let token = super::auth::bearer(request.headers()).ok().flatten()?;
            return Some((
                "ingest_token",
                self.ingest.as_ref()?,
                self.hasher.hash_one(token),
            ));
        }
        if !path.starts_with("/api/") {
            return None;
        }
        let address = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()?
            .0
            .ip();
        Some((
            "client_address",
            self.api.as_ref()?,
            self.hasher.hash_one(client_key(address)),
        ))
    }
}

/// One IPv6 client usually holds a whole /64: it counts as one address.
fn client_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into())
        }
        IpAddr::V6(v6) => IpAddr::V4(v6.to_ipv4_mapped().expect("checked above")),
        v4 => v4,
    }
}

/// Middleware: answers 429 to a request over its limit.
pub async fn limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Some((name, buckets, key)) = state.rate_limits.applicable(&request) {
        if let Err(retry_after) = buckets.take(key, Instant::now()) {
            crate::instruments::rate_limited(name);
            let what = match name {
                "ingest_token" => "ingest requests with this token",
                _ => "API requests from this address",
            };
            return ApiError::RateLimited {
                retry_after,
                message: format!(
                    "too many {what} (at most {} per second); retry after {retry_after} s",
                    buckets.limit.per_second
                ),
            }
            .into_response();
        }
    }
    next.run(request).await
}

/// Token buckets by key.
pub struct Buckets {
    limit: RateLimit,
    max_keys: usize,
    entries: Mutex<HashMap<u64, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Buckets {
    pub fn new(limit: RateLimit, max_keys: usize) -> Self {
        Self {
            limit,
            max_keys: max_keys.max(1),
            entries: Mutex::default(),
        }
    }

    fn rate(&self) -> f64 {
        f64::from(self.limit.per_second.max(1))
    }

    fn capacity(&self) -> f64 {
        f64::from(self.limit.burst.max(1))
    }

    /// The bucket's tokens at `now`.
    fn refilled(&self, bucket: &Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        (bucket.tokens + elapsed * self.rate()).min(self.capacity())
    }

    /// Takes a token from `key`'s bucket, or says in how many whole seconds one will be there.
    pub fn take(&self, key: u64, now: Instant) -> Result<(), u64> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.max_keys && !entries.contains_key(&key) {
            self.evict(&mut entries, now);
        }
        let fresh = Bucket {
            tokens: self.capacity(),
            at: now,
        };
        let bucket = entries.entry(key).or_insert(fresh);
        let tokens = self.refilled(bucket, now);
        *bucket = Bucket { tokens, at: now };
        if tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = Duration::from_secs_f64((1.0 - tokens) / self.rate());
        Err(wait.as_secs_f64().ceil().max(1.0) as u64)
    }

    /// Forgets full buckets; if every bucket is in use, the least recently used half.
    fn evict(&self, entries: &mut HashMap<u64, Bucket>, now: Instant) {
        let capacity = self.capacity();
        entries.retain(|_, bucket| self.refilled(bucket, now) < capacity);
        if entries.len() >= self.max_keys {
            let mut times: Vec<Instant> = entries.values().map(|bucket| bucket.at).collect();
            let middle = times.len() / 2;
            let (_, median, _) = times.select_nth_unstable(middle);
            let median = *median;
            entries.retain(|_, bucket| bucket.at > median);
        }
    }

    #[cfg(test)]
    fn keys(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: RateLimit = RateLimit {
        per_second: 2,
        burst: 3,
    };

    #[test]
    fn a_burst_then_the_rate_then_refusal_with_the_wait() {
        let buckets = Buckets::new(LIMIT, 10);
        let start = Instant::now();
        for _ in 0..3 {
            buckets.take(1, start).unwrap();
        }
        assert_eq!(buckets.take(1, start), Err(1));
        // Other keys have buckets of their own.
        buckets.take(2, start).unwrap();
        // Two tokens a second come back.
        let later = start + Duration::from_millis(500);
        buckets.take(1, later).unwrap();
        assert_eq!(buckets.take(1, later), Err(1));
        let much_later = start + Duration::from_secs(60);
        for _ in 0..3 {
            buckets.take(1, much_later).unwrap();
        }
        assert!(buckets.take(1, much_later).is_err());
    }

    #[test]
    fn a_slow_rate_asks_for_a_longer_wait() {
        let buckets = Buckets::new(
            RateLimit {
                per_second: 1,
                burst: 1,
            },
            10,
        );
        let now = Instant::now();
        buckets.take(7, now).unwrap();
        assert_eq!(buckets.take(7, now), Err(1));
    }

    #[test]
    fn memory_stays_bounded_and_idle_keys_go_first() {
        let buckets = Buckets::new(LIMIT, 100);
        let start = Instant::now();
        // A busy key, then many keys used once long ago, then a flood of new ones.
        for _ in 0..3 {
            buckets.take(0, start + Duration::from_secs(10)).unwrap();
        }
        for key in 1..100 {
            buckets.take(key, start).unwrap();
        }
        let now = start + Duration::from_secs(10);
        for key in 1_000..1_099 {
            buckets.take(key, now).unwrap();
        }
        assert_eq!(buckets.keys(), 100);
        // The busy key stayed (empty) while there were idle keys to forget.
        assert!(buckets.take(0, now).is_err());
        // A flood of new keys, all in use: never more than the bound.
        for key in 2_000..12_000 {
            buckets.take(key, now + Duration::from_micros(key)).unwrap();
            assert!(buckets.keys() <= 100);
        }
    }

    #[test]
    fn an_ipv6_client_is_its_slash_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(client_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }
}
