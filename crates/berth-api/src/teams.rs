//! Teams and their members (docs/teams.md, "Teams and roles"): `/api/v1/teams` and
//! `/api/v1/teams/{team}/members`. Who may call what is the permission table's
//! (`berth_access::policy::ROUTES`); the member calls get their team from the middleware
//! ([`Team`]), which has checked the caller's role there. Memberships are read from the store on
//! every call, so a change takes effect on the caller's next call.

use crate::access::refuse;
use crate::error::ApiError;
use crate::team::Team;
use crate::AppState;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use berth_access::Principal;
use berth_core::api::{MemberRequest, MemberView, TeamRequest, TeamView};
use berth_core::ErrorBody;

type Result<T> = std::result::Result<T, Response>;

fn json_body<T>(
    body: std::result::Result<Json<T>, JsonRejection>,
) -> std::result::Result<T, ApiError> {
    body.map(|Json(v)| v).map_err(ApiError::from)
}

#[utoipa::path(
    get,
    path = "/api/v1/teams",
    operation_id = "listTeams",
    tag = "teams",
    summary = "Teams: the administrator sees every team, a user the teams it is a member of (`berth team ls`)",
    responses(
        (status = 200, description = "Teams, by name, with the caller's role in each", body = Vec<TeamView>)
    )
)]
pub(crate) async fn list_teams(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Response> {
    Ok(Json(s.access.list_teams(&p).map_err(refuse)?).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/teams",
    operation_id = "createTeam",
    tag = "teams",
    summary = "Add a team (administrator; `berth team add`). The administrator is not made a member: it acts in every team; add owners with the members call",
    request_body = TeamRequest,
    responses(
        (status = 201, description = "Created", body = TeamView),
        (status = 400, description = "`invalid_argument`: not a team name (lowercase letters, digits and -, at most 30 characters)", body = ErrorBody),
        (status = 409, description = "`team_exists`", body = ErrorBody)
    )
)]
pub(crate) async fn create_team(
    State(s): State<AppState>,
    body: std::result::Result<Json<TeamRequest>, JsonRejection>,
) -> Result<Response> {
    let req = json_body(body).map_err(IntoResponse::into_response)?;
    let team = s.access.create_team(&req.name).map_err(refuse)?;
    Ok((StatusCode::CREATED, Json(team)).into_response())
}

#[utoipa::path(
    delete,
    path = "/api/v1/teams/{team}",
    operation_id = "deleteTeam",
    tag = "teams",
    summary = "Remove an empty team with its members and admission grants (administrator; `berth team rm`)",
    params(("team" = String, Path, description = "The team")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "`team_not_found`", body = ErrorBody),
        (status = 409, description = "`team_not_empty`: the team still has applications, services or issuers (remove them first), or it is `default`", body = ErrorBody)
    )
)]
pub(crate) async fn delete_team(
    State(s): State<AppState>,
    Path(team): Path<String>,
) -> Result<Response> {
    // Counted and removed in one store transaction (`Access::delete_team`): an apply racing
    // this call is either counted or refused, never left in a removed team.
    s.access.delete_team(&team).map_err(refuse)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/teams/{team}/members",
    operation_id = "listMembers",
    tag = "teams",
    summary = "A team's members and their roles (any member; `berth team member ls`)",
    params(("team" = String, Path, description = "The team")),
    responses(
        (status = 200, description = "Members, by user", body = Vec<MemberView>),
        (status = 404, description = "`team_not_found`: no such team, or the caller is not a member", body = ErrorBody)
    )
)]
pub(crate) async fn list_members(State(s): State<AppState>, team: Team) -> Result<Response> {
    Ok(Json(s.access.members(&team.team).map_err(refuse)?).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/teams/{team}/members",
    operation_id = "setMember",
    tag = "teams",
    summary = "Add a member, or change a member's role (the team's owner, or the administrator; `berth team member add`)",
    params(("team" = String, Path, description = "The team")),
    request_body = MemberRequest,
    responses(
        (status = 201, description = "The member as it now is", body = MemberView),
        (status = 400, description = "`invalid_argument`: the change would leave the team without an owner", body = ErrorBody),
        (status = 404, description = "`team_not_found`, `user_not_found`", body = ErrorBody)
    )
)]
pub(crate) async fn set_member(
    State(s): State<AppState>,
    team: Team,
    body: std::result::Result<Json<MemberRequest>, JsonRejection>,
) -> Result<Response> {
    let req = json_body(body).map_err(IntoResponse::into_response)?;
    let member = s
        .access
        .set_member(&team.team, &req.user, req.role)
        .await
        .map_err(refuse)?;
    Ok((StatusCode::CREATED, Json(member)).into_response())
}

#[utoipa::path(
    delete,
    path = "/api/v1/teams/{team}/members/{user}",
    operation_id = "removeMember",
    tag = "teams",
    summary = "Remove a member (the team's owner, or the administrator; `berth team member rm`)",
    params(
        ("team" = String, Path, description = "The team"),
        ("user" = String, Path, description = "The member")
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "`invalid_argument`: the member is the team's last owner", body = ErrorBody),
        (status = 404, description = "`team_not_found`, `member_not_found`", body = ErrorBody)
    )
)]
pub(crate) async fn remove_member(
    State(s): State<AppState>,
    team: Team,
    Path((_, user)): Path<(String, String)>,
) -> Result<Response> {
    s.access
        .remove_member(&team.team, &user)
        .await
        .map_err(refuse)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
