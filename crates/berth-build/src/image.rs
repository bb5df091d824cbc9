//! One image build from a context tar, with its output as lines: the part shared by a
//! pipeline's `build` step ([`crate::runner`]) and a Compose service's `build:` (the control
//! plane's apply).
//!
//! Rules it keeps:
//! - Output is handed out line by line as it arrives (the engine's messages may split or join
//!   lines); nothing is buffered beyond the current partial line.
//! - The result is the image ID the engine reported (`aux.ID`), or, for engines that send none,
//!   the ID of the tag the build was given.
//! - Dropping the future drops the engine's build stream, which makes the engine stop the build:
//!   that is how callers time out or cancel.

use berth_docker::{BuildMessage, BuildParams, Docker, DockerError};

use crate::logs::LineSplitter;

/// One piece of a build's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildOutput<'a> {
    /// One line of build output (without its newline).
    Line(&'a str),
    /// The engine reported the resulting image.
    ImageId(&'a str),
    /// The build failed with this message (the engine's `error`).
    Error(&'a str),
}

/// Why an image build failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageBuildError {
    /// The engine refused the request or the connection failed.
    #[error("{0}")]
    Docker(#[from] DockerError),
    /// A Dockerfile instruction failed (the engine's message).
    #[error("{0}")]
    Failed(String),
    /// The build ended without an image (no ID and no usable tag).
    #[error("the build produced no image")]
    NoImage,
}

/// Builds an image from `tar` with `params`, calling `on_output` for every line as it arrives.
/// Returns the image ID (`sha256:...`).
///
/// # Errors
/// See [`ImageBuildError`].
pub async fn build_image(
    docker: &Docker,
    tar: Vec<u8>,
    params: &BuildParams,
    mut on_output: impl FnMut(BuildOutput<'_>),
) -> Result<String, ImageBuildError> {
    let mut stream = docker.build_image(tar, params).await?;
    let mut lines = LineSplitter::default();
    let mut error = None;
    let mut image = None;
    while let Some(msg) = stream.recv().await {
        match msg? {
            BuildMessage::Output(text) => {
                for line in lines.push(text.as_bytes()) {
                    on_output(BuildOutput::Line(&line));
                }
            }
            BuildMessage::ImageId(id) => {
                on_output(BuildOutput::ImageId(&id));
                image = Some(id);
            }
            BuildMessage::Error(e) => {
                on_output(BuildOutput::Error(&e));
                error = Some(e);
            }
        }
    }
    if let Some(rest) = lines.finish() {
        on_output(BuildOutput::Line(&rest));
    }
    if let Some(e) = error {
        return Err(ImageBuildError::Failed(e));
    }
    match image {
        Some(id) => Ok(id),
        None if !params.tag.is_empty() => docker
            .inspect_image(&params.tag)
            .await?
            .map(|i| i.id)
            .ok_or(ImageBuildError::NoImage),
        None => Err(ImageBuildError::NoImage),
    }
}
