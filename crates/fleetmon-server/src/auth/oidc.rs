//! OpenID Connect browser sign-in: discovery, authorization code with PKCE (S256), and the code
//! exchange. The id token that comes back is verified like any other token of the issuer, plus
//! its `nonce`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Largest discovery document or token response read.
const MAX_RESPONSE_BYTES: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the OIDC provider could not be reached: {0}")]
    Unreachable(String),
    #[error("the OIDC provider answered unexpectedly: {0}")]
    Unexpected(String),
    #[error("the OIDC provider refused the sign-in: {0}")]
    Refused(String),
}

#[derive(Debug, Clone, Deserialize)]
pub struct DiscoveryDocument {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
}

/// An issuer's discovery document, fetched once it is first needed and then kept.
pub struct Discovery {
    url: String,
    issuer: String,
    http: reqwest::Client,
    document: tokio::sync::OnceCell<DiscoveryDocument>,
}

async fn read_json<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
) -> Result<T, OidcError> {
    let status = response.status();
    let mut response = response;
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| OidcError::Unreachable(e.without_url().to_string()))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_RESPONSE_BYTES {
            return Err(OidcError::Unexpected("the response is too large".into()));
        }
    }
    if status.is_client_error() {
        // Token endpoints answer 400 with {"error": "invalid_grant", ...}.
        let error = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_else(|| status.to_string());
        return Err(OidcError::Refused(error));
    }
    if !status.is_success() {
        return Err(OidcError::Unexpected(format!("HTTP {status}")));
    }
    serde_json::from_slice(&body).map_err(|e| OidcError::Unexpected(e.to_string()))
}

impl Discovery {
    pub fn new(issuer: &str, http: reqwest::Client) -> Self {
        Self {
            url: format!(
                "{}/.well-known/openid-configuration",
                issuer.trim_end_matches('/')
            ),
            issuer: issuer.to_string(),
            http,
            document: tokio::sync::OnceCell::new(),
        }
    }

    pub async fn document(&self) -> Result<&DiscoveryDocument, OidcError> {
        self.document
            .get_or_try_init(|| async {
                let response = self
                    .http
                    .get(&self.url)
                    .send()
                    .await
                    .map_err(|e| OidcError::Unreachable(e.without_url().to_string()))?;
                let document: DiscoveryDocument = read_json(response).await?;
                // OpenID Connect Discovery §4.3: the document must be the issuer's own.
                if document.issuer != self.issuer {
                    return Err(OidcError::Unexpected(format!(
                        "the discovery document names the issuer {:?}, not {:?}",
                        document.issuer, self.issuer
                    )));
                }
                for url in [
                    &document.authorization_endpoint,
                    &document.token_endpoint,
                    &document.jwks_uri,
                ] {
                    if !super::settings::acceptable_url(url) {
                        return Err(OidcError::Unexpected(format!(
                            "the endpoint {url:?} is not https"
                        )));
                    }
                }
                Ok(document)
            })
            .await
    }
}

/// A fresh PKCE verifier and its S256 challenge (RFC 7636).
pub fn pkce() -> (String, String) {
    let verifier = super::random_base62(64);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

#[derive(Debug, Deserialize)]
pub struct TokenResponse {
    pub id_token: Option<String>,
}

/// `application/x-www-form-urlencoded` encoding, which RFC 6749 §2.3.1 applies to the client id
/// and secret before they go into HTTP Basic authentication.
fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Exchanges an authorization code at the token endpoint, authenticating as the client with
/// HTTP Basic (`client_secret_basic`, the default of OpenID Connect), or as a public client.
pub async fn exchange_code(
    http: &reqwest::Client,
    token_endpoint: &str,
    client_id: &str,
    client_secret: Option<&str>,
    code: &str,
    redirect_uri: &str,
    code_verifier: &str,
) -> Result<TokenResponse, OidcError> {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("code_verifier", code_verifier),
        ("client_id", client_id),
    ];
    let mut request = http.post(token_endpoint).form(&form);
    if let Some(secret) = client_secret {
        request = request.basic_auth(form_encode(client_id), Some(form_encode(secret)));
    }
    let response = request
        .send()
        .await
        .map_err(|e| OidcError::Unreachable(e.without_url().to_string()))?;
    read_json(response).await
}

/// A sign-in between the redirect to the provider and its callback.
pub struct PendingLogin {
    pub code_verifier: String,
    pub nonce: String,
    pub return_to: String,
}

/// Logins not completed within this long are refused and cleaned up.
const LOGIN_TIMEOUT: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

fn state_hash(state: &str) -> Vec<u8> {
    Sha256::digest(state.as_bytes()).to_vec()
}

pub async fn save_login(
    conn: &mut sqlx::PgConnection,
    provider: &str,
    state: &str,
    login: &PendingLogin,
) -> Result<(), crate::db::DbError> {
    use crate::db::sql::query;
    query("DELETE FROM oidc_logins WHERE created_at < now() - $1")
        .bind(LOGIN_TIMEOUT)
        .execute(&mut *conn)
        .await?;
    query(
        "INSERT INTO oidc_logins (state_hash, provider, code_verifier, nonce, return_to)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(state_hash(state))
    .bind(provider)
    .bind(&login.code_verifier)
    .bind(&login.nonce)
    .bind(&login.return_to)
    .execute(conn)
    .await?;
    Ok(())
}

/// The pending login `state` names, consumed: each can complete once.
pub async fn take_login(
    conn: &mut sqlx::PgConnection,
    provider: &str,
    state: &str,
) -> Result<Option<PendingLogin>, crate::db::DbError> {
    let row: Option<(String, String, String)> = crate::db::sql::query_as(
        "DELETE FROM oidc_logins WHERE state_hash = $1 AND provider = $2 AND created_at > now() - $3
         RETURNING code_verifier, nonce, return_to",
    )
    .bind(state_hash(state))
    .bind(provider)
    .bind(LOGIN_TIMEOUT)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(code_verifier, nonce, return_to)| PendingLogin {
        code_verifier,
        nonce,
        return_to,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_credentials_are_form_encoded_for_basic_auth() {
        assert_eq!(form_encode("abc-._~XYZ09"), "abc-._~XYZ09");
        assert_eq!(form_encode("a b:c/%"), "a+b%3Ac%2F%25");
    }

    #[test]
    fn pkce_challenge_is_the_s256_of_the_verifier() {
        let (verifier, challenge) = pkce();
        assert_eq!(verifier.len(), 64);
        assert_eq!(
            challenge,
            URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
        );
        assert_eq!(challenge.len(), 43);
    }
}
