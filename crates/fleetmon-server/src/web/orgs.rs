//! The visitor's organizations: `/` opens the only one or offers a choice, `/orgs` lists them
//! all, and a user in none gets an empty state that creates their first. Creating goes through
//! the API (`POST /api/v1/orgs`) from the page's script, or through `POST /orgs` without it.

use axum::extract::rejection::FormRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;

use super::page::{self, foreign_form, form_is_ours, PageError};
use super::session::UNREACHABLE;
use super::visitor::Visitor;
use crate::http::orgs::create_org;
use crate::http::{ApiError, AppState};

const SLUG_TAKEN: &str = "An organization with that short name already exists; choose another.";
const CREATE_FAILED: &str = "The organization could not be created. Try again.";

/// `GET /`: straight into the only org, a choice among several, or the first-org empty state.
pub async fn home(visitor: Visitor) -> Response {
    match visitor.orgs.as_slice() {
        [only] => Redirect::to(&format!("/orgs/{}", only.slug)).into_response(),
        _ => list_page(&visitor, StatusCode::OK, None),
    }
}

/// `GET /orgs`: every org of the visitor, and a way to create another.
pub async fn list(visitor: Visitor) -> Response {
    list_page(&visitor, StatusCode::OK, None)
}

fn list_page(visitor: &Visitor, status: StatusCode, failure: Option<&str>) -> Response {
    let content = if visitor.orgs.is_empty() {
        html! {
            div.card.empty {
                h1 { "Welcome to fleetmon" }
                p {
                    "You are signed in as " strong { (visitor.user.email.as_deref().unwrap_or("a user")) }
                    ", but you are not in any organization yet."
                }
                p {
                    "An organization holds your machines, workers and jobs, and decides who may see "
                    "them. Create one to start: you become its owner and can add others."
                }
                (create_form(visitor, failure))
            }
            div.card {
                h2 { "Joining an existing organization?" }
                p {
                    "Ask one of its admins to add "
                    strong { (visitor.user.email.as_deref().unwrap_or("your email")) }
                    ". It shows up here as soon as they do."
                }
            }
        }
    } else {
        html! {
            h1 { "Your organizations" }
            ul.org-list {
                @for org in &visitor.orgs {
                    li {
                        a href={ "/orgs/" (org.slug) } {
                            span { strong { (org.name) } " " span.muted.mono { (org.slug) } }
                            span.badge { (org.role) }
                        }
                    }
                }
            }
            details.card open[failure.is_some()] {
                summary { "Create another organization" }
                (create_form(visitor, failure))
            }
        }
    };
    page::respond(
        status,
        page::app(
            visitor,
            None,
            "Organizations",
            html! { div.narrow { (content) } },
        ),
    )
}

fn create_form(visitor: &Visitor, failure: Option<&str>) -> Markup {
    html! {
        form method="post" action="/orgs" data-create-org data-messages="create-org-message" {
            input type="hidden" name="csrf" value=(visitor.csrf);
            p #create-org-message .notice.error[failure.is_some()] role="alert" aria-live="polite"
                data-slug-taken=(SLUG_TAKEN) data-failed=(CREATE_FAILED) data-unreachable=(UNREACHABLE) {
                (failure.unwrap_or(""))
            }
            label for="org-name" { "Name" }
            input #org-name type="text" name="name" required maxlength="200"
                autocomplete="organization" placeholder="Acme Render Farm";
            label for="org-slug" { "Short name" }
            input #org-slug type="text" name="slug" required maxlength="63"
                pattern="[a-z0-9]([a-z0-9\\-]*[a-z0-9])?" aria-describedby="org-slug-hint"
                autocapitalize="none" spellcheck="false" placeholder="acme-render";
            p #org-slug-hint .hint {
                "Lowercase letters, digits and dashes. The dashboard will be at /orgs/<short name>."
            }
            div.actions { button type="submit" { "Create organization" } }
        }
    }
}

#[derive(Deserialize)]
pub struct NewOrgForm {
    csrf: String,
    slug: String,
    name: String,
}

/// `POST /orgs`: the create form without JavaScript, through the same creation as the API.
pub async fn create(
    State(state): State<AppState>,
    visitor: Visitor,
    headers: HeaderMap,
    form: Result<Form<NewOrgForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return list_page(&visitor, StatusCode::BAD_REQUEST, Some(CREATE_FAILED));
    };
    if !form_is_ours(&state, &headers, &form.csrf) {
        return foreign_form().into_response();
    }
    let name = if form.name.trim().is_empty() {
        &form.slug
    } else {
        &form.name
    };
    match create_org(&state, visitor.principal, form.slug.trim(), name).await {
        Ok(org) => Redirect::to(&format!("/orgs/{}", org.slug)).into_response(),
        Err(error @ ApiError::Conflict { .. }) => {
            list_page(&visitor, error.status_and_code().0, Some(SLUG_TAKEN))
        }
        Err(error @ ApiError::BadRequest { .. }) => {
            let text = error.to_string();
            list_page(&visitor, error.status_and_code().0, Some(&text))
        }
        Err(error) => PageError::from(error).into_response(),
    }
}
