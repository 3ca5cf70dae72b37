//! Retention: each org keeps `retention_days` of history, and of jobs.
//!
//! A run, on one replica at a time:
//! 1. creates the coming days' history partitions (`db::partitions`);
//! 2. drops whole daily partitions of `job_events`, `fleet_events` and `metric_samples` that every
//!    org's retention has passed (cheap, and leaves nothing bloated);
//! 3. for orgs that keep less than the longest retention, deletes their older history rows in
//!    bounded batches, one short transaction each, so no lock is held for long;
//! 4. deletes the `jobs` rows whose whole state is older than the org's cutoff (created and last
//!    changed before it), so a job leaves the lists when its history does;
//! 5. records what it removed in the audit log of each org it removed rows from.
//!
//! "One replica at a time" is a transaction-scoped advisory lock (`pg_try_advisory_xact_lock`),
//! held by a transaction that stays open for the run: it works through transaction-mode poolers,
//! where a session lock would not. A replica that finds it taken skips the run.

use std::collections::BTreeMap;

use chrono::{DateTime, Days, NaiveDate, NaiveTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::db::sql::{query, query_as, query_scalar};
use crate::db::{partitions, DbError, SystemDb, TenantContext, TenantDb};
use crate::orgs::audit;
use crate::orgs::settings::OrgSettings;

/// The advisory lock a run holds: `pg_try_advisory_xact_lock(hashtext(LOCK_NAME))`.
pub const LOCK_NAME: &str = "fleetmon.retention";

/// Rows deleted per statement (and per transaction) unless configured otherwise.
pub const DEFAULT_BATCH_SIZE: u32 = 5000;

/// The partitioned history tables and the columns of their primary keys.
const HISTORY: [(&str, &str); 3] = [
    ("job_events", "org_id, event_id, at"),
    ("fleet_events", "org_id, event_id, at"),
    ("metric_samples", "org_id, series_id, at"),
];

/// How long dropping a partition may wait for its lock. `DROP` locks the parent table
/// exclusively, and every insert queues behind a waiting `DROP`: better to give up and try again
/// next run than to stall ingest behind a long query.
const DROP_LOCK_TIMEOUT: &str = "2s";

#[derive(Debug)]
pub enum Outcome {
    /// Another replica holds the lock: it is running retention right now.
    Skipped,
    Completed(Report),
}

/// What one run did.
#[derive(Debug, Default)]
pub struct Report {
    pub partitions_created: i32,
    pub partitions_dropped: Vec<String>,
    /// Orgs rows were removed from, with what was removed.
    pub orgs: Vec<OrgReport>,
}

/// What a run removed from one org: the audit entry's details.
#[derive(Debug, Clone, Serialize)]
pub struct OrgReport {
    #[serde(skip)]
    pub org_id: Uuid,
    pub retention_days: u32,
    /// Rows older than this were removed.
    pub cutoff: DateTime<Utc>,
    /// Rows removed, by table (dropped partitions included).
    pub deleted: BTreeMap<&'static str, u64>,
    /// Dropped partitions that held rows of this org.
    pub partitions_dropped: Vec<String>,
}

impl OrgReport {
    pub fn total(&self) -> u64 {
        self.deleted.values().sum()
    }
}

/// Runs retention once, as of `now`, deleting at most `batch_size` rows per transaction.
pub async fn run(
    system: &SystemDb,
    tenant: &TenantDb,
    batch_size: u32,
    now: DateTime<Utc>,
) -> Result<Outcome, DbError> {
    let outcome = run_locked(system, tenant, batch_size.max(1), now).await;
    crate::instruments::retention_run(match &outcome {
        Ok(Outcome::Completed(_)) => "completed",
        Ok(Outcome::Skipped) => "skipped",
        Err(_) => "failed",
    });
    outcome
}

async fn run_locked(
    system: &SystemDb,
    tenant: &TenantDb,
    batch_size: u32,
    now: DateTime<Utc>,
) -> Result<Outcome, DbError> {
    // Held until this transaction ends: on return, or on error when it is dropped.
    let mut lock = system.begin().await?;
    let locked: bool = query_scalar("SELECT pg_try_advisory_xact_lock(hashtext($1))")
        .bind(LOCK_NAME)
        .fetch_one(lock.conn())
        .await?;
    if !locked {
        return Ok(Outcome::Skipped);
    }
    // The lock's transaction sits idle while the work runs on other connections: a server-side
    // idle timeout must not end it (and free the lock) halfway.
    query("SET LOCAL idle_in_transaction_session_timeout = 0")
        .execute(lock.conn())
        .await?;
    let mut report = Report {
        partitions_created: partitions::ensure_around_today(system).await?,
        ..Report::default()
    };
    let orgs: Vec<(Uuid, serde_json::Value)> =
        query_as("SELECT id, settings FROM organizations ORDER BY id")
            .fetch_all(lock.conn())
            .await?;
    let mut reports: Vec<OrgReport> = orgs
        .into_iter()
        .map(|(org_id, settings)| {
            let retention_days = OrgSettings::from_stored(&settings).retention_days;
            OrgReport {
                org_id,
                retention_days,
                cutoff: now - chrono::Duration::days(retention_days.into()),
                deleted: BTreeMap::new(),
                partitions_dropped: Vec::new(),
            }
        })
        .collect();
    let boundary = drop_boundary(&reports, now);
    let partitions = history_partitions(&mut lock).await?;
    for (table, _) in HISTORY {
        let droppable: Vec<(&str, NaiveDate)> = partitions
            .iter()
            .filter(|(_, parent, day)| {
                *parent == table && midnight(*day + Days::new(1)) <= boundary
            })
            .map(|(partition, _, day)| (partition.as_str(), *day))
            .collect();
        if droppable.is_empty() {
            continue;
        }
        let counts = count_by_day(tenant, &reports, table, boundary).await?;
        for (partition, day) in droppable {
            if !drop_partition(system, partition).await? {
                continue;
            }
            report.partitions_dropped.push(partition.to_string());
            for (org, counts) in reports.iter_mut().zip(&counts) {
                let rows = counts.get(&day).copied().unwrap_or(0);
                if rows > 0 {
                    org.partitions_dropped.push(partition.to_string());
                    record(org, table, rows);
                }
            }
        }
    }
    for org in &mut reports {
        delete_expired(tenant, org, boundary, batch_size).await?;
        if org.total() > 0 {
            let mut tx = tenant.begin(TenantContext::org(org.org_id)).await?;
            let details = serde_json::to_value(&*org).expect("a report serializes");
            audit::record(
                tx.conn(),
                org.org_id,
                "system",
                "retention.run",
                None,
                details,
            )
            .await?;
            tx.commit().await?;
        }
    }
    lock.commit().await?;
    report.orgs = reports.into_iter().filter(|org| org.total() > 0).collect();
    Ok(Outcome::Completed(report))
}

/// History before this instant is removed by dropping partitions, not row by row: the start of
/// the UTC day that the longest retention reaches back to, but never within the days kept ready
/// for ingest (`partitions::DAYS_BEHIND`), which would only be created again.
fn drop_boundary(orgs: &[OrgReport], now: DateTime<Utc>) -> DateTime<Utc> {
    let longest = orgs
        .iter()
        .map(|org| org.retention_days)
        .max()
        .unwrap_or(OrgSettings::default().retention_days);
    let oldest_kept = (now - chrono::Duration::days(longest.into())).date_naive();
    let ready = now.date_naive() - Days::new(partitions::DAYS_BEHIND);
    midnight(oldest_kept.min(ready))
}

fn midnight(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(NaiveTime::MIN).and_utc()
}

/// Every daily partition of the history tables, by the names `fleetmon_ensure_partitions` gives
/// them (`job_events_p20260101`); anything else attached by hand is left alone.
async fn history_partitions(
    lock: &mut crate::db::SystemTx,
) -> Result<Vec<(String, &'static str, NaiveDate)>, DbError> {
    let rows: Vec<(String, String)> = query_as(
        "SELECT c.relname::text, p.relname::text
         FROM pg_inherits i
         JOIN pg_class c ON c.oid = i.inhrelid
         JOIN pg_class p ON p.oid = i.inhparent
         WHERE i.inhparent IN (SELECT to_regclass(t) FROM unnest($1::text[]) AS t)
         ORDER BY 1",
    )
    .bind(HISTORY.map(|(table, _)| table).to_vec())
    .fetch_all(lock.conn())
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(partition, parent)| {
            let table = HISTORY.iter().find(|(t, _)| *t == parent)?.0;
            let suffix = partition.strip_prefix(&format!("{table}_p"))?;
            let day = NaiveDate::parse_from_str(suffix, "%Y%m%d").ok()?;
            Some((partition, table, day))
        })
        .collect())
}

/// Each org's rows of `table` before `boundary`, by UTC day: what dropping those days' partitions
/// removes, for the audit entries. Counted as each org, under row-level security, like every
/// read of tenant rows; nothing writes to days this old (ingest refuses events older than six
/// days).
async fn count_by_day(
    tenant: &TenantDb,
    orgs: &[OrgReport],
    table: &str,
    boundary: DateTime<Utc>,
) -> Result<Vec<BTreeMap<NaiveDate, u64>>, DbError> {
    let sql = format!(
        "SELECT (at AT TIME ZONE 'UTC')::date, count(*) FROM {table}
         WHERE org_id = $1 AND at < $2 GROUP BY 1"
    );
    let mut counts = Vec::with_capacity(orgs.len());
    for org in orgs {
        let mut tx = tenant.begin(TenantContext::org(org.org_id)).await?;
        let days: Vec<(NaiveDate, i64)> = query_as(&sql)
            .bind(org.org_id)
            .bind(boundary)
            .fetch_all(tx.conn())
            .await?;
        tx.commit().await?;
        counts.push(
            days.into_iter()
                .map(|(day, rows)| (day, rows.unsigned_abs()))
                .collect(),
        );
    }
    Ok(counts)
}

/// Drops one partition; `false` when its table was too busy to lock in time (it is dropped by a
/// later run).
async fn drop_partition(system: &SystemDb, partition: &str) -> Result<bool, DbError> {
    let mut tx = system.begin().await?;
    query(&format!("SET LOCAL lock_timeout = '{DROP_LOCK_TIMEOUT}'"))
        .execute(tx.conn())
        .await?;
    // The name comes from the catalog and matched `<table>_pYYYYMMDD`: safe to quote as is.
    let dropped = query(&format!("DROP TABLE \"{partition}\""))
        .execute(tx.conn())
        .await;
    match dropped {
        Ok(_) => {}
        Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("55P03") => {
            tracing::warn!(%partition, "retention could not lock a partition in time; dropping it next run");
            return Ok(false);
        }
        Err(error) => return Err(error.into()),
    }
    tx.commit().await?;
    crate::instruments::retention_partition_dropped();
    Ok(true)
}

/// Deletes `org`'s history from `boundary` (everything before went with the partitions) up to its
/// cutoff, and its jobs whose state is older than the cutoff, `batch_size` rows per transaction.
async fn delete_expired(
    tenant: &TenantDb,
    org: &mut OrgReport,
    boundary: DateTime<Utc>,
    batch_size: u32,
) -> Result<(), DbError> {
    let limit = i64::from(batch_size);
    if org.cutoff > boundary {
        for (table, key) in HISTORY {
            // The outer range lets the planner prune partitions; the inner one picks the batch.
            let sql = format!(
                "DELETE FROM {table} WHERE org_id = $1 AND at >= $2 AND at < $3
                   AND ({key}) IN (SELECT {key} FROM {table}
                                   WHERE org_id = $1 AND at >= $2 AND at < $3 LIMIT $4)"
            );
            let rows =
                delete_in_batches(tenant, org.org_id, &sql, &[boundary, org.cutoff], limit).await?;
            record(org, table, rows);
        }
    }
    // `created_at` is a job's first submission and `state_at` the time of the event its status
    // comes from; the newest-first index on `created_at` finds the candidates.
    let sql = "DELETE FROM jobs WHERE org_id = $1 AND id IN (
                 SELECT id FROM jobs WHERE org_id = $1 AND created_at < $2 AND state_at < $2
                 LIMIT $3)";
    let rows = delete_in_batches(tenant, org.org_id, sql, &[org.cutoff], limit).await?;
    record(org, "jobs", rows);
    Ok(())
}

fn record(org: &mut OrgReport, table: &'static str, rows: u64) {
    if rows > 0 {
        *org.deleted.entry(table).or_default() += rows;
        crate::instruments::retention_rows(table, rows);
    }
}

/// Runs `sql` (bound to the org, `times` and `limit`, in that order) in transactions of its own
/// in the org's context until a batch removes fewer than `limit` rows; returns how many it
/// removed.
async fn delete_in_batches(
    tenant: &TenantDb,
    org_id: Uuid,
    sql: &str,
    times: &[DateTime<Utc>],
    limit: i64,
) -> Result<u64, DbError> {
    let mut total = 0;
    loop {
        let mut tx = tenant.begin(TenantContext::org(org_id)).await?;
        let statement = times
            .iter()
            .fold(query(sql).bind(org_id), |statement, time| {
                statement.bind(*time)
            });
        let rows = statement
            .bind(limit)
            .execute(tx.conn())
            .await?
            .rows_affected();
        tx.commit().await?;
        total += rows;
        if rows < limit.unsigned_abs() {
            return Ok(total);
        }
    }
}
