//! The two ways the SDK says no: at start (bad settings) and at send (no room, or stopped).
//! Delivery problems are not errors returned to the caller: they are retried, or logged and
//! counted in [`Stats`](crate::Stats), because the agent's hot path must not wait on the network.

/// Why [`Client::send`](crate::Client::send) refused an event. The event is gone either way; the
/// caller keeps working.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The buffer holds [`buffer_capacity`](crate::ClientConfig::buffer_capacity) events
    /// already, typically because the server has been unreachable for a while. The event was
    /// dropped and counted in [`Stats::dropped`](crate::Stats::dropped).
    #[error("the fleetmon client buffer is full; the event was dropped")]
    BufferFull,
    /// The client was shut down; nothing more is sent.
    #[error("the fleetmon client has been shut down")]
    Closed,
}

/// Why [`Client::start`](crate::Client::start) could not start. All of these are mistakes in the
/// settings or the environment that retrying would not fix, so they are reported up front
/// rather than discovered by a background task that would retry forever.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// `base_url` is not an absolute `http` or `https` URL.
    #[error("invalid base_url {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// `base_url` is `https` but the crate was built without the `rustls` feature.
    #[error("base_url uses https, but fleetmon-client was built without the `rustls` feature")]
    HttpsUnsupported,
    /// The token cannot be sent in an HTTP header (for instance it contains a line break).
    #[error("the token contains characters that cannot be sent in an HTTP header")]
    InvalidToken,
    /// A limit that must be positive is zero.
    #[error("{0} must be at least 1")]
    ZeroLimit(&'static str),
    /// `start` was called outside a Tokio runtime, where no background task can run.
    #[error("Client::start must be called from within a Tokio runtime")]
    NoRuntime,
    /// The HTTP client could not be built.
    #[error("could not build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}
