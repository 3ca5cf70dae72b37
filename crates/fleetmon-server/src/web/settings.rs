//! `GET /orgs/{org}/settings`, for admins (a 404 for everyone else): the org's liveness and
//! retention settings, its members and invitations, and its API tokens, read through the same
//! functions as the API's endpoints. Admins create and revoke tokens here with forms
//! (`POST …/settings/tokens`, `POST …/settings/tokens/{id}/revoke`) that run the API's own
//! creation and revocation (`http::orgs::create_api_token`, `revoke_api_token`: the same checks
//! and audit entries). Changing the rest is still the API's.

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use chrono::Utc;
use maud::{html, Markup};
use serde::Deserialize;
use uuid::Uuid;

use super::page::{self, ago, foreign_form, form_is_ours, InOrg, PageError, Section};
use super::visitor::Visitor;
use crate::auth::tokens;
use crate::http::auth::OrgAccess;
use crate::http::orgs::{create_api_token, revoke_api_token, CreatedToken};
use crate::http::AppState;
use crate::orgs::{members, settings as org_settings, Role};

#[derive(Deserialize)]
pub struct SettingsQuery {
    /// The token the dashboard just revoked, for the page to say so (anything else is ignored).
    revoked: Option<String>,
}

/// `GET /orgs/{org}/settings`.
pub async fn settings(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(slug): Path<String>,
    Query(query): Query<SettingsQuery>,
) -> Result<Response, PageError> {
    let notice = query
        .revoked
        .and_then(|id| Uuid::parse_str(&id).ok())
        .map(Notice::Revoked);
    render(&state, &visitor, &slug, notice).await
}

/// What the page says above the tokens after a form.
enum Notice {
    /// Shown this once: the secret is in no URL and no later page.
    Created(CreatedToken),
    Revoked(Uuid),
}

async fn render(
    state: &AppState,
    visitor: &Visitor,
    slug: &str,
    notice: Option<Notice>,
) -> Result<Response, PageError> {
    let access = OrgAccess::resolve(state, visitor.principal, slug).await?;
    access.require(Role::Admin)?;
    let mut tx = state.db.begin(access.context()).await?;
    let settings = org_settings::get(tx.conn(), access.org.id).await?;
    let member_list = members::list(tx.conn(), access.org.id).await?;
    let invited = members::invitations(tx.conn(), access.org.id).await?;
    let token_list = tokens::list(tx.conn()).await?;
    tx.commit().await?;
    let now = Utc::now();
    let content = html! {
        h1 { "Settings" }
        p.muted {
            "Liveness, retention and members are changed through the API for now ("
            code { "PATCH /api/v1/orgs/" (access.org.slug) "/settings" } ", "
            code { "…/members" } ")."
        }
        h2 { "Liveness and retention" }
        dl.facts.card {
            div { dt { "Stale after" } dd { (settings.stale_after_s) " s without a heartbeat" } }
            div { dt { "Offline after" } dd { (settings.offline_after_s) " s" } }
            div { dt { "History kept" } dd { (settings.retention_days) " days" } }
        }
        h2 { "Members" }
        div.table-wrap {
            table {
                thead { tr { th scope="col" { "Email" } th scope="col" { "Name" } th scope="col" { "Role" } th scope="col" { "Member since" } } }
                tbody {
                    @for member in &member_list {
                        tr {
                            td { (member.email.as_deref().unwrap_or("—")) }
                            td { (member.name.as_deref().unwrap_or("—")) }
                            td { span.badge { (member.role) } }
                            td { (ago(member.since, now)) }
                        }
                    }
                }
            }
        }
        @if !invited.is_empty() {
            h2 { "Invitations" }
            div.table-wrap {
                table {
                    thead { tr { th scope="col" { "Email" } th scope="col" { "Role" } th scope="col" { "Invited" } } }
                    tbody {
                        @for invitation in &invited {
                            tr { td { (invitation.email) } td { (invitation.role) } td { (ago(invitation.created_at, now)) } }
                        }
                    }
                }
            }
        }
        h2 #tokens { "API tokens" }
        @match &notice {
            Some(Notice::Created(created)) => (shown_once(state, &access.org.slug, created)),
            Some(Notice::Revoked(id)) => {
                @let name = token_list.iter().find(|t| t.id == *id).map_or("The token", |t| t.name.as_str());
                p.notice.info role="status" { "Token " strong { (name) } " was revoked: it is refused from now on." }
            }
            None => {}
        }
        (create_form(&access.org.slug, &visitor.csrf))
        @if token_list.is_empty() {
            p { "No tokens yet. Agents need an ingest token; scripts reading the API need a read token." }
        } @else {
            div.table-wrap {
                table {
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Kind" } th scope="col" { "Starts with" } th scope="col" { "Created" } th scope="col" { "Last used" } th scope="col" { "State" } th scope="col" { span.visually-hidden { "Actions" } } } }
                    tbody {
                        @for token in &token_list {
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
                                        form method="post" action={ "/orgs/" (access.org.slug) "/settings/tokens/" (token.id) "/revoke" } {
                                            input type="hidden" name="csrf" value=(visitor.csrf);
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
    };
    let in_org = InOrg {
        org: &access.org,
        role: access.role.unwrap_or(Role::Viewer),
        section: Section::Settings,
    };
    Ok(page::respond(
        StatusCode::OK,
        page::app(visitor, Some(in_org), "Settings", content),
    ))
}

fn create_form(slug: &str, csrf: &str) -> Markup {
    html! {
        form.card.inline-form method="post" action={ "/orgs/" (slug) "/settings/tokens" } aria-label="Create a token" {
            input type="hidden" name="csrf" value=(csrf);
            div.field {
                label for="token-name" { "Name" }
                input #token-name type="text" name="name" required maxlength="200" placeholder="agents on rack 4";
            }
            div.field {
                label for="token-kind" { "Kind" }
                select #token-kind name="kind" {
                    option value="ingest" selected { "ingest — agents send events" }
                    option value="read" { "read — scripts read the API" }
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
    let Ok(Form(form)) = form else {
        return Err(foreign_form());
    };
    if !form_is_ours(&state, &headers, &form.csrf) {
        return Err(foreign_form());
    }
    let created =
        create_api_token(&state, visitor.principal, &slug, &form.kind, &form.name).await?;
    render(&state, &visitor, &slug, Some(Notice::Created(created))).await
}

#[derive(Deserialize)]
pub struct RevokeForm {
    csrf: String,
}

/// `POST /orgs/{org}/settings/tokens/{id}/revoke`: the API's revocation, then the settings page
/// saying so.
pub async fn revoke_token(
    State(state): State<AppState>,
    visitor: Visitor,
    headers: HeaderMap,
    Path((slug, id)): Path<(String, String)>,
    form: Result<Form<RevokeForm>, FormRejection>,
) -> Result<Response, PageError> {
    let ours = form.is_ok_and(|Form(form)| form_is_ours(&state, &headers, &form.csrf));
    if !ours {
        return Err(foreign_form());
    }
    // Not a token id: no such token, like an id of another org's.
    let id = Uuid::parse_str(&id).map_err(|_| PageError::NotFound)?;
    revoke_api_token(&state, visitor.principal, &slug, id).await?;
    let to = format!("/orgs/{slug}/settings?revoked={id}#tokens");
    Ok(Redirect::to(&to).into_response())
}
