//! Preview environments (docs/environments.md#preview-environments), against real Docker and a
//! real Git repository: a signed push webhook of a new branch builds it and deploys the
//! application with that version into `preview-<branch>`; a new push redeploys it; deleting the
//! branch removes the environment at once; `dev` is untouched throughout. Then `berth deploy`
//! puts the branch's version into dev by name.

mod common;

use berth_testkit::{testapp_binary, wait_for, TestRun};
use common::*;
use std::time::Duration;

const SECRET: &[u8] = b"preview-secret-0123456789";

fn hook(server: &Server, body: &str) -> (u16, String) {
    let mac: String = berth_controlplane::webhooks::hmac_sha256(SECRET, body.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let (code, _, answer) = raw_request(
        &server.api,
        "POST",
        "/api/v1/hooks/web",
        &[("X-Hub-Signature-256", &format!("sha256={mac}"))],
        body,
    );
    (code, answer)
}

/// Wait for the `nth` preview event (deployed or failed) and insist it is a deployment.
fn previewed(server: &Server, nth: usize) {
    let token = server.token();
    let e = wait_for(Duration::from_secs(120), "a preview event", || {
        let (_, _, events) = call(&server.api, "GET", "/api/v1/events", Some(&token), None);
        let list: Vec<serde_json::Value> = events
            .as_array()?
            .iter()
            .filter(|e| {
                e["kind"]
                    .as_str()
                    .is_some_and(|k| k.starts_with("preview_"))
            })
            .cloned()
            .collect();
        list.get(nth).cloned()
    });
    assert_eq!(e["kind"], "preview_deployed", "{e}\n{}", server.log_tail());
}

fn answers(server: &Server, host: &str, version: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let got = berth_testkit::http_get(&server.gateway, "/", Some(host), Duration::from_secs(5));
        if matches!(&got, Ok((200, body)) if body.starts_with(version)) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{host} does not answer {version}: last {got:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_pushed_branch_gets_a_preview_environment_until_it_is_deleted() {
    let run = TestRun::new("env-preview");
    let dir = tempfile::tempdir().unwrap();
    let (data, repo) = (dir.path().join("data"), dir.path().join("repo"));
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::copy(testapp_binary(), repo.join("app")).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    commit_app_version(&repo, "main");
    let server = Server::start(&run, &data);

    // --preview-app needs a branch to tell previews from the service's own pushes.
    let out = server.cli(&[
        "service",
        "create",
        "bad",
        "--git",
        repo.to_str().unwrap(),
        "--preview-app",
        "shop",
    ]);
    failed_with(&out, "invalid_argument");
    server.ok(&[
        "service",
        "create",
        "web",
        "--git",
        repo.to_str().unwrap(),
        "--branch",
        "main",
        "--preview-app",
        "shop",
        "--preview-ttl",
        "1h",
    ]);
    set_webhook_secret(&server, "web", SECRET);

    // The application in dev, running main's build.
    let log = server.ok(&["build", "web", "--follow"]);
    assert!(log.contains("succeeded"), "{log}");
    let versions = json(&server.ok(&["versions", "web", "-o", "json"]));
    let tag = versions[0]["tag"].as_str().unwrap().to_string();
    let file = compose(
        dir.path(),
        "compose.yaml",
        &format!("services:\n  web:\n    image: {tag}\n    expose: [\"8080\"]\n    x-berth:\n      route: {{ path_prefix: / }}\n"),
    );
    server.ok(&["apply", "-f", file.to_str().unwrap(), "--app", "shop"]);
    answers(&server, "shop.example", "main");

    // A new branch is pushed: built, and deployed into its preview environment.
    git(&repo, &["checkout", "-q", "-b", "Feature_Login"]);
    commit_app_version(&repo, "feature1");
    let (code, answer) = hook(&server, r#"{"ref":"refs/heads/Feature_Login"}"#);
    assert_eq!(code, 202, "{answer}");
    previewed(&server, 0);
    answers(&server, "preview-feature-login.shop.example", "feature1");
    let envs = server.ok(&["env", "ls"]);
    assert!(envs.contains("preview-feature-login"), "{envs}");
    let history = json(&server.ok(&[
        "--env",
        "preview-feature-login",
        "history",
        "--app",
        "shop",
        "-o",
        "json",
    ]));
    assert_eq!(history[0]["source"], "preview", "{history}");
    assert!(
        history[0]["change"]
            .as_str()
            .unwrap()
            .contains("Feature_Login"),
        "{history}"
    );

    // Another push redeploys it; dev still runs main.
    commit_app_version(&repo, "feature2");
    let (code, answer) = hook(&server, r#"{"ref":"refs/heads/Feature_Login"}"#);
    assert_eq!(code, 202, "{answer}");
    previewed(&server, 1);
    answers(&server, "preview-feature-login.shop.example", "feature2");
    answers(&server, "shop.example", "main");

    // Deleting the branch removes the environment at once.
    let (code, answer) = hook(
        &server,
        r#"{"ref":"refs/heads/Feature_Login","deleted":true}"#,
    );
    assert_eq!(code, 200, "{answer}");
    assert!(
        answer.contains("preview environment preview-feature-login removed"),
        "{answer}"
    );
    assert!(!server.ok(&["env", "ls"]).contains("preview-feature-login"));
    wait_for(
        Duration::from_secs(60),
        "the preview's containers gone",
        || {
            (!containers(&run)
                .iter()
                .any(|c| c.contains("..preview-feature-login")))
            .then_some(())
        },
    );
    answers(&server, "shop.example", "main");

    // The branch's last version deployed into dev by name: `berth deploy`, by image ID.
    let versions = json(&server.ok(&["versions", "web", "-o", "json"]));
    let newest = versions[0]["name"].as_str().unwrap().to_string();
    let digest = versions[0]["digest"].as_str().unwrap().to_string();
    let out = server.ok(&["deploy", "--app", "shop", &format!("web:{newest}")]);
    assert!(out.contains("revision 2"), "{out}");
    answers(&server, "shop.example", "feature2");
    assert_eq!(server.ps("shop")[0]["image"], digest.as_str());
    let history = json(&server.ok(&["history", "--app", "shop", "-o", "json"]));
    let last = history
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["revision"] == 2)
        .unwrap();
    assert_eq!(last["source"], "deploy", "{history}");
    assert!(last["change"].as_str().unwrap().contains(&newest), "{last}");
    let again = server.ok(&["deploy", "--app", "shop", &format!("web:{newest}")]);
    assert!(again.contains("no change"), "{again}");
    failed_with(
        &server.cli(&["deploy", "--app", "shop", "web:nosuch"]),
        "version_not_found",
    );
    let out = server.cli(&["deploy", "--app", "shop", "web"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("SERVICE:VERSION"));
    server.ok(&["rm", "--app", "shop"]);
    wait_all_removed(&run);
}
