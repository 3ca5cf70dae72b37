//! The time window of a metrics or overview query, and its buckets.
//!
//! A window is the half-open interval `[since, until)` and is exactly what the SQL filters on.
//! Buckets are aligned to multiples of the step since the Unix epoch (UTC), so a chart's buckets
//! stay put between refreshes; the first and the last bucket may therefore reach outside the
//! window, and count only what lies inside it.

use chrono::{DateTime, Duration, TimeZone, Utc};

/// The window when the caller names none.
pub const DEFAULT_RANGE: Duration = Duration::hours(24);
/// The most buckets one query may ask for.
pub const MAX_BUCKETS: i64 = 1000;
/// Default steps are the smallest of these that give at most this many buckets.
const DEFAULT_STEPS_S: &[i64] = &[60, 300, 900, 3_600, 21_600, 86_400, 604_800];
const TARGET_BUCKETS: i64 = 200;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("{0}")]
    InvalidRange(String),
    #[error("{0}")]
    InvalidStep(String),
    #[error("{buckets} buckets of {step_s} s is more than {MAX_BUCKETS}; ask for a larger step or a shorter range")]
    TooManyBuckets { buckets: i64, step_s: i64 },
}

impl WindowError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRange(_) => "invalid_range",
            Self::InvalidStep(_) => "invalid_step",
            Self::TooManyBuckets { .. } => "too_many_buckets",
        }
    }
}

/// `[since, until)`, to the microsecond (PostgreSQL's precision).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

/// A window's parameters as a caller spells them; absent and empty are the same.
#[derive(Debug, Clone, Copy, Default)]
pub struct WindowParams<'a> {
    pub range: Option<&'a str>,
    pub since: Option<&'a str>,
    pub until: Option<&'a str>,
}

impl Window {
    /// `since` and `until` together, or either with `range` (its length, default 24 h); `until`
    /// defaults to `now`.
    pub fn parse(params: WindowParams<'_>, now: DateTime<Utc>) -> Result<Self, WindowError> {
        let range = present(params.range)
            .map(|r| {
                parse_duration(r).ok_or_else(|| {
                    WindowError::InvalidRange(format!(
                        "range is a duration such as 1h, 24h, 7d or 30d, not {r:?}"
                    ))
                })
            })
            .transpose()?;
        let since = present(params.since)
            .map(|s| parse_time("since", s))
            .transpose()?;
        let until = present(params.until)
            .map(|u| parse_time("until", u))
            .transpose()?;
        let shift = |from: DateTime<Utc>, by: Duration| {
            from.checked_add_signed(by)
                .filter(|t| in_bounds(*t))
                .ok_or_else(|| WindowError::InvalidRange("the range reaches too far".into()))
        };
        let (since, until) = match (since, until, range) {
            (Some(_), Some(_), Some(_)) => {
                return Err(WindowError::InvalidRange(
                    "give since and until, or one of them with range, not all three".into(),
                ))
            }
            (Some(since), Some(until), None) => (since, until),
            (Some(since), None, Some(range)) => (since, shift(since, range)?),
            (Some(since), None, None) => (since, truncate(now)),
            (None, until, range) => {
                let until = until.unwrap_or_else(|| truncate(now));
                (shift(until, -range.unwrap_or(DEFAULT_RANGE))?, until)
            }
        };
        if since >= until {
            return Err(WindowError::InvalidRange(format!(
                "since ({}) must be before until ({})",
                since.to_rfc3339(),
                until.to_rfc3339()
            )));
        }
        Ok(Self { since, until })
    }

    pub fn length(&self) -> Duration {
        self.until - self.since
    }
}

/// A window cut into buckets of `step_s` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buckets {
    pub window: Window,
    pub step_s: i64,
}

impl Buckets {
    /// `step` as given (a duration, at least one second), or a default that gives at most about
    /// 200 buckets: 1 min for 1 h, 15 min for 24 h, 1 h for 7 d, 6 h for 30 d.
    pub fn new(window: Window, step: Option<&str>) -> Result<Self, WindowError> {
        let step_s = match present(step) {
            Some(step) => parse_duration(step)
                .map(|d| d.num_seconds())
                .filter(|s| *s >= 1)
                .ok_or_else(|| {
                    WindowError::InvalidStep(format!(
                        "step is a whole number of seconds or a duration such as 30s, 5m or 1h, not {step:?}"
                    ))
                })?,
            None => {
                let length_s = window.length().num_seconds().max(1);
                *DEFAULT_STEPS_S
                    .iter()
                    .find(|s| div_ceil(length_s, **s) <= TARGET_BUCKETS)
                    .unwrap_or(DEFAULT_STEPS_S.last().expect("default steps"))
            }
        };
        let buckets = Self { window, step_s };
        let count = buckets.count();
        if count > MAX_BUCKETS {
            return Err(WindowError::TooManyBuckets {
                buckets: count,
                step_s,
            });
        }
        Ok(buckets)
    }

    /// The start of the bucket holding `at`.
    pub fn start_of(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        let step_us = self.step_s * 1_000_000;
        let us = at.timestamp_micros();
        Utc.timestamp_micros(us - us.rem_euclid(step_us))
            .single()
            .expect("a bucket start within chrono's range")
    }

    /// The start of every bucket the window touches, in order: what the metrics queries answer
    /// one row of per series.
    pub fn starts(&self) -> Vec<DateTime<Utc>> {
        let first = self.start_of(self.window.since);
        (0..self.count())
            .map(|i| first + Duration::seconds(i * self.step_s))
            .collect()
    }

    /// How many buckets the window touches.
    pub fn count(&self) -> i64 {
        let first = self.start_of(self.window.since).timestamp_micros();
        div_ceil(
            self.window.until.timestamp_micros() - first,
            self.step_s * 1_000_000,
        )
    }
}

/// The SQL of the start of the bucket holding `time`; `step` is the step in seconds.
pub(crate) fn bucket_sql(step: &str, time: &str) -> String {
    format!("date_bin(make_interval(secs => {step}), {time}, 'epoch')")
}

/// The SQL of every bucket of `[since, until)`, in order, as a query of the columns `bucket` (its
/// start) and `[lo, hi)` (the part of it inside the window): exactly the [`Buckets::count`]
/// buckets.
pub(crate) fn buckets_sql(since: &str, until: &str, step: &str) -> String {
    format!(
        "SELECT b AS bucket, greatest(b, {since}) AS lo,
                least(b + make_interval(secs => {step}), {until}) AS hi
         FROM generate_series({first}, {until}, make_interval(secs => {step})) b
         WHERE b < {until}",
        first = bucket_sql(step, &format!("{since}::timestamptz")),
    )
}

fn present(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.is_empty())
}

fn div_ceil(a: i64, b: i64) -> i64 {
    (a + b - 1) / b
}

/// `90`, `90s`, `15m`, `24h`, `7d`: a positive number of seconds, minutes, hours or days.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let n: i64 = digits.parse().ok().filter(|n| *n > 0)?;
    let seconds = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3_600),
        "d" => n.checked_mul(86_400),
        _ => None,
    }?;
    // Beyond about 10,000 years nothing is in range anyway.
    (seconds <= 316_000_000_000).then(|| Duration::seconds(seconds))
}

/// RFC 3339; a `+` of the offset that arrived as a space (an unencoded query string) is repaired.
fn parse_time(name: &str, text: &str) -> Result<DateTime<Utc>, WindowError> {
    DateTime::parse_from_rfc3339(text)
        .or_else(|e| DateTime::parse_from_rfc3339(&text.replace(' ', "+")).map_err(|_| e))
        .map(|t| truncate(t.with_timezone(&Utc)))
        .ok()
        .filter(|t| in_bounds(*t))
        .ok_or_else(|| {
            WindowError::InvalidRange(format!(
                "{name} is an RFC 3339 time between 1970 and 9999, such as 2026-01-31T12:00:00Z, not {text:?}"
            ))
        })
}

fn in_bounds(t: DateTime<Utc>) -> bool {
    let first = Utc.with_ymd_and_hms(1970, 1, 1, 0, 0, 0).unwrap();
    let last = Utc.with_ymd_and_hms(10_000, 1, 1, 0, 0, 0).unwrap();
    (first..=last).contains(&t)
}

/// PostgreSQL keeps microseconds: a finer `now` would make a window the SQL cannot express.
fn truncate(t: DateTime<Utc>) -> DateTime<Utc> {
    Utc.timestamp_micros(t.timestamp_micros())
        .single()
        .expect("a time within chrono's range")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().into()
    }

    fn parse(
        range: Option<&str>,
        since: Option<&str>,
        until: Option<&str>,
    ) -> Result<Window, WindowError> {
        let params = WindowParams {
            range,
            since,
            until,
        };
        Window::parse(params, t("2026-03-01T12:34:56.789Z"))
    }

    fn window(range: Option<&str>, since: Option<&str>, until: Option<&str>) -> Window {
        parse(range, since, until).unwrap()
    }

    #[test]
    fn ranges_end_now_unless_told_otherwise() {
        let w = window(Some("1h"), None, None);
        assert_eq!(
            (w.since, w.until),
            (t("2026-03-01T11:34:56.789Z"), t("2026-03-01T12:34:56.789Z"))
        );
        assert_eq!(window(None, None, None).length(), Duration::hours(24));
        let w = window(Some("7d"), Some("2026-02-01T00:00:00Z"), None);
        assert_eq!(w.until, t("2026-02-08T00:00:00Z"));
        let w = window(Some("30d"), None, Some("2026-02-01T00:00:00+01:00"));
        assert_eq!(w.since, t("2026-01-01T23:00:00Z"));
        // A `+` decoded as a space is still an offset.
        let w = window(None, Some("2026-02-01T00:00:00 01:00"), None);
        assert_eq!(w.since, t("2026-01-31T23:00:00Z"));
    }

    #[test]
    fn bad_windows_are_refused() {
        let code = |range, since, until| parse(range, since, until).unwrap_err().code();
        for range in ["1y", "0h", "-1h", "h", "1.5h", "99999999999999d"] {
            assert_eq!(code(Some(range), None, None), "invalid_range", "{range}");
        }
        assert_eq!(code(None, Some("yesterday"), None), "invalid_range");
        assert_eq!(
            code(None, Some("1969-12-31T00:00:00Z"), None),
            "invalid_range"
        );
        let (a, b) = (Some("2026-01-02T00:00:00Z"), Some("2026-01-01T00:00:00Z"));
        assert_eq!(code(None, a, b), "invalid_range", "since after until");
        assert_eq!(code(None, a, a), "invalid_range", "empty window");
        assert_eq!(code(Some("1h"), b, a), "invalid_range", "all three");
    }

    #[test]
    fn default_steps_follow_the_range() {
        let step = |range| Buckets::new(window(Some(range), None, None), None).unwrap();
        let steps: Vec<(i64, i64)> = ["1h", "24h", "7d", "30d"]
            .into_iter()
            .map(|r| (step(r).step_s, step(r).count()))
            .collect();
        // The window starts off a bucket boundary, so it touches one bucket more.
        assert_eq!(steps, [(60, 61), (900, 97), (3_600, 169), (21_600, 121)]);
    }

    #[test]
    fn buckets_are_aligned_to_the_epoch_and_capped() {
        let w = window(
            None,
            Some("2026-03-01T10:07:00Z"),
            Some("2026-03-01T11:00:00Z"),
        );
        let b = Buckets::new(w, Some("15m")).unwrap();
        assert_eq!(b.start_of(w.since), t("2026-03-01T10:00:00Z"));
        assert_eq!(b.count(), 4, "10:00, 10:15, 10:30, 10:45");
        assert_eq!(
            b.starts(),
            ["10:00", "10:15", "10:30", "10:45"].map(|hm| t(&format!("2026-03-01T{hm}:00Z")))
        );
        assert_eq!(Buckets::new(w, Some("900")).unwrap().step_s, 900);
        let day = window(Some("24h"), None, None);
        assert_eq!(
            Buckets::new(day, Some("60s")).unwrap_err(),
            WindowError::TooManyBuckets {
                buckets: 1441,
                step_s: 60
            }
        );
        for step in ["0", "0s", "1w", "fast", "-5m"] {
            assert_eq!(
                Buckets::new(day, Some(step)).unwrap_err().code(),
                "invalid_step",
                "{step}"
            );
        }
    }
}
