//! The fan-out inside one process: the listener hands each notification to the org it names,
//! and every streaming client of that org has a mailbox there.
//!
//! Deliveries are numbered in the order they arrive, which is the order the writes committed.
//! Each org served here keeps its recent deliveries in one log shared by all its clients (at most
//! [`RECENT_IDS`] ids, at most [`RECENT_FOR`] old). A client's mailbox holds no ids, only the
//! number of the last delivery the client has been brought to: what it is owed is the log after
//! that number, read when it is next pushed to — and read once for all the org's clients at the
//! same number (see `http::stream`). So a delivery costs the same however many clients the org
//! has, and a client that never reads costs nothing that grows: once the log has dropped a
//! delivery it was not sent, it is marked for a resync instead.
//!
//! A client that reconnects with the number it last saw is brought up from there when the log
//! still has everything since. Event ids name the process too: a number from another process
//! (another replica, or before a restart) cannot be served and means a resync.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};
use uuid::Uuid;

use super::changes::{Changes, MAX_IDS};
use crate::instruments;

/// How long an org's deliveries are kept for clients that reconnect; also how long an org is
/// remembered after its last client left.
pub const RECENT_FOR: Duration = Duration::from_secs(600);

/// Most ids an org's log keeps: ten full pushes. A client further behind reloads instead.
pub const RECENT_IDS: usize = 10 * MAX_IDS;

/// Why a client must reload everything instead of being told what changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resync {
    /// The listener's connection was lost: notifications may have been missed meanwhile.
    ListenerReconnected,
    /// More changes than one push carries (a huge write, or a client reading too slowly).
    TooManyChanges,
    /// The `Last-Event-ID` a client reconnected with cannot be caught up with here.
    GapUnavailable,
    /// Loading the changed rows failed.
    LoadFailed,
}

impl Resync {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ListenerReconnected => "listener_reconnected",
            Self::TooManyChanges => "too_many_changes",
            Self::GapUnavailable => "gap_unavailable",
            Self::LoadFailed => "load_failed",
        }
    }
}

/// What a client is owed: the deliveries after `seen`, or a reload when `resync` says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Owed {
    pub seen: u64,
    pub resync: Option<Resync>,
}

struct Mailbox {
    state: Mutex<MailboxState>,
    wake: Notify,
}

struct MailboxState {
    /// The last delivery the client has been brought to.
    seen: u64,
    /// The last delivery to the client's org.
    latest: u64,
    resync: Option<Resync>,
    closed: bool,
}

impl Mailbox {
    fn new(seen: u64, latest: u64) -> Self {
        Self {
            state: Mutex::new(MailboxState {
                seen,
                latest,
                resync: None,
                closed: false,
            }),
            wake: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MailboxState> {
        self.state.lock().expect("mailbox lock")
    }

    fn delivered(&self, seq: u64) {
        self.lock().latest = seq;
        self.wake.notify_one();
    }

    /// Marks the client for a resync; returns whether it was not marked yet.
    fn resync(&self, reason: Resync) -> bool {
        let fresh = {
            let mut state = self.lock();
            let fresh = state.resync.is_none();
            state.resync.get_or_insert(reason);
            fresh
        };
        self.wake.notify_one();
        fresh
    }

    fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_one();
    }
}

/// An org's recent deliveries: every one numbered after `complete_after` is here.
struct Recent {
    entries: VecDeque<(u64, Instant, Changes)>,
    ids: usize,
    complete_after: u64,
}

impl Recent {
    fn starting_after(seq: u64) -> Self {
        Self {
            entries: VecDeque::new(),
            ids: 0,
            complete_after: seq,
        }
    }

    fn push(&mut self, seq: u64, changes: Changes) {
        self.ids += changes.len();
        self.entries.push_back((seq, Instant::now(), changes));
        self.expire();
    }

    fn expire(&mut self) {
        while let Some((seq, at, changes)) = self.entries.front() {
            if self.ids <= RECENT_IDS && at.elapsed() <= RECENT_FOR {
                break;
            }
            self.ids -= changes.len();
            self.complete_after = *seq;
            self.entries.pop_front();
        }
    }

    /// Forgets everything up to `seq`: what came before cannot be told any more.
    fn forget(&mut self, seq: u64) {
        *self = Self::starting_after(seq);
    }

    fn covers(&self, seq: u64) -> bool {
        seq >= self.complete_after
    }

    /// What was delivered after `seq`, if all of it is still here.
    fn since(&self, seq: u64) -> Option<Changes> {
        if !self.covers(seq) {
            return None;
        }
        let mut changes = Changes::default();
        for (_, _, delivered) in self.entries.iter().filter(|(s, _, _)| *s > seq) {
            changes.extend(delivered.clone());
        }
        Some(changes)
    }

    /// How many ids were delivered after `seq` (counting repeats).
    fn ids_after(&self, seq: u64) -> usize {
        let entries = self.entries.iter().filter(|(s, _, _)| *s > seq);
        entries.map(|(_, _, changes)| changes.len()).sum()
    }
}

struct OrgEntry {
    clients: HashMap<u64, Arc<Mailbox>>,
    recent: Recent,
    /// Since when the org has had no client here.
    idle_since: Option<Instant>,
}

impl OrgEntry {
    /// Marks for a resync the clients owed deliveries the log has dropped; returns how many.
    fn resync_uncovered(&self) -> u64 {
        let mut marked = 0;
        for mailbox in self.clients.values() {
            let behind = !self.recent.covers(mailbox.lock().seen);
            if behind && mailbox.resync(Resync::TooManyChanges) {
                marked += 1;
            }
        }
        marked
    }
}

#[derive(Default)]
struct Subscribers {
    next_client: u64,
    /// The number of the last delivery (or reconnection of the listener).
    seq: u64,
    deliveries: u64,
    by_org: HashMap<Uuid, OrgEntry>,
    closed: bool,
}

impl Subscribers {
    fn mailboxes(&self) -> impl Iterator<Item = &Arc<Mailbox>> {
        self.by_org.values().flat_map(|o| o.clients.values())
    }

    /// Drops orgs that have had no client for [`RECENT_FOR`].
    fn sweep(&mut self) {
        self.by_org.retain(|_, org| {
            org.idle_since
                .is_none_or(|idle| idle.elapsed() <= RECENT_FOR)
        });
        for org in self.by_org.values_mut() {
            org.recent.expire();
        }
    }
}

/// The process's clients, by org, and what the listener reports.
pub struct Hub {
    /// Names this process in event ids.
    epoch: String,
    subscribers: Mutex<Subscribers>,
    listening: watch::Sender<bool>,
    reconnects: AtomicU64,
    overflows: AtomicU64,
    /// Microseconds the listener's last probe took from `NOTIFY` back to it; 0 before one did.
    notify_lag_us: AtomicU64,
}

impl Default for Hub {
    fn default() -> Self {
        Self {
            epoch: Uuid::new_v4().simple().to_string()[..8].to_string(),
            subscribers: Mutex::default(),
            listening: watch::channel(false).0,
            reconnects: AtomicU64::new(0),
            overflows: AtomicU64::new(0),
            notify_lag_us: AtomicU64::new(0),
        }
    }
}

/// A snapshot of the hub, for operators and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubStats {
    /// Streaming clients connected to this process.
    pub clients: usize,
    /// Whether the listener is connected and listening.
    pub listening: bool,
    /// Notifications of changes received so far.
    pub deliveries: u64,
    /// How often the listener lost its connection.
    pub reconnects: u64,
    /// How often a client fell so far behind that it was marked for a resync.
    pub overflows: u64,
    /// The most ids any one client is owed from its org's log right now (never more than
    /// [`RECENT_IDS`]).
    pub most_pending: usize,
    /// How long the listener's last probe took to come back.
    pub notify_lag: Option<Duration>,
}

/// How a new subscription starts: the id of the state it starts from, and whether the client
/// must first reload everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    pub id: String,
    pub resync: Option<Resync>,
}

impl Hub {
    /// The event id of the state after delivery `seq`.
    pub fn event_id(&self, seq: u64) -> String {
        format!("{}-{seq}", self.epoch)
    }

    fn parse_event_id(&self, id: &str) -> Option<u64> {
        let (epoch, seq) = id.trim().split_once('-')?;
        (epoch == self.epoch).then(|| seq.parse().ok()).flatten()
    }

    /// A mailbox for a client of `org`, removed again when the subscription is dropped. A
    /// client resuming after the event id `resume` is owed what changed since, when that is
    /// known here, or else is told to resync.
    pub fn subscribe(self: &Arc<Self>, org: Uuid, resume: Option<&str>) -> (Subscription, Start) {
        let mut subscribers = self.subscribers.lock().expect("hub lock");
        subscribers.sweep();
        subscribers.next_client += 1;
        let (id, seq, closed) = (subscribers.next_client, subscribers.seq, subscribers.closed);
        let entry = subscribers.by_org.entry(org).or_insert_with(|| OrgEntry {
            clients: HashMap::new(),
            recent: Recent::starting_after(seq),
            idle_since: None,
        });
        entry.idle_since = None;
        let resumed = resume.map(|resume| {
            self.parse_event_id(resume)
                .filter(|s| *s <= seq && entry.recent.covers(*s))
        });
        let resync = matches!(resumed, Some(None)).then_some(Resync::GapUnavailable);
        let mailbox = Arc::new(Mailbox::new(resumed.flatten().unwrap_or(seq), seq));
        if closed {
            mailbox.close();
        }
        entry.clients.insert(id, mailbox.clone());
        instruments::stream_clients(1);
        let subscription = Subscription {
            hub: self.clone(),
            org,
            id,
            mailbox,
        };
        let start = Start {
            id: self.event_id(resumed.flatten().unwrap_or(seq)),
            resync,
        };
        (subscription, start)
    }

    /// Tells the clients of `org` what changed there.
    pub fn deliver(&self, org: Uuid, changes: Changes) {
        let mut subscribers = self.subscribers.lock().expect("hub lock");
        subscribers.seq += 1;
        subscribers.deliveries += 1;
        instruments::change_notification();
        let seq = subscribers.seq;
        let Some(entry) = subscribers.by_org.get_mut(&org) else {
            return;
        };
        let dropped_before = entry.recent.complete_after;
        entry.recent.push(seq, changes);
        if entry.recent.complete_after != dropped_before {
            let marked = entry.resync_uncovered();
            self.overflows.fetch_add(marked, Ordering::Relaxed);
        }
        for mailbox in entry.clients.values() {
            mailbox.delivered(seq);
        }
    }

    /// Tells the clients of `org` to reload: too much changed there to list.
    pub fn deliver_everything(&self, org: Uuid) {
        let mut subscribers = self.subscribers.lock().expect("hub lock");
        subscribers.seq += 1;
        subscribers.deliveries += 1;
        instruments::change_notification();
        let seq = subscribers.seq;
        if let Some(entry) = subscribers.by_org.get_mut(&org) {
            entry.recent.forget(seq);
            for mailbox in entry.clients.values() {
                mailbox.resync(Resync::TooManyChanges);
            }
        }
    }

    /// The number of the last delivery now, and for each of `seen`, what `org` was delivered
    /// after it — or `None` where the log no longer has all of that.
    pub fn catch_up(&self, org: Uuid, seen: &[u64]) -> (u64, Vec<Option<Changes>>) {
        let subscribers = self.subscribers.lock().expect("hub lock");
        let recent = subscribers.by_org.get(&org).map(|entry| &entry.recent);
        let owed = seen
            .iter()
            .map(|&seq| match recent {
                Some(recent) => recent.since(seq),
                None => Some(Changes::default()),
            })
            .collect();
        (subscribers.seq, owed)
    }

    /// Whether the listener is listening. On every (re)connection all clients resync and the
    /// recent deliveries are forgotten, since notifications sent while not listening are lost.
    pub fn set_listening(&self, listening: bool) {
        let was = self.listening.send_replace(listening);
        if was != listening {
            instruments::change_listener(listening);
        }
        if listening && !was {
            let mut subscribers = self.subscribers.lock().expect("hub lock");
            subscribers.seq += 1;
            let seq = subscribers.seq;
            for entry in subscribers.by_org.values_mut() {
                entry.recent.forget(seq);
            }
            for mailbox in subscribers.mailboxes() {
                mailbox.resync(Resync::ListenerReconnected);
            }
        }
        if was && !listening {
            self.reconnects.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits up to `limit` for the listener to be listening; returns whether it is.
    pub async fn wait_listening(&self, limit: Duration) -> bool {
        let mut listening = self.listening.subscribe();
        tokio::time::timeout(limit, listening.wait_for(|l| *l))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    pub fn record_notify_lag(&self, lag: Duration) {
        let micros = u64::try_from(lag.as_micros()).unwrap_or(u64::MAX).max(1);
        self.notify_lag_us.store(micros, Ordering::Relaxed);
        instruments::notify_lag(lag);
    }

    /// Ends every stream, now and from now on (server shutdown).
    pub fn close(&self) {
        let mut subscribers = self.subscribers.lock().expect("hub lock");
        subscribers.closed = true;
        for mailbox in subscribers.mailboxes() {
            mailbox.close();
        }
    }

    pub fn stats(&self) -> HubStats {
        let subscribers = self.subscribers.lock().expect("hub lock");
        let lag = self.notify_lag_us.load(Ordering::Relaxed);
        let owed = subscribers.by_org.values().flat_map(|org| {
            org.clients
                .values()
                .map(|mailbox| org.recent.ids_after(mailbox.lock().seen))
        });
        HubStats {
            clients: subscribers.mailboxes().count(),
            listening: *self.listening.borrow(),
            deliveries: subscribers.deliveries,
            reconnects: self.reconnects.load(Ordering::Relaxed),
            overflows: self.overflows.load(Ordering::Relaxed),
            most_pending: owed.max().unwrap_or(0),
            notify_lag: (lag > 0).then(|| Duration::from_micros(lag)),
        }
    }
}

/// One client's mailbox. Dropping it unsubscribes.
pub struct Subscription {
    hub: Arc<Hub>,
    org: Uuid,
    id: u64,
    mailbox: Arc<Mailbox>,
}

impl Subscription {
    /// Waits until the client is owed something; `false` once the hub has closed. Cancel-safe.
    pub async fn changed(&self) -> bool {
        loop {
            {
                let state = self.mailbox.lock();
                if state.closed {
                    return false;
                }
                if state.resync.is_some() || state.latest > state.seen {
                    return true;
                }
            }
            // A wake-up sent since the look above is kept for this wait (`notify_one`).
            self.mailbox.wake.notified().await;
        }
    }

    /// What the client is owed, taking a pending resync: the push that follows serves it.
    pub fn owed(&self) -> Owed {
        let mut state = self.mailbox.lock();
        Owed {
            seen: state.seen,
            resync: state.resync.take(),
        }
    }

    /// Records that the client has been sent the state after delivery `seq`.
    pub fn brought_to(&self, seq: u64) {
        let mut state = self.mailbox.lock();
        state.seen = state.seen.max(seq);
    }

    /// Marks the client for a resync (its changes could not be loaded).
    pub fn resync(&self, reason: Resync) {
        self.mailbox.resync(reason);
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        instruments::stream_clients(-1);
        let mut subscribers = self.hub.subscribers.lock().expect("hub lock");
        if let Some(org) = subscribers.by_org.get_mut(&self.org) {
            org.clients.remove(&self.id);
            if org.clients.is_empty() {
                org.idle_since = Some(Instant::now());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jobs(range: std::ops::Range<usize>) -> Changes {
        Changes {
            jobs: range.map(|i| format!("j{i}")).collect(),
            ..Changes::default()
        }
    }

    /// What `client` is owed now, as a push would find it, and the push's delivery number.
    fn owed(hub: &Hub, org: Uuid, client: &Subscription) -> (Option<Changes>, Option<Resync>, u64) {
        let owed = client.owed();
        let (seq, mut changes) = hub.catch_up(org, &[owed.seen]);
        (changes.pop().unwrap(), owed.resync, seq)
    }

    #[tokio::test]
    async fn changes_reach_their_org_only_merged_and_bounded() {
        let hub = Arc::new(Hub::default());
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let (client_a, _) = hub.subscribe(a, None);
        let (client_b, _) = hub.subscribe(b, None);
        hub.deliver(a, jobs(0..3));
        hub.deliver(a, jobs(2..5));
        assert!(client_a.changed().await);
        let (changes, resync, seq) = owed(&hub, a, &client_a);
        assert_eq!(changes, Some(jobs(0..5)), "merged, each id once");
        assert_eq!(resync, None);
        client_a.brought_to(seq);
        assert_eq!(owed(&hub, a, &client_a).0, Some(Changes::default()));
        assert_eq!(
            owed(&hub, b, &client_b).0,
            Some(Changes::default()),
            "another org's changes"
        );

        // A client that is never pushed to is marked for a resync once the log drops what it
        // is owed; the log never holds more than its bound.
        for n in 0..(RECENT_IDS / 100 + 2) {
            hub.deliver(a, jobs(n * 100..n * 100 + 100));
            assert!(hub.stats().most_pending <= RECENT_IDS);
        }
        let stats = hub.stats();
        assert_eq!((stats.clients, stats.overflows), (2, 1));
        let (changes, resync, _) = owed(&hub, a, &client_a);
        assert_eq!(resync, Some(Resync::TooManyChanges));
        assert_eq!(changes, None, "the log no longer has all of it");

        drop(client_b);
        assert_eq!(hub.stats().clients, 1);
    }

    #[tokio::test]
    async fn a_client_resuming_here_gets_what_it_missed_or_a_resync() {
        let hub = Arc::new(Hub::default());
        let org = Uuid::new_v4();
        let (client, start) = hub.subscribe(org, None);
        assert_eq!(start.resync, None);
        hub.deliver(org, jobs(0..2));
        let (_, _, seq) = owed(&hub, org, &client);
        let seen = hub.event_id(seq);
        drop(client);
        hub.deliver(org, jobs(5..7));
        hub.deliver(Uuid::new_v4(), jobs(100..101));
        hub.deliver(org, jobs(6..8));

        let (client, start) = hub.subscribe(org, Some(&seen));
        assert_eq!(
            start,
            Start {
                id: seen,
                resync: None
            }
        );
        assert!(client.changed().await);
        let (changes, _, now) = owed(&hub, org, &client);
        assert_eq!(changes, Some(jobs(5..8)), "what came after `seen`");
        let now = hub.event_id(now);

        for unknown in ["", "nonsense", "00000000-1", &format!("{}-999", hub.epoch)] {
            let (_, start) = hub.subscribe(org, Some(unknown));
            assert_eq!(start.resync, Some(Resync::GapUnavailable), "{unknown:?}");
        }
        // Past RECENT_IDS ids, the oldest deliveries are forgotten.
        for n in 0..(RECENT_IDS / 100 + 1) {
            hub.deliver(org, jobs(1000 + n * 100..1000 + n * 100 + 100));
        }
        assert_eq!(
            hub.subscribe(org, Some(&now)).1.resync,
            Some(Resync::GapUnavailable)
        );
        // After a reconnection of the listener, nothing earlier can be told.
        let recent = hub.event_id(hub.catch_up(org, &[]).0);
        assert_eq!(hub.subscribe(org, Some(&recent)).1.resync, None);
        hub.set_listening(true);
        assert_eq!(
            hub.subscribe(org, Some(&recent)).1.resync,
            Some(Resync::GapUnavailable)
        );
    }

    #[tokio::test]
    async fn reconnecting_resyncs_everyone_and_closing_ends_every_stream() {
        let hub = Arc::new(Hub::default());
        let (client, _) = hub.subscribe(Uuid::new_v4(), None);
        hub.set_listening(true);
        assert!(client.changed().await);
        assert_eq!(client.owed().resync, Some(Resync::ListenerReconnected));
        hub.set_listening(false);
        hub.set_listening(true);
        assert_eq!(client.owed().resync, Some(Resync::ListenerReconnected));
        assert_eq!(
            client.owed().resync,
            None,
            "taken by the push that serves it"
        );
        assert_eq!(hub.stats().reconnects, 1);
        assert!(hub.wait_listening(Duration::from_millis(1)).await);

        hub.close();
        assert!(!client.changed().await);
        let (late, _) = hub.subscribe(Uuid::new_v4(), None);
        assert!(!late.changed().await, "after close");
    }
}
