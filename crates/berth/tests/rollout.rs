//! End-to-end rollouts against the real Docker engine: a rolling update under steady load with
//! zero failed requests, automatic rollback of a version that never becomes healthy (serving
//! throughout), manual rollback, and a `kill -9` of the server mid-rollout.

mod common;

use berth_testkit::{testapp_image, wait_for, TestRun};
use common::*;
use std::time::Duration;

fn compose_v(image: &str, version: &str, healthy: bool, replicas: u32) -> String {
    compose_p(image, version, healthy, replicas, None)
}

/// With `port`, the service also publishes `127.0.0.1:port:8080` (served by Berth's forwarder).
fn compose_p(
    image: &str,
    version: &str,
    healthy: bool,
    replicas: u32,
    port: Option<u16>,
) -> String {
    let ports = port.map_or_else(String::new, |p| {
        format!("    ports: [\"127.0.0.1:{p}:8080\"]\n")
    });
    format!(
        r#"
services:
  web:
    image: {image}
    environment:
      VERSION: {version}
      HEALTHY: "{h}"
    expose: ["8080"]
{ports}    deploy:
      replicas: {replicas}
      update_config:
        order: start-first
        monitor: 6s
        failure_action: rollback
    x-berth:
      route: {{ path_prefix: /api, strip_prefix: true }}
      health: {{ http: /healthz, interval: 500ms }}
"#,
        h = if healthy { 1 } else { 0 }
    )
}

#[test]
fn rolling_update_under_load_then_auto_and_manual_rollback() {
    let run = TestRun::new("rollout");
    let image = testapp_image(&run);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&run, dir.path());
    let file = dir.path().join("compose.yaml");
    let f = file.to_str().unwrap().to_string();

    let port = free_port();
    let published = format!("127.0.0.1:{port}");
    std::fs::write(&file, compose_p(&image, "v1", true, 2, Some(port))).unwrap();
    server.ok(&["apply", "-f", &f, "--app", "roll"]);
    assert!(server.get("/api/x").unwrap().1.starts_with("v1 "));

    // Rolling update v1 → v2 under steady load: zero failed requests.
    let load = Load::start(&server.gateway, "/api/hello", 3);
    let port_load = Load::start(&published, "/hello", 1);
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(&file, compose_p(&image, "v2", true, 2, Some(port))).unwrap();
    server.ok(&["apply", "-f", &f, "--app", "roll"]);
    std::thread::sleep(Duration::from_millis(300));
    let r = load.finish();
    let p = port_load.finish();
    assert!(
        p.failures.is_empty(),
        "published port failed during the rollout: {:?}",
        p.failures
    );
    assert!(
        p.versions.contains("v2") && p.ok > 10,
        "{} {:?}",
        p.ok,
        p.versions
    );
    assert!(
        r.failures.is_empty(),
        "{} failed requests during the rollout: {:?}",
        r.failures.len(),
        &r.failures[..r.failures.len().min(5)]
    );
    assert!(r.ok > 50, "too little load: {}", r.ok);
    assert!(r.versions.contains("v2"), "{:?}", r.versions);
    let ps = server.ps("roll");
    assert_eq!(ps.len(), 2, "old replicas left behind: {ps:?}");

    // A version that never becomes healthy: apply fails, Berth rolls back, serving throughout.
    let load = Load::start(&server.gateway, "/api/hello", 2);
    std::fs::write(&file, compose_p(&image, "v3", false, 2, Some(port))).unwrap();
    let out = server.cli(&["apply", "-f", &f, "--app", "roll"]);
    assert!(
        !out.status.success(),
        "apply of an unhealthy version succeeded"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("failed"), "{err}");
    wait_for(
        Duration::from_secs(30),
        "rolled back to 2 healthy v2 replicas",
        || {
            let ps = server.ps("roll");
            (ps.len() == 2 && ps.iter().all(|i| i["health"] == "healthy")).then_some(())
        },
    );
    let r = load.finish();
    assert!(
        r.failures.is_empty(),
        "requests failed during the failed rollout: {:?}",
        &r.failures[..r.failures.len().min(5)]
    );
    assert_eq!(
        r.versions.iter().collect::<Vec<_>>(),
        vec!["v2"],
        "{:?}",
        r.versions
    );
    let hist: Vec<serde_json::Value> =
        serde_json::from_str(&server.ok(&["history", "--app", "roll", "--output", "json"]))
            .unwrap();
    assert_eq!(hist[0]["source"], "auto-rollback", "{hist:?}");
    assert_eq!(hist[1]["status"], "failed", "{hist:?}");

    // Manual rollback to revision 1 (v1).
    server.ok(&["rollback", "--app", "roll", "--to", "1"]);
    assert!(server.get("/api/x").unwrap().1.starts_with("v1 "));
    server.ok(&["rm", "--app", "roll"]);
}

#[test]
fn kill_9_mid_rollout_converges_without_orphans_or_duplicates() {
    let run = TestRun::new("crash");
    let image = testapp_image(&run);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut server = Server::start(&run, &data);
    let (api, gw) = (server.api.clone(), server.gateway.clone());
    let file = dir.path().join("compose.yaml");
    let f = file.to_str().unwrap().to_string();
    std::fs::write(&file, compose_v(&image, "v1", true, 3)).unwrap();
    server.ok(&["apply", "-f", &f, "--app", "crash"]);

    for (i, delay_ms) in [50u64, 250, 600].into_iter().enumerate() {
        let version = format!("v{}", i + 2);
        std::fs::write(&file, compose_v(&image, &version, true, 3)).unwrap();
        server.ok(&["apply", "--detach", "-f", &f, "--app", "crash"]);
        std::thread::sleep(Duration::from_millis(delay_ms));
        server.kill9();
        eprintln!("[{:?}] killed", std::time::SystemTime::now());
        server = Server::start_on(&run, &data, &api, &gw);
        eprintln!("[{:?}] restarted", std::time::SystemTime::now());
        wait_for(
            Duration::from_secs(60),
            "converged after the restart",
            || {
                let st = berth_testkit::http_get(
                    &api,
                    "/api/v1/apps/crash",
                    None,
                    Duration::from_secs(2),
                )
                .ok()?;
                st.1.contains("\"converged\":true").then_some(())
            },
        );
        assert_eq!(
            hashes(&run),
            (1, 3),
            "orphans, duplicates or mixed revisions after kill -9 #{i}: {:#?}",
            containers(&run)
        );
        assert!(server
            .get("/api/x")
            .unwrap()
            .1
            .starts_with(&format!("{version} ")));
    }
    let hist: Vec<serde_json::Value> =
        serde_json::from_str(&server.ok(&["history", "--app", "crash", "--output", "json"]))
            .unwrap();
    assert_eq!(hist.len(), 4, "a revision was lost: {hist:?}");

    // kill -9 during a scale up and a scale down.
    for (n, delay_ms) in [(6usize, 150u64), (2, 100)] {
        server.ok(&["scale", "--detach", "--app", "crash", &format!("web={n}")]);
        std::thread::sleep(Duration::from_millis(delay_ms));
        server.kill9();
        eprintln!("[{:?}] killed", std::time::SystemTime::now());
        server = Server::start_on(&run, &data, &api, &gw);
        eprintln!("[{:?}] restarted", std::time::SystemTime::now());
        wait_for(
            Duration::from_secs(60),
            "scale converged after the restart",
            || {
                let st = berth_testkit::http_get(
                    &api,
                    "/api/v1/apps/crash",
                    None,
                    Duration::from_secs(2),
                )
                .ok()?;
                (st.1.contains("\"converged\":true") && containers(&run).len() == n).then_some(())
            },
        );
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(containers(&run).len(), n, "{:#?}", containers(&run));
    }

    // kill -9 during a removal: the restarted server finishes it.
    server.ok(&["rm", "--detach", "--app", "crash"]);
    std::thread::sleep(Duration::from_millis(30));
    server.kill9();
    server = Server::start_on(&run, &data, &api, &gw);
    wait_for(
        Duration::from_secs(60),
        "removal finished after the restart",
        || {
            let gone =
                berth_testkit::http_get(&api, "/api/v1/apps/crash", None, Duration::from_secs(2))
                    .ok()?
                    .0
                    == 404;
            (gone && docker_count(&run, "container") == 0 && docker_count(&run, "network") == 0)
                .then_some(())
        },
    );
    drop(server);
}

/// A service whose update pauses on failure; `delay_ms` delays the new version's listener.
fn compose_pause(image: &str, version: &str, delay_ms: u64) -> String {
    format!(
        r#"
services:
  web:
    image: {image}
    environment:
      VERSION: {version}
      STARTUP_DELAY_MS: "{delay_ms}"
    expose: ["8080"]
    deploy:
      replicas: 2
      update_config:
        parallelism: 1
        order: start-first
        monitor: 2s
        failure_action: pause
    x-berth:
      route: {{ path_prefix: /api, strip_prefix: true }}
      health: {{ http: /healthz, interval: 300ms }}
"#
    )
}

/// Distinct spec hashes among the run's containers, and how many containers there are.
fn hashes(run: &TestRun) -> (usize, usize) {
    let all = containers(run);
    let hashes: std::collections::BTreeSet<String> = all
        .iter()
        .map(|l| l.split_whitespace().nth(2).unwrap_or("").to_string())
        .collect();
    (hashes.len(), all.len())
}

#[test]
fn failure_action_pause_stops_the_rollout_where_it_failed() {
    let run = TestRun::new("pause");
    let image = testapp_image(&run);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&run, dir.path());
    let file = dir.path().join("compose.yaml");
    let f = file.to_str().unwrap().to_string();
    std::fs::write(&file, compose_pause(&image, "v1", 0)).unwrap();
    server.ok(&["apply", "-f", &f, "--app", "pause"]);

    // v2 listens only after 5 s, past the 2 s monitor: the rollout fails on slot 0 and pauses.
    std::fs::write(&file, compose_pause(&image, "v2", 5000)).unwrap();
    let out = server.cli(&["apply", "-f", &f, "--app", "pause"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "apply of a failing version succeeded"
    );
    assert!(err.contains("paused"), "{err}");

    // Slot 0's new replica becomes ready later and finishes its slot; slot 1 keeps v1.
    wait_for(
        Duration::from_secs(30),
        "slot 0 on v2, slot 1 on v1",
        || {
            let ps = server.ps("pause");
            (hashes(&run) == (2, 2) && ps.len() == 2 && ps.iter().all(|i| i["health"] == "healthy"))
                .then_some(())
        },
    );
    // Unpaused, slot 1 would now be replaced (a third container, then one hash): it stays.
    for _ in 0..16 {
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(hashes(&run), (2, 2), "{:#?}", containers(&run));
    }
    let mut versions = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let body = server.get("/api/x").unwrap().1;
        versions.insert(body.split_whitespace().next().unwrap_or("").to_string());
    }
    assert_eq!(
        versions.into_iter().collect::<Vec<_>>(),
        vec!["v1", "v2"],
        "both versions serve while paused"
    );
    let hist: Vec<serde_json::Value> =
        serde_json::from_str(&server.ok(&["history", "--app", "pause", "--output", "json"]))
            .unwrap();
    assert_eq!(hist[0]["status"], "failed", "{hist:?}");
    assert!(
        hist[0]["message"].as_str().unwrap_or("").contains("paused"),
        "{hist:?}"
    );

    // Applying the same file again resumes: a new revision retries the rollout.
    server.ok(&["apply", "--detach", "-f", &f, "--app", "pause"]);
    let hist: Vec<serde_json::Value> =
        serde_json::from_str(&server.ok(&["history", "--app", "pause", "--output", "json"]))
            .unwrap();
    assert_eq!(hist.len(), 3, "{hist:?}");
    assert_eq!(hist[0]["source"], "apply", "{hist:?}");
    assert!(
        hist[0]["change"]
            .as_str()
            .unwrap_or("")
            .contains("retry of failed revision 2"),
        "{hist:?}"
    );

    // A rollback ends the pause: back to v1 everywhere.
    server.ok(&["rollback", "--app", "pause"]);
    wait_for(Duration::from_secs(30), "all on v1 again", || {
        (hashes(&run) == (1, 2)).then_some(())
    });
    assert!(server.get("/api/x").unwrap().1.starts_with("v1 "));
    server.ok(&["rm", "--app", "pause"]);
}

fn compose_ratio(image: &str, version: &str, delay_ms: u64) -> String {
    format!(
        r#"
services:
  web:
    image: {image}
    environment:
      VERSION: {version}
      STARTUP_DELAY_MS: "{delay_ms}"
    expose: ["8080"]
    deploy:
      replicas: 2
      update_config:
        parallelism: 1
        order: start-first
        monitor: 4s
        max_failure_ratio: 0.5
    x-berth:
      route: {{ path_prefix: /api, strip_prefix: true }}
      health: {{ http: /healthz, interval: 300ms }}
"#
    )
}

#[test]
fn a_failed_slot_within_max_failure_ratio_lets_the_update_go_on() {
    let run = TestRun::new("ratio");
    let image = testapp_image(&run);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&run, dir.path());
    let file = dir.path().join("compose.yaml");
    let f = file.to_str().unwrap().to_string();
    std::fs::write(&file, compose_ratio(&image, "v1", 0)).unwrap();
    server.ok(&["apply", "-f", &f, "--app", "ratio"]);
    let v1_hash = containers(&run)[0]
        .split_whitespace()
        .nth(2)
        .unwrap()
        .to_string();

    // v2 listens after 3 s. Slot 0's new replica is cut off from its networks before that (3 s
    // leaves room for a loaded machine: at 1.5 s the cut once came after the replica was ready),
    // so it never becomes ready: its update fails after the 4 s monitor. 1 of 2 slots is within
    // max_failure_ratio 0.5, so slot 1 is updated all the same and the revision converges.
    std::fs::write(&file, compose_ratio(&image, "v2", 3000)).unwrap();
    server.ok(&["apply", "--detach", "-f", &f, "--app", "ratio"]);
    let n0 = wait_for(Duration::from_secs(20), "slot 0's new replica", || {
        containers(&run).into_iter().find_map(|l| {
            let mut parts = l.split_whitespace();
            let name = parts.next()?.to_string();
            let hash = parts.nth(1)?;
            let slot = name.rsplit('_').nth(1)?;
            (slot == "0" && hash != v1_hash).then_some(name)
        })
    });
    // The replica's network is its network holder's (docs/runtime.md#the-network-holder-local-runtime),
    // made right after the replica.
    let holder = format!("{n0}_holder");
    let nets = wait_for(
        Duration::from_secs(20),
        "slot 0's new network holder",
        || {
            let out = std::process::Command::new("docker")
                .args([
                    "inspect",
                    "-f",
                    "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
                    &holder,
                ])
                .output()
                .unwrap();
            let nets = String::from_utf8_lossy(&out.stdout).trim().to_string();
            (out.status.success() && !nets.is_empty()).then_some(nets)
        },
    );
    for net in nets.split_whitespace() {
        let out = std::process::Command::new("docker")
            .args(["network", "disconnect", "-f", net, &holder])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }

    wait_for(Duration::from_secs(40), "revision 2 converges", || {
        let hist: Vec<serde_json::Value> =
            serde_json::from_str(&server.ok(&["history", "--app", "ratio", "--output", "json"]))
                .ok()?;
        (hist[0]["revision"] == 2 && hist[0]["status"] == "converged").then_some(())
    });
    let (code, _, status) = call(
        &server.api,
        "GET",
        "/api/v1/apps/ratio",
        Some(&server.token()),
        None,
    );
    assert_eq!(code, 200, "{status}");
    assert_eq!(status["health"], "degraded", "{status}");
    let message = status["message"].as_str().unwrap_or("");
    assert!(
        message.contains("web: 1 of 2 replicas failed to update, within max_failure_ratio 0.5"),
        "{status}"
    );
    assert!(
        status["services"][0]["problem"]
            .as_str()
            .unwrap_or("")
            .contains("update given up"),
        "{status}"
    );
    // No automatic rollback: slot 0 keeps its v1 replica serving, slot 1 serves v2.
    let mut versions = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let body = server.get("/api/x").unwrap().1;
        versions.insert(body.split_whitespace().next().unwrap_or("").to_string());
    }
    assert_eq!(versions.into_iter().collect::<Vec<_>>(), vec!["v1", "v2"]);
    let hist: Vec<serde_json::Value> =
        serde_json::from_str(&server.ok(&["history", "--app", "ratio", "--output", "json"]))
            .unwrap();
    assert_eq!(hist.len(), 2, "no rollback revision: {hist:?}");
    server.ok(&["rm", "--app", "ratio"]);
}
