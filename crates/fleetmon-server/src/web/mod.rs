//! The dashboard: server-rendered pages (maud) that read through the same query code and org
//! access checks as the API, in the org's tenant transaction, with the project's own CSS and
//! JavaScript compiled into the binary. Pages work without JavaScript; the script signs in and
//! creates orgs through the JSON API and keeps the overview and machine pages current. Charts are
//! SVG drawn on the server (`chart`). See docs/dashboard.md.

mod assets;
mod chart;
mod fleet;
mod gpu_history;
mod job;
mod jobs;
mod machine;
mod metrics;
mod orgs;
mod page;
mod session;
mod settings;
mod visitor;

use axum::http::{header, HeaderMap};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

use crate::http::AppState;

pub use page::{encode, CONTENT_SECURITY_POLICY};

/// The pages and their assets. Not API: they are not in the OpenAPI document.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(orgs::home))
        .route("/sign-in", get(session::sign_in_page))
        .route("/auth/form/sign-in", post(session::form_sign_in))
        .route("/auth/form/sign-out", post(session::form_sign_out))
        .route("/auth/resume", get(session::resume))
        .route("/orgs", get(orgs::list).post(orgs::create))
        .route("/orgs/{org}", get(fleet::overview))
        .route("/orgs/{org}/jobs", get(jobs::list))
        .route("/orgs/{org}/jobs/{id}", get(job::show))
        .route("/orgs/{org}/machines", get(fleet::machines))
        .route("/orgs/{org}/machines/{id}", get(machine::show))
        .route("/orgs/{org}/machines/{id}/remove", post(machine::remove))
        .route("/orgs/{org}/metrics", get(metrics::show))
        .route(
            "/orgs/{org}/settings",
            get(settings::settings).post(settings::save),
        )
        .route("/orgs/{org}/settings/audit", get(settings::log))
        .route("/orgs/{org}/settings/members", post(settings::add_member))
        .route(
            "/orgs/{org}/settings/members/{user_id}/role",
            post(settings::change_role),
        )
        .route(
            "/orgs/{org}/settings/members/{user_id}/remove",
            post(settings::remove_member),
        )
        .route(
            "/orgs/{org}/settings/invitations/cancel",
            post(settings::cancel_invitation),
        )
        .route("/orgs/{org}/settings/tokens", post(settings::create_token))
        .route(
            "/orgs/{org}/settings/tokens/{id}/revoke",
            post(settings::revoke_token),
        )
        .route("/assets/{file}", get(assets::serve))
}

/// Whether a request for a path nobody serves came from a browser, which gets the 404 page.
pub fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

/// The 404 page.
pub fn not_found() -> Response {
    page::not_found()
}
