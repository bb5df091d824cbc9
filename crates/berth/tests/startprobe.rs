//! End-to-end: a starting replica's Compose healthcheck is run early by Berth (exec start
//! probes, `berth-controlplane/src/startprobe.rs`), so `depends_on: service_healthy` does not
//! wait for Docker's `interval`. The engine here speaks API 1.41, which has no `StartInterval`:
//! without the start probes the dependent below could not start before Docker's first check,
//! 30 s after its dependency started.

mod common;

use berth_testkit::{docker_cli, testapp_image, TestRun};
use common::*;
use std::time::{Duration, Instant};

#[test]
fn a_healthcheck_with_a_30s_interval_gates_its_dependent_within_seconds() {
    let run = TestRun::new("startprobe");
    let image = testapp_image(&run);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&run, dir.path());
    // `db` answers /healthz only after 1 s (its check fails until then); Docker would run the
    // check first at 30 s.
    let file = compose(
        dir.path(),
        "compose.yaml",
        &format!(
            r#"
services:
  db:
    image: {image}
    environment: {{ STARTUP_DELAY_MS: "1000" }}
    healthcheck:
      test: ["CMD", "/berth-testapp", "probe"]
      interval: 30s
      timeout: 2s
      retries: 3
  web:
    image: {image}
    depends_on:
      db: {{ condition: service_healthy }}
"#
        ),
    );
    let t0 = Instant::now();
    server.ok(&[
        "apply",
        "-f",
        file.to_str().unwrap(),
        "--app",
        "sp",
        "--timeout",
        "60",
    ]);
    let took = t0.elapsed();
    eprintln!("apply converged after {took:?}");
    let ps = server.ps("sp");
    let of = |svc: &str| {
        ps.iter()
            .find(|i| i["service"] == svc)
            .unwrap_or_else(|| panic!("no {svc} in {ps:?}"))
            .clone()
    };
    assert_eq!(of("web")["state"], "running", "{ps:?}");
    assert_eq!(of("db")["health"], "healthy", "{ps:?}");
    assert!(
        took < Duration::from_secs(10),
        "the dependent waited {took:?}: Docker's interval, not the start probe\n{}",
        server.log_tail()
    );
    // Docker itself has not checked yet: the gate was Berth's start probe.
    let id = of("db")["container_id"].as_str().unwrap().to_string();
    let docker_health = docker_cli(&["inspect", "-f", "{{.State.Health.Status}}", &id]).unwrap();
    assert_eq!(docker_health.trim(), "starting");
    server.ok(&["rm", "--app", "sp"]);
}

#[test]
fn a_failing_healthcheck_never_gates_as_healthy() {
    let run = TestRun::new("startprobe-fail");
    let image = testapp_image(&run);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&run, dir.path());
    // `/healthz` answers 503 forever: the start probe keeps failing.
    let file = compose(
        dir.path(),
        "compose.yaml",
        &format!(
            r#"
services:
  db:
    image: {image}
    environment: {{ HEALTHY: "0" }}
    healthcheck:
      test: ["CMD", "/berth-testapp", "probe"]
      interval: 30s
      timeout: 2s
  web:
    image: {image}
    depends_on:
      db: {{ condition: service_healthy }}
"#
        ),
    );
    let out = server.cli(&[
        "apply",
        "-f",
        file.to_str().unwrap(),
        "--app",
        "spf",
        "--timeout",
        "4",
    ]);
    assert!(
        !out.status.success(),
        "apply converged with a failing check"
    );
    let ps = server.ps("spf");
    assert!(
        !ps.iter()
            .any(|i| i["service"] == "web" && i["state"] == "running"),
        "{ps:?}"
    );
    let db = ps.iter().find(|i| i["service"] == "db").unwrap();
    assert_eq!(db["health"], "starting", "{ps:?}");
    server.ok(&["rm", "--app", "spf"]);
}
