//! `GET /api/v1/orgs/{org}/stream`: Server-Sent Events carrying the new state of the org's
//! changed machines, workers and jobs, for viewers and read tokens.
//!
//! Each client has a mailbox in the process's hub (see `live`) saying how far it has been
//! brought. The stream waits until it is owed something and has it loaded and encoded together
//! with every other stream of the org here (see [`pushes`]): at most about four pushes a second,
//! with changes meanwhile merged. A client reconnecting with `Last-Event-ID` is sent what
//! changed since, when the process it reaches still knows (see `live::hub`), else a `resync`
//! first. The client's credentials are checked again every [`LiveStreams::recheck_every`]: the
//! stream ends once they no longer allow reading the org (token revoked, session ended,
//! membership removed).

mod pushes;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Path, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use fleetmon_proto::ErrorBody;
use serde_json::json;
use tokio::time::Instant;

use super::auth::{OrgAccess, Principal};
use super::openapi::OrgPath;
use super::params::{Params, WindowQuery};
use super::{ApiError, AppState};
use crate::live::{Hub, Resync, Subscription, MAX_IDS};
use crate::orgs::Role;
use crate::query::fleet;
use pushes::{json, render, resync_data, OrgPushes, Pushes};

/// A comment after this long without events keeps proxies from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// The overview is sent again after this long without changes: liveness counts move as machines
/// fall silent, which no write announces.
const OVERVIEW_REFRESH: Duration = Duration::from_secs(15);
/// How soon a browser should reconnect after the stream breaks.
const RETRY: Duration = Duration::from_secs(2);

// One load per kind and page fetches what one stream is owed.
const _: () = assert!(MAX_IDS as i64 <= fleet::MAX_PAGE);

/// What streams need: the hub they subscribe to, the pushes they share, and how often they
/// check credentials again.
#[derive(Clone)]
pub struct LiveStreams {
    pub hub: Arc<Hub>,
    pushes: Arc<Pushes>,
    pub recheck_every: Duration,
}

impl LiveStreams {
    pub fn new(hub: Arc<Hub>) -> Self {
        Self {
            pushes: Arc::new(Pushes::new(hub.clone())),
            hub,
            recheck_every: Duration::from_secs(60),
        }
    }

    /// How many loads the streams here have run, each shared by all streams of its org that
    /// wanted one at the time.
    pub fn loads_run(&self) -> u64 {
        self.pushes.loads()
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
    let mut first = format!("retry: {}\n", RETRY.as_millis());
    match start.resync {
        None => render(
            &mut first,
            "ready",
            &start.id,
            &json(&json!({"org": access.org.slug})),
        ),
        Some(reason) => {
            crate::instruments::stream_resync(reason.as_str());
            render(&mut first, "resync", &start.id, &json(&resync_data(reason)));
        }
    }
    let now = Instant::now();
    let client = Client {
        pushes: live.pushes.of(access.org.id),
        state,
        access,
        credentials,
        subscription,
        queue: VecDeque::from([Bytes::from(first)]),
        window,
        last_sent: now,
        overview_at: now,
        recheck_every: live.recheck_every,
        recheck_at: now + live.recheck_every,
    };
    let events = futures_util::stream::unfold(client, |mut client| async move {
        let events = client.next().await?;
        Some((Ok::<_, Infallible>(events), client))
    });
    let headers = [
        (header::CONTENT_TYPE, "text/event-stream"),
        (header::CACHE_CONTROL, "no-cache"),
        // Proxies that buffer responses (nginx) would hold events back.
        (header::HeaderName::from_static("x-accel-buffering"), "no"),
    ];
    Ok((headers, Body::from_stream(events)).into_response())
}

struct Client {
    state: AppState,
    access: OrgAccess,
    pushes: Arc<OrgPushes>,
    /// The request's `Authorization` and `Cookie`, to check them again later.
    credentials: HeaderMap,
    subscription: Subscription,
    /// Encoded events not sent yet.
    queue: VecDeque<Bytes>,
    /// The overview's window, as the client asked for it (a range is a rolling window).
    window: WindowQuery,
    last_sent: Instant,
    overview_at: Instant,
    recheck_every: Duration,
    recheck_at: Instant,
}

impl Client {
    /// The next events to send; `None` ends the stream (server shutdown, or access lost).
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(events) = self.queue.pop_front() {
                self.last_sent = Instant::now();
                return Some(events);
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
                // With nothing owed, the push is the overview alone.
                () = tokio::time::sleep_until(self.overview_at) => {}
                () = tokio::time::sleep_until(self.last_sent + KEEP_ALIVE) => {
                    self.queue.push_back(Bytes::from_static(b": keep-alive\n\n"));
                    continue;
                }
            }
            self.push().await;
        }
    }

    /// Queues what the client is owed, then the overview.
    async fn push(&mut self) {
        self.overview_at = Instant::now() + OVERVIEW_REFRESH;
        let owed = self.subscription.owed();
        match self.pushes.push(&self.state, owed, &self.window).await {
            Ok(push) => {
                if let Some(reason) = push.resync {
                    crate::instruments::stream_resync(reason.as_str());
                }
                self.subscription.brought_to(push.seq);
                self.queue.push_back(push.events);
            }
            Err(_) => self.subscription.resync(Resync::LoadFailed),
        }
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
