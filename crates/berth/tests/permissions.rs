//! The permission walk (docs/permissions.md): every row of the permission table
//! (`berth_access::policy::ROUTES`, so a new row is walked without touching this file) × every
//! role × (own team, another team, no token), against a live server.
//!
//! Expected, per call:
//! - no token: 401 `unauthorized`;
//! - a team-scoped call in a team the caller is not a member of: 404 `team_not_found`;
//! - a team-scoped call in the caller's team: past authorization when the role allows the action
//!   (any answer but 401/403 and the `team_*` codes: a 404 for the made-up object, a 400/422 for
//!   the empty body), else 403 `forbidden`;
//! - an administrator's call: 403 `forbidden` for every member, past authorization for the
//!   administrator; a call on one's own things: past authorization for everyone.
//!
//! Path parameters are filled with names nobody uses (`{team}` with the team under test), and
//! bodies are empty (`{}` for JSON), so that no call changes anything.

mod common;

use berth_access::policy::{role_allows, Action, ROUTES};
use berth_core::team::Role;
use berth_testkit::TestRun;
use common::*;
use serde_json::json;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// A made-up name for every path parameter but `{team}` (and `{id}`, which is a number).
const NOBODY: &str = "zz-nobody";

/// One call: (status, error code or "").
fn send(addr: &str, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    read_answer(s)
}

/// One call with a body of the content type the route's rule (`berth_api::guard::rule`) wants.
fn send_body(
    addr: &str,
    method: &str,
    route: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, String) {
    let rule = berth_api::guard::rule(&method.parse().unwrap(), route);
    let Some(types) = rule.types else {
        return send(addr, method, path, token);
    };
    let ctype = types[0];
    let body: &[u8] = if ctype == "application/json" && rule.limit > 0 {
        b"{}"
    } else {
        b""
    };
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    s.write_all(&bytes).unwrap();
    read_answer(s)
}

fn read_answer(mut s: std::net::TcpStream) -> (u16, String) {
    let mut out = Vec::new();
    // A streamed answer (a backup) may be long: the head and the start of the body suffice.
    let mut buf = [0u8; 16 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if out.len() > 64 * 1024 {
                    break;
                }
            }
        }
    }
    let text = String::from_utf8_lossy(&out);
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let code = match (body.find('{'), body.rfind('}')) {
        (Some(a), Some(b)) if status >= 400 && a < b => {
            serde_json::from_str::<serde_json::Value>(&body[a..=b])
                .ok()
                .and_then(|v| v["code"].as_str().map(str::to_string))
                .unwrap_or_default()
        }
        _ => String::new(),
    };
    (status, code)
}

/// A caller of the walk.
struct Caller {
    name: String,
    token: String,
    /// None: the platform administrator.
    role: Option<Role>,
    own: &'static str,
    other: &'static str,
}

/// The concrete path of `route` for `caller` acting in `team`.
fn path_of(route: &str, action: Action, caller: &Caller, team: &str) -> String {
    let path: Vec<String> = route
        .split('/')
        .map(|seg| match seg {
            // The administrator must not remove the team under test.
            "{team}" if action == Action::Admin => NOBODY.to_string(),
            "{team}" => team.to_string(),
            // One's own password: the caller's own name (an empty body is then a 400).
            "{name}" if action == Action::Own => caller.name.clone(),
            "{id}" => "999999".to_string(),
            s if s.starts_with('{') => NOBODY.to_string(),
            s => s.to_string(),
        })
        .collect();
    let path = path.join("/");
    if route.contains("{team}") {
        path
    } else {
        format!("{path}?team={team}")
    }
}

/// What a caller must get for a row, acting in `team` (own or the other).
fn check(
    caller: &Caller,
    method: &str,
    route: &str,
    action: Action,
    own: bool,
    got: (u16, String),
) -> Option<String> {
    let (status, code) = &got;
    // An administrator's call on a team names a made-up team (so nothing is removed): its
    // `team_not_found` is the handler's answer, past authorization.
    let past = *status != 401
        && *status != 403
        && *status != 0
        && (action == Action::Admin || !code.starts_with("team_"));
    let who = caller.role.map_or_else(
        || "administrator".to_string(),
        |r| format!("{r} ({})", caller.name),
    );
    let team = if own { caller.own } else { caller.other };
    let want = match (caller.role, action) {
        (_, Action::Own | Action::Market) | (None, _) => "past authorization".to_string(),
        (Some(_), Action::Admin) => "403 forbidden".to_string(),
        (Some(_), _) if !own => "404 team_not_found".to_string(),
        (Some(r), a) if role_allows(r, a) => "past authorization".to_string(),
        (Some(_), _) => "403 forbidden".to_string(),
    };
    let ok = match want.as_str() {
        "past authorization" => past,
        "403 forbidden" => *status == 403 && code == "forbidden",
        _ => *status == 404 && code == "team_not_found",
    };
    (!ok).then(|| {
        format!("{method} {route} as {who} in team {team}: want {want}, got {status} {code}")
    })
}

#[test]
fn every_route_every_role_own_team_other_team_and_no_token() {
    let run = TestRun::new("permissions");
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&run, dir.path());
    let api = server.api.clone();
    let admin = server.token();
    let post = |path: &str, body: serde_json::Value| {
        let (status, _, answer) = call(&api, "POST", path, Some(&admin), Some(body));
        assert!(
            status == 201 || status == 200,
            "POST {path}: {status} {answer}"
        );
        answer
    };
    post("/api/v1/teams", json!({"name": "a"}));
    post("/api/v1/teams", json!({"name": "b"}));
    let mut callers = vec![Caller {
        name: "admin".into(),
        token: admin.clone(),
        role: None,
        own: "a",
        other: "b",
    }];
    let members: Vec<(&str, Role, &'static str, &'static str)> = vec![
        ("a-owner", Role::Owner, "a", "b"),
        ("a-developer", Role::Developer, "a", "b"),
        ("a-approver", Role::Approver, "a", "b"),
        ("a-operator", Role::Operator, "a", "b"),
        ("a-viewer", Role::Viewer, "a", "b"),
        ("b-developer", Role::Developer, "b", "a"),
    ];
    for (name, role, own, other) in members {
        let password = format!("{name}-password");
        post(
            "/api/v1/users",
            json!({"name": name, "password": password, "team": own, "role": role}),
        );
        let session = post("/api/v1/login", json!({"user": name, "password": password}));
        callers.push(Caller {
            name: name.into(),
            token: session["token"].as_str().unwrap().to_string(),
            role: Some(role),
            own,
            other,
        });
    }

    // Rows whose route this server does not serve yet (another branch's) are listed, not walked.
    let doc = berth_api::openapi::document();
    let routed =
        |method: &str, route: &str| doc["paths"][route][method.to_ascii_lowercase()].is_object();
    // The caller's own logout ends its session: walked last.
    let mut rows: Vec<(&str, &str, Action)> = ROUTES
        .iter()
        .copied()
        .filter(|(m, r, _)| routed(m, r))
        .collect();
    let skipped: Vec<String> = ROUTES
        .iter()
        .filter(|(m, r, _)| !routed(m, r))
        .map(|(m, r, _)| format!("{m} {r}"))
        .collect();
    if !skipped.is_empty() {
        eprintln!("not routed on this server, not walked: {skipped:?}");
    }
    assert!(rows.len() >= 40, "only {} rows routed", rows.len());
    rows.sort_by_key(|(m, r, _)| (*m, *r) == ("POST", "/api/v1/logout"));

    let started = Instant::now();
    let failures: Vec<String> = std::thread::scope(|scope| {
        let mut handles = Vec::new();
        // No token: 401 for every row, whatever the team.
        handles.push(scope.spawn(|| {
            let mut bad = Vec::new();
            for (method, route, _) in &rows {
                for team in ["a", "b"] {
                    let path = path_of(route, Action::Read, &callers[0], team);
                    let (status, code) = send_body(&api, method, route, &path, None);
                    if status != 401 || code != "unauthorized" {
                        bad.push(format!(
                            "{method} {route} without a token (team {team}): got {status} {code}"
                        ));
                    }
                }
            }
            bad
        }));
        for caller in &callers {
            let rows = &rows;
            let api = &api;
            handles.push(scope.spawn(move || {
                let mut bad = Vec::new();
                for (method, route, action) in rows {
                    // A logout ends the session: once.
                    let once = *route == "/api/v1/logout";
                    for own in [true, false].into_iter().take(if once { 1 } else { 2 }) {
                        let team = if own { caller.own } else { caller.other };
                        let path = path_of(route, *action, caller, team);
                        let got = send_body(api, method, route, &path, Some(&caller.token));
                        bad.extend(check(caller, method, route, *action, own, got));
                    }
                }
                bad
            }));
        }
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let took = started.elapsed();
    assert!(
        failures.is_empty(),
        "{} of the walked calls answered otherwise:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(took < Duration::from_secs(60), "the walk took {took:?}");
    eprintln!(
        "walked {} rows × {} callers × 2 teams, and without a token, in {took:?}",
        rows.len(),
        callers.len()
    );
}
