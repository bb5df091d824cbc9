//! Images belong to teams (docs/teams.md#images): before anything is built or run, every image
//! a build or an apply names — a `run` step's `image`, a Dockerfile's `FROM`, `COPY --from`,
//! `RUN --mount=from=` — is checked against the team doing it. The rule itself is
//! `berth_core::team` ([`may_use_image`], [`may_use_tagged`]); this module applies it to what the
//! engine holds.
//!
//! Rules it keeps:
//! - A name under another team's `berth/` is refused without asking the engine.
//! - Any other name (an image ID, a digest, `busybox`) is looked up: an image whose tags put it
//!   under another team's `berth/` only is refused too, so an ID cannot reach around the name
//!   rule. A name the engine does not know is not this module's concern (the build or apply
//!   fails on it as before).

use berth_core::team::{may_use_image, may_use_tagged};
use berth_docker::{Docker, DockerError};
use std::collections::BTreeMap;

/// Why `team` may not use `image`, named at `place` (`services.web.image`, `FROM`), as the
/// message of an `image_denied` refusal; None if it may.
///
/// # Errors
/// The engine failed while inspecting the image.
pub async fn image_denial(
    docker: &Docker,
    team: &str,
    place: &str,
    image: &str,
) -> Result<Option<String>, DockerError> {
    let denied = || {
        Some(format!(
            "{place}: image {image:?} belongs to another team (only team {team:?}'s own berth/ images may be used)"
        ))
    };
    if !may_use_image(team, image) {
        return Ok(denied());
    }
    match docker.inspect_image(image).await? {
        Some(found) if !may_use_tagged(team, &found.repo_tags) => Ok(denied()),
        _ => Ok(None),
    }
}

/// Every refusal for the images the Dockerfile at `dockerfile` in the context tar `tar` reads,
/// built with `args` by `team`. A Dockerfile missing from the tar is no refusal (the engine
/// reports it); one that is not a regular file is.
///
/// # Errors
/// The engine failed while inspecting an image.
pub async fn dockerfile_denials<R: std::io::Read + Send + 'static>(
    docker: &Docker,
    team: &str,
    tar: R,
    dockerfile: &str,
    args: &BTreeMap<String, String>,
) -> Result<Vec<String>, DockerError> {
    let path = dockerfile.to_string();
    let text = tokio::task::spawn_blocking(move || berth_context::tar_file(tar, &path))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
    let text = match text {
        Ok(Some(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
        Ok(None) => return Ok(Vec::new()),
        Err(e) => return Ok(vec![e.to_string()]),
    };
    let mut out = Vec::new();
    for u in berth_context::dockerfile_images(&text, args) {
        let place = format!("{dockerfile}: {}", u.instruction);
        if let Some(d) = image_denial(docker, team, &place, &u.image).await? {
            out.push(d);
        }
    }
    Ok(out)
}
