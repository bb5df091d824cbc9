//! Typed readers for single values: strings, booleans, integers, durations, sizes, ports,
//! shell words.
//!
//! Responsibility: Compose's value syntaxes, each as a small pure function, and the helpers that
//! turn a generic node into a Rust value or an [`ComposeError::Invalid`] naming its path. Numbers
//! are accepted from YAML numbers and from strings (interpolation produces strings, as in Compose).

use std::net::IpAddr;

use crate::model::{PortSpec, Protocol};
use crate::yaml::{Kind, Value};
use crate::ComposeError;

/// An [`ComposeError::Invalid`] at `path`.
pub(crate) fn invalid(path: &str, message: impl Into<String>) -> ComposeError {
    ComposeError::Invalid {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// Any scalar as its text.
pub(crate) fn string(v: &Value, path: &str) -> Result<String, ComposeError> {
    match v {
        Value::Scalar(s, _) => Ok(s.clone()),
        other => Err(invalid(
            path,
            format!("expected a string, got {}", other.type_name()),
        )),
    }
}

/// A string, or `None` for an absent or null value.
pub(crate) fn opt_string(v: Option<&Value>, path: &str) -> Result<Option<String>, ComposeError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => string(v, path).map(Some),
    }
}

/// A list of scalars.
pub(crate) fn string_list(v: &Value, path: &str) -> Result<Vec<String>, ComposeError> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Seq(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| string(item, &format!("{path}[{i}]")))
            .collect(),
        other => Err(invalid(
            path,
            format!("expected a list, got {}", other.type_name()),
        )),
    }
}

/// One string or a list of strings.
pub(crate) fn string_or_list(v: &Value, path: &str) -> Result<Vec<String>, ComposeError> {
    match v {
        Value::Scalar(s, _) => Ok(vec![s.clone()]),
        other => string_list(other, path),
    }
}

/// `true` / `false` (a YAML boolean, or a string after interpolation).
pub(crate) fn boolean(v: &Value, path: &str) -> Result<bool, ComposeError> {
    match v {
        Value::Scalar(s, Kind::Bool | Kind::Str) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::Scalar(s, Kind::Bool | Kind::Str) if s.eq_ignore_ascii_case("false") => Ok(false),
        other => Err(invalid(
            path,
            format!(
                "expected true or false, got {}",
                other.scalar_text().map_or(other.type_name(), |s| s)
            ),
        )),
    }
}

/// A boolean defaulting to `false` when absent or null.
pub(crate) fn opt_bool(v: Option<&Value>, path: &str) -> Result<bool, ComposeError> {
    match v {
        None | Some(Value::Null) => Ok(false),
        Some(v) => boolean(v, path),
    }
}

/// A non-negative integer that fits `T`.
pub(crate) fn uint<T: TryFrom<u64>>(v: &Value, path: &str) -> Result<T, ComposeError> {
    let text = match v {
        Value::Scalar(s, Kind::Int | Kind::Str) => s.trim(),
        other => {
            return Err(invalid(
                path,
                format!("expected an integer, got {}", other.type_name()),
            ))
        }
    };
    text.parse::<u64>()
        .ok()
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| {
            invalid(
                path,
                format!("{text:?} is not a valid non-negative integer here"),
            )
        })
}

/// An optional integer.
pub(crate) fn opt_uint<T: TryFrom<u64>>(
    v: Option<&Value>,
    path: &str,
) -> Result<Option<T>, ComposeError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => uint(v, path).map(Some),
    }
}

/// A finite number (YAML number or numeric string).
pub(crate) fn number(v: &Value, path: &str) -> Result<f64, ComposeError> {
    let text = match v {
        Value::Scalar(s, Kind::Int | Kind::Float | Kind::Str) => s.trim(),
        other => {
            return Err(invalid(
                path,
                format!("expected a number, got {}", other.type_name()),
            ))
        }
    };
    text.parse::<f64>()
        .ok()
        .filter(|n| n.is_finite())
        .ok_or_else(|| invalid(path, format!("{text:?} is not a number")))
}

/// A Compose duration (`500ms`, `10s`, `1m30s`, `1.5h`, `2us`) in milliseconds, rounded.
/// A bare number is refused (Compose's schema wants a unit), except `0`.
pub(crate) fn duration_ms(v: &Value, path: &str) -> Result<u64, ComposeError> {
    let text = match v {
        Value::Scalar(s, _) => s.trim(),
        other => {
            return Err(invalid(
                path,
                format!("expected a duration such as 10s, got {}", other.type_name()),
            ))
        }
    };
    parse_duration(text).map_err(|m| invalid(path, m))
}

/// An optional duration.
pub(crate) fn opt_duration(v: Option<&Value>, path: &str) -> Result<Option<u64>, ComposeError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => duration_ms(v, path).map(Some),
    }
}

/// Parses a Go-style duration into milliseconds.
pub(crate) fn parse_duration(text: &str) -> Result<u64, String> {
    let bad = || format!("invalid duration {text:?} (use e.g. 500ms, 10s, 1m30s)");
    if text == "0" {
        return Ok(0);
    }
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total_ns = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_len];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return Err(bad());
        }
        let n: f64 = num.parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        if rest.is_empty() {
            return Err(format!(
                "invalid duration {text:?}: missing unit (e.g. 10s)"
            ));
        }
        let units: [(&str, f64); 8] = [
            ("ns", 1.0),
            ("us", 1e3),
            ("µs", 1e3),
            ("μs", 1e3),
            ("ms", 1e6),
            ("s", 1e9),
            ("m", 60e9),
            ("h", 3600e9),
        ];
        let (unit, scale) = units
            .iter()
            .find(|(u, _)| rest.starts_with(u))
            .ok_or_else(bad)?;
        rest = &rest[unit.len()..];
        total_ns += n * scale;
    }
    let ms = (total_ns / 1e6).round();
    if !ms.is_finite() || ms >= 1.8e19 {
        return Err(format!("duration {text:?} is too large"));
    }
    // In range and non-negative by construction.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(ms as u64)
}

/// A memory size: a byte count, or `512M`, `1g`, `100mb`, `1.5GiB`-style strings (binary units).
pub(crate) fn memory_bytes(v: &Value, path: &str) -> Result<i64, ComposeError> {
    let text = match v {
        Value::Scalar(s, _) => s.trim(),
        other => {
            return Err(invalid(
                path,
                format!("expected a size such as 512M, got {}", other.type_name()),
            ))
        }
    };
    parse_memory(text).map_err(|m| invalid(path, m))
}

/// Parses a memory size into bytes.
///
/// # Errors
/// A message naming the text when it is no size.
pub fn parse_memory(text: &str) -> Result<i64, String> {
    let bad = || format!("invalid size {text:?} (use e.g. 512M, 1g, 100mb or a byte count)");
    let num_len = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(num_len);
    let n: f64 = num.parse().map_err(|_| bad())?;
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit.strip_suffix("ib").map_or_else(
        || unit.strip_suffix('b').unwrap_or(&unit).to_owned(),
        str::to_owned,
    );
    let scale: f64 = match unit.as_str() {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return Err(bad()),
    };
    let bytes = (n * scale).round();
    if !bytes.is_finite() || bytes >= 9.2e18 {
        return Err(format!("size {text:?} is too large"));
    }
    // In range and non-negative by construction.
    #[allow(clippy::cast_possible_truncation)]
    Ok(bytes as i64)
}

/// Splits a command line like a POSIX shell: whitespace separates words, single quotes are
/// literal, double quotes allow `\"`, `\\`, `\$` and `` \` `` escapes, a backslash outside quotes
/// escapes the next character.
pub(crate) fn shell_split(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err(format!("unterminated single quote in {s:?}")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => cur.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err(format!("unterminated double quote in {s:?}")),
                        },
                        Some(c) => cur.push(c),
                        None => return Err(format!("unterminated double quote in {s:?}")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') => {}
                    Some(c) => cur.push(c),
                    None => cur.push('\\'),
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// A command: a list of words, or a string split like a shell.
pub(crate) fn command(v: &Value, path: &str) -> Result<Option<Vec<String>>, ComposeError> {
    match v {
        Value::Null => Ok(None),
        Value::Scalar(s, _) => shell_split(s).map(Some).map_err(|m| invalid(path, m)),
        other => string_list(other, path).map(Some),
    }
}

fn port_number(s: &str) -> Result<u16, String> {
    s.trim()
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("invalid port {s:?}"))
}

/// A port or a `start-end` range, inclusive.
pub(crate) fn port_range(s: &str) -> Result<Vec<u16>, String> {
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (port_number(a)?, port_number(b)?);
            if a > b {
                return Err(format!("invalid port range {s:?}"));
            }
            Ok((a..=b).collect())
        }
        None => Ok(vec![port_number(s)?]),
    }
}

/// A protocol name.
pub(crate) fn protocol(s: &str) -> Result<Protocol, String> {
    match s.to_ascii_lowercase().as_str() {
        "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        other => Err(format!("protocol {other:?} is not supported (tcp or udp)")),
    }
}

/// An IP address, with or without IPv6 brackets.
pub(crate) fn host_ip(s: &str) -> Result<IpAddr, String> {
    let t = s.trim();
    let t = t
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(t);
    t.parse()
        .map_err(|_| format!("invalid host IP address {s:?}"))
}

/// The short port syntax: `[host_ip:][published[-range]:]target[-range][/protocol]`.
pub(crate) fn short_port(spec: &str) -> Result<Vec<PortSpec>, String> {
    let (body, proto) = match spec.rsplit_once('/') {
        Some((b, p)) => (b, protocol(p)?),
        None => (spec, Protocol::Tcp),
    };
    let mut parts = body.rsplitn(3, ':');
    let target = parts.next().unwrap_or_default();
    let published = parts.next();
    let ip = parts.next();
    let host_ip = match ip {
        None | Some("") => None,
        Some(ip) => Some(host_ip(ip)?),
    };
    let targets = port_range(target)?;
    let published = match published {
        None | Some("") => vec![None; targets.len()],
        Some(p) => {
            let ports = port_range(p)?;
            if ports.len() != targets.len() {
                return Err(format!(
                    "published range and target range of {spec:?} differ in length"
                ));
            }
            ports.into_iter().map(Some).collect()
        }
    };
    Ok(targets
        .into_iter()
        .zip(published)
        .map(|(target, published)| PortSpec {
            host_ip,
            published,
            target,
            protocol: proto,
            leased: false,
        })
        .collect())
}

/// Lexically normalizes a relative (or absolute) path: drops `.` and empty parts, folds `..`.
pub(crate) fn normalize_path(p: &str) -> String {
    let absolute = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !absolute {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    if absolute {
        format!("/{joined}")
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok: &[(&str, u64)] = &[
            ("0", 0),
            ("500ms", 500),
            ("10s", 10_000),
            ("1m30s", 90_000),
            ("1h", 3_600_000),
            ("2us", 0),
            ("1500us", 2),
            ("1.5s", 1_500),
            ("1h2m3s4ms", 3_723_004),
            ("100ns", 0),
        ];
        for (s, want) in ok {
            assert_eq!(parse_duration(s), Ok(*want), "{s}");
        }
        for s in ["", "10", "s", "-1s", "1x", "1.2.3s", "ms", "1s2", "abc"] {
            assert!(parse_duration(s).is_err(), "{s}");
        }
    }

    #[test]
    fn memory() {
        let ok: &[(&str, i64)] = &[
            ("512M", 512 << 20),
            ("1g", 1 << 30),
            ("100mb", 100 << 20),
            ("1024", 1024),
            ("2k", 2048),
            ("1.5G", 3 << 29),
            ("1GiB", 1 << 30),
            ("10b", 10),
        ];
        for (s, want) in ok {
            assert_eq!(parse_memory(s), Ok(*want), "{s}");
        }
        for s in ["", "M", "1x", "-5m", "1.2.3g"] {
            assert!(parse_memory(s).is_err(), "{s}");
        }
    }

    #[test]
    fn shell_words() {
        let cases: &[(&str, &[&str])] = &[
            ("a b  c", &["a", "b", "c"]),
            ("sh -c 'echo $HOME; ls'", &["sh", "-c", "echo $HOME; ls"]),
            (r#"echo "a \"b\" c" d"#, &["echo", "a \"b\" c", "d"]),
            (r"a\ b c", &["a b", "c"]),
            ("''", &[""]),
            ("", &[]),
        ];
        for (s, want) in cases {
            assert_eq!(shell_split(s).unwrap(), *want, "{s}");
        }
        assert!(shell_split("echo 'open").is_err());
        assert!(shell_split("echo \"open").is_err());
    }

    #[test]
    fn paths() {
        assert_eq!(normalize_path("./a/b/../c"), "a/c");
        assert_eq!(normalize_path("../x"), "../x");
        assert_eq!(normalize_path("/p/./q/../r"), "/p/r");
        assert_eq!(normalize_path("/.."), "/");
    }
}
