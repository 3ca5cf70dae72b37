//! Many live-stream clients that never read, on a `fleetmon serve` process, while thousands of
//! changes are ingested, twice: what they are owed is kept once, in the org's bounded log of
//! recent changes (past it, a client is owed a resync rather than every change), and each holds
//! at most the push it could not write, so once those are full the process's memory stops
//! growing with the changes it could not deliver.

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
/// Distinct jobs changed per round: as many as the org's log of recent changes holds.
const JOBS_PER_ROUND: usize = 10 * MAX_IDS;
/// A sleeper's buffers fill in the first round; the second shows whether memory keeps growing.
const ROUNDS: usize = 2;
/// Growth allowed in the first round, from the org's full log and 100 pushes (up to `MAX_IDS`
/// changed rows each, rendered for a write that cannot proceed): generous.
const MAX_FIRST_ROUND_GROWTH_KB: u64 = 256 * 1024;
/// Growth allowed in the second round, once every buffer is full. Unbounded buffers would take
/// another `SLEEPERS × JOBS_PER_ROUND` (a million) job ids, well over this.
const MAX_LATER_GROWTH_KB: u64 = 24 * 1024;

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
    let mut rss = vec![rss_kb(server.pid())];

    // Through the agent SDK: while the streams catch up, a busy pool answers 503 and it retries.
    let agent = Client::start(ClientConfig::new(&server.base, &ingest)).unwrap();
    for round in 0..ROUNDS {
        let notified = metric(&server.base, "fleetmon_change_notifications_total", &[]).await;
        let batches_before = agent.stats().sent_batches;
        for i in 0..JOBS_PER_ROUND {
            let job = event(
                "job.submitted",
                json!({"job_id": format!("bulk-{round}-{i}"), "name": "x".repeat(200)}),
            );
            agent.send(serde_json::from_value(job).unwrap()).unwrap();
        }
        let flushed = tokio::time::timeout(PATIENCE, agent.flush()).await;
        let stats = agent.stats();
        assert!(flushed.is_ok(), "ingest stalled: {stats:?}");
        assert_eq!(
            stats.accepted,
            ((round + 1) * JOBS_PER_ROUND) as u64,
            "{stats:?}"
        );
        // Each batch is at least one notification.
        let batches = (stats.sent_batches - batches_before) as f64;
        rss.push(settle(&server.base, notified + batches, server.pid()).await);
    }
    assert!(
        rss[1].saturating_sub(rss[0]) < MAX_FIRST_ROUND_GROWTH_KB,
        "RSS (kB) by round: {rss:?}"
    );
    assert!(
        rss[2].saturating_sub(rss[1]) < MAX_LATER_GROWTH_KB,
        "RSS (kB) by round: {rss:?}"
    );
    assert_eq!(
        metric(&server.base, "fleetmon_stream_clients", &[]).await,
        SLEEPERS as f64,
        "the sleepers are still connected"
    );
    assert!(server.is_running());
    drop(sleepers);
}
