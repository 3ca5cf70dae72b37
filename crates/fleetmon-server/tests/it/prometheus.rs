//! `GET /metrics`: read back with a Prometheus text-format parser after real traffic.

use std::collections::HashMap;

use prometheus_parse::{Scrape, Value as Sample};
use serde_json::json;

use crate::harness::{self, TestDb};
use crate::ingest_http::{event, App};

pub(crate) async fn scrape(base: &str) -> Scrape {
    let response = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    Scrape::parse(text.lines().map(|line| Ok(line.to_string()))).expect("valid exposition")
}

fn value(sample: &Sample) -> f64 {
    match sample {
        Sample::Counter(v) | Sample::Gauge(v) | Sample::Untyped(v) => *v,
        other => panic!("not a plain sample: {other:?}"),
    }
}

/// The value of `name` with exactly these labels (the registry is shared by every test in this
/// process, so callers compare with what they themselves caused).
pub(crate) fn find(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| value(&s.value))
}

#[tokio::test]
async fn requests_ingest_outcomes_pool_and_build_are_exposed() {
    let app = App::start().await;
    let before = scrape(&app.base).await;
    let accepted_before = find(
        &before,
        "fleetmon_ingest_events_total",
        &[("outcome", "accepted")],
    )
    .unwrap_or(0.0);

    let good = event(
        "machine.heartbeat",
        json!({"machine_id": "m-1", "hostname": "gpu-1"}),
    );
    let bad = json!({"id": "not-a-uuid", "type": "machine.heartbeat"});
    let reply = app
        .post(Some(&app.ingest))
        .json(&json!({"events": [good.clone(), bad]}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    app.send(&[good]).await; // now a duplicate
    let client = reqwest::Client::new();
    let orgs: serde_json::Value = client
        .get(format!("{}/api/v1/orgs", app.base))
        .bearer_auth(&app.read)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let slug = orgs["orgs"][0]["slug"].as_str().unwrap().to_string();
    let machines = client
        .get(format!("{}/api/v1/orgs/{slug}/machines", app.base))
        .bearer_auth(&app.read)
        .send()
        .await
        .unwrap();
    assert_eq!(machines.status(), 200);

    let after = scrape(&app.base).await;
    let delta = |outcome: &str| {
        let labels = [("outcome", outcome)];
        find(&after, "fleetmon_ingest_events_total", &labels).unwrap_or(0.0)
            - find(&before, "fleetmon_ingest_events_total", &labels).unwrap_or(0.0)
    };
    // Other tests in this process ingest too: at least what this one sent.
    assert!(delta("accepted") >= 1.0, "accepted from {accepted_before}");
    assert!(delta("duplicate") >= 1.0);
    assert!(delta("rejected") >= 1.0);

    // Requests are labelled by route template, never by the path with its slug.
    let routed = [
        ("route", "/api/v1/orgs/:org/machines"),
        ("method", "GET"),
        ("status", "200"),
    ];
    assert!(find(&after, "fleetmon_http_requests_total", &routed).unwrap() >= 1.0);
    assert!(after
        .samples
        .iter()
        .filter_map(|s| s.labels.get("route"))
        .all(|route| !route.contains(&slug)));
    let histogram = after
        .samples
        .iter()
        .find(|s| {
            s.metric == "fleetmon_http_request_duration_seconds"
                && s.labels.get("route") == Some("/api/v1/ingest")
        })
        .expect("ingest latency histogram");
    match &histogram.value {
        Sample::Histogram(buckets) => {
            assert!(buckets.last().unwrap().count >= 2.0, "{buckets:?}")
        }
        other => panic!("not a histogram: {other:?}"),
    }

    let pool: HashMap<&str, f64> = ["in_use", "idle", "max"]
        .into_iter()
        .map(|state| {
            let v = find(&after, "fleetmon_db_pool_connections", &[("state", state)]).unwrap();
            (state, v)
        })
        .collect();
    assert!(
        pool["max"] >= 1.0 && pool["in_use"] + pool["idle"] <= pool["max"],
        "{pool:?}"
    );
    assert!(find(&after, "fleetmon_db_begin_duration_seconds_count", &[]).is_some());
    assert_eq!(
        find(
            &after,
            "fleetmon_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
}

/// `--metrics-listen`: `/metrics` moves to its own listener and leaves the API's.
#[tokio::test]
async fn a_metrics_listener_of_its_own_takes_metrics_off_the_api() {
    use fleetmon_server::http::{self, AppState};

    let db = TestDb::new().await;
    let tenant = db.tenant();
    let auth = fleetmon_server::auth::Auth::new(harness::local_auth(), &tenant).unwrap();
    let state = AppState::new(tenant, Default::default(), auth);
    let mut bases = Vec::new();
    for router in [
        http::router_without_metrics(state.clone()),
        http::metrics_router(state),
    ] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        bases.push(format!("http://{}", listener.local_addr().unwrap()));
        tokio::spawn(http::serve(listener, router, std::future::pending()));
    }
    let status = |url: String| async move { reqwest::get(url).await.unwrap().status().as_u16() };
    assert_eq!(status(format!("{}/metrics", bases[0])).await, 404);
    assert_eq!(status(format!("{}/healthz", bases[0])).await, 200);
    assert_eq!(status(format!("{}/metrics", bases[1])).await, 200);
    assert_eq!(status(format!("{}/healthz", bases[1])).await, 404);
}
