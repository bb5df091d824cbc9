//! Images of services built from source: listing (size, state, deployed, rollback target),
//! archive to a file and restore from it, and the **retention pass** with its alerts.
//!
//! "Deployed" and "rollback target" come from the revisions in the store (which pin image IDs),
//! so they hold for every app on this server; retention never removes such an image.
//!
//! The retention pass (periodic, and after each successful build) keeps the rules of the
//! reconciler (docs/architecture.md, "Image retention"):
//! - it starts from one full listing of the images labelled with this instance; if the listing
//!   (or the store) fails, it does nothing at all;
//! - the decision is the pure [`crate::retention::plan`];
//! - each removal happens under the image gate (so `apply` cannot pin the image meanwhile),
//!   after the pins are read again and the tag is inspected once more: it must still point at
//!   the version's image and carry this instance's and the service's labels;
//! - removal is by tag, without force: an image a container uses is refused by the engine
//!   (409) and kept; the version record stays, marked `removed`;
//! - alerts (image disk use, images per service) are reported once per crossing as events.

use crate::events::Level;
use crate::retention::{self, Alerts, Candidate, Edge, Verdict};
use crate::spec::{labels, RevisionPins};
use crate::{ControlPlane, CpError, Inner};
use berth_core::api::{EventView, ImageView};
use berth_docker::DockerError;
use berth_store::VersionRecord;
use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Image IDs an application runs now (its current revision, not being deleted), and those
/// converged revisions pin (rollback targets).
pub(crate) fn pinned_images(inner: &Inner) -> Result<(HashSet<String>, HashSet<String>), CpError> {
    let mut deployed = HashSet::new();
    let mut targets = HashSet::new();
    for app in inner.store.list_apps()? {
        for rev in inner.store.list_revisions::<RevisionPins>(&app.name)? {
            let ids = rev.spec.images.into_values().collect::<Vec<_>>();
            if rev.number == app.revision && !app.deleting {
                deployed.extend(ids.iter().cloned());
            }
            if rev.status == berth_store::RevisionStatus::Converged {
                targets.extend(ids);
            }
        }
    }
    Ok((deployed, targets))
}

impl ControlPlane {
    fn pinned_images(&self) -> Result<(HashSet<String>, HashSet<String>), CpError> {
        pinned_images(&self.inner)
    }

    /// Recent platform events with an id above `after`, oldest first (at most `limit`).
    #[must_use]
    /// Recent events that `visible` lets through, given each event's team (`None`: a platform
    /// event, e.g. the engine's disk or the build janitor's).
    pub fn events(
        &self,
        after: u64,
        limit: usize,
        visible: &dyn Fn(Option<&str>) -> bool,
    ) -> Vec<EventView> {
        self.inner.events.list(after, limit, visible)
    }

    /// Every event recorded from now on, with its team (`None`: a platform event), as it is
    /// recorded; a receiver more than [`crate::events::FEED_CAPACITY`] behind loses the oldest
    /// (`RecvError::Lagged`).
    #[must_use]
    pub fn event_feed(&self) -> tokio::sync::broadcast::Receiver<crate::events::TeamEvent> {
        self.inner.events.subscribe()
    }

    /// Images of one service (or all), newest first.
    pub async fn images(&self, service: Option<&str>) -> Result<Vec<ImageView>, CpError> {
        let services: Vec<String> = match service {
            Some(s) => {
                if self.inner.store.get_service(s)?.is_none() {
                    return Err(CpError::UnknownBuildService(s.into()));
                }
                vec![s.to_string()]
            }
            None => self
                .inner
                .store
                .list_services()?
                .into_iter()
                .map(|s| s.name)
                .collect(),
        };
        let (deployed, targets) = self.pinned_images()?;
        let mut out = Vec::new();
        for s in services {
            let states = self.inner.store.image_states(&s)?;
            for v in self.inner.store.list_versions(&s)? {
                let st = states.get(&v.name).cloned().unwrap_or_default();
                let size = self
                    .inner
                    .docker
                    .inspect_image(&v.digest)
                    .await?
                    .map(|i| i.size);
                let state = match (size.is_some(), st.removed, st.archived_at.is_some()) {
                    (true, ..) => "present",
                    (false, true, true) => "archived",
                    (false, true, false) => "removed",
                    (false, false, _) => "missing",
                };
                out.push(ImageView {
                    state: state.into(),
                    deployed: deployed.contains(&v.digest),
                    rollback_target: targets.contains(&v.digest),
                    service: v.service,
                    version: v.name,
                    tag: v.tag,
                    digest: v.digest,
                    size,
                    created_at: v.created_at,
                });
            }
        }
        Ok(out)
    }

    /// `berth image archive NAME:VERSION`: the version's image as a `docker save` tar.
    pub async fn archive_image(
        &self,
        service: &str,
        version: &str,
    ) -> Result<bytes::Bytes, CpError> {
        let v = self
            .inner
            .store
            .list_versions(service)?
            .into_iter()
            .find(|v| v.name == version)
            .ok_or_else(|| {
                CpError::InvalidArgument(format!("service {service:?} has no version {version:?}"))
            })?;
        if self.inner.docker.inspect_image(&v.digest).await?.is_none() {
            return Err(CpError::InvalidArgument(format!(
                "{} is not on the engine (restore it first)",
                v.tag
            )));
        }
        let tar = self.inner.docker.export_image(&v.tag).await?;
        self.inner.store.set_image_archived(service, version)?;
        tracing::info!(service, version, "image archived");
        Ok(tar)
    }

    /// `berth image restore FILE`: load an archive; returns the engine's report.
    pub async fn restore_image(&self, tar: Vec<u8>) -> Result<String, CpError> {
        if tar.len() < 512 {
            return Err(CpError::InvalidArgument(
                "that is not an image archive".into(),
            ));
        }
        let report = self
            .inner
            .docker
            .load_image(tar)
            .await
            .map_err(|e| match e {
                berth_docker::DockerError::Api { message, .. } => {
                    CpError::InvalidArgument(format!("cannot restore: {message}"))
                }
                other => other.into(),
            })?;
        self.restored(report).await
    }

    /// [`ControlPlane::restore_image`] for an upload: the archive is streamed to the engine as
    /// it arrives (never held whole in memory) and refused past `max` bytes.
    pub async fn restore_image_stream<S, E>(&self, tar: S, max: u64) -> Result<String, CpError>
    where
        S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let report = self.load_stream(tar, max).await?;
        self.restored(report).await
    }

    /// [`ControlPlane::restore_image_stream`] for `team`: every image of a service built from
    /// source that the archive brings (`berth/<service>:<version>`) must be of one of `team`'s
    /// services, else the restore is refused and the images it loaded are untagged again (an
    /// image that is exactly another team's version, already known, is left as it is).
    pub async fn restore_image_stream_in<S, E>(
        &self,
        team: &str,
        tar: S,
        max: u64,
    ) -> Result<String, CpError>
    where
        S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let report = self.load_stream(tar, max).await?;
        let mut foreign = Vec::new();
        for tag in loaded_tags(&report) {
            let Some((service, _)) = tag
                .strip_prefix("berth/")
                .and_then(|rest| rest.split_once(':'))
            else {
                continue;
            };
            if berth_core::team::team_of(service) != team {
                foreign.push((service.to_string(), tag.to_string()));
            }
        }
        if foreign.is_empty() {
            return self.restored(report).await;
        }
        for (service, tag) in &foreign {
            let here = self.inner.docker.inspect_image(tag).await?;
            let known = self
                .inner
                .store
                .list_versions(service)?
                .iter()
                .any(|v| &v.tag == tag && here.as_ref().is_some_and(|i| i.id == v.digest));
            if !known {
                if let Err(e) = self.inner.docker.remove_image(tag, false, false).await {
                    tracing::warn!(tag, error = %e, "restore refused: untagging the loaded image failed");
                }
            }
        }
        tracing::info!(
            team,
            "image restore refused: an image of another team's service"
        );
        Err(CpError::InvalidArgument(
            "the archive holds an image of a service that is not this team's; nothing was restored"
                .into(),
        ))
    }

    async fn load_stream<S, E>(&self, tar: S, max: u64) -> Result<String, CpError>
    where
        S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        use futures_util::StreamExt;
        #[derive(Default)]
        struct Upload {
            size: u64,
            failed: Option<CpError>,
        }
        let seen = Arc::new(std::sync::Mutex::new(Upload::default()));
        let counter = seen.clone();
        let tar = tar.map(move |chunk| {
            let mut up = counter
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let msg = format!("the upload broke off: {e}");
                    up.failed = Some(CpError::InvalidArgument(msg.clone()));
                    return Err(std::io::Error::other(msg));
                }
            };
            up.size += chunk.len() as u64;
            if up.size > max {
                up.failed = Some(CpError::ArchiveTooLarge(max));
                return Err(std::io::Error::other("the image archive is too large"));
            }
            Ok(chunk)
        });
        let loaded = self.inner.docker.load_image_stream(tar).await;
        let upload = std::mem::take(
            &mut *seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if let Some(e) = upload.failed {
            return Err(e);
        }
        let report = loaded.map_err(|e| match e {
            _ if upload.size < 512 => {
                CpError::InvalidArgument("that is not an image archive".into())
            }
            berth_docker::DockerError::Api { message, .. } => {
                CpError::InvalidArgument(format!("cannot restore: {message}"))
            }
            other => other.into(),
        })?;
        Ok(report)
    }

    /// After a load: mark the versions it brought back; returns the engine's report.
    async fn restored(&self, report: String) -> Result<String, CpError> {
        tracing::info!(report, "image restored");
        // The versions it brings back are present again (and kept a while by retention).
        for tag in loaded_tags(&report) {
            let Some((service, _)) = tag
                .strip_prefix("berth/")
                .and_then(|rest| rest.split_once(':'))
            else {
                continue;
            };
            for v in self.inner.store.list_versions(service)? {
                if v.tag != tag {
                    continue;
                }
                let here = self.inner.docker.inspect_image(tag).await?;
                if here.is_some_and(|i| i.id == v.digest) {
                    self.inner.store.set_image_restored(service, &v.name)?;
                    self.inner.events.emit_in(
                        Some(berth_core::team::team_of(service)),
                        "image.restored",
                        Level::Info,
                        tag,
                        format!("{tag} restored from an archive"),
                    );
                }
            }
        }
        Ok(report)
    }
}

/// The tags an engine's load report names.
fn loaded_tags(report: &str) -> impl Iterator<Item = &str> {
    report
        .split("; ")
        .filter_map(|l| l.strip_prefix("Loaded image: "))
}

/// Runs the retention pass every [`crate::Config::image_retention_period`] (the first a few
/// seconds after start) and whenever woken (a build succeeded), until shutdown.
pub(crate) async fn retention_loop(
    weak: Weak<Inner>,
    wake: Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
) {
    let mut alerts = Alerts::default();
    let mut wait = Duration::from_secs(3);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
            () = wake.notified() => {}
        }
        let Some(inner) = weak.upgrade() else { return };
        wait = inner.config.image_retention_period;
        retention_pass(&inner, &mut alerts).await;
    }
}

/// One retention pass over every service, then the alerts. Never acts on a partial view.
pub(crate) async fn retention_pass(inner: &Inner, alerts: &mut Alerts) {
    let instance = format!("{}={}", labels::INSTANCE, inner.naming.instance);
    let listing = match inner
        .docker
        .list_images(&[instance, SERVICE_LABEL.to_string()])
        .await
    {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "image retention: listing the engine's images failed; nothing done this pass");
            return;
        }
    };
    let view = (|| -> Result<_, CpError> {
        let pins = pinned_images(inner)?;
        let mut per_service = Vec::new();
        for svc in inner.store.list_services()? {
            let versions = inner.store.list_versions(&svc.name)?;
            let states = inner.store.image_states(&svc.name)?;
            per_service.push((svc.name, versions, states));
        }
        Ok((pins, per_service))
    })();
    let ((deployed, targets), per_service) = match view {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "image retention: reading the store failed; nothing done this pass");
            return;
        }
    };
    let now = time::OffsetDateTime::now_utc();
    'services: for (service, versions, states) in &per_service {
        let candidates: Vec<Candidate> = versions
            .iter()
            .map(|v| {
                let st = states.get(&v.name).cloned().unwrap_or_default();
                let restored_recently = st
                    .restored_at
                    .as_deref()
                    .and_then(|t| {
                        time::OffsetDateTime::parse(
                            t,
                            &time::format_description::well_known::Rfc3339,
                        )
                        .ok()
                    })
                    .is_some_and(|t| now - t < retention::RESTORE_GRACE);
                Candidate {
                    version: v.name.clone(),
                    digest: v.digest.clone(),
                    on_engine: listing.iter().any(|i| {
                        i.id == v.digest
                            && i.repo_tags.contains(&v.tag)
                            && i.labels.get(SERVICE_LABEL) == Some(service)
                    }),
                    restored_recently,
                }
            })
            .collect();
        let verdicts = retention::plan(&candidates, inner.config.image_keep, &deployed, &targets);
        for (v, verdict) in versions.iter().zip(verdicts) {
            if verdict != Verdict::Remove {
                continue;
            }
            let archived = states.get(&v.name).is_some_and(|s| s.archived_at.is_some());
            if let Err(e) = remove_version_image(inner, v, archived).await {
                tracing::warn!(service, version = %v.name, error = %e, "image retention: removal failed; the rest waits for the next pass");
                break 'services;
            }
        }
    }
    check_alerts(inner, alerts, &listing, &per_service).await;
}

/// Label with the service name on every image a Berth build makes.
const SERVICE_LABEL: &str = "berth.service";

/// Remove one version's image (by tag, no force) if it may still go; mark it in the store.
async fn remove_version_image(
    inner: &Inner,
    v: &VersionRecord,
    archived: bool,
) -> Result<(), CpError> {
    let _gate = inner.image_gate.lock().await;
    // An apply may have pinned it since the pass's view was read.
    let (deployed, targets) = pinned_images(inner)?;
    if deployed.contains(&v.digest) || targets.contains(&v.digest) {
        return Ok(());
    }
    // The tag must still be this version's image, built by this instance for this service.
    let Some(img) = inner.docker.inspect_image(&v.tag).await? else {
        return Ok(());
    };
    let ours = img.id == v.digest
        && img.labels.get(labels::INSTANCE) == Some(&inner.naming.instance)
        && img.labels.get(SERVICE_LABEL) == Some(&v.service);
    if !ours {
        tracing::info!(image = %v.tag, "image retention: the tag no longer points at the version's own image; left alone");
        return Ok(());
    }
    match inner.docker.remove_image(&v.tag, false, false).await {
        Ok(()) | Err(DockerError::NotFound(_)) => {}
        Err(DockerError::Conflict(m)) => {
            tracing::info!(image = %v.tag, reason = %m, "image retention: kept, the engine says it is in use");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    }
    inner.store.set_image_removed(&v.service, &v.name)?;
    let how = if archived {
        " (an archive of it was made earlier; `berth image restore FILE` brings it back)"
    } else {
        ""
    };
    inner.events.emit_in(
        Some(berth_core::team::team_of(&v.service)),
        "image.removed",
        Level::Info,
        &v.tag,
        format!(
            "image retention removed {} ({}): not deployed, not a rollback target, older than the newest {}{how}",
            v.tag, v.digest, inner.config.image_keep
        ),
    );
    Ok(())
}

type ServiceView = (
    String,
    Vec<VersionRecord>,
    std::collections::BTreeMap<String, berth_store::ImageState>,
);

async fn check_alerts(
    inner: &Inner,
    alerts: &mut Alerts,
    listing: &[berth_docker::ImageSummary],
    per_service: &[ServiceView],
) {
    if let Some(limit) = inner.config.image_count_alert {
        for (service, ..) in per_service {
            let ids: HashSet<&str> = listing
                .iter()
                .filter(|i| i.labels.get(SERVICE_LABEL) == Some(service))
                .map(|i| i.id.as_str())
                .collect();
            let n = ids.len() as u64;
            // The event is the team's: its message names the service as the team does.
            let local = berth_core::team::split_global(service).1;
            match alerts.update(&format!("count:{service}"), n, limit) {
                Some(Edge::Raised) => inner.events.emit_in(
                    Some(berth_core::team::team_of(service)),
                    "alert.image_count",
                    Level::Warn,
                    service,
                    format!("service {local} has {n} images on the engine, above the alert threshold of {limit} (--image-count-alert)"),
                ),
                Some(Edge::Cleared) => inner.events.emit_in(
                    Some(berth_core::team::team_of(service)),
                    "alert.image_count.cleared",
                    Level::Info,
                    service,
                    format!("service {local} is back to {n} images (threshold {limit})"),
                ),
                None => {}
            }
        }
    }
    if let Some(limit) = inner.config.image_disk_alert {
        let used = match inner.docker.image_disk_use().await {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(error = %e, "image disk use unknown (GET /system/df failed)");
                return;
            }
        };
        let (u, l) = (retention::human_bytes(used), retention::human_bytes(limit));
        match alerts.update("disk", used, limit) {
            Some(Edge::Raised) => inner.events.emit(
                "alert.image_disk",
                Level::Warn,
                "engine",
                format!("the engine's images take {u} of disk, above the alert threshold of {l} (--image-disk-alert)"),
            ),
            Some(Edge::Cleared) => inner.events.emit(
                "alert.image_disk.cleared",
                Level::Info,
                "engine",
                format!("the engine's images take {u}, back under {l}"),
            ),
            None => {}
        }
    }
}
