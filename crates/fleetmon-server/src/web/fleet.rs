//! An org's fleet: the overview (the API's overview — job stat cards and recent failures of the
//! last 24 hours — and the jobs' throughput over those 24 hours, then a fleet summary and the
//! machine grid: each machine's liveness, GPUs and workers) and the machine list. Both read
//! through `query::fleet`, `query::overview` and `query::job_metrics` in the org's tenant
//! transaction, after the same access check as the API (`http::fleet::open`).

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::Value;

use super::metrics::throughput;
use super::page::{self, ago, encode, InOrg, PageError, Section};
use super::visitor::Visitor;
use crate::http::fleet::open;
use crate::http::{ApiError, AppState};
use crate::orgs::Role;
use crate::query::fleet::{self, Filter, Machine, Worker};
use crate::query::job_metrics;
use crate::query::overview::{self, JobCounts, RecentFailure};
use crate::query::window::{Buckets, Window, WindowParams};

/// How often a live region's script re-reads its page when it cannot follow the org's stream.
pub(super) const REFRESH_S: u32 = 10;

/// The org's live stream, which the live regions (overview, newest jobs, machine) follow.
pub(super) fn stream_path(slug: &str) -> String {
    format!("/api/v1/orgs/{slug}/stream")
}
/// Rows of the machine list per page.
const LIST_PAGE: i64 = 100;
/// Workers read for the grid, at most (pages of `fleet::MAX_PAGE`).
const GRID_WORKERS: usize = 10_000;

#[derive(Deserialize)]
pub struct FleetQuery {
    /// `online`, `stale` or `offline`; anything else shows all.
    liveness: Option<String>,
    after: Option<String>,
    /// The machine the dashboard just removed, for the machine list to say so.
    removed: Option<String>,
}

impl FleetQuery {
    fn liveness(&self) -> Option<&str> {
        self.liveness
            .as_deref()
            .filter(|l| matches!(*l, "online" | "stale" | "offline"))
    }
}

/// The GPUs a machine reported in its heartbeat (`gpus` is the agent's JSON, read leniently).
pub(super) struct Gpu {
    index: Option<i64>,
    name: String,
    utilization_pct: Option<f64>,
    memory_used_mb: Option<f64>,
    memory_total_mb: Option<f64>,
    temperature_c: Option<f64>,
}

pub(super) fn gpus(machine: &Machine) -> Vec<Gpu> {
    machine
        .gpus
        .as_array()
        .map(|list| {
            list.iter()
                .map(|gpu| Gpu {
                    index: gpu["index"].as_i64(),
                    name: gpu["name"].as_str().unwrap_or("GPU").to_string(),
                    utilization_pct: gpu["utilization_pct"].as_f64(),
                    memory_used_mb: gpu["memory_used_mb"].as_f64(),
                    memory_total_mb: gpu["memory_total_mb"].as_f64(),
                    temperature_c: gpu["temperature_c"].as_f64(),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn gb(mb: f64) -> String {
    format!("{:.1}", mb / 1024.0)
}

/// Counts over the whole fleet, for the summary line.
#[derive(Default)]
struct Summary {
    machines: usize,
    online: usize,
    stale: usize,
    offline: usize,
    workers: usize,
    busy: usize,
    gpus: usize,
    /// Mean utilisation over the GPUs that report one.
    gpu_utilization: Option<f64>,
}

fn summarize(machines: &[Machine], workers: &[Worker]) -> Summary {
    let mut summary = Summary {
        machines: machines.len(),
        workers: workers.len(),
        busy: workers
            .iter()
            .filter(|w| w.status.as_deref() == Some("busy") && w.liveness != "offline")
            .count(),
        ..Summary::default()
    };
    let mut utilization = Vec::new();
    for machine in machines {
        match machine.liveness.as_str() {
            "online" => summary.online += 1,
            "stale" => summary.stale += 1,
            _ => summary.offline += 1,
        }
        let machine_gpus = gpus(machine);
        summary.gpus += machine_gpus.len();
        utilization.extend(machine_gpus.iter().filter_map(|g| g.utilization_pct));
    }
    if !utilization.is_empty() {
        summary.gpu_utilization = Some(utilization.iter().sum::<f64>() / utilization.len() as f64);
    }
    summary
}

/// Every worker of the org, a page of `fleet::MAX_PAGE` at a time, up to [`GRID_WORKERS`].
async fn all_workers(
    conn: &mut sqlx::PgConnection,
    org_id: uuid::Uuid,
    settings: &crate::orgs::settings::OrgSettings,
) -> Result<Vec<Worker>, crate::db::DbError> {
    let mut workers: Vec<Worker> = Vec::new();
    loop {
        let filter = Filter {
            after: workers.last().map(|w| w.id.clone()),
            limit: fleet::MAX_PAGE,
            ..Filter::default()
        };
        let page = fleet::workers(&mut *conn, org_id, settings, &filter).await?;
        let full = page.len() as i64 == fleet::MAX_PAGE;
        workers.extend(page);
        if !full || workers.len() >= GRID_WORKERS {
            return Ok(workers);
        }
    }
}

/// `GET /orgs/{org}`: the overview.
pub async fn overview(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(slug): Path<String>,
    Query(query): Query<FleetQuery>,
) -> Result<Response, PageError> {
    let (access, mut tx, settings) = open(&state, visitor.principal, &slug).await?;
    let all_machines = fleet::machines(
        tx.conn(),
        access.org.id,
        &settings,
        &Filter {
            limit: fleet::MAX_PAGE,
            ..Filter::default()
        },
    )
    .await?;
    let workers = all_workers(tx.conn(), access.org.id, &settings).await?;
    // The API's default window (the last 24 hours), as `GET …/overview` without parameters.
    let window = Window::parse(WindowParams::default(), Utc::now()).map_err(ApiError::from)?;
    let stats = overview::load(tx.conn(), access.org.id, &settings, window).await?;
    // The same window's throughput, in the metrics page's default buckets (15 minutes).
    let buckets = Buckets::new(window, None).map_err(ApiError::from)?;
    let filters = job_metrics::Filters::default();
    let (groups, _) = job_metrics::load(tx.conn(), access.org.id, buckets, None, &filters).await?;
    let jobs: Vec<job_metrics::Bucket> = groups.into_iter().flat_map(|g| g.buckets).collect();
    tx.commit().await?;

    let role = access.role.unwrap_or(Role::Viewer);
    let summary = summarize(&all_machines, &workers);
    let shown: Vec<&Machine> = all_machines
        .iter()
        .filter(|m| query.liveness().is_none_or(|l| m.liveness == l))
        .collect();
    let mut by_machine: BTreeMap<&str, Vec<&Worker>> = BTreeMap::new();
    let mut unattached = Vec::new();
    for worker in &workers {
        match worker.machine_id.as_deref() {
            Some(machine) => by_machine.entry(machine).or_default().push(worker),
            None => unattached.push(worker),
        }
    }
    let base = format!("/orgs/{}", access.org.slug);
    let now = Utc::now();
    let content = html! {
        div.page-head {
            div {
                h1 { (access.org.name) }
                p.muted { "Fleet overview · " span #updated { "as of " (now.format("%H:%M:%S UTC")) } }
            }
        }
        div data-live="overview" data-refresh=(REFRESH_S)
            data-stream=(stream_path(&access.org.slug))
            data-jobs={ (base) "/jobs" }
            data-truncated[all_machines.len() as i64 == fleet::MAX_PAGE]
            data-liveness=[query.liveness()] {
            @if !all_machines.is_empty() || any_jobs(&stats.jobs) {
                (stat_cards(&base, &stats.jobs))
                section.overview-chart aria-label="Throughput" {
                    (throughput("overview-throughput", "Throughput, last 24 hours", &buckets, &jobs))
                    p { a href={ (base) "/metrics" } { "All metrics" } }
                }
            }
            @if !stats.recent_failures.is_empty() {
                (recent_failures(&access.org.slug, &base, &stats.recent_failures, now))
            }
            @if all_machines.is_empty() {
                (no_machines(&state, &access.org.slug, role))
            } @else {
                (summary_list(&summary))
                (liveness_filter(&base, query.liveness(), Some(&summary)))
                @if all_machines.len() as i64 == fleet::MAX_PAGE {
                    p.notice.info {
                        "Showing the first " (fleet::MAX_PAGE) " machines by id; "
                        a href={ (base) "/machines" } { "the machine list" } " has them all."
                    }
                }
                @if shown.is_empty() {
                    p.notice.info { "No machine is " (query.liveness().unwrap_or("")) " right now." }
                }
                ul.grid aria-label="Machines" {
                    @for machine in &shown {
                        (machine_card(&access.org.slug, machine, by_machine.get(machine.id.as_str()), now))
                    }
                }
                @if !unattached.is_empty() && query.liveness().is_none() {
                    h2 { "Workers on no known machine" }
                    ul.workers.card { @for worker in &unattached { (worker_item(&access.org.slug, worker)) } }
                }
            }
        }
    };
    let in_org = InOrg {
        org: &access.org,
        role,
        section: Section::Overview,
    };
    Ok(page::respond(
        StatusCode::OK,
        page::app(&visitor, Some(in_org), &access.org.name, content),
    ))
}

/// The failures the stat cards and the recent failures link to: the window's, in the jobs list.
const FAILURES_QUERY: &str = "/jobs?status=failed%2Ctimeout&range=24h";

fn any_jobs(jobs: &JobCounts) -> bool {
    jobs.pending + jobs.active + jobs.completed + jobs.failed + jobs.cancelled > 0
}

fn stat_cards(base: &str, jobs: &JobCounts) -> Markup {
    html! {
        section aria-labelledby="stats-title" {
            h2 #stats-title .visually-hidden { "Jobs" }
            ul.stats {
                li.stat data-stat="active" {
                    span.label { "Active" } strong { (jobs.active) } span.hint { "assigned or running now" }
                }
                li.stat data-stat="pending" {
                    span.label { "Pending" } strong { (jobs.pending) } span.hint { "waiting now" }
                }
                li.stat data-stat="completed" {
                    span.label { "Completed" } strong { (jobs.completed) } span.hint { "last 24 hours" }
                }
                li.stat.bad[jobs.failed > 0] data-stat="failed" {
                    span.label { "Failed" }
                    strong { a href={ (base) (FAILURES_QUERY) } { (jobs.failed) } }
                    span.hint { "failed or timed out, last 24 hours" }
                }
                li.stat data-stat="success-rate" {
                    span.label { "Success rate" }
                    strong {
                        @match jobs.success_rate {
                            Some(rate) => (format!("{:.1}%", rate * 100.0)),
                            None => "—",
                        }
                    }
                    span.hint { "completed of completed + failed" }
                }
            }
        }
    }
}

fn recent_failures(
    slug: &str,
    base: &str,
    failures: &[RecentFailure],
    now: chrono::DateTime<Utc>,
) -> Markup {
    html! {
        section.recent-failures aria-labelledby="failures-title" {
            h2 #failures-title { "Recent failures" }
            ol.card {
                @for failure in failures {
                    li data-job=(failure.id) {
                        a href=(page::job_path(slug, &failure.id)) { (failure.name.as_deref().unwrap_or(&failure.id)) }
                        " " span.badge.(failure.status) { (failure.status) }
                        " "
                        @if let Some(kind) = &failure.error_type { strong { (kind) } }
                        @if let Some(message) = failure.error_message.as_ref().or(failure.error_reason.as_ref()) { ": " (message) }
                        span.muted {
                            @if let Some(machine) = &failure.machine_id {
                                " · " a.mono href=(page::machine_path(slug, machine)) { (machine) }
                            }
                            " · " (ago(failure.finished_at, now))
                        }
                    }
                }
            }
            p { a href={ (base) (FAILURES_QUERY) } { "All failures of the last 24 hours" } }
        }
    }
}

fn summary_list(summary: &Summary) -> Markup {
    html! {
        ul.summary aria-label="Fleet summary" {
            li { strong data-count="machines" { (summary.machines) } " machines" }
            li { strong data-count="online" { (summary.online) } " online" }
            li { strong data-count="stale" { (summary.stale) } " stale" }
            li { strong data-count="offline" { (summary.offline) } " offline" }
            li { strong data-count="workers" { (summary.workers) } " workers" }
            li { strong data-count="busy" { (summary.busy) } " busy" }
            li { strong { (summary.gpus) } " GPUs" }
            @if let Some(utilization) = summary.gpu_utilization {
                li { strong { (format!("{utilization:.0}%")) } " mean GPU utilisation" }
            }
        }
    }
}

/// Links to the same view by liveness, with each one's count where the page knows it.
fn liveness_filter(base: &str, current: Option<&str>, counts: Option<&Summary>) -> Markup {
    let choices = [
        (None, "All", "machines", counts.map(|c| c.machines)),
        (Some("online"), "Online", "online", counts.map(|c| c.online)),
        (Some("stale"), "Stale", "stale", counts.map(|c| c.stale)),
        (
            Some("offline"),
            "Offline",
            "offline",
            counts.map(|c| c.offline),
        ),
    ];
    html! {
        nav.filters aria-label="Show machines" {
            @for (liveness, label, key, count) in choices {
                a href={ (base) @if let Some(l) = liveness { "?liveness=" (l) } }
                    aria-current=[(liveness == current).then_some("page")] {
                    (label) @if let Some(count) = count { " (" span data-count=(key) { (count) } ")" }
                }
            }
        }
    }
}

fn no_machines(state: &AppState, slug: &str, role: Role) -> Markup {
    let public_url = &state.auth.settings.public_url;
    html! {
        div.card.empty {
            h2 { "No machines yet" }
            p {
                "Machines appear here as soon as their agents send a heartbeat to "
                code { (public_url) "/api/v1/ingest" } "."
            }
            @if role >= Role::Admin {
                ol {
                    li {
                        "Create an ingest token for this organization:"
                        pre { code { "fleetmon token create --org " (slug) " --kind ingest --name agents" } }
                    }
                    li {
                        "Run the agent on each machine with that token, sending to "
                        code { (public_url) "/api/v1/ingest" } "."
                    }
                    li {
                        "Or watch a simulated fleet arrive:"
                        pre { code { "fleetmon simulate --url " (public_url) " --token <the ingest token> --machines 4" } }
                    }
                }
            } @else {
                p { "Ask an admin of this organization to connect its agents." }
            }
        }
    }
}

fn machine_card(
    slug: &str,
    machine: &Machine,
    workers: Option<&Vec<&Worker>>,
    now: chrono::DateTime<Utc>,
) -> Markup {
    let title = machine.hostname.as_deref().unwrap_or(&machine.id);
    let host = &machine.host;
    let gpus = gpus(machine);
    html! {
        li.machine.(machine.liveness) aria-label={ "Machine " (title) } data-machine=(machine.id) {
            header {
                div {
                    h3 { a href=(page::machine_path(slug, &machine.id)) { (title) } }
                    @if machine.hostname.as_deref().is_some_and(|h| h != machine.id) {
                        div.id.mono { (machine.id) }
                    }
                }
                span.badge.(machine.liveness) { (machine.liveness) }
            }
            dl.facts {
                @if let Some(status) = &machine.reported_status {
                    div { dt { "Status" } dd data-fact="status" { (status) } }
                }
                div { dt { "Seen" } dd data-fact="seen" { (ago(machine.last_seen_at, now)) } }
                @if let Some(os) = host["os"].as_str() { div { dt { "OS" } dd { (os) } } }
                @if let Some(cores) = host["cpu_cores"].as_i64() { div { dt { "CPU" } dd { (cores) " cores" } } }
                @if let Some(ram) = host["ram_gb"].as_f64() { div { dt { "RAM" } dd { (ram) " GB" } } }
                @if let Some(ip) = host["ip"].as_str() { div { dt { "IP" } dd.mono { (ip) } } }
            }
            @if !gpus.is_empty() {
                div {
                    p.section-title { (gpus.len()) @if gpus.len() == 1 { " GPU" } @else { " GPUs" } }
                    ul.gpus { @for gpu in &gpus { (gpu_item(&machine.id, gpu)) } }
                }
            }
            div {
                p.section-title {
                    @match workers { Some(list) => { (list.len()) @if list.len() == 1 { " worker" } @else { " workers" } }, None => "No workers" }
                }
                @if let Some(list) = workers {
                    ul.workers { @for worker in list { (worker_item(slug, worker)) } }
                }
            }
        }
    }
}

pub(super) fn gpu_item(machine_id: &str, gpu: &Gpu) -> Markup {
    let label = match gpu.index {
        Some(index) => format!("GPU {index}"),
        None => "GPU".to_string(),
    };
    let id = format!(
        "gpu-{}-{}",
        encode(machine_id),
        gpu.index.map_or("x".to_string(), |i| i.to_string())
    );
    html! {
        li.gpu {
            span.name { (label) " · " (gpu.name) }
            span.muted { @if let Some(t) = gpu.temperature_c { (format!("{t:.0} °C")) } }
            @if let Some(pct) = gpu.utilization_pct {
                div.bar data-bar="utilization" {
                    span #{ (id) "-util" } { "Utilisation" }
                    meter min="0" max="100" low="85" high="95" optimum="50" value=(pct)
                        aria-labelledby={ (id) "-util" } {}
                    span { (format!("{pct:.0}%")) }
                }
            }
            @if let (Some(used), Some(total)) = (gpu.memory_used_mb, gpu.memory_total_mb) {
                div.bar data-bar="memory" {
                    span #{ (id) "-mem" } { "Memory" }
                    meter min="0" max=(total) low=(total * 0.85) high=(total * 0.95) optimum="0" value=(used)
                        aria-labelledby={ (id) "-mem" } {}
                    span { (gb(used)) " / " (gb(total)) " GB" }
                }
            }
        }
    }
}

pub(super) fn services(services: &Value) -> Vec<(String, String)> {
    services
        .as_object()
        .map(|map| {
            map.iter()
                .map(|(name, state)| {
                    (
                        name.clone(),
                        state.as_str().unwrap_or("unknown").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn worker_item(slug: &str, worker: &Worker) -> Markup {
    let status = worker.status.as_deref().unwrap_or("unknown");
    let services = services(&worker.services);
    html! {
        li.worker data-worker=(worker.id) {
            div.line {
                span.mono { (worker.id) }
                span data-badges {
                    span.badge.(status) { (status) }
                    @if worker.liveness != "online" {
                        " " span.badge.(worker.liveness) { (worker.liveness) }
                    }
                }
            }
            @if let Some(job) = &worker.current_job_id {
                div.job { "Job " a.mono href=(page::job_path(slug, job)) { (job) } }
            }
            @if !services.is_empty() {
                ul.services aria-label="Services" {
                    @for (name, state) in &services {
                        li { span.badge.(state) { (name) ": " (state) } }
                    }
                }
            }
        }
    }
}

/// `GET /orgs/{org}/machines`: every machine, a page at a time, by liveness.
pub async fn machines(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(slug): Path<String>,
    Query(query): Query<FleetQuery>,
) -> Result<Response, PageError> {
    let (access, mut tx, settings) = open(&state, visitor.principal, &slug).await?;
    let filter = Filter {
        liveness: query.liveness().map(str::to_string),
        after: query.after.clone(),
        limit: LIST_PAGE,
        ..Filter::default()
    };
    let list = fleet::machines(tx.conn(), access.org.id, &settings, &filter).await?;
    tx.commit().await?;
    let next = (list.len() as i64 == LIST_PAGE)
        .then(|| list.last().map(|m| m.id.clone()))
        .flatten();
    let base = format!("/orgs/{}/machines", access.org.slug);
    let now = Utc::now();
    let content = html! {
        h1 { "Machines" }
        @if let Some(removed) = &query.removed {
            p.notice.info role="status" { "Machine " span.mono { (removed) } " was removed." }
        }
        (liveness_filter(&base, query.liveness(), None))
        @if list.is_empty() {
            p.notice.info { "No machines to show." }
        } @else {
            div.table-wrap {
                table {
                    caption.muted { "Machines by id" }
                    thead {
                        tr {
                            th scope="col" { "Machine" }
                            th scope="col" { "State" }
                            th scope="col" { "Reported" }
                            th.num scope="col" { "GPUs" }
                            th.num scope="col" { "GPU utilisation" }
                            th.num scope="col" { "GPU memory" }
                            th.num scope="col" { "Workers (busy)" }
                            th scope="col" { "Last seen" }
                        }
                    }
                    tbody {
                        @for machine in &list {
                            (machine_row(&access.org.slug, machine, now))
                        }
                    }
                }
            }
            @if let Some(after) = next {
                p.pager {
                    a.button.secondary href={ (base) "?after=" (encode(&after))
                        @if let Some(l) = query.liveness() { "&liveness=" (l) } } { "Next page" }
                }
            }
        }
    };
    let in_org = InOrg {
        org: &access.org,
        role: access.role.unwrap_or(Role::Viewer),
        section: Section::Machines,
    };
    Ok(page::respond(
        StatusCode::OK,
        page::app(&visitor, Some(in_org), "Machines", content),
    ))
}

fn machine_row(slug: &str, machine: &Machine, now: chrono::DateTime<Utc>) -> Markup {
    let gpus = gpus(machine);
    let utilization: Vec<f64> = gpus.iter().filter_map(|g| g.utilization_pct).collect();
    let used: f64 = gpus.iter().filter_map(|g| g.memory_used_mb).sum();
    let total: f64 = gpus.iter().filter_map(|g| g.memory_total_mb).sum();
    html! {
        tr data-machine=(machine.id) {
            td {
                a href=(page::machine_path(slug, &machine.id)) { (machine.hostname.as_deref().unwrap_or(&machine.id)) }
                @if machine.hostname.as_deref().is_some_and(|h| h != machine.id) {
                    " " span.muted.mono { (machine.id) }
                }
            }
            td { span.badge.(machine.liveness) { (machine.liveness) } }
            td { (machine.reported_status.as_deref().unwrap_or("—")) }
            td.num { (gpus.len()) }
            td.num {
                @if utilization.is_empty() { "—" }
                @else { (format!("{:.0}%", utilization.iter().sum::<f64>() / utilization.len() as f64)) }
            }
            td.num { @if total > 0.0 { (gb(used)) " / " (gb(total)) " GB" } @else { "—" } }
            td.num { (machine.workers) " (" (machine.busy_workers) ")" }
            td { (ago(machine.last_seen_at, now)) }
        }
    }
}
