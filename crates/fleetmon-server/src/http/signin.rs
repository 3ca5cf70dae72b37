//! Browser sign-in and sessions under `/auth`: sign in (built-in accounts, Stack Auth, OpenID
//! Connect), refresh, sign out; and fleetmon's own JWKS.
//!
//! Every sign-in ends the same way: a `sessions` row, and cookies holding a short-lived local
//! access token, the session's refresh secret and a CSRF token.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::auth::{check_csrf, unauthorized, user_of, ClientAddr, Principal};
use super::json::JsonBody;
use super::{cookies, ApiError, AppState};
use crate::auth::providers::{sign_access_token, Kind, ACCESS_TOKEN_TTL};
use crate::auth::sessions::{self, SESSION_LIFETIME};
use crate::auth::stack::{StackClient, StackError};
use crate::auth::throttle::Attempt;
use crate::auth::{local, oidc, signing};
use crate::db::TenantContext;

#[derive(Deserialize)]
pub struct PasswordSignIn {
    email: String,
    password: String,
}

fn too_many(seconds: u64) -> ApiError {
    ApiError::TooManyRequests {
        retry_after: seconds,
        message: format!("too many failed sign-ins; try again in {seconds} s"),
    }
}

/// The sign-in form posts JSON, which another site cannot send without a CORS preflight; an
/// Origin other than ours is refused too (login CSRF).
fn check_sign_in_origin(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let origin_ok = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|origin| origin == state.auth.settings.public_url);
    if json && origin_ok {
        Ok(())
    } else {
        Err(ApiError::Forbidden {
            code: "csrf_failed",
            message: "sign in with a JSON body from fleetmon's own page".into(),
        })
    }
}

/// `POST /auth/local/sign-in` `{"email","password"}`.
pub async fn local_sign_in(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    JsonBody(body): JsonBody<PasswordSignIn>,
) -> Result<Response, ApiError> {
    check_sign_in_origin(&state, &headers)?;
    if !state.auth.settings.local {
        return Err(ApiError::NotFound {
            message: "built-in accounts are turned off here".into(),
        });
    }
    let attempt = Attempt::new(&body.email, addr);
    let mut tx = state.db.begin(TenantContext::none()).await?;
    if let Some(seconds) = attempt.locked_for(tx.conn()).await? {
        return Err(too_many(seconds));
    }
    let user = local::check_password(tx.conn(), &body.email, &body.password).await?;
    match user {
        None => {
            attempt.failed(tx.conn()).await?;
            tx.commit().await?;
            Err(unauthorized(
                "invalid_credentials",
                "wrong email or password",
            ))
        }
        Some(user_id) => {
            attempt.succeeded(tx.conn()).await?;
            tx.commit().await?;
            // fleetmon's operators create built-in accounts, so fleetmon vouches for their email.
            crate::auth::teams::accept_invitations(&state.db, user_id).await?;
            start_session(&state, user_id, "local", &headers, addr, None).await
        }
    }
}

fn stack_failed(error: StackError) -> ApiError {
    match error {
        StackError::InvalidCredentials => {
            unauthorized("invalid_credentials", "wrong email or password")
        }
        StackError::SessionEnded => unauthorized(
            "session_ended",
            "the Stack Auth session has ended; sign in again",
        ),
        StackError::Unreachable(_) => ApiError::Unavailable {
            code: "identity_provider_unavailable",
            message: error.to_string(),
        },
        other => ApiError::BadGateway {
            code: "identity_provider_unavailable",
            message: other.to_string(),
        },
    }
}

fn stack_client(state: &AppState) -> Result<&StackClient, ApiError> {
    state.auth.stack.as_ref().ok_or_else(|| ApiError::NotFound {
        message: "Stack Auth is not configured here".into(),
    })
}

/// The user a provider's freshly issued token stands for, with the org its team claim names.
async fn signed_in_user(state: &AppState, token: &str) -> Result<Uuid, ApiError> {
    let (provider, verified) = state.auth.providers.verify(token).await?;
    let Principal::User { user_id, .. } = user_of(state, &provider, &verified).await? else {
        unreachable!("a JWT names a user");
    };
    if let Some(team) = provider.team_claim(&verified) {
        crate::auth::teams::join_team_org(&state.db, user_id, &team).await?;
    }
    Ok(user_id)
}

/// `POST /auth/stack/sign-in` `{"email","password"}`: signs in through Stack's client API; the
/// access token Stack returns is verified against Stack's JWKS like any bearer.
pub async fn stack_sign_in(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    JsonBody(body): JsonBody<PasswordSignIn>,
) -> Result<Response, ApiError> {
    check_sign_in_origin(&state, &headers)?;
    let client = stack_client(&state)?;
    let attempt = Attempt::new(&body.email, addr);
    let mut tx = state.db.begin(TenantContext::none()).await?;
    let locked = attempt.locked_for(tx.conn()).await?;
    tx.commit().await?;
    if let Some(seconds) = locked {
        return Err(too_many(seconds));
    }
    let session = match client
        .sign_in_password(body.email.trim(), &body.password)
        .await
    {
        Ok(session) => session,
        Err(error) => {
            if matches!(error, StackError::InvalidCredentials) {
                let mut tx = state.db.begin(TenantContext::none()).await?;
                attempt.failed(tx.conn()).await?;
                tx.commit().await?;
            }
            return Err(stack_failed(error));
        }
    };
    let user_id = signed_in_user(&state, &session.access_token).await?;
    let mut tx = state.db.begin(TenantContext::none()).await?;
    attempt.succeeded(tx.conn()).await?;
    tx.commit().await?;
    start_session(
        &state,
        user_id,
        "stack",
        &headers,
        addr,
        Some(&session.refresh_token),
    )
    .await
}

/// Opens a session and answers with its cookies and the signed-in user.
async fn start_session(
    state: &AppState,
    user_id: Uuid,
    provider: &str,
    headers: &HeaderMap,
    addr: Option<std::net::IpAddr>,
    stack_refresh: Option<&str>,
) -> Result<Response, ApiError> {
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let mut tx = state
        .db
        .begin(TenantContext::none().with_user(user_id))
        .await?;
    let session = sessions::open(tx.conn(), user_id, provider, user_agent, addr).await?;
    let key = signing::active(tx.conn()).await?;
    tx.commit().await?;
    let access = sign_access_token(&key, &state.auth.settings.public_url, user_id, session.id);
    let mut response = Json(json!({ "user_id": user_id, "provider": provider })).into_response();
    let secure = state.auth.settings.secure_cookies();
    let set = response.headers_mut();
    let lifetime = SESSION_LIFETIME.num_seconds();
    set.append(
        header::SET_COOKIE,
        cookies::set(
            cookies::ACCESS,
            &access,
            "/",
            ACCESS_TOKEN_TTL.num_seconds(),
            true,
            secure,
        ),
    );
    set.append(
        header::SET_COOKIE,
        cookies::set(
            cookies::REFRESH,
            &session.refresh_secret,
            "/auth",
            lifetime,
            true,
            secure,
        ),
    );
    set.append(
        header::SET_COOKIE,
        cookies::set(
            cookies::CSRF,
            &crate::auth::random_base62(32),
            "/",
            lifetime,
            false,
            secure,
        ),
    );
    if let Some(stack_refresh) = stack_refresh {
        set.append(
            header::SET_COOKIE,
            cookies::set(
                cookies::STACK_REFRESH,
                stack_refresh,
                "/auth",
                lifetime,
                true,
                secure,
            ),
        );
    }
    Ok(response)
}

fn clear_cookies(response: &mut Response, secure: bool) {
    let set = response.headers_mut();
    for (name, path) in [
        (cookies::ACCESS, "/"),
        (cookies::REFRESH, "/auth"),
        (cookies::STACK_REFRESH, "/auth"),
        (cookies::CSRF, "/"),
    ] {
        set.append(
            header::SET_COOKIE,
            cookies::set(name, "", path, 0, true, secure),
        );
    }
}

/// `POST /auth/refresh`: a new access token for a live session (and, for Stack sessions, only
/// while Stack itself still refreshes the user's session).
pub async fn refresh(
    State(state): State<AppState>,
    method: axum::http::Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_csrf(&method, &headers)?;
    let secret = cookies::get(&headers, cookies::REFRESH)
        .ok_or_else(|| unauthorized("session_ended", "no session; sign in"))?;
    let mut tx = state.db.begin(TenantContext::none()).await?;
    let session = sessions::refresh(tx.conn(), secret).await?;
    tx.commit().await?;
    let ended = || {
        let mut response =
            unauthorized("session_ended", "the session has ended; sign in again").into_response();
        clear_cookies(&mut response, state.auth.settings.secure_cookies());
        response
    };
    let Some(session) = session else {
        return Ok(ended());
    };
    if session.provider == "stack" {
        // The session lives only as long as Stack keeps refreshing it.
        let client = stack_client(&state)?;
        let stack_refresh = cookies::get(&headers, cookies::STACK_REFRESH).unwrap_or_default();
        let refreshed = match client.refresh(stack_refresh).await {
            Ok(token) => Some(signed_in_user(&state, &token).await?),
            Err(StackError::SessionEnded) => None,
            Err(error) => return Err(stack_failed(error)),
        };
        if refreshed != Some(session.user_id) {
            let mut tx = state.db.begin(TenantContext::none()).await?;
            sessions::revoke(tx.conn(), session.id).await?;
            tx.commit().await?;
            return Ok(ended());
        }
    }
    let mut tx = state
        .db
        .begin(TenantContext::none().with_user(session.user_id))
        .await?;
    let key = signing::active(tx.conn()).await?;
    tx.commit().await?;
    let access = sign_access_token(
        &key,
        &state.auth.settings.public_url,
        session.user_id,
        session.id,
    );
    let mut response = Json(json!({ "user_id": session.user_id })).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        cookies::set(
            cookies::ACCESS,
            &access,
            "/",
            ACCESS_TOKEN_TTL.num_seconds(),
            true,
            state.auth.settings.secure_cookies(),
        ),
    );
    Ok(response)
}

/// `POST /auth/sign-out`: revokes the session (at once, for every token it issued).
pub async fn sign_out(
    State(state): State<AppState>,
    method: axum::http::Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_csrf(&method, &headers)?;
    if let Some(secret) = cookies::get(&headers, cookies::REFRESH) {
        let mut tx = state.db.begin(TenantContext::none()).await?;
        let session = sessions::refresh(tx.conn(), secret).await?;
        if let Some(session) = &session {
            sessions::revoke(tx.conn(), session.id).await?;
        }
        tx.commit().await?;
        let stack_refresh = cookies::get(&headers, cookies::STACK_REFRESH);
        if let (Some(session), Some(client), Some(token)) =
            (session, state.auth.stack.as_ref(), stack_refresh)
        {
            if session.provider == "stack" {
                // Ending Stack's session too is a courtesy: ours is already revoked.
                if let Err(error) = client.sign_out(token).await {
                    tracing::warn!(%error, "could not end the Stack Auth session at sign-out");
                }
            }
        }
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    clear_cookies(&mut response, state.auth.settings.secure_cookies());
    Ok(response)
}

/// `GET /auth/providers`: what the sign-in page offers.
pub async fn providers(State(state): State<AppState>) -> Json<Value> {
    let mut list: Vec<Value> = state
        .auth
        .providers
        .all()
        .filter(|p| p.kind != Kind::Local || state.auth.settings.local)
        .map(|p| {
            let (kind, display, browser) = match p.kind {
                Kind::Local => ("local", "fleetmon account".to_string(), true),
                Kind::Stack => ("stack", "Stack Auth".to_string(), true),
                Kind::Oidc => {
                    let oidc = p.oidc.as_ref().expect("an OIDC provider has OIDC settings");
                    ("oidc", oidc.display_name.clone(), oidc.client_id.is_some())
                }
            };
            json!({ "name": p.name, "kind": kind, "display_name": display, "browser_sign_in": browser })
        })
        .collect();
    list.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Json(json!({ "providers": list }))
}

/// `GET /.well-known/jwks.json`: the public keys of fleetmon's own tokens.
pub async fn jwks(State(state): State<AppState>) -> Result<Response, ApiError> {
    let mut tx = state.db.begin(TenantContext::none()).await?;
    signing::active(tx.conn()).await?;
    let keys = signing::published(tx.conn()).await?;
    tx.commit().await?;
    let mut response = Json(json!({ "keys": keys })).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    Ok(response)
}

#[derive(Deserialize)]
pub struct StartQuery {
    return_to: Option<String>,
}

/// Only same-site paths: never an open redirect.
fn safe_return_to(path: Option<&str>) -> String {
    match path {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.contains('\\')
                && p.len() < 1000 =>
        {
            p.to_string()
        }
        _ => "/".to_string(),
    }
}

fn oidc_provider(
    state: &AppState,
    name: &str,
) -> Result<std::sync::Arc<crate::auth::providers::Provider>, ApiError> {
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

fn oidc_failed(error: oidc::OidcError) -> ApiError {
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

/// `GET /auth/oidc/{name}/start`: redirects the browser to the provider (code + PKCE S256).
pub async fn oidc_start(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(start): Query<StartQuery>,
) -> Result<Response, ApiError> {
    let provider = oidc_provider(&state, &name)?;
    let settings = provider.oidc.as_ref().expect("checked above");
    let discovery = provider
        .discovery()
        .ok_or_else(|| ApiError::Internal("an OIDC provider without discovery".into()))?;
    let document = discovery.document().await.map_err(oidc_failed)?;
    let state_value = crate::auth::random_base62(32);
    let nonce = crate::auth::random_base62(32);
    let (verifier, challenge) = oidc::pkce();
    let login = oidc::PendingLogin {
        code_verifier: verifier,
        nonce: nonce.clone(),
        return_to: safe_return_to(start.return_to.as_deref()),
    };
    let mut tx = state.db.begin(TenantContext::none()).await?;
    oidc::save_login(tx.conn(), &name, &state_value, &login).await?;
    tx.commit().await?;
    let mut scopes = vec![
        "openid".to_string(),
        "email".to_string(),
        "profile".to_string(),
    ];
    scopes.extend(settings.scopes.iter().cloned());
    let mut url = reqwest::Url::parse(&document.authorization_endpoint)
        .map_err(|e| ApiError::Internal(format!("authorization endpoint: {e}")))?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair(
            "client_id",
            settings.client_id.as_deref().unwrap_or_default(),
        )
        .append_pair("redirect_uri", &callback_url(&state, &name))
        .append_pair("scope", &scopes.join(" "))
        .append_pair("state", &state_value)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let mut response = Redirect::to(url.as_str()).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        cookies::set(
            cookies::OIDC_STATE,
            &state_value,
            "/auth/oidc",
            600,
            true,
            state.auth.settings.secure_cookies(),
        ),
    );
    Ok(response)
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `GET /auth/oidc/{name}/callback`: exchanges the code, verifies the id token (signature,
/// issuer, audience = client id, expiry, nonce), signs the user in.
pub async fn oidc_callback(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(callback): Query<CallbackQuery>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let provider = oidc_provider(&state, &name)?;
    if let Some(error) = callback.error {
        return Err(unauthorized(
            "sign_in_refused",
            format!("the identity provider answered {error:?}"),
        ));
    }
    let (Some(code), Some(state_value)) = (callback.code, callback.state) else {
        return Err(ApiError::BadRequest {
            code: "bad_callback",
            message: "the callback needs code and state".into(),
        });
    };
    // The state must be the one this browser was given.
    if cookies::get(&headers, cookies::OIDC_STATE) != Some(state_value.as_str()) {
        return Err(ApiError::Forbidden {
            code: "csrf_failed",
            message: "this sign-in was not started in this browser".into(),
        });
    }
    let mut tx = state.db.begin(TenantContext::none()).await?;
    let login = oidc::take_login(tx.conn(), &name, &state_value).await?;
    tx.commit().await?;
    let oidc::PendingLogin {
        code_verifier: verifier,
        nonce,
        return_to,
    } = login.ok_or_else(|| ApiError::BadRequest {
        code: "sign_in_expired",
        message: "this sign-in expired or was already used; start again".into(),
    })?;
    let settings = provider.oidc.as_ref().expect("checked above");
    let discovery = provider
        .discovery()
        .ok_or_else(|| ApiError::Internal("an OIDC provider without discovery".into()))?;
    let document = discovery.document().await.map_err(oidc_failed)?;
    let tokens = oidc::exchange_code(
        &state.auth.http,
        &document.token_endpoint,
        settings.client_id.as_deref().unwrap_or_default(),
        settings.client_secret.as_deref(),
        &code,
        &callback_url(&state, &name),
        &verifier,
    )
    .await
    .map_err(oidc_failed)?;
    let id_token = tokens.id_token.ok_or_else(|| ApiError::BadGateway {
        code: "identity_provider_unavailable",
        message: "the provider sent no id token".into(),
    })?;
    let verifier = provider
        .id_token_verifier()
        .ok_or_else(|| ApiError::Internal("an OIDC provider without a client id".into()))?;
    let verified = verifier.verify(&id_token).await?;
    if verified.claims.get("nonce").and_then(Value::as_str) != Some(nonce.as_str()) {
        return Err(unauthorized(
            "bad_nonce",
            "the id token does not belong to this sign-in",
        ));
    }
    let Principal::User { user_id, .. } = user_of(&state, &provider, &verified).await? else {
        unreachable!("a JWT names a user");
    };
    if let Some(team) = provider.team_claim(&verified) {
        crate::auth::teams::join_team_org(&state.db, user_id, &team).await?;
    }
    let mut response = start_session(&state, user_id, &name, &headers, addr, None).await?;
    *response.status_mut() = StatusCode::SEE_OTHER;
    response.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(&return_to).unwrap_or(HeaderValue::from_static("/")),
    );
    response.headers_mut().append(
        header::SET_COOKIE,
        cookies::set(
            cookies::OIDC_STATE,
            "",
            "/auth/oidc",
            0,
            true,
            state.auth.settings.secure_cookies(),
        ),
    );
    Ok(response)
}
