//! Admission grants (docs/teams.md#admission): the Compose keys that let a container reach the
//! host need a grant of the platform administrator, per team. This module is the grant's name
//! and its parsing; the check of a Compose project is the control plane's (`admission.rs`).

use std::fmt;
use std::str::FromStr;

/// Capabilities `cap_add` may name without a grant: Docker's default set, which every container
/// has already (adding one is a no-op), so naming it admits nothing new.
pub const SAFE_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "NET_RAW",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// One grantable key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AdmissionKey {
    Privileged,
    NetworkModeHost,
    PidHost,
    IpcHost,
    UsernsModeHost,
    Devices,
    /// `security_opt` entries that disable confinement (`seccomp=unconfined`,
    /// `apparmor=unconfined`, `label=disable`, `label:disable`, `systempaths=unconfined`).
    SecurityOpt,
    /// `cap_add` of one capability outside [`SAFE_CAPABILITIES`], upper case without `CAP_`.
    CapAdd(String),
    /// `cap_add` of any capability.
    CapAddAll,
    /// A bind mount of the Docker socket (`/var/run/docker.sock`, `/run/docker.sock`).
    DockerSocket,
    /// A network or volume declared `external: true`: an object made outside the project,
    /// possibly another team's or the host's, which Berth attaches or mounts by its name.
    External,
    /// Bind mounts of host paths under this absolute prefix (`/` allows every path, except the
    /// Docker socket, which is [`AdmissionKey::DockerSocket`]'s).
    Bind(String),
}

impl AdmissionKey {
    /// Does this grant admit a `cap_add` of `cap` (upper case, without `CAP_`)?
    #[must_use]
    pub fn admits_cap(&self, cap: &str) -> bool {
        match self {
            AdmissionKey::CapAddAll => true,
            AdmissionKey::CapAdd(c) => c == cap,
            _ => false,
        }
    }

    /// Does this grant admit a bind mount of the normalised absolute host path `path`?
    /// A prefix matches whole components: `bind:/srv` admits `/srv` and `/srv/data`, not
    /// `/srvx`.
    #[must_use]
    pub fn admits_bind(&self, path: &str) -> bool {
        match self {
            AdmissionKey::Bind(prefix) => {
                prefix == "/"
                    || path == prefix
                    || path
                        .strip_prefix(prefix.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            }
            _ => false,
        }
    }
}

/// The capability name as Berth compares it: upper case, without a `CAP_` prefix.
#[must_use]
pub fn normalise_cap(cap: &str) -> String {
    let up = cap.trim().to_ascii_uppercase();
    up.strip_prefix("CAP_").map_or(up.clone(), str::to_string)
}

impl fmt::Display for AdmissionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdmissionKey::Privileged => f.write_str("privileged"),
            AdmissionKey::NetworkModeHost => f.write_str("network_mode:host"),
            AdmissionKey::PidHost => f.write_str("pid:host"),
            AdmissionKey::IpcHost => f.write_str("ipc:host"),
            AdmissionKey::UsernsModeHost => f.write_str("userns_mode:host"),
            AdmissionKey::Devices => f.write_str("devices"),
            AdmissionKey::SecurityOpt => f.write_str("security_opt"),
            AdmissionKey::CapAdd(c) => write!(f, "cap_add:{c}"),
            AdmissionKey::CapAddAll => f.write_str("cap_add:*"),
            AdmissionKey::DockerSocket => f.write_str("docker_socket"),
            AdmissionKey::External => f.write_str("external"),
            AdmissionKey::Bind(p) => write!(f, "bind:{p}"),
        }
    }
}

impl FromStr for AdmissionKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "privileged" => AdmissionKey::Privileged,
            "network_mode:host" => AdmissionKey::NetworkModeHost,
            "pid:host" => AdmissionKey::PidHost,
            "ipc:host" => AdmissionKey::IpcHost,
            "userns_mode:host" => AdmissionKey::UsernsModeHost,
            "devices" => AdmissionKey::Devices,
            "security_opt" => AdmissionKey::SecurityOpt,
            "cap_add:*" => AdmissionKey::CapAddAll,
            "docker_socket" => AdmissionKey::DockerSocket,
            "external" => AdmissionKey::External,
            _ => {
                if let Some(cap) = s.strip_prefix("cap_add:") {
                    let cap = normalise_cap(cap);
                    if cap.is_empty() || !cap.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
                        return Err(format!("{s:?}: a capability is a name like NET_ADMIN"));
                    }
                    AdmissionKey::CapAdd(cap)
                } else if let Some(prefix) = s.strip_prefix("bind:") {
                    AdmissionKey::Bind(normalise_prefix(prefix).ok_or_else(|| {
                        format!("{s:?}: a bind prefix is an absolute path without `..`, like bind:/srv/data")
                    })?)
                } else {
                    return Err(format!(
                        "unknown admission key {s:?} (one of privileged, network_mode:host, pid:host, \
                         ipc:host, userns_mode:host, devices, security_opt, cap_add:NAME, cap_add:*, \
                         docker_socket, external, bind:/PREFIX)"
                    ));
                }
            }
        })
    }
}

/// An absolute path without `.`/`..` components, trailing and repeated `/` removed; none if it
/// is relative or climbs.
#[must_use]
pub fn normalise_prefix(path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return None;
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            p => parts.push(p),
        }
    }
    Some(format!("/{}", parts.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_and_print_back() {
        for k in [
            "privileged",
            "network_mode:host",
            "pid:host",
            "ipc:host",
            "userns_mode:host",
            "devices",
            "security_opt",
            "cap_add:NET_ADMIN",
            "cap_add:*",
            "docker_socket",
            "external",
            "bind:/",
            "bind:/srv/data",
        ] {
            assert_eq!(k.parse::<AdmissionKey>().unwrap().to_string(), k);
        }
        assert_eq!(
            "cap_add:cap_sys_admin".parse::<AdmissionKey>().unwrap(),
            AdmissionKey::CapAdd("SYS_ADMIN".into())
        );
        assert_eq!(
            "bind:/srv//data/".parse::<AdmissionKey>().unwrap(),
            AdmissionKey::Bind("/srv/data".into())
        );
        for bad in [
            "",
            "root",
            "bind:srv",
            "bind:/srv/../etc",
            "cap_add:",
            "cap_add:NET ADMIN",
        ] {
            assert!(bad.parse::<AdmissionKey>().is_err(), "{bad}");
        }
    }

    #[test]
    fn prefixes_match_whole_components() {
        let k = AdmissionKey::Bind("/srv".into());
        assert!(k.admits_bind("/srv"));
        assert!(k.admits_bind("/srv/data"));
        assert!(!k.admits_bind("/srvx"));
        assert!(!k.admits_bind("/"));
        assert!(AdmissionKey::Bind("/".into()).admits_bind("/etc"));
        assert!(AdmissionKey::CapAddAll.admits_cap("SYS_ADMIN"));
        assert!(AdmissionKey::CapAdd("NET_ADMIN".into()).admits_cap("NET_ADMIN"));
        assert!(!AdmissionKey::CapAdd("NET_ADMIN".into()).admits_cap("SYS_ADMIN"));
    }
}
