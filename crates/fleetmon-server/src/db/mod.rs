//! Postgres: connection settings, the pool, migrations, tenant and system transactions, and the
//! embedded server used when no `DATABASE_URL` is given.

pub mod embedded;
pub mod migrate;
pub mod partitions;
pub mod sql;
mod system;
mod tenant;

use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

pub use embedded::{EmbeddedError, EmbeddedPostgres};
pub use system::{SystemDb, SystemTx};
pub use tenant::{TenantContext, TenantDb, TenantTx, APP_ROLE};

/// The oldest server fleetmon supports (as `server_version_num`).
pub const MIN_SERVER_VERSION_NUM: i32 = 140_000;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(
        "DATABASE_URL is not a valid PostgreSQL URL ({0}); expected \
         postgres://USER:PASSWORD@HOST:PORT/DATABASE"
    )]
    InvalidUrl(String),
    #[error(
        "FLEETMON_LISTEN_DATABASE_URL is not a valid PostgreSQL URL ({0}); expected \
         postgres://USER:PASSWORD@HOST:PORT/DATABASE (a direct connection, not a pooler)"
    )]
    InvalidListenUrl(String),
    #[error(
        "could not connect to PostgreSQL at {target} after {attempts} attempts over {waited_s}s: \
         {reason}. Check that the server is running and reachable and that DATABASE_URL is right \
         (or leave DATABASE_URL unset to use the embedded PostgreSQL)"
    )]
    Unreachable {
        target: String,
        attempts: u32,
        waited_s: u64,
        reason: String,
    },
    #[error("PostgreSQL at {target} refused the connection: {reason}")]
    Rejected { target: String, reason: String },
    #[error("PostgreSQL {found} at {target} is too old: fleetmon needs PostgreSQL 14 or newer")]
    UnsupportedVersion { target: String, found: String },
    #[error("{0}")]
    Embedded(#[from] EmbeddedError),
    #[error("migration {version} ({name}) failed: {source}")]
    Migration {
        version: i64,
        name: &'static str,
        source: sqlx::Error,
    },
    #[error(
        "migration {version} ({name}) in the database differs from the one in this build; \
         migrations must never be edited once applied"
    )]
    MigrationChanged { version: i64, name: String },
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
}

/// Where the database is and how to reach it.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// An external server; `None` starts the embedded one in `data_dir`.
    pub url: Option<String>,
    pub data_dir: PathBuf,
    pub max_connections: u32,
    /// How long to keep retrying an unreachable server at start-up.
    pub connect_timeout: Duration,
    /// How long a transaction waits for a free pooled connection before failing with
    /// `PoolTimedOut` (which requests answer with 503): short, so a saturated pool sheds load
    /// instead of queueing requests without end.
    pub acquire_timeout: Duration,
}

/// Parses a `DATABASE_URL` without ever echoing it (it may hold a password).
pub fn parse_url(url: &str) -> Result<PgConnectOptions, DbError> {
    let scheme_ok = url.starts_with("postgres://") || url.starts_with("postgresql://");
    if !scheme_ok {
        return Err(DbError::InvalidUrl(
            "it must start with postgres:// or postgresql://".into(),
        ));
    }
    PgConnectOptions::from_str(url).map_err(|e| DbError::InvalidUrl(e.to_string()))
}

/// `user@host:port/database`, for messages: never the password.
pub fn describe(options: &PgConnectOptions) -> String {
    let host = match options.get_socket() {
        Some(dir) => dir.display().to_string(),
        None => options.get_host().to_string(),
    };
    format!(
        "{}@{}:{}/{}",
        options.get_username(),
        host,
        options.get_port(),
        options.get_database().unwrap_or(options.get_username())
    )
}

/// Whether a failure to connect may go away by itself (server starting, network blip).
fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => true,
        // 57P03: the server is starting up or shutting down; 53300: too many connections.
        sqlx::Error::Database(db) => matches!(db.code().as_deref(), Some("57P03" | "53300")),
        _ => false,
    }
}

/// Longest a single connection attempt may take (an unroutable host would otherwise hang for
/// the operating system's TCP timeout).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects, retrying transient failures with backoff for up to `connect_timeout`, checks the
/// server version, and returns a pool.
pub async fn connect(
    options: PgConnectOptions,
    settings: &DatabaseSettings,
) -> Result<PgPool, DbError> {
    let target = describe(&options);
    let options = options.application_name("fleetmon");
    let started = Instant::now();
    let mut delay = Duration::from_millis(100);
    let mut attempts = 0;
    let mut probe = loop {
        attempts += 1;
        let remaining = settings.connect_timeout.saturating_sub(started.elapsed());
        let attempt = tokio::time::timeout(
            remaining.clamp(Duration::from_secs(1), ATTEMPT_TIMEOUT),
            PgConnection::connect_with(&options),
        )
        .await
        .unwrap_or(Err(sqlx::Error::PoolTimedOut));
        match attempt {
            Ok(conn) => break conn,
            Err(error)
                if is_transient(&error) && started.elapsed() + delay < settings.connect_timeout =>
            {
                tracing::warn!(%target, attempt = attempts, %error, "database not reachable yet; retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(error) if is_transient(&error) => {
                return Err(DbError::Unreachable {
                    target,
                    attempts,
                    waited_s: started.elapsed().as_secs(),
                    reason: match error {
                        sqlx::Error::PoolTimedOut => "timed out".to_string(),
                        other => other.to_string(),
                    },
                });
            }
            Err(error) => {
                return Err(DbError::Rejected {
                    target,
                    reason: error.to_string(),
                })
            }
        }
    };
    let version = check_server_version(&mut probe, &target).await;
    probe.close().await.ok();
    version?;
    Ok(PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        .connect_lazy_with(options))
}

async fn check_server_version(conn: &mut PgConnection, target: &str) -> Result<(), DbError> {
    // In a transaction, like everything: see `SystemDb::begin`.
    let mut tx = conn.begin().await?;
    let (num, text): (i32, String) = sql::query_as(
        "SELECT current_setting('server_version_num')::int, current_setting('server_version')",
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    ensure_supported_version(num, &text, target)
}

/// Refuses servers older than [`MIN_SERVER_VERSION_NUM`].
pub fn ensure_supported_version(num: i32, text: &str, target: &str) -> Result<(), DbError> {
    if num < MIN_SERVER_VERSION_NUM {
        return Err(DbError::UnsupportedVersion {
            target: target.to_string(),
            found: text.to_string(),
        });
    }
    Ok(())
}

/// A connected database: the pool, and the embedded server behind it if fleetmon started one.
pub struct Database {
    pool: PgPool,
    embedded: Option<EmbeddedPostgres>,
}

impl Database {
    /// Connects to `DATABASE_URL`, or starts the embedded server when there is none.
    pub async fn open(settings: &DatabaseSettings) -> Result<Self, DbError> {
        match &settings.url {
            Some(url) => {
                let options = parse_url(url)?;
                let pool = connect(options, settings).await?;
                Ok(Self {
                    pool,
                    embedded: None,
                })
            }
            None => {
                let data_dir = settings.data_dir.clone();
                let embedded =
                    tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&data_dir))
                        .await
                        .expect("embedded PostgreSQL start-up panicked")?;
                embedded.create_database_if_missing().await?;
                let pool = connect(embedded.connect_options(), settings).await?;
                Ok(Self {
                    pool,
                    embedded: Some(embedded),
                })
            }
        }
    }

    pub fn tenant(&self) -> TenantDb {
        TenantDb::new(self.pool.clone())
    }

    pub fn system(&self) -> SystemDb {
        SystemDb::new(self.pool.clone())
    }

    /// How the pool connects (the embedded server's socket, or `DATABASE_URL`'s server).
    pub fn connect_options(&self) -> PgConnectOptions {
        (*self.pool.connect_options()).clone()
    }

    /// Applies pending migrations and makes sure today's partitions exist.
    pub async fn prepare_schema(&self) -> Result<migrate::MigrationReport, DbError> {
        let system = self.system();
        let report = migrate::run(&system).await?;
        partitions::ensure_around_today(&system).await?;
        Ok(report)
    }

    /// Closes the pool, then stops the embedded server if there is one.
    pub async fn close(self) {
        self.pool.close().await;
        if let Some(embedded) = self.embedded {
            let stopped = tokio::task::spawn_blocking(move || embedded.stop()).await;
            match stopped {
                Ok(Ok(())) => tracing::info!("embedded PostgreSQL stopped"),
                Ok(Err(error)) => {
                    tracing::error!(%error, "embedded PostgreSQL did not stop cleanly")
                }
                Err(error) => tracing::error!(%error, "stopping embedded PostgreSQL panicked"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_urls_are_refused_without_echoing_them() {
        for url in [
            "not a url",
            "mysql://u:hunter2@h/db",
            "postgres://u:hunter2@h:notaport/db",
        ] {
            let message = parse_url(url).unwrap_err().to_string();
            assert!(
                message.starts_with("DATABASE_URL is not a valid"),
                "{message}"
            );
            assert!(!message.contains("hunter2"), "{message}");
        }
    }

    #[test]
    fn descriptions_never_include_the_password() {
        let options = parse_url("postgres://alice:hunter2@db.example:6543/fleet").unwrap();
        assert_eq!(describe(&options), "alice@db.example:6543/fleet");
    }

    #[test]
    fn servers_older_than_14_are_refused() {
        let error = ensure_supported_version(130_011, "13.11", "x@h:5432/d").unwrap_err();
        assert_eq!(
            error.to_string(),
            "PostgreSQL 13.11 at x@h:5432/d is too old: fleetmon needs PostgreSQL 14 or newer"
        );
        ensure_supported_version(140_000, "14.0", "x").unwrap();
        ensure_supported_version(170_002, "17.2", "x").unwrap();
    }
}
