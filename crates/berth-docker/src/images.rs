//! Images: listing by label and the engine's image disk use (for retention and its alerts),
//! export and import (`docker save` / `docker load` through the Engine API), used by
//! `berth image archive` and `berth image restore`.
//!
//! Archives are held in memory: Berth's images are single services (a few to a few hundred MB).

use crate::client::Docker;
use crate::error::DockerError;
use crate::transport::Body;
use bytes::Bytes;
use hyper::Method;
use serde::Deserialize;
use std::collections::BTreeMap;

/// One row of `GET /images/json`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageSummary {
    /// Image ID (`sha256:...`).
    #[serde(default)]
    pub id: String,
    /// Tags pointing at it.
    #[serde(default, deserialize_with = "crate::types::nullable")]
    pub repo_tags: Vec<String>,
    /// Size in bytes (shared layers counted in every image that has them).
    #[serde(default)]
    pub size: i64,
    /// Creation time (Unix seconds).
    #[serde(default)]
    pub created: i64,
    /// Image labels.
    #[serde(default, deserialize_with = "crate::types::nullable")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WireDf {
    #[serde(default)]
    layers_size: i64,
}

impl Docker {
    /// Images with all the given labels (`k=v` or just `k`), untagged ones included. The whole
    /// list or an error: callers never act on part of it.
    pub async fn list_images(
        &self,
        label_filters: &[String],
    ) -> Result<Vec<ImageSummary>, DockerError> {
        let mut path = "/images/json?all=0".to_string();
        if !label_filters.is_empty() {
            let f = serde_json::json!({ "label": label_filters }).to_string();
            path.push_str(&format!("&filters={}", crate::client::enc(&f)));
        }
        let body = self.call_raw(Method::GET, &path, None).await?;
        serde_json::from_slice(&body).map_err(|source| DockerError::Json {
            context: "GET /images/json".into(),
            source,
        })
    }

    /// Bytes the engine's image layers take on disk (`GET /system/df`, `LayersSize`): shared
    /// layers counted once, every image on the engine (not only Berth's), which is what fills
    /// the disk.
    pub async fn image_disk_use(&self) -> Result<u64, DockerError> {
        let body = self.call_raw(Method::GET, "/system/df", None).await?;
        let df: WireDf = serde_json::from_slice(&body).map_err(|source| DockerError::Json {
            context: "GET /system/df".into(),
            source,
        })?;
        Ok(u64::try_from(df.layers_size).unwrap_or(0))
    }

    /// The image (with its tags) as a `docker save` tar.
    pub async fn export_image(&self, name: &str) -> Result<Bytes, DockerError> {
        let path = format!("/images/{}/get", crate::client::enc(name));
        self.call_raw(Method::GET, &path, None).await
    }

    /// Push `repo:tag` to its registry (`POST /images/{repo}/push?tag=`, no credentials: an
    /// empty auth configuration); returns the manifest digest the registry stored
    /// (`sha256:...`), by which nodes pull exactly this image.
    pub async fn push_image(&self, repo: &str, tag: &str) -> Result<String, DockerError> {
        // The repository goes as it is (`HOST:PORT/a/b`): the engine's route takes the whole
        // path, and Berth's names use only `[a-z0-9._:/-]`.
        let answer = self
            .call_raw(
                Method::POST,
                &format!("/images/{repo}/push?tag={}", crate::client::enc(tag)),
                // The engine reads the auth configuration from the body when no
                // `X-Registry-Auth` header is sent.
                Some(Body::json(&serde_json::json!({}))),
            )
            .await?;
        push_digest(&answer)
    }

    /// Load a `docker save` tar; returns the engine's report (e.g. `Loaded image: x:1`).
    pub async fn load_image(&self, tar: Vec<u8>) -> Result<String, DockerError> {
        let body = Body {
            content_type: "application/x-tar",
            bytes: Bytes::from(tar),
        };
        let answer = self
            .call_raw(Method::POST, "/images/load?quiet=1", Some(body))
            .await?;
        load_report(&answer)
    }

    /// [`Docker::load_image`] with the tar streamed to the engine as it arrives (an upload),
    /// never held whole in memory. An error of `tar` ends the load with an error.
    pub async fn load_image_stream<S, E>(&self, tar: S) -> Result<String, DockerError>
    where
        S: futures_util::Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
    {
        use futures_util::TryStreamExt;
        let body = http_body_util::StreamBody::new(tar.map_ok(hyper::body::Frame::data));
        let answer = self
            .call_streamed(
                Method::POST,
                "/images/load?quiet=1",
                "application/x-tar",
                body,
            )
            .await?;
        load_report(&answer)
    }
}

/// The JSON lines of an answer the engine streamed (load, push), or the first error among
/// them (the engine answers 200 and reports failures in the stream).
fn streamed(answer: &[u8]) -> Result<Vec<serde_json::Value>, DockerError> {
    answer
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|line| {
            let v: serde_json::Value = serde_json::from_slice(line).unwrap_or_default();
            match v.get("error").and_then(|e| e.as_str()) {
                Some(e) => Err(DockerError::Api {
                    status: 200,
                    message: e.to_string(),
                }),
                None => Ok(v),
            }
        })
        .collect()
}

/// The digest in a push's streamed answer (`{"aux": {"Digest": ...}}`), or the error it
/// streamed.
fn push_digest(answer: &[u8]) -> Result<String, DockerError> {
    streamed(answer)?
        .iter()
        .rev()
        .find_map(|v| v.pointer("/aux/Digest").and_then(|d| d.as_str()))
        .map(str::to_string)
        .ok_or_else(|| DockerError::Api {
            status: 200,
            message: "the engine pushed the image but reported no digest".into(),
        })
}

impl Docker {
    /// Import a root filesystem tar as the image `repo:tag` (`POST /images/create?fromSrc=-`,
    /// `docker import`), with Dockerfile instructions applied to its config (`changes`, e.g.
    /// `CMD ["/pause"]`). Nothing is pulled.
    pub async fn import_image(
        &self,
        rootfs_tar: Vec<u8>,
        repo: &str,
        tag: &str,
        changes: &[&str],
    ) -> Result<(), DockerError> {
        use crate::client::enc;
        let mut path = format!(
            "/images/create?fromSrc=-&repo={}&tag={}",
            enc(repo),
            enc(tag)
        );
        for c in changes {
            path.push_str(&format!("&changes={}", enc(c)));
        }
        let body = Body {
            content_type: "application/x-tar",
            bytes: Bytes::from(rootfs_tar),
        };
        let answer = self.call_raw(Method::POST, &path, Some(body)).await?;
        load_report(&answer).map(drop)
    }
}

/// The engine's answer to a load: its report lines, or the error it streamed.
fn load_report(answer: &[u8]) -> Result<String, DockerError> {
    let report: Vec<String> = streamed(answer)?
        .iter()
        .filter_map(|v| v.get("stream").and_then(|s| s.as_str()))
        .map(|s| s.trim().to_string())
        .collect();
    Ok(report.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_push_answer_gives_its_digest_or_its_error() {
        let ok = br#"{"status":"The push refers to repository [r:5000/a]"}
{"status":"x: digest: sha256:ab size: 528"}
{"progressDetail":{},"aux":{"Tag":"x","Digest":"sha256:ab","Size":528}}
"#;
        assert_eq!(push_digest(ok).unwrap(), "sha256:ab");
        let failed = br#"{"status":"Preparing"}
{"errorDetail":{"message":"connection refused"},"error":"connection refused"}
"#;
        assert!(push_digest(failed)
            .unwrap_err()
            .to_string()
            .contains("connection refused"));
        assert!(push_digest(b"{\"status\":\"done\"}\n").is_err());
    }
}
