//! `GET /api/v1/orgs/{org}/stream`: Server-Sent Events carrying the new state of the org's
//! changed machines, workers and jobs, for viewers and read tokens.
//!
//! Each client has a mailbox in the process's hub (see `live`). The stream waits for changes,
//! pushes at most one batch per [`MIN_PUSH_INTERVAL`] (changes meanwhile are merged), and loads
//! what changed in the client's own tenant transaction, so row-level security applies as to any
//! read. A client reconnecting with `Last-Event-ID` is sent what changed since, when the process
//! it reaches still knows (see `live::hub`), else a `resync` first. The client's credentials are
//! checked again every [`LiveStreams::recheck_every`]: the stream ends once they no longer allow
//! reading the org (token revoked, session ended, membership removed).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::{header, HeaderMap};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use fleetmon_proto::ErrorBody;
use serde::Serialize;
use serde_json::json;
use tokio::time::Instant;

use super::auth::{OrgAccess, Principal};
use super::openapi::OrgPath;
use super::params::{Params, WindowQuery};
use super::{ApiError, AppState};
use crate::live::{Changes, Hub, Pending, Resync, Subscription, MAX_IDS};
use crate::orgs::{settings as org_settings, Role};
use crate::query::fleet::{self, Filter};
use crate::query::{jobs, overview};

/// At most about four pushes a second per client.
const MIN_PUSH_INTERVAL: Duration = Duration::from_millis(250);
/// A comment this often keeps proxies from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// The overview is sent again after this long without changes: liveness counts move as machines
/// fall silent, which no write announces.
const OVERVIEW_REFRESH: Duration = Duration::from_secs(15);
/// How soon a browser should reconnect after the stream breaks.
const RETRY: Duration = Duration::from_secs(2);

// One load per kind fetches every pending id.
const _: () = assert!(MAX_IDS as i64 <= fleet::MAX_PAGE);

/// What streams need: the hub they subscribe to, and how often they check credentials again.
#[derive(Clone)]
pub struct LiveStreams {
    pub hub: Arc<Hub>,
    pub recheck_every: Duration,
}

impl LiveStreams {
    pub fn new(hub: Arc<Hub>) -> Self {
        Self {
            hub,
            recheck_every: Duration::from_secs(60),
        }
    }
}

/// The org's live updates as Server-Sent Events; see docs/api.md for the events.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/stream", tag = "fleet",
    params(OrgPath, WindowQuery, ("Last-Event-ID" = Option<String>, Header,
        description = "The id of the last event seen, to resume after it")),
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 200, content_type = "text/event-stream", body = String,
         description = "Events `ready`, `machine`, `worker`, `job`, `overview` and `resync`, each with an `id`"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn stream(
    State(state): State<AppState>,
    principal: Principal,
    Path(slug): Path<String>,
    Params(window): Params<WindowQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    window.window()?;
    let access = OrgAccess::resolve(&state, principal, &slug).await?;
    access.require(Role::Viewer)?;
    let Some(live) = state.live.clone() else {
        return Err(ApiError::Unavailable {
            code: "stream_unavailable",
            message: "this server does not serve live updates".into(),
        });
    };
    let resume = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or(""));
    let (subscription, start) = live.hub.subscribe(access.org.id, resume);
    let mut credentials = HeaderMap::new();
    for name in [header::AUTHORIZATION, header::COOKIE] {
        for value in headers.get_all(&name) {
            credentials.append(name.clone(), value.clone());
        }
    }
    // The first event says the stream is live — or, after a gap that cannot be caught up with,
    // that the client must reload first; both say how soon to reconnect.
    let first = match start.resync {
        None => event("ready", &start.id, &json!({"org": access.org.slug})),
        Some(reason) => resync_event(reason, &start.id),
    };
    let client = Client {
        state,
        access,
        credentials,
        subscription,
        queue: VecDeque::from([first.retry(RETRY)]),
        window,
        last_id: start.id,
        last_push: None,
        overview_at: Instant::now(),
        recheck_every: live.recheck_every,
        recheck_at: Instant::now() + live.recheck_every,
    };
    let events = futures_util::stream::unfold(client, |mut client| async move {
        let event = client.next().await?;
        Some((Ok::<_, Infallible>(event), client))
    });
    let sse = Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"));
    // Proxies that buffer responses (nginx) would hold events back.
    Ok(([("x-accel-buffering", "no")], sse).into_response())
}

struct Client {
    state: AppState,
    access: OrgAccess,
    /// The request's `Authorization` and `Cookie`, to check them again later.
    credentials: HeaderMap,
    subscription: Subscription,
    queue: VecDeque<Event>,
    /// The overview's window, as the client asked for it (a range is a rolling window).
    window: WindowQuery,
    /// The id of the state the client has been brought to.
    last_id: String,
    last_push: Option<Instant>,
    overview_at: Instant,
    recheck_every: Duration,
    recheck_at: Instant,
}

fn event(kind: &str, id: &str, data: &impl Serialize) -> Event {
    Event::default()
        .event(kind)
        .id(id)
        .data(serde_json::to_string(data).unwrap_or_else(|_| "null".into()))
}

fn resync_event(reason: Resync, id: &str) -> Event {
    crate::instruments::stream_resync(reason.as_str());
    event("resync", id, &json!({"reason": reason.as_str()}))
}

impl Client {
    /// The next event; `None` ends the stream (server shutdown, or access lost).
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Some(event);
            }
            tokio::select! {
                changed = self.subscription.changed() => {
                    if !changed {
                        return None;
                    }
                }
                () = tokio::time::sleep_until(self.recheck_at) => {
                    if !self.still_allowed().await {
                        return None;
                    }
                    continue;
                }
                () = tokio::time::sleep_until(self.overview_at) => {
                    self.overview_at = Instant::now() + OVERVIEW_REFRESH;
                    match self.overview(&self.last_id).await {
                        Ok(event) => self.queue.push_back(event),
                        Err(error) => tracing::warn!(?error, "could not load a stream's overview"),
                    }
                    continue;
                }
            }
            if let Some(last) = self.last_push {
                tokio::time::sleep_until(last + MIN_PUSH_INTERVAL).await;
            }
            if self.subscription.is_closed() {
                return None;
            }
            self.last_push = Some(Instant::now());
            let (pending, id) = self.subscription.take();
            self.push(pending, &id).await;
        }
    }

    /// Queues what `pending` brings, then the overview; `id` names the state it brings.
    async fn push(&mut self, pending: Pending, id: &str) {
        self.last_id = id.to_string();
        self.overview_at = Instant::now() + OVERVIEW_REFRESH;
        let loaded = match pending.resync {
            Some(reason) => {
                self.queue.push_back(resync_event(reason, id));
                self.overview(id).await.map(|event| vec![event])
            }
            None => self.load(&pending.changes, id).await,
        };
        match loaded {
            Ok(events) => self.queue.extend(events),
            Err(error) if pending.resync.is_some() => {
                tracing::warn!(?error, "could not load a stream's overview");
            }
            Err(error) => {
                tracing::warn!(?error, "could not load a stream's changes");
                self.subscription.resync(Resync::LoadFailed);
            }
        }
    }

    /// The org's overview now, for the client's window.
    async fn overview(&self, id: &str) -> Result<Event, ApiError> {
        let window = self.window.window()?;
        let mut tx = self.state.db.begin(self.access.context()).await?;
        let settings = org_settings::get(tx.conn(), self.access.org.id).await?;
        let counters = overview::load(tx.conn(), self.access.org.id, &settings, window).await?;
        tx.commit().await?;
        Ok(event("overview", id, &counters))
    }

    /// The new state of `changes`, and the overview after them, as events with `id`.
    async fn load(&self, changes: &Changes, id: &str) -> Result<Vec<Event>, ApiError> {
        let window = self.window.window()?;
        let org = self.access.org.id;
        let filter = |ids: &BTreeSet<String>| Filter::ids(ids.iter().cloned().collect());
        let mut tx = self.state.db.begin(self.access.context()).await?;
        let settings = org_settings::get(tx.conn(), org).await?;
        let mut events = Vec::new();
        if !changes.machines.is_empty() {
            let rows =
                fleet::machines(tx.conn(), org, &settings, &filter(&changes.machines)).await?;
            events.extend(row_events("machine", id, &changes.machines, &rows, |m| {
                &m.id
            }));
        }
        if !changes.workers.is_empty() {
            let rows = fleet::workers(tx.conn(), org, &settings, &filter(&changes.workers)).await?;
            events.extend(row_events("worker", id, &changes.workers, &rows, |w| &w.id));
        }
        if !changes.jobs.is_empty() {
            let ids: Vec<String> = changes.jobs.iter().cloned().collect();
            let rows = jobs::summaries(tx.conn(), org, &ids).await?;
            events.extend(row_events("job", id, &changes.jobs, &rows, |j| &j.id));
        }
        let counters = overview::load(tx.conn(), org, &settings, window).await?;
        events.push(event("overview", id, &counters));
        tx.commit().await?;
        Ok(events)
    }

    /// Whether the client's credentials still allow reading the org. Unknown (the database or
    /// an identity provider failing right now) counts as yes until the next check.
    async fn still_allowed(&mut self) -> bool {
        self.recheck_at = Instant::now() + self.recheck_every;
        let mut request = axum::http::Request::new(());
        *request.headers_mut() = self.credentials.clone();
        let (mut parts, ()) = request.into_parts();
        let verdict = async {
            let principal = Principal::from_request_parts(&mut parts, &self.state).await?;
            let access = OrgAccess::resolve(&self.state, principal, &self.access.org.slug).await?;
            access.require(Role::Viewer)?;
            Ok::<_, ApiError>(access)
        }
        .await;
        match verdict {
            Ok(access) if access.org.id == self.access.org.id => {
                self.access = access;
                true
            }
            Ok(_) => false,
            Err(
                ApiError::Unavailable { .. } | ApiError::BadGateway { .. } | ApiError::Internal(_),
            ) => true,
            Err(_) => false,
        }
    }
}

/// One event per wanted id: its row, or `{"id": …, "removed": true}` when it no longer exists.
fn row_events<T: Serialize>(
    kind: &str,
    id: &str,
    wanted: &BTreeSet<String>,
    rows: &[T],
    key: impl Fn(&T) -> &String,
) -> Vec<Event> {
    let found: BTreeMap<&String, &T> = rows.iter().map(|row| (key(row), row)).collect();
    wanted
        .iter()
        .map(|wanted| match found.get(wanted) {
            Some(row) => event(kind, id, row),
            None => event(kind, id, &json!({"id": wanted, "removed": true})),
        })
        .collect()
}
