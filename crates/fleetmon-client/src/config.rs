//! What a [`Client`](crate::Client) needs to know: where to send, with which token, and the
//! limits that bound its memory, its batches and its patience.

use std::fmt;
use std::time::Duration;

/// Settings for a [`Client`](crate::Client). Build one with [`ClientConfig::new`] and adjust the
/// public fields; the defaults suit an agent sending a few hundred events per second.
#[derive(Clone)]
pub struct ClientConfig {
    /// The server's base URL, e.g. `http://fleetmon.internal:8080`. A path prefix is kept
    /// (`http://proxy/fleetmon` posts to `http://proxy/fleetmon/api/v1/ingest`).
    pub base_url: String,
    /// An `ingest` token, sent as `Authorization: Bearer …`. It is never logged, and
    /// `ClientConfig`'s `Debug` output redacts it.
    pub token: String,
    /// A batch is sent as soon as it holds this many events (default 500). Must be at least 1,
    /// and should stay below the server's per-request limit (5 000 by default); if it does not,
    /// the server answers 413 and the client splits the batch.
    pub max_batch_events: usize,
    /// A batch is sent at the latest this long after its oldest event was handed to
    /// [`Client::send`](crate::Client::send) (default 1 s), so a quiet agent still reports
    /// promptly.
    pub max_batch_delay: Duration,
    /// The most events the client holds at once: queued, batched and in flight (default 50 000).
    /// When it is reached, `send` refuses new events; see [`Client::send`](crate::Client::send).
    /// Must be at least 1.
    pub buffer_capacity: usize,
    /// Compress request bodies with gzip (default on): event JSON shrinks several-fold, which
    /// matters more to an agent's uplink than the CPU spent.
    pub gzip: bool,
    /// The limit for one HTTP request, connection to last response byte (default 10 s). A
    /// request that takes longer counts as a transient failure and is retried.
    pub request_timeout: Duration,
    /// The longest pause between two attempts of the same batch (default 30 s), including a
    /// pause asked for by `Retry-After`.
    pub max_backoff: Duration,
}

impl ClientConfig {
    /// Settings with every default, for the server at `base_url` and the given ingest token.
    pub fn new(base_url: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            token: token.into(),
            max_batch_events: 500,
            max_batch_delay: Duration::from_secs(1),
            buffer_capacity: 50_000,
            gzip: true,
            request_timeout: Duration::from_secs(10),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// Redacts the token, so that logging a config (or a struct holding one) cannot leak it.
impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("base_url", &self.base_url)
            .field("token", &"<redacted>")
            .field("max_batch_events", &self.max_batch_events)
            .field("max_batch_delay", &self.max_batch_delay)
            .field("buffer_capacity", &self.buffer_capacity)
            .field("gzip", &self.gzip)
            .field("request_timeout", &self.request_timeout)
            .field("max_backoff", &self.max_backoff)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let config = ClientConfig::new("http://localhost:8080", "secret");
        assert_eq!(config.max_batch_events, 500);
        assert_eq!(config.max_batch_delay, Duration::from_secs(1));
        assert_eq!(config.buffer_capacity, 50_000);
        assert!(config.gzip);
        assert_eq!(config.request_timeout, Duration::from_secs(10));
        assert_eq!(config.max_backoff, Duration::from_secs(30));
    }

    #[test]
    fn debug_output_redacts_the_token() {
        let config = ClientConfig::new("http://localhost:8080", "fm_ingest_very_secret");
        let shown = format!("{config:?}");
        assert!(!shown.contains("very_secret"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
