//! Berth's dashboard: server-rendered HTML pages served on the API listener (docs/dashboard.md).
//!
//! Rules it keeps:
//! - Pages call the same application layer as `/api/v1` (`ControlPlane`), after the same
//!   permission check ([`perm::scope`] on the API route that does the same thing); a form is
//!   shown only when that check passes, and the post checks again.
//! - A browser is authenticated by its session cookie ([`session`]); every post carries the
//!   session's CSRF token (field `csrf`) or is refused with `403 csrf_failed` before anything
//!   else is done. `/api/v1` never reads the cookie.
//! - Every post leaves an audit row, as an API call does.
//! - No JavaScript is needed: every action is a plain form; CSS is embedded in the binary.
//! - Errors are HTML pages with the API's status and code ([`berth_api::error::RenderedPage`]).

mod live;
mod pages;
pub mod perm;
pub mod session;
pub mod svg;

use askama::Template;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use berth_access::AuditRecord;
use berth_api::error::{ApiError, RenderedPage};
use berth_api::team::Team;
use berth_api::{AppState, RequestId};
use berth_core::api::{RollbackRequest, ScaleRequest};
use berth_core::ErrorCode;
use http::request::Parts;
use http::{HeaderValue, StatusCode};
use session::{Session, LOGIN_CSRF_COOKIE, SESSION_COOKIE};
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// How the dashboard is served.
#[derive(Clone, Copy, Debug, Default)]
pub struct Config {
    /// The listener serves TLS: cookies are marked `Secure`.
    pub tls: bool,
}

/// The dashboard's routes, to mount with `berth_api::router_with_pages`.
pub fn router(config: Config) -> Router<AppState> {
    Router::new()
        .route("/", get(overview))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/apps/{app}", get(app_page))
        .route("/apps/{app}/scale", post(scale))
        .route("/apps/{app}/rollback", post(rollback))
        .route("/apps/{app}/status/events", get(pages::app_status_events))
        .route("/apps/{app}/logs/{service}", get(pages::app_logs))
        .route(
            "/apps/{app}/logs/{service}/events",
            get(pages::app_log_events),
        )
        .route("/events/stream", get(pages::team_events))
        .route("/services", get(pages::services))
        .route("/services/{service}", get(pages::service_page))
        .route("/services/{service}/build", post(pages::start_build))
        .route("/services/{service}/deploy", post(pages::deploy))
        .route(
            "/services/{service}/versions/{version}/{step}",
            post(pages::transition),
        )
        .route("/builds/{id}", get(pages::build_page))
        .route("/builds/{id}/events", get(pages::build_events))
        .route("/builds/{id}/cancel", post(pages::cancel_build))
        .route("/images", get(pages::images))
        .route("/audit", get(pages::audit))
        .route("/admin/users", get(pages::users).post(pages::add_user))
        .route("/admin/users/{name}/disable", post(pages::disable_user))
        .route("/admin/teams", get(pages::teams).post(pages::create_team))
        .route("/admin/teams/{team}/members", post(pages::set_member))
        .route("/gateway", get(pages::gateway))
        .route("/assets/berth.css", get(css))
        .route("/assets/berth.js", get(js))
        .layer(Extension(config))
}

/// The stylesheet, embedded (one file: `include_str!` needs no asset crate).
const CSS: &str = include_str!("../assets/berth.css");

/// The script of the live parts (server-sent events); every page works without it.
const JS: &str = include_str!("../assets/berth.js");

async fn js() -> Response {
    (
        [
            (http::header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (http::header::CACHE_CONTROL, "max-age=300"),
        ],
        JS,
    )
        .into_response()
}

/// The most a form body may hold.
const FORM_LIMIT: usize = 64 * 1024;

async fn css() -> Response {
    (
        [
            (http::header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (http::header::CACHE_CONTROL, "max-age=300"),
        ],
        CSS,
    )
        .into_response()
}

// -- rendering -------------------------------------------------------------------------------

fn render(t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => {
            let mut r = Html(html).into_response();
            r.headers_mut().insert(
                http::header::CACHE_CONTROL,
                HeaderValue::from_static("no-store"),
            );
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "dashboard template failed");
            error_page(&ApiError::new(
                ErrorCode::Internal,
                "internal error; see the server log",
            ))
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    user: &'a str,
    csrf: &'a str,
    admin: bool,
    status: u16,
    code: &'a str,
    message: &'a str,
}

/// An error as an HTML page with the API's status and code.
fn error_page(e: &ApiError) -> Response {
    let page = ErrorPage {
        user: "",
        csrf: "",
        admin: false,
        status: e.code.status(),
        code: e.code.as_str(),
        message: &e.message,
    };
    let html = page
        .render()
        .unwrap_or_else(|_| format!("{}: {}", e.code.as_str(), e.message));
    let status = StatusCode::from_u16(e.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = (status, Html(html)).into_response();
    r.extensions_mut().insert(RenderedPage);
    r
}

fn redirect(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(http::header::LOCATION, v);
    }
    r
}

fn with_cookie(mut r: Response, cookie: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        r.headers_mut().append(http::header::SET_COOKIE, v);
    }
    r
}

/// `?name=` of a page's URL.
fn query_param(parts: &Parts, name: &str) -> Option<String> {
    form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

/// A URL-encoded component.
fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn app_href(app: &str, team: &str) -> String {
    format!("/apps/{}?team={}", enc(app), enc(team))
}

// -- forms -----------------------------------------------------------------------------------

/// A posted form's fields, in order.
struct Form(Vec<(String, String)>);

impl Form {
    async fn read(body: Body) -> Result<Form, ApiError> {
        let bytes = axum::body::to_bytes(body, FORM_LIMIT).await.map_err(|_| {
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("a form may hold at most {FORM_LIMIT} bytes"),
            )
        })?;
        Ok(Form(
            form_urlencoded::parse(&bytes)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        ))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn csrf_failed() -> ApiError {
    ApiError::new(
        ErrorCode::CsrfFailed,
        "the form did not carry this session's token (field csrf): reload the page and send it again",
    )
}

/// The session of a post whose form carries its CSRF token; `401` without a session, `403
/// csrf_failed` without the token.
fn checked_session(s: &AppState, parts: &Parts, form: &Form) -> Result<Session, ApiError> {
    let session = session::session(&s.access, &parts.headers).ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unauthorized,
            "not logged in, or the session ended: log in at /login",
        )
    })?;
    match form.get("csrf") {
        Some(t) if session::same(t, &session.csrf) => Ok(session),
        _ => Err(csrf_failed()),
    }
}

/// One audit row for a post, as the API writes for its calls.
struct Audit<'a> {
    s: &'a AppState,
    parts: &'a Parts,
    action: String,
    user: Option<String>,
    token: Option<String>,
    team: Option<String>,
}

impl Audit<'_> {
    fn record(self, resp: &Response, code: Option<ErrorCode>) {
        let source = self
            .parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(|| "unknown".to_string(), |c| c.0.ip().to_string());
        self.s.access.record(AuditRecord {
            user: self.user,
            token: self.token,
            team: self.team,
            action: self.action,
            object: self.parts.uri.path().chars().take(1024).collect(),
            source,
            request_id: self
                .parts
                .extensions
                .get::<RequestId>()
                .map(|r| r.0.clone())
                .unwrap_or_default(),
            status: resp.status().as_u16(),
            code: code.map(|c| c.as_str().to_string()),
            ..AuditRecord::default()
        });
    }
}

// -- login and logout --------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    user: &'a str,
    csrf: &'a str,
    admin: bool,
    username: &'a str,
    failed: &'a str,
}

async fn login_page(
    State(s): State<AppState>,
    Extension(cfg): Extension<Config>,
    req: Request,
) -> Response {
    if session::session(&s.access, req.headers()).is_some() {
        return redirect("/");
    }
    login_form(cfg, "", "", StatusCode::OK)
}

/// The login form with a new double-submit token.
fn login_form(cfg: Config, username: &str, failed: &str, status: StatusCode) -> Response {
    let token = session::random_token();
    let mut r = render(&LoginPage {
        user: "",
        csrf: &token,
        admin: false,
        username,
        failed,
    });
    if r.status() == StatusCode::OK {
        *r.status_mut() = status;
        if !status.is_success() {
            r.extensions_mut().insert(RenderedPage);
        }
    }
    with_cookie(
        r,
        &session::set_cookie(LOGIN_CSRF_COOKIE, &token, cfg.tls, Some(3600)),
    )
}

async fn login(
    State(s): State<AppState>,
    Extension(cfg): Extension<Config>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let mut audit = Audit {
        s: &s,
        parts: &parts,
        action: "login".to_string(),
        user: None,
        token: None,
        team: None,
    };
    let form = match Form::read(body).await {
        Ok(f) => f,
        Err(e) => {
            let r = error_page(&e);
            audit.record(&r, Some(e.code));
            return r;
        }
    };
    let expected = session::cookie(&parts.headers, LOGIN_CSRF_COOKIE);
    let csrf_ok = matches!((form.get("csrf"), expected), (Some(a), Some(b)) if session::same(a, b));
    if !csrf_ok {
        let e = csrf_failed();
        let r = error_page(&e);
        audit.record(&r, Some(e.code));
        return r;
    }
    let username = form.get("username").unwrap_or("");
    let password = form.get("password").unwrap_or("");
    let source = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".to_string(), |c| c.0.ip().to_string());
    match s.access.login(username, password, &source).await {
        Ok(issued) => {
            audit.user = Some(username.to_string());
            audit.token = Some(issued.name.clone());
            let r = redirect("/");
            let r = with_cookie(
                r,
                &session::set_cookie(SESSION_COOKIE, &issued.token, cfg.tls, None),
            );
            let r = with_cookie(
                r,
                &session::set_cookie(LOGIN_CSRF_COOKIE, "", cfg.tls, Some(0)),
            );
            audit.record(&r, None);
            r
        }
        Err(e) => {
            // As the API's login: what was typed as a user name is kept only if it could be one.
            audit.user = Some(if berth_access::valid_name(username) {
                username.to_string()
            } else {
                "(invalid)".to_string()
            });
            let status = StatusCode::from_u16(e.code.status()).unwrap_or(StatusCode::UNAUTHORIZED);
            let shown = if berth_access::valid_name(username) {
                username
            } else {
                ""
            };
            let mut r = login_form(cfg, shown, &e.message, status);
            // As the API's login: a lockout says when to try again.
            if let Some(v) = e
                .retry_after
                .and_then(|secs| HeaderValue::from_str(&secs.to_string()).ok())
            {
                r.headers_mut().insert(http::header::RETRY_AFTER, v);
            }
            audit.record(&r, Some(e.code));
            r
        }
    }
}

async fn logout(
    State(s): State<AppState>,
    Extension(cfg): Extension<Config>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let form = match Form::read(body).await {
        Ok(f) => f,
        Err(e) => return error_page(&e),
    };
    let session = match checked_session(&s, &parts, &form) {
        Ok(sess) => sess,
        Err(e) if e.code == ErrorCode::Unauthorized => {
            // No session (any more): nothing to end.
            return with_cookie(
                redirect("/login"),
                &session::set_cookie(SESSION_COOKIE, "", cfg.tls, Some(0)),
            );
        }
        Err(e) => return error_page(&e),
    };
    let p = session.principal;
    let result = s.access.logout(&p);
    let code = result.as_ref().err().map(|e| e.code);
    let r = with_cookie(
        redirect("/login"),
        &session::set_cookie(SESSION_COOKIE, "", cfg.tls, Some(0)),
    );
    Audit {
        s: &s,
        parts: &parts,
        action: "POST /logout".to_string(),
        user: Some(p.user),
        token: Some(p.token),
        team: None,
    }
    .record(&r, code);
    r
}

// -- overview --------------------------------------------------------------------------------

struct AppRow {
    name: String,
    href: String,
    health: String,
    revision: u64,
    revision_status: String,
    replicas: String,
    problem: String,
}

struct EventRow {
    time: String,
    level: String,
    subject: String,
    message: String,
}

struct BuildRow {
    id: u64,
    service: String,
    status: String,
    created_at: String,
}

struct ReviewRow {
    href: String,
    service: String,
    version: String,
    submitted_by: String,
    submitted_at: String,
}

struct EnvRow {
    name: String,
    /// `never`, or the time and how long until then.
    expires: String,
    /// It expires within [`EXPIRING_SOON`].
    soon: bool,
    ports: String,
    protected: bool,
    apps: usize,
}

/// An environment that expires within this long waits for its team ("extend or let it go").
const EXPIRING_SOON: u64 = 24 * 3600;

fn in_words(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 2 * 86_400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        s => format!("{} days", s / 86_400),
    }
}

struct TeamSection {
    team: String,
    role: String,
    apps: Vec<AppRow>,
    /// The team's environments besides `dev` (docs/environments.md).
    envs: Vec<EnvRow>,
    /// One of them expires within [`EXPIRING_SOON`].
    expiring: bool,
    events: Vec<EventRow>,
    builds: Vec<BuildRow>,
    reviews: Vec<ReviewRow>,
    may_review: bool,
    /// The newest event shown (the live list continues after it); empty: no events allowed.
    events_stream: String,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct Overview<'a> {
    user: &'a str,
    csrf: &'a str,
    admin: bool,
    must_change_password: bool,
    teams: Vec<TeamSection>,
}

/// How many recent events a team's section shows.
const RECENT_EVENTS: usize = 10;

async fn overview(State(s): State<AppState>, req: Request) -> Response {
    let Some(sess) = session::session(&s.access, req.headers()) else {
        return redirect("/login");
    };
    let p = &sess.principal;
    let teams = match s.access.list_teams(p) {
        Ok(t) => t,
        Err(e) => return error_page(&perm::from_access(e)),
    };
    let mut sections = Vec::new();
    for t in teams {
        // A team whose applications the user may not read is left out.
        let Ok(team) = perm::scope(&s.access, p, "GET", "/api/v1/apps", Some(&t.name)) else {
            continue;
        };
        let section = match team_section(&s, p, &team, &t.name) {
            Ok(mut sec) => {
                sec.role = t
                    .role
                    .map_or_else(|| "administrator".to_string(), |r| r.as_str().to_string());
                sec
            }
            Err(e) => return error_page(&e),
        };
        sections.push(section);
    }
    render(&Overview {
        user: &p.user,
        csrf: &sess.csrf,
        admin: p.administrator,
        must_change_password: p.must_change_password,
        teams: sections,
    })
}

fn team_section(
    s: &AppState,
    p: &berth_access::Principal,
    team: &Team,
    name: &str,
) -> Result<TeamSection, ApiError> {
    let mut apps = Vec::new();
    for a in s.cp.apps()? {
        let Some(local) = team.local(&a.name) else {
            continue;
        };
        let local = local.to_string();
        // Replicas healthy (the last pass's status) / desired (the current revision's).
        let healthy: u32 =
            s.cp.status(&a.name)
                .map(|st| st.services.iter().map(|x| x.healthy).sum())
                .unwrap_or(0);
        let replicas = s.cp.desired_replicas(&a.name).map_or_else(
            |_| "-".to_string(),
            |d| format!("{healthy} / {}", d.values().sum::<u32>()),
        );
        apps.push(AppRow {
            href: app_href(&local, name),
            name: local,
            health: a.health,
            revision: a.revision,
            revision_status: a.revision_status,
            replicas,
            problem: a.problem.map(|x| team.text(&x)).unwrap_or_default(),
        });
    }
    let mut envs = Vec::new();
    if perm::scope(&s.access, p, "GET", "/api/v1/envs", Some(name)).is_ok() {
        for e in s.cp.envs(&team.team)? {
            if e.name == berth_core::team::DEV_ENV {
                continue;
            }
            let apps = s.cp.env(&team.team, &e.name).map_or(0, |v| v.apps.len());
            envs.push(EnvRow {
                expires: match (&e.expires_at, e.expires_in_secs) {
                    (Some(at), Some(secs)) => format!("{at} (in {})", in_words(secs)),
                    _ => "never".into(),
                },
                soon: e.expires_in_secs.is_some_and(|secs| secs <= EXPIRING_SOON),
                ports: e.ports.unwrap_or_default(),
                protected: e.protected,
                apps,
                name: e.name,
            });
        }
    }
    let mut events_stream = String::new();
    let events = if perm::scope(&s.access, p, "GET", "/api/v1/events", Some(name)).is_ok() {
        let visible = |t: Option<&str>| t == Some(name);
        let mut all =
            s.cp.events(0, berth_controlplane::events::CAPACITY, &visible);
        events_stream = format!(
            "/events/stream?team={}&after={}",
            enc(name),
            all.last().map_or(0, |e| e.id)
        );
        all.reverse();
        all.truncate(RECENT_EVENTS);
        all.into_iter()
            .map(|e| EventRow {
                time: e.time,
                level: e.level,
                subject: if e.subject.starts_with("berth/") {
                    e.subject
                } else {
                    team.show(&e.subject)
                },
                message: team.text(&e.message),
            })
            .collect()
    } else {
        Vec::new()
    };
    let builds = if perm::scope(&s.access, p, "GET", "/api/v1/builds", Some(name)).is_ok() {
        s.cp.builds_list(None)?
            .into_iter()
            .filter(|b| b.status == "queued" || b.status == "running")
            .filter_map(|b| {
                Some(BuildRow {
                    id: b.id,
                    service: team.local(&b.service)?.to_string(),
                    status: b.status,
                    created_at: b.created_at,
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    let may_review = perm::scope(
        &s.access,
        p,
        "POST",
        "/api/v1/services/{name}/versions/{version}/approve",
        Some(name),
    )
    .is_ok();
    let reviews = if may_review {
        s.cp.reviews(&team.team)
            .map_err(|e| team.localize(e))?
            .into_iter()
            // Never one's own: the reviewer is another user.
            .filter(|r| r.submitted_by.as_deref() != Some(p.user.as_str()))
            .map(|r| ReviewRow {
                href: format!(
                    "/services/{}?team={}",
                    enc(&team.show(&r.service)),
                    enc(name)
                ),
                service: team.show(&r.service),
                version: r.version,
                submitted_by: r.submitted_by.unwrap_or_default(),
                submitted_at: r.submitted_at.unwrap_or_default(),
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(TeamSection {
        team: name.to_string(),
        role: String::new(),
        apps,
        expiring: envs.iter().any(|e| e.soon),
        envs,
        events,
        builds,
        reviews,
        may_review,
        events_stream,
    })
}

// -- an application --------------------------------------------------------------------------

struct InstanceRow {
    service: String,
    slot: u32,
    state: String,
    health: String,
    address: String,
    restarts: u64,
    revision: u64,
}

struct RevisionRow {
    revision: u64,
    created_at: String,
    source: String,
    change: String,
    status: String,
    current: bool,
}

struct ScaleRow {
    service: String,
    logs_href: String,
    field: String,
    desired: u32,
    healthy: u32,
}

#[derive(Template)]
#[template(path = "app.html")]
struct AppPage<'a> {
    user: &'a str,
    csrf: &'a str,
    admin: bool,
    topology: String,
    status_line: String,
    status_events: String,
    app: String,
    team: String,
    scale_action: String,
    rollback_action: String,
    health: String,
    revision: u64,
    revision_status: String,
    message: String,
    instances: Vec<InstanceRow>,
    instances_error: String,
    revisions: Vec<RevisionRow>,
    services: Vec<ScaleRow>,
    may_scale: bool,
    may_rollback: bool,
    may_logs: bool,
}

async fn app_page(State(s): State<AppState>, Path(app): Path<String>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let Some(sess) = session::session(&s.access, &parts.headers) else {
        return redirect("/login");
    };
    match app_page_inner(&s, &sess, &app, query_param(&parts, "team").as_deref()).await {
        Ok(r) => r,
        Err(e) => error_page(&e),
    }
}

async fn app_page_inner(
    s: &AppState,
    sess: &Session,
    app: &str,
    team: Option<&str>,
) -> Result<Response, ApiError> {
    let p = &sess.principal;
    let t = perm::scope(&s.access, p, "GET", "/api/v1/apps/{app}", team)?;
    let global = t.name(app)?;
    let status = s.cp.status(&global).map_err(|e| t.localize(e))?;
    let history = s.cp.history(&global).map_err(|e| t.localize(e))?;
    let desired = s.cp.desired_replicas(&global).map_err(|e| t.localize(e))?;
    let (instances, instances_error) = match s.cp.ps(&global).await {
        Ok(list) => (
            list.into_iter()
                .map(|i| InstanceRow {
                    service: i.service,
                    slot: i.slot,
                    state: i.state,
                    health: i.health,
                    address: i.address,
                    restarts: i.restarts,
                    revision: i.revision,
                })
                .collect(),
            String::new(),
        ),
        // Docker being away must not hide the rest of the page.
        Err(e) => (Vec::new(), t.localize(e).message),
    };
    let may = |route: &str| perm::scope(&s.access, p, "POST", route, Some(&t.team)).is_ok();
    let topology = pages::topology_svg(s, &t, &global)?;
    let page = AppPage {
        user: &p.user,
        csrf: &sess.csrf,
        admin: p.administrator,
        topology,
        status_line: live::status_line(s, &global).unwrap_or_default(),
        status_events: format!("/apps/{}/status/events?team={}", enc(app), enc(&t.team)),
        scale_action: format!("/apps/{}/scale", enc(app)),
        rollback_action: format!("/apps/{}/rollback", enc(app)),
        app: app.to_string(),
        team: t.team.clone(),
        health: status.health,
        revision: status.revision,
        revision_status: status.revision_status,
        message: t.text(&status.message),
        instances,
        instances_error,
        revisions: history
            .into_iter()
            .map(|r| RevisionRow {
                current: r.revision == status.revision,
                revision: r.revision,
                created_at: r.created_at,
                source: r.source,
                change: t.text(&r.change),
                status: r.status,
            })
            .collect(),
        services: desired
            .into_iter()
            .map(|(name, n)| ScaleRow {
                logs_href: format!(
                    "/apps/{}/logs/{}?team={}",
                    enc(app),
                    enc(&name),
                    enc(&t.team)
                ),
                field: format!("replicas.{name}"),
                healthy: status
                    .services
                    .iter()
                    .find(|x| x.name == name)
                    .map_or(0, |x| x.healthy),
                service: name,
                desired: n,
            })
            .collect(),
        may_scale: may("/api/v1/apps/{app}/scale"),
        may_rollback: may("/api/v1/apps/{app}/rollback"),
        may_logs: perm::scope(
            &s.access,
            p,
            "GET",
            "/api/v1/apps/{app}/services/{service}/logs",
            Some(&t.team),
        )
        .is_ok(),
    };
    Ok(render(&page))
}

/// What a form post does once its session, token and permission are checked.
enum Change {
    Scale(ScaleRequest),
    Rollback(RollbackRequest),
}

/// The dashboard's action (for the audit row) and the API route whose permission it needs.
struct Post {
    action: &'static str,
    route: &'static str,
    parse: fn(&Form) -> Result<Change, ApiError>,
}

const SCALE: Post = Post {
    action: "POST /apps/{app}/scale",
    route: "/api/v1/apps/{app}/scale",
    parse: scale_request,
};

const ROLLBACK: Post = Post {
    action: "POST /apps/{app}/rollback",
    route: "/api/v1/apps/{app}/rollback",
    parse: rollback_request,
};

fn scale_request(form: &Form) -> Result<Change, ApiError> {
    let mut replicas = BTreeMap::new();
    for (k, v) in &form.0 {
        let Some(service) = k.strip_prefix("replicas.") else {
            continue;
        };
        let n: u32 = v.trim().parse().map_err(|_| {
            ApiError::new(
                ErrorCode::InvalidArgument,
                format!("replicas of {service:?}: {v:?} is not a whole number"),
            )
        })?;
        replicas.insert(service.to_string(), n);
    }
    if replicas.is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidArgument,
            "the form names no service (fields replicas.SERVICE)",
        ));
    }
    Ok(Change::Scale(ScaleRequest { replicas }))
}

fn rollback_request(form: &Form) -> Result<Change, ApiError> {
    let to = match form.get("to").map(str::trim).filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => Some(v.parse::<u64>().map_err(|_| {
            ApiError::new(
                ErrorCode::InvalidArgument,
                format!("revision {v:?} is not a revision number"),
            )
        })?),
    };
    Ok(Change::Rollback(RollbackRequest { to }))
}

async fn scale(State(s): State<AppState>, Path(app): Path<String>, req: Request) -> Response {
    change(s, app, req, &SCALE).await
}

async fn rollback(State(s): State<AppState>, Path(app): Path<String>, req: Request) -> Response {
    change(s, app, req, &ROLLBACK).await
}

/// A post that changes an application: session → CSRF → the API route's permission → the
/// control plane's call → an audit row → back to the application's page.
async fn change(s: AppState, app: String, req: Request, post: &Post) -> Response {
    let (parts, body) = req.into_parts();
    let mut audit = Audit {
        s: &s,
        parts: &parts,
        action: post.action.to_string(),
        user: None,
        token: None,
        team: None,
    };
    let result = async {
        let form = Form::read(body).await?;
        // The token before anything else: a forged post learns nothing from the answer.
        let sess = checked_session(&s, &parts, &form)?;
        audit.user = Some(sess.principal.user.clone());
        audit.token = Some(sess.principal.token.clone());
        let team = perm::scope(
            &s.access,
            &sess.principal,
            "POST",
            post.route,
            form.get("team"),
        )?;
        let change = (post.parse)(&form)?;
        audit.team = Some(team.team.clone());
        let global = team.name(&app)?;
        match &change {
            Change::Scale(r) => s.cp.scale(&global, r),
            Change::Rollback(r) => s.cp.rollback(&global, r),
        }
        .map_err(|e| team.localize(e))?;
        Ok::<_, ApiError>(app_href(&app, &team.team))
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

#[cfg(test)]
mod tests {
    /// The pages share the API's listener; `/api/...` stays the API's alone (routed ⇒
    /// documented, tokens only).
    #[test]
    fn no_page_is_under_api() {
        let src = include_str!("lib.rs");
        let routes: Vec<&str> = src
            .match_indices(".route(\"")
            .map(|(i, m)| {
                let rest = &src[i + m.len()..];
                &rest[..rest.find('"').unwrap()]
            })
            .collect();
        assert!(routes.len() >= 20, "{routes:?}");
        for r in routes {
            assert!(
                !r.starts_with("/api") && !r.starts_with("/.well-known"),
                "{r}"
            );
        }
    }
}
