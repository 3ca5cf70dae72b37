//! Sustained ingest through the agent SDK (`fleetmon-client`) for the fault tests, and the two
//! checks that follow a fault: the stored history is exactly the events the client was told were
//! accepted (at first or on a retry), and the projected state equals a fresh projection of it.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fleetmon_client::{Client, ClientConfig, Event, Stats};
use fleetmon_server::auth::tokens::{self, TokenKind};
use fleetmon_server::db::sql::query_scalar;
use fleetmon_server::db::{TenantContext, TenantDb};
use serde_json::json;
use uuid::Uuid;

use crate::ingest_http::event;

/// Longest any wait in a fault test; only a hang reaches it.
pub const PATIENCE: Duration = Duration::from_secs(60);
/// How often the agent reports: a few jobs' lifecycles and heartbeats per tick.
const TICK: Duration = Duration::from_millis(10);

/// A free loopback port, for a server that must come back where its clients expect it.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A new org and an ingest token for it.
pub async fn org_with_ingest_token(tenant: &TenantDb) -> (Uuid, String) {
    let org = crate::fixtures::create_org(tenant, "fault").await;
    let mut tx = tenant.begin(TenantContext::org(org)).await.unwrap();
    let token = tokens::create(tx.conn(), org, TokenKind::Ingest, "agent", None)
        .await
        .unwrap()
        .secret;
    tx.commit().await.unwrap();
    (org, token)
}

/// The slug of `org` and a read token for it.
pub async fn slug_and_read_token(tenant: &TenantDb, org: Uuid) -> (String, String) {
    let mut tx = tenant.begin(TenantContext::org(org)).await.unwrap();
    let slug = query_scalar("SELECT slug FROM organizations WHERE id = $1")
        .bind(org)
        .fetch_one(tx.conn())
        .await
        .unwrap();
    let read = tokens::create(tx.conn(), org, TokenKind::Read, "dashboard", None)
        .await
        .unwrap()
        .secret;
    tx.commit().await.unwrap();
    (slug, read)
}

/// An agent reporting a small fleet through a `fleetmon-client` until [`Load::finish`].
pub struct Load {
    client: Client,
    sent: Arc<Mutex<Vec<Event>>>,
    stop: Arc<AtomicBool>,
    producer: tokio::task::JoinHandle<()>,
}

impl Load {
    pub fn start(base: &str, token: &str) -> Self {
        let mut config = ClientConfig::new(base, token);
        config.max_batch_events = 200;
        config.max_batch_delay = Duration::from_millis(20);
        // Short pauses, so that the client is back soon after the server is.
        config.max_backoff = Duration::from_millis(500);
        config.request_timeout = Duration::from_secs(5);
        let client = Client::start(config).unwrap();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let producer = tokio::spawn(produce(client.clone(), sent.clone(), stop.clone()));
        Self {
            client,
            sent,
            stop,
            producer,
        }
    }

    /// Events the server has answered for so far, stored or already there.
    pub fn delivered(&self) -> u64 {
        let stats = self.client.stats();
        stats.accepted + stats.duplicates
    }

    /// Waits until `more` events beyond those delivered now have been delivered.
    pub async fn wait_for_more(&self, more: u64) {
        let target = self.delivered() + more;
        let deadline = Instant::now() + PATIENCE;
        while self.delivered() < target {
            assert!(
                Instant::now() < deadline,
                "ingest stalled: {:?}",
                self.client.stats()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops producing, waits until everything sent is delivered, and returns what was sent
    /// with the client's final counters.
    pub async fn finish(self) -> (Vec<Event>, Stats) {
        self.stop.store(true, Ordering::SeqCst);
        self.producer.await.unwrap();
        tokio::time::timeout(PATIENCE, self.client.flush())
            .await
            .expect("the client delivers what it holds");
        let stats = self.client.stats();
        let sent = std::mem::take(&mut *self.sent.lock().unwrap());
        (sent, stats)
    }
}

async fn produce(client: Client, sent: Arc<Mutex<Vec<Event>>>, stop: Arc<AtomicBool>) {
    let mut tick = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let machine = format!("m{}", tick % 4);
        let worker = format!("{machine}-w{}", tick % 3);
        let job = format!("job-{tick}");
        let placed = json!({"job_id": job, "worker_id": worker, "machine_id": machine});
        let bodies = [
            event(
                "machine.heartbeat",
                json!({"machine_id": machine, "status": "ready",
                       "host": {"hostname": format!("{machine}.lan")}, "uptime_s": tick}),
            ),
            event(
                "worker.heartbeat",
                json!({"worker_id": worker, "machine_id": machine, "status": "busy",
                       "current_job_id": job}),
            ),
            event("job.submitted", json!({"job_id": job, "name": "crunch"})),
            event("job.started", placed),
            event(
                "job.completed",
                json!({"job_id": job, "worker_id": worker, "machine_id": machine,
                       "duration_ms": tick}),
            ),
        ];
        for body in bodies {
            let event: Event = serde_json::from_value(body).unwrap();
            client
                .send(event.clone())
                .expect("the buffer is large enough for every outage here");
            sent.lock().unwrap().push(event);
        }
        tick += 1;
        tokio::time::sleep(TICK).await;
    }
}

/// Asserts that the client resolved every event by delivery and that `org`'s stored history is
/// exactly `sent`: none lost, none stored twice.
pub async fn assert_stored_exactly(tenant: &TenantDb, org: Uuid, sent: &[Event], stats: &Stats) {
    assert_eq!(
        (stats.dropped, stats.failed, stats.rejected, stats.queued),
        (0, 0, 0, 0),
        "{stats:?}"
    );
    assert_eq!(
        stats.accepted + stats.duplicates,
        sent.len() as u64,
        "{stats:?}"
    );
    let mut tx = tenant.begin(TenantContext::org(org)).await.unwrap();
    let stored: Vec<Uuid> =
        query_scalar("SELECT event_id FROM job_events UNION ALL SELECT event_id FROM fleet_events")
            .fetch_all(tx.conn())
            .await
            .unwrap();
    tx.commit().await.unwrap();
    let distinct: BTreeSet<Uuid> = stored.iter().copied().collect();
    assert_eq!(distinct.len(), stored.len(), "an event was stored twice");
    let expected: BTreeSet<Uuid> = sent.iter().map(|e| e.id).collect();
    let lost = expected.difference(&distinct).count();
    let unknown = distinct.difference(&expected).count();
    assert_eq!((lost, unknown), (0, 0), "lost, and stored but never sent");
}

/// Asserts that `org`'s jobs, machines and workers equal those a fresh org gets from `sent` in
/// one batch.
pub async fn assert_projection_is_fresh(tenant: &TenantDb, org: Uuid, sent: &[Event]) {
    let fresh = crate::fixtures::create_org(tenant, "fresh").await;
    crate::projection::ingest(tenant, fresh, &[sent.to_vec()]).await;
    let got = crate::projection::snapshot(tenant, org).await;
    let expected = crate::projection::snapshot(tenant, fresh).await;
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "the projection differs from a fresh one");
}
