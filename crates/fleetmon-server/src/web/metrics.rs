//! `GET /orgs/{org}/metrics`: the org's job metrics (throughput, failure rate, duration
//! percentiles, queue wait) and its fleet's GPU history over a time range, as charts. The range
//! selector and the filters are a plain GET form, so a view is its URL; the window is the API's
//! (`query::window`: `range`, or `since`/`until`, with the default bucket step for its length),
//! and the data comes from the API's own queries (`query::job_metrics::load`, as
//! `GET …/metrics/jobs`; `query::series::load`, as `GET …/metrics/series`). An invalid value is
//! said on the page (400), with the form as it was.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use maud::{html, Markup};
use serde::Deserialize;

use super::chart::{step_text, Chart, Kind, Series, Unit};
use super::gpu_history::{self, History};
use super::page::{self, local_value, rfc3339, InOrg, PageError, Section, RANGES};
use super::visitor::Visitor;
use crate::http::auth::OrgAccess;
use crate::http::params::given;
use crate::http::AppState;
use crate::orgs::Role;
use crate::query::job_metrics::{self, Bucket, Filters};
use crate::query::window::{Buckets, Window, WindowParams};

/// The range when the URL names none.
const DEFAULT_RANGE: &str = "24h";
/// The range selector's choice for From and To.
const CUSTOM: &str = "custom";

/// The job filters of the form: parameter, label.
const FILTERS: &[(&str, &str)] = &[
    ("job_type", "Job type"),
    ("machine", "Machine"),
    ("worker", "Worker"),
];

#[derive(Debug, Default, Deserialize)]
pub struct MetricsQuery {
    range: Option<String>,
    since: Option<String>,
    until: Option<String>,
    job_type: Option<String>,
    machine: Option<String>,
    worker: Option<String>,
}

impl MetricsQuery {
    fn since(&self) -> Option<String> {
        given(self.since.clone()).map(|s| rfc3339(&s))
    }

    fn until(&self) -> Option<String> {
        given(self.until.clone()).map(|u| rfc3339(&u))
    }

    /// The range selector's value: the URL's `range`, else custom when it has From or To.
    fn range_choice(&self) -> String {
        given(self.range.clone()).unwrap_or_else(|| {
            if self.since().is_some() || self.until().is_some() {
                CUSTOM.into()
            } else {
                DEFAULT_RANGE.into()
            }
        })
    }

    fn value(&self, name: &str) -> String {
        let value = match name {
            "job_type" => &self.job_type,
            "machine" => &self.machine,
            _ => &self.worker,
        };
        value.clone().unwrap_or_default()
    }

    fn filters(&self) -> Filters {
        Filters {
            job_type: given(self.job_type.clone()),
            machine: given(self.machine.clone()),
            worker: given(self.worker.clone()),
        }
    }

    /// The window `[now − range, now)`, or From/To (read as UTC), cut into the API's default
    /// buckets for its length; or what is wrong with it.
    fn buckets(&self, now: DateTime<Utc>) -> Result<Buckets, String> {
        let (since, until) = (self.since(), self.until());
        let custom = since.is_some() || until.is_some();
        let choice = self.range_choice();
        let range = match choice.as_str() {
            CUSTOM if !custom => return Err("A custom range needs a From or a To time.".into()),
            CUSTOM => None,
            _ if custom => {
                return Err("Choose a time range, or Custom with From and To, not both.".into())
            }
            range => Some(range),
        };
        let params = WindowParams {
            range,
            since: since.as_deref(),
            until: until.as_deref(),
        };
        let window = Window::parse(params, now).map_err(|e| e.to_string())?;
        Buckets::new(window, None).map_err(|e| e.to_string())
    }
}

/// `GET /orgs/{org}/metrics`.
pub async fn show(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(slug): Path<String>,
    query: Result<Query<MetricsQuery>, QueryRejection>,
) -> Result<Response, PageError> {
    // Access first: a bad range on someone else's org is that org's 404, never a 400.
    let (access, mut tx) = OrgAccess::open_read(&state, visitor.principal, &slug).await?;
    let (query, checked) = match query {
        Ok(Query(query)) => (query, Ok(())),
        Err(rejection) => (MetricsQuery::default(), Err(rejection.body_text())),
    };
    let buckets = checked.and_then(|()| query.buckets(Utc::now()));
    let filters = query.filters();
    let loaded = match &buckets {
        Ok(buckets) => {
            let (groups, _) =
                job_metrics::load(tx.conn(), access.org.id, *buckets, None, &filters).await?;
            let jobs: Vec<Bucket> = groups.into_iter().flat_map(|g| g.buckets).collect();
            let gpus = gpu_history::load(
                tx.conn(),
                access.org.id,
                filters.machine.as_deref(),
                *buckets,
            )
            .await?;
            Some((*buckets, jobs, gpus))
        }
        Err(_) => None,
    };
    tx.commit().await?;

    let base = format!("/orgs/{}/metrics", access.org.slug);
    let content = html! {
        div.page-head {
            div {
                h1 { "Metrics" }
                p.muted {
                    @match &loaded {
                        Some((buckets, _, _)) => {
                            (buckets.window.since.format("%Y-%m-%d %H:%M")) " to "
                            (buckets.window.until.format("%Y-%m-%d %H:%M")) " UTC · buckets of "
                            (step_text(buckets.step_s))
                        }
                        None => "Times in UTC",
                    }
                }
            }
        }
        (range_form(&base, &query))
        @if let Err(problem) = &buckets {
            p.notice.error role="alert" { "This range cannot be shown: " (problem) }
        }
        @if let Some((buckets, jobs, gpus)) = &loaded {
            (totals(jobs))
            section aria-labelledby="jobs-title" {
                h2 #jobs-title { "Jobs" }
                div.charts {
                    (throughput("throughput", "Throughput (jobs per bucket)", buckets, jobs))
                    (failure_rate(buckets, jobs))
                    (durations(buckets, jobs))
                    (queue_wait(buckets, jobs))
                }
            }
            section aria-labelledby="gpus-title" {
                h2 #gpus-title { "GPUs" }
                @if filters.job_type.is_some() || filters.worker.is_some() {
                    p.muted { "GPU charts follow the machine filter only: GPUs belong to machines, not to job types or workers." }
                }
                @if gpus.iter().any(|h| h.truncated) {
                    p.notice.info {
                        "These charts cover the first " (crate::query::series::MAX_SERIES)
                        " GPU series by machine; choose a machine to see the rest."
                    }
                }
                div.charts {
                    @for history in gpus { (History::fleet(history, buckets)) }
                }
            }
        }
    };
    let in_org = InOrg {
        org: &access.org,
        role: access.role.unwrap_or(Role::Viewer),
        section: Section::Metrics,
    };
    let status = match buckets {
        Ok(_) => StatusCode::OK,
        Err(_) => StatusCode::BAD_REQUEST,
    };
    Ok(page::respond(
        status,
        page::app(&visitor, Some(in_org), "Metrics", content),
    ))
}

fn range_form(base: &str, query: &MetricsQuery) -> Markup {
    let choice = query.range_choice();
    let preset = choice == CUSTOM || RANGES.iter().any(|(v, _)| *v == choice);
    html! {
        form.filter-bar method="get" action=(base) aria-label="Time range and filters" {
            div.field {
                label for="m-range" { "Range" }
                select #m-range name="range" data-range {
                    @for (value, label) in RANGES {
                        option value=(value) selected[choice == *value] { (label) }
                    }
                    @if !preset {
                        option value=(choice) selected { "Last " (choice) }
                    }
                    option value=(CUSTOM) selected[choice == CUSTOM] { "Custom: From and To" }
                }
            }
            div.field {
                label for="m-since" { "From (UTC)" }
                input #m-since type="datetime-local" name="since"
                    value=(local_value(query.since.as_deref().unwrap_or_default()));
            }
            div.field {
                label for="m-until" { "To (UTC)" }
                input #m-until type="datetime-local" name="until"
                    value=(local_value(query.until.as_deref().unwrap_or_default()));
            }
            @for (name, label) in FILTERS {
                div.field {
                    label for={ "m-" (name) } { (label) }
                    input #{ "m-" (name) } type="text" name=(name) value=(query.value(name))
                        autocapitalize="none" spellcheck="false";
                }
            }
            div.field.buttons {
                button type="submit" { "Show" }
                a.button.secondary href=(base) { "Reset" }
            }
        }
    }
}

fn totals(jobs: &[Bucket]) -> Markup {
    let sum = |f: fn(&Bucket) -> i64| jobs.iter().map(f).sum::<i64>();
    let (submitted, completed, failed, cancelled) = (
        sum(|b| b.submitted),
        sum(|b| b.completed),
        sum(|b| b.failed),
        sum(|b| b.cancelled),
    );
    html! {
        ul.summary aria-label="In this range" {
            li { strong data-total="submitted" { (submitted) } " submitted" }
            li { strong data-total="completed" { (completed) } " completed" }
            li { strong data-total="failed" { (failed) } " failed or timed out" }
            li { strong data-total="cancelled" { (cancelled) } " cancelled" }
            li {
                strong data-total="failure-rate" {
                    @if completed + failed > 0 {
                        (format!("{:.1}%", failed as f64 * 100.0 / (completed + failed) as f64))
                    } @else { "—" }
                }
                " failure rate"
            }
        }
    }
}

/// What a job chart is, apart from its data.
struct JobChart<'a> {
    id: &'a str,
    title: &'a str,
    kind: Kind,
    unit: Unit,
    empty: &'a str,
}

impl JobChart<'_> {
    /// The chart of `series` over the buckets of `jobs`.
    fn render(&self, buckets: &Buckets, jobs: &[Bucket], series: Vec<Series>) -> Markup {
        let starts: Vec<DateTime<Utc>> = jobs.iter().map(|b| b.start).collect();
        Chart {
            id: self.id,
            title: self.title,
            kind: self.kind,
            unit: self.unit,
            starts: &starts,
            step_s: buckets.step_s,
            series,
            ceiling: (self.unit == Unit::Percent).then_some(100.0),
            empty: self.empty,
        }
        .render()
    }
}

fn line(label: &str, jobs: &[Bucket], value: impl Fn(&Bucket) -> Option<f64>) -> Series {
    Series {
        label: label.into(),
        values: jobs.iter().map(value).collect(),
    }
}

/// Jobs submitted, completed and failed per bucket (the overview's chart too).
pub(super) fn throughput(id: &str, title: &str, buckets: &Buckets, jobs: &[Bucket]) -> Markup {
    let any = jobs
        .iter()
        .any(|b| b.submitted + b.completed + b.failed > 0);
    let count = |f: fn(&Bucket) -> i64| move |b: &Bucket| Some(f(b) as f64);
    let series = if any {
        vec![
            line("Submitted", jobs, count(|b| b.submitted)),
            line("Completed", jobs, count(|b| b.completed)),
            line("Failed", jobs, count(|b| b.failed)),
        ]
    } else {
        Vec::new()
    };
    JobChart {
        id,
        title,
        kind: Kind::Bars,
        unit: Unit::Count,
        empty: "No job was submitted or finished in this range.",
    }
    .render(buckets, jobs, series)
}

fn failure_rate(buckets: &Buckets, jobs: &[Bucket]) -> Markup {
    JobChart {
        id: "failure-rate",
        title: "Failure rate (failed of completed + failed)",
        kind: Kind::Line,
        unit: Unit::Percent,
        empty: "No job completed or failed in this range.",
    }
    .render(
        buckets,
        jobs,
        vec![line("Failure rate", jobs, |b| {
            b.failure_rate.map(|r| r * 100.0)
        })],
    )
}

fn durations(buckets: &Buckets, jobs: &[Bucket]) -> Markup {
    JobChart {
        id: "duration",
        title: "Duration of finished jobs",
        kind: Kind::Line,
        unit: Unit::Millis,
        empty: "No job finished in this range.",
    }
    .render(
        buckets,
        jobs,
        vec![
            line("p50", jobs, |b| b.duration_ms.p50),
            line("p95", jobs, |b| b.duration_ms.p95),
            line("p99", jobs, |b| b.duration_ms.p99),
        ],
    )
}

fn queue_wait(buckets: &Buckets, jobs: &[Bucket]) -> Markup {
    JobChart {
        id: "queue-wait",
        title: "Queue wait of started jobs",
        kind: Kind::Line,
        unit: Unit::Millis,
        empty: "No job started in this range.",
    }
    .render(
        buckets,
        jobs,
        vec![
            line("p50", jobs, |b| b.queue_wait_ms.p50),
            line("p95", jobs, |b| b.queue_wait_ms.p95),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(range: &str, since: &str, until: &str) -> MetricsQuery {
        let some = |v: &str| Some(v.to_string());
        MetricsQuery {
            range: some(range),
            since: some(since),
            until: some(until),
            ..MetricsQuery::default()
        }
    }

    #[test]
    fn the_range_selector_picks_the_window_and_its_step() {
        let now: DateTime<Utc> = "2026-12-04T08:00:00Z".parse().unwrap();
        let b = query("1h", "", "").buckets(now).unwrap();
        assert_eq!((b.window.length().num_hours(), b.step_s), (1, 60));
        let b = query("", "", "").buckets(now).unwrap();
        assert_eq!((b.window.length().num_hours(), b.step_s), (24, 900));
        let b = query("30d", "", "").buckets(now).unwrap();
        assert_eq!(b.step_s, 21_600);
        let b = query("custom", "2026-12-01T00:00", "2026-12-02T00:00")
            .buckets(now)
            .unwrap();
        assert_eq!(
            b.window.since,
            "2026-12-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(b.step_s, 900);
        assert_eq!(query("", "2026-12-01T00:00", "").range_choice(), CUSTOM);
        for bad in [
            query("custom", "", ""),
            query("24h", "2026-12-01T00:00", ""),
            query("soon", "", ""),
            query("custom", "2026-12-02T00:00", "2026-12-01T00:00"),
        ] {
            assert!(bad.buckets(now).is_err(), "{bad:?}");
        }
    }
}
