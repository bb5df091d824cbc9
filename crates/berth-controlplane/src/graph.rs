//! `berth app graph` (docs/market.md#composition): what an application uses — the market entries
//! it subscribes to (with their provider instances) and the copies it installed — and who uses
//! it: the applications subscribed to the entries it serves. Names are `TEAM/APP` and
//! `TEAM/SERVICE`, since the edges cross teams.

use crate::installs::parse_origin;
use crate::subscriptions::entry_name;
use crate::{ControlPlane, CpError};
use berth_core::api::{AppGraph, GraphEdge};

impl ControlPlane {
    /// The graph of `app`.
    pub fn app_graph(&self, app: &str) -> Result<AppGraph, CpError> {
        let (_, spec) = self.current_spec(app)?;
        let store = &self.inner.store;
        let provider = |service: &str| -> Result<Option<String>, CpError> {
            Ok(store.market_binding(service)?.map(|b| entry_name(&b.app)))
        };
        let mut uses = Vec::new();
        for s in store.subscriptions_of(app)? {
            let services: Vec<String> = spec
                .project
                .services
                .iter()
                .filter(|(_, svc)| {
                    svc.berth.uses.iter().any(|u| {
                        crate::subscriptions::parse_entry(u).as_deref() == Some(&s.service)
                    })
                })
                .map(|(n, _)| n.clone())
                .collect();
            let app_of = provider(&s.service)?;
            if services.is_empty() {
                uses.push(edge(&s.service, app_of.clone(), "subscription", None));
            }
            for n in services {
                uses.push(edge(&s.service, app_of.clone(), "subscription", Some(n)));
            }
        }
        for (name, svc) in &spec.project.services {
            if let Some(origin) = &svc.berth.from_market {
                if parse_origin(origin).is_some() {
                    uses.push(GraphEdge {
                        entry: origin.clone(),
                        app: None,
                        via: "install".into(),
                        service: Some(name.clone()),
                    });
                }
            }
        }
        let mut used_by = Vec::new();
        for b in store.market_bindings()? {
            if b.app != app {
                continue;
            }
            for s in store.subscribers_of(&b.service)? {
                used_by.push(edge(
                    &b.service,
                    Some(entry_name(&s.app)),
                    "subscription",
                    Some(b.app_service.clone()),
                ));
            }
        }
        Ok(AppGraph {
            app: entry_name(app),
            uses,
            used_by,
        })
    }
}

fn edge(service: &str, app: Option<String>, via: &str, own: Option<String>) -> GraphEdge {
    GraphEdge {
        entry: entry_name(service),
        app,
        via: via.into(),
        service: own,
    }
}
