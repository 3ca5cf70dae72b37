//! Jobs as users read them, end to end: the listing's filters, search and cursor pages, one job
//! with its timeline, attempts and error chain, payloads withheld from viewers when the org says
//! so, removing an offline machine, and another org's ids staying invisible. Fixtures go in
//! through the real ingest endpoint.

use chrono::{DateTime, Duration, DurationRound, Utc};
use fleetmon_server::auth::tokens::{self, TokenKind};
use fleetmon_server::db::sql::query;
use fleetmon_server::db::TenantContext;
use fleetmon_server::query::jobs::SEARCH_SCAN_ROWS;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::fleet_api::slug;
use crate::ingest_http::{event, App};
use crate::signin::{account, bearer_get, error_code, Browser, PASSWORD};

/// A whole second an hour ago: the fixtures' time zero.
fn t0() -> DateTime<Utc> {
    (Utc::now() - Duration::hours(1))
        .duration_trunc(Duration::seconds(1))
        .unwrap()
}

fn at_ms(t0: DateTime<Utc>, ms: i64) -> String {
    (t0 + Duration::milliseconds(ms)).to_rfc3339()
}

/// A job event `ms` milliseconds after `t0`.
fn job(kind: &str, t0: DateTime<Utc>, ms: i64, fields: Value) -> Value {
    let mut e = event(kind, fields);
    e["at"] = json!(at_ms(t0, ms));
    e
}

async fn send(app: &App, events: &[Value]) {
    let response = app.send(events).await;
    assert!(response.rejected.is_empty(), "{:?}", response.rejected);
}

fn ids(page: &Value) -> Vec<String> {
    page["jobs"]
        .as_array()
        .unwrap_or_else(|| panic!("not a page: {page}"))
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_string())
        .collect()
}

async fn get(app: &App, token: &str, path: &str) -> reqwest::Response {
    bearer_get(
        format!("{}/api/v1/orgs/{}{path}", app.base, slug(app).await),
        token.to_string(),
    )
    .await
}

async fn list(app: &App, query: &str) -> Value {
    let response = get(app, &app.read, &format!("/jobs{query}")).await;
    assert_eq!(response.status(), 200, "{query}");
    response.json().await.unwrap()
}

async fn list_ids(app: &App, query: &str) -> Vec<String> {
    ids(&list(app, query).await)
}

/// Nine jobs, j1 … j9, one a second from `t0` (j8 and j9 at the same instant), each submitted
/// and taken to the state its comment says.
async fn nine_jobs(app: &App, t0: DateTime<Utc>) {
    // (id, second, name, type, workflow, customer, worker, machine)
    let jobs = [
        ("j1", 1, "Render frame 1", "render", "wf1", "c1", "w1", "m1"),
        (
            "j2",
            2,
            "transcode-clip_2",
            "transcode",
            "wf1",
            "c2",
            "w2",
            "m1",
        ),
        ("j3", 3, "render frame 3", "render", "wf2", "c1", "w1", "m2"),
        ("j4", 4, "Train clipA2", "train", "wf2", "c2", "w3", "m2"),
        ("j5", 5, "render frame 5", "render", "wf1", "c1", "", ""),
        ("j6", 6, "embed batch", "embed", "wf3", "c3", "w2", "m1"),
        ("j7", 7, "frame 7", "render", "wf3", "c3", "w1", "m1"),
        ("j8", 8, "infer a", "infer", "wf4", "c2", "w3", "m2"),
        ("j9", 8, "infer b", "infer", "wf4", "c2", "w3", "m2"),
    ];
    let mut events = Vec::new();
    for (id, second, name, kind, workflow, customer, worker, machine) in jobs {
        let ms = second * 1000;
        events.push(job(
            "job.submitted",
            t0,
            ms,
            json!({"job_id": id, "name": name, "job_type": kind, "workflow_id": workflow,
                   "customer_id": customer, "payload": {"n": second}}),
        ));
        if worker.is_empty() {
            events.push(job("job.queued", t0, ms + 100, json!({"job_id": id})));
            continue;
        }
        let ran = json!({"job_id": id, "worker_id": worker, "machine_id": machine});
        events.push(job("job.started", t0, ms + 100, ran.clone()));
        let mut end = ran.clone();
        let kind = match id {
            "j1" | "j8" | "j9" => "job.completed",
            "j2" => {
                end["error"] =
                    json!({"type": "OOMError", "message": "CUDA out of memory: 100% used"});
                "job.failed"
            }
            "j3" => {
                end["reason"] = json!("deadline exceeded");
                "job.timeout"
            }
            "j4" => continue,
            "j6" => {
                end["error"] = json!({"type": "ValueError", "reason": "bad input",
                                      "message": "shape mismatch: 1000 rows"});
                "job.failed"
            }
            "j7" => "job.cancelled",
            _ => unreachable!(),
        };
        events.push(job(kind, t0, ms + 500, end));
    }
    send(app, &events).await;
}

async fn started() -> (App, DateTime<Utc>) {
    let app = App::start().await;
    let t0 = t0();
    nine_jobs(&app, t0).await;
    (app, t0)
}

#[tokio::test]
async fn each_filter_alone_and_combined() {
    let (app, t0) = started().await;
    let all = list(&app, "").await;
    assert_eq!(
        ids(&all),
        ["j9", "j8", "j7", "j6", "j5", "j4", "j3", "j2", "j1"],
        "newest first; j8 and j9 share a time, so by id"
    );
    assert!(all["next_cursor"].is_null());
    let j2 = &all["jobs"][7];
    assert_eq!(
        (
            &j2["status"],
            &j2["worker_id"],
            &j2["machine_id"],
            &j2["error"]["type"]
        ),
        (
            &json!("failed"),
            &json!("w2"),
            &json!("m1"),
            &json!("OOMError")
        )
    );
    assert!(j2.get("payload").is_none(), "listings leave payloads out");

    let since = at_ms(t0, 5000).replace('+', "%2B");
    let until = at_ms(t0, 3000).replace('+', "%2B");
    for (query, expected) in [
        ("?status=completed", vec!["j9", "j8", "j1"]),
        ("?status=failed,timeout", vec!["j6", "j3", "j2"]),
        ("?status=failed&status=timeout", vec!["j6", "j3", "j2"]),
        ("?status=queued", vec!["j5"]),
        ("?status=in_progress", vec!["j4"]),
        ("?status=cancelled", vec!["j7"]),
        ("?status=pending", vec![]),
        ("?job_type=render", vec!["j7", "j5", "j3", "j1"]),
        ("?machine=m1", vec!["j7", "j6", "j2", "j1"]),
        ("?worker=w1", vec!["j7", "j3", "j1"]),
        ("?workflow=wf2", vec!["j4", "j3"]),
        ("?customer=c1", vec!["j5", "j3", "j1"]),
        (
            format!("?since={since}").as_str(),
            vec!["j9", "j8", "j7", "j6", "j5"],
        ),
        (format!("?until={until}").as_str(), vec!["j2", "j1"]),
        (
            format!("?since={until}&until={since}").as_str(),
            vec!["j4", "j3"],
        ),
        // Empty values are no filter at all.
        (
            "?status=&job_type=",
            vec!["j9", "j8", "j7", "j6", "j5", "j4", "j3", "j2", "j1"],
        ),
        // Combined filters must all hold.
        ("?status=completed&machine=m2", vec!["j9", "j8"]),
        (
            "?job_type=render&customer=c1&status=queued,timeout",
            vec!["j5", "j3"],
        ),
        ("?worker=w2&status=failed&workflow=wf3", vec!["j6"]),
        (
            format!("?job_type=render&since={until}").as_str(),
            vec!["j7", "j5", "j3"],
        ),
        ("?machine=m1&worker=w3", vec![]),
    ] {
        assert_eq!(list_ids(&app, query).await, expected, "{query}");
    }
}

#[tokio::test]
async fn search_covers_name_type_and_error_case_insensitively_and_literally() {
    let (app, _) = started().await;
    for (q, expected) in [
        ("frame", vec!["j7", "j5", "j3", "j1"]),
        ("FRAME", vec!["j7", "j5", "j3", "j1"]),
        ("infer", vec!["j9", "j8"]),
        ("oomerror", vec!["j2"]),
        ("Out%20Of%20Memory", vec!["j2"]),
        ("shape%20mismatch", vec!["j6"]),
        ("bad%20input", vec!["j6"]),
        ("deadline", vec!["j3"]),
        // `%` and `_` are characters, not wildcards: j6 has "1000", j4 "clipA2".
        ("100%25", vec!["j2"]),
        ("clip_2", vec!["j2"]),
        ("no-such-text", vec![]),
    ] {
        assert_eq!(list_ids(&app, &format!("?q={q}")).await, expected, "q={q}");
    }
    assert_eq!(list_ids(&app, "?q=frame&status=completed").await, ["j1"]);
    assert_eq!(list_ids(&app, "?q=render&machine=m2").await, ["j3"]);
}

#[tokio::test]
async fn pages_neither_repeat_nor_skip_while_jobs_arrive() {
    let (app, t0) = started().await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let query = match &cursor {
            Some(c) => format!("?limit=3&cursor={c}"),
            None => "?limit=3".to_string(),
        };
        let page = list(&app, &query).await;
        seen.extend(ids(&page));
        pages += 1;
        // Between pages: a newer job, an older one (sent late) and a new event for a listed job.
        let n = pages;
        send(
            &app,
            &[
                job(
                    "job.submitted",
                    t0,
                    60_000 + n,
                    json!({"job_id": format!("new{n}")}),
                ),
                job(
                    "job.completed",
                    t0,
                    9_000 + n,
                    json!({"job_id": "j4", "worker_id": "w3"}),
                ),
            ],
        )
        .await;
        if pages == 1 {
            send(
                &app,
                &[job("job.submitted", t0, 500, json!({"job_id": "j0"}))],
            )
            .await;
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(
        seen,
        ["j9", "j8", "j7", "j6", "j5", "j4", "j3", "j2", "j1", "j0"],
        "every job once, in order; the late older job j0 on the last page"
    );
    assert_eq!(pages, 4);
    // Jobs that arrived meanwhile are on a new first page.
    assert_eq!(list_ids(&app, "?limit=3").await, ["new4", "new3", "new2"]);

    // Pages of one cross the tie between j9 and j8 without loss.
    let mut one_by_one = Vec::new();
    let mut page = list(&app, "?limit=1&status=completed").await;
    loop {
        one_by_one.extend(ids(&page));
        let Some(next) = page["next_cursor"].as_str() else {
            break;
        };
        page = list(&app, &format!("?limit=1&status=completed&cursor={next}")).await;
    }
    assert_eq!(one_by_one, ["j9", "j8", "j4", "j1"]);
}

#[tokio::test]
async fn a_search_stops_after_its_scan_and_the_cursor_goes_on() {
    let app = App::start().await;
    let t0 = t0();
    // One match, older than SEARCH_SCAN_ROWS others (written straight to the table for speed).
    send(
        &app,
        &[job(
            "job.submitted",
            t0,
            0,
            json!({"job_id": "needle", "name": "a rare needle"}),
        )],
    )
    .await;
    let mut tx = app.tenant.begin(TenantContext::org(app.org)).await.unwrap();
    query(
        "INSERT INTO jobs (org_id, id, name, status, created_at, state_rank, state_at, state_event_id)
         SELECT $1, 'hay' || lpad(n::text, 6, '0'), 'hay', 'completed',
                $2::timestamptz + n * interval '1 ms', 4, now(), gen_random_uuid()
         FROM generate_series(1, $3) n",
    )
    .bind(app.org)
    .bind(t0 + Duration::seconds(1))
    .bind(SEARCH_SCAN_ROWS)
    .execute(tx.conn())
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let first = list(&app, "?q=needle").await;
    assert_eq!(ids(&first), Vec::<String>::new());
    assert_eq!(
        time(&first["search_stopped_at"]),
        t0 + Duration::seconds(1) + Duration::milliseconds(1),
        "the oldest row examined: hay000001"
    );
    let next = first["next_cursor"]
        .as_str()
        .expect("the scan stopped before the end: there is more to search");
    let second = list(&app, &format!("?q=needle&cursor={next}")).await;
    assert_eq!(ids(&second), ["needle"]);
    assert!(second["next_cursor"].is_null() && second["search_stopped_at"].is_null());
    // A common term fills its page from the newest rows.
    let hay = list(&app, "?q=HAY&limit=2").await;
    let newest = SEARCH_SCAN_ROWS;
    assert_eq!(
        ids(&hay),
        [format!("hay{newest:06}"), format!("hay{:06}", newest - 1)]
    );
    assert!(hay["search_stopped_at"].is_null());
}

#[tokio::test]
async fn bad_parameters_get_their_own_codes() {
    let app = App::start().await;
    for (query, code) in [
        ("?cursor=garbage", "invalid_cursor"),
        ("?cursor=WzEsMiwzXQ", "invalid_cursor"),
        ("?status=failed,done", "invalid_status"),
        ("?since=yesterday", "invalid_time"),
        ("?until=2025-01-01T00:00:00+00:00", "invalid_time"),
        (
            "?since=2025-01-02T00:00:00Z&until=2025-01-01T00:00:00Z",
            "invalid_time_range",
        ),
        ("?limit=0", "invalid_limit"),
        ("?limit=501", "invalid_limit"),
        ("?limit=ten", "invalid_limit"),
        ("?stauts=failed", "unknown_parameter"),
        ("?job_type=a&job_type=b", "duplicate_parameter"),
        (format!("?q={}", "x".repeat(257)).as_str(), "invalid_search"),
    ] {
        let response = get(&app, &app.read, &format!("/jobs{query}")).await;
        assert_eq!(
            error_code(response).await,
            (StatusCode::BAD_REQUEST, code.to_string()),
            "{query}"
        );
    }
    assert_eq!(
        list_ids(&app, "?limit=500&since=2025-01-01T00:00:00Z")
            .await
            .len(),
        0
    );
}

fn time(value: &Value) -> DateTime<Utc> {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a time: {value}"))
        .parse()
        .unwrap()
}

/// r1: attempt 1 runs on w1/m1 and fails with a cause, attempt 2 runs on w2/m2 and completes.
/// r2: attempt 1 times out, attempt 2 fails for good. Events arrive out of order.
async fn retried_jobs(app: &App, t0: DateTime<Utc>) {
    let a1 = json!({"job_id": "r1", "worker_id": "w1", "machine_id": "m1"});
    let a2 = json!({"job_id": "r1", "attempt": 2, "worker_id": "w2", "machine_id": "m2"});
    let with = |base: &Value, extra: Value| {
        let mut v = base.clone();
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    };
    let cause = json!({"type": "RuntimeError", "message": "allocator failed"});
    let late = [
        job(
            "job.completed",
            t0,
            20_000,
            with(&a2, json!({"result": {"frames": 10}, "duration_ms": 6500})),
        ),
        job("job.started", t0, 13_000, a2.clone()),
        job(
            "job.failed",
            t0,
            10_000,
            with(
                &a1,
                json!({"error": {"type": "OOMError", "reason": "oom", "message": "CUDA out of memory",
                                 "cause": cause}, "will_retry": true}),
            ),
        ),
    ];
    let early = [
        job(
            "job.submitted",
            t0,
            0,
            json!({"job_id": "r1", "name": "retry me", "job_type": "render", "max_retries": 2,
                   "payload": {"input": "s3://bucket/r1"}}),
        ),
        job(
            "job.retried",
            t0,
            11_000,
            json!({"job_id": "r1", "attempt": 2}),
        ),
        job("job.queued", t0, 1_000, json!({"job_id": "r1"})),
        job("job.assigned", t0, 2_000, a1.clone()),
        job("job.started", t0, 3_000, a1.clone()),
        job("job.assigned", t0, 12_000, a2.clone()),
    ];
    let r2 = json!({"job_id": "r2", "worker_id": "w1", "machine_id": "m1"});
    let r2b = json!({"job_id": "r2", "attempt": 2, "worker_id": "w1", "machine_id": "m1"});
    let other = [
        job(
            "job.failed",
            t0,
            40_000,
            with(
                &r2b,
                json!({"error": {"type": "ValueError", "message": "bad"}}),
            ),
        ),
        job(
            "job.submitted",
            t0,
            30_000,
            json!({"job_id": "r2", "job_type": "ocr"}),
        ),
        job("job.started", t0, 31_000, r2.clone()),
        job(
            "job.timeout",
            t0,
            35_000,
            with(&r2, json!({"reason": "deadline"})),
        ),
        job("job.started", t0, 36_000, r2b.clone()),
    ];
    send(app, &late).await;
    send(app, &other).await;
    send(app, &early).await;
    let now = Utc::now().to_rfc3339();
    let mut heartbeats = vec![
        event(
            "machine.heartbeat",
            json!({"machine_id": "m2", "status": "ready"}),
        ),
        event(
            "worker.heartbeat",
            json!({"worker_id": "w2", "machine_id": "m2", "status": "idle"}),
        ),
    ];
    for e in &mut heartbeats {
        e["at"] = json!(now);
    }
    send(app, &heartbeats).await;
}

#[tokio::test]
async fn a_job_shows_its_timeline_attempts_and_error_chain() {
    let app = App::start().await;
    let t0 = t0();
    retried_jobs(&app, t0).await;
    let response = get(&app, &app.read, "/jobs/r1").await;
    assert_eq!(response.status(), 200);
    let detail: Value = response.json().await.unwrap();

    let job = &detail["job"];
    assert_eq!(
        (
            &job["status"],
            &job["attempt"],
            &job["worker_id"],
            &job["machine_id"]
        ),
        (&json!("completed"), &json!(2), &json!("w2"), &json!("m2"))
    );
    assert_eq!(job["result"], json!({"frames": 10}));
    assert_eq!(job["payload"], json!({"input": "s3://bucket/r1"}));
    assert_eq!(job["payload_hidden"], false);
    assert_eq!(
        (&job["error"], &job["duration_ms"]),
        (&Value::Null, &json!(6500))
    );
    assert_eq!(time(&job["created_at"]), t0);
    assert_eq!(detail["worker"]["id"], "w2");
    assert_eq!(detail["worker"]["liveness"], "online");
    assert_eq!(detail["machine"]["id"], "m2");

    let timeline = detail["timeline"].as_array().unwrap();
    let steps: Vec<(String, i64, Value, i64)> = timeline
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_string(),
                e["attempt"].as_i64().unwrap(),
                e["worker_id"].clone(),
                (time(&e["at"]) - t0).num_milliseconds(),
            )
        })
        .collect();
    let step =
        |kind: &str, attempt: i64, worker: Value, ms: i64| (kind.to_string(), attempt, worker, ms);
    assert_eq!(
        steps,
        [
            step("job.submitted", 1, Value::Null, 0),
            step("job.queued", 1, Value::Null, 1_000),
            step("job.assigned", 1, json!("w1"), 2_000),
            step("job.started", 1, json!("w1"), 3_000),
            step("job.failed", 1, json!("w1"), 10_000),
            step("job.retried", 2, Value::Null, 11_000),
            step("job.assigned", 2, json!("w2"), 12_000),
            step("job.started", 2, json!("w2"), 13_000),
            step("job.completed", 2, json!("w2"), 20_000),
        ]
    );
    assert_eq!(timeline[4]["machine_id"], "m1");
    assert_eq!(
        timeline[4]["data"]["error"]["cause"]["message"],
        "allocator failed"
    );
    assert_eq!(timeline[0]["data"]["payload"]["input"], "s3://bucket/r1");

    let t = |ms: i64| {
        json!((t0 + Duration::milliseconds(ms)).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
    };
    let cause = json!({"type": "RuntimeError", "message": "allocator failed"});
    assert_eq!(
        detail["attempts"],
        json!([
            {"attempt": 1, "status": "failed", "worker_id": "w1", "machine_id": "m1",
             "queued_at": t(1_000), "started_at": t(3_000), "finished_at": t(10_000),
             "duration_ms": 7_000,
             "error": {"type": "OOMError", "reason": "oom", "message": "CUDA out of memory",
                       "cause": cause, "will_retry": true}},
            {"attempt": 2, "status": "completed", "worker_id": "w2", "machine_id": "m2",
             "queued_at": t(11_000), "started_at": t(13_000), "finished_at": t(20_000),
             "duration_ms": 6_500, "error": null},
        ])
    );
    assert_eq!(
        detail["error_chain"],
        json!([{"attempt": 1, "status": "failed", "at": t(10_000), "worker_id": "w1",
                "machine_id": "m1", "type": "OOMError", "reason": "oom",
                "message": "CUDA out of memory", "cause": cause, "will_retry": true}])
    );

    // r2: a timeout, then a failure for good; the chain has both, oldest first.
    let r2: Value = get(&app, &app.read, "/jobs/r2").await.json().await.unwrap();
    assert_eq!(r2["job"]["status"], "failed");
    assert_eq!(r2["worker"]["id"], "w1");
    assert!(r2["machine"].is_null(), "m1 never sent a heartbeat");
    assert_eq!(
        r2["error_chain"],
        json!([
            {"attempt": 1, "status": "timeout", "at": t(35_000), "worker_id": "w1",
             "machine_id": "m1", "type": "timeout", "reason": "deadline", "message": null,
             "cause": null, "will_retry": null},
            {"attempt": 2, "status": "failed", "at": t(40_000), "worker_id": "w1",
             "machine_id": "m1", "type": "ValueError", "reason": null, "message": "bad",
             "cause": null, "will_retry": false},
        ])
    );
    assert_eq!(
        error_code(get(&app, &app.read, "/jobs/nope").await).await,
        (StatusCode::NOT_FOUND, "not_found".into())
    );
}

/// A signed-in member of `app`'s org with `role`, and their user id.
async fn member(app: &App, role: &str) -> (Browser, Uuid) {
    member_of(app, app.org, role).await
}

/// A new user with `role` in `org`, signed in on a browser of `app`.
pub async fn member_of(app: &App, org: Uuid, role: &str) -> (Browser, Uuid) {
    let email = format!("{}@example.com", Uuid::new_v4().simple());
    let user = account(&app.tenant, &email).await;
    let mut tx = app.tenant.begin(TenantContext::org(org)).await.unwrap();
    query("INSERT INTO memberships (org_id, user_id, role) VALUES ($1, $2, $3)")
        .bind(org)
        .bind(user)
        .bind(role)
        .execute(tx.conn())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut browser = Browser::new(&app.base);
    assert_eq!(browser.sign_in(&email, PASSWORD).await.status(), 200);
    (browser, user)
}

async fn browse(
    browser: &mut Browser,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let csrf = method != Method::GET;
    browser.send(method, path, body, csrf).await
}

#[tokio::test]
async fn payloads_are_withheld_from_viewers_when_the_org_says_so() {
    let app = App::start().await;
    retried_jobs(&app, t0()).await;
    let slug = slug(&app).await;
    let path = format!("/api/v1/orgs/{slug}/jobs/r1");
    let (mut viewer, _) = member(&app, "viewer").await;
    let (mut member_, _) = member(&app, "member").await;
    let (mut admin, _) = member(&app, "admin").await;

    let shown: Value = browse(&mut viewer, Method::GET, &path, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        shown["job"]["payload"]["input"], "s3://bucket/r1",
        "visible by default"
    );

    let settings = format!("/api/v1/orgs/{slug}/settings");
    let changed: Value = browse(
        &mut admin,
        Method::PATCH,
        &settings,
        Some(json!({"payloads_visible_to_viewers": false})),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(changed["settings"]["payloads_visible_to_viewers"], false);

    let hidden_from_viewer: Value = browse(&mut viewer, Method::GET, &path, None)
        .await
        .json()
        .await
        .unwrap();
    let hidden_from_token: Value = get(&app, &app.read, "/jobs/r1").await.json().await.unwrap();
    for hidden in [&hidden_from_viewer, &hidden_from_token] {
        let job = &hidden["job"];
        assert_eq!(
            (&job["payload"], &job["result"], &job["payload_hidden"]),
            (&Value::Null, &Value::Null, &json!(true))
        );
        let timeline = hidden["timeline"].as_array().unwrap();
        assert_eq!(timeline[0]["kind"], "job.submitted");
        assert_eq!(
            timeline[0]["data"]["name"], "retry me",
            "the rest of the event stays"
        );
        assert!(timeline
            .iter()
            .all(|e| e["data"].get("payload").is_none() && e["data"].get("result").is_none()));
        assert_eq!(hidden["error_chain"][0]["type"], "OOMError");
    }
    for browser in [&mut member_, &mut admin] {
        let full: Value = browse(browser, Method::GET, &path, None)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(full["job"]["payload"]["input"], "s3://bucket/r1");
        assert_eq!(full["job"]["result"]["frames"], 10);
        assert_eq!(full["job"]["payload_hidden"], false);
        assert_eq!(full["timeline"][8]["data"]["result"]["frames"], 10);
    }
}

/// m-off (silent for two minutes, with workers w-a and w-b), m-stale (30 s) and m-on (now), and
/// a job that ran on m-off.
async fn machines(app: &App) {
    let ago = |s: i64| (Utc::now() - Duration::seconds(s)).to_rfc3339();
    let mut events = Vec::new();
    for (machine, seconds) in [("m-off", 120), ("m-stale", 30), ("m-on", 0)] {
        let mut e = event(
            "machine.heartbeat",
            json!({"machine_id": machine, "status": "ready"}),
        );
        e["at"] = json!(ago(seconds));
        events.push(e);
    }
    for worker in ["w-a", "w-b"] {
        let mut e = event(
            "worker.heartbeat",
            json!({"worker_id": worker, "machine_id": "m-off", "status": "idle"}),
        );
        e["at"] = json!(ago(120));
        events.push(e);
    }
    let mut ran = event(
        "job.completed",
        json!({"job_id": "ran-there", "worker_id": "w-a", "machine_id": "m-off"}),
    );
    ran["at"] = json!(ago(125));
    events.push(ran);
    send(app, &events).await;
}

#[tokio::test]
async fn admins_remove_offline_machines_and_the_audit_log_says_so() {
    let app = App::start().await;
    machines(&app).await;
    let slug = slug(&app).await;
    let machine = |id: &str| format!("/api/v1/orgs/{slug}/machines/{id}");
    let (mut viewer, _) = member(&app, "viewer").await;
    let (mut member_, _) = member(&app, "member").await;
    let (mut admin, admin_id) = member(&app, "admin").await;

    for browser in [&mut viewer, &mut member_] {
        let refused = browse(browser, Method::DELETE, &machine("m-off"), None).await;
        assert_eq!(
            error_code(refused).await,
            (StatusCode::FORBIDDEN, "insufficient_role".into())
        );
    }
    let by_token = reqwest::Client::new()
        .delete(format!("{}{}", app.base, machine("m-off")))
        .bearer_auth(&app.read)
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(by_token).await,
        (StatusCode::FORBIDDEN, "insufficient_role".into())
    );
    for live in ["m-on", "m-stale"] {
        let refused = browse(&mut admin, Method::DELETE, &machine(live), None).await;
        assert_eq!(
            error_code(refused).await,
            (StatusCode::CONFLICT, "machine_not_offline".into()),
            "{live}"
        );
    }
    let unknown = browse(&mut admin, Method::DELETE, &machine("m-nope"), None).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);

    let removed = browse(&mut admin, Method::DELETE, &machine("m-off"), None).await;
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);
    for gone in ["/machines/m-off", "/workers/w-a", "/workers/w-b"] {
        assert_eq!(
            get(&app, &app.read, gone).await.status(),
            StatusCode::NOT_FOUND,
            "{gone}"
        );
    }
    assert_eq!(
        get(&app, &app.read, "/machines/m-on").await.status(),
        StatusCode::OK
    );
    let history: Value = get(&app, &app.read, "/jobs/ran-there")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(history["job"]["machine_id"], "m-off", "history stays");
    assert!(history["machine"].is_null() && history["worker"].is_null());
    assert_eq!(
        browse(&mut admin, Method::DELETE, &machine("m-off"), None)
            .await
            .status(),
        StatusCode::NOT_FOUND,
        "gone already"
    );

    let audit: Value = browse(
        &mut admin,
        Method::GET,
        &format!("/api/v1/orgs/{slug}/audit"),
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    let entries: Vec<&Value> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "machine.removed")
        .collect();
    assert_eq!(entries.len(), 1, "refusals are not recorded: {audit}");
    assert_eq!(entries[0]["actor"], format!("user:{admin_id}"));
    assert_eq!(entries[0]["target"], "machine:m-off");
    assert_eq!(entries[0]["details"], json!({"workers": ["w-a", "w-b"]}));
}

#[tokio::test]
async fn another_orgs_jobs_and_machines_are_not_found() {
    let app = App::start().await;
    let t0 = t0();
    nine_jobs(&app, t0).await;
    let slug_a = slug(&app).await;
    let (mut admin_a, _) = member(&app, "admin").await;

    // Org B on the same server, with a job and an offline machine of its own.
    let org_b = crate::fixtures::create_org(&app.tenant, "other").await;
    let mut tx = app.tenant.begin(TenantContext::org(org_b)).await.unwrap();
    let ingest_b = tokens::create(tx.conn(), org_b, TokenKind::Ingest, "b", None)
        .await
        .unwrap()
        .secret;
    let read_b = tokens::create(tx.conn(), org_b, TokenKind::Read, "b", None)
        .await
        .unwrap()
        .secret;
    tx.commit().await.unwrap();
    let mut heartbeat = event("machine.heartbeat", json!({"machine_id": "b-machine"}));
    heartbeat["at"] = json!((Utc::now() - Duration::minutes(10)).to_rfc3339());
    let b_events = json!({"events": [
        job("job.submitted", t0, 0, json!({"job_id": "b-job", "name": "frame of b"})),
        job("job.started", t0, 10, json!({"job_id": "b-job", "worker_id": "b-worker", "machine_id": "b-machine"})),
        heartbeat,
    ]});
    let sent = app
        .post(Some(&ingest_b))
        .json(&b_events)
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 200);
    let mut tx = app.tenant.begin(TenantContext::none()).await.unwrap();
    let slug_b: String =
        fleetmon_server::db::sql::query_scalar("SELECT slug FROM organizations WHERE id = $1")
            .bind(org_b)
            .fetch_one(tx.conn())
            .await
            .unwrap();
    tx.commit().await.unwrap();

    let status = |path: String, token: &str| {
        let response = bearer_get(
            format!("{}/api/v1/orgs/{path}", app.base),
            token.to_string(),
        );
        async move { response.await.status() }
    };
    // A's credentials with B's ids, in A's org and in B's.
    assert_eq!(
        status(format!("{slug_a}/jobs/b-job"), &app.read).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        status(format!("{slug_b}/jobs/b-job"), &app.read).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        status(format!("{slug_b}/jobs"), &app.read).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        list_ids(&app, "?worker=b-worker").await,
        Vec::<String>::new()
    );
    assert_eq!(list_ids(&app, "?q=of%20b").await, Vec::<String>::new());
    for path in [
        format!("/api/v1/orgs/{slug_a}/machines/b-machine"),
        format!("/api/v1/orgs/{slug_b}/machines/b-machine"),
    ] {
        let refused = browse(&mut admin_a, Method::DELETE, &path, None).await;
        assert_eq!(refused.status(), StatusCode::NOT_FOUND, "{path}");
        let job_path = path.replace("machines/b-machine", "jobs/b-job");
        let read = browse(&mut admin_a, Method::GET, &job_path, None).await;
        assert_eq!(read.status(), StatusCode::NOT_FOUND, "{job_path}");
    }
    // B's credentials with A's ids.
    assert_eq!(
        status(format!("{slug_b}/jobs/j1"), &read_b).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        status(format!("{slug_a}/jobs/j1"), &read_b).await,
        StatusCode::NOT_FOUND
    );
    // And each org still sees its own.
    assert_eq!(
        status(format!("{slug_b}/jobs/b-job"), &read_b).await,
        StatusCode::OK
    );
    assert_eq!(
        status(format!("{slug_b}/machines/b-machine"), &read_b).await,
        StatusCode::OK
    );
}
