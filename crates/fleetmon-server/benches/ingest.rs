//! Sustained ingest through HTTP with the simulator's event mix, in batches of 500, against a raw
//! `COPY` of the same history rows into the same tables in the same run.
//!
//! `cargo bench -p fleetmon-server --bench ingest` (`BENCH_EVENTS=N`, `BENCH_CLIENTS=N` to vary).
//! It starts its own embedded PostgreSQL in a temporary directory and a `fleetmon serve` child
//! process, and reports events/s, the ratio to COPY, and the server's memory over the run.

#[path = "support/env.rs"]
mod env;
#[path = "support/pg.rs"]
mod pg;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use fleetmon_proto::ingest::{Event, EventBody, IngestResponse};
use fleetmon_server::auth::tokens::{self, TokenKind};
use fleetmon_server::db::sql::query_scalar;
use fleetmon_server::db::{TenantContext, TenantDb};
use fleetmon_server::simulate::{Fleet, FleetShape};
use sqlx::ConnectOptions;
use uuid::Uuid;

use env::env_or;
use pg::BenchPostgres;

const BATCH: usize = 500;

/// The simulator's events for a busy fleet, over the last minutes of simulated time.
fn generate(count: usize) -> Vec<Event> {
    let mut fleet = Fleet::new(FleetShape {
        machines: 100,
        workers_per_machine: 4,
        jobs_per_second: 150.0,
        seed: 2026,
    });
    let start = Utc::now() - chrono::Duration::minutes(40);
    let mut events = Vec::with_capacity(count);
    let mut tick = 0;
    while events.len() < count {
        events.extend(fleet.tick(start + chrono::Duration::milliseconds(tick * 250)));
        tick += 1;
    }
    events.truncate(count);
    events
}

/// The server under test dies with the benchmark, even when it panics.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn csv(value: &str) -> String {
    format!("\"{}\"", value.replace('"', "\"\""))
}

/// The history rows ingest writes, as COPY input, for `org`.
fn copy_rows(org: Uuid, events: &[Event]) -> (String, String, String) {
    let (mut jobs, mut fleet, mut samples) = (String::new(), String::new(), String::new());
    for (n, e) in events.iter().enumerate() {
        let data = serde_json::to_string(&e.body).unwrap();
        let value = serde_json::to_value(&e.body).unwrap();
        let kind = value["type"].as_str().unwrap().to_string();
        let text = |k: &str| {
            value
                .get(k)
                .and_then(|v| v.as_str())
                .map(csv)
                .unwrap_or_default()
        };
        let at = e.at.to_rfc3339();
        match &e.body {
            EventBody::Metrics(m) => {
                fleet.push_str(&format!(
                    "{org},{},{kind},{at},{},{},{}\n",
                    Uuid::new_v4(),
                    csv(&m.machine_id),
                    text("worker_id"),
                    csv("{}")
                ));
                for (i, s) in m.samples.iter().enumerate() {
                    samples.push_str(&format!("{org},{},{at},{}\n", n * 1000 + i, s.value));
                }
            }
            b if value.get("job_id").is_some() => {
                let _ = b;
                let attempt = value.get("attempt").and_then(|a| a.as_u64()).unwrap_or(1);
                jobs.push_str(&format!(
                    "{org},{},{},{kind},{attempt},{at},{},{},{}\n",
                    Uuid::new_v4(),
                    text("job_id"),
                    text("worker_id"),
                    text("machine_id"),
                    csv(&data)
                ));
            }
            _ => fleet.push_str(&format!(
                "{org},{},{kind},{at},{},{},{}\n",
                Uuid::new_v4(),
                text("machine_id"),
                text("worker_id"),
                csv(&data)
            )),
        }
    }
    (jobs, fleet, samples)
}

#[tokio::main]
async fn main() {
    let total = env_or("BENCH_EVENTS", 200_000);
    let clients = env_or("BENCH_CLIENTS", 4);
    let pg = BenchPostgres::start(4).await;
    let tenant = TenantDb::new(pg.pool.clone());
    let mut orgs = Vec::new();
    for slug in ["bench-http", "bench-copy"] {
        let mut tx = tenant.begin(TenantContext::none()).await.unwrap();
        let id: Uuid =
            query_scalar("INSERT INTO organizations (slug, name) VALUES ($1, $1) RETURNING id")
                .bind(slug)
                .fetch_one(tx.conn())
                .await
                .unwrap();
        tx.commit().await.unwrap();
        orgs.push(id);
    }
    let mut tx = tenant.begin(TenantContext::org(orgs[0])).await.unwrap();
    let token = tokens::create(tx.conn(), orgs[0], TokenKind::Ingest, "bench", None)
        .await
        .unwrap()
        .secret;
    tx.commit().await.unwrap();

    eprintln!("generating {total} simulator events…");
    let events = generate(total);
    let bodies: Vec<String> = events
        .chunks(BATCH)
        .map(|c| serde_json::json!({"events": c}).to_string())
        .collect();

    // The server under test, as its own process so its memory can be read.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = pg.server.connect_options().to_url_lossy().to_string();
    let child = Command::new(env!("CARGO_BIN_EXE_fleetmon"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("DATABASE_URL", &url)
        .env("FLEETMON_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let child = KillOnDrop(child);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    while http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    eprintln!(
        "ingesting {} batches of {BATCH} with {clients} concurrent clients…",
        bodies.len()
    );
    let rss_start = rss_kib(child.0.id(), "VmRSS:");
    let bodies = std::sync::Arc::new(bodies);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let sampler = {
        let pid = child.0.id();
        tokio::spawn(async move {
            let mut samples = Vec::new();
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                samples.push(rss_kib(pid, "VmRSS:"));
                if samples.len() > 3600 {
                    return samples;
                }
            }
        })
    };
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (bodies, next, http, base, token) = (
            bodies.clone(),
            next.clone(),
            http.clone(),
            base.clone(),
            token.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut accepted = 0u64;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(body) = bodies.get(i) else {
                    return accepted;
                };
                let response = http
                    .post(format!("{base}/api/v1/ingest"))
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                let status = response.status();
                let text = response.text().await.unwrap();
                assert_eq!(status, 200, "{text}");
                let answer: IngestResponse = serde_json::from_str(&text).unwrap();
                assert!(answer.rejected.is_empty(), "{:?}", answer.rejected.first());
                accepted += u64::from(answer.accepted);
            }
        }));
    }
    let mut accepted = 0;
    for task in tasks {
        accepted += task.await.unwrap();
    }
    let http_elapsed = started.elapsed();
    sampler.abort();
    let rss_end = rss_kib(child.0.id(), "VmRSS:");
    let rss_peak = rss_kib(child.0.id(), "VmHWM:");
    drop(child);

    eprintln!("copying the same history rows with COPY…");
    let (jobs, fleet, samples) = copy_rows(orgs[1], &events);
    let mut conn = pg.server.connect_options().connect().await.unwrap();
    let copy_started = Instant::now();
    for (sql, data) in [
        ("COPY job_events (org_id, event_id, job_id, kind, attempt, at, worker_id, machine_id, data) FROM STDIN WITH (FORMAT csv)", &jobs),
        ("COPY fleet_events (org_id, event_id, kind, at, machine_id, worker_id, data) FROM STDIN WITH (FORMAT csv)", &fleet),
        ("COPY metric_samples (org_id, series_id, at, value) FROM STDIN WITH (FORMAT csv)", &samples),
    ] {
        let mut copy = conn.copy_in_raw(sql).await.unwrap();
        copy.send(data.as_bytes()).await.unwrap();
        copy.finish().await.unwrap();
    }
    let copy_elapsed = copy_started.elapsed();
    drop(conn);
    pg.stop().await;

    let http_rate = total as f64 / http_elapsed.as_secs_f64();
    let copy_rate = total as f64 / copy_elapsed.as_secs_f64();
    println!("events: {total} (accepted {accepted}), batches of {BATCH}, {clients} clients");
    println!(
        "HTTP ingest: {:.1} s, {:.0} events/s",
        http_elapsed.as_secs_f64(),
        http_rate
    );
    println!(
        "raw COPY of the same history rows: {:.1} s, {:.0} events/s",
        copy_elapsed.as_secs_f64(),
        copy_rate
    );
    println!("ratio ingest / COPY: {:.2}", http_rate / copy_rate);
    println!(
        "server RSS: start {} MiB, end {} MiB, peak {} MiB",
        rss_start / 1024,
        rss_end / 1024,
        rss_peak / 1024
    );
}
