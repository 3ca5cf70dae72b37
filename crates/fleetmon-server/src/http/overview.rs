//! `GET /api/v1/orgs/{org}/overview`: the stat cards, fleet counts and recent failures of the
//! dashboard's first page.

use axum::extract::{Path, State};
use axum::Json;

use super::auth::Principal;
use super::fleet::open;
use super::params::{Params, WindowQuery};
use super::{ApiError, AppState};
use crate::query::overview::{self, Overview};

/// `GET /api/v1/orgs/{org}/overview?range=&since=&until=` (24 h by default).
pub async fn overview(
    State(state): State<AppState>,
    principal: Principal,
    Path(slug): Path<String>,
    Params(query): Params<WindowQuery>,
) -> Result<Json<Overview>, ApiError> {
    let window = query.window()?;
    let (access, mut tx, settings) = open(&state, principal, &slug).await?;
    let overview = overview::load(tx.conn(), access.org.id, &settings, window).await?;
    tx.commit().await?;
    Ok(Json(overview))
}
