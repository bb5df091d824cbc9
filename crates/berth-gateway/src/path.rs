//! Request path normalisation: the one place that decides which path a request is routed on and
//! forwarded with, on every protocol path (the fast path, hyper's HTTP/1 and HTTP/2).
//!
//! Why: routes are matched by prefix on the path, and policy (authentication, limits) hangs on
//! the route. If the gateway routed on the raw path and forwarded it as sent, `/pub/../priv`
//! would match the open route `/pub` while any replica that resolves `..` serves `/priv`. So
//! the path is normalised once, before routing, and the *normalised* path is both routed on and
//! forwarded: what the policy saw is what the replica gets. See docs/gateway-fast-path.md
//! ("Request paths") and docs/security.md.
//!
//! What [`normalize`] does to a path that starts with `/` (anything else, `*` or an authority,
//! is left alone; the query is never passed in and never touched):
//! 1. Percent-encoded *unreserved* characters (`A-Z a-z 0-9 - . _ ~`, RFC 3986 §2.3) are
//!    decoded, so `%2e` is `.` and `%70riv` is `priv`; every other escape is kept, with its hex
//!    digits in upper case. An encoded separator (`%2F`, `%5C`) is refused (step 3).
//! 2. Empty segments are dropped (`//` becomes `/`, as nginx's `merge_slashes`), then
//!    dot-segments are removed (RFC 3986 §5.2.4): `.` goes, `..` removes the segment before it
//!    (never above the root). A trailing `/`, `/.` or `/..` leaves a trailing `/`.
//! 3. Refused (400 `bad_request`), because backends disagree on what they mean: a malformed
//!    escape (`%2`, `%zz`); an encoded control character (`%00`–`%1F`, `%7F`); an encoded
//!    separator (`%2F`, `%5C`: Python servers and IIS decode it after routing); a raw `\` or
//!    `#` (not allowed in a request path); a segment that is a dot-segment in disguise for some
//!    backend — `.`/`..` carrying parameters (`..;x`, `..%3B`: Tomcat resolves it as `..`), or
//!    only dots and spaces other than `.` and `..` (`...`, `..%20`; Windows trims trailing dots
//!    and spaces).
//!
//! Rules this module keeps:
//! * The common path (no `%`, `\` or `#`, no segment starting with `.`, no `//`) is recognised
//!   by one scan and returned borrowed: no allocation on the fast path.
//! * The result is a fixed point: normalising it again changes nothing (tested), so a replica
//!   that resolves dot-segments itself finds none.

use std::borrow::Cow;

/// Why a request path is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// An encoded control character (`%00`–`%1F`, `%7F`).
    ControlCharacter,
    /// A raw `\` or `#`.
    InvalidCharacter,
    /// A segment some backend resolves as a dot-segment (see the module documentation).
    AmbiguousSegment,
    /// An encoded separator (`%2F`, `%5C`): gunicorn, uvicorn, Werkzeug and IIS decode it into
    /// a separator after routing, so `/priv%2Fx` would miss `/priv`'s policy and be served as
    /// `/priv/x` (Apache and Tomcat refuse it by default too).
    EncodedSeparator,
}

impl Refused {
    /// The message of the 400 answer.
    #[must_use]
    pub fn message(self) -> &'static str {
        match self {
            Refused::BadEscape => "the request path has a malformed percent-escape",
            Refused::ControlCharacter => "the request path has an encoded control character",
            Refused::InvalidCharacter => "the request path has a character not allowed in a path",
            Refused::EncodedSeparator => {
                "the request path has an encoded separator (%2F or %5C), which backends disagree on"
            }
            Refused::AmbiguousSegment => {
                "the request path has an ambiguous dot-segment (with parameters, an encoded separator, or extra dots)"
            }
        }
    }
}

/// The path requests are routed on and forwarded with; borrowed when `path` is already normal.
///
/// # Errors
///
/// A path whose meaning backends disagree on; see the module documentation.
pub fn normalize(path: &str) -> Result<Cow<'_, str>, Refused> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') || plain(bytes) {
        return Ok(Cow::Borrowed(path));
    }
    rebuild(bytes).map(Cow::Owned)
}

/// The normalised form of a path that starts with `/`, built anew.
fn rebuild(bytes: &[u8]) -> Result<String, Refused> {
    let decoded = decode(bytes)?;
    let mut out: Vec<u8> = Vec::with_capacity(decoded.len());
    // Where each kept segment starts in `out` (at its `/`), for `..`.
    let mut starts: Vec<usize> = Vec::new();
    let mut trailing = false;
    for segment in decoded[1..].split(|b| *b == b'/') {
        check_segment(segment)?;
        trailing = true;
        match segment {
            b"" | b"." => {}
            b".." => {
                if let Some(start) = starts.pop() {
                    out.truncate(start);
                }
            }
            _ => {
                starts.push(out.len());
                out.push(b'/');
                out.extend_from_slice(segment);
                trailing = false;
            }
        }
    }
    if out.is_empty() || trailing {
        out.push(b'/');
    }
    // Only ASCII bytes were changed, so `out` is as valid UTF-8 as the path was.
    String::from_utf8(out).map_err(|_| Refused::InvalidCharacter)
}

/// One scan: nothing in `path` that normalisation would change or refuse.
fn plain(path: &[u8]) -> bool {
    let mut prev = 0u8;
    for &b in path {
        match b {
            b'%' | b'\\' | b'#' => return false,
            b'.' | b'/' if prev == b'/' => return false,
            _ => {}
        }
        prev = b;
    }
    true
}

/// Decode escaped unreserved characters, upper-case the other escapes, refuse what step 3 of the
/// module documentation lists for single characters.
fn decode(path: &[u8]) -> Result<Vec<u8>, Refused> {
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        let b = path[i];
        match b {
            b'%' => {
                let hex = |at: usize| {
                    path.get(at)
                        .and_then(|h| char::from(*h).to_digit(16))
                        .ok_or(Refused::BadEscape)
                };
                let value =
                    u8::try_from(hex(i + 1)? * 16 + hex(i + 2)?).map_err(|_| Refused::BadEscape)?;
                if value < 0x20 || value == 0x7f {
                    return Err(Refused::ControlCharacter);
                }
                if value == b'/' || value == b'\\' {
                    return Err(Refused::EncodedSeparator);
                }
                if value.is_ascii_alphanumeric() || matches!(value, b'-' | b'.' | b'_' | b'~') {
                    out.push(value);
                } else {
                    out.push(b'%');
                    out.extend_from_slice(&path[i + 1..i + 3]);
                    let n = out.len();
                    out[n - 2..].make_ascii_uppercase();
                }
                i += 3;
            }
            b'\\' | b'#' => return Err(Refused::InvalidCharacter),
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Refuse a (decoded) segment that some backend would take for a dot-segment: its name (the
/// part before any parameters, `;` or `%3B`, which Tomcat strips) is made of dots (and spaces),
/// unless the whole segment is exactly `.` or `..`. (Encoded separators never get here: they
/// are refused while decoding.)
fn check_segment(segment: &[u8]) -> Result<(), Refused> {
    if segment == b"." || segment == b".." || !segment.contains(&b'.') {
        return Ok(());
    }
    let end = (0..=segment.len())
        .find(|&i| {
            i == segment.len()
                || segment[i] == b';'
                || segment.get(i..i + 3).is_some_and(|e| e == b"%3B")
        })
        .unwrap_or(segment.len());
    if dots_only(&segment[..end]) {
        return Err(Refused::AmbiguousSegment);
    }
    Ok(())
}

/// At least one dot, and nothing but dots and encoded spaces.
fn dots_only(piece: &[u8]) -> bool {
    let mut dots = 0;
    let mut i = 0;
    while i < piece.len() {
        if piece[i] == b'.' {
            dots += 1;
            i += 1;
        } else if piece[i..].starts_with(b"%20") {
            i += 3;
        } else {
            return false;
        }
    }
    dots > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_are_borrowed() {
        for path in [
            "/",
            "/pub/x",
            "/a.b/c.d",
            "/a/b/",
            "/x;y=1",
            "/x..y/z.",
            "/pub/x;../priv",
            "*",
            "",
            "/caf\u{e9}",
        ] {
            assert!(
                matches!(normalize(path), Ok(Cow::Borrowed(p)) if p == path),
                "{path}"
            );
        }
    }

    #[test]
    fn table() {
        let ok = |p: &str| normalize(p).map(Cow::into_owned);
        for (path, want) in [
            // Dot-segments, RFC 3986 §5.2.4.
            ("/pub/../priv", "/priv"),
            ("/pub/../priv/x", "/priv/x"),
            ("/./priv", "/priv"),
            ("/pub/./x", "/pub/x"),
            ("/a/b/../../priv", "/priv"),
            ("/../priv", "/priv"),
            ("/../../..", "/"),
            ("/pub/..", "/"),
            ("/a/b/..", "/a/"),
            ("/pub/.", "/pub/"),
            ("/pub/", "/pub/"),
            ("/.", "/"),
            ("/..", "/"),
            ("/.hidden/x", "/.hidden/x"),
            ("/a/..b/c", "/a/..b/c"),
            ("/pub;x/../priv", "/priv"),
            ("/pub/./x;../priv", "/pub/x;../priv"),
            // Encoded dots, any case, mixed with raw ones.
            ("/pub/%2e%2e/priv", "/priv"),
            ("/pub/%2E%2E/priv", "/priv"),
            ("/pub/.%2E/priv", "/priv"),
            ("/pub/%2e./priv", "/priv"),
            ("/%2e/priv", "/priv"),
            ("/pub/%2e%2e", "/"),
            // Unreserved characters decoded; others kept, upper-cased.
            ("/%70riv/x", "/priv/x"),
            ("/%50%52%49%56", "/PRIV"),
            ("/pub/%7euser", "/pub/~user"),
            ("/pub/a%3bb", "/pub/a%3Bb"),
            ("/pub/a%20b", "/pub/a%20b"),
            ("/pub/%25", "/pub/%25"),
            ("/pub/%252e%252e/x", "/pub/%252e%252e/x"),
            ("/pub/caf%c3%a9", "/pub/caf%C3%A9"),
            // Empty segments collapse.
            ("//priv", "/priv"),
            ("/pub//x", "/pub/x"),
            ("/pub//../priv", "/priv"),
            ("/a//", "/a/"),
            ("//", "/"),
        ] {
            assert_eq!(ok(path), Ok(want.to_owned()), "{path}");
            assert_eq!(ok(want), Ok(want.to_owned()), "{want} is a fixed point");
        }
    }

    /// Every path of up to 6 characters from an alphabet rich in dots, escapes and separators:
    /// the one-scan check agrees with the full rebuild, a result is a fixed point, and it holds
    /// no dot-segment, no empty segment and no escaped dot.
    #[test]
    fn exhaustive_small_paths_keep_the_invariants() {
        const ALPHABET: &[u8] = b"a./%2eEF;";
        let mut path = Vec::with_capacity(8);
        for len in 0..=6u32 {
            for mut n in 0..ALPHABET.len().pow(len) {
                path.clear();
                path.push(b'/');
                for _ in 0..len {
                    path.push(ALPHABET[n % ALPHABET.len()]);
                    n /= ALPHABET.len();
                }
                let p = std::str::from_utf8(&path).unwrap();
                if plain(&path) {
                    assert_eq!(rebuild(&path).as_deref(), Ok(p), "plain {p}");
                }
                let Ok(q) = normalize(p) else { continue };
                assert_eq!(
                    normalize(&q).as_deref(),
                    Ok(&*q),
                    "{p} -> {q} is not a fixed point"
                );
                assert!(q.starts_with('/'), "{p} -> {q}");
                let inner = q.strip_suffix('/').unwrap_or(&q);
                for segment in inner.split('/').skip(1) {
                    assert!(!matches!(segment, "" | "." | ".."), "{p} -> {q}");
                }
                assert!(!q.to_ascii_uppercase().contains("%2E"), "{p} -> {q}");
            }
        }
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        use Refused::*;
        for (path, why) in [
            ("/pub/..;/priv", AmbiguousSegment),
            ("/pub/..;x=1/priv", AmbiguousSegment),
            ("/pub/.;/priv", AmbiguousSegment),
            ("/pub/%2e%2e;/priv", AmbiguousSegment),
            ("/pub/..%3b/priv", AmbiguousSegment),
            ("/pub/..%2fpriv", EncodedSeparator),
            ("/pub/..%2F..%2Fpriv", EncodedSeparator),
            ("/pub/..%5cpriv", EncodedSeparator),
            ("/pub/a%2F..%2Fpriv", EncodedSeparator),
            ("/pub/%2F..", EncodedSeparator),
            ("/pub/.../priv", AmbiguousSegment),
            ("/pub/..%20/priv", AmbiguousSegment),
            ("/pub/.%2e%2e/priv", AmbiguousSegment),
            ("/pub\\..\\priv", InvalidCharacter),
            ("/priv#x", InvalidCharacter),
            ("/pub/%", BadEscape),
            ("/pub/%2", BadEscape),
            ("/pub/%zz", BadEscape),
            ("/pub/%+1", BadEscape),
            ("/priv%00", ControlCharacter),
            ("/priv%0d%0a", ControlCharacter),
            ("/priv%7F", ControlCharacter),
            ("/priv%2Fadmin", EncodedSeparator),
            ("/priv%2fadmin", EncodedSeparator),
            ("/priv%5Cadmin", EncodedSeparator),
            ("/pub/./x;%2F../priv", EncodedSeparator),
        ] {
            assert_eq!(normalize(path), Err(why), "{path}");
        }
    }
}
