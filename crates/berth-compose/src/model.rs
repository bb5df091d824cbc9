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
    /// The image reference. Empty when the service has `build:` and no `image:` (the control
    /// plane then names the image it builds); with both, the built image is also tagged with it.
    pub image: String,
    /// How to build the image (`build:`), built by the server from the context the CLI uploads.
    /// Absent in revisions stored before `build:` was supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<BuildSpec>,
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
    /// `privileged: true`. The keys from here on reach the host, need an admission grant
    /// (docs/teams.md#admission), and are left out of the JSON while unset, so revisions stored
    /// before they existed load and keep their spec hash.
    #[serde(default, skip_serializing_if = "is_false")]
    pub privileged: bool,
    /// `network_mode`: `host` or `none` (no application network, no published port, no route
    /// or probe by container address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    /// `pid`: `host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
    /// `ipc`: `host`, `private`, `shareable` or `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipc: Option<String>,
    /// `userns_mode`: `host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userns_mode: Option<String>,
    /// `devices`, short syntax `HOST[:CONTAINER[:PERMS]]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceSpec>,
    /// `security_opt` entries, as written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_opt: Vec<String>,
    /// `deploy.mode: global`: one task on every node placement allows (Swarm); on one engine
    /// (the local runtime) one replica, and apply says so. The keys from here on are Swarm's
    /// scheduling and are left out of the JSON while unset (spec hashes stay as they were).
    #[serde(default, skip_serializing_if = "is_false")]
    pub global: bool,
    /// `deploy.placement` (Swarm; reported at apply as ignored on the local runtime).
    #[serde(default, skip_serializing_if = "Placement::is_empty")]
    pub placement: Placement,
    /// `deploy.rollback_config`: how Swarm rolls a failed update back (Swarm's defaults when
    /// unset). Berth's own rollback on the local runtime follows `update_config`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_config: Option<UpdateConfig>,
    /// `deploy.endpoint_mode` as written (Swarm; Berth's default there is `dnsrr`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_mode: Option<EndpointMode>,
}

/// `deploy.placement`: where Swarm may run a service's tasks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// Constraints (`node.role == manager`, `node.labels.zone != b`), as written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<String>,
    /// `preferences: [{spread: DESCRIPTOR}]`: the spread descriptors, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spread: Vec<String>,
    /// `max_replicas_per_node`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replicas_per_node: Option<u32>,
}

impl Placement {
    /// Nothing set.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.constraints.is_empty()
            && self.spread.is_empty()
            && self.max_replicas_per_node.is_none()
    }
}

/// `deploy.endpoint_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointMode {
    /// A virtual IP per service (needs IPVS in the nodes' kernels).
    Vip,
    /// DNS round robin over the tasks' addresses.
    Dnsrr,
}

/// One host device mapped into a container (`devices:`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceSpec {
    /// The device on the host, an absolute path.
    pub host: String,
    /// Its path in the container (the host path when not given).
    pub container: String,
    /// cgroup permissions, some of `rwm` (default `rwm`).
    pub permissions: String,
}

/// A service's `build:`. Paths are as written (after interpolation), relative to the project
/// directory on the client: the server never reads them, the CLI packs the context and
/// uploads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildSpec {
    /// The context directory (`build: DIR` or `build.context`), normalized; default `.`.
    pub context: String,
    /// The Dockerfile, relative to the context; default `Dockerfile`.
    pub dockerfile: String,
    /// `ARG` values. A bare `KEY` takes the client's environment (or `.env`) value and is left
    /// out when neither sets it, as in Compose.
    pub args: BTreeMap<String, String>,
    /// The stage to build (`--target`).
    pub target: Option<String>,
    /// Labels put on the built image.
    pub labels: BTreeMap<String, String>,
}

/// A published port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    /// Host address to bind, all addresses when `None`.
    pub host_ip: Option<IpAddr>,
    /// Host port; `None`: Berth leases one from the environment's range when the revision is
    /// committed (docs/environments.md#ports-as-leases).
    pub published: Option<u16>,
    /// Container port.
    pub target: u16,
    /// Transport protocol.
    pub protocol: Protocol,
    /// `published` was leased by Berth (the Compose file named no host port): a release or a
    /// clone into another environment leases it again there.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub leased: bool,
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
    /// Its position in the service's merged `volumes:` list, so a check can name it
    /// (`services.web.volumes[0]`). Not part of the spec hash; absent in revisions stored
    /// before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
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
    /// Least wait between an exit and the restart; the crash-loop backoff grows from it.
    pub delay_ms: Option<u64>,
    /// A restart that runs this long before exiting again succeeded: the count of failed
    /// restarts starts over. `None`: every restart counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_ms: Option<u64>,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            condition: RestartCondition::Always,
            max_attempts: None,
            delay_ms: None,
            window_ms: None,
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Fraction (0 to 1) of the service's slots whose update may fail before `failure_action`
    /// applies; 0 (the default): any failure. Written only when set, so the spec hash of a
    /// service without it is what it was before the key was read.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_failure_ratio: f64,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

impl Default for UpdateConfig {
    fn default() -> Self {
        Self {
            parallelism: 1,
            delay_ms: 0,
            order: None,
            failure_action: FailureAction::Rollback,
            monitor_ms: None,
            max_failure_ratio: 0.0,
        }
    }
}

/// Resource limits (`deploy.resources.limits`) and the memory reservation
/// (`deploy.resources.reservations.memory`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    /// CPUs, e.g. 0.5.
    pub cpus: Option<f64>,
    /// Memory limit in bytes.
    pub memory_bytes: Option<i64>,
    /// Memory reservation in bytes (Docker's soft limit, `MemoryReservation`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_reservation_bytes: Option<i64>,
    /// CPUs reserved (`reservations.cpus`): Swarm schedules by it; one engine has no
    /// equivalent (reported at apply on the local runtime).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus_reservation: Option<f64>,
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
///
/// The traffic policies are `#[serde(default)]` and left out of the JSON while off, so revisions
/// stored before they existed still load, and a service without them keeps its spec hash.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BerthExt {
    /// Gateway routes to this service (`x-berth.route`, one object or a list).
    pub routes: Vec<RouteSpec>,
    /// HTTP health probe used by Berth (`x-berth.health`).
    pub health: Option<HttpHealth>,
    /// Fail fast while the service is failing (`x-berth.circuit_breaker`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreakerSpec>,
    /// Bounded concurrency, a bulkhead (`x-berth.max_concurrency`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<ConcurrencySpec>,
    /// Gateway timeouts (`x-berth.timeout`); unset fields keep the gateway's defaults.
    #[serde(default, skip_serializing_if = "TimeoutSpec::is_unset")]
    pub timeout: TimeoutSpec,
    /// Retries of idempotent requests (`x-berth.retries`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<RetrySpec>,
    /// Market entries this service calls (`x-berth.uses: [TEAM/SERVICE]`): the application
    /// subscribes to each, and the service gets `<SERVICE>_URL` and `<SERVICE>_TOKEN_FILE`
    /// (docs/market.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uses: Vec<String>,
    /// An installed copy of a market entry (`x-berth.from_market: TEAM/SERVICE:VERSION`) in
    /// place of `image:`: apply pins the published version's image (docs/market.md#install).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_market: Option<String>,
    /// `x-berth.mqtt: true`: the service gets `BERTH_MQTT_URL`, `BERTH_MQTT_USERNAME` and
    /// `BERTH_MQTT_TOKEN_FILE`, a renewed login to Berth's MQTT broker for its application
    /// (docs/messaging.md#services).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mqtt: bool,
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
    /// Require a valid bearer token (`auth`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSpec>,
    /// Limit the request rate (`rate_limit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitSpec>,
    /// Answer plain-HTTP requests with a redirect to HTTPS (`redirect_https`, default false).
    #[serde(default, skip_serializing_if = "is_false")]
    pub redirect_https: bool,
    /// The protocol the service speaks on the route's port (`protocol`, default `http1`).
    /// Left out of the JSON when default, so stored revisions keep their spec hash.
    #[serde(default, skip_serializing_if = "RouteProtocol::is_default")]
    pub protocol: RouteProtocol,
    /// Per-subscriber limits by plan name, with `auth: subscribers` (`plans`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub plans: BTreeMap<String, PlanSpec>,
}

/// `x-berth.route.plans.NAME`: each subscriber of the plan may make `per_second` requests on
/// average, bursts of `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanSpec {
    pub per_second: u32,
    pub burst: u32,
}

/// `x-berth.route.protocol`: what the service speaks on the route's port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteProtocol {
    /// HTTP/1.1 (the default). gRPC from HTTP/2 clients still goes upstream over h2c.
    #[default]
    Http1,
    /// HTTP/2 with prior knowledge (h2c): every request goes upstream over HTTP/2.
    H2c,
}

impl RouteProtocol {
    #[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
    fn is_default(&self) -> bool {
        *self == RouteProtocol::Http1
    }
}

impl Default for RouteSpec {
    /// Everything under `/`, any host, the default port, no policy.
    fn default() -> Self {
        Self {
            path_prefix: "/".to_owned(),
            host: None,
            port: None,
            strip_prefix: false,
            auth: None,
            rate_limit: None,
            redirect_https: false,
            protocol: RouteProtocol::Http1,
            plans: BTreeMap::new(),
        }
    }
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_false(b: &bool) -> bool {
    !*b
}

/// `x-berth.route.auth`: how requests must authenticate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthSpec {
    /// A bearer JWT (`auth: jwt`, or `auth: {jwt: {issuers: [...], audiences: [...]}}`).
    Jwt(JwtSpec),
    /// `auth: subscribers`: only the applications subscribed to the market entry this route
    /// serves, with the credential Berth issued them (docs/market.md).
    Subscribers,
}

/// Which JWTs a route accepts. An empty list means Berth's default, which the parser cannot
/// know: issuers `[berth]` (Berth's own), audiences `[the application's name]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwtSpec {
    /// Names of accepted issuers; empty means Berth's own (`berth`).
    pub issuers: Vec<String>,
    /// Accepted `aud` values (any one); empty means the application's name.
    pub audiences: Vec<String>,
}

/// What a rate limit counts by (`x-berth.route.rate_limit.key`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitKey {
    /// One bucket for the whole route (the default).
    #[default]
    Route,
    /// One bucket per JWT subject; needs `auth` on the same route.
    Consumer,
    /// One bucket per client IP.
    Ip,
}

/// `x-berth.route.rate_limit`: `per_second` requests on average, bursts of `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimitSpec {
    /// Sustained rate, at least 1 (required).
    pub per_second: u32,
    /// Requests allowed at once, at least 1 (default: `per_second`).
    pub burst: u32,
    /// What the limit counts by (default `route`).
    pub key: RateLimitKey,
}

/// `x-berth.circuit_breaker`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CircuitBreakerSpec {
    /// Open when failures / requests in the window reach this; 0 < r ≤ 1 (default 0.5).
    pub failure_ratio: f64,
    /// ... and the window saw at least this many requests, at least 1 (default 20).
    pub min_requests: u32,
    /// The sliding window, more than 0 (default 10 s).
    pub window_ms: u64,
    /// Time open before half-open, more than 0 (default 5 s).
    pub open_for_ms: u64,
    /// Requests let through while half-open, at least 1 (default 3).
    pub half_open_probes: u32,
    /// Slow calls count towards opening too (`slow_call`).
    pub slow_call: Option<SlowCallSpec>,
}

impl Default for CircuitBreakerSpec {
    /// The defaults of `circuit_breaker: {}`.
    fn default() -> Self {
        Self {
            failure_ratio: 0.5,
            min_requests: 20,
            window_ms: 10_000,
            open_for_ms: 5_000,
            half_open_probes: 3,
            slow_call: None,
        }
    }
}

/// `x-berth.circuit_breaker.slow_call`: calls slower than `threshold_ms` are slow; a slow ratio
/// at or above `ratio` opens the breaker. Both are required.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SlowCallSpec {
    /// More than 0.
    pub threshold_ms: u64,
    /// 0 < r ≤ 1.
    pub ratio: f64,
}

/// `x-berth.max_concurrency`: at most `limit` requests in flight, `queue` more waiting at most
/// `queue_timeout_ms`; beyond that the gateway answers 503 at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConcurrencySpec {
    /// At least 1 (required).
    pub limit: u32,
    /// Default 0: no queue.
    pub queue: u32,
    /// More than 0 (default 1 s).
    pub queue_timeout_ms: u64,
}

/// `x-berth.timeout`; each is optional and more than 0, and `per_try` ≤ `total`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeoutSpec {
    /// To connect to a replica.
    pub connect_ms: Option<u64>,
    /// Until response headers, per attempt.
    pub per_try_ms: Option<u64>,
    /// Until response headers, all attempts together.
    pub total_ms: Option<u64>,
}

impl TimeoutSpec {
    /// No timeout set.
    #[must_use]
    pub fn is_unset(&self) -> bool {
        *self == Self::default()
    }
}

/// `x-berth.retries`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetrySpec {
    /// Retries per request, 0..=5 (default 2).
    pub attempts: u32,
    /// Retries may add at most this % to recent traffic, 1..=100 (default 20).
    pub budget_percent: u32,
}

impl Default for RetrySpec {
    /// The defaults of `retries: {}`.
    fn default() -> Self {
        Self {
            attempts: 2,
            budget_percent: 20,
        }
    }
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
