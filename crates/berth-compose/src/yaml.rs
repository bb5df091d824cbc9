//! YAML text to a generic [`Value`] tree.
//!
//! Responsibility: turn one Compose file into a tree that keeps every scalar *exactly as written*
//! (`0022`, `1_000`, `1.0`, `yes`, `True` all keep their spelling) together with the kind the YAML
//! core schema would give it, so later stages can decide per key whether a value is a string, a
//! number or a boolean. Anchors, aliases and `<<` merge keys are resolved by `serde-saphyr`; this
//! module never interprets Compose semantics.
//!
//! How the spelling is kept: `serde-saphyr` is run with `strict_booleans`,
//! `leading_zero_numbers_as_strings` and `underscored_numbers_as_strings`, and every node is read
//! as a `Spanned<_>`; for the scalars it still types (numbers, `true`/`false`) the original text is
//! sliced back out of the source by the node's byte span.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use crate::ComposeError;

/// What the YAML core schema would make of a scalar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A string (quoted, or plain text that is not a number or boolean).
    Str,
    /// `true` / `false` (strict: `yes`/`on` are strings).
    Bool,
    /// An integer.
    Int,
    /// A floating-point number.
    Float,
}

/// A generic YAML node. Mappings keep document order; keys are strings (non-string keys are
/// stored as their text).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// `null`, `~` or an empty value.
    Null,
    /// A scalar: its text exactly as written (after YAML unquoting) and its kind.
    Scalar(String, Kind),
    /// A sequence.
    Seq(Vec<Value>),
    /// A mapping in document order.
    Map(Vec<(String, Value)>),
}

impl Value {
    /// A string scalar.
    pub(crate) fn str(s: impl Into<String>) -> Self {
        Value::Scalar(s.into(), Kind::Str)
    }

    /// The entry `key` of a mapping.
    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The text of a scalar of any kind.
    pub(crate) fn scalar_text(&self) -> Option<&str> {
        match self {
            Value::Scalar(s, _) => Some(s),
            _ => None,
        }
    }

    /// A short name of the node's type, for error messages.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Scalar(_, Kind::Str) => "a string",
            Value::Scalar(_, Kind::Bool) => "a boolean",
            Value::Scalar(_, Kind::Int) => "an integer",
            Value::Scalar(_, Kind::Float) => "a number",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// The node as `serde-saphyr` types it, before the original spelling is restored.
enum Raw {
    Null,
    Str(String),
    Typed(Kind, String),
    Seq(Vec<Spanned<Raw>>),
    Map(Vec<(Spanned<Raw>, Spanned<Raw>)>),
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML node")
    }
    fn visit_unit<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }
    fn visit_none<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
        d.deserialize_any(RawVisitor)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Raw, E> {
        Ok(Raw::Typed(Kind::Bool, v.to_string()))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Raw, E> {
        Ok(Raw::Typed(Kind::Int, v.to_string()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Raw, E> {
        Ok(Raw::Typed(Kind::Int, v.to_string()))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Raw, E> {
        Ok(Raw::Typed(Kind::Int, v.to_string()))
    }
    fn visit_u128<E>(self, v: u128) -> Result<Raw, E> {
        Ok(Raw::Typed(Kind::Int, v.to_string()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Raw, E> {
        Ok(Raw::Typed(Kind::Float, v.to_string()))
    }
    fn visit_str<E>(self, v: &str) -> Result<Raw, E> {
        Ok(Raw::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Raw, E> {
        Ok(Raw::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Raw, E> {
        String::from_utf8(v.to_vec())
            .map(Raw::Str)
            .map_err(|_| E::custom("binary values are not supported"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element()? {
            out.push(v);
        }
        Ok(Raw::Seq(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        let mut out = Vec::new();
        while let Some(entry) = map.next_entry()? {
            out.push(entry);
        }
        Ok(Raw::Map(out))
    }
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Raw, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

/// Parses one YAML document. `file` names it in errors.
pub(crate) fn parse(file: &str, text: &str) -> Result<Value, ComposeError> {
    let options = serde_saphyr::options! {
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
        underscored_numbers_as_strings: true,
        with_snippet: false,
    };
    let raw: Spanned<Raw> =
        serde_saphyr::from_str_with_options(text, options).map_err(|e| syntax(file, &e))?;
    restore(file, text, raw)
}

fn syntax(file: &str, e: &serde_saphyr::Error) -> ComposeError {
    let mut message = e.to_string();
    if let Some(loc) = e.location() {
        if loc.line() > 0 && !message.contains(&format!("line {}", loc.line())) {
            message = format!("line {} column {}: {message}", loc.line(), loc.column());
        }
    }
    ComposeError::Syntax {
        file: file.to_owned(),
        message,
    }
}

/// Turns the typed tree back into spelled-as-written scalars.
fn restore(file: &str, text: &str, node: Spanned<Raw>) -> Result<Value, ComposeError> {
    Ok(match node.value {
        Raw::Null => Value::Null,
        Raw::Str(s) => Value::Scalar(s, Kind::Str),
        Raw::Typed(kind, fallback) => {
            let span = node.defined.span();
            let written = match (span.byte_offset(), span.byte_len()) {
                (Some(off), Some(len)) => usize::try_from(off)
                    .ok()
                    .zip(usize::try_from(len).ok())
                    .and_then(|(off, len)| text.get(off..off.checked_add(len)?))
                    .map(str::trim)
                    .filter(|s| {
                        !s.is_empty()
                            && !s.contains(['\n', '"', '\'', '#', ',', '[', ']', '{', '}'])
                    }),
                _ => None,
            };
            Value::Scalar(written.map_or(fallback, str::to_owned), kind)
        }
        Raw::Seq(items) => Value::Seq(
            items
                .into_iter()
                .map(|v| restore(file, text, v))
                .collect::<Result<_, _>>()?,
        ),
        Raw::Map(entries) => {
            let mut out = Vec::with_capacity(entries.len());
            for (k, v) in entries {
                let line = k.referenced.line();
                let key = match restore(file, text, k)? {
                    Value::Scalar(s, _) => s,
                    Value::Null => String::new(),
                    _ => {
                        return Err(ComposeError::Syntax {
                            file: file.to_owned(),
                            message: format!("line {line}: mapping keys must be plain scalars"),
                        })
                    }
                };
                out.push((key, restore(file, text, v)?));
            }
            Value::Map(out)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_spelling_of_typed_scalars() {
        let v = parse(
            "f",
            "a: 0022\nb: 1_000\nc: yes\nd: 1.0\ne: True\nf: 0x1F\ng: ~\nh: 'x'\n",
        )
        .unwrap();
        let text = |k: &str| v.get(k).and_then(Value::scalar_text).map(str::to_owned);
        assert_eq!(text("a").as_deref(), Some("0022"));
        assert_eq!(text("b").as_deref(), Some("1_000"));
        assert_eq!(text("c").as_deref(), Some("yes"));
        assert_eq!(v.get("c"), Some(&Value::Scalar("yes".into(), Kind::Str)));
        assert_eq!(v.get("d"), Some(&Value::Scalar("1.0".into(), Kind::Float)));
        assert_eq!(v.get("e"), Some(&Value::Scalar("True".into(), Kind::Bool)));
        assert_eq!(text("f").as_deref(), Some("0x1F"));
        assert_eq!(v.get("g"), Some(&Value::Null));
        assert_eq!(text("h").as_deref(), Some("x"));
    }

    #[test]
    fn spelling_survives_multibyte_text_and_crlf() {
        let v = parse("f", "é: ü€\r\nn: 0x10\r\nl: [ä, 1.50, +7]\r\n").unwrap();
        assert_eq!(v.get("n").and_then(Value::scalar_text), Some("0x10"));
        let Some(Value::Seq(items)) = v.get("l") else {
            panic!("{v:?}")
        };
        let texts: Vec<_> = items.iter().filter_map(Value::scalar_text).collect();
        assert_eq!(texts, ["ä", "1.50", "+7"]);
    }

    #[test]
    fn anchors_and_merge_keys() {
        let v = parse("f", "x: &a {p: 1, q: 2}\ny:\n  <<: *a\n  q: 3\n").unwrap();
        let y = v.get("y").unwrap();
        assert_eq!(y.get("p").and_then(Value::scalar_text), Some("1"));
        assert_eq!(y.get("q").and_then(Value::scalar_text), Some("3"));
    }

    #[test]
    fn syntax_error_names_file_and_line() {
        let e = parse("compose.yaml", "a: [1, 2\nb: c\n").unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("compose.yaml: "), "{s}");
        assert!(s.contains("line"), "{s}");
    }
}
