//! The database restarts under load: while it is down every request is answered 503 with
//! `Retry-After` (no 500, no panic), the service is ready again within 5 s of the database
//! being back, and nothing acknowledged is lost. The database is a private embedded cluster:
//! the one other tests share is never restarted.

use std::time::{Duration, Instant};

use fleetmon_server::db::{EmbeddedPostgres, TenantDb};
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::ConnectOptions;
use sqlx::PgPool;

use crate::harness::scratch_dir;
use crate::ingest_http::event;
use crate::stream::serve_on;
use crate::sustained_ingest::{
    assert_projection_is_fresh, assert_stored_exactly, org_with_ingest_token, slug_and_read_token,
    Load, PATIENCE,
};

/// The bound for readiness once the database is back.
const READY_AGAIN_WITHIN: Duration = Duration::from_secs(5);
/// Rounds of requests sent while the database is down.
const PROBE_ROUNDS: usize = 3;

async fn start_postgres(dir: &std::path::Path) -> EmbeddedPostgres {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&dir).unwrap())
        .await
        .unwrap()
}

async fn stop_postgres(postgres: EmbeddedPostgres) {
    tokio::task::spawn_blocking(move || postgres.stop().unwrap())
        .await
        .unwrap();
}

async fn pool_of(postgres: &EmbeddedPostgres) -> PgPool {
    PgPoolOptions::new()
        .max_connections(2)
        .connect_with(postgres.connect_options())
        .await
        .unwrap()
}

/// Asserts that `response` is a 503 saying the database is away, with a `Retry-After`.
async fn assert_unavailable(what: &str, response: reqwest::Response) {
    let status = response.status();
    let retry_after = response.headers().get("retry-after").cloned();
    let body: Value = response.json().await.unwrap_or_default();
    assert_eq!(status, 503, "{what}: {body}");
    let seconds: u64 = retry_after
        .unwrap_or_else(|| panic!("{what}: no Retry-After"))
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(seconds >= 1, "{what}: Retry-After {seconds}");
    let code = body["error"]["code"].as_str().unwrap_or_default();
    assert!(code.starts_with("database_"), "{what}: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_mid_load_is_503_then_ready_within_5s_and_loses_nothing() {
    let dir = scratch_dir("db-restart");
    let postgres = start_postgres(&dir).await;
    postgres.create_database_if_missing().await.unwrap();
    let url = postgres.connect_options().to_url_lossy().to_string();
    let mut server = serve_on("127.0.0.1:0", &[("DATABASE_URL", url)]);
    let pool = pool_of(&postgres).await;
    let tenant = TenantDb::new(pool.clone());
    let (org, token) = org_with_ingest_token(&tenant).await;
    let (slug, read) = slug_and_read_token(&tenant, org).await;
    pool.close().await;

    let load = Load::start(&server.base, &token);
    load.wait_for_more(1_000).await;
    stop_postgres(postgres).await;

    let http = reqwest::Client::new();
    for _ in 0..PROBE_ROUNDS {
        let ready = http.get(format!("{}/readyz", server.base)).send().await;
        assert_unavailable("readyz", ready.unwrap()).await;
        let jobs = http
            .get(format!("{}/api/v1/orgs/{slug}/jobs", server.base))
            .bearer_auth(&read)
            .send()
            .await;
        assert_unavailable("list jobs", jobs.unwrap()).await;
        let ingest = http
            .post(format!("{}/api/v1/ingest", server.base))
            .bearer_auth(&token)
            .json(&json!({"events": [event("job.submitted", json!({"job_id": "during-outage"}))]}))
            .send()
            .await;
        assert_unavailable("ingest", ingest.unwrap()).await;
    }
    assert!(server.is_running(), "fleetmon serve survived the outage");

    let postgres = start_postgres(&dir).await;
    let back = Instant::now();
    let deadline = back + PATIENCE;
    loop {
        let ready = http.get(format!("{}/readyz", server.base)).send().await;
        if ready.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "never ready again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ready_after = back.elapsed();
    assert!(
        ready_after < READY_AGAIN_WITHIN,
        "ready {ready_after:?} after the database"
    );

    load.wait_for_more(1_000).await;
    let (sent, stats) = load.finish().await;
    let pool = pool_of(&postgres).await;
    let tenant = TenantDb::new(pool.clone());
    // No assertion on the client's retries: a batch in flight when the database went away may
    // wait in the pool (up to the acquire timeout) and succeed once it is back.
    assert_stored_exactly(&tenant, org, &sent, &stats).await;
    assert_projection_is_fresh(&tenant, org, &sent).await;
    pool.close().await;
    server.kill();
    stop_postgres(postgres).await;
}
