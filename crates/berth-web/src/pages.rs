//! The dashboard's pages beyond the overview and the application's page: live logs, services
//! and builds with the version lifecycle's forms, images, the audit log, users and teams, the
//! gateway (docs/dashboard.md#pages). Each page checks the permission of the `/api/v1` route
//! that reads the same thing; each form that of the route that does the same thing, again on
//! the post.

use crate::live::{self, data_event, END_EVENT};
use crate::svg;
use crate::{enc, error_page, perm, query_param, redirect, render, session, Audit, Form, Session};
use askama::Template;
use axum::extract::{Path, Request, State};
use axum::response::Response;
use berth_api::error::ApiError;
use berth_api::team::Team;
use berth_api::AppState;
use berth_core::lifecycle::{Transition, VersionState};
use berth_core::ErrorCode;
use futures_util::StreamExt;
use http::request::Parts;
use std::collections::BTreeMap;

/// The session of a page view (none: the page sends the browser to the login form).
fn viewer(s: &AppState, parts: &Parts) -> Option<Session> {
    session::session(&s.access, &parts.headers)
}

/// The teams of `p` in which `GET route` is allowed (only `only`, when a page names one).
fn teams_reading(
    s: &AppState,
    p: &berth_access::Principal,
    route: &str,
    only: Option<&str>,
) -> Result<Vec<Team>, ApiError> {
    let teams = s.access.list_teams(p).map_err(perm::from_access)?;
    Ok(teams
        .into_iter()
        .filter(|t| only.is_none_or(|o| o == t.name))
        .filter_map(|t| perm::scope(&s.access, p, "GET", route, Some(&t.name)).ok())
        .collect())
}

/// `route` (an `/api/v1` template) is allowed to `p` without a team (administration, one's
/// own things).
fn allowed(p: &berth_access::Principal, method: &str, route: &str) -> Result<(), ApiError> {
    match berth_access::authorize(p, method, route) {
        berth_access::Decision::Allow => Ok(()),
        berth_access::Decision::Forbidden => Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("user {:?} may not do this ({method} {route})", p.user),
        )),
        berth_access::Decision::PasswordChangeRequired => Err(ApiError::new(
            ErrorCode::PasswordChangeRequired,
            format!(
                "the password of {:?} was generated and must be changed first (berth user passwd)",
                p.user
            ),
        )),
    }
}

fn page(r: Result<Response, ApiError>) -> Response {
    r.unwrap_or_else(|e| error_page(&e))
}

// -- an application's logs and status ------------------------------------------------------

/// Lines a log page shows without JavaScript.
const LOG_TAIL: u64 = 200;

#[derive(Template)]
#[template(path = "logs.html")]
struct LogsPage<'a> {
    user: &'a str,
    csrf: &'a str,
    admin: bool,
    app: String,
    team: String,
    service: String,
    app_href: String,
    events: String,
    text: String,
    error: String,
}

pub(crate) async fn app_logs(
    State(s): State<AppState>,
    Path((app, service)): Path<(String, String)>,
    req: Request,
) -> Response {
    let (parts, _) = req.into_parts();
    let Some(sess) = viewer(&s, &parts) else {
        return redirect("/login");
    };
    page(
        async {
            let t = live::read_scope(
                &s,
                &sess,
                "/api/v1/apps/{app}/services/{service}/logs",
                query_param(&parts, "team").as_deref(),
            )?;
            let global = t.app(&app)?;
            let (text, error) = match live::app_log_lines(&s, &global, &service, LOG_TAIL, false)
                .await
            {
                Ok(lines) => (lines.collect::<Vec<String>>().await.concat(), String::new()),
                // No such application or service: an error page; Docker away: the page
                // says so.
                Err(e) if matches!(e.code, ErrorCode::AppNotFound | ErrorCode::ServiceNotFound) => {
                    return Err(t.localize(e))
                }
                Err(e) => (String::new(), t.localize(e).message),
            };
            Ok::<_, ApiError>(render(&LogsPage {
                user: &sess.principal.user,
                csrf: &sess.csrf,
                admin: sess.principal.administrator,
                events: format!(
                    "/apps/{}/logs/{}/events?team={}",
                    enc(&app),
                    enc(&service),
                    enc(&t.team)
                ),
                app_href: crate::app_href(&app, &t.team),
                app,
                team: t.team.clone(),
                service,
                text,
                error,
            }))
        }
        .await,
    )
}

/// `GET /apps/{app}/logs/{service}/events`: new lines as they are written (`?tail=N` lines back
/// first; default none, the page already shows them).
pub(crate) async fn app_log_events(
    State(s): State<AppState>,
    Path((app, service)): Path<(String, String)>,
    req: Request,
) -> Response {
    let (parts, _) = req.into_parts();
    page(
        async {
            let sess = live::stream_session(&s, &parts.headers)?;
            let t = live::read_scope(
                &s,
                &sess,
                "/api/v1/apps/{app}/services/{service}/logs",
                query_param(&parts, "team").as_deref(),
            )?;
            let tail = query_param(&parts, "tail")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let global = t.app(&app)?;
            let lines = live::app_log_lines(&s, &global, &service, tail, true)
                .await
                .map_err(|e| t.localize(e))?;
            Ok::<_, ApiError>(live::sse(lines.map(|l| data_event(&l))))
        }
        .await,
    )
}

/// `GET /apps/{app}/status/events`.
pub(crate) async fn app_status_events(
    State(s): State<AppState>,
    Path(app): Path<String>,
    req: Request,
) -> Response {
    let (parts, _) = req.into_parts();
    page(
        async {
            let sess = live::stream_session(&s, &parts.headers)?;
            let t = live::read_scope(
                &s,
                &sess,
                "/api/v1/apps/{app}",
                query_param(&parts, "team").as_deref(),
            )?;
            let global = t.app(&app)?;
            s.cp.status(&global).map_err(|e| t.localize(e))?;
            Ok::<_, ApiError>(live::status_events(s.clone(), global))
        }
        .await,
    )
}

/// `GET /events/stream?team=T&after=N`: the team's events as they happen (the overview's list).
pub(crate) async fn team_events(State(s): State<AppState>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    page(
        async {
            let sess = live::stream_session(&s, &parts.headers)?;
            let t = live::read_scope(
                &s,
                &sess,
                "/api/v1/events",
                query_param(&parts, "team").as_deref(),
            )?;
            let after = query_param(&parts, "after").and_then(|v| v.parse().ok());
            Ok::<_, ApiError>(live::team_events(s.clone(), t, after))
        }
        .await,
    )
}

// -- services --------------------------------------------------------------------------------

struct ServiceRow {
    name: String,
    href: String,
    source: String,
    created_at: String,
}

struct ServicesSection {
    team: String,
    services: Vec<ServiceRow>,
}

#[derive(Template)]
#[template(path = "services.html")]
struct ServicesPage<'a> {
    user: &'a str,
    csrf: &'a str,
    admin: bool,
    teams: Vec<ServicesSection>,
}

/// "Git /srv/repo, branch main, directory api, polled every 60 s", in words.
fn source_text(src: &berth_core::source::ServiceSource) -> String {
    use berth_core::source::ServiceSource;
    let mut out = match src {
        ServiceSource::Git(g) => {
            let mut t = format!("Git {}", g.url);
            if let Some(b) = &g.branch {
                t.push_str(&format!(", branch {b}"));
            }
            if let Some(p) = &g.path {
                t.push_str(&format!(", directory {p}"));
            }
            t
        }
        ServiceSource::Svn(s) => format!("Subversion {}", s.url),
    };
    if let Some(n) = src.poll_secs() {
        out.push_str(&format!(", polled every {n} s"));
    }
    if let ServiceSource::Git(g) = src {
        if let Some(app) = &g.preview_app {
            out.push_str(&format!(
                "; other branches previewed as {app} in preview-<branch>"
            ));
        }
    }
    out
}

fn service_href(name: &str, team: &str) -> String {
    format!("/services/{}?team={}", enc(name), enc(team))
}

pub(crate) async fn services(State(s): State<AppState>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let Some(sess) = viewer(&s, &parts) else {
        return redirect("/login");
    };
    page((|| -> Result<Response, ApiError> {
        let all = s.cp.services()?;
        let mut sections = Vec::new();
        for t in teams_reading(
            &s,
            &sess.principal,
            "/api/v1/services",
            query_param(&parts, "team").as_deref(),
        )? {
            let services = all
                .iter()
                .filter_map(|v| {
                    let local = t.local(&v.name)?;
                    Some(ServiceRow {
                        href: service_href(local, &t.team),
                        name: local.to_string(),
                        source: source_text(&v.source),
                        created_at: v.created_at.clone(),
                    })
                })
                .collect();
            sections.push(ServicesSection {
                team: t.team.clone(),
                services,
            });
        }
        Ok(render(&ServicesPage {
            user: &sess.principal.user,
            csrf: &sess.csrf,
            admin: sess.principal.administrator,
            teams: sections,
        }))
    })())
}

struct BuildLine {
    id: u64,
    href: String,
    git_ref: String,
    status: String,
    version: String,
    created_at: String,
    finished_at: String,
}

struct Action {
    label: &'static str,
    path: String,
    /// The reason or note field's name and label.
    field: &'static str,
    field_label: &'static str,
}

struct StepLine {
    name: String,
    exit_code: String,
    seconds: String,
    report: String,
}

struct VersionLine {
    name: String,
    image_id: String,
    size: String,
    state: String,
    commit: String,
    created_at: String,
    submitted_by: String,
    reviewed: String,
    steps: Vec<StepLine>,
    contract: String,
    breaking: u64,
    changes: Vec<String>,
    actions: Vec<Action>,
}

#[derive(Template)]
#[template(path = "service.html")]
struct ServicePage<'a> {
    user: &'a str,
    csrf: &'a str,
    admin: bool,
    service: String,
    team: String,
    source: String,
    created_at: String,
    pipeline: Vec<String>,
    builds: Vec<BuildLine>,
    versions: Vec<VersionLine>,
    build_action: String,
    may_build: bool,
    /// Applications that run an image of this service (team names; `app@env` in another
    /// environment), offered by each version's **Deploy** form.
    deploy_apps: Vec<String>,
    deploy_action: String,
}

/// Versions whose review evidence a service's page shows (newest first): reading it inspects
/// the image, so not every version of a long history.
const EVIDENCE_VERSIONS: usize = 5;

/// The transitions a page may offer for a version in `state`, with the API route each needs.
fn transitions(state: VersionState) -> &'static [(Transition, &'static str, &'static str)] {
    match state {
        VersionState::Built | VersionState::Rejected => &[(Transition::Submit, "Submit", "note")],
        VersionState::Submitted => &[
            (Transition::Approve, "Approve", "reason"),
            (Transition::Reject, "Reject", "reason"),
        ],
        VersionState::Approved => &[(Transition::Publish, "Publish", "note")],
        _ => &[],
    }
}

fn transition_route(t: Transition) -> &'static str {
    match t {
        Transition::Submit => "/api/v1/services/{name}/versions/{version}/submit",
        Transition::Approve => "/api/v1/services/{name}/versions/{version}/approve",
        Transition::Reject => "/api/v1/services/{name}/versions/{version}/reject",
        Transition::Publish => "/api/v1/services/{name}/versions/{version}/publish",
        Transition::Deprecate => "/api/v1/services/{name}/versions/{version}/deprecate",
        Transition::Retire => "/api/v1/services/{name}/versions/{version}/retire",
    }
}

fn size_text(bytes: Option<i64>) -> String {
    match bytes {
        None => "-".to_string(),
        #[allow(clippy::cast_precision_loss)]
        Some(b) => format!("{} MB", svg::fmt_num(b as f64 / 1_000_000.0)),
    }
}

pub(crate) async fn service_page(
    State(s): State<AppState>,
    Path(name): Path<String>,
    req: Request,
) -> Response {
    let (parts, _) = req.into_parts();
    let Some(sess) = viewer(&s, &parts) else {
        return redirect("/login");
    };
    page(service_inner(&s, &sess, &name, query_param(&parts, "team").as_deref()).await)
}

async fn service_inner(
    s: &AppState,
    sess: &Session,
    name: &str,
    team: Option<&str>,
) -> Result<Response, ApiError> {
    let p = &sess.principal;
    let t = perm::scope(
        &s.access,
        p,
        "GET",
        "/api/v1/services/{name}/versions",
        team,
    )?;
    let global = t.name(name)?;
    let view =
        s.cp.services()?
            .into_iter()
            .find(|v| v.name == global)
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::ServiceNotFound,
                    format!("service {name:?} does not exist"),
                )
            })?;
    let versions = s.cp.versions(&global).map_err(|e| t.localize(e))?;
    let builds = s.cp.builds_list(Some(&global)).map_err(|e| t.localize(e))?;
    // Image sizes and states (Docker): a page without them is still a page.
    let images: BTreeMap<String, (Option<i64>, String)> =
        s.cp.images(Some(&global))
            .await
            .map(|l| {
                l.into_iter()
                    .map(|i| (i.version, (i.size, i.state)))
                    .collect()
            })
            .unwrap_or_default();
    let may = |route: &str| perm::scope(&s.access, p, "POST", route, Some(&t.team)).is_ok();
    let deploy_apps: Vec<String> = if may("/api/v1/apps/{app}/deploy") {
        s.cp.apps_running(&global)?
            .iter()
            .filter_map(|a| t.local(a).map(str::to_string))
            .collect()
    } else {
        Vec::new()
    };
    let mut lines = Vec::new();
    let mut pipeline = Vec::new();
    for (i, v) in versions.into_iter().enumerate() {
        let (size, image_state) = images
            .get(&v.name)
            .cloned()
            .unwrap_or((None, String::new()));
        let mut line = VersionLine {
            name: v.name.clone(),
            image_id: v.digest.clone(),
            size: size_text(size),
            state: if image_state.is_empty() || image_state == "present" {
                v.state.to_string()
            } else {
                format!("{} (image {image_state})", v.state)
            },
            commit: v.commit.chars().take(12).collect(),
            created_at: v.created_at.clone(),
            submitted_by: String::new(),
            reviewed: String::new(),
            steps: Vec::new(),
            contract: String::new(),
            breaking: 0,
            changes: Vec::new(),
            actions: Vec::new(),
        };
        let mut submitted_by = None;
        if i < EVIDENCE_VERSIONS {
            if let Ok(r) = s.cp.review(&global, &v.name).await {
                if i == 0 {
                    pipeline = r.steps.iter().map(|st| st.name.clone()).collect();
                }
                line.steps = r
                    .steps
                    .iter()
                    .map(|st| StepLine {
                        name: st.name.clone(),
                        exit_code: st.exit_code.map_or_else(|| "-".into(), |c| c.to_string()),
                        seconds: svg::fmt_num(st.duration_ms as f64 / 1000.0),
                        report: st.report.as_ref().map_or_else(String::new, |rep| {
                            format!(
                                "{}: {} passed, {} failed, {} skipped",
                                rep.path, rep.passed, rep.failed, rep.skipped
                            )
                        }),
                    })
                    .collect();
                line.contract = r.contract_summary.clone();
                line.breaking = r.breaking_changes;
                line.changes = r
                    .contract_changes
                    .iter()
                    .map(|c| {
                        format!(
                            "{}{} {}: {}",
                            if c.breaking { "breaking: " } else { "" },
                            c.kind,
                            c.operation,
                            c.detail
                        )
                    })
                    .collect();
                if let Some(sb) = &r.lifecycle.submitted_by {
                    line.submitted_by = format!(
                        "{sb}{}",
                        r.lifecycle
                            .submit_note
                            .as_deref()
                            .map(|n| format!(": {n}"))
                            .unwrap_or_default()
                    );
                }
                if let Some(rb) = &r.lifecycle.reviewed_by {
                    line.reviewed = format!(
                        "{rb}{}",
                        r.lifecycle
                            .review_reason
                            .as_deref()
                            .map(|n| format!(": {n}"))
                            .unwrap_or_default()
                    );
                }
                submitted_by = r.lifecycle.submitted_by.clone();
            }
        }
        for (tr, label, field) in transitions(v.state) {
            if !may(transition_route(*tr)) {
                continue;
            }
            // Four eyes: the submitter is not offered a review of their own version.
            if matches!(tr, Transition::Approve | Transition::Reject)
                && submitted_by.as_deref() == Some(p.user.as_str())
            {
                continue;
            }
            line.actions.push(Action {
                label,
                path: format!(
                    "/services/{}/versions/{}/{}",
                    enc(name),
                    enc(&v.name),
                    tr.as_str()
                ),
                field,
                field_label: if *field == "reason" { "Reason" } else { "Note" },
            });
        }
        lines.push(line);
    }
    Ok(render(&ServicePage {
        user: &p.user,
        csrf: &sess.csrf,
        admin: p.administrator,
        service: name.to_string(),
        team: t.team.clone(),
        source: source_text(&view.source),
        created_at: view.created_at,
        pipeline,
        builds: builds
            .into_iter()
            .map(|b| BuildLine {
                href: format!("/builds/{}", b.id),
                id: b.id,
                git_ref: b.git_ref.unwrap_or_default(),
                status: b.status,
                version: b.version.unwrap_or_default(),
                created_at: b.created_at,
                finished_at: b.finished_at.unwrap_or_default(),
            })
            .collect(),
        versions: lines,
        build_action: format!("/services/{}/build", enc(name)),
        may_build: may("/api/v1/services/{name}/builds"),
        deploy_apps,
        deploy_action: format!("/services/{}/deploy", enc(name)),
    }))
}

/// A post: session → CSRF → the API route's permission in the form's team → `act` → an audit
/// row → where `act` says to go.
async fn post_form<F, Fut>(
    s: &AppState,
    req: Request,
    action: &str,
    route: &str,
    team_of: Option<String>,
    act: F,
) -> Response
where
    F: FnOnce(Team, Form, Session) -> Fut,
    Fut: std::future::Future<Output = Result<String, ApiError>>,
{
    let (parts, body) = req.into_parts();
    let mut audit = Audit {
        s,
        parts: &parts,
        action: action.to_string(),
        user: None,
        token: None,
        team: None,
    };
    let result = async {
        let form = Form::read(body).await?;
        let sess = crate::checked_session(s, &parts, &form)?;
        audit.user = Some(sess.principal.user.clone());
        audit.token = Some(sess.principal.token.clone());
        let team_name = team_of.or_else(|| form.get("team").map(str::to_string));
        let team = perm::scope(
            &s.access,
            &sess.principal,
            "POST",
            route,
            team_name.as_deref(),
        )?;
        audit.team = Some(team.team.clone());
        act(team, form, sess).await
    }
    .await;
    match result {
        Ok(to) => {
            let r = redirect(&to);
            audit.record(&r, None);
            r
        }
        Err(e) => {
            let r = error_page(&e);
            audit.record(&r, Some(e.code));
            r
        }
    }
}

/// An administrator's post (no team): session → CSRF → the API route's permission → `act` →
/// an audit row → back to `to`.
async fn post_admin<F, Fut>(
    s: &AppState,
    req: Request,
    action: &str,
    route: &str,
    act: F,
) -> Response
where
    F: FnOnce(Form) -> Fut,
    Fut: std::future::Future<Output = Result<String, ApiError>>,
{
    let (parts, body) = req.into_parts();
    let mut audit = Audit {
        s,
        parts: &parts,
        action: action.to_string(),
        user: None,
        token: None,
        team: None,
    };
    let result = async {
        let form = Form::read(body).await?;
        let sess = crate::checked_session(s, &parts, &form)?;
        audit.user = Some(sess.principal.user.clone());
        audit.token = Some(sess.principal.token.clone());
        allowed(&sess.principal, "POST", route)?;
        act(form).await
    }
    .await;
    match result {
        Ok(to) => {
            let r = redirect(&to);
            audit.record(&r, None);
            r
        }
        Err(e) => {
            let r = error_page(&e);
            audit.record(&r, Some(e.code));
            r
        }
    }
}

/// `POST /admin/users`: add a user (`name`, `password`, `administrator`).
pub(crate) async fn add_user(State(s): State<AppState>, req: Request) -> Response {
    let s2 = s.clone();
    post_admin(
        &s,
        req,
        "POST /admin/users",
        "/api/v1/users",
        |form| async move {
            let password = form.get("password").unwrap_or("");
            if password.is_empty() {
                return Err(ApiError::new(
                    ErrorCode::InvalidArgument,
                    "a new user needs a password (field password)",
                ));
            }
            s2.access
                .add_user(&berth_core::api::UserRequest {
                    name: form.get("name").unwrap_or("").trim().to_string(),
                    password: Some(password.to_string()),
                    administrator: form.get("administrator").is_some(),
                    team: None,
                    role: None,
                })
                .await
                .map_err(perm::from_access)?;
            Ok::<_, ApiError>("/admin/users".to_string())
        },
    )
    .await
}

/// `POST /admin/users/{name}/disable`.
pub(crate) async fn disable_user(
    State(s): State<AppState>,
    Path(name): Path<String>,
    req: Request,
) -> Response {
    let s2 = s.clone();
    post_admin(
        &s,
        req,
        "POST /admin/users/{name}/disable",
        "/api/v1/users/{name}/disable",
        |_| async move {
            s2.access
                .disable_user(&name)
                .await
                .map_err(perm::from_access)?;
            Ok::<_, ApiError>("/admin/users".to_string())
        },
    )
    .await
}

/// `POST /admin/teams`: create a team (`name`).
pub(crate) async fn create_team(State(s): State<AppState>, req: Request) -> Response {
    let s2 = s.clone();
    post_admin(
        &s,
        req,
        "POST /admin/teams",
        "/api/v1/teams",
        |form| async move {
            s2.access
                .create_team(form.get("name").unwrap_or("").trim())
                .map_err(perm::from_access)?;
            Ok::<_, ApiError>("/admin/teams".to_string())
        },
    )
    .await
}

/// `POST /admin/teams/{team}/members`: add a member or change a role (`user`, `role`).
pub(crate) async fn set_member(
    State(s): State<AppState>,
    Path(team): Path<String>,
    req: Request,
) -> Response {
    let s2 = s.clone();
    post_form(
        &s,
        req,
        "POST /admin/teams/{team}/members",
        "/api/v1/teams/{team}/members",
        Some(team.clone()),
        |_, form, _| async move {
            let role: berth_core::team::Role = form
                .get("role")
                .unwrap_or("")
                .parse()
                .map_err(|e: String| ApiError::new(ErrorCode::InvalidArgument, e))?;
            s2.access
                .set_member(&team, form.get("user").unwrap_or("").trim(), role)
                .await
                .map_err(perm::from_access)?;
            Ok::<_, ApiError>("/admin/teams".to_string())
        },
    )
    .await
}

/// `POST /services/{service}/build`: queue a build (`ref`, optional), then its page.
pub(crate) async fn start_build(
    State(s): State<AppState>,
    Path(name): Path<String>,
    req: Request,
) -> Response {
    let s2 = s.clone();
    post_form(
        &s,
        req,
        "POST /services/{service}/build",
        "/api/v1/services/{name}/builds",
        None,
        |team, form, _| async move {
            let git_ref = form
                .get("ref")
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_string);
            let b = s2
                .cp
                .start_build(&team.name(&name)?, &berth_core::api::BuildStart { git_ref })
                .map_err(|e| team.localize(e))?;
            Ok::<_, ApiError>(format!("/builds/{}", b.id))
        },
    )
    .await
}

/// `POST /services/{service}/deploy` (fields `app`, `version`): the version into the
/// application's services that run an image of the service (`berth deploy`); back to the
/// application's page.
pub(crate) async fn deploy(
    State(s): State<AppState>,
    Path(name): Path<String>,
    req: Request,
) -> Response {
    let s2 = s.clone();
    post_form(
        &s,
        req,
        "POST /services/{service}/deploy",
        "/api/v1/apps/{app}/deploy",
        None,
        |team, form, _| async move {
            let field = |k: &str| form.get(k).map(str::trim).unwrap_or_default().to_string();
            let (app, version) = (field("app"), field("version"));
            // `app@env` names the application in another environment.
            let global = match app.split_once('@') {
                Some((a, env)) => {
                    team.name(a)?;
                    berth_core::team::app_global(&team.team, env, a)
                }
                None => team.app(&app)?,
            };
            s2.cp
                .deploy_version(&global, &team.name(&name)?, &version)
                .await
                .map_err(|e| team.localize(e))?;
            Ok::<_, ApiError>(format!("/apps/{}?team={}", enc(&app), enc(&team.team)))
        },
    )
    .await
}

/// `POST /services/{service}/versions/{version}/{submit|approve|reject|publish}`.
pub(crate) async fn transition(
    State(s): State<AppState>,
    Path((name, version, step)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    let t = match step.as_str() {
        "submit" => Transition::Submit,
        "approve" => Transition::Approve,
        "reject" => Transition::Reject,
        "publish" => Transition::Publish,
        _ => {
            return error_page(&ApiError::new(
                ErrorCode::NotFound,
                format!("no such step {step:?}: submit, approve, reject or publish"),
            ))
        }
    };
    let s2 = s.clone();
    let action = match t {
        Transition::Submit => "POST /services/{service}/versions/{version}/submit",
        Transition::Approve => "POST /services/{service}/versions/{version}/approve",
        Transition::Reject => "POST /services/{service}/versions/{version}/reject",
        _ => "POST /services/{service}/versions/{version}/publish",
    };
    post_form(
        &s,
        req,
        action,
        transition_route(t),
        None,
        |team, form, sess| async move {
            let text = form
                .get("reason")
                .or_else(|| form.get("note"))
                .map(str::trim)
                .filter(|x| !x.is_empty());
            s2.cp
                .transition_version(
                    &team.name(&name)?,
                    &version,
                    t,
                    &sess.principal.user,
                    text,
                    None,
                )
                .map_err(|e| team.localize(e))?;
            Ok::<_, ApiError>(service_href(&name, &team.team))
        },
    )
    .await
}

// -- builds ----------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "build.html")]
struct BuildPage<'a> {
    user: &'a str,
    csrf: &'a str,
    admin: bool,
    id: u64,
    service: String,
    service_href: String,
    team: String,
    status: String,
    reason: String,
    version: String,
    git_ref: String,
    created_at: String,
    finished_at: String,
    log: String,
    events: String,
    may_cancel: bool,
}

/// A build id from the URL (a number, else `build_not_found`).
fn build_id(text: &str) -> Result<u64, ApiError> {
    text.parse().map_err(|_| {
        ApiError::new(
            ErrorCode::BuildNotFound,
            format!("build {text:?} does not exist (build ids are numbers)"),
        )
    })
}

/// The build and its team, if `p` may read it (another team's build answers as one that does
/// not exist, as in the API).
fn build_in_team(
    s: &AppState,
    p: &berth_access::Principal,
    id: u64,
    route: &str,
    method: &str,
) -> Result<(berth_core::api::BuildView, Team), ApiError> {
    let b = s.cp.build(id)?;
    let (team, _) = berth_core::team::split_global(&b.service);
    let t = perm::scope(&s.access, p, method, route, Some(team)).map_err(|e| {
        if e.code == ErrorCode::Forbidden
            && !s
                .access
                .list_teams(p)
                .is_ok_and(|l| l.iter().any(|x| x.name == team))
        {
            berth_controlplane::CpError::BuildNotFound(id).into()
        } else {
            e
        }
    })?;
    Ok((b, t))
}

pub(crate) async fn build_page(
    State(s): State<AppState>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let id = match build_id(&id) {
        Ok(n) => n,
        Err(e) => return error_page(&e),
    };
    let (parts, _) = req.into_parts();
    let Some(sess) = viewer(&s, &parts) else {
        return redirect("/login");
    };
    page(
        async {
            let p = &sess.principal;
            let (b, t) = build_in_team(&s, p, id, "/api/v1/builds/{id}", "GET")?;
            let may_log = perm::scope(
                &s.access,
                p,
                "GET",
                "/api/v1/builds/{id}/logs",
                Some(&t.team),
            )
            .is_ok();
            let log = if may_log {
                s.cp.build_logs(id, false)?
                    .collect::<Vec<String>>()
                    .await
                    .concat()
            } else {
                String::new()
            };
            let live = b.status == "queued" || b.status == "running";
            let local = t.show(&b.service);
            Ok::<_, ApiError>(render(&BuildPage {
                user: &p.user,
                csrf: &sess.csrf,
                admin: p.administrator,
                id,
                service_href: service_href(&local, &t.team),
                service: local,
                team: t.team.clone(),
                status: b.status,
                reason: t.text(&b.reason),
                version: b.version.unwrap_or_default(),
                git_ref: b.git_ref.unwrap_or_default(),
                created_at: b.created_at,
                finished_at: b.finished_at.unwrap_or_default(),
                log,
                events: if live && may_log {
                    format!("/builds/{id}/events")
                } else {
                    String::new()
                },
                may_cancel: live
                    && perm::scope(
                        &s.access,
                        p,
                        "POST",
                        "/api/v1/builds/{id}/cancel",
                        Some(&t.team),
                    )
                    .is_ok(),
            }))
        }
        .await,
    )
}

/// `GET /builds/{id}/events`: the log from its start, followed to its end, then `end`.
pub(crate) async fn build_events(
    State(s): State<AppState>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let id = match build_id(&id) {
        Ok(n) => n,
        Err(e) => return error_page(&e),
    };
    let (parts, _) = req.into_parts();
    page(
        async {
            let sess = live::stream_session(&s, &parts.headers)?;
            build_in_team(&s, &sess.principal, id, "/api/v1/builds/{id}/logs", "GET")?;
            let lines = s.cp.build_logs(id, true)?;
            let events = lines
                .map(|l| data_event(&l))
                .chain(futures_util::stream::once(async { END_EVENT.to_string() }));
            Ok::<_, ApiError>(live::sse(events))
        }
        .await,
    )
}

/// `POST /builds/{id}/cancel`.
pub(crate) async fn cancel_build(
    State(s): State<AppState>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let id = match build_id(&id) {
        Ok(n) => n,
        Err(e) => return error_page(&e),
    };
    // The build's team, for the permission check; an unknown build is refused by the post.
    let team =
        s.cp.build(id)
            .ok()
            .map(|b| berth_core::team::split_global(&b.service).0.to_string());
    let s2 = s.clone();
    post_form(
        &s,
        req,
        "POST /builds/{id}/cancel",
        "/api/v1/builds/{id}/cancel",
        team,
        |_, _, _| async move {
            s2.cp.cancel_build(id)?;
            Ok::<_, ApiError>(format!("/builds/{id}"))
        },
    )
    .await
}

// -- images ----------------------------------------------------------------------------------

struct ImageLine {
    service: String,
    service_href: String,
    version: String,
    tag: String,
    digest: String,
    size: String,
    state: String,
    deployed: bool,
    rollback_target: bool,
    created_at: String,
}

struct ImagesSection {
    team: String,
    images: Vec<ImageLine>,
    error: String,
}

#[derive(Template)]
#[template(path = "images.html")]
struct ImagesPage<'a> {
    user: &'a str,
    csrf: &'a str,
    admin: bool,
    teams: Vec<ImagesSection>,
}

pub(crate) async fn images(State(s): State<AppState>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let Some(sess) = viewer(&s, &parts) else {
        return redirect("/login");
    };
    page(
        async {
            let teams = teams_reading(
                &s,
                &sess.principal,
                "/api/v1/images",
                query_param(&parts, "team").as_deref(),
            )?;
            let all = s.cp.images(None).await.map_err(ApiError::from);
            let mut sections = Vec::new();
            for t in teams {
                let (images, error) = match &all {
                    Ok(list) => (
                        list.iter()
                            .filter_map(|i| {
                                let local = t.local(&i.service)?;
                                Some(ImageLine {
                                    service_href: service_href(local, &t.team),
                                    service: local.to_string(),
                                    version: i.version.clone(),
                                    tag: i.tag.clone(),
                                    digest: i.digest.clone(),
                                    size: size_text(i.size),
                                    state: i.state.clone(),
                                    deployed: i.deployed,
                                    rollback_target: i.rollback_target,
                                    created_at: i.created_at.clone(),
                                })
                            })
                            .collect(),
                        String::new(),
                    ),
                    Err(e) => (Vec::new(), e.message.clone()),
                };
                sections.push(ImagesSection {
                    team: t.team.clone(),
                    images,
                    error,
                });
            }
            Ok::<_, ApiError>(render(&ImagesPage {
                user: &sess.principal.user,
                csrf: &sess.csrf,
                admin: sess.principal.administrator,
                teams: sections,
            }))
        }
        .await,
    )
}

// -- the audit log ---------------------------------------------------------------------------

struct AuditLine {
    time: String,
    user: String,
    team: String,
    action: String,
    object: String,
    source: String,
    status: u16,
    code: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage<'a> {
    user: &'a str,
    csrf: &'a str,
    admin: bool,
    filter_user: String,
    since: String,
    rows: Vec<AuditLine>,
    more: bool,
}

/// The rows an audit page reads (the newest of them are shown first).
const AUDIT_ROWS: u32 = 1000;

/// `GET /audit?user=&since=`: one's own rows, or (administrator) anyone's; `since` as the API's
/// (RFC 3339 or `15m`, `1h`, `7d`), default the last 24 hours.
pub(crate) async fn audit(State(s): State<AppState>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let Some(sess) = viewer(&s, &parts) else {
        return redirect("/login");
    };
    page((|| -> Result<Response, ApiError> {
        let p = &sess.principal;
        allowed(p, "GET", "/api/v1/audit")?;
        let filter_user = query_param(&parts, "user").unwrap_or_default();
        let since = query_param(&parts, "since").unwrap_or_else(|| "24h".to_string());
        let mut all = Vec::new();
        let mut after = None;
        // Page through to the newest rows of the period (oldest first from the store).
        loop {
            let pg = s
                .access
                .query(
                    p,
                    Some(filter_user.as_str()).filter(|u| !u.is_empty()),
                    Some(since.as_str()),
                    after,
                    Some(AUDIT_ROWS),
                )
                .map_err(perm::from_access)?;
            let next = pg.next_after;
            all.extend(pg.entries);
            if all.len() > 4 * AUDIT_ROWS as usize {
                all.drain(..all.len() - AUDIT_ROWS as usize);
            }
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        let more = all.len() > AUDIT_ROWS as usize;
        all.reverse();
        all.truncate(AUDIT_ROWS as usize);
        Ok(render(&AuditPage {
            user: &p.user,
            csrf: &sess.csrf,
            admin: p.administrator,
            filter_user,
            since,
            more,
            rows: all
                .into_iter()
                .map(|r| AuditLine {
                    time: r.time,
                    user: r.user.unwrap_or_default(),
                    team: r.team.unwrap_or_default(),
                    action: r.action,
                    object: r.object,
                    source: r.source,
                    status: r.status,
                    code: r.code.unwrap_or_default(),
                })
                .collect(),
        }))
    })())
}

// -- users and teams (administrator) --------------------------------------------------------

struct UserLine {
    name: String,
    administrator: bool,
    disabled: bool,
    password_change_required: bool,
    created_at: String,
    teams: String,
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage<'a> {
    user: &'a str,
    csrf: &'a str,
    admin: bool,
    users: Vec<UserLine>,
}

pub(crate) async fn users(State(s): State<AppState>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let Some(sess) = viewer(&s, &parts) else {
        return redirect("/login");
    };
    page((|| -> Result<Response, ApiError> {
        let p = &sess.principal;
        allowed(p, "GET", "/api/v1/users")?;
        let list = s.access.list_users().map_err(perm::from_access)?;
        // Team memberships, one pass over the teams.
        let mut member_of: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for t in s.access.list_teams(p).map_err(perm::from_access)? {
            for m in s.access.members(&t.name).map_err(perm::from_access)? {
                member_of.entry(m.user).or_default().push(format!(
                    "{} ({})",
                    t.name,
                    m.role.as_str()
                ));
            }
        }
        Ok(render(&UsersPage {
            user: &p.user,
            csrf: &sess.csrf,
            admin: p.administrator,
            users: list
                .into_iter()
                .map(|u| UserLine {
                    teams: member_of.remove(&u.name).unwrap_or_default().join(", "),
                    name: u.name,
                    administrator: u.administrator,
                    disabled: u.disabled,
                    password_change_required: u.password_change_required,
                    created_at: u.created_at,
                })
                .collect(),
        }))
    })())
}

struct TeamLine {
    name: String,
    created_at: String,
    members: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "teams.html")]
struct TeamsPage<'a> {
    user: &'a str,
    csrf: &'a str,
    admin: bool,
    teams: Vec<TeamLine>,
    roles: Vec<&'static str>,
}

pub(crate) async fn teams(State(s): State<AppState>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let Some(sess) = viewer(&s, &parts) else {
        return redirect("/login");
    };
    page((|| -> Result<Response, ApiError> {
        let p = &sess.principal;
        // Every team with its members: what only the administrator may see (`POST /teams`).
        allowed(p, "POST", "/api/v1/teams")?;
        let mut lines = Vec::new();
        for t in s.access.list_teams(p).map_err(perm::from_access)? {
            let members = s
                .access
                .members(&t.name)
                .map_err(perm::from_access)?
                .into_iter()
                .map(|m| (m.user, m.role.as_str().to_string()))
                .collect();
            lines.push(TeamLine {
                name: t.name,
                created_at: t.created_at,
                members,
            });
        }
        Ok(render(&TeamsPage {
            user: &p.user,
            csrf: &sess.csrf,
            admin: p.administrator,
            teams: lines,
            roles: berth_core::team::Role::ALL
                .iter()
                .map(|r| r.as_str())
                .collect(),
        }))
    })())
}

// -- the gateway -----------------------------------------------------------------------------

struct RouteLine {
    app: String,
    app_href: String,
    service: String,
    host: String,
    prefix: String,
    endpoints: usize,
    policy: String,
    breaker: String,
    rate_limited: u64,
    calls_per_minute: u64,
    error_rate: String,
    p50: String,
    p95: String,
    charts: Vec<String>,
}

struct PortLine {
    app: String,
    service: String,
    listen: String,
    protocol: String,
    endpoints: usize,
}

struct GatewaySection {
    team: String,
    routes: Vec<RouteLine>,
    ports: Vec<PortLine>,
}

#[derive(Template)]
#[template(path = "gateway.html")]
struct GatewayPage<'a> {
    user: &'a str,
    csrf: &'a str,
    admin: bool,
    teams: Vec<GatewaySection>,
    metrics: bool,
}

/// From the gateway's Prometheus text: breaker state per (app, service), rate-limit refusals
/// per (app, service, host, prefix).
#[derive(Default)]
struct GatewayCounters {
    breaker: BTreeMap<(String, String), u8>,
    rate_limited: BTreeMap<(String, String, String, String), u64>,
}

/// The value of label `name` in `app="a",service="b"`.
fn label<'a>(labels: &'a str, name: &str) -> &'a str {
    let key = format!("{name}=\"");
    let mut at = 0;
    while let Some(i) = labels[at..].find(&key) {
        let start = at + i;
        if start == 0 || labels.as_bytes()[start - 1] == b',' {
            let rest = &labels[start + key.len()..];
            // Values are escaped (`\"`): the value ends at the first unescaped quote.
            let mut prev = b' ';
            for (j, b) in rest.bytes().enumerate() {
                if b == b'"' && prev != b'\\' {
                    return &rest[..j];
                }
                prev = b;
            }
            return rest;
        }
        at = start + key.len();
    }
    ""
}

fn gateway_counters(text: &str) -> GatewayCounters {
    let mut c = GatewayCounters::default();
    for line in text.lines() {
        let parse = |prefix: &str| -> Option<(&str, &str)> {
            let rest = line.strip_prefix(prefix)?.strip_prefix('{')?;
            let end = rest.rfind('}')?;
            Some((&rest[..end], rest[end + 1..].trim()))
        };
        if let Some((labels, v)) = parse("berth_gateway_service_circuit_state") {
            if let Ok(v) = v.parse() {
                c.breaker.insert(
                    (
                        label(labels, "app").to_string(),
                        label(labels, "service").to_string(),
                    ),
                    v,
                );
            }
        } else if let Some((labels, v)) = parse("berth_gateway_route_rate_limited_total") {
            if let Ok(v) = v.parse() {
                c.rate_limited.insert(
                    (
                        label(labels, "app").to_string(),
                        label(labels, "service").to_string(),
                        label(labels, "host").to_string(),
                        label(labels, "prefix").to_string(),
                    ),
                    v,
                );
            }
        }
    }
    c
}

fn policy_text(p: &berth_core::policy::RoutePolicy) -> String {
    let mut parts = Vec::new();
    if p.auth.is_some() {
        parts.push("auth".to_string());
    }
    if let Some(r) = &p.rate_limit {
        parts.push(format!("rate limit {r:?}"));
    }
    if p.redirect_https {
        parts.push("redirect to HTTPS".to_string());
    }
    if p.circuit_breaker.is_some() {
        parts.push("circuit breaker".to_string());
    }
    if p.max_concurrency.is_some() {
        parts.push("concurrency limit".to_string());
    }
    if p.retries.is_some() {
        parts.push("retries".to_string());
    }
    if !p.plans.is_empty() {
        parts.push(format!("{} plans", p.plans.len()));
    }
    if parts.is_empty() {
        "none".to_string()
    } else {
        parts.join(", ")
    }
}

/// Unix seconds of an RFC 3339 time.
fn unix_of(t: &str) -> Option<i64> {
    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(time::OffsetDateTime::unix_timestamp)
}

/// The hour's minutes, oldest first, as 60 slots (`None`: no figure that minute).
fn hour_series(
    minutes: &[berth_core::api::MinuteStats],
    now: i64,
    f: impl Fn(&berth_core::api::MinuteStats) -> Option<f64>,
) -> Vec<Option<f64>> {
    let first = now.div_euclid(60) * 60 - 59 * 60;
    let mut out = vec![None; 60];
    for m in minutes {
        if let Some(t) = unix_of(&m.start) {
            let i = (t - first).div_euclid(60);
            if let Ok(i) = usize::try_from(i) {
                if i < 60 {
                    out[i] = f(m);
                }
            }
        }
    }
    out
}

pub(crate) async fn gateway(State(s): State<AppState>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let Some(sess) = viewer(&s, &parts) else {
        return redirect("/login");
    };
    page((|| -> Result<Response, ApiError> {
        let p = &sess.principal;
        let teams = teams_reading(
            &s,
            p,
            "/api/v1/routes",
            query_param(&parts, "team").as_deref(),
        )?;
        let table = s.cp.routing_table();
        let counters = s
            .metrics
            .as_ref()
            .map(|m| gateway_counters(&m()))
            .unwrap_or_default();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut sections = Vec::new();
        for t in teams {
            let mut routes = Vec::new();
            for r in table.routes.iter().filter(|r| t.owns(&r.app)) {
                let local = t.show(&r.app);
                let stats = s.cp.route_stats(&r.app, &r.service).ok();
                let minutes = stats.as_ref().map(|x| x.minutes.as_slice()).unwrap_or(&[]);
                #[allow(clippy::cast_precision_loss)]
                let requests = hour_series(minutes, now, |m| Some(m.requests as f64));
                #[allow(clippy::cast_precision_loss)]
                let errors = hour_series(minutes, now, |m| {
                    (m.requests > 0).then(|| 100.0 * m.errors as f64 / m.requests as f64)
                });
                let p50 = hour_series(minutes, now, |m| m.p50_ms);
                let p95 = hour_series(minutes, now, |m| m.p95_ms);
                let charts = vec![
                    svg::chart(
                        "Requests",
                        "per minute",
                        &[svg::Series {
                            label: "requests",
                            class: "s1",
                            values: &requests,
                        }],
                    ),
                    svg::chart(
                        "Errors",
                        "%",
                        &[svg::Series {
                            label: "5xx %",
                            class: "s3",
                            values: &errors,
                        }],
                    ),
                    svg::chart(
                        "Latency",
                        "ms",
                        &[
                            svg::Series {
                                label: "p50",
                                class: "s1",
                                values: &p50,
                            },
                            svg::Series {
                                label: "p95",
                                class: "s2",
                                values: &p95,
                            },
                        ],
                    ),
                ];
                let host = r.host.clone().unwrap_or_default();
                routes.push(RouteLine {
                    app_href: crate::app_href(t.app_local(&r.app).unwrap_or(&local), &t.team),
                    app: local,
                    service: r.service.clone(),
                    endpoints: r.endpoints.len(),
                    policy: policy_text(&r.policy),
                    breaker: match counters.breaker.get(&(r.app.clone(), r.service.clone())) {
                        None => "-".to_string(),
                        Some(0) => "closed".to_string(),
                        Some(1) => "open".to_string(),
                        Some(_) => "half-open".to_string(),
                    },
                    rate_limited: counters
                        .rate_limited
                        .get(&(
                            r.app.clone(),
                            r.service.clone(),
                            host.clone(),
                            r.path_prefix.clone(),
                        ))
                        .copied()
                        .unwrap_or(0),
                    calls_per_minute: stats.as_ref().map_or(0, |x| x.calls_per_minute),
                    error_rate: stats.as_ref().map_or_else(
                        || "-".to_string(),
                        |x| format!("{} %", svg::fmt_num(100.0 * x.error_rate)),
                    ),
                    p50: stats
                        .as_ref()
                        .and_then(|x| x.p50_ms)
                        .map_or_else(|| "-".to_string(), |v| format!("{} ms", svg::fmt_num(v))),
                    p95: stats
                        .as_ref()
                        .and_then(|x| x.p95_ms)
                        .map_or_else(|| "-".to_string(), |v| format!("{} ms", svg::fmt_num(v))),
                    host,
                    prefix: r.path_prefix.clone(),
                    charts,
                });
            }
            let ports = table
                .ports
                .iter()
                .filter(|x| t.owns(&x.app))
                .map(|x| PortLine {
                    app: t.show(&x.app),
                    service: x.service.clone(),
                    listen: x.listen.to_string(),
                    protocol: format!("{:?}", x.protocol).to_lowercase(),
                    endpoints: x.endpoints.len(),
                })
                .collect();
            sections.push(GatewaySection {
                team: t.team.clone(),
                routes,
                ports,
            });
        }
        Ok(render(&GatewayPage {
            user: &p.user,
            csrf: &sess.csrf,
            admin: p.administrator,
            teams: sections,
            metrics: s.metrics.is_some(),
        }))
    })())
}

// -- topology ----------------------------------------------------------------------------------

/// The topology picture of an application (global `app`) from its current revision's project.
pub(crate) fn topology_svg(s: &AppState, t: &Team, global: &str) -> Result<String, ApiError> {
    let (_, project) = s.cp.current_project(global).map_err(|e| t.localize(e))?;
    let mut topo = svg::Topology::default();
    for (name, svc) in &project.services {
        let image = svc.image.rsplit('/').next().unwrap_or(&svc.image);
        let mut uses: Vec<String> = svc
            .berth
            .uses
            .iter()
            .map(|u| format!("market {u}"))
            .collect();
        if let Some(m) = &svc.berth.from_market {
            uses.push(format!("copy of {m}"));
        }
        for m in &svc.mounts {
            if m.kind == berth_compose::MountKind::Volume {
                if let Some(src) = &m.source {
                    uses.push(format!("volume {src}"));
                }
            }
        }
        topo.services.push(svg::Service {
            name: name.clone(),
            detail: format!(
                "{} replica{} · {}",
                svc.replicas,
                if svc.replicas == 1 { "" } else { "s" },
                if image.is_empty() { "(build)" } else { image }
            ),
            depends_on: svc.depends_on.keys().cloned().collect(),
            uses,
        });
        for r in &svc.berth.routes {
            topo.entries.push(svg::Entry {
                label: format!("{}{}", r.host.as_deref().unwrap_or(""), r.path_prefix),
                service: name.clone(),
            });
        }
        for p in &svc.ports {
            if let Some(published) = p.published {
                topo.entries.push(svg::Entry {
                    label: format!(
                        "port {published}/{}",
                        format!("{:?}", p.protocol).to_lowercase()
                    ),
                    service: name.clone(),
                });
            }
        }
    }
    Ok(svg::topology(&topo))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_and_rate_limit_figures_are_read_from_the_gateway_text() {
        let text = "# HELP x\nberth_gateway_service_circuit_state{app=\"shop/a\",service=\"web\"} 1\nberth_gateway_route_rate_limited_total{app=\"shop/a\",service=\"web\",host=\"\",prefix=\"/\"} 7\n";
        let c = gateway_counters(text);
        assert_eq!(c.breaker[&("shop/a".into(), "web".into())], 1);
        assert_eq!(
            c.rate_limited[&("shop/a".into(), "web".into(), String::new(), "/".into())],
            7
        );
        assert_eq!(label("xapp=\"no\",app=\"yes\"", "app"), "yes");
    }

    #[test]
    fn a_source_reads_as_words() {
        use berth_core::source::{GitRepo, ServiceSource, SvnRepo};
        let git = ServiceSource::Git(GitRepo {
            branch: Some("main".into()),
            url: "/srv/repo".into(),
            path: Some("api".into()),
            poll_secs: Some(60),
            preview_app: None,
            preview_ttl_secs: None,
        });
        assert_eq!(
            source_text(&git),
            "Git /srv/repo, branch main, directory api, polled every 60 s"
        );
        let previewed = ServiceSource::Git(GitRepo {
            branch: Some("main".into()),
            url: "/srv/repo".into(),
            path: None,
            poll_secs: None,
            preview_app: Some("shop".into()),
            preview_ttl_secs: None,
        });
        assert_eq!(
            source_text(&previewed),
            "Git /srv/repo, branch main; other branches previewed as shop in preview-<branch>"
        );
        let svn = ServiceSource::Svn(SvnRepo {
            poll_secs: None,
            url: "svn://h/r".into(),
        });
        assert_eq!(source_text(&svn), "Subversion svn://h/r");
    }

    #[test]
    fn minutes_land_in_their_slot_of_the_hour() {
        let now = 1_800_000_000 + 30; // 30 s into a minute
        let m = |start: i64, requests: u64| berth_core::api::MinuteStats {
            start: time::OffsetDateTime::from_unix_timestamp(start)
                .unwrap()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap(),
            requests,
            errors: 0,
            p50_ms: None,
            p95_ms: None,
        };
        #[allow(clippy::cast_precision_loss)]
        let v = hour_series(
            &[m(1_800_000_000, 5), m(1_800_000_000 - 120, 2)],
            now,
            |x| Some(x.requests as f64),
        );
        assert_eq!(v.len(), 60);
        assert_eq!(v[59], Some(5.0));
        assert_eq!(v[57], Some(2.0));
        assert_eq!(v[58], None);
    }
}
