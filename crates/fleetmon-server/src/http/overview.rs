//! `GET /api/v1/orgs/{org}/overview`: the stat cards, fleet counts and recent failures of the
//! dashboard's first page.

use axum::extract::{Path, State};
use axum::Json;
use fleetmon_proto::ErrorBody;

use super::auth::Caller;
use super::fleet::open;
use super::openapi::OrgPath;
use super::params::{Params, WindowQuery};
use super::{ApiError, AppState};
use crate::query::overview::{self, Overview};

/// Jobs pending and active now, completed and failed within the window (24 h by default),
/// machines and workers by liveness and status, and the window's latest failures.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/overview", tag = "metrics", params(OrgPath, WindowQuery),
    security(("bearer" = []), ("session" = [])),
    responses((status = 200, body = Overview), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn overview(
    State(state): State<AppState>,
    caller: Caller,
    Path(slug): Path<String>,
    Params(query): Params<WindowQuery>,
) -> Result<Json<Overview>, ApiError> {
    let window = query.window()?;
    let (access, mut tx, settings) = open(&state, caller, &slug).await?;
    let overview = overview::load(tx.conn(), access.org.id, &settings, window).await?;
    tx.commit().await?;
    Ok(Json(overview))
}
