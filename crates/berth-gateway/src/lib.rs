//! Berth's data plane: the HTTP gateway and the published-port forwarder.
//!
//! The gateway serves what the latest [`RoutingTable`] says and nothing else: the control plane
//! computes the table and publishes it through a `tokio::sync::watch` channel; this crate never
//! reads a database (docs/design-notes.md §5) and depends on `berth-core` only.
//!
//! # Design
//!
//! * **Table.** A background task (the *updater*, owned by the [`Gateway`]: it stops when the last
//!   clone is dropped) turns every published table into a [`table::Snapshot`] — the table plus,
//!   per route, the shared per-endpoint state — and swaps it into an `ArcSwap`. The request path
//!   reads it without locks or I/O. A new table takes effect as soon as the updater has run
//!   (microseconds); [`Gateway::table_version`] tells which table is being served.
//! * **Balancing: round robin** per route (an atomic counter in the snapshot). Sequential traffic
//!   is spread exactly evenly, which makes behaviour predictable and testable. Per-endpoint
//!   in-flight counts already exist, so power-of-two-choices is a local change in
//!   [`proxy`] if skewed replicas show up in benchmarks.
//! * **Pool.** Each endpoint owns a small LIFO stack of idle HTTP/1.1 connections
//!   (`hyper::client::conn::http1::SendRequest`; plus at most one shared HTTP/2 connection, see
//!   below), behind its own uncontended mutex held only for a
//!   push or pop (no global pool, no lock held across an await). A connection goes back on the
//!   stack when its response body has been fully relayed; it is dropped if the body was cut short.
//!   When an endpoint leaves the table its idle connections are dropped at once and later
//!   returns are refused, so a drained replica is never reused. Idle connections expire after
//!   [`GatewayConfig::pool_idle_timeout`]. The stack is per serving thread (see *Threads*).
//! * **Threads.** The listeners are served by [`GatewayConfig::workers`] threads (one per CPU by
//!   default), each running its own current-thread Tokio runtime and accepting on its own handle
//!   of the listening socket. A client connection, its requests and the upstream connections
//!   they use all live on one thread: no work stealing, no cross-thread wake-up on the request
//!   path (docs/design-notes.md §4). Shared state (table snapshot, limiters, breakers, counters) is
//!   atomics and `ArcSwap`, so the threads never wait for each other.
//! * **Policy layers** (docs/style.md habit 6), in one documented function, `proxy::pipeline`,
//!   outermost first: route → `redirect_https` (308) → rate limit by IP → authenticate → rate
//!   limit by consumer (or the route-wide limit) → bulkhead → circuit breaker → timeout → retry →
//!   balance → upstream. Each layer is its own module with its own error ([`ratelimit`],
//!   [`auth`], [`bulkhead`], [`breaker`], [`retry`]); statuses are fixed: 429 `rate_limited`
//!   (with `Retry-After`, `RateLimit-Policy`, `RateLimit`), 401 `unauthorized` (with
//!   `WWW-Authenticate`), 503 `over_capacity` / `circuit_open`, 504 `upstream_timeout`, 502
//!   `upstream_error`, 413 `payload_too_large`. They are plain calls, not tower layers: one
//!   request type, one stack, no boxing. A route without policy pays one `Option` check per layer
//!   — no allocation, no lock, no task. On a rate-limited route, answers from upstream also carry
//!   `RateLimit-Policy` and `RateLimit` (remaining quota, seconds until full).
//! * **Policy state outlives table swaps**: rate limiters per route identity (app, service,
//!   host, prefix), breaker / bulkhead / retry budget per (app, service), rebuilt only when their
//!   policy changes (see [`table`]). Limiters use GCRA on `tokio::time` (route-wide: one atomic;
//!   per IP / subject: a bounded map whose idle keys the updater evicts). The breaker's state
//!   machine runs on its own task; requests read an atomic gate (habit 7).
//! * **Authentication** is delegated to a [`berth_core::auth::TokenVerifier`] from
//!   [`GatewayConfig::verifier`]; none configured means auth routes answer 401 (fail closed).
//!   Every inbound `X-Berth-*` header is stripped on every route; a verified request carries
//!   `X-Berth-Subject`, `X-Berth-Issuer`, `X-Berth-Claims` upstream.
//! * **Retry.** A request is retried on another endpoint for free only when it provably never
//!   left the gateway: the TCP connect failed or timed out, or a pooled connection was found
//!   closed before hyper wrote the request (`try_send_request` hands it back). That is safe for
//!   every method, so no body is ever buffered: request bodies are streamed. Once sent, only
//!   bodiless idempotent requests are retried: a broken exchange (the replica reset or closed
//!   the connection without answering, e.g. it was killed) once on another replica outside any
//!   budget, so a replica dying under load fails no such request; a 502/503/504 answer or a
//!   per-try timeout only under a route's `Retries` policy, within a budget refilled by
//!   requests (`budget_percent`), so retries cannot multiply load (reasoning in [`retry`]).
//! * **Passive health.** An endpoint with [`GatewayConfig::eject_after_failures`] consecutive
//!   failed attempts is skipped for [`GatewayConfig::eject_for`], then tried again (one more
//!   failure ejects it again). The last usable endpoint of a route is never skipped.
//! * **Hardening.** HTTP/1 connections are read through the [`guard`]: it checks the framing of
//!   every request head before hyper parses it and answers a request with both
//!   `Content-Length` and `Transfer-Encoding`, conflicting or non-numeric `Content-Length`s, a
//!   final coding other than `chunked`, a head that does not parse (400 `bad_request`) or a head
//!   over [`GatewayConfig::max_header_bytes`] or with more than 100 headers (431
//!   `headers_too_large`) in the Berth shape, closing the connection after every earlier
//!   request on it was answered; clients that do not finish a head within
//!   [`GatewayConfig::header_read_timeout`] are cut off. Broken chunking found while streaming
//!   is a 400 `bad_request` and a body over [`GatewayConfig::max_body_bytes`] a 413, both in
//!   the Berth shape with `Connection: close`. The guard also refuses (400) an HTTP/1.1 head
//!   without `Host` and any head with several `Host`s or an invalid one (RFC 9112 §3.2).
//! * **Request paths** ([`path`]): before routing, on every protocol path, the path is
//!   normalised once (escaped unreserved characters decoded, `//` collapsed, dot-segments
//!   removed; `%2F` never decoded) and that path is both routed on and forwarded, so what the
//!   policy saw is what the replica gets; ambiguous paths (`..;`, `..%2F`, `...`, `%00`, bad
//!   escapes) are a 400 `bad_request`. Normal paths are recognised by one scan and borrowed.
//! * **HTTPS** ([`tls`], [`Gateway::serve_https`]): rustls 0.23 on the aws-lc-rs provider
//!   (passed explicitly, never the process default), terminated on a second listener served by
//!   the same accept loop as plain HTTP. A [`TlsConfig`] holds one certificate chain per host
//!   from PEM files ([`TlsConfig::from_pem_files`], parsed with `rustls-pki-types`) or one
//!   self-signed certificate for development ([`TlsConfig::self_signed`], `rcgen`); a
//!   `ResolvesServerCert` picks by SNI (exact name, then `*.parent`, else the first host).
//!   ALPN offers `h2` and `http/1.1`. The handshake has `header_read_timeout`. Requests over TLS
//!   take the same path with `secure = true`: `X-Forwarded-Proto: https`, no `redirect_https`.
//! * **HTTP/2 upstreams (h2c routes, gRPC).** Every request on a route whose
//!   [`berth_core::HttpRoute::protocol`] is `h2c` (`x-berth.route.protocol`), from any client
//!   (HTTP/1.1, h2c, h2 over TLS), and on any route a request from an HTTP/2 client with
//!   `content-type: application/grpc*`, goes upstream over HTTP/2 with prior knowledge (h2c):
//!   one multiplexed connection per endpoint (`hyper::client::conn::http2`), opened on first
//!   use, kept in the endpoint state, reopened when found closed or failing before the request
//!   was sent. `TE: trailers` is kept, other hop-by-hop headers are dropped, the host (an
//!   HTTP/1.1 client's `Host`) travels as `:authority`, and trailers are relayed both ways
//!   (bodies are relayed frame by frame). Everything else uses the HTTP/1.1 pool; a WebSocket
//!   upgrade goes over HTTP/1.1 even on an h2c route.
//! * **WebSocket upgrades** (HTTP/1.1 `Connection: upgrade` + `Upgrade: websocket`) pass all
//!   policy layers, then go to one endpoint on a fresh, never pooled connection (no retry once
//!   sent). On `101` the client gets the service's `101` (hop-by-hop headers replaced by the
//!   upgrade ones) and a spawned task copies bytes both ways (`copy_bidirectional`) holding the
//!   endpoint's in-flight guard and the bulkhead permit until either side closes. Any other
//!   answer is relayed as usual and its connection closed.
//! * **Observability.** [`Gateway::render_metrics`] renders per-route and per-service counters
//!   (relaxed atomics on the request path) as Prometheus text. One access-log event per request
//!   on target `berth_gateway::access` (request id, method, host, path without query, status,
//!   upstream, ms); header values and tokens are never logged.
//! * **In-flight accounting.** A guard increments the endpoint's counter when the endpoint is
//!   picked and decrements it exactly once: when the attempt fails, when the response body ends,
//!   or when the response body is dropped (on the fast path: when the answer has been read
//!   whole, before its last bytes are written to the client). [`Gateway::in_flight`] also sees endpoints that have
//!   already left the table, which is what draining waits on.
//! * **Errors** are answered in the one Berth shape (`berth_core::ErrorCode`), carrying the
//!   request's `X-Request-Id`.
//!
//! Modules: [`table`] (snapshot, endpoint registry, policy state), [`pool`] (endpoint state,
//! connections, in-flight guard, passive health), [`proxy`] (the request path and its layers),
//! [`ratelimit`], [`auth`], [`bulkhead`], [`breaker`], [`retry`], [`metrics`] (one per policy
//! layer), [`headers`] (forwarding headers and request ids), [`body`] (response and request
//! body wrappers), [`error`] (error answers), [`guard`] (request framing checks before hyper),
//! [`path`] (request path normalisation),
//! [`server`] (the HTTP and HTTPS listeners and their
//! limits), [`tls`] (certificates, SNI, ALPN), [`forward`] (published TCP/UDP ports).

pub mod auth;
pub mod body;
pub mod breaker;
pub mod bulkhead;
pub mod error;
pub mod forward;
pub mod guard;
pub mod h1;
pub mod headers;
pub mod metrics;
pub mod path;
pub mod pool;
pub mod proxy;
pub mod ratelimit;
pub mod retry;
pub mod server;
pub mod table;
pub mod tls;

use berth_core::auth::TokenVerifier;
use berth_core::RoutingTable;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;
pub use tls::{TlsConfig, TlsError};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Tunables of the gateway. Build with `GatewayConfig { field: x, ..Default::default() }`.
#[derive(Clone)]
pub struct GatewayConfig {
    /// Time allowed for the TCP connect to a replica (HTTP and published TCP ports). Default 2 s.
    pub connect_timeout: Duration,
    /// Time from the start of proxying until the replica's response headers arrive; past it the
    /// client gets 504 `upstream_timeout`. Default 60 s.
    pub request_timeout: Duration,
    /// An idle pooled upstream connection older than this is closed. Default 90 s.
    pub pool_idle_timeout: Duration,
    /// At most this many idle connections are kept per endpoint. Default 64.
    pub max_idle_per_endpoint: usize,
    /// A UDP client session with no datagram either way for this long is forgotten. Default 60 s.
    pub udp_session_idle: Duration,
    /// Verifies bearer tokens on routes with `policy.auth`. `None`: such routes answer 401
    /// (fail closed). Default `None`.
    pub verifier: Option<Arc<dyn TokenVerifier>>,
    /// Passive health: an endpoint is ejected after this many consecutive failed attempts
    /// (0 = never). Default 5.
    pub eject_after_failures: u32,
    /// Passive health: how long an ejected endpoint is skipped. Default 10 s.
    pub eject_for: Duration,
    /// Largest request body accepted (declared or streamed); larger ones get 413. Default 16 MiB.
    pub max_body_bytes: u64,
    /// Largest request head (request line + headers) hyper buffers; larger ones get 431 from
    /// hyper. At least 8192. Default 64 KiB.
    pub max_header_bytes: usize,
    /// A client must send its complete request head within this time (slow-loris guard).
    /// Default 10 s.
    pub header_read_timeout: Duration,
    /// Threads serving the HTTP(S) listeners, each with its own current-thread runtime and its
    /// own share of every endpoint's connection pool. 0 = one per CPU. Default 0.
    pub workers: usize,
    /// Serve plain HTTP/1.1 requests on the own HTTP/1.1 loop ([`h1`]); `false`: every request
    /// takes the general (hyper) path. Default `true`.
    pub fast_path: bool,
}

impl std::fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayConfig")
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("pool_idle_timeout", &self.pool_idle_timeout)
            .field("max_idle_per_endpoint", &self.max_idle_per_endpoint)
            .field("udp_session_idle", &self.udp_session_idle)
            .field(
                "verifier",
                &self.verifier.as_ref().map(|_| "dyn TokenVerifier"),
            )
            .field("eject_after_failures", &self.eject_after_failures)
            .field("eject_for", &self.eject_for)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_header_bytes", &self.max_header_bytes)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("workers", &self.workers)
            .field("fast_path", &self.fast_path)
            .finish()
    }
}

impl GatewayConfig {
    /// The number of serving threads: [`GatewayConfig::workers`], or one per CPU.
    #[must_use]
    pub fn worker_count(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            n => n,
        }
    }

    /// This configuration with `verifier` checking bearer tokens.
    #[must_use]
    pub fn with_verifier(mut self, verifier: Arc<dyn TokenVerifier>) -> Self {
        self.verifier = Some(verifier);
        self
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(60),
            pool_idle_timeout: Duration::from_secs(90),
            max_idle_per_endpoint: 64,
            udp_session_idle: Duration::from_secs(60),
            verifier: None,
            eject_after_failures: 5,
            eject_for: Duration::from_secs(10),
            max_body_bytes: 16 << 20,
            max_header_bytes: 64 << 10,
            header_read_timeout: Duration::from_secs(10),
            workers: 0,
            fast_path: true,
        }
    }
}

/// The data plane. Cheap to clone (an `Arc` inside); all clones serve the same table and share
/// pools and in-flight counts.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

/// State shared by every clone of a [`Gateway`] and by its tasks.
pub(crate) struct Inner {
    pub(crate) config: GatewayConfig,
    /// What the request path reads: swapped by the updater task.
    pub(crate) snapshot: arc_swap::ArcSwap<table::Snapshot>,
    /// Endpoint states by id (only the updater and [`Gateway::in_flight`] take this lock).
    pub(crate) registry: Mutex<table::Registry>,
    /// A receiver for the port forwarder.
    pub(crate) table_rx: watch::Receiver<Arc<RoutingTable>>,
    /// The receiver the updater task takes when it starts.
    updater_rx: Mutex<Option<watch::Receiver<Arc<RoutingTable>>>>,
    /// Published ports that could not be bound, with the OS error text.
    pub(crate) port_errors: Mutex<BTreeMap<SocketAddr, String>>,
    /// Requests no route matched (metrics).
    pub(crate) unrouted: AtomicU64,
    /// Cancelled when the last `Gateway` clone is dropped: stops the updater task.
    stop: CancellationToken,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Lock a mutex, ignoring poisoning: every critical section in this crate leaves its data valid.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Inner {
    /// Build and publish the snapshot for `table`; close pools of endpoints that left it.
    fn apply(&self, table: Arc<RoutingTable>) {
        let mut registry = lock(&self.registry);
        let snapshot = registry.build(table);
        self.snapshot.store(Arc::new(snapshot));
    }

    /// Start the updater task if it is not running yet. Must be called inside a Tokio runtime.
    fn ensure_updater(self: &Arc<Self>) {
        let Some(mut rx) = lock(&self.updater_rx).take() else {
            return;
        };
        // Catch up with a table published before the task started.
        let latest = rx.borrow_and_update().clone();
        if !Arc::ptr_eq(&latest, &self.snapshot.load().table) {
            self.apply(latest);
        }
        let sweep = (self.config.pool_idle_timeout / 4)
            .clamp(Duration::from_millis(10), Duration::from_secs(30));
        tokio::spawn(run_updater(
            Arc::downgrade(self),
            rx,
            self.stop.clone(),
            sweep,
        ));
    }
}

/// The updater: applies every published table and expires idle pooled connections.
async fn run_updater(
    inner: Weak<Inner>,
    mut rx: watch::Receiver<Arc<RoutingTable>>,
    stop: CancellationToken,
    sweep_every: Duration,
) {
    let mut tick = tokio::time::interval(sweep_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut publisher_gone = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            changed = rx.changed(), if !publisher_gone => {
                if changed.is_err() {
                    // The control plane is gone: keep serving the last table.
                    publisher_gone = true;
                    continue;
                }
                let table = rx.borrow_and_update().clone();
                let Some(inner) = inner.upgrade() else { return };
                tracing::debug!(version = table.version, "gateway: new routing table");
                inner.apply(table);
            }
            _ = tick.tick() => {
                let Some(inner) = inner.upgrade() else { return };
                lock(&inner.registry).sweep_idle(inner.config.pool_idle_timeout);
            }
        }
    }
}

impl Gateway {
    /// A gateway serving the tables published on `table`. The current table is served at once.
    ///
    /// Call it inside a Tokio runtime to have table changes applied from the start; otherwise
    /// they are applied once [`Gateway::serve_http`] or [`Gateway::run_port_forwarder`] runs.
    #[must_use]
    pub fn new(mut table: watch::Receiver<Arc<RoutingTable>>, config: GatewayConfig) -> Gateway {
        let current = table.borrow_and_update().clone();
        let mut registry = table::Registry::default();
        let snapshot = registry.build(current);
        let inner = Arc::new(Inner {
            config,
            snapshot: arc_swap::ArcSwap::from_pointee(snapshot),
            registry: Mutex::new(registry),
            table_rx: table.clone(),
            updater_rx: Mutex::new(Some(table)),
            port_errors: Mutex::new(BTreeMap::new()),
            unrouted: AtomicU64::new(0),
            stop: CancellationToken::new(),
        });
        if tokio::runtime::Handle::try_current().is_ok() {
            inner.ensure_updater();
        }
        Gateway { inner }
    }

    /// Serve HTTP/1.1 (with WebSocket upgrades) and h2c on `listener` until `shutdown` is
    /// cancelled; then stop accepting,
    /// let in-flight requests finish (idle keep-alive connections are closed) and return. The
    /// caller bounds the grace period (e.g. with `tokio::time::timeout`).
    ///
    /// # Errors
    ///
    /// None today: accept errors are logged and accepting goes on. The `Result` leaves room for
    /// listener setup that can fail.
    pub async fn serve_http(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        self.inner.ensure_updater();
        server::serve(self.inner.clone(), listener, None, shutdown).await
    }

    /// Serve HTTPS on `listener` until `shutdown` is cancelled, like [`Gateway::serve_http`]
    /// but terminating TLS with `tls` first (certificate by SNI, ALPN `h2` / `http/1.1`).
    /// Requests are proxied exactly like plain ones except that upstreams see
    /// `X-Forwarded-Proto: https` and `redirect_https` routes are served, not redirected.
    ///
    /// # Errors
    ///
    /// None today: failed handshakes only end their connection.
    pub async fn serve_https(
        &self,
        listener: tokio::net::TcpListener,
        tls: tls::TlsConfig,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        self.inner.ensure_updater();
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config());
        server::serve(self.inner.clone(), listener, Some(acceptor), shutdown).await
    }

    /// Requests currently in flight to the endpoint with this [`berth_core::Endpoint::id`],
    /// including an endpoint that has already left the table. Draining waits for 0.
    ///
    /// Exact once the table without the endpoint is served (see [`Gateway::table_version`]):
    /// from then on no request can start on it, so a 0 stays 0. Read before that, a 0 only
    /// means "idle right now".
    #[must_use]
    pub fn in_flight(&self, endpoint_id: &str) -> usize {
        lock(&self.inner.registry).in_flight(endpoint_id)
    }

    /// Run the published-port forwarder until `shutdown` is cancelled: keep a listener bound for
    /// every [`berth_core::PortForward`] of the current table and forward each TCP connection (or
    /// UDP client session) to one endpoint, round robin, skipping endpoints that refuse. See
    /// [`forward`].
    pub async fn run_port_forwarder(&self, shutdown: CancellationToken) {
        self.inner.ensure_updater();
        forward::run(self.inner.clone(), shutdown).await;
    }

    /// Published ports whose listener could not be bound, with the OS error text.
    #[must_use]
    pub fn port_errors(&self) -> Vec<(SocketAddr, String)> {
        lock(&self.inner.port_errors)
            .iter()
            .map(|(a, e)| (*a, e.clone()))
            .collect()
    }

    /// The version of the routing table the gateway serves right now.
    #[must_use]
    pub fn table_version(&self) -> u64 {
        self.inner.snapshot.load().table.version
    }

    /// The gateway's counters in Prometheus text exposition format (0.0.4): per route
    /// (app, service, host, prefix) and per (app, service) responses by status class, latency
    /// histograms, rate-limit / auth / bulkhead / breaker rejections, retries, ejections, and the
    /// breaker state gauge. Serve it as `text/plain; version=0.0.4`.
    #[must_use]
    pub fn render_metrics(&self) -> String {
        let unrouted = self.inner.unrouted.load(Ordering::Relaxed);
        lock(&self.inner.registry).render_metrics(unrouted)
    }

    /// Every routed service's cumulative counters (responses by class, latency buckets), for
    /// the control plane's per-minute figures (docs/market.md).
    #[must_use]
    pub fn service_counters(&self) -> Vec<berth_core::api::ServiceCounters> {
        lock(&self.inner.registry).service_counters()
    }

    /// Idle pooled connections currently kept for this endpoint (0 once it left the table).
    #[must_use]
    pub fn idle_connections(&self, endpoint_id: &str) -> usize {
        lock(&self.inner.registry).idle_connections(endpoint_id)
    }
}
