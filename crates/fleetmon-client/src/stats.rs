//! Counters shared between the agent's threads and the delivery task. They are plain atomics so
//! that reading them never contends with `send`, and so an agent can export them as its own
//! metrics: a client that silently loses events is worse than one that loses them visibly.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// A snapshot of a client's counters, from [`Client::stats`](crate::Client::stats).
///
/// Every event handed to `send` ends up in exactly one place:
/// `dropped` (refused at once), `queued` (still held), or, once the server has answered for it,
/// `accepted`, `duplicates`, `rejected` (as the server counted them) or `failed`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Events accepted by `send` and not yet delivered or given up on: buffered, batched or in
    /// flight. Never more than [`buffer_capacity`](crate::ClientConfig::buffer_capacity).
    pub queued: u64,
    /// Requests the server answered with success (a batch split after a 413 counts each part).
    pub sent_batches: u64,
    /// Events the server stored.
    pub accepted: u64,
    /// Events the server already had, from an earlier attempt whose answer was lost, or sent
    /// twice by the agent. Harmless.
    pub duplicates: u64,
    /// Events the server refused one by one (each is logged at `warn` with its code); they are
    /// not resent, since the same event would be refused again.
    pub rejected: u64,
    /// Events given up on because the server refused the whole request (401, 403, 400, a 413 for
    /// a single event, …) or answered in a way the client could not read. Logged at `error`.
    pub failed: u64,
    /// Events `send` refused because the buffer was full.
    pub dropped: u64,
    /// Requests re-sent after a transient failure (network error, timeout, 429 or 5xx).
    pub retries: u64,
}

/// The live counters behind [`Stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Also the admission gate: `send` reserves a slot here before enqueueing, which is what
    /// bounds the buffer.
    pub(crate) queued: AtomicUsize,
    pub(crate) sent_batches: AtomicU64,
    pub(crate) accepted: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) retries: AtomicU64,
}

impl Counters {
    /// Takes one slot of the buffer, unless all `capacity` slots are taken.
    pub(crate) fn try_reserve(&self, capacity: usize) -> bool {
        self.queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                (queued < capacity).then_some(queued + 1)
            })
            .is_ok()
    }

    /// Gives back `events` slots, once those events are resolved one way or another.
    pub(crate) fn release(&self, events: usize) {
        self.queued.fetch_sub(events, Ordering::AcqRel);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Stats {
            queued: self.queued.load(Ordering::Acquire) as u64,
            sent_batches: load(&self.sent_batches),
            accepted: load(&self.accepted),
            duplicates: load(&self.duplicates),
            rejected: load(&self.rejected),
            failed: load(&self.failed),
            dropped: load(&self.dropped),
            retries: load(&self.retries),
        }
    }
}

/// Adds `n` to one of the final counters. Relaxed: each counter is a tally read on its own, and
/// no other memory is published through it.
pub(crate) fn add(counter: &AtomicU64, n: usize) {
    // usize -> u64 cannot truncate on any platform Rust supports.
    counter.fetch_add(n as u64, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_stops_at_capacity_and_release_frees_slots() {
        let counters = Counters::default();
        assert!(counters.try_reserve(2));
        assert!(counters.try_reserve(2));
        assert!(!counters.try_reserve(2));
        counters.release(1);
        assert!(counters.try_reserve(2));
        assert_eq!(counters.snapshot().queued, 2);
    }
}
