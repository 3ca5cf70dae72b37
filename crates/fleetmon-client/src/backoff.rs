//! How long to wait before resending a batch. Exponential, so an outage is not met with a
//! request storm; jittered, so a fleet of agents that lost the server at the same moment does
//! not come back in lockstep; capped, so an agent resumes soon after the server does.

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use chrono::{DateTime, Utc};

/// The pause before the first retry, unless the server asks for another.
const INITIAL: Duration = Duration::from_millis(100);

/// The backoff state of one batch: [`Backoff::next_delay`] grows with each failure.
#[derive(Debug)]
pub(crate) struct Backoff {
    /// The un-jittered delay the next failure would get.
    step: Duration,
    max: Duration,
    rng: SplitMix64,
}

impl Backoff {
    pub(crate) fn new(max: Duration) -> Self {
        Self {
            step: INITIAL.min(max),
            max,
            rng: SplitMix64::seeded(),
        }
    }

    /// Starts over, for a new batch.
    pub(crate) fn reset(&mut self) {
        self.step = INITIAL.min(self.max);
    }

    /// The pause before the next attempt. A `Retry-After` from the server wins over the
    /// exponential schedule (the server knows when it expects to recover), but is capped at
    /// `max` too, so that a misbehaving proxy cannot park delivery for hours.
    pub(crate) fn next_delay(&mut self, retry_after: Option<Duration>) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.max);
        if let Some(asked) = retry_after {
            return asked.min(self.max);
        }
        // "Equal jitter": half the step for sure, the other half at random. Unlike full jitter,
        // it never retries immediately, and the spread still desynchronises agents.
        let half = step / 2;
        let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(self.rng.below(nanos.saturating_add(1)))
    }
}

/// Reads a `Retry-After` header value: delay-seconds or an HTTP-date (RFC 9110 §10.2.3). Anything
/// else is ignored, and the exponential schedule applies.
pub(crate) fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    // A date in the past means "now".
    Some((at.with_timezone(&Utc) - now).to_std().unwrap_or_default())
}

/// A small, fast generator for jitter, which needs spread, not unpredictability. Seeded from the
/// standard library's per-process random hash keys, so no extra dependency is needed.
#[derive(Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn seeded() -> Self {
        Self(RandomState::new().hash_one(0x5eed_u64))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound` > 0); the modulo bias is irrelevant for jitter.
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_exponentially_within_jitter_and_stop_at_the_cap() {
        let max = Duration::from_secs(2);
        let mut backoff = Backoff::new(max);
        let mut step = INITIAL;
        for _ in 0..10 {
            let delay = backoff.next_delay(None);
            assert!(
                delay >= step / 2 && delay <= step,
                "{delay:?} vs step {step:?}"
            );
            step = (step * 2).min(max);
        }
        assert_eq!(step, max);
        backoff.reset();
        assert!(backoff.next_delay(None) <= INITIAL);
    }

    #[test]
    fn retry_after_wins_but_is_capped() {
        let mut backoff = Backoff::new(Duration::from_secs(30));
        assert_eq!(
            backoff.next_delay(Some(Duration::ZERO)),
            Duration::ZERO,
            "Retry-After: 0 means retry now"
        );
        assert_eq!(
            backoff.next_delay(Some(Duration::from_secs(3600))),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn a_cap_below_the_initial_step_is_respected() {
        let mut backoff = Backoff::new(Duration::from_millis(10));
        assert!(backoff.next_delay(None) <= Duration::from_millis(10));
    }

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        let now = DateTime::parse_from_rfc3339("2026-01-05T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Mon, 05 Jan 2026 10:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Mon, 05 Jan 2026 09:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }
}
