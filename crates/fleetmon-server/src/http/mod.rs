//! The HTTP server: routes, shared state, and serving with graceful shutdown.

mod error;
mod health;
mod ingest;
mod webhooks;

use std::future::Future;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

pub use error::ApiError;
pub use webhooks::StackWebhook;

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
    /// `None` when Stack webhooks are not configured: the endpoint then answers 404.
    pub stack_webhook: Option<std::sync::Arc<StackWebhook>>,
}

impl AppState {
    pub fn new(db: TenantDb, ingest_limits: Limits) -> Self {
        Self {
            db,
            ingest_limits: std::sync::Arc::new(ingest_limits),
            series: std::sync::Arc::default(),
            stack_webhook: None,
        }
    }

    pub fn with_stack_webhook(self, webhook: StackWebhook) -> Self {
        Self {
            stack_webhook: Some(std::sync::Arc::new(webhook)),
            ..self
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
        .route("/api/v1/webhooks/stack", post(webhooks::stack))
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
