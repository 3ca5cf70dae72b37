//! Settings: command-line flags override environment variables, which override `fleetmon.toml`
//! (`--config` / `FLEETMON_CONFIG`), which overrides the defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde::Deserialize;

use crate::db::DatabaseSettings;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = "./fleetmon-data";
pub const DEFAULT_LOG: &str = "info,sqlx=warn";
pub const DEFAULT_DB_MAX_CONNECTIONS: u32 = 10;
pub const DEFAULT_DB_CONNECT_TIMEOUT_S: u64 = 30;
pub const DEFAULT_DB_ACQUIRE_TIMEOUT_MS: u64 = 2000;
pub const DEFAULT_RETENTION_INTERVAL_S: u64 = 3600;
pub const DEFAULT_INGEST_RATE_LIMIT: u32 = 100;
pub const DEFAULT_INGEST_RATE_BURST: u32 = 400;
pub const DEFAULT_API_RATE_LIMIT: u32 = 50;
pub const DEFAULT_API_RATE_BURST: u32 = 200;
pub const DEFAULT_REQUEST_TIMEOUT_S: u64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Options every command shares.
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalArgs {
    /// Read settings from this TOML file; flags and environment variables override it.
    #[arg(long, env = "FLEETMON_CONFIG", global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Log filter, for example `info` or `fleetmon_server=debug,sqlx=warn` [default: info,sqlx=warn]
    #[arg(long, env = "FLEETMON_LOG", global = true, value_name = "FILTER")]
    pub log: Option<String>,

    /// Log format [default: text]
    #[arg(long, env = "FLEETMON_LOG_FORMAT", global = true, value_enum)]
    pub log_format: Option<LogFormat>,
}

/// Where the data lives. Taken by every command that touches the database.
#[derive(Debug, Clone, Default, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL (14 or newer) to use, as postgres://USER:PASSWORD@HOST:PORT/DATABASE. Unset:
    /// fleetmon starts its own private PostgreSQL in --data-dir.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_name = "URL")]
    pub database_url: Option<String>,

    /// Directory of the embedded PostgreSQL, used when no database URL is given [default: ./fleetmon-data]
    #[arg(long, env = "FLEETMON_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Largest number of database connections this process opens [default: 10]
    #[arg(long, env = "FLEETMON_DB_MAX_CONNECTIONS", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub db_max_connections: Option<u32>,

    /// Seconds to keep retrying an unreachable database at start-up [default: 30]
    #[arg(long, env = "FLEETMON_DB_CONNECT_TIMEOUT", value_name = "SECONDS")]
    pub db_connect_timeout: Option<u64>,

    /// Milliseconds a request waits for a free pooled connection before it is answered 503
    /// [default: 2000]
    #[arg(long, env = "FLEETMON_DB_ACQUIRE_TIMEOUT_MS", value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub db_acquire_timeout_ms: Option<u64>,
}

/// Limits on what one ingest request may carry; see `ingest::Limits` for the defaults.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestArgs {
    /// Largest ingest request body in bytes, after decompression [default: 8388608]
    #[arg(long, env = "FLEETMON_INGEST_MAX_BODY_BYTES", value_name = "BYTES")]
    pub ingest_max_body_bytes: Option<usize>,
    /// Most events in one ingest request [default: 5000]
    #[arg(long, env = "FLEETMON_INGEST_MAX_EVENTS", value_name = "N")]
    pub ingest_max_events: Option<usize>,
    /// Longest identifier or name in an event, in bytes [default: 256]
    #[arg(long, env = "FLEETMON_INGEST_MAX_FIELD_LEN", value_name = "BYTES")]
    pub ingest_max_field_len: Option<usize>,
    /// Largest job payload, result or error, as JSON bytes [default: 65536]
    #[arg(long, env = "FLEETMON_INGEST_MAX_PAYLOAD_BYTES", value_name = "BYTES")]
    pub ingest_max_payload_bytes: Option<usize>,
    /// Deepest nesting of arrays and objects in one event [default: 16]
    #[arg(long, env = "FLEETMON_INGEST_MAX_DEPTH", value_name = "LEVELS")]
    pub ingest_max_depth: Option<usize>,
    /// Seconds an event's `at` may be ahead of the server's clock [default: 300]
    #[arg(long, env = "FLEETMON_INGEST_MAX_CLOCK_SKEW", value_name = "SECONDS")]
    pub ingest_max_clock_skew_s: Option<u64>,
    /// Seconds an event's `at` may be behind the server's clock (at most 6 days) [default: 518400]
    #[arg(long, env = "FLEETMON_INGEST_MAX_AGE", value_name = "SECONDS")]
    pub ingest_max_age_s: Option<u64>,
}

impl IngestArgs {
    pub fn resolve(&self, file: &IngestArgs) -> crate::ingest::Limits {
        let d = crate::ingest::Limits::default();
        let max_age = self
            .ingest_max_age_s
            .or(file.ingest_max_age_s)
            .map_or(d.max_age, Duration::from_secs);
        crate::ingest::Limits {
            max_body_bytes: self
                .ingest_max_body_bytes
                .or(file.ingest_max_body_bytes)
                .unwrap_or(d.max_body_bytes),
            max_events: self
                .ingest_max_events
                .or(file.ingest_max_events)
                .unwrap_or(d.max_events),
            max_field_len: self
                .ingest_max_field_len
                .or(file.ingest_max_field_len)
                .unwrap_or(d.max_field_len),
            max_payload_bytes: self
                .ingest_max_payload_bytes
                .or(file.ingest_max_payload_bytes)
                .unwrap_or(d.max_payload_bytes),
            max_depth: self
                .ingest_max_depth
                .or(file.ingest_max_depth)
                .unwrap_or(d.max_depth),
            max_clock_skew: self
                .ingest_max_clock_skew_s
                .or(file.ingest_max_clock_skew_s)
                .map_or(d.max_clock_skew, Duration::from_secs),
            // History partitions reach this far back; older events could not be stored.
            max_age: max_age.min(d.max_age),
            max_samples: d.max_samples,
        }
    }
}

/// How `serve` runs retention (`crate::retention`); the batch size also applies to
/// `fleetmon retention run`.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionArgs {
    /// Seconds between retention runs of `serve`; 0 turns them off (run `fleetmon retention run`
    /// from a scheduler instead) [default: 3600]
    #[arg(long, env = "FLEETMON_RETENTION_INTERVAL", value_name = "SECONDS")]
    pub retention_interval_s: Option<u64>,
    /// Rows retention deletes per transaction [default: 5000]
    #[arg(long, env = "FLEETMON_RETENTION_BATCH_SIZE", value_name = "ROWS", value_parser = clap::value_parser!(u32).range(1..))]
    pub retention_batch_size: Option<u32>,
}

/// Retention settings, resolved.
#[derive(Debug, Clone, Copy)]
pub struct RetentionSettings {
    /// `None`: `serve` does not run retention.
    pub interval: Option<Duration>,
    pub batch_size: u32,
}

impl RetentionArgs {
    pub fn resolve(&self, file: &RetentionArgs) -> RetentionSettings {
        let interval = self
            .retention_interval_s
            .or(file.retention_interval_s)
            .unwrap_or(DEFAULT_RETENTION_INTERVAL_S);
        RetentionSettings {
            interval: (interval > 0).then(|| Duration::from_secs(interval)),
            batch_size: self
                .retention_batch_size
                .or(file.retention_batch_size)
                .unwrap_or(crate::retention::DEFAULT_BATCH_SIZE)
                .max(1),
        }
    }
}

/// Back-pressure of `serve`: rate limits and the request timeout (`crate::http::protection`).
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtectionArgs {
    /// Ingest requests per second allowed per ingest token, on average; 0 turns the limit off
    /// [default: 100]
    #[arg(long, env = "FLEETMON_INGEST_RATE_LIMIT", value_name = "PER_SECOND")]
    pub ingest_rate_limit: Option<u32>,
    /// Ingest requests a token may send at once above the average [default: 400]
    #[arg(long, env = "FLEETMON_INGEST_RATE_BURST", value_name = "REQUESTS")]
    pub ingest_rate_burst: Option<u32>,
    /// Other API requests per second allowed per client address, on average; 0 turns the limit
    /// off [default: 50]
    #[arg(long, env = "FLEETMON_API_RATE_LIMIT", value_name = "PER_SECOND")]
    pub api_rate_limit: Option<u32>,
    /// API requests an address may send at once above the average [default: 200]
    #[arg(long, env = "FLEETMON_API_RATE_BURST", value_name = "REQUESTS")]
    pub api_rate_burst: Option<u32>,
    /// Seconds a request may take to its response head before it is answered 503 (live streams
    /// are exempt); 0 turns the timeout off [default: 30]
    #[arg(long, env = "FLEETMON_REQUEST_TIMEOUT", value_name = "SECONDS")]
    pub request_timeout_s: Option<u64>,
}

impl ProtectionArgs {
    pub fn resolve(&self, file: &ProtectionArgs) -> crate::http::Protection {
        use crate::http::RateLimit;
        let rate = |per_second: Option<u32>, default_rate, burst: Option<u32>, default_burst| {
            let per_second = per_second.unwrap_or(default_rate);
            (per_second > 0).then(|| RateLimit {
                per_second,
                burst: burst.unwrap_or(default_burst).max(1),
            })
        };
        let timeout = self
            .request_timeout_s
            .or(file.request_timeout_s)
            .unwrap_or(DEFAULT_REQUEST_TIMEOUT_S);
        crate::http::Protection {
            ingest_per_token: rate(
                self.ingest_rate_limit.or(file.ingest_rate_limit),
                DEFAULT_INGEST_RATE_LIMIT,
                self.ingest_rate_burst.or(file.ingest_rate_burst),
                DEFAULT_INGEST_RATE_BURST,
            ),
            api_per_address: rate(
                self.api_rate_limit.or(file.api_rate_limit),
                DEFAULT_API_RATE_LIMIT,
                self.api_rate_burst.or(file.api_rate_burst),
                DEFAULT_API_RATE_BURST,
            ),
            request_timeout: (timeout > 0).then(|| Duration::from_secs(timeout)),
        }
    }
}

/// The optional `fleetmon.toml`. Unknown keys are errors, so a typo never silently does nothing.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub database_url: Option<String>,
    pub listen_database_url: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub db_max_connections: Option<u32>,
    pub db_connect_timeout_s: Option<u64>,
    pub db_acquire_timeout_ms: Option<u64>,
    pub listen: Option<SocketAddr>,
    pub metrics_listen: Option<SocketAddr>,
    pub log: Option<String>,
    pub log_format: Option<LogFormat>,
    pub public_url: Option<String>,
    pub local_auth: Option<bool>,
    pub stack: Option<crate::auth::settings::StackFile>,
    #[serde(default)]
    pub oidc: Vec<crate::auth::settings::OidcFile>,
    #[serde(flatten)]
    pub ingest: IngestArgs,
    #[serde(flatten)]
    pub retention: RetentionArgs,
    #[serde(flatten)]
    pub protection: ProtectionArgs,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("could not read the config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the config file {} is not valid: {message}", path.display())]
    Parse { path: PathBuf, message: String },
}

impl FileConfig {
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.message().to_string(),
        })
    }
}

/// Logging settings, resolved.
#[derive(Debug, Clone)]
pub struct LogSettings {
    pub filter: String,
    pub format: LogFormat,
}

impl LogSettings {
    pub fn resolve(args: &GlobalArgs, file: &FileConfig) -> Self {
        Self {
            filter: args
                .log
                .clone()
                .or_else(|| file.log.clone())
                .unwrap_or_else(|| DEFAULT_LOG.to_string()),
            format: args
                .log_format
                .or(file.log_format)
                .unwrap_or(LogFormat::Text),
        }
    }
}

impl DatabaseArgs {
    pub fn resolve(&self, file: &FileConfig) -> DatabaseSettings {
        DatabaseSettings {
            url: self
                .database_url
                .clone()
                .or_else(|| file.database_url.clone())
                .filter(|url| !url.is_empty()),
            data_dir: self
                .data_dir
                .clone()
                .or_else(|| file.data_dir.clone())
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            max_connections: self
                .db_max_connections
                .or(file.db_max_connections)
                .unwrap_or(DEFAULT_DB_MAX_CONNECTIONS),
            connect_timeout: Duration::from_secs(
                self.db_connect_timeout
                    .or(file.db_connect_timeout_s)
                    .unwrap_or(DEFAULT_DB_CONNECT_TIMEOUT_S),
            ),
            acquire_timeout: Duration::from_millis(
                self.db_acquire_timeout_ms
                    .or(file.db_acquire_timeout_ms)
                    .unwrap_or(DEFAULT_DB_ACQUIRE_TIMEOUT_MS)
                    .max(1),
            ),
        }
    }
}

pub fn resolve_listen(flag: Option<SocketAddr>, file: &FileConfig) -> SocketAddr {
    flag.or(file.listen)
        .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("default listen address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_env_override_the_file_which_overrides_defaults() {
        let file: FileConfig = toml::from_str(
            "database_url = \"postgres://file/db\"\ndata_dir = \"/file\"\ndb_max_connections = 3\n",
        )
        .unwrap();
        let args = DatabaseArgs {
            data_dir: Some(PathBuf::from("/flag")),
            ..Default::default()
        };
        let settings = args.resolve(&file);
        assert_eq!(settings.url.as_deref(), Some("postgres://file/db"));
        assert_eq!(settings.data_dir, PathBuf::from("/flag"));
        assert_eq!(settings.max_connections, 3);
        assert_eq!(
            settings.connect_timeout,
            Duration::from_secs(DEFAULT_DB_CONNECT_TIMEOUT_S)
        );

        let defaults = DatabaseArgs::default().resolve(&FileConfig::default());
        assert_eq!(defaults.url, None);
        assert_eq!(defaults.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    }

    #[test]
    fn an_empty_database_url_means_embedded() {
        let args = DatabaseArgs {
            database_url: Some(String::new()),
            ..Default::default()
        };
        assert_eq!(args.resolve(&FileConfig::default()).url, None);
    }

    #[test]
    fn back_pressure_and_retention_take_defaults_the_file_and_zero_for_off() {
        let defaults = ProtectionArgs::default().resolve(&ProtectionArgs::default());
        assert_eq!(
            defaults.ingest_per_token,
            Some(crate::http::RateLimit {
                per_second: DEFAULT_INGEST_RATE_LIMIT,
                burst: DEFAULT_INGEST_RATE_BURST
            })
        );
        assert_eq!(
            defaults.request_timeout,
            Some(Duration::from_secs(DEFAULT_REQUEST_TIMEOUT_S))
        );
        let file: FileConfig = toml::from_str(
            "api_rate_limit = 0\nrequest_timeout_s = 5\nretention_interval_s = 0\n\
             retention_batch_size = 7\ndb_acquire_timeout_ms = 250\ningest_rate_burst = 9\n",
        )
        .unwrap();
        let flags = ProtectionArgs {
            request_timeout_s: Some(0),
            ..Default::default()
        };
        let resolved = flags.resolve(&file.protection);
        assert_eq!(resolved.api_per_address, None);
        assert_eq!(resolved.request_timeout, None, "the flag wins");
        assert_eq!(resolved.ingest_per_token.unwrap().burst, 9);
        let retention = RetentionArgs::default().resolve(&file.retention);
        assert_eq!((retention.interval, retention.batch_size), (None, 7));
        let db = DatabaseArgs::default().resolve(&file);
        assert_eq!(db.acquire_timeout, Duration::from_millis(250));
        assert_eq!(
            DatabaseArgs::default()
                .resolve(&FileConfig::default())
                .acquire_timeout,
            Duration::from_millis(DEFAULT_DB_ACQUIRE_TIMEOUT_MS)
        );
    }

    #[test]
    fn unknown_keys_in_the_file_are_errors() {
        let error = toml::from_str::<FileConfig>("databse_url = \"x\"").unwrap_err();
        assert!(
            error.message().contains("unknown field `databse_url`"),
            "{error}"
        );
    }
}
