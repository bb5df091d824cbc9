//! The runtime interface: what a container runtime does for Berth, and the local Docker
//! engine as its first implementation ([docs/runtime.md](../../../docs/runtime.md)).
//!
//! Berth decides (`app_plan`, `plan`); a runtime observes an application's replicas and carries
//! out steps. Rules every implementation keeps:
//! - `observe` lists every replica of the application or fails: never a partial listing.
//! - Only objects of this server (its instance id) and of the application are listed or touched.
//! - A create is idempotent: repeated after a crash it adopts the same replica, and a name held
//!   by anything else is an error, never adopted.
//! - `remove` of a replica that is already gone succeeds.
//! - A runtime converges **slots** (Berth plans each replica: `create_replica`, `start`,
//!   `restart`, `remove`) or **services** (the runtime places replicas and rolls updates itself:
//!   `observe_services`, `ensure_service`, `remove_service`); [`AppRuntime::converges`] says
//!   which, and the planner plans accordingly (docs/swarm.md#who-rolls-out).

use crate::app_plan::{Convergence, ObservedService};
use crate::plan::ReplicaState;
use crate::spec::{self, labels, RevisionSpec};
use crate::{CpError, Inner};
use berth_compose::Service;
use berth_docker::{ContainerInspect, DockerError, LogsOf};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;

/// One replica as a runtime sees it.
#[derive(Debug, Clone)]
pub(crate) struct Replica {
    pub id: String,
    /// Its name in the runtime (a container name).
    pub name: String,
    /// The image ID it runs.
    pub image: String,
    pub service: String,
    pub slot: u32,
    pub hash: String,
    pub revision: u64,
    pub state: ReplicaState,
    /// The runtime's word for its state (`running`, `exited`, ...), shown by `berth ps`.
    pub status: String,
    /// Its process runs.
    pub running: bool,
    /// RFC 3339.
    pub created: String,
    /// RFC 3339 (a probe restarts when this changes).
    pub started_at: String,
    /// The runtime's healthcheck status (`starting`, `healthy`, `unhealthy`), if it has one.
    pub health: Option<String>,
    /// The healthcheck the runtime runs (its test is also run early while the replica starts:
    /// `startprobe.rs`).
    pub healthcheck: Option<berth_docker::HealthConfig>,
    /// Its addresses, by network name.
    pub addresses: BTreeMap<String, IpAddr>,
    /// The node it runs on, for a runtime of several nodes (Swarm); `None` on the local engine.
    pub node: Option<String>,
    /// The runtime is stopping it (a Swarm task whose desired state is no longer `running`):
    /// it still runs but leaves rotation.
    pub stopping: bool,
}

/// A change a runtime reports.
#[derive(Debug, Clone)]
pub(crate) struct RuntimeEvent {
    /// The application to wake.
    pub app: Option<String>,
    pub replica: String,
    /// The replica stopped serving (died, was killed or stopped): out of rotation at once.
    pub down: bool,
    /// How long after it happened the runtime reported it, if the runtime says when.
    pub lag_ms: Option<u64>,
}

/// What a runtime does for Berth. Generic rather than object-safe: a server picks one runtime,
/// and `-> impl Future + Send` needs neither `async-trait` nor boxed futures.
pub(crate) trait AppRuntime: Clone + Send + Sync + 'static {
    /// Whether Berth plans this runtime's replicas (slots) or its services.
    fn converges(&self) -> Convergence {
        Convergence::Slots
    }

    /// `Services` mode: the application's services as the runtime runs them (spec hash, update
    /// state), or an error (never a partial listing).
    fn observe_services(
        &self,
        _app: &str,
    ) -> impl Future<Output = Result<Vec<ObservedService>, CpError>> + Send {
        async { Ok(Vec::new()) }
    }

    /// `Services` mode: create the service of the revision, or update it to the revision's
    /// spec (the runtime rolls the update out).
    fn ensure_service(
        &self,
        app: &str,
        _revision: u64,
        _spec: &RevisionSpec,
        service: &str,
    ) -> impl Future<Output = Result<(), CpError>> + Send {
        let what = format!("{app}/{service}");
        // Never asked: in `Slots` mode the planner plans no service steps.
        async move {
            Err(CpError::InvalidArgument(format!(
                "{what}: this runtime converges slots, not services"
            )))
        }
    }

    /// `Services` mode: remove the service (its replicas with it); gone already is fine.
    fn remove_service(
        &self,
        app: &str,
        service: &str,
    ) -> impl Future<Output = Result<(), CpError>> + Send {
        let what = format!("{app}/{service}");
        // Never asked: in `Slots` mode the planner plans no service steps.
        async move {
            Err(CpError::InvalidArgument(format!(
                "{what}: this runtime converges slots, not services"
            )))
        }
    }

    /// Every replica of the application, or an error (never a partial listing).
    fn observe(&self, app: &str) -> impl Future<Output = Result<Vec<Replica>, CpError>> + Send;

    /// Where `berth logs` reads a replica's output, or `None` for one it leaves out (a Swarm
    /// task that is being stopped, or has no container yet).
    fn logs_of(&self, replica: &Replica) -> Option<LogsOf>;

    /// Every replica of every application of this server, as (application, replica id).
    fn list_all(&self) -> impl Future<Output = Result<Vec<(String, String)>, CpError>> + Send;

    /// Create and start the replica of `service` in `slot` of the revision; returns its id.
    fn create_replica(
        &self,
        app: &str,
        revision: u64,
        spec: &RevisionSpec,
        service: &str,
        slot: u32,
    ) -> impl Future<Output = Result<String, CpError>> + Send;

    /// Start an existing replica (created, or exited).
    fn start(&self, id: &str) -> impl Future<Output = Result<(), CpError>> + Send;

    /// Restart a running replica, giving it `grace_secs` to stop.
    fn restart(
        &self,
        id: &str,
        grace_secs: u64,
    ) -> impl Future<Output = Result<(), CpError>> + Send;

    /// Stop (giving it `grace_secs`) and remove a replica; one already gone is fine.
    fn remove(&self, id: &str, grace_secs: u64)
        -> impl Future<Output = Result<(), CpError>> + Send;

    /// Remove what the application made besides its replicas: networks, and volumes if asked.
    fn remove_resources(
        &self,
        app: &str,
        volumes: bool,
    ) -> impl Future<Output = Result<(), CpError>> + Send;

    /// Changes to this server's replicas, from now on; the stream ends when the runtime's feed
    /// does (e.g. an engine restart), and the caller subscribes again.
    fn events(
        &self,
    ) -> impl Future<Output = Result<BoxStream<'static, RuntimeEvent>, CpError>> + Send;
}

/// The logs `berth logs` reads for `service`: each of its replicas `logs_of` (the runtime's
/// [`AppRuntime::logs_of`]) gives a source for, by slot (then source, so the order is stable).
pub(crate) fn log_targets(
    replicas: &[Replica],
    service: &str,
    logs_of: impl Fn(&Replica) -> Option<LogsOf>,
) -> Vec<crate::LogTarget> {
    let mut list: Vec<crate::LogTarget> = replicas
        .iter()
        .filter(|r| r.service == service)
        .filter_map(|r| {
            Some(crate::LogTarget {
                slot: r.slot,
                of: logs_of(r)?,
            })
        })
        .collect();
    list.sort_by(|a, b| (a.slot, &a.of).cmp(&(b.slot, &b.of)));
    list
}

/// Does this container event mean the replica stops serving? `die`, `oom`, `stop`, and a `kill`
/// with a signal that ends a process (KILL, TERM, INT, QUIT); a `kill` with another signal
/// (HUP or USR1 asking for a reload, say) leaves it in rotation.
fn goes_down(ev: &berth_docker::Event) -> bool {
    match ev.action.as_str() {
        "die" | "oom" | "stop" => true,
        "kill" => ev.attributes.get("signal").is_none_or(|s| {
            matches!(
                s.trim_start_matches("SIG"),
                "9" | "15" | "2" | "3" | "KILL" | "TERM" | "INT" | "QUIT"
            )
        }),
        _ => false,
    }
}

/// Milliseconds from `time_nano` (since the Unix epoch) to now; `None` if unknown.
pub(crate) fn lag_ms(time_nano: i64) -> Option<u64> {
    let at = u128::try_from(time_nano).ok().filter(|t| *t > 0)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos();
    u64::try_from(now.saturating_sub(at) / 1_000_000).ok()
}

/// The runtime a server drives, chosen once at its start (`berth server --runtime`).
#[derive(Clone)]
pub(crate) enum Runtime {
    Local(Local),
    Swarm(crate::swarm_runtime::Swarm),
}

/// This server's runtime.
pub(crate) fn for_server(inner: &Arc<Inner>) -> Runtime {
    match inner.config.runtime {
        crate::RuntimeKind::Local => Runtime::Local(Local::new(inner)),
        crate::RuntimeKind::Swarm => Runtime::Swarm(crate::swarm_runtime::Swarm::new(inner)),
    }
}

macro_rules! each {
    ($self:ident, $r:ident => $e:expr) => {
        match $self {
            Runtime::Local($r) => $e,
            Runtime::Swarm($r) => $e,
        }
    };
}

impl AppRuntime for Runtime {
    fn converges(&self) -> Convergence {
        each!(self, r => r.converges())
    }
    async fn observe_services(&self, app: &str) -> Result<Vec<ObservedService>, CpError> {
        each!(self, r => r.observe_services(app).await)
    }
    async fn ensure_service(
        &self,
        app: &str,
        revision: u64,
        spec: &RevisionSpec,
        service: &str,
    ) -> Result<(), CpError> {
        each!(self, r => r.ensure_service(app, revision, spec, service).await)
    }
    async fn remove_service(&self, app: &str, service: &str) -> Result<(), CpError> {
        each!(self, r => r.remove_service(app, service).await)
    }
    async fn observe(&self, app: &str) -> Result<Vec<Replica>, CpError> {
        each!(self, r => r.observe(app).await)
    }
    fn logs_of(&self, replica: &Replica) -> Option<LogsOf> {
        each!(self, r => r.logs_of(replica))
    }
    async fn list_all(&self) -> Result<Vec<(String, String)>, CpError> {
        each!(self, r => r.list_all().await)
    }
    async fn create_replica(
        &self,
        app: &str,
        revision: u64,
        spec: &RevisionSpec,
        service: &str,
        slot: u32,
    ) -> Result<String, CpError> {
        each!(self, r => r.create_replica(app, revision, spec, service, slot).await)
    }
    async fn start(&self, id: &str) -> Result<(), CpError> {
        each!(self, r => r.start(id).await)
    }
    async fn restart(&self, id: &str, grace_secs: u64) -> Result<(), CpError> {
        each!(self, r => r.restart(id, grace_secs).await)
    }
    async fn remove(&self, id: &str, grace_secs: u64) -> Result<(), CpError> {
        each!(self, r => r.remove(id, grace_secs).await)
    }
    async fn remove_resources(&self, app: &str, volumes: bool) -> Result<(), CpError> {
        each!(self, r => r.remove_resources(app, volumes).await)
    }
    async fn events(&self) -> Result<BoxStream<'static, RuntimeEvent>, CpError> {
        each!(self, r => r.events().await)
    }
}

/// The local Docker engine.
#[derive(Clone)]
pub(crate) struct Local {
    inner: Arc<Inner>,
}

impl Local {
    pub(crate) fn new(inner: &Arc<Inner>) -> Local {
        Local {
            inner: inner.clone(),
        }
    }
}

impl AppRuntime for Local {
    async fn observe(&self, app: &str) -> Result<Vec<Replica>, CpError> {
        observe(&self.inner, app).await
    }

    /// Every replica's container (a rollout's old ones too): it is on this engine.
    fn logs_of(&self, replica: &Replica) -> Option<LogsOf> {
        Some(LogsOf::Container(replica.id.clone()))
    }

    async fn list_all(&self) -> Result<Vec<(String, String)>, CpError> {
        let inner = &self.inner;
        let list = inner
            .docker
            .list_containers(&crate::label_filters(inner, None), true)
            .await?;
        Ok(list
            .into_iter()
            .map(|c| (c.labels.get(labels::APP).cloned().unwrap_or_default(), c.id))
            .collect())
    }

    async fn create_replica(
        &self,
        app: &str,
        revision: u64,
        spec: &RevisionSpec,
        service: &str,
        slot: u32,
    ) -> Result<String, CpError> {
        create_replica(&self.inner, app, revision, spec, service, slot).await
    }

    async fn start(&self, id: &str) -> Result<(), CpError> {
        // Its network holder, if it has one, keeps its namespace: only the replica starts.
        crate::holder::ready(&self.inner, id).await?;
        Ok(self.inner.docker.start_container(id).await?)
    }

    async fn restart(&self, id: &str, grace_secs: u64) -> Result<(), CpError> {
        crate::holder::ready(&self.inner, id).await?;
        Ok(self.inner.docker.restart_container(id, grace_secs).await?)
    }

    async fn remove(&self, id: &str, grace_secs: u64) -> Result<(), CpError> {
        let docker = &self.inner.docker;
        match docker.stop_container(id, grace_secs).await {
            Ok(()) | Err(DockerError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        match docker.remove_container(id, true, false).await {
            Ok(()) | Err(DockerError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        // Its network holder goes after it, so it kept its network while it stopped.
        crate::holder::remove_of(&self.inner, id).await
    }

    async fn remove_resources(&self, app: &str, volumes: bool) -> Result<(), CpError> {
        let inner = &self.inner;
        // Holders left without their replica would keep the networks in use.
        crate::holder::remove_all(inner, app).await?;
        let filters = crate::label_filters(inner, Some(app));
        for n in inner.docker.list_networks(&filters).await? {
            match inner.docker.remove_network(&n.id).await {
                Ok(()) | Err(DockerError::NotFound(_)) => crate::subnets::forget(inner, &n),
                Err(e) => return Err(e.into()),
            }
        }
        if volumes {
            for v in inner.docker.list_volumes(&filters).await? {
                match inner.docker.remove_volume(&v.name).await {
                    Ok(()) | Err(DockerError::NotFound(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    async fn events(&self) -> Result<BoxStream<'static, RuntimeEvent>, CpError> {
        let filters = crate::label_filters(&self.inner, None);
        let stream = self.inner.docker.events(&filters).await?;
        Ok(stream
            // An error ends the feed: the caller subscribes again and looks at everything.
            .take_while(|ev| std::future::ready(ev.is_ok()))
            .filter_map(|ev| {
                std::future::ready(match ev {
                    Ok(ev) if ev.typ == "container" => Some(RuntimeEvent {
                        app: ev.attributes.get(labels::APP).cloned(),
                        down: goes_down(&ev),
                        lag_ms: lag_ms(ev.time_nano),
                        // A network holder's event is its replica's: without the holder it
                        // has no network.
                        replica: match ev.attributes.get(labels::REPLICA) {
                            Some(r) if is_holder(&ev.attributes) => r.clone(),
                            _ => ev.id,
                        },
                    }),
                    _ => None,
                })
            })
            .boxed())
    }
}

fn state_of(i: &ContainerInspect) -> ReplicaState {
    match i.state.status.as_str() {
        "created" => ReplicaState::Created,
        "running" => ReplicaState::Running,
        "exited" => ReplicaState::Exited(i.state.exit_code),
        _ => ReplicaState::Other,
    }
}

fn is_holder(l: &BTreeMap<String, String>) -> bool {
    l.get(labels::ROLE).map(String::as_str) == Some(crate::holder::ROLE_HOLDER)
}

async fn observe(inner: &Inner, app: &str) -> Result<Vec<Replica>, CpError> {
    let filters = crate::label_filters(inner, Some(app));
    let list = inner.docker.list_containers(&filters, true).await?;
    let inspects =
        futures_util::future::join_all(list.iter().map(|c| inner.docker.inspect_container(&c.id)))
            .await;
    let mut all = Vec::with_capacity(list.len());
    for i in inspects {
        match i {
            Ok(i) => all.push(i),
            Err(DockerError::NotFound(_)) => {} // removed meanwhile
            Err(e) => return Err(e.into()),     // never act on a partial listing
        }
    }
    // Belt and braces: the filter already guarantees these.
    all.retain(|i| {
        i.labels.get(labels::INSTANCE) == Some(&inner.naming.instance)
            && i.labels.get(labels::APP).map(String::as_str) == Some(app)
    });
    let (holders, replicas): (Vec<ContainerInspect>, Vec<ContainerInspect>) =
        all.into_iter().partition(|i| is_holder(&i.labels));
    // A holder whose replica is gone (removed behind Berth's back) is an orphan: the replica is
    // created before its holder, so a listed holder's replica is listed too if it exists.
    for h in &holders {
        let of = h.labels.get(labels::REPLICA);
        if !replicas.iter().any(|r| Some(&r.id) == of) {
            tracing::info!(app, holder = %h.name.trim_start_matches('/'), "removing an orphaned network holder");
            // Best effort: a listing is not failed by a cleanup (the next pass tries again).
            if let Err(e) = crate::holder::remove_container(inner, &h.id).await {
                tracing::warn!(app, error = %e, "cannot remove an orphaned network holder");
            }
        }
    }
    let mut out = Vec::with_capacity(replicas.len());
    for inspect in replicas {
        let l = &inspect.labels;
        // With a network holder the replica's network is the holder's: its addresses are the
        // holder's, and without a running holder of its own the replica is down, whatever its
        // process does (`holder::ready` makes the holder again before it starts).
        let holder = l.get(labels::HOLDER).map(|name| {
            holders.iter().find(|h| {
                h.name.trim_start_matches('/') == name
                    && h.labels.get(labels::REPLICA) == Some(&inspect.id)
            })
        });
        let cut_off = matches!(holder, Some(h) if !h.is_some_and(|h| {
            h.state.running && !crate::holder::stale(&inspect, h)
        }));
        let (state, status, running) = if cut_off && inspect.state.running {
            (ReplicaState::Exited(137), "exited".to_string(), false)
        } else {
            (
                state_of(&inspect),
                inspect.state.status.clone(),
                inspect.state.running,
            )
        };
        let net = match holder {
            Some(Some(h)) if !cut_off => &h.networks,
            Some(_) => &BTreeMap::new(),
            None => &inspect.networks,
        };
        let addresses = net
            .iter()
            .filter_map(|(name, ep)| Some((name.clone(), ep.ip_address.parse().ok()?)))
            .collect();
        out.push(Replica {
            id: inspect.id.clone(),
            name: inspect.name.trim_start_matches('/').to_string(),
            image: inspect.image.clone(),
            service: l.get(labels::SERVICE).cloned().unwrap_or_default(),
            slot: l
                .get(labels::SLOT)
                .and_then(|s| s.parse().ok())
                .unwrap_or(u32::MAX),
            hash: l.get(labels::HASH).cloned().unwrap_or_default(),
            revision: l
                .get(labels::REVISION)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            state,
            status,
            running,
            created: inspect.created.clone(),
            started_at: inspect.state.started_at.clone(),
            health: inspect.state.health.clone(),
            healthcheck: inspect.healthcheck.clone(),
            addresses,
            node: None,
            stopping: false,
        });
    }
    Ok(out)
}

async fn create_replica(
    inner: &Inner,
    app: &str,
    revision: u64,
    spec: &RevisionSpec,
    service: &str,
    slot: u32,
) -> Result<String, CpError> {
    let svc = spec
        .project
        .services
        .get(service)
        .ok_or_else(|| CpError::ServiceNotFound(app.into(), service.into()))?;
    let hash = spec.service_hash(service);
    let name = svc
        .container_name
        .clone()
        .unwrap_or_else(|| inner.naming.container(app, service, slot, &hash));
    // Networks and volumes are made here, in the step, so a failure is this step's error.
    let resolved = crate::networks::ensure(inner, app, spec).await?;
    let mut body = spec::container_spec(
        &inner.naming,
        spec,
        app,
        revision,
        service,
        svc,
        slot,
        &hash,
        &inner.config.extra_labels,
    );
    resolved.apply(&mut body);
    // A network holder owns the replica's namespace (`holder.rs`): created after the replica,
    // which joins it by name.
    let holder_name = crate::holder::name(inner, app, service, slot, &hash);
    let mut holder = if crate::holder::applies(&body) {
        crate::holder::image(inner)
            .await
            .map(|image| crate::holder::split(&mut body, &holder_name, &image))
    } else {
        None
    };
    let id = match inner.docker.create_container(&name, &body).await {
        Ok(id) => id,
        Err(DockerError::Conflict(_)) => {
            // A create repeated after a crash: adopt ours, never touch anyone else's. Anything
            // else holding the name is an error (reported, retried with a backoff): returning
            // as if created would make the next pass plan the same create at once.
            let existing = inner.docker.inspect_container(&name).await?;
            let l = &existing.labels;
            let taken = |holder: String| CpError::NameTaken {
                name: name.clone(),
                holder,
            };
            if l.get(labels::INSTANCE) != Some(&inner.naming.instance) {
                return Err(taken("a container Berth does not manage".into()));
            }
            let other_app = l.get(labels::APP).map_or("", String::as_str);
            if other_app != app {
                // Another team's application is not named (docs/teams.md).
                let (team, _) = berth_core::team::split_global(app);
                return Err(taken(match berth_core::team::local_name(team, other_app) {
                    Some(other) => format!("a container of application {other:?}"),
                    None => "a container of another team".into(),
                }));
            }
            let same_replica = l.get(labels::SERVICE).map(String::as_str) == Some(service)
                && l.get(labels::SLOT) == Some(&slot.to_string())
                && l.get(labels::HASH) == Some(&hash);
            if !same_replica {
                // Ours, of another spec (a fixed container_name updated start-first): the
                // planner removes it once its slot allows.
                return Err(taken(format!(
                    "another replica of this application ({} {}, revision {})",
                    l.get(labels::SERVICE).map_or("", String::as_str),
                    l.get(labels::SLOT).map_or("", String::as_str),
                    l.get(labels::REVISION).map_or("", String::as_str),
                )));
            }
            if existing.labels.get(labels::HOLDER) != Some(&holder_name) {
                // Adopted as it was made (before holders, or on an engine without them).
                holder.take();
            }
            existing.id
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(h) = holder {
        crate::holder::create(inner, &id, &holder_name, h).await?;
    }
    if let Some(tar) = files_tar(spec, svc) {
        inner.docker.put_archive(&id, "/", tar).await?;
    }
    tracing::info!(app, service, slot, container = %crate::pass::short(&id), "starting new replica");
    inner.docker.start_container(&id).await?;
    Ok(id)
}

/// File-based secrets (`/run/secrets/NAME`) and configs (`/NAME`) as a tar to upload before start.
fn files_tar(spec: &RevisionSpec, svc: &Service) -> Option<Vec<u8>> {
    let mut files: Vec<(String, &str, u32)> = Vec::new();
    for r in &svc.secrets {
        if let Some(s) = spec.project.secrets.get(&r.source) {
            let target = r.target.clone().unwrap_or_else(|| r.source.clone());
            let path = if target.starts_with('/') {
                target
            } else {
                format!("/run/secrets/{target}")
            };
            files.push((path, &s.content, 0o444));
        }
    }
    for r in &svc.configs {
        if let Some(c) = spec.project.configs.get(&r.source) {
            let target = r.target.clone().unwrap_or_else(|| format!("/{}", r.source));
            files.push((target, &c.content, 0o444));
        }
    }
    if files.is_empty() {
        return None;
    }
    let mut b = tar::Builder::new(Vec::new());
    for (path, content, mode) in files {
        let rel = path.trim_start_matches('/');
        let mut h = tar::Header::new_gnu();
        h.set_size(content.len() as u64);
        h.set_mode(mode);
        h.set_cksum();
        if b.append_data(&mut h, rel, content.as_bytes()).is_err() {
            return None;
        }
    }
    b.into_inner().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(action: &str, signal: Option<&str>) -> berth_docker::Event {
        let mut ev = berth_docker::Event {
            typ: "container".into(),
            action: action.into(),
            ..Default::default()
        };
        if let Some(s) = signal {
            ev.attributes.insert("signal".into(), s.into());
        }
        ev
    }

    #[test]
    fn a_replica_goes_down_on_death_and_ending_signals_only() {
        for (action, signal, down) in [
            ("die", None, true),
            ("oom", None, true),
            ("stop", None, true),
            ("kill", Some("9"), true),
            ("kill", Some("15"), true),
            ("kill", Some("SIGTERM"), true),
            ("kill", None, true),
            ("kill", Some("1"), false),
            ("kill", Some("10"), false),
            ("kill", Some("SIGHUP"), false),
            ("start", None, false),
            ("health_status: healthy", None, false),
        ] {
            assert_eq!(
                goes_down(&event(action, signal)),
                down,
                "{action} {signal:?}"
            );
        }
    }

    #[test]
    fn lag_is_measured_from_the_event_time() {
        assert_eq!(lag_ms(0), None);
        assert_eq!(lag_ms(-5), None);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let lag = lag_ms(i64::try_from(now).unwrap() - 250_000_000).unwrap();
        assert!((250..5_000).contains(&lag), "{lag}");
    }
}
