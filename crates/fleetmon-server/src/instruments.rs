//! fleetmon's own Prometheus metrics: what an SRE on call looks at first.
//!
//! One registry per process (like Prometheus clients' default registry), so any layer can count
//! what it does without threading a handle through every call. Labels never carry tenant data:
//! routes are templates (`/api/v1/orgs/{org}/jobs`), not paths.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;
type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

/// From 1 ms to about 16 s: API answers, database transactions.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

struct Instruments {
    registry: Registry,
    requests: Family<Labels, Counter>,
    request_seconds: HistogramFamily,
    ingest_events: Family<Labels, Counter>,
    db_begin_seconds: Histogram,
    db_connections: Family<Labels, Gauge>,
    jwks_refreshes: Family<Labels, Counter>,
    stream_clients: Gauge,
    stream_resyncs: Family<Labels, Counter>,
    stream_loads: Family<Labels, Counter>,
    change_listener_up: Gauge,
    change_listener_losses: Counter,
    change_notifications: Counter,
    notify_lag_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    retention_runs: Family<Labels, Counter>,
    retention_rows_deleted: Family<Labels, Counter>,
    retention_partitions_dropped: Counter,
    rate_limited: Family<Labels, Counter>,
    request_timeouts: Family<Labels, Counter>,
    db_pool_timeouts: Counter,
}

static INSTRUMENTS: LazyLock<Instruments> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("fleetmon");
    let requests = Family::<Labels, Counter>::default();
    registry.register(
        "http_requests",
        "HTTP requests answered, by route template, method and status",
        requests.clone(),
    );
    let request_seconds = HistogramFamily::new_with_constructor(latency_histogram);
    registry.register(
        "http_request_duration_seconds",
        "Time to answer an HTTP request (to the response head; streams count until they start)",
        request_seconds.clone(),
    );
    let ingest_events = Family::<Labels, Counter>::default();
    registry.register(
        "ingest_events",
        "Events received on /api/v1/ingest, by outcome: accepted, duplicate or rejected",
        ingest_events.clone(),
    );
    let db_begin_seconds = latency_histogram();
    registry.register(
        "db_begin_duration_seconds",
        "Time to get a pooled connection and open a tenant transaction (pool wait plus one round trip)",
        db_begin_seconds.clone(),
    );
    let db_connections = Family::<Labels, Gauge>::default();
    registry.register(
        "db_pool_connections",
        "Connections of the request pool, by state: in_use, idle, max",
        db_connections.clone(),
    );
    let jwks_refreshes = Family::<Labels, Counter>::default();
    registry.register(
        "jwks_refreshes",
        "Fetches of signing key sets (identity providers' and fleetmon's own), by outcome",
        jwks_refreshes.clone(),
    );
    let stream_clients = Gauge::default();
    registry.register(
        "stream_clients",
        "Live-stream (Server-Sent Events) clients connected to this process",
        stream_clients.clone(),
    );
    let stream_resyncs = Family::<Labels, Counter>::default();
    registry.register(
        "stream_resyncs",
        "resync events sent to live-stream clients, by reason",
        stream_resyncs.clone(),
    );
    let stream_loads = Family::<Labels, Counter>::default();
    registry.register(
        "stream_loads",
        "loads of changed rows and overviews shared by an org's live streams, by outcome",
        stream_loads.clone(),
    );
    let change_listener_up = Gauge::default();
    registry.register(
        "change_listener_up",
        "1 while the change listener is connected and listening, else 0",
        change_listener_up.clone(),
    );
    let change_listener_losses = Counter::default();
    registry.register(
        "change_listener_losses",
        "Times the change listener lost its connection (each makes every stream resync)",
        change_listener_losses.clone(),
    );
    let change_notifications = Counter::default();
    registry.register(
        "change_notifications",
        "Change notifications the listener received",
        change_notifications.clone(),
    );
    let notify_lag_seconds = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
    registry.register(
        "notify_lag_seconds",
        "How long the listener's last self-probe took from NOTIFY to its arrival (every 30 s)",
        notify_lag_seconds.clone(),
    );
    let retention_runs = Family::<Labels, Counter>::default();
    registry.register(
        "retention_runs",
        "Retention runs, by outcome: completed, skipped (another replica held the lock) or failed",
        retention_runs.clone(),
    );
    let retention_rows_deleted = Family::<Labels, Counter>::default();
    registry.register(
        "retention_rows_deleted",
        "Rows removed by retention, by table, whether deleted in batches or with a dropped partition",
        retention_rows_deleted.clone(),
    );
    let retention_partitions_dropped = Counter::default();
    registry.register(
        "retention_partitions_dropped",
        "History partitions dropped by retention",
        retention_partitions_dropped.clone(),
    );
    let rate_limited = Family::<Labels, Counter>::default();
    registry.register(
        "http_rate_limited",
        "Requests refused with 429 by a rate limit, by limit: ingest_token or client_address",
        rate_limited.clone(),
    );
    let request_timeouts = Family::<Labels, Counter>::default();
    registry.register(
        "http_request_timeouts",
        "Requests answered 504 because they ran past the request timeout, by route template",
        request_timeouts.clone(),
    );
    let db_pool_timeouts = Counter::default();
    registry.register(
        "db_pool_timeouts",
        "Requests answered 503 because no pooled connection became free in time",
        db_pool_timeouts.clone(),
    );
    let build = Family::<Labels, Gauge>::default();
    build
        .get_or_create(&vec![("version", env!("CARGO_PKG_VERSION").to_string())])
        .set(1);
    registry.register("build_info", "The running fleetmon's version", build);
    Instruments {
        registry,
        requests,
        request_seconds,
        ingest_events,
        db_begin_seconds,
        db_connections,
        jwks_refreshes,
        stream_clients,
        stream_resyncs,
        stream_loads,
        change_listener_up,
        change_listener_losses,
        change_notifications,
        notify_lag_seconds,
        retention_runs,
        retention_rows_deleted,
        retention_partitions_dropped,
        rate_limited,
        request_timeouts,
        db_pool_timeouts,
    }
});

/// One answered request; `route` is the matched template, or `unmatched`.
pub fn request(route: &str, method: &str, status: u16, took: Duration) {
    let labels = vec![("route", route.to_string()), ("method", method.to_string())];
    INSTRUMENTS
        .request_seconds
        .get_or_create(&labels)
        .observe(took.as_secs_f64());
    let mut labels = labels;
    labels.push(("status", status.to_string()));
    INSTRUMENTS.requests.get_or_create(&labels).inc();
}

/// What one ingest request did with its events.
pub fn ingested(accepted: u64, duplicates: u64, rejected: u64) {
    for (outcome, count) in [
        ("accepted", accepted),
        ("duplicate", duplicates),
        ("rejected", rejected),
    ] {
        INSTRUMENTS
            .ingest_events
            .get_or_create(&vec![("outcome", outcome.to_string())])
            .inc_by(count);
    }
}

/// How long opening a tenant transaction took.
pub fn db_begin(took: Duration) {
    INSTRUMENTS.db_begin_seconds.observe(took.as_secs_f64());
}

/// One key-set fetch (an identity provider's JWKS, or fleetmon's own keys from the database).
pub fn jwks_refresh(succeeded: bool) {
    let outcome = if succeeded { "ok" } else { "failed" };
    INSTRUMENTS
        .jwks_refreshes
        .get_or_create(&vec![("outcome", outcome.to_string())])
        .inc();
}

/// A live-stream client connected (`1`) or gone (`-1`).
pub fn stream_clients(delta: i64) {
    INSTRUMENTS.stream_clients.inc_by(delta);
}

/// A `resync` sent to a stream client.
pub fn stream_resync(reason: &str) {
    INSTRUMENTS
        .stream_resyncs
        .get_or_create(&vec![("reason", reason.to_string())])
        .inc();
}

/// One load shared by an org's live streams ended.
pub fn stream_load(succeeded: bool) {
    let outcome = if succeeded { "ok" } else { "failed" };
    INSTRUMENTS
        .stream_loads
        .get_or_create(&vec![("outcome", outcome.to_string())])
        .inc();
}

/// The change listener started listening (`true`) or lost its connection.
pub fn change_listener(up: bool) {
    INSTRUMENTS.change_listener_up.set(i64::from(up));
    if !up {
        INSTRUMENTS.change_listener_losses.inc();
    }
}

pub fn change_notification() {
    INSTRUMENTS.change_notifications.inc();
}

pub fn notify_lag(lag: Duration) {
    INSTRUMENTS.notify_lag_seconds.set(lag.as_secs_f64());
}

/// One retention run ended: `completed`, `skipped` or `failed`.
pub fn retention_run(outcome: &str) {
    INSTRUMENTS
        .retention_runs
        .get_or_create(&vec![("outcome", outcome.to_string())])
        .inc();
}

/// Rows of `table` that retention removed.
pub fn retention_rows(table: &str, rows: u64) {
    INSTRUMENTS
        .retention_rows_deleted
        .get_or_create(&vec![("table", table.to_string())])
        .inc_by(rows);
}

pub fn retention_partition_dropped() {
    INSTRUMENTS.retention_partitions_dropped.inc();
}

/// A request refused by the rate limit named `limit`.
pub fn rate_limited(limit: &str) {
    INSTRUMENTS
        .rate_limited
        .get_or_create(&vec![("limit", limit.to_string())])
        .inc();
}

/// A request that ran past the request timeout.
pub fn request_timeout(route: &str) {
    INSTRUMENTS
        .request_timeouts
        .get_or_create(&vec![("route", route.to_string())])
        .inc();
}

/// A request that found the pool full for the whole acquire timeout.
pub fn db_pool_timeout() {
    INSTRUMENTS.db_pool_timeouts.inc();
}

/// The request pool as it is at scrape time.
pub struct PoolUse {
    pub in_use: u32,
    pub idle: u32,
    pub max: u32,
}

/// The text exposition of every metric, with the pool's current use.
pub fn render(pool: PoolUse) -> String {
    for (state, value) in [
        ("in_use", pool.in_use),
        ("idle", pool.idle),
        ("max", pool.max),
    ] {
        INSTRUMENTS
            .db_connections
            .get_or_create(&vec![("state", state.to_string())])
            .set(i64::from(value));
    }
    let mut text = String::new();
    encode(&mut text, &INSTRUMENTS.registry).expect("writing to a String cannot fail");
    text
}
