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
use crate::auth::teams;
use crate::auth::tokens::{self, TokenKind, TokenRejection};
use crate::auth::users::{self, Synced};
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

/// The caller as the request's credentials present them, verified as far as that needs no
/// database: a JWT's signature and claims, a read token's shape. What is left — whether the
/// session is live, whether the token exists and is not revoked — runs in the request's own
/// transaction when the request is on an org ([`OrgAccess::open`]), or in one of its own
/// ([`Caller::check`], which is what extracting a [`Principal`] does).
#[derive(Debug, Clone)]
pub enum Caller {
    /// Already checked (a user of another provider, after the sync of their claims).
    Checked(Principal),
    /// fleetmon's own access token: the session it names is still to be confirmed live.
    Session { user_id: Uuid, session: Uuid },
    /// Shaped like an API token of `org_id`; still to be looked up.
    ApiToken { org_id: Uuid, token: String },
}

impl From<Principal> for Caller {
    fn from(principal: Principal) -> Self {
        Self::Checked(principal)
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(token) = bearer(&parts.headers)? {
            if let Some((_, org_id)) = tokens::parse_org(token) {
                return Ok(Self::ApiToken {
                    org_id,
                    token: token.to_string(),
                });
            }
            let (provider, verified) = state.auth.providers.verify(token).await?;
            return caller_of(state, &provider, &verified).await;
        }
        if let Some(token) = cookies::get(&parts.headers, cookies::ACCESS) {
            let caller = session_caller(state, token).await?;
            check_csrf(&parts.method, &parts.headers)?;
            return Ok(caller);
        }
        Err(unauthorized(
            "missing_token",
            "sign in, or send `Authorization: Bearer <token>` (a JWT or a read API token)",
        ))
    }
}

impl Caller {
    /// Finishes the checks in a short transaction of their own, for requests not on an org.
    pub async fn check(self, state: &AppState) -> Result<Principal, ApiError> {
        match self {
            Self::Checked(principal) => Ok(principal),
            Self::Session { user_id, session } => {
                let mut tx = state
                    .db
                    .begin(TenantContext::none().with_user(user_id))
                    .await?;
                let entry = orgs::enter(tx.conn(), user_id, Some(session), None).await?;
                tx.commit().await?;
                if !entry.session_live {
                    return Err(session_ended());
                }
                Ok(Principal::User {
                    user_id,
                    session: Some(session),
                })
            }
            Self::ApiToken { org_id, token } => {
                let token_id = api_token(state, org_id, &token, TokenKind::Read).await?;
                Ok(Principal::ReadToken { org_id, token_id })
            }
        }
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Caller::from_request_parts(parts, state)
            .await?
            .check(state)
            .await
    }
}

fn session_ended() -> ApiError {
    unauthorized("session_ended", "the session has ended; sign in again")
}

/// The caller of a browser session whose access cookie holds `token` (fleetmon's own token,
/// naming a session). Checks no CSRF token: callers that change something must.
async fn session_caller(state: &AppState, token: &str) -> Result<Caller, ApiError> {
    let (provider, verified) = state.auth.providers.verify(token).await?;
    if provider.kind != Kind::Local {
        return Err(unauthorized(
            "unknown_issuer",
            "the session cookie was not issued by fleetmon",
        ));
    }
    caller_of(state, &provider, &verified).await
}

/// The user of the browser session whose access cookie holds `token`, its session confirmed
/// live. Checks no CSRF token: callers that change something must.
pub(crate) async fn session_user(state: &AppState, token: &str) -> Result<Principal, ApiError> {
    session_caller(state, token).await?.check(state).await
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
    let verdict = tokens::authenticate(tx.conn(), org_id, token, None).await?;
    tx.commit().await?;
    Ok(token_verdict(verdict, expected)?.identity.token_id)
}

/// A token lookup's answer as the API gives it.
fn token_verdict(
    verdict: Result<tokens::Authenticated, TokenRejection>,
    expected: TokenKind,
) -> Result<tokens::Authenticated, ApiError> {
    match verdict {
        Ok(found) if found.identity.kind == expected => Ok(found),
        Ok(found) => Err(ApiError::Forbidden {
            code: "wrong_token_kind",
            message: match expected {
                TokenKind::Ingest => "this is a read token; ingest needs an ingest token".into(),
                TokenKind::Read => format!(
                    "this is an {} token; reading needs a read token or a signed-in user",
                    found.identity.kind.as_str()
                ),
            },
        }),
        Err(TokenRejection::Revoked) => {
            Err(unauthorized("revoked_token", "the token has been revoked"))
        }
        Err(_) => Err(unauthorized("invalid_token", "the token is not valid")),
    }
}

/// Who a verified JWT stands for: fleetmon's own tokens name the user and a session still to be
/// confirmed; other providers' claims are synced into `users` (and may bring org membership
/// with them).
async fn caller_of(
    state: &AppState,
    provider: &Provider,
    verified: &crate::auth::jwt::VerifiedToken,
) -> Result<Caller, ApiError> {
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
        return Ok(Caller::Session { user_id, session });
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
    Ok(Caller::Checked(Principal::User {
        user_id,
        session: None,
    }))
}

/// The user a verified JWT stands for, checked.
pub async fn user_of(
    state: &AppState,
    provider: &Provider,
    verified: &crate::auth::jwt::VerifiedToken,
) -> Result<Principal, ApiError> {
    caller_of(state, provider, verified)
        .await?
        .check(state)
        .await
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
        caller: impl Into<Caller>,
        slug: &str,
    ) -> Result<Self, ApiError> {
        let (access, tx) = Self::open(state, caller, slug).await?;
        tx.commit().await?;
        Ok(access)
    }

    /// The caller's access to the org `slug` and a tenant transaction on it, opened with the
    /// caller's remaining checks inside it, so that a read costs one transaction whatever the
    /// credentials. 404 as [`OrgAccess::resolve`].
    pub async fn open(
        state: &AppState,
        caller: impl Into<Caller>,
        slug: &str,
    ) -> Result<(Self, TenantTx), ApiError> {
        let not_found = || ApiError::NotFound {
            message: format!("no organization {slug:?} for you"),
        };
        match caller.into() {
            Caller::ApiToken { org_id, token } => {
                let mut tx = state.db.begin(TenantContext::org(org_id)).await?;
                let verdict = tokens::authenticate(tx.conn(), org_id, &token, Some(slug)).await?;
                let found = token_verdict(verdict, TokenKind::Read)?;
                let org = found.org.ok_or_else(not_found)?;
                let principal = Principal::ReadToken {
                    org_id,
                    token_id: found.identity.token_id,
                };
                Ok((Self::of(org, None, principal), tx))
            }
            Caller::Checked(principal @ Principal::ReadToken { org_id, .. }) => {
                let mut tx = state.db.begin(TenantContext::org(org_id)).await?;
                match orgs::by_slug(tx.conn(), slug).await? {
                    Some(org) if org.id == org_id => Ok((Self::of(org, None, principal), tx)),
                    _ => Err(not_found()),
                }
            }
            Caller::Session { user_id, session } => {
                Self::enter(state, user_id, Some(session), slug).await
            }
            Caller::Checked(Principal::User { user_id, session }) => {
                // Checked already: the session need not be confirmed again.
                let (access, tx) = Self::enter(state, user_id, None, slug).await?;
                let principal = Principal::User { user_id, session };
                Ok((
                    Self {
                        principal,
                        ..access
                    },
                    tx,
                ))
            }
        }
    }

    /// A user's access: the session check (when `session` is given) and membership, in the
    /// transaction the request goes on in.
    async fn enter(
        state: &AppState,
        user_id: Uuid,
        session: Option<Uuid>,
        slug: &str,
    ) -> Result<(Self, TenantTx), ApiError> {
        let mut tx = state
            .db
            .begin(TenantContext::none().with_user(user_id))
            .await?;
        let entry = orgs::enter(tx.conn(), user_id, session, Some(slug)).await?;
        if !entry.session_live {
            return Err(session_ended());
        }
        let (org, role) = entry.membership.ok_or_else(|| ApiError::NotFound {
            message: format!("no organization {slug:?} for you"),
        })?;
        let principal = Principal::User { user_id, session };
        Ok((Self::of(org, Some(role), principal), tx))
    }

    fn of(org: Org, role: Option<Role>, principal: Principal) -> Self {
        Self {
            org,
            role,
            principal,
        }
    }

    /// [`OrgAccess::open`] for a read: viewers and read tokens may.
    pub async fn open_read(
        state: &AppState,
        caller: impl Into<Caller>,
        slug: &str,
    ) -> Result<(Self, TenantTx), ApiError> {
        let (access, tx) = Self::open(state, caller, slug).await?;
        access.require(Role::Viewer)?;
        Ok((access, tx))
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
