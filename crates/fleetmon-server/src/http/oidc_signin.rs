//! Browser sign-in through an OpenID Connect provider: authorization code with PKCE (S256),
//! `state` bound to the browser, and an id token verified like any of the issuer's tokens plus
//! its `nonce`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::Value;

use super::auth::{unauthorized, ClientAddr};
use super::params::Params;
use super::signin::{
    begin_redirect, finish_redirect, land, redirect_to_provider, signed_in_user_verified,
    start_session, CallbackFailed, CallbackQuery, StartQuery,
};
use super::{ApiError, AppState};
use crate::auth::oidc;
use crate::auth::providers::{Kind, Provider};

fn browser_provider(state: &AppState, name: &str) -> Result<Arc<Provider>, ApiError> {
    state
        .auth
        .providers
        .named(name)
        .filter(|p| p.kind == Kind::Oidc && p.oidc.as_ref().is_some_and(|o| o.client_id.is_some()))
        .cloned()
        .ok_or_else(|| ApiError::NotFound {
            message: format!("no OpenID Connect provider {name:?} with browser sign-in here"),
        })
}

fn callback_url(state: &AppState, name: &str) -> String {
    format!(
        "{}/auth/oidc/{name}/callback",
        state.auth.settings.public_url
    )
}

/// Pending sign-ins of each OIDC provider are kept apart from other providers'.
fn login_key(name: &str) -> String {
    format!("oidc:{name}")
}

fn failed(error: oidc::OidcError) -> ApiError {
    match error {
        oidc::OidcError::Refused(reason) => unauthorized(
            "sign_in_refused",
            format!("the identity provider refused the sign-in: {reason}"),
        ),
        other => ApiError::BadGateway {
            code: "identity_provider_unavailable",
            message: other.to_string(),
        },
    }
}

async fn document(provider: &Provider) -> Result<&oidc::DiscoveryDocument, ApiError> {
    provider
        .discovery()
        .ok_or_else(|| ApiError::Internal("an OIDC provider without discovery".into()))?
        .document()
        .await
        .map_err(failed)
}

/// `GET /auth/oidc/{name}/start?return_to=/path`: redirects the browser to the provider.
#[utoipa::path(get, path = "/auth/oidc/{name}/start", tag = "auth", params(("name" = String, Path), StartQuery),
    responses((status = 303, description = "To the provider (code flow with PKCE)"), (status = 404, body = fleetmon_proto::ErrorBody), (status = 502, body = fleetmon_proto::ErrorBody)))]
pub async fn start(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Params(query): Params<StartQuery>,
) -> Result<Response, ApiError> {
    let provider = browser_provider(&state, &name)?;
    let settings = provider.oidc.as_ref().expect("checked by browser_provider");
    let endpoint = document(&provider).await?.authorization_endpoint.clone();
    let pending = begin_redirect(&state, &login_key(&name), query.return_to.as_deref()).await?;
    let mut scopes = vec![
        "openid".to_string(),
        "email".to_string(),
        "profile".to_string(),
    ];
    scopes.extend(settings.scopes.iter().cloned());
    let mut url = reqwest::Url::parse(&endpoint)
        .map_err(|e| ApiError::Internal(format!("authorization endpoint: {e}")))?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair(
            "client_id",
            settings.client_id.as_deref().unwrap_or_default(),
        )
        .append_pair("redirect_uri", &callback_url(&state, &name))
        .append_pair("scope", &scopes.join(" "))
        .append_pair("state", &pending.state)
        .append_pair("nonce", &pending.nonce)
        .append_pair("code_challenge", &pending.code_challenge)
        .append_pair("code_challenge_method", "S256");
    Ok(redirect_to_provider(&state, url.as_str(), &pending))
}

/// `GET /auth/oidc/{name}/callback`: exchanges the code, verifies the id token (signature,
/// issuer, audience = client id, expiry, nonce), signs the user in, returns to the app. A browser
/// whose sign-in failed goes back to the sign-in page, which says why.
#[utoipa::path(get, path = "/auth/oidc/{name}/callback", tag = "auth", params(("name" = String, Path), CallbackQuery),
    responses((status = 303, description = "Signed in: to the page the sign-in started from"),
        (status = 400, body = fleetmon_proto::ErrorBody), (status = 401, body = fleetmon_proto::ErrorBody), (status = 502, description = "The provider failed", body = fleetmon_proto::ErrorBody), (status = 404, body = fleetmon_proto::ErrorBody)))]
pub async fn callback(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Params(query): Params<CallbackQuery>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
) -> Response {
    let signed_in = async {
        let provider = browser_provider(&state, &name)?;
        let (code, login) = finish_redirect(&state, &login_key(&name), query, &headers).await?;
        let session = complete(&state, &provider, &name, &code, &login, &headers, addr)
            .await
            .map_err(|error| CallbackFailed {
                error,
                return_to: Some(login.return_to.clone()),
            })?;
        Ok::<_, CallbackFailed>(land(&state, session, &login.return_to))
    };
    signed_in
        .await
        .unwrap_or_else(|failed| failed.respond(&state, &headers))
}

/// The rest of a callback whose state checked out: the code exchanged, the id token verified,
/// the session started.
async fn complete(
    state: &AppState,
    provider: &Provider,
    name: &str,
    code: &str,
    login: &oidc::PendingLogin,
    headers: &HeaderMap,
    addr: Option<std::net::IpAddr>,
) -> Result<Response, ApiError> {
    let settings = provider.oidc.as_ref().expect("checked by browser_provider");
    let token_endpoint = document(provider).await?.token_endpoint.clone();
    let tokens = oidc::exchange_code(
        &state.auth.http,
        &token_endpoint,
        settings.client_id.as_deref().unwrap_or_default(),
        settings.client_secret.as_deref(),
        code,
        &callback_url(state, name),
        &login.code_verifier,
    )
    .await
    .map_err(failed)?;
    let id_token = tokens.id_token.ok_or_else(|| ApiError::BadGateway {
        code: "identity_provider_unavailable",
        message: "the provider sent no id token".into(),
    })?;
    let verifier = provider
        .id_token_verifier()
        .ok_or_else(|| ApiError::Internal("an OIDC provider without a client id".into()))?;
    let verified = verifier.verify(&id_token).await?;
    if verified.claims.get("nonce").and_then(Value::as_str) != Some(login.nonce.as_str()) {
        return Err(unauthorized(
            "bad_nonce",
            "the id token does not belong to this sign-in",
        ));
    }
    let user_id = signed_in_user_verified(state, provider, &verified).await?;
    start_session(state, user_id, name, headers, addr, None).await
}
