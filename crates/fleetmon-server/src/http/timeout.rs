//! The request timeout: a request that has no response head within the limit is answered
//! `503 request_timeout` with `Retry-After`, and its work is dropped (an open transaction rolls
//! back; an ingest batch is either committed or not, and the agent resends it with the same event
//! ids). Live streams are exempt: they are meant to stay open.

use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};

const STREAM_ROUTE: &str = "/api/v1/orgs/{org}/stream";

pub async fn limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().cloned();
    let Some(limit) = state
        .request_timeout
        .filter(|_| route.as_ref().map(MatchedPath::as_str) != Some(STREAM_ROUTE))
    else {
        return next.run(request).await;
    };
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            crate::instruments::request_timeout(&super::prometheus::route_label(route.as_ref()));
            ApiError::Unavailable {
                code: "request_timeout",
                message: format!(
                    "the request took longer than {}; retry shortly",
                    describe(limit)
                ),
            }
            .into_response()
        }
    }
}

fn describe(limit: Duration) -> String {
    match limit.as_secs() {
        0 => format!("{} ms", limit.as_millis()),
        1 => "1 second".into(),
        s => format!("{s} seconds"),
    }
}
