//! End-to-end with the real Docker engine: a service registered from a local Git repository is
//! built by `berth build --follow` (live log, exit code = outcome), yields a version pinned by
//! image digest, and that version deploys with `berth apply` and answers through the gateway. A
//! failing pipeline yields no version.

mod common;

use berth_testkit::{testapp_binary, TestRun};
use common::*;
use std::path::Path;
use std::process::Command;

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Ada")
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_NAME", "Ada")
        .env("GIT_COMMITTER_EMAIL", "ada@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    server.ok(&["rm", "--app", "built"]);

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
