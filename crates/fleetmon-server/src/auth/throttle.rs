//! Sign-in throttling, per account and per client address, for every provider alike.
//!
//! Failures are counted in `sign_in_throttle` (so all replicas share the count) within a window;
//! reaching the limit locks the key for a while. A success clears the account's count, not the
//! address's: one good password must not reset an address that is guessing at many accounts.

use std::net::IpAddr;

use chrono::TimeDelta;
use sqlx::PgConnection;

use crate::db::sql::{query, query_scalar};
use crate::db::DbError;

/// Failures counted together.
pub const WINDOW: TimeDelta = TimeDelta::minutes(15);
/// How long a key stays locked once it reaches its limit.
pub const LOCKOUT: TimeDelta = TimeDelta::minutes(15);
pub const ACCOUNT_LIMIT: i32 = 5;
pub const ADDRESS_LIMIT: i32 = 50;

/// What one sign-in attempt is counted against.
pub struct Attempt {
    account: Option<String>,
    address: Option<String>,
}

impl Attempt {
    pub fn new(email: &str, address: Option<IpAddr>) -> Self {
        Self {
            account: Some(format!("account:{}", email.trim().to_lowercase())),
            address: address.map(|a| format!("address:{a}")),
        }
    }

    /// An attempt that names no account (a one-time code): counted against the address only.
    pub fn from_address(address: Option<IpAddr>) -> Self {
        Self {
            account: None,
            ..Self::new("", address)
        }
    }

    fn keys(&self) -> impl Iterator<Item = (&str, i32)> {
        let account = self.account.as_deref().map(|a| (a, ACCOUNT_LIMIT));
        let address = self.address.as_deref().map(|a| (a, ADDRESS_LIMIT));
        account.into_iter().chain(address)
    }

    /// Seconds until the attempt may be made, when one of its keys is locked.
    pub async fn locked_for(&self, conn: &mut PgConnection) -> Result<Option<u64>, DbError> {
        let keys: Vec<&str> = self.keys().map(|(key, _)| key).collect();
        let seconds: Option<f64> = query_scalar(
            "SELECT max(extract(epoch FROM locked_until - now()))::float8 FROM sign_in_throttle
             WHERE key = ANY($1) AND locked_until > now()",
        )
        .bind(keys)
        .fetch_one(conn)
        .await?;
        Ok(seconds.map(|s| s.ceil().max(1.0) as u64))
    }

    pub async fn failed(&self, conn: &mut PgConnection) -> Result<(), DbError> {
        for (key, limit) in self.keys() {
            query(
                "INSERT INTO sign_in_throttle AS t (key, failures) VALUES ($1, 1)
                 ON CONFLICT (key) DO UPDATE SET
                     failures = CASE WHEN t.window_start < now() - $2 THEN 1 ELSE t.failures + 1 END,
                     window_start = CASE WHEN t.window_start < now() - $2 THEN now() ELSE t.window_start END",
            )
            .bind(key)
            .bind(WINDOW)
            .execute(&mut *conn)
            .await?;
            query(
                "UPDATE sign_in_throttle SET locked_until = now() + $3, failures = 0, window_start = now()
                 WHERE key = $1 AND failures >= $2",
            )
            .bind(key)
            .bind(limit)
            .bind(LOCKOUT)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    pub async fn succeeded(&self, conn: &mut PgConnection) -> Result<(), DbError> {
        if let Some(account) = &self.account {
            query("DELETE FROM sign_in_throttle WHERE key = $1")
                .bind(account)
                .execute(conn)
                .await?;
        }
        Ok(())
    }
}
