//! Installed copies of market entries (docs/market.md#install): a Compose service with
//! `x-berth.from_market: TEAM/SERVICE:VERSION` in place of `image:` runs its own copy of a
//! published version, and `berth upgrade` moves it to a newer one.
//!
//! Rules this module keeps:
//! - Only a published or deprecated version installs; anything else (unknown, built, retired,
//!   another team's unpublished work) is the same 409 `version_not_published`, so the market
//!   reveals nothing that is not on it.
//! - The revision pins the version's image ID (like every image), and the origin stays in the
//!   project (`from_market`), which is how the entry lists its installs.
//! - A copy keeps its dependencies: what the provider instance's service `uses` is added to the
//!   installed service's `uses`, so the installing application subscribes to it too.

use crate::{ControlPlane, CpError};
use berth_compose::Project;
use berth_core::api::UpgradeView;
use berth_core::lifecycle::VersionState;
use berth_core::team;
use std::collections::BTreeMap;

/// `TEAM/SERVICE:VERSION` → (the service's global name, the version).
#[must_use]
pub fn parse_origin(text: &str) -> Option<(String, String)> {
    let (entry, version) = text.rsplit_once(':')?;
    let service = crate::subscriptions::parse_entry(entry)?;
    (!version.is_empty()).then(|| (service, version.to_string()))
}

/// An installed copy: (application, its service, the version it runs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Install {
    pub app: String,
    pub service: String,
    pub version: String,
}

impl ControlPlane {
    /// The published (or deprecated) version `version` of `service`: its record.
    fn published(
        &self,
        service: &str,
        version: &str,
    ) -> Result<berth_store::VersionRecord, CpError> {
        let refused = || {
            CpError::VersionNotPublished(format!(
                "{}:{version} is not a published version in the market",
                crate::subscriptions::entry_name(service)
            ))
        };
        let state = self
            .inner
            .store
            .lifecycles(Some(service))?
            .into_iter()
            .find(|l| l.version == version)
            .map(|l| l.state);
        if !matches!(
            state,
            Some(VersionState::Published | VersionState::Deprecated)
        ) {
            return Err(refused());
        }
        self.inner
            .store
            .get_version(service, version)?
            .ok_or_else(refused)
    }

    /// Resolve every `from_market` of `project`: the service's image shows the version's tag,
    /// its `uses` gain the provider's; answers service → the image ID to pin.
    pub(crate) fn resolve_installs(
        &self,
        project: &mut Project,
    ) -> Result<BTreeMap<String, String>, CpError> {
        let mut pins = BTreeMap::new();
        for (name, svc) in &mut project.services {
            let Some(origin) = svc.berth.from_market.clone() else {
                continue;
            };
            let (service, version) = parse_origin(&origin).ok_or_else(|| {
                CpError::VersionNotPublished(format!(
                    "{origin} is not a published version in the market"
                ))
            })?;
            let record = self.published(&service, &version)?;
            svc.image.clone_from(&record.tag);
            for u in self.provider_uses(&service)? {
                if !svc.berth.uses.contains(&u) {
                    svc.berth.uses.push(u);
                }
            }
            pins.insert(name.clone(), record.digest);
        }
        Ok(pins)
    }

    /// Every installed copy in `project` must still be a published (or deprecated) version:
    /// a rollback to a revision made before an upgrade must not bring a retired one back.
    pub(crate) fn check_installs(&self, project: &Project) -> Result<(), CpError> {
        for svc in project.services.values() {
            if let Some((service, version)) =
                svc.berth.from_market.as_deref().and_then(parse_origin)
            {
                self.published(&service, &version)?;
            }
        }
        Ok(())
    }

    /// What the provider instance's service of `service` uses (`TEAM/SERVICE` each).
    fn provider_uses(&self, service: &str) -> Result<Vec<String>, CpError> {
        let Some(b) = self.inner.store.market_binding(service)? else {
            return Ok(Vec::new());
        };
        Ok(self
            .inner
            .running_service(&b.app, &b.app_service)?
            .map(|s| s.berth.uses)
            .unwrap_or_default())
    }

    /// Every installed copy, by market entry (the service's global name).
    pub(crate) fn installs(&self) -> Result<BTreeMap<String, Vec<Install>>, CpError> {
        let mut out: BTreeMap<String, Vec<Install>> = BTreeMap::new();
        for (app, spec) in self.current_specs()? {
            for (name, svc) in &spec.project.services {
                if let Some((service, version)) =
                    svc.berth.from_market.as_deref().and_then(parse_origin)
                {
                    out.entry(service).or_default().push(Install {
                        app: app.clone(),
                        service: name.clone(),
                        version,
                    });
                }
            }
        }
        Ok(out)
    }

    /// 409 `in_use` when applications run an installed copy of `service`:`version`.
    pub(crate) fn refuse_if_installed(&self, service: &str, version: &str) -> Result<(), CpError> {
        let users: Vec<String> = self
            .installs()?
            .remove(service)
            .unwrap_or_default()
            .into_iter()
            .filter(|i| i.version == version)
            .map(|i| crate::subscriptions::entry_name(&i.app))
            .collect();
        if users.is_empty() {
            return Ok(());
        }
        Err(CpError::InUse(format!(
            "cannot retire version {version}: {} {} a copy of it installed (upgrade them first)",
            users.join(", "),
            if users.len() == 1 { "runs" } else { "run" }
        )))
    }

    /// Move `app`'s installed `service` to `to` (default: the newest published version),
    /// through a new revision and the normal rollout; with `dry_run`, only say what would
    /// change, the contract difference first.
    pub fn upgrade(
        &self,
        app: &str,
        service: &str,
        to: Option<&str>,
        dry_run: bool,
    ) -> Result<UpgradeView, CpError> {
        let (_, mut spec) = self.current_spec(app)?;
        let svc = spec
            .project
            .services
            .get(service)
            .ok_or_else(|| CpError::ServiceNotFound(app.into(), service.into()))?;
        let Some((entry, from)) = svc.berth.from_market.as_deref().and_then(parse_origin) else {
            return Err(CpError::InvalidArgument(format!(
                "service {service:?} of {app:?} is not installed from the market (`x-berth.from_market`)"
            )));
        };
        let target = match to {
            Some(v) => v.to_string(),
            None => self
                .newest_published(&entry)?
                .unwrap_or_else(|| from.clone()),
        };
        let new = self.published(&entry, &target)?;
        let old = self.inner.store.get_version(&entry, &from)?;
        let contract = |r: Option<&berth_store::VersionRecord>| {
            r.and_then(|r| r.contract.as_deref())
                .and_then(|c| serde_json::from_str::<serde_json::Value>(c).ok())
        };
        let changes = match (contract(old.as_ref()), contract(Some(&new))) {
            (Some(a), Some(b)) => berth_core::contract::diff(&a, &b).unwrap_or_default(),
            _ => Vec::new(),
        };
        let name = crate::subscriptions::entry_name(&entry);
        let mut view = UpgradeView {
            app: team::split_global(app).1.to_string(),
            service: service.to_string(),
            entry: name.clone(),
            from: from.clone(),
            to: target.clone(),
            breaking: changes.iter().any(|c| c.breaking),
            changes,
            revision: None,
        };
        if target == from || dry_run {
            return Ok(view);
        }
        if let Some(s) = spec.project.services.get_mut(service) {
            let (t, n) = team::split_global(&entry);
            s.berth.from_market = Some(format!("{t}/{n}:{target}"));
        }
        let pins = self.resolve_installs(&mut spec.project)?;
        spec.images.extend(pins);
        let created = self.commit(
            app,
            "upgrade",
            &format!("{service}: upgrade {name} from {from} to {target}"),
            &spec,
        )?;
        view.revision = Some(created.revision);
        Ok(view)
    }

    /// The newest published version of `service` (deprecated ones are not upgraded to).
    fn newest_published(&self, service: &str) -> Result<Option<String>, CpError> {
        let states: BTreeMap<String, VersionState> = self
            .inner
            .store
            .lifecycles(Some(service))?
            .into_iter()
            .map(|l| (l.version, l.state))
            .collect();
        Ok(self
            .inner
            .store
            .list_versions(service)?
            .into_iter()
            .find(|v| states.get(&v.name) == Some(&VersionState::Published))
            .map(|v| v.name))
    }
}

#[cfg(test)]
mod tests {
    use super::parse_origin;

    #[test]
    fn origins() {
        assert_eq!(
            parse_origin("a/orders:v1"),
            Some(("a/orders".into(), "v1".into()))
        );
        assert_eq!(
            parse_origin("default/orders:1.2"),
            Some(("orders".into(), "1.2".into()))
        );
        assert_eq!(parse_origin("a/orders"), None);
        assert_eq!(parse_origin("orders:v1"), None);
        assert_eq!(parse_origin("a/orders:"), None);
    }
}
