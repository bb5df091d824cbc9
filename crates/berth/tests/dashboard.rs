//! End-to-end with the real Docker engine: the dashboard (docs/dashboard.md) as a browser
//! without JavaScript uses it — plain HTTP with cookies and form posts against the real server.
//! Login, the overview listing a deployed application, Scale and Roll back through the forms,
//! a viewer who sees no Scale button and whose posts are refused anyway, forged posts without
//! the CSRF token refused with `403 csrf_failed`, `/api/v1` ignoring the cookie, and logout.

mod common;

use berth_testkit::{testapp_image, wait_for, TestRun};
use common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::time::Duration;

/// An answer: status, headers (names in lower case), body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `Set-Cookie` header setting `name`.
    fn set_cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == "set-cookie")
            .map(|(_, v)| v.as_str())
            .find(|v| v.starts_with(&format!("{name}=")))
    }

    /// The value the answer sets for cookie `name`.
    fn cookie(&self, name: &str) -> Option<String> {
        let c = self.set_cookie(name)?;
        let v = c[name.len() + 1..].split(';').next()?.to_string();
        Some(v)
    }

    /// The value of the first hidden `csrf` field of the page.
    fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .unwrap_or_else(|| panic!("no csrf field in:\n{}", self.body));
        let rest = &self.body[at + "name=\"csrf\" value=\"".len()..];
        rest[..rest.find('"').unwrap()].to_string()
    }
}

/// One request as a browser sends it: cookies, and a form posted with the page's `Origin`.
fn browser(addr: &str, method: &str, path: &str, cookie: Option<&str>, form: &str) -> Answer {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(c) = cookie {
        req.push_str(&format!("Cookie: {c}\r\n"));
    }
    if method == "POST" {
        req.push_str(&format!(
            "Origin: http://{addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            form.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(form);
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_string(),
    }
}

fn enc(s: &str) -> String {
    s.replace('%', "%25")
        .replace('&', "%26")
        .replace('=', "%3D")
}

/// Log in through the form; the session cookie (`berth_session=...`).
fn log_in(addr: &str, user: &str, password: &str) -> String {
    let page = browser(addr, "GET", "/login", None, "");
    assert_eq!(page.status, 200, "{}", page.body);
    let login_csrf = page.cookie("berth_login_csrf").expect("login csrf cookie");
    let form = format!(
        "csrf={}&username={}&password={}",
        page.csrf(),
        enc(user),
        enc(password)
    );
    let a = browser(
        addr,
        "POST",
        "/login",
        Some(&format!("berth_login_csrf={login_csrf}")),
        &form,
    );
    assert_eq!(a.status, 303, "login {user}: {}", a.body);
    assert_eq!(a.header("location"), Some("/"));
    format!("berth_session={}", a.cookie("berth_session").unwrap())
}

fn api(server: &Server, path: &str) -> Value {
    let (status, _, body) = call(&server.api, "GET", path, Some(&server.token()), None);
    assert_eq!(status, 200, "{path}: {body}");
    body
}

/// How many revisions application `store` has (each scale and rollback commits one).
fn revisions(server: &Server) -> usize {
    api(server, "/api/v1/apps/store/revisions?team=shop")
        .as_array()
        .unwrap()
        .len()
}

/// Wait until the reconciler has brought `web` to `n` healthy replicas (the desired count of
/// the status is the last pass's).
fn wait_replicas(server: &Server, n: u64) {
    wait_for(Duration::from_secs(60), "web's replicas", || {
        let st = api(server, "/api/v1/apps/store?team=shop");
        let web = &st["services"][0];
        (web["desired"].as_u64() == Some(n) && web["healthy"].as_u64() == Some(n)).then_some(())
    });
}

#[test]
fn log_in_see_the_app_scale_and_roll_back_by_form_while_a_viewer_is_refused() {
    let run = TestRun::new("dashboard");
    let image = testapp_image(&run);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let server = Server::start(&run, &data);
    let addr = server.api.clone();
    let dora = team_member(&server, "shop", "dora", "developer");
    team_member(&server, "shop", "vic", "viewer");
    let file = compose(
        dir.path(),
        "store.yaml",
        &format!("services:\n  web:\n    image: {image}\n    expose: [\"8080\"]\n"),
    );
    ok_as(
        &server,
        &dora,
        &["apply", "-f", file.to_str().unwrap(), "--app", "store"],
    );

    // Not logged in: pages send the browser to the login form, which has the named fields.
    let a = browser(&addr, "GET", "/", None, "");
    assert_eq!((a.status, a.header("location")), (303, Some("/login")));
    let login = browser(&addr, "GET", "/login", None, "");
    assert!(login.body.contains("name=\"username\""), "{}", login.body);
    assert!(login.body.contains("name=\"password\""), "{}", login.body);
    // A login post without the form's token is refused before the password is looked at.
    let a = browser(
        &addr,
        "POST",
        "/login",
        None,
        "username=dora&password=dora-password-for-tests",
    );
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(a.body.contains("csrf_failed"), "{}", a.body);
    assert!(a.set_cookie("berth_session").is_none());
    // A wrong password: the form again, with the failure, and no session.
    let page = browser(&addr, "GET", "/login", None, "");
    let a = browser(
        &addr,
        "POST",
        "/login",
        Some(&format!(
            "berth_login_csrf={}",
            page.cookie("berth_login_csrf").unwrap()
        )),
        &format!("csrf={}&username=dora&password=wrong-password", page.csrf()),
    );
    assert_eq!(a.status, 401, "{}", a.body);
    assert!(a.body.contains("name=\"password\""), "{}", a.body);
    assert!(a.set_cookie("berth_session").is_none());

    // Logged in: the session cookie is HttpOnly and SameSite=Strict (no Secure on plain HTTP).
    let page = browser(&addr, "GET", "/login", None, "");
    let a = browser(
        &addr,
        "POST",
        "/login",
        Some(&format!(
            "berth_login_csrf={}",
            page.cookie("berth_login_csrf").unwrap()
        )),
        &format!(
            "csrf={}&username=dora&password=dora-password-for-tests",
            page.csrf()
        ),
    );
    assert_eq!(a.status, 303, "{}", a.body);
    let set = a.set_cookie("berth_session").unwrap().to_string();
    assert!(set.contains("HttpOnly"), "{set}");
    assert!(set.contains("SameSite=Strict"), "{set}");
    assert!(!set.contains("Secure"), "{set}");
    let dora_cookie = format!("berth_session={}", a.cookie("berth_session").unwrap());

    // The overview lists the team's application with its health, revision and replicas, and
    // its environments, with what expires soon.
    server.ok(&["--team", "shop", "env", "create", "review", "--ttl", "2h"]);
    server.ok(&["--team", "shop", "env", "create", "later", "--ttl", "7d"]);
    let a = browser(&addr, "GET", "/", Some(&dora_cookie), "");
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("Team shop"), "{}", a.body);
    let soon = a
        .body
        .split("<h3>Expiring soon</h3>")
        .nth(1)
        .unwrap_or_default();
    let soon = soon.split("</ul>").next().unwrap_or_default();
    assert!(
        soon.contains("Environment review") && !soon.contains("later"),
        "{}",
        a.body
    );
    assert!(a.body.contains("<td>later</td>"), "{}", a.body);
    assert!(
        a.body.contains("href=\"/apps/store?team=shop\">store</a>"),
        "{}",
        a.body
    );
    assert!(a.body.contains("Log out"), "{}", a.body);

    // /api/v1 takes tokens only: the cookie alone is no credential there.
    for path in ["/api/v1/apps?team=shop", "/api/v1/whoami"] {
        let a = browser(&addr, "GET", path, Some(&dora_cookie), "");
        assert_eq!(a.status, 401, "{path}: {}", a.body);
        assert!(a.body.contains("\"unauthorized\""), "{}", a.body);
    }

    // The application's page: instances, history, and the Scale form for a developer.
    let page = browser(
        &addr,
        "GET",
        "/apps/store?team=shop",
        Some(&dora_cookie),
        "",
    );
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(">Scale</button>"), "{}", page.body);
    assert!(page.body.contains("Revision history"), "{}", page.body);
    assert!(page.body.contains("Logs of web"), "{}", page.body);
    // A forged post (no csrf field) with the developer's cookie: refused, nothing changes.
    let a = browser(
        &addr,
        "POST",
        "/apps/store/scale",
        Some(&dora_cookie),
        "team=shop&replicas.web=3",
    );
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(a.body.contains("csrf_failed"), "{}", a.body);
    let a = browser(
        &addr,
        "POST",
        "/apps/store/scale",
        Some(&dora_cookie),
        "csrf=0000&team=shop&replicas.web=3",
    );
    assert!(a.body.contains("csrf_failed"), "{}", a.body);
    assert_eq!(revisions(&server), 1);

    // Scale through the form: the same control-plane call as `berth scale`.
    let a = browser(
        &addr,
        "POST",
        "/apps/store/scale",
        Some(&dora_cookie),
        &format!("csrf={}&team=shop&replicas.web=2", page.csrf()),
    );
    assert_eq!(a.status, 303, "{}", a.body);
    assert_eq!(a.header("location"), Some("/apps/store?team=shop"));
    assert_eq!(revisions(&server), 2);
    // The form shows the new count at once (the revision's, not the last pass's).
    let page = browser(
        &addr,
        "GET",
        "/apps/store?team=shop",
        Some(&dora_cookie),
        "",
    );
    assert!(
        page.body
            .contains("name=\"replicas.web\" type=\"number\" min=\"0\" value=\"2\""),
        "{}",
        page.body
    );
    wait_replicas(&server, 2);
    let page = browser(
        &addr,
        "GET",
        "/apps/store?team=shop",
        Some(&dora_cookie),
        "",
    );
    assert!(
        page.body.matches("<tr><td>web</td>").count() == 2,
        "{}",
        page.body
    );

    // Roll back to revision 1 through the form (offered now that there are two revisions).
    assert!(page.body.contains(">Roll back</button>"), "{}", page.body);
    let a = browser(
        &addr,
        "POST",
        "/apps/store/rollback",
        Some(&dora_cookie),
        &format!("csrf={}&team=shop&to=1", page.csrf()),
    );
    assert_eq!(a.status, 303, "{}", a.body);
    assert_eq!(revisions(&server), 3);
    wait_replicas(&server, 1);

    // A viewer: sees the application, but no Scale or Roll back button; a post is refused by
    // the same permission table as the API's, even with a valid token.
    let vic_cookie = log_in(&addr, "vic", "vic-password-for-tests");
    let page = browser(&addr, "GET", "/apps/store?team=shop", Some(&vic_cookie), "");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Instances"), "{}", page.body);
    assert!(!page.body.contains(">Scale</button>"), "{}", page.body);
    assert!(!page.body.contains(">Roll back</button>"), "{}", page.body);
    // Nor links to logs, which a viewer may not read (the page refuses too).
    assert!(!page.body.contains("Logs of web"), "{}", page.body);
    let a = browser(
        &addr,
        "GET",
        "/apps/store/logs/web?team=shop",
        Some(&vic_cookie),
        "",
    );
    assert_eq!(a.status, 403, "{}", a.body);
    let a = browser(
        &addr,
        "POST",
        "/apps/store/scale",
        Some(&vic_cookie),
        &format!("csrf={}&team=shop&replicas.web=5", page.csrf()),
    );
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(a.body.contains("forbidden"), "{}", a.body);
    let a = browser(
        &addr,
        "POST",
        "/apps/store/scale",
        Some(&vic_cookie),
        "team=shop&replicas.web=5",
    );
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(a.body.contains("csrf_failed"), "{}", a.body);
    assert_eq!(revisions(&server), 3);

    // Every post left an audit row, as an API call does.
    let audit = api(&server, "/api/v1/audit?limit=1000");
    let rows = audit["entries"].as_array().expect("audit rows");
    let of = |user: &str, action: &str, status: u64| {
        rows.iter().any(|r| {
            r["user"] == user && r["action"] == action && r["status"].as_u64() == Some(status)
        })
    };
    assert!(of("dora", "POST /apps/{app}/scale", 303), "{audit}");
    assert!(of("dora", "POST /apps/{app}/rollback", 303), "{audit}");
    assert!(of("vic", "POST /apps/{app}/scale", 403), "{audit}");
    assert!(of("dora", "login", 303), "{audit}");

    // Log out: the session ends (the login token is revoked), the cookie is cleared.
    let page = browser(&addr, "GET", "/", Some(&dora_cookie), "");
    let a = browser(
        &addr,
        "POST",
        "/logout",
        Some(&dora_cookie),
        &format!("csrf={}", page.csrf()),
    );
    assert_eq!((a.status, a.header("location")), (303, Some("/login")));
    assert!(
        a.set_cookie("berth_session").unwrap().contains("Max-Age=0"),
        "{:?}",
        a.headers
    );
    let a = browser(&addr, "GET", "/", Some(&dora_cookie), "");
    assert_eq!((a.status, a.header("location")), (303, Some("/login")));

    // The login form shares the API's lockout: after five failures (one above) it answers 429
    // with Retry-After, and shows the form again.
    let mut last = 0;
    for _ in 0..5 {
        let page = browser(&addr, "GET", "/login", None, "");
        let a = browser(
            &addr,
            "POST",
            "/login",
            Some(&format!(
                "berth_login_csrf={}",
                page.cookie("berth_login_csrf").unwrap()
            )),
            &format!("csrf={}&username=dora&password=wrong-again", page.csrf()),
        );
        last = a.status;
        if a.status == 429 {
            assert!(a.header("retry-after").is_some(), "{:?}", a.headers);
            assert!(a.body.contains("name=\"password\""), "{}", a.body);
            break;
        }
        assert_eq!(a.status, 401, "{}", a.body);
    }
    assert_eq!(last, 429);
}

/// Read an event stream (`GET path` with `cookie`) until `until` appears in what came, or 60 s
/// pass; what came, and the answer's head.
fn read_events(addr: &str, path: &str, cookie: &str, until: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut buf = [0u8; 4096];
    while std::time::Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("{path}: {e}"),
        }
        if String::from_utf8_lossy(&got).contains(until) {
            break;
        }
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.to_string(), body.to_string())
}

#[test]
fn topology_picture_live_logs_status_and_the_gateway_page() {
    let run = TestRun::new("dashboard-live");
    let image = testapp_image(&run);
    let Some(shell) = berth_testkit::busybox_image(&run) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let server = Server::start(&run, &data);
    let addr = server.api.clone();
    let dora = team_member(&server, "shop", "dora", "developer");
    let port = free_port();
    // web (a route and a published port) depends on ticker, which writes a line every 200 ms
    // and keeps a named volume.
    let file = compose(
        dir.path(),
        "store.yaml",
        &format!(
            "services:\n  web:\n    image: {image}\n    ports: [\"127.0.0.1:{port}:8080\"]\n    depends_on: [ticker]\n    x-berth:\n      route: {{ path_prefix: /store }}\n  ticker:\n    image: {shell}\n    command: [\"sh\", \"-c\", \"i=0; while true; do echo tick-$$i; i=$$((i+1)); sleep 0.2; done\"]\n    volumes: [\"keep:/data\"]\nvolumes:\n  keep: {{}}\n"
        ),
    );
    ok_as(
        &server,
        &dora,
        &["apply", "-f", file.to_str().unwrap(), "--app", "store"],
    );
    let cookie = log_in(&addr, "dora", "dora-password-for-tests");

    // The topology, drawn on the server: the route and the port lead to web, web depends on
    // ticker, ticker keeps a volume.
    let page = browser(&addr, "GET", "/apps/store?team=shop", Some(&cookie), "");
    assert_eq!(page.status, 200, "{}", page.body);
    let body = &page.body;
    assert!(body.contains("<svg class=\"topology\""), "{body}");
    for text in [
        ">web</text>",
        ">ticker</text>",
        ">/store</text>",
        &format!(">port {port}/tcp</text>"),
        ">volume keep</text>",
    ] {
        assert!(body.contains(text), "{text} in {body}");
    }
    assert_eq!(body.matches("class=\"edge route\"").count(), 2, "{body}");
    assert_eq!(body.matches("class=\"edge depends\"").count(), 1, "{body}");
    assert_eq!(body.matches("class=\"edge uses\"").count(), 1, "{body}");
    assert!(
        body.contains("href=\"/apps/store/logs/ticker?team=shop\""),
        "{body}"
    );
    assert!(
        body.contains("data-events=\"/apps/store/status/events?team=shop\""),
        "{body}"
    );
    assert!(body.contains("<script src=\"/assets/berth.js\""), "{body}");
    let js = browser(&addr, "GET", "/assets/berth.js", None, "");
    assert_eq!(js.status, 200);
    assert!(js.body.contains("EventSource"), "{}", js.body);

    // The plain log page (no JavaScript needed) shows the last lines.
    wait_for(
        Duration::from_secs(30),
        "ticker's lines on the log page",
        || {
            let a = browser(
                &addr,
                "GET",
                "/apps/store/logs/ticker?team=shop",
                Some(&cookie),
                "",
            );
            assert_eq!(a.status, 200, "{}", a.body);
            a.body.contains("tick-3").then_some(())
        },
    );
    // The live log: new lines as server-sent events.
    let (head, events) = read_events(
        &addr,
        "/apps/store/logs/ticker/events?team=shop",
        &cookie,
        "data: tick-",
    );
    assert!(head.contains("text/event-stream"), "{head}");
    assert!(events.contains("data: tick-"), "{head}\n{events}");
    // The application's status, live: the first event at once.
    wait_for(Duration::from_secs(60), "both services healthy", || {
        let (_, ev) = read_events(
            &addr,
            "/apps/store/status/events?team=shop",
            &cookie,
            "\n\n",
        );
        (ev.contains("data: healthy") && ev.contains("ticker 1/1, web 1/1")).then_some(())
    });
    // No session, no stream.
    let a = browser(
        &addr,
        "GET",
        "/apps/store/logs/ticker/events?team=shop",
        None,
        "",
    );
    assert_eq!(a.status, 401, "{}", a.body);

    // The gateway page: the route with its policies and the hour's charts.
    let (status, _) =
        berth_testkit::http_get(&server.gateway, "/store/", None, Duration::from_secs(5))
            .unwrap_or((0, String::new()));
    assert!(status > 0);
    let a = browser(&addr, "GET", "/gateway", Some(&cookie), "");
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("Team shop"), "{}", a.body);
    assert!(
        a.body
            .contains("/store → <a href=\"/apps/store?team=shop\">store</a> / web"),
        "{}",
        a.body
    );
    assert_eq!(
        a.body.matches("<svg class=\"chart\"").count(),
        3,
        "{}",
        a.body
    );
    assert!(a.body.contains(&format!("127.0.0.1:{port}")), "{}", a.body);
}

/// The value of `href` of the first link whose text is `text`.
fn location_id(a: &Answer) -> u64 {
    let to = a
        .header("location")
        .unwrap_or_else(|| panic!("no location: {}", a.body));
    to.trim_start_matches("/builds/")
        .parse()
        .unwrap_or_else(|_| panic!("{to}"))
}

/// Wait until build `id` has finished (the API's view); its status.
fn build_finished(server: &Server, id: u64) -> String {
    wait_for(Duration::from_secs(180), "the build to finish", || {
        let b = api(server, &format!("/api/v1/builds/{id}?team=shop"));
        let st = b["status"].as_str().unwrap_or("").to_string();
        (st != "queued" && st != "running").then_some(st)
    })
}

/// Commit a Dockerfile whose app answers `version`, tag it, build it with Berth as `token`.
fn build_version(server: &Server, token: &str, repo: &std::path::Path, version: &str) {
    commit_app_version(repo, version);
    git(repo, &["tag", version]);
    let log = ok_as(server, token, &["build", "web", "--follow"]);
    assert!(log.contains(&format!("version {version}")), "{log}");
}

#[test]
fn deploy_a_version_from_the_service_page_while_a_viewer_cannot() {
    let run = TestRun::new("dashboard-deploy");
    let dir = tempfile::tempdir().unwrap();
    let (data, repo) = (dir.path().join("data"), dir.path().join("repo"));
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::copy(berth_testkit::testapp_binary(), repo.join("app")).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    let server = Server::start(&run, &data);
    let addr = server.api.clone();
    let dana = team_member(&server, "shop", "dana", "developer");
    team_member(&server, "shop", "vic", "viewer");
    ok_as(
        &server,
        &dana,
        &["service", "create", "web", "--git", repo.to_str().unwrap()],
    );
    build_version(&server, &dana, &repo, "v1");
    build_version(&server, &dana, &repo, "v2");
    let file = compose(
        dir.path(),
        "site.yaml",
        "services:\n  front:\n    image: berth/shop/web:v1\n    x-berth:\n      route: { path_prefix: /site }\n",
    );
    ok_as(
        &server,
        &dana,
        &["apply", "-f", file.to_str().unwrap(), "--app", "site"],
    );
    let answers = |version: &str| {
        wait_for(
            Duration::from_secs(60),
            &format!("site answers {version}"),
            || {
                let (status, body) = berth_testkit::http_get(
                    &server.gateway,
                    "/site/",
                    None,
                    Duration::from_secs(5),
                )
                .ok()?;
                (status == 200 && body.starts_with(version)).then_some(())
            },
        );
    };
    answers("v1");

    // The service's page offers Deploy, to the applications that run its image.
    let dana_c = log_in(&addr, "dana", "dana-password-for-tests");
    let page = browser(&addr, "GET", "/services/web?team=shop", Some(&dana_c), "");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(">Deploy</button>"), "{}", page.body);
    assert!(page.body.contains("<option>site</option>"), "{}", page.body);
    // A forged post without the token is refused; the real one deploys v2 by image ID.
    let a = browser(
        &addr,
        "POST",
        "/services/web/deploy",
        Some(&dana_c),
        "team=shop&app=site&version=v2",
    );
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(a.body.contains("csrf_failed"), "{}", a.body);
    let a = browser(
        &addr,
        "POST",
        "/services/web/deploy",
        Some(&dana_c),
        &format!("csrf={}&team=shop&app=site&version=v2", page.csrf()),
    );
    assert_eq!(a.status, 303, "{}", a.body);
    assert_eq!(a.header("location"), Some("/apps/site?team=shop"));
    answers("v2");
    let history = api(&server, "/api/v1/apps/site/revisions?team=shop");
    let last = history
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["revision"] == 2)
        .cloned()
        .unwrap();
    assert_eq!(last["source"], "deploy", "{history}");
    assert!(
        last["change"]
            .as_str()
            .unwrap()
            .contains("berth/shop/web:v2 (front)"),
        "{last}"
    );

    // A viewer is offered no Deploy, and a post of theirs is refused by the permission table.
    let vic_c = log_in(&addr, "vic", "vic-password-for-tests");
    let page = browser(&addr, "GET", "/services/web?team=shop", Some(&vic_c), "");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(!page.body.contains(">Deploy</button>"), "{}", page.body);
    let a = browser(
        &addr,
        "POST",
        "/services/web/deploy",
        Some(&vic_c),
        &format!("csrf={}&team=shop&app=site&version=v1", page.csrf()),
    );
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(a.body.contains(">forbidden</code>"), "{}", a.body);
    answers("v2");
    ok_as(&server, &dana, &["rm", "--app", "site"]);
}

#[test]
fn build_follow_its_log_review_by_a_second_user_cancel_and_the_admin_pages() {
    let run = TestRun::new("dashboard-services");
    let Some(toolbox) = berth_testkit::busybox_image(&run) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::copy(berth_testkit::testapp_binary(), repo.join("app")).unwrap();
    std::fs::write(
        repo.join("Dockerfile"),
        "FROM scratch\nCOPY app /app\nEXPOSE 8080\nENTRYPOINT [\"/app\"]\n",
    )
    .unwrap();
    std::fs::write(
        repo.join("test.sh"),
        "mkdir -p out\nprintf '<testsuite name=\"t\"><testcase classname=\"t\" name=\"a\"/><testcase classname=\"t\" name=\"b\"/></testsuite>' > out/junit.xml\necho tests-ran-fine\n",
    )
    .unwrap();
    let pipeline = |extra: &str| {
        format!(
            "steps:\n{extra}  - name: test\n    image: {toolbox}\n    run: [\"sh ./test.sh\"]\n    reports: {{ junit: out/junit.xml }}\n  - name: image\n    build: {{ dockerfile: Dockerfile }}\n"
        )
    };
    std::fs::write(repo.join("berth.pipeline.yaml"), pipeline("")).unwrap();
    std::fs::write(repo.join(".gitignore"), "out/\n").unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "first"]);
    git(&repo, &["tag", "v1"]);
    // Branch `slow`: a first step that takes a minute (a build to cancel).
    git(&repo, &["checkout", "-q", "-b", "slow"]);
    std::fs::write(
        repo.join("berth.pipeline.yaml"),
        pipeline(&format!(
            "  - name: wait\n    image: {toolbox}\n    run: [\"sleep 60\"]\n"
        )),
    )
    .unwrap();
    git(&repo, &["commit", "-q", "-am", "slow"]);
    git(&repo, &["checkout", "-q", "main"]);

    let server = Server::start(&run, &data);
    let addr = server.api.clone();
    let dana = team_member(&server, "shop", "dana", "developer");
    team_member(&server, "shop", "arne", "approver");
    team_member(&server, "shop", "vic", "viewer");
    ok_as(
        &server,
        &dana,
        &[
            "service",
            "create",
            "orders",
            "--git",
            repo.to_str().unwrap(),
        ],
    );
    let dana_c = log_in(&addr, "dana", "dana-password-for-tests");

    // The services page links the service; its page offers Build to a developer.
    let a = browser(&addr, "GET", "/services", Some(&dana_c), "");
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(
        a.body
            .contains("href=\"/services/orders?team=shop\">orders</a>"),
        "{}",
        a.body
    );
    let page = browser(
        &addr,
        "GET",
        "/services/orders?team=shop",
        Some(&dana_c),
        "",
    );
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(">Build</button>"), "{}", page.body);
    assert!(
        page.body.contains(&repo.to_str().unwrap().to_string()),
        "{}",
        page.body
    );
    let csrf = page.csrf();

    // Build through the form, then follow its log by server-sent events to its end.
    let a = browser(
        &addr,
        "POST",
        "/services/orders/build",
        Some(&dana_c),
        &format!("csrf={csrf}&team=shop&ref="),
    );
    assert_eq!(a.status, 303, "{}", a.body);
    let id = location_id(&a);
    let (head, events) = read_events(
        &addr,
        &format!("/builds/{id}/events"),
        &dana_c,
        "event: end",
    );
    assert!(head.contains("text/event-stream"), "{head}");
    assert!(events.contains("data: [test] tests-ran-fine"), "{events}");
    assert!(events.contains("event: end"), "{events}");
    assert_eq!(build_finished(&server, id), "succeeded");
    // The plain build page: the whole log, no Cancel once it finished.
    let a = browser(&addr, "GET", &format!("/builds/{id}"), Some(&dana_c), "");
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("tests-ran-fine"), "{}", a.body);
    assert!(!a.body.contains(">Cancel</button>"), "{}", a.body);
    assert!(!a.body.contains("data-events"), "{}", a.body);

    // The version with its image ID, size, state and evidence; Submit for the developer.
    let page = browser(
        &addr,
        "GET",
        "/services/orders?team=shop",
        Some(&dana_c),
        "",
    );
    let body = &page.body;
    assert!(body.contains("<code>sha256:"), "{body}");
    assert!(body.contains(" MB</dd>"), "{body}");
    assert!(body.contains("class=\"state built\""), "{body}");
    assert!(
        body.contains("out/junit.xml: 2 passed, 0 failed, 0 skipped"),
        "{body}"
    );
    assert!(
        body.contains("<code>test</code> → <code>image</code>"),
        "{body}"
    );
    assert!(body.contains(">Submit</button>"), "{body}");
    assert!(!body.contains(">Approve</button>"), "{body}");
    let a = browser(
        &addr,
        "POST",
        "/services/orders/versions/v1/submit",
        Some(&dana_c),
        &format!("csrf={}&team=shop&note=first+cut", page.csrf()),
    );
    assert_eq!(a.status, 303, "{}", a.body);
    assert_eq!(a.header("location"), Some("/services/orders?team=shop"));
    // The team's events as a stream (the overview's live list): the submission is one.
    let a = browser(&addr, "GET", "/", Some(&dana_c), "");
    assert!(
        a.body
            .contains("data-events=\"/events/stream?team=shop&#38;after=1\" data-kind=\"event\""),
        "{}",
        a.body
    );
    let (head, events) = read_events(
        &addr,
        "/events/stream?team=shop&after=0",
        &dana_c,
        "dana submitted",
    );
    assert!(head.contains("text/event-stream"), "{head}");
    assert!(events.contains("dana submitted"), "{events}");
    // The submitter is offered no review of their own version; a forged approve is refused by
    // the token, a real one by the permission table.
    let page = browser(
        &addr,
        "GET",
        "/services/orders?team=shop",
        Some(&dana_c),
        "",
    );
    assert!(
        page.body.contains("class=\"state submitted\""),
        "{}",
        page.body
    );
    assert!(!page.body.contains(">Approve</button>"), "{}", page.body);
    let a = browser(
        &addr,
        "POST",
        "/services/orders/versions/v1/approve",
        Some(&dana_c),
        "team=shop&reason=mine",
    );
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(a.body.contains("csrf_failed"), "{}", a.body);
    let a = browser(
        &addr,
        "POST",
        "/services/orders/versions/v1/approve",
        Some(&dana_c),
        &format!("csrf={}&team=shop&reason=mine", page.csrf()),
    );
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(a.body.contains("forbidden"), "{}", a.body);

    // A second user, an approver, approves; the overview listed it as waiting for them.
    let arne_c = log_in(&addr, "arne", "arne-password-for-tests");
    let a = browser(&addr, "GET", "/", Some(&arne_c), "");
    assert!(
        a.body
            .contains("href=\"/services/orders?team=shop\">orders v1</a>, submitted by dana"),
        "{}",
        a.body
    );
    let page = browser(
        &addr,
        "GET",
        "/services/orders?team=shop",
        Some(&arne_c),
        "",
    );
    assert!(page.body.contains(">Approve</button>"), "{}", page.body);
    assert!(page.body.contains(">Reject</button>"), "{}", page.body);
    assert!(!page.body.contains(">Build</button>"), "{}", page.body);
    // Rejected first (with a reason), submitted again by the developer.
    let a = browser(
        &addr,
        "POST",
        "/services/orders/versions/v1/reject",
        Some(&arne_c),
        &format!("csrf={}&team=shop&reason=needs+a+second+test", page.csrf()),
    );
    assert_eq!(a.status, 303, "{}", a.body);
    let page = browser(
        &addr,
        "GET",
        "/services/orders?team=shop",
        Some(&dana_c),
        "",
    );
    assert!(
        page.body.contains("class=\"state rejected\""),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("arne: needs a second test"),
        "{}",
        page.body
    );
    let a = browser(
        &addr,
        "POST",
        "/services/orders/versions/v1/submit",
        Some(&dana_c),
        &format!("csrf={}&team=shop&note=second+test+added", page.csrf()),
    );
    assert_eq!(a.status, 303, "{}", a.body);
    let page = browser(
        &addr,
        "GET",
        "/services/orders?team=shop",
        Some(&arne_c),
        "",
    );
    let a = browser(
        &addr,
        "POST",
        "/services/orders/versions/v1/approve",
        Some(&arne_c),
        &format!("csrf={}&team=shop&reason=tests+pass", page.csrf()),
    );
    assert_eq!(a.status, 303, "{}", a.body);
    let versions = api(&server, "/api/v1/services/orders/versions?team=shop");
    assert_eq!(versions[0]["state"], "approved", "{versions}");
    // The developer publishes.
    let page = browser(
        &addr,
        "GET",
        "/services/orders?team=shop",
        Some(&dana_c),
        "",
    );
    assert!(page.body.contains("arne: tests pass"), "{}", page.body);
    assert!(page.body.contains(">Publish</button>"), "{}", page.body);
    let a = browser(
        &addr,
        "POST",
        "/services/orders/versions/v1/publish",
        Some(&dana_c),
        &format!("csrf={}&team=shop&note=", page.csrf()),
    );
    assert_eq!(a.status, 303, "{}", a.body);
    let versions = api(&server, "/api/v1/services/orders/versions?team=shop");
    assert_eq!(versions[0]["state"], "published", "{versions}");

    // A slow build: its page offers Cancel (not to a viewer); Cancel stops it.
    let a = browser(
        &addr,
        "POST",
        "/services/orders/build",
        Some(&dana_c),
        &format!("csrf={csrf}&team=shop&ref=slow"),
    );
    assert_eq!(a.status, 303, "{}", a.body);
    let slow = location_id(&a);
    let page = browser(&addr, "GET", &format!("/builds/{slow}"), Some(&dana_c), "");
    assert!(page.body.contains(">Cancel</button>"), "{}", page.body);
    assert!(
        page.body
            .contains(&format!("data-events=\"/builds/{slow}/events\"")),
        "{}",
        page.body
    );
    let vic_c = log_in(&addr, "vic", "vic-password-for-tests");
    let vpage = browser(&addr, "GET", &format!("/builds/{slow}"), Some(&vic_c), "");
    assert_eq!(vpage.status, 200, "{}", vpage.body);
    assert!(!vpage.body.contains(">Cancel</button>"), "{}", vpage.body);
    let a = browser(
        &addr,
        "POST",
        &format!("/builds/{slow}/cancel"),
        Some(&vic_c),
        &format!("csrf={}&team=shop", vpage.csrf()),
    );
    assert_eq!(a.status, 403, "{}", a.body);
    let a = browser(
        &addr,
        "POST",
        &format!("/builds/{slow}/cancel"),
        Some(&dana_c),
        &format!("csrf={}&team=shop", page.csrf()),
    );
    assert_eq!(a.status, 303, "{}", a.body);
    assert_eq!(build_finished(&server, slow), "cancelled");

    // Bad addresses are error pages with the API's codes, not panics.
    for (path, code) in [
        ("/builds/abc", "build_not_found"),
        ("/builds/99999", "build_not_found"),
        ("/builds/99999/events", "build_not_found"),
        ("/services/nope?team=shop", "service_not_found"),
        ("/apps/nope?team=shop", "app_not_found"),
        ("/apps/nope/logs/web?team=shop", "app_not_found"),
    ] {
        let a = browser(&addr, "GET", path, Some(&dana_c), "");
        assert_eq!(a.status, 404, "{path}: {}", a.body);
        assert!(a.body.contains(code), "{path}: {}", a.body);
    }

    // Images: the version's image, deployed nowhere.
    let a = browser(&addr, "GET", "/images", Some(&dana_c), "");
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("<td>v1</td>"), "{}", a.body);
    assert!(a.body.contains("berth/shop/orders:v1"), "{}", a.body);

    // The audit log: one's own rows, newest first; the administrator filters by user.
    let a = browser(&addr, "GET", "/audit", Some(&dana_c), "");
    assert_eq!(a.status, 200, "{}", a.body);
    let publish = a
        .body
        .find("POST /services/{service}/versions/{version}/publish")
        .expect("publish row");
    let build = a
        .body
        .find("POST /services/{service}/build")
        .expect("build row");
    assert!(
        publish > a.body.find("POST /builds/{id}/cancel").unwrap(),
        "newest first"
    );
    assert!(build < a.body.len());
    assert!(!a.body.contains("<td>arne</td>"), "{}", a.body);
    let a = browser(&addr, "GET", "/audit?user=arne&since=1h", Some(&dana_c), "");
    assert_eq!(a.status, 403, "{}", a.body);
    // Administration pages: not for a developer; the administrator sees users and teams.
    let a = browser(&addr, "GET", "/admin/users", Some(&dana_c), "");
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(!browser(&addr, "GET", "/", Some(&dana_c), "")
        .body
        .contains("href=\"/admin/users\""));
    let (status, _, body) = call(
        &server.api,
        "POST",
        "/api/v1/users",
        Some(&server.token()),
        Some(
            serde_json::json!({"name": "root2", "password": "root2-password-for-tests", "administrator": true}),
        ),
    );
    assert_eq!(status, 201, "{body}");
    let root = log_in(&addr, "root2", "root2-password-for-tests");
    let a = browser(&addr, "GET", "/admin/users", Some(&root), "");
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("<td>dana</td>"), "{}", a.body);
    assert!(a.body.contains("shop (approver)"), "{}", a.body);
    let a = browser(&addr, "GET", "/admin/teams", Some(&root), "");
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("dana (developer)"), "{}", a.body);
    // The administrator's forms: a user, a team, a member, a disabled user; a developer's post
    // with a valid token is refused.
    let a = browser(
        &addr,
        "POST",
        "/admin/users",
        Some(&dana_c),
        &format!(
            "csrf={}&name=newbie&password=newbie-password-for-tests",
            browser(&addr, "GET", "/", Some(&dana_c), "").csrf()
        ),
    );
    assert_eq!(a.status, 403, "{}", a.body);
    let page = browser(&addr, "GET", "/admin/teams", Some(&root), "");
    assert!(page.body.contains(">Create team</button>"), "{}", page.body);
    let csrf_root = page.csrf();
    for (path, form) in [
        (
            "/admin/users",
            "name=newbie&password=newbie-password-for-tests".to_string(),
        ),
        ("/admin/teams", "name=ops".to_string()),
        (
            "/admin/teams/ops/members",
            "user=newbie&role=viewer".to_string(),
        ),
        ("/admin/users/newbie/disable", String::new()),
    ] {
        let a = browser(
            &addr,
            "POST",
            path,
            Some(&root),
            &format!("csrf={csrf_root}&{form}"),
        );
        assert_eq!(a.status, 303, "{path}: {}", a.body);
    }
    let a = browser(&addr, "GET", "/admin/teams", Some(&root), "");
    assert!(a.body.contains("newbie (viewer)"), "{}", a.body);
    let a = browser(&addr, "GET", "/admin/users", Some(&root), "");
    assert!(
        a.body
            .contains("<td>newbie</td><td>no</td><td>disabled</td>"),
        "{}",
        a.body
    );
    let a = browser(&addr, "GET", "/audit?user=arne&since=1h", Some(&root), "");
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(
        a.body
            .contains("POST /services/{service}/versions/{version}/approve"),
        "{}",
        a.body
    );
    assert!(!a.body.contains("<td>dana</td>"), "{}", a.body);
}

/// Benchmark (docs/benchmarks.md §9), not run by default: server time per page with
/// `BERTH_BENCH_APPS` applications (default 100) of 3 replicas each, every application with a
/// route, in one team. Each page is fetched `BERTH_BENCH_CALLS` times (default 20) over
/// loopback, a new connection each; the time is from the request's first byte to the answer's
/// last (an upper bound of the server's time). Prints a table; fails if a page's median is over
/// 50 ms.
///
/// `cargo test -p berth --test dashboard -- --ignored --nocapture page_times`
#[test]
#[ignore = "benchmark: 300 containers, minutes"]
fn page_times_with_100_applications_and_300_replicas() {
    let apps: usize = std::env::var("BERTH_BENCH_APPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let calls: usize = std::env::var("BERTH_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let run = TestRun::new("dashboard-bench");
    let image = testapp_image(&run);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let server = Server::start(&run, &data);
    let addr = server.api.clone();
    let dora = team_member(&server, "shop", "dora", "developer");
    let started = std::time::Instant::now();
    let names: Vec<String> = (0..apps).map(|i| format!("s{i:03}")).collect();
    for name in &names {
        let file = compose(
            dir.path(),
            &format!("{name}.yaml"),
            &format!(
                "services:\n  web:\n    image: {image}\n    deploy: {{ replicas: 3 }}\n    x-berth:\n      route: {{ path_prefix: /{name} }}\n"
            ),
        );
        ok_as(
            &server,
            &dora,
            &[
                "apply",
                "-f",
                file.to_str().unwrap(),
                "--app",
                name,
                "--detach",
            ],
        );
    }
    wait_for(
        Duration::from_secs(900),
        "every application healthy",
        || {
            let list = api(&server, "/api/v1/apps?team=shop");
            let healthy = list
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["health"] == "healthy")
                .count();
            (healthy == apps).then_some(())
        },
    );
    eprintln!(
        "{apps} applications x 3 replicas healthy after {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let (status, _, body) = call(
        &server.api,
        "POST",
        "/api/v1/users",
        Some(&server.token()),
        Some(
            serde_json::json!({"name": "root2", "password": "root2-password-for-tests", "administrator": true}),
        ),
    );
    assert_eq!(status, 201, "{body}");
    let dora_c = log_in(&addr, "dora", "dora-password-for-tests");
    let root_c = log_in(&addr, "root2", "root2-password-for-tests");
    let middle = &names[apps / 2];
    let pages: Vec<(String, &str)> = vec![
        ("/".to_string(), &dora_c),
        ("/".to_string(), &root_c),
        (format!("/apps/{middle}?team=shop"), &dora_c),
        (format!("/apps/{middle}/logs/web?team=shop"), &dora_c),
        ("/services".to_string(), &dora_c),
        ("/images".to_string(), &dora_c),
        ("/gateway".to_string(), &dora_c),
        ("/audit".to_string(), &dora_c),
        ("/audit".to_string(), &root_c),
        ("/admin/users".to_string(), &root_c),
        ("/admin/teams".to_string(), &root_c),
    ];
    let mut table = String::new();
    let mut over = Vec::new();
    for (path, cookie) in &pages {
        let who = if *cookie == dora_c {
            "developer"
        } else {
            "administrator"
        };
        let mut ms = Vec::new();
        let mut size = 0;
        for _ in 0..calls {
            let t = std::time::Instant::now();
            let a = browser(&addr, "GET", path, Some(cookie), "");
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(a.status, 200, "{path}: {}", a.body);
            size = a.body.len();
        }
        ms.sort_by(f64::total_cmp);
        let median = ms[ms.len() / 2];
        let line = format!(
            "| `{path}` ({who}) | {median:.1} | {:.1} | {:.1} | {} |\n",
            ms[0],
            ms[ms.len() - 1],
            size / 1024
        );
        table.push_str(&line);
        if median > 50.0 {
            over.push(path.clone());
        }
    }
    eprintln!("| page | median ms | min ms | max ms | KiB |\n|---|---|---|---|---|\n{table}");
    assert!(over.is_empty(), "over 50 ms: {over:?}");
}
