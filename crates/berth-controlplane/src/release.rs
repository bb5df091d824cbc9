//! One build, promoted (docs/environments.md#one-build-promoted): `berth release APP --from E1
//! --to E2`, `berth env create E --from E1`, and `berth deploy --app APP SERVICE:VERSION` (a
//! built version into the services of an application that run its image).
//!
//! Rules it keeps:
//! - The source's current revision — its Compose project and pinned image IDs — becomes a new
//!   revision of the target as it is: no rebuild, no tag lookup, no image inspected again.
//! - It goes through the target's `commit` like any revision: admission, protection (a
//!   protected target takes reviewed versions only), market installs, quota and port leases,
//!   then the target's own zero-failure rollout.
//! - Host ports are leased again in the target's environment ([`crate::ports::relocate`]); a
//!   port the target application holds already for the same service and container port stays.

use crate::error::CpError;
use crate::spec::RevisionSpec;
use crate::{ports, ControlPlane, RevisionCreated};
use berth_core::team;
use berth_store::{EnvRecord, VersionRecord};

/// Point every Compose service of `spec` that runs an image of `version`'s repository (any tag)
/// at `version`: its tag, and its image ID pinned. Returns the repository and the services
/// switched.
pub(crate) fn switch_to_version(
    spec: &mut RevisionSpec,
    version: &VersionRecord,
) -> (String, Vec<String>) {
    let repo = version
        .tag
        .rsplit_once(':')
        .map_or(version.tag.as_str(), |(r, _)| r)
        .to_string();
    let mut switched = Vec::new();
    for (name, svc) in &mut spec.project.services {
        let image = svc.image.split('@').next().unwrap_or_default();
        let image_repo = image.rsplit_once(':').map_or(image, |(r, _)| r);
        if image_repo == repo {
            svc.image.clone_from(&version.tag);
            spec.images.insert(name.clone(), version.digest.clone());
            switched.push(name.clone());
        }
    }
    (repo, switched)
}

impl ControlPlane {
    /// Make `app`'s current revision in `team`'s environment `from` a new revision of `app` in
    /// `to` (created there if it does not exist), recorded as `source: release`.
    pub fn release(
        &self,
        team_name: &str,
        app: &str,
        from: &str,
        to: &str,
    ) -> Result<RevisionCreated, CpError> {
        if from == to {
            return Err(CpError::InvalidArgument(format!(
                "--from and --to name the same environment {from:?}"
            )));
        }
        let src = team::app_global(team_name, from, app);
        let dst = team::app_global(team_name, to, app);
        Self::check_app_name(&src)?;
        Self::check_app_name(&dst)?;
        self.check_env_of(&src)?;
        self.check_env_of(&dst)?;
        let (rev, spec) = self.current_spec(&src).map_err(|e| match e {
            CpError::AppNotFound(_) => {
                CpError::AppNotFound(format!("{app} (in environment {from})"))
            }
            other => other,
        })?;
        self.promote(
            &dst,
            spec,
            "release",
            &format!("release from {from} r{rev}"),
        )
    }

    /// `berth deploy --app APP SERVICE:VERSION`: `app`'s next revision is its current one with
    /// every Compose service that runs an image of the built `service` switched to `version`,
    /// by image ID — no build, no tag looked up. The image must still be on the engine.
    pub async fn deploy_version(
        &self,
        app: &str,
        service: &str,
        version: &str,
    ) -> Result<RevisionCreated, CpError> {
        Self::check_app_name(app)?;
        let (_, mut spec) = self.current_spec(app)?;
        let v = self
            .inner
            .store
            .get_version(service, version)?
            .ok_or_else(|| CpError::VersionNotFound(service.into(), version.into()))?;
        let (repo, switched) = switch_to_version(&mut spec, &v);
        if switched.is_empty() {
            return Err(CpError::InvalidArgument(format!(
                "application {:?} runs no image of {repo} (apply a Compose file whose service names one first)",
                team::split_app(app).2
            )));
        }
        // Held until the revision pinning the image is committed: retention cannot remove it
        // in between.
        let _gate = self.inner.image_gate.lock().await;
        if self.inner.docker.inspect_image(&v.digest).await?.is_none() {
            return Err(CpError::ImageMissing(vec![v.tag.clone()]));
        }
        self.validate(app, &spec)?;
        if let Ok((cur, cur_spec)) = self.current_spec(app) {
            if serde_json::to_value(&cur_spec).ok() == serde_json::to_value(&spec).ok() {
                return Ok(RevisionCreated {
                    app: app.into(),
                    revision: cur,
                    changed: false,
                    change: "no change".into(),
                    notes: Vec::new(),
                });
            }
        }
        self.commit(
            app,
            "deploy",
            &format!("deploy {repo}:{version} ({})", switched.join(", ")),
            &spec,
        )
    }

    /// The applications (global names) whose current revision runs an image of the built
    /// `service` (by the repository of its newest version's tag).
    pub fn apps_running(&self, service: &str) -> Result<Vec<String>, CpError> {
        let Some(newest) = self.inner.store.list_versions(service)?.into_iter().next() else {
            return Ok(Vec::new());
        };
        Ok(self
            .current_specs()?
            .into_iter()
            .filter_map(|(app, mut spec)| {
                (!switch_to_version(&mut spec, &newest).1.is_empty()).then_some(app)
            })
            .collect())
    }

    /// Commit `spec` (another application's revision) as a revision of `dst`.
    pub(crate) fn promote(
        &self,
        dst: &str,
        mut spec: RevisionSpec,
        source: &str,
        change: &str,
    ) -> Result<RevisionCreated, CpError> {
        ports::relocate(&mut spec);
        self.fill_known_leases(dst, &mut spec)?;
        self.validate(dst, &spec)?;
        if let Ok((cur, cur_spec)) = self.current_spec(dst) {
            let same = serde_json::to_value(&cur_spec).ok() == serde_json::to_value(&spec).ok();
            if same {
                self.inner.wake(dst);
                return Ok(RevisionCreated {
                    app: dst.into(),
                    revision: cur,
                    changed: false,
                    change: format!("{change}: no change"),
                    notes: Vec::new(),
                });
            }
        }
        self.commit(dst, source, change, &spec)
    }

    /// Clone `apps` (global names in environment `from` of `e`'s team) into the new environment
    /// `e`, each at its current revision. Returns their names.
    pub(crate) fn clone_into(
        &self,
        e: &EnvRecord,
        from: Option<&str>,
        apps: &[String],
    ) -> Result<Vec<String>, CpError> {
        let Some(from) = from else {
            return Ok(Vec::new());
        };
        let mut done = Vec::new();
        for src in apps {
            let (_, _, name) = team::split_app(src);
            let Ok((rev, spec)) = self.current_spec(src) else {
                continue; // removed meanwhile
            };
            let dst = team::app_global(&e.team, &e.name, name);
            self.promote(
                &dst,
                spec,
                "clone",
                &format!("clone of {name} in {from} r{rev}"),
            )?;
            done.push(name.to_string());
        }
        Ok(done)
    }
}
