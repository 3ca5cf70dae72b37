//! `GET /api/v1/orgs/{org}/stream`: Server-Sent Events carrying the new state of the org's
//! changed machines, workers and jobs, for viewers and read tokens.
//!
//! Each client has a mailbox in the process's hub (see `live`). The stream waits for changes and
//! has them loaded, together with every other stream of the org here, by one tenant transaction
//! (see [`loads`]): at most about four pushes a second, with changes meanwhile merged. A client reconnecting with `Last-Event-ID` is sent what changed since, when the process
//! it reaches still knows (see `live::hub`), else a `resync` first. The client's credentials are
//! checked again every [`LiveStreams::recheck_every`]: the stream ends once they no longer allow
//! reading the org (token revoked, session ended, membership removed).

mod loads;

use std::collections::{BTreeSet, VecDeque};
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
use crate::orgs::Role;
use crate::query::fleet;
use loads::{json, Kind, LoadFailed, Loaded, Loads, OrgLoads};
/// A comment this often keeps proxies from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// The overview is sent again after this long without changes: liveness counts move as machines
/// fall silent, which no write announces.
const OVERVIEW_REFRESH: Duration = Duration::from_secs(15);
/// How soon a browser should reconnect after the stream breaks.
const RETRY: Duration = Duration::from_secs(2);

// One load per kind fetches every pending id.
const _: () = assert!(MAX_IDS as i64 <= fleet::MAX_PAGE);

/// What streams need: the hub they subscribe to, the loads they share, and how often they check
/// credentials again.
#[derive(Clone)]
pub struct LiveStreams {
    pub hub: Arc<Hub>,
    loads: Arc<Loads>,
    pub recheck_every: Duration,
}

impl LiveStreams {
    pub fn new(hub: Arc<Hub>) -> Self {
        Self {
            hub,
            loads: Arc::default(),
            recheck_every: Duration::from_secs(60),
        }
    }

    /// How many loads the streams here have run, each shared by all streams of its org that
    /// wanted one at the time.
    pub fn loads_run(&self) -> u64 {
        self.loads.run()
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
        loads: live.loads.of(access.org.id),
        state,
        access,
        credentials,
        subscription,
        queue: VecDeque::from([first.retry(RETRY)]),
        window,
        last_id: start.id,
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
    loads: Arc<OrgLoads>,
    /// The request's `Authorization` and `Cookie`, to check them again later.
    credentials: HeaderMap,
    subscription: Subscription,
    queue: VecDeque<Event>,
    /// The overview's window, as the client asked for it (a range is a rolling window).
    window: WindowQuery,
    /// The id of the state the client has been brought to.
    last_id: String,
    overview_at: Instant,
    recheck_every: Duration,
    recheck_at: Instant,
}

fn event(kind: &str, id: &str, data: &impl Serialize) -> Event {
    json_event(kind, id, &json(data))
}

fn json_event(kind: &str, id: &str, json: &str) -> Event {
    Event::default().event(kind).id(id).data(json)
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
                    if let Ok(loaded) = self.loaded(&Changes::default()).await {
                        self.queue.extend(self.overview(&loaded, &self.last_id));
                    }
                    continue;
                }
            }
            let (pending, id) = self.subscription.take();
            self.push(pending, &id).await;
        }
    }

    /// Queues what `pending` brings, then the overview; `id` names the state it brings.
    async fn push(&mut self, pending: Pending, id: &str) {
        self.last_id = id.to_string();
        self.overview_at = Instant::now() + OVERVIEW_REFRESH;
        if let Some(reason) = pending.resync {
            self.queue.push_back(resync_event(reason, id));
            if let Ok(loaded) = self.loaded(&Changes::default()).await {
                self.queue.extend(self.overview(&loaded, id));
            }
            return;
        }
        let Ok(loaded) = self.loaded(&pending.changes).await else {
            self.subscription.resync(Resync::LoadFailed);
            return;
        };
        let changes = &pending.changes;
        for (kind, ids) in [
            (Kind::Machine, &changes.machines),
            (Kind::Worker, &changes.workers),
            (Kind::Job, &changes.jobs),
        ] {
            self.queue.extend(row_events(&loaded, kind, id, ids));
        }
        self.queue.extend(self.overview(&loaded, id));
    }

    /// `changes` and the client's overview, loaded by the org's next shared load.
    async fn loaded(&self, changes: &Changes) -> Result<Arc<Loaded>, LoadFailed> {
        self.loads.load(&self.state, changes, &self.window).await
    }

    fn overview(&self, loaded: &Loaded, id: &str) -> Option<Event> {
        let overview = loaded.overview(&self.window)?;
        Some(json_event("overview", id, overview))
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
fn row_events<'a>(
    loaded: &'a Loaded,
    kind: Kind,
    id: &'a str,
    wanted: &'a BTreeSet<String>,
) -> impl Iterator<Item = Event> + 'a {
    wanted
        .iter()
        .map(move |wanted| match loaded.row(kind, wanted) {
            Some(row) => json_event(kind.event(), id, row),
            None => event(kind.event(), id, &json!({"id": wanted, "removed": true})),
        })
}
