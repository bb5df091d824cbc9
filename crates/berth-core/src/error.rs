//! The one error shape of every HTTP answer Berth generates (API and gateway):
//! status + `{"code": "...", "message": "...", "request_id": "..."}`.
//!
//! `code` is a stable snake_case string; every code is listed with its meaning in
//! `docs/errors.md`, and [`ErrorCode::ALL`] keeps the list and the doc in step (a test checks).

use serde::{Deserialize, Serialize};

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// Stable code to match on (docs/errors.md).
    pub code: String,
    /// For humans.
    pub message: String,
    /// The request's `X-Request-Id`. Always sent (the default is for reading bodies of servers
    /// older than the field).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub request_id: String,
}

/// Every error code Berth answers with, and its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The request body is not valid JSON, or has unknown or missing fields.
    InvalidJson,
    /// A query string parameter is missing or malformed.
    InvalidQuery,
    /// A request value is malformed (a name, a number out of range, ...).
    InvalidArgument,
    /// The Compose file or its bundle cannot be used; the message names the key or file.
    InvalidCompose,
    /// The Compose file uses keys Berth does not support; the message lists them.
    UnsupportedKey,
    /// Images named by the application are not present on the Docker engine.
    ImageMissing,
    /// A Compose service's image build failed; the message names the service and ends with
    /// the last lines of build output.
    BuildFailed,
    /// The named application does not exist.
    AppNotFound,
    /// The named service does not exist in the application.
    ServiceNotFound,
    /// The named revision does not exist.
    RevisionNotFound,
    /// A route (host + path prefix) is already held by another application.
    RouteConflict,
    /// A published host port is already held by another application.
    PortConflict,
    /// The API path does not exist.
    NotFound,
    /// The HTTP method is not allowed on this path.
    MethodNotAllowed,
    /// API: the token is valid but its user (or scopes) may not make this call.
    Forbidden,
    /// The Docker engine could not be reached or failed.
    DockerUnavailable,
    /// An unexpected internal failure; details are in the server log.
    Internal,
    /// Gateway: no route matches the request's host and path.
    NoRoute,
    /// Gateway: the route exists but no replica is healthy.
    NoHealthyUpstream,
    /// Gateway: connecting to or reading from the replica failed.
    UpstreamError,
    /// Gateway: the replica did not answer in time.
    UpstreamTimeout,
    /// Gateway: the request is malformed (bad framing, too large headers).
    BadRequest,
    /// Gateway: the request body is larger than the gateway accepts.
    PayloadTooLarge,
    /// Gateway: the request head (request line and headers) is too large or has too many
    /// headers.
    HeadersTooLarge,
    /// Gateway: the route requires a valid bearer token and none (or an invalid one) was sent.
    Unauthorized,
    /// Gateway: the route's rate limit is exhausted; retry after `Retry-After` seconds.
    RateLimited,
    /// Gateway: the service's circuit breaker is open; the service is not called.
    CircuitOpen,
    /// Gateway: the service's concurrency limit and wait queue are full.
    OverCapacity,
    /// API: the request body's `Content-Type` is not one the endpoint accepts.
    UnsupportedMediaType,
    /// API: the request comes from a web page of another origin (`Origin`, `Sec-Fetch-Site`).
    ForbiddenOrigin,
    /// Dashboard: a form was posted without the session's CSRF token (field `csrf`), or with
    /// a wrong one (docs/dashboard.md).
    CsrfFailed,
    /// API: the `Host` header names a host the API is not configured to answer for (DNS
    /// rebinding).
    BadHost,
    /// API: the request URI is longer than the server accepts.
    UriTooLong,
    /// The named build does not exist.
    BuildNotFound,
    /// Login: too many failed logins for the user or from the address; retry after
    /// `Retry-After` seconds.
    LoginLocked,
    /// The caller's password was generated and must be changed first
    /// (`POST /api/v1/users/{name}/password`).
    PasswordChangeRequired,
    /// The named user does not exist.
    UserNotFound,
    /// A user of that name exists already.
    UserExists,
    /// The named API token does not exist.
    ApiTokenNotFound,
    /// An API token of that name exists already for the owner.
    ApiTokenExists,
    /// The caller is in several teams (or none) and named none: pass `?team=` (CLI: `--team`
    /// or `berth team use`).
    TeamRequired,
    /// The named team does not exist, or the caller is not a member of it.
    TeamNotFound,
    /// A team of that name exists already.
    TeamExists,
    /// The team still holds objects (applications, services, issuers) or is `default`.
    TeamNotEmpty,
    /// The user is not a member of the team.
    MemberNotFound,
    /// The named environment does not exist in the team (docs/environments.md).
    EnvNotFound,
    /// An environment of that name exists already in the team (or it is `dev`).
    EnvExists,
    /// No host port (or port block) is free in the environment's range; the message names the
    /// service and the range (docs/environments.md#ports-as-leases).
    NoFreePort,
    /// The environment's quota (`--cpus`, `--memory`) would be exceeded; the message names the
    /// service and the numbers. Nothing was started.
    QuotaExceeded,
    /// The Compose file uses keys that need an admission grant the team does not have; the
    /// message names each by its path in the file. Nothing was created.
    AdmissionDenied,
    /// The named version of the service does not exist.
    VersionNotFound,
    /// The version's state does not allow the transition; the message names both
    /// (docs/lifecycle.md).
    InvalidTransition,
    /// A protected application may run approved, published or deprecated versions only; the
    /// message names the image and its state.
    VersionNotApproved,
    /// The object is used elsewhere (a version runs or is published); the message says where.
    InUse,
    /// The request names an image under another team's `berth/` (an `image:`, a `build:` tag,
    /// a Dockerfile `FROM`); the message names each. Nothing was built or created.
    ImageDenied,
    /// A route with `auth: subscribers` was called with a valid Berth token of an application
    /// that does not subscribe to it (docs/market.md).
    NotSubscribed,
    /// The application does not subscribe to the named market entry.
    SubscriptionNotFound,
    /// `x-berth.from_market` or `berth upgrade` names a version that is not published (or
    /// deprecated) in the market.
    VersionNotPublished,
    /// A Compose service asks for `x-berth.mqtt: true` and the server runs no MQTT broker
    /// listener (`--mqtt-listen`).
    MqttDisabled,
    /// `berth nodes` (and the Swarm runtime) needs the server's Docker engine to be a Swarm
    /// manager, and it is not (a plain engine, or a worker node); docs/swarm.md.
    NotASwarmManager,
}

impl ErrorCode {
    /// Every code, in documentation order.
    pub const ALL: &'static [ErrorCode] = &[
        Self::InvalidJson,
        Self::InvalidQuery,
        Self::InvalidArgument,
        Self::InvalidCompose,
        Self::UnsupportedKey,
        Self::ImageMissing,
        Self::BuildFailed,
        Self::AppNotFound,
        Self::ServiceNotFound,
        Self::RevisionNotFound,
        Self::RouteConflict,
        Self::PortConflict,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::Forbidden,
        Self::DockerUnavailable,
        Self::Internal,
        Self::NoRoute,
        Self::NoHealthyUpstream,
        Self::UpstreamError,
        Self::UpstreamTimeout,
        Self::BadRequest,
        Self::PayloadTooLarge,
        Self::HeadersTooLarge,
        Self::Unauthorized,
        Self::RateLimited,
        Self::CircuitOpen,
        Self::OverCapacity,
        Self::UnsupportedMediaType,
        Self::ForbiddenOrigin,
        Self::CsrfFailed,
        Self::BadHost,
        Self::UriTooLong,
        Self::BuildNotFound,
        Self::LoginLocked,
        Self::PasswordChangeRequired,
        Self::UserNotFound,
        Self::UserExists,
        Self::ApiTokenNotFound,
        Self::ApiTokenExists,
        Self::TeamRequired,
        Self::TeamNotFound,
        Self::TeamExists,
        Self::TeamNotEmpty,
        Self::MemberNotFound,
        Self::EnvNotFound,
        Self::EnvExists,
        Self::NoFreePort,
        Self::QuotaExceeded,
        Self::AdmissionDenied,
        Self::VersionNotFound,
        Self::InvalidTransition,
        Self::VersionNotApproved,
        Self::InUse,
        Self::ImageDenied,
        Self::NotSubscribed,
        Self::SubscriptionNotFound,
        Self::VersionNotPublished,
        Self::MqttDisabled,
        Self::NotASwarmManager,
    ];

    /// The stable string clients match on.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::InvalidQuery => "invalid_query",
            Self::InvalidArgument => "invalid_argument",
            Self::InvalidCompose => "invalid_compose",
            Self::UnsupportedKey => "unsupported_key",
            Self::ImageMissing => "image_missing",
            Self::BuildFailed => "build_failed",
            Self::AppNotFound => "app_not_found",
            Self::ServiceNotFound => "service_not_found",
            Self::RevisionNotFound => "revision_not_found",
            Self::RouteConflict => "route_conflict",
            Self::PortConflict => "port_conflict",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Forbidden => "forbidden",
            Self::DockerUnavailable => "docker_unavailable",
            Self::Internal => "internal",
            Self::NoRoute => "no_route",
            Self::NoHealthyUpstream => "no_healthy_upstream",
            Self::UpstreamError => "upstream_error",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::BadRequest => "bad_request",
            Self::PayloadTooLarge => "payload_too_large",
            Self::HeadersTooLarge => "headers_too_large",
            Self::Unauthorized => "unauthorized",
            Self::RateLimited => "rate_limited",
            Self::CircuitOpen => "circuit_open",
            Self::OverCapacity => "over_capacity",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::ForbiddenOrigin => "forbidden_origin",
            Self::CsrfFailed => "csrf_failed",
            Self::BadHost => "bad_host",
            Self::UriTooLong => "uri_too_long",
            Self::BuildNotFound => "build_not_found",
            Self::LoginLocked => "login_locked",
            Self::PasswordChangeRequired => "password_change_required",
            Self::UserNotFound => "user_not_found",
            Self::UserExists => "user_exists",
            Self::ApiTokenNotFound => "api_token_not_found",
            Self::ApiTokenExists => "api_token_exists",
            Self::TeamRequired => "team_required",
            Self::TeamNotFound => "team_not_found",
            Self::TeamExists => "team_exists",
            Self::TeamNotEmpty => "team_not_empty",
            Self::MemberNotFound => "member_not_found",
            Self::EnvNotFound => "env_not_found",
            Self::EnvExists => "env_exists",
            Self::NoFreePort => "no_free_port",
            Self::QuotaExceeded => "quota_exceeded",
            Self::AdmissionDenied => "admission_denied",
            Self::VersionNotFound => "version_not_found",
            Self::InvalidTransition => "invalid_transition",
            Self::VersionNotApproved => "version_not_approved",
            Self::InUse => "in_use",
            Self::ImageDenied => "image_denied",
            Self::NotSubscribed => "not_subscribed",
            Self::SubscriptionNotFound => "subscription_not_found",
            Self::VersionNotPublished => "version_not_published",
            Self::MqttDisabled => "mqtt_disabled",
            Self::NotASwarmManager => "not_a_swarm_manager",
        }
    }

    /// The HTTP status this code is answered with.
    #[must_use]
    pub fn status(self) -> u16 {
        match self {
            Self::InvalidJson
            | Self::InvalidQuery
            | Self::InvalidArgument
            | Self::BadRequest
            | Self::TeamRequired => 400,
            Self::InvalidCompose
            | Self::UnsupportedKey
            | Self::ImageMissing
            | Self::BuildFailed
            | Self::QuotaExceeded
            | Self::MqttDisabled => 422,
            Self::AppNotFound
            | Self::ServiceNotFound
            | Self::RevisionNotFound
            | Self::NotFound
            | Self::NoRoute
            | Self::BuildNotFound
            | Self::UserNotFound
            | Self::ApiTokenNotFound
            | Self::TeamNotFound
            | Self::MemberNotFound
            | Self::EnvNotFound
            | Self::VersionNotFound
            | Self::SubscriptionNotFound => 404,
            Self::RouteConflict
            | Self::PortConflict
            | Self::UserExists
            | Self::ApiTokenExists
            | Self::TeamExists
            | Self::TeamNotEmpty
            | Self::EnvExists
            | Self::NoFreePort
            | Self::InvalidTransition
            | Self::VersionNotApproved
            | Self::InUse
            | Self::VersionNotPublished
            | Self::NotASwarmManager => 409,
            Self::MethodNotAllowed => 405,
            Self::Forbidden
            | Self::ForbiddenOrigin
            | Self::CsrfFailed
            | Self::PasswordChangeRequired
            | Self::AdmissionDenied
            | Self::ImageDenied
            | Self::NotSubscribed => 403,
            Self::UnsupportedMediaType => 415,
            Self::BadHost => 421,
            Self::UriTooLong => 414,
            Self::DockerUnavailable
            | Self::NoHealthyUpstream
            | Self::CircuitOpen
            | Self::OverCapacity => 503,
            Self::PayloadTooLarge => 413,
            Self::HeadersTooLarge => 431,
            Self::Unauthorized => 401,
            Self::RateLimited | Self::LoginLocked => 429,
            Self::Internal => 500,
            Self::UpstreamError => 502,
            Self::UpstreamTimeout => 504,
        }
    }

    /// The body for this code.
    #[must_use]
    pub fn body(self, message: impl Into<String>, request_id: impl Into<String>) -> ErrorBody {
        ErrorBody {
            code: self.as_str().to_string(),
            message: message.into(),
            request_id: request_id.into(),
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_documented() {
        let doc = include_str!("../../../docs/errors.md");
        for code in ErrorCode::ALL {
            assert!(
                doc.contains(&format!("`{}`", code.as_str())),
                "{code} missing from docs/errors.md"
            );
        }
    }
}
