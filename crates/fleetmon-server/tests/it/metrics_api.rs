//! The overview and the metrics endpoints against hand-computed values: a fixture of jobs with
//! known timestamps, sent through the real ingest endpoint, read back per counter, per bucket,
//! per group and per aggregation; bad windows and steps; another org's data staying invisible.

use chrono::{DateTime, Duration, DurationRound, SecondsFormat, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};

use fleetmon_server::auth::tokens::{self, TokenKind};
use fleetmon_server::db::sql::query_scalar;
use fleetmon_server::db::TenantContext;

use crate::fleet_api::{get, json_of, slug};
use crate::ingest_http::{event, App};
use crate::signin::{bearer_get, error_code};

/// A time `minutes` after `t0`.
fn at(t0: DateTime<Utc>, minutes: f64) -> DateTime<Utc> {
    t0 + Duration::milliseconds((minutes * 60_000.0) as i64)
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A job event `minutes` after `t0`.
fn job(t0: DateTime<Utc>, minutes: f64, kind: &str, fields: Value) -> Value {
    let mut e = event(kind, fields);
    e["at"] = json!(at(t0, minutes).to_rfc3339());
    e
}

/// The hour two hours before the current one: everything in the fixture is in the past, and
/// 15-minute buckets start at t0 + 0, 15, 30 and 45 minutes.
fn t0() -> DateTime<Utc> {
    Utc::now().duration_trunc(Duration::hours(1)).unwrap() - Duration::hours(2)
}

/// Jobs of types render, train and infer on m1/w1 and m2/w2 (minutes after t0; S submitted,
/// Q queued, A assigned, St started):
///
/// | job | type   | S  | Q  | A  | St   | end                         |
/// |-----|--------|----|----|----|------|-----------------------------|
/// | a   | render | 0  | 1  |    | 2    | completed 5, 180 000 ms     |
/// | b   | render | 3  | 4  |    | 10   | completed 20, 600 000 ms    |
/// | c   | train  | 5  |    |    | 11   | failed 16 (300 000 ms)      |
/// | d   | render | 17 | 17 |    | 22   | completed 24, 120 000 ms    |
/// | e   | infer  | 18 | 19 |    | 27   | completed 28, 60 000 ms     |
/// | f   | train  | 31 | 32 |    | 33   | timeout 40 (420 000 ms)     |
/// | g   | render | 35 | 36 |    | 37   | cancelled 38                |
/// | h   | render | 46 | 47 |    |      | (queued)                    |
/// | i   | train  | 50 |    |    |      | (pending)                   |
/// | k   | render | 50 | 51 | 52 |      | (assigned)                  |
/// | l   | infer  | 52 | 52 |    | 55   | (in progress)               |
/// | y   | render | 59 | 59 |    | 59.5 | completed 65, 330 000 ms    |
/// | x   | render | 60 |    |    |      | (pending)                   |
/// | z   | render | -30|    |    | -29  | completed -20, 540 000 ms   |
///
/// z ran on w-ghost, a worker never heard from. Machines: m1 heard 2 s ago, m2 30 s ago, m3
/// 120 s ago; workers w1 (busy, m1) 2 s ago, w2 (idle, m2) 30 s ago, w3 (error, m3) 120 s ago.
async fn fixture() -> (App, DateTime<Utc>) {
    let app = App::start().await;
    let t0 = t0();
    let on = |m: &str, w: &str| json!({"machine_id": m, "worker_id": w});
    let with = |mut base: Value, extra: Value| {
        base.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        base
    };
    let submitted = |id: &str, minutes: f64, job_type: &str| {
        job(
            t0,
            minutes,
            "job.submitted",
            json!({"job_id": id, "job_type": job_type, "name": format!("{job_type} {id}")}),
        )
    };
    let step = |id: &str, minutes: f64, kind: &str, m: &str, w: &str| {
        job(t0, minutes, kind, with(json!({"job_id": id}), on(m, w)))
    };
    let queued = |id: &str, minutes: f64| job(t0, minutes, "job.queued", json!({"job_id": id}));
    let completed = |id: &str, minutes: f64, m: &str, w: &str, duration_ms: u64| {
        job(
            t0,
            minutes,
            "job.completed",
            with(json!({"job_id": id, "duration_ms": duration_ms}), on(m, w)),
        )
    };
    let events = vec![
        submitted("a", 0.0, "render"),
        queued("a", 1.0),
        step("a", 2.0, "job.started", "m1", "w1"),
        completed("a", 5.0, "m1", "w1", 180_000),
        submitted("b", 3.0, "render"),
        queued("b", 4.0),
        step("b", 10.0, "job.started", "m1", "w1"),
        completed("b", 20.0, "m1", "w1", 600_000),
        submitted("c", 5.0, "train"),
        step("c", 11.0, "job.started", "m2", "w2"),
        job(
            t0,
            16.0,
            "job.failed",
            with(
                json!({"job_id": "c", "error": {"type": "cuda_oom", "reason": "oom", "message": "CUDA out of memory"}}),
                on("m2", "w2"),
            ),
        ),
        submitted("d", 17.0, "render"),
        queued("d", 17.0),
        step("d", 22.0, "job.started", "m1", "w1"),
        completed("d", 24.0, "m1", "w1", 120_000),
        submitted("e", 18.0, "infer"),
        queued("e", 19.0),
        step("e", 27.0, "job.started", "m2", "w2"),
        completed("e", 28.0, "m2", "w2", 60_000),
        submitted("f", 31.0, "train"),
        queued("f", 32.0),
        step("f", 33.0, "job.started", "m2", "w2"),
        job(
            t0,
            40.0,
            "job.timeout",
            with(json!({"job_id": "f", "reason": "deadline"}), on("m2", "w2")),
        ),
        submitted("g", 35.0, "render"),
        queued("g", 36.0),
        step("g", 37.0, "job.started", "m1", "w1"),
        step("g", 38.0, "job.cancelled", "m1", "w1"),
        submitted("h", 46.0, "render"),
        queued("h", 47.0),
        submitted("i", 50.0, "train"),
        submitted("k", 50.0, "render"),
        queued("k", 51.0),
        step("k", 52.0, "job.assigned", "m1", "w1"),
        submitted("l", 52.0, "infer"),
        queued("l", 52.0),
        step("l", 55.0, "job.started", "m2", "w2"),
        submitted("y", 59.0, "render"),
        queued("y", 59.0),
        step("y", 59.5, "job.started", "m1", "w1"),
        completed("y", 65.0, "m1", "w1", 330_000),
        submitted("x", 60.0, "render"),
        submitted("z", -30.0, "render"),
        step("z", -29.0, "job.started", "m1", "w-ghost"),
        completed("z", -20.0, "m1", "w-ghost", 540_000),
    ];
    let sent = app.send(&events).await;
    assert_eq!(sent.accepted as usize, events.len(), "{:?}", sent.rejected);

    let ago = |seconds: i64, mut e: Value| {
        e["at"] = json!((Utc::now() - Duration::seconds(seconds)).to_rfc3339());
        e
    };
    let machine = |id: &str| {
        event(
            "machine.heartbeat",
            json!({"machine_id": id, "status": "ready"}),
        )
    };
    let worker = |id: &str, m: &str, status: &str| {
        event(
            "worker.heartbeat",
            json!({"worker_id": id, "machine_id": m, "status": status}),
        )
    };
    let fleet = [
        ago(2, machine("m1")),
        ago(30, machine("m2")),
        ago(120, machine("m3")),
        ago(2, worker("w1", "m1", "busy")),
        ago(30, worker("w2", "m2", "idle")),
        ago(120, worker("w3", "m3", "error")),
    ];
    let sent = app.send(&fleet).await;
    assert_eq!(sent.accepted, 6, "{:?}", sent.rejected);
    (app, t0)
}

/// `actual` equals `expected`, numbers to within a millionth (percentiles are floating point).
fn assert_near(actual: &Value, expected: &Value, path: &str) {
    match (actual, expected) {
        (Value::Number(a), Value::Number(e)) => {
            let (a, e) = (a.as_f64().unwrap(), e.as_f64().unwrap());
            assert!(
                (a - e).abs() <= 1e-6 * e.abs().max(1.0),
                "{path}: {a} is not {e}"
            );
        }
        (Value::Object(a), Value::Object(e)) => {
            let mut keys: Vec<_> = a.keys().chain(e.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                assert_near(
                    a.get(key).unwrap_or(&Value::Null),
                    e.get(key).unwrap_or(&Value::Null),
                    &format!("{path}.{key}"),
                );
            }
        }
        (Value::Array(a), Value::Array(e)) => {
            assert_eq!(a.len(), e.len(), "{path}: {actual} is not {expected}");
            for (i, (a, e)) in a.iter().zip(e).enumerate() {
                assert_near(a, e, &format!("{path}[{i}]"));
            }
        }
        (Value::String(a), Value::String(e)) => {
            // Times compare as times, whatever their spelling.
            match (
                DateTime::parse_from_rfc3339(a),
                DateTime::parse_from_rfc3339(e),
            ) {
                (Ok(a), Ok(e)) => assert_eq!(a, e, "{path}"),
                _ => assert_eq!(a, e, "{path}"),
            }
        }
        _ => assert_eq!(actual, expected, "{path}"),
    }
}

/// One job-metrics bucket as the API should answer it.
#[allow(clippy::too_many_arguments)]
fn bucket(
    start: DateTime<Utc>,
    submitted: i64,
    completed: i64,
    failed: i64,
    cancelled: i64,
    failure_rate: Option<f64>,
    duration: [Option<f64>; 3],
    wait: [Option<f64>; 2],
) -> Value {
    json!({
        "start": iso(start),
        "submitted": submitted,
        "completed": completed,
        "failed": failed,
        "cancelled": cancelled,
        "failure_rate": failure_rate,
        "duration_ms": {"p50": duration[0], "p95": duration[1], "p99": duration[2]},
        "queue_wait_ms": {"p50": wait[0], "p95": wait[1]},
    })
}

const NONE3: [Option<f64>; 3] = [None, None, None];
const NONE2: [Option<f64>; 2] = [None, None];

fn window(t0: DateTime<Utc>, from: f64, to: f64) -> String {
    format!("since={}&until={}", iso(at(t0, from)), iso(at(t0, to)))
}

#[tokio::test]
async fn the_overview_counts_the_fleet_and_the_windows_jobs() {
    let (app, t0) = fixture().await;
    let overview = json_of(get(&app, &format!("/overview?{}", window(t0, 0.0, 60.0))).await).await;
    let failure = |id: &str,
                   name: &str,
                   job_type: &str,
                   status: &str,
                   kind: &str,
                   reason: &str,
                   message: Option<&str>,
                   machine: &str,
                   worker: &str,
                   minutes: f64| {
        json!({
            "id": id, "name": name, "job_type": job_type, "status": status, "attempt": 1,
            "error_type": kind, "error_reason": reason, "error_message": message,
            "machine_id": machine, "worker_id": worker, "finished_at": iso(at(t0, minutes)),
        })
    };
    assert_near(
        &overview,
        &json!({
            "since": iso(t0),
            "until": iso(at(t0, 60.0)),
            // Pending: h (queued), i and x; active: k (assigned), l (in progress). Finished in
            // the window: a, b, d, e completed; c failed and f timed out; g cancelled.
            "jobs": {"pending": 3, "active": 2, "completed": 4, "failed": 2, "cancelled": 1,
                     "success_rate": 4.0 / 6.0},
            "machines": {"total": 3, "by_liveness": {"online": 1, "stale": 1, "offline": 1}},
            // w-ghost is known only from z's events: never heard from, status unknown.
            "workers": {
                "total": 4,
                "by_liveness": {"online": 1, "stale": 1, "offline": 2},
                "by_status": {"initializing": 0, "idle": 1, "busy": 1, "paused": 0,
                              "stopping": 0, "error": 1, "maintenance": 0, "unknown": 1},
            },
            "recent_failures": [
                failure("f", "train f", "train", "timeout", "timeout", "deadline", None, "m2", "w2", 40.0),
                failure("c", "train c", "train", "failed", "cuda_oom", "oom", Some("CUDA out of memory"), "m2", "w2", 16.0),
            ],
        }),
        "overview",
    );

    // The default window is the last 24 hours: z (20 min before t0) and y (65 min after) too.
    let day = json_of(get(&app, "/overview").await).await;
    assert_near(
        &day["jobs"],
        &json!({"pending": 3, "active": 2, "completed": 6, "failed": 2, "cancelled": 1,
                "success_rate": 0.75}),
        "24 h",
    );
    let length = DateTime::parse_from_rfc3339(day["until"].as_str().unwrap()).unwrap()
        - DateTime::parse_from_rfc3339(day["since"].as_str().unwrap()).unwrap();
    assert_eq!(length, Duration::hours(24));

    // Nothing finished: no success rate, no failures; current counts stay.
    let quiet =
        json_of(get(&app, &format!("/overview?{}", window(t0, -300.0, -240.0))).await).await;
    assert_near(
        &quiet["jobs"],
        &json!({"pending": 3, "active": 2, "completed": 0, "failed": 0, "cancelled": 0,
                "success_rate": null}),
        "quiet",
    );
    assert_eq!(quiet["recent_failures"], json!([]));
}

#[tokio::test]
async fn job_metrics_per_bucket() {
    let (app, t0) = fixture().await;
    let body = json_of(
        get(
            &app,
            &format!("/metrics/jobs?{}&step=15m", window(t0, 0.0, 60.0)),
        )
        .await,
    )
    .await;
    let b = |m: f64| at(t0, m);
    assert_near(
        &body,
        &json!({
            "since": iso(t0), "until": iso(b(60.0)), "step_s": 900,
            "buckets": [
                // Submitted a, b, c; a completed (180 000); waits a 60 000 (queued → started),
                // b 360 000, c 360 000 (never queued: submitted → started).
                bucket(b(0.0), 3, 1, 0, 0, Some(0.0), [Some(180_000.0); 3], [Some(360_000.0), Some(360_000.0)]),
                // Submitted d, e; finished b, d, e (completed) and c (failed): durations
                // 60 000, 120 000, 300 000, 600 000 → p50 at rank 1.5, p95 at 2.85, p99 at 2.97.
                // Waits d 300 000, e 480 000.
                bucket(b(15.0), 2, 3, 1, 0, Some(0.25),
                       [Some(210_000.0), Some(555_000.0), Some(591_000.0)],
                       [Some(390_000.0), Some(471_000.0)]),
                // Submitted f, g; f timed out (420 000), g cancelled (no duration); waits 60 000 each.
                bucket(b(30.0), 2, 0, 1, 1, Some(1.0), [Some(420_000.0); 3], [Some(60_000.0), Some(60_000.0)]),
                // Submitted h, i, k, l, y (x at minute 60 is outside); y finished after the
                // window; waits l 180 000, y 30 000.
                bucket(b(45.0), 5, 0, 0, 0, None, NONE3, [Some(105_000.0), Some(172_500.0)]),
            ],
        }),
        "metrics",
    );

    // The window decides, not the buckets: [t0+7, t0+37) touches three buckets, and the first
    // and last count only what lies inside the window.
    let body = json_of(
        get(
            &app,
            &format!("/metrics/jobs?{}&step=15m", window(t0, 7.0, 37.0)),
        )
        .await,
    )
    .await;
    assert_near(
        &body["buckets"],
        &json!([
            // b and c started inside [7, 15): waits 360 000 each; a, b, c were submitted before 7.
            bucket(
                b(0.0),
                0,
                0,
                0,
                0,
                None,
                NONE3,
                [Some(360_000.0), Some(360_000.0)]
            ),
            bucket(
                b(15.0),
                2,
                3,
                1,
                0,
                Some(0.25),
                [Some(210_000.0), Some(555_000.0), Some(591_000.0)],
                [Some(390_000.0), Some(471_000.0)]
            ),
            // f and g were submitted before 37 and ended after it; f started at 33, g at 37 —
            // the window's end, outside it.
            bucket(
                b(30.0),
                2,
                0,
                0,
                0,
                None,
                NONE3,
                [Some(60_000.0), Some(60_000.0)]
            ),
        ]),
        "clipped",
    );

    // Hourly buckets over four hours: every bucket present, empty ones as zeros.
    let body = json_of(
        get(
            &app,
            &format!("/metrics/jobs?{}&step=1h", window(t0, -180.0, 60.0)),
        )
        .await,
    )
    .await;
    assert_eq!(body["step_s"], 3600);
    let hours: Vec<(String, i64, i64)> = body["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["start"].as_str().unwrap().to_string(),
                b["submitted"].as_i64().unwrap(),
                b["completed"].as_i64().unwrap(),
            )
        })
        .collect();
    let start = |h: i64| iso(t0 + Duration::hours(h));
    assert_eq!(
        hours
            .iter()
            .map(|(s, n, c)| (iso(DateTime::parse_from_rfc3339(s).unwrap().into()), *n, *c))
            .collect::<Vec<_>>(),
        [
            (start(-3), 0, 0),
            (start(-2), 0, 0),
            (start(-1), 1, 1), // z
            (start(0), 12, 4),
        ]
    );
    assert_near(
        &body["buckets"][0],
        &bucket(t0 - Duration::hours(3), 0, 0, 0, 0, None, NONE3, NONE2),
        "empty",
    );
}

#[tokio::test]
async fn job_metrics_by_group_and_filtered() {
    let (app, t0) = fixture().await;
    let b = |m: f64| at(t0, m);
    let w = window(t0, 0.0, 60.0);
    let body = json_of(
        get(
            &app,
            &format!("/metrics/jobs?{w}&step=15m&group_by=job_type"),
        )
        .await,
    )
    .await;
    assert_eq!(body["group_by"], "job_type");
    assert_eq!(body["truncated"], false);
    let keys: Vec<&str> = body["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["key"].as_str().unwrap())
        .collect();
    // By jobs submitted and finished in the window: render 7 + 4, train 3 + 2, infer 2 + 1.
    assert_eq!(keys, ["render", "train", "infer"]);
    assert_near(
        &body["groups"][0]["buckets"],
        &json!([
            bucket(
                b(0.0),
                2,
                1,
                0,
                0,
                Some(0.0),
                [Some(180_000.0); 3],
                [Some(210_000.0), Some(345_000.0)]
            ),
            bucket(
                b(15.0),
                1,
                2,
                0,
                0,
                Some(0.0),
                [Some(360_000.0), Some(576_000.0), Some(595_200.0)],
                [Some(300_000.0); 2]
            ),
            bucket(b(30.0), 1, 0, 0, 1, None, NONE3, [Some(60_000.0); 2]),
            bucket(b(45.0), 3, 0, 0, 0, None, NONE3, [Some(30_000.0); 2]),
        ]),
        "render",
    );
    assert_near(
        &body["groups"][1]["buckets"],
        &json!([
            bucket(b(0.0), 1, 0, 0, 0, None, NONE3, [Some(360_000.0); 2]),
            bucket(b(15.0), 0, 0, 1, 0, Some(1.0), [Some(300_000.0); 3], NONE2),
            bucket(
                b(30.0),
                1,
                0,
                1,
                0,
                Some(1.0),
                [Some(420_000.0); 3],
                [Some(60_000.0); 2]
            ),
            bucket(b(45.0), 1, 0, 0, 0, None, NONE3, NONE2),
        ]),
        "train",
    );

    // By machine: jobs not yet on one (h, i) form the `null` group.
    let body = json_of(
        get(
            &app,
            &format!("/metrics/jobs?{w}&step=15m&group_by=machine"),
        )
        .await,
    )
    .await;
    let groups: Vec<(Value, i64)> = body["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let submitted = g["buckets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b["submitted"].as_i64().unwrap())
                .sum();
            (g["key"].clone(), submitted)
        })
        .collect();
    assert_eq!(
        groups,
        [(json!("m1"), 6), (json!("m2"), 4), (Value::Null, 2)]
    );

    // Filters narrow the jobs counted; they combine.
    let train =
        json_of(get(&app, &format!("/metrics/jobs?{w}&step=15m&job_type=train")).await).await;
    assert_near(
        &train["buckets"],
        &body_of_group(&app, &w, "job_type", "train").await,
        "filter = group",
    );
    let w2 = json_of(
        get(
            &app,
            &format!("/metrics/jobs?{w}&step=30m&worker=w2&machine=m2"),
        )
        .await,
    )
    .await;
    assert_near(
        &w2["buckets"],
        &json!([
            // c and e submitted; c failed (300 000), e completed (60 000); waits c 360 000, e 480 000.
            bucket(
                b(0.0),
                2,
                1,
                1,
                0,
                Some(0.5),
                [Some(180_000.0), Some(288_000.0), Some(297_600.0)],
                [Some(420_000.0), Some(474_000.0)]
            ),
            // f and l submitted; f timed out (420 000); waits f 60 000, l 180 000.
            bucket(
                b(30.0),
                2,
                0,
                1,
                0,
                Some(1.0),
                [Some(420_000.0); 3],
                [Some(120_000.0), Some(174_000.0)]
            ),
        ]),
        "w2",
    );
    let none = json_of(
        get(
            &app,
            &format!("/metrics/jobs?{w}&step=30m&worker=w2&job_type=render"),
        )
        .await,
    )
    .await;
    assert_near(
        &none["buckets"],
        &json!([
            bucket(b(0.0), 0, 0, 0, 0, None, NONE3, NONE2),
            bucket(b(30.0), 0, 0, 0, 0, None, NONE3, NONE2),
        ]),
        "nothing matches",
    );
}

async fn body_of_group(app: &App, window: &str, group_by: &str, key: &str) -> Value {
    let body = json_of(
        get(
            app,
            &format!("/metrics/jobs?{window}&step=15m&group_by={group_by}"),
        )
        .await,
    )
    .await;
    body["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["key"] == key)
        .unwrap()["buckets"]
        .clone()
}

#[tokio::test]
async fn groups_are_capped_at_the_busiest_fifty() {
    let app = App::start().await;
    let t0 = t0();
    // Type t00 has one job, t01 two, … t50 fifty-one: t00 is the one left out.
    let mut events = Vec::new();
    for t in 0..51 {
        for n in 0..=t {
            events.push(job(
                t0,
                1.0,
                "job.submitted",
                json!({"job_id": format!("j{t}-{n}"), "job_type": format!("t{t:02}")}),
            ));
        }
    }
    for chunk in events.chunks(100) {
        assert!(app.send(chunk).await.rejected.is_empty());
    }
    let body = json_of(
        get(
            &app,
            &format!("/metrics/jobs?{}&group_by=job_type", window(t0, 0.0, 60.0)),
        )
        .await,
    )
    .await;
    assert_eq!(body["truncated"], true);
    let groups = body["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 50);
    assert_eq!(
        (groups[0]["key"].as_str(), groups[49]["key"].as_str()),
        (Some("t50"), Some("t01"))
    );
    // No step: one minute for an hour.
    assert_eq!(body["step_s"], 60);
    assert_eq!(groups[0]["buckets"].as_array().unwrap().len(), 60);
    assert_eq!(groups[0]["buckets"][1]["submitted"], 51);
}

/// gpu_utilization_pct samples (minutes after t0): m1 gpu 0 at 1 → 10, 5 → 30, 14 → 20 and
/// 16 → 50; m1 gpu 1 at 2 → 80; m2 gpu 0 at 20 → 5, 25 → 15 and 31 → 99. And tokens_per_s of
/// worker w1 on m1 at 3 → 7.
async fn series_fixture() -> (App, DateTime<Utc>) {
    let app = App::start().await;
    let t0 = t0();
    let metrics = |minutes: f64, machine: &str, worker: Option<&str>, samples: Value| {
        let mut e = event(
            "metrics",
            json!({"machine_id": machine, "samples": samples}),
        );
        if let Some(worker) = worker {
            e["worker_id"] = json!(worker);
        }
        e["at"] = json!(at(t0, minutes).to_rfc3339());
        e
    };
    let gpu = |gpu: &str, value: f64| json!({"name": "gpu_utilization_pct", "value": value, "labels": {"gpu": gpu}});
    let later = |minutes: f64, mut sample: Value| {
        sample["at"] = json!(at(t0, minutes).to_rfc3339());
        sample
    };
    let sent = app
        .send(&[
            // A sample's own `at` wins over its event's.
            metrics(
                1.0,
                "m1",
                None,
                json!([gpu("0", 10.0), later(2.0, gpu("1", 80.0))]),
            ),
            metrics(5.0, "m1", None, json!([gpu("0", 30.0)])),
            metrics(
                14.0,
                "m1",
                None,
                json!([gpu("0", 20.0), later(16.0, gpu("0", 50.0))]),
            ),
            metrics(20.0, "m2", None, json!([gpu("0", 5.0)])),
            metrics(25.0, "m2", None, json!([gpu("0", 15.0)])),
            metrics(31.0, "m2", None, json!([gpu("0", 99.0)])),
            metrics(
                3.0,
                "m1",
                Some("w1"),
                json!([{"name": "tokens_per_s", "value": 7.0}]),
            ),
        ])
        .await;
    assert_eq!(sent.accepted, 7, "{:?}", sent.rejected);
    (app, t0)
}

#[tokio::test]
async fn series_are_aggregated_per_bucket() {
    let (app, t0) = series_fixture().await;
    let w = window(t0, 0.0, 30.0);
    let (b0, b1) = (iso(t0), iso(at(t0, 15.0)));
    // Per agg: m1 gpu 0, m1 gpu 1, m2 gpu 0, each [bucket 0, bucket 1].
    let expected: [(&str, [[Value; 2]; 3]); 6] = [
        (
            "avg",
            [
                [json!(20.0), json!(50.0)],
                [json!(80.0), Value::Null],
                [Value::Null, json!(10.0)],
            ],
        ),
        (
            "min",
            [
                [json!(10.0), json!(50.0)],
                [json!(80.0), Value::Null],
                [Value::Null, json!(5.0)],
            ],
        ),
        (
            "max",
            [
                [json!(30.0), json!(50.0)],
                [json!(80.0), Value::Null],
                [Value::Null, json!(15.0)],
            ],
        ),
        (
            "sum",
            [
                [json!(60.0), json!(50.0)],
                [json!(80.0), Value::Null],
                [Value::Null, json!(20.0)],
            ],
        ),
        (
            "last",
            [
                [json!(20.0), json!(50.0)],
                [json!(80.0), Value::Null],
                [Value::Null, json!(15.0)],
            ],
        ),
        (
            "count",
            [
                [json!(3.0), json!(1.0)],
                [json!(1.0), json!(0.0)],
                [json!(0.0), json!(2.0)],
            ],
        ),
    ];
    for (agg, values) in expected {
        let body = json_of(
            get(
                &app,
                &format!("/metrics/series?name=gpu_utilization_pct&{w}&step=15m&agg={agg}"),
            )
            .await,
        )
        .await;
        let series = |machine: &str, gpu: &str, v: &[Value; 2]| {
            json!({"machine_id": machine, "worker_id": null, "labels": {"gpu": gpu},
                   "points": [[b0, v[0]], [b1, v[1]]]})
        };
        assert_near(
            &body,
            &json!({
                "name": "gpu_utilization_pct", "agg": agg, "since": iso(t0), "until": iso(at(t0, 30.0)),
                "step_s": 900, "truncated": false,
                "series": [
                    series("m1", "0", &values[0]),
                    series("m1", "1", &values[1]),
                    series("m2", "0", &values[2]),
                ],
            }),
            agg,
        );
    }

    // Filters: one machine; one worker's series; the default agg is avg.
    let m2 = json_of(
        get(
            &app,
            &format!("/metrics/series?name=gpu_utilization_pct&machine=m2&{w}&step=15m"),
        )
        .await,
    )
    .await;
    assert_eq!(m2["agg"], "avg");
    assert_eq!(m2["series"].as_array().unwrap().len(), 1);
    assert_eq!(m2["series"][0]["points"][1][1], 10.0);
    let w1 = json_of(
        get(
            &app,
            &format!("/metrics/series?name=tokens_per_s&worker=w1&{w}&step=15m"),
        )
        .await,
    )
    .await;
    assert_near(
        &w1["series"],
        &json!([{"machine_id": "m1", "worker_id": "w1", "labels": {}, "points": [[b0, 7.0], [b1, null]]}]),
        "worker",
    );
    let nothing = json_of(
        get(
            &app,
            &format!("/metrics/series?name=tokens_per_s&worker=w2&{w}"),
        )
        .await,
    )
    .await;
    assert_eq!(nothing["series"], json!([]));

    let names = json_of(get(&app, "/metrics/series/names").await).await;
    assert_eq!(
        names,
        json!({"names": [{"name": "gpu_utilization_pct", "series": 3}, {"name": "tokens_per_s", "series": 1}]})
    );
    let names = json_of(get(&app, "/metrics/series/names?machine=m2").await).await;
    assert_eq!(
        names,
        json!({"names": [{"name": "gpu_utilization_pct", "series": 1}]})
    );
}

#[tokio::test]
async fn series_are_capped_at_one_hundred() {
    let app = App::start().await;
    let t0 = t0();
    let samples: Vec<Value> = (0..101)
        .map(|i| json!({"name": "fan_rpm", "value": i, "labels": {"fan": format!("{i:03}")}}))
        .collect();
    let sent = app
        .send(&[job(
            t0,
            5.0,
            "metrics",
            json!({"machine_id": "m1", "samples": samples}),
        )])
        .await;
    assert_eq!(sent.accepted, 1, "{:?}", sent.rejected);
    let body = json_of(
        get(
            &app,
            &format!("/metrics/series?name=fan_rpm&{}", window(t0, 0.0, 60.0)),
        )
        .await,
    )
    .await;
    assert_eq!(body["truncated"], true);
    let series = body["series"].as_array().unwrap();
    assert_eq!(series.len(), 100);
    assert_eq!(
        (
            series[0]["labels"]["fan"].as_str(),
            series[99]["labels"]["fan"].as_str()
        ),
        (Some("000"), Some("099"))
    );
    // No step: 1 h in 1-minute buckets, the sample in the sixth.
    assert_eq!(body["step_s"], 60);
    let points = series[5]["points"].as_array().unwrap();
    assert_eq!(points.len(), 60);
    assert_eq!((&points[5][1], &points[4][1]), (&json!(5.0), &Value::Null));
}

#[tokio::test]
async fn bad_parameters_are_400s() {
    let app = App::start().await;
    let cases = [
        ("/overview?range=1y", "invalid_range"),
        ("/overview?since=yesterday", "invalid_range"),
        ("/metrics/jobs?range=0h", "invalid_range"),
        (
            "/metrics/jobs?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z",
            "invalid_range",
        ),
        (
            "/metrics/jobs?since=2026-01-01T00:00:00Z&until=2026-01-02T00:00:00Z&range=1h",
            "invalid_range",
        ),
        ("/metrics/jobs?since=1900-01-01T00:00:00Z", "invalid_range"),
        ("/metrics/jobs?step=0", "invalid_step"),
        ("/metrics/jobs?step=fast", "invalid_step"),
        ("/metrics/jobs?range=24h&step=1m", "too_many_buckets"),
        ("/metrics/jobs?range=30d&step=30m", "too_many_buckets"),
        ("/metrics/jobs?group_by=customer", "invalid_group_by"),
        ("/metrics/series?range=1h", "missing_name"),
        ("/metrics/series?name=gpu&agg=median", "invalid_agg"),
        (
            "/metrics/series?name=gpu&range=1h&step=1s",
            "too_many_buckets",
        ),
        ("/metrics/series?name=gpu&name=fan", "invalid_query"),
    ];
    for (path, code) in cases {
        assert_eq!(
            error_code(get(&app, path).await).await,
            (StatusCode::BAD_REQUEST, code.to_string()),
            "{path}"
        );
    }
    // Up to 1,000 buckets are fine.
    let t0 = t0();
    let minutes = |n: f64| format!("/metrics/jobs?{}&step=1m", window(t0, 0.0, n));
    assert_eq!(get(&app, &minutes(1000.0)).await.status(), 200);
    assert_eq!(
        error_code(get(&app, &minutes(1001.0)).await).await,
        (StatusCode::BAD_REQUEST, "too_many_buckets".to_string())
    );
}

#[tokio::test]
async fn another_orgs_metrics_are_not_found_and_not_counted() {
    let (app, t0) = fixture().await;
    let slug_a = slug(&app).await;
    let org_b = crate::fixtures::create_org(&app.tenant, "other").await;
    let mut tx = app.tenant.begin(TenantContext::org(org_b)).await.unwrap();
    let mut secrets = Vec::new();
    for kind in [TokenKind::Read, TokenKind::Ingest] {
        let token = tokens::create(tx.conn(), org_b, kind, "b", None)
            .await
            .unwrap();
        secrets.push(token.secret);
    }
    let slug_b: String = query_scalar("SELECT slug FROM organizations WHERE id = $1")
        .bind(org_b)
        .fetch_one(tx.conn())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let (read_b, ingest_b) = (secrets[0].clone(), secrets[1].clone());
    // B has one failed job and one series of its own.
    let response = app
        .post(Some(&ingest_b))
        .json(&json!({"events": [
            job(t0, 1.0, "job.submitted", json!({"job_id": "b1", "job_type": "render"})),
            job(t0, 2.0, "job.failed", json!({"job_id": "b1", "machine_id": "m1", "error": {"type": "boom"}})),
            job(t0, 2.0, "metrics", json!({"machine_id": "m1", "samples": [{"name": "gpu_utilization_pct", "value": 1.0}]})),
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let paths = [
        "/overview".to_string(),
        "/metrics/jobs".to_string(),
        "/metrics/series?name=gpu_utilization_pct".to_string(),
        "/metrics/series/names".to_string(),
    ];
    let url = |slug: &str, path: &str| format!("{}/api/v1/orgs/{slug}{path}", app.base);
    for path in &paths {
        // A's read token on B's org: not found, as for an org that does not exist.
        let response = bearer_get(url(&slug_b, path), app.read.clone()).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        let response = bearer_get(url(&slug_a, path), read_b.clone()).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }

    // Each org counts only its own jobs.
    let w = window(t0, 0.0, 60.0);
    let of = |slug: &str, token: &str, path: String| {
        let response = bearer_get(url(slug, &path), token.to_string());
        async move { json_of(response.await).await }
    };
    let a = of(&slug_a, &app.read, format!("/overview?{w}")).await;
    assert_eq!(
        (
            a["jobs"]["failed"].as_i64(),
            a["jobs"]["completed"].as_i64()
        ),
        (Some(2), Some(4))
    );
    let b = of(&slug_b, &read_b, format!("/overview?{w}")).await;
    assert_near(
        &b["jobs"],
        &json!({"pending": 0, "active": 0, "completed": 0, "failed": 1, "cancelled": 0, "success_rate": 0.0}),
        "b",
    );
    assert_eq!(b["machines"]["total"], 0);
    assert_eq!(b["recent_failures"][0]["id"], "b1");
    let b = of(&slug_b, &read_b, format!("/metrics/jobs?{w}&step=1h")).await;
    assert_eq!(
        (
            b["buckets"][0]["submitted"].as_i64(),
            b["buckets"][0]["failed"].as_i64()
        ),
        (Some(1), Some(1))
    );
    let b = of(&slug_b, &read_b, "/metrics/series/names".into()).await;
    assert_eq!(
        b,
        json!({"names": [{"name": "gpu_utilization_pct", "series": 1}]})
    );
    let a = of(&slug_a, &app.read, "/metrics/series/names".into()).await;
    assert_eq!(a, json!({"names": []}));
}
