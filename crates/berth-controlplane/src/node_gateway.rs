//! Berth's gateways on Swarm nodes (docs/swarm.md#traffic-without-ipvs): one `berth gateway
//! --control URL --token-file F` container (and its port relay) per chosen node, in an image
//! Berth makes from its own running binary, connected to every application's overlay network
//! so it reaches task addresses, publishing its HTTP port on the node.
//!
//! Rules it keeps:
//! - The image is this very binary (`/proc/self/exe`), the shared libraries the running process
//!   has mapped (`/proc/self/maps`) and the ELF interpreter, at their own paths, and nothing
//!   else (`FROM scratch`). It is tagged by the binary's SHA-256, so an engine that has it is
//!   never sent it again.
//! - A gateway runs only where Berth has the node's engine: the manager's own
//!   (`DOCKER_HOST`) and those given by `--node-engine NAME=URL`; other chosen nodes are named
//!   once in the log.
//! - The gateway is a plain container on the node's default bridge with its HTTP port published
//!   on every address of the node (a host-networked container cannot join overlay networks),
//!   and is connected to each of this server's overlay networks as applications come (`network
//!   connect`: a deploy never restarts it) and disconnected before a network is removed. It is
//!   made again only when the binary or its settings change; the image of an earlier binary is
//!   then removed.
//! - Published ports are bound by the node's port relay (docs/swarm.md#published-ports-on-swarm-the-port-relay):
//!   a host-networked container of the same image, `berth gateway --forward-ports-to
//!   GATEWAY-IP`, forwarding each to the same port of the gateway, which binds it in its own
//!   namespace. A container's port bindings are fixed when it is made; the relay's are none, so
//!   a change of the table's ports makes no container again. The relay is made again when the
//!   gateway's bridge address changes, and has no restart policy (this loop starts it, pointed
//!   at the gateway's current address).
//! - A server on the local runtime removes the gateways and relays of its instance on the
//!   engines it has ([`spawn_removal`]).
//! - Its token (`<data-dir>/gateway.token`: the administrator's, scoped `gateway`, so it reads
//!   the table and reports traffic and may call nothing else) is copied into it as a file
//!   before it starts and again after each server start (the gateway reads the file again before
//!   each reconnection); it is never in its command line, environment or labels.

use crate::spec::labels;
use crate::{CpError, Inner};
use berth_docker::swarm::models::{Node, NodeSpecRoleEnum};
use berth_docker::{ContainerSpec, DockerError, HostSpec};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The label every gateway container carries (with the instance's): `gateway`, or
/// [`RELAY_ROLE`] for a port relay.
pub const ROLE_LABEL: &str = "berth.role";
/// [`ROLE_LABEL`]'s value on a port relay.
pub const RELAY_ROLE: &str = "port-relay";
/// A port relay's settings (binary, control URL, gateway address), hashed.
const RELAY_CONFIG_LABEL: &str = "berth.relay.config";
/// Where the token file is put in the container.
const TOKEN_PATH: &str = "/berth-gateway.token";
/// How often the gateways are looked at (and missed networks connected).
const EVERY: Duration = Duration::from_secs(5);

/// Which nodes run a gateway (`--gateway-nodes LABEL=VALUE`): `node.role=manager|worker`,
/// `node.hostname=H`, `node.id=ID` or `node.labels.K=V`, as in Swarm's placement constraints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFilter {
    key: NodeKey,
    value: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum NodeKey {
    Role,
    Hostname,
    Id,
    Label(String),
}

impl Default for NodeFilter {
    fn default() -> Self {
        NodeFilter {
            key: NodeKey::Role,
            value: "manager".into(),
        }
    }
}

impl std::str::FromStr for NodeFilter {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (key, value) = s
            .split_once('=')
            .filter(|(_, v)| !v.is_empty())
            .ok_or_else(|| format!("{s:?}: expected LABEL=VALUE, e.g. node.role=manager"))?;
        let key = match key.trim() {
            "node.role" => {
                if value != "manager" && value != "worker" {
                    return Err(format!(
                        "{s:?}: node.role is manager or worker, not {value:?}"
                    ));
                }
                NodeKey::Role
            }
            "node.hostname" => NodeKey::Hostname,
            "node.id" => NodeKey::Id,
            k => match k.strip_prefix("node.labels.") {
                Some(l) if !l.is_empty() => NodeKey::Label(l.to_string()),
                _ => {
                    return Err(format!(
                        "{s:?}: LABEL is node.role, node.hostname, node.id or node.labels.NAME"
                    ))
                }
            },
        };
        Ok(NodeFilter {
            key,
            value: value.to_string(),
        })
    }
}

impl NodeFilter {
    /// Does `node` run a gateway?
    #[must_use]
    pub fn matches(&self, node: &Node) -> bool {
        let spec = node.spec.as_ref();
        match &self.key {
            NodeKey::Role => {
                let role = spec.and_then(|s| s.role);
                match self.value.as_str() {
                    "manager" => role == Some(NodeSpecRoleEnum::MANAGER),
                    _ => role == Some(NodeSpecRoleEnum::WORKER),
                }
            }
            NodeKey::Hostname => {
                node.description
                    .as_ref()
                    .and_then(|d| d.hostname.as_deref())
                    == Some(self.value.as_str())
            }
            NodeKey::Id => node.id.as_deref() == Some(self.value.as_str()),
            NodeKey::Label(k) => {
                spec.and_then(|s| s.labels.as_ref())
                    .and_then(|l| l.get(k))
                    .map(String::as_str)
                    == Some(self.value.as_str())
            }
        }
    }
}

/// How the server runs gateways on Swarm nodes (`berth server --runtime swarm`).
#[derive(Debug, Clone)]
pub struct NodeGatewayConfig {
    /// The control plane's URL as the nodes reach it (`--advertise-url`).
    pub control_url: String,
    /// The token file the gateways authenticate with (`<data-dir>/gateway.token`).
    pub token_file: PathBuf,
    /// The nodes that run one (`--gateway-nodes`).
    pub nodes: NodeFilter,
    /// The port each gateway serves HTTP on, on every address of its node
    /// (`--node-gateway-port`).
    pub port: u16,
    /// The engines of nodes other than the manager, by hostname (`--node-engine NAME=URL`):
    /// a chosen node runs a gateway only where Berth has its engine.
    pub engines: BTreeMap<String, berth_docker::Docker>,
}

/// The gateways this server runs (set by `enable_node_gateways`).
#[derive(Default)]
pub(crate) struct NodeGateways {
    /// Gateway containers known to run: each node's engine and the container on it.
    containers: Mutex<Vec<(berth_docker::Docker, String)>>,
}

impl NodeGateways {
    fn ids(&self) -> Vec<(berth_docker::Docker, String)> {
        self.containers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Connect every gateway to `network` (an overlay network of this server); already connected
/// is fine. Errors are logged: the gateways' loop connects what was missed.
pub(crate) async fn connect(inner: &Inner, network: &str) {
    let Some(g) = inner.node_gateways.get() else {
        return;
    };
    for (docker, id) in g.ids() {
        connect_one(&docker, network, &id).await;
    }
}

async fn connect_one(docker: &berth_docker::Docker, network: &str, id: &str) {
    match docker.connect_network(network, id, &[]).await {
        Ok(()) => {
            tracing::info!(network, gateway = %short(id), engine = docker.endpoint(), "gateway connected")
        }
        Err(e) if already_connected(&e) => {}
        Err(e) => tracing::warn!(network, error = %e, "connecting the gateway failed"),
    }
}

/// Disconnect every gateway from `network` before it is removed; not connected is fine.
pub(crate) async fn disconnect(inner: &Inner, network: &str) -> Result<(), CpError> {
    let Some(g) = inner.node_gateways.get() else {
        return Ok(());
    };
    for (docker, id) in g.ids() {
        match docker.disconnect_network(network, &id, true).await {
            Ok(()) => {
                tracing::info!(network, gateway = %short(&id), engine = docker.endpoint(), "gateway disconnected")
            }
            Err(DockerError::NotFound(_)) => {}
            Err(DockerError::Api { message, .. }) if message.contains("is not connected") => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn already_connected(e: &DockerError) -> bool {
    match e {
        DockerError::Api { message, .. } | DockerError::Conflict(message) => {
            // "endpoint with name ... already exists in network", "... is already attached to
            // network ..." (two services of one application connecting it at once)
            message.contains("already exists")
                || message.contains("already connected")
                || message.contains("already attached")
        }
        _ => false,
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// On a server that is not (any more) a Swarm server: remove the gateways and port relays a
/// Swarm server of this instance made on `engines` (the manager's, `DOCKER_HOST`, and those of
/// `--node-engine`). Left there, a gateway would restart with its node's engine and serve its
/// last table, or none. Each engine is tried again every [`EVERY`] until it answered, or until
/// `shutdown`; engines not given are never reached (docs/swarm.md).
pub(crate) fn spawn_removal(
    inner: &Arc<Inner>,
    engines: Vec<(String, berth_docker::Docker)>,
    shutdown: CancellationToken,
) {
    let instance = inner.naming.instance.clone();
    tokio::spawn(async move {
        let mut pending = engines;
        loop {
            let mut left = Vec::new();
            for (node, docker) in pending {
                match remove_left_behind(&docker, &instance).await {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(node, removed = n, "gateways of this instance's Swarm runtime removed (the server runs --runtime local)");
                    }
                    Err(e) => {
                        tracing::warn!(node, error = %e, "cannot look for gateways left by this instance's Swarm runtime: will try again");
                        left.push((node, docker));
                    }
                }
            }
            if left.is_empty() {
                return;
            }
            pending = left;
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(EVERY) => {}
            }
        }
    });
}

/// Remove `instance`'s gateway and port relay containers on `docker`, then their images where
/// nothing else uses them. How many containers went.
async fn remove_left_behind(
    docker: &berth_docker::Docker,
    instance: &str,
) -> Result<usize, DockerError> {
    let found = docker
        .list_containers(
            &[
                format!("{}={instance}", labels::INSTANCE),
                ROLE_LABEL.to_string(),
            ],
            true,
        )
        .await?;
    let mut removed = 0;
    let mut images = std::collections::BTreeSet::new();
    for c in found {
        let role = c.labels.get(ROLE_LABEL).map(String::as_str);
        if role != Some("gateway") && role != Some(RELAY_ROLE) {
            continue;
        }
        match docker.remove_container(&c.id, true, false).await {
            Ok(()) | Err(DockerError::NotFound(_)) => removed += 1,
            Err(e) => return Err(e),
        }
        if c.image.starts_with("berth-gateway:") {
            images.insert(c.image);
        }
    }
    for image in images {
        // Not forced: another server's gateway on this engine may run it.
        if let Err(e) = docker.remove_image(&image, false, false).await {
            tracing::debug!(image, error = %e, "gateway image kept");
        }
    }
    Ok(removed)
}

/// Start the gateways' loop (`ControlPlane::enable_node_gateways`).
pub(crate) fn spawn(inner: &Arc<Inner>, config: NodeGatewayConfig, shutdown: CancellationToken) {
    let _ = inner.node_gateways.set(NodeGateways::default());
    let weak = Arc::downgrade(inner);
    tokio::spawn(run(weak, config, shutdown));
}

async fn run(weak: Weak<Inner>, config: NodeGatewayConfig, shutdown: CancellationToken) {
    let mut state = LoopState::default();
    loop {
        let Some(inner) = weak.upgrade() else { return };
        if let Err(e) = look(&inner, &config, &mut state).await {
            tracing::warn!(error = %e, "gateways on nodes: will try again");
        }
        drop(inner);
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(EVERY) => {}
        }
    }
}

#[derive(Default)]
struct LoopState {
    /// The image's tag (the binary's digest), once computed.
    tag: Option<String>,
    /// Nodes whose engine has the image.
    loaded: std::collections::BTreeSet<String>,
    /// Per node, the container the current token was copied into.
    token_in: BTreeMap<String, String>,
    /// Per node, the port relay the current token was copied into.
    relay_token_in: BTreeMap<String, String>,
    /// Chosen nodes without an engine, already named in the log.
    warned: std::collections::BTreeSet<String>,
}

/// One look: for each chosen node Berth has the engine of, the image there, the gateway
/// container there, its networks.
async fn look(
    inner: &Arc<Inner>,
    config: &NodeGatewayConfig,
    state: &mut LoopState,
) -> Result<(), CpError> {
    let docker = &inner.docker;
    let nodes = docker.list_nodes().await?;
    let local = docker.local_node_id().await?;
    let mut targets: Vec<(String, berth_docker::Docker)> = Vec::new();
    // Engines of nodes not chosen (any more): they keep no gateway of this server's.
    let mut others: Vec<(String, berth_docker::Docker)> = Vec::new();
    for n in &nodes {
        let name = n
            .description
            .as_ref()
            .and_then(|d| d.hostname.clone())
            .or_else(|| n.id.clone())
            .unwrap_or_default();
        let engine = if n.id.is_some() && n.id == local {
            Some(docker.clone())
        } else {
            config.engines.get(&name).cloned()
        };
        match (config.nodes.matches(n), engine) {
            (true, Some(engine)) => targets.push((name, engine)),
            (true, None) => {
                if state.warned.insert(name.clone()) {
                    tracing::warn!(node = %name, "no engine for this node (--node-engine): no gateway runs there (docs/swarm.md)");
                }
            }
            (false, Some(engine)) => others.push((name, engine)),
            (false, None) => {}
        }
    }
    for (node, engine) in &others {
        retire(inner, state, node, engine).await;
    }
    if targets.is_empty() {
        return Ok(());
    }
    // This server's overlay networks, but those of applications being removed.
    let mut removing = std::collections::BTreeSet::new();
    for app in inner.store.list_apps().unwrap_or_default() {
        if app.deleting {
            removing.insert(app.name);
        }
    }
    let networks: Vec<String> = docker
        .list_networks(&crate::label_filters(inner, None))
        .await?
        .into_iter()
        .filter(|n| {
            n.driver == "overlay"
                && !n
                    .labels
                    .get(labels::APP)
                    .is_some_and(|a| removing.contains(a))
        })
        .map(|n| n.name)
        .collect();
    let tag = match &state.tag {
        Some(t) => t.clone(),
        None => {
            let t = image_tag().await?;
            state.tag = Some(t.clone());
            t
        }
    };
    // The image, where it is missing: made once, sent to every such engine at once.
    let mut missing = Vec::new();
    for (node, engine) in &targets {
        if state.loaded.contains(node) {
            continue;
        }
        if engine.inspect_image(&tag).await?.is_some() {
            state.loaded.insert(node.clone());
        } else {
            missing.push((node.clone(), engine.clone()));
        }
    }
    if !missing.is_empty() {
        let parts = image_parts(&tag).await?;
        let loads = missing.into_iter().map(|(node, engine)| {
            let (parts, tag) = (parts.clone(), tag.clone());
            async move {
                let r = load_image(&engine, &tag, parts).await;
                (node, r)
            }
        });
        for (node, r) in futures_util::future::join_all(loads).await {
            match r {
                Ok(()) => {
                    state.loaded.insert(node);
                }
                Err(e) => {
                    tracing::warn!(node = %node, error = %e, "loading the gateway image failed: will try again")
                }
            }
        }
    }
    let mut running = Vec::new();
    let mut failed = None;
    let ready: Vec<(String, berth_docker::Docker)> = targets
        .into_iter()
        .filter(|(n, _)| state.loaded.contains(n))
        .collect();
    for (node, engine) in ready {
        match on_node(inner, config, state, &node, &engine, &networks).await {
            Ok(id) => running.push((engine, id)),
            Err(e) => {
                tracing::warn!(node = %node, error = %e, "the gateway on this node: will try again");
                failed = Some(e);
            }
        }
    }
    if let Some(g) = inner.node_gateways.get() {
        *g.containers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = running;
    }
    failed.map_or(Ok(()), Err)
}

/// Remove this server's gateway from a node no longer chosen (its labels or `--gateway-nodes`
/// changed): left there, it would go on serving its last table, endpoints that have gone
/// included. Failures are logged and tried again at the next look.
async fn retire(inner: &Inner, state: &mut LoopState, node: &str, docker: &berth_docker::Docker) {
    for name in [container_name(inner), relay_name(inner)] {
        match docker.inspect_container(&name).await {
            Ok(c) => match docker.remove_container(&c.id, true, false).await {
                Ok(()) => {
                    state.token_in.remove(node);
                    state.relay_token_in.remove(node);
                    tracing::info!(node, container = %short(&c.id), name, "gateway removed: the node is not chosen any more (--gateway-nodes)");
                }
                Err(e) => {
                    tracing::warn!(node, error = %e, "removing the gateway of a node not chosen any more failed: will try again")
                }
            },
            Err(DockerError::NotFound(_)) => {}
            Err(e) => {
                tracing::debug!(node, error = %e, "cannot look for a gateway on a node not chosen")
            }
        }
    }
}

/// The gateway on one node: its image, its container (made, made again, started, given the
/// token), connected to `networks`, and its port relay. Its container's ID.
async fn on_node(
    inner: &Inner,
    config: &NodeGatewayConfig,
    state: &mut LoopState,
    node: &str,
    docker: &berth_docker::Docker,
    networks: &[String],
) -> Result<String, CpError> {
    let tag = state.tag.clone().unwrap_or_default();
    let name = container_name(inner);
    // No published port in it: the port relay binds those (a deploy never re-makes the gateway).
    let config_hash = hex::encode(
        &Sha256::digest(format!("{tag}\n{}\n{}", config.control_url, config.port))[..8],
    );
    let id = match docker.inspect_container(&name).await {
        Ok(c) if c.labels.get("berth.gateway.config") == Some(&config_hash) => {
            if !c.state.running {
                put_token(docker, &c.id, &config.token_file).await?;
                state.token_in.insert(node.to_string(), c.id.clone());
                docker.start_container(&c.id).await?;
            }
            c.id
        }
        Ok(c) => {
            // Another binary or other settings (or a gateway of an earlier Berth that published
            // the table's ports itself): made again.
            tracing::info!(node, container = %short(&c.id), "gateway container made again");
            docker.remove_container(&c.id, true, false).await?;
            // The image of an earlier binary is not needed any more (hundreds of MB).
            if c.image_ref.starts_with("berth-gateway:") && c.image_ref != tag {
                if let Err(e) = docker.remove_image(&c.image_ref, false, false).await {
                    tracing::debug!(image = %c.image_ref, error = %e, "old gateway image kept");
                }
            }
            state.token_in.remove(node);
            create(inner, docker, config, &tag, &name, &config_hash).await?
        }
        Err(DockerError::NotFound(_)) => {
            state.token_in.remove(node);
            create(inner, docker, config, &tag, &name, &config_hash).await?
        }
        Err(e) => return Err(e.into()),
    };
    if state.token_in.get(node) != Some(&id) {
        put_token(docker, &id, &config.token_file).await?;
        docker.start_container(&id).await?;
        state.token_in.insert(node.to_string(), id.clone());
    }
    // The networks it is not on yet (made before it ran, or a connect that failed).
    let seen = docker.inspect_container(&id).await?;
    for n in networks.iter().filter(|n| !seen.networks.contains_key(*n)) {
        connect_one(docker, n, &id).await;
    }
    // Its address on the default bridge, where the port relay forwards to.
    let Some(address) = seen
        .networks
        .get("bridge")
        .and_then(|n| n.ip_address.parse::<IpAddr>().ok())
    else {
        return Err(CpError::InvalidArgument(format!(
            "the gateway {} has no address on the default bridge yet",
            short(&id)
        )));
    };
    relay_on_node(inner, config, state, node, docker, &tag, address).await?;
    Ok(id)
}

/// The port relay on one node (docs/swarm.md#published-ports-on-swarm-the-port-relay): a
/// host-networked container of the same image, `berth gateway --forward-ports-to GATEWAY`,
/// binding the table's published ports on the node and forwarding them to the gateway. Made
/// again only when the binary, the control URL or the gateway's address changes; never for a
/// change of the published ports.
async fn relay_on_node(
    inner: &Inner,
    config: &NodeGatewayConfig,
    state: &mut LoopState,
    node: &str,
    docker: &berth_docker::Docker,
    tag: &str,
    gateway: IpAddr,
) -> Result<(), CpError> {
    let name = relay_name(inner);
    let config_hash =
        hex::encode(&Sha256::digest(format!("{tag}\n{}\n{gateway}", config.control_url))[..8]);
    let id = match docker.inspect_container(&name).await {
        Ok(c) if c.labels.get(RELAY_CONFIG_LABEL) == Some(&config_hash) => {
            if !c.state.running {
                put_token(docker, &c.id, &config.token_file).await?;
                state.relay_token_in.insert(node.to_string(), c.id.clone());
                docker.start_container(&c.id).await?;
            }
            c.id
        }
        Ok(c) => {
            tracing::info!(node, container = %short(&c.id), %gateway, "port relay made again (another binary, control URL or gateway address)");
            docker.remove_container(&c.id, true, false).await?;
            state.relay_token_in.remove(node);
            create_relay(inner, docker, config, tag, &name, &config_hash, gateway).await?
        }
        Err(DockerError::NotFound(_)) => {
            state.relay_token_in.remove(node);
            create_relay(inner, docker, config, tag, &name, &config_hash, gateway).await?
        }
        Err(e) => return Err(e.into()),
    };
    if state.relay_token_in.get(node) != Some(&id) {
        put_token(docker, &id, &config.token_file).await?;
        docker.start_container(&id).await?;
        state.relay_token_in.insert(node.to_string(), id);
    }
    Ok(())
}

fn relay_name(inner: &Inner) -> String {
    let i = &inner.naming.instance;
    format!("berth-relay-{}", &i[..i.len().min(12)])
}

async fn create_relay(
    inner: &Inner,
    docker: &berth_docker::Docker,
    config: &NodeGatewayConfig,
    tag: &str,
    name: &str,
    config_hash: &str,
    gateway: IpAddr,
) -> Result<String, CpError> {
    let spec = ContainerSpec {
        image: tag.into(),
        // (The role label over the image's `berth.role=gateway`.)
        cmd: Some(gateway_cmd(
            config,
            ["--forward-ports-to".into(), gateway.to_string()],
        )),
        labels: container_labels(inner, RELAY_ROLE, RELAY_CONFIG_LABEL, config_hash),
        host: HostSpec {
            // No restart policy: after the node's engine restarts, the gateway may have
            // another address on the bridge; this loop starts the relay (made again for the new
            // address) rather than the engine starting it pointed at the old one.
            restart_policy: None,
            network_mode: Some("host".into()),
            ..HostSpec::default()
        },
        ..ContainerSpec::default()
    };
    let id = docker.create_container(name, &spec).await?;
    tracing::info!(container = %short(&id), image = tag, %gateway, engine = docker.endpoint(), "port relay container made");
    Ok(id)
}

/// What a port relay (`berth gateway --forward-ports-to GATEWAY`) serves of `table`: no
/// route; each published port at its address on the node, forwarded to the same port of the
/// node's gateway container (which listens there in its own network namespace and forwards to
/// the tasks); no probe (the relay cannot reach the tasks: the gateway probes them). A port
/// with no endpoint in the table has none here either, so the relay refuses what the gateway
/// would.
#[must_use]
pub fn relay_table(table: &berth_core::RoutingTable, gateway: IpAddr) -> berth_core::RoutingTable {
    berth_core::RoutingTable {
        version: table.version,
        routes: Vec::new(),
        ports: table
            .ports
            .iter()
            .map(|p| berth_core::PortForward {
                app: p.app.clone(),
                service: p.service.clone(),
                listen: p.listen,
                protocol: p.protocol,
                endpoints: if p.endpoints.is_empty() {
                    Vec::new()
                } else {
                    vec![berth_core::Endpoint {
                        id: "gateway".into(),
                        addr: SocketAddr::new(gateway, p.listen.port()),
                    }]
                },
                probe: None,
            })
            .collect(),
        issuers: Vec::new(),
    }
}

/// The labels of a gateway or relay container: the server's extra labels, its instance, the
/// container's role, and the hash of what it was made from under `config_label`.
fn container_labels(
    inner: &Inner,
    role: &str,
    config_label: &str,
    config_hash: &str,
) -> BTreeMap<String, String> {
    let mut l = inner.config.extra_labels.clone();
    l.insert(labels::INSTANCE.into(), inner.naming.instance.clone());
    l.insert(ROLE_LABEL.into(), role.into());
    l.insert(config_label.into(), config_hash.into());
    l
}

/// `berth gateway --control URL --token-file F` and what this container adds.
fn gateway_cmd(config: &NodeGatewayConfig, rest: [String; 2]) -> Vec<String> {
    let mut cmd = vec![
        "gateway".into(),
        "--control".into(),
        config.control_url.clone(),
        "--token-file".into(),
        TOKEN_PATH.into(),
    ];
    cmd.extend(rest);
    cmd
}

fn container_name(inner: &Inner) -> String {
    let i = &inner.naming.instance;
    format!("berth-gateway-{}", &i[..i.len().min(12)])
}

async fn create(
    inner: &Inner,
    docker: &berth_docker::Docker,
    config: &NodeGatewayConfig,
    tag: &str,
    name: &str,
    config_hash: &str,
) -> Result<String, CpError> {
    let port = config.port.to_string();
    let exposed = vec![format!("{port}/tcp")];
    let bindings = BTreeMap::from([(format!("{port}/tcp"), vec![(String::new(), port.clone())])]);
    let spec = ContainerSpec {
        image: tag.into(),
        cmd: Some(gateway_cmd(
            config,
            ["--listen".into(), format!("0.0.0.0:{port}")],
        )),
        labels: container_labels(inner, "gateway", "berth.gateway.config", config_hash),
        exposed_ports: exposed,
        host: HostSpec {
            restart_policy: Some("unless-stopped".into()),
            network_mode: Some("bridge".into()),
            port_bindings: bindings,
            ..HostSpec::default()
        },
        ..ContainerSpec::default()
    };
    let id = docker.create_container(name, &spec).await?;
    tracing::info!(container = %short(&id), image = tag, engine = docker.endpoint(), "gateway container made");
    Ok(id)
}

/// Copy the token file into the container (as root, mode 0400).
async fn put_token(docker: &berth_docker::Docker, id: &str, file: &Path) -> Result<(), CpError> {
    let token = std::fs::read(file)
        .map_err(|e| CpError::InvalidArgument(format!("gateway token {}: {e}", file.display())))?;
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(token.len() as u64);
    h.set_mode(0o400);
    h.set_cksum();
    b.append_data(&mut h, TOKEN_PATH.trim_start_matches('/'), token.as_slice())
        .map_err(|e| CpError::InvalidArgument(format!("token archive: {e}")))?;
    let tar = b
        .into_inner()
        .map_err(|e| CpError::InvalidArgument(format!("token archive: {e}")))?;
    docker.put_archive(id, "/", tar).await?;
    Ok(())
}

/// The gateway image's tag: `berth-gateway:` and the first 16 hex digits of the running
/// binary's SHA-256.
async fn image_tag() -> Result<String, CpError> {
    let started = std::time::Instant::now();
    let digest = tokio::task::spawn_blocking(|| {
        std::fs::read("/proc/self/exe").map(|exe| hex::encode(Sha256::digest(&exe)))
    })
    .await
    .map_err(|e| CpError::InvalidArgument(e.to_string()))?
    .map_err(|e| CpError::InvalidArgument(format!("the gateway image: {e}")))?;
    let tag = format!("berth-gateway:{}", &digest[..16]);
    tracing::info!(
        image = %tag,
        ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "gateway image: the binary read and hashed"
    );
    Ok(tag)
}

/// The gateway image `tag` as a `docker save` tar, in parts (made once per server for every
/// engine that lacks it; the parts are shared, not copied).
async fn image_parts(tag: &str) -> Result<Vec<Bytes>, CpError> {
    let t = tag.to_string();
    tokio::task::spawn_blocking(move || {
        let exe = std::fs::read("/proc/self/exe")?;
        let maps = std::fs::read_to_string("/proc/self/maps")?;
        let exe_path = std::fs::read_link("/proc/self/exe")?;
        let mut files = Vec::new();
        if let Some(interp) = interpreter(&exe) {
            files.push((interp.clone(), std::fs::read(&interp)?));
        }
        for lib in mapped_files(&maps, &exe_path) {
            let body = std::fs::read(&lib)?;
            let path = lib.to_string_lossy().into_owned();
            if !files.iter().any(|(p, _)| *p == path) {
                files.push((path, body));
            }
        }
        image_tar(&t, &exe, &files)
    })
    .await
    .map_err(|e| CpError::InvalidArgument(e.to_string()))?
    .map_err(|e| CpError::InvalidArgument(format!("the gateway image: {e}")))
}

/// Load the gateway image (`parts`, from [`image_parts`]) into `docker`, a node's engine.
async fn load_image(
    docker: &berth_docker::Docker,
    tag: &str,
    parts: Vec<Bytes>,
) -> Result<(), CpError> {
    let started = std::time::Instant::now();
    let size: usize = parts.iter().map(Bytes::len).sum();
    let stream = futures_util::stream::iter(parts.into_iter().map(Ok::<_, std::io::Error>));
    docker.load_image_stream(stream).await?;
    tracing::info!(
        image = %tag,
        engine = docker.endpoint(),
        bytes = size,
        ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "gateway image loaded"
    );
    Ok(())
}

/// The ELF interpreter (`PT_INTERP`) of a 64-bit little-endian ELF file.
pub(crate) fn interpreter(elf: &[u8]) -> Option<String> {
    if elf.get(..4)? != b"\x7fELF" || elf.get(4) != Some(&2) || elf.get(5) != Some(&1) {
        return None;
    }
    let u16_at = |o: usize| Some(u16::from_le_bytes(elf.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(elf.get(o..o + 4)?.try_into().ok()?));
    let u64_at =
        |o: usize| usize::try_from(u64::from_le_bytes(elf.get(o..o + 8)?.try_into().ok()?)).ok();
    let phoff = u64_at(0x20)?;
    let phentsize = usize::from(u16_at(0x36)?);
    let phnum = usize::from(u16_at(0x38)?);
    for i in 0..phnum {
        let ph = phoff.checked_add(i.checked_mul(phentsize)?)?;
        if u32_at(ph)? == 3 {
            let off = u64_at(ph + 8)?;
            let len = u64_at(ph + 32)?;
            let raw = elf.get(off..off.checked_add(len)?)?;
            let s = raw.split(|b| *b == 0).next()?;
            return String::from_utf8(s.to_vec()).ok();
        }
    }
    None
}

/// The files mapped executable in `maps` (a `/proc/PID/maps`), but `exe` itself: the shared
/// libraries and the loader the process runs with, in order, once each.
pub(crate) fn mapped_files(maps: &str, exe: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let perms = f.nth(1).unwrap_or_default();
        let path: String = f.skip(3).collect::<Vec<_>>().join(" ");
        if !perms.contains('x') || !path.starts_with('/') || path.ends_with(" (deleted)") {
            continue;
        }
        let p = PathBuf::from(path);
        if p != exe && !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// A `docker save`-style tar of a one-layer image: `exe` at `/berth` (the entrypoint) and
/// `files` (absolute path, contents) at their paths, with their directories. Returned in parts
/// so the big layer is not copied once more.
pub(crate) fn image_tar(
    tag: &str,
    exe: &[u8],
    files: &[(String, Vec<u8>)],
) -> std::io::Result<Vec<Bytes>> {
    let mut layer = tar::Builder::new(Vec::new());
    let mut dirs = std::collections::BTreeSet::new();
    for (path, _) in files {
        let mut p = Path::new(path.trim_start_matches('/')).parent();
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
            dirs.insert(d.to_path_buf());
            p = d.parent();
        }
    }
    for d in &dirs {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_cksum();
        layer.append_data(&mut h, d, std::io::empty())?;
    }
    let mut add = |path: &str, body: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o755);
        h.set_cksum();
        layer.append_data(&mut h, path.trim_start_matches('/'), body)
    };
    add("berth", exe)?;
    for (path, body) in files {
        add(path, body)?;
    }
    let layer = layer.into_inner()?;
    let diff_id = hex::encode(Sha256::digest(&layer));
    let lib_dirs: Vec<String> = {
        let mut v: Vec<String> = files
            .iter()
            .filter_map(|(p, _)| {
                Path::new(p)
                    .parent()
                    .map(|d| d.to_string_lossy().into_owned())
            })
            .collect();
        v.dedup();
        v
    };
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": ["/berth"],
            "Env": [format!("LD_LIBRARY_PATH={}", lib_dirs.join(":"))],
            "Labels": {"berth.role": "gateway"},
        },
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff_id}")]},
        "history": [{"created_by": "berth: its own binary and libraries"}],
    }))
    .map_err(std::io::Error::other)?;
    let config_name = format!("{}.json", hex::encode(Sha256::digest(&config)));
    let layer_name = format!("{diff_id}/layer.tar");
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": config_name,
        "RepoTags": [tag],
        "Layers": [layer_name],
    }]))
    .map_err(std::io::Error::other)?;
    // The layer's header, the layer, its padding; then the small files and the end.
    let mut h = tar::Header::new_gnu();
    h.set_path(&layer_name)?;
    h.set_size(layer.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    let head = Bytes::copy_from_slice(h.as_bytes());
    let pad = (512 - layer.len() % 512) % 512;
    let mut tail = tar::Builder::new(vec![0u8; pad]);
    for (name, body) in [
        (config_name.as_str(), config.as_slice()),
        ("manifest.json", manifest.as_slice()),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tail.append_data(&mut h, name, body)?;
    }
    Ok(vec![
        head,
        Bytes::from(layer),
        Bytes::from(tail.into_inner()?),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gateway_connected_by_another_pass_meanwhile_is_connected() {
        // Docker 20.10 on the lab, when two services' ensures connected the gateway at once.
        let raced = DockerError::Api {
            status: 403,
            message: "endpoint with name berth-gateway-x already exists in network n".into(),
        };
        assert!(already_connected(&raced));
        let raced = DockerError::Conflict(
            "berth-gateway-7jw2oyz78cd8 is already attached to network berth_7jw2oy_dep1_default"
                .into(),
        );
        assert!(already_connected(&raced));
        assert!(!already_connected(&DockerError::NotFound(
            "network n not found".into()
        )));
    }

    #[test]
    fn the_image_holds_the_binary_its_libraries_and_loader_at_their_paths() {
        let exe = std::fs::read("/proc/self/exe").unwrap();
        let interp = interpreter(&exe).expect("a dynamically linked test binary");
        assert!(
            interp.starts_with('/') && interp.contains("ld-"),
            "{interp}"
        );
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let me = std::fs::read_link("/proc/self/exe").unwrap();
        let libs = mapped_files(&maps, &me);
        assert!(
            libs.iter().any(|l| l.to_string_lossy().contains("libc.so")),
            "{libs:?}"
        );
        assert!(!libs.contains(&me), "the binary is not a library");
        let files = vec![
            (interp.clone(), b"loader".to_vec()),
            ("/usr/lib/x/libc.so.6".to_string(), b"libc".to_vec()),
        ];
        let parts = image_tar("berth-gateway:t", b"ELF...", &files).unwrap();
        let whole: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
        let mut outer = tar::Archive::new(whole.as_slice());
        let mut names = BTreeMap::new();
        for e in outer.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut body = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut body).unwrap();
            names.insert(name, body);
        }
        let manifest: serde_json::Value = serde_json::from_slice(&names["manifest.json"]).unwrap();
        assert_eq!(manifest[0]["RepoTags"][0], "berth-gateway:t");
        let layer_name = manifest[0]["Layers"][0].as_str().unwrap();
        let config: serde_json::Value =
            serde_json::from_slice(&names[manifest[0]["Config"].as_str().unwrap()]).unwrap();
        let layer = &names[layer_name];
        assert_eq!(
            config["rootfs"]["diff_ids"][0],
            format!("sha256:{}", hex::encode(Sha256::digest(layer)))
        );
        assert_eq!(config["config"]["Entrypoint"][0], "/berth");
        let mut inside = BTreeMap::new();
        for e in tar::Archive::new(layer.as_slice()).entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut body = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut body).unwrap();
            inside.insert(name, body);
        }
        assert_eq!(inside["berth"], b"ELF...");
        assert_eq!(inside["usr/lib/x/libc.so.6"], b"libc");
        assert_eq!(inside[interp.trim_start_matches('/')], b"loader");
        assert!(inside.contains_key("usr/lib/x"), "{:?}", inside.keys());
    }

    #[test]
    fn maps_name_executable_files_once_and_never_the_binary() {
        let maps = "\
55d0-55d1 r--p 00000000 08:01 1 /usr/bin/berth
55d1-55d2 r-xp 00001000 08:01 1 /usr/bin/berth
7f00-7f01 r--p 00000000 08:01 2 /usr/lib/x86_64-linux-gnu/libc.so.6
7f01-7f02 r-xp 00028000 08:01 2 /usr/lib/x86_64-linux-gnu/libc.so.6
7f02-7f03 r-xp 00001000 08:01 3 /usr/lib/x86_64-linux-gnu/libgcc_s.so.1
7f03-7f04 rw-p 00000000 00:00 0
7f04-7f05 r-xp 00000000 08:01 4 /tmp/gone.so (deleted)
7f05-7f06 r--p 00000000 08:01 5 /usr/lib/locale/locale-archive
7ffd-7ffe r-xp 00000000 00:00 0 [vdso]
";
        let got = mapped_files(maps, Path::new("/usr/bin/berth"));
        assert_eq!(
            got,
            [
                PathBuf::from("/usr/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/usr/lib/x86_64-linux-gnu/libgcc_s.so.1"),
            ]
        );
        assert_eq!(interpreter(b"not an elf"), None);
    }

    #[test]
    fn the_relay_forwards_each_published_port_to_the_same_port_of_the_gateway() {
        let ep = |id: &str, ip: [u8; 4], port| berth_core::Endpoint {
            id: id.into(),
            addr: SocketAddr::from((ip, port)),
        };
        let pf =
            |port: u16, protocol, endpoints: Vec<berth_core::Endpoint>| berth_core::PortForward {
                app: "shop".into(),
                service: "web".into(),
                listen: SocketAddr::from(([0, 0, 0, 0], port)),
                protocol,
                endpoints,
                probe: Some(berth_core::EndpointProbe {
                    http: None,
                    port: 8080,
                    interval_ms: 300,
                    timeout_ms: 1000,
                }),
            };
        let tasks = vec![ep("t1", [10, 0, 1, 5], 8080), ep("t2", [10, 0, 1, 6], 8080)];
        let table = berth_core::RoutingTable {
            version: 7,
            ports: vec![
                pf(18080, berth_core::Protocol::Tcp, tasks.clone()),
                pf(9000, berth_core::Protocol::Udp, tasks),
                pf(9001, berth_core::Protocol::Tcp, Vec::new()),
            ],
            ..Default::default()
        };
        let gw: IpAddr = [172, 17, 0, 2].into();
        let relayed = relay_table(&table, gw);
        assert_eq!(relayed.version, 7);
        assert!(relayed.routes.is_empty());
        let got: Vec<_> = relayed
            .ports
            .iter()
            .map(|p| {
                (
                    p.listen.to_string(),
                    p.protocol,
                    p.endpoints
                        .iter()
                        .map(|e| e.addr.to_string())
                        .collect::<Vec<_>>(),
                    p.probe.is_none(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "0.0.0.0:18080".to_string(),
                    berth_core::Protocol::Tcp,
                    vec!["172.17.0.2:18080".to_string()],
                    true
                ),
                (
                    "0.0.0.0:9000".to_string(),
                    berth_core::Protocol::Udp,
                    vec!["172.17.0.2:9000".to_string()],
                    true
                ),
                // Nothing to serve: the relay refuses too.
                (
                    "0.0.0.0:9001".to_string(),
                    berth_core::Protocol::Tcp,
                    vec![],
                    true
                ),
            ]
        );
    }

    #[test]
    fn gateway_nodes_are_chosen_as_placement_constraints_say() {
        use berth_docker::swarm::models::{NodeDescription, NodeSpec};
        let node = |id: &str, host: &str, role, label: Option<(&str, &str)>| Node {
            id: Some(id.into()),
            description: Some(NodeDescription {
                hostname: Some(host.into()),
                ..Default::default()
            }),
            spec: Some(NodeSpec {
                role: Some(role),
                labels: label.map(|(k, v)| [(k.to_string(), v.to_string())].into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let m = node("a1", "node1", NodeSpecRoleEnum::MANAGER, None);
        let w = node(
            "b2",
            "node2",
            NodeSpecRoleEnum::WORKER,
            Some(("edge", "yes")),
        );
        let f = |s: &str| s.parse::<NodeFilter>().unwrap();
        assert_eq!(NodeFilter::default(), f("node.role=manager"));
        for (filter, on_m, on_w) in [
            ("node.role=manager", true, false),
            ("node.role=worker", false, true),
            ("node.hostname=node2", false, true),
            ("node.id=a1", true, false),
            ("node.labels.edge=yes", false, true),
            ("node.labels.edge=no", false, false),
        ] {
            assert_eq!(
                (f(filter).matches(&m), f(filter).matches(&w)),
                (on_m, on_w),
                "{filter}"
            );
        }
        for bad in [
            "node.role=boss",
            "role=manager",
            "node.labels.=x",
            "node.id=",
            "x",
        ] {
            assert!(bad.parse::<NodeFilter>().is_err(), "{bad}");
        }
    }
}
