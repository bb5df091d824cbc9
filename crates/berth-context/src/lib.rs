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

use std::io::Write;
use std::path::Path;

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
    let packed = add_dir(&mut builder, dir, "", &ignore, &always)
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

fn add_dir<W: Write>(
    builder: &mut tar::Builder<W>,
    dir: &Path,
    prefix: &str,
    ignore: &DockerIgnore,
    always: &[&str],
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
                add_dir(builder, &entry.path(), &rel, ignore, always)?;
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
}
