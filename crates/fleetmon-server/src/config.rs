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
}

/// The optional `fleetmon.toml`. Unknown keys are errors, so a typo never silently does nothing.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub database_url: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub db_max_connections: Option<u32>,
    pub db_connect_timeout_s: Option<u64>,
    pub listen: Option<SocketAddr>,
    pub log: Option<String>,
    pub log_format: Option<LogFormat>,
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
    fn unknown_keys_in_the_file_are_errors() {
        let error = toml::from_str::<FileConfig>("databse_url = \"x\"").unwrap_err();
        assert!(
            error.message().contains("unknown field `databse_url`"),
            "{error}"
        );
    }
}
