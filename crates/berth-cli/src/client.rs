//! A typed client of the Berth REST API. Errors come back as [`ApiFailure`] with the server's
//! `{code, message}`, or as a one-line "cannot reach" explanation.

use anyhow::Context as _;
use berth_core::api::{
    AppStatus, AppSummary, ApplyRequest, ContextUploaded, Instance, IssuerRequest, IssuerView,
    RevisionCreated, RevisionView, RollbackRequest, ScaleRequest, TokenIssued, TokenRequest,
};
use berth_core::ErrorBody;
use serde::de::DeserializeOwned;
use std::fmt;

/// An error answer from the server.
#[derive(Debug)]
pub struct ApiFailure {
    pub status: u16,
    pub body: ErrorBody,
}

impl fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.body.message, self.body.code)
    }
}
impl std::error::Error for ApiFailure {}

/// `req`, if its JSON fits the server's apply limit; otherwise a clear error before anything is
/// sent (the server refuses a larger body on its `Content-Length`, and a client still writing
/// may see only a broken connection).
fn bundle_within_limit(req: &ApplyRequest) -> anyhow::Result<&ApplyRequest> {
    let size = serde_json::to_vec(req)?.len() as u64;
    let limit = berth_core::api::MAX_APPLY_BYTES;
    if size > limit {
        anyhow::bail!(
            "the Compose bundle (the Compose files and the files they reference) is {} MiB; the server accepts at most {} MiB: put large files in an image or a build context",
            size.div_ceil(1024 * 1024),
            limit / (1024 * 1024)
        );
    }
    Ok(req)
}

/// The content type of a secret's value (`PUT …/secrets/…`, `…/webhook-secret`).
const TEXT: &str = "text/plain; charset=utf-8";

/// The client.
#[derive(Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    #[must_use]
    pub fn new(server: &str) -> Client {
        let base = if server.contains("://") {
            server.to_string()
        } else {
            format!("http://{server}")
        };
        Client {
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    /// A `POST` without a body. The server wants `Content-Type: application/json` on every
    /// `POST` (a web page cannot send that to another origin without asking first), so it is
    /// sent with an empty body.
    fn bodiless_post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(self.url(path))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
    }

    async fn send<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> anyhow::Result<T> {
        let resp = req.send().await.map_err(|e| self.unreachable(&e))?;
        Self::decode(resp).await
    }

    /// Send, and hand back a successful response unread (streams, archives); an error answer
    /// becomes the server's `{code, message}`.
    async fn streamed(&self, req: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let resp = req.send().await.map_err(|e| self.unreachable(&e))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(Self::decode::<serde_json::Value>(resp)
            .await
            .err()
            .unwrap_or_else(|| anyhow::anyhow!("unexpected answer")))
    }

    fn unreachable(&self, e: &reqwest::Error) -> anyhow::Error {
        if e.is_connect() {
            anyhow::anyhow!("cannot reach the Berth server at {} (is `berth server` running? set --server or BERTH_SERVER)", self.base)
        } else {
            anyhow::anyhow!("request to {} failed: {e}", self.base)
        }
    }

    async fn decode<T: DeserializeOwned>(resp: reqwest::Response) -> anyhow::Result<T> {
        let status = resp.status();
        let bytes = resp.bytes().await?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|e| anyhow::anyhow!("unexpected answer from the server: {e}"));
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => Err(ApiFailure {
                status: status.as_u16(),
                body,
            }
            .into()),
            Err(_) => Err(anyhow::anyhow!(
                "server answered {status}: {}",
                String::from_utf8_lossy(&bytes)
            )),
        }
    }

    pub async fn health(&self) -> anyhow::Result<berth_core::api::Health> {
        self.send(self.http.get(self.url("/health"))).await
    }
    pub async fn apply(&self, app: &str, req: &ApplyRequest) -> anyhow::Result<RevisionCreated> {
        self.send(
            self.http
                .post(self.url(&format!("/apps/{app}/apply")))
                .json(&bundle_within_limit(req)?),
        )
        .await
    }
    /// Apply with `?progress=true`: each line of build output goes to `on_build` (service,
    /// line) as the server sends it; the answer is the final result.
    pub async fn apply_with_progress(
        &self,
        app: &str,
        req: &ApplyRequest,
        mut on_build: impl FnMut(&str, &str),
    ) -> anyhow::Result<RevisionCreated> {
        use futures_util::StreamExt;
        let resp = self
            .streamed(
                self.http
                    .post(self.url(&format!("/apps/{app}/apply?progress=true")))
                    .json(&bundle_within_limit(req)?),
            )
            .await?;
        let mut stream = resp.bytes_stream();
        let mut buf: Vec<u8> = Vec::new();
        loop {
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                let msg: serde_json::Value = serde_json::from_slice(&line)
                    .map_err(|e| anyhow::anyhow!("unexpected answer from the server: {e}"))?;
                if let Some(b) = msg.get("build") {
                    let text = |k: &str| b.get(k).and_then(|v| v.as_str()).unwrap_or_default();
                    on_build(text("service"), text("line"));
                } else if let Some(r) = msg.get("result") {
                    return serde_json::from_value(r.clone())
                        .map_err(|e| anyhow::anyhow!("unexpected answer from the server: {e}"));
                } else if let Some(e) = msg.get("error") {
                    let body: ErrorBody = serde_json::from_value(e.clone())
                        .map_err(|e| anyhow::anyhow!("unexpected answer from the server: {e}"))?;
                    let status = berth_core::ErrorCode::ALL
                        .iter()
                        .find(|c| c.as_str() == body.code)
                        .map_or(500, |c| c.status());
                    return Err(ApiFailure { status, body }.into());
                }
            }
            match stream.next().await {
                Some(chunk) => {
                    buf.extend_from_slice(&chunk.context("the apply's answer broke off")?)
                }
                None => anyhow::bail!("the server ended the apply's answer without a result"),
            }
        }
    }

    /// Upload a build context tar (`POST /api/v1/contexts`), streamed from `file`.
    pub async fn upload_context(
        &self,
        file: tokio::fs::File,
        size: u64,
    ) -> anyhow::Result<ContextUploaded> {
        self.send(
            self.http
                .post(self.url("/contexts"))
                .header(reqwest::header::CONTENT_TYPE, "application/x-tar")
                .header(reqwest::header::CONTENT_LENGTH, size)
                .body(reqwest::Body::from(file)),
        )
        .await
    }
    pub async fn apps(&self) -> anyhow::Result<Vec<AppSummary>> {
        self.send(self.http.get(self.url("/apps"))).await
    }
    pub async fn status(&self, app: &str) -> anyhow::Result<AppStatus> {
        self.send(self.http.get(self.url(&format!("/apps/{app}"))))
            .await
    }
    pub async fn ps(&self, app: &str) -> anyhow::Result<Vec<Instance>> {
        self.send(self.http.get(self.url(&format!("/apps/{app}/ps"))))
            .await
    }
    pub async fn instances(&self, app: &str, service: &str) -> anyhow::Result<Vec<Instance>> {
        self.send(
            self.http
                .get(self.url(&format!("/apps/{app}/services/{service}/instances"))),
        )
        .await
    }
    pub async fn scale(&self, app: &str, req: &ScaleRequest) -> anyhow::Result<RevisionCreated> {
        self.send(
            self.http
                .post(self.url(&format!("/apps/{app}/scale")))
                .json(req),
        )
        .await
    }
    pub async fn history(&self, app: &str) -> anyhow::Result<Vec<RevisionView>> {
        self.send(self.http.get(self.url(&format!("/apps/{app}/revisions"))))
            .await
    }
    pub async fn rollback(
        &self,
        app: &str,
        req: &RollbackRequest,
    ) -> anyhow::Result<RevisionCreated> {
        self.send(
            self.http
                .post(self.url(&format!("/apps/{app}/rollback")))
                .json(req),
        )
        .await
    }
    pub async fn remove(&self, app: &str, volumes: bool) -> anyhow::Result<serde_json::Value> {
        self.send(
            self.http
                .delete(self.url(&format!("/apps/{app}?volumes={volumes}"))),
        )
        .await
    }
    pub async fn issue_token(&self, req: &TokenRequest) -> anyhow::Result<TokenIssued> {
        self.send(self.http.post(self.url("/tokens")).json(req))
            .await
    }
    pub async fn rotate_key(&self) -> anyhow::Result<serde_json::Value> {
        self.send(self.bodiless_post("/keys/rotate")).await
    }
    pub async fn add_issuer(&self, req: &IssuerRequest) -> anyhow::Result<IssuerView> {
        self.send(self.http.post(self.url("/issuers")).json(req))
            .await
    }
    pub async fn issuers(&self) -> anyhow::Result<Vec<IssuerView>> {
        self.send(self.http.get(self.url("/issuers"))).await
    }
    pub async fn remove_issuer(&self, name: &str) -> anyhow::Result<serde_json::Value> {
        self.send(self.http.delete(self.url(&format!("/issuers/{name}"))))
            .await
    }
    pub async fn create_service(
        &self,
        req: &berth_core::api::ServiceRequest,
    ) -> anyhow::Result<berth_core::api::ServiceView> {
        self.send(self.http.post(self.url("/services")).json(req))
            .await
    }
    pub async fn services(&self) -> anyhow::Result<Vec<berth_core::api::ServiceView>> {
        self.send(self.http.get(self.url("/services"))).await
    }
    pub async fn start_build(
        &self,
        name: &str,
        req: &berth_core::api::BuildStart,
    ) -> anyhow::Result<berth_core::api::BuildView> {
        self.send(
            self.http
                .post(self.url(&format!("/services/{name}/builds")))
                .json(req),
        )
        .await
    }
    pub async fn builds(
        &self,
        service: Option<&str>,
    ) -> anyhow::Result<Vec<berth_core::api::BuildView>> {
        let mut req = self.http.get(self.url("/builds"));
        if let Some(s) = service {
            req = req.query(&[("service", s)]);
        }
        self.send(req).await
    }
    pub async fn build(&self, id: u64) -> anyhow::Result<berth_core::api::BuildView> {
        self.send(self.http.get(self.url(&format!("/builds/{id}"))))
            .await
    }
    pub async fn cancel_build(&self, id: u64) -> anyhow::Result<serde_json::Value> {
        self.send(self.bodiless_post(&format!("/builds/{id}/cancel")))
            .await
    }
    pub async fn versions(&self, name: &str) -> anyhow::Result<Vec<berth_core::api::VersionView>> {
        self.send(
            self.http
                .get(self.url(&format!("/services/{name}/versions"))),
        )
        .await
    }
    pub async fn set_secret(
        &self,
        service: &str,
        name: &str,
        value: String,
    ) -> anyhow::Result<serde_json::Value> {
        self.send(
            self.http
                .put(self.url(&format!("/services/{service}/secrets/{name}")))
                .header(reqwest::header::CONTENT_TYPE, TEXT)
                .body(value),
        )
        .await
    }
    pub async fn set_webhook_secret(
        &self,
        service: &str,
        value: String,
    ) -> anyhow::Result<serde_json::Value> {
        self.send(
            self.http
                .put(self.url(&format!("/services/{service}/webhook-secret")))
                .header(reqwest::header::CONTENT_TYPE, TEXT)
                .body(value),
        )
        .await
    }
    pub async fn images(
        &self,
        service: Option<&str>,
    ) -> anyhow::Result<Vec<berth_core::api::ImageView>> {
        let mut req = self.http.get(self.url("/images"));
        if let Some(s) = service {
            req = req.query(&[("service", s)]);
        }
        self.send(req).await
    }
    /// Platform events with an id above `after`, oldest first.
    pub async fn events(&self, after: u64) -> anyhow::Result<Vec<berth_core::api::EventView>> {
        let req = self
            .http
            .get(self.url("/events"))
            .query(&[("after", after.to_string())]);
        self.send(req).await
    }
    /// A version's image archive (the tar bytes).
    pub async fn archive_image(
        &self,
        service: &str,
        version: &str,
    ) -> anyhow::Result<bytes::Bytes> {
        Ok(self
            .streamed(
                self.http
                    .get(self.url(&format!("/images/{service}/{version}/archive"))),
            )
            .await?
            .bytes()
            .await?)
    }
    pub async fn restore_image(&self, tar: Vec<u8>) -> anyhow::Result<serde_json::Value> {
        self.send(
            self.http
                .post(self.url("/images/restore"))
                .header(reqwest::header::CONTENT_TYPE, "application/x-tar")
                .body(tar),
        )
        .await
    }
    /// A backup of the server's state (`POST /admin/backup`): the tar, as a streamed response.
    pub async fn backup(&self) -> anyhow::Result<reqwest::Response> {
        self.streamed(self.bodiless_post("/admin/backup")).await
    }
    /// A build's log as a raw streamed response.
    pub async fn build_logs(&self, id: u64, follow: bool) -> anyhow::Result<reqwest::Response> {
        self.streamed(
            self.http
                .get(self.url(&format!("/builds/{id}/logs?follow={follow}"))),
        )
        .await
    }
    /// The raw logs response (streamed by the caller).
    pub async fn logs(
        &self,
        app: &str,
        service: &str,
        follow: bool,
        tail: Option<u64>,
    ) -> anyhow::Result<reqwest::Response> {
        let mut url = format!("/apps/{app}/services/{service}/logs?follow={follow}");
        if let Some(t) = tail {
            url.push_str(&format!("&tail={t}"));
        }
        self.streamed(self.http.get(self.url(&url))).await
    }
}
