//! Built-in accounts (the `local` provider): a `users` row like any provider's, plus the
//! argon2id hash of its password in `local_accounts`.

use sqlx::PgConnection;
use uuid::Uuid;

use super::password::{self, PasswordError};
use crate::db::sql::{query, query_as, query_scalar};
use crate::db::DbError;

/// The `issuer` of built-in accounts in `users`: stable, unlike the server's public URL.
pub const ISSUER: &str = "fleetmon:local";

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("{0}")]
    Password(#[from] PasswordError),
    #[error("{0:?} is not an email address")]
    BadEmail(String),
    #[error("a local account for {0} already exists")]
    Exists(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Creates a built-in account; returns the user's id. Runs in a transaction without tenant
/// context (the tables are global).
pub async fn create_account(
    conn: &mut PgConnection,
    email: &str,
    name: Option<&str>,
    password: &str,
) -> Result<Uuid, AccountError> {
    let email = email.trim();
    if !email.contains('@') || email.len() > 320 || email.chars().any(char::is_whitespace) {
        return Err(AccountError::BadEmail(email.to_string()));
    }
    password::check_policy(password)?;
    let exists: bool =
        query_scalar("SELECT EXISTS (SELECT FROM local_accounts WHERE lower(email) = lower($1))")
            .bind(email)
            .fetch_one(&mut *conn)
            .await
            .map_err(DbError::from)?;
    if exists {
        return Err(AccountError::Exists(email.to_string()));
    }
    let user_id = Uuid::new_v4();
    query(
        "INSERT INTO users (id, issuer, subject, email, email_verified, name)
         VALUES ($1, $2, $1::text, $3, true, $4)",
    )
    .bind(user_id)
    .bind(ISSUER)
    .bind(email)
    .bind(name)
    .execute(&mut *conn)
    .await
    .map_err(DbError::from)?;
    query("INSERT INTO local_accounts (user_id, email, password_hash) VALUES ($1, $2, $3)")
        .bind(user_id)
        .bind(email)
        .bind(password::hash(password))
        .execute(&mut *conn)
        .await
        .map_err(|e| match &e {
            // Created concurrently since the check above.
            sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") => {
                AccountError::Exists(email.to_string())
            }
            _ => AccountError::Db(e.into()),
        })?;
    Ok(user_id)
}

/// Gives `user_id` a role in the org of `conn`'s tenant transaction.
pub async fn add_member(
    conn: &mut PgConnection,
    org_id: Uuid,
    user_id: Uuid,
    role: &str,
) -> Result<(), DbError> {
    query(
        "INSERT INTO memberships (org_id, user_id, role) VALUES ($1, $2, $3)
         ON CONFLICT (org_id, user_id) DO UPDATE SET role = excluded.role",
    )
    .bind(org_id)
    .bind(user_id)
    .bind(role)
    .execute(conn)
    .await?;
    Ok(())
}

/// The built-in account `email` signs in as, if `password` is its password. An unknown email
/// costs the same hashing work as a wrong password, so timing does not tell which it was.
pub async fn check_password(
    conn: &mut PgConnection,
    email: &str,
    password: &str,
) -> Result<Option<Uuid>, DbError> {
    let account: Option<(Uuid, String)> = query_as(
        "SELECT a.user_id, a.password_hash FROM local_accounts a JOIN users u ON u.id = a.user_id
         WHERE lower(a.email) = lower($1) AND u.deleted_at IS NULL",
    )
    .bind(email.trim())
    .fetch_optional(conn)
    .await?;
    let password = password.to_string();
    let (user_id, stored) = account.unwrap_or_else(|| (Uuid::nil(), DUMMY_HASH.clone()));
    let matches = tokio::task::spawn_blocking(move || password::verify(&password, &stored))
        .await
        .unwrap_or(false);
    Ok((matches && !user_id.is_nil()).then_some(user_id))
}

/// A hash of a random password, verified against when the account does not exist.
static DUMMY_HASH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| password::hash(&super::random_base62(24)));
