//! Environments (docs/environments.md): `/api/v1/envs`, team-scoped. An application route
//! names its environment with `?env=` ([`crate::team::EnvParam`]); these calls manage the
//! environments themselves.

use crate::error::ApiError;
use crate::team::{InTeam, Team};
use crate::AppState;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use berth_access::Principal;
use berth_core::api::{
    DeployRequest, EnvExtendRequest, EnvRemoved, EnvRequest, EnvView, PortLeaseView,
    ReleaseRequest, RevisionCreated,
};
use berth_core::ErrorBody;
use serde::Deserialize;
use utoipa::IntoParams;

type Result<T> = std::result::Result<T, ApiError>;

#[utoipa::path(
    get,
    path = "/api/v1/envs",
    operation_id = "listEnvs",
    tag = "envs",
    summary = "The team's environments, `dev` first (`berth env ls`)",
    responses(
        (status = 200, description = "The environments", body = Vec<EnvView>)
    )
)]
pub(crate) async fn list_envs(State(s): State<AppState>, team: Team) -> Result<Response> {
    Ok(Json(s.cp.envs(&team.team).in_team(&team)?).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/envs",
    operation_id = "createEnv",
    tag = "envs",
    summary = "Create an environment (`berth env create`)",
    request_body = EnvRequest,
    responses(
        (status = 201, description = "Created (with `from`: the cloned applications in `apps`)", body = EnvView),
        (status = 400, description = "`invalid_argument`: a bad name, TTL, port block, `cpus` or `memory`", body = ErrorBody),
        (status = 404, description = "`env_not_found`: `from` names no environment of the team", body = ErrorBody),
        (status = 409, description = "`env_exists`; `port_conflict`: the port block overlaps another environment's or holds a port another environment's application leases; `no_free_port`: no block of the server's range is free; a clone's `version_not_approved` (a protected environment) or `route_conflict`", body = ErrorBody),
        (status = 422, description = "`quota_exceeded`: the cloned applications do not fit the quota", body = ErrorBody)
    )
)]
pub(crate) async fn create_env(
    State(s): State<AppState>,
    team: Team,
    Extension(p): Extension<Principal>,
    body: std::result::Result<Json<EnvRequest>, JsonRejection>,
) -> Result<Response> {
    let Json(req) = body?;
    let env = s.cp.create_env(&team.team, &p.user, &req).in_team(&team)?;
    Ok((StatusCode::CREATED, Json(env)).into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/envs/{env}",
    operation_id = "showEnv",
    tag = "envs",
    summary = "An environment and its applications (`berth env show`)",
    params(("env" = String, Path, description = "Environment name")),
    responses(
        (status = 200, description = "The environment", body = EnvView),
        (status = 404, description = "`env_not_found`", body = ErrorBody)
    )
)]
pub(crate) async fn show_env(
    State(s): State<AppState>,
    team: Team,
    Path(env): Path<String>,
) -> Result<Response> {
    Ok(Json(s.cp.env(&team.team, &env).in_team(&team)?).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/envs/{env}/extend",
    operation_id = "extendEnv",
    tag = "envs",
    summary = "Set an environment's expiry to now + TTL (`berth env extend`)",
    params(("env" = String, Path, description = "Environment name")),
    request_body = EnvExtendRequest,
    responses(
        (status = 200, description = "The environment", body = EnvView),
        (status = 400, description = "`invalid_argument`: a bad TTL, or `dev`", body = ErrorBody),
        (status = 404, description = "`env_not_found`", body = ErrorBody)
    )
)]
pub(crate) async fn extend_env(
    State(s): State<AppState>,
    team: Team,
    Path(env): Path<String>,
    body: std::result::Result<Json<EnvExtendRequest>, JsonRejection>,
) -> Result<Response> {
    let Json(req) = body?;
    Ok(Json(s.cp.extend_env(&team.team, &env, &req.ttl).in_team(&team)?).into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct RemoveEnvQuery {
    /// The team (docs/teams.md); read by the access layer.
    #[serde(default)]
    #[allow(dead_code)]
    team: Option<String>,
    /// Keep the named volumes of its applications.
    #[serde(default)]
    keep_volumes: bool,
}

#[utoipa::path(
    delete,
    path = "/api/v1/envs/{env}",
    operation_id = "removeEnv",
    tag = "envs",
    summary = "Remove an environment and its applications (`berth env rm`)",
    params(("env" = String, Path, description = "Environment name"), RemoveEnvQuery),
    responses(
        (status = 202, description = "Its applications are being removed", body = EnvRemoved),
        (status = 400, description = "`invalid_argument`: `dev` cannot be removed", body = ErrorBody),
        (status = 404, description = "`env_not_found`", body = ErrorBody),
        (status = 409, description = "`in_use`: one of its applications serves a market entry other applications subscribe to", body = ErrorBody)
    )
)]
pub(crate) async fn remove_env(
    State(s): State<AppState>,
    team: Team,
    Path(env): Path<String>,
    q: std::result::Result<Query<RemoveEnvQuery>, QueryRejection>,
) -> Result<Response> {
    let Query(q) = q?;
    let (apps, keep_volumes) =
        s.cp.remove_env(&team.team, &env, q.keep_volumes)
            .in_team(&team)?;
    let answer = EnvRemoved {
        name: env,
        apps,
        keep_volumes,
    };
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/apps/{app}/release",
    operation_id = "releaseApp",
    tag = "envs",
    summary = "Promote the application's current revision in one environment to another, same image IDs (`berth release`)",
    params(("app" = String, Path, description = "Application name")),
    request_body = ReleaseRequest,
    responses(
        (status = 200, description = "The target's revision (`changed: false` when it runs exactly that already)", body = RevisionCreated),
        (status = 400, description = "`invalid_argument`: the same environment twice, or a bad name", body = ErrorBody),
        (status = 403, description = "`admission_denied`", body = ErrorBody),
        (status = 404, description = "`app_not_found` (in the source environment), `env_not_found`", body = ErrorBody),
        (status = 409, description = "`version_not_approved` (a protected target), `route_conflict`, `port_conflict`, `no_free_port`", body = ErrorBody),
        (status = 422, description = "`quota_exceeded`", body = ErrorBody)
    )
)]
pub(crate) async fn release(
    State(s): State<AppState>,
    team: Team,
    Path(app): Path<String>,
    body: std::result::Result<Json<ReleaseRequest>, JsonRejection>,
) -> Result<Response> {
    let Json(req) = body?;
    team.name(&app)?;
    let mut created =
        s.cp.release(&team.team, &app, &req.from, &req.to)
            .in_team(&team)?;
    created.app = app;
    Ok(Json(created).into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct PortsQuery {
    /// The team (docs/teams.md); read by the access layer.
    #[serde(default)]
    #[allow(dead_code)]
    team: Option<String>,
    /// Only this environment's ports.
    #[serde(default)]
    env: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/ports",
    operation_id = "listPorts",
    tag = "envs",
    summary = "The host ports the team's applications hold: fixed and leased (`berth ports`)",
    params(PortsQuery),
    responses(
        (status = 200, description = "The leases, by port", body = Vec<PortLeaseView>),
        (status = 404, description = "`env_not_found`", body = ErrorBody)
    )
)]
pub(crate) async fn list_ports(
    State(s): State<AppState>,
    team: Team,
    q: std::result::Result<Query<PortsQuery>, QueryRejection>,
) -> Result<Response> {
    let Query(q) = q?;
    if let Some(env) = &q.env {
        if !s.cp.env_exists(&team.team, env).in_team(&team)? {
            return Err(ApiError::new(
                berth_core::ErrorCode::EnvNotFound,
                format!("environment {env:?} does not exist"),
            ));
        }
    }
    Ok(Json(s.cp.ports(&team.team, q.env.as_deref()).in_team(&team)?).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/apps/{app}/deploy",
    operation_id = "deployVersion",
    tag = "apps",
    summary = "Run a built version in the application's services that run its image (`berth deploy`)",
    params(("app" = String, Path, description = "Application name")),
    request_body = DeployRequest,
    responses(
        (status = 200, description = "The revision committed (`changed: false` when it runs that version already)", body = RevisionCreated),
        (status = 400, description = "`invalid_argument`: the application runs no image of the service", body = ErrorBody),
        (status = 403, description = "`admission_denied`", body = ErrorBody),
        (status = 404, description = "`app_not_found`, `version_not_found`, `env_not_found`", body = ErrorBody),
        (status = 409, description = "`version_not_approved` (a protected application or environment), `port_conflict`, `no_free_port`", body = ErrorBody),
        (status = 422, description = "`image_missing` (the version's image was removed: `berth image restore`), `quota_exceeded`", body = ErrorBody)
    )
)]
pub(crate) async fn deploy(
    State(s): State<AppState>,
    team: Team,
    Path(app): Path<String>,
    body: std::result::Result<Json<DeployRequest>, JsonRejection>,
) -> Result<Response> {
    let Json(req) = body?;
    let service = team.name(&req.service)?;
    let mut created =
        s.cp.deploy_version(&team.app(&app)?, &service, &req.version)
            .await
            .in_team(&team)?;
    created.app = app;
    Ok(Json(created).into_response())
}
