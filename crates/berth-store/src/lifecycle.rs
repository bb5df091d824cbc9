//! The version lifecycle's store (docs/lifecycle.md): each version's state, moved by
//! compare-and-set so two reviewers cannot both move it; and protected applications.
//! Which transitions exist is `berth_core::lifecycle`'s business, not this module's.

use crate::{now, Store, StoreError};
use berth_core::lifecycle::VersionState;
use rusqlite::{params, OptionalExtension};

/// A version's place in the lifecycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleRecord {
    pub service: String,
    pub version: String,
    pub state: VersionState,
    pub submitted_by: Option<String>,
    pub submit_note: Option<String>,
    pub reviewed_by: Option<String>,
    pub review_reason: Option<String>,
    pub state_changed_at: Option<String>,
    /// When it was published (none: never).
    pub published_at: Option<String>,
}

/// What a transition writes besides the state.
#[derive(Debug, Clone, Copy, Default)]
pub struct TransitionWrite<'a> {
    /// `submit`: the submitter and its note (clears the last review).
    pub submitted: Option<(&'a str, Option<&'a str>)>,
    /// `approve` / `reject`: the reviewer and the reason.
    pub reviewed: Option<(&'a str, &'a str)>,
}

const COLS: &str =
    "service, name, state, submitted_by, submit_note, reviewed_by, review_reason, state_changed_at,
     published_at";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LifecycleRecord> {
    let state: String = r.get(2)?;
    Ok(LifecycleRecord {
        service: r.get(0)?,
        version: r.get(1)?,
        state: state.parse().map_err(|e: String| {
            rusqlite::Error::FromSqlConversionFailure(
                2,
                rusqlite::types::Type::Text,
                Box::<dyn std::error::Error + Send + Sync>::from(e),
            )
        })?,
        submitted_by: r.get(3)?,
        submit_note: r.get(4)?,
        reviewed_by: r.get(5)?,
        review_reason: r.get(6)?,
        state_changed_at: r.get(7)?,
        published_at: r.get(8)?,
    })
}

impl Store {
    /// A version's lifecycle record.
    pub fn version_lifecycle(
        &self,
        service: &str,
        version: &str,
    ) -> Result<Option<LifecycleRecord>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {COLS} FROM versions WHERE service = ?1 AND name = ?2"),
                params![service, version],
                row,
            )
            .optional()?)
    }

    /// Every version's lifecycle record, of one service or (none) of all, newest first.
    pub fn lifecycles(&self, service: Option<&str>) -> Result<Vec<LifecycleRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLS} FROM versions WHERE (?1 IS NULL OR service = ?1)
             ORDER BY created_at DESC, build_id DESC"
        ))?;
        let rows = stmt.query_map(params![service], row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Versions in one state (e.g. `submitted`: what waits for review), oldest change first.
    pub fn versions_in_state(
        &self,
        state: VersionState,
    ) -> Result<Vec<LifecycleRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLS} FROM versions WHERE state = ?1 ORDER BY state_changed_at, service, name"
        ))?;
        let rows = stmt.query_map(params![state.as_str()], row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Move a version from `from` to `to` if it is still in `from`; false if it is not (another
    /// caller moved it first, or it does not exist). A review (`write.reviewed`) also needs the
    /// reviewer not to be the version's submitter at the moment of the write (four eyes).
    pub fn transition_version(
        &self,
        service: &str,
        version: &str,
        from: VersionState,
        to: VersionState,
        write: TransitionWrite<'_>,
    ) -> Result<bool, StoreError> {
        let conn = self.conn();
        // Publishing dates the version (the baseline of later reviews).
        let published = "published_at = CASE WHEN ?4 = 'published' THEN ?5 ELSE published_at END";
        let n = match (write.submitted, write.reviewed) {
            (Some((by, note)), _) => conn.execute(
                "UPDATE versions SET state = ?4, state_changed_at = ?5, submitted_by = ?6, submit_note = ?7,
                   reviewed_by = NULL, review_reason = NULL
                 WHERE service = ?1 AND name = ?2 AND state = ?3",
                params![service, version, from.as_str(), to.as_str(), now(), by, note],
            )?,
            // The four-eyes rule is part of the compare-and-set: a version resubmitted by the
            // reviewer between the caller's check and this write is not reviewed by them.
            (None, Some((by, reason))) => conn.execute(
                "UPDATE versions SET state = ?4, state_changed_at = ?5, reviewed_by = ?6, review_reason = ?7
                 WHERE service = ?1 AND name = ?2 AND state = ?3
                   AND (submitted_by IS NULL OR submitted_by != ?6)",
                params![service, version, from.as_str(), to.as_str(), now(), by, reason],
            )?,
            (None, None) => conn.execute(
                &format!(
                    "UPDATE versions SET state = ?4, state_changed_at = ?5, {published}
                     WHERE service = ?1 AND name = ?2 AND state = ?3"
                ),
                params![service, version, from.as_str(), to.as_str(), now()],
            )?,
        };
        Ok(n > 0)
    }

    /// The state of the version whose image is `digest`, per service that has one (an image
    /// may be two services' version only if built twice from the same tree).
    pub fn versions_by_digest(
        &self,
        digest: &str,
    ) -> Result<Vec<(String, String, VersionState)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT service, name, state FROM versions WHERE digest = ?1 ORDER BY service, name",
        )?;
        let rows = stmt.query_map(params![digest], |r| {
            let state: String = r.get(2)?;
            Ok((r.get(0)?, r.get(1)?, state))
        })?;
        let mut out = Vec::new();
        for r in rows {
            let (s, n, state) = r?;
            let state = state.parse().unwrap_or(VersionState::Built);
            out.push((s, n, state));
        }
        Ok(out)
    }

    /// Protect or unprotect an application; false if it does not exist.
    pub fn set_app_protected(&self, app: &str, protected: bool) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "UPDATE apps SET protected = ?2 WHERE name = ?1",
            params![app, protected],
        )?;
        Ok(n > 0)
    }

    /// Whether an application runs approved versions only (false if it does not exist).
    pub fn app_protected(&self, app: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT protected FROM apps WHERE name = ?1",
                params![app],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BuildState, VersionRecord};
    use berth_core::source::{GitRepo, ServiceSource};

    fn version(s: &Store, digest: &str) -> (u64, bool) {
        let id = s.create_build("api", None).unwrap();
        let v = VersionRecord {
            service: "api".into(),
            name: "v1".into(),
            digest: digest.into(),
            tag: "berth/api:v1".into(),
            commit: "c".into(),
            author: "a".into(),
            commit_time: None,
            build_id: id,
            created_at: String::new(),
            steps: Some("[]".into()),
            contract: None,
            readme: None,
        };
        let replaced = s
            .finish_build(id, BuildState::Succeeded, "", "", Some(&v))
            .unwrap();
        (id, replaced)
    }

    #[test]
    fn transitions_are_compare_and_set_and_a_reviewed_image_is_kept() {
        let s = Store::open_in_memory().unwrap();
        s.create_service(
            "api",
            &ServiceSource::Git(GitRepo {
                branch: None,
                url: "/x".into(),
                path: None,
                poll_secs: None,
                preview_app: None,
                preview_ttl_secs: None,
            }),
        )
        .unwrap();
        version(&s, "sha256:1");
        let l = s.version_lifecycle("api", "v1").unwrap().unwrap();
        assert_eq!(l.state, VersionState::Built);
        let sub = TransitionWrite {
            submitted: Some(("ann", Some("ready"))),
            reviewed: None,
        };
        assert!(s
            .transition_version(
                "api",
                "v1",
                VersionState::Built,
                VersionState::Submitted,
                sub
            )
            .unwrap());
        // The second of two racing callers finds it moved.
        assert!(!s
            .transition_version(
                "api",
                "v1",
                VersionState::Built,
                VersionState::Submitted,
                sub
            )
            .unwrap());
        assert_eq!(
            s.versions_in_state(VersionState::Submitted).unwrap().len(),
            1
        );
        // A rebuild that makes another image does not replace a submitted version's.
        let (id, replaced) = version(&s, "sha256:2");
        assert!(!replaced);
        let b = s.get_build(id).unwrap().unwrap();
        assert_eq!(b.status, BuildState::Failed);
        assert!(b.reason.contains("is submitted"), "{}", b.reason);
        assert_eq!(
            s.get_version("api", "v1").unwrap().unwrap().digest,
            "sha256:1"
        );
        // The same image again is fine and keeps the state.
        assert!(version(&s, "sha256:1").1);
        let l = s.version_lifecycle("api", "v1").unwrap().unwrap();
        assert_eq!(
            (l.state, l.submitted_by.as_deref()),
            (VersionState::Submitted, Some("ann"))
        );
        // Four eyes, in the compare-and-set itself: the submitter's review finds nothing to move.
        let own = TransitionWrite {
            submitted: None,
            reviewed: Some(("ann", "fine by me")),
        };
        assert!(!s
            .transition_version(
                "api",
                "v1",
                VersionState::Submitted,
                VersionState::Approved,
                own
            )
            .unwrap());
        assert_eq!(
            s.version_lifecycle("api", "v1").unwrap().unwrap().state,
            VersionState::Submitted
        );
        let rev = TransitionWrite {
            submitted: None,
            reviewed: Some(("bob", "no tests")),
        };
        assert!(s
            .transition_version(
                "api",
                "v1",
                VersionState::Submitted,
                VersionState::Rejected,
                rev
            )
            .unwrap());
        // Publishing dates a version; a later move (deprecate) keeps the date.
        s.create_service(
            "web",
            &ServiceSource::Git(GitRepo {
                branch: None,
                url: "/y".into(),
                path: None,
                poll_secs: None,
                preview_app: None,
                preview_ttl_secs: None,
            }),
        )
        .unwrap();
        s.conn()
            .execute(
                "INSERT INTO versions(service, name, digest, tag, git_commit, author, build_id,
                   created_at, state) VALUES ('web', 'w1', 'd', 't', 'c', 'a', 0, 'x', 'approved')",
                [],
            )
            .unwrap();
        let none = TransitionWrite::default();
        assert!(s
            .transition_version(
                "web",
                "w1",
                VersionState::Approved,
                VersionState::Published,
                none
            )
            .unwrap());
        let published = s
            .version_lifecycle("web", "w1")
            .unwrap()
            .unwrap()
            .published_at;
        assert!(published.is_some());
        s.conn()
            .execute(
                "UPDATE versions SET published_at = 'then' WHERE name = 'w1'",
                [],
            )
            .unwrap();
        assert!(s
            .transition_version(
                "web",
                "w1",
                VersionState::Published,
                VersionState::Deprecated,
                none
            )
            .unwrap());
        let l = s.version_lifecycle("web", "w1").unwrap().unwrap();
        assert_eq!(l.published_at.as_deref(), Some("then"));
        assert_ne!(l.state_changed_at.as_deref(), Some("then"));
        // A rejected version may be rebuilt into another image: it starts over.
        assert!(version(&s, "sha256:3").1);
        let l = s.version_lifecycle("api", "v1").unwrap().unwrap();
        assert_eq!((l.state, l.reviewed_by), (VersionState::Built, None));
        assert_eq!(
            s.versions_by_digest("sha256:3").unwrap(),
            [("api".to_string(), "v1".to_string(), VersionState::Built)]
        );
    }

    #[test]
    fn the_same_image_again_keeps_a_reviewed_versions_evidence() {
        let s = Store::open_in_memory().unwrap();
        s.create_service(
            "api",
            &ServiceSource::Git(GitRepo {
                branch: None,
                url: "/x".into(),
                path: None,
                poll_secs: None,
                preview_app: None,
                preview_ttl_secs: None,
            }),
        )
        .unwrap();
        let build = |steps: &str, tag: &str| {
            let id = s.create_build("api", None).unwrap();
            let v = VersionRecord {
                service: "api".into(),
                name: "v1".into(),
                digest: "sha256:1".into(),
                tag: tag.into(),
                commit: "c".into(),
                author: "a".into(),
                commit_time: None,
                build_id: id,
                created_at: String::new(),
                steps: Some(steps.into()),
                contract: Some(format!("contract {steps}")),
                readme: Some(format!("readme {steps}")),
            };
            assert!(s
                .finish_build(id, BuildState::Succeeded, "", "", Some(&v))
                .unwrap());
            id
        };
        let first = build("[1]", "berth/api:v1");
        // Built: a rebuild's evidence replaces the first's.
        let second = build("[2]", "berth/api:v1");
        let v = s.get_version("api", "v1").unwrap().unwrap();
        assert_eq!((v.steps.as_deref(), v.build_id), (Some("[2]"), second));
        assert_ne!(first, second);
        for (from, to, write) in [
            (
                VersionState::Built,
                VersionState::Submitted,
                TransitionWrite {
                    submitted: Some(("ann", None)),
                    reviewed: None,
                },
            ),
            (
                VersionState::Submitted,
                VersionState::Approved,
                TransitionWrite {
                    submitted: None,
                    reviewed: Some(("bob", "fine")),
                },
            ),
        ] {
            assert!(s.transition_version("api", "v1", from, to, write).unwrap());
            // Reviewed (or under review): the same image again keeps what the reviewer read.
            build("[evil]", "berth/api:v1b");
            let v = s.get_version("api", "v1").unwrap().unwrap();
            assert_eq!(
                (
                    v.steps.as_deref(),
                    v.contract.as_deref(),
                    v.readme.as_deref(),
                    v.build_id
                ),
                (
                    Some("[2]"),
                    Some("contract [2]"),
                    Some("readme [2]"),
                    second
                ),
                "{to}"
            );
            assert_eq!(v.tag, "berth/api:v1b");
            assert_eq!(s.version_lifecycle("api", "v1").unwrap().unwrap().state, to);
        }
    }
}
