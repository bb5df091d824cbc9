//! The [`Verifier`]: Berth's implementation of [`TokenVerifier`].
//!
//! Order of work, cheapest first, so hostile input costs as little as possible:
//! 1. shape (size ≤ 8 KiB, alphabet, three segments);
//! 2. verified-token cache: on a hit whose key set is still current, skip to step 5;
//! 3. header and claims parsing ([`crate::jose`]), issuer selection (`iss` must equal a
//!    configured issuer's `issuer`, and that issuer must be named in the route's policy);
//! 4. key choice by `kid` and key type, then the signature (counted: [`Verifier::signature_checks`]);
//! 5. time (`exp` required, `nbf` if present, [`LEEWAY_SECS`] either way) and audience (one of
//!    the token's `aud` values must be in the policy; an empty policy audience list accepts
//!    nothing).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest;
use berth_core::auth::{AuthFailure, TokenVerifier, VerifiedToken};
use berth_core::policy::{AuthPolicy, Issuer};

use crate::cache::{Entry, TokenCache, TokenHash, DEFAULT_TOKEN_CACHE_CAPACITY};
use crate::jose::{self, Claims};
use crate::keys::{KeyCache, Selection};

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: i64 = 5;

/// Why a token was refused. The `Display` text is what goes into [`AuthFailure::reason`]: short,
/// fixed wording, never an echo of token content, never key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    /// Empty, oversized, wrong alphabet, not three non-empty segments, signature not base64url.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The header is not canonical base64url of a JSON object with unique members, or `alg` /
    /// `kid` have the wrong type.
    #[error("bad token header: {0}")]
    BadHeader(&'static str),
    /// The payload is not canonical base64url of a UTF-8 JSON object with unique members.
    #[error("bad token claims: {0}")]
    BadClaims(&'static str),
    /// `alg: none`, in any capitalisation.
    #[error("unsigned tokens (alg none) are not accepted")]
    AlgNone,
    /// An `alg` other than HS256, RS256, ES256, EdDSA.
    #[error("unsupported alg")]
    UnsupportedAlg,
    /// A `crit` header: Berth understands no JWS extension.
    #[error("crit header not supported")]
    CritHeader,
    /// A header Berth refuses (`enc`, `zip`, `b64`, `cty`, or a `typ` that is not a JWT type).
    #[error("unsupported header: {0}")]
    UnsupportedHeader(&'static str),
    /// A required claim is absent.
    #[error("missing claim: {0}")]
    MissingClaim(&'static str),
    /// A claim has the wrong type or value (e.g. `exp` as a string, or not positive).
    #[error("invalid claim: {0}")]
    InvalidClaim(&'static str),
    /// No configured issuer has this `iss`.
    #[error("unknown issuer")]
    UnknownIssuer,
    /// The issuer is configured but not accepted on this route.
    #[error("issuer not accepted here")]
    IssuerNotAllowed,
    /// The issuer has no key of the token's algorithm (e.g. an HS256 token for an RSA issuer).
    #[error("alg not allowed by the issuer's keys")]
    AlgNotAllowed,
    /// The `kid` matches none of the issuer's keys of that algorithm (or is missing where the
    /// issuer's keys have kids).
    #[error("unknown kid")]
    UnknownKid,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// `exp` (plus leeway) has passed.
    #[error("token expired")]
    Expired,
    /// `nbf` is still in the future (beyond leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// None of the token's `aud` values is accepted on this route.
    #[error("audience not accepted")]
    AudienceNotAllowed,
    #[error("token issued for another team")]
    TeamNotAllowed,
}

/// Verifies bearer JWTs against a route's [`AuthPolicy`] and the configured [`Issuer`]s.
///
/// One per process (cheap to share behind an `Arc`): it owns the parsed-key cache and the
/// verified-token cache. All methods take `&self` and are safe to call from many threads.
pub struct Verifier {
    keys: KeyCache,
    tokens: TokenCache,
    signature_checks: AtomicU64,
    cache_hits: AtomicU64,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier::new()
    }
}

impl Verifier {
    /// A verifier caching up to [`DEFAULT_TOKEN_CACHE_CAPACITY`] verified tokens.
    #[must_use]
    pub fn new() -> Self {
        Verifier::with_cache_capacity(DEFAULT_TOKEN_CACHE_CAPACITY)
    }

    /// A verifier caching up to `capacity` verified tokens (0 disables the cache).
    #[must_use]
    pub fn with_cache_capacity(capacity: usize) -> Self {
        Verifier {
            keys: KeyCache::new(),
            tokens: TokenCache::new(capacity),
            signature_checks: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
        }
    }

    /// Verifies `token` now. See [`Verifier::verify_at`].
    ///
    /// # Errors
    /// The first rule the token breaks.
    pub fn check(
        &self,
        token: &str,
        policy: &AuthPolicy,
        issuers: &[Issuer],
    ) -> Result<VerifiedToken, Reject> {
        self.verify_at(token, policy, issuers, unix_now())
    }

    /// Verifies `token` as of `now` (seconds since the Unix epoch).
    ///
    /// # Errors
    /// The first rule the token breaks.
    pub fn verify_at(
        &self,
        token: &str,
        policy: &AuthPolicy,
        issuers: &[Issuer],
        now: i64,
    ) -> Result<VerifiedToken, Reject> {
        jose::check_shape(token)?;
        let hash = token_hash(token);

        let hit = self.tokens.get_with(&hash, |entry| {
            // The cached claims passed parsing and the signature under key set
            // `entry.key_set_id`; everything that depends on the route or the clock is
            // checked again.
            let issuer = select_issuer(&entry.claims, policy, issuers).ok()?;
            if self.keys.current_id(issuer) != Some(entry.key_set_id) {
                return None;
            }
            self.cache_hits.fetch_add(1, Ordering::Relaxed);
            Some(
                check_time_and_audience(&entry.claims, policy, now)
                    .and_then(|()| check_team(&entry.claims, issuer, policy))
                    .map(|()| verified(&entry.claims, issuer)),
            )
        });
        if let Some(Some(result)) = hit {
            return result;
        }

        let parsed = jose::parse(token)?;
        let issuer = select_issuer(&parsed.claims, policy, issuers)?;
        // Cheap claim checks before the expensive signature.
        check_time_and_audience(&parsed.claims, policy, now)?;
        check_team(&parsed.claims, issuer, policy)?;

        let key_set = self.keys.get(issuer);
        let key = match key_set.select(parsed.alg, parsed.kid.as_deref()) {
            Selection::Found(key) => key,
            Selection::NoKeyForAlg => return Err(Reject::AlgNotAllowed),
            Selection::UnknownKid => return Err(Reject::UnknownKid),
        };
        self.signature_checks.fetch_add(1, Ordering::Relaxed);
        if !key.verify(parsed.signing_input.as_bytes(), &parsed.signature) {
            return Err(Reject::BadSignature);
        }

        let result = verified(&parsed.claims, issuer);
        // Every algorithm is cached: measured in the gateway benchmark, a cache hit costs less
        // than parsing the token and checking even an HMAC.
        self.tokens.insert(
            hash,
            Entry {
                key_set_id: key_set.id,
                claims: Arc::new(parsed.claims),
            },
        );
        Ok(result)
    }

    /// Signatures checked so far (cache hits and tokens refused before the signature do not
    /// count). Tests use it to prove a cache hit did no signature work; it is also a metric.
    pub fn signature_checks(&self) -> u64 {
        self.signature_checks.load(Ordering::Relaxed)
    }

    /// Verifications answered from the verified-token cache.
    pub fn cache_hits(&self) -> u64 {
        self.cache_hits.load(Ordering::Relaxed)
    }

    /// Tokens currently in the verified-token cache.
    pub fn cached_tokens(&self) -> usize {
        self.tokens.len()
    }

    /// How many times issuer key material has been parsed (once per distinct key material,
    /// unless the small key cache overflowed).
    pub fn key_parses(&self) -> u64 {
        self.keys.parses()
    }
}

impl TokenVerifier for Verifier {
    fn verify(
        &self,
        token: &str,
        policy: &AuthPolicy,
        issuers: &[Issuer],
    ) -> Result<VerifiedToken, AuthFailure> {
        self.check(token, policy, issuers)
            .map_err(|reject| AuthFailure {
                reason: reject.to_string(),
            })
    }
}

/// The issuer whose `issuer` equals the token's `iss` among those the policy names.
fn select_issuer<'i>(
    claims: &Claims,
    policy: &AuthPolicy,
    issuers: &'i [Issuer],
) -> Result<&'i Issuer, Reject> {
    let mut configured = false;
    for issuer in issuers.iter().filter(|i| i.issuer == claims.iss) {
        if policy.issuers.contains(&issuer.name) {
            return Ok(issuer);
        }
        configured = true;
    }
    Err(if configured {
        Reject::IssuerNotAllowed
    } else {
        Reject::UnknownIssuer
    })
}

/// The Unix seconds during which the token's time claims hold: from `nbf` (if any) to `exp`,
/// each widened by [`LEEWAY_SECS`]. What `verify` checks and what it tells callers they may
/// remember ([`VerifiedToken::valid`]).
fn window(claims: &Claims) -> std::ops::Range<i64> {
    claims
        .nbf
        .map_or(i64::MIN, |nbf| nbf.saturating_sub(LEEWAY_SECS))
        ..claims.exp.saturating_add(LEEWAY_SECS)
}

fn check_time_and_audience(claims: &Claims, policy: &AuthPolicy, now: i64) -> Result<(), Reject> {
    let valid = window(claims);
    if now >= valid.end {
        return Err(Reject::Expired);
    }
    if now < valid.start {
        return Err(Reject::NotYetValid);
    }
    if !claims.aud.iter().any(|a| policy.audiences.contains(a)) {
        return Err(Reject::AudienceNotAllowed);
    }
    Ok(())
}

/// A token of Berth's own issuer is good only for routes of the team it was issued for
/// (`berth_team`; a token without it, issued before teams, is team `default`'s, and so is a
/// route whose policy names no team). Not on a subscribers-only route.
fn check_team(claims: &Claims, issuer: &Issuer, policy: &AuthPolicy) -> Result<(), Reject> {
    // A subscribers-only route is called by other teams' applications: the audience (the
    // market entry, which only the control plane mints) scopes the token, and the gateway checks
    // the subject against the subscribers.
    if issuer.name != crate::keystore::BERTH_ISSUER || policy.subscribers.is_some() {
        return Ok(());
    }
    let default = berth_core::team::DEFAULT_TEAM;
    let token_team = claims.team.as_deref().unwrap_or(default);
    let route_team = policy.team.as_deref().unwrap_or(default);
    if token_team == route_team {
        Ok(())
    } else {
        Err(Reject::TeamNotAllowed)
    }
}

fn verified(claims: &Claims, issuer: &Issuer) -> VerifiedToken {
    VerifiedToken {
        subject: claims.sub.clone(),
        issuer: issuer.name.clone(),
        claims_json: claims.json.clone(),
        valid: Some(window(claims)),
    }
}

fn token_hash(token: &str) -> TokenHash {
    let d = digest::digest(&digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
