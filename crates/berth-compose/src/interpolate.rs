//! `${VAR}` interpolation, as Compose does it.
//!
//! Responsibility: substitute variables in every string scalar of the merged document (keys are
//! left alone) and list the variables a document uses. Forms: `$VAR`, `${VAR}`, `${VAR:-default}`,
//! `${VAR-default}`, `${VAR:?message}`, `${VAR?message}`, `${VAR:+alt}`, `${VAR+alt}`; defaults and
//! alternatives may themselves contain `${...}`; `$$` is a literal `$`. An unset variable with no
//! default becomes the empty string (Compose warns; Berth's CLI sends every variable it can).

use std::collections::BTreeMap;

use crate::yaml::{Kind, Value};
use crate::ComposeError;

/// Nesting limit for `${A:-${B:-...}}`, so hostile input cannot exhaust the stack.
const MAX_DEPTH: usize = 16;

/// Variable lookup: `None` is unset, `Some("")` is set but empty.
pub(crate) trait Lookup {
    fn get(&self, name: &str) -> Option<&str>;
}

impl Lookup for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        BTreeMap::get(self, name).map(String::as_str)
    }
}

/// Records names instead of looking them up (for `referenced_variables`).
struct Recorder<'a>(&'a mut Vec<String>);

/// Substitutes variables in one string. `Err` carries a message (the caller adds the path).
pub(crate) fn substitute(input: &str, env: &dyn Lookup) -> Result<String, String> {
    let mut sink = None;
    expand(input, env, &mut sink, 0)
}

/// Collects the variable names used in `input` (ignores malformed parts).
pub(crate) fn collect(input: &str, names: &mut Vec<String>) {
    let empty = BTreeMap::new();
    let mut sink = Some(Recorder(names));
    let _ = expand(input, &empty, &mut sink, 0);
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn expand(
    input: &str,
    env: &dyn Lookup,
    rec: &mut Option<Recorder<'_>>,
    depth: usize,
) -> Result<String, String> {
    if depth > MAX_DEPTH {
        return Err("interpolation nested too deeply".into());
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let mut chars = after.chars();
        match chars.next() {
            Some('$') => {
                out.push('$');
                rest = &after[1..];
            }
            Some('{') => {
                let body_start = &after[1..];
                let end = matching_brace(body_start).ok_or_else(|| {
                    format!("invalid interpolation format in {input:?}: missing closing brace")
                })?;
                let body = &body_start[..end];
                out.push_str(&braced(body, input, env, rec, depth)?);
                rest = &body_start[end + 1..];
            }
            Some(c) if is_name_start(c) => {
                let len = after
                    .find(|c: char| !is_name_char(c))
                    .unwrap_or(after.len());
                let name = &after[..len];
                if let Some(r) = rec {
                    r.0.push(name.to_owned());
                }
                out.push_str(env.get(name).unwrap_or(""));
                rest = &after[len..];
            }
            _ => {
                return Err(format!(
                    "invalid interpolation format in {input:?}: use $$ for a literal $"
                ))
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Index of the `}` closing a `${`, counting nested `${`.
fn matching_brace(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'$' if bytes.get(i + 1) == Some(&b'$') => i += 1,
            b'}' => {
                if depth == 0 {
                    return Some(i);
                }
                depth -= 1;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

fn braced(
    body: &str,
    input: &str,
    env: &dyn Lookup,
    rec: &mut Option<Recorder<'_>>,
    depth: usize,
) -> Result<String, String> {
    let name_len = body.find(|c: char| !is_name_char(c)).unwrap_or(body.len());
    let name = &body[..name_len];
    if !name.starts_with(is_name_start) {
        return Err(format!(
            "invalid interpolation format in {input:?}: bad variable name"
        ));
    }
    if let Some(r) = rec {
        r.0.push(name.to_owned());
    }
    let op = &body[name_len..];
    let value = env.get(name);
    let set_non_empty = value.is_some_and(|v| !v.is_empty());
    let (colon, op) = match op.strip_prefix(':') {
        Some(o) => (true, o),
        None => (false, op),
    };
    let present = if colon {
        set_non_empty
    } else {
        value.is_some()
    };
    let Some(kind) = op.chars().next() else {
        if colon {
            return Err(format!("invalid interpolation format in {input:?}"));
        }
        return Ok(value.unwrap_or("").to_owned());
    };
    let arg = &op[kind.len_utf8()..];
    match kind {
        '-' => {
            if present {
                Ok(value.unwrap_or("").to_owned())
            } else {
                expand(arg, env, rec, depth + 1)
            }
        }
        '+' => {
            if present {
                expand(arg, env, rec, depth + 1)
            } else {
                Ok(String::new())
            }
        }
        '?' => {
            if present {
                Ok(value.unwrap_or("").to_owned())
            } else if rec.is_some() {
                // Recording: a missing variable is not an error.
                expand(arg, env, rec, depth + 1)
            } else {
                let msg = expand(arg, env, rec, depth + 1)?;
                Err(if msg.is_empty() {
                    format!("required variable {name} is missing a value")
                } else {
                    format!("required variable {name} is missing a value: {msg}")
                })
            }
        }
        _ => Err(format!("invalid interpolation format in {input:?}")),
    }
}

/// Interpolates every string scalar of `value`; `path` names it in errors.
pub(crate) fn interpolate_tree(
    value: &mut Value,
    path: &str,
    env: &dyn Lookup,
) -> Result<(), ComposeError> {
    match value {
        Value::Scalar(s, Kind::Str) if s.contains('$') => {
            *s = substitute(s, env).map_err(|message| ComposeError::Invalid {
                path: path.to_owned(),
                message,
            })?;
        }
        Value::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_tree(item, &format!("{path}[{i}]"), env)?;
            }
        }
        Value::Map(entries) => {
            for (k, v) in entries.iter_mut() {
                interpolate_tree(v, &crate::join(path, k), env)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Collects variable names from every string scalar of `value`.
pub(crate) fn collect_tree(value: &Value, names: &mut Vec<String>) {
    match value {
        Value::Scalar(s, Kind::Str) => collect(s, names),
        Value::Seq(items) => items.iter().for_each(|v| collect_tree(v, names)),
        Value::Map(entries) => entries.iter().for_each(|(_, v)| collect_tree(v, names)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> BTreeMap<String, String> {
        [("SET", "v"), ("EMPTY", ""), ("PORT", "8080")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn forms_table() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("plain", Ok("plain")),
            ("$SET", Ok("v")),
            ("${SET}", Ok("v")),
            ("a${SET}b$SET.c", Ok("avbv.c")),
            ("${UNSET}", Ok("")),
            ("$UNSET", Ok("")),
            ("${UNSET:-def}", Ok("def")),
            ("${EMPTY:-def}", Ok("def")),
            ("${EMPTY-def}", Ok("")),
            ("${UNSET-def}", Ok("def")),
            ("${SET:-def}", Ok("v")),
            ("${SET:+alt}", Ok("alt")),
            ("${EMPTY:+alt}", Ok("")),
            ("${EMPTY+alt}", Ok("alt")),
            ("${UNSET+alt}", Ok("")),
            ("${UNSET:-${PORT}}", Ok("8080")),
            ("${UNSET:-${ALSO:-x}y}", Ok("xy")),
            ("$$SET", Ok("$SET")),
            ("cost: $$5", Ok("cost: $5")),
            (
                "${UNSET:?need it}",
                Err("required variable UNSET is missing a value: need it"),
            ),
            (
                "${EMPTY:?}",
                Err("required variable EMPTY is missing a value"),
            ),
            ("${EMPTY?x}", Ok("")),
            (
                "${UNSET?x}",
                Err("required variable UNSET is missing a value: x"),
            ),
            ("${SET:?x}", Ok("v")),
        ];
        for (input, want) in cases {
            let got = substitute(input, &env());
            match want {
                Ok(w) => assert_eq!(got.as_deref(), Ok(*w), "{input}"),
                Err(w) => assert_eq!(got.unwrap_err(), *w, "{input}"),
            }
        }
    }

    #[test]
    fn malformed() {
        for input in [
            "${", "${SET", "$", "a $ b", "${1X}", "${SET:}", "${SET%x}", "$1",
        ] {
            assert!(substitute(input, &env()).is_err(), "{input}");
        }
    }

    #[test]
    fn collects_names() {
        let mut names = Vec::new();
        collect("$A ${B:-${C}} ${D:?m} $$E ${F+x}", &mut names);
        assert_eq!(names, ["A", "B", "C", "D", "F"]);
    }
}
