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
//! * A verification the verifier says may be remembered is kept per worker thread, keyed by the
//!   exact `Authorization` bytes, the snapshot and the route, and only until the token's own
//!   `exp` (with the verifier's leeway): a new table (issuer keys, policy) or the clock ends it.

use berth_core::auth::{TokenVerifier, VerifiedToken};
use berth_core::policy::{AuthPolicy, Issuer};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

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
    /// The same three headers as HTTP/1.1 header lines, each ending in CRLF: what the fast path
    /// writes upstream.
    pub lines: Box<[u8]>,
}

impl Identity {
    /// The identity headers' names, in the order of [`Identity::values`].
    pub const NAMES: [HeaderName; 3] = [X_BERTH_SUBJECT, X_BERTH_ISSUER, X_BERTH_CLAIMS];

    /// An identity of header-safe `values`.
    fn new(values: [String; 3]) -> Identity {
        let mut lines = Vec::with_capacity(values.iter().map(|v| v.len() + 20).sum());
        for (name, value) in Self::NAMES.iter().zip(&values) {
            crate::h1::header(&mut lines, name.as_str().as_bytes(), value.as_bytes());
        }
        Identity {
            values,
            lines: lines.into(),
        }
    }

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

/// Where a request's token check happens: the snapshot and route it was routed by, which fix
/// the policy and the issuers' keys (a memo entry is only used for the same ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope {
    /// [`crate::table::Snapshot::generation`].
    pub generation: u64,
    /// The route's index in that snapshot.
    pub route: usize,
}

/// Check the bearer token in `authorization` (the request's `Authorization` value, if any) for
/// the route `scope` names.
///
/// A result the verifier says may be remembered ([`VerifiedToken::valid`]) is kept in this
/// thread's memo, keyed by the exact `Authorization` bytes and `scope`, and answered from there
/// while the clock is inside its validity: a hit touches no lock, no shared cache line and does
/// no hashing of the token.
///
/// # Errors
///
/// [`AuthError`] when the request must be answered 401.
pub fn verify(
    verifier: Option<&dyn TokenVerifier>,
    policy: &AuthPolicy,
    issuers: &[Issuer],
    authorization: Option<&[u8]>,
    scope: Scope,
) -> Result<Arc<Identity>, AuthError> {
    let now = unix_now();
    if let Some(value) = authorization {
        if let Some(identity) = memo::get(value, scope, now) {
            return Ok(identity);
        }
    }
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
    let identity = Arc::new(Identity::new(values));
    if let (Some(value), Some(valid)) = (authorization, verified.valid) {
        if valid.contains(&now) {
            memo::put(value, scope, valid, &identity);
        }
    }
    Ok(identity)
}

/// Seconds since the Unix epoch.
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The per-thread memo of verified tokens: a small direct-mapped table (each gateway worker
/// thread has its own, so a hit shares nothing with other threads). A slot is chosen by the
/// token's last bytes (its signature's tail, which an issuer's signing makes random; a crafted
/// collision only costs a miss, since only verified tokens are stored) and holds the exact
/// `Authorization` bytes, compared whole on lookup.
mod memo {
    use super::{Identity, Scope};
    use std::cell::RefCell;
    use std::ops::Range;
    use std::sync::Arc;

    /// Slots per thread.
    const SLOTS: usize = 256;

    /// Longest `Authorization` value remembered (longer ones are verified every time).
    const MAX_VALUE: usize = 4096;

    struct Slot {
        scope: Scope,
        valid: Range<i64>,
        value: Box<[u8]>,
        identity: Arc<Identity>,
    }

    thread_local! {
        static MEMO: RefCell<Vec<Option<Slot>>> = const { RefCell::new(Vec::new()) };
    }

    fn index(value: &[u8]) -> usize {
        let mut tail = [0u8; 8];
        let n = value.len().min(8);
        tail[..n].copy_from_slice(&value[value.len() - n..]);
        let h = u64::from_le_bytes(tail) ^ (value.len() as u64);
        // The top 8 bits of a multiplicative hash: 0..256, one per slot.
        const _: () = assert!(SLOTS == 256);
        (h.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as usize
    }

    pub(super) fn get(value: &[u8], scope: Scope, now: i64) -> Option<Arc<Identity>> {
        MEMO.with(|memo| {
            let memo = memo.borrow();
            let slot = memo.get(index(value))?.as_ref()?;
            (slot.scope == scope && slot.valid.contains(&now) && *slot.value == *value)
                .then(|| slot.identity.clone())
        })
    }

    pub(super) fn put(value: &[u8], scope: Scope, valid: Range<i64>, identity: &Arc<Identity>) {
        if value.len() > MAX_VALUE {
            return;
        }
        MEMO.with(|memo| {
            let mut memo = memo.borrow_mut();
            if memo.is_empty() {
                memo.resize_with(SLOTS, || None);
            }
            memo[index(value)] = Some(Slot {
                scope,
                valid,
                value: value.into(),
                identity: identity.clone(),
            });
        });
    }

    /// Forget everything this thread remembers (tests).
    #[cfg(test)]
    pub(super) fn clear() {
        MEMO.with(|memo| memo.borrow_mut().clear());
    }
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

    fn scope(generation: u64, route: usize) -> Scope {
        Scope { generation, route }
    }

    fn identity() -> Arc<Identity> {
        Arc::new(Identity::new(["s".into(), "berth".into(), "{}".into()]))
    }

    #[test]
    fn identity_lines_are_the_three_headers() {
        assert_eq!(
            &*identity().lines,
            b"x-berth-subject: s\r\nx-berth-issuer: berth\r\nx-berth-claims: {}\r\n"
        );
    }

    #[test]
    fn memo_answers_only_the_same_bytes_scope_and_time() {
        memo::clear();
        let here = scope(1, 0);
        memo::put(b"Bearer abc", here, 10..20, &identity());
        assert!(memo::get(b"Bearer abc", here, 10).is_some());
        assert!(memo::get(b"Bearer abc", here, 19).is_some());
        assert!(memo::get(b"Bearer abc", here, 20).is_none(), "expired");
        assert!(memo::get(b"Bearer abc", here, 9).is_none(), "not yet valid");
        assert!(memo::get(b"Bearer abd", here, 15).is_none());
        assert!(memo::get(b"Bearer ab", here, 15).is_none());
        assert!(memo::get(b"bearer abc", here, 15).is_none());
        let other_table = scope(2, 0);
        let other_route = scope(1, 1);
        assert!(memo::get(b"Bearer abc", other_table, 15).is_none());
        assert!(memo::get(b"Bearer abc", other_route, 15).is_none());
        // Another thread (another gateway worker) has its own memo.
        std::thread::spawn(move || assert!(memo::get(b"Bearer abc", here, 15).is_none()))
            .join()
            .unwrap();
    }

    /// Accepts every token, counting the calls; results valid for `valid`.
    struct Counting {
        calls: std::sync::atomic::AtomicUsize,
        valid: Option<std::ops::Range<i64>>,
    }

    impl TokenVerifier for Counting {
        fn verify(
            &self,
            token: &str,
            _: &AuthPolicy,
            _: &[Issuer],
        ) -> Result<VerifiedToken, berth_core::auth::AuthFailure> {
            self.calls
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(VerifiedToken {
                subject: token.into(),
                issuer: "berth".into(),
                claims_json: "{}".into(),
                valid: self.valid.clone(),
            })
        }
    }

    fn calls(valid: Option<std::ops::Range<i64>>, checks: &[(&str, Scope)]) -> usize {
        memo::clear();
        let v = Counting {
            calls: std::sync::atomic::AtomicUsize::new(0),
            valid,
        };
        for (value, scope) in checks {
            let value = value.as_bytes();
            let id = verify(Some(&v), &AuthPolicy::default(), &[], Some(value), *scope).unwrap();
            assert_eq!(id.subject().as_bytes(), &value[7..]);
        }
        v.calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    #[test]
    fn verify_remembers_what_the_verifier_allows() {
        let a = scope(7, 0);
        let b = scope(8, 0);
        let now = unix_now();
        let open = Some(now - 10..now + 60);
        assert_eq!(calls(open.clone(), &[("Bearer t1", a); 5]), 1);
        assert_eq!(
            calls(
                open.clone(),
                &[("Bearer t1", a), ("Bearer t2", a), ("Bearer t1", a)]
            ),
            2
        );
        assert_eq!(calls(open, &[("Bearer t1", a), ("Bearer t1", b)]), 2);
        // Not to be remembered, or already expired: verified every time.
        assert_eq!(calls(None, &[("Bearer t1", a); 3]), 3);
        assert_eq!(calls(Some(now - 60..now - 1), &[("Bearer t1", a); 3]), 3);
    }
}
