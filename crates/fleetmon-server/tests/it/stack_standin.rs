//! A local stand-in for Stack Auth's hosted API, which cannot be reached from the tests. It is
//! not Stack: it serves only the documented client endpoints fleetmon uses — password sign-in,
//! one-time code / magic link, OAuth authorize and token, refresh, sign-out and the project's
//! JWKS — on 127.0.0.1, checks the client headers the way Stack does and answers failures in
//! Stack's known-error format (`{"code","error"}` plus `x-stack-known-error`).
//!
//! Its access tokens are real: ES256 over freshly generated P-256 keys, a `kid` in the header,
//! Stack's issuers, audiences and claims, and one key per kind of user (regular, restricted,
//! anonymous) published the way Stack's JWKS publishes them. What it leaves out: no email is
//! sent (the test reads the "outbox"), and the OAuth authorize step skips the third-party
//! provider and signs in the user the test chose for that provider.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Form, Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use fleetmon_server::auth::random_base62;
use fleetmon_server::auth::stack::{StackSettings, StackUserKind};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

/// Stack project ids are UUIDs.
pub const PROJECT_ID: &str = "5b0c5a3e-8f1d-4c7e-9a52-3d6e0f7b1c24";
pub const PUBLISHABLE_KEY: &str = "pck_standin0123456789abcdefghijklmnopqrstuv";
/// Stack's default access-token lifetime.
const ACCESS_TOKEN_TTL_S: i64 = 600;
/// Stack's verification codes: six characters typed from the email, then a nonce.
const CODE_LEN: usize = 45;
const KINDS: [StackUserKind; 3] = [
    StackUserKind::Regular,
    StackUserKind::Restricted,
    StackUserKind::Anonymous,
];

/// A code as Stack would have emailed it.
#[derive(Debug, Clone)]
pub struct SentCode {
    pub email: String,
    /// The six characters shown in the email (upper case, as Stack shows them).
    pub otp: String,
    /// The magic link: the caller's callback URL with `code` added.
    pub link: String,
}

pub struct StackStandin {
    state: Arc<Mutex<Inner>>,
}

struct SigningKey {
    kind: StackUserKind,
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    jwk: Value,
}

impl SigningKey {
    fn generate(kind: StackUserKind) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("generate a P-256 key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("read back the P-256 key");
        // An uncompressed point: 0x04, then x and y, 32 bytes each.
        let point = pair.public_key().as_ref();
        let (x, y) = (
            URL_SAFE_NO_PAD.encode(&point[1..33]),
            URL_SAFE_NO_PAD.encode(&point[33..65]),
        );
        let kid = random_base62(16);
        Self {
            kind,
            decoding: DecodingKey::from_ec_components(&x, &y).expect("public key"),
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk: json!({
                "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig",
                "kid": kid, "x": x, "y": y,
            }),
            kid,
        }
    }
}

struct User {
    email: String,
    password: Option<String>,
    name: Option<String>,
    email_verified: bool,
    teams: BTreeSet<String>,
    selected_team: Option<String>,
    /// `Some(reason)` makes Stack issue restricted-user tokens.
    restricted: Option<String>,
}

struct Grant {
    user_id: String,
    redirect_uri: String,
    code_challenge: String,
}

struct Inner {
    settings: StackSettings,
    /// Oldest first; the last key of each kind signs.
    keys: Vec<SigningKey>,
    users: HashMap<String, User>,
    teams: BTreeSet<String>,
    /// Refresh token → (session id, user id).
    sessions: HashMap<String, (String, String)>,
    /// Verification code → (email, used).
    codes: HashMap<String, (String, bool)>,
    outbox: Vec<SentCode>,
    oauth_users: HashMap<String, String>,
    grants: HashMap<String, Grant>,
    requests: HashMap<String, usize>,
}

type Shared = Arc<Mutex<Inner>>;

fn lock(state: &Shared) -> MutexGuard<'_, Inner> {
    state.lock().expect("stand-in state")
}

impl StackStandin {
    /// Serves on a free loopback port until the test's runtime ends.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let settings = StackSettings {
            api_url: url,
            publishable_client_key: Some(PUBLISHABLE_KEY.into()),
            ..StackSettings::new(PROJECT_ID)
        };
        let state = Arc::new(Mutex::new(Inner {
            settings,
            keys: KINDS.into_iter().map(SigningKey::generate).collect(),
            users: HashMap::new(),
            teams: BTreeSet::new(),
            sessions: HashMap::new(),
            codes: HashMap::new(),
            outbox: Vec::new(),
            oauth_users: HashMap::new(),
            grants: HashMap::new(),
            requests: HashMap::new(),
        }));
        let router = Router::new()
            .route("/api/v1/auth/password/sign-in", post(password_sign_in))
            .route(
                "/api/v1/auth/otp/send-sign-in-code",
                post(send_sign_in_code),
            )
            .route("/api/v1/auth/otp/sign-in", post(code_sign_in))
            .route(
                "/api/v1/auth/oauth/authorize/{provider}",
                get(oauth_authorize),
            )
            .route("/api/v1/auth/oauth/token", post(oauth_token))
            .route("/api/v1/auth/sessions/current/refresh", post(refresh))
            .route("/api/v1/auth/sessions/current", delete(sign_out))
            .route(
                "/api/v1/projects/{project}/.well-known/jwks.json",
                get(jwks),
            )
            .layer(middleware::from_fn_with_state(state.clone(), count))
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { state }
    }

    /// Settings for a client of this stand-in: its URL, project id and publishable key.
    pub fn settings(&self) -> StackSettings {
        lock(&self.state).settings.clone()
    }

    /// Adds a user with a password and a verified email; returns the user id.
    pub fn add_user(&self, email: &str, password: &str) -> String {
        lock(&self.state).add_user(email, Some(password))
    }

    pub fn set_name(&self, user_id: &str, name: &str) {
        lock(&self.state).user(user_id).name = Some(name.into());
    }

    /// From now on `user_id` gets restricted-user tokens, for `reason` (e.g. `email_not_verified`).
    pub fn restrict(&self, user_id: &str, reason: &str) {
        lock(&self.state).user(user_id).restricted = Some(reason.into());
    }

    /// Creates a team with `members`; returns its id.
    pub fn add_team(&self, members: &[&str]) -> String {
        let mut inner = lock(&self.state);
        let team = uuid::Uuid::new_v4().to_string();
        inner.teams.insert(team.clone());
        for member in members {
            inner.user(member).teams.insert(team.clone());
        }
        team
    }

    /// Sets (or clears) the user's selected team, which must be one of theirs.
    pub fn select_team(&self, user_id: &str, team: Option<&str>) {
        let mut inner = lock(&self.state);
        let user = inner.user(user_id);
        if let Some(team) = team {
            assert!(user.teams.contains(team), "{user_id} is not in team {team}");
        }
        user.selected_team = team.map(str::to_string);
    }

    /// Revokes every refresh token of `user_id`; returns how many there were.
    pub fn revoke_sessions(&self, user_id: &str) -> usize {
        let mut inner = lock(&self.state);
        let before = inner.sessions.len();
        inner.sessions.retain(|_, (_, user)| user != user_id);
        before - inner.sessions.len()
    }

    /// New signing keys for every kind of user; the old ones stay published until retired.
    pub fn rotate_keys(&self) {
        lock(&self.state)
            .keys
            .extend(KINDS.into_iter().map(SigningKey::generate));
    }

    /// Stops publishing every key but the signing one of each kind.
    pub fn retire_old_keys(&self) {
        let mut inner = lock(&self.state);
        let current: Vec<String> = KINDS.iter().map(|k| inner.key(*k).kid.clone()).collect();
        inner.keys.retain(|key| current.contains(&key.kid));
    }

    /// The `kid` of the key that signs `kind`'s tokens now.
    pub fn current_kid(&self, kind: StackUserKind) -> String {
        lock(&self.state).key(kind).kid.clone()
    }

    /// The claims of a fresh access token for `user_id`, exactly as the endpoints issue them.
    pub fn claims_for(&self, user_id: &str) -> Map<String, Value> {
        lock(&self.state).claims(user_id, &uuid::Uuid::new_v4().to_string())
    }

    /// Signs arbitrary claims (anonymous, restricted, another project's, expired, …) with the
    /// current key of the kind their `aud` names (`…:anon`, `…:restricted`, else regular).
    pub fn mint(&self, claims: &Map<String, Value>) -> String {
        let aud = claims.get("aud").and_then(Value::as_str).unwrap_or("");
        let kind = if aud.ends_with(":anon") {
            StackUserKind::Anonymous
        } else if aud.ends_with(":restricted") {
            StackUserKind::Restricted
        } else {
            StackUserKind::Regular
        };
        lock(&self.state).sign(kind, claims)
    }

    /// Every code "emailed" so far, oldest first.
    pub fn outbox(&self) -> Vec<SentCode> {
        lock(&self.state).outbox.clone()
    }

    /// OAuth sign-in with `provider` signs in `user_id` (the provider's consent is not modelled).
    pub fn set_oauth_user(&self, provider: &str, user_id: &str) {
        lock(&self.state)
            .oauth_users
            .insert(provider.into(), user_id.into());
    }

    /// How many requests reached `path` (e.g. `/api/v1/auth/sessions/current/refresh`).
    pub fn requests(&self, path: &str) -> usize {
        lock(&self.state)
            .requests
            .get(path)
            .copied()
            .unwrap_or_default()
    }
}

impl Inner {
    fn add_user(&mut self, email: &str, password: Option<&str>) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        self.users.insert(
            id.clone(),
            User {
                email: email.into(),
                password: password.map(str::to_string),
                name: None,
                email_verified: true,
                teams: BTreeSet::new(),
                selected_team: None,
                restricted: None,
            },
        );
        id
    }

    fn user(&mut self, id: &str) -> &mut User {
        self.users
            .get_mut(id)
            .unwrap_or_else(|| panic!("no user {id}"))
    }

    fn user_by_email(&self, email: &str) -> Option<String> {
        self.users
            .iter()
            .find(|(_, u)| u.email.eq_ignore_ascii_case(email))
            .map(|(id, _)| id.clone())
    }

    fn key(&self, kind: StackUserKind) -> &SigningKey {
        self.keys
            .iter()
            .rev()
            .find(|k| k.kind == kind)
            .expect("a key of each kind")
    }

    fn claims(&self, user_id: &str, session_id: &str) -> Map<String, Value> {
        let user = &self.users[user_id];
        let kind = if user.restricted.is_some() {
            StackUserKind::Restricted
        } else {
            StackUserKind::Regular
        };
        let issuer = self.settings.issuer_of(kind);
        let now = chrono::Utc::now().timestamp();
        let claims = json!({
            "iss": issuer.issuer,
            "sub": user_id,
            "aud": issuer.audience,
            "iat": now,
            "exp": now + ACCESS_TOKEN_TTL_S,
            "project_id": self.settings.project_id,
            "branch_id": "main",
            "refresh_token_id": session_id,
            "role": "authenticated",
            "name": user.name,
            "email": user.email,
            "email_verified": user.email_verified,
            "selected_team_id": user.selected_team,
            "is_anonymous": false,
            "is_restricted": user.restricted.is_some(),
            "restricted_reason": user.restricted.as_ref().map(|r| json!({ "type": r })),
            "requires_totp_mfa": false,
        });
        claims.as_object().cloned().expect("an object")
    }

    fn sign(&self, kind: StackUserKind, claims: &Map<String, Value>) -> String {
        let key = self.key(kind);
        let header = Header {
            kid: Some(key.kid.clone()),
            ..Header::new(Algorithm::ES256)
        };
        jsonwebtoken::encode(&header, claims, &key.encoding).expect("sign")
    }

    fn access_token(&self, user_id: &str, session_id: &str) -> String {
        let claims = self.claims(user_id, session_id);
        let kind = match self.users[user_id].restricted {
            Some(_) => StackUserKind::Restricted,
            None => StackUserKind::Regular,
        };
        self.sign(kind, &claims)
    }

    /// A new session: `(access token, refresh token)`.
    fn open_session(&mut self, user_id: &str) -> (String, String) {
        let refresh = random_base62(45);
        let session = uuid::Uuid::new_v4().to_string();
        let access = self.access_token(user_id, &session);
        self.sessions
            .insert(refresh.clone(), (session, user_id.to_string()));
        (access, refresh)
    }

    /// The session a current access token was issued for, checked like Stack checks it.
    fn session_of(&self, token: &str) -> Result<String, Known> {
        let unparsable = || {
            Known::new(
                401,
                "UNPARSABLE_ACCESS_TOKEN",
                "Access token is not parsable.",
            )
        };
        let kid = jsonwebtoken::decode_header(token)
            .map_err(|_| unparsable())?
            .kid
            .ok_or_else(unparsable)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.kid == kid)
            .ok_or_else(unparsable)?;
        let issuer = self.settings.issuer_of(key.kind);
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_audience(&[issuer.audience]);
        validation.set_issuer(&[issuer.issuer]);
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => Known::new(
                    401,
                    "ACCESS_TOKEN_EXPIRED",
                    "Access token has expired. Please refresh it and try again.",
                ),
                _ => unparsable(),
            })?;
        data.claims
            .get("refresh_token_id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(unparsable)
    }
}

/// A Stack known error: its status, `x-stack-known-error` header and `{"code","error"}` body.
struct Known {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Known {
    fn new(status: u16, code: &'static str, message: &str) -> Self {
        Self {
            status: StatusCode::from_u16(status).expect("a status"),
            code,
            message: message.into(),
        }
    }

    fn schema(message: &str) -> Self {
        Self::new(400, "SCHEMA_ERROR", message)
    }

    fn refresh_token_gone() -> Self {
        Self::new(
            401,
            "REFRESH_TOKEN_NOT_FOUND_OR_EXPIRED",
            "Refresh token not found for this project, or the session has expired/been revoked.",
        )
    }
}

impl IntoResponse for Known {
    fn into_response(self) -> Response {
        let body = Json(json!({ "code": self.code, "error": self.message }));
        let mut response = (self.status, body).into_response();
        response
            .headers_mut()
            .insert("x-stack-known-error", HeaderValue::from_static(self.code));
        response
    }
}

async fn count(State(state): State<Shared>, request: Request, next: Next) -> Response {
    *lock(&state)
        .requests
        .entry(request.uri().path().to_string())
        .or_default() += 1;
    next.run(request).await
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Stack's checks of the client access headers, in Stack's order.
fn client_auth(inner: &Inner, headers: &HeaderMap) -> Result<(), Known> {
    let key = header_str(headers, "x-stack-publishable-client-key");
    match header_str(headers, "x-stack-access-type") {
        None if key.is_some() => {
            return Err(Known::new(
                400,
                "PROJECT_KEY_WITHOUT_ACCESS_TYPE",
                "An API key was provided, but the x-stack-access-type header is missing.",
            ))
        }
        None => {
            return Err(Known::new(
                400,
                "ACCESS_TYPE_REQUIRED",
                "You must specify an access level for this Stack project.",
            ))
        }
        Some("client") => {}
        Some("server" | "admin") => {
            return Err(Known::new(
                401,
                "INSUFFICIENT_ACCESS_TYPE",
                "The stand-in serves client access only.",
            ))
        }
        Some(_) => {
            return Err(Known::new(
                400,
                "INVALID_ACCESS_TYPE",
                "The x-stack-access-type header must be 'client', 'server', or 'admin'.",
            ))
        }
    }
    let Some(project) = header_str(headers, "x-stack-project-id") else {
        return Err(Known::new(
            400,
            "ACCESS_TYPE_WITHOUT_PROJECT_ID",
            "The x-stack-project-id header was not provided.",
        ));
    };
    let Some(key) = key else {
        return Err(Known::new(
            401,
            "CLIENT_AUTHENTICATION_REQUIRED",
            "The publishable client key must be provided.",
        ));
    };
    if project != inner.settings.project_id
        || Some(key) != inner.settings.publishable_client_key.as_deref()
    {
        return Err(Known::new(
            401,
            "INVALID_PUBLISHABLE_CLIENT_KEY",
            "The publishable key is not valid for the project. Does the project and/or the key exist?",
        ));
    }
    Ok(())
}

fn json_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, Known> {
    serde_json::from_slice(body).map_err(|_| Known::schema("Request validation failed on the body"))
}

#[derive(Deserialize)]
struct PasswordBody {
    email: String,
    password: String,
}

async fn password_sign_in(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, Known> {
    let mut inner = lock(&state);
    client_auth(&inner, &headers)?;
    let body: PasswordBody = json_body(&body)?;
    let user_id = inner
        .user_by_email(&body.email)
        .filter(|id| inner.users[id].password.as_deref() == Some(body.password.as_str()))
        .ok_or_else(|| Known::new(400, "EMAIL_PASSWORD_MISMATCH", "Wrong e-mail or password."))?;
    let (access, refresh) = inner.open_session(&user_id);
    Ok(Json(
        json!({ "access_token": access, "refresh_token": refresh, "user_id": user_id }),
    ))
}

#[derive(Deserialize)]
struct SendCodeBody {
    email: String,
    callback_url: String,
}

async fn send_sign_in_code(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, Known> {
    let mut inner = lock(&state);
    client_auth(&inner, &headers)?;
    let body: SendCodeBody = json_body(&body)?;
    let mut link = reqwest::Url::parse(&body.callback_url)
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https"))
        .ok_or_else(|| Known::schema("callback_url must be a URL"))?;
    let code = random_base62(CODE_LEN).to_ascii_lowercase();
    link.query_pairs_mut().append_pair("code", &code);
    inner
        .codes
        .insert(code.clone(), (body.email.clone(), false));
    inner.outbox.push(SentCode {
        email: body.email,
        otp: code[..6].to_ascii_uppercase(),
        link: link.to_string(),
    });
    Ok(Json(json!({ "nonce": &code[6..] })))
}

#[derive(Deserialize)]
struct CodeBody {
    code: String,
}

async fn code_sign_in(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, Known> {
    let mut inner = lock(&state);
    client_auth(&inner, &headers)?;
    let body: CodeBody = json_body(&body)?;
    if body.code.len() != CODE_LEN {
        return Err(Known::schema("code must be exactly 45 characters"));
    }
    // Codes are stored in lower case; emails show them in upper case.
    let code = body.code.to_ascii_lowercase();
    let email = match inner.codes.get_mut(&code) {
        None => {
            return Err(Known::new(
                404,
                "VERIFICATION_CODE_NOT_FOUND",
                "The verification code does not exist for this project.",
            ))
        }
        Some((_, true)) => {
            return Err(Known::new(
                409,
                "VERIFICATION_CODE_ALREADY_USED",
                "The verification link has already been used.",
            ))
        }
        Some((email, used)) => {
            *used = true;
            email.clone()
        }
    };
    let (user_id, is_new_user) = match inner.user_by_email(&email) {
        Some(id) => (id, false),
        None => (inner.add_user(&email, None), true),
    };
    let (access, refresh) = inner.open_session(&user_id);
    Ok(Json(json!({
        "access_token": access, "refresh_token": refresh,
        "is_new_user": is_new_user, "user_id": user_id,
    })))
}

async fn oauth_authorize(
    State(state): State<Shared>,
    Path(provider): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, Known> {
    let mut inner = lock(&state);
    let param = |name: &str| {
        query
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| Known::schema(&format!("the query parameter {name} is required")))
    };
    for name in ["scope", "response_type"] {
        param(name)?;
    }
    if param("grant_type")? != "authorization_code" || param("code_challenge_method")? != "S256" {
        return Err(Known::schema("unsupported grant type or PKCE method"));
    }
    if param("client_id")? != inner.settings.project_id {
        return Err(Known::new(
            400,
            "INVALID_OAUTH_CLIENT_ID_OR_SECRET",
            "The OAuth client ID or secret is invalid.",
        ));
    }
    if Some(param("client_secret")?) != inner.settings.publishable_client_key.as_deref() {
        return Err(Known::new(
            401,
            "INVALID_PUBLISHABLE_CLIENT_KEY",
            "The publishable key is not valid for the project.",
        ));
    }
    let user_id = inner.oauth_users.get(&provider).cloned().ok_or_else(|| {
        Known::new(
            400,
            "OAUTH_PROVIDER_NOT_FOUND_OR_NOT_ENABLED",
            "The OAuth provider is not found or not enabled.",
        )
    })?;
    let mut location = reqwest::Url::parse(param("redirect_uri")?)
        .map_err(|_| Known::schema("redirect_uri must be a URL"))?;
    let code = random_base62(40);
    location
        .query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", param("state")?);
    inner.grants.insert(
        code,
        Grant {
            user_id,
            redirect_uri: param("redirect_uri")?.to_string(),
            code_challenge: param("code_challenge")?.to_string(),
        },
    );
    Ok((
        StatusCode::FOUND,
        [(header::LOCATION, location.to_string())],
    )
        .into_response())
}

async fn oauth_token(
    State(state): State<Shared>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, Known> {
    let mut inner = lock(&state);
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
    if field("grant_type") != "authorization_code" {
        return Err(Known::schema("grant_type must be authorization_code"));
    }
    if field("client_id") != inner.settings.project_id
        || Some(field("client_secret")) != inner.settings.publishable_client_key.as_deref()
    {
        return Err(Known::new(
            401,
            "INVALID_OAUTH_CLIENT_ID_OR_SECRET",
            "The OAuth client ID or secret is invalid.",
        ));
    }
    let invalid_code = || {
        Known::new(
            400,
            "INVALID_AUTHORIZATION_CODE",
            "The given authorization code is invalid.",
        )
    };
    // A code is spent by its first use, right or wrong, as OAuth requires.
    let grant = inner
        .grants
        .remove(field("code"))
        .ok_or_else(invalid_code)?;
    if grant.redirect_uri != field("redirect_uri") {
        return Ok((
            StatusCode::BAD_REQUEST,
            "Invalid redirect URI. Your redirect URI must be the same as the one used to get the authorization code.",
        )
            .into_response());
    }
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(field("code_verifier").as_bytes()));
    if challenge != grant.code_challenge {
        return Err(invalid_code());
    }
    let (access, refresh) = inner.open_session(&grant.user_id);
    Ok(Json(json!({
        "access_token": access, "refresh_token": refresh, "token_type": "bearer",
        "expires_in": ACCESS_TOKEN_TTL_S, "scope": "legacy", "is_new_user": false,
    }))
    .into_response())
}

async fn refresh(State(state): State<Shared>, headers: HeaderMap) -> Result<Json<Value>, Known> {
    let inner = lock(&state);
    client_auth(&inner, &headers)?;
    let token = header_str(&headers, "x-stack-refresh-token")
        .ok_or_else(|| Known::schema("the x-stack-refresh-token header is required"))?;
    let (session, user_id) = inner
        .sessions
        .get(token)
        .ok_or_else(Known::refresh_token_gone)?;
    Ok(Json(
        json!({ "access_token": inner.access_token(user_id, session) }),
    ))
}

async fn sign_out(State(state): State<Shared>, headers: HeaderMap) -> Result<Json<Value>, Known> {
    let mut inner = lock(&state);
    client_auth(&inner, &headers)?;
    // Stack finds the session through the access token's `refresh_token_id`.
    let token = header_str(&headers, "x-stack-access-token").ok_or_else(|| {
        Known::new(
            401,
            "ACCESS_TOKEN_EXPIRED",
            "Access token has expired. Please refresh it and try again.",
        )
    })?;
    let session = inner.session_of(token)?;
    let before = inner.sessions.len();
    inner.sessions.retain(|_, (id, _)| *id != session);
    if inner.sessions.len() == before {
        return Err(Known::refresh_token_gone());
    }
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct JwksQuery {
    include_anonymous: Option<String>,
    include_restricted: Option<String>,
}

async fn jwks(
    State(state): State<Shared>,
    Path(project): Path<String>,
    Query(query): Query<JwksQuery>,
) -> Response {
    let inner = lock(&state);
    if project != inner.settings.project_id {
        return (StatusCode::NOT_FOUND, "Project not found").into_response();
    }
    let flag = |value: &Option<String>| match value.as_deref() {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(Known::schema("include flags must be true or false")),
    };
    let (anonymous, restricted) = match (
        flag(&query.include_anonymous),
        flag(&query.include_restricted),
    ) {
        (Ok(a), Ok(r)) => (a, r),
        (Err(e), _) | (_, Err(e)) => return e.into_response(),
    };
    // As Stack does: anonymous users are less authenticated than restricted ones.
    let restricted = restricted || anonymous;
    let keys: Vec<&Value> = inner
        .keys
        .iter()
        .filter(|key| match key.kind {
            StackUserKind::Regular => true,
            StackUserKind::Restricted => restricted,
            StackUserKind::Anonymous => anonymous,
        })
        .map(|key| &key.jwk)
        .collect();
    (
        [(header::CACHE_CONTROL, "public, max-age=3600")],
        Json(json!({ "keys": keys })),
    )
        .into_response()
}

/// Decodes a token from the stand-in the way a relying party would, with `jsonwebtoken`
/// directly: the key is found by `kid` in the JWKS at `jwks_url`, then the ES256 signature,
/// issuer, audience and expiry are checked. Returns the claims.
pub async fn verify(
    token: &str,
    jwks_url: &str,
    issuer: &str,
    audience: &str,
) -> Result<Map<String, Value>, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    if header.alg != Algorithm::ES256 {
        return Err(format!("alg {:?}", header.alg));
    }
    let kid = header.kid.ok_or("no kid")?;
    let set: jsonwebtoken::jwk::JwkSet = reqwest::get(jwks_url)
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let jwk = set
        .find(&kid)
        .ok_or_else(|| format!("kid {kid} is not published"))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[issuer]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| e.to_string())
}
