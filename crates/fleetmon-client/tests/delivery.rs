//! The client against a real HTTP server on loopback: batching, retries, compression, refusals
//! and the full-buffer policy, observed from both ends.

mod server;

use std::collections::HashSet;
use std::time::Duration;

use fleetmon_client::fleetmon_proto::ingest::JobRef;
use fleetmon_client::{
    event, Client, ClientConfig, Event, EventBody, SendError, StartError, Stats,
};
use reqwest::StatusCode;
use server::{eventually, Fault, Options, TestServer, INVALID_JOB_PREFIX, TOKEN};
use uuid::Uuid;

/// Settings for `server` where only size and explicit flushes cut batches, and retries are quick.
fn config(server: &TestServer) -> ClientConfig {
    let mut config = ClientConfig::new(&server.url, TOKEN);
    config.max_batch_delay = Duration::from_secs(3600);
    config.max_backoff = Duration::from_millis(20);
    config
}

fn job_started(job_id: &str) -> Event {
    event(EventBody::JobStarted(JobRef::new(job_id)))
}

/// Sends `n` events and returns their ids in order.
fn send_many(client: &Client, n: usize) -> Vec<Uuid> {
    (0..n)
        .map(|i| {
            let event = job_started(&format!("job-{i}"));
            let id = event.id;
            client.send(event).unwrap();
            id
        })
        .collect()
}

/// Flushes with a generous bound, so that a client that never settles fails instead of hanging.
async fn flush(client: &Client) {
    tokio::time::timeout(Duration::from_secs(10), client.flush())
        .await
        .expect("flush did not finish within 10 s");
}

/// Every event handed to `send` is in exactly one bucket.
fn assert_accounted(stats: Stats, sent: u64) {
    assert_eq!(
        stats.dropped
            + stats.queued
            + stats.accepted
            + stats.duplicates
            + stats.rejected
            + stats.failed,
        sent,
        "{stats:?}"
    );
}

#[tokio::test]
async fn batches_are_cut_by_size() {
    let server = TestServer::start(Options::default()).await;
    let client = Client::start(config(&server)).unwrap();

    let sent = send_many(&client, 1200);
    flush(&client).await;

    let received = server.received();
    let sizes: Vec<usize> = received.iter().map(|r| r.ids.len()).collect();
    assert_eq!(sizes, [500, 500, 200]);
    let delivered: Vec<Uuid> = received.iter().flat_map(|r| r.ids.clone()).collect();
    assert_eq!(delivered, sent, "in order, each once");
    let stats = client.stats();
    assert_eq!(
        (stats.sent_batches, stats.accepted, stats.queued),
        (3, 1200, 0)
    );
    assert_accounted(stats, 1200);
}

#[tokio::test]
async fn a_partial_batch_is_sent_once_its_oldest_event_is_due() {
    let server = TestServer::start(Options::default()).await;
    let mut config = config(&server);
    config.max_batch_delay = Duration::from_millis(200);
    let client = Client::start(config).unwrap();

    let sent: HashSet<Uuid> = send_many(&client, 3).into_iter().collect();
    // No flush: only the delay can send these.
    eventually("the delayed batch", || {
        let stats = client.stats();
        stats.accepted == 3 && stats.queued == 0
    })
    .await;

    let received = server.received();
    assert_eq!(received.len(), 1, "one batch for the three events");
    assert_eq!(
        received[0].ids.iter().copied().collect::<HashSet<_>>(),
        sent
    );
    assert_eq!(client.stats().queued, 0);
}

#[tokio::test]
async fn transient_503s_are_retried_with_the_same_event_ids() {
    let fault = Fault::Unavailable { retry_after_s: 0 };
    let server = TestServer::start(Options {
        faults: vec![fault, fault],
        ..Options::default()
    })
    .await;
    let client = Client::start(config(&server)).unwrap();

    let sent = send_many(&client, 50);
    flush(&client).await;

    let received = server.received();
    let statuses: Vec<StatusCode> = received.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::OK
        ]
    );
    for request in &received {
        assert_eq!(request.ids, sent, "every attempt carries the same batch");
    }
    assert_eq!(
        server.stored(),
        sent.iter().copied().collect::<HashSet<_>>()
    );
    let stats = client.stats();
    assert_eq!((stats.retries, stats.accepted, stats.failed), (2, 50, 0));
    assert_accounted(stats, 50);
}

#[tokio::test]
async fn a_lost_answer_is_retried_and_the_server_deduplicates() {
    let server = TestServer::start(Options {
        faults: vec![Fault::StoreThenUnavailable],
        ..Options::default()
    })
    .await;
    let client = Client::start(config(&server)).unwrap();

    let sent = send_many(&client, 20);
    flush(&client).await;

    // The server saw every id twice, yet stored each once.
    let received = server.received();
    assert_eq!(received.len(), 2);
    assert!(received.iter().all(|r| r.ids == sent));
    assert_eq!(
        server.stored(),
        sent.iter().copied().collect::<HashSet<_>>()
    );
    let stats = client.stats();
    assert_eq!(
        (stats.retries, stats.accepted, stats.duplicates),
        (1, 0, 20)
    );
    assert_accounted(stats, 20);
}

#[tokio::test]
async fn dropped_connections_are_retried() {
    let server = TestServer::start(Options {
        drop_connections: 2,
        ..Options::default()
    })
    .await;
    let client = Client::start(config(&server)).unwrap();

    let sent = send_many(&client, 10);
    flush(&client).await;

    assert_eq!(
        server.stored(),
        sent.iter().copied().collect::<HashSet<_>>()
    );
    let stats = client.stats();
    assert_eq!((stats.retries, stats.accepted, stats.failed), (2, 10, 0));
    assert_accounted(stats, 10);
}

#[tokio::test]
async fn retry_after_is_honored() {
    let server = TestServer::start(Options {
        faults: vec![Fault::Unavailable { retry_after_s: 1 }],
        ..Options::default()
    })
    .await;
    let mut config = config(&server);
    // Without Retry-After the pause would be at most 100 ms.
    config.max_backoff = Duration::from_secs(30);
    let client = Client::start(config).unwrap();

    send_many(&client, 1);
    flush(&client).await;

    let received = server.received();
    assert_eq!(received.len(), 2);
    let pause = received[1].at - received[0].at;
    assert!(
        pause >= Duration::from_millis(900),
        "resent after {pause:?}"
    );
}

#[tokio::test]
async fn bodies_are_gzipped_when_enabled() {
    let server = TestServer::start(Options::default()).await;
    let client = Client::start(config(&server)).unwrap();
    assert!(config(&server).gzip, "gzip is the default");

    let sent = send_many(&client, 100);
    flush(&client).await;

    let received = server.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].content_encoding.as_deref(), Some("gzip"));
    assert_eq!(
        received[0].ids, sent,
        "the server decompressed the batch intact"
    );
}

#[tokio::test]
async fn bodies_are_plain_json_when_gzip_is_off() {
    let server = TestServer::start(Options::default()).await;
    let mut config = config(&server);
    config.gzip = false;
    let client = Client::start(config).unwrap();

    let sent = send_many(&client, 5);
    flush(&client).await;

    let received = server.received();
    assert_eq!(received[0].content_encoding, None);
    assert_eq!(received[0].ids, sent);
}

#[tokio::test]
async fn unauthorized_is_not_retried_and_counts_as_failed() {
    let server = TestServer::start(Options::default()).await;
    let mut config = config(&server);
    config.token = "fm_ingest_revoked".into();
    let client = Client::start(config).unwrap();

    send_many(&client, 7);
    flush(&client).await;

    let received = server.received();
    assert_eq!(received.len(), 1, "a 401 is final");
    assert_eq!(received[0].status, StatusCode::UNAUTHORIZED);
    let stats = client.stats();
    assert_eq!((stats.failed, stats.retries, stats.accepted), (7, 0, 0));
    assert_accounted(stats, 7);
}

#[tokio::test]
async fn rejected_events_are_counted_and_not_resent() {
    let server = TestServer::start(Options::default()).await;
    let client = Client::start(config(&server)).unwrap();

    client.send(job_started("job-ok-1")).unwrap();
    client
        .send(job_started(&format!("{INVALID_JOB_PREFIX}1")))
        .unwrap();
    client.send(job_started("job-ok-2")).unwrap();
    flush(&client).await;

    assert_eq!(server.received().len(), 1);
    let stats = client.stats();
    assert_eq!((stats.accepted, stats.rejected, stats.retries), (2, 1, 0));
    assert_accounted(stats, 3);
}

#[tokio::test]
async fn too_large_batches_are_split_until_they_fit() {
    let server = TestServer::start(Options {
        max_events: Some(100),
        ..Options::default()
    })
    .await;
    let client = Client::start(config(&server)).unwrap();

    let sent = send_many(&client, 300);
    flush(&client).await;

    // 300 → 2 × 150 → 4 × 75, in the original order.
    let received = server.received();
    let ok: Vec<&server::Received> = received
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .collect();
    assert_eq!(
        ok.iter().map(|r| r.ids.len()).collect::<Vec<_>>(),
        [75, 75, 75, 75]
    );
    assert_eq!(
        ok.iter().flat_map(|r| r.ids.clone()).collect::<Vec<_>>(),
        sent
    );
    let stats = client.stats();
    assert_eq!(
        (stats.accepted, stats.failed, stats.sent_batches),
        (300, 0, 4)
    );
    assert_accounted(stats, 300);
}

/// Runs on the current-thread runtime, so the delivery task cannot take anything out of the
/// buffer while the test fills it: which events are refused is deterministic.
#[tokio::test(flavor = "current_thread")]
async fn a_full_buffer_drops_the_newest_events_and_counts_them() {
    let server = TestServer::start(Options::default()).await;
    let mut config = config(&server);
    config.buffer_capacity = 10;
    let client = Client::start(config).unwrap();

    let events: Vec<Event> = (0..15).map(|i| job_started(&format!("job-{i}"))).collect();
    let results: Vec<Result<(), SendError>> =
        events.iter().map(|e| client.send(e.clone())).collect();
    assert!(results[..10].iter().all(Result::is_ok));
    assert!(results[10..]
        .iter()
        .all(|r| *r == Err(SendError::BufferFull)));
    let stats = client.stats();
    assert_eq!((stats.queued, stats.dropped), (10, 5));

    flush(&client).await;

    let oldest: HashSet<Uuid> = events[..10].iter().map(|e| e.id).collect();
    assert_eq!(server.stored(), oldest, "the oldest ten were kept");
    let stats = client.stats();
    assert_eq!((stats.queued, stats.accepted, stats.dropped), (0, 10, 5));
    assert_accounted(stats, 15);
    // Room again once delivered.
    client.send(job_started("job-after")).unwrap();
}

#[tokio::test]
async fn shutdown_delivers_what_is_queued_and_closes_every_handle() {
    let server = TestServer::start(Options::default()).await;
    let client = Client::start(config(&server)).unwrap();
    let other = client.clone();

    let sent: HashSet<Uuid> = send_many(&client, 42).into_iter().collect();
    tokio::time::timeout(Duration::from_secs(10), client.shutdown())
        .await
        .expect("shutdown did not finish within 10 s");

    assert_eq!(server.stored(), sent);
    assert_eq!(other.send(job_started("late")), Err(SendError::Closed));
    assert_eq!(
        other.stats().dropped,
        0,
        "refusing after shutdown is not a drop"
    );
    // Flushing a stopped client returns at once.
    flush(&other).await;
}

#[tokio::test]
async fn start_refuses_settings_that_cannot_work() {
    let valid = || ClientConfig::new("http://127.0.0.1:9", TOKEN);
    let refused = |config: ClientConfig| Client::start(config).unwrap_err();

    assert!(matches!(
        refused(ClientConfig::new("127.0.0.1:9", TOKEN)),
        StartError::InvalidUrl { .. }
    ));
    assert!(matches!(
        refused(ClientConfig::new("http://127.0.0.1:9", "line\nbreak")),
        StartError::InvalidToken
    ));
    let mut zero_batch = valid();
    zero_batch.max_batch_events = 0;
    assert!(matches!(
        refused(zero_batch),
        StartError::ZeroLimit("max_batch_events")
    ));
    let mut zero_buffer = valid();
    zero_buffer.buffer_capacity = 0;
    assert!(matches!(
        refused(zero_buffer),
        StartError::ZeroLimit("buffer_capacity")
    ));
    #[cfg(not(feature = "rustls"))]
    assert!(matches!(
        refused(ClientConfig::new("https://fleetmon.example", TOKEN)),
        StartError::HttpsUnsupported
    ));
    assert!(Client::start(valid()).is_ok());
}

#[test]
fn start_needs_a_runtime() {
    let error = Client::start(ClientConfig::new("http://127.0.0.1:9", TOKEN)).unwrap_err();
    assert!(matches!(error, StartError::NoRuntime));
}
