//! `GET /api/v1/orgs/{org}/machines…` and `…/workers…`: the fleet as it is now, with derived
//! liveness, for viewers and read tokens; `DELETE …/machines/{id}` for admins.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{OrgAccess, Principal};
use super::{ApiError, AppState};
use crate::orgs::{audit, settings as org_settings, Role};
use crate::query::fleet::{self, Filter, Removal};

#[derive(Deserialize)]
pub struct ListQuery {
    liveness: Option<String>,
    machine: Option<String>,
    status: Option<String>,
    /// The last id of the previous page.
    after: Option<String>,
    limit: Option<i64>,
}

impl ListQuery {
    fn filter(self) -> Result<Filter, ApiError> {
        if let Some(liveness) = &self.liveness {
            if !matches!(liveness.as_str(), "online" | "stale" | "offline") {
                return Err(ApiError::BadRequest {
                    code: "invalid_filter",
                    message: format!("liveness is online, stale or offline, not {liveness:?}"),
                });
            }
        }
        Ok(Filter {
            id: None,
            liveness: self.liveness,
            machine: self.machine,
            status: self.status,
            after: self.after,
            limit: self.limit.unwrap_or(200),
        })
    }
}

/// The cursor of the next page: the last id, when the page was full.
fn next_after<'a>(
    ids: impl DoubleEndedIterator<Item = &'a str> + ExactSizeIterator,
    limit: i64,
) -> Option<String> {
    let len = ids.len() as i64;
    let last = ids.last().map(str::to_string);
    (len == limit.clamp(1, fleet::MAX_PAGE))
        .then_some(last)
        .flatten()
}

/// A viewer's (or read token's) tenant transaction on the org `slug`.
pub(super) async fn open_read(
    state: &AppState,
    principal: Principal,
    slug: &str,
) -> Result<(OrgAccess, crate::db::TenantTx), ApiError> {
    let access = OrgAccess::resolve(state, principal, slug).await?;
    access.require(Role::Viewer)?;
    let tx = state.db.begin(access.context()).await?;
    Ok((access, tx))
}

/// [`open_read`], and the org's settings (liveness depends on them).
pub(super) async fn open(
    state: &AppState,
    principal: Principal,
    slug: &str,
) -> Result<(OrgAccess, crate::db::TenantTx, org_settings::OrgSettings), ApiError> {
    let (access, mut tx) = open_read(state, principal, slug).await?;
    let settings = org_settings::get(tx.conn(), access.org.id).await?;
    Ok((access, tx, settings))
}

/// `GET /api/v1/orgs/{org}/machines?liveness=&after=&limit=`, by id.
pub async fn machines(
    State(state): State<AppState>,
    principal: Principal,
    Path(slug): Path<String>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let filter = query.filter()?;
    let (access, mut tx, settings) = open(&state, principal, &slug).await?;
    let list = fleet::machines(tx.conn(), access.org.id, &settings, &filter).await?;
    tx.commit().await?;
    let next = next_after(list.iter().map(|m| m.id.as_str()), filter.limit);
    Ok(Json(json!({ "machines": list, "next_after": next })))
}

/// `GET /api/v1/orgs/{org}/machines/{id}`, with its workers.
pub async fn machine(
    State(state): State<AppState>,
    principal: Principal,
    Path((slug, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (access, mut tx, settings) = open(&state, principal, &slug).await?;
    let found = fleet::machines(tx.conn(), access.org.id, &settings, &Filter::one(&id))
        .await?
        .pop();
    let workers = match &found {
        Some(_) => {
            let filter = Filter {
                machine: Some(id.clone()),
                limit: fleet::MAX_PAGE,
                ..Filter::default()
            };
            fleet::workers(tx.conn(), access.org.id, &settings, &filter).await?
        }
        None => Vec::new(),
    };
    tx.commit().await?;
    let machine = found.ok_or_else(|| ApiError::NotFound {
        message: format!("no machine {id:?}"),
    })?;
    Ok(Json(json!({ "machine": machine, "workers": workers })))
}

/// `GET /api/v1/orgs/{org}/workers?machine=&status=&liveness=&after=&limit=`, by id.
pub async fn workers(
    State(state): State<AppState>,
    principal: Principal,
    Path(slug): Path<String>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let filter = query.filter()?;
    let (access, mut tx, settings) = open(&state, principal, &slug).await?;
    let list = fleet::workers(tx.conn(), access.org.id, &settings, &filter).await?;
    tx.commit().await?;
    let next = next_after(list.iter().map(|w| w.id.as_str()), filter.limit);
    Ok(Json(json!({ "workers": list, "next_after": next })))
}

/// `GET /api/v1/orgs/{org}/workers/{id}`.
pub async fn worker(
    State(state): State<AppState>,
    principal: Principal,
    Path((slug, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (access, mut tx, settings) = open(&state, principal, &slug).await?;
    let found = fleet::workers(tx.conn(), access.org.id, &settings, &Filter::one(&id))
        .await?
        .pop();
    tx.commit().await?;
    let worker = found.ok_or_else(|| ApiError::NotFound {
        message: format!("no worker {id:?}"),
    })?;
    Ok(Json(json!({ "worker": worker })))
}

/// `DELETE /api/v1/orgs/{org}/machines/{id}`: admins remove an offline machine and its workers'
/// rows; what they did stays in the history.
pub async fn remove_machine(
    State(state): State<AppState>,
    principal: Principal,
    Path((slug, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let mut access = OrgAccess::resolve(&state, principal, &slug).await?;
    let mut tx = access.begin_write(&state, Role::Admin).await?;
    let settings = org_settings::get(tx.conn(), access.org.id).await?;
    let workers = match fleet::remove_machine(tx.conn(), access.org.id, &settings, &id).await? {
        Removal::Removed { workers } => workers,
        Removal::NotOffline { liveness } => {
            return Err(ApiError::Conflict {
                code: "machine_not_offline",
                message: format!(
                    "machine {id:?} is {liveness}; only an offline machine can be removed"
                ),
            })
        }
        Removal::NotFound => {
            return Err(ApiError::NotFound {
                message: format!("no machine {id:?}"),
            })
        }
    };
    audit::record(
        tx.conn(),
        access.org.id,
        &principal.actor(),
        "machine.removed",
        Some(&format!("machine:{id}")),
        json!({ "workers": workers }),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
