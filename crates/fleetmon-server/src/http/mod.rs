//! The HTTP server: routes, shared state, and serving with graceful shutdown.

pub mod auth;
pub mod cookies;
mod error;
mod fleet;
mod health;
mod ingest;
mod jobs;
mod json;
mod metrics;
mod oidc_signin;
mod orgs;
mod overview;
mod params;
mod signin;
mod stack_signin;
mod webhooks;

use std::future::Future;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use axum::Router;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

pub use error::ApiError;
pub use webhooks::StackWebhook;

use crate::auth::Auth;
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
    pub auth: std::sync::Arc<Auth>,
    /// `None` when Stack webhooks are not configured: the endpoint then answers 404.
    pub stack_webhook: Option<std::sync::Arc<StackWebhook>>,
}

impl AppState {
    pub fn new(db: TenantDb, ingest_limits: Limits, auth: Auth) -> Self {
        Self {
            db,
            ingest_limits: std::sync::Arc::new(ingest_limits),
            series: std::sync::Arc::default(),
            auth: std::sync::Arc::new(auth),
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
        .route("/.well-known/jwks.json", get(signin::jwks))
        .route("/auth/providers", get(signin::providers))
        .route("/auth/local/sign-in", post(signin::local_sign_in))
        .route("/auth/stack/sign-in", post(stack_signin::password))
        .route("/auth/stack/send-code", post(stack_signin::send_code))
        .route("/auth/stack/code-sign-in", post(stack_signin::code))
        .route("/auth/stack/magic-link", get(stack_signin::magic_link))
        .route(
            "/auth/stack/oauth/{provider}/start",
            get(stack_signin::oauth_start),
        )
        .route(
            "/auth/stack/oauth/callback",
            get(stack_signin::oauth_callback),
        )
        .route("/auth/refresh", post(signin::refresh))
        .route("/auth/sign-out", post(signin::sign_out))
        .route("/auth/oidc/{name}/start", get(oidc_signin::start))
        .route("/auth/oidc/{name}/callback", get(oidc_signin::callback))
        .route("/api/v1/me", get(orgs::me))
        .route("/api/v1/orgs", get(orgs::list).post(orgs::create))
        .route("/api/v1/orgs/{org}", get(orgs::show).delete(orgs::delete))
        .route(
            "/api/v1/orgs/{org}/members",
            get(orgs::members).post(orgs::add_member),
        )
        .route(
            "/api/v1/orgs/{org}/members/{user_id}",
            axum::routing::patch(orgs::change_role).delete(orgs::remove_member),
        )
        .route(
            "/api/v1/orgs/{org}/invitations/{email}",
            delete(orgs::cancel_invitation),
        )
        .route(
            "/api/v1/orgs/{org}/tokens",
            get(orgs::list_tokens).post(orgs::create_token),
        )
        .route("/api/v1/orgs/{org}/tokens/{id}", delete(orgs::revoke_token))
        .route("/api/v1/orgs/{org}/audit", get(orgs::audit_log))
        .route("/api/v1/orgs/{org}/machines", get(fleet::machines))
        .route(
            "/api/v1/orgs/{org}/machines/{id}",
            get(fleet::machine).delete(fleet::remove_machine),
        )
        .route("/api/v1/orgs/{org}/workers", get(fleet::workers))
        .route("/api/v1/orgs/{org}/workers/{id}", get(fleet::worker))
        .route("/api/v1/orgs/{org}/jobs", get(jobs::list))
        .route("/api/v1/orgs/{org}/jobs/{id}", get(jobs::show))
        .route("/api/v1/orgs/{org}/overview", get(overview::overview))
        .route("/api/v1/orgs/{org}/metrics/jobs", get(metrics::jobs))
        .route("/api/v1/orgs/{org}/metrics/series", get(metrics::series))
        .route(
            "/api/v1/orgs/{org}/metrics/series/names",
            get(metrics::series_names),
        )
        .route(
            "/api/v1/orgs/{org}/settings",
            get(orgs::settings).patch(orgs::update_settings),
        )
        .route("/api/v1/webhooks/stack", post(webhooks::stack))
        .fallback(not_found)
        // Spans name the path only: query strings can carry one-time codes and OAuth state.
        .layer(TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<_>| {
            tracing::debug_span!("request", method = %request.method(), path = %request.uri().path())
        }))
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
    // The peer address feeds sign-in throttling.
    let service = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(shutdown)
        .await
}
