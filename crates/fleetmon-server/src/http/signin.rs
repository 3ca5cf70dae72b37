//! Browser sessions under `/auth`: built-in accounts' sign-in, refresh, sign-out, the provider
//! list, fleetmon's own JWKS, and what the sign-ins through a provider (`oidc_signin`,
//! `stack_signin`) share.
//!
//! Every sign-in ends the same way: a `sessions` row, and cookies holding a short-lived local
//! access token, the session's refresh secret and a CSRF token.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::auth::{check_csrf, unauthorized, user_of, ClientAddr, Principal};
use super::json::JsonBody;
use super::stack_signin::{stack_client, stack_failed};
use super::{cookies, ApiError, AppState};
use crate::auth::jwt::VerifiedToken;
use crate::auth::providers::{sign_access_token, Kind, Provider, ACCESS_TOKEN_TTL};
use crate::auth::sessions::{self, SESSION_LIFETIME};
use crate::auth::stack::StackError;
use crate::auth::throttle::Attempt;
use crate::auth::{local, oidc, signing};
use crate::db::TenantContext;

#[derive(Deserialize, utoipa::ToSchema)]
pub struct PasswordSignIn {
    pub(crate) email: String,
    pub(crate) password: String,
}

fn too_many(seconds: u64) -> ApiError {
    ApiError::TooManyRequests {
        retry_after: seconds,
        message: format!("too many failed sign-ins; try again in {seconds} s"),
    }
}

/// Whether the request's `Origin` is fleetmon's own; `absent` is what a request without one
/// counts as.
pub(crate) fn from_our_origin(state: &AppState, headers: &HeaderMap, absent: bool) -> bool {
    match headers.get(header::ORIGIN).map(|v| v.to_str()) {
        None => absent,
        Some(origin) => origin.is_ok_and(|origin| origin == state.auth.settings.public_url),
    }
}

/// The sign-in form posts JSON, which another site cannot send without a CORS preflight; an
/// Origin other than ours is refused too (login CSRF).
pub(super) fn check_sign_in_origin(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if json && from_our_origin(state, headers, true) {
        Ok(())
    } else {
        Err(ApiError::Forbidden {
            code: "csrf_failed",
            message: "sign in with a JSON body from fleetmon's own page".into(),
        })
    }
}

/// Who a sign-in or refresh is for; the session travels in cookies.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SignedIn {
    user_id: Uuid,
    /// The provider that vouched for the user; absent on refresh.
    #[serde(skip_serializing_if = "Option::is_none")]
    provider: Option<String>,
}

/// Signs in with a built-in account; sets the session cookies.
#[utoipa::path(post, path = "/auth/local/sign-in", tag = "auth", request_body = PasswordSignIn,
    responses((status = 200, description = "Signed in; `Set-Cookie` carries the session", body = SignedIn),
        (status = 400, body = fleetmon_proto::ErrorBody), (status = 401, description = "`invalid_credentials`", body = fleetmon_proto::ErrorBody),
        (status = 403, description = "`bad_origin`: not from fleetmon's own page", body = fleetmon_proto::ErrorBody),
        (status = 429, description = "Too many attempts; `Retry-After`", body = fleetmon_proto::ErrorBody)))]
pub async fn local_sign_in(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    JsonBody(body): JsonBody<PasswordSignIn>,
) -> Result<Response, ApiError> {
    check_sign_in_origin(&state, &headers)?;
    local_password_sign_in(&state, addr, &headers, &body).await
}

/// A built-in account's sign-in, once the request is known to come from fleetmon's own page
/// (the JSON endpoint above, or the dashboard's form).
pub(crate) async fn local_password_sign_in(
    state: &AppState,
    addr: Option<std::net::IpAddr>,
    headers: &HeaderMap,
    body: &PasswordSignIn,
) -> Result<Response, ApiError> {
    if !state.auth.settings.local {
        return Err(ApiError::NotFound {
            message: "built-in accounts are turned off here".into(),
        });
    }
    let attempt = Attempt::new(&body.email, addr);
    reserve_attempt(state, &attempt).await?;
    let mut tx = state.db.begin(TenantContext::none()).await?;
    let user = local::check_password(tx.conn(), &body.email, &body.password).await?;
    tx.commit().await?;
    let outcome = if user.is_some() {
        Outcome::Succeeded
    } else {
        Outcome::Failed
    };
    settle_attempt(state, &attempt, outcome).await?;
    let user_id =
        user.ok_or_else(|| unauthorized("invalid_credentials", "wrong email or password"))?;
    // fleetmon's operators create built-in accounts, so fleetmon vouches for their email.
    crate::auth::teams::accept_invitations(&state.db, user_id).await?;
    start_session(state, user_id, "local", headers, addr, None).await
}

/// The user a provider's freshly issued token stands for, with the org its team claim names.
pub(super) async fn signed_in_user(state: &AppState, token: &str) -> Result<Uuid, ApiError> {
    let (provider, verified) = state.auth.providers.verify(token).await?;
    signed_in_user_verified(state, &provider, &verified).await
}

/// Like [`signed_in_user`], for a token already verified (an OIDC id token).
pub(super) async fn signed_in_user_verified(
    state: &AppState,
    provider: &Provider,
    verified: &VerifiedToken,
) -> Result<Uuid, ApiError> {
    let Principal::User { user_id, .. } = user_of(state, provider, verified).await? else {
        unreachable!("a JWT names a user");
    };
    // At sign-in the team claim always applies, not only when the user row was due a write.
    provider
        .join_claimed_team(&state.db, user_id, verified)
        .await?;
    Ok(user_id)
}

/// The cookie carrying a fresh access token of `session_id`.
fn access_cookie(
    state: &AppState,
    key: &signing::ActiveKey,
    user_id: Uuid,
    session_id: Uuid,
) -> HeaderValue {
    let access = sign_access_token(key, &state.auth.settings.public_url, user_id, session_id);
    cookies::set(
        cookies::ACCESS,
        &access,
        "/",
        ACCESS_TOKEN_TTL.num_seconds(),
        true,
        state.auth.settings.secure_cookies(),
    )
}

/// Counts a sign-in attempt before it is checked; refuses it while one of its keys is locked.
pub(super) async fn reserve_attempt(state: &AppState, attempt: &Attempt) -> Result<(), ApiError> {
    let mut tx = state.db.begin(TenantContext::none()).await?;
    let locked = attempt.reserve(tx.conn()).await?;
    tx.commit().await?;
    match locked {
        Some(seconds) => Err(too_many(seconds)),
        None => Ok(()),
    }
}

/// How a reserved attempt ended.
pub(super) enum Outcome {
    Succeeded,
    /// Wrong credentials: the reservation stands as a failure.
    Failed,
    /// Not a guess (the provider could not be reached): nothing is counted.
    NoVerdict,
}

pub(super) async fn settle_attempt(
    state: &AppState,
    attempt: &Attempt,
    outcome: Outcome,
) -> Result<(), ApiError> {
    let mut tx = state.db.begin(TenantContext::none()).await?;
    match outcome {
        Outcome::Succeeded => attempt.succeeded(tx.conn()).await?,
        Outcome::Failed => {}
        Outcome::NoVerdict => attempt.released(tx.conn()).await?,
    }
    tx.commit().await?;
    Ok(())
}

/// Opens a session and answers with its cookies and the signed-in user.
pub(super) async fn start_session(
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
    let mut response = Json(SignedIn {
        user_id,
        provider: Some(provider.to_string()),
    })
    .into_response();
    let secure = state.auth.settings.secure_cookies();
    let set = response.headers_mut();
    let lifetime = SESSION_LIFETIME.num_seconds();
    set.append(
        header::SET_COOKIE,
        access_cookie(state, &key, user_id, session.id),
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

/// Deletes the session's cookies in the browser.
pub(crate) fn clear_cookies(response: &mut Response, secure: bool) {
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

/// What renewing the browser's session came to.
pub(crate) enum Renewal {
    /// A fresh access token for the session, as its cookie.
    Renewed { user_id: Uuid, cookie: HeaderValue },
    /// The browser sent no refresh secret.
    NoSession,
    /// The session was revoked or expired (or Stack ended it); its cookies should go.
    Ended,
}

/// A new access token for the live session whose refresh secret `headers` carry (for Stack
/// sessions, only while Stack itself still refreshes the user's session).
pub(crate) async fn renew(state: &AppState, headers: &HeaderMap) -> Result<Renewal, ApiError> {
    let Some(secret) = cookies::get(headers, cookies::REFRESH) else {
        return Ok(Renewal::NoSession);
    };
    let mut tx = state.db.begin(TenantContext::none()).await?;
    let session = sessions::refresh(tx.conn(), secret).await?;
    tx.commit().await?;
    let Some(session) = session else {
        return Ok(Renewal::Ended);
    };
    if session.provider == "stack" {
        // The session lives only as long as Stack keeps refreshing it.
        let client = stack_client(state)?;
        let stack_refresh = cookies::get(headers, cookies::STACK_REFRESH).unwrap_or_default();
        let refreshed = match client.refresh(stack_refresh).await {
            Ok(token) => Some(signed_in_user(state, &token).await?),
            Err(StackError::SessionEnded) => None,
            Err(error) => return Err(stack_failed(error)),
        };
        if refreshed != Some(session.user_id) {
            let mut tx = state.db.begin(TenantContext::none()).await?;
            sessions::revoke(tx.conn(), session.id).await?;
            tx.commit().await?;
            return Ok(Renewal::Ended);
        }
    }
    let mut tx = state
        .db
        .begin(TenantContext::none().with_user(session.user_id))
        .await?;
    let key = signing::active(tx.conn()).await?;
    tx.commit().await?;
    Ok(Renewal::Renewed {
        user_id: session.user_id,
        cookie: access_cookie(state, &key, session.user_id, session.id),
    })
}

/// A new access token for a live session (and, for Stack sessions, only while Stack itself still
/// refreshes the user's session).
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", security(("session" = [])),
    responses((status = 200, description = "A new access cookie", body = SignedIn),
        (status = 401, description = "No live session", body = fleetmon_proto::ErrorBody), (status = 403, description = "CSRF check failed", body = fleetmon_proto::ErrorBody)))]
pub async fn refresh(
    State(state): State<AppState>,
    method: axum::http::Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_csrf(&method, &headers)?;
    match renew(&state, &headers).await? {
        Renewal::Renewed { user_id, cookie } => {
            let mut response = Json(SignedIn {
                user_id,
                provider: None,
            })
            .into_response();
            response.headers_mut().append(header::SET_COOKIE, cookie);
            Ok(response)
        }
        Renewal::NoSession => Err(unauthorized("session_ended", "no session; sign in")),
        Renewal::Ended => {
            let mut response =
                unauthorized("session_ended", "the session has ended; sign in again")
                    .into_response();
            clear_cookies(&mut response, state.auth.settings.secure_cookies());
            Ok(response)
        }
    }
}

/// Revokes the session at once, for every token it issued, and clears the cookies.
#[utoipa::path(post, path = "/auth/sign-out", tag = "auth", security(("session" = [])),
    responses((status = 204, description = "Signed out"), (status = 403, description = "CSRF check failed", body = fleetmon_proto::ErrorBody)))]
pub async fn sign_out(
    State(state): State<AppState>,
    method: axum::http::Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_csrf(&method, &headers)?;
    end_session(&state, &headers).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    clear_cookies(&mut response, state.auth.settings.secure_cookies());
    Ok(response)
}

/// Revokes the session whose refresh secret `headers` carry, if any (and Stack's, for a Stack
/// session). The caller has checked that the request is the user's own.
pub(crate) async fn end_session(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(secret) = cookies::get(headers, cookies::REFRESH) else {
        return Ok(());
    };
    let mut tx = state.db.begin(TenantContext::none()).await?;
    let session = sessions::revoke_by_secret(tx.conn(), secret).await?;
    tx.commit().await?;
    let stack_refresh = cookies::get(headers, cookies::STACK_REFRESH);
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
    Ok(())
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ProviderInfo {
    pub(crate) name: String,
    /// `local`, `stack` or `oidc`.
    pub(crate) kind: &'static str,
    pub(crate) display_name: String,
    /// Whether the sign-in page can send a browser there (OIDC issuers without a client id only
    /// verify bearer tokens).
    pub(crate) browser_sign_in: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ProviderList {
    providers: Vec<ProviderInfo>,
}

/// What the sign-in page offers.
#[utoipa::path(get, path = "/auth/providers", tag = "auth", responses((status = 200, body = ProviderList)))]
pub async fn providers(State(state): State<AppState>) -> Json<ProviderList> {
    Json(ProviderList {
        providers: sign_in_options(&state),
    })
}

/// The ways to sign in here, by name.
pub(crate) fn sign_in_options(state: &AppState) -> Vec<ProviderInfo> {
    let mut list: Vec<ProviderInfo> = state
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
            ProviderInfo {
                name: p.name.clone(),
                kind,
                display_name: display,
                browser_sign_in: browser,
            }
        })
        .collect();
    list.sort_by(|a, b| a.name.cmp(&b.name));
    list
}

/// The public keys of fleetmon's own tokens (a JWK Set).
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth",
    responses((status = 200, description = "`{\"keys\":[…]}`, Ed25519 JWKs", content_type = "application/json")))]
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

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StartQuery {
    /// A path of this site to land on afterwards.
    pub(super) return_to: Option<String>,
}

/// Only same-site paths: never an open redirect.
pub(crate) fn safe_return_to(path: Option<&str>) -> String {
    match path {
        // Visible ASCII only: browsers drop tabs and newlines from a Location, which would turn
        // "/\t/evil.example" into "//evil.example".
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && p.len() < 1000
                && p.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') =>
        {
            p.to_string()
        }
        _ => "/".to_string(),
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// A sign-in by redirect to a provider (OpenID Connect, Stack's OAuth), between start and callback.
pub(super) struct RedirectStart {
    pub state: String,
    pub nonce: String,
    pub code_challenge: String,
}

/// Records a pending sign-in (PKCE verifier, nonce, where to return) under `key`.
pub(super) async fn begin_redirect(
    state: &AppState,
    key: &str,
    return_to: Option<&str>,
) -> Result<RedirectStart, ApiError> {
    let state_value = crate::auth::random_base62(32);
    let nonce = crate::auth::random_base62(32);
    let (verifier, code_challenge) = oidc::pkce();
    let login = oidc::PendingLogin {
        code_verifier: verifier,
        nonce: nonce.clone(),
        return_to: safe_return_to(return_to),
    };
    let mut tx = state.db.begin(TenantContext::none()).await?;
    oidc::save_login(tx.conn(), key, &state_value, &login).await?;
    tx.commit().await?;
    Ok(RedirectStart {
        state: state_value,
        nonce,
        code_challenge,
    })
}

/// Sends the browser to `url`, binding the sign-in to it with the state cookie.
pub(super) fn redirect_to_provider(state: &AppState, url: &str, start: &RedirectStart) -> Response {
    let mut response = Redirect::to(url).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        cookies::set(
            cookies::OIDC_STATE,
            &start.state,
            "/auth",
            600,
            true,
            state.auth.settings.secure_cookies(),
        ),
    );
    response
}

/// Why a sign-in by redirect failed, in the words of the sign-in page's `?failed=`: a browser
/// coming back from the provider is sent there (see [`CallbackFailed`]) rather than shown JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RedirectFailure {
    /// The user cancelled or denied at the provider (`error=access_denied`).
    Cancelled,
    /// The pending sign-in is unknown, used or expired, or the callback is malformed.
    Expired,
    /// The callback's `state` is not the one this browser was given.
    OtherBrowser,
    /// The provider answered another error, or fleetmon refused what it sent.
    Refused,
    /// The provider could not be reached or failed.
    ProviderFailed,
    Failed,
}

impl RedirectFailure {
    pub(crate) const ALL: [Self; 6] = [
        Self::Cancelled,
        Self::Expired,
        Self::OtherBrowser,
        Self::Refused,
        Self::ProviderFailed,
        Self::Failed,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
            Self::OtherBrowser => "other_browser",
            Self::Refused => "refused",
            Self::ProviderFailed => "provider_failed",
            Self::Failed => "failed",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == text)
    }

    fn of(error: &ApiError) -> Self {
        match error.status_and_code() {
            (_, "sign_in_cancelled") => Self::Cancelled,
            (_, "sign_in_expired" | "bad_callback") => Self::Expired,
            (_, "csrf_failed") => Self::OtherBrowser,
            (StatusCode::UNAUTHORIZED, _) => Self::Refused,
            (StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE, _) => Self::ProviderFailed,
            _ => Self::Failed,
        }
    }
}

/// A provider's callback that failed, with where the sign-in was going when that is known. A
/// browser (`Accept: text/html`) is sent back to the sign-in page, which says what happened and
/// offers to start again; any other client gets the JSON error.
#[derive(Debug)]
pub(super) struct CallbackFailed {
    pub error: ApiError,
    pub return_to: Option<String>,
}

impl From<ApiError> for CallbackFailed {
    fn from(error: ApiError) -> Self {
        Self {
            error,
            return_to: None,
        }
    }
}

impl CallbackFailed {
    pub(super) fn respond(self, state: &AppState, headers: &HeaderMap) -> Response {
        if !crate::web::wants_html(headers) {
            return self.error.into_response();
        }
        if let ApiError::Internal(detail) = &self.error {
            tracing::error!(%detail, "a sign-in callback failed");
        }
        let return_to = self.return_to.as_deref().unwrap_or("/");
        let url = format!(
            "/sign-in?failed={}&return_to={}",
            RedirectFailure::of(&self.error).as_str(),
            crate::web::encode(return_to)
        );
        // The sign-in is over either way: its state cookie goes.
        land(state, ().into_response(), &url)
    }
}

/// Checks a provider's callback: `state` present and the one this browser was given, a pending
/// sign-in under `key` not used yet (taken now, so it cannot be used again), no error from the
/// provider, a code. Returns the code and the sign-in.
pub(super) async fn finish_redirect(
    state: &AppState,
    key: &str,
    callback: CallbackQuery,
    headers: &HeaderMap,
) -> Result<(String, oidc::PendingLogin), CallbackFailed> {
    let Some(state_value) = callback.state else {
        return Err(ApiError::BadRequest {
            code: "bad_callback",
            message: "the callback needs code and state".into(),
        }
        .into());
    };
    if cookies::get(headers, cookies::OIDC_STATE) != Some(state_value.as_str()) {
        return Err(ApiError::Forbidden {
            code: "csrf_failed",
            message: "this sign-in was not started in this browser".into(),
        }
        .into());
    }
    let mut tx = state
        .db
        .begin(TenantContext::none())
        .await
        .map_err(ApiError::from)?;
    let login = oidc::take_login(tx.conn(), key, &state_value)
        .await
        .map_err(ApiError::from)?;
    tx.commit().await.map_err(ApiError::from)?;
    let login = login.ok_or_else(|| ApiError::BadRequest {
        code: "sign_in_expired",
        message: "this sign-in expired or was already used; start again".into(),
    })?;
    let failed = |error| CallbackFailed {
        error,
        return_to: Some(login.return_to.clone()),
    };
    if let Some(error) = callback.error {
        return Err(failed(if error == "access_denied" {
            unauthorized(
                "sign_in_cancelled",
                "the sign-in was cancelled at the identity provider",
            )
        } else {
            unauthorized(
                "sign_in_refused",
                format!("the identity provider answered {error:?}"),
            )
        }));
    }
    let Some(code) = callback.code else {
        return Err(failed(ApiError::BadRequest {
            code: "bad_callback",
            message: "the callback needs code and state".into(),
        }));
    };
    Ok((code, login))
}

/// Turns a session's answer into the redirect back into the app, ending the pending sign-in.
pub(super) fn land(state: &AppState, mut response: Response, return_to: &str) -> Response {
    *response.status_mut() = StatusCode::SEE_OTHER;
    response.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(return_to).unwrap_or(HeaderValue::from_static("/")),
    );
    response.headers_mut().append(
        header::SET_COOKIE,
        cookies::set(
            cookies::OIDC_STATE,
            "",
            "/auth",
            0,
            true,
            state.auth.settings.secure_cookies(),
        ),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::{safe_return_to, RedirectFailure};

    #[test]
    fn redirect_failures_read_back_from_their_names() {
        for failure in RedirectFailure::ALL {
            assert_eq!(RedirectFailure::parse(failure.as_str()), Some(failure));
        }
        assert_eq!(RedirectFailure::parse("<script>"), None);
    }

    #[test]
    fn return_paths_stay_on_this_site() {
        assert_eq!(
            safe_return_to(Some("/jobs?status=failed")),
            "/jobs?status=failed"
        );
        for bad in [
            "//evil.example",
            "/\t/evil.example",
            "/\\evil.example",
            "https://evil.example",
            "/a b",
            "/\n/x",
        ] {
            assert_eq!(safe_return_to(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(safe_return_to(None), "/");
    }
}
