//! Order independence: any permutation of a set of events, with any events duplicated and any
//! split into batches, produces identical `jobs`, `machines` and `workers` rows.

use chrono::{DateTime, Duration, TimeZone, Utc};
use fleetmon_proto::ingest::*;
use fleetmon_server::db::sql::query_scalar;
use fleetmon_server::db::{TenantContext, TenantDb};
use fleetmon_server::ingest::series::SeriesCache;
use fleetmon_server::ingest::store;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use uuid::Uuid;

use crate::fixtures;
use crate::harness::TestDb;

fn base() -> DateTime<Utc> {
    let now = Utc::now();
    Utc.timestamp_opt(now.timestamp() - 3600, 0).unwrap()
}

fn ev(at: DateTime<Utc>, seconds: i64, body: EventBody) -> Event {
    Event {
        id: Uuid::new_v4(),
        at: at + Duration::seconds(seconds),
        body,
    }
}

fn job(id: &str, attempt: u32, worker: Option<&str>) -> JobRef {
    JobRef {
        job_id: id.to_string(),
        attempt,
        worker_id: worker.map(str::to_string),
        machine_id: worker.map(|_| "m1".to_string()),
    }
}

/// A fleet's worth of events in source order, including the races a real queue produces.
fn scenario() -> Vec<Event> {
    let t = base();
    let mut events = vec![
        ev(
            t,
            0,
            EventBody::MachineHeartbeat(MachineHeartbeat {
                machine_id: "m1".into(),
                status: Some(MachineState::Starting),
                host: Some(HostInfo {
                    hostname: Some("gpu-01".into()),
                    cpu_cores: Some(32),
                    ..Default::default()
                }),
                gpus: Some(vec![Gpu {
                    index: 0,
                    name: Some("A100".into()),
                    utilization_pct: Some(5.0),
                    ..Default::default()
                }]),
                labels: None,
                uptime_s: Some(10),
            }),
        ),
        ev(
            t,
            30,
            EventBody::MachineHeartbeat(MachineHeartbeat {
                machine_id: "m1".into(),
                status: Some(MachineState::Ready),
                host: Some(HostInfo {
                    hostname: Some("gpu-01".into()),
                    cpu_cores: Some(32),
                    ..Default::default()
                }),
                gpus: Some(vec![Gpu {
                    index: 0,
                    name: Some("A100".into()),
                    utilization_pct: Some(95.0),
                    ..Default::default()
                }]),
                labels: Some([("zone".to_string(), "a".to_string())].into()),
                uptime_s: Some(40),
            }),
        ),
        ev(
            t,
            35,
            EventBody::MachineStatus(MachineStatus {
                machine_id: "m1".into(),
                status: MachineState::Ready,
                message: None,
            }),
        ),
        ev(
            t,
            5,
            EventBody::MachineHeartbeat(MachineHeartbeat {
                machine_id: "m2".into(),
                status: Some(MachineState::Ready),
                host: None,
                gpus: None,
                labels: None,
                uptime_s: None,
            }),
        ),
        ev(
            t,
            50,
            EventBody::MachineShutdown(MachineShutdown {
                machine_id: "m2".into(),
                reason: Some("maintenance".into()),
            }),
        ),
        ev(
            t,
            1,
            EventBody::WorkerHeartbeat(WorkerHeartbeat {
                worker_id: "w1".into(),
                machine_id: "m1".into(),
                status: WorkerState::Idle,
                current_job_id: None,
                capabilities: Some(Capabilities {
                    services: vec!["render".into()],
                    models: vec![],
                    gpu_index: Some(0),
                }),
                services: Some([("render".to_string(), ServiceState::Idle)].into()),
                version: Some("1.0".into()),
            }),
        ),
        ev(
            t,
            20,
            EventBody::WorkerHeartbeat(WorkerHeartbeat {
                worker_id: "w1".into(),
                machine_id: "m1".into(),
                status: WorkerState::Busy,
                current_job_id: Some("j1".into()),
                capabilities: None,
                services: Some([("render".to_string(), ServiceState::Active)].into()),
                version: Some("1.0".into()),
            }),
        ),
        ev(
            t,
            25,
            EventBody::WorkerStatus(WorkerStatus {
                worker_id: "w2".into(),
                machine_id: None,
                status: WorkerState::Error,
                message: None,
            }),
        ),
        ev(
            t,
            2,
            EventBody::Metrics(Metrics {
                machine_id: "m1".into(),
                worker_id: None,
                samples: vec![Sample {
                    name: "gpu_util".into(),
                    value: 12.0,
                    labels: Default::default(),
                    at: None,
                }],
            }),
        ),
    ];
    // j1: attempt 1 fails and is retried; attempt 2 completes on another worker.
    events.extend([
        ev(
            t,
            3,
            EventBody::JobSubmitted(JobSubmitted {
                job: job("j1", 1, None),
                workflow_id: Some("wf".into()),
                name: Some("frame 1".into()),
                job_type: Some("render".into()),
                priority: Some(5),
                customer_id: Some("acme".into()),
                max_retries: Some(2),
                payload: Some(serde_json::json!({"frame": 1})),
            }),
        ),
        ev(t, 4, EventBody::JobQueued(job("j1", 1, None))),
        ev(t, 6, EventBody::JobAssigned(job("j1", 1, Some("w1")))),
        ev(t, 7, EventBody::JobStarted(job("j1", 1, Some("w1")))),
        ev(
            t,
            8,
            EventBody::JobProgress(JobProgress {
                job: job("j1", 1, Some("w1")),
                progress: 40.0,
                message: Some("half".into()),
            }),
        ),
        ev(
            t,
            9,
            EventBody::JobFailed(JobFailed {
                job: job("j1", 1, Some("w1")),
                error: JobError {
                    kind: Some("gpu".into()),
                    reason: Some("oom".into()),
                    message: Some("CUDA out of memory".into()),
                    cause: None,
                },
                will_retry: true,
            }),
        ),
        // Progress reported after the failure of the same attempt: must not revive it.
        ev(
            t,
            10,
            EventBody::JobProgress(JobProgress {
                job: job("j1", 1, Some("w1")),
                progress: 60.0,
                message: None,
            }),
        ),
        ev(t, 11, EventBody::JobRetried(job("j1", 2, None))),
        ev(t, 12, EventBody::JobAssigned(job("j1", 2, Some("w2")))),
        ev(t, 13, EventBody::JobStarted(job("j1", 2, Some("w2")))),
        ev(
            t,
            14,
            EventBody::JobCompleted(JobCompleted {
                job: job("j1", 2, Some("w2")),
                result: Some(serde_json::json!({"ok": true})),
                duration_ms: Some(1000),
            }),
        ),
        // j2 completes; j3 times out; j4 is cancelled while queued.
        ev(
            t,
            15,
            EventBody::JobSubmitted(JobSubmitted {
                job: job("j2", 1, None),
                workflow_id: None,
                name: None,
                job_type: Some("encode".into()),
                priority: None,
                customer_id: None,
                max_retries: None,
                payload: None,
            }),
        ),
        ev(t, 16, EventBody::JobStarted(job("j2", 1, Some("w1")))),
        ev(
            t,
            17,
            EventBody::JobCompleted(JobCompleted {
                job: job("j2", 1, Some("w1")),
                result: None,
                duration_ms: None,
            }),
        ),
        ev(t, 18, EventBody::JobStarted(job("j3", 1, Some("w1")))),
        ev(
            t,
            19,
            EventBody::JobTimeout(JobEnded {
                job: job("j3", 1, Some("w1")),
                reason: Some("deadline".into()),
            }),
        ),
        ev(t, 21, EventBody::JobQueued(job("j4", 1, None))),
        ev(
            t,
            22,
            EventBody::JobCancelled(JobEnded {
                job: job("j4", 1, None),
                reason: Some("user".into()),
            }),
        ),
    ]);
    events
}

/// The rows a set of events produced, as text, for comparison across orgs.
pub(crate) async fn snapshot(db: &TenantDb, org: Uuid) -> Vec<String> {
    let mut tx = db.begin(TenantContext::org(org)).await.unwrap();
    let mut rows = Vec::new();
    for sql in [
        "SELECT (to_jsonb(j) - 'org_id' - 'updated_at')::text FROM jobs j ORDER BY id",
        "SELECT (to_jsonb(m) - 'org_id' - 'created_at' - 'updated_at')::text FROM machines m ORDER BY id",
        "SELECT (to_jsonb(w) - 'org_id' - 'created_at' - 'updated_at')::text FROM workers w ORDER BY id",
        "SELECT count(*)::text FROM metric_samples",
        "SELECT count(*)::text FROM job_events",
        "SELECT count(*)::text FROM fleet_events",
    ] {
        let part: Vec<String> = query_scalar(sql).fetch_all(tx.conn()).await.unwrap();
        rows.extend(part);
    }
    rows
}

pub(crate) async fn ingest(db: &TenantDb, org: Uuid, batches: &[Vec<Event>]) {
    for batch in batches {
        let mut tx = db.begin(TenantContext::org(org)).await.unwrap();
        store::store(tx.conn(), org, &SeriesCache::default(), batch)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
}

#[test]
fn any_order_any_duplicates_any_batching_gives_the_same_state() {
    let runtime = crate::harness::runtime();
    let db = runtime.block_on(TestDb::new());
    let tenant = db.tenant();
    let events = scenario();
    let reference = runtime.block_on(async {
        let org = fixtures::create_org(&tenant, "ref").await;
        ingest(&tenant, org, std::slice::from_ref(&events)).await;
        snapshot(&tenant, org).await
    });

    let n = events.len();
    let strategy = (
        Just((0..n).collect::<Vec<_>>()).prop_shuffle(),
        prop::collection::vec(0..n, 0..n),
        prop::collection::vec(1usize..12, 1..8),
    );
    let mut runner = TestRunner::new(Config {
        cases: 40,
        ..Config::default()
    });
    runner
        .run(&strategy, |(order, duplicated, sizes)| {
            let mut sent: Vec<Event> = order.iter().map(|&i| events[i].clone()).collect();
            for &i in &duplicated {
                let at = (i * 7) % (sent.len() + 1);
                sent.insert(at, events[i].clone());
            }
            let mut batches = Vec::new();
            let mut rest = sent.as_slice();
            for size in sizes.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (head, tail) = rest.split_at((*size).min(rest.len()));
                batches.push(head.to_vec());
                rest = tail;
            }
            let got = runtime.block_on(async {
                let org = fixtures::create_org(&tenant, "perm").await;
                ingest(&tenant, org, &batches).await;
                snapshot(&tenant, org).await
            });
            prop_assert_eq!(got, reference.clone());
            Ok(())
        })
        .unwrap();
}

#[tokio::test]
async fn the_races_resolve_as_a_person_would_expect() {
    let db = TestDb::new().await;
    let tenant = db.tenant();
    let org = fixtures::create_org(&tenant, "race").await;
    let mut events = scenario();
    events.reverse(); // the worst arrival order: everything backwards
    ingest(&tenant, org, &[events]).await;

    let mut tx = tenant.begin(TenantContext::org(org)).await.unwrap();
    let (status, attempt, worker, progress): (String, i32, Option<String>, Option<f32>) =
        fleetmon_server::db::sql::query_as(
            "SELECT status, attempt, worker_id, progress FROM jobs WHERE id = 'j1'",
        )
        .fetch_one(tx.conn())
        .await
        .unwrap();
    assert_eq!(
        (status.as_str(), attempt, worker.as_deref(), progress),
        ("completed", 2, Some("w2"), Some(100.0))
    );
    let statuses: Vec<(String, String)> =
        fleetmon_server::db::sql::query_as("SELECT id, status FROM jobs ORDER BY id")
            .fetch_all(tx.conn())
            .await
            .unwrap();
    let statuses: Vec<(&str, &str)> = statuses
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(
        statuses,
        [
            ("j1", "completed"),
            ("j2", "completed"),
            ("j3", "timeout"),
            ("j4", "cancelled")
        ]
    );

    // The newest heartbeat wins, whatever arrived last; a shutdown marks the machine.
    let (m1_status, util, shutdown): (Option<String>, f64, bool) =
        fleetmon_server::db::sql::query_as(
            "SELECT reported_status, (gpus->0->>'utilization_pct')::float8,
                (SELECT shutdown_at IS NOT NULL FROM machines WHERE id = 'm2')
         FROM machines WHERE id = 'm1'",
        )
        .fetch_one(tx.conn())
        .await
        .unwrap();
    assert_eq!(
        (m1_status.as_deref(), util, shutdown),
        (Some("ready"), 95.0, true)
    );

    // Counters: w1 finished j2 and lost j3 (timeout) — j1 attempt 1 was superseded by attempt 2.
    let counters: Vec<(String, i64, i64, Option<String>)> = fleetmon_server::db::sql::query_as(
        "SELECT id, jobs_completed, jobs_failed, status FROM workers ORDER BY id",
    )
    .fetch_all(tx.conn())
    .await
    .unwrap();
    assert_eq!(
        counters,
        vec![
            ("w1".into(), 1, 1, Some("busy".into())),
            ("w2".into(), 1, 0, Some("error".into()))
        ]
    );
}

/// Stores `batch`, retrying deadlocks with concurrent batches as the HTTP handler does.
async fn ingest_retrying(db: &TenantDb, org: Uuid, batch: &[Event]) {
    for attempt in 0..20u64 {
        let mut tx = db.begin(TenantContext::org(org)).await.unwrap();
        match store::store(tx.conn(), org, &SeriesCache::default(), batch).await {
            Ok(_) => {
                tx.commit().await.unwrap();
                return;
            }
            Err(fleetmon_server::db::DbError::Sql(sqlx::Error::Database(e)))
                if e.code().as_deref() == Some("40P01") =>
            {
                drop(tx);
                tokio::time::sleep(std::time::Duration::from_millis(5 * attempt)).await;
            }
            Err(other) => panic!("{other}"),
        }
    }
    panic!("a batch kept deadlocking");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_batches_touching_the_same_jobs_converge_to_the_same_state() {
    let db = TestDb::with_pool_size(8).await;
    let tenant = db.tenant();
    let events = scenario();
    let reference = {
        let org = fixtures::create_org(&tenant, "ref").await;
        ingest(&tenant, org, std::slice::from_ref(&events)).await;
        snapshot(&tenant, org).await
    };
    for round in 0..6usize {
        let org = fixtures::create_org(&tenant, "conc").await;
        // Deal the events (and a duplicate of every third one) round-robin into 6 batches that
        // all run at once, so batches race to create and update the same jobs and workers.
        let mut batches: Vec<Vec<Event>> = vec![Vec::new(); 6];
        for (i, event) in events.iter().enumerate() {
            batches[(i + round) % 6].push(event.clone());
            if i % 3 == 0 {
                batches[(i + round + 1) % 6].push(event.clone());
            }
        }
        let tasks: Vec<_> = batches
            .into_iter()
            .map(|batch| {
                let tenant = tenant.clone();
                tokio::spawn(async move { ingest_retrying(&tenant, org, &batch).await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(snapshot(&tenant, org).await, reference, "round {round}");
    }
}

#[tokio::test]
async fn series_ids_of_a_rolled_back_batch_are_not_remembered() {
    let db = TestDb::new().await;
    let tenant = db.tenant();
    let org = fixtures::create_org(&tenant, "series").await;
    let cache = SeriesCache::default();
    let metrics = |value: f64| Event {
        id: Uuid::new_v4(),
        at: base(),
        body: EventBody::Metrics(Metrics {
            machine_id: "m1".into(),
            worker_id: None,
            samples: vec![Sample {
                name: "gpu_util".into(),
                value,
                labels: Default::default(),
                at: None,
            }],
        }),
    };

    // The batch creates the series, then its transaction rolls back (a deadlock, a dropped request).
    let mut tx = tenant.begin(TenantContext::org(org)).await.unwrap();
    let stored = store::store(tx.conn(), org, &cache, &[metrics(1.0)])
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    drop(stored); // never remembered: the handler remembers only after commit

    let mut tx = tenant.begin(TenantContext::org(org)).await.unwrap();
    let stored = store::store(tx.conn(), org, &cache, &[metrics(2.0)])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    cache.remember(stored.series);

    let mut tx = tenant.begin(TenantContext::org(org)).await.unwrap();
    let joined: Vec<f64> = query_scalar(
        "SELECT s.value FROM metric_samples s JOIN metric_series m ON m.org_id = s.org_id AND m.id = s.series_id",
    )
    .fetch_all(tx.conn())
    .await
    .unwrap();
    assert_eq!(
        joined,
        vec![2.0],
        "the sample refers to a series that exists"
    );
}
