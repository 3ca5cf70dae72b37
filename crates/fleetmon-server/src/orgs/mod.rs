//! Organizations and who may do what in them: roles, memberships, invitations, the audit log.
//!
//! Everything here runs in tenant transactions; which org a transaction may touch is fixed when
//! it begins, so these functions can only ever act on that org.

pub mod audit;
pub mod members;
pub mod settings;

use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::db::sql::{query, query_as};
use crate::db::DbError;

/// Roles, weakest first: each can do everything the ones before it can.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    serde::Deserialize,
    clap::ValueEnum,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything in the org.
    Viewer,
    /// Also acts on jobs.
    Member,
    /// Also manages tokens, settings and members.
    Admin,
    /// Also manages owners and deletes the org.
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Member => "member",
            Self::Admin => "admin",
            Self::Owner => "owner",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "viewer" => Some(Self::Viewer),
            "member" => Some(Self::Member),
            "admin" => Some(Self::Admin),
            "owner" => Some(Self::Owner),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Org {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// An org as one of its members sees it in a listing.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct MemberOrg {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    pub role: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum OrgError {
    #[error("an organization {0:?} already exists")]
    SlugTaken(String),
    #[error("{0:?} is not a valid slug: use 1 to 63 lowercase letters, digits and dashes, starting and ending with a letter or digit")]
    BadSlug(String),
    #[error("a name is 1 to 200 characters")]
    BadName,
    #[error(transparent)]
    Db(#[from] DbError),
}

pub fn valid_slug(slug: &str) -> bool {
    let bytes = slug.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// Creates an org in the transaction of `TenantContext::org(id)` (the id chosen beforehand, so
/// the org and its first owner are written in one transaction).
pub async fn create(
    conn: &mut PgConnection,
    id: Uuid,
    slug: &str,
    name: &str,
    owner: Option<Uuid>,
) -> Result<Org, OrgError> {
    if !valid_slug(slug) {
        return Err(OrgError::BadSlug(slug.to_string()));
    }
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(OrgError::BadName);
    }
    let org: Org = query_as(
        "INSERT INTO organizations (id, slug, name) VALUES ($1, $2, $3)
         RETURNING id, slug, name, created_at",
    )
    .bind(id)
    .bind(slug)
    .bind(name)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") => {
            OrgError::SlugTaken(slug.to_string())
        }
        _ => OrgError::Db(e.into()),
    })?;
    if let Some(owner) = owner {
        query("INSERT INTO memberships (org_id, user_id, role) VALUES ($1, $2, 'owner')")
            .bind(id)
            .bind(owner)
            .execute(&mut *conn)
            .await
            .map_err(DbError::from)?;
    }
    Ok(org)
}

/// The org with `slug`; organizations are global, so this needs no tenant context.
pub async fn by_slug(conn: &mut PgConnection, slug: &str) -> Result<Option<Org>, DbError> {
    let org = query_as("SELECT id, slug, name, created_at FROM organizations WHERE slug = $1")
        .bind(slug)
        .fetch_optional(conn)
        .await?;
    Ok(org)
}

pub async fn by_id(conn: &mut PgConnection, id: Uuid) -> Result<Option<Org>, DbError> {
    let org = query_as("SELECT id, slug, name, created_at FROM organizations WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?;
    Ok(org)
}

/// The orgs of the user of `conn`'s transaction (`TenantContext::none().with_user(..)`; the
/// memberships policy shows a user with no org selected their own memberships only).
pub async fn of_user(conn: &mut PgConnection, user_id: Uuid) -> Result<Vec<MemberOrg>, DbError> {
    Ok(query_as(
        "SELECT o.id, o.slug, o.name, m.role, o.created_at
         FROM memberships m JOIN organizations o ON o.id = m.org_id
         WHERE m.user_id = $1 ORDER BY o.slug",
    )
    .bind(user_id)
    .fetch_all(conn)
    .await?)
}

/// What [`enter`] found.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Whether the session named is live and its user not deleted (`true` when none was named).
    pub session_live: bool,
    /// The org and the user's role in it; `None` when there is no such org or they are not a
    /// member — the caller cannot tell which, and neither can anyone it answers — and when the
    /// session has ended.
    pub membership: Option<(Org, Role)>,
}

/// The session check and org lookup of a user's request, in one statement, in the user's own
/// context (`TenantContext::none().with_user(user_id)`: the memberships policy shows a user with
/// no org selected their own memberships): whether `session` (fleetmon's own sign-in, if the
/// request carries one) is still live, and the org `slug` (if the request names one) with the
/// user's role in it. When the user is a member, the statement also makes that org the
/// transaction's tenant (`fleetmon.org_id`), so the request's own statements follow in the same
/// transaction.
pub async fn enter(
    conn: &mut PgConnection,
    user_id: Uuid,
    session: Option<Uuid>,
    slug: Option<&str>,
) -> Result<Entry, DbError> {
    type Row = (
        bool,
        Option<Uuid>,
        Option<String>,
        Option<String>,
        Option<chrono::DateTime<chrono::Utc>>,
        Option<String>,
        Option<String>,
    );
    let (session_live, id, slug, name, created_at, role, _): Row = query_as(
        "SELECT live.ok, o.id, o.slug, o.name, o.created_at, m.role,
                CASE WHEN o.id IS NOT NULL
                     THEN set_config('fleetmon.org_id', o.id::text, true) END
         FROM (SELECT $2::uuid IS NULL OR EXISTS (
                   SELECT FROM sessions s JOIN users u ON u.id = s.user_id
                   WHERE s.id = $2 AND s.user_id = $1 AND s.revoked_at IS NULL
                     AND s.expires_at > now() AND u.deleted_at IS NULL) AS ok) live
         LEFT JOIN (organizations o JOIN memberships m ON m.org_id = o.id AND m.user_id = $1)
                ON live.ok AND o.slug = $3::text",
    )
    .bind(user_id)
    .bind(session)
    .bind(slug)
    .fetch_one(conn)
    .await?;
    let membership = match (
        id,
        slug,
        name,
        created_at,
        role.as_deref().and_then(Role::parse),
    ) {
        (Some(id), Some(slug), Some(name), Some(created_at), Some(role)) => Some((
            Org {
                id,
                slug,
                name,
                created_at,
            },
            role,
        )),
        _ => None,
    };
    Ok(Entry {
        session_live,
        membership,
    })
}

/// Deletes the org of `conn`'s transaction and, through the foreign keys, all of its data.
pub async fn delete(conn: &mut PgConnection, org_id: Uuid) -> Result<(), DbError> {
    query("DELETE FROM organizations WHERE id = $1")
        .bind(org_id)
        .execute(conn)
        .await?;
    Ok(())
}
