//! The fleet as users read it: machines and workers with liveness derived from `last_seen_at`
//! and the org's thresholds, filters, pagination, and another org's ids staying invisible.

use chrono::{Duration, Utc};
use fleetmon_server::db::sql::{query, query_scalar};
use fleetmon_server::db::TenantContext;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::ingest_http::{event, App};
use crate::signin::{bearer_get, error_code};

fn at(seconds_ago: i64, mut event: Value) -> Value {
    event["at"] = json!((Utc::now() - Duration::seconds(seconds_ago)).to_rfc3339());
    event
}

pub async fn slug(app: &App) -> String {
    let mut tx = app.tenant.begin(TenantContext::none()).await.unwrap();
    let slug = query_scalar("SELECT slug FROM organizations WHERE id = $1")
        .bind(app.org)
        .fetch_one(tx.conn())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    slug
}

/// m-online heard 2 s ago, m-stale 30 s ago, m-offline 120 s ago, m-down shut down after its
/// last heartbeat; a busy worker on m-online, an idle one on m-stale, one on m-down.
async fn fleet() -> (App, String) {
    let app = App::start().await;
    let heartbeat = |machine: &str| {
        event(
            "machine.heartbeat",
            json!({"machine_id": machine, "status": "ready", "host": {"hostname": format!("{machine}.lan")}}),
        )
    };
    let worker = |id: &str, machine: &str, status: &str| {
        event(
            "worker.heartbeat",
            json!({"worker_id": id, "machine_id": machine, "status": status}),
        )
    };
    let accepted = app
        .send(&[
            at(2, heartbeat("m-online")),
            at(30, heartbeat("m-stale")),
            at(120, heartbeat("m-offline")),
            at(5, heartbeat("m-down")),
            at(
                1,
                event("machine.shutdown", json!({"machine_id": "m-down"})),
            ),
            at(2, worker("w-busy", "m-online", "busy")),
            at(30, worker("w-idle", "m-stale", "idle")),
            at(5, worker("w-down", "m-down", "idle")),
        ])
        .await;
    assert_eq!(accepted.accepted, 8, "{:?}", accepted.rejected);
    let slug = slug(&app).await;
    (app, slug)
}

pub async fn get(app: &App, path: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!(
            "{}/api/v1/orgs/{}{path}",
            app.base,
            slug(app).await
        ))
        .bearer_auth(&app.read)
        .send()
        .await
        .unwrap()
}

pub async fn json_of(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn field(list: &Value, key: &str, name: &str) -> Vec<(String, String)> {
    list[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["id"].as_str().unwrap().to_string(),
                m[name].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn machines_and_workers_carry_derived_liveness() {
    let (app, _) = fleet().await;
    let machines = json_of(get(&app, "/machines").await).await;
    assert_eq!(
        field(&machines, "machines", "liveness"),
        [
            ("m-down".into(), "offline".into()),
            ("m-offline".into(), "offline".into()),
            ("m-online".into(), "online".into()),
            ("m-stale".into(), "stale".into()),
        ]
    );
    let online = &machines["machines"][2];
    assert_eq!(online["hostname"], "m-online.lan");
    assert_eq!(
        (online["workers"].as_i64(), online["busy_workers"].as_i64()),
        (Some(1), Some(1))
    );

    let workers = json_of(get(&app, "/workers").await).await;
    assert_eq!(
        field(&workers, "workers", "liveness"),
        [
            ("w-busy".into(), "online".into()),
            // Its machine shut down after it was last heard from.
            ("w-down".into(), "offline".into()),
            ("w-idle".into(), "stale".into()),
        ]
    );

    // The org's thresholds decide: with stale after 60 s, m-stale is online again.
    let mut tx = app.tenant.begin(TenantContext::org(app.org)).await.unwrap();
    query("UPDATE organizations SET settings = settings || '{\"stale_after_s\": 60, \"offline_after_s\": 300}' WHERE id = $1")
        .bind(app.org)
        .execute(tx.conn())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let machines = json_of(get(&app, "/machines").await).await;
    assert_eq!(
        field(&machines, "machines", "liveness"),
        [
            ("m-down".into(), "offline".into()),
            ("m-offline".into(), "stale".into()),
            ("m-online".into(), "online".into()),
            ("m-stale".into(), "online".into()),
        ],
        "30 s is within 60 s, and 120 s within 300 s"
    );
}

#[tokio::test]
async fn filters_pages_and_details() {
    let (app, _) = fleet().await;
    let stale = json_of(get(&app, "/machines?liveness=stale").await).await;
    assert_eq!(field(&stale, "machines", "id").len(), 1);
    let bad = get(&app, "/machines?liveness=asleep").await;
    assert_eq!(
        error_code(bad).await,
        (StatusCode::BAD_REQUEST, "invalid_filter".into())
    );

    // Pages of two by id: no duplicates, no gaps, and the last page says there is no more.
    let first = json_of(get(&app, "/machines?limit=2").await).await;
    let after = first["next_after"].as_str().unwrap().to_string();
    let second = json_of(get(&app, &format!("/machines?limit=2&after={after}")).await).await;
    let mut ids: Vec<String> = [&first, &second]
        .iter()
        .flat_map(|page| field(page, "machines", "id").into_iter().map(|(id, _)| id))
        .collect();
    assert_eq!(ids.len(), 4);
    ids.dedup();
    assert_eq!(ids, ["m-down", "m-offline", "m-online", "m-stale"]);
    let last = json_of(get(&app, "/machines?limit=2&after=m-stale").await).await;
    assert!(last["machines"].as_array().unwrap().is_empty() && last["next_after"].is_null());

    let on_machine = json_of(get(&app, "/workers?machine=m-online&status=busy").await).await;
    let ids: Vec<String> = field(&on_machine, "workers", "id")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids, ["w-busy"]);
    let idle = json_of(get(&app, "/workers?machine=m-online&status=idle").await).await;
    assert!(idle["workers"].as_array().unwrap().is_empty());

    let detail = json_of(get(&app, "/machines/m-online").await).await;
    assert_eq!(detail["machine"]["liveness"], "online");
    assert_eq!(detail["workers"][0]["id"], "w-busy");
    assert_eq!(detail["workers"][0]["status"], "busy");
    let worker = json_of(get(&app, "/workers/w-idle").await).await;
    assert_eq!(worker["worker"]["machine_id"], "m-stale");
    assert_eq!(
        get(&app, "/machines/nope").await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn another_orgs_fleet_is_not_found() {
    let (app, slug_a) = fleet().await;
    // Org B, on the same server and database, with a machine of its own.
    let org_b = crate::fixtures::create_org(&app.tenant, "other").await;
    let mut tx = app.tenant.begin(TenantContext::org(org_b)).await.unwrap();
    crate::fixtures::insert(tx.conn(), "machines", org_b)
        .await
        .unwrap();
    let token_b = fleetmon_server::auth::tokens::create(
        tx.conn(),
        org_b,
        fleetmon_server::auth::tokens::TokenKind::Read,
        "b",
        None,
    )
    .await
    .unwrap()
    .secret;
    let machine_b: String = query_scalar("SELECT id FROM machines WHERE org_id = $1")
        .bind(org_b)
        .fetch_one(tx.conn())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut tx = app.tenant.begin(TenantContext::none()).await.unwrap();
    let slug_b: String = query_scalar("SELECT slug FROM organizations WHERE id = $1")
        .bind(org_b)
        .fetch_one(tx.conn())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let status = |path: String, token: String| {
        let response = bearer_get(format!("{}/api/v1/orgs/{path}", app.base), token);
        async move { response.await.status() }
    };
    // A's credentials on B's org, and B's on A's: not found.
    assert_eq!(
        status(format!("{slug_b}/machines"), app.read.clone()).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        status(format!("{slug_a}/workers/w-busy"), token_b.clone()).await,
        StatusCode::NOT_FOUND
    );
    // B's own org does not contain A's machines, nor A's org B's.
    assert_eq!(
        status(format!("{slug_b}/machines/m-online"), token_b.clone()).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        status(format!("{slug_a}/machines/{machine_b}"), app.read.clone()).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        status(format!("{slug_b}/machines/{machine_b}"), token_b).await,
        StatusCode::OK
    );
}
