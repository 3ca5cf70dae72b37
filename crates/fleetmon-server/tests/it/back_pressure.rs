//! Back-pressure end to end: per-token ingest and per-address API rate limits (429 +
//! `Retry-After`, then recovery), a saturated pool (503 + `Retry-After`, quickly) and the request
//! timeout (503, live streams exempt).

use std::sync::Arc;
use std::time::{Duration, Instant};

use fleetmon_proto::ErrorBody;
use fleetmon_server::auth::tokens::{self, TokenKind};
use fleetmon_server::db::{self, DatabaseSettings, TenantContext, TenantDb};
use fleetmon_server::http::{AppState, LiveStreams, Protection, RateLimit};
use fleetmon_server::live::Hub;
use reqwest::{Response, StatusCode};
use serde_json::json;

use crate::fixtures;
use crate::harness::{self, cluster, TestDb};
use crate::ingest_http::event;

/// Far more than any answer here should take: bounds for "quickly", never a measurement.
const GENEROUS: Duration = Duration::from_secs(15);

struct App {
    base: String,
    slug: String,
    /// The org's machines: an API read that needs the database.
    machines: String,
    ingest: [String; 2],
    read: String,
    _db: TestDb,
}

impl App {
    async fn start(protection: Protection) -> Self {
        let db = TestDb::new().await;
        let tenant = db.tenant();
        Self::serving(db, tenant, protection).await
    }

    /// Serves with `tenant` (which may be a pool of its own on `db`).
    async fn serving(db: TestDb, tenant: TenantDb, protection: Protection) -> Self {
        let org = fixtures::create_org(&db.tenant(), "bp").await;
        let mut tx = db.tenant().begin(TenantContext::org(org)).await.unwrap();
        let slug: String = db::sql::query_scalar("SELECT slug FROM organizations WHERE id = $1")
            .bind(org)
            .fetch_one(tx.conn())
            .await
            .unwrap();
        let mut secrets = Vec::new();
        for (kind, name) in [
            (TokenKind::Ingest, "agents"),
            (TokenKind::Ingest, "other agents"),
            (TokenKind::Read, "reader"),
        ] {
            let token = tokens::create(tx.conn(), org, kind, name, None)
                .await
                .unwrap();
            secrets.push(token.secret);
        }
        let [first, second, read] = <[String; 3]>::try_from(secrets).unwrap();
        tx.commit().await.unwrap();
        let auth = fleetmon_server::auth::Auth::new(harness::local_auth(), &tenant).unwrap();
        let state = AppState::new(tenant, Default::default(), auth)
            .with_live(LiveStreams::new(Arc::new(Hub::default())))
            .with_protection(protection);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        harness::serve_state(listener, state);
        Self {
            base,
            machines: format!("/api/v1/orgs/{slug}/machines"),
            slug,
            ingest: [first, second],
            read,
            _db: db,
        }
    }

    async fn ingest(&self, token: &str) -> Response {
        let heartbeat = event("machine.heartbeat", json!({"machine_id": "m-1"}));
        reqwest::Client::new()
            .post(format!("{}/api/v1/ingest", self.base))
            .bearer_auth(token)
            .json(&json!({ "events": [heartbeat] }))
            .send()
            .await
            .unwrap()
    }

    async fn get(&self, path: &str) -> Response {
        reqwest::Client::new()
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.read)
            .send()
            .await
            .unwrap()
    }
}

/// The seconds of `Retry-After`, and the error code, of a refusal with `status`.
async fn refusal(response: Response, status: StatusCode) -> (u64, String) {
    assert_eq!(response.status(), status);
    let retry_after = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body: ErrorBody = response.json().await.unwrap();
    assert!(!body.error.message.is_empty());
    (retry_after, body.error.code)
}

/// Sends until one is refused; the limit must bite within `at_most` requests.
async fn until_refused<F, Fut>(at_most: usize, mut send: F) -> Response
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    for _ in 0..at_most {
        let response = send().await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            return response;
        }
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
    }
    panic!("no request of {at_most} was refused");
}

fn counter(name: &str, label: &str) -> f64 {
    let text = fleetmon_server::instruments::render(fleetmon_server::instruments::PoolUse {
        in_use: 0,
        idle: 0,
        max: 0,
    });
    text.lines()
        .find(|line| line.starts_with(name) && line.contains(label))
        .and_then(|line| line.rsplit(' ').next())
        .map_or(0.0, |value| value.parse().unwrap())
}

#[tokio::test]
async fn an_ingest_token_over_its_rate_gets_429_and_recovers() {
    let app = App::start(Protection {
        ingest_per_token: Some(RateLimit {
            per_second: 1,
            burst: 3,
        }),
        ..Default::default()
    })
    .await;
    let before = counter("fleetmon_http_rate_limited_total", "ingest_token");
    let refused = until_refused(20, || app.ingest(&app.ingest[0])).await;
    let (retry_after, code) = refusal(refused, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(code, "rate_limited");
    assert!((1..=5).contains(&retry_after), "{retry_after}");
    assert!(counter("fleetmon_http_rate_limited_total", "ingest_token") > before);

    // Another token of the same org has a bucket of its own; the API is not limited.
    assert_eq!(app.ingest(&app.ingest[1]).await.status(), 200);
    assert_eq!(app.get(&app.machines).await.status(), 200);

    // After the wait it asked for, the token is served again.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    assert_eq!(app.ingest(&app.ingest[0]).await.status(), 200);
}

#[tokio::test]
async fn an_address_over_its_api_rate_gets_429_and_recovers() {
    let app = App::start(Protection {
        api_per_address: Some(RateLimit {
            per_second: 1,
            burst: 3,
        }),
        ..Default::default()
    })
    .await;
    let refused = until_refused(20, || app.get(&app.machines)).await;
    let (retry_after, code) = refusal(refused, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(code, "rate_limited");
    assert!((1..=5).contains(&retry_after), "{retry_after}");
    // Every API route shares the address's bucket; ingest and health checks do not.
    assert_eq!(
        app.get("/api/v1/openapi.json").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(app.ingest(&app.ingest[0]).await.status(), 200);
    assert_eq!(app.get("/healthz").await.status(), 200);

    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    assert_eq!(app.get(&app.machines).await.status(), 200);
}

#[tokio::test]
async fn a_saturated_pool_answers_503_with_retry_after_quickly() {
    let db = TestDb::new().await;
    // The product's own pool, of one connection, waiting at most half a second for it.
    let settings = DatabaseSettings {
        url: None,
        data_dir: Default::default(),
        max_connections: 1,
        connect_timeout: Duration::from_secs(10),
        acquire_timeout: Duration::from_millis(500),
    };
    let pool = db::connect(cluster().owner_options(&db.name), &settings)
        .await
        .unwrap();
    let tenant = TenantDb::new(pool);
    let app = App::serving(db, tenant.clone(), Protection::default()).await;
    let before = counter("fleetmon_db_pool_timeouts_total", "");

    let held = tenant.begin(TenantContext::none()).await.unwrap();
    let started = Instant::now();
    let (retry_after, code) = refusal(
        app.get(&app.machines).await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    assert!(started.elapsed() < GENEROUS, "answered without queueing");
    assert_eq!(code, "database_busy");
    assert!(retry_after >= 1);
    let (_, code) = refusal(
        app.ingest(&app.ingest[0]).await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    assert_eq!(code, "database_busy");
    assert!(counter("fleetmon_db_pool_timeouts_total", "") >= before + 2.0);

    held.rollback().await.unwrap();
    assert_eq!(app.get(&app.machines).await.status(), 200);
    assert_eq!(app.ingest(&app.ingest[0]).await.status(), 200);
}

#[tokio::test]
async fn a_request_past_the_timeout_gets_503_but_a_stream_waits() {
    let app = App::start(Protection {
        request_timeout: Some(Duration::from_secs(1)),
        ..Default::default()
    })
    .await;
    assert_eq!(app.get(&app.machines).await.status(), 200);
    let before = counter("fleetmon_http_request_timeouts_total", "machines");

    // Every request with an API token waits for this lock while it is held.
    let mut blocker = app._db.pool.begin().await.unwrap();
    db::sql::query("LOCK TABLE api_tokens IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let stream_path = format!("/api/v1/orgs/{}/stream", app.slug);
    let stream = tokio::spawn({
        let (base, read) = (app.base.clone(), app.read.clone());
        async move {
            reqwest::Client::new()
                .get(format!("{base}{stream_path}"))
                .bearer_auth(read)
                .send()
                .await
                .unwrap()
        }
    });
    let started = Instant::now();
    let (retry_after, code) = refusal(
        app.get(&app.machines).await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    assert!(started.elapsed() < GENEROUS);
    assert_eq!(code, "request_timeout");
    assert!(retry_after >= 1);
    assert!(counter("fleetmon_http_request_timeouts_total", "machines") > before);

    // The stream, exempt, is still waiting well past the timeout; it starts once the lock goes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cut_off = stream.is_finished();
    blocker.rollback().await.unwrap();
    assert!(!cut_off, "the stream was cut off");
    let stream = stream.await.unwrap();
    assert_eq!(stream.status(), 200);
    assert!(stream.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    assert_eq!(app.get(&app.machines).await.status(), 200);
}
