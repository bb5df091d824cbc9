//! Who may call what: a pure function of the caller, the method and the route template
//! (docs/access.md, "Requests"). Decisions that depend on the object (one's own tokens, password
//! and audit rows versus another user's) are taken by [`crate::Access`]'s methods, which get the
//! principal too.

use crate::{Principal, TokenKind};

/// The answer for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// `403 forbidden`.
    Forbidden,
    /// `403 password_change_required`.
    PasswordChangeRequired,
}

/// Scopes a token may be restricted to.
pub const KNOWN_SCOPES: &[&str] = &["metrics"];

/// Calls that need no token (the webhook is authenticated by its signature).
#[must_use]
pub fn is_public(method: &str, route: &str) -> bool {
    matches!(
        (method, route),
        (
            "GET" | "HEAD",
            "/api/v1/health" | "/api/v1/openapi.json" | "/.well-known/jwks.json"
        ) | ("POST", "/api/v1/login" | "/api/v1/hooks/{name}")
    )
}

/// What a scope allows.
fn scope_allows(scope: &str, method: &str, route: &str) -> bool {
    match scope {
        "metrics" => matches!((method, route), ("GET" | "HEAD", "/metrics")),
        _ => false,
    }
}

/// Calls a caller whose password must be changed may still make.
fn allowed_before_password_change(method: &str, route: &str) -> bool {
    matches!(
        (method, route),
        ("GET" | "HEAD", "/api/v1/whoami")
            | ("POST", "/api/v1/logout" | "/api/v1/users/{name}/password")
    )
}

/// Routes any user may call (the object checks — own tokens, own password, own audit rows —
/// are the handler's). Everything else is the administrator's: users, other users' tokens
/// (by `?user=`, checked by the handler), the signing key, `/metrics`, `/api/v1/admin/*`, and
/// `/api/v1/gateway/table` (the full table, with issuers' HS256 secrets, for a separate gateway;
/// users read `/api/v1/routes`, secrets redacted).
fn user_may(method: &str, route: &str) -> bool {
    let under = |prefix: &str| route == prefix || route.starts_with(&format!("{prefix}/"));
    if matches!((method, route), ("POST", "/api/v1/users/{name}/password")) {
        return true;
    }
    [
        "/api/v1/apps",
        "/api/v1/contexts",
        "/api/v1/routes",
        "/api/v1/tokens",
        "/api/v1/issuers",
        "/api/v1/services",
        "/api/v1/builds",
        "/api/v1/images",
        "/api/v1/events",
        "/api/v1/whoami",
        "/api/v1/logout",
        "/api/v1/api-tokens",
        "/api/v1/audit",
    ]
    .iter()
    .any(|p| under(p))
}

/// May `p` call `method` on the route template `route` (e.g. `/api/v1/apps/{app}/apply`)?
/// Public routes are not asked here (see [`is_public`]).
#[must_use]
pub fn authorize(p: &Principal, method: &str, route: &str) -> Decision {
    if p.must_change_password
        && p.kind != TokenKind::Local
        && !allowed_before_password_change(method, route)
    {
        return Decision::PasswordChangeRequired;
    }
    // A scoped token: only what a scope allows (and asking who it is).
    if !p.scopes.is_empty() {
        let ok = matches!((method, route), ("GET" | "HEAD", "/api/v1/whoami"))
            || p.scopes.iter().any(|s| scope_allows(s, method, route));
        return if ok {
            Decision::Allow
        } else {
            Decision::Forbidden
        };
    }
    if p.administrator || user_may(method, route) {
        Decision::Allow
    } else {
        Decision::Forbidden
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Decision::{Allow, Forbidden, PasswordChangeRequired as Pcr};

    fn principal(admin: bool, kind: TokenKind, scopes: &[&str], must_change: bool) -> Principal {
        Principal {
            user: "u".into(),
            administrator: admin,
            token: "t".into(),
            kind,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            must_change_password: must_change,
            expires_at: None,
        }
    }

    #[test]
    fn public_routes() {
        for (m, r) in [
            ("GET", "/api/v1/health"),
            ("GET", "/api/v1/openapi.json"),
            ("GET", "/.well-known/jwks.json"),
            ("POST", "/api/v1/login"),
            ("POST", "/api/v1/hooks/{name}"),
        ] {
            assert!(is_public(m, r), "{m} {r}");
        }
        for (m, r) in [
            ("GET", "/api/v1/apps"),
            ("GET", "/metrics"),
            ("GET", "/api/v1/login"),
            ("POST", "/api/v1/health"),
            ("GET", "/api/v1/whoami"),
        ] {
            assert!(!is_public(m, r), "{m} {r}");
        }
    }

    #[test]
    fn the_authorization_table() {
        let admin = principal(true, TokenKind::Login, &[], false);
        let user = principal(false, TokenKind::Api, &[], false);
        let metrics = principal(false, TokenKind::Api, &["metrics"], false);
        let admin_metrics = principal(true, TokenKind::Api, &["metrics"], false);
        let fresh_admin = principal(true, TokenKind::Login, &[], true);
        let fresh_user = principal(false, TokenKind::Login, &[], true);
        let local = principal(true, TokenKind::Local, &[], true);
        #[rustfmt::skip]
        let table: &[(&str, &str, [Decision; 7])] = &[
            // method, route: admin, user, metrics-scoped, admin metrics-scoped, must-change admin, must-change user, local (must-change)
            ("GET", "/api/v1/apps", [Allow, Allow, Forbidden, Forbidden, Pcr, Pcr, Allow]),
            ("POST", "/api/v1/apps/{app}/apply", [Allow, Allow, Forbidden, Forbidden, Pcr, Pcr, Allow]),
            ("DELETE", "/api/v1/apps/{app}", [Allow, Allow, Forbidden, Forbidden, Pcr, Pcr, Allow]),
            ("POST", "/api/v1/contexts", [Allow, Allow, Forbidden, Forbidden, Pcr, Pcr, Allow]),
            ("POST", "/api/v1/services/{name}/builds", [Allow, Allow, Forbidden, Forbidden, Pcr, Pcr, Allow]),
            ("GET", "/api/v1/images", [Allow, Allow, Forbidden, Forbidden, Pcr, Pcr, Allow]),
            ("POST", "/api/v1/issuers", [Allow, Allow, Forbidden, Forbidden, Pcr, Pcr, Allow]),
            ("POST", "/api/v1/tokens", [Allow, Allow, Forbidden, Forbidden, Pcr, Pcr, Allow]),
            ("GET", "/api/v1/events", [Allow, Allow, Forbidden, Forbidden, Pcr, Pcr, Allow]),
            ("GET", "/api/v1/routes", [Allow, Allow, Forbidden, Forbidden, Pcr, Pcr, Allow]),
            ("GET", "/api/v1/gateway/table", [Allow, Forbidden, Forbidden, Forbidden, Pcr, Pcr, Allow]),
            ("POST", "/api/v1/keys/rotate", [Allow, Forbidden, Forbidden, Forbidden, Pcr, Pcr, Allow]),
            ("GET", "/metrics", [Allow, Forbidden, Allow, Allow, Pcr, Pcr, Allow]),
            ("GET", "/api/v1/whoami", [Allow, Allow, Allow, Allow, Allow, Allow, Allow]),
            ("POST", "/api/v1/logout", [Allow, Allow, Forbidden, Forbidden, Allow, Allow, Allow]),
            ("GET", "/api/v1/api-tokens", [Allow, Allow, Forbidden, Forbidden, Pcr, Pcr, Allow]),
            ("POST", "/api/v1/api-tokens", [Allow, Allow, Forbidden, Forbidden, Pcr, Pcr, Allow]),
            ("DELETE", "/api/v1/api-tokens/{name}", [Allow, Allow, Forbidden, Forbidden, Pcr, Pcr, Allow]),
            ("GET", "/api/v1/users", [Allow, Forbidden, Forbidden, Forbidden, Pcr, Pcr, Allow]),
            ("POST", "/api/v1/users", [Allow, Forbidden, Forbidden, Forbidden, Pcr, Pcr, Allow]),
            ("POST", "/api/v1/users/{name}/password", [Allow, Allow, Forbidden, Forbidden, Allow, Allow, Allow]),
            ("POST", "/api/v1/users/{name}/disable", [Allow, Forbidden, Forbidden, Forbidden, Pcr, Pcr, Allow]),
            ("GET", "/api/v1/audit", [Allow, Allow, Forbidden, Forbidden, Pcr, Pcr, Allow]),
            ("POST", "/api/v1/admin/backup", [Allow, Forbidden, Forbidden, Forbidden, Pcr, Pcr, Allow]),
            ("GET", "/api/v1/appsx", [Allow, Forbidden, Forbidden, Forbidden, Pcr, Pcr, Allow]),
        ];
        let who = [
            &admin,
            &user,
            &metrics,
            &admin_metrics,
            &fresh_admin,
            &fresh_user,
            &local,
        ];
        for (method, route, want) in table {
            for (p, want) in who.iter().zip(want) {
                assert_eq!(
                    authorize(p, method, route),
                    *want,
                    "{method} {route} as {p:?}"
                );
            }
        }
    }
}
