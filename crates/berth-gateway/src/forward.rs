//! Published ports (Compose `ports:`): Berth listens on the host address itself and forwards each
//! TCP connection, or each UDP client's datagrams, to one ready replica — like Swarm's routing
//! mesh, so a port stays reachable and balanced during rollouts.
//!
//! Rules this module keeps:
//! * The set of listeners follows the table: on every table change new ports are bound, ports
//!   that left the table are closed, and ports that stay keep their listener while their endpoint
//!   list is swapped (an `ArcSwap` read once per connection or session).
//! * A port that cannot be bound is reported through `Gateway::port_errors` with the OS error
//!   text, and binding is retried on every table change and every few seconds.
//! * TCP: round robin per port; an endpoint that refuses (or does not connect within the connect
//!   timeout) is skipped and the next one tried; bytes are copied both ways until either side
//!   closes. Established connections are not cut when their port or endpoint leaves the table
//!   (that is the replica's drain); they end on shutdown at the latest. They are not counted in
//!   `Gateway::in_flight`, which counts HTTP requests only, so a long-lived TCP client cannot
//!   hold a rollout forever.
//! * UDP: one session per client address, with its own upstream socket connected to one
//!   endpoint (round robin); replies go back from the published port. A session idle in both
//!   directions for `udp_session_idle` ends; a session whose endpoint left the table is replaced
//!   on its next datagram.
//! * Every task is owned: listeners by their own token (a child of the shutdown token),
//!   connections and sessions by the shutdown token.

use crate::{lock, Inner};
use arc_swap::ArcSwap;
use berth_core::{Endpoint, PortForward, Protocol, RoutingTable};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How often binding a failed port is retried while nothing else changes.
const BIND_RETRY: Duration = Duration::from_secs(2);

type Endpoints = Arc<ArcSwap<Vec<Endpoint>>>;

/// A bound published port.
struct Bound {
    endpoints: Endpoints,
    stop: CancellationToken,
    /// The accept (or receive) loop; it owns the socket, so the port is free once it ended.
    task: JoinHandle<()>,
}

impl Bound {
    /// Stop listening and wait until the socket is closed.
    async fn close(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// Run until `shutdown`. See [`crate::Gateway::run_port_forwarder`].
pub(crate) async fn run(inner: Arc<Inner>, shutdown: CancellationToken) {
    let mut rx = inner.table_rx.clone();
    let mut bound: HashMap<(SocketAddr, Protocol), Bound> = HashMap::new();
    let mut retry = tokio::time::interval(BIND_RETRY);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut publisher_gone = false;
    loop {
        let table = rx.borrow_and_update().clone();
        reconcile(&inner, &mut bound, &table, &shutdown).await;
        let failed = !lock(&inner.port_errors).is_empty();
        tokio::select! {
            () = shutdown.cancelled() => break,
            changed = rx.changed(), if !publisher_gone => {
                if changed.is_err() {
                    publisher_gone = true;
                }
            }
            _ = retry.tick(), if failed => {}
        }
    }
    for b in bound.into_values() {
        b.close().await;
    }
    lock(&inner.port_errors).clear();
}

/// Make the bound listeners match `table.ports`.
async fn reconcile(
    inner: &Inner,
    bound: &mut HashMap<(SocketAddr, Protocol), Bound>,
    table: &RoutingTable,
    shutdown: &CancellationToken,
) {
    let wanted: HashMap<(SocketAddr, Protocol), &PortForward> = table
        .ports
        .iter()
        .map(|p| ((p.listen, p.protocol), p))
        .collect();
    let gone: Vec<(SocketAddr, Protocol)> = bound
        .keys()
        .filter(|key| !wanted.contains_key(*key))
        .copied()
        .collect();
    for key in gone {
        if let Some(b) = bound.remove(&key) {
            tracing::info!(listen = %key.0, protocol = ?key.1, "gateway: closing published port");
            b.close().await;
        }
    }
    lock(&inner.port_errors).retain(|addr, _| wanted.keys().any(|(a, _)| a == addr));
    for (key, port) in wanted {
        if let Some(b) = bound.get(&key) {
            if **b.endpoints.load() != port.endpoints {
                b.endpoints.store(Arc::new(port.endpoints.clone()));
            }
            continue;
        }
        let endpoints: Endpoints = Arc::new(ArcSwap::from_pointee(port.endpoints.clone()));
        let stop = shutdown.child_token();
        let result = match key.1 {
            Protocol::Tcp => TcpListener::bind(key.0).await.map(|listener| {
                tokio::spawn(tcp_accept(
                    listener,
                    endpoints.clone(),
                    inner.config.connect_timeout,
                    stop.clone(),
                    shutdown.clone(),
                ))
            }),
            Protocol::Udp => UdpSocket::bind(key.0).await.map(|socket| {
                tokio::spawn(udp_serve(
                    Arc::new(socket),
                    endpoints.clone(),
                    inner.config.udp_session_idle,
                    stop.clone(),
                ))
            }),
        };
        match result {
            Ok(task) => {
                tracing::info!(listen = %key.0, protocol = ?key.1, "gateway: published port bound");
                lock(&inner.port_errors).remove(&key.0);
                bound.insert(
                    key,
                    Bound {
                        endpoints,
                        stop,
                        task,
                    },
                );
            }
            Err(e) => {
                tracing::warn!(listen = %key.0, protocol = ?key.1, error = %e, "gateway: cannot bind published port");
                lock(&inner.port_errors).insert(key.0, e.to_string());
            }
        }
    }
}

/// Accept on one published TCP port until `stop`.
async fn tcp_accept(
    listener: TcpListener,
    endpoints: Endpoints,
    connect_timeout: Duration,
    stop: CancellationToken,
    shutdown: CancellationToken,
) {
    let mut next: usize = 0;
    loop {
        let (client, peer) = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "gateway: accept failed on published port");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let eps = endpoints.load_full();
        let start = next;
        next = next.wrapping_add(1);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            forward_tcp(client, peer, &eps, start, connect_timeout, shutdown).await;
        });
    }
}

/// Connect to the first endpoint (ring order from `start`) that accepts, then copy both ways.
async fn forward_tcp(
    mut client: TcpStream,
    peer: SocketAddr,
    endpoints: &[Endpoint],
    start: usize,
    connect_timeout: Duration,
    shutdown: CancellationToken,
) {
    let n = endpoints.len();
    for k in 0..n {
        let endpoint = &endpoints[(start + k) % n];
        let upstream = match tokio::time::timeout(
            connect_timeout,
            TcpStream::connect(endpoint.addr),
        )
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(endpoint = %endpoint.id, error = %e, "gateway: tcp forward: trying the next replica");
                continue;
            }
            Err(_) => {
                tracing::debug!(endpoint = %endpoint.id, "gateway: tcp forward: connect timed out");
                continue;
            }
        };
        let _ = upstream.set_nodelay(true);
        let _ = client.set_nodelay(true);
        let mut upstream = upstream;
        tokio::select! {
            r = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "gateway: tcp forward ended with an error");
                }
            }
            () = shutdown.cancelled() => {}
        }
        return;
    }
    tracing::debug!(%peer, "gateway: tcp forward: no replica accepted; closing");
}

/// One UDP client's session.
struct Session {
    upstream: Arc<UdpSocket>,
    endpoint: SocketAddr,
    /// Milliseconds since `epoch` of the last datagram from the client.
    last_seen: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serve one published UDP port until `stop`.
async fn udp_serve(
    socket: Arc<UdpSocket>,
    endpoints: Endpoints,
    idle: Duration,
    stop: CancellationToken,
) {
    let epoch = Instant::now();
    let mut sessions: HashMap<SocketAddr, Session> = HashMap::new();
    let mut next: usize = 0;
    let mut buf = vec![0u8; 65_536];
    loop {
        let (len, client) = tokio::select! {
            () = stop.cancelled() => return,
            r = socket.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(e) => {
                    // ICMP errors surface here on some systems; they concern one datagram.
                    tracing::debug!(error = %e, "gateway: udp receive failed");
                    continue;
                }
            },
        };
        let eps = endpoints.load();
        let usable = sessions
            .get(&client)
            .is_some_and(|s| !s.task.is_finished() && eps.iter().any(|e| e.addr == s.endpoint));
        if !usable {
            sessions.remove(&client);
            sessions.retain(|_, s| !s.task.is_finished());
            if eps.is_empty() {
                continue;
            }
            let endpoint = eps[next % eps.len()].addr;
            next = next.wrapping_add(1);
            match new_session(&socket, client, endpoint, idle, epoch, &stop).await {
                Ok(s) => {
                    sessions.insert(client, s);
                }
                Err(e) => {
                    tracing::debug!(%endpoint, error = %e, "gateway: udp session failed");
                    continue;
                }
            }
        }
        let Some(session) = sessions.get(&client) else {
            continue;
        };
        session
            .last_seen
            .store(millis_since(epoch), Ordering::Relaxed);
        if let Err(e) = session.upstream.send(&buf[..len]).await {
            tracing::debug!(endpoint = %session.endpoint, error = %e, "gateway: udp send failed");
        }
    }
}

fn millis_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Open the upstream socket of a new session and spawn the task relaying replies.
async fn new_session(
    socket: &Arc<UdpSocket>,
    client: SocketAddr,
    endpoint: SocketAddr,
    idle: Duration,
    epoch: Instant,
    stop: &CancellationToken,
) -> std::io::Result<Session> {
    let local: IpAddr = if endpoint.is_ipv4() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    };
    let upstream = UdpSocket::bind((local, 0)).await?;
    upstream.connect(endpoint).await?;
    let upstream = Arc::new(upstream);
    let last_seen = Arc::new(AtomicU64::new(millis_since(epoch)));
    let task = tokio::spawn(relay_replies(
        socket.clone(),
        upstream.clone(),
        client,
        idle,
        epoch,
        last_seen.clone(),
        stop.clone(),
    ));
    Ok(Session {
        upstream,
        endpoint,
        last_seen,
        task,
    })
}

/// Send the endpoint's datagrams back to `client` until the session is idle both ways.
async fn relay_replies(
    socket: Arc<UdpSocket>,
    upstream: Arc<UdpSocket>,
    client: SocketAddr,
    idle: Duration,
    epoch: Instant,
    last_seen: Arc<AtomicU64>,
    stop: CancellationToken,
) {
    let mut buf = vec![0u8; 65_536];
    let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            r = tokio::time::timeout(idle, upstream.recv(&mut buf)) => match r {
                Ok(Ok(n)) => {
                    if let Err(e) = socket.send_to(&buf[..n], client).await {
                        tracing::debug!(%client, error = %e, "gateway: udp reply failed");
                    }
                }
                Ok(Err(e)) => {
                    // E.g. ICMP port unreachable from the endpoint; keep the session.
                    tracing::debug!(%client, error = %e, "gateway: udp upstream receive failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(_) => {
                    let quiet = millis_since(epoch).saturating_sub(last_seen.load(Ordering::Relaxed));
                    if quiet >= idle_ms {
                        return;
                    }
                }
            },
        }
    }
}
