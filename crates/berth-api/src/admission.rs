//! Admission grants of a team (docs/teams.md#admission): list, grant, revoke. Administrator
//! only: berth-access's policy lets no other user reach `/api/v1/teams`. Grants and revocations
//! are audited by the middleware, as every call that is not a `GET`.

use crate::error::ApiError;
use crate::AppState;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use berth_access::Principal;
use berth_controlplane::admission::GrantRecord;
use berth_core::api::{AdmissionGrantRequest, AdmissionGrantView};
use berth_core::ErrorBody;
use serde::Serialize;
use utoipa::ToSchema;

type Result<T> = std::result::Result<T, Response>;

fn view(g: GrantRecord) -> AdmissionGrantView {
    AdmissionGrantView {
        team: g.team,
        key: g.key.to_string(),
        granted_by: g.granted_by,
        created_at: g.created_at,
    }
}

fn fail(e: berth_controlplane::error::CpError) -> Response {
    ApiError::from(e).into_response()
}

/// The answer to a revocation.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct GrantRevoked {
    team: String,
    revoked: String,
}

#[utoipa::path(
    get,
    path = "/api/v1/teams/{team}/admission",
    operation_id = "listAdmissionGrants",
    tag = "teams",
    summary = "A team's admission grants (any member of the team, or the administrator; `berth admission ls`)",
    params(("team" = String, Path, description = "The team")),
    responses(
        (status = 200, description = "Grants, by key", body = Vec<AdmissionGrantView>),
        (status = 404, description = "`team_not_found`", body = ErrorBody)
    )
)]
pub(crate) async fn list_grants(
    State(s): State<AppState>,
    Path(team): Path<String>,
) -> Result<Response> {
    let grants = s.cp.admission_grants(&team).map_err(fail)?;
    let views: Vec<AdmissionGrantView> = grants.into_iter().map(view).collect();
    Ok(Json(views).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/teams/{team}/admission",
    operation_id = "grantAdmission",
    tag = "teams",
    summary = "Grant a team an admission key (administrator; `berth admission grant`)",
    params(("team" = String, Path, description = "The team")),
    request_body = AdmissionGrantRequest,
    responses(
        (status = 201, description = "Granted (a key held already keeps its first grant)", body = AdmissionGrantView),
        (status = 404, description = "`team_not_found`", body = ErrorBody)
    )
)]
pub(crate) async fn grant(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(team): Path<String>,
    body: std::result::Result<Json<AdmissionGrantRequest>, JsonRejection>,
) -> Result<Response> {
    let Json(req) = body.map_err(|e| ApiError::from(e).into_response())?;
    let g =
        s.cp.grant_admission(&team, &req.key, &p.user)
            .map_err(fail)?;
    Ok((StatusCode::CREATED, Json(view(g))).into_response())
}

#[utoipa::path(
    delete,
    path = "/api/v1/teams/{team}/admission/{key}",
    operation_id = "revokeAdmission",
    tag = "teams",
    summary = "Revoke a team's admission grant (administrator; `berth admission revoke`); what runs is not touched",
    params(
        ("team" = String, Path, description = "The team"),
        ("key" = String, Path, description = "The key, URL-encoded (`bind%3A%2Fsrv`)")
    ),
    responses(
        (status = 200, description = "Revoked", body = GrantRevoked),
        (status = 404, description = "`team_not_found`, or `not_found`: the team holds no such grant", body = ErrorBody)
    )
)]
pub(crate) async fn revoke(
    State(s): State<AppState>,
    Path((team, key)): Path<(String, String)>,
) -> Result<Response> {
    s.cp.revoke_admission(&team, &key).map_err(fail)?;
    Ok(Json(GrantRevoked { team, revoked: key }).into_response())
}
