//! Berth's typed model of a Compose project.
//!
//! Responsibility: the data other crates consume. Everything here is plain data that round-trips
//! through `serde_json` (the control plane stores it and hashes it), so maps are `BTreeMap`s,
//! enums serialize in `snake_case` and durations are `u64` milliseconds.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// A loaded, merged, interpolated and validated Compose project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Project {
    /// Services enabled by the active profiles, by name.
    pub services: BTreeMap<String, Service>,
    /// Networks by name; `default` is always present.
    pub networks: BTreeMap<String, Network>,
    /// Named volumes declared at top level.
    pub volumes: BTreeMap<String, Volume>,
    /// Secrets declared at top level, with their content.
    pub secrets: BTreeMap<String, FileObject>,
    /// Configs declared at top level, with their content.
    pub configs: BTreeMap<String, FileObject>,
}

/// A top-level network.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Network {
    /// Created outside the project; Berth only attaches to it.
    pub external: bool,
    /// The Docker name when it differs from the key.
    pub name: Option<String>,
    /// No external connectivity.
    pub internal: bool,
    /// Docker labels.
    pub labels: BTreeMap<String, String>,
}

/// A top-level named volume.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Volume {
    /// Created outside the project.
    pub external: bool,
    /// The Docker name when it differs from the key.
    pub name: Option<String>,
    /// Docker labels.
    pub labels: BTreeMap<String, String>,
}

/// A secret or config: its content, read from the bundle or the environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileObject {
    /// The file's content.
    pub content: String,
}

/// One service of the project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Service {
    /// The image reference (required: `build:` is not supported yet).
    pub image: String,
    /// Overrides the image's `CMD`; the string form is split like a shell would.
    pub command: Option<Vec<String>>,
    /// Overrides the image's `ENTRYPOINT`; the string form is split like a shell would.
    pub entrypoint: Option<Vec<String>>,
    /// `env_file` entries first, then `environment`, which overrides them.
    pub environment: BTreeMap<String, String>,
    /// Published ports, ranges expanded.
    pub ports: Vec<PortSpec>,
    /// Ports exposed to other services only.
    pub expose: Vec<u16>,
    /// The Docker healthcheck.
    pub healthcheck: Option<Healthcheck>,
    /// Container labels.
    pub labels: BTreeMap<String, String>,
    /// Mounts from `volumes:`.
    pub mounts: Vec<Mount>,
    /// Paths mounted as tmpfs (the `tmpfs:` key).
    pub tmpfs: Vec<String>,
    /// Networks joined, with aliases; `{"default": {aliases: []}}` when none is given.
    pub networks: BTreeMap<String, ServiceNetwork>,
    /// Services this one waits for.
    pub depends_on: BTreeMap<String, DependsCondition>,
    /// From `restart:` and `deploy.restart_policy` (the latter wins).
    pub restart: RestartPolicy,
    /// A fixed container name (only with one replica).
    pub container_name: Option<String>,
    /// `user[:group]` to run as.
    pub user: Option<String>,
    /// Working directory inside the container.
    pub working_dir: Option<String>,
    /// `host:ip` entries for `/etc/hosts`.
    pub extra_hosts: Vec<String>,
    /// Capabilities added.
    pub cap_add: Vec<String>,
    /// Capabilities dropped.
    pub cap_drop: Vec<String>,
    /// Time between SIGTERM and SIGKILL.
    pub stop_grace_period_ms: Option<u64>,
    /// Secrets mounted into the container.
    pub secrets: Vec<FileRef>,
    /// Configs mounted into the container.
    pub configs: Vec<FileRef>,
    /// `deploy.replicas` (or `scale`), default 1.
    pub replicas: u32,
    /// How replicas are replaced on update.
    pub update_config: UpdateConfig,
    /// Resource limits.
    pub resources: Resources,
    /// Berth's own settings from `x-berth`.
    pub berth: BerthExt,
}

/// A published port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    /// Host address to bind, all addresses when `None`.
    pub host_ip: Option<IpAddr>,
    /// Host port; `None` lets Docker choose.
    pub published: Option<u16>,
    /// Container port.
    pub target: u16,
    /// Transport protocol.
    pub protocol: Protocol,
}

/// A port's transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// TCP (the default).
    Tcp,
    /// UDP.
    Udp,
}

/// A Docker healthcheck.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Healthcheck {
    /// Docker form: `["CMD", ...]`, `["CMD-SHELL", "..."]` or `["NONE"]`; empty keeps the image's.
    pub test: Vec<String>,
    /// Time between checks.
    pub interval_ms: Option<u64>,
    /// Time a check may take.
    pub timeout_ms: Option<u64>,
    /// Consecutive failures before unhealthy.
    pub retries: Option<u32>,
    /// Grace period after start.
    pub start_period_ms: Option<u64>,
    /// Time between checks during the start period.
    pub start_interval_ms: Option<u64>,
    /// The image's healthcheck is disabled.
    pub disable: bool,
}

/// What kind of mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MountKind {
    /// A Docker volume (named or anonymous).
    Volume,
    /// A host path.
    Bind,
    /// A tmpfs.
    Tmpfs,
}

/// One mount of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Volume, bind or tmpfs.
    pub kind: MountKind,
    /// Volume name, or absolute host path for binds; `None` for anonymous volumes and tmpfs.
    pub source: Option<String>,
    /// Path inside the container.
    pub target: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// A service's attachment to a network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceNetwork {
    /// Extra DNS names of the service on that network.
    pub aliases: Vec<String>,
}

/// When a dependency counts as ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DependsCondition {
    /// The dependency's containers have started.
    ServiceStarted,
    /// The dependency is healthy.
    ServiceHealthy,
    /// The dependency ran to completion with exit code 0.
    ServiceCompletedSuccessfully,
}

/// When a container is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartCondition {
    /// Always.
    Always,
    /// Only after a non-zero exit.
    OnFailure,
    /// Never.
    No,
    /// Always, unless stopped by the user.
    UnlessStopped,
}

/// A restart policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    /// When to restart.
    pub condition: RestartCondition,
    /// Give up after this many restarts.
    pub max_attempts: Option<u32>,
    /// Wait between restarts.
    pub delay_ms: Option<u64>,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            condition: RestartCondition::Always,
            max_attempts: None,
            delay_ms: None,
        }
    }
}

/// Order of stop and start when replacing a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateOrder {
    /// Start the new replica before stopping the old one.
    StartFirst,
    /// Stop the old replica first.
    StopFirst,
}

/// What to do when an update fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureAction {
    /// Go back to the previous version.
    Rollback,
    /// Stop the update where it is.
    Pause,
    /// Carry on.
    Continue,
}

/// How an update rolls through replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateConfig {
    /// Replicas replaced at once; 0 means all at once.
    pub parallelism: u32,
    /// Wait between batches.
    pub delay_ms: u64,
    /// `None` lets Berth decide.
    pub order: Option<UpdateOrder>,
    /// What to do on failure.
    pub failure_action: FailureAction,
    /// How long a new replica is watched for failure.
    pub monitor_ms: Option<u64>,
}

impl Default for UpdateConfig {
    fn default() -> Self {
        Self {
            parallelism: 1,
            delay_ms: 0,
            order: None,
            failure_action: FailureAction::Rollback,
            monitor_ms: None,
        }
    }
}

/// Resource limits (`deploy.resources.limits`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    /// CPUs, e.g. 0.5.
    pub cpus: Option<f64>,
    /// Memory limit in bytes.
    pub memory_bytes: Option<i64>,
}

/// A secret or config mounted into a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// The top-level secret/config name.
    pub source: String,
    /// Path or name inside the container; the default location when `None`.
    pub target: Option<String>,
}

/// Berth's extension (`x-berth` on a service).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BerthExt {
    /// Gateway routes to this service (`x-berth.route`, one object or a list).
    pub routes: Vec<RouteSpec>,
    /// HTTP health probe used by Berth (`x-berth.health`).
    pub health: Option<HttpHealth>,
}

/// A gateway route to a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteSpec {
    /// Path prefix matched, starting with `/` (default `/`).
    pub path_prefix: String,
    /// Host header matched, any when `None`.
    pub host: Option<String>,
    /// Container port to send to; Berth picks when `None`.
    pub port: Option<u16>,
    /// Remove the prefix before forwarding.
    pub strip_prefix: bool,
}

/// An HTTP health probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpHealth {
    /// The path probed, starting with `/`.
    pub http: String,
    /// Container port probed; Berth picks when `None`.
    pub port: Option<u16>,
    /// Time between probes (default 2000).
    pub interval_ms: u64,
    /// Time a probe may take (default 1000).
    pub timeout_ms: u64,
}
