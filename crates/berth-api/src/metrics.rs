//! `/metrics` on a listener of its own (`--metrics-listen`): the gateway's Prometheus metrics
//! without authentication, for a scraper on a private network. Nothing else is served there, so
//! the address exposes no API call.

use crate::error::ApiError;
use crate::MetricsFn;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use berth_core::ErrorCode;

/// The content type of `/metrics`: Prometheus text format 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// The Prometheus answer for `text`.
pub(crate) fn answer(text: String) -> Response {
    ([(http::header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}

/// A router serving only `GET /metrics` (anything else: `404 not_found` / `405
/// method_not_allowed` in the API's error shape, with a request id).
pub fn router(metrics: MetricsFn) -> Router {
    Router::new()
        .route("/metrics", get(move || async move { answer(metrics()) }))
        .fallback(|| async {
            ApiError::new(ErrorCode::NotFound, "only GET /metrics is served here")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                ErrorCode::MethodNotAllowed,
                "only GET /metrics is served here",
            )
        })
        .layer(axum::middleware::from_fn(request_id))
}

/// Every answer carries a fresh `X-Request-Id`, also in error bodies (as on the API).
async fn request_id(req: Request, next: Next) -> Response {
    let id = crate::new_request_id();
    let mut resp = next.run(req).await;
    crate::error::finish(&mut resp, &id).await;
    if let Ok(v) = http::HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// Serve [`router`] on `listener` until `shutdown` completes.
///
/// # Errors
/// The listener fails in a way axum does not retry.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: MetricsFn,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(metrics))
        .with_graceful_shutdown(shutdown)
        .await
}
