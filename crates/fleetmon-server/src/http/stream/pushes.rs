//! Pushes shared by all of an org's streams in this process: loaded by one transaction at a
//! time per org, and rendered once for all the streams that are owed the same.
//!
//! Every stream of an org hears of the same changes at the same moment, so loading and encoding
//! them stream by stream would do the same work once per open stream: a thousand screens on one
//! org would mean a thousand overview queries per change, holding the pool from ingest and
//! reads. Instead a stream asks its org's [`OrgPushes`] for what it is owed (the deliveries
//! after the one it was last brought to, or a reload) and the overview of its window. Requests
//! made while the org's previous load runs, or within [`MIN_INTERVAL`] of its start, are
//! answered together: one transaction under the org's row-level security loads every row any of
//! them is owed, and each distinct request is rendered once, as the bytes of its events. Streams
//! that are keeping up are all owed the same, so they share one rendering.
//!
//! A request is always answered by a load that starts after the request was made, so it sees
//! every write announced before it. The rows streams are sent carry no payloads and are the same
//! for every role, which is what makes one load right for all of the org's viewers.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::body::Bytes;
use serde::Serialize;
use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

use super::super::params::WindowQuery;
use super::super::{ApiError, AppState};
use crate::db::TenantContext;
use crate::instruments;
use crate::live::{Changes, Hub, Owed, Resync, MAX_IDS};
use crate::orgs::settings as org_settings;
use crate::query::fleet::{self, Filter};
use crate::query::{jobs, overview};

/// At most about four loads a second per org, so at most four pushes a second per stream.
pub const MIN_INTERVAL: Duration = Duration::from_millis(250);

/// Every org's pushes, for as long as a stream of the org holds them.
pub struct Pushes {
    hub: Arc<Hub>,
    by_org: Mutex<HashMap<Uuid, Weak<OrgPushes>>>,
    /// Loads run so far, by every org's streams.
    loads: Arc<AtomicU64>,
}

impl Pushes {
    pub fn new(hub: Arc<Hub>) -> Self {
        Self {
            hub,
            by_org: Mutex::default(),
            loads: Arc::default(),
        }
    }

    /// The pushes of `org`, shared with every other stream of it here.
    pub fn of(&self, org: Uuid) -> Arc<OrgPushes> {
        let mut by_org = self.by_org.lock().expect("pushes lock");
        by_org.retain(|_, pushes| pushes.strong_count() > 0);
        if let Some(pushes) = by_org.get(&org).and_then(Weak::upgrade) {
            return pushes;
        }
        let pushes = Arc::new(OrgPushes {
            org,
            hub: self.hub.clone(),
            loads: self.loads.clone(),
            forming: Mutex::new(None),
            last_start: tokio::sync::Mutex::new(None),
        });
        by_org.insert(org, Arc::downgrade(&pushes));
        pushes
    }

    pub fn loads(&self) -> u64 {
        self.loads.load(Ordering::Relaxed)
    }
}

pub struct OrgPushes {
    org: Uuid,
    hub: Arc<Hub>,
    loads: Arc<AtomicU64>,
    /// The batch new requests join, until its load starts.
    forming: Mutex<Option<Arc<Batch>>>,
    /// When the org's last load started; held while a load runs, so one runs at a time.
    last_start: tokio::sync::Mutex<Option<Instant>>,
}

/// What one stream asks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Request {
    owed: Owed,
    window: WindowQuery,
}

/// The requests one load answers, and its outcome once it is done.
struct Batch {
    requests: Mutex<HashSet<Request>>,
    done: watch::Sender<Option<Result<Arc<Answers>, LoadFailed>>>,
}

/// A load failed; the reason was logged once, by the load.
#[derive(Debug, Clone, Copy)]
pub struct LoadFailed;

/// One load's pushes, by request.
struct Answers {
    pushes: HashMap<Request, Push>,
}

/// The events of one push, encoded.
#[derive(Debug, Clone)]
pub struct Push {
    pub events: Bytes,
    /// Set when the push tells the stream to reload.
    pub resync: Option<Resync>,
    /// The delivery the push brings its stream to.
    pub seq: u64,
}

impl OrgPushes {
    /// What `owed` comes to, with the overview of `window`, from a load that starts after this
    /// call. The load goes on if the caller stops waiting: others may share it.
    pub async fn push(
        self: &Arc<Self>,
        state: &AppState,
        owed: Owed,
        window: &WindowQuery,
    ) -> Result<Push, LoadFailed> {
        let request = Request {
            owed,
            window: window.clone(),
        };
        let batch = {
            let mut forming = self.forming.lock().expect("pushes lock");
            let batch = match &*forming {
                Some(batch) => batch.clone(),
                None => {
                    let batch = Arc::new(Batch {
                        requests: Mutex::default(),
                        done: watch::channel(None).0,
                    });
                    *forming = Some(batch.clone());
                    tokio::spawn(self.clone().run(state.clone(), batch.clone()));
                    batch
                }
            };
            // Joined under the `forming` lock: the load takes the requests only after taking
            // the batch out of `forming`, so none added here is missed.
            let mut requests = batch.requests.lock().expect("batch lock");
            requests.insert(request.clone());
            drop(requests);
            batch
        };
        let mut done = batch.done.subscribe();
        let outcome = done
            .wait_for(Option::is_some)
            .await
            .map_err(|_| LoadFailed)?
            .clone();
        let answers = outcome.unwrap_or(Err(LoadFailed))?;
        answers.pushes.get(&request).cloned().ok_or(LoadFailed)
    }

    async fn run(self: Arc<Self>, state: AppState, batch: Arc<Batch>) {
        let mut last_start = self.last_start.lock().await;
        if let Some(last) = *last_start {
            tokio::time::sleep_until(last + MIN_INTERVAL).await;
        }
        *last_start = Some(Instant::now());
        self.forming.lock().expect("pushes lock").take();
        let requests = std::mem::take(&mut *batch.requests.lock().expect("batch lock"));
        let answered = self.answer(&state, requests).await;
        self.loads.fetch_add(1, Ordering::Relaxed);
        instruments::stream_load(answered.is_ok());
        let outcome = match answered {
            Ok(answers) => Ok(Arc::new(answers)),
            Err(error) => {
                tracing::warn!(?error, org = %self.org, "could not load a stream update");
                Err(LoadFailed)
            }
        };
        batch.done.send_replace(Some(outcome));
    }

    /// Loads what `requests` are owed in one transaction and renders each one's push.
    async fn answer(
        &self,
        state: &AppState,
        requests: HashSet<Request>,
    ) -> Result<Answers, ApiError> {
        let seen: Vec<u64> = requests
            .iter()
            .filter(|r| r.owed.resync.is_none())
            .map(|r| r.owed.seen)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let (seq, owed) = self.hub.catch_up(self.org, &seen);
        let owed: HashMap<u64, Option<Changes>> = seen.into_iter().zip(owed).collect();
        // Each request's changes, or why it reloads instead.
        let plan = |request: &Request| -> Result<&Changes, Resync> {
            if let Some(reason) = request.owed.resync {
                return Err(reason);
            }
            match &owed[&request.owed.seen] {
                Some(changes) if changes.len() <= MAX_IDS => Ok(changes),
                _ => Err(Resync::TooManyChanges),
            }
        };
        let mut wanted = Changes::default();
        for changes in requests.iter().filter_map(|r| plan(r).ok()) {
            wanted.extend(changes.clone());
        }
        let windows: HashSet<&WindowQuery> = requests.iter().map(|r| &r.window).collect();
        let loaded = load(state, self.org, &wanted, windows).await?;

        let id = self.hub.event_id(seq);
        let pushes = requests
            .iter()
            .map(|request| {
                let mut text = String::new();
                let planned = plan(request);
                match planned {
                    Err(reason) => {
                        render(&mut text, "resync", &id, &json(&resync_data(reason)));
                    }
                    Ok(changes) => loaded.render_rows(&mut text, changes, &id),
                }
                if let Some(overview) = loaded.overviews.get(&request.window) {
                    render(&mut text, "overview", &id, overview);
                }
                let push = Push {
                    events: Bytes::from(text),
                    resync: planned.err(),
                    seq,
                };
                (request.clone(), push)
            })
            .collect();
        Ok(Answers { pushes })
    }
}

/// What one load found, as the JSON the streams send.
#[derive(Default)]
struct Loaded {
    machines: HashMap<String, String>,
    workers: HashMap<String, String>,
    jobs: HashMap<String, String>,
    overviews: HashMap<WindowQuery, String>,
}

impl Loaded {
    /// One event per changed id: its row, or `{"id": …, "removed": true}` when it no longer
    /// exists; machines first, then workers, then jobs.
    fn render_rows(&self, text: &mut String, changes: &Changes, id: &str) {
        for (kind, ids, rows) in [
            ("machine", &changes.machines, &self.machines),
            ("worker", &changes.workers, &self.workers),
            ("job", &changes.jobs, &self.jobs),
        ] {
            for wanted in ids {
                match rows.get(wanted) {
                    Some(row) => render(text, kind, id, row),
                    None => render(text, kind, id, &json(&removed(wanted))),
                }
            }
        }
    }
}

/// Loads the rows of `wanted` and the overview of each of `windows` in one tenant
/// transaction of `org`.
async fn load(
    state: &AppState,
    org: Uuid,
    wanted: &Changes,
    windows: HashSet<&WindowQuery>,
) -> Result<Loaded, ApiError> {
    let mut tx = state.db.begin(TenantContext::org(org)).await?;
    let settings = org_settings::get(tx.conn(), org).await?;
    let mut loaded = Loaded::default();
    for ids in chunks(&wanted.machines) {
        let rows = fleet::machines(tx.conn(), org, &settings, &Filter::ids(ids)).await?;
        loaded.machines.extend(as_json(rows, |m| m.id.clone()));
    }
    for ids in chunks(&wanted.workers) {
        let rows = fleet::workers(tx.conn(), org, &settings, &Filter::ids(ids)).await?;
        loaded.workers.extend(as_json(rows, |w| w.id.clone()));
    }
    for ids in chunks(&wanted.jobs) {
        let rows = jobs::summaries(tx.conn(), org, &ids).await?;
        loaded.jobs.extend(as_json(rows, |j| j.id.clone()));
    }
    for query in windows {
        // Every window was checked when its stream opened; one that fails now (a `since` that
        // has moved past `until`, say) leaves only its own streams without an overview.
        match query.window() {
            Ok(window) => {
                let counters = overview::load(tx.conn(), org, &settings, window).await?;
                loaded.overviews.insert(query.clone(), json(&counters));
            }
            Err(error) => tracing::debug!(?error, "a stream's window no longer parses"),
        }
    }
    tx.commit().await?;
    Ok(loaded)
}

/// The ids in pieces of at most one page, as the listings take them.
fn chunks(ids: &BTreeSet<String>) -> Vec<Vec<String>> {
    let ids: Vec<String> = ids.iter().cloned().collect();
    ids.chunks(fleet::MAX_PAGE as usize)
        .map(<[String]>::to_vec)
        .collect()
}

fn as_json<T: Serialize>(
    rows: Vec<T>,
    key: impl Fn(&T) -> String,
) -> impl Iterator<Item = (String, String)> {
    rows.into_iter().map(move |row| (key(&row), json(&row)))
}

fn removed(id: &str) -> serde_json::Value {
    json!({"id": id, "removed": true})
}

pub fn resync_data(reason: Resync) -> serde_json::Value {
    json!({"reason": reason.as_str()})
}

pub fn json(data: &impl Serialize) -> String {
    serde_json::to_string(data).unwrap_or_else(|_| "null".into())
}

/// Appends one Server-Sent Event. `data` is compact JSON, so it is one line.
pub fn render(text: &mut String, kind: &str, id: &str, data: &str) {
    let _ = write!(text, "event: {kind}\nid: {id}\ndata: {data}\n\n");
}
