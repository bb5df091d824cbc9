//! Services built from source: registration, a bounded build queue, live logs, versions.
//!
//! Rules it keeps: a build is recorded (`queued`) before anything runs; at most
//! [`MAX_CONCURRENT_BUILDS`] run at once and builds of one service run one after another; every
//! line of a running build goes to a buffer (replayed to late followers) and a broadcast
//! (followers), and the whole log is stored with the build record when it ends; a version is
//! recorded only for a successful build, with its image ID as digest (and image retention is
//! woken); builds interrupted by a server stop are marked failed on the next start, and the
//! **janitor** removes the step containers they left (labelled `berth.build=<id>` and this
//! server's `berth.instance`) before any new build may start. Services created with a poll
//! interval (Git or Subversion) are looked at by one background task, which queues a build when
//! the source moved (the decision is the pure `poll_builds`).

use crate::events::Level;
use crate::{ControlPlane, CpError, Inner};
use berth_build::{
    BuildConfig, BuildRequest, BuildStatus, Builder, GitSource, LogLine, Source, SvnSource,
};
use berth_core::api::{BuildStart, BuildView, ServiceRequest, ServiceView, VersionView};
use berth_core::source::{GitRepo, ServiceSource, SvnRepo};
use berth_store::{BuildRecord, BuildState, VersionRecord};
use futures_util::Stream;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// Builds running at once on this server.
pub const MAX_CONCURRENT_BUILDS: usize = 2;
/// Shortest polling interval of a repository.
pub const MIN_POLL_SECS: u64 = 5;

struct Running {
    service: String,
    cancel: CancellationToken,
    lines: Vec<String>,
    tx: broadcast::Sender<String>,
}

/// The build machinery of a server.
pub(crate) struct Builds {
    builder: Builder,
    slots: Arc<Semaphore>,
    per_service: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    running: Arc<Mutex<HashMap<u64, Running>>>,
}

impl Builds {
    /// One of the server's build slots, shared by source builds and Compose `build:` images,
    /// so at most [`MAX_CONCURRENT_BUILDS`] image builds run at once. `waiting` is called once
    /// when none is free right away.
    pub(crate) async fn slot(&self, waiting: impl FnOnce()) -> Option<OwnedSemaphorePermit> {
        take_slot(&self.slots, waiting).await
    }

    /// Cancel every queued or running build of `service`; returns their ids.
    pub(crate) fn cancel_service(&self, service: &str) -> Vec<u64> {
        let running = lock(&self.running);
        let mut ids: Vec<u64> = running
            .iter()
            .filter(|(_, r)| r.service == service)
            .map(|(id, r)| {
                r.cancel.cancel();
                *id
            })
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Whether a build of `service` is still queued or running (a cancelled one runs until its
    /// outcome is recorded).
    pub(crate) fn busy(&self, service: &str) -> bool {
        lock(&self.running).values().any(|r| r.service == service)
    }
}

/// A permit of `slots`; `waiting` is called once when none is free right away.
async fn take_slot(slots: &Arc<Semaphore>, waiting: impl FnOnce()) -> Option<OwnedSemaphorePermit> {
    if let Ok(permit) = slots.clone().try_acquire_owned() {
        return Some(permit);
    }
    waiting();
    slots.clone().acquire_owned().await.ok()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What to build a service from: its source, at `git_ref` if given (else its branch).
fn source_of(s: &ServiceSource, git_ref: Option<&str>) -> Source {
    match s {
        ServiceSource::Git(g) => Source::Git(GitSource {
            url: g.url.clone(),
            branch: git_ref.map(str::to_string).or_else(|| g.branch.clone()),
            path: g.path.clone(),
        }),
        ServiceSource::Svn(s) => Source::Svn(SvnSource { url: s.url.clone() }),
    }
}

fn build_view(b: BuildRecord) -> BuildView {
    BuildView {
        id: b.id,
        service: b.service,
        git_ref: b.git_ref,
        status: b.status.as_str().into(),
        reason: b.reason,
        version: b.version,
        created_at: b.created_at,
        finished_at: b.finished_at,
    }
}

impl ControlPlane {
    /// Turn on building from source, with workspaces under `work_root`, and Compose `build:`
    /// (uploaded contexts in `work_root/compose-contexts`).
    pub fn enable_builds(&self, work_root: PathBuf) -> Result<(), CpError> {
        let interrupted = self.inner.store.fail_interrupted_builds()?;
        if interrupted > 0 {
            self.inner.events.emit(
                "janitor.builds_interrupted",
                Level::Warn,
                "builds",
                format!("{interrupted} build(s) interrupted by the last stop were marked failed"),
            );
        }
        std::fs::create_dir_all(&work_root).map_err(|e| {
            CpError::InvalidArgument(format!(
                "cannot create the build directory {}: {e}",
                work_root.display()
            ))
        })?;
        let contexts = crate::compose_build::ContextDir::open(work_root.join("compose-contexts"))?;
        let _ = self.inner.contexts.set(contexts);
        let mut labels = self.inner.config.extra_labels.clone();
        labels.insert(
            crate::spec::labels::INSTANCE.into(),
            self.inner.naming.instance.clone(),
        );
        let config = BuildConfig {
            work_root,
            labels,
            keep_trees: true,
            ..BuildConfig::default()
        };
        // The janitor holds every build slot until it is done, so it never sees (and removes)
        // a step container of a build of this process.
        let slots = Arc::new(Semaphore::new(MAX_CONCURRENT_BUILDS));
        let all = u32::try_from(MAX_CONCURRENT_BUILDS).unwrap_or(u32::MAX);
        let held = slots.clone().try_acquire_many_owned(all).ok();
        tokio::spawn(janitor(self.inner.clone(), held));
        tokio::spawn(poll_loop(self.clone(), self.inner.shutdown.clone()));
        let _ = self.inner.builds.set(Builds {
            builder: Builder::new(self.inner.docker.clone(), config),
            slots,
            per_service: Mutex::default(),
            running: Arc::default(),
        });
        Ok(())
    }

    fn builds(&self) -> Result<&Builds, CpError> {
        self.inner.builds.get().ok_or_else(|| {
            CpError::InvalidArgument("building is not enabled on this server".into())
        })
    }

    /// Register a service built from source.
    pub fn create_service(&self, req: &ServiceRequest) -> Result<ServiceView, CpError> {
        // A global name (docs/teams.md): the team's name of the service, and its team.
        let name = &req.name;
        let (team, local) = berth_core::team::split_global(name);
        let valid = !local.is_empty()
            && local.len() <= 63
            && local.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' || b == b'.'
            })
            && local.as_bytes()[0].is_ascii_alphanumeric()
            && berth_core::team::valid_team_name(team);
        if !valid {
            return Err(CpError::InvalidArgument(format!(
                "invalid service name {name:?}: 1-63 of a-z 0-9 . _ -, starting with a letter or digit"
            )));
        }
        if req.poll_secs.is_some_and(|p| p < MIN_POLL_SECS) {
            return Err(CpError::InvalidArgument(format!(
                "--poll: at least {MIN_POLL_SECS} s"
            )));
        }
        let preview_ttl_secs = crate::preview::check_request(req)?;
        let source = match (&req.git, &req.svn) {
            (Some(url), None) => ServiceSource::Git(GitRepo {
                branch: req.branch.clone(),
                url: url.clone(),
                path: req.path.clone(),
                poll_secs: req.poll_secs,
                preview_app: req.preview_app.clone(),
                preview_ttl_secs,
            }),
            (None, Some(url)) if req.branch.is_none() && req.path.is_none() => {
                ServiceSource::Svn(SvnRepo {
                    url: url.clone(),
                    poll_secs: req.poll_secs,
                })
            }
            _ => {
                return Err(CpError::InvalidArgument(
                    "give exactly one of --git URL [--branch B] [--path P] or --svn URL".into(),
                ))
            }
        };
        source_of(&source, None)
            .validate()
            .map_err(|e| CpError::InvalidArgument(e.to_string()))?;
        if !self.inner.store.create_service(name, &source)? {
            return Err(CpError::InvalidArgument(format!(
                "service {name:?} already exists"
            )));
        }
        tracing::info!(service = %name, "service registered");
        let rec = self
            .inner
            .store
            .get_service(name)?
            .ok_or_else(|| CpError::UnknownBuildService(name.clone()))?;
        Ok(ServiceView {
            name: rec.name,
            source: rec.source,
            created_at: rec.created_at,
        })
    }

    /// Registered services.
    pub fn services(&self) -> Result<Vec<ServiceView>, CpError> {
        Ok(self
            .inner
            .store
            .list_services()?
            .into_iter()
            .map(|r| ServiceView {
                name: r.name,
                source: r.source,
                created_at: r.created_at,
            })
            .collect())
    }

    /// Set a build-time secret (given to `run` steps only, masked in logs).
    pub fn set_build_secret(&self, service: &str, name: &str, value: &str) -> Result<(), CpError> {
        if self.inner.store.get_service(service)?.is_none() {
            return Err(CpError::UnknownBuildService(service.into()));
        }
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(CpError::InvalidArgument(format!(
                "invalid secret name {name:?}: letters, digits and _"
            )));
        }
        self.inner.store.set_build_secret(service, name, value)?;
        tracing::info!(service, secret = name, "build secret set");
        Ok(())
    }

    /// Queue a build; it starts when a slot is free and no other build of the service runs.
    pub fn start_build(&self, service: &str, req: &BuildStart) -> Result<BuildView, CpError> {
        self.start_build_then(service, req, None)
    }

    /// [`ControlPlane::start_build`], then (when it yields a version) deploy the preview.
    pub(crate) fn start_build_then(
        &self,
        service: &str,
        req: &BuildStart,
        preview: Option<crate::preview::Preview>,
    ) -> Result<BuildView, CpError> {
        let builds = self.builds()?;
        let rec = self
            .inner
            .store
            .get_service(service)?
            .ok_or_else(|| CpError::UnknownBuildService(service.into()))?;
        let source = source_of(&rec.source, req.git_ref.as_deref());
        source
            .validate()
            .map_err(|e| CpError::InvalidArgument(e.to_string()))?;
        let id = self
            .inner
            .store
            .create_build(service, req.git_ref.as_deref())?;
        let cancel = CancellationToken::new();
        let (tx, _) = broadcast::channel(1024);
        lock(&builds.running).insert(
            id,
            Running {
                service: service.to_string(),
                cancel: cancel.clone(),
                lines: Vec::new(),
                tx,
            },
        );
        let lane = lock(&builds.per_service)
            .entry(service.to_string())
            .or_default()
            .clone();
        let inner = self.inner.clone();
        let service = service.to_string();
        tokio::spawn(async move {
            let version = run_build(inner.clone(), id, service.clone(), source, lane, cancel).await;
            if let (Some(p), Some(v)) = (preview, version) {
                ControlPlane { inner }
                    .deploy_preview(&service, &v, &p)
                    .await;
            }
        });
        let b = self
            .inner
            .store
            .get_build(id)?
            .ok_or_else(|| CpError::InvalidArgument("build vanished".into()))?;
        Ok(build_view(b))
    }

    /// Builds, newest first.
    pub fn builds_list(&self, service: Option<&str>) -> Result<Vec<BuildView>, CpError> {
        Ok(self
            .inner
            .store
            .list_builds(service)?
            .into_iter()
            .map(build_view)
            .collect())
    }

    /// One build.
    pub fn build(&self, id: u64) -> Result<BuildView, CpError> {
        self.inner
            .store
            .get_build(crate::error::stored_id("build id", id)?)?
            .map(build_view)
            .ok_or(CpError::BuildNotFound(id))
    }

    /// Cancel a queued or running build.
    pub fn cancel_build(&self, id: u64) -> Result<(), CpError> {
        let builds = self.builds()?;
        let cancel = lock(&builds.running).get(&id).map(|r| r.cancel.clone());
        match cancel {
            Some(cancel) => {
                cancel.cancel();
                Ok(())
            }
            None => {
                // 404 for a build that never existed, 400 for one that ended.
                self.build(id)?;
                Err(CpError::InvalidArgument(format!(
                    "build {id} is not running"
                )))
            }
        }
    }

    /// A build's log: replayed, then (with `follow`) streamed until the build ends.
    pub fn build_logs(
        &self,
        id: u64,
        follow: bool,
    ) -> Result<impl Stream<Item = String> + Send + 'static, CpError> {
        self.build(id)?;
        let live = self.inner.builds.get().and_then(|b| {
            let running = lock(&b.running);
            running
                .get(&id)
                .map(|r| (r.lines.clone(), r.tx.subscribe()))
        });
        let (replay, rx) = match live {
            Some((lines, rx)) => (lines, follow.then_some(rx)),
            None => (vec![self.inner.store.build_log(id)?], None),
        };
        let replay = futures_util::stream::iter(replay);
        let tail = futures_util::stream::unfold(rx, |rx| async move {
            let mut rx = rx?;
            match rx.recv().await {
                Ok(line) => Some((line, Some(rx))),
                Err(broadcast::error::RecvError::Lagged(n)) => Some((
                    format!("[berth] {n} log lines skipped (slow reader)\n"),
                    Some(rx),
                )),
                Err(broadcast::error::RecvError::Closed) => None,
            }
        });
        Ok(futures_util::StreamExt::chain(replay, tail))
    }

    /// Versions of a service, newest first.
    pub fn versions(&self, service: &str) -> Result<Vec<VersionView>, CpError> {
        if self.inner.store.get_service(service)?.is_none() {
            return Err(CpError::UnknownBuildService(service.into()));
        }
        let states: HashMap<String, berth_core::lifecycle::VersionState> = self
            .inner
            .store
            .lifecycles(Some(service))?
            .into_iter()
            .map(|l| (l.version, l.state))
            .collect();
        Ok(self
            .inner
            .store
            .list_versions(service)?
            .into_iter()
            .map(|v| VersionView {
                state: states.get(&v.name).copied().unwrap_or_default(),
                service: v.service,
                name: v.name,
                digest: v.digest,
                tag: v.tag,
                commit: v.commit,
                author: v.author,
                commit_time: v.commit_time,
                build_id: v.build_id,
                created_at: v.created_at,
            })
            .collect())
    }
}

fn push_line(running: &Mutex<HashMap<u64, Running>>, id: u64, line: String) {
    if let Some(r) = lock(running).get_mut(&id) {
        let _ = r.tx.send(line.clone());
        r.lines.push(line);
    }
}

async fn run_build(
    inner: Arc<Inner>,
    id: u64,
    service: String,
    source: Source,
    lane: Arc<tokio::sync::Mutex<()>>,
    cancel: CancellationToken,
) -> Option<VersionRecord> {
    let builds = inner.builds.get()?;
    let running = builds.running.clone();
    push_line(
        &running,
        id,
        format!("[berth] build {id} of {service} queued\n"),
    );
    let _lane = lane.lock().await;
    let _slot = builds
        .slot(|| {
            push_line(
                &running,
                id,
                "[berth] waiting for a free build slot\n".to_string(),
            );
        })
        .await;
    let _ = inner.store.start_build(id);
    let secrets = inner.store.build_secrets(&service).unwrap_or_default();
    let request = BuildRequest {
        service: service.clone(),
        source,
        secrets,
    };
    let log_running = running.clone();
    let on_log = move |l: LogLine| {
        let mut text = l.text;
        if !text.ends_with('\n') {
            text.push('\n');
        }
        push_line(&log_running, id, format!("[{}] {text}", l.step));
    };
    let outcome = if cancel.is_cancelled() {
        None
    } else {
        Some(builds.builder.build(&request, &on_log, &cancel).await)
    };
    let (status, reason) = match outcome.as_ref().map(|o| &o.status) {
        Some(BuildStatus::Succeeded) => (BuildState::Succeeded, String::new()),
        Some(BuildStatus::Failed { step, reason }) => {
            (BuildState::Failed, format!("step {step}: {reason}"))
        }
        Some(BuildStatus::Cancelled) | None => (BuildState::Cancelled, "cancelled".to_string()),
    };
    let version = outcome
        .as_ref()
        .and_then(|o| o.version.as_ref())
        .map(|v| VersionRecord {
            service: service.clone(),
            name: v.name.clone(),
            digest: v.digest.clone(),
            tag: v.tag.clone(),
            commit: v.commit.clone(),
            author: v.author.clone(),
            commit_time: v.time.and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            }),
            build_id: id,
            created_at: String::new(),
            steps: outcome
                .as_ref()
                .and_then(|o| serde_json::to_string(&step_evidence(&o.steps)).ok()),
            contract: outcome.as_ref().and_then(|o| o.contract.clone()),
            readme: outcome.as_ref().and_then(|o| o.readme.clone()),
        });
    let summary = match &version {
        Some(v) => format!(
            "[berth] build {id} succeeded: version {} ({}) = {}\n",
            v.name, v.tag, v.digest
        ),
        None => format!(
            "[berth] build {id} {status}{}\n",
            if reason.is_empty() {
                String::new()
            } else {
                format!(": {reason}")
            }
        ),
    };
    push_line(&running, id, summary);
    let log = lock(&running)
        .get(&id)
        .map(|r| r.lines.concat())
        .unwrap_or_default();
    let mut version = version;
    match inner
        .store
        .finish_build(id, status, &reason, &log, version.as_ref())
    {
        Ok(true) => {}
        Ok(false) => {
            // The version is under review or reviewed: its image stays; the build failed.
            push_line(
                &running,
                id,
                "[berth] the version is submitted or reviewed: its image is kept, and this build is recorded as failed (commit a change to make a new version)\n".to_string(),
            );
            version = None;
        }
        Err(e) => tracing::error!(build = id, error = %e, "cannot record the build's outcome"),
    }
    tracing::info!(
        build = id,
        service,
        status = status.as_str(),
        version = version.as_ref().map(|v| v.name.as_str()),
        "build finished"
    );
    if version.is_some() {
        inner.retention_wake.notify_one();
    }
    // Dropping the sender ends every follower's stream.
    lock(&running).remove(&id);
    version
}

/// Remove what builds a previous process of this server left behind (a crash or `kill -9`
/// mid-build): every container labelled `berth.build` and this instance (step containers), and
/// every image labelled `berth.build.step` and this instance (intermediate step images, which a
/// finished build untags itself). If a listing fails, nothing of its kind is removed. Runs
/// while holding every build slot, so no build of this process is running; releases them when
/// done.
pub(crate) async fn janitor(inner: Arc<Inner>, _slots: Option<tokio::sync::OwnedSemaphorePermit>) {
    remove_leftover_step_containers(&inner).await;
    remove_leftover_step_images(&inner).await;
}

async fn remove_leftover_step_containers(inner: &Inner) {
    let mut filters = crate::label_filters(inner, None);
    filters.push(BUILD_LABEL.to_string());
    let leftovers = match inner.docker.list_containers(&filters, true).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "build janitor: listing containers failed; nothing removed");
            return;
        }
    };
    for c in leftovers {
        let name = c.names.first().cloned().unwrap_or_else(|| c.id.clone());
        let build = c.labels.get(BUILD_LABEL).cloned().unwrap_or_default();
        report(
            inner,
            inner.docker.remove_container(&c.id, true, true).await,
            "janitor.container_removed",
            &name,
            format!("removed step container {name} left by interrupted build {build}"),
        );
    }
}

/// What removing a leftover came to: an event when it was removed, a warning when that failed
/// (already gone is fine).
fn report(
    inner: &Inner,
    result: Result<(), berth_docker::DockerError>,
    kind: &str,
    subject: &str,
    message: String,
) {
    match result {
        Ok(()) => inner.events.emit(kind, Level::Info, subject, message),
        Err(e) if e.is_not_found() => {}
        Err(e) => {
            tracing::warn!(subject, error = %e, "build janitor: removing a leftover failed");
        }
    }
}

async fn remove_leftover_step_images(inner: &Inner) {
    let mut filters = crate::label_filters(inner, None);
    filters.push(STEP_LABEL.to_string());
    let leftovers = match inner.docker.list_images(&filters).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "build janitor: listing images failed; nothing removed");
            return;
        }
    };
    for image in leftovers {
        for reference in step_tags(&image) {
            report(
                inner,
                inner.docker.remove_image(&reference, false, false).await,
                "janitor.image_removed",
                &reference,
                format!("removed step image {reference} left by an interrupted build"),
            );
        }
    }
}

/// The tags of `image` that are an intermediate step's tag, `berth/<service>:<version>-<step>`
/// from its own `berth.service`, `berth.version` and `berth.build.step` labels. Labels are
/// inherited through `FROM`, so a version image built from a step image carries the step label
/// too: its tag (`<version>` alone) does not match, and it is kept.
fn step_tags(image: &berth_docker::ImageSummary) -> Vec<String> {
    let label = |k: &str| image.labels.get(k).map(String::as_str);
    let (Some(service), Some(version), Some(step)) = (
        label("berth.service"),
        label("berth.version"),
        label(STEP_LABEL),
    ) else {
        return Vec::new();
    };
    let expected = format!(
        "{}/{service}:{}-{step}",
        berth_build::IMAGE_REPOSITORY,
        berth_build::docker_tag(version, 100)
    );
    image
        .repo_tags
        .iter()
        .filter(|t| **t == expected)
        .cloned()
        .collect()
}

/// Label carried by every build step container (its value is the runner's build id).
const BUILD_LABEL: &str = "berth.build";

/// Label carried by step containers and by the images of a pipeline's intermediate build steps
/// (its value is the step's name).
const STEP_LABEL: &str = "berth.build.step";

/// How long one look at a polled repository may take (`git ls-remote`, `svn info`).
const POLL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The commit a Git ref points at, by `git ls-remote` (validated URL and ref, 30 s limit).
async fn remote_commit(url: &str, git_ref: Option<&str>) -> Result<Option<String>, String> {
    berth_build::validate_git_url(url).map_err(|e| e.to_string())?;
    if let Some(r) = git_ref {
        berth_build::validate_branch(r).map_err(|e| e.to_string())?;
    }
    let mut cmd = tokio::process::Command::new("git");
    cmd.args(["-c", "protocol.ext.allow=never", "ls-remote", "--", url])
        .arg(git_ref.unwrap_or("HEAD"))
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(POLL_TIMEOUT, cmd.output())
        .await
        .map_err(|_| "git ls-remote timed out".to_string())?
        .map_err(|e| format!("cannot run git: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr)
            .lines()
            .next()
            .unwrap_or("git ls-remote failed")
            .to_string());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .map(str::to_string))
}

/// Where a polled source stands now: the branch's commit (Git), the URL's last-changed
/// revision (Subversion, `svn info`: non-interactive, no stored credentials, 30 s limit).
/// `None`: the branch is not there.
async fn current_revision(
    source: &ServiceSource,
    shutdown: &CancellationToken,
) -> Result<Option<String>, String> {
    let (url, found) = match source {
        ServiceSource::Git(g) => {
            let branch = g.branch.as_deref().map(|b| format!("refs/heads/{b}"));
            (&g.url, remote_commit(&g.url, branch.as_deref()).await)
        }
        ServiceSource::Svn(s) => {
            let limits = berth_build::SourceLimits {
                timeout: POLL_TIMEOUT,
                ..berth_build::SourceLimits::default()
            };
            let found = SvnSource { url: s.url.clone() }
                .resolve(&limits, shutdown)
                .await
                .map(Some)
                .map_err(|e| e.to_string());
            (&s.url, found)
        }
    };
    // The client's message may quote the URL; a password in it never reaches the log.
    found.map_err(|e| redact_password(&e, url))
}

/// `text` with the password of `url`'s `user:password@` part (if any) written `***`.
fn redact_password(text: &str, url: &str) -> String {
    let authority = url
        .split_once("://")
        .map_or("", |(_, rest)| rest.split('/').next().unwrap_or_default());
    let password = authority
        .rsplit_once('@')
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map_or("", |(_, password)| password);
    if password.is_empty() {
        text.to_string()
    } else {
        text.replace(password, "***")
    }
}

/// Whether a poll that found `now` queues a build: the source moved since the last look
/// (`previous`; `None` before the first look or after a failed one), or the service was never
/// built. Nothing is built while the source cannot be seen (`now` is `None`).
fn poll_builds(previous: Option<&str>, now: Option<&str>, never_built: bool) -> bool {
    let Some(now) = now else {
        return false;
    };
    never_built || previous.is_some_and(|p| p != now)
}

/// Poll the repositories of services created with `poll_secs` (Git and Subversion alike);
/// build when the source moved (and once when a polled service has never been built).
async fn poll_loop(cp: ControlPlane, shutdown: CancellationToken) {
    let mut last: HashMap<String, (std::time::Instant, Option<String>)> = HashMap::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
        let Ok(services) = cp.inner.store.list_services() else {
            continue;
        };
        // A removed service is forgotten (a new one of the same name starts afresh).
        last.retain(|name, _| services.iter().any(|s| &s.name == name));
        for svc in services {
            let Some(every) = svc.source.poll_secs() else {
                continue;
            };
            let due = last
                .get(&svc.name)
                .is_none_or(|(at, _)| at.elapsed() >= std::time::Duration::from_secs(every));
            if !due {
                continue;
            }
            let now = match current_revision(&svc.source, &shutdown).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(service = %svc.name, error = %e, "polling the repository failed");
                    last.insert(svc.name.clone(), (std::time::Instant::now(), None));
                    continue;
                }
            };
            let previous = last
                .insert(svc.name.clone(), (std::time::Instant::now(), now.clone()))
                .and_then(|(_, p)| p);
            let never_built = cp
                .inner
                .store
                .list_builds(Some(&svc.name))
                .map(|b| b.is_empty())
                .unwrap_or(false);
            if poll_builds(previous.as_deref(), now.as_deref(), never_built) {
                tracing::info!(service = %svc.name, revision = ?now, "repository changed: queueing a build");
                let start = BuildStart {
                    git_ref: svc.source.branch().map(str::to_string),
                };
                if let Err(e) = cp.start_build(&svc.name, &start) {
                    tracing::warn!(service = %svc.name, error = %e, "cannot queue the polled build");
                }
            }
        }
    }
}

/// The steps of a build as evidence for its version's review.
fn step_evidence(steps: &[berth_build::runner::StepResult]) -> Vec<berth_core::api::StepEvidence> {
    steps
        .iter()
        .map(|s| berth_core::api::StepEvidence {
            name: s.name.clone(),
            exit_code: s.exit_code,
            duration_ms: u64::try_from(s.duration.as_millis()).unwrap_or(u64::MAX),
            report: s.report.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tags_of_the_step_form_are_step_tags() {
        let image = |tags: &[&str], labels: &[(&str, &str)]| berth_docker::ImageSummary {
            repo_tags: tags.iter().map(|t| (*t).to_string()).collect(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
            ..Default::default()
        };
        let step = [
            ("berth.service", "api"),
            ("berth.version", "v1/rc"),
            ("berth.build.step", "base"),
        ];
        // An intermediate image left tagged, with another tag someone added: only ours goes.
        assert_eq!(
            step_tags(&image(&["berth/api:v1-rc-base", "mine:keep"], &step)),
            vec!["berth/api:v1-rc-base".to_string()]
        );
        // The version image built FROM it inherits the step label; its tag is the version's.
        assert!(step_tags(&image(&["berth/api:v1-rc"], &step)).is_empty());
        // A version whose name ends like a step tag is still a version image.
        let tricky = [
            ("berth.service", "api"),
            ("berth.version", "v1-base"),
            ("berth.build.step", "base"),
        ];
        assert!(step_tags(&image(&["berth/api:v1-base"], &tricky)).is_empty());
        assert!(step_tags(&image(&["berth/api:v1-base"], &[])).is_empty());
    }
    #[test]
    fn a_password_in_a_url_never_reaches_a_poll_error() {
        let url = "https://ada:s3cr:et@svn.example/repo/trunk";
        assert_eq!(
            redact_password(&format!("svn: E170013: Unable to connect to '{url}'"), url),
            "svn: E170013: Unable to connect to 'https://ada:***@svn.example/repo/trunk'"
        );
        let plain = "https://ada@svn.example/r";
        assert_eq!(redact_password("failed: ada@svn", plain), "failed: ada@svn");
        assert_eq!(redact_password("x", "/srv/repo.git"), "x");
    }

    #[test]
    fn a_poll_builds_when_the_source_moved_or_was_never_built() {
        // previous look, this look, never built → build?
        let table = [
            (None, Some("c1"), true, true), // first look at a never-built service
            (None, Some("c1"), false, false), // first look after a restart: built before
            (Some("c1"), Some("c1"), false, false),
            (Some("c1"), Some("c2"), false, true),
            (Some("c1"), Some("c1"), true, true), // the first queueing failed: try again
            (Some("c1"), None, false, false),     // the branch is gone
            (None, None, true, false),
        ];
        for (previous, now, never_built, want) in table {
            assert_eq!(
                poll_builds(previous, now, never_built),
                want,
                "{previous:?} → {now:?}, never built: {never_built}"
            );
        }
    }

    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_build_waits_for_a_free_slot_and_says_so() {
        let slots = Arc::new(Semaphore::new(MAX_CONCURRENT_BUILDS));
        let waited = Arc::new(AtomicUsize::new(0));
        let mut held = Vec::new();
        for _ in 0..MAX_CONCURRENT_BUILDS {
            held.push(
                take_slot(&slots, || panic!("a slot was free"))
                    .await
                    .unwrap(),
            );
        }
        let next = tokio::spawn({
            let (slots, waited) = (slots.clone(), waited.clone());
            async move {
                take_slot(&slots, || {
                    waited.fetch_add(1, Ordering::Relaxed);
                })
                .await
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!next.is_finished(), "a third build ran beside two");
        assert_eq!(waited.load(Ordering::Relaxed), 1);
        held.pop();
        let permit = tokio::time::timeout(std::time::Duration::from_secs(5), next)
            .await
            .expect("the freed slot was taken")
            .unwrap();
        assert!(permit.is_some());
        assert_eq!(waited.load(Ordering::Relaxed), 1);
    }
}
