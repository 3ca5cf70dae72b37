//! From request bytes to validated events: decompression, JSON or NDJSON framing, and the checks
//! each event must pass. Problems with the whole request are an [`IngestError`]; problems with
//! one event are a [`Rejection`] for that event alone, and the others go on.

use std::io::Read;
use std::time::Duration;

use chrono::{DateTime, Utc};
use fleetmon_proto::ingest::{Event, EventBody, Rejection, EVENT_TYPES};
use serde::Deserialize;
use serde_json::value::RawValue;
use uuid::Uuid;

use super::IngestError;

/// What an ingest request may contain. Every limit has its own error code.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Request body, after decompression (`body_too_large`).
    pub max_body_bytes: usize,
    /// Events in one request (`too_many_events`).
    pub max_events: usize,
    /// Identifiers: machine, worker, job, workflow, customer ids, names (`field_too_long`).
    pub max_field_len: usize,
    /// `payload`, `result` and `error`, as JSON text (`payload_too_large`).
    pub max_payload_bytes: usize,
    /// Nesting of arrays and objects in one event (`too_deep`).
    pub max_depth: usize,
    /// How far ahead of the server's clock `at` may be (`at_in_future`).
    pub max_clock_skew: Duration,
    /// How far behind it (`at_too_old`); history partitions exist this far back.
    pub max_age: Duration,
    /// Samples in one `metrics` event (`too_many_samples`).
    pub max_samples: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 8 << 20,
            max_events: 5_000,
            max_field_len: 256,
            max_payload_bytes: 64 << 10,
            max_depth: 16,
            max_clock_skew: Duration::from_secs(300),
            max_age: Duration::from_secs(6 * 24 * 3600),
            max_samples: 1_000,
        }
    }
}

/// How the body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `{"events": [ … ]}`
    Json,
    /// One event per line.
    Ndjson,
}

/// An event that passed every check, with its index in the request.
#[derive(Debug, Clone)]
pub struct Valid {
    pub index: u32,
    pub event: Event,
}

/// The outcome of decoding a request whose framing was sound.
#[derive(Debug, Default)]
pub struct Decoded {
    pub valid: Vec<Valid>,
    pub rejected: Vec<Rejection>,
}

/// Decompresses a gzip body without ever holding more than `limit` bytes of output.
pub fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, IngestError> {
    let mut out = Vec::new();
    let mut decoder = flate2::read::GzDecoder::new(body).take(limit as u64 + 1);
    decoder
        .read_to_end(&mut out)
        .map_err(|e| IngestError::BadGzip(e.to_string()))?;
    if out.len() > limit {
        return Err(IngestError::BodyTooLarge { limit });
    }
    Ok(out)
}

#[derive(Deserialize)]
struct JsonBatch<'a> {
    #[serde(borrow)]
    events: Vec<&'a RawValue>,
}

pub fn decode(
    body: &[u8],
    framing: Framing,
    limits: &Limits,
    now: DateTime<Utc>,
) -> Result<Decoded, IngestError> {
    let text = std::str::from_utf8(body).map_err(|e| IngestError::InvalidUtf8 {
        offset: e.valid_up_to(),
    })?;
    let mut decoded = Decoded::default();
    match framing {
        Framing::Json => {
            let batch: JsonBatch = serde_json::from_str(text).map_err(|e| {
                if e.is_data() {
                    IngestError::BadBatch(e.to_string())
                } else {
                    IngestError::MalformedJson(e.to_string())
                }
            })?;
            if batch.events.len() > limits.max_events {
                return Err(IngestError::TooManyEvents {
                    limit: limits.max_events,
                });
            }
            for (index, raw) in batch.events.into_iter().enumerate() {
                decoded.push(index as u32, check(raw.get(), limits, now));
            }
        }
        Framing::Ndjson => {
            let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            if lines.len() > limits.max_events {
                return Err(IngestError::TooManyEvents {
                    limit: limits.max_events,
                });
            }
            for (index, line) in lines.into_iter().enumerate() {
                decoded.push(index as u32, check(line, limits, now));
            }
        }
    }
    Ok(decoded)
}

impl Decoded {
    fn push(&mut self, index: u32, checked: Result<Event, (&'static str, String)>) {
        match checked {
            Ok(event) => self.valid.push(Valid { index, event }),
            Err((code, message)) => self.rejected.push(Rejection {
                index,
                code: code.to_string(),
                message,
            }),
        }
    }
}

/// The fields every event has, looked at before the typed parse so that each problem gets its
/// own code.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(rename = "type", borrow, default)]
    kind: Option<&'a RawValue>,
    #[serde(borrow, default)]
    at: Option<&'a RawValue>,
}

type Checked = Result<Event, (&'static str, String)>;

fn check(raw: &str, limits: &Limits, now: DateTime<Utc>) -> Checked {
    let depth = json_depth(raw);
    if depth > limits.max_depth {
        return Err((
            "too_deep",
            format!(
                "the event nests {depth} levels deep; the limit is {}",
                limits.max_depth
            ),
        ));
    }
    // serde would read a JSON array into a struct; an event must be an object.
    if !raw.trim_start().starts_with('{') {
        return Err((
            "not_an_object",
            "an event must be a JSON object".to_string(),
        ));
    }
    let envelope: Envelope = serde_json::from_str(raw).map_err(|e| {
        if e.is_data() {
            (
                "not_an_object",
                "an event must be a JSON object".to_string(),
            )
        } else {
            (
                "malformed_json",
                format!("this event is not valid JSON: {e}"),
            )
        }
    })?;
    let id = string_field(envelope.id, "id", "missing_id", "bad_id")?;
    Uuid::try_parse(&id).map_err(|_| ("bad_id", format!("`id` must be a UUID, got {id:?}")))?;
    let kind = string_field(envelope.kind, "type", "missing_type", "unknown_type")?;
    if !EVENT_TYPES.contains(&kind.as_str()) {
        return Err((
            "unknown_type",
            format!(
                "unknown event type {kind:?}; known types: {}",
                EVENT_TYPES.join(", ")
            ),
        ));
    }
    let at_text = string_field(envelope.at, "at", "missing_at", "bad_at")?;
    let at = DateTime::parse_from_rfc3339(&at_text)
        .map_err(|e| {
            (
                "bad_at",
                format!("`at` must be an RFC 3339 time ({e}), got {at_text:?}"),
            )
        })?
        .with_timezone(&Utc);
    check_time(at, "at", limits, now)?;

    // Text columns and jsonb cannot hold NUL characters; JSON can only carry them escaped.
    if raw.contains("\\u0000") {
        return Err((
            "bad_field",
            "strings must not contain NUL characters (\\u0000)".to_string(),
        ));
    }
    let mut event: Event =
        serde_json::from_str(raw).map_err(|e| ("bad_field", format!("{kind}: {e}")))?;
    check_body(&event.body, limits, now)?;
    truncate_times(&mut event);
    Ok(event)
}

fn string_field(
    raw: Option<&RawValue>,
    name: &str,
    missing: &'static str,
    bad: &'static str,
) -> Result<String, (&'static str, String)> {
    let raw = raw.ok_or_else(|| (missing, format!("`{name}` is required")))?;
    serde_json::from_str::<String>(raw.get())
        .map_err(|_| (bad, format!("`{name}` must be a string, got {}", raw.get())))
}

fn check_time(
    at: DateTime<Utc>,
    name: &str,
    limits: &Limits,
    now: DateTime<Utc>,
) -> Result<(), (&'static str, String)> {
    let skew = chrono::Duration::from_std(limits.max_clock_skew).unwrap_or(chrono::Duration::MAX);
    let age = chrono::Duration::from_std(limits.max_age).unwrap_or(chrono::Duration::MAX);
    if at > now + skew {
        return Err((
            "at_in_future",
            format!(
                "`{name}` {at} is more than {}s ahead of the server's clock",
                limits.max_clock_skew.as_secs()
            ),
        ));
    }
    if at < now - age {
        return Err((
            "at_too_old",
            format!(
                "`{name}` {at} is older than the {}-day ingest window",
                limits.max_age.as_secs() / 86_400
            ),
        ));
    }
    Ok(())
}

/// Longest free text (messages, reasons, host details, GPU names), in bytes.
const MAX_TEXT_LEN: usize = 4096;
/// Most entries in a map or list of an event (labels, services, models, GPUs).
const MAX_ENTRIES: usize = 64;
/// Largest label set of one metric sample, as JSON: it is part of a unique index key.
const MAX_SAMPLE_LABELS_BYTES: usize = 1024;
/// Counts and durations beyond a century are mistakes, and would overflow time arithmetic.
const MAX_SECONDS: u64 = 100 * 365 * 24 * 3600;

type Problem = (&'static str, String);

/// The checks of one event's fields against the limits.
struct Checker<'a> {
    limits: &'a Limits,
}

impl Checker<'_> {
    /// An identifier: required to be non-empty, at most `max_field_len`.
    fn id(&self, name: &str, value: &str) -> Result<(), Problem> {
        if value.is_empty() {
            return Err(("bad_field", format!("`{name}` must not be empty")));
        }
        self.len(name, value, self.limits.max_field_len)
    }

    fn id_opt(&self, name: &str, value: &Option<String>) -> Result<(), Problem> {
        value.as_deref().map_or(Ok(()), |v| self.id(name, v))
    }

    fn text(&self, name: &str, value: &Option<String>) -> Result<(), Problem> {
        value
            .as_deref()
            .map_or(Ok(()), |v| self.len(name, v, MAX_TEXT_LEN))
    }

    fn len(&self, name: &str, value: &str, limit: usize) -> Result<(), Problem> {
        if value.len() > limit {
            return Err((
                "field_too_long",
                format!("`{name}` is {} bytes; the limit is {limit}", value.len()),
            ));
        }
        Ok(())
    }

    fn entries(&self, name: &str, count: usize) -> Result<(), Problem> {
        if count > MAX_ENTRIES {
            return Err((
                "bad_field",
                format!("`{name}` has {count} entries; the limit is {MAX_ENTRIES}"),
            ));
        }
        Ok(())
    }

    fn labels<'v>(
        &self,
        name: &str,
        labels: impl ExactSizeIterator<Item = (&'v String, &'v String)>,
    ) -> Result<(), Problem> {
        self.entries(name, labels.len())?;
        for (key, value) in labels {
            self.id(name, key)?;
            self.len(name, value, self.limits.max_field_len)?;
        }
        Ok(())
    }

    fn json(&self, name: &str, value: &Option<serde_json::Value>) -> Result<(), Problem> {
        let Some(value) = value else { return Ok(()) };
        self.json_size(name, value.to_string().len())
    }

    fn json_size(&self, name: &str, size: usize) -> Result<(), Problem> {
        if size > self.limits.max_payload_bytes {
            return Err((
                "payload_too_large",
                format!(
                    "`{name}` is {size} bytes of JSON; the limit is {}",
                    self.limits.max_payload_bytes
                ),
            ));
        }
        Ok(())
    }

    fn seconds(&self, name: &str, value: Option<u64>, per_second: u64) -> Result<(), Problem> {
        match value {
            Some(v) if v / per_second > MAX_SECONDS => {
                Err(("bad_field", format!("`{name}` {v} is out of range")))
            }
            _ => Ok(()),
        }
    }

    fn job(&self, job: &fleetmon_proto::ingest::JobRef) -> Result<(), Problem> {
        self.id("job_id", &job.job_id)?;
        self.id_opt("worker_id", &job.worker_id)?;
        self.id_opt("machine_id", &job.machine_id)?;
        if job.attempt == 0 || job.attempt > i32::MAX as u32 {
            return Err((
                "bad_field",
                format!("`attempt` must be between 1 and {}", i32::MAX),
            ));
        }
        Ok(())
    }
}

/// Semantic checks the types cannot express: lengths, sizes, ranges.
fn check_body(body: &EventBody, limits: &Limits, now: DateTime<Utc>) -> Result<(), Problem> {
    let c = Checker { limits };
    match body {
        EventBody::MachineHeartbeat(e) => {
            c.id("machine_id", &e.machine_id)?;
            if let Some(host) = &e.host {
                c.id_opt("host.hostname", &host.hostname)?;
                c.text("host.os", &host.os)?;
                c.text("host.ip", &host.ip)?;
            }
            if let Some(gpus) = &e.gpus {
                c.entries("gpus", gpus.len())?;
                for gpu in gpus {
                    c.text("gpus[].name", &gpu.name)?;
                }
            }
            if let Some(labels) = &e.labels {
                c.labels("labels", labels.iter())?;
            }
            c.seconds("uptime_s", e.uptime_s, 1)?;
        }
        EventBody::MachineStatus(e) => {
            c.id("machine_id", &e.machine_id)?;
            c.text("message", &e.message)?;
        }
        EventBody::MachineShutdown(e) => {
            c.id("machine_id", &e.machine_id)?;
            c.text("reason", &e.reason)?;
        }
        EventBody::WorkerHeartbeat(e) => {
            c.id("worker_id", &e.worker_id)?;
            c.id("machine_id", &e.machine_id)?;
            c.id_opt("current_job_id", &e.current_job_id)?;
            c.id_opt("version", &e.version)?;
            if let Some(caps) = &e.capabilities {
                c.entries("capabilities.services", caps.services.len())?;
                c.entries("capabilities.models", caps.models.len())?;
                for name in caps.services.iter().chain(&caps.models) {
                    c.id("capabilities", name)?;
                }
            }
            if let Some(services) = &e.services {
                c.entries("services", services.len())?;
                for name in services.keys() {
                    c.id("services", name)?;
                }
            }
        }
        EventBody::WorkerStatus(e) => {
            c.id("worker_id", &e.worker_id)?;
            c.id_opt("machine_id", &e.machine_id)?;
            c.text("message", &e.message)?;
        }
        EventBody::JobSubmitted(e) => {
            c.job(&e.job)?;
            c.id_opt("workflow_id", &e.workflow_id)?;
            c.id_opt("name", &e.name)?;
            c.id_opt("job_type", &e.job_type)?;
            c.id_opt("customer_id", &e.customer_id)?;
            if e.max_retries.is_some_and(|n| n > i32::MAX as u32) {
                return Err((
                    "bad_field",
                    format!("`max_retries` must be at most {}", i32::MAX),
                ));
            }
            c.json("payload", &e.payload)?;
        }
        EventBody::JobQueued(e)
        | EventBody::JobAssigned(e)
        | EventBody::JobStarted(e)
        | EventBody::JobRetried(e) => c.job(e)?,
        EventBody::JobProgress(e) => {
            c.job(&e.job)?;
            c.text("message", &e.message)?;
            if !(0.0..=100.0).contains(&e.progress) {
                return Err((
                    "bad_field",
                    format!("`progress` must be between 0 and 100, got {}", e.progress),
                ));
            }
        }
        EventBody::JobCompleted(e) => {
            c.job(&e.job)?;
            c.json("result", &e.result)?;
            c.seconds("duration_ms", e.duration_ms, 1000)?;
        }
        EventBody::JobFailed(e) => {
            c.job(&e.job)?;
            c.json_size(
                "error",
                serde_json::to_string(&e.error).map_or(0, |s| s.len()),
            )?;
        }
        EventBody::JobCancelled(e) | EventBody::JobTimeout(e) => {
            c.job(&e.job)?;
            c.text("reason", &e.reason)?;
        }
        EventBody::Metrics(e) => {
            c.id("machine_id", &e.machine_id)?;
            c.id_opt("worker_id", &e.worker_id)?;
            if e.samples.len() > limits.max_samples {
                return Err((
                    "too_many_samples",
                    format!(
                        "{} samples; the limit is {}",
                        e.samples.len(),
                        limits.max_samples
                    ),
                ));
            }
            for sample in &e.samples {
                c.id("samples[].name", &sample.name)?;
                c.labels("samples[].labels", sample.labels.iter())?;
                let size = serde_json::to_string(&sample.labels).map_or(0, |s| s.len());
                if size > MAX_SAMPLE_LABELS_BYTES {
                    return Err(("field_too_long", format!("sample {:?} has {size} bytes of labels; the limit is {MAX_SAMPLE_LABELS_BYTES}", sample.name)));
                }
                if !sample.value.is_finite() {
                    return Err((
                        "bad_field",
                        format!("sample {:?} has a non-finite value", sample.name),
                    ));
                }
                if let Some(at) = sample.at {
                    check_time(at, "samples[].at", limits, now)?;
                }
            }
        }
    }
    Ok(())
}

/// PostgreSQL keeps microseconds; so must every comparison of times, or the order of two events
/// less than a microsecond apart would depend on whether they were compared before or after
/// being stored.
fn to_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::Timelike;
    at.with_nanosecond(at.nanosecond() / 1000 * 1000)
        .unwrap_or(at)
}

/// Truncates every time in `event` to microseconds.
fn truncate_times(event: &mut Event) {
    event.at = to_micros(event.at);
    if let EventBody::Metrics(m) = &mut event.body {
        for sample in &mut m.samples {
            sample.at = sample.at.map(to_micros);
        }
    }
}

/// The deepest nesting of arrays and objects in a JSON text, without parsing it.
fn json_depth(text: &str) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for byte in text.bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// JSON values of any shape, to throw at the decoder.
    fn any_json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(|f| serde_json::json!(f)),
            any::<i64>().prop_map(serde_json::Value::from),
            "[a-z._]{0,12}".prop_map(serde_json::Value::from),
            prop::sample::select(EVENT_TYPES).prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(6, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
                prop::collection::btree_map(
                    prop::sample::select(vec![
                        "id",
                        "type",
                        "at",
                        "job_id",
                        "machine_id",
                        "worker_id",
                        "status",
                        "attempt",
                        "progress",
                        "samples",
                        "gpus",
                        "payload",
                        "x"
                    ]),
                    inner,
                    0..8
                )
                .prop_map(|m| serde_json::Value::Object(
                    m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
                )),
            ]
        })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512), ndjson in any::<bool>()) {
            let framing = if ndjson { Framing::Ndjson } else { Framing::Json };
            let _ = decode(&body, framing, &Limits::default(), Utc::now());
        }

        #[test]
        fn arbitrary_json_events_never_panic(events in prop::collection::vec(any_json(), 0..8)) {
            let body = serde_json::json!({"events": events}).to_string();
            let decoded = decode(body.as_bytes(), Framing::Json, &Limits::default(), Utc::now()).unwrap();
            prop_assert_eq!(decoded.valid.len() + decoded.rejected.len(), events.len());
        }
    }

    #[test]
    fn depth_ignores_brackets_inside_strings() {
        assert_eq!(json_depth(r#"{"a":[1,{"b":"[[[{{"}]}"#), 3);
        assert_eq!(json_depth(r#"{"a":"\"[["}"#), 1);
        assert_eq!(json_depth("3"), 0);
    }
}
