//! Typed views of the engine's answers: containers, images, networks, volumes, events.
//!
//! Rules it keeps: only the fields Berth uses are exposed, each as a plain Rust type; every
//! field tolerates being missing or `null` (the engine omits or nulls fields freely across
//! versions), so parsing never fails on an answer that has the right overall shape. The wire
//! shapes (PascalCase, nesting) stay private to this module.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

/// Deserializes `null` as the type's default (the engine sends `"Labels": null`, `"Aliases": null`).
pub(crate) fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Docker names start with `/` in its answers; Berth spells them without.
fn strip_slash(name: &str) -> String {
    name.strip_prefix('/').unwrap_or(name).to_string()
}

/// One row of `GET /containers/json`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerSummary {
    /// Full container ID.
    pub id: String,
    /// Names, without Docker's leading `/`.
    pub names: Vec<String>,
    /// The image as the container was created with (name or ID).
    pub image: String,
    /// The image ID (`sha256:...`).
    pub image_id: String,
    /// Container labels.
    pub labels: BTreeMap<String, String>,
    /// `created`, `running`, `paused`, `restarting`, `removing`, `exited` or `dead`.
    pub state: String,
    /// Human-readable status, e.g. `Up 3 minutes (healthy)`.
    pub status: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct WireContainerSummary {
    #[serde(default)]
    id: String,
    #[serde(default, deserialize_with = "nullable")]
    names: Vec<String>,
    #[serde(default)]
    image: String,
    #[serde(default, rename = "ImageID")]
    image_id: String,
    #[serde(default, deserialize_with = "nullable")]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    state: String,
    #[serde(default)]
    status: String,
}

impl From<WireContainerSummary> for ContainerSummary {
    fn from(w: WireContainerSummary) -> Self {
        ContainerSummary {
            id: w.id,
            names: w.names.iter().map(|n| strip_slash(n)).collect(),
            image: w.image,
            image_id: w.image_id,
            labels: w.labels,
            state: w.state,
            status: w.status,
        }
    }
}

/// The part of `GET /containers/{id}/json` Berth uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerInspect {
    /// Full container ID.
    pub id: String,
    /// Name, without Docker's leading `/`.
    pub name: String,
    /// The image ID (`sha256:...`) the container runs.
    pub image: String,
    /// The image reference it was created with (`Config.Image`, e.g. `shop/web:v2`).
    pub image_ref: String,
    /// Container labels.
    pub labels: BTreeMap<String, String>,
    /// Environment (`K=V`), including the image's.
    pub env: Vec<String>,
    /// Run state.
    pub state: ContainerState,
    /// How often the engine restarted it under its restart policy.
    pub restart_count: i64,
    /// Attached networks by network name.
    pub networks: BTreeMap<String, NetworkEndpoint>,
    /// Whether it has a TTY (its logs are then not multiplexed).
    pub tty: bool,
    /// Creation time, RFC 3339.
    pub created: String,
    /// The healthcheck the engine runs (`Config.Healthcheck`: the create request's, completed
    /// with the image's), if any.
    pub healthcheck: Option<crate::HealthConfig>,
}

/// `State` of an inspected container.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerState {
    /// `created`, `running`, `paused`, `restarting`, `removing`, `exited` or `dead`.
    pub status: String,
    /// Whether the process is running.
    pub running: bool,
    /// Last exit code.
    pub exit_code: i64,
    /// Whether the kernel OOM killer ended it.
    pub oom_killed: bool,
    /// RFC 3339 start time (`0001-01-01T00:00:00Z` when never started).
    pub started_at: String,
    /// RFC 3339 finish time (`0001-01-01T00:00:00Z` when never finished).
    pub finished_at: String,
    /// Health status when the container has a healthcheck: `starting`, `healthy`, `unhealthy`.
    pub health: Option<String>,
}

/// A container's attachment to one network.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetworkEndpoint {
    /// IPv4 address on that network (empty while not running).
    pub ip_address: String,
    /// The network's ID.
    pub network_id: String,
    /// DNS aliases on that network.
    pub aliases: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct WireContainerInspect {
    #[serde(default)]
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    image: String,
    #[serde(default)]
    created: String,
    #[serde(default, deserialize_with = "nullable")]
    config: WireConfig,
    #[serde(default, deserialize_with = "nullable")]
    state: WireState,
    #[serde(default)]
    restart_count: i64,
    #[serde(default, deserialize_with = "nullable")]
    network_settings: WireNetworkSettings,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct WireConfig {
    #[serde(default)]
    image: String,
    #[serde(default, deserialize_with = "nullable")]
    labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "nullable")]
    env: Vec<String>,
    #[serde(default)]
    tty: bool,
    #[serde(default, deserialize_with = "nullable")]
    exposed_ports: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    healthcheck: Option<WireHealthcheck>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct WireHealthcheck {
    #[serde(default, deserialize_with = "nullable")]
    test: Vec<String>,
    #[serde(default)]
    interval: i64,
    #[serde(default)]
    timeout: i64,
    #[serde(default)]
    retries: i64,
    #[serde(default)]
    start_period: i64,
    #[serde(default)]
    start_interval: i64,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct WireState {
    #[serde(default)]
    status: String,
    #[serde(default)]
    running: bool,
    #[serde(default)]
    exit_code: i64,
    #[serde(default, rename = "OOMKilled")]
    oom_killed: bool,
    #[serde(default)]
    started_at: String,
    #[serde(default)]
    finished_at: String,
    #[serde(default)]
    health: Option<WireHealth>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct WireHealth {
    #[serde(default)]
    status: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct WireNetworkSettings {
    #[serde(default, deserialize_with = "nullable")]
    networks: BTreeMap<String, WireEndpoint>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct WireEndpoint {
    #[serde(default, rename = "IPAddress")]
    ip_address: String,
    #[serde(default, rename = "NetworkID")]
    network_id: String,
    #[serde(default, deserialize_with = "nullable")]
    aliases: Vec<String>,
}

impl From<WireContainerInspect> for ContainerInspect {
    fn from(w: WireContainerInspect) -> Self {
        let health = w
            .state
            .health
            .map(|h| h.status)
            .filter(|s| !s.is_empty() && s != "none");
        ContainerInspect {
            id: w.id,
            name: strip_slash(&w.name),
            image: w.image,
            image_ref: w.config.image,
            labels: w.config.labels,
            env: w.config.env,
            state: ContainerState {
                status: w.state.status,
                running: w.state.running,
                exit_code: w.state.exit_code,
                oom_killed: w.state.oom_killed,
                started_at: w.state.started_at,
                finished_at: w.state.finished_at,
                health,
            },
            restart_count: w.restart_count,
            networks: w
                .network_settings
                .networks
                .into_iter()
                .map(|(name, e)| {
                    (
                        name,
                        NetworkEndpoint {
                            ip_address: e.ip_address,
                            network_id: e.network_id,
                            aliases: e.aliases,
                        },
                    )
                })
                .collect(),
            tty: w.config.tty,
            created: w.created,
            healthcheck: w.config.healthcheck.map(|h| crate::HealthConfig {
                test: h.test,
                interval_ns: h.interval,
                timeout_ns: h.timeout,
                retries: h.retries,
                start_period_ns: h.start_period,
                start_interval_ns: h.start_interval,
            }),
        }
    }
}

/// The part of `GET /images/{name}/json` Berth uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageInspect {
    /// Image ID (`sha256:...`).
    pub id: String,
    /// Ports the image declares (`EXPOSE`), e.g. `8080/tcp`, sorted.
    pub exposed_ports: Vec<String>,
    /// Size in bytes.
    pub size: i64,
    /// Tags pointing at it, e.g. `berth-testapp:v1`.
    pub repo_tags: Vec<String>,
    /// Image labels.
    pub labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct WireImageInspect {
    #[serde(default)]
    id: String,
    #[serde(default)]
    size: i64,
    #[serde(default, deserialize_with = "nullable")]
    repo_tags: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    config: WireConfig,
}

impl From<WireImageInspect> for ImageInspect {
    fn from(w: WireImageInspect) -> Self {
        ImageInspect {
            id: w.id,
            exposed_ports: w.config.exposed_ports.into_keys().collect(),
            size: w.size,
            repo_tags: w.repo_tags,
            labels: w.config.labels,
        }
    }
}

/// One row of `GET /networks`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkSummary {
    /// Network ID.
    #[serde(default)]
    pub id: String,
    /// Network name.
    #[serde(default)]
    pub name: String,
    /// Network labels.
    #[serde(default, deserialize_with = "nullable")]
    pub labels: BTreeMap<String, String>,
    /// Driver, e.g. `bridge`.
    #[serde(default)]
    pub driver: String,
    /// Whether the network has no route outside.
    #[serde(default)]
    pub internal: bool,
    /// Its address management: the subnets it holds.
    #[serde(default, rename = "IPAM")]
    pub ipam: NetworkIpam,
}

impl NetworkSummary {
    /// The subnets of the network (CIDR strings as Docker reports them, IPv4 or IPv6).
    pub fn subnets(&self) -> impl Iterator<Item = &str> {
        self.ipam
            .config
            .iter()
            .map(|c| c.subnet.as_str())
            .filter(|s| !s.is_empty())
    }
}

/// `IPAM` of a network.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkIpam {
    /// One entry per address pool of the network.
    #[serde(default, deserialize_with = "nullable")]
    pub config: Vec<IpamConfig>,
}

/// One `IPAM.Config` entry.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpamConfig {
    /// The pool, in CIDR notation (`10.200.3.0/24`).
    #[serde(default)]
    pub subnet: String,
}

/// One volume of `GET /volumes`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VolumeSummary {
    /// Volume name.
    #[serde(default)]
    pub name: String,
    /// Volume labels.
    #[serde(default, deserialize_with = "nullable")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct WireVolumeList {
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) volumes: Vec<VolumeSummary>,
}

/// `{"Id": ...}` answers of the create endpoints.
#[derive(Deserialize)]
pub(crate) struct WireCreated {
    #[serde(rename = "Id", default)]
    pub(crate) id: String,
}

/// The answer of `POST /containers/{id}/wait`.
#[derive(Deserialize)]
pub(crate) struct WireWait {
    #[serde(rename = "StatusCode", default)]
    pub(crate) status_code: i64,
    #[serde(rename = "Error", default)]
    pub(crate) error: Option<WireWaitError>,
}

/// `Error` of a wait answer (set when waiting itself failed).
#[derive(Deserialize)]
pub(crate) struct WireWaitError {
    #[serde(rename = "Message", default)]
    pub(crate) message: Option<String>,
}

/// `GET /version`, the part used for negotiation.
#[derive(Deserialize)]
pub(crate) struct WireVersion {
    #[serde(rename = "ApiVersion", default)]
    pub(crate) api_version: String,
    /// The engine's CPU architecture in Go's words (`amd64`, `arm64`).
    #[serde(rename = "Arch", default)]
    pub(crate) arch: String,
}

/// One object of the engine's event stream (`GET /events`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    /// Object type: `container`, `network`, `volume`, `image`, ...
    pub typ: String,
    /// What happened: `create`, `start`, `die`, `oom`, `kill`, `destroy`,
    /// `health_status: healthy`, `connect`, ...
    pub action: String,
    /// The object's ID (container ID, network ID, volume name, ...).
    pub id: String,
    /// `Actor.Attributes`: for containers this includes every label, plus `name`, `image`, and
    /// for `die` the `exitCode`.
    pub attributes: BTreeMap<String, String>,
    /// When it happened, nanoseconds since the Unix epoch.
    pub time_nano: i64,
}

impl Event {
    /// The container's exit code carried by `die` events.
    #[must_use]
    pub fn exit_code(&self) -> Option<i64> {
        self.attributes.get("exitCode")?.parse().ok()
    }
}

#[derive(Deserialize)]
pub(crate) struct WireEvent {
    #[serde(rename = "Type", default)]
    typ: String,
    #[serde(rename = "Action", default)]
    action: String,
    #[serde(rename = "Actor", default)]
    actor: WireActor,
    #[serde(rename = "timeNano", default)]
    time_nano: i64,
}

#[derive(Deserialize, Default)]
struct WireActor {
    #[serde(rename = "ID", default)]
    id: String,
    #[serde(rename = "Attributes", default, deserialize_with = "nullable")]
    attributes: BTreeMap<String, String>,
}

impl From<WireEvent> for Event {
    fn from(w: WireEvent) -> Self {
        Event {
            typ: w.typ,
            action: w.action,
            id: w.actor.id,
            attributes: w.actor.attributes,
            time_nano: w.time_nano,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspect_tolerates_nulls_and_missing_fields() {
        let w: WireContainerInspect = serde_json::from_str(
            r#"{"Id":"abc","Name":"/web-1","Image":"sha256:1","Config":{"Labels":null,"Env":null,"Image":"app:v1"},
                "State":{"Status":"running","Running":true,"Health":{"Status":"healthy"}},
                "NetworkSettings":{"Networks":{"net":{"IPAddress":"172.18.0.2","NetworkID":"n1","Aliases":null}}}}"#,
        )
        .unwrap();
        let c = ContainerInspect::from(w);
        assert_eq!(c.name, "web-1");
        assert_eq!(c.image_ref, "app:v1");
        assert!(c.labels.is_empty());
        assert_eq!(c.state.health.as_deref(), Some("healthy"));
        assert_eq!(c.networks["net"].ip_address, "172.18.0.2");
        assert!(c.networks["net"].aliases.is_empty());

        let bare: WireContainerInspect =
            serde_json::from_str(r#"{"Id":"x","Config":null,"State":null}"#).unwrap();
        assert_eq!(ContainerInspect::from(bare).state.health, None);
    }

    #[test]
    fn inspect_reads_the_healthcheck() {
        let w: WireContainerInspect = serde_json::from_str(
            r#"{"Id":"a","Config":{"Healthcheck":{"Test":["CMD-SHELL","true"],"Interval":5000000000,
                "Timeout":1000000000,"Retries":3,"StartPeriod":0}}}"#,
        )
        .unwrap();
        let h = ContainerInspect::from(w).healthcheck.unwrap();
        assert_eq!(h.test, ["CMD-SHELL", "true"]);
        assert_eq!(
            (h.interval_ns, h.timeout_ns, h.retries),
            (5_000_000_000, 1_000_000_000, 3)
        );
        assert_eq!(h.start_interval_ns, 0);
        let none: WireContainerInspect = serde_json::from_str(r#"{"Id":"a","Config":{}}"#).unwrap();
        assert_eq!(ContainerInspect::from(none).healthcheck, None);
    }

    #[test]
    fn event_from_wire() {
        let w: WireEvent = serde_json::from_str(
            r#"{"status":"die","id":"c1","Type":"container","Action":"die",
                "Actor":{"ID":"c1","Attributes":{"exitCode":"137","berth.test":"x","name":"web"}},
                "scope":"local","time":1,"timeNano":1000}"#,
        )
        .unwrap();
        let e = Event::from(w);
        assert_eq!(
            (e.typ.as_str(), e.action.as_str(), e.id.as_str()),
            ("container", "die", "c1")
        );
        assert_eq!(e.exit_code(), Some(137));
        assert_eq!(e.time_nano, 1000);
    }

    #[test]
    fn image_ports_sorted() {
        let w: WireImageInspect = serde_json::from_str(
            r#"{"Id":"sha256:i","Size":10,"RepoTags":null,"Config":{"ExposedPorts":{"9090/tcp":{},"8080/tcp":{}}}}"#,
        )
        .unwrap();
        let i = ImageInspect::from(w);
        assert_eq!(i.exposed_ports, vec!["8080/tcp", "9090/tcp"]);
        assert!(i.repo_tags.is_empty());
    }
}
