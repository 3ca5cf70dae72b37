//! `POST /api/v1/ingest`: agents push events with an `ingest` token.

use axum::body::{to_bytes, Body};
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::Json;
use chrono::Utc;
use fleetmon_proto::ingest::IngestResponse;

use super::{ApiError, AppState};
use crate::auth::tokens::{self, TokenKind};
use crate::db::{DbError, TenantContext};
use crate::ingest::{decode, store, Framing};

/// Deadlocks between concurrent batches touching the same jobs are retried this often.
const ATTEMPTS: u64 = 5;

/// Stores a batch of events from an agent: a JSON `{"events":[…]}` or NDJSON (one event per line,
/// `Content-Type: application/x-ndjson`), optionally gzip-compressed. Valid events are stored even
/// when others are rejected; the answer lists the rejected ones by index with a code. Resending
/// an event (same `id`) stores nothing and counts it under `duplicates`.
#[utoipa::path(post, path = "/api/v1/ingest", tag = "ingest", security(("ingest_token" = [])),
    request_body(content(
        (fleetmon_proto::ingest::Batch = "application/json"),
        (fleetmon_proto::ingest::Event = "application/x-ndjson"),
    ), description = "A batch as JSON, or one event per line as NDJSON; `Content-Encoding: gzip` accepted"),
    responses(
        (status = 200, description = "Stored after commit; per-event rejections listed", body = IngestResponse),
        (status = 400, description = "The whole request is unusable (`invalid_json`, `too_many_events`, …)", body = fleetmon_proto::ErrorBody),
        (status = 401, body = fleetmon_proto::ErrorBody),
        (status = 403, description = "Not an ingest token", body = fleetmon_proto::ErrorBody),
        (status = 413, description = "`body_too_large`", body = fleetmon_proto::ErrorBody),
        (status = 415, body = fleetmon_proto::ErrorBody),
        (status = 429, description = "`rate_limited`: this token is over its rate; retry after `Retry-After`", body = fleetmon_proto::ErrorBody),
        (status = 503, description = "`database_busy`, `database_unavailable` or `request_timeout`; retry after `Retry-After` with the same event ids", body = fleetmon_proto::ErrorBody),
    ))]
pub async fn ingest(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<IngestResponse>, ApiError> {
    let token = bearer(&headers)?;
    let Some((_, org_id)) = tokens::parse_org(token) else {
        return Err(super::auth::unauthorized(
            "invalid_token",
            "the token is not a fleetmon API token",
        ));
    };
    // Credentials first: nobody without a valid ingest token gets the body read and decoded.
    super::auth::api_token(&state, org_id, token, TokenKind::Ingest).await?;
    let framing = framing(&headers)?;
    let limits = &state.ingest_limits;
    let bytes =
        to_bytes(body, limits.max_body_bytes)
            .await
            .map_err(|_| ApiError::PayloadTooLarge {
                code: "body_too_large",
                message: format!(
                    "the request body is larger than {} bytes",
                    limits.max_body_bytes
                ),
            })?;
    let bytes = match headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?"))
    {
        None | Some("identity") => bytes.to_vec(),
        Some("gzip") => decode::gunzip(&bytes, limits.max_body_bytes)?,
        Some(other) => {
            return Err(ApiError::UnsupportedMediaType {
                code: "unsupported_encoding",
                message: format!("Content-Encoding {other:?} is not supported; use gzip or none"),
            })
        }
    };
    let decoded = decode::decode(&bytes, framing, limits, Utc::now())?;
    let events: Vec<_> = decoded.valid.into_iter().map(|v| v.event).collect();

    let mut attempt = 0;
    let stored = loop {
        attempt += 1;
        let mut tx = state.db.begin(TenantContext::org(org_id)).await?;
        let result = async {
            let stored = store::store(tx.conn(), org_id, &state.series, &events).await?;
            tx.commit().await?;
            Ok::<_, DbError>(stored)
        }
        .await;
        match result {
            Ok(stored) => {
                state.series.remember(stored.series);
                break (stored.accepted, stored.duplicates);
            }
            Err(error) if attempt < ATTEMPTS && is_retryable(&error) => {
                tracing::debug!(%error, attempt, "retrying an ingest batch after a conflict");
                // Randomly staggered, so that the batches that collided do not collide again.
                let mut byte = [0u8; 1];
                let jitter = getrandom::fill(&mut byte).map_or(0, |()| u64::from(byte[0] % 20));
                tokio::time::sleep(std::time::Duration::from_millis(attempt * (10 + jitter))).await;
            }
            Err(error) => return Err(error.into()),
        }
    };
    crate::instruments::ingested(
        stored.0.into(),
        stored.1.into(),
        decoded.rejected.len() as u64,
    );
    Ok(Json(IngestResponse {
        accepted: stored.0,
        duplicates: stored.1,
        rejected: decoded.rejected,
    }))
}

fn is_retryable(error: &DbError) -> bool {
    matches!(error, DbError::Sql(sqlx::Error::Database(db)) if matches!(db.code().as_deref(), Some("40P01" | "40001")))
}

fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    super::auth::bearer(headers)?.ok_or_else(|| ApiError::Unauthorized {
        code: "missing_token",
        message: "send an ingest token as `Authorization: Bearer <token>`".into(),
    })
}

fn framing(headers: &HeaderMap) -> Result<Framing, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Ok(Framing::Json),
        "application/x-ndjson" | "application/jsonl" | "application/ndjson" => Ok(Framing::Ndjson),
        _ => Err(ApiError::UnsupportedMediaType {
            code: "unsupported_media_type",
            message: format!("Content-Type {content_type:?} is not supported; use application/json or application/x-ndjson"),
        }),
    }
}
