//! Jobs as a live stream shows them: the current state without payload and result (which can
//! be large), by id.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::db::sql::query_as;
use crate::db::DbError;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct JobRow {
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
    pub worker_id: Option<String>,
    pub machine_id: Option<String>,
    pub customer_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub queued_at: Option<DateTime<Utc>>,
    pub assigned_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    pub error: Option<Value>,
    pub updated_at: DateTime<Utc>,
}

/// The jobs of `org` with these ids (those that exist).
pub async fn by_ids(
    conn: &mut PgConnection,
    org: Uuid,
    ids: &[String],
) -> Result<Vec<JobRow>, DbError> {
    Ok(query_as(
        "SELECT id, workflow_id, name, job_type, status, priority, attempt, max_retries, progress,
                progress_message, worker_id, machine_id, customer_id, created_at, queued_at,
                assigned_at, started_at, finished_at, duration_ms, error, updated_at
         FROM jobs WHERE org_id = $1 AND id = ANY($2) ORDER BY id",
    )
    .bind(org)
    .bind(ids)
    .fetch_all(conn)
    .await?)
}
