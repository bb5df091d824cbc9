//! The market (docs/market.md): every team's services with a published or deprecated version,
//! visible to every user, with the provider instance's health and figures. Names in answers are
//! the owner team's (`team`, `service`); the API does not localise them.

use crate::spec::RevisionSpec;
use crate::{ControlPlane, CpError};
use berth_core::api::{MarketEntry, MarketProvider, MarketVersion};
use berth_core::lifecycle::VersionState;
use berth_core::team;
use std::collections::BTreeMap;

/// At most this many characters of the README make an entry's description.
const DESCRIPTION_CHARS: usize = 300;

/// The README's first paragraph that is not a heading, badge or blank: the description.
#[must_use]
pub fn description(readme: &str) -> String {
    let mut para: Vec<&str> = Vec::new();
    for line in readme.lines() {
        let t = line.trim();
        let skip = t.starts_with('#')
            || t.starts_with("[!")
            || t.starts_with("![")
            || t.starts_with("<")
            || t.starts_with("===")
            || t.starts_with("---");
        if t.is_empty() || skip {
            if !para.is_empty() {
                break;
            }
            continue;
        }
        para.push(t);
    }
    let text = para.join(" ");
    if text.chars().count() <= DESCRIPTION_CHARS {
        return text;
    }
    let mut out: String = text.chars().take(DESCRIPTION_CHARS).collect();
    out.push('…');
    out
}

fn public(state: VersionState) -> bool {
    matches!(
        state,
        VersionState::Published | VersionState::Deprecated | VersionState::Retired
    )
}

impl ControlPlane {
    /// Every market entry, by team and service; `search` matches (case-insensitively) the team,
    /// the service or the description.
    pub fn market(&self, search: Option<&str>) -> Result<Vec<MarketEntry>, CpError> {
        let installs = self.installs()?;
        let mut by_service: BTreeMap<String, Vec<berth_store::LifecycleRecord>> = BTreeMap::new();
        for l in self.inner.store.lifecycles(None)? {
            if public(l.state) {
                by_service.entry(l.service.clone()).or_default().push(l);
            }
        }
        let needle = search.map(str::to_lowercase).filter(|s| !s.is_empty());
        let mut out = Vec::new();
        for (service, versions) in by_service {
            if !versions
                .iter()
                .any(|v| matches!(v.state, VersionState::Published | VersionState::Deprecated))
            {
                continue; // every version retired: off the market
            }
            let entry = self.entry(&service, false, &installs)?;
            if let Some(n) = &needle {
                let hay = format!("{} {} {}", entry.team, entry.service, entry.description)
                    .to_lowercase();
                if !hay.contains(n.as_str()) {
                    continue;
                }
            }
            out.push(entry);
        }
        Ok(out)
    }

    /// One entry, with the README, the latest contract and the provider's hour of figures.
    pub fn market_entry(&self, service: &str) -> Result<MarketEntry, CpError> {
        let listed = self
            .inner
            .store
            .lifecycles(Some(service))?
            .iter()
            .any(|l| matches!(l.state, VersionState::Published | VersionState::Deprecated));
        if !listed {
            return Err(CpError::UnknownBuildService(format!(
                "{service} (in the market)"
            )));
        }
        self.entry(service, true, &self.installs()?)
    }

    fn entry(
        &self,
        service: &str,
        detail: bool,
        installs: &BTreeMap<String, Vec<crate::installs::Install>>,
    ) -> Result<MarketEntry, CpError> {
        let (owner, name) = team::split_global(service);
        let states: BTreeMap<String, VersionState> = self
            .inner
            .store
            .lifecycles(Some(service))?
            .into_iter()
            .map(|l| (l.version, l.state))
            .collect();
        let records = self.inner.store.list_versions(service)?;
        let versions: Vec<MarketVersion> = records
            .iter()
            .filter_map(|v| {
                let state = *states.get(&v.name)?;
                public(state).then(|| MarketVersion {
                    name: v.name.clone(),
                    state,
                    tag: v.tag.clone(),
                    created_at: v.created_at.clone(),
                })
            })
            .collect();
        let latest = versions
            .iter()
            .find(|v| matches!(v.state, VersionState::Published | VersionState::Deprecated))
            .map(|v| v.name.clone());
        let latest_record = latest
            .as_ref()
            .and_then(|l| records.iter().find(|r| &r.name == l));
        let readme = latest_record.and_then(|r| r.readme.clone());
        let provider = match self.inner.store.market_binding(service)? {
            Some(b) => Some(MarketProvider {
                app: team::split_global(&b.app).1.to_string(),
                service: b.app_service.clone(),
                version: b.version.clone(),
                health: self
                    .status(&b.app)
                    .map_or_else(|_| "unknown".into(), |s| s.health),
            }),
            None => None,
        };
        let stats = match self.inner.store.market_binding(service)? {
            Some(b) => self.route_stats(&b.app, &b.app_service).ok(),
            None => None,
        };
        Ok(MarketEntry {
            team: owner.to_string(),
            service: name.to_string(),
            description: readme.as_deref().map(description).unwrap_or_default(),
            latest,
            versions,
            provider,
            calls_per_minute: stats.as_ref().map_or(0, |s| s.calls_per_minute),
            error_rate: stats.as_ref().map_or(0.0, |s| s.error_rate),
            p50_ms: stats.as_ref().and_then(|s| s.p50_ms),
            p95_ms: stats.as_ref().and_then(|s| s.p95_ms),
            subscribers: self.subscribers(service)?,
            installs: installs
                .get(service)
                .map(|list| {
                    list.iter()
                        .map(|i| {
                            format!(
                                "{} ({}, {})",
                                crate::subscriptions::entry_name(&i.app),
                                i.service,
                                i.version
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
            readme: if detail { readme } else { None },
            contract: if detail {
                latest_record
                    .and_then(|r| r.contract.as_deref())
                    .and_then(|c| serde_json::from_str(c).ok())
            } else {
                None
            },
            stats: if detail { stats } else { None },
        })
    }

    /// The service of `app` (same team as `service`) that runs `version`'s image behind a route:
    /// what `berth publish S:V --app APP` binds the market entry to.
    pub(crate) fn provider_service(
        &self,
        service: &str,
        version: &str,
        app: &str,
    ) -> Result<String, CpError> {
        if team::team_of(app) != team::team_of(service) {
            return Err(CpError::AppNotFound(app.into()));
        }
        let record = self
            .inner
            .store
            .get_version(service, version)?
            .ok_or_else(|| CpError::VersionNotFound(service.into(), version.into()))?;
        let a = self.inner.store.get_app(app)?;
        let spec: RevisionSpec = self.inner.store.get_revision(app, a.revision)?.spec;
        spec.images
            .iter()
            .filter(|(_, digest)| **digest == record.digest)
            .map(|(svc, _)| svc)
            .find(|svc| {
                spec.project
                    .services
                    .get(*svc)
                    .is_some_and(|s| !s.berth.routes.is_empty())
            })
            .cloned()
            .ok_or_else(|| {
                CpError::InvalidArgument(format!(
                    "application {app:?} runs no service of version {}:{version} behind a route (deploy it with an `x-berth.route` first)",
                    team::split_global(service).1
                ))
            })
    }

    /// Bind `service`'s market entry to `app_service` of `app` (after `publish`).
    pub(crate) fn bind_market(
        &self,
        service: &str,
        version: &str,
        app: &str,
        app_service: &str,
        actor: &str,
    ) -> Result<(), CpError> {
        self.inner
            .store
            .bind_market(service, app, app_service, version, actor)?;
        self.inner.refresh_market_logged();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::description;

    #[test]
    fn the_description_is_the_first_paragraph() {
        let readme = "# Orders\n\n[![ci](x)](y)\n\nThe orders API:\ncreate, list and refund.\n\nMore below.\n";
        assert_eq!(
            description(readme),
            "The orders API: create, list and refund."
        );
        assert_eq!(description("# Only a title\n"), "");
        let long = "x".repeat(400);
        assert_eq!(description(&long).chars().count(), 301);
    }
}
