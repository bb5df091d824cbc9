//! Teams as tenants (docs/teams.md): team names, roles, and the one rule that maps a team's
//! name of an object (an application, a service) to the global name everything outside the API
//! uses — the store's keys, Docker labels, Docker object names, image repositories, webhook paths
//! and the default JWT audience.
//!
//! The rule: in team [`DEFAULT_TEAM`] an object's global name is its name (so nothing made
//! before teams existed changes its name); in any other team it is `team/name`. No application,
//! service or team name can contain `/`, so the rule is injective: a global name with a `/` is
//! split at it, one without belongs to `default`. Where `/` cannot appear (Docker container,
//! network and volume names) [`docker_part`] writes it as `.`, which an application name cannot
//! contain either, so that encoding is injective too.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

/// The team every data directory starts with, and that everything made before teams belongs to.
pub const DEFAULT_TEAM: &str = "default";

/// Is `name` a valid team name? Lowercase letters, digits and `-`, starting with a letter or
/// digit, at most 30 characters.
#[must_use]
pub fn valid_team_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 30
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
}

/// The global name of `team`'s object `name` (see the module docs).
#[must_use]
pub fn global_name(team: &str, name: &str) -> String {
    if team == DEFAULT_TEAM {
        name.to_string()
    } else {
        format!("{team}/{name}")
    }
}

/// The team and the team's name of a global name: the inverse of [`global_name`].
#[must_use]
pub fn split_global(global: &str) -> (&str, &str) {
    match global.split_once('/') {
        Some((team, name)) => (team, name),
        None => (DEFAULT_TEAM, global),
    }
}

/// The team a global name belongs to.
#[must_use]
pub fn team_of(global: &str) -> &str {
    split_global(global).0
}

/// `team`'s name for the global name `global`, if `global` belongs to `team`.
#[must_use]
pub fn local_name<'a>(team: &str, global: &'a str) -> Option<&'a str> {
    let (t, name) = split_global(global);
    (t == team).then_some(name)
}

/// A global application name as part of a Docker object name (container, network, volume),
/// where `/` and `@` are not allowed: `/` becomes `.` and `@` (an environment, see
/// [`app_global`]) becomes `..` (an application, team or environment name never contains `.`).
#[must_use]
pub fn docker_part(global: &str) -> Cow<'_, str> {
    if global.contains(['/', '@']) {
        Cow::Owned(global.replace('/', ".").replace('@', ".."))
    } else {
        Cow::Borrowed(global)
    }
}

/// The environment every team has (docs/environments.md): everything deployed before
/// environments existed is in it, and its applications' global names are the names of before.
pub const DEV_ENV: &str = "dev";

/// Is `name` a valid environment name? A team name's alphabet, at most [`MAX_ENV_NAME`]
/// characters.
/// The longest environment name: room for `preview-` and a 32-character branch.
pub const MAX_ENV_NAME: usize = 40;

#[must_use]
pub fn valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_ENV_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
}

/// The global name of `team`'s application `app` in environment `env` (docs/environments.md):
/// in [`DEV_ENV`] the application's [`global_name`]; in any other environment `app@env` takes
/// the application name's place (`web@staging`, `shop/web@staging`). No team, application or
/// environment name contains `/` or `@`, so the rule is injective ([`split_app`]).
#[must_use]
pub fn app_global(team: &str, env: &str, app: &str) -> String {
    if env == DEV_ENV {
        global_name(team, app)
    } else {
        global_name(team, &format!("{app}@{env}"))
    }
}

/// The team, environment and application name of a global application name: the inverse of
/// [`app_global`].
#[must_use]
pub fn split_app(global: &str) -> (&str, &str, &str) {
    let (team, rest) = split_global(global);
    match rest.split_once('@') {
        Some((app, env)) => (team, env, app),
        None => (team, DEV_ENV, rest),
    }
}

/// The environment of a global application name.
#[must_use]
pub fn env_of(global: &str) -> &str {
    split_app(global).1
}

/// The repository path every image Berth builds lives under (`berth/...`).
pub const IMAGE_ROOT: &str = "berth";

/// The repository path of an image reference: without a registry that means the local
/// engine's default (`docker.io/`, `index.docker.io/`), a tag or a digest. None for a reference
/// that is no name (an image ID, `sha256:...`).
fn image_path(reference: &str) -> Option<&str> {
    let r = reference.trim();
    let r = r.split_once('@').map_or(r, |(name, _)| name);
    if r.is_empty() || r.starts_with("sha256:") {
        return None;
    }
    // A tag follows the last `:` that comes after the last `/` (a registry port comes before).
    let last_slash = r.rfind('/').map_or(0, |i| i + 1);
    let r = match r[last_slash..].find(':') {
        Some(i) => &r[..last_slash + i],
        None => r,
    };
    let r = r
        .strip_prefix("docker.io/")
        .or_else(|| r.strip_prefix("index.docker.io/"))
        .unwrap_or(r);
    Some(r)
}

/// The team an image belongs to, if it is one of Berth's (`berth/...`, see
/// docs/teams.md#images): `berth/<name>` is team [`DEFAULT_TEAM`]'s (its services' versions
/// `berth/<service>` and Compose builds `berth/<app>-<service>`), `berth/<team>/...` is
/// `<team>`'s. Any other name (and an image ID) belongs to no team: None.
#[must_use]
pub fn image_team(reference: &str) -> Option<&str> {
    let path = image_path(reference)?;
    let rest = path.strip_prefix(IMAGE_ROOT)?.strip_prefix('/')?;
    if rest.is_empty() {
        return None;
    }
    match rest.split_once('/') {
        Some((team, _)) => Some(team),
        None => Some(DEFAULT_TEAM),
    }
}

/// May `team` use (run, build from, tag) the image named `reference`? Every image outside
/// `berth/` may be used; one under `berth/` only by its own team ([`image_team`]).
#[must_use]
pub fn may_use_image(team: &str, reference: &str) -> bool {
    image_team(reference).is_none_or(|owner| owner == team)
}

/// May `team` use an image carrying these `tags`, named by something that is no `berth/` name
/// (an image ID, a digest)? Not if a tag puts it under another team's `berth/` and no tag is
/// one `team` may use by name.
#[must_use]
pub fn may_use_tagged(team: &str, tags: &[String]) -> bool {
    let foreign = tags
        .iter()
        .any(|t| image_team(t).is_some_and(|owner| owner != team));
    !foreign || tags.iter().any(|t| may_use_image(team, t))
}

/// A member's role in a team (docs/permissions.md lists what each may do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Members and team settings; publishes, deprecates and retires versions; all a developer may.
    Owner,
    /// Services, builds, deploy, scale, subscribe.
    Developer,
    /// Reviews versions (the approval flow).
    Approver,
    /// Scale, rollback, logs.
    Operator,
    /// Reads.
    Viewer,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Owner,
        Role::Developer,
        Role::Approver,
        Role::Operator,
        Role::Viewer,
    ];

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Developer => "developer",
            Role::Approver => "approver",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!("unknown role {s:?} (one of owner, developer, approver, operator, viewer)")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn team_names() {
        for ok in ["default", "shop", "a", "team-1", "0x"] {
            assert!(valid_team_name(ok), "{ok}");
        }
        for bad in ["", "-a", "Shop", "a/b", "a.b", "a_b", &"x".repeat(31)] {
            assert!(!valid_team_name(bad), "{bad}");
        }
    }

    #[test]
    fn the_default_team_keeps_names() {
        assert_eq!(global_name("default", "web"), "web");
        assert_eq!(split_global("web"), ("default", "web"));
        assert_eq!(docker_part("web"), "web");
    }

    #[test]
    fn other_teams_are_prefixed_and_split_back() {
        assert_eq!(global_name("shop", "web"), "shop/web");
        assert_eq!(split_global("shop/web"), ("shop", "web"));
        assert_eq!(local_name("shop", "shop/web"), Some("web"));
        assert_eq!(local_name("ops", "shop/web"), None);
        assert_eq!(local_name("default", "shop/web"), None);
        assert_eq!(local_name("default", "web"), Some("web"));
        assert_eq!(docker_part("shop/web"), "shop.web");
        // A service name may contain `.`: `default`'s `shop.web` and `shop`'s `web` differ.
        assert_ne!(
            global_name("default", "shop.web"),
            global_name("shop", "web")
        );
    }

    #[test]
    fn images_belong_to_the_team_of_their_path() {
        for (reference, team) in [
            ("berth/app-svc", Some("default")),
            ("berth/app-svc:r3", Some("default")),
            ("berth/api:v1", Some("default")),
            ("docker.io/berth/api:v1", Some("default")),
            ("index.docker.io/berth/api", Some("default")),
            ("berth/shop/web-api:latest", Some("shop")),
            ("berth/shop/api@sha256:abcd", Some("shop")),
            ("docker.io/berth/shop/api", Some("shop")),
            ("berth", None),
            ("berth:1", None),
            ("berthx/app", None),
            ("localhost:5000/berth/app", None),
            ("example.com/berth/shop/app", None),
            ("postgres:16", None),
            ("library/berth", None),
            ("sha256:0123", None),
            ("", None),
        ] {
            assert_eq!(image_team(reference), team, "{reference}");
        }
        assert!(may_use_image("shop", "berth/shop/web-api"));
        assert!(!may_use_image("shop", "berth/web-api"));
        assert!(!may_use_image("default", "berth/shop/web-api"));
        assert!(may_use_image("default", "berth/web-api:r1"));
        assert!(may_use_image("shop", "postgres:16"));
        let tags = |t: &[&str]| t.iter().map(|s| (*s).to_string()).collect::<Vec<_>>();
        assert!(may_use_tagged("shop", &tags(&[])));
        assert!(may_use_tagged("shop", &tags(&["berth/shop/x:1"])));
        assert!(!may_use_tagged("shop", &tags(&["berth/x:1"])));
        assert!(!may_use_tagged(
            "shop",
            &tags(&["berth/ops/x:1", "berth/ops/x:r2"])
        ));
        assert!(may_use_tagged(
            "shop",
            &tags(&["berth/ops/x:1", "busybox:1"])
        ));
    }

    proptest::proptest! {
        #[test]
        fn global_names_are_injective(
            t1 in "[a-z0-9][a-z0-9-]{0,5}|default", n1 in "[a-z0-9][a-z0-9._-]{0,6}",
            t2 in "[a-z0-9][a-z0-9-]{0,5}|default", n2 in "[a-z0-9][a-z0-9._-]{0,6}",
        ) {
            proptest::prop_assume!((t1.as_str(), n1.as_str()) != (t2.as_str(), n2.as_str()));
            proptest::prop_assert_ne!(global_name(&t1, &n1), global_name(&t2, &n2));
            let g = global_name(&t1, &n1);
            proptest::prop_assert_eq!(split_global(&g), (t1.as_str(), n1.as_str()));
        }

        #[test]
        fn docker_parts_of_app_names_are_injective(
            t1 in "[a-z0-9][a-z0-9-]{0,5}|default", n1 in "[a-z0-9][a-z0-9-]{0,6}",
            t2 in "[a-z0-9][a-z0-9-]{0,5}|default", n2 in "[a-z0-9][a-z0-9-]{0,6}",
        ) {
            proptest::prop_assume!((t1.as_str(), n1.as_str()) != (t2.as_str(), n2.as_str()));
            proptest::prop_assert_ne!(
                docker_part(&global_name(&t1, &n1)).into_owned(),
                docker_part(&global_name(&t2, &n2)).into_owned()
            );
        }

        #[test]
        fn app_names_with_environments_are_injective_and_split_back(
            t1 in "[a-z0-9][a-z0-9-]{0,5}|default", e1 in "[a-z0-9][a-z0-9-]{0,5}|dev", n1 in "[a-z0-9][a-z0-9-]{0,6}",
            t2 in "[a-z0-9][a-z0-9-]{0,5}|default", e2 in "[a-z0-9][a-z0-9-]{0,5}|dev", n2 in "[a-z0-9][a-z0-9-]{0,6}",
        ) {
            let (a, b) = ((t1.as_str(), e1.as_str(), n1.as_str()), (t2.as_str(), e2.as_str(), n2.as_str()));
            let g = app_global(&t1, &e1, &n1);
            proptest::prop_assert_eq!(split_app(&g), a);
            proptest::prop_assume!(a != b);
            let h = app_global(&t2, &e2, &n2);
            proptest::prop_assert_ne!(&g, &h);
            proptest::prop_assert_ne!(docker_part(&g).into_owned(), docker_part(&h).into_owned());
        }
    }

    #[test]
    fn dev_keeps_todays_names_and_other_environments_carry_theirs() {
        assert_eq!(app_global("default", "dev", "web"), "web");
        assert_eq!(app_global("shop", "dev", "web"), "shop/web");
        assert_eq!(app_global("default", "staging", "web"), "web@staging");
        assert_eq!(app_global("shop", "staging", "web"), "shop/web@staging");
        assert_eq!(docker_part("shop/web@staging"), "shop.web..staging");
        assert_eq!(docker_part("web@staging"), "web..staging");
        assert_eq!(split_app("web"), ("default", "dev", "web"));
        assert!(valid_env_name("pr-42") && !valid_env_name("a.b") && !valid_env_name("a@b"));
        assert!(valid_env_name(&"e".repeat(MAX_ENV_NAME)));
        assert!(!valid_env_name(&"e".repeat(MAX_ENV_NAME + 1)));
    }
}
