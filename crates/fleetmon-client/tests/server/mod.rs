//! A stand-in for the fleetmon ingest endpoint on loopback: real HTTP, the real wire types, the
//! server's idempotency by event id, and faults on demand (503s, lost answers, dropped
//! connections, a per-request event limit).

use std::collections::{HashSet, VecDeque};
use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use flate2::read::GzDecoder;
use fleetmon_client::fleetmon_proto::ingest::{Batch, EventBody, IngestResponse, Rejection};
use fleetmon_client::fleetmon_proto::ErrorBody;
use tokio::net::{TcpListener, TcpStream};
use uuid::Uuid;

/// The only token the server takes.
pub const TOKEN: &str = "fm_ingest_test_token";

/// Jobs whose id starts with this are refused event by event, as the real server refuses an
/// invalid event.
pub const INVALID_JOB_PREFIX: &str = "invalid-";

/// A failure for one upcoming request (requests past the script are served normally).
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// 503 with `Retry-After: <seconds>`; nothing is stored.
    Unavailable { retry_after_s: u64 },
    /// Stores the events, then answers 503 as if the answer had been lost on the way.
    StoreThenUnavailable,
}

#[derive(Debug, Default)]
pub struct Options {
    pub faults: Vec<Fault>,
    /// Connections closed as soon as they are accepted, before reading anything.
    pub drop_connections: usize,
    /// Requests with more events than this get 413 `too_many_events`.
    pub max_events: Option<usize>,
}

/// One request as the server decoded it.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub content_encoding: Option<String>,
    pub ids: Vec<Uuid>,
    pub status: StatusCode,
}

pub struct TestServer {
    pub url: String,
    shared: Arc<Shared>,
}

struct Shared {
    faults: Mutex<VecDeque<Fault>>,
    max_events: Option<usize>,
    received: Mutex<Vec<Received>>,
    stored: Mutex<HashSet<Uuid>>,
}

impl TestServer {
    pub async fn start(options: Options) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared {
            faults: Mutex::new(options.faults.into()),
            max_events: options.max_events,
            received: Mutex::default(),
            stored: Mutex::default(),
        });
        let app = Router::new()
            .route("/api/v1/ingest", post(ingest))
            .with_state(Arc::clone(&shared));
        let listener = FlakyListener {
            inner: listener,
            to_drop: AtomicUsize::new(options.drop_connections),
        };
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, shared }
    }

    /// Every request so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// The distinct event ids stored so far.
    pub fn stored(&self) -> HashSet<Uuid> {
        self.shared.stored.lock().unwrap().clone()
    }
}

async fn ingest(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let content_encoding = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap().to_string());
    let json = match content_encoding.as_deref() {
        None => body.to_vec(),
        Some("gzip") => {
            let mut json = Vec::new();
            GzDecoder::new(body.as_ref())
                .read_to_end(&mut json)
                .unwrap();
            json
        }
        Some(other) => panic!("unexpected Content-Encoding {other}"),
    };
    let batch: Batch = serde_json::from_slice(&json).expect("a JSON batch");
    let (status, response) = answer(&shared, &headers, &batch);
    shared.received.lock().unwrap().push(Received {
        at: Instant::now(),
        content_encoding,
        ids: batch.events.iter().map(|e| e.id).collect(),
        status,
    });
    response
}

fn answer(shared: &Shared, headers: &HeaderMap, batch: &Batch) -> (StatusCode, Response) {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap());
    if authorization != Some(&format!("Bearer {TOKEN}")) {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the token is not valid",
        );
    }
    if shared
        .max_events
        .is_some_and(|max| batch.events.len() > max)
    {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_events",
            "too many events in one request",
        );
    }
    let fault = shared.faults.lock().unwrap().pop_front();
    match fault {
        None => (StatusCode::OK, Json(store(shared, batch)).into_response()),
        Some(Fault::Unavailable { retry_after_s }) => unavailable(retry_after_s),
        Some(Fault::StoreThenUnavailable) => {
            store(shared, batch);
            unavailable(0)
        }
    }
}

/// The server's idempotent store: new ids are accepted, known ids are duplicates, invalid
/// events are rejected by index.
fn store(shared: &Shared, batch: &Batch) -> IngestResponse {
    let mut stored = shared.stored.lock().unwrap();
    let mut response = IngestResponse::default();
    for (index, event) in batch.events.iter().enumerate() {
        let invalid = matches!(&event.body, EventBody::JobStarted(job) if job.job_id.starts_with(INVALID_JOB_PREFIX));
        if invalid {
            response.rejected.push(Rejection {
                index: index as u32,
                code: "invalid_job".into(),
                message: "this job id is refused by the test server".into(),
            });
        } else if stored.insert(event.id) {
            response.accepted += 1;
        } else {
            response.duplicates += 1;
        }
    }
    response
}

fn unavailable(retry_after_s: u64) -> (StatusCode, Response) {
    let (status, mut response) = error(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "try again later",
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, retry_after_s.into());
    (status, response)
}

fn error(status: StatusCode, code: &str, message: &str) -> (StatusCode, Response) {
    (
        status,
        (status, Json(ErrorBody::new(code, message))).into_response(),
    )
}

/// A listener that closes the first few connections unanswered, as a crashing server or a
/// flaky middlebox would.
struct FlakyListener {
    inner: TcpListener,
    to_drop: AtomicUsize,
}

impl axum::serve::Listener for FlakyListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            let (stream, addr) = axum::serve::Listener::accept(&mut self.inner).await;
            let drop_it = self
                .to_drop
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if !drop_it {
                return (stream, addr);
            }
            drop(stream);
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// Waits (polling) until `done` holds, for at most ten seconds, so a broken client fails the
/// test instead of hanging it.
pub async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
