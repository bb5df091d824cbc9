//! Host ports as leases (docs/environments.md#ports-as-leases).
//!
//! Rules it keeps:
//! - Every host port a revision publishes is a lease in the store, decided when the revision
//!   is committed (apply, scale, rollback, release, clone) and for the whole application at
//!   once ([`berth_store::Store::claim_ports`], one transaction): a port is never held by two
//!   owners, and of two commits racing for the last free port exactly one wins.
//! - A `ports:` entry without a host port gets one from its environment's pool (its block, or
//!   for `dev` and environments without one the server's `--port-range` less every block); it
//!   keeps it across revisions (same service, container port and protocol) and marks it
//!   `leased` in the stored spec, so a release or clone into another environment leases again.
//! - A fixed host port is refused (`port_conflict`) when another application holds it, or when
//!   something outside Berth does: Berth tries to bind it where the forwarder would serve it.
//!   A port the application holds already is not probed (its own forwarder is bound to it).
//! - Leases go with their application (`Store::delete_app`); leases of applications that no
//!   longer exist are swept with the environments.

use crate::error::CpError;
use crate::spec::RevisionSpec;
use crate::ControlPlane;
use berth_compose::Protocol;
use berth_core::api::PortLeaseView;
use berth_core::team::{self, DEV_ENV};
use berth_store::{PortPool, PortRefusal, PortWant};

fn proto(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    }
}

/// Can Berth bind `port` on every address (where the forwarder serves a port without a host
/// address)? Bound and released at once.
fn bindable(port: u16, protocol: &str) -> bool {
    let addr = std::net::SocketAddr::from(([0, 0, 0, 0], port));
    if protocol == "udp" {
        std::net::UdpSocket::bind(addr).is_ok()
    } else {
        std::net::TcpListener::bind(addr).is_ok()
    }
}

/// What `spec` publishes, in order: (service, index in its `ports`, want).
fn wants(spec: &RevisionSpec) -> Vec<(String, usize, PortWant)> {
    let mut out = Vec::new();
    for (name, svc) in &spec.project.services {
        for (i, p) in svc.ports.iter().enumerate() {
            out.push((
                name.clone(),
                i,
                PortWant {
                    service: name.clone(),
                    target: p.target,
                    protocol: proto(p.protocol).into(),
                    port: if p.leased { None } else { p.published },
                    fixed: !p.leased && p.published.is_some(),
                },
            ));
        }
    }
    out
}

/// Mark every host port of `spec` as leased, so committing it into another application (a
/// release, a clone) leases each again there (keeping a port that application already holds
/// for the same service and container port).
pub(crate) fn relocate(spec: &mut RevisionSpec) {
    for svc in spec.project.services.values_mut() {
        for p in &mut svc.ports {
            if p.published.is_some() {
                p.leased = true;
            }
        }
    }
}

impl ControlPlane {
    /// The pool `app`'s leased ports come from.
    fn port_pool(&self, app: &str) -> Result<PortPool, CpError> {
        let (lo, hi) = self.inner.config.port_range;
        let (t, env, _) = team::split_app(app);
        if env == DEV_ENV {
            return Ok(PortPool::Shared(lo, hi));
        }
        Ok(match self.inner.store.env(t, env)?.and_then(|e| e.ports) {
            Some((a, b)) => PortPool::Block(a, b),
            None => PortPool::Shared(lo, hi),
        })
    }

    /// Write the host ports `app` already holds into the leased entries of `spec` (nothing is
    /// claimed): an apply of an unchanged file then compares equal to the current revision.
    pub(crate) fn fill_known_leases(
        &self,
        app: &str,
        spec: &mut RevisionSpec,
    ) -> Result<(), CpError> {
        let mut held = self.inner.store.port_leases_of(app)?;
        for (name, svc) in &mut spec.project.services {
            for p in &mut svc.ports {
                if p.published.is_some() && !p.leased {
                    continue;
                }
                if let Some(pos) = held.iter().position(|l| {
                    l.service == *name && l.target == p.target && l.protocol == proto(p.protocol)
                }) {
                    p.published = Some(held.remove(pos).port);
                    p.leased = true;
                }
            }
        }
        Ok(())
    }

    /// Claim the host ports `spec` publishes for `app` and write the leased ones into it
    /// (`port_conflict`, `no_free_port`; nothing is held when refused).
    pub(crate) fn lease_ports(&self, app: &str, spec: &mut RevisionSpec) -> Result<(), CpError> {
        let list = wants(spec);
        let (t, env, _) = team::split_app(app);
        let pool = self.port_pool(app)?;
        let w: Vec<PortWant> = list.iter().map(|(_, _, w)| w.clone()).collect();
        let got = match self
            .inner
            .store
            .claim_ports(t, env, app, &w, pool, &bindable)?
        {
            Ok(got) => got,
            Err(PortRefusal::Held(l)) => {
                let holder = match team::local_name(t, &l.app) {
                    Some(local) => {
                        let (_, e, a) = team::split_app(local);
                        if e == DEV_ENV {
                            format!("application {a:?} (service {})", l.service)
                        } else {
                            format!(
                                "application {a:?} in environment {e:?} (service {})",
                                l.service
                            )
                        }
                    }
                    None => "another team".to_string(),
                };
                return Err(CpError::PortConflict(format!(
                    "host port {}/{} is held by {holder}",
                    l.port, l.protocol
                )));
            }
            Err(PortRefusal::Foreign { port, protocol }) => {
                return Err(CpError::PortConflict(format!(
                    "host port {port}/{protocol} is held by another process on this host"
                )));
            }
            Err(PortRefusal::NoFree { want, pool }) => {
                let (where_, lo, hi) = match pool {
                    PortPool::Block(lo, hi) => (format!("environment {env:?}'s block"), lo, hi),
                    PortPool::Shared(lo, hi) => ("the server's --port-range".to_string(), lo, hi),
                };
                let i = list
                    .iter()
                    .find(|(_, _, x)| *x == want)
                    .map_or(0, |(_, i, _)| *i);
                return Err(CpError::NoFreePort(format!(
                    "services.{}.ports[{i}]: no free host port for container port {}/{} in {where_} {lo}-{hi}",
                    want.service, want.target, want.protocol
                )));
            }
        };
        for ((name, i, w), port) in list.iter().zip(got) {
            if w.port.is_none() {
                if let Some(p) = spec
                    .project
                    .services
                    .get_mut(name)
                    .and_then(|s| s.ports.get_mut(*i))
                {
                    p.published = Some(port);
                    p.leased = true;
                }
            }
        }
        Ok(())
    }

    /// Record the ports every application's current revision publishes (a data directory of a
    /// release before leases has none) and free the leases of applications that are gone. Run
    /// at start, before the reconciler binds anything; a port two applications of old data
    /// both name stays with the first, and the other's is logged.
    pub(crate) fn sync_leases(&self) -> Result<(), CpError> {
        self.inner.store.free_orphan_leases()?;
        for (app, spec) in self.current_specs()? {
            let w: Vec<PortWant> = wants(&spec)
                .into_iter()
                .map(|(_, _, mut w)| {
                    // What runs keeps the port it runs with.
                    if w.port.is_none() {
                        w.port = spec
                            .project
                            .services
                            .get(&w.service)
                            .and_then(|s| s.ports.iter().find(|p| p.target == w.target))
                            .and_then(|p| p.published);
                    }
                    w
                })
                .filter(|w| w.port.is_some())
                .collect();
            let (t, env, _) = team::split_app(&app);
            let pool = self.port_pool(&app)?;
            if let Err(r) = self
                .inner
                .store
                .claim_ports(t, env, &app, &w, pool, &|_, _| true)?
            {
                tracing::warn!(app = %app, refusal = ?r, "a host port of the application is held by another; not leased");
            }
        }
        Ok(())
    }

    /// The host ports `team`'s applications hold (in environment `env`, or all).
    pub fn ports(&self, team_name: &str, env: Option<&str>) -> Result<Vec<PortLeaseView>, CpError> {
        Ok(self
            .inner
            .store
            .port_leases(Some(team_name), env)?
            .into_iter()
            .map(|l| PortLeaseView {
                port: l.port,
                protocol: l.protocol,
                env: l.env,
                app: team::split_app(&l.app).2.to_string(),
                service: l.service,
                target: l.target,
                fixed: l.fixed,
                since: l.since,
            })
            .collect())
    }
}
