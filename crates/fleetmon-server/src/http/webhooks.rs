//! `POST /api/v1/webhooks/stack`: Stack Auth's user, team and membership events, delivered and
//! signed by Svix.

use axum::body::{to_bytes, Body};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use chrono::Utc;
use serde::Serialize;

use super::{ApiError, AppState};
use crate::auth::stack_sync::{self, Outcome};
use crate::auth::svix::{self, WebhookSecrets};

/// Stack's events are small JSON objects; this leaves ample room.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// How Stack deliveries are checked and whose users they describe.
#[derive(Debug, Clone)]
pub struct StackWebhook {
    /// The Stack project's token issuer: users are `(issuer, Stack user id)`, as at sign-in.
    pub issuer: String,
    pub secrets: WebhookSecrets,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum WebhookReply {
    Applied { applied: bool },
    Ignored { ignored: String },
}

/// Stack Auth's user, team and membership events, signed by Svix; 404 unless configured.
#[utoipa::path(post, path = "/api/v1/webhooks/stack", tag = "webhooks",
    request_body(content = Object, description = "A Stack Auth webhook event", content_type = "application/json"),
    params(("svix-id" = String, Header), ("svix-timestamp" = String, Header), ("svix-signature" = String, Header)),
    responses(
        (status = 200, body = WebhookReply),
        (status = 400, body = fleetmon_proto::ErrorBody),
        (status = 401, description = "Bad or stale signature", body = fleetmon_proto::ErrorBody),
        (status = 404, description = "Stack webhooks are not configured", body = fleetmon_proto::ErrorBody),
        (status = 409, description = "A replayed delivery", body = fleetmon_proto::ErrorBody),
    ))]
pub async fn stack(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<WebhookReply>, ApiError> {
    let Some(webhook) = state.stack_webhook.as_deref() else {
        return Err(ApiError::NotFound {
            message: "Stack webhooks are not configured (set FLEETMON_STACK_WEBHOOK_SECRET)".into(),
        });
    };
    let body = to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::PayloadTooLarge {
            code: "body_too_large",
            message: format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
        })?;
    let delivery = svix::verify(&webhook.secrets, &headers, &body, Utc::now())?;
    let event = stack_sync::parse(&body)?;
    let outcome = stack_sync::apply(&state.db, &webhook.issuer, &delivery, &event).await?;
    Ok(Json(match outcome {
        Outcome::Applied => WebhookReply::Applied { applied: true },
        Outcome::Ignored => WebhookReply::Ignored {
            ignored: event.event_type,
        },
    }))
}
