//! Authentication: the bearer-token check of routes with `policy.auth`, and the `X-Berth-*`
//! identity headers.
//!
//! Rules this module keeps:
//! * Every inbound header whose name starts with `x-berth-` is removed on every route before
//!   anything else reads the request: only the gateway may assert an identity upstream.
//! * Tokens are verified by the pluggable [`TokenVerifier`] (`berth_core::auth`). No verifier
//!   configured means every auth route answers 401: fail closed.
//! * A missing token is answered `WWW-Authenticate: Bearer`, a refused one
//!   `Bearer error="invalid_token"`; the body is always 401 `unauthorized` with the same
//!   message. The verifier's reason goes to the debug log; the token itself is never logged.
//! * On success the upstream gets `X-Berth-Subject`, `X-Berth-Issuer` and `X-Berth-Claims`
//!   (the claims JSON with non-ASCII escaped as `\uXXXX`, so it is a valid header value).

use berth_core::auth::{TokenVerifier, VerifiedToken};
use berth_core::policy::{AuthPolicy, Issuer};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use std::fmt::Write as _;

/// `X-Berth-Subject`.
pub const X_BERTH_SUBJECT: HeaderName = HeaderName::from_static("x-berth-subject");
/// `X-Berth-Issuer`.
pub const X_BERTH_ISSUER: HeaderName = HeaderName::from_static("x-berth-issuer");
/// `X-Berth-Claims`.
pub const X_BERTH_CLAIMS: HeaderName = HeaderName::from_static("x-berth-claims");

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization: Bearer …` header.
    Missing,
    /// The token was refused by the verifier, or the header was malformed.
    Invalid,
    /// No verifier is configured: the route cannot be served.
    NoVerifier,
}

impl AuthError {
    /// The `WWW-Authenticate` value to answer with.
    #[must_use]
    pub fn challenge(self) -> HeaderValue {
        match self {
            AuthError::Missing => HeaderValue::from_static("Bearer"),
            AuthError::Invalid | AuthError::NoVerifier => {
                HeaderValue::from_static("Bearer error=\"invalid_token\"")
            }
        }
    }
}

/// Remove every `x-berth-*` header (names are lowercase in `http`). Allocates only when one is
/// present.
pub fn strip_berth_headers(headers: &mut HeaderMap) {
    let found = headers.keys().any(|k| k.as_str().starts_with("x-berth-"));
    if !found {
        return;
    }
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("x-berth-"))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}

/// The bearer token in an `Authorization` value (`None`: no such header).
fn bearer(value: Option<&[u8]>) -> Result<&str, AuthError> {
    let value = value.ok_or(AuthError::Missing)?;
    let value = std::str::from_utf8(value).map_err(|_| AuthError::Invalid)?;
    if !value
        .bytes()
        .all(|b| b == b'\t' || (b' '..0x7f).contains(&b))
    {
        return Err(AuthError::Invalid);
    }
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::Invalid)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Missing);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::Invalid);
    }
    Ok(token)
}

/// A verified caller: the values of the identity headers for the upstream.
pub struct Identity {
    /// `X-Berth-Subject`, `X-Berth-Issuer`, `X-Berth-Claims` values, in [`Identity::NAMES`]
    /// order: visible ASCII (non-ASCII written as JSON `\uXXXX` escapes), so valid header values
    /// as they are.
    pub values: [String; 3],
}

impl Identity {
    /// The identity headers' names, in the order of [`Identity::values`].
    pub const NAMES: [HeaderName; 3] = [X_BERTH_SUBJECT, X_BERTH_ISSUER, X_BERTH_CLAIMS];

    /// The subject (escaped as its header value): the consumer rate-limit key.
    #[must_use]
    pub fn subject(&self) -> &str {
        &self.values[0]
    }

    /// The headers as `http` values (the general path).
    pub fn header_values(&self) -> impl Iterator<Item = (HeaderName, HeaderValue)> + '_ {
        Self::NAMES
            .into_iter()
            .zip(&self.values)
            .filter_map(|(name, v)| HeaderValue::from_str(v).ok().map(|v| (name, v)))
    }
}

/// Check the bearer token in `authorization` (the request's `Authorization` value, if any).
///
/// # Errors
///
/// [`AuthError`] when the request must be answered 401.
pub fn verify(
    verifier: Option<&dyn TokenVerifier>,
    policy: &AuthPolicy,
    issuers: &[Issuer],
    authorization: Option<&[u8]>,
) -> Result<Identity, AuthError> {
    let token = bearer(authorization)?;
    let Some(verifier) = verifier else {
        tracing::warn!(
            "gateway: a route requires authentication but no token verifier is configured"
        );
        return Err(AuthError::NoVerifier);
    };
    let verified: VerifiedToken = verifier.verify(token, policy, issuers).map_err(|f| {
        tracing::debug!(reason = %f.reason, "gateway: bearer token refused");
        AuthError::Invalid
    })?;
    let values = [
        ascii(verified.subject),
        ascii(verified.issuer),
        ascii(verified.claims_json),
    ];
    if !values.iter().all(|v| header_safe(v)) {
        tracing::debug!("gateway: verified token has claims that cannot be sent as headers");
        return Err(AuthError::Invalid);
    }
    Ok(Identity { values })
}

/// Can `s` be sent as a header value as it is (visible ASCII, spaces and tabs)?
fn header_safe(s: &str) -> bool {
    s.bytes().all(|b| b == b'\t' || (b' '..0x7f).contains(&b))
}

/// `s` with every non-ASCII character written as a JSON `\uXXXX` escape (UTF-16 surrogate
/// pairs above U+FFFF). In valid JSON non-ASCII only occurs inside strings, so the result is the
/// same JSON value. ASCII input is returned as it is, without a copy.
fn ascii(s: String) -> String {
    if s.is_ascii() {
        return s;
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut buf = [0u16; 2];
            for unit in c.encode_utf16(&mut buf) {
                let _ = write!(out, "\\u{unit:04x}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_every_berth_header() {
        let mut h = HeaderMap::new();
        h.insert("x-berth-subject", HeaderValue::from_static("evil"));
        h.insert("X-Berth-Anything", HeaderValue::from_static("evil"));
        h.insert("x-berthy", HeaderValue::from_static("kept"));
        strip_berth_headers(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-berthy"));
    }

    #[test]
    fn bearer_parsing_and_ascii_claims() {
        assert_eq!(bearer(None), Err(AuthError::Missing));
        assert_eq!(bearer(Some(b"Basic abc")), Err(AuthError::Missing));
        assert_eq!(bearer(Some(b"bearer  tok ")), Ok("tok"));
        assert_eq!(
            ascii(r#"{"n":"é😀"}"#.to_owned()),
            r#"{"n":"\u00e9\ud83d\ude00"}"#
        );
        assert!(header_safe("a b\tc"));
        assert!(!header_safe("a\nb"));
    }
}
