//! The settings page's members and invitations, and the forms that change them: adding someone
//! by email (`POST …/settings/members`; an email nobody has signed in with is invited), a
//! member's role (`POST …/settings/members/{user_id}/role`), removing a member (`…/remove`) and
//! cancelling an invitation (`POST …/settings/invitations/cancel`). Each runs the API's
//! function; only admins reach them.

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use chrono::{DateTime, Utc};
use maud::{html, Markup};
use serde::Deserialize;
use uuid::Uuid;

use super::{admin, done, refused, CsrfForm, Done, Outcome, Sent};
use crate::http::orgs::{
    add_org_member, cancel_member_invitation, change_member_role, remove_org_member,
};
use crate::http::{ApiError, AppState};
use crate::orgs::members::{Invitation, Member};
use crate::orgs::Role;
use crate::web::page::{ago, encode, own_form, PageError};
use crate::web::visitor::Visitor;

const ROLES: [Role; 4] = [Role::Viewer, Role::Member, Role::Admin, Role::Owner];

/// The members part of the settings page, as the visitor (an admin or owner) sees it.
pub(super) struct Members<'a> {
    pub slug: &'a str,
    pub csrf: &'a str,
    /// The visitor's role: only owners are offered owners' controls (the API's rule).
    pub role: Role,
    pub me: Option<Uuid>,
    pub members: &'a [Member],
    pub invited: &'a [Invitation],
}

impl Members<'_> {
    /// The roles the visitor may give or take: owners only by owners.
    fn manages(&self, role: Role) -> bool {
        role != Role::Owner || self.role == Role::Owner
    }

    fn member(&self, id: Uuid) -> Option<&Member> {
        self.members.iter().find(|m| m.user_id == id)
    }

    fn has_email(&self, email: &str) -> Option<&Member> {
        self.members.iter().find(|m| {
            m.email
                .as_deref()
                .is_some_and(|e| e.eq_ignore_ascii_case(email))
        })
    }

    /// Where a form posts; the answer, when it is the page, opens at the members.
    fn action(&self, path: &str) -> String {
        format!("/orgs/{}/settings/{path}#members", self.slug)
    }

    pub fn section(&self, outcome: Option<&Outcome>, now: DateTime<Utc>) -> Markup {
        let (draft_email, draft_role, problem) = match outcome {
            Some(Outcome::Refused {
                sent: Sent::NewMember { email, role },
                message,
            }) => (email.as_str(), role.as_str(), Some(message)),
            Some(Outcome::Refused {
                sent: Sent::Member,
                message,
            }) => ("", "member", Some(message)),
            _ => ("", "member", None),
        };
        html! {
            h2 #members { "Members" }
            @if let Some(Outcome::Done(done)) = outcome { (self.confirmation(done)) }
            @if let Some(problem) = problem {
                p.notice.error #members-problem role="alert" { "Not changed: " (problem) }
            }
            form.card.inline-form method="post" action=(self.action("members")) aria-label="Add a member" {
                input type="hidden" name="csrf" value=(self.csrf);
                div.field {
                    label for="member-email" { "Email" }
                    input #member-email type="email" name="email" required maxlength="320"
                        value=(draft_email) placeholder="ops@example.com" aria-describedby="member-email-hint";
                }
                div.field {
                    label for="member-role" { "Role" }
                    (self.role_select("member-role", draft_role, None))
                }
                div.actions { button type="submit" { "Add member" } }
                p.hint.wide #member-email-hint {
                    "Everyone signed in with this verified email gets the role now; an email nobody has signed in with yet is invited, and the role applies at their first sign-in."
                }
            }
            div.table-wrap {
                table {
                    thead { tr { th scope="col" { "Email" } th scope="col" { "Name" } th scope="col" { "Role" } th scope="col" { "Member since" } th scope="col" { span.visually-hidden { "Actions" } } } }
                    tbody {
                        @for member in self.members { (self.row(member, now)) }
                    }
                }
            }
            @if !self.invited.is_empty() {
                h3 #invitations { "Invitations" }
                div.table-wrap {
                    table {
                        thead { tr { th scope="col" { "Email" } th scope="col" { "Role" } th scope="col" { "Invited" } th scope="col" { span.visually-hidden { "Actions" } } } }
                        tbody {
                            @for invitation in self.invited {
                                tr data-invitation=(invitation.email) {
                                    td { (invitation.email) }
                                    td { span.badge { (invitation.role) } }
                                    td { (ago(invitation.created_at, now)) }
                                    td {
                                        form method="post" action=(self.action("invitations/cancel")) {
                                            input type="hidden" name="csrf" value=(self.csrf);
                                            input type="hidden" name="email" value=(invitation.email);
                                            button.secondary type="submit" aria-label={ "Cancel the invitation of " (invitation.email) } { "Cancel invitation" }
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

    fn row(&self, member: &Member, now: DateTime<Utc>) -> Markup {
        let email = member.email.as_deref().unwrap_or("—");
        let role = Role::parse(&member.role);
        let manageable = role.is_some_and(|r| self.manages(r));
        let base = format!("members/{}", member.user_id);
        html! {
            tr data-member=(member.user_id) {
                td { (email) @if self.me == Some(member.user_id) { " " span.muted { "(you)" } } }
                td { (member.name.as_deref().unwrap_or("—")) }
                td {
                    @if manageable {
                        form.row-form method="post" action=(self.action(&format!("{base}/role"))) {
                            input type="hidden" name="csrf" value=(self.csrf);
                            (self.role_select(&format!("role-{}", member.user_id), &member.role, Some(email)))
                            button.secondary type="submit" aria-label={ "Change the role of " (email) } { "Change" }
                        }
                    } @else {
                        span.badge { (member.role) }
                    }
                }
                td { (ago(member.since, now)) }
                td {
                    @if manageable {
                        form method="post" action=(self.action(&format!("{base}/remove"))) {
                            input type="hidden" name="csrf" value=(self.csrf);
                            button.secondary type="submit" aria-label={ "Remove " (email) } {
                                @if self.me == Some(member.user_id) { "Leave" } @else { "Remove" }
                            }
                        }
                    } @else {
                        span.muted { "only an owner can change an owner" }
                    }
                }
            }
        }
    }

    /// A `role` select with `selected` chosen, offering the roles the visitor may give.
    fn role_select(&self, id: &str, selected: &str, of: Option<&str>) -> Markup {
        html! {
            select id=(id) name="role" aria-label=[of.map(|email| format!("Role of {email}"))] {
                @for role in ROLES.into_iter().filter(|r| self.manages(*r)) {
                    option value=(role.as_str()) selected[role.as_str() == selected] { (role.as_str()) }
                }
            }
        }
    }

    /// What the last change did, as far as it is still true.
    fn confirmation(&self, done: &Done) -> Markup {
        let line = match done {
            Done::Added(email) => match self.has_email(email) {
                Some(member) => Some(format!("{email} is now a member, as {}.", member.role)),
                None => self.invited.iter().find(|i| i.email.eq_ignore_ascii_case(email)).map(|i| {
                    format!("{email} was invited as {}: nobody has signed in with that email yet, and the role applies at their first sign-in.", i.role)
                }),
            },
            Done::RoleChanged(id) => self.member(*id).map(|m| {
                format!("{} is now {}.", m.email.as_deref().unwrap_or("The member"), m.role)
            }),
            Done::Removed(id) => self
                .member(*id)
                .is_none()
                .then(|| "The member was removed: they no longer have access to this organization.".to_string()),
            Done::Cancelled(email) => (!self.invited.iter().any(|i| i.email.eq_ignore_ascii_case(email)))
                .then(|| format!("The invitation of {email} was cancelled.")),
            Done::Saved | Done::Revoked(_) => None,
        };
        html! {
            @if let Some(line) = line { p.notice.info role="status" { (line) } }
        }
    }
}

/// A role as a form sent it.
fn role(text: &str) -> Result<Role, ApiError> {
    Role::parse(text.trim()).ok_or_else(|| ApiError::BadRequest {
        code: "invalid_role",
        message: format!("{text:?} is not a role: use viewer, member, admin or owner"),
    })
}

/// A member's id from the URL: anything else is no such member, the 404 page.
fn member_id(text: &str) -> Result<Uuid, PageError> {
    Uuid::parse_str(text).map_err(|_| PageError::NotFound)
}

#[derive(Deserialize)]
pub struct AddForm {
    csrf: String,
    email: String,
    role: String,
}

/// `POST /orgs/{org}/settings/members`: the API's adding by email.
pub async fn add_member(
    State(state): State<AppState>,
    visitor: Visitor,
    headers: HeaderMap,
    Path(slug): Path<String>,
    form: Result<Form<AddForm>, FormRejection>,
) -> Result<Response, PageError> {
    let form = own_form(&state, &headers, form, |f| f.csrf.as_str())?;
    let mut access = admin(&state, &visitor, &slug).await?;
    let added = match role(&form.role) {
        Ok(role) => add_org_member(&state, &mut access, &form.email, role).await,
        Err(error) => Err(error),
    };
    match added {
        Ok(_) => {
            let email = encode(&form.email.trim().to_lowercase());
            Ok(done(&access.org.slug, &format!("added={email}"), "members"))
        }
        Err(error) => {
            let sent = Sent::NewMember {
                email: form.email,
                role: form.role,
            };
            refused(&state, &visitor, &slug, sent, error).await
        }
    }
}

#[derive(Deserialize)]
pub struct RoleForm {
    csrf: String,
    role: String,
}

/// `POST /orgs/{org}/settings/members/{user_id}/role`: the API's role change.
pub async fn change_role(
    State(state): State<AppState>,
    visitor: Visitor,
    headers: HeaderMap,
    Path((slug, user_id)): Path<(String, String)>,
    form: Result<Form<RoleForm>, FormRejection>,
) -> Result<Response, PageError> {
    let form = own_form(&state, &headers, form, |f| f.csrf.as_str())?;
    let mut access = admin(&state, &visitor, &slug).await?;
    let user_id = member_id(&user_id)?;
    let changed = match role(&form.role) {
        Ok(role) => change_member_role(&state, &mut access, user_id, role).await,
        Err(error) => Err(error),
    };
    match changed {
        Ok(()) => Ok(done(
            &access.org.slug,
            &format!("changed={user_id}"),
            "members",
        )),
        Err(error) => refused(&state, &visitor, &slug, Sent::Member, error).await,
    }
}

/// `POST /orgs/{org}/settings/members/{user_id}/remove`: the API's removal. An admin removing
/// themselves leaves the org, and goes to their orgs.
pub async fn remove_member(
    State(state): State<AppState>,
    visitor: Visitor,
    headers: HeaderMap,
    Path((slug, user_id)): Path<(String, String)>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, PageError> {
    own_form(&state, &headers, form, |f| f.csrf.as_str())?;
    let mut access = admin(&state, &visitor, &slug).await?;
    let user_id = member_id(&user_id)?;
    match remove_org_member(&state, &mut access, user_id).await {
        Ok(()) if visitor.principal.user_id() == Some(user_id) => {
            Ok(Redirect::to("/orgs").into_response())
        }
        Ok(()) => Ok(done(
            &access.org.slug,
            &format!("removed={user_id}"),
            "members",
        )),
        Err(error) => refused(&state, &visitor, &slug, Sent::Member, error).await,
    }
}

#[derive(Deserialize)]
pub struct CancelForm {
    csrf: String,
    email: String,
}

/// `POST /orgs/{org}/settings/invitations/cancel`: the API's cancellation.
pub async fn cancel_invitation(
    State(state): State<AppState>,
    visitor: Visitor,
    headers: HeaderMap,
    Path(slug): Path<String>,
    form: Result<Form<CancelForm>, FormRejection>,
) -> Result<Response, PageError> {
    let form = own_form(&state, &headers, form, |f| f.csrf.as_str())?;
    let mut access = admin(&state, &visitor, &slug).await?;
    match cancel_member_invitation(&state, &mut access, &form.email).await {
        Ok(()) => {
            let email = encode(&form.email.trim().to_lowercase());
            Ok(done(
                &access.org.slug,
                &format!("cancelled={email}"),
                "members",
            ))
        }
        Err(error) => refused(&state, &visitor, &slug, Sent::Member, error).await,
    }
}
