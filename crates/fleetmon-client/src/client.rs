//! The handle agents hold: a cheap, clonable, non-blocking way to enqueue events for the
//! background delivery task.

use std::sync::Arc;

use fleetmon_proto::ingest::Event;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::deliver::Delivery;
use crate::stats::{self, Counters};
use crate::transport::Transport;
use crate::worker::{self, Batching, Command};
use crate::{ClientConfig, SendError, StartError, Stats};

/// Sends events to a fleetmon server in the background. Clones share one buffer, one
/// connection pool and one set of counters.
///
/// Batches are delivered one at a time, in the order their events were sent; each is retried
/// until the server gives a definitive answer. See [`Client::send`] for what happens when the
/// server stays away long enough for the buffer to fill.
#[derive(Debug, Clone)]
pub struct Client {
    commands: mpsc::UnboundedSender<Command>,
    counters: Arc<Counters>,
    capacity: usize,
}

impl Client {
    /// Checks `config` and starts the delivery task on the current Tokio runtime.
    ///
    /// Fails on settings that could never work (a malformed or non-HTTP `base_url`, `https`
    /// without the `rustls` feature, a token that is not a valid header value, a zero limit) or
    /// when called outside a runtime, rather than leaving a task that retries forever.
    pub fn start(config: ClientConfig) -> Result<Self, StartError> {
        if config.max_batch_events == 0 {
            return Err(StartError::ZeroLimit("max_batch_events"));
        }
        if config.buffer_capacity == 0 {
            return Err(StartError::ZeroLimit("buffer_capacity"));
        }
        let runtime = Handle::try_current().map_err(|_| StartError::NoRuntime)?;
        let transport = Transport::new(&config)?;
        let counters = Arc::new(Counters::default());
        let delivery = Delivery::new(
            transport,
            Arc::clone(&counters),
            Backoff::new(config.max_backoff),
        );
        let (commands, receiver) = mpsc::unbounded_channel();
        let batching = Batching {
            max_events: config.max_batch_events,
            max_delay: config.max_batch_delay,
        };
        runtime.spawn(worker::run(receiver, delivery, batching));
        Ok(Self {
            commands,
            counters,
            capacity: config.buffer_capacity,
        })
    }

    /// Queues `event` for delivery and returns at once: it never waits on the network or on a
    /// lock held across I/O, so it is safe on an agent's hot path, from async code or plain
    /// threads.
    ///
    /// **When the buffer is full, the newest event is dropped.** The client holds at most
    /// [`buffer_capacity`](ClientConfig::buffer_capacity) events (queued, batched and in flight
    /// together). An event arriving when that many are held is not queued: `send` returns
    /// [`SendError::BufferFull`] and counts it in [`Stats::dropped`]. Older events are kept
    /// because they are already batched or in flight, and because an agent's latest state is
    /// reported again by its next heartbeat anyway, whereas a lost `job.completed` from before
    /// the outage is not. The buffer never grows beyond its capacity and `send` never blocks.
    ///
    /// After [`shutdown`](Client::shutdown), `send` returns [`SendError::Closed`].
    pub fn send(&self, event: Event) -> Result<(), SendError> {
        if self.commands.is_closed() {
            return Err(SendError::Closed);
        }
        if !self.counters.try_reserve(self.capacity) {
            stats::add(&self.counters.dropped, 1);
            return Err(SendError::BufferFull);
        }
        if self
            .commands
            .send(Command::Event(event, Instant::now()))
            .is_err()
        {
            self.counters.release(1);
            return Err(SendError::Closed);
        }
        Ok(())
    }

    /// A snapshot of the counters; cheap enough to call for every metrics scrape.
    pub fn stats(&self) -> Stats {
        self.counters.snapshot()
    }

    /// Waits until every event sent before this call (from any clone) has been delivered or
    /// definitively given up on, without waiting for the batch delay. Events sent meanwhile
    /// are not waited for.
    ///
    /// While the server is unreachable this waits as long as it stays so; wrap it in
    /// [`tokio::time::timeout`] to bound the wait (delivery goes on in the background).
    pub async fn flush(&self) {
        let (done, finished) = oneshot::channel();
        if self.commands.send(Command::Flush(done)).is_ok() {
            // An error means the task is gone, so there is nothing left to wait for.
            let _ = finished.await;
        }
    }

    /// Flushes, then stops the delivery task; every clone's `send` fails from then on. Events
    /// other clones send while the shutdown is under way are still delivered.
    ///
    /// Like [`flush`](Client::flush), this waits out an outage; bound it with
    /// [`tokio::time::timeout`] when the agent must exit on time.
    pub async fn shutdown(self) {
        let (done, finished) = oneshot::channel();
        if self.commands.send(Command::Shutdown(done)).is_ok() {
            let _ = finished.await;
        }
    }
}
