//! Per-endpoint state: the in-flight counter and the pool of idle upstream connections.
//!
//! Rules this module keeps:
//! * One [`EndpointState`] per endpoint (id + address), shared by every route that lists it and
//!   kept by the registry across table swaps, so pooled connections survive unrelated changes.
//! * The in-flight count is exact: only an [`InFlight`] guard changes it, +1 when created and −1
//!   when dropped, whatever path the request takes. [`EndpointState::try_acquire`] increments
//!   *then* checks the closed flag (both sequentially consistent), so once the control plane has
//!   seen the new table served and read a count of 0, no request can start on the removed
//!   endpoint any more: a request still holding the old table skips it.
//! * The pool is a LIFO stack (the most recently used connection is the warmest and the oldest
//!   ones expire) behind a mutex held only for a push, a pop or a sweep — never across an await.
//!   There is one stack per serving thread: a connection is driven by a task on the thread
//!   that opened it and is only reused by that thread, so each lock is uncontended and no
//!   request wakes another thread.
//! * Passive health: [`EndpointState::record_failure`] ejects an endpoint after
//!   `eject_after` consecutive failures for a cool-off; afterwards it is tried again, and one more
//!   failure ejects it again at once (its count is not reset until a success). Two atomics, no
//!   lock. Whether to skip an ejected endpoint is `proxy`'s call (never the last one).
//! * The shared HTTP/2 connection (gRPC) is one `SendRequest` kept under its own mutex, cloned
//!   per request (streams are multiplexed); a closed or failing one is forgotten and the next
//!   request opens a new one. Each relayed stream holds a clone until its body is done.
//! * Once [`EndpointState::close`] ran (the endpoint left the table), idle connections are gone
//!   (the shared HTTP/2 one too, once its open streams end) and returned ones are dropped: dropping the last `SendRequest` makes hyper close the
//!   connection, so a drained replica keeps no connection from the gateway.
//! * Every upstream connection ([`dial`]) gives up on bytes left unacknowledged for
//!   [`user_timeout`] (`TCP_USER_TIMEOUT`): a replica gone silent (its node cut off) breaks the
//!   exchange instead of holding it until the request timeout, and `proxy` rescues it.

use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

use crate::lock;

/// The request body type sent upstream: the client's body, streamed as it arrives.
pub type UpstreamBody = crate::body::RequestBody;

/// A handle to send requests on one upstream HTTP/1.1 connection.
pub type Sender = http1::SendRequest<UpstreamBody>;

/// A handle to open streams on an endpoint's shared upstream HTTP/2 (h2c) connection.
pub type H2Sender = http2::SendRequest<UpstreamBody>;

/// Why no connection to an endpoint could be opened. The request was not sent.
#[derive(Debug)]
pub enum ConnectError {
    /// The TCP connect failed (refused, unreachable, ...).
    Io(std::io::Error),
    /// The TCP connect did not finish within the connect timeout.
    Timeout,
    /// The HTTP handshake failed.
    Handshake(hyper::Error),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(e) => write!(f, "connect failed: {e}"),
            Self::Timeout => f.write_str("connect timed out"),
            Self::Handshake(e) => write!(f, "handshake failed: {e}"),
        }
    }
}

/// Idle connections with the time each went idle, most recent last.
type IdleStack = Vec<(Sender, Instant)>;

/// An upstream HTTP/1.1 connection of the fast path (`crate::h1`): the socket and its read
/// buffer, driven by the request that holds it (no task of its own).
pub struct RawConn {
    pub stream: TcpStream,
    /// Read buffer, kept with the connection (its length is its capacity).
    pub buf: Vec<u8>,
}

/// Idle fast-path connections with the time each went idle, most recent last.
type RawStack = Vec<(RawConn, Instant)>;

/// One endpoint as the gateway sees it.
pub struct EndpointState {
    /// The replica id from the routing table.
    pub id: Box<str>,
    /// Where it is dialled.
    pub addr: SocketAddr,
    in_flight: AtomicUsize,
    /// Set once when the endpoint leaves the table; never cleared.
    closed: AtomicBool,
    /// Idle HTTP/1.1 connections, one stack per serving thread ([`set_worker`]): a connection
    /// is driven by a task on the thread that opened it, so it is only reused there.
    idle: Box<[Mutex<IdleStack>]>,
    /// Idle fast-path connections, one stack per serving thread like `idle`.
    raw: Box<[Mutex<RawStack>]>,
    /// The one multiplexed HTTP/2 connection (gRPC), opened on first use.
    h2: Mutex<Option<H2Sender>>,
    /// Consecutive failed attempts.
    failures: AtomicU32,
    /// Ejected until this time ([`clock_nanos`]); 0 = not ejected.
    ejected_until: AtomicU64,
}

thread_local! {
    /// This thread's serving-worker number (0: not a gateway worker).
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Mark this thread as gateway worker `worker` (1-based): it uses its own share of every pool.
pub(crate) fn set_worker(worker: usize) {
    WORKER.with(|w| w.set(worker));
}

/// Pool shares per endpoint: one per CPU plus one for threads that are not workers. Workers
/// beyond that share (correct, only less local).
fn pool_shares() -> usize {
    static SHARES: OnceLock<usize> = OnceLock::new();
    *SHARES.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, std::num::NonZeroUsize::get)
            .clamp(1, 64)
            + 1
    })
}

/// Nanoseconds of `tokio::time` since the first call (never 0).
#[must_use]
pub fn clock_nanos() -> u64 {
    static EPOCH: OnceLock<tokio::time::Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(tokio::time::Instant::now);
    u64::try_from(
        tokio::time::Instant::now()
            .saturating_duration_since(epoch)
            .as_nanos(),
    )
    .unwrap_or(u64::MAX)
    .max(1)
}

impl EndpointState {
    /// A fresh endpoint with an empty pool.
    #[must_use]
    pub fn new(id: &str, addr: SocketAddr) -> Self {
        Self {
            id: id.into(),
            addr,
            in_flight: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            idle: (0..pool_shares()).map(|_| Mutex::new(Vec::new())).collect(),
            raw: (0..pool_shares()).map(|_| Mutex::new(Vec::new())).collect(),
            h2: Mutex::new(None),
            failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
        }
    }

    /// An attempt on this endpoint succeeded.
    pub fn record_success(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    /// An attempt failed; eject for `cool_off` once `eject_after` failures are consecutive.
    /// `true` if this failure ejected the endpoint.
    pub fn record_failure(&self, eject_after: u32, cool_off: Duration) -> bool {
        let failures = self
            .failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if eject_after == 0 || failures < eject_after {
            return false;
        }
        let until =
            clock_nanos().saturating_add(u64::try_from(cool_off.as_nanos()).unwrap_or(u64::MAX));
        self.ejected_until.store(until, Ordering::Relaxed);
        true
    }

    /// Is the endpoint ejected at `now` ([`clock_nanos`])?
    #[must_use]
    pub fn is_ejected(&self, now: u64) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        until != 0 && now < until
    }

    /// Requests in flight to this endpoint.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Count a request against this endpoint until the guard is dropped; `None` if the endpoint
    /// has left the table (the request must pick another one).
    #[must_use]
    pub fn try_acquire(self: &Arc<Self>) -> Option<InFlight> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = InFlight(self.clone());
        if self.closed.load(Ordering::SeqCst) {
            return None; // `guard` drops: count restored.
        }
        Some(guard)
    }

    /// Has the endpoint left the table?
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Take the most recently used idle connection that is still open and not expired.
    pub fn checkout(&self, idle_timeout: Duration) -> Option<Sender> {
        let mut idle = lock(self.share());
        while let Some((sender, since)) = idle.pop() {
            if !sender.is_closed() && since.elapsed() < idle_timeout {
                return Some(sender);
            }
        }
        None
    }

    /// Give a connection back after its response was fully relayed.
    pub fn checkin(&self, sender: Sender, max_idle: usize) {
        if sender.is_closed() {
            return;
        }
        let mut idle = lock(self.share());
        // Checked under the lock: `close` sets the flag before draining under the same lock.
        if !self.is_closed() && idle.len() < max_idle {
            idle.push((sender, Instant::now()));
        }
        // Otherwise `sender` is dropped here, which closes the connection.
    }

    /// Take the most recently used idle fast-path connection that is not expired and not
    /// closed by the replica as far as the socket's readiness tells without a system call
    /// (one `read` when it says readable: end of stream or stray bytes drop it).
    /// Also says how long it was idle.
    pub fn checkout_raw(&self, idle_timeout: Duration) -> Option<(RawConn, Duration)> {
        loop {
            let (conn, since) = lock(&self.raw[worker_share(self.raw.len())]).pop()?;
            let idle = since.elapsed();
            if idle < idle_timeout && still_open(&conn.stream) {
                return Some((conn, idle));
            }
        }
    }

    /// Give a fast-path connection back after its response was read completely.
    pub fn checkin_raw(&self, conn: RawConn, max_idle: usize) {
        let mut idle = lock(&self.raw[worker_share(self.raw.len())]);
        if !self.is_closed() && idle.len() < max_idle {
            idle.push((conn, Instant::now()));
        }
    }

    /// The endpoint left the table: close idle connections and refuse returns from now on.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        for share in &self.idle {
            let conns = std::mem::take(&mut *lock(share));
            drop(conns);
        }
        for share in &self.raw {
            let conns = std::mem::take(&mut *lock(share));
            drop(conns);
        }
        let h2 = lock(&self.h2).take();
        drop(h2);
    }

    /// The shared HTTP/2 connection, if one is open.
    pub fn h2_sender(&self) -> Option<H2Sender> {
        let mut h2 = lock(&self.h2);
        match &*h2 {
            Some(s) if !s.is_closed() => Some(s.clone()),
            Some(_) => {
                *h2 = None;
                None
            }
            None => None,
        }
    }

    /// Keep `sender` as the shared HTTP/2 connection (replacing a broken one). Refused once
    /// the endpoint left the table.
    pub fn set_h2_sender(&self, sender: &H2Sender) {
        let mut h2 = lock(&self.h2);
        if !self.is_closed() {
            *h2 = Some(sender.clone());
        }
    }

    /// Forget the shared HTTP/2 connection (it failed); the next request opens a new one.
    pub fn forget_h2_sender(&self) {
        let h2 = lock(&self.h2).take();
        drop(h2);
    }

    /// Drop idle connections that expired or were closed by the replica.
    pub fn sweep(&self, idle_timeout: Duration) {
        for share in &self.idle {
            lock(share)
                .retain(|(sender, since)| !sender.is_closed() && since.elapsed() < idle_timeout);
        }
        for share in &self.raw {
            lock(share).retain(|(_, since)| since.elapsed() < idle_timeout);
        }
        let mut h2 = lock(&self.h2);
        if h2.as_ref().is_some_and(H2Sender::is_closed) {
            *h2 = None;
        }
    }

    /// Idle connections kept now.
    #[must_use]
    pub fn idle_count(&self) -> usize {
        self.idle
            .iter()
            .map(|share| lock(share).len())
            .sum::<usize>()
            + self
                .raw
                .iter()
                .map(|share| lock(share).len())
                .sum::<usize>()
    }

    /// This thread's share of the idle pool.
    fn share(&self) -> &Mutex<IdleStack> {
        &self.idle[worker_share(self.idle.len())]
    }
}

/// This thread's index among `shares` pool shares.
fn worker_share(shares: usize) -> usize {
    WORKER.with(std::cell::Cell::get) % shares
}

/// Is an idle connection still usable? Asks the runtime's readiness first (no system call
/// when nothing arrived since the last read); a readable idle connection is read once: end of
/// stream (the replica closed it) or unexpected bytes mean it is not.
fn still_open(stream: &TcpStream) -> bool {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match stream.poll_read_ready(&mut cx) {
        std::task::Poll::Pending => true,
        std::task::Poll::Ready(Err(_)) => false,
        std::task::Poll::Ready(Ok(())) => {
            let mut probe = [0u8; 1];
            matches!(stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        }
    }
}

/// Counts one request against an endpoint for as long as it lives.
pub struct InFlight(Arc<EndpointState>);

impl InFlight {
    /// The endpoint this request counts against.
    #[must_use]
    pub fn endpoint(&self) -> &Arc<EndpointState> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The TCP connect, bounded by `timeout`.
///
/// # Errors
///
/// [`ConnectError::Io`] or [`ConnectError::Timeout`].
pub async fn dial(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ConnectError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(ConnectError::Io(e)),
        Err(_) => return Err(ConnectError::Timeout),
    };
    // Latency over throughput for small proxied messages.
    let _ = stream.set_nodelay(true);
    let _ = set_user_timeout(&stream, user_timeout(timeout));
    Ok(stream)
}

/// How long the bytes sent on an upstream connection may stay unacknowledged before the kernel
/// gives the connection up (`TCP_USER_TIMEOUT`): the connect timeout, at least one second.
///
/// Why: a replica that stops acknowledging what is sent to it — its node cut off the network
/// or powered off, where nothing answers and nothing resets — would otherwise hold a request
/// sent on a pooled connection until the request timeout (60 s), long after the control plane
/// took the replica out of the table (a removed endpoint's in-flight requests are left to
/// finish: a draining replica answers them). With the timeout the read fails with nothing
/// received, which is a broken exchange, and an idempotent request is rescued on another
/// replica (`retry`). A live but slow replica is not affected: its kernel acknowledges the
/// request at once, however long the answer takes; idle pooled connections have nothing
/// unacknowledged. Measured on the Swarm lab (docs/benchmarks.md §13): a node cut under load
/// failed requests at the client's 10 s timeout without it, none with it.
#[must_use]
pub fn user_timeout(connect_timeout: Duration) -> Duration {
    connect_timeout.max(Duration::from_secs(1))
}

#[cfg(target_os = "linux")]
fn set_user_timeout(stream: &TcpStream, timeout: Duration) -> std::io::Result<()> {
    socket2::SockRef::from(stream).set_tcp_user_timeout(Some(timeout))
}

#[cfg(not(target_os = "linux"))]
fn set_user_timeout(_stream: &TcpStream, _timeout: Duration) -> std::io::Result<()> {
    Ok(())
}

/// Open a new HTTP/1.1 connection to `addr`; the connection is driven by a spawned task that
/// ends when the replica closes it or the last [`Sender`] is dropped.
///
/// # Errors
///
/// [`ConnectError`] when the TCP connect fails or times out, or the handshake fails.
pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Sender, ConnectError> {
    let stream = dial(addr, timeout).await?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(ConnectError::Handshake)?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(%addr, error = %e, "gateway: upstream connection ended with an error");
        }
    });
    Ok(sender)
}

/// Open a new HTTP/1.1 connection to `addr` that can be upgraded (`101 Switching Protocols`,
/// then `hyper::upgrade::on` on the response). Never pooled.
///
/// # Errors
///
/// As [`connect`].
pub async fn connect_upgradable(
    addr: SocketAddr,
    timeout: Duration,
) -> Result<Sender, ConnectError> {
    let stream = dial(addr, timeout).await?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(ConnectError::Handshake)?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(%addr, error = %e, "gateway: upstream connection ended with an error");
        }
    });
    Ok(sender)
}

/// Open a new HTTP/2 connection to `addr` with prior knowledge (h2c); it is driven by a spawned
/// task that ends when the replica closes it or every [`H2Sender`] clone is dropped.
///
/// # Errors
///
/// As [`connect`].
pub async fn connect_h2(addr: SocketAddr, timeout: Duration) -> Result<H2Sender, ConnectError> {
    let stream = dial(addr, timeout).await?;
    let (sender, conn) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .handshake(TokioIo::new(stream))
        .await
        .map_err(ConnectError::Handshake)?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(%addr, error = %e, "gateway: upstream HTTP/2 connection ended with an error");
        }
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn dialled_connections_give_up_on_bytes_left_unacknowledged() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let user_timeout = |s: &TcpStream| socket2::SockRef::from(s).tcp_user_timeout().unwrap();
        let stream = dial(addr, Duration::from_secs(2)).await.unwrap();
        assert_eq!(user_timeout(&stream), Some(Duration::from_secs(2)));
        // A very short connect timeout does not make a busy replica's late ACK fatal.
        let stream = dial(addr, Duration::from_millis(100)).await.unwrap();
        assert_eq!(user_timeout(&stream), Some(Duration::from_secs(1)));
    }
}
