//! Daily partitions of the history tables (`job_events`, `fleet_events`, `metric_samples`),
//! created ahead of time so that a new day never fails an insert.

use chrono::{Days, NaiveDate, Utc};

use super::sql::query_scalar;
use super::system::SystemDb;
use super::DbError;

/// Days of partitions kept ready before and after today (UTC).
pub const DAYS_BEHIND: u64 = 7;
pub const DAYS_AHEAD: u64 = 7;

/// Creates any missing partitions for `[first_day, last_day]`; returns how many were created.
pub async fn ensure(
    db: &SystemDb,
    first_day: NaiveDate,
    last_day: NaiveDate,
) -> Result<i32, DbError> {
    let mut tx = db.begin().await?;
    let created = query_scalar("SELECT fleetmon_ensure_partitions($1, $2)")
        .bind(first_day)
        .bind(last_day)
        .fetch_one(tx.conn())
        .await?;
    tx.commit().await?;
    Ok(created)
}

/// Ensures the standard window around today.
pub async fn ensure_around_today(db: &SystemDb) -> Result<i32, DbError> {
    let today = Utc::now().date_naive();
    let first = today - Days::new(DAYS_BEHIND);
    let last = today + Days::new(DAYS_AHEAD);
    ensure(db, first, last).await
}
