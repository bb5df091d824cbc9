//! [`Docker`]: one typed method per Engine API call Berth makes.
//!
//! Rules it keeps:
//! - The API version is negotiated once at connect (`min(engine, 1.45)`, at least 1.41) and
//!   prefixed to every path; it is never hard-coded per call.
//! - Status codes are mapped in one place ([`check`]): 404 becomes `NotFound`, 409 `Conflict`,
//!   other failures `Api` with Docker's own message. Codes that mean "already so" (304 on
//!   start/stop) are success, so callers can be idempotent without special cases.
//! - Names and IDs are percent-encoded into paths; nothing from a caller reaches the request
//!   line unescaped.
//! - No retries here: callers (reconcilers) decide when to try again.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::build::{BuildParams, BuildStream};
use crate::spec::ContainerSpec;
use crate::stream::{EventStream, LogStream};
use crate::transport::{self, Body, Endpoint, DEFAULT_SOCKET};
use crate::types::{
    ContainerInspect, ContainerSummary, ImageInspect, NetworkSummary, VolumeSummary,
    WireContainerInspect, WireContainerSummary, WireCreated, WireImageInspect, WireVersion,
    WireVolumeList, WireWait,
};
use crate::DockerError;

/// Whose output [`Docker::logs_of`] reads.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogsOf {
    /// A container on this engine, by ID or name.
    Container(String),
    /// A Swarm task, by ID, read through this engine (a manager) from whichever node runs it.
    Task(String),
}

/// How a command run with [`Docker::exec_run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecOutcome {
    /// It exited with this code.
    Exited(i64),
    /// It was still running when the timeout passed.
    TimedOut,
}

/// `GET /exec/{id}/json`: the parts Berth reads. `ExitCode` is null while it runs.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WireExecInspect {
    #[serde(default)]
    running: bool,
    #[serde(default)]
    exit_code: Option<i64>,
}

/// The oldest Engine API Berth supports (Docker 20.10).
pub const MIN_API_VERSION: &str = "1.41";
/// The newest Engine API this client was written against; newer engines are spoken to at this
/// version.
pub const MAX_API_VERSION: &str = "1.45";

/// A handle on one Docker engine. Cheap to clone; every request opens its own connection.
#[derive(Clone)]
pub struct Docker {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: Endpoint,
    endpoint_display: String,
    version: String,
    arch: String,
}

impl std::fmt::Debug for Docker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Docker")
            .field("endpoint", &self.inner.endpoint_display)
            .field("api_version", &self.inner.version)
            .finish()
    }
}

impl Docker {
    /// Connects to `DOCKER_HOST` (`unix:///path` or `tcp://host:port`, plain HTTP), or to
    /// `/var/run/docker.sock` when it is unset or empty, and negotiates the API version.
    pub async fn connect() -> Result<Docker, DockerError> {
        match std::env::var("DOCKER_HOST") {
            Ok(host) if !host.trim().is_empty() => Docker::connect_to(&host).await,
            _ => Docker::connect_to(&format!("unix://{DEFAULT_SOCKET}")).await,
        }
    }

    /// Connects to the given host (same forms as `DOCKER_HOST`) and negotiates the API version.
    pub async fn connect_to(host: &str) -> Result<Docker, DockerError> {
        let endpoint = Endpoint::parse(host)?;
        let (status, body) = raw_call(&endpoint, Method::GET, "/version", None).await?;
        let body = check(status, body)?;
        let v: WireVersion = parse("GET /version", &body)?;
        let version = negotiate(&v.api_version)?;
        tracing::debug!(endpoint = %endpoint.display(), api = %version, "connected to the Docker engine");
        Ok(Docker {
            inner: Arc::new(Inner {
                endpoint_display: endpoint.display(),
                endpoint,
                version,
                arch: v.arch,
            }),
        })
    }

    /// The negotiated API version, e.g. `1.41`.
    #[must_use]
    pub fn api_version(&self) -> &str {
        &self.inner.version
    }

    /// The negotiated API version as (major, minor).
    #[must_use]
    pub fn api(&self) -> (u32, u32) {
        parse_version(&self.inner.version).unwrap_or((1, 41))
    }

    /// Whether the negotiated API is at least `major.minor` (e.g. `(1, 44)` for a
    /// healthcheck's `StartInterval`).
    #[must_use]
    pub fn api_at_least(&self, major: u32, minor: u32) -> bool {
        self.api() >= (major, minor)
    }

    /// The engine's CPU architecture as it reported it at connect (`amd64`, `arm64`; empty if
    /// it did not say).
    #[must_use]
    pub fn arch(&self) -> &str {
        &self.inner.arch
    }

    /// The endpoint in use, e.g. `unix:///var/run/docker.sock`.
    #[must_use]
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint_display
    }

    /// `GET /_ping`: Ok when the engine answers.
    pub async fn ping(&self) -> Result<(), DockerError> {
        self.call(Method::GET, "/_ping", None).await.map(drop)
    }

    /// Containers with all the given labels (`k=v` or just `k`); `all` includes stopped ones.
    pub async fn list_containers(
        &self,
        label_filters: &[String],
        all: bool,
    ) -> Result<Vec<ContainerSummary>, DockerError> {
        let q = Query::new().flag("all", all).filters(label_filters);
        let rows: Vec<WireContainerSummary> =
            self.get_json(&format!("/containers/json{q}")).await?;
        Ok(rows.into_iter().map(ContainerSummary::from).collect())
    }

    /// Inspects a container by ID or name. [`DockerError::NotFound`] when it does not exist.
    pub async fn inspect_container(
        &self,
        id_or_name: &str,
    ) -> Result<ContainerInspect, DockerError> {
        let w: WireContainerInspect = self
            .get_json(&format!("/containers/{}/json", enc(id_or_name)))
            .await?;
        Ok(w.into())
    }

    /// Creates a container named `name` and returns its ID. [`DockerError::Conflict`] when the
    /// name is taken; [`DockerError::NotFound`] when the image is missing (nothing is pulled).
    ///
    /// The container is created on the first of `spec.networks` and then connected to the rest
    /// (API 1.41 takes one network at create). If a connect fails, the new container is removed
    /// again so a retry under the same name starts clean.
    pub async fn create_container(
        &self,
        name: &str,
        spec: &ContainerSpec,
    ) -> Result<String, DockerError> {
        let q = Query::new().param("name", name);
        let body = self
            .call(
                Method::POST,
                &format!("/containers/create{q}"),
                Some(Body::json(&spec.to_create_body_for(self.api()))),
            )
            .await?;
        let created: WireCreated = parse("POST /containers/create", &body)?;
        for (net, aliases) in spec.networks.iter().skip(1) {
            if let Err(e) = self.connect_network(net, &created.id, aliases).await {
                if let Err(cleanup) = self.remove_container(&created.id, true, true).await {
                    tracing::warn!(container = %created.id, error = %cleanup, "removing a half-created container failed");
                }
                return Err(e);
            }
        }
        Ok(created.id)
    }

    /// Connects a container to a network with DNS aliases.
    pub async fn connect_network(
        &self,
        network: &str,
        container: &str,
        aliases: &[String],
    ) -> Result<(), DockerError> {
        let body = json!({ "Container": container, "EndpointConfig": { "Aliases": aliases } });
        self.call(
            Method::POST,
            &format!("/networks/{}/connect", enc(network)),
            Some(Body::json(&body)),
        )
        .await
        .map(drop)
    }

    /// Disconnects a container from a network.
    pub async fn disconnect_network(
        &self,
        network: &str,
        container: &str,
        force: bool,
    ) -> Result<(), DockerError> {
        let body = json!({ "Container": container, "Force": force });
        self.call(
            Method::POST,
            &format!("/networks/{}/disconnect", enc(network)),
            Some(Body::json(&body)),
        )
        .await
        .map(drop)
    }

    /// Starts a container; already running is success.
    pub async fn start_container(&self, id: &str) -> Result<(), DockerError> {
        self.call(
            Method::POST,
            &format!("/containers/{}/start", enc(id)),
            None,
        )
        .await
        .map(drop)
    }

    /// Stops a container (stop signal, then SIGKILL after `timeout_secs`); already stopped is
    /// success, a missing container is [`DockerError::NotFound`].
    pub async fn stop_container(&self, id: &str, timeout_secs: u64) -> Result<(), DockerError> {
        let q = Query::new().param("t", &timeout_secs.to_string());
        self.call(
            Method::POST,
            &format!("/containers/{}/stop{q}", enc(id)),
            None,
        )
        .await
        .map(drop)
    }

    /// Restarts a container, waiting up to `timeout_secs` for it to stop first.
    pub async fn restart_container(&self, id: &str, timeout_secs: u64) -> Result<(), DockerError> {
        let q = Query::new().param("t", &timeout_secs.to_string());
        self.call(
            Method::POST,
            &format!("/containers/{}/restart{q}", enc(id)),
            None,
        )
        .await
        .map(drop)
    }

    /// Sends a signal (e.g. `SIGKILL`, `SIGTERM`) to a container's main process.
    /// [`DockerError::Conflict`] when it is not running.
    pub async fn kill_container(&self, id: &str, signal: &str) -> Result<(), DockerError> {
        let q = Query::new().param("signal", signal);
        self.call(
            Method::POST,
            &format!("/containers/{}/kill{q}", enc(id)),
            None,
        )
        .await
        .map(drop)
    }

    /// Removes a container; `force` kills it first, `volumes` removes its anonymous volumes.
    /// [`DockerError::NotFound`] when it does not exist.
    pub async fn remove_container(
        &self,
        id: &str,
        force: bool,
        volumes: bool,
    ) -> Result<(), DockerError> {
        let q = Query::new().flag("force", force).flag("v", volumes);
        self.call(Method::DELETE, &format!("/containers/{}{q}", enc(id)), None)
            .await
            .map(drop)
    }

    /// Extracts a tar archive into `path` (a directory that must exist) of a container, which
    /// may be created but not yet started: how secrets and configs are put in place.
    pub async fn put_archive(&self, id: &str, path: &str, tar: Vec<u8>) -> Result<(), DockerError> {
        let q = Query::new().param("path", path);
        let body = Body {
            content_type: "application/x-tar",
            bytes: Bytes::from(tar),
        };
        self.call(
            Method::PUT,
            &format!("/containers/{}/archive{q}", enc(id)),
            Some(body),
        )
        .await
        .map(drop)
    }

    /// Inspects an image by reference or ID; `None` when the engine does not have it.
    pub async fn inspect_image(&self, name: &str) -> Result<Option<ImageInspect>, DockerError> {
        match self
            .get_json::<WireImageInspect>(&format!("/images/{}/json", enc(name)))
            .await
        {
            Ok(w) => Ok(Some(w.into())),
            Err(DockerError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Networks with all the given labels.
    pub async fn list_networks(
        &self,
        label_filters: &[String],
    ) -> Result<Vec<NetworkSummary>, DockerError> {
        let q = Query::new().filters(label_filters);
        self.get_json(&format!("/networks{q}")).await
    }

    /// Creates a bridge network and returns its ID. [`DockerError::Conflict`] when the name is
    /// taken. `internal` networks have no route outside the host. Its subnet comes from Docker's
    /// default address pools (see [`Docker::create_network_in`] to choose it).
    pub async fn create_network(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
        internal: bool,
    ) -> Result<String, DockerError> {
        self.create_network_in(name, labels, internal, None).await
    }

    /// [`Docker::create_network`] on a given IPv4 `subnet` (CIDR; the gateway is its first
    /// address). When the subnet overlaps another network's, the engine refuses:
    /// [`DockerError::is_address_overlap`].
    pub async fn create_network_in(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
        internal: bool,
        subnet: Option<&str>,
    ) -> Result<String, DockerError> {
        let mut body = json!({
            "Name": name,
            "CheckDuplicate": true,
            "Driver": "bridge",
            "Internal": internal,
            "Labels": labels,
        });
        if let Some(subnet) = subnet {
            body["IPAM"] = json!({ "Driver": "default", "Config": [{ "Subnet": subnet }] });
        }
        let answer = self
            .call(Method::POST, "/networks/create", Some(Body::json(&body)))
            .await?;
        let created: WireCreated = parse("POST /networks/create", &answer)?;
        Ok(created.id)
    }

    /// Removes a network by ID or name. [`DockerError::NotFound`] when it does not exist,
    /// [`DockerError::Conflict`] or `Api` while containers are still attached.
    pub async fn remove_network(&self, id: &str) -> Result<(), DockerError> {
        self.call(Method::DELETE, &format!("/networks/{}", enc(id)), None)
            .await
            .map(drop)
    }

    /// Volumes with all the given labels.
    pub async fn list_volumes(
        &self,
        label_filters: &[String],
    ) -> Result<Vec<VolumeSummary>, DockerError> {
        let q = Query::new().filters(label_filters);
        let list: WireVolumeList = self.get_json(&format!("/volumes{q}")).await?;
        Ok(list.volumes)
    }

    /// Creates a local volume. Creating a volume that already exists succeeds (the engine
    /// returns the existing one).
    pub async fn create_volume(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<(), DockerError> {
        let body = json!({ "Name": name, "Driver": "local", "Labels": labels });
        self.call(Method::POST, "/volumes/create", Some(Body::json(&body)))
            .await
            .map(drop)
    }

    /// Removes a volume. [`DockerError::NotFound`] when missing, [`DockerError::Conflict`] while
    /// a container uses it.
    pub async fn remove_volume(&self, name: &str) -> Result<(), DockerError> {
        self.call(Method::DELETE, &format!("/volumes/{}", enc(name)), None)
            .await
            .map(drop)
    }

    /// Subscribes to the engine's events for objects with all the given labels. The stream
    /// holds its own connection and ends (after an `Err`, or with `None`) when the engine goes
    /// away: re-subscribe and re-list, events only say that something changed.
    pub async fn events(&self, label_filters: &[String]) -> Result<EventStream, DockerError> {
        self.events_where(Query::new().filters(label_filters)).await
    }

    /// Subscribes to the engine's events about objects of the given types (`service`, `node`,
    /// ...). A Swarm manager's cluster events carry no labels (a service's says its `name`), so
    /// they are chosen by type; the same stream rules as [`Docker::events`] hold.
    pub async fn events_of_types(&self, types: &[&str]) -> Result<EventStream, DockerError> {
        let f = json!({ "type": types }).to_string();
        self.events_where(Query::new().param("filters", &f)).await
    }

    async fn events_where(&self, q: Query) -> Result<EventStream, DockerError> {
        let (response, conn) = transport::send(
            &self.inner.endpoint,
            Method::GET,
            &self.path(&format!("/events{q}")),
            None,
        )
        .await?;
        let status = response.status();
        if !status.is_success() {
            let body = response.into_body().collect().await?.to_bytes();
            return Err(failure(status, &body));
        }
        Ok(EventStream::new(response.into_body(), conn))
    }

    /// A container's stdout and stderr. With `follow` the stream goes on until the container
    /// stops; `tail` limits the backlog to the last N lines; `timestamps` prefixes each line
    /// with an RFC 3339 time. Frames are demultiplexed unless the container has a TTY.
    pub async fn logs(
        &self,
        id: &str,
        follow: bool,
        tail: Option<u64>,
        timestamps: bool,
    ) -> Result<LogStream, DockerError> {
        self.logs_of(&LogsOf::Container(id.to_string()), follow, tail, timestamps)
            .await
    }

    /// The output of a container on this engine or of a Swarm task (`GET /tasks/{id}/logs`
    /// on a manager, which fetches it from the task's node), with the same options, framing
    /// and errors as [`Docker::logs`]. A task with the `none` log driver is refused here (a
    /// 501, as the engine refuses such a container's logs); the manager answers 200 before it
    /// asks the task's node, so a failure the node reports (a node that is down: "incomplete
    /// log stream") ends the stream with [`DockerError::InStream`].
    pub async fn logs_of(
        &self,
        of: &LogsOf,
        follow: bool,
        tail: Option<u64>,
        timestamps: bool,
    ) -> Result<LogStream, DockerError> {
        let (path, tty) = match of {
            LogsOf::Container(id) => (
                format!("/containers/{}/logs", enc(id)),
                self.inspect_container(id).await?.tty,
            ),
            LogsOf::Task(id) => (
                format!("/tasks/{}/logs", enc(id)),
                self.task_log_tty(id).await?,
            ),
        };
        let tail = tail.map_or_else(|| "all".to_string(), |n| n.to_string());
        let q = Query::new()
            .flag("stdout", true)
            .flag("stderr", true)
            .flag("follow", follow)
            .flag("timestamps", timestamps)
            .param("tail", &tail);
        let (response, conn) = transport::send(
            &self.inner.endpoint,
            Method::GET,
            &self.path(&format!("{path}{q}")),
            None,
        )
        .await?;
        let status = response.status();
        if !status.is_success() {
            let body = response.into_body().collect().await?.to_bytes();
            return Err(failure(status, &body));
        }
        Ok(LogStream::new(response.into_body(), conn, tty))
    }

    /// Waits for a container to stop (`POST /containers/{id}/wait`) and returns its exit code.
    /// Returns at once for a container that already exited. [`DockerError::NotFound`] when it
    /// does not exist. The request holds a connection open for as long as the container runs:
    /// callers that need a deadline wrap it in a timeout.
    pub async fn wait_container(&self, id: &str) -> Result<i64, DockerError> {
        let body = self
            .call(Method::POST, &format!("/containers/{}/wait", enc(id)), None)
            .await?;
        let answer: WireWait = parse("POST /containers/wait", &body)?;
        if let Some(message) = answer
            .error
            .and_then(|e| e.message)
            .filter(|m| !m.is_empty())
        {
            return Err(DockerError::Api {
                status: 200,
                message,
            });
        }
        Ok(answer.status_code)
    }

    /// Runs `cmd` in a running container (an exec, detached, no streams attached) and waits up
    /// to `timeout` for it to exit, polling its state: how a healthcheck's own test is run on
    /// Berth's schedule. [`DockerError::Conflict`] when the container is not running,
    /// [`DockerError::NotFound`] when it is gone. On [`ExecOutcome::TimedOut`] the process is
    /// left to finish on its own (the Engine API cannot kill an exec), as the engine's own
    /// healthchecks were before Docker 25.
    pub async fn exec_run(
        &self,
        container: &str,
        cmd: &[String],
        timeout: std::time::Duration,
    ) -> Result<ExecOutcome, DockerError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let body = json!({
            "Cmd": cmd,
            "AttachStdin": false,
            "AttachStdout": false,
            "AttachStderr": false,
            "Tty": false,
        });
        let created = self
            .call(
                Method::POST,
                &format!("/containers/{}/exec", enc(container)),
                Some(Body::json(&body)),
            )
            .await?;
        let created: WireCreated = parse("POST /containers/exec", &created)?;
        let start = json!({ "Detach": true, "Tty": false });
        self.call(
            Method::POST,
            &format!("/exec/{}/start", enc(&created.id)),
            Some(Body::json(&start)),
        )
        .await?;
        // Most checks exit within milliseconds: poll often at first, then back off.
        let mut pause = std::time::Duration::from_millis(5);
        loop {
            let state: WireExecInspect = self
                .get_json(&format!("/exec/{}/json", enc(&created.id)))
                .await?;
            if !state.running {
                if let Some(code) = state.exit_code {
                    return Ok(ExecOutcome::Exited(code));
                }
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(ExecOutcome::TimedOut);
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(std::time::Duration::from_millis(50));
        }
    }

    /// Starts an image build from an in-memory context tar (`POST /build`, the legacy
    /// builder) and returns its output as it arrives. A Dockerfile that cannot be read or a bad
    /// parameter fails here; a failing step arrives as [`BuildMessage::Error`] in the stream.
    /// Dropping the stream cancels the build. Nothing is pulled unless the Dockerfile's `FROM`
    /// names an image the engine lacks (then the engine tries, and fails offline).
    ///
    /// [`BuildMessage::Error`]: crate::BuildMessage::Error
    pub async fn build_image(
        &self,
        context_tar: Vec<u8>,
        params: &BuildParams,
    ) -> Result<BuildStream, DockerError> {
        let mut q = Query::new().flag("rm", true).flag("forcerm", true);
        if !params.tag.is_empty() {
            q = q.param("t", &params.tag);
        }
        if !params.dockerfile.is_empty() {
            q = q.param("dockerfile", &params.dockerfile);
        }
        if !params.buildargs.is_empty() {
            q = q.param("buildargs", &json!(params.buildargs).to_string());
        }
        if let Some(target) = params.target.as_deref().filter(|t| !t.is_empty()) {
            q = q.param("target", target);
        }
        if !params.labels.is_empty() {
            q = q.param("labels", &json!(params.labels).to_string());
        }
        let body = Body {
            content_type: "application/x-tar",
            bytes: Bytes::from(context_tar),
        };
        let (response, conn) = transport::send(
            &self.inner.endpoint,
            Method::POST,
            &self.path(&format!("/build{q}")),
            Some(body),
        )
        .await?;
        let status = response.status();
        if !status.is_success() {
            let body = response.into_body().collect().await?.to_bytes();
            return Err(failure(status, &body));
        }
        Ok(BuildStream::new(response.into_body(), conn))
    }

    /// Tags an image (by reference or ID) as `repo:tag` (`POST /images/{name}/tag`), moving the
    /// tag if another image held it. [`DockerError::NotFound`] when the image is missing.
    pub async fn tag_image(&self, name: &str, repo: &str, tag: &str) -> Result<(), DockerError> {
        let q = Query::new().param("repo", repo).param("tag", tag);
        self.call(Method::POST, &format!("/images/{}/tag{q}", enc(name)), None)
            .await
            .map(drop)
    }

    /// Removes an image by reference or ID (`DELETE /images/{name}`); removing a tag that
    /// other tags share only untags it. `force` removes it even when containers use it;
    /// `noprune` keeps untagged parents. [`DockerError::NotFound`] when missing,
    /// [`DockerError::Conflict`] while a container uses it (without `force`).
    pub async fn remove_image(
        &self,
        name: &str,
        force: bool,
        noprune: bool,
    ) -> Result<(), DockerError> {
        let q = Query::new().flag("force", force).flag("noprune", noprune);
        self.call(Method::DELETE, &format!("/images/{}{q}", enc(name)), None)
            .await
            .map(drop)
    }

    /// One request at the negotiated version; the raw body of a success answer.
    pub(crate) async fn call_raw(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Body>,
    ) -> Result<Bytes, DockerError> {
        self.call(method, path_and_query, body).await
    }

    /// One request at the negotiated version with a streamed body; the body of a success
    /// answer.
    pub(crate) async fn call_streamed<B>(
        &self,
        method: Method,
        path_and_query: &str,
        content_type: &'static str,
        body: B,
    ) -> Result<Bytes, DockerError>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (response, _conn) = transport::send_streamed(
            &self.inner.endpoint,
            method,
            &self.path(path_and_query),
            content_type,
            body,
        )
        .await?;
        let status = response.status();
        let answer = response.into_body().collect().await?.to_bytes();
        check(status, answer)
    }

    fn path(&self, path_and_query: &str) -> String {
        format!("/v{}{path_and_query}", self.inner.version)
    }

    /// One request at the negotiated version; the body of a success answer.
    async fn call(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Body>,
    ) -> Result<Bytes, DockerError> {
        let (status, answer) = raw_call(
            &self.inner.endpoint,
            method,
            &self.path(path_and_query),
            body,
        )
        .await?;
        check(status, answer)
    }

    async fn get_json<T: DeserializeOwned>(&self, path_and_query: &str) -> Result<T, DockerError> {
        let body = self.call(Method::GET, path_and_query, None).await?;
        parse(
            &format!("GET {}", path_and_query.split('?').next().unwrap_or("")),
            &body,
        )
    }
}

/// Sends one request and reads the whole answer.
async fn raw_call(
    endpoint: &Endpoint,
    method: Method,
    path_and_query: &str,
    body: Option<Body>,
) -> Result<(StatusCode, Bytes), DockerError> {
    let (response, _conn) = transport::send(endpoint, method, path_and_query, body).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// Maps a status to success or the matching error. 304 Not Modified ("already started /
/// stopped") counts as success.
fn check(status: StatusCode, body: Bytes) -> Result<Bytes, DockerError> {
    if status.is_success() || status == StatusCode::NOT_MODIFIED {
        return Ok(body);
    }
    Err(failure(status, &body))
}

/// The error for a failure status, carrying Docker's `message` (or the raw body).
pub(crate) fn failure(status: StatusCode, body: &[u8]) -> DockerError {
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
    match status {
        StatusCode::NOT_FOUND => DockerError::NotFound(message),
        StatusCode::CONFLICT => DockerError::Conflict(message),
        _ => DockerError::Api {
            status: status.as_u16(),
            message,
        },
    }
}

pub(crate) fn parse<T: DeserializeOwned>(context: &str, body: &[u8]) -> Result<T, DockerError> {
    serde_json::from_slice(body).map_err(|source| DockerError::Json {
        context: context.to_string(),
        source,
    })
}

/// Picks `min(engine, MAX_API_VERSION)`, refusing engines older than `MIN_API_VERSION`.
fn negotiate(server: &str) -> Result<String, DockerError> {
    let unsupported = || DockerError::UnsupportedVersion {
        server: server.to_string(),
        minimum: MIN_API_VERSION,
    };
    let parsed = parse_version(server).ok_or_else(unsupported)?;
    let min = parse_version(MIN_API_VERSION).unwrap_or((1, 41));
    let max = parse_version(MAX_API_VERSION).unwrap_or((1, 45));
    if parsed < min {
        return Err(unsupported());
    }
    Ok(if parsed > max {
        MAX_API_VERSION.to_string()
    } else {
        format!("{}.{}", parsed.0, parsed.1)
    })
}

fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (major, minor) = v.trim().split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub(crate) fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A query string under construction; `Display` renders `?a=b&c=d` (or nothing).
struct Query(Vec<(String, String)>);

impl Query {
    fn new() -> Query {
        Query(Vec::new())
    }

    fn param(mut self, key: &str, value: &str) -> Query {
        self.0.push((key.to_string(), enc(value)));
        self
    }

    fn flag(self, key: &str, on: bool) -> Query {
        self.param(key, if on { "1" } else { "0" })
    }

    /// `filters={"label": [...]}`, left out when there are no label filters.
    fn filters(self, labels: &[String]) -> Query {
        if labels.is_empty() {
            return self;
        }
        let f = json!({ "label": labels }).to_string();
        self.param("filters", &f)
    }
}

impl std::fmt::Display for Query {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (k, v)) in self.0.iter().enumerate() {
            f.write_str(if i == 0 { "?" } else { "&" })?;
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        assert_eq!(negotiate("1.41").unwrap(), "1.41");
        assert_eq!(negotiate("1.43").unwrap(), "1.43");
        assert_eq!(negotiate("1.50").unwrap(), "1.45");
        assert_eq!(negotiate("2.0").unwrap(), "1.45");
        assert!(matches!(
            negotiate("1.40"),
            Err(DockerError::UnsupportedVersion { .. })
        ));
        assert!(matches!(
            negotiate("garbage"),
            Err(DockerError::UnsupportedVersion { .. })
        ));
    }

    #[test]
    fn query_encoding() {
        let q = Query::new()
            .flag("all", true)
            .filters(&["berth.test=a b".to_string()])
            .to_string();
        assert_eq!(
            q,
            "?all=1&filters=%7B%22label%22%3A%5B%22berth.test%3Da%20b%22%5D%7D"
        );
        assert_eq!(Query::new().filters(&[]).to_string(), "");
        assert_eq!(enc("/web-1"), "%2Fweb-1");
    }

    #[test]
    fn status_mapping() {
        let msg = || Bytes::from_static(br#"{"message":"No such container: x"}"#);
        assert!(
            matches!(check(StatusCode::NOT_FOUND, msg()), Err(DockerError::NotFound(m)) if m == "No such container: x")
        );
        assert!(matches!(
            check(StatusCode::CONFLICT, msg()),
            Err(DockerError::Conflict(_))
        ));
        assert!(check(StatusCode::NOT_MODIFIED, Bytes::new()).is_ok());
        assert!(matches!(
            check(StatusCode::INTERNAL_SERVER_ERROR, Bytes::from_static(b"boom")),
            Err(DockerError::Api { status: 500, message }) if message == "boom"
        ));
    }
}
