//! Admission (docs/teams.md#admission): which Compose keys of a project reach the host, and
//! which of them the team's grants do not admit. A pure function of the project and the grants;
//! [`admit`] runs it on every revision about to be made — apply, scale, rollback
//! (`ControlPlane::commit`) and the reconciler's automatic rollback — and apply runs it once
//! more before it builds anything.
//!
//! Rules it keeps:
//! - Every offending key is reported, by its path in the file (`services.web.volumes[0]`),
//!   with the grant that would admit it; nothing is admitted by default except what cannot
//!   reach the host: `network_mode: none`, `ipc` other than `host`, `no-new-privileges`, the
//!   capabilities Docker gives every container anyway ([`SAFE_CAPABILITIES`]).
//! - Bind sources are absolute and normalised by the Compose parser (a relative source is
//!   resolved against the project directory the client names, which is then a path on the
//!   server's host like any other). A source that is still not absolute, or climbs with `..`,
//!   is outside every prefix and needs `bind:/`.
//! - The Docker socket is root on the host: a bind of `/var/run/docker.sock`,
//!   `/run/docker.sock` or containerd's `/run/containerd/containerd.sock` needs `docker_socket`,
//!   and so does a bind of a directory holding one (`/`, `/run`, `/run/containerd`, `/var`,
//!   `/var/run`), or of `/proc`, `/sys` or anything under them (`/proc/1/root` is the host's
//!   `/`), which needs its `bind:` prefix as well. Symlinks on the
//!   host are not followed (the check cannot see the host's file system): a granted prefix is
//!   the administrator's word that nothing under it leads elsewhere.
//! - `external: true` networks and volumes are objects made outside the project — another
//!   team's, the host's — which Berth attaches or mounts by their name: they need `external`.
//!   A network or volume with a `name:` but not `external` needs nothing: Berth makes it with
//!   the application's labels and refuses one of that name that is not the application's
//!   (`networks.rs`), so it never reaches an object outside the team.
//! - `security_opt` is an allowlist: only `no-new-privileges` (`no-new-privileges:true`,
//!   `no-new-privileges=true`), which only tightens, needs nothing. Every other entry —
//!   `seccomp`, `apparmor`, `label`, `systempaths`, not only their `unconfined`/`disable`
//!   values (a custom seccomp profile or another loaded AppArmor profile can be as open as
//!   none), and any option Berth does not know — needs the `security_opt` grant.

use berth_compose::{MountKind, Project, Service};
use berth_core::admission::{normalise_cap, normalise_prefix, AdmissionKey, SAFE_CAPABILITIES};
pub use berth_store::GrantRecord;
use std::fmt;

use crate::error::CpError;

/// Where the container engines' sockets live on a standard host: Docker's, and the containerd
/// beneath it (as root on the host as Docker's).
pub const DOCKER_SOCKETS: &[&str] = &[
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/run/containerd/containerd.sock",
    "/var/run/containerd/containerd.sock",
];

/// Host kernel interfaces that reach the host as the socket does (`/proc/1/root` is the host's
/// `/`; `/sys` writes kernel settings): a bind of them or anything under them counts as
/// [`AdmissionKey::DockerSocket`].
pub const HOST_KERNEL_PATHS: &[&str] = &["/proc", "/sys"];

/// The `security_opt` entries that need no grant: they only tighten confinement.
pub const SAFE_SECURITY_OPTS: &[&str] = &[
    "no-new-privileges",
    "no-new-privileges:true",
    "no-new-privileges=true",
];

/// One key of a project that no grant admits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The key's path in the file, e.g. `services.web.volumes[0]`.
    pub path: String,
    /// Its value where that helps (`/var/run/docker.sock`); empty for a flag.
    pub detail: String,
    /// The grant that would admit it.
    pub key: AdmissionKey,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path)?;
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        write!(f, " (needs grant {})", self.key)
    }
}

/// Every key of `project` that `grants` do not admit, service by service in name order, keys in
/// a fixed order within a service; then the external networks and volumes, by key.
#[must_use]
pub fn check(project: &Project, grants: &[AdmissionKey]) -> Vec<Denial> {
    let mut out = Vec::new();
    for (name, svc) in &project.services {
        check_service(&format!("services.{name}"), svc, grants, &mut out);
    }
    if !grants.contains(&AdmissionKey::External) {
        let networks = project
            .networks
            .iter()
            .filter(|(_, n)| n.external)
            .map(|(k, n)| ("networks", k, n.name.as_ref()));
        let volumes = project
            .volumes
            .iter()
            .filter(|(_, v)| v.external)
            .map(|(k, v)| ("volumes", k, v.name.as_ref()));
        for (kind, key, name) in networks.chain(volumes) {
            out_push(
                &mut out,
                format!("{kind}.{key}.external"),
                name.unwrap_or(key).clone(),
                AdmissionKey::External,
            );
        }
    }
    out
}

fn check_service(path: &str, svc: &Service, grants: &[AdmissionKey], out: &mut Vec<Denial>) {
    let has = |k: &AdmissionKey| grants.contains(k);
    let deny = |out: &mut Vec<Denial>, path: String, detail: String, key: AdmissionKey| {
        if !has(&key) {
            out.push(Denial { path, detail, key });
        }
    };
    if svc.privileged {
        deny(
            out,
            format!("{path}.privileged"),
            String::new(),
            AdmissionKey::Privileged,
        );
    }
    let modes = [
        (
            "network_mode",
            &svc.network_mode,
            AdmissionKey::NetworkModeHost,
        ),
        ("pid", &svc.pid, AdmissionKey::PidHost),
        ("ipc", &svc.ipc, AdmissionKey::IpcHost),
        (
            "userns_mode",
            &svc.userns_mode,
            AdmissionKey::UsernsModeHost,
        ),
    ];
    for (key, value, grant) in modes {
        if value.as_deref() == Some("host") {
            deny(out, format!("{path}.{key}"), "host".into(), grant);
        }
    }
    for (i, d) in svc.devices.iter().enumerate() {
        deny(
            out,
            format!("{path}.devices[{i}]"),
            d.host.clone(),
            AdmissionKey::Devices,
        );
    }
    for (i, opt) in svc.security_opt.iter().enumerate() {
        if loosens_confinement(opt) {
            deny(
                out,
                format!("{path}.security_opt[{i}]"),
                opt.clone(),
                AdmissionKey::SecurityOpt,
            );
        }
    }
    for (i, cap) in svc.cap_add.iter().enumerate() {
        let cap = normalise_cap(cap);
        if SAFE_CAPABILITIES.contains(&cap.as_str()) {
            continue;
        }
        let p = format!("{path}.cap_add[{i}]");
        if cap == "ALL" {
            deny(out, p, cap, AdmissionKey::CapAddAll);
        } else if !grants.iter().any(|g| g.admits_cap(&cap)) {
            let key = AdmissionKey::CapAdd(cap.clone());
            out_push(out, p, cap, key);
        }
    }
    for (pos, m) in svc.mounts.iter().enumerate() {
        if m.kind != MountKind::Bind {
            continue;
        }
        let p = format!("{path}.volumes[{}]", m.index.unwrap_or(pos));
        let source = m.source.clone().unwrap_or_default();
        let Some(host) = normalise_prefix(&source) else {
            // Not an absolute path the server can place: outside every prefix.
            if !grants.iter().any(|g| g.admits_bind("/")) {
                out_push(out, p, source, AdmissionKey::Bind("/".into()));
            }
            continue;
        };
        let is_socket = DOCKER_SOCKETS.contains(&host.as_str());
        let holds_socket = DOCKER_SOCKETS
            .iter()
            .chain(HOST_KERNEL_PATHS)
            .any(|s| host == "/" || s.starts_with(&format!("{host}/")))
            || HOST_KERNEL_PATHS
                .iter()
                .any(|k| host == *k || host.starts_with(&format!("{k}/")));
        if is_socket || holds_socket {
            if !has(&AdmissionKey::DockerSocket) {
                out_push(out, p.clone(), host.clone(), AdmissionKey::DockerSocket);
            }
            if is_socket {
                continue;
            }
        }
        if !grants.iter().any(|g| g.admits_bind(&host)) {
            out_push(out, p, host.clone(), AdmissionKey::Bind(host));
        }
    }
}

fn out_push(out: &mut Vec<Denial>, path: String, detail: String, key: AdmissionKey) {
    out.push(Denial { path, detail, key });
}

/// Does this `security_opt` entry loosen, replace or otherwise change the default
/// confinement? Everything but [`SAFE_SECURITY_OPTS`] (an allowlist: an option Berth does not
/// know is not assumed harmless).
fn loosens_confinement(opt: &str) -> bool {
    let opt = opt.trim().to_ascii_lowercase();
    !SAFE_SECURITY_OPTS.contains(&opt.as_str())
}

/// Admission of `project` for a revision of `app` (docs/teams.md#admission):
/// `admission_denied` listing every key that the grants of `app`'s team, as they are now, do not
/// admit. Every revision goes through here: apply, scale and rollback (`ControlPlane::commit`)
/// and the reconciler's automatic rollback (`pass.rs`).
pub(crate) fn admit(inner: &crate::Inner, app: &str, project: &Project) -> Result<(), CpError> {
    let team = berth_core::team::team_of(app);
    let grants: Vec<_> = inner
        .store
        .admission_grants(team)?
        .into_iter()
        .map(|g| g.key)
        .collect();
    let denials = check(project, &grants);
    if denials.is_empty() {
        return Ok(());
    }
    tracing::info!(app, team, denied = denials.len(), "admission denied");
    Err(CpError::AdmissionDenied {
        team: team.to_string(),
        denials,
    })
}

/// A team's grants, as the administrator manages them (`berth admission`).
impl crate::ControlPlane {
    fn team_exists(&self, team: &str) -> Result<(), CpError> {
        match self.inner.store.get_team(team)? {
            Some(_) => Ok(()),
            None => Err(CpError::TeamNotFound(team.to_string())),
        }
    }

    /// The grants of `team`, by key.
    pub fn admission_grants(&self, team: &str) -> Result<Vec<GrantRecord>, CpError> {
        self.team_exists(team)?;
        Ok(self.inner.store.admission_grants(team)?)
    }

    /// Grant `key` (its text form, parsed here) to `team`, by `by`. Granting a held key again
    /// keeps the first grant and answers it.
    pub fn grant_admission(&self, team: &str, key: &str, by: &str) -> Result<GrantRecord, CpError> {
        let key: AdmissionKey = key.parse().map_err(CpError::InvalidArgument)?;
        if !self.inner.store.grant_admission(team, &key, by)? {
            return Err(CpError::TeamNotFound(team.to_string()));
        }
        tracing::info!(team, key = %key, by, "admission granted");
        self.inner
            .store
            .admission_grants(team)?
            .into_iter()
            .find(|g| g.key == key)
            .ok_or_else(|| CpError::GrantNotFound(team.to_string(), key.to_string()))
    }

    /// Revoke `team`'s grant of `key`. What runs is not touched; the next revision of the
    /// team's applications (apply, scale, rollback) is checked without it.
    pub fn revoke_admission(&self, team: &str, key: &str) -> Result<(), CpError> {
        self.team_exists(team)?;
        let parsed: AdmissionKey = key.parse().map_err(CpError::InvalidArgument)?;
        if !self.inner.store.revoke_admission(team, &parsed)? {
            return Err(CpError::GrantNotFound(team.to_string(), parsed.to_string()));
        }
        tracing::info!(team, key = %parsed, "admission revoked");
        Ok(())
    }
}

/// The one-line message of an `admission_denied` answer.
#[must_use]
pub fn message(team: &str, denials: &[Denial]) -> String {
    let parts: Vec<String> = denials.iter().map(ToString::to_string).collect();
    format!("admission denied for team {team:?}: {}", parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(service: &str) -> Project {
        let mut b = berth_compose::Bundle {
            compose_files: vec!["compose.yaml".into()],
            project_dir: "/home/u/proj".into(),
            ..berth_compose::Bundle::default()
        };
        b.files.insert(
            "compose.yaml".into(),
            format!("services:\n  web:\n    image: a\n{service}"),
        );
        berth_compose::load(&b).unwrap()
    }

    fn keys(list: &[&str]) -> Vec<AdmissionKey> {
        list.iter().map(|k| k.parse().unwrap()).collect()
    }

    /// (service body, grants, expected denials as "path[: detail] (needs grant key)").
    #[test]
    fn admission_table() {
        let cases: &[(&str, &[&str], &[&str])] = &[
            // Nothing that reaches the host: admitted with no grant.
            ("    cap_add: [CHOWN, cap_net_raw]\n    security_opt: [no-new-privileges, 'no-new-privileges:true']\n    ipc: private\n    network_mode: none\n    volumes: [/anon]\n", &[], &[]),
            ("    privileged: true\n", &[], &["services.web.privileged (needs grant privileged)"]),
            ("    privileged: true\n", &["privileged"], &[]),
            ("    privileged: false\n", &[], &[]),
            ("    network_mode: host\n", &[], &["services.web.network_mode: host (needs grant network_mode:host)"]),
            ("    network_mode: host\n", &["network_mode:host"], &[]),
            ("    pid: host\n    ipc: host\n    userns_mode: host\n", &["ipc:host"], &[
                "services.web.pid: host (needs grant pid:host)",
                "services.web.userns_mode: host (needs grant userns_mode:host)",
            ]),
            ("    devices: [/dev/fuse, '/dev/net/tun:/dev/tun']\n", &[], &[
                "services.web.devices[0]: /dev/fuse (needs grant devices)",
                "services.web.devices[1]: /dev/net/tun (needs grant devices)",
            ]),
            ("    devices: [/dev/fuse]\n", &["devices"], &[]),
            // Every confinement-loosening form, both separators; no-new-privileges is fine.
            ("    security_opt: [no-new-privileges, seccomp=unconfined, 'seccomp:unconfined', apparmor=unconfined, 'apparmor:unconfined', label=disable, 'label:disable', systempaths=unconfined, 'seccomp=/x.json']\n", &[], &[
                "services.web.security_opt[1]: seccomp=unconfined (needs grant security_opt)",
                "services.web.security_opt[2]: seccomp:unconfined (needs grant security_opt)",
                "services.web.security_opt[3]: apparmor=unconfined (needs grant security_opt)",
                "services.web.security_opt[4]: apparmor:unconfined (needs grant security_opt)",
                "services.web.security_opt[5]: label=disable (needs grant security_opt)",
                "services.web.security_opt[6]: label:disable (needs grant security_opt)",
                "services.web.security_opt[7]: systempaths=unconfined (needs grant security_opt)",
                "services.web.security_opt[8]: seccomp=/x.json (needs grant security_opt)",
            ]),
            ("    security_opt: [seccomp=unconfined]\n", &["security_opt"], &[]),
            // An allowlist: label and profile changes, unknown options, and a no-new-privileges
            // that is not `true` need the grant too.
            ("    security_opt: ['label=type:spc_t', 'label:user:root', apparmor=docker-default, 'no-new-privileges:false', 'x=y', ' No-New-Privileges=TRUE ']\n", &[], &[
                "services.web.security_opt[0]: label=type:spc_t (needs grant security_opt)",
                "services.web.security_opt[1]: label:user:root (needs grant security_opt)",
                "services.web.security_opt[2]: apparmor=docker-default (needs grant security_opt)",
                "services.web.security_opt[3]: no-new-privileges:false (needs grant security_opt)",
                "services.web.security_opt[4]: x=y (needs grant security_opt)",
            ]),
            // containerd's socket and its directory; /proc and /sys and what lies under them.
            ("    volumes: [/run/containerd/containerd.sock:/c, /var/run/containerd/containerd.sock:/d]\n", &["bind:/"], &[
                "services.web.volumes[0]: /run/containerd/containerd.sock (needs grant docker_socket)",
                "services.web.volumes[1]: /var/run/containerd/containerd.sock (needs grant docker_socket)",
            ]),
            ("    volumes: [/run/containerd:/c, /proc:/p, /proc/1/root:/r, /sys:/s, /sys/fs/cgroup:/g]\n", &["bind:/"], &[
                "services.web.volumes[0]: /run/containerd (needs grant docker_socket)",
                "services.web.volumes[1]: /proc (needs grant docker_socket)",
                "services.web.volumes[2]: /proc/1/root (needs grant docker_socket)",
                "services.web.volumes[3]: /sys (needs grant docker_socket)",
                "services.web.volumes[4]: /sys/fs/cgroup (needs grant docker_socket)",
            ]),
            ("    volumes: [/proc/1/root:/r]\n", &["docker_socket"], &["services.web.volumes[0]: /proc/1/root (needs grant bind:/proc/1/root)"]),
            ("    volumes: [/proc/1/root:/r, /procx:/x, /system:/y]\n", &["docker_socket", "bind:/"], &[]),
            // Capabilities: safe ones free, others one by one, ALL only with cap_add:*.
            ("    cap_add: [CHOWN, NET_ADMIN, CAP_SYS_ADMIN]\n", &["cap_add:NET_ADMIN"], &[
                "services.web.cap_add[2]: SYS_ADMIN (needs grant cap_add:SYS_ADMIN)",
            ]),
            ("    cap_add: [net_admin]\n", &["cap_add:NET_ADMIN"], &[]),
            ("    cap_add: [ALL]\n", &["cap_add:NET_ADMIN", "cap_add:ALL"], &["services.web.cap_add[0]: ALL (needs grant cap_add:*)"]),
            ("    cap_add: [ALL, SYS_ADMIN]\n", &["cap_add:*"], &[]),
            // Binds: by prefix, whole components, relative paths from the project directory.
            ("    volumes: [/srv/data:/d, '/srvx:/x', './conf:/c', '../up/../etc:/e']\n", &["bind:/srv"], &[
                "services.web.volumes[1]: /srvx (needs grant bind:/srvx)",
                "services.web.volumes[2]: /home/u/proj/conf (needs grant bind:/home/u/proj/conf)",
                "services.web.volumes[3]: /home/u/etc (needs grant bind:/home/u/etc)",
            ]),
            ("    volumes: ['./conf:/c']\n", &["bind:/home/u/proj"], &[]),
            ("    volumes: [/anon, /etc:/e]\n", &["bind:/tmp"], &["services.web.volumes[1]: /etc (needs grant bind:/etc)"]),
            // The Docker socket: the file needs docker_socket only (bind:/ does not admit it),
            // a directory holding it needs both.
            ("    volumes: [/var/run/docker.sock:/s, '/run//docker.sock:/t']\n", &["bind:/"], &[
                "services.web.volumes[0]: /var/run/docker.sock (needs grant docker_socket)",
                "services.web.volumes[1]: /run/docker.sock (needs grant docker_socket)",
            ]),
            ("    volumes: [/var/run/docker.sock:/s]\n", &["docker_socket"], &[]),
            ("    volumes: ['/:/host', /var/run:/r, /run:/q, /var:/v]\n", &["bind:/"], &[
                "services.web.volumes[0]: / (needs grant docker_socket)",
                "services.web.volumes[1]: /var/run (needs grant docker_socket)",
                "services.web.volumes[2]: /run (needs grant docker_socket)",
                "services.web.volumes[3]: /var (needs grant docker_socket)",
            ]),
            ("    volumes: [/var/run:/r]\n", &["docker_socket"], &["services.web.volumes[0]: /var/run (needs grant bind:/var/run)"]),
            ("    volumes: [/var/run:/r, /var/lib:/l]\n", &["docker_socket", "bind:/var"], &[]),
            ("    volumes: [/var/run/other.sock:/o]\n", &["bind:/var/run"], &[]),
            // External networks and volumes: by key, with their Docker name.
            ("    networks: [front]\n    volumes: [data:/d, cache:/c]\nnetworks:\n  front: {external: true, name: host-net}\n  own: {name: named-but-ours}\nvolumes:\n  data: {external: true}\n  cache: {name: named-cache}\n", &[], &[
                "networks.front.external: host-net (needs grant external)",
                "volumes.data.external: data (needs grant external)",
            ]),
            ("    volumes: [data:/d]\nvolumes:\n  data: {external: true}\n", &["external"], &[]),
            // Several keys at once: all reported, in a fixed order.
            ("    privileged: true\n    volumes: [/var/run/docker.sock:/var/run/docker.sock]\n", &[], &[
                "services.web.privileged (needs grant privileged)",
                "services.web.volumes[0]: /var/run/docker.sock (needs grant docker_socket)",
            ]),
        ];
        for (service, grants, want) in cases {
            let got: Vec<String> = check(&project(service), &keys(grants))
                .iter()
                .map(ToString::to_string)
                .collect();
            assert_eq!(got, *want, "{service} with {grants:?}");
        }
    }

    #[test]
    fn volumes_are_named_by_their_place_in_the_file() {
        // A later mount on the same target replaces an earlier one; the index is the file's.
        let p = project("    volumes: [/a:/x, data:/d, /etc:/x]\nvolumes: {data: {}}\n");
        let d = check(&p, &[]);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].path, "services.web.volumes[2]");
    }

    #[test]
    fn unplaceable_sources_are_outside_every_prefix() {
        let mut p = project("    volumes: [/srv/a:/a]\n");
        let m = &mut p.services.get_mut("web").unwrap().mounts[0];
        m.source = Some("relative/path".into());
        m.index = None;
        let d = check(&p, &keys(&["bind:/srv"]));
        assert_eq!(
            d[0].to_string(),
            "services.web.volumes[0]: relative/path (needs grant bind:/)"
        );
        assert!(check(&p, &keys(&["bind:/"])).is_empty());
    }

    #[test]
    fn message_lists_every_denial() {
        let p = project("    privileged: true\n    volumes: [/var/run/docker.sock:/s]\n");
        assert_eq!(
            message("default", &check(&p, &[])),
            "admission denied for team \"default\": services.web.privileged (needs grant privileged); \
             services.web.volumes[0]: /var/run/docker.sock (needs grant docker_socket)"
        );
    }
}
