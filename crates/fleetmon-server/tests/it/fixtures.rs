//! Rows for every tenant table, so isolation can be checked table by table. The catalog test
//! fails when a table with `org_id` has no fixture here, so no new table escapes the suite.

use fleetmon_server::db::sql::query;
use fleetmon_server::db::{TenantContext, TenantDb};
use sqlx::PgConnection;
use uuid::Uuid;

/// `(table, INSERT …)`: `$1` is the row's `org_id`, `$2` a text unique to the row.
pub const TENANT_TABLES: &[(&str, &str)] = &[
    (
        "memberships",
        "WITH u AS (INSERT INTO users (issuer, subject) VALUES ('it', $2) RETURNING id)
         INSERT INTO memberships (org_id, user_id, role) SELECT $1, id, 'member' FROM u",
    ),
    (
        "invitations",
        "INSERT INTO invitations (org_id, email, role) VALUES ($1, lower($2) || '@example.com', 'viewer')",
    ),
    (
        "api_tokens",
        "INSERT INTO api_tokens (org_id, name, kind, prefix, token_hash)
         VALUES ($1, $2, 'read', 'fm_', sha256(convert_to($2, 'UTF8')))",
    ),
    (
        "machines",
        "INSERT INTO machines (org_id, id, last_seen_at, last_event_at, last_event_id)
         VALUES ($1, $2, now(), now(), gen_random_uuid())",
    ),
    (
        "workers",
        "INSERT INTO workers (org_id, id, last_seen_at, last_event_at, last_event_id)
         VALUES ($1, $2, now(), now(), gen_random_uuid())",
    ),
    (
        "jobs",
        "INSERT INTO jobs (org_id, id, status, created_at, state_rank, state_at, state_event_id)
         VALUES ($1, $2, 'queued', now(), 1, now(), gen_random_uuid())",
    ),
    (
        "job_events",
        "INSERT INTO job_events (org_id, event_id, job_id, kind, at)
         VALUES ($1, gen_random_uuid(), $2, 'job.queued', now())",
    ),
    (
        "fleet_events",
        "INSERT INTO fleet_events (org_id, event_id, kind, at, machine_id)
         VALUES ($1, gen_random_uuid(), 'machine.heartbeat', now(), $2)",
    ),
    (
        "metric_series",
        "INSERT INTO metric_series (org_id, machine_id, name) VALUES ($1, $2, 'gpu_utilization_pct')",
    ),
    (
        "metric_samples",
        "INSERT INTO metric_samples (org_id, series_id, at, value) VALUES ($1, hashtext($2), now(), 1.5)",
    ),
    (
        "audit_log",
        "INSERT INTO audit_log (org_id, actor, action) VALUES ($1, 'it', $2)",
    ),
];

pub fn insert_sql(table: &str) -> &'static str {
    TENANT_TABLES
        .iter()
        .find(|(name, _)| *name == table)
        .map(|(_, sql)| *sql)
        .unwrap_or_else(|| panic!("no fixture for tenant table {table}: add one to fixtures.rs"))
}

pub async fn insert(conn: &mut PgConnection, table: &str, org_id: Uuid) -> Result<(), sqlx::Error> {
    query(insert_sql(table))
        .bind(org_id)
        .bind(format!("{table}-{}", Uuid::new_v4().simple()))
        .execute(conn)
        .await
        .map(|_| ())
}

/// Creates an organization (a global table: no tenant context needed) and returns its id.
pub async fn create_org(db: &TenantDb, slug_prefix: &str) -> Uuid {
    let mut tx = db.begin(TenantContext::none()).await.unwrap();
    let slug = format!(
        "{slug_prefix}-{}",
        &Uuid::new_v4().simple().to_string()[..12]
    );
    let id: Uuid = fleetmon_server::db::sql::query_scalar(
        "INSERT INTO organizations (slug, name) VALUES ($1, $1) RETURNING id",
    )
    .bind(&slug)
    .fetch_one(tx.conn())
    .await
    .unwrap();
    tx.commit().await.unwrap();
    id
}
