//! Machines and workers as users see them: reported state plus liveness derived at read time
//! from `last_seen_at` and the org's thresholds (DESIGN §5); and removing a machine that is gone.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::db::sql::{query, query_as, query_scalar};
use crate::db::DbError;
use crate::live::changes::{self, Changes};
use crate::orgs::settings::OrgSettings;

/// Longest page of a fleet listing.
pub const MAX_PAGE: i64 = 1000;

/// The SQL expression of a row's liveness. `$2` and `$3` are the org's `stale_after_s` and
/// `offline_after_s`; `shutdown` is the time of the row's last shutdown, if any.
macro_rules! liveness_sql {
    ($seen:literal, $shutdown:literal) => {
        concat!(
            "CASE WHEN ",
            $shutdown,
            " IS NOT NULL AND ",
            $shutdown,
            " >= ",
            $seen,
            " THEN 'offline'
                  WHEN ",
            $seen,
            " = '-infinity' THEN 'offline'
                  WHEN now() - ",
            $seen,
            " > make_interval(secs => $3) THEN 'offline'
                  WHEN now() - ",
            $seen,
            " > make_interval(secs => $2) THEN 'stale'
                  ELSE 'online' END"
        )
    };
}
pub(crate) use liveness_sql;

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Machine {
    pub id: String,
    pub hostname: Option<String>,
    /// `online`, `stale` or `offline`.
    pub liveness: String,
    pub reported_status: Option<String>,
    pub host: Value,
    pub gpus: Value,
    pub labels: Value,
    pub uptime_s: Option<i64>,
    pub started_at: Option<DateTime<Utc>>,
    pub last_seen_at: DateTime<Utc>,
    pub shutdown_at: Option<DateTime<Utc>>,
    /// Workers on this machine, and how many of them are busy.
    pub workers: i64,
    pub busy_workers: i64,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Worker {
    pub id: String,
    pub machine_id: Option<String>,
    pub liveness: String,
    pub status: Option<String>,
    pub current_job_id: Option<String>,
    pub capabilities: Value,
    pub services: Value,
    pub version: Option<String>,
    pub connected_at: Option<DateTime<Utc>>,
    /// `null` for a worker known only from job events, never from a heartbeat.
    pub last_seen_at: Option<DateTime<Utc>>,
    pub jobs_completed: i64,
    pub jobs_failed: i64,
}

/// Filters of a listing; ids are listed in order, after the cursor.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only the machines or workers with these ids.
    pub ids: Option<Vec<String>>,
    pub liveness: Option<String>,
    pub machine: Option<String>,
    pub status: Option<String>,
    pub after: Option<String>,
    pub limit: i64,
}

impl Filter {
    /// The one row with `id`.
    pub fn one(id: &str) -> Self {
        Self::ids(vec![id.to_string()])
    }

    /// The rows with these ids (those that exist).
    pub fn ids(ids: Vec<String>) -> Self {
        Self {
            limit: ids.len() as i64,
            ids: Some(ids),
            ..Self::default()
        }
    }
}

/// The statement of [`machines`]: `$1` org id, `$2`/`$3` stale/offline thresholds in seconds,
/// `$4` after, `$5` ids (an array), `$6` liveness, `$7` limit. Public for the query benchmark's
/// `pgbench` run.
pub fn machines_sql() -> String {
    format!(
        "SELECT * FROM ({MACHINE_SELECT}
                          AND ($4::text IS NULL OR m.id > $4)
                          AND ($5::text[] IS NULL OR m.id = ANY($5))) listed
         WHERE $6::text IS NULL OR liveness = $6
         ORDER BY id LIMIT $7"
    )
}

/// The org's `stale_after_s` and `offline_after_s`, bound as `$2` and `$3` of `liveness_sql!`.
pub(crate) fn thresholds(settings: &OrgSettings) -> (f64, f64) {
    (
        f64::from(settings.stale_after_s),
        f64::from(settings.offline_after_s),
    )
}

const MACHINE_SELECT: &str = concat!(
    "SELECT m.id, m.hostname, ",
    liveness_sql!("m.last_seen_at", "m.shutdown_at"),
    " AS liveness, m.reported_status, m.host, m.gpus, m.labels, m.uptime_s, m.started_at,
       m.last_seen_at, m.shutdown_at,
       (SELECT count(*) FROM workers w WHERE w.org_id = m.org_id AND w.machine_id = m.id) AS workers,
       (SELECT count(*) FROM workers w WHERE w.org_id = m.org_id AND w.machine_id = m.id
                                         AND w.status = 'busy') AS busy_workers
     FROM machines m WHERE m.org_id = $1"
);

pub async fn machines(
    conn: &mut PgConnection,
    org_id: Uuid,
    settings: &OrgSettings,
    filter: &Filter,
) -> Result<Vec<Machine>, DbError> {
    let (stale, offline) = thresholds(settings);
    Ok(query_as(&machines_sql())
        .bind(org_id)
        .bind(stale)
        .bind(offline)
        .bind(&filter.after)
        .bind(&filter.ids)
        .bind(&filter.liveness)
        .bind(filter.limit.clamp(1, MAX_PAGE))
        .fetch_all(conn)
        .await?)
}

/// The statement of [`workers`]: `$1` org id, `$2`/`$3` stale/offline thresholds in seconds,
/// `$4` after, `$5` ids (an array), `$6` machine, `$7` status, `$8` liveness, `$9` limit. Public
/// for the query benchmark's `pgbench` run.
pub fn workers_sql() -> String {
    format!(
        "SELECT * FROM ({WORKER_SELECT}
                          AND ($4::text IS NULL OR w.id > $4)
                          AND ($5::text[] IS NULL OR w.id = ANY($5))
                          AND ($6::text IS NULL OR w.machine_id = $6)
                          AND ($7::text IS NULL OR w.status = $7)) listed
         WHERE $8::text IS NULL OR liveness = $8
         ORDER BY id LIMIT $9"
    )
}

/// A worker is offline when its own heartbeats stop, and also when its machine shut down after
/// the worker was last heard from.
const WORKER_SELECT: &str = concat!(
    "SELECT w.id, w.machine_id, ",
    liveness_sql!("w.last_seen_at", "m.shutdown_at"),
    " AS liveness, w.status, w.current_job_id, w.capabilities, w.services, w.version,
       w.connected_at, nullif(w.last_seen_at, '-infinity') AS last_seen_at,
       w.jobs_completed, w.jobs_failed
     FROM workers w
     LEFT JOIN machines m ON m.org_id = w.org_id AND m.id = w.machine_id
     WHERE w.org_id = $1"
);

pub async fn workers(
    conn: &mut PgConnection,
    org_id: Uuid,
    settings: &OrgSettings,
    filter: &Filter,
) -> Result<Vec<Worker>, DbError> {
    let (stale, offline) = thresholds(settings);
    Ok(query_as(&workers_sql())
        .bind(org_id)
        .bind(stale)
        .bind(offline)
        .bind(&filter.after)
        .bind(&filter.ids)
        .bind(&filter.machine)
        .bind(&filter.status)
        .bind(&filter.liveness)
        .bind(filter.limit.clamp(1, MAX_PAGE))
        .fetch_all(conn)
        .await?)
}

/// The machine `id` and its workers, or `None` when the org has no such machine.
pub async fn machine_with_workers(
    conn: &mut PgConnection,
    org_id: Uuid,
    settings: &OrgSettings,
    id: &str,
) -> Result<Option<(Machine, Vec<Worker>)>, DbError> {
    let Some(machine) = machines(&mut *conn, org_id, settings, &Filter::one(id))
        .await?
        .pop()
    else {
        return Ok(None);
    };
    let filter = Filter {
        machine: Some(id.to_string()),
        limit: MAX_PAGE,
        ..Filter::default()
    };
    let workers = workers(conn, org_id, settings, &filter).await?;
    Ok(Some((machine, workers)))
}

/// A status change or shutdown of a machine or of one of its workers, as received.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct LifecycleEvent {
    pub kind: String,
    pub at: DateTime<Utc>,
    pub worker_id: Option<String>,
    pub data: Value,
}

/// How far back [`lifecycle`] looks. The history keeps every heartbeat too, and the statement
/// walks the machine's rows newest first past them: the bound caps that walk (a week of
/// heartbeats every 10 s is about 60 000 rows) whatever the retention.
pub const LIFECYCLE_DAYS: i32 = 7;

/// The newest `limit` status changes and shutdowns of machine `id` and its workers within
/// [`LIFECYCLE_DAYS`], newest first. Parameters: the org, the machine, the limit.
pub const LIFECYCLE_SQL: &str = "SELECT kind, at, worker_id, data FROM fleet_events
     WHERE org_id = $1 AND machine_id = $2 AND at >= now() - make_interval(days => $4)
       AND kind IN ('machine.status', 'machine.shutdown', 'worker.status')
     ORDER BY at DESC, event_id DESC LIMIT $3";

pub async fn lifecycle(
    conn: &mut PgConnection,
    org_id: Uuid,
    id: &str,
    limit: i64,
) -> Result<Vec<LifecycleEvent>, DbError> {
    Ok(query_as(LIFECYCLE_SQL)
        .bind(org_id)
        .bind(id)
        .bind(limit)
        .bind(LIFECYCLE_DAYS)
        .fetch_all(conn)
        .await?)
}

/// What [`remove_machine`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// The machine and these workers of it are gone.
    Removed {
        workers: Vec<String>,
    },
    /// The machine is `online` or `stale`, and stays.
    NotOffline {
        liveness: String,
    },
    NotFound,
}

/// Removes machine `id` and the rows of its workers, if the machine is offline, and announces it
/// to live streams. History (jobs, events, metrics) stays. The machine's row is locked first, as ingest locks it before its
/// workers: a heartbeat arriving meanwhile waits and then records the machine anew.
pub async fn remove_machine(
    conn: &mut PgConnection,
    org_id: Uuid,
    settings: &OrgSettings,
    id: &str,
) -> Result<Removal, DbError> {
    let (stale, offline) = thresholds(settings);
    let liveness: Option<String> = query_scalar(concat!(
        "SELECT ",
        liveness_sql!("last_seen_at", "shutdown_at"),
        " FROM machines WHERE org_id = $1 AND id = $4 FOR UPDATE"
    ))
    .bind(org_id)
    .bind(stale)
    .bind(offline)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    match liveness {
        None => return Ok(Removal::NotFound),
        Some(liveness) if liveness != "offline" => return Ok(Removal::NotOffline { liveness }),
        Some(_) => {}
    }
    let mut workers: Vec<String> =
        query_scalar("DELETE FROM workers WHERE org_id = $1 AND machine_id = $2 RETURNING id")
            .bind(org_id)
            .bind(id)
            .fetch_all(&mut *conn)
            .await?;
    workers.sort();
    query("DELETE FROM machines WHERE org_id = $1 AND id = $2")
        .bind(org_id)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    // Live streams show them as removed once this commits.
    let gone = Changes {
        machines: [id.to_string()].into(),
        workers: workers.iter().cloned().collect(),
        ..Changes::default()
    };
    changes::publish(conn, org_id, &gone).await?;
    Ok(Removal::Removed { workers })
}
