//! The settings page's API tokens: the list, the form that creates one (`POST …/settings/tokens`,
//! answered with the page showing the secret once) and the one that revokes one (`POST …/
//! settings/tokens/{id}/revoke`), running the API's `create_api_token` and `revoke_api_token`.
//!
//! The creation form carries a one-time nonce, and the token it creates takes the id derived
//! from it (`auth::tokens::id_for_form`): reloading the answer — which sends the form again —
//! names a token that exists, so it creates nothing (409) and says the token was created
//! already. The secret is never in a URL, so it cannot be in history or a later page.

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use chrono::{DateTime, Utc};
use maud::{html, Markup};
use serde::Deserialize;
use uuid::Uuid;

use super::{done, refused, render, CsrfForm, Done, Outcome, Sent};
use crate::auth::tokens::{self, TokenInfo};
use crate::http::orgs::{create_api_token, revoke_api_token, CreatedToken};
use crate::http::{ApiError, AppState};
use crate::orgs::Org;
use crate::web::page::{ago, own_form, PageError};
use crate::web::visitor::Visitor;

pub(super) fn section(
    state: &AppState,
    org: &Org,
    csrf: &str,
    token_list: &[TokenInfo],
    outcome: Option<&Outcome>,
    now: DateTime<Utc>,
) -> Markup {
    let slug = org.slug.as_str();
    let name_of = |id: Uuid| {
        token_list
            .iter()
            .find(|t| t.id == id)
            .map_or("The token", |t| t.name.as_str())
    };
    let (draft_name, draft_kind, problem) = match outcome {
        Some(Outcome::Refused {
            sent: Sent::NewToken { name, kind },
            message,
        }) => (name.as_str(), kind.as_str(), Some(message)),
        _ => ("", "ingest", None),
    };
    html! {
        h2 #tokens { "API tokens" }
        @match outcome {
            Some(Outcome::Created(created)) => (shown_once(state, slug, created)),
            Some(Outcome::AlreadyCreated { nonce }) => {
                @let id = tokens::id_for_form(org.id, *nonce);
                @let created = token_list.iter().find(|t| t.id == id);
                p.notice.info #token-exists role="status" {
                    "This form was sent again, so nothing was created: token "
                    strong { (name_of(id)) } " was created by it "
                    @if let Some(token) = created { (ago(token.created_at, now)) }
                    ". Its secret was shown then and is not shown again; if it was not copied, revoke the token and create another."
                }
            }
            Some(Outcome::Done(Done::Revoked(id))) => {
                p.notice.info role="status" { "Token " strong { (name_of(*id)) } " was revoked: it is refused from now on." }
            }
            _ => {}
        }
        @if let Some(problem) = problem {
            p.notice.error #token-problem role="alert" { "No token created: " (problem) }
        }
        (create_form(slug, csrf, draft_name, draft_kind))
        @if token_list.is_empty() {
            p { "No tokens yet. Agents need an ingest token; scripts reading the API need a read token." }
        } @else {
            div.table-wrap {
                table {
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Kind" } th scope="col" { "Starts with" } th scope="col" { "Created" } th scope="col" { "Last used" } th scope="col" { "State" } th scope="col" { span.visually-hidden { "Actions" } } } }
                    tbody {
                        @for token in token_list {
                            tr data-token=(token.id) {
                                td { (token.name) }
                                td { (token.kind) }
                                td.mono { (token.prefix) "…" }
                                td { (ago(token.created_at, now)) }
                                td { @match token.last_used_at { Some(at) => (ago(at, now)), None => "never" } }
                                td {
                                    @if token.revoked_at.is_some() { span.badge.offline { "revoked" } }
                                    @else { span.badge.online { "active" } }
                                }
                                td {
                                    @if token.revoked_at.is_none() {
                                        form method="post" action={ "/orgs/" (slug) "/settings/tokens/" (token.id) "/revoke" } {
                                            input type="hidden" name="csrf" value=(csrf);
                                            button.secondary type="submit" aria-label={ "Revoke " (token.name) } { "Revoke" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The creation form, with a nonce of its own: every page that shows it can create one token.
fn create_form(slug: &str, csrf: &str, name: &str, kind: &str) -> Markup {
    html! {
        form.card.inline-form method="post" action={ "/orgs/" (slug) "/settings/tokens#tokens" } aria-label="Create a token" {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="nonce" value=(Uuid::new_v4());
            div.field {
                label for="token-name" { "Name" }
                input #token-name type="text" name="name" required maxlength="200" value=(name) placeholder="agents on rack 4";
            }
            div.field {
                label for="token-kind" { "Kind" }
                select #token-kind name="kind" {
                    option value="ingest" selected[kind != "read"] { "ingest — agents send events" }
                    option value="read" selected[kind == "read"] { "read — scripts read the API" }
                }
            }
            div.actions { button type="submit" { "Create token" } }
        }
    }
}

/// The new token's secret, this once, with a copy button (the script shows it) and the command
/// that uses it against this server.
fn shown_once(state: &AppState, slug: &str, created: &CreatedToken) -> Markup {
    let public_url = &state.auth.settings.public_url;
    html! {
        section.card.notice.info aria-labelledby="created-title" role="status" {
            h3 #created-title { "Token " (created.name) " created" }
            p { "Copy its secret now: fleetmon keeps only a hash and will not show it again." }
            div.secret {
                code #token-secret .mono { (created.secret) }
                button.secondary type="button" data-copy="token-secret" hidden { "Copy" }
            }
            @if created.kind == "ingest" {
                p { "Send events with it — a simulated fleet, or your agents with this token:" }
                pre { code #token-command { "fleetmon simulate --url " (public_url) " --token " (created.secret) } }
            } @else {
                p { "Read the org's live stream (or any read endpoint) with it:" }
                pre { code #token-command { "curl -N -H \"Authorization: Bearer " (created.secret) "\" " (public_url) "/api/v1/orgs/" (slug) "/stream" } }
            }
        }
    }
}

#[derive(Deserialize)]
pub struct CreateForm {
    csrf: String,
    /// The form's one-time nonce: the same form sent twice creates one token.
    nonce: Uuid,
    name: String,
    kind: String,
}

/// `POST /orgs/{org}/settings/tokens`: the API's creation, then the settings page with the
/// secret shown once (no redirect: the secret must not travel in a URL).
pub async fn create_token(
    State(state): State<AppState>,
    visitor: Visitor,
    headers: HeaderMap,
    Path(slug): Path<String>,
    form: Result<Form<CreateForm>, FormRejection>,
) -> Result<Response, PageError> {
    let form = own_form(&state, &headers, form, |f| f.csrf.as_str())?;
    let created = create_api_token(
        &state,
        visitor.principal,
        &slug,
        &form.kind,
        &form.name,
        Some(form.nonce),
    )
    .await;
    match created {
        Ok(created) => {
            let outcome = Outcome::Created(created);
            render(&state, &visitor, &slug, StatusCode::OK, Some(outcome)).await
        }
        Err(ApiError::Conflict {
            code: "token_exists",
            ..
        }) => {
            let outcome = Outcome::AlreadyCreated { nonce: form.nonce };
            render(&state, &visitor, &slug, StatusCode::CONFLICT, Some(outcome)).await
        }
        // A viewer's or member's creation is the 404 page: `render` shows them no settings.
        Err(error) => {
            let sent = Sent::NewToken {
                name: form.name,
                kind: form.kind,
            };
            refused(&state, &visitor, &slug, sent, error).await
        }
    }
}

/// `POST /orgs/{org}/settings/tokens/{id}/revoke`: the API's revocation, then the settings page
/// saying so.
pub async fn revoke_token(
    State(state): State<AppState>,
    visitor: Visitor,
    headers: HeaderMap,
    Path((slug, id)): Path<(String, String)>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, PageError> {
    own_form(&state, &headers, form, |f| f.csrf.as_str())?;
    // Not a token id: no such token, like an id of another org's.
    let id = Uuid::parse_str(&id).map_err(|_| PageError::NotFound)?;
    revoke_api_token(&state, visitor.principal, &slug, id).await?;
    Ok(done(&slug, &format!("revoked={id}"), "tokens"))
}
