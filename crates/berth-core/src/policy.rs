//! Traffic policy carried by the routing table: what the gateway enforces per route and per
//! service (authentication, rate limits, circuit breaking, bulkheads, timeouts, retries).
//!
//! The control plane fills these from the application's Compose file (`x-berth`, validated at
//! apply) and from its own state (issuers and their keys); the gateway reads them from the table
//! and never from the database. Durations are milliseconds. Every type has a `Default` that
//! means "policy off", so a route without `x-berth` policy costs nothing on the request path.

use serde::{Deserialize, Serialize};

/// Everything the gateway enforces for one route. Service-level parts (breaker, bulkhead,
/// timeouts, retries) are the same on every route of a service, and their state (breaker
/// window, bulkhead permits, retry budget) is shared per (app, service).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct RoutePolicy {
    /// Require a valid bearer JWT (route level).
    pub auth: Option<AuthPolicy>,
    /// Limit the request rate (route level).
    pub rate_limit: Option<RateLimit>,
    /// Answer plain-HTTP requests with a redirect to HTTPS (route level).
    pub redirect_https: bool,
    /// Service level: fail fast while the service is failing.
    pub circuit_breaker: Option<CircuitBreaker>,
    /// Service level: bounded concurrency (bulkhead).
    pub max_concurrency: Option<Bulkhead>,
    /// Service level: timeouts (unset fields fall back to the gateway's defaults).
    pub timeout: Timeouts,
    /// Service level: retries of idempotent requests after a failure that may have reached the
    /// service (connect failures are always retried on another replica, budget permitting).
    pub retries: Option<Retries>,
    /// Route level, with `auth: subscribers`: per-consumer rate limits by the plan each
    /// subscriber chose (docs/market.md#plans). A subscriber in no plan meets only
    /// `rate_limit`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub plans: Vec<Plan>,
}

/// One plan of a subscribers-only route: a per-consumer limit and who subscribed to it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct Plan {
    pub name: String,
    pub per_second: u32,
    pub burst: u32,
    /// The global names of the applications subscribed with this plan, sorted.
    pub subscribers: Vec<String>,
}

impl Plan {
    /// The limit each of its subscribers gets.
    #[must_use]
    pub fn limit(&self) -> RateLimit {
        RateLimit {
            per_second: self.per_second,
            burst: self.burst,
            key: RateKey::Consumer,
        }
    }
}

/// `x-berth.route.auth`: `jwt` (Berth's own issuer, audience = the application name) or
/// `{jwt: {issuers: [...], audiences: [...]}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct AuthPolicy {
    /// Names of accepted issuers (`berth` is Berth's own).
    pub issuers: Vec<String>,
    /// Accepted `aud` values (any one must be present).
    pub audiences: Vec<String>,
    /// The team of the route's application, when it is not `default` (docs/teams.md): a token
    /// of Berth's own issuer is accepted only if its `berth_team` claim names this team (a
    /// token without the claim is team `default`'s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// `auth: subscribers` (docs/market.md): the global names of the applications that
    /// subscribe to the market entry this route serves, sorted. A token of Berth's own issuer
    /// for the entry's audience passes the team check (its team is the consumer's), and the
    /// gateway then answers 403 `not_subscribed` unless its `sub` is in this list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscribers: Option<Vec<String>>,
}

impl AuthPolicy {
    /// Does this route admit the verified subject `sub`? Always, unless the route takes
    /// subscribers only.
    #[must_use]
    pub fn admits(&self, sub: &str) -> bool {
        self.subscribers
            .as_ref()
            .is_none_or(|s| s.binary_search_by(|x| x.as_str().cmp(sub)).is_ok())
    }
}

/// The reserved claim of every token Berth's own issuer signs: the team it was issued for.
pub const TEAM_CLAIM: &str = "berth_team";

/// The audience of a token that logs in to Berth's MQTT broker (docs/messaging.md). Any team
/// may ask for it: it is not an application's name.
pub const MQTT_AUDIENCE: &str = "mqtt";

/// What a rate limit counts by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RateKey {
    /// One bucket for the whole route.
    #[default]
    Route,
    /// One bucket per JWT subject (applied after authentication).
    Consumer,
    /// One bucket per client IP (applied before authentication).
    Ip,
}

/// `x-berth.route.rate_limit`: a GCRA / token bucket of `per_second` with `burst`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
    pub key: RateKey,
}

/// `x-berth.circuit_breaker`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct CircuitBreaker {
    /// Open when failures / requests in the window reach this (0 < r ≤ 1).
    pub failure_ratio: f64,
    /// ... and at least this many requests were seen in the window.
    pub min_requests: u32,
    pub window_ms: u64,
    /// Time open before half-open.
    pub open_for_ms: u64,
    /// Requests let through while half-open; all must succeed to close.
    pub half_open_probes: u32,
    pub slow_call: Option<SlowCall>,
}

/// Calls slower than `threshold_ms` count as slow; a slow ratio at or above `ratio` opens too.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct SlowCall {
    pub threshold_ms: u64,
    pub ratio: f64,
}

/// `x-berth.max_concurrency`: at most `limit` requests in flight to the service, `queue` more
/// waiting at most `queue_timeout_ms`; beyond that 503 at once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct Bulkhead {
    pub limit: u32,
    pub queue: u32,
    pub queue_timeout_ms: u64,
}

/// `x-berth.timeout`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct Timeouts {
    pub connect_ms: Option<u64>,
    /// Until response headers, per attempt.
    pub per_try_ms: Option<u64>,
    /// Until response headers, all attempts together.
    pub total_ms: Option<u64>,
}

/// `x-berth.retries`: at most `attempts` retries per request, and retries may add at most
/// `budget_percent` % to recent traffic.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct Retries {
    pub attempts: u32,
    pub budget_percent: u32,
}

/// A JWT issuer the gateway accepts tokens from, with the keys to verify them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct Issuer {
    /// Berth's name for it (`berth` for Berth's own), used in `AuthPolicy::issuers`.
    pub name: String,
    /// The `iss` value tokens must carry.
    pub issuer: String,
    /// Public keys as a JWKS document (`{"keys": [...]}`), for RS256 / ES256 / EdDSA.
    pub jwks: Option<String>,
    /// HS256 shared secret. Secret: never logged, redacted when the table is shown.
    pub hs256_secret: Option<String>,
}
