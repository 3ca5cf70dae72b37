//! `GET /orgs/{org}/settings/audit`, for admins: the org's audit log, newest first, read through
//! the API's own listing (`http::orgs::audit_page`: the same `before` cursor and `limit`), with
//! actors and targets named where the org still knows them (a member's email, a token's name).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;
use maud::{html, Markup};
use uuid::Uuid;

use crate::auth::tokens::{self, TokenInfo};
use crate::http::auth::OrgAccess;
use crate::http::orgs::{audit_page, AuditQuery};
use crate::http::{ApiError, AppState};
use crate::orgs::members::{self, Member};
use crate::orgs::Role;
use crate::web::page::{self, ago, at, crumbs, InOrg, PageError, Section};
use crate::web::visitor::Visitor;

/// `GET /orgs/{org}/settings/audit?before=&limit=`.
pub async fn log(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(slug): Path<String>,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Response, PageError> {
    // Access first: a bad cursor on an org the visitor may not administer is its 404.
    let (access, mut tx) = OrgAccess::open(&state, visitor.principal, &slug).await?;
    access.require(Role::Admin)?;
    let Query(query) = query.map_err(|rejection| {
        PageError::Failed(ApiError::BadRequest {
            code: "invalid_query",
            message: rejection.body_text(),
        })
    })?;
    let found = audit_page(tx.conn(), access.org.id, &query).await?;
    let names = Names {
        members: members::list(tx.conn(), access.org.id).await?,
        tokens: tokens::list(tx.conn()).await?,
    };
    tx.commit().await?;

    let slug = &access.org.slug;
    let base = format!("/orgs/{slug}/settings/audit");
    // The pages keep the limit asked for.
    let newest = match query.limit {
        Some(limit) => format!("{base}?limit={limit}"),
        None => base.clone(),
    };
    let older = |before: i64| match query.limit {
        Some(limit) => format!("{base}?before={before}&limit={limit}"),
        None => format!("{base}?before={before}"),
    };
    let now = Utc::now();
    let content = html! {
        (crumbs(slug, "/settings", "Settings", "Audit log"))
        div.page-head {
            div {
                h1 { "Audit log" }
                p.muted { "Who changed what in this organization, newest first · times in UTC" }
            }
        }
        @if found.entries.is_empty() {
            p.card { @if query.before.is_some() { "No older entries." } @else { "Nothing has been changed yet." } }
        } @else {
            div.table-wrap {
                table.audit {
                    thead { tr { th scope="col" { "Time" } th scope="col" { "Actor" } th scope="col" { "Action" } th scope="col" { "Target" } th scope="col" { "Details" } } }
                    tbody {
                        @for entry in &found.entries {
                            tr data-entry=(entry.id) {
                                td { (at(entry.at)) br; span.muted { (ago(entry.at, now)) } }
                                td { (names.of(&entry.actor)) }
                                td { code { (entry.action) } }
                                td { @match &entry.target { Some(target) => (names.of(target)), None => "—" } }
                                td.details {
                                    @if entry.details.as_object().is_some_and(|d| d.is_empty()) { "—" }
                                    @else { code { (entry.details) } }
                                }
                            }
                        }
                    }
                }
            }
        }
        nav.pager aria-label="Pages" {
            @if query.before.is_some() {
                a.button.secondary href=(newest) { "Newest" }
            }
            @if let Some(next) = found.next_before {
                a.button.secondary rel="next" href=(older(next)) { "Older" }
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
        page::app(&visitor, Some(in_org), "Audit log", content),
    ))
}

/// What the org knows the audit log's `user:<id>` and `token:<id>` by.
struct Names {
    members: Vec<Member>,
    tokens: Vec<TokenInfo>,
}

impl Names {
    /// `reference` by its name where known, the reference itself on hover; as it is otherwise
    /// (an email, a slug, someone no longer a member).
    fn of(&self, reference: &str) -> Markup {
        let id = |prefix| {
            reference
                .strip_prefix(prefix)
                .and_then(|id| Uuid::parse_str(id).ok())
        };
        let name = if let Some(user) = id("user:") {
            self.members
                .iter()
                .find(|m| m.user_id == user)
                .and_then(|m| m.email.clone())
        } else if let Some(token) = id("token:") {
            self.tokens
                .iter()
                .find(|t| t.id == token)
                .map(|t| format!("token {}", t.name))
        } else {
            None
        };
        html! {
            @match name {
                Some(name) => span title=(reference) { (name) },
                None => span.mono { (reference) },
            }
        }
    }
}
