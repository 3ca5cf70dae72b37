//! `GET /orgs/{org}/jobs/{id}`: one job — its fields, the worker and machine of its current
//! attempt, its error chain, the timeline of its events grouped per attempt, and its payload and
//! result. Read through the API's own `http::jobs::visible_detail`, so the payload rule for
//! viewers and the 404 for a job of another org are the API's.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use maud::{html, Markup};
use serde_json::Value;

use super::page::{self, ago, at, duration, encode, InOrg, PageError, Section};
use super::visitor::Visitor;
use crate::http::jobs::visible_detail;
use crate::http::AppState;
use crate::orgs::Role;
use crate::query::jobs::{Attempt, ChainLink, JobDetail, TimelineEvent};

/// `GET /orgs/{org}/jobs/{id}`.
pub async fn show(
    State(state): State<AppState>,
    visitor: Visitor,
    Path((slug, id)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let (access, detail) = visible_detail(&state, visitor.principal, &slug, &id).await?;
    let slug = &access.org.slug;
    let summary = &detail.job.summary;
    let title = summary.name.as_deref().unwrap_or(&summary.id);
    let now = Utc::now();
    let content = html! {
        (page::crumbs(slug, "/jobs", "Jobs", &summary.id))
        div.page-head {
            div {
                h1 { (title) " " span.badge.(summary.status) { (summary.status) } }
                @if summary.name.is_some() { p.muted.mono { (summary.id) } }
            }
        }
        (fields(slug, &detail, now))
        @if !detail.error_chain.is_empty() {
            h2 #errors { "Error chain" }
            ol.chain { @for link in &detail.error_chain { (chain_link(slug, link)) } }
        }
        h2 #timeline { "Timeline" }
        (timeline(slug, &detail))
        h2 #payload { "Payload and result" }
        @if detail.job.payload_hidden {
            p.notice.info {
                "This organization keeps payloads and results from viewers; members and admins see them here."
            }
        } @else {
            div.split {
                div { h3 { "Payload" } (json_block(detail.job.payload.as_ref())) }
                div { h3 { "Result" } (json_block(detail.job.result.as_ref())) }
            }
        }
    };
    let in_org = InOrg {
        org: &access.org,
        role: access.role.unwrap_or(Role::Viewer),
        section: Section::Jobs,
    };
    Ok(page::respond(
        StatusCode::OK,
        page::app(&visitor, Some(in_org), title, content),
    ))
}

/// A link to the jobs listing filtered by `key`.
fn filtered(slug: &str, key: &str, value: &str) -> Markup {
    html! { a href={ "/orgs/" (slug) "/jobs?" (key) "=" (encode(value)) } { (value) } }
}

fn fields(slug: &str, detail: &JobDetail, now: DateTime<Utc>) -> Markup {
    let job = &detail.job.summary;
    let error = job.error.as_ref();
    let times = [
        ("Created", Some(job.created_at)),
        ("Queued", job.queued_at),
        ("Assigned", job.assigned_at),
        ("Started", job.started_at),
        ("Finished", job.finished_at),
    ];
    html! {
        dl.fields.card {
            @if let Some(kind) = &job.job_type { div { dt { "Type" } dd { (filtered(slug, "job_type", kind)) } } }
            div {
                dt { "Attempt" }
                dd { (job.attempt) @if let Some(max) = job.max_retries { " of at most " (max + 1) } }
            }
            @if let Some(priority) = job.priority { div { dt { "Priority" } dd { (priority) } } }
            @if let Some(workflow) = &job.workflow_id { div { dt { "Workflow" } dd.mono { (filtered(slug, "workflow", workflow)) } } }
            @if let Some(customer) = &job.customer_id { div { dt { "Customer" } dd.mono { (filtered(slug, "customer", customer)) } } }
            // A finished job's progress says nothing more than its status.
            @if let Some(progress) = job.progress.filter(|_| job.finished_at.is_none()) {
                div {
                    dt #progress-label { "Progress" }
                    dd {
                        meter min="0" max="100" value=(progress) aria-labelledby="progress-label" {}
                        " " (format!("{progress:.0}%"))
                        @if let Some(message) = &job.progress_message { " · " (message) }
                    }
                }
            }
            div {
                dt { "Worker" }
                dd {
                    @match (&job.worker_id, &detail.worker) {
                        (Some(id), Some(worker)) => {
                            span.mono { (filtered(slug, "worker", id)) } " "
                            span.badge.(worker.liveness) { (worker.liveness) }
                            @if let Some(status) = &worker.status { " " span.badge.(status) { (status) } }
                        },
                        (Some(id), None) => { span.mono { (filtered(slug, "worker", id)) } " " span.muted { "(no longer reporting)" } },
                        (None, _) => "—",
                    }
                }
            }
            div {
                dt { "Machine" }
                dd {
                    @match (&job.machine_id, &detail.machine) {
                        (Some(id), Some(machine)) => {
                            a.mono href=(page::machine_path(slug, id)) { (machine.hostname.as_deref().unwrap_or(id)) }
                            " " span.badge.(machine.liveness) { (machine.liveness) }
                        },
                        (Some(id), None) => { span.mono { (id) } " " span.muted { "(removed or never reported)" } },
                        (None, _) => "—",
                    }
                }
            }
            @for (label, time) in times {
                @if let Some(time) = time {
                    div { dt { (label) } dd { (at(time)) " · " (ago(time, now)) } }
                }
            }
            @if let Some(ms) = job.duration_ms { div { dt { "Duration" } dd { (duration(ms)) } } }
            @if let Some(error) = error {
                div.wide {
                    dt { "Error" }
                    dd { (error_text(error)) }
                }
            }
        }
    }
}

/// `OOMError (oom): CUDA out of memory`, from an error object.
fn error_text(error: &Value) -> Markup {
    let text = |key: &str| error.get(key).and_then(Value::as_str);
    html! {
        @if let Some(kind) = text("type") { strong { (kind) } }
        @if let Some(reason) = text("reason") { " (" (reason) ")" }
        @if let Some(message) = text("message") { ": " (message) }
    }
}

fn chain_link(slug: &str, link: &ChainLink) -> Markup {
    html! {
        li.card data-attempt=(link.attempt) {
            p.line {
                strong { "Attempt " (link.attempt) } " "
                span.badge.(link.status) { (link.status) }
                @if let Some(time) = link.at { " " (at(time)) }
                @match link.will_retry {
                    Some(true) => { " · " span { "retried" } },
                    Some(false) => { " · " span { "final" } },
                    None => {},
                }
            }
            dl.facts {
                div { dt { "Failure type" } dd { (link.kind.as_deref().unwrap_or("—")) } }
                div { dt { "Reason" } dd { (link.reason.as_deref().unwrap_or("—")) } }
                @if let Some(worker) = &link.worker_id { div { dt { "Worker" } dd.mono { (worker) } } }
                @if let Some(machine) = &link.machine_id {
                    div { dt { "Machine" } dd.mono { a href=(page::machine_path(slug, machine)) { (machine) } } }
                }
            }
            @if let Some(message) = &link.message { p.message { (message) } }
            @if let Some(cause) = link.cause.as_ref().filter(|c| !c.is_null()) {
                p.section-title { "Caused by" }
                (cause_chain(cause))
            }
        }
    }
}

/// A nested `cause` (`{type, message, cause?}`), outermost first.
fn cause_chain(cause: &Value) -> Markup {
    let mut links = Vec::new();
    let mut next = Some(cause);
    while let Some(cause) = next.filter(|c| !c.is_null()) {
        links.push(cause);
        next = cause.get("cause");
    }
    html! {
        ol.causes { @for cause in links { li { (error_text(cause)) } } }
    }
}

/// The events of each attempt, with the attempt's fold at its head.
fn timeline(slug: &str, detail: &JobDetail) -> Markup {
    let mut by_attempt: BTreeMap<i32, Vec<&TimelineEvent>> = BTreeMap::new();
    for event in &detail.timeline {
        by_attempt.entry(event.attempt).or_default().push(event);
    }
    let folds: BTreeMap<i32, &Attempt> = detail.attempts.iter().map(|a| (a.attempt, a)).collect();
    html! {
        @if by_attempt.is_empty() {
            p.notice.info { "No events of this job are stored (they may be past the retention)." }
        }
        @for (number, events) in &by_attempt {
            section.attempt.card aria-labelledby={ "attempt-" (number) } data-attempt=(number) {
                header {
                    h3 #{ "attempt-" (number) } { "Attempt " (number) }
                    @if let Some(fold) = folds.get(number) {
                        span.badge.(fold.status) { (fold.status) }
                        span.muted {
                            @if let Some(worker) = &fold.worker_id { " on " span.mono { (worker) } }
                            @if let Some(machine) = &fold.machine_id {
                                " · " a.mono href=(page::machine_path(slug, machine)) { (machine) }
                            }
                            @if let Some(ms) = fold.duration_ms { " · " (duration(ms)) }
                        }
                    }
                }
                ol.events {
                    @for event in events { (timeline_event(event)) }
                }
            }
        }
    }
}

fn timeline_event(event: &TimelineEvent) -> Markup {
    let data = &event.data;
    html! {
        li.event data-kind=(event.kind) {
            (at(event.at))
            " " strong { (event.kind) }
            @if let Some(worker) = &event.worker_id { " " span.muted.mono { (worker) } }
            @match event.kind.as_str() {
                "job.progress" => {
                    @if let Some(p) = data["progress"].as_f64() { " · " (format!("{p:.0}%")) }
                    @if let Some(m) = data["message"].as_str() { " · " (m) }
                },
                "job.failed" => { " · " (error_text(&data["error"])) },
                "job.timeout" | "job.cancelled" => {
                    @if let Some(reason) = data["reason"].as_str() { " · " (reason) }
                },
                "job.completed" => {
                    @if let Some(ms) = data["duration_ms"].as_i64() { " · " (duration(ms)) }
                },
                _ => {},
            }
            details {
                summary { "Event data" }
                pre { code { (pretty(data)) } }
            }
        }
    }
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

fn json_block(value: Option<&Value>) -> Markup {
    html! {
        @match value.filter(|v| !v.is_null()) {
            Some(value) => pre.json { code { (pretty(value)) } },
            None => p.muted { "None." },
        }
    }
}
