//! The typed container-create request and its translation to the Engine API's JSON.
//!
//! Rules it keeps: every field is optional or has an empty default, and an empty field is left
//! out of the JSON so the engine (and the image) supply their defaults; the wire shape is built
//! in one function, [`ContainerSpec::to_create_body`], so a reviewer can read the whole mapping
//! in one place.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

/// What to create a container from: the typed form of `POST /containers/create`'s body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerSpec {
    /// Image reference or ID.
    pub image: String,
    /// Arguments (`Cmd`); `None` keeps the image's.
    pub cmd: Option<Vec<String>>,
    /// Entrypoint; `None` keeps the image's.
    pub entrypoint: Option<Vec<String>>,
    /// Environment, `K=V`.
    pub env: Vec<String>,
    /// Container labels.
    pub labels: BTreeMap<String, String>,
    /// `user[:group]`.
    pub user: Option<String>,
    /// Working directory.
    pub working_dir: Option<String>,
    /// Ports to declare, e.g. `80/tcp` (`ExposedPorts`).
    pub exposed_ports: Vec<String>,
    /// Hostname inside the container.
    pub hostname: Option<String>,
    /// Healthcheck; `None` keeps the image's.
    pub healthcheck: Option<HealthConfig>,
    /// Seconds to wait after the stop signal before killing.
    pub stop_timeout_secs: Option<i64>,
    /// Signal sent on stop, e.g. `SIGTERM`.
    pub stop_signal: Option<String>,
    /// Allocate a TTY (logs are then a single raw stream).
    pub tty: bool,
    /// `HostConfig`.
    pub host: HostSpec,
    /// Networks to attach, by name, each with its DNS aliases. The engine (API 1.41) accepts one
    /// network at create time: the container is created on the first (in name order) and
    /// `Docker::create_container` connects the others before returning.
    pub networks: BTreeMap<String, Vec<String>>,
}

/// The first API version whose `Healthcheck` has `StartInterval` (Docker 25).
pub const START_INTERVAL_API: (u32, u32) = (1, 44);

/// A container healthcheck (`Healthcheck`); durations in nanoseconds, 0 = engine default.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HealthConfig {
    /// `["CMD", "prog", "arg"]`, `["CMD-SHELL", "cmd"]` or `["NONE"]`.
    pub test: Vec<String>,
    /// Time between checks.
    pub interval_ns: i64,
    /// Time a check may take.
    pub timeout_ns: i64,
    /// Consecutive failures before `unhealthy`.
    pub retries: i64,
    /// Grace period during which failures do not count.
    pub start_period_ns: i64,
    /// Time between checks during the start period (`StartInterval`, API 1.44+; 0 = engine
    /// default). Left out of the request on older engines, which would refuse nothing but
    /// ignore it: see [`ContainerSpec::to_create_body_for`].
    pub start_interval_ns: i64,
}

/// The `HostConfig` part of a create request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostSpec {
    /// Bind mounts in `src:dst[:opts]` form.
    pub binds: Vec<String>,
    /// Structured mounts.
    pub mounts: Vec<MountSpec>,
    /// tmpfs mounts: path to options (e.g. `size=64m`).
    pub tmpfs: BTreeMap<String, String>,
    /// Capabilities to add.
    pub cap_add: Vec<String>,
    /// Capabilities to drop.
    pub cap_drop: Vec<String>,
    /// `host:ip` lines added to `/etc/hosts`.
    pub extra_hosts: Vec<String>,
    /// CPU quota in units of 1e-9 CPUs.
    pub nano_cpus: Option<i64>,
    /// Memory limit in bytes.
    pub memory: Option<i64>,
    /// Memory soft limit in bytes (`MemoryReservation`).
    pub memory_reservation: Option<i64>,
    /// `no` (the default), `always`, `unless-stopped`, `on-failure` or `on-failure:N`.
    pub restart_policy: Option<String>,
    /// `bridge`, `host`, `none`, `container:<id>` or a network name. When `None` and
    /// [`ContainerSpec::networks`] is not empty, the first network is used.
    pub network_mode: Option<String>,
    /// Run an init process as PID 1.
    pub init: Option<bool>,
    /// Full access to the host (`Privileged`).
    pub privileged: bool,
    /// `host` shares the host's PID namespace (`PidMode`).
    pub pid_mode: Option<String>,
    /// `host`, `private`, `shareable` or `none` (`IpcMode`).
    pub ipc_mode: Option<String>,
    /// `host` turns user-namespace remapping off (`UsernsMode`).
    pub userns_mode: Option<String>,
    /// Host devices: (host path, container path, cgroup permissions) (`Devices`).
    pub devices: Vec<(String, String, String)>,
    /// `SecurityOpt` entries (`no-new-privileges`, `seccomp=unconfined`, ...).
    pub security_opt: Vec<String>,
    /// Published ports: container port (`80/tcp`) to `(host ip, host port)` pairs; an empty
    /// host port lets the engine choose.
    pub port_bindings: BTreeMap<String, Vec<(String, String)>>,
}

/// One structured mount (`HostConfig.Mounts[]`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MountSpec {
    /// `volume`, `bind` or `tmpfs`.
    pub typ: String,
    /// Volume name or host path (empty for tmpfs).
    pub source: String,
    /// Path in the container.
    pub target: String,
    /// Mount read-only.
    pub read_only: bool,
}

impl ContainerSpec {
    /// The network the container is created on: the first of [`ContainerSpec::networks`].
    #[must_use]
    pub fn primary_network(&self) -> Option<(&String, &Vec<String>)> {
        self.networks.iter().next()
    }

    /// The JSON body of `POST /containers/create` for the newest API version Berth speaks.
    #[must_use]
    pub fn to_create_body(&self) -> Value {
        self.to_create_body_for((u32::MAX, u32::MAX))
    }

    /// The JSON body of `POST /containers/create` for an engine speaking API `version`
    /// (major, minor): fields the engine does not know (`Healthcheck.StartInterval` before
    /// 1.44) are left out.
    #[must_use]
    pub fn to_create_body_for(&self, version: (u32, u32)) -> Value {
        let mut body = Map::new();
        body.insert("Image".into(), json!(self.image));
        put_opt(&mut body, "Cmd", self.cmd.as_ref());
        put_opt(&mut body, "Entrypoint", self.entrypoint.as_ref());
        put_vec(&mut body, "Env", &self.env);
        if !self.labels.is_empty() {
            body.insert("Labels".into(), json!(self.labels));
        }
        put_opt(&mut body, "User", self.user.as_ref());
        put_opt(&mut body, "WorkingDir", self.working_dir.as_ref());
        put_opt(&mut body, "Hostname", self.hostname.as_ref());
        if !self.exposed_ports.is_empty() {
            let ports: Map<String, Value> = self
                .exposed_ports
                .iter()
                .map(|p| (p.clone(), json!({})))
                .collect();
            body.insert("ExposedPorts".into(), Value::Object(ports));
        }
        if let Some(h) = &self.healthcheck {
            let mut hc = json!({
                "Test": h.test,
                "Interval": h.interval_ns,
                "Timeout": h.timeout_ns,
                "Retries": h.retries,
                "StartPeriod": h.start_period_ns,
            });
            if h.start_interval_ns != 0 && version >= START_INTERVAL_API {
                hc["StartInterval"] = json!(h.start_interval_ns);
            }
            body.insert("Healthcheck".into(), hc);
        }
        put_opt(&mut body, "StopTimeout", self.stop_timeout_secs.as_ref());
        put_opt(&mut body, "StopSignal", self.stop_signal.as_ref());
        if self.tty {
            body.insert("Tty".into(), json!(true));
        }
        body.insert("HostConfig".into(), self.host_config());
        if let Some((name, aliases)) = self.primary_network() {
            let mut endpoint = Map::new();
            put_vec(&mut endpoint, "Aliases", aliases);
            body.insert(
                "NetworkingConfig".into(),
                json!({ "EndpointsConfig": { name.clone(): Value::Object(endpoint) } }),
            );
        }
        Value::Object(body)
    }

    fn host_config(&self) -> Value {
        let h = &self.host;
        let mut hc = Map::new();
        put_vec(&mut hc, "Binds", &h.binds);
        if !h.mounts.is_empty() {
            let mounts: Vec<Value> = h
                .mounts
                .iter()
                .map(|m| {
                    let mut v = Map::new();
                    v.insert("Type".into(), json!(m.typ));
                    if !m.source.is_empty() {
                        v.insert("Source".into(), json!(m.source));
                    }
                    v.insert("Target".into(), json!(m.target));
                    if m.read_only {
                        v.insert("ReadOnly".into(), json!(true));
                    }
                    Value::Object(v)
                })
                .collect();
            hc.insert("Mounts".into(), Value::Array(mounts));
        }
        if !h.tmpfs.is_empty() {
            hc.insert("Tmpfs".into(), json!(h.tmpfs));
        }
        put_vec(&mut hc, "CapAdd", &h.cap_add);
        put_vec(&mut hc, "CapDrop", &h.cap_drop);
        put_vec(&mut hc, "ExtraHosts", &h.extra_hosts);
        put_opt(&mut hc, "NanoCpus", h.nano_cpus.as_ref());
        put_opt(&mut hc, "Memory", h.memory.as_ref());
        put_opt(&mut hc, "MemoryReservation", h.memory_reservation.as_ref());
        if let Some(policy) = &h.restart_policy {
            let (name, retries) = match policy.split_once(':') {
                Some((name, n)) => (name, n.parse::<i64>().unwrap_or(0)),
                None => (policy.as_str(), 0),
            };
            let name = if name == "no" { "" } else { name };
            hc.insert(
                "RestartPolicy".into(),
                json!({ "Name": name, "MaximumRetryCount": retries }),
            );
        }
        let network_mode = h
            .network_mode
            .clone()
            .or_else(|| self.primary_network().map(|(n, _)| n.clone()));
        put_opt(&mut hc, "NetworkMode", network_mode.as_ref());
        put_opt(&mut hc, "Init", h.init.as_ref());
        if h.privileged {
            hc.insert("Privileged".into(), json!(true));
        }
        put_opt(&mut hc, "PidMode", h.pid_mode.as_ref());
        put_opt(&mut hc, "IpcMode", h.ipc_mode.as_ref());
        put_opt(&mut hc, "UsernsMode", h.userns_mode.as_ref());
        if !h.devices.is_empty() {
            let devices: Vec<Value> = h
                .devices
                .iter()
                .map(|(host, container, perms)| {
                    json!({
                        "PathOnHost": host,
                        "PathInContainer": container,
                        "CgroupPermissions": perms,
                    })
                })
                .collect();
            hc.insert("Devices".into(), Value::Array(devices));
        }
        put_vec(&mut hc, "SecurityOpt", &h.security_opt);
        if !h.port_bindings.is_empty() {
            let pb: Map<String, Value> = h
                .port_bindings
                .iter()
                .map(|(port, binds)| {
                    let list: Vec<Value> = binds
                        .iter()
                        .map(|(ip, hp)| json!({ "HostIp": ip, "HostPort": hp }))
                        .collect();
                    (port.clone(), Value::Array(list))
                })
                .collect();
            hc.insert("PortBindings".into(), Value::Object(pb));
        }
        Value::Object(hc)
    }
}

fn put_opt<T: serde::Serialize>(map: &mut Map<String, Value>, key: &str, v: Option<&T>) {
    if let Some(v) = v {
        map.insert(key.into(), json!(v));
    }
}

fn put_vec(map: &mut Map<String, Value>, key: &str, v: &[String]) {
    if !v.is_empty() {
        map.insert(key.into(), json!(v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_spec_is_minimal() {
        let spec = ContainerSpec {
            image: "app:v1".into(),
            ..Default::default()
        };
        assert_eq!(
            spec.to_create_body(),
            json!({"Image": "app:v1", "HostConfig": {}})
        );
    }

    #[test]
    fn full_spec_maps_to_engine_json() {
        let spec = ContainerSpec {
            image: "app:v1".into(),
            cmd: Some(vec!["serve".into()]),
            entrypoint: None,
            env: vec!["PORT=80".into()],
            labels: [("berth.app".to_string(), "shop".to_string())].into(),
            user: Some("1000".into()),
            working_dir: Some("/srv".into()),
            exposed_ports: vec!["80/tcp".into()],
            hostname: Some("web".into()),
            healthcheck: Some(HealthConfig {
                test: vec!["CMD".into(), "/check".into()],
                interval_ns: 1_000_000_000,
                timeout_ns: 2,
                retries: 3,
                start_period_ns: 4,
                start_interval_ns: 5,
            }),
            stop_timeout_secs: Some(5),
            stop_signal: Some("SIGINT".into()),
            tty: false,
            host: HostSpec {
                binds: vec!["/a:/b:ro".into()],
                mounts: vec![MountSpec {
                    typ: "volume".into(),
                    source: "data".into(),
                    target: "/data".into(),
                    read_only: true,
                }],
                tmpfs: [("/tmp".to_string(), "size=1m".to_string())].into(),
                cap_add: vec![],
                cap_drop: vec!["ALL".into()],
                extra_hosts: vec!["h:1.2.3.4".into()],
                nano_cpus: Some(500_000_000),
                memory: Some(1 << 20),
                memory_reservation: Some(1 << 19),
                restart_policy: Some("on-failure:3".into()),
                network_mode: None,
                init: Some(true),
                privileged: true,
                pid_mode: Some("host".into()),
                ipc_mode: Some("host".into()),
                userns_mode: Some("host".into()),
                devices: vec![("/dev/fuse".into(), "/dev/fuse".into(), "rwm".into())],
                security_opt: vec!["no-new-privileges".into()],
                port_bindings: [(
                    "80/tcp".to_string(),
                    vec![("127.0.0.1".to_string(), String::new())],
                )]
                .into(),
            },
            networks: [
                ("b-net".to_string(), vec![]),
                ("a-net".to_string(), vec!["web".to_string()]),
            ]
            .into(),
        };
        let body = spec.to_create_body();
        assert_eq!(
            body,
            json!({
                "Image": "app:v1", "Cmd": ["serve"], "Env": ["PORT=80"], "Labels": {"berth.app": "shop"},
                "User": "1000", "WorkingDir": "/srv", "Hostname": "web", "ExposedPorts": {"80/tcp": {}},
                "Healthcheck": {"Test": ["CMD", "/check"], "Interval": 1_000_000_000, "Timeout": 2, "Retries": 3, "StartPeriod": 4, "StartInterval": 5},
                "StopTimeout": 5, "StopSignal": "SIGINT",
                "HostConfig": {
                    "Binds": ["/a:/b:ro"],
                    "Mounts": [{"Type": "volume", "Source": "data", "Target": "/data", "ReadOnly": true}],
                    "Tmpfs": {"/tmp": "size=1m"}, "CapDrop": ["ALL"], "ExtraHosts": ["h:1.2.3.4"],
                    "NanoCpus": 500_000_000, "Memory": 1_048_576, "MemoryReservation": 524_288,
                    "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3},
                    "NetworkMode": "a-net", "Init": true,
                    "Privileged": true, "PidMode": "host", "IpcMode": "host", "UsernsMode": "host",
                    "Devices": [{"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse", "CgroupPermissions": "rwm"}],
                    "SecurityOpt": ["no-new-privileges"],
                    "PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}
                },
                "NetworkingConfig": {"EndpointsConfig": {"a-net": {"Aliases": ["web"]}}}
            })
        );
    }

    #[test]
    fn start_interval_only_where_the_engine_has_it() {
        let spec = ContainerSpec {
            image: "x".into(),
            healthcheck: Some(HealthConfig {
                test: vec!["CMD".into(), "/check".into()],
                start_interval_ns: 250_000_000,
                ..HealthConfig::default()
            }),
            ..Default::default()
        };
        let at = |v| {
            spec.to_create_body_for(v)["Healthcheck"]
                .get("StartInterval")
                .cloned()
        };
        assert_eq!(at((1, 41)), None);
        assert_eq!(at((1, 43)), None);
        assert_eq!(at((1, 44)), Some(json!(250_000_000)));
        assert_eq!(at((1, 45)), Some(json!(250_000_000)));
        let unset = ContainerSpec {
            healthcheck: Some(HealthConfig::default()),
            ..spec.clone()
        };
        assert_eq!(
            unset.to_create_body_for((1, 45))["Healthcheck"].get("StartInterval"),
            None
        );
    }

    #[test]
    fn restart_policy_no_is_empty_name() {
        let spec = ContainerSpec {
            image: "x".into(),
            host: HostSpec {
                restart_policy: Some("no".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            spec.to_create_body()["HostConfig"]["RestartPolicy"],
            json!({"Name": "", "MaximumRetryCount": 0})
        );
    }
}
