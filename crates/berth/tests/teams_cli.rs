//! End-to-end: teams through the CLI against a real `berth server` (docs/teams.md, "Using teams
//! from the CLI"). The administrator adds teams and members; a user in two teams gets
//! `team_required` until it names one (`--team`, `BERTH_TEAM`, `berth team use`, or a token
//! bound to a team); the audit rows carry the team each call acted in; the last owner stays.

mod common;

use berth_testkit::TestRun;
use common::*;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const CAROL_PASSWORD: &str = "carol's password for the teams test";

/// `berth ARGS` with its own configuration in `home`; `admin`: as the server's local
/// administrator (its `admin.token`), else with no credential but what `home` holds.
fn berth(
    server: &Server,
    home: &Path,
    admin: bool,
    env: &[(&str, &str)],
    stdin: &str,
    args: &[&str],
) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env("BERTH_SERVER", format!("http://{}", server.api))
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env_remove("XDG_DATA_HOME")
        .env_remove("BERTH_TOKEN")
        .env_remove("BERTH_TEAM")
        .env_remove("BERTH_CA_FILE")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if admin {
        cmd.env("BERTH_DATA_DIR", &server.data_dir);
    } else {
        cmd.env("BERTH_DATA_DIR", home.join("no-data-dir"));
    }
    let mut child = cmd.spawn().expect("run berth CLI");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn must(out: Output, args: &[&str], server: &Server) -> String {
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

/// The command fails with one line on stderr containing every one of `needles`.
fn refused(out: &Output, what: &str, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "{what} succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(err.lines().count(), 1, "{what}: {err}");
    assert!(err.starts_with("error: "), "{what}: {err}");
    for n in needles {
        assert!(err.contains(n), "{what}: {n:?} not in {err}");
    }
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn teams_members_current_team_and_team_required_through_the_cli() {
    let run = TestRun::new("teams-cli");
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&run, dir.path());
    let admin_home = dir.path().join("admin-home");
    let carol_home = dir.path().join("carol-home");
    let a = |args: &[&str]| {
        must(
            berth(&server, &admin_home, true, &[], "", args),
            args,
            &server,
        )
    };
    let a_fails = |args: &[&str]| berth(&server, &admin_home, true, &[], "", args);
    let c_env =
        |env: &[(&str, &str)], args: &[&str]| berth(&server, &carol_home, false, env, "", args);
    let c = |args: &[&str]| must(c_env(&[], args), args, &server);

    // Teams: add, list, refuse a bad or taken name.
    assert!(a(&["team", "add", "shop"]).contains("team shop created"));
    a(&["team", "add", "ops"]);
    a(&["team", "add", "tmp"]);
    refused(
        &a_fails(&["team", "add", "shop"]),
        "a taken name",
        &["team_exists"],
    );
    refused(
        &a_fails(&["team", "add", "No Way"]),
        "a bad name",
        &["invalid_argument"],
    );
    let teams = json(&a(&["team", "ls", "-o", "json"]));
    let names: Vec<&str> = teams
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["default", "ops", "shop", "tmp"], "{teams}");
    assert!(a(&["team", "rm", "tmp"]).contains("team tmp removed"));
    refused(
        &a_fails(&["team", "rm", "tmp"]),
        "removed twice",
        &["team_not_found"],
    );
    refused(
        &a_fails(&["team", "rm", "default"]),
        "default",
        &["team_not_empty"],
    );

    // A user created straight into a team, then a member of a second one.
    let args = [
        "--team",
        "shop",
        "user",
        "add",
        "carol",
        "--password-stdin",
        "--role",
        "owner",
    ];
    let out = must(
        berth(
            &server,
            &admin_home,
            true,
            &[],
            &format!("{CAROL_PASSWORD}\n"),
            &args,
        ),
        &args,
        &server,
    );
    assert!(out.contains("carol as owner of team shop created"), "{out}");
    assert!(a(&[
        "team",
        "member",
        "add",
        "ops",
        "carol",
        "--role",
        "developer"
    ])
    .contains("carol is developer of team ops"));
    refused(
        &a_fails(&["team", "member", "add", "ops", "nobody", "--role", "viewer"]),
        "an unknown user",
        &["user_not_found"],
    );
    let members = json(&a(&["team", "member", "ls", "shop", "-o", "json"]));
    assert_eq!(members[0]["user"], "carol", "{members}");
    assert_eq!(members[0]["role"], "owner", "{members}");
    // The last owner is neither removed nor demoted.
    refused(
        &a_fails(&["team", "member", "rm", "shop", "carol"]),
        "the last owner",
        &["last owner"],
    );
    refused(
        &a_fails(&["team", "member", "add", "shop", "carol", "--role", "viewer"]),
        "demoting the last owner",
        &["last owner"],
    );

    // Carol logs in; in two teams, a team-scoped call that names none is refused in one line
    // that says how to name one.
    let args = ["login", "--user", "carol", "--password-stdin"];
    must(
        berth(
            &server,
            &carol_home,
            false,
            &[],
            &format!("{CAROL_PASSWORD}\n"),
            &args,
        ),
        &args,
        &server,
    );
    let me = json(&c(&["whoami", "-o", "json"]));
    assert_eq!(me["teams"].as_array().unwrap().len(), 2, "{me}");
    let who = c(&["whoami"]);
    assert!(who.contains("ops (developer), shop (owner)"), "{who}");
    refused(
        &c_env(&[], &["apps"]),
        "no team",
        &["team_required", "--team", "berth team use"],
    );
    // She sees her teams, not the others.
    let mine = json(&c(&["team", "ls", "-o", "json"]));
    assert_eq!(mine.as_array().unwrap().len(), 2, "{mine}");

    // `--team`, then BERTH_TEAM, then `team use`: each call acts in the team named, and the
    // audit row says which.
    c(&["apps", "--team", "ops"]);
    refused(
        &c_env(&[], &["issuer", "rm", "x1", "--team", "ops"]),
        "x1",
        &["no issuer named"],
    );
    refused(
        &c_env(&[("BERTH_TEAM", "shop")], &["issuer", "rm", "x2"]),
        "x2",
        &["no issuer named"],
    );
    refused(
        &c_env(&[], &["team", "use", "default"]),
        "a team she is not in",
        &["default"],
    );
    assert!(c(&["team", "use", "shop"]).contains("act in team shop"));
    c(&["apps"]);
    refused(
        &c_env(&[], &["issuer", "rm", "x3"]),
        "x3",
        &["no issuer named"],
    );
    // The flag wins over the current team.
    refused(
        &c_env(&[], &["--team", "ops", "issuer", "rm", "x4"]),
        "x4",
        &["no issuer named"],
    );
    let listed = c(&["team", "ls"]);
    assert!(listed.contains("shop *"), "{listed}");
    let audit = json(&a(&["audit", "--user", "carol", "-o", "json"]));
    let team_of = |object: &str| {
        audit
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["object"] == object)
            .map(|r| r["team"].clone())
            .unwrap_or_else(|| panic!("no audit row for {object}: {audit}"))
    };
    assert_eq!(team_of("/api/v1/issuers/x1"), "ops");
    assert_eq!(team_of("/api/v1/issuers/x2"), "shop");
    assert_eq!(team_of("/api/v1/issuers/x3"), "shop");
    assert_eq!(team_of("/api/v1/issuers/x4"), "ops");
    // Cleared: team_required again.
    c(&["team", "use", "--clear"]);
    refused(&c_env(&[], &["apps"]), "cleared", &["team_required"]);

    // A token bound to a team acts in it without naming one.
    let secret = c(&["--team", "ops", "api-token", "create", "ci"])
        .trim()
        .to_string();
    let with_token = [("BERTH_TOKEN", secret.as_str())];
    must(c_env(&with_token, &["apps"]), &["apps"], &server);
    let me = json(&must(
        c_env(&with_token, &["whoami", "-o", "json"]),
        &["whoami"],
        &server,
    ));
    assert_eq!(me["team"], "ops", "{me}");
    refused(
        &c_env(&[], &["--team", "default", "api-token", "create", "ci2"]),
        "a token for a team she is not in",
        &["team_not_found"],
    );

    // Membership changes take effect on the next call.
    a(&["team", "member", "rm", "ops", "carol"]);
    refused(
        &c_env(&with_token, &["apps"]),
        "removed from ops",
        &["team_not_found"],
    );
    c(&["apps"]);
}
