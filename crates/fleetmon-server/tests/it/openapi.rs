//! The OpenAPI document at `/api/v1/openapi.json`: OpenAPI 3.1, equal to the committed snapshot
//! (so every change to the API shows up in review), and every path it lists is really served.
//!
//! After an intended API change, refresh the snapshot with
//! `FLEETMON_UPDATE_SNAPSHOTS=1 cargo test -p fleetmon-server --test it openapi`.

use std::path::PathBuf;

use serde_json::Value;

use crate::harness::{self, TestDb};

fn snapshot_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/openapi.json")
}

async fn document(base: &str) -> Value {
    let response = reqwest::get(format!("{base}/api/v1/openapi.json"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn the_document_is_openapi_3_1_and_matches_the_snapshot() {
    let db = TestDb::new().await;
    let base = harness::spawn_app(db.tenant(), Default::default(), harness::local_auth()).await;
    let served = document(&base).await;
    assert_eq!(served["openapi"], "3.1.0");
    // Client generators name methods after operation ids: they must be unique.
    let mut ids: Vec<&str> = served["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .map(|operation| operation["operationId"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    let count = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), count, "operation ids repeat");
    for (path, item) in served["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for (status, response) in operation["responses"].as_object().unwrap() {
                let described = response["description"]
                    .as_str()
                    .is_some_and(|d| !d.is_empty());
                assert!(
                    described,
                    "{method} {path} {status}: a response needs a description"
                );
            }
        }
    }
    let pretty = serde_json::to_string_pretty(&served).unwrap() + "\n";
    if std::env::var_os("FLEETMON_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(snapshot_path(), &pretty).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(snapshot_path()).unwrap_or_default();
    assert!(
        committed == pretty,
        "the OpenAPI document differs from tests/snapshots/openapi.json; if the API change is \
         intended, rerun with FLEETMON_UPDATE_SNAPSHOTS=1 and commit the snapshot"
    );
}

/// Every documented operation reaches a handler: without credentials it answers anything but
/// the router's own "no such endpoint".
#[tokio::test]
async fn every_documented_operation_is_served() {
    let db = TestDb::new().await;
    let base = harness::spawn_app(db.tenant(), Default::default(), harness::local_auth()).await;
    let served = document(&base).await;
    let client = reqwest::Client::new();
    let paths = served["paths"].as_object().unwrap();
    for (template, item) in paths {
        // Any value fits a path parameter here: the route match is what is checked.
        let path = template
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') {
                    "x"
                } else {
                    segment
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        for method in item.as_object().unwrap().keys() {
            let method: reqwest::Method = method.to_uppercase().parse().unwrap();
            let response = client
                .request(method.clone(), format!("{base}{path}"))
                .send()
                .await
                .unwrap();
            let status = response.status();
            let body = response.text().await.unwrap();
            assert!(
                !body.contains("no such endpoint"),
                "{method} {template} is documented but not routed ({status}: {body})"
            );
        }
    }
    // A few from each area, in case the registry itself stopped listing routes.
    for expected in [
        "/api/v1/ingest",
        "/api/v1/orgs/{org}/machines",
        "/auth/local/sign-in",
        "/.well-known/jwks.json",
        "/api/v1/openapi.json",
    ] {
        assert!(paths.contains_key(expected), "{expected} is missing");
    }
}
