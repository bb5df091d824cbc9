//! Environments (docs/environments.md), against real Docker: one application in two
//! environments side by side, each with its own revisions, containers, networks and routes; an
//! environment past its TTL torn down while its neighbour answers every request.

mod common;

use berth_testkit::{testapp_image, wait_for, TestRun};
use common::*;
use std::time::Duration;

fn app_file(dir: &std::path::Path, name: &str, image: &str, version: &str) -> String {
    compose(
        dir,
        name,
        &format!(
            "services:\n  web:\n    image: {image}\n    environment: {{ VERSION: {version} }}\n    expose: [\"8080\"]\n    volumes: [\"data:/data\"]\n    x-berth:\n      route: {{ path_prefix: / }}\nvolumes:\n  data: {{}}\n"
        ),
    )
    .to_str()
    .unwrap()
    .to_string()
}

fn get_as(server: &Server, host: &str) -> (u16, String) {
    berth_testkit::http_get(&server.gateway, "/", Some(host), Duration::from_secs(5)).unwrap()
}

fn names(kind: &str, run: &TestRun) -> Vec<String> {
    let filter = format!("label=berth.test={}", run.id);
    let args: Vec<&str> = match kind {
        "container" => vec!["ps", "-a", "--filter", &filter, "--format", "{{.Names}}"],
        "network" => vec![
            "network",
            "ls",
            "--filter",
            &filter,
            "--format",
            "{{.Name}}",
        ],
        _ => vec!["volume", "ls", "--filter", &filter, "--format", "{{.Name}}"],
    };
    let out = std::process::Command::new("docker")
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn one_app_in_two_environments_runs_side_by_side_with_its_own_routes() {
    let run = TestRun::new("envs-side");
    let image = testapp_image(&run);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&run, dir.path());
    let dev = app_file(dir.path(), "dev.yaml", &image, "dev-v1");
    let staging = app_file(dir.path(), "staging.yaml", &image, "staging-v1");

    // An environment that does not exist is named, not silently made.
    let out = server.cli(&["--env", "staging", "apply", "-f", &dev, "--app", "shop"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("env_not_found"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    server.ok(&["apply", "-f", &dev, "--app", "shop"]);
    server.ok(&["env", "create", "staging"]);
    server.ok(&["--env", "staging", "apply", "-f", &staging, "--app", "shop"]);
    server.ok(&["--env", "staging", "apply", "-f", &staging, "--app", "shop"]);

    // Requests whose Host starts with `staging.` reach staging's replica, the others dev's.
    let body = wait_for(Duration::from_secs(60), "staging's route", || {
        let (status, body) = get_as(&server, "staging.shop.example");
        (status == 200 && body.starts_with("staging-v1")).then_some(body)
    });
    assert!(body.starts_with("staging-v1"), "{body}");
    wait_for(Duration::from_secs(60), "dev's route", || {
        let (status, body) = get_as(&server, "shop.example");
        (status == 200 && body.starts_with("dev-v1")).then_some(())
    });
    assert!(get_as(&server, "localhost").1.starts_with("dev-v1"));

    // Each environment lists its own application, with its own revisions.
    let dev_apps: serde_json::Value =
        serde_json::from_str(&server.ok(&["apps", "-o", "json"])).unwrap();
    let staging_apps: serde_json::Value =
        serde_json::from_str(&server.ok(&["--env", "staging", "apps", "-o", "json"])).unwrap();
    assert_eq!(dev_apps.as_array().unwrap().len(), 1, "{dev_apps}");
    assert_eq!(dev_apps[0]["name"], "shop");
    assert_eq!(dev_apps[0]["revision"], 1);
    assert_eq!(staging_apps[0]["name"], "shop");
    assert_eq!(staging_apps[0]["revision"], 1, "{staging_apps}");
    assert_eq!(server.ps("shop").len(), 1);
    let shown: serde_json::Value =
        serde_json::from_str(&server.ok(&["env", "show", "staging", "-o", "json"])).unwrap();
    assert_eq!(shown["apps"], serde_json::json!(["shop"]), "{shown}");

    // dev's Docker names are today's; staging's carry the environment.
    let containers = names("container", &run);
    assert!(
        containers.iter().any(|n| n.contains("_shop_web_"))
            && containers.iter().any(|n| n.contains("_shop..staging_web_")),
        "{containers:?}"
    );
    let volumes = names("volume", &run);
    assert!(
        volumes.iter().any(|n| n.ends_with("_shop_data"))
            && volumes.iter().any(|n| n.ends_with("_shop..staging_data")),
        "{volumes:?}"
    );

    // A protected environment admits reviewed versions only.
    server.ok(&["env", "create", "prod", "--protected"]);
    let out = server.cli(&["--env", "prod", "apply", "-f", &dev, "--app", "shop"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("version_not_approved"),
        "{err}"
    );
    assert!(err.contains("environment \"prod\" is protected"), "{err}");

    // Removing staging removes its application only.
    server.ok(&["env", "rm", "staging"]);
    wait_for(Duration::from_secs(60), "staging's objects gone", || {
        let gone = !names("container", &run)
            .iter()
            .chain(&names("network", &run))
            .chain(&names("volume", &run))
            .any(|n| n.contains("..staging"));
        gone.then_some(())
    });
    assert!(get_as(&server, "shop.example").1.starts_with("dev-v1"));
    assert_eq!(server.ps("shop").len(), 1);
    server.ok(&["rm", "--app", "shop"]);
}

#[test]
fn an_expired_environment_is_recycled_while_its_neighbour_answers() {
    let run = TestRun::new("envs-ttl");
    let image = testapp_image(&run);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&run, dir.path());
    let dev = app_file(dir.path(), "dev.yaml", &image, "dev-v1");
    let short = app_file(dir.path(), "short.yaml", &image, "short-v1");

    server.ok(&["apply", "-f", &dev, "--app", "shop"]);
    server.ok(&["env", "create", "short", "--ttl", "10s"]);
    server.ok(&["--env", "short", "apply", "-f", &short, "--app", "shop"]);
    wait_for(Duration::from_secs(60), "both answer", || {
        let a = get_as(&server, "localhost");
        let b = get_as(&server, "short.example");
        (a.1.starts_with("dev-v1") && b.1.starts_with("short-v1")).then_some(())
    });
    let ls = server.ok(&["env", "ls"]);
    assert!(ls.contains("short") && ls.contains("dev"), "{ls}");

    // dev under load while `short` expires and is torn down.
    let load = Load::start(&server.gateway, "/", 2);
    wait_for(Duration::from_secs(90), "short's objects gone", || {
        let gone = !names("container", &run)
            .iter()
            .chain(&names("network", &run))
            .chain(&names("volume", &run))
            .any(|n| n.contains("..short"));
        gone.then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    let r = load.finish();
    assert!(r.failures.is_empty(), "{:?}", r.failures);
    assert!(r.ok > 0);
    assert_eq!(
        r.versions,
        ["dev-v1".to_string()].into(),
        "{:?}",
        r.versions
    );

    // Gone from the lists; its hosts reach dev's host-less route again; announced and audited.
    assert!(!server.ok(&["env", "ls"]).contains("short"));
    assert_eq!(
        get_as(&server, "short.example").1.split_whitespace().next(),
        Some("dev-v1")
    );
    let token = server.token();
    let (status, _, events) = call(&server.api, "GET", "/api/v1/events", Some(&token), None);
    assert_eq!(status, 200);
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "env_expired" && e["message"].as_str().unwrap().contains("shop")),
        "{events}"
    );
    let audit = server.ok(&["audit", "-o", "json"]);
    assert!(audit.contains("env.expire"), "{audit}");
    assert_eq!(server.ps("shop").len(), 1);
    server.ok(&["rm", "--app", "shop"]);
}
