//! Sign-in throttling, per account and per client address, for every provider alike.
//!
//! Attempts are counted in `sign_in_throttle` (so all replicas share the count) within a window,
//! before they are checked; going over the limit locks the key for a while. A success clears the
//! account's count and gives the address its attempt back.

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

    /// Counts the attempt against each of its keys *before* it is checked, so that parallel
    /// guesses cannot all pass a check made before any of them failed. Returns the seconds to
    /// wait when a key is (or, with this attempt, becomes) locked.
    pub async fn reserve(&self, conn: &mut PgConnection) -> Result<Option<u64>, DbError> {
        let mut wait: Option<f64> = None;
        for (key, limit) in self.keys() {
            let locked: Option<f64> = query_scalar(
                "INSERT INTO sign_in_throttle AS t (key, failures) VALUES ($1, 1)
                 ON CONFLICT (key) DO UPDATE SET
                     failures = CASE WHEN t.window_start < now() - $2 THEN 1 ELSE t.failures + 1 END,
                     window_start = CASE WHEN t.window_start < now() - $2 THEN now() ELSE t.window_start END,
                     locked_until = CASE
                         WHEN t.locked_until > now() THEN t.locked_until
                         WHEN (CASE WHEN t.window_start < now() - $2 THEN 1 ELSE t.failures + 1 END) > $3
                             THEN now() + $4
                     END
                 RETURNING extract(epoch FROM locked_until - now())::float8",
            )
            .bind(key)
            .bind(WINDOW)
            .bind(limit)
            .bind(LOCKOUT)
            .fetch_one(&mut *conn)
            .await?;
            if let Some(seconds) = locked.filter(|s| *s > 0.0) {
                wait = Some(wait.map_or(seconds, |w| w.max(seconds)));
            }
        }
        Ok(wait.map(|s| s.ceil().max(1.0) as u64))
    }

    /// After a success: the account's count starts again, and the address gets this attempt back
    /// (one good password must not reset an address that is guessing at many accounts).
    pub async fn succeeded(&self, conn: &mut PgConnection) -> Result<(), DbError> {
        if let Some(account) = &self.account {
            query("DELETE FROM sign_in_throttle WHERE key = $1")
                .bind(account)
                .execute(&mut *conn)
                .await?;
        }
        self.give_back(conn, self.address.as_deref()).await
    }

    /// After an outcome that was no guess (the provider was unreachable): nothing is counted.
    pub async fn released(&self, conn: &mut PgConnection) -> Result<(), DbError> {
        self.give_back(&mut *conn, self.account.as_deref()).await?;
        self.give_back(conn, self.address.as_deref()).await
    }

    async fn give_back(&self, conn: &mut PgConnection, key: Option<&str>) -> Result<(), DbError> {
        if let Some(key) = key {
            query(
                "UPDATE sign_in_throttle SET failures = greatest(failures - 1, 0) WHERE key = $1",
            )
            .bind(key)
            .execute(conn)
            .await?;
        }
        Ok(())
    }
}
