//! Preview environments (docs/environments.md#preview-environments): `berth service create S
//! --git URL --branch main --preview-app APP`.
//!
//! Rules it keeps:
//! - A verified push of another branch than the service's builds that branch; when the build
//!   yields a version, APP's current revision in the team's `dev` — with every service that runs
//!   an image of S switched to the new version, by image ID — becomes a revision of APP in
//!   `preview-<branch>` (created with the preview TTL if missing; every push renews the TTL).
//!   It goes through `commit` like any revision (admission, quota, port leases).
//! - Deleting the branch removes its preview environment at once, as `berth env rm` does.
//! - A preview that cannot be deployed (APP missing, APP runs no image of S) is an event
//!   (`preview_failed`), never a panic; the build stays a good build.

use crate::envs::{ms_after, parse_ttl};
use crate::error::CpError;
use crate::events::Level;
use crate::ControlPlane;
use berth_core::api::ServiceRequest;
use berth_core::team::{self, DEV_ENV};
use berth_store::{EnvCreate, VersionRecord};
use std::time::Duration;

/// The preview environments' TTL when the service names none.
pub const DEFAULT_PREVIEW_TTL: Duration = Duration::from_secs(24 * 3600);

/// A build whose version goes to a preview environment.
#[derive(Debug, Clone)]
pub struct Preview {
    /// The pushed branch.
    pub branch: String,
    /// The application (team's name, in `dev`) it previews.
    pub app: String,
    pub ttl: Duration,
}

/// `preview-<branch>`: the branch lower-cased, every other character than a-z and 0-9 `-`,
/// cut to the 40 characters an environment name may have (and no `-` at the end).
#[must_use]
pub fn env_name(branch: &str) -> String {
    let slug: String = branch
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut name = format!("preview-{slug}");
    name.truncate(berth_core::team::MAX_ENV_NAME);
    let trimmed = name.trim_end_matches('-');
    if trimmed == "preview" {
        "preview".into()
    } else {
        trimmed.into()
    }
}

/// Check a service request's preview settings; the TTL in seconds.
pub(crate) fn check_request(req: &ServiceRequest) -> Result<Option<u64>, CpError> {
    if req.preview_app.is_none() {
        if req.preview_ttl.is_some() {
            return Err(CpError::InvalidArgument(
                "--preview-ttl needs --preview-app".into(),
            ));
        }
        return Ok(None);
    }
    if req.git.is_none() || req.branch.is_none() {
        return Err(CpError::InvalidArgument(
            "--preview-app needs a Git service with --branch (pushes of the other branches are previewed)"
                .into(),
        ));
    }
    let app = req.preview_app.as_deref().unwrap_or_default();
    if !crate::spec::valid_app_name(app) {
        return Err(CpError::InvalidArgument(format!(
            "invalid --preview-app {app:?}: an application name (lowercase letters, digits and '-')"
        )));
    }
    Ok(req
        .preview_ttl
        .as_deref()
        .map(parse_ttl)
        .transpose()?
        .map(|d| d.as_secs()))
}

impl ControlPlane {
    /// Deploy `version` of `service` (global name) as `p` says. Failures are events.
    pub(crate) async fn deploy_preview(&self, service: &str, version: &VersionRecord, p: &Preview) {
        let team_name = team::team_of(service).to_string();
        let env = env_name(&p.branch);
        match self.try_deploy_preview(&team_name, &env, version, p) {
            Ok(rev) => self.inner.events.emit_in(
                Some(&team_name),
                "preview_deployed",
                Level::Info,
                &env,
                format!(
                    "branch {} of {}: version {} deployed as {} revision {rev} in environment {env}",
                    p.branch,
                    team::local_name(&team_name, service).unwrap_or(service),
                    version.name,
                    p.app
                ),
            ),
            Err(e) => {
                tracing::warn!(service, branch = p.branch, error = %e, "preview not deployed");
                self.inner.events.emit_in(
                    Some(&team_name),
                    "preview_failed",
                    Level::Warn,
                    &env,
                    format!(
                        "branch {} of {}: version {} built but not deployed: {e}",
                        p.branch,
                        team::local_name(&team_name, service).unwrap_or(service),
                        version.name
                    ),
                );
            }
        }
    }

    fn try_deploy_preview(
        &self,
        team_name: &str,
        env: &str,
        version: &VersionRecord,
        p: &Preview,
    ) -> Result<u64, CpError> {
        let src = team::app_global(team_name, DEV_ENV, &p.app);
        let (_, mut spec) = self.current_spec(&src)?;
        // Every service that runs an image of this service gets the new version.
        let (repo, switched) = crate::release::switch_to_version(&mut spec, version);
        if switched.is_empty() {
            return Err(CpError::InvalidArgument(format!(
                "application {:?} runs no image of {repo}",
                p.app
            )));
        }
        // The environment: made on the first push, renewed by every other.
        let expires = ms_after(p.ttl);
        if self.inner.store.env(team_name, env)?.is_some() {
            self.inner
                .store
                .set_env_expiry(team_name, env, Some(expires))?;
        } else {
            let created = self.inner.store.create_env(&EnvCreate {
                team: team_name.into(),
                name: env.into(),
                created_by: "webhook".into(),
                expires_at: Some(expires),
                ports: None,
                block_from: Some(self.inner.config.port_range),
                protected: false,
                keep_volumes: false,
                cpus_milli: None,
                memory_bytes: None,
            })?;
            match created {
                Ok(_) => self.inner.events.emit_in(
                    Some(team_name),
                    "env_created",
                    Level::Info,
                    env,
                    format!(
                        "preview environment {env:?} created for branch {}",
                        p.branch
                    ),
                ),
                Err(berth_store::EnvRefusal::Exists) => {}
                Err(
                    berth_store::EnvRefusal::NoFreeBlock
                    | berth_store::EnvRefusal::PortsOverlap(_)
                    | berth_store::EnvRefusal::PortHeld(_),
                ) => {
                    let (lo, hi) = self.inner.config.port_range;
                    return Err(CpError::NoFreePort(format!(
                        "no free block of host ports left in --port-range {lo}-{hi} for {env:?}"
                    )));
                }
            }
        }
        let dst = team::app_global(team_name, env, &p.app);
        let change = format!(
            "preview of branch {}: {} {} ({})",
            p.branch,
            repo,
            version.name,
            switched.join(", ")
        );
        Ok(self.promote(&dst, spec, "preview", &change)?.revision)
    }

    /// A push deleted `branch`: its preview environment (of the service's team) goes at once.
    /// The environment's name, if there was one.
    pub(crate) fn recycle_preview(
        &self,
        service: &str,
        branch: &str,
    ) -> Result<Option<String>, CpError> {
        let team_name = team::team_of(service);
        let env = env_name(branch);
        if self.inner.store.env(team_name, &env)?.is_none() {
            return Ok(None);
        }
        self.remove_env(team_name, &env, false)?;
        Ok(Some(env))
    }
}

#[cfg(test)]
mod tests {
    use super::env_name;

    #[test]
    fn preview_environments_are_named_after_their_branch() {
        assert_eq!(env_name("feature/login"), "preview-feature-login");
        assert_eq!(env_name("Fix_Bug-12"), "preview-fix-bug-12");
        assert_eq!(
            env_name("a-very-long-branch-name-that-goes-on-and-on"),
            "preview-a-very-long-branch-name-that-goe"
        );
        assert_eq!(env_name("ab-cd-ef-gh-"), "preview-ab-cd-ef-gh");
        assert_eq!(
            env_name("x-------------------------------------------y"),
            "preview-x"
        );
        assert_eq!(env_name("???"), "preview");
        assert!(berth_core::team::valid_env_name(&env_name("x/ÿ")));
        assert!(berth_core::team::valid_env_name(&env_name(
            "a-very-long-branch-name-that-goes-on-and-on"
        )));
    }
}
