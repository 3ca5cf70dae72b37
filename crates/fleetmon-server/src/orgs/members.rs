//! Members and invitations of an org, and the rule that an org always keeps an owner.

use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use super::Role;
use crate::db::sql::{query, query_as, query_scalar};
use crate::db::DbError;

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Member {
    pub user_id: Uuid,
    pub email: Option<String>,
    pub name: Option<String>,
    pub role: String,
    pub since: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Invitation {
    pub email: String,
    pub role: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    #[error("{0:?} is not an email address")]
    BadEmail(String),
    #[error("no such member")]
    NotMember,
    #[error("only an owner can change an owner's role")]
    OwnerProtected,
    #[error("the org must keep at least one owner")]
    LastOwner,
    #[error(transparent)]
    Db(#[from] DbError),
}

/// What adding someone by email did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum Added {
    /// Users whose providers vouch for the email got the role now.
    Member { user_ids: Vec<Uuid> },
    /// Nobody with that verified email has signed in yet: the role applies when they do.
    Invited,
}

pub async fn list(conn: &mut PgConnection, org_id: Uuid) -> Result<Vec<Member>, DbError> {
    Ok(query_as(
        "SELECT m.user_id, u.email, u.name, m.role, m.created_at AS since
         FROM memberships m JOIN users u ON u.id = m.user_id
         WHERE m.org_id = $1 AND u.deleted_at IS NULL ORDER BY lower(u.email), m.user_id",
    )
    .bind(org_id)
    .fetch_all(conn)
    .await?)
}

pub async fn invitations(
    conn: &mut PgConnection,
    org_id: Uuid,
) -> Result<Vec<Invitation>, DbError> {
    Ok(
        query_as(
            "SELECT email, role, created_at FROM invitations WHERE org_id = $1 ORDER BY email",
        )
        .bind(org_id)
        .fetch_all(conn)
        .await?,
    )
}

/// Gives the role to every user whose provider verified `email`, or invites the email when there
/// is none. An existing membership takes the new role, except an owner's unless
/// `may_manage_owners`.
pub async fn add_by_email(
    conn: &mut PgConnection,
    org_id: Uuid,
    email: &str,
    role: Role,
    invited_by: Option<Uuid>,
    may_manage_owners: bool,
) -> Result<Added, MemberError> {
    let email = email.trim().to_lowercase();
    if !email.contains('@') || email.len() > 320 || email.chars().any(char::is_whitespace) {
        return Err(MemberError::BadEmail(email));
    }
    let user_ids: Vec<Uuid> = query_scalar(
        "INSERT INTO memberships (org_id, user_id, role)
         SELECT $1, id, $3 FROM users
         WHERE lower(email) = $2 AND email_verified AND deleted_at IS NULL
         ON CONFLICT (org_id, user_id) DO UPDATE SET role = excluded.role
             WHERE $4 OR memberships.role <> 'owner'
         RETURNING user_id",
    )
    .bind(org_id)
    .bind(&email)
    .bind(role.as_str())
    .bind(may_manage_owners)
    .fetch_all(&mut *conn)
    .await
    .map_err(DbError::from)?;
    if !user_ids.is_empty() {
        ensure_owner_remains(conn, org_id).await?;
        return Ok(Added::Member { user_ids });
    }
    let known: bool = query_scalar(
        "SELECT EXISTS (SELECT FROM users WHERE lower(email) = $1 AND email_verified AND deleted_at IS NULL)",
    )
    .bind(&email)
    .fetch_one(&mut *conn)
    .await
    .map_err(DbError::from)?;
    if known {
        // The conflict update skipped them: they are an owner, and the caller may not change that.
        return Err(MemberError::OwnerProtected);
    }
    query(
        "INSERT INTO invitations (org_id, email, role, invited_by) VALUES ($1, $2, $3, $4)
         ON CONFLICT (org_id, email) DO UPDATE SET role = excluded.role, invited_by = excluded.invited_by",
    )
    .bind(org_id)
    .bind(&email)
    .bind(role.as_str())
    .bind(invited_by)
    .execute(conn)
    .await
    .map_err(DbError::from)?;
    Ok(Added::Invited)
}

pub async fn cancel_invitation(
    conn: &mut PgConnection,
    org_id: Uuid,
    email: &str,
) -> Result<bool, DbError> {
    let done = query("DELETE FROM invitations WHERE org_id = $1 AND email = $2")
        .bind(org_id)
        .bind(email.trim().to_lowercase())
        .execute(conn)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// The current role of a member, locking the org's owners so that two concurrent demotions
/// cannot both pass the last-owner check.
pub async fn role_for_update(
    conn: &mut PgConnection,
    org_id: Uuid,
    user_id: Uuid,
) -> Result<Role, MemberError> {
    confirm_role(conn, org_id, user_id)
        .await?
        .ok_or(MemberError::NotMember)
}

/// A member's role, read after locking the org's owners and held (`FOR SHARE`) until the
/// transaction ends: for the caller of a change, a member demoted or removed meanwhile cannot
/// act with the role they lost.
pub async fn confirm_role(
    conn: &mut PgConnection,
    org_id: Uuid,
    user_id: Uuid,
) -> Result<Option<Role>, DbError> {
    lock_owners(conn, org_id).await?;
    let role: Option<String> =
        query_scalar("SELECT role FROM memberships WHERE org_id = $1 AND user_id = $2 FOR SHARE")
            .bind(org_id)
            .bind(user_id)
            .fetch_optional(conn)
            .await?;
    Ok(role.as_deref().and_then(Role::parse))
}

pub async fn set_role(
    conn: &mut PgConnection,
    org_id: Uuid,
    user_id: Uuid,
    role: Role,
) -> Result<(), MemberError> {
    role_for_update(conn, org_id, user_id).await?;
    query("UPDATE memberships SET role = $3 WHERE org_id = $1 AND user_id = $2")
        .bind(org_id)
        .bind(user_id)
        .bind(role.as_str())
        .execute(&mut *conn)
        .await
        .map_err(DbError::from)?;
    ensure_owner_remains(conn, org_id).await
}

pub async fn remove(
    conn: &mut PgConnection,
    org_id: Uuid,
    user_id: Uuid,
) -> Result<(), MemberError> {
    role_for_update(conn, org_id, user_id).await?;
    query("DELETE FROM memberships WHERE org_id = $1 AND user_id = $2")
        .bind(org_id)
        .bind(user_id)
        .execute(&mut *conn)
        .await
        .map_err(DbError::from)?;
    ensure_owner_remains(conn, org_id).await
}

async fn lock_owners(conn: &mut PgConnection, org_id: Uuid) -> Result<(), DbError> {
    // In one order, so that concurrent changes queue instead of deadlocking.
    query("SELECT 1 FROM memberships WHERE org_id = $1 AND role = 'owner' ORDER BY user_id FOR UPDATE")
        .bind(org_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Checked after a change, inside its transaction: refusing rolls the change back.
async fn ensure_owner_remains(conn: &mut PgConnection, org_id: Uuid) -> Result<(), MemberError> {
    let owners: i64 = query_scalar(
        "SELECT count(*) FROM memberships m JOIN users u ON u.id = m.user_id
         WHERE m.org_id = $1 AND m.role = 'owner' AND u.deleted_at IS NULL",
    )
    .bind(org_id)
    .fetch_one(conn)
    .await
    .map_err(DbError::from)?;
    if owners == 0 {
        return Err(MemberError::LastOwner);
    }
    Ok(())
}

/// The orgs that invited `user_id`'s verified email, read in the user's own context
/// (`TenantContext::none().with_user(user_id)`): org id and role each.
pub async fn invitations_for_user(conn: &mut PgConnection) -> Result<Vec<(Uuid, String)>, DbError> {
    Ok(
        query_as("SELECT org_id, role FROM invitations ORDER BY org_id")
            .fetch_all(conn)
            .await?,
    )
}

/// Turns the invitation of `org_id` (the transaction's org) for `user_id`'s verified email into
/// a membership. An existing membership keeps its role.
pub async fn accept_invitation(
    conn: &mut PgConnection,
    org_id: Uuid,
    user_id: Uuid,
) -> Result<(), DbError> {
    query(
        "WITH taken AS (
             DELETE FROM invitations i USING users u
             WHERE i.org_id = $1 AND u.id = $2 AND u.email_verified AND u.deleted_at IS NULL
               AND i.email = lower(u.email)
             RETURNING i.role)
         INSERT INTO memberships (org_id, user_id, role) SELECT $1, $2, role FROM taken
         ON CONFLICT (org_id, user_id) DO NOTHING",
    )
    .bind(org_id)
    .bind(user_id)
    .execute(conn)
    .await?;
    Ok(())
}
