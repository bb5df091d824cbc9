//! A Compose service as a Swarm service spec (docs/swarm.md#mapping-a-compose-application-to-swarm):
//! the pure part of the Swarm runtime's `ensure_service`.
//!
//! Rules it keeps:
//! - Pure: no I/O. The caller gives the overlay network names it ensured.
//! - The service and its tasks' containers carry the labels Berth finds and judges them by
//!   (`berth.instance`, `berth.app`, `berth.service`, `berth.hash`, `berth.revision`): the
//!   service's (`Spec.Labels`) say which spec it runs, the containers' (`ContainerSpec.Labels`,
//!   which every task's spec keeps) which spec each task was made from, since Swarm copies none
//!   of a service's labels onto its tasks. A new revision at the hash the service already
//!   runs (a scale) keeps the task template's revision (`keep_task_revision`): a changed
//!   template would have Swarm replace every task.
//! - Swarm rolls out and restarts: `update_config` and `restart_policy` go to Swarm as written;
//!   `order` left unset is Berth's default (start-first, stop-first with a `container_name`).
//! - `endpoint_mode` is `dnsrr` unless the file asks for `vip`: Berth's gateway balances over
//!   task addresses and never needs Swarm's VIPs (IPVS).
//! - Swarm's scheduling keys go as written: `mode: global`, `placement`, `rollback_config`,
//!   CPU and memory reservations.
//! - Keys this phase does not carry to Swarm yet are refused by name, never dropped silently.

use crate::spec::{labels, Naming, RevisionSpec};
use berth_compose::{
    EndpointMode, FailureAction, MountKind, RestartCondition, Service, UpdateOrder,
};
use berth_docker::swarm::models::{
    EndpointSpec, EndpointSpecModeEnum, HealthConfig, Limit, NetworkAttachmentConfig,
    ResourceObject, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated,
    ServiceSpecRollbackConfig, ServiceSpecRollbackConfigFailureActionEnum,
    ServiceSpecRollbackConfigOrderEnum, ServiceSpecUpdateConfig,
    ServiceSpecUpdateConfigFailureActionEnum, ServiceSpecUpdateConfigOrderEnum, TaskSpec,
    TaskSpecContainerSpec, TaskSpecPlacement, TaskSpecPlacementPreferences,
    TaskSpecPlacementSpread, TaskSpecResources, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum,
};
use berth_docker::swarm::models::{
    Mount as SwarmMount, MountType, MountVolumeOptions, TaskSpecContainerSpecConfigs,
    TaskSpecContainerSpecFile, TaskSpecContainerSpecFile1, TaskSpecContainerSpecSecrets,
};
use berth_docker::swarm::ObjectKind;
use std::collections::{BTreeMap, HashMap};

/// The most characters of a Swarm service name (a DNS label).
const MAX_NAME: usize = 63;

/// The Swarm service of an application's Compose service: `berth_{instance6}_{app}_{service}`,
/// or, past 63 characters, its first 54 and `_` and 8 hex digits of its SHA-256 (still one
/// name per (instance, app, service)).
#[must_use]
pub(crate) fn service_name(naming: &Naming, app: &str, service: &str) -> String {
    let app = berth_core::team::docker_part(app);
    bounded(format!("{}{app}_{service}", service_prefix(naming)))
}

/// The Swarm secret or config holding `content` for the Compose secret or config `source`:
/// `berth_{instance6}_{app}_{source}_{sha8 of content}`, bounded as service names are. Swarm's
/// objects are immutable: a new content is a new name, and the service is updated to it.
#[must_use]
pub(crate) fn object_name(naming: &Naming, app: &str, source: &str, content: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(content.as_bytes());
    let hex: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    let app = berth_core::team::docker_part(app);
    bounded(format!("{}{app}_{source}_{hex}", service_prefix(naming)))
}

/// `full`, or past 63 characters its first 54, `_` and 8 hex digits of its SHA-256.
fn bounded(full: String) -> String {
    use sha2::{Digest, Sha256};
    if full.len() <= MAX_NAME {
        return full;
    }
    let digest = Sha256::digest(full.as_bytes());
    let hex: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    let mut cut = MAX_NAME - 9;
    while !full.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}_{hex}", &full[..cut])
}

/// How every Swarm service name of this server begins (long names keep it: the hash suffix
/// replaces their end).
pub(crate) fn service_prefix(naming: &Naming) -> String {
    format!(
        "berth_{}_",
        &naming.instance[..naming.instance.len().min(6)]
    )
}

/// Keep the revision on the task template of `current` (the service as it runs) when `body`
/// runs the same spec (same hash): a scale, or a change to another service, makes a new
/// revision that changes nothing of this one, and a task template that changed (its containers'
/// `berth.revision` label) would have Swarm replace every task. Its tasks keep the revision that
/// made them, as replicas of the local runtime do; the service's own labels say the new one.
pub(crate) fn keep_task_revision(body: &mut ServiceSpec, current: &ServiceSpec) {
    let hash = |s: &ServiceSpec| s.labels.as_ref()?.get(labels::HASH).cloned();
    if hash(body).is_none() || hash(body) != hash(current) {
        return;
    }
    let task_revision = |s: &ServiceSpec| {
        s.task_template
            .as_ref()?
            .container_spec
            .as_ref()?
            .labels
            .as_ref()?
            .get(labels::REVISION)
            .cloned()
    };
    let Some(kept) = task_revision(current) else {
        return;
    };
    if let Some(l) = body
        .task_template
        .as_mut()
        .and_then(|t| t.container_spec.as_mut())
        .and_then(|c| c.labels.as_mut())
    {
        l.insert(labels::REVISION.into(), kept);
    }
}

fn ns(ms: u64) -> i64 {
    i64::try_from(ms.saturating_mul(1_000_000)).unwrap_or(i64::MAX)
}

/// Whether this host's kernel has IPVS, which Swarm's service VIPs and ingress mesh need: the
/// module loaded (`/proc/net/ip_vs`, `/sys/module/ip_vs`) or installed for the running kernel.
/// Only the server's own host is looked at; the nodes' kernels are not visible from here.
pub fn kernel_has_ipvs() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    [
        "/proc/net/ip_vs".to_string(),
        "/sys/module/ip_vs".to_string(),
        format!("/lib/modules/{}/kernel/net/netfilter/ipvs", release.trim()),
    ]
    .iter()
    .any(|p| std::path::Path::new(p).exists())
}

/// Notes at apply for services that ask for a VIP (`deploy.endpoint_mode: vip`) on a host
/// without IPVS: the VIP their name resolves to does not answer, though Berth's gateways reach
/// their tasks either way.
pub(crate) fn vip_notes(
    project: &berth_compose::Project,
    ipvs: impl FnOnce() -> bool,
) -> Vec<String> {
    let asks = |svc: &berth_compose::Service| svc.endpoint_mode == Some(EndpointMode::Vip);
    if !project.services.values().any(asks) || ipvs() {
        return Vec::new();
    }
    project
        .services
        .iter()
        .filter(|(_, svc)| asks(svc))
        .map(|(name, _)| {
            format!(
                "services.{name}.deploy.endpoint_mode: vip needs IPVS, which this host's kernel lacks: \
                 other services reaching {name} by name get a virtual IP that does not answer \
                 (Berth's gateways still route to its tasks); leave endpoint_mode out for dnsrr"
            )
        })
        .collect()
}

/// The Compose keys of the project the Swarm runtime cannot carry yet, as paths: refused at
/// commit on a `--runtime swarm` server (400 `unsupported_key`), so no revision is made that
/// could never run.
pub(crate) fn unsupported_keys(project: &berth_compose::Project) -> Vec<String> {
    project
        .services
        .iter()
        .flat_map(|(name, svc)| unsupported(name, svc))
        .collect()
}

/// The Compose keys of `svc` this phase cannot carry to Swarm yet, as paths.
fn unsupported(name: &str, svc: &Service) -> Vec<String> {
    let mut keys = Vec::new();
    let mut key = |set: bool, k: &str| {
        if set {
            keys.push(format!("services.{name}.{k}"));
        }
    };
    // Published on every node with a gateway, by its port forwarder (`node_gateway.rs`): a
    // fixed host port on all addresses. A leased port (a host's range) or one host address
    // means nothing on a cluster.
    key(
        svc.ports.iter().any(|p| {
            p.published.is_none() || p.leased || p.host_ip.is_some_and(|ip| !ip.is_unspecified())
        }),
        "ports",
    );
    key(svc.container_name.is_some(), "container_name");
    key(svc.network_mode.is_some(), "network_mode");
    key(svc.privileged, "privileged");
    key(svc.pid.is_some(), "pid");
    key(svc.ipc.is_some(), "ipc");
    key(svc.userns_mode.is_some(), "userns_mode");
    key(!svc.devices.is_empty(), "devices");
    // Routes are served, and `x-berth.health` probed, by Berth's gateways on the nodes
    // (`node_gateway.rs`, `gateway_probes.rs`).
    keys
}

/// The Swarm service spec of `service` of the revision, attached to the given overlay
/// networks (Compose network key → the overlay network's name).
///
/// # Errors
/// The Compose keys (as paths) this phase does not carry to Swarm, or a service the revision
/// does not have.
pub(crate) fn service_spec(
    naming: &Naming,
    spec: &RevisionSpec,
    app: &str,
    revision: u64,
    service: &str,
    made: &Made,
    extra_labels: &BTreeMap<String, String>,
) -> Result<ServiceSpec, Vec<String>> {
    let (networks, objects) = (&made.networks, &made.objects);
    let Some(svc) = spec.project.services.get(service) else {
        return Err(vec![format!("services.{service}")]);
    };
    let refused = unsupported(service, svc);
    if !refused.is_empty() {
        return Err(refused);
    }
    let hash = spec.service_hash(service);
    let mut berth: HashMap<String, String> = extra_labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    berth.insert(labels::INSTANCE.into(), naming.instance.clone());
    berth.insert(labels::APP.into(), app.into());
    berth.insert(labels::SERVICE.into(), service.into());
    berth.insert(labels::HASH.into(), hash);
    berth.insert(labels::REVISION.into(), revision.to_string());
    let mut container_labels: HashMap<String, String> = svc
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    container_labels.extend(berth.clone());
    if svc.healthcheck.as_ref().is_some_and(|h| !h.disable) {
        container_labels.insert(labels::HEALTHCHECK.into(), "1".into());
    }

    let health_check = svc.healthcheck.as_ref().map(|h| {
        if h.disable {
            HealthConfig {
                test: Some(vec!["NONE".into()]),
                ..HealthConfig::default()
            }
        } else {
            HealthConfig {
                test: Some(h.test.clone()),
                interval: h.interval_ms.map(ns),
                timeout: h.timeout_ms.map(ns),
                retries: h.retries.map(i64::from),
                start_period: h.start_period_ms.map(ns),
                start_interval: None, // API 1.44+; the lab's engines speak 1.41
            }
        }
    });
    let container_spec = TaskSpecContainerSpec {
        image: Some(made.image.clone().unwrap_or_else(|| {
            spec.images
                .get(service)
                .cloned()
                .unwrap_or_else(|| svc.image.clone())
        })),
        labels: Some(container_labels),
        // Swarm's `Command` is Compose's entrypoint, its `Args` Compose's command.
        command: svc.entrypoint.clone(),
        args: svc.command.clone(),
        env: Some(
            svc.environment
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
        ),
        dir: svc.working_dir.clone(),
        user: svc.user.clone(),
        hosts: (!svc.extra_hosts.is_empty()).then(|| {
            // Compose writes `host:ip`, Swarm `ip host`.
            svc.extra_hosts
                .iter()
                .filter_map(|h| h.split_once(':').map(|(host, ip)| format!("{ip} {host}")))
                .collect()
        }),
        stop_grace_period: svc.stop_grace_period_ms.map(ns),
        health_check,
        capability_add: (!svc.cap_add.is_empty()).then(|| svc.cap_add.clone()),
        capability_drop: (!svc.cap_drop.is_empty()).then(|| svc.cap_drop.clone()),
        secrets: (!svc.secrets.is_empty()).then(|| secret_refs(svc, objects)),
        configs: (!svc.configs.is_empty()).then(|| config_refs(svc, objects)),
        mounts: (!svc.mounts.is_empty() || !svc.tmpfs.is_empty())
            .then(|| mounts(naming, spec, app, svc)),
        ..TaskSpecContainerSpec::default()
    };
    let restart_policy = TaskSpecRestartPolicy {
        condition: Some(match svc.restart.condition {
            RestartCondition::Always | RestartCondition::UnlessStopped => {
                TaskSpecRestartPolicyConditionEnum::ANY
            }
            RestartCondition::OnFailure => TaskSpecRestartPolicyConditionEnum::ON_FAILURE,
            RestartCondition::No => TaskSpecRestartPolicyConditionEnum::NONE,
        }),
        delay: svc.restart.delay_ms.map(ns),
        max_attempts: svc.restart.max_attempts.map(i64::from),
        window: svc.restart.window_ms.map(ns),
    };
    let r = &svc.resources;
    let resources = TaskSpecResources {
        limits: (r.cpus.is_some() || r.memory_bytes.is_some()).then(|| Limit {
            #[allow(clippy::cast_possible_truncation)] // CPUs × 1e9 fits an i64
            nano_cpus: r.cpus.map(|c| (c * 1e9).round() as i64),
            memory_bytes: r.memory_bytes,
            pids: None,
        }),
        reservations: (r.memory_reservation_bytes.is_some() || r.cpus_reservation.is_some()).then(
            || ResourceObject {
                #[allow(clippy::cast_possible_truncation)] // CPUs × 1e9 fits an i64
                nano_cpus: r.cpus_reservation.map(|c| (c * 1e9).round() as i64),
                memory_bytes: r.memory_reservation_bytes,
                ..ResourceObject::default()
            },
        ),
        ..TaskSpecResources::default()
    };
    let u = &svc.update_config;
    let update_config = ServiceSpecUpdateConfig {
        parallelism: Some(i64::from(u.parallelism)),
        delay: Some(ns(u.delay_ms)),
        failure_action: Some(match u.failure_action {
            FailureAction::Rollback => ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK,
            FailureAction::Pause => ServiceSpecUpdateConfigFailureActionEnum::PAUSE,
            FailureAction::Continue => ServiceSpecUpdateConfigFailureActionEnum::CONTINUE,
        }),
        monitor: u.monitor_ms.map(ns),
        max_failure_ratio: Some(u.max_failure_ratio),
        order: Some(match u.order {
            Some(UpdateOrder::StopFirst) => ServiceSpecUpdateConfigOrderEnum::STOP_FIRST,
            Some(UpdateOrder::StartFirst) | None => ServiceSpecUpdateConfigOrderEnum::START_FIRST,
        }),
    };
    // Swarm rolls back on its own (`failure_action: rollback`): as `rollback_config` says,
    // else as Swarm's defaults (one at a time, pause on failure) with Berth's default order.
    let rollback_config = svc.rollback_config.as_ref().map_or_else(
        || ServiceSpecRollbackConfig {
            parallelism: Some(1),
            order: Some(ServiceSpecRollbackConfigOrderEnum::START_FIRST),
            failure_action: Some(ServiceSpecRollbackConfigFailureActionEnum::PAUSE),
            ..ServiceSpecRollbackConfig::default()
        },
        |r| ServiceSpecRollbackConfig {
            parallelism: Some(i64::from(r.parallelism)),
            delay: Some(ns(r.delay_ms)),
            failure_action: Some(match r.failure_action {
                FailureAction::Continue => ServiceSpecRollbackConfigFailureActionEnum::CONTINUE,
                FailureAction::Pause | FailureAction::Rollback => {
                    ServiceSpecRollbackConfigFailureActionEnum::PAUSE
                }
            }),
            monitor: r.monitor_ms.map(ns),
            max_failure_ratio: Some(r.max_failure_ratio),
            order: Some(match r.order {
                Some(UpdateOrder::StopFirst) => ServiceSpecRollbackConfigOrderEnum::STOP_FIRST,
                Some(UpdateOrder::StartFirst) | None => {
                    ServiceSpecRollbackConfigOrderEnum::START_FIRST
                }
            }),
        },
    );
    let p = &svc.placement;
    let placement = (!p.is_empty()).then(|| TaskSpecPlacement {
        constraints: (!p.constraints.is_empty()).then(|| p.constraints.clone()),
        preferences: (!p.spread.is_empty()).then(|| {
            p.spread
                .iter()
                .map(|d| TaskSpecPlacementPreferences {
                    spread: Some(TaskSpecPlacementSpread {
                        spread_descriptor: Some(d.clone()),
                    }),
                })
                .collect()
        }),
        max_replicas: p.max_replicas_per_node.map(i64::from),
        platforms: None,
    });
    let task_networks: Vec<NetworkAttachmentConfig> = svc
        .networks
        .iter()
        .filter_map(|(key, cfg)| {
            let target = networks.get(key)?;
            let mut aliases = vec![service.to_string()];
            aliases.extend(cfg.aliases.iter().cloned());
            Some(NetworkAttachmentConfig {
                target: Some(target.clone()),
                aliases: Some(aliases),
                driver_opts: None,
            })
        })
        .collect();
    Ok(ServiceSpec {
        name: Some(service_name(naming, app, service)),
        labels: Some(berth),
        task_template: Some(TaskSpec {
            container_spec: Some(container_spec),
            resources: Some(resources),
            restart_policy: Some(restart_policy),
            networks: Some(task_networks),
            placement,
            ..TaskSpec::default()
        }),
        mode: Some(if svc.global {
            ServiceSpecMode {
                global: Some(HashMap::new()),
                ..ServiceSpecMode::default()
            }
        } else {
            ServiceSpecMode {
                replicated: Some(ServiceSpecModeReplicated {
                    replicas: Some(i64::from(svc.replicas)),
                }),
                ..ServiceSpecMode::default()
            }
        }),
        update_config: Some(update_config),
        rollback_config: Some(rollback_config),
        endpoint_spec: Some(EndpointSpec {
            // A VIP only where the file asks for one (it needs IPVS on the nodes).
            mode: Some(match svc.endpoint_mode {
                Some(EndpointMode::Vip) => EndpointSpecModeEnum::VIP,
                Some(EndpointMode::Dnsrr) | None => EndpointSpecModeEnum::DNSRR,
            }),
            ..EndpointSpec::default()
        }),
        ..ServiceSpec::default()
    })
}

/// What the runtime made for a service before its spec: its overlay networks (Compose key →
/// network name), its secrets and configs, and the image reference nodes pull when it is not
/// the revision's pinned image ID (`--registry`: `HOST:PORT/...@sha256:...`).
#[derive(Debug, Default)]
pub(crate) struct Made {
    pub networks: BTreeMap<String, String>,
    pub objects: Objects,
    pub image: Option<String>,
}

/// The Swarm secrets and configs a revision's services use: (kind, Compose name, content
/// digest name) → (ID, name), made by the caller before the service (`ensure_objects`).
pub(crate) type Objects = BTreeMap<(ObjectKind, String), (String, String)>;

/// What the service's tasks see of its secrets: `/run/secrets/TARGET` (Swarm's place for a
/// relative target), read-only for everyone, as on the local runtime.
fn secret_refs(svc: &Service, objects: &Objects) -> Vec<TaskSpecContainerSpecSecrets> {
    svc.secrets
        .iter()
        .filter_map(|r| {
            let (id, name) = objects.get(&(ObjectKind::Secret, r.source.clone()))?;
            Some(TaskSpecContainerSpecSecrets {
                file: Some(TaskSpecContainerSpecFile {
                    name: Some(r.target.clone().unwrap_or_else(|| r.source.clone())),
                    uid: Some("0".into()),
                    gid: Some("0".into()),
                    mode: Some(0o444),
                }),
                secret_id: Some(id.clone()),
                secret_name: Some(name.clone()),
            })
        })
        .collect()
}

/// Configs at their target, `/NAME` by default, as on the local runtime.
fn config_refs(svc: &Service, objects: &Objects) -> Vec<TaskSpecContainerSpecConfigs> {
    svc.configs
        .iter()
        .filter_map(|r| {
            let (id, name) = objects.get(&(ObjectKind::Config, r.source.clone()))?;
            Some(TaskSpecContainerSpecConfigs {
                file: Some(TaskSpecContainerSpecFile1 {
                    name: Some(r.target.clone().unwrap_or_else(|| format!("/{}", r.source))),
                    uid: Some("0".into()),
                    gid: Some("0".into()),
                    mode: Some(0o444),
                }),
                runtime: None,
                config_id: Some(id.clone()),
                config_name: Some(name.clone()),
            })
        })
        .collect()
}

/// Volumes, binds and tmpfs. A named volume is a local volume on whichever node runs the
/// task, under the name it has on the local runtime: its data stays on that node.
fn mounts(naming: &Naming, spec: &RevisionSpec, app: &str, svc: &Service) -> Vec<SwarmMount> {
    let mut out: Vec<SwarmMount> = svc
        .mounts
        .iter()
        .map(|m| match m.kind {
            MountKind::Volume => SwarmMount {
                target: Some(m.target.clone()),
                source: m
                    .source
                    .as_ref()
                    .map(|key| naming.volume(app, key, spec.project.volumes.get(key))),
                typ: Some(MountType::VOLUME),
                read_only: Some(m.read_only),
                volume_options: m.source.as_ref().map(|key| MountVolumeOptions {
                    labels: Some(HashMap::from([
                        (labels::INSTANCE.to_string(), naming.instance.clone()),
                        (labels::APP.to_string(), app.to_string()),
                        (labels::VOLUME.to_string(), key.clone()),
                    ])),
                    ..MountVolumeOptions::default()
                }),
                ..SwarmMount::default()
            },
            MountKind::Bind => SwarmMount {
                target: Some(m.target.clone()),
                source: m.source.clone(),
                typ: Some(MountType::BIND),
                read_only: Some(m.read_only),
                ..SwarmMount::default()
            },
            MountKind::Tmpfs => SwarmMount {
                target: Some(m.target.clone()),
                typ: Some(MountType::TMPFS),
                ..SwarmMount::default()
            },
        })
        .collect();
    out.extend(svc.tmpfs.iter().map(|t| SwarmMount {
        target: Some(t.split(':').next().unwrap_or(t).to_string()),
        typ: Some(MountType::TMPFS),
        ..SwarmMount::default()
    }));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(compose: &str) -> RevisionSpec {
        spec_with_env(compose, &[])
    }

    fn made(networks: BTreeMap<String, String>) -> Made {
        Made {
            networks,
            ..Made::default()
        }
    }

    fn spec_with_env(compose: &str, env: &[(&str, &str)]) -> RevisionSpec {
        let mut b = berth_compose::Bundle {
            compose_files: vec!["compose.yaml".into()],
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
            ..berth_compose::Bundle::default()
        };
        b.files.insert("compose.yaml".into(), compose.into());
        RevisionSpec {
            project: berth_compose::load(&b).unwrap_or_else(|e| panic!("{compose}: {e}")),
            images: [("web".to_string(), "sha256:abc".to_string())].into(),
            image_ports: BTreeMap::new(),
            wires: BTreeMap::new(),
        }
    }
    fn naming() -> Naming {
        Naming {
            instance: "0123456789abcdef".into(),
        }
    }
    fn nets() -> BTreeMap<String, String> {
        [(
            "default".to_string(),
            "berth_012345_shop_default".to_string(),
        )]
        .into()
    }

    #[test]
    fn a_service_as_swarm_reads_it() {
        let s = spec(
            "services:
  web:
    image: web:1
    command: [serve, --port, '80']
    entrypoint: [/bin/app]
    environment: {A: '1'}
    labels: {team: shop}
    healthcheck: {test: [CMD, /bin/app, check], interval: 2s, retries: 3}
    stop_grace_period: 5s
    deploy:
      replicas: 3
      update_config: {parallelism: 2, delay: 1s, failure_action: pause, monitor: 10s, max_failure_ratio: 0.5, order: stop-first}
      restart_policy: {condition: on-failure, max_attempts: 4, delay: 2s, window: 30s}
      resources: {limits: {cpus: '0.5', memory: 64M}, reservations: {memory: 32M}}
",
        );
        let extra: BTreeMap<String, String> =
            [("berth.test".to_string(), "run1".to_string())].into();
        let out = service_spec(&naming(), &s, "shop", 7, "web", &made(nets()), &extra).unwrap();
        let v = serde_json::to_value(&out).unwrap();
        let hash = s.service_hash("web");
        assert_eq!(v["Name"], "berth_012345_shop_web");
        let berth = json!({
            "berth.instance": "0123456789abcdef",
            "berth.app": "shop",
            "berth.service": "web",
            "berth.hash": hash,
            "berth.revision": "7",
            "berth.test": "run1",
        });
        assert_eq!(v["Labels"], berth);
        let c = &v["TaskTemplate"]["ContainerSpec"];
        assert_eq!(c["Image"], "sha256:abc", "the revision's pinned image ID");
        assert_eq!(c["Command"], json!(["/bin/app"]));
        assert_eq!(c["Args"], json!(["serve", "--port", "80"]));
        assert_eq!(c["Env"], json!(["A=1"]));
        // Tasks keep their container labels: each says which spec it was made from.
        assert_eq!(c["Labels"]["berth.hash"], hash);
        assert_eq!(c["Labels"]["team"], "shop");
        assert_eq!(c["StopGracePeriod"], 5_000_000_000_i64);
        assert_eq!(
            c["HealthCheck"],
            json!({"Test": ["CMD", "/bin/app", "check"], "Interval": 2_000_000_000_i64, "Retries": 3})
        );
        // ...and says the tasks have one, so a running task reads as healthy.
        assert_eq!(c["Labels"]["berth.healthcheck"], "1");
        assert_eq!(v["Mode"], json!({"Replicated": {"Replicas": 3}}));
        assert_eq!(
            v["UpdateConfig"],
            json!({"Parallelism": 2, "Delay": 1_000_000_000_i64, "FailureAction": "pause",
                   "Monitor": 10_000_000_000_i64, "MaxFailureRatio": 0.5, "Order": "stop-first"})
        );
        assert_eq!(
            v["TaskTemplate"]["RestartPolicy"],
            json!({"Condition": "on-failure", "Delay": 2_000_000_000_i64, "MaxAttempts": 4,
                   "Window": 30_000_000_000_i64})
        );
        assert_eq!(
            v["TaskTemplate"]["Resources"],
            json!({"Limits": {"NanoCPUs": 500_000_000, "MemoryBytes": 67_108_864},
                   "Reservations": {"MemoryBytes": 33_554_432}})
        );
        assert_eq!(v["EndpointSpec"], json!({"Mode": "dnsrr"}));
        assert_eq!(
            v["TaskTemplate"]["Networks"],
            json!([{"Target": "berth_012345_shop_default", "Aliases": ["web"]}])
        );
        // No placement asked for, none sent; Swarm's rollback defaults with Berth's order.
        assert!(v["TaskTemplate"].get("Placement").is_none());
        assert_eq!(
            v["RollbackConfig"],
            json!({"Parallelism": 1, "FailureAction": "pause", "Order": "start-first"})
        );
    }

    #[test]
    fn secrets_configs_and_mounts_reach_the_tasks() {
        let s = spec_with_env(
            "services:
  web:
    image: web:1
    secrets: [token, {source: key, target: api.key}]
    configs: [{source: conf, target: /etc/app.conf}, conf]
    volumes: [data:/data, /srv/x:/x:ro, /scratch]
    tmpfs: ['/tmp:size=1m']
volumes: {data: {}}
secrets:
  token: {environment: TOKEN}
  key: {environment: TOKEN}
configs:
  conf: {environment: TOKEN}
",
            &[("TOKEN", "s3cret")],
        );
        let name = |src: &str| object_name(&naming(), "shop", src, "s3cret");
        assert_eq!(name("token").len(), "berth_012345_shop_token_".len() + 8);
        assert_ne!(
            name("token"),
            object_name(&naming(), "shop", "token", "other")
        );
        let objects: Objects = [
            (
                (ObjectKind::Secret, "token".to_string()),
                ("s1".to_string(), name("token")),
            ),
            (
                (ObjectKind::Secret, "key".to_string()),
                ("s2".to_string(), name("key")),
            ),
            (
                (ObjectKind::Config, "conf".to_string()),
                ("c1".to_string(), name("conf")),
            ),
        ]
        .into();
        let out = service_spec(
            &naming(),
            &s,
            "shop",
            1,
            "web",
            &Made {
                networks: nets(),
                objects,
                image: None,
            },
            &BTreeMap::new(),
        )
        .unwrap();
        let c = &serde_json::to_value(&out).unwrap()["TaskTemplate"]["ContainerSpec"];
        let file = |name: &str| json!({"Name": name, "UID": "0", "GID": "0", "Mode": 0o444});
        assert_eq!(
            c["Secrets"],
            json!([
                {"File": file("token"), "SecretID": "s1", "SecretName": name("token")},
                {"File": file("api.key"), "SecretID": "s2", "SecretName": name("key")}
            ])
        );
        assert_eq!(
            c["Configs"],
            json!([
                {"File": file("/etc/app.conf"), "ConfigID": "c1", "ConfigName": name("conf")},
                {"File": file("/conf"), "ConfigID": "c1", "ConfigName": name("conf")}
            ])
        );
        assert_eq!(
            c["Mounts"],
            json!([
                {"Target": "/data", "Source": "berth_012345_shop_data", "Type": "volume", "ReadOnly": false,
                 "VolumeOptions": {"Labels": {"berth.instance": naming().instance, "berth.app": "shop", "berth.volume": "data"}}},
                {"Target": "/x", "Source": "/srv/x", "Type": "bind", "ReadOnly": true},
                {"Target": "/scratch", "Type": "volume", "ReadOnly": false},
                {"Target": "/tmp", "Type": "tmpfs"}
            ])
        );
    }

    #[test]
    fn swarms_scheduling_keys_reach_the_service() {
        let s = spec(
            "services:
  web:
    image: web:1
    deploy:
      mode: global
      endpoint_mode: vip
      placement:
        constraints: ['node.role == manager']
        preferences: [{spread: node.labels.zone}]
        max_replicas_per_node: 2
      rollback_config: {parallelism: 0, delay: 2s, failure_action: continue, monitor: 3s, order: stop-first}
      resources: {reservations: {cpus: '0.25', memory: 16M}}
",
        );
        let out = service_spec(
            &naming(),
            &s,
            "shop",
            1,
            "web",
            &made(nets()),
            &BTreeMap::new(),
        )
        .unwrap();
        let v = serde_json::to_value(&out).unwrap();
        assert_eq!(v["Mode"], json!({"Global": {}}));
        assert_eq!(v["EndpointSpec"], json!({"Mode": "vip"}));
        assert_eq!(
            v["TaskTemplate"]["Placement"],
            json!({"Constraints": ["node.role == manager"],
                   "Preferences": [{"Spread": {"SpreadDescriptor": "node.labels.zone"}}],
                   "MaxReplicas": 2})
        );
        assert_eq!(
            v["RollbackConfig"],
            json!({"Parallelism": 0, "Delay": 2_000_000_000_i64, "FailureAction": "continue",
                   "Monitor": 3_000_000_000_i64, "MaxFailureRatio": 0.0, "Order": "stop-first"})
        );
        assert_eq!(
            v["TaskTemplate"]["Resources"]["Reservations"],
            json!({"NanoCPUs": 250_000_000, "MemoryBytes": 16_777_216})
        );
    }

    #[test]
    fn a_new_revision_at_the_same_hash_leaves_the_task_template_as_it_was() {
        let (n, nets, none) = (naming(), nets(), BTreeMap::new());
        let v1 = spec("services:\n  web:\n    image: web\n    deploy: {replicas: 2}\n");
        let running = service_spec(&n, &v1, "shop", 1, "web", &made(nets.clone()), &none).unwrap();
        // Revision 2 scales to 3: same hash; the tasks must not be replaced.
        let scaled = spec("services:\n  web:\n    image: web\n    deploy: {replicas: 3}\n");
        let mut body =
            service_spec(&n, &scaled, "shop", 2, "web", &made(nets.clone()), &none).unwrap();
        assert_ne!(
            body.task_template, running.task_template,
            "without keeping it"
        );
        keep_task_revision(&mut body, &running);
        assert_eq!(body.task_template, running.task_template);
        let labels = body.labels.as_ref().unwrap();
        assert_eq!(
            labels[labels::REVISION],
            "2",
            "the service says the new revision"
        );
        assert_eq!(body.mode.unwrap().replicated.unwrap().replicas, Some(3));
        // Revision 3 changes the service: its tasks are made by revision 3.
        let v3 = spec("services:\n  web:\n    image: web\n    environment: {A: 1}\n");
        let mut body = service_spec(&n, &v3, "shop", 3, "web", &made(nets.clone()), &none).unwrap();
        keep_task_revision(&mut body, &running);
        let c = body.task_template.unwrap().container_spec.unwrap();
        assert_eq!(c.labels.unwrap()[labels::REVISION], "3");
    }

    #[test]
    fn defaults_are_berths_start_first_rollback_and_restart_any() {
        let s = spec("services:\n  web:\n    image: web\n");
        let v = serde_json::to_value(
            service_spec(
                &naming(),
                &s,
                "shop",
                1,
                "web",
                &made(nets()),
                &BTreeMap::new(),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(v["UpdateConfig"]["Order"], "start-first");
        assert_eq!(v["UpdateConfig"]["FailureAction"], "rollback");
        assert_eq!(v["UpdateConfig"]["Parallelism"], 1);
        assert_eq!(v["TaskTemplate"]["RestartPolicy"]["Condition"], "any");
        assert_eq!(v["Mode"]["Replicated"]["Replicas"], 1);
        assert!(v["TaskTemplate"]["ContainerSpec"].get("Command").is_none());
        assert!(v["TaskTemplate"]["ContainerSpec"]["Labels"]
            .get("berth.healthcheck")
            .is_none());
    }

    #[test]
    fn a_vip_is_noted_where_the_kernel_has_no_ipvs() {
        let s = spec(
            "services:\n  web:\n    image: web\n    deploy: {endpoint_mode: vip}\n  db:\n    image: db\n    deploy: {endpoint_mode: dnsrr}\n  api: {image: api}\n",
        );
        let notes = vip_notes(&s.project, || false);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].starts_with("services.web.deploy.endpoint_mode: vip needs IPVS"),
            "{notes:?}"
        );
        assert!(vip_notes(&s.project, || true).is_empty());
        // The kernel is not even looked at when no service asks for a VIP (every apply).
        let none = spec("services:\n  api: {image: api}\n");
        assert!(vip_notes(&none.project, || panic!("looked at the kernel")).is_empty());
    }

    #[test]
    fn keys_not_carried_yet_are_refused_by_path() {
        let s = spec(
            "services:
  web:
    image: web
    ports: ['127.0.0.1:8080:80']
    volumes: [data:/data]
    container_name: the-web
volumes: {data: {}}
",
        );
        let err = service_spec(
            &naming(),
            &s,
            "shop",
            1,
            "web",
            &made(nets()),
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert_eq!(err, ["services.web.ports", "services.web.container_name"]);
        let err = service_spec(
            &naming(),
            &s,
            "shop",
            1,
            "nope",
            &made(nets()),
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert_eq!(err, ["services.nope"]);
    }

    #[test]
    fn long_names_stay_a_dns_label_and_distinct() {
        let n = naming();
        assert_eq!(service_name(&n, "shop", "web"), "berth_012345_shop_web");
        assert_eq!(
            service_name(&n, "team/shop", "web"),
            "berth_012345_team.shop_web"
        );
        let long_a = service_name(&n, "shop", &"a".repeat(80));
        let long_b = service_name(&n, "shop", &format!("{}b", "a".repeat(79)));
        assert_eq!(long_a.len(), 63);
        assert_eq!(long_b.len(), 63);
        assert_ne!(long_a, long_b);
    }

    #[test]
    fn a_project_is_refused_by_every_path_the_swarm_runtime_cannot_carry() {
        let s = spec(
            "services:
  web:
    image: web
    ports: ['8080']
    x-berth: {route: {host: a.example, port: 80}, health: {http: /}}
  api:
    image: api
    volumes: [data:/data]
volumes: {data: {}}
",
        );
        assert_eq!(unsupported_keys(&s.project), ["services.web.ports"]);
        assert!(unsupported_keys(&spec("services:\n  web: {image: web}\n").project).is_empty());
        // A fixed published port is served by the gateways on the nodes; a leased one or one
        // host address is not.
        let ported = spec(
            "services:\n  web:\n    image: web\n    ports: ['18080:80', '0.0.0.0:9000:90/udp']\n",
        );
        assert!(unsupported_keys(&ported.project).is_empty());
        for refused in ["['8080']", "['127.0.0.1:18080:80']"] {
            let s = spec(&format!(
                "services:\n  web:\n    image: web\n    ports: {refused}\n"
            ));
            assert_eq!(
                unsupported_keys(&s.project),
                ["services.web.ports"],
                "{refused}"
            );
        }
        // A route is served, and Berth's probe run, by the gateways on the nodes.
        let routed = spec("services:\n  web:\n    image: web\n    x-berth: {route: {port: 80}}\n");
        assert!(unsupported_keys(&routed.project).is_empty());
        let probed = spec(
            "services:\n  web:\n    image: web\n    x-berth: {route: {port: 80}, health: {http: /healthz}}\n",
        );
        assert!(unsupported_keys(&probed.project).is_empty());
    }
}
