//! Compose `build:`: the build contexts the CLI uploads, and the image builds an apply runs
//! before it commits its revision. See `docs/compose.md` ("build") and `docs/architecture.md`.
//!
//! Rules it keeps:
//! - **Uploads are streamed to disk**, never held in memory: `POST /api/v1/contexts` writes the
//!   tar to a temporary file in the contexts directory while hashing it, stops at
//!   [`MAX_BUILD_CONTEXT_BYTES`] ([`CpError::ContextTooLarge`]), and renames it to
//!   `<sha256>.tar`: the id is the content hash, so a repeated upload is the same file. An
//!   upload no apply used is removed after [`STALE_AFTER`].
//! - **Build, then commit.** An apply builds every `build:` service first (through
//!   `berth-build`, i.e. the Engine's build API, so the engine's layer cache makes an unchanged
//!   project a cache hit with the same image ID) and pins the resulting image **ID** in the
//!   revision, exactly like a pulled image. A failed build fails the apply with
//!   [`CpError::BuildFailed`] (the service and the last lines of output) before anything is
//!   committed, so the running revision is not touched.
//! - **Names**: a build is tagged with the service's `image:` when that is one of the team's
//!   own `berth/` names, else (no `image:`, or one outside `berth/`, which other teams may run
//!   from the shared engine) `berth/<app>-<service>:latest` (`berth/<team>/<app>-<service>`
//!   for a team other than `default`); an `image:` or a Dockerfile image of another team's
//!   `berth/` is refused before anything is built ([`CpError::ImageDenied`],
//!   docs/teams.md#images); once the revision `N` is
//!   committed, the image is also tagged `berth/<app>-<service>:r<N>`, which keeps it (and thus
//!   rollback targets) from becoming a dangling image when `latest` moves on. The built image
//!   carries Berth's labels (`berth.instance`, `berth.app`, `berth.service`, the server's
//!   `--label` extras) plus the Compose `build.labels`.
//! - The context files an apply names are deleted when the apply ends, whatever the outcome.
//! - Each image build takes one of the server's build slots, shared with source builds
//!   (`builds::MAX_CONCURRENT_BUILDS`), for as long as the engine builds it.

use crate::spec::labels;
use crate::{ControlPlane, CpError};
use berth_build::{BuildOutput, ImageBuildError};
use berth_compose::{BuildSpec, Project};
use berth_core::api::{ContextUploaded, MAX_BUILD_CONTEXT_BYTES};
use berth_docker::BuildParams;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// An uploaded context that no apply used within this time is removed.
pub const STALE_AFTER: Duration = Duration::from_secs(3600);
/// The longest one service's image build may take.
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Lines of build output kept for the error of a failed build.
const TAIL_LINES: usize = 15;

/// The repository of a service's built image: `berth/<app>-<service>`, lowercased, with
/// characters Docker does not allow in a repository replaced by `-`.
#[must_use]
pub fn image_repository(app: &str, service: &str) -> String {
    // Another team's application (`shop/web`): `berth/shop/web-<service>`; a team name has
    // only characters Docker allows in a path component, and the extra path component keeps
    // the names of two teams apart (team `default`'s repositories have one component).
    let (team, app) = berth_core::team::split_global(app);
    let repository = image_repository_of(app, service);
    if team == berth_core::team::DEFAULT_TEAM {
        repository
    } else {
        repository.replacen('/', &format!("/{team}/"), 1)
    }
}

fn image_repository_of(app: &str, service: &str) -> String {
    let mut name = String::with_capacity(app.len() + service.len() + 1);
    for c in format!("{app}-{service}").chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            name.push(c);
        } else if !name.ends_with('-') {
            name.push('-');
        }
    }
    format!(
        "{}/{}",
        berth_build::IMAGE_REPOSITORY,
        name.trim_end_matches('-')
    )
}

/// The per-revision tag of a built image: `r<N>`.
#[must_use]
pub fn revision_tag(revision: u64) -> String {
    format!("r{revision}")
}

fn valid_context_id(id: &str) -> bool {
    id.len() == 64
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Where uploaded contexts live.
#[derive(Debug, Clone)]
pub(crate) struct ContextDir(PathBuf);

impl ContextDir {
    pub(crate) fn open(dir: PathBuf) -> Result<ContextDir, CpError> {
        std::fs::create_dir_all(&dir).map_err(|e| {
            CpError::InvalidArgument(format!(
                "cannot create the build context directory {}: {e}",
                dir.display()
            ))
        })?;
        // Leftovers of a previous run (an upload cut short, an apply never made).
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(ContextDir(dir))
    }

    fn path(&self, id: &str) -> PathBuf {
        self.0.join(format!("{id}.tar"))
    }

    fn remove_stale(&self) {
        let Ok(entries) = std::fs::read_dir(&self.0) else {
            return;
        };
        for e in entries.flatten() {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > STALE_AFTER);
            if old {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

impl ControlPlane {
    fn context_dir(&self) -> Result<&ContextDir, CpError> {
        self.inner.contexts.get().ok_or_else(|| {
            CpError::InvalidArgument("building is not enabled on this server".into())
        })
    }

    /// Store an uploaded build context (a tar, as the CLI packs it), streaming it to disk.
    ///
    /// # Errors
    /// [`CpError::ContextTooLarge`] past [`MAX_BUILD_CONTEXT_BYTES`];
    /// [`CpError::InvalidArgument`] when the upload breaks off or the disk fails.
    pub async fn upload_context<S, E>(&self, body: S) -> Result<ContextUploaded, CpError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let dir = self.context_dir()?.clone();
        dir.remove_stale();
        let io =
            |e: std::io::Error| CpError::InvalidArgument(format!("storing the build context: {e}"));
        // Removed on drop, so an upload that fails leaves nothing behind.
        let tmp = tempfile::Builder::new()
            .prefix(".upload-")
            .tempfile_in(&dir.0)
            .map_err(io)?;
        let file = tokio::fs::File::from_std(tmp.reopen().map_err(io)?);
        let (id, size) = receive(file, body).await?;
        tmp.persist(dir.path(&id)).map_err(|e| io(e.error))?;
        tracing::info!(id, size, "build context uploaded");
        Ok(ContextUploaded { id, size })
    }

    /// Images belong to teams (docs/teams.md#images): `image_denied` unless every image the
    /// project names is one `app`'s team may use — each `image:` (an image to run, or the tag
    /// a `build:` would give) and each image the uploaded Dockerfiles read. Runs before
    /// anything is built.
    pub(crate) async fn check_images(
        &self,
        app: &str,
        project: &Project,
        contexts: &BTreeMap<String, String>,
    ) -> Result<(), CpError> {
        let team = berth_core::team::team_of(app);
        let docker = &self.inner.docker;
        let mut denials = Vec::new();
        for (name, svc) in &project.services {
            let place = format!("services.{name}.image");
            let Some(build) = &svc.build else {
                denials.extend(
                    berth_build::owner::image_denial(docker, team, &place, &svc.image).await?,
                );
                continue;
            };
            if !svc.image.is_empty() && !berth_core::team::may_use_image(team, &svc.image) {
                denials.push(format!(
                    "{place}: the build would tag {:?}, which belongs to another team",
                    svc.image
                ));
            }
            let Some(id) = contexts.get(name).filter(|id| valid_context_id(id)) else {
                continue; // build_services refuses it
            };
            let Ok(file) = std::fs::File::open(self.context_dir()?.path(id)) else {
                continue; // likewise
            };
            for d in berth_build::owner::dockerfile_denials(
                docker,
                team,
                file,
                &build.dockerfile,
                &build.args,
            )
            .await?
            {
                denials.push(format!("services.{name}.build: {d}"));
            }
        }
        if denials.is_empty() {
            return Ok(());
        }
        tracing::info!(app, team, denied = denials.len(), "image denied");
        Err(CpError::ImageDenied {
            team: team.to_string(),
            denials,
        })
    }

    /// Build every service of `project` that has `build:`, from the contexts named in
    /// `contexts` (service → context id). Returns service → image ID. Each line of output goes
    /// to the server log (and to `progress`, for a client following the apply).
    pub(crate) async fn build_services(
        &self,
        app: &str,
        project: &Project,
        contexts: &BTreeMap<String, String>,
        progress: &(dyn Fn(&str, &str) + Send + Sync),
    ) -> Result<BTreeMap<String, String>, CpError> {
        let mut built = BTreeMap::new();
        for (name, svc) in &project.services {
            let Some(build) = &svc.build else { continue };
            let id = contexts.get(name).ok_or_else(|| {
                CpError::InvalidArgument(format!(
                    "services.{name}.build: no build context was uploaded for this service (use `berth apply`, which packs and uploads it)"
                ))
            })?;
            if !valid_context_id(id) {
                return Err(CpError::InvalidArgument(format!(
                    "build context id {id:?} is malformed"
                )));
            }
            let path = self.context_dir()?.path(id);
            let tar = match tokio::fs::read(&path).await {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(CpError::InvalidArgument(format!(
                        "build context {id} of service {name} was not uploaded or has expired; apply again"
                    )))
                }
                Err(e) => {
                    return Err(CpError::InvalidArgument(format!(
                        "reading the build context of service {name}: {e}"
                    )))
                }
            };
            let image = self
                .build_one(app, name, &svc.image, build, tar, progress)
                .await?;
            built.insert(name.clone(), image);
        }
        Ok(built)
    }

    async fn build_one(
        &self,
        app: &str,
        service: &str,
        image_name: &str,
        build: &BuildSpec,
        tar: Vec<u8>,
        progress: &(dyn Fn(&str, &str) + Send + Sync),
    ) -> Result<String, CpError> {
        // Only the team's own `berth/` names are tagged: an `image:` elsewhere (`shop/api:1`)
        // lives in the engine every team shares, and tagging it would replace whatever another
        // team runs by that name.
        let tag = if berth_core::team::image_team(image_name).is_some() {
            image_name.to_string()
        } else {
            format!("{}:latest", image_repository(app, service))
        };
        let mut image_labels = build.labels.clone();
        image_labels.extend(self.inner.config.extra_labels.clone());
        image_labels.insert(labels::INSTANCE.into(), self.inner.naming.instance.clone());
        image_labels.insert(labels::APP.into(), app.into());
        image_labels.insert(labels::SERVICE.into(), service.into());
        let params = BuildParams {
            tag: tag.clone(),
            dockerfile: build.dockerfile.clone(),
            buildargs: build.args.clone(),
            target: build.target.clone(),
            labels: image_labels,
        };
        // A build slot shared with source builds: at most `MAX_CONCURRENT_BUILDS` at once.
        let _slot = match self.inner.builds.get() {
            Some(builds) => {
                builds
                    .slot(|| progress(service, "waiting for a free build slot"))
                    .await
            }
            None => None,
        };
        tracing::info!(app, service, tag, bytes = tar.len(), "building image");
        let started = std::time::Instant::now();
        let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL_LINES);
        let mut keep = |line: &str| {
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line.to_string());
        };
        let run = berth_build::build_image(&self.inner.docker, tar, &params, |out| match out {
            BuildOutput::Line(line) => {
                tracing::info!(app, service, "build: {line}");
                progress(service, line);
                keep(line);
            }
            BuildOutput::ImageId(_) => {}
            BuildOutput::Error(e) => {
                tracing::warn!(app, service, "build failed: {e}");
            }
        });
        let result = tokio::time::timeout(BUILD_TIMEOUT, run).await;
        let failed = |reason: String, tail: VecDeque<String>| CpError::BuildFailed {
            service: service.to_string(),
            reason,
            tail: tail.into_iter().filter(|l| !l.trim().is_empty()).collect(),
        };
        match result {
            Ok(Ok(id)) => {
                tracing::info!(
                    app,
                    service,
                    tag,
                    image = id,
                    ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                    "image built"
                );
                Ok(id)
            }
            Ok(Err(ImageBuildError::Docker(e))) if is_unreachable(&e) => Err(CpError::Docker(e)),
            Ok(Err(e)) => Err(failed(e.to_string(), tail)),
            Err(_) => Err(failed(
                format!("timed out after {} s", BUILD_TIMEOUT.as_secs()),
                tail,
            )),
        }
    }

    /// Tag each built image of a committed revision `berth/<app>-<service>:r<N>`. A failure is
    /// logged: the revision pins the image ID either way.
    pub(crate) async fn tag_revision_images(
        &self,
        app: &str,
        revision: u64,
        built: &BTreeMap<String, String>,
    ) {
        for (service, id) in built {
            let repo = image_repository(app, service);
            let tag = revision_tag(revision);
            if let Err(e) = self.inner.docker.tag_image(id, &repo, &tag).await {
                tracing::warn!(app, service, image = id, error = %e, "cannot tag {repo}:{tag}");
            }
        }
    }

    /// Remove the uploaded contexts an apply named.
    pub(crate) fn discard_contexts(&self, contexts: &BTreeMap<String, String>) {
        let Ok(dir) = self.context_dir() else { return };
        for id in contexts.values().filter(|id| valid_context_id(id)) {
            let _ = std::fs::remove_file(dir.path(id));
        }
    }
}

fn is_unreachable(e: &berth_docker::DockerError) -> bool {
    matches!(e, berth_docker::DockerError::Unreachable { .. })
}

/// Writes the body to `file`, hashing it; (hex sha256, size).
async fn receive<S, E>(mut file: tokio::fs::File, body: S) -> Result<(String, u64), CpError>
where
    S: Stream<Item = Result<Bytes, E>> + Send,
    E: std::fmt::Display,
{
    let io =
        |e: std::io::Error| CpError::InvalidArgument(format!("storing the build context: {e}"));
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let mut body = std::pin::pin!(body);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| {
            CpError::InvalidArgument(format!("the build context upload broke off: {e}"))
        })?;
        size += chunk.len() as u64;
        if size > MAX_BUILD_CONTEXT_BYTES {
            return Err(CpError::ContextTooLarge(MAX_BUILD_CONTEXT_BYTES));
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(io)?;
    }
    file.sync_all().await.map_err(io)?;
    if size == 0 {
        return Err(CpError::InvalidArgument(
            "the build context upload is empty".into(),
        ));
    }
    Ok((hex::encode(hasher.finalize()), size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_are_valid_docker_names() {
        for (app, svc, want) in [
            ("shop", "web", "berth/shop-web"),
            ("shop", "Web_API.v2", "berth/shop-web-api-v2"),
            ("a-b", "x-", "berth/a-b-x"),
            ("a", "x__y", "berth/a-x-y"),
            ("shop/web", "api", "berth/shop/web-api"),
        ] {
            assert_eq!(image_repository(app, svc), want);
        }
        assert_eq!(revision_tag(7), "r7");
        assert!(valid_context_id(&"a".repeat(64)));
        assert!(!valid_context_id("../../etc/passwd"));
        assert!(!valid_context_id(&"A".repeat(64)));
    }

    #[tokio::test]
    async fn uploads_are_hashed_limited_and_renamed() {
        let dir = tempfile::tempdir().unwrap();
        let file = || async { tokio::fs::File::create(dir.path().join("x")).await.unwrap() };
        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::from_static(b"hello ")),
            Ok(Bytes::from_static(b"world")),
        ];
        let (id, size) = receive(file().await, futures_util::stream::iter(chunks))
            .await
            .unwrap();
        assert_eq!(size, 11);
        assert_eq!(
            id,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        let broken: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::from_static(b"x")),
            Err(std::io::Error::other("reset")),
        ];
        let e = receive(file().await, futures_util::stream::iter(broken))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("broke off"), "{e}");
    }
}
