//! What users read: current fleet state and jobs (and, as they land, metrics and the live
//! stream). Everything runs in the org's tenant transaction, so row-level security confines it.

pub mod fleet;
pub mod job_metrics;
pub mod jobs;
pub mod overview;
pub mod series;
pub mod window;

use sqlx::PgConnection;

use crate::db::sql::query;
use crate::db::DbError;

/// Run first in the transaction of the overview and metrics statements. Their row estimates are
/// rough (per-bucket ranges the planner cannot see), and on large orgs that makes PostgreSQL
/// JIT-compile them: hundreds of milliseconds of compiling for statements that run in less.
/// Transaction-local, so nothing outlives the request on a pooled connection.
pub const NO_JIT_SQL: &str = "SET LOCAL jit = off";

pub(crate) async fn without_jit(conn: &mut PgConnection) -> Result<(), DbError> {
    query(NO_JIT_SQL).execute(conn).await?;
    Ok(())
}
