//! Metric series as agents send them (`metrics` events: GPU utilisation, memory, temperature or
//! anything else), aggregated per time bucket. A series is one (machine, worker, name, labels);
//! machine-level series have no worker.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use super::window::{bucket_sql, buckets_sql, Buckets};
use crate::db::sql::query_as;
use crate::db::DbError;

/// The most series one answer carries, in (machine, worker, labels) order.
pub const MAX_SERIES: usize = 100;
/// The most metric names listed.
pub const MAX_NAMES: i64 = 1000;

/// How a bucket's samples become its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agg {
    Avg,
    Min,
    Max,
    Sum,
    /// The value of the bucket's latest sample.
    Last,
    /// How many samples the bucket has.
    Count,
}

impl Agg {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "avg" => Some(Self::Avg),
            "min" => Some(Self::Min),
            "max" => Some(Self::Max),
            "sum" => Some(Self::Sum),
            "last" => Some(Self::Last),
            "count" => Some(Self::Count),
            _ => None,
        }
    }

    fn sql(self) -> &'static str {
        match self {
            Self::Avg => "avg(m.value)",
            Self::Min => "min(m.value)",
            Self::Max => "max(m.value)",
            Self::Sum => "sum(m.value)",
            Self::Last => "(array_agg(m.value ORDER BY m.at DESC))[1]",
            Self::Count => "count(*)::float8",
        }
    }

    /// A bucket without samples has no value — except a count, which is zero.
    fn empty(self) -> &'static str {
        match self {
            Self::Count => "0",
            _ => "NULL",
        }
    }
}

/// Only series with these values; `worker` matches worker-level series only.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    pub machine: Option<String>,
    pub worker: Option<String>,
}

/// The statement for `agg`, one row per (series, bucket), every bucket of the window present:
/// `$1` org, `$2` metric name, `$3`/`$4` the machine and worker filters (NULL for none),
/// `[$5, $6)` the window, `$7` the step in seconds, `$8` how many series at most.
pub fn sql(agg: Agg) -> String {
    format!(
        "WITH series AS (
             SELECT s.id, s.machine_id, s.worker_id, s.labels
             FROM metric_series s
             WHERE s.org_id = $1 AND s.name = $2
               AND ($3::text IS NULL OR s.machine_id = $3)
               AND ($4::text IS NULL OR s.worker_id = $4)
             ORDER BY s.machine_id, s.worker_id, s.labels
             LIMIT $8
         ), buckets AS (
             {buckets}
         ), aggregated AS (
             SELECT m.series_id, {bucket} AS bucket, {agg} AS value
             FROM metric_samples m
             WHERE m.org_id = $1 AND m.series_id IN (SELECT id FROM series)
               AND m.at >= $5 AND m.at < $6
             GROUP BY 1, 2
         )
         SELECT s.id, s.machine_id, nullif(s.worker_id, '') AS worker_id, s.labels, b.bucket,
                coalesce(v.value, {empty}) AS value
         FROM series s
         CROSS JOIN buckets b
         LEFT JOIN aggregated v ON v.series_id = s.id AND v.bucket = b.bucket
         ORDER BY s.machine_id, s.worker_id, s.labels, b.bucket",
        buckets = buckets_sql("$5", "$6", "$7"),
        bucket = bucket_sql("$7", "m.at"),
        agg = agg.sql(),
        empty = agg.empty(),
    )
}

/// Every metric name with how many series carry it. `$1` org, `$2` a machine (NULL for all),
/// `$3` how many names at most.
pub const NAMES_SQL: &str = "SELECT name, count(*) AS series
     FROM metric_series
     WHERE org_id = $1 AND ($2::text IS NULL OR machine_id = $2)
     GROUP BY name ORDER BY name LIMIT $3";

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    pub machine_id: String,
    /// `null` for a machine-level series.
    pub worker_id: Option<String>,
    pub labels: Value,
    /// `[bucket start, value]` for every bucket of the window.
    pub points: Vec<(DateTime<Utc>, Option<f64>)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct MetricName {
    pub name: String,
    pub series: i64,
}

/// The series called `name` that match `filters`, each with every bucket; and whether more than
/// [`MAX_SERIES`] matched.
pub async fn load(
    conn: &mut PgConnection,
    org_id: Uuid,
    name: &str,
    filters: &Filters,
    buckets: Buckets,
    agg: Agg,
) -> Result<(Vec<Series>, bool), DbError> {
    type Row = (
        i64,
        String,
        Option<String>,
        Value,
        DateTime<Utc>,
        Option<f64>,
    );
    super::without_jit(&mut *conn).await?;
    let rows: Vec<Row> = query_as(&sql(agg))
        .bind(org_id)
        .bind(name)
        .bind(&filters.machine)
        .bind(&filters.worker)
        .bind(buckets.window.since)
        .bind(buckets.window.until)
        .bind(buckets.step_s as f64)
        .bind(MAX_SERIES as i64 + 1)
        .fetch_all(conn)
        .await?;
    let mut series: Vec<(i64, Series)> = Vec::new();
    for (id, machine_id, worker_id, labels, bucket, value) in rows {
        match series.last_mut() {
            Some((last, s)) if *last == id => s.points.push((bucket, value)),
            _ => series.push((
                id,
                Series {
                    machine_id,
                    worker_id,
                    labels,
                    points: vec![(bucket, value)],
                },
            )),
        }
    }
    let truncated = series.len() > MAX_SERIES;
    Ok((
        series
            .into_iter()
            .take(MAX_SERIES)
            .map(|(_, s)| s)
            .collect(),
        truncated,
    ))
}

/// The metric names known for the org (or one machine), by name.
pub async fn names(
    conn: &mut PgConnection,
    org_id: Uuid,
    machine: Option<&str>,
) -> Result<Vec<MetricName>, DbError> {
    Ok(query_as(NAMES_SQL)
        .bind(org_id)
        .bind(machine)
        .bind(MAX_NAMES)
        .fetch_all(conn)
        .await?)
}
