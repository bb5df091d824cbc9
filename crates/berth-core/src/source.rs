//! Where a service built from source gets its code: the one definition of a service's source.
//!
//! The same value is what the store keeps (the `services.source` column, as JSON), what the
//! control plane builds from and what the API shows (`ServiceView.source`). Its JSON shapes are
//! stored in every data directory, so they never change; add optional fields only:
//! - Git: `{"branch": B|null, "git": URL, "path": P|null, "poll_secs": N|null}` (rows written
//!   before `--poll` lack `poll_secs`; a missing optional field reads as none);
//! - Subversion: `{"svn": URL}`, or `{"poll_secs": N, "svn": URL}` when polled (`poll_secs` is
//!   written only when set, so an unpolled source is the same text as before `--poll` reached
//!   Subversion).
//!
//! A row carrying both `git` and `svn` reads as Git (the control plane always built it so).

use serde::{Deserialize, Serialize};
use std::fmt;

/// A service's source repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum ServiceSource {
    Git(GitRepo),
    Svn(SvnRepo),
}

/// A Git repository, optionally a branch and a directory in it, optionally polled.
// Fields are declared in the order their keys are stored (alphabetical, as the untyped JSON this
// replaced wrote them), so a row written now is byte for byte what was written before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GitRepo {
    /// The branch a build takes when none is asked for (else the remote's `HEAD`); also the
    /// only branch whose pushes the webhook builds.
    #[serde(default)]
    pub branch: Option<String>,
    /// Git URL: a local path, `file://`, `http(s)://` or `ssh://`.
    #[serde(rename = "git")]
    pub url: String,
    /// Directory inside the repository holding the pipeline and the build context.
    #[serde(default)]
    pub path: Option<String>,
    /// Poll the repository every N seconds and build when its commit changed.
    #[serde(default)]
    pub poll_secs: Option<u64>,
    /// Preview environments (docs/environments.md#preview-environments): a push of another
    /// branch than `branch` builds it and deploys this application, with that version, into
    /// `preview-<branch>`; deleting the branch recycles it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_app: Option<String>,
    /// The preview environments' TTL in seconds (default 24 h), renewed by every push.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_ttl_secs: Option<u64>,
}

/// A Subversion repository, optionally polled.
// `poll_secs` comes first: keys are stored in alphabetical order (see `GitRepo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SvnRepo {
    /// Poll the URL every N seconds and build when its last-changed revision moved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_secs: Option<u64>,
    /// Subversion URL: `file://`, `http(s)://` or `svn://`.
    #[serde(rename = "svn")]
    pub url: String,
}

impl ServiceSource {
    /// The Git branch the service builds by default (none for Subversion).
    #[must_use]
    pub fn branch(&self) -> Option<&str> {
        match self {
            Self::Git(g) => g.branch.as_deref(),
            Self::Svn(_) => None,
        }
    }

    /// How often the repository is polled for changes, if it is.
    #[must_use]
    pub fn poll_secs(&self) -> Option<u64> {
        match self {
            Self::Git(g) => g.poll_secs,
            Self::Svn(s) => s.poll_secs,
        }
    }
}

/// The JSON form (what `berth service ls` prints).
impl fmt::Display for ServiceSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = serde_json::to_string(self).map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exactly what the control plane stored before this type existed
    /// (`serde_json::json!({"git": url, "branch": b, "path": p, "poll_secs": n})`, `{"svn": url}`).
    #[test]
    fn the_stored_shapes_read_and_write_unchanged() {
        for text in [
            r#"{"branch":null,"git":"/srv/repo","path":null,"poll_secs":null}"#,
            r#"{"branch":"main","git":"https://git.example/a.git","path":"svc/api","poll_secs":60}"#,
            r#"{"svn":"svn://svn.example/repo/trunk"}"#,
            r#"{"poll_secs":30,"svn":"svn://svn.example/repo/trunk"}"#,
        ] {
            let s: ServiceSource = serde_json::from_str(text).unwrap();
            assert_eq!(serde_json::to_string(&s).unwrap(), text);
            assert_eq!(s.to_string(), text);
        }
        let git: ServiceSource =
            serde_json::from_str(r#"{"branch":"main","git":"/r","path":null}"#).unwrap();
        assert_eq!(
            git,
            ServiceSource::Git(GitRepo {
                branch: Some("main".into()),
                url: "/r".into(),
                path: None,
                poll_secs: None,
                preview_app: None,
                preview_ttl_secs: None,
            })
        );
        assert_eq!(git.branch(), Some("main"));
        let svn: ServiceSource = serde_json::from_str(r#"{"svn":"svn://x"}"#).unwrap();
        assert_eq!(
            svn,
            ServiceSource::Svn(SvnRepo {
                url: "svn://x".into(),
                poll_secs: None,
            })
        );
        assert_eq!(svn.branch(), None);
        assert_eq!(svn.poll_secs(), None);
        let polled: ServiceSource =
            serde_json::from_str(r#"{"poll_secs":30,"svn":"svn://x"}"#).unwrap();
        assert_eq!(polled.poll_secs(), Some(30));
        assert_eq!(git.poll_secs(), None);
    }

    #[test]
    fn git_wins_over_svn_and_a_row_with_neither_is_refused() {
        let both: ServiceSource = serde_json::from_str(r#"{"git":"/r","svn":"svn://x"}"#).unwrap();
        assert!(matches!(both, ServiceSource::Git(g) if g.url == "/r"));
        assert!(serde_json::from_str::<ServiceSource>("{}").is_err());
        assert!(serde_json::from_str::<ServiceSource>(r#"{"git":5}"#).is_err());
    }
}
