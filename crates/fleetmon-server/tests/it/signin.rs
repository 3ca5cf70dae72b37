//! Built-in accounts end to end over HTTP: sign-in, the session cookies, CSRF, refresh,
//! sign-out, throttling, fleetmon's JWKS and key rotation, and the roles of the org API.

use std::collections::HashMap;

use fleetmon_proto::ErrorBody;
use fleetmon_server::auth::{local, signing, tokens};
use fleetmon_server::db::sql::query;
use fleetmon_server::db::{TenantContext, TenantDb};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::harness::{self, TestDb};

pub const PASSWORD: &str = "a long enough password";

/// A test browser: keeps the cookies fleetmon sets and sends the CSRF header like the dashboard.
pub struct Browser {
    pub base: String,
    pub cookies: HashMap<String, String>,
    client: reqwest::Client,
}

impl Browser {
    pub fn new(base: &str) -> Self {
        Self {
            base: base.to_string(),
            cookies: HashMap::new(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    pub fn keep_cookies(&mut self, response: &reqwest::Response) {
        for value in response.headers().get_all("set-cookie") {
            let text = value.to_str().unwrap();
            let (pair, _) = text.split_once(';').unwrap_or((text, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || text.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_string(), value.to_string());
            }
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// A request with the cookies and, when `csrf`, the CSRF header.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Value>,
        csrf: bool,
    ) -> reqwest::Response {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        let mut request = self
            .client
            .request(method, url)
            .header("cookie", self.cookie_header());
        if csrf {
            if let Some(token) = self.cookies.get("fm_csrf") {
                request = request.header("x-csrf-token", token);
            }
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        self.keep_cookies(&response);
        response
    }

    pub async fn sign_in(&mut self, email: &str, password: &str) -> reqwest::Response {
        self.send(
            Method::POST,
            "/auth/local/sign-in",
            Some(json!({ "email": email, "password": password })),
            false,
        )
        .await
    }
}

/// A GET with `Authorization: Bearer`, as an API client sends it.
pub async fn bearer_get(url: String, token: String) -> reqwest::Response {
    reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

pub async fn error_code(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: ErrorBody = response.json().await.unwrap();
    (status, body.error.code)
}

pub async fn account(db: &TenantDb, email: &str) -> Uuid {
    let mut tx = db.begin(TenantContext::none()).await.unwrap();
    let id = local::create_account(tx.conn(), email, None, PASSWORD)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    id
}

fn new_email() -> String {
    format!("{}@example.com", Uuid::new_v4().simple())
}

async fn app() -> (TestDb, String) {
    let db = TestDb::new().await;
    let base = harness::spawn_app(db.tenant(), Default::default(), harness::local_auth()).await;
    (db, base)
}

#[tokio::test]
async fn a_session_signs_in_refreshes_and_signs_out_with_safe_cookies() {
    let (db, base) = app().await;
    let email = new_email();
    account(&db.tenant(), &email).await;
    let mut browser = Browser::new(&base);

    let response = browser.sign_in(&email, PASSWORD).await;
    assert_eq!(response.status(), 200);
    let set: Vec<String> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    for name in ["fm_access", "fm_refresh"] {
        let cookie = set
            .iter()
            .find(|c| c.starts_with(&format!("{name}=")))
            .unwrap();
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
            "{cookie}"
        );
        assert!(
            !cookie.contains("Secure"),
            "plain http on loopback: no Secure flag"
        );
    }
    assert!(set
        .iter()
        .any(|c| c.starts_with("fm_refresh=") && c.contains("Path=/auth")));
    assert!(set
        .iter()
        .any(|c| c.starts_with("fm_csrf=") && !c.contains("HttpOnly")));

    let me = browser.send(Method::GET, "/api/v1/me", None, false).await;
    assert_eq!(me.status(), 200);
    let me: Value = me.json().await.unwrap();
    assert_eq!(me["user"]["email"], email.as_str());

    // A state-changing request on the cookie needs the CSRF header.
    let forged = browser
        .send(
            Method::POST,
            "/api/v1/orgs",
            Some(json!({ "slug": "forged" })),
            false,
        )
        .await;
    assert_eq!(
        error_code(forged).await,
        (StatusCode::FORBIDDEN, "csrf_failed".into())
    );
    let created = browser
        .send(
            Method::POST,
            "/api/v1/orgs",
            Some(json!({ "slug": "mine", "name": "Mine" })),
            true,
        )
        .await;
    assert_eq!(created.status(), 201);

    // The access token also works as a bearer (for scripts using a browser session).
    let access = browser.cookies["fm_access"].clone();
    let bearer = bearer_get(format!("{base}/api/v1/orgs"), access.clone()).await;
    assert_eq!(bearer.status(), 200);
    let orgs: Value = bearer.json().await.unwrap();
    assert_eq!(orgs["orgs"][0]["slug"], "mine");
    assert_eq!(orgs["orgs"][0]["role"], "owner");

    let refreshed = browser
        .send(Method::POST, "/auth/refresh", None, true)
        .await;
    assert_eq!(refreshed.status(), 200);
    assert_ne!(browser.cookies["fm_access"], access, "a new access token");

    let out = browser
        .send(Method::POST, "/auth/sign-out", None, true)
        .await;
    assert_eq!(out.status(), 204);
    assert!(!browser.cookies.contains_key("fm_access"));
    // Revocation is immediate, even for access tokens that have not expired.
    let after = bearer_get(format!("{base}/api/v1/me"), access.clone()).await;
    assert_eq!(
        error_code(after).await,
        (StatusCode::UNAUTHORIZED, "session_ended".into())
    );
    // Also on an org's data, where the session is checked inside the read's own transaction.
    for path in ["/api/v1/orgs/mine", "/api/v1/orgs/mine/jobs"] {
        let after = bearer_get(format!("{base}{path}"), access.clone()).await;
        assert_eq!(
            error_code(after).await,
            (StatusCode::UNAUTHORIZED, "session_ended".into()),
            "{path}"
        );
    }
}

#[tokio::test]
async fn wrong_passwords_are_throttled_per_account() {
    let (db, base) = app().await;
    let email = new_email();
    account(&db.tenant(), &email).await;
    let mut browser = Browser::new(&base);
    let unknown = browser.sign_in("nobody@example.com", PASSWORD).await;
    assert_eq!(
        error_code(unknown).await,
        (StatusCode::UNAUTHORIZED, "invalid_credentials".into())
    );
    for _ in 0..fleetmon_server::auth::throttle::ACCOUNT_LIMIT {
        let wrong = browser.sign_in(&email, "not the password at all").await;
        assert_eq!(
            error_code(wrong).await,
            (StatusCode::UNAUTHORIZED, "invalid_credentials".into())
        );
    }
    let locked = browser.sign_in(&email, PASSWORD).await;
    assert!(locked.headers().contains_key("retry-after"));
    assert_eq!(
        error_code(locked).await,
        (StatusCode::TOO_MANY_REQUESTS, "too_many_attempts".into())
    );
    // Another account from the same address is not locked by it.
    let other = new_email();
    account(&db.tenant(), &other).await;
    assert_eq!(browser.sign_in(&other, PASSWORD).await.status(), 200);
}

#[tokio::test]
async fn sign_in_from_another_origin_or_as_a_form_is_refused() {
    let (db, base) = app().await;
    let email = new_email();
    account(&db.tenant(), &email).await;
    let client = reqwest::Client::new();
    let cross = client
        .post(format!("{base}/auth/local/sign-in"))
        .header("origin", "https://evil.example.com")
        .json(&json!({ "email": email, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(cross).await,
        (StatusCode::FORBIDDEN, "csrf_failed".into())
    );
    // A cross-site form can post, but only form-encoded bodies: refused before any check.
    let form = client
        .post(format!("{base}/auth/local/sign-in"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("email={email}&password=a+long+enough+password"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(form).await,
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type".into()
        )
    );
    // The same credentials as JSON from no foreign origin work: the refusals were not about them.
    let mut browser = Browser::new(&base);
    assert_eq!(browser.sign_in(&email, PASSWORD).await.status(), 200);
}

#[tokio::test]
async fn rotating_the_signing_key_signs_nobody_out() {
    let (db, base) = app().await;
    let email = new_email();
    account(&db.tenant(), &email).await;
    let mut browser = Browser::new(&base);
    assert_eq!(browser.sign_in(&email, PASSWORD).await.status(), 200);
    let old_access = browser.cookies["fm_access"].clone();

    let jwks: Value = reqwest::get(format!("{base}/.well-known/jwks.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    assert_eq!(jwks["keys"][0]["kty"], "OKP");
    assert!(
        jwks["keys"][0].get("d").is_none(),
        "no private part is published"
    );

    let mut tx = db.tenant().begin(TenantContext::none()).await.unwrap();
    let new_kid = signing::rotate(tx.conn()).await.unwrap();
    tx.commit().await.unwrap();

    let jwks: Value = reqwest::get(format!("{base}/.well-known/jwks.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        jwks["keys"].as_array().unwrap().len(),
        2,
        "the retired key stays published"
    );
    let me = browser.send(Method::GET, "/api/v1/me", None, false).await;
    assert_eq!(me.status(), 200, "tokens of the retired key still work");
    assert_eq!(
        browser
            .send(Method::POST, "/auth/refresh", None, true)
            .await
            .status(),
        200
    );
    let new_access = browser.cookies["fm_access"].clone();
    assert_ne!(new_access, old_access);
    let header = jsonwebtoken::decode_header(&new_access).unwrap();
    assert_eq!(header.kid.as_deref(), Some(new_kid.as_str()));
    assert_eq!(
        browser
            .send(Method::GET, "/api/v1/me", None, false)
            .await
            .status(),
        200,
        "the new key is picked up"
    );

    // A token whose signature was tampered with is refused.
    let mut forged = new_access.into_bytes();
    let last = forged.len() - 2;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let response = bearer_get(format!("{base}/api/v1/me"), forged.to_string()).await;
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer error=\"invalid_token\""
    );
    assert_eq!(
        error_code(response).await,
        (StatusCode::UNAUTHORIZED, "bad_signature".into())
    );
}

/// A signed-in browser per role in one org, plus a non-member, and tokens.
struct Org {
    base: String,
    slug: String,
    id: Uuid,
    browsers: HashMap<&'static str, Browser>,
    users: HashMap<&'static str, Uuid>,
}

async fn org_with_roles(db: &TestDb) -> Org {
    let base = harness::spawn_app(db.tenant(), Default::default(), harness::local_auth()).await;
    let tenant = db.tenant();
    let slug = format!("roles-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let mut owner = Browser::new(&base);
    let owner_email = new_email();
    let owner_id = account(&tenant, &owner_email).await;
    assert_eq!(owner.sign_in(&owner_email, PASSWORD).await.status(), 200);
    let created: Value = owner
        .send(
            Method::POST,
            "/api/v1/orgs",
            Some(json!({ "slug": slug })),
            true,
        )
        .await
        .json()
        .await
        .unwrap();
    let id: Uuid = created["org"]["id"].as_str().unwrap().parse().unwrap();
    let mut browsers = HashMap::new();
    let mut users = HashMap::new();
    users.insert("owner", owner_id);
    for role in ["admin", "member", "viewer", "outsider"] {
        let email = new_email();
        let user = account(&tenant, &email).await;
        if role != "outsider" {
            let added = owner
                .send(
                    Method::POST,
                    &format!("/api/v1/orgs/{slug}/members"),
                    Some(json!({ "email": email, "role": role })),
                    true,
                )
                .await;
            assert_eq!(added.status(), 201);
        }
        let mut browser = Browser::new(&base);
        assert_eq!(browser.sign_in(&email, PASSWORD).await.status(), 200);
        browsers.insert(role, browser);
        users.insert(role, user);
    }
    browsers.insert("owner", owner);
    Org {
        base,
        slug,
        id,
        browsers,
        users,
    }
}

#[tokio::test]
async fn each_role_against_each_kind_of_endpoint() {
    let db = TestDb::new().await;
    let mut org = org_with_roles(&db).await;
    let slug = org.slug.clone();
    // (role, may read, may manage tokens)
    for (role, read, admin) in [
        ("viewer", true, false),
        ("member", true, false),
        ("admin", true, true),
        ("owner", true, true),
        ("outsider", false, false),
    ] {
        let browser = org.browsers.get_mut(role).unwrap();
        let show = browser
            .send(Method::GET, &format!("/api/v1/orgs/{slug}"), None, false)
            .await;
        let expected = if read {
            StatusCode::OK
        } else {
            StatusCode::NOT_FOUND
        };
        assert_eq!(show.status(), expected, "{role} reading the org");
        let tokens = browser
            .send(
                Method::POST,
                &format!("/api/v1/orgs/{slug}/tokens"),
                Some(json!({ "kind": "read", "name": role })),
                true,
            )
            .await;
        let expected = match (read, admin) {
            (false, _) => StatusCode::NOT_FOUND,
            (true, false) => StatusCode::FORBIDDEN,
            (true, true) => StatusCode::CREATED,
        };
        assert_eq!(tokens.status(), expected, "{role} creating a token");
    }
    // Deleting the org is the owner's alone.
    let admin = org.browsers.get_mut("admin").unwrap();
    let refused = admin
        .send(Method::DELETE, &format!("/api/v1/orgs/{slug}"), None, true)
        .await;
    assert_eq!(
        error_code(refused).await,
        (StatusCode::FORBIDDEN, "insufficient_role".into())
    );
    // An admin cannot demote the owner; the last owner cannot demote themself.
    let owner_id = org.users["owner"];
    let demote = admin
        .send(
            Method::PATCH,
            &format!("/api/v1/orgs/{slug}/members/{owner_id}"),
            Some(json!({ "role": "admin" })),
            true,
        )
        .await;
    assert_eq!(demote.status(), StatusCode::FORBIDDEN);
    let owner = org.browsers.get_mut("owner").unwrap();
    let last = owner
        .send(
            Method::PATCH,
            &format!("/api/v1/orgs/{slug}/members/{owner_id}"),
            Some(json!({ "role": "admin" })),
            true,
        )
        .await;
    assert_eq!(
        error_code(last).await,
        (StatusCode::CONFLICT, "last_owner".into())
    );
    let leave = owner
        .send(
            Method::DELETE,
            &format!("/api/v1/orgs/{slug}/members/{owner_id}"),
            None,
            true,
        )
        .await;
    assert_eq!(
        error_code(leave).await,
        (StatusCode::CONFLICT, "last_owner".into())
    );

    // A removed member loses access on the next request.
    let member_id = org.users["member"];
    let removed = owner
        .send(
            Method::DELETE,
            &format!("/api/v1/orgs/{slug}/members/{member_id}"),
            None,
            true,
        )
        .await;
    assert_eq!(removed.status(), 204);
    let member = org.browsers.get_mut("member").unwrap();
    let gone = member
        .send(Method::GET, &format!("/api/v1/orgs/{slug}"), None, false)
        .await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);

    // Every admin action is in the audit log.
    let owner = org.browsers.get_mut("owner").unwrap();
    let audit: Value = owner
        .send(
            Method::GET,
            &format!("/api/v1/orgs/{slug}/audit"),
            None,
            false,
        )
        .await
        .json()
        .await
        .unwrap();
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in [
        "org.created",
        "member.added",
        "token.created",
        "member.removed",
    ] {
        assert!(
            actions.contains(&action),
            "{action} missing from {actions:?}"
        );
    }
    let viewer = org.browsers.get_mut("viewer").unwrap();
    assert_eq!(
        viewer
            .send(
                Method::GET,
                &format!("/api/v1/orgs/{slug}/audit"),
                None,
                false
            )
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    let _ = org.id;
}

#[tokio::test]
async fn api_tokens_read_only_their_org_and_stop_when_revoked() {
    let db = TestDb::new().await;
    let mut org = org_with_roles(&db).await;
    let slug = org.slug.clone();
    let owner = org.browsers.get_mut("owner").unwrap();
    let created: Value = owner
        .send(
            Method::POST,
            &format!("/api/v1/orgs/{slug}/tokens"),
            Some(json!({ "kind": "read", "name": "grafana" })),
            true,
        )
        .await
        .json()
        .await
        .unwrap();
    let secret = created["secret"].as_str().unwrap().to_string();
    let token_id = created["id"].as_str().unwrap().to_string();
    let listed: Value = owner
        .send(
            Method::GET,
            &format!("/api/v1/orgs/{slug}/tokens"),
            None,
            false,
        )
        .await
        .json()
        .await
        .unwrap();
    assert!(
        !listed.to_string().contains(&secret),
        "listings never show the secret"
    );

    let client = reqwest::Client::new();
    let get = bearer_get;
    assert_eq!(
        get(format!("{}/api/v1/orgs/{slug}", org.base), secret.clone())
            .await
            .status(),
        200
    );
    // Reading is all a read token does.
    let write = client
        .post(format!("{}/api/v1/orgs/{slug}/tokens", org.base))
        .bearer_auth(&secret)
        .json(&json!({ "kind": "read", "name": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), StatusCode::FORBIDDEN);

    // Another org's token sees nothing here.
    let other = crate::fixtures::create_org(&db.tenant(), "other").await;
    let mut tx = db.tenant().begin(TenantContext::org(other)).await.unwrap();
    let foreign = tokens::create(tx.conn(), other, tokens::TokenKind::Read, "foreign", None)
        .await
        .unwrap();
    let ingest = tokens::create(tx.conn(), other, tokens::TokenKind::Ingest, "agent", None)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        get(format!("{}/api/v1/orgs/{slug}", org.base), foreign.secret)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let (status, code) =
        error_code(get(format!("{}/api/v1/orgs/{slug}", org.base), ingest.secret).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::FORBIDDEN, "wrong_token_kind")
    );

    let owner = org.browsers.get_mut("owner").unwrap();
    assert_eq!(
        owner
            .send(
                Method::DELETE,
                &format!("/api/v1/orgs/{slug}/tokens/{token_id}"),
                None,
                true
            )
            .await
            .status(),
        204
    );
    let revoked = get(format!("{}/api/v1/orgs/{slug}", org.base), secret).await;
    assert_eq!(
        error_code(revoked).await,
        (StatusCode::UNAUTHORIZED, "revoked_token".into())
    );
}

#[tokio::test]
async fn invitations_apply_when_the_invited_email_first_signs_in() {
    let db = TestDb::new().await;
    let mut org = org_with_roles(&db).await;
    let slug = org.slug.clone();
    let newcomer = new_email();
    let owner = org.browsers.get_mut("owner").unwrap();
    let invited: Value = owner
        .send(
            Method::POST,
            &format!("/api/v1/orgs/{slug}/members"),
            Some(json!({ "email": newcomer.to_uppercase(), "role": "viewer" })),
            true,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(invited["status"], "invited");
    let members: Value = owner
        .send(
            Method::GET,
            &format!("/api/v1/orgs/{slug}/members"),
            None,
            false,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(members["invitations"][0]["email"], newcomer.as_str());

    account(&db.tenant(), &newcomer).await;
    let mut browser = Browser::new(&org.base);
    assert_eq!(browser.sign_in(&newcomer, PASSWORD).await.status(), 200);
    let show: Value = browser
        .send(Method::GET, &format!("/api/v1/orgs/{slug}"), None, false)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(show["role"], "viewer");
    let owner = org.browsers.get_mut("owner").unwrap();
    let members: Value = owner
        .send(
            Method::GET,
            &format!("/api/v1/orgs/{slug}/members"),
            None,
            false,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        members["invitations"].as_array().unwrap().len(),
        0,
        "the invitation was used up"
    );
}

#[tokio::test]
async fn a_deleted_user_loses_access_at_the_next_request() {
    let db = TestDb::new().await;
    let mut org = org_with_roles(&db).await;
    let viewer_id = org.users["viewer"];
    let mut tx = db.tenant().begin(TenantContext::none()).await.unwrap();
    query("UPDATE users SET deleted_at = now() WHERE id = $1")
        .bind(viewer_id)
        .execute(tx.conn())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let viewer = org.browsers.get_mut("viewer").unwrap();
    let refused = viewer.send(Method::GET, "/api/v1/me", None, false).await;
    assert_eq!(
        error_code(refused).await,
        (StatusCode::UNAUTHORIZED, "session_ended".into())
    );
    let refresh = viewer.send(Method::POST, "/auth/refresh", None, true).await;
    assert_eq!(refresh.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn requests_without_credentials_get_a_401_with_a_reason() {
    let (_db, base) = app().await;
    let response = reqwest::get(format!("{base}/api/v1/orgs")).await.unwrap();
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer error=\"invalid_token\""
    );
    assert_eq!(
        error_code(response).await,
        (StatusCode::UNAUTHORIZED, "missing_token".into())
    );
    for (token, code) in [("a.b", "malformed_token"), ("not-a-jwt", "malformed_token")] {
        let response = bearer_get(format!("{base}/api/v1/orgs"), token.to_string()).await;
        assert_eq!(
            error_code(response).await,
            (StatusCode::UNAUTHORIZED, code.to_string()),
            "{token}"
        );
    }
}

#[tokio::test]
async fn settings_are_read_by_members_and_changed_by_admins_with_validation() {
    let db = TestDb::new().await;
    let mut org = org_with_roles(&db).await;
    let path = format!("/api/v1/orgs/{}/settings", org.slug);
    let viewer = org.browsers.get_mut("viewer").unwrap();
    let shown: Value = viewer
        .send(Method::GET, &path, None, false)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        shown["settings"],
        json!({ "stale_after_s": 15, "offline_after_s": 60, "retention_days": 30,
                "payloads_visible_to_viewers": true })
    );
    let refused = viewer
        .send(
            Method::PATCH,
            &path,
            Some(json!({ "stale_after_s": 30 })),
            true,
        )
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    let admin = org.browsers.get_mut("admin").unwrap();
    let changed: Value = admin
        .send(
            Method::PATCH,
            &path,
            Some(json!({ "stale_after_s": 30, "offline_after_s": 90 })),
            true,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(changed["settings"]["stale_after_s"], 30);
    assert_eq!(
        changed["settings"]["retention_days"], 30,
        "fields not given keep their value"
    );
    let hidden: Value = admin
        .send(
            Method::PATCH,
            &path,
            Some(json!({ "payloads_visible_to_viewers": false })),
            true,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        hidden["settings"],
        json!({ "stale_after_s": 30, "offline_after_s": 90, "retention_days": 30,
                "payloads_visible_to_viewers": false })
    );
    let not_a_flag = admin
        .send(
            Method::PATCH,
            &path,
            Some(json!({ "payloads_visible_to_viewers": "no" })),
            true,
        )
        .await;
    assert_eq!(
        error_code(not_a_flag).await,
        (StatusCode::BAD_REQUEST, "invalid_body".into())
    );
    let invalid = admin
        .send(
            Method::PATCH,
            &path,
            Some(json!({ "offline_after_s": 10 })),
            true,
        )
        .await;
    assert_eq!(
        error_code(invalid).await,
        (StatusCode::BAD_REQUEST, "invalid_settings".into())
    );
    let unknown = admin
        .send(
            Method::PATCH,
            &path,
            Some(json!({ "stale_afer_s": 10 })),
            true,
        )
        .await;
    assert_eq!(
        error_code(unknown).await,
        (StatusCode::BAD_REQUEST, "invalid_body".into())
    );
}
