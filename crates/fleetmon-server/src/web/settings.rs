//! `GET /orgs/{org}/settings`, for admins (a 404 for everyone else): the org's liveness and
//! retention settings, its members and invitations, and its API tokens, read through the same
//! functions as the API's endpoints. Changing them from here is still to come; the API does it.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;
use maud::html;

use super::page::{self, ago, InOrg, PageError, Section};
use super::visitor::Visitor;
use crate::auth::tokens;
use crate::http::auth::OrgAccess;
use crate::http::AppState;
use crate::orgs::{members, settings as org_settings, Role};

pub async fn settings(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(slug): Path<String>,
) -> Result<Response, PageError> {
    let access = OrgAccess::resolve(&state, visitor.principal, &slug).await?;
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
            "Changing these from the dashboard is coming; until then the API does it ("
            code { "PATCH /api/v1/orgs/" (access.org.slug) "/settings" } ", "
            code { "…/members" } ", " code { "…/tokens" } ")."
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
        h2 { "API tokens" }
        @if token_list.is_empty() {
            p { "No tokens yet. Agents need an ingest token; scripts reading the API need a read token." }
        } @else {
            div.table-wrap {
                table {
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Kind" } th scope="col" { "Starts with" } th scope="col" { "Created" } th scope="col" { "Last used" } th scope="col" { "State" } } }
                    tbody {
                        @for token in &token_list {
                            tr {
                                td { (token.name) }
                                td { (token.kind) }
                                td.mono { (token.prefix) "…" }
                                td { (ago(token.created_at, now)) }
                                td { @match token.last_used_at { Some(at) => (ago(at, now)), None => "never" } }
                                td {
                                    @if token.revoked_at.is_some() { span.badge.offline { "revoked" } }
                                    @else { span.badge.online { "active" } }
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
        page::app(&visitor, Some(in_org), "Settings", content),
    ))
}
