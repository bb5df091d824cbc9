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

    // The overview lists the team's application with its health, revision and replicas.
    let a = browser(&addr, "GET", "/", Some(&dora_cookie), "");
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("Team shop"), "{}", a.body);
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
