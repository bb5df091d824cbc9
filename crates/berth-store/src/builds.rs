//! Services built from source, their builds, versions and build-time secrets.

use crate::{now, Store, StoreError};
use berth_core::source::ServiceSource;
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A service registered from source (`berth service create`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServiceRecord {
    pub name: String,
    /// Where its code comes from (stored as JSON in `services.source`).
    pub source: ServiceSource,
    pub created_at: String,
}

/// Where a build is (the `builds.status` column, stored as its name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuildState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl BuildState {
    /// The stored (and shown) name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            Self::Queued,
            Self::Running,
            Self::Succeeded,
            Self::Failed,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|b| b.as_str() == s)
    }
}

impl std::fmt::Display for BuildState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl rusqlite::types::ToSql for BuildState {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

impl rusqlite::types::FromSql for BuildState {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let s = v.as_str()?;
        Self::parse(s).ok_or_else(|| {
            rusqlite::types::FromSqlError::Other(format!("unknown build status {s:?}").into())
        })
    }
}

/// One build.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BuildRecord {
    pub id: u64,
    pub service: String,
    pub git_ref: Option<String>,
    pub status: BuildState,
    pub reason: String,
    pub version: Option<String>,
    pub created_at: String,
    pub finished_at: Option<String>,
}

/// A version: what a successful build produced.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VersionRecord {
    pub service: String,
    pub name: String,
    /// Image ID (`sha256:...`).
    pub digest: String,
    /// `berth/<service>:<version>`.
    pub tag: String,
    pub commit: String,
    pub author: String,
    pub commit_time: Option<String>,
    pub build_id: u64,
    pub created_at: String,
    /// The build's steps as JSON (`[StepEvidence]`), evidence for the version's review.
    #[serde(default)]
    pub steps: Option<String>,
    /// The contract (OpenAPI, as JSON text) the pipeline named.
    #[serde(default)]
    pub contract: Option<String>,
    /// The repository's README (its start), for the market.
    #[serde(default)]
    pub readme: Option<String>,
}

/// Where a version's image is, as Berth last left it (migration 6).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct ImageState {
    /// False once retention removed the image (the version record stays).
    pub removed: bool,
    /// When `berth image archive` last exported it.
    pub archived_at: Option<String>,
    /// When `berth image restore` last brought it back.
    pub restored_at: Option<String>,
}

const VERSION_COLS: &str =
    "service, name, digest, tag, git_commit, author, commit_time, build_id, created_at, steps, contract, readme";

fn version_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<VersionRecord> {
    Ok(VersionRecord {
        service: r.get(0)?,
        name: r.get(1)?,
        digest: r.get(2)?,
        tag: r.get(3)?,
        commit: r.get(4)?,
        author: r.get(5)?,
        commit_time: r.get(6)?,
        build_id: r.get(7)?,
        created_at: r.get(8)?,
        steps: r.get(9)?,
        contract: r.get(10)?,
        readme: r.get(11)?,
    })
}

fn build_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<BuildRecord> {
    Ok(BuildRecord {
        id: r.get(0)?,
        service: r.get(1)?,
        git_ref: r.get(2)?,
        status: r.get(3)?,
        reason: r.get(4)?,
        version: r.get(5)?,
        created_at: r.get(6)?,
        finished_at: r.get(7)?,
    })
}

/// A `services` row as SQLite holds it; [`ServiceRow::decode`] is the one place its `source`
/// JSON becomes a [`ServiceSource`].
struct ServiceRow {
    name: String,
    source: String,
    created_at: String,
}

impl ServiceRow {
    fn decode(self) -> Result<ServiceRecord, StoreError> {
        Ok(ServiceRecord {
            name: self.name,
            source: serde_json::from_str(&self.source)?,
            created_at: self.created_at,
        })
    }
}

fn service_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ServiceRow> {
    Ok(ServiceRow {
        name: r.get(0)?,
        source: r.get(1)?,
        created_at: r.get(2)?,
    })
}

const BUILD_COLS: &str = "id, service, git_ref, status, reason, version, created_at, finished_at";

impl Store {
    /// Register a service; false if the name is taken.
    pub fn create_service(&self, name: &str, source: &ServiceSource) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        crate::teams::require_team_of(&tx, name)?;
        let n = tx.execute(
            "INSERT INTO services(name, source, created_at) VALUES (?1, ?2, ?3) ON CONFLICT(name) DO NOTHING",
            params![name, serde_json::to_string(source)?, now()],
        )?;
        tx.commit()?;
        Ok(n > 0)
    }

    /// One service.
    pub fn get_service(&self, name: &str) -> Result<Option<ServiceRecord>, StoreError> {
        self.conn()
            .query_row(
                "SELECT name, source, created_at FROM services WHERE name = ?1",
                params![name],
                service_row,
            )
            .optional()?
            .map(ServiceRow::decode)
            .transpose()
    }

    /// Every service.
    pub fn list_services(&self) -> Result<Vec<ServiceRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT name, source, created_at FROM services ORDER BY name")?;
        let rows: Vec<ServiceRow> = stmt.query_map([], service_row)?.collect::<Result<_, _>>()?;
        rows.into_iter().map(ServiceRow::decode).collect()
    }

    /// Record a queued build; returns its id.
    pub fn create_build(&self, service: &str, git_ref: Option<&str>) -> Result<u64, StoreError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO builds(service, git_ref, status, created_at) VALUES (?1, ?2, 'queued', ?3)",
            params![service, git_ref, now()],
        )?;
        Ok(u64::try_from(conn.last_insert_rowid()).unwrap_or(0))
    }

    /// Move a build to `running`.
    pub fn start_build(&self, id: u64) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE builds SET status = 'running' WHERE id = ?1",
            params![id],
        )?;
        Ok(())
    }

    /// Record a build's end (and, on success, its version) in one transaction. False: the build
    /// made a different image for a version that is submitted or reviewed, which keeps its
    /// image; the build is recorded as failed, saying so.
    pub fn finish_build(
        &self,
        id: u64,
        status: BuildState,
        reason: &str,
        log: &str,
        version: Option<&VersionRecord>,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut kept = None;
        // A service removed while its build ran gets no version (the build row is gone too).
        let version = match version {
            Some(v) => tx
                .query_row(
                    "SELECT 1 FROM services WHERE name = ?1",
                    params![v.service],
                    |_| Ok(()),
                )
                .optional()?
                .map(|()| v),
            None => None,
        };
        if let Some(v) = version {
            let existing: Option<(String, String)> = tx
                .query_row(
                    "SELECT state, digest FROM versions WHERE service = ?1 AND name = ?2",
                    params![v.service, v.name],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            match existing {
                // A version under review or reviewed keeps its image: what was approved is what
                // runs. The build fails instead (a new commit makes a new version).
                Some((state, digest))
                    if digest != v.digest && state != "built" && state != "rejected" =>
                {
                    kept = Some(state);
                }
                // The same image again, of a version nobody reviewed yet (or rejected): new
                // evidence, the same state.
                Some((state, digest))
                    if digest == v.digest && (state == "built" || state == "rejected") =>
                {
                    tx.execute(
                        "UPDATE versions SET tag = ?3, git_commit = ?4, author = ?5, commit_time = ?6,
                           build_id = ?7, image_state = 'present', steps = ?8, contract = ?9, readme = ?10
                         WHERE service = ?1 AND name = ?2",
                        params![v.service, v.name, v.tag, v.commit, v.author, v.commit_time, id, v.steps, v.contract, v.readme],
                    )?;
                }
                // The same image of a version under review or reviewed: the evidence the
                // reviewer read stays; only where the image is is brought up to date.
                Some((_, digest)) if digest == v.digest => {
                    tx.execute(
                        "UPDATE versions SET tag = ?3, image_state = 'present'
                         WHERE service = ?1 AND name = ?2",
                        params![v.service, v.name, v.tag],
                    )?;
                }
                _ => {
                    tx.execute(
                        "INSERT INTO versions(service, name, digest, tag, git_commit, author, commit_time, build_id,
                           created_at, steps, contract, readme)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                         ON CONFLICT(service, name) DO UPDATE SET digest = ?3, tag = ?4, git_commit = ?5,
                           author = ?6, commit_time = ?7, build_id = ?8, created_at = ?9, image_state = 'present',
                           steps = ?10, contract = ?11, readme = ?12, state = 'built', submitted_by = NULL,
                           submit_note = NULL, reviewed_by = NULL, review_reason = NULL,
                           state_changed_at = NULL, published_at = NULL",
                        params![v.service, v.name, v.digest, v.tag, v.commit, v.author, v.commit_time, id, now(),
                                v.steps, v.contract, v.readme],
                    )?;
                }
            }
        }
        let (status, reason, version_name) = match (&kept, version) {
            (Some(state), Some(v)) => (
                BuildState::Failed,
                format!(
                    "version {} is {state}: its image is not replaced by a different one (commit a change to make a new version)",
                    v.name
                ),
                None,
            ),
            _ => (status, reason.to_string(), version.map(|v| v.name.clone())),
        };
        tx.execute(
            "UPDATE builds SET status = ?2, reason = ?3, log = ?4, finished_at = ?5, version = ?6 WHERE id = ?1",
            params![id, status, reason, log, now(), version_name],
        )?;
        tx.commit()?;
        Ok(kept.is_none())
    }

    /// Builds left `queued` or `running` by a previous server process are failed (their
    /// containers are gone with it); returns how many.
    pub fn fail_interrupted_builds(&self) -> Result<usize, StoreError> {
        Ok(self.conn().execute(
            "UPDATE builds SET status = 'failed', reason = 'interrupted: the server stopped', finished_at = ?1
             WHERE status IN ('queued', 'running')",
            params![now()],
        )?)
    }

    /// One build.
    pub fn get_build(&self, id: u64) -> Result<Option<BuildRecord>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {BUILD_COLS} FROM builds WHERE id = ?1"),
                params![id],
                build_row,
            )
            .optional()?)
    }

    /// A finished build's stored log.
    pub fn build_log(&self, id: u64) -> Result<String, StoreError> {
        Ok(self
            .conn()
            .query_row("SELECT log FROM builds WHERE id = ?1", params![id], |r| {
                r.get(0)
            })
            .optional()?
            .unwrap_or_default())
    }

    /// Builds, newest first, optionally of one service.
    pub fn list_builds(&self, service: Option<&str>) -> Result<Vec<BuildRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {BUILD_COLS} FROM builds WHERE (?1 IS NULL OR service = ?1) ORDER BY id DESC LIMIT 500"
        ))?;
        let rows = stmt.query_map(params![service], build_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Versions of a service, newest first.
    pub fn list_versions(&self, service: &str) -> Result<Vec<VersionRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            &format!("SELECT {VERSION_COLS} FROM versions WHERE service = ?1 ORDER BY created_at DESC, build_id DESC"),
        )?;
        let rows = stmt.query_map(params![service], version_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One version.
    pub fn get_version(
        &self,
        service: &str,
        name: &str,
    ) -> Result<Option<VersionRecord>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {VERSION_COLS} FROM versions WHERE service = ?1 AND name = ?2"),
                params![service, name],
                version_row,
            )
            .optional()?)
    }

    /// Image state of every version of a service, by version name.
    pub fn image_states(&self, service: &str) -> Result<BTreeMap<String, ImageState>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT name, image_state, archived_at, restored_at FROM versions WHERE service = ?1",
        )?;
        let rows = stmt.query_map(params![service], |r| {
            let state: String = r.get(1)?;
            Ok((
                r.get::<_, String>(0)?,
                ImageState {
                    removed: state == "removed",
                    archived_at: r.get(2)?,
                    restored_at: r.get(3)?,
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Record that retention removed a version's image; false if there is no such version.
    pub fn set_image_removed(&self, service: &str, version: &str) -> Result<bool, StoreError> {
        Ok(self.conn().execute(
            "UPDATE versions SET image_state = 'removed' WHERE service = ?1 AND name = ?2",
            params![service, version],
        )? > 0)
    }

    /// Record that a version's image is on the engine again (`berth image restore`).
    pub fn set_image_restored(&self, service: &str, version: &str) -> Result<bool, StoreError> {
        Ok(self.conn().execute(
            "UPDATE versions SET image_state = 'present', restored_at = ?3 WHERE service = ?1 AND name = ?2",
            params![service, version, now()],
        )? > 0)
    }

    /// Record that a version's image was exported (`berth image archive`).
    pub fn set_image_archived(&self, service: &str, version: &str) -> Result<bool, StoreError> {
        Ok(self.conn().execute(
            "UPDATE versions SET archived_at = ?3 WHERE service = ?1 AND name = ?2",
            params![service, version, now()],
        )? > 0)
    }

    /// Set the secret that signs a service's push webhooks.
    pub fn set_webhook_secret(&self, service: &str, secret: &str) -> Result<bool, StoreError> {
        Ok(self.conn().execute(
            "UPDATE services SET webhook_secret = ?2 WHERE name = ?1",
            params![service, secret],
        )? > 0)
    }

    /// The secret that signs a service's push webhooks, if set.
    pub fn webhook_secret(&self, service: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT webhook_secret FROM services WHERE name = ?1",
                params![service],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }

    /// Set a build-time secret of a service.
    pub fn set_build_secret(
        &self,
        service: &str,
        name: &str,
        value: &str,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO build_secrets(service, name, value) VALUES (?1, ?2, ?3)
             ON CONFLICT(service, name) DO UPDATE SET value = ?3",
            params![service, name, value],
        )?;
        Ok(())
    }

    /// A service's build-time secrets.
    pub fn build_secrets(&self, service: &str) -> Result<BTreeMap<String, String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT name, value FROM build_secrets WHERE service = ?1")?;
        let rows = stmt.query_map(params![service], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// What [`Store::remove_service`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceRemoval {
    /// The service, its builds, versions, build secrets and webhook secret are gone; these
    /// were its versions.
    Removed(Vec<VersionRecord>),
    /// Nothing was removed: these versions (name, state) are published or deprecated, so
    /// other teams may rely on them.
    Held(Vec<(String, String)>),
    /// No such service.
    NotFound,
}

impl Store {
    /// Remove a service with everything recorded about it (builds and their logs, versions,
    /// build secrets, the webhook secret, which lives in its row, its market binding), in one
    /// transaction that
    /// first checks that no version of it is published or deprecated. Images are the caller's
    /// business.
    pub fn remove_service(&self, name: &str) -> Result<ServiceRemoval, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let exists = tx
            .query_row(
                "SELECT 1 FROM services WHERE name = ?1",
                params![name],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if !exists {
            return Ok(ServiceRemoval::NotFound);
        }
        let held: Vec<(String, String)> = {
            let mut stmt = tx.prepare(
                "SELECT name, state FROM versions WHERE service = ?1
                   AND state IN ('published', 'deprecated') ORDER BY name",
            )?;
            let rows = stmt.query_map(params![name], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        if !held.is_empty() {
            return Ok(ServiceRemoval::Held(held));
        }
        let versions: Vec<VersionRecord> = {
            let mut stmt = tx.prepare(&format!(
                "SELECT {VERSION_COLS} FROM versions WHERE service = ?1 ORDER BY created_at, build_id"
            ))?;
            let rows = stmt.query_map(params![name], version_row)?;
            rows.collect::<Result<_, _>>()?
        };
        for table in ["versions", "builds", "build_secrets", "market_bindings"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE service = ?1"),
                params![name],
            )?;
        }
        tx.execute("DELETE FROM services WHERE name = ?1", params![name])?;
        tx.commit()?;
        Ok(ServiceRemoval::Removed(versions))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::source::{GitRepo, SvnRepo};

    fn git(url: &str) -> ServiceSource {
        ServiceSource::Git(GitRepo {
            branch: None,
            url: url.into(),
            path: None,
            poll_secs: None,
            preview_app: None,
            preview_ttl_secs: None,
        })
    }

    #[test]
    fn build_lifecycle() {
        let s = Store::open_in_memory().unwrap();
        assert!(s.create_service("api", &git("/x")).unwrap());
        assert!(!s.create_service("api", &git("/y")).unwrap());
        assert_eq!(s.get_service("api").unwrap().unwrap().source, git("/x"));
        let id = s.create_build("api", Some("main")).unwrap();
        s.start_build(id).unwrap();
        let v = VersionRecord {
            service: "api".into(),
            name: "v1".into(),
            digest: "sha256:ab".into(),
            tag: "berth/api:v1".into(),
            commit: "c0ffee".into(),
            author: "A".into(),
            commit_time: None,
            build_id: id,
            created_at: String::new(),
            steps: None,
            contract: None,
            readme: None,
        };
        s.finish_build(id, BuildState::Succeeded, "", "log text", Some(&v))
            .unwrap();
        assert_eq!(
            s.get_build(id).unwrap().unwrap().version.as_deref(),
            Some("v1")
        );
        assert_eq!(s.build_log(id).unwrap(), "log text");
        // Stored by name, as before the status was typed; a name Berth never wrote is an error.
        let raw: String = s
            .conn()
            .query_row(
                "SELECT status FROM builds WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(raw, "succeeded");
        assert_eq!(s.list_versions("api").unwrap()[0].digest, "sha256:ab");
        let id2 = s.create_build("api", None).unwrap();
        assert_eq!(s.fail_interrupted_builds().unwrap(), 1);
        assert_eq!(
            s.get_build(id2).unwrap().unwrap().status,
            BuildState::Failed
        );
        s.set_build_secret("api", "TOKEN", "t").unwrap();
        // Image state: removed by retention, archived, restored; a rebuild makes it present.
        assert_eq!(s.image_states("api").unwrap()["v1"], ImageState::default());
        assert!(s.set_image_archived("api", "v1").unwrap());
        assert!(s.set_image_removed("api", "v1").unwrap());
        assert!(!s.set_image_removed("api", "nope").unwrap());
        let st = &s.image_states("api").unwrap()["v1"];
        assert!(st.removed && st.archived_at.is_some() && st.restored_at.is_none());
        assert!(s.set_image_restored("api", "v1").unwrap());
        let st = &s.image_states("api").unwrap()["v1"];
        assert!(!st.removed && st.restored_at.is_some());
        s.set_image_removed("api", "v1").unwrap();
        let id3 = s.create_build("api", None).unwrap();
        s.finish_build(id3, BuildState::Succeeded, "", "", Some(&v))
            .unwrap();
        assert!(!s.image_states("api").unwrap()["v1"].removed);
        assert_eq!(s.build_secrets("api").unwrap()["TOKEN"], "t");
        s.conn()
            .execute(
                "UPDATE builds SET status = 'paused' WHERE id = ?1",
                params![id],
            )
            .unwrap();
        assert!(matches!(s.get_build(id), Err(StoreError::Sqlite(_))));
    }

    #[test]
    fn a_service_is_removed_with_its_records_unless_a_version_is_published() {
        let s = Store::open_in_memory().unwrap();
        for svc in ["api", "other"] {
            assert!(s.create_service(svc, &git("/x")).unwrap());
            s.set_build_secret(svc, "TOKEN", "t").unwrap();
            s.set_webhook_secret(svc, "hook-secret-0123456789").unwrap();
            for name in ["v1", "v2"] {
                let id = s.create_build(svc, None).unwrap();
                let v = VersionRecord {
                    service: svc.into(),
                    name: name.into(),
                    digest: format!("sha256:{svc}{name}"),
                    tag: format!("berth/{svc}:{name}"),
                    commit: "c".into(),
                    author: "A".into(),
                    commit_time: None,
                    build_id: id,
                    created_at: String::new(),
                    steps: None,
                    contract: None,
                    readme: None,
                };
                s.finish_build(id, BuildState::Succeeded, "", "", Some(&v))
                    .unwrap();
            }
        }
        s.conn()
            .execute(
                "UPDATE versions SET state = 'published' WHERE service = 'api' AND name = 'v2'",
                [],
            )
            .unwrap();
        s.bind_market("api", "front", "web", "v2", "ada").unwrap();
        assert_eq!(
            s.remove_service("api").unwrap(),
            ServiceRemoval::Held(vec![("v2".into(), "published".into())])
        );
        assert!(
            s.get_service("api").unwrap().is_some(),
            "a held service stays"
        );
        assert_eq!(s.list_versions("api").unwrap().len(), 2);
        s.conn()
            .execute(
                "UPDATE versions SET state = 'retired' WHERE service = 'api'",
                [],
            )
            .unwrap();
        let ServiceRemoval::Removed(versions) = s.remove_service("api").unwrap() else {
            panic!("not removed");
        };
        assert_eq!(
            versions.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(),
            ["v1", "v2"]
        );
        assert!(s.get_service("api").unwrap().is_none());
        assert!(s.list_versions("api").unwrap().is_empty());
        assert!(s.list_builds(Some("api")).unwrap().is_empty());
        assert!(s.build_secrets("api").unwrap().is_empty());
        assert_eq!(s.webhook_secret("api").unwrap(), None);
        assert!(s.market_binding("api").unwrap().is_none());
        assert_eq!(s.remove_service("api").unwrap(), ServiceRemoval::NotFound);
        // The other service is untouched.
        assert_eq!(s.list_versions("other").unwrap().len(), 2);
        assert_eq!(s.list_builds(Some("other")).unwrap().len(), 2);
        assert_eq!(s.build_secrets("other").unwrap().len(), 1);
        // A build that ends after its service was removed records no version.
        let id = s.create_build("other", None).unwrap();
        s.conn()
            .execute("DELETE FROM services WHERE name = 'other'", [])
            .unwrap();
        let late = VersionRecord {
            service: "other".into(),
            name: "v3".into(),
            digest: "sha256:late".into(),
            tag: "berth/other:v3".into(),
            commit: "c".into(),
            author: "A".into(),
            commit_time: None,
            build_id: id,
            created_at: String::new(),
            steps: None,
            contract: None,
            readme: None,
        };
        s.finish_build(id, BuildState::Succeeded, "", "", Some(&late))
            .unwrap();
        assert!(s.get_version("other", "v3").unwrap().is_none());
    }

    /// Rows as the control plane wrote them before sources were typed (`serde_json::json!`),
    /// including one from before `--poll` existed, read as typed sources; a source written
    /// now is stored as the same text.
    #[test]
    fn service_rows_written_in_todays_format_read_as_typed_sources() {
        let dir = tempfile::tempdir().unwrap();
        let rows = [
            (
                "api",
                r#"{"branch":"main","git":"https://git.example/api.git","path":"svc","poll_secs":60}"#,
            ),
            ("old", r#"{"branch":null,"git":"/srv/old","path":null}"#),
            ("site", r#"{"svn":"svn://svn.example/site/trunk"}"#),
        ];
        {
            let s = Store::open(dir.path()).unwrap();
            for (name, source) in rows {
                s.conn()
                    .execute(
                        "INSERT INTO services(name, source, created_at) VALUES (?1, ?2, '2026-01-01T00:00:00Z')",
                        params![name, source],
                    )
                    .unwrap();
            }
        }
        let s = Store::open(dir.path()).unwrap();
        let api = ServiceSource::Git(GitRepo {
            branch: Some("main".into()),
            url: "https://git.example/api.git".into(),
            path: Some("svc".into()),
            poll_secs: Some(60),
            preview_app: None,
            preview_ttl_secs: None,
        });
        let site = ServiceSource::Svn(SvnRepo {
            url: "svn://svn.example/site/trunk".into(),
            poll_secs: None,
        });
        assert_eq!(s.get_service("api").unwrap().unwrap().source, api);
        assert_eq!(
            s.list_services()
                .unwrap()
                .into_iter()
                .map(|r| (r.name, r.source))
                .collect::<Vec<_>>(),
            vec![
                ("api".into(), api.clone()),
                ("old".into(), git("/srv/old")),
                ("site".into(), site.clone()),
            ]
        );
        s.create_service("api2", &api).unwrap();
        s.create_service("site2", &site).unwrap();
        let stored = |name: &str| -> String {
            s.conn()
                .query_row(
                    "SELECT source FROM services WHERE name = ?1",
                    params![name],
                    |r| r.get(0),
                )
                .unwrap()
        };
        assert_eq!(stored("api2"), rows[0].1);
        assert_eq!(stored("site2"), rows[2].1);
        // A row no source shape fits is an error, not a service without a source.
        s.conn()
            .execute(
                "INSERT INTO services(name, source, created_at) VALUES ('bad', '{}', '')",
                [],
            )
            .unwrap();
        assert!(matches!(s.get_service("bad"), Err(StoreError::Decode(_))));
    }
}
