//! An application's networks and volumes: found by their labels, created when missing, and
//! handed to a replica's create step.
//!
//! Rules it keeps:
//! - A name is never trusted on its own. A network or volume is the application's only when its
//!   labels say so (`berth.instance` is ours, `berth.app` is the application, `berth.network` /
//!   `berth.volume` is the Compose key). A name taken by anything else is an error of the step,
//!   never a network to join or a volume to mount: joining another application's network would
//!   let its containers reach that application's services.
//! - Containers are attached to networks by ID (the ID of the network whose labels were checked),
//!   so a network renamed or replaced meanwhile cannot be joined by accident.
//! - Objects made under the old, ambiguous names (`berth-{instance}-{app}-{key}`, before names
//!   became injective) are found by their labels too and kept in use until the application is
//!   removed, so an upgraded server neither splits an application over two networks nor loses a
//!   volume's data.
//! - `external` networks and volumes are the operator's: attached by their given name, never
//!   created.
//! - Called from the create step (not from the pass), so a network that cannot be made fails that
//!   step and is reported like any failed create.
//! - A network's subnet comes from Berth's own pool (`subnets.rs`), not Docker's default pools.

use crate::spec::{labels, RevisionSpec};
use crate::{CpError, Inner};
use berth_docker::{ContainerSpec, DockerError};
use std::collections::BTreeMap;

/// What [`ensure`] resolved: Berth's name of each network and volume (as
/// [`crate::spec::container_spec`] writes it) → what to attach or mount.
#[derive(Debug, Default)]
pub(crate) struct Resolved {
    /// Network name → the checked network's ID.
    networks: BTreeMap<String, String>,
    /// Volume name → the name of the volume carrying the application's labels.
    volumes: BTreeMap<String, String>,
}

impl Resolved {
    /// Point a container-create body at the checked networks and volumes.
    pub(crate) fn apply(&self, body: &mut ContainerSpec) {
        body.networks = std::mem::take(&mut body.networks)
            .into_iter()
            .map(|(name, aliases)| (self.networks.get(&name).cloned().unwrap_or(name), aliases))
            .collect();
        for m in &mut body.host.mounts {
            if m.typ == "volume" {
                if let Some(actual) = self.volumes.get(&m.source) {
                    m.source.clone_from(actual);
                }
            }
        }
    }
}

fn owned_by(inner: &Inner, l: &BTreeMap<String, String>, app: &str, kind: &str, key: &str) -> bool {
    l.get(labels::INSTANCE) == Some(&inner.naming.instance)
        && l.get(labels::APP).map(String::as_str) == Some(app)
        && l.get(kind).map(String::as_str) == Some(key)
}

/// Make sure every network and volume of the application exists and is its own; see the module
/// docs. Serialised per server, so concurrent create steps make each object once.
pub(crate) async fn ensure(
    inner: &Inner,
    app: &str,
    spec: &RevisionSpec,
) -> Result<Resolved, CpError> {
    let _guard = inner.network_gate.lock().await;
    // Messages are the team's (a service problem): the application as the team names it.
    let local = berth_core::team::split_global(app).1;
    let mut out = Resolved::default();
    let filters = crate::label_filters(inner, Some(app));
    let nets = inner.docker.list_networks(&filters).await?;
    for (key, net) in &spec.project.networks {
        let name = inner.naming.network(app, key, Some(net));
        if net.external {
            continue;
        }
        // Prefer the network under today's name, then any other carrying our labels (an old name).
        let mut mine: Vec<_> = nets
            .iter()
            .filter(|n| owned_by(inner, &n.labels, app, labels::NETWORK, key))
            .collect();
        mine.sort_by_key(|n| (n.name != name, n.name.clone()));
        if let Some(n) = mine.first() {
            out.networks.insert(name, n.id.clone());
            continue;
        }
        let mut l = inner.config.extra_labels.clone();
        l.extend(net.labels.clone());
        l.insert(labels::INSTANCE.into(), inner.naming.instance.clone());
        l.insert(labels::APP.into(), app.into());
        l.insert(labels::NETWORK.into(), key.clone());
        let id = crate::subnets::create_network(inner, app, key, &name, &l, net.internal)
            .await
            .map_err(|e| match e {
                CpError::Docker(DockerError::Conflict(_)) => CpError::Network(format!(
                    "network name {name} is taken by a network that is not application {local}'s \
                     (network {key:?}); Berth will not attach its containers to it"
                )),
                e => e,
            })?;
        tracing::info!(app, network = %name, "created network");
        out.networks.insert(name, id);
    }
    let vols = inner.docker.list_volumes(&filters).await?;
    for (key, vol) in &spec.project.volumes {
        let name = inner.naming.volume(app, key, Some(vol));
        if vol.external {
            continue;
        }
        let mut mine: Vec<_> = vols
            .iter()
            .filter(|v| owned_by(inner, &v.labels, app, labels::VOLUME, key))
            .collect();
        mine.sort_by_key(|v| (v.name != name, v.name.clone()));
        if let Some(v) = mine.first() {
            out.volumes.insert(name, v.name.clone());
            continue;
        }
        let mut l = inner.config.extra_labels.clone();
        l.extend(vol.labels.clone());
        l.insert(labels::INSTANCE.into(), inner.naming.instance.clone());
        l.insert(labels::APP.into(), app.into());
        l.insert(labels::VOLUME.into(), key.clone());
        match inner.docker.create_volume(&name, &l).await {
            Ok(()) | Err(DockerError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
        // Creating a volume whose name exists succeeds without a word: check whose it is.
        let now = inner.docker.list_volumes(&filters).await?;
        if !now
            .iter()
            .any(|v| v.name == name && owned_by(inner, &v.labels, app, labels::VOLUME, key))
        {
            return Err(CpError::Network(format!(
                "volume name {name} is taken by a volume that is not application {local}'s \
                 (volume {key:?}); Berth will not mount it"
            )));
        }
        out.volumes.insert(name.clone(), name);
    }
    Ok(out)
}
