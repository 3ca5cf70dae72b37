//! `GET /api/v1/orgs/{org}/metrics/…`: job metrics per time bucket and agents' metric series.

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Principal;
use super::fleet::open_read;
use super::params::{given, Params, WindowQuery};
use super::{ApiError, AppState};
use crate::query::window::Buckets;
use crate::query::{job_metrics, series};

#[derive(Deserialize)]
pub struct JobsQuery {
    #[serde(flatten)]
    window: WindowQuery,
    step: Option<String>,
    group_by: Option<String>,
    job_type: Option<String>,
    machine: Option<String>,
    worker: Option<String>,
}

/// `GET …/metrics/jobs?range=|since=&until=&step=&group_by=&job_type=&machine=&worker=`.
pub async fn jobs(
    State(state): State<AppState>,
    principal: Principal,
    Path(slug): Path<String>,
    Params(query): Params<JobsQuery>,
) -> Result<Json<Value>, ApiError> {
    let buckets = Buckets::new(query.window.window()?, query.step.as_deref())?;
    let group_by = given(query.group_by)
        .map(|g| {
            job_metrics::GroupBy::parse(&g).ok_or_else(|| ApiError::BadRequest {
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
    let (access, mut tx) = open_read(&state, principal, &slug).await?;
    let (groups, truncated) =
        job_metrics::load(tx.conn(), access.org.id, buckets, group_by, &filters).await?;
    tx.commit().await?;
    let window = json!({
        "since": buckets.window.since,
        "until": buckets.window.until,
        "step_s": buckets.step_s,
    });
    let mut body = window.as_object().cloned().unwrap_or_default();
    match group_by {
        None => {
            let buckets = groups.into_iter().next().map(|g| g.buckets);
            body.insert("buckets".into(), json!(buckets.unwrap_or_default()));
        }
        Some(group_by) => {
            body.insert("group_by".into(), json!(group_by.name()));
            body.insert("groups".into(), json!(groups));
            body.insert("truncated".into(), json!(truncated));
        }
    }
    Ok(Json(Value::Object(body)))
}

#[derive(Deserialize)]
pub struct SeriesQuery {
    #[serde(flatten)]
    window: WindowQuery,
    name: Option<String>,
    machine: Option<String>,
    worker: Option<String>,
    step: Option<String>,
    agg: Option<String>,
}

/// `GET …/metrics/series?name=&machine=&worker=&range=|since=&until=&step=&agg=`.
pub async fn series(
    State(state): State<AppState>,
    principal: Principal,
    Path(slug): Path<String>,
    Params(query): Params<SeriesQuery>,
) -> Result<Json<Value>, ApiError> {
    let name = given(query.name).ok_or_else(|| ApiError::BadRequest {
        code: "missing_name",
        message: "name is required: the metric to read (…/metrics/series/names lists them)".into(),
    })?;
    let buckets = Buckets::new(query.window.window()?, query.step.as_deref())?;
    let agg_name = given(query.agg).unwrap_or_else(|| "avg".into());
    let agg = series::Agg::parse(&agg_name).ok_or_else(|| ApiError::BadRequest {
        code: "invalid_agg",
        message: format!("agg is avg, min, max, sum, last or count, not {agg_name:?}"),
    })?;
    let filters = series::Filters {
        machine: given(query.machine),
        worker: given(query.worker),
    };
    let (access, mut tx) = open_read(&state, principal, &slug).await?;
    let (list, truncated) =
        series::load(tx.conn(), access.org.id, &name, &filters, buckets, agg).await?;
    tx.commit().await?;
    Ok(Json(json!({
        "name": name,
        "agg": agg_name,
        "since": buckets.window.since,
        "until": buckets.window.until,
        "step_s": buckets.step_s,
        "series": list,
        "truncated": truncated,
    })))
}

#[derive(Deserialize)]
pub struct NamesQuery {
    machine: Option<String>,
}

/// `GET …/metrics/series/names?machine=`: the metric names agents have sent.
pub async fn series_names(
    State(state): State<AppState>,
    principal: Principal,
    Path(slug): Path<String>,
    Params(query): Params<NamesQuery>,
) -> Result<Json<Value>, ApiError> {
    let (access, mut tx) = open_read(&state, principal, &slug).await?;
    let machine = given(query.machine);
    let names = series::names(tx.conn(), access.org.id, machine.as_deref()).await?;
    tx.commit().await?;
    Ok(Json(json!({ "names": names })))
}
