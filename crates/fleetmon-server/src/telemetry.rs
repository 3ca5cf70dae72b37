//! Logging to standard error, as text for people or JSON for log shippers.

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

#[derive(Debug, thiserror::Error)]
#[error("the log filter {filter:?} is not valid ({reason}); try `info` or `fleetmon_server=debug`")]
pub struct BadFilter {
    filter: String,
    reason: String,
}

pub fn init(settings: &LogSettings) -> Result<(), BadFilter> {
    let filter = EnvFilter::try_new(&settings.filter).map_err(|e| BadFilter {
        filter: settings.filter.clone(),
        reason: e.to_string(),
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // Ignore "already set": tests and embedders may have installed their own subscriber.
    let _ = match settings.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    Ok(())
}
