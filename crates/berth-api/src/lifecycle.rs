//! The version lifecycle (docs/lifecycle.md): submit, review, publish, deprecate, retire; the
//! reviewer's evidence; protected applications. Who may make each call is the permission
//! table's (`berth_access::policy`); the four-eyes rule and the state machine are the control
//! plane's. Every transition is audited by the middleware, as every call that is not a `GET`.

use crate::error::ApiError;
use crate::team::{InTeam, Team};
use crate::AppState;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use berth_access::Principal;
use berth_core::api::{
    ProtectView, ReviewItem, ReviewView, SubscribeRequest, SubscriptionView, TransitionRequest,
    TransitionView, UpgradeRequest, UpgradeView,
};
use berth_core::lifecycle::Transition;
use berth_core::ErrorBody;

type Result<T> = std::result::Result<T, ApiError>;

async fn transition(
    s: &AppState,
    team: &Team,
    p: &Principal,
    (name, version): (String, String),
    body: std::result::Result<Json<TransitionRequest>, JsonRejection>,
    t: Transition,
) -> Result<Response> {
    let Json(req) = body?;
    let text = match t {
        Transition::Approve | Transition::Reject => req.reason.or(req.note),
        _ => req.note.or(req.reason),
    };
    let app = req.app.as_deref().map(|a| team.name(a)).transpose()?;
    let lifecycle =
        s.cp.transition_version(
            &team.name(&name)?,
            &version,
            t,
            &p.user,
            text.as_deref(),
            app.as_deref(),
        )
        .in_team(team)?;
    Ok(Json(TransitionView {
        service: name,
        version,
        lifecycle,
    })
    .into_response())
}

macro_rules! transition_handler {
    ($fn:ident, $t:expr, $path:literal, $op:literal, $summary:literal) => {
        #[utoipa::path(
            post,
            path = $path,
            operation_id = $op,
            tag = "versions",
            summary = $summary,
            params(
                ("name" = String, Path, description = "Service name (built from source)"),
                ("version" = String, Path, description = "Version name")
            ),
            request_body = TransitionRequest,
            responses(
                (status = 200, description = "The version's new state", body = TransitionView),
                (status = 403, description = "`forbidden`: the role does not allow it, or (approve, reject) the caller submitted the version", body = ErrorBody),
                (status = 404, description = "`service_not_found`, `version_not_found`", body = ErrorBody),
                (status = 409, description = "`invalid_transition`: the version's state does not allow it; `in_use` (retire): applications subscribe to the version the provider runs, or to the last one on the market", body = ErrorBody)
            )
        )]
        pub(crate) async fn $fn(
            State(s): State<AppState>,
            team: Team,
            Extension(p): Extension<Principal>,
            Path(names): Path<(String, String)>,
            body: std::result::Result<Json<TransitionRequest>, JsonRejection>,
        ) -> Result<Response> {
            transition(&s, &team, &p, names, body, $t).await
        }
    };
}

transition_handler!(
    submit,
    Transition::Submit,
    "/api/v1/services/{name}/versions/{version}/submit",
    "submitVersion",
    "Submit a built (or rejected) version for review, with a `note` (developer)"
);
transition_handler!(
    approve,
    Transition::Approve,
    "/api/v1/services/{name}/versions/{version}/approve",
    "approveVersion",
    "Approve a submitted version, with a `reason` (an approver who did not submit it)"
);
transition_handler!(
    reject,
    Transition::Reject,
    "/api/v1/services/{name}/versions/{version}/reject",
    "rejectVersion",
    "Reject a submitted version, with a `reason` (an approver who did not submit it)"
);
transition_handler!(
    publish,
    Transition::Publish,
    "/api/v1/services/{name}/versions/{version}/publish",
    "publishVersion",
    "Publish an approved version (developer, owner); with `app`, bind its market entry to the application that serves it"
);
transition_handler!(
    deprecate,
    Transition::Deprecate,
    "/api/v1/services/{name}/versions/{version}/deprecate",
    "deprecateVersion",
    "Deprecate a published version (owner)"
);
transition_handler!(
    retire,
    Transition::Retire,
    "/api/v1/services/{name}/versions/{version}/retire",
    "retireVersion",
    "Retire a published or deprecated version (owner)"
);

#[utoipa::path(
    get,
    path = "/api/v1/services/{name}/versions/{version}/review",
    operation_id = "reviewVersion",
    tag = "versions",
    summary = "What a reviewer sees: the version, its state, each step with its test report, the image, and the contract's difference from the last published version",
    params(
        ("name" = String, Path, description = "Service name (built from source)"),
        ("version" = String, Path, description = "Version name")
    ),
    responses(
        (status = 200, description = "The evidence", body = ReviewView),
        (status = 404, description = "`service_not_found`, `version_not_found`", body = ErrorBody)
    )
)]
pub(crate) async fn review(
    State(s): State<AppState>,
    team: Team,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response> {
    let mut view =
        s.cp.review(&team.name(&name)?, &version)
            .await
            .in_team(&team)?;
    view.version.service = name;
    Ok(Json(view).into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/reviews",
    operation_id = "listReviews",
    tag = "versions",
    summary = "Versions of the team's services waiting for review, oldest first",
    responses(
        (status = 200, description = "Submitted versions", body = Vec<ReviewItem>)
    )
)]
pub(crate) async fn list_reviews(State(s): State<AppState>, team: Team) -> Result<Response> {
    let mut items = s.cp.reviews(&team.team).in_team(&team)?;
    for i in &mut items {
        i.service = team.show(&i.service);
    }
    Ok(Json(items).into_response())
}

async fn protect(s: &AppState, team: &Team, app: String, on: bool) -> Result<Response> {
    s.cp.set_protected(&team.app(&app)?, on).in_team(team)?;
    Ok(Json(ProtectView { app, protected: on }).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/apps/{app}/protect",
    operation_id = "protectApp",
    tag = "versions",
    summary = "Protect an application: it runs approved, published or deprecated versions only (owner)",
    params(("app" = String, Path, description = "Application name")),
    responses(
        (status = 200, description = "Protected", body = ProtectView),
        (status = 404, description = "`app_not_found`", body = ErrorBody)
    )
)]
pub(crate) async fn protect_app(
    State(s): State<AppState>,
    team: Team,
    Path(app): Path<String>,
) -> Result<Response> {
    protect(&s, &team, app, true).await
}

#[utoipa::path(
    delete,
    path = "/api/v1/apps/{app}/protect",
    operation_id = "unprotectApp",
    tag = "versions",
    summary = "Lift an application's protection (owner)",
    params(("app" = String, Path, description = "Application name")),
    responses(
        (status = 200, description = "No longer protected", body = ProtectView),
        (status = 404, description = "`app_not_found`", body = ErrorBody)
    )
)]
pub(crate) async fn unprotect_app(
    State(s): State<AppState>,
    team: Team,
    Path(app): Path<String>,
) -> Result<Response> {
    protect(&s, &team, app, false).await
}

#[utoipa::path(
    get,
    path = "/api/v1/routes/{app}/{service}/stats",
    operation_id = "routeStats",
    tag = "gateway",
    summary = "A service's traffic through the gateway: the last full minute (calls, error rate, p50/p95) and the last hour by minute",
    params(
        ("app" = String, Path, description = "Application name"),
        ("service" = String, Path, description = "Service name")
    ),
    responses(
        (status = 200, description = "The figures", body = berth_core::api::RouteStats),
        (status = 404, description = "`app_not_found`, `service_not_found`", body = ErrorBody)
    )
)]
pub(crate) async fn route_stats(
    State(s): State<AppState>,
    team: Team,
    Path((app, service)): Path<(String, String)>,
) -> Result<Response> {
    let mut stats =
        s.cp.route_stats(&team.app(&app)?, &service)
            .in_team(&team)?;
    stats.app = app;
    Ok(Json(stats).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/gateway/stats",
    operation_id = "gatewayStats",
    tag = "gateway",
    summary = "A standalone gateway's cumulative counters per service, sent every second (administrator's token)",
    request_body = berth_core::api::GatewayReport,
    responses(
        (status = 204, description = "Counted"),
        (status = 400, description = "`invalid_argument`: more than 10 000 services, or latency buckets other than the gateway's 12", body = ErrorBody)
    )
)]
pub(crate) async fn gateway_stats(
    State(s): State<AppState>,
    body: std::result::Result<Json<berth_core::api::GatewayReport>, JsonRejection>,
) -> Result<Response> {
    let Json(report) = body?;
    if let Err(why) = report.validate() {
        return Err(ApiError::new(berth_core::ErrorCode::InvalidArgument, why));
    }
    s.cp.ingest_gateway_report(&report);
    Ok(axum::http::StatusCode::NO_CONTENT.into_response())
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct MarketQuery {
    /// Only entries whose team, service or description contains this (case-insensitive).
    #[serde(default)]
    search: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/market",
    operation_id = "market",
    tag = "market",
    summary = "Every team's services with a published version: description, versions, provider, figures (any signed-in user)",
    params(MarketQuery),
    responses(
        (status = 200, description = "The entries, by team and service", body = Vec<berth_core::api::MarketEntry>)
    )
)]
pub(crate) async fn market(
    State(s): State<AppState>,
    q: std::result::Result<
        axum::extract::Query<MarketQuery>,
        axum::extract::rejection::QueryRejection,
    >,
) -> Result<Response> {
    let axum::extract::Query(q) = q?;
    Ok(Json(s.cp.market(q.search.as_deref())?).into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/market/{team}/{service}",
    operation_id = "marketEntry",
    tag = "market",
    summary = "One market entry, with the README, the latest contract and the provider's last hour (any signed-in user)",
    params(
        ("team" = String, Path, description = "The owner team"),
        ("service" = String, Path, description = "The service")
    ),
    responses(
        (status = 200, description = "The entry", body = berth_core::api::MarketEntry),
        (status = 404, description = "`service_not_found`: no such entry in the market", body = ErrorBody)
    )
)]
pub(crate) async fn market_entry(
    State(s): State<AppState>,
    Path((team_name, service)): Path<(String, String)>,
) -> Result<Response> {
    if service.contains('/') || !berth_core::team::valid_team_name(&team_name) {
        return Err(ApiError::new(
            berth_core::ErrorCode::ServiceNotFound,
            format!("no service {team_name}/{service} is in the market"),
        ));
    }
    let global = berth_core::team::global_name(&team_name, &service);
    Ok(Json(s.cp.market_entry(&global)?).into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/apps/{app}/subscriptions",
    operation_id = "listSubscriptions",
    tag = "market",
    summary = "The market entries the application subscribes to, with the variables its containers get",
    params(("app" = String, Path, description = "Application name")),
    responses(
        (status = 200, description = "Its subscriptions", body = Vec<SubscriptionView>),
        (status = 404, description = "`app_not_found`", body = ErrorBody)
    )
)]
pub(crate) async fn list_subscriptions(
    State(s): State<AppState>,
    team: Team,
    Path(app): Path<String>,
) -> Result<Response> {
    let list = s.cp.subscriptions(&team.app(&app)?).in_team(&team)?;
    Ok(Json(list).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/apps/{app}/subscriptions",
    operation_id = "subscribe",
    tag = "market",
    summary = "Subscribe the application to a market entry (`TEAM/SERVICE`): Berth issues it a credential and wires `<SERVICE>_URL` and `<SERVICE>_TOKEN_FILE` into its containers with a new revision (developer)",
    params(("app" = String, Path, description = "Application name")),
    request_body = SubscribeRequest,
    responses(
        (status = 201, description = "Subscribed; a revision rolls the wiring out", body = SubscriptionView),
        (status = 400, description = "`invalid_argument`: not `TEAM/SERVICE`, the entry has no provider instance, an unknown plan, or a clash of variable names", body = ErrorBody),
        (status = 404, description = "`app_not_found`; `service_not_found`: no such entry in the market", body = ErrorBody)
    )
)]
pub(crate) async fn subscribe(
    State(s): State<AppState>,
    team: Team,
    Extension(p): Extension<Principal>,
    Path(app): Path<String>,
    body: std::result::Result<Json<SubscribeRequest>, JsonRejection>,
) -> Result<Response> {
    let Json(req) = body?;
    let entry = crate::lifecycle::entry(&req.entry)?;
    let view =
        s.cp.subscribe(&team.app(&app)?, &entry, req.plan.as_deref(), &p.user)
            .in_team(&team)?;
    Ok((http::StatusCode::CREATED, Json(view)).into_response())
}

#[utoipa::path(
    delete,
    path = "/api/v1/apps/{app}/subscriptions/{owner}/{service}",
    operation_id = "unsubscribe",
    tag = "market",
    summary = "End the application's subscription: the gateway refuses its next call (403 `not_subscribed`); nothing restarts (developer)",
    params(
        ("app" = String, Path, description = "Application name"),
        ("owner" = String, Path, description = "The entry's owner team"),
        ("service" = String, Path, description = "The entry's service")
    ),
    responses(
        (status = 204, description = "Unsubscribed"),
        (status = 400, description = "`invalid_argument`: the subscription comes from `x-berth.uses` in the application's file", body = ErrorBody),
        (status = 404, description = "`app_not_found`, `subscription_not_found`", body = ErrorBody)
    )
)]
pub(crate) async fn unsubscribe(
    State(s): State<AppState>,
    team: Team,
    Path((app, owner, service)): Path<(String, String, String)>,
) -> Result<Response> {
    let entry = crate::lifecycle::entry(&format!("{owner}/{service}"))?;
    s.cp.unsubscribe(&team.app(&app)?, &entry).in_team(&team)?;
    Ok(http::StatusCode::NO_CONTENT.into_response())
}

/// The global name of a market entry `TEAM/SERVICE` (400 when it is not of that shape).
fn entry(text: &str) -> Result<String> {
    berth_controlplane::subscriptions::parse_entry(text).ok_or_else(|| {
        ApiError::new(
            berth_core::ErrorCode::InvalidArgument,
            format!("{text:?} is not a market entry: expected TEAM/SERVICE"),
        )
    })
}

#[utoipa::path(
    post,
    path = "/api/v1/apps/{app}/upgrade",
    operation_id = "upgradeInstall",
    tag = "market",
    summary = "Move a service installed from the market (`x-berth.from_market`) to another published version (default: the newest), through a new revision and the normal rollout; `dry_run` answers the contract difference only (developer)",
    params(("app" = String, Path, description = "Application name")),
    request_body = UpgradeRequest,
    responses(
        (status = 200, description = "What changes; `revision` rolls it out", body = UpgradeView),
        (status = 400, description = "`invalid_argument`: the service is not installed from the market", body = ErrorBody),
        (status = 404, description = "`app_not_found`, `service_not_found`", body = ErrorBody),
        (status = 409, description = "`version_not_published`: the target is not a published version", body = ErrorBody)
    )
)]
pub(crate) async fn upgrade(
    State(s): State<AppState>,
    team: Team,
    Path(app): Path<String>,
    body: std::result::Result<Json<UpgradeRequest>, JsonRejection>,
) -> Result<Response> {
    let Json(req) = body?;
    let view =
        s.cp.upgrade(
            &team.app(&app)?,
            &req.service,
            req.to.as_deref(),
            req.dry_run,
        )
        .in_team(&team)?;
    Ok(Json(view).into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/apps/{app}/graph",
    operation_id = "appGraph",
    tag = "market",
    summary = "What the application uses (market entries it subscribes to, with their provider instances; copies it installed) and who uses it (applications subscribed to the entries it serves)",
    params(("app" = String, Path, description = "Application name")),
    responses(
        (status = 200, description = "The graph; names are TEAM/APP and TEAM/SERVICE", body = berth_core::api::AppGraph),
        (status = 404, description = "`app_not_found`", body = ErrorBody)
    )
)]
pub(crate) async fn app_graph(
    State(s): State<AppState>,
    team: Team,
    Path(app): Path<String>,
) -> Result<Response> {
    let graph = s.cp.app_graph(&team.app(&app)?).in_team(&team)?;
    Ok(Json(graph).into_response())
}
