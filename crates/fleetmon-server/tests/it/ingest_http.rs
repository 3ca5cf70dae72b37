//! `POST /api/v1/ingest` end to end: tokens, framing, limits, rejections, duplicates.

use std::io::Write;

use chrono::{Duration, Utc};
use fleetmon_proto::ingest::IngestResponse;
use fleetmon_proto::ErrorBody;
use fleetmon_server::auth::tokens::{self, TokenKind};
use fleetmon_server::db::sql::query_scalar;
use fleetmon_server::db::{TenantContext, TenantDb};
use fleetmon_server::ingest::Limits;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::fixtures;
use crate::harness::{self, TestDb};

pub struct App {
    pub base: String,
    pub org: Uuid,
    pub ingest: String,
    pub read: String,
    pub tenant: TenantDb,
    _db: TestDb,
}

impl App {
    pub async fn start() -> Self {
        let db = TestDb::new().await;
        let tenant = db.tenant();
        let org = fixtures::create_org(&tenant, "ing").await;
        let mut tx = tenant.begin(TenantContext::org(org)).await.unwrap();
        let ingest = tokens::create(tx.conn(), org, TokenKind::Ingest, "agent", None)
            .await
            .unwrap();
        let read = tokens::create(tx.conn(), org, TokenKind::Read, "reader", None)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let limits = Limits {
            max_events: 100,
            max_body_bytes: 256 << 10,
            ..Limits::default()
        };
        let base = harness::spawn_app(tenant.clone(), limits, harness::local_auth()).await;
        Self {
            base,
            org,
            ingest: ingest.secret,
            read: read.secret,
            tenant,
            _db: db,
        }
    }

    pub fn post(&self, token: Option<&str>) -> reqwest::RequestBuilder {
        let request = reqwest::Client::new().post(format!("{}/api/v1/ingest", self.base));
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    pub async fn send(&self, events: &[Value]) -> IngestResponse {
        let response = self
            .post(Some(&self.ingest))
            .json(&json!({"events": events}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    pub async fn count(&self, table: &str) -> i64 {
        let mut tx = self
            .tenant
            .begin(TenantContext::org(self.org))
            .await
            .unwrap();
        query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(tx.conn())
            .await
            .unwrap()
    }
}

pub fn event(kind: &str, fields: Value) -> Value {
    let mut event = json!({"id": Uuid::new_v4(), "type": kind, "at": Utc::now().to_rfc3339()});
    event
        .as_object_mut()
        .unwrap()
        .extend(fields.as_object().unwrap().clone());
    event
}

async fn error_of(response: reqwest::Response, status: u16) -> String {
    assert_eq!(response.status(), status);
    response.json::<ErrorBody>().await.unwrap().error.code
}

#[tokio::test]
async fn a_resent_batch_is_stored_once_and_counted_as_duplicates() {
    let app = App::start().await;
    let batch = vec![
        event(
            "job.submitted",
            json!({"job_id": "j1", "job_type": "render"}),
        ),
        event("job.started", json!({"job_id": "j1", "worker_id": "w1"})),
        event(
            "machine.heartbeat",
            json!({"machine_id": "m1", "status": "ready"}),
        ),
        event(
            "metrics",
            json!({"machine_id": "m1", "samples": [{"name": "gpu_util", "value": 50.0}]}),
        ),
    ];
    let first = app.send(&batch).await;
    assert_eq!(
        (first.accepted, first.duplicates, first.rejected.len()),
        (4, 0, 0)
    );
    let again = app.send(&batch).await;
    assert_eq!((again.accepted, again.duplicates), (0, 4));
    assert_eq!(app.count("job_events").await, 2);
    assert_eq!(app.count("fleet_events").await, 2);
    assert_eq!(app.count("metric_samples").await, 1);
    assert_eq!(app.count("jobs").await, 1);

    // The same event twice in one batch is one event.
    let twice = event("job.completed", json!({"job_id": "j1", "worker_id": "w1"}));
    let response = app.send(&[twice.clone(), twice]).await;
    assert_eq!((response.accepted, response.duplicates), (1, 1));
}

#[tokio::test]
async fn tokens_are_required_and_must_be_valid_ingest_tokens() {
    let app = App::start().await;
    let body = json!({"events": [event("machine.heartbeat", json!({"machine_id": "m"}))]});
    assert_eq!(
        error_of(app.post(None).json(&body).send().await.unwrap(), 401).await,
        "missing_token"
    );
    let response = app
        .post(Some("not-a-token"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer error=\"invalid_token\""
    );
    assert_eq!(error_of(response, 401).await, "invalid_token");
    // Shaped like a token of this org, but never issued.
    let forged = format!("fmi_{}_{}", app.org.simple(), "A".repeat(32));
    assert_eq!(
        error_of(
            app.post(Some(&forged)).json(&body).send().await.unwrap(),
            401
        )
        .await,
        "invalid_token"
    );
    assert_eq!(
        error_of(
            app.post(Some(&app.read)).json(&body).send().await.unwrap(),
            403
        )
        .await,
        "wrong_token_kind"
    );

    let mut tx = app.tenant.begin(TenantContext::org(app.org)).await.unwrap();
    let listed = tokens::list(tx.conn()).await.unwrap();
    let ingest = listed.iter().find(|t| t.kind == "ingest").unwrap();
    assert!(tokens::revoke(tx.conn(), ingest.id).await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(
        error_of(
            app.post(Some(&app.ingest))
                .json(&body)
                .send()
                .await
                .unwrap(),
            401
        )
        .await,
        "revoked_token"
    );
    assert_eq!(
        app.count("fleet_events").await,
        0,
        "nothing was stored by refused requests"
    );
}

#[tokio::test]
async fn whole_request_problems_get_a_4xx_with_their_code() {
    let app = App::start().await;
    let post = || app.post(Some(&app.ingest));
    let raw = |body: Vec<u8>| {
        post()
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    assert_eq!(
        error_of(raw(b"{\"events\": [".to_vec()).await.unwrap(), 400).await,
        "malformed_json"
    );
    assert_eq!(
        error_of(
            raw(b"{\"events\": [\"\xff\"]}".to_vec()).await.unwrap(),
            400
        )
        .await,
        "invalid_utf8"
    );
    assert_eq!(
        error_of(raw(b"{\"events\": 3}".to_vec()).await.unwrap(), 400).await,
        "bad_batch"
    );
    assert_eq!(
        error_of(raw(b"[]".to_vec()).await.unwrap(), 400).await,
        "bad_batch"
    );
    let many: Vec<Value> = (0..101)
        .map(|i| event("machine.heartbeat", json!({"machine_id": format!("m{i}")})))
        .collect();
    assert_eq!(
        error_of(
            post().json(&json!({"events": many})).send().await.unwrap(),
            413
        )
        .await,
        "too_many_events"
    );
    let huge = vec![b' '; 300 << 10];
    assert_eq!(
        error_of(raw(huge).await.unwrap(), 413).await,
        "body_too_large"
    );
    let text = post()
        .header("content-type", "text/plain")
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(text, 415).await, "unsupported_media_type");
    let gz = post()
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body("nope")
        .send();
    assert_eq!(error_of(gz.await.unwrap(), 400).await, "bad_gzip");
    // A gzip bomb is stopped at the limit, not inflated into memory.
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(&vec![b' '; 50 << 20]).unwrap();
    let bomb = post()
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(encoder.finish().unwrap())
        .send();
    assert_eq!(error_of(bomb.await.unwrap(), 413).await, "body_too_large");
    assert_eq!(
        app.count("fleet_events").await + app.count("job_events").await,
        0
    );
}

#[tokio::test]
async fn bad_events_are_rejected_one_by_one_and_good_ones_kept() {
    let app = App::start().await;
    let now = Utc::now();
    let mut deep = json!(1);
    for _ in 0..20 {
        deep = json!([deep]);
    }
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"type": "machine.heartbeat", "at": now, "machine_id": "m"}),
            "missing_id",
        ),
        (
            json!({"id": "nope", "type": "machine.heartbeat", "at": now, "machine_id": "m"}),
            "bad_id",
        ),
        (
            json!({"id": 7, "type": "machine.heartbeat", "at": now, "machine_id": "m"}),
            "bad_id",
        ),
        (
            json!({"id": Uuid::new_v4(), "type": "machine.exploded", "at": now}),
            "unknown_type",
        ),
        (json!({"id": Uuid::new_v4(), "at": now}), "missing_type"),
        (
            json!({"id": Uuid::new_v4(), "type": "machine.heartbeat", "machine_id": "m"}),
            "missing_at",
        ),
        (
            json!({"id": Uuid::new_v4(), "type": "machine.heartbeat", "at": "yesterday", "machine_id": "m"}),
            "bad_at",
        ),
        (
            json!({"id": Uuid::new_v4(), "type": "machine.heartbeat", "at": now + Duration::hours(2), "machine_id": "m"}),
            "at_in_future",
        ),
        (
            json!({"id": Uuid::new_v4(), "type": "machine.heartbeat", "at": now - Duration::days(30), "machine_id": "m"}),
            "at_too_old",
        ),
        (
            json!({"id": Uuid::new_v4(), "type": "machine.heartbeat", "at": now, "machine_id": 5}),
            "bad_field",
        ),
        (
            json!({"id": Uuid::new_v4(), "type": "job.progress", "at": now, "job_id": "j", "progress": 150}),
            "bad_field",
        ),
        (
            json!({"id": Uuid::new_v4(), "type": "job.started", "at": now, "job_id": "j", "attempt": "two"}),
            "bad_field",
        ),
        (
            json!({"id": Uuid::new_v4(), "type": "job.started", "at": now, "job_id": "x".repeat(300)}),
            "field_too_long",
        ),
        (
            json!({"id": Uuid::new_v4(), "type": "job.submitted", "at": now, "job_id": "j", "payload": "x".repeat(70_000)}),
            "payload_too_large",
        ),
        (
            json!({"id": Uuid::new_v4(), "type": "job.submitted", "at": now, "job_id": "j", "payload": deep}),
            "too_deep",
        ),
        (json!("just a string"), "not_an_object"),
        (
            json!({"id": Uuid::new_v4(), "type": "machine.heartbeat", "at": now, "machine_id": "m\u{0}"}),
            "bad_field",
        ),
        (
            json!({"id": Uuid::new_v4(), "type": "job.submitted", "at": now, "job_id": "j", "payload": {"k": "a\u{0}b"}}),
            "bad_field",
        ),
        (
            json!({"id": Uuid::new_v4(), "type": "job.started", "at": now, "job_id": "j", "attempt": 3_000_000_000u64}),
            "bad_field",
        ),
        (
            json!({"id": Uuid::new_v4(), "type": "machine.heartbeat", "at": now, "machine_id": "m", "uptime_s": 9_300_000_000_000_000u64}),
            "bad_field",
        ),
        (
            json!({"id": Uuid::new_v4(), "type": "job.progress", "at": now, "job_id": "j", "progress": 5, "message": "x".repeat(5000)}),
            "field_too_long",
        ),
        (
            json!({"id": Uuid::new_v4(), "type": "metrics", "at": now, "machine_id": "m",
                "samples": [{"name": "n", "value": 1.0, "labels": {"a": "x".repeat(200), "b": "y".repeat(200), "c": "z".repeat(200), "d": "w".repeat(200), "e": "v".repeat(200)}}]}),
            "field_too_long",
        ),
        (
            json!({"id": Uuid::new_v4(), "type": "machine.heartbeat", "at": now, "machine_id": "m",
                "labels": (0..65).map(|i| (format!("k{i}"), json!("v"))).collect::<serde_json::Map<_, _>>()}),
            "bad_field",
        ),
    ];
    let good = |i: usize| {
        event(
            "machine.heartbeat",
            json!({"machine_id": format!("good-{i}")}),
        )
    };
    let mut events = Vec::new();
    for (i, (bad, _)) in cases.iter().enumerate() {
        events.push(good(i));
        events.push(bad.clone());
    }
    let response = app.send(&events).await;
    assert_eq!(response.accepted as usize, cases.len(), "{response:?}");
    for (i, (_, code)) in cases.iter().enumerate() {
        let rejection = response
            .rejected
            .iter()
            .find(|r| r.index as usize == 2 * i + 1);
        let rejection =
            rejection.unwrap_or_else(|| panic!("case {i} ({code}) was not rejected: {response:?}"));
        assert_eq!(rejection.code, *code, "case {i}: {}", rejection.message);
    }
    assert_eq!(response.rejected.len(), cases.len());
    assert_eq!(app.count("machines").await, cases.len() as i64);
}

#[tokio::test]
async fn ndjson_with_bad_lines_keeps_the_good_ones_and_gzip_works() {
    let app = App::start().await;
    let lines = [
        event("machine.heartbeat", json!({"machine_id": "a"})).to_string(),
        "{not json".to_string(),
        String::new(),
        event(
            "worker.heartbeat",
            json!({"worker_id": "w", "machine_id": "a", "status": "idle"}),
        )
        .to_string(),
        "[1,2]".to_string(),
    ];
    let body = lines.join("\n");
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(body.as_bytes()).unwrap();
    let response = app
        .post(Some(&app.ingest))
        .header("content-type", "application/x-ndjson")
        .header("content-encoding", "gzip")
        .body(encoder.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response: IngestResponse = response.json().await.unwrap();
    assert_eq!(response.accepted, 2);
    let codes: Vec<(u32, &str)> = response
        .rejected
        .iter()
        .map(|r| (r.index, r.code.as_str()))
        .collect();
    assert_eq!(codes, vec![(1, "malformed_json"), (3, "not_an_object")]);
    assert_eq!(app.count("workers").await, 1);
}
