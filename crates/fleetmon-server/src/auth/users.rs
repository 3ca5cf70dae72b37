//! User sync from verified claims: the provider-neutral replacement for Neon's
//! `neon_auth.users_sync`. A user is one row per (issuer, subject), created on their first
//! request or sign-in and kept current from each later token — writing at most once a minute per
//! user when nothing changed.

use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::db::sql::{query_as, query_scalar};
use crate::db::DbError;

/// Who a provider says the bearer is, from claims whose signature has been checked.
#[derive(Debug, Clone)]
pub struct Identity {
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    pub claims: Value,
}

/// The outcome of a sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synced {
    /// The user; whether invitations may now apply to them (new, or their email just became
    /// verified or changed); and whether the row was written (so org claims are re-applied at
    /// most as often as `last_seen_at` is).
    Active {
        user_id: Uuid,
        check_invitations: bool,
        refreshed: bool,
    },
    /// Deleted by their provider: no access, whatever the token says.
    Deleted,
}

/// A user row as sync compares it: id, deleted, email, email_verified, name, seen within a
/// minute, never seen (created by a provider's webhook before the user's first visit).
type KnownUser = (Uuid, bool, Option<String>, bool, Option<String>, bool, bool);

pub async fn sync(conn: &mut PgConnection, identity: &Identity) -> Result<Synced, DbError> {
    let known: Option<KnownUser> = query_as(
        "SELECT id, deleted_at IS NOT NULL, email, email_verified, name,
                coalesce(last_seen_at > now() - interval '1 minute', false), last_seen_at IS NULL
         FROM users WHERE issuer = $1 AND subject = $2",
    )
    .bind(&identity.issuer)
    .bind(&identity.subject)
    .fetch_optional(&mut *conn)
    .await?;
    let email_changed = match &known {
        Some((_, true, ..)) => return Ok(Synced::Deleted),
        Some((user_id, _, email, verified, name, fresh, never_seen)) => {
            // A first visit counts as a change: invitations made meanwhile apply now.
            let email_changed =
                *never_seen || *email != identity.email || *verified != identity.email_verified;
            if !email_changed && *name == identity.name && *fresh {
                return Ok(Synced::Active {
                    user_id: *user_id,
                    check_invitations: false,
                    refreshed: false,
                });
            }
            email_changed
        }
        None => true,
    };
    // The upsert skips deleted users, so a deletion racing this sync still wins.
    let user_id: Option<Uuid> = query_scalar(
        "INSERT INTO users AS u (issuer, subject, email, email_verified, name, raw_claims, last_seen_at)
         VALUES ($1, $2, $3, $4, $5, $6, now())
         ON CONFLICT (issuer, subject) DO UPDATE SET
             email = excluded.email, email_verified = excluded.email_verified,
             name = excluded.name, raw_claims = excluded.raw_claims, last_seen_at = now(),
             updated_at = CASE WHEN (u.email, u.email_verified, u.name)
                                    IS DISTINCT FROM (excluded.email, excluded.email_verified, excluded.name)
                               THEN now() ELSE u.updated_at END
         WHERE u.deleted_at IS NULL
         RETURNING id",
    )
    .bind(&identity.issuer)
    .bind(&identity.subject)
    .bind(&identity.email)
    .bind(identity.email_verified)
    .bind(&identity.name)
    .bind(&identity.claims)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(match user_id {
        Some(user_id) => Synced::Active {
            user_id,
            check_invitations: email_changed && identity.email_verified,
            refreshed: true,
        },
        None => Synced::Deleted,
    })
}

/// A user's profile, as `GET /me` shows it.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Profile {
    pub id: Uuid,
    pub issuer: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// The profile of a user who is not deleted.
pub async fn profile(conn: &mut PgConnection, user_id: Uuid) -> Result<Option<Profile>, DbError> {
    Ok(query_as(
        "SELECT id, issuer, email, email_verified, name, created_at FROM users
         WHERE id = $1 AND deleted_at IS NULL",
    )
    .bind(user_id)
    .fetch_optional(conn)
    .await?)
}
