//! `.env` and `env_file` parsing.
//!
//! Responsibility: `KEY=VALUE` lines as Compose reads them: blank lines and `#` comments skipped,
//! an optional `export ` prefix, single quotes literal, double quotes with `\n`, `\t`, `\"`, `\\`
//! escapes, unquoted values trimmed and cut at ` #`. A line with a bare `KEY` is returned with
//! `None` so the caller can look the value up (or drop it). Values are never interpolated here.

use crate::ComposeError;

/// One parsed entry: the key and its value, `None` for a bare `KEY` line.
pub(crate) type Entry = (String, Option<String>);

/// Parses an env file; `file` names it in errors.
pub(crate) fn parse(file: &str, text: &str) -> Result<Vec<Entry>, ComposeError> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        let err = |message: &str| ComposeError::Syntax {
            file: file.to_owned(),
            message: format!("line {}: {message}", n + 1),
        };
        let trimmed = line.trim_start_matches('\u{feff}').trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let trimmed = trimmed
            .strip_prefix("export ")
            .map_or(trimmed, str::trim_start);
        let (key, rest) = match trimmed.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v)),
            None => (trimmed, None),
        };
        if !valid_key(key) {
            return Err(err(&format!("invalid variable name {key:?}")));
        }
        let Some(rest) = rest else {
            out.push((key.to_owned(), None));
            continue;
        };
        let rest = rest.trim_start();
        let value = if let Some(body) = rest.strip_prefix('\'') {
            // Single quotes: literal, may span lines.
            let mut acc = body.to_owned();
            loop {
                if let Some(end) = acc.find('\'') {
                    acc.truncate(end);
                    break acc;
                }
                match lines.next() {
                    Some((_, next)) => {
                        acc.push('\n');
                        acc.push_str(next);
                    }
                    None => return Err(err("unterminated single quote")),
                }
            }
        } else if let Some(body) = rest.strip_prefix('"') {
            let mut acc = String::new();
            let mut chunk = body.to_owned();
            'outer: loop {
                let mut chars = chunk.chars();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break 'outer acc,
                        '\\' => match chars.next() {
                            Some('n') => acc.push('\n'),
                            Some('t') => acc.push('\t'),
                            Some('r') => acc.push('\r'),
                            Some(other @ ('"' | '\\' | '$' | '\'')) => acc.push(other),
                            Some(other) => {
                                acc.push('\\');
                                acc.push(other);
                            }
                            None => acc.push('\\'),
                        },
                        c => acc.push(c),
                    }
                }
                match lines.next() {
                    Some((_, next)) => {
                        acc.push('\n');
                        chunk = next.to_owned();
                    }
                    None => return Err(err("unterminated double quote")),
                }
            }
        } else {
            let cut = rest.find(" #").or_else(|| rest.find("\t#"));
            cut.map_or(rest, |i| &rest[..i]).trim().to_owned()
        };
        out.push((key.to_owned(), Some(value)));
    }
    Ok(out)
}

fn valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let text = "# comment\n\nA=1\nexport B = two \nC='lit $x # no'\nD=\"q\\n\\\"x\\\"\"\nE=val # comment\nF\nG=\nH=\"multi\nline\"\n";
        let got = parse(".env", text).unwrap();
        let want: Vec<Entry> = vec![
            ("A".into(), Some("1".into())),
            ("B".into(), Some("two".into())),
            ("C".into(), Some("lit $x # no".into())),
            ("D".into(), Some("q\n\"x\"".into())),
            ("E".into(), Some("val".into())),
            ("F".into(), None),
            ("G".into(), Some(String::new())),
            ("H".into(), Some("multi\nline".into())),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = parse("app.env", "A=1\n1BAD=2\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "app.env: line 2: invalid variable name \"1BAD\""
        );
        assert!(parse("x", "A='open\n").is_err());
        assert!(parse("x", "A=\"open\n").is_err());
    }
}
