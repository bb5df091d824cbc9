//! Who may call the API, and with what: the checks that keep a web page in a browser on the same
//! machine from driving the API (CSRF, DNS rebinding), and the body limit of every endpoint.
//!
//! Rules it keeps (see `docs/security.md`, "The API: who may call it", and `docs/api.md`):
//! - **Host allow-list.** The `Host` header (and an absolute request URI's authority) must name a
//!   host the API answers for: by default its listen address, `localhost`, `127.0.0.1` and
//!   `[::1]`, plus every `--api-host`; on a wildcard address (`0.0.0.0`, `[::]`) any IP address
//!   on its port instead of the listen address (an IP literal cannot be rebound). A page that
//!   rebinds its own name to 127.0.0.1 still sends its own name, and is refused (`421
//!   bad_host`). Names compare case-insensitively; a `Host` without a port matches any port, an
//!   allowed name without a port matches any port.
//! - **No foreign origins.** A request with an `Origin` header that is not the API's own
//!   (`http://`, or `https://` over TLS, + an allowed host), `Origin: null` included, or with
//!   `Sec-Fetch-Site: cross-site` / `same-site`, is refused (`403 forbidden_origin`), whatever
//!   the method.
//! - **Declared content types.** Every state-changing call (`POST`, `PUT`, `PATCH`) carries the
//!   content type its endpoint documents; `POST`s without a body carry `application/json` too, so
//!   that no cross-origin "simple request" (form posts, `text/plain` fetches) can reach them without
//!   a CORS preflight, which the API never grants (`415 unsupported_media_type`).
//! - **Body limits per endpoint.** A `Content-Length` over the endpoint's limit is refused before
//!   the body is read (`413 payload_too_large`); a body without one is cut off at the limit.
//!
//! The rules per endpoint are one table ([`rule`]), keyed by method and route template.

use crate::error::ApiError;
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use berth_core::ErrorCode;
use http::Method;
use std::net::SocketAddr;

/// Small JSON bodies (and requests without a body).
pub const JSON_LIMIT: u64 = 1024 * 1024;
/// `POST /apps/{app}/apply`: the Compose bundle (Compose files, `.env`, env files, file-based
/// secrets and configs, as text).
pub const APPLY_LIMIT: u64 = berth_core::api::MAX_APPLY_BYTES;
/// `POST /hooks/{name}`: GitHub caps webhook payloads at 25 MB.
pub const WEBHOOK_LIMIT: u64 = 25 * 1024 * 1024;
/// `PUT …/secrets/{secret}` and `…/webhook-secret`: a secret's value.
pub const SECRET_LIMIT: u64 = 64 * 1024;
/// `POST /images/restore`: an image archive, streamed to the engine as it arrives.
pub const RESTORE_LIMIT: u64 = 16 * 1024 * 1024 * 1024;
/// `POST /contexts`: a build context, streamed to disk (the control plane's own limit).
pub const CONTEXT_LIMIT: u64 = berth_core::api::MAX_BUILD_CONTEXT_BYTES;
/// The longest request URI (path and query) the API answers.
pub const MAX_URI: usize = 8 * 1024;

const JSON: &[&str] = &["application/json"];
const TAR: &[&str] = &["application/x-tar"];
const TEXT: &[&str] = &["text/plain", "application/octet-stream"];

/// What an endpoint accepts as a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Accepted content types (`None`: any, or none: reads carry no body to speak of).
    pub types: Option<&'static [&'static str]>,
    /// The largest body, in bytes.
    pub limit: u64,
    /// The handler streams the body and enforces `limit` itself (so it can answer
    /// `payload_too_large` with its own message); only `Content-Length` is checked here.
    pub streamed: bool,
}

/// The body rule of a route (`path` is the route template, e.g. `/api/v1/apps/{app}/apply`).
/// A write not named here gets the strict default: JSON, 1 MiB.
#[must_use]
pub fn rule(method: &Method, path: &str) -> Rule {
    let r = |types, limit| Rule {
        types: Some(types),
        limit,
        streamed: false,
    };
    match (method.as_str(), path) {
        ("GET" | "HEAD" | "OPTIONS", _) => Rule {
            types: None,
            limit: JSON_LIMIT,
            streamed: false,
        },
        ("POST", "/api/v1/apps/{app}/apply") => r(JSON, APPLY_LIMIT),
        ("POST", "/api/v1/contexts") => Rule {
            streamed: true,
            ..r(TAR, CONTEXT_LIMIT)
        },
        ("POST", "/api/v1/images/restore") => Rule {
            streamed: true,
            ..r(TAR, RESTORE_LIMIT)
        },
        ("POST", "/api/v1/hooks/{name}" | "/api/v1/hooks/{team}/{name}") => r(JSON, WEBHOOK_LIMIT),
        // A gateway's report: as many services as one report may carry, each at its largest.
        ("POST", "/api/v1/gateway/stats") => r(JSON, berth_core::api::MAX_REPORT_BYTES),
        // Bodiless: the JSON content type (no simple cross-origin request), and no body at all.
        ("POST", "/api/v1/admin/backup") => r(JSON, 0),
        (
            "PUT",
            "/api/v1/services/{name}/secrets/{secret}" | "/api/v1/services/{name}/webhook-secret",
        ) => r(TEXT, SECRET_LIMIT),
        // DELETE is never a "simple" cross-origin request (the browser must ask first, and the
        // API never agrees), and these carry no body: any type, or none.
        ("DELETE", _) => Rule {
            types: None,
            limit: JSON_LIMIT,
            streamed: false,
        },
        // Every other write, bodiless POSTs (`/keys/rotate`, `/builds/{id}/cancel`) included.
        _ => r(JSON, JSON_LIMIT),
    }
}

/// The hosts the API answers for (the `Host` allow-list).
#[derive(Debug, Clone)]
pub struct Access {
    hosts: Vec<(String, Option<u16>)>,
    /// Listening on a wildcard address (`0.0.0.0`, `[::]`): any IP literal on this port is
    /// allowed, since a client may reach the API by any of the machine's addresses. An IP
    /// literal cannot be rebound (DNS rebinding needs a name), so allowing them all costs
    /// nothing and survives interfaces coming and going; names other than `localhost` still
    /// need `--api-host`.
    any_ip_on: Option<u16>,
    /// Served over TLS: the API's own origin is `https://`.
    tls: bool,
}

impl Default for Access {
    /// `localhost`, `127.0.0.1` and `[::1]` on any port (a router not bound to an address).
    fn default() -> Self {
        let mut a = Access {
            hosts: Vec::new(),
            any_ip_on: None,
            tls: false,
        };
        for h in ["localhost", "127.0.0.1", "[::1]"] {
            a.hosts.push((h.into(), None));
        }
        a
    }
}

impl Access {
    /// The default for an API listening on `listen`: the listen address, `localhost`,
    /// `127.0.0.1` and `[::1]` on its port, and each of `extra` (`NAME` or `NAME:PORT`; a name
    /// without a port is allowed on any port). On a wildcard address (`0.0.0.0`, `[::]`), any
    /// IP address on its port instead of the listen address.
    ///
    /// # Errors
    /// An entry of `extra` that is not a host name, IP address or `[IPv6]`, with an optional port.
    pub fn for_listen(listen: SocketAddr, extra: &[String]) -> Result<Access, String> {
        let port = Some(listen.port());
        let any_ip_on = listen.ip().is_unspecified().then_some(listen.port());
        let mut hosts = if any_ip_on.is_some() {
            Vec::new()
        } else {
            vec![(host_of(listen), port)]
        };
        for h in ["localhost", "127.0.0.1", "[::1]"] {
            hosts.push((h.into(), port));
        }
        for e in extra {
            let e = e.trim();
            if e.is_empty() {
                continue;
            }
            let parsed = split_host(e)
                .filter(|(h, _)| valid_name(h))
                .ok_or_else(|| {
                    format!("--api-host {e:?}: expected a host name or IP address, with an optional :PORT")
                })?;
            hosts.push(parsed);
        }
        Ok(Access {
            hosts,
            any_ip_on,
            tls: false,
        })
    }

    /// The API is served over TLS: its own origin is `https://` + an allowed host.
    #[must_use]
    pub fn with_tls(mut self, tls: bool) -> Access {
        self.tls = tls;
        self
    }

    /// Is `value` (a `Host` header or URI authority) one the API answers for?
    #[must_use]
    pub fn allows(&self, value: &str) -> bool {
        split_host(value.trim()).is_some_and(|(name, port)| self.matches(&name, port))
    }

    fn matches(&self, name: &str, port: Option<u16>) -> bool {
        if let Some(on) = self.any_ip_on {
            if port.is_none_or(|p| p == on) && is_ip_literal(name) {
                return true;
            }
        }
        self.hosts.iter().any(|(h, p)| {
            h == name
                && match (p, port) {
                    (Some(a), Some(b)) => *a == b,
                    _ => true,
                }
        })
    }

    /// Is `origin` (an `Origin` header) the API's own: `http://` (`https://` when served over
    /// TLS) + an allowed host?
    #[must_use]
    pub fn own_origin(&self, origin: &str) -> bool {
        let o = origin.trim();
        let (scheme, default_port) = if self.tls {
            ("https://", 443)
        } else {
            ("http://", 80)
        };
        let Some(rest) = o
            .get(..scheme.len())
            .filter(|s| s.eq_ignore_ascii_case(scheme))
            .map(|_| &o[scheme.len()..])
        else {
            return false;
        };
        if rest.is_empty() || rest.contains(['/', '@', '?', '#']) {
            return false;
        }
        // An origin without a port is on the scheme's default port (browsers leave it out), so
        // `http://localhost` is another web server, not an API on port 7400.
        split_host(rest)
            .is_some_and(|(name, port)| self.matches(&name, Some(port.unwrap_or(default_port))))
    }
}

fn host_of(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    }
}

/// `name[:port]` → (lowercase name, port); `None` if malformed.
fn split_host(value: &str) -> Option<(String, Option<u16>)> {
    let (name, port) = if value.starts_with('[') {
        let end = value.find(']')?;
        let (name, rest) = value.split_at(end + 1);
        match rest {
            "" => (name, None),
            p => (name, Some(p.strip_prefix(':')?)),
        }
    } else {
        match value.rsplit_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (value, None),
        }
    };
    if name.is_empty() {
        return None;
    }
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok()?),
        None => None,
    };
    // A fully qualified `localhost.` is the same name.
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    Some((name, port))
}

/// `name` (lowercase, as [`split_host`] gives it) is an IPv4 address or a bracketed IPv6 one.
fn is_ip_literal(name: &str) -> bool {
    match name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        Some(inner) => inner.parse::<std::net::Ipv6Addr>().is_ok(),
        None => name.parse::<std::net::Ipv4Addr>().is_ok(),
    }
}

fn valid_name(name: &str) -> bool {
    if let Some(inner) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
}

/// Host, origin and URI checks, before routing (so they cover unknown paths too).
pub(crate) fn check_caller(access: &Access, req: &Request) -> Result<(), ApiError> {
    let uri = req.uri();
    let uri_len = uri.path_and_query().map_or(0, |p| p.as_str().len());
    if uri_len > MAX_URI {
        return Err(ApiError::new(
            ErrorCode::UriTooLong,
            format!("the request URI is {uri_len} bytes long; the API accepts at most {MAX_URI}"),
        ));
    }
    let headers = req.headers();
    let host = headers
        .get(http::header::HOST)
        .map(|v| v.to_str().unwrap_or("\u{0}"));
    match (host, uri.authority()) {
        (None, None) => {
            return Err(ApiError::new(
                ErrorCode::BadHost,
                "the request has no Host header",
            ))
        }
        (host, authority) => {
            for h in host
                .into_iter()
                .chain(authority.map(http::uri::Authority::as_str))
            {
                if !access.allows(h) {
                    return Err(ApiError::new(
                        ErrorCode::BadHost,
                        format!(
                            "the API does not answer for host {h:?} (allowed: its listen address (any IP address of the machine on 0.0.0.0 or [::]), localhost, 127.0.0.1, [::1] and --api-host names)"
                        ),
                    ));
                }
            }
        }
    }
    if let Some(origin) = headers.get(http::header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !access.own_origin(origin) {
            return Err(ApiError::new(
                ErrorCode::ForbiddenOrigin,
                format!(
                    "requests from web pages of other origins are refused (Origin: {origin:?})"
                ),
            ));
        }
    }
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("");
        if site.eq_ignore_ascii_case("cross-site") || site.eq_ignore_ascii_case("same-site") {
            return Err(ApiError::new(
                ErrorCode::ForbiddenOrigin,
                format!(
                    "requests from web pages of other origins are refused (Sec-Fetch-Site: {site})"
                ),
            ));
        }
    }
    Ok(())
}

/// Is `value` (a `Content-Type` header) one of `types` (parameters such as `charset` aside)?
fn type_is(value: &str, types: &[&str]) -> bool {
    let essence = value.split(';').next().unwrap_or("").trim();
    types.iter().any(|t| essence.eq_ignore_ascii_case(t))
}

/// Route middleware (after routing, so the route template is known): the endpoint's content
/// types and body limit.
pub(crate) async fn body_rules(req: Request, next: Next) -> Response {
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| req.uri().path().to_string(), |m| m.as_str().to_string());
    let rule = rule(req.method(), &path);
    if let Some(types) = rule.types {
        let given = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("?"));
        match given {
            Some(t) if type_is(t, types) => {}
            given => {
                return ApiError::new(
                    ErrorCode::UnsupportedMediaType,
                    format!(
                        "{} {path} needs Content-Type: {}{}",
                        req.method(),
                        types.join(" or "),
                        given.map_or_else(
                            || " (none was sent)".to_string(),
                            |g| format!(", not {g:?}")
                        ),
                    ),
                )
                .into_response();
            }
        }
    }
    let length = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(n) = length.filter(|n| *n > rule.limit) {
        return too_large(n, rule.limit).into_response();
    }
    if rule.streamed {
        return next.run(req).await;
    }
    // No (or a small) Content-Length: cut the body off at the limit while it is read.
    let limit = usize::try_from(rule.limit).unwrap_or(usize::MAX);
    let req = req.map(|b| axum::body::Body::new(http_body_util::Limited::new(b, limit)));
    next.run(req).await
}

/// `413 payload_too_large` for a body of `size` bytes (or more) over `limit`.
pub(crate) fn too_large(size: u64, limit: u64) -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!(
            "the request body ({size} bytes) is larger than this endpoint accepts ({})",
            human(limit)
        ),
    )
}

/// `limit` as `N MiB` / `N KiB` / `N bytes`.
pub(crate) fn human(limit: u64) -> String {
    if limit >= 1024 * 1024 && (limit >> 20) << 20 == limit {
        format!("{} MiB", limit / (1024 * 1024))
    } else if limit >= 1024 && (limit >> 10) << 10 == limit {
        format!("{} KiB", limit / 1024)
    } else {
        format!("{limit} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_compare_case_insensitively_with_and_without_port() {
        let a = Access::for_listen(
            "127.0.0.1:7400".parse().unwrap(),
            &["berth.internal".into(), "Proxy.Example:8443".into()],
        )
        .unwrap();
        for ok in [
            "127.0.0.1:7400",
            "127.0.0.1",
            "LOCALHOST:7400",
            "localhost",
            "localhost.:7400",
            "[::1]:7400",
            "[::1]",
            "berth.internal:1234",
            "BERTH.internal",
            "proxy.example:8443",
            "proxy.example",
        ] {
            assert!(a.allows(ok), "{ok} should be allowed");
        }
        for bad in [
            "localhost:7401",
            "evil.example",
            "evil.example:7400",
            "127.0.0.1.evil.example",
            "proxy.example:8444",
            "",
            ":7400",
            "[::1",
            "localhost:port",
            "[::2]:7400",
        ] {
            assert!(!a.allows(bad), "{bad} should be refused");
        }
        assert!(a.own_origin("http://127.0.0.1:7400"));
        assert!(a.own_origin("HTTP://localhost:7400"));
        for bad in [
            "null",
            "http://localhost",
            "http://127.0.0.1:80",
            "https://127.0.0.1:7400",
            "http://evil.example",
            "http://localhost:7400/",
            "http://user@localhost:7400",
            "http://",
            "",
        ] {
            assert!(!a.own_origin(bad), "{bad} should be foreign");
        }
        assert!(Access::for_listen("127.0.0.1:7400".parse().unwrap(), &["a b".into()]).is_err());
        assert!(
            Access::for_listen("127.0.0.1:7400".parse().unwrap(), &["x:99999".into()]).is_err()
        );
    }

    #[test]
    fn a_wildcard_listen_answers_for_any_ip_of_the_machine_and_named_hosts() {
        for listen in ["0.0.0.0:7400", "[::]:7400"] {
            let a = Access::for_listen(listen.parse().unwrap(), &["berth.lan".into()]).unwrap();
            for ok in [
                "127.0.0.1:7400",
                "172.17.0.1:7400",
                "192.0.2.2",
                "[fe80::1]:7400",
                "[::1]:7400",
                "localhost:7400",
                "berth.lan:7400",
                "berth.lan",
            ] {
                assert!(a.allows(ok), "{listen}: {ok} should be allowed");
            }
            for bad in [
                "172.17.0.1:7401",
                "evil.example:7400",
                "0.0.0.0.evil.example",
                "1.2.3.4.nip.io:7400",
                "localhost:7401",
                "[fe80::zz]:7400",
            ] {
                assert!(!a.allows(bad), "{listen}: {bad} should be refused");
            }
            assert!(a.own_origin("http://172.17.0.1:7400"));
            assert!(!a.own_origin("http://evil.example:7400"));
        }
        // A specific address keeps only its own.
        let a = Access::for_listen("192.0.2.2:7400".parse().unwrap(), &[]).unwrap();
        assert!(a.allows("192.0.2.2:7400"));
        assert!(!a.allows("172.17.0.1:7400"));
    }

    #[test]
    fn over_tls_the_own_origin_is_https() {
        let a = Access::for_listen("127.0.0.1:7400".parse().unwrap(), &[])
            .unwrap()
            .with_tls(true);
        assert!(a.own_origin("https://localhost:7400"));
        assert!(a.own_origin("HTTPS://127.0.0.1:7400"));
        assert!(!a.own_origin("http://localhost:7400"));
        assert!(!a.own_origin("https://localhost"));
        let a = Access::for_listen("127.0.0.1:443".parse().unwrap(), &[])
            .unwrap()
            .with_tls(true);
        assert!(a.own_origin("https://localhost"));
    }

    #[test]
    fn every_write_needs_a_declared_type() {
        let post = Method::POST;
        assert_eq!(rule(&post, "/api/v1/apps/{app}/apply").limit, APPLY_LIMIT);
        assert_eq!(rule(&post, "/api/v1/keys/rotate").types, Some(JSON));
        assert_eq!(rule(&post, "/api/v1/images/restore").types, Some(TAR));
        assert_eq!(rule(&post, "/api/v1/some/future/path").types, Some(JSON));
        assert_eq!(rule(&Method::PATCH, "/api/v1/x").types, Some(JSON));
        assert!(type_is("Application/JSON; charset=utf-8", JSON));
        assert!(!type_is("text/plain", JSON));
        assert!(!type_is("application/jsonx", JSON));
    }
}
