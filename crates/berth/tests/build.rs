//! End-to-end with the real Docker engine: a service registered from a local Git repository is
//! built by `berth build --follow` (live log, exit code = outcome), yields a version pinned by
//! image digest, and that version deploys with `berth apply` and answers through the gateway. A
//! failing pipeline yields no version.

mod common;

use berth_testkit::{testapp_binary, TestRun};
use common::*;
use std::process::Command;

/// POST with headers over a fresh connection: (status, body).
fn post(addr: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let (code, _, body) = raw_request(addr, "POST", path, headers, body);
    (code, body)
}

#[test]
fn build_from_git_then_deploy_the_version() {
    let run = TestRun::new("build");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::copy(testapp_binary(), repo.join("app")).unwrap();
    std::fs::write(
        repo.join("Dockerfile"),
        "FROM scratch\nCOPY app /app\nENV VERSION=built\nEXPOSE 8080\nENTRYPOINT [\"/app\"]\n",
    )
    .unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "first"]);
    git(&repo, &["tag", "v1.0.0"]);
    let server = Server::start(&run, &data);

    server.ok(&["service", "create", "web", "--git", repo.to_str().unwrap()]);
    let out = server.cli(&[
        "service",
        "create",
        "bad",
        "--git",
        "ext::sh -c touch% /tmp/pwned",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("refused"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let log = server.ok(&["build", "web", "--follow"]);
    assert!(log.contains("succeeded: version v1.0.0"), "{log}");
    let versions: Vec<serde_json::Value> =
        serde_json::from_str(&server.ok(&["versions", "web", "--output", "json"])).unwrap();
    assert_eq!(versions.len(), 1);
    let digest = versions[0]["digest"].as_str().unwrap().to_string();
    let tag = versions[0]["tag"].as_str().unwrap().to_string();
    assert_eq!(tag, "berth/web:v1.0.0");
    let inspect = Command::new("docker")
        .args(["image", "inspect", "-f", "{{.Id}}", &tag])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&inspect.stdout).trim(), digest);

    // The version deploys by its tag and answers through the gateway.
    let file = compose(
        dir.path(),
        "compose.yaml",
        &format!("services:\n  web:\n    image: {tag}\n    x-berth:\n      route: {{ path_prefix: / }}\n"),
    );
    server.ok(&["apply", "-f", file.to_str().unwrap(), "--app", "built"]);
    let (code, body) = server.get("/").unwrap();
    assert_eq!(code, 200);
    assert!(body.starts_with("built "), "{body}");
    let ps = server.ps("built");
    assert_eq!(
        ps[0]["image"],
        digest.as_str(),
        "the deployment does not pin the image digest"
    );
    let images: Vec<serde_json::Value> =
        serde_json::from_str(&server.ok(&["images", "web", "--output", "json"])).unwrap();
    assert_eq!(images[0]["deployed"], true, "{images:?}");
    assert_eq!(images[0]["rollback_target"], true, "{images:?}");
    server.ok(&["rm", "--app", "built"]);

    // Archive → remove → restore → deploy.
    let archive = dir.path().join("web-v1.tar");
    server.ok(&[
        "image",
        "archive",
        "web:v1.0.0",
        "-o",
        archive.to_str().unwrap(),
    ]);
    assert!(std::fs::metadata(&archive).unwrap().len() > 1000);
    let removed = Command::new("docker")
        .args(["rmi", "-f", &tag])
        .output()
        .unwrap();
    assert!(
        removed.status.success(),
        "{}",
        String::from_utf8_lossy(&removed.stderr)
    );
    let images: Vec<serde_json::Value> =
        serde_json::from_str(&server.ok(&["images", "web", "--output", "json"])).unwrap();
    assert!(images[0]["size"].is_null(), "{images:?}");
    let out = server.cli(&["apply", "-f", file.to_str().unwrap(), "--app", "built"]);
    assert!(
        !out.status.success(),
        "deployed an image that is not on the engine"
    );
    server.ok(&["image", "restore", archive.to_str().unwrap()]);
    server.ok(&["apply", "-f", file.to_str().unwrap(), "--app", "built"]);
    assert_eq!(server.get("/").unwrap().0, 200);
    assert_eq!(
        server.ps("built")[0]["image"],
        digest.as_str(),
        "the restored image has another digest"
    );
    server.ok(&["rm", "--app", "built"]);

    // Push webhooks: a bad signature is refused; a signed push queues a build.
    set_webhook_secret(&server, "web", b"hook-secret-0123456789");
    let body = r#"{"ref":"refs/heads/main","after":"abc"}"#;
    let mac: String =
        berth_controlplane::webhooks::hmac_sha256(b"hook-secret-0123456789", body.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
    let (code, answer) = post(
        &server.api,
        "/api/v1/hooks/web",
        &[("X-Hub-Signature-256", "sha256=00ff")],
        body,
    );
    assert_eq!(code, 401, "{answer}");
    assert!(answer.contains("\"unauthorized\""), "{answer}");
    let (code, answer) = post(
        &server.api,
        "/api/v1/hooks/web",
        &[("X-Hub-Signature-256", &format!("sha256={mac}"))],
        body,
    );
    assert_eq!(code, 202, "{answer}");
    let id = serde_json::from_str::<serde_json::Value>(&answer).unwrap()["id"]
        .as_u64()
        .unwrap();
    berth_testkit::wait_for(
        std::time::Duration::from_secs(60),
        "the webhook's build succeeds",
        || {
            let b: serde_json::Value =
                serde_json::from_str(&server.ok(&["builds", "web", "--output", "json"])).ok()?;
            let b = b.as_array()?.iter().find(|b| b["id"] == id)?.clone();
            (b["status"] == "succeeded").then_some(())
        },
    );
    let (code, _) = post(
        &server.api,
        "/api/v1/hooks/web",
        &[("X-Gitlab-Token", "wrong")],
        body,
    );
    assert_eq!(code, 401);

    // Polling: a polled service is built once at first, then on every new commit.
    server.ok(&[
        "service",
        "create",
        "polled",
        "--git",
        repo.to_str().unwrap(),
        "--poll",
        "5s",
    ]);
    // Sources are shown as they are stored, in the JSON shapes they always had.
    server.ok(&[
        "service",
        "create",
        "site",
        "--svn",
        "svn://svn.example/site/trunk",
    ]);
    let (code, body) = berth_testkit::http_get(
        &server.api,
        "/api/v1/services",
        None,
        std::time::Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(code, 200, "{body}");
    let services: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    let source_of = |name: &str| {
        services
            .iter()
            .find(|s| s["name"] == name)
            .map(|s| s["source"].clone())
    };
    let url = repo.to_str().unwrap();
    assert_eq!(
        source_of("web"),
        Some(serde_json::json!({"branch": null, "git": url, "path": null, "poll_secs": null}))
    );
    assert_eq!(
        source_of("polled"),
        Some(serde_json::json!({"branch": null, "git": url, "path": null, "poll_secs": 5}))
    );
    assert_eq!(
        source_of("site"),
        Some(serde_json::json!({"svn": "svn://svn.example/site/trunk"}))
    );
    let listed = server.ok(&["service", "ls"]);
    assert!(
        listed.contains(r#"{"svn":"svn://svn.example/site/trunk"}"#),
        "{listed}"
    );
    let builds_of = |svc: &str| -> Vec<serde_json::Value> {
        serde_json::from_str(&server.ok(&["builds", svc, "--output", "json"])).unwrap_or_default()
    };
    berth_testkit::wait_for(
        std::time::Duration::from_secs(60),
        "the first polled build succeeds",
        || {
            let b = builds_of("polled");
            (b.len() == 1 && b[0]["status"] == "succeeded").then_some(())
        },
    );
    std::fs::write(repo.join("CHANGES"), "second\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "second"]);
    berth_testkit::wait_for(
        std::time::Duration::from_secs(60),
        "a new commit is built",
        || {
            let b = builds_of("polled");
            (b.len() == 2 && b[0]["status"] == "succeeded").then_some(())
        },
    );
    let versions: Vec<serde_json::Value> =
        serde_json::from_str(&server.ok(&["versions", "polled", "--output", "json"])).unwrap();
    for v in &versions {
        let _ = Command::new("docker")
            .args(["rmi", "-f", v["tag"].as_str().unwrap()])
            .output();
    }

    // A pipeline whose test step cannot run fails the build: no version, exit code 1.
    std::fs::write(repo.join("berth.pipeline.yaml"), "steps:\n  - name: test\n    image: berth-no-such-toolbox:1\n    run: [\"sh ./test.sh\"]\n  - name: image\n    build: { dockerfile: Dockerfile }\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "pipeline"]);
    let out = server.cli(&["build", "web", "--follow"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("failed") && err.contains("test"), "{err}");
    let versions: Vec<serde_json::Value> =
        serde_json::from_str(&server.ok(&["versions", "web", "--output", "json"])).unwrap();
    assert_eq!(versions.len(), 1, "a failed build produced a version");
    let builds: Vec<serde_json::Value> =
        serde_json::from_str(&server.ok(&["builds", "web", "--output", "json"])).unwrap();
    assert_eq!(builds[0]["status"], "failed");
    let replay = server.ok(&["builds", "logs", &builds[0]["id"].to_string()]);
    assert!(replay.contains("[berth] build"), "{replay}");
    let _ = Command::new("docker").args(["rmi", "-f", &tag]).output();
}
