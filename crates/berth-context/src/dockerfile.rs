//! The images a Dockerfile reads from: `FROM` (with `--platform=` and `AS name`), `COPY --from=`
//! / `ADD --from=`, and `RUN --mount=...,from=`. Berth checks them against the building team
//! before an image build is sent (docs/teams.md#images): an image of another team's `berth/`
//! must not be a base, a copy source or a mount.
//!
//! Rules it keeps:
//! - Parser directives (`# escape=`) are honoured; lines continued with the escape character
//!   are joined; comment lines (also inside a continuation) are skipped. Instruction names are
//!   case-insensitive.
//! - `ARG`s declared before the first `FROM` are substituted in the names (`$NAME`, `${NAME}`,
//!   `${NAME:-word}`, `${NAME:+word}`), with the build's `args` overriding their defaults, as
//!   the engine does; an undeclared or valueless one is empty. A name that still holds a `$`
//!   after substitution could not be resolved and is returned as it is.
//! - A name that is an earlier stage's (`AS name`, case-insensitive) or a stage index is no
//!   image and is left out; `scratch` is left out.
//! - It errs on the side of reporting: a heredoc line that looks like an instruction is read as
//!   one.

use std::collections::BTreeMap;

/// One image a Dockerfile reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUse {
    /// The instruction, upper case (`FROM`, `COPY`, `ADD`, `RUN`).
    pub instruction: String,
    /// The image reference, after `ARG` substitution.
    pub image: String,
}

/// Every image `text` reads (see the module docs), in order, with `args` the build's
/// arguments.
#[must_use]
pub fn dockerfile_images(text: &str, args: &BTreeMap<String, String>) -> Vec<ImageUse> {
    let escape = escape_char(text);
    let mut global: BTreeMap<String, String> = BTreeMap::new();
    let mut stages: Vec<String> = Vec::new();
    let mut seen_from = false;
    let mut out = Vec::new();
    for line in logical_lines(text, escape) {
        let mut words = line.split_whitespace();
        let Some(instruction) = words.next() else {
            continue;
        };
        let instruction = instruction.to_ascii_uppercase();
        let words: Vec<&str> = words.collect();
        match instruction.as_str() {
            "ARG" if !seen_from => {
                for w in &words {
                    let (name, default) = match w.split_once('=') {
                        Some((n, d)) => (n, Some(unquote(d))),
                        None => (*w, None),
                    };
                    let value = args
                        .get(name)
                        .cloned()
                        .or(default)
                        .map(|v| substitute(&v, &global))
                        .unwrap_or_default();
                    global.insert(name.to_string(), value);
                }
            }
            "FROM" => {
                seen_from = true;
                let mut rest = words.iter().skip_while(|w| w.starts_with("--"));
                let Some(image) = rest.next() else { continue };
                let image = substitute(image, &global);
                if let (Some(kw), Some(name)) = (rest.next(), rest.next()) {
                    if kw.eq_ignore_ascii_case("as") {
                        stages.push(name.to_ascii_lowercase());
                    }
                } else {
                    stages.push(String::new());
                }
                push_image(&mut out, &instruction, image, &stages);
            }
            "COPY" | "ADD" => {
                for w in words.iter().take_while(|w| w.starts_with("--")) {
                    if let Some(from) = w.strip_prefix("--from=") {
                        let from = substitute(&unquote(from), &global);
                        push_image(&mut out, &instruction, from, &stages);
                    }
                }
            }
            "RUN" => {
                for w in words.iter().take_while(|w| w.starts_with("--")) {
                    let Some(mount) = w.strip_prefix("--mount=") else {
                        continue;
                    };
                    for field in mount.split(',') {
                        if let Some(from) = field.strip_prefix("from=") {
                            let from = substitute(&unquote(from), &global);
                            push_image(&mut out, &instruction, from, &stages);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    out
}

fn push_image(out: &mut Vec<ImageUse>, instruction: &str, image: String, stages: &[String]) {
    let lower = image.to_ascii_lowercase();
    let is_stage = stages.iter().any(|s| !s.is_empty() && *s == lower)
        || (!image.is_empty() && image.bytes().all(|b| b.is_ascii_digit()));
    if image.is_empty() || is_stage || lower == "scratch" {
        return;
    }
    out.push(ImageUse {
        instruction: instruction.to_string(),
        image,
    });
}

/// The escape character of the parser directives at the top (`\` unless `# escape=`` ` ``).
fn escape_char(text: &str) -> char {
    for line in text.lines() {
        let Some(d) = line.trim().strip_prefix('#') else {
            break;
        };
        let Some((k, v)) = d.trim().split_once('=') else {
            break;
        };
        if k.trim().eq_ignore_ascii_case("escape") {
            return v.trim().chars().next().unwrap_or('\\');
        }
    }
    '\\'
}

/// Instructions as whole lines: continuations joined, comments and blank lines dropped.
fn logical_lines(text: &str, escape: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for raw in text.lines() {
        let t = raw.trim();
        if t.starts_with('#') || (t.is_empty() && current.is_empty()) {
            continue;
        }
        match t.strip_suffix(escape) {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(t);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.trim().is_empty() {
        out.push(current);
    }
    out
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    for q in ['"', '\''] {
        if let Some(inner) = s.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return inner.to_string();
        }
    }
    s.to_string()
}

/// `s` with `$NAME`, `${NAME}`, `${NAME:-word}` and `${NAME:+word}` replaced from `vars`
/// (unknown: empty). Anything else with a `$` is kept as written.
fn substitute(s: &str, vars: &BTreeMap<String, String>) -> String {
    let s = unquote(s);
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::new();
    let mut rest = s.as_str();
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(body) = after.strip_prefix('{') {
            let Some(end) = body.find('}') else {
                out.push_str(&rest[i..]);
                return out;
            };
            let expr = &body[..end];
            let value = if let Some((name, word)) = expr.split_once(":-") {
                vars.get(name)
                    .filter(|v| !v.is_empty())
                    .cloned()
                    .unwrap_or_else(|| word.to_string())
            } else if let Some((name, word)) = expr.split_once(":+") {
                if vars.get(name).is_some_and(|v| !v.is_empty()) {
                    word.to_string()
                } else {
                    String::new()
                }
            } else if expr.chars().all(is_name) {
                vars.get(expr).cloned().unwrap_or_default()
            } else {
                format!("${{{expr}}}")
            };
            out.push_str(&value);
            rest = &body[end + 1..];
        } else {
            let len = after.find(|c: char| !is_name(c)).unwrap_or(after.len());
            if len == 0 {
                out.push('$');
            } else {
                out.push_str(vars.get(&after[..len]).map_or("", String::as_str));
            }
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    out
}

/// The contents of the regular file at `path` (relative, as packed) in a context tar, read as a
/// stream (a large context is never held in memory); None when
/// the tar has no such entry. A symlink or other non-file entry at `path` is an error: what the
/// engine would read cannot be checked.
///
/// # Errors
/// An unreadable tar, or an entry at `path` that is not a regular file.
pub fn tar_file<R: std::io::Read>(tar: R, path: &str) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let want = path.trim_start_matches("./");
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let name = entry.path()?.to_string_lossy().into_owned();
        if name.trim_start_matches("./") != want {
            continue;
        }
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(std::io::Error::other(format!(
                "the Dockerfile {path:?} is not a regular file in the build context"
            )));
        }
        let mut data = Vec::new();
        entry.read_to_end(&mut data)?;
        return Ok(Some(data));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images(text: &str, args: &[(&str, &str)]) -> Vec<String> {
        let args = args
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        dockerfile_images(text, &args)
            .into_iter()
            .map(|u| format!("{} {}", u.instruction, u.image))
            .collect()
    }

    #[test]
    fn every_form_of_from() {
        let text = "\
# syntax=docker/dockerfile:1
ARG BASE=berth/a/app-web
ARG TAG
ARG OTHER=\"berth/b/x\"
from berth/plain:v1
FROM --platform=linux/amd64 berth/shop/api:v2 AS Build
FROM --platform=$BUILDPLATFORM ${BASE}:${TAG:-latest} as two
FROM build
FROM $OTHER
FROM \\
  berth/cont/x \\
  # a comment in a continuation
  AS cont
FROM scratch
FROM 0
FROM two
";
        assert_eq!(
            images(text, &[]),
            [
                "FROM berth/plain:v1",
                "FROM berth/shop/api:v2",
                "FROM berth/a/app-web:latest",
                "FROM berth/b/x",
                "FROM berth/cont/x",
            ]
        );
        // Build args override the defaults of global ARGs.
        assert_eq!(
            images(
                "ARG BASE=busybox\nFROM $BASE\nARG LATE=x\nFROM ${LATE}img\n",
                &[("BASE", "berth/z/y"), ("LATE", "berth/q/")]
            ),
            ["FROM berth/z/y", "FROM img"]
        );
    }

    #[test]
    fn copy_and_mount_sources() {
        let text = "\
FROM busybox AS base
COPY --from=base /a /b
COPY --from=0 /a /b
COPY --chown=1:1 --from=berth/x/y:1 /a /b
ADD --from=berth/q /a /b
RUN --mount=type=bind,from=berth/m/n,target=/m true
RUN echo --from=berth/not/this
";
        assert_eq!(
            images(text, &[]),
            [
                "FROM busybox",
                "COPY berth/x/y:1",
                "ADD berth/q",
                "RUN berth/m/n"
            ]
        );
    }

    #[test]
    fn the_escape_directive_and_unresolvable_names() {
        let text = "# escape=`\nFROM `\n  berth/t/u\nFROM ${X:?err}\nFROM $\n";
        assert_eq!(
            images(text, &[]),
            ["FROM berth/t/u", "FROM ${X:?err}", "FROM $"]
        );
    }

    #[test]
    fn files_are_read_from_the_tar() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/Dockerfile"), "FROM x\n").unwrap();
        let tar = crate::context_tar(dir.path(), "d/Dockerfile").unwrap();
        assert_eq!(
            tar_file(&tar[..], "./d/Dockerfile").unwrap().as_deref(),
            Some(&b"FROM x\n"[..])
        );
        assert_eq!(tar_file(&tar[..], "Dockerfile").unwrap(), None);
    }
}
