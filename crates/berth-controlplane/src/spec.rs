//! From a parsed Compose project to what the reconciler needs: the revision document, per-service
//! spec hashes, Docker object names and labels, and the container-create body.
//!
//! Rules it keeps:
//! - A revision pins image IDs (resolved at apply time), so rolling back restores exactly what ran
//!   even if a tag moved since.
//! - A service's hash covers everything that shapes its containers (its Compose definition minus
//!   `replicas` and `x-berth`, its pinned image, the content of its secrets and configs), and
//!   nothing else: scaling, changing routes, probes or traffic policy, or changing another
//!   service never restarts it.
//! - Names are deterministic (`berth_{instance}_{app}_{service}_{slot}_{hash}`), so a create
//!   repeated after a crash meets "name in use" and adopts the existing container instead of
//!   making a duplicate (docs/design-notes.md §1).
//! - Names are injective: two different (app, service, slot, hash) tuples never share a
//!   container name, and two different (app, key) pairs never share a network or volume name.
//!   The separator is `_`, which an application name cannot contain ([`valid_app_name`]); the
//!   instance part has a fixed length, the slot is decimal and the hash hexadecimal, so a name
//!   splits back into its parts: the app ends at the first `_` after the instance, the hash and
//!   the slot are the last two parts, and the service (which may contain `_`, `.` and `-`) is
//!   what lies between. The old `-` separator was ambiguous (`a-b` + `c` and `a` + `b-c`).
//!   The app part is the global name's Docker part (`berth_core::team::docker_part`: team
//!   `shop`'s `web` is `shop.web`; team `default`'s names have no `.`), and neither a team nor
//!   an application name contains `_`, so the split still holds.
//!   A network or volume given a `name:`, or declared `external`, keeps its given name.
//! - Names are not trusted: the reconciler finds an application's networks and volumes by their
//!   labels (instance, app, key), and attaches containers to networks by ID (`networks.rs`).

use berth_compose::{MountKind, Project, Service};
use berth_docker::{ContainerSpec, HealthConfig, HostSpec, MountSpec};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Label keys Berth puts on everything it creates.
pub mod labels {
    pub const INSTANCE: &str = "berth.instance";
    pub const APP: &str = "berth.app";
    pub const SERVICE: &str = "berth.service";
    pub const SLOT: &str = "berth.slot";
    pub const HASH: &str = "berth.hash";
    pub const REVISION: &str = "berth.revision";
    pub const NETWORK: &str = "berth.network";
    pub const VOLUME: &str = "berth.volume";
    /// On a Swarm secret or config: the Compose secret or config it holds.
    pub const FILE: &str = "berth.file";
    /// What a container is for when it is not a replica: `holder` (a replica's network holder,
    /// `holder.rs`).
    pub const ROLE: &str = "berth.role";
    /// On a replica: the name of the holder whose network namespace it joins.
    pub const HOLDER: &str = "berth.holder";
    /// On a holder: the id of its replica.
    pub const REPLICA: &str = "berth.replica";
    /// On a Swarm task's container: `1` when the service has a Compose healthcheck, so a
    /// running task reads as healthy (the generated models cannot read the healthcheck back).
    pub const HEALTHCHECK: &str = "berth.healthcheck";
}

/// What a revision stores: the project plus what apply resolved. The one definition of the
/// `revisions.spec` document; the store hands it back typed (`Store::get_revision::<RevisionSpec>`).
///
/// `P` is how the project is read: the whole [`Project`], or [`serde::de::IgnoredAny`] for a
/// caller that needs only the pinned images ([`RevisionPins`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevisionSpec<P = Project> {
    pub project: P,
    /// Service → pinned image ID (`sha256:...`).
    pub images: BTreeMap<String, String>,
    /// Service → image's exposed ports (`8080/tcp`), for the default route port and `ps`.
    #[serde(default)]
    pub image_ports: BTreeMap<String, Vec<u16>>,
    /// Service → what its subscriptions give its containers (docs/market.md#subscribe).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub wires: BTreeMap<String, crate::subscriptions::Wiring>,
}

/// A revision's pinned images without its project (image retention reads every revision).
pub type RevisionPins = RevisionSpec<serde::de::IgnoredAny>;

impl RevisionSpec {
    /// The hash of one service's container spec (see module docs).
    #[must_use]
    pub fn service_hash(&self, name: &str) -> String {
        let Some(svc) = self.project.services.get(name) else {
            return String::new();
        };
        let mut svc = unplaced(svc);
        svc.replicas = 0;
        // Routes, probes and traffic policy live in Berth, not in the container: changing them
        // must not replace replicas.
        svc.berth = berth_compose::BerthExt::default();
        let mut h = Sha256::new();
        h.update(serde_json::to_vec(&svc).unwrap_or_default());
        h.update(
            self.images
                .get(name)
                .map(String::as_bytes)
                .unwrap_or_default(),
        );
        for r in &svc.secrets {
            if let Some(s) = self.project.secrets.get(&r.source) {
                h.update(s.content.as_bytes());
            }
        }
        for r in &svc.configs {
            if let Some(s) = self.project.configs.get(&r.source) {
                h.update(s.content.as_bytes());
            }
        }
        // Only a subscribing service's hash changes: the others keep their replicas.
        if let Some(w) = self.wires.get(name) {
            h.update(serde_json::to_vec(w).unwrap_or_default());
        }
        hex::encode(&h.finalize()[..6])
    }

    /// The container port a route or probe targets when none is named: the only exposed one.
    #[must_use]
    pub fn default_port(&self, name: &str) -> Option<u16> {
        let svc = self.project.services.get(name)?;
        let mut ports: Vec<u16> = svc.expose.clone();
        ports.extend(svc.ports.iter().map(|p| p.target));
        if ports.is_empty() {
            ports = self.image_ports.get(name).cloned().unwrap_or_default();
        }
        ports.sort_unstable();
        ports.dedup();
        (ports.len() == 1).then(|| ports[0])
    }
}

/// Docker object names for one server instance.
#[derive(Debug, Clone)]
pub struct Naming {
    pub instance: String,
}

impl Naming {
    fn short(&self) -> &str {
        &self.instance[..self.instance.len().min(6)]
    }
    /// Container name of one replica (see the module docs for why it is injective).
    #[must_use]
    pub fn container(&self, app: &str, service: &str, slot: u32, hash: &str) -> String {
        let app = berth_core::team::docker_part(app);
        format!("berth_{}_{app}_{service}_{slot}_{hash}", self.short())
    }
    /// Docker name of a network: its `name:`, else the key itself for an `external` one (as
    /// Compose does), else Berth's instance- and app-scoped name.
    #[must_use]
    pub fn network(&self, app: &str, key: &str, decl: Option<&berth_compose::Network>) -> String {
        match decl {
            Some(d) if d.name.is_some() => d.name.clone().unwrap_or_default(),
            Some(d) if d.external => key.to_string(),
            _ => format!(
                "berth_{}_{}_{key}",
                self.short(),
                berth_core::team::docker_part(app)
            ),
        }
    }
    /// Docker name of a named volume, by the same rules as [`Naming::network`].
    #[must_use]
    pub fn volume(&self, app: &str, key: &str, decl: Option<&berth_compose::Volume>) -> String {
        match decl {
            Some(d) if d.name.is_some() => d.name.clone().unwrap_or_default(),
            Some(d) if d.external => key.to_string(),
            _ => format!(
                "berth_{}_{}_{key}",
                self.short(),
                berth_core::team::docker_part(app)
            ),
        }
    }
}

/// Is `name` a valid application name? Lowercase letters, digits and `-`, starting with a letter
/// or digit, at most 40 characters (it becomes part of Docker object names). It never contains
/// `_`, the separator of Berth's Docker names: keep it so, or names stop being injective.
#[must_use]
pub fn valid_app_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 40
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
}

fn ms_to_ns(ms: Option<u64>) -> i64 {
    ms.map_or(0, |v| {
        i64::try_from(v.saturating_mul(1_000_000)).unwrap_or(i64::MAX)
    })
}

/// The container-create body for one replica.
#[must_use]
#[allow(clippy::too_many_arguments)]
pub fn container_spec(
    naming: &Naming,
    spec: &RevisionSpec,
    app: &str,
    revision: u64,
    service_name: &str,
    svc: &Service,
    slot: u32,
    hash: &str,
    extra_labels: &BTreeMap<String, String>,
) -> ContainerSpec {
    let mut lbl = svc.labels.clone();
    lbl.extend(extra_labels.clone());
    lbl.insert(labels::INSTANCE.into(), naming.instance.clone());
    lbl.insert(labels::APP.into(), app.into());
    lbl.insert(labels::SERVICE.into(), service_name.into());
    lbl.insert(labels::SLOT.into(), slot.to_string());
    lbl.insert(labels::HASH.into(), hash.into());
    lbl.insert(labels::REVISION.into(), revision.to_string());

    let mut mounts = Vec::new();
    for m in &svc.mounts {
        let (typ, source) = match m.kind {
            MountKind::Volume => {
                let src = m.source.as_deref().map(|v| {
                    let decl = spec.project.volumes.get(v);
                    naming.volume(app, v, decl)
                });
                ("volume", src)
            }
            MountKind::Bind => ("bind", m.source.clone()),
            MountKind::Tmpfs => ("tmpfs", None),
        };
        mounts.push(MountSpec {
            typ: typ.into(),
            source: source.unwrap_or_default(),
            target: m.target.clone(),
            read_only: m.read_only,
        });
    }
    let mut networks = BTreeMap::new();
    for (net, cfg) in &svc.networks {
        let decl = spec.project.networks.get(net);
        let mut aliases = vec![service_name.to_string()];
        aliases.extend(cfg.aliases.iter().cloned());
        if let Some(cn) = &svc.container_name {
            aliases.push(cn.clone());
        }
        networks.insert(naming.network(app, net, decl), aliases);
    }
    let healthcheck = svc.healthcheck.as_ref().map(|h| {
        if h.disable {
            HealthConfig {
                test: vec!["NONE".into()],
                ..HealthConfig::default()
            }
        } else {
            HealthConfig {
                test: h.test.clone(),
                interval_ns: ms_to_ns(h.interval_ms),
                timeout_ns: ms_to_ns(h.timeout_ms),
                retries: i64::from(h.retries.unwrap_or(0)),
                start_period_ns: ms_to_ns(h.start_period_ms),
                // Sent only to engines that know it (API 1.44+); Berth's own start probes
                // (`startprobe`) honour it on older ones.
                start_interval_ns: ms_to_ns(h.start_interval_ms),
            }
        }
    });
    let mut exposed: Vec<String> = svc.expose.iter().map(|p| format!("{p}/tcp")).collect();
    exposed.extend(svc.ports.iter().map(|p| {
        format!(
            "{}/{}",
            p.target,
            if p.protocol == berth_compose::Protocol::Udp {
                "udp"
            } else {
                "tcp"
            }
        )
    }));
    exposed.sort();
    exposed.dedup();
    let tmpfs = svc
        .tmpfs
        .iter()
        .map(|t| match t.split_once(':') {
            Some((path, opts)) => (path.to_string(), opts.to_string()),
            None => (t.clone(), String::new()),
        })
        .collect();
    let mut env: Vec<String> = svc
        .environment
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut extra_hosts = svc.extra_hosts.clone();
    if let Some(w) = spec.wires.get(service_name) {
        // A variable the user set wins.
        env.extend(
            w.env
                .iter()
                .filter(|(k, _)| !svc.environment.contains_key(*k))
                .map(|(k, v)| format!("{k}={v}")),
        );
        mounts.push(MountSpec {
            typ: "bind".into(),
            source: w.credentials.clone(),
            target: crate::subscriptions::SECRETS_DIR.into(),
            read_only: true,
        });
        let host = crate::subscriptions::GATEWAY_HOST;
        let shares_network = svc
            .network_mode
            .as_deref()
            .is_some_and(|m| m.starts_with("container:") || m.starts_with("service:"));
        if !shares_network
            && !extra_hosts
                .iter()
                .any(|h| h.starts_with(&format!("{host}:")))
        {
            extra_hosts.push(format!("{host}:host-gateway"));
        }
    }
    ContainerSpec {
        image: spec
            .images
            .get(service_name)
            .cloned()
            .unwrap_or_else(|| svc.image.clone()),
        cmd: svc.command.clone(),
        entrypoint: svc.entrypoint.clone(),
        env,
        labels: lbl,
        user: svc.user.clone(),
        working_dir: svc.working_dir.clone(),
        exposed_ports: exposed,
        hostname: None,
        healthcheck,
        stop_timeout_secs: svc
            .stop_grace_period_ms
            .map(|ms| i64::try_from(ms.div_ceil(1000)).unwrap_or(10)),
        stop_signal: None,
        host: HostSpec {
            mounts,
            tmpfs,
            cap_add: svc.cap_add.clone(),
            cap_drop: svc.cap_drop.clone(),
            extra_hosts,
            #[allow(clippy::cast_possible_truncation)]
            nano_cpus: svc.resources.cpus.map(|c| (c * 1e9) as i64),
            memory: svc.resources.memory_bytes,
            memory_reservation: svc.resources.memory_reservation_bytes,
            restart_policy: Some("no".into()),
            network_mode: svc.network_mode.clone(),
            privileged: svc.privileged,
            pid_mode: svc.pid.clone(),
            ipc_mode: svc.ipc.clone(),
            userns_mode: svc.userns_mode.clone(),
            devices: svc
                .devices
                .iter()
                .map(|d| (d.host.clone(), d.container.clone(), d.permissions.clone()))
                .collect(),
            security_opt: svc.security_opt.clone(),
            ..HostSpec::default()
        },
        networks,
        ..ContainerSpec::default()
    }
}

/// A one-line summary of what changed between two revisions, for `berth history`: per service,
/// the image, then every other Compose key that differs by name (`environment` and `labels`
/// down to the variable: `web: environment VERSION changed`), secret and config contents, routes
/// and policy, replicas. Values are never shown: an environment variable may hold a secret.
#[must_use]
pub fn describe_change(prev: Option<&RevisionSpec>, next: &RevisionSpec) -> String {
    let Some(prev) = prev else {
        let names: Vec<&str> = next.project.services.keys().map(String::as_str).collect();
        return format!("created with {}", names.join(", "));
    };
    let mut parts = Vec::new();
    for (name, svc) in &next.project.services {
        match prev.project.services.get(name) {
            None => parts.push(format!("added {name}")),
            Some(old) => {
                if prev.service_hash(name) != next.service_hash(name) {
                    let mut changes = Vec::new();
                    if prev.images.get(name) != next.images.get(name) {
                        changes.push(format!(
                            "image {} ({})",
                            if svc.image.is_empty() {
                                "built"
                            } else {
                                &svc.image
                            },
                            short_id(next.images.get(name))
                        ));
                    }
                    changes.extend(changed_keys(old, svc));
                    changes.extend(changed_files(prev, next, svc));
                    if changes.is_empty() {
                        changes.push("configuration changed".into());
                    }
                    parts.push(format!("{name}: {}", changes.join(", ")));
                }
                if old.berth != svc.berth {
                    parts.push(format!(
                        "{name}: routes, health or traffic policy changed (no restart)"
                    ));
                }
                if old.replicas != svc.replicas {
                    parts.push(format!(
                        "{name}: replicas {} → {}",
                        old.replicas, svc.replicas
                    ));
                }
            }
        }
    }
    for name in prev.project.services.keys() {
        if !next.project.services.contains_key(name) {
            parts.push(format!("removed {name}"));
        }
    }
    if parts.is_empty() {
        "no change".into()
    } else {
        parts.join("; ")
    }
}

/// The keys of a service's definition that differ, sorted by name, besides
/// the image (reported with its ID), `replicas` and `x-berth` (reported on their own).
/// `environment` and `labels` name each variable added, removed or changed.
/// `svc` without where its mounts sit in the file: that names a mount in messages (admission)
/// and does not shape the container, so neither the hash nor a change summary sees it.
fn unplaced(svc: &Service) -> Service {
    let mut svc = svc.clone();
    for m in &mut svc.mounts {
        m.index = None;
    }
    svc
}

fn changed_keys(old: &Service, new: &Service) -> Vec<String> {
    const MAPS: &[&str] = &["environment", "labels"];
    const SEPARATE: &[&str] = &["image", "replicas", "berth"];
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) = (
        serde_json::to_value(unplaced(old)),
        serde_json::to_value(unplaced(new)),
    ) else {
        return Vec::new();
    };
    let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
    keys.sort();
    keys.dedup();
    let null = serde_json::Value::Null;
    let mut out = Vec::new();
    for key in keys {
        let (va, vb) = (a.get(key).unwrap_or(&null), b.get(key).unwrap_or(&null));
        if va == vb || SEPARATE.contains(&key.as_str()) {
            continue;
        }
        let key_text = key.replace('_', " ");
        match (va, vb) {
            (serde_json::Value::Object(ma), serde_json::Value::Object(mb))
                if MAPS.contains(&key.as_str()) =>
            {
                for (k, v) in mb {
                    match ma.get(k) {
                        None => out.push(format!("{key_text} {k} added")),
                        Some(old) if old != v => out.push(format!("{key_text} {k} changed")),
                        Some(_) => {}
                    }
                }
                for k in ma.keys().filter(|k| !mb.contains_key(*k)) {
                    out.push(format!("{key_text} {k} removed"));
                }
            }
            _ => out.push(format!("{key_text} changed")),
        }
    }
    out
}

/// The secrets and configs `svc` mounts whose content differs between the revisions.
fn changed_files(prev: &RevisionSpec, next: &RevisionSpec, svc: &Service) -> Vec<String> {
    let mut out = Vec::new();
    let differs = |a: Option<&berth_compose::FileObject>, b: Option<&berth_compose::FileObject>| matches!((a, b), (Some(a), Some(b)) if a != b);
    for r in &svc.secrets {
        if differs(
            prev.project.secrets.get(&r.source),
            next.project.secrets.get(&r.source),
        ) {
            out.push(format!("secret {} content changed", r.source));
        }
    }
    for r in &svc.configs {
        if differs(
            prev.project.configs.get(&r.source),
            next.project.configs.get(&r.source),
        ) {
            out.push(format!("config {} content changed", r.source));
        }
    }
    out
}

fn short_id(id: Option<&String>) -> String {
    id.map(|i| i.trim_start_matches("sha256:").chars().take(12).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A revision of `compose` (with `files` beside it) whose services run the given image IDs.
    fn spec(compose: &str, files: &[(&str, &str)], images: &[(&str, &str)]) -> RevisionSpec {
        let mut b = berth_compose::Bundle {
            compose_files: vec!["compose.yaml".into()],
            ..berth_compose::Bundle::default()
        };
        b.files.insert("compose.yaml".into(), compose.into());
        for (k, v) in files {
            b.files.insert((*k).into(), (*v).into());
        }
        RevisionSpec {
            project: berth_compose::load(&b).unwrap_or_else(|e| panic!("{compose}: {e}")),
            images: images
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
            image_ports: BTreeMap::new(),
            wires: BTreeMap::new(),
        }
    }

    const BASE: &str = "services:
  web:
    image: web:1
    environment: {HELLO_VERSION: v1, GREETING: hi}
    deploy: {replicas: 3}
    secrets: [token]
  api:
    image: api:1
secrets:
  token: {file: token.txt}
";

    /// A Compose file using most of what a revision spec carries.
    const STORED: &str = "services:
  web:
    image: web:1
    environment: {HELLO_VERSION: v1}
    ports: ['8080:80']
    volumes: [data:/data, /srv/conf:/etc/conf:ro]
    networks: {front: {aliases: [www]}}
    depends_on: {setup: {condition: service_completed_successfully}}
    healthcheck: {test: [CMD, true], interval: 5s}
    restart: on-failure:3
    secrets: [token]
    configs: [{source: settings, target: /etc/settings}]
    deploy:
      replicas: 3
      update_config: {order: start-first, parallelism: 1, failure_action: rollback}
    x-berth:
      route: {path_prefix: /hello, strip_prefix: true}
      health: {http: /healthz, interval: 2s}
  setup:
    image: setup:1
    restart: 'no'
networks:
  front: {}
volumes:
  data: {}
secrets:
  token: {file: token.txt}
configs:
  settings: {content: 'a = 1'}
";

    fn stored_spec() -> RevisionSpec {
        let mut s = spec(
            STORED,
            &[("token.txt", "one")],
            &[("web", "sha256:aaaa"), ("setup", "sha256:bbbb")],
        );
        s.image_ports.insert("web".into(), vec![80]);
        s
    }

    /// `testdata/revision-spec.json` is a `revisions.spec` document as apply stored it when
    /// revision specs were first read typed (of [`STORED`]). Rows like it are in every data
    /// directory: it must keep decoding, as the whole spec and as the pins image retention
    /// reads, and mean what the same Compose file means now.
    #[test]
    fn a_revision_spec_stored_earlier_still_decodes_to_the_same_meaning() {
        let stored = include_str!("testdata/revision-spec.json");
        let now = stored_spec();
        if std::env::var_os("BERTH_WRITE_TESTDATA").is_some() {
            let text = serde_json::to_string_pretty(&now).unwrap();
            std::fs::write("src/testdata/revision-spec.json", text + "\n").unwrap();
        }
        let decoded: RevisionSpec = serde_json::from_str(stored).unwrap();
        // A mount's place in the file (for admission's messages) came later and is not part
        // of its meaning: the stored document has none.
        let mut now_unplaced = now.clone();
        for svc in now_unplaced.project.services.values_mut() {
            for m in &mut svc.mounts {
                m.index = None;
            }
        }
        assert_eq!(
            serde_json::to_value(&decoded).unwrap(),
            serde_json::to_value(&now_unplaced).unwrap()
        );
        for name in ["web", "setup"] {
            assert_eq!(decoded.service_hash(name), now.service_hash(name));
        }
        let pins: RevisionPins = serde_json::from_str(stored).unwrap();
        assert_eq!(pins.images, now.images);
        assert_eq!(pins.image_ports, now.image_ports);
        // Written again (a rollback commits the target's spec anew), it reads the same.
        let again: RevisionSpec =
            serde_json::from_str(&serde_json::to_string(&decoded).unwrap()).unwrap();
        assert_eq!(
            serde_json::to_value(&again).unwrap(),
            serde_json::to_value(&decoded).unwrap()
        );
    }

    /// The host keys shape the container: each changes the hash and reaches the create body.
    /// Where a mount sits in the file does neither.
    #[test]
    fn host_keys_are_in_the_hash_and_the_create_body() {
        let base = "services:\n  web:\n    image: a\n    volumes: [/srv/a:/a]\n";
        let images = [("web", "sha256:aaaa")];
        let hash = |extra: &str| spec(&format!("{base}{extra}"), &[], &images).service_hash("web");
        let plain = hash("");
        let mut seen = vec![plain.clone()];
        for extra in [
            "    privileged: true\n",
            "    network_mode: host\n",
            "    pid: host\n",
            "    ipc: host\n",
            "    userns_mode: host\n",
            "    devices: [/dev/fuse]\n",
            "    security_opt: [no-new-privileges]\n",
            "    cap_add: [NET_ADMIN]\n",
        ] {
            let h = hash(extra);
            assert!(!seen.contains(&h), "{extra} kept the hash");
            seen.push(h);
        }
        let mut moved = spec(base, &[], &images);
        moved.project.services.get_mut("web").unwrap().mounts[0].index = Some(7);
        assert_eq!(moved.service_hash("web"), plain);

        let s = spec(
            &format!(
                "{base}    privileged: true\n    network_mode: host\n    pid: host\n    ipc: host\n    userns_mode: host\n    devices: ['/dev/fuse:/dev/f:r']\n    security_opt: [label=disable]\n"
            ),
            &[],
            &images,
        );
        let naming = Naming {
            instance: "abcdef0123".into(),
        };
        let svc = &s.project.services["web"];
        let body = container_spec(&naming, &s, "app", 1, "web", svc, 0, "h", &BTreeMap::new())
            .to_create_body();
        let hc = &body["HostConfig"];
        assert_eq!(hc["Privileged"], true);
        assert_eq!(hc["NetworkMode"], "host");
        assert_eq!(hc["PidMode"], "host");
        assert_eq!(hc["IpcMode"], "host");
        assert_eq!(hc["UsernsMode"], "host");
        assert_eq!(
            hc["Devices"],
            serde_json::json!([{"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/f", "CgroupPermissions": "r"}])
        );
        assert_eq!(hc["SecurityOpt"], serde_json::json!(["label=disable"]));
        assert!(body.get("NetworkingConfig").is_none(), "{body}");
    }

    /// A subscription's wiring reaches only its service: the variables (the user's own value
    /// wins), the credentials mount, the gateway's host name; and only that service's hash moves.
    #[test]
    fn subscription_wiring_reaches_its_service_only() {
        let compose = "services:\n  web:\n    image: a\n    environment: {ORDERS_URL: mine}\n  db:\n    image: b\n";
        let images = [("web", "sha256:aaaa"), ("db", "sha256:bbbb")];
        let plain = spec(compose, &[], &images);
        let mut wired = spec(compose, &[], &images);
        wired.wires.insert(
            "web".into(),
            crate::subscriptions::Wiring {
                env: [
                    (
                        "ORDERS_URL".to_string(),
                        "http://berth-gateway:7480/orders".to_string(),
                    ),
                    (
                        "ORDERS_TOKEN_FILE".to_string(),
                        "/run/secrets/berth/orders.token".to_string(),
                    ),
                ]
                .into(),
                credentials: "/data/credentials/b.shop".into(),
            },
        );
        assert_ne!(wired.service_hash("web"), plain.service_hash("web"));
        assert_eq!(wired.service_hash("db"), plain.service_hash("db"));
        let naming = Naming {
            instance: "abcdef0123".into(),
        };
        let body = |name: &str| {
            let svc = &wired.project.services[name];
            container_spec(
                &naming,
                &wired,
                "b/shop",
                1,
                name,
                svc,
                0,
                "h",
                &BTreeMap::new(),
            )
            .to_create_body()
        };
        let web = body("web");
        let env: Vec<&str> = web["Env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(env.contains(&"ORDERS_URL=mine"), "{env:?}");
        assert!(
            !env.iter().any(|e| e.starts_with("ORDERS_URL=http")),
            "{env:?}"
        );
        assert!(
            env.contains(&"ORDERS_TOKEN_FILE=/run/secrets/berth/orders.token"),
            "{env:?}"
        );
        assert_eq!(
            web["HostConfig"]["Mounts"],
            serde_json::json!([{"Type": "bind", "Source": "/data/credentials/b.shop", "Target": "/run/secrets/berth", "ReadOnly": true}])
        );
        assert_eq!(
            web["HostConfig"]["ExtraHosts"],
            serde_json::json!(["berth-gateway:host-gateway"])
        );
        let db = body("db");
        assert!(db["HostConfig"].get("Mounts").is_none(), "{db}");
        assert!(db["HostConfig"].get("ExtraHosts").is_none(), "{db}");
    }

    #[test]
    fn start_interval_reaches_the_engine_that_knows_it() {
        let s = spec(
            "services:\n  web:\n    image: web:1\n    healthcheck: {test: [CMD, /check], interval: 5s, start_interval: 200ms}\n",
            &[],
            &[("web", "sha256:aaaa")],
        );
        let naming = Naming {
            instance: "abcdef0123".into(),
        };
        let c = container_spec(
            &naming,
            &s,
            "app",
            1,
            "web",
            &s.project.services["web"],
            0,
            "h",
            &BTreeMap::new(),
        );
        assert_eq!(
            c.healthcheck.as_ref().unwrap().start_interval_ns,
            200_000_000
        );
        assert_eq!(
            c.to_create_body_for((1, 44))["Healthcheck"]["StartInterval"],
            200_000_000
        );
        assert!(c.to_create_body_for((1, 41))["Healthcheck"]
            .get("StartInterval")
            .is_none());
    }

    #[test]
    fn describe_change_names_the_changed_keys() {
        let images = [
            ("web", "sha256:aaaaaaaaaaaaaaaa"),
            ("api", "sha256:bbbbbbbbbbbbbbbb"),
        ];
        let token = [("token.txt", "one")];
        let prev = spec(BASE, &token, &images);
        // (what, edit of BASE as "from->to", files, images)
        type Pairs<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(&str, &str, Pairs, Pairs)] = &[
            ("same file", BASE, &token, &images),
            (
                "an environment variable",
                "HELLO_VERSION: v1->HELLO_VERSION: v2",
                &token,
                &images,
            ),
            (
                "variables added and removed, and a command",
                "GREETING: hi}->NEW: x}\n    command: [serve]",
                &token,
                &images,
            ),
            (
                "an image and another service",
                "api:1->api:2",
                &token,
                &[
                    ("web", "sha256:aaaaaaaaaaaaaaaa"),
                    ("api", "sha256:cccccccccccccccc"),
                ],
            ),
            ("a secret's content", "", &[("token.txt", "two")], &images),
            ("replicas only", "replicas: 3->replicas: 5", &token, &images),
            (
                "a route: no restart",
                "replicas: 3}->replicas: 3}\n    x-berth: {route: {path_prefix: /web}}",
                &token,
                &images,
            ),
        ];
        let want = [
            "no change",
            "web: environment HELLO_VERSION changed",
            "web: command changed, environment NEW added, environment GREETING removed",
            "api: image api:2 (cccccccccccc)",
            "web: secret token content changed",
            "web: replicas 3 → 5",
            "web: routes, health or traffic policy changed (no restart)",
        ];
        for ((what, edit, files, images), want) in cases.iter().zip(want) {
            let compose = match edit.split_once("->") {
                Some((from, to)) if *what != "same file" => {
                    assert!(
                        BASE.contains(from),
                        "{what}: {from:?} is not in the base file"
                    );
                    BASE.replacen(from, to, 1)
                }
                _ => BASE.to_string(),
            };
            let next = spec(&compose, files, images);
            assert_eq!(describe_change(Some(&prev), &next), want, "{what}");
        }
        assert_eq!(describe_change(None, &prev), "created with api, web");
        let fewer = spec("services:\n  api:\n    image: api:1\n", &[], &images);
        assert_eq!(describe_change(Some(&prev), &fewer), "removed web");
        assert_eq!(
            describe_change(Some(&fewer), &prev),
            "added web",
            "a service that appears is named, not diffed"
        );
    }

    use proptest::prelude::*;

    fn naming() -> Naming {
        Naming {
            instance: "k3x9q2abcdef".into(),
        }
    }

    /// Splits a container name back into (app, service, slot, hash): a left inverse of
    /// [`Naming::container`] proves it injective.
    fn split_container(n: &Naming, name: &str) -> Option<(String, String, u32, String)> {
        let rest = name.strip_prefix(&format!("berth_{}_", n.short()))?;
        let (app, rest) = rest.split_once('_')?;
        let app = app.replace('.', "/");
        let (rest, hash) = rest.rsplit_once('_')?;
        let (service, slot) = rest.rsplit_once('_')?;
        Some((app, service.into(), slot.parse().ok()?, hash.into()))
    }

    /// The same for networks and volumes: (app, key).
    fn split_scoped(n: &Naming, name: &str) -> Option<(String, String)> {
        let rest = name.strip_prefix(&format!("berth_{}_", n.short()))?;
        let (app, key) = rest.split_once('_')?;
        Some((app.replace('.', "/"), key.into()))
    }

    fn valid_global(app: &str) -> bool {
        let (team, name) = berth_core::team::split_global(app);
        valid_app_name(name) && berth_core::team::valid_team_name(team)
    }

    #[test]
    fn other_teams_names_have_the_team_and_default_keeps_its() {
        let n = naming();
        assert_eq!(
            n.container("a/web", "web", 0, "h"),
            "berth_k3x9q2_a.web_web_0_h"
        );
        assert_eq!(
            n.container("web", "web", 0, "h"),
            "berth_k3x9q2_web_web_0_h"
        );
        assert_eq!(
            n.network("a/web", "default", None),
            "berth_k3x9q2_a.web_default"
        );
        assert_ne!(n.network("a/web", "x", None), n.network("b/web", "x", None));
    }

    #[test]
    fn names_of_the_reported_collision_differ() {
        let n = naming();
        assert_ne!(
            n.container("a-b", "c", 0, "h"),
            n.container("a", "b-c", 0, "h")
        );
        assert_ne!(
            n.network("a", "b-default", None),
            n.network("a-b", "default", None)
        );
        assert_ne!(n.volume("a", "b-data", None), n.volume("a-b", "data", None));
        assert_eq!(
            n.container("shop", "web", 2, "0123456789ab"),
            "berth_k3x9q2_shop_web_2_0123456789ab"
        );
    }

    // Small alphabets make near-collisions (the separator inside a part) frequent.
    // A global application name: team `default`'s (no `/`) or another team's (`team/app`).
    const APP: &str = "([a-b0-1][a-b0-1-]{0,3}/)?[a-b0-1][a-b0-1-]{0,5}";
    const PART: &str = "[a-b0-1][a-b0-1_.-]{0,5}";
    const HASH: &str = "[0-9a-f]{1,12}";

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn container_names_are_injective(
            a in (APP, PART, 0u32..200, HASH),
            b in (APP, PART, 0u32..200, HASH),
        ) {
            prop_assume!(valid_global(&a.0) && valid_global(&b.0));
            let n = naming();
            let na = n.container(&a.0, &a.1, a.2, &a.3);
            let nb = n.container(&b.0, &b.1, b.2, &b.3);
            prop_assert_eq!(na == nb, a == b, "{} vs {}", na, nb);
            prop_assert_eq!(split_container(&n, &na), Some(a));
        }

        #[test]
        fn network_and_volume_names_are_injective(
            a in (APP, PART),
            b in (APP, PART),
        ) {
            prop_assume!(valid_global(&a.0) && valid_global(&b.0));
            let n = naming();
            let (na, nb) = (n.network(&a.0, &a.1, None), n.network(&b.0, &b.1, None));
            prop_assert_eq!(na == nb, a == b, "{} vs {}", na, nb);
            prop_assert_eq!(split_scoped(&n, &na), Some(a.clone()));
            let (va, vb) = (n.volume(&a.0, &a.1, None), n.volume(&b.0, &b.1, None));
            prop_assert_eq!(va == vb, a == b, "{} vs {}", va, vb);
            prop_assert_eq!(split_scoped(&n, &va), Some(a));
        }
    }
}
