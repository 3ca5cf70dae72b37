//! Signing in and out from the dashboard: the sign-in page, its form fallback for browsers
//! without JavaScript, sign-out, and `/auth/resume`, which renews an expired access token on the
//! way to a page.
//!
//! With JavaScript the sign-in form posts JSON to the API's endpoints (`/auth/local/sign-in`,
//! `/auth/stack/sign-in`). Without it the form posts to `/auth/form/sign-in`: a form can come from
//! any site, so that route takes only a request from fleetmon's own origin carrying the CSRF
//! token of the page (login CSRF), and then runs the very same sign-in.

use axum::extract::rejection::FormRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;

use super::page::{self, encode, foreign_form, form_is_ours, PageError};
use crate::http::auth::{ClientAddr, Principal};
use crate::http::signin::{
    clear_cookies, end_session, local_password_sign_in, renew, safe_return_to, sign_in_options,
    PasswordSignIn, RedirectFailure, Renewal,
};
use crate::http::stack_signin::stack_password_sign_in;
use crate::http::{cookies, ApiError, AppState};

/// How long the CSRF cookie the sign-in page sets lives before a session replaces it.
const SIGN_IN_CSRF_MAX_AGE: i64 = 86_400;

#[derive(Deserialize)]
pub struct SignInQuery {
    return_to: Option<String>,
    /// Set when `/auth/resume` found the session revoked or expired.
    ended: Option<String>,
    signed_out: Option<String>,
    /// Set when a sign-in through a provider came back failed (`RedirectFailure`).
    failed: Option<String>,
}

/// What the sign-in page says above its forms.
enum Notice {
    Info(&'static str),
    Error(String),
}

/// The page's texts for each outcome of a sign-in; the script reads them from the message box.
const INVALID_CREDENTIALS: &str = "Wrong email or password.";
const TOO_MANY: &str = "Too many failed sign-ins. Try again in {wait}.";
const REFUSED: &str =
    "This sign-in must come from fleetmon's own page. Reload the page and try again.";
const OFF: &str = "This way of signing in is turned off here.";
const UNAVAILABLE: &str = "The identity provider cannot be reached right now. Try again shortly.";
pub const UNREACHABLE: &str = "fleetmon cannot be reached. Check your connection and try again.";
const FAILED: &str = "Sign-in failed. Try again.";

/// What the page says when a sign-in through a provider came back failed.
fn redirect_failure_text(failure: RedirectFailure) -> &'static str {
    match failure {
        RedirectFailure::Cancelled => {
            "The sign-in was cancelled at the identity provider. You are not signed in."
        }
        RedirectFailure::Expired => "That sign-in expired or was already used. Start it again.",
        RedirectFailure::OtherBrowser => {
            "That sign-in was started in another browser or tab. Start it again here."
        }
        RedirectFailure::Refused => "The identity provider did not sign you in.",
        RedirectFailure::ProviderFailed => UNAVAILABLE,
        RedirectFailure::Failed => FAILED,
    }
}

/// A Stack OAuth provider id as people know it: `github` → GitHub.
fn oauth_provider_name(id: &str) -> String {
    let known = [
        ("github", "GitHub"),
        ("gitlab", "GitLab"),
        ("google", "Google"),
        ("microsoft", "Microsoft"),
        ("linkedin", "LinkedIn"),
        ("x", "X"),
    ];
    match known.iter().find(|(k, _)| *k == id) {
        Some((_, name)) => (*name).to_string(),
        None => {
            let mut chars = id.chars();
            chars
                .next()
                .map(|first| first.to_uppercase().chain(chars).collect())
                .unwrap_or_default()
        }
    }
}

/// "15 minutes", "40 seconds": how long to wait, from a `Retry-After` in seconds.
fn wait(seconds: u64) -> String {
    match seconds.max(1) {
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        s => match s.div_ceil(60) {
            1 => "1 minute".into(),
            m => format!("{m} minutes"),
        },
    }
}

fn failure_text(error: &ApiError) -> String {
    match error {
        ApiError::Unauthorized { .. } => INVALID_CREDENTIALS.into(),
        ApiError::TooManyRequests { retry_after, .. } => {
            TOO_MANY.replace("{wait}", &wait(*retry_after))
        }
        ApiError::Forbidden { .. } => REFUSED.into(),
        ApiError::NotFound { .. } => OFF.into(),
        ApiError::Unavailable { .. } | ApiError::BadGateway { .. } => UNAVAILABLE.into(),
        _ => FAILED.into(),
    }
}

/// The CSRF token for the page's forms, masked: the browser's, or a new one with its cookie.
fn csrf_token(state: &AppState, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    match cookies::get(headers, cookies::CSRF) {
        Some(token) if !token.is_empty() => (page::masked_csrf(token), None),
        _ => {
            let token = crate::auth::random_base62(32);
            let cookie = cookies::set(
                cookies::CSRF,
                &token,
                "/",
                SIGN_IN_CSRF_MAX_AGE,
                false,
                state.auth.settings.secure_cookies(),
            );
            (page::masked_csrf(&token), Some(cookie))
        }
    }
}

struct SignInPage<'a> {
    return_to: &'a str,
    notice: Option<Notice>,
    email: &'a str,
}

fn render(state: &AppState, csrf: &str, view: SignInPage<'_>) -> Markup {
    let options = sign_in_options(state);
    let password_forms: Vec<(&str, &str, &str)> = options
        .iter()
        .filter_map(|o| match o.kind {
            "local" => Some(("local", "/auth/local/sign-in", "")),
            "stack" => Some(("stack", "/auth/stack/sign-in", "Stack Auth account")),
            _ => None,
        })
        .collect();
    // Buttons that go to a provider: each OIDC provider with a client id, and each OAuth
    // provider enabled on the Stack project (through Stack).
    let mut redirects: Vec<(String, String)> = options
        .iter()
        .filter(|o| o.kind == "oidc" && o.browser_sign_in)
        .map(|o| {
            let start = format!("/auth/oidc/{}/start", encode(&o.name));
            (start, o.display_name.clone())
        })
        .collect();
    if let Some(stack) = &state.auth.stack {
        for id in &stack.settings().oauth_providers {
            let start = format!("/auth/stack/oauth/{}/start", encode(id));
            redirects.push((start, oauth_provider_name(id)));
        }
    }
    let (notice_class, notice_text) = match &view.notice {
        Some(Notice::Info(text)) => ("notice info", text.to_string()),
        Some(Notice::Error(text)) => ("notice error", text.clone()),
        None => ("notice", String::new()),
    };
    page::plain(
        "Sign in",
        html! {
            div.card {
                h1 { "Sign in to fleetmon" }
                p #sign-in-message .(notice_class) role="alert" aria-live="polite"
                    data-invalid-credentials=(INVALID_CREDENTIALS) data-too-many=(TOO_MANY)
                    data-refused=(REFUSED) data-off=(OFF) data-unavailable=(UNAVAILABLE)
                    data-unreachable=(UNREACHABLE) data-failed=(FAILED) { (notice_text) }
                @for (index, (provider, endpoint, heading)) in password_forms.iter().enumerate() {
                    @if index > 0 { p.or { "or" } }
                    @if !heading.is_empty() { h2 { (heading) } }
                    form method="post" action="/auth/form/sign-in" data-sign-in=(endpoint)
                        data-messages="sign-in-message" {
                        input type="hidden" name="provider" value=(provider);
                        input type="hidden" name="csrf" value=(csrf);
                        input type="hidden" name="return_to" value=(view.return_to);
                        label for={ (provider) "-email" } { "Email" }
                        input #{ (provider) "-email" } type="email" name="email" required
                            autocomplete="username" value=(view.email);
                        label for={ (provider) "-password" } { "Password" }
                        input #{ (provider) "-password" } type="password" name="password" required
                            autocomplete="current-password";
                        div.actions { button type="submit" { "Sign in" } }
                    }
                }
                @if !redirects.is_empty() {
                    @if !password_forms.is_empty() { p.or { "or" } }
                    div.providers {
                        @for (start, name) in &redirects {
                            a.button.secondary href={ (start) "?return_to=" (encode(view.return_to)) } {
                                "Sign in with " (name)
                            }
                        }
                    }
                }
                @if password_forms.is_empty() && redirects.is_empty() {
                    p { "No way of signing in through a browser is configured on this server." }
                }
            }
        },
    )
}

fn with_cookie(mut response: Response, cookie: Option<HeaderValue>) -> Response {
    if let Some(cookie) = cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// `GET /sign-in`.
pub async fn sign_in_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<SignInQuery>,
    signed_in: Result<Principal, ApiError>,
) -> Response {
    let return_to = safe_return_to(query.return_to.as_deref());
    if matches!(signed_in, Ok(Principal::User { .. })) {
        return Redirect::to(&return_to).into_response();
    }
    let notice = if query.ended.is_some() {
        Some(Notice::Info(
            "Your session has ended. Sign in again to continue.",
        ))
    } else if query.signed_out.is_some() {
        Some(Notice::Info("You have signed out."))
    } else {
        query
            .failed
            .as_deref()
            .map(|reason| RedirectFailure::parse(reason).unwrap_or(RedirectFailure::Failed))
            .map(|failure| Notice::Error(redirect_failure_text(failure).to_string()))
    };
    let (csrf, cookie) = csrf_token(&state, &headers);
    let view = SignInPage {
        return_to: &return_to,
        notice,
        email: "",
    };
    with_cookie(
        page::respond(StatusCode::OK, render(&state, &csrf, view)),
        cookie,
    )
}

#[derive(Deserialize)]
pub struct SignInForm {
    provider: String,
    email: String,
    password: String,
    csrf: String,
    return_to: Option<String>,
}

/// `POST /auth/form/sign-in`: the sign-in form without JavaScript.
pub async fn form_sign_in(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    form: Result<Form<SignInForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return PageError::Failed(ApiError::BadRequest {
            code: "invalid_form",
            message: "the sign-in form was incomplete".into(),
        })
        .into_response();
    };
    let return_to = safe_return_to(form.return_to.as_deref());
    let body = PasswordSignIn {
        email: form.email,
        password: form.password,
    };
    let outcome = if !form_is_ours(&state, &headers, &form.csrf) {
        Err(ApiError::Forbidden {
            code: "csrf_failed",
            message: REFUSED.into(),
        })
    } else {
        match form.provider.as_str() {
            "local" => local_password_sign_in(&state, addr, &headers, &body).await,
            "stack" => stack_password_sign_in(&state, addr, &headers, &body).await,
            _ => Err(ApiError::NotFound {
                message: OFF.into(),
            }),
        }
    };
    match outcome {
        Ok(session) => {
            // The session's cookies, on the way to where the visitor was going.
            let mut response = Redirect::to(&return_to).into_response();
            for cookie in session.headers().get_all(header::SET_COOKIE) {
                response
                    .headers_mut()
                    .append(header::SET_COOKIE, cookie.clone());
            }
            response
        }
        Err(error) => {
            let (status, _) = error.status_and_code();
            let (csrf, cookie) = csrf_token(&state, &headers);
            let view = SignInPage {
                return_to: &return_to,
                notice: Some(Notice::Error(failure_text(&error))),
                email: &body.email,
            };
            let mut response = page::respond(status, render(&state, &csrf, view));
            if let ApiError::TooManyRequests { retry_after, .. } = error {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            }
            with_cookie(response, cookie)
        }
    }
}

#[derive(Deserialize)]
pub struct SignOutForm {
    csrf: String,
}

/// `POST /auth/form/sign-out`: revokes the session (under `/auth`, where its refresh cookie is
/// sent) and goes to the sign-in page.
pub async fn form_sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<SignOutForm>, FormRejection>,
) -> Response {
    // Without a session cookie there is nothing to end (it may have ended in another tab).
    if cookies::get(&headers, cookies::REFRESH).is_some() {
        let ours = form.is_ok_and(|Form(form)| form_is_ours(&state, &headers, &form.csrf));
        if !ours {
            return foreign_form().into_response();
        }
        if let Err(error) = end_session(&state, &headers).await {
            return PageError::from(error).into_response();
        }
    }
    let mut response = Redirect::to("/sign-in?signed_out=1").into_response();
    clear_cookies(&mut response, state.auth.settings.secure_cookies());
    response
}

#[derive(Deserialize)]
pub struct ResumeQuery {
    return_to: Option<String>,
}

/// `GET /auth/resume?return_to=`: a new access token from the session's refresh cookie, then back
/// to the page; without a live session, on to the sign-in page. Anyone can send a browser here,
/// but all it does is renew that browser's own session.
pub async fn resume(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<ResumeQuery>,
) -> Response {
    let return_to = safe_return_to(query.return_to.as_deref());
    match renew(&state, &headers).await {
        Ok(Renewal::Renewed { cookie, .. }) => {
            with_cookie(Redirect::to(&return_to).into_response(), Some(cookie))
        }
        Ok(Renewal::NoSession) => {
            Redirect::to(&format!("/sign-in?return_to={}", encode(&return_to))).into_response()
        }
        Ok(Renewal::Ended) => {
            let mut response = Redirect::to(&format!(
                "/sign-in?ended=1&return_to={}",
                encode(&return_to)
            ))
            .into_response();
            clear_cookies(&mut response, state.auth.settings.secure_cookies());
            response
        }
        Err(error) => PageError::from(error).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::{oauth_provider_name, wait};

    #[test]
    fn waits_read_in_seconds_or_whole_minutes() {
        assert_eq!(wait(0), "1 second");
        assert_eq!(wait(40), "40 seconds");
        assert_eq!(wait(60), "1 minute");
        assert_eq!(wait(61), "2 minutes");
        assert_eq!(wait(900), "15 minutes");
    }

    #[test]
    fn oauth_providers_are_named_as_people_know_them() {
        assert_eq!(oauth_provider_name("github"), "GitHub");
        assert_eq!(oauth_provider_name("google"), "Google");
        assert_eq!(oauth_provider_name("discord"), "Discord");
    }
}
