//! The audit log: who did what in an org's administration.

use serde::Serialize;
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::db::sql::{query, query_as};
use crate::db::DbError;

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Entry {
    pub id: i64,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub details: Value,
    pub at: chrono::DateTime<chrono::Utc>,
}

pub async fn record(
    conn: &mut PgConnection,
    org_id: Uuid,
    actor: &str,
    action: &str,
    target: Option<&str>,
    details: Value,
) -> Result<(), DbError> {
    query("INSERT INTO audit_log (org_id, actor, action, target, details) VALUES ($1, $2, $3, $4, $5)")
        .bind(org_id)
        .bind(actor)
        .bind(action)
        .bind(target)
        .bind(details)
        .execute(conn)
        .await?;
    Ok(())
}

/// The newest entries first, `limit` of them, older than the entry `before` when given.
pub async fn page(
    conn: &mut PgConnection,
    org_id: Uuid,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<Entry>, DbError> {
    Ok(query_as(
        "SELECT id, actor, action, target, details, at FROM audit_log
         WHERE org_id = $1 AND ($2::bigint IS NULL OR id < $2)
         ORDER BY id DESC LIMIT $3",
    )
    .bind(org_id)
    .bind(before)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}
