//! `GET /orgs/{org}/machines/{id}`: one machine — host facts, its GPUs, its workers with their
//! current jobs, and its recent lifecycle events — read through `query::fleet` as the API's
//! machine endpoint does, and each GPU's utilisation, memory and temperature over a range
//! (`?range=`, default 24 h) from its metric series (`gpu_history`, as `GET …/metrics/series`). Admins of the org also get the form that removes an offline machine,
//! `POST /orgs/{org}/machines/{id}/remove`, which runs the API's removal (`http::fleet::
//! remove_offline_machine`: the same rule and audit entry); for anyone else that URL is a 404.

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use chrono::{DateTime, Utc};
use maud::{html, Markup};
use serde::Deserialize;

use super::chart::step_text;
use super::fleet::{gpu_item, gpus, services, stream_path, REFRESH_S};
use super::gpu_history::{self, History};
use super::page::{
    self, ago, at, encode, foreign_form, form_is_ours, InOrg, PageError, Section, RANGES,
};
use super::visitor::Visitor;
use crate::http::fleet::{open, remove_offline_machine};
use crate::http::{ApiError, AppState};
use crate::orgs::Role;
use crate::query::fleet::{self, LifecycleEvent, Machine, Worker};
use crate::query::window::{Buckets, Window, WindowParams};

/// Lifecycle events the page shows, newest first.
const EVENTS_SHOWN: i64 = 25;
/// The GPU history's range when the URL names none: a day shows the daily pattern of load and
/// heat, and its 15-minute buckets still show a job's hour.
const HISTORY_RANGE: &str = "24h";

#[derive(Deserialize)]
pub struct MachineQuery {
    /// The GPU history's range: `1h`, `24h`, `7d`, `30d` or any `<n>s|m|h|d`.
    range: Option<String>,
}

/// `GET /orgs/{org}/machines/{id}`.
pub async fn show(
    State(state): State<AppState>,
    visitor: Visitor,
    Path((slug, id)): Path<(String, String)>,
    query: Result<Query<MachineQuery>, QueryRejection>,
) -> Result<Response, PageError> {
    let (access, mut tx, settings) = open(&state, visitor.principal, &slug).await?;
    let found = fleet::machine_with_workers(tx.conn(), access.org.id, &settings, &id).await?;
    let Some((machine, workers)) = found else {
        return Err(PageError::NotFound);
    };
    let Query(query) = query.map_err(|rejection| ApiError::BadRequest {
        code: "invalid_query",
        message: rejection.body_text(),
    })?;
    let range = query
        .range
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| HISTORY_RANGE.into());
    let params = WindowParams {
        range: Some(&range),
        ..WindowParams::default()
    };
    let buckets = Window::parse(params, Utc::now())
        .and_then(|window| Buckets::new(window, None))
        .map_err(ApiError::from)?;
    let events = fleet::lifecycle(tx.conn(), access.org.id, &id, EVENTS_SHOWN).await?;
    let history = gpu_history::load(tx.conn(), access.org.id, Some(&id), buckets).await?;
    tx.commit().await?;

    let slug = &access.org.slug;
    let role = access.role.unwrap_or(Role::Viewer);
    let title = machine.hostname.as_deref().unwrap_or(&machine.id);
    let now = Utc::now();
    let content = html! {
        (page::crumbs(slug, "/machines", "Machines", &machine.id))
        div.page-head {
            div {
                h1 { (title) }
                @if machine.hostname.as_deref().is_some_and(|h| h != machine.id) {
                    p.muted.mono { (machine.id) }
                }
            }
            p { a.button.secondary href={ "/orgs/" (slug) "/jobs?machine=" (encode(&machine.id)) } { "Jobs on this machine" } }
        }
        div data-live="machine" data-refresh=(REFRESH_S) data-stream=(stream_path(slug))
            data-machine-id=(machine.id)
            data-removed-text="This machine has been removed from the fleet; its history stays." {
            (host(&machine, now))
            h2 { "GPUs" }
            @let list = gpus(&machine);
            @if list.is_empty() {
                p.muted { "This machine reports no GPUs." }
            } @else {
                ul.gpus.gpu-inventory.card aria-label="GPUs" {
                    @for gpu in &list { (gpu_item(&machine.id, gpu)) }
                }
            }
            h2 { "Workers" }
            (workers_table(slug, &workers, now))
            h2 { "Recent lifecycle events" }
            (lifecycle(&events))
        }
        (gpu_charts(slug, &machine.id, &range, &buckets, &history))
        @if role >= Role::Admin {
            (removal(slug, &machine, &visitor.csrf))
        }
    };
    let in_org = InOrg {
        org: &access.org,
        role,
        section: Section::Machines,
    };
    Ok(page::respond(
        StatusCode::OK,
        page::app(&visitor, Some(in_org), title, content),
    ))
}

/// Each GPU metric over the range, a line per GPU, with links to the other ranges. Outside the
/// live region: history does not change in ten seconds, and re-reading it would cost a query
/// per metric every time.
fn gpu_charts(
    slug: &str,
    machine_id: &str,
    range: &str,
    buckets: &Buckets,
    history: &[History],
) -> Markup {
    let path = page::machine_path(slug, machine_id);
    html! {
        section #gpu-history aria-labelledby="gpu-history-title" {
            h2 #gpu-history-title { "GPU history" }
            nav.filters aria-label="GPU history range" {
                @for (value, label) in RANGES {
                    a href={ (path) "?range=" (value) "#gpu-history" }
                        aria-current=[(range == *value).then_some("page")] { (label) }
                }
            }
            p.muted {
                (buckets.window.since.format("%Y-%m-%d %H:%M")) " to "
                (buckets.window.until.format("%Y-%m-%d %H:%M")) " UTC · mean per "
                (step_text(buckets.step_s))
            }
            div.charts {
                @for metric in history { (metric.per_gpu(buckets)) }
            }
        }
    }
}

fn host(machine: &Machine, now: DateTime<Utc>) -> Markup {
    let host = &machine.host;
    let labels: Vec<(&String, &serde_json::Value)> = machine
        .labels
        .as_object()
        .map(|m| m.iter().collect())
        .unwrap_or_default();
    html! {
        dl.fields.card aria-label="Host" {
            div {
                dt { "State" }
                // What the live page compares a `machine` event with.
                dd data-fact="state" data-liveness=(machine.liveness)
                    data-status=[machine.reported_status.as_deref()] {
                    span.badge.(machine.liveness) { (machine.liveness) }
                    @if let Some(status) = &machine.reported_status { " reports " span.badge.(status) { (status) } }
                }
            }
            div {
                dt { "Last heard from" }
                dd { span data-fact="seen-at" { (at(machine.last_seen_at)) } " · " span data-fact="seen" { (ago(machine.last_seen_at, now)) } }
            }
            @if let Some(started) = machine.started_at { div { dt { "Agent started" } dd { (at(started)) } } }
            @if let Some(uptime) = machine.uptime_s { div { dt { "Uptime" } dd { (uptime / 86_400) " d " (uptime % 86_400 / 3600) " h" } } }
            @if let Some(shutdown) = machine.shutdown_at { div { dt { "Shut down" } dd { (at(shutdown)) } } }
            @if let Some(os) = host["os"].as_str() { div { dt { "OS" } dd { (os) } } }
            @if let Some(cores) = host["cpu_cores"].as_i64() { div { dt { "CPU" } dd { (cores) " cores" } } }
            @if let Some(ram) = host["ram_gb"].as_f64() { div { dt { "RAM" } dd { (ram) " GB" } } }
            @if let Some(ip) = host["ip"].as_str() { div { dt { "IP" } dd.mono { (ip) } } }
            @if !labels.is_empty() {
                div.wide {
                    dt { "Labels" }
                    dd {
                        @for (key, value) in labels {
                            span.badge { (key) "=" (value.as_str().unwrap_or_default()) } " "
                        }
                    }
                }
            }
        }
    }
}

fn workers_table(slug: &str, workers: &[Worker], now: DateTime<Utc>) -> Markup {
    html! {
        @if workers.is_empty() {
            p.muted { "No workers on this machine." }
        } @else {
            div.table-wrap {
                table {
                    thead {
                        tr {
                            th scope="col" { "Worker" }
                            th scope="col" { "Status" }
                            th scope="col" { "Current job" }
                            th scope="col" { "Services" }
                            th scope="col" { "Version" }
                            th.num scope="col" { "Completed" }
                            th.num scope="col" { "Failed" }
                            th scope="col" { "Last seen" }
                        }
                    }
                    tbody {
                        @for worker in workers {
                            @let status = worker.status.as_deref().unwrap_or("unknown");
                            tr data-worker=(worker.id) {
                                td.mono { (worker.id) }
                                td {
                                    span.badge.(status) { (status) }
                                    @if worker.liveness != "online" { " " span.badge.(worker.liveness) { (worker.liveness) } }
                                }
                                td.mono {
                                    @match &worker.current_job_id {
                                        Some(job) => a href=(page::job_path(slug, job)) { (job) },
                                        None => "—",
                                    }
                                }
                                td {
                                    @for (name, state) in services(&worker.services) {
                                        span.badge.(state) { (name) ": " (state) } " "
                                    }
                                }
                                td { (worker.version.as_deref().unwrap_or("—")) }
                                td.num { (worker.jobs_completed) }
                                td.num { (worker.jobs_failed) }
                                td { @match worker.last_seen_at { Some(seen) => (ago(seen, now)), None => "never" } }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn lifecycle(events: &[LifecycleEvent]) -> Markup {
    html! {
        @if events.is_empty() {
            p.muted {
                "No status changes or shutdowns in the last " (fleet::LIFECYCLE_DAYS) " days."
            }
        } @else {
            ol.events.card aria-label="Lifecycle events" {
                @for event in events {
                    li.event data-kind=(event.kind) {
                        (at(event.at)) " " strong { (event.kind) }
                        @if let Some(worker) = &event.worker_id { " " span.mono.muted { (worker) } }
                        @if let Some(status) = event.data["status"].as_str() { " → " span.badge.(status) { (status) } }
                        @if let Some(text) = event.data["message"].as_str().or(event.data["reason"].as_str()) { " · " (text) }
                    }
                }
            }
        }
    }
}

fn removal(slug: &str, machine: &Machine, csrf: &str) -> Markup {
    html! {
        section.card.danger aria-labelledby="remove-title" {
            h2 #remove-title { "Remove machine" }
            @if machine.liveness == "offline" {
                p {
                    "Removes this machine and its workers from the fleet. Their history (jobs, events, "
                    "metrics) stays. If its agent reports again, the machine comes back."
                }
                form method="post" action={ (page::machine_path(slug, &machine.id)) "/remove" } {
                    input type="hidden" name="csrf" value=(csrf);
                    div.check {
                        input #remove-confirm type="checkbox" name="confirm" value="yes" required;
                        label for="remove-confirm" { "Yes, remove " (machine.id) }
                    }
                    div.actions { button.destructive type="submit" { "Remove machine" } }
                }
            } @else {
                p.muted {
                    "Only an offline machine can be removed; this one is " (machine.liveness) "."
                }
            }
        }
    }
}

#[derive(Deserialize)]
pub struct RemoveForm {
    csrf: String,
}

/// `POST /orgs/{org}/machines/{id}/remove`: the API's removal, then the machine list saying so.
pub async fn remove(
    State(state): State<AppState>,
    visitor: Visitor,
    headers: HeaderMap,
    Path((slug, id)): Path<(String, String)>,
    form: Result<Form<RemoveForm>, FormRejection>,
) -> Result<Response, PageError> {
    let ours = form.is_ok_and(|Form(form)| form_is_ours(&state, &headers, &form.csrf));
    if !ours {
        return Err(foreign_form());
    }
    // A viewer's (or member's) removal is a 404 like every admin URL; a machine that is not
    // offline is the API's 409, said on the error page.
    remove_offline_machine(&state, visitor.principal, &slug, &id).await?;
    let to = format!("/orgs/{slug}/machines?removed={}", encode(&id));
    Ok(Redirect::to(&to).into_response())
}
