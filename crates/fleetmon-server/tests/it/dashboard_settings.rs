//! The settings page's forms in a real Chromium, against a real PostgreSQL: an admin adds a
//! member by email, changes their role and removes them, invites an email nobody has signed in
//! with and cancels the invitation, edits the liveness thresholds (the overview and the API then
//! follow them) and the retention, and finds each change on the audit page, page by page;
//! refused input is the page again at the API's status with its message and the form as it was
//! sent; the last owner cannot be demoted or removed; viewers and members get the 404 page for
//! every settings URL and form, even sent with their own session and CSRF token; and reloading
//! the answer to a token creation creates no second token.

use fleetmon_server::auth::tokens;
use fleetmon_server::db::sql::query_as;
use fleetmon_server::db::TenantContext;
use fleetmon_server::orgs::Role;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::browser::Browser;
use crate::dashboard::{email, http_session, open_signed_in, post_form, seconds_ago, Site};
use crate::ingest_http::event;
use crate::signin::{account, PASSWORD};

/// Selects `value` in the `<select>` matching `css`.
async fn choose(browser: &Browser, css: &str, value: &str) {
    browser
        .click(&format!("{css} option[value='{value}']"))
        .await;
}

/// The value of the input matching `css`.
async fn value(browser: &Browser, css: &str) -> String {
    browser
        .find(css)
        .await
        .prop("value")
        .await
        .unwrap()
        .unwrap_or_default()
}

/// The audit log's actions as the page lists them, top to bottom.
async fn listed_actions(browser: &Browser) -> Vec<String> {
    let mut actions = Vec::new();
    for cell in browser.all("table.audit tbody tr td:nth-child(3)").await {
        actions.push(cell.text().await.unwrap());
    }
    actions
}

/// The org's settings as the API answers them to `http`'s session.
async fn api_settings(http: &mut crate::signin::Browser, slug: &str) -> Value {
    let response = http
        .send(
            Method::GET,
            &format!("/api/v1/orgs/{slug}/settings"),
            None,
            false,
        )
        .await;
    assert_eq!(response.status(), 200);
    response.json::<Value>().await.unwrap()["settings"].clone()
}

#[tokio::test]
async fn an_admin_adds_changes_and_removes_a_member_and_finds_it_all_in_the_audit_log() {
    let site = Site::start().await;
    let tenant = site.tenant();
    let admin = email("set-admin");
    let admin_id = account(&tenant, &admin).await;
    let owner = email("set-owner");
    let owner_id = account(&tenant, &owner).await;
    let colleague = email("set-colleague");
    let colleague_id = account(&tenant, &colleague).await;
    let stranger = email("set-nobody");
    site.org(
        "set-farm",
        "Settings Farm",
        &[(owner_id, Role::Owner), (admin_id, Role::Admin)],
    )
    .await;
    let browser = Browser::laptop().await;
    open_signed_in(&browser, &site, &admin, "/orgs/set-farm/settings").await;

    // An admin manages everyone but owners, and cannot make owners (the API's rule).
    let owner_row = format!("tr[data-member='{owner_id}']");
    assert!(browser.text(&owner_row).await.contains("owner"));
    assert!(browser.all(&format!("{owner_row} form")).await.is_empty());
    assert!(browser
        .all("#member-role option[value='owner']")
        .await
        .is_empty());
    browser.assert_clean_console("the settings page", &[]).await;

    // Someone who has signed in: a member at once.
    browser
        .fill("#member-email", &colleague.to_uppercase())
        .await;
    choose(&browser, "#member-role", "viewer").await;
    browser
        .click("form[aria-label='Add a member'] button[type=submit]")
        .await;
    let added = format!(
        "/orgs/set-farm/settings?added={}",
        colleague.replace('@', "%40")
    );
    browser.wait_for_path(&added).await;
    assert_eq!(
        browser.text("p.notice[role=status]").await,
        format!("{colleague} is now a member, as viewer.")
    );
    let row = format!("tr[data-member='{colleague_id}']");
    assert_eq!(value(&browser, &format!("{row} select")).await, "viewer");
    browser
        .assert_clean_console("the settings page after adding", &[])
        .await;

    // Their role.
    choose(&browser, &format!("{row} select"), "member").await;
    browser
        .click(&format!("{row} form[action*='/role#'] button"))
        .await;
    browser
        .wait_for_path(&format!("/orgs/set-farm/settings?changed={colleague_id}"))
        .await;
    assert_eq!(
        browser.text("p.notice[role=status]").await,
        format!("{colleague} is now member.")
    );
    assert_eq!(value(&browser, &format!("{row} select")).await, "member");

    // Someone who has never signed in: invited.
    browser.fill("#member-email", &stranger).await;
    choose(&browser, "#member-role", "admin").await;
    browser
        .click("form[aria-label='Add a member'] button[type=submit]")
        .await;
    browser
        .wait_for_text("p.notice[role=status]", "was invited as admin")
        .await;
    let invitation = format!("tr[data-invitation='{stranger}']");
    assert!(browser.text(&invitation).await.contains("admin"));
    browser.screenshot("settings-members").await;
    browser
        .click(&format!("{invitation} button[type=submit]"))
        .await;
    browser
        .wait_for_text(
            "p.notice[role=status]",
            &format!("The invitation of {stranger} was cancelled."),
        )
        .await;
    assert!(browser.all(&invitation).await.is_empty());

    // The API's refusals, said on the page: an admin changing an owner (a form the page does not
    // offer, sent with the admin's own session) and a role that does not exist.
    let mut http = http_session(&browser, &site).await;
    let csrf = http.cookies["fm_csrf"].clone();
    let origin = Some(site.base.as_str());
    let path = format!("/orgs/set-farm/settings/members/{owner_id}/role");
    let form = [("csrf", csrf.as_str()), ("role", "viewer")];
    let refused = post_form(&mut http, &path, origin, &form).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let text = refused.text().await.unwrap();
    assert!(
        text.contains("Not changed: this needs the owner role in set-farm; you have admin"),
        "{text}"
    );
    let path = format!("/orgs/set-farm/settings/members/{colleague_id}/role");
    let form = [("csrf", csrf.as_str()), ("role", "superuser")];
    let refused = post_form(&mut http, &path, origin, &form).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let text = refused.text().await.unwrap();
    assert!(text.contains("is not a role: use viewer, member, admin or owner"));
    let form = [
        ("csrf", csrf.as_str()),
        ("email", "not an email"),
        ("role", "viewer"),
    ];
    let refused = post_form(&mut http, "/orgs/set-farm/settings/members", origin, &form).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let text = refused.text().await.unwrap();
    assert!(text.contains("is not an email address"), "{text}");
    assert!(
        text.contains("value=\"not an email\""),
        "the form as it was sent"
    );

    // And out again.
    browser
        .click(&format!("{row} form[action*='/remove#'] button"))
        .await;
    browser
        .wait_for_path(&format!("/orgs/set-farm/settings?removed={colleague_id}"))
        .await;
    assert!(browser
        .text("p.notice[role=status]")
        .await
        .contains("The member was removed"));
    assert!(browser.all(&row).await.is_empty());
    browser
        .assert_clean_console("the settings page after removing", &[])
        .await;

    // Every change, newest first, by the admin.
    browser
        .click("a[href='/orgs/set-farm/settings/audit']")
        .await;
    browser.wait_for_path("/orgs/set-farm/settings/audit").await;
    assert_eq!(
        listed_actions(&browser).await,
        [
            "member.removed",
            "invitation.cancelled",
            "member.added",
            "member.role_changed",
            "member.added"
        ]
    );
    let rows = browser.all("table.audit tbody tr").await;
    let mut texts = Vec::new();
    for row in &rows {
        texts.push(row.text().await.unwrap());
    }
    assert!(texts.iter().all(|t| t.contains(&admin)), "{texts:#?}");
    assert!(texts[2].contains(&stranger) && texts[2].contains("\"status\":\"invited\""));
    assert!(texts[3].contains("\"from\":\"viewer\"") && texts[3].contains("\"to\":\"member\""));
    assert!(texts[4].contains(&colleague));
    // No longer a member: named by the reference the log holds.
    assert!(texts[0].contains(&format!("user:{colleague_id}")));
    browser.assert_clean_console("the audit log", &[]).await;
    browser.screenshot("settings-audit").await;

    // The page lists what the API lists, in pages of the API's cursor.
    let api = http
        .send(Method::GET, "/api/v1/orgs/set-farm/audit", None, false)
        .await;
    assert_eq!(api.status(), 200);
    let api: Value = api.json().await.unwrap();
    let api_ids: Vec<String> = api["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].to_string())
        .collect();
    let mut page_ids = Vec::new();
    for row in &rows {
        page_ids.push(row.attr("data-entry").await.unwrap().unwrap());
    }
    assert_eq!(page_ids, api_ids);

    browser
        .goto(&site.url("/orgs/set-farm/settings/audit?limit=2"))
        .await;
    let mut pages = vec![listed_actions(&browser).await];
    for expected in [
        format!(
            "/orgs/set-farm/settings/audit?before={}&limit=2",
            api_ids[1]
        ),
        format!(
            "/orgs/set-farm/settings/audit?before={}&limit=2",
            api_ids[3]
        ),
    ] {
        browser.click("a[rel=next]").await;
        browser.wait_for_path(&expected).await;
        pages.push(listed_actions(&browser).await);
    }
    assert_eq!(
        pages,
        [
            vec!["member.removed", "invitation.cancelled"],
            vec!["member.added", "member.role_changed"],
            vec!["member.added"],
        ]
    );
    assert!(browser.all("a[rel=next]").await.is_empty(), "the last page");
    browser.click(".pager a").await;
    browser
        .wait_for_path("/orgs/set-farm/settings/audit?limit=2")
        .await;
    assert_eq!(listed_actions(&browser).await.len(), 2);

    // A cursor that is not one: the 400 page.
    let bad = http
        .send(
            Method::GET,
            "/orgs/set-farm/settings/audit?before=yesterday",
            None,
            false,
        )
        .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(bad.text().await.unwrap().contains("before"));
    browser
        .assert_clean_console("the audit log's pages", &[])
        .await;
    browser.close().await;
}

#[tokio::test]
async fn an_admin_edits_thresholds_and_retention_and_the_overview_and_api_follow() {
    let site = Site::start().await;
    let admin = email("liv-admin");
    let admin_id = account(&site.tenant(), &admin).await;
    let org = site
        .org("liv-farm", "Liveness Farm", &[(admin_id, Role::Admin)])
        .await;
    // Silent for 10 minutes: offline with the defaults (stale after 15 s, offline after 60 s).
    site.ingest(
        org,
        &[seconds_ago(
            600,
            event(
                "machine.heartbeat",
                json!({"machine_id": "gpu-quiet", "status": "ready"}),
            ),
        )],
    )
    .await;
    let browser = Browser::laptop().await;
    open_signed_in(&browser, &site, &admin, "/orgs/liv-farm").await;
    assert!(browser.text(".summary").await.contains("1 offline"));
    browser.goto(&site.url("/orgs/liv-farm/settings")).await;
    assert_eq!(value(&browser, "#stale-after").await, "15");
    assert_eq!(value(&browser, "#offline-after").await, "60");
    assert_eq!(value(&browser, "#retention-days").await, "30");
    let payloads = browser.find("#payloads-visible").await;
    assert_eq!(
        payloads.prop("checked").await.unwrap().as_deref(),
        Some("true")
    );

    // Offline before stale: the API's message, the form as it was, nothing saved.
    browser.fill("#stale-after", "300").await;
    browser.fill("#offline-after", "120").await;
    browser
        .click("form.settings-form button[type=submit]")
        .await;
    let problem = browser
        .wait_for_text("#settings-problem", "Not saved:")
        .await;
    assert_eq!(
        problem,
        "Not saved: offline_after_s must be greater than stale_after_s and at most 604800"
    );
    assert_eq!(browser.path().await, "/orgs/liv-farm/settings");
    assert_eq!(value(&browser, "#stale-after").await, "300");
    assert_eq!(value(&browser, "#offline-after").await, "120");
    browser
        .assert_clean_console("the refused settings", &["400"])
        .await;
    browser.screenshot("settings-invalid").await;
    let mut http = http_session(&browser, &site).await;
    let unchanged = api_settings(&mut http, "liv-farm").await;
    assert_eq!(
        (&unchanged["stale_after_s"], &unchanged["offline_after_s"]),
        (&json!(15), &json!(60))
    );

    // Stale after 5 minutes, offline after 20, history for 14 days, payloads hidden.
    browser.fill("#offline-after", "1200").await;
    browser.fill("#retention-days", "14").await;
    browser.click("#payloads-visible").await;
    browser
        .click("form.settings-form button[type=submit]")
        .await;
    browser
        .wait_for_path("/orgs/liv-farm/settings?saved=1")
        .await;
    assert_eq!(
        browser.text("p.notice[role=status]").await,
        "Saved. Machines and workers are stale after 300 s without a heartbeat and offline after \
         1200 s; history is kept 14 days; viewers do not see job payloads and results."
    );
    assert_eq!(value(&browser, "#stale-after").await, "300");
    let payloads = browser.find("#payloads-visible").await;
    assert_eq!(
        payloads.prop("checked").await.unwrap().as_deref(),
        Some("false")
    );
    browser
        .assert_clean_console("the saved settings", &[])
        .await;
    browser.screenshot("settings-saved").await;
    assert_eq!(
        api_settings(&mut http, "liv-farm").await,
        json!({"stale_after_s": 300, "offline_after_s": 1200, "retention_days": 14,
               "payloads_visible_to_viewers": false})
    );
    // The overview reads the new thresholds: 10 minutes of silence is stale now.
    browser.goto(&site.url("/orgs/liv-farm")).await;
    let summary = browser.text(".summary").await;
    assert!(
        summary.contains("1 stale") && summary.contains("0 offline"),
        "{summary}"
    );
    assert!(browser
        .text("li[data-machine='gpu-quiet']")
        .await
        .contains("stale"));

    // Retention alone: the other settings stay as saved.
    browser.goto(&site.url("/orgs/liv-farm/settings")).await;
    browser.fill("#retention-days", "90").await;
    browser
        .click("form.settings-form button[type=submit]")
        .await;
    browser
        .wait_for_text("p.notice[role=status]", "history is kept 90 days")
        .await;
    assert_eq!(
        api_settings(&mut http, "liv-farm").await,
        json!({"stale_after_s": 300, "offline_after_s": 1200, "retention_days": 90,
               "payloads_visible_to_viewers": false})
    );

    // Values the browser's own checks would stop, sent anyway: the server's 400 and message.
    let csrf = http.cookies["fm_csrf"].clone();
    for (retention, message) in [
        ("0", "retention_days must be between 1 and 3650"),
        (
            "a month",
            "retention_days must be a whole number, not &quot;a month&quot;",
        ),
    ] {
        let form = [
            ("csrf", csrf.as_str()),
            ("stale_after_s", "300"),
            ("offline_after_s", "1200"),
            ("retention_days", retention),
        ];
        let refused = post_form(
            &mut http,
            "/orgs/liv-farm/settings",
            Some(&site.base),
            &form,
        )
        .await;
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{retention}");
        let text = refused.text().await.unwrap();
        assert!(text.contains(message), "{message} in {text}");
        assert!(
            text.contains(&format!("value=\"{retention}\"")),
            "as it was sent"
        );
    }
    assert_eq!(
        api_settings(&mut http, "liv-farm").await["retention_days"],
        90
    );

    browser
        .goto(&site.url("/orgs/liv-farm/settings/audit"))
        .await;
    assert_eq!(
        listed_actions(&browser).await,
        ["settings.updated", "settings.updated"]
    );
    let newest = browser.text("table.audit tbody tr").await;
    assert!(
        newest.contains("\"retention_days\":90") && newest.contains(&admin),
        "{newest}"
    );
    browser.assert_clean_console("the audit log", &[]).await;
    browser.close().await;
}

#[tokio::test]
async fn the_last_owner_can_neither_be_demoted_nor_leave() {
    let site = Site::start().await;
    let owner = email("own-last");
    let owner_id = account(&site.tenant(), &owner).await;
    site.org("own-farm", "Owner Farm", &[(owner_id, Role::Owner)])
        .await;
    let browser = Browser::laptop().await;
    open_signed_in(&browser, &site, &owner, "/orgs/own-farm/settings").await;
    let row = format!("tr[data-member='{owner_id}']");
    assert!(browser.text(&row).await.contains("(you)"));

    choose(&browser, &format!("{row} select"), "admin").await;
    browser
        .click(&format!("{row} form[action*='/role#'] button"))
        .await;
    assert_eq!(
        browser.text("#members-problem").await,
        "Not changed: the org must keep at least one owner"
    );
    assert_eq!(value(&browser, &format!("{row} select")).await, "owner");
    browser
        .assert_clean_console("the demotion refused", &["409"])
        .await;
    browser.screenshot("settings-last-owner").await;

    // Leaving would leave the org without an owner too.
    browser
        .click(&format!("{row} form[action*='/remove#'] button"))
        .await;
    browser
        .wait_for_path(&format!(
            "/orgs/own-farm/settings/members/{owner_id}/remove"
        ))
        .await;
    assert_eq!(
        browser.text("#members-problem").await,
        "Not changed: the org must keep at least one owner"
    );
    browser
        .assert_clean_console("the leaving refused", &["409"])
        .await;
    browser.close().await;
    let mut http = crate::signin::Browser::new(&site.base);
    assert_eq!(http.sign_in(&owner, PASSWORD).await.status(), 200);
    let members = http
        .send(Method::GET, "/api/v1/orgs/own-farm/members", None, false)
        .await;
    let members: Value = members.json().await.unwrap();
    assert_eq!(members["members"][0]["role"], "owner");
    assert_eq!(members["members"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn viewers_and_members_get_the_404_page_for_every_settings_url_and_form() {
    let site = Site::start().await;
    let tenant = site.tenant();
    let viewer = email("no-viewer");
    let viewer_id = account(&tenant, &viewer).await;
    let member = email("no-member");
    let member_id = account(&tenant, &member).await;
    let org = site
        .org(
            "no-farm",
            "No Farm",
            &[(viewer_id, Role::Viewer), (member_id, Role::Member)],
        )
        .await;
    let mut tx = tenant.begin(TenantContext::org(org)).await.unwrap();
    let token = tokens::create(tx.conn(), org, tokens::TokenKind::Read, "scripts", None)
        .await
        .unwrap();
    fleetmon_server::orgs::members::add_by_email(
        tx.conn(),
        org,
        "invited@example.com",
        Role::Viewer,
        None,
        false,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let missing = reqwest::Client::new()
        .get(site.url("/no-such-page"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    for (who, user_id) in [(&viewer, viewer_id), (&member, member_id)] {
        let browser = Browser::laptop().await;
        open_signed_in(&browser, &site, who, "/orgs/no-farm").await;
        assert!(browser
            .all("a[href^='/orgs/no-farm/settings'], form[action^='/orgs/no-farm/settings']")
            .await
            .is_empty());
        for path in ["/orgs/no-farm/settings", "/orgs/no-farm/settings/audit"] {
            browser.goto(&site.url(path)).await;
            assert_eq!(browser.text("h1").await, "Page not found", "{path}");
            browser.assert_clean_console(path, &["404"]).await;
        }
        browser.screenshot("settings-404").await;

        // Every form, sent as this browser would: its session, its CSRF token, our Origin.
        let mut http = http_session(&browser, &site).await;
        browser.close().await;
        let csrf = http.cookies["fm_csrf"].clone();
        let nonce = Uuid::new_v4().to_string();
        let c = csrf.as_str();
        let posts: Vec<(String, Vec<(&str, &str)>)> = vec![
            (
                "/orgs/no-farm/settings".into(),
                vec![
                    ("csrf", c),
                    ("stale_after_s", "30"),
                    ("offline_after_s", "90"),
                    ("retention_days", "7"),
                ],
            ),
            (
                "/orgs/no-farm/settings/members".into(),
                vec![
                    ("csrf", c),
                    ("email", "friend@example.com"),
                    ("role", "viewer"),
                ],
            ),
            (
                format!("/orgs/no-farm/settings/members/{user_id}/role"),
                vec![("csrf", c), ("role", "owner")],
            ),
            (
                format!("/orgs/no-farm/settings/members/{viewer_id}/remove"),
                vec![("csrf", c)],
            ),
            // Leaving is the API's right of every member, but not a settings form of theirs.
            (
                format!("/orgs/no-farm/settings/members/{user_id}/remove"),
                vec![("csrf", c)],
            ),
            (
                "/orgs/no-farm/settings/invitations/cancel".into(),
                vec![("csrf", c), ("email", "invited@example.com")],
            ),
            (
                "/orgs/no-farm/settings/tokens".into(),
                vec![
                    ("csrf", c),
                    ("nonce", nonce.as_str()),
                    ("name", "mine"),
                    ("kind", "read"),
                ],
            ),
            (
                format!("/orgs/no-farm/settings/tokens/{}/revoke", token.id),
                vec![("csrf", c)],
            ),
        ];
        for (path, form) in &posts {
            let response = post_form(&mut http, path, Some(&site.base), form).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{who}: {path}");
            assert_eq!(response.text().await.unwrap(), missing, "{who}: {path}");
        }
    }

    // Nothing changed.
    let mut tx = tenant.begin(TenantContext::org(org)).await.unwrap();
    let listed = tokens::list(tx.conn()).await.unwrap();
    let members = fleetmon_server::orgs::members::list(tx.conn(), org)
        .await
        .unwrap();
    let invited = fleetmon_server::orgs::members::invitations(tx.conn(), org)
        .await
        .unwrap();
    let settings = fleetmon_server::orgs::settings::get(tx.conn(), org)
        .await
        .unwrap();
    let audit: Vec<(String,)> = query_as("SELECT action FROM audit_log WHERE org_id = $1")
        .bind(org)
        .fetch_all(tx.conn())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].revoked_at.is_none());
    let roles: Vec<(Uuid, &str)> = members
        .iter()
        .map(|m| (m.user_id, m.role.as_str()))
        .collect();
    assert_eq!(roles.len(), 2);
    assert!(roles.contains(&(viewer_id, "viewer")) && roles.contains(&(member_id, "member")));
    assert_eq!(invited.len(), 1);
    assert_eq!(settings, Default::default());
    assert!(audit.is_empty(), "{audit:?}");
}

#[tokio::test]
async fn reloading_after_creating_a_token_creates_no_second_one() {
    let site = Site::start().await;
    let admin = email("rel-admin");
    let admin_id = account(&site.tenant(), &admin).await;
    let org = site
        .org("rel-farm", "Reload Farm", &[(admin_id, Role::Admin)])
        .await;
    let browser = Browser::laptop().await;
    open_signed_in(&browser, &site, &admin, "/orgs/rel-farm/settings").await;
    browser.fill("#token-name", "agents").await;
    browser
        .click("form[action='/orgs/rel-farm/settings/tokens#tokens'] button[type=submit]")
        .await;
    let secret = browser.text("#token-secret").await;
    assert!(secret.starts_with("fmi_"), "{secret}");

    // The reload sends the form again.
    browser.client.refresh().await.unwrap();
    let said = browser.text("#token-exists").await;
    assert!(
        said.contains(
            "This form was sent again, so nothing was created: token agents was created by it"
        ),
        "{said}"
    );
    assert!(browser.all("#token-secret").await.is_empty());
    let source = browser.client.source().await.unwrap();
    assert!(!source.contains(&secret), "the secret is shown once only");
    browser
        .assert_clean_console("the reloaded token creation", &["409"])
        .await;
    browser.screenshot("settings-token-reloaded").await;

    // The form of the page it shows creates the next token.
    browser.fill("#token-name", "scripts").await;
    choose(&browser, "#token-kind", "read").await;
    browser
        .click("form[action='/orgs/rel-farm/settings/tokens#tokens'] button[type=submit]")
        .await;
    assert!(browser.text("#token-secret").await.starts_with("fmr_"));
    browser.assert_clean_console("the second token", &[]).await;
    browser.close().await;

    let tenant = site.tenant();
    let mut tx = tenant.begin(TenantContext::org(org)).await.unwrap();
    let names: Vec<String> = tokens::list(tx.conn())
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    let audit: Vec<(String,)> =
        query_as("SELECT action FROM audit_log WHERE org_id = $1 AND action = 'token.created'")
            .bind(org)
            .fetch_all(tx.conn())
            .await
            .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(names, ["agents", "scripts"]);
    assert_eq!(audit.len(), 2);
}
