//! One build, promoted (docs/environments.md#one-build-promoted): `berth release APP --from E1
//! --to E2` and `berth env create E --from E1`.
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
use berth_store::EnvRecord;

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
