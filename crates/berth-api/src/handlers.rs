//! The handlers: parse, call the control plane, answer. No logic beyond translation.

use crate::error::ApiError;
use crate::openapi::Tar;
use crate::team::{InTeam, Team};
use crate::AppState;
use axum::body::Body;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_core::api::{
    AppStatus, AppSummary, ApplyRequest, BuildStart, BuildView, ContextUploaded, EventView, Health,
    ImageView, Instance, IssuerRequest, IssuerView, NodeView, RevisionCreated, RevisionView,
    RollbackRequest, ScaleRequest, ServiceRemoved, ServiceRequest, ServiceView, TokenIssued,
    TokenRequest, VersionView,
};
use berth_core::{ErrorBody, ErrorCode, RoutingTable};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

type Result<T> = std::result::Result<T, ApiError>;

#[utoipa::path(
    get,
    path = "/api/v1/health",
    operation_id = "health",
    tag = "system",
    summary = "Berth is up",
    responses(
        (status = 200, description = "Berth is up", body = Health)
    )
)]
pub(crate) async fn health(State(s): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        version: s.version.clone(),
        instance: s.cp.instance().into(),
        docker_api: s.cp.docker().api_version().into(),
    })
}

#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    operation_id = "openapi",
    tag = "system",
    summary = "This document (OpenAPI 3.1)",
    responses(
        (status = 200, description = "The OpenAPI document", body = Object)
    )
)]
pub(crate) async fn openapi() -> Response {
    (
        [(http::header::CONTENT_TYPE, "application/json")],
        crate::openapi::json(),
    )
        .into_response()
}

#[utoipa::path(
    get,
    path = "/api/v1/apps",
    operation_id = "listApps",
    tag = "apps",
    summary = "Every application with its revision and health (`berth apps`)",
    responses(
        (status = 200, description = "The applications", body = Vec<AppSummary>)
    )
)]
pub(crate) async fn list_apps(State(s): State<AppState>, team: Team) -> Result<Response> {
    let apps: Vec<AppSummary> =
        s.cp.apps()?
            .into_iter()
            .filter_map(|mut a| {
                a.name = team.app_local(&a.name)?.to_string();
                a.problem = a.problem.map(|p| team.text(&p));
                Some(a)
            })
            .collect();
    Ok(Json(apps).into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/apps/{app}",
    operation_id = "appStatus",
    tag = "apps",
    summary = "An application's rollout progress per service",
    params(("app" = String, Path, description = "Application name")),
    responses(
        (status = 200, description = "Progress", body = AppStatus),
        (status = 404, description = "`app_not_found`", body = ErrorBody)
    )
)]
pub(crate) async fn app_status(
    State(s): State<AppState>,
    team: Team,
    Path(app): Path<String>,
) -> Result<Response> {
    let mut status: AppStatus = s.cp.status(&team.app(&app)?).in_team(&team)?;
    status.name = app;
    status.message = team.text(&status.message);
    for svc in &mut status.services {
        svc.problem = svc.problem.as_deref().map(|p| team.text(p));
    }
    Ok(Json(status).into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct RemoveQuery {
    /// The team (docs/teams.md); read by the access layer.
    #[serde(default)]
    #[allow(dead_code)]
    team: Option<String>,
    #[serde(default)]
    volumes: bool,
}

#[utoipa::path(
    delete,
    path = "/api/v1/apps/{app}",
    operation_id = "removeApp",
    tag = "apps",
    summary = "Remove an application (`berth rm`; `?volumes=true` removes named volumes)",
    params(("app" = String, Path, description = "Application name"), RemoveQuery),
    responses(
        (status = 202, description = "Removal started", body = RemoveAccepted),
        (status = 404, description = "`app_not_found`", body = ErrorBody),
        (status = 409, description = "`in_use`: the application serves a market entry other applications subscribe to; the message names them", body = ErrorBody)
    )
)]
pub(crate) async fn remove_app(
    State(s): State<AppState>,
    team: Team,
    Path(app): Path<String>,
    q: std::result::Result<Query<RemoveQuery>, QueryRejection>,
) -> Result<Response> {
    let Query(q) = q?;
    s.cp.remove(&team.app(&app)?, q.volumes).in_team(&team)?;
    let answer = RemoveAccepted {
        app,
        removing: true,
        volumes: q.volumes,
    };
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApplyQuery {
    /// The team (docs/teams.md); read by the access layer.
    #[serde(default)]
    #[allow(dead_code)]
    team: Option<String>,
    /// Answer with NDJSON progress (build output), then the result.
    #[serde(default)]
    progress: bool,
}

/// Build output lines buffered for a slow client; past this, lines are dropped from the
/// progress stream (never from the server log) rather than slowing the build.
const PROGRESS_BUFFER: usize = 4096;

#[utoipa::path(
    post,
    path = "/api/v1/apps/{app}/apply",
    operation_id = "apply",
    tag = "apps",
    summary = "Deploy a Compose bundle as a new revision (`berth apply`)",
    params(("app" = String, Path, description = "Application name"), ApplyQuery),
    request_body = ApplyRequest,
    responses(
        (status = 403, description = "`admission_denied`: keys of the project need admission grants the application's team lacks, each named (docs/teams.md#admission); `image_denied`: the project names another team's `berth/` image (docs/teams.md#images); or `forbidden`, `password_change_required`, `forbidden_origin` as on every call", body = ErrorBody),
        (status = 201, description = "A new revision was committed", body = RevisionCreated),
        (status = 200, description = "Nothing changed (`changed: false`); with `?progress=true`, NDJSON lines `{\"build\": {service, line}}` then one `{\"result\": RevisionCreated}` or `{\"error\": Error}`", content((RevisionCreated = "application/json"), (String = "application/x-ndjson"))),
        (status = 409, description = "`route_conflict`, `port_conflict`", body = ErrorBody),
        (status = 413, description = "`payload_too_large` (a build context)", body = ErrorBody),
        (status = 422, description = "`invalid_compose`, `unsupported_key`, `image_missing`, `build_failed`", body = ErrorBody),
        (status = 503, description = "`docker_unavailable`", body = ErrorBody)
    )
)]
pub(crate) async fn apply(
    State(s): State<AppState>,
    team: Team,
    Path(app): Path<String>,
    q: std::result::Result<Query<ApplyQuery>, QueryRejection>,
    axum::Extension(request_id): axum::Extension<crate::RequestId>,
    body: std::result::Result<Json<ApplyRequest>, JsonRejection>,
) -> Result<Response> {
    let Query(q) = q?;
    let Json(req) = body?;
    // The team's name first, for an error that names what the user typed.
    if !berth_controlplane::spec::valid_app_name(&app) {
        return Err(ApiError::new(
            ErrorCode::InvalidArgument,
            format!("invalid application name {app:?}: use 1-40 lowercase letters, digits and '-'"),
        ));
    }
    team.app(&app)?;
    if q.progress {
        return Ok(apply_with_progress(s, team, app, req, request_id.0));
    }
    let mut created = s.cp.apply(&team.app(&app)?, req).await.in_team(&team)?;
    created.app = app;
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
    team: Team,
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
        let global = team.app_global(&app);
        let last = match s.cp.apply_with_progress(&global, req, &progress).await {
            Ok(mut created) => {
                created.app = app;
                serde_json::json!({ "result": created })
            }
            Err(e) => {
                let e = team.localize(e);
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

#[utoipa::path(
    post,
    path = "/api/v1/contexts",
    operation_id = "uploadContext",
    tag = "apps",
    summary = "Upload a build context (a tar, at most 512 MiB) for a Compose service with `build:`; name its id in the apply's `build_contexts`",
    request_body(content = inline(Tar), content_type = "application/x-tar"),
    responses(
        (status = 201, description = "Stored", body = ContextUploaded),
        (status = 413, description = "`payload_too_large`", body = ErrorBody)
    )
)]
/// `POST /api/v1/contexts`: a build context tar, streamed to the server's disk.
pub(crate) async fn upload_context(
    State(s): State<AppState>,
    _team: Team,
    body: Body,
) -> Result<Response> {
    let uploaded = s.cp.upload_context(body.into_data_stream()).await?;
    Ok((StatusCode::CREATED, Json(uploaded)).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/apps/{app}/scale",
    operation_id = "scale",
    tag = "apps",
    summary = "Set replica counts (`berth scale`)",
    params(("app" = String, Path, description = "Application name")),
    request_body = ScaleRequest,
    responses(
        (status = 403, description = "`admission_denied`: keys of the project need admission grants the application's team lacks, each named (docs/teams.md#admission); or `forbidden`, `password_change_required`, `forbidden_origin` as on every call", body = ErrorBody),
        (status = 200, description = "The revision committed", body = RevisionCreated),
        (status = 404, description = "`app_not_found`, `service_not_found`", body = ErrorBody),
        (status = 409, description = "`route_conflict`, `port_conflict`", body = ErrorBody),
        (status = 422, description = "`invalid_compose`", body = ErrorBody)
    )
)]
pub(crate) async fn scale(
    State(s): State<AppState>,
    team: Team,
    Path(app): Path<String>,
    body: std::result::Result<Json<ScaleRequest>, JsonRejection>,
) -> Result<Response> {
    let Json(req) = body?;
    let mut created = s.cp.scale(&team.app(&app)?, &req).in_team(&team)?;
    created.app = app;
    Ok(Json(created).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/apps/{app}/rollback",
    operation_id = "rollback",
    tag = "apps",
    summary = "Roll back to a revision (`berth rollback`)",
    params(("app" = String, Path, description = "Application name")),
    request_body = RollbackRequest,
    responses(
        (status = 403, description = "`admission_denied`: keys of the project need admission grants the application's team lacks, each named (docs/teams.md#admission); or `forbidden`, `password_change_required`, `forbidden_origin` as on every call", body = ErrorBody),
        (status = 200, description = "The revision committed", body = RevisionCreated),
        (status = 404, description = "`app_not_found`, `revision_not_found`", body = ErrorBody),
        (status = 409, description = "`route_conflict`, `port_conflict`", body = ErrorBody),
        (status = 422, description = "`invalid_compose`, `image_missing`", body = ErrorBody)
    )
)]
pub(crate) async fn rollback(
    State(s): State<AppState>,
    team: Team,
    Path(app): Path<String>,
    body: std::result::Result<Json<RollbackRequest>, JsonRejection>,
) -> Result<Response> {
    let Json(req) = body?;
    let mut created = s.cp.rollback(&team.app(&app)?, &req).in_team(&team)?;
    created.app = app;
    Ok(Json(created).into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/apps/{app}/revisions",
    operation_id = "history",
    tag = "apps",
    summary = "Revisions, newest first (`berth history`)",
    params(("app" = String, Path, description = "Application name")),
    responses(
        (status = 200, description = "Revisions", body = Vec<RevisionView>),
        (status = 404, description = "`app_not_found`", body = ErrorBody)
    )
)]
pub(crate) async fn history(
    State(s): State<AppState>,
    team: Team,
    Path(app): Path<String>,
) -> Result<Response> {
    Ok(Json(s.cp.history(&team.app(&app)?).in_team(&team)?).into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/apps/{app}/ps",
    operation_id = "ps",
    tag = "apps",
    summary = "Every replica (`berth ps`)",
    params(("app" = String, Path, description = "Application name")),
    responses(
        (status = 200, description = "Replicas", body = Vec<Instance>),
        (status = 404, description = "`app_not_found`", body = ErrorBody),
        (status = 503, description = "`docker_unavailable`", body = ErrorBody)
    )
)]
pub(crate) async fn ps(
    State(s): State<AppState>,
    team: Team,
    Path(app): Path<String>,
) -> Result<Response> {
    Ok(Json(s.cp.ps(&team.app(&app)?).await.in_team(&team)?).into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/apps/{app}/services/{service}/instances",
    operation_id = "instances",
    tag = "apps",
    summary = "Discovery: each replica's address, health and revision",
    params(("app" = String, Path, description = "Application name"), ("service" = String, Path, description = "Compose service name")),
    responses(
        (status = 200, description = "Replicas of the service", body = Vec<Instance>),
        (status = 404, description = "`app_not_found`, `service_not_found`", body = ErrorBody),
        (status = 503, description = "`docker_unavailable`", body = ErrorBody)
    )
)]
pub(crate) async fn instances(
    State(s): State<AppState>,
    team: Team,
    Path((app, service)): Path<(String, String)>,
) -> Result<Response> {
    let list = s.cp.instances(&team.app(&app)?, &service).await;
    Ok(Json(list.in_team(&team)?).into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/routes",
    operation_id = "routes",
    tag = "gateway",
    summary = "The routing table the gateway serves (issuer secrets redacted)",
    responses(
        (status = 200, description = "The table", body = RoutingTable)
    )
)]
/// The team's part of the table, in the team's names: its applications' routes and ports, and
/// the issuers its routes may name (Berth's own and the team's).
pub(crate) async fn routes(State(s): State<AppState>, team: Team) -> Response {
    let mut table = s.cp.routing_table().as_ref().clone();
    table.routes.retain(|r| team.owns(&r.app));
    table.ports.retain(|p| team.owns(&p.app));
    let berth = berth_controlplane::policy::BERTH_ISSUER;
    table
        .issuers
        .retain(|i| i.name == berth || team.owns(&i.name));
    for r in &mut table.routes {
        r.app = team.show(&r.app);
        if let Some(auth) = &mut r.policy.auth {
            for i in &mut auth.issuers {
                *i = team.show(i);
            }
        }
    }
    for p in &mut table.ports {
        p.app = team.show(&p.app);
    }
    for i in &mut table.issuers {
        i.name = team.show(&i.name);
        if i.hs256_secret.is_some() {
            i.hs256_secret = Some("(redacted)".into());
        }
    }
    Json(table).into_response()
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct TableQuery {
    #[serde(default)]
    watch: bool,
}

#[utoipa::path(
    get,
    path = "/api/v1/nodes",
    operation_id = "listNodes",
    tag = "system",
    summary = "The Swarm's nodes: state, availability, role, tasks (`berth nodes`; docs/swarm.md)",
    responses(
        (status = 200, description = "Nodes, by hostname", body = Vec<NodeView>),
        (status = 409, description = "`not_a_swarm_manager`: the server's engine is not a Swarm manager", body = ErrorBody),
        (status = 503, description = "`docker_unavailable`", body = ErrorBody)
    )
)]
/// The nodes of the Swarm the server's engine manages (administrators: a view of every team's
/// tasks).
pub(crate) async fn list_nodes(State(s): State<AppState>) -> Result<Json<Vec<NodeView>>> {
    Ok(Json(s.cp.nodes().await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/gateway/table",
    operation_id = "gatewayTable",
    tag = "gateway",
    summary = "The full routing table, for a gateway in another process; `?watch=true`: NDJSON, one table per change and every 10 s",
    params(TableQuery),
    responses(
        (status = 200, description = "The table, or (watch) a stream of tables", content((RoutingTable = "application/json"), (String = "application/x-ndjson")))
    )
)]
/// The full table (with issuer secrets: administrators only) for a separate gateway.
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

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogsQuery {
    /// The team (docs/teams.md); read by the access layer.
    #[serde(default)]
    #[allow(dead_code)]
    team: Option<String>,
    #[serde(default)]
    follow: bool,
    tail: Option<u64>,
    #[serde(default)]
    timestamps: bool,
}

#[utoipa::path(
    get,
    path = "/api/v1/apps/{app}/services/{service}/logs",
    operation_id = "logs",
    tag = "apps",
    summary = "Logs of the service's replicas (`berth logs`), streamed; with several replicas each line starts with `service.slot | `",
    params(("app" = String, Path, description = "Application name"), ("service" = String, Path, description = "Compose service name"), LogsQuery),
    responses(
        (status = 200, description = "Log lines", content((String = "text/plain"))),
        (status = 404, description = "`app_not_found`, `service_not_found`", body = ErrorBody),
        (status = 503, description = "`docker_unavailable`: the engine is unreachable or cannot read a replica's log (on Swarm, a task's node)", body = ErrorBody)
    )
)]
/// Logs of every current replica of a service, as text; with several replicas each line is
/// prefixed with `slot | `. `follow` streams until the client goes away.
pub(crate) async fn logs(
    State(s): State<AppState>,
    team: Team,
    Path((app, service)): Path<(String, String)>,
    q: std::result::Result<Query<LogsQuery>, QueryRejection>,
) -> Result<Response> {
    use futures_util::StreamExt;
    let Query(q) = q?;
    let targets =
        s.cp.log_targets(&team.app(&app)?, &service)
            .await
            .in_team(&team)?;
    if targets.is_empty() {
        return Err(ApiError::new(
            ErrorCode::ServiceNotFound,
            format!("service {service:?} has no replicas"),
        ));
    }
    let prefix = targets.len() > 1;
    let opened = futures_util::future::join_all(
        targets
            .iter()
            .map(|t| open_log(&s, t, q.follow, q.tail, q.timestamps)),
    )
    .await;
    let mut streams = Vec::new();
    for (t, st) in targets.iter().zip(opened) {
        let label = format!("{service}.{} | ", t.slot);
        let lines = line_prefixed(
            st?.map(|c| c.map(|c| c.data)).boxed(),
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

/// How long `logs` with `follow` waits for a log's first piece before it answers 200 (a quiet
/// replica sends nothing until it writes).
const FIRST_PIECE_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// One target's log, its first piece awaited (without `follow`: until it comes or the log
/// ends; with it, [`FIRST_PIECE_WAIT`] at most). A Swarm manager answers a task's log with 200
/// before it asks the task's node, and a failure it then reports (a node that is down) ends
/// the stream with an error at once: taken here, that error is the request's `{code, message}`
/// answer, not an empty 200. One that comes later (or while following) ends the body, and the
/// CLI fails with it.
async fn open_log(
    s: &AppState,
    target: &berth_controlplane::LogTarget,
    follow: bool,
    tail: Option<u64>,
    timestamps: bool,
) -> Result<futures_util::stream::Peekable<LogChunks>> {
    use futures_util::StreamExt;
    let mut st =
        s.cp.open_logs(target, follow, tail, timestamps)
            .await?
            .boxed()
            .peekable();
    let first = std::pin::Pin::new(&mut st).peek();
    let failed = if follow {
        matches!(
            tokio::time::timeout(FIRST_PIECE_WAIT, first).await,
            Ok(Some(Err(_)))
        )
    } else {
        matches!(first.await, Some(Err(_)))
    };
    if failed {
        if let Some(Err(e)) = st.next().await {
            return Err(berth_controlplane::CpError::from(e).into());
        }
    }
    Ok(st)
}

type LogChunks = futures_util::stream::BoxStream<
    'static,
    std::result::Result<berth_docker::LogChunk, berth_docker::DockerError>,
>;

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

#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    operation_id = "jwks",
    tag = "auth",
    summary = "The public keys of Berth's own token issuer (JWKS)",
    responses(
        (status = 200, description = "A JWK Set", body = Object),
        (status = 400, description = "`invalid_argument`: this server has no token issuer", body = ErrorBody)
    )
)]
pub(crate) async fn jwks(State(s): State<AppState>) -> Result<Response> {
    Ok((
        [(http::header::CONTENT_TYPE, "application/json")],
        s.cp.jwks()?,
    )
        .into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/tokens",
    operation_id = "issueToken",
    tag = "auth",
    summary = "Issue a token signed by Berth (`berth token`)",
    request_body = TokenRequest,
    responses(
        (status = 201, description = "The token", body = TokenIssued)
    )
)]
/// The audiences are the team's application names, minted as their global names (docs/teams.md):
/// another team's application answers 404 as one nobody deployed. Team `default` may also name
/// audiences that are no application (a route's `audiences:` may name any), as before teams.
/// `mqtt` (a login to the MQTT broker, docs/messaging.md) is allowed in every team, as it is.
pub(crate) async fn issue_token(
    State(s): State<AppState>,
    team: Team,
    body: std::result::Result<Json<TokenRequest>, JsonRejection>,
) -> Result<Response> {
    let Json(mut req) = body?;
    let apps: Vec<String> =
        s.cp.apps()?
            .into_iter()
            .filter(|a| team.owns(&a.name))
            .map(|a| a.name)
            .collect();
    let default = team.team == berth_core::team::DEFAULT_TEAM;
    for aud in &mut req.audiences {
        // A login to the MQTT broker (docs/messaging.md), in every team, kept as it is.
        if aud == berth_core::policy::MQTT_AUDIENCE {
            continue;
        }
        let global = team.name(aud)?;
        if !(apps.contains(&global) || default) {
            return Err(ApiError::new(
                ErrorCode::AppNotFound,
                format!("application {aud:?} does not exist"),
            ));
        }
        *aud = global;
    }
    let issued = s.cp.issue_token(&team.team, &req).in_team(&team)?;
    Ok((StatusCode::CREATED, Json(issued)).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/keys/rotate",
    operation_id = "rotateKey",
    tag = "auth",
    summary = "Rotate Berth's signing key (the old key stays in the JWKS until its tokens expire)",
    responses(
        (status = 200, description = "The new key id", body = KeyRotated),
        (status = 400, description = "`invalid_argument`: this server has no token issuer", body = ErrorBody)
    )
)]
pub(crate) async fn rotate_key(State(s): State<AppState>) -> Result<Response> {
    Ok(Json(KeyRotated {
        kid: s.cp.rotate_key()?,
    })
    .into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/issuers",
    operation_id = "listIssuers",
    tag = "auth",
    summary = "Accepted token issuers (secrets never shown)",
    responses(
        (status = 200, description = "Issuers", body = Vec<IssuerView>)
    )
)]
/// Berth's own issuer and the team's.
pub(crate) async fn list_issuers(State(s): State<AppState>, team: Team) -> Result<Response> {
    let berth = berth_controlplane::policy::BERTH_ISSUER;
    let list: Vec<IssuerView> =
        s.cp.issuers()?
            .into_iter()
            .filter(|i| {
                (i.kind == "berth" && i.name == berth) || (i.kind != "berth" && team.owns(&i.name))
            })
            .map(|mut i| {
                i.name = team.show(&i.name);
                i
            })
            .collect();
    Ok(Json(list).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/issuers",
    operation_id = "addIssuer",
    tag = "auth",
    summary = "Accept tokens from another issuer",
    request_body = IssuerRequest,
    responses(
        (status = 201, description = "Added", body = IssuerView),
        (status = 409, description = "already exists", body = ErrorBody),
        (status = 503, description = "`docker_unavailable`", body = ErrorBody)
    )
)]
pub(crate) async fn add_issuer(
    State(s): State<AppState>,
    team: Team,
    body: std::result::Result<Json<IssuerRequest>, JsonRejection>,
) -> Result<Response> {
    let Json(mut req) = body?;
    let local = std::mem::take(&mut req.name);
    if local == berth_controlplane::policy::BERTH_ISSUER {
        return Err(ApiError::new(
            ErrorCode::InvalidArgument,
            format!("invalid issuer name {local:?}: `berth` is Berth's own"),
        ));
    }
    req.name = team.name(&local)?;
    let mut view = s.cp.add_issuer(req).await.in_team(&team)?;
    view.name = local;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

#[utoipa::path(
    delete,
    path = "/api/v1/issuers/{name}",
    operation_id = "removeIssuer",
    tag = "auth",
    summary = "Stop accepting an issuer",
    params(("name" = String, Path, description = "Issuer name")),
    responses(
        (status = 200, description = "Removed", body = IssuerRemoved)
    )
)]
pub(crate) async fn remove_issuer(
    State(s): State<AppState>,
    team: Team,
    Path(name): Path<String>,
) -> Result<Response> {
    if name == berth_controlplane::policy::BERTH_ISSUER {
        return Err(ApiError::new(
            ErrorCode::InvalidArgument,
            format!("no issuer named {name:?}"),
        ));
    }
    s.cp.remove_issuer(&team.name(&name)?).in_team(&team)?;
    Ok(Json(IssuerRemoved { removed: name }).into_response())
}

#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "system",
    summary = "Prometheus metrics of the in-process gateway",
    responses(
        (status = 200, description = "Prometheus text format 0.0.4", content((String = "text/plain"))),
        (status = 404, description = "`not_found`: the gateway runs in another process", body = ErrorBody)
    )
)]
/// Prometheus metrics of the in-process gateway.
pub(crate) async fn metrics(State(s): State<AppState>) -> Result<Response> {
    let Some(m) = &s.metrics else {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "the gateway runs in another process; scrape it there",
        ));
    };
    Ok(crate::metrics::answer(m()))
}

#[utoipa::path(
    post,
    path = "/api/v1/services",
    operation_id = "createService",
    tag = "builds",
    summary = "Register a service built from source (Git or Subversion)",
    request_body = ServiceRequest,
    responses(
        (status = 201, description = "Registered", body = ServiceView),
        (status = 409, description = "already exists", body = ErrorBody)
    )
)]
pub(crate) async fn create_service(
    State(s): State<AppState>,
    team: Team,
    body: std::result::Result<Json<ServiceRequest>, JsonRejection>,
) -> Result<Response> {
    let Json(mut req) = body?;
    let local = std::mem::take(&mut req.name);
    req.name = team.name(&local)?;
    let mut view = s.cp.create_service(&req).in_team(&team)?;
    view.name = local;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/services",
    operation_id = "listServices",
    tag = "builds",
    summary = "Services built from source",
    responses(
        (status = 200, description = "Services", body = Vec<ServiceView>)
    )
)]
pub(crate) async fn list_services(State(s): State<AppState>, team: Team) -> Result<Response> {
    let list: Vec<ServiceView> =
        s.cp.services()?
            .into_iter()
            .filter_map(|mut v| {
                v.name = team.local(&v.name)?.to_string();
                Some(v)
            })
            .collect();
    Ok(Json(list).into_response())
}

#[utoipa::path(
    delete,
    path = "/api/v1/services/{name}",
    operation_id = "removeService",
    tag = "builds",
    summary = "Remove a service built from source: its record, builds, versions, build and webhook secrets, and the images no application revision pins (`berth service rm`)",
    description = "Queued and running builds of the service are cancelled first. Refused with 409 `in_use`, naming where, while an application's current revision runs one of its versions or a version is published or deprecated. Images a revision of an application still pins (a rollback target), or a container uses, are kept and listed in `images_kept`.",
    params(("name" = String, Path, description = "Service name (built from source)")),
    responses(
        (status = 200, description = "Removed", body = ServiceRemoved),
        (status = 404, description = "`service_not_found`", body = ErrorBody),
        (status = 409, description = "`in_use`: a version runs in an application, or is published or deprecated, or applications subscribe to the service; the message says where", body = ErrorBody)
    )
)]
pub(crate) async fn remove_service(
    State(s): State<AppState>,
    team: Team,
    Path(name): Path<String>,
) -> Result<Response> {
    let mut removed =
        s.cp.remove_service(&team.name(&name)?)
            .await
            .in_team(&team)?;
    removed.name = name;
    removed.images_kept = removed.images_kept.iter().map(|k| team.text(k)).collect();
    Ok(Json(removed).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/services/{name}/builds",
    operation_id = "startBuild",
    tag = "builds",
    summary = "Queue a build",
    params(("name" = String, Path, description = "Service name (built from source)")),
    request_body = BuildStart,
    responses(
        (status = 202, description = "Queued", body = BuildView)
    )
)]
pub(crate) async fn start_build(
    State(s): State<AppState>,
    team: Team,
    Path(name): Path<String>,
    body: std::result::Result<Json<BuildStart>, JsonRejection>,
) -> Result<Response> {
    let Json(req) = body?;
    let mut build = s.cp.start_build(&team.name(&name)?, &req).in_team(&team)?;
    build.service = name;
    Ok((StatusCode::ACCEPTED, Json(build)).into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/services/{name}/versions",
    operation_id = "versions",
    tag = "builds",
    summary = "A service's versions (successful builds), newest first",
    params(("name" = String, Path, description = "Service name (built from source)")),
    responses(
        (status = 200, description = "Versions", body = Vec<VersionView>)
    )
)]
pub(crate) async fn versions(
    State(s): State<AppState>,
    team: Team,
    Path(name): Path<String>,
) -> Result<Response> {
    let mut list: Vec<VersionView> = s.cp.versions(&team.name(&name)?).in_team(&team)?;
    for v in &mut list {
        v.service.clone_from(&name);
    }
    Ok(Json(list).into_response())
}

#[utoipa::path(
    put,
    path = "/api/v1/services/{name}/secrets/{secret}",
    operation_id = "setSecret",
    tag = "builds",
    summary = "Set a build secret; the body is its value (UTF-8, never logged)",
    params(("name" = String, Path, description = "Service name (built from source)"), ("secret" = String, Path, description = "Secret name")),
    request_body(content = String, content_type = "text/plain"),
    responses(
        (status = 200, description = "Stored", body = SecretSet)
    )
)]
/// The secret's value is the raw request body (never logged).
pub(crate) async fn set_secret(
    State(s): State<AppState>,
    team: Team,
    Path((name, secret)): Path<(String, String)>,
    body: bytes::Bytes,
) -> Result<Response> {
    let value = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::new(ErrorCode::InvalidArgument, "the secret must be UTF-8 text"))?;
    s.cp.set_build_secret(
        &team.name(&name)?,
        &secret,
        value.trim_end_matches(['\n', '\r']),
    )
    .in_team(&team)?;
    Ok(Json(SecretSet {
        service: name,
        secret,
        set: true,
    })
    .into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct BuildsQuery {
    /// The team (docs/teams.md); read by the access layer.
    #[serde(default)]
    #[allow(dead_code)]
    team: Option<String>,
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

#[utoipa::path(
    get,
    path = "/api/v1/builds",
    operation_id = "listBuilds",
    tag = "builds",
    summary = "Builds, newest first (`?service=NAME`)",
    params(BuildsQuery),
    responses(
        (status = 200, description = "Builds", body = Vec<BuildView>)
    )
)]
pub(crate) async fn list_builds(
    State(s): State<AppState>,
    team: Team,
    q: std::result::Result<Query<BuildsQuery>, QueryRejection>,
) -> Result<Response> {
    let Query(q) = q?;
    let service = q.service.as_deref().map(|n| team.name(n)).transpose()?;
    let list: Vec<BuildView> =
        s.cp.builds_list(service.as_deref())
            .in_team(&team)?
            .into_iter()
            .filter_map(|mut b| {
                b.service = team.local(&b.service)?.to_string();
                Some(b)
            })
            .collect();
    Ok(Json(list).into_response())
}

/// Build `id`, if it is of one of the team's services; another team's answers as a build that
/// does not exist.
fn team_build(s: &AppState, team: &Team, id: u64) -> Result<BuildView> {
    let mut b = s.cp.build(id)?;
    match team.local(&b.service) {
        Some(local) => {
            b.service = local.to_string();
            Ok(b)
        }
        None => Err(berth_controlplane::CpError::BuildNotFound(id).into()),
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/builds/{id}",
    operation_id = "getBuild",
    tag = "builds",
    summary = "One build",
    params(("id" = u64, Path, description = "Build id")),
    responses(
        (status = 200, description = "The build", body = BuildView)
    )
)]
pub(crate) async fn get_build(
    State(s): State<AppState>,
    team: Team,
    Path(id): Path<u64>,
) -> Result<Response> {
    Ok(Json(team_build(&s, &team, id)?).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/builds/{id}/cancel",
    operation_id = "cancelBuild",
    tag = "builds",
    summary = "Cancel a queued or running build",
    params(("id" = u64, Path, description = "Build id")),
    responses(
        (status = 200, description = "Cancelling", body = BuildCancelling)
    )
)]
pub(crate) async fn cancel_build(
    State(s): State<AppState>,
    team: Team,
    Path(id): Path<u64>,
) -> Result<Response> {
    team_build(&s, &team, id)?;
    s.cp.cancel_build(id)?;
    Ok(Json(BuildCancelling {
        id,
        cancelling: true,
    })
    .into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct BuildLogsQuery {
    /// The team (docs/teams.md); read by the access layer.
    #[serde(default)]
    #[allow(dead_code)]
    team: Option<String>,
    #[serde(default)]
    follow: bool,
}

#[utoipa::path(
    get,
    path = "/api/v1/builds/{id}/logs",
    operation_id = "buildLogs",
    tag = "builds",
    summary = "A build's log as text, or as server-sent events with `Accept: text/event-stream` (one `data:` event per line, then an `end` event)",
    params(("id" = u64, Path, description = "Build id"), BuildLogsQuery),
    responses(
        (status = 200, description = "The log", content((String = "text/plain"), (String = "text/event-stream")))
    )
)]
/// A build's log as text, or as server-sent events (`Accept: text/event-stream`, one `data:`
/// event per line, then an `end` event).
pub(crate) async fn build_logs(
    State(s): State<AppState>,
    team: Team,
    Path(id): Path<u64>,
    headers: http::HeaderMap,
    q: std::result::Result<Query<BuildLogsQuery>, QueryRejection>,
) -> Result<Response> {
    use futures_util::StreamExt;
    let Query(q) = q?;
    team_build(&s, &team, id)?;
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

#[utoipa::path(
    put,
    path = "/api/v1/services/{name}/webhook-secret",
    operation_id = "setWebhookSecret",
    tag = "builds",
    summary = "Set the service's push-webhook secret; the body is the secret (UTF-8, never logged)",
    params(("name" = String, Path, description = "Service name (built from source)")),
    request_body(content = String, content_type = "text/plain"),
    responses(
        (status = 200, description = "Stored", body = WebhookSecretSet)
    )
)]
/// The secret is the raw request body (never logged).
pub(crate) async fn set_webhook_secret(
    State(s): State<AppState>,
    team: Team,
    Path(name): Path<String>,
    body: bytes::Bytes,
) -> Result<Response> {
    let value = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::new(ErrorCode::InvalidArgument, "the secret must be UTF-8 text"))?;
    s.cp.set_webhook_secret(&team.name(&name)?, value.trim_end_matches(['\n', '\r']))
        .in_team(&team)?;
    Ok(Json(WebhookSecretSet {
        webhook_path: webhook_path(&team.team, &name),
        service: name,
        webhook_secret: "set".into(),
    })
    .into_response())
}

/// Where a service's push webhook is: `/api/v1/hooks/{name}` for team `default`,
/// `/api/v1/hooks/{team}/{name}` for any other.
fn webhook_path(team: &str, name: &str) -> String {
    if team == berth_core::team::DEFAULT_TEAM {
        format!("/api/v1/hooks/{name}")
    } else {
        format!("/api/v1/hooks/{team}/{name}")
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/hooks/{name}",
    operation_id = "webhook",
    tag = "builds",
    summary = "A push webhook (GitHub, Gitea: `X-Hub-Signature-256`; GitLab: `X-Gitlab-Token`)",
    params(("name" = String, Path, description = "Service name (built from source)")),
    request_body(content = Object, content_type = "application/json"),
    responses(
        (status = 202, description = "A build was queued", body = BuildView),
        (status = 200, description = "Verified, nothing to build", body = HookIgnored),
        (status = 401, description = "`unauthorized`: bad or missing signature, no webhook secret, or no such service (all answered alike)", body = ErrorBody)
    )
)]
/// A push webhook (GitHub, Gitea: HMAC-SHA256 signature; GitLab: token).
pub(crate) async fn webhook(
    State(s): State<AppState>,
    Path(name): Path<String>,
    headers: http::HeaderMap,
    body: bytes::Bytes,
) -> Result<Response> {
    hook(&s, berth_core::team::DEFAULT_TEAM, &name, &headers, &body)
}

#[utoipa::path(
    post,
    path = "/api/v1/hooks/{team}/{name}",
    operation_id = "teamWebhook",
    tag = "builds",
    summary = "A push webhook of a service of a team other than `default` (as `POST /api/v1/hooks/{name}`)",
    params(("team" = String, Path, description = "Team name"), ("name" = String, Path, description = "Service name (built from source)")),
    request_body(content = Object, content_type = "application/json"),
    responses(
        (status = 202, description = "A build was queued", body = BuildView),
        (status = 200, description = "Verified, nothing to build", body = HookIgnored),
        (status = 401, description = "`unauthorized`: bad or missing signature, no webhook secret, or no such service (all answered alike)", body = ErrorBody)
    )
)]
/// A push webhook of team `team`'s service `name`.
pub(crate) async fn team_webhook(
    State(s): State<AppState>,
    Path((team, name)): Path<(String, String)>,
    headers: http::HeaderMap,
    body: bytes::Bytes,
) -> Result<Response> {
    hook(&s, &team, &name, &headers, &body)
}

fn hook(
    s: &AppState,
    team: &str,
    name: &str,
    headers: &http::HeaderMap,
    body: &bytes::Bytes,
) -> Result<Response> {
    use berth_controlplane::webhooks::{HookError, HookOutcome};
    // Public: every refusal reads the same (no probing which teams and services exist).
    if !berth_core::team::valid_team_name(team) || name.contains('/') {
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
            berth_controlplane::webhooks::REFUSED,
        ));
    }
    let global = berth_core::team::global_name(team, name);
    let header = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    match s.cp.webhook(&global, &header, body) {
        Ok(HookOutcome::Build(mut b)) => {
            b.service = name.to_string();
            Ok((StatusCode::ACCEPTED, Json(b)).into_response())
        }
        Ok(HookOutcome::Ignored(why)) => Ok(Json(HookIgnored { ignored: why }).into_response()),
        Err(HookError::Unauthorized(msg)) => Err(ApiError::new(ErrorCode::Unauthorized, msg)),
        Err(HookError::Cp(e)) => {
            let e = ApiError::from(e);
            Err(ApiError {
                message: e.message.replace(&format!("\"{team}/"), "\""),
                ..e
            })
        }
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/images",
    operation_id = "listImages",
    tag = "images",
    summary = "Images of services built from source: size, state, deployed, rollback target (`berth images`)",
    params(BuildsQuery),
    responses(
        (status = 200, description = "Images", body = Vec<ImageView>),
        (status = 404, description = "`service_not_found`: `?service=` names no service", body = ErrorBody),
        (status = 503, description = "`docker_unavailable`", body = ErrorBody)
    )
)]
/// The team's images; `tag` stays the Docker tag (`berth/shop/web:v1`), a fact of the engine.
pub(crate) async fn list_images(
    State(s): State<AppState>,
    team: Team,
    q: std::result::Result<Query<BuildsQuery>, QueryRejection>,
) -> Result<Response> {
    let Query(q) = q?;
    let service = q.service.as_deref().map(|n| team.name(n)).transpose()?;
    let list: Vec<ImageView> =
        s.cp.images(service.as_deref())
            .await
            .in_team(&team)?
            .into_iter()
            .filter_map(|mut i| {
                i.service = team.local(&i.service)?.to_string();
                Some(i)
            })
            .collect();
    Ok(Json(list).into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/images/{name}/{version}/archive",
    operation_id = "archiveImage",
    tag = "images",
    summary = "A version's image as a `docker save` tar (`berth image archive`)",
    params(("name" = String, Path, description = "Service name (built from source)"), ("version" = String, Path, description = "Version name")),
    responses(
        (status = 200, description = "The tar", content((Tar = "application/x-tar"))),
        (status = 503, description = "`docker_unavailable`", body = ErrorBody)
    )
)]
pub(crate) async fn archive_image(
    State(s): State<AppState>,
    team: Team,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response> {
    let tar =
        s.cp.archive_image(&team.name(&name)?, &version)
            .await
            .in_team(&team)?;
    Ok(([(http::header::CONTENT_TYPE, "application/x-tar")], tar).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/images/restore",
    operation_id = "restoreImage",
    tag = "images",
    summary = "Load an archived image (body: the tar) and mark its version present (`berth image restore`)",
    request_body(content = inline(Tar), content_type = "application/x-tar"),
    responses(
        (status = 200, description = "Restored", body = ImageRestored),
        (status = 503, description = "`docker_unavailable`", body = ErrorBody)
    )
)]
/// The archive is streamed to the engine as it arrives (`guard::RESTORE_LIMIT`).
/// Only images of the team's services (docs/teams.md).
pub(crate) async fn restore_image(
    State(s): State<AppState>,
    team: Team,
    body: Body,
) -> Result<Response> {
    let report =
        s.cp.restore_image_stream_in(
            &team.team,
            body.into_data_stream(),
            crate::guard::RESTORE_LIMIT,
        )
        .await
        .in_team(&team)?;
    Ok(Json(ImageRestored { restored: report }).into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventsQuery {
    /// The team (docs/teams.md); read by the access layer.
    #[serde(default)]
    #[allow(dead_code)]
    team: Option<String>,
    /// Only events with a larger id (what a follower saw last).
    #[serde(default)]
    after: u64,
    /// At most this many (the newest), default 200.
    limit: Option<usize>,
}

#[utoipa::path(
    get,
    path = "/api/v1/events",
    operation_id = "listEvents",
    tag = "events",
    summary = "Recent platform events, oldest first: image removals, alerts, janitor work (`berth events`)",
    params(EventsQuery),
    responses(
        (status = 200, description = "Events", body = Vec<EventView>)
    )
)]
/// The team's events; platform events (the engine's disk, the build janitor) are the
/// administrator's.
pub(crate) async fn list_events(
    State(s): State<AppState>,
    team: Team,
    q: std::result::Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Response> {
    let Query(q) = q?;
    let limit = q
        .limit
        .unwrap_or(200)
        .min(berth_controlplane::events::CAPACITY);
    let visible = |t: Option<&str>| t.map_or(team.administrator, |t| t == team.team);
    let mut list = s.cp.events(q.after, limit, &visible);
    for e in &mut list {
        // A subject is a global name (a service) or a Docker fact (an image tag).
        if !e.subject.starts_with("berth/") {
            e.subject = team.show(&e.subject);
        }
    }
    Ok(Json(list).into_response())
}

// Small answers that have no type in `berth_core::api` (the CLI reads them as untyped JSON).
// Typed here so that the OpenAPI document describes them.

/// `DELETE /api/v1/apps/{app}`: the removal was committed; the reconciler does the work.
#[derive(Serialize, ToSchema)]
pub(crate) struct RemoveAccepted {
    app: String,
    /// Always true.
    removing: bool,
    /// Named volumes are removed too.
    volumes: bool,
}

/// `POST /api/v1/keys/rotate`.
#[derive(Serialize, ToSchema)]
pub(crate) struct KeyRotated {
    /// The new signing key's id (`kid`).
    kid: String,
}

/// `DELETE /api/v1/issuers/{name}`.
#[derive(Serialize, ToSchema)]
pub(crate) struct IssuerRemoved {
    /// The issuer's name.
    removed: String,
}

/// `PUT /api/v1/services/{name}/secrets/{secret}`.
#[derive(Serialize, ToSchema)]
pub(crate) struct SecretSet {
    service: String,
    secret: String,
    /// Always true.
    set: bool,
}

/// `PUT /api/v1/services/{name}/webhook-secret`.
#[derive(Serialize, ToSchema)]
pub(crate) struct WebhookSecretSet {
    service: String,
    /// Always `set`.
    webhook_secret: String,
    /// The webhook's path on the API (`/api/v1/hooks/{name}`, or `/api/v1/hooks/{team}/{name}`
    /// for a team other than `default`).
    webhook_path: String,
}

/// `POST /api/v1/builds/{id}/cancel`.
#[derive(Serialize, ToSchema)]
pub(crate) struct BuildCancelling {
    id: u64,
    /// Always true.
    cancelling: bool,
}

/// `POST /api/v1/hooks/{name}` when the push needs no build.
#[derive(Serialize, ToSchema)]
pub(crate) struct HookIgnored {
    /// Why (a ping, another branch, a branch deletion).
    ignored: String,
}

/// `POST /api/v1/images/restore`.
#[derive(Serialize, ToSchema)]
pub(crate) struct ImageRestored {
    /// What was loaded, for humans.
    restored: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/admin/backup",
    operation_id = "backup",
    tag = "admin",
    summary = "A consistent backup of the server's state, taken while it runs (`berth admin backup`)",
    description = "A tar holding `backup.json` (format, Berth version, time, instance id, schema \
                   version), `berth.db` (SQLite's online backup: every table) and `keys/` (the \
                   signing keys, with their modes). It holds password hashes and private keys: \
                   keep it like the data directory. `berth server --restore FILE` starts a server \
                   from it. The body must be empty.",
    responses(
        (status = 200, description = "The backup", content((Tar = "application/x-tar")),
            headers(("content-disposition" = String, description = "`attachment; filename=\"berth-backup-<instance>-<time>.tar\"`")))
    )
)]
/// Built in a temporary file by the control plane (never in memory), then streamed.
pub(crate) async fn backup(State(s): State<AppState>) -> Result<Response> {
    let archive = s.cp.backup().await?;
    let name = archive.file_name();
    let size = archive.size;
    let file = tokio::fs::File::from_std(archive.file);
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024));
    Ok((
        [
            (http::header::CONTENT_TYPE, "application/x-tar".to_string()),
            (http::header::CONTENT_LENGTH, size.to_string()),
            (
                http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response())
}
