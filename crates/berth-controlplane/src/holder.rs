//! The local runtime's per-replica network holder (Kubernetes' pause container): a tiny
//! container that owns a replica's network namespace, so restarting the replica after it dies
//! skips the engine's network setup (on a user-defined bridge ~250 ms of a ~300 ms start here;
//! joining an existing namespace ~80 ms) and its address stays the same
//! ([docs/runtime.md](../../../docs/runtime.md#the-network-holder-local-runtime)).
//!
//! Rules it keeps:
//! - A replica with a holder carries `berth.holder=<holder name>` and runs with `NetworkMode:
//!   container:<holder name>`; the holder carries the replica's labels plus `berth.role=holder`
//!   and `berth.replica=<replica id>`. The holder is attached to the application's networks with
//!   the replica's DNS aliases, declares its ports and holds its `extra_hosts` (the engine
//!   refuses them on a container that joins another's network); its hostname is the replica's
//!   short id, as the replica's own would have been.
//! - The replica is created first (the engine resolves `container:<name>` at start), then its
//!   holder, so a listed holder's replica was listed too: a holder whose replica is gone is an
//!   orphan and is removed.
//! - Only services on the application's networks get one; `network_mode` (host, none) keeps
//!   the plain path, and so does an engine the holder's program does not run on (not x86-64).
//! - Before a replica starts or restarts, its holder must run, be its own and not have started
//!   after the running replica did (a restarted holder has a new namespace); otherwise the
//!   replica is stopped (its namespace has no network left), the holder is made again from the
//!   replica's revision, and the replica starts in the new one.
//! - The holder's image, `berth-pause:<hash>`, is made by Berth (a 129-byte static ELF that
//!   loops on `pause(2)`, imported as a one-file root filesystem): nothing is pulled. It is not a
//!   version image, so image retention never removes it.
//! - Its stop signal is SIGKILL: as PID 1 it ignores SIGTERM, and it holds nothing to save.

use crate::spec::{self, labels, RevisionSpec};
use crate::{CpError, Inner};
use berth_docker::{ContainerInspect, ContainerSpec, DockerError};
use sha2::{Digest, Sha256};

/// `berth.role` of a holder.
pub(crate) const ROLE_HOLDER: &str = "holder";

/// The repository of the holder's image (tagged with the program's hash).
const IMAGE_REPO: &str = "berth-pause";

/// The holder's program: a static x86-64 Linux ELF whose code is `mov eax, 34 (pause); syscall;
/// jmp back`. One 64-byte ELF header, one 56-byte program header loading the whole file at
/// 0x400000 read+execute, then 9 bytes of code at the entry point.
#[must_use]
pub(crate) fn pause_elf() -> Vec<u8> {
    const BASE: u64 = 0x40_0000;
    const HEADERS: u64 = 64 + 56;
    const CODE: [u8; 9] = [
        0xb8, 0x22, 0x00, 0x00, 0x00, // mov eax, 34 (SYS_pause)
        0x0f, 0x05, // syscall
        0xeb, 0xf7, // jmp -9 (back to mov)
    ];
    let size = HEADERS + CODE.len() as u64;
    let mut f = Vec::with_capacity(usize::try_from(size).unwrap_or(129));
    // e_ident: magic, 64-bit, little-endian, version 1, System V ABI, padding.
    f.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    f.extend_from_slice(&2u16.to_le_bytes()); // e_type: executable
    f.extend_from_slice(&0x3eu16.to_le_bytes()); // e_machine: x86-64
    f.extend_from_slice(&1u32.to_le_bytes()); // e_version
    f.extend_from_slice(&(BASE + HEADERS).to_le_bytes()); // e_entry
    f.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
    f.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    f.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    f.extend_from_slice(&64u16.to_le_bytes()); // e_ehsize
    f.extend_from_slice(&56u16.to_le_bytes()); // e_phentsize
    f.extend_from_slice(&1u16.to_le_bytes()); // e_phnum
    f.extend_from_slice(&[0; 6]); // e_shentsize, e_shnum, e_shstrndx
    f.extend_from_slice(&1u32.to_le_bytes()); // p_type: PT_LOAD
    f.extend_from_slice(&5u32.to_le_bytes()); // p_flags: read + execute
    f.extend_from_slice(&0u64.to_le_bytes()); // p_offset
    f.extend_from_slice(&BASE.to_le_bytes()); // p_vaddr
    f.extend_from_slice(&BASE.to_le_bytes()); // p_paddr
    f.extend_from_slice(&size.to_le_bytes()); // p_filesz
    f.extend_from_slice(&size.to_le_bytes()); // p_memsz
    f.extend_from_slice(&0x1000u64.to_le_bytes()); // p_align
    f.extend_from_slice(&CODE);
    f
}

/// The image's tag: the program's hash, so a changed program makes a new image.
fn image_ref() -> String {
    let h = Sha256::digest(pause_elf());
    format!("{IMAGE_REPO}:{}", hex::encode(&h[..6]))
}

/// The root filesystem: `/pause`, mode 0755.
fn rootfs_tar() -> Result<Vec<u8>, CpError> {
    let elf = pause_elf();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(elf.len() as u64);
    h.set_mode(0o755);
    h.set_cksum();
    b.append_data(&mut h, "pause", elf.as_slice())
        .and_then(|()| b.into_inner())
        .map_err(|e| CpError::Network(format!("cannot make the holder's image: {e}")))
}

/// The holder's image on this engine, made once and made again if it was removed behind
/// Berth's back (`None`: the engine is not x86-64, or the image cannot be made; replicas then
/// run without holders, as before).
pub(crate) async fn image(inner: &Inner) -> Option<String> {
    let mut cached = inner.pause_image.lock().await;
    // One inspect per create when made: cheap next to the create itself. Only an image known
    // to be gone is made again (an engine that does not answer fails the create anyway).
    match cached.as_ref() {
        Some(None) => return None,
        Some(Some(id)) if !matches!(inner.docker.inspect_image(id).await, Ok(None)) => {
            return Some(id.clone());
        }
        _ => {}
    }
    if !matches!(inner.docker.arch(), "amd64" | "x86_64") {
        tracing::info!(
            arch = inner.docker.arch(),
            "replicas run without network holders: the holder's program is x86-64 only"
        );
        *cached = Some(None);
        return None;
    }
    let reference = image_ref();
    let made = async {
        if let Some(i) = inner.docker.inspect_image(&reference).await? {
            return Ok::<_, CpError>(i.id);
        }
        let (repo, tag) = reference.split_once(':').unwrap_or((IMAGE_REPO, "latest"));
        inner
            .docker
            .import_image(rootfs_tar()?, repo, tag, &[r#"CMD ["/pause"]"#])
            .await?;
        tracing::info!(image = %reference, "made the network holders' image");
        inner
            .docker
            .inspect_image(&reference)
            .await?
            .map(|i| i.id)
            .ok_or_else(|| CpError::Network(format!("{reference} vanished after its import")))
    }
    .await;
    match made {
        Ok(id) => {
            *cached = Some(Some(id.clone()));
            Some(id)
        }
        Err(e) => {
            // Not cached: tried again at the next create.
            tracing::warn!(error = %e, "cannot make the network holders' image; this replica runs without one");
            None
        }
    }
}

/// The holder's container name for a replica: the replica's generated name and `_holder` (a
/// replica's generated name ends in its hexadecimal hash, so the two never meet).
pub(crate) fn name(inner: &Inner, app: &str, service: &str, slot: u32, hash: &str) -> String {
    format!(
        "{}_holder",
        inner.naming.container(app, service, slot, hash)
    )
}

/// Does this replica get a holder? Only one on the application's networks.
pub(crate) fn applies(body: &ContainerSpec) -> bool {
    body.host.network_mode.is_none() && !body.networks.is_empty()
}

/// Split a replica's create body in two: what concerns its network goes to the holder's body
/// (returned), and the replica joins the holder's namespace by name.
pub(crate) fn split(body: &mut ContainerSpec, holder_name: &str, image: &str) -> ContainerSpec {
    let mut labels = body.labels.clone();
    labels.insert(labels::ROLE.into(), ROLE_HOLDER.into());
    let holder = ContainerSpec {
        image: image.to_string(),
        labels,
        exposed_ports: std::mem::take(&mut body.exposed_ports),
        stop_signal: Some("SIGKILL".into()),
        host: berth_docker::HostSpec {
            extra_hosts: std::mem::take(&mut body.host.extra_hosts),
            restart_policy: Some("no".into()),
            ..berth_docker::HostSpec::default()
        },
        networks: std::mem::take(&mut body.networks),
        ..ContainerSpec::default()
    };
    body.host.network_mode = Some(format!("container:{holder_name}"));
    body.labels
        .insert(labels::HOLDER.into(), holder_name.to_string());
    holder
}

/// Create (or adopt) and start the holder of replica `replica` from its body: hostname the
/// replica's short id, labelled with the replica's id. A holder of the same name that belongs
/// to an earlier replica is replaced; a name held by anything not Berth's is an error.
pub(crate) async fn create(
    inner: &Inner,
    replica: &str,
    holder_name: &str,
    mut body: ContainerSpec,
) -> Result<String, CpError> {
    body.hostname = Some(replica[..replica.len().min(12)].to_string());
    body.labels
        .insert(labels::REPLICA.into(), replica.to_string());
    let docker = &inner.docker;
    let id = match docker.create_container(holder_name, &body).await {
        Ok(id) => id,
        Err(DockerError::Conflict(_)) => {
            let existing = docker.inspect_container(holder_name).await?;
            let l = &existing.labels;
            if l.get(labels::INSTANCE) != Some(&inner.naming.instance)
                || l.get(labels::ROLE).map(String::as_str) != Some(ROLE_HOLDER)
            {
                return Err(CpError::NameTaken {
                    name: holder_name.to_string(),
                    holder: "a container that is not a Berth network holder".into(),
                });
            }
            if l.get(labels::REPLICA).map(String::as_str) == Some(replica) {
                existing.id // a create repeated after a crash
            } else {
                remove_container(inner, &existing.id).await?;
                docker.create_container(holder_name, &body).await?
            }
        }
        Err(e) => return Err(e.into()),
    };
    docker.start_container(&id).await?;
    Ok(id)
}

/// Make sure the holder of replica `id` runs and is its own before the replica starts or
/// restarts (see the module docs). A replica without a holder needs nothing.
pub(crate) async fn ready(inner: &Inner, id: &str) -> Result<(), CpError> {
    let replica = inner.docker.inspect_container(id).await?;
    let Some(holder_name) = replica.labels.get(labels::HOLDER).cloned() else {
        return Ok(());
    };
    let holder = match inner.docker.inspect_container(&holder_name).await {
        Ok(h) => Some(h),
        Err(DockerError::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    if holder
        .as_ref()
        .is_some_and(|h| serves(h, id) && !stale(&replica, h))
    {
        return Ok(());
    }
    let l = &replica.labels;
    let app = l.get(labels::APP).cloned().unwrap_or_default();
    tracing::info!(
        app,
        container = %crate::pass::short(id),
        holder = %holder_name,
        "network holder gone or stopped; making it again"
    );
    if replica.state.running {
        // Its namespace lost its network with the holder: start it again in the new one.
        match inner.docker.stop_container(id, 10).await {
            Ok(()) | Err(DockerError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let revision: u64 = l
        .get(labels::REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    let service = l.get(labels::SERVICE).cloned().unwrap_or_default();
    let slot: u32 = l
        .get(labels::SLOT)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let hash = l.get(labels::HASH).cloned().unwrap_or_default();
    let spec = inner
        .store
        .get_revision::<RevisionSpec>(&app, revision)?
        .spec;
    let svc = spec
        .project
        .services
        .get(&service)
        .ok_or_else(|| CpError::ServiceNotFound(app.clone(), service.clone()))?;
    let resolved = crate::networks::ensure(inner, &app, &spec).await?;
    let mut body = spec::container_spec(
        &inner.naming,
        &spec,
        &app,
        revision,
        &service,
        svc,
        slot,
        &hash,
        &inner.config.extra_labels,
    );
    resolved.apply(&mut body);
    let image = image(inner)
        .await
        .ok_or_else(|| CpError::Network("the network holders' image cannot be made".into()))?;
    let holder_body = split(&mut body, &holder_name, &image);
    if let Some(h) = holder {
        remove_container(inner, &h.id).await?;
    }
    create(inner, id, &holder_name, holder_body).await?;
    Ok(())
}

/// Is `h` a running holder of replica `id`?
fn serves(h: &ContainerInspect, id: &str) -> bool {
    h.state.running && h.labels.get(labels::REPLICA).map(String::as_str) == Some(id)
}

/// Does the running `replica` sit in a namespace its holder no longer has (the holder was
/// restarted after the replica started: it has a new namespace, the replica the old, empty one)?
pub(crate) fn stale(replica: &ContainerInspect, holder: &ContainerInspect) -> bool {
    let at = |s: &str| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
    };
    replica.state.running
        && matches!(
            (at(&holder.state.started_at), at(&replica.state.started_at)),
            (Some(h), Some(r)) if h > r
        )
}

/// Remove the holders of replica `id` (after the replica itself).
pub(crate) async fn remove_of(inner: &Inner, id: &str) -> Result<(), CpError> {
    let filters = vec![
        format!("{}={}", labels::INSTANCE, inner.naming.instance),
        format!("{}={id}", labels::REPLICA),
    ];
    for c in inner.docker.list_containers(&filters, true).await? {
        remove_container(inner, &c.id).await?;
    }
    Ok(())
}

/// Remove every holder of `app` (its teardown, before its networks go).
pub(crate) async fn remove_all(inner: &Inner, app: &str) -> Result<(), CpError> {
    let mut filters = crate::label_filters(inner, Some(app));
    filters.push(format!("{}={ROLE_HOLDER}", labels::ROLE));
    for c in inner.docker.list_containers(&filters, true).await? {
        remove_container(inner, &c.id).await?;
    }
    Ok(())
}

/// Kill and remove a holder; gone already, or being removed by someone else (a concurrent
/// pass, `ps`), is fine.
pub(crate) async fn remove_container(inner: &Inner, id: &str) -> Result<(), CpError> {
    match inner.docker.remove_container(id, true, false).await {
        Ok(()) | Err(DockerError::NotFound(_) | DockerError::Conflict(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_is_a_minimal_static_elf() {
        let elf = pause_elf();
        assert_eq!(elf.len(), 129);
        assert_eq!(&elf[..4], b"\x7fELF");
        // The entry point is the code right after the headers.
        assert_eq!(
            u64::from_le_bytes(elf[24..32].try_into().unwrap()),
            0x40_0078
        );
        assert_eq!(&elf[120..], &[0xb8, 0x22, 0, 0, 0, 0x0f, 0x05, 0xeb, 0xf7]);
        assert!(image_ref().starts_with("berth-pause:"));
        assert!(!rootfs_tar().unwrap().is_empty());
    }

    #[test]
    fn a_split_moves_the_network_to_the_holder() {
        let mut body = ContainerSpec {
            image: "sha256:app".into(),
            labels: [(labels::APP.to_string(), "shop".to_string())].into(),
            exposed_ports: vec!["8080/tcp".into()],
            host: berth_docker::HostSpec {
                extra_hosts: vec!["gw:host-gateway".into()],
                ..berth_docker::HostSpec::default()
            },
            networks: [("net-id".to_string(), vec!["web".to_string()])].into(),
            ..ContainerSpec::default()
        };
        assert!(applies(&body));
        let holder = split(&mut body, "r_holder", "sha256:pause");
        assert_eq!(holder.image, "sha256:pause");
        assert_eq!(holder.networks["net-id"], vec!["web".to_string()]);
        assert_eq!(holder.exposed_ports, vec!["8080/tcp".to_string()]);
        assert_eq!(holder.host.extra_hosts, vec!["gw:host-gateway".to_string()]);
        assert_eq!(holder.labels[labels::ROLE], ROLE_HOLDER);
        assert_eq!(holder.labels[labels::APP], "shop");
        assert_eq!(
            body.host.network_mode.as_deref(),
            Some("container:r_holder")
        );
        assert_eq!(body.labels[labels::HOLDER], "r_holder");
        assert!(body.networks.is_empty() && body.exposed_ports.is_empty());
        assert!(body.host.extra_hosts.is_empty());
        assert!(!body.labels.contains_key(labels::ROLE));
        // `network_mode: host` keeps the plain path.
        let host = ContainerSpec {
            host: berth_docker::HostSpec {
                network_mode: Some("host".into()),
                ..berth_docker::HostSpec::default()
            },
            ..ContainerSpec::default()
        };
        assert!(!applies(&host));
    }
}
