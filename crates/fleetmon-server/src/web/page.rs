//! What every page shares: the document shell, the security headers, the signed-in chrome (org
//! switcher, navigation, sign-out) and the error pages.

use axum::extract::rejection::FormRejection;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use chrono::{DateTime, NaiveDateTime, Utc};
use maud::{html, Markup, DOCTYPE};

use super::assets::{CSS, ICON, JS};
use super::visitor::Visitor;
use crate::http::auth::csrf_matches;
use crate::http::signin::from_our_origin;
use crate::http::{ApiError, AppState};
use crate::orgs::{Org, Role};

/// Only fleetmon's own files; no inline script or style, no other site, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; \
     frame-ancestors 'none'";

/// An HTML response with the security headers every page carries. Pages hold an org's data:
/// nothing may store them (`no-store` also keeps them out of the back button after sign-out).
pub fn respond(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        ),
        (
            HeaderName::from_static("permissions-policy"),
            HeaderValue::from_static("camera=(), microphone=(), geolocation=(), usb=()"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ] {
        headers.insert(name, value);
    }
    response
}

/// The HTML document around a page's body.
pub fn document(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · fleetmon" }
                link rel="icon" type="image/svg+xml" href=(ICON.path);
                link rel="stylesheet" href=(CSS.path);
                script src=(JS.path) defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                (body)
            }
        }
    }
}

fn brand() -> Markup {
    html! {
        a.brand href="/" {
            img src=(ICON.path) alt="" width="26" height="26";
            "fleetmon"
        }
    }
}

/// The part of an org a page shows, for the navigation's current item.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Overview,
    Jobs,
    Machines,
    Metrics,
    Settings,
}

/// The org a page belongs to, and what the visitor may do there.
pub struct InOrg<'a> {
    pub org: &'a Org,
    pub role: Role,
    pub section: Section,
}

/// A signed-in page: the top bar (org switcher, the org's navigation, who is signed in and
/// sign-out) around `content`.
pub fn app(visitor: &Visitor, in_org: Option<InOrg<'_>>, title: &str, content: Markup) -> Markup {
    let current = in_org.as_ref().map(|o| o.org.slug.as_str());
    let body = html! {
        header.topbar {
            (brand())
            @if !visitor.orgs.is_empty() {
                details.switcher {
                    summary aria-label="Switch organization" {
                        @match &in_org { Some(o) => (o.org.name), None => "Organizations" }
                    }
                    ul {
                        @for org in &visitor.orgs {
                            li {
                                a href={ "/orgs/" (org.slug) }
                                    aria-current=[(current == Some(org.slug.as_str())).then_some("true")] {
                                    span { (org.name) }
                                    span.muted { (org.role) }
                                }
                            }
                        }
                        li { a href="/orgs" { "All organizations" } }
                    }
                }
            }
            @if let Some(o) = &in_org {
                nav aria-label="Organization" {
                    ul {
                        (nav_item(o, Section::Overview, "", "Overview"))
                        (nav_item(o, Section::Jobs, "/jobs", "Jobs"))
                        (nav_item(o, Section::Machines, "/machines", "Machines"))
                        (nav_item(o, Section::Metrics, "/metrics", "Metrics"))
                        @if o.role >= Role::Admin {
                            (nav_item(o, Section::Settings, "/settings", "Settings"))
                        }
                    }
                }
            }
            div.spacer {}
            div.who {
                span { (visitor.user.email.as_deref().unwrap_or("signed in")) }
                form method="post" action="/auth/form/sign-out" {
                    input type="hidden" name="csrf" value=(visitor.csrf);
                    button.secondary type="submit" { "Sign out" }
                }
            }
        }
        main #main { (content) }
    };
    document(title, body)
}

fn nav_item(in_org: &InOrg<'_>, section: Section, path: &str, label: &str) -> Markup {
    html! {
        li {
            a href={ "/orgs/" (in_org.org.slug) (path) }
                aria-current=[(in_org.section == section).then_some("page")] { (label) }
        }
    }
}

/// A page outside the signed-in chrome (sign-in, errors).
pub fn plain(title: &str, content: Markup) -> Markup {
    document(
        title,
        html! {
            header.topbar { (brand()) }
            main #main .narrow { (content) }
        },
    )
}

/// The same page for a path that does not exist and for an org (or anything in it) the visitor
/// may not see: it never tells one from the other.
pub fn not_found() -> Response {
    respond(
        StatusCode::NOT_FOUND,
        plain(
            "Not found",
            html! {
                div.card {
                    h1 { "Page not found" }
                    p { "There is nothing here, or you do not have access to it." }
                    p.actions { a.button href="/" { "Go to your organizations" } }
                }
            },
        ),
    )
}

/// Why a page could not be shown.
#[derive(Debug)]
pub enum PageError {
    NotFound,
    Failed(ApiError),
}

impl From<ApiError> for PageError {
    fn from(error: ApiError) -> Self {
        match error {
            // A page the visitor's role does not reach is not there for them: admin URLs are
            // 404s for viewers, as another org's are.
            ApiError::NotFound { .. }
            | ApiError::Forbidden {
                code: "insufficient_role",
                ..
            } => Self::NotFound,
            other => Self::Failed(other),
        }
    }
}

impl From<crate::db::DbError> for PageError {
    fn from(error: crate::db::DbError) -> Self {
        Self::Failed(error.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            Self::NotFound => not_found(),
            Self::Failed(error) => error_page(&error),
        }
    }
}

fn error_page(error: &ApiError) -> Response {
    let (status, _) = error.status_and_code();
    if let ApiError::Internal(detail) = error {
        tracing::error!(%detail, "page failed");
    }
    let (title, text) = match status {
        StatusCode::SERVICE_UNAVAILABLE => (
            "fleetmon is busy",
            "fleetmon cannot reach its database or identity provider right now. Reload in a moment.".to_string(),
        ),
        StatusCode::UNAUTHORIZED => (
            "Sign in again",
            "Your session has ended. Sign in again to continue.".to_string(),
        ),
        StatusCode::FORBIDDEN => (
            "Not allowed",
            "This form must be sent from fleetmon's own page. Go back, reload the page and try again."
                .to_string(),
        ),
        StatusCode::BAD_GATEWAY => (
            "The identity provider failed",
            "The identity provider answered with an error. Try again shortly.".to_string(),
        ),
        s if s.is_client_error() => ("That did not work", error.to_string()),
        _ => (
            "Something went wrong",
            "fleetmon could not show this page. The error has been logged; reload to try again."
                .to_string(),
        ),
    };
    let mut response = respond(
        status,
        plain(
            title,
            html! {
                div.card {
                    h1 { (title) }
                    p { (text) }
                    p.actions {
                        @if status == StatusCode::UNAUTHORIZED {
                            a.button href="/sign-in" { "Sign in" }
                        } @else {
                            a.button href="/" { "Go to your organizations" }
                        }
                    }
                }
            },
        ),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// A form of fleetmon's own pages: sent from its own origin (browsers send `Origin` with every
/// form POST) with the CSRF token the page put in it (masked, see [`masked_csrf`], or as is).
pub fn form_is_ours(state: &AppState, headers: &HeaderMap, csrf: &str) -> bool {
    let token = unmasked_csrf(csrf);
    from_our_origin(state, headers, false)
        && (csrf_matches(headers, Some(csrf)) || csrf_matches(headers, token.as_deref()))
}

/// The CSRF token as a page carries it: a fresh random pad, then the token XORed with it, both
/// in hex. The token stays the same for the whole session, and pages are compressed together
/// with text a visitor's query can put in them (a search, a filter), so unmasked it could be
/// guessed byte by byte from response sizes (BREACH); masked, no two pages carry the same bytes.
pub fn masked_csrf(token: &str) -> String {
    let mut pad = vec![0u8; token.len()];
    getrandom::fill(&mut pad).expect("the operating system's random source");
    let masked = token.bytes().zip(&pad).map(|(t, p)| t ^ p);
    pad.iter()
        .copied()
        .chain(masked)
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The token in a [`masked_csrf`] value, or `None` when `sent` is not one.
fn unmasked_csrf(sent: &str) -> Option<String> {
    if sent.is_empty() || !sent.is_ascii() || !sent.len().is_multiple_of(4) {
        return None;
    }
    let bytes = (0..sent.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&sent[i..i + 2], 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    let (pad, masked) = bytes.split_at(bytes.len() / 2);
    String::from_utf8(pad.iter().zip(masked).map(|(p, m)| p ^ m).collect()).ok()
}

/// The refusal of a form that is not [`form_is_ours`].
pub fn foreign_form() -> PageError {
    PageError::Failed(ApiError::Forbidden {
        code: "csrf_failed",
        message: "this form was not sent from fleetmon's own page".into(),
    })
}

/// The fields of a form of fleetmon's own pages, whose `csrf` field is the one
/// [`form_is_ours`] checks; anything else (a form that is not ours, or not the form the page
/// sends) is [`foreign_form`]'s refusal.
pub fn own_form<T>(
    state: &AppState,
    headers: &HeaderMap,
    form: Result<Form<T>, FormRejection>,
    csrf: fn(&T) -> &str,
) -> Result<T, PageError> {
    match form {
        Ok(Form(form)) if form_is_ours(state, headers, csrf(&form)) => Ok(form),
        _ => Err(foreign_form()),
    }
}

/// A query value, percent-encoded (everything but unreserved characters).
pub fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The way back from a detail page: `Jobs / j-42`, the first part linking to `/orgs/{slug}{path}`.
pub fn crumbs(slug: &str, path: &str, label: &str, here: &str) -> Markup {
    html! {
        nav.crumbs aria-label="Breadcrumb" {
            a href={ "/orgs/" (slug) (path) } { (label) } " / " span.mono { (here) }
        }
    }
}

/// The page of job `id` in the org `slug`.
pub fn job_path(slug: &str, id: &str) -> String {
    format!("/orgs/{slug}/jobs/{}", encode(id))
}

/// The page of machine `id` in the org `slug`.
pub fn machine_path(slug: &str, id: &str) -> String {
    format!("/orgs/{slug}/machines/{}", encode(id))
}

/// The time ranges the pages' range selectors offer (a `range` parameter; any `<n>s|m|h|d`
/// works in the URL).
pub const RANGES: &[(&str, &str)] = &[
    ("1h", "Last hour"),
    ("24h", "Last 24 hours"),
    ("7d", "Last 7 days"),
    ("30d", "Last 30 days"),
];

/// A time as the form's `datetime-local` fields send it (`2026-01-31T08:00`, read as UTC) in RFC
/// 3339; anything else as it is, for the API's check to judge.
pub fn rfc3339(value: &str) -> String {
    ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(value, format).ok())
        .map_or_else(|| value.to_string(), |t| t.and_utc().to_rfc3339())
}

/// A `datetime-local` field's value for a parameter the URL carries (RFC 3339 shown in UTC).
pub fn local_value(value: &str) -> String {
    DateTime::parse_from_rfc3339(value).map_or_else(
        |_| value.to_string(),
        |t| t.with_timezone(&Utc).format("%Y-%m-%dT%H:%M").to_string(),
    )
}

/// A duration in milliseconds as people read it: `850 ms`, `6.5 s`, `12 min 5 s`, `3 h 20 min`.
pub fn duration(ms: i64) -> String {
    let seconds = ms / 1000;
    match ms {
        ..=999 => format!("{ms} ms"),
        1000..=59_999 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{} min {} s", seconds / 60, seconds % 60),
        _ => format!("{} h {} min", seconds / 3600, seconds % 3600 / 60),
    }
}

/// A time in full, in UTC, with the machine-readable value.
pub fn at(time: DateTime<Utc>) -> Markup {
    html! {
        time datetime=(time.to_rfc3339()) { (time.format("%Y-%m-%d %H:%M:%S%.3f UTC")) }
    }
}

/// `<time>` saying how long ago `at` was, with the exact time on hover.
pub fn ago(at: DateTime<Utc>, now: DateTime<Utc>) -> Markup {
    let seconds = (now - at).num_seconds().max(0);
    let text = match seconds {
        0..=4 => "just now".to_string(),
        5..=119 => format!("{seconds} s ago"),
        120..=7199 => format!("{} min ago", seconds / 60),
        7200..=172_799 => format!("{} h ago", seconds / 3600),
        _ => format!("{} days ago", seconds / 86_400),
    };
    html! {
        time datetime=(at.to_rfc3339()) title=(at.format("%Y-%m-%d %H:%M:%S UTC")) { (text) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_masked_csrf_token_differs_every_time_and_unmasks_to_the_token() {
        let token = "aZ09bY18cX27dW36eV45fU54gT63hS72";
        let (one, two) = (masked_csrf(token), masked_csrf(token));
        assert_ne!(one, two);
        assert!(!one.contains(token));
        assert_eq!(unmasked_csrf(&one).as_deref(), Some(token));
        assert_eq!(unmasked_csrf(&two).as_deref(), Some(token));
        for not_masked in [token, "", "zz", "abc", "0g0g", "é"] {
            assert_eq!(unmasked_csrf(not_masked), None, "{not_masked:?}");
        }
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            encode("/orgs/a b?x=1&y=ü"),
            "%2Forgs%2Fa%20b%3Fx%3D1%26y%3D%C3%BC"
        );
        assert_eq!(encode("plain-text_1.2~"), "plain-text_1.2~");
    }

    #[test]
    fn form_times_are_utc_and_other_text_is_left_to_the_api() {
        assert_eq!(rfc3339("2026-01-31T08:00"), "2026-01-31T08:00:00+00:00");
        assert_eq!(rfc3339("2026-01-31T08:00:30"), "2026-01-31T08:00:30+00:00");
        assert_eq!(rfc3339("2026-01-31T08:00:00Z"), "2026-01-31T08:00:00Z");
        assert_eq!(rfc3339("yesterday"), "yesterday");
        assert_eq!(local_value("2026-01-31T09:00:00+01:00"), "2026-01-31T08:00");
    }

    #[test]
    fn durations_read_in_the_largest_fitting_unit() {
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(6500), "6.5 s");
        assert_eq!(duration(725_000), "12 min 5 s");
        assert_eq!(duration(12_000_000), "3 h 20 min");
    }

    #[test]
    fn times_read_as_how_long_ago() {
        let now = Utc::now();
        let text = |seconds| ago(now - chrono::Duration::seconds(seconds), now).into_string();
        assert!(text(2).contains(">just now<"));
        assert!(text(42).contains(">42 s ago<"));
        assert!(text(600).contains(">10 min ago<"));
        assert!(text(3 * 3600).contains(">3 h ago<"));
        assert!(text(3 * 86_400).contains(">3 days ago<"));
    }
}
