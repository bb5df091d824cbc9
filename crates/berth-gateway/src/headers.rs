//! Header rules of the proxy: hop-by-hop removal, `X-Forwarded-*`, `X-Request-Id`, and the
//! path rewrite for `strip_prefix`.
//!
//! Rules this module keeps:
//! * Hop-by-hop headers (RFC 9110 §7.6.1: `Connection` and every header it names, `Keep-Alive`,
//!   `Proxy-Connection`, `Proxy-Authenticate`, `Proxy-Authorization`, `TE`, `Trailer`,
//!   `Transfer-Encoding`, `Upgrade`) never cross the gateway in either direction; hyper frames
//!   each side's body itself. Two exceptions are put back by `proxy`: `TE: trailers` on a
//!   request forwarded over HTTP/2 (gRPC), and `Connection: upgrade` + `Upgrade` on a WebSocket
//!   upgrade.
//! * The original `Host` goes upstream unchanged (over HTTP/2 as `:authority`);
//!   `X-Forwarded-Host` repeats it, `X-Forwarded-Proto` says `http` or `https` (TLS listener),
//!   and the client's IP is appended to `X-Forwarded-For`.
//! * A client's `X-Request-Id` is kept when it is 1–128 characters of `[A-Za-z0-9._-]`;
//!   otherwise the gateway makes one (16 random bytes as hex).
//! * No allocation where the common request needs none.

use http::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE,
    TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use std::fmt::Write as _;
use std::net::IpAddr;

/// `X-Request-Id`.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `X-Forwarded-For`.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`.
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Remove hop-by-hop headers, including those named by `Connection`.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(CONNECTION) {
        let mut named: Vec<HeaderName> = Vec::new();
        for value in headers.get_all(CONNECTION) {
            let Ok(value) = value.to_str() else { continue };
            for token in value.split(',') {
                let token = token.trim();
                if token.is_empty()
                    || token.eq_ignore_ascii_case("close")
                    || token.eq_ignore_ascii_case("keep-alive")
                {
                    continue;
                }
                if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                    named.push(name);
                }
            }
        }
        for name in named {
            headers.remove(name);
        }
        headers.remove(CONNECTION);
    }
    for name in [
        KEEP_ALIVE,
        PROXY_CONNECTION,
        PROXY_AUTHENTICATE,
        PROXY_AUTHORIZATION,
        TE,
        TRAILER,
        TRANSFER_ENCODING,
        UPGRADE,
    ] {
        headers.remove(name);
    }
}

/// Is `value` an acceptable client-supplied request id?
#[must_use]
pub fn valid_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    (1..=128).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A fresh request id: 16 random bytes as 32 lowercase hex characters.
#[must_use]
pub fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n: u128 = rand::random();
    let mut buf = [0u8; 32];
    for (i, b) in buf.iter_mut().enumerate() {
        let shift = 124 - 4 * i;
        *b = HEX[((n >> shift) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&buf).expect("hex is a valid header value")
}

/// The request's id: the client's if well formed, else a new one.
#[must_use]
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    match headers.get(X_REQUEST_ID) {
        Some(v) if valid_request_id(v) => v.clone(),
        _ => new_request_id(),
    }
}

/// Set the forwarding headers on a request going upstream. `secure`: the client came over TLS
/// (`X-Forwarded-Proto: https`).
pub fn set_forwarded(
    headers: &mut HeaderMap,
    client: IpAddr,
    host: Option<&HeaderValue>,
    secure: bool,
) {
    let client = client.to_canonical();
    if !headers.contains_key(&X_FORWARDED_FOR) {
        if let Some(v) = client_value(client) {
            headers.insert(X_FORWARDED_FOR, v);
        }
    } else {
        append_forwarded_for(headers, client);
    }
    let proto = if secure { "https" } else { "http" };
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    match host {
        Some(h) => {
            headers.insert(X_FORWARDED_HOST, h.clone());
        }
        None => {
            headers.remove(X_FORWARDED_HOST);
        }
    }
}

/// `client` as a header value. The last one made on this thread is kept: the requests of one
/// connection (and often of many) come from the same address, so most requests only clone it.
pub(crate) fn client_value(client: IpAddr) -> Option<HeaderValue> {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(IpAddr, HeaderValue)>> =
            const { std::cell::RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if let Some((ip, value)) = last.as_ref() {
            if *ip == client {
                return Some(value.clone());
            }
        }
        let value = HeaderValue::from_str(&client.to_string()).ok()?;
        *last = Some((client, value.clone()));
        Some(value)
    })
}

/// Append `client` to the `X-Forwarded-For` the request came with.
fn append_forwarded_for(headers: &mut HeaderMap, client: IpAddr) {
    let mut xff = String::new();
    for value in headers.get_all(&X_FORWARDED_FOR) {
        if let Ok(v) = value.to_str() {
            let v = v.trim();
            if !v.is_empty() {
                xff.push_str(v);
                xff.push_str(", ");
            }
        }
    }
    let _ = write!(xff, "{client}");
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert(X_FORWARDED_FOR, v);
    }
}

/// The path and query to send upstream for `route` (`None`: the request's own): its prefix
/// replaced by `upstream_prefix`, or stripped with `strip_prefix`.
#[must_use]
pub fn upstream_path(
    route: &berth_core::HttpRoute,
    path: &str,
    query: Option<&str>,
) -> Option<String> {
    match &route.upstream_prefix {
        Some(to) => {
            let rest = strip_prefix(&route.path_prefix, path, query)?;
            let to = to.trim_end_matches('/');
            if to.is_empty() {
                return Some(rest);
            }
            // `rest` is `/x...` or `/?q`: a bare `/` after the prefix is the prefix itself.
            Some(match rest.strip_prefix('/') {
                Some(r) if r.is_empty() || r.starts_with('?') => format!("{to}{r}"),
                _ => format!("{to}{rest}"),
            })
        }
        None if route.strip_prefix => strip_prefix(&route.path_prefix, path, query),
        None => None,
    }
}

/// The path and query to send upstream when the route strips `prefix` from `path`:
/// `/api/x?q` → `/x?q`, `/api` → `/`, `/api?q` → `/?q`. `None` when nothing changes.
#[must_use]
pub fn strip_prefix(prefix: &str, path: &str, query: Option<&str>) -> Option<String> {
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        return None;
    }
    let rest = path.strip_prefix(prefix)?;
    let mut out = String::with_capacity(rest.len() + 2 + query.map_or(0, str::len));
    if !rest.starts_with('/') {
        out.push('/');
    }
    out.push_str(rest);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_prefixes() {
        let mut route = berth_core::HttpRoute {
            app: "a".into(),
            service: "s".into(),
            host: Some("berth-gateway".into()),
            path_prefix: "/_market/a/orders".into(),
            strip_prefix: true,
            endpoints: vec![],
            policy: berth_core::policy::RoutePolicy::default(),
            protocol: berth_core::UpstreamProtocol::Http1,
            upstream_prefix: Some("/orders".into()),
            probe: None,
        };
        for (path, query, want) in [
            ("/_market/a/orders/x", Some("q=1"), "/orders/x?q=1"),
            ("/_market/a/orders", None, "/orders"),
            ("/_market/a/orders/", None, "/orders"),
            ("/_market/a/orders", Some("q"), "/orders?q"),
        ] {
            assert_eq!(
                upstream_path(&route, path, query).as_deref(),
                Some(want),
                "{path}"
            );
        }
        route.upstream_prefix = Some("/".into());
        assert_eq!(
            upstream_path(&route, "/_market/a/orders/x", None).as_deref(),
            Some("/x")
        );
        route.upstream_prefix = None;
        route.strip_prefix = false;
        assert_eq!(upstream_path(&route, "/_market/a/orders/x", None), None);
    }

    #[test]
    fn strips_prefixes() {
        for (prefix, path, query, want) in [
            ("/api", "/api/x", Some("q=1"), Some("/x?q=1")),
            ("/api", "/api", None, Some("/")),
            ("/api", "/api", Some("q"), Some("/?q")),
            ("/api/", "/api/x/y", None, Some("/x/y")),
            ("/", "/x", None, None),
        ] {
            assert_eq!(
                strip_prefix(prefix, path, query).as_deref(),
                want,
                "{prefix} {path}"
            );
        }
    }

    #[test]
    fn request_ids() {
        assert!(valid_request_id(&HeaderValue::from_static("abc-DEF_1.2")));
        assert!(!valid_request_id(&HeaderValue::from_static("")));
        assert!(!valid_request_id(&HeaderValue::from_static("a b")));
        assert!(!valid_request_id(
            &HeaderValue::from_str(&"a".repeat(129)).unwrap()
        ));
        let id = new_request_id();
        assert_eq!(id.len(), 32);
        assert!(valid_request_id(&id));
        assert_ne!(id, new_request_id());
    }

    #[test]
    fn hop_by_hop_and_connection_named() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("keep-alive, x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(TE, HeaderValue::from_static("trailers"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn forwarded_for_appends() {
        let mut h = HeaderMap::new();
        h.append(X_FORWARDED_FOR, HeaderValue::from_static("1.1.1.1"));
        h.append(X_FORWARDED_FOR, HeaderValue::from_static("2.2.2.2"));
        set_forwarded(
            &mut h,
            "10.0.0.1".parse().unwrap(),
            Some(&HeaderValue::from_static("h")),
            false,
        );
        assert_eq!(h[X_FORWARDED_FOR], "1.1.1.1, 2.2.2.2, 10.0.0.1");
        assert_eq!(h[X_FORWARDED_PROTO], "http");
        assert_eq!(h[X_FORWARDED_HOST], "h");
    }
}
