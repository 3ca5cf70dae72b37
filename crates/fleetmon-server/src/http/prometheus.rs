//! `GET /metrics` in Prometheus' text format, and the middleware that counts every request.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::AppState;
use crate::instruments;

/// Counts and times every request by its route template (never the raw path, which would carry
/// org slugs and ids). Parameters are written `:org` rather than axum's `{org}`: braces inside
/// label values trip up simpler exposition parsers and need escaping in PromQL regexes.
pub async fn track(request: Request, next: Next) -> Response {
    let route = route_label(request.extensions().get::<MatchedPath>());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    instruments::request(
        &route,
        &method,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// How metrics name a route: its template with `:name` parameters, or `unmatched`.
pub(super) fn route_label(route: Option<&MatchedPath>) -> String {
    route
        .map_or("unmatched", MatchedPath::as_str)
        .replace('{', ":")
        .replace('}', "")
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        instruments::render(state.db.pool_use()),
    )
}

/// The router of `/metrics`, served on the main listener or on its own (`--metrics-listen`).
pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}
