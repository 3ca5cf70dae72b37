//! System access: the database owner's own connection, for migrations and maintenance
//! (partitions, retention). Row-level security is forced, so even here tenant rows are only
//! visible in an org's context; but this path can run DDL, and it is never handed to request
//! handlers — the HTTP layer only ever receives a [`super::TenantDb`].

use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use super::DbError;

#[derive(Clone)]
pub struct SystemDb {
    pool: PgPool,
}

impl SystemDb {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// A transaction as the owner. Transactions only: behind a transaction-mode pooler, work
    /// outside one may land on a different server connection statement by statement.
    pub async fn begin(&self) -> Result<SystemTx, DbError> {
        Ok(SystemTx {
            tx: self.pool.begin().await?,
        })
    }
}

pub struct SystemTx {
    tx: Transaction<'static, Postgres>,
}

impl SystemTx {
    pub fn conn(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    pub async fn commit(self) -> Result<(), DbError> {
        Ok(self.tx.commit().await?)
    }
}
