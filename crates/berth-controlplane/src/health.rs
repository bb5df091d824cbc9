//! Berth's own readiness probes, run from the host against each replica's address — and, on
//! Swarm, by the `berth gateway` processes on the nodes against the tasks' overlay addresses
//! (`gateway_probes.rs`: the same [`Prober`], the same `probe_kind` rules).
//!
//! Why Berth probes itself: images built `FROM scratch` have no shell for a Compose healthcheck,
//! and Docker's healthcheck interval is far too slow for a replacement to be routable within a
//! second. While a replica is starting it is probed every 25 ms until the first success
//! (like Compose's `start_interval` and Kubernetes' startup probes), then at the service's
//! interval (docs/design-notes.md §2).
//!
//! Kinds: `x-berth.health.http` (any 2xx/3xx answer), a TCP connect to the routed port for
//! routed services without a health definition, or none (ready when running). A service with a
//! Compose `healthcheck` uses Docker's status instead (read by the reconciler, not here).
//!
//! Rules it keeps: one probe task per (container, start time) — a restart starts a fresh probe
//! from "starting"; every task is owned by the [`Prober`] and stops when its replica goes or the
//! server shuts down; a change of readiness wakes the application's reconciler.

use crate::plan::Readiness;
use crate::spec::RevisionSpec;
use berth_compose::Service;
use berth_core::EndpointProbe;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// How to probe a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeKind {
    /// `GET path` must answer 2xx or 3xx.
    Http {
        path: String,
        interval: Duration,
        timeout: Duration,
    },
    /// A TCP connect must succeed.
    Tcp { interval: Duration },
}

impl ProbeKind {
    /// As a routing table carries it, probing `port` (docs/swarm.md#traffic-without-ipvs).
    #[must_use]
    pub fn to_wire(&self, port: u16) -> EndpointProbe {
        match self {
            ProbeKind::Http {
                path,
                interval,
                timeout,
            } => EndpointProbe {
                http: Some(path.clone()),
                port,
                interval_ms: millis(*interval),
                timeout_ms: millis(*timeout),
            },
            ProbeKind::Tcp { interval } => EndpointProbe {
                http: None,
                port,
                interval_ms: millis(*interval),
                timeout_ms: millis(TCP_TIMEOUT),
            },
        }
    }

    /// A table's probe (the port is the probe's own); intervals and timeouts at least what
    /// `probe_kind` makes them, whatever a table says.
    #[must_use]
    pub fn from_wire(p: &EndpointProbe) -> ProbeKind {
        let interval = Duration::from_millis(p.interval_ms.max(100));
        match &p.http {
            Some(path) => ProbeKind::Http {
                path: path.clone(),
                interval,
                timeout: Duration::from_millis(p.timeout_ms.max(50)),
            },
            None => ProbeKind::Tcp { interval },
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The port probes and routes target for a service.
pub(crate) fn service_port(spec: &RevisionSpec, name: &str, svc: &Service) -> Option<u16> {
    svc.berth
        .health
        .as_ref()
        .and_then(|h| h.port)
        .or_else(|| svc.berth.routes.iter().find_map(|r| r.port))
        .or_else(|| spec.default_port(name))
}

/// How a service's replicas are probed, and the port: `x-berth.health.http`, else a TCP
/// connect to the routed port of a routed service (or to the first published TCP port), else
/// none (Docker's healthcheck, or running, decides). The one definition of these rules: the
/// control plane's probes on the local runtime and the gateways' on Swarm both follow it.
pub(crate) fn probe_kind(
    spec: &RevisionSpec,
    name: &str,
    svc: &Service,
) -> Option<(ProbeKind, u16)> {
    if svc.network_mode.is_some() {
        // `network_mode: host`/`none`: no address on an application network to probe (the
        // parser refuses routes, probes and ports with it); Docker's healthcheck, or running,
        // decides readiness.
        return None;
    }
    if let Some(h) = &svc.berth.health {
        let port = h.port.or_else(|| service_port(spec, name, svc))?;
        return Some((
            ProbeKind::Http {
                path: h.http.clone(),
                interval: Duration::from_millis(h.interval_ms.max(100)),
                timeout: Duration::from_millis(h.timeout_ms.max(50)),
            },
            port,
        ));
    }
    let uses_docker_health = svc.healthcheck.as_ref().is_some_and(|h| !h.disable);
    if uses_docker_health {
        return None;
    }
    if !svc.berth.routes.is_empty() {
        let port = service_port(spec, name, svc)?;
        return Some((
            ProbeKind::Tcp {
                interval: Duration::from_secs(2),
            },
            port,
        ));
    }
    if let Some(p) = svc.ports.first() {
        if p.protocol == berth_compose::Protocol::Tcp {
            return Some((
                ProbeKind::Tcp {
                    interval: Duration::from_secs(2),
                },
                p.target,
            ));
        }
    }
    None
}

/// Consecutive failures of a ready replica before it is declared unhealthy (replaced).
/// One failure already takes it out of rotation.
const FAILURES_TO_UNHEALTHY: u32 = 3;
const STARTING_INTERVAL: Duration = Duration::from_millis(25);
/// How long a TCP probe's connect may take.
const TCP_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a connect may take until the replica's first pass. A replica being started may not
/// have its address yet (a Swarm task is listed, and probed, from the moment it is given one,
/// before its container runs): the SYN sent then is lost, and the kernel sends the next one only
/// a second later, so one long attempt would hold the first pass up to a second after the
/// replica listens. Short attempts, 25 ms apart, each with a fresh SYN, catch it within ~125 ms.
/// A connect is one round trip; only a slow HTTP answer needs the probe's full timeout.
const STARTING_CONNECT: Duration = Duration::from_millis(100);

struct Probe {
    key: String,
    readiness: Readiness,
    /// The last reach check connected (always true without them).
    reachable: bool,
    ever_ready: bool,
    /// At least one probe has completed for this run.
    evaluated: bool,
    cancel: CancellationToken,
}

/// Runs probe tasks and remembers their results.
#[derive(Clone)]
pub struct Prober {
    inner: Arc<Mutex<HashMap<String, Probe>>>,
    wake: Arc<dyn Fn(&str) + Send + Sync>,
    shutdown: CancellationToken,
    /// Between a ready replica's probes, a TCP connect this often, with this timeout
    /// ([`Prober::with_reach`]).
    reach: Option<Duration>,
}

impl Prober {
    /// `wake(app)` is called whenever a replica's readiness changes.
    pub fn new(wake: Arc<dyn Fn(&str) + Send + Sync>, shutdown: CancellationToken) -> Prober {
        Prober {
            inner: Arc::default(),
            wake,
            shutdown,
            reach: None,
        }
    }

    /// Between the probes of a ready replica, check every `every` that a TCP connection to it
    /// opens within `every`; one that does not takes it out of rotation until one does (its
    /// readiness reads `Starting` meanwhile, and the change wakes as any other). For the
    /// gateways on Swarm (`gateway_probes.rs`), where a task on a node cut off the network
    /// answers nothing at all, not even a refusal: it is out of rotation within two `every`
    /// rather than the service's probe interval and timeout (docs/swarm.md).
    #[must_use]
    pub fn with_reach(mut self, every: Duration) -> Prober {
        self.reach = Some(every);
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Probe>> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Make sure a probe runs for this container's current run and return its readiness.
    /// `started_at` identifies the run: a new value restarts the probe from "starting".
    pub fn ensure(
        &self,
        app: &str,
        container: &str,
        started_at: &str,
        addr: SocketAddr,
        kind: &ProbeKind,
    ) -> Readiness {
        let key = format!("{started_at}|{addr}|{kind:?}");
        let mut map = self.lock();
        if let Some(p) = map.get(container) {
            if p.key == key {
                return p.readiness;
            }
            p.cancel.cancel();
        }
        let cancel = self.shutdown.child_token();
        map.insert(
            container.to_string(),
            Probe {
                key: key.clone(),
                readiness: Readiness::Starting,
                reachable: true,
                ever_ready: false,
                evaluated: false,
                cancel: cancel.clone(),
            },
        );
        drop(map);
        let this = self.clone();
        let (app, container, kind) = (app.to_string(), container.to_string(), kind.clone());
        tokio::spawn(async move {
            let mut failures = 0u32;
            let mut ever_ready = false;
            loop {
                // Until the first pass, each attempt's connect gives up quickly and the next
                // sends a fresh SYN: see STARTING_CONNECT.
                let connect = if ever_ready {
                    TCP_TIMEOUT
                } else {
                    STARTING_CONNECT
                };
                let (ok, interval) = match &kind {
                    ProbeKind::Http {
                        path,
                        interval,
                        timeout,
                    } => (
                        http_probe(addr, path, *timeout, connect.min(*timeout)).await,
                        *interval,
                    ),
                    ProbeKind::Tcp { interval } => (
                        tokio::time::timeout(connect, TcpStream::connect(addr))
                            .await
                            .is_ok_and(|r| r.is_ok()),
                        *interval,
                    ),
                };
                failures = if ok { 0 } else { failures + 1 };
                let changed = {
                    let mut map = this.lock();
                    let Some(p) = map.get_mut(&container).filter(|p| p.key == key) else {
                        return;
                    };
                    let next = if ok {
                        p.ever_ready = true;
                        Readiness::Ready
                    } else if p.ever_ready && failures >= FAILURES_TO_UNHEALTHY {
                        Readiness::Unhealthy
                    } else {
                        Readiness::Starting
                    };
                    let changed = next != p.readiness || !p.evaluated || (ok && !p.reachable);
                    p.evaluated = true;
                    p.readiness = next;
                    if ok {
                        p.reachable = true;
                    }
                    (changed, p.ever_ready)
                };
                ever_ready = changed.1;
                if changed.0 {
                    (this.wake)(&app);
                }
                let wait = if changed.1 {
                    interval
                } else {
                    STARTING_INTERVAL
                };
                let reach = this.reach.filter(|_| changed.1 && ok);
                if !this
                    .wait_reaching(&app, &container, &key, addr, wait, reach, &cancel)
                    .await
                {
                    return;
                }
            }
        });
        Readiness::Starting
    }

    /// Wait `wait` before the next probe; meanwhile, with `reach`, check the replica's reach
    /// every `reach` ([`Prober::with_reach`]). False when the probe is to stop.
    #[allow(clippy::too_many_arguments)]
    async fn wait_reaching(
        &self,
        app: &str,
        container: &str,
        key: &str,
        addr: SocketAddr,
        wait: Duration,
        reach: Option<Duration>,
        cancel: &CancellationToken,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let step = reach.map_or(left, |r| r.min(left));
            tokio::select! {
                () = cancel.cancelled() => return false,
                () = tokio::time::sleep(step) => {}
            }
            let Some(every) = reach.filter(|_| tokio::time::Instant::now() < deadline) else {
                return true;
            };
            let ok = tokio::time::timeout(every, TcpStream::connect(addr))
                .await
                .is_ok_and(|r| r.is_ok());
            let changed = {
                let mut map = self.lock();
                let Some(p) = map.get_mut(container).filter(|p| p.key == key) else {
                    return false;
                };
                let changed = p.reachable != ok;
                p.reachable = ok;
                changed
            };
            if changed {
                if !ok {
                    tracing::info!(app, replica = container, %addr, "replica out of reach: out of rotation until it answers");
                }
                (self.wake)(app);
            }
        }
    }

    /// Mark a replica not ready at once (it died); its probe restarts with its next run.
    pub fn mark_down(&self, container: &str) {
        if let Some(p) = self.lock().get_mut(container) {
            p.readiness = Readiness::Starting;
            p.key.clear();
            p.cancel.cancel();
        }
    }

    /// Stop probing a replica that is gone.
    pub fn forget(&self, container: &str) {
        if let Some(p) = self.lock().remove(container) {
            p.cancel.cancel();
        }
    }

    /// Stop probing every container not in `keep` (ids).
    pub fn retain(&self, keep: &dyn Fn(&str) -> bool) {
        self.lock().retain(|id, p| {
            let k = keep(id);
            if !k {
                p.cancel.cancel();
            }
            k
        });
    }
}

/// One HTTP/1.1 GET with `Connection: close`; success is a 2xx or 3xx status line.
async fn http_probe(addr: SocketAddr, path: &str, timeout: Duration, connect: Duration) -> bool {
    let attempt = async {
        let mut s = tokio::time::timeout(connect, TcpStream::connect(addr))
            .await
            .ok()?
            .ok()?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: berth-probe\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = [0u8; 16];
        let mut n = 0;
        while n < 12 {
            let r = s.read(&mut buf[n..]).await.ok()?;
            if r == 0 {
                break;
            }
            n += r;
        }
        let line = std::str::from_utf8(&buf[..n]).ok()?;
        let code: u16 = line.get(9..12)?.parse().ok()?;
        Some((200..400).contains(&code))
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

impl Prober {
    /// The last readiness of a container's probe, if one runs.
    #[must_use]
    pub fn peek(&self, container: &str) -> Option<Readiness> {
        self.lock().get(container).map(|p| {
            if p.readiness == Readiness::Ready && !p.reachable {
                Readiness::Starting
            } else {
                p.readiness
            }
        })
    }

    /// Has the probe of this container's current run completed at least once?
    #[must_use]
    pub fn evaluated(&self, container: &str) -> bool {
        self.lock().get(container).is_some_and(|p| p.evaluated)
    }
}
