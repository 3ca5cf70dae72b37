//! Checks of the OpenID Connect test provider and its harness themselves (no database): what a
//! relying party will rely on — discovery, the code + PKCE flow, tokens that verify against the
//! published JWKS, and key rotation without a restart.

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use reqwest::{StatusCode, Url};
use serde_json::{Map, Value};

use crate::oidc_provider::{
    FlowError, OidcProvider, OidcProviderConfig, TestUser, ORG_CLAIM_POINTER,
};

type Claims = Map<String, Value>;

fn config_with_org_user() -> (OidcProviderConfig, TestUser) {
    let user = TestUser {
        org_id: Some("acme".into()),
        ..TestUser::new("alice")
    };
    let config = OidcProviderConfig {
        users: vec![user.clone(), TestUser::new("bob")],
        ..OidcProviderConfig::default()
    };
    (config, user)
}

async fn jwks(provider: &OidcProvider) -> JwkSet {
    reqwest::get(provider.jwks_uri())
        .await
        .expect("GET the JWKS")
        .json()
        .await
        .expect("a JWKS document")
}

fn kids(jwks: &JwkSet) -> Vec<String> {
    jwks.keys
        .iter()
        .map(|key| {
            key.common
                .key_id
                .clone()
                .expect("every published key has a kid")
        })
        .collect()
}

/// Verifies `token`'s signature against the JWKS key its `kid` names, and its `iss`, `aud` and
/// `exp`; returns the `kid` and the claims.
fn verify(
    token: &str,
    jwks: &JwkSet,
    algorithm: Algorithm,
    issuer: &str,
    audience: &str,
) -> (String, Claims) {
    let header = decode_header(token).expect("a JWT header");
    assert_eq!(header.alg, algorithm);
    let kid = header.kid.expect("the token names its key");
    let jwk = jwks
        .find(&kid)
        .unwrap_or_else(|| panic!("kid {kid} is not in the JWKS"));
    let key = DecodingKey::from_jwk(jwk).expect("a usable JWK");
    let mut validation = Validation::new(algorithm);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let claims = decode::<Claims>(token, &key, &validation)
        .unwrap_or_else(|e| panic!("the token does not verify: {e}"))
        .claims;
    (kid, claims)
}

fn query_param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

#[tokio::test]
async fn discovery_describes_a_code_flow_provider_with_pkce() {
    let provider = OidcProvider::start(OidcProviderConfig::default()).await;
    let issuer = provider.issuer();
    assert!(issuer.starts_with("http://127.0.0.1:"), "{issuer}");
    assert!(!issuer.ends_with('/'), "{issuer}");
    let discovery: Value = reqwest::get(format!("{issuer}/.well-known/openid-configuration"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["issuer"], issuer);
    assert_eq!(discovery["jwks_uri"], provider.jwks_uri());
    assert_eq!(
        discovery["authorization_endpoint"],
        format!("{issuer}/auth")
    );
    assert_eq!(discovery["token_endpoint"], format!("{issuer}/token"));
    assert_eq!(
        discovery["response_types_supported"],
        serde_json::json!(["code"])
    );
    assert_eq!(
        discovery["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(
        discovery["id_token_signing_alg_values_supported"],
        serde_json::json!(["ES256"])
    );
    let grants = discovery["grant_types_supported"].as_array().unwrap();
    assert!(grants.contains(&"authorization_code".into()), "{grants:?}");
    assert!(grants.contains(&"refresh_token".into()), "{grants:?}");
    let claims = discovery["claims_supported"].as_array().unwrap();
    for claim in [
        "sub",
        "email",
        "email_verified",
        "name",
        "https://fleetmon.test/org",
    ] {
        assert!(claims.contains(&claim.into()), "{claim} in {claims:?}");
    }
    let keys = jwks(&provider).await;
    assert_eq!(keys.keys.len(), 1);
    assert!(matches!(
        keys.keys[0].algorithm,
        AlgorithmParameters::EllipticCurve(_)
    ));
}

#[tokio::test]
async fn code_flow_with_pkce_gives_tokens_signed_with_the_published_key() {
    let (config, user) = config_with_org_user();
    let provider = OidcProvider::start(config.clone()).await;
    let redirect_uri = &config.redirect_uris[0];
    let request = provider.authorization_request(redirect_uri);
    let callback = provider.sign_in_through_browser(&request.url, &user).await;

    // The browser stops at the relying party's callback, carrying the code and the state.
    assert!(
        callback.as_str().starts_with(&format!("{redirect_uri}?")),
        "{callback}"
    );
    assert_eq!(query_param(&callback, "state"), Some(request.state.clone()));
    assert_eq!(
        query_param(&callback, "iss").as_deref(),
        Some(provider.issuer())
    );
    assert!(query_param(&callback, "code").is_some(), "{callback}");

    let tokens = provider.exchange_code(&request, &callback).await.unwrap();
    assert_eq!(tokens.token_type, "Bearer");
    assert!(tokens.refresh_token.is_some());
    let keys = jwks(&provider).await;
    let published = kids(&keys);

    let id_token = tokens.id_token.as_deref().expect("an id token");
    let (kid, id) = verify(
        id_token,
        &keys,
        Algorithm::ES256,
        provider.issuer(),
        &config.client_id,
    );
    assert_eq!(published, [kid]);
    assert_eq!(id["sub"], user.sub.as_str());
    assert_eq!(id["nonce"], request.nonce.as_str());
    assert_eq!(id["email"], user.email.as_str());
    assert_eq!(id["email_verified"], true);
    assert_eq!(id["name"], user.name.as_str());
    let id = Value::Object(id);
    assert_eq!(id.pointer(ORG_CLAIM_POINTER), Some(&"acme".into()));

    let (_, access) = verify(
        &tokens.access_token,
        &keys,
        Algorithm::ES256,
        provider.issuer(),
        &config.audience,
    );
    assert_eq!(access["aud"], config.audience.as_str());
    assert_eq!(access["sub"], user.sub.as_str());
    assert_eq!(access["client_id"], config.client_id.as_str());
    assert_eq!(access["email"], user.email.as_str());
    let access = Value::Object(access);
    assert_eq!(access.pointer(ORG_CLAIM_POINTER), Some(&"acme".into()));

    // A code is good for one exchange only.
    let again = provider.exchange_code(&request, &callback).await;
    assert!(
        matches!(&again, Err(FlowError::Refused { status, body, .. })
            if *status == StatusCode::BAD_REQUEST && body.contains("invalid_grant")),
        "{:?}",
        again.err()
    );
}

#[tokio::test]
async fn rs256_provider_signs_with_an_rsa_key() {
    let user = TestUser::new("carol");
    let config = OidcProviderConfig {
        algorithm: Algorithm::RS256,
        users: vec![user.clone()],
        ..OidcProviderConfig::default()
    };
    let provider = OidcProvider::start(config.clone()).await;
    let tokens = provider.obtain_tokens(&user).await;
    let keys = jwks(&provider).await;
    assert!(matches!(
        keys.keys[0].algorithm,
        AlgorithmParameters::RSA(_)
    ));
    let id_token = tokens.id_token.as_deref().expect("an id token");
    let (_, id) = verify(
        id_token,
        &keys,
        Algorithm::RS256,
        provider.issuer(),
        &config.client_id,
    );
    assert_eq!(id["sub"], user.sub.as_str());
    // A user without an organization gets no org claim.
    assert_eq!(Value::Object(id).pointer(ORG_CLAIM_POINTER), None);
    let (_, access) = verify(
        &tokens.access_token,
        &keys,
        Algorithm::RS256,
        provider.issuer(),
        &config.audience,
    );
    assert_eq!(access["sub"], user.sub.as_str());
}

#[tokio::test]
async fn authorization_without_pkce_is_refused() {
    let (config, user) = config_with_org_user();
    let provider = OidcProvider::start(config.clone()).await;
    let request = provider.authorization_request(&config.redirect_uris[0]);
    let mut url = request.url.clone();
    let without_pkce: Vec<(String, String)> = request
        .url
        .query_pairs()
        .filter(|(key, _)| !key.starts_with("code_challenge"))
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect();
    url.query_pairs_mut().clear().extend_pairs(without_pkce);

    let callback = provider
        .try_sign_in_through_browser(&url, &user)
        .await
        .unwrap();
    assert_eq!(
        query_param(&callback, "error").as_deref(),
        Some("invalid_request"),
        "{callback}"
    );
    assert_eq!(query_param(&callback, "code"), None);
}

#[tokio::test]
async fn the_code_exchange_checks_state_and_pkce_verifier() {
    let (config, user) = config_with_org_user();
    let provider = OidcProvider::start(config.clone()).await;
    let mut request = provider.authorization_request(&config.redirect_uris[0]);
    let callback = provider.sign_in_through_browser(&request.url, &user).await;

    let mut forged = callback.clone();
    let code = query_param(&callback, "code").unwrap();
    forged
        .query_pairs_mut()
        .clear()
        .append_pair("code", &code)
        .append_pair("state", "forged");
    assert!(matches!(
        provider.exchange_code(&request, &forged).await,
        Err(FlowError::StateMismatch)
    ));

    request.code_verifier = provider
        .authorization_request(&config.redirect_uris[0])
        .code_verifier;
    let refused = provider.exchange_code(&request, &callback).await;
    assert!(
        matches!(&refused, Err(FlowError::Refused { status, body, .. })
            if *status == StatusCode::BAD_REQUEST && body.contains("invalid_grant")),
        "{:?}",
        refused.err()
    );
}

#[tokio::test]
async fn a_wrong_password_is_refused_at_the_login_form() {
    let (config, user) = config_with_org_user();
    let provider = OidcProvider::start(config.clone()).await;
    let request = provider.authorization_request(&config.redirect_uris[0]);
    let impostor = TestUser {
        password: "not-the-password".into(),
        ..user
    };
    let refused = provider
        .try_sign_in_through_browser(&request.url, &impostor)
        .await;
    assert!(
        matches!(&refused, Err(FlowError::Refused { status, body, .. })
            if *status == StatusCode::UNAUTHORIZED && body.contains("Invalid login or password")),
        "{:?}",
        refused.err()
    );
}

#[tokio::test]
async fn rotated_keys_sign_new_tokens_and_retired_keys_leave_the_jwks() {
    let (config, user) = config_with_org_user();
    let provider = OidcProvider::start(config.clone()).await;
    let (issuer, audience) = (provider.issuer(), config.audience.as_str());
    let before = provider.obtain_tokens(&user).await;
    let (old_kid, _) = verify(
        &before.access_token,
        &jwks(&provider).await,
        Algorithm::ES256,
        issuer,
        audience,
    );

    let new_kid = provider.rotate_keys().await;
    assert_ne!(new_kid, old_kid);
    let keys = jwks(&provider).await;
    assert_eq!(kids(&keys), [new_kid.clone(), old_kid.clone()]);
    // Tokens signed before the rotation still verify while the old key is published.
    verify(
        &before.access_token,
        &keys,
        Algorithm::ES256,
        issuer,
        audience,
    );
    let bob = provider.obtain_access_token(&TestUser::new("bob")).await;
    let (kid, claims) = verify(&bob, &keys, Algorithm::ES256, issuer, audience);
    assert_eq!(kid, new_kid);
    assert_eq!(claims["sub"], "sub-bob");
    // The refresh token from before the rotation survives it, and gets a token with the new key.
    let refresh_token = before.refresh_token.as_deref().expect("a refresh token");
    let refreshed = provider.refresh(refresh_token).await.unwrap();
    let (kid, claims) = verify(
        &refreshed.access_token,
        &keys,
        Algorithm::ES256,
        issuer,
        audience,
    );
    assert_eq!(kid, new_kid);
    assert_eq!(claims["sub"], user.sub.as_str());

    provider.retire_old_keys().await;
    let keys = jwks(&provider).await;
    assert_eq!(kids(&keys), std::slice::from_ref(&new_kid));
    assert!(keys.find(&old_kid).is_none());
    let after = provider.obtain_access_token(&user).await;
    let (kid, _) = verify(&after, &keys, Algorithm::ES256, issuer, audience);
    assert_eq!(kid, new_kid);
}
