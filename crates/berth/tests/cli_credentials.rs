//! The CLI's credentials, end to end through the real binary against a fake API that answers as
//! docs/access.md says the server does (no Docker, no server side needed): `berth login` keeps a
//! 0600 session keyed by server, the credential sent follows `--token` > `BERTH_TOKEN` > the
//! session > `<data-dir>/admin.token`, a 401 ends in one line with the login hint, and secrets
//! never reach the terminal where they should not.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

/// One request the fake saw: method, path (with the query), bearer token, JSON body.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    bearer: Option<String>,
    body: serde_json::Value,
}

/// The fake API: `/login` takes password `right`; `/whoami` answers a valid token with a user
/// named after the token (so a test sees which credential was sent); `berth_revoked` and no token
/// are 401; `/logout` and `/api-tokens` answer as documented.
fn fake_api() -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut first = String::new();
            let _ = reader.read_line(&mut first);
            let mut parts = first.split_whitespace();
            let method = parts.next().unwrap_or_default().to_string();
            let path = parts.next().unwrap_or_default().to_string();
            let (mut bearer, mut length) = (None, 0usize);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                let (k, v) = line.split_once(':').unwrap_or_default();
                match k.to_ascii_lowercase().as_str() {
                    "authorization" => {
                        bearer = v.trim().strip_prefix("Bearer ").map(str::to_string);
                    }
                    "content-length" => length = v.trim().parse().unwrap_or(0),
                    _ => {}
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            log.lock().unwrap().push(Seen {
                method: method.clone(),
                path: path.clone(),
                bearer: bearer.clone(),
                body: body.clone(),
            });
            let (route, query) = path.split_once('?').unwrap_or((path.as_str(), ""));
            let unauthorized = (
                401,
                serde_json::json!({"code": "unauthorized", "message": "missing or invalid token", "request_id": "r"}),
            );
            let valid = bearer.as_deref().filter(|t| *t != "berth_revoked");
            let (status, answer) = match (method.as_str(), route, valid) {
                ("POST", "/api/v1/login", _) => {
                    if body["password"] == "right" {
                        (
                            200,
                            serde_json::json!({
                                "token": format!("berth_session_{}", body["user"].as_str().unwrap_or_default()),
                                "expires_at": "2099-01-01T00:00:00Z",
                                "name": "login-1",
                                "password_change_required": body["user"] == "fresh",
                            }),
                        )
                    } else {
                        (
                            401,
                            serde_json::json!({"code": "unauthorized", "message": "wrong user or password", "request_id": "r"}),
                        )
                    }
                }
                (_, _, None) => unauthorized,
                ("GET", "/api/v1/whoami", Some(t)) => (
                    200,
                    serde_json::json!({
                        "user": t, "administrator": true, "token": "t", "kind": "login",
                        "scopes": [], "expires_at": null, "password_change_required": false,
                    }),
                ),
                ("POST", "/api/v1/logout", Some(_)) => (200, serde_json::json!({})),
                ("POST", "/api/v1/api-tokens", Some(_)) => (
                    200,
                    serde_json::json!({
                        "name": body["name"], "token": "berth_api_secret", "expires_at": null,
                    }),
                ),
                ("POST", p, Some(_)) if p.ends_with("/password") => (200, serde_json::json!({})),
                // Five rows, ids 1..=5, at most two a page whatever the limit asked.
                ("GET", "/api/v1/audit", Some(_)) => {
                    let param = |k: &str| {
                        query
                            .split('&')
                            .find_map(|kv| kv.strip_prefix(&format!("{k}=")).map(str::to_string))
                    };
                    let after: u64 = param("after").and_then(|a| a.parse().ok()).unwrap_or(0);
                    let limit: u64 = param("limit").and_then(|l| l.parse().ok()).unwrap_or(100);
                    let ids: Vec<u64> = (after + 1..=5).take(limit.min(2) as usize).collect();
                    let entries: Vec<serde_json::Value> = ids.iter().map(|id| serde_json::json!({
                        "id": id, "time": "2026-06-01T12:00:00Z", "user": "admin", "token": "login-1",
                        "team": null, "action": "POST /api/v1/users", "object": "/api/v1/users",
                        "source": "127.0.0.1", "request_id": "r", "status": 201, "code": null,
                    })).collect();
                    (
                        200,
                        serde_json::json!({"entries": entries, "next_after": ids.last()}),
                    )
                }
                _ => (
                    404,
                    serde_json::json!({"code": "not_found", "message": "no such route", "request_id": "r"}),
                ),
            };
            let text = answer.to_string();
            let _ = write!(
                conn,
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    (format!("127.0.0.1:{}", addr.port()), seen)
}

/// `berth ARGS` with HOME (and so the credentials file) in `home`, nothing else of the
/// caller's identity inherited, `env` added, `stdin` written to its input.
fn berth(home: &Path, env: &[(&str, &str)], stdin: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(common::bin());
    cmd.args(args)
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_DATA_HOME")
        .env_remove("BERTH_TOKEN")
        .env_remove("BERTH_DATA_DIR")
        .env_remove("BERTH_SERVER")
        .env_remove("BERTH_CA_FILE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn whoami_user(home: &Path, env: &[(&str, &str)], args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.extend(["whoami", "-o", "json"]);
    let out = berth(home, env, "", &all);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["user"].as_str().unwrap().to_string()
}

#[test]
fn login_keeps_a_private_session_that_later_commands_use_and_logout_ends() {
    let (api, seen) = fake_api();
    let home = tempfile::tempdir().unwrap();
    let server = format!("http://{api}");

    let out = berth(
        home.path(),
        &[],
        "right\n",
        &[
            "--server",
            &api,
            "login",
            "--user",
            "admin",
            "--password-stdin",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!("logged in to {server} as admin")),
        "{}",
        text(&out.stdout)
    );
    assert!(
        !text(&out.stdout).contains("berth_session"),
        "the token was printed"
    );

    let file = home.path().join(".config/berth/credentials.json");
    assert_eq!(std::fs::metadata(&file).unwrap().mode() & 0o777, 0o600);
    assert_eq!(
        std::fs::metadata(file.parent().unwrap()).unwrap().mode() & 0o777,
        0o700
    );
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let entry = &stored["servers"][&server];
    assert_eq!(entry["token"], "berth_session_admin", "{stored}");
    assert_eq!(entry["user"], "admin");
    assert_eq!(entry["name"], "login-1");
    assert!(
        !stored.to_string().contains("right"),
        "the password was stored"
    );

    // `http://HOST:PORT` and `HOST:PORT` are the same server.
    for s in [api.as_str(), server.as_str()] {
        assert_eq!(
            whoami_user(home.path(), &[("BERTH_SERVER", s)], &[]),
            "berth_session_admin"
        );
    }

    let out = berth(home.path(), &[], "", &["--server", &api, "logout"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let logout = seen
        .lock()
        .unwrap()
        .iter()
        .rfind(|s| s.path == "/api/v1/logout")
        .cloned()
        .expect("logout reached the server");
    assert_eq!(logout.method, "POST");
    assert_eq!(logout.bearer.as_deref(), Some("berth_session_admin"));
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert!(stored["servers"].get(&server).is_none(), "{stored}");

    // Nothing left: the server says 401, the CLI says so in one line with the hint.
    let out = berth(home.path(), &[], "", &["--server", &api, "whoami"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "error: missing or invalid token (unauthorized): log in with `berth login` or set BERTH_TOKEN\n"
    );
}

#[test]
fn the_credential_sent_is_flag_then_env_then_session_then_admin_token() {
    let (api, _) = fake_api();
    let home = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = [("BERTH_SERVER", api.as_str())];
    let data_dir = data.path().to_str().unwrap();

    // The local administrator token of the data directory in BERTH_DATA_DIR.
    std::fs::write(data.path().join("admin.token"), "berth_local\n").unwrap();
    let with_data = [("BERTH_SERVER", api.as_str()), ("BERTH_DATA_DIR", data_dir)];
    assert_eq!(whoami_user(home.path(), &with_data, &[]), "berth_local");
    // ... or the server's default data directory ($XDG_DATA_HOME/berth).
    let xdg_data = home.path().join("xdg-data");
    std::fs::create_dir_all(xdg_data.join("berth")).unwrap();
    std::fs::write(xdg_data.join("berth/admin.token"), "berth_default\n").unwrap();
    let with_xdg = [
        ("BERTH_SERVER", api.as_str()),
        ("XDG_DATA_HOME", xdg_data.to_str().unwrap()),
    ];
    assert_eq!(whoami_user(home.path(), &with_xdg, &[]), "berth_default");

    // A session beats it.
    let out = berth(
        home.path(),
        &with_data,
        "right\n",
        &["login", "--user", "bob", "--password-stdin"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        whoami_user(home.path(), &with_data, &[]),
        "berth_session_bob"
    );

    // BERTH_TOKEN beats the session, --token beats BERTH_TOKEN.
    let with_env = [
        ("BERTH_SERVER", api.as_str()),
        ("BERTH_DATA_DIR", data_dir),
        ("BERTH_TOKEN", "berth_env"),
    ];
    assert_eq!(whoami_user(home.path(), &with_env, &[]), "berth_env");
    assert_eq!(
        whoami_user(home.path(), &with_env, &["--token", "berth_flag"]),
        "berth_flag"
    );

    // A revoked token fails at once, in one line, with the hint and without the token.
    let out = berth(
        home.path(),
        &server,
        "",
        &["--token", "berth_revoked", "whoami"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("log in with `berth login` or set BERTH_TOKEN"),
        "{err}"
    );
    assert!(!err.contains("berth_revoked"), "{err}");
}

#[test]
fn refused_and_impossible_logins_are_one_line_and_store_nothing() {
    let (api, _) = fake_api();
    let home = tempfile::tempdir().unwrap();
    let server = [("BERTH_SERVER", api.as_str())];
    let file = home.path().join(".config/berth/credentials.json");

    let out = berth(
        home.path(),
        &server,
        "wrong\n",
        &["login", "--user", "admin", "--password-stdin"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "error: wrong user or password (unauthorized)\n"
    );
    assert!(!file.exists());

    // No terminal and no --password-stdin: nowhere to read the password from.
    let out = berth(home.path(), &server, "", &["login", "--user", "admin"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--password-stdin"), "{err}");

    // An empty stdin is no password.
    let out = berth(
        home.path(),
        &server,
        "",
        &["login", "--user", "admin", "--password-stdin"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("expected the password on stdin"));
    assert!(!file.exists());

    // A generated password must be changed first: the CLI says how.
    let out = berth(
        home.path(),
        &server,
        "right\n",
        &["login", "--user", "fresh", "--password-stdin"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("run `berth user passwd`"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn api_token_create_prints_only_the_secret() {
    let (api, seen) = fake_api();
    let home = tempfile::tempdir().unwrap();
    let out = berth(
        home.path(),
        &[("BERTH_SERVER", api.as_str()), ("BERTH_TOKEN", "berth_env")],
        "",
        &[
            "api-token",
            "create",
            "ci",
            "--ttl",
            "30d",
            "--scope",
            "metrics",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "berth_api_secret\n");
    let req = seen
        .lock()
        .unwrap()
        .iter()
        .rfind(|s| s.path == "/api/v1/api-tokens")
        .cloned()
        .unwrap();
    assert_eq!(req.bearer.as_deref(), Some("berth_env"));
}

#[test]
fn passwd_reads_current_then_new_for_oneself_and_only_new_for_another() {
    let (api, seen) = fake_api();
    let home = tempfile::tempdir().unwrap();
    // The fake's whoami names the user after the token.
    let env = [("BERTH_SERVER", api.as_str()), ("BERTH_TOKEN", "me")];
    let last_password_call = || {
        seen.lock()
            .unwrap()
            .iter()
            .rfind(|s| s.path.ends_with("/password"))
            .cloned()
            .unwrap()
    };

    let out = berth(
        home.path(),
        &env,
        "old secret\nnew secret\n",
        &["user", "passwd", "--password-stdin"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let call = last_password_call();
    assert_eq!(call.path, "/api/v1/users/me/password");
    assert_eq!(
        call.body,
        serde_json::json!({"password": "new secret", "current_password": "old secret"})
    );
    assert!(!text(&out.stdout).contains("secret") && !text(&out.stderr).contains("secret"));

    let out = berth(
        home.path(),
        &env,
        "bob's new\n",
        &["user", "passwd", "bob", "--password-stdin"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let call = last_password_call();
    assert_eq!(call.path, "/api/v1/users/bob/password");
    assert_eq!(call.body["password"], "bob's new");
    assert!(call
        .body
        .get("current_password")
        .is_none_or(serde_json::Value::is_null));

    // One line for oneself is not enough: nothing is sent.
    let before = seen.lock().unwrap().len();
    let out = berth(
        home.path(),
        &env,
        "only one\n",
        &["user", "passwd", "--password-stdin"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("expected the current and the new password on stdin"));
    assert!(!seen.lock().unwrap()[before..]
        .iter()
        .any(|s| s.path.ends_with("/password")));
}

#[test]
fn audit_pages_through_the_log_up_to_the_limit() {
    let (api, seen) = fake_api();
    let home = tempfile::tempdir().unwrap();
    let env = [("BERTH_SERVER", api.as_str()), ("BERTH_TOKEN", "admin")];
    let ids = |out: &Output| -> Vec<u64> {
        assert!(out.status.success(), "{}", text(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(
        ids(&berth(home.path(), &env, "", &["audit", "-o", "json"])),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(
        ids(&berth(
            home.path(),
            &env,
            "",
            &["audit", "--limit", "3", "-o", "json"]
        )),
        [1, 2, 3]
    );

    let out = berth(
        home.path(),
        &env,
        "",
        &["audit", "--since", "1h", "--user", "bob", "--limit", "1"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["TIME", "USER", "ACTION", "OBJECT", "STATUS", "CODE", "SOURCE"]
    );
    assert_eq!(lines.count(), 1, "{table}");
    let query = seen.lock().unwrap().last().unwrap().path.clone();
    assert!(
        query.contains("user=bob") && query.contains("limit=1"),
        "{query}"
    );
    // `--since 1h` goes as an RFC 3339 time.
    let since = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("since="))
        .map(|s| s.replace("%3A", ":"))
        .unwrap_or_else(|| panic!("no since in {query}"));
    let t = time::OffsetDateTime::parse(&since, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{since}: {e}"));
    let ago = time::OffsetDateTime::now_utc() - t;
    assert!(
        ago > time::Duration::minutes(59) && ago < time::Duration::minutes(61),
        "{ago}"
    );
}
