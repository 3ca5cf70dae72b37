//! The OpenAPI 3.1 document at `/api/v1/openapi.json`.
//!
//! It is generated, not written: every route is registered through `utoipa_axum::routes!`, which
//! takes each handler's `#[utoipa::path]` annotation (method, path, parameters, bodies, answers)
//! together with the handler itself, so a route cannot exist without its entry. The schemas come
//! from the same Rust types the handlers serialize.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::{Extension, Json};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, RefOr};
use utoipa::{Modify, OpenApi};

/// The document's fixed parts; `routes!` adds the paths and their schemas.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "fleetmon",
        description = "Monitoring for distributed job/worker fleets: ingest from agents, reads for \
                       users and dashboards. Errors are always `{\"error\":{\"code\",\"message\"}}`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    components(schemas(fleetmon_proto::ErrorBody)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "health", description = "Liveness and readiness probes"),
        (name = "ingest", description = "Events from agents (ingest tokens)"),
        (name = "auth", description = "Sign-in, sessions and fleetmon's signing keys"),
        (name = "orgs", description = "Organizations, members, API tokens, settings and audit log"),
        (name = "fleet", description = "Machines and workers as they are now"),
        (name = "jobs", description = "Job history with search; each job's timeline, attempts and errors"),
        (name = "metrics", description = "The overview, job metrics over time and agents' metric series"),
        (name = "webhooks", description = "Identity-provider webhooks"),
    )
)]
pub struct ApiDoc;

/// How callers authenticate; handlers name these in their `security(...)`.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, document: &mut Document) {
        let components = document.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A JWT from a configured identity provider (fleetmon's own, Stack Auth, \
                         or an OIDC issuer), or a `read` API token (`fmr_…`)",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "ingest_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An `ingest` API token (`fmi_…`)"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                super::cookies::ACCESS,
                "The dashboard's session cookie; state changes also need the `x-csrf-token` \
                 header equal to the `fm_csrf` cookie",
            ))),
        );
    }
}

/// Completes what `routes!` gathered: OpenAPI requires a description on every response, and an
/// error answer's status says it best (its `code` is in the body).
pub fn finish(document: &mut Document) {
    for item in document.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            for (status, response) in operation.responses.responses.iter_mut() {
                if let RefOr::T(response) = response {
                    if response.description.is_empty() {
                        response.description = status
                            .parse::<StatusCode>()
                            .ok()
                            .and_then(|s| s.canonical_reason())
                            .unwrap_or("Answer")
                            .to_string();
                    }
                }
            }
        }
    }
}

/// This document, as JSON.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "health",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn document(Extension(document): Extension<Arc<Document>>) -> Json<Arc<Document>> {
    Json(document)
}

/// The `{org}` of every per-org path.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct OrgPath {
    /// The org's slug.
    #[allow(dead_code)]
    org: String,
}
