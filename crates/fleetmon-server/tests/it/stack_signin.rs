//! Stack Auth through fleetmon, against the local stand-in of Stack's API: sign-in from
//! fleetmon's page, refresh through Stack, `selected_team_id` becoming org membership, bearer
//! tokens verified against Stack's JWKS, and the tokens fleetmon must refuse.

use fleetmon_server::auth::settings::{AuthSettings, StackConfig};
use fleetmon_server::auth::stack::StackUserKind;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{self, TestDb};
use crate::signin::{bearer_get, error_code, Browser};
use crate::stack_standin::StackStandin;

const PASSWORD: &str = "stack user password";

async fn app(stack: &StackStandin) -> (TestDb, String) {
    let db = TestDb::new().await;
    let settings = AuthSettings {
        public_url: harness::TEST_PUBLIC_URL.into(),
        local: false,
        stack: Some(StackConfig {
            settings: stack.settings(),
            webhook_secrets: Vec::new(),
        }),
        oidc: Vec::new(),
    };
    let base = harness::spawn_app(db.tenant(), Default::default(), settings).await;
    (db, base)
}

async fn stack_sign_in(browser: &mut Browser, email: &str) -> reqwest::Response {
    browser
        .send(
            Method::POST,
            "/auth/stack/sign-in",
            Some(json!({ "email": email, "password": PASSWORD })),
            false,
        )
        .await
}

#[tokio::test]
async fn sign_in_maps_the_selected_team_to_an_org_and_refreshes_through_stack() {
    let stack = StackStandin::start().await;
    let (_db, base) = app(&stack).await;
    let alice = stack.add_user("alice@example.com", PASSWORD);
    let bob = stack.add_user("bob@example.com", PASSWORD);
    let team = stack.add_team(&[&alice, &bob]);
    stack.select_team(&alice, Some(&team));
    stack.select_team(&bob, Some(&team));

    let mut browser = Browser::new(&base);
    let wrong = browser
        .send(
            Method::POST,
            "/auth/stack/sign-in",
            Some(json!({ "email": "alice@example.com", "password": "wrong password!" })),
            false,
        )
        .await;
    assert_eq!(
        error_code(wrong).await,
        (StatusCode::UNAUTHORIZED, "invalid_credentials".into())
    );
    assert_eq!(
        stack_sign_in(&mut browser, "alice@example.com")
            .await
            .status(),
        200
    );
    assert!(
        browser.cookies.contains_key("fm_stack_refresh"),
        "Stack's refresh token stays server-bound in an HttpOnly cookie"
    );
    let me: Value = browser
        .send(Method::GET, "/api/v1/me", None, false)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["user"]["email"], "alice@example.com", "{me}");
    assert_eq!(
        me["orgs"][0]["role"], "owner",
        "the first user of a new team owns its org"
    );
    let slug = me["orgs"][0]["slug"].as_str().unwrap().to_string();

    let mut bobs = Browser::new(&base);
    assert_eq!(
        stack_sign_in(&mut bobs, "bob@example.com").await.status(),
        200
    );
    let show: Value = bobs
        .send(Method::GET, &format!("/api/v1/orgs/{slug}"), None, false)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(show["role"], "member");

    let refreshes = stack.requests("/api/v1/auth/sessions/current/refresh");
    assert_eq!(
        browser
            .send(Method::POST, "/auth/refresh", None, true)
            .await
            .status(),
        200
    );
    assert_eq!(
        stack.requests("/api/v1/auth/sessions/current/refresh"),
        refreshes + 1,
        "refresh goes through Stack"
    );

    // Stack ends the session: fleetmon's refresh fails and its session is revoked too.
    stack.revoke_sessions(&alice);
    let refused = browser
        .send(Method::POST, "/auth/refresh", None, true)
        .await;
    assert_eq!(
        error_code(refused).await,
        (StatusCode::UNAUTHORIZED, "session_ended".into())
    );
}

#[tokio::test]
async fn stack_bearer_tokens_are_verified_locally_and_keys_rotate_without_restart() {
    let stack = StackStandin::start().await;
    let (_db, base) = app(&stack).await;
    let carol = stack.add_user("carol@example.com", PASSWORD);
    let me = |token: String| bearer_get(format!("{base}/api/v1/me"), token);
    let token = stack.mint(&stack.claims_for(&carol));
    let response = me(token.clone()).await;
    assert_eq!(response.status(), 200);
    let jwks_fetches = stack.requests(&format!(
        "/api/v1/projects/{}/.well-known/jwks.json",
        stack.settings().project_id
    ));
    assert_eq!(me(token).await.status(), 200);
    assert_eq!(
        stack.requests(&format!(
            "/api/v1/projects/{}/.well-known/jwks.json",
            stack.settings().project_id
        )),
        jwks_fetches,
        "no call to Stack per request"
    );

    stack.rotate_keys();
    let rotated = stack.mint(&stack.claims_for(&carol));
    let kid = jsonwebtoken::decode_header(&rotated).unwrap().kid.unwrap();
    assert_eq!(kid, stack.current_kid(StackUserKind::Regular));
    assert_eq!(
        me(rotated).await.status(),
        200,
        "a new kid is fetched without a restart"
    );

    // Another Stack project's token: a different issuer.
    let mut other = stack.claims_for(&carol);
    other.insert(
        "iss".into(),
        json!(format!(
            "{}/api/v1/projects/another-project",
            stack.settings().api_url
        )),
    );
    other.insert("aud".into(), json!("another-project"));
    assert_eq!(
        error_code(me(stack.mint(&other)).await).await,
        (StatusCode::UNAUTHORIZED, "unknown_issuer".into())
    );
    // Right issuer, another project's audience.
    let mut audience = stack.claims_for(&carol);
    audience.insert("aud".into(), json!("another-project"));
    assert_eq!(
        error_code(me(stack.mint(&audience)).await).await,
        (StatusCode::UNAUTHORIZED, "bad_audience".into())
    );
    // Anonymous users are refused unless enabled, whichever issuer they come under.
    let mut anonymous = stack.claims_for(&carol);
    anonymous.insert("is_anonymous".into(), json!(true));
    assert_eq!(
        error_code(me(stack.mint(&anonymous)).await).await,
        (StatusCode::UNAUTHORIZED, "anonymous_not_allowed".into())
    );
    let mut anon_issuer = anonymous.clone();
    anon_issuer.insert(
        "iss".into(),
        json!(stack.settings().issuer_of(StackUserKind::Anonymous).issuer),
    );
    anon_issuer.insert(
        "aud".into(),
        json!(format!("{}:anon", stack.settings().project_id)),
    );
    assert_eq!(
        error_code(me(stack.mint(&anon_issuer)).await).await,
        (StatusCode::UNAUTHORIZED, "unknown_issuer".into())
    );
    let mut restricted = stack.claims_for(&carol);
    restricted.insert("is_restricted".into(), json!(true));
    assert_eq!(
        error_code(me(stack.mint(&restricted)).await).await,
        (StatusCode::UNAUTHORIZED, "restricted_not_allowed".into())
    );
}

/// The stand-in's links point at the configured public URL; the test server is elsewhere.
fn at(base: &str, url: &str) -> String {
    url.replacen(harness::TEST_PUBLIC_URL, base, 1)
}

#[tokio::test]
async fn one_time_codes_magic_links_and_oauth_sign_in_through_stack() {
    let stack = StackStandin::start().await;
    let (_db, base) = app(&stack).await;
    let dana = stack.add_user("dana@example.com", PASSWORD);
    stack.set_oauth_user("github", &dana);

    // A typed code, completed by the nonce the page was given.
    let mut browser = Browser::new(&base);
    let sent: Value = browser
        .send(
            Method::POST,
            "/auth/stack/send-code",
            Some(json!({ "email": "dana@example.com" })),
            false,
        )
        .await
        .json()
        .await
        .unwrap();
    let otp = stack.outbox().pop().unwrap().otp;
    let wrong = browser
        .send(
            Method::POST,
            "/auth/stack/code-sign-in",
            Some(json!({ "code": format!("ZZZZZZ{}", sent["nonce"].as_str().unwrap()) })),
            false,
        )
        .await;
    assert_eq!(
        error_code(wrong).await,
        (StatusCode::UNAUTHORIZED, "invalid_code".into())
    );
    let code = format!("{otp}{}", sent["nonce"].as_str().unwrap());
    let signed_in = browser
        .send(
            Method::POST,
            "/auth/stack/code-sign-in",
            Some(json!({ "code": code })),
            false,
        )
        .await;
    assert_eq!(signed_in.status(), 200);
    let me: Value = browser
        .send(Method::GET, "/api/v1/me", None, false)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["user"]["email"], "dana@example.com");

    // The magic link from the email signs in and opens the app.
    let mut linked = Browser::new(&base);
    linked
        .send(
            Method::POST,
            "/auth/stack/send-code",
            Some(json!({ "email": "dana@example.com" })),
            false,
        )
        .await;
    let link = stack.outbox().pop().unwrap().link;
    let landed = linked
        .send(Method::GET, &at(&base, &link), None, false)
        .await;
    assert_eq!(landed.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        linked
            .send(Method::GET, "/api/v1/me", None, false)
            .await
            .status(),
        200
    );

    // OAuth through Stack: fleetmon → Stack → (the provider) → fleetmon's callback.
    let mut oauth = Browser::new(&base);
    let started = oauth
        .send(
            Method::GET,
            "/auth/stack/oauth/github/start?return_to=/jobs",
            None,
            false,
        )
        .await;
    assert_eq!(started.status(), StatusCode::SEE_OTHER);
    let authorize = started.headers()["location"].to_str().unwrap().to_string();
    let at_stack = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let back = at_stack.get(&authorize).send().await.unwrap();
    let callback = back.headers()["location"].to_str().unwrap().to_string();
    let landed = oauth
        .send(Method::GET, &at(&base, &callback), None, false)
        .await;
    assert_eq!(landed.status(), StatusCode::SEE_OTHER);
    assert_eq!(landed.headers()["location"], "/jobs");
    let me: Value = oauth
        .send(Method::GET, "/api/v1/me", None, false)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["user"]["email"], "dana@example.com");
    // All three ways in are the same user.
    let mut ids = Vec::new();
    for b in [&mut browser, &mut linked, &mut oauth] {
        let me: Value = b
            .send(Method::GET, "/api/v1/me", None, false)
            .await
            .json()
            .await
            .unwrap();
        ids.push(me["user"]["id"].as_str().unwrap().to_string());
    }
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
}

#[tokio::test]
async fn claims_sync_users_sparingly_and_invitations_need_a_verified_email() {
    use fleetmon_server::db::sql::{query, query_scalar};
    use fleetmon_server::db::TenantContext;

    let stack = StackStandin::start().await;
    let (db, base) = app(&stack).await;
    let erin = stack.add_user("erin@example.com", PASSWORD);
    let org = crate::fixtures::create_org(&db.tenant(), "invited").await;
    let mut tx = db.tenant().begin(TenantContext::org(org)).await.unwrap();
    query(
        "INSERT INTO invitations (org_id, email, role) VALUES ($1, 'erin@example.com', 'member')",
    )
    .bind(org)
    .execute(tx.conn())
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let me = |token: String| {
        let response = bearer_get(format!("{base}/api/v1/me"), token);
        async move { response.await.json::<Value>().await.unwrap() }
    };
    let seen = || async {
        let mut tx = db.tenant().begin(TenantContext::none()).await.unwrap();
        let at: (chrono::DateTime<chrono::Utc>, bool) = fleetmon_server::db::sql::query_as(
            "SELECT last_seen_at, email_verified FROM users WHERE subject = $1",
        )
        .bind(&erin)
        .fetch_one(tx.conn())
        .await
        .unwrap();
        tx.commit().await.unwrap();
        at
    };

    // Stack does not vouch for the email yet: the invitation waits.
    let mut unverified = stack.claims_for(&erin);
    unverified.insert("email_verified".into(), json!(false));
    let body = me(stack.mint(&unverified)).await;
    assert_eq!(body["orgs"].as_array().unwrap().len(), 0, "{body}");
    let (first_seen, verified) = seen().await;
    assert!(!verified);

    // Within a minute, an unchanged profile writes nothing.
    me(stack.mint(&unverified)).await;
    assert_eq!(seen().await.0, first_seen);

    // Now verified: the profile changed, the row is written and the invitation applies.
    let body = me(stack.mint(&stack.claims_for(&erin))).await;
    assert_eq!(body["orgs"][0]["role"], "member", "{body}");
    let (verified_seen, verified) = seen().await;
    assert!(verified && verified_seen >= first_seen);

    // A minute later, even an unchanged profile refreshes last_seen_at.
    let mut tx = db.tenant().begin(TenantContext::none()).await.unwrap();
    query("UPDATE users SET last_seen_at = now() - interval '2 minutes' WHERE subject = $1")
        .bind(&erin)
        .execute(tx.conn())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    me(stack.mint(&stack.claims_for(&erin))).await;
    let mut tx = db.tenant().begin(TenantContext::none()).await.unwrap();
    let recent: bool = query_scalar(
        "SELECT last_seen_at > now() - interval '10 seconds' FROM users WHERE subject = $1",
    )
    .bind(&erin)
    .fetch_one(tx.conn())
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert!(recent);
}

#[tokio::test]
async fn removals_and_first_visits_of_webhook_created_users_hold() {
    use fleetmon_server::db::sql::query;
    use fleetmon_server::db::TenantContext;

    let stack = StackStandin::start().await;
    let (db, base) = app(&stack).await;
    let owner = stack.add_user("owner@example.com", PASSWORD);
    let bob = stack.add_user("bob@example.com", PASSWORD);
    let team = stack.add_team(&[&owner, &bob]);
    stack.select_team(&owner, Some(&team));
    stack.select_team(&bob, Some(&team));
    let mut owners = Browser::new(&base);
    assert_eq!(
        stack_sign_in(&mut owners, "owner@example.com")
            .await
            .status(),
        200
    );
    let me: Value = owners
        .send(Method::GET, "/api/v1/me", None, false)
        .await
        .json()
        .await
        .unwrap();
    let slug = me["orgs"][0]["slug"].as_str().unwrap().to_string();
    let mut bobs = Browser::new(&base);
    assert_eq!(
        stack_sign_in(&mut bobs, "bob@example.com").await.status(),
        200
    );
    let bob_id = bobs
        .send(Method::GET, "/api/v1/me", None, false)
        .await
        .json::<Value>()
        .await
        .unwrap()["user"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Removed by an admin: bob's team claim, still in his tokens, does not bring him back.
    let removed = owners
        .send(
            Method::DELETE,
            &format!("/api/v1/orgs/{slug}/members/{bob_id}"),
            None,
            true,
        )
        .await;
    assert_eq!(removed.status(), 204);
    assert_eq!(
        stack_sign_in(&mut bobs, "bob@example.com").await.status(),
        200
    );
    let gone = bobs
        .send(Method::GET, &format!("/api/v1/orgs/{slug}"), None, false)
        .await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);

    // A user Stack's webhook created before their first visit (never seen), invited meanwhile:
    // the first request works and applies the invitation.
    let carol = stack.add_user("carol@example.com", PASSWORD);
    let mut tx = db.tenant().begin(TenantContext::none()).await.unwrap();
    query("INSERT INTO users (issuer, subject, email, email_verified) VALUES ($1, $2, 'carol@example.com', true)")
        .bind(stack.settings().issuer())
        .bind(&carol)
        .execute(tx.conn())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let invited = owners
        .send(
            Method::POST,
            &format!("/api/v1/orgs/{slug}/members"),
            Some(json!({ "email": "carol@example.com", "role": "viewer" })),
            true,
        )
        .await;
    assert_eq!(invited.status(), 201);
    let response = reqwest::Client::new()
        .get(format!("{base}/api/v1/orgs/{slug}"))
        .bearer_auth(stack.mint(&stack.claims_for(&carol)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let shown: Value = response.json().await.unwrap();
    assert_eq!(shown["role"], "viewer");
}

#[tokio::test]
async fn a_magic_link_works_only_in_the_browser_that_asked_for_it() {
    let stack = StackStandin::start().await;
    let (_db, base) = app(&stack).await;
    stack.add_user("frank@example.com", PASSWORD);
    let mut asker = Browser::new(&base);
    asker
        .send(
            Method::POST,
            "/auth/stack/send-code",
            Some(json!({ "email": "frank@example.com" })),
            false,
        )
        .await;
    let link = at(&base, &stack.outbox().pop().unwrap().link);
    // Someone else's browser (a link sent to a victim) is refused…
    let mut other = Browser::new(&base);
    let refused = other.send(Method::GET, &link, None, false).await;
    assert_eq!(
        error_code(refused).await,
        (StatusCode::FORBIDDEN, "csrf_failed".into())
    );
    // …the asker's is not.
    assert_eq!(
        asker.send(Method::GET, &link, None, false).await.status(),
        StatusCode::SEE_OTHER
    );
}
