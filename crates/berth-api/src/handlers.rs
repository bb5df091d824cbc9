//! The handlers: parse, call the control plane, answer. No logic beyond translation.

use crate::error::ApiError;
use crate::AppState;
use axum::body::Body;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_core::api::{
    ApplyRequest, BuildStart, Health, IssuerRequest, RollbackRequest, ScaleRequest, ServiceRequest,
    TokenRequest,
};
use berth_core::ErrorCode;
use serde::Deserialize;

type Result<T> = std::result::Result<T, ApiError>;

pub(crate) async fn health(State(s): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        version: s.version.clone(),
        instance: s.cp.instance().into(),
        docker_api: s.cp.docker().api_version().into(),
    })
}

pub(crate) async fn openapi() -> Response {
    (
        [(http::header::CONTENT_TYPE, "application/json")],
        crate::openapi::document().to_string(),
    )
        .into_response()
}

pub(crate) async fn list_apps(State(s): State<AppState>) -> Result<Response> {
    Ok(Json(s.cp.apps()?).into_response())
}

pub(crate) async fn app_status(
    State(s): State<AppState>,
    Path(app): Path<String>,
) -> Result<Response> {
    Ok(Json(s.cp.status(&app)?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RemoveQuery {
    #[serde(default)]
    volumes: bool,
}

pub(crate) async fn remove_app(
    State(s): State<AppState>,
    Path(app): Path<String>,
    q: std::result::Result<Query<RemoveQuery>, QueryRejection>,
) -> Result<Response> {
    let Query(q) = q?;
    s.cp.remove(&app, q.volumes)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"app": app, "removing": true, "volumes": q.volumes})),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApplyQuery {
    /// Answer with NDJSON progress (build output), then the result.
    #[serde(default)]
    progress: bool,
}

/// Build output lines buffered for a slow client; past this, lines are dropped from the
/// progress stream (never from the server log) rather than slowing the build.
const PROGRESS_BUFFER: usize = 4096;

pub(crate) async fn apply(
    State(s): State<AppState>,
    Path(app): Path<String>,
    q: std::result::Result<Query<ApplyQuery>, QueryRejection>,
    axum::Extension(request_id): axum::Extension<crate::RequestId>,
    body: std::result::Result<Json<ApplyRequest>, JsonRejection>,
) -> Result<Response> {
    let Query(q) = q?;
    let Json(req) = body?;
    if q.progress {
        return Ok(apply_with_progress(s, app, req, request_id.0));
    }
    let created = s.cp.apply(&app, req).await?;
    let status = if created.changed {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(created)).into_response())
}

/// `?progress=true`: 200 with `application/x-ndjson`: `{"build": {"service", "line"}}` per line of
/// build output, then one `{"result": RevisionCreated}` or `{"error": {code, message,
/// request_id}}`. The apply runs on its own task, which ends with it, so a client that goes away
/// does not cut a build and its commit in half.
fn apply_with_progress(
    s: AppState,
    app: String,
    req: ApplyRequest,
    request_id: String,
) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(PROGRESS_BUFFER);
    tokio::spawn(async move {
        let progress = |service: &str, line: &str| {
            let msg = serde_json::json!({"build": {"service": service, "line": line}});
            let _ = tx.try_send(msg.to_string());
        };
        let last = match s.cp.apply_with_progress(&app, req, &progress).await {
            Ok(created) => serde_json::json!({ "result": created }),
            Err(e) => {
                let e = ApiError::from(e);
                serde_json::json!({ "error": e.code.body(e.message, &request_id) })
            }
        };
        let _ = tx.send(last.to_string()).await;
    });
    let lines = futures_util::stream::unfold(rx, |mut rx| async move {
        let line = rx.recv().await?;
        Some((Ok::<_, std::convert::Infallible>(format!("{line}\n")), rx))
    });
    (
        [(http::header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response()
}

/// `POST /api/v1/contexts`: a build context tar, streamed to the server's disk.
pub(crate) async fn upload_context(State(s): State<AppState>, body: Body) -> Result<Response> {
    let uploaded = s.cp.upload_context(body.into_data_stream()).await?;
    Ok((StatusCode::CREATED, Json(uploaded)).into_response())
}

pub(crate) async fn scale(
    State(s): State<AppState>,
    Path(app): Path<String>,
    body: std::result::Result<Json<ScaleRequest>, JsonRejection>,
) -> Result<Response> {
    let Json(req) = body?;
    Ok(Json(s.cp.scale(&app, &req)?).into_response())
}

pub(crate) async fn rollback(
    State(s): State<AppState>,
    Path(app): Path<String>,
    body: std::result::Result<Json<RollbackRequest>, JsonRejection>,
) -> Result<Response> {
    let Json(req) = body?;
    Ok(Json(s.cp.rollback(&app, &req)?).into_response())
}

pub(crate) async fn history(
    State(s): State<AppState>,
    Path(app): Path<String>,
) -> Result<Response> {
    Ok(Json(s.cp.history(&app)?).into_response())
}

pub(crate) async fn ps(State(s): State<AppState>, Path(app): Path<String>) -> Result<Response> {
    Ok(Json(s.cp.ps(&app).await?).into_response())
}

pub(crate) async fn instances(
    State(s): State<AppState>,
    Path((app, service)): Path<(String, String)>,
) -> Result<Response> {
    Ok(Json(s.cp.instances(&app, &service).await?).into_response())
}

pub(crate) async fn routes(State(s): State<AppState>) -> Response {
    let mut table = s.cp.routing_table().as_ref().clone();
    for i in &mut table.issuers {
        if i.hs256_secret.is_some() {
            i.hs256_secret = Some("(redacted)".into());
        }
    }
    Json(table).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TableQuery {
    #[serde(default)]
    watch: bool,
}

/// The full table (with issuer secrets: the API is loopback-only) for a separate gateway.
/// With `watch`, an NDJSON stream: the current table at once, then one line per change, and the
/// current table again every 10 s so a gateway notices a dead connection.
pub(crate) async fn gateway_table(
    State(s): State<AppState>,
    q: std::result::Result<Query<TableQuery>, QueryRejection>,
) -> Result<Response> {
    let Query(q) = q?;
    if !q.watch {
        return Ok(Json(s.cp.routing_table().as_ref().clone()).into_response());
    }
    // Never hand a gateway a table emptier than reality (right after a control-plane restart).
    while !s.cp.synced() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let rx = s.cp.subscribe_table();
    let stream = futures_util::stream::unfold((rx, true), |(mut rx, first)| async move {
        if !first {
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
                () = tokio::time::sleep(std::time::Duration::from_secs(10)) => {}
            }
        }
        let table = rx.borrow_and_update().clone();
        let mut line = serde_json::to_vec(table.as_ref()).unwrap_or_default();
        line.push(b'\n');
        Some((
            Ok::<_, std::io::Error>(bytes::Bytes::from(line)),
            (rx, false),
        ))
    });
    Ok((
        [(http::header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogsQuery {
    #[serde(default)]
    follow: bool,
    tail: Option<u64>,
    #[serde(default)]
    timestamps: bool,
}

/// Logs of every current replica of a service, as text; with several replicas each line is
/// prefixed with `slot | `. `follow` streams until the client goes away.
pub(crate) async fn logs(
    State(s): State<AppState>,
    Path((app, service)): Path<(String, String)>,
    q: std::result::Result<Query<LogsQuery>, QueryRejection>,
) -> Result<Response> {
    use futures_util::StreamExt;
    let Query(q) = q?;
    let targets = s.cp.log_targets(&app, &service).await?;
    if targets.is_empty() {
        return Err(ApiError::new(
            ErrorCode::ServiceNotFound,
            format!("service {service:?} has no replicas"),
        ));
    }
    let prefix = targets.len() > 1;
    let mut streams = Vec::new();
    for (slot, id) in targets {
        let st =
            s.cp.docker()
                .logs(&id, q.follow, q.tail, q.timestamps)
                .await
                .map_err(|e| ApiError::new(ErrorCode::DockerUnavailable, e.to_string()))?;
        let label = format!("{service}.{slot} | ");
        let lines = line_prefixed(
            st.map(|c| c.map(|c| c.data)).boxed(),
            if prefix { label } else { String::new() },
        );
        streams.push(lines.boxed());
    }
    let merged = futures_util::stream::select_all(streams);
    Ok((
        [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(merged),
    )
        .into_response())
}

type ChunkStream = futures_util::stream::BoxStream<
    'static,
    std::result::Result<bytes::Bytes, berth_docker::DockerError>,
>;

/// Split a byte stream into whole lines, each prefixed.
fn line_prefixed(
    inner: ChunkStream,
    prefix: String,
) -> impl futures_util::Stream<Item = std::result::Result<bytes::Bytes, std::io::Error>> + Send {
    use futures_util::StreamExt;
    futures_util::stream::unfold(
        (inner, Vec::<u8>::new(), prefix, false),
        |(mut inner, mut buf, prefix, done)| async move {
            if done {
                return None;
            }
            loop {
                if let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    let mut out = prefix.clone().into_bytes();
                    out.extend_from_slice(&line);
                    return Some((Ok(bytes::Bytes::from(out)), (inner, buf, prefix, false)));
                }
                match inner.next().await {
                    Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                    Some(Err(e)) => {
                        return Some((
                            Err(std::io::Error::other(e.to_string())),
                            (inner, buf, prefix, true),
                        ));
                    }
                    None => {
                        if buf.is_empty() {
                            return None;
                        }
                        let mut out = prefix.clone().into_bytes();
                        out.append(&mut buf);
                        out.push(b'\n');
                        return Some((Ok(bytes::Bytes::from(out)), (inner, buf, prefix, true)));
                    }
                }
            }
        },
    )
}

pub(crate) async fn jwks(State(s): State<AppState>) -> Result<Response> {
    Ok((
        [(http::header::CONTENT_TYPE, "application/json")],
        s.cp.jwks()?,
    )
        .into_response())
}

pub(crate) async fn issue_token(
    State(s): State<AppState>,
    body: std::result::Result<Json<TokenRequest>, JsonRejection>,
) -> Result<Response> {
    let Json(req) = body?;
    Ok((StatusCode::CREATED, Json(s.cp.issue_token(&req)?)).into_response())
}

pub(crate) async fn rotate_key(State(s): State<AppState>) -> Result<Response> {
    Ok(Json(serde_json::json!({"kid": s.cp.rotate_key()?})).into_response())
}

pub(crate) async fn list_issuers(State(s): State<AppState>) -> Result<Response> {
    Ok(Json(s.cp.issuers()?).into_response())
}

pub(crate) async fn add_issuer(
    State(s): State<AppState>,
    body: std::result::Result<Json<IssuerRequest>, JsonRejection>,
) -> Result<Response> {
    let Json(req) = body?;
    Ok((StatusCode::CREATED, Json(s.cp.add_issuer(req).await?)).into_response())
}

pub(crate) async fn remove_issuer(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response> {
    s.cp.remove_issuer(&name)?;
    Ok(Json(serde_json::json!({"removed": name})).into_response())
}

/// Prometheus metrics of the in-process gateway.
pub(crate) async fn metrics(State(s): State<AppState>) -> Result<Response> {
    let Some(m) = &s.metrics else {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "the gateway runs in another process; scrape it there",
        ));
    };
    Ok((
        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        m(),
    )
        .into_response())
}

pub(crate) async fn create_service(
    State(s): State<AppState>,
    body: std::result::Result<Json<ServiceRequest>, JsonRejection>,
) -> Result<Response> {
    let Json(req) = body?;
    Ok((StatusCode::CREATED, Json(s.cp.create_service(&req)?)).into_response())
}

pub(crate) async fn list_services(State(s): State<AppState>) -> Result<Response> {
    Ok(Json(s.cp.services()?).into_response())
}

pub(crate) async fn start_build(
    State(s): State<AppState>,
    Path(name): Path<String>,
    body: std::result::Result<Json<BuildStart>, JsonRejection>,
) -> Result<Response> {
    let Json(req) = body?;
    Ok((StatusCode::ACCEPTED, Json(s.cp.start_build(&name, &req)?)).into_response())
}

pub(crate) async fn versions(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response> {
    Ok(Json(s.cp.versions(&name)?).into_response())
}

/// The secret's value is the raw request body (never logged).
pub(crate) async fn set_secret(
    State(s): State<AppState>,
    Path((name, secret)): Path<(String, String)>,
    body: bytes::Bytes,
) -> Result<Response> {
    let value = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::new(ErrorCode::InvalidArgument, "the secret must be UTF-8 text"))?;
    s.cp.set_build_secret(&name, &secret, value.trim_end_matches(['\n', '\r']))?;
    Ok(Json(serde_json::json!({"service": name, "secret": secret, "set": true})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BuildsQuery {
    #[serde(default, deserialize_with = "non_empty")]
    service: Option<String>,
}

/// `?service=` with no name is a mistake (an unset shell variable), not "every service".
fn non_empty<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    if s.is_empty() {
        return Err(serde::de::Error::custom(
            "`service` names a service; leave it out to list every service",
        ));
    }
    Ok(Some(s))
}

pub(crate) async fn list_builds(
    State(s): State<AppState>,
    q: std::result::Result<Query<BuildsQuery>, QueryRejection>,
) -> Result<Response> {
    let Query(q) = q?;
    Ok(Json(s.cp.builds_list(q.service.as_deref())?).into_response())
}

pub(crate) async fn get_build(State(s): State<AppState>, Path(id): Path<u64>) -> Result<Response> {
    Ok(Json(s.cp.build(id)?).into_response())
}

pub(crate) async fn cancel_build(
    State(s): State<AppState>,
    Path(id): Path<u64>,
) -> Result<Response> {
    s.cp.cancel_build(id)?;
    Ok(Json(serde_json::json!({"id": id, "cancelling": true})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BuildLogsQuery {
    #[serde(default)]
    follow: bool,
}

/// A build's log as text, or as server-sent events (`Accept: text/event-stream`, one `data:`
/// event per line, then an `end` event).
pub(crate) async fn build_logs(
    State(s): State<AppState>,
    Path(id): Path<u64>,
    headers: http::HeaderMap,
    q: std::result::Result<Query<BuildLogsQuery>, QueryRejection>,
) -> Result<Response> {
    use futures_util::StreamExt;
    let Query(q) = q?;
    let lines = s.cp.build_logs(id, q.follow)?;
    let sse = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if sse {
        let events = lines
            .map(|l| {
                let mut ev = String::new();
                for part in l.trim_end_matches('\n').split('\n') {
                    ev.push_str("data: ");
                    ev.push_str(part);
                    ev.push('\n');
                }
                ev.push('\n');
                Ok::<_, std::io::Error>(bytes::Bytes::from(ev))
            })
            .chain(futures_util::stream::once(async {
                Ok(bytes::Bytes::from_static(b"event: end\ndata: \n\n"))
            }));
        return Ok((
            [(http::header::CONTENT_TYPE, "text/event-stream")],
            Body::from_stream(events),
        )
            .into_response());
    }
    let body = lines.map(|l| Ok::<_, std::io::Error>(bytes::Bytes::from(l)));
    Ok((
        [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(body),
    )
        .into_response())
}

/// The secret is the raw request body (never logged).
pub(crate) async fn set_webhook_secret(
    State(s): State<AppState>,
    Path(name): Path<String>,
    body: bytes::Bytes,
) -> Result<Response> {
    let value = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::new(ErrorCode::InvalidArgument, "the secret must be UTF-8 text"))?;
    s.cp.set_webhook_secret(&name, value.trim_end_matches(['\n', '\r']))?;
    Ok(Json(serde_json::json!({"service": name, "webhook_secret": "set"})).into_response())
}

/// A push webhook (GitHub, Gitea: HMAC-SHA256 signature; GitLab: token).
pub(crate) async fn webhook(
    State(s): State<AppState>,
    Path(name): Path<String>,
    headers: http::HeaderMap,
    body: bytes::Bytes,
) -> Result<Response> {
    use berth_controlplane::webhooks::{HookError, HookOutcome};
    let header = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    match s.cp.webhook(&name, &header, &body) {
        Ok(HookOutcome::Build(b)) => Ok((StatusCode::ACCEPTED, Json(b)).into_response()),
        Ok(HookOutcome::Ignored(why)) => {
            Ok(Json(serde_json::json!({"ignored": why})).into_response())
        }
        Err(HookError::Unauthorized(msg)) => Err(ApiError::new(ErrorCode::Unauthorized, msg)),
        Err(HookError::Cp(e)) => Err(e.into()),
    }
}

pub(crate) async fn list_images(
    State(s): State<AppState>,
    q: std::result::Result<Query<BuildsQuery>, QueryRejection>,
) -> Result<Response> {
    let Query(q) = q?;
    Ok(Json(s.cp.images(q.service.as_deref()).await?).into_response())
}

pub(crate) async fn archive_image(
    State(s): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response> {
    let tar = s.cp.archive_image(&name, &version).await?;
    Ok(([(http::header::CONTENT_TYPE, "application/x-tar")], tar).into_response())
}

/// The archive is streamed to the engine as it arrives (`guard::RESTORE_LIMIT`).
pub(crate) async fn restore_image(State(s): State<AppState>, body: Body) -> Result<Response> {
    let report =
        s.cp.restore_image_stream(body.into_data_stream(), crate::guard::RESTORE_LIMIT)
            .await?;
    Ok(Json(serde_json::json!({"restored": report})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventsQuery {
    /// Only events with a larger id (what a follower saw last).
    #[serde(default)]
    after: u64,
    /// At most this many (the newest), default 200.
    limit: Option<usize>,
}

pub(crate) async fn list_events(
    State(s): State<AppState>,
    q: std::result::Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Response> {
    let Query(q) = q?;
    let limit = q
        .limit
        .unwrap_or(200)
        .min(berth_controlplane::events::CAPACITY);
    Ok(Json(s.cp.events(q.after, limit)).into_response())
}
