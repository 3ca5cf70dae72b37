//! The identity provider goes down: users signed in through it keep working on the keys fleetmon
//! cached, a failed key fetch keeps those keys, and once the provider is back a token signed with
//! its new key works without a restart of fleetmon.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::oidc_provider::{OidcProvider, TestUser};
use crate::oidc_signin::{setup, start, Setup};
use crate::signin::{bearer_get, error_code, Browser};

/// A safety net; recovery waits out `jwks::CacheSettings::min_refresh_interval` (30 s) at most.
const PATIENCE: Duration = Duration::from_secs(90);

fn kid(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

/// `token` with its header naming key `kid` instead (its signature no longer matches).
fn naming_key(token: &str, kid: &str) -> String {
    let (header, rest) = token.split_once('.').unwrap();
    let mut header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    header["kid"] = kid.into();
    let header = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap());
    format!("{header}.{rest}")
}

async fn email_of(response: reqwest::Response) -> String {
    assert_eq!(response.status(), StatusCode::OK);
    let me: Value = response.json().await.unwrap();
    me["user"]["email"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn signed_in_users_keep_working_while_the_provider_is_down_and_new_keys_work_after() {
    let Setup {
        base,
        provider,
        alice,
        _db,
    } = setup().await;
    let me = |token: String| bearer_get(format!("{base}/api/v1/me"), token);

    // A browser session and a bearer access token, both used once while the provider is up.
    let mut browser = Browser::new(&base);
    let authorize = start(&mut browser).await;
    let callback = provider.sign_in_through_browser(&authorize, &alice).await;
    let landed = browser
        .send(Method::GET, callback.as_str(), None, false)
        .await;
    assert_eq!(landed.status(), StatusCode::SEE_OTHER);
    let bob = TestUser::new("bob");
    let bearer = provider.obtain_access_token(&bob).await;
    assert_eq!(email_of(me(bearer.clone()).await).await, bob.email);

    let config = provider.stop().await;
    let session = browser.send(Method::GET, "/api/v1/me", None, false).await;
    assert_eq!(email_of(session).await, alice.email);
    assert_eq!(email_of(me(bearer.clone()).await).await, bob.email);
    // An unknown key makes fleetmon ask the provider, which is away: refused, not an error,
    // and the keys it had are kept.
    let (status, _) = error_code(me(naming_key(&bearer, "not-a-key-of-the-provider")).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(email_of(me(bearer.clone()).await).await, bob.email);

    // Back on the same address, signing with a key fleetmon has never seen.
    let provider = OidcProvider::start(config).await;
    let fresh = provider.obtain_access_token(&bob).await;
    assert_ne!(kid(&fresh), kid(&bearer));
    let deadline = Instant::now() + PATIENCE;
    loop {
        let response = me(fresh.clone()).await;
        if response.status() == StatusCode::OK {
            assert_eq!(email_of(response).await, bob.email);
            break;
        }
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(Instant::now() < deadline, "the new key never verified");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The new key set replaced the old one whole: the provider no longer vouches for the old key.
    let (status, _) = error_code(me(bearer).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
