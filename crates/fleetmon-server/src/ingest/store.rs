//! Writing a batch: history first (idempotent by event id), then the state derived from the
//! events that were new — all in the caller's tenant transaction, so an acknowledged event is
//! never lost and state never disagrees with history. Every write is one statement over arrays.
//! Last, the ids of the changed rows are announced to live streams, on commit only.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use fleetmon_proto::ingest::{Event, EventBody};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::PgConnection;
use uuid::Uuid;

use super::fleet::FleetPatches;
use super::jobs::{JobEvent, JobRow};
use super::series::{Learned, SeriesCache, SeriesKey};
use crate::db::sql::{query, query_as, query_scalar};
use crate::db::DbError;
use crate::live::changes::{self, Changes};

/// How many events of a batch were new, and the metric series ids to remember after commit.
#[derive(Debug, Default)]
pub struct Stored {
    pub accepted: u32,
    pub duplicates: u32,
    pub series: Learned,
}

/// The machine or worker an event is about, for the history row.
fn fleet_ids(body: &EventBody) -> (Option<&str>, Option<&str>) {
    match body {
        EventBody::MachineHeartbeat(e) => (Some(&e.machine_id), None),
        EventBody::MachineStatus(e) => (Some(&e.machine_id), None),
        EventBody::MachineShutdown(e) => (Some(&e.machine_id), None),
        EventBody::WorkerHeartbeat(e) => (Some(&e.machine_id), Some(&e.worker_id)),
        EventBody::WorkerStatus(e) => (e.machine_id.as_deref(), Some(&e.worker_id)),
        EventBody::Metrics(e) => (Some(&e.machine_id), e.worker_id.as_deref()),
        _ => (None, None),
    }
}

/// Stores `events` for `org_id`. Events of the batch that repeat an earlier id (in this batch or
/// before) are duplicates and change nothing.
pub async fn store(
    conn: &mut PgConnection,
    org_id: Uuid,
    series: &SeriesCache,
    events: &[Event],
) -> Result<Stored, DbError> {
    let mut seen = HashSet::new();
    let unique: Vec<&Event> = events.iter().filter(|e| seen.insert(e.id)).collect();
    let (job_events, fleet_events): (Vec<&Event>, Vec<&Event>) =
        unique.into_iter().partition(|e| e.body.job().is_some());

    let new_job_ids = insert_job_events(conn, org_id, &job_events).await?;
    let new_fleet_ids = insert_fleet_events(conn, org_id, &fleet_events).await?;
    let accepted = (new_job_ids.len() + new_fleet_ids.len()) as u32;

    let mut patches = FleetPatches::default();
    let new_jobs: Vec<JobEvent> = job_events
        .iter()
        .filter(|e| new_job_ids.contains(&e.id))
        .map(|e| JobEvent {
            event_id: e.id,
            at: e.at,
            body: e.body.clone(),
        })
        .collect();
    let mut changed = Changes {
        jobs: new_jobs
            .iter()
            .map(|e| e.job_ref().job_id.clone())
            .collect(),
        ..Changes::default()
    };
    project_jobs(conn, org_id, new_jobs, &mut patches).await?;

    let mut samples = Vec::new();
    for event in fleet_events
        .iter()
        .filter(|e| new_fleet_ids.contains(&e.id))
    {
        patches.add(event.id, event.at, &event.body);
        if let EventBody::Metrics(m) = &event.body {
            samples.push((event.at, m));
        }
    }
    upsert_machines(conn, org_id, &patches).await?;
    upsert_workers(conn, org_id, &patches).await?;
    let series = insert_samples(conn, org_id, series, &samples).await?;
    changed.machines = patches.machines.keys().cloned().collect();
    changed.workers = patches.workers.keys().cloned().collect();
    changes::publish(conn, org_id, &changed).await?;

    Ok(Stored {
        accepted,
        duplicates: events.len() as u32 - accepted,
        series,
    })
}

async fn insert_job_events(
    conn: &mut PgConnection,
    org_id: Uuid,
    events: &[&Event],
) -> Result<HashSet<Uuid>, DbError> {
    if events.is_empty() {
        return Ok(HashSet::new());
    }
    let mut ids = Vec::new();
    let mut job_ids = Vec::new();
    let mut kinds = Vec::new();
    let mut attempts = Vec::new();
    let mut ats = Vec::new();
    let mut workers = Vec::new();
    let mut machines = Vec::new();
    let mut data = Vec::new();
    for event in events {
        let job = event.body.job().expect("job event");
        ids.push(event.id);
        job_ids.push(job.job_id.clone());
        kinds.push(event.body.kind());
        attempts.push(job.attempt as i32);
        ats.push(event.at);
        workers.push(job.worker_id.clone());
        machines.push(job.machine_id.clone());
        data.push(Json(
            serde_json::to_value(&event.body).unwrap_or(Value::Null),
        ));
    }
    let inserted: Vec<Uuid> = query_scalar(
        "INSERT INTO job_events (org_id, event_id, job_id, kind, attempt, at, worker_id, machine_id, data)
         SELECT $1, * FROM unnest($2::uuid[], $3::text[], $4::text[], $5::int4[], $6::timestamptz[],
                                  $7::text[], $8::text[], $9::jsonb[])
         ON CONFLICT DO NOTHING
         RETURNING event_id",
    )
    .bind(org_id)
    .bind(ids)
    .bind(job_ids)
    .bind(kinds)
    .bind(attempts)
    .bind(ats)
    .bind(workers)
    .bind(machines)
    .bind(data)
    .fetch_all(conn)
    .await?;
    Ok(inserted.into_iter().collect())
}

async fn insert_fleet_events(
    conn: &mut PgConnection,
    org_id: Uuid,
    events: &[&Event],
) -> Result<HashSet<Uuid>, DbError> {
    if events.is_empty() {
        return Ok(HashSet::new());
    }
    let mut ids = Vec::new();
    let mut kinds = Vec::new();
    let mut ats = Vec::new();
    let mut machines = Vec::new();
    let mut workers = Vec::new();
    let mut data = Vec::new();
    for event in events {
        let (machine, worker) = fleet_ids(&event.body);
        ids.push(event.id);
        kinds.push(event.body.kind());
        ats.push(event.at);
        machines.push(machine.map(str::to_string));
        workers.push(worker.map(str::to_string));
        // Samples live in metric_samples; the history row only records that the event came.
        let body = match &event.body {
            EventBody::Metrics(m) => {
                serde_json::json!({"type": "metrics", "samples": m.samples.len()})
            }
            other => serde_json::to_value(other).unwrap_or(Value::Null),
        };
        data.push(Json(body));
    }
    let inserted: Vec<Uuid> = query_scalar(
        "INSERT INTO fleet_events (org_id, event_id, kind, at, machine_id, worker_id, data)
         SELECT $1, * FROM unnest($2::uuid[], $3::text[], $4::timestamptz[], $5::text[], $6::text[], $7::jsonb[])
         ON CONFLICT DO NOTHING
         RETURNING event_id",
    )
    .bind(org_id)
    .bind(ids)
    .bind(kinds)
    .bind(ats)
    .bind(machines)
    .bind(workers)
    .bind(data)
    .fetch_all(conn)
    .await?;
    Ok(inserted.into_iter().collect())
}

const JOB_COLUMNS: &str =
    "id, workflow_id, name, job_type, status, priority, attempt, max_retries, \
     progress, progress_message, worker_id, machine_id, customer_id, created_at, queued_at, \
     assigned_at, started_at, finished_at, duration_ms, error, result, payload, state_rank, \
     state_at, state_event_id";

async fn load_jobs(
    conn: &mut PgConnection,
    org_id: Uuid,
    ids: &[String],
) -> Result<BTreeMap<String, JobRow>, DbError> {
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE org_id = $1 AND id = ANY($2) ORDER BY id FOR UPDATE"
    );
    let rows: Vec<JobRow> = query_as(&sql)
        .bind(org_id)
        .bind(ids)
        .fetch_all(conn)
        .await?;
    Ok(rows.into_iter().map(|r| (r.id.clone(), r)).collect())
}

/// Every stored event of these jobs (this transaction's included), by job.
async fn load_history(
    conn: &mut PgConnection,
    org_id: Uuid,
    ids: &[String],
) -> Result<BTreeMap<String, Vec<JobEvent>>, DbError> {
    let rows: Vec<(String, Uuid, DateTime<Utc>, Json<EventBody>)> = query_as(
        "SELECT job_id, event_id, at, data FROM job_events WHERE org_id = $1 AND job_id = ANY($2)",
    )
    .bind(org_id)
    .bind(ids)
    .fetch_all(conn)
    .await?;
    let mut history: BTreeMap<String, Vec<JobEvent>> = BTreeMap::new();
    for (job_id, event_id, at, Json(body)) in rows {
        history
            .entry(job_id)
            .or_default()
            .push(JobEvent { event_id, at, body });
    }
    Ok(history)
}

async fn project_jobs(
    conn: &mut PgConnection,
    org_id: Uuid,
    events: Vec<JobEvent>,
    patches: &mut FleetPatches,
) -> Result<(), DbError> {
    if events.is_empty() {
        return Ok(());
    }
    let mut by_job: BTreeMap<String, Vec<JobEvent>> = BTreeMap::new();
    for event in events {
        by_job
            .entry(event.job_ref().job_id.clone())
            .or_default()
            .push(event);
    }
    let ids: Vec<String> = by_job.keys().cloned().collect();
    let existing = load_jobs(conn, org_id, &ids).await?;

    let mut updates = Vec::new();
    let mut inserts = Vec::new();
    let mut refold = Vec::new();
    let mut before: BTreeMap<String, JobRow> = BTreeMap::new();
    for (id, mut new_events) in by_job {
        match existing.get(&id) {
            None => inserts.extend(JobRow::fold(None, &mut new_events)),
            Some(row) if new_events.iter().all(|e| e.key() > row.key()) => {
                before.insert(id, row.clone());
                updates.extend(JobRow::fold(Some(row.clone()), &mut new_events));
            }
            Some(row) => {
                before.insert(id.clone(), row.clone());
                refold.push(id);
            }
        }
    }

    // New jobs; one that another batch created meanwhile is refolded from the full history.
    let created = insert_jobs(conn, org_id, &inserts).await?;
    let raced: Vec<String> = inserts
        .iter()
        .filter(|r| !created.contains(&r.id))
        .map(|r| r.id.clone())
        .collect();
    if !raced.is_empty() {
        before.extend(load_jobs(conn, org_id, &raced).await?);
        refold.extend(raced);
    }
    if !refold.is_empty() {
        for (_, mut history) in load_history(conn, org_id, &refold).await? {
            updates.extend(JobRow::fold(None, &mut history));
        }
    }
    update_jobs(conn, org_id, &updates).await?;

    for row in inserts
        .iter()
        .filter(|r| created.contains(&r.id))
        .chain(updates.iter())
    {
        if let Some(old) = before.get(&row.id) {
            if let Some(worker) = &old.worker_id {
                let (c, f) = old.counts();
                patches.count(worker, -c, -f);
            }
        }
        if let Some(worker) = &row.worker_id {
            let (c, f) = row.counts();
            patches.count(worker, c, f);
        }
    }
    Ok(())
}

/// The columns of `rows` as arrays, bound after `org_id` in `JOB_COLUMNS` order.
fn bind_jobs<'q>(
    sql: &'q str,
    org_id: Uuid,
    rows: &[JobRow],
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let col = |f: fn(&JobRow) -> Option<String>| rows.iter().map(f).collect::<Vec<_>>();
    let json = |f: fn(&JobRow) -> &Option<Value>| {
        rows.iter()
            .map(|r| f(r).clone().map(Json))
            .collect::<Vec<_>>()
    };
    query(sql)
        .bind(org_id)
        .bind(rows.iter().map(|r| r.id.clone()).collect::<Vec<_>>())
        .bind(col(|r| r.workflow_id.clone()))
        .bind(col(|r| r.name.clone()))
        .bind(col(|r| r.job_type.clone()))
        .bind(rows.iter().map(|r| r.status.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.priority).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.attempt).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.max_retries).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.progress).collect::<Vec<_>>())
        .bind(col(|r| r.progress_message.clone()))
        .bind(col(|r| r.worker_id.clone()))
        .bind(col(|r| r.machine_id.clone()))
        .bind(col(|r| r.customer_id.clone()))
        .bind(rows.iter().map(|r| r.created_at).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.queued_at).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.assigned_at).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.started_at).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.finished_at).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.duration_ms).collect::<Vec<_>>())
        .bind(json(|r| &r.error))
        .bind(json(|r| &r.result))
        .bind(json(|r| &r.payload))
        .bind(rows.iter().map(|r| r.state_rank).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.state_at).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.state_event_id).collect::<Vec<_>>())
}

const JOB_ARRAYS: &str =
    "unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int4[], \
     $8::int4[], $9::int4[], $10::float4[], $11::text[], $12::text[], $13::text[], $14::text[], \
     $15::timestamptz[], $16::timestamptz[], $17::timestamptz[], $18::timestamptz[], \
     $19::timestamptz[], $20::int8[], $21::jsonb[], $22::jsonb[], $23::jsonb[], $24::int2[], \
     $25::timestamptz[], $26::uuid[])";

async fn insert_jobs(
    conn: &mut PgConnection,
    org_id: Uuid,
    rows: &[JobRow],
) -> Result<HashSet<String>, DbError> {
    if rows.is_empty() {
        return Ok(HashSet::new());
    }
    let sql = format!(
        "INSERT INTO jobs (org_id, {JOB_COLUMNS}) SELECT $1, * FROM {JOB_ARRAYS}
         ON CONFLICT (org_id, id) DO NOTHING RETURNING id"
    );
    let done = bind_jobs(&sql, org_id, rows).fetch_all(&mut *conn).await?;
    Ok(done
        .iter()
        .map(|row| sqlx::Row::get::<String, _>(row, 0))
        .collect())
}

async fn update_jobs(
    conn: &mut PgConnection,
    org_id: Uuid,
    rows: &[JobRow],
) -> Result<(), DbError> {
    if rows.is_empty() {
        return Ok(());
    }
    // The rows exist and are locked by this transaction. An upsert finds each through the
    // primary key whatever the planner thinks of the table's size (an UPDATE … FROM unnest may
    // be planned as a hash join over the whole table).
    let assignments: Vec<String> = JOB_COLUMNS
        .split(", ")
        .filter(|c| *c != "id")
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    let sql = format!(
        "INSERT INTO jobs (org_id, {JOB_COLUMNS}) SELECT $1, * FROM {JOB_ARRAYS}
         ON CONFLICT (org_id, id) DO UPDATE SET {}, updated_at = now()",
        assignments.join(", ")
    );
    bind_jobs(&sql, org_id, rows).execute(conn).await?;
    Ok(())
}

async fn upsert_machines(
    conn: &mut PgConnection,
    org_id: Uuid,
    patches: &FleetPatches,
) -> Result<(), DbError> {
    if patches.machines.is_empty() {
        return Ok(());
    }
    let machines = &patches.machines;
    let inv = |f: fn(&super::fleet::MachineInventory) -> Option<Value>| {
        machines
            .values()
            .map(|p| p.inventory.as_ref().and_then(f).map(Json))
            .collect::<Vec<_>>()
    };
    query(
        "INSERT INTO machines AS m (org_id, id, reported_status, shutdown_at, last_event_at, last_event_id,
                                    last_seen_at, inventory_at, inventory_event_id, hostname, host, gpus,
                                    labels, uptime_s, started_at)
         SELECT $1, u.id, u.status, u.shutdown_at, u.event_at, u.event_id, u.seen_at, u.inv_at, u.inv_id,
                u.hostname, coalesce(u.host, '{}'), coalesce(u.gpus, '[]'), coalesce(u.labels, '{}'),
                u.uptime_s, u.started_at
         FROM unnest($2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::uuid[],
                     $7::timestamptz[], $8::timestamptz[], $9::uuid[], $10::text[], $11::jsonb[],
                     $12::jsonb[], $13::jsonb[], $14::int8[], $15::timestamptz[])
              AS u(id, status, shutdown_at, event_at, event_id, seen_at, inv_at, inv_id, hostname, host,
                   gpus, labels, uptime_s, started_at)
         ON CONFLICT (org_id, id) DO UPDATE SET
           reported_status = CASE WHEN (excluded.last_event_at, excluded.last_event_id) > (m.last_event_at, m.last_event_id)
                                  THEN excluded.reported_status ELSE m.reported_status END,
           shutdown_at     = CASE WHEN (excluded.last_event_at, excluded.last_event_id) > (m.last_event_at, m.last_event_id)
                                  THEN excluded.shutdown_at ELSE m.shutdown_at END,
           (last_event_at, last_event_id) =
               (SELECT a, b FROM (VALUES (m.last_event_at, m.last_event_id),
                                         (excluded.last_event_at, excluded.last_event_id)) v(a, b)
                ORDER BY a DESC, b DESC LIMIT 1),
           last_seen_at = greatest(m.last_seen_at, excluded.last_seen_at),
           (inventory_at, inventory_event_id, hostname, host, gpus, labels, uptime_s, started_at) =
               (SELECT * FROM (VALUES
                   (m.inventory_at, m.inventory_event_id, m.hostname, m.host, m.gpus, m.labels, m.uptime_s, m.started_at),
                   (excluded.inventory_at, excluded.inventory_event_id, excluded.hostname, excluded.host,
                    excluded.gpus, excluded.labels, excluded.uptime_s, excluded.started_at)) v
                ORDER BY 1 DESC NULLS LAST, 2 DESC NULLS LAST LIMIT 1),
           updated_at = now()",
    )
    .bind(org_id)
    .bind(machines.keys().cloned().collect::<Vec<_>>())
    .bind(machines.values().map(|p| p.reported_status).collect::<Vec<_>>())
    .bind(machines.values().map(|p| p.shutdown_at).collect::<Vec<_>>())
    .bind(machines.values().map(|p| p.status_key.0).collect::<Vec<_>>())
    .bind(machines.values().map(|p| p.status_key.1).collect::<Vec<_>>())
    .bind(machines.values().map(|p| p.last_seen_at).collect::<Vec<_>>())
    .bind(machines.values().map(|p| p.inventory.as_ref().map(|i| i.key.0)).collect::<Vec<_>>())
    .bind(machines.values().map(|p| p.inventory.as_ref().map(|i| i.key.1)).collect::<Vec<_>>())
    .bind(machines.values().map(|p| p.inventory.as_ref().and_then(|i| i.hostname.clone())).collect::<Vec<_>>())
    .bind(inv(|i| Some(i.host.clone())))
    .bind(inv(|i| Some(i.gpus.clone())))
    .bind(inv(|i| Some(i.labels.clone())))
    .bind(machines.values().map(|p| p.inventory.as_ref().and_then(|i| i.uptime_s)).collect::<Vec<_>>())
    .bind(machines.values().map(|p| p.inventory.as_ref().and_then(|i| i.started_at)).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

async fn upsert_workers(
    conn: &mut PgConnection,
    org_id: Uuid,
    patches: &FleetPatches,
) -> Result<(), DbError> {
    if patches.workers.is_empty() {
        return Ok(());
    }
    let workers = &patches.workers;
    let inv = |f: fn(&super::fleet::WorkerInventory) -> Option<Value>| {
        workers
            .values()
            .map(|p| p.inventory.as_ref().and_then(f).map(Json))
            .collect::<Vec<_>>()
    };
    query(
        "INSERT INTO workers AS w (org_id, id, status, last_event_at, last_event_id, connected_at, last_seen_at,
                                   inventory_at, inventory_event_id, machine_id, current_job_id, capabilities,
                                   services, version, jobs_completed, jobs_failed)
         SELECT $1, u.id, u.status, coalesce(u.event_at, '-infinity'), coalesce(u.event_id, '00000000-0000-0000-0000-000000000000'),
                u.first_seen, coalesce(u.last_seen, '-infinity'), u.inv_at, u.inv_id, u.machine_id,
                u.current_job_id, coalesce(u.capabilities, '{}'), coalesce(u.services, '{}'), u.version,
                u.completed, u.failed
         FROM unnest($2::text[], $3::text[], $4::timestamptz[], $5::uuid[], $6::timestamptz[], $7::timestamptz[],
                     $8::timestamptz[], $9::uuid[], $10::text[], $11::text[], $12::jsonb[], $13::jsonb[],
                     $14::text[], $15::int8[], $16::int8[])
              AS u(id, status, event_at, event_id, first_seen, last_seen, inv_at, inv_id, machine_id,
                   current_job_id, capabilities, services, version, completed, failed)
         ON CONFLICT (org_id, id) DO UPDATE SET
           status = CASE WHEN (excluded.last_event_at, excluded.last_event_id) > (w.last_event_at, w.last_event_id)
                         THEN excluded.status ELSE w.status END,
           (last_event_at, last_event_id) =
               (SELECT a, b FROM (VALUES (w.last_event_at, w.last_event_id),
                                         (excluded.last_event_at, excluded.last_event_id)) v(a, b)
                ORDER BY a DESC, b DESC LIMIT 1),
           connected_at = least(w.connected_at, excluded.connected_at),
           last_seen_at = greatest(w.last_seen_at, excluded.last_seen_at),
           (inventory_at, inventory_event_id, machine_id, current_job_id, capabilities, services, version) =
               (SELECT * FROM (VALUES
                   (w.inventory_at, w.inventory_event_id, w.machine_id, w.current_job_id, w.capabilities, w.services, w.version),
                   (excluded.inventory_at, excluded.inventory_event_id, excluded.machine_id, excluded.current_job_id,
                    excluded.capabilities, excluded.services, excluded.version)) v
                ORDER BY 1 DESC NULLS LAST, 2 DESC NULLS LAST LIMIT 1),
           jobs_completed = w.jobs_completed + excluded.jobs_completed,
           jobs_failed = w.jobs_failed + excluded.jobs_failed,
           updated_at = now()",
    )
    .bind(org_id)
    .bind(workers.keys().cloned().collect::<Vec<_>>())
    .bind(workers.values().map(|p| p.status.map(|(_, s)| s)).collect::<Vec<_>>())
    .bind(workers.values().map(|p| p.status.map(|((at, _), _)| at)).collect::<Vec<_>>())
    .bind(workers.values().map(|p| p.status.map(|((_, id), _)| id)).collect::<Vec<_>>())
    .bind(workers.values().map(|p| p.seen.map(|(first, _)| first)).collect::<Vec<_>>())
    .bind(workers.values().map(|p| p.seen.map(|(_, last)| last)).collect::<Vec<_>>())
    .bind(workers.values().map(|p| p.inventory.as_ref().map(|i| i.key.0)).collect::<Vec<_>>())
    .bind(workers.values().map(|p| p.inventory.as_ref().map(|i| i.key.1)).collect::<Vec<_>>())
    .bind(workers.values().map(|p| p.inventory.as_ref().map(|i| i.machine_id.clone())).collect::<Vec<_>>())
    .bind(workers.values().map(|p| p.inventory.as_ref().and_then(|i| i.current_job_id.clone())).collect::<Vec<_>>())
    .bind(inv(|i| Some(i.capabilities.clone())))
    .bind(inv(|i| Some(i.services.clone())))
    .bind(workers.values().map(|p| p.inventory.as_ref().and_then(|i| i.version.clone())).collect::<Vec<_>>())
    .bind(workers.values().map(|p| p.completed_delta).collect::<Vec<_>>())
    .bind(workers.values().map(|p| p.failed_delta).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

async fn insert_samples(
    conn: &mut PgConnection,
    org_id: Uuid,
    series: &SeriesCache,
    events: &[(DateTime<Utc>, &fleetmon_proto::ingest::Metrics)],
) -> Result<Learned, DbError> {
    if events.is_empty() {
        return Ok(Learned::default());
    }
    let mut keys = Vec::new();
    let mut ats = Vec::new();
    let mut values = Vec::new();
    for (at, metrics) in events {
        for sample in &metrics.samples {
            keys.push(SeriesKey {
                machine_id: metrics.machine_id.clone(),
                worker_id: metrics.worker_id.clone().unwrap_or_default(),
                name: sample.name.clone(),
                labels: serde_json::to_string(&sample.labels).unwrap_or_default(),
            });
            ats.push(sample.at.unwrap_or(*at));
            values.push(sample.value);
        }
    }
    let (ids, learned) = series.resolve(conn, org_id, &keys).await?;
    query(
        "INSERT INTO metric_samples (org_id, series_id, at, value)
         SELECT $1, * FROM unnest($2::int8[], $3::timestamptz[], $4::float8[])
         ON CONFLICT DO NOTHING",
    )
    .bind(org_id)
    .bind(ids)
    .bind(ats)
    .bind(values)
    .execute(conn)
    .await?;
    Ok(learned)
}
