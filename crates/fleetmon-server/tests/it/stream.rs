//! `GET /api/v1/orgs/{org}/stream` end to end: changes ingested through one `fleetmon serve`
//! reach a stream served by another; a killed listener connection means a `resync`, not silent
//! loss; another org's changes never show; a client that never reads costs a bounded buffer;
//! `Last-Event-ID` resumes or resyncs; shutting down ends open streams.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fleetmon_server::auth::tokens::{self, TokenKind};
use fleetmon_server::db::sql::query_scalar;
use fleetmon_server::db::{TenantContext, TenantDb};
use fleetmon_server::http::{AppState, LiveStreams};
use fleetmon_server::live::listener::{self, APPLICATION_NAME};
use fleetmon_server::live::{Hub, RECENT_IDS};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

use crate::cli::{fleetmon, listening, Served};
use crate::harness::{self, cluster, url_for, TestDb};
use crate::ingest_http::event;
use crate::pgbouncer::PgBouncer;
use crate::signin::error_code;

/// Longest any wait for an expected event; only a hang reaches it.
const PATIENCE: Duration = Duration::from_secs(30);
/// How often streams served in the test process check their credentials again.
const RECHECK_EVERY: Duration = Duration::from_millis(300);

/// An org with an ingest token and a read token.
struct Org {
    id: Uuid,
    slug: String,
    ingest: String,
    read: String,
}

impl Org {
    async fn create(tenant: &TenantDb) -> Self {
        let id = crate::fixtures::create_org(tenant, "live").await;
        let mut tx = tenant.begin(TenantContext::none()).await.unwrap();
        let slug = query_scalar("SELECT slug FROM organizations WHERE id = $1")
            .bind(id)
            .fetch_one(tx.conn())
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let mut tx = tenant.begin(TenantContext::org(id)).await.unwrap();
        let ingest = tokens::create(tx.conn(), id, TokenKind::Ingest, "agent", None)
            .await
            .unwrap()
            .secret;
        let read = tokens::create(tx.conn(), id, TokenKind::Read, "dashboard", None)
            .await
            .unwrap()
            .secret;
        tx.commit().await.unwrap();
        Self {
            id,
            slug,
            ingest,
            read,
        }
    }

    fn stream_path(&self) -> String {
        format!("/api/v1/orgs/{}/stream", self.slug)
    }

    /// Ingests `events` through the server at `base`; returns when the response arrived.
    async fn send(&self, base: &str, events: &[Value]) -> Instant {
        let response = reqwest::Client::new()
            .post(format!("{base}/api/v1/ingest"))
            .bearer_auth(&self.ingest)
            .json(&json!({ "events": events }))
            .send()
            .await
            .unwrap();
        let answered = Instant::now();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["accepted"], events.len(), "{body}");
        answered
    }
}

fn heartbeat(machine: &str) -> Value {
    event(
        "machine.heartbeat",
        json!({"machine_id": machine, "status": "ready", "host": {"hostname": format!("{machine}.lan")}}),
    )
}

/// One Server-Sent Event.
#[derive(Debug, Clone)]
struct Sse {
    event: String,
    id: String,
    data: Value,
}

/// Reads a stream's events as they come; keep-alive comments are skipped.
struct SseReader {
    response: reqwest::Response,
    buffer: String,
}

impl SseReader {
    async fn open(base: &str, org: &Org, last_event_id: Option<&str>) -> Self {
        // As browsers do: the stream must come uncompressed all the same (see `of`).
        let mut request = reqwest::Client::new()
            .get(format!("{base}{}", org.stream_path()))
            .header("accept-encoding", "gzip")
            .bearer_auth(&org.read);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        Self::of(request.send().await.unwrap())
    }

    fn of(response: reqwest::Response) -> Self {
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        // A compressor would hold events back until its buffer fills.
        assert!(!response.headers().contains_key("content-encoding"));
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next event, or `None` when the stream ended.
    async fn next(&mut self) -> Option<Sse> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut event, mut id, mut data) = (String::new(), String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        event = v.to_string();
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        id = v.to_string();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    }
                }
                if event.is_empty() {
                    continue; // a keep-alive comment
                }
                let data = serde_json::from_str(&data).unwrap();
                return Some(Sse { event, id, data });
            }
            let chunk = tokio::time::timeout(PATIENCE, self.response.chunk())
                .await
                .expect("the stream went silent")
                .ok()??;
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    async fn expect(&mut self) -> Sse {
        self.next().await.expect("the stream ended")
    }

    /// Events up to and including the first `kind` one.
    async fn until(&mut self, kind: &str) -> Vec<Sse> {
        let mut seen = Vec::new();
        loop {
            let event = self.expect().await;
            let done = event.event == kind;
            seen.push(event);
            if done {
                return seen;
            }
        }
    }
}

/// `(event, id of the row)` of each event.
fn rows(events: &[Sse]) -> BTreeSet<(String, String)> {
    events
        .iter()
        .filter(|e| matches!(e.event.as_str(), "machine" | "worker" | "job"))
        .map(|e| (e.event.clone(), e.data["id"].as_str().unwrap().to_string()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A `fleetmon serve` process, killed if the test ends without stopping it.
pub(crate) struct Replica {
    served: Option<Served>,
    pub(crate) base: String,
}

impl Replica {
    /// Kills the process with SIGKILL, as a crash or the OOM killer would, and reaps it.
    pub(crate) fn kill(&mut self) {
        if let Some(served) = &mut self.served {
            let _ = served.child.kill();
            let _ = served.child.wait();
        }
        self.served = None;
    }

    /// The process id, to read its memory use from `/proc`.
    pub(crate) fn pid(&self) -> u32 {
        self.served.as_ref().expect("running").child.id()
    }

    /// Whether the process is still running (it has not exited, on a panic or otherwise).
    pub(crate) fn is_running(&mut self) -> bool {
        self.served
            .as_mut()
            .is_some_and(|served| matches!(served.child.try_wait(), Ok(None)))
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `fleetmon serve` process on `database`.
fn replica(database: &str) -> Replica {
    serve_with(&[("DATABASE_URL", url_for(database))])
}

fn serve_with(env: &[(&str, String)]) -> Replica {
    serve_on("127.0.0.1:0", env)
}

/// A `fleetmon serve` process listening on `listen`, with `env` set.
pub(crate) fn serve_on(listen: &str, env: &[(&str, String)]) -> Replica {
    let mut command = fleetmon();
    command.args(["serve", "--listen", listen]);
    for (name, value) in env {
        command.env(name, value);
    }
    let served = listening(command);
    Replica {
        base: served.base.clone(),
        served: Some(served),
    }
}

/// Stops `replica` as an operator would (SIGTERM); whether it exited cleanly (its log is
/// printed when not).
async fn stop(mut replica: Replica) -> bool {
    let Served { mut child, log, .. } = replica.served.take().unwrap();
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    if !status.success() {
        let lines: Vec<String> = log.try_iter().collect();
        eprintln!(
            "fleetmon serve exited with {status:?}; its log:\n{}",
            lines.join("\n")
        );
    }
    status.success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_ingested_through_one_replica_is_streamed_by_another_within_a_second() {
    let db = TestDb::new().await;
    let org = Org::create(&db.tenant()).await;
    let (a, b) = (replica(&db.name), replica(&db.name));

    let mut stream = SseReader::open(&b.base, &org, None).await;
    let ready = stream.expect().await;
    assert_eq!(ready.event, "ready");
    assert_eq!(ready.data, json!({"org": org.slug}));

    let answered = org
        .send(
            &a.base,
            &[
                heartbeat("m1"),
                event(
                    "worker.heartbeat",
                    json!({"worker_id": "w1", "machine_id": "m1", "status": "busy", "current_job_id": "j1"}),
                ),
                event(
                    "job.submitted",
                    json!({"job_id": "j1", "name": "render 7", "job_type": "render"}),
                ),
                event(
                    "job.started",
                    json!({"job_id": "j1", "worker_id": "w1", "machine_id": "m1"}),
                ),
            ],
        )
        .await;
    let mut seen = Vec::new();
    while rows(&seen).len() < 3 {
        let event = stream.expect().await;
        assert!(
            answered.elapsed() < Duration::from_secs(1),
            "{} arrived {:?} after the ingest response",
            event.event,
            answered.elapsed()
        );
        seen.push(event);
    }
    assert_eq!(
        rows(&seen),
        pairs(&[("machine", "m1"), ("worker", "w1"), ("job", "j1")])
    );
    let find = |kind: &str| seen.iter().find(|e| e.event == kind).unwrap().data.clone();
    let machine = find("machine");
    assert_eq!(
        (
            &machine["hostname"],
            &machine["liveness"],
            &machine["busy_workers"]
        ),
        (&json!("m1.lan"), &json!("online"), &json!(1))
    );
    let worker = find("worker");
    assert_eq!(
        (
            &worker["status"],
            &worker["current_job_id"],
            &worker["machine_id"]
        ),
        (&json!("busy"), &json!("j1"), &json!("m1"))
    );
    let job = find("job");
    assert_eq!(
        (
            &job["status"],
            &job["name"],
            &job["worker_id"],
            &job["attempt"]
        ),
        (
            &json!("in_progress"),
            &json!("render 7"),
            &json!("w1"),
            &json!(1)
        )
    );
    // The stream began with the overview of an empty org; one load then carried all three rows
    // and the overview after them, all with the id of the state they bring the client to.
    assert_eq!(seen[0].event, "overview");
    assert_eq!(seen[0].id, ready.id);
    assert_eq!(
        (
            &seen[0].data["jobs"]["active"],
            &seen[0].data["machines"]["total"]
        ),
        (&json!(0), &json!(0))
    );
    let pushed: Vec<&Sse> = seen[1..].iter().collect();
    assert!(pushed.iter().all(|e| e.id == pushed[0].id), "{seen:?}");
    let overview = stream.expect().await;
    assert_eq!(
        (overview.event.as_str(), &overview.id),
        ("overview", &pushed[0].id)
    );
    assert_eq!(
        (
            &overview.data["jobs"]["active"],
            &overview.data["jobs"]["pending"],
            &overview.data["machines"]["by_liveness"]["online"],
            &overview.data["workers"]["by_status"]["busy"],
        ),
        (&json!(1), &json!(0), &json!(1), &json!(1))
    );

    // Shutting down ends the open stream, and the process exits cleanly.
    assert!(stop(b).await, "a clean exit");
    assert!(stream.next().await.is_none(), "the stream ended");
    assert!(stop(a).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_transaction_pooler_the_listener_connects_directly() {
    let db = TestDb::new().await;
    let org = Org::create(&db.tenant()).await;
    let bouncer = PgBouncer::start();
    // Requests and ingest (with its NOTIFY) through PgBouncer in transaction mode; LISTEN, which
    // needs a session of its own, on a direct connection.
    let served = serve_with(&[
        ("DATABASE_URL", bouncer.url(&db.name)),
        ("FLEETMON_LISTEN_DATABASE_URL", url_for(&db.name)),
    ]);
    let mut stream = SseReader::open(&served.base, &org, None).await;
    assert_eq!(stream.expect().await.event, "ready");
    org.send(&served.base, &[heartbeat("pooled")]).await;
    assert_eq!(
        rows(&stream.until("machine").await),
        pairs(&[("machine", "pooled")])
    );
    assert!(stop(served).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_listener_connection_means_a_resync_then_changes_flow_again() {
    let db = TestDb::new().await;
    let org = Org::create(&db.tenant()).await;
    let served = replica(&db.name);
    let mut stream = SseReader::open(&served.base, &org, None).await;
    assert_eq!(stream.expect().await.event, "ready");

    let mut admin = cluster().admin().await;
    let killed: Vec<bool> = fleetmon_server::db::sql::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE application_name = $1 AND datname = $2",
    )
    .bind(APPLICATION_NAME)
    .bind(&db.name)
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert_eq!(killed, [true], "one listener, on its own connection");

    let seen = stream.until("resync").await;
    assert_eq!(
        seen.iter().map(|e| e.event.as_str()).collect::<Vec<_>>(),
        ["overview", "resync"],
        "nothing but the first overview before"
    );
    assert_eq!(seen[1].data, json!({"reason": "listener_reconnected"}));
    // A reload is due: the overview follows at once.
    assert_eq!(stream.expect().await.event, "overview");
    org.send(&served.base, &[heartbeat("after")]).await;
    let seen = stream.until("machine").await;
    assert_eq!(rows(&seen), pairs(&[("machine", "after")]));
    // It listens again on a new connection of its own.
    let listeners: i64 = fleetmon_server::db::sql::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND datname = $2",
    )
    .bind(APPLICATION_NAME)
    .bind(&db.name)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(listeners, 1);
    assert!(stop(served).await);
}

/// fleetmon's router in this process, with a listener feeding a hub the test can inspect.
struct LiveApp {
    base: String,
    hub: Arc<Hub>,
    live: LiveStreams,
    tenant: TenantDb,
    _db: TestDb,
}

impl LiveApp {
    async fn start() -> Self {
        Self::serving(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).await
    }

    /// With a small, fixed send buffer on the server's connections (the kernel would otherwise
    /// grow it to megabytes), so that a client that does not read holds the server's writes up
    /// soon.
    async fn with_small_send_buffers() -> Self {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_send_buffer_size(8192).unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        Self::serving(socket.listen(128).unwrap()).await
    }

    async fn serving(listener: tokio::net::TcpListener) -> Self {
        let db = TestDb::new().await;
        let tenant = db.tenant();
        let hub = Arc::new(Hub::default());
        let options = listener::listen_options(None, &cluster().owner_options(&db.name)).unwrap();
        tokio::spawn(listener::run(options, hub.clone()));
        assert!(hub.wait_listening(PATIENCE).await, "the listener listens");
        let auth = fleetmon_server::auth::Auth::new(harness::local_auth(), &tenant).unwrap();
        let mut live = LiveStreams::new(hub.clone());
        live.recheck_every = RECHECK_EVERY;
        let state = AppState::new(tenant.clone(), Default::default(), auth).with_live(live.clone());
        let base = format!("http://{}", listener.local_addr().unwrap());
        harness::serve_state(listener, state);
        Self {
            base,
            hub,
            live,
            tenant,
            _db: db,
        }
    }

    /// Waits until the hub has received `count` more notifications than `before`.
    async fn delivered(&self, before: u64, count: u64) {
        let deadline = Instant::now() + PATIENCE;
        while self.hub.stats().deliveries < before + count {
            assert!(Instant::now() < deadline, "{:?}", self.hub.stats());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_orgs_changes_never_appear_and_its_stream_is_not_found() {
    let app = LiveApp::start().await;
    let (a, b) = (
        Org::create(&app.tenant).await,
        Org::create(&app.tenant).await,
    );
    let mut stream_a = SseReader::open(&app.base, &a, None).await;
    assert_eq!(stream_a.expect().await.event, "ready");
    let mut stream_b = SseReader::open(&app.base, &b, None).await;
    assert_eq!(stream_b.expect().await.event, "ready");

    // B's change commits first, so it would have arrived before A's.
    b.send(
        &app.base,
        &[
            heartbeat("b-machine"),
            event("job.submitted", json!({"job_id": "b-job"})),
        ],
    )
    .await;
    a.send(&app.base, &[heartbeat("a-machine")]).await;
    let seen_a = stream_a.until("machine").await;
    assert_eq!(rows(&seen_a), pairs(&[("machine", "a-machine")]));
    let mut seen_b = Vec::new();
    while rows(&seen_b).len() < 2 {
        seen_b.push(stream_b.expect().await);
    }
    assert_eq!(
        rows(&seen_b),
        pairs(&[("machine", "b-machine"), ("job", "b-job")])
    );

    // Operators see the streams and the notifications (the registry is the process's, shared
    // with the other tests running in it, hence lower bounds).
    let metrics = reqwest::get(format!("{}/metrics", app.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{metrics}"))
    };
    assert!(value("fleetmon_stream_clients") >= 2.0);
    assert!(value("fleetmon_change_notifications_total") >= 2.0);
    assert!(value("fleetmon_notify_lag_seconds") >= 0.0);

    // A's credentials on B's stream, no credentials at all, and an ingest token.
    let refused = |org: &Org, token: Option<&str>| {
        let mut request = reqwest::Client::new().get(format!("{}{}", app.base, org.stream_path()));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { error_code(request.send().await.unwrap()).await }
    };
    assert_eq!(
        refused(&b, Some(&a.read)).await,
        (StatusCode::NOT_FOUND, "not_found".into())
    );
    assert_eq!(
        refused(&a, None).await,
        (StatusCode::UNAUTHORIZED, "missing_token".into())
    );
    assert_eq!(
        refused(&a, Some(&a.ingest)).await,
        (StatusCode::FORBIDDEN, "wrong_token_kind".into())
    );
    let bad_window = reqwest::Client::new()
        .get(format!("{}{}?range=fortnight", app.base, a.stream_path()))
        .bearer_auth(&a.read)
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(bad_window).await,
        (StatusCode::BAD_REQUEST, "invalid_range".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_in_viewer_streams_with_the_session_cookie() {
    let app = LiveApp::start().await;
    let org = Org::create(&app.tenant).await;
    let email = format!("{}@example.com", Uuid::new_v4().simple());
    let user = crate::signin::account(&app.tenant, &email).await;
    let mut tx = app.tenant.begin(TenantContext::org(org.id)).await.unwrap();
    fleetmon_server::auth::local::add_member(tx.conn(), org.id, user, "viewer")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut browser = crate::signin::Browser::new(&app.base);
    assert_eq!(
        browser
            .sign_in(&email, crate::signin::PASSWORD)
            .await
            .status(),
        200
    );
    let cookies: Vec<String> = browser
        .cookies
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let response = reqwest::Client::new()
        .get(format!("{}{}", app.base, org.stream_path()))
        .header("cookie", cookies.join("; "))
        .send()
        .await
        .unwrap();
    let mut stream = SseReader::of(response);
    assert_eq!(stream.expect().await.event, "ready");
    org.send(&app.base, &[heartbeat("seen-by-viewer")]).await;
    let seen = stream.until("machine").await;
    assert_eq!(rows(&seen), pairs(&[("machine", "seen-by-viewer")]));
}

/// Many streams of one org are brought up to date by shared loads, not one load each, and each
/// still gets the overview of its own window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_streams_of_an_org_share_their_loads() {
    const STREAMS: usize = 24;
    let app = LiveApp::start().await;
    let org = Org::create(&app.tenant).await;
    let mut streams = Vec::new();
    for n in 0..STREAMS {
        let (range, hours) = if n % 2 == 0 { ("1h", 1) } else { ("7d", 168) };
        let response = reqwest::Client::new()
            .get(format!("{}{}?range={range}", app.base, org.stream_path()))
            .bearer_auth(&org.read)
            .send()
            .await
            .unwrap();
        let mut stream = SseReader::of(response);
        assert_eq!(stream.expect().await.event, "ready");
        stream.until("overview").await;
        streams.push((hours, stream));
    }

    let loads_before = app.live.loads_run();
    org.send(
        &app.base,
        &[
            heartbeat("shared-machine"),
            event("job.submitted", json!({"job_id": "shared-job"})),
        ],
    )
    .await;
    let want = pairs(&[("machine", "shared-machine"), ("job", "shared-job")]);
    for (hours, stream) in &mut streams {
        let mut seen = Vec::new();
        while rows(&seen) != want {
            seen.extend(stream.until("overview").await);
        }
        let overview = &seen.last().unwrap().data;
        let at = |field: &str| {
            chrono::DateTime::parse_from_rfc3339(overview[field].as_str().unwrap()).unwrap()
        };
        assert_eq!(
            (at("until") - at("since")).num_hours(),
            *hours,
            "{overview}"
        );
        assert_eq!(overview["jobs"]["pending"], 1, "{overview}");
    }
    let loads = app.live.loads_run() - loads_before;
    assert!(
        (1..=STREAMS as u64 / 4).contains(&loads),
        "{loads} loads brought {STREAMS} streams up to date"
    );
}

/// A connection that asks for the stream at `path` of `base` with `token` and then never reads,
/// with a small receive buffer so the server's writes back up soon.
pub(crate) async fn never_reading(base: &str, path: &str, token: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let address = base.trim_start_matches("http://").parse().unwrap();
    let mut connection = socket.connect(address).await.unwrap();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\r\n");
    connection.write_all(request.as_bytes()).await.unwrap();
    connection
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_read_cost_a_bounded_buffer_and_are_told_to_resync() {
    let app = LiveApp::with_small_send_buffers().await;
    let org = Org::create(&app.tenant).await;
    let mut sleepers = Vec::new();
    for _ in 0..3 {
        sleepers.push(never_reading(&app.base, &org.stream_path(), &org.read).await);
    }
    while app.hub.stats().clients < 3 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Thousands of distinct jobs, more than the org's log of recent changes holds.
    let jobs = 2 * RECENT_IDS;
    let mut most_pending = 0;
    for batch in 0..jobs / 500 {
        let events: Vec<Value> = (0..500)
            .map(|i| {
                event(
                    "job.submitted",
                    json!({"job_id": format!("bulk-{batch}-{i}"), "name": "x".repeat(200)}),
                )
            })
            .collect();
        org.send(&app.base, &events).await;
        most_pending = most_pending.max(app.hub.stats().most_pending);
    }
    // They really fell behind, and what they are owed is the org's log, shared and bounded;
    // each holds at most the push it could not write.
    assert!(most_pending > 0, "the sleepers kept up");
    assert!(most_pending <= RECENT_IDS, "{most_pending}");

    // Once a sleeper reads again, it is told to reload rather than sent every job.
    let mut sleeper = sleepers.pop().unwrap();
    let mut received = Vec::new();
    let mut chunk = vec![0; 64 << 10];
    let deadline = Instant::now() + PATIENCE;
    while !String::from_utf8_lossy(&received).contains("data: {\"reason\":\"too_many_changes\"}") {
        assert!(Instant::now() < deadline, "no resync");
        let read = tokio::time::timeout(PATIENCE, sleeper.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(read > 0, "the stream ended");
        received.extend_from_slice(&chunk[..read]);
    }
    let text = String::from_utf8_lossy(&received);
    assert!(
        text.matches("event: job\n").count() < jobs,
        "not every job was pushed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_event_id_resumes_with_what_was_missed_or_says_resync() {
    let app = LiveApp::start().await;
    let org = Org::create(&app.tenant).await;
    let mut stream = SseReader::open(&app.base, &org, None).await;
    let ready = stream.expect().await;
    org.send(&app.base, &[heartbeat("m-before")]).await;
    let seen = stream.until("machine").await;
    let last = seen.last().unwrap().id.clone();
    assert_ne!(last, ready.id);
    drop(stream);

    // Missed while away: two writes, one of them touching a job.
    let before = app.hub.stats().deliveries;
    org.send(&app.base, &[heartbeat("m-away")]).await;
    org.send(
        &app.base,
        &[event(
            "job.submitted",
            json!({"job_id": "j-away", "job_type": "train"}),
        )],
    )
    .await;
    app.delivered(before, 2).await;

    let mut resumed = SseReader::open(&app.base, &org, Some(&last)).await;
    assert_eq!(resumed.expect().await.event, "ready");
    let mut seen = Vec::new();
    while rows(&seen).len() < 2 {
        seen.push(resumed.expect().await);
    }
    assert_eq!(
        rows(&seen),
        pairs(&[("machine", "m-away"), ("job", "j-away")]),
        "only what came after the last event seen"
    );
    let job = seen.iter().find(|e| e.event == "job").unwrap();
    assert_eq!(
        (&job.data["status"], &job.data["job_type"]),
        (&json!("pending"), &json!("train"))
    );
    drop(resumed);

    // Ids this process never gave out (another replica's, or from before a restart).
    for unknown in ["garbage", "0badcafe-1"] {
        let mut stream = SseReader::open(&app.base, &org, Some(unknown)).await;
        let first = stream.expect().await;
        assert_eq!(
            (first.event.as_str(), &first.data),
            ("resync", &json!({"reason": "gap_unavailable"}))
        );
        // The stream goes on: later changes arrive.
        org.send(&app.base, &[heartbeat(unknown)]).await;
        assert_eq!(
            rows(&stream.until("machine").await),
            pairs(&[("machine", unknown)])
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ends_once_its_token_is_revoked() {
    let app = LiveApp::start().await;
    let org = Org::create(&app.tenant).await;
    let mut stream = SseReader::open(&app.base, &org, None).await;
    assert_eq!(stream.expect().await.event, "ready");
    // Checks in between let a live token go on.
    tokio::time::sleep(RECHECK_EVERY * 3).await;
    org.send(&app.base, &[heartbeat("still-allowed")]).await;
    assert_eq!(
        rows(&stream.until("machine").await),
        pairs(&[("machine", "still-allowed")])
    );

    let mut tx = app.tenant.begin(TenantContext::org(org.id)).await.unwrap();
    let (token,): (Uuid,) = fleetmon_server::db::sql::query_as(
        "SELECT id FROM api_tokens WHERE org_id = $1 AND kind = 'read'",
    )
    .bind(org.id)
    .fetch_one(tx.conn())
    .await
    .unwrap();
    assert!(tokens::revoke(tx.conn(), token).await.unwrap());
    tx.commit().await.unwrap();
    // At most the overview that followed the last push, then the end.
    let deadline = Instant::now() + PATIENCE;
    while let Some(event) = stream.next().await {
        assert_eq!(event.event, "overview");
        assert!(Instant::now() < deadline, "the stream goes on");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_machine_and_its_workers_are_sent_as_removed() {
    let app = LiveApp::start().await;
    let org = Org::create(&app.tenant).await;
    let long_ago = (chrono::Utc::now() - chrono::Duration::seconds(600)).to_rfc3339();
    let mut silent = heartbeat("doomed");
    silent["at"] = json!(long_ago);
    let mut worker = event(
        "worker.heartbeat",
        json!({"worker_id": "doomed-w", "machine_id": "doomed", "status": "idle"}),
    );
    worker["at"] = json!(long_ago);
    org.send(&app.base, &[silent, worker]).await;
    let mut stream = SseReader::open(&app.base, &org, None).await;
    assert_eq!(stream.expect().await.event, "ready");

    let mut tx = app.tenant.begin(TenantContext::org(org.id)).await.unwrap();
    let settings = fleetmon_server::orgs::settings::get(tx.conn(), org.id)
        .await
        .unwrap();
    let removal =
        fleetmon_server::query::fleet::remove_machine(tx.conn(), org.id, &settings, "doomed")
            .await
            .unwrap();
    tx.commit().await.unwrap();
    assert!(matches!(
        removal,
        fleetmon_server::query::fleet::Removal::Removed { .. }
    ));
    let mut seen = Vec::new();
    while rows(&seen).len() < 2 {
        seen.push(stream.expect().await);
    }
    let removed: Vec<(String, Value)> = seen
        .iter()
        .filter(|e| e.event == "machine" || e.event == "worker")
        .map(|e| (e.event.clone(), e.data.clone()))
        .collect();
    assert_eq!(
        removed,
        [
            (
                "machine".to_string(),
                json!({"id": "doomed", "removed": true})
            ),
            (
                "worker".to_string(),
                json!({"id": "doomed-w", "removed": true})
            ),
        ]
    );
}
