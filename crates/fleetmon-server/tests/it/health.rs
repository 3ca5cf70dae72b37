//! `/healthz`, `/readyz` and error bodies, served by the real router on a real socket.

use fleetmon_proto::{ErrorBody, Readiness};
use fleetmon_server::db::TenantDb;
use sqlx::postgres::PgPoolOptions;

use crate::harness::{self, cluster, TestDb};

async fn spawn_app(db: TenantDb) -> String {
    harness::spawn_app(db, Default::default(), harness::local_auth()).await
}

#[tokio::test]
async fn ready_when_the_database_is_migrated() {
    let db = TestDb::new().await;
    let base = spawn_app(db.tenant()).await;
    let health = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    // API answers are neither sniffed nor stored, unless a handler allows caching.
    assert_eq!(health.headers()["x-content-type-options"], "nosniff");
    assert_eq!(health.headers()["cache-control"], "no-store");
    let keys = reqwest::get(format!("{base}/.well-known/jwks.json"))
        .await
        .unwrap();
    assert_eq!(keys.headers()["cache-control"], "public, max-age=300");
    assert_eq!(keys.headers()["x-content-type-options"], "nosniff");
    let ready = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: Readiness = ready.json().await.unwrap();
    assert_eq!(body.status, "ready");
    assert_eq!(
        body.schema_version,
        fleetmon_server::db::migrate::latest_version()
    );
}

async fn unavailable(base: &str) -> ErrorBody {
    let response = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    response.json().await.unwrap()
}

#[tokio::test]
async fn not_ready_before_migrations() {
    let name = TestDb::create_empty().await;
    let pool = cluster().owner_pool(&name, 2).await;
    let base = spawn_app(TenantDb::new(pool)).await;
    let body = unavailable(&base).await;
    assert_eq!(body.error.code, "migrations_pending", "{body:?}");
    assert!(body.error.message.contains("fleetmon migrate"), "{body:?}");
    // The process itself is fine.
    assert_eq!(
        reqwest::get(format!("{base}/healthz"))
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn not_ready_when_the_database_is_unreachable() {
    // Port 1 on loopback: nothing listens there.
    let pool = PgPoolOptions::new()
        .acquire_timeout(std::time::Duration::from_secs(1))
        .connect_lazy("postgres://nobody@127.0.0.1:1/none")
        .unwrap();
    let base = spawn_app(TenantDb::new(pool)).await;
    let body = unavailable(&base).await;
    assert_eq!(body.error.code, "database_unreachable", "{body:?}");
}

#[tokio::test]
async fn unknown_paths_get_a_json_404() {
    let db = TestDb::new().await;
    let base = spawn_app(db.tenant()).await;
    let response = reqwest::get(format!("{base}/no/such/thing")).await.unwrap();
    assert_eq!(response.status(), 404);
    let body: ErrorBody = response.json().await.unwrap();
    assert_eq!(body.error.code, "not_found");
}
