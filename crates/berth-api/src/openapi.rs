//! The OpenAPI 3.1 document served at `/api/v1/openapi.json`, derived from the code.
//!
//! Rules it keeps:
//! - Routed ⇔ documented, by construction: every operation is registered once, through
//!   [`routes`] (`utoipa_axum::routes!`), which both routes the handler and adds the handler's
//!   `#[utoipa::path]` to the document. There is no second list to keep in step.
//! - Schemas come from the types the handlers send and receive (`berth_core::api` with its
//!   `openapi` feature, and the small answers typed in `handlers.rs`).
//! - Every error answer is documented with the one error shape ([`ErrorBody`]:
//!   `{code, message, request_id}`) under each status it can have; [`complete`] adds the ones
//!   every operation shares (403, 414, 421, 500; 400 / 404 where the operation has inputs /
//!   path parameters; 413 / 415 on writes: the checks of `guard.rs`), so handlers list only
//!   their own.
//!
//! `crates/berth-api/tests/openapi.rs` checks the document against the router and the schemas
//! against real answers; `scripts/contract` fuzzes a live server with it (schemathesis).

use crate::AppState;
use berth_core::ErrorBody;
use std::borrow::Cow;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder, Schema};
use utoipa::{OpenApi, PartialSchema, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Berth API",
        version = "1",
        description = "Berth's control-plane API. Every call but health, this document, the JWKS, \
                       login and webhooks needs `Authorization: Bearer <token>` (a login session, \
                       an API token or the server's local token; docs/access.md). Errors: an HTTP \
                       status and `{code, message, request_id}`; the codes are listed in \
                       docs/errors.md."
    ),
    components(schemas(ErrorBody)),
    tags(
        (name = "system", description = "Health, this document, metrics"),
        (name = "apps", description = "Compose applications: revisions, replicas, logs"),
        (name = "gateway", description = "The routing table"),
        (name = "auth", description = "Tokens, signing keys, accepted issuers"),
        (name = "builds", description = "Services built from source: builds, versions, secrets, webhooks"),
        (name = "images", description = "Images of built services: retention, archive, restore"),
        (name = "events", description = "Platform events"),
        (name = "access", description = "Login, users, API tokens, the audit log"),
        (name = "teams", description = "Teams and their members (docs/teams.md)"),
        (name = "envs", description = "Environments of a team (docs/environments.md)"),
        (name = "versions", description = "The version lifecycle: submit, review, publish; protected applications (docs/lifecycle.md)"),
        (name = "market", description = "The service market: published services of every team (docs/market.md)"),
        (name = "admin", description = "Administration: backups"),
        (name = "teams", description = "Teams: admission grants"),
    )
)]
struct ApiDoc;

/// Every operation, routed and documented. A new endpoint goes here (and nowhere else in the
/// router), with a `#[utoipa::path]` on its handler.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    use crate::access as a;
    use crate::handlers as h;
    use crate::teams as t;
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(h::health))
        .routes(routes!(h::openapi))
        .routes(routes!(h::list_apps))
        .routes(routes!(h::app_status, h::remove_app))
        .routes(routes!(h::apply))
        .routes(routes!(h::upload_context))
        .routes(routes!(h::scale))
        .routes(routes!(h::rollback))
        .routes(routes!(h::history))
        .routes(routes!(h::ps))
        .routes(routes!(h::instances))
        .routes(routes!(h::logs))
        .routes(routes!(h::routes))
        .routes(routes!(h::gateway_table))
        .routes(routes!(h::list_nodes))
        .routes(routes!(h::issue_token))
        .routes(routes!(h::rotate_key))
        .routes(routes!(h::list_issuers, h::add_issuer))
        .routes(routes!(h::remove_issuer))
        .routes(routes!(h::list_services, h::create_service))
        .routes(routes!(h::remove_service))
        .routes(routes!(h::start_build))
        .routes(routes!(h::versions))
        .routes(routes!(h::set_secret))
        .routes(routes!(h::set_webhook_secret))
        .routes(routes!(h::webhook))
        .routes(routes!(h::team_webhook))
        .routes(routes!(h::list_events))
        .routes(routes!(h::list_images))
        .routes(routes!(h::restore_image))
        .routes(routes!(h::archive_image))
        .routes(routes!(h::list_builds))
        .routes(routes!(h::get_build))
        .routes(routes!(h::cancel_build))
        .routes(routes!(h::build_logs))
        .routes(routes!(h::jwks))
        .routes(routes!(h::metrics))
        .routes(routes!(a::login))
        .routes(routes!(a::logout))
        .routes(routes!(a::whoami))
        .routes(routes!(a::list_api_tokens, a::create_api_token))
        .routes(routes!(a::revoke_api_token))
        .routes(routes!(a::list_users, a::add_user))
        .routes(routes!(a::set_password))
        .routes(routes!(a::disable_user))
        .routes(routes!(a::audit))
        .routes(routes!(t::list_teams, t::create_team))
        .routes(routes!(t::delete_team))
        .routes(routes!(t::list_members, t::set_member))
        .routes(routes!(t::remove_member))
        .routes(routes!(crate::envs::list_envs, crate::envs::create_env))
        .routes(routes!(crate::envs::show_env, crate::envs::remove_env))
        .routes(routes!(crate::envs::extend_env))
        .routes(routes!(crate::envs::release))
        .routes(routes!(crate::envs::deploy))
        .routes(routes!(crate::envs::list_ports))
        .routes(routes!(h::backup))
        .routes(routes!(
            crate::admission::list_grants,
            crate::admission::grant
        ))
        .routes(routes!(crate::admission::revoke))
        .routes(routes!(crate::lifecycle::submit))
        .routes(routes!(crate::lifecycle::approve))
        .routes(routes!(crate::lifecycle::reject))
        .routes(routes!(crate::lifecycle::publish))
        .routes(routes!(crate::lifecycle::deprecate))
        .routes(routes!(crate::lifecycle::retire))
        .routes(routes!(crate::lifecycle::review))
        .routes(routes!(crate::lifecycle::list_reviews))
        .routes(routes!(crate::lifecycle::route_stats))
        .routes(routes!(crate::lifecycle::gateway_stats))
        .routes(routes!(crate::lifecycle::market))
        .routes(routes!(crate::lifecycle::market_entry))
        .routes(routes!(
            crate::lifecycle::list_subscriptions,
            crate::lifecycle::subscribe
        ))
        .routes(routes!(crate::lifecycle::unsubscribe))
        .routes(routes!(crate::lifecycle::upgrade))
        .routes(routes!(crate::lifecycle::app_graph))
        .routes(routes!(
            crate::lifecycle::protect_app,
            crate::lifecycle::unprotect_app
        ))
}

/// The name of the bearer security scheme in the document.
const BEARER: &str = "bearer";

/// The whole document, as served.
#[must_use]
pub fn document() -> serde_json::Value {
    let (_, mut doc) = routes().split_for_parts();
    complete(&mut doc);
    serde_json::to_value(&doc).unwrap_or_default()
}

/// The served document, rendered once.
pub(crate) fn json() -> &'static str {
    static JSON: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    JSON.get_or_init(|| document().to_string())
}

/// Add the error answers every operation shares, so that each status the server can answer is
/// documented with the error shape.
fn complete(doc: &mut utoipa::openapi::OpenApi) {
    doc.components
        .get_or_insert_with(Default::default)
        .add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A login session (`POST /api/v1/login`), an API token or the server's \
                         local token (`<data-dir>/admin.token`): `berth_` + 43 characters",
                    ))
                    .build(),
            ),
        );
    for (path, item) in &mut doc.paths.paths {
        let has_path_params = path.contains('{');
        let ops = [
            (&mut item.get, false, "GET"),
            (&mut item.put, true, "PUT"),
            (&mut item.post, true, "POST"),
            (&mut item.delete, false, "DELETE"),
            (&mut item.patch, true, "PATCH"),
        ];
        for (op, writes, method) in ops {
            let Some(op) = op else { continue };
            if berth_access::is_public(method, path) {
                op.security = Some(vec![SecurityRequirement::default()]);
            } else {
                op.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
                add_error(
                    op,
                    401,
                    "`unauthorized`: no token, or one that is unknown, revoked, expired or of a \
                     disabled user (`WWW-Authenticate: Bearer`)",
                );
            }
            let team_param = !path.contains("{team}")
                && berth_access::action(method, path)
                    .is_some_and(berth_access::Action::team_scoped);
            if team_param {
                add_team_param(op);
            }
            if path == "/api/v1/apps" || path.starts_with("/api/v1/apps/") {
                add_env_param(op);
            }
            let has_inputs = has_path_params
                || op.request_body.is_some()
                || op.parameters.as_ref().is_some_and(|p| !p.is_empty());
            if has_inputs {
                add_error(
                    op,
                    400,
                    "`invalid_json`, `invalid_query`, `invalid_argument`: a malformed body, query \
                     string or path parameter",
                );
            }
            match (has_path_params, team_param) {
                (true, true) => add_error(
                    op,
                    404,
                    "`team_not_found`: `team` names no team the caller is a member of; \
                     `not_found` and the other `*_not_found` codes: what the path names does not \
                     exist",
                ),
                (true, false) => add_error(
                    op,
                    404,
                    "`not_found` and the `*_not_found` codes: what the path names does not exist",
                ),
                (false, true) => add_error(
                    op,
                    404,
                    "`team_not_found`: `team` names no team the caller is a member of",
                ),
                (false, false) => {}
            }
            if writes {
                add_error(
                    op,
                    413,
                    "`payload_too_large`: the body is over the operation's limit (docs/api.md)",
                );
                add_error(
                    op,
                    415,
                    "`unsupported_media_type`: the body's `Content-Type` is not the operation's",
                );
            }
            add_error(
                op,
                403,
                "`forbidden`: the caller's token may not make this call; \
                 `password_change_required`: the caller's password was generated and must be \
                 changed first; `forbidden_origin`: a request from a web page of another origin",
            );
            add_error(
                op,
                414,
                "`uri_too_long`: the path and query are longer than 8 KiB",
            );
            add_error(
                op,
                421,
                "`bad_host`: the `Host` header names a host the API does not answer for",
            );
            add_error(op, 500, "`internal`: details are in the server log");
        }
    }
}

/// `?team=` on a team-scoped operation (docs/teams.md, "Which team a call acts in").
fn add_team_param(op: &mut Operation) {
    use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
    let params = op.parameters.get_or_insert_with(Vec::new);
    if params.iter().any(|p| p.name == "team") {
        return;
    }
    params.push(
        ParameterBuilder::new()
            .name("team")
            .parameter_in(ParameterIn::Query)
            .description(Some(
                "The team the call acts in (default: the token's team, else the caller's only \
                 team; `team_required` when the caller is in several)",
            ))
            .schema(Some(String::schema()))
            .build(),
    );
}

/// `?env=` on an application operation (docs/environments.md).
fn add_env_param(op: &mut Operation) {
    use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
    let params = op.parameters.get_or_insert_with(Vec::new);
    if params.iter().any(|p| p.name == "env") {
        return;
    }
    params.push(
        ParameterBuilder::new()
            .name("env")
            .parameter_in(ParameterIn::Query)
            .description(Some(
                "The environment of the team the application is in (default `dev`; \
                 docs/environments.md)",
            ))
            .schema(Some(String::schema()))
            .build(),
    );
}

fn add_error(op: &mut Operation, status: u16, description: &str) {
    let key = status.to_string();
    if op.responses.responses.contains_key(&key) {
        return;
    }
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name(ErrorBody::name())))
        .build();
    let resp = ResponseBuilder::new()
        .description(description)
        .content("application/json", content)
        .build();
    op.responses.responses.insert(key, RefOr::T(resp));
}

/// A tar archive (a build context, a `docker save` image, a backup).
pub(crate) struct Tar;

impl PartialSchema for Tar {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .into()
    }
}

impl ToSchema for Tar {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Tar")
    }
}
