//! The answers the gateway makes itself, in Berth's one error shape.
//!
//! Rules this module keeps: status and `code` come from `berth_core::ErrorCode` only; the body is
//! `{"code","message","request_id"}` with `content-type: application/json`; the message is for
//! humans and never carries internal detail (addresses, OS errors go to the log); every answer
//! carries the request's `X-Request-Id`.

use crate::body::ProxyBody;
use crate::headers::X_REQUEST_ID;
use berth_core::ErrorCode;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};

/// An error answer for `code`.
#[must_use]
pub fn error_response(
    code: ErrorCode,
    message: &str,
    request_id: &HeaderValue,
) -> Response<ProxyBody> {
    let id = request_id.to_str().unwrap_or_default();
    let body = serde_json::to_vec(&code.body(message, id)).unwrap_or_default();
    let mut response = Response::new(ProxyBody::full(body));
    *response.status_mut() = StatusCode::from_u16(code.status()).unwrap_or(StatusCode::BAD_GATEWAY);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(X_REQUEST_ID, request_id.clone());
    response
}
