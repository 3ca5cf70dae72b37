//! `GET /orgs/{org}/settings`, for admins (a 404 for everyone else, the URLs its forms post to
//! included): the org's liveness and retention settings, its members and invitations, and its
//! API tokens, each changed by a form that runs the API's own function (`http::orgs::
//! update_org_settings`, `add_org_member`, `change_member_role`, `remove_org_member`,
//! `cancel_member_invitation`, `create_api_token`, `revoke_api_token`: the same rules and audit
//! entries). A change that went through redirects back (`303`) to the page saying so; one the
//! API refuses is the page again, at the API's status, with its message beside the form as it
//! was sent. The audit log is a page of its own (`audit`).

mod audit;
mod members;
mod tokens;

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use chrono::Utc;
use maud::{html, Markup};
use serde::Deserialize;
use uuid::Uuid;

use super::page::{self, own_form, InOrg, PageError, Section};
use super::visitor::Visitor;
use crate::auth::tokens as api_tokens;
use crate::http::auth::OrgAccess;
use crate::http::orgs::{update_org_settings, CreatedToken};
use crate::http::{ApiError, AppState};
use crate::orgs::settings::{self as org_settings, OrgSettings, SettingsPatch};
use crate::orgs::{members as org_members, Role};

pub use audit::log;
pub use members::{add_member, cancel_invitation, change_role, remove_member};
pub use tokens::{create_token, revoke_token};

#[derive(Deserialize)]
pub struct SettingsQuery {
    /// What the form before the redirect did, for the page to say so. Each names what it
    /// changed, and the message is made from the org as it is now (a member "added" who is not
    /// there is not announced, a saved setting is shown with its value), so a crafted link
    /// cannot put words of its own on the page.
    saved: Option<String>,
    added: Option<String>,
    changed: Option<String>,
    removed: Option<String>,
    cancelled: Option<String>,
    revoked: Option<String>,
}

impl SettingsQuery {
    fn done(self) -> Option<Done> {
        let id = |value: Option<String>| value.and_then(|v| Uuid::parse_str(&v).ok());
        if self.saved.is_some() {
            return Some(Done::Saved);
        }
        self.added
            .map(Done::Added)
            .or_else(|| id(self.changed).map(Done::RoleChanged))
            .or_else(|| id(self.removed).map(Done::Removed))
            .or_else(|| self.cancelled.map(Done::Cancelled))
            .or_else(|| id(self.revoked).map(Done::Revoked))
    }
}

/// `GET /orgs/{org}/settings`.
pub async fn settings(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(slug): Path<String>,
    Query(query): Query<SettingsQuery>,
) -> Result<Response, PageError> {
    let outcome = query.done().map(Outcome::Done);
    render(&state, &visitor, &slug, StatusCode::OK, outcome).await
}

/// What the page says after a form, beside the part of the page it concerns.
enum Outcome {
    /// A change went through (said after the redirect).
    Done(Done),
    /// The API refused a change: its message, with the form as it was sent.
    Refused { sent: Sent, message: String },
    /// A new token, its secret shown this once: it is in no URL and no later page.
    Created(CreatedToken),
    /// The token form with this nonce was sent again (a reload): the token it names exists,
    /// nothing was created.
    AlreadyCreated { nonce: Uuid },
}

enum Done {
    Saved,
    Added(String),
    RoleChanged(Uuid),
    Removed(Uuid),
    Cancelled(String),
    Revoked(Uuid),
}

/// A form the API refused, as it was sent.
enum Sent {
    Settings(SettingsFields),
    NewMember {
        email: String,
        role: String,
    },
    /// A member's role change or removal, or an invitation's cancellation.
    Member,
    NewToken {
        name: String,
        kind: String,
    },
}

/// The access of an admin of the org `slug`; for anyone else the 404 page.
async fn admin(state: &AppState, visitor: &Visitor, slug: &str) -> Result<OrgAccess, PageError> {
    let access = OrgAccess::resolve(state, visitor.principal, slug).await?;
    access.require(Role::Admin)?;
    Ok(access)
}

/// The answer to a change the API refused: a client error is the settings page at its status,
/// with its message beside the form `sent` (and, for someone who is not an admin, the 404 page
/// as ever); anything else (a lost session, an unreachable database) is the error page.
async fn refused(
    state: &AppState,
    visitor: &Visitor,
    slug: &str,
    sent: Sent,
    error: ApiError,
) -> Result<Response, PageError> {
    let (status, _) = error.status_and_code();
    if !status.is_client_error() || status == StatusCode::UNAUTHORIZED {
        return Err(error.into());
    }
    let message = error.to_string();
    render(
        state,
        visitor,
        slug,
        status,
        Some(Outcome::Refused { sent, message }),
    )
    .await
}

/// Back to the settings page after a change: `query` says what changed, `part` is where. (Each
/// form's action carries its part's fragment too, so that a page answering it opens there.)
fn done(slug: &str, query: &str, part: &str) -> Response {
    Redirect::to(&format!("/orgs/{slug}/settings?{query}#{part}")).into_response()
}

async fn render(
    state: &AppState,
    visitor: &Visitor,
    slug: &str,
    status: StatusCode,
    outcome: Option<Outcome>,
) -> Result<Response, PageError> {
    let (access, mut tx) = OrgAccess::open(state, visitor.principal, slug).await?;
    access.require(Role::Admin)?;
    let settings = org_settings::get(tx.conn(), access.org.id).await?;
    let member_list = org_members::list(tx.conn(), access.org.id).await?;
    let invited = org_members::invitations(tx.conn(), access.org.id).await?;
    let token_list = api_tokens::list(tx.conn()).await?;
    tx.commit().await?;
    let role = access.role.unwrap_or(Role::Viewer);
    let slug = &access.org.slug;
    let now = Utc::now();
    let members = members::Members {
        slug,
        csrf: &visitor.csrf,
        role,
        me: visitor.principal.user_id(),
        members: &member_list,
        invited: &invited,
    };
    let content = html! {
        div.page-head {
            h1 { "Settings" }
            p { a.button.secondary href={ "/orgs/" (slug) "/settings/audit" } { "Audit log" } }
        }
        (liveness(slug, &visitor.csrf, &settings, outcome.as_ref()))
        (members.section(outcome.as_ref(), now))
        (tokens::section(state, &access.org, &visitor.csrf, &token_list, outcome.as_ref(), now))
    };
    let in_org = InOrg {
        org: &access.org,
        role,
        section: Section::Settings,
    };
    Ok(page::respond(
        status,
        page::app(visitor, Some(in_org), "Settings", content),
    ))
}

/// The settings form's values as shown: text, so that a value that is not a number comes back
/// as it was typed, beside the message.
struct SettingsFields {
    stale_after_s: String,
    offline_after_s: String,
    retention_days: String,
    payloads_visible_to_viewers: bool,
}

impl From<&OrgSettings> for SettingsFields {
    fn from(settings: &OrgSettings) -> Self {
        Self {
            stale_after_s: settings.stale_after_s.to_string(),
            offline_after_s: settings.offline_after_s.to_string(),
            retention_days: settings.retention_days.to_string(),
            payloads_visible_to_viewers: settings.payloads_visible_to_viewers,
        }
    }
}

impl SettingsFields {
    /// All four settings as the API's patch; a field that is not a whole number is a 400.
    fn patch(&self) -> Result<SettingsPatch, ApiError> {
        let number = |field: &str, value: &str| {
            value
                .trim()
                .parse::<u32>()
                .map(Some)
                .map_err(|_| ApiError::BadRequest {
                    code: "invalid_settings",
                    message: format!("{field} must be a whole number, not {value:?}"),
                })
        };
        Ok(SettingsPatch {
            stale_after_s: number("stale_after_s", &self.stale_after_s)?,
            offline_after_s: number("offline_after_s", &self.offline_after_s)?,
            retention_days: number("retention_days", &self.retention_days)?,
            payloads_visible_to_viewers: Some(self.payloads_visible_to_viewers),
        })
    }
}

/// The liveness thresholds, retention and payload rule, as a form.
fn liveness(slug: &str, csrf: &str, settings: &OrgSettings, outcome: Option<&Outcome>) -> Markup {
    let (fields, problem) = match outcome {
        Some(Outcome::Refused {
            sent: Sent::Settings(sent),
            message,
        }) => (sent, Some(message)),
        _ => (&SettingsFields::from(settings), None),
    };
    html! {
        h2 #liveness { "Liveness and retention" }
        @if let Some(Outcome::Done(Done::Saved)) = outcome {
            p.notice.info role="status" {
                "Saved. Machines and workers are stale after " (settings.stale_after_s)
                " s without a heartbeat and offline after " (settings.offline_after_s)
                " s; history is kept " (settings.retention_days) " days; viewers "
                @if settings.payloads_visible_to_viewers { "see" } @else { "do not see" }
                " job payloads and results."
            }
        }
        @if let Some(problem) = problem {
            p.notice.error #settings-problem role="alert" { "Not saved: " (problem) }
        }
        form.card.settings-form method="post" action={ "/orgs/" (slug) "/settings#liveness" }
            aria-label="Liveness and retention"
            aria-describedby=[problem.map(|_| "settings-problem")] {
            input type="hidden" name="csrf" value=(csrf);
            div.field {
                label for="stale-after" { "Stale after (seconds)" }
                input #stale-after type="number" name="stale_after_s" required min="5" max="86400"
                    value=(fields.stale_after_s) aria-describedby="stale-after-hint";
                p.hint #stale-after-hint { code { "stale_after_s" } ": a machine or worker silent this long is stale. 5 to 86400; agents send a heartbeat every 5 s." }
            }
            div.field {
                label for="offline-after" { "Offline after (seconds)" }
                input #offline-after type="number" name="offline_after_s" required min="6" max="604800"
                    value=(fields.offline_after_s) aria-describedby="offline-after-hint";
                p.hint #offline-after-hint { code { "offline_after_s" } ": … and this long, offline. More than stale, at most 604800 (7 days)." }
            }
            div.field {
                label for="retention-days" { "Keep history (days)" }
                input #retention-days type="number" name="retention_days" required min="1" max="3650"
                    value=(fields.retention_days) aria-describedby="retention-days-hint";
                p.hint #retention-days-hint { code { "retention_days" } ": events, metrics and finished jobs older than this are deleted. 1 to 3650." }
            }
            div.check.wide {
                input #payloads-visible type="checkbox" name="payloads_visible_to_viewers" value="on"
                    checked[fields.payloads_visible_to_viewers];
                label for="payloads-visible" { "Viewers and read tokens see job payloads and results" }
            }
            div.actions.wide { button type="submit" { "Save settings" } }
        }
    }
}

#[derive(Deserialize)]
pub struct SettingsForm {
    csrf: String,
    stale_after_s: String,
    offline_after_s: String,
    retention_days: String,
    /// A checkbox: sent only when ticked.
    payloads_visible_to_viewers: Option<String>,
}

/// `POST /orgs/{org}/settings`: the API's settings update with every field of the form.
pub async fn save(
    State(state): State<AppState>,
    visitor: Visitor,
    headers: HeaderMap,
    Path(slug): Path<String>,
    form: Result<Form<SettingsForm>, FormRejection>,
) -> Result<Response, PageError> {
    let form = own_form(&state, &headers, form, |f| f.csrf.as_str())?;
    let mut access = admin(&state, &visitor, &slug).await?;
    let fields = SettingsFields {
        stale_after_s: form.stale_after_s,
        offline_after_s: form.offline_after_s,
        retention_days: form.retention_days,
        payloads_visible_to_viewers: form.payloads_visible_to_viewers.is_some(),
    };
    let saved = match fields.patch() {
        Ok(patch) => update_org_settings(&state, &mut access, &patch).await,
        Err(error) => Err(error),
    };
    match saved {
        Ok(_) => Ok(done(&access.org.slug, "saved=1", "liveness")),
        Err(error) => refused(&state, &visitor, &slug, Sent::Settings(fields), error).await,
    }
}

#[derive(Deserialize)]
pub struct CsrfForm {
    csrf: String,
}
