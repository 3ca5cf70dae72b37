//! `GET /orgs/{org}/jobs`: the org's jobs, newest first, with a filter bar that is a plain GET
//! form, so every view is a URL (shareable, bookmarkable, working without JavaScript), and cursor
//! pages. The query string is the API's (`http::jobs::filter` checks it) plus `range`, a time
//! range relative to now that the page turns into the API's `since`. An invalid value is said on
//! the page (400), with the form kept as it was.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use maud::{html, Markup};

use super::fleet::{stream_path, REFRESH_S};
use super::page::{
    self, ago, duration, encode, local_value, rfc3339, InOrg, PageError, Section, RANGES,
};
use super::visitor::Visitor;
use crate::http::auth::OrgAccess;
use crate::http::jobs::filter;
use crate::http::{ApiError, AppState};
use crate::orgs::Role;
use crate::query::jobs::{self, JobFilter, JobSummary, Page};
use crate::query::window::parse_duration;

/// The text fields of the filter bar: parameter, label.
const TEXT_FILTERS: &[(&str, &str)] = &[
    ("job_type", "Job type"),
    ("machine", "Machine"),
    ("worker", "Worker"),
    ("workflow", "Workflow"),
    ("customer", "Customer"),
];

/// A view of the listing as its URL says it: the non-empty parameters, in order.
struct View {
    pairs: Vec<(String, String)>,
}

impl View {
    fn new(pairs: Vec<(String, String)>) -> Self {
        Self {
            pairs: pairs.into_iter().filter(|(_, v)| !v.is_empty()).collect(),
        }
    }

    fn get(&self, key: &str) -> &str {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map_or("", |(_, v)| v.as_str())
    }

    /// Every `status` given (each may be a comma-separated list), joined as the API reads them.
    fn statuses(&self) -> String {
        self.pairs
            .iter()
            .filter(|(k, _)| k == "status")
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The query string of this view without its cursor, then `extra`.
    fn link(&self, base: &str, extra: Option<(&str, &str)>) -> String {
        let query: Vec<String> = self
            .pairs
            .iter()
            .filter(|(k, _)| k != "cursor")
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(extra)
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        if query.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", query.join("&"))
        }
    }

    /// The API's filter for this view at `now`.
    fn filter(&self, now: DateTime<Utc>) -> Result<JobFilter, ApiError> {
        let bad = |code, message: &str| ApiError::BadRequest {
            code,
            message: message.to_string(),
        };
        let mut pairs = Vec::new();
        for (key, value) in &self.pairs {
            match key.as_str() {
                "range" => {}
                "since" | "until" => pairs.push((key.clone(), rfc3339(value))),
                _ => pairs.push((key.clone(), value.clone())),
            }
        }
        let range = self.get("range");
        if !range.is_empty() {
            if !self.get("since").is_empty() || !self.get("until").is_empty() {
                return Err(bad(
                    "invalid_time_range",
                    "Choose a time range or From and To, not both.",
                ));
            }
            let length = parse_duration(range).ok_or_else(|| {
                bad(
                    "invalid_range",
                    "The time range is a duration such as 1h, 24h, 7d or 30d.",
                )
            })?;
            pairs.push(("since".into(), (now - length).to_rfc3339()));
        }
        filter(pairs)
    }
}

/// `GET /orgs/{org}/jobs`.
pub async fn list(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(slug): Path<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, PageError> {
    // Access first: a bad filter on someone else's org is that org's 404, never a 400.
    let (access, mut tx) = OrgAccess::open_read(&state, visitor.principal, &slug).await?;
    let (view, checked) = match query {
        Ok(Query(pairs)) => (View::new(pairs), Ok(())),
        Err(rejection) => (View::new(Vec::new()), Err(rejection.body_text())),
    };
    let now = Utc::now();
    let filter = checked.and_then(|()| {
        view.filter(now).map_err(|error| match error {
            ApiError::BadRequest { message, .. } => message,
            other => other.to_string(),
        })
    });
    let (listed, problem) = match filter {
        Ok(filter) => (
            Some(jobs::list(tx.conn(), access.org.id, &filter).await?),
            None,
        ),
        Err(message) => (None, Some(message)),
    };
    tx.commit().await?;

    let base = format!("/orgs/{}/jobs", access.org.slug);
    let content = html! {
        div.page-head {
            div {
                h1 { "Jobs" }
                p.muted { "Newest first · times in UTC" }
            }
        }
        (filter_bar(&base, &view))
        @if let Some(problem) = &problem {
            p.notice.error role="alert" { "This filter cannot be used: " (problem) }
        }
        @if let Some(listed) = &listed {
            // The newest page keeps itself current (new jobs appear without a reload); an older
            // page stays as it was read, or its rows would shift under the reader.
            @if view.get("cursor").is_empty() {
                div data-live="jobs" data-refresh=(REFRESH_S)
                    data-stream=(stream_path(&access.org.slug)) {
                    (results(&access.org.slug, &base, &view, listed, now))
                }
            } @else {
                (results(&access.org.slug, &base, &view, listed, now))
            }
        }
    };
    let in_org = InOrg {
        org: &access.org,
        role: access.role.unwrap_or(Role::Viewer),
        section: Section::Jobs,
    };
    let status = match problem {
        Some(_) => StatusCode::BAD_REQUEST,
        None => StatusCode::OK,
    };
    Ok(page::respond(
        status,
        page::app(&visitor, Some(in_org), "Jobs", content),
    ))
}

fn filter_bar(base: &str, view: &View) -> Markup {
    let statuses = view.statuses();
    let known = statuses.is_empty() || jobs::STATUSES.contains(&statuses.as_str());
    let range = view.get("range");
    html! {
        form.filter-bar method="get" action=(base) aria-label="Filter jobs" {
            div.field {
                label for="f-status" { "Status" }
                select #f-status name="status" {
                    option value="" selected[statuses.is_empty()] { "Any status" }
                    @for status in jobs::STATUSES {
                        option value=(status) selected[statuses == *status] { (status) }
                    }
                    @if !known {
                        option value=(statuses) selected { (statuses.replace(',', ", ")) }
                    }
                }
            }
            @for (name, label) in TEXT_FILTERS {
                div.field {
                    label for={ "f-" (name) } { (label) }
                    input #{ "f-" (name) } type="text" name=(name) value=(view.get(name))
                        autocapitalize="none" spellcheck="false";
                }
            }
            div.field.wide {
                label for="f-q" { "Search" }
                input #f-q type="search" name="q" value=(view.get("q")) maxlength="256"
                    placeholder="name, type or error" aria-describedby="f-q-hint";
                span #f-q-hint .hint { "Name, job type, or the error's type, reason or message." }
            }
            div.field {
                label for="f-range" { "Created" }
                select #f-range name="range" {
                    option value="" selected[range.is_empty()] { "Any time" }
                    @for (value, label) in RANGES {
                        option value=(value) selected[range == *value] { (label) }
                    }
                    @if !range.is_empty() && !RANGES.iter().any(|(v, _)| *v == range) {
                        option value=(range) selected { "Last " (range) }
                    }
                }
            }
            div.field {
                label for="f-since" { "From (UTC)" }
                input #f-since type="datetime-local" name="since" value=(local_value(view.get("since")));
            }
            div.field {
                label for="f-until" { "To (UTC)" }
                input #f-until type="datetime-local" name="until" value=(local_value(view.get("until")));
            }
            div.field.buttons {
                button type="submit" { "Apply filters" }
                a.button.secondary href=(base) { "Clear" }
            }
        }
    }
}

fn results(slug: &str, base: &str, view: &View, listed: &Page, now: DateTime<Utc>) -> Markup {
    let paged = !view.get("cursor").is_empty();
    html! {
        @if let Some(stopped) = listed.search_stopped_at {
            p.notice.info {
                "The search looked through jobs created down to "
                (stopped.format("%Y-%m-%d %H:%M:%S UTC"))
                "; “Older” searches on from there."
            }
        }
        @if listed.jobs.is_empty() {
            p.notice.info { @if paged { "No older jobs match." } @else { "No jobs match." } }
        } @else {
            div.table-wrap {
                table.jobs {
                    caption.muted { "Jobs, newest first" }
                    thead {
                        tr {
                            th scope="col" { "Job" }
                            th scope="col" { "Status" }
                            th scope="col" { "Type" }
                            th.num scope="col" { "Attempt" }
                            th scope="col" { "Worker" }
                            th scope="col" { "Machine" }
                            th scope="col" { "Created" }
                            th.num scope="col" { "Duration" }
                            th scope="col" { "Error" }
                        }
                    }
                    tbody {
                        @for job in &listed.jobs { (job_row(slug, job, now)) }
                    }
                }
            }
        }
        @if paged || listed.next.is_some() {
            nav.pager aria-label="Pages" {
                @if paged {
                    a.button.secondary rel="first" href=(view.link(base, None)) { "Newest" }
                }
                @if let Some(next) = &listed.next {
                    a.button.secondary rel="next" href=(view.link(base, Some(("cursor", &next.encode())))) { "Older" }
                }
            }
        }
    }
}

fn job_row(slug: &str, job: &JobSummary, now: DateTime<Utc>) -> Markup {
    let error = job.error.as_ref();
    let error_text = |key: &str| error.and_then(|e| e[key].as_str());
    html! {
        tr data-job=(job.id) {
            td {
                a href=(page::job_path(slug, &job.id)) {
                    (job.name.as_deref().unwrap_or(&job.id))
                }
                @if job.name.is_some() { " " span.muted.mono { (job.id) } }
            }
            td { span.badge.(job.status) { (job.status) } }
            td { (job.job_type.as_deref().unwrap_or("—")) }
            td.num {
                (job.attempt)
                @if let Some(max) = job.max_retries { span.muted { " / " (max + 1) } }
            }
            td.mono { (job.worker_id.as_deref().unwrap_or("—")) }
            td.mono {
                @match &job.machine_id {
                    Some(machine) => a href=(page::machine_path(slug, machine)) { (machine) },
                    None => "—",
                }
            }
            td { (ago(job.created_at, now)) }
            td.num { (job.duration_ms.map_or("—".to_string(), duration)) }
            td.error-cell {
                @if let Some(kind) = error_text("type") {
                    strong { (kind) }
                    @if let Some(message) = error_text("message").or(error_text("reason")) {
                        ": " (message)
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(query: &str) -> Vec<(String, String)> {
        query
            .split('&')
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap();
                (k.to_string(), v.to_string())
            })
            .collect()
    }

    #[test]
    fn links_keep_the_filters_and_replace_the_cursor() {
        let view = View::new(pairs("status=failed&q=out of&cursor=abc&machine="));
        assert_eq!(view.pairs.len(), 3, "empty fields are not filters");
        assert_eq!(view.link("/j", None), "/j?status=failed&q=out%20of");
        assert_eq!(
            view.link("/j", Some(("cursor", "xyz"))),
            "/j?status=failed&q=out%20of&cursor=xyz"
        );
        assert_eq!(View::new(Vec::new()).link("/j", None), "/j");
    }

    #[test]
    fn a_range_becomes_since_and_cannot_be_mixed_with_from_and_to() {
        let now = Utc::now();
        let view = View::new(pairs("range=24h&status=failed"));
        let filter = view.filter(now).unwrap();
        assert_eq!(filter.since, Some(now - chrono::Duration::hours(24)));
        assert_eq!(filter.statuses, ["failed"]);
        for bad in [
            "range=24h&since=2026-01-01T00:00",
            "range=soon",
            "status=lost",
        ] {
            assert!(
                matches!(
                    View::new(pairs(bad)).filter(now),
                    Err(ApiError::BadRequest { .. })
                ),
                "{bad}"
            );
        }
    }
}
