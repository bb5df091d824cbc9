//! Sessions and CSRF tokens of the dashboard (docs/dashboard.md#sessions-and-csrf).
//!
//! Rules it keeps:
//! - A session is a `login` token of berth-access, carried in the cookie [`SESSION_COOKIE`]
//!   (HttpOnly, SameSite=Strict, Secure on TLS). Nothing else is stored: revoking the token,
//!   disabling the user or changing the password ends the session at once.
//! - Only the dashboard reads the cookie; `/api/v1` takes `Authorization: Bearer` only.
//! - A form's CSRF token is derived from the session's secret (SHA-256 with a fixed label), so
//!   only a holder of the session can compute it; the login form (no session yet) uses a
//!   double-submit cookie. Both are compared in constant time.

use berth_access::{Principal, TokenKind};
use http::HeaderMap;
use sha2::{Digest, Sha256};

/// The session cookie: the login token's secret.
pub const SESSION_COOKIE: &str = "berth_session";
/// The login form's double-submit CSRF cookie.
pub const LOGIN_CSRF_COOKIE: &str = "berth_login_csrf";

/// A logged-in browser.
pub struct Session {
    pub principal: Principal,
    /// The form token of this session.
    pub csrf: String,
}

/// The value of cookie `name` in the request's `Cookie` headers.
#[must_use]
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// The session of a request: its cookie's token, if it is a valid `login` token.
pub fn session(access: &berth_access::Access, headers: &HeaderMap) -> Option<Session> {
    let token = cookie(headers, SESSION_COOKIE)?;
    let principal = access.authenticate(Some(&format!("Bearer {token}"))).ok()?;
    // An API token pasted into a cookie is not a browser session.
    if principal.kind != TokenKind::Login {
        return None;
    }
    Some(Session {
        principal,
        csrf: csrf_for(token),
    })
}

/// The CSRF token of the session whose secret is `token`.
#[must_use]
pub fn csrf_for(token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"berth-dashboard-csrf\0");
    h.update(token.as_bytes());
    hex::encode(h.finalize())
}

/// A fresh random token (the login form's).
#[must_use]
pub fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// `a == b` in time independent of where they differ.
#[must_use]
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, `Path=/`, Secure when served over TLS;
/// `max_age` 0 deletes the cookie.
#[must_use]
pub fn set_cookie(name: &str, value: &str, secure: bool, max_age: Option<u32>) -> String {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        c.push_str("; Secure");
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::COOKIE,
            "a=1; berth_session=berth_x ; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("berth_x"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn csrf_tokens_differ_per_session_and_compare_exactly() {
        let a = csrf_for("berth_a");
        assert_eq!(a, csrf_for("berth_a"));
        assert_ne!(a, csrf_for("berth_b"));
        assert!(same(&a, &csrf_for("berth_a")));
        assert!(!same(&a, &a[1..]));
        assert!(!same(&a, ""));
    }

    #[test]
    fn cookies_are_strict_and_secure_on_tls() {
        let c = set_cookie(SESSION_COOKIE, "v", true, None);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Secure"));
        assert!(!set_cookie(SESSION_COOKIE, "v", false, Some(0)).contains("Secure"));
    }
}
