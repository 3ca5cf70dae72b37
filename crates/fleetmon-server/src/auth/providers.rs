//! The sign-in providers, several active at once: a token's (unverified) `iss` picks the one that
//! verifies it, and only that provider's keys and rules apply.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::Algorithm;
use serde_json::Value;
use uuid::Uuid;

use super::jwks::{BoxFuture, CacheSettings, FetchError, HttpKeyFetcher, JwksCache, KeyFetcher};
use super::jwt::{self, IssuerPolicy, TokenError, VerifiedToken, Verifier};
use super::settings::{AuthSettings, OidcConfig, StackConfig};
use super::signing;
use super::users::Identity;
use crate::db::{TenantContext, TenantDb};

/// The audience of fleetmon's own access tokens.
pub const LOCAL_AUDIENCE: &str = "fleetmon";
/// How long fleetmon's own access tokens live; the browser refreshes them through its session.
pub const ACCESS_TOKEN_TTL: chrono::TimeDelta = chrono::TimeDelta::minutes(5);
const LOCAL_LEEWAY: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Local,
    Stack,
    Oidc,
}

/// One provider: how its tokens are verified and how their claims become a user.
pub struct Provider {
    /// `local`, `stack`, or the OIDC provider's configured name.
    pub name: String,
    pub kind: Kind,
    pub verifier: Verifier,
    /// The `issuer` of this provider's users in `users`: the token issuer, except that Stack's
    /// regular, restricted and anonymous tokens (each under its own `iss`) are one user base.
    pub users_issuer: String,
    /// JSON pointer to the claim naming the user's org (OIDC), or Stack's `selected_team_id`.
    pub org_claim: Option<String>,
    pub stack: Option<StackConfig>,
    pub oidc: Option<OidcConfig>,
    /// OIDC only: the issuer's discovery document (endpoints for browser sign-in).
    discovery: Option<Arc<super::oidc::Discovery>>,
    /// OIDC only: verifies id tokens, whose audience is the client id.
    id_tokens: Option<Verifier>,
}

/// Why a bearer is refused beyond the token itself.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("{message}")]
    Refused { code: &'static str, message: String },
}

impl Provider {
    /// The `users` identity a verified token stands for. The local provider's subjects are user
    /// ids already and are not synced.
    pub fn identity(&self, token: &VerifiedToken) -> Result<Identity, ClaimError> {
        let claims = &token.claims;
        let (email, email_verified, name) = match &self.stack {
            // Stack's own rules: anonymous and restricted users, claim types.
            Some(stack) => {
                let checked = super::stack::check_claims(&stack.settings, claims).map_err(|e| {
                    ClaimError::Refused {
                        code: e.code(),
                        message: e.to_string(),
                    }
                })?;
                (checked.email, checked.email_verified, checked.name)
            }
            None => {
                let text =
                    |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_string);
                let verified = claims.get("email_verified").and_then(Value::as_bool) == Some(true);
                (text("email"), verified, text("name"))
            }
        };
        Ok(Identity {
            issuer: self.users_issuer.clone(),
            subject: token.subject.clone(),
            email: email.map(|e| e.trim().to_string()),
            email_verified,
            name,
            claims: Value::Object(claims.clone()),
        })
    }

    /// Applies the token's team claim, if any: membership of the org linked to that team.
    pub async fn join_claimed_team(
        &self,
        db: &crate::db::TenantDb,
        user_id: Uuid,
        token: &VerifiedToken,
    ) -> Result<(), crate::db::DbError> {
        let Some(team) = self.team_claim(token) else {
            return Ok(());
        };
        let stack_issuer = self.stack.as_ref().map(|_| self.users_issuer.as_str());
        let source = super::teams::ClaimSource {
            stack_issuer,
            subject: &token.subject,
        };
        super::teams::join_team_org(db, user_id, &team, source).await
    }

    pub fn discovery(&self) -> Option<&super::oidc::Discovery> {
        self.discovery.as_deref()
    }

    /// The verifier of id tokens from browser sign-in (OIDC providers with a client id).
    pub fn id_token_verifier(&self) -> Option<&Verifier> {
        self.id_tokens.as_ref()
    }

    /// The external team id the token names, if any (mapped to an org by `external_team_id`).
    /// Stack's team ids are used as they are (Stack's webhooks name teams the same way); an OIDC
    /// provider's org claim is prefixed with the provider's name, so two issuers whose claims
    /// happen to share a value never share an org.
    fn team_claim(&self, token: &VerifiedToken) -> Option<String> {
        let pointer = self.org_claim.as_deref()?;
        let value = match Value::Object(token.claims.clone()).pointer(pointer)? {
            Value::String(id) if !id.is_empty() && id.len() <= 200 => id.clone(),
            Value::Number(n) => n.to_string(),
            _ => return None,
        };
        Some(match self.kind {
            Kind::Oidc => format!("{}:{value}", self.name),
            Kind::Local | Kind::Stack => value,
        })
    }
}

/// Serves the local provider's keys to its verifier, from `signing_keys`.
struct DatabaseKeys {
    db: TenantDb,
}

impl KeyFetcher for DatabaseKeys {
    fn fetch(&self) -> BoxFuture<'_, Result<JwkSet, FetchError>> {
        Box::pin(async move {
            let keys = async {
                let mut tx = self.db.begin(TenantContext::none()).await?;
                let keys = signing::published(tx.conn()).await?;
                tx.commit().await?;
                Ok::<_, crate::db::DbError>(keys)
            }
            .await
            .map_err(|e| FetchError::Source(e.to_string()))?;
            serde_json::from_value(serde_json::json!({ "keys": keys }))
                .map_err(|e| FetchError::Source(e.to_string()))
        })
    }
}

/// Finds an OIDC issuer's `jwks_uri` through its discovery document, then fetches from there.
struct DiscoveredKeys {
    discovery: Arc<super::oidc::Discovery>,
    fetcher: tokio::sync::OnceCell<HttpKeyFetcher>,
}

impl KeyFetcher for DiscoveredKeys {
    fn fetch(&self) -> BoxFuture<'_, Result<JwkSet, FetchError>> {
        Box::pin(async move {
            let fetcher = self
                .fetcher
                .get_or_try_init(|| async {
                    let document = self
                        .discovery
                        .document()
                        .await
                        .map_err(|e| FetchError::Source(e.to_string()))?;
                    HttpKeyFetcher::new(&document.jwks_uri, CacheSettings::default().fetch_timeout)
                        .map_err(|e| FetchError::Source(e.to_string()))
                })
                .await?;
            fetcher.fetch().await
        })
    }
}

pub struct Providers {
    by_issuer: HashMap<String, Arc<Provider>>,
    by_name: HashMap<String, Arc<Provider>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("{0}")]
    Keys(String),
    #[error("two providers have the issuer {0:?}")]
    DuplicateIssuer(String),
}

impl Providers {
    pub fn new(
        settings: &AuthSettings,
        db: &TenantDb,
        http: &reqwest::Client,
    ) -> Result<Self, ProviderError> {
        let mut providers = Vec::new();
        // fleetmon's own tokens carry every browser session, whichever provider signed the user
        // in, so they are always verified; `settings.local` only governs built-in accounts.
        {
            let keys = JwksCache::new(
                Arc::new(DatabaseKeys { db: db.clone() }),
                CacheSettings {
                    // Reading our own table is cheap; a key rotated on another replica is picked
                    // up at once.
                    min_refresh_interval: Duration::from_secs(1),
                    ..CacheSettings::default()
                },
            );
            providers.push(Provider {
                name: "local".into(),
                kind: Kind::Local,
                verifier: Verifier::new(
                    IssuerPolicy {
                        issuer: settings.public_url.clone(),
                        audiences: vec![LOCAL_AUDIENCE.into()],
                        accept_azp: false,
                        algorithms: vec![Algorithm::EdDSA],
                        leeway: LOCAL_LEEWAY,
                    },
                    keys,
                ),
                users_issuer: super::local::ISSUER.into(),
                org_claim: None,
                stack: None,
                oidc: None,
                discovery: None,
                id_tokens: None,
            });
        }
        if let Some(stack) = &settings.stack {
            let fetcher: Arc<dyn KeyFetcher> = Arc::new(
                HttpKeyFetcher::new(
                    &stack.settings.jwks_url(),
                    CacheSettings::default().fetch_timeout,
                )
                .map_err(|e| ProviderError::Keys(e.to_string()))?,
            );
            // One provider per kind of Stack user the settings accept, all on one key set URL.
            for (index, issuer) in stack.settings.token_issuers().into_iter().enumerate() {
                providers.push(Provider {
                    name: if index == 0 {
                        "stack".into()
                    } else {
                        format!("stack-{:?}", issuer.kind).to_lowercase()
                    },
                    kind: Kind::Stack,
                    verifier: Verifier::new(
                        IssuerPolicy {
                            issuer: issuer.issuer,
                            audiences: vec![issuer.audience],
                            accept_azp: false,
                            algorithms: vec![Algorithm::ES256],
                            leeway: LOCAL_LEEWAY,
                        },
                        JwksCache::new(fetcher.clone(), CacheSettings::default()),
                    ),
                    users_issuer: stack.settings.issuer(),
                    org_claim: Some("/selected_team_id".into()),
                    stack: Some(stack.clone()),
                    oidc: None,
                    discovery: None,
                    id_tokens: None,
                });
            }
        }
        for oidc in &settings.oidc {
            let discovery = Arc::new(super::oidc::Discovery::new(&oidc.issuer, http.clone()));
            let fetcher: Arc<dyn KeyFetcher> = match &oidc.jwks_url {
                Some(url) => Arc::new(
                    HttpKeyFetcher::new(url, CacheSettings::default().fetch_timeout)
                        .map_err(|e| ProviderError::Keys(e.to_string()))?,
                ),
                None => Arc::new(DiscoveredKeys {
                    discovery: discovery.clone(),
                    fetcher: tokio::sync::OnceCell::new(),
                }),
            };
            let policy = IssuerPolicy {
                issuer: oidc.issuer.clone(),
                audiences: oidc.audiences.clone(),
                accept_azp: oidc.accept_azp,
                algorithms: oidc.algorithms.clone(),
                leeway: oidc.leeway,
            };
            // Id tokens are verified with their own policy (audience = client id) and cache.
            let id_tokens = oidc.client_id.as_ref().map(|client_id| {
                Verifier::new(
                    IssuerPolicy {
                        audiences: vec![client_id.clone()],
                        accept_azp: false,
                        ..policy.clone()
                    },
                    JwksCache::new(fetcher.clone(), CacheSettings::default()),
                )
            });
            providers.push(Provider {
                name: oidc.name.clone(),
                kind: Kind::Oidc,
                verifier: Verifier::new(policy, JwksCache::new(fetcher, CacheSettings::default())),
                users_issuer: oidc.issuer.clone(),
                org_claim: oidc.org_claim.clone(),
                stack: None,
                oidc: Some(oidc.clone()),
                discovery: Some(discovery),
                id_tokens,
            });
        }
        let mut by_issuer = HashMap::new();
        let mut by_name = HashMap::new();
        for provider in providers {
            let provider = Arc::new(provider);
            let issuer = provider.verifier.policy().issuer.clone();
            if by_issuer.insert(issuer.clone(), provider.clone()).is_some() {
                return Err(ProviderError::DuplicateIssuer(issuer));
            }
            by_name.insert(provider.name.clone(), provider);
        }
        Ok(Self { by_issuer, by_name })
    }

    /// Verifies `token` with the provider its `iss` names.
    pub async fn verify(&self, token: &str) -> Result<(Arc<Provider>, VerifiedToken), TokenError> {
        let issuer = jwt::unverified_issuer(token)?;
        let provider = self
            .by_issuer
            .get(&issuer)
            .ok_or(TokenError::UnknownIssuer)?;
        let verified = provider.verifier.verify(token).await?;
        Ok((provider.clone(), verified))
    }

    pub fn named(&self, name: &str) -> Option<&Arc<Provider>> {
        self.by_name.get(name)
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<Provider>> {
        self.by_name.values()
    }
}

/// Signs a local access token for `user_id` in session `session_id`.
pub fn sign_access_token(
    key: &signing::ActiveKey,
    issuer: &str,
    user_id: Uuid,
    session_id: Uuid,
) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = serde_json::json!({
        "iss": issuer,
        "sub": user_id.to_string(),
        "aud": LOCAL_AUDIENCE,
        "iat": now,
        "exp": now + ACCESS_TOKEN_TTL.num_seconds(),
        "sid": session_id.to_string(),
        // Two tokens issued in the same second still differ.
        "jti": super::random_base62(16),
    });
    let mut header = jsonwebtoken::Header::new(Algorithm::EdDSA);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, &claims, &key.encoding_key()).expect("an Ed25519 key signs")
}
