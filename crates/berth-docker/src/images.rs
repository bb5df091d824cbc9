//! Image export and import (`docker save` / `docker load` through the Engine API), used by
//! `berth image archive` and `berth image restore`.
//!
//! Archives are held in memory: Berth's images are single services (a few to a few hundred MB).

use crate::client::Docker;
use crate::error::DockerError;
use crate::transport::Body;
use bytes::Bytes;
use hyper::Method;

impl Docker {
    /// The image (with its tags) as a `docker save` tar.
    pub async fn export_image(&self, name: &str) -> Result<Bytes, DockerError> {
        let path = format!("/images/{}/get", crate::client::enc(name));
        self.call_raw(Method::GET, &path, None).await
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
        let mut report = Vec::new();
        for line in answer.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let v: serde_json::Value = serde_json::from_slice(line).unwrap_or_default();
            if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
                return Err(DockerError::Api {
                    status: 200,
                    message: e.to_string(),
                });
            }
            if let Some(s) = v.get("stream").and_then(|s| s.as_str()) {
                report.push(s.trim().to_string());
            }
        }
        Ok(report.join("; "))
    }
}
