//! A typed client of the Berth REST API. Errors come back as [`ApiFailure`] with the server's
//! `{code, message}`, or as a one-line "cannot reach" explanation.
//!
//! Every request carries the client's bearer token ([`Client::with_token`]), streamed ones too:
//! requests are only made through [`Client::get`] and its siblings. `https://` servers are
//! verified against the system's roots plus, with `--ca-file`, a private CA; TLS is rustls on the
//! workspace's aws-lc-rs provider, handed to reqwest ready-made so that reqwest picks no provider
//! (and brings no second crypto library) of its own.

use anyhow::Context as _;
use berth_core::api::{
    ApiTokenCreated, ApiTokenRequest, ApiTokenView, AppStatus, AppSummary, ApplyRequest, AuditPage,
    ContextUploaded, DeployRequest, EnvExtendRequest, EnvRemoved, EnvRequest, EnvView, Instance,
    IssuerRequest, IssuerView, LoginIssued, LoginRequest, MemberRequest, MemberView,
    PasswordChange, PortLeaseView, ReleaseRequest, RevisionCreated, RevisionView, RollbackRequest,
    ScaleRequest, TeamRequest, TeamView, TokenIssued, TokenRequest, UserCreated, UserRequest,
    UserView, Whoami,
};
use berth_core::ErrorBody;
use serde::de::DeserializeOwned;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An error answer from the server.
#[derive(Debug)]
pub struct ApiFailure {
    pub status: u16,
    pub body: ErrorBody,
}

impl fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.body.message, self.body.code)?;
        if self.status == 401 {
            write!(f, ": log in with `berth login` or set BERTH_TOKEN")?;
        } else if self.body.code == "team_required" && !self.body.message.contains("--team") {
            write!(f, ": name one with --team T, or `berth team use T`")?;
        } else if self.body.code == "password_change_required" {
            write!(f, ": run `berth user passwd`")?;
        }
        Ok(())
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
    token: Option<String>,
    /// Sent as `?team=` with every call (`--team`, `BERTH_TEAM`, `berth team use`).
    team: Option<String>,
    /// Sent as `?env=` with every application call (`--env`, `BERTH_ENV`).
    env: Option<String>,
}

impl Client {
    /// A client of `server` (`HOST:PORT` or a URL), sending no credential, trusting the
    /// system's roots for `https://`.
    pub fn new(server: &str) -> anyhow::Result<Client> {
        let base = if server.contains("://") {
            server.to_string()
        } else {
            format!("http://{server}")
        };
        let base = base.trim_end_matches('/').to_string();
        let http = http_client(base.starts_with("https://"), None)?;
        Ok(Client {
            base,
            http,
            token: None,
            team: None,
            env: None,
        })
    }

    /// Also trust the CA certificates (PEM) in `ca_file` for an `https://` server.
    pub fn with_ca_file(mut self, ca_file: Option<&Path>) -> anyhow::Result<Client> {
        if let Some(path) = ca_file {
            self.http = http_client(self.base.starts_with("https://"), Some(path))?;
        }
        Ok(self)
    }

    /// Send `Authorization: Bearer <token>` with every request.
    #[must_use]
    pub fn with_token(mut self, token: Option<String>) -> Client {
        self.token = token;
        self
    }

    /// Act in `team`: every call carries `?team=` (the server uses it for team-scoped calls and
    /// ignores it on the others).
    #[must_use]
    pub fn with_team(mut self, team: Option<String>) -> Client {
        self.team = team;
        self
    }

    /// Act in environment `env`: every application call (`/apps...`) carries `?env=`
    /// (docs/environments.md); none means the server's default, `dev`.
    #[must_use]
    pub fn with_env(mut self, env: Option<String>) -> Client {
        self.env = env;
        self
    }

    /// The environment application calls name (`--env`), if any.
    #[must_use]
    pub fn app_env(&self) -> Option<&str> {
        self.env.as_deref()
    }

    /// The team every call names, if any.
    #[must_use]
    pub fn team(&self) -> Option<&str> {
        self.team.as_deref()
    }

    /// The server's base URL (scheme, host, port).
    #[must_use]
    pub fn base(&self) -> &str {
        &self.base
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = &self.team {
            req = req.query(&[("team", t)]);
        }
        if let Some(e) = self.env.as_ref().filter(|_| path.starts_with("/apps")) {
            req = req.query(&[("env", e)]);
        }
        match &self.token {
            // Marked sensitive: reqwest keeps it out of its debug output.
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }
    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::GET, path)
    }
    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::POST, path)
    }
    fn put(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::PUT, path)
    }
    fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::DELETE, path)
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    /// A `POST` without a body. The server wants `Content-Type: application/json` on every
    /// `POST` (a web page cannot send that to another origin without asking first), so it is
    /// sent with an empty body.
    fn bodiless_post(&self, path: &str) -> reqwest::RequestBuilder {
        self.post(path)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
    }

    async fn send<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> anyhow::Result<T> {
        let resp = req.send().await.map_err(|e| self.unreachable(&e))?;
        Self::decode(resp).await
    }

    /// Send a call whose answer has no body (`204 No Content`).
    async fn send_empty(&self, req: reqwest::RequestBuilder) -> anyhow::Result<()> {
        self.streamed(req).await.map(drop)
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
        // reqwest's own message hides the cause; a certificate problem is worth naming.
        let mut cause: &dyn std::error::Error = e;
        while let Some(inner) = cause.source() {
            cause = inner;
        }
        let cause = cause.to_string();
        if self.base.starts_with("https://")
            && (cause.contains("certificate") || cause.contains("Certificate"))
        {
            anyhow::anyhow!("cannot connect to {} over TLS: {cause} (trust a private CA with --ca-file or BERTH_CA_FILE)", self.base)
        } else if e.is_connect() {
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
        self.send(self.get("/health")).await
    }
    pub async fn apply(&self, app: &str, req: &ApplyRequest) -> anyhow::Result<RevisionCreated> {
        self.send(
            self.post(&format!("/apps/{app}/apply"))
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
                self.post(&format!("/apps/{app}/apply?progress=true"))
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
            self.post("/contexts")
                .header(reqwest::header::CONTENT_TYPE, "application/x-tar")
                .header(reqwest::header::CONTENT_LENGTH, size)
                .body(reqwest::Body::from(file)),
        )
        .await
    }
    pub async fn apps(&self) -> anyhow::Result<Vec<AppSummary>> {
        self.send(self.get("/apps")).await
    }
    pub async fn status(&self, app: &str) -> anyhow::Result<AppStatus> {
        self.send(self.get(&format!("/apps/{app}"))).await
    }
    pub async fn ps(&self, app: &str) -> anyhow::Result<Vec<Instance>> {
        self.send(self.get(&format!("/apps/{app}/ps"))).await
    }
    pub async fn instances(&self, app: &str, service: &str) -> anyhow::Result<Vec<Instance>> {
        self.send(self.get(&format!("/apps/{app}/services/{service}/instances")))
            .await
    }
    pub async fn scale(&self, app: &str, req: &ScaleRequest) -> anyhow::Result<RevisionCreated> {
        self.send(self.post(&format!("/apps/{app}/scale")).json(req))
            .await
    }
    pub async fn history(&self, app: &str) -> anyhow::Result<Vec<RevisionView>> {
        self.send(self.get(&format!("/apps/{app}/revisions"))).await
    }
    pub async fn rollback(
        &self,
        app: &str,
        req: &RollbackRequest,
    ) -> anyhow::Result<RevisionCreated> {
        self.send(self.post(&format!("/apps/{app}/rollback")).json(req))
            .await
    }
    pub async fn remove(&self, app: &str, volumes: bool) -> anyhow::Result<serde_json::Value> {
        self.send(self.delete(&format!("/apps/{app}?volumes={volumes}")))
            .await
    }
    pub async fn issue_token(&self, req: &TokenRequest) -> anyhow::Result<TokenIssued> {
        self.send(self.post("/tokens").json(req)).await
    }
    pub async fn rotate_key(&self) -> anyhow::Result<serde_json::Value> {
        self.send(self.bodiless_post("/keys/rotate")).await
    }
    pub async fn add_issuer(&self, req: &IssuerRequest) -> anyhow::Result<IssuerView> {
        self.send(self.post("/issuers").json(req)).await
    }
    pub async fn issuers(&self) -> anyhow::Result<Vec<IssuerView>> {
        self.send(self.get("/issuers")).await
    }
    pub async fn remove_issuer(&self, name: &str) -> anyhow::Result<serde_json::Value> {
        self.send(self.delete(&format!("/issuers/{name}"))).await
    }
    pub async fn create_service(
        &self,
        req: &berth_core::api::ServiceRequest,
    ) -> anyhow::Result<berth_core::api::ServiceView> {
        self.send(self.post("/services").json(req)).await
    }
    /// `DELETE /services/{name}` (`berth service rm`).
    pub async fn remove_service(
        &self,
        name: &str,
    ) -> anyhow::Result<berth_core::api::ServiceRemoved> {
        self.send(self.delete(&format!("/services/{}", segment(name))))
            .await
    }
    pub async fn services(&self) -> anyhow::Result<Vec<berth_core::api::ServiceView>> {
        self.send(self.get("/services")).await
    }
    pub async fn start_build(
        &self,
        name: &str,
        req: &berth_core::api::BuildStart,
    ) -> anyhow::Result<berth_core::api::BuildView> {
        self.send(self.post(&format!("/services/{name}/builds")).json(req))
            .await
    }
    pub async fn builds(
        &self,
        service: Option<&str>,
    ) -> anyhow::Result<Vec<berth_core::api::BuildView>> {
        let mut req = self.get("/builds");
        if let Some(s) = service {
            req = req.query(&[("service", s)]);
        }
        self.send(req).await
    }
    pub async fn build(&self, id: u64) -> anyhow::Result<berth_core::api::BuildView> {
        self.send(self.get(&format!("/builds/{id}"))).await
    }
    pub async fn cancel_build(&self, id: u64) -> anyhow::Result<serde_json::Value> {
        self.send(self.bodiless_post(&format!("/builds/{id}/cancel")))
            .await
    }
    pub async fn versions(&self, name: &str) -> anyhow::Result<Vec<berth_core::api::VersionView>> {
        self.send(self.get(&format!("/services/{name}/versions")))
            .await
    }
    pub async fn set_secret(
        &self,
        service: &str,
        name: &str,
        value: String,
    ) -> anyhow::Result<serde_json::Value> {
        self.send(
            self.put(&format!("/services/{service}/secrets/{name}"))
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
            self.put(&format!("/services/{service}/webhook-secret"))
                .header(reqwest::header::CONTENT_TYPE, TEXT)
                .body(value),
        )
        .await
    }
    /// `GET /api/v1/nodes`: the Swarm's nodes.
    pub async fn nodes(&self) -> anyhow::Result<Vec<berth_core::api::NodeView>> {
        self.send(self.get("/nodes")).await
    }

    pub async fn images(
        &self,
        service: Option<&str>,
    ) -> anyhow::Result<Vec<berth_core::api::ImageView>> {
        let mut req = self.get("/images");
        if let Some(s) = service {
            req = req.query(&[("service", s)]);
        }
        self.send(req).await
    }
    /// Platform events with an id above `after`, oldest first.
    pub async fn events(&self, after: u64) -> anyhow::Result<Vec<berth_core::api::EventView>> {
        let req = self.get("/events").query(&[("after", after.to_string())]);
        self.send(req).await
    }
    /// A version's image archive (the tar bytes).
    pub async fn archive_image(
        &self,
        service: &str,
        version: &str,
    ) -> anyhow::Result<bytes::Bytes> {
        Ok(self
            .streamed(self.get(&format!("/images/{service}/{version}/archive")))
            .await?
            .bytes()
            .await?)
    }
    pub async fn restore_image(&self, tar: Vec<u8>) -> anyhow::Result<serde_json::Value> {
        self.send(
            self.post("/images/restore")
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
        self.streamed(self.get(&format!("/builds/{id}/logs?follow={follow}")))
            .await
    }
    /// The raw logs response (streamed by the caller).
    pub async fn logs(
        &self,
        app: &str,
        service: &str,
        follow: bool,
        tail: Option<u64>,
        timestamps: bool,
    ) -> anyhow::Result<reqwest::Response> {
        let mut url = format!("/apps/{app}/services/{service}/logs?follow={follow}");
        if let Some(t) = tail {
            url.push_str(&format!("&tail={t}"));
        }
        if timestamps {
            url.push_str("&timestamps=true");
        }
        self.streamed(self.get(&url)).await
    }

    // --- identity (docs/access.md) ---

    /// `POST /api/v1/login`: a session token for `user`.
    pub async fn login(&self, req: &LoginRequest) -> anyhow::Result<LoginIssued> {
        self.send(self.post("/login").json(req)).await
    }
    /// `POST /api/v1/logout`: revoke the calling token.
    pub async fn logout(&self) -> anyhow::Result<serde_json::Value> {
        self.send(self.bodiless_post("/logout")).await
    }
    pub async fn whoami(&self) -> anyhow::Result<Whoami> {
        self.send(self.get("/whoami")).await
    }
    /// The caller's API tokens, or `user`'s (administrator).
    pub async fn api_tokens(&self, user: Option<&str>) -> anyhow::Result<Vec<ApiTokenView>> {
        let mut req = self.get("/api-tokens");
        if let Some(u) = user {
            req = req.query(&[("user", u)]);
        }
        self.send(req).await
    }
    pub async fn create_api_token(&self, req: &ApiTokenRequest) -> anyhow::Result<ApiTokenCreated> {
        self.send(self.post("/api-tokens").json(req)).await
    }
    /// Revoke the caller's token `name`, or `user`'s (administrator).
    pub async fn revoke_api_token(
        &self,
        name: &str,
        user: Option<&str>,
    ) -> anyhow::Result<serde_json::Value> {
        let mut req = self.delete(&format!("/api-tokens/{}", segment(name)));
        if let Some(u) = user {
            req = req.query(&[("user", u)]);
        }
        self.send(req).await
    }
    pub async fn users(&self) -> anyhow::Result<Vec<UserView>> {
        self.send(self.get("/users")).await
    }
    pub async fn create_user(&self, req: &UserRequest) -> anyhow::Result<UserCreated> {
        self.send(self.post("/users").json(req)).await
    }
    pub async fn set_password(
        &self,
        user: &str,
        req: &PasswordChange,
    ) -> anyhow::Result<serde_json::Value> {
        self.send(
            self.post(&format!("/users/{}/password", segment(user)))
                .json(req),
        )
        .await
    }
    pub async fn disable_user(&self, user: &str) -> anyhow::Result<serde_json::Value> {
        self.send(self.bodiless_post(&format!("/users/{}/disable", segment(user))))
            .await
    }
    /// `POST /api/v1/apps/{app}/deploy`.
    pub async fn deploy(&self, app: &str, req: &DeployRequest) -> anyhow::Result<RevisionCreated> {
        self.send(
            self.post(&format!("/apps/{}/deploy", segment(app)))
                .json(req),
        )
        .await
    }
    /// `POST /api/v1/apps/{app}/release`.
    pub async fn release(
        &self,
        app: &str,
        req: &ReleaseRequest,
    ) -> anyhow::Result<RevisionCreated> {
        self.send(
            self.post(&format!("/apps/{}/release", segment(app)))
                .json(req),
        )
        .await
    }
    /// `GET /api/v1/ports[?env=E]`.
    pub async fn ports(&self, env: Option<&str>) -> anyhow::Result<Vec<PortLeaseView>> {
        let mut req = self.get("/ports");
        if let Some(e) = env {
            req = req.query(&[("env", e)]);
        }
        self.send(req).await
    }
    /// `GET /api/v1/envs`.
    pub async fn envs(&self) -> anyhow::Result<Vec<EnvView>> {
        self.send(self.get("/envs")).await
    }
    /// `POST /api/v1/envs`.
    pub async fn create_env(&self, req: &EnvRequest) -> anyhow::Result<EnvView> {
        self.send(self.post("/envs").json(req)).await
    }
    /// `GET /api/v1/envs/{env}`.
    pub async fn env(&self, name: &str) -> anyhow::Result<EnvView> {
        self.send(self.get(&format!("/envs/{}", segment(name))))
            .await
    }
    /// `POST /api/v1/envs/{env}/extend`.
    pub async fn extend_env(&self, name: &str, ttl: &str) -> anyhow::Result<EnvView> {
        let req = EnvExtendRequest { ttl: ttl.into() };
        self.send(
            self.post(&format!("/envs/{}/extend", segment(name)))
                .json(&req),
        )
        .await
    }
    /// `DELETE /api/v1/envs/{env}`.
    pub async fn remove_env(&self, name: &str, keep_volumes: bool) -> anyhow::Result<EnvRemoved> {
        let mut req = self.delete(&format!("/envs/{}", segment(name)));
        if keep_volumes {
            req = req.query(&[("keep_volumes", "true")]);
        }
        self.send(req).await
    }

    /// `GET /api/v1/teams`.
    pub async fn teams(&self) -> anyhow::Result<Vec<TeamView>> {
        self.send(self.get("/teams")).await
    }
    pub async fn create_team(&self, req: &TeamRequest) -> anyhow::Result<TeamView> {
        self.send(self.post("/teams").json(req)).await
    }
    pub async fn delete_team(&self, team: &str) -> anyhow::Result<()> {
        self.send_empty(self.delete(&format!("/teams/{}", segment(team))))
            .await
    }
    pub async fn members(&self, team: &str) -> anyhow::Result<Vec<MemberView>> {
        self.send(self.get(&format!("/teams/{}/members", segment(team))))
            .await
    }
    pub async fn set_member(&self, team: &str, req: &MemberRequest) -> anyhow::Result<MemberView> {
        self.send(
            self.post(&format!("/teams/{}/members", segment(team)))
                .json(req),
        )
        .await
    }
    pub async fn remove_member(&self, team: &str, user: &str) -> anyhow::Result<()> {
        self.send_empty(self.delete(&format!(
            "/teams/{}/members/{}",
            segment(team),
            segment(user)
        )))
        .await
    }
    /// Move a version along its lifecycle (`submit`, `approve`, ...; docs/lifecycle.md).
    pub async fn transition_version(
        &self,
        service: &str,
        version: &str,
        transition: &str,
        req: &berth_core::api::TransitionRequest,
    ) -> anyhow::Result<berth_core::api::TransitionView> {
        self.send(
            self.post(&format!(
                "/services/{}/versions/{}/{transition}",
                segment(service),
                segment(version)
            ))
            .json(req),
        )
        .await
    }
    /// What a reviewer sees of a version.
    pub async fn review(
        &self,
        service: &str,
        version: &str,
    ) -> anyhow::Result<berth_core::api::ReviewView> {
        self.send(self.get(&format!(
            "/services/{}/versions/{}/review",
            segment(service),
            segment(version)
        )))
        .await
    }
    /// The market (every team's published services).
    pub async fn market(
        &self,
        search: Option<&str>,
    ) -> anyhow::Result<Vec<berth_core::api::MarketEntry>> {
        let mut req = self.get("/market");
        if let Some(s) = search {
            req = req.query(&[("search", s)]);
        }
        self.send(req).await
    }
    /// One market entry.
    pub async fn market_entry(
        &self,
        team: &str,
        service: &str,
    ) -> anyhow::Result<berth_core::api::MarketEntry> {
        self.send(self.get(&format!("/market/{}/{}", segment(team), segment(service))))
            .await
    }
    /// Versions of the team's services waiting for review.
    pub async fn reviews(&self) -> anyhow::Result<Vec<berth_core::api::ReviewItem>> {
        self.send(self.get("/reviews")).await
    }
    /// Move an installed copy to another published version (or only say what would change).
    pub async fn upgrade(
        &self,
        app: &str,
        req: &berth_core::api::UpgradeRequest,
    ) -> anyhow::Result<berth_core::api::UpgradeView> {
        self.send(
            self.post(&format!("/apps/{}/upgrade", segment(app)))
                .json(req),
        )
        .await
    }
    /// `GET /api/v1/apps/{app}/graph`.
    pub async fn app_graph(&self, app: &str) -> anyhow::Result<berth_core::api::AppGraph> {
        self.send(self.get(&format!("/apps/{}/graph", segment(app))))
            .await
    }
    /// `GET /api/v1/apps/{app}/subscriptions`.
    pub async fn subscriptions(
        &self,
        app: &str,
    ) -> anyhow::Result<Vec<berth_core::api::SubscriptionView>> {
        self.send(self.get(&format!("/apps/{}/subscriptions", segment(app))))
            .await
    }
    /// Subscribe an application to a market entry (`TEAM/SERVICE`).
    pub async fn subscribe(
        &self,
        app: &str,
        req: &berth_core::api::SubscribeRequest,
    ) -> anyhow::Result<berth_core::api::SubscriptionView> {
        self.send(
            self.post(&format!("/apps/{}/subscriptions", segment(app)))
                .json(req),
        )
        .await
    }
    /// End an application's subscription to `TEAM/SERVICE`.
    pub async fn unsubscribe(&self, app: &str, team: &str, service: &str) -> anyhow::Result<()> {
        self.send_empty(self.delete(&format!(
            "/apps/{}/subscriptions/{}/{}",
            segment(app),
            segment(team),
            segment(service)
        )))
        .await
    }
    /// Protect an application (or lift it).
    pub async fn protect(
        &self,
        app: &str,
        on: bool,
    ) -> anyhow::Result<berth_core::api::ProtectView> {
        let path = format!("/apps/{}/protect", segment(app));
        if on {
            self.send(self.bodiless_post(&path)).await
        } else {
            self.send(self.delete(&path)).await
        }
    }
    /// A team's admission grants (administrator).
    pub async fn admission_grants(
        &self,
        team: &str,
    ) -> anyhow::Result<Vec<berth_core::api::AdmissionGrantView>> {
        self.send(self.get(&format!("/teams/{}/admission", segment(team))))
            .await
    }
    /// Grant a team an admission key (administrator).
    pub async fn grant_admission(
        &self,
        team: &str,
        key: &str,
    ) -> anyhow::Result<berth_core::api::AdmissionGrantView> {
        self.send(
            self.post(&format!("/teams/{}/admission", segment(team)))
                .json(&berth_core::api::AdmissionGrantRequest { key: key.into() }),
        )
        .await
    }
    /// Revoke a team's admission grant (administrator); the key is one path segment.
    pub async fn revoke_admission(
        &self,
        team: &str,
        key: &str,
    ) -> anyhow::Result<serde_json::Value> {
        self.send(self.delete(&format!(
            "/teams/{}/admission/{}",
            segment(team),
            segment(key)
        )))
        .await
    }
    /// One page of the audit log: rows with an id above `after`, oldest first.
    pub async fn audit(&self, q: &AuditQuery) -> anyhow::Result<AuditPage> {
        let mut params: Vec<(&str, String)> = Vec::new();
        if let Some(u) = &q.user {
            params.push(("user", u.clone()));
        }
        if let Some(s) = &q.since {
            params.push(("since", s.clone()));
        }
        if let Some(a) = q.after {
            params.push(("after", a.to_string()));
        }
        if let Some(l) = q.limit {
            params.push(("limit", l.to_string()));
        }
        self.send(self.get("/audit").query(&params)).await
    }
}

/// `GET /api/v1/audit`'s query.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub user: Option<String>,
    /// RFC 3339: rows at or after this time.
    pub since: Option<String>,
    /// Rows with an id above this one.
    pub after: Option<u64>,
    /// At most this many rows in the page.
    pub limit: Option<u64>,
}

/// A name as one URL path segment (user and token names are plain, but a `/` or `?` typed by
/// mistake must not reach another route).
fn segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Make aws-lc-rs rustls's process-wide provider. reqwest's rustls (enabled for the CLI without
/// a provider of its own) takes the process default, and panics without one, for any client built
/// without a ready-made TLS config: the `berth` binary calls this first thing, for the clients of
/// the server and the gateway. Calling it again is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// The HTTP client: rustls on aws-lc-rs, trusting (for `https://`) the system's roots and the
/// PEM certificates in `ca_file`.
fn http_client(https: bool, ca_file: Option<&Path>) -> anyhow::Result<reqwest::Client> {
    let mut roots = rustls::RootCertStore::empty();
    if https {
        // Unreadable or odd system certificates are skipped: a private CA may be all we need.
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
    }
    if let Some(path) = ca_file {
        roots.add_parsable_certificates(read_ca_file(path)?);
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS setup")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .context("cannot set up the HTTP client")
}

/// The certificates in a PEM file; an error names the file when there is none.
fn read_ca_file(path: &Path) -> anyhow::Result<Vec<rustls_pki_types::CertificateDer<'static>>> {
    use rustls_pki_types::pem::PemObject as _;
    let shown = PathBuf::from(path).display().to_string();
    let bytes =
        std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read the CA file {shown}: {e}"))?;
    let certs: Vec<_> = rustls_pki_types::CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("the CA file {shown} is not PEM: {e}"))?;
    if certs.is_empty() {
        anyhow::bail!(
            "the CA file {shown} holds no certificate (expected PEM `BEGIN CERTIFICATE`)"
        );
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    use std::sync::Mutex;

    /// One request as a fake server saw it: method, path, `Authorization` header.
    type Seen = Arc<Mutex<Vec<(String, String, Option<String>)>>>;

    /// A fake API on a free loopback port answering every request with `status` and `body`,
    /// recording what it saw.
    fn fake(status: u16, body: &'static str) -> (String, Seen) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Seen = Arc::default();
        let log = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut first = String::new();
                let _ = reader.read_line(&mut first);
                let mut parts = first.split_whitespace();
                let (method, path) = (
                    parts.next().unwrap_or_default().to_string(),
                    parts.next().unwrap_or_default().to_string(),
                );
                let (mut auth, mut length) = (None, 0usize);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    let (k, v) = line.split_once(':').unwrap_or_default();
                    match k.to_ascii_lowercase().as_str() {
                        "authorization" => auth = Some(v.trim().to_string()),
                        "content-length" => length = v.trim().parse().unwrap_or(0),
                        _ => {}
                    }
                }
                let mut rest = vec![0; length];
                let _ = reader.read_exact(&mut rest);
                log.lock().unwrap().push((method, path, auth));
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        (format!("http://{addr}"), seen)
    }

    #[tokio::test]
    async fn every_request_carries_the_token_streamed_ones_too() {
        let (url, seen) = fake(200, "[]");
        let client = Client::new(&url)
            .unwrap()
            .with_token(Some("berth_secret".into()));
        client.apps().await.unwrap();
        let _ = client.logs("a", "web", false, None, false).await.unwrap();
        let _ = client.build_logs(1, false).await.unwrap();
        let tar = tempfile::tempfile().unwrap();
        let _ = client
            .upload_context(tokio::fs::File::from_std(tar), 0)
            .await;
        let _ = client.logout().await;
        let seen = seen.lock().unwrap().clone();
        let paths: Vec<&str> = seen.iter().map(|s| s.1.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/api/v1/apps",
                "/api/v1/apps/a/services/web/logs?follow=false",
                "/api/v1/builds/1/logs?follow=false",
                "/api/v1/contexts",
                "/api/v1/logout"
            ]
        );
        for (method, path, auth) in &seen {
            assert_eq!(
                auth.as_deref(),
                Some("Bearer berth_secret"),
                "{method} {path}"
            );
        }

        let (url, seen) = fake(200, "[]");
        Client::new(&url).unwrap().apps().await.unwrap();
        assert_eq!(seen.lock().unwrap()[0].2, None, "no token, no header");
    }

    #[tokio::test]
    async fn unauthorized_says_how_to_log_in_on_one_line() {
        let (url, _) = fake(
            401,
            r#"{"code":"unauthorized","message":"missing or invalid token","request_id":"r1"}"#,
        );
        let e = Client::new(&url)
            .unwrap()
            .with_token(Some("berth_revoked".into()))
            .whoami()
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "missing or invalid token (unauthorized): log in with `berth login` or set BERTH_TOKEN"
        );
        // Other refusals keep their message alone.
        let (url, _) = fake(
            403,
            r#"{"code":"forbidden","message":"administrators only","request_id":"r2"}"#,
        );
        let e = Client::new(&url)
            .unwrap()
            .users()
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(e, "administrators only (forbidden)");
        let (url, _) = fake(
            403,
            r#"{"code":"password_change_required","message":"change your password first","request_id":"r3"}"#,
        );
        let e = Client::new(&url)
            .unwrap()
            .apps()
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "change your password first (password_change_required): run `berth user passwd`"
        );
    }

    #[test]
    fn names_stay_one_path_segment() {
        assert_eq!(segment("ci-token_1.x"), "ci-token_1.x");
        assert_eq!(segment("a/../b?c"), "a%2F..%2Fb%3Fc");
    }

    /// An `https://` API with a certificate from a private CA: refused until the CA file is
    /// given, then trusted; a file without a certificate is a one-line error.
    #[tokio::test]
    async fn https_with_a_private_ca_file() {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &ca)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();

        let server_config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = vec![0; 4096];
                    let _ = tls.read(&mut buf).await;
                    let body = r#"{"status":"ok","version":"t","instance":"i","docker_api":"1"}"#;
                    let _ = tls
                        .write_all(
                            format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                                body.len()
                            )
                            .as_bytes(),
                        )
                        .await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        let url = format!("https://localhost:{port}");

        let e = Client::new(&url)
            .unwrap()
            .health()
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("over TLS") && e.contains("--ca-file"), "{e}");

        let trusted = Client::new(&url)
            .unwrap()
            .with_ca_file(Some(&ca_file))
            .unwrap();
        assert_eq!(trusted.health().await.unwrap().status, "ok");

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = Client::new(&url)
            .unwrap()
            .with_ca_file(Some(&empty))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("holds no certificate"), "{e}");
        let e = Client::new(&url)
            .unwrap()
            .with_ca_file(Some(&dir.path().join("missing.pem")))
            .err()
            .unwrap()
            .to_string();
        assert!(e.starts_with("cannot read the CA file"), "{e}");
    }
}
