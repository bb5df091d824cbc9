//! Who is calling: the authentication middleware and the identity endpoints (login, whoami,
//! API tokens, users, audit). The decisions are berth-access's; this is the axum glue.
//!
//! Order per request (docs/access.md): request id → Host/Origin guard (`lib.rs`) →
//! [`authenticate`] (token, then [`berth_access::authorize`] on the route template) → body
//! rules (`guard.rs`) → handler → one audit row for every call that is not a `GET`/`HEAD`,
//! allowed or refused, and every login.

use crate::error::ApiError;
use crate::{AppState, RequestId};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{ConnectInfo, MatchedPath, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use berth_access::{AccessError, AuditRecord, Decision, Principal, Scope};
use berth_core::api::{
    ApiTokenCreated, ApiTokenRequest, ApiTokenView, AuditPage, LoginIssued, LoginRequest,
    PasswordChange, UserCreated, UserRequest, UserView, Whoami,
};
use berth_core::{ErrorBody, ErrorCode};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use utoipa::{IntoParams, ToSchema};

type Result<T> = std::result::Result<T, Response>;

/// The caller's address, for handlers (login counts failures per address).
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    pub source: String,
}

/// Set on a response by a handler whose caller the middleware cannot know (a login): the user
/// it named and the session it opened, for the audit row.
#[derive(Clone, Debug)]
struct AuditAs {
    user: String,
    token: Option<String>,
}

/// An access refusal as an answer: the error shape, plus `WWW-Authenticate` on a 401 and
/// `Retry-After` on `login_locked`.
pub fn refuse(e: AccessError) -> Response {
    let mut resp = ApiError::new(e.code, e.message).into_response();
    let h = resp.headers_mut();
    if e.code == ErrorCode::Unauthorized {
        h.insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer realm=\"berth\""),
        );
    }
    if let Some(secs) = e.retry_after {
        if let Ok(v) = http::HeaderValue::from_str(&secs.to_string()) {
            h.insert(http::header::RETRY_AFTER, v);
        }
    }
    resp
}

/// Route middleware: authenticate, authorize, run, audit.
pub(crate) async fn authenticate(
    State(s): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let method = req.method().as_str().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    let mut object: String = req.uri().path().chars().take(1024).collect();
    // An application's environment is part of what the call acts on (docs/environments.md).
    if let Some(env) = app_env_param(&route, req.uri().query()) {
        object = format!(
            "{object} (env {})",
            env.chars().take(64).collect::<String>()
        );
    }
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    let source = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".to_string(), |c| c.0.ip().to_string());
    req.extensions_mut().insert(Caller {
        source: source.clone(),
    });
    let mut principal: Option<Principal> = None;
    // A state-changing call leaves its audit row even if the client goes away before the
    // answer (the future is dropped): then with status 499 `client_closed`.
    let mut unanswered = (method != "GET" && method != "HEAD").then(|| Unanswered {
        access: s.access.clone(),
        event: Some(AuditRecord {
            user: None,
            token: None,
            action: if route == "/api/v1/login" {
                "login".to_string()
            } else {
                format!("{method} {route}")
            },
            object,
            source: source.clone(),
            request_id,
            status: 499,
            code: Some("client_closed".to_string()),
            ..AuditRecord::default()
        }),
    });
    let mut resp = if berth_access::is_public(&method, &route) {
        next.run(req).await
    } else {
        let header = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        match s.access.authenticate(header) {
            Err(e) => refuse(e),
            Ok(p) => {
                let decision = berth_access::authorize(&p, &method, &route);
                principal = Some(p.clone());
                if let Some(e) = unanswered.as_mut().and_then(|u| u.event.as_mut()) {
                    e.user = Some(p.user.clone());
                    e.token = Some(p.token.clone());
                }
                match decision {
                    Decision::Allow => match team_scope(&s, &p, &method, &route, &req) {
                        Err(e) => refuse(e),
                        Ok(scope) => {
                            if let (Some(scope), Some(e)) = (
                                &scope,
                                unanswered.as_mut().and_then(|u| u.event.as_mut()),
                            ) {
                                e.team = Some(scope.team.clone());
                            }
                            if let Some(scope) = scope {
                                req.extensions_mut().insert(scope);
                            }
                            if is_app_route(&route) {
                                let env = app_env_param(&route, req.uri().query())
                                    .unwrap_or_else(|| berth_core::team::DEV_ENV.to_string());
                                req.extensions_mut().insert(crate::team::EnvParam(env));
                            }
                            without_team_param(&mut req, is_app_route(&route));
                            req.extensions_mut().insert(p);
                            next.run(req).await
                        }
                    },
                    Decision::Forbidden => ApiError::new(
                        ErrorCode::Forbidden,
                        format!("{} may not call {method} {route}", who(&p)),
                    )
                    .into_response(),
                    Decision::PasswordChangeRequired => ApiError::new(
                        ErrorCode::PasswordChangeRequired,
                        format!(
                            "the password of {:?} was generated and must be changed first: POST /api/v1/users/{}/password (berth user passwd)",
                            p.user, p.user
                        ),
                    )
                    .into_response(),
                }
            }
        }
    };
    // Answered: the row gets the answer's status and code (and, for a login, who it named).
    if let Some(mut row) = unanswered.as_mut().and_then(|u| u.event.take()) {
        if let Some(named) = resp.extensions_mut().remove::<AuditAs>() {
            if principal.is_none() {
                row.user = Some(named.user);
                row.token = named.token;
            }
        }
        row.status = resp.status().as_u16();
        row.code = crate::error::code_of(&resp);
        s.access.record(row);
    }
    resp
}

/// The audit row of a call whose answer never came (see [`authenticate`]).
struct Unanswered {
    access: berth_access::Access,
    event: Option<AuditRecord>,
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some(e) = self.event.take() {
            self.access.record(e);
        }
    }
}

/// The team a team-scoped call acts in ([`berth_access::Access::team_scope`]): named by the
/// route's `{team}` segment, else by `?team=`; none for calls that act in no team.
fn team_scope(
    s: &AppState,
    p: &Principal,
    method: &str,
    route: &str,
    req: &Request,
) -> std::result::Result<Option<Scope>, AccessError> {
    let Some(action) = berth_access::action(method, route).filter(|a| a.team_scoped()) else {
        return Ok(None);
    };
    let named = route_param(route, req.uri().path(), "{team}")
        .or_else(|| query_param(req.uri().query().unwrap_or(""), "team"));
    s.access.team_scope(p, action, named.as_deref()).map(Some)
}

/// The application routes, where `?env=` names the environment (docs/environments.md).
fn is_app_route(route: &str) -> bool {
    route == "/api/v1/apps" || route.starts_with("/api/v1/apps/")
}

/// `?env=` of an application route.
fn app_env_param(route: &str, query: Option<&str>) -> Option<String> {
    if is_app_route(route) {
        query_param(query.unwrap_or(""), "env")
    } else {
        None
    }
}

/// `?team=` is the middleware's (it chose the team, or the call acts in none: the CLI sends its
/// team with every call), and so is an application route's `?env=` (handed on as
/// [`crate::team::EnvParam`]); handlers' query structs never see them.
fn without_team_param(req: &mut Request, env_too: bool) {
    let Some(query) = req.uri().query() else {
        return;
    };
    let ours = |k: &str| k == "team" || (env_too && k == "env");
    if !form_urlencoded::parse(query.as_bytes()).any(|(k, _)| ours(&k)) {
        return;
    }
    let rest: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form_urlencoded::parse(query.as_bytes()).filter(|(k, _)| !ours(k)))
        .finish();
    let path_and_query = if rest.is_empty() {
        req.uri().path().to_string()
    } else {
        format!("{}?{rest}", req.uri().path())
    };
    let mut parts = req.uri().clone().into_parts();
    if let Ok(pq) = path_and_query.parse() {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = http::Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
}

/// The path segment matching `param` in the route template (team names need no decoding; one
/// that does is not a team name and is not found).
fn route_param(route: &str, path: &str, param: &str) -> Option<String> {
    route
        .split('/')
        .zip(path.split('/'))
        .find(|(t, _)| *t == param)
        .map(|(_, v)| v.to_string())
}

/// A query string parameter, percent-decoded; the last one wins (as with axum's `Query`).
fn query_param(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .last()
}

fn who(p: &Principal) -> String {
    if p.scopes.is_empty() {
        format!("user {:?}", p.user)
    } else {
        format!("token {:?} (scopes: {})", p.token, p.scopes.join(", "))
    }
}

fn json_body<T>(
    body: std::result::Result<Json<T>, JsonRejection>,
) -> std::result::Result<T, ApiError> {
    body.map(|Json(v)| v).map_err(ApiError::from)
}

#[utoipa::path(
    post,
    path = "/api/v1/login",
    operation_id = "login",
    tag = "access",
    summary = "Log in: a session token for `Authorization: Bearer` (`berth login`)",
    request_body = LoginRequest,
    security(()),
    responses(
        (status = 200, description = "The session (the token is shown once)", body = LoginIssued),
        (status = 401, description = "`unauthorized`: wrong user name or password (or a disabled user)", body = ErrorBody),
        (status = 429, description = "`login_locked`: 5 failed logins within 10 minutes for the user or from the address; retry after `Retry-After` seconds", body = ErrorBody)
    )
)]
pub(crate) async fn login(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: std::result::Result<Json<LoginRequest>, JsonRejection>,
) -> Result<Response> {
    let req = json_body(body).map_err(IntoResponse::into_response)?;
    let user: String = req.user.chars().take(128).collect();
    let mut resp = match s
        .access
        .login(&req.user, &req.password, &caller.source)
        .await
    {
        Ok(issued) => {
            let token = Some(issued.name.clone());
            let mut r = Json(issued).into_response();
            r.extensions_mut().insert(AuditAs { user, token });
            return Ok(r);
        }
        Err(e) => refuse(e),
    };
    // What was typed as a user name is kept only if it could be one (a password pasted into
    // the wrong field must not reach the audit log).
    let user = if berth_access::valid_name(&user) {
        user
    } else {
        "(invalid)".to_string()
    };
    resp.extensions_mut().insert(AuditAs { user, token: None });
    Err(resp)
}

#[utoipa::path(
    post,
    path = "/api/v1/logout",
    operation_id = "logout",
    tag = "access",
    summary = "Revoke the token this call carries (`berth logout`)",
    responses(
        (status = 200, description = "Revoked", body = TokenRevoked),
        (status = 400, description = "`invalid_argument`: the local administrator token (`<data-dir>/admin.token`) is replaced at each server start, not revoked", body = ErrorBody)
    )
)]
pub(crate) async fn logout(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Response> {
    s.access.logout(&p).map_err(refuse)?;
    Ok(Json(TokenRevoked {
        owner: p.user,
        revoked: p.token,
    })
    .into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/whoami",
    operation_id = "whoami",
    tag = "access",
    summary = "Who this call's token acts as (`berth whoami`)",
    responses(
        (status = 200, description = "The caller", body = Whoami)
    )
)]
pub(crate) async fn whoami(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Response> {
    Ok(Json::<Whoami>(s.access.whoami(&p).map_err(refuse)?).into_response())
}

/// `?user=`: another user's (administrator only).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserParam {
    /// Another user's tokens (administrator only); default: the caller's.
    user: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/api-tokens",
    operation_id = "listApiTokens",
    tag = "access",
    summary = "The caller's API tokens and sessions, never the secrets (`berth api-token ls`)",
    params(UserParam),
    responses(
        (status = 200, description = "Tokens", body = Vec<ApiTokenView>),
        (status = 404, description = "`user_not_found`: `user` names no user", body = ErrorBody)
    )
)]
pub(crate) async fn list_api_tokens(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    q: std::result::Result<Query<UserParam>, QueryRejection>,
) -> Result<Response> {
    let Query(q) = q.map_err(|e| ApiError::from(e).into_response())?;
    let tokens = s
        .access
        .list_tokens(&p, q.user.as_deref().filter(|u| !u.is_empty()))
        .map_err(refuse)?;
    Ok(Json(tokens).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/api-tokens",
    operation_id = "createApiToken",
    tag = "access",
    summary = "Create an API token acting with the caller's rights (`berth api-token create`)",
    request_body = ApiTokenRequest,
    responses(
        (status = 201, description = "The token (the secret is shown once)", body = ApiTokenCreated),
        (status = 404, description = "`team_not_found`: `team` names no team the caller is a member of", body = ErrorBody),
        (status = 409, description = "`api_token_exists`", body = ErrorBody)
    )
)]
pub(crate) async fn create_api_token(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    body: std::result::Result<Json<ApiTokenRequest>, JsonRejection>,
) -> Result<Response> {
    let req = json_body(body).map_err(IntoResponse::into_response)?;
    let created = s.access.create_token(&p, &req).map_err(refuse)?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

#[utoipa::path(
    delete,
    path = "/api/v1/api-tokens/{name}",
    operation_id = "revokeApiToken",
    tag = "access",
    summary = "Revoke an API token or session: it fails at once (`berth api-token revoke`)",
    params(("name" = String, Path, description = "The token's name"), UserParam),
    responses(
        (status = 200, description = "Revoked", body = TokenRevoked)
    )
)]
pub(crate) async fn revoke_api_token(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
    q: std::result::Result<Query<UserParam>, QueryRejection>,
) -> Result<Response> {
    let Query(q) = q.map_err(|e| ApiError::from(e).into_response())?;
    s.access
        .revoke_token(&p, &name, q.user.as_deref().filter(|u| !u.is_empty()))
        .map_err(refuse)?;
    Ok(Json(TokenRevoked {
        owner: q.user.filter(|u| !u.is_empty()).unwrap_or(p.user),
        revoked: name,
    })
    .into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/users",
    operation_id = "listUsers",
    tag = "access",
    summary = "Every user (administrator; `berth user ls`)",
    responses(
        (status = 200, description = "Users", body = Vec<UserView>)
    )
)]
pub(crate) async fn list_users(State(s): State<AppState>) -> Result<Response> {
    Ok(Json(s.access.list_users().map_err(refuse)?).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/users",
    operation_id = "addUser",
    tag = "access",
    summary = "Add a user (administrator; `berth user add`); without a password one is generated, shown once, and must be changed",
    request_body = UserRequest,
    responses(
        (status = 201, description = "Created", body = UserCreated),
        (status = 404, description = "`team_not_found`: `team` names no team", body = ErrorBody),
        (status = 409, description = "`user_exists`", body = ErrorBody)
    )
)]
pub(crate) async fn add_user(
    State(s): State<AppState>,
    body: std::result::Result<Json<UserRequest>, JsonRejection>,
) -> Result<Response> {
    let req = json_body(body).map_err(IntoResponse::into_response)?;
    let created = s.access.add_user(&req).await.map_err(refuse)?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/users/{name}/password",
    operation_id = "setPassword",
    tag = "access",
    summary = "Change a password: one's own with the current one, or (administrator) anyone's (`berth user passwd`)",
    params(("name" = String, Path, description = "The user")),
    request_body = PasswordChange,
    responses(
        (status = 200, description = "Changed", body = PasswordChanged)
    )
)]
pub(crate) async fn set_password(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
    body: std::result::Result<Json<PasswordChange>, JsonRejection>,
) -> Result<Response> {
    let req = json_body(body).map_err(IntoResponse::into_response)?;
    s.access
        .set_password(&p, &name, &req)
        .await
        .map_err(refuse)?;
    Ok(Json(PasswordChanged {
        user: name,
        changed: true,
    })
    .into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/users/{name}/disable",
    operation_id = "disableUser",
    tag = "access",
    summary = "Disable a user (administrator; `berth user disable`): their tokens fail at once",
    params(("name" = String, Path, description = "The user")),
    responses(
        (status = 200, description = "Disabled", body = UserDisabled)
    )
)]
pub(crate) async fn disable_user(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response> {
    s.access.disable_user(&name).await.map_err(refuse)?;
    Ok(Json(UserDisabled {
        user: name,
        disabled: true,
    })
    .into_response())
}

/// `GET /api/v1/audit`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditParams {
    /// Only this user's rows (another user's: administrator only). Default: everyone's for an
    /// administrator, one's own otherwise.
    user: Option<String>,
    /// Rows at or after this time: RFC 3339, or a duration back from now (`90s`, `15m`, `1h`,
    /// `7d`).
    since: Option<String>,
    /// Only rows with a larger id (the previous page's `next_after`).
    after: Option<u64>,
    /// At most this many, default 100, at most 1000.
    limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/api/v1/audit",
    operation_id = "audit",
    tag = "access",
    summary = "The audit log, oldest first (`berth audit`)",
    params(AuditParams),
    responses(
        (status = 200, description = "A page of rows", body = AuditPage)
    )
)]
pub(crate) async fn audit(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    q: std::result::Result<Query<AuditParams>, QueryRejection>,
) -> Result<Response> {
    let Query(q) = q.map_err(|e| ApiError::from(e).into_response())?;
    let page = s
        .access
        .query(
            &p,
            q.user.as_deref().filter(|u| !u.is_empty()),
            q.since.as_deref().filter(|s| !s.is_empty()),
            q.after,
            q.limit,
        )
        .map_err(refuse)?;
    Ok(Json(page).into_response())
}

/// `POST /api/v1/logout`, `DELETE /api/v1/api-tokens/{name}`.
#[derive(Serialize, ToSchema)]
pub(crate) struct TokenRevoked {
    owner: String,
    /// The token's name.
    revoked: String,
}

/// `POST /api/v1/users/{name}/password`.
#[derive(Serialize, ToSchema)]
pub(crate) struct PasswordChanged {
    user: String,
    /// Always true.
    changed: bool,
}

/// `POST /api/v1/users/{name}/disable`.
#[derive(Serialize, ToSchema)]
pub(crate) struct UserDisabled {
    user: String,
    /// Always true.
    disabled: bool,
}
