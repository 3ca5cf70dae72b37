//! Who is asking, for every API request: a JWT from any configured provider (as a bearer or,
//! from the dashboard, in the session cookie), or a `read` API token. And what they may do in an
//! org: membership and role, checked on every request.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method};
use uuid::Uuid;

use super::{cookies, ApiError, AppState};
use crate::auth::jwt::TokenError;
use crate::auth::providers::{Kind, Provider};
use crate::auth::tokens::{self, TokenKind, TokenRejection};
use crate::auth::users::{self, Synced};
use crate::auth::{sessions, teams};
use crate::db::{TenantContext, TenantTx};
use crate::orgs::{self, members, Org, Role};

/// The authenticated caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal {
    User {
        user_id: Uuid,
        session: Option<Uuid>,
    },
    /// A `read` API token: reads its own org, nothing else.
    ReadToken { org_id: Uuid, token_id: Uuid },
}

impl Principal {
    /// How the audit log names this actor.
    pub fn actor(&self) -> String {
        match self {
            Self::User { user_id, .. } => format!("user:{user_id}"),
            Self::ReadToken { token_id, .. } => format!("token:{token_id}"),
        }
    }

    pub fn user_id(&self) -> Option<Uuid> {
        match self {
            Self::User { user_id, .. } => Some(*user_id),
            Self::ReadToken { .. } => None,
        }
    }

    /// The signed-in user, or 403 for API tokens (which cannot act as anyone).
    pub fn require_user(&self) -> Result<Uuid, ApiError> {
        self.user_id().ok_or_else(|| ApiError::Forbidden {
            code: "user_required",
            message: "this needs a signed-in user, not an API token".into(),
        })
    }
}

/// The client's address, from the connection (for sign-in throttling).
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0.ip()),
        ))
    }
}

pub fn unauthorized(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::Unauthorized {
        code,
        message: message.into(),
    }
}

impl From<TokenError> for ApiError {
    fn from(error: TokenError) -> Self {
        match error {
            // The issuer's outage, not a bad token: the client should retry, not sign in again.
            TokenError::KeysUnavailable => ApiError::Unavailable {
                code: error.code(),
                message: error.to_string(),
            },
            _ => unauthorized(error.code(), error.to_string()),
        }
    }
}

/// The bearer token of the request, if it sends an Authorization header.
pub(super) fn bearer(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|v| Some(v.trim()))
        .ok_or_else(|| {
            unauthorized(
                "malformed_token",
                "the Authorization header must be `Bearer <token>`",
            )
        })
}

/// Cookie-authenticated requests that change something must echo the CSRF cookie in a header,
/// which another site's page cannot read and so cannot send.
pub fn check_csrf(method: &Method, headers: &HeaderMap) -> Result<(), ApiError> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let sent = headers
        .get(cookies::CSRF_HEADER)
        .and_then(|v| v.to_str().ok());
    if csrf_matches(headers, sent) {
        Ok(())
    } else {
        Err(ApiError::Forbidden {
            code: "csrf_failed",
            message: "a request using the session cookie must send the X-CSRF-Token header".into(),
        })
    }
}

/// Whether `sent` (from a header, or a form field of fleetmon's own pages) is the browser's CSRF
/// cookie.
pub(crate) fn csrf_matches(headers: &HeaderMap, sent: Option<&str>) -> bool {
    match (cookies::get(headers, cookies::CSRF), sent) {
        (Some(cookie), Some(sent)) => !cookie.is_empty() && constant_time_eq(cookie, sent),
        _ => false,
    }
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(token) = bearer(&parts.headers)? {
            if let Some((_, org_id)) = tokens::parse_org(token) {
                return read_token(state, org_id, token).await;
            }
            let (provider, verified) = state.auth.providers.verify(token).await?;
            return user_of(state, &provider, &verified).await;
        }
        if let Some(token) = cookies::get(&parts.headers, cookies::ACCESS) {
            let principal = session_user(state, token).await?;
            check_csrf(&parts.method, &parts.headers)?;
            return Ok(principal);
        }
        Err(unauthorized(
            "missing_token",
            "sign in, or send `Authorization: Bearer <token>` (a JWT or a read API token)",
        ))
    }
}

/// The user of the browser session whose access cookie holds `token` (fleetmon's own token,
/// naming a live session). Checks no CSRF token: callers that change something must.
pub(crate) async fn session_user(state: &AppState, token: &str) -> Result<Principal, ApiError> {
    let (provider, verified) = state.auth.providers.verify(token).await?;
    if provider.kind != Kind::Local {
        return Err(unauthorized(
            "unknown_issuer",
            "the session cookie was not issued by fleetmon",
        ));
    }
    user_of(state, &provider, &verified).await
}

async fn read_token(state: &AppState, org_id: Uuid, token: &str) -> Result<Principal, ApiError> {
    let token_id = api_token(state, org_id, token, TokenKind::Read).await?;
    Ok(Principal::ReadToken { org_id, token_id })
}

/// Checks that `token` is a live API token of `org_id` of the `expected` kind, in a short tenant
/// transaction of its own; returns its id.
pub(super) async fn api_token(
    state: &AppState,
    org_id: Uuid,
    token: &str,
    expected: TokenKind,
) -> Result<Uuid, ApiError> {
    let mut tx = state.db.begin(TenantContext::org(org_id)).await?;
    let verdict = tokens::authenticate(tx.conn(), org_id, token).await?;
    tx.commit().await?;
    match verdict {
        Ok(identity) if identity.kind == expected => Ok(identity.token_id),
        Ok(identity) => Err(ApiError::Forbidden {
            code: "wrong_token_kind",
            message: match expected {
                TokenKind::Ingest => "this is a read token; ingest needs an ingest token".into(),
                TokenKind::Read => format!(
                    "this is an {} token; reading needs a read token or a signed-in user",
                    identity.kind.as_str()
                ),
            },
        }),
        Err(TokenRejection::Revoked) => {
            Err(unauthorized("revoked_token", "the token has been revoked"))
        }
        Err(_) => Err(unauthorized("invalid_token", "the token is not valid")),
    }
}

/// The user a verified JWT stands for: fleetmon's own tokens name the user and session; other
/// providers' claims are synced into `users` (and may bring org membership with them).
pub async fn user_of(
    state: &AppState,
    provider: &Provider,
    verified: &crate::auth::jwt::VerifiedToken,
) -> Result<Principal, ApiError> {
    if provider.kind == Kind::Local {
        let user_id = Uuid::try_parse(&verified.subject).map_err(|_| {
            unauthorized("bad_subject", "the token's subject is not a fleetmon user")
        })?;
        // fleetmon signs its tokens only for sessions: one without a live session is refused.
        let session = verified
            .claims
            .get("sid")
            .and_then(|v| v.as_str())
            .and_then(|sid| Uuid::try_parse(sid).ok())
            .ok_or_else(|| unauthorized("malformed_token", "the token names no session"))?;
        let mut tx = state
            .db
            .begin(TenantContext::none().with_user(user_id))
            .await?;
        let live = sessions::is_live(tx.conn(), session, user_id).await?;
        tx.commit().await?;
        if !live {
            return Err(unauthorized(
                "session_ended",
                "the session has ended; sign in again",
            ));
        }
        return Ok(Principal::User {
            user_id,
            session: Some(session),
        });
    }

    let identity = provider.identity(verified).map_err(
        |crate::auth::providers::ClaimError::Refused { code, message }| unauthorized(code, message),
    )?;
    let mut tx = state.db.begin(TenantContext::none()).await?;
    let synced = users::sync(tx.conn(), &identity).await?;
    tx.commit().await?;
    let Synced::Active {
        user_id,
        check_invitations,
        refreshed,
    } = synced
    else {
        return Err(unauthorized(
            "user_deleted",
            "this user has been deleted by their identity provider",
        ));
    };
    if check_invitations {
        teams::accept_invitations(&state.db, user_id).await?;
    }
    if refreshed {
        provider
            .join_claimed_team(&state.db, user_id, verified)
            .await?;
    }
    Ok(Principal::User {
        user_id,
        session: None,
    })
}

/// What the caller may do in one org.
#[derive(Debug, Clone)]
pub struct OrgAccess {
    pub org: Org,
    /// The member's role; `None` for a read token (which may read, nothing more).
    pub role: Option<Role>,
    pub principal: Principal,
}

impl OrgAccess {
    /// 404 for anyone who is not a member (an org's existence is not revealed), 403 for a
    /// member whose role is too weak.
    pub async fn resolve(
        state: &AppState,
        principal: Principal,
        slug: &str,
    ) -> Result<Self, ApiError> {
        let not_found = || ApiError::NotFound {
            message: format!("no organization {slug:?} for you"),
        };
        let (org, role) = match principal {
            Principal::ReadToken { org_id, .. } => {
                let mut tx = state.db.begin(TenantContext::none()).await?;
                let org = orgs::by_slug(tx.conn(), slug).await?;
                tx.commit().await?;
                match org {
                    Some(org) if org.id == org_id => (org, None),
                    _ => return Err(not_found()),
                }
            }
            Principal::User { user_id, .. } => {
                let mut tx = state
                    .db
                    .begin(TenantContext::none().with_user(user_id))
                    .await?;
                let found = orgs::membership(tx.conn(), slug, user_id).await?;
                tx.commit().await?;
                let (org, role) = found.ok_or_else(not_found)?;
                (org, Some(role))
            }
        };
        Ok(Self {
            org,
            role,
            principal,
        })
    }

    /// Refuses unless the caller has at least `needed`. Read tokens count as viewers.
    pub fn require(&self, needed: Role) -> Result<(), ApiError> {
        let has = self.role.unwrap_or(Role::Viewer);
        if has >= needed && (self.role.is_some() || needed == Role::Viewer) {
            return Ok(());
        }
        Err(self.too_weak(needed))
    }

    fn too_weak(&self, needed: Role) -> ApiError {
        ApiError::Forbidden {
            code: "insufficient_role",
            message: format!(
                "this needs the {} role in {}; you have {}",
                needed.as_str(),
                self.org.slug,
                self.role.map_or("a read token", Role::as_str)
            ),
        }
    }

    /// Opens the transaction of a change that needs `needed`, confirming inside it (and holding
    /// until it commits) that the caller still has that role; later checks see the confirmed one.
    pub async fn begin_write(
        &mut self,
        state: &AppState,
        needed: Role,
    ) -> Result<TenantTx, ApiError> {
        self.require(needed)?;
        let mut tx = state.db.begin(self.context()).await?;
        if let Principal::User { user_id, .. } = self.principal {
            let confirmed = members::confirm_role(tx.conn(), self.org.id, user_id).await?;
            self.role = confirmed;
            match confirmed {
                Some(role) if role >= needed => {}
                Some(_) => return Err(self.too_weak(needed)),
                None => {
                    return Err(ApiError::NotFound {
                        message: format!("no organization {:?} for you", self.org.slug),
                    })
                }
            }
        }
        Ok(tx)
    }

    pub fn context(&self) -> TenantContext {
        let context = TenantContext::org(self.org.id);
        match self.principal.user_id() {
            Some(user_id) => context.with_user(user_id),
            None => context,
        }
    }
}
