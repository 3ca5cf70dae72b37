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
#[path = "support/server.rs"]
mod server;

use std::time::Instant;

use fleetmon_proto::ingest::{Event, EventBody, IngestResponse};
use fleetmon_server::auth::tokens::{self, TokenKind};
use fleetmon_server::db::sql::query_scalar;
use fleetmon_server::db::{TenantContext, TenantDb};
use sqlx::ConnectOptions;
use uuid::Uuid;

use env::env_or;
use pg::BenchPostgres;
use server::{generate, Server};

const BATCH: usize = 500;

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

    let url = pg.server.connect_options().to_url_lossy().to_string();
    let server = Server::start(&url, &[]).await;
    let base = server.base.clone();
    let http = reqwest::Client::new();

    eprintln!(
        "ingesting {} batches of {BATCH} with {clients} concurrent clients…",
        bodies.len()
    );
    let rss_start = server.memory_kib("VmRSS:");
    let bodies = std::sync::Arc::new(bodies);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
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
    let rss_end = server.memory_kib("VmRSS:");
    let rss_peak = server.memory_kib("VmHWM:");
    drop(server);

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
