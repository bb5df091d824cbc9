//! End-to-end: identity against a live server and the real Docker engine (docs/access.md).
//! First start prints a one-time administrator password that must be changed; a user logs in
//! and deploys; calls without a token, with a revoked token or of a disabled user are refused at
//! once; failed logins lock; the audit log shows all of it and no secret reaches it or the log.

mod common;

use berth_testkit::{testapp_image, TestRun};
use common::*;
use serde_json::{json, Value};
use std::process::Command;

/// One API call with exactly the given token (none: no `Authorization`): (status, lowercase
/// head, JSON body or Null).
fn login(addr: &str, user: &str, password: &str) -> (u16, String, Value) {
    call(
        addr,
        "POST",
        "/api/v1/login",
        None,
        Some(json!({"user": user, "password": password})),
    )
}

/// Does `text` contain something shaped like a Berth token (`berth_` + 43 base64url chars)?
fn has_token_shape(text: &str) -> bool {
    text.match_indices("berth_").any(|(i, _)| {
        let rest = &text.as_bytes()[i + 6..];
        rest.len() >= 43
            && rest[..43]
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
    })
}

const ANNOUNCE: &str = "berth: administrator \"admin\" created; one-time password: ";

#[test]
fn first_start_users_tokens_lockout_and_audit() {
    let run = TestRun::new("access");
    let image = testapp_image(&run);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_generated_admin(&run, dir.path());
    let api = server.api.as_str();

    // The one-time password, printed once on stderr.
    let log = std::fs::read_to_string(&server.log).unwrap();
    let line = log
        .lines()
        .find(|l| l.starts_with(ANNOUNCE))
        .unwrap_or_else(|| panic!("no password announcement in:\n{log}"));
    let first_password = line[ANNOUNCE.len()..].trim().to_string();
    assert!(first_password.len() >= 16, "{first_password:?}");

    // Log in with it: every call but whoami, logout and the password change is refused.
    let (status, _, session) = login(api, "admin", &first_password);
    assert_eq!(status, 200, "{session}");
    assert_eq!(session["password_change_required"], true);
    let admin = session["token"].as_str().unwrap().to_string();
    let (status, _, body) = call(api, "GET", "/api/v1/apps", Some(&admin), None);
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("password_change_required")),
        "{body}"
    );
    let (status, _, who) = call(api, "GET", "/api/v1/whoami", Some(&admin), None);
    assert_eq!((status, who["user"].as_str()), (200, Some("admin")));
    let new_admin_password = "admin-chose-this-one";
    let (status, _, body) = call(
        api,
        "POST",
        "/api/v1/users/admin/password",
        Some(&admin),
        Some(json!({"password": new_admin_password, "current_password": first_password})),
    );
    assert_eq!(status, 200, "{body}");
    let (status, _, _) = call(api, "GET", "/api/v1/apps", Some(&admin), None);
    assert_eq!(status, 200);

    // The administrator creates bob; bob logs in and deploys with his session.
    let bob_password = "bobs-own-password";
    let (status, _, body) = call(
        api,
        "POST",
        "/api/v1/users",
        Some(&admin),
        Some(json!({"name": "bob", "password": bob_password})),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["password"], Value::Null);
    // A new user is in no team: bob joins `default` as a developer to deploy there.
    let (status, _, body) = call(
        api,
        "POST",
        "/api/v1/teams/default/members",
        Some(&admin),
        Some(json!({"user": "bob", "role": "developer"})),
    );
    assert_eq!(status, 201, "{body}");
    let (status, _, session) = login(api, "bob", bob_password);
    assert_eq!(status, 200, "{session}");
    assert_eq!(session["password_change_required"], false);
    let bob = session["token"].as_str().unwrap().to_string();
    let file = compose(
        dir.path(),
        "compose.yaml",
        &format!(
            "services:\n  web:\n    image: {image}\n    expose: [\"8080\"]\n    x-berth:\n      health: {{ http: /healthz, interval: 500ms }}\n"
        ),
    );
    let out = Command::new(bin())
        .args(["apply", "-f", file.to_str().unwrap(), "--app", "bobs"])
        .env("BERTH_SERVER", format!("http://{api}"))
        .env("BERTH_TOKEN", &bob)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bob's deploy: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Bob is not an administrator.
    let (status, _, body) = call(api, "GET", "/api/v1/users", Some(&bob), None);
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")));

    // No token: 401, reads and writes alike.
    let (status, head, body) = call(api, "GET", "/api/v1/apps", None, None);
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")));
    assert!(head.contains("www-authenticate: bearer"), "{head}");
    let (status, _, _) = call(
        api,
        "POST",
        "/api/v1/apps/bobs/scale",
        None,
        Some(json!({"replicas": {"web": 3}})),
    );
    assert_eq!(status, 401);

    // An API token works until revoked, then fails at once.
    let (status, _, created) = call(
        api,
        "POST",
        "/api/v1/api-tokens",
        Some(&bob),
        Some(json!({"name": "ci"})),
    );
    assert_eq!(status, 201, "{created}");
    let ci = created["token"].as_str().unwrap().to_string();
    assert_eq!(call(api, "GET", "/api/v1/apps", Some(&ci), None).0, 200);
    let (status, _, listed) = call(api, "GET", "/api/v1/api-tokens", Some(&bob), None);
    assert_eq!(status, 200);
    assert!(
        !listed.to_string().contains(&ci),
        "a secret is listed: {listed}"
    );
    let (status, _, body) = call(api, "DELETE", "/api/v1/api-tokens/ci", Some(&bob), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(call(api, "GET", "/api/v1/apps", Some(&ci), None).0, 401);

    // `/metrics` is the administrator's, or a `metrics`-scoped token's (which may do nothing else).
    assert_eq!(call(api, "GET", "/metrics", Some(&bob), None).0, 403);
    let (status, _, scraper) = call(
        api,
        "POST",
        "/api/v1/api-tokens",
        Some(&bob),
        Some(json!({"name": "scraper", "scopes": ["metrics"], "ttl_secs": 3600})),
    );
    assert_eq!(status, 201, "{scraper}");
    let scraper = scraper["token"].as_str().unwrap().to_string();
    assert_eq!(call(api, "GET", "/metrics", Some(&scraper), None).0, 200);
    let (status, _, body) = call(api, "GET", "/api/v1/apps", Some(&scraper), None);
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")));
    assert_eq!(call(api, "GET", "/metrics", Some(&admin), None).0, 200);

    // Disabling bob ends his session at once.
    let (status, _, body) = call(api, "POST", "/api/v1/users/bob/disable", Some(&admin), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(call(api, "GET", "/api/v1/apps", Some(&bob), None).0, 401);

    // Five failed logins lock the user (and this address) for 15 minutes.
    for _ in 0..5 {
        let (status, _, body) = login(api, "admin", "not-the-password");
        assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")));
    }
    let (status, head, body) = login(api, "admin", new_admin_password);
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("login_locked")),
        "{body}"
    );
    assert!(
        head.contains("retry-after: 900") || head.contains("retry-after: 899"),
        "{head}"
    );

    // The audit log (the administrator's session still works) shows all of it.
    let (status, _, page) = call(api, "GET", "/api/v1/audit?limit=1000", Some(&admin), None);
    assert_eq!(status, 200, "{page}");
    let rows = page["entries"].as_array().unwrap();
    let has = |action: &str, user: Option<&str>, status: u64| {
        rows.iter()
            .any(|r| r["action"] == action && r["user"].as_str() == user && r["status"] == status)
    };
    assert!(has("login", Some("admin"), 401), "a refused login: {page}");
    assert!(has("login", Some("bob"), 200), "bob's login: {page}");
    assert!(
        has("POST /api/v1/apps/{app}/scale", None, 401),
        "the 401: {page}"
    );
    assert!(
        has("POST /api/v1/apps/{app}/apply", Some("bob"), 201),
        "the deploy: {page}"
    );
    assert!(
        rows.iter()
            .any(|r| r["action"] == "POST /api/v1/apps/{app}/apply" && r["team"] == "default"),
        "the deploy's team: {page}"
    );
    assert!(
        rows.iter()
            .any(|r| r["action"] == "POST /api/v1/teams/{team}/members"
                && r["team"] == "default"
                && r["user"] == "admin"),
        "the membership change: {page}"
    );
    assert!(
        has("DELETE /api/v1/api-tokens/{name}", Some("bob"), 200),
        "the revoke: {page}"
    );
    assert!(
        has("POST /api/v1/users/{name}/disable", Some("admin"), 200),
        "the disable: {page}"
    );
    assert!(has("login", Some("admin"), 429), "the locked login: {page}");
    assert!(
        rows.iter()
            .any(|r| r["action"] == "POST /api/v1/users/{name}/password"
                && r["object"] == "/api/v1/users/admin/password"),
        "{page}"
    );
    // Paged by id.
    let (_, _, first) = call(api, "GET", "/api/v1/audit?limit=2", Some(&admin), None);
    let after = first["next_after"].as_u64().unwrap();
    let (_, _, next) = call(
        api,
        "GET",
        &format!("/api/v1/audit?limit=2&after={after}"),
        Some(&admin),
        None,
    );
    assert!(next["entries"][0]["id"].as_u64().unwrap() > after);

    // No secret in the audit log or in the server log (but the one announcement line).
    let audit = page.to_string();
    let log = std::fs::read_to_string(&server.log).unwrap();
    let local = server.token();
    for secret in [
        first_password.as_str(),
        new_admin_password,
        bob_password,
        "not-the-password",
        admin.as_str(),
        bob.as_str(),
        ci.as_str(),
        scraper.as_str(),
        local.as_str(),
    ] {
        assert!(
            !audit.contains(secret),
            "a secret in the audit log: {audit}"
        );
    }
    assert!(
        !audit.contains("berth_"),
        "a token in the audit log: {audit}"
    );
    assert_eq!(log.matches(first_password.as_str()).count(), 1, "{log}");
    for secret in [
        new_admin_password,
        bob_password,
        "not-the-password",
        &admin,
        &bob,
        &ci,
        &scraper,
        &local,
    ] {
        assert!(!log.contains(secret), "a secret in the server log:\n{log}");
    }
    assert!(!has_token_shape(&log), "a token in the server log:\n{log}");
}

#[test]
fn the_local_token_is_private_and_rotates_at_restart() {
    let run = TestRun::new("access-local");
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&run, dir.path());
    let file = dir.path().join("admin.token");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let first = server.token();
    let (status, _, who) = call(&server.api, "GET", "/api/v1/whoami", Some(&first), None);
    assert_eq!(status, 200, "{who}");
    assert_eq!(
        (who["user"].as_str(), who["kind"].as_str()),
        (Some("admin"), Some("local"))
    );
    // The harness's CLI calls carry it.
    server.ok(&["apps"]);
    server.stop();
    let server = Server::start(&run, dir.path());
    let second = server.token();
    assert_ne!(first, second);
    assert_eq!(
        call(&server.api, "GET", "/api/v1/whoami", Some(&first), None).0,
        401
    );
    assert_eq!(
        call(&server.api, "GET", "/api/v1/whoami", Some(&second), None).0,
        200
    );
    // BERTH_ADMIN_PASSWORD was set (by the harness): nothing announced, no password in the log.
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(!log.contains("one-time password"), "{log}");
    assert!(!log.contains(TEST_ADMIN_PASSWORD), "{log}");
    // The administrator password from the environment works.
    assert_eq!(login(&server.api, "admin", TEST_ADMIN_PASSWORD).0, 200);
}

#[test]
fn logins_sent_at_once_get_no_more_than_five_guesses_and_a_password_change_ends_other_sessions() {
    let run = TestRun::new("access-race");
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&run, dir.path());
    let api = server.api.clone();
    let admin = server.token();
    let (status, _, _) = call(
        &api,
        "POST",
        "/api/v1/users",
        Some(&admin),
        Some(json!({"name": "carol", "password": "carol-password-1"})),
    );
    assert_eq!(status, 201);

    // Two sessions of carol's, then she changes her password in the first.
    let (_, _, first) = login(&api, "carol", "carol-password-1");
    let (_, _, second) = login(&api, "carol", "carol-password-1");
    let first = first["token"].as_str().unwrap().to_string();
    let second = second["token"].as_str().unwrap().to_string();
    let (status, _, body) = call(
        &api,
        "POST",
        "/api/v1/users/carol/password",
        Some(&first),
        Some(json!({"password": "carol-password-2", "current_password": "carol-password-1"})),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        call(&api, "GET", "/api/v1/whoami", Some(&first), None).0,
        200,
        "the session that changed the password goes on"
    );
    assert_eq!(
        call(&api, "GET", "/api/v1/whoami", Some(&second), None).0,
        401,
        "another session of the user ends with the old password"
    );

    // 20 wrong logins at once: at most 5 are checked (401), the rest are refused (429), and then
    // even the right password is refused while the lock holds.
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let api = api.clone();
                s.spawn(move || login(&api, "carol", &format!("wrong-guess-{i}")).0)
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let checked = statuses.iter().filter(|s| **s == 401).count();
    assert!(checked <= 5, "{checked} guesses were checked: {statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );
    assert_eq!(login(&api, "carol", "carol-password-2").0, 429);
    drop(server);
    run.cleanup();
}
