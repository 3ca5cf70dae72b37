//! Sign-in settings: which providers are active and how each is reached. Flags override the
//! environment, which overrides `fleetmon.toml`; Stack Auth also reads the variable names that
//! existing Stack setups already carry.

use std::time::Duration;

use clap::Args;
use serde::Deserialize;

use super::stack::{StackSettings, DEFAULT_API_URL};
use crate::config::FileConfig;

#[derive(Debug, Clone, Default, Args)]
pub struct AuthArgs {
    /// The address users reach fleetmon at, e.g. https://fleet.example.com; names the built-in
    /// issuer and makes cookies Secure when https [default: http://<listen address>]
    #[arg(long, env = "FLEETMON_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    /// Built-in accounts [default: on unless Stack or OIDC is configured]
    #[arg(long, env = "FLEETMON_LOCAL_AUTH", value_name = "BOOL")]
    pub local_auth: Option<bool>,
    /// Stack Auth project id (also read from NEXT_PUBLIC_STACK_PROJECT_ID)
    #[arg(long, env = "FLEETMON_STACK_PROJECT_ID", value_name = "ID")]
    pub stack_project_id: Option<String>,
    /// Stack Auth publishable client key (also NEXT_PUBLIC_STACK_PUBLISHABLE_CLIENT_KEY)
    #[arg(
        long,
        env = "FLEETMON_STACK_PUBLISHABLE_CLIENT_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub stack_publishable_client_key: Option<String>,
    /// Stack Auth secret server key (also STACK_SECRET_SERVER_KEY)
    #[arg(
        long,
        env = "FLEETMON_STACK_SECRET_SERVER_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub stack_secret_server_key: Option<String>,
    /// Stack Auth API base URL, for self-hosted Stack [default: Stack's hosted API]
    #[arg(long, env = "FLEETMON_STACK_API_URL", value_name = "URL")]
    pub stack_api_url: Option<String>,
    /// Accept Stack's anonymous users [default: false]
    #[arg(long, env = "FLEETMON_STACK_ALLOW_ANONYMOUS", value_name = "BOOL")]
    pub stack_allow_anonymous: Option<bool>,
    /// Accept Stack's restricted users, e.g. with an unverified email [default: false]
    #[arg(long, env = "FLEETMON_STACK_ALLOW_RESTRICTED", value_name = "BOOL")]
    pub stack_allow_restricted: Option<bool>,
    /// Stack Auth OAuth providers to offer on the sign-in page, comma-separated (github,google)
    #[arg(long, env = "FLEETMON_STACK_OAUTH_PROVIDERS", value_name = "IDS")]
    pub stack_oauth_providers: Option<String>,
    /// Stack webhook signing secret(s) (whsec_…), whitespace-separated during rotation
    #[arg(
        long,
        env = "FLEETMON_STACK_WEBHOOK_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub stack_webhook_secret: Option<String>,
    /// OpenID Connect issuer URL, exactly as its tokens' `iss`
    #[arg(long, env = "FLEETMON_OIDC_ISSUER", value_name = "URL")]
    pub oidc_issuer: Option<String>,
    /// Audiences accepted in OIDC tokens, comma-separated [default: the client id]
    #[arg(long, env = "FLEETMON_OIDC_AUDIENCE", value_name = "AUD")]
    pub oidc_audience: Option<String>,
    /// OIDC client id, for browser sign-in
    #[arg(long, env = "FLEETMON_OIDC_CLIENT_ID", value_name = "ID")]
    pub oidc_client_id: Option<String>,
    /// OIDC client secret, for browser sign-in
    #[arg(
        long,
        env = "FLEETMON_OIDC_CLIENT_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub oidc_client_secret: Option<String>,
    /// JWKS URL, when the issuer has no discovery document
    #[arg(long, env = "FLEETMON_OIDC_JWKS_URL", value_name = "URL")]
    pub oidc_jwks_url: Option<String>,
    /// JSON pointer to the org claim, e.g. /org_id [default: none]
    #[arg(long, env = "FLEETMON_OIDC_ORG_CLAIM", value_name = "POINTER")]
    pub oidc_org_claim: Option<String>,
}

/// `[stack]` in fleetmon.toml.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StackFile {
    pub project_id: Option<String>,
    pub publishable_client_key: Option<String>,
    pub secret_server_key: Option<String>,
    pub api_url: Option<String>,
    pub webhook_secret: Option<String>,
    pub allow_anonymous: Option<bool>,
    pub allow_restricted: Option<bool>,
    /// The Stack project's OAuth providers to offer on the sign-in page.
    pub oauth_providers: Option<Vec<String>>,
}

/// One `[[oidc]]` table in fleetmon.toml (several issuers at once).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcFile {
    /// Short name, used in sign-in URLs (`/auth/oidc/<name>/start`) [default: oidc]
    pub name: Option<String>,
    /// Shown on the sign-in page.
    pub display_name: Option<String>,
    pub issuer: String,
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Accept a token whose `azp` (instead of `aud`) is one of the audiences.
    #[serde(default)]
    pub accept_azp: bool,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub jwks_url: Option<String>,
    #[serde(default)]
    pub algorithms: Vec<String>,
    pub leeway_s: Option<u64>,
    pub org_claim: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// Resolved settings of the Stack provider.
#[derive(Debug, Clone)]
pub struct StackConfig {
    pub settings: StackSettings,
    /// Webhook signing secrets; empty when webhooks are not used. Never logged.
    pub webhook_secrets: Vec<String>,
}

/// Resolved settings of one OIDC provider.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    pub name: String,
    pub display_name: String,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub accept_azp: bool,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub jwks_url: Option<String>,
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    pub leeway: Duration,
    pub org_claim: Option<String>,
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// Without a trailing slash.
    pub public_url: String,
    pub local: bool,
    pub stack: Option<StackConfig>,
    pub oidc: Vec<OidcConfig>,
}

impl AuthSettings {
    /// Cookies are marked Secure when users reach fleetmon over https.
    pub fn secure_cookies(&self) -> bool {
        self.public_url.starts_with("https://")
    }

    /// Only built-in accounts, reached at `public_url` (tests and the demo).
    pub fn local_only(public_url: &str) -> Self {
        Self {
            public_url: public_url.trim_end_matches('/').to_string(),
            local: true,
            stack: None,
            oidc: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{what} {url:?} is not a usable URL: use https://, or http:// on a loopback address (127.0.0.1, [::1], localhost)")]
    Url { what: &'static str, url: String },
    #[error("OIDC provider {name:?}: the algorithm {alg:?} is not supported; use RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA")]
    Algorithm { name: String, alg: String },
    #[error("OIDC provider {0:?}: give `audiences` or a `client_id`, so tokens meant for other services are refused")]
    NoAudience(String),
    #[error("OIDC provider names must be unique lowercase words; {0:?} is not")]
    Name(String),
    #[error("the org claim {0:?} is not a JSON pointer (it starts with /, e.g. /org_id)")]
    OrgClaim(String),
    #[error(transparent)]
    Stack(#[from] super::stack::StackError),
}

/// True for https, and for http on a loopback host only.
pub fn acceptable_url(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|url| url.has_host() && super::secure_transport(&url))
}

fn env_fallback(primary: &Option<String>, name: &str) -> Option<String> {
    primary
        .clone()
        .or_else(|| std::env::var(name).ok())
        .filter(|v| !v.is_empty())
}

fn parse_algorithms(
    name: &str,
    names: &[String],
) -> Result<Vec<jsonwebtoken::Algorithm>, SettingsError> {
    use jsonwebtoken::Algorithm::*;
    if names.is_empty() {
        return Ok(vec![RS256, ES256]);
    }
    names
        .iter()
        .map(|alg| match alg.as_str() {
            "RS256" => Ok(RS256),
            "RS384" => Ok(RS384),
            "RS512" => Ok(RS512),
            "PS256" => Ok(PS256),
            "PS384" => Ok(PS384),
            "PS512" => Ok(PS512),
            "ES256" => Ok(ES256),
            "ES384" => Ok(ES384),
            "EdDSA" => Ok(EdDSA),
            // HMAC algorithms are refused: a public key must never work as a shared secret.
            _ => Err(SettingsError::Algorithm {
                name: name.to_string(),
                alg: alg.clone(),
            }),
        })
        .collect()
}

fn oidc_config(file: &OidcFile) -> Result<OidcConfig, SettingsError> {
    let name = file.name.clone().unwrap_or_else(|| "oidc".to_string());
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(SettingsError::Name(name));
    }
    let issuer = file.issuer.clone();
    if !acceptable_url(&issuer) {
        return Err(SettingsError::Url {
            what: "the OIDC issuer",
            url: issuer,
        });
    }
    if let Some(url) = &file.jwks_url {
        if !acceptable_url(url) {
            return Err(SettingsError::Url {
                what: "the OIDC JWKS URL",
                url: url.clone(),
            });
        }
    }
    if let Some(pointer) = &file.org_claim {
        if !pointer.starts_with('/') {
            return Err(SettingsError::OrgClaim(pointer.clone()));
        }
    }
    let mut audiences = file.audiences.clone();
    if audiences.is_empty() {
        audiences.extend(file.client_id.clone());
    }
    if audiences.is_empty() {
        return Err(SettingsError::NoAudience(name));
    }
    Ok(OidcConfig {
        display_name: file.display_name.clone().unwrap_or_else(|| name.clone()),
        algorithms: parse_algorithms(&name, &file.algorithms)?,
        name,
        issuer,
        audiences,
        accept_azp: file.accept_azp,
        client_id: file.client_id.clone(),
        client_secret: file.client_secret.clone(),
        jwks_url: file.jwks_url.clone(),
        leeway: Duration::from_secs(file.leeway_s.unwrap_or(60)),
        org_claim: file.org_claim.clone(),
        scopes: file.scopes.clone(),
    })
}

impl AuthArgs {
    pub fn resolve(
        &self,
        file: &FileConfig,
        listen: std::net::SocketAddr,
    ) -> Result<AuthSettings, SettingsError> {
        let public_url = self
            .public_url
            .clone()
            .or_else(|| file.public_url.clone())
            .unwrap_or_else(|| format!("http://{listen}"))
            .trim_end_matches('/')
            .to_string();
        if !public_url.starts_with("https://") && !public_url.starts_with("http://") {
            return Err(SettingsError::Url {
                what: "the public URL",
                url: public_url,
            });
        }

        let stack_file = file.stack.clone().unwrap_or_default();
        let stack = env_fallback(&self.stack_project_id, "NEXT_PUBLIC_STACK_PROJECT_ID")
            .or(stack_file.project_id.clone())
            .map(|project_id| {
                let settings = StackSettings {
                    api_url: env_fallback(&self.stack_api_url, "NEXT_PUBLIC_STACK_API_URL")
                        .or(stack_file.api_url.clone())
                        .unwrap_or_else(|| DEFAULT_API_URL.to_string()),
                    project_id: project_id.trim().to_string(),
                    publishable_client_key: env_fallback(
                        &self.stack_publishable_client_key,
                        "NEXT_PUBLIC_STACK_PUBLISHABLE_CLIENT_KEY",
                    )
                    .or(stack_file.publishable_client_key.clone()),
                    secret_server_key: env_fallback(
                        &self.stack_secret_server_key,
                        "STACK_SECRET_SERVER_KEY",
                    )
                    .or(stack_file.secret_server_key.clone()),
                    allow_anonymous: self
                        .stack_allow_anonymous
                        .or(stack_file.allow_anonymous)
                        .unwrap_or(false),
                    allow_restricted: self
                        .stack_allow_restricted
                        .or(stack_file.allow_restricted)
                        .unwrap_or(false),
                    oauth_providers: match &self.stack_oauth_providers {
                        Some(list) => list
                            .split(',')
                            .map(str::trim)
                            .filter(|p| !p.is_empty())
                            .map(str::to_string)
                            .collect(),
                        None => stack_file.oauth_providers.clone().unwrap_or_default(),
                    },
                };
                settings.validate()?;
                Ok::<_, SettingsError>(StackConfig {
                    settings,
                    webhook_secrets: self
                        .stack_webhook_secret
                        .clone()
                        .or(stack_file.webhook_secret.clone())
                        .map(|s| s.split_whitespace().map(str::to_string).collect())
                        .unwrap_or_default(),
                })
            })
            .transpose()?;

        let mut oidc_files = file.oidc.clone();
        if let Some(issuer) = &self.oidc_issuer {
            oidc_files.retain(|o| o.name.as_deref().unwrap_or("oidc") != "oidc");
            oidc_files.push(OidcFile {
                name: None,
                display_name: None,
                issuer: issuer.clone(),
                audiences: self
                    .oidc_audience
                    .as_deref()
                    .map(|a| {
                        a.split(',')
                            .map(|s| s.trim().to_string())
                            .filter(|s| !s.is_empty())
                            .collect()
                    })
                    .unwrap_or_default(),
                accept_azp: false,
                client_id: self.oidc_client_id.clone(),
                client_secret: self.oidc_client_secret.clone(),
                jwks_url: self.oidc_jwks_url.clone(),
                algorithms: Vec::new(),
                leeway_s: None,
                org_claim: self.oidc_org_claim.clone(),
                scopes: Vec::new(),
            });
        }
        let oidc = oidc_files
            .iter()
            .map(oidc_config)
            .collect::<Result<Vec<_>, _>>()?;
        let mut names: Vec<&str> = oidc.iter().map(|o| o.name.as_str()).collect();
        names.sort_unstable();
        if let Some(dup) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(SettingsError::Name(dup[0].to_string()));
        }

        let local = self
            .local_auth
            .or(file.local_auth)
            .unwrap_or(stack.is_none() && oidc.is_empty());
        Ok(AuthSettings {
            public_url,
            local,
            stack,
            oidc,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_on_loopback() {
        assert!(acceptable_url("https://auth.example.com"));
        assert!(acceptable_url("http://127.0.0.1:8080/x"));
        assert!(acceptable_url("http://[::1]:9/"));
        assert!(acceptable_url("http://localhost:3000"));
        assert!(!acceptable_url("http://auth.example.com"));
        assert!(!acceptable_url("http://10.0.0.1"));
        assert!(!acceptable_url("ftp://127.0.0.1"));
        assert!(!acceptable_url("https://"));
    }

    #[test]
    fn local_accounts_are_the_default_only_without_other_providers() {
        let listen = "127.0.0.1:8080".parse().unwrap();
        let none = AuthArgs::default()
            .resolve(&FileConfig::default(), listen)
            .unwrap();
        assert!(none.local);
        assert_eq!(none.public_url, "http://127.0.0.1:8080");
        let with_oidc = AuthArgs {
            oidc_issuer: Some("https://issuer.example.com".into()),
            oidc_client_id: Some("fleetmon".into()),
            ..Default::default()
        }
        .resolve(&FileConfig::default(), listen)
        .unwrap();
        assert!(!with_oidc.local);
        assert_eq!(with_oidc.oidc[0].audiences, ["fleetmon"]);
    }

    #[test]
    fn hmac_algorithms_and_insecure_issuers_are_refused() {
        let listen = "127.0.0.1:8080".parse().unwrap();
        let file: FileConfig = toml::from_str(
            "[[oidc]]\nissuer = \"https://a.example.com\"\naudiences = [\"x\"]\nalgorithms = [\"HS256\"]\n",
        )
        .unwrap();
        let error = AuthArgs::default().resolve(&file, listen).unwrap_err();
        assert!(matches!(error, SettingsError::Algorithm { .. }), "{error}");
        let file: FileConfig =
            toml::from_str("[[oidc]]\nissuer = \"http://a.example.com\"\naudiences = [\"x\"]\n")
                .unwrap();
        assert!(AuthArgs::default().resolve(&file, listen).is_err());
    }

    #[test]
    fn stack_oauth_providers_come_from_the_flag_or_the_file() {
        let listen = "127.0.0.1:8080".parse().unwrap();
        let file: FileConfig = toml::from_str(
            "[stack]\nproject_id = \"p-1\"\npublishable_client_key = \"pck_1\"\noauth_providers = [\"github\"]\n",
        )
        .unwrap();
        let providers = |args: AuthArgs| {
            let settings = args.resolve(&file, listen).unwrap();
            settings.stack.unwrap().settings.oauth_providers
        };
        assert_eq!(providers(AuthArgs::default()), ["github"]);
        let flag = AuthArgs {
            stack_oauth_providers: Some("google, microsoft,".into()),
            ..Default::default()
        };
        assert_eq!(providers(flag), ["google", "microsoft"]);
        let bad = AuthArgs {
            stack_oauth_providers: Some("git hub".into()),
            ..Default::default()
        };
        assert!(bad.resolve(&file, listen).is_err());
    }
}
