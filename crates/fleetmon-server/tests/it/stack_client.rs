//! fleetmon's Stack Auth client against the local stand-in of Stack's API (see
//! `stack_standin`): sessions, errors, tokens that verify against the published JWKS, and the
//! Stack-specific claim rules. No database is involved.

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use fleetmon_server::auth::random_base62;
use fleetmon_server::auth::stack::{
    check_claims, StackClaimError, StackClaims, StackClient, StackError, StackSettings,
    StackUserKind,
};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

use crate::stack_standin::{self, StackStandin, PROJECT_ID, PUBLISHABLE_KEY};

const EMAIL: &str = "ada@example.com";
const PASSWORD: &str = "correct horse battery";

async fn standin() -> (StackStandin, StackClient, String) {
    let stack = StackStandin::start().await;
    let user = stack.add_user(EMAIL, PASSWORD);
    let client = StackClient::new(stack.settings()).unwrap();
    (stack, client, user)
}

/// Verifies `token` as a relying party configured with `settings` would, for `kind`'s issuer.
async fn verify_as(
    settings: &StackSettings,
    kind: StackUserKind,
    token: &str,
) -> Result<Map<String, Value>, String> {
    let issuer = settings.issuer_of(kind);
    stack_standin::verify(
        token,
        &settings.jwks_url(),
        &issuer.issuer,
        &issuer.audience,
    )
    .await
}

#[tokio::test]
async fn password_sign_in_gives_an_es256_token_with_stacks_claims() {
    let (stack, client, user) = standin().await;
    stack.set_name(&user, "Ada");
    let team = stack.add_team(&[&user]);
    stack.select_team(&user, Some(&team));

    let session = client.sign_in_password(EMAIL, PASSWORD).await.unwrap();
    assert!(!session.is_new_user);
    let shown = format!("{session:?}");
    assert!(
        !shown.contains(&session.refresh_token) && !shown.contains(&session.access_token),
        "{shown}"
    );

    let header = jsonwebtoken::decode_header(&session.access_token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    assert_eq!(
        header.kid.as_deref(),
        Some(stack.current_kid(StackUserKind::Regular).as_str())
    );
    let claims = verify_as(
        client.settings(),
        StackUserKind::Regular,
        &session.access_token,
    )
    .await
    .unwrap();
    assert_eq!(claims["sub"], user.as_str());
    assert_eq!(
        claims["iss"],
        format!("{}/api/v1/projects/{PROJECT_ID}", stack.settings().api_url)
    );
    assert_eq!(claims["aud"], PROJECT_ID);
    assert_eq!(claims["project_id"], PROJECT_ID);
    assert_eq!(claims["branch_id"], "main");
    assert_eq!(claims["role"], "authenticated");
    assert!(claims["refresh_token_id"]
        .as_str()
        .is_some_and(|id| !id.is_empty()));
    assert!(claims["iat"].as_i64().unwrap() < claims["exp"].as_i64().unwrap());

    assert_eq!(
        check_claims(client.settings(), &claims).unwrap(),
        StackClaims {
            selected_team_id: Some(team),
            email: Some(EMAIL.into()),
            email_verified: true,
            name: Some("Ada".into()),
            is_anonymous: false,
            is_restricted: false,
        }
    );
}

#[tokio::test]
async fn wrong_password_or_unknown_email_is_invalid_credentials() {
    let (_stack, client, _user) = standin().await;
    for (email, password) in [(EMAIL, "hunter2-not-it"), ("nobody@example.com", PASSWORD)] {
        let err = client.sign_in_password(email, password).await.unwrap_err();
        assert!(matches!(err, StackError::InvalidCredentials), "{err:?}");
        assert_eq!(err.code(), "invalid_credentials");
        assert!(!err.to_string().contains(password), "{err}");
    }
}

#[tokio::test]
async fn refresh_gives_a_fresh_token_for_the_same_session() {
    let (stack, client, user) = standin().await;
    let team = stack.add_team(&[&user]);
    stack.select_team(&user, Some(&team));
    let session = client.sign_in_password(EMAIL, PASSWORD).await.unwrap();
    let first = verify_as(
        client.settings(),
        StackUserKind::Regular,
        &session.access_token,
    )
    .await
    .unwrap();

    // A team switch in Stack shows in the next token.
    stack.select_team(&user, None);
    let fresh = client.refresh(&session.refresh_token).await.unwrap();
    let claims = verify_as(client.settings(), StackUserKind::Regular, &fresh)
        .await
        .unwrap();
    assert_eq!(claims["sub"], user.as_str());
    assert_eq!(claims["refresh_token_id"], first["refresh_token_id"]);
    assert_eq!(
        check_claims(client.settings(), &claims)
            .unwrap()
            .selected_team_id,
        None
    );
}

#[tokio::test]
async fn revoked_refresh_token_is_refused() {
    let (stack, client, user) = standin().await;
    let session = client.sign_in_password(EMAIL, PASSWORD).await.unwrap();
    assert_eq!(stack.revoke_sessions(&user), 1);
    let err = client.refresh(&session.refresh_token).await.unwrap_err();
    assert!(matches!(err, StackError::SessionEnded), "{err:?}");
    assert_eq!(err.code(), "session_ended");
    let err = client.refresh("never-issued").await.unwrap_err();
    assert!(matches!(err, StackError::SessionEnded), "{err:?}");

    // A cookie that cannot be a token never reaches Stack.
    let asked = stack.requests("/api/v1/auth/sessions/current/refresh");
    for junk in ["", "two\nlines", "with space"] {
        let err = client.refresh(junk).await.unwrap_err();
        assert!(matches!(err, StackError::SessionEnded), "{junk:?}: {err:?}");
    }
    assert_eq!(
        stack.requests("/api/v1/auth/sessions/current/refresh"),
        asked
    );
}

#[tokio::test]
async fn sign_out_ends_only_that_session_and_is_idempotent() {
    let (stack, client, _user) = standin().await;
    let laptop = client.sign_in_password(EMAIL, PASSWORD).await.unwrap();
    let phone = client.sign_in_password(EMAIL, PASSWORD).await.unwrap();

    client.sign_out(&laptop.refresh_token).await.unwrap();
    assert_eq!(stack.requests("/api/v1/auth/sessions/current"), 1);
    let err = client.refresh(&laptop.refresh_token).await.unwrap_err();
    assert!(matches!(err, StackError::SessionEnded), "{err:?}");
    client.refresh(&phone.refresh_token).await.unwrap();

    // Signing out again succeeds without asking Stack to end anything.
    client.sign_out(&laptop.refresh_token).await.unwrap();
    assert_eq!(stack.requests("/api/v1/auth/sessions/current"), 1);
}

#[tokio::test]
async fn missing_or_wrong_project_credentials_are_misconfiguration() {
    let (stack, _client, _user) = standin().await;
    let cases = [
        (None, PROJECT_ID, "CLIENT_AUTHENTICATION_REQUIRED"),
        (
            Some("pck_wrong"),
            PROJECT_ID,
            "INVALID_PUBLISHABLE_CLIENT_KEY",
        ),
        (
            Some(PUBLISHABLE_KEY),
            "another-project",
            "INVALID_PUBLISHABLE_CLIENT_KEY",
        ),
    ];
    for (key, project, expected) in cases {
        let settings = StackSettings {
            project_id: project.into(),
            publishable_client_key: key.map(str::to_string),
            ..stack.settings()
        };
        let client = StackClient::new(settings).unwrap();
        let err = client.sign_in_password(EMAIL, PASSWORD).await.unwrap_err();
        match &err {
            StackError::Misconfigured { code } => assert_eq!(code, expected),
            other => panic!("{key:?}/{project}: {other:?}"),
        }
        assert_eq!(err.code(), "stack_misconfigured");
        assert!(!err.to_string().contains("pck_"), "{err}");
    }
}

#[tokio::test]
async fn one_time_code_and_magic_link_sign_in() {
    let (stack, client, user) = standin().await;
    let callback = "http://127.0.0.1:1/auth/stack/magic-link";

    let nonce = client.send_sign_in_code(EMAIL, callback).await.unwrap();
    let sent = stack.outbox().pop().unwrap();
    assert_eq!(sent.email, EMAIL);
    // The user types the six characters from the email, as shown there.
    let typed = format!("{}{nonce}", sent.otp);
    let session = client.sign_in_with_code(&typed).await.unwrap();
    let claims = verify_as(
        client.settings(),
        StackUserKind::Regular,
        &session.access_token,
    )
    .await
    .unwrap();
    assert_eq!(claims["sub"], user.as_str());
    let err = client.sign_in_with_code(&typed).await.unwrap_err();
    assert!(matches!(err, StackError::InvalidCode), "{err:?}");

    // The magic link carries the whole code.
    client.send_sign_in_code(EMAIL, callback).await.unwrap();
    let link = reqwest::Url::parse(&stack.outbox().pop().unwrap().link).unwrap();
    assert!(link.as_str().starts_with(callback));
    let code = link.query_pairs().find(|(k, _)| k == "code").unwrap().1;
    client.sign_in_with_code(&code).await.unwrap();

    // Stack signs up an address it has not seen.
    let nonce = client
        .send_sign_in_code("new@example.com", callback)
        .await
        .unwrap();
    let otp = stack.outbox().pop().unwrap().otp;
    let session = client
        .sign_in_with_code(&format!("{otp}{nonce}"))
        .await
        .unwrap();
    assert!(session.is_new_user);

    // Junk is refused without bothering Stack.
    let asked = stack.requests("/api/v1/auth/otp/sign-in");
    for junk in ["", "not a code!", &"a".repeat(65)] {
        let err = client.sign_in_with_code(junk).await.unwrap_err();
        assert!(matches!(err, StackError::InvalidCode), "{junk:?}: {err:?}");
    }
    assert_eq!(stack.requests("/api/v1/auth/otp/sign-in"), asked);
}

/// Follows the authorize URL as the browser would and returns the redirect Stack sends back.
async fn authorize(url: reqwest::Url) -> reqwest::Url {
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = browser.get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = response.headers()["location"].to_str().unwrap();
    reqwest::Url::parse(location).unwrap()
}

fn query(url: &reqwest::Url, name: &str) -> String {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn oauth_sign_in_through_stack_with_pkce() {
    let (stack, client, user) = standin().await;
    stack.set_oauth_user("github", &user);
    let redirect = "http://127.0.0.1:1/auth/stack/oauth/callback";
    let verifier = random_base62(64);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));

    let start = client
        .oauth_authorize_url("github", redirect, "state-1", &challenge)
        .unwrap();
    let back = authorize(start).await;
    assert!(back.as_str().starts_with(redirect), "{back}");
    assert_eq!(query(&back, "state"), "state-1");
    let code = query(&back, "code");
    let session = client
        .oauth_exchange_code(&code, redirect, &verifier)
        .await
        .unwrap();
    let claims = verify_as(
        client.settings(),
        StackUserKind::Regular,
        &session.access_token,
    )
    .await
    .unwrap();
    assert_eq!(claims["sub"], user.as_str());
    client.refresh(&session.refresh_token).await.unwrap();

    // A used code, or a fresh one with the wrong verifier, is refused.
    let err = client
        .oauth_exchange_code(&code, redirect, &verifier)
        .await
        .unwrap_err();
    assert!(matches!(err, StackError::InvalidCode), "{err:?}");
    let again = authorize(
        client
            .oauth_authorize_url("github", redirect, "state-2", &challenge)
            .unwrap(),
    )
    .await;
    let err = client
        .oauth_exchange_code(&query(&again, "code"), redirect, "the-wrong-verifier")
        .await
        .unwrap_err();
    assert!(matches!(err, StackError::InvalidCode), "{err:?}");

    let without_key = StackClient::new(StackSettings {
        publishable_client_key: None,
        ..stack.settings()
    })
    .unwrap();
    let err = without_key
        .oauth_authorize_url("github", redirect, "s", &challenge)
        .unwrap_err();
    assert!(matches!(err, StackError::Settings(_)), "{err:?}");
    let err = client
        .oauth_authorize_url("git/../hub", redirect, "s", &challenge)
        .unwrap_err();
    assert!(matches!(err, StackError::Settings(_)), "{err:?}");
}

#[tokio::test]
async fn restricted_users_are_refused_unless_allowed() {
    let (stack, client, user) = standin().await;
    stack.restrict(&user, "email_not_verified");
    let session = client.sign_in_password(EMAIL, PASSWORD).await.unwrap();

    // Stack publishes the restricted users' keys only when asked.
    let strict = client.settings().clone();
    let err = verify_as(&strict, StackUserKind::Restricted, &session.access_token)
        .await
        .unwrap_err();
    assert!(err.contains("not published"), "{err}");
    let lenient = StackSettings {
        allow_restricted: true,
        ..strict.clone()
    };
    let claims = verify_as(&lenient, StackUserKind::Restricted, &session.access_token)
        .await
        .unwrap();
    assert_eq!(claims["aud"], format!("{PROJECT_ID}:restricted"));

    let err = check_claims(&strict, &claims).unwrap_err();
    assert_eq!(
        err,
        StackClaimError::RestrictedNotAllowed {
            reason: "email_not_verified".into()
        }
    );
    assert_eq!(err.code(), "restricted_not_allowed");
    let allowed = check_claims(&lenient, &claims).unwrap();
    assert!(allowed.is_restricted && !allowed.is_anonymous);
}

#[tokio::test]
async fn anonymous_users_are_refused_unless_allowed() {
    let (stack, client, user) = standin().await;
    let anon = stack.settings().issuer_of(StackUserKind::Anonymous);
    let mut claims = stack.claims_for(&user);
    for (name, value) in [
        ("iss", json!(anon.issuer)),
        ("aud", json!(anon.audience)),
        ("email", Value::Null),
        ("email_verified", json!(false)),
        ("is_anonymous", json!(true)),
        ("is_restricted", json!(true)),
        ("restricted_reason", json!({ "type": "anonymous" })),
    ] {
        claims.insert(name.into(), value);
    }
    let token = stack.mint(&claims);

    let strict = client.settings().clone();
    let err = verify_as(&strict, StackUserKind::Anonymous, &token)
        .await
        .unwrap_err();
    assert!(err.contains("not published"), "{err}");
    let with_anonymous = StackSettings {
        allow_anonymous: true,
        ..strict.clone()
    };
    let verified = verify_as(&with_anonymous, StackUserKind::Anonymous, &token)
        .await
        .unwrap();

    for settings in [
        strict.clone(),
        StackSettings {
            allow_restricted: true,
            ..strict
        },
    ] {
        let err = check_claims(&settings, &verified).unwrap_err();
        assert_eq!(err, StackClaimError::AnonymousNotAllowed);
        assert_eq!(err.code(), "anonymous_not_allowed");
    }
    let allowed = check_claims(&with_anonymous, &verified).unwrap();
    assert!(allowed.is_anonymous && allowed.email.is_none());
}

#[tokio::test]
async fn rotated_keys_stay_published_until_retired() {
    let (stack, client, _user) = standin().await;
    let session = client.sign_in_password(EMAIL, PASSWORD).await.unwrap();
    let old_kid = stack.current_kid(StackUserKind::Regular);

    stack.rotate_keys();
    let fresh = client.refresh(&session.refresh_token).await.unwrap();
    let new_kid = jsonwebtoken::decode_header(&fresh).unwrap().kid.unwrap();
    assert_ne!(new_kid, old_kid);
    assert_eq!(new_kid, stack.current_kid(StackUserKind::Regular));
    let settings = client.settings();
    for token in [&session.access_token, &fresh] {
        verify_as(settings, StackUserKind::Regular, token)
            .await
            .unwrap();
    }

    stack.retire_old_keys();
    let err = verify_as(settings, StackUserKind::Regular, &session.access_token)
        .await
        .unwrap_err();
    assert!(err.contains("not published"), "{err}");
    verify_as(settings, StackUserKind::Regular, &fresh)
        .await
        .unwrap();
}

/// A server that answers every request as its `x-stack-project-id` header says.
async fn misbehaving_stack() -> String {
    async fn answer(headers: HeaderMap) -> axum::response::Response {
        let project = headers
            .get("x-stack-project-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        match project {
            "overloaded" => (StatusCode::SERVICE_UNAVAILABLE, "try later").into_response(),
            "huge" => "x".repeat(70 * 1024).into_response(),
            "html" => "<html>a login page</html>".into_response(),
            "teapot" => StatusCode::IM_A_TEAPOT.into_response(),
            _ => (
                StatusCode::BAD_REQUEST,
                [("x-stack-known-error", "EMAIL_PASSWORD_MISMATCH")],
                axum::Json(json!({ "code": "SOMETHING_ELSE", "error": "mismatched" })),
            )
                .into_response(),
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, Router::new().fallback(answer)).await });
    url
}

#[tokio::test]
async fn unreachable_and_unusable_replies_are_told_apart() {
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let misbehaving = misbehaving_stack().await;
    let cases = [
        (closed.as_str(), "p", "stack_unreachable"),
        (&misbehaving, "overloaded", "stack_unreachable"),
        (&misbehaving, "huge", "stack_bad_reply"),
        (&misbehaving, "html", "stack_bad_reply"),
        (&misbehaving, "teapot", "stack_bad_reply"),
        (&misbehaving, "mismatched-known-error", "stack_bad_reply"),
    ];
    for (url, project, expected) in cases {
        let settings = StackSettings {
            api_url: url.to_string(),
            publishable_client_key: Some(PUBLISHABLE_KEY.into()),
            ..StackSettings::new(project)
        };
        let client = StackClient::new(settings).unwrap();
        let err = client.sign_in_password(EMAIL, PASSWORD).await.unwrap_err();
        assert_eq!(err.code(), expected, "{project}: {err:?}");
        assert!(!err.to_string().contains(PASSWORD), "{err}");
    }
}
