//! The contract between the gateway and the token verifier.
//!
//! The gateway enforces `RoutePolicy::auth` but does not verify tokens itself: a verifier
//! (JWT signatures, `iss`/`aud`/`exp` checks, key caching) is plugged in behind
//! [`TokenVerifier`]. This keeps the data plane free of crypto dependencies and lets tests use a
//! fake. Rules: a verifier is pure with respect to the request (no IO on the request path; keys
//! come from the routing table's issuers), and [`AuthFailure::reason`] is for logs only — the
//! client always gets the same `unauthorized` answer.

use crate::policy::{AuthPolicy, Issuer};

/// Verifies a bearer token against a route's [`AuthPolicy`] and the table's issuers.
pub trait TokenVerifier: Send + Sync {
    /// Check `token` (the bearer value, without the `Bearer ` prefix).
    ///
    /// # Errors
    ///
    /// [`AuthFailure`] when the token is malformed, badly signed, expired, from an issuer the
    /// policy does not accept, or for another audience.
    fn verify(
        &self,
        token: &str,
        policy: &AuthPolicy,
        issuers: &[Issuer],
    ) -> Result<VerifiedToken, AuthFailure>;
}

/// What a valid token says; the gateway passes it upstream as `X-Berth-Subject`,
/// `X-Berth-Issuer` and `X-Berth-Claims`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The `sub` claim.
    pub subject: String,
    /// The issuer's Berth name (`Issuer::name`).
    pub issuer: String,
    /// The token's claims as a JSON object.
    pub claims_json: String,
    /// The Unix seconds during which this result holds for the same token, route and issuer
    /// keys (`nbf` and `exp` with the verifier's leeway): a caller may remember it that long
    /// instead of verifying again. `None`: do not remember it.
    pub valid: Option<std::ops::Range<i64>>,
}

/// Why a token was refused. For the log only: never sent to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFailure {
    pub reason: String,
}
