//! Cross-tenant probes: every endpoint on an org, called with org A's credentials and org B's
//! slug or B's ids, answers 404 and changes nothing of B's. The endpoints come from the served
//! OpenAPI document, so an endpoint added later is probed without anyone remembering to list it;
//! a path parameter or request body this test does not know makes it fail until it is taught.

use std::collections::BTreeMap;

use chrono::{Duration, Utc};
use fleetmon_server::db::sql::query;
use fleetmon_server::db::TenantContext;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::fleet_api::slug;
use crate::ingest_http::{event, App};
use crate::signin::{account, Browser, PASSWORD};

/// A signed-in owner of `org`.
async fn owner_of(app: &App, org: Uuid) -> (Browser, Uuid) {
    let email = format!("{}@example.com", Uuid::new_v4().simple());
    let user = account(&app.tenant, &email).await;
    let mut tx = app.tenant.begin(TenantContext::org(org)).await.unwrap();
    query("INSERT INTO memberships (org_id, user_id, role) VALUES ($1, $2, 'owner')")
        .bind(org)
        .bind(user)
        .execute(tx.conn())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut browser = Browser::new(&app.base);
    assert_eq!(browser.sign_in(&email, PASSWORD).await.status(), 200);
    (browser, user)
}

async fn json_ok(browser: &mut Browser, method: Method, path: &str, body: Option<Value>) -> Value {
    let response = browser.send(method, path, body, true).await;
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.json().await.unwrap_or(Value::Null)
}

/// Org B with one of everything an org path can name: a machine (offline, so removable), a
/// worker, a job, an API token, a member besides its owner, and an invitation.
struct OrgB {
    slug: String,
    owner: Browser,
    /// Path parameter values naming B's things, by the path's prefix and parameter name.
    ids: BTreeMap<(&'static str, &'static str), String>,
}

async fn org_b(app: &App) -> OrgB {
    let org = crate::fixtures::create_org(&app.tenant, "b").await;
    let mut tx = app.tenant.begin(TenantContext::none()).await.unwrap();
    let slug: String =
        fleetmon_server::db::sql::query_scalar("SELECT slug FROM organizations WHERE id = $1")
            .bind(org)
            .fetch_one(tx.conn())
            .await
            .unwrap();
    tx.commit().await.unwrap();
    let (mut owner, _) = owner_of(app, org).await;
    let base = format!("/api/v1/orgs/{slug}");
    let token = json_ok(
        &mut owner,
        Method::POST,
        &format!("{base}/tokens"),
        Some(json!({"name": "b agent", "kind": "ingest"})),
    )
    .await;
    let (_, member) = owner_of(app, org).await;
    json_ok(
        &mut owner,
        Method::PATCH,
        &format!("{base}/members/{member}"),
        Some(json!({"role": "viewer"})),
    )
    .await;
    json_ok(
        &mut owner,
        Method::POST,
        &format!("{base}/members"),
        Some(json!({"email": "invited-to-b@example.com", "role": "viewer"})),
    )
    .await;
    let ten_minutes_ago = (Utc::now() - Duration::minutes(10)).to_rfc3339();
    let mut events = vec![
        event("machine.heartbeat", json!({"machine_id": "b-machine"})),
        event(
            "worker.heartbeat",
            json!({"worker_id": "b-worker", "machine_id": "b-machine", "status": "idle"}),
        ),
        event(
            "job.submitted",
            json!({"job_id": "b-job", "name": "b's job"}),
        ),
    ];
    for event in &mut events {
        event["at"] = json!(ten_minutes_ago);
    }
    let sent = app
        .post(Some(token["secret"].as_str().unwrap()))
        .json(&json!({ "events": events }))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 200);
    let ids = BTreeMap::from([
        (("machines", "id"), "b-machine".to_string()),
        (("workers", "id"), "b-worker".to_string()),
        (("jobs", "id"), "b-job".to_string()),
        (("tokens", "id"), token["id"].as_str().unwrap().to_string()),
        (("members", "user_id"), member.to_string()),
        (
            ("invitations", "email"),
            "invited-to-b@example.com".to_string(),
        ),
    ]);
    OrgB { slug, owner, ids }
}

/// What B's owner sees of B: everything the probes must leave as it was.
async fn state_of(b: &mut OrgB) -> Value {
    let base = format!("/api/v1/orgs/{}", b.slug);
    let mut state = serde_json::Map::new();
    for part in [
        "",
        "/machines",
        "/workers",
        "/jobs",
        "/members",
        "/tokens",
        "/settings",
    ] {
        let mut answer = json_ok(&mut b.owner, Method::GET, &format!("{base}{part}"), None).await;
        // When B's own token was last used is bookkeeping, not B's data.
        if let Some(tokens) = answer["tokens"].as_array_mut() {
            tokens
                .iter_mut()
                .for_each(|t| t["last_used_at"] = Value::Null);
        }
        state.insert(part.to_string(), answer);
    }
    Value::Object(state)
}

/// The body a probe sends: valid, so that what refuses it is the org check, not validation.
fn body_for(method: &Method, path: &str, operation: &Value) -> Option<Value> {
    let body = match (method.as_str(), path.rsplit('/').next().unwrap()) {
        ("POST", "members") => json!({"email": "probe@example.com", "role": "admin"}),
        ("PATCH", "{user_id}") => json!({"role": "owner"}),
        ("POST", "tokens") => json!({"name": "probe", "kind": "read"}),
        ("PATCH", "settings") => json!({"retention_days": 1, "payloads_visible_to_viewers": true}),
        _ => {
            assert!(
                operation.get("requestBody").is_none(),
                "{method} {path} takes a body: teach body_for one"
            );
            return None;
        }
    };
    Some(body)
}

/// The query string of a probe: a valid value for each parameter the operation requires.
fn required_query(path: &str, operation: &Value) -> String {
    let mut pairs = Vec::new();
    for parameter in operation["parameters"].as_array().into_iter().flatten() {
        if parameter["in"] != "query" || parameter["required"] != true {
            continue;
        }
        let value = match parameter["name"].as_str().unwrap() {
            "name" => "gpu.util",
            other => panic!("{path} requires ?{other}: teach required_query a value"),
        };
        pairs.push(format!("{}={value}", parameter["name"].as_str().unwrap()));
    }
    if pairs.is_empty() {
        String::new()
    } else {
        format!("?{}", pairs.join("&"))
    }
}

/// `path` with `{org}` as `slug` and every other parameter as B's id for it.
fn fill(path: &str, slug: &str, b: &OrgB) -> String {
    let mut parts = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        let filled = match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some("org") => slug.to_string(),
            Some(param) => {
                let owner = segments[i - 1];
                b.ids
                    .iter()
                    .find(|((prefix, name), _)| *prefix == owner && *name == param)
                    .map(|(_, id)| id.clone())
                    .unwrap_or_else(|| panic!("{path}: no id of B for {{{param}}}; add one"))
            }
            None => segment.to_string(),
        };
        parts.push(filled);
    }
    parts.join("/")
}

#[tokio::test]
async fn every_org_endpoint_answers_404_for_another_orgs_slug_or_ids() {
    let app = App::start().await;
    let slug_a = slug(&app).await;
    let (mut owner_a, _) = owner_of(&app, app.org).await;
    let mut b = org_b(&app).await;
    let before = state_of(&mut b).await;

    let document: Value = reqwest::get(format!("{}/api/v1/openapi.json", app.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut probed = 0;
    for (path, operations) in document["paths"].as_object().unwrap() {
        if !path.starts_with("/api/v1/orgs/{org}") {
            continue;
        }
        for (method, operation) in operations.as_object().unwrap() {
            let method: Method = method.to_uppercase().parse().unwrap();
            // B's slug with B's ids; and A's own slug with B's ids, where the path has any.
            let query = required_query(path, operation);
            let mut urls = vec![fill(path, &b.slug, &b) + &query];
            if path.matches('{').count() > 1 {
                urls.push(fill(path, &slug_a, &b) + &query);
            }
            for url in urls {
                let body = body_for(&method, path, operation);
                let as_owner = owner_a.send(method.clone(), &url, body, true).await;
                assert_eq!(
                    as_owner.status(),
                    StatusCode::NOT_FOUND,
                    "{method} {url} as A's owner"
                );
                let error: Value = as_owner.json().await.unwrap();
                assert_eq!(error["error"]["code"], "not_found", "{method} {url}");
                if method == Method::GET {
                    let as_token = reqwest::Client::new()
                        .get(format!("{}{url}", app.base))
                        .bearer_auth(&app.read)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(
                        as_token.status(),
                        StatusCode::NOT_FOUND,
                        "GET {url} with A's read token"
                    );
                }
                probed += 1;
            }
        }
    }
    // Every org endpoint of the document at the time of writing, with both slugs where it names ids.
    assert!(
        probed >= 33,
        "only {probed} probes: did the document lose endpoints?"
    );
    assert_eq!(state_of(&mut b).await, before, "B is as it was");

    // The probes were refused for being B's, not for being broken: A's owner can do them on A.
    let own = owner_a
        .send(
            Method::GET,
            &format!("/api/v1/orgs/{slug_a}/tokens"),
            None,
            true,
        )
        .await;
    assert_eq!(own.status(), StatusCode::OK);
}
