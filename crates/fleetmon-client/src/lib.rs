//! The fleetmon agent SDK: hand events to a [`Client`] and it delivers them to
//! `POST /api/v1/ingest` in the background, batched, gzipped, and retried through outages.
//!
//! Agents must never stall because the monitoring service is slow or down, so
//! [`Client::send`] only enqueues, into a buffer of bounded size that drops the newest events
//! when full (see [`Client::send`]). Resending is safe because the server deduplicates events by
//! `id`, so every transient failure is retried with the same batch. Everything that does go
//! wrong is logged with `tracing` and counted in [`Stats`].
//!
//! ```no_run
//! use fleetmon_client::{event, Client, ClientConfig};
//! use fleetmon_client::fleetmon_proto::ingest::{EventBody, JobRef};
//!
//! # async fn agent() -> Result<(), fleetmon_client::StartError> {
//! let client = Client::start(ClientConfig::new("http://fleetmon:8080", "fm_ingest_…"))?;
//! if let Err(error) = client.send(event(EventBody::JobStarted(JobRef::new("job-42")))) {
//!     tracing::debug!(%error, "event not queued");
//! }
//! // At exit: deliver what is queued (bounded, in case the server is down).
//! let _ = tokio::time::timeout(std::time::Duration::from_secs(5), client.shutdown()).await;
//! # Ok(())
//! # }
//! ```

mod backoff;
mod client;
mod config;
mod deliver;
mod error;
mod event;
mod stats;
mod transport;
mod worker;

pub use client::Client;
pub use config::ClientConfig;
pub use error::{SendError, StartError};
pub use event::event;
/// The wire types, re-exported so that agents need no direct dependency to build events.
pub use fleetmon_proto;
pub use fleetmon_proto::ingest::{Event, EventBody};
pub use stats::Stats;
