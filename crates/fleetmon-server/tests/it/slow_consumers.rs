//! Many live-stream clients that never read, on a `fleetmon serve` process, while tens of
//! thousands of changes are ingested: each costs a bounded buffer (past it, the client is owed a
//! resync rather than every change), so the process's memory does not grow with the changes it
//! could not deliver.

use std::time::{Duration, Instant};

use fleetmon_client::{Client, ClientConfig};
use fleetmon_server::live::MAX_IDS;
use serde_json::json;

use crate::harness::{url_for, TestDb};
use crate::ingest_http::event;
use crate::prometheus::{find, scrape};
use crate::stream::{never_reading, serve_on};
use crate::sustained_ingest::{org_with_ingest_token, slug_and_read_token, PATIENCE};

const SLEEPERS: usize = 100;
/// Distinct jobs changed: each sleeper would hold this many ids if its buffer were unbounded.
const JOBS: usize = 20 * MAX_IDS;
/// Growth allowed while the jobs are ingested. Unbounded buffers would hold `SLEEPERS × JOBS`
/// (2 million) job ids, well over this; bounded ones hold `SLEEPERS × MAX_IDS` at most.
const MAX_GROWTH_KB: u64 = 64 * 1024;

/// The resident set size of process `pid`, in kB.
fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

async fn metric(base: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    find(&scrape(base).await, name, labels).unwrap_or(0.0)
}

/// Waits until `name` reaches `at_least`.
async fn wait_for_metric(base: &str, name: &str, at_least: f64) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let value = metric(base, name, &[]).await;
        if value >= at_least {
            return;
        }
        assert!(Instant::now() < deadline, "{name} stayed at {value}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the change listener has received at least `at_least` notifications and no more
/// arrive for a few scrapes (the hub has then handed every change to the streams), sampling
/// the resident set meanwhile; returns the largest sample.
async fn settle(base: &str, at_least: f64, pid: u32) -> u64 {
    const NOTIFICATIONS: &str = "fleetmon_change_notifications_total";
    let deadline = Instant::now() + PATIENCE;
    let (mut last, mut unchanged, mut peak) = (-1.0, 0, 0);
    while unchanged < 3 {
        assert!(Instant::now() < deadline, "notifications kept coming");
        tokio::time::sleep(Duration::from_millis(300)).await;
        peak = peak.max(rss_kb(pid));
        let now = metric(base, NOTIFICATIONS, &[]).await;
        unchanged = if now >= at_least && now == last {
            unchanged + 1
        } else {
            0
        };
        last = now;
    }
    peak
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_clients_that_never_read_do_not_grow_memory_without_bound() {
    let db = TestDb::new().await;
    let tenant = db.tenant();
    let (org, ingest) = org_with_ingest_token(&tenant).await;
    let (slug, read) = slug_and_read_token(&tenant, org).await;
    // Every sleeper comes from one loopback address, as through a proxy: no per-address limit.
    let env = [
        ("DATABASE_URL", url_for(&db.name)),
        ("FLEETMON_API_RATE_LIMIT", "0".to_string()),
    ];
    let mut server = serve_on("127.0.0.1:0", &env);
    let path = format!("/api/v1/orgs/{slug}/stream");
    let mut sleepers = Vec::new();
    for _ in 0..SLEEPERS {
        sleepers.push(never_reading(&server.base, &path, &read).await);
    }
    wait_for_metric(&server.base, "fleetmon_stream_clients", SLEEPERS as f64).await;
    let notified = metric(&server.base, "fleetmon_change_notifications_total", &[]).await;
    let before = rss_kb(server.pid());

    // Through the agent SDK: while the streams catch up, a busy pool answers 503 and it retries.
    let agent = Client::start(ClientConfig::new(&server.base, &ingest)).unwrap();
    for i in 0..JOBS {
        let job = event(
            "job.submitted",
            json!({"job_id": format!("bulk-{i}"), "name": "x".repeat(200)}),
        );
        agent.send(serde_json::from_value(job).unwrap()).unwrap();
    }
    let flushed = tokio::time::timeout(PATIENCE, agent.flush()).await;
    let stats = agent.stats();
    assert!(flushed.is_ok(), "ingest stalled: {stats:?}");
    assert_eq!(stats.accepted, JOBS as u64, "{stats:?}");
    // Each batch is at least one notification.
    let peak = settle(
        &server.base,
        notified + stats.sent_batches as f64,
        server.pid(),
    )
    .await;
    assert!(
        peak.saturating_sub(before) < MAX_GROWTH_KB,
        "RSS grew from {before} kB to {peak} kB"
    );
    assert_eq!(
        metric(&server.base, "fleetmon_stream_clients", &[]).await,
        SLEEPERS as f64,
        "the sleepers are still connected"
    );
    assert!(server.is_running());
    drop(sleepers);
}
