//! One load at a time per org, shared by all of that org's streams in this process.
//!
//! Every stream of an org hears of the same changes at the same moment, so loading them stream
//! by stream would run the same statements once per open stream: a thousand screens on one org
//! would mean a thousand overview queries per change, holding the pool from ingest and reads.
//! Instead a stream asks its org's [`OrgLoads`] for the rows it is owed and the overview of its
//! window. Requests made while the org's previous load runs, or within [`MIN_INTERVAL`] of its
//! start, are answered together by one transaction under the org's row-level security.
//!
//! A request is always answered by a load that starts after the request was made, so it sees
//! every write announced before it. The rows streams are sent carry no payloads and are the same
//! for every role, which is what makes one load right for all of the org's viewers.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

use super::super::params::WindowQuery;
use super::super::{ApiError, AppState};
use crate::db::TenantContext;
use crate::instruments;
use crate::live::Changes;
use crate::orgs::settings as org_settings;
use crate::query::fleet::{self, Filter};
use crate::query::{jobs, overview};

/// At most about four loads a second per org, so at most four pushes a second per stream.
pub const MIN_INTERVAL: Duration = Duration::from_millis(250);

/// The org's loads, by org, for as long as a stream of the org holds them.
#[derive(Default)]
pub struct Loads {
    by_org: Mutex<HashMap<Uuid, Weak<OrgLoads>>>,
    /// Loads run so far, by every org's streams.
    run: Arc<AtomicU64>,
}

impl Loads {
    /// The loads of `org`, shared with every other stream of it here.
    pub fn of(&self, org: Uuid) -> Arc<OrgLoads> {
        let mut by_org = self.by_org.lock().expect("loads lock");
        by_org.retain(|_, loads| loads.strong_count() > 0);
        if let Some(loads) = by_org.get(&org).and_then(Weak::upgrade) {
            return loads;
        }
        let loads = Arc::new(OrgLoads {
            org,
            run: self.run.clone(),
            forming: Mutex::new(None),
            last_start: tokio::sync::Mutex::new(None),
        });
        by_org.insert(org, Arc::downgrade(&loads));
        loads
    }

    pub fn run(&self) -> u64 {
        self.run.load(Ordering::Relaxed)
    }
}

pub struct OrgLoads {
    org: Uuid,
    run: Arc<AtomicU64>,
    /// The batch new requests join, until its load starts.
    forming: Mutex<Option<Arc<Batch>>>,
    /// When the org's last load started; held while a load runs, so one runs at a time.
    last_start: tokio::sync::Mutex<Option<Instant>>,
}

/// The requests one load answers, and its outcome once it is done.
struct Batch {
    wanted: Mutex<Wanted>,
    done: watch::Sender<Option<Result<Arc<Loaded>, LoadFailed>>>,
}

#[derive(Default)]
struct Wanted {
    changes: Changes,
    windows: HashSet<WindowQuery>,
}

/// A load failed; the reason was logged once, by the load.
#[derive(Debug, Clone, Copy)]
pub struct LoadFailed;

/// What one load found, as the JSON the streams send.
#[derive(Default)]
pub struct Loaded {
    machines: HashMap<String, String>,
    workers: HashMap<String, String>,
    jobs: HashMap<String, String>,
    overviews: HashMap<WindowQuery, String>,
}

/// The kinds of row a stream is sent.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Machine,
    Worker,
    Job,
}

impl Kind {
    /// The name of the stream's event carrying a row of this kind.
    pub fn event(self) -> &'static str {
        match self {
            Self::Machine => "machine",
            Self::Worker => "worker",
            Self::Job => "job",
        }
    }
}

impl Loaded {
    /// The row with `id` as JSON, or `None` when it no longer exists.
    pub fn row(&self, kind: Kind, id: &str) -> Option<&str> {
        let rows = match kind {
            Kind::Machine => &self.machines,
            Kind::Worker => &self.workers,
            Kind::Job => &self.jobs,
        };
        rows.get(id).map(String::as_str)
    }

    /// The overview of `window` as JSON, when it could be computed.
    pub fn overview(&self, window: &WindowQuery) -> Option<&str> {
        self.overviews.get(window).map(String::as_str)
    }
}

impl OrgLoads {
    /// The current state of `changes` and the overview of `window`, from a load that starts
    /// after this call. The load goes on if the caller stops waiting: others may share it.
    pub async fn load(
        self: &Arc<Self>,
        state: &AppState,
        changes: &Changes,
        window: &WindowQuery,
    ) -> Result<Arc<Loaded>, LoadFailed> {
        let batch = {
            let mut forming = self.forming.lock().expect("loads lock");
            let batch = match &*forming {
                Some(batch) => batch.clone(),
                None => {
                    let batch = Arc::new(Batch {
                        wanted: Mutex::default(),
                        done: watch::channel(None).0,
                    });
                    *forming = Some(batch.clone());
                    tokio::spawn(self.clone().run(state.clone(), batch.clone()));
                    batch
                }
            };
            // Joined under the `forming` lock: the load takes what is wanted only after taking
            // the batch out of `forming`, so nothing added here is missed.
            let mut wanted = batch.wanted.lock().expect("batch lock");
            wanted.changes.extend(changes.clone());
            wanted.windows.insert(window.clone());
            drop(wanted);
            batch
        };
        let mut done = batch.done.subscribe();
        let outcome = done
            .wait_for(Option::is_some)
            .await
            .map_err(|_| LoadFailed)?;
        outcome.clone().unwrap_or(Err(LoadFailed))
    }

    async fn run(self: Arc<Self>, state: AppState, batch: Arc<Batch>) {
        let mut last_start = self.last_start.lock().await;
        if let Some(last) = *last_start {
            tokio::time::sleep_until(last + MIN_INTERVAL).await;
        }
        *last_start = Some(Instant::now());
        self.forming.lock().expect("loads lock").take();
        let wanted = std::mem::take(&mut *batch.wanted.lock().expect("batch lock"));
        let loaded = load(&state, self.org, wanted).await;
        self.run.fetch_add(1, Ordering::Relaxed);
        instruments::stream_load(loaded.is_ok());
        let outcome = match loaded {
            Ok(loaded) => Ok(Arc::new(loaded)),
            Err(error) => {
                tracing::warn!(?error, org = %self.org, "could not load a stream update");
                Err(LoadFailed)
            }
        };
        batch.done.send_replace(Some(outcome));
    }
}

/// Loads what `wanted` asks for in one tenant transaction of `org`.
async fn load(state: &AppState, org: Uuid, wanted: Wanted) -> Result<Loaded, ApiError> {
    let mut tx = state.db.begin(TenantContext::org(org)).await?;
    let settings = org_settings::get(tx.conn(), org).await?;
    let mut loaded = Loaded::default();
    for ids in chunks(&wanted.changes.machines) {
        let rows = fleet::machines(tx.conn(), org, &settings, &Filter::ids(ids)).await?;
        loaded.machines.extend(as_json(rows, |m| m.id.clone()));
    }
    for ids in chunks(&wanted.changes.workers) {
        let rows = fleet::workers(tx.conn(), org, &settings, &Filter::ids(ids)).await?;
        loaded.workers.extend(as_json(rows, |w| w.id.clone()));
    }
    for ids in chunks(&wanted.changes.jobs) {
        let rows = jobs::summaries(tx.conn(), org, &ids).await?;
        loaded.jobs.extend(as_json(rows, |j| j.id.clone()));
    }
    for query in wanted.windows {
        // Every window was checked when its stream opened; one that fails now (a `since` that
        // has moved past `until`, say) leaves only its own streams without an overview.
        match query.window() {
            Ok(window) => {
                let counters = overview::load(tx.conn(), org, &settings, window).await?;
                loaded.overviews.insert(query, json(&counters));
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

pub fn json(data: &impl Serialize) -> String {
    serde_json::to_string(data).unwrap_or_else(|_| "null".into())
}
