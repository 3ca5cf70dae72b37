//! Browser sessions: revocable, server-side, one row in `sessions` each.
//!
//! The browser holds the refresh secret (`fms_<32 base62>`) in an HttpOnly cookie; only its
//! SHA-256 is stored. Access tokens name their session (`sid`), so revoking a session — sign-out,
//! or a user deleted by their provider — ends its access at the next request, not at expiry.

use std::net::IpAddr;

use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::db::sql::{query, query_as, query_scalar};
use crate::db::DbError;

/// How long a session lasts from sign-in, however active it is.
pub const SESSION_LIFETIME: chrono::TimeDelta = chrono::TimeDelta::days(14);

const SECRET_PREFIX: &str = "fms_";
const SECRET_LEN: usize = 32;

/// A session just opened: the refresh secret exists only here and in the browser's cookie.
pub struct NewSession {
    pub id: Uuid,
    pub refresh_secret: String,
}

/// A live session, found by its refresh secret.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Session {
    pub id: Uuid,
    pub user_id: Uuid,
    pub provider: String,
}

/// Whether `secret` could be a refresh secret at all; anything else is not looked up.
fn shaped(secret: &str) -> bool {
    secret.starts_with(SECRET_PREFIX) && secret.len() == SECRET_PREFIX.len() + SECRET_LEN
}

fn hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

pub async fn open(
    conn: &mut PgConnection,
    user_id: Uuid,
    provider: &str,
    user_agent: Option<&str>,
    client_addr: Option<IpAddr>,
) -> Result<NewSession, DbError> {
    let refresh_secret = format!("{SECRET_PREFIX}{}", super::random_base62(SECRET_LEN));
    let user_agent = user_agent.map(|ua| ua.chars().take(300).collect::<String>());
    let id = query_scalar(
        "INSERT INTO sessions (user_id, provider, refresh_token_hash, expires_at, user_agent, client_addr)
         VALUES ($1, $2, $3, now() + $4, $5, $6::inet) RETURNING id",
    )
    .bind(user_id)
    .bind(provider)
    .bind(hash(&refresh_secret))
    .bind(SESSION_LIFETIME)
    .bind(user_agent)
    .bind(client_addr.map(|addr| addr.to_string()))
    .fetch_one(conn)
    .await?;
    Ok(NewSession { id, refresh_secret })
}

/// The live session a refresh secret belongs to, marking it used. `None` for anything else:
/// unknown, revoked, expired, or its user deleted.
pub async fn refresh(conn: &mut PgConnection, secret: &str) -> Result<Option<Session>, DbError> {
    if !shaped(secret) {
        return Ok(None);
    }
    Ok(query_as(
        "UPDATE sessions s SET last_used_at = now()
         FROM users u
         WHERE s.refresh_token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > now()
           AND u.id = s.user_id AND u.deleted_at IS NULL
         RETURNING s.id, s.user_id, s.provider",
    )
    .bind(hash(secret))
    .fetch_optional(conn)
    .await?)
}

pub async fn revoke(conn: &mut PgConnection, id: Uuid) -> Result<(), DbError> {
    query("UPDATE sessions SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Sign-out: revokes the live session `secret` belongs to, in one statement, and says which it
/// was.
pub async fn revoke_by_secret(
    conn: &mut PgConnection,
    secret: &str,
) -> Result<Option<Session>, DbError> {
    if !shaped(secret) {
        return Ok(None);
    }
    Ok(query_as(
        "UPDATE sessions SET revoked_at = now()
         WHERE refresh_token_hash = $1 AND revoked_at IS NULL
         RETURNING id, user_id, provider",
    )
    .bind(hash(secret))
    .fetch_optional(conn)
    .await?)
}
