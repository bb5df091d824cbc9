//! End-to-end with the real Docker engine: images belong to teams (docs/teams.md#images).
//! Team `a` builds an image (`berth/a/<app>-web`); team `b` naming it — as a Compose `image:`,
//! by its image ID, as the tag of its own `build:`, or in a Dockerfile `FROM` (also through an
//! `ARG`) of a Compose build or a source build — is refused with 403 `image_denied` before
//! anything is built or started, and `a`'s tag still points at `a`'s image. A `build:` with an
//! `image:` outside `berth/` is tagged under the team's own repository only. Team `a` still uses
//! its own image, by name and as a base.

mod common;

use berth_testkit::{testapp_binary, wait_for, TestRun};
use common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const DOCKERFILE: &str = "FROM scratch\nCOPY app /app\nEXPOSE 8080\nENTRYPOINT [\"/app\"]\n";

fn image_id(reference: &str) -> Option<String> {
    let out = Command::new("docker")
        .args(["image", "inspect", "-f", "{{.Id}}", reference])
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A project directory `name` with the test binary and `dockerfile`, and its Compose file
/// (`web` built from it, with `image:` when given); returns the Compose file's path.
fn project(root: &Path, name: &str, dockerfile: &str, image: Option<&str>) -> String {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(testapp_binary(), dir.join("app")).unwrap();
    std::fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
    let image = image.map_or(String::new(), |i| format!("    image: {i}\n"));
    compose(
        &dir,
        "compose.yaml",
        &format!("services:\n  web:\n    build: .\n{image}    expose: [\"8080\"]\n"),
    )
    .display()
    .to_string()
}

/// `POST /api/v1/apps/{app}/apply` of one Compose file with `token`.
fn apply(server: &Server, token: &str, app: &str, compose: &str) -> (u16, Value) {
    let (status, _, body) = call(
        &server.api,
        "POST",
        &format!("/api/v1/apps/{app}/apply"),
        Some(token),
        Some(json!({
            "compose_files": ["compose.yaml"],
            "files": {"compose.yaml": compose},
            "project_dir": "/nonexistent/project",
        })),
    );
    (status, body)
}

/// A CLI apply that must be refused with `image_denied`; returns its error line.
fn refused(server: &Server, token: &str, file: &str, app: &str) -> String {
    let out = cli_as(server, token, &["apply", "-f", file, "--app", app]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "apply of {file} succeeded");
    assert!(err.contains("(image_denied)"), "{err}");
    err
}

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
    assert!(out.status.success(), "git {args:?}");
}

#[test]
#[allow(clippy::too_many_lines)] // one story, step by step
fn another_teams_image_is_refused_by_name_id_tag_and_from() {
    let run = TestRun::new("team-images");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let server = Server::start(&run, &data);
    let alice = team_member(&server, "a", "alice", "developer");
    let bob = team_member(&server, "b", "bob", "developer");
    // Image names are shared by every test on this engine: unique per run.
    let app = format!("img{}", std::process::id());
    let a_image = format!("berth/a/{app}-web:latest");

    // Team a builds its image.
    let fa = project(dir.path(), "a", DOCKERFILE, None);
    ok_as(&server, &alice, &["apply", "-f", &fa, "--app", &app]);
    let a_id = image_id(&a_image).expect("team a's image is built");

    // Team b names it: by name and by ID, refused before anything is created.
    for reference in [a_image.as_str(), a_id.as_str(), &a_id[7..19]] {
        let (status, body) = apply(
            &server,
            &bob,
            &app,
            &format!("services:\n  web:\n    image: {reference}\n"),
        );
        assert_eq!(
            (status, body["code"].as_str()),
            (403, Some("image_denied")),
            "{reference}: {body}"
        );
        let msg = body["message"].as_str().unwrap();
        assert!(msg.contains("services.web.image"), "{msg}");
        assert!(msg.contains("team \"b\""), "{msg}");
    }
    let (status, _, apps) = call(&server.api, "GET", "/api/v1/apps", Some(&bob), None);
    assert_eq!(
        (status, apps),
        (200, json!([])),
        "team b has no application"
    );

    // Team b's build: tagging a's name, or FROM a's image (plain, through an ARG, COPY --from).
    let before = containers(&run).len();
    let tagging = project(dir.path(), "b-tag", DOCKERFILE, Some(&a_image));
    let err = refused(&server, &bob, &tagging, &app);
    assert!(err.contains("would tag"), "{err}");
    let from = project(
        dir.path(),
        "b-from",
        &format!("FROM {a_image}\nCOPY app /app2\n"),
        None,
    );
    let err = refused(&server, &bob, &from, &app);
    assert!(err.contains("Dockerfile: FROM"), "{err}");
    let via_arg = project(
        dir.path(),
        "b-arg",
        &format!("ARG BASE=berth/a/{app}-web\nFROM --platform=linux/amd64 ${{BASE}}:latest AS base\nCOPY app /app\n"),
        None,
    );
    refused(&server, &bob, &via_arg, &app);
    let copy_from = project(
        dir.path(),
        "b-copy",
        &format!("FROM scratch\nCOPY --from={a_image} /app /app\n"),
        None,
    );
    refused(&server, &bob, &copy_from, &app);
    assert_eq!(
        image_id(&a_image).as_deref(),
        Some(a_id.as_str()),
        "a's tag is a's image still"
    );
    assert_eq!(
        image_id(&format!("berth/b/{app}-web:latest")),
        None,
        "nothing was built for b"
    );
    assert_eq!(containers(&run).len(), before, "no container was created");

    // A build with an `image:` outside berth/ is tagged under b's own repository only.
    let shared = format!("{}-shared:1", run.name("img"));
    let own = project(dir.path(), "b-own", DOCKERFILE, Some(&shared));
    ok_as(&server, &bob, &["apply", "-f", &own, "--app", &app]);
    assert!(
        image_id(&format!("berth/b/{app}-web:latest")).is_some(),
        "b's build is tagged under berth/b/"
    );
    assert_eq!(image_id(&shared), None, "no tag outside berth/ was made");
    assert_eq!(image_id(&a_image).as_deref(), Some(a_id.as_str()));

    // A source build of team b whose Dockerfile starts FROM a's image fails, refused.
    let svc = format!("src{}", std::process::id());
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("Dockerfile"), format!("FROM {a_image}\n")).unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "v1"]);
    git(&repo, &["tag", "v1"]);
    ok_as(
        &server,
        &bob,
        &["service", "create", &svc, "--git", repo.to_str().unwrap()],
    );
    let _ = cli_as(&server, &bob, &["build", &svc, "--follow"]);
    let build = wait_for(Duration::from_secs(60), "b's build ends", || {
        let (_, _, builds) = call(&server.api, "GET", "/api/v1/builds", Some(&bob), None);
        builds
            .as_array()
            .and_then(|b| b.first().cloned())
            .filter(|b| b["status"] != "queued" && b["status"] != "running")
    });
    assert_eq!(build["status"], "failed", "{build}");
    assert!(
        build.to_string().contains("image_denied"),
        "the build names the refusal: {build}"
    );
    assert_eq!(image_id(&format!("berth/b/{svc}:v1")), None);

    // Team a uses its own image, by name and as a base.
    let (status, body) = apply(
        &server,
        &alice,
        &format!("{app}-run"),
        &format!("services:\n  web:\n    image: {a_image}\n    expose: [\"8080\"]\n"),
    );
    assert_eq!(status, 201, "{body}");
    let based = project(
        dir.path(),
        "a-from",
        &format!("FROM {a_image}\nCOPY app /app2\n"),
        None,
    );
    ok_as(
        &server,
        &alice,
        &["apply", "-f", &based, "--app", &format!("{app}-based")],
    );
    let run_app = format!("{app}-run");
    wait_for(Duration::from_secs(60), "a's app runs", || {
        let ps = ok_as(
            &server,
            &alice,
            &["ps", "--app", &run_app, "--output", "json"],
        );
        let ps: Value = serde_json::from_str(&ps).ok()?;
        ps.as_array()?
            .iter()
            .find(|i| i["state"] == "running")
            .cloned()
    });
}
