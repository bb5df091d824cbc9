//! Who may call what: a pure function of the caller, the method and the route template
//! (docs/access.md, "Requests"). Decisions that depend on the object (one's own tokens, password
//! and audit rows versus another user's) are taken by [`crate::Access`]'s methods, which get the
//! principal too.

use crate::{Principal, TokenKind};
use berth_core::team::Role;

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
pub const KNOWN_SCOPES: &[&str] = &["metrics", "gateway"];

/// Calls that need no token (the webhook is authenticated by its signature).
#[must_use]
pub fn is_public(method: &str, route: &str) -> bool {
    matches!(
        (method, route),
        (
            "GET" | "HEAD",
            "/api/v1/health" | "/api/v1/openapi.json" | "/.well-known/jwks.json"
        ) | (
            "POST",
            "/api/v1/login" | "/api/v1/hooks/{name}" | "/api/v1/hooks/{team}/{name}"
        )
    )
}

/// What a scope allows its token's owner. `gateway` (what `berth gateway` calls: the whole
/// table, issuers' secrets included, and the traffic reports) stays the administrator's.
fn scope_allows(p: &Principal, scope: &str, method: &str, route: &str) -> bool {
    match scope {
        "metrics" => matches!((method, route), ("GET" | "HEAD", "/metrics")),
        "gateway" => {
            p.administrator
                && matches!(
                    (method, route),
                    ("GET" | "HEAD", "/api/v1/gateway/table") | ("POST", "/api/v1/gateway/stats")
                )
        }
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

/// What a call does: the rows of the permission table (docs/permissions.md is generated from
/// [`ROUTES`] and [`role_allows`]; a test keeps the file current).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// Any signed-in user, on its own things (its tokens, its password, its audit rows, its
    /// teams); the handler checks the object.
    Own,
    /// The platform administrator only: users, teams, admission grants, the signing key, the
    /// full gateway table (issuers' HS256 secrets), the Swarm's nodes, `/metrics`, backups.
    Admin,
    /// Team-scoped from here on: read the team's objects.
    Read,
    /// Container and build logs.
    Logs,
    /// Apply, remove an application, upload a build context.
    Deploy,
    Scale,
    Rollback,
    /// Create and remove services, set their build and webhook secrets.
    Services,
    /// Start and cancel builds.
    Build,
    /// Download (archive) images.
    Images,
    /// Restore images from an archive, in a team: the administrator's, since a load replaces
    /// tags in the engine every team shares before they can be checked.
    Restore,
    /// Add and remove JWT issuers.
    Issuers,
    /// Mint gateway JWTs for the team's applications.
    Tokens,
    /// Add, change and remove members.
    Members,
    /// Submit a version for review.
    Submit,
    /// Approve or reject a submitted version (never one's own: the control plane checks).
    Review,
    /// Publish an approved version.
    Publish,
    /// Deprecate and retire published versions; protect applications.
    Curate,
    /// Any signed-in user: browse the market (published services of every team).
    Market,
    /// Subscribe the team's applications to market entries, and end subscriptions.
    Subscribe,
}

impl Action {
    /// Every action, in table order.
    pub const ALL: [Action; 20] = [
        Action::Own,
        Action::Admin,
        Action::Read,
        Action::Logs,
        Action::Deploy,
        Action::Scale,
        Action::Rollback,
        Action::Services,
        Action::Build,
        Action::Images,
        Action::Restore,
        Action::Issuers,
        Action::Tokens,
        Action::Members,
        Action::Submit,
        Action::Review,
        Action::Publish,
        Action::Curate,
        Action::Market,
        Action::Subscribe,
    ];

    /// Does the call act in one team (and need one: `?team=`, the token's team, or the only
    /// team of the caller)?
    #[must_use]
    pub fn team_scoped(self) -> bool {
        !matches!(self, Action::Own | Action::Admin | Action::Market)
    }

    /// One line of what the action lets a caller do (docs/permissions.md).
    #[must_use]
    pub fn meaning(self) -> &'static str {
        match self {
            Action::Own => "any signed-in user, on its own things: its tokens, its password, its audit rows, its teams",
            Action::Admin => "the platform administrator only: users, teams, admission grants, the signing key, the gateway table, the Swarm's nodes, metrics, backups",
            Action::Read => "read the team's objects: applications, revisions, replicas, routes, services, versions, builds, images, issuers, events, members",
            Action::Logs => "read container and build logs",
            Action::Deploy => "apply and remove applications, upload build contexts, create, extend and remove environments",
            Action::Scale => "change replica counts",
            Action::Rollback => "roll an application back to an earlier revision",
            Action::Services => "create and remove services, set their build and webhook secrets",
            Action::Build => "start and cancel builds",
            Action::Images => "download (archive) images",
            Action::Restore => "restore images from an archive into the team: the administrator's, in any team (a load replaces tags in the engine every team shares before they can be checked)",
            Action::Issuers => "add and remove JWT issuers",
            Action::Tokens => "mint gateway JWTs for the team's applications",
            Action::Members => "add, change and remove the team's members",
            Action::Submit => "submit a version for review (docs/lifecycle.md)",
            Action::Review => "approve or reject a submitted version, never one's own",
            Action::Publish => "publish an approved version",
            Action::Curate => "deprecate and retire published versions; protect applications (run approved versions only)",
            Action::Market => "any signed-in user: browse the market, the published services of every team (docs/market.md)",
            Action::Subscribe => "subscribe the team's applications to market entries, and end subscriptions (docs/market.md#subscribe)",
        }
    }

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Own => "own",
            Action::Admin => "admin",
            Action::Read => "read",
            Action::Logs => "logs",
            Action::Deploy => "deploy",
            Action::Scale => "scale",
            Action::Rollback => "rollback",
            Action::Services => "services",
            Action::Build => "build",
            Action::Images => "images",
            Action::Restore => "restore",
            Action::Issuers => "issuers",
            Action::Tokens => "tokens",
            Action::Members => "members",
            Action::Submit => "submit",
            Action::Review => "review",
            Action::Publish => "publish",
            Action::Curate => "curate",
            Action::Market => "market",
            Action::Subscribe => "subscribe",
        }
    }
}

/// May a member with `role` do `action` in its team? (The platform administrator may do every
/// action in every team; [`Action::Own`] and [`Action::Admin`] are not roles' to give.)
#[must_use]
pub fn role_allows(role: Role, action: Action) -> bool {
    use Action as A;
    match action {
        A::Own | A::Market => true,
        A::Admin => false,
        A::Read => true,
        A::Logs | A::Scale | A::Rollback => {
            matches!(role, Role::Owner | Role::Developer | Role::Operator)
        }
        A::Deploy | A::Services | A::Build | A::Images | A::Issuers | A::Tokens => {
            matches!(role, Role::Owner | Role::Developer)
        }
        A::Members | A::Curate => role == Role::Owner,
        A::Submit | A::Publish | A::Subscribe => matches!(role, Role::Owner | Role::Developer),
        A::Review => role == Role::Approver,
        A::Restore => false,
    }
}

/// Every API call that needs a token, with what it does. A route not listed is the
/// administrator's (deny by default).
#[rustfmt::skip]
pub const ROUTES: &[(&str, &str, Action)] = &[
    ("GET", "/api/v1/whoami", Action::Own),
    ("POST", "/api/v1/logout", Action::Own),
    ("GET", "/api/v1/api-tokens", Action::Own),
    ("POST", "/api/v1/api-tokens", Action::Own),
    ("DELETE", "/api/v1/api-tokens/{name}", Action::Own),
    ("POST", "/api/v1/users/{name}/password", Action::Own),
    ("GET", "/api/v1/audit", Action::Own),
    ("GET", "/api/v1/teams", Action::Own),
    ("GET", "/api/v1/market", Action::Market),
    ("GET", "/api/v1/market/{team}/{service}", Action::Market),
    ("GET", "/api/v1/users", Action::Admin),
    ("POST", "/api/v1/users", Action::Admin),
    ("POST", "/api/v1/users/{name}/disable", Action::Admin),
    ("POST", "/api/v1/teams", Action::Admin),
    ("DELETE", "/api/v1/teams/{team}", Action::Admin),
    ("POST", "/api/v1/teams/{team}/admission", Action::Admin),
    ("DELETE", "/api/v1/teams/{team}/admission/{key}", Action::Admin),
    ("POST", "/api/v1/keys/rotate", Action::Admin),
    ("GET", "/api/v1/gateway/table", Action::Admin),
    // The Swarm's nodes and every team's task counts: a view of the whole cluster.
    ("GET", "/api/v1/nodes", Action::Admin),
    ("POST", "/api/v1/gateway/stats", Action::Admin),
    ("GET", "/metrics", Action::Admin),
    ("POST", "/api/v1/admin/backup", Action::Admin),
    ("GET", "/api/v1/teams/{team}/members", Action::Read),
    ("POST", "/api/v1/teams/{team}/members", Action::Members),
    ("DELETE", "/api/v1/teams/{team}/members/{user}", Action::Members),
    ("GET", "/api/v1/teams/{team}/admission", Action::Read),
    ("GET", "/api/v1/envs", Action::Read),
    ("POST", "/api/v1/envs", Action::Deploy),
    ("GET", "/api/v1/envs/{env}", Action::Read),
    ("DELETE", "/api/v1/envs/{env}", Action::Deploy),
    ("POST", "/api/v1/envs/{env}/extend", Action::Deploy),
    ("GET", "/api/v1/ports", Action::Read),
    ("POST", "/api/v1/apps/{app}/release", Action::Deploy),
    ("POST", "/api/v1/apps/{app}/deploy", Action::Deploy),
    ("GET", "/api/v1/apps", Action::Read),
    ("GET", "/api/v1/apps/{app}", Action::Read),
    ("DELETE", "/api/v1/apps/{app}", Action::Deploy),
    ("POST", "/api/v1/apps/{app}/apply", Action::Deploy),
    ("POST", "/api/v1/contexts", Action::Deploy),
    ("POST", "/api/v1/apps/{app}/scale", Action::Scale),
    ("POST", "/api/v1/apps/{app}/rollback", Action::Rollback),
    ("GET", "/api/v1/apps/{app}/revisions", Action::Read),
    ("GET", "/api/v1/apps/{app}/ps", Action::Read),
    ("GET", "/api/v1/apps/{app}/services/{service}/instances", Action::Read),
    ("GET", "/api/v1/apps/{app}/services/{service}/logs", Action::Logs),
    ("GET", "/api/v1/routes", Action::Read),
    ("GET", "/api/v1/routes/{app}/{service}/stats", Action::Read),
    ("POST", "/api/v1/tokens", Action::Tokens),
    ("GET", "/api/v1/issuers", Action::Read),
    ("POST", "/api/v1/issuers", Action::Issuers),
    ("DELETE", "/api/v1/issuers/{name}", Action::Issuers),
    ("GET", "/api/v1/services", Action::Read),
    ("POST", "/api/v1/services", Action::Services),
    ("DELETE", "/api/v1/services/{name}", Action::Services),
    ("POST", "/api/v1/services/{name}/builds", Action::Build),
    ("GET", "/api/v1/services/{name}/versions", Action::Read),
    ("PUT", "/api/v1/services/{name}/secrets/{secret}", Action::Services),
    ("PUT", "/api/v1/services/{name}/webhook-secret", Action::Services),
    ("GET", "/api/v1/events", Action::Read),
    ("GET", "/api/v1/images", Action::Read),
    ("POST", "/api/v1/images/restore", Action::Restore),
    ("GET", "/api/v1/images/{name}/{version}/archive", Action::Images),
    ("GET", "/api/v1/builds", Action::Read),
    ("GET", "/api/v1/builds/{id}", Action::Read),
    ("POST", "/api/v1/builds/{id}/cancel", Action::Build),
    ("GET", "/api/v1/builds/{id}/logs", Action::Logs),
    ("POST", "/api/v1/services/{name}/versions/{version}/submit", Action::Submit),
    ("POST", "/api/v1/services/{name}/versions/{version}/approve", Action::Review),
    ("POST", "/api/v1/services/{name}/versions/{version}/reject", Action::Review),
    ("POST", "/api/v1/services/{name}/versions/{version}/publish", Action::Publish),
    ("POST", "/api/v1/services/{name}/versions/{version}/deprecate", Action::Curate),
    ("POST", "/api/v1/services/{name}/versions/{version}/retire", Action::Curate),
    ("GET", "/api/v1/services/{name}/versions/{version}/review", Action::Read),
    ("GET", "/api/v1/reviews", Action::Read),
    ("POST", "/api/v1/apps/{app}/protect", Action::Curate),
    ("DELETE", "/api/v1/apps/{app}/protect", Action::Curate),
    ("POST", "/api/v1/apps/{app}/upgrade", Action::Deploy),
    ("GET", "/api/v1/apps/{app}/graph", Action::Read),
    ("GET", "/api/v1/apps/{app}/subscriptions", Action::Read),
    ("POST", "/api/v1/apps/{app}/subscriptions", Action::Subscribe),
    ("DELETE", "/api/v1/apps/{app}/subscriptions/{owner}/{service}", Action::Subscribe),
];

/// docs/permissions.md, generated from [`ROUTES`] and [`role_allows`]
/// (`BERTH_BLESS=1 cargo test -p berth-access permissions_doc` rewrites the file).
#[must_use]
pub fn permissions_markdown() -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let calls = |action: Action| -> Vec<String> {
        ROUTES
            .iter()
            .filter(|(_, _, a)| *a == action)
            .map(|(m, r, _)| format!("`{m} {r}`"))
            .collect()
    };
    out.push_str(
        "<!-- Generated from berth_access::policy (ROUTES, role_allows) by permissions_markdown(); \
         do not edit. Regenerate: BERTH_BLESS=1 cargo test -p berth-access permissions_doc -->\n\n\
         # Permissions\n\n\
         Who may make which API call. Every call is mapped to one **action**; each team member's \
         **role** in the call's team allows some actions. The platform **administrator** may do \
         every action in every team, and alone the `admin` ones. A call of a team the caller is \
         not a member of answers 404 `team_not_found`; an action the role does not allow, 403 \
         `forbidden`; no token, 401 `unauthorized` (docs/teams.md, docs/access.md).\n\n\
         ## Roles × actions\n\n",
    );
    let _ = write!(out, "| action |");
    for role in Role::ALL {
        let _ = write!(out, " {role} |");
    }
    out.push_str("\n|---|");
    for _ in Role::ALL {
        out.push_str("---|");
    }
    out.push('\n');
    for action in Action::ALL.into_iter().filter(|a| a.team_scoped()) {
        let _ = write!(out, "| `{}` |", action.as_str());
        for role in Role::ALL {
            out.push_str(if role_allows(role, action) {
                " yes |"
            } else {
                " – |"
            });
        }
        out.push('\n');
    }
    out.push_str("\n## Actions and their calls\n\n");
    out.push_str(
        "Team-scoped calls act in the team of the route (`/api/v1/teams/{team}/…`), else \
         `?team=`, else the token's team, else the caller's only team.\n",
    );
    for action in Action::ALL.into_iter().filter(|a| a.team_scoped()) {
        let _ = write!(
            out,
            "\n### `{}`\n\n{}.\n\n",
            action.as_str(),
            capitalised(action.meaning())
        );
        for c in calls(action) {
            let _ = writeln!(out, "- {c}");
        }
    }
    for (action, title) in [
        (Action::Admin, "Administrator only"),
        (Action::Own, "Every signed-in user (own things)"),
        (Action::Market, "Every signed-in user (the market)"),
    ] {
        let _ = write!(
            out,
            "\n## {title} (`{}`)\n\n{}.\n\n",
            action.as_str(),
            capitalised(action.meaning())
        );
        for c in calls(action) {
            let _ = writeln!(out, "- {c}");
        }
    }
    out
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// What the call `method route` does; none: not in [`ROUTES`] (the administrator's).
#[must_use]
pub fn action(method: &str, route: &str) -> Option<Action> {
    let method = if method == "HEAD" { "GET" } else { method };
    ROUTES
        .iter()
        .find(|(m, r, _)| *m == method && *r == route)
        .map(|(_, _, a)| *a)
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
            || p.scopes.iter().any(|s| scope_allows(p, s, method, route));
        return if ok {
            Decision::Allow
        } else {
            Decision::Forbidden
        };
    }
    // Team-scoped calls are allowed here and decided by the caller's role in the team
    // ([`role_allows`]) once the team is known.
    if p.administrator || action(method, route).is_some_and(|a| a != Action::Admin) {
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
            team: None,
        }
    }

    /// docs/permissions.md is what the table generates.
    #[test]
    fn permissions_doc() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/permissions.md");
        let want = permissions_markdown();
        if std::env::var_os("BERTH_BLESS").is_some() {
            std::fs::write(&path, &want).unwrap();
            return;
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "docs/permissions.md is not what berth_access::policy generates; regenerate it with \
             `BERTH_BLESS=1 cargo test -p berth-access permissions_doc` and commit it"
        );
    }

    #[test]
    fn every_route_once() {
        let mut seen = std::collections::HashSet::new();
        for (m, r, _) in ROUTES {
            assert!(seen.insert((m, r)), "{m} {r} twice in ROUTES");
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
            ("POST", "/api/v1/hooks/{team}/{name}"),
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
            ("GET", "/api/v1/nodes", [Allow, Forbidden, Forbidden, Forbidden, Pcr, Pcr, Allow]),
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

    /// A `gateway`-scoped token calls what `berth gateway` calls, and only as the
    /// administrator's: the table carries issuers' secrets.
    #[test]
    fn a_gateway_token_reads_the_table_and_reports_and_nothing_else() {
        let gateway = principal(true, TokenKind::Local, &["gateway"], false);
        let users = principal(false, TokenKind::Api, &["gateway"], false);
        for (method, route, want) in [
            ("GET", "/api/v1/gateway/table", Decision::Allow),
            ("POST", "/api/v1/gateway/stats", Decision::Allow),
            ("GET", "/api/v1/whoami", Decision::Allow),
            ("GET", "/api/v1/apps", Decision::Forbidden),
            ("POST", "/api/v1/apps/{app}/apply", Decision::Forbidden),
            ("GET", "/api/v1/nodes", Decision::Forbidden),
            ("GET", "/metrics", Decision::Forbidden),
            ("POST", "/api/v1/users", Decision::Forbidden),
        ] {
            assert_eq!(authorize(&gateway, method, route), want, "{method} {route}");
        }
        assert_eq!(
            authorize(&users, "GET", "/api/v1/gateway/table"),
            Decision::Forbidden
        );
    }
}
