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
//! - A failed build leaves nothing behind. The classic builder commits an image after every
//!   successful step and keeps them when a later step fails: untagged, and without the build's
//!   labels (the engine puts `labels` on the final image only), so nothing else would ever find
//!   them. The IDs of the images this build committed are read from its output (` ---> ID` after
//!   `Step N/M : ...`; not a cache hit's, nor a `FROM` step's base), and after a failure they
//!   are removed, newest first, without `force` and without pruning parents: an image another
//!   build has started to use since (a child image, a container) stays. A build stopped by
//!   dropping the future is not cleaned here (there is no async drop).

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
    let mut steps = StepImages::default();
    let mut error = None;
    let mut image = None;
    let mut broken = None;
    while let Some(msg) = stream.recv().await {
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                broken = Some(e);
                break;
            }
        };
        match msg {
            BuildMessage::Output(text) => {
                for line in lines.push(text.as_bytes()) {
                    steps.line(&line);
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
    drop(stream);
    if let Some(rest) = lines.finish() {
        steps.line(&rest);
        on_output(BuildOutput::Line(&rest));
    }
    if let Some(e) = broken {
        steps.remove(docker).await;
        return Err(e.into());
    }
    if let Some(e) = error {
        steps.remove(docker).await;
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

/// The images a classic-builder build committed itself, read from its output lines:
///
/// ```text
/// Step 1/4 : FROM base          <- the next ID is the base image: not ours
///  ---> 5d0da3dc9764
/// Step 2/4 : ENV A=1
///  ---> Using cache             <- the next ID existed before this build: not ours
///  ---> 0b1c2d3e4f5a
/// Step 3/4 : COPY app /app
///  ---> 9a8b7c6d5e4f            <- committed by this build
/// Step 4/4 : RUN false
///  ---> Running in 1234abcd5678 <- a container (removed by the engine: `forcerm`)
/// ```
#[derive(Debug, Default)]
struct StepImages {
    ids: Vec<String>,
    skip_next: bool,
}

impl StepImages {
    /// Read one output line.
    fn line(&mut self, line: &str) {
        if let Some(rest) = line.strip_prefix("Step ") {
            let instruction = rest.split_once(" : ").map_or("", |(_, i)| i.trim_start());
            self.skip_next = instruction
                .get(..5)
                .is_some_and(|w| w.eq_ignore_ascii_case("FROM "));
            return;
        }
        let Some(arrow) = line.trim_start().strip_prefix("--->") else {
            return;
        };
        let arrow = arrow.trim();
        if arrow == "Using cache" {
            self.skip_next = true;
        } else if arrow.len() >= 12
            && arrow.bytes().all(|b| b.is_ascii_hexdigit())
            && !std::mem::take(&mut self.skip_next)
        {
            self.ids.push(arrow.to_string());
        }
    }

    /// The IDs (short, as the engine printed them), oldest first.
    #[cfg(test)]
    fn ids(&self) -> &[String] {
        &self.ids
    }

    /// Remove the committed images, newest first (see the module docs). Only untagged ones: a
    /// `RUN` step can print a line that looks like a step's ` ---> ID`, and a tagged image (a
    /// base image, a retained version) must never go because of what a build printed. (An image
    /// a container uses, or with children, is refused by the engine without `force`.)
    async fn remove(&self, docker: &Docker) {
        for id in self.ids.iter().rev() {
            match docker.inspect_image(id).await {
                Ok(Some(image)) if image.repo_tags.is_empty() => {}
                Ok(Some(_)) => {
                    tracing::warn!(image = %id, "a failed build printed a tagged image as its step; kept");
                    continue;
                }
                Ok(None) => continue,
                Err(e) => {
                    tracing::info!(image = %id, error = %e, "kept a failed build's step image");
                    continue;
                }
            }
            match docker.remove_image(id, false, true).await {
                Ok(()) | Err(DockerError::NotFound(_)) => {}
                Err(e) => {
                    tracing::info!(image = %id, error = %e, "kept a failed build's step image")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::StepImages;

    #[test]
    fn step_images_are_the_ones_the_build_committed() {
        let output = "\
Step 1/7 : FROM scratch
 --->
Step 2/7 : ARG VERSION=unset
 ---> Using cache
 ---> 0b1c2d3e4f5a
Step 3/7 : ENV VERSION=$VERSION
 ---> Running in 1234abcd5678
Removing intermediate container 1234abcd5678
 ---> 9a8b7c6d5e4f
Step 4/7 : from 9a8b7c6d5e4f AS second
 ---> 9a8b7c6d5e4f
Step 5/7 : COPY app /app
 ---> 2b3c4d5e6f70
Step 6/7 : LABEL a=b
 ---> Using cache
 ---> 3c4d5e6f7081
Step 7/7 : COPY not-there /x
COPY failed: file not found in build context or excluded by .dockerignore: stat not-there: file does not exist
";
        let mut steps = StepImages::default();
        for line in output.lines() {
            steps.line(line);
        }
        assert_eq!(steps.ids(), ["9a8b7c6d5e4f", "2b3c4d5e6f70"]);
        let mut base = StepImages::default();
        base.line("Step 1/2 : FROM busybox:latest");
        base.line(" ---> 5d0da3dc9764");
        base.line("Step 2/2 : RUN true");
        base.line(" ---> Running in 0123456789ab");
        base.line(" ---> 6e7f8091a2b3");
        assert_eq!(base.ids(), ["6e7f8091a2b3"]);
    }
}
