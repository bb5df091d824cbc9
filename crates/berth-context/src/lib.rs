//! `berth-context`: build contexts — the tar sent to the engine for an image build, honouring
//! `.dockerignore`.
//!
//! It is its own small crate (`tar` and `thiserror` only) because two sides need exactly the
//! same rules: `berth-build` packs a checked-out workspace for a pipeline's `build` step, and
//! the CLI packs a Compose service's `build.context` on the client and uploads it. Neither
//! should pull in the other's dependencies, and the rules must not drift apart.
//!
//! Rules it keeps:
//! - The tar holds the context directory's regular files, directories and symlinks (as links,
//!   never followed), with paths relative to the context, sorted, and deterministic headers
//!   (fixed times, owner root): the same tree gives the same bytes, so the engine's layer cache
//!   hits. Other file types (sockets, fifos, devices) are left out.
//! - `.dockerignore` at the context root is honoured with **this subset** of Docker's syntax:
//!   - one pattern per line; blank lines and lines starting with `#` are skipped; surrounding
//!     spaces are trimmed; a leading `/` and a trailing `/` are dropped (`dir/` = `dir`);
//!   - patterns are matched against the whole path from the context root, segment by
//!     segment: `*` matches any run of characters within one segment, `?` one character,
//!     `**` any number of segments (`**/*.log`). So `*.log` only matches at the root, as in
//!     Docker;
//!   - a pattern that matches a directory excludes everything under it;
//!   - `!pattern` re-includes what it matches; the last matching line wins;
//!   - not supported: character classes `[...]` and `\` escapes (taken literally).
//! - The Dockerfile and `.dockerignore` are always sent, even when ignored (as Docker does),
//!   and the Dockerfile must exist inside the context.
//! - The tar is written to any [`std::io::Write`] as it is made ([`write_context_tar`]), so a
//!   large context can go to a file or a pipe without a copy in memory; an optional size limit
//!   stops packing as soon as it is passed ([`ContextError::TooLarge`]).
//! - **Labels in one step** ([`context_tar_with_labels`]): the engine's `labels` build parameter
//!   makes the legacy builder append one `LABEL` step per label, and each step costs a
//!   container create and commit (0.8–1 s on the benchmark machine: five labels made a
//!   one-file rebuild 1.76× `docker build`, docs/benchmarks.md §5). Berth instead sends the
//!   Dockerfile plus one `LABEL` line with every label, as `.berth.Dockerfile`, and lists that name in the
//!   context's `.dockerignore` so no `COPY` ever sees it — what the Docker CLI itself does for
//!   `docker build -f -`. When there was no `.dockerignore`, the one Berth writes also ignores
//!   itself, so the image's files are exactly those of a plain build. It falls back to the
//!   parameter when it cannot append safely (a last line continued with the escape character, a
//!   value with a line break, a Dockerfile that is not UTF-8).
//! - [`dockerfile`]: the images a Dockerfile reads (`FROM`, `COPY --from`, mounts), which the
//!   server checks against the building team before it sends a build.

pub mod dockerfile;

pub use dockerfile::{dockerfile_images, tar_file, ImageUse};

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// The Dockerfile Berth sends when it folds its labels into one `LABEL` step.
pub const LABELLED_DOCKERFILE: &str = ".berth.Dockerfile";

/// Why a context could not be packed.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// The Dockerfile is not a file inside the context.
    #[error("Dockerfile {0:?} not found in the build context")]
    NoDockerfile(String),
    /// The tar grew past the size limit given to [`write_context_tar`] (in bytes).
    #[error("the build context is larger than {} MiB (leave large files out with .dockerignore)", .0 / (1024 * 1024))]
    TooLarge(u64),
    /// Reading the context failed.
    #[error("reading the build context: {0}")]
    Io(#[from] std::io::Error),
}

/// Parsed `.dockerignore` rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerIgnore {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    negate: bool,
    segments: Vec<String>,
}

impl DockerIgnore {
    /// Parses the text of a `.dockerignore` file.
    #[must_use]
    pub fn parse(text: &str) -> DockerIgnore {
        let rules = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| {
                let (negate, pat) = match l.strip_prefix('!') {
                    Some(p) => (true, p.trim()),
                    None => (false, l),
                };
                let segments: Vec<String> = pat
                    .split('/')
                    .filter(|s| !s.is_empty() && *s != ".")
                    .map(str::to_string)
                    .collect();
                (!segments.is_empty()).then_some(Rule { negate, segments })
            })
            .collect();
        DockerIgnore { rules }
    }

    /// True when `path` (relative to the context root, `/`-separated) is excluded.
    #[must_use]
    pub fn is_excluded(&self, path: &str) -> bool {
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let mut excluded = false;
        for rule in &self.rules {
            // The path itself or any of its parent directories.
            let hit = (1..=segs.len()).any(|n| match_segments(&rule.segments, &segs[..n]));
            if hit {
                excluded = !rule.negate;
            }
        }
        excluded
    }

    fn has_negations(&self) -> bool {
        self.rules.iter().any(|r| r.negate)
    }
}

fn match_segments(pattern: &[String], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => {
            (0..=path.len()).any(|skip| match_segments(rest, &path[skip..]))
        }
        Some((first, rest)) => match path.split_first() {
            Some((seg, path_rest)) => {
                glob(first.as_bytes(), seg.as_bytes()) && match_segments(rest, path_rest)
            }
            None => false,
        },
    }
}

/// `*` and `?` within one segment.
fn glob(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| glob(rest, &s[i..])),
        Some((b'?', rest)) => !s.is_empty() && glob(rest, &s[1..]),
        Some((c, rest)) => s.first() == Some(c) && glob(rest, &s[1..]),
    }
}

/// Packs `dir` as a build context tar in memory, honouring its `.dockerignore`; `dockerfile` is
/// the Dockerfile's path relative to `dir`.
///
/// # Errors
/// A missing Dockerfile or an unreadable tree.
pub fn context_tar(dir: &Path, dockerfile: &str) -> Result<Vec<u8>, ContextError> {
    write_context_tar(dir, dockerfile, Vec::new(), None)
}

/// Packs `dir` as a build context tar into `out` as it goes, honouring its `.dockerignore`;
/// `dockerfile` is the Dockerfile's path relative to `dir`. With `max_bytes`, packing stops with
/// [`ContextError::TooLarge`] as soon as more than that many bytes have been written. Returns
/// `out` with the whole tar written (and flushed).
///
/// # Errors
/// A missing Dockerfile, an unreadable tree, a failing writer, or the size limit.
pub fn write_context_tar<W: Write>(
    dir: &Path,
    dockerfile: &str,
    out: W,
    max_bytes: Option<u64>,
) -> Result<W, ContextError> {
    let dockerfile_rel = dockerfile.trim_start_matches("./").to_string();
    if !dir.join(&dockerfile_rel).is_file() {
        return Err(ContextError::NoDockerfile(dockerfile.to_string()));
    }
    let ignore = match std::fs::read_to_string(dir.join(".dockerignore")) {
        Ok(text) => DockerIgnore::parse(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => DockerIgnore::default(),
        Err(e) => return Err(e.into()),
    };
    let limited = Limited {
        inner: out,
        written: 0,
        max: max_bytes.unwrap_or(u64::MAX),
    };
    let mut builder = tar::Builder::new(limited);
    builder.mode(tar::HeaderMode::Deterministic);
    builder.follow_symlinks(false);
    let always = [dockerfile_rel.as_str(), ".dockerignore"];
    let packed = add_dir(&mut builder, dir, "", &ignore, &always, &[])
        .and_then(|()| builder.into_inner().map_err(ContextError::from));
    match packed {
        Ok(mut limited) => {
            limited.inner.flush()?;
            Ok(limited.inner)
        }
        Err(ContextError::Io(e)) if e.kind() == std::io::ErrorKind::FileTooLarge => {
            Err(ContextError::TooLarge(max_bytes.unwrap_or(u64::MAX)))
        }
        Err(e) => Err(e),
    }
}

/// A writer that fails with `FileTooLarge` once more than `max` bytes were written.
struct Limited<W> {
    inner: W,
    written: u64,
    max: u64,
}

impl<W: Write> Write for Limited<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let len = buf.len() as u64;
        if self.written.saturating_add(len) > self.max {
            return Err(std::io::ErrorKind::FileTooLarge.into());
        }
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Packs `dir` like [`context_tar`], with `labels` folded into one `LABEL` step of a generated
/// `.berth.Dockerfile` (see the module docs). Returns the tar and the Dockerfile name to build
/// with, or `None` when the labels could not be folded in: then the tar is [`context_tar`]'s and
/// the labels must go as the build parameter.
///
/// # Errors
/// A missing Dockerfile or an unreadable tree.
pub fn context_tar_with_labels(
    dir: &Path,
    dockerfile: &str,
    labels: &BTreeMap<String, String>,
) -> Result<(Vec<u8>, Option<String>), ContextError> {
    let dockerfile_rel = dockerfile.trim_start_matches("./").to_string();
    if !dir.join(&dockerfile_rel).is_file() {
        return Err(ContextError::NoDockerfile(dockerfile.to_string()));
    }
    let generated = std::fs::read_to_string(dir.join(&dockerfile_rel))
        .ok()
        .and_then(|text| dockerfile_with_labels(&text, labels));
    let Some(generated) = generated else {
        return Ok((context_tar(dir, dockerfile)?, None));
    };
    let ignore_text = match std::fs::read_to_string(dir.join(".dockerignore")) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    let ignore = DockerIgnore::parse(ignore_text.as_deref().unwrap_or(""));
    let mut builder = tar::Builder::new(Vec::new());
    builder.mode(tar::HeaderMode::Deterministic);
    builder.follow_symlinks(false);
    let always = [dockerfile_rel.as_str(), ".dockerignore"];
    add_dir(
        &mut builder,
        dir,
        "",
        &ignore,
        &always,
        &[".dockerignore", LABELLED_DOCKERFILE],
    )?;
    let new_ignore = match ignore_text {
        Some(t) => format!("{t}\n{LABELLED_DOCKERFILE}\n"),
        None => format!("{LABELLED_DOCKERFILE}\n.dockerignore\n"),
    };
    for (name, data) in [
        (".dockerignore", new_ignore.as_bytes()),
        (LABELLED_DOCKERFILE, generated.as_bytes()),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(DETERMINISTIC_MTIME);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut h, name, data)?;
    }
    Ok((builder.into_inner()?, Some(LABELLED_DOCKERFILE.to_string())))
}

/// The time `tar::HeaderMode::Deterministic` gives every entry.
const DETERMINISTIC_MTIME: u64 = 1_153_704_088;

/// `text` with one `LABEL` line holding every label appended, or `None` when that cannot be
/// done safely (no labels, a value with a line break, a last instruction line that continues).
/// Values are double-quoted with `"`, the escape character and `$` escaped, so nothing is
/// expanded (as with the `labels` parameter).
#[must_use]
pub fn dockerfile_with_labels(text: &str, labels: &BTreeMap<String, String>) -> Option<String> {
    if labels.is_empty() {
        return None;
    }
    // Parser directives come first: `# escape=` changes the escape character.
    let mut escape = '\\';
    for line in text.lines() {
        let t = line.trim();
        let Some(d) = t.strip_prefix('#') else { break };
        let d = d.trim();
        let Some((k, v)) = d.split_once('=') else {
            break;
        };
        if k.trim().eq_ignore_ascii_case("escape") {
            escape = v.trim().chars().next().unwrap_or('\\');
        }
    }
    if escape != '\\' && escape != '`' {
        return None;
    }
    let last = text
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with('#'));
    if last.is_some_and(|l| l.ends_with(escape)) {
        return None;
    }
    let quote = |s: &str| -> Option<String> {
        if s.contains(['\n', '\r']) {
            return None;
        }
        let mut q = String::from('"');
        for c in s.chars() {
            if c == '"' || c == '$' || c == escape {
                q.push(escape);
            }
            q.push(c);
        }
        q.push('"');
        Some(q)
    };
    let mut line = String::from("LABEL");
    for (k, v) in labels {
        line.push(' ');
        line.push_str(&quote(k)?);
        line.push('=');
        line.push_str(&quote(v)?);
    }
    let mut out = text.to_string();
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&line);
    out.push('\n');
    Some(out)
}

fn add_dir<W: Write>(
    builder: &mut tar::Builder<W>,
    dir: &Path,
    prefix: &str,
    ignore: &DockerIgnore,
    always: &[&str],
    skip: &[&str],
) -> Result<(), ContextError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        if skip.contains(&rel.as_str()) {
            continue;
        }
        let kind = entry.file_type()?;
        let excluded = ignore.is_excluded(&rel) && !always.contains(&rel.as_str());
        if kind.is_dir() {
            if !excluded {
                builder.append_path_with_name(entry.path(), &rel)?;
            }
            // An excluded directory may still hold re-included paths (`!dir/keep`), or the
            // Dockerfile.
            let must_descend = always.iter().any(|a| a.starts_with(&format!("{rel}/")));
            if !excluded || ignore.has_negations() || must_descend {
                add_dir(builder, &entry.path(), &rel, ignore, always, skip)?;
            }
        } else if (kind.is_file() || kind.is_symlink()) && !excluded {
            builder.append_path_with_name(entry.path(), &rel)?;
        }
    }
    Ok(())
}

/// The paths in a tar, in order (for tests and diagnostics).
///
/// # Errors
/// When the bytes are not a readable tar.
pub fn tar_paths(tar_bytes: &[u8]) -> std::io::Result<Vec<String>> {
    let mut archive = tar::Archive::new(tar_bytes);
    let mut out = Vec::new();
    for entry in archive.entries()? {
        let entry = entry?;
        out.push(
            entry
                .path()?
                .to_string_lossy()
                .trim_end_matches('/')
                .to_string(),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_subset() {
        let ig = DockerIgnore::parse(
            "# comment\n\n*.log\n/secret.txt\nbuild/\n**/*.tmp\ndocs\n!docs/keep.md\n  tmp?  \n",
        );
        for (path, excluded) in [
            ("app.log", true),
            ("sub/app.log", false), // `*` does not cross `/`
            ("secret.txt", true),
            ("build", true),
            ("build/out/bin", true), // under an excluded directory
            ("builder", false),
            ("a/b/c.tmp", true),
            ("x.tmp", true),
            ("docs/readme.md", true),
            ("docs/keep.md", false), // negation, last match wins
            ("tmp1", true),
            ("tmp12", false),
            ("src/main.rs", false),
        ] {
            assert_eq!(ig.is_excluded(path), excluded, "{path}");
        }
        let neg_then_pos = DockerIgnore::parse("!a.txt\n*.txt\n");
        assert!(neg_then_pos.is_excluded("a.txt"));
    }

    #[test]
    fn tar_honours_dockerignore_and_keeps_the_dockerfile() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("Dockerfile"), "FROM scratch\nCOPY . /\n").unwrap();
        std::fs::write(
            d.join(".dockerignore"),
            "Dockerfile\n*.secret\nnode_modules/\n!node_modules/keep\n",
        )
        .unwrap();
        std::fs::write(d.join("app.txt"), "hi").unwrap();
        std::fs::write(d.join("key.secret"), "s3cret").unwrap();
        std::fs::create_dir_all(d.join("node_modules/pkg")).unwrap();
        std::fs::write(d.join("node_modules/pkg/index.js"), "x").unwrap();
        std::fs::write(d.join("node_modules/keep"), "k").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.join("link")).unwrap();
        let tar = context_tar(d, "Dockerfile").unwrap();
        let paths = tar_paths(&tar).unwrap();
        assert_eq!(
            paths,
            vec![
                ".dockerignore",
                "Dockerfile",
                "app.txt",
                "link",
                "node_modules/keep"
            ]
        );
        // Symlinks travel as links, not as the file they point at.
        let mut archive = tar::Archive::new(&tar[..]);
        let link = archive
            .entries()
            .unwrap()
            .map(Result::unwrap)
            .find(|e| e.path().unwrap().to_str() == Some("link"))
            .unwrap();
        assert_eq!(link.header().entry_type(), tar::EntryType::Symlink);
        // Deterministic: the same tree gives the same bytes.
        assert_eq!(tar, context_tar(d, "Dockerfile").unwrap());
        assert!(matches!(
            context_tar(d, "Nope"),
            Err(ContextError::NoDockerfile(_))
        ));
        // Written to any writer, with the same bytes; a limit stops it early.
        let streamed = write_context_tar(d, "Dockerfile", Vec::new(), Some(1 << 20)).unwrap();
        assert_eq!(streamed, tar);
        let small = write_context_tar(d, "Dockerfile", Vec::new(), Some(1024));
        assert!(
            matches!(small, Err(ContextError::TooLarge(1024))),
            "{small:?}"
        );
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn labels_fold_into_one_line() {
        let l = labels(&[("berth.service", "web"), ("b", "say \"$HOME\" \\o/")]);
        // (case, Dockerfile, expected appended line or None for the fallback)
        let cases: &[(&str, &str, Option<&str>)] = &[
            (
                "plain",
                "FROM scratch\nCOPY . /\n",
                Some(r#"LABEL "b"="say \"\$HOME\" \\o/" "berth.service"="web""#),
            ),
            (
                "no final newline",
                "FROM scratch",
                Some(r#"LABEL "b"="say \"\$HOME\" \\o/" "berth.service"="web""#),
            ),
            (
                "backtick escape",
                "# escape=`\nFROM scratch\n",
                Some(r#"LABEL "b"="say `"`$HOME`" \o/" "berth.service"="web""#),
            ),
            ("continued last line", "FROM scratch\nRUN a \\\n", None),
            (
                "continued, then a comment",
                "FROM scratch\nRUN a \\\n# c\n",
                None,
            ),
        ];
        for (case, text, want) in cases {
            let got = dockerfile_with_labels(text, &l);
            match want {
                None => assert!(got.is_none(), "{case}: {got:?}"),
                Some(line) => {
                    let got = got.unwrap_or_else(|| panic!("{case}: fell back"));
                    assert!(got.starts_with(text), "{case}: {got}");
                    assert_eq!(got.lines().last(), Some(*line), "{case}");
                }
            }
        }
        assert!(dockerfile_with_labels("FROM scratch\n", &BTreeMap::new()).is_none());
        assert!(dockerfile_with_labels("FROM x\n", &labels(&[("k", "a\nb")])).is_none());
    }

    #[test]
    fn labelled_context_hides_the_generated_dockerfile() {
        let l = labels(&[("berth.service", "web")]);
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("Dockerfile"), "FROM scratch\nCOPY . /\n").unwrap();
        std::fs::write(d.join("app.txt"), "hi").unwrap();
        let read = |tar: &[u8], name: &str| -> String {
            let mut a = tar::Archive::new(tar);
            let mut e = a
                .entries()
                .unwrap()
                .map(Result::unwrap)
                .find(|e| e.path().unwrap().to_str() == Some(name))
                .unwrap();
            let mut s = String::new();
            std::io::Read::read_to_string(&mut e, &mut s).unwrap();
            s
        };
        // Without a .dockerignore: Berth's ignores itself and the generated Dockerfile.
        let (tar, name) = context_tar_with_labels(d, "Dockerfile", &l).unwrap();
        assert_eq!(name.as_deref(), Some(LABELLED_DOCKERFILE));
        assert_eq!(
            tar_paths(&tar).unwrap(),
            vec![
                "Dockerfile",
                "app.txt",
                ".dockerignore",
                LABELLED_DOCKERFILE
            ]
        );
        let ig = DockerIgnore::parse(&read(&tar, ".dockerignore"));
        assert!(ig.is_excluded(LABELLED_DOCKERFILE) && ig.is_excluded(".dockerignore"));
        assert!(read(&tar, LABELLED_DOCKERFILE).ends_with("LABEL \"berth.service\"=\"web\"\n"));
        assert_eq!(tar, context_tar_with_labels(d, "Dockerfile", &l).unwrap().0);
        // With one: the user's patterns stay, the generated Dockerfile is added.
        std::fs::write(d.join(".dockerignore"), "*.txt\n").unwrap();
        let (tar, _) = context_tar_with_labels(d, "Dockerfile", &l).unwrap();
        assert_eq!(
            tar_paths(&tar).unwrap(),
            vec!["Dockerfile", ".dockerignore", LABELLED_DOCKERFILE]
        );
        assert_eq!(
            read(&tar, ".dockerignore"),
            format!("*.txt\n\n{LABELLED_DOCKERFILE}\n")
        );
        // A Dockerfile that cannot take the line: the plain context, labels as the parameter.
        std::fs::write(d.join("Dockerfile"), "FROM scratch\nRUN a \\\n").unwrap();
        let (tar, name) = context_tar_with_labels(d, "Dockerfile", &l).unwrap();
        assert!(name.is_none());
        assert_eq!(tar, context_tar(d, "Dockerfile").unwrap());
    }
}
