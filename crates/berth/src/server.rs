//! `berth server`: the control plane (REST API), the gateway and the reconciler in one process.
//!
//! Start-up order: with `--restore`, a data directory that is not empty is refused first;
//! settings are checked, a `--restore` backup is unpacked into the data directory, the Docker engine must answer, the state database
//! opens, listeners bind (the API, plain or TLS; the metrics listener; the gateway's), then
//! background work starts. Shutdown (SIGINT/SIGTERM) cancels one token that every task owns a
//! child of, and waits up to a grace period for in-flight requests.

use anyhow::{anyhow, bail, Context};
use berth_cli::ServerArgs;
use berth_controlplane::{Config, ControlPlane, DataPlane};
use berth_gateway::{Gateway, GatewayConfig};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

struct GatewayPlane(Gateway);

/// The data plane runs in another process (`berth gateway`).
struct RemotePlane;

impl DataPlane for RemotePlane {
    fn in_flight(&self, _endpoint_id: &str) -> usize {
        0
    }
    fn port_errors(&self) -> Vec<(SocketAddr, String)> {
        Vec::new()
    }
    fn table_version(&self) -> u64 {
        u64::MAX
    }
}

impl DataPlane for GatewayPlane {
    fn in_flight(&self, endpoint_id: &str) -> usize {
        self.0.in_flight(endpoint_id)
    }
    fn port_errors(&self) -> Vec<(SocketAddr, String)> {
        self.0.port_errors()
    }
    fn table_version(&self) -> u64 {
        self.0.table_version()
    }
}

/// Label keys Berth sets itself; `--label` cannot override them.
const RESERVED_LABELS: &[&str] = &[
    "berth.instance",
    "berth.app",
    "berth.service",
    "berth.slot",
    "berth.hash",
    "berth.revision",
    "berth.network",
    "berth.volume",
];

/// `--registry HOST:PORT` (Swarm only).
fn registry(value: Option<&str>, runtime: &str) -> anyhow::Result<Option<String>> {
    let Some(v) = value.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if runtime != "swarm" {
        bail!("--registry applies only with --runtime swarm");
    }
    let ok = v
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-:".contains(&b))
        && v.split_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
    if !ok {
        bail!("--registry {v:?}: expected HOST:PORT (lowercase host name or address)");
    }
    Ok(Some(v.to_string()))
}

/// `--node-engine NAME=URL` values, each engine connected once: on Swarm, images are loaded
/// into them and the node gateways run there; on the local runtime, the gateways this instance
/// left there when it ran on Swarm are removed.
async fn node_engines(values: &[String]) -> anyhow::Result<BTreeMap<String, berth_docker::Docker>> {
    let mut engines = BTreeMap::new();
    for v in values {
        let (name, url) = v
            .split_once('=')
            .filter(|(n, u)| !n.is_empty() && (u.starts_with("unix://") || u.starts_with("tcp://")))
            .ok_or_else(|| {
                anyhow!(
                    "--node-engine {v:?}: expected NAME=URL, URL unix:///PATH or tcp://HOST:PORT"
                )
            })?;
        let engine = berth_docker::Docker::connect_to(url)
            .await
            .map_err(|e| anyhow!("--node-engine {name}: {e}"))?;
        engines.insert(name.to_string(), engine);
    }
    Ok(engines)
}

fn parse_labels(labels: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for l in labels {
        let (k, v) = l
            .split_once('=')
            .ok_or_else(|| anyhow!("--label {l:?}: expected KEY=VALUE"))?;
        if k.is_empty() || RESERVED_LABELS.contains(&k) {
            bail!(
                "--label {l:?}: the key must be non-empty and not one of Berth's own ({})",
                RESERVED_LABELS.join(", ")
            );
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// Logging to stderr through a non-blocking writer: the gateway writes an access-log line per
/// request, and a blocking `write(2)` each time measurably cost CPU per request (see
/// docs/benchmarks.md §4). Keep the guard alive until exit; it flushes on drop.
///
/// Colours (ANSI escape codes) only when stderr is a terminal and `NO_COLOR` is unset: a log
/// redirected to a file, a pipe or journald stays plain text.
#[must_use = "dropping the guard stops logging"]
pub(crate) fn init_tracing(format: &str) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    guard
}

/// Run the server until a shutdown signal.
pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(berth_cli::default_data_dir);
    // Before anything else: a restore never touches a directory that holds something.
    if args.restore.is_some() {
        berth_controlplane::backup::check_restore_target(&data_dir)
            .map_err(|e| anyhow!(e.to_string()))?;
    }
    let api_addr: SocketAddr = args.api_listen.parse().map_err(|_| {
        anyhow!(
            "--api-listen {:?}: expected IP:PORT, e.g. 127.0.0.1:7400",
            args.api_listen
        )
    })?;
    let api_tls = args
        .api_tls_cert
        .as_deref()
        .map(crate::tls::api_config)
        .transpose()?;
    // The nodes' gateways call the API by the advertised URL's host: accepted like --api-host.
    let mut api_hosts = args.api_hosts.clone();
    if let Some(url) = &args.advertise_url {
        let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
        let host = rest.split('/').next().unwrap_or_default();
        if host.is_empty() {
            bail!("--advertise-url {url:?}: expected a URL such as http://192.168.77.254:7400");
        }
        api_hosts.push(host.to_string());
    }
    let access = berth_api::guard::Access::for_listen(api_addr, &api_hosts)
        .map_err(|e| anyhow!(e))?
        .with_tls(api_tls.is_some());
    let metrics_addr = parse_metrics_listen(args.metrics_listen.as_deref())?;
    if metrics_addr.is_some() && args.no_gateway {
        bail!("--metrics-listen: with --no-gateway the metrics are the gateway process's; give --metrics-listen to `berth gateway`");
    }
    let gateway_addr: SocketAddr = args.gateway_listen.parse().map_err(|_| {
        anyhow!(
            "--gateway-listen {:?}: expected IP:PORT, e.g. 0.0.0.0:7480",
            args.gateway_listen
        )
    })?;
    let labels = parse_labels(&args.labels)?;
    let mqtt_settings = crate::mqtt::settings(&args, &data_dir)?;
    let network_pool = berth_controlplane::subnets::NetworkPool::new(
        &args.network_pool,
        u8::try_from(args.network_prefix).unwrap_or(u8::MAX),
    )
    .map_err(|e| anyhow!(e))?;
    let port_range = berth_controlplane::envs::parse_ports(&args.port_range)
        .map_err(|e| anyhow!("--port-range: {e}"))?;
    let gateway_nodes: berth_controlplane::node_gateway::NodeFilter = args
        .gateway_nodes
        .parse()
        .map_err(|e| anyhow!("--gateway-nodes {e}"))?;
    let _log_guard = init_tracing(&args.log_format);

    if let Some(file) = &args.restore {
        let m = berth_controlplane::backup::restore(file, &data_dir)
            .map_err(|e| anyhow!(e.to_string()))?;
        tracing::info!(
            file = %file.display(),
            instance = m.instance,
            created_at = m.created_at,
            berth_version = m.berth_version,
            "data directory restored from a backup"
        );
    }
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    let docker = berth_docker::Docker::connect()
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let store = berth_store::Store::open(&data_dir)
        .with_context(|| format!("cannot open the state in {}", data_dir.display()))?;
    let unchecked = args.auth == "off";
    if unchecked {
        if !api_addr.ip().is_loopback() {
            bail!("--auth off (benchmarks only) needs a loopback --api-listen, not {api_addr}");
        }
        tracing::warn!("--auth off: every API call acts as the administrator without a token (benchmarks only)");
    }
    let identity = open_access(&store, &data_dir, args.session_ttl, unchecked).await?;

    let api_listener = tokio::net::TcpListener::bind(api_addr)
        .await
        .with_context(|| format!("cannot listen on {api_addr} (--api-listen)"))?;
    let metrics_listener = match metrics_addr {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (--metrics-listen)"))?,
        ),
        None => None,
    };
    let gw_listener = if args.no_gateway {
        None
    } else {
        Some(
            tokio::net::TcpListener::bind(gateway_addr)
                .await
                .with_context(|| format!("cannot listen on {gateway_addr} (--gateway-listen)"))?,
        )
    };

    let tls = match (&args.gateway_tls_listen, args.no_gateway) {
        (Some(addr), false) => {
            let addr: SocketAddr = addr.parse().map_err(|_| {
                anyhow!("--gateway-tls-listen {addr:?}: expected IP:PORT, e.g. 0.0.0.0:7443")
            })?;
            let config = crate::tls::config(&args.gateway_tls_certs, &data_dir)?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (--gateway-tls-listen)"))?;
            Some((listener, config))
        }
        _ => None,
    };

    let shutdown = CancellationToken::new();
    let (table_tx, table_rx) =
        tokio::sync::watch::channel(Arc::new(berth_core::RoutingTable::default()));
    let keys = berth_auth::KeyStore::open(data_dir.join("keys")).map_err(|e| {
        anyhow!(
            "cannot open the signing keys in {}: {e}",
            data_dir.join("keys").display()
        )
    })?;
    let verifier: Arc<dyn berth_core::auth::TokenVerifier> = Arc::new(berth_auth::Verifier::new());
    let mqtt_table = table_rx.clone();
    let gateway = Gateway::new(
        table_rx,
        GatewayConfig {
            workers: args.gateway_workers,
            fast_path: args.gateway_fast_path,
            ..GatewayConfig::default()
        }
        .with_verifier(verifier.clone()),
    );
    let engines = node_engines(&args.node_engine).await?;
    let mut config = Config {
        extra_labels: labels,
        resync: Duration::from_secs(args.resync_secs.max(1)),
        image_keep: usize::try_from(args.image_keep).unwrap_or(usize::MAX),
        image_retention_period: Duration::from_secs(args.image_retention_secs),
        image_disk_alert: args.image_disk_alert,
        image_count_alert: args.image_count_alert,
        network_pool,
        port_range,
        runtime: if args.runtime == "swarm" {
            berth_controlplane::RuntimeKind::Swarm
        } else {
            berth_controlplane::RuntimeKind::Local
        },
        node_engines: engines.clone(),
        registry: registry(args.registry.as_deref(), &args.runtime)?,
        ..Config::default()
    };
    let dataplane: Arc<dyn DataPlane> = if args.no_gateway {
        // A separate gateway's in-flight counts are not visible here: drain by time.
        config.min_drain = Duration::from_secs(2);
        Arc::new(RemotePlane)
    } else {
        Arc::new(GatewayPlane(gateway.clone()))
    };
    let mqtt_store = store.clone();
    let node_engines_for_gateways = config.node_engines.clone();
    let cp = ControlPlane::start(
        store,
        docker.clone(),
        config,
        table_tx,
        dataplane,
        shutdown.child_token(),
    )
    .map_err(|e| anyhow!("{e}"))?;
    let issuer_url = args.issuer_url.clone().unwrap_or_else(|| {
        let scheme = if api_tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{api_addr}")
    });
    cp.enable_issuer(Arc::new(keys), issuer_url, shutdown.child_token());
    cp.enable_builds(data_dir.join("builds"))
        .map_err(|e| anyhow!("{e}"))?;
    cp.enable_backups(data_dir.clone());
    if args.runtime != "swarm" {
        // What this instance left on the nodes when it ran on Swarm (docs/swarm.md).
        cp.remove_node_gateways(engines, shutdown.child_token());
    } else {
        // Berth's gateways on the Swarm nodes (docs/swarm.md#traffic-without-ipvs).
        if args.advertise_url.is_none() && api_addr.ip().is_loopback() {
            tracing::warn!(api = %api_addr, "the gateways on the Swarm nodes cannot reach a loopback API: give --advertise-url (docs/swarm.md)");
        }
        // Their token may read the table and report traffic, nothing else (docs/access.md).
        identity.write_gateway_token(&data_dir).map_err(|e| {
            anyhow!(
                "cannot write {}: {}",
                data_dir.join(berth_access::GATEWAY_TOKEN_FILE).display(),
                e.message
            )
        })?;
        let control_url = args.advertise_url.clone().unwrap_or_else(|| {
            let scheme = if api_tls.is_some() { "https" } else { "http" };
            format!("{scheme}://{api_addr}")
        });
        cp.enable_node_gateways(
            berth_controlplane::node_gateway::NodeGatewayConfig {
                control_url,
                token_file: data_dir.join(berth_access::GATEWAY_TOKEN_FILE),
                nodes: gateway_nodes,
                port: args.node_gateway_port,
                // The nodes' engines (`--node-engine NAME=URL`, NAME the node's hostname):
                // the gateways run there too when --gateway-nodes chooses them.
                engines: node_engines_for_gateways,
            },
            shutdown.child_token(),
        );
    }
    // Consumers of market entries call the gateway at the Docker host (docs/market.md).
    cp.enable_subscriptions(
        data_dir.join("credentials"),
        format!(
            "http://{}:{}",
            berth_controlplane::subscriptions::GATEWAY_HOST,
            gateway_addr.port()
        ),
        shutdown.child_token(),
    );
    // The MQTT broker (docs/messaging.md): after the issuer, so logins verify from the start.
    let mqtt = match mqtt_settings {
        Some(settings) => Some(
            crate::mqtt::start(
                settings,
                &cp,
                mqtt_store,
                mqtt_table,
                verifier.clone(),
                shutdown.child_token(),
            )
            .await?,
        ),
        None => None,
    };
    if let Some(b) = &mqtt {
        // `x-berth.mqtt` (docs/messaging.md#services): containers reach the TCP listener at
        // the Docker host, as consumers reach the gateway.
        if let Some(addr) = b.local_addr {
            cp.enable_mqtt(format!(
                "mqtt://{}:{}",
                berth_controlplane::subscriptions::GATEWAY_HOST,
                addr.port()
            ));
        }
        tracing::info!(
            tcp = ?b.local_addr,
            tls = ?b.tls_local_addr,
            websocket = ?b.ws_local_addr,
            "mqtt broker started"
        );
    }
    tracing::info!(
        instance = cp.instance(),
        api = %api_addr,
        api_tls = api_tls.is_some(),
        metrics = %metrics_addr.map_or_else(|| "off".to_string(), |a| a.to_string()),
        gateway = %if args.no_gateway { "separate (--no-gateway)".to_string() } else { gateway_addr.to_string() },
        data_dir = %data_dir.display(),
        docker = docker.endpoint(),
        docker_api = docker.api_version(),
        "berth server started"
    );

    if !api_addr.ip().is_loopback() && api_tls.is_none() {
        tracing::warn!(api = %api_addr, "the API serves the network over plain HTTP: tokens cross it in clear (use --api-tls-cert)");
    }
    let metrics: Option<berth_api::MetricsFn> = if args.no_gateway {
        None
    } else {
        let g = gateway.clone();
        Some(Arc::new(move || g.render_metrics()))
    };
    // The dashboard (berth-web) shares the API's listener, guard and permission table.
    let pages = berth_web::router(berth_web::Config {
        tls: api_tls.is_some(),
    });
    let app = berth_api::router_with_pages(
        berth_api::AppState {
            cp: cp.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            metrics: metrics.clone(),
            access: identity,
        },
        access,
        pages,
    );
    let api_listener = match api_tls {
        Some(config) => berth_api::listener::tls_listener(api_listener, config)
            .context("cannot serve TLS on --api-listen")?,
        None => berth_api::listener::listener(api_listener),
    };
    let api_shutdown = shutdown.clone();
    let mut tasks = vec![tokio::spawn(async move {
        let _ = axum::serve(
            api_listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { api_shutdown.cancelled().await })
        .await;
    })];
    if !args.no_gateway {
        tasks.push(spawn_stats_feed(
            cp.clone(),
            gateway.clone(),
            shutdown.clone(),
        ));
    }
    // (Never both None and bound: --metrics-listen is refused with --no-gateway above.)
    if let (Some(listener), Some(m)) = (metrics_listener, metrics) {
        tasks.push(spawn_metrics(listener, m, shutdown.clone()));
    }
    if let Some(gw_listener) = gw_listener {
        let gw = gateway.clone();
        let gw_shutdown = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            let _ = gw.serve_http(gw_listener, gw_shutdown).await;
        }));
        // On Swarm, published ports are served by the gateways on the nodes (docs/swarm.md),
        // which reach the tasks; this machine does not.
        if args.runtime != "swarm" {
            let pf = gateway.clone();
            let pf_shutdown = shutdown.clone();
            tasks.push(tokio::spawn(async move {
                pf.run_port_forwarder(pf_shutdown).await
            }));
        }
        if let Some((listener, config)) = tls {
            let g = gateway.clone();
            let tls_shutdown = shutdown.clone();
            tasks.push(tokio::spawn(async move {
                let _ = g.serve_https(listener, config, tls_shutdown).await;
            }));
        }
    }

    wait_for_signal().await;
    tracing::info!("shutting down");
    shutdown.cancel();
    let grace = Duration::from_secs(10);
    let _ = tokio::time::timeout(grace, async {
        for t in tasks {
            let _ = t.await;
        }
    })
    .await;
    if let Some(b) = mqtt {
        b.stop(Duration::from_secs(5)).await;
    }
    Ok(())
}

/// Users and tokens (docs/access.md): on an empty data directory create the administrator
/// (`BERTH_ADMIN_PASSWORD`, else a generated password printed once on stderr, outside the log),
/// then write a fresh local administrator token to `<data-dir>/admin.token`.
async fn open_access(
    store: &berth_store::Store,
    data_dir: &std::path::Path,
    session_ttl: Duration,
    unchecked: bool,
) -> anyhow::Result<berth_access::Access> {
    let access = berth_access::Access::open(
        store.clone(),
        berth_access::AccessConfig {
            session_ttl,
            unchecked,
            ..berth_access::AccessConfig::default()
        },
    )
    .map_err(|e| anyhow!("cannot open users and tokens: {}", e.message))?;
    let password = std::env::var("BERTH_ADMIN_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty());
    let generated = access
        .bootstrap(password)
        .await
        .map_err(|e| anyhow!("{}", e.message))?;
    if let Some(password) = generated {
        eprintln!(
            "berth: administrator \"{}\" created; one-time password: {password}",
            berth_access::ADMIN
        );
    }
    access.write_local_token(data_dir).map_err(|e| {
        anyhow!(
            "cannot write {}: {}",
            data_dir.join(berth_access::LOCAL_TOKEN_FILE).display(),
            e.message
        )
    })?;
    Ok(access)
}

/// `--metrics-listen ADDR`, if given.
pub(crate) fn parse_metrics_listen(value: Option<&str>) -> anyhow::Result<Option<SocketAddr>> {
    value
        .map(|a| {
            a.parse::<SocketAddr>().map_err(|_| {
                anyhow!("--metrics-listen {a:?}: expected IP:PORT, e.g. 10.0.0.5:9400")
            })
        })
        .transpose()
}

/// Serve `GET /metrics` without authentication on `listener` until `shutdown`.
/// Every second, the in-process gateway's counters reach the control plane's per-minute
/// figures (docs/market.md).
fn spawn_stats_feed(
    cp: berth_controlplane::ControlPlane,
    gateway: berth_gateway::Gateway,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.cancelled() => return,
            }
            cp.ingest_gateway_report(&berth_core::api::GatewayReport {
                gateway: "in-process".into(),
                services: gateway.service_counters(),
                readiness: None,
            });
        }
    })
}

pub(crate) fn spawn_metrics(
    listener: tokio::net::TcpListener,
    metrics: berth_api::MetricsFn,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) =
            berth_api::metrics::serve(listener, metrics, async move { shutdown.cancelled().await })
                .await
        {
            tracing::error!(error = %e, "the metrics listener stopped");
        }
    })
}

pub(crate) async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
