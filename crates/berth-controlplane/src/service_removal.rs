//! Removing a service built from source (`berth service rm`, `DELETE /api/v1/services/{name}`).
//!
//! Rules it keeps (docs/api.md, "Removing a service"):
//! - **Refused while in use** (409 `in_use`, naming where): a version whose image an
//!   application's current revision pins (`version v1 runs in application "front"`), or a
//!   version that is published or deprecated (`version v2 is published`: other teams may rely
//!   on it; retire it first). Nothing is removed then.
//! - **Builds first.** Queued and running builds of the service are cancelled, and the removal
//!   waits (at most [`BUILD_STOP_WAIT`]) until they have ended, so no build records a version
//!   or tags an image after its service is gone; one that does not end in time refuses the
//!   removal (`in_use`), and nothing is removed.
//! - **Records in one transaction** (the store's `remove_service`): the service row (with its
//!   webhook secret), its builds and their logs, its versions (with their lifecycle state and
//!   evidence), its build secrets. The audit log keeps the history.
//! - **Images**: each version's tag is removed from the engine (by tag, without force) unless a
//!   revision of any application — current or earlier, i.e. a rollback target — still pins the
//!   image, a container uses it (the engine refuses), or the tag no longer points at the
//!   version's own image built by this server for this service. What was kept is answered with
//!   the reason. This runs under the image gate, so an apply cannot pin an image between the
//!   check and the removal; the in-use check runs under it too.

use crate::events::Level;
use crate::spec::{labels, RevisionPins};
use crate::{ControlPlane, CpError, Inner};
use berth_core::api::ServiceRemoved;
use berth_docker::DockerError;
use berth_store::{ServiceRemoval, VersionRecord};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// How long a removal waits for the service's cancelled builds to end.
pub const BUILD_STOP_WAIT: Duration = Duration::from_secs(60);

/// Label with the service's global name on every image a Berth build makes.
const SERVICE_LABEL: &str = "berth.service";

/// Every application's revisions' pinned image IDs: (application, revision, is it the
/// running one — the current revision of an application not being removed, images).
type Pins = Vec<(String, u64, bool, BTreeSet<String>)>;

fn pins(inner: &Inner) -> Result<Pins, CpError> {
    let mut out = Vec::new();
    for app in inner.store.list_apps()? {
        for rev in inner.store.list_revisions::<RevisionPins>(&app.name)? {
            let running = rev.number == app.revision && !app.deleting;
            out.push((
                app.name.clone(),
                rev.number,
                running,
                rev.spec.images.into_values().collect(),
            ));
        }
    }
    Ok(out)
}

/// Why the service cannot go: each version an application runs, with where (pure).
fn running_versions(versions: &[VersionRecord], pins: &Pins) -> Vec<String> {
    let mut uses = Vec::new();
    for v in versions {
        let apps: BTreeSet<&str> = pins
            .iter()
            .filter(|(_, _, running, images)| *running && images.contains(&v.digest))
            .map(|(app, ..)| app.as_str())
            .collect();
        for app in apps {
            uses.push(format!("version {} runs in application {app:?}", v.name));
        }
    }
    uses
}

/// The revisions that pin `digest`, in words (`application "front" revision 3`).
fn pinned_by(digest: &str, pins: &Pins) -> Vec<String> {
    let mut by: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for (app, rev, _, images) in pins {
        if images.contains(digest) {
            by.entry(app).or_default().push(*rev);
        }
    }
    by.into_iter()
        .map(|(app, revs)| {
            let revs: Vec<String> = revs.iter().map(u64::to_string).collect();
            let word = if revs.len() == 1 {
                "revision"
            } else {
                "revisions"
            };
            format!("application {app:?} {word} {}", revs.join(", "))
        })
        .collect()
}

impl ControlPlane {
    /// Remove a service built from source, its records and its unpinned images (see the module
    /// docs for what is refused and what is kept).
    ///
    /// # Errors
    /// `UnknownBuildService`; `InUse` naming every version that runs in an application or is
    /// published or deprecated, or a build that would not stop; store and engine failures.
    pub async fn remove_service(&self, name: &str) -> Result<ServiceRemoved, CpError> {
        let inner = &self.inner;
        let Some(_) = inner.store.get_service(name)? else {
            return Err(CpError::UnknownBuildService(name.into()));
        };
        let gate = inner.image_gate.lock().await;
        self.check_not_in_use(name)?;
        drop(gate);

        // Builds first: none may record a version or tag an image once the service is gone.
        let cancelled = match inner.builds.get() {
            Some(builds) => {
                let ids = builds.cancel_service(name);
                let deadline = tokio::time::Instant::now() + BUILD_STOP_WAIT;
                while builds.busy(name) {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(CpError::InUse(format!(
                            "service {name:?}: a cancelled build has not stopped within {} s; try again",
                            BUILD_STOP_WAIT.as_secs()
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                ids
            }
            None => Vec::new(),
        };

        let _gate = inner.image_gate.lock().await;
        // Again under the gate: an apply or a publish may have happened meanwhile.
        self.check_not_in_use(name)?;
        let versions = match inner.store.remove_service(name)? {
            ServiceRemoval::Removed(versions) => versions,
            ServiceRemoval::NotFound => return Err(CpError::UnknownBuildService(name.into())),
            ServiceRemoval::Held(held) => return Err(CpError::InUse(held_message(name, &held))),
        };
        let pins = pins(inner)?;
        let mut removed = Vec::new();
        let mut kept = Vec::new();
        for v in &versions {
            match remove_image(inner, v, &pins).await {
                Ok(None) => removed.push(v.tag.clone()),
                Ok(Some(reason)) if reason.is_empty() => {}
                Ok(Some(reason)) => kept.push(format!("{} ({reason})", v.tag)),
                Err(e) => {
                    tracing::warn!(image = %v.tag, error = %e, "service removal: removing the image failed");
                    kept.push(format!("{} (the engine failed: {e})", v.tag));
                }
            }
        }
        let team = berth_core::team::team_of(name);
        let mut message = format!(
            "service {name:?} removed with {} version record(s); images removed: {}",
            versions.len(),
            if removed.is_empty() {
                "none".to_string()
            } else {
                removed.join(", ")
            }
        );
        if !kept.is_empty() {
            message.push_str(&format!("; kept: {}", kept.join(", ")));
        }
        inner
            .events
            .emit_in(Some(team), "service.removed", Level::Info, name, message);
        // Builds cancelled just before may have been queued again by a webhook or the poller
        // before the record went; they find no service and end.
        if let Some(builds) = inner.builds.get() {
            builds.cancel_service(name);
        }
        Ok(ServiceRemoved {
            name: name.to_string(),
            versions: versions.len(),
            images_removed: removed,
            images_kept: kept,
            cancelled_builds: cancelled,
        })
    }

    /// `InUse` naming each version of `name` that an application runs or that is published or
    /// deprecated.
    fn check_not_in_use(&self, name: &str) -> Result<(), CpError> {
        self.refuse_if_subscribed(name, &format!("remove service {name:?}"))?;
        let inner = &self.inner;
        let versions = inner.store.list_versions(name)?;
        let mut uses = running_versions(&versions, &pins(inner)?);
        for l in inner.store.lifecycles(Some(name))? {
            if matches!(
                l.state,
                berth_core::lifecycle::VersionState::Published
                    | berth_core::lifecycle::VersionState::Deprecated
            ) {
                uses.push(format!("version {} is {}", l.version, l.state.as_str()));
            }
        }
        if uses.is_empty() {
            Ok(())
        } else {
            Err(CpError::InUse(format!(
                "service {name:?} is in use: {}",
                uses.join("; ")
            )))
        }
    }
}

fn held_message(name: &str, held: &[(String, String)]) -> String {
    let uses: Vec<String> = held
        .iter()
        .map(|(v, state)| format!("version {v} is {state}"))
        .collect();
    format!("service {name:?} is in use: {}", uses.join("; "))
}

/// Remove one version's image by tag, unless it must stay. `Ok(None)`: removed; `Ok(Some(why))`:
/// kept, and why (empty: there was nothing to remove).
async fn remove_image(
    inner: &Inner,
    v: &VersionRecord,
    pins: &Pins,
) -> Result<Option<String>, DockerError> {
    let by = pinned_by(&v.digest, pins);
    if !by.is_empty() {
        return Ok(Some(format!("pinned by {}", by.join(", "))));
    }
    let Some(img) = inner.docker.inspect_image(&v.tag).await? else {
        return Ok(Some(String::new()));
    };
    let ours = img.id == v.digest
        && img.labels.get(labels::INSTANCE) == Some(&inner.naming.instance)
        && img.labels.get(SERVICE_LABEL).map(String::as_str) == Some(v.service.as_str());
    if !ours {
        return Ok(Some(
            "the tag now names another image, or one this server did not build".into(),
        ));
    }
    match inner.docker.remove_image(&v.tag, false, false).await {
        Ok(()) => Ok(None),
        Err(DockerError::NotFound(_)) => Ok(Some(String::new())),
        Err(DockerError::Conflict(_)) => Ok(Some("a container uses it".into())),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(name: &str, digest: &str) -> VersionRecord {
        VersionRecord {
            service: "api".into(),
            name: name.into(),
            digest: digest.into(),
            tag: format!("berth/api:{name}"),
            commit: String::new(),
            author: String::new(),
            commit_time: None,
            build_id: 1,
            created_at: String::new(),
            steps: None,
            contract: None,
            readme: None,
        }
    }

    fn pin(
        app: &str,
        rev: u64,
        running: bool,
        images: &[&str],
    ) -> (String, u64, bool, BTreeSet<String>) {
        (
            app.into(),
            rev,
            running,
            images.iter().map(|i| (*i).to_string()).collect(),
        )
    }

    #[test]
    fn only_running_revisions_hold_a_service_and_every_pin_keeps_its_image() {
        let versions = [version("v1", "sha256:1"), version("v2", "sha256:2")];
        let pins = vec![
            pin("front", 1, false, &["sha256:1"]),
            pin("front", 2, true, &["sha256:2", "sha256:other"]),
            pin("back", 4, true, &["sha256:2"]),
            pin("old", 7, false, &["sha256:1"]),
        ];
        assert_eq!(
            running_versions(&versions, &pins),
            [
                "version v2 runs in application \"back\"",
                "version v2 runs in application \"front\""
            ]
        );
        assert!(running_versions(&versions[..1], &pins).is_empty());
        assert_eq!(
            pinned_by("sha256:1", &pins),
            [
                "application \"front\" revision 1",
                "application \"old\" revision 7"
            ]
        );
        let two = vec![pin("a", 1, false, &["d"]), pin("a", 3, true, &["d"])];
        assert_eq!(pinned_by("d", &two), ["application \"a\" revisions 1, 3"]);
        assert!(pinned_by("sha256:none", &pins).is_empty());
    }
}
