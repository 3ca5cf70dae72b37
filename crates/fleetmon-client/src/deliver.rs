//! Taking one batch to a final outcome: stored (possibly with per-event rejections), or given up
//! on because the server refused it. Transient failures are retried with the same bytes, hence
//! the same event ids, which the server deduplicates; so retrying can never store an event twice.

use std::sync::Arc;

use fleetmon_proto::ingest::{Batch, IngestResponse};
use reqwest::StatusCode;
use tracing::{error, warn};

use crate::backoff::Backoff;
use crate::stats::{self, Counters};
use crate::transport::{Outcome, Transport};

/// Sends batches one at a time, with retries, and keeps the counters.
#[derive(Debug)]
pub(crate) struct Delivery {
    transport: Transport,
    counters: Arc<Counters>,
    backoff: Backoff,
}

/// How [`Delivery::attempt`] left a batch.
enum Resolution {
    /// The batch's events are counted in one of the final counters.
    Resolved,
    /// The server said 413: the batch must be sent in smaller parts.
    TooLarge,
}

impl Delivery {
    pub(crate) fn new(transport: Transport, counters: Arc<Counters>, backoff: Backoff) -> Self {
        Self {
            transport,
            counters,
            backoff,
        }
    }

    /// Delivers `batch`, splitting it in halves for as long as the server finds it too large,
    /// and frees its buffer slots once every event in it is resolved. Returns only then: during
    /// an outage this waits as long as the outage lasts, while `send` keeps filling the buffer.
    pub(crate) async fn deliver(&mut self, batch: Batch) {
        // Parts still to send, the next one last: halves go out in their original order.
        let mut parts = vec![batch];
        while let Some(mut part) = parts.pop() {
            let events = part.events.len();
            match self.attempt(&part).await {
                Resolution::Resolved => self.counters.release(events),
                Resolution::TooLarge => {
                    let second = part.events.split_off(events / 2);
                    warn!(
                        events,
                        "the server found the batch too large (413); sending it in two halves"
                    );
                    parts.push(Batch { events: second });
                    parts.push(part);
                }
            }
        }
    }

    /// Sends one batch until the server gives a definitive answer.
    async fn attempt(&mut self, batch: &Batch) -> Resolution {
        let events = batch.events.len();
        let body = match self.transport.encode(batch) {
            Ok(body) => body,
            Err(error) => {
                error!(%error, events, "could not encode a batch; its events are dropped");
                stats::add(&self.counters.failed, events);
                return Resolution::Resolved;
            }
        };
        self.backoff.reset();
        let mut attempt: u32 = 1;
        loop {
            match self.transport.post(body.clone()).await {
                Outcome::Ingested(response) => {
                    self.record(batch, response);
                    return Resolution::Resolved;
                }
                Outcome::Transient { cause, retry_after } => {
                    let delay = self.backoff.next_delay(retry_after);
                    warn!(
                        %cause,
                        attempt,
                        events,
                        retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        "ingest attempt failed; will resend the same batch"
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                    stats::add(&self.counters.retries, 1);
                }
                Outcome::Refused { status, .. }
                    if status == StatusCode::PAYLOAD_TOO_LARGE && events > 1 =>
                {
                    return Resolution::TooLarge;
                }
                Outcome::Refused { status, error } => {
                    let (code, message) = error
                        .as_ref()
                        .map_or(("", ""), |e| (e.code.as_str(), e.message.as_str()));
                    error!(
                        status = status.as_u16(),
                        code,
                        message,
                        events,
                        "the server refused an ingest request; its events are dropped"
                    );
                    stats::add(&self.counters.failed, events);
                    return Resolution::Resolved;
                }
                Outcome::Unreadable { status, reason } => {
                    error!(
                        status = status.as_u16(),
                        %reason,
                        events,
                        "the ingest answer is not an ingest response (is base_url right?); \
                         its events are counted as failed"
                    );
                    stats::add(&self.counters.failed, events);
                    return Resolution::Resolved;
                }
            }
        }
    }

    fn record(&self, batch: &Batch, response: IngestResponse) {
        let counters = &self.counters;
        stats::add(&counters.sent_batches, 1);
        stats::add(&counters.accepted, response.accepted as usize);
        stats::add(&counters.duplicates, response.duplicates as usize);
        stats::add(&counters.rejected, response.rejected.len());
        for rejection in &response.rejected {
            let event_id = batch.events.get(rejection.index as usize).map(|e| e.id);
            warn!(
                index = rejection.index,
                event_id = ?event_id,
                code = %rejection.code,
                message = %rejection.message,
                "the server rejected an event; it will not be resent"
            );
        }
    }
}
