//! Test fixtures: small hyper upstreams, a gateway on 127.0.0.1:0, a client, table builders.
#![allow(dead_code)]

use berth_core::{Endpoint, HttpRoute, PortForward, Protocol, RoutingTable};
use berth_gateway::{Gateway, GatewayConfig};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Generous bound for anything that should happen "soon".
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Poll `cond` until it holds; panic with `what` after [`PATIENCE`].
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Await `f` with [`PATIENCE`].
pub async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// A small HTTP/1.1 upstream that reports what it saw in `x-seen-*` response headers and answers
/// `NAME:BODY`. `/wait...` blocks until [`Upstream::release`]; `/hang...` never answers.
pub struct Upstream {
    pub name: &'static str,
    pub addr: SocketAddr,
    /// TCP connections accepted so far.
    pub accepts: Arc<AtomicUsize>,
    /// TCP connections open now.
    pub open: Arc<AtomicUsize>,
    /// HTTP requests received so far.
    pub requests: Arc<AtomicUsize>,
    /// Paths of the requests received, in order.
    pub paths: Arc<Mutex<Vec<String>>>,
    /// When non-zero, every request is answered with this status.
    pub fail_status: Arc<AtomicU16>,
    gate: Arc<Semaphore>,
    task: JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    pub async fn start(name: &'static str) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepts = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Semaphore::new(0));
        let probe = Probe {
            requests: Arc::new(AtomicUsize::new(0)),
            paths: Arc::new(Mutex::new(Vec::new())),
            fail_status: Arc::new(AtomicU16::new(0)),
        };
        let task = tokio::spawn({
            let (accepts, open, gate, probe) =
                (accepts.clone(), open.clone(), gate.clone(), probe.clone());
            async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    accepts.fetch_add(1, Ordering::SeqCst);
                    open.fetch_add(1, Ordering::SeqCst);
                    let (open, gate, probe) = (open.clone(), gate.clone(), probe.clone());
                    tokio::spawn(async move {
                        let service =
                            service_fn(move |req| handle(name, gate.clone(), probe.clone(), req));
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                        open.fetch_sub(1, Ordering::SeqCst);
                    });
                }
            }
        });
        Upstream {
            name,
            addr,
            accepts,
            open,
            requests: probe.requests,
            paths: probe.paths,
            fail_status: probe.fail_status,
            gate,
            task,
        }
    }

    pub fn endpoint(&self) -> Endpoint {
        ep(self.name, self.addr)
    }

    /// Let one `/wait` request answer.
    pub fn release(&self) {
        self.gate.add_permits(1);
    }

    pub fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Answer every request with `status` (0: behave normally again).
    pub fn fail_with(&self, status: u16) {
        self.fail_status.store(status, Ordering::SeqCst);
    }
}

/// What an upstream's handler records.
#[derive(Clone)]
struct Probe {
    requests: Arc<AtomicUsize>,
    paths: Arc<Mutex<Vec<String>>>,
    fail_status: Arc<AtomicU16>,
}

async fn handle(
    name: &'static str,
    gate: Arc<Semaphore>,
    probe: Probe,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    probe.requests.fetch_add(1, Ordering::SeqCst);
    probe.paths.lock().unwrap().push(path.clone());
    let fail = probe.fail_status.load(Ordering::SeqCst);
    if fail != 0 {
        return Ok(Response::builder()
            .status(fail)
            .header("x-upstream", name)
            .body(Full::new(Bytes::from_static(b"failing")))
            .unwrap());
    }
    if let Some(ms) = path.strip_prefix("/slow/") {
        let ms: u64 = ms.parse().unwrap_or(100);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if path.starts_with("/wait") {
        gate.acquire().await.unwrap().forget();
    }
    if path.starts_with("/hang") {
        std::future::pending::<()>().await;
    }
    let mut response = Response::builder()
        .header("x-upstream", name)
        .header("x-seen-path", path)
        .header("x-seen-method", req.method().as_str());
    for h in [
        "host",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-request-id",
        "connection",
        "x-secret",
        "authorization",
        "x-berth-subject",
        "x-berth-issuer",
        "x-berth-claims",
        "x-berth-evil",
    ] {
        if let Some(v) = req.headers().get(h) {
            response = response.header(format!("x-seen-{h}"), v);
        }
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut out = format!("{name}:").into_bytes();
    out.extend_from_slice(&body);
    Ok(response.body(Full::new(Bytes::from(out))).unwrap())
}

/// An address where nothing listens: connecting is refused.
pub async fn refusing_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

/// A free port to publish (bound and released).
pub async fn free_addr() -> SocketAddr {
    refusing_addr().await
}

pub fn ep(id: &str, addr: SocketAddr) -> Endpoint {
    Endpoint {
        id: id.into(),
        addr,
    }
}

pub fn route(host: Option<&str>, prefix: &str, strip: bool, endpoints: Vec<Endpoint>) -> HttpRoute {
    HttpRoute {
        app: "app".into(),
        service: "svc".into(),
        host: host.map(Into::into),
        path_prefix: prefix.into(),
        strip_prefix: strip,
        endpoints,
        policy: Default::default(),
        protocol: Default::default(),
        upstream_prefix: None,
        probe: None,
    }
}

pub fn tcp_port(listen: SocketAddr, endpoints: Vec<Endpoint>) -> PortForward {
    PortForward {
        app: "app".into(),
        service: "svc".into(),
        listen,
        protocol: Protocol::Tcp,
        endpoints,
        probe: None,
    }
}

pub fn table(version: u64, routes: Vec<HttpRoute>) -> Arc<RoutingTable> {
    Arc::new(RoutingTable {
        version,
        routes,
        ports: vec![],
        issuers: vec![],
    })
}

/// A gateway serving HTTP on 127.0.0.1:0.
pub struct TestGateway {
    pub gateway: Gateway,
    pub addr: SocketAddr,
    pub tables: watch::Sender<Arc<RoutingTable>>,
    pub shutdown: CancellationToken,
    pub server: Option<JoinHandle<std::io::Result<()>>>,
    pub client: Client<HttpConnector, Full<Bytes>>,
}

impl TestGateway {
    pub async fn start(table: Arc<RoutingTable>) -> TestGateway {
        Self::start_with(table, GatewayConfig::default()).await
    }

    pub async fn start_with(table: Arc<RoutingTable>, config: GatewayConfig) -> TestGateway {
        let (tables, rx) = watch::channel(table);
        let gateway = Gateway::new(rx, config);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn({
            let (gateway, shutdown) = (gateway.clone(), shutdown.clone());
            async move { gateway.serve_http(listener, shutdown).await }
        });
        TestGateway {
            gateway,
            addr,
            tables,
            shutdown,
            server: Some(server),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Publish `table` and wait until the gateway serves it.
    pub async fn publish(&self, table: Arc<RoutingTable>) {
        let version = table.version;
        self.tables.send(table).unwrap();
        let gateway = self.gateway.clone();
        eventually("the gateway serves the new table", || {
            gateway.table_version() == version
        })
        .await;
    }

    pub fn request(&self, method: &str, host: Option<&str>, path: &str) -> http::request::Builder {
        let mut b = Request::builder()
            .method(method)
            .uri(format!("http://{}{}", self.addr, path));
        if let Some(h) = host {
            b = b.header("host", h);
        }
        b
    }

    pub async fn send(&self, req: Request<Full<Bytes>>) -> Reply {
        let response = within("gateway answer", self.client.request(req))
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let body = within("gateway body", body.collect())
            .await
            .unwrap()
            .to_bytes();
        Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    pub async fn get(&self, host: Option<&str>, path: &str) -> Reply {
        self.send(
            self.request("GET", host, path)
                .body(Full::default())
                .unwrap(),
        )
        .await
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A collected answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The upstream that answered.
    pub fn upstream(&self) -> &str {
        self.header("x-upstream").unwrap_or("")
    }

    /// The parsed error body; panics if it is not the Berth error shape.
    pub fn error(&self) -> berth_core::ErrorBody {
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("bad error body {:?}: {e}", self.body))
    }
}
