//! End-to-end with the real Docker engine: image retention removes only what it may (keep=2
//! over five builds, with an old version deployed, a rollback target, an image held by a
//! container and an image Berth did not build), `berth images` shows each version's state
//! (`archived` when an archive was made; `present` again after `berth image restore`), a
//! tiny image-count threshold and a 1 KiB disk threshold each raise one alert event on
//! `/api/v1/events`, and on start the janitor removes step containers left by interrupted
//! builds of this server only.

mod common;

use berth_testkit::{docker_cli, testapp_binary, testapp_image_tagged, wait_for, TestRun};
use common::*;
use std::path::Path;
use std::time::Duration;

/// The service's name: image tags (`berth/NAME:VERSION`) are global on the shared engine, so
/// it is unique per test process.
fn svc() -> String {
    format!("web{}", std::process::id())
}

fn tag(version: &str) -> String {
    format!("berth/{}:{version}", svc())
}

/// Commit a Dockerfile that yields a distinct image, tag it `version`, build it with Berth.
fn build_version(server: &Server, repo: &Path, version: &str) {
    commit_app_version(repo, version);
    git(repo, &["tag", version]);
    let log = server.ok(&["build", &svc(), "--follow"]);
    assert!(
        log.contains(&format!("succeeded: version {version}")),
        "{log}"
    );
}

fn images(server: &Server) -> Vec<serde_json::Value> {
    serde_json::from_str(&server.ok(&["images", &svc(), "--output", "json"])).unwrap()
}

fn image_of<'a>(list: &'a [serde_json::Value], version: &str) -> &'a serde_json::Value {
    list.iter()
        .find(|i| i["version"] == version)
        .unwrap_or_else(|| panic!("no image of {version}: {list:?}"))
}

fn events(server: &Server) -> Vec<serde_json::Value> {
    serde_json::from_str(&server.ok(&["events", "--output", "json"])).unwrap()
}

fn on_engine(reference: &str) -> bool {
    docker_cli(&["image", "inspect", "-f", "{{.Id}}", reference]).is_ok()
}

#[test]
fn retention_removes_only_what_it_may() {
    let run = TestRun::new("retention");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::copy(testapp_binary(), repo.join("app")).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    let server = Server::start_with(
        &run,
        &data,
        &format!("127.0.0.1:{}", free_port()),
        &format!("127.0.0.1:{}", free_port()),
        &[
            "--image-keep",
            "2",
            "--image-retention-secs",
            "1",
            "--image-count-alert",
            "2",
            "--image-disk-alert",
            "1KiB",
        ],
    );
    server.ok(&["service", "create", &svc(), "--git", repo.to_str().unwrap()]);

    // An image Berth did not build, under Berth's repository name: never touched.
    let foreign = testapp_image_tagged(&run, &tag("foreign"));

    build_version(&server, &repo, "v1");
    build_version(&server, &repo, "v2");
    // v2 converges (a rollback target), then the app goes back to v1 (deployed: an old version).
    let deploy = |version: &str| {
        let file = compose(
            dir.path(),
            "compose.yaml",
            &format!("services:\n  web:\n    image: {}\n", tag(version)),
        );
        server.ok(&["apply", "-f", file.to_str().unwrap(), "--app", "shop"]);
    };
    deploy("v2");
    deploy("v1");
    build_version(&server, &repo, "v3");
    build_version(&server, &repo, "v4");
    // A container (not Berth's) holds v3: the engine refuses to remove it, so it stays.
    let holder = run.name("holder");
    docker_cli(&[
        "create",
        "--name",
        &holder,
        "--label",
        &run.label_filter(),
        &tag("v3"),
    ])
    .unwrap();
    build_version(&server, &repo, "v5");
    // Several passes (every second, and one after the build) run while the container exists.
    std::thread::sleep(Duration::from_secs(3));
    assert!(on_engine(&tag("v3")), "removed an image a container uses");
    assert_eq!(image_of(&images(&server), "v3")["state"], "present");

    // An archive made before the removal: the version then shows as `archived`.
    let archive = dir.path().join("v3.tar");
    server.ok(&[
        "image",
        "archive",
        &format!("{}:v3", svc()),
        "-o",
        archive.to_str().unwrap(),
    ]);
    docker_cli(&["rm", &holder]).unwrap();
    wait_for(
        Duration::from_secs(20),
        "retention removes v3 once no container uses it",
        || (image_of(&images(&server), "v3")["state"] == "archived").then_some(()),
    );

    let list = images(&server);
    assert_eq!(list.len(), 5, "every version stays listed: {list:?}");
    let v3 = image_of(&list, "v3");
    assert!(v3["size"].is_null(), "{v3}");
    assert_eq!(v3["state"], "archived", "{v3}");
    assert!(!on_engine(&tag("v3")));
    for (version, deployed, target) in [
        ("v5", false, false),
        ("v4", false, false),
        ("v2", false, true),
        ("v1", true, true),
    ] {
        let i = image_of(&list, version);
        assert_eq!(i["state"], "present", "{version}: {i}");
        assert_eq!(i["deployed"], deployed, "{version}: {i}");
        assert_eq!(i["rollback_target"], target, "{version}: {i}");
        assert!(on_engine(&tag(version)), "{version}");
    }
    assert!(on_engine(&foreign), "removed an image Berth did not build");
    // The deployment still answers ps with its pinned image.
    assert_eq!(
        server.ps("shop")[0]["image"],
        image_of(&list, "v1")["digest"]
    );
    let table = server.ok(&["images", &svc()]);
    assert!(
        table.contains("STATE") && table.contains("archived"),
        "{table}"
    );

    // Events: exactly one removal (v3), and the count alert (5 images > 2) raised once.
    let ev = events(&server);
    let removed: Vec<&serde_json::Value> =
        ev.iter().filter(|e| e["kind"] == "image.removed").collect();
    assert_eq!(removed.len(), 1, "{ev:?}");
    assert_eq!(removed[0]["subject"], tag("v3").as_str());
    let alerts: Vec<&serde_json::Value> = ev
        .iter()
        .filter(|e| e["kind"] == "alert.image_count")
        .collect();
    assert_eq!(alerts.len(), 1, "raised once, not every pass: {ev:?}");
    assert_eq!(alerts[0]["level"], "warn");
    assert_eq!(alerts[0]["subject"], svc().as_str());
    // Any engine with an image passes a 1 KiB disk threshold: one alert, not one per pass.
    let disk: Vec<&serde_json::Value> = ev
        .iter()
        .filter(|e| e["kind"] == "alert.image_disk")
        .collect();
    assert_eq!(disk.len(), 1, "{ev:?}");
    assert!(
        disk[0]["message"]
            .as_str()
            .unwrap()
            .contains("above the alert threshold of 1.0 KiB"),
        "{ev:?}"
    );
    let (code, body) = berth_testkit::http_get(
        &server.api,
        "/api/v1/events?after=0",
        None,
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("alert.image_count"), "{body}");
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("alert.image_count")),
        "the alert is not in the log at warn level"
    );

    // Restored, it is present again and retention leaves it for a while (it can be deployed).
    server.ok(&["image", "restore", archive.to_str().unwrap()]);
    assert_eq!(image_of(&images(&server), "v3")["state"], "present");
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        on_engine(&tag("v3")),
        "retention removed a just-restored image"
    );
    let ev = events(&server);
    assert!(
        ev.iter()
            .any(|e| e["kind"] == "image.restored" && e["subject"] == tag("v3").as_str()),
        "{ev:?}"
    );

    server.ok(&["rm", "--app", "shop"]);
    for v in ["v1", "v2", "v3", "v4", "v5"] {
        let _ = docker_cli(&["rmi", "-f", &tag(v)]);
    }
}

#[test]
fn janitor_removes_leftover_step_containers_of_this_server_only() {
    let run = TestRun::new("janitor");
    let image = testapp_image_tagged(&run, "step");
    let dir = tempfile::tempdir().unwrap();
    let api = format!("127.0.0.1:{}", free_port());
    let gateway = format!("127.0.0.1:{}", free_port());
    let mut server = Server::start_on(&run, dir.path(), &api, &gateway);
    let (_, health) =
        berth_testkit::http_get(&api, "/api/v1/health", None, Duration::from_secs(5)).unwrap();
    let instance = serde_json::from_str::<serde_json::Value>(&health).unwrap()["instance"]
        .as_str()
        .unwrap()
        .to_string();
    server.stop();

    // What a crash mid-step leaves: a step container of this instance; and one of another
    // server sharing the engine.
    let create = |name: &str, instance: &str| {
        docker_cli(&[
            "create",
            "--name",
            name,
            "--label",
            &run.label_filter(),
            "--label",
            &format!("berth.instance={instance}"),
            "--label",
            "berth.build=web-crashed-1",
            "--label",
            "berth.build.step=test",
            &image,
        ])
        .unwrap()
    };
    let mine = create(&run.name("mine"), &instance);
    let other = create(&run.name("other"), "someone-else");
    // And images: an intermediate step's image of this instance (left tagged by the crash), one
    // of another server, and a version image of this instance (it stays).
    let ctx = dir.path().join("step-image");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), format!("FROM {image}\n")).unwrap();
    let service = format!("janitor-{}", run.id);
    let tag_image = |service: &str, tag: &str, instance: &str, step: Option<&str>| {
        let reference = format!("berth/{service}:{tag}");
        let run_label = run.label_filter();
        let instance_label = format!("berth.instance={instance}");
        let service_label = format!("berth.service={service}");
        let step_label = step.map(|s| format!("berth.build.step={s}"));
        let mut args = vec![
            "build",
            "-q",
            "--label",
            &run_label,
            "--label",
            &instance_label,
            "--label",
            &service_label,
            "--label",
            "berth.version=v1",
        ];
        if let Some(l) = &step_label {
            args.extend(["--label", l]);
        }
        let ctx = ctx.to_str().unwrap();
        args.extend(["-t", &reference, ctx]);
        docker_cli(&args).unwrap();
        reference
    };
    let mine_step = tag_image(&service, "v1-compile", &instance, Some("compile"));
    let other_step = tag_image(
        &format!("{service}-other"),
        "v1-compile",
        "someone-else",
        Some("compile"),
    );
    // The version image, as if built FROM the step image: it inherited the step label.
    let version = tag_image(&service, "v1", &instance, Some("compile"));

    let server = Server::start_on(&run, dir.path(), &api, &gateway);
    wait_for(
        Duration::from_secs(20),
        "the janitor removes the leftover step container and image",
        || {
            (docker_cli(&["inspect", mine.trim()]).is_err()
                && docker_cli(&["image", "inspect", &mine_step]).is_err())
            .then_some(())
        },
    );
    assert!(
        docker_cli(&["inspect", other.trim()]).is_ok(),
        "removed another server's container"
    );
    assert!(
        docker_cli(&["image", "inspect", &other_step]).is_ok(),
        "removed another server's step image"
    );
    assert!(
        docker_cli(&["image", "inspect", &version]).is_ok(),
        "removed a version image"
    );
    let ev = events(&server);
    assert!(
        ev.iter().any(|e| e["kind"] == "janitor.container_removed"),
        "{ev:?}"
    );
    assert!(
        ev.iter().any(|e| e["kind"] == "janitor.image_removed"),
        "{ev:?}"
    );
}
