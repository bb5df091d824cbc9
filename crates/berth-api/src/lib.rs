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
//! - The API controls the Docker engine, so until users and tokens exist it answers loopback
//!   peers only (the server also refuses to listen on a non-loopback address).

pub mod error;
mod handlers;
pub mod openapi;

use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use berth_controlplane::ControlPlane;
use berth_core::ErrorCode;
use error::ApiError;
use std::net::SocketAddr;

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

/// The API router. Serve it with `into_make_service_with_connect_info::<SocketAddr>()` so the
/// loopback check sees the peer.
pub fn router(state: AppState) -> Router {
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
        // Image archives are large; everything else is small JSON. (Build contexts are read as
        // a stream, and the control plane enforces their own limit.)
        .layer(axum::extract::DefaultBodyLimit::max(2 * 1024 * 1024 * 1024))
        .layer(axum::middleware::from_fn(request_context))
        .with_state(state)
}

/// Outermost middleware: request id, loopback check, error bodies completed with the id,
/// one log line per request.
async fn request_context(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| valid_request_id(v))
        .map_or_else(new_request_id, str::to_string);
    req.extensions_mut().insert(RequestId(id.clone()));
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let started = std::time::Instant::now();
    // Fail closed: a peer we cannot see is treated as remote.
    let mut resp = match peer {
        Some(p) if p.ip().is_loopback() => next.run(req).await,
        _ => ApiError::new(
            ErrorCode::Forbidden,
            "the Berth API answers loopback clients only until users and tokens exist",
        )
        .into_response(),
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
