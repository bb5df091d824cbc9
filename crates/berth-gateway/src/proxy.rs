//! The request path: route, pick an endpoint, send on a pooled connection, relay the answer.
//!
//! Phases, in order: request id → route (`no_route` 404) → endpoints (`no_healthy_upstream`
//! 503) → rewrite (strip prefix, forwarding headers, hop-by-hop removal) → attempts under the
//! request timeout (`upstream_timeout` 504) → relay (`upstream_error` 502 if sending failed).
//! Later policy layers (auth, limits, breakers; STYLE.md habit 6) slot in between routing and
//! the attempts.
//!
//! Rules this module keeps:
//! * The snapshot guard is released before the first await; the request holds only the route's
//!   endpoint list (one reference count).
//! * Balancing is round robin per route; on a connect failure the next endpoint in the ring is
//!   tried, each at most once. An endpoint that left the table after the request read it is
//!   skipped (see `pool` for why that keeps in-flight counts exact).
//! * A request is retried only when it provably was not sent (connect failed or timed out, or a
//!   pooled connection handed the request back unsent), which is safe for every method — so
//!   request bodies are streamed and never buffered. After the request was written, any failure
//!   is final: 502.
//! * A stale pooled connection is not an endpoint failure: the next pooled (or a new)
//!   connection to the same endpoint is tried.

use crate::body::{Lease, ProxyBody};
use crate::error::error_response;
use crate::headers::{self, X_REQUEST_ID};
use crate::pool::{self, EndpointState, InFlight, Sender};
use crate::Inner;
use berth_core::ErrorCode;
use http::header::{HeaderValue, HOST};
use http::uri::PathAndQuery;
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

/// Why no response came back from any endpoint.
enum Failure {
    /// No endpoint accepted a connection; the request was never sent.
    NoConnection,
    /// The request was (at least partly) sent and then the exchange failed.
    Sent(hyper::Error),
}

/// Proxy one client request.
///
/// # Errors
///
/// Never: every failure becomes an error answer.
pub(crate) async fn handle(
    inner: Arc<Inner>,
    client: SocketAddr,
    mut req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let request_id = headers::request_id(req.headers());

    // The original host: the Host header, or the authority of an absolute / HTTP/2 URI.
    let host: Option<HeaderValue> = match req.headers().get(HOST) {
        Some(h) => Some(h.clone()),
        None => req
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
    };

    let (endpoints, start) = {
        let snapshot = inner.snapshot.load();
        let host_str = host.as_ref().and_then(|h| h.to_str().ok());
        let Some((route, state)) = snapshot.find(host_str, req.uri().path()) else {
            return Ok(error_response(
                ErrorCode::NoRoute,
                "no route matches this host and path",
                &request_id,
            ));
        };
        if state.endpoints.is_empty() {
            return Ok(error_response(
                ErrorCode::NoHealthyUpstream,
                "no healthy replica serves this route",
                &request_id,
            ));
        }
        if let Err(message) = rewrite(&mut req, route, client, host.as_ref(), &request_id) {
            return Ok(error_response(ErrorCode::BadRequest, message, &request_id));
        }
        (state.endpoints.clone(), state.next_start())
    };

    let attempt = attempt_all(&inner, &endpoints, start, req);
    let (mut response, lease) =
        match tokio::time::timeout(inner.config.request_timeout, attempt).await {
            Ok(Ok(ok)) => ok,
            Ok(Err(Failure::NoConnection)) => {
                return Ok(error_response(
                    ErrorCode::UpstreamError,
                    "no replica accepted the connection",
                    &request_id,
                ));
            }
            Ok(Err(Failure::Sent(e))) => {
                tracing::debug!(error = %e, "gateway: upstream failed after the request was sent");
                return Ok(error_response(
                    ErrorCode::UpstreamError,
                    "the replica failed to answer",
                    &request_id,
                ));
            }
            Err(_) => {
                return Ok(error_response(
                    ErrorCode::UpstreamTimeout,
                    "the replica did not answer in time",
                    &request_id,
                ));
            }
        };
    headers::remove_hop_by_hop(response.headers_mut());
    response.headers_mut().insert(X_REQUEST_ID, request_id);
    Ok(response.map(|body| ProxyBody::upstream(body, lease)))
}

/// Turn the client request into the upstream request, in place.
fn rewrite(
    req: &mut Request<Incoming>,
    route: &berth_core::HttpRoute,
    client: SocketAddr,
    host: Option<&HeaderValue>,
    request_id: &HeaderValue,
) -> Result<(), &'static str> {
    let uri = req.uri();
    let new_path = if route.strip_prefix {
        headers::strip_prefix(&route.path_prefix, uri.path(), uri.query())
    } else {
        None
    };
    match new_path {
        Some(path) => {
            let pq = PathAndQuery::try_from(path).map_err(|_| "the request path is malformed")?;
            *req.uri_mut() = Uri::from(pq);
        }
        None if uri.scheme().is_some() || uri.authority().is_some() => {
            // Absolute-form or HTTP/2: send origin-form upstream.
            let pq = uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/"));
            *req.uri_mut() = Uri::from(pq);
        }
        None => {}
    }
    *req.version_mut() = Version::HTTP_11;
    let headers = req.headers_mut();
    headers::remove_hop_by_hop(headers);
    if !headers.contains_key(HOST) {
        if let Some(h) = host {
            headers.insert(HOST, h.clone());
        }
    }
    headers::set_forwarded(headers, client.ip(), host);
    headers.insert(X_REQUEST_ID, request_id.clone());
    Ok(())
}

/// Try the endpoints in ring order from `start` until one answers with response headers.
async fn attempt_all(
    inner: &Inner,
    endpoints: &[Arc<EndpointState>],
    start: usize,
    mut req: Request<Incoming>,
) -> Result<(Response<Incoming>, Lease), Failure> {
    let n = endpoints.len();
    let config = &inner.config;
    for k in 0..n {
        let endpoint = &endpoints[(start + k) % n];
        let Some(guard) = endpoint.try_acquire() else {
            // Left the table since this request read it.
            continue;
        };
        loop {
            let (mut sender, pooled) = match endpoint.checkout(config.pool_idle_timeout) {
                Some(s) => (s, true),
                None => match pool::connect(endpoint.addr, config.connect_timeout).await {
                    Ok(s) => (s, false),
                    Err(e) => {
                        tracing::debug!(endpoint = %endpoint.id, addr = %endpoint.addr, error = %e, "gateway: trying the next replica");
                        break;
                    }
                },
            };
            if sender.ready().await.is_err() {
                if pooled {
                    continue;
                }
                break;
            }
            match sender.try_send_request(req).await {
                Ok(response) => {
                    return Ok((response, lease(guard, sender, config.max_idle_per_endpoint)))
                }
                Err(mut e) => match e.take_message() {
                    // Handed back unsent: safe to retry for any method.
                    Some(unsent) => {
                        req = unsent;
                        if pooled {
                            continue;
                        }
                        break;
                    }
                    None => return Err(Failure::Sent(e.into_error())),
                },
            }
        }
        drop(guard);
    }
    Err(Failure::NoConnection)
}

fn lease(guard: InFlight, sender: Sender, max_idle: usize) -> Lease {
    Lease {
        guard,
        sender,
        max_idle,
    }
}
