//! `berth gateway`: the data plane in its own process, fed by a control plane.
//!
//! It follows `GET /api/v1/gateway/table?watch=true` (NDJSON, one complete table per line) and
//! publishes each table to the gateway. When the stream breaks — the control plane restarts, is
//! upgraded or is killed — it keeps serving the last table it received and reconnects with a
//! backoff, so routed traffic does not depend on the control plane being up.
//!
//! With `--token-file F` every call to the control plane carries `Authorization: Bearer` with the
//! token in F (read at start, and again before every reconnection so a rotated token is picked
//! up; never logged); an `https://` control plane is verified
//! against the system's roots and `--ca-file` (a private CA). `--metrics-listen ADDR` serves the
//! gateway's Prometheus metrics there, without authentication.
//!
//! Where a table's route or port forward carries a probe (Swarm: the control plane cannot reach
//! the tasks), this process probes its endpoints itself and serves only those that passed
//! (`berth_controlplane::gateway_probes`); it reports their readiness with its figures, at once
//! when one changes (docs/swarm.md#traffic-without-ipvs).
//!
//! With `--forward-ports-to IP` it is a port relay (docs/swarm.md#published-ports-on-swarm-the-port-relay):
//! it follows the same table but serves only its published ports, each forwarded to the same
//! port at IP (the node's gateway container); no HTTP listener, no probe, no report.

use anyhow::{anyhow, bail, Context};
use berth_cli::GatewayArgs;
use berth_controlplane::gateway_probes::TableProber;
use berth_gateway::{Gateway, GatewayConfig};
use futures_util::StreamExt;
use reqwest::header::{HeaderValue, AUTHORIZATION};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

/// A stream silent for longer than this is considered dead (the server sends every 10 s).
const STALE: Duration = Duration::from_secs(25);
/// A report made at once for a change of readiness waits this long for others.
const REPORT_BATCH: Duration = Duration::from_millis(10);

/// `ca_file`: the global `--ca-file` (`BERTH_CA_FILE`), trusted for an `https://` control plane.
pub async fn run(args: GatewayArgs, ca_file: Option<PathBuf>) -> anyhow::Result<()> {
    if let Some(to) = args.forward_ports_to {
        return relay(args, ca_file, to).await;
    }
    let listen: SocketAddr = args.listen.parse().map_err(|_| {
        anyhow!(
            "--listen {:?}: expected IP:PORT, e.g. 0.0.0.0:7480",
            args.listen
        )
    })?;
    let control = control_base(&args.control);
    let credentials = Credentials::load(args.token_file.as_deref())?;
    let client = control_client(&control, ca_file.as_deref())?;
    let metrics_addr = crate::server::parse_metrics_listen(args.metrics_listen.as_deref())?;
    let _log_guard = crate::server::init_tracing(&args.log_format);
    let metrics_listener = match metrics_addr {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (--metrics-listen)"))?,
        ),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (--listen)"))?;

    let tls = match &args.gateway_tls_listen {
        Some(addr) => {
            let addr: SocketAddr = addr.parse().map_err(|_| {
                anyhow!("--gateway-tls-listen {addr:?}: expected IP:PORT, e.g. 0.0.0.0:7443")
            })?;
            let config = crate::tls::config(&args.gateway_tls_certs, &std::env::temp_dir())?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (--gateway-tls-listen)"))?;
            Some((listener, config))
        }
        None => None,
    };
    let shutdown = CancellationToken::new();
    // The table as the control plane sends it, and as served: with only the endpoints whose
    // probe passed where it asks the gateway to probe.
    let (received_tx, received_rx) = watch::channel(Arc::new(berth_core::RoutingTable::default()));
    let (tx, rx) = watch::channel(Arc::new(berth_core::RoutingTable::default()));
    // A change of an endpoint's readiness: serve a new table, and report at once.
    let (serve_again, report_now) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let prober = {
        let (serve_again, report_now) = (serve_again.clone(), report_now.clone());
        TableProber::new(
            Arc::new(move || {
                serve_again.notify_one();
                report_now.notify_one();
            }),
            shutdown.child_token(),
        )
    };
    let serving = tokio::spawn(serve_probed(
        received_rx,
        tx,
        prober.clone(),
        serve_again,
        shutdown.clone(),
    ));
    let verifier: Arc<dyn berth_core::auth::TokenVerifier> = Arc::new(berth_auth::Verifier::new());
    let gateway = Gateway::new(
        rx,
        GatewayConfig {
            workers: args.gateway_workers,
            fast_path: args.gateway_fast_path,
            ..GatewayConfig::default()
        }
        .with_verifier(verifier),
    );
    tracing::info!(
        %listen,
        control,
        token = args.token_file.is_some(),
        metrics = %metrics_addr.map_or_else(|| "off".to_string(), |a| a.to_string()),
        "berth gateway started"
    );
    let reporter = tokio::spawn(report_stats(
        client.clone(),
        Credentials::load(args.token_file.as_deref())?,
        control.clone(),
        gateway.clone(),
        prober,
        report_now,
        shutdown.clone(),
    ));
    let follower = tokio::spawn(follow(
        client,
        credentials,
        control,
        received_tx,
        shutdown.clone(),
    ));
    let metrics = metrics_listener.map(|l| {
        let g = gateway.clone();
        crate::server::spawn_metrics(l, Arc::new(move || g.render_metrics()), shutdown.clone())
    });
    let gw = gateway.clone();
    let gw_shutdown = shutdown.clone();
    let http = tokio::spawn(async move { gw.serve_http(listener, gw_shutdown).await });
    let pf = gateway.clone();
    let pf_shutdown = shutdown.clone();
    let ports = tokio::spawn(async move { pf.run_port_forwarder(pf_shutdown).await });

    let https = tls.map(|(listener, config)| {
        let g = gateway.clone();
        let tls_shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _ = g.serve_https(listener, config, tls_shutdown).await;
        })
    });

    crate::server::wait_for_signal().await;
    tracing::info!("shutting down");
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        let _ = follower.await;
        let _ = serving.await;
        let _ = reporter.await;
        let _ = http.await;
        let _ = ports.await;
        if let Some(h) = https {
            let _ = h.await;
        }
        if let Some(h) = metrics {
            let _ = h.await;
        }
    })
    .await;
    Ok(())
}

/// `berth gateway --forward-ports-to IP`: the port relay. Each published port of the table is
/// bound on this host (the relay runs host-networked) and forwarded to the same port at `to`.
async fn relay(
    args: GatewayArgs,
    ca_file: Option<PathBuf>,
    to: std::net::IpAddr,
) -> anyhow::Result<()> {
    if args.gateway_tls_listen.is_some() || args.metrics_listen.is_some() {
        bail!("--gateway-tls-listen, --metrics-listen: a port relay (--forward-ports-to) serves no HTTP");
    }
    let control = control_base(&args.control);
    let credentials = Credentials::load(args.token_file.as_deref())?;
    let client = control_client(&control, ca_file.as_deref())?;
    let _log_guard = crate::server::init_tracing(&args.log_format);
    let shutdown = CancellationToken::new();
    let (received_tx, mut received_rx) =
        watch::channel(Arc::new(berth_core::RoutingTable::default()));
    let (tx, rx) = watch::channel(Arc::new(berth_core::RoutingTable::default()));
    let gateway = Gateway::new(
        rx,
        GatewayConfig {
            workers: 1,
            ..GatewayConfig::default()
        },
    );
    tracing::info!(forward_to = %to, control, "berth gateway started as a port relay");
    let follower = tokio::spawn(follow(
        client,
        credentials,
        control,
        received_tx,
        shutdown.clone(),
    ));
    let mapping = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            loop {
                let table = received_rx.borrow_and_update().clone();
                let relayed = berth_controlplane::node_gateway::relay_table(&table, to);
                if tx.borrow().as_ref() != &relayed {
                    tx.send_replace(Arc::new(relayed));
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    r = received_rx.changed() => if r.is_err() { return },
                }
            }
        })
    };
    let pf_shutdown = shutdown.clone();
    let ports = tokio::spawn(async move { gateway.run_port_forwarder(pf_shutdown).await });
    crate::server::wait_for_signal().await;
    tracing::info!("shutting down");
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        let _ = follower.await;
        let _ = mapping.await;
        let _ = ports.await;
    })
    .await;
    Ok(())
}

/// `--control` as a base URL: no trailing `/`, `http://` when no scheme is given.
fn control_base(control: &str) -> String {
    let control = control.trim_end_matches('/');
    if control.contains("://") {
        control.to_string()
    } else {
        format!("http://{control}")
    }
}

/// The token in `--token-file`, trimmed, as an `Authorization` value (marked sensitive, so it
/// stays out of any debug output of a request).
fn read_token(path: &Path) -> anyhow::Result<HeaderValue> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow!("--token-file {}: cannot read it: {e}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        bail!("--token-file {}: the file is empty", path.display());
    }
    // The token goes into a header: one line of visible ASCII (never echoed here).
    let not_a_token = || {
        anyhow!(
            "--token-file {}: not a token (expected one line of printable ASCII)",
            path.display()
        )
    };
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(not_a_token());
    }
    let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| not_a_token())?;
    value.set_sensitive(true);
    Ok(value)
}

/// The token sent to the control plane. The file is read again before every (re)connection, so
/// a rotated token (`berth server` writes a new `admin.token` at each start) is picked up; if it
/// has become unreadable or empty meanwhile, the last good token is kept.
struct Credentials {
    file: Option<PathBuf>,
    last: Option<HeaderValue>,
}

impl Credentials {
    /// Read the file once; its errors stop the gateway at start.
    fn load(file: Option<&Path>) -> anyhow::Result<Credentials> {
        let last = file.map(read_token).transpose()?;
        Ok(Credentials {
            file: file.map(Path::to_path_buf),
            last,
        })
    }

    fn current(&mut self) -> Option<HeaderValue> {
        if let Some(file) = &self.file {
            match read_token(file) {
                Ok(v) => self.last = Some(v),
                Err(e) => tracing::warn!(error = %e, "keeping the last token read"),
            }
        }
        self.last.clone()
    }
}

/// The HTTP client for the control plane: TLS trust for `https://`.
fn control_client(control: &str, ca_file: Option<&Path>) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder();
    if control
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
    {
        builder = builder.use_preconfigured_tls(crate::tls::client_config(ca_file)?);
    }
    builder
        .build()
        .map_err(|e| anyhow!("cannot set up the control plane client: {e}"))
}

/// Serve each table received with only the probed endpoints that passed, again whenever a
/// probe's verdict changes.
async fn serve_probed(
    mut received: watch::Receiver<Arc<berth_core::RoutingTable>>,
    tx: watch::Sender<Arc<berth_core::RoutingTable>>,
    prober: TableProber,
    serve_again: Arc<Notify>,
    shutdown: CancellationToken,
) {
    loop {
        let table = received.borrow_and_update().clone();
        let served = prober.apply(&table);
        if tx.borrow().as_ref() != &served {
            tx.send_replace(Arc::new(served));
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            r = received.changed() => if r.is_err() { return },
            () = serve_again.notified() => {}
        }
    }
}

/// Every second, send the gateway's counters and its probes' verdicts to the control plane
/// (`POST /api/v1/gateway/stats`, docs/market.md, docs/swarm.md), and at once (within
/// [`REPORT_BATCH`]) when a verdict changes. A failed report is logged at debug level and
/// skipped: the next one carries the sum.
async fn report_stats(
    client: reqwest::Client,
    mut credentials: Credentials,
    control: String,
    gateway: Gateway,
    prober: TableProber,
    report_now: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let url = format!("{control}/api/v1/gateway/stats");
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let id = format!("gateway-{}-{started}", std::process::id());
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = report_now.notified() => {
                // Changes of one moment (a table's first probes) in one report.
                tokio::time::sleep(REPORT_BATCH).await;
            }
            () = shutdown.cancelled() => return,
        }
        let services = gateway.service_counters();
        let readiness = prober.readiness();
        // One report carries at most MAX_REPORT_SERVICES services: more go in several. The
        // first carries the readiness (as many endpoints at most): each replaces the last.
        for (i, chunk) in services
            .chunks(berth_core::api::MAX_REPORT_SERVICES)
            .chain(services.is_empty().then_some(&[][..]))
            .enumerate()
        {
            let report = berth_core::api::GatewayReport {
                gateway: id.clone(),
                services: chunk.to_vec(),
                // Even empty: the control plane reads it as "this gateway probes, and lives".
                readiness: (i == 0).then(|| {
                    readiness
                        .iter()
                        .take(berth_core::api::MAX_REPORT_SERVICES)
                        .cloned()
                        .collect()
                }),
            };
            let mut request = client.post(&url).json(&report);
            if let Some(token) = credentials.current() {
                request = request.header(AUTHORIZATION, token);
            }
            match tokio::time::timeout(Duration::from_secs(5), request.send()).await {
                Ok(Ok(r)) if r.status().is_success() => {}
                Ok(Ok(r)) => tracing::debug!(status = %r.status(), "stats report refused"),
                Ok(Err(e)) => tracing::debug!(error = %e, "stats report failed"),
                Err(_) => tracing::debug!("stats report timed out"),
            }
        }
    }
}

/// Follow the control plane's table stream forever, reconnecting with a backoff.
async fn follow(
    client: reqwest::Client,
    mut credentials: Credentials,
    control: String,
    tx: watch::Sender<Arc<berth_core::RoutingTable>>,
    shutdown: CancellationToken,
) {
    let url = format!("{control}/api/v1/gateway/table?watch=true");
    let mut backoff = Duration::from_millis(100);
    loop {
        let attempt = async {
            let mut request = client.get(&url);
            if let Some(token) = credentials.current() {
                request = request.header(AUTHORIZATION, token);
            }
            let resp = request.send().await.map_err(|e| e.to_string())?;
            if !resp.status().is_success() {
                return Err(format!("control plane answered {}", resp.status()));
            }
            let mut stream = resp.bytes_stream();
            let mut buf: Vec<u8> = Vec::new();
            loop {
                let chunk = match tokio::time::timeout(STALE, stream.next()).await {
                    Err(_) => return Err("table stream went silent".to_string()),
                    Ok(None) => return Err("control plane closed the table stream".to_string()),
                    Ok(Some(Err(e))) => return Err(e.to_string()),
                    Ok(Some(Ok(c))) => c,
                };
                buf.extend_from_slice(&chunk);
                while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    match serde_json::from_slice::<berth_core::RoutingTable>(&line) {
                        Ok(table) => {
                            let changed = tx.borrow().as_ref() != &table;
                            if changed {
                                tracing::debug!(
                                    version = table.version,
                                    routes = table.routes.len(),
                                    "new routing table"
                                );
                                tx.send_replace(Arc::new(table));
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "ignoring a malformed table line"),
                    }
                }
            }
        };
        let result: Result<(), String> = tokio::select! {
            () = shutdown.cancelled() => return,
            r = attempt => r,
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "lost the control plane; serving the last routing table");
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}
