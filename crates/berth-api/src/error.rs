//! The API's one error type and the one place errors become HTTP answers.

use axum::body::Body;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
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

/// Complete an error answer with the request id (called by the request middleware).
pub(crate) async fn finish(resp: &mut Response, request_id: &str) {
    if let Some(Pending(mut body)) = resp.extensions_mut().remove::<Pending>() {
        body.request_id = request_id.to_string();
        let json = serde_json::to_vec(&body).unwrap_or_default();
        resp.headers_mut().remove(http::header::CONTENT_LENGTH);
        *resp.body_mut() = Body::from(json);
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
        ApiError::new(ErrorCode::InvalidJson, r.body_text())
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
