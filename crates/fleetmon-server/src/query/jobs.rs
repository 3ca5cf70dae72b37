//! Jobs as users read them: the newest-first listing with its filters and cursor, and one job
//! with its history — the timeline of its events, its attempts and its error chain.
//!
//! The listing's statement is built by [`list_statement`], text and parameters together, so the
//! handler and a benchmark's `pgbench` run the very same SQL.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use fleetmon_proto::ingest::EventBody;
use serde::Serialize;
use serde_json::Value;
use sqlx::postgres::PgArguments;
use sqlx::query::QueryAs;
use sqlx::{PgConnection, Postgres};
use uuid::Uuid;

use super::fleet::{self, Filter, Machine, Worker};
use crate::db::sql::query_as;
use crate::db::DbError;
use crate::ingest::jobs::{JobEvent, JobRow};
use crate::orgs::settings::OrgSettings;

/// Longest page of the listing, and the page when none is asked for.
pub const MAX_PAGE: i64 = 500;
pub const DEFAULT_PAGE: i64 = 50;

/// Rows a text search examines per request, newest first, among those the other filters select.
/// Under row-level security no index can evaluate a substring match (see
/// migrations/0004_jobs_query.sql), so a search walks the listing's index; this bound keeps each
/// request's cost the same for a rare term as for a common one and whatever the history's size.
/// A page that reached it may hold fewer jobs than asked for: its `next_cursor` continues the
/// search where it stopped. Examining a row costs a few microseconds (more when the other filters
/// select rows spread over the table); 5 000 keeps a search within a few tens of milliseconds.
pub const SEARCH_SCAN_ROWS: i64 = 5_000;

/// Every status a job can have.
pub const STATUSES: &[&str] = &[
    "pending",
    "queued",
    "assigned",
    "in_progress",
    "completed",
    "failed",
    "cancelled",
    "timeout",
];

macro_rules! summary_columns {
    () => {
        "id, workflow_id, name, job_type, status, priority, attempt, max_retries, progress, \
         progress_message, worker_id, machine_id, customer_id, created_at, queued_at, assigned_at, \
         started_at, finished_at, duration_ms, error"
    };
}

/// A job in a listing: everything but its payload and result.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct JobSummary {
    pub id: String,
    pub workflow_id: Option<String>,
    pub name: Option<String>,
    pub job_type: Option<String>,
    pub status: String,
    pub priority: Option<i32>,
    pub attempt: i32,
    pub max_retries: Option<i32>,
    pub progress: Option<f32>,
    pub progress_message: Option<String>,
    /// The worker and machine of the current attempt.
    pub worker_id: Option<String>,
    pub machine_id: Option<String>,
    pub customer_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub queued_at: Option<DateTime<Utc>>,
    pub assigned_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    /// The current attempt's error: `{type, reason, message, cause?, will_retry}` for a failure,
    /// `{type, reason}` for a timeout or cancellation.
    pub error: Option<Value>,
}

/// A position in the listing: the `(created_at, id)` of the last job a page covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: String,
}

impl Cursor {
    /// Opaque to clients: base64url of `[created_at in microseconds, id]`.
    pub fn encode(&self) -> String {
        let position = serde_json::json!([self.created_at.timestamp_micros(), self.id]);
        URL_SAFE_NO_PAD.encode(position.to_string())
    }

    pub fn decode(text: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        let (micros, id): (i64, String) = serde_json::from_slice(&bytes).ok()?;
        Some(Self {
            created_at: DateTime::from_timestamp_micros(micros)?,
            id,
        })
    }
}

/// What a listing asks for; every filter given must hold.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// Any of these statuses (none: any status).
    pub statuses: Vec<String>,
    pub job_type: Option<String>,
    pub machine: Option<String>,
    pub worker: Option<String>,
    pub workflow: Option<String>,
    pub customer: Option<String>,
    /// Case-insensitive substring of the name, the type, or the error's type, reason or message.
    pub text: Option<String>,
    /// `created_at` in `[since, until)`.
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Only jobs after this position (older, or as old with a smaller id).
    pub after: Option<Cursor>,
    pub limit: i64,
}

/// A parameter of a [`Statement`].
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Uuid(Uuid),
    Text(String),
    Time(DateTime<Utc>),
    Int(i64),
}

/// SQL text and its parameters: `params[i]` is bound to `$i+1`.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub sql: String,
    pub params: Vec<Param>,
}

impl Statement {
    fn query_as<O>(&self) -> QueryAs<'_, Postgres, O, PgArguments>
    where
        O: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
    {
        self.params
            .iter()
            .fold(query_as(&self.sql), |query, param| match param {
                Param::Uuid(v) => query.bind(v),
                Param::Text(v) => query.bind(v),
                Param::Time(v) => query.bind(v),
                Param::Int(v) => query.bind(v),
            })
    }
}

/// Appends parameters and names their placeholders.
#[derive(Default)]
struct Params(Vec<Param>);

impl Params {
    fn add(&mut self, param: Param) -> String {
        self.0.push(param);
        format!("${}", self.0.len())
    }
}

/// What a text search matches, lowercased, one field a line: a term without a line break never
/// matches across two fields.
const SEARCH_TEXT: &str = "lower(coalesce(name, '') || E'\\n' || coalesce(job_type, '') \
     || E'\\n' || coalesce(error->>'type', '') || E'\\n' || coalesce(error->>'reason', '') \
     || E'\\n' || coalesce(error->>'message', ''))";

/// The listing's statement for `filter` in `org_id`.
///
/// Parameters, in order: the org; each status; `job_type`, `machine`, `worker`, `workflow`,
/// `customer`, `since`, `until` and the cursor's `created_at` and `id`, each only when given;
/// the search text when given; and the page size plus one (the extra row tells whether there is
/// a next page). Each row is a job's summary columns, `hit` (whether the row is a job of the
/// page) and `at_budget` (whether the row is the last a search examined, see
/// [`SEARCH_SCAN_ROWS`]).
///
/// Every filter is an equality or range in one of the `(org_id, column, created_at DESC, id
/// DESC)` indexes, so the rows come off an index in listing order and the statement stops after
/// a page. Several statuses are one such read per status, merged. Parameters are bound per
/// execution (unnamed statements), so the planner sees their values: in `pgbench` use
/// `-M extended`, not `-M prepared`.
pub fn list_statement(org_id: Uuid, filter: &JobFilter) -> Statement {
    let mut params = Params::default();
    let mut conditions = vec![format!("org_id = {}", params.add(Param::Uuid(org_id)))];
    let statuses: Vec<String> = filter
        .statuses
        .iter()
        .map(|s| params.add(Param::Text(s.clone())))
        .collect();
    for (column, value) in [
        ("job_type", &filter.job_type),
        ("machine_id", &filter.machine),
        ("worker_id", &filter.worker),
        ("workflow_id", &filter.workflow),
        ("customer_id", &filter.customer),
    ] {
        if let Some(value) = value {
            let placeholder = params.add(Param::Text(value.clone()));
            conditions.push(format!("{column} = {placeholder}"));
        }
    }
    if let Some(since) = filter.since {
        conditions.push(format!("created_at >= {}", params.add(Param::Time(since))));
    }
    if let Some(until) = filter.until {
        conditions.push(format!("created_at < {}", params.add(Param::Time(until))));
    }
    if let Some(after) = &filter.after {
        let at = params.add(Param::Time(after.created_at));
        let id = params.add(Param::Text(after.id.clone()));
        conditions.push(format!("(created_at, id) < ({at}, {id})"));
    }
    let text = filter
        .text
        .as_ref()
        .map(|t| params.add(Param::Text(t.clone())));
    let limit = params.add(Param::Int(filter.limit + 1));

    let order = "ORDER BY created_at DESC, id DESC";
    let columns = summary_columns!();
    let take = match text {
        Some(_) => SEARCH_SCAN_ROWS.to_string(),
        None => limit.clone(),
    };
    let select = |status: Option<&String>| {
        let status = status
            .map(|s| format!(" AND status = {s}"))
            .unwrap_or_default();
        format!(
            "SELECT {columns} FROM jobs WHERE {}{status} {order} LIMIT {take}",
            conditions.join(" AND ")
        )
    };
    let candidates = match statuses.as_slice() {
        [] => select(None),
        [one] => select(Some(one)),
        many => format!(
            "{} {order} LIMIT {take}",
            many.iter()
                .map(|s| format!("({})", select(Some(s))))
                .collect::<Vec<_>>()
                .join(" UNION ALL ")
        ),
    };
    let sql = match text {
        None => format!(
            "SELECT {columns}, true AS hit, false AS at_budget FROM ({candidates}) c {order}"
        ),
        // The window counts, in listing order, the rows examined and the matches so far: the
        // statement stops at the page's last match, or returns the last row examined when the
        // scan ends before the page is full.
        Some(text) => format!(
            "SELECT {columns}, hit, scanned = {SEARCH_SCAN_ROWS} AS at_budget FROM (
                 SELECT c.*, row_number() OVER w AS scanned,
                        count(*) FILTER (WHERE hit) OVER w AS hits
                 FROM (SELECT *, strpos({SEARCH_TEXT}, lower({text})) > 0 AS hit
                       FROM ({candidates}) c0) c
                 WINDOW w AS ({order} ROWS UNBOUNDED PRECEDING)) s
             WHERE (hit AND hits <= {limit}) OR scanned = {SEARCH_SCAN_ROWS}
             {order} LIMIT {limit}"
        ),
    };
    Statement {
        sql,
        params: params.0,
    }
}

#[derive(sqlx::FromRow)]
struct Listed {
    #[sqlx(flatten)]
    job: JobSummary,
    hit: bool,
    at_budget: bool,
}

/// One page of the listing; `next` is where the next page starts, `None` after the last one.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub jobs: Vec<JobSummary>,
    pub next: Option<Cursor>,
    /// When a search stopped at [`SEARCH_SCAN_ROWS`] before filling the page: the `created_at`
    /// of the oldest job it examined, so a client can say how far back it has looked.
    pub search_stopped_at: Option<DateTime<Utc>>,
}

pub async fn list(
    conn: &mut PgConnection,
    org_id: Uuid,
    filter: &JobFilter,
) -> Result<Page, DbError> {
    let statement = list_statement(org_id, filter);
    let rows: Vec<Listed> = statement.query_as().fetch_all(conn).await?;
    Ok(page(rows, filter.limit))
}

/// The summaries of the jobs of `org_id` with these ids (those that exist), as the live stream
/// sends them.
pub async fn summaries(
    conn: &mut PgConnection,
    org_id: Uuid,
    ids: &[String],
) -> Result<Vec<JobSummary>, DbError> {
    let sql = concat!(
        "SELECT ",
        summary_columns!(),
        " FROM jobs WHERE org_id = $1 AND id = ANY($2) ORDER BY id"
    );
    Ok(query_as(sql).bind(org_id).bind(ids).fetch_all(conn).await?)
}

fn page(rows: Vec<Listed>, limit: i64) -> Page {
    let cursor = |job: &JobSummary| Cursor {
        created_at: job.created_at,
        id: job.id.clone(),
    };
    let stopped_at = rows.iter().find(|r| r.at_budget).map(|r| cursor(&r.job));
    let mut jobs: Vec<JobSummary> = rows.into_iter().filter(|r| r.hit).map(|r| r.job).collect();
    let limit = usize::try_from(limit).unwrap_or(0);
    if jobs.len() > limit {
        jobs.truncate(limit);
        let next = jobs.last().map(cursor);
        return Page {
            jobs,
            next,
            search_stopped_at: None,
        };
    }
    Page {
        jobs,
        search_stopped_at: stopped_at.as_ref().map(|c| c.created_at),
        next: stopped_at,
    }
}

/// One job, with its payload and result. Parameters: the org, the job's id.
pub const JOB_SQL: &str = concat!(
    "SELECT ",
    summary_columns!(),
    ", payload, result, updated_at FROM jobs WHERE org_id = $1 AND id = $2"
);

/// Every stored event of a job, in the order they happened. Parameters: the org, the job's id
/// and its `created_at`: no event of a job is older than the job (its `created_at` is its
/// earliest event), and the bound lets PostgreSQL skip the daily partitions before it.
pub const TIMELINE_SQL: &str =
    "SELECT event_id, kind, attempt, at, worker_id, machine_id, data, received_at
     FROM job_events WHERE org_id = $1 AND job_id = $2 AND at >= $3 ORDER BY at, event_id";

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Job {
    #[serde(flatten)]
    #[sqlx(flatten)]
    pub summary: JobSummary,
    pub payload: Option<Value>,
    pub result: Option<Value>,
    /// When fleetmon last changed this row.
    pub updated_at: DateTime<Utc>,
    /// Whether `payload` and `result` (here and in the timeline) were withheld from the caller: a
    /// viewer or read token when the org's `payloads_visible_to_viewers` is off.
    #[sqlx(skip)]
    pub payload_hidden: bool,
}

/// One stored event of a job; `data` is the event as received, minus `id` and `at`.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct TimelineEvent {
    pub event_id: Uuid,
    pub kind: String,
    pub attempt: i32,
    pub at: DateTime<Utc>,
    pub worker_id: Option<String>,
    pub machine_id: Option<String>,
    pub data: Value,
    pub received_at: DateTime<Utc>,
}

/// One attempt of a job: the fold of that attempt's events by the same rules as the job's own
/// state, so an attempt's status agrees with the job's while it is current.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Attempt {
    pub attempt: i32,
    pub status: String,
    pub worker_id: Option<String>,
    pub machine_id: Option<String>,
    pub queued_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    pub error: Option<Value>,
}

/// The error of one failed or timed-out attempt.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ChainLink {
    pub attempt: i32,
    /// `failed` or `timeout`.
    pub status: String,
    pub at: Option<DateTime<Utc>>,
    pub worker_id: Option<String>,
    pub machine_id: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub cause: Option<Value>,
    pub will_retry: Option<bool>,
}

/// A job and everything that explains it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct JobDetail {
    pub job: Job,
    /// The worker and machine of the current attempt, as they are now (`null` when unknown or
    /// removed).
    pub worker: Option<Worker>,
    pub machine: Option<Machine>,
    pub attempts: Vec<Attempt>,
    pub timeline: Vec<TimelineEvent>,
    pub error_chain: Vec<ChainLink>,
}

impl JobDetail {
    /// Withholds what the job was given and what it returned, here and in its events.
    pub fn hide_payloads(&mut self) {
        self.job.payload = None;
        self.job.result = None;
        self.job.payload_hidden = true;
        for event in &mut self.timeline {
            if let Some(data) = event.data.as_object_mut() {
                data.remove("payload");
                data.remove("result");
            }
        }
    }
}

/// The job `id` of `org_id` with its history, or `None` when the org has no such job.
pub async fn detail(
    conn: &mut PgConnection,
    org_id: Uuid,
    settings: &OrgSettings,
    id: &str,
) -> Result<Option<JobDetail>, DbError> {
    let job: Option<Job> = query_as(JOB_SQL)
        .bind(org_id)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(job) = job else { return Ok(None) };
    let timeline: Vec<TimelineEvent> = query_as(TIMELINE_SQL)
        .bind(org_id)
        .bind(id)
        .bind(job.summary.created_at)
        .fetch_all(&mut *conn)
        .await?;
    let worker = match &job.summary.worker_id {
        Some(w) => fleet::workers(conn, org_id, settings, &Filter::one(w))
            .await?
            .pop(),
        None => None,
    };
    let machine = match &job.summary.machine_id {
        Some(m) => fleet::machines(conn, org_id, settings, &Filter::one(m))
            .await?
            .pop(),
        None => None,
    };
    let attempts = attempts(&timeline);
    let error_chain = error_chain(&attempts);
    Ok(Some(JobDetail {
        job,
        worker,
        machine,
        attempts,
        timeline,
        error_chain,
    }))
}

/// The attempts of a job, in order, from its events.
pub fn attempts(timeline: &[TimelineEvent]) -> Vec<Attempt> {
    let mut by_attempt: BTreeMap<i32, Vec<JobEvent>> = BTreeMap::new();
    for event in timeline {
        // Stored data is always an event body; one that is not is left out of the fold.
        let Ok(body) = serde_json::from_value::<EventBody>(event.data.clone()) else {
            continue;
        };
        if body.job().is_some() {
            by_attempt.entry(event.attempt).or_default().push(JobEvent {
                event_id: event.event_id,
                at: event.at,
                body,
            });
        }
    }
    by_attempt
        .into_iter()
        .filter_map(|(attempt, mut events)| {
            let row = JobRow::fold(None, &mut events)?;
            Some(Attempt {
                attempt,
                status: row.status,
                worker_id: row.worker_id,
                machine_id: row.machine_id,
                queued_at: row.queued_at,
                started_at: row.started_at,
                finished_at: row.finished_at,
                duration_ms: row.duration_ms,
                error: row.error,
            })
        })
        .collect()
}

/// The errors of the failed and timed-out attempts, oldest first.
pub fn error_chain(attempts: &[Attempt]) -> Vec<ChainLink> {
    attempts
        .iter()
        .filter(|a| matches!(a.status.as_str(), "failed" | "timeout"))
        .map(|a| {
            let error = a.error.as_ref().unwrap_or(&Value::Null);
            let text = |key: &str| error.get(key).and_then(Value::as_str).map(str::to_string);
            ChainLink {
                attempt: a.attempt,
                status: a.status.clone(),
                at: a.finished_at,
                worker_id: a.worker_id.clone(),
                machine_id: a.machine_id.clone(),
                kind: text("type"),
                reason: text("reason"),
                message: text("message"),
                cause: error.get("cause").cloned(),
                will_retry: error.get("will_retry").and_then(Value::as_bool),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let cursor = Cursor {
            created_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            id: "job:1/ä".into(),
        };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        for bad in ["", "not base64!", "bm9wZQ", "WzEsMiwzXQ"] {
            assert_eq!(Cursor::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn parameters_follow_the_documented_order() {
        let at = DateTime::from_timestamp_micros(1_000_000).unwrap();
        let org = Uuid::nil();
        let filter = JobFilter {
            statuses: vec!["failed".into(), "timeout".into()],
            worker: Some("w1".into()),
            until: Some(at),
            after: Some(Cursor {
                created_at: at,
                id: "j9".into(),
            }),
            text: Some("oom".into()),
            limit: 20,
            ..JobFilter::default()
        };
        let statement = list_statement(org, &filter);
        assert_eq!(
            statement.params,
            [
                Param::Uuid(org),
                Param::Text("failed".into()),
                Param::Text("timeout".into()),
                Param::Text("w1".into()),
                Param::Time(at),
                Param::Time(at),
                Param::Text("j9".into()),
                Param::Text("oom".into()),
                Param::Int(21),
            ]
        );
        assert!(statement.sql.contains("status = $2") && statement.sql.contains("status = $3"));
        assert!(statement.sql.contains("(created_at, id) < ($6, $7)"));
        assert!(statement.sql.contains("lower($8)") && statement.sql.ends_with("LIMIT $9"));
    }
}
