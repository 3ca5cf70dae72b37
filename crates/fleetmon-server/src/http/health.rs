//! `GET /healthz` (the process is up) and `GET /readyz` (the database is reachable and migrated).

use std::time::Duration;

use axum::extract::State;
use axum::Json;
use fleetmon_proto::Readiness;
use serde::Serialize;

use super::{ApiError, AppState};
use crate::db::migrate::latest_version;
use crate::db::sql::query_scalar;
use crate::db::{DbError, TenantContext};

/// A load balancer asking for readiness should get an answer quickly even when the database hangs.
const READINESS_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `"ok"`.
    status: &'static str,
}

/// The process is up (it does not look at the database).
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The database is reachable and migrated: send traffic here.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, body = Readiness),
    (status = 503, description = "`database_unreachable` or `migrations_pending`, with `Retry-After`", body = fleetmon_proto::ErrorBody),
))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Readiness>, ApiError> {
    let version = tokio::time::timeout(READINESS_TIMEOUT, schema_version(&state))
        .await
        .map_err(|_| ApiError::Unavailable {
            code: "database_unreachable",
            message: format!(
                "the database did not answer within {}s",
                READINESS_TIMEOUT.as_secs()
            ),
        })?
        .map_err(|error| match &error {
            DbError::Sql(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P01") => {
                ApiError::Unavailable {
                    code: "migrations_pending",
                    message: "the database has no fleetmon schema yet; run `fleetmon migrate`"
                        .into(),
                }
            }
            _ => ApiError::Unavailable {
                code: "database_unreachable",
                message: format!("the database is not reachable: {error}"),
            },
        })?;
    let expected = latest_version();
    if version < expected {
        return Err(ApiError::Unavailable {
            code: "migrations_pending",
            message: format!(
                "the database schema is at version {version}, this fleetmon needs {expected}; \
                 run `fleetmon migrate`"
            ),
        });
    }
    Ok(Json(Readiness {
        status: "ready".into(),
        schema_version: version,
    }))
}

/// Reads the schema version through a tenant transaction, which also proves the runtime role
/// exists and can be switched to.
async fn schema_version(state: &AppState) -> Result<i64, DbError> {
    let mut tx = state.db.begin(TenantContext::none()).await?;
    let version: Option<i64> = query_scalar("SELECT max(version) FROM fleetmon_schema_migrations")
        .fetch_one(tx.conn())
        .await?;
    tx.commit().await?;
    Ok(version.unwrap_or(0))
}
