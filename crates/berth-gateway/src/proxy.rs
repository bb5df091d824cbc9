//! The request path: every policy layer in order, then balancing and the upstream exchange.
//!
//! `pipeline` is the one function that lists the layers, outermost first (docs/style.md habit 6):
//!
//! 1. **route** on the normalised path (`bad_request` 400 for a refused path, `no_route` 404),
//!    then `redirect_https` (308), the body size limit (413) and the endpoint check
//!    (`no_healthy_upstream` 503);
//! 2. **rate limit by IP** ([`crate::ratelimit`], 429);
//! 3. **authenticate** ([`crate::auth`], 401);
//! 4. **rate limit by consumer**, or the route-wide limit (429);
//! 5. **bulkhead** ([`crate::bulkhead`], `over_capacity` 503);
//! 6. **circuit breaker** ([`crate::breaker`], `circuit_open` 503);
//! 7. **timeout** (total: `upstream_timeout` 504);
//! 8. **retry** ([`crate::retry`]: budgeted, idempotent bodiless requests only);
//! 9. **balance** (round robin, skipping passively ejected endpoints but never all of them);
//! 10. **upstream** (`upstream_error` 502): pooled HTTP/1.1; on a route with `protocol: h2c`,
//!     and for gRPC from an HTTP/2 client (`content-type: application/grpc*`), the endpoint's
//!     one shared HTTP/2 (h2c) connection, whatever the client's protocol;
//!     for a WebSocket upgrade (`Connection: upgrade`, `Upgrade: websocket`, HTTP/1.1) a fresh
//!     connection, and on `101` a byte tunnel (`copy_bidirectional`) on its own task.
//!
//! Each layer is a plain call into its own module with its own error type, mapped to a fixed
//! `ErrorCode` here and nowhere else. They are not tower layers: the gateway has one request
//! type and one stack, and plain calls keep the hot path free of boxing and per-layer futures
//! (docs/design-notes.md §4). A route without policy pays for none of them: each layer is one `Option`
//! check, and counters are relaxed atomics.
//!
//! Rules this module keeps:
//! * Every inbound `X-Berth-*` header is removed before anything else (see [`crate::auth`]).
//! * The request path is normalised ([`crate::path`]) before routing, on every protocol, and
//!   the normalised path is what goes upstream; a path it refuses is a 400 `bad_request`.
//! * The request holds the snapshot (one reference count) across awaits; a swap never blocks.
//! * A request is retried for free only when it provably was not sent (connect failed or timed
//!   out, or a pooled connection handed it back unsent) — safe for every method, so request
//!   bodies are streamed and never buffered. After it was sent, a bodiless idempotent request
//!   whose exchange broke without an answer is retried once on another replica outside the
//!   budget; anything else only as the retry policy and its budget allow ([`crate::retry`]).
//! * A stale pooled connection is not an endpoint failure: the next pooled (or a new)
//!   connection to the same endpoint is tried.
//! * Trailers cross in both directions: bodies are relayed frame by frame, trailer frames
//!   included (they reach the other side when both sides speak HTTP/2).
//! * An upgrade is never retried once sent and its connection is never pooled; the tunnel holds
//!   the endpoint's in-flight guard (and the bulkhead permit) until either side closes.
//! * One access-log line per request (target `berth_gateway::access`): request id, method,
//!   host, path without query, status, upstream, ms. Never a header value or a token.
//! * On a route with a rate limit, the answer of a request that went upstream (the service's,
//!   or the gateway's 502/504 for it) carries the IETF `RateLimit-Policy` and `RateLimit`
//!   fields of what the request's limit check allowed; a 429 carries them with `r=0` and
//!   `Retry-After`. A route without a limit adds nothing.

use crate::auth::{self, AuthError};
use crate::body::{request_body_error, Conn, Lease, ProxyBody, RequestBody, RequestBodyError};
use crate::breaker::{self, Outcome};
use crate::bulkhead::BulkheadError;
use crate::error::error_response;
use crate::guard::Refusal;
use crate::headers::{self, X_REQUEST_ID};
use crate::pool::{self, EndpointState, InFlight, Sender};
use crate::ratelimit::{self, Allowed, Key, Limited, RateLimiter};
use crate::retry;
use crate::table::{RouteShared, ServiceState, Snapshot};
use crate::Inner;
use berth_core::policy::{RateKey, RoutePolicy};
use berth_core::{ErrorCode, UpstreamProtocol};
use http::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, TE, UPGRADE,
};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::{Body, Incoming};
use hyper_util::rt::TokioIo;
use std::borrow::Cow;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The access log's tracing target.
pub const ACCESS_LOG: &str = "berth_gateway::access";

const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// Why no usable response came back from the service.
pub(crate) enum Failure<E> {
    /// No endpoint accepted a connection; the request was never sent.
    NoConnection,
    /// The request was (at least partly) sent and then the exchange failed.
    Sent(E),
    /// An attempt (or all of them) ran out of time.
    Timeout,
}

/// A request-side fault found while sending: the client's, not the service's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientFault {
    /// More than the body size limit (413).
    TooLarge,
    /// Broken body framing (400).
    Malformed,
}

/// An error of an exchange after the request was (at least partly) sent.
pub(crate) trait SendFailure: std::fmt::Display {
    /// The client's fault, if it was one (never retried, not the endpoint's failure).
    fn client_fault(&self) -> Option<ClientFault>;
    /// The connection broke under the request before any answer ([`retry::broken_exchange`]).
    fn broken(&self) -> bool;
}

impl SendFailure for hyper::Error {
    fn client_fault(&self) -> Option<ClientFault> {
        request_body_error(self).map(|e| match e {
            RequestBodyError::TooLarge => ClientFault::TooLarge,
            RequestBodyError::Client(_) => ClientFault::Malformed,
        })
    }

    fn broken(&self) -> bool {
        retry::broken_exchange(self)
    }
}

/// How a request travels upstream.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// Pooled HTTP/1.1 (everything else).
    Http1,
    /// The endpoint's shared HTTP/2 (h2c) connection: every request on an `h2c` route, and
    /// gRPC from an HTTP/2 client on any route.
    Http2,
    /// A WebSocket upgrade on a fresh HTTP/1.1 connection, then a byte tunnel.
    Upgrade,
}

impl Mode {
    fn of<B>(req: &Request<B>, protocol: UpstreamProtocol) -> Mode {
        let headers = req.headers();
        if protocol == UpstreamProtocol::H2c {
            // Every request goes over the shared h2c connection, except a WebSocket upgrade
            // (found below), which has no HTTP/2 form here and is tried over HTTP/1.1.
            if req.version() != Version::HTTP_11 || !headers.contains_key(UPGRADE) {
                return Mode::Http2;
            }
        } else if req.version() == Version::HTTP_2 {
            let grpc = headers
                .get(CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
            return if grpc { Mode::Http2 } else { Mode::Http1 };
        }
        let upgrade = req.version() == Version::HTTP_11
            && headers
                .get_all(CONNECTION)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            && headers
                .get(UPGRADE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| {
                    v.split(',')
                        .any(|p| p.trim().eq_ignore_ascii_case("websocket"))
                });
        if upgrade {
            Mode::Upgrade
        } else if protocol == UpstreamProtocol::H2c {
            Mode::Http2
        } else {
            Mode::Http1
        }
    }
}

/// What the request path learnt, for metrics and the access log.
#[derive(Default)]
pub(crate) struct Done {
    /// Index of the matched route in the snapshot.
    pub(crate) route: Option<usize>,
    /// The endpoint that answered (only kept when the access log is on).
    pub(crate) upstream: Option<Box<str>>,
    /// The access log is on.
    pub(crate) log: bool,
}

/// Proxy one client request. `secure`: it came over TLS.
///
/// # Errors
///
/// Never: every failure becomes an error answer.
pub(crate) async fn handle(
    inner: Arc<Inner>,
    client: SocketAddr,
    secure: bool,
    req: Request<Incoming>,
    refused: Option<Refusal>,
) -> Result<Response<ProxyBody>, Infallible> {
    let started = Instant::now();
    let request_id = headers::request_id(req.headers());
    if let Some(refusal) = refused {
        // The guard's stand-in for a head it refused: answer, and the connection closes.
        inner.unrouted.fetch_add(1, Ordering::Relaxed);
        let response = match refusal {
            Refusal::BadRequest(message) => {
                error_response(ErrorCode::BadRequest, message, &request_id)
            }
            Refusal::TooLarge => error_response(
                ErrorCode::HeadersTooLarge,
                "the request head is too large",
                &request_id,
            ),
        };
        return Ok(closing(response));
    }
    // Only when the access log is on: copy what it needs before the request moves.
    let log = tracing::enabled!(target: ACCESS_LOG, tracing::Level::INFO).then(|| {
        (
            req.method().clone(),
            req.headers().get(HOST).cloned(),
            req.uri().path().to_owned(),
        )
    });
    let mut done = Done {
        log: log.is_some(),
        ..Done::default()
    };
    // One reference count for the whole request; a table swap never waits for it.
    let snapshot = inner.snapshot.load_full();
    let response = pipeline(
        &inner,
        &snapshot,
        client,
        secure,
        req,
        &request_id,
        &mut done,
    )
    .await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    record(&inner, &snapshot, done.route, status, elapsed);
    if let Some((method, host, path)) = log {
        let host = host.as_ref().and_then(|h| h.to_str().ok()).unwrap_or("-");
        access_log(
            request_id.to_str().unwrap_or("-"),
            method.as_str(),
            host,
            &path,
            status,
            done.upstream.as_deref(),
            elapsed,
        );
    }
    Ok(response)
}

/// What the policy layers read of a request's head, whichever way it was parsed.
pub(crate) struct Front<'a> {
    /// The original host (the `Host` header, or the authority of an absolute URI).
    pub(crate) host: Option<&'a str>,
    /// The path, without the query.
    pub(crate) path: &'a str,
    /// The path and query (`redirect_https`).
    pub(crate) path_and_query: &'a str,
    /// The declared body length.
    pub(crate) content_length: Option<u64>,
    /// The `Authorization` value.
    pub(crate) authorization: Option<&'a [u8]>,
    /// The route, when the caller already looked it up (`Some(None)`: none matches).
    pub(crate) found: Option<Option<usize>>,
}

/// A request the policy layers (1–6) let through, with what they decided.
pub(crate) struct Admitted {
    /// Index of the route in the snapshot.
    pub(crate) index: usize,
    /// What the request's one limit check allowed (`RateLimit` fields).
    pub(crate) allowed: Option<Allowed>,
    /// The verified caller, on a route with `auth`.
    pub(crate) identity: Option<Arc<auth::Identity>>,
    /// The bulkhead slot, held until the answer was relayed.
    pub(crate) permit: Option<tokio::sync::OwnedSemaphorePermit>,
    /// The circuit breaker's admission, settled with the outcome.
    pub(crate) ticket: Option<breaker::Ticket>,
}

/// Layers 1–6: route, redirect, size and endpoint checks, rate limit by IP, authentication,
/// rate limit by consumer, bulkhead, circuit breaker. `Err` is the answer to send instead.
pub(crate) async fn admit(
    inner: &Inner,
    snapshot: &Snapshot,
    client: SocketAddr,
    secure: bool,
    front: &Front<'_>,
    rid: &HeaderValue,
    done: &mut Done,
) -> Result<Admitted, Response<ProxyBody>> {
    // 1. Route.
    let found = match front.found {
        Some(found) => found,
        None => snapshot.find_index(front.host, front.path),
    };
    let Some(index) = found else {
        return Err(error_response(
            ErrorCode::NoRoute,
            "no route matches this host and path",
            rid,
        ));
    };
    done.route = Some(index);
    let (route, state) = (&snapshot.table.routes[index], &snapshot.routes[index]);
    let policy: &RoutePolicy = &route.policy;
    let service: &ServiceState = &state.shared.service;
    if policy.redirect_https && !secure {
        return Err(redirect_https(front.host, front.path_and_query, rid));
    }
    if front
        .content_length
        .is_some_and(|n| n > inner.config.max_body_bytes)
    {
        return Err(closing(error_response(
            ErrorCode::PayloadTooLarge,
            "the request body is too large",
            rid,
        )));
    }
    if state.endpoints.is_empty() {
        return Err(error_response(
            ErrorCode::NoHealthyUpstream,
            "no healthy replica serves this route",
            rid,
        ));
    }

    // 2. Rate limit by IP (a consumer limit on a route without auth counts by IP too).
    let mut allowed: Option<Allowed> = None;
    let limiter = state.shared.limiter.as_deref();
    if let Some(l) = limiter {
        let by_ip = match l.config.key {
            RateKey::Ip => true,
            RateKey::Consumer => policy.auth.is_none(),
            RateKey::Route => false,
        };
        if by_ip {
            match l.check(Key::Ip(client.ip())) {
                Ok(a) => allowed = Some(a),
                Err(limited) => return Err(rate_limited(l, &limited, &state.shared, rid)),
            }
        }
    }

    // 3. Authenticate.
    let mut identity: Option<Arc<auth::Identity>> = None;
    if let Some(auth_policy) = &policy.auth {
        match auth::verify(
            inner.config.verifier.as_deref(),
            auth_policy,
            &snapshot.table.issuers,
            front.authorization,
            auth::Scope {
                generation: snapshot.generation,
                route: index,
            },
        ) {
            Ok(verified) => {
                // `auth: subscribers`: a valid token of an application that does not
                // subscribe (any more) is refused, in the table this request was routed by.
                if !auth_policy.admits(verified.subject()) {
                    state
                        .shared
                        .metrics
                        .unauthorized
                        .fetch_add(1, Ordering::Relaxed);
                    return Err(error_response(
                        ErrorCode::NotSubscribed,
                        "this application does not subscribe to the service",
                        rid,
                    ));
                }
                identity = Some(verified);
            }
            Err(e) => return Err(unauthorized(e, &state.shared, rid)),
        }
    }

    // 4. A subscriber's plan (`auth: subscribers` with `plans`), then the consumer or
    // route-wide limit.
    if let Some(id) = &identity {
        if let Some(plan) = state.shared.plan_of(id.subject()) {
            if let Err(limited) = plan.check(Key::Subject(id.subject())) {
                return Err(rate_limited(plan, &limited, &state.shared, rid));
            }
        }
    }
    if let Some(l) = limiter {
        let key = match (l.config.key, &identity) {
            (RateKey::Consumer, Some(id)) => Some(Key::Subject(id.subject())),
            (RateKey::Route, _) => Some(Key::Ip(client.ip())),
            _ => None,
        };
        if let Some(key) = key {
            match l.check(key) {
                Ok(a) => allowed = Some(a),
                Err(limited) => return Err(rate_limited(l, &limited, &state.shared, rid)),
            }
        }
    }

    // 5. Bulkhead.
    let permit = match &service.bulkhead {
        None => None,
        Some(b) => match b.acquire().await {
            Ok(p) => Some(p),
            Err(e) => {
                service
                    .metrics
                    .bulkhead_rejected
                    .fetch_add(1, Ordering::Relaxed);
                let message = match e {
                    BulkheadError::Full => "the service is at its concurrency limit",
                    BulkheadError::QueueTimeout => {
                        "the service stayed at its concurrency limit too long"
                    }
                };
                return Err(error_response(ErrorCode::OverCapacity, message, rid));
            }
        },
    };

    // 6. Circuit breaker.
    let ticket = match &service.breaker {
        None => None,
        Some(b) => match b.admit() {
            Ok(t) => Some(t),
            Err(breaker::BreakerOpen) => {
                service
                    .metrics
                    .breaker_rejected
                    .fetch_add(1, Ordering::Relaxed);
                return Err(error_response(
                    ErrorCode::CircuitOpen,
                    "the service is failing; its circuit breaker is open",
                    rid,
                ));
            }
        },
    };
    Ok(Admitted {
        index,
        allowed,
        identity,
        permit,
        ticket,
    })
}

/// The total time allowed until the service's answer (layer 7).
pub(crate) fn total_timeout(inner: &Inner, policy: &RoutePolicy) -> Duration {
    policy
        .timeout
        .total_ms
        .map_or(inner.config.request_timeout, Duration::from_millis)
}

/// Was the call slow by the breaker's `slow_call` rule?
pub(crate) fn slow_call(service: &ServiceState, admitted: &Admitted, called: Instant) -> bool {
    admitted.ticket.is_some()
        && service
            .breaker
            .as_ref()
            .and_then(|b| b.config.slow_call.as_ref())
            .is_some_and(|s| called.elapsed() >= Duration::from_millis(s.threshold_ms))
}

/// The answer and breaker outcome for an exchange that gave no usable response.
pub(crate) fn failure_answer<E: SendFailure>(
    failure: Failure<E>,
    rid: &HeaderValue,
) -> (Outcome, Response<ProxyBody>) {
    match failure {
        Failure::NoConnection => (
            Outcome::Failure,
            error_response(
                ErrorCode::UpstreamError,
                "no replica accepted the connection",
                rid,
            ),
        ),
        Failure::Sent(e) => match e.client_fault() {
            Some(ClientFault::TooLarge) => (
                Outcome::Abandoned,
                closing(error_response(
                    ErrorCode::PayloadTooLarge,
                    "the request body is too large",
                    rid,
                )),
            ),
            Some(ClientFault::Malformed) => (
                Outcome::Abandoned,
                closing(error_response(
                    ErrorCode::BadRequest,
                    "the request body is malformed",
                    rid,
                )),
            ),
            None => {
                tracing::debug!(error = %e, "gateway: upstream failed after the request was sent");
                (
                    Outcome::Failure,
                    error_response(
                        ErrorCode::UpstreamError,
                        "the replica failed to answer",
                        rid,
                    ),
                )
            }
        },
        Failure::Timeout => (
            Outcome::Failure,
            error_response(
                ErrorCode::UpstreamTimeout,
                "the replica did not answer in time",
                rid,
            ),
        ),
    }
}

/// Count a finished request in the route's and service's metrics (or as unrouted).
pub(crate) fn record(
    inner: &Inner,
    snapshot: &Snapshot,
    route: Option<usize>,
    status: u16,
    elapsed: Duration,
) {
    match route.and_then(|i| snapshot.routes.get(i)) {
        Some(state) => {
            let route = &state.shared;
            route.metrics.responses.count(status);
            route.metrics.latency.observe(elapsed);
            route.service.metrics.responses.count(status);
            route.service.metrics.latency.observe(elapsed);
        }
        None => {
            inner.unrouted.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The access-log line of one request (never a header value or a token).
pub(crate) fn access_log(
    request_id: &str,
    method: &str,
    host: &str,
    path: &str,
    status: u16,
    upstream: Option<&str>,
    elapsed: Duration,
) {
    tracing::info!(
        target: ACCESS_LOG,
        request_id,
        method,
        host,
        path,
        status,
        upstream = upstream.unwrap_or("-"),
        ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        "request"
    );
}

/// The policy layers, outermost first. See the module documentation.
async fn pipeline(
    inner: &Inner,
    snapshot: &Snapshot,
    client: SocketAddr,
    secure: bool,
    mut req: Request<Incoming>,
    rid: &HeaderValue,
    done: &mut Done,
) -> Response<ProxyBody> {
    auth::strip_berth_headers(req.headers_mut());
    // Room for what the gateway adds (forwarding headers, request id, identity headers), so the
    // map hyper sized for the client's headers grows once, not on several inserts.
    req.headers_mut().reserve(8);

    // One valid Host at most, on every protocol (HTTP/1 heads were checked by the framing guard
    // already; HTTP/2 requests come here unchecked): two would let the route and a backend that
    // reads the other one disagree on the virtual host.
    let mut hosts = req.headers().get_all(HOST).iter();
    if let (Some(first), second) = (hosts.next(), hosts.next()) {
        if second.is_some() || !crate::guard::valid_host(first.as_bytes()) {
            return error_response(
                ErrorCode::BadRequest,
                "the request must carry exactly one valid Host header",
                rid,
            );
        }
    }
    // The original host: the Host header, or the authority of an absolute / HTTP/2 URI.
    let host: Option<HeaderValue> = match req.headers().get(HOST) {
        Some(h) => Some(h.clone()),
        None => req
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
    };
    // Routed on and forwarded with the normalised path (crate::path), whatever the protocol;
    // an absolute-form or HTTP/2 URI keeps its scheme and authority.
    match crate::path::normalize(req.uri().path()) {
        Ok(Cow::Borrowed(_)) => {}
        Ok(Cow::Owned(path)) => {
            if normalized_uri(req.uri_mut(), &path).is_err() {
                return error_response(ErrorCode::BadRequest, "the request path is malformed", rid);
            }
        }
        Err(refused) => return error_response(ErrorCode::BadRequest, refused.message(), rid),
    }
    let front = Front {
        host: host.as_ref().and_then(|h| h.to_str().ok()),
        path: req.uri().path(),
        path_and_query: req.uri().path_and_query().map_or("/", PathAndQuery::as_str),
        content_length: content_length(req.headers()),
        authorization: req
            .headers()
            .get(http::header::AUTHORIZATION)
            .map(HeaderValue::as_bytes),
        found: None,
    };
    let mut admitted = match admit(inner, snapshot, client, secure, &front, rid, done).await {
        Ok(a) => a,
        Err(answer) => return answer,
    };
    let (route, state) = (
        &snapshot.table.routes[admitted.index],
        &snapshot.routes[admitted.index],
    );
    let policy: &RoutePolicy = &route.policy;
    let service: &ServiceState = &state.shared.service;
    let mode = Mode::of(&req, route.protocol);
    if let Err(message) = rewrite(&mut req, route, client, host.as_ref(), rid, secure, mode) {
        return error_response(ErrorCode::BadRequest, message, rid);
    }
    if let Some(identity) = admitted.identity.take() {
        for (name, value) in identity.header_values() {
            req.headers_mut().insert(name, value);
        }
    }

    // 7–10. Timeout, retry, balance, upstream.
    let called = Instant::now();
    let client_upgrade = (mode == Mode::Upgrade).then(|| hyper::upgrade::on(&mut req));
    let req = req.map(|body| RequestBody::new(body, inner.config.max_body_bytes));
    let total = total_timeout(inner, policy);
    let exchange = async {
        match client_upgrade {
            Some(on_client) => {
                upgrade(
                    inner,
                    policy,
                    state.endpoints.as_ref(),
                    state.next_start(),
                    service,
                    req,
                    on_client,
                )
                .await
            }
            None => attempts(
                &Hyper { mode },
                inner,
                policy,
                state.endpoints.as_ref(),
                state.next_start(),
                service,
                req,
            )
            .await
            .map(|(response, lease)| Upstream::Relay(response, lease)),
        }
    };
    // Pinned in place: the timer then holds a pointer, not a copy of the large future.
    let exchange = std::pin::pin!(exchange);
    let result = match tokio::time::timeout(total, exchange).await {
        Ok(r) => r,
        Err(_) => Err(Failure::Timeout),
    };

    let (outcome, mut response) = match result {
        Ok(Upstream::Tunnel(response, mut tunnel)) => {
            if done.log {
                done.upstream = Some(tunnel.guard.endpoint().id.clone());
            }
            // The service counts as busy for as long as the tunnel is open.
            tunnel.permit = admitted.permit.take();
            tokio::spawn(tunnel.run());
            (
                Outcome::Success { slow: false },
                switching_protocols(response.headers(), rid),
            )
        }
        Ok(Upstream::Relay(mut response, lease)) => {
            let failed = retry::failure_status(response.status().as_u16());
            let slow = slow_call(service, &admitted, called);
            if done.log {
                done.upstream = Some(lease.guard.endpoint().id.clone());
            }
            headers::remove_hop_by_hop(response.headers_mut());
            response.headers_mut().insert(X_REQUEST_ID, rid.clone());
            let mut response = response.map(|body| ProxyBody::upstream(body, lease));
            if let Some(permit) = admitted.permit.take() {
                response.body_mut().hold(permit);
            }
            let outcome = if failed {
                Outcome::Failure
            } else {
                Outcome::Success { slow }
            };
            (outcome, response)
        }
        Err(failure) => failure_answer(failure, rid),
    };
    if let Some(ticket) = admitted.ticket.take() {
        ticket.finish(outcome);
    }
    if let (Some(l), Some(a)) = (state.shared.limiter.as_deref(), &admitted.allowed) {
        rate_limit_fields(l, a, response.headers_mut());
    }
    response
}

/// Put `path` (normalised) in place of the URI's path, keeping the rest of the URI.
fn normalized_uri(uri: &mut Uri, path: &str) -> Result<(), http::Error> {
    let pq = match uri.query() {
        Some(q) => PathAndQuery::try_from(format!("{path}?{q}"))?,
        None => PathAndQuery::try_from(path)?,
    };
    let mut parts = std::mem::take(uri).into_parts();
    parts.path_and_query = Some(pq);
    *uri = Uri::from_parts(parts)?;
    Ok(())
}

/// The declared body length, if any and well formed.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Ask hyper to close the client connection after this answer (the request body may be
/// unread or its framing broken).
pub(crate) fn closing(mut response: Response<ProxyBody>) -> Response<ProxyBody> {
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

/// 429 with `Retry-After` and the IETF rate-limit fields.
fn rate_limited(
    limiter: &RateLimiter,
    limited: &Limited,
    route: &RouteShared,
    rid: &HeaderValue,
) -> Response<ProxyBody> {
    route.metrics.rate_limited.fetch_add(1, Ordering::Relaxed);
    let mut response = error_response(ErrorCode::RateLimited, "rate limit exceeded", rid);
    let h = response.headers_mut();
    h.insert(
        http::header::RETRY_AFTER,
        HeaderValue::from(ratelimit::ceil_secs(limited.retry_after)),
    );
    h.insert(RATELIMIT_POLICY, limiter.policy_value());
    if let Ok(v) = HeaderValue::from_str(&limiter.limited_header(limited)) {
        h.insert(RATELIMIT, v);
    }
    response
}

/// The IETF rate-limit fields of an allowed request (route with a limit only). Appended, so a
/// service's own `RateLimit` policies reach the client next to the gateway's.
pub(crate) fn rate_limit_fields(limiter: &RateLimiter, allowed: &Allowed, h: &mut HeaderMap) {
    h.append(RATELIMIT_POLICY, limiter.policy_value());
    h.append(RATELIMIT, limiter.allowed_value(allowed));
}

/// 401 with the bearer challenge.
fn unauthorized(e: AuthError, route: &RouteShared, rid: &HeaderValue) -> Response<ProxyBody> {
    route.metrics.unauthorized.fetch_add(1, Ordering::Relaxed);
    let mut response = error_response(
        ErrorCode::Unauthorized,
        "a valid bearer token is required",
        rid,
    );
    response
        .headers_mut()
        .insert(http::header::WWW_AUTHENTICATE, e.challenge());
    response
}

/// 308 to the same host and path over HTTPS (the port is dropped: HTTPS is served on 443).
fn redirect_https(host: Option<&str>, pq: &str, rid: &HeaderValue) -> Response<ProxyBody> {
    let host = host.map(|h| {
        if h.starts_with('[') {
            h.split_inclusive(']').next().unwrap_or(h)
        } else {
            h.split(':').next().unwrap_or(h)
        }
    });
    let valid = |h: &str| {
        !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':'))
    };
    let Some(host) = host.filter(|h| valid(h)) else {
        return error_response(
            ErrorCode::BadRequest,
            "a Host header is required to redirect to HTTPS",
            rid,
        );
    };
    let Ok(location) = HeaderValue::from_str(&format!("https://{host}{pq}")) else {
        return error_response(ErrorCode::BadRequest, "the request path is malformed", rid);
    };
    let mut response = Response::new(ProxyBody::full(bytes::Bytes::new()));
    *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
    let h = response.headers_mut();
    h.insert(http::header::LOCATION, location);
    h.insert(X_REQUEST_ID, rid.clone());
    response
}

/// Turn the client request into the upstream request, in place.
fn rewrite<B>(
    req: &mut Request<B>,
    route: &berth_core::HttpRoute,
    client: SocketAddr,
    host: Option<&HeaderValue>,
    request_id: &HeaderValue,
    secure: bool,
    mode: Mode,
) -> Result<(), &'static str> {
    let uri = req.uri();
    let new_path = headers::upstream_path(route, uri.path(), uri.query());
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
    // Over HTTP/2 the host travels as `:authority`, which needs an absolute URI (`:scheme`
    // is mandatory); without a usable host the endpoint's address is filled in later.
    let authority = host
        .filter(|_| mode == Mode::Http2)
        .and_then(|h| Authority::try_from(h.as_bytes()).ok());
    if let Some(authority) = authority {
        let mut parts = std::mem::take(req.uri_mut()).into_parts();
        parts.scheme = Some(Scheme::HTTP);
        parts.authority = Some(authority);
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(PathAndQuery::from_static("/"));
        }
        *req.uri_mut() = Uri::from_parts(parts).map_err(|_| "the request path is malformed")?;
    }
    *req.version_mut() = if mode == Mode::Http2 {
        Version::HTTP_2
    } else {
        Version::HTTP_11
    };
    let has_authority = req.uri().authority().is_some();
    let headers = req.headers_mut();
    let te_trailers = mode == Mode::Http2
        && headers
            .get(TE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    let upgrade = if mode == Mode::Upgrade {
        headers.get(UPGRADE).cloned()
    } else {
        None
    };
    headers::remove_hop_by_hop(headers);
    if te_trailers {
        headers.insert(TE, HeaderValue::from_static("trailers"));
    }
    if let Some(upgrade) = upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, upgrade);
    }
    if mode == Mode::Http2 {
        if has_authority {
            headers.remove(HOST);
        }
    } else if !headers.contains_key(HOST) {
        if let Some(h) = host {
            headers.insert(HOST, h.clone());
        }
    }
    headers::set_forwarded(headers, client.ip(), host, secure);
    headers.insert(X_REQUEST_ID, request_id.clone());
    Ok(())
}

/// What is needed to send a bodiless request again.
struct Template {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
}

impl Template {
    fn build(&self) -> Request<RequestBody> {
        let mut req = Request::new(RequestBody::empty());
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers.clone();
        req
    }
}

/// How one attempt on one endpoint ended.
pub(crate) enum Attempt<Q, A, E> {
    Answer(A),
    /// Not sent (connect failed); the request is handed back.
    Unsent(Q),
    Sent(E),
    TimedOut,
}

/// One way of sending a request to an endpoint: hyper's clients ([`Hyper`]) or the fast path's
/// own HTTP/1.1 exchange (`crate::h1`). [`attempts`] does the rest (retries, balancing).
pub(crate) trait Upstreams {
    /// The request as it is sent.
    type Req;
    /// The service's answer (up to its head) with what it holds.
    type Answer;
    /// Why an exchange failed after sending.
    type Error: SendFailure;
    /// What it takes to send a request again.
    type Template;
    /// The answer's status code.
    fn status(answer: &Self::Answer) -> u16;
    /// A template to send `req` again: only for idempotent requests without a body.
    fn template(&self, req: &Self::Req) -> Option<Self::Template>;
    /// The request again, from its template.
    fn rebuild(&self, template: &Self::Template) -> Self::Req;
    /// One attempt on `endpoint`, until the answer's head.
    async fn attempt(
        &self,
        inner: &Inner,
        endpoint: &EndpointState,
        guard: InFlight,
        req: Self::Req,
        connect: Duration,
    ) -> Attempt<Self::Req, Self::Answer, Self::Error>;
}

/// hyper's clients: pooled HTTP/1.1 or the endpoint's shared HTTP/2 connection.
struct Hyper {
    mode: Mode,
}

impl Upstreams for Hyper {
    type Req = Request<RequestBody>;
    type Answer = (Response<Incoming>, Lease);
    type Error = hyper::Error;
    type Template = Template;

    fn status(answer: &Self::Answer) -> u16 {
        answer.0.status().as_u16()
    }

    fn template(&self, req: &Self::Req) -> Option<Template> {
        (retry::idempotent(req.method()) && req.body().is_end_stream()).then(|| Template {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            headers: req.headers().clone(),
        })
    }

    fn rebuild(&self, template: &Template) -> Self::Req {
        template.build()
    }

    async fn attempt(
        &self,
        inner: &Inner,
        endpoint: &EndpointState,
        guard: InFlight,
        req: Self::Req,
        connect: Duration,
    ) -> Attempt<Self::Req, Self::Answer, hyper::Error> {
        if self.mode == Mode::Http2 {
            attempt_h2(endpoint, guard, req, connect).await
        } else {
            attempt_one(inner, endpoint, guard, req, connect).await
        }
    }
}

/// Timeouts, retries and balancing: try endpoints in ring order from `start` until one gives a
/// usable answer or the retry policy and budget say stop.
pub(crate) async fn attempts<U: Upstreams>(
    up: &U,
    inner: &Inner,
    policy: &RoutePolicy,
    endpoints: &[Arc<EndpointState>],
    start: usize,
    service: &ServiceState,
    req: U::Req,
) -> Result<U::Answer, Failure<U::Error>> {
    let config = &inner.config;
    let connect = policy
        .timeout
        .connect_ms
        .map_or(config.connect_timeout, Duration::from_millis);
    let per_try = policy.timeout.per_try_ms.map(Duration::from_millis);
    // Retries after a send need the request again: only bodiless idempotent ones qualify.
    let budget = service.budget.as_deref();
    let template = budget.and_then(|b| {
        b.deposit();
        if b.config.attempts > 0 {
            up.template(&req)
        } else {
            None
        }
    });

    let n = endpoints.len();
    let mut req = Some(req);
    let mut k = 0usize;
    let mut passes = 0usize; // endpoints skipped or refusing since the last send
    let mut retries = 0u32;
    let mut rescued = false; // the one budget-free retry after a broken exchange is used
    loop {
        if passes >= n {
            return Err(Failure::NoConnection);
        }
        let endpoint = &endpoints[(start + k) % n];
        k += 1;
        let now = pool::clock_nanos();
        if endpoint.is_ejected(now) && !endpoints.iter().all(|e| e.is_ejected(now)) {
            passes += 1;
            continue;
        }
        let Some(guard) = endpoint.try_acquire() else {
            // Left the table since this request read it.
            passes += 1;
            continue;
        };
        let Some(this) = req.take() else {
            return Err(Failure::NoConnection);
        };
        let attempt = up.attempt(inner, endpoint, guard, this, connect);
        let attempt = std::pin::pin!(attempt);
        let result = match per_try {
            Some(t) => tokio::time::timeout(t, attempt)
                .await
                .unwrap_or(Attempt::TimedOut),
            None => attempt.await,
        };
        let failure = match result {
            Attempt::Unsent(back) => {
                req = Some(back);
                passes += 1;
                eject_on_failure(inner, endpoint, service);
                continue;
            }
            Attempt::Answer(answer) if !retry::failure_status(U::status(&answer)) => {
                endpoint.record_success();
                return Ok(answer);
            }
            Attempt::Answer(answer) => Err(answer),
            Attempt::Sent(e) => {
                if e.client_fault().is_some() {
                    // The client's fault: not the endpoint's, and not retryable.
                    return Err(Failure::Sent(e));
                }
                Ok(Failure::Sent(e))
            }
            Attempt::TimedOut => Ok(Failure::Timeout),
        };
        eject_on_failure(inner, endpoint, service);
        // The replica broke the exchange without answering (killed, crashed): one retry on
        // another replica, outside the budget (see `retry`'s module docs for why it is bounded).
        if let (false, true, Some(t), Ok(Failure::Sent(e))) = (rescued, n > 1, &template, &failure)
        {
            if e.broken() {
                rescued = true;
                service.metrics.retries.fetch_add(1, Ordering::Relaxed);
                req = Some(up.rebuild(t));
                passes = 0;
                continue;
            }
        }
        // Without a retries policy only broken exchanges are retried, not the service's answers.
        let retryable = !(service.default_retries && failure.is_err());
        if let (true, Some(t), Some(b)) = (retryable, &template, budget) {
            if retries < b.config.attempts && b.withdraw() {
                retries += 1;
                service.metrics.retries.fetch_add(1, Ordering::Relaxed);
                req = Some(up.rebuild(t));
                passes = 0;
                continue;
            }
        }
        return match failure {
            // The service's own 502/503/504: relayed as it is.
            Err(answer) => Ok(answer),
            Ok(f) => Err(f),
        };
    }
}

fn eject_on_failure(inner: &Inner, endpoint: &EndpointState, service: &ServiceState) {
    let c = &inner.config;
    if endpoint.record_failure(c.eject_after_failures, c.eject_for) {
        service.metrics.ejections.fetch_add(1, Ordering::Relaxed);
        tracing::info!(endpoint = %endpoint.id, "gateway: endpoint ejected after consecutive failures");
    }
}

/// One endpoint: a pooled (or new) connection, until response headers.
async fn attempt_one(
    inner: &Inner,
    endpoint: &EndpointState,
    guard: InFlight,
    mut req: Request<RequestBody>,
    connect_timeout: Duration,
) -> Attempt<Request<RequestBody>, (Response<Incoming>, Lease), hyper::Error> {
    let config = &inner.config;
    loop {
        let (mut sender, pooled) = match endpoint.checkout(config.pool_idle_timeout) {
            Some(s) => (s, true),
            None => match pool::connect(endpoint.addr, connect_timeout).await {
                Ok(s) => (s, false),
                Err(e) => {
                    tracing::debug!(endpoint = %endpoint.id, addr = %endpoint.addr, error = %e, "gateway: trying the next replica");
                    return Attempt::Unsent(req);
                }
            },
        };
        if sender.ready().await.is_err() {
            if pooled {
                continue;
            }
            return Attempt::Unsent(req);
        }
        match sender.try_send_request(req).await {
            Ok(response) => {
                return Attempt::Answer((
                    response,
                    lease(guard, sender, config.max_idle_per_endpoint),
                ))
            }
            Err(mut e) => match e.take_message() {
                // Handed back unsent: safe to retry for any method.
                Some(unsent) => {
                    req = unsent;
                    if pooled {
                        continue;
                    }
                    return Attempt::Unsent(req);
                }
                None => return Attempt::Sent(e.into_error()),
            },
        }
    }
}

fn lease(guard: InFlight, sender: Sender, max_idle: usize) -> Lease {
    Lease {
        guard,
        conn: Conn::Pooled(sender),
        max_idle,
    }
}

/// One endpoint over its shared HTTP/2 connection (opened, or reopened after a failure, on
/// demand), until response headers.
async fn attempt_h2(
    endpoint: &EndpointState,
    guard: InFlight,
    mut req: Request<RequestBody>,
    connect_timeout: Duration,
) -> Attempt<Request<RequestBody>, (Response<Incoming>, Lease), hyper::Error> {
    if req.uri().authority().is_none() {
        // No usable host: name the endpoint itself.
        let mut parts = std::mem::take(req.uri_mut()).into_parts();
        parts.scheme = Some(Scheme::HTTP);
        parts.authority = Authority::try_from(endpoint.addr.to_string().as_str()).ok();
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(PathAndQuery::from_static("/"));
        }
        *req.uri_mut() = Uri::from_parts(parts).unwrap_or_default();
    }
    // A shared connection found broken is forgotten and one new connection tried.
    let mut reuse = true;
    loop {
        let (mut sender, shared) = match endpoint.h2_sender().filter(|_| reuse) {
            Some(s) => (s, true),
            None => match pool::connect_h2(endpoint.addr, connect_timeout).await {
                Ok(s) => {
                    endpoint.set_h2_sender(&s);
                    (s, false)
                }
                Err(e) => {
                    tracing::debug!(endpoint = %endpoint.id, addr = %endpoint.addr, error = %e, "gateway: trying the next replica");
                    return Attempt::Unsent(req);
                }
            },
        };
        if sender.ready().await.is_err() {
            endpoint.forget_h2_sender();
            if shared {
                reuse = false;
                continue;
            }
            return Attempt::Unsent(req);
        }
        match sender.try_send_request(req).await {
            Ok(response) => {
                return Attempt::Answer((
                    response,
                    Lease {
                        guard,
                        conn: Conn::Shared { _conn: sender },
                        max_idle: 0,
                    },
                ))
            }
            Err(mut e) => match e.take_message() {
                Some(unsent) => {
                    req = unsent;
                    endpoint.forget_h2_sender();
                    if shared {
                        reuse = false;
                        continue;
                    }
                    return Attempt::Unsent(req);
                }
                None => return Attempt::Sent(e.into_error()),
            },
        }
    }
}

/// What came back from the service.
enum Upstream {
    /// An answer to relay.
    Relay(Response<Incoming>, Lease),
    /// `101 Switching Protocols`: answer the client, then run the tunnel.
    Tunnel(Response<Incoming>, Tunnel),
}

/// An upgraded connection pair, copied both ways until either side closes.
struct Tunnel {
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    /// Counts the tunnel in flight until it closes.
    guard: InFlight,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Tunnel {
    async fn run(self) {
        let Tunnel {
            client,
            upstream,
            guard,
            permit,
        } = self;
        match tokio::join!(client, upstream) {
            (Ok(client), Ok(upstream)) => {
                let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
                match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                    Ok((up, down)) => {
                        tracing::debug!(endpoint = %guard.endpoint().id, up, down, "gateway: tunnel closed");
                    }
                    Err(e) => {
                        tracing::debug!(endpoint = %guard.endpoint().id, error = %e, "gateway: tunnel ended with an error");
                    }
                }
            }
            (c, u) => {
                tracing::debug!(
                    client = c.err().map(|e| e.to_string()),
                    upstream = u.err().map(|e| e.to_string()),
                    "gateway: upgrade failed"
                );
            }
        }
        drop(permit);
        drop(guard);
    }
}

/// The `101` sent to the client: the service's headers minus hop-by-hop ones, with the upgrade
/// put back.
fn switching_protocols(upstream: &HeaderMap, rid: &HeaderValue) -> Response<ProxyBody> {
    let mut headers = upstream.clone();
    let protocol = headers.get(UPGRADE).cloned();
    headers::remove_hop_by_hop(&mut headers);
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    if let Some(p) = protocol {
        headers.insert(UPGRADE, p);
    }
    headers.insert(X_REQUEST_ID, rid.clone());
    let mut response = Response::new(ProxyBody::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *response.headers_mut() = headers;
    response
}

/// A WebSocket upgrade: balance, then send the request on a fresh, never pooled connection.
/// No retry after the request was sent (an upgrade is not idempotent); an endpoint refusing
/// the connection is skipped.
async fn upgrade(
    inner: &Inner,
    policy: &RoutePolicy,
    endpoints: &[Arc<EndpointState>],
    start: usize,
    service: &ServiceState,
    req: Request<RequestBody>,
    on_client: hyper::upgrade::OnUpgrade,
) -> Result<Upstream, Failure<hyper::Error>> {
    let connect = policy
        .timeout
        .connect_ms
        .map_or(inner.config.connect_timeout, Duration::from_millis);
    let n = endpoints.len();
    let now = pool::clock_nanos();
    let all_ejected = endpoints.iter().all(|e| e.is_ejected(now));
    for k in 0..n {
        let endpoint = &endpoints[(start + k) % n];
        if endpoint.is_ejected(now) && !all_ejected {
            continue;
        }
        let Some(guard) = endpoint.try_acquire() else {
            continue;
        };
        let mut sender = match pool::connect_upgradable(endpoint.addr, connect).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(endpoint = %endpoint.id, error = %e, "gateway: trying the next replica");
                eject_on_failure(inner, endpoint, service);
                continue;
            }
        };
        return match sender.send_request(req).await {
            Ok(mut response) if response.status() == StatusCode::SWITCHING_PROTOCOLS => {
                endpoint.record_success();
                let on_upstream = hyper::upgrade::on(&mut response);
                Ok(Upstream::Tunnel(
                    response,
                    Tunnel {
                        client: on_client,
                        upstream: on_upstream,
                        guard,
                        permit: None,
                    },
                ))
            }
            Ok(response) => {
                endpoint.record_success();
                Ok(Upstream::Relay(
                    response,
                    Lease {
                        guard,
                        conn: Conn::Dedicated { _conn: sender },
                        max_idle: 0,
                    },
                ))
            }
            Err(e) => {
                eject_on_failure(inner, endpoint, service);
                Err(Failure::Sent(e))
            }
        };
    }
    Err(Failure::NoConnection)
}
