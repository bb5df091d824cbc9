//! End-to-end: identity through the CLI against a real `berth server` (docs/access.md). The
//! administrator logs in with the password from `BERTH_ADMIN_PASSWORD`, creates a user who logs
//! in from another configuration directory, creates and revokes an API token; the audit log
//! shows it; a caller with no credential is refused with the login hint unless it can read the
//! server's `admin.token`.
//!
//! Needs the server side of issue 11 (login, users, API tokens, audit, `admin.token`).

mod common;

use berth_testkit::TestRun;
use common::*;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const ADMIN_PASSWORD: &str = "admin password for the identity test";
const BOB_PASSWORD: &str = "bob's password for the identity test";

/// `berth ARGS` against `server` with its own configuration in `home` (HOME and
/// XDG_CONFIG_HOME), no inherited credential or data directory, `env` added, `stdin` as input.
fn berth(server: &Server, home: &Path, env: &[(&str, &str)], stdin: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env("BERTH_SERVER", format!("http://{}", server.api))
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env_remove("XDG_DATA_HOME")
        .env_remove("BERTH_TOKEN")
        .env_remove("BERTH_DATA_DIR")
        .env_remove("BERTH_CA_FILE")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run berth CLI");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

/// Like [`berth`], but the command must succeed; its stdout.
fn ok(server: &Server, home: &Path, env: &[(&str, &str)], stdin: &str, args: &[&str]) -> String {
    let out = berth(server, home, env, stdin, args);
    assert!(
        out.status.success(),
        "berth {args:?} failed ({}):\nstdout: {}\nstderr: {}\nserver log tail:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        server.log_tail()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The command must fail with exactly one line on stderr carrying the login hint.
fn refused_with_hint(out: &Output, what: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "{what} succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(err.lines().count(), 1, "{what}: {err}");
    assert!(
        err.starts_with("error: ")
            && err.contains("(unauthorized): log in with `berth login` or set BERTH_TOKEN"),
        "{what}: {err}"
    );
}

fn whoami(server: &Server, home: &Path, env: &[(&str, &str)]) -> serde_json::Value {
    let out = ok(server, home, env, "", &["whoami", "-o", "json"]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("whoami json: {e}: {out}"))
}

#[test]
fn users_sessions_api_tokens_and_audit_through_the_cli() {
    let run = TestRun::new("identity-cli");
    let dir = tempfile::tempdir().unwrap();
    // Not the server's default data directory: only BERTH_DATA_DIR leads the CLI to it.
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let api = format!("127.0.0.1:{}", free_port());
    let gw = format!("127.0.0.1:{}", free_port());
    let server = Server::start_with_env(
        &run,
        &data,
        &api,
        &gw,
        &[],
        &[("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD)],
    );
    let admin = dir.path().join("admin-home");
    let bob = dir.path().join("bob-home");
    let nobody = dir.path().join("nobody-home");
    for h in [&admin, &bob, &nobody] {
        std::fs::create_dir_all(h).unwrap();
    }

    // The administrator logs in; the session is private to them.
    let out = ok(
        &server,
        &admin,
        &[],
        &format!("{ADMIN_PASSWORD}\n"),
        &["login", "--user", "admin", "--password-stdin"],
    );
    assert!(out.contains("as admin"), "{out}");
    let creds = admin.join("config/berth/credentials.json");
    assert_eq!(std::fs::metadata(&creds).unwrap().mode() & 0o777, 0o600);
    let me = whoami(&server, &admin, &[]);
    assert_eq!(me["user"], "admin", "{me}");
    assert_eq!(me["kind"], "login", "{me}");
    let out = ok(&server, &admin, &[], "", &["whoami"]);
    assert!(out.starts_with("admin"), "{out}");

    // A user, who logs in from their own configuration directory.
    let out = ok(
        &server,
        &admin,
        &[],
        &format!("{BOB_PASSWORD}\n"),
        &["user", "add", "bob", "--password-stdin"],
    );
    assert!(out.contains("bob") && !out.contains(BOB_PASSWORD), "{out}");
    ok(
        &server,
        &bob,
        &[],
        &format!("{BOB_PASSWORD}\n"),
        &["login", "--user", "bob", "--password-stdin"],
    );
    assert_eq!(whoami(&server, &bob, &[])["user"], "bob");
    let users = ok(&server, &admin, &[], "", &["user", "ls", "-o", "json"]);
    let users: serde_json::Value = serde_json::from_str(&users).unwrap();
    assert!(
        users.as_array().unwrap().iter().any(|u| u["name"] == "bob"),
        "{users}"
    );

    // An API token: only its secret on stdout, usable through BERTH_TOKEN from anywhere.
    let secret = ok(&server, &bob, &[], "", &["api-token", "create", "ci"]);
    assert_eq!(secret.lines().count(), 1, "{secret:?}");
    let secret = secret.trim().to_string();
    assert!(
        secret.starts_with("berth_") && secret.len() > 40,
        "{secret}"
    );
    let with_secret = [("BERTH_TOKEN", secret.as_str())];
    let me = whoami(&server, &nobody, &with_secret);
    assert_eq!(me["user"], "bob", "{me}");
    assert_eq!(me["kind"], "api", "{me}");
    let listed = ok(&server, &bob, &[], "", &["api-token", "ls", "-o", "json"]);
    assert!(
        listed.contains("\"ci\"") && !listed.contains(&secret),
        "{listed}"
    );

    // Revoked: the secret fails at once, in one line, with the hint.
    ok(&server, &bob, &[], "", &["api-token", "revoke", "ci"]);
    refused_with_hint(
        &berth(&server, &nobody, &with_secret, "", &["whoami"]),
        "whoami with a revoked token",
    );

    // Logout ends bob's session and removes it from his file.
    let bob_creds = bob.join("config/berth/credentials.json");
    let before = std::fs::read_to_string(&bob_creds).unwrap();
    ok(&server, &bob, &[], "", &["logout"]);
    let after: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&bob_creds).unwrap()).unwrap();
    assert!(
        after["servers"].as_object().is_none_or(|m| m.is_empty()),
        "{after}"
    );
    let old: serde_json::Value = serde_json::from_str(&before).unwrap();
    let old_token = old["servers"]
        .as_object()
        .and_then(|m| m.values().next())
        .and_then(|e| e["token"].as_str())
        .unwrap()
        .to_string();
    refused_with_hint(
        &berth(
            &server,
            &nobody,
            &[("BERTH_TOKEN", old_token.as_str())],
            "",
            &["whoami"],
        ),
        "whoami with a logged-out session",
    );

    // The audit log shows it all, and no secret.
    let rows = ok(&server, &admin, &[], "", &["audit", "-o", "json"]);
    let parsed: serde_json::Value = serde_json::from_str(&rows).unwrap();
    let rows_list = parsed.as_array().unwrap();
    assert!(!rows_list.is_empty());
    assert!(
        rows_list
            .iter()
            .any(|r| r["action"] == "login" && r["user"] == "bob"),
        "{rows}"
    );
    assert!(
        rows_list.iter().any(|r| r["action"]
            .as_str()
            .is_some_and(|a| a.contains("/api/v1/users"))),
        "{rows}"
    );
    for s in [
        ADMIN_PASSWORD,
        BOB_PASSWORD,
        secret.as_str(),
        old_token.as_str(),
    ] {
        assert!(!rows.contains(s), "a secret is in the audit log");
    }
    let table = ok(
        &server,
        &admin,
        &[],
        "",
        &["audit", "--user", "bob", "--since", "1h", "--limit", "2"],
    );
    assert!(table.starts_with("TIME"), "{table}");
    assert!(table.lines().count() <= 3, "{table}");

    // No credential at all: refused with the hint (the server's data directory is not the
    // default, so its admin.token is not found) ...
    refused_with_hint(
        &berth(&server, &nobody, &[], "", &["whoami"]),
        "whoami with no credential",
    );
    // ... until BERTH_DATA_DIR names it: the local administrator token.
    let data_dir = data.to_str().unwrap();
    let me = whoami(&server, &nobody, &[("BERTH_DATA_DIR", data_dir)]);
    assert_eq!(me["user"], "admin", "{me}");
    assert_eq!(me["kind"], "local", "{me}");
}
