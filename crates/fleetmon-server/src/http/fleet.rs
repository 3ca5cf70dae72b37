//! `GET /api/v1/orgs/{org}/machines…` and `…/workers…`: the fleet as it is now, with derived
//! liveness, for viewers and read tokens; `DELETE …/machines/{id}` for admins.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use fleetmon_proto::ErrorBody;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::{Caller, OrgAccess};
use super::openapi::OrgPath;
use super::params::Params;
use super::{ApiError, AppState};
use crate::orgs::{audit, settings as org_settings, Role};
use crate::query::fleet::{self, Filter, Machine, Removal, Worker};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `online`, `stale` or `offline`.
    liveness: Option<String>,
    /// Workers on this machine (workers only).
    machine: Option<String>,
    /// The worker's reported status (workers only).
    status: Option<String>,
    /// The `next_after` of the previous page.
    after: Option<String>,
    /// 1 to 1000; 200 by default.
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
            ids: None,
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

/// [`OrgAccess::open_read`], and the org's liveness thresholds: what every read of the fleet
/// starts with (the API's and the dashboard's).
pub(crate) async fn open(
    state: &AppState,
    caller: impl Into<Caller>,
    slug: &str,
) -> Result<(OrgAccess, crate::db::TenantTx, org_settings::OrgSettings), ApiError> {
    let (access, mut tx) = OrgAccess::open_read(state, caller, slug).await?;
    let settings = org_settings::get(tx.conn(), access.org.id).await?;
    Ok((access, tx, settings))
}

#[derive(Serialize, ToSchema)]
pub struct MachinePage {
    machines: Vec<Machine>,
    /// The cursor of the next page, when this one was full.
    next_after: Option<String>,
}

/// The org's machines by id, with derived liveness.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/machines", tag = "fleet", params(OrgPath, ListQuery),
    security(("bearer" = []), ("session" = [])),
    responses((status = 200, body = MachinePage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn machines(
    State(state): State<AppState>,
    caller: Caller,
    Path(slug): Path<String>,
    Params(query): Params<ListQuery>,
) -> Result<Json<MachinePage>, ApiError> {
    let filter = query.filter()?;
    let (access, mut tx, settings) = open(&state, caller, &slug).await?;
    let list = fleet::machines(tx.conn(), access.org.id, &settings, &filter).await?;
    tx.commit().await?;
    let next = next_after(list.iter().map(|m| m.id.as_str()), filter.limit);
    Ok(Json(MachinePage {
        machines: list,
        next_after: next,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct MachineDetail {
    machine: Machine,
    workers: Vec<Worker>,
}

/// One machine, with its workers.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/machines/{id}", tag = "fleet", params(OrgPath, ("id" = String, Path)),
    security(("bearer" = []), ("session" = [])),
    responses((status = 200, body = MachineDetail), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn machine(
    State(state): State<AppState>,
    caller: Caller,
    Path((slug, id)): Path<(String, String)>,
) -> Result<Json<MachineDetail>, ApiError> {
    let (access, mut tx, settings) = open(&state, caller, &slug).await?;
    let found = fleet::machine_with_workers(tx.conn(), access.org.id, &settings, &id).await?;
    tx.commit().await?;
    let (machine, workers) = found.ok_or_else(|| ApiError::NotFound {
        message: format!("no machine {id:?}"),
    })?;
    Ok(Json(MachineDetail { machine, workers }))
}

#[derive(Serialize, ToSchema)]
pub struct WorkerPage {
    workers: Vec<Worker>,
    /// The cursor of the next page, when this one was full.
    next_after: Option<String>,
}

/// The org's workers by id, with derived liveness.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/workers", tag = "fleet", params(OrgPath, ListQuery),
    security(("bearer" = []), ("session" = [])),
    responses((status = 200, body = WorkerPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn workers(
    State(state): State<AppState>,
    caller: Caller,
    Path(slug): Path<String>,
    Params(query): Params<ListQuery>,
) -> Result<Json<WorkerPage>, ApiError> {
    let filter = query.filter()?;
    let (access, mut tx, settings) = open(&state, caller, &slug).await?;
    let list = fleet::workers(tx.conn(), access.org.id, &settings, &filter).await?;
    tx.commit().await?;
    let next = next_after(list.iter().map(|w| w.id.as_str()), filter.limit);
    Ok(Json(WorkerPage {
        workers: list,
        next_after: next,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct WorkerDetail {
    worker: Worker,
}

/// One worker.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/workers/{id}", tag = "fleet", params(OrgPath, ("id" = String, Path)),
    security(("bearer" = []), ("session" = [])),
    responses((status = 200, body = WorkerDetail), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn worker(
    State(state): State<AppState>,
    caller: Caller,
    Path((slug, id)): Path<(String, String)>,
) -> Result<Json<WorkerDetail>, ApiError> {
    let (access, mut tx, settings) = open(&state, caller, &slug).await?;
    let found = fleet::workers(tx.conn(), access.org.id, &settings, &Filter::one(&id))
        .await?
        .pop();
    tx.commit().await?;
    let worker = found.ok_or_else(|| ApiError::NotFound {
        message: format!("no worker {id:?}"),
    })?;
    Ok(Json(WorkerDetail { worker }))
}

/// Removes an offline machine and its workers' rows; their history stays. Admins only.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/machines/{id}", tag = "fleet", params(OrgPath, ("id" = String, Path)),
    security(("bearer" = []), ("session" = [])),
    responses((status = 204, description = "Removed"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "`machine_not_offline`", body = ErrorBody)))]
pub async fn remove_machine(
    State(state): State<AppState>,
    caller: Caller,
    Path((slug, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    remove_offline_machine(&state, caller, &slug, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes the offline machine `id` of the org `slug` and its workers' rows, with its audit
/// entry (the API's and the dashboard's removal). Admins only; a machine that is not offline
/// stays (409 `machine_not_offline`).
pub(crate) async fn remove_offline_machine(
    state: &AppState,
    caller: impl Into<Caller>,
    slug: &str,
    id: &str,
) -> Result<(), ApiError> {
    let mut access = OrgAccess::resolve(state, caller, slug).await?;
    let mut tx = access.begin_write(state, Role::Admin).await?;
    let settings = org_settings::get(tx.conn(), access.org.id).await?;
    let workers = match fleet::remove_machine(tx.conn(), access.org.id, &settings, id).await? {
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
        &access.principal.actor(),
        "machine.removed",
        Some(&format!("machine:{id}")),
        serde_json::json!({ "workers": workers }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
