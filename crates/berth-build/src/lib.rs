//! `berth-build`: from source to image — checkouts, pipelines run in containers, live logs.
//!
//! Responsibility: given a service name and a [`Source`] (Git or Subversion), check it out,
//! run its `berth.pipeline.yaml` (or the default one-step Dockerfile build) against the Docker
//! engine, stream every line of output as it happens, and report a [`BuildOutcome`]: the
//! status, the steps, and on success a [`Version`] whose **digest is the image ID** tagged
//! `berth/<service>:<version>`.
//!
//! Rules it keeps (details in each module):
//! - It talks to Docker only through `berth-docker`, and runs only the `git` and `svn`
//!   command-line clients itself; user-supplied URLs and refs are validated first
//!   ([`source`]).
//! - Nothing is pulled: step images and `FROM` images must exist on the engine.
//! - A build uses only images its service's team may use ([`owner`]): another team's
//!   `berth/` image as a step image or in the Dockerfile fails the build before it runs it.
//! - Everything it creates is labelled ([`BuildConfig::labels`], `berth.build=<id>`) and
//!   removed when the build ends, except the version's image; a failed or cancelled build
//!   leaves no image behind.
//! - Secrets reach `run` steps only, as environment variables, and are masked as `***` in every
//!   log line; they are never given to image builds.
//! - It keeps no state: what to record about builds and versions (and when to delete old
//!   images) is the caller's — the store, API, CLI and retention are wired elsewhere.
//!
//! Modules: [`source`] (checkouts), [`pipeline`] (the pipeline file), [`context`] (build
//! contexts and `.dockerignore`, re-exported from `berth-context`), [`logs`] (log lines and masking), [`runner`] (the build),
//! [`owner`] (which team's images a build may use).

pub mod image;
pub mod logs;
pub mod owner;
pub mod pipeline;
pub mod reports;
pub mod runner;
pub mod source;

/// Build contexts live in their own crate (the CLI packs Compose contexts with the same rules).
pub use berth_context as context;
pub use berth_context::{
    context_tar, context_tar_with_labels, dockerfile_with_labels, tar_paths, write_context_tar,
    ContextError, DockerIgnore, LABELLED_DOCKERFILE,
};
pub use image::{build_image, BuildOutput, ImageBuildError};
pub use logs::{LogLine, LogStreamKind, Masker};
pub use pipeline::{
    parse_duration, BuildStep, Pipeline, PipelineError, RunStep, Step, StepKind, PIPELINE_FILE,
    WORKSPACE_MOUNT,
};
pub use runner::{
    docker_tag, BuildConfig, BuildOutcome, BuildRequest, BuildStatus, Builder, StepResult, Version,
    IMAGE_REPOSITORY,
};
pub use source::{
    validate_branch, validate_git_url, GitSource, Revision, Source, SourceError, SourceLimits,
    SvnSource,
};
pub use tokio_util::sync::CancellationToken;
