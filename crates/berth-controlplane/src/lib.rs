//! Berth's application layer: applications, revisions and the reconciler that makes Docker match
//! them. See `docs/architecture.md` for the whole picture.
//!
//! Flow of a change: an API call validates the request, resolves what it must (image IDs,
//! route ports), commits a new revision to the store (docs/style.md habit 4: before any Docker call)
//! and wakes the application's reconciler. The reconciler ([`pass`]) lists every Docker object
//! labelled with this instance and the application, asks the pure planner ([`plan`]) for the next
//! steps per service, executes them, and publishes the routing table the gateway serves from.
//! Docker events and readiness probes only wake it; a periodic resync catches anything missed.
//!
//! Rules it keeps: it acts only on objects labelled with its own `berth.instance`; it never acts
//! on a partial listing; all its tasks stop when the shutdown token is cancelled.

pub mod admission;
mod app_plan;
pub mod backup;
pub mod builds;
pub mod compose_build;
pub mod envs;
pub mod error;
pub mod events;
pub mod gateway_probes;
pub mod graph;
mod heal;
pub mod health;
mod holder;
pub mod images;
pub mod installs;
pub mod issuers;
pub mod lifecycle;
pub mod market;
mod networks;
pub mod node_gateway;
mod nodes;
mod pass;
pub mod plan;
pub mod policy;
mod ports;
pub mod preview;
pub mod quota;
pub mod reconcile;
mod release;
pub mod retention;
mod runtime;
pub mod service_removal;
pub mod spec;
pub mod startprobe;
pub mod stats;
pub mod subnets;
pub mod subscriptions;
mod swarm_runtime;
mod swarm_spec;
/// Whether this host's kernel has IPVS (Swarm's VIPs and ingress mesh need it; docs/swarm.md).
pub use swarm_spec::kernel_has_ipvs as swarm_kernel_has_ipvs;
pub mod webhooks;

pub use error::CpError;

use berth_core::api::{
    AppStatus, AppSummary, ApplyRequest, Instance, RevisionCreated, RevisionView, RollbackRequest,
    ScaleRequest,
};
use berth_core::{HttpRoute, PortForward, RoutingTable};
use berth_docker::Docker;
use berth_store::{RevisionStatus, Store};
use serde::de::IgnoredAny;
use spec::{labels, Naming, RevisionSpec};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Most replicas of one service.
pub const MAX_REPLICAS: u32 = 1000;

/// One replica's log as `berth logs` reads it: its slot (for the `service.slot | ` prefix) and
/// whose output it is, a container on the server's engine (local runtime) or a Swarm task read
/// through the manager from its node. The runtime picks the source
/// (`AppRuntime::logs_of`), so the API and the dashboard never ask which runtime runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogTarget {
    /// The replica's slot (0-based).
    pub slot: u32,
    /// Whose output.
    pub of: berth_docker::LogsOf,
}

/// What the control plane needs from the data plane (the gateway), without depending on it.
pub trait DataPlane: Send + Sync {
    /// Requests in flight to a replica (by container id); a drained replica is stopped at 0.
    fn in_flight(&self, endpoint_id: &str) -> usize;
    /// Published ports that could not be bound, with the reason.
    fn port_errors(&self) -> Vec<(SocketAddr, String)>;
    /// Version of the routing table the data plane is serving. A drained replica's in-flight
    /// count is final only once this reaches the version that removed it.
    fn table_version(&self) -> u64;
}

/// Settings of the control plane.
#[derive(Debug, Clone)]
pub struct Config {
    /// Labels added to every Docker object Berth creates (`--label`).
    pub extra_labels: BTreeMap<String, String>,
    /// Period of the full resync (every application reconciled even without events).
    pub resync: Duration,
    /// Default time a new replica of an update has to become ready.
    pub rollout_deadline: Duration,
    /// Least time a replica stays out of rotation before it is stopped. With the gateway in
    /// process, in-flight counts make draining exact and this only covers the table swap; with
    /// a separate gateway (`berth gateway`), whose counts the control plane cannot see, it is
    /// the whole drain.
    pub min_drain: Duration,
    /// Image retention keeps the newest N versions' images per service (plus deployed images
    /// and rollback targets).
    pub image_keep: usize,
    /// Period of the image retention pass (it also runs after each successful build).
    pub image_retention_period: Duration,
    /// Alert when the engine's image layers take more bytes than this.
    pub image_disk_alert: Option<u64>,
    /// Alert when a service has more images on the engine than this.
    pub image_count_alert: Option<u64>,
    /// Where application networks' subnets come from (`--network-pool`, `--network-prefix`).
    pub network_pool: subnets::NetworkPool,
    /// Where leased host ports and environments' port blocks come from (`--port-range`,
    /// docs/environments.md#ports-as-leases).
    pub port_range: (u16, u16),
    /// Which runtime runs applications (`--runtime`).
    pub runtime: RuntimeKind,
    /// Other nodes' engines by hostname, connected once at start (Swarm, `--node-engine
    /// NAME=URL`): images are loaded into them, and the node gateways run there when chosen.
    pub node_engines: BTreeMap<String, berth_docker::Docker>,
    /// The registry images are pushed to and pulled from by digest (Swarm, `--registry`).
    pub registry: Option<String>,
}

/// The runtime a server drives (docs/runtime.md, docs/swarm.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RuntimeKind {
    /// The local Docker engine: Berth plans every replica.
    #[default]
    Local,
    /// A Swarm manager's engine: one Swarm service per Compose service.
    Swarm,
}

/// The server's default `--port-range`.
pub const DEFAULT_PORT_RANGE: (u16, u16) = (20000, 29999);

impl Default for Config {
    fn default() -> Self {
        Config {
            extra_labels: BTreeMap::new(),
            resync: Duration::from_secs(5),
            rollout_deadline: Duration::from_secs(60),
            min_drain: Duration::from_millis(50),
            image_keep: 5,
            image_retention_period: Duration::from_secs(60),
            image_disk_alert: None,
            image_count_alert: None,
            network_pool: subnets::NetworkPool::default(),
            port_range: DEFAULT_PORT_RANGE,
            runtime: RuntimeKind::Local,
            node_engines: BTreeMap::new(),
            registry: None,
        }
    }
}

/// In-memory facts that Docker does not keep for us. Losing them (a restart) is safe: each
/// has a conservative default.
#[derive(Default)]
struct Memory {
    /// Replicas taken out of rotation: since when, and the table version without them.
    draining: HashMap<String, (Instant, u64)>,
    /// Restarts Berth made, per container.
    restarts: HashMap<String, RestartInfo>,
    /// When a pass first saw each exited container exited (`restart_policy.delay` counts from
    /// there).
    exited_since: HashMap<String, Instant>,
    /// Steps being executed (container ids or create keys): not planned again meanwhile.
    busy: HashSet<String>,
    /// When steps (and the containers creates made) last completed: a pass that listed Docker
    /// before that does not repeat them.
    done: HashMap<String, Instant>,
    /// Slots whose steps keep failing, per (app, service, slot): the planner holds their steps
    /// until the retry time ([`plan::SlotBackoff`]). Cleared by a step that succeeds, by a new
    /// revision and by an apply; lost on restart (the first attempt is then made at once).
    backoff: HashMap<(String, String, u32), StepBackoff>,
    /// Applications whose last reconcile passes failed (before planning: a listing, the store):
    /// the next pass waits the same backoff as a failing step, and the error is logged once.
    pass_failures: HashMap<String, StepBackoff>,
    /// When a slot of (app, service) last finished updating (for `update_config.delay`).
    slot_done: HashMap<(String, String), Instant>,
    /// `Services` mode: the revision each (app, service) was last ensured at by this server
    /// (`app_plan::AppMemory::ensured`); kept in the store (`ensured_services`) and read back
    /// at start.
    ensured: HashMap<(String, String), u64>,
    /// `Services` mode: services whose steps keep failing, per (app, service); the planner
    /// holds their next step until the retry time. Cleared by a success and a new revision.
    service_backoff: HashMap<(String, String), StepBackoff>,
    /// Last computed status per application.
    status: HashMap<String, AppStatus>,
    /// Per application: its routes and published ports (merged into the table).
    tables: BTreeMap<String, (Vec<HttpRoute>, Vec<PortForward>)>,
    /// Applications whose table entry reflects every replica's probe (see [`ControlPlane::synced`]).
    synced: HashSet<String>,
    /// JWT issuers in the table (see [`issuers`]).
    issuers: Vec<berth_core::policy::Issuer>,
    /// Per provider instance (application, service): its market entry's credential audience
    /// and subscribers, which the table's `auth: subscribers` routes carry ([`subscriptions`]).
    market: BTreeMap<(String, String), subscriptions::Subscribers>,
    /// Heals being timed (only with `berth_controlplane::heal=debug`; see [`heal`]).
    heals: heal::Traces,
}

/// A series of failed steps on one slot.
#[derive(Debug, Clone)]
struct StepBackoff {
    /// The revision the failures happened under; a new one starts over.
    revision: u64,
    failures: u32,
    /// First failure of the series.
    since: Instant,
    /// No step on the slot before this.
    next: Instant,
    /// The last failure's message.
    error: String,
}

/// First retry of a failed step after this, doubling per failure up to [`BACKOFF_CAP`].
const BACKOFF_START: Duration = Duration::from_millis(500);
/// Longest wait between two attempts of a failing step.
const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// Delay before the next attempt after `failures` failures in a row (1 → 0.5 s, 2 → 1 s, ...).
fn step_backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    BACKOFF_START
        .saturating_mul(1 << doublings)
        .min(BACKOFF_CAP)
}

/// The `Instant` of a wall-clock time in Unix milliseconds, given one moment (`now`, `wall`) on
/// both clocks. A time after `wall` (the clock went back) is `now`: the backoff then counts from
/// now, never less than it says. One further back than the monotonic clock reaches (the machine
/// booted since) is taken halfway back and halfway again until it is reached: later than it
/// was, so a backoff from it ends no sooner than it should.
fn instant_of(ms: i64, now: Instant, wall: std::time::SystemTime) -> Instant {
    let then = u64::try_from(ms)
        .map(|ms| std::time::UNIX_EPOCH + Duration::from_millis(ms))
        .unwrap_or(std::time::UNIX_EPOCH);
    let mut ago = wall.duration_since(then).unwrap_or(Duration::ZERO);
    loop {
        if let Some(t) = now.checked_sub(ago) {
            return t;
        }
        ago /= 2;
    }
}

/// Unix milliseconds of a wall-clock time (none before 1970 or past `i64`).
pub(crate) fn unix_ms(t: std::time::SystemTime) -> Option<i64> {
    let ms = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
    i64::try_from(ms).ok()
}

#[derive(Default, Clone, Copy)]
struct RestartInfo {
    count: u32,
    last_exit: Option<i64>,
    /// When Berth last restarted it.
    last_start: Option<Instant>,
}

pub(crate) struct Inner {
    store: Store,
    docker: Docker,
    naming: Naming,
    config: Config,
    table_tx: watch::Sender<Arc<RoutingTable>>,
    table_version: std::sync::atomic::AtomicU64,
    prober: health::Prober,
    /// Early runs of a starting replica's Docker healthcheck (`startprobe`).
    start_probes: startprobe::StartProbes,
    dataplane: Arc<dyn DataPlane>,
    started: std::time::Instant,
    own_issuer: std::sync::OnceLock<issuers::OwnIssuer>,
    builds: std::sync::OnceLock<builds::Builds>,
    /// Where backups are made (set by `enable_backups`).
    backups: std::sync::OnceLock<backup::Backups>,
    /// Uploaded Compose build contexts (set with the builds).
    contexts: std::sync::OnceLock<compose_build::ContextDir>,
    /// Where subscriptions' credentials go (set by `enable_subscriptions`).
    subscriptions: std::sync::OnceLock<subscriptions::SubscriptionConfig>,
    /// `mqtt://berth-gateway:PORT`: the MQTT broker as containers reach it (set by
    /// `enable_mqtt`; unset: `x-berth.mqtt` is refused).
    mqtt_url: std::sync::OnceLock<String>,
    runtime: std::sync::OnceLock<reconcile::Runtime>,
    mem: Mutex<Memory>,
    shutdown: CancellationToken,
    /// The platform events feed (`GET /api/v1/events`).
    events: events::Events,
    /// The gateways' figures per service and minute (docs/market.md).
    stats: stats::Stats,
    /// What the gateways on Swarm nodes report of the tasks they probe (docs/swarm.md).
    gateway_readiness: gateway_probes::GatewayReadiness,
    /// A task counted ready without a gateway's report was named in the log (once per server).
    no_gateway_warned: std::sync::atomic::AtomicBool,
    /// Held by `apply` from resolving image IDs until the revision is committed, and by image
    /// retention around each removal, so an image cannot be pinned and removed at once.
    image_gate: tokio::sync::Mutex<()>,
    /// Wakes the image retention pass (after a successful build).
    retention_wake: Arc<tokio::sync::Notify>,
    /// Held while an application's networks and volumes are looked up and made
    /// (`networks::ensure`), so concurrent create steps make each once.
    network_gate: tokio::sync::Mutex<()>,
    /// Berth's gateways on Swarm nodes (set by `enable_node_gateways`).
    node_gateways: std::sync::OnceLock<node_gateway::NodeGateways>,
    /// The network holders' image once made (`Some(None)`: this engine runs none), see `holder.rs`.
    pause_image: tokio::sync::Mutex<Option<Option<String>>>,
}

/// The control plane: cheap to clone, shared by the API handlers.
#[derive(Clone)]
pub struct ControlPlane {
    inner: Arc<Inner>,
}

impl Inner {
    fn mem(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.mem
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    fn wake(&self, app: &str) {
        if let Some(rt) = self.runtime.get() {
            rt.wake(app);
        }
    }
}

impl ControlPlane {
    /// Start the reconciler, the Docker event watcher and the periodic resync. Nothing acts
    /// before the first full listing of Berth's objects (each pass lists before it acts).
    pub fn start(
        store: Store,
        docker: Docker,
        config: Config,
        table_tx: watch::Sender<Arc<RoutingTable>>,
        dataplane: Arc<dyn DataPlane>,
        shutdown: CancellationToken,
    ) -> Result<ControlPlane, CpError> {
        let instance = store.instance_id()?;
        let inner = Arc::new_cyclic(|weak: &std::sync::Weak<Inner>| {
            let w = weak.clone();
            let wake: Arc<dyn Fn(&str) + Send + Sync> = Arc::new(move |app: &str| {
                if let Some(i) = w.upgrade() {
                    i.wake(app);
                }
            });
            let start_probes =
                startprobe::StartProbes::new(docker.clone(), wake.clone(), shutdown.clone());
            Inner {
                store,
                docker,
                naming: Naming { instance },
                config,
                table_tx,
                table_version: std::sync::atomic::AtomicU64::new(0),
                prober: health::Prober::new(wake, shutdown.clone()),
                start_probes,
                dataplane,
                started: std::time::Instant::now(),
                own_issuer: std::sync::OnceLock::new(),
                builds: std::sync::OnceLock::new(),
                backups: std::sync::OnceLock::new(),
                contexts: std::sync::OnceLock::new(),
                subscriptions: std::sync::OnceLock::new(),
                mqtt_url: std::sync::OnceLock::new(),
                runtime: std::sync::OnceLock::new(),
                mem: Mutex::default(),
                shutdown: shutdown.clone(),
                events: events::Events::default(),
                stats: stats::Stats::default(),
                gateway_readiness: gateway_probes::GatewayReadiness::default(),
                no_gateway_warned: std::sync::atomic::AtomicBool::new(false),
                image_gate: tokio::sync::Mutex::new(()),
                retention_wake: Arc::new(tokio::sync::Notify::new()),
                network_gate: tokio::sync::Mutex::new(()),
                node_gateways: std::sync::OnceLock::new(),
                pause_image: tokio::sync::Mutex::new(None),
            }
        });
        let weak = Arc::downgrade(&inner);
        let rt = reconcile::Runtime::spawn(
            move |app| {
                let weak = weak.clone();
                async move {
                    match weak.upgrade() {
                        Some(inner) => pass::run(&inner, &app).await,
                        None => reconcile::Action::Await,
                    }
                }
            },
            shutdown.clone(),
        );
        let _ = inner.runtime.set(rt);
        // Restarts recorded before this start, with when each replica was last restarted (so
        // its crash-loop backoff goes on where it was); the first resync forgets those of
        // containers that are gone.
        {
            let restarts = inner.store.restarts()?;
            let (now, wall) = (Instant::now(), std::time::SystemTime::now());
            let mut mem = inner.mem();
            for r in restarts {
                mem.restarts.insert(
                    r.container,
                    RestartInfo {
                        count: r.count,
                        last_exit: r.last_exit,
                        last_start: r.last_start_ms.map(|ms| instant_of(ms, now, wall)),
                    },
                );
            }
        }
        // The revisions services were last ensured at (Services mode), as before the restart.
        let ensured = inner.store.ensured()?;
        remember_ensured(&mut inner.mem(), ensured);
        let cp = ControlPlane {
            inner: Arc::clone(&inner),
        };
        cp.sync_leases()?;
        tokio::spawn(pass::watch_events(Arc::downgrade(&inner), shutdown.clone()));
        tokio::spawn(images::retention_loop(
            Arc::downgrade(&inner),
            inner.retention_wake.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(envs::recycle_loop(Arc::downgrade(&inner), shutdown.clone()));
        tokio::spawn(pass::resync_loop(Arc::downgrade(&inner), shutdown));
        Ok(cp)
    }

    /// Run Berth's gateway on the chosen Swarm nodes and connect it to every application's
    /// overlay network (`--runtime swarm`; docs/swarm.md#traffic-without-ipvs).
    pub fn enable_node_gateways(
        &self,
        config: node_gateway::NodeGatewayConfig,
        shutdown: CancellationToken,
    ) {
        node_gateway::spawn(&self.inner, config, shutdown);
    }

    /// On the local runtime: remove, in the background, the gateways and port relays this
    /// instance made on Swarm nodes when it ran `--runtime swarm` — on its own engine and on
    /// `node_engines` (`--node-engine NAME=URL`), the only engines it can reach
    /// (docs/swarm.md#traffic-without-ipvs).
    pub fn remove_node_gateways(
        &self,
        node_engines: BTreeMap<String, Docker>,
        shutdown: CancellationToken,
    ) {
        let mut engines = vec![("(DOCKER_HOST)".to_string(), self.inner.docker.clone())];
        engines.extend(node_engines);
        node_gateway::spawn_removal(&self.inner, engines, shutdown);
    }

    /// This server's instance id (the `berth.instance` label).
    #[must_use]
    pub fn instance(&self) -> &str {
        &self.inner.naming.instance
    }

    /// The Docker client.
    #[must_use]
    pub fn docker(&self) -> &Docker {
        &self.inner.docker
    }

    /// A global application name (docs/teams.md): the team's name is a valid application name
    /// and its team a valid team name.
    fn check_app_name(app: &str) -> Result<(), CpError> {
        let (team, env, name) = berth_core::team::split_app(app);
        if spec::valid_app_name(name)
            && berth_core::team::valid_team_name(team)
            && berth_core::team::valid_env_name(env)
        {
            Ok(())
        } else {
            Err(CpError::InvalidArgument(format!(
                "invalid application name {app:?}: use 1-40 lowercase letters, digits and '-'"
            )))
        }
    }

    fn current_spec(&self, app: &str) -> Result<(u64, RevisionSpec), CpError> {
        let a = self.inner.store.get_app(app)?;
        if a.deleting {
            return Err(CpError::AppNotFound(app.to_string()));
        }
        let rev = self
            .inner
            .store
            .get_revision::<RevisionSpec>(app, a.revision)?;
        Ok((a.revision, rev.spec))
    }

    /// Parse, validate and commit a new revision of `app` from a Compose bundle. Services with
    /// `build:` are built first ([`compose_build`]), from the contexts the request names; the
    /// contexts are deleted when the apply ends, whatever the outcome.
    pub async fn apply(&self, app: &str, req: ApplyRequest) -> Result<RevisionCreated, CpError> {
        self.apply_with_progress(app, req, &|_, _| {}).await
    }

    /// [`ControlPlane::apply`], handing each line of build output to `progress`
    /// (service, line) as it arrives.
    pub async fn apply_with_progress(
        &self,
        app: &str,
        mut req: ApplyRequest,
        progress: &(dyn Fn(&str, &str) + Send + Sync),
    ) -> Result<RevisionCreated, CpError> {
        let contexts = std::mem::take(&mut req.build_contexts);
        let result = self.apply_inner(app, req, &contexts, progress).await;
        self.discard_contexts(&contexts);
        result
    }

    async fn apply_inner(
        &self,
        app: &str,
        req: ApplyRequest,
        contexts: &BTreeMap<String, String>,
        progress: &(dyn Fn(&str, &str) + Send + Sync),
    ) -> Result<RevisionCreated, CpError> {
        Self::check_app_name(app)?;
        self.check_env_of(app)?;
        let bundle = berth_compose::Bundle {
            compose_files: req.compose_files,
            files: req.files,
            env: req.env,
            profiles: req.profiles,
            project_dir: req.project_dir,
        };
        if bundle.compose_files.is_empty() {
            return Err(CpError::InvalidArgument(
                "no Compose file in the request".into(),
            ));
        }
        let mut project = berth_compose::load(&bundle)?;
        if project.services.is_empty() {
            return Err(CpError::InvalidArgument(
                "the Compose files define no service (check `profiles`)".into(),
            ));
        }
        // Refused keys are refused before anything is built; `commit` checks again.
        self.admit(app, &project)?;
        // So are images of other teams (names, IDs, what the Dockerfiles read).
        self.check_images(app, &project, contexts).await?;
        // Installed copies of market entries: published versions only (docs/market.md#install).
        let market_pins = self.resolve_installs(&mut project)?;
        // Build what has `build:` (nothing is committed yet: a failed build changes nothing).
        let built = self
            .build_services(app, &project, contexts, progress)
            .await?;
        // Preflight: every image must exist locally; pin image IDs. Image retention waits
        // until the revision pinning them is committed (or this fails).
        let _gate = self.inner.image_gate.lock().await;
        let mut images = BTreeMap::new();
        let mut image_ports = BTreeMap::new();
        let mut missing = Vec::new();
        for (name, svc) in &project.services {
            let reference = built
                .get(name)
                .or_else(|| market_pins.get(name))
                .unwrap_or(&svc.image);
            match self.inner.docker.inspect_image(reference).await? {
                Some(img) => {
                    images.insert(name.clone(), img.id.clone());
                    let ports: Vec<u16> = img
                        .exposed_ports
                        .iter()
                        .filter_map(|p| p.strip_suffix("/tcp").and_then(|p| p.parse().ok()))
                        .collect();
                    image_ports.insert(name.clone(), ports);
                }
                None => {
                    if !missing.contains(&svc.image) {
                        missing.push(svc.image.clone());
                    }
                }
            }
        }
        if !missing.is_empty() {
            return Err(CpError::ImageMissing(missing));
        }
        let wires = self.wires_for(app, &project)?;
        let spec = RevisionSpec {
            project,
            images,
            image_ports,
            wires,
        };
        let mut spec = spec;
        self.fill_known_leases(app, &mut spec)?;
        self.validate(app, &spec)?;
        let prev = self.current_spec(app).ok();
        // An apply is the user saying "try again" (e.g. after freeing a taken name): failing
        // steps are retried now, not at the end of their backoff.
        self.inner
            .mem()
            .backoff
            .retain(|(a, _, _), _| a.as_str() != app);
        let change = spec::describe_change(prev.as_ref().map(|p| &p.1), &spec);
        let mut change = change;
        if let Some((rev, prev_spec)) = &prev {
            if serde_json::to_value(prev_spec).ok() == serde_json::to_value(&spec).ok() {
                // The same spec again: nothing to do, unless its rollout failed and paused (or
                // failed with nothing to roll back to): then applying it again is how a user
                // resumes, as `docker service update` resumes a paused Swarm update.
                let failed = self
                    .inner
                    .store
                    .get_revision::<IgnoredAny>(app, *rev)?
                    .status
                    == RevisionStatus::Failed;
                if !failed {
                    self.inner.wake(app);
                    return Ok(RevisionCreated {
                        app: app.into(),
                        revision: *rev,
                        changed: false,
                        change,
                        notes: self.runtime_notes(&spec.project),
                    });
                }
                change = format!("retry of failed revision {rev}");
            }
        }
        let mut created = self.commit(app, "apply", &change, &spec)?;
        created.notes = self.runtime_notes(&spec.project);
        self.tag_revision_images(app, created.revision, &built)
            .await;
        Ok(created)
    }

    /// The file's keys that this server's runtime does not apply, as notes for the user: on the
    /// local runtime, Swarm's scheduling keys (docs/compose.md#swarm-only-keys); on Swarm,
    /// `endpoint_mode: vip` where the kernel has no IPVS (docs/swarm.md#traffic-without-ipvs).
    fn runtime_notes(&self, project: &berth_compose::Project) -> Vec<String> {
        if self.inner.config.runtime == RuntimeKind::Swarm {
            return swarm_spec::vip_notes(project, swarm_spec::kernel_has_ipvs);
        }
        let mut notes = Vec::new();
        for (name, svc) in &project.services {
            let path = format!("services.{name}.deploy");
            if svc.global {
                notes.push(format!(
                    "{path}.mode: global applies only to Swarm; one replica runs on this engine"
                ));
            }
            for (set, key) in [
                (!svc.placement.is_empty(), "placement"),
                (svc.rollback_config.is_some(), "rollback_config"),
                (svc.endpoint_mode.is_some(), "endpoint_mode"),
                (
                    svc.resources.cpus_reservation.is_some(),
                    "resources.reservations.cpus",
                ),
            ] {
                if set {
                    notes.push(format!(
                        "{path}.{key} applies only to Swarm; ignored on this engine"
                    ));
                }
            }
        }
        notes
    }

    /// Every revision is made here (apply, scale, rollback): it runs admission on the project
    /// the revision would run, with the team's grants as they are now.
    fn commit(
        &self,
        app: &str,
        source: &str,
        change: &str,
        spec: &RevisionSpec,
    ) -> Result<RevisionCreated, CpError> {
        if self.inner.config.runtime == RuntimeKind::Swarm {
            let keys = swarm_spec::unsupported_keys(&spec.project);
            if !keys.is_empty() {
                return Err(CpError::Compose(berth_compose::ComposeError::Unsupported {
                    keys,
                }));
            }
        }
        self.admit(app, &spec.project)?;
        self.check_protected(app, spec)?;
        self.check_installs(&spec.project)?;
        // The wiring of subscriptions is the application's as it is now (a rollback to a
        // revision made before a subscription gets it too).
        let mut spec = spec.clone();
        spec.wires = self.wires_for(app, &spec.project)?;
        self.check_quota(app, &spec)?;
        self.lease_ports(app, &mut spec)?;
        let revision = self
            .inner
            .store
            .create_revision(app, source, change, &spec)?;
        tracing::info!(app, revision, source, change, "revision committed");
        if let Err(e) = self.sync_uses(app, &spec.project, &format!("x-berth.uses ({source})")) {
            tracing::warn!(app, error = %e, "subscriptions of x-berth.uses not brought in line");
        }
        self.inner.wake(app);
        Ok(RevisionCreated {
            app: app.into(),
            revision,
            changed: true,
            change: change.into(),
            notes: Vec::new(),
        })
    }

    /// Admission (docs/teams.md#admission): `admission_denied` listing every key of `project`
    /// that the grants of `app`'s team do not admit.
    fn admit(&self, app: &str, project: &berth_compose::Project) -> Result<(), CpError> {
        admission::admit(&self.inner, app, project)
    }

    /// Checks that need the resolved spec and the other applications: route ports, conflicts.
    fn validate(&self, app: &str, spec: &RevisionSpec) -> Result<(), CpError> {
        let invalid = |path: String, message: String| {
            CpError::Compose(berth_compose::ComposeError::Invalid { path, message })
        };
        let mut mine_routes = Vec::new();
        let team = berth_core::team::team_of(app);
        // The issuers this team's routes may name: `berth` and the team's own.
        let known_issuers: Vec<String> = self
            .issuer_names()
            .into_iter()
            .filter(|n| n == policy::BERTH_ISSUER || berth_core::team::team_of(n) == team)
            .collect();
        for (name, svc) in &spec.project.services {
            for (i, r) in svc.berth.routes.iter().enumerate() {
                let Some(berth_compose::AuthSpec::Jwt(jwt)) = &r.auth else {
                    continue;
                };
                for issuer in &jwt.issuers {
                    if !known_issuers.contains(&policy::issuer_global(team, issuer)) {
                        let known: Vec<&str> = known_issuers
                            .iter()
                            .map(|n| berth_core::team::local_name(team, n).unwrap_or(n))
                            .collect();
                        return Err(invalid(
                            format!("services.{name}.x-berth.route[{i}].auth.jwt.issuers"),
                            format!("unknown issuer {issuer:?} (add it with `berth issuer add`; known: {})", known.join(", ")),
                        ));
                    }
                }
            }
        }
        let mut mine_ports = Vec::new();
        for (name, svc) in &spec.project.services {
            for (i, r) in svc.berth.routes.iter().enumerate() {
                if r.port.is_none() && spec.default_port(name).is_none() {
                    return Err(invalid(
                        format!("services.{name}.x-berth.route[{i}].port"),
                        "the service exposes no single port; name the container port to route to"
                            .into(),
                    ));
                }
                let key = (
                    envs::route_host(app, r.host.as_deref()).map(|h| h.to_ascii_lowercase()),
                    normalize_prefix(&r.path_prefix),
                );
                if mine_routes.iter().any(|(k, _)| *k == key) {
                    return Err(invalid(
                        format!("services.{name}.x-berth.route[{i}]"),
                        "the same host and path prefix is routed twice".into(),
                    ));
                }
                mine_routes.push((key, name.clone()));
            }
            if let Some(h) = &svc.berth.health {
                if h.port.is_none()
                    && spec.default_port(name).is_none()
                    && svc.berth.routes.iter().all(|r| r.port.is_none())
                {
                    return Err(invalid(
                        format!("services.{name}.x-berth.health.port"),
                        "the service exposes no single port; name the container port to probe"
                            .into(),
                    ));
                }
            }
            for (i, p) in svc.ports.iter().enumerate() {
                // A port without a host port is leased at commit (`ports`); one held by
                // another application or process is refused there.
                let Some(published) = p.published.filter(|_| !p.leased) else {
                    continue;
                };
                let key = (published, p.protocol);
                if let Some((_, holder)) = mine_ports.iter().find(|(k, _)| *k == key) {
                    return Err(invalid(
                        format!("services.{name}.ports[{i}]"),
                        format!("host port {published} is already published by service {holder}"),
                    ));
                }
                mine_ports.push((key, name.clone()));
            }
            if svc.replicas > MAX_REPLICAS {
                return Err(invalid(
                    format!("services.{name}.deploy.replicas"),
                    format!("at most {MAX_REPLICAS} replicas"),
                ));
            }
            if svc.container_name.is_some() && svc.replicas > 1 {
                return Err(invalid(
                    format!("services.{name}.container_name"),
                    format!(
                        "a fixed container name allows one replica, not {}",
                        svc.replicas
                    ),
                ));
            }
        }
        for (other, ospec) in self.current_specs()? {
            if other == app {
                continue;
            }
            // Hosts, paths, host ports and container names are shared by every team: a
            // conflict with another team's application says so without naming it.
            let holder = |oname: &str| match berth_core::team::local_name(team, &other) {
                Some(local) => format!("application {local:?} (service {oname})"),
                None => "another team".to_string(),
            };
            for (oname, osvc) in &ospec.project.services {
                for r in &osvc.berth.routes {
                    let key = (
                        envs::route_host(&other, r.host.as_deref()).map(|h| h.to_ascii_lowercase()),
                        normalize_prefix(&r.path_prefix),
                    );
                    if let Some((_, svc)) = mine_routes.iter().find(|(k, _)| *k == key) {
                        return Err(CpError::RouteConflict(format!(
                            "route {}{} of service {svc} is held by {}",
                            key.0.as_deref().unwrap_or(""),
                            key.1,
                            holder(oname)
                        )));
                    }
                }
                for p in &osvc.ports {
                    if let Some(((port, _), svc)) = mine_ports.iter().find(|((port, proto), _)| {
                        Some(*port) == p.published && *proto == p.protocol
                    }) {
                        return Err(CpError::PortConflict(format!(
                            "host port {port} of service {svc} is held by {}",
                            holder(oname)
                        )));
                    }
                }
                if let (Some(cn), Some((mine, _))) = (
                    &osvc.container_name,
                    spec.project.services.iter().find(|(_, s)| {
                        s.container_name.is_some() && s.container_name == osvc.container_name
                    }),
                ) {
                    return Err(CpError::InvalidArgument(format!(
                        "services.{mine}.container_name: {cn:?} is used by {}",
                        holder(oname)
                    )));
                }
            }
        }
        Ok(())
    }

    /// Every application that is not being removed, with its current revision's spec (one
    /// whose revision cannot be read is left out).
    pub(crate) fn current_specs(&self) -> Result<Vec<(String, RevisionSpec)>, CpError> {
        let mut out = Vec::new();
        for a in self.inner.store.list_apps()? {
            if a.deleting {
                continue;
            }
            if let Ok(rev) = self
                .inner
                .store
                .get_revision::<RevisionSpec>(&a.name, a.revision)
            {
                out.push((a.name, rev.spec));
            }
        }
        Ok(out)
    }

    /// Set replica counts; a new revision that changes only those counts.
    pub fn scale(&self, app: &str, req: &ScaleRequest) -> Result<RevisionCreated, CpError> {
        let (rev, mut spec) = self.current_spec(app)?;
        if req.replicas.is_empty() {
            return Err(CpError::InvalidArgument(
                "name at least one SERVICE=N".into(),
            ));
        }
        let mut changes = Vec::new();
        for (svc, n) in &req.replicas {
            let s = spec
                .project
                .services
                .get_mut(svc)
                .ok_or_else(|| CpError::ServiceNotFound(app.into(), svc.clone()))?;
            if *n > MAX_REPLICAS {
                return Err(CpError::InvalidArgument(format!(
                    "{svc}: at most 1000 replicas"
                )));
            }
            if s.container_name.is_some() && *n > 1 {
                return Err(CpError::InvalidArgument(format!(
                    "{svc}: `container_name` is set, so it can have only one replica"
                )));
            }
            if s.replicas != *n {
                changes.push(format!("{svc}: replicas {} → {n}", s.replicas));
                s.replicas = *n;
            }
        }
        if changes.is_empty() {
            return Ok(RevisionCreated {
                app: app.into(),
                revision: rev,
                changed: false,
                change: "no change".into(),
                notes: Vec::new(),
            });
        }
        self.commit(app, "scale", &changes.join("; "), &spec)
    }

    /// Each service's replica count in the application's current revision: what `scale` sets
    /// (`status` shows the counts of the reconciler's last pass, which lag a change).
    pub fn desired_replicas(&self, app: &str) -> Result<BTreeMap<String, u32>, CpError> {
        let a = self.inner.store.get_app(app)?;
        if a.deleting {
            return Err(CpError::AppNotFound(app.to_string()));
        }
        // Only the replicas are decoded, not the whole project (the dashboard's overview asks
        // for every application's: docs/benchmarks.md §9).
        let rev = self
            .inner
            .store
            .get_revision::<RevisionSpec<ReplicasOnly>>(app, a.revision)?;
        Ok(rev
            .spec
            .project
            .services
            .into_iter()
            .map(|(name, s)| (name, s.replicas))
            .collect())
    }

    /// The Compose project of `app`'s current revision and its number (the dashboard's
    /// topology picture: services, `depends_on`, routes, published ports, what they use).
    pub fn current_project(&self, app: &str) -> Result<(u64, berth_compose::Project), CpError> {
        let (n, spec) = self.current_spec(app)?;
        Ok((n, spec.project))
    }

    /// Roll back to a revision (by default the newest converged one before the current).
    pub fn rollback(&self, app: &str, req: &RollbackRequest) -> Result<RevisionCreated, CpError> {
        if let Some(n) = req.to {
            error::stored_id("revision", n)?;
        }
        let (current, _) = self.current_spec(app)?;
        let target = match req.to {
            Some(n) => self.inner.store.get_revision(app, n)?,
            None => self
                .inner
                .store
                .last_converged_before(app, current)?
                .ok_or_else(|| {
                    CpError::InvalidArgument(format!(
                        "application {app:?} has no earlier converged revision to roll back to"
                    ))
                })?,
        };
        if target.number == current {
            return Err(CpError::InvalidArgument(format!(
                "revision {current} is already the current one"
            )));
        }
        self.commit(
            app,
            "rollback",
            &format!("rollback to revision {}", target.number),
            &target.spec,
        )
    }

    /// Remove an application: its containers and networks, and its named volumes with `volumes`.
    pub fn remove(&self, app: &str, volumes: bool) -> Result<(), CpError> {
        self.refuse_if_provider(app)?;
        self.inner.store.mark_deleting(app, volumes)?;
        self.inner.wake(app);
        Ok(())
    }

    /// Every application with its revision and health.
    pub fn apps(&self) -> Result<Vec<AppSummary>, CpError> {
        let mem = self.inner.mem();
        let mut out = Vec::new();
        for a in self.inner.store.list_apps()? {
            let rev = self
                .inner
                .store
                .get_revision::<RevisionSpec<ReplicasOnly>>(&a.name, a.revision)
                .ok();
            let services = rev.as_ref().map_or(0, |r| r.spec.project.services.len());
            let failed = rev
                .as_ref()
                .is_some_and(|r| r.status == RevisionStatus::Failed);
            let cached = mem.status.get(&a.name).filter(|s| s.revision == a.revision);
            let health = if a.deleting {
                "deleting".to_string()
            } else {
                match cached.map(|s| s.health.as_str()) {
                    Some(h) if !(failed && h == "progressing") => h.to_string(),
                    _ if failed => "failed".to_string(),
                    _ => "progressing".to_string(),
                }
            };
            let problem = cached
                .and_then(|s| {
                    s.services
                        .iter()
                        .find_map(|sv| sv.problem.as_ref().map(|p| format!("{}: {p}", sv.name)))
                })
                .or_else(|| {
                    rev.as_ref()
                        .filter(|_| failed)
                        .map(|r| r.message.clone())
                        .filter(|m| !m.is_empty())
                });
            out.push(AppSummary {
                name: a.name.clone(),
                revision: a.revision,
                revision_status: rev
                    .as_ref()
                    .map_or("pending", |r| status_str(r.status))
                    .to_string(),
                health,
                services,
                created_at: a.created_at,
                problem,
            });
        }
        Ok(out)
    }

    /// An application's progress (as of its last reconcile pass).
    pub fn status(&self, app: &str) -> Result<AppStatus, CpError> {
        let a = self.inner.store.get_app(app)?;
        let rev = self
            .inner
            .store
            .get_revision::<IgnoredAny>(app, a.revision)?;
        let cached = self.inner.mem().status.get(app).cloned();
        let mut st = cached.unwrap_or_else(|| AppStatus {
            name: app.into(),
            revision: a.revision,
            revision_status: String::new(),
            message: String::new(),
            health: "progressing".into(),
            converged: false,
            services: vec![],
        });
        if st.revision != a.revision {
            st.converged = false;
            st.health = "progressing".into();
        }
        if rev.status == RevisionStatus::Failed && st.health == "progressing" {
            st.health = "failed".into();
        }
        st.revision = a.revision;
        st.revision_status = status_str(rev.status).into();
        st.message = rev.message;
        if a.deleting {
            st.health = "deleting".into();
        }
        Ok(st)
    }

    /// Revisions, newest first.
    pub fn history(&self, app: &str) -> Result<Vec<RevisionView>, CpError> {
        self.inner.store.get_app(app)?;
        Ok(self
            .inner
            .store
            .list_revisions::<IgnoredAny>(app)?
            .into_iter()
            .map(|r| RevisionView {
                revision: r.number,
                created_at: r.created_at,
                source: r.source,
                change: r.change,
                status: status_str(r.status).into(),
                message: r.message,
                finished_at: r.finished_at,
            })
            .collect())
    }

    /// Every replica of an application (`berth ps`).
    pub async fn ps(&self, app: &str) -> Result<Vec<Instance>, CpError> {
        self.inner.store.get_app(app)?;
        pass::instances(&self.inner, app).await
    }

    /// The replicas of one service (discovery).
    pub async fn instances(&self, app: &str, service: &str) -> Result<Vec<Instance>, CpError> {
        let (_, spec) = self.current_spec(app)?;
        if !spec.project.services.contains_key(service) {
            return Err(CpError::ServiceNotFound(app.into(), service.into()));
        }
        Ok(pass::instances(&self.inner, app)
            .await?
            .into_iter()
            .filter(|i| i.service == service)
            .collect())
    }

    /// The logs `berth logs` shows, by slot: every replica's container on the local runtime (a
    /// rollout's old ones too), every current task on Swarm (the runtime says which: see
    /// [`LogTarget`]).
    pub async fn log_targets(&self, app: &str, service: &str) -> Result<Vec<LogTarget>, CpError> {
        let (_, spec) = self.current_spec(app)?;
        if !spec.project.services.contains_key(service) {
            return Err(CpError::ServiceNotFound(app.into(), service.into()));
        }
        use runtime::AppRuntime as _;
        let rt = runtime::for_server(&self.inner);
        let replicas = rt.observe(app).await?;
        Ok(runtime::log_targets(&replicas, service, |r| rt.logs_of(r)))
    }

    /// The output of one log target (`tail` lines back, following when asked). An engine that
    /// cannot read it answers an error here, or ends the stream with one.
    pub async fn open_logs(
        &self,
        target: &LogTarget,
        follow: bool,
        tail: Option<u64>,
        timestamps: bool,
    ) -> Result<berth_docker::LogStream, CpError> {
        Ok(self
            .inner
            .docker
            .logs_of(&target.of, follow, tail, timestamps)
            .await?)
    }

    /// Has the routing table caught up with what runs since this server started? True once every
    /// application has had a pass in which every running replica's probe had answered (or after
    /// 10 s). A separate gateway is sent no table before that, so a restarted control plane never
    /// hands it a table that is emptier than reality.
    #[must_use]
    pub fn synced(&self) -> bool {
        if self.inner.started.elapsed() > Duration::from_secs(10) {
            return true;
        }
        let Ok(apps) = self.inner.store.list_apps() else {
            return false;
        };
        let mem = self.inner.mem();
        apps.iter()
            .filter(|a| !a.deleting)
            .all(|a| mem.synced.contains(&a.name))
    }

    /// Follow the routing table: the current one at once, then every change.
    #[must_use]
    pub fn subscribe_table(&self) -> watch::Receiver<Arc<RoutingTable>> {
        self.inner.table_tx.subscribe()
    }

    /// The routing table as last published.
    #[must_use]
    pub fn routing_table(&self) -> Arc<RoutingTable> {
        self.inner.table_tx.borrow().clone()
    }

    /// Stop background work (also done by cancelling the shutdown token given to `start`).
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
    }
}

fn normalize_prefix(p: &str) -> String {
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        "/".into()
    } else {
        t.into()
    }
}

fn status_str(s: RevisionStatus) -> &'static str {
    match s {
        RevisionStatus::Pending => "pending",
        RevisionStatus::Converged => "converged",
        RevisionStatus::Failed => "failed",
        RevisionStatus::Superseded => "superseded",
    }
}

#[allow(dead_code)]
fn label_filters(inner: &Inner, app: Option<&str>) -> Vec<String> {
    let mut f = vec![format!("{}={}", labels::INSTANCE, inner.naming.instance)];
    if let Some(app) = app {
        f.push(format!("{}={app}", labels::APP));
    }
    f
}

/// A revision's project decoded only as far as each service's `replicas` (the rest of the
/// stored JSON is skipped): listing applications and their desired replicas without decoding
/// every Compose project.
#[derive(serde::Deserialize)]
struct ReplicasOnly {
    services: BTreeMap<String, ServiceReplicas>,
}

#[derive(serde::Deserialize)]
struct ServiceReplicas {
    replicas: u32,
}

/// The revisions services were ensured at, as the store kept them (`Store::ensured`).
fn remember_ensured(mem: &mut Memory, ensured: Vec<(String, String, u64)>) {
    for (app, service, revision) in ensured {
        mem.ensured.insert((app, service), revision);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stored revision read for its replicas only gives what the whole project says.
    #[test]
    fn replicas_only_reads_what_the_full_spec_says() {
        let mut b = berth_compose::Bundle {
            compose_files: vec!["compose.yaml".into()],
            project_dir: "/p".into(),
            ..berth_compose::Bundle::default()
        };
        b.files.insert(
            "compose.yaml".into(),
            "services:\n  web:\n    image: a\n    deploy: { replicas: 3 }\n  db:\n    image: b\n"
                .into(),
        );
        let json = serde_json::json!({
            "project": berth_compose::load(&b).unwrap(),
            "images": {},
        })
        .to_string();
        let full: RevisionSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(full.project.services["web"].replicas, 3);
        let light: RevisionSpec<ReplicasOnly> = serde_json::from_str(&json).unwrap();
        let got: BTreeMap<String, u32> = light
            .project
            .services
            .into_iter()
            .map(|(n, s)| (n, s.replicas))
            .collect();
        assert_eq!(got, BTreeMap::from([("db".into(), 1), ("web".into(), 3)]));
    }

    #[test]
    fn step_backoff_starts_at_half_a_second_doubles_and_is_capped() {
        let ms = |n| step_backoff(n).as_millis();
        assert_eq!(
            (1..=8).map(ms).collect::<Vec<_>>(),
            vec![500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]
        );
        assert_eq!(ms(u32::MAX), 30_000);
    }

    #[test]
    fn a_recorded_restart_time_becomes_the_same_moment_on_the_monotonic_clock() {
        use std::time::{SystemTime, UNIX_EPOCH};
        let now = Instant::now() + Duration::from_secs(3_600);
        let wall = UNIX_EPOCH + Duration::from_millis(1_800_000_000_000);
        let at = |ms| super::instant_of(ms, now, wall);
        // 5 s before the moment of reference.
        assert_eq!(at(1_799_999_995_000), now - Duration::from_secs(5));
        // In the future (the wall clock went back): now, so the backoff is never shorter.
        assert_eq!(at(1_800_000_009_000), now);
        // Further back than the monotonic clock reaches: some time before now, not a panic.
        assert!(at(0) <= now);
        assert!(at(-5) <= now);
        assert_eq!(super::unix_ms(wall), Some(1_800_000_000_000));
        assert_eq!(
            super::unix_ms(SystemTime::UNIX_EPOCH - Duration::from_secs(1)),
            None
        );
    }

    #[test]
    fn a_restarted_server_remembers_the_revisions_it_ensured_services_at() {
        let store = berth_store::Store::open_in_memory().unwrap();
        store.record_ensured("shop", "web", 2).unwrap();
        store.record_ensured("shop", "db", 1).unwrap();
        store.record_ensured("shop", "db", 3).unwrap();
        // What a new server reads at start.
        let mut mem = Memory::default();
        remember_ensured(&mut mem, store.ensured().unwrap());
        assert_eq!(mem.ensured.get(&("shop".into(), "web".into())), Some(&2));
        assert_eq!(mem.ensured.get(&("shop".into(), "db".into())), Some(&3));
        assert_eq!(mem.ensured.len(), 2);
    }
}
