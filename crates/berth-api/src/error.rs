//! The API's one error type and the one place errors become HTTP answers.

use axum::body::Body;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::response::{IntoResponse, Response};
use berth_controlplane::CpError;
use berth_core::{ErrorBody, ErrorCode};

/// An error answer: a code (which fixes the status) and a message for humans.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
        }
    }
}

/// Marks a response as an error body whose `request_id` the middleware fills in.
#[derive(Clone)]
struct Pending(ErrorBody);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.code.body(self.message, "");
        let status = http::StatusCode::from_u16(self.code.status())
            .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, axum::Json(body.clone())).into_response();
        resp.extensions_mut().insert(Pending(body));
        resp
    }
}

/// Marks an error answer that a dashboard page rendered itself (an HTML page naming the code):
/// [`finish`] leaves its body as it is. Only `berth-web` sets it; API handlers answer
/// [`ApiError`].
#[derive(Clone, Copy, Debug)]
pub struct RenderedPage;

/// Complete an error answer with the request id (called by the request middleware). An error
/// answer that did not come from [`ApiError`] (an extractor's rejection, a body cut off at its
/// limit, anything axum or a layer answers by itself) is rewritten into the same shape here, so
/// no error leaves the API in another form.
pub(crate) async fn finish(resp: &mut Response, request_id: &str) {
    if resp.extensions().get::<RenderedPage>().is_some() {
        return;
    }
    let body = match resp.extensions_mut().remove::<Pending>() {
        Some(Pending(body)) => body,
        None if resp.status().is_client_error() || resp.status().is_server_error() => {
            let status = resp.status();
            let taken = std::mem::replace(resp.body_mut(), Body::empty());
            let text = axum::body::to_bytes(taken, 16 * 1024)
                .await
                .map(|b| String::from_utf8_lossy(&b).trim().to_string())
                .unwrap_or_default();
            let code = code_for_status(status.as_u16());
            let message = if text.is_empty() {
                status.canonical_reason().unwrap_or("error").to_string()
            } else {
                text
            };
            *resp.status_mut() = http::StatusCode::from_u16(code.status()).unwrap_or(status);
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            code.body(message, "")
        }
        None => return,
    };
    let mut body = body;
    body.request_id = request_id.to_string();
    let json = serde_json::to_vec(&body).unwrap_or_default();
    resp.headers_mut().remove(http::header::CONTENT_LENGTH);
    *resp.body_mut() = Body::from(json);
}

/// The error code an answer carries (for the audit log): its [`ApiError`]'s, or the one
/// [`finish`] will give it; none for a success.
pub(crate) fn code_of(resp: &Response) -> Option<String> {
    if let Some(Pending(body)) = resp.extensions().get::<Pending>() {
        return Some(body.code.clone());
    }
    let status = resp.status();
    (status.is_client_error() || status.is_server_error())
        .then(|| code_for_status(status.as_u16()).to_string())
}

/// The code for an error status that came without one (a rejection by axum itself).
fn code_for_status(status: u16) -> ErrorCode {
    match status {
        404 => ErrorCode::NotFound,
        405 => ErrorCode::MethodNotAllowed,
        413 => ErrorCode::PayloadTooLarge,
        414 => ErrorCode::UriTooLong,
        415 => ErrorCode::UnsupportedMediaType,
        400..=499 => ErrorCode::InvalidArgument,
        _ => ErrorCode::Internal,
    }
}

/// A body rejection's code: its status says whether the body was too large or of the wrong type;
/// anything else is the body's own fault (`fallback`).
fn body_code(status: http::StatusCode, fallback: ErrorCode) -> ErrorCode {
    match status.as_u16() {
        413 => ErrorCode::PayloadTooLarge,
        415 => ErrorCode::UnsupportedMediaType,
        _ => fallback,
    }
}

impl From<CpError> for ApiError {
    fn from(e: CpError) -> Self {
        let code = e.code();
        if e.is_internal() {
            tracing::error!(error = %e, "internal error");
            return ApiError::new(code, "internal error; see the server log");
        }
        if code == ErrorCode::DockerUnavailable {
            tracing::warn!(error = %e, "docker error");
        }
        ApiError::new(code, e.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        ApiError::new(body_code(r.status(), ErrorCode::InvalidJson), r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::new(ErrorCode::InvalidQuery, r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::new(ErrorCode::InvalidArgument, r.body_text())
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        ApiError::new(
            body_code(r.status(), ErrorCode::InvalidArgument),
            r.body_text(),
        )
    }
}
