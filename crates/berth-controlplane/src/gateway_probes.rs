//! Readiness probed from the gateways (Swarm; docs/swarm.md#traffic-without-ipvs): both ends.
//!
//! A Swarm task's address is on an overlay network, reached from the gateways on the nodes and
//! not from the control plane on its host. So where the gateways probe, the routing table lists
//! a probed service's running tasks with the probe ([`berth_core::EndpointProbe`]), each
//! gateway probes them with Berth's own probe loop ([`crate::health::Prober`]: the same rules
//! as on the local runtime) and serves only those that passed, and it reports what it sees
//! with its figures ([`berth_core::api::GatewayReport::readiness`]); the control plane reads
//! the reports for the tasks' readiness.
//!
//! Gateway side ([`TableProber`]), rules it keeps:
//! - One probe per endpoint id (a route and a port forward of one service share it), started
//!   when the endpoint appears in a table, stopped when it leaves it; a new address or probe
//!   starts it over from `starting`.
//! - An endpoint is served once its probe has passed, and not after a failure (one failure
//!   takes it out; three in a row after it had passed make it `unhealthy`).
//! - Between the probes of a served endpoint, a TCP connect every [`REACH`] must open within
//!   [`REACH`]: one that does not takes it out (reported `starting`) until one does. A node cut
//!   off the network refuses nothing, it is silent; the service's own probe would notice only
//!   after its interval and timeout (2 s and 1 s for a TCP probe).
//! - A route or port forward with no endpoint passing keeps those whose probe has not completed
//!   once yet (the gateway or the table is new: the first answer comes within milliseconds, and
//!   a request sent meanwhile is retried by the gateway's rules), never one whose probe failed:
//!   no endpoint at all answers 503, as a route with nothing ready does on the local runtime.
//!
//! Control-plane side (`GatewayReadiness`), rules it keeps:
//! - A report holds the whole readiness of one gateway, replacing its previous one; a change
//!   wakes the applications concerned. A gateway not heard of for [`REPORT_TTL`] (its reports
//!   come every second, and at once on a change) counts no more, so a dead gateway does not pin
//!   readiness.
//! - A task is ready when a live gateway says so, unhealthy when one says so and none says
//!   ready, starting when they all say starting. What no live gateway reports is for the pass
//!   to decide (`pass::gateway_readiness`: starting for a grace period, then running counts).

use crate::health::{ProbeKind, Prober};
use crate::plan::Readiness;
use berth_core::api::{EndpointReadiness, GatewayReport, ProbeState};
use berth_core::{Endpoint, RoutingTable};
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A gateway's report counts this long (three report periods).
pub const REPORT_TTL: Duration = Duration::from_secs(3);
/// Between the probes of a ready endpoint, the gateway checks this often that a connection to
/// it opens within as long ([`Prober::with_reach`]): a task on a node cut off the network is
/// out of rotation within twice this, whatever the service's probe interval.
pub const REACH: Duration = Duration::from_millis(250);

/// The gateway's probes of the endpoints its table asks it to probe.
#[derive(Clone)]
pub struct TableProber {
    prober: Prober,
    /// Endpoint id → its application, for the probes running now.
    probed: Arc<Mutex<HashMap<String, String>>>,
}

impl TableProber {
    /// `changed()` is called whenever an endpoint's readiness changes (serve a new table,
    /// report). Probes stop when `shutdown` is cancelled.
    pub fn new(changed: Arc<dyn Fn() + Send + Sync>, shutdown: CancellationToken) -> TableProber {
        TableProber {
            prober: Prober::new(Arc::new(move |_app: &str| changed()), shutdown).with_reach(REACH),
            probed: Arc::default(),
        }
    }

    /// Probe the endpoints `table` asks to probe (starting and stopping probes as endpoints
    /// come and go), and return the table to serve: with only the endpoints in rotation.
    pub fn apply(&self, table: &RoutingTable) -> RoutingTable {
        let mut probed: HashMap<String, String> = HashMap::new();
        let probes = table
            .routes
            .iter()
            .map(|r| (&r.app, &r.probe, &r.endpoints))
            .chain(table.ports.iter().map(|p| (&p.app, &p.probe, &p.endpoints)));
        for (app, probe, endpoints) in probes {
            let Some(probe) = probe else { continue };
            let kind = ProbeKind::from_wire(probe);
            for e in endpoints {
                if probed.contains_key(&e.id) {
                    continue; // one probe per endpoint
                }
                let addr = SocketAddr::new(e.addr.ip(), probe.port);
                self.prober.ensure(app, &e.id, "", addr, &kind);
                probed.insert(e.id.clone(), app.clone());
            }
        }
        self.prober.retain(&|id| probed.contains_key(id));
        *self
            .probed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = probed;
        in_rotation(table, &|id| {
            (
                self.prober.peek(id).unwrap_or(Readiness::Starting),
                self.prober.evaluated(id),
            )
        })
    }

    /// What the probes say now, for the report (sorted by id).
    #[must_use]
    pub fn readiness(&self) -> Vec<EndpointReadiness> {
        let probed = self
            .probed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut out: Vec<EndpointReadiness> = probed
            .into_iter()
            .map(|(id, app)| {
                let state = match self.prober.peek(&id) {
                    Some(Readiness::Ready) => ProbeState::Ready,
                    Some(Readiness::Unhealthy) => ProbeState::Unhealthy,
                    _ => ProbeState::Starting,
                };
                EndpointReadiness { app, id, state }
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }
}

/// The table to serve: a probed route's or port forward's endpoints that passed (each
/// `state(id)` is its readiness and whether its probe completed once); when none has, those not
/// probed to the end yet. Other routes and ports as they are; probes kept (they say nothing to
/// the data plane).
#[must_use]
pub fn in_rotation(
    table: &RoutingTable,
    state: &dyn Fn(&str) -> (Readiness, bool),
) -> RoutingTable {
    let pick = |endpoints: &[Endpoint]| -> Vec<Endpoint> {
        let ready: Vec<Endpoint> = endpoints
            .iter()
            .filter(|e| state(&e.id).0 == Readiness::Ready)
            .cloned()
            .collect();
        if !ready.is_empty() {
            return ready;
        }
        endpoints
            .iter()
            .filter(|e| !state(&e.id).1)
            .cloned()
            .collect()
    };
    let mut out = table.clone();
    for r in out.routes.iter_mut().filter(|r| r.probe.is_some()) {
        r.endpoints = pick(&r.endpoints);
    }
    for p in out.ports.iter_mut().filter(|p| p.probe.is_some()) {
        p.endpoints = pick(&p.endpoints);
    }
    out
}

/// One gateway's last report.
struct Seen {
    at: Instant,
    /// Endpoint id → (application, state).
    endpoints: HashMap<String, (String, ProbeState)>,
}

/// What the gateways report of the endpoints they probe.
#[derive(Default)]
pub(crate) struct GatewayReadiness {
    gateways: Mutex<HashMap<String, Seen>>,
    /// When the first gateway that probes reported to this server.
    first_report: Mutex<Option<Instant>>,
}

impl GatewayReadiness {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Seen>> {
        self.gateways
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Take a gateway's report, received at `now`; the applications whose tasks' readiness it
    /// (or a gateway whose reports expired meanwhile) changed.
    pub(crate) fn ingest(&self, report: &GatewayReport, now: Instant) -> BTreeSet<String> {
        let mut wake = BTreeSet::new();
        let mut gateways = self.lock();
        gateways.retain(|_, seen| {
            let live = now.saturating_duration_since(seen.at) <= REPORT_TTL;
            if !live {
                wake.extend(seen.endpoints.values().map(|(app, _)| app.clone()));
            }
            live
        });
        let Some(list) = &report.readiness else {
            return wake;
        };
        self.first_report
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_or_insert(now);
        let endpoints: HashMap<String, (String, ProbeState)> = list
            .iter()
            .map(|r| (r.id.clone(), (r.app.clone(), r.state)))
            .collect();
        let before = gateways.insert(
            report.gateway.clone(),
            Seen {
                at: now,
                endpoints: endpoints.clone(),
            },
        );
        let before = before.map(|s| s.endpoints).unwrap_or_default();
        for (id, (app, state)) in &endpoints {
            if before.get(id).map(|(_, s)| s) != Some(state) {
                wake.insert(app.clone());
            }
        }
        for (id, (app, _)) in &before {
            if !endpoints.contains_key(id) {
                wake.insert(app.clone());
            }
        }
        wake
    }

    /// How long (ms) a task made `age_ms` ago has had to pass the gateways' probes at `now`:
    /// no time before any gateway reported to this server (the gateways are made, their image
    /// loaded, after the server starts), so a rollout's deadline does not run out on a first
    /// deploy right after a start.
    pub(crate) fn probed_for_ms(&self, age_ms: u64, now: Instant) -> u64 {
        let first = *self
            .first_report
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        first.map_or(0, |t| {
            age_ms.min(
                u64::try_from(now.saturating_duration_since(t).as_millis()).unwrap_or(u64::MAX),
            )
        })
    }

    /// A task's readiness by the live gateways' word at `now`; `None` when none reports it.
    pub(crate) fn readiness(&self, id: &str, now: Instant) -> Option<Readiness> {
        let gateways = self.lock();
        let mut out: Option<Readiness> = None;
        for seen in gateways
            .values()
            .filter(|s| now.saturating_duration_since(s.at) <= REPORT_TTL)
        {
            let Some((_, state)) = seen.endpoints.get(id) else {
                continue;
            };
            let r = match state {
                ProbeState::Ready => return Some(Readiness::Ready),
                ProbeState::Unhealthy => Readiness::Unhealthy,
                ProbeState::Starting => Readiness::Starting,
            };
            if out != Some(Readiness::Unhealthy) {
                out = Some(r);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::{EndpointProbe, HttpRoute, PortForward, Protocol};

    fn ep(id: &str, last: u8) -> Endpoint {
        Endpoint {
            id: id.into(),
            addr: SocketAddr::from(([10, 0, 1, last], 8080)),
        }
    }

    fn route(service: &str, probe: Option<EndpointProbe>, endpoints: Vec<Endpoint>) -> HttpRoute {
        HttpRoute {
            app: "shop".into(),
            service: service.into(),
            host: None,
            path_prefix: format!("/{service}"),
            strip_prefix: false,
            endpoints,
            policy: berth_core::policy::RoutePolicy::default(),
            protocol: berth_core::UpstreamProtocol::Http1,
            upstream_prefix: None,
            probe,
        }
    }

    fn probe() -> EndpointProbe {
        EndpointProbe {
            http: Some("/healthz".into()),
            port: 8080,
            interval_ms: 500,
            timeout_ms: 1_000,
        }
    }

    fn ids(e: &[Endpoint]) -> Vec<&str> {
        e.iter().map(|e| e.id.as_str()).collect()
    }

    #[test]
    fn a_probed_route_serves_the_endpoints_that_passed_and_never_one_that_failed() {
        let table = RoutingTable {
            version: 7,
            routes: vec![
                route(
                    "web",
                    Some(probe()),
                    vec![ep("a", 1), ep("b", 2), ep("c", 3)],
                ),
                route("fresh", Some(probe()), vec![ep("n", 4), ep("f", 5)]),
                route("down", Some(probe()), vec![ep("d", 6)]),
                route("plain", None, vec![ep("x", 7)]),
            ],
            ports: vec![PortForward {
                app: "shop".into(),
                service: "web".into(),
                listen: SocketAddr::from(([0, 0, 0, 0], 18080)),
                protocol: Protocol::Tcp,
                endpoints: vec![ep("a", 1), ep("b", 2)],
                probe: Some(probe()),
            }],
            issuers: vec![],
        };
        // a passed; b failed once after passing; c is starting, probed once; n not probed yet;
        // f failed its first probe; d unhealthy; x has no probe (whatever it says).
        let state = |id: &str| match id {
            "a" => (Readiness::Ready, true),
            "b" | "c" | "f" => (Readiness::Starting, true),
            "n" => (Readiness::Starting, false),
            "d" => (Readiness::Unhealthy, true),
            _ => (Readiness::Unhealthy, true),
        };
        let out = in_rotation(&table, &state);
        assert_eq!(out.version, 7);
        assert_eq!(ids(&out.routes[0].endpoints), ["a"]);
        // Nothing passed yet: the one not probed to the end, not the one that failed.
        assert_eq!(ids(&out.routes[1].endpoints), ["n"]);
        // Nothing passing: nothing served (503).
        assert!(out.routes[2].endpoints.is_empty());
        assert_eq!(ids(&out.routes[3].endpoints), ["x"], "no probe: as listed");
        assert_eq!(ids(&out.ports[0].endpoints), ["a"]);
    }

    fn report(gateway: &str, entries: &[(&str, &str, ProbeState)]) -> GatewayReport {
        GatewayReport {
            gateway: gateway.into(),
            services: vec![],
            readiness: Some(
                entries
                    .iter()
                    .map(|(app, id, state)| EndpointReadiness {
                        app: (*app).into(),
                        id: (*id).into(),
                        state: *state,
                    })
                    .collect(),
            ),
        }
    }

    #[test]
    fn reports_make_readiness_wake_on_change_and_expire() {
        use ProbeState::{Ready, Starting, Unhealthy};
        let g = GatewayReadiness::default();
        let t0 = Instant::now();
        let apps = |v: &[&str]| v.iter().map(|s| (*s).to_string()).collect::<BTreeSet<_>>();
        assert_eq!(
            g.ingest(
                &report("g1", &[("shop", "t1", Starting), ("blog", "b1", Ready)]),
                t0
            ),
            apps(&["blog", "shop"])
        );
        assert_eq!(g.readiness("t1", t0), Some(Readiness::Starting));
        assert_eq!(g.readiness("b1", t0), Some(Readiness::Ready));
        assert_eq!(g.readiness("zz", t0), None, "reported by no gateway");
        // The same again: nothing to wake.
        let t1 = t0 + Duration::from_secs(1);
        assert!(g
            .ingest(
                &report("g1", &[("shop", "t1", Starting), ("blog", "b1", Ready)]),
                t1
            )
            .is_empty());
        // t1 passes at g1; b1 leaves g1's table.
        assert_eq!(
            g.ingest(&report("g1", &[("shop", "t1", Ready)]), t1),
            apps(&["blog", "shop"])
        );
        assert_eq!(g.readiness("b1", t1), None);
        // Another gateway finds t1 unhealthy: one gateway's "ready" wins (it serves t1).
        g.ingest(&report("g2", &[("shop", "t1", Unhealthy)]), t1);
        assert_eq!(g.readiness("t1", t1), Some(Readiness::Ready));
        // g1 goes silent: past the TTL only g2 counts.
        let t2 = t1 + REPORT_TTL + Duration::from_millis(1);
        g.ingest(&report("g2", &[("shop", "t1", Unhealthy)]), t2);
        assert_eq!(g.readiness("t1", t2), Some(Readiness::Unhealthy));
        // A report without readiness (the in-process gateway's) neither counts nor clears.
        let counters_only = GatewayReport {
            gateway: "in-process".into(),
            services: vec![],
            readiness: None,
        };
        assert!(g.ingest(&counters_only, t2).is_empty());
        assert_eq!(g.readiness("t1", t2), Some(Readiness::Unhealthy));
        // Every gateway silent: nothing is reported, and the first report after wakes the
        // applications of the expired ones.
        let t3 = t2 + REPORT_TTL + Duration::from_millis(1);
        assert_eq!(g.readiness("t1", t3), None);
        assert_eq!(g.ingest(&counters_only, t3), apps(&["shop"]));
    }

    #[test]
    fn a_tasks_time_to_pass_counts_from_the_first_gateways_report() {
        let g = GatewayReadiness::default();
        let t0 = Instant::now();
        assert_eq!(g.probed_for_ms(20_000, t0), 0, "no gateway yet");
        // A report without readiness is not a probing gateway's.
        g.ingest(
            &GatewayReport {
                gateway: "in-process".into(),
                services: vec![],
                readiness: None,
            },
            t0,
        );
        assert_eq!(g.probed_for_ms(20_000, t0), 0);
        g.ingest(&report("g1", &[]), t0);
        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(g.probed_for_ms(20_000, t1), 5_000, "since the first report");
        assert_eq!(
            g.probed_for_ms(2_000, t1),
            2_000,
            "a task made since: its age"
        );
        // Later reports do not move it.
        g.ingest(&report("g2", &[]), t1);
        assert_eq!(g.probed_for_ms(20_000, t1 + Duration::from_secs(1)), 6_000);
    }

    #[tokio::test]
    async fn the_gateways_prober_passes_an_answering_endpoint_and_reports_it() {
        // A TCP listener for "a"; nothing listens for "b" (a port just closed).
        let up = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = up.local_addr().unwrap().port();
        let down = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let down_port = down.local_addr().unwrap().port();
        drop(down);
        let accept = tokio::spawn(async move {
            loop {
                let _ = up.accept().await;
            }
        });
        let tcp = |port| EndpointProbe {
            http: None,
            port,
            interval_ms: 100,
            timeout_ms: 1_000,
        };
        let local = |id: &str| Endpoint {
            id: id.into(),
            addr: SocketAddr::from(([127, 0, 0, 1], 1)),
        };
        let table = RoutingTable {
            version: 1,
            routes: vec![
                route("a", Some(tcp(port)), vec![local("a")]),
                route("b", Some(tcp(down_port)), vec![local("b")]),
            ],
            ports: vec![],
            issuers: vec![],
        };
        let changes = Arc::new(tokio::sync::Notify::new());
        let notify = changes.clone();
        let shutdown = CancellationToken::new();
        let p = TableProber::new(Arc::new(move || notify.notify_one()), shutdown.clone());
        let first = p.apply(&table);
        // Nothing probed to the end yet: served as listed meanwhile.
        assert_eq!(ids(&first.routes[0].endpoints), ["a"]);
        let deadline = Instant::now() + Duration::from_secs(10);
        let served = loop {
            tokio::time::timeout(Duration::from_secs(1), changes.notified())
                .await
                .ok();
            let served = p.apply(&table);
            if served.routes[0].endpoints.len() == 1 && served.routes[1].endpoints.is_empty() {
                break served;
            }
            assert!(Instant::now() < deadline, "{served:?}");
        };
        assert_eq!(ids(&served.routes[0].endpoints), ["a"], "the probe passed");
        let r = p.readiness();
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].id.as_str(), r[0].state), ("a", ProbeState::Ready));
        assert_eq!((r[1].id.as_str(), r[1].state), ("b", ProbeState::Starting));
        // An endpoint that leaves the table is no longer probed nor reported.
        let mut fewer = table.clone();
        fewer.routes.truncate(1);
        p.apply(&fewer);
        assert_eq!(p.readiness().len(), 1);
        shutdown.cancel();
        accept.abort();
    }

    /// Accept and drop connections on `listener` until aborted (which closes it).
    fn accepting(listener: tokio::net::TcpListener) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                let _ = listener.accept().await;
            }
        })
    }

    /// How long until the prober's readiness satisfies `f` (at most 5 s).
    async fn until(
        p: &TableProber,
        changes: &tokio::sync::Notify,
        want: &str,
        f: impl Fn(&[EndpointReadiness]) -> bool,
    ) -> Duration {
        let started = Instant::now();
        loop {
            let r = p.readiness();
            if f(&r) {
                return started.elapsed();
            }
            assert!(started.elapsed() < Duration::from_secs(5), "{want}: {r:?}");
            tokio::time::timeout(Duration::from_millis(100), changes.notified())
                .await
                .ok();
        }
    }

    #[tokio::test]
    async fn a_served_endpoint_out_of_reach_leaves_rotation_long_before_its_next_probe() {
        let a = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let b = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let (a_task, b_task) = (accepting(a), accepting(b));
        // The service's own probe comes every 60 s: only the reach checks can notice.
        let probe = EndpointProbe {
            http: None,
            port: 0,
            interval_ms: 60_000,
            timeout_ms: 1_000,
        };
        let mut table = RoutingTable::default();
        let mut r = route("web", Some(probe.clone()), vec![]);
        // Each endpoint's probe port is the table's: one route per endpoint, sharing nothing.
        r.endpoints = vec![Endpoint {
            id: "a".into(),
            addr: a_addr,
        }];
        r.probe = Some(EndpointProbe {
            port: a_addr.port(),
            ..probe.clone()
        });
        let mut r2 = route("web", None, vec![]);
        r2.endpoints = vec![Endpoint {
            id: "b".into(),
            addr: b_addr,
        }];
        r2.probe = Some(EndpointProbe {
            port: b_addr.port(),
            ..probe
        });
        table.routes = vec![r, r2];
        let changes = Arc::new(tokio::sync::Notify::new());
        let notify = changes.clone();
        let shutdown = CancellationToken::new();
        let p = TableProber::new(Arc::new(move || notify.notify_one()), shutdown.clone());
        let served = |p: &TableProber| -> Vec<usize> {
            p.apply(&table)
                .routes
                .iter()
                .map(|r| r.endpoints.len())
                .collect()
        };
        p.apply(&table);
        until(&p, &changes, "both ready", |r| {
            r.iter().all(|e| e.state == ProbeState::Ready) && r.len() == 2
        })
        .await;
        assert_eq!(served(&p), [1, 1]);
        // "a" goes away: out of rotation within two reach periods, not 60 s.
        a_task.abort();
        let _ = a_task.await;
        let took = until(&p, &changes, "a out", |r| {
            r[0].state == ProbeState::Starting
        })
        .await;
        assert!(took < REACH * 3, "out of rotation after {took:?}");
        assert_eq!(served(&p), [0, 1], "a out, b still served");
        assert_eq!(p.readiness()[1].state, ProbeState::Ready);
        // Back at the same address: in rotation again without waiting for its probe.
        let again = tokio::net::TcpListener::bind(a_addr).await.unwrap();
        let a_task = accepting(again);
        let took = until(&p, &changes, "a back", |r| r[0].state == ProbeState::Ready).await;
        assert!(took < REACH * 3, "back after {took:?}");
        assert_eq!(served(&p), [1, 1]);
        shutdown.cancel();
        a_task.abort();
        b_task.abort();
    }
}
