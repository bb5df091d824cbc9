//! Berth's REST API under `/api/v1`: thin handlers over [`berth_controlplane::ControlPlane`].
//!
//! Rules it keeps (docs/style.md habit 5):
//! - Handlers never touch the store; they call the control plane (log streams read Docker
//!   through the control plane's client).
//! - Every error, including bad JSON, unknown fields, bad query strings, unknown paths and
//!   methods, is answered in one place ([`error::ApiError`]) with an HTTP status and
//!   `{"code", "message", "request_id"}`; codes are documented in `docs/errors.md`.
//! - Every answer carries `X-Request-Id` (the client's if well formed, else a new one) and the
//!   same id is in every error body and log line of the request.
//! - The API controls the Docker engine and may listen on a network (`--api-listen`, optionally
//!   with TLS: [`listener`]): every call but a few public ones carries a token
//!   (`Authorization: Bearer`), checked and authorized per route ([`access`], decisions in
//!   berth-access), and every state-changing call leaves an audit row. Requests must also be
//!   ones a web page cannot forge: a `Host` it answers for, no foreign `Origin`, the endpoint's
//!   content type, a body within the endpoint's limit ([`guard`]).

pub mod access;
mod admission;
mod envs;
pub mod error;
pub mod guard;
mod handlers;
mod lifecycle;
pub mod listener;
pub mod metrics;
pub mod openapi;
pub mod team;
mod teams;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use berth_controlplane::ControlPlane;
use berth_core::ErrorCode;
use error::ApiError;

/// Renders the gateway's Prometheus metrics (the gateway lives in another crate).
pub type MetricsFn = std::sync::Arc<dyn Fn() -> String + Send + Sync>;

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    pub cp: ControlPlane,
    /// Server version, for `/health`.
    pub version: String,
    /// The gateway's metrics, served at `/metrics` (none when the gateway runs elsewhere).
    pub metrics: Option<MetricsFn>,
    /// Users, tokens, audit: who may call what.
    pub access: berth_access::Access,
}

/// The request id of the request being handled (also in the `X-Request-Id` answer header).
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// Is a client-sent request id acceptable to keep?
#[must_use]
pub fn valid_request_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// A fresh request id.
#[must_use]
pub fn new_request_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// The API router answering for `localhost`, `127.0.0.1` and `[::1]` on any port
/// ([`guard::Access::default`]); see [`router_with`].
pub fn router(state: AppState) -> Router {
    router_with(state, guard::Access::default())
}

/// The API router, answering for the hosts of `access`. Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()` so that logins and the audit log see
/// the caller's address.
pub fn router_with(state: AppState, access: guard::Access) -> Router {
    router_with_pages(state, access, Router::new())
}

/// The API router with `pages` (the dashboard, `berth-web`) mounted beside `/api/v1` on the same
/// listener. The pages get the outer middleware (request id, `Host`/`Origin` guard, error shape,
/// log line) but not the API's token authentication or body rules: they authenticate by their
/// session cookie, which `/api/v1` never reads (docs/dashboard.md).
pub fn router_with_pages(
    state: AppState,
    access: guard::Access,
    pages: Router<AppState>,
) -> Router {
    let access = std::sync::Arc::new(access);
    // Every route comes from `openapi::routes`, so what is routed is what is documented.
    let (routes, _doc) = openapi::routes().split_for_parts();
    routes
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such API path") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                ErrorCode::MethodNotAllowed,
                "method not allowed on this path",
            )
        })
        // Each route's content types and body limit (guard::rule); no blanket limit besides.
        .route_layer(axum::middleware::from_fn(guard::body_rules))
        // Authentication and authorization run before the body rules (and audit after all).
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::authenticate,
        ))
        // After the route layers: the pages are not API routes (a route added later does not
        // get them).
        .merge(pages)
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn(
            move |req: Request, next: Next| {
                let access = access.clone();
                async move { request_context(&access, req, next).await }
            },
        ))
        .with_state(state)
}

/// Outermost middleware: request id, host and origin checks, error bodies completed with the id
/// (and put in shape), one log line per request. (Who the caller is: [`access::authenticate`].)
async fn request_context(access: &guard::Access, mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| valid_request_id(v))
        .map_or_else(new_request_id, str::to_string);
    req.extensions_mut().insert(RequestId(id.clone()));
    let method = req.method().clone();
    // At most 256 characters of the path in the log (an over-long URI is refused, not logged).
    let path: String = req.uri().path().chars().take(256).collect();
    let started = std::time::Instant::now();
    // The API may listen on a network (`--api-listen 0.0.0.0:7400`): who the caller is comes
    // from its token (authentication, after these checks), not from its address.
    let mut resp = match guard::check_caller(access, &req) {
        Ok(()) => next.run(req).await,
        Err(e) => {
            tracing::warn!(request_id = %id, %method, path, code = %e.code, message = e.message, "api request refused");
            e.into_response()
        }
    };
    error::finish(&mut resp, &id).await;
    if let Ok(v) = http::HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    let status = resp.status().as_u16();
    let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    // Reads are frequent (the CLI polls while it waits): log them at debug level.
    if method == http::Method::GET && status < 500 {
        tracing::debug!(request_id = %id, %method, path, status, ms, "api");
    } else {
        tracing::info!(request_id = %id, %method, path, status, ms, "api");
    }
    resp
}
