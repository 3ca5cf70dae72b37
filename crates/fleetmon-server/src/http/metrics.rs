//! `GET /api/v1/orgs/{org}/metrics/…`: job metrics per time bucket and agents' metric series.

use axum::extract::{Path, State};
use axum::Json;
use chrono::{DateTime, Utc};
use fleetmon_proto::ErrorBody;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::{Caller, OrgAccess};
use super::openapi::OrgPath;
use super::params::{given, Params, WindowQuery};
use super::{ApiError, AppState};
use crate::query::job_metrics::{self, Bucket, Group, GroupBy};
use crate::query::series::{self, Agg, MetricName, Series};
use crate::query::window::Buckets;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobsQuery {
    /// Bucket width: seconds or `<n>s|m|h|d`; by default 1m for 1h, 15m for 24h, 1h for 7d, 6h
    /// for 30d. At most 1000 buckets.
    step: Option<String>,
    /// `job_type`, `machine` or `worker`.
    group_by: Option<String>,
    /// Only jobs of this type.
    job_type: Option<String>,
    /// Only jobs on this machine.
    machine: Option<String>,
    /// Only jobs on this worker.
    worker: Option<String>,
}

/// Job metrics of a window. Without `group_by`: `buckets`; with it: `group_by`, `groups` and
/// `truncated`.
#[derive(Serialize, ToSchema)]
pub struct JobMetrics {
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    step_s: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    buckets: Option<Vec<Bucket>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group_by: Option<String>,
    /// The busiest groups first, at most 50.
    #[serde(skip_serializing_if = "Option::is_none")]
    groups: Option<Vec<Group>>,
    /// Whether more groups had jobs than are listed.
    #[serde(skip_serializing_if = "Option::is_none")]
    truncated: Option<bool>,
}

/// Per time bucket: jobs submitted, completed, failed and cancelled, failure rate, duration
/// and queue-wait percentiles; every bucket of the window present.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/metrics/jobs", tag = "metrics", params(OrgPath, WindowQuery, JobsQuery),
    security(("bearer" = []), ("session" = [])),
    responses((status = 200, body = JobMetrics), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn jobs(
    State(state): State<AppState>,
    caller: Caller,
    Path(slug): Path<String>,
    Params(window): Params<WindowQuery>,
    Params(query): Params<JobsQuery>,
) -> Result<Json<JobMetrics>, ApiError> {
    let buckets = Buckets::new(window.window()?, query.step.as_deref())?;
    let group_by = given(query.group_by)
        .map(|g| {
            GroupBy::parse(&g).ok_or_else(|| ApiError::BadRequest {
                code: "invalid_group_by",
                message: format!("group_by is job_type, machine or worker, not {g:?}"),
            })
        })
        .transpose()?;
    let filters = job_metrics::Filters {
        job_type: given(query.job_type),
        machine: given(query.machine),
        worker: given(query.worker),
    };
    let (access, mut tx) = OrgAccess::open_read(&state, caller, &slug).await?;
    let (groups, truncated) =
        job_metrics::load(tx.conn(), access.org.id, buckets, group_by, &filters).await?;
    tx.commit().await?;
    let mut body = JobMetrics {
        since: buckets.window.since,
        until: buckets.window.until,
        step_s: buckets.step_s,
        buckets: None,
        group_by: None,
        groups: None,
        truncated: None,
    };
    match group_by {
        None => body.buckets = Some(groups.into_iter().flat_map(|g| g.buckets).collect()),
        Some(group_by) => {
            body.group_by = Some(group_by.name().to_string());
            body.groups = Some(groups);
            body.truncated = Some(truncated);
        }
    }
    Ok(Json(body))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SeriesQuery {
    /// The metric, as agents name it; `…/metrics/series/names` lists them.
    #[param(required = true)]
    name: Option<String>,
    /// Only this machine's series.
    machine: Option<String>,
    /// Only this worker's series.
    worker: Option<String>,
    /// Bucket width, as for job metrics.
    step: Option<String>,
    /// `avg` (default), `min`, `max`, `sum`, `last` or `count`.
    agg: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SeriesPage {
    name: String,
    agg: String,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    step_s: i64,
    /// By machine, worker and labels; at most 100.
    series: Vec<Series>,
    /// Whether more series matched than are listed.
    truncated: bool,
}

/// A metric's series (one per machine, worker and labels), aggregated per time bucket.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/metrics/series", tag = "metrics", params(OrgPath, WindowQuery, SeriesQuery),
    security(("bearer" = []), ("session" = [])),
    responses((status = 200, body = SeriesPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn series(
    State(state): State<AppState>,
    caller: Caller,
    Path(slug): Path<String>,
    Params(window): Params<WindowQuery>,
    Params(query): Params<SeriesQuery>,
) -> Result<Json<SeriesPage>, ApiError> {
    let name = given(query.name).ok_or_else(|| ApiError::BadRequest {
        code: "missing_name",
        message: "name is required: the metric to read (…/metrics/series/names lists them)".into(),
    })?;
    let buckets = Buckets::new(window.window()?, query.step.as_deref())?;
    let agg_name = given(query.agg).unwrap_or_else(|| "avg".into());
    let agg = Agg::parse(&agg_name).ok_or_else(|| ApiError::BadRequest {
        code: "invalid_agg",
        message: format!("agg is avg, min, max, sum, last or count, not {agg_name:?}"),
    })?;
    let filters = series::Filters {
        machine: given(query.machine),
        worker: given(query.worker),
    };
    let (access, mut tx) = OrgAccess::open_read(&state, caller, &slug).await?;
    let (list, truncated) =
        series::load(tx.conn(), access.org.id, &name, &filters, buckets, agg).await?;
    tx.commit().await?;
    Ok(Json(SeriesPage {
        name,
        agg: agg_name,
        since: buckets.window.since,
        until: buckets.window.until,
        step_s: buckets.step_s,
        series: list,
        truncated,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NamesQuery {
    /// Only names this machine's series carry.
    machine: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct MetricNames {
    /// By name, at most 1000.
    names: Vec<MetricName>,
}

/// The metric names agents have sent, with how many series carry each.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/metrics/series/names", tag = "metrics", params(OrgPath, NamesQuery),
    security(("bearer" = []), ("session" = [])),
    responses((status = 200, body = MetricNames), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn series_names(
    State(state): State<AppState>,
    caller: Caller,
    Path(slug): Path<String>,
    Params(query): Params<NamesQuery>,
) -> Result<Json<MetricNames>, ApiError> {
    let (access, mut tx) = OrgAccess::open_read(&state, caller, &slug).await?;
    let machine = given(query.machine);
    let names = series::names(tx.conn(), access.org.id, machine.as_deref()).await?;
    tx.commit().await?;
    Ok(Json(MetricNames { names }))
}
