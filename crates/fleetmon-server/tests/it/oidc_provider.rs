//! A real OpenID Connect provider for the tests: `tests/oidc/provider.mjs` (the npm package
//! `oidc-provider`, installed by `npm ci` in `tests/oidc`) run by node on loopback, and a test
//! "browser" that signs users in through its login and consent pages. See docs/oidc-testing.md.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use reqwest::header::LOCATION;
use reqwest::{redirect, StatusCode, Url};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

const FIXTURE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oidc");
const INSTALL: &str = "npm ci --no-audit --no-fund";
/// A safety net for a provider that never starts, not a measurement.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// A safety net for a provider that stops answering.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Redirects and form posts the browser follows before it gives up.
const MAX_BROWSER_STEPS: usize = 20;
const SCOPE: &str = "openid email profile";

/// JSON pointer (RFC 6901) to the organization id in the provider's id and access tokens, whose
/// claim is `{"https://fleetmon.test/org": {"id": "…"}}`.
pub const ORG_CLAIM_POINTER: &str = "/https:~1~1fleetmon.test~1org/id";

/// What the provider serves: one confidential client and a fixed set of users.
#[derive(Clone)]
pub struct OidcProviderConfig {
    /// The loopback port; 0 (the default) picks a free one.
    pub port: u16,
    /// Only unreserved URL characters, so HTTP Basic client authentication needs no encoding.
    pub client_id: String,
    pub client_secret: String,
    /// Where the provider may send the browser back; the harness's own flows use the first.
    pub redirect_uris: Vec<String>,
    /// The `aud` of the JWT access tokens.
    pub audience: String,
    /// ES256 or RS256, for id and access tokens alike.
    pub algorithm: Algorithm,
    pub users: Vec<TestUser>,
}

impl Default for OidcProviderConfig {
    fn default() -> Self {
        Self {
            port: 0,
            client_id: "fleetmon".into(),
            client_secret: random_token(),
            // Nothing listens on port 9: the harness stops at this redirect, never follows it.
            redirect_uris: vec!["http://127.0.0.1:9/oidc/callback".into()],
            audience: "fleetmon-api".into(),
            algorithm: Algorithm::ES256,
            users: vec![TestUser::new("alice")],
        }
    }
}

/// A user of the provider; the login form takes `email` and `password`.
#[derive(Clone, Serialize)]
pub struct TestUser {
    pub sub: String,
    pub email: String,
    pub email_verified: bool,
    pub name: String,
    pub password: String,
    /// Released as the org claim (see [`ORG_CLAIM_POINTER`]) when set.
    pub org_id: Option<String>,
}

impl TestUser {
    /// `login@fleetmon.test`, verified, with a password of its own and no organization.
    pub fn new(login: &str) -> Self {
        Self {
            sub: format!("sub-{login}"),
            email: format!("{login}@fleetmon.test"),
            email_verified: true,
            name: login.to_owned(),
            password: format!("{login}-password"),
            org_id: None,
        }
    }
}

/// An authorization request with PKCE (S256), and what its callback and code exchange need.
pub struct AuthorizationRequest {
    pub url: Url,
    pub redirect_uri: String,
    pub state: String,
    pub nonce: String,
    pub code_verifier: String,
}

/// A token endpoint response.
#[derive(Deserialize)]
pub struct Tokens {
    pub access_token: String,
    pub token_type: String,
    pub id_token: Option<String>,
    pub refresh_token: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error("{url} answered {status}: {body}")]
    Refused {
        url: Url,
        status: StatusCode,
        body: String,
    },
    #[error("{url} redirects to an invalid location {location:?}")]
    BadRedirect { url: Url, location: String },
    #[error("{url} shows no form to submit")]
    NoForm { url: Url },
    #[error("still at the provider after {MAX_BROWSER_STEPS} steps")]
    TooManySteps,
    #[error("the callback's state does not match the request's")]
    StateMismatch,
    #[error("the callback carries no code: {callback}")]
    NoCode { callback: Url },
    #[error("HTTP request failed: {0}")]
    Http(#[from] reqwest::Error),
}

/// The node process; killed when this is dropped.
pub struct OidcProvider {
    config: OidcProviderConfig,
    ready: Ready,
    endpoints: Endpoints,
    http: reqwest::Client,
    log: Log,
    process: Child,
}

/// The provider's `READY {…}` line.
#[derive(Deserialize)]
struct Ready {
    issuer: String,
    admin: String,
    /// The resource indicator (RFC 8707) that makes access tokens JWTs for `audience`.
    resource: String,
}

/// The parts of the discovery document the harness uses.
#[derive(Deserialize)]
struct Endpoints {
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

#[derive(Deserialize)]
struct KeysReply {
    signing_kid: String,
}

impl OidcProvider {
    /// Starts the provider on a free loopback port and waits until it serves its discovery
    /// document. Panics, with the provider's output, when it cannot.
    pub async fn start(config: OidcProviderConfig) -> Self {
        assert!(
            Path::new(FIXTURE_DIR)
                .join("node_modules/oidc-provider")
                .is_dir(),
            "the OIDC test provider is not installed: run `{INSTALL}` in {FIXTURE_DIR} \
             (scripts/test does this)"
        );
        assert!(
            matches!(config.algorithm, Algorithm::ES256 | Algorithm::RS256),
            "the OIDC test provider signs with ES256 or RS256, not {:?}",
            config.algorithm
        );
        assert!(
            unreserved(&config.client_id) && unreserved(&config.client_secret),
            "the OIDC test client's id and secret must be unreserved URL characters"
        );
        let fixture_config = json!({
            "port": config.port,
            "algorithm": config.algorithm,
            "audience": config.audience,
            "client": {
                "client_id": config.client_id,
                "client_secret": config.client_secret,
                "redirect_uris": config.redirect_uris,
            },
            "users": config.users,
        });
        let mut process = Command::new("node")
            .arg("provider.mjs")
            .current_dir(FIXTURE_DIR)
            .env("FLEETMON_OIDC_FIXTURE_CONFIG", fixture_config.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run node ({e}): install Node.js 18 or later (scripts/test does)")
            });
        let log = Log::default();
        let stderr = log.collect(process.stderr.take().expect("piped stderr"));
        let mut stdout = BufReader::new(process.stdout.take().expect("piped stdout")).lines();
        let ready_line = tokio::time::timeout(READY_TIMEOUT, async {
            while let Some(line) = stdout.next_line().await? {
                match line.strip_prefix("READY ") {
                    Some(ready) => return Ok(Some(ready.to_owned())),
                    None => log.push(&line),
                }
            }
            Ok::<_, std::io::Error>(None)
        })
        .await;
        let ready = match ready_line {
            Ok(Ok(Some(line))) => serde_json::from_str::<Ready>(&line)
                .unwrap_or_else(|e| panic!("the OIDC test provider's READY line {line:?}: {e}")),
            Ok(Err(e)) => panic!(
                "reading the OIDC test provider's output failed: {e}\n{}",
                log.text()
            ),
            Ok(Ok(None)) => {
                let status = match process.wait().await {
                    Ok(status) => status.to_string(),
                    Err(e) => e.to_string(),
                };
                // The process is gone: wait for the rest of what it wrote.
                let _ = stderr.await;
                panic!(
                    "the OIDC test provider exited ({status}) before it was ready:\n{}",
                    log.text()
                )
            }
            Err(_) => panic!(
                "the OIDC test provider was not ready within {READY_TIMEOUT:?}:\n{}",
                log.text()
            ),
        };
        // Keep draining stdout so the provider never blocks on a full pipe.
        log.collect(stdout.into_inner());
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("an HTTP client");
        let discovery = format!("{}/.well-known/openid-configuration", ready.issuer);
        let endpoints = match http.get(&discovery).send().await {
            Ok(response) if response.status().is_success() => response.json().await.ok(),
            _ => None,
        }
        .unwrap_or_else(|| {
            panic!(
                "no discovery document at {discovery}; provider log:\n{}",
                log.text()
            )
        });
        Self {
            config,
            ready,
            endpoints,
            http,
            log,
            process,
        }
    }

    /// Kills the provider, as an outage would, and returns its configuration pinned to the same
    /// port: [`OidcProvider::start`] with it brings the same issuer back, with new keys.
    pub async fn stop(mut self) -> OidcProviderConfig {
        self.process
            .kill()
            .await
            .expect("kill the OIDC test provider");
        let port = Url::parse(&self.ready.issuer)
            .ok()
            .and_then(|url| url.port())
            .expect("the issuer names its port");
        OidcProviderConfig {
            port,
            ..self.config.clone()
        }
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn issuer(&self) -> &str {
        &self.ready.issuer
    }

    pub fn jwks_uri(&self) -> &str {
        &self.endpoints.jwks_uri
    }

    /// Signs with a new key from now on, keeping the earlier keys in the JWKS; returns its `kid`.
    pub async fn rotate_keys(&self) -> String {
        self.admin("rotate").await.signing_kid
    }

    /// Removes every key but the signing key from the JWKS.
    pub async fn retire_old_keys(&self) {
        self.admin("retire").await;
    }

    async fn admin(&self, action: &str) -> KeysReply {
        let url = format!("{}/{action}", self.ready.admin);
        let reply = match self.http.post(&url).send().await {
            Ok(response) if response.status().is_success() => response.json().await.ok(),
            _ => None,
        };
        reply.unwrap_or_else(|| panic!("POST {url} failed; provider log:\n{}", self.log.text()))
    }

    /// A code flow request for this provider's client, back to `redirect_uri`, with fresh state,
    /// nonce and PKCE verifier, asking for the API resource so the access token is a JWT.
    pub fn authorization_request(&self, redirect_uri: &str) -> AuthorizationRequest {
        let state = random_token();
        let nonce = random_token();
        let code_verifier = random_token();
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(code_verifier.as_bytes()));
        let url = Url::parse_with_params(
            &self.endpoints.authorization_endpoint,
            [
                ("client_id", self.config.client_id.as_str()),
                ("response_type", "code"),
                ("scope", SCOPE),
                ("redirect_uri", redirect_uri),
                ("state", &state),
                ("nonce", &nonce),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
                ("resource", &self.ready.resource),
            ],
        )
        .expect("the discovery document's authorization endpoint is a URL");
        AuthorizationRequest {
            url,
            redirect_uri: redirect_uri.to_owned(),
            state,
            nonce,
            code_verifier,
        }
    }

    /// [`Self::try_sign_in_through_browser`], panicking with the provider's log on failure.
    pub async fn sign_in_through_browser(&self, authorization_url: &Url, user: &TestUser) -> Url {
        self.try_sign_in_through_browser(authorization_url, user)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "signing {} in at the OIDC test provider failed: {e}\nprovider log:\n{}",
                    user.email,
                    self.log.text()
                )
            })
    }

    /// Plays a browser with a fresh cookie jar: opens `authorization_url` (the relying party's
    /// redirect to this provider), follows the provider's redirects, fills in the login form with
    /// `user`'s email and password, submits the consent form, and returns the first redirect that
    /// leaves the provider — the relying party's callback with `code` and `state` (or `error`) —
    /// without requesting it.
    pub async fn try_sign_in_through_browser(
        &self,
        authorization_url: &Url,
        user: &TestUser,
    ) -> Result<Url, FlowError> {
        let browser = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(redirect::Policy::none())
            .timeout(REQUEST_TIMEOUT)
            .build()?;
        let provider = Url::parse(&self.ready.issuer)
            .expect("the issuer is a URL")
            .origin();
        let mut response = browser.get(authorization_url.clone()).send().await?;
        for _ in 0..MAX_BROWSER_STEPS {
            let url = response.url().clone();
            let status = response.status();
            if status.is_redirection() {
                let location = response
                    .headers()
                    .get(LOCATION)
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or_default();
                let next = url.join(location).map_err(|_| FlowError::BadRedirect {
                    url: url.clone(),
                    location: location.to_owned(),
                })?;
                if next.origin() != provider {
                    return Ok(next);
                }
                response = browser.get(next).send().await?;
            } else if status.is_success() {
                let page = response.text().await?;
                let form =
                    Form::parse(&page).ok_or_else(|| FlowError::NoForm { url: url.clone() })?;
                let action = url
                    .join(&form.action)
                    .map_err(|_| FlowError::NoForm { url })?;
                response = browser.post(action).form(&form.filled(user)).send().await?;
            } else {
                let body = response.text().await.unwrap_or_default();
                return Err(FlowError::Refused { url, status, body });
            }
        }
        Err(FlowError::TooManySteps)
    }

    /// Checks the callback's `state` and exchanges its `code` (with the PKCE verifier and the
    /// client secret) at the token endpoint.
    pub async fn exchange_code(
        &self,
        request: &AuthorizationRequest,
        callback: &Url,
    ) -> Result<Tokens, FlowError> {
        let param = |name: &str| {
            callback
                .query_pairs()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.into_owned())
        };
        if param("state").as_deref() != Some(request.state.as_str()) {
            return Err(FlowError::StateMismatch);
        }
        let code = param("code").ok_or_else(|| FlowError::NoCode {
            callback: callback.clone(),
        })?;
        self.token_request(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &request.redirect_uri),
            ("code_verifier", &request.code_verifier),
            ("resource", &self.ready.resource),
        ])
        .await
    }

    /// The refresh token grant, for the API resource.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Tokens, FlowError> {
        self.token_request(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("resource", &self.ready.resource),
        ])
        .await
    }

    async fn token_request(&self, form: &[(&str, &str)]) -> Result<Tokens, FlowError> {
        let response = self
            .http
            .post(&self.endpoints.token_endpoint)
            .basic_auth(&self.config.client_id, Some(&self.config.client_secret))
            .form(form)
            .send()
            .await?;
        let status = response.status();
        if !status.is_success() {
            let url = response.url().clone();
            let body = response.text().await.unwrap_or_default();
            return Err(FlowError::Refused { url, status, body });
        }
        Ok(response.json().await?)
    }

    /// A full code + PKCE flow for `user` against the client's first redirect URI (which is
    /// never requested): the tokens a relying party would get.
    pub async fn obtain_tokens(&self, user: &TestUser) -> Tokens {
        let redirect_uri = self
            .config
            .redirect_uris
            .first()
            .expect("the OIDC test client has a redirect URI");
        let request = self.authorization_request(redirect_uri);
        let callback = self.sign_in_through_browser(&request.url, user).await;
        self.exchange_code(&request, &callback)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "the code exchange failed: {e}\nprovider log:\n{}",
                    self.log.text()
                )
            })
    }

    /// A provider-issued JWT access token for `user` (`aud` = the configured audience), for
    /// `Authorization: Bearer` requests.
    pub async fn obtain_access_token(&self, user: &TestUser) -> String {
        self.obtain_tokens(user).await.access_token
    }
}

/// What the provider process wrote, for failure messages.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<String>>);

impl Log {
    fn collect(&self, pipe: impl AsyncRead + Unpin + Send + 'static) -> JoinHandle<()> {
        let log = self.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(pipe).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                log.push(&line);
            }
        })
    }

    fn push(&self, line: &str) {
        let mut text = self.0.lock().expect("log lock");
        text.push_str(line);
        text.push('\n');
    }

    fn text(&self) -> String {
        self.0.lock().expect("log lock").clone()
    }
}

/// The first POST form of a page: its action and its inputs' names and values.
struct Form {
    action: String,
    fields: Vec<(String, String)>,
}

impl Form {
    fn parse(page: &str) -> Option<Self> {
        let start = page.find("<form")?;
        let form = &page[start..];
        let form = &form[..form.find("</form>").unwrap_or(form.len())];
        let tag_end = form.find('>')?;
        let tag = attributes(&form["<form".len()..tag_end]);
        let method = attribute(&tag, "method").unwrap_or("get");
        if !method.eq_ignore_ascii_case("post") {
            return None;
        }
        let action = attribute(&tag, "action")?.to_owned();
        let fields = form[tag_end..]
            .split("<input")
            .skip(1)
            .filter_map(|input| {
                let input = attributes(&input[..input.find('>').unwrap_or(input.len())]);
                let name = attribute(&input, "name")?.to_owned();
                let value = attribute(&input, "value").unwrap_or_default().to_owned();
                Some((name, value))
            })
            .collect();
        Some(Self { action, fields })
    }

    /// The fields with the login form's `login` and `password` set to `user`'s.
    fn filled(&self, user: &TestUser) -> Vec<(String, String)> {
        let mut fields = self.fields.clone();
        for (name, value) in &mut fields {
            match name.as_str() {
                "login" => value.clone_from(&user.email),
                "password" => value.clone_from(&user.password),
                _ => {}
            }
        }
        fields
    }
}

fn attribute<'a>(attributes: &'a [(String, String)], name: &str) -> Option<&'a str> {
    attributes
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// The attributes of a tag's inside (`name="v"`, `name='v'`, `name=v` or bare `name`), names
/// lowercased, values with character references decoded.
fn attributes(tag: &str) -> Vec<(String, String)> {
    let mut attributes = Vec::new();
    let mut rest = tag.trim_start_matches('/');
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '/');
        let name_end = rest
            .find(|c: char| c.is_whitespace() || c == '=' || c == '/')
            .unwrap_or(rest.len());
        if name_end == 0 {
            return attributes;
        }
        let name = rest[..name_end].to_ascii_lowercase();
        rest = rest[name_end..].trim_start();
        let value = match rest.strip_prefix('=') {
            Some(after) => {
                let after = after.trim_start();
                let (value, remainder) = match after.chars().next() {
                    Some(quote @ ('"' | '\'')) => {
                        let inner = &after[1..];
                        let end = inner.find(quote).unwrap_or(inner.len());
                        (&inner[..end], inner.get(end + 1..).unwrap_or_default())
                    }
                    _ => after.split_at(after.find(char::is_whitespace).unwrap_or(after.len())),
                };
                rest = remainder;
                decode_references(value)
            }
            None => String::new(),
        };
        attributes.push((name, value));
    }
}

/// Decodes `&#NN;`, `&#xHH;` and the five XML entities; leaves anything else as written.
fn decode_references(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let decoded = rest.find(';').and_then(|semi| {
            let entity = &rest[1..semi];
            let c = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => entity
                    .strip_prefix("#x")
                    .or_else(|| entity.strip_prefix("#X"))
                    .map(|hex| u32::from_str_radix(hex, 16))
                    .or_else(|| entity.strip_prefix('#').map(str::parse))
                    .and_then(Result::ok)
                    .and_then(char::from_u32),
            };
            c.map(|c| (c, semi + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn unreserved(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// 256 random bits, base64url: a state, nonce, PKCE verifier or client secret.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random source");
    URL_SAFE_NO_PAD.encode(bytes)
}

#[test]
fn forms_are_read_from_plain_html() {
    let page = r#"<p>x</p><form class=login method='POST' action="/interaction/a&#45;b/login?x=1&amp;y=2">
        <input type="hidden" name=prompt value=login>
        <input type="email" name="login" required>
        <input type="password" name="password" required/>
        <button>go</button></form><form method="post" action="/other"></form>"#;
    let form = Form::parse(page).expect("a form");
    assert_eq!(form.action, "/interaction/a-b/login?x=1&y=2");
    let user = TestUser::new("bob");
    let fields = form.filled(&user);
    assert_eq!(
        fields,
        [
            ("prompt".to_owned(), "login".to_owned()),
            ("login".to_owned(), "bob@fleetmon.test".to_owned()),
            ("password".to_owned(), "bob-password".to_owned()),
        ]
    );
    assert!(Form::parse(r#"<form action="/search"><input name="q"></form>"#).is_none());
    assert!(Form::parse("<p>no form</p>").is_none());
}

#[test]
fn character_references_are_decoded() {
    assert_eq!(
        decode_references("&lt;a&#x26;b&#39;&quot;&gt; &unknown; & &#xZZ;"),
        "<a&b'\"> &unknown; & &#xZZ;"
    );
}
