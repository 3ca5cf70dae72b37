//! Sign-in through Stack Auth's client API from fleetmon's own page: password, one-time code
//! (the code typed from the email, or its magic link), and OAuth through Stack (code + PKCE).
//! Whatever the way in, the access token Stack returns is verified against Stack's JWKS, and the
//! session keeps Stack's refresh token so that refreshing goes through Stack.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::auth::{unauthorized, ClientAddr};
use super::json::JsonBody;
use super::params::Params;
use super::signin::{
    begin_redirect, check_sign_in_origin, finish_redirect, land, redirect_to_provider,
    reserve_attempt, settle_attempt, signed_in_user, start_session, CallbackFailed, CallbackQuery,
    Outcome, PasswordSignIn, SignedIn, StartQuery,
};
use super::{cookies, ApiError, AppState};
use crate::auth::stack::{StackClient, StackError, StackSession};
use crate::auth::throttle::Attempt;

/// The key of pending OAuth sign-ins through Stack in `oidc_logins`.
const OAUTH_LOGIN_KEY: &str = "stack:oauth";

pub(super) fn stack_failed(error: StackError) -> ApiError {
    match error {
        StackError::InvalidCredentials => {
            unauthorized("invalid_credentials", "wrong email or password")
        }
        StackError::InvalidCode => unauthorized("invalid_code", error.to_string()),
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

pub(super) fn stack_client(state: &AppState) -> Result<&StackClient, ApiError> {
    state.auth.stack.as_ref().ok_or_else(|| ApiError::NotFound {
        message: "Stack Auth is not configured here".into(),
    })
}

/// Runs a sign-in call to Stack under throttling: refused while the attempt's keys are locked,
/// counted when Stack says the credentials were wrong.
async fn throttled(
    state: &AppState,
    attempt: &Attempt,
    call: impl std::future::Future<Output = Result<StackSession, StackError>>,
) -> Result<StackSession, ApiError> {
    reserve_attempt(state, attempt).await?;
    let outcome = call.await;
    let verdict = match &outcome {
        Ok(_) => Outcome::Succeeded,
        Err(StackError::InvalidCredentials | StackError::InvalidCode) => Outcome::Failed,
        Err(_) => Outcome::NoVerdict,
    };
    settle_attempt(state, attempt, verdict).await?;
    outcome.map_err(stack_failed)
}

async fn open_session(
    state: &AppState,
    session: StackSession,
    headers: &HeaderMap,
    addr: Option<std::net::IpAddr>,
) -> Result<Response, ApiError> {
    let user_id = signed_in_user(state, &session.access_token).await?;
    start_session(
        state,
        user_id,
        "stack",
        headers,
        addr,
        Some(&session.refresh_token),
    )
    .await
}

/// Signs in with a Stack Auth email and password.
#[utoipa::path(post, path = "/auth/stack/sign-in", tag = "auth", request_body = PasswordSignIn,
    responses((status = 200, description = "Signed in; `Set-Cookie` carries the session", body = SignedIn),
        (status = 400, body = fleetmon_proto::ErrorBody), (status = 401, description = "`invalid_credentials`", body = fleetmon_proto::ErrorBody),
        (status = 403, description = "`bad_origin`: not from fleetmon's own page", body = fleetmon_proto::ErrorBody),
        (status = 429, description = "Too many attempts; `Retry-After`", body = fleetmon_proto::ErrorBody), (status = 404, description = "Stack Auth is not configured", body = fleetmon_proto::ErrorBody),
        (status = 502, description = "Stack Auth failed", body = fleetmon_proto::ErrorBody)))]
pub async fn password(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    JsonBody(body): JsonBody<PasswordSignIn>,
) -> Result<Response, ApiError> {
    check_sign_in_origin(&state, &headers)?;
    stack_password_sign_in(&state, addr, &headers, &body).await
}

/// A Stack Auth password sign-in, once the request is known to come from fleetmon's own page
/// (the JSON endpoint above, or the dashboard's form).
pub(crate) async fn stack_password_sign_in(
    state: &AppState,
    addr: Option<std::net::IpAddr>,
    headers: &HeaderMap,
    body: &PasswordSignIn,
) -> Result<Response, ApiError> {
    let client = stack_client(state)?;
    let attempt = Attempt::new(&body.email, addr);
    let session = throttled(
        state,
        &attempt,
        client.sign_in_password(body.email.trim(), &body.password),
    )
    .await?;
    open_session(state, session, headers, addr).await
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct SendCode {
    email: String,
}

fn magic_link_url(state: &AppState) -> String {
    format!("{}/auth/stack/magic-link", state.auth.settings.public_url)
}

/// `POST /auth/stack/send-code` `{"email"}`: Stack emails a one-time code and a magic link. The
/// answer's `nonce` completes the typed code: the page sends `code` = typed code + nonce, so a
/// code read from the email alone is not enough to sign in anywhere else. The nonce also goes in
/// an HttpOnly cookie, which the magic link must come back with. Each send counts as an attempt
/// against the email and the address, so nobody can make Stack mail someone without limit.
#[utoipa::path(post, path = "/auth/stack/send-code", tag = "auth", request_body = SendCode,
    responses((status = 202, description = "Sent", body = CodeSent), (status = 400, body = fleetmon_proto::ErrorBody),
        (status = 403, body = fleetmon_proto::ErrorBody), (status = 404, body = fleetmon_proto::ErrorBody), (status = 429, body = fleetmon_proto::ErrorBody), (status = 502, body = fleetmon_proto::ErrorBody)))]
pub async fn send_code(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    JsonBody(body): JsonBody<SendCode>,
) -> Result<Response, ApiError> {
    check_sign_in_origin(&state, &headers)?;
    let client = stack_client(&state)?;
    reserve_attempt(&state, &Attempt::new(&body.email, addr)).await?;
    let nonce = client
        .send_sign_in_code(body.email.trim(), &magic_link_url(&state))
        .await
        .map_err(stack_failed)?;
    let mut response = (
        StatusCode::ACCEPTED,
        Json(CodeSent {
            sent: true,
            nonce: nonce.clone(),
        }),
    )
        .into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        cookies::set(
            cookies::STACK_CODE,
            &nonce,
            "/auth/stack",
            900,
            true,
            state.auth.settings.secure_cookies(),
        ),
    );
    Ok(response)
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CodeSent {
    sent: bool,
    /// Appended to the code the user types.
    nonce: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct CodeSignIn {
    code: String,
}

/// `POST /auth/stack/code-sign-in` `{"code"}`: the code typed from the email followed by the
/// nonce `send-code` answered.
#[utoipa::path(post, path = "/auth/stack/code-sign-in", tag = "auth", request_body = CodeSignIn,
    responses((status = 200, body = SignedIn), (status = 400, body = fleetmon_proto::ErrorBody), (status = 401, description = "`invalid_credentials`", body = fleetmon_proto::ErrorBody),
        (status = 403, description = "`bad_origin`: not from fleetmon's own page", body = fleetmon_proto::ErrorBody),
        (status = 429, description = "Too many attempts; `Retry-After`", body = fleetmon_proto::ErrorBody), (status = 404, body = fleetmon_proto::ErrorBody), (status = 502, body = fleetmon_proto::ErrorBody)))]
pub async fn code(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    JsonBody(body): JsonBody<CodeSignIn>,
) -> Result<Response, ApiError> {
    check_sign_in_origin(&state, &headers)?;
    let client = stack_client(&state)?;
    let session = throttled(
        &state,
        &Attempt::from_address(addr),
        client.sign_in_with_code(&body.code),
    )
    .await?;
    open_session(&state, session, &headers, addr).await
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MagicLink {
    code: String,
}

/// `GET /auth/stack/magic-link?code=…`: the link from the email; signs in and opens the app.
#[utoipa::path(get, path = "/auth/stack/magic-link", tag = "auth", params(MagicLink),
    responses((status = 303, description = "Signed in: to the page the sign-in started from"),
        (status = 400, body = fleetmon_proto::ErrorBody), (status = 401, body = fleetmon_proto::ErrorBody), (status = 502, description = "The provider failed", body = fleetmon_proto::ErrorBody), (status = 404, body = fleetmon_proto::ErrorBody)))]
pub async fn magic_link(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    Params(link): Params<MagicLink>,
) -> Result<Response, ApiError> {
    let client = stack_client(&state)?;
    // Only the browser that asked for the code may use its link: otherwise anyone could send
    // someone a link that signs them in to the sender's account.
    let nonce = cookies::get(&headers, cookies::STACK_CODE).unwrap_or_default();
    if nonce.is_empty() || !link.code.to_lowercase().ends_with(&nonce.to_lowercase()) {
        return Err(ApiError::Forbidden {
            code: "csrf_failed",
            message: "open the sign-in link in the browser where you asked for it".into(),
        });
    }
    let session = throttled(
        &state,
        &Attempt::from_address(addr),
        client.sign_in_with_code(&link.code),
    )
    .await?;
    let response = open_session(&state, session, &headers, addr).await?;
    Ok(land(&state, response, "/"))
}

fn oauth_callback_url(state: &AppState) -> String {
    format!(
        "{}/auth/stack/oauth/callback",
        state.auth.settings.public_url
    )
}

/// `GET /auth/stack/oauth/{provider}/start?return_to=`: to Stack's OAuth (e.g. `github`).
#[utoipa::path(get, path = "/auth/stack/oauth/{provider}/start", tag = "auth", params(("provider" = String, Path), StartQuery),
    responses((status = 303, description = "To Stack Auth's OAuth"), (status = 404, body = fleetmon_proto::ErrorBody), (status = 502, body = fleetmon_proto::ErrorBody)))]
pub async fn oauth_start(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    Params(query): Params<StartQuery>,
) -> Result<Response, ApiError> {
    let client = stack_client(&state)?;
    let pending = begin_redirect(&state, OAUTH_LOGIN_KEY, query.return_to.as_deref()).await?;
    let url = client
        .oauth_authorize_url(
            &provider,
            &oauth_callback_url(&state),
            &pending.state,
            &pending.code_challenge,
        )
        .map_err(|error| match error {
            StackError::Settings(message) => ApiError::BadRequest {
                code: "invalid_provider",
                message,
            },
            other => stack_failed(other),
        })?;
    Ok(redirect_to_provider(&state, url.as_str(), &pending))
}

/// `GET /auth/stack/oauth/callback?code&state`: exchanges the code with Stack, signs in. A
/// browser whose sign-in failed goes back to the sign-in page, which says why.
#[utoipa::path(get, path = "/auth/stack/oauth/callback", tag = "auth", params(CallbackQuery),
    responses((status = 303, description = "Signed in: to the page the sign-in started from"),
        (status = 400, body = fleetmon_proto::ErrorBody), (status = 401, body = fleetmon_proto::ErrorBody), (status = 502, description = "The provider failed", body = fleetmon_proto::ErrorBody), (status = 404, body = fleetmon_proto::ErrorBody)))]
pub async fn oauth_callback(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    Params(query): Params<CallbackQuery>,
) -> Response {
    let signed_in = async {
        let client = stack_client(&state)?;
        let (code, login) = finish_redirect(&state, OAUTH_LOGIN_KEY, query, &headers).await?;
        let session = async {
            let session = client
                .oauth_exchange_code(&code, &oauth_callback_url(&state), &login.code_verifier)
                .await
                .map_err(stack_failed)?;
            open_session(&state, session, &headers, addr).await
        }
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
