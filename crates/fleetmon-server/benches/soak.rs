//! Soak: many live-stream clients, steady ingest and API reads at once, for a while — what an
//! org watched on many screens while its fleet is busy costs, and whether anything fails.
//!
//! `cargo bench -p fleetmon-server --bench soak`, sized by `SOAK_STREAMS` (SSE clients, default
//! 1000), `SOAK_EVENTS_PER_S` (default 5000, in batches of 500), `SOAK_READS_PER_S` (jobs list
//! and overview alternately, default 20) and `SOAK_SECONDS` (default 60). It starts its own
//! embedded PostgreSQL in a temporary directory and a `fleetmon serve` child process with the
//! per-address API limit off (every client here shares one address), then reports, per kind of
//! request, how many failed and the p50/p99 latencies, how many stream events arrived, and the
//! server's peak memory. Not part of the test suite: it is meant for a quiet machine.

#[path = "support/env.rs"]
mod env;
#[path = "support/latency.rs"]
mod latency;
#[path = "support/pg.rs"]
mod pg;
#[path = "support/server.rs"]
mod server;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fleetmon_server::auth::tokens::{self, TokenKind};
use fleetmon_server::db::sql::query_scalar;
use fleetmon_server::db::{TenantContext, TenantDb};
use sqlx::ConnectOptions;
use uuid::Uuid;

use env::env_or;
use latency::Figures;
use pg::BenchPostgres;
use server::{generate, Server};

const BATCH: usize = 500;

/// What one kind of request saw.
#[derive(Default)]
struct Tally {
    latencies: Mutex<Vec<Duration>>,
    failures: AtomicU64,
}

impl Tally {
    fn record(&self, started: Instant, ok: bool) {
        self.latencies.lock().unwrap().push(started.elapsed());
        if !ok {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn print(&self, name: &str, seconds: f64) {
        let latencies = std::mem::take(&mut *self.latencies.lock().unwrap());
        let count = latencies.len();
        let figures = Figures::new(latencies, count as f64 / seconds);
        println!(
            "| {name} | {count} | {} | {:.0} | {:.2} | {:.2} |",
            self.failures.load(Ordering::Relaxed),
            figures.per_second,
            figures.percentile_ms(50.0),
            figures.percentile_ms(99.0),
        );
    }
}

/// Calls `request` `per_second` times a second until `until`, each call in a task of its own so
/// that a slow answer does not slow the pace.
async fn paced<F, Fut>(per_second: usize, until: Instant, request: F)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / per_second.max(1) as f64));
    let mut tasks = Vec::new();
    let mut n = 0;
    while Instant::now() < until {
        tick.tick().await;
        tasks.push(tokio::spawn(request(n)));
        n += 1;
    }
    for task in tasks {
        let _ = task.await;
    }
}

#[tokio::main]
async fn main() {
    let streams = env_or("SOAK_STREAMS", 1000);
    let events_per_s = env_or("SOAK_EVENTS_PER_S", 5000);
    let reads_per_s = env_or("SOAK_READS_PER_S", 20);
    let seconds = env_or("SOAK_SECONDS", 60) as u64;
    // Each stream is a socket on both sides of loopback, all in this process and its child.
    let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .expect("the open-files limit");
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard)
        .expect("raising the open-files limit");

    let pg = BenchPostgres::start(2).await;
    let tenant = TenantDb::new(pg.pool.clone());
    let mut tx = tenant.begin(TenantContext::none()).await.unwrap();
    let org: Uuid =
        query_scalar("INSERT INTO organizations (slug, name) VALUES ('soak', 'soak') RETURNING id")
            .fetch_one(tx.conn())
            .await
            .unwrap();
    tx.commit().await.unwrap();
    let mut tx = tenant.begin(TenantContext::org(org)).await.unwrap();
    let ingest = tokens::create(tx.conn(), org, TokenKind::Ingest, "soak", None)
        .await
        .unwrap()
        .secret;
    let read = tokens::create(tx.conn(), org, TokenKind::Read, "soak", None)
        .await
        .unwrap()
        .secret;
    tx.commit().await.unwrap();

    let batches_per_s = (events_per_s / BATCH).max(1);
    eprintln!(
        "generating {} simulator events…",
        events_per_s * seconds as usize
    );
    let bodies: Arc<Vec<String>> = Arc::new(
        generate(batches_per_s * BATCH * seconds as usize)
            .chunks(BATCH)
            .map(|c| serde_json::json!({ "events": c }).to_string())
            .collect(),
    );
    let url = pg.server.connect_options().to_url_lossy().to_string();
    let server = Server::start(&url, &[("FLEETMON_API_RATE_LIMIT", "0")]).await;
    let base = server.base.clone();
    let http = reqwest::Client::new();
    let rss_start = server.memory_kib("VmRSS:");

    eprintln!("opening {streams} streams…");
    let opened = Arc::new(Tally::default());
    let received = Arc::new(AtomicU64::new(0));
    let ended_early = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for _ in 0..streams {
        let (http, url, read) = (
            http.clone(),
            format!("{base}/api/v1/orgs/soak/stream"),
            read.clone(),
        );
        let (opened, received, ended_early) =
            (opened.clone(), received.clone(), ended_early.clone());
        readers.push(tokio::spawn(async move {
            let started = Instant::now();
            let response = http.get(url).bearer_auth(read).send().await;
            let Ok(mut response) = response.and_then(|r| r.error_for_status()) else {
                opened.record(started, false);
                return;
            };
            opened.record(started, true);
            // An event is a line starting `event:`; the last 6 bytes of what came before are kept
            // so that one split across chunks still counts, once.
            let mut seen = b"\n".to_vec();
            while let Ok(Some(chunk)) = response.chunk().await {
                seen.extend_from_slice(&chunk);
                let events = seen.windows(7).filter(|w| w == b"\nevent:").count();
                received.fetch_add(events as u64, Ordering::Relaxed);
                seen.drain(..seen.len().saturating_sub(6));
            }
            // The server ends streams only when it shuts down, which it does not here.
            ended_early.fetch_add(1, Ordering::Relaxed);
        }));
    }
    while opened.latencies.lock().unwrap().len() < streams {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    eprintln!("{events_per_s} events/s and {reads_per_s} reads/s for {seconds} s…");
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (peak, pid) = (peak.clone(), server.pid());
        tokio::spawn(async move {
            loop {
                let now = server::memory_kib_of(pid, "VmRSS:");
                peak.fetch_max(now, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    let (ingested, reads) = (Arc::new(Tally::default()), Arc::new(Tally::default()));
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let ingest_load = paced(batches_per_s, until, |n| {
        let (http, base, ingest, bodies, ingested) = (
            http.clone(),
            base.clone(),
            ingest.clone(),
            bodies.clone(),
            ingested.clone(),
        );
        async move {
            let begun = Instant::now();
            let sent = http
                .post(format!("{base}/api/v1/ingest"))
                .bearer_auth(ingest)
                .header("content-type", "application/json")
                .body(bodies[n % bodies.len()].clone())
                .send()
                .await;
            ingested.record(begun, sent.is_ok_and(|r| r.status().is_success()));
        }
    });
    let read_load = paced(reads_per_s, until, |n| {
        let (http, base, read, reads) = (http.clone(), base.clone(), read.clone(), reads.clone());
        async move {
            let path = if n % 2 == 0 { "jobs" } else { "overview" };
            let begun = Instant::now();
            let answer = http
                .get(format!("{base}/api/v1/orgs/soak/{path}"))
                .bearer_auth(read)
                .send()
                .await;
            reads.record(begun, answer.is_ok_and(|r| r.status().is_success()));
        }
    });
    tokio::join!(ingest_load, read_load);
    let elapsed = started.elapsed().as_secs_f64();
    sampler.abort();
    let rss_peak = peak
        .load(Ordering::Relaxed)
        .max(server.memory_kib("VmRSS:"));
    let early = ended_early.load(Ordering::Relaxed);
    for reader in &readers {
        reader.abort();
    }
    drop(server);
    pg.stop().await;

    println!(
        "soak: {streams} streams, {} events/s in batches of {BATCH}, {reads_per_s} reads/s, {elapsed:.0} s",
        batches_per_s * BATCH
    );
    println!("| requests | count | failed | per s | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|---|");
    opened.print("stream opened", elapsed);
    ingested.print("ingest (500 events)", elapsed);
    reads.print("reads (jobs list, overview)", elapsed);
    println!(
        "stream events received: {} ({:.0} per stream); streams ended early: {early}",
        received.load(Ordering::Relaxed),
        received.load(Ordering::Relaxed) as f64 / streams as f64,
    );
    println!(
        "server RSS: {} MiB before the streams, peak {} MiB",
        rss_start / 1024,
        rss_peak / 1024
    );
}
