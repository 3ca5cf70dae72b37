//! The HTTP server: routes, shared state, and serving with graceful shutdown.

mod error;
mod health;
mod ingest;

use std::future::Future;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

pub use error::ApiError;

use crate::db::TenantDb;
use crate::ingest::series::SeriesCache;
use crate::ingest::Limits;

/// What handlers share. Deliberately holds only tenant access: request code cannot reach the
/// system (owner) path.
#[derive(Clone)]
pub struct AppState {
    pub db: TenantDb,
    pub ingest_limits: std::sync::Arc<Limits>,
    pub series: std::sync::Arc<SeriesCache>,
}

impl AppState {
    pub fn new(db: TenantDb, ingest_limits: Limits) -> Self {
        Self {
            db,
            ingest_limits: std::sync::Arc::new(ingest_limits),
            series: std::sync::Arc::default(),
        }
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        // The handler enforces its own, configurable, body limit.
        .route(
            "/api/v1/ingest",
            post(ingest::ingest).layer(DefaultBodyLimit::disable()),
        )
        .fallback(not_found)
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound {
        message: format!("no such endpoint: {}", uri.path()),
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
