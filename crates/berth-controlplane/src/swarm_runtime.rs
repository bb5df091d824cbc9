//! The Swarm runtime (docs/swarm.md): a Swarm manager's engine, in `Services` mode. Berth
//! ensures one Swarm service per Compose service (`swarm_spec.rs`) and observes its tasks as
//! replicas; Swarm places them and rolls updates out.
//!
//! Rules it keeps (besides those of every runtime, `runtime.rs`):
//! - Services, their tasks and overlay networks are found by the labels Berth puts on them
//!   (instance, app); a task's spec hash and revision come from its container labels, which
//!   each task's spec keeps, so old and new tasks are told apart during an update.
//! - Replicas (tasks) listed are those Swarm wants running or that still run; a task's slot is
//!   Swarm's slot less one (Berth's slots count from 0); its address is on its overlay network.
//! - Berth never places, restarts or removes a task itself: the slot calls are refused.
//! - Events: the manager's cluster events for services and nodes wake the applications they
//!   concern. A service's event names only the service, so names map to applications through
//!   the labels of this server's services (listed again when a name of ours is not known yet);
//!   a node's event wakes every application with a service. Swarm sends no event when a task
//!   changes state, so a converging application is still looked at again every 250 ms.

use crate::app_plan::{Convergence, ObservedService, UpdateState};
use crate::plan::ReplicaState;
use crate::runtime::{AppRuntime, Replica, RuntimeEvent};
use crate::spec::{labels, RevisionSpec};
use crate::{swarm_spec, CpError, Inner};
use berth_docker::swarm::models::{Service, ServiceUpdateStatusStateEnum, TaskState};
use berth_docker::swarm::{ObjectKind, SwarmTask};
use berth_docker::{DockerError, LogsOf};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// A Swarm manager's engine (the server's `DOCKER_HOST`).
#[derive(Clone)]
pub(crate) struct Swarm {
    inner: Arc<Inner>,
}

impl Swarm {
    pub(crate) fn new(inner: &Arc<Inner>) -> Swarm {
        Swarm {
            inner: inner.clone(),
        }
    }

    async fn services(&self, app: Option<&str>) -> Result<Vec<Service>, CpError> {
        let filters = crate::label_filters(&self.inner, app);
        Ok(self.inner.docker.list_services(&filters).await?)
    }
}

fn refused() -> CpError {
    CpError::InvalidArgument(
        "the Swarm runtime does not place, start or remove replicas: Swarm does".into(),
    )
}

fn label<'a>(s: &'a Service, key: &str) -> Option<&'a str> {
    s.spec
        .as_ref()?
        .labels
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

fn state_of(t: &SwarmTask) -> (ReplicaState, String) {
    let status = t.task.status.as_ref();
    let state = status.and_then(|s| s.state);
    let word = state.map_or_else(String::new, |s| s.to_string());
    let exit = status
        .and_then(|s| s.container_status.as_ref())
        .and_then(|c| c.exit_code)
        .unwrap_or(0);
    let replica = match state {
        Some(TaskState::RUNNING) => ReplicaState::Running,
        Some(TaskState::COMPLETE) => ReplicaState::Exited(0),
        Some(TaskState::FAILED) => ReplicaState::Exited(if exit == 0 { 1 } else { exit }),
        Some(
            TaskState::NEW
            | TaskState::ALLOCATED
            | TaskState::PENDING
            | TaskState::ASSIGNED
            | TaskState::ACCEPTED
            | TaskState::PREPARING
            | TaskState::READY
            | TaskState::STARTING,
        ) => ReplicaState::Created,
        _ => ReplicaState::Other,
    };
    (replica, word)
}

/// A task as a replica of `service` (a Compose service name), on the node it runs on.
fn replica(
    service_name: &str,
    compose_service: &str,
    t: &SwarmTask,
    nodes: &HashMap<String, String>,
) -> Replica {
    let task = &t.task;
    let container = task.spec.as_ref().and_then(|s| s.container_spec.as_ref());
    let container_label = |k: &str| {
        container
            .and_then(|c| c.labels.as_ref())
            .and_then(|l| l.get(k))
            .cloned()
    };
    let (mut state, status) = state_of(t);
    // Swarm holds a task with a healthcheck in `starting` until its container is healthy, and
    // replaces it when it is not: a started container in `starting` runs with its health
    // starting (so `depends_on: service_started` is met, and it is not ready yet), and a
    // running task of a service with a Compose healthcheck is healthy.
    let status_of = task.status.as_ref();
    let started = status_of
        .and_then(|s| s.container_status.as_ref())
        .is_some_and(|c| c.container_id.as_deref().is_some_and(|id| !id.is_empty()));
    let health = match status_of.and_then(|s| s.state) {
        Some(TaskState::STARTING) if started => {
            state = ReplicaState::Running;
            Some("starting".to_string())
        }
        Some(TaskState::RUNNING) if container_label(labels::HEALTHCHECK).is_some() => {
            Some("healthy".to_string())
        }
        _ => None,
    };
    let id = task.id.clone().unwrap_or_default();
    let slot = task.slot.unwrap_or(1);
    Replica {
        name: format!("{service_name}.{slot}.{id}"),
        id,
        image: container.and_then(|c| c.image.clone()).unwrap_or_default(),
        service: compose_service.to_string(),
        slot: u32::try_from(slot.saturating_sub(1)).unwrap_or(0),
        hash: container_label(labels::HASH).unwrap_or_default(),
        revision: container_label(labels::REVISION)
            .and_then(|r| r.parse().ok())
            .unwrap_or(0),
        running: state == ReplicaState::Running,
        state,
        status,
        created: task.created_at.clone().unwrap_or_default(),
        started_at: task
            .status
            .as_ref()
            .and_then(|s| s.timestamp.clone())
            .unwrap_or_default(),
        health,
        healthcheck: None,
        addresses: t
            .networks
            .iter()
            .filter_map(|n| {
                let addr = n.addresses.first()?;
                let ip = addr.split('/').next()?.parse().ok()?;
                Some((n.network.spec.name.clone(), ip))
            })
            .collect(),
        node: task
            .node_id
            .as_ref()
            .map(|n| nodes.get(n).cloned().unwrap_or_else(|| n.clone())),
        stopping: task.desired_state != Some(TaskState::RUNNING),
    }
}

/// Connect Berth's gateways on the nodes to the service's overlay networks, so they reach its
/// tasks (docs/swarm.md), in the background: attaching a container to an overlay network makes
/// the network's sandbox on the node (0.3–1 s on the lab), which the tasks need not wait for,
/// and awaited it held every deploy's ensure by as much (docs/benchmarks.md §13). What fails is
/// connected by the gateways' own loop.
fn connect_gateways(inner: &Arc<Inner>, networks: Vec<String>) {
    if networks.is_empty() || inner.node_gateways.get().is_none() {
        return;
    }
    let inner = inner.clone();
    tokio::spawn(async move {
        for name in &networks {
            crate::node_gateway::connect(&inner, name).await;
        }
    });
}

/// The service's overlay networks (Compose key → network name), found by their labels and made
/// when missing, and those Berth's gateways join (all but external ones).
async fn ensure_networks(
    inner: &Inner,
    app: &str,
    spec: &RevisionSpec,
    svc: &berth_compose::Service,
) -> Result<(BTreeMap<String, String>, Vec<String>), CpError> {
    let existing = inner
        .docker
        .list_networks(&crate::label_filters(inner, Some(app)))
        .await?;
    let mut networks = BTreeMap::new();
    let mut gateway_networks = Vec::new();
    for key in svc.networks.keys() {
        let decl = spec.project.networks.get(key);
        let name = inner.naming.network(app, key, decl);
        let ours = existing
            .iter()
            .any(|n| n.name == name && n.labels.get(labels::NETWORK) == Some(key));
        if !ours && !decl.is_some_and(|d| d.external) {
            let mut l = inner.config.extra_labels.clone();
            l.insert(labels::INSTANCE.into(), inner.naming.instance.clone());
            l.insert(labels::APP.into(), app.into());
            l.insert(labels::NETWORK.into(), key.clone());
            match inner.docker.create_overlay_network(&name, &l).await {
                Ok(_) | Err(DockerError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if !decl.is_some_and(|d| d.external) {
            gateway_networks.push(name.clone());
        }
        networks.insert(key.clone(), name);
    }
    Ok((networks, gateway_networks))
}

/// The image reference the service's tasks run: pushed to `--registry` (by digest), or the
/// image itself once every `--node-engine` has it.
async fn service_image(
    inner: &Inner,
    app: &str,
    service: &str,
    spec: &RevisionSpec,
    svc: &berth_compose::Service,
) -> Result<Option<String>, CpError> {
    let image = spec
        .images
        .get(service)
        .cloned()
        .unwrap_or_else(|| svc.image.clone());
    match &inner.config.registry {
        Some(registry) => Ok(Some(
            publish_image(inner, registry, app, service, &image).await?,
        )),
        None => {
            distribute_image(inner, &image).await?;
            Ok(None)
        }
    }
}

/// Push the revision's image to `--registry` as `REGISTRY/berth/APP/SERVICE:ID12` and answer
/// the reference every node pulls: by digest, so each runs exactly the pinned image.
async fn publish_image(
    inner: &Inner,
    registry: &str,
    app: &str,
    service: &str,
    image: &str,
) -> Result<String, CpError> {
    let repo = format!(
        "{registry}/berth/{}/{service}",
        berth_core::team::docker_part(app)
    );
    let id = image.strip_prefix("sha256:").unwrap_or(image);
    let tag = &id[..id.len().min(12)];
    let failed = |e: DockerError| {
        CpError::InvalidArgument(format!(
            "cannot push image {image} to registry {registry}: {e}"
        ))
    };
    inner
        .docker
        .tag_image(image, &repo, tag)
        .await
        .map_err(failed)?;
    let started = std::time::Instant::now();
    let digest = inner.docker.push_image(&repo, tag).await.map_err(failed)?;
    tracing::info!(app, service, reference = %format!("{repo}@{digest}"), ms = started.elapsed().as_millis(), "image pushed to the registry");
    Ok(format!("{repo}@{digest}"))
}

/// Load `image` from the manager's engine into every `--node-engine` that lacks it, so a task
/// scheduled there finds it (without a registry; docs/swarm.md#images-on-a-cluster). The nodes
/// are asked at once (on every deploy), and the image exported once for all that lack it.
async fn distribute_image(inner: &Inner, image: &str) -> Result<(), CpError> {
    let unreachable = |name: &str, node: &berth_docker::Docker, e: DockerError| {
        CpError::InvalidArgument(format!(
            "cannot bring image {image} to node engine {name} ({}): {e}",
            node.endpoint()
        ))
    };
    let lacking: Vec<(&String, &berth_docker::Docker)> =
        futures_util::future::try_join_all(inner.config.node_engines.iter().map(
            |(name, node)| async move {
                match node.inspect_image(image).await {
                    Ok(found) => Ok(found.is_none().then_some((name, node))),
                    Err(e) => Err(unreachable(name, node, e)),
                }
            },
        ))
        .await?
        .into_iter()
        .flatten()
        .collect();
    if lacking.is_empty() {
        return Ok(());
    }
    let tar = inner.docker.export_image(image).await?;
    futures_util::future::try_join_all(lacking.into_iter().map(|(name, node)| {
        let tar = tar.clone();
        async move {
            let started = std::time::Instant::now();
            node.load_image(tar.to_vec())
                .await
                .map_err(|e| unreachable(name, node, e))?;
            tracing::info!(node = %name, image, ms = started.elapsed().as_millis(), "image loaded into node engine");
            Ok::<(), CpError>(())
        }
    }))
    .await?;
    Ok(())
}

/// The Swarm secrets and configs of `svc`, made when missing: one object per content (named
/// by its digest, since Swarm's objects are immutable), labelled with the application.
async fn ensure_objects(
    inner: &Inner,
    app: &str,
    spec: &RevisionSpec,
    svc: &berth_compose::Service,
) -> Result<swarm_spec::Objects, CpError> {
    let mut out = swarm_spec::Objects::new();
    for (kind, refs, defs) in [
        (ObjectKind::Secret, &svc.secrets, &spec.project.secrets),
        (ObjectKind::Config, &svc.configs, &spec.project.configs),
    ] {
        if refs.is_empty() {
            continue;
        }
        let filters = crate::label_filters(inner, Some(app));
        let mut existing = inner.docker.list_swarm_objects(kind, &filters).await?;
        for r in refs {
            let Some(def) = defs.get(&r.source) else {
                continue;
            };
            let name = swarm_spec::object_name(&inner.naming, app, &r.source, &def.content);
            let id = match existing.iter().find(|o| o.name == name) {
                Some(o) => o.id.clone(),
                None => {
                    let mut l = inner.config.extra_labels.clone();
                    l.insert(labels::INSTANCE.into(), inner.naming.instance.clone());
                    l.insert(labels::APP.into(), app.into());
                    l.insert(labels::FILE.into(), r.source.clone());
                    match inner
                        .docker
                        .create_swarm_object(kind, &name, &l, def.content.as_bytes())
                        .await
                    {
                        Ok(id) => id,
                        // Made meanwhile (another pass): list again.
                        Err(DockerError::Conflict(_)) => {
                            existing = inner.docker.list_swarm_objects(kind, &filters).await?;
                            existing
                                .iter()
                                .find(|o| o.name == name)
                                .map(|o| o.id.clone())
                                .ok_or_else(|| CpError::NameTaken {
                                    name: name.clone(),
                                    holder:
                                        "a Swarm object Berth does not manage for this application"
                                            .into(),
                                })?
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            };
            out.insert((kind, r.source.clone()), (id, name));
        }
    }
    Ok(out)
}

/// Remove the application's secrets and configs that `keep` does not name (all of them when
/// it is empty); one a task still uses is left for the next time (the manager refuses it).
async fn prune_objects(inner: &Inner, app: &str, keep: &[String]) -> Result<(), CpError> {
    let filters = crate::label_filters(inner, Some(app));
    for kind in [ObjectKind::Secret, ObjectKind::Config] {
        for o in inner.docker.list_swarm_objects(kind, &filters).await? {
            if keep.contains(&o.name) {
                continue;
            }
            if let Err(e) = inner.docker.remove_swarm_object(kind, &o.id).await {
                tracing::debug!(app, object = %o.name, error = %e, "Swarm object still in use; kept for now");
            }
        }
    }
    Ok(())
}

/// The names of the secrets and configs the revision's services use.
fn object_names(inner: &Inner, app: &str, spec: &RevisionSpec) -> Vec<String> {
    let p = &spec.project;
    p.services
        .values()
        .flat_map(|svc| {
            let secrets = svc
                .secrets
                .iter()
                .filter_map(|r| Some((r, p.secrets.get(&r.source)?)));
            let configs = svc
                .configs
                .iter()
                .filter_map(|r| Some((r, p.configs.get(&r.source)?)));
            secrets
                .chain(configs)
                .map(|(r, def)| {
                    swarm_spec::object_name(&inner.naming, app, &r.source, &def.content)
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Does the service run in `global` mode (a task on every eligible node)?
fn is_global(s: &Service) -> bool {
    s.spec
        .as_ref()
        .and_then(|s| s.mode.as_ref())
        .is_some_and(|m| m.global.is_some())
}

/// How long a teardown waits for the removed services' tasks to leave their networks.
const NETWORK_DRAIN: std::time::Duration = std::time::Duration::from_secs(60);

/// Is the task attached to one of `networks` and not yet ended on its node?
fn still_attached(t: &SwarmTask, networks: &[&str]) -> bool {
    let ended = matches!(
        t.task.status.as_ref().and_then(|s| s.state),
        Some(
            TaskState::COMPLETE
                | TaskState::SHUTDOWN
                | TaskState::FAILED
                | TaskState::REJECTED
                | TaskState::REMOVE
                | TaskState::ORPHANED
        )
    );
    !ended
        && t.networks
            .iter()
            .any(|n| networks.contains(&n.network.id.as_str()))
}

/// A task's logs, read through the manager from its node: only a current task's (its desired
/// state `running`, so not the old task of a start-first update that is stopping) and only
/// once it has a container (before that its node has nothing, and the manager answers with an
/// error: "incomplete log stream").
fn task_logs(r: &Replica) -> Option<LogsOf> {
    (!r.stopping && r.state != ReplicaState::Created).then(|| LogsOf::Task(r.id.clone()))
}

/// Swarm wants it running, or it still runs (an old task of a start-first update).
fn current(t: &SwarmTask) -> bool {
    t.task.desired_state == Some(TaskState::RUNNING)
        || t.task.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING)
}

impl AppRuntime for Swarm {
    fn converges(&self) -> Convergence {
        Convergence::Services
    }

    async fn observe(&self, app: &str) -> Result<Vec<Replica>, CpError> {
        let services = self.services(Some(app)).await?;
        if services.is_empty() {
            return Ok(Vec::new());
        }
        let nodes: HashMap<String, String> = self
            .inner
            .docker
            .list_nodes()
            .await?
            .into_iter()
            .filter_map(|n| Some((n.id?, n.description?.hostname?)))
            .collect();
        let mut out = Vec::new();
        for s in &services {
            let (Some(id), Some(compose)) = (s.id.clone(), label(s, labels::SERVICE)) else {
                continue;
            };
            let name = s
                .spec
                .as_ref()
                .and_then(|s| s.name.clone())
                .unwrap_or_default();
            let tasks = self.inner.docker.list_tasks(&[id]).await?;
            let current: Vec<&SwarmTask> = tasks.iter().filter(|t| current(t)).collect();
            // A global service's tasks have no slot: Berth's slot is the node's place among
            // the nodes its tasks run on (so each node's task is one slot, old and new alike).
            let node_slots: Vec<&str> = if is_global(s) {
                let mut n: Vec<&str> = current
                    .iter()
                    .filter_map(|t| t.task.node_id.as_deref())
                    .collect();
                n.sort_unstable();
                n.dedup();
                n
            } else {
                Vec::new()
            };
            out.extend(current.iter().map(|t| {
                let mut r = replica(&name, compose, t, &nodes);
                if let Some(i) = t
                    .task
                    .node_id
                    .as_deref()
                    .and_then(|n| node_slots.iter().position(|x| *x == n))
                {
                    r.slot = u32::try_from(i).unwrap_or(u32::MAX);
                }
                r
            }));
        }
        Ok(out)
    }

    fn logs_of(&self, replica: &Replica) -> Option<LogsOf> {
        task_logs(replica)
    }

    async fn list_all(&self) -> Result<Vec<(String, String)>, CpError> {
        let mut out = Vec::new();
        for s in self.services(None).await? {
            let (Some(id), Some(app)) = (s.id.clone(), label(&s, labels::APP)) else {
                continue;
            };
            for t in self.inner.docker.list_tasks(&[id]).await? {
                if current(&t) {
                    out.push((app.to_string(), t.task.id.clone().unwrap_or_default()));
                }
            }
        }
        Ok(out)
    }

    async fn observe_services(&self, app: &str) -> Result<Vec<ObservedService>, CpError> {
        Ok(self
            .services(Some(app))
            .await?
            .iter()
            .filter_map(|s| {
                let global = is_global(s);
                // A global service runs as many tasks as Swarm wants (one per eligible node).
                let replicas = if global {
                    s.service_status
                        .as_ref()
                        .and_then(|st| st.desired_tasks)
                        .and_then(|n| i64::try_from(n).ok())
                        .unwrap_or(0)
                } else {
                    s.spec
                        .as_ref()
                        .and_then(|s| s.mode.as_ref())
                        .and_then(|m| m.replicated.as_ref())
                        .and_then(|r| r.replicas)
                        .unwrap_or(0)
                };
                let update = s.update_status.as_ref().and_then(|u| {
                    let state = match u.state? {
                        ServiceUpdateStatusStateEnum::UPDATING => UpdateState::Updating,
                        ServiceUpdateStatusStateEnum::PAUSED => UpdateState::Paused,
                        ServiceUpdateStatusStateEnum::COMPLETED => UpdateState::Completed,
                        ServiceUpdateStatusStateEnum::ROLLBACK_STARTED => {
                            UpdateState::RollbackStarted
                        }
                        ServiceUpdateStatusStateEnum::ROLLBACK_PAUSED => {
                            UpdateState::RollbackPaused
                        }
                        ServiceUpdateStatusStateEnum::ROLLBACK_COMPLETED => {
                            UpdateState::RollbackCompleted
                        }
                        ServiceUpdateStatusStateEnum::EMPTY => return None,
                    };
                    Some((state, u.message.clone().unwrap_or_default()))
                });
                Some(ObservedService {
                    service: label(s, labels::SERVICE)?.to_string(),
                    hash: label(s, labels::HASH).unwrap_or_default().to_string(),
                    replicas: u32::try_from(replicas).unwrap_or(0),
                    global,
                    update,
                })
            })
            .collect())
    }

    async fn ensure_service(
        &self,
        app: &str,
        revision: u64,
        spec: &RevisionSpec,
        service: &str,
    ) -> Result<(), CpError> {
        let inner = &self.inner;
        let docker = &inner.docker;
        let svc = spec
            .project
            .services
            .get(service)
            .ok_or_else(|| CpError::ServiceNotFound(app.into(), service.into()))?;
        // The networks, the image on every node and the secrets and configs are independent:
        // made at once, since the tasks cannot start before all three (docs/benchmarks.md §13).
        let started = std::time::Instant::now();
        let name = swarm_spec::service_name(&inner.naming, app, service);
        let ((networks, gateway_networks), image, objects, existing) = tokio::try_join!(
            ensure_networks(inner, app, spec, svc),
            service_image(inner, app, service, spec, svc),
            ensure_objects(inner, app, spec, svc),
            async { Ok::<_, CpError>(docker.inspect_service(&name).await?) },
        )?;
        let prepared_ms = started.elapsed().as_millis();
        let made = swarm_spec::Made {
            networks,
            objects,
            image,
        };
        let body = swarm_spec::service_spec(
            &inner.naming,
            spec,
            app,
            revision,
            service,
            &made,
            &inner.config.extra_labels,
        )
        .map_err(|keys| {
            CpError::InvalidArgument(format!(
                "the Swarm runtime does not support these keys yet: {}",
                keys.join(", ")
            ))
        })?;
        match existing {
            None => {
                docker.create_service(&body).await?;
            }
            Some(current) => {
                let (Some(id), Some(version)) = (
                    current.id.clone(),
                    current.version.as_ref().and_then(|v| v.index),
                ) else {
                    return Err(CpError::InvalidArgument(format!(
                        "Swarm service {name} has no ID or version"
                    )));
                };
                if label(&current, labels::INSTANCE) != Some(inner.naming.instance.as_str())
                    || label(&current, labels::APP) != Some(app)
                {
                    return Err(CpError::NameTaken {
                        name,
                        holder: "a Swarm service Berth does not manage for this application".into(),
                    });
                }
                // Swarm cannot change a service's mode in place: replicated ↔ global is a new
                // service (its tasks go, the new ones start).
                if is_global(&current) != body.mode.as_ref().is_some_and(|m| m.global.is_some()) {
                    docker.remove_service(&id).await?;
                    docker.create_service(&body).await?;
                    connect_gateways(inner, gateway_networks);
                    tracing::info!(
                        app,
                        service,
                        revision,
                        "Swarm service re-created in its new mode"
                    );
                    return Ok(());
                }
                let mut body = body;
                if let Some(running) = &current.spec {
                    swarm_spec::keep_task_revision(&mut body, running);
                }
                docker.update_service(&id, version, &body).await?;
            }
        }
        connect_gateways(inner, gateway_networks);
        tracing::info!(
            app,
            service,
            revision,
            prepared_ms,
            ms = started.elapsed().as_millis(),
            "Swarm service ensured"
        );
        // Objects of earlier contents go once no task uses them.
        prune_objects(inner, app, &object_names(inner, app, spec)).await?;
        Ok(())
    }

    async fn remove_service(&self, app: &str, service: &str) -> Result<(), CpError> {
        for s in self.services(Some(app)).await? {
            if label(&s, labels::SERVICE) == Some(service) {
                if let Some(id) = &s.id {
                    self.inner.docker.remove_service(id).await?;
                }
            }
        }
        Ok(())
    }

    async fn create_replica(
        &self,
        _app: &str,
        _revision: u64,
        _spec: &RevisionSpec,
        _service: &str,
        _slot: u32,
    ) -> Result<String, CpError> {
        Err(refused())
    }

    async fn start(&self, _id: &str) -> Result<(), CpError> {
        Err(refused())
    }

    async fn restart(&self, _id: &str, _grace_secs: u64) -> Result<(), CpError> {
        Err(refused())
    }

    async fn remove(&self, _id: &str, _grace_secs: u64) -> Result<(), CpError> {
        Err(refused())
    }

    async fn remove_resources(&self, app: &str, volumes: bool) -> Result<(), CpError> {
        let inner = &self.inner;
        let nets = inner
            .docker
            .list_networks(&crate::label_filters(inner, Some(app)))
            .await?;
        // The gateways on the nodes first: their attachments count as tasks on the network.
        for n in &nets {
            crate::node_gateway::disconnect(inner, &n.name).await?;
        }
        // The tasks of the services just removed keep their network attachments until their
        // nodes have stopped them; an overlay network removed under a live task can bring a
        // node's engine down (moby/moby#35288). Wait, bounded, until none is attached.
        let ids: Vec<&str> = nets.iter().map(|n| n.id.as_str()).collect();
        let deadline = std::time::Instant::now() + NETWORK_DRAIN;
        loop {
            let live = inner
                .docker
                .list_tasks(&[])
                .await?
                .iter()
                .filter(|t| still_attached(t, &ids))
                .count();
            if live == 0 {
                break;
            }
            if std::time::Instant::now() >= deadline {
                tracing::warn!(
                    app,
                    tasks = live,
                    "tasks still attached to the application's networks; removing them anyway"
                );
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        prune_objects(inner, app, &[]).await?;
        if volumes {
            // Node-local volumes: the manager's engine sees only its own copies.
            for v in inner
                .docker
                .list_volumes(&crate::label_filters(inner, Some(app)))
                .await?
            {
                match inner.docker.remove_volume(&v.name).await {
                    Ok(()) | Err(DockerError::NotFound(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        for n in nets {
            match inner.docker.remove_network(&n.id).await {
                Ok(()) | Err(DockerError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn events(&self) -> Result<BoxStream<'static, RuntimeEvent>, CpError> {
        let docker = self.inner.docker.clone();
        let filters = crate::label_filters(&self.inner, None);
        let prefix = swarm_spec::service_prefix(&self.inner.naming);
        // Subscribed before listing, so no service made in between goes unmapped.
        let stream = docker.events_of_types(&["service", "node"]).await?;
        let apps = Arc::new(Mutex::new(service_apps(&docker, &filters).await?));
        Ok(stream
            // An error ends the feed: the caller subscribes again and looks at everything.
            .take_while(|ev| std::future::ready(ev.is_ok()))
            .filter_map(|ev| std::future::ready(ev.ok()))
            .then(move |ev| {
                let (docker, filters, prefix, apps) = (
                    docker.clone(),
                    filters.clone(),
                    prefix.clone(),
                    apps.clone(),
                );
                async move {
                    let lag = crate::runtime::lag_ms(ev.time_nano);
                    let mut wake = wake_for(&ev, &prefix, &lock(&apps));
                    if let Wake::Unknown(name) = &wake {
                        // A service of ours made since the last listing (or another server's
                        // with a name like ours): list again, then map it.
                        if let Ok(fresh) = service_apps(&docker, &filters).await {
                            let mut map = lock(&apps);
                            // Removed services stay mapped: their `remove` event comes after.
                            map.extend(fresh);
                            wake = map
                                .get(name)
                                .map_or(Wake::Nothing, |a| Wake::App(a.clone()));
                        }
                    }
                    let woken: Vec<String> = match wake {
                        Wake::App(app) => vec![app],
                        Wake::All => {
                            let set: std::collections::BTreeSet<String> =
                                lock(&apps).values().cloned().collect();
                            set.into_iter().collect()
                        }
                        Wake::Unknown(_) | Wake::Nothing => Vec::new(),
                    };
                    futures_util::stream::iter(woken.into_iter().map(move |app| RuntimeEvent {
                        app: Some(app),
                        replica: ev.id.clone(),
                        down: false,
                        lag_ms: lag,
                    }))
                }
            })
            .flatten()
            .boxed())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// This server's Swarm services: name → application.
async fn service_apps(
    docker: &berth_docker::Docker,
    filters: &[String],
) -> Result<HashMap<String, String>, CpError> {
    Ok(docker
        .list_services(filters)
        .await?
        .iter()
        .filter_map(|s| {
            let name = s.spec.as_ref()?.name.clone()?;
            Some((name, label(s, labels::APP)?.to_string()))
        })
        .collect())
}

/// What a manager's cluster event asks of the reconciler.
#[derive(Debug, PartialEq, Eq)]
enum Wake {
    /// This application's service was made, updated (its update state too) or removed.
    App(String),
    /// A service named as this server names them, not mapped yet.
    Unknown(String),
    /// A node changed (down, drained, back): its tasks move, for any application.
    All,
    /// Not about this server's services.
    Nothing,
}

fn wake_for(ev: &berth_docker::Event, prefix: &str, apps: &HashMap<String, String>) -> Wake {
    match ev.typ.as_str() {
        "service" => match ev.attributes.get("name") {
            Some(name) => match apps.get(name) {
                Some(app) => Wake::App(app.clone()),
                None if name.starts_with(prefix) => Wake::Unknown(name.clone()),
                None => Wake::Nothing,
            },
            None => Wake::Nothing,
        },
        "node" => Wake::All,
        _ => Wake::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_holds_its_network_until_its_node_has_ended_it() {
        let task = |state: &str, net: &str| -> SwarmTask {
            serde_json::from_value(serde_json::json!({
                "ID": "t1",
                "DesiredState": "remove",
                "Status": {"State": state},
                "NetworksAttachments": [{"Network": {"ID": net, "Spec": {"Name": "n"}}, "Addresses": ["10.0.1.3/24"]}],
            }))
            .unwrap()
        };
        assert!(still_attached(&task("running", "net1"), &["net1"]));
        assert!(still_attached(&task("starting", "net1"), &["net1", "net2"]));
        assert!(!still_attached(&task("running", "other"), &["net1"]));
        for ended in [
            "shutdown", "complete", "failed", "rejected", "remove", "orphaned",
        ] {
            assert!(!still_attached(&task(ended, "net1"), &["net1"]), "{ended}");
        }
    }

    /// Swarm keeps a task with a healthcheck `starting` until its container is healthy: the
    /// replica runs with its health starting (not ready), then is healthy once `running`.
    #[test]
    fn a_tasks_health_follows_swarms_wait_for_a_healthy_container() {
        let task = |state: &str, container: Option<&str>, hc: bool| -> Replica {
            let mut labels = serde_json::json!({"berth.hash": "h1"});
            if hc {
                labels["berth.healthcheck"] = "1".into();
            }
            let mut status = serde_json::json!({"State": state});
            if let Some(c) = container {
                status["ContainerStatus"] = serde_json::json!({"ContainerID": c});
            }
            let t: SwarmTask = serde_json::from_value(serde_json::json!({
                "ID": "t1",
                "Slot": 1,
                "DesiredState": "running",
                "Spec": {"ContainerSpec": {"Image": "web", "Labels": labels}},
                "Status": status,
            }))
            .unwrap();
            replica("berth_abc123_shop_web", "web", &t, &HashMap::new())
        };
        let r = task("starting", Some("c1"), true);
        assert_eq!((r.state, r.running), (ReplicaState::Running, true));
        assert_eq!(r.health.as_deref(), Some("starting"));
        let r = task("running", Some("c1"), true);
        assert_eq!(r.health.as_deref(), Some("healthy"));
        // No healthcheck: running is all there is.
        assert_eq!(task("running", Some("c1"), false).health, None);
        // Not started yet: still being created.
        let r = task("starting", None, true);
        assert_eq!((r.state, r.health), (ReplicaState::Created, None));
        assert_eq!(
            task("preparing", Some("c1"), true).state,
            ReplicaState::Created
        );
    }

    /// `berth logs` on Swarm reads each current task through the manager: not the old task of
    /// a start-first update that Swarm is stopping, nor a task with no container yet; one
    /// target per slot, in slot order, the service's own tasks only.
    #[test]
    fn logs_are_read_from_the_current_tasks_with_a_container() {
        let task = |id: &str, service: &str, slot: u64, desired: &str, state: &str| -> Replica {
            let t: SwarmTask = serde_json::from_value(serde_json::json!({
                "ID": id,
                "Slot": slot,
                "DesiredState": desired,
                "Spec": {"ContainerSpec": {"Image": "web"}},
                "Status": {"State": state, "ContainerStatus": {"ContainerID": format!("c-{id}")}},
            }))
            .unwrap();
            replica("berth_abc123_shop_x", service, &t, &HashMap::new())
        };
        let mut pending = task("new1", "web", 1, "running", "pending");
        pending.state = ReplicaState::Created;
        let replicas = vec![
            task("b2", "web", 2, "running", "running"),
            // Slot 1 mid start-first update: the old task is being stopped, the new one runs.
            task("old1", "web", 1, "shutdown", "running"),
            task("a1", "web", 1, "running", "running"),
            task("db", "db", 1, "running", "running"),
            pending,
        ];
        let got = crate::runtime::log_targets(&replicas, "web", task_logs);
        assert_eq!(
            got,
            vec![
                crate::LogTarget {
                    slot: 0,
                    of: LogsOf::Task("a1".into())
                },
                crate::LogTarget {
                    slot: 1,
                    of: LogsOf::Task("b2".into())
                },
            ]
        );
    }

    fn event(typ: &str, name: Option<&str>) -> berth_docker::Event {
        let mut ev = berth_docker::Event {
            typ: typ.into(),
            action: "update".into(),
            id: "x1".into(),
            ..Default::default()
        };
        if let Some(n) = name {
            ev.attributes.insert("name".into(), n.into());
        }
        ev
    }

    #[test]
    fn a_cluster_event_wakes_the_application_of_its_service() {
        let apps: HashMap<String, String> = [
            ("berth_abc123_shop_web".to_string(), "shop".to_string()),
            ("berth_abc123_t-blog_db".to_string(), "t/blog".to_string()),
        ]
        .into();
        let p = "berth_abc123_";
        for (ev, want) in [
            (
                event("service", Some("berth_abc123_shop_web")),
                Wake::App("shop".into()),
            ),
            (
                event("service", Some("berth_abc123_t-blog_db")),
                Wake::App("t/blog".into()),
            ),
            // Ours by its name but made since the last listing: list again.
            (
                event("service", Some("berth_abc123_new_web")),
                Wake::Unknown("berth_abc123_new_web".into()),
            ),
            // Another server's, or someone's by hand: nothing, and no listing.
            (
                event("service", Some("berth_zzz999_shop_web")),
                Wake::Nothing,
            ),
            (event("service", Some("redis")), Wake::Nothing),
            (event("service", None), Wake::Nothing),
            (event("node", Some("node2")), Wake::All),
            (
                event("container", Some("berth_abc123_shop_web")),
                Wake::Nothing,
            ),
        ] {
            assert_eq!(wake_for(&ev, p, &apps), want, "{ev:?}");
        }
    }
}
