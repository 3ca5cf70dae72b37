//! OpenID Connect through fleetmon against a real provider (npm `oidc-provider` on loopback):
//! browser sign-in by authorization code + PKCE, bearer access tokens, the org claim, and the
//! provider's key rotation picked up without a restart.

use fleetmon_server::auth::settings::{AuthSettings, OidcConfig};
use jsonwebtoken::Algorithm;
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

use crate::harness::{self, TestDb};
use crate::oidc_provider::{OidcProvider, OidcProviderConfig, TestUser, ORG_CLAIM_POINTER};
use crate::signin::{bearer_get, error_code, Browser};

pub(crate) struct Setup {
    pub(crate) base: String,
    pub(crate) provider: OidcProvider,
    pub(crate) alice: TestUser,
    pub(crate) _db: TestDb,
}

/// fleetmon in this process, signing in through a real provider named `corp`.
pub(crate) async fn setup() -> Setup {
    let db = TestDb::new().await;
    // fleetmon's address must be known before the provider starts: it is the redirect URI.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut alice = TestUser::new("alice");
    alice.org_id = Some("acme-team".into());
    let config = OidcProviderConfig {
        redirect_uris: vec![format!("{base}/auth/oidc/corp/callback")],
        users: vec![alice.clone(), TestUser::new("bob")],
        ..OidcProviderConfig::default()
    };
    let provider = OidcProvider::start(config.clone()).await;
    let settings = AuthSettings {
        public_url: base.clone(),
        local: false,
        stack: None,
        oidc: vec![corp(&provider, &config)],
    };
    harness::serve_app(listener, db.tenant(), Default::default(), settings);
    Setup {
        base,
        provider,
        alice,
        _db: db,
    }
}

/// fleetmon's settings for `provider` as "corp" ("Corp SSO"): browser sign-in with its client,
/// its access tokens for the API, and its org claim.
pub(crate) fn corp(provider: &OidcProvider, config: &OidcProviderConfig) -> OidcConfig {
    OidcConfig {
        name: "corp".into(),
        display_name: "Corp SSO".into(),
        issuer: provider.issuer().to_string(),
        audiences: vec![config.audience.clone()],
        accept_azp: false,
        client_id: Some(config.client_id.clone()),
        client_secret: Some(config.client_secret.clone()),
        jwks_url: None,
        algorithms: vec![Algorithm::ES256, Algorithm::RS256],
        leeway: std::time::Duration::from_secs(30),
        org_claim: Some(ORG_CLAIM_POINTER.into()),
        scopes: Vec::new(),
    }
}

/// Starts a browser sign-in at fleetmon; returns the provider URL it redirects to.
pub(crate) async fn start(browser: &mut Browser) -> Url {
    let started = browser
        .send(
            Method::GET,
            "/auth/oidc/corp/start?return_to=/fleet",
            None,
            false,
        )
        .await;
    assert_eq!(started.status(), StatusCode::SEE_OTHER);
    assert!(browser.cookies.contains_key("fm_oidc_state"));
    Url::parse(started.headers()["location"].to_str().unwrap()).unwrap()
}

#[tokio::test]
async fn a_user_signs_in_through_the_browser_with_code_and_pkce() {
    let setup = setup().await;
    let mut browser = Browser::new(&setup.base);
    let authorize = start(&mut browser).await;
    let query: Value = serde_json::to_value(
        authorize
            .query_pairs()
            .into_owned()
            .collect::<std::collections::HashMap<_, _>>(),
    )
    .unwrap();
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["response_type"], "code");

    let callback = setup
        .provider
        .sign_in_through_browser(&authorize, &setup.alice)
        .await;
    assert!(callback.as_str().starts_with(&setup.base), "{callback}");
    let landed = browser
        .send(Method::GET, callback.as_str(), None, false)
        .await;
    assert_eq!(landed.status(), StatusCode::SEE_OTHER);
    assert_eq!(landed.headers()["location"], "/fleet");
    assert!(browser.cookies.contains_key("fm_access"));

    let me: Value = browser
        .send(Method::GET, "/api/v1/me", None, false)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["user"]["email"], "alice@fleetmon.test", "{me}");
    assert_eq!(me["user"]["issuer"], setup.provider.issuer());
    assert_eq!(
        me["orgs"][0]["role"], "owner",
        "the org claim made alice a member of her team's org"
    );

    // The same callback cannot be used twice, even by the browser it belongs to.
    let state = callback
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .to_string();
    let mut replay = Browser::new(&setup.base);
    replay.cookies.insert("fm_oidc_state".into(), state);
    let again = replay
        .send(Method::GET, callback.as_str(), None, false)
        .await;
    assert_eq!(
        error_code(again).await,
        (StatusCode::BAD_REQUEST, "sign_in_expired".into())
    );
}

#[tokio::test]
async fn a_callback_in_another_browser_is_refused() {
    let setup = setup().await;
    let mut victim = Browser::new(&setup.base);
    let authorize = start(&mut victim).await;
    let callback = setup
        .provider
        .sign_in_through_browser(&authorize, &setup.alice)
        .await;
    // An attacker's browser, without the state cookie, cannot complete someone's sign-in.
    let mut attacker = Browser::new(&setup.base);
    let refused = attacker
        .send(Method::GET, callback.as_str(), None, false)
        .await;
    assert_eq!(
        error_code(refused).await,
        (StatusCode::FORBIDDEN, "csrf_failed".into())
    );
}

#[tokio::test]
async fn provider_access_tokens_work_as_bearers_across_key_rotation() {
    let setup = setup().await;
    let me = |token: String| bearer_get(format!("{}/api/v1/me", setup.base), token);
    let bob = TestUser::new("bob");
    let token = setup.provider.obtain_access_token(&bob).await;
    let response = me(token).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["user"]["email"], "bob@fleetmon.test");
    assert_eq!(
        body["orgs"].as_array().unwrap().len(),
        0,
        "bob has no org claim"
    );

    let new_kid = setup.provider.rotate_keys().await;
    let rotated = setup.provider.obtain_access_token(&bob).await;
    assert_eq!(
        jsonwebtoken::decode_header(&rotated)
            .unwrap()
            .kid
            .as_deref(),
        Some(new_kid.as_str())
    );
    assert_eq!(
        me(rotated).await.status(),
        200,
        "the new key is fetched without a restart"
    );

    // The id token is meant for fleetmon's client, not for its API: refused as a bearer.
    let tokens = setup.provider.obtain_tokens(&bob).await;
    let id_token = tokens.id_token.expect("an id token");
    assert_eq!(
        error_code(me(id_token).await).await,
        (StatusCode::UNAUTHORIZED, "bad_audience".into())
    );
}
