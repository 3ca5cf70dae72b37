//! `/api/v1/me` and `/api/v1/orgs…`: organizations, members, API tokens, settings and the audit
//! log, each endpoint checking the caller's role in the org.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::{Caller, OrgAccess, Principal};
use super::json::JsonBody;
use super::openapi::OrgPath;
use super::params::Params;
use super::{ApiError, AppState};
use crate::auth::tokens::{self, TokenInfo, TokenKind};
use crate::auth::users::{self, Profile};
use crate::db::{DbError, TenantContext};
use crate::orgs::members::{self, Added, Invitation, Member, MemberError};
use crate::orgs::settings::{self as org_settings, OrgSettings, SettingsError, SettingsPatch};
use crate::orgs::{self, audit, MemberOrg, Org, OrgError, Role};
use fleetmon_proto::ErrorBody;

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

#[derive(Serialize, ToSchema)]
pub struct Me {
    user: Profile,
    orgs: Vec<MemberOrg>,
}

/// The signed-in user and their orgs.
#[utoipa::path(get, path = "/api/v1/me", tag = "orgs", security(("bearer" = []), ("session" = [])),
    responses((status = 200, body = Me), (status = 401, body = ErrorBody), (status = 403, description = "An API token, not a user", body = ErrorBody)))]
pub async fn me(State(state): State<AppState>, principal: Principal) -> Result<Json<Me>, ApiError> {
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
    Ok(Json(Me {
        user: profile,
        orgs,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct OrgList {
    /// For a `read` token, its own org with the role `read_token`.
    orgs: Vec<MemberOrg>,
}

/// The orgs the caller can see.
#[utoipa::path(get, path = "/api/v1/orgs", tag = "orgs", security(("bearer" = []), ("session" = [])),
    responses((status = 200, body = OrgList), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<OrgList>, ApiError> {
    let orgs = match principal {
        Principal::User { user_id, .. } => {
            let mut tx = state
                .db
                .begin(TenantContext::none().with_user(user_id))
                .await?;
            let orgs = orgs::of_user(tx.conn(), user_id).await?;
            tx.commit().await?;
            orgs
        }
        Principal::ReadToken { org_id, .. } => {
            let mut tx = state.db.begin(TenantContext::org(org_id)).await?;
            let org = orgs::by_id(tx.conn(), org_id).await?;
            tx.commit().await?;
            org.into_iter()
                .map(|o| MemberOrg {
                    id: o.id,
                    slug: o.slug,
                    name: o.name,
                    role: "read_token".into(),
                    created_at: o.created_at,
                })
                .collect()
        }
    };
    Ok(Json(OrgList { orgs }))
}

#[derive(Deserialize, ToSchema)]
pub struct NewOrg {
    slug: String,
    name: Option<String>,
}

/// An org and the caller's role in it (`null` for a `read` token).
#[derive(Serialize, ToSchema)]
pub struct OrgWithRole {
    org: Org,
    role: Option<Role>,
}

/// Creates an org; the creator becomes its owner.
#[utoipa::path(post, path = "/api/v1/orgs", tag = "orgs", security(("bearer" = []), ("session" = [])),
    request_body = NewOrg,
    responses((status = 201, body = OrgWithRole), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "An API token, not a user", body = ErrorBody), (status = 409, description = "`slug_taken`", body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    JsonBody(body): JsonBody<NewOrg>,
) -> Result<(StatusCode, Json<OrgWithRole>), ApiError> {
    let name = body.name.as_deref().unwrap_or(&body.slug);
    let org = create_org(&state, principal, &body.slug, name).await?;
    Ok((
        StatusCode::CREATED,
        Json(OrgWithRole {
            org,
            role: Some(Role::Owner),
        }),
    ))
}

/// Creates an org with the signed-in user as its owner, and records it in its audit log.
pub(crate) async fn create_org(
    state: &AppState,
    principal: Principal,
    slug: &str,
    name: &str,
) -> Result<Org, ApiError> {
    let user_id = principal.require_user()?;
    let id = Uuid::new_v4();
    let mut tx = state
        .db
        .begin(TenantContext::org(id).with_user(user_id))
        .await?;
    let org = orgs::create(tx.conn(), id, slug, name, Some(user_id)).await?;
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
    Ok(org)
}

/// One org and the caller's role in it.
#[utoipa::path(get, path = "/api/v1/orgs/{org}", tag = "orgs", params(OrgPath), security(("bearer" = []), ("session" = [])),
    responses((status = 200, body = OrgWithRole), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(slug): Path<String>,
) -> Result<Json<OrgWithRole>, ApiError> {
    let access = OrgAccess::resolve(&state, caller, &slug).await?;
    access.require(Role::Viewer)?;
    Ok(Json(OrgWithRole {
        org: access.org,
        role: access.role,
    }))
}

/// Deletes an org and all of its data; owners only.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}", tag = "orgs", params(OrgPath), security(("bearer" = []), ("session" = [])),
    responses((status = 204, description = "Deleted"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(slug): Path<String>,
) -> Result<StatusCode, ApiError> {
    let mut access = OrgAccess::resolve(&state, caller, &slug).await?;
    access.require(Role::Owner)?;
    let mut tx = access.begin_write(&state, Role::Owner).await?;
    orgs::delete(tx.conn(), access.org.id).await?;
    tx.commit().await?;
    tracing::info!(org = %access.org.slug, actor = %access.principal.actor(), "deleted an organization");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct MemberList {
    members: Vec<Member>,
    /// Emails with a role waiting for their first sign-in.
    invitations: Vec<Invitation>,
}

/// Members and pending invitations.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/members", tag = "orgs", params(OrgPath), security(("bearer" = []), ("session" = [])),
    responses((status = 200, body = MemberList), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn members(
    State(state): State<AppState>,
    caller: Caller,
    Path(slug): Path<String>,
) -> Result<Json<MemberList>, ApiError> {
    let (access, mut tx) = OrgAccess::open(&state, caller, &slug).await?;
    access.require(Role::Viewer)?;
    let list = members::list(tx.conn(), access.org.id).await?;
    let invited = members::invitations(tx.conn(), access.org.id).await?;
    tx.commit().await?;
    Ok(Json(MemberList {
        members: list,
        invitations: invited,
    }))
}

#[derive(Deserialize, ToSchema)]
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

/// Gives a role to everyone signed in with this verified email, or invites the email.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/members", tag = "orgs", params(OrgPath), security(("bearer" = []), ("session" = [])),
    request_body = AddMember,
    responses((status = 201, body = Added), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn add_member(
    State(state): State<AppState>,
    caller: Caller,
    Path(slug): Path<String>,
    JsonBody(body): JsonBody<AddMember>,
) -> Result<(StatusCode, Json<Added>), ApiError> {
    let mut access = OrgAccess::resolve(&state, caller, &slug).await?;
    let added = add_org_member(&state, &mut access, &body.email, body.role).await?;
    Ok((StatusCode::CREATED, Json(added)))
}

/// Gives `role` to the users with this verified email, or invites it, with the audit entry (the
/// API's and the dashboard's adding). Admins add; only owners give the owner role.
pub(crate) async fn add_org_member(
    state: &AppState,
    access: &mut OrgAccess,
    email: &str,
    role: Role,
) -> Result<Added, ApiError> {
    let mut tx = access.begin_write(state, needed(role)).await?;
    let added = members::add_by_email(
        tx.conn(),
        access.org.id,
        email,
        role,
        access.principal.user_id(),
        access.role == Some(Role::Owner),
    )
    .await?;
    audit::record(
        tx.conn(),
        access.org.id,
        &access.principal.actor(),
        "member.added",
        Some(&email.trim().to_lowercase()),
        json!({ "role": role, "result": added }),
    )
    .await?;
    tx.commit().await?;
    Ok(added)
}

#[derive(Deserialize, ToSchema)]
pub struct ChangeRole {
    role: Role,
}

#[derive(Serialize, ToSchema)]
pub struct RoleChanged {
    user_id: Uuid,
    role: Role,
}

/// Changes a member's role; only owners make or unmake owners.
#[utoipa::path(patch, path = "/api/v1/orgs/{org}/members/{user_id}", tag = "orgs", params(OrgPath, ("user_id" = Uuid, Path)),
    security(("bearer" = []), ("session" = [])), request_body = ChangeRole,
    responses((status = 200, body = RoleChanged), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "`last_owner`", body = ErrorBody)))]
pub async fn change_role(
    State(state): State<AppState>,
    caller: Caller,
    Path((slug, user_id)): Path<(String, Uuid)>,
    JsonBody(body): JsonBody<ChangeRole>,
) -> Result<Json<RoleChanged>, ApiError> {
    let mut access = OrgAccess::resolve(&state, caller, &slug).await?;
    change_member_role(&state, &mut access, user_id, body.role).await?;
    Ok(Json(RoleChanged {
        user_id,
        role: body.role,
    }))
}

/// Gives the member `user_id` the role `role`, with the audit entry (the API's and the
/// dashboard's change). Admins change roles; only owners make or unmake owners; the org keeps
/// an owner.
pub(crate) async fn change_member_role(
    state: &AppState,
    access: &mut OrgAccess,
    user_id: Uuid,
    role: Role,
) -> Result<(), ApiError> {
    let mut tx = access.begin_write(state, needed(role)).await?;
    let current = members::role_for_update(tx.conn(), access.org.id, user_id).await?;
    manage(access, current)?;
    members::set_role(tx.conn(), access.org.id, user_id, role).await?;
    audit::record(
        tx.conn(),
        access.org.id,
        &access.principal.actor(),
        "member.role_changed",
        Some(&format!("user:{user_id}")),
        json!({ "from": current, "to": role }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Removes a member: admins remove others; anyone may leave.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/members/{user_id}", tag = "orgs", params(OrgPath, ("user_id" = Uuid, Path)),
    security(("bearer" = []), ("session" = [])),
    responses((status = 204, description = "Removed"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "`last_owner`", body = ErrorBody)))]
pub async fn remove_member(
    State(state): State<AppState>,
    caller: Caller,
    Path((slug, user_id)): Path<(String, Uuid)>,
) -> Result<StatusCode, ApiError> {
    let mut access = OrgAccess::resolve(&state, caller, &slug).await?;
    remove_org_member(&state, &mut access, user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes the member `user_id`, with the audit entry (the API's and the dashboard's removal):
/// admins remove others (only owners remove owners), anyone may leave, and the org keeps an
/// owner.
pub(crate) async fn remove_org_member(
    state: &AppState,
    access: &mut OrgAccess,
    user_id: Uuid,
) -> Result<(), ApiError> {
    let leaving = access.principal.user_id() == Some(user_id);
    let mut tx = access
        .begin_write(state, if leaving { Role::Viewer } else { Role::Admin })
        .await?;
    let current = members::role_for_update(tx.conn(), access.org.id, user_id).await?;
    if !leaving {
        manage(access, current)?;
    }
    members::remove(tx.conn(), access.org.id, user_id).await?;
    audit::record(
        tx.conn(),
        access.org.id,
        &access.principal.actor(),
        "member.removed",
        Some(&format!("user:{user_id}")),
        json!({ "role": current }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Cancels a pending invitation.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/invitations/{email}", tag = "orgs", params(OrgPath, ("email" = String, Path)),
    security(("bearer" = []), ("session" = [])),
    responses((status = 204, description = "Cancelled"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn cancel_invitation(
    State(state): State<AppState>,
    caller: Caller,
    Path((slug, email)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let mut access = OrgAccess::resolve(&state, caller, &slug).await?;
    cancel_member_invitation(&state, &mut access, &email).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Cancels the invitation of `email`, with the audit entry (the API's and the dashboard's
/// cancellation). Admins only.
pub(crate) async fn cancel_member_invitation(
    state: &AppState,
    access: &mut OrgAccess,
    email: &str,
) -> Result<(), ApiError> {
    let mut tx = access.begin_write(state, Role::Admin).await?;
    if !members::cancel_invitation(tx.conn(), access.org.id, email).await? {
        return Err(ApiError::NotFound {
            message: "no such invitation".into(),
        });
    }
    audit::record(
        tx.conn(),
        access.org.id,
        &access.principal.actor(),
        "invitation.cancelled",
        Some(email),
        json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

#[derive(Serialize, ToSchema)]
pub struct TokenList {
    tokens: Vec<TokenInfo>,
}

/// The org's API tokens (never their secrets); admins only.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/tokens", tag = "orgs", params(OrgPath), security(("bearer" = []), ("session" = [])),
    responses((status = 200, body = TokenList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
    Path(slug): Path<String>,
) -> Result<Json<TokenList>, ApiError> {
    let (access, mut tx) = OrgAccess::open(&state, caller, &slug).await?;
    access.require(Role::Admin)?;
    let list = tokens::list(tx.conn()).await?;
    tx.commit().await?;
    Ok(Json(TokenList { tokens: list }))
}

#[derive(Deserialize, ToSchema)]
pub struct NewToken {
    /// `ingest` (agents send events) or `read` (reads the org's data).
    kind: String,
    name: String,
}

/// A new token; `secret` is in this answer only.
#[derive(Serialize, ToSchema)]
pub struct CreatedToken {
    pub id: Uuid,
    pub kind: &'static str,
    pub name: String,
    pub secret: String,
}

/// Creates an API token; admins only. The secret is shown in this answer only.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/tokens", tag = "orgs", params(OrgPath), security(("bearer" = []), ("session" = [])),
    request_body = NewToken,
    responses((status = 201, body = CreatedToken), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(slug): Path<String>,
    JsonBody(body): JsonBody<NewToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let created = create_api_token(&state, caller, &slug, &body.kind, &body.name, None).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Creates a `kind` token named `name` in the org `slug`, with its audit entry (the API's and
/// the dashboard's creation). Admins only. A form's one-time `nonce` names the token it creates
/// ([`tokens::id_for_form`]): sent again, it creates nothing and is `409 token_exists`.
pub(crate) async fn create_api_token(
    state: &AppState,
    caller: impl Into<Caller>,
    slug: &str,
    kind: &str,
    name: &str,
    nonce: Option<Uuid>,
) -> Result<CreatedToken, ApiError> {
    let mut access = OrgAccess::resolve(state, caller, slug).await?;
    access.require(Role::Admin)?;
    let kind = TokenKind::parse(kind).ok_or_else(|| ApiError::BadRequest {
        code: "invalid_token_kind",
        message: "kind is `ingest` or `read`".into(),
    })?;
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::BadRequest {
            code: "invalid_name",
            message: "a token name is 1 to 200 characters".into(),
        });
    }
    let id = nonce.map_or_else(Uuid::new_v4, |nonce| {
        tokens::id_for_form(access.org.id, nonce)
    });
    let mut tx = access.begin_write(state, Role::Admin).await?;
    let created = tokens::create_once(
        tx.conn(),
        access.org.id,
        id,
        kind,
        name,
        access.principal.user_id(),
    )
    .await?;
    let Some(token) = created else {
        return Err(ApiError::Conflict {
            code: "token_exists",
            message: "this form has created its token already".into(),
        });
    };
    audit::record(
        tx.conn(),
        access.org.id,
        &access.principal.actor(),
        "token.created",
        Some(&format!("token:{}", token.id)),
        json!({ "kind": kind.as_str(), "name": name }),
    )
    .await?;
    tx.commit().await?;
    Ok(CreatedToken {
        id: token.id,
        kind: kind.as_str(),
        name: name.to_string(),
        secret: token.secret,
    })
}

/// Revokes an API token at once; admins only.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/tokens/{id}", tag = "orgs", params(OrgPath, ("id" = Uuid, Path)),
    security(("bearer" = []), ("session" = [])),
    responses((status = 204, description = "Revoked"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    Path((slug, id)): Path<(String, Uuid)>,
) -> Result<StatusCode, ApiError> {
    revoke_api_token(&state, caller, &slug, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revokes the token `id` of the org `slug`, with its audit entry (the API's and the
/// dashboard's revocation). Admins only.
pub(crate) async fn revoke_api_token(
    state: &AppState,
    caller: impl Into<Caller>,
    slug: &str,
    id: Uuid,
) -> Result<(), ApiError> {
    let mut access = OrgAccess::resolve(state, caller, slug).await?;
    access.require(Role::Admin)?;
    let mut tx = access.begin_write(state, Role::Admin).await?;
    if !tokens::revoke(tx.conn(), id).await? {
        return Err(ApiError::NotFound {
            message: "no such token".into(),
        });
    }
    audit::record(
        tx.conn(),
        access.org.id,
        &access.principal.actor(),
        "token.revoked",
        Some(&format!("token:{id}")),
        json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// The `next_before` of the previous page.
    pub before: Option<i64>,
    /// 1 to 500; 100 by default.
    pub limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    pub entries: Vec<audit::Entry>,
    /// The cursor of the next page, when this one was full.
    pub next_before: Option<i64>,
}

/// The audit log, newest first; admins only.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/audit", tag = "orgs", params(OrgPath, AuditQuery), security(("bearer" = []), ("session" = [])),
    responses((status = 200, body = AuditPage), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn audit_log(
    State(state): State<AppState>,
    caller: Caller,
    Path(slug): Path<String>,
    Params(page): Params<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let (access, mut tx) = OrgAccess::open(&state, caller, &slug).await?;
    access.require(Role::Admin)?;
    let found = audit_page(tx.conn(), access.org.id, &page).await?;
    tx.commit().await?;
    Ok(Json(found))
}

/// The page of the org's audit log that `page` asks for, with the cursor of the next one (the
/// API's and the dashboard's listing). The caller has checked that the visitor is an admin.
pub(crate) async fn audit_page(
    conn: &mut PgConnection,
    org_id: Uuid,
    page: &AuditQuery,
) -> Result<AuditPage, DbError> {
    let limit = page.limit.unwrap_or(100).clamp(1, 500);
    let entries = audit::page(conn, org_id, page.before, limit).await?;
    let next = (entries.len() as i64 == limit)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    Ok(AuditPage {
        entries,
        next_before: next,
    })
}

#[derive(Serialize, ToSchema)]
pub struct SettingsBody {
    settings: OrgSettings,
}

/// The org's liveness thresholds and retention.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/settings", tag = "orgs", params(OrgPath), security(("bearer" = []), ("session" = [])),
    responses((status = 200, body = SettingsBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn settings(
    State(state): State<AppState>,
    caller: Caller,
    Path(slug): Path<String>,
) -> Result<Json<SettingsBody>, ApiError> {
    let (access, mut tx) = OrgAccess::open(&state, caller, &slug).await?;
    access.require(Role::Viewer)?;
    let current = org_settings::get(tx.conn(), access.org.id).await?;
    tx.commit().await?;
    Ok(Json(SettingsBody { settings: current }))
}

/// Changes any of the settings; admins only.
#[utoipa::path(patch, path = "/api/v1/orgs/{org}/settings", tag = "orgs", params(OrgPath), security(("bearer" = []), ("session" = [])),
    request_body = SettingsPatch,
    responses((status = 200, body = SettingsBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_settings(
    State(state): State<AppState>,
    caller: Caller,
    Path(slug): Path<String>,
    JsonBody(patch): JsonBody<SettingsPatch>,
) -> Result<Json<SettingsBody>, ApiError> {
    let mut access = OrgAccess::resolve(&state, caller, &slug).await?;
    let next = update_org_settings(&state, &mut access, &patch).await?;
    Ok(Json(SettingsBody { settings: next }))
}

/// Applies `patch` to the org's settings (validated as a whole), with the audit entry (the
/// API's and the dashboard's change). Admins only.
pub(crate) async fn update_org_settings(
    state: &AppState,
    access: &mut OrgAccess,
    patch: &SettingsPatch,
) -> Result<OrgSettings, ApiError> {
    let mut tx = access.begin_write(state, Role::Admin).await?;
    let next = org_settings::update(tx.conn(), access.org.id, patch).await?;
    audit::record(
        tx.conn(),
        access.org.id,
        &access.principal.actor(),
        "settings.updated",
        None,
        json!(next),
    )
    .await?;
    tx.commit().await?;
    Ok(next)
}
