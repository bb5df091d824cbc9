//! Strict parsing of compact JWS tokens: shape, header and claims.
//!
//! Everything here is pure and cheap (no signature work). The rules, in the order applied:
//! the token is at most [`MAX_TOKEN_BYTES`], only base64url characters and exactly two dots,
//! three non-empty segments; each segment is canonical unpadded base64url; header and payload
//! are JSON objects without duplicate member names; the header's `alg` is one of the four
//! supported ones (`none` in any spelling is its own rejection); `crit` is refused (Berth
//! understands no extension), as are `enc`, `zip`, `b64` and `cty` (no JWE, no compression, no
//! unencoded payloads, no nested tokens); `typ`, when present, is a JWT type. Key-carrying header
//! members (`jwk`, `jku`, `x5u`, `x5c`, `x5t`) are ignored: keys only ever come from the
//! configured issuer, never from the token.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::de::{Deserialize, Deserializer, Error as _, MapAccess, Visitor};
use serde_json::{Map, Value};

use crate::Reject;

/// Longest token accepted, in bytes (header + payload + signature, base64url encoded).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The JWS algorithms Berth verifies. The *key* decides which one is allowed: an RSA key only
/// ever verifies RS256, a P-256 key ES256, an Ed25519 key EdDSA, a shared secret HS256.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    /// HMAC-SHA256 with a shared secret.
    Hs256,
    /// RSASSA-PKCS1-v1_5 with SHA-256, keys of 2048 to 8192 bits.
    Rs256,
    /// ECDSA on P-256 with SHA-256 (fixed-size `r || s` signature).
    Es256,
    /// Ed25519.
    EdDsa,
}

impl Alg {
    /// The `alg` header value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::Hs256 => "HS256",
            Alg::Rs256 => "RS256",
            Alg::Es256 => "ES256",
            Alg::EdDsa => "EdDSA",
        }
    }

    /// Whether verification costs public-key work (and so is worth caching).
    #[must_use]
    pub fn is_asymmetric(self) -> bool {
        !matches!(self, Alg::Hs256)
    }

    fn parse(s: &str) -> Result<Alg, Reject> {
        match s {
            "HS256" => Ok(Alg::Hs256),
            "RS256" => Ok(Alg::Rs256),
            "ES256" => Ok(Alg::Es256),
            "EdDSA" => Ok(Alg::EdDsa),
            _ if s.trim().eq_ignore_ascii_case("none") => Err(Reject::AlgNone),
            _ => Err(Reject::UnsupportedAlg),
        }
    }
}

/// The checked claims Berth needs, plus the payload as sent.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: Vec<String>,
    pub exp: i64,
    pub nbf: Option<i64>,
    /// `berth_team` (`berth_core::policy::TEAM_CLAIM`), if a string: the team a token of
    /// Berth's own issuer was issued for.
    pub team: Option<String>,
    /// The decoded payload (a JSON object), exactly as signed.
    pub json: String,
}

/// A token split and decoded, signature not yet checked.
pub(crate) struct Parsed<'a> {
    /// `base64url(header) "." base64url(payload)`: what the signature covers.
    pub signing_input: &'a str,
    pub alg: Alg,
    pub kid: Option<String>,
    pub claims: Claims,
    pub signature: Vec<u8>,
}

/// Cheap checks on the raw token: size, alphabet, segment count. Runs before anything else,
/// including the verified-token cache lookup.
pub(crate) fn check_shape(token: &str) -> Result<(), Reject> {
    if token.is_empty() {
        return Err(Reject::Malformed("empty token"));
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Reject::Malformed("token longer than 8 KiB"));
    }
    // One pass: base64url characters, dots counted, no empty segment.
    let mut segments = 1;
    let mut previous = b'.';
    for b in token.bytes() {
        match b {
            b'.' if previous == b'.' => return Err(Reject::Malformed("empty segment")),
            b'.' => segments += 1,
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => {}
            _ => return Err(Reject::Malformed("character outside base64url")),
        }
        previous = b;
    }
    if previous == b'.' {
        return Err(Reject::Malformed("empty segment"));
    }
    if segments != 3 {
        return Err(Reject::Malformed("not three segments"));
    }
    Ok(())
}

/// Splits and decodes a token that passed [`check_shape`].
pub(crate) fn parse(token: &str) -> Result<Parsed<'_>, Reject> {
    check_shape(token)?;
    let (signing_input, sig_b64) = token
        .rsplit_once('.')
        .ok_or(Reject::Malformed("not three segments"))?;
    let (header_b64, payload_b64) = signing_input
        .split_once('.')
        .ok_or(Reject::Malformed("not three segments"))?;

    let header = decode_object(header_b64).map_err(Reject::BadHeader)?;
    let (alg, kid) = check_header(&header)?;

    let payload_bytes = b64(payload_b64).map_err(Reject::BadClaims)?;
    let payload = object_from_slice(&payload_bytes).map_err(Reject::BadClaims)?;
    let json = String::from_utf8(payload_bytes).map_err(|_| Reject::BadClaims("not UTF-8"))?;
    let claims = claims(&payload, json)?;

    let signature = b64(sig_b64).map_err(|_| Reject::Malformed("signature not base64url"))?;
    Ok(Parsed {
        signing_input,
        alg,
        kid,
        claims,
        signature,
    })
}

fn b64(segment: &str) -> Result<Vec<u8>, &'static str> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| "not canonical base64url")
}

fn decode_object(segment: &str) -> Result<Map<String, Value>, &'static str> {
    object_from_slice(&b64(segment)?)
}

fn object_from_slice(bytes: &[u8]) -> Result<Map<String, Value>, &'static str> {
    match serde_json::from_slice::<UniqueObject>(bytes) {
        Ok(UniqueObject(map)) => Ok(map),
        Err(e) if e.to_string().starts_with(DUPLICATE) => Err("duplicate member name"),
        Err(_) => Err("not a JSON object"),
    }
}

fn check_header(header: &Map<String, Value>) -> Result<(Alg, Option<String>), Reject> {
    let alg = match header.get("alg") {
        Some(Value::String(s)) => Alg::parse(s)?,
        Some(Value::Null) | None => return Err(Reject::BadHeader("alg missing")),
        Some(_) => return Err(Reject::BadHeader("alg not a string")),
    };
    if header.contains_key("crit") {
        return Err(Reject::CritHeader);
    }
    for name in ["enc", "zip", "b64", "cty"] {
        if header.contains_key(name) {
            return Err(Reject::UnsupportedHeader(name));
        }
    }
    match header.get("typ") {
        None => {}
        Some(Value::String(t))
            if ["JWT", "at+jwt", "application/jwt", "application/at+jwt"]
                .iter()
                .any(|ok| t.eq_ignore_ascii_case(ok)) => {}
        Some(_) => return Err(Reject::UnsupportedHeader("typ")),
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) if !k.is_empty() && k.len() <= 256 => Some(k.clone()),
        Some(_) => return Err(Reject::BadHeader("kid not a short non-empty string")),
    };
    Ok((alg, kid))
}

fn claims(payload: &Map<String, Value>, json: String) -> Result<Claims, Reject> {
    let string = |name: &'static str| match payload.get(name) {
        None => Err(Reject::MissingClaim(name)),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(Reject::InvalidClaim(name)),
    };
    let iss = string("iss")?;
    let sub = string("sub")?;
    let aud = match payload.get("aud") {
        None => return Err(Reject::MissingClaim("aud")),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or(Reject::InvalidClaim("aud"))?,
        Some(_) => return Err(Reject::InvalidClaim("aud")),
    };
    let exp = match payload.get("exp") {
        None => return Err(Reject::MissingClaim("exp")),
        Some(v) => numeric_date(v).ok_or(Reject::InvalidClaim("exp"))?,
    };
    let nbf = match payload.get("nbf") {
        None => None,
        Some(v) => Some(numeric_date(v).ok_or(Reject::InvalidClaim("nbf"))?),
    };
    if let Some(v) = payload.get("iat") {
        numeric_date(v).ok_or(Reject::InvalidClaim("iat"))?;
    }
    let team = match payload.get(berth_core::policy::TEAM_CLAIM) {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(Reject::InvalidClaim("berth_team")),
    };
    Ok(Claims {
        iss,
        sub,
        aud,
        exp,
        nbf,
        team,
        json,
    })
}

/// A NumericDate (RFC 7519 §2): a positive JSON number of seconds, fractions allowed and
/// truncated. Strings, booleans, zero, negative and non-finite values are refused.
fn numeric_date(v: &Value) -> Option<i64> {
    let Value::Number(n) = v else { return None };
    let secs = if let Some(i) = n.as_i64() {
        i
    } else if n.as_u64().is_some() {
        i64::MAX
    } else {
        let f = n.as_f64()?;
        if !f.is_finite() {
            return None;
        }
        // Saturating float-to-int conversion is what we want for absurdly large dates.
        #[allow(clippy::cast_possible_truncation)]
        let secs = f.trunc() as i64;
        secs
    };
    (secs > 0).then_some(secs)
}

const DUPLICATE: &str = "duplicate member";

/// A JSON object whose top-level member names are unique. `serde_json` keeps the last of
/// duplicate names silently; two parsers reading one token differently is how JWT bypasses
/// start, so Berth refuses such tokens outright.
struct UniqueObject(Map<String, Value>);

impl<'de> Deserialize<'de> for UniqueObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = UniqueObject;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<UniqueObject, A::Error> {
                let mut map = Map::new();
                while let Some(key) = access.next_key::<String>()? {
                    let value: Value = access.next_value()?;
                    if map.contains_key(&key) {
                        return Err(A::Error::custom(DUPLICATE));
                    }
                    map.insert(key, value);
                }
                Ok(UniqueObject(map))
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_dates() {
        assert_eq!(numeric_date(&serde_json::json!(10)), Some(10));
        assert_eq!(numeric_date(&serde_json::json!(10.9)), Some(10));
        assert_eq!(numeric_date(&serde_json::json!(u64::MAX)), Some(i64::MAX));
        assert_eq!(numeric_date(&serde_json::json!(1e300)), Some(i64::MAX));
        assert_eq!(numeric_date(&serde_json::json!(0)), None);
        assert_eq!(numeric_date(&serde_json::json!(-5)), None);
        assert_eq!(numeric_date(&serde_json::json!("10")), None);
        assert_eq!(numeric_date(&serde_json::json!(true)), None);
    }

    #[test]
    fn duplicate_members_are_refused() {
        assert_eq!(
            object_from_slice(br#"{"a":1,"a":2}"#),
            Err("duplicate member name")
        );
        assert!(object_from_slice(br#"{"a":{"b":1},"c":2}"#).is_ok());
        assert_eq!(object_from_slice(b"[1]"), Err("not a JSON object"));
        assert_eq!(object_from_slice(br#"{"a":1} x"#), Err("not a JSON object"));
    }
}
