//! Job metrics per time bucket: how many jobs were submitted, completed and failed, how long they
//! ran and how long they waited — optionally per job type, machine or worker.
//!
//! Each measure is taken at the moment it describes: `submitted` by `created_at`; `completed`,
//! `failed` (failed or timed out), `cancelled` and the duration percentiles by `finished_at`;
//! queue wait by `started_at`. Durations are the `duration_ms` of completed, failed and timed-out
//! jobs (cancelled ones excluded). Queue wait is `started_at − queued_at`, or `− created_at` for
//! a job that was never queued, floored at zero (agents' clocks differ). Percentiles are
//! `percentile_cont`: interpolated between the two nearest values; `null` when the bucket has none.
//! Like the overview, a job counts by its current (last) attempt.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use super::window::{buckets_sql, Buckets};
use crate::db::sql::query_as;
use crate::db::DbError;

/// The most groups one answer carries: the busiest, by jobs submitted and finished.
pub const MAX_GROUPS: usize = 50;

/// What to split the metrics by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    JobType,
    Machine,
    Worker,
}

impl GroupBy {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "job_type" => Some(Self::JobType),
            "machine" => Some(Self::Machine),
            "worker" => Some(Self::Worker),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::JobType => "job_type",
            Self::Machine => "machine",
            Self::Worker => "worker",
        }
    }

    fn column(self) -> &'static str {
        match self {
            Self::JobType => "j.job_type",
            Self::Machine => "j.machine_id",
            Self::Worker => "j.worker_id",
        }
    }
}

/// Only jobs with these values (exact matches).
#[derive(Debug, Clone, Default)]
pub struct Filters {
    pub job_type: Option<String>,
    pub machine: Option<String>,
    pub worker: Option<String>,
}

/// The statement for `group_by`, one row per (group, bucket), every bucket of the window
/// present: `$1` org, `[$2, $3)` the window, `$4` the step in seconds, `$5`/`$6`/`$7` the job
/// type, machine and worker filters (NULL for none), `$8` how many groups at most.
pub fn sql(group_by: Option<GroupBy>) -> String {
    let key = group_by.map_or("NULL::text", GroupBy::column);
    let group = if group_by.is_some() { "GROUP BY 1" } else { "" };
    // Each measure is one index range scan per bucket: rows come in time order, so no sort of the
    // whole window, and each bucket's percentiles sort only that bucket's rows. The buckets are
    // materialized so that each range's bounds are plain values, usable as index conditions.
    // Only terminal states have a `finished_at`, so failed (failed or timed out) is what is
    // neither completed nor cancelled: one comparison per row fewer.
    let per_bucket = |alias: &str, measures: &str, column: &str| {
        format!(
            "SELECT b.bucket, {alias}.*
             FROM buckets b CROSS JOIN LATERAL (
                 SELECT {key} AS key, {measures}
                 FROM jobs j
                 WHERE j.org_id = $1 AND j.{column} >= b.lo AND j.{column} < b.hi
                   AND ($5::text IS NULL OR j.job_type = $5)
                   AND ($6::text IS NULL OR j.machine_id = $6)
                   AND ($7::text IS NULL OR j.worker_id = $7)
                 {group}) {alias}"
        )
    };
    let submitted = per_bucket("s", "count(*) AS submitted", "created_at");
    let finished = per_bucket(
        "f",
        "count(*) AS finished,
         count(*) FILTER (WHERE j.status = 'completed') AS completed,
         count(*) FILTER (WHERE j.status = 'cancelled') AS cancelled,
         percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY j.duration_ms)
             FILTER (WHERE j.status <> 'cancelled') AS duration_ms",
        "finished_at",
    );
    // date_part, not extract: extract yields numeric, several times slower to sort.
    let started = per_bucket(
        "w",
        "percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY greatest(0,
             date_part('epoch', j.started_at - coalesce(j.queued_at, j.created_at)) * 1000))
             AS queue_wait_ms",
        "started_at",
    );
    let keys = match group_by {
        None => "SELECT NULL::text AS key, 1 AS rank LIMIT $8",
        Some(_) => {
            "SELECT key, row_number() OVER (ORDER BY sum(n) DESC, key NULLS LAST) AS rank
             FROM (SELECT key, submitted AS n FROM submitted
                   UNION ALL SELECT key, finished FROM finished
                   UNION ALL SELECT key, 0 FROM started) k
             GROUP BY key ORDER BY rank LIMIT $8"
        }
    };
    // A NULL key (no job type, no machine yet) is a group too; joins compare (is null, value).
    let same_key = |alias: &str| {
        format!(
            "{alias}.bucket = b.bucket
             AND ({alias}.key IS NULL, coalesce({alias}.key, '')) = (k.key IS NULL, coalesce(k.key, ''))"
        )
    };
    format!(
        "WITH buckets AS MATERIALIZED (
             {buckets}
         ), submitted AS (
             {submitted}
         ), finished AS (
             {finished}
         ), started AS (
             {started}
         ), keys AS (
             {keys}
         )
         SELECT k.key, b.bucket, coalesce(s.submitted, 0) AS submitted,
                coalesce(f.completed, 0) AS completed,
                coalesce(f.finished - f.completed - f.cancelled, 0) AS failed,
                coalesce(f.cancelled, 0) AS cancelled, f.duration_ms, w.queue_wait_ms
         FROM keys k
         CROSS JOIN buckets b
         LEFT JOIN submitted s ON {same_s}
         LEFT JOIN finished f ON {same_f}
         LEFT JOIN started w ON {same_w}
         ORDER BY k.rank, b.bucket",
        buckets = buckets_sql("$2", "$3", "$4"),
        same_s = same_key("s"),
        same_f = same_key("f"),
        same_w = same_key("w"),
    )
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = JobGroup)]
pub struct Group {
    /// The job type, machine or worker; `null` for jobs without one, and when not grouped.
    pub key: Option<String>,
    pub buckets: Vec<Bucket>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = JobBucket)]
pub struct Bucket {
    pub start: DateTime<Utc>,
    pub submitted: i64,
    pub completed: i64,
    pub failed: i64,
    pub cancelled: i64,
    /// `failed / (completed + failed)`; `null` when neither happened.
    pub failure_rate: Option<f64>,
    pub duration_ms: Durations,
    pub queue_wait_ms: QueueWait,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = JobDurations)]
pub struct Durations {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = JobQueueWait)]
pub struct QueueWait {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
}

/// The groups (one, unkeyed, without `group_by`), busiest first, each with every bucket; and
/// whether more groups than [`MAX_GROUPS`] had jobs.
pub async fn load(
    conn: &mut PgConnection,
    org_id: Uuid,
    buckets: Buckets,
    group_by: Option<GroupBy>,
    filters: &Filters,
) -> Result<(Vec<Group>, bool), DbError> {
    type Row = (
        Option<String>,
        DateTime<Utc>,
        i64,
        i64,
        i64,
        i64,
        Option<Vec<f64>>,
        Option<Vec<f64>>,
    );
    super::without_jit(&mut *conn).await?;
    let rows: Vec<Row> = query_as(&sql(group_by))
        .bind(org_id)
        .bind(buckets.window.since)
        .bind(buckets.window.until)
        .bind(buckets.step_s as f64)
        .bind(&filters.job_type)
        .bind(&filters.machine)
        .bind(&filters.worker)
        .bind(MAX_GROUPS as i64 + 1)
        .fetch_all(conn)
        .await?;
    let mut groups: Vec<Group> = Vec::new();
    for (key, start, submitted, completed, failed, cancelled, duration, wait) in rows {
        let at =
            |values: &Option<Vec<f64>>, i: usize| values.as_ref().and_then(|v| v.get(i).copied());
        let bucket = Bucket {
            start,
            submitted,
            completed,
            failed,
            cancelled,
            failure_rate: (completed + failed > 0)
                .then(|| failed as f64 / (completed + failed) as f64),
            duration_ms: Durations {
                p50: at(&duration, 0),
                p95: at(&duration, 1),
                p99: at(&duration, 2),
            },
            queue_wait_ms: QueueWait {
                p50: at(&wait, 0),
                p95: at(&wait, 1),
            },
        };
        match groups.last_mut() {
            Some(group) if group.key == key => group.buckets.push(bucket),
            _ => groups.push(Group {
                key,
                buckets: vec![bucket],
            }),
        }
    }
    let truncated = groups.len() > MAX_GROUPS;
    groups.truncate(MAX_GROUPS);
    Ok((groups, truncated))
}
