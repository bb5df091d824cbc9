//! Images of services built from source: listing (size, deployed, rollback target), archive to a
//! file and restore from it.
//!
//! "Deployed" and "rollback target" come from the revisions in the store (which pin image IDs),
//! so they hold for every app on this server; cleanup must never remove such an image.

use crate::{ControlPlane, CpError};
use berth_core::api::ImageView;
use std::collections::HashSet;

impl ControlPlane {
    /// Image IDs an application runs now, and those converged revisions pin (rollback targets).
    fn pinned_images(&self) -> Result<(HashSet<String>, HashSet<String>), CpError> {
        let mut deployed = HashSet::new();
        let mut targets = HashSet::new();
        for app in self.inner.store.list_apps()? {
            for rev in self.inner.store.list_revisions(&app.name)? {
                let ids = rev.spec.get("images").and_then(|i| i.as_object()).map(|m| {
                    m.values()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect::<Vec<_>>()
                });
                let ids = ids.unwrap_or_default();
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

    /// Images of one service (or all), newest first.
    pub async fn images(&self, service: Option<&str>) -> Result<Vec<ImageView>, CpError> {
        let services: Vec<String> = match service {
            Some(s) => {
                if self.inner.store.get_service(s)?.is_none() {
                    return Err(CpError::ServiceNotFound(String::new(), s.into()));
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
            for v in self.inner.store.list_versions(&s)? {
                let size = self
                    .inner
                    .docker
                    .inspect_image(&v.digest)
                    .await?
                    .map(|i| i.size);
                out.push(ImageView {
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
        tracing::info!(service, version, "image archived");
        Ok(self.inner.docker.export_image(&v.tag).await?)
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
        tracing::info!(report, "image restored");
        Ok(report)
    }
}
