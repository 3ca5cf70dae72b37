//! Tenant transactions: the one way request code reaches data.
//!
//! Each transaction begins, in a single round trip, with `BEGIN`, `SET LOCAL ROLE fleetmon_app`
//! and the transaction-local settings `fleetmon.org_id` / `fleetmon.user_id` that the row-level
//! security policies read. Nothing is set at session level, so a connection returned to the pool
//! (or handed to another client by a transaction-mode pooler) carries nothing over.

use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use uuid::Uuid;

use super::DbError;

/// The runtime role every request runs as. Created by the migrations; not superuser, no
/// BYPASSRLS, owns nothing.
pub const APP_ROLE: &str = "fleetmon_app";

/// Who a transaction acts for. An absent org means the policies match no tenant row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TenantContext {
    pub org_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
}

impl TenantContext {
    /// No tenant and no user: sees global tables only (for example readiness checks).
    pub fn none() -> Self {
        Self::default()
    }

    pub fn org(org_id: Uuid) -> Self {
        Self {
            org_id: Some(org_id),
            user_id: None,
        }
    }

    pub fn with_user(self, user_id: Uuid) -> Self {
        Self {
            user_id: Some(user_id),
            ..self
        }
    }

    /// The statement that opens the transaction. The ids are `Uuid`s rendered by their `Display`
    /// (hex and dashes only), so formatting them into SQL cannot inject anything.
    fn begin_statement(&self) -> String {
        let setting = |id: Option<Uuid>| id.map(|id| id.to_string()).unwrap_or_default();
        format!(
            "BEGIN; SET LOCAL ROLE {APP_ROLE}; \
             SELECT set_config('fleetmon.org_id', '{}', true), \
                    set_config('fleetmon.user_id', '{}', true)",
            setting(self.org_id),
            setting(self.user_id),
        )
    }
}

/// Opens tenant transactions. This is what the HTTP layer holds; it cannot run as the owner.
#[derive(Clone)]
pub struct TenantDb {
    pool: PgPool,
}

impl TenantDb {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub async fn begin(&self, context: TenantContext) -> Result<TenantTx, DbError> {
        let started = std::time::Instant::now();
        let tx = self
            .pool
            .begin_with(context.begin_statement())
            .await
            .inspect_err(|error| {
                if matches!(error, sqlx::Error::PoolTimedOut) {
                    crate::instruments::db_pool_timeout();
                }
            })?;
        crate::instruments::db_begin(started.elapsed());
        Ok(TenantTx { tx })
    }

    /// How the pool's connections are used right now.
    pub fn pool_use(&self) -> crate::instruments::PoolUse {
        let idle = self.pool.num_idle() as u32;
        crate::instruments::PoolUse {
            in_use: self.pool.size().saturating_sub(idle),
            idle,
            max: self.pool.options().get_max_connections(),
        }
    }
}

/// An open tenant transaction. Dropping it without [`TenantTx::commit`] rolls it back.
pub struct TenantTx {
    tx: Transaction<'static, Postgres>,
}

impl TenantTx {
    pub fn conn(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    pub async fn commit(self) -> Result<(), DbError> {
        Ok(self.tx.commit().await?)
    }

    pub async fn rollback(self) -> Result<(), DbError> {
        Ok(self.tx.rollback().await?)
    }
}
