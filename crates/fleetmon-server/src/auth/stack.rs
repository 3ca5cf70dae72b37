//! Stack Auth (the `stack` provider): its settings, a client for the part of Stack's documented
//! client REST API that fleetmon's own login page uses (password, one-time code / magic link,
//! OAuth, refresh, sign-out), and the Stack-specific checks on a verified access token's claims.
//!
//! Signature, `iss`, `aud` and `exp` are checked by the generic JWT verifier; this module says
//! which issuers, audiences and JWKS to give it ([`StackSettings::token_issuers`],
//! [`StackSettings::jwks_url`]) and what Stack's own claims mean ([`check_claims`]).
//! docs/stack-auth.md describes the endpoints and claims.

use std::fmt;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

/// Stack's hosted API. Self-hosted Stack is reached by setting `api_url`.
pub const DEFAULT_API_URL: &str = "https://api.stack-auth.com";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest reply read from Stack; the answers used here are well under a kilobyte.
const MAX_REPLY_BYTES: usize = 64 * 1024;
/// Longest one-time code accepted for sending on (Stack's are 45 characters).
const MAX_CODE_LEN: usize = 64;
/// Longest refresh token accepted for sending on (Stack's are under 100 characters).
const MAX_TOKEN_LEN: usize = 4096;

/// How fleetmon reaches one Stack Auth project. `Debug` never shows the keys.
#[derive(Clone, PartialEq, Eq)]
pub struct StackSettings {
    /// Stack's API base, without `/api/v1` (default [`DEFAULT_API_URL`]).
    pub api_url: String,
    pub project_id: String,
    pub publishable_client_key: Option<String>,
    pub secret_server_key: Option<String>,
    /// Accept tokens of anonymous users (`is_anonymous`); off by default.
    pub allow_anonymous: bool,
    /// Accept tokens of restricted users (`is_restricted`, e.g. email not yet verified); off by
    /// default. Anonymous users are restricted too, and are governed by `allow_anonymous` alone.
    pub allow_restricted: bool,
    /// The OAuth providers enabled on the Stack project (`github`, `google`, …), each offered on
    /// the sign-in page; empty by default. They need the publishable client key.
    pub oauth_providers: Vec<String>,
}

impl fmt::Debug for StackSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |key: &Option<String>| key.as_ref().map(|_| "<redacted>");
        f.debug_struct("StackSettings")
            .field("api_url", &self.api_url)
            .field("project_id", &self.project_id)
            .field(
                "publishable_client_key",
                &redact(&self.publishable_client_key),
            )
            .field("secret_server_key", &redact(&self.secret_server_key))
            .field("allow_anonymous", &self.allow_anonymous)
            .field("allow_restricted", &self.allow_restricted)
            .field("oauth_providers", &self.oauth_providers)
            .finish()
    }
}

/// The kinds of users Stack signs access tokens for, each under its own issuer and audience.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StackUserKind {
    Regular,
    Restricted,
    Anonymous,
}

/// One issuer/audience pair under which Stack signs access tokens for this project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackIssuer {
    pub kind: StackUserKind,
    pub issuer: String,
    pub audience: String,
}

const NO_KEY_FOR_OAUTH: &str =
    "OAuth sign-in through Stack needs FLEETMON_STACK_PUBLISHABLE_CLIENT_KEY";

/// Stack's OAuth provider ids (`github`, `google`, `microsoft`, …) go into URL paths.
fn is_provider_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn not_a_provider_id(id: &str) -> StackError {
    StackError::Settings(format!("{id:?} is not an OAuth provider id"))
}

impl StackSettings {
    /// Settings for `project_id` on Stack's hosted API, with every option at its default.
    pub fn new(project_id: impl Into<String>) -> Self {
        Self {
            api_url: DEFAULT_API_URL.to_string(),
            project_id: project_id.into(),
            publishable_client_key: None,
            secret_server_key: None,
            allow_anonymous: false,
            allow_restricted: false,
            oauth_providers: Vec::new(),
        }
    }

    /// Checks the project id and the API URL (`https`, or plain `http` on a loopback address
    /// only; no credentials, query or fragment), and that OAuth providers are provider ids and
    /// come with the publishable key OAuth needs.
    pub fn validate(&self) -> Result<(), StackError> {
        self.checked_api_base()?;
        if let Some(bad) = self.oauth_providers.iter().find(|p| !is_provider_id(p)) {
            return Err(not_a_provider_id(bad));
        }
        if !self.oauth_providers.is_empty() && self.publishable_client_key.is_none() {
            return Err(StackError::Settings(NO_KEY_FOR_OAUTH.into()));
        }
        Ok(())
    }

    /// `<api_url>/api/v1/`, once the settings pass [`Self::validate`].
    fn checked_api_base(&self) -> Result<Url, StackError> {
        let id = &self.project_id;
        if id.is_empty()
            || id.len() > 128
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(StackError::Settings(format!(
                "the Stack project id {id:?} is not a project id (letters, digits, '-' and '_')"
            )));
        }
        let bad =
            |why: &str| StackError::Settings(format!("the Stack API URL {:?} {why}", self.api_url));
        let url =
            Url::parse(&format!("{}/api/v1/", self.base())).map_err(|_| bad("is not a URL"))?;
        if !url.username().is_empty() || url.password().is_some() {
            // Not quoted: the credentials are the part that must not be shown.
            return Err(StackError::Settings(
                "the Stack API URL must not carry credentials".into(),
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("must not have a query or fragment"));
        }
        match url.scheme() {
            "https" => Ok(url),
            "http" if super::is_loopback(&url) => Ok(url),
            "http" => Err(bad(
                "must use https (plain http only on loopback addresses)",
            )),
            _ => Err(bad("must be an https URL")),
        }
    }

    fn base(&self) -> &str {
        self.api_url.trim().trim_end_matches('/')
    }

    /// The issuer of regular users' access tokens: `<api_url>/api/v1/projects/<project_id>`.
    pub fn issuer(&self) -> String {
        self.issuer_of(StackUserKind::Regular).issuer
    }

    /// The issuer/audience pair Stack uses for `kind`.
    pub fn issuer_of(&self, kind: StackUserKind) -> StackIssuer {
        let (path, suffix) = match kind {
            StackUserKind::Regular => ("projects", ""),
            StackUserKind::Restricted => ("projects-restricted-users", ":restricted"),
            StackUserKind::Anonymous => ("projects-anonymous-users", ":anon"),
        };
        StackIssuer {
            kind,
            issuer: format!("{}/api/v1/{path}/{}", self.base(), self.project_id),
            audience: format!("{}{suffix}", self.project_id),
        }
    }

    /// Every issuer/audience pair whose tokens these settings accept: regular users always,
    /// restricted and anonymous users only when allowed.
    pub fn token_issuers(&self) -> Vec<StackIssuer> {
        let mut kinds = vec![StackUserKind::Regular];
        if self.allow_restricted {
            kinds.push(StackUserKind::Restricted);
        }
        if self.allow_anonymous {
            kinds.push(StackUserKind::Anonymous);
        }
        kinds.into_iter().map(|k| self.issuer_of(k)).collect()
    }

    /// The project's JWKS. Stack publishes the keys of restricted and anonymous users' tokens
    /// only when asked (`include_anonymous` implies restricted), so it asks for no more than the
    /// settings accept.
    pub fn jwks_url(&self) -> String {
        let query = match (self.allow_anonymous, self.allow_restricted) {
            (true, true) => "?include_anonymous=true&include_restricted=true",
            (true, false) => "?include_anonymous=true",
            (false, true) => "?include_restricted=true",
            (false, false) => "",
        };
        format!(
            "{}/api/v1/projects/{}/.well-known/jwks.json{query}",
            self.base(),
            self.project_id
        )
    }
}

/// Why a call to Stack failed. Messages never contain a password, token or key.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("invalid Stack Auth settings: {0}")]
    Settings(String),
    /// Wrong email or password (`EMAIL_PASSWORD_MISMATCH`).
    #[error("wrong email or password")]
    InvalidCredentials,
    /// A one-time code, magic link or OAuth authorization code that is unknown, expired, used
    /// or has had too many attempts.
    #[error("the sign-in code is invalid, expired or already used")]
    InvalidCode,
    /// The refresh token is unknown, expired or revoked (`REFRESH_TOKEN_NOT_FOUND_OR_EXPIRED`):
    /// the user must sign in again.
    #[error("the Stack Auth session has ended; sign in again")]
    SessionEnded,
    /// Stack refused fleetmon's own project credentials or URLs: an operator must fix the
    /// settings (project id, publishable key, trusted callback domains).
    #[error("Stack Auth refused fleetmon's project settings ({code}); check the project id, publishable client key and trusted domains")]
    Misconfigured { code: String },
    /// Any other refusal Stack explains with a known-error code (for example
    /// `MULTI_FACTOR_AUTHENTICATION_REQUIRED` or `PASSWORD_AUTHENTICATION_NOT_ENABLED`).
    #[error("Stack Auth refused the request ({code})")]
    Refused { code: String },
    /// No answer (connection failure, timeout) or an overloaded one (HTTP 429, 5xx).
    #[error("Stack Auth is unreachable: {0}")]
    Unreachable(String),
    /// An answer fleetmon cannot use: not the documented shape, too large, an unexplained status.
    #[error("unexpected reply from Stack Auth: {0}")]
    UnexpectedReply(String),
}

impl StackError {
    /// A stable reason code for fleetmon's own error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Settings(_) => "stack_settings_invalid",
            Self::InvalidCredentials => "invalid_credentials",
            Self::InvalidCode => "invalid_code",
            Self::SessionEnded => "session_ended",
            Self::Misconfigured { .. } => "stack_misconfigured",
            Self::Refused { .. } => "stack_refused",
            Self::Unreachable(_) => "stack_unreachable",
            Self::UnexpectedReply(_) => "stack_bad_reply",
        }
    }

    fn from_known(code: String) -> Self {
        match code.as_str() {
            "EMAIL_PASSWORD_MISMATCH" => Self::InvalidCredentials,
            "VERIFICATION_CODE_NOT_FOUND"
            | "VERIFICATION_CODE_EXPIRED"
            | "VERIFICATION_CODE_ALREADY_USED"
            | "VERIFICATION_CODE_MAX_ATTEMPTS_REACHED"
            | "INVALID_AUTHORIZATION_CODE" => Self::InvalidCode,
            "REFRESH_TOKEN_NOT_FOUND_OR_EXPIRED" => Self::SessionEnded,
            "ACCESS_TYPE_REQUIRED"
            | "INVALID_ACCESS_TYPE"
            | "ACCESS_TYPE_WITHOUT_PROJECT_ID"
            | "INSUFFICIENT_ACCESS_TYPE"
            | "PROJECT_KEY_WITHOUT_ACCESS_TYPE"
            | "CLIENT_AUTHENTICATION_REQUIRED"
            | "INVALID_PUBLISHABLE_CLIENT_KEY"
            | "PUBLISHABLE_CLIENT_KEY_REQUIRED_FOR_PROJECT"
            | "INVALID_OAUTH_CLIENT_ID_OR_SECRET"
            | "PROJECT_NOT_FOUND"
            | "CURRENT_PROJECT_NOT_FOUND"
            | "REDIRECT_URL_NOT_WHITELISTED" => Self::Misconfigured { code },
            _ => Self::Refused { code },
        }
    }
}

/// The tokens of a new Stack session. Who signed in is read from the access token once it is
/// verified, never from this reply. `Debug` never shows the tokens.
#[derive(Clone, PartialEq, Eq)]
pub struct StackSession {
    pub access_token: String,
    pub refresh_token: String,
    /// Stack created the user during this sign-in (one-time code and OAuth only).
    pub is_new_user: bool,
}

impl fmt::Debug for StackSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StackSession")
            .field("access_token", &"<redacted>")
            .field("refresh_token", &"<redacted>")
            .field("is_new_user", &self.is_new_user)
            .finish()
    }
}

#[derive(Deserialize)]
struct SessionReply {
    access_token: String,
    refresh_token: String,
    #[serde(default)]
    is_new_user: bool,
}

impl SessionReply {
    fn into_session(self) -> Result<StackSession, StackError> {
        if self.access_token.is_empty() || self.refresh_token.is_empty() {
            return Err(StackError::UnexpectedReply("an empty token".into()));
        }
        Ok(StackSession {
            access_token: self.access_token,
            refresh_token: self.refresh_token,
            is_new_user: self.is_new_user,
        })
    }
}

#[derive(Deserialize)]
struct AccessTokenReply {
    access_token: String,
}

#[derive(Deserialize)]
struct NonceReply {
    nonce: String,
}

#[derive(Deserialize)]
struct KnownErrorReply {
    code: String,
}

enum Body<'a> {
    Empty,
    Json(Value),
    Form(&'a [(&'a str, &'a str)]),
}

const REFRESH_TOKEN: HeaderName = HeaderName::from_static("x-stack-refresh-token");
const ACCESS_TOKEN: HeaderName = HeaderName::from_static("x-stack-access-token");

/// A client of Stack's client REST API for one project (`x-stack-access-type: client`), with
/// timeouts and size-capped replies.
#[derive(Debug, Clone)]
pub struct StackClient {
    settings: StackSettings,
    api: Url,
    http: reqwest::Client,
}

impl StackClient {
    pub fn new(settings: StackSettings) -> Result<Self, StackError> {
        let api = settings.checked_api_base()?;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            // Stack's JSON endpoints answer directly; following a redirect would send the
            // project's headers somewhere the settings never named.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| StackError::Settings(format!("HTTP client: {e}")))?;
        Ok(Self {
            settings,
            api,
            http,
        })
    }

    pub fn settings(&self) -> &StackSettings {
        &self.settings
    }

    /// `POST /auth/password/sign-in`.
    pub async fn sign_in_password(
        &self,
        email: &str,
        password: &str,
    ) -> Result<StackSession, StackError> {
        let body = serde_json::json!({ "email": email, "password": password });
        let reply: SessionReply = self
            .call(Method::POST, "auth/password/sign-in", Body::Json(body), &[])
            .await?;
        reply.into_session()
    }

    /// `POST /auth/otp/send-sign-in-code`: Stack emails a six-character code and a magic link
    /// (`callback_url` with a `code` parameter added). Returns the nonce that, appended to the
    /// six characters the user types, makes the code for [`Self::sign_in_with_code`].
    pub async fn send_sign_in_code(
        &self,
        email: &str,
        callback_url: &str,
    ) -> Result<String, StackError> {
        let body = serde_json::json!({ "email": email, "callback_url": callback_url });
        let reply: NonceReply = self
            .call(
                Method::POST,
                "auth/otp/send-sign-in-code",
                Body::Json(body),
                &[],
            )
            .await?;
        if reply.nonce.is_empty() {
            return Err(StackError::UnexpectedReply("an empty nonce".into()));
        }
        Ok(reply.nonce)
    }

    /// `POST /auth/otp/sign-in` with a magic link's `code`, or with the code typed from the
    /// email followed by the nonce of [`Self::send_sign_in_code`].
    pub async fn sign_in_with_code(&self, code: &str) -> Result<StackSession, StackError> {
        let code = code.trim();
        if code.is_empty()
            || code.len() > MAX_CODE_LEN
            || !code.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(StackError::InvalidCode);
        }
        let body = serde_json::json!({ "code": code });
        let reply: SessionReply = self
            .call(Method::POST, "auth/otp/sign-in", Body::Json(body), &[])
            .await?;
        reply.into_session()
    }

    /// Where to send the browser to sign in with an OAuth `provider` (`google`, `github`, …)
    /// through Stack: `GET /auth/oauth/authorize/<provider>`. Stack comes back to
    /// `redirect_uri` (which must be on the project's trusted domains) with `code` and `state`;
    /// `code_challenge` is the S256 PKCE challenge of the verifier kept for
    /// [`Self::oauth_exchange_code`]. Needs the publishable client key.
    pub fn oauth_authorize_url(
        &self,
        provider: &str,
        redirect_uri: &str,
        state: &str,
        code_challenge: &str,
    ) -> Result<Url, StackError> {
        if !is_provider_id(provider) {
            return Err(not_a_provider_id(provider));
        }
        let mut url = self.endpoint(&format!("auth/oauth/authorize/{provider}"))?;
        url.query_pairs_mut()
            .append_pair("client_id", &self.settings.project_id)
            .append_pair("client_secret", self.publishable_key_for_oauth()?)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", "legacy")
            .append_pair("state", state)
            .append_pair("grant_type", "authorization_code")
            .append_pair("code_challenge", code_challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("response_type", "code")
            .append_pair("type", "authenticate");
        Ok(url)
    }

    /// `POST /auth/oauth/token`: trades the `code` Stack sent to `redirect_uri` (the same URI as
    /// in the authorize URL) and the PKCE `code_verifier` for a session.
    pub async fn oauth_exchange_code(
        &self,
        code: &str,
        redirect_uri: &str,
        code_verifier: &str,
    ) -> Result<StackSession, StackError> {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", code_verifier),
            ("client_id", self.settings.project_id.as_str()),
            ("client_secret", self.publishable_key_for_oauth()?),
        ];
        let reply: SessionReply = self
            .call(Method::POST, "auth/oauth/token", Body::Form(&form), &[])
            .await?;
        reply.into_session()
    }

    fn publishable_key_for_oauth(&self) -> Result<&str, StackError> {
        self.settings
            .publishable_client_key
            .as_deref()
            .ok_or_else(|| StackError::Settings(NO_KEY_FOR_OAUTH.into()))
    }

    /// `POST /auth/sessions/current/refresh`: a fresh access token for the session.
    pub async fn refresh(&self, refresh_token: &str) -> Result<String, StackError> {
        // It comes from a cookie: one that cannot be a token is not sent anywhere.
        if refresh_token.is_empty()
            || refresh_token.len() > MAX_TOKEN_LEN
            || !refresh_token.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(StackError::SessionEnded);
        }
        let headers = [(REFRESH_TOKEN, refresh_token)];
        let reply: AccessTokenReply = self
            .call(
                Method::POST,
                "auth/sessions/current/refresh",
                Body::Empty,
                &headers,
            )
            .await?;
        if reply.access_token.is_empty() {
            return Err(StackError::UnexpectedReply("an empty access token".into()));
        }
        Ok(reply.access_token)
    }

    /// Ends the session at Stack so its refresh token stops working. Stack finds the session
    /// from the `refresh_token_id` claim of a current access token, so this refreshes first
    /// (as Stack's own SDK does). A session that has already ended counts as signed out.
    pub async fn sign_out(&self, refresh_token: &str) -> Result<(), StackError> {
        let access_token = match self.refresh(refresh_token).await {
            Ok(token) => token,
            Err(StackError::SessionEnded) => return Ok(()),
            Err(e) => return Err(e),
        };
        let headers = [
            (ACCESS_TOKEN, access_token.as_str()),
            (REFRESH_TOKEN, refresh_token),
        ];
        let done = self
            .send(
                Method::DELETE,
                "auth/sessions/current",
                Body::Json(serde_json::json!({})),
                &headers,
            )
            .await;
        match done {
            Ok(_) | Err(StackError::SessionEnded) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn endpoint(&self, path: &str) -> Result<Url, StackError> {
        self.api
            .join(path)
            .map_err(|_| StackError::Settings(format!("cannot form the URL of {path}")))
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Body<'_>,
        headers: &[(HeaderName, &str)],
    ) -> Result<T, StackError> {
        let reply = self.send(method, path, body, headers).await?;
        serde_json::from_slice(&reply).map_err(|_| {
            StackError::UnexpectedReply(format!("the reply to {path} is not the documented JSON"))
        })
    }

    /// Sends one request with the project's client headers; returns the body of a 2xx reply.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Body<'_>,
        headers: &[(HeaderName, &str)],
    ) -> Result<Vec<u8>, StackError> {
        let mut request = self
            .http
            .request(method, self.endpoint(path)?)
            .headers(self.client_headers(headers)?);
        request = match body {
            Body::Empty => request,
            Body::Json(value) => request.json(&value),
            Body::Form(pairs) => request.form(pairs),
        };
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        let known = response.headers().get("x-stack-known-error").cloned();
        let bytes = read_capped(response).await?;
        if let Some(header) = known {
            let reply: KnownErrorReply = serde_json::from_slice(&bytes).map_err(|_| {
                StackError::UnexpectedReply("a known error without its JSON body".into())
            })?;
            if header.as_bytes() != reply.code.as_bytes() || !is_known_error_code(&reply.code) {
                return Err(StackError::UnexpectedReply(
                    "a malformed known-error code".into(),
                ));
            }
            return Err(StackError::from_known(reply.code));
        }
        if status.is_success() {
            Ok(bytes)
        } else if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            Err(StackError::Unreachable(format!("HTTP {status}")))
        } else {
            Err(StackError::UnexpectedReply(format!("HTTP {status}")))
        }
    }

    fn client_headers(&self, extra: &[(HeaderName, &str)]) -> Result<HeaderMap, StackError> {
        let value = |text: &str, sensitive: bool| {
            let mut value = HeaderValue::from_str(text).map_err(|_| {
                StackError::Settings("a Stack header value has characters HTTP forbids".into())
            })?;
            value.set_sensitive(sensitive);
            Ok::<_, StackError>(value)
        };
        let mut headers = HeaderMap::new();
        headers.insert("x-stack-access-type", HeaderValue::from_static("client"));
        headers.insert(
            "x-stack-project-id",
            value(&self.settings.project_id, false)?,
        );
        if let Some(key) = &self.settings.publishable_client_key {
            headers.insert("x-stack-publishable-client-key", value(key, true)?);
        }
        for (name, text) in extra {
            headers.insert(name.clone(), value(text, true)?);
        }
        Ok(headers)
    }
}

/// Stack's known-error codes are short upper-case identifiers; anything else is not one.
fn is_known_error_code(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= 100
        && code
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

fn transport_error(error: reqwest::Error) -> StackError {
    if error.is_timeout() {
        return StackError::Unreachable("no answer in time".into());
    }
    // The innermost cause says what went wrong (refused, DNS, TLS); none carries a header.
    let mut cause: &dyn std::error::Error = &error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    StackError::Unreachable(cause.to_string())
}

/// Reads a reply body, refusing one larger than [`MAX_REPLY_BYTES`] without reading it all.
async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, StackError> {
    let too_large = || StackError::UnexpectedReply(format!("a reply over {MAX_REPLY_BYTES} bytes"));
    if response
        .content_length()
        .is_some_and(|len| len > MAX_REPLY_BYTES as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if body.len() + chunk.len() > MAX_REPLY_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// What fleetmon takes from a Stack access token whose signature, issuer, audience and expiry
/// the generic verifier has already checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackClaims {
    /// The team the user has selected in Stack; maps to an org's `external_team_id`.
    pub selected_team_id: Option<String>,
    pub email: Option<String>,
    /// Stack vouches for `email` (only then may pending memberships by email apply).
    pub email_verified: bool,
    pub name: Option<String>,
    pub is_anonymous: bool,
    pub is_restricted: bool,
}

/// Why a verified Stack token is still refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StackClaimError {
    #[error("anonymous Stack Auth users cannot sign in to fleetmon")]
    AnonymousNotAllowed,
    #[error("restricted Stack Auth users cannot sign in to fleetmon ({reason})")]
    RestrictedNotAllowed { reason: String },
    #[error("the Stack Auth claim `{0}` has the wrong type")]
    Malformed(&'static str),
}

impl StackClaimError {
    /// The reason code of the 401.
    pub fn code(&self) -> &'static str {
        match self {
            Self::AnonymousNotAllowed => "anonymous_not_allowed",
            Self::RestrictedNotAllowed { .. } => "restricted_not_allowed",
            Self::Malformed(_) => "malformed_token",
        }
    }
}

/// Applies the Stack-specific rules to a verified token's claims: anonymous tokens are refused
/// unless `allow_anonymous`, other restricted tokens unless `allow_restricted`. Missing flags
/// mean `false` (tokens from before Stack had these users); a claim of the wrong type is refused.
/// Empty strings count as absent.
pub fn check_claims(
    settings: &StackSettings,
    claims: &Map<String, Value>,
) -> Result<StackClaims, StackClaimError> {
    let flag = |name: &'static str| match claims.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(StackClaimError::Malformed(name)),
    };
    let text = |name: &'static str| match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(StackClaimError::Malformed(name)),
    };
    let is_anonymous = flag("is_anonymous")?;
    let is_restricted = flag("is_restricted")?;
    if is_anonymous && !settings.allow_anonymous {
        return Err(StackClaimError::AnonymousNotAllowed);
    }
    if is_restricted && !is_anonymous && !settings.allow_restricted {
        return Err(StackClaimError::RestrictedNotAllowed {
            reason: restricted_reason(claims),
        });
    }
    Ok(StackClaims {
        selected_team_id: text("selected_team_id")?,
        email: text("email")?,
        email_verified: flag("email_verified")?,
        name: text("name")?,
        is_anonymous,
        is_restricted,
    })
}

/// `restricted_reason.type` (`email_not_verified`, `restricted_by_administrator`, …) when it is
/// a plain identifier, for the error message.
fn restricted_reason(claims: &Map<String, Value>) -> String {
    claims
        .get("restricted_reason")
        .and_then(|reason| reason.get("type"))
        .and_then(Value::as_str)
        .filter(|t| t.len() <= 64 && t.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        .unwrap_or("no reason given")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn issuers_audiences_and_jwks_follow_stack() {
        let mut s = StackSettings::new("p-1");
        s.api_url = "https://stack.example.com/".into();
        assert_eq!(s.issuer(), "https://stack.example.com/api/v1/projects/p-1");
        assert_eq!(
            s.jwks_url(),
            "https://stack.example.com/api/v1/projects/p-1/.well-known/jwks.json"
        );
        assert_eq!(s.token_issuers().len(), 1);
        s.allow_anonymous = true;
        s.allow_restricted = true;
        assert!(s
            .jwks_url()
            .ends_with("?include_anonymous=true&include_restricted=true"));
        let issuers = s.token_issuers();
        assert_eq!(
            issuers[1],
            StackIssuer {
                kind: StackUserKind::Restricted,
                issuer: "https://stack.example.com/api/v1/projects-restricted-users/p-1".into(),
                audience: "p-1:restricted".into(),
            }
        );
        assert_eq!(
            issuers[2].issuer,
            "https://stack.example.com/api/v1/projects-anonymous-users/p-1"
        );
        assert_eq!(issuers[2].audience, "p-1:anon");
    }

    #[test]
    fn oauth_providers_are_provider_ids_and_need_the_publishable_key() {
        let with = |providers: &[&str], key: Option<&str>| StackSettings {
            oauth_providers: providers.iter().map(|p| p.to_string()).collect(),
            publishable_client_key: key.map(str::to_string),
            ..StackSettings::new("p")
        };
        assert!(with(&["github", "google"], Some("pck_1"))
            .validate()
            .is_ok());
        assert!(with(&[], None).validate().is_ok());
        assert!(with(&["github"], None).validate().is_err());
        assert!(with(&["git hub"], Some("pck_1")).validate().is_err());
        assert!(with(&["../x"], Some("pck_1")).validate().is_err());
    }

    #[test]
    fn api_url_must_be_https_unless_loopback() {
        let with_url = |url: &str| StackSettings {
            api_url: url.into(),
            ..StackSettings::new("p")
        };
        assert!(with_url("https://api.example.com").validate().is_ok());
        assert!(with_url("http://127.0.0.1:9999").validate().is_ok());
        assert!(with_url("http://[::1]:9999/stack").validate().is_ok());
        assert!(with_url("http://localhost:9999").validate().is_ok());
        let leaky = with_url("https://user:s3cret@api.example.com").validate();
        assert!(!leaky.unwrap_err().to_string().contains("s3cret"));
        for bad in [
            "http://api.example.com",
            "ftp://127.0.0.1",
            "https://user:pw@api.example.com",
            "https://api.example.com/?x=1",
            "not a url",
        ] {
            let err = with_url(bad).validate().unwrap_err();
            assert!(matches!(err, StackError::Settings(_)), "{bad}: {err}");
        }
        for bad_id in ["", "a/b", "a b", "../x"] {
            assert!(StackSettings::new(bad_id).validate().is_err(), "{bad_id:?}");
        }
    }

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn claims_of_the_wrong_type_are_refused() {
        let s = StackSettings::new("p");
        for (claim, value) in [
            ("is_anonymous", json!("false")),
            ("is_restricted", json!(0)),
            ("selected_team_id", json!(42)),
            ("email", json!(["a@b"])),
            ("email_verified", json!("true")),
            ("name", json!({})),
        ] {
            let err = check_claims(&s, &claims(json!({ claim: value }))).unwrap_err();
            assert_eq!(err, StackClaimError::Malformed(claim));
            assert_eq!(err.code(), "malformed_token");
        }
    }

    #[test]
    fn absent_and_empty_claims_are_none() {
        let s = StackSettings::new("p");
        let got = check_claims(
            &s,
            &claims(json!({ "selected_team_id": "", "email": null })),
        )
        .unwrap();
        assert_eq!(
            got,
            StackClaims {
                selected_team_id: None,
                email: None,
                email_verified: false,
                name: None,
                is_anonymous: false,
                is_restricted: false,
            }
        );
    }

    #[test]
    fn known_error_codes_map_to_their_meaning() {
        assert!(matches!(
            StackError::from_known("EMAIL_PASSWORD_MISMATCH".into()),
            StackError::InvalidCredentials
        ));
        assert!(matches!(
            StackError::from_known("INVALID_PUBLISHABLE_CLIENT_KEY".into()),
            StackError::Misconfigured { .. }
        ));
        let other = StackError::from_known("MULTI_FACTOR_AUTHENTICATION_REQUIRED".into());
        assert_eq!(other.code(), "stack_refused");
        assert!(other
            .to_string()
            .contains("MULTI_FACTOR_AUTHENTICATION_REQUIRED"));
        assert!(!is_known_error_code("lower"));
        assert!(!is_known_error_code(""));
    }
}
