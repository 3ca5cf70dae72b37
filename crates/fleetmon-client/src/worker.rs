//! The background task: gathers queued events into batches by size and by age, and hands each
//! batch to delivery, one at a time, in the order the events were sent.

use std::mem;
use std::time::Duration;

use fleetmon_proto::ingest::{Batch, Event};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, Instant};

use crate::deliver::Delivery;

/// What the [`Client`](crate::Client) handles tell the task, in one channel so that a flush is
/// ordered after every event sent before it.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "nearly every command is an event; boxing would cost an allocation per event to \
              save bytes on rare flushes"
)]
pub(crate) enum Command {
    /// An event and when `send` took it, which is when its batch's delay starts: an event
    /// that waited in the channel during a long retry must not wait a full delay more.
    Event(Event, Instant),
    /// Deliver everything received so far, then answer.
    Flush(oneshot::Sender<()>),
    /// Take no more events, deliver everything received so far, answer and stop.
    Shutdown(oneshot::Sender<()>),
}

/// How batches are cut.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Batching {
    pub(crate) max_events: usize,
    pub(crate) max_delay: Duration,
}

/// Runs until a shutdown is asked for or every `Client` handle is gone; either way, what was
/// already queued is delivered first (a dropped client does not lose its last events while the
/// runtime lives).
pub(crate) async fn run(
    mut commands: mpsc::UnboundedReceiver<Command>,
    mut delivery: Delivery,
    batching: Batching,
) {
    let mut batch: Vec<Event> = Vec::new();
    // When the oldest event in `batch` is due; meaningless while `batch` is empty.
    let mut due = Instant::now();
    let mut stopped = Vec::new();
    loop {
        let command = if batch.is_empty() {
            commands.recv().await
        } else {
            tokio::select! {
                // Events first: if the batch is due but more events are already waiting, take
                // them along (up to the size limit) rather than sending a batch early.
                biased;
                command = commands.recv() => command,
                () = sleep_until(due) => {
                    delivery.deliver(Batch { events: mem::take(&mut batch) }).await;
                    continue;
                }
            }
        };
        match command {
            Some(Command::Event(event, sent_at)) => {
                if batch.is_empty() {
                    due = sent_at + batching.max_delay;
                }
                batch.push(event);
                if batch.len() >= batching.max_events {
                    delivery
                        .deliver(Batch {
                            events: mem::take(&mut batch),
                        })
                        .await;
                }
            }
            Some(Command::Flush(done)) => {
                if !batch.is_empty() {
                    delivery
                        .deliver(Batch {
                            events: mem::take(&mut batch),
                        })
                        .await;
                }
                // The caller may have stopped waiting; that is its business.
                let _ = done.send(());
            }
            Some(Command::Shutdown(done)) => {
                // Refuses further sends, yet still yields what is already in the channel, so
                // events racing the shutdown from other handles are delivered, not lost.
                commands.close();
                stopped.push(done);
            }
            None => break,
        }
    }
    if !batch.is_empty() {
        delivery.deliver(Batch { events: batch }).await;
    }
    for done in stopped {
        let _ = done.send(());
    }
}
