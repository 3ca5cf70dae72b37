//! Forward-only, numbered schema migrations embedded in the binary.
//!
//! All pending migrations run in one transaction that first takes a transaction-scoped advisory
//! lock, so any number of `fleetmon migrate` runs or replicas starting at once serialize: the
//! first applies the schema, the others find it applied. Transaction-scoped (not session) locks
//! keep this correct behind transaction-mode poolers too.

use sha2::{Digest, Sha256};
use sqlx::Executor;

use super::sql::{query, query_as};
use super::system::SystemDb;
use super::DbError;

pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, in order. Never edit one that has shipped: add the next number.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "schema",
        sql: include_str!("../../../../migrations/0001_schema.sql"),
    },
    Migration {
        version: 2,
        name: "sign_in",
        sql: include_str!("../../../../migrations/0002_sign_in.sql"),
    },
    Migration {
        version: 3,
        name: "stack_sync",
        sql: include_str!("../../../../migrations/0003_stack_sync.sql"),
    },
    Migration {
        version: 4,
        name: "jobs_query",
        sql: include_str!("../../../../migrations/0004_jobs_query.sql"),
    },
    Migration {
        version: 5,
        name: "metrics",
        sql: include_str!("../../../../migrations/0005_metrics.sql"),
    },
];

/// The schema version this build expects.
pub fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// An arbitrary constant naming fleetmon's migration lock in `pg_locks`.
const MIGRATION_LOCK_KEY: i64 = 0x666c_6565_746d_6f6e; // "fleetmon"

const CREATE_HISTORY: &str = "CREATE TABLE IF NOT EXISTS fleetmon_schema_migrations (
    version    bigint PRIMARY KEY,
    name       text NOT NULL,
    checksum   bytea NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)";

/// What a migration run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    pub applied: Vec<i64>,
    pub current_version: i64,
}

fn checksum(sql: &str) -> Vec<u8> {
    Sha256::digest(sql.as_bytes()).to_vec()
}

pub async fn run(db: &SystemDb) -> Result<MigrationReport, DbError> {
    let mut tx = db.begin().await?;
    query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK_KEY)
        .execute(tx.conn())
        .await?;
    tx.conn().execute(CREATE_HISTORY).await?;

    let applied: Vec<(i64, String, Vec<u8>)> =
        query_as("SELECT version, name, checksum FROM fleetmon_schema_migrations ORDER BY version")
            .fetch_all(tx.conn())
            .await?;

    for (version, name, stored) in &applied {
        match MIGRATIONS.iter().find(|m| m.version == *version) {
            Some(known) if checksum(known.sql) != *stored => {
                return Err(DbError::MigrationChanged {
                    version: *version,
                    name: name.clone(),
                });
            }
            Some(_) => {}
            None => tracing::warn!(
                version,
                name,
                "the database has a migration this build does not know; a newer fleetmon has \
                 migrated it, continuing"
            ),
        }
    }

    let mut report = MigrationReport {
        applied: Vec::new(),
        current_version: applied.last().map_or(0, |(v, _, _)| *v),
    };
    for migration in MIGRATIONS {
        if applied.iter().any(|(v, _, _)| *v == migration.version) {
            continue;
        }
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applying migration"
        );
        // A plain string runs as one simple-protocol query: several statements, no parameters.
        tx.conn()
            .execute(migration.sql)
            .await
            .map_err(|source| DbError::Migration {
                version: migration.version,
                name: migration.name,
                source,
            })?;
        query(
            "INSERT INTO fleetmon_schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
        )
        .bind(migration.version)
        .bind(migration.name)
        .bind(checksum(migration.sql))
        .execute(tx.conn())
        .await?;
        report.applied.push(migration.version);
        report.current_version = report.current_version.max(migration.version);
    }
    tx.commit().await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_numbered_in_order_without_gaps() {
        for (index, migration) in MIGRATIONS.iter().enumerate() {
            assert_eq!(migration.version, index as i64 + 1, "{}", migration.name);
        }
    }
}
