//! End-to-end with the real Docker engine and a real Subversion repository (`svnadmin create`,
//! `file://`): a service created with `berth service create --svn URL --poll 5s` is built once
//! at first by polling, yields version `r1` (pinned by image digest), deploys with `berth apply`
//! and answers through the gateway; a new commit is picked up by polling and built into `r2`,
//! which deploys in turn. Services and builds are read through the API, versions through the
//! CLI; `berth build --follow` builds the Subversion service on demand too. Removing the service
//! at the end removes its images.

mod common;

use berth_testkit::{testapp_binary, TestRun};
use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
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

fn dockerfile(version: &str) -> String {
    format!(
        "FROM scratch\nCOPY app /app\nENV VERSION={version}\nEXPOSE 8080\nENTRYPOINT [\"/app\"]\n"
    )
}

/// GET `path` on the API as the administrator: the JSON body.
fn api_get(server: &Server, path: &str) -> Value {
    let (status, _, body) = call(&server.api, "GET", path, Some(&server.token()), None);
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

#[test]
fn svn_service_is_polled_built_versioned_and_deployed() {
    let run = TestRun::new("build-svn");
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
    let url = format!("file://{}/trunk", repo.display());
    svn(dir.path(), &["mkdir", "-q", "-m", "trunk", &url]);
    svn(dir.path(), &["checkout", "-q", &url, wc.to_str().unwrap()]);
    std::fs::copy(testapp_binary(), wc.join("app")).unwrap();
    std::fs::write(wc.join("Dockerfile"), dockerfile("first")).unwrap();
    svn(&wc, &["add", "-q", "app", "Dockerfile"]);
    svn(&wc, &["commit", "-q", "-m", "first"]);
    // Revision 1 made trunk; the files are revision 2, trunk's last change.
    let server = Server::start(&run, &data);

    // Created with the CLI, polled; the API shows the source as stored.
    let out = server.cli(&["service", "create", "site", "--svn", &url, "--poll", "2s"]);
    assert!(!out.status.success(), "a 2 s poll was accepted");
    server.ok(&["service", "create", "site", "--svn", &url, "--poll", "5s"]);
    let services = api_get(&server, "/api/v1/services");
    assert_eq!(
        services[0]["source"],
        serde_json::json!({"poll_secs": 5, "svn": url}),
        "{services}"
    );

    // Never built: polling builds it once at first.
    let builds = |server: &Server| -> Vec<Value> {
        api_get(server, "/api/v1/builds?service=site")
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    berth_testkit::wait_for(
        Duration::from_secs(90),
        "the first polled build succeeds",
        || {
            let b = builds(&server);
            (b.len() == 1 && b[0]["status"] == "succeeded").then_some(())
        },
    );
    let versions: Vec<Value> =
        serde_json::from_str(&server.ok(&["versions", "site", "--output", "json"])).unwrap();
    assert_eq!(versions.len(), 1, "{versions:?}");
    assert_eq!(versions[0]["name"], "r2");
    assert_eq!(versions[0]["commit"], "2");
    assert_eq!(versions[0]["author"], "ada");
    let tag = versions[0]["tag"].as_str().unwrap().to_string();
    let digest = versions[0]["digest"].as_str().unwrap().to_string();
    assert_eq!(tag, "berth/site:r2");
    let inspect = Command::new("docker")
        .args(["image", "inspect", "-f", "{{.Id}}", &tag])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&inspect.stdout).trim(), digest);

    // The version deploys and answers through the gateway.
    let deploy = |tag: &str| {
        let file = compose(
            dir.path(),
            "compose.yaml",
            &format!(
                "services:\n  web:\n    image: {tag}\n    x-berth:\n      route: {{ path_prefix: / }}\n"
            ),
        );
        server.ok(&["apply", "-f", file.to_str().unwrap(), "--app", "svnsite"]);
    };
    deploy(&tag);
    let (code, body) = server.get("/").unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.starts_with("first "), "{body}");
    assert_eq!(server.ps("svnsite")[0]["image"], digest.as_str());

    // A new commit is picked up by polling and built into a new version.
    std::fs::write(wc.join("Dockerfile"), dockerfile("second")).unwrap();
    svn(&wc, &["commit", "-q", "-m", "second"]);
    berth_testkit::wait_for(Duration::from_secs(90), "the new revision is built", || {
        let b = builds(&server);
        (b.len() == 2 && b[0]["status"] == "succeeded").then_some(())
    });
    let versions = api_get(&server, "/api/v1/services/site/versions");
    assert_eq!(versions[0]["name"], "r3", "{versions}");
    assert_eq!(versions[1]["name"], "r2", "{versions}");
    let digest3 = versions[0]["digest"].as_str().unwrap().to_string();
    assert_ne!(digest3, digest, "the new revision made the same image");
    deploy("berth/site:r3");
    berth_testkit::wait_for(Duration::from_secs(60), "the new version answers", || {
        let (code, body) = server.get("/").ok()?;
        (code == 200 && body.starts_with("second ")).then_some(())
    });

    // Polling does not build an unchanged revision again; a build on demand does.
    std::thread::sleep(Duration::from_secs(7));
    assert_eq!(builds(&server).len(), 2, "an unchanged revision was built");
    let log = server.ok(&["build", "site", "--follow"]);
    assert!(log.contains("succeeded: version r3"), "{log}");

    // Removing the service removes the images no revision pins any more.
    server.ok(&["rm", "--app", "svnsite"]);
    berth_testkit::wait_for(Duration::from_secs(60), "the application is gone", || {
        let apps = server.ok(&["apps", "--output", "json"]);
        (!apps.contains("svnsite")).then_some(())
    });
    let out = server.ok(&["service", "rm", "site"]);
    assert!(out.contains("service site removed (2 version(s)"), "{out}");
    assert!(out.contains("image berth/site:r2 removed"), "{out}");
    assert!(out.contains("image berth/site:r3 removed"), "{out}");
    for tag in ["berth/site:r2", "berth/site:r3"] {
        let inspect = Command::new("docker")
            .args(["image", "inspect", tag])
            .output()
            .unwrap();
        assert!(!inspect.status.success(), "{tag} is still on the engine");
    }
    // And polling stops: the repository moves, nothing is built.
    std::fs::write(wc.join("CHANGES"), "third\n").unwrap();
    svn(&wc, &["add", "-q", "CHANGES"]);
    svn(&wc, &["commit", "-q", "-m", "third"]);
    std::thread::sleep(Duration::from_secs(7));
    assert_eq!(api_get(&server, "/api/v1/builds"), serde_json::json!([]));
}
