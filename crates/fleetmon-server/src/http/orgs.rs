//! `/api/v1/me` and `/api/v1/orgs…`: organizations, members, API tokens, settings and the audit
//! log, each endpoint checking the caller's role in the org.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::auth::{OrgAccess, Principal};
use super::json::JsonBody;
use super::{ApiError, AppState};
use crate::auth::tokens::{self, TokenKind};
use crate::auth::users;
use crate::db::TenantContext;
use crate::orgs::members::{self, MemberError};
use crate::orgs::settings::{self as org_settings, SettingsError, SettingsPatch};
use crate::orgs::{self, audit, OrgError, Role};

impl From<OrgError> for ApiError {
    fn from(error: OrgError) -> Self {
        match error {
            OrgError::SlugTaken(_) => ApiError::Conflict {
                code: "slug_taken",
                message: error.to_string(),
            },
            OrgError::BadSlug(_) | OrgError::BadName => ApiError::BadRequest {
                code: "invalid_org",
                message: error.to_string(),
            },
            OrgError::Db(db) => db.into(),
        }
    }
}

impl From<SettingsError> for ApiError {
    fn from(error: SettingsError) -> Self {
        match error {
            SettingsError::Invalid(message) => ApiError::BadRequest {
                code: "invalid_settings",
                message,
            },
            SettingsError::Db(db) => db.into(),
        }
    }
}

impl From<MemberError> for ApiError {
    fn from(error: MemberError) -> Self {
        match error {
            MemberError::BadEmail(_) => ApiError::BadRequest {
                code: "invalid_email",
                message: error.to_string(),
            },
            MemberError::NotMember => ApiError::NotFound {
                message: error.to_string(),
            },
            MemberError::OwnerProtected => ApiError::Forbidden {
                code: "insufficient_role",
                message: error.to_string(),
            },
            MemberError::LastOwner => ApiError::Conflict {
                code: "last_owner",
                message: error.to_string(),
            },
            MemberError::Db(db) => db.into(),
        }
    }
}

/// `GET /api/v1/me`: the signed-in user and their orgs.
pub async fn me(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    let user_id = principal.require_user()?;
    let mut tx = state
        .db
        .begin(TenantContext::none().with_user(user_id))
        .await?;
    let profile = users::profile(tx.conn(), user_id).await?;
    let orgs = orgs::of_user(tx.conn(), user_id).await?;
    tx.commit().await?;
    let profile = profile
        .ok_or_else(|| super::auth::unauthorized("user_deleted", "this user no longer exists"))?;
    Ok(Json(json!({ "user": profile, "orgs": orgs })))
}

/// `GET /api/v1/orgs`: the orgs the caller can see.
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    let orgs = match principal {
        Principal::User { user_id, .. } => {
            let mut tx = state
                .db
                .begin(TenantContext::none().with_user(user_id))
                .await?;
            let orgs = orgs::of_user(tx.conn(), user_id).await?;
            tx.commit().await?;
            serde_json::to_value(orgs).expect("orgs serialize")
        }
        Principal::ReadToken { org_id, .. } => {
            let mut tx = state.db.begin(TenantContext::org(org_id)).await?;
            let org = orgs::by_id(tx.conn(), org_id).await?;
            tx.commit().await?;
            json!(org.into_iter().map(|o| json!({ "id": o.id, "slug": o.slug, "name": o.name, "role": "read_token", "created_at": o.created_at })).collect::<Vec<_>>())
        }
    };
    Ok(Json(json!({ "orgs": orgs })))
}

#[derive(Deserialize)]
pub struct NewOrg {
    slug: String,
    name: Option<String>,
}

/// `POST /api/v1/orgs`: the creator becomes its owner.
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    JsonBody(body): JsonBody<NewOrg>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let user_id = principal.require_user()?;
    let id = Uuid::new_v4();
    let mut tx = state
        .db
        .begin(TenantContext::org(id).with_user(user_id))
        .await?;
    let org = orgs::create(
        tx.conn(),
        id,
        &body.slug,
        body.name.as_deref().unwrap_or(&body.slug),
        Some(user_id),
    )
    .await?;
    audit::record(
        tx.conn(),
        id,
        &principal.actor(),
        "org.created",
        Some(&org.slug),
        json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "org": org, "role": "owner" })),
    ))
}

/// `GET /api/v1/orgs/{org}`.
pub async fn show(
    State(state): State<AppState>,
    principal: Principal,
    Path(slug): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let access = OrgAccess::resolve(&state, principal, &slug).await?;
    access.require(Role::Viewer)?;
    Ok(Json(
        json!({ "org": access.org, "role": access.role.map(Role::as_str) }),
    ))
}

/// `DELETE /api/v1/orgs/{org}`: owners only; removes all of the org's data.
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    Path(slug): Path<String>,
) -> Result<StatusCode, ApiError> {
    let mut access = OrgAccess::resolve(&state, principal, &slug).await?;
    access.require(Role::Owner)?;
    let mut tx = access.begin_write(&state, Role::Owner).await?;
    orgs::delete(tx.conn(), access.org.id).await?;
    tx.commit().await?;
    tracing::info!(org = %access.org.slug, actor = %principal.actor(), "deleted an organization");
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/orgs/{org}/members`: members and pending invitations.
pub async fn members(
    State(state): State<AppState>,
    principal: Principal,
    Path(slug): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let access = OrgAccess::resolve(&state, principal, &slug).await?;
    access.require(Role::Viewer)?;
    let mut tx = state.db.begin(access.context()).await?;
    let list = members::list(tx.conn(), access.org.id).await?;
    let invited = members::invitations(tx.conn(), access.org.id).await?;
    tx.commit().await?;
    Ok(Json(json!({ "members": list, "invitations": invited })))
}

#[derive(Deserialize)]
pub struct AddMember {
    email: String,
    role: Role,
}

/// The role it takes to give or take `role`: admins manage members; only owners make or unmake
/// owners.
fn needed(role: Role) -> Role {
    if role == Role::Owner {
        Role::Owner
    } else {
        Role::Admin
    }
}

fn manage(access: &OrgAccess, role: Role) -> Result<(), ApiError> {
    access.require(needed(role))
}

/// `POST /api/v1/orgs/{org}/members` `{"email","role"}`.
pub async fn add_member(
    State(state): State<AppState>,
    principal: Principal,
    Path(slug): Path<String>,
    JsonBody(body): JsonBody<AddMember>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let mut access = OrgAccess::resolve(&state, principal, &slug).await?;
    let mut tx = access.begin_write(&state, needed(body.role)).await?;
    let added = members::add_by_email(
        tx.conn(),
        access.org.id,
        &body.email,
        body.role,
        principal.user_id(),
        access.role == Some(Role::Owner),
    )
    .await?;
    audit::record(
        tx.conn(),
        access.org.id,
        &principal.actor(),
        "member.added",
        Some(&body.email.trim().to_lowercase()),
        json!({ "role": body.role, "result": added }),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(json!(added))))
}

#[derive(Deserialize)]
pub struct ChangeRole {
    role: Role,
}

/// `PATCH /api/v1/orgs/{org}/members/{user_id}` `{"role"}`.
pub async fn change_role(
    State(state): State<AppState>,
    principal: Principal,
    Path((slug, user_id)): Path<(String, Uuid)>,
    JsonBody(body): JsonBody<ChangeRole>,
) -> Result<Json<Value>, ApiError> {
    let mut access = OrgAccess::resolve(&state, principal, &slug).await?;
    let mut tx = access.begin_write(&state, needed(body.role)).await?;
    let current = members::role_for_update(tx.conn(), access.org.id, user_id).await?;
    manage(&access, current)?;
    members::set_role(tx.conn(), access.org.id, user_id, body.role).await?;
    audit::record(
        tx.conn(),
        access.org.id,
        &principal.actor(),
        "member.role_changed",
        Some(&format!("user:{user_id}")),
        json!({ "from": current, "to": body.role }),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(json!({ "user_id": user_id, "role": body.role })))
}

/// `DELETE /api/v1/orgs/{org}/members/{user_id}`: admins remove others; anyone may leave.
pub async fn remove_member(
    State(state): State<AppState>,
    principal: Principal,
    Path((slug, user_id)): Path<(String, Uuid)>,
) -> Result<StatusCode, ApiError> {
    let mut access = OrgAccess::resolve(&state, principal, &slug).await?;
    let leaving = principal.user_id() == Some(user_id);
    let mut tx = access
        .begin_write(&state, if leaving { Role::Viewer } else { Role::Admin })
        .await?;
    let current = members::role_for_update(tx.conn(), access.org.id, user_id).await?;
    if !leaving {
        manage(&access, current)?;
    }
    members::remove(tx.conn(), access.org.id, user_id).await?;
    audit::record(
        tx.conn(),
        access.org.id,
        &principal.actor(),
        "member.removed",
        Some(&format!("user:{user_id}")),
        json!({ "role": current }),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/v1/orgs/{org}/invitations/{email}`.
pub async fn cancel_invitation(
    State(state): State<AppState>,
    principal: Principal,
    Path((slug, email)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let mut access = OrgAccess::resolve(&state, principal, &slug).await?;
    access.require(Role::Admin)?;
    let mut tx = access.begin_write(&state, Role::Admin).await?;
    if !members::cancel_invitation(tx.conn(), access.org.id, &email).await? {
        return Err(ApiError::NotFound {
            message: "no such invitation".into(),
        });
    }
    audit::record(
        tx.conn(),
        access.org.id,
        &principal.actor(),
        "invitation.cancelled",
        Some(&email),
        json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/orgs/{org}/tokens`.
pub async fn list_tokens(
    State(state): State<AppState>,
    principal: Principal,
    Path(slug): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let access = OrgAccess::resolve(&state, principal, &slug).await?;
    access.require(Role::Admin)?;
    let mut tx = state.db.begin(access.context()).await?;
    let list = tokens::list(tx.conn()).await?;
    tx.commit().await?;
    Ok(Json(json!({ "tokens": list })))
}

#[derive(Deserialize)]
pub struct NewToken {
    kind: String,
    name: String,
}

/// `POST /api/v1/orgs/{org}/tokens` `{"kind":"ingest"|"read","name"}`: the secret is in this
/// response only.
pub async fn create_token(
    State(state): State<AppState>,
    principal: Principal,
    Path(slug): Path<String>,
    JsonBody(body): JsonBody<NewToken>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let mut access = OrgAccess::resolve(&state, principal, &slug).await?;
    access.require(Role::Admin)?;
    let kind = TokenKind::parse(&body.kind).ok_or_else(|| ApiError::BadRequest {
        code: "invalid_token_kind",
        message: "kind is `ingest` or `read`".into(),
    })?;
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::BadRequest {
            code: "invalid_name",
            message: "a token name is 1 to 200 characters".into(),
        });
    }
    let mut tx = access.begin_write(&state, Role::Admin).await?;
    let token = tokens::create(tx.conn(), access.org.id, kind, name, principal.user_id()).await?;
    audit::record(
        tx.conn(),
        access.org.id,
        &principal.actor(),
        "token.created",
        Some(&format!("token:{}", token.id)),
        json!({ "kind": kind.as_str(), "name": name }),
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({ "id": token.id, "kind": kind.as_str(), "name": name, "secret": token.secret }),
        ),
    ))
}

/// `DELETE /api/v1/orgs/{org}/tokens/{id}`.
pub async fn revoke_token(
    State(state): State<AppState>,
    principal: Principal,
    Path((slug, id)): Path<(String, Uuid)>,
) -> Result<StatusCode, ApiError> {
    let mut access = OrgAccess::resolve(&state, principal, &slug).await?;
    access.require(Role::Admin)?;
    let mut tx = access.begin_write(&state, Role::Admin).await?;
    if !tokens::revoke(tx.conn(), id).await? {
        return Err(ApiError::NotFound {
            message: "no such token".into(),
        });
    }
    audit::record(
        tx.conn(),
        access.org.id,
        &principal.actor(),
        "token.revoked",
        Some(&format!("token:{id}")),
        json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct AuditQuery {
    before: Option<i64>,
    limit: Option<i64>,
}

/// `GET /api/v1/orgs/{org}/audit?before=&limit=`: newest first.
pub async fn audit_log(
    State(state): State<AppState>,
    principal: Principal,
    Path(slug): Path<String>,
    Query(page): Query<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    let access = OrgAccess::resolve(&state, principal, &slug).await?;
    access.require(Role::Admin)?;
    let limit = page.limit.unwrap_or(100).clamp(1, 500);
    let mut tx = state.db.begin(access.context()).await?;
    let entries = audit::page(tx.conn(), access.org.id, page.before, limit).await?;
    tx.commit().await?;
    let next = (entries.len() as i64 == limit)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    Ok(Json(json!({ "entries": entries, "next_before": next })))
}

/// `GET /api/v1/orgs/{org}/settings`.
pub async fn settings(
    State(state): State<AppState>,
    principal: Principal,
    Path(slug): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let access = OrgAccess::resolve(&state, principal, &slug).await?;
    access.require(Role::Viewer)?;
    let mut tx = state.db.begin(access.context()).await?;
    let current = org_settings::get(tx.conn(), access.org.id).await?;
    tx.commit().await?;
    Ok(Json(json!({ "settings": current })))
}

/// `PATCH /api/v1/orgs/{org}/settings` with any of the fields.
pub async fn update_settings(
    State(state): State<AppState>,
    principal: Principal,
    Path(slug): Path<String>,
    JsonBody(patch): JsonBody<SettingsPatch>,
) -> Result<Json<Value>, ApiError> {
    let mut access = OrgAccess::resolve(&state, principal, &slug).await?;
    access.require(Role::Admin)?;
    let mut tx = access.begin_write(&state, Role::Admin).await?;
    let next = org_settings::update(tx.conn(), access.org.id, &patch).await?;
    audit::record(
        tx.conn(),
        access.org.id,
        &principal.actor(),
        "settings.updated",
        None,
        json!(next),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(json!({ "settings": next })))
}
