//! Signing in from the dashboard's page in a real Chromium through the other ways in: the real
//! OpenID Connect provider (npm `oidc-provider`, code + PKCE; the browser fills in the
//! provider's own login and consent pages), and Stack Auth (email and password, and OAuth through
//! Stack) against the local stand-in of Stack's API. Each lands on the page the visitor asked
//! for; a sign-in cancelled at the provider, or a callback this browser did not start, says so
//! on the sign-in page.

use fleetmon_server::auth::settings::{AuthSettings, StackConfig};
use fleetmon_server::db::sql::query;
use uuid::Uuid;

use crate::browser::Browser;
use crate::dashboard::{Reserved, Site};
use crate::oidc_provider::{OidcProvider, OidcProviderConfig, TestUser};
use crate::stack_standin::StackStandin;

/// Links `org` to the team its members' provider names (the OIDC org claim, Stack's
/// `selected_team_id`), so that they join it when they sign in.
async fn link_team(site: &Site, org: Uuid, team: &str) {
    query("UPDATE organizations SET external_team_id = $1 WHERE id = $2")
        .bind(team)
        .bind(org)
        .execute(&site.db.pool)
        .await
        .unwrap();
}

/// A site offering built-in accounts and the real provider as "Corp SSO", whose user alice
/// belongs (by the provider's org claim) to the org `acme`.
async fn corp_site() -> (Site, OidcProvider, TestUser) {
    let reserved = Reserved::new().await;
    let alice = TestUser {
        org_id: Some("acme-team".into()),
        ..TestUser::new("alice")
    };
    let config = OidcProviderConfig {
        redirect_uris: vec![format!("{}/auth/oidc/corp/callback", reserved.base)],
        users: vec![alice.clone()],
        ..OidcProviderConfig::default()
    };
    let provider = OidcProvider::start(config.clone()).await;
    let settings = AuthSettings {
        oidc: vec![crate::oidc_signin::corp(&provider, &config)],
        ..AuthSettings::local_only(&reserved.base)
    };
    let site = Site::open(reserved, settings, true).await;
    let org = site.org("acme", "Acme Render", &[]).await;
    // An OIDC provider's teams are kept apart from other providers' by its name.
    link_team(&site, org, "corp:acme-team").await;
    (site, provider, alice)
}

/// On the sign-in page: clicks "Sign in with Corp SSO", fills in the provider's login page and
/// confirms its consent page.
async fn through_the_provider(browser: &Browser, provider: &OidcProvider, user: &TestUser) {
    browser
        .click("a.button[href^='/auth/oidc/corp/start']")
        .await;
    at_the_provider(browser, provider).await;
    browser.fill("#login", &user.email).await;
    browser.fill("#password", &user.password).await;
    browser.click("#submit").await;
    browser.wait_for_text("h1", "Authorize").await;
    browser.click("#submit").await;
}

async fn at_the_provider(browser: &Browser, provider: &OidcProvider) {
    browser.find("#login").await;
    let url = browser.client.current_url().await.unwrap();
    assert!(
        url.as_str().starts_with(provider.issuer()),
        "the login page is the provider's own: {url}"
    );
}

#[tokio::test]
async fn signing_in_through_the_oidc_provider_lands_on_the_page_asked_for() {
    let (site, provider, alice) = corp_site().await;
    let browser = Browser::laptop().await;
    let wanted = "/orgs/acme/jobs?status=failed";
    browser.goto(&site.url(wanted)).await;
    browser
        .wait_for_path("/sign-in?return_to=%2Forgs%2Facme%2Fjobs%3Fstatus%3Dfailed")
        .await;
    let button = browser
        .find("a.button[href^='/auth/oidc/corp/start']")
        .await;
    assert_eq!(button.text().await.unwrap(), "Sign in with Corp SSO");
    assert_eq!(
        button.attr("href").await.unwrap().as_deref(),
        Some("/auth/oidc/corp/start?return_to=%2Forgs%2Facme%2Fjobs%3Fstatus%3Dfailed")
    );
    assert!(
        !browser.all("#local-email").await.is_empty(),
        "built-in accounts are offered beside the provider"
    );
    browser
        .assert_clean_console("the sign-in page with a provider", &[])
        .await;
    browser.screenshot("sign-in-providers").await;

    // The provider's pages in the same browser: its login form, then its consent.
    through_the_provider(&browser, &provider, &alice).await;
    browser.wait_for_path(wanted).await;
    assert_eq!(browser.text("main h1").await, "Jobs");
    assert_eq!(
        browser
            .find("#f-status")
            .await
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some("failed"),
        "the page is the one asked for, with its filter"
    );
    assert!(browser.text(".who").await.contains("alice@fleetmon.test"));
    // The org claim made alice a member of the org linked to her team.
    assert_eq!(browser.text(".switcher summary").await, "Acme Render");
    browser
        .assert_clean_console("signing in through the provider", &[])
        .await;
    browser.screenshot("signed-in-through-oidc").await;

    // The session is fleetmon's own: a reload is still signed in, sign-out ends it.
    browser.goto(&site.url("/orgs/acme")).await;
    assert_eq!(browser.text("main h1").await, "Acme Render");
    browser.click(".who button[type=submit]").await;
    browser.wait_for_path("/sign-in?signed_out=1").await;
    browser.close().await;
}

#[tokio::test]
async fn a_cancelled_or_foreign_oidc_sign_in_says_so_and_can_be_started_again() {
    let (site, provider, alice) = corp_site().await;
    let browser = Browser::laptop().await;

    // A callback this browser did not start (no state cookie, a state of someone else's).
    browser
        .goto(&site.url("/auth/oidc/corp/callback?code=forged&state=forged"))
        .await;
    browser
        .wait_for_path("/sign-in?failed=other_browser&return_to=%2F")
        .await;
    assert_eq!(
        browser.text("#sign-in-message").await,
        "That sign-in was started in another browser or tab. Start it again here."
    );
    browser
        .assert_clean_console("a foreign callback", &[])
        .await;
    browser.screenshot("sign-in-foreign-callback").await;

    // Cancelled at the provider's login page: back on the sign-in page, not signed in, and
    // still on the way to the page asked for.
    browser.goto(&site.url("/orgs/acme/machines")).await;
    browser
        .wait_for_path("/sign-in?return_to=%2Forgs%2Facme%2Fmachines")
        .await;
    browser
        .click("a.button[href^='/auth/oidc/corp/start']")
        .await;
    at_the_provider(&browser, &provider).await;
    browser.click("#cancel").await;
    browser
        .wait_for_path("/sign-in?failed=cancelled&return_to=%2Forgs%2Facme%2Fmachines")
        .await;
    assert_eq!(
        browser.text("#sign-in-message").await,
        "The sign-in was cancelled at the identity provider. You are not signed in."
    );
    let cookies = browser.client.get_all_cookies().await.unwrap();
    assert!(
        !cookies.iter().any(|c| c.name() == "fm_access"),
        "no session: {cookies:?}"
    );
    browser
        .assert_clean_console("a sign-in cancelled at the provider", &[])
        .await;
    browser.screenshot("sign-in-cancelled").await;

    // Starting again from the same page goes through and lands where the visitor was going.
    through_the_provider(&browser, &provider, &alice).await;
    browser.wait_for_path("/orgs/acme/machines").await;
    assert_eq!(browser.text("main h1").await, "Machines");
    browser
        .assert_clean_console("signing in after a cancel", &[])
        .await;
    browser.close().await;
}

const STACK_PASSWORD: &str = "stack user password";

#[tokio::test]
async fn stack_users_sign_in_with_a_password_or_through_stacks_oauth() {
    let stack = StackStandin::start().await;
    let dana = stack.add_user("dana@example.com", STACK_PASSWORD);
    let team = stack.add_team(&[&dana]);
    stack.select_team(&dana, Some(&team));
    stack.set_oauth_user("github", &dana);
    let reserved = Reserved::new().await;
    let settings = AuthSettings {
        public_url: reserved.base.clone(),
        local: false,
        stack: Some(StackConfig {
            settings: fleetmon_server::auth::stack::StackSettings {
                oauth_providers: vec!["github".into(), "google".into()],
                ..stack.settings()
            },
            webhook_secrets: Vec::new(),
        }),
        oidc: Vec::new(),
    };
    let site = Site::open(reserved, settings, true).await;
    let org = site.org("stack-farm", "Stack Farm", &[]).await;
    link_team(&site, org, &team).await;

    let browser = Browser::laptop().await;
    browser.goto(&site.url("/orgs/stack-farm")).await;
    browser
        .wait_for_path("/sign-in?return_to=%2Forgs%2Fstack-farm")
        .await;
    assert_eq!(browser.text("main h2").await, "Stack Auth account");
    assert!(
        browser.all("#local-email").await.is_empty(),
        "no built-in accounts here"
    );
    let mut buttons = Vec::new();
    for link in browser.all(".providers a.button").await {
        let href = link.attr("href").await.unwrap().unwrap();
        buttons.push((link.text().await.unwrap(), href));
    }
    assert_eq!(
        buttons,
        [
            (
                "Sign in with GitHub".to_string(),
                "/auth/stack/oauth/github/start?return_to=%2Forgs%2Fstack-farm".to_string()
            ),
            (
                "Sign in with Google".to_string(),
                "/auth/stack/oauth/google/start?return_to=%2Forgs%2Fstack-farm".to_string()
            ),
        ]
    );
    browser
        .assert_clean_console("the Stack sign-in page", &[])
        .await;
    browser.screenshot("sign-in-stack").await;

    // Email and password, through Stack's password sign-in.
    let submit = "form[data-sign-in='/auth/stack/sign-in'] button[type=submit]";
    browser.fill("#stack-email", "dana@example.com").await;
    browser.fill("#stack-password", "not the password").await;
    browser.click(submit).await;
    browser
        .wait_for_text("#sign-in-message", "Wrong email or password.")
        .await;
    browser
        .assert_clean_console("a wrong Stack password", &["401"])
        .await;
    browser.fill("#stack-password", STACK_PASSWORD).await;
    browser.click(submit).await;
    browser.wait_for_path("/orgs/stack-farm").await;
    assert_eq!(browser.text("main h1").await, "Stack Farm");
    assert!(browser.text(".who").await.contains("dana@example.com"));
    browser.click(".who button[type=submit]").await;
    browser.wait_for_path("/sign-in?signed_out=1").await;
    assert_eq!(
        stack.requests("/api/v1/auth/sessions/current"),
        1,
        "signing out ended the session at Stack"
    );

    // OAuth through Stack: fleetmon → Stack's authorize (the stand-in skips GitHub's own
    // pages) → fleetmon's callback → the page asked for.
    browser.goto(&site.url("/orgs/stack-farm/machines")).await;
    browser
        .wait_for_path("/sign-in?return_to=%2Forgs%2Fstack-farm%2Fmachines")
        .await;
    browser
        .click("a.button[href^='/auth/stack/oauth/github/start']")
        .await;
    browser.wait_for_path("/orgs/stack-farm/machines").await;
    assert_eq!(browser.text("main h1").await, "Machines");
    assert!(browser.text(".who").await.contains("dana@example.com"));
    assert_eq!(stack.requests("/api/v1/auth/oauth/token"), 1);
    browser
        .assert_clean_console("signing in through Stack's OAuth", &[])
        .await;
    browser.close().await;
}
