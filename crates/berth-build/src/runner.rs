//! The runner: checkout, pipeline, steps against the real engine, and the [`BuildOutcome`].
//!
//! Rules it keeps:
//! - **One build, one workspace**: a fresh directory under [`BuildConfig::work_root`], removed
//!   when the build ends whatever happened — or, with [`BuildConfig::keep_trees`], the Git
//!   service's kept tree, which one build at a time uses.
//! - **A kept tree per Git service** (see [`KeptTree`]): a build updates the service's last
//!   tree in place instead of cloning afresh, unless `run` steps ever had it mounted.
//! - **A warm rebuild skips the checkout**: when a service's last successful build had only
//!   `build` steps and its Git source still points at the same commit with the same tags
//!   (`git ls-remote`), the contexts that build packed are sent again (see [`Warm`]); the engine
//!   builds as always. Berth runs on the engine's host, so that directory
//!   is bind-mounted as is into `run` containers at `/workspace` (read-write: a test step may
//!   produce files a later `build` step copies).
//! - **Steps run in order; the first failure stops the build.** A `run` step is **one
//!   container** per step running `sh -c` with `set -e` followed by the commands, one per line:
//!   the first failing command fails the step, and shell state (`cd`, variables) carries from
//!   one command to the next. Exit code ≠ 0 fails the build. The container is labelled
//!   ([`BuildConfig::labels`], `berth.build=<build id>`, `berth.build.step=<step>`) and always
//!   removed afterwards. Its image must exist: nothing is pulled.
//! - A `build` step packs its context (see [`crate::context`]), streams `POST /build` output
//!   into the log, and tags the image `berth/<service>:<version>` (the last build step) or
//!   `berth/<service>:<version>-<step>` (earlier ones, untagged again when the build ends, and
//!   labelled `berth.build.step=<step>` so a server that crashed mid-build can find and untag
//!   them on its next start).
//!   The version's **digest** is the image ID the engine reports for that tag. Layer cache is
//!   the engine's (never `nocache`). When the build fails or is cancelled after an image was
//!   tagged, the tags it made are removed: a failed build leaves no version and no image.
//! - **Timeouts and cancellation**: each step has a deadline (its `timeout`, else
//!   [`BuildConfig::step_timeout`]); on the deadline or when the [`CancellationToken`] fires,
//!   the step's container is force-removed (or the build stream dropped, which makes the
//!   engine stop the build). Cancellation gives [`BuildStatus::Cancelled`].
//! - **Secrets** go to `run` steps only, as environment variables, and every log line is
//!   masked ([`crate::logs::Masker`]). They never reach a `build` step (no build args): they
//!   cannot end up in an image's history.
//! - Dropping the `build` future instead of cancelling it can leave a step container behind;
//!   it carries `berth.build=<id>` so a janitor can find it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth_docker::{BuildParams, ContainerSpec, Docker, HostSpec, LogSource};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::context::{context_tar, context_tar_with_labels};
use crate::image::BuildOutput;
use crate::logs::{LineSplitter, LogLine, LogStreamKind, Masker};
use crate::pipeline::{
    valid_env_name, BuildStep, Pipeline, RunStep, StepKind, PIPELINE_FILE, WORKSPACE_MOUNT,
};
use crate::source::{resolve_inside, Revision, Source, SourceError, SourceLimits};

/// The repository under which versions are tagged: `berth/<service>:<version>`.
pub const IMAGE_REPOSITORY: &str = "berth";

/// How builds run on this host.
#[derive(Debug, Clone)]
pub struct BuildConfig {
    /// Where build workspaces are created. Must be on the engine's host (it is bind-mounted).
    pub work_root: PathBuf,
    /// Time and size limits of checkouts.
    pub source_limits: SourceLimits,
    /// The deadline of a step without its own `timeout`.
    pub step_timeout: Duration,
    /// Labels put on every container and image a build creates (e.g. `berth.instance`).
    pub labels: BTreeMap<String, String>,
    /// Keep each Git service's tree under `work_root/trees` between builds (see
    /// [`KeptTree`]); otherwise every build clones into a fresh workspace.
    pub keep_trees: bool,
}

impl Default for BuildConfig {
    /// The system temp directory, default source limits, 30 minutes per step, no labels, no
    /// kept trees.
    fn default() -> Self {
        BuildConfig {
            work_root: std::env::temp_dir(),
            source_limits: SourceLimits::default(),
            step_timeout: Duration::from_secs(30 * 60),
            labels: BTreeMap::new(),
            keep_trees: false,
        }
    }
}

/// One build to run.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// The service's name: 1–63 characters of `a-z0-9._-`, starting and ending with a letter
    /// or digit (it becomes part of the image reference).
    pub service: String,
    /// Where the code comes from.
    pub source: Source,
    /// Secrets for `run` steps (environment variables), masked in every log line.
    pub secrets: BTreeMap<String, String>,
}

/// How a build ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildStatus {
    /// Every step passed; the outcome has a version.
    Succeeded,
    /// A step (or `request`, `checkout`, `pipeline`) failed.
    Failed {
        /// The step's name, or the phase: `request`, `checkout`, `pipeline`.
        step: String,
        /// Why, in words for the user (secrets masked).
        reason: String,
    },
    /// The cancellation token fired.
    Cancelled,
}

/// A built version of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// The version name: the Git tag at HEAD, else the short commit (`r<rev>` for Subversion).
    pub name: String,
    /// The image ID (`sha256:...`): what deployments pin.
    pub digest: String,
    /// The image reference it is tagged with, `berth/<service>:<version>`.
    pub tag: String,
    /// The full commit id (or Subversion revision).
    pub commit: String,
    /// The commit's author.
    pub author: String,
    /// The commit's time.
    pub time: Option<OffsetDateTime>,
}

/// What one pipeline step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepResult {
    /// The step's name.
    pub name: String,
    /// The container's exit code (`run` steps that ran to the end), else `None`.
    pub exit_code: Option<i64>,
    /// Wall time of the step.
    pub duration: Duration,
    /// The JUnit report the step declared, read after it (passed or failed).
    pub report: Option<berth_core::api::TestReport>,
}

/// The result of a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOutcome {
    /// Succeeded, failed or cancelled.
    pub status: BuildStatus,
    /// The version, on success only.
    pub version: Option<Version>,
    /// The steps that ran (or started), in order.
    pub steps: Vec<StepResult>,
    /// The revision checked out, when the checkout succeeded.
    pub revision: Option<Revision>,
    /// The contract the pipeline names (`contract:`), as JSON text, on success.
    pub contract: Option<String>,
    /// The start of the source's README (`README.md`, `README`, ...), on success.
    pub readme: Option<String>,
}

impl BuildOutcome {
    fn failed(step: &str, reason: impl Into<String>) -> BuildOutcome {
        BuildOutcome {
            status: BuildStatus::Failed {
                step: step.to_string(),
                reason: reason.into(),
            },
            version: None,
            steps: Vec::new(),
            revision: None,
            contract: None,
            readme: None,
        }
    }
}

/// Runs builds against one engine.
#[derive(Debug, Clone)]
pub struct Builder {
    docker: Docker,
    config: BuildConfig,
    /// Per service: what its last successful build packed (see [`Warm`]).
    warm: Arc<Mutex<HashMap<String, Warm>>>,
    /// Kept trees in use by a build (see [`KeptTree`]).
    trees: Arc<Mutex<HashSet<PathBuf>>>,
}

/// A packed build context and the Dockerfile name to build it with.
type Packed = (Arc<Vec<u8>>, Option<String>);

/// The packed contexts of a service's last successful build, with what they were packed from.
/// A later build of the same source, at the same commit with the same tags, and whose pipeline
/// has no `run` step (nothing but the commit's files goes into the contexts), sends them again
/// instead of checking the commit out and packing it: the engine still builds (its cache
/// decides exactly as for any build, base images included), only the checkout is skipped. This
/// is what makes a no-change rebuild cost about what `docker build` costs (docs/benchmarks.md
/// §5).
///
/// The warm build reads no file: it has no checkout, and runs in an empty workspace of its own
/// (never the shared `work_root`, where other services' trees are). The contract and README are
/// the commit's, kept here from the build that read them in the service's own tree.
#[derive(Debug, Clone)]
struct Warm {
    source: Source,
    commit: String,
    tags: Vec<String>,
    revision: Revision,
    pipeline: Pipeline,
    contexts: BTreeMap<String, Packed>,
    /// The evidence read from the commit's files: the contract (compact JSON), the README.
    evidence: Kept,
}

/// A commit's contract and README, as the build that checked it out read them.
#[derive(Debug, Clone, Default)]
struct Kept {
    contract: Option<String>,
    readme: Option<String>,
}

/// Contexts at most this large (all steps together) are kept for a warm rebuild.
const WARM_MAX_BYTES: usize = 64 << 20;
/// At most this much is kept for all services together; the largest other entries go first.
const WARM_TOTAL_BYTES: usize = 256 << 20;

impl Warm {
    fn bytes(&self) -> usize {
        self.contexts.values().map(|(t, _)| t.len()).sum()
    }
}

/// Keep `warm` for `service`, evicting other services' entries (largest first) to stay under
/// [`WARM_TOTAL_BYTES`].
fn keep_warm(cache: &Mutex<HashMap<String, Warm>>, service: &str, warm: Warm) {
    let mut c = lock(cache);
    c.remove(service);
    let mut total: usize = c.values().map(Warm::bytes).sum::<usize>() + warm.bytes();
    while total > WARM_TOTAL_BYTES {
        let Some((name, size)) = c
            .iter()
            .map(|(n, w)| (n.clone(), w.bytes()))
            .max_by_key(|(_, size)| *size)
        else {
            break;
        };
        c.remove(&name);
        total -= size;
    }
    c.insert(service.to_string(), warm);
}

/// Contexts to send instead of packing (`reuse`), and those packed during this build.
#[derive(Default)]
struct Contexts {
    reuse: BTreeMap<String, Packed>,
    packed: Mutex<BTreeMap<String, Packed>>,
    /// A warm build's evidence: used instead of reading the workspace (which is empty).
    kept: Option<Kept>,
}

/// A service's kept Git tree, `<work_root>/trees/<service>-<source hash>/src` (`<service>` as
/// [`dir_part`] writes it), claimed by one
/// build at a time. A build of a Git source updates it in place (fetch, forced checkout,
/// `clean -ffdx`: only changed files are written) instead of cloning afresh. It is kept only
/// while no `run` step has had it mounted: a step could plant Git configuration or hooks that
/// the server's own `git` would then run, so after a pipeline with `run` steps (or a failed
/// checkout) the tree is deleted and the next build clones again.
struct KeptTree {
    dir: PathBuf,
    busy: Arc<Mutex<HashSet<PathBuf>>>,
}

impl Drop for KeptTree {
    fn drop(&mut self) {
        lock(&self.busy).remove(&self.dir);
    }
}

/// FNV-1a: a hash that stays the same across builds of Berth (directory names depend on it).
fn fnv(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Where log lines go, masked.
struct Sink<'a> {
    on_log: &'a (dyn Fn(LogLine) + Send + Sync),
    masker: Masker,
}

impl Sink<'_> {
    fn emit(&self, step: &str, stream: LogStreamKind, text: &str) {
        (self.on_log)(LogLine {
            step: step.to_string(),
            stream,
            text: self.masker.mask(text),
        });
    }
}

/// How a step ended, internally.
enum StepEnd {
    Ok {
        exit_code: Option<i64>,
    },
    Failed {
        exit_code: Option<i64>,
        reason: String,
    },
    Cancelled,
}

static BUILD_COUNTER: AtomicU32 = AtomicU32::new(0);

/// A build id unique on this host: `<service>-<clock>-<pid>-<n>` (hex).
fn new_build_id(service: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let n = BUILD_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{}-{:x}-{:x}-{n}",
        path_part(service),
        nanos & 0xffff_ffff_ffff,
        std::process::id()
    )
}

/// A global service name (docs/teams.md): `[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?`, for a team
/// other than `default` after `team/` (a team name: `[a-z0-9][a-z0-9-]{0,29}`). The image
/// repository `berth/team/name` is a valid Docker name; in file and container names the `/` is
/// written `.` ([`path_part`]).
fn valid_service_name(s: &str) -> bool {
    match s.split_once('/') {
        Some((team, name)) => {
            !team.is_empty()
                && team.len() <= 30
                && team
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !team.starts_with('-')
                && valid_local_service_name(name)
        }
        None => valid_local_service_name(s),
    }
}

/// A global service name where `/` cannot appear (a container name): `/` written `.`. Unique
/// enough for build ids, which carry a clock and a counter; not injective (team `default`'s
/// service `a.b` and team `a`'s `b` meet), so never a directory name ([`dir_part`]).
fn path_part(service: &str) -> String {
    service.replace('/', ".")
}

/// A global service name as a directory name: `/` written `+`, which no team or service name
/// contains, so team `a`'s `b-c`, team `a-b`'s `c` and team `default`'s `a.b-c` get three
/// directories (`a+b-c`, `a-b+c`, `a.b-c`).
fn dir_part(service: &str) -> String {
    service.replace('/', "+")
}

fn valid_local_service_name(s: &str) -> bool {
    let b = s.as_bytes();
    let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.len() <= 63
        && b.first().is_some_and(edge)
        && b.last().is_some_and(edge)
        && b.iter().all(|c| edge(c) || matches!(c, b'.' | b'_' | b'-'))
}

/// A version name as a Docker tag: `[A-Za-z0-9_][A-Za-z0-9_.-]*`, other characters become
/// `-`, at most `max` characters.
#[must_use]
pub fn docker_tag(name: &str, max: usize) -> String {
    let mut t: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if t.is_empty() || t.starts_with(['.', '-']) {
        t.insert(0, '_');
    }
    t.truncate(max);
    t
}

impl Builder {
    /// A builder on this engine with this configuration.
    #[must_use]
    pub fn new(docker: Docker, config: BuildConfig) -> Builder {
        Builder {
            docker,
            config,
            warm: Arc::default(),
            trees: Arc::default(),
        }
    }

    /// Checks the source out, reads its pipeline (or uses the default one) and runs it.
    /// Never returns an error: every failure is a [`BuildStatus::Failed`] naming the step or
    /// phase, and log lines tell the story as it happens.
    pub async fn build(
        &self,
        request: &BuildRequest,
        on_log: &(dyn Fn(LogLine) + Send + Sync),
        cancel: &CancellationToken,
    ) -> BuildOutcome {
        let sink = Sink {
            on_log,
            masker: Masker::new(&request.secrets),
        };
        if !valid_service_name(&request.service) {
            return BuildOutcome::failed(
                "request",
                format!(
                    "service name {:?}: use 1-63 characters of a-z, 0-9, `.`, `_`, `-`",
                    request.service
                ),
            );
        }
        if let Some(k) = request.secrets.keys().find(|k| !valid_env_name(k)) {
            return BuildOutcome::failed(
                "request",
                format!("secret name {k:?} is not a variable name"),
            );
        }
        if let Err(e) = request.source.validate() {
            sink.emit("checkout", LogStreamKind::System, &e.to_string());
            return BuildOutcome::failed("checkout", sink.masker.mask(&e.to_string()));
        }
        if let Some(outcome) = self.try_warm(request, &sink, cancel).await {
            return outcome;
        }
        if let Some(tree) = self.claim_tree(request) {
            let dest = tree.dir.join("src");
            let (outcome, tainted) = self.build_in(request, &dest, true, &sink, cancel).await;
            if tainted {
                // `run` steps had the tree mounted: it is never used again (see KeptTree).
                let dir = tree.dir.clone();
                let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
            }
            return outcome;
        }
        let workspace = match tempfile::Builder::new()
            .prefix("berth-build-")
            .tempdir_in(&self.config.work_root)
        {
            Ok(w) => w,
            Err(e) => {
                return BuildOutcome::failed(
                    "checkout",
                    format!(
                        "cannot create a workspace in {}: {e}",
                        self.config.work_root.display()
                    ),
                )
            }
        };
        let (outcome, _) = self
            .build_in(request, &workspace.path().join("src"), false, &sink, cancel)
            .await;
        // Removing a large tree is blocking work.
        let _ = tokio::task::spawn_blocking(move || drop(workspace)).await;
        outcome
    }

    /// The kept tree of a Git source's service, unless another build holds it (then the build
    /// uses a fresh workspace). Trees of the service's earlier sources are removed.
    fn claim_tree(&self, request: &BuildRequest) -> Option<KeptTree> {
        let Source::Git(g) = &request.source else {
            return None;
        };
        if !self.config.keep_trees {
            return None;
        }
        let root = self.config.work_root.join("trees");
        let name = format!(
            "{}-{:016x}",
            dir_part(&request.service),
            fnv(&[&g.url, g.branch.as_deref().unwrap_or("")])
        );
        let dir = root.join(&name);
        if !lock(&self.trees).insert(dir.clone()) {
            return None;
        }
        let tree = KeptTree {
            dir: dir.clone(),
            busy: self.trees.clone(),
        };
        if let Ok(entries) = std::fs::read_dir(&root) {
            for e in entries.flatten() {
                let other = e.file_name().to_string_lossy().into_owned();
                let stale = other != name
                    && other
                        .strip_prefix(&format!("{}-", dir_part(&request.service)))
                        .is_some_and(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()));
                if stale && !lock(&self.trees).contains(&e.path()) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        std::fs::create_dir_all(&dir).ok()?;
        Some(tree)
    }

    /// The warm path (see [`Warm`]): `None` when it does not apply and a checkout is needed.
    async fn try_warm(
        &self,
        request: &BuildRequest,
        sink: &Sink<'_>,
        cancel: &CancellationToken,
    ) -> Option<BuildOutcome> {
        let Source::Git(g) = &request.source else {
            return None;
        };
        let warm = lock(&self.warm).get(&request.service).cloned()?;
        if warm.source != request.source {
            return None;
        }
        let started = Instant::now();
        let (commit, tags) = g.resolve(&self.config.source_limits, cancel).await.ok()??;
        if commit != warm.commit || tags != warm.tags {
            return None;
        }
        sink.emit(
            "checkout",
            LogStreamKind::System,
            &format!(
                "{} unchanged at {commit} (version {}), checked in {:.1?}: sending the last build's packed context again, no checkout",
                redact_userinfo(&g.url),
                warm.revision.name,
                started.elapsed()
            ),
        );
        let contexts = Contexts {
            reuse: warm.contexts,
            packed: Mutex::default(),
            kept: Some(warm.evidence),
        };
        // An empty workspace of the build's own: nothing the pipeline names can lead into
        // `work_root`, where other services' trees are.
        let workspace = match tempfile::Builder::new()
            .prefix("berth-warm-")
            .tempdir_in(&self.config.work_root)
        {
            Ok(w) => w,
            Err(_) => return None,
        };
        let mut o = self
            .run_pipeline_inner(
                &request.service,
                workspace.path(),
                &warm.revision,
                &warm.pipeline,
                &request.secrets,
                sink,
                cancel,
                &contexts,
            )
            .await;
        drop(workspace);
        o.revision = Some(warm.revision);
        Some(o)
    }

    /// Checks out into `dest` (updating a kept tree there when `reuse`), runs the pipeline.
    /// Also says whether `run` steps (or a failed checkout) may have changed the tree, so a
    /// kept tree must be dropped.
    async fn build_in(
        &self,
        request: &BuildRequest,
        dest: &Path,
        reuse: bool,
        sink: &Sink<'_>,
        cancel: &CancellationToken,
    ) -> (BuildOutcome, bool) {
        sink.emit(
            "checkout",
            LogStreamKind::System,
            &describe(&request.source),
        );
        let checkout_started = Instant::now();
        let limits = &self.config.source_limits;
        let checked_out = if reuse {
            request.source.checkout_reusing(dest, limits, cancel).await
        } else {
            request
                .source
                .checkout(dest, limits, cancel)
                .await
                .map(|(rev, root)| (rev, root, false))
        };
        let (revision, root, reused) = match checked_out {
            Ok(r) => r,
            Err(SourceError::Cancelled) => {
                return (
                    BuildOutcome {
                        status: BuildStatus::Cancelled,
                        version: None,
                        steps: Vec::new(),
                        revision: None,
                        contract: None,
                        readme: None,
                    },
                    true,
                )
            }
            Err(e) => {
                let reason = sink.masker.mask(&e.to_string());
                sink.emit("checkout", LogStreamKind::System, &reason);
                return (BuildOutcome::failed("checkout", reason), true);
            }
        };
        sink.emit(
            "checkout",
            LogStreamKind::System,
            &format!(
                "checked out {} by {} (version {}) in {:.1?}{}",
                revision.commit,
                revision.author,
                revision.name,
                checkout_started.elapsed(),
                if reused {
                    " (the kept tree, updated)"
                } else {
                    ""
                }
            ),
        );
        let pipeline = match read_pipeline(&root) {
            Ok(p) => p,
            Err(reason) => {
                let reason = sink.masker.mask(&reason);
                sink.emit("pipeline", LogStreamKind::System, &reason);
                let mut o = BuildOutcome::failed("pipeline", reason);
                o.revision = Some(revision);
                return (o, false);
            }
        };
        let contexts = Contexts::default();
        let mut outcome = self
            .run_pipeline_inner(
                &request.service,
                &root,
                &revision,
                &pipeline,
                &request.secrets,
                sink,
                cancel,
                &contexts,
            )
            .await;
        let packed = std::mem::take(&mut *lock(&contexts.packed));
        let size: usize = packed.values().map(|(t, _)| t.len()).sum();
        let only_builds = pipeline
            .steps
            .iter()
            .all(|s| matches!(s.kind, StepKind::Build(_)));
        lock(&self.warm).remove(&request.service);
        if outcome.status == BuildStatus::Succeeded && only_builds && size <= WARM_MAX_BYTES {
            // Kept only when `git ls-remote` agrees with the checkout (same commit, its tag
            // among the tags there), so later comparisons are like for like.
            if let Source::Git(g) = &request.source {
                if let Ok(Some((commit, tags))) =
                    g.resolve(&self.config.source_limits, cancel).await
                {
                    if commit == revision.commit
                        && revision.tag.as_ref().is_none_or(|t| tags.contains(t))
                    {
                        keep_warm(
                            &self.warm,
                            &request.service,
                            Warm {
                                source: request.source.clone(),
                                commit,
                                tags,
                                revision: revision.clone(),
                                pipeline,
                                contexts: packed,
                                evidence: Kept {
                                    contract: outcome.contract.clone(),
                                    readme: outcome.readme.clone(),
                                },
                            },
                        );
                    }
                }
            }
        }
        outcome.revision = Some(revision);
        (outcome, !only_builds)
    }

    /// Runs a parsed pipeline over a workspace that is already in place (e.g. an uploaded
    /// source), as [`Builder::build`] does after its checkout.
    #[allow(clippy::too_many_arguments)] // the build's whole context; a struct would only wrap it
    pub async fn run_pipeline(
        &self,
        service: &str,
        workspace: &Path,
        revision: &Revision,
        pipeline: &Pipeline,
        secrets: &BTreeMap<String, String>,
        on_log: &(dyn Fn(LogLine) + Send + Sync),
        cancel: &CancellationToken,
    ) -> BuildOutcome {
        let sink = Sink {
            on_log,
            masker: Masker::new(secrets),
        };
        if !valid_service_name(service) {
            return BuildOutcome::failed("request", format!("service name {service:?} refused"));
        }
        let mut o = self
            .run_pipeline_inner(
                service,
                workspace,
                revision,
                pipeline,
                secrets,
                &sink,
                cancel,
                &Contexts::default(),
            )
            .await;
        o.revision = Some(revision.clone());
        o
    }

    #[allow(clippy::too_many_arguments)] // see run_pipeline
    async fn run_pipeline_inner(
        &self,
        service: &str,
        workspace: &Path,
        revision: &Revision,
        pipeline: &Pipeline,
        secrets: &BTreeMap<String, String>,
        sink: &Sink<'_>,
        cancel: &CancellationToken,
        contexts: &Contexts,
    ) -> BuildOutcome {
        let build_id = new_build_id(service);
        let final_build = pipeline.final_build();
        let version_tag = docker_tag(&revision.name, 100);
        let final_ref = format!("{IMAGE_REPOSITORY}/{service}:{version_tag}");
        let mut tags_made: Vec<String> = Vec::new();
        let mut steps = Vec::new();
        let mut status = BuildStatus::Succeeded;
        // Images belong to teams: a step image of another team's fails the build before any
        // step runs (Dockerfiles are checked by their step, once packed: earlier steps may
        // write them).
        let team = berth_core::team::team_of(service);
        for step in &pipeline.steps {
            let StepKind::Run(run) = &step.kind else {
                continue;
            };
            let place = format!("step {} image", step.name);
            let denial =
                match crate::owner::image_denial(&self.docker, team, &place, &run.image).await {
                    Ok(d) => d,
                    Err(e) => return BuildOutcome::failed(&step.name, e.to_string()),
                };
            if let Some(reason) = denial {
                let reason = format!("image_denied: {reason}");
                sink.emit(&step.name, LogStreamKind::System, &reason);
                return BuildOutcome::failed(&step.name, reason);
            }
        }
        for (i, step) in pipeline.steps.iter().enumerate() {
            if cancel.is_cancelled() {
                status = BuildStatus::Cancelled;
                break;
            }
            let timeout = step.timeout.unwrap_or(self.config.step_timeout);
            sink.emit(
                &step.name,
                LogStreamKind::System,
                &format!("step {} started", step.name),
            );
            let started = Instant::now();
            let end = match &step.kind {
                StepKind::Run(run) => {
                    self.run_step(
                        &build_id, &step.name, run, workspace, secrets, timeout, sink, cancel,
                    )
                    .await
                }
                StepKind::Build(b) => {
                    let reference = if Some(i) == final_build {
                        final_ref.clone()
                    } else {
                        format!("{final_ref}-{}", step.name)
                    };
                    let mut labels = self.config.labels.clone();
                    labels.insert("berth.service".into(), service.to_string());
                    labels.insert("berth.version".into(), revision.name.clone());
                    labels.insert("berth.commit".into(), revision.commit.clone());
                    if Some(i) != final_build {
                        labels.insert("berth.build.step".into(), step.name.clone());
                    }
                    let end = self
                        .build_step(
                            &step.name, b, workspace, &reference, labels, timeout, sink, cancel,
                            contexts, team,
                        )
                        .await;
                    if matches!(end, StepEnd::Ok { .. }) {
                        tags_made.push(reference);
                    }
                    end
                }
            };
            let duration = started.elapsed();
            let report = match &step.kind {
                StepKind::Run(RunStep {
                    junit: Some(path), ..
                }) if !matches!(end, StepEnd::Cancelled) => {
                    let report = read_report(workspace, path).await;
                    sink.emit(
                        &step.name,
                        LogStreamKind::System,
                        &match &report.problem {
                            Some(p) => format!("test report {path}: {p}"),
                            None => format!(
                                "test report {path}: {} passed, {} failed, {} skipped",
                                report.passed, report.failed, report.skipped
                            ),
                        },
                    );
                    Some(report)
                }
                _ => None,
            };
            match end {
                StepEnd::Ok { exit_code } => {
                    sink.emit(
                        &step.name,
                        LogStreamKind::System,
                        &format!("step {} succeeded in {duration:.1?}", step.name),
                    );
                    steps.push(StepResult {
                        name: step.name.clone(),
                        exit_code,
                        duration,
                        report: report.clone(),
                    });
                }
                StepEnd::Failed { exit_code, reason } => {
                    let reason = sink.masker.mask(&reason);
                    sink.emit(
                        &step.name,
                        LogStreamKind::System,
                        &format!("step {} failed: {reason}", step.name),
                    );
                    steps.push(StepResult {
                        name: step.name.clone(),
                        exit_code,
                        duration,
                        report: report.clone(),
                    });
                    status = BuildStatus::Failed {
                        step: step.name.clone(),
                        reason,
                    };
                    break;
                }
                StepEnd::Cancelled => {
                    sink.emit(
                        &step.name,
                        LogStreamKind::System,
                        &format!("step {} cancelled", step.name),
                    );
                    steps.push(StepResult {
                        name: step.name.clone(),
                        exit_code: None,
                        duration,
                        report: None,
                    });
                    status = BuildStatus::Cancelled;
                    break;
                }
            }
        }

        let mut contract = None;
        if let (BuildStatus::Succeeded, Some(path), Some(kept)) =
            (&status, &pipeline.contract, &contexts.kept)
        {
            sink.emit(
                "contract",
                LogStreamKind::System,
                &format!("contract {path}: the one the last build of this commit read"),
            );
            contract = kept.contract.clone();
        } else if let (BuildStatus::Succeeded, Some(path)) = (&status, &pipeline.contract) {
            match read_contract(workspace, path).await {
                Ok((json, ops)) => {
                    sink.emit(
                        "contract",
                        LogStreamKind::System,
                        &format!("contract {path}: {ops} operations"),
                    );
                    contract = Some(json);
                }
                Err(reason) => {
                    sink.emit("contract", LogStreamKind::System, &reason);
                    status = BuildStatus::Failed {
                        step: "contract".into(),
                        reason,
                    };
                }
            }
        }
        let mut version = None;
        if status == BuildStatus::Succeeded {
            match self.docker.inspect_image(&final_ref).await {
                Ok(Some(image)) => {
                    version = Some(Version {
                        name: revision.name.clone(),
                        digest: image.id,
                        tag: final_ref.clone(),
                        commit: revision.commit.clone(),
                        author: revision.author.clone(),
                        time: revision.time,
                    });
                }
                Ok(None) => {
                    status = BuildStatus::Failed {
                        step: "image".into(),
                        reason: format!("{final_ref} is missing after the build"),
                    };
                }
                Err(e) => {
                    status = BuildStatus::Failed {
                        step: "image".into(),
                        reason: format!("inspecting {final_ref}: {e}"),
                    };
                }
            }
        }
        // Only the version's image outlives the build.
        for reference in tags_made {
            if version.is_some() && reference == final_ref {
                continue;
            }
            if let Err(e) = self.docker.remove_image(&reference, false, false).await {
                if !e.is_not_found() {
                    tracing::warn!(image = %reference, error = %e, "removing a build's image failed");
                }
            }
        }
        let readme = match (&status, &contexts.kept) {
            (BuildStatus::Succeeded, Some(kept)) => kept.readme.clone(),
            (BuildStatus::Succeeded, None) => read_readme(workspace).await,
            _ => None,
        };
        BuildOutcome {
            status,
            version,
            steps,
            revision: None,
            readme,
            contract,
        }
    }

    #[allow(clippy::too_many_arguments)] // one step's whole context
    async fn run_step(
        &self,
        build_id: &str,
        step: &str,
        run: &RunStep,
        workspace: &Path,
        secrets: &BTreeMap<String, String>,
        timeout: Duration,
        sink: &Sink<'_>,
        cancel: &CancellationToken,
    ) -> StepEnd {
        match self.docker.inspect_image(&run.image).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                return StepEnd::Failed {
                    exit_code: None,
                    reason: format!(
                        "image {:?} is not on the engine (Berth never pulls images)",
                        run.image
                    ),
                }
            }
            Err(e) => {
                return StepEnd::Failed {
                    exit_code: None,
                    reason: e.to_string(),
                }
            }
        }
        let mut env: BTreeMap<&str, &str> = run
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        env.extend(secrets.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut labels = self.config.labels.clone();
        labels.insert("berth.build".into(), build_id.to_string());
        labels.insert("berth.build.step".into(), step.to_string());
        let script = format!("set -e\n{}", run.commands.join("\n"));
        let spec = ContainerSpec {
            image: run.image.clone(),
            entrypoint: Some(vec!["sh".into(), "-c".into()]),
            cmd: Some(vec![script]),
            env: env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            labels,
            working_dir: Some(run.workdir.clone()),
            host: HostSpec {
                binds: vec![format!("{}:{WORKSPACE_MOUNT}", workspace.display())],
                ..HostSpec::default()
            },
            ..ContainerSpec::default()
        };
        for c in &run.commands {
            sink.emit(step, LogStreamKind::System, &format!("$ {c}"));
        }
        let name = format!("berth-build-{build_id}-{step}");
        let id = match self.docker.create_container(&name, &spec).await {
            Ok(id) => id,
            Err(e) => {
                return StepEnd::Failed {
                    exit_code: None,
                    reason: format!("creating the step container: {e}"),
                }
            }
        };
        let end = self.drive_container(&id, step, timeout, sink, cancel).await;
        if let Err(e) = self.docker.remove_container(&id, true, true).await {
            if !e.is_not_found() {
                tracing::warn!(container = %id, error = %e, "removing a build step container failed");
            }
        }
        end
    }

    async fn drive_container(
        &self,
        id: &str,
        step: &str,
        timeout: Duration,
        sink: &Sink<'_>,
        cancel: &CancellationToken,
    ) -> StepEnd {
        let work = async {
            self.docker.start_container(id).await?;
            let mut logs = self.docker.logs(id, true, None, false).await?;
            let mut out = LineSplitter::default();
            let mut err = LineSplitter::default();
            while let Some(chunk) = logs.recv().await {
                let chunk = chunk?;
                let (splitter, kind) = match chunk.stream {
                    LogSource::Stderr => (&mut err, LogStreamKind::Stderr),
                    _ => (&mut out, LogStreamKind::Stdout),
                };
                for line in splitter.push(&chunk.data) {
                    sink.emit(step, kind, &line);
                }
            }
            for (splitter, kind) in [
                (&mut out, LogStreamKind::Stdout),
                (&mut err, LogStreamKind::Stderr),
            ] {
                if let Some(rest) = splitter.finish() {
                    sink.emit(step, kind, &rest);
                }
            }
            self.docker.wait_container(id).await
        };
        let end = tokio::select! {
            r = tokio::time::timeout(timeout, work) => match r {
                Ok(Ok(0)) => return StepEnd::Ok { exit_code: Some(0) },
                Ok(Ok(code)) => return StepEnd::Failed { exit_code: Some(code), reason: format!("exited with code {code}") },
                Ok(Err(e)) => StepEnd::Failed { exit_code: None, reason: e.to_string() },
                Err(_) => StepEnd::Failed { exit_code: None, reason: format!("timed out after {timeout:?}") },
            },
            () = cancel.cancelled() => StepEnd::Cancelled,
        };
        // Stop it now; the caller removes it.
        let _ = self.docker.kill_container(id, "SIGKILL").await;
        end
    }

    #[allow(clippy::too_many_arguments)] // one step's whole context
    async fn build_step(
        &self,
        step: &str,
        b: &BuildStep,
        workspace: &Path,
        reference: &str,
        labels: BTreeMap<String, String>,
        timeout: Duration,
        sink: &Sink<'_>,
        cancel: &CancellationToken,
        contexts: &Contexts,
        team: &str,
    ) -> StepEnd {
        let failed = |reason: String| StepEnd::Failed {
            exit_code: None,
            reason,
        };
        let pack_started = Instant::now();
        let (tar, generated) = if let Some((tar, generated)) = contexts.reuse.get(step) {
            ((**tar).clone(), generated.clone())
        } else {
            match pack(b, workspace, &labels).await {
                Ok((tar, generated)) => {
                    lock(&contexts.packed)
                        .insert(step.to_string(), (Arc::new(tar.clone()), generated.clone()));
                    (tar, generated)
                }
                Err(reason) => return failed(reason),
            }
        };
        // The Dockerfile as sent (Berth's labelled copy, or the step's own) names only images
        // the team may use.
        let sent = generated.clone().unwrap_or_else(|| b.dockerfile.clone());
        match crate::owner::dockerfile_denials(
            &self.docker,
            team,
            std::io::Cursor::new(tar.clone()),
            &sent,
            &b.args,
        )
        .await
        {
            Ok(denials) if denials.is_empty() => {}
            Ok(denials) => return failed(format!("image_denied: {}", denials.join("; "))),
            Err(e) => return failed(e.to_string()),
        }
        sink.emit(
            step,
            LogStreamKind::System,
            &format!(
                "sending a build context of {} bytes (packed in {:.1?}), tagging {reference}",
                tar.len(),
                pack_started.elapsed()
            ),
        );
        let params = match generated {
            Some(dockerfile) => BuildParams {
                tag: reference.to_string(),
                dockerfile,
                buildargs: b.args.clone(),
                target: b.target.clone(),
                labels: BTreeMap::new(),
            },
            None => BuildParams {
                tag: reference.to_string(),
                dockerfile: b.dockerfile.clone(),
                buildargs: b.args.clone(),
                target: b.target.clone(),
                labels,
            },
        };
        let work = crate::image::build_image(&self.docker, tar, &params, |out| match out {
            BuildOutput::Line(line) => sink.emit(step, LogStreamKind::Stdout, line),
            BuildOutput::ImageId(id) => {
                sink.emit(step, LogStreamKind::System, &format!("image {id}"));
            }
            BuildOutput::Error(e) => sink.emit(step, LogStreamKind::Stderr, e),
        });
        // Dropping `work` (timeout, cancellation) drops the build stream, which cancels the
        // build on the engine.
        tokio::select! {
            r = tokio::time::timeout(timeout, work) => match r {
                Ok(Ok(_)) => StepEnd::Ok { exit_code: None },
                Ok(Err(e)) => failed(e.to_string()),
                Err(_) => failed(format!("timed out after {timeout:?}")),
            },
            () = cancel.cancelled() => StepEnd::Cancelled,
        }
    }
}

/// Packs a build step's context: labels folded into one LABEL step (see [`crate::context`]),
/// except for a `target` build, where the last stage is not the one built.
async fn pack(
    b: &BuildStep,
    workspace: &Path,
    labels: &BTreeMap<String, String>,
) -> Result<(Vec<u8>, Option<String>), String> {
    let context_dir =
        resolve_inside(workspace, &b.context).map_err(|e| format!("build context: {e}"))?;
    let dockerfile = b.dockerfile.clone();
    let fold = b.target.as_deref().is_none_or(str::is_empty);
    let fold_labels = if fold {
        labels.clone()
    } else {
        BTreeMap::new()
    };
    let packed = tokio::task::spawn_blocking(move || {
        if fold_labels.is_empty() {
            context_tar(&context_dir, &dockerfile).map(|t| (t, None))
        } else {
            context_tar_with_labels(&context_dir, &dockerfile, &fold_labels)
        }
    })
    .await;
    match packed {
        Ok(Ok(packed)) => Ok(packed),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(format!("packing the build context: {e}")),
    }
}

/// The pipeline file of a workspace, or the default pipeline when there is none. A pipeline
/// file that is a symlink is refused (it could point anywhere on the host).
fn read_pipeline(root: &Path) -> Result<Pipeline, String> {
    let path = root.join(PIPELINE_FILE);
    match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Pipeline::default_pipeline()),
        Err(e) => Err(format!("{PIPELINE_FILE}: {e}")),
        Ok(m) if !m.is_file() => Err(format!("{PIPELINE_FILE} is not a regular file")),
        Ok(_) => {
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{PIPELINE_FILE}: {e}"))?;
            Pipeline::parse(&text).map_err(|e| e.to_string())
        }
    }
}

fn describe(source: &Source) -> String {
    match source {
        Source::Git(g) => format!(
            "git checkout of {}{}{}",
            redact_userinfo(&g.url),
            g.branch
                .as_deref()
                .map(|b| format!(" branch {b}"))
                .unwrap_or_default(),
            g.path
                .as_deref()
                .map(|p| format!(" path {p}"))
                .unwrap_or_default()
        ),
        Source::Svn(s) => format!("svn checkout of {}", redact_userinfo(&s.url)),
    }
}

/// `scheme://user:password@host/...` with the user info replaced by `***`, for the log.
fn redact_userinfo(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..end].rfind('@') {
            return format!("{scheme}://***@{}", &rest[at + 1..]);
        }
    }
    url.to_string()
}

/// `workspace/rel`, if it stays inside the workspace through symlinks and is a regular file of
/// at most `max` bytes.
async fn read_inside(workspace: &Path, rel: &str, max: u64) -> Result<String, String> {
    let root = tokio::fs::canonicalize(workspace)
        .await
        .map_err(|e| format!("the workspace: {e}"))?;
    let full = tokio::fs::canonicalize(root.join(rel))
        .await
        .map_err(|_| "missing (the step did not write it)".to_string())?;
    if !full.starts_with(&root) {
        return Err("refused: it leads outside the workspace".into());
    }
    let meta = tokio::fs::metadata(&full)
        .await
        .map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a file".into());
    }
    if meta.len() > max {
        return Err(format!("larger than {max} bytes"));
    }
    let bytes = tokio::fs::read(&full).await.map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".into())
}

async fn read_report(workspace: &Path, rel: &str) -> berth_core::api::TestReport {
    match read_inside(workspace, rel, crate::reports::MAX_REPORT_BYTES).await {
        Ok(text) => crate::reports::parse_junit(rel, &text),
        Err(why) => crate::reports::missing(rel, &why),
    }
}

/// At most this much of a README is kept (the market shows it).
const MAX_README_BYTES: usize = 64 << 10;

/// The start of the source's README, if it has one.
async fn read_readme(workspace: &Path) -> Option<String> {
    for name in [
        "README.md",
        "README",
        "README.txt",
        "README.rst",
        "readme.md",
    ] {
        let Ok(text) = read_inside(workspace, name, 16 << 20).await else {
            continue;
        };
        let mut end = text.len().min(MAX_README_BYTES);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        return Some(text[..end].to_string());
    }
    None
}

/// Contracts larger than this are refused.
const MAX_CONTRACT_BYTES: u64 = 4 << 20;

/// The pipeline's contract as compact JSON, and its operation count; or why the build fails.
async fn read_contract(workspace: &Path, rel: &str) -> Result<(String, usize), String> {
    let text = read_inside(workspace, rel, MAX_CONTRACT_BYTES)
        .await
        .map_err(|why| format!("contract {rel}: {why}"))?;
    let doc: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(_) => serde_saphyr::from_str(&text)
            .map_err(|e| format!("contract {rel}: neither JSON nor YAML: {e}"))?,
    };
    berth_core::contract::validate(&doc).map_err(|e| format!("contract {rel}: {e}"))?;
    let ops = berth_core::contract::operation_count(&doc);
    Ok((doc.to_string(), ops))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_cache_stays_under_its_total() {
        let warm = |mb: usize| Warm {
            source: Source::Git(crate::GitSource::default()),
            commit: "c".into(),
            tags: vec![],
            revision: Revision {
                commit: "c".into(),
                author: String::new(),
                time: None,
                tag: None,
                name: "c".into(),
            },
            pipeline: Pipeline::default_pipeline(),
            contexts: [("build".to_string(), (Arc::new(vec![0u8; mb << 20]), None))].into(),
            evidence: Kept::default(),
        };
        let cache = Mutex::new(HashMap::new());
        keep_warm(&cache, "a", warm(60));
        keep_warm(&cache, "b", warm(100));
        keep_warm(&cache, "c", warm(90));
        assert_eq!(lock(&cache).len(), 3);
        // 60 + 100 + 90 + 64 > 256: the largest other (b) goes.
        keep_warm(&cache, "d", warm(64));
        let mut names: Vec<String> = lock(&cache).keys().cloned().collect();
        names.sort();
        assert_eq!(names, vec!["a", "c", "d"]);
        // Replacing a service's own entry does not count it twice.
        keep_warm(&cache, "d", warm(64));
        assert_eq!(lock(&cache).len(), 3);
    }

    #[test]
    fn tree_directories_of_two_teams_never_meet() {
        let names = ["a/b-c", "a-b/c", "a.b-c", "a/b.c", "default-x/y"];
        let dirs: std::collections::BTreeSet<String> = names.iter().map(|n| dir_part(n)).collect();
        assert_eq!(dirs.len(), names.len(), "{dirs:?}");
        for n in names {
            assert!(valid_service_name(n), "{n}");
        }
    }

    #[test]
    fn service_names() {
        for ok in ["shop", "web-1", "a", "a.b_c", "shop/web", "t-1/a.b"] {
            assert!(valid_service_name(ok), "{ok}");
        }
        for bad in [
            "",
            "Shop",
            "-a",
            "a-",
            "a/b/c",
            "A/b",
            "a_b/c",
            "/b",
            "a/",
            "a:b",
            &"x".repeat(64),
        ] {
            assert!(!valid_service_name(bad), "{bad}");
        }
    }

    #[test]
    fn credentials_in_urls_stay_out_of_the_log() {
        assert_eq!(
            redact_userinfo("https://bob:pw@example.com/a@b.git"),
            "https://***@example.com/a@b.git"
        );
        assert_eq!(redact_userinfo("/srv/repo"), "/srv/repo");
    }

    #[test]
    fn version_names_become_docker_tags() {
        assert_eq!(docker_tag("v1.2.3", 128), "v1.2.3");
        assert_eq!(docker_tag("release/1+x", 128), "release-1-x");
        assert_eq!(docker_tag(".hidden", 128), "_.hidden");
        assert_eq!(docker_tag("", 128), "_");
        assert_eq!(docker_tag(&"a".repeat(300), 100).len(), 100);
    }
}
