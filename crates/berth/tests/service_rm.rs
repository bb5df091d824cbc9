//! `berth service rm` against the real Docker engine: refused with 409 `in_use` while an
//! application runs a version of the service (naming the application) and while a version is
//! published (naming it); another team cannot remove it (404, as if it did not exist); once
//! neither holds, the service, its versions, builds and secrets go, with the images no revision
//! pins any more. A build running when its service is removed is cancelled first, and leaves
//! no version, image or step container behind.

mod common;

use berth_testkit::{busybox_image, testapp_binary, TestRun};
use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

fn svn(dir: &Path, args: &[&str]) {
    let out = Command::new("svn")
        .current_dir(dir)
        .args(["--non-interactive", "--username", "ada"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "svn {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn refused(out: &Output, code: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "succeeded, expected {code}");
    assert!(err.contains(&format!("({code})")), "expected {code}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "not one line: {err}");
    err
}

fn image_exists(tag: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", tag])
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn service_rm_is_refused_while_in_use_and_removes_everything_after() {
    let run = TestRun::new("service-rm");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let repo = dir.path().join("repo");
    let wc = dir.path().join("wc");
    std::fs::create_dir_all(&data).unwrap();
    let made = Command::new("svnadmin")
        .args(["create", repo.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let url = format!("file://{}", repo.display());
    svn(dir.path(), &["checkout", "-q", &url, wc.to_str().unwrap()]);
    std::fs::copy(testapp_binary(), wc.join("app")).unwrap();
    std::fs::write(
        wc.join("Dockerfile"),
        "FROM scratch\nCOPY app /app\nENV VERSION=rm-me\nEXPOSE 8080\nENTRYPOINT [\"/app\"]\n",
    )
    .unwrap();
    svn(&wc, &["add", "-q", "app", "Dockerfile"]);
    svn(&wc, &["commit", "-q", "-m", "first"]);
    let server = Server::start(&run, &data);
    let admin = server.token();

    server.ok(&["service", "create", "web", "--svn", &url]);
    let secret = Command::new(bin())
        .args(["secret", "set", "web", "TOKEN"])
        .env("BERTH_SERVER", format!("http://{}", server.api))
        .env("BERTH_TOKEN", &admin)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .and_then(|mut c| {
            std::io::Write::write_all(c.stdin.as_mut().unwrap(), b"s3cret")?;
            drop(c.stdin.take());
            c.wait()
        })
        .unwrap();
    assert!(secret.success());
    let log = server.ok(&["build", "web", "--follow"]);
    assert!(log.contains("succeeded: version r1"), "{log}");
    let tag = "berth/web:r1";
    assert!(image_exists(tag));

    // Version r1 runs in application "front".
    let file = compose(
        dir.path(),
        "compose.yaml",
        &format!("services:\n  web:\n    image: {tag}\n    x-berth:\n      route: {{ path_prefix: / }}\n"),
    );
    server.ok(&["apply", "-f", file.to_str().unwrap(), "--app", "front"]);
    assert_eq!(server.get("/").unwrap().0, 200);
    let err = refused(&server.cli(&["service", "rm", "web"]), "in_use");
    assert!(
        err.contains(r#"version r1 runs in application "front""#),
        "{err}"
    );
    let (status, _, body) = call(
        &server.api,
        "DELETE",
        "/api/v1/services/web",
        Some(&admin),
        None,
    );
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "in_use", "{body}");
    assert_eq!(
        server.get("/").unwrap().0,
        200,
        "the refusal touched the app"
    );
    assert!(image_exists(tag));

    // Another team's member cannot see it, so cannot remove it: 404, as for no service.
    let other = team_member(&server, "other", "olga", "owner");
    let (status, _, body) = call(
        &server.api,
        "DELETE",
        "/api/v1/services/web",
        Some(&other),
        None,
    );
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["code"], "service_not_found", "{body}");
    refused(
        &cli_as(&server, &other, &["service", "rm", "web"]),
        "service_not_found",
    );

    // Published: held even when no application runs it.
    let approver = team_member(&server, "default", "ann", "approver");
    server.ok(&["submit", "web:r1", "--note", "ready"]);
    ok_as(
        &server,
        &approver,
        &["approve", "web:r1", "--reason", "fine"],
    );
    server.ok(&["publish", "web:r1"]);
    server.ok(&["rm", "--app", "front"]);
    berth_testkit::wait_for(Duration::from_secs(60), "front is gone", || {
        let apps = server.ok(&["apps", "--output", "json"]);
        (!apps.contains("\"front\"")).then_some(())
    });
    let err = refused(&server.cli(&["service", "rm", "web"]), "in_use");
    assert!(err.contains("version r1 is published"), "{err}");
    assert!(!err.contains("front"), "{err}");
    server.ok(&["deprecate", "web:r1"]);
    let err = refused(&server.cli(&["service", "rm", "web"]), "in_use");
    assert!(err.contains("version r1 is deprecated"), "{err}");
    server.ok(&["retire", "web:r1"]);

    // Nothing holds it now: it goes, with its image.
    let out = server.ok(&["service", "rm", "web"]);
    assert!(out.contains("service web removed (1 version(s))"), "{out}");
    assert!(out.contains("image berth/web:r1 removed"), "{out}");
    assert!(!image_exists(tag), "{tag} is still on the engine");
    let listed: Vec<Value> =
        serde_json::from_str(&server.ok(&["service", "ls", "--output", "json"])).unwrap();
    assert!(listed.is_empty(), "{listed:?}");
    refused(&server.cli(&["versions", "web"]), "service_not_found");
    refused(&server.cli(&["service", "rm", "web"]), "service_not_found");
    let (_, _, builds) = call(&server.api, "GET", "/api/v1/builds", Some(&admin), None);
    assert_eq!(builds, serde_json::json!([]));

    // The name is free again, with nothing of the old service (no versions).
    server.ok(&["service", "create", "web", "--svn", &url]);
    let versions: Vec<Value> =
        serde_json::from_str(&server.ok(&["versions", "web", "--output", "json"])).unwrap();
    assert!(versions.is_empty(), "{versions:?}");
    let log = server.ok(&["build", "web", "--follow"]);
    assert!(log.contains("succeeded: version r1"), "{log}");
    let out = server.ok(&["service", "rm", "web"]);
    assert!(out.contains("image berth/web:r1 removed"), "{out}");
}

#[test]
fn a_running_build_is_cancelled_before_its_service_goes() {
    let run = TestRun::new("service-rm-build");
    let Some(toolbox) = busybox_image(&run) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let repo = dir.path().join("repo");
    let wc = dir.path().join("wc");
    std::fs::create_dir_all(&data).unwrap();
    let made = Command::new("svnadmin")
        .args(["create", repo.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let url = format!("file://{}", repo.display());
    svn(dir.path(), &["checkout", "-q", &url, wc.to_str().unwrap()]);
    std::fs::write(wc.join("Dockerfile"), "FROM scratch\nCOPY Dockerfile /\n").unwrap();
    std::fs::write(
        wc.join("berth.pipeline.yaml"),
        format!(
            "steps:\n  - name: slow\n    image: {toolbox}\n    run: [\"echo started; sleep 120\"]\n  - name: image\n    build: {{ dockerfile: Dockerfile }}\n"
        ),
    )
    .unwrap();
    svn(&wc, &["add", "-q", "Dockerfile", "berth.pipeline.yaml"]);
    svn(&wc, &["commit", "-q", "-m", "slow"]);
    let server = Server::start(&run, &data);
    let admin = server.token();

    server.ok(&["service", "create", "slow", "--svn", &url]);
    let queued = server.ok(&["build", "slow"]);
    assert!(queued.contains("queued"), "{queued}");
    berth_testkit::wait_for(Duration::from_secs(60), "the slow step runs", || {
        let b: Vec<Value> =
            serde_json::from_str(&server.ok(&["builds", "slow", "--output", "json"])).ok()?;
        let id = b.first()?["id"].to_string();
        let log = server.ok(&["builds", "logs", &id]);
        (b[0]["status"] == "running" && log.contains("started")).then_some(())
    });
    let started = std::time::Instant::now();
    let out = server.ok(&["service", "rm", "slow"]);
    let took = started.elapsed();
    assert!(
        out.contains("service slow removed (0 version(s), build(s) 1 cancelled)"),
        "{out}"
    );
    assert!(took < Duration::from_secs(60), "the removal took {took:?}");
    let (_, _, builds) = call(&server.api, "GET", "/api/v1/builds", Some(&admin), None);
    assert_eq!(builds, serde_json::json!([]));
    assert!(!image_exists("berth/slow:r1"));
    berth_testkit::wait_for(Duration::from_secs(30), "no step container is left", || {
        containers(&run).is_empty().then_some(())
    });
    eprintln!("service rm with a running build took {took:?}");
}
