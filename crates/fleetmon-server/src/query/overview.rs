//! The overview: what the fleet is doing now and how the window's jobs ended, in two statements —
//! cheap enough to refresh live.
//!
//! Jobs are counted by their current state: `pending` (pending or queued) and `active` (assigned
//! or in progress) whenever they were created; `completed`, `failed` (failed or timed out) and
//! `cancelled` when they finished within the window. A job retried after a failure counts once,
//! by how its last attempt ended. Cancelled jobs are neither successes nor failures.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use super::fleet::{liveness_sql, thresholds};
use super::window::Window;
use crate::db::sql::query_as;
use crate::db::DbError;
use crate::orgs::settings::OrgSettings;

/// How many of the window's failures the overview lists.
pub const RECENT_FAILURES: i64 = 10;

/// Every counter in one row. `$1` org, `$2`/`$3` the org's stale/offline thresholds in seconds,
/// `[$4, $5)` the window. Only terminal states have a `finished_at`: failed (or timed out) is
/// what finished neither completed nor cancelled.
pub const COUNTERS_SQL: &str = concat!(
    "SELECT
       (SELECT count(*) FROM jobs WHERE org_id = $1 AND status IN ('pending', 'queued')) AS pending,
       (SELECT count(*) FROM jobs WHERE org_id = $1 AND status IN ('assigned', 'in_progress')) AS active,
       f.completed, f.finished - f.completed - f.cancelled AS failed, f.cancelled,
       m.online AS machines_online, m.stale AS machines_stale, m.offline AS machines_offline,
       w.online AS workers_online, w.stale AS workers_stale, w.offline AS workers_offline,
       w.initializing, w.idle, w.busy, w.paused, w.stopping, w.error, w.maintenance, w.unknown
     FROM (SELECT count(*) AS finished, count(*) FILTER (WHERE status = 'completed') AS completed,
                  count(*) FILTER (WHERE status = 'cancelled') AS cancelled
           FROM jobs WHERE org_id = $1 AND finished_at >= $4 AND finished_at < $5) f,
          (SELECT count(*) FILTER (WHERE liveness = 'online') AS online,
                  count(*) FILTER (WHERE liveness = 'stale') AS stale,
                  count(*) FILTER (WHERE liveness = 'offline') AS offline
           FROM (SELECT ",
    liveness_sql!("m.last_seen_at", "m.shutdown_at"),
    " AS liveness FROM machines m WHERE m.org_id = $1) l) m,
          (SELECT count(*) FILTER (WHERE liveness = 'online') AS online,
                  count(*) FILTER (WHERE liveness = 'stale') AS stale,
                  count(*) FILTER (WHERE liveness = 'offline') AS offline,
                  count(*) FILTER (WHERE status = 'initializing') AS initializing,
                  count(*) FILTER (WHERE status = 'idle') AS idle,
                  count(*) FILTER (WHERE status = 'busy') AS busy,
                  count(*) FILTER (WHERE status = 'paused') AS paused,
                  count(*) FILTER (WHERE status = 'stopping') AS stopping,
                  count(*) FILTER (WHERE status = 'error') AS error,
                  count(*) FILTER (WHERE status = 'maintenance') AS maintenance,
                  count(*) FILTER (WHERE status IS NULL) AS unknown
           FROM (SELECT ",
    liveness_sql!("w.last_seen_at", "m.shutdown_at"),
    " AS liveness, w.status
                 FROM workers w
                 LEFT JOIN machines m ON m.org_id = w.org_id AND m.id = w.machine_id
                 WHERE w.org_id = $1) l) w"
);

/// The window's last failures, newest first. `$1` org, `[$2, $3)` the window, `$4` how many.
pub const RECENT_FAILURES_SQL: &str =
    "SELECT id, name, job_type, status, attempt, error ->> 'type' AS error_type,
            error ->> 'reason' AS error_reason, error ->> 'message' AS error_message,
            worker_id, machine_id, finished_at
     FROM jobs
     WHERE org_id = $1 AND status IN ('failed', 'timeout') AND finished_at >= $2 AND finished_at < $3
     ORDER BY finished_at DESC, id DESC
     LIMIT $4";

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Overview {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub jobs: JobCounts,
    pub machines: MachineCounts,
    pub workers: WorkerCounts,
    pub recent_failures: Vec<RecentFailure>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct JobCounts {
    pub pending: i64,
    pub active: i64,
    pub completed: i64,
    pub failed: i64,
    pub cancelled: i64,
    /// `completed / (completed + failed)`; `null` when nothing completed or failed.
    pub success_rate: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct LivenessCounts {
    pub online: i64,
    pub stale: i64,
    pub offline: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct MachineCounts {
    pub total: i64,
    pub by_liveness: LivenessCounts,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct WorkerCounts {
    pub total: i64,
    pub by_liveness: LivenessCounts,
    /// By reported status; `unknown` for workers known only from job events.
    pub by_status: WorkerStatusCounts,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct WorkerStatusCounts {
    pub initializing: i64,
    pub idle: i64,
    pub busy: i64,
    pub paused: i64,
    pub stopping: i64,
    pub error: i64,
    pub maintenance: i64,
    pub unknown: i64,
}

impl WorkerStatusCounts {
    fn total(&self) -> i64 {
        self.initializing
            + self.idle
            + self.busy
            + self.paused
            + self.stopping
            + self.error
            + self.maintenance
            + self.unknown
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct RecentFailure {
    pub id: String,
    pub name: Option<String>,
    pub job_type: Option<String>,
    /// `failed` or `timeout`.
    pub status: String,
    pub attempt: i32,
    pub error_type: Option<String>,
    pub error_reason: Option<String>,
    pub error_message: Option<String>,
    pub worker_id: Option<String>,
    pub machine_id: Option<String>,
    pub finished_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct CountersRow {
    pending: i64,
    active: i64,
    completed: i64,
    failed: i64,
    cancelled: i64,
    machines_online: i64,
    machines_stale: i64,
    machines_offline: i64,
    workers_online: i64,
    workers_stale: i64,
    workers_offline: i64,
    #[sqlx(flatten)]
    by_status: WorkerStatusCounts,
}

/// The overview of `org_id` for `window`, read in the caller's tenant transaction.
pub async fn load(
    conn: &mut PgConnection,
    org_id: Uuid,
    settings: &OrgSettings,
    window: Window,
) -> Result<Overview, DbError> {
    super::without_jit(&mut *conn).await?;
    let (stale, offline) = thresholds(settings);
    let row: CountersRow = query_as(COUNTERS_SQL)
        .bind(org_id)
        .bind(stale)
        .bind(offline)
        .bind(window.since)
        .bind(window.until)
        .fetch_one(&mut *conn)
        .await?;
    let recent_failures = query_as(RECENT_FAILURES_SQL)
        .bind(org_id)
        .bind(window.since)
        .bind(window.until)
        .bind(RECENT_FAILURES)
        .fetch_all(conn)
        .await?;
    let ended = row.completed + row.failed;
    let machines = LivenessCounts {
        online: row.machines_online,
        stale: row.machines_stale,
        offline: row.machines_offline,
    };
    Ok(Overview {
        since: window.since,
        until: window.until,
        jobs: JobCounts {
            pending: row.pending,
            active: row.active,
            completed: row.completed,
            failed: row.failed,
            cancelled: row.cancelled,
            success_rate: (ended > 0).then(|| row.completed as f64 / ended as f64),
        },
        machines: MachineCounts {
            total: machines.online + machines.stale + machines.offline,
            by_liveness: machines,
        },
        workers: WorkerCounts {
            total: row.by_status.total(),
            by_liveness: LivenessCounts {
                online: row.workers_online,
                stale: row.workers_stale,
                offline: row.workers_offline,
            },
            by_status: row.by_status,
        },
        recent_failures,
    })
}
