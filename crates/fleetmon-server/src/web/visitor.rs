//! Who is looking at a page: the signed-in user (through the same session check as the API),
//! their profile and their orgs. Someone without a live access token is sent to renew it, and
//! from there to the sign-in page. This checks no CSRF token: the pages that take a POST check
//! their form's (`page::form_is_ours`).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};

use super::page::{encode, PageError};
use crate::auth::users::{self, Profile};
use crate::db::TenantContext;
use crate::http::auth::{session_user, Principal};
use crate::http::{cookies, ApiError, AppState};
use crate::orgs::{self, MemberOrg};

pub struct Visitor {
    pub principal: Principal,
    pub user: Profile,
    /// Every org the user is a member of, by slug.
    pub orgs: Vec<MemberOrg>,
    /// The CSRF token the page's forms send back.
    /// The session's CSRF token, masked for this page (`page::masked_csrf`).
    pub csrf: String,
}

impl FromRequestParts<AppState> for Visitor {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        // Pages take the session cookie only: API tokens are for programs.
        let Some(token) = cookies::get(&parts.headers, cookies::ACCESS) else {
            return Err(resume(parts));
        };
        let principal = match session_user(state, token).await {
            Ok(principal) => principal,
            Err(ApiError::Unauthorized { .. }) => return Err(resume(parts)),
            Err(error) => return Err(PageError::from(error).into_response()),
        };
        let user_id = principal.user_id().expect("a user principal");
        let loaded = async {
            let mut tx = state
                .db
                .begin(TenantContext::none().with_user(user_id))
                .await?;
            let user = users::profile(tx.conn(), user_id).await?;
            let orgs = orgs::of_user(tx.conn(), user_id).await?;
            tx.commit().await?;
            Ok::<_, ApiError>((user, orgs))
        }
        .await;
        match loaded {
            Ok((Some(user), orgs)) => Ok(Self {
                principal,
                user,
                orgs,
                csrf: super::page::masked_csrf(
                    cookies::get(&parts.headers, cookies::CSRF).unwrap_or_default(),
                ),
            }),
            Ok((None, _)) => Err(resume(parts)),
            Err(error) => Err(PageError::from(error).into_response()),
        }
    }
}

/// To `/auth/resume`, which renews the access token from the session's refresh cookie (sent only
/// to `/auth`) and comes back, or goes on to the sign-in page.
fn resume(parts: &Parts) -> Response {
    let here = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    Redirect::to(&format!("/auth/resume?return_to={}", encode(&here))).into_response()
}
