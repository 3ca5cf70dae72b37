//! `GET /api/v1/orgs/{org}/jobs` and `…/jobs/{id}`: job history with filters, search and
//! cursor pagination, and one job with its timeline, attempts and error chain.

use std::collections::HashSet;

use axum::extract::{Path, State};
use axum::Json;
use chrono::{DateTime, Utc};
use fleetmon_proto::ErrorBody;
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::{Caller, OrgAccess};
use super::openapi::OrgPath;
use super::params::Params;
use super::{ApiError, AppState};
use crate::orgs::{settings as org_settings, Role};
use crate::query::jobs::{self, Cursor, JobDetail, JobFilter, JobSummary};

/// Longest search text, in characters.
const MAX_SEARCH_CHARS: usize = 256;

const PARAMETERS: &str =
    "status, job_type, machine, worker, workflow, customer, q, since, until, cursor, limit";

fn bad(code: &'static str, message: String) -> ApiError {
    ApiError::BadRequest { code, message }
}

fn time(name: &str, value: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            bad(
                "invalid_time",
                format!(
                    "`{name}` must be an RFC 3339 time such as 2025-01-31T08:00:00Z ({e}); \
                     in a URL, write a `+` offset as %2B"
                ),
            )
        })
}

/// The listing's query string, checked (the API's and the dashboard's jobs page). An empty value
/// counts as not given; `status` may be a comma-separated list and may repeat; any other
/// parameter may appear once.
pub(crate) fn filter(pairs: Vec<(String, String)>) -> Result<JobFilter, ApiError> {
    let mut filter = JobFilter {
        limit: jobs::DEFAULT_PAGE,
        ..JobFilter::default()
    };
    let mut seen = HashSet::new();
    for (key, value) in pairs {
        if key != "status" && !seen.insert(key.clone()) {
            return Err(bad(
                "duplicate_parameter",
                format!("`{key}` is given more than once"),
            ));
        }
        if value.is_empty() {
            continue;
        }
        match key.as_str() {
            "status" => {
                for status in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    if !jobs::STATUSES.contains(&status) {
                        return Err(bad(
                            "invalid_status",
                            format!(
                                "unknown status {status:?}; statuses are {}",
                                jobs::STATUSES.join(", ")
                            ),
                        ));
                    }
                    if !filter.statuses.iter().any(|s| s == status) {
                        filter.statuses.push(status.to_string());
                    }
                }
            }
            "job_type" => filter.job_type = Some(value),
            "machine" => filter.machine = Some(value),
            "worker" => filter.worker = Some(value),
            "workflow" => filter.workflow = Some(value),
            "customer" => filter.customer = Some(value),
            "q" => {
                if value.chars().count() > MAX_SEARCH_CHARS {
                    return Err(bad(
                        "invalid_search",
                        format!("`q` is at most {MAX_SEARCH_CHARS} characters"),
                    ));
                }
                filter.text = Some(value);
            }
            "since" => filter.since = Some(time("since", &value)?),
            "until" => filter.until = Some(time("until", &value)?),
            "cursor" => {
                filter.after = Some(Cursor::decode(&value).ok_or_else(|| {
                    bad(
                        "invalid_cursor",
                        "`cursor` must be a `next_cursor` from an earlier page".into(),
                    )
                })?)
            }
            "limit" => {
                filter.limit = value
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (1..=jobs::MAX_PAGE).contains(n))
                    .ok_or_else(|| {
                        bad(
                            "invalid_limit",
                            format!("`limit` is a number from 1 to {}", jobs::MAX_PAGE),
                        )
                    })?
            }
            _ => {
                return Err(bad(
                    "unknown_parameter",
                    format!("unknown parameter `{key}`; the listing takes {PARAMETERS}"),
                ))
            }
        }
    }
    if let (Some(since), Some(until)) = (filter.since, filter.until) {
        if since >= until {
            return Err(bad(
                "invalid_time_range",
                "`since` must be earlier than `until`".into(),
            ));
        }
    }
    Ok(filter)
}

#[derive(Serialize, ToSchema)]
pub struct JobPage {
    jobs: Vec<JobSummary>,
    /// Where the next page starts (pass it as `cursor`); `null` after the last page.
    next_cursor: Option<String>,
    /// When a search stopped at its bound before filling the page: the `created_at` of the
    /// oldest job it examined.
    search_stopped_at: Option<DateTime<Utc>>,
}

/// The org's jobs, newest first, filtered, searched and paged by cursor.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/jobs", tag = "jobs", operation_id = "list_jobs",
    params(OrgPath,
        ("status" = Option<String>, Query, description = "One status or a comma-separated list; may repeat"),
        ("job_type" = Option<String>, Query), ("machine" = Option<String>, Query, description = "The current attempt's machine"),
        ("worker" = Option<String>, Query, description = "The current attempt's worker"),
        ("workflow" = Option<String>, Query), ("customer" = Option<String>, Query),
        ("q" = Option<String>, Query, description = "Case-insensitive literal text in the name, type or error; examines at most 5 000 jobs a request"),
        ("since" = Option<DateTime<Utc>>, Query, description = "created_at at or after"),
        ("until" = Option<DateTime<Utc>>, Query, description = "created_at before"),
        ("cursor" = Option<String>, Query, description = "The previous page's next_cursor"),
        ("limit" = Option<i64>, Query, description = "1 to 500; 50 by default")),
    security(("bearer" = []), ("session" = [])),
    responses((status = 200, body = JobPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(slug): Path<String>,
    Params(pairs): Params<Vec<(String, String)>>,
) -> Result<Json<JobPage>, ApiError> {
    let filter = filter(pairs)?;
    let (access, mut tx) = OrgAccess::open_read(&state, caller, &slug).await?;
    let page = jobs::list(tx.conn(), access.org.id, &filter).await?;
    tx.commit().await?;
    Ok(Json(JobPage {
        jobs: page.jobs,
        next_cursor: page.next.map(|c| c.encode()),
        search_stopped_at: page.search_stopped_at,
    }))
}

/// One job with its worker, machine, timeline, attempts and error chain. Viewers and read tokens
/// see the payload and result only when the org's `payloads_visible_to_viewers` allows it.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/jobs/{id}", tag = "jobs", operation_id = "show_job", params(OrgPath, ("id" = String, Path)),
    security(("bearer" = []), ("session" = [])),
    responses((status = 200, body = JobDetail), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path((slug, id)): Path<(String, String)>,
) -> Result<Json<JobDetail>, ApiError> {
    let (_, detail) = visible_detail(&state, caller, &slug, &id).await?;
    Ok(Json(detail))
}

/// The job `id` of the org `slug` as `caller` may see it (the API's and the dashboard's read):
/// a 404 for a job the org does not have, the payloads withheld where the org says so.
pub(crate) async fn visible_detail(
    state: &AppState,
    caller: impl Into<Caller>,
    slug: &str,
    id: &str,
) -> Result<(OrgAccess, JobDetail), ApiError> {
    let (access, mut tx) = OrgAccess::open_read(state, caller, slug).await?;
    let settings = org_settings::get(tx.conn(), access.org.id).await?;
    let found = jobs::detail(tx.conn(), access.org.id, &settings, id).await?;
    tx.commit().await?;
    let mut detail = found.ok_or_else(|| ApiError::NotFound {
        message: format!("no job {id:?}"),
    })?;
    if !settings.payloads_visible_to_viewers && access.role.is_none_or(|r| r < Role::Member) {
        detail.hide_payloads();
    }
    Ok((access, detail))
}
