//! The keys the `local` provider signs its access tokens with: Ed25519 (`EdDSA`), kept in
//! `signing_keys` so that every replica signs and verifies with the same set.
//!
//! The newest key that is not retired signs. Rotation adds a new key and retires the old one, which
//! stays published (and so keeps verifying) until every token it signed has expired: nobody is
//! signed out by a rotation.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{json, Value};
use sqlx::PgConnection;

use crate::db::sql::{query, query_as, query_scalar};
use crate::db::DbError;

/// How long a retired key stays published. Longer than any access token lives plus the time
/// verifiers cache key sets.
pub const RETIRED_KEY_GRACE: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// Keys older than this are replaced by the periodic maintenance.
pub const ROTATE_AFTER: chrono::TimeDelta = chrono::TimeDelta::days(30);

/// An arbitrary constant naming the lock that serializes key creation across replicas.
const KEY_LOCK: i64 = 0x666c_6d6b_6579_7321; // "flmkeys!"

/// The key that signs new tokens.
pub struct ActiveKey {
    pub kid: String,
    pub created_at: DateTime<Utc>,
    pkcs8: Vec<u8>,
}

impl ActiveKey {
    pub fn encoding_key(&self) -> jsonwebtoken::EncodingKey {
        jsonwebtoken::EncodingKey::from_ed_der(&self.pkcs8)
    }
}

fn generate() -> (Vec<u8>, Value, String) {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("the operating system's random source");
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("a key ring just generated");
    let kid = super::random_base62(16);
    let jwk = json!({
        "kty": "OKP",
        "crv": "Ed25519",
        "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
        "kid": kid,
        "alg": "EdDSA",
        "use": "sig",
    });
    (pkcs8.as_ref().to_vec(), jwk, kid)
}

async fn lock(conn: &mut PgConnection) -> Result<(), DbError> {
    query("SELECT pg_advisory_xact_lock($1)")
        .bind(KEY_LOCK)
        .execute(conn)
        .await?;
    Ok(())
}

async fn insert(conn: &mut PgConnection) -> Result<String, DbError> {
    let (pkcs8, jwk, kid) = generate();
    query("INSERT INTO signing_keys (kid, algorithm, private_key, public_jwk) VALUES ($1, 'EdDSA', $2, $3)")
        .bind(&kid)
        .bind(pkcs8)
        .bind(jwk)
        .execute(conn)
        .await?;
    Ok(kid)
}

/// The signing key, created first if there is none (the first start of a new installation).
pub async fn active(conn: &mut PgConnection) -> Result<ActiveKey, DbError> {
    const ACTIVE: &str = "SELECT kid, created_at, private_key FROM signing_keys
                          WHERE retired_at IS NULL ORDER BY created_at DESC, kid LIMIT 1";
    if let Some((kid, created_at, pkcs8)) = query_as(ACTIVE).fetch_optional(&mut *conn).await? {
        return Ok(ActiveKey {
            kid,
            created_at,
            pkcs8,
        });
    }
    lock(conn).await?;
    if query_scalar::<String>(ACTIVE)
        .fetch_optional(&mut *conn)
        .await?
        .is_none()
    {
        insert(conn).await?;
    }
    let (kid, created_at, pkcs8) = query_as(ACTIVE).fetch_one(&mut *conn).await?;
    Ok(ActiveKey {
        kid,
        created_at,
        pkcs8,
    })
}

/// Starts signing with a new key; the previous ones stay published for [`RETIRED_KEY_GRACE`].
/// Returns the new key's id.
pub async fn rotate(conn: &mut PgConnection) -> Result<String, DbError> {
    lock(conn).await?;
    query(
        "UPDATE signing_keys SET retired_at = now(), expires_at = now() + $1
         WHERE retired_at IS NULL",
    )
    .bind(RETIRED_KEY_GRACE)
    .execute(&mut *conn)
    .await?;
    // Keys whose grace ended long ago are of no use to anyone.
    query("DELETE FROM signing_keys WHERE expires_at < now() - interval '1 day'")
        .execute(&mut *conn)
        .await?;
    insert(conn).await
}

/// Rotates when the signing key is older than [`ROTATE_AFTER`]; for the periodic maintenance.
pub async fn rotate_if_due(conn: &mut PgConnection) -> Result<Option<String>, DbError> {
    let key = active(conn).await?;
    if Utc::now() - key.created_at < ROTATE_AFTER {
        return Ok(None);
    }
    rotate(conn).await.map(Some)
}

/// The public keys verifiers should accept now, as JWKs.
pub async fn published(conn: &mut PgConnection) -> Result<Vec<Value>, DbError> {
    Ok(query_scalar(
        "SELECT public_jwk FROM signing_keys
         WHERE expires_at IS NULL OR expires_at > now() ORDER BY created_at DESC",
    )
    .fetch_all(conn)
    .await?)
}
