//! API tokens on the settings page in a real Chromium: an admin creates an ingest token, sees its
//! secret once with a copy button and the command that uses it against this server, the token
//! works, and after revoking it from the page the ingest API refuses it (401); both changes are
//! in the audit log. A viewer gets no admin controls and a 404 for the settings page and for
//! both of its forms, even sent with the viewer's own session and CSRF token.

use fleetmon_server::auth::tokens::{self, TokenKind};
use fleetmon_server::db::sql::query_as;
use fleetmon_server::db::TenantContext;
use fleetmon_server::orgs::Role;
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::browser::Browser;
use crate::dashboard::{email, http_session, open_signed_in, post_form, Site};
use crate::ingest_http::event;
use crate::signin::account;

/// What the ingest API answers to one heartbeat sent with `token`.
async fn ingest_status(site: &Site, token: &str) -> StatusCode {
    reqwest::Client::new()
        .post(site.url("/api/v1/ingest"))
        .bearer_auth(token)
        .json(&json!({"events": [event("machine.heartbeat", json!({"machine_id": "gpu-tok"}))]}))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn an_admin_creates_a_token_sees_it_once_and_revokes_it() {
    let site = Site::start().await;
    let admin = email("tok-admin");
    let admin_id = account(&site.tenant(), &admin).await;
    let org = site
        .org("tok-farm", "Token Farm", &[(admin_id, Role::Admin)])
        .await;
    let browser = Browser::laptop().await;
    open_signed_in(&browser, &site, &admin, "/orgs/tok-farm/settings").await;

    browser.fill("#token-name", "rack 4 agents").await;
    browser
        .click("form[action='/orgs/tok-farm/settings/tokens#tokens'] button[type=submit]")
        .await;
    let secret = browser.text("#token-secret").await;
    assert!(secret.starts_with("fmi_"), "{secret}");
    assert_eq!(
        browser.text("#token-command").await,
        format!("fleetmon simulate --url {} --token {secret}", site.base)
    );
    browser.click("button[data-copy='token-secret']").await;
    browser
        .wait_for_text("button[data-copy='token-secret']", "Copied")
        .await;
    browser
        .assert_clean_console("the settings page with a new token", &[])
        .await;
    browser.screenshot("settings-token-created").await;
    assert_eq!(ingest_status(&site, &secret).await, StatusCode::OK);

    // Listed from now on, never with its secret.
    browser.goto(&site.url("/orgs/tok-farm/settings")).await;
    let row = browser.find("tbody tr[data-token]").await;
    let id: Uuid = row
        .attr("data-token")
        .await
        .unwrap()
        .unwrap()
        .parse()
        .unwrap();
    let listed = row.text().await.unwrap();
    assert!(
        listed.contains("rack 4 agents") && listed.contains("ingest") && listed.contains("active"),
        "{listed}"
    );
    let source = browser.client.source().await.unwrap();
    assert!(!source.contains(&secret), "the secret is shown once only");

    browser
        .click(&format!("tr[data-token='{id}'] button[type=submit]"))
        .await;
    browser
        .wait_for_path(&format!("/orgs/tok-farm/settings?revoked={id}"))
        .await;
    assert!(browser
        .text("p.notice[role=status]")
        .await
        .contains("Token rack 4 agents was revoked"));
    assert!(browser
        .text(&format!("tr[data-token='{id}']"))
        .await
        .contains("revoked"));
    assert!(browser
        .all(&format!("tr[data-token='{id}'] form"))
        .await
        .is_empty());
    browser
        .assert_clean_console("the settings page after revoking", &[])
        .await;
    browser.screenshot("settings-token-revoked").await;
    browser.close().await;
    assert_eq!(
        ingest_status(&site, &secret).await,
        StatusCode::UNAUTHORIZED
    );

    let tenant = site.tenant();
    let mut tx = tenant.begin(TenantContext::org(org)).await.unwrap();
    let audit: Vec<(String, String)> = query_as(
        "SELECT action, actor FROM audit_log WHERE org_id = $1 AND target = $2 ORDER BY at, action",
    )
    .bind(org)
    .bind(format!("token:{id}"))
    .fetch_all(tx.conn())
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let actor = format!("user:{admin_id}");
    assert_eq!(
        audit,
        [
            ("token.created".to_string(), actor.clone()),
            ("token.revoked".to_string(), actor)
        ]
    );
}

#[tokio::test]
async fn a_viewer_gets_no_token_controls_and_a_404_for_their_urls() {
    let site = Site::start().await;
    let viewer = email("tok-viewer");
    let viewer_id = account(&site.tenant(), &viewer).await;
    let org = site
        .org("tok-view", "Token View", &[(viewer_id, Role::Viewer)])
        .await;
    let tenant = site.tenant();
    let mut tx = tenant.begin(TenantContext::org(org)).await.unwrap();
    let token = tokens::create(tx.conn(), org, TokenKind::Ingest, "agents", None)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let browser = Browser::laptop().await;
    open_signed_in(&browser, &site, &viewer, "/orgs/tok-view").await;
    assert!(browser
        .all("a[href='/orgs/tok-view/settings'], form[action*='/settings/tokens']")
        .await
        .is_empty());
    browser.goto(&site.url("/orgs/tok-view/settings")).await;
    assert_eq!(browser.text("h1").await, "Page not found");
    browser
        .assert_clean_console("the viewer's settings URL", &["404"])
        .await;

    // The forms, sent as the viewer's browser would: its session, its CSRF token, our Origin.
    let mut http = http_session(&browser, &site).await;
    browser.close().await;
    let csrf = http.cookies["fm_csrf"].clone();
    let nonce = Uuid::new_v4().to_string();
    for (path, form) in [
        (
            "/orgs/tok-view/settings/tokens".to_string(),
            vec![
                ("csrf", csrf.as_str()),
                ("nonce", nonce.as_str()),
                ("name", "mine"),
                ("kind", "read"),
            ],
        ),
        (
            format!("/orgs/tok-view/settings/tokens/{}/revoke", token.id),
            vec![("csrf", csrf.as_str())],
        ),
    ] {
        let response = post_form(&mut http, &path, Some(&site.base), &form).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        assert!(response.text().await.unwrap().contains("Page not found"));
    }
    // Nothing changed: no new token, and the agents' token still works.
    let mut tx = tenant.begin(TenantContext::org(org)).await.unwrap();
    let listed = tokens::list(tx.conn()).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(ingest_status(&site, &token.secret).await, StatusCode::OK);
}
