//! The routing table: what the gateway needs to know, computed by the control plane.
//!
//! The control plane builds a complete [`RoutingTable`] from desired and observed state and
//! publishes it (a `tokio::sync::watch` channel of `Arc<RoutingTable>`); the gateway only ever
//! reads the latest table and never reads the database (docs/design-notes.md §5). An endpoint is in a
//! table only while its replica is running, ready and not draining, so a table swap is how a
//! replica enters or leaves rotation.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// One replica's address as the gateway dials it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Endpoint {
    /// A stable id of the replica (the Docker container id). In-flight counts are kept per id.
    pub id: String,
    /// `container IP:port` on the application's network.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub addr: SocketAddr,
}

/// An HTTP route: requests whose host and path match go to one service's endpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HttpRoute {
    /// Application that holds the route.
    pub app: String,
    /// Service inside the application that serves it.
    pub service: String,
    /// Host to match (case-insensitive, without port); `None` matches any host. A host ending
    /// in `.*` matches every host that starts with what comes before the `*` (`staging.*`: the
    /// route of an application of environment `staging` that names no host;
    /// docs/environments.md). An exact host wins over such a prefix, which wins over none.
    pub host: Option<String>,
    /// Path prefix, always starting with `/`; matched on `/` boundaries
    /// (`/api` matches `/api` and `/api/x`, not `/apiary`). `/` matches everything.
    pub path_prefix: String,
    /// Remove the prefix before forwarding (`/api/x` → `/x`).
    pub strip_prefix: bool,
    /// Ready replicas, in a stable order. Empty means "route exists, nothing healthy" (503).
    /// With a [`HttpRoute::probe`]: every running replica, the gateway choosing the ready ones.
    pub endpoints: Vec<Endpoint>,
    /// What the gateway enforces on this route (default: nothing).
    #[serde(default)]
    pub policy: crate::policy::RoutePolicy,
    /// How the gateway speaks to the endpoints (default HTTP/1.1). Absent in tables from
    /// control planes that predate it, which means [`UpstreamProtocol::Http1`].
    #[serde(default)]
    pub protocol: UpstreamProtocol,
    /// Forward with the matched `path_prefix` replaced by this one (`/_market/a/orders/x` →
    /// `/orders/x`); takes precedence over `strip_prefix`. Set on the market's routes for
    /// subscribers ([`MARKET_HOST`]), never from a Compose file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_prefix: Option<String>,
    /// Set where the control plane cannot reach the endpoints itself (Swarm): each gateway
    /// probes them and routes only to those whose probe passed ([`EndpointProbe`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<EndpointProbe>,
}

/// How a gateway probes the endpoints of a route or port forward itself
/// (docs/swarm.md#traffic-without-ipvs). Set only by a control plane that cannot reach them (a
/// Swarm task's address is on an overlay network, reached from the gateways on the nodes); with
/// it, `endpoints` lists every running replica that is not stopping, not only the ready ones, and
/// a gateway serves only those its probe passed, reporting what it sees
/// ([`crate::api::GatewayReport::readiness`]). Absent in every other table, so local tables and
/// gateways that predate it are unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EndpointProbe {
    /// `GET` this path must answer 2xx or 3xx (`x-berth.health.http`); absent: a TCP connect
    /// must succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// The port probed at each endpoint's address (the health port may not be the routed one).
    pub port: u16,
    /// Between probes of a ready endpoint (one that has not passed yet is probed every 25 ms).
    pub interval_ms: u64,
    /// How long one probe may take.
    pub timeout_ms: u64,
}

/// The host name consumers of market entries call the gateway by (docs/market.md#subscribe).
/// Requests for it are routed only to the routes the control plane makes for subscribers
/// (`/_market/TEAM/SERVICE`), never to an application's own routes, so no application can
/// receive a subscriber's credential; a Compose route may not name it.
pub const MARKET_HOST: &str = "berth-gateway";

/// The protocol a route's replicas speak (`x-berth.route.protocol`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    /// HTTP/1.1 over pooled connections. gRPC from an HTTP/2 client still goes upstream over
    /// HTTP/2 (h2c), since gRPC cannot work over HTTP/1.1.
    #[default]
    Http1,
    /// HTTP/2 with prior knowledge over plain TCP (h2c): every request, from any client
    /// protocol, goes over the endpoint's one shared HTTP/2 connection.
    H2c,
}

/// Transport of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

/// A published port (Compose `ports:`): Berth listens on the host address itself and forwards
/// each connection to one ready replica, like Swarm's routing mesh, so the port stays reachable
/// during rollouts and is balanced across replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PortForward {
    pub app: String,
    pub service: String,
    /// Host address to listen on (`0.0.0.0:8000` unless the Compose file names a host IP).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub listen: SocketAddr,
    pub protocol: Protocol,
    /// Ready replicas, each at `container IP:target port`.
    pub endpoints: Vec<Endpoint>,
    /// As [`HttpRoute::probe`]: the gateway probes the endpoints itself (Swarm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<EndpointProbe>,
}

/// Everything the data plane serves, replaced as a whole on every change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoutingTable {
    /// Increases with every published table.
    pub version: u64,
    pub routes: Vec<HttpRoute>,
    pub ports: Vec<PortForward>,
    /// JWT issuers routes may name in their `AuthPolicy`.
    #[serde(default)]
    pub issuers: Vec<crate::policy::Issuer>,
}

/// Does `path` fall under `prefix` on a `/` boundary? (`path` has no `;` parameters here:
/// [`RoutingTable::find`] matches on [`without_parameters`] of the request path.)
#[must_use]
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" || prefix.is_empty() {
        return true;
    }
    let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'),
        None => false,
    }
}

/// `path` with the parameters of each segment removed (`/a;x=1/b;y` → `/a/b`; the query, after
/// `?`, is kept as it is), and a segment left empty by that dropped (`/;x/priv` → `/priv`, which
/// is what a server that strips parameters and collapses `//` serves). Servers that take path parameters (Tomcat and other Java servers)
/// strip them before they resolve a path, so `/priv;x/a` is `/priv/a` to them and must meet
/// `/priv`'s policy, not a catch-all route's (docs/security.md). Borrowed when there is no `;`.
#[must_use]
pub fn without_parameters(path: &str) -> std::borrow::Cow<'_, str> {
    let end = path.find('?').unwrap_or(path.len());
    if !path[..end].contains(';') {
        return std::borrow::Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len());
    let segments: Vec<&str> = path[..end].split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        let name = segment.split(';').next().unwrap_or_default();
        let last = i + 1 == segments.len();
        if i > 0 && (!name.is_empty() || last) {
            out.push('/');
        }
        out.push_str(name);
    }
    if out.is_empty() {
        out.push('/');
    }
    out.push_str(&path[end..]);
    std::borrow::Cow::Owned(out)
}

impl RoutingTable {
    /// The route for a request: host must match when the route names one (routes with a host win
    /// over routes without), then the longest matching prefix wins.
    #[must_use]
    pub fn find(&self, host: Option<&str>, path: &str) -> Option<&HttpRoute> {
        // `admin.example.` is `admin.example` (a fully qualified name), as for nginx and browsers.
        let host = host.map(|h| {
            let h = h.split(':').next().unwrap_or(h);
            h.strip_suffix('.').unwrap_or(h)
        });
        let path = without_parameters(path);
        self.routes
            .iter()
            .filter(|r| match (&r.host, host) {
                // Subscribers' requests reach only the market's routes.
                (None, Some(h)) => !h.eq_ignore_ascii_case(MARKET_HOST),
                (None, None) => true,
                (Some(rh), Some(h)) => host_matches(rh, h),
                (Some(_), None) => false,
            })
            .filter(|r| prefix_matches(&r.path_prefix, &path))
            .max_by_key(|r| {
                (
                    host_rank(r.host.as_deref()),
                    r.path_prefix.trim_end_matches('/').len(),
                )
            })
    }
}

/// Does the route host `pattern` (exact, or `prefix.*`) match the request's `host`?
fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => {
            host.len() > prefix.len()
                && host.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
        }
        None => pattern.eq_ignore_ascii_case(host),
    }
}

/// An exact host is more specific than a host prefix, which is more specific than none.
fn host_rank(pattern: Option<&str>) -> u8 {
    match pattern {
        None => 0,
        Some(p) if p.ends_with('*') => 1,
        Some(_) => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(host: Option<&str>, prefix: &str, svc: &str) -> HttpRoute {
        HttpRoute {
            app: "a".into(),
            service: svc.into(),
            host: host.map(Into::into),
            path_prefix: prefix.into(),
            strip_prefix: false,
            endpoints: vec![],
            policy: crate::policy::RoutePolicy::default(),
            protocol: UpstreamProtocol::default(),
            upstream_prefix: None,
            probe: None,
        }
    }

    #[test]
    fn protocol_is_http1_when_absent_and_named_in_lowercase() {
        let json = r#"{"app":"a","service":"s","host":null,"path_prefix":"/","strip_prefix":false,"endpoints":[]}"#;
        let r: HttpRoute = serde_json::from_str(json).unwrap();
        assert_eq!(r.protocol, UpstreamProtocol::Http1);
        let mut h2c = r.clone();
        h2c.protocol = UpstreamProtocol::H2c;
        let text = serde_json::to_string(&h2c).unwrap();
        assert!(text.contains(r#""protocol":"h2c""#), "{text}");
        assert_eq!(serde_json::from_str::<HttpRoute>(&text).unwrap(), h2c);
    }

    #[test]
    fn the_market_host_reaches_only_the_markets_routes() {
        let t = RoutingTable {
            routes: vec![
                route(None, "/", "anyone"),
                route(None, "/_market/a/orders/x", "squatter"),
                route(Some(MARKET_HOST), "/_market/a/orders", "market"),
            ],
            ..RoutingTable::default()
        };
        let svc = |host: &str, path: &str| t.find(Some(host), path).map(|r| r.service.as_str());
        assert_eq!(
            svc("berth-gateway:7480", "/_market/a/orders/x/y"),
            Some("market")
        );
        assert_eq!(
            svc("Berth-Gateway", "/elsewhere"),
            None,
            "no fallback to host-less routes"
        );
        assert_eq!(
            svc("shop.example", "/_market/a/orders/x/y"),
            Some("squatter")
        );
    }

    #[test]
    fn prefix_boundaries() {
        for (prefix, path, want) in [
            ("/api", "/api", true),
            ("/api", "/api/x", true),
            ("/api", "/apiary", false),
            ("/api/", "/api/x", true),
            ("/", "/anything", true),
            ("/api", "/ap", false),
            ("/api", "/api?x=1", true),
        ] {
            assert_eq!(prefix_matches(prefix, path), want, "{prefix} vs {path}");
        }
    }

    #[test]
    fn path_parameters_do_not_hide_a_longer_prefix() {
        for (path, want) in [
            ("/a/b", "/a/b"),
            ("/a;x=1/b;y", "/a/b"),
            ("/priv;jsessionid=1", "/priv"),
            ("/a/b?q=;x", "/a/b?q=;x"),
            ("/a;x/b?q=;x", "/a/b?q=;x"),
            (";x", "/"),
            ("/;x/priv", "/priv"),
            ("/;/priv/a", "/priv/a"),
            ("/a;x/", "/a/"),
            ("/priv/;x", "/priv/"),
        ] {
            assert_eq!(without_parameters(path), want, "{path}");
        }
        let t = RoutingTable {
            version: 1,
            routes: vec![route(None, "/", "open"), route(None, "/priv", "priv")],
            ports: vec![],
            issuers: vec![],
        };
        for path in [
            "/priv;x",
            "/priv;x/a",
            "/priv;x=1;y=2/a?z=;",
            "/;x/priv/a",
            "/;/priv",
        ] {
            assert_eq!(t.find(None, path).unwrap().service, "priv", "{path}");
        }
        assert_eq!(t.find(None, "/private;x").unwrap().service, "open");
    }

    #[test]
    fn longest_prefix_and_host_win() {
        let t = RoutingTable {
            version: 1,
            routes: vec![
                route(None, "/", "root"),
                route(None, "/api", "api"),
                route(None, "/api/v2", "v2"),
                route(Some("shop.example"), "/", "shop"),
            ],
            ports: vec![],
            issuers: vec![],
        };
        assert_eq!(t.find(None, "/api/v2/x").unwrap().service, "v2");
        assert_eq!(t.find(None, "/api/v3").unwrap().service, "api");
        assert_eq!(t.find(None, "/apiary").unwrap().service, "root");
        assert_eq!(
            t.find(Some("shop.example:8080"), "/api").unwrap().service,
            "shop"
        );
        assert_eq!(t.find(Some("other"), "/x").unwrap().service, "root");
        assert_eq!(t.find(Some("shop.example."), "/x").unwrap().service, "shop");
    }

    #[test]
    fn an_environment_host_prefix_ranks_between_an_exact_host_and_none() {
        let t = RoutingTable {
            version: 1,
            routes: vec![
                route(None, "/api", "dev-api"),
                route(Some("staging.*"), "/", "staging"),
                route(Some("staging.shop.example"), "/", "staging-shop"),
            ],
            ports: vec![],
            issuers: vec![],
        };
        assert_eq!(
            t.find(Some("staging.x:80"), "/api").unwrap().service,
            "staging"
        );
        assert_eq!(t.find(Some("STAGING.x"), "/").unwrap().service, "staging");
        assert_eq!(
            t.find(Some("staging.shop.example"), "/api")
                .unwrap()
                .service,
            "staging-shop"
        );
        assert_eq!(
            t.find(Some("x.staging.y"), "/api").unwrap().service,
            "dev-api"
        );
        assert!(t.find(Some("staging."), "/").is_none());
        assert!(t.find(None, "/").is_none());
    }
}
