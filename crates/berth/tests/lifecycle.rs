//! End-to-end: the real `berth` binary and CLI against the real Docker engine.
//! Deploy, discovery, scale up and down, self-heal after `docker kill`, removal leaving nothing.

mod common;

use berth_testkit::{testapp_image, wait_for, TestRun};
use common::*;
use std::time::Duration;

fn web_compose(image: &str, version: &str, replicas: u32, extra_env: &str) -> String {
    format!(
        r#"
version: "3.8"
services:
  web:
    image: {image}
    environment:
      VERSION: {version}
{extra_env}
    expose: ["8080"]
    deploy:
      replicas: {replicas}
      update_config:
        monitor: 8s
    x-berth:
      route: {{ path_prefix: / }}
      health: {{ http: /healthz, interval: 500ms }}
"#
    )
}

#[test]
fn deploy_scale_heal_and_remove() {
    let run = TestRun::new("lifecycle");
    let image = testapp_image(&run);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&run, dir.path());
    let file = compose(
        dir.path(),
        "compose.yaml",
        &web_compose(&image, "v1", 2, ""),
    );
    let f = file.to_str().unwrap();

    // Deploy: the CLI waits for convergence and exits 0.
    let out = server.ok(&["apply", "-f", f, "--app", "shop"]);
    assert!(out.contains("converged"), "{out}");
    let (code, body) = server.get("/hello").unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.starts_with("v1 "), "{body}");

    // ps --output json: every field the issue names.
    let ps = server.ps("shop");
    assert_eq!(ps.len(), 2, "{ps:?}");
    for i in &ps {
        for key in [
            "service",
            "container_id",
            "image",
            "state",
            "health",
            "address",
            "revision",
            "restarts",
        ] {
            assert!(i.get(key).is_some(), "ps lacks {key}: {i}");
        }
        assert_eq!(i["state"], "running");
        assert_eq!(i["health"], "healthy");
        assert!(i["address"].as_str().unwrap().ends_with(":8080"));
    }
    // Discovery.
    let (code, body) = berth_testkit::http_get(
        &server.api,
        "/api/v1/apps/shop/services/web/instances",
        None,
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(code, 200);
    let inst: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(inst.len(), 2);
    // Both replicas answer through the gateway (balancing).
    let mut hosts = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let (_, body) = server.get("/").unwrap();
        hosts.insert(
            body.split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_string(),
        );
    }
    assert_eq!(
        hosts.len(),
        2,
        "requests were not balanced across both replicas: {hosts:?}"
    );

    // `apps` lists it.
    let apps = server.ok(&["apps", "--output", "json"]);
    assert!(apps.contains("\"shop\""), "{apps}");

    // Scale up, then down: the surviving replicas are not restarted.
    let before: Vec<String> = ps
        .iter()
        .map(|i| i["container_id"].as_str().unwrap().to_string())
        .collect();
    server.ok(&["scale", "--app", "shop", "web=3"]);
    let ps = server.ps("shop");
    assert_eq!(ps.len(), 3);
    for id in &before {
        assert!(
            ps.iter().any(|i| i["container_id"] == id.as_str()),
            "scaling restarted {id}"
        );
    }
    server.ok(&["scale", "--app", "shop", "web=1"]);
    wait_for(
        Duration::from_secs(20),
        "scaled down to 1 container and its network holder",
        || (docker_count(&run, "replica") == 1 && docker_count(&run, "holder") == 1).then_some(()),
    );

    // Self-heal: kill the last replica; it is replaced and routable again.
    let victim = server.ps("shop")[0]["container_id"]
        .as_str()
        .unwrap()
        .to_string();
    let killed = std::process::Command::new("docker")
        .args(["kill", &victim])
        .output()
        .unwrap();
    assert!(killed.status.success());
    wait_for(
        Duration::from_secs(20),
        "a healthy replica answers after the kill",
        || {
            let ps = server.ps("shop");
            let healthy = ps
                .iter()
                .any(|i| i["health"] == "healthy" && i["state"] == "running");
            (healthy && server.get("/").is_ok_and(|(c, _)| c == 200)).then_some(())
        },
    );
    let ps = server.ps("shop");
    assert_eq!(ps.len(), 1, "{ps:?}");
    assert!(ps[0]["restarts"].as_u64().unwrap() >= 1, "{:?}", ps[0]);
    assert_eq!(ps[0]["exit_code"], 137, "{:?}", ps[0]);

    // A route-only change takes effect without replacing the replica.
    let before = server.ps("shop")[0]["container_id"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::write(
        &file,
        web_compose(&image, "v1", 1, "").replace("path_prefix: /", "path_prefix: /shop"),
    )
    .unwrap();
    server.ok(&["apply", "-f", f, "--app", "shop"]);
    assert_eq!(
        server.ps("shop")[0]["container_id"],
        before.as_str(),
        "a route change restarted the replica"
    );
    assert_eq!(server.get("/shop/x").unwrap().0, 200);
    assert_eq!(server.get("/other").unwrap().0, 404);

    // History records what happened.
    let hist = server.ok(&["history", "--app", "shop", "--output", "json"]);
    let hist: Vec<serde_json::Value> = serde_json::from_str(&hist).unwrap();
    assert_eq!(hist.len(), 4, "{hist:?}");
    assert_eq!(hist[0]["source"], "apply");
    assert!(
        hist[0]["change"].as_str().unwrap().contains("no restart"),
        "{hist:?}"
    );
    assert_eq!(hist[1]["source"], "scale");

    // Logs of the service.
    let logs = server.ok(&["logs", "--app", "shop", "web"]);
    assert!(logs.contains("listening on port 8080"), "{logs}");

    // Remove with volumes: nothing of the run is left (containers, networks).
    server.ok(&["rm", "--app", "shop", "--volumes"]);
    assert_eq!(docker_count(&run, "container"), 0);
    assert_eq!(docker_count(&run, "network"), 0);
    let (code, body) = server.get("/").unwrap();
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("\"no_route\""), "{body}");
}

#[test]
fn missing_image_is_refused_before_anything_is_created() {
    let run = TestRun::new("preflight");
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&run, dir.path());
    let file = compose(
        dir.path(),
        "compose.yaml",
        "services:\n  a:\n    image: berth-missing-image:1\n  b:\n    image: berth-also-missing:2\n",
    );
    let out = server.cli(&["apply", "-f", file.to_str().unwrap(), "--app", "nope"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("berth-missing-image:1") && err.contains("berth-also-missing:2"),
        "{err}"
    );
    assert!(err.contains("image_missing"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert_eq!(docker_count(&run, "container"), 0);
    assert_eq!(docker_count(&run, "network"), 0);
}

#[test]
fn unsupported_keys_are_named() {
    let run = TestRun::new("unsupported");
    let image = testapp_image(&run);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&run, dir.path());
    let file = compose(
        dir.path(),
        "compose.yaml",
        &format!(
            "services:\n  a:\n    image: {image}\n    sysctls: {{a: 1}}\n    ulimits: {{nofile: 1}}\n"
        ),
    );
    let out = server.cli(&["apply", "-f", file.to_str().unwrap(), "--app", "bad"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("services.a.sysctls") && err.contains("services.a.ulimits"),
        "{err}"
    );
}

/// Swarm's scheduling keys are accepted on the local runtime, said at apply to apply only to
/// Swarm, and a `global` service runs one replica on this engine.
#[test]
fn swarm_only_keys_are_noted_at_apply_on_one_engine() {
    let run = TestRun::new("swarm-only-keys");
    let image = testapp_image(&run);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&run, dir.path());
    let file = compose(
        dir.path(),
        "compose.yaml",
        &format!(
            "services:\n  a:\n    image: {image}\n    deploy:\n      mode: global\n      placement: {{constraints: ['node.role == manager']}}\n      resources: {{reservations: {{cpus: '0.1'}}}}\n"
        ),
    );
    let out = server.ok(&["apply", "-f", file.to_str().unwrap(), "--app", "noted"]);
    for key in [
        "services.a.deploy.mode: global applies only to Swarm",
        "services.a.deploy.placement applies only to Swarm",
        "services.a.deploy.resources.reservations.cpus applies only to Swarm",
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with("note: ") && l.contains(key)),
            "{key}: {out}"
        );
    }
    let ps = server.ps("noted");
    assert_eq!(ps.len(), 1, "{ps:?}");
    assert_eq!(ps[0]["state"], "running", "{ps:?}");
}

/// The `berth apps` table row of `app`.
fn apps_row(server: &Server, app: &str) -> String {
    server
        .ok(&["apps"])
        .lines()
        .find(|l| l.split_whitespace().next() == Some(app))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_create_docker_refuses_backs_off_is_reported_and_fails_the_first_deploy() {
    let run = TestRun::new("create-refused");
    let image = image_without_command(&run);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&run, dir.path());
    let file = compose(
        dir.path(),
        "compose.yaml",
        &format!(
            r#"
services:
  job:
    image: {image}
    deploy:
      update_config:
        monitor: 4s
"#
        ),
    );
    // The waiting apply fails once the creates have failed for the rollout deadline (4 s),
    // naming Docker's reason, instead of waiting forever on a pending revision.
    let started = std::time::Instant::now();
    let out = server.cli(&[
        "apply",
        "-f",
        file.to_str().unwrap(),
        "--app",
        "nocmd",
        "--timeout",
        "30",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "apply succeeded: {stderr}");
    assert!(
        stderr.contains("revision 1 failed") && stderr.contains("No command specified"),
        "the apply's error does not name the cause: {stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the revision took {:?} to fail",
        started.elapsed()
    );
    // Attempts back off (0.5 s doubling): a handful in the seconds so far, not hundreds.
    let so_far = failed_attempts(&server);
    assert!(
        (1..=8).contains(&so_far),
        "{so_far} failed creates in {:?}:\n{}",
        started.elapsed(),
        server.log_tail()
    );
    std::thread::sleep(Duration::from_secs(5));
    let more = failed_attempts(&server) - so_far;
    assert!(
        more <= 2,
        "{more} more failed creates in 5 s:\n{}",
        server.log_tail()
    );
    // The first occurrence is a warning, the repeats are not (a bounded log rate).
    let log = std::fs::read_to_string(&server.log).unwrap();
    let warnings = log
        .lines()
        .filter(|l| l.contains("step failed") && l.contains("WARN"))
        .count();
    assert_eq!(warnings, 1, "{log}");

    // `berth apps` shows the failure and its cause; `berth ps` shows the cause.
    let row = apps_row(&server, "nocmd");
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols.get(2), Some(&"failed"), "{row}");
    assert_eq!(
        cols.get(3),
        Some(&"failed"),
        "HEALTH of a failed revision: {row}"
    );
    assert!(row.contains("No command specified"), "{row}");
    let ps = server.ok(&["ps", "--app", "nocmd"]);
    assert!(
        ps.contains("problem: job: replica 0: create failed")
            && ps.contains("No command specified"),
        "{ps}"
    );
}

#[test]
fn a_taken_container_name_is_reported_backs_off_and_an_apply_retries_at_once() {
    let run = TestRun::new("name-taken");
    let image = testapp_image(&run);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&run, dir.path());
    let file = compose(
        dir.path(),
        "compose.yaml",
        &web_compose(&image, "v1", 1, ""),
    );
    let f = file.to_str().unwrap();
    // The name Berth gives slot 0 of this spec: deploy it once and read it (names are
    // deterministic per instance, app, service, slot and spec).
    server.ok(&["apply", "-f", f, "--app", "taken"]);
    let name = server.ps("taken")[0]["name"].as_str().unwrap().to_string();
    server.ok(&["rm", "--app", "taken"]);
    wait_for(
        Duration::from_secs(20),
        "the app's containers are gone",
        || (docker_count(&run, "container") == 0).then_some(()),
    );
    // Someone else's container takes that name (no Berth labels: not Berth's to remove).
    berth_testkit::docker_cli(&[
        "create",
        "--name",
        &name,
        "--label",
        &run.label_filter(),
        &image,
    ])
    .unwrap();

    let before = failed_attempts(&server);
    let started = std::time::Instant::now();
    server.ok(&["apply", "-f", f, "--app", "taken", "--detach"]);
    let want = format!("name {name} is taken by a container Berth does not manage");
    wait_for(Duration::from_secs(10), "apps shows the taken name", || {
        apps_row(&server, "taken").contains(&want).then_some(())
    });
    let ps = server.ok(&["ps", "--app", "taken"]);
    assert!(ps.contains(&want), "{ps}");
    // Five attempts take 0 + 0.5 + 1 + 2 + 4 s; a loop would make hundreds meanwhile.
    wait_for(Duration::from_secs(20), "a fifth failed attempt", || {
        apps_row(&server, "taken")
            .contains("5 failed attempts")
            .then_some(())
    });
    let attempts = failed_attempts(&server) - before;
    assert!(
        attempts <= 6,
        "{attempts} failed creates in {:?}:\n{}",
        started.elapsed(),
        server.log_tail()
    );
    assert!(
        started.elapsed() >= Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    let row = apps_row(&server, "taken");
    assert!(row.contains("pending"), "{row}");

    // The owner frees the name and applies again (the same file): Berth retries at once,
    // not after the 8 s the backoff has reached.
    berth_testkit::docker_cli(&["rm", "-f", &name]).unwrap();
    let again = std::time::Instant::now();
    let out = server.ok(&["apply", "-f", f, "--app", "taken", "--timeout", "30"]);
    assert!(out.contains("converged"), "{out}");
    assert!(
        again.elapsed() < Duration::from_secs(5),
        "converged {:?} after the apply",
        again.elapsed()
    );
    let row = apps_row(&server, "taken");
    assert!(
        row.contains("converged") && row.contains("healthy"),
        "{row}"
    );
}
