//! API tokens: `ingest` tokens let agents write, `read` tokens let programs read.
//!
//! A token is `fmi_<org>_<secret>` (ingest) or `fmr_<org>_<secret>` (read): the org's id in hex,
//! then 32 random base62 characters (190 bits). The org id in the token lets the lookup run in
//! that org's tenant transaction, under row-level security like everything else; only the SHA-256
//! of the whole token is stored, so a database leak reveals no usable token.

use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::db::sql::{query, query_as};
use crate::db::DbError;
use crate::orgs::Org;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Ingest,
    Read,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ingest => "ingest",
            Self::Read => "read",
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Self::Ingest => "fmi",
            Self::Read => "fmr",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "ingest" => Some(Self::Ingest),
            "read" => Some(Self::Read),
            _ => None,
        }
    }
}

const SECRET_LEN: usize = 32;
/// Longest string worth hashing as a token; anything longer is refused unparsed.
const MAX_TOKEN_LEN: usize = 128;

/// A token just created: the secret exists only here and is shown once.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub id: Uuid,
    pub secret: String,
}

/// A token, as listed (never with its secret).
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct TokenInfo {
    pub id: Uuid,
    pub name: String,
    pub kind: String,
    pub prefix: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub last_used_at: Option<chrono::DateTime<chrono::Utc>>,
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Who a valid token speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenIdentity {
    pub org_id: Uuid,
    pub token_id: Uuid,
    pub kind: TokenKind,
}

/// Why a presented token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRejection {
    Malformed,
    Unknown,
    Revoked,
}

fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn random_secret() -> String {
    super::random_base62(SECRET_LEN)
}

/// The org a token claims to belong to, if it is shaped like a token at all.
pub fn parse_org(token: &str) -> Option<(TokenKind, Uuid)> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let mut parts = token.split('_');
    let kind = match parts.next()? {
        "fmi" => TokenKind::Ingest,
        "fmr" => TokenKind::Read,
        _ => return None,
    };
    let org = Uuid::try_parse(parts.next()?).ok()?;
    let secret = parts.next()?;
    if parts.next().is_some()
        || secret.len() != SECRET_LEN
        || !secret.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return None;
    }
    Some((kind, org))
}

/// Creates a token in the org of `conn`'s tenant transaction.
pub async fn create(
    conn: &mut PgConnection,
    org_id: Uuid,
    kind: TokenKind,
    name: &str,
    created_by: Option<Uuid>,
) -> Result<NewToken, DbError> {
    let created = create_once(conn, org_id, Uuid::new_v4(), kind, name, created_by).await?;
    Ok(created.expect("a new random id names no token yet"))
}

/// Creates the token `id` in the org of `conn`'s tenant transaction, or nothing (`None`) when
/// the org has a token of that id already.
pub async fn create_once(
    conn: &mut PgConnection,
    org_id: Uuid,
    id: Uuid,
    kind: TokenKind,
    name: &str,
    created_by: Option<Uuid>,
) -> Result<Option<NewToken>, DbError> {
    let secret = random_secret();
    let token = format!("{}_{}_{secret}", kind.tag(), org_id.simple());
    let prefix = format!("{}_…{}", kind.tag(), &secret[..6]);
    let inserted: Option<(Uuid,)> = query_as(
        "INSERT INTO api_tokens (org_id, id, name, kind, prefix, token_hash, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (org_id, id) DO NOTHING RETURNING id",
    )
    .bind(org_id)
    .bind(id)
    .bind(name)
    .bind(kind.as_str())
    .bind(prefix)
    .bind(hash(&token))
    .bind(created_by)
    .fetch_optional(conn)
    .await?;
    Ok(inserted.map(|_| NewToken { id, secret: token }))
}

/// The id of the token a dashboard form creates: derived from the org and the form's one-time
/// nonce, so that the form sent twice (a reload) names the same token and creates none, while
/// no form can choose an id of its own.
pub fn id_for_form(org_id: Uuid, nonce: Uuid) -> Uuid {
    let digest = Sha256::new()
        .chain_update(org_id.as_bytes())
        .chain_update(nonce.as_bytes())
        .finalize();
    let mut bytes = [0; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

pub async fn list(conn: &mut PgConnection) -> Result<Vec<TokenInfo>, DbError> {
    Ok(query_as(
        "SELECT id, name, kind, prefix, created_at, last_used_at, revoked_at
         FROM api_tokens ORDER BY created_at, id",
    )
    .fetch_all(conn)
    .await?)
}

/// Revokes a token; `false` when the org has no such token.
pub async fn revoke(conn: &mut PgConnection, id: Uuid) -> Result<bool, DbError> {
    let done =
        query("UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1")
            .bind(id)
            .execute(conn)
            .await?;
    Ok(done.rows_affected() == 1)
}

/// The statement of [`authenticate`]: `$1` the org, `$2` the token's SHA-256, `$3` the slug of
/// the org the request names, or NULL. Reading that org here spares a request on an org its own
/// round trip. Public for the query benchmark's `pgbench` run.
pub const AUTHENTICATE_SQL: &str = "WITH found AS (
         SELECT id, kind, revoked_at, last_used_at FROM api_tokens
         WHERE org_id = $1 AND token_hash = $2
     ), touched AS (
         -- SKIP LOCKED: concurrent requests with the same token never wait on each other
         -- for this bookkeeping (the row stays locked until the request commits).
         UPDATE api_tokens t SET last_used_at = now()
         WHERE t.org_id = $1 AND t.id IN (
             SELECT l.id FROM api_tokens l JOIN found ON l.id = found.id
             WHERE l.org_id = $1 AND found.revoked_at IS NULL
               AND (found.last_used_at IS NULL OR found.last_used_at < now() - interval '1 minute')
             FOR UPDATE OF l SKIP LOCKED)
     )
     SELECT f.id, f.kind, f.revoked_at IS NOT NULL, o.id, o.slug, o.name, o.created_at
     FROM found f LEFT JOIN organizations o ON o.id = $1 AND o.slug = $3::text";

/// A valid token, and the org the request named when it is the token's own.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub identity: TokenIdentity,
    pub org: Option<Org>,
}

type AuthenticateRow = (
    Uuid,
    String,
    bool,
    Option<Uuid>,
    Option<String>,
    Option<String>,
    Option<chrono::DateTime<chrono::Utc>>,
);

/// Looks a presented token up in its org's tenant transaction (see [`parse_org`]) and records
/// its use, at most once a minute so busy agents do not turn every request into a row update.
/// With `org_slug`, also reads that org when it is the token's (another org's slug reads nothing).
pub async fn authenticate(
    conn: &mut PgConnection,
    org_id: Uuid,
    token: &str,
    org_slug: Option<&str>,
) -> Result<Result<Authenticated, TokenRejection>, DbError> {
    let row: Option<AuthenticateRow> = query_as(AUTHENTICATE_SQL)
        .bind(org_id)
        .bind(hash(token))
        .bind(org_slug)
        .fetch_optional(conn)
        .await?;
    let Some((token_id, kind, revoked, id, slug, name, created_at)) = row else {
        return Ok(Err(TokenRejection::Unknown));
    };
    if revoked {
        return Ok(Err(TokenRejection::Revoked));
    }
    let Some(kind) = TokenKind::parse(&kind) else {
        return Ok(Err(TokenRejection::Unknown));
    };
    let org = match (id, slug, name, created_at) {
        (Some(id), Some(slug), Some(name), Some(created_at)) => Some(Org {
            id,
            slug,
            name,
            created_at,
        }),
        _ => None,
    };
    Ok(Ok(Authenticated {
        identity: TokenIdentity {
            org_id,
            token_id,
            kind,
        },
        org,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_names_one_token_per_org_and_nonce() {
        let (org, other_org, nonce) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let id = id_for_form(org, nonce);
        assert_eq!(id, id_for_form(org, nonce), "sent again, the same token");
        assert_ne!(id, id_for_form(org, Uuid::new_v4()));
        assert_ne!(id, id_for_form(other_org, nonce));
        assert_ne!(id, nonce, "the form does not choose the id");
        assert_eq!(id.get_version_num(), 4);
    }

    #[test]
    fn tokens_name_their_org_and_secrets_are_base62() {
        let org = Uuid::new_v4();
        let secret = random_secret();
        assert_eq!(secret.len(), SECRET_LEN);
        let token = format!("fmi_{}_{secret}", org.simple());
        assert_eq!(parse_org(&token), Some((TokenKind::Ingest, org)));
        assert_ne!(random_secret(), secret);
    }

    #[test]
    fn malformed_tokens_are_not_parsed() {
        let org = Uuid::new_v4().simple().to_string();
        for bad in [
            String::new(),
            "fmi".into(),
            format!("fmx_{org}_{}", "a".repeat(32)),
            format!("fmi_{org}_{}", "a".repeat(31)),
            format!("fmi_{org}_{}_x", "a".repeat(32)),
            format!("fmi_{org}_{}", "é".repeat(16)),
            format!("fmi_nothex_{}", "a".repeat(32)),
            "x".repeat(10_000),
        ] {
            assert_eq!(parse_org(&bad), None, "{bad}");
        }
    }
}
