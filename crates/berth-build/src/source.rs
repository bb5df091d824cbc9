//! Sources: checking out a Git or Subversion revision into a build workspace.
//!
//! Responsibility: turn a [`Source`] into a directory of files plus the [`Revision`] it came
//! from (commit, author, time, tag), with the `git` and `svn` command-line clients.
//!
//! Rules it keeps (source URLs and refs come from users, so they are hostile input):
//! - **URLs are validated before any process starts.** Git: an absolute local path,
//!   `file://`, `http://`, `https://` or `ssh://`; nothing else — no `ext::`/`fd::` remote
//!   helpers (no `::` anywhere), no scp-like `host:path`, no host starting with `-`.
//!   Subversion: `file://`, `http://`, `https://`, `svn://` (no `svn+ssh://`: its tunnel
//!   command comes from configuration). Control characters and a leading `-` are refused
//!   everywhere, and URLs are passed after `--`.
//! - **Git is told the same again**: `protocol.allow=never` with only `file`, `http`, `https`
//!   and `ssh` allowed (`protocol.ext.allow=never` explicitly), no submodules, no prompts
//!   (`GIT_TERMINAL_PROMPT=0`, stdin closed).
//! - **Branches** are plain ref names: letters, digits, `._/+-`, not starting with `-`, `.` or
//!   `/`, no `..`. A branch may name a tag (`git clone --branch v1`).
//! - **Limits**: every command is killed after [`SourceLimits::timeout`] (or on cancellation);
//!   after the checkout the tree is walked (symlinks not followed) and a checkout larger than
//!   [`SourceLimits::max_bytes`] fails cleanly. The time limit is what bounds the disk used
//!   while a checkout runs.
//! - A `path` inside the repository is relative, has no `..`, and must resolve (after
//!   symlinks) inside the checkout.
//!
//! The version name of a revision is the tag pointing at HEAD when there is one (the highest by
//! version order if several), else the commit's first 12 hex digits (Git) or `r<revision>`
//! (Subversion).

use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

/// Where a service's code comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A Git repository.
    Git(GitSource),
    /// A Subversion URL.
    Svn(SvnSource),
}

/// A Git repository, branch and directory.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GitSource {
    /// Absolute local path, `file://`, `http(s)://` or `ssh://` URL.
    pub url: String,
    /// Branch (or tag) to check out; `None` is the remote's default branch.
    pub branch: Option<String>,
    /// The directory inside the repository that holds the pipeline and the build context;
    /// `None` is the repository root.
    pub path: Option<String>,
}

/// A Subversion URL (any directory of a repository, e.g. `.../trunk`), checked out at HEAD.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SvnSource {
    /// `file://`, `http(s)://` or `svn://` URL.
    pub url: String,
}

/// Bounds on one checkout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceLimits {
    /// Each `git`/`svn` command is killed after this long.
    pub timeout: Duration,
    /// The largest checkout accepted, in bytes (sum of file sizes, `.git`/`.svn` included).
    pub max_bytes: u64,
}

impl Default for SourceLimits {
    /// 10 minutes, 1 GiB.
    fn default() -> Self {
        SourceLimits {
            timeout: Duration::from_secs(600),
            max_bytes: 1 << 30,
        }
    }
}

/// What was checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    /// Full Git commit id, or the Subversion revision number.
    pub commit: String,
    /// `Name <email>` for Git, the user name for Subversion.
    pub author: String,
    /// Commit time (Git committer date / Subversion last-changed date).
    pub time: Option<OffsetDateTime>,
    /// The tag pointing at HEAD, if any (Git only).
    pub tag: Option<String>,
    /// The version name: the tag, else the short commit (`r<rev>` for Subversion).
    pub name: String,
}

/// Why a checkout failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The URL is not one Berth accepts (see the module docs for the rules).
    #[error("source URL refused: {0}")]
    InvalidUrl(String),
    /// The branch is not a plain ref name.
    #[error("branch refused: {0}")]
    InvalidBranch(String),
    /// The path inside the repository is not a relative path inside it.
    #[error("source path refused: {0}")]
    InvalidPath(String),
    /// The client program could not be started (not installed?).
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// `git` or `svn`.
        program: String,
        /// The spawn error.
        #[source]
        source: std::io::Error,
    },
    /// A command exited with a failure; `output` is the end of what it printed.
    #[error("{command} failed ({status}): {output}")]
    Command {
        /// What ran, e.g. `git clone`.
        command: String,
        /// Its exit status.
        status: String,
        /// The last lines of its stderr/stdout.
        output: String,
    },
    /// A command ran longer than the time limit and was killed.
    #[error("{command} did not finish within {timeout:?} and was killed")]
    Timeout {
        /// What ran.
        command: String,
        /// The limit.
        timeout: Duration,
    },
    /// The checkout is larger than the size limit.
    #[error("checkout is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The build was cancelled during the checkout.
    #[error("cancelled")]
    Cancelled,
    /// Reading the checkout (size walk, path resolution) failed.
    #[error("I/O error in the checkout: {0}")]
    Io(#[from] std::io::Error),
}

impl Source {
    /// Checks the source's URL, branch and path without running anything.
    ///
    /// # Errors
    /// The first rule the source breaks.
    pub fn validate(&self) -> Result<(), SourceError> {
        match self {
            Source::Git(g) => g.validate(),
            Source::Svn(s) => s.validate(),
        }
    }

    /// Checks the source out into `dest` (which must not exist or be empty) and returns the
    /// revision and the directory holding the pipeline and build context (`dest` or its
    /// `path` inside it).
    ///
    /// # Errors
    /// A refused source, a failing or slow client, a checkout over the size limit, or
    /// cancellation.
    pub async fn checkout(
        &self,
        dest: &Path,
        limits: &SourceLimits,
        cancel: &CancellationToken,
    ) -> Result<(Revision, PathBuf), SourceError> {
        self.validate()?;
        let revision = match self {
            Source::Git(g) => g.fetch(dest, limits, cancel).await?,
            Source::Svn(s) => s.fetch(dest, limits, cancel).await?,
        };
        self.finish_checkout(dest, limits, revision)
    }
}

impl GitSource {
    /// Checks URL, branch and path (see the module docs).
    ///
    /// # Errors
    /// The first rule broken.
    pub fn validate(&self) -> Result<(), SourceError> {
        validate_git_url(&self.url)?;
        if let Some(b) = &self.branch {
            validate_branch(b)?;
        }
        if let Some(p) = &self.path {
            validate_rel_path(p).map_err(SourceError::InvalidPath)?;
        }
        Ok(())
    }

    async fn fetch(
        &self,
        dest: &Path,
        limits: &SourceLimits,
        cancel: &CancellationToken,
    ) -> Result<Revision, SourceError> {
        let mut clone = git();
        clone.args([
            "clone",
            "--quiet",
            "--depth",
            "1",
            "--no-recurse-submodules",
        ]);
        if let Some(b) = &self.branch {
            clone.args(["--single-branch", "--branch", b]);
        }
        clone.arg("--").arg(&self.url).arg(dest);
        run("git clone", clone, limits.timeout, cancel).await?;
        git_revision(dest, limits, cancel).await
    }

    /// Brings an earlier clone of this source in `dest` to the ref's current commit: fetch,
    /// forced detached checkout, and `clean -ffdx`, so the tree is exactly the commit's (only
    /// changed files are written). Tags are fetched and pruned like the clone's.
    ///
    /// # Errors
    /// A failing or slow client, or cancellation; the caller then clones afresh.
    pub async fn update(
        &self,
        dest: &Path,
        limits: &SourceLimits,
        cancel: &CancellationToken,
    ) -> Result<Revision, SourceError> {
        self.validate()?;
        let refspec = self.branch.clone().unwrap_or_else(|| "HEAD".into());
        let mut fetch = git();
        fetch.arg("-C").arg(dest).args([
            "fetch",
            "--quiet",
            "--force",
            "--prune",
            "--prune-tags",
            "--tags",
            "--no-recurse-submodules",
            "--",
            &self.url,
            &refspec,
        ]);
        run("git fetch", fetch, limits.timeout, cancel).await?;
        let mut checkout = git();
        checkout.arg("-C").arg(dest).args([
            "checkout",
            "--quiet",
            "--force",
            "--detach",
            "FETCH_HEAD",
        ]);
        run("git checkout", checkout, limits.timeout, cancel).await?;
        let mut clean = git();
        clean.arg("-C").arg(dest).args(["clean", "-ffdxq"]);
        run("git clean", clean, limits.timeout, cancel).await?;
        git_revision(dest, limits, cancel).await
    }
}

/// The commit checked out in `dest`: id, author, time, the newest tag at it, the version name.
async fn git_revision(
    dest: &Path,
    limits: &SourceLimits,
    cancel: &CancellationToken,
) -> Result<Revision, SourceError> {
    let mut log = git();
    log.arg("-C")
        .arg(dest)
        .args(["log", "-1", "--format=%H%n%an <%ae>%n%cI"]);
    let out = run("git log", log, limits.timeout, cancel).await?;
    let mut lines = out.lines();
    let commit = lines.next().unwrap_or_default().trim().to_string();
    let author = lines.next().unwrap_or_default().trim().to_string();
    let time = lines
        .next()
        .and_then(|t| OffsetDateTime::parse(t.trim(), &Rfc3339).ok());

    let mut tags = git();
    tags.arg("-C")
        .arg(dest)
        .args(["tag", "--points-at", "HEAD", "--sort=-version:refname"]);
    let out = run("git tag", tags, limits.timeout, cancel).await?;
    let tag = out
        .lines()
        .map(str::trim)
        .find(|t| !t.is_empty())
        .map(str::to_string);
    let name = tag
        .clone()
        .unwrap_or_else(|| commit.chars().take(12).collect());
    Ok(Revision {
        commit,
        author,
        time,
        tag,
        name,
    })
}

impl Source {
    /// Like [`Source::checkout`], into a directory that may hold an earlier clone of the same
    /// Git source (see the runner's reused trees): updated in place when it does, cloned afresh
    /// (after clearing `dest`) when it does not or the update fails. Subversion always checks
    /// out afresh. Returns the revision, the build root and whether the tree was reused.
    ///
    /// # Errors
    /// As [`Source::checkout`].
    pub async fn checkout_reusing(
        &self,
        dest: &Path,
        limits: &SourceLimits,
        cancel: &CancellationToken,
    ) -> Result<(Revision, PathBuf, bool), SourceError> {
        if let Source::Git(g) = self {
            if dest.join(".git").is_dir() {
                match g.update(dest, limits, cancel).await {
                    Ok(revision) => {
                        if let Ok((revision, root)) = self.finish_checkout(dest, limits, revision) {
                            return Ok((revision, root, true));
                        }
                    }
                    Err(SourceError::Cancelled) => return Err(SourceError::Cancelled),
                    Err(_) => {}
                }
            }
        }
        if dest.exists() {
            std::fs::remove_dir_all(dest)?;
        }
        let (revision, root) = self.checkout(dest, limits, cancel).await?;
        Ok((revision, root, false))
    }

    fn finish_checkout(
        &self,
        dest: &Path,
        limits: &SourceLimits,
        revision: Revision,
    ) -> Result<(Revision, PathBuf), SourceError> {
        let size = dir_size(dest, limits.max_bytes)?;
        if size > limits.max_bytes {
            return Err(SourceError::TooLarge {
                limit: limits.max_bytes,
            });
        }
        let root = match self {
            Source::Git(GitSource {
                path: Some(path), ..
            }) => resolve_inside(dest, path)?,
            _ => dest.canonicalize()?,
        };
        Ok((revision, root))
    }
}

impl GitSource {
    /// Where the source stands now without checking anything out (`git ls-remote`): the
    /// commit the branch (or tag, or `HEAD`) points at, and every tag pointing at that commit
    /// (sorted). `None` when the ref is not there.
    ///
    /// # Errors
    /// A refused URL, a failing or slow client, or cancellation.
    pub async fn resolve(
        &self,
        limits: &SourceLimits,
        cancel: &CancellationToken,
    ) -> Result<Option<(String, Vec<String>)>, SourceError> {
        self.validate()?;
        let mut ls = git();
        ls.args(["ls-remote", "--", &self.url]);
        let out = run("git ls-remote", ls, limits.timeout, cancel).await?;
        Ok(resolve_refs(&out, self.branch.as_deref()))
    }
}

/// From `git ls-remote` output: the commit `branch` (a branch or a tag; `HEAD` when `None`)
/// points at, and the tags pointing at it.
pub(crate) fn resolve_refs(ls_remote: &str, branch: Option<&str>) -> Option<(String, Vec<String>)> {
    let refs: Vec<(&str, &str)> = ls_remote
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(sha, r)| (sha.trim(), r.trim()))
        .collect();
    let find = |name: &str| refs.iter().find(|(_, r)| *r == name).map(|(sha, _)| *sha);
    let commit = match branch {
        None => find("HEAD")?,
        Some(b) => find(&format!("refs/heads/{b}"))
            .or_else(|| find(&format!("refs/tags/{b}^{{}}")))
            .or_else(|| find(&format!("refs/tags/{b}")))?,
    };
    let mut tags: Vec<String> = refs
        .iter()
        .filter(|(sha, _)| *sha == commit)
        .filter_map(|(_, r)| r.strip_prefix("refs/tags/"))
        .map(|t| t.trim_end_matches("^{}").to_string())
        .collect();
    tags.sort();
    tags.dedup();
    Some((commit.to_string(), tags))
}

impl SvnSource {
    /// Checks the URL (see the module docs).
    ///
    /// # Errors
    /// The first rule broken.
    pub fn validate(&self) -> Result<(), SourceError> {
        let url = &self.url;
        check_text(url).map_err(SourceError::InvalidUrl)?;
        let ok = ["file:///", "http://", "https://", "svn://"]
            .iter()
            .any(|p| url.starts_with(p));
        if !ok {
            return Err(SourceError::InvalidUrl(format!(
                "{url:?}: only file://, http(s):// and svn:// Subversion URLs are accepted"
            )));
        }
        check_authority(url)
    }

    async fn fetch(
        &self,
        dest: &Path,
        limits: &SourceLimits,
        cancel: &CancellationToken,
    ) -> Result<Revision, SourceError> {
        let mut co = svn();
        // `@HEAD` pins the peg revision, so an `@` inside the URL is never taken for one.
        co.args(["checkout", "--quiet", "--", &format!("{}@HEAD", self.url)])
            .arg(dest);
        run("svn checkout", co, limits.timeout, cancel).await?;
        let item = |what: &'static str| {
            let mut c = svn();
            c.args(["info", "--show-item", what, "--"]).arg(dest);
            c
        };
        let rev = run(
            "svn info",
            item("last-changed-revision"),
            limits.timeout,
            cancel,
        )
        .await?
        .trim()
        .to_string();
        let author = run(
            "svn info",
            item("last-changed-author"),
            limits.timeout,
            cancel,
        )
        .await?
        .trim()
        .to_string();
        let date = run(
            "svn info",
            item("last-changed-date"),
            limits.timeout,
            cancel,
        )
        .await?;
        Ok(Revision {
            name: format!("r{rev}"),
            commit: rev,
            author,
            time: OffsetDateTime::parse(date.trim(), &Rfc3339).ok(),
            tag: None,
        })
    }
}

impl SvnSource {
    /// Where the URL stands now without checking anything out: its last-changed revision
    /// (`svn info --show-item last-changed-revision URL@HEAD`), the number a checkout's version
    /// is named after (`r<rev>`). A commit elsewhere in the repository (another branch) leaves
    /// it unchanged, so polling does not rebuild for it.
    ///
    /// # Errors
    /// A refused URL, a failing or slow client (killed after `limits.timeout`), an answer that
    /// is not a revision number, or cancellation.
    pub async fn resolve(
        &self,
        limits: &SourceLimits,
        cancel: &CancellationToken,
    ) -> Result<String, SourceError> {
        self.validate()?;
        let mut info = svn();
        info.args([
            "info",
            "--show-item",
            "last-changed-revision",
            "--",
            &format!("{}@HEAD", self.url),
        ]);
        let out = run("svn info", info, limits.timeout, cancel).await?;
        parse_svn_revision(&out).ok_or_else(|| SourceError::Command {
            command: "svn info".into(),
            status: "exit status: 0".into(),
            output: format!("not a revision number: {:?}", out.trim()),
        })
    }
}

/// The revision number `svn info --show-item` printed (digits only, surrounding space trimmed).
pub(crate) fn parse_svn_revision(out: &str) -> Option<String> {
    let rev = out.trim();
    (!rev.is_empty() && rev.len() <= 20 && rev.bytes().all(|b| b.is_ascii_digit()))
        .then(|| rev.to_string())
}

/// `git` with the protocol allow-list and no prompts.
fn git() -> Command {
    let mut c = Command::new("git");
    c.args([
        "-c",
        "protocol.allow=never",
        "-c",
        "protocol.file.allow=always",
        "-c",
        "protocol.http.allow=always",
        "-c",
        "protocol.https.allow=always",
        "-c",
        "protocol.ssh.allow=always",
        "-c",
        "protocol.ext.allow=never",
        "-c",
        "advice.detachedHead=false",
    ])
    .env("GIT_TERMINAL_PROMPT", "0");
    c
}

/// `svn` that never asks and never stores credentials.
fn svn() -> Command {
    let mut c = Command::new("svn");
    c.args(["--non-interactive", "--no-auth-cache"]);
    c
}

/// Runs a command with stdin closed, a time limit and cancellation; returns its stdout.
async fn run(
    what: &str,
    mut cmd: Command,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Result<String, SourceError> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let program = what.split(' ').next().unwrap_or(what).to_string();
    let child = cmd
        .spawn()
        .map_err(|source| SourceError::Spawn { program, source })?;
    let out = tokio::select! {
        out = tokio::time::timeout(timeout, child.wait_with_output()) => match out {
            Ok(out) => out?,
            Err(_) => return Err(SourceError::Timeout { command: what.to_string(), timeout }),
        },
        () = cancel.cancelled() => return Err(SourceError::Cancelled),
    };
    if !out.status.success() {
        let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stdout));
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = lines[lines.len().saturating_sub(5)..].join(" / ");
        return Err(SourceError::Command {
            command: what.to_string(),
            status: out.status.to_string(),
            output: tail,
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Refuses control characters, empty text and a leading `-`.
fn check_text(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("empty".into());
    }
    if s.chars().any(char::is_control) {
        return Err(format!("{s:?} contains control characters"));
    }
    if s.starts_with('-') {
        return Err(format!("{s:?} starts with '-'"));
    }
    Ok(())
}

/// The host part of `scheme://[user@]host/...` must not start with `-` (it would reach `ssh` as
/// an option).
fn check_authority(url: &str) -> Result<(), SourceError> {
    if let Some((_, rest)) = url.split_once("://") {
        let authority = rest.split('/').next().unwrap_or_default();
        let host = authority.rsplit('@').next().unwrap_or_default();
        if host.starts_with('-') || authority.starts_with('-') {
            return Err(SourceError::InvalidUrl(format!(
                "{url:?}: host starts with '-'"
            )));
        }
    }
    Ok(())
}

/// Validates a Git URL (see the module docs).
///
/// # Errors
/// [`SourceError::InvalidUrl`] naming the rule.
pub fn validate_git_url(url: &str) -> Result<(), SourceError> {
    check_text(url).map_err(SourceError::InvalidUrl)?;
    if url.contains("::") {
        return Err(SourceError::InvalidUrl(format!(
            "{url:?}: remote helpers (`transport::address`, e.g. ext::) are not allowed"
        )));
    }
    if url.starts_with('/') {
        return Ok(());
    }
    let Some((scheme, _)) = url.split_once("://") else {
        return Err(SourceError::InvalidUrl(format!(
            "{url:?}: expected an absolute path or a file://, http(s):// or ssh:// URL"
        )));
    };
    if !matches!(scheme, "file" | "http" | "https" | "ssh") {
        return Err(SourceError::InvalidUrl(format!(
            "{url:?}: transport {scheme:?} is not allowed (file, http, https, ssh only)"
        )));
    }
    check_authority(url)
}

/// Validates a branch or tag name (see the module docs).
///
/// # Errors
/// [`SourceError::InvalidBranch`] naming the rule.
pub fn validate_branch(b: &str) -> Result<(), SourceError> {
    check_text(b).map_err(SourceError::InvalidBranch)?;
    let bad = b.len() > 255
        || b.starts_with(['.', '/'])
        || b.ends_with(['.', '/'])
        || b.contains("..")
        || b.contains("//")
        || b.ends_with(".lock")
        || !b
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/+-".contains(c));
    if bad {
        return Err(SourceError::InvalidBranch(format!(
            "{b:?} is not a plain ref name (letters, digits, ._/+-)"
        )));
    }
    Ok(())
}

/// A relative path with only normal components (no `..`, not absolute, no control chars).
pub(crate) fn validate_rel_path(p: &str) -> Result<(), String> {
    if p.chars().any(char::is_control) {
        return Err(format!("{p:?} contains control characters"));
    }
    let path = Path::new(p);
    for c in path.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            _ => {
                return Err(format!(
                    "{p:?} must be relative and stay inside the source (no `..`)"
                ))
            }
        }
    }
    Ok(())
}

/// `root/rel`, resolved through symlinks, which must stay inside `root` and be a directory.
pub(crate) fn resolve_inside(root: &Path, rel: &str) -> Result<PathBuf, SourceError> {
    validate_rel_path(rel).map_err(SourceError::InvalidPath)?;
    let root = root.canonicalize()?;
    let full = root.join(rel).canonicalize().map_err(|e| {
        SourceError::InvalidPath(format!("{rel:?} does not exist in the source: {e}"))
    })?;
    if !full.starts_with(&root) {
        return Err(SourceError::InvalidPath(format!(
            "{rel:?} leads outside the source"
        )));
    }
    if !full.is_dir() {
        return Err(SourceError::InvalidPath(format!(
            "{rel:?} is not a directory"
        )));
    }
    Ok(full)
}

/// The sum of the sizes of the files under `dir` (symlinks not followed); stops counting as
/// soon as it passes `stop_after`.
pub(crate) fn dir_size(dir: &Path, stop_after: u64) -> std::io::Result<u64> {
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let meta = entry.metadata()?; // DirEntry::metadata does not follow symlinks
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                total = total.saturating_add(meta.len());
                if total > stop_after {
                    return Ok(total);
                }
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ls_remote_resolution() {
        let out = "c1\tHEAD\nc1\trefs/heads/main\nc0\trefs/heads/old\nt9\trefs/tags/v2\nc1\trefs/tags/v2^{}\nc1\trefs/tags/light\nc0\trefs/tags/v1\n";
        assert_eq!(
            resolve_refs(out, None),
            Some(("c1".into(), vec!["light".into(), "v2".into()]))
        );
        assert_eq!(
            resolve_refs(out, Some("old")),
            Some(("c0".into(), vec!["v1".into()]))
        );
        assert_eq!(
            resolve_refs(out, Some("v2")).map(|r| r.0),
            Some("c1".into()),
            "an annotated tag resolves to its commit"
        );
        assert_eq!(resolve_refs(out, Some("nope")), None);
        assert_eq!(resolve_refs("", None), None);
    }

    #[test]
    fn git_urls() {
        for ok in [
            "/srv/repos/shop.git",
            "file:///srv/repos/shop.git",
            "https://example.com/shop.git",
            "http://example.com/shop",
            "ssh://git@example.com/shop.git",
        ] {
            validate_git_url(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "ext::sh -c touch% /tmp/pwned",
            "fd::17",
            "-uoption",
            "--upload-pack=touch /tmp/x",
            "git@example.com:shop.git",
            "git://example.com/shop.git",
            "ftp://example.com/x",
            "relative/path",
            "ssh://-oProxyCommand=x/y",
            "ssh://user@-oProxyCommand=x/y",
            "https://example.com/a\nb",
            "file:///a\u{7f}",
            "",
            "/srv/x::y",
        ] {
            assert!(
                matches!(validate_git_url(bad), Err(SourceError::InvalidUrl(_))),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn branches() {
        for ok in ["main", "release/1.2", "v1.0.0", "feature_x+y"] {
            validate_branch(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "--upload-pack=touch /tmp/x",
            "-b",
            "a..b",
            "a b",
            "x\ty",
            ".hidden",
            "a/",
            "x.lock",
            "a~1",
            "a:b",
            "",
        ] {
            assert!(
                matches!(validate_branch(bad), Err(SourceError::InvalidBranch(_))),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn svn_urls() {
        for ok in [
            "file:///srv/svn/repo/trunk",
            "https://svn.example.com/r",
            "svn://h/r",
        ] {
            SvnSource { url: ok.into() }.validate().unwrap();
        }
        for bad in ["svn+ssh://h/r", "/srv/svn", "-r", "file:///a\nb", "ext::x"] {
            assert!(SvnSource { url: bad.into() }.validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn svn_revisions() {
        assert_eq!(parse_svn_revision("42\n"), Some("42".into()));
        assert_eq!(parse_svn_revision(" 7 "), Some("7".into()));
        for bad in ["", "\n", "r42", "42 43", "-1", "svn: E170000: no such URL"] {
            assert_eq!(parse_svn_revision(bad), None, "{bad:?}");
        }
    }

    /// A real repository (`svnadmin create`, `file://`): the revision moves with each commit to
    /// the URL, not with a commit elsewhere in the repository.
    #[tokio::test]
    async fn svn_resolve_follows_the_urls_last_change() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        let sh = |args: &[&str]| {
            let out = std::process::Command::new(args[0])
                .args(&args[1..])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        sh(&["svnadmin", "create", repo.to_str().unwrap()]);
        let root = format!("file://{}", repo.display());
        let (trunk, other) = (format!("{root}/trunk"), format!("{root}/other"));
        sh(&[
            "svn",
            "mkdir",
            "--parents",
            "-q",
            "-m",
            "dirs",
            &trunk,
            &other,
        ]);
        let src = SvnSource { url: trunk.clone() };
        let (limits, cancel) = (SourceLimits::default(), CancellationToken::new());
        assert_eq!(src.resolve(&limits, &cancel).await.unwrap(), "1");
        sh(&[
            "svn",
            "mkdir",
            "-q",
            "-m",
            "elsewhere",
            &format!("{other}/x"),
        ]);
        assert_eq!(src.resolve(&limits, &cancel).await.unwrap(), "1");
        sh(&["svn", "mkdir", "-q", "-m", "here", &format!("{trunk}/y")]);
        assert_eq!(src.resolve(&limits, &cancel).await.unwrap(), "3");
        let missing = SvnSource {
            url: format!("{root}/nope"),
        };
        assert!(matches!(
            missing.resolve(&limits, &cancel).await,
            Err(SourceError::Command { .. })
        ));
    }

    #[test]
    fn paths() {
        assert!(validate_rel_path("app/web").is_ok());
        assert!(validate_rel_path("./app").is_ok());
        assert!(validate_rel_path("../x").is_err());
        assert!(validate_rel_path("/etc").is_err());
        assert!(validate_rel_path("a/../../b").is_err());
    }

    #[test]
    fn paths_resolve_inside_and_size_is_summed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("app")).unwrap();
        std::fs::write(dir.path().join("app/f"), vec![0u8; 1000]).unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("out")).unwrap();
        assert!(resolve_inside(dir.path(), "app").is_ok());
        assert!(matches!(
            resolve_inside(dir.path(), "out"),
            Err(SourceError::InvalidPath(_))
        ));
        assert!(resolve_inside(dir.path(), "missing").is_err());
        assert_eq!(dir_size(dir.path(), u64::MAX).unwrap(), 1000);
    }
}
