//! The browser session's cookies. All are SameSite=Lax and, behind https, Secure; all but the
//! CSRF token are HttpOnly, so page scripts can never read a credential.

use axum::http::{header, HeaderMap, HeaderValue};

/// The short-lived access token (a local JWT naming its session).
pub const ACCESS: &str = "fm_access";
/// The session's refresh secret; sent only to `/auth`.
pub const REFRESH: &str = "fm_refresh";
/// Stack's own refresh token, for sessions signed in through Stack; sent only to `/auth`.
pub const STACK_REFRESH: &str = "fm_stack_refresh";
/// The CSRF token: readable by the page, echoed in `X-CSRF-Token` on state-changing requests.
pub const CSRF: &str = "fm_csrf";
/// Binds a Stack magic link to the browser that asked for it (holds the code's nonce).
pub const STACK_CODE: &str = "fm_stack_code";
/// Binds an OIDC callback to the browser that started the sign-in.
pub const OIDC_STATE: &str = "fm_oidc_state";

pub const CSRF_HEADER: &str = "x-csrf-token";

/// The value of cookie `name` in the request, if sent.
pub fn get<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// A `Set-Cookie` value. `max_age` 0 deletes the cookie.
pub fn set(
    name: &str,
    value: &str,
    path: &str,
    max_age: i64,
    http_only: bool,
    secure: bool,
) -> HeaderValue {
    let mut cookie = format!("{name}={value}; Path={path}; Max-Age={max_age}; SameSite=Lax");
    if http_only {
        cookie.push_str("; HttpOnly");
    }
    if secure {
        cookie.push_str("; Secure");
    }
    HeaderValue::from_str(&cookie).expect("cookie values are base62 and JWT characters")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_cookie_among_several_headers() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; fm_access=x.y.z"),
        );
        headers.append(header::COOKIE, HeaderValue::from_static("fm_csrf=abc"));
        assert_eq!(get(&headers, ACCESS), Some("x.y.z"));
        assert_eq!(get(&headers, CSRF), Some("abc"));
        assert_eq!(get(&headers, REFRESH), None);
        let cookie = set(REFRESH, "s", "/auth", 60, true, true);
        assert_eq!(
            cookie,
            "fm_refresh=s; Path=/auth; Max-Age=60; SameSite=Lax; HttpOnly; Secure"
        );
    }
}
