//! The HTTP server: routes, shared state, and serving with graceful shutdown.

pub mod auth;
pub mod cookies;
mod error;
pub(crate) mod fleet;
mod health;
mod ingest;
pub(crate) mod jobs;
mod json;
mod metrics;
mod oidc_signin;
mod openapi;
pub(crate) mod orgs;
mod overview;
pub(crate) mod params;
mod prometheus;
mod rate_limit;
pub(crate) mod signin;
pub(crate) mod stack_signin;
mod stream;
mod timeout;
mod webhooks;

use std::future::{Future, IntoFuture};

use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use tokio::net::TcpListener;
use tower_http::compression::CompressionLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

pub use error::ApiError;
pub use rate_limit::RateLimit;
pub use stream::LiveStreams;
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
    /// Where live streams subscribe; `None` when no listener feeds them (the stream answers 503).
    pub live: Option<LiveStreams>,
    pub rate_limits: std::sync::Arc<rate_limit::RateLimits>,
    /// How long a request may take to its response head; `None`: no limit.
    pub request_timeout: Option<std::time::Duration>,
}

/// Back-pressure: rate limits and the request timeout (`config::ProtectionArgs`). Off unless
/// given, so embedders and tests opt in; `serve` always gives it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Protection {
    pub ingest_per_token: Option<RateLimit>,
    pub api_per_address: Option<RateLimit>,
    pub request_timeout: Option<std::time::Duration>,
}

impl AppState {
    pub fn new(db: TenantDb, ingest_limits: Limits, auth: Auth) -> Self {
        Self {
            db,
            ingest_limits: std::sync::Arc::new(ingest_limits),
            series: std::sync::Arc::default(),
            auth: std::sync::Arc::new(auth),
            stack_webhook: None,
            live: None,
            rate_limits: std::sync::Arc::default(),
            request_timeout: None,
        }
    }

    pub fn with_protection(self, protection: Protection) -> Self {
        Self {
            rate_limits: std::sync::Arc::new(rate_limit::RateLimits::new(
                protection.ingest_per_token,
                protection.api_per_address,
            )),
            request_timeout: protection.request_timeout,
            ..self
        }
    }

    pub fn with_live(self, live: LiveStreams) -> Self {
        Self {
            live: Some(live),
            ..self
        }
    }

    pub fn with_stack_webhook(self, webhook: StackWebhook) -> Self {
        Self {
            stack_webhook: Some(std::sync::Arc::new(webhook)),
            ..self
        }
    }
}

/// Everything fleetmon serves, `/metrics` included.
pub fn router(state: AppState) -> Router {
    routes(state, true)
}

/// Everything but `/metrics`, for when the metrics have a listener of their own.
pub fn router_without_metrics(state: AppState) -> Router {
    routes(state, false)
}

/// `/metrics` alone.
pub fn metrics_router(state: AppState) -> Router {
    prometheus::router().with_state(state)
}

/// Every API route, registered with its OpenAPI annotation (`routes!`), so the document served
/// at `/api/v1/openapi.json` lists exactly what the router serves.
fn routes(state: AppState, with_metrics: bool) -> Router {
    let (mut router, mut document) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(openapi::document))
        // The handler enforces its own, configurable, body limit.
        .routes(routes!(ingest::ingest).layer(DefaultBodyLimit::disable()))
        .routes(routes!(signin::jwks))
        .routes(routes!(signin::providers))
        .routes(routes!(signin::local_sign_in))
        .routes(routes!(stack_signin::password))
        .routes(routes!(stack_signin::send_code))
        .routes(routes!(stack_signin::code))
        .routes(routes!(stack_signin::magic_link))
        .routes(routes!(stack_signin::oauth_start))
        .routes(routes!(stack_signin::oauth_callback))
        .routes(routes!(signin::refresh))
        .routes(routes!(signin::sign_out))
        .routes(routes!(oidc_signin::start))
        .routes(routes!(oidc_signin::callback))
        .routes(routes!(orgs::me))
        .routes(routes!(orgs::list, orgs::create))
        .routes(routes!(orgs::show, orgs::delete))
        .routes(routes!(orgs::members, orgs::add_member))
        .routes(routes!(orgs::change_role, orgs::remove_member))
        .routes(routes!(orgs::cancel_invitation))
        .routes(routes!(orgs::list_tokens, orgs::create_token))
        .routes(routes!(orgs::revoke_token))
        .routes(routes!(orgs::audit_log))
        .routes(routes!(fleet::machines))
        .routes(routes!(fleet::machine, fleet::remove_machine))
        .routes(routes!(fleet::workers))
        .routes(routes!(fleet::worker))
        .routes(routes!(jobs::list))
        .routes(routes!(jobs::show))
        .routes(routes!(stream::stream))
        .routes(routes!(overview::overview))
        .routes(routes!(metrics::jobs))
        .routes(routes!(metrics::series))
        .routes(routes!(metrics::series_names))
        .routes(routes!(orgs::settings, orgs::update_settings))
        .routes(routes!(webhooks::stack))
        .split_for_parts();
    openapi::finish(&mut document);
    if with_metrics {
        router = router.merge(prometheus::router());
    }
    router
        .layer(Extension(std::sync::Arc::new(document)))
        // The dashboard's pages are not API, so they are not in the document.
        .merge(crate::web::router())
        .fallback(not_found)
        // Inside the metrics, so refused and timed-out requests are counted by status too.
        .layer(axum::middleware::from_fn_with_state(state.clone(), timeout::limit))
        .layer(axum::middleware::from_fn_with_state(state.clone(), rate_limit::limit))
        .layer(axum::middleware::from_fn(protective_headers))
        // gzip when the client takes it; never for event streams, which must not be buffered
        // (tower-http's default predicate), nor bodies under 32 bytes. Pages carry their CSRF
        // token masked so compressing them does not leak it (`web::page::masked_csrf`).
        .layer(CompressionLayer::new())
        .layer(axum::middleware::from_fn(prometheus::track))
        // Spans name the path only: query strings can carry one-time codes and OAuth state.
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &axum::http::Request<_>| {
                    tracing::debug_span!("request", method = %request.method(), path = %request.uri().path())
                })
                .on_failure(log_failure),
        )
        .with_state(state)
}

/// A 503 is fleetmon holding back (a full pool, a request past its time, the database or an
/// identity provider away): a warning, which the answer's own code and the metrics detail.
/// Any other failure is an error.
fn log_failure(
    class: tower_http::classify::ServerErrorsFailureClass,
    latency: std::time::Duration,
    _span: &tracing::Span,
) {
    use tower_http::classify::ServerErrorsFailureClass::StatusCode;
    let latency_ms = latency.as_millis();
    match class {
        StatusCode(code) if code == axum::http::StatusCode::SERVICE_UNAVAILABLE => {
            tracing::warn!(%code, latency_ms, "answered 503: unavailable for now")
        }
        class => tracing::error!(classification = %class, latency_ms, "response failed"),
    }
}

/// A browser gets the dashboard's 404 page; everything under `/api` and every API client, JSON.
/// Every answer, API included, is never sniffed into another type, and is not stored by caches
/// unless its handler says otherwise (the key set, the hashed assets): API answers carry an org's
/// data just as pages do.
async fn protective_headers(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use axum::http::{header, HeaderValue};
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers
        .entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

async fn not_found(headers: axum::http::HeaderMap, uri: axum::http::Uri) -> Response {
    if !uri.path().starts_with("/api/") && crate::web::wants_html(&headers) {
        return crate::web::not_found();
    }
    ApiError::NotFound {
        message: format!("no such endpoint: {}", uri.path()),
    }
    .into_response()
}

/// How long, once shutdown begins, open connections get to finish before they are dropped:
/// a client that stopped reading must not hold the process up.
const DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves `router` on `listener` until `shutdown` resolves, then finishes in-flight requests
/// (for at most [`DRAIN_LIMIT`]).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (began, stopping) = tokio::sync::oneshot::channel();
    let shutdown = async move {
        shutdown.await;
        let _ = began.send(());
    };
    // The peer address feeds sign-in throttling.
    let service = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let serving = axum::serve(listener, service)
        .with_graceful_shutdown(shutdown)
        .into_future();
    let drain_expired = async {
        match stopping.await {
            Ok(()) => tokio::time::sleep(DRAIN_LIMIT).await,
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        served = serving => served,
        () = drain_expired => {
            tracing::warn!("connections were still open {DRAIN_LIMIT:?} after shutdown began; dropping them");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    /// A route added with axum's plain `route` would be served but missing from the OpenAPI
    /// document; `router` registers everything through `routes!`.
    #[test]
    fn every_route_is_registered_with_its_openapi_annotation() {
        let router = include_str!("mod.rs")
            .split("fn routes(")
            .nth(1)
            .and_then(|rest| rest.split("async fn not_found").next())
            .expect("router() is in mod.rs");
        assert!(
            !router.contains(".route(") && !router.contains(".nest("),
            "register routes with `.routes(routes!(handler))` so the OpenAPI document lists them"
        );
    }
}
