//! End-to-end: restart policies (and their counts across a server restart), `depends_on`
//! conditions, published ports balanced by Berth, two servers sharing one engine, and the
//! server's own error handling.

mod common;

use berth_testkit::{testapp_image, wait_for, TestRun};
use common::*;
use std::time::Duration;

#[test]
fn restart_policies_and_depends_on_conditions() {
    let run = TestRun::new("policies");
    let image = testapp_image(&run);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&run, dir.path());
    let port = free_port();
    let file = compose(
        dir.path(),
        "compose.yaml",
        &format!(
            r#"
services:
  migrate:
    image: {image}
    restart: "no"
    environment: {{ EXIT_CODE: "0", RUN_MS: "300" }}
  flaky:
    image: {image}
    restart: on-failure:2
    environment: {{ EXIT_CODE: "3", RUN_MS: "50" }}
  db:
    image: {image}
    environment: {{ VERSION: db }}
    expose: ["8080"]
    x-berth:
      health: {{ http: /healthz }}
  web:
    image: {image}
    ports: ["127.0.0.1:{port}:8080"]
    deploy: {{ replicas: 2 }}
    depends_on:
      migrate: {{ condition: service_completed_successfully }}
      db: {{ condition: service_healthy }}
"#
        ),
    );
    // Whether apply sees `flaky` fail depends on timing (it may converge while flaky still runs
    // its first attempt), so only the end state is asserted here; the job test below is exact.
    let t0 = std::time::Instant::now();
    let out = server.cli(&[
        "apply",
        "-f",
        file.to_str().unwrap(),
        "--app",
        "pol",
        "--timeout",
        "60",
    ]);
    eprintln!(
        "apply: {} after {:?}: {}",
        out.status,
        t0.elapsed(),
        String::from_utf8_lossy(&out.stderr)
    );
    if t0.elapsed() > Duration::from_secs(30) {
        eprintln!("SLOW APPLY; server log:\n{}", server.log_tail());
    }
    wait_for(
        Duration::from_secs(30),
        "web started after its dependencies",
        || {
            let ps = server.ps("pol");
            (ps.iter()
                .filter(|i| i["service"] == "web" && i["state"] == "running")
                .count()
                == 2)
                .then_some(ps)
        },
    );
    let ps = server.ps("pol");
    let get = |svc: &str| {
        ps.iter()
            .filter(|i| i["service"] == svc)
            .cloned()
            .collect::<Vec<_>>()
    };
    // restart: "no" job completed and stays exited with 0.
    assert_eq!(get("migrate")[0]["state"], "exited");
    assert_eq!(get("migrate")[0]["exit_code"], 0);
    // on-failure:2 restarted twice, then left exited with its code.
    wait_for(Duration::from_secs(20), "flaky gives up", || {
        let ps = server.ps("pol");
        let f = ps.iter().find(|i| i["service"] == "flaky")?.clone();
        (f["state"] == "exited" && f["restarts"] == 2).then_some(())
    });
    let flaky = server
        .ps("pol")
        .into_iter()
        .find(|i| i["service"] == "flaky")
        .unwrap();
    assert_eq!(flaky["exit_code"], 3, "{flaky}");
    // The published port is served by Berth and balanced across both web replicas.
    let addr = format!("127.0.0.1:{port}");
    let mut hosts = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let (code, body) =
            berth_testkit::http_get(&addr, "/", None, Duration::from_secs(5)).unwrap();
        assert_eq!(code, 200);
        hosts.insert(
            body.split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_string(),
        );
    }
    assert_eq!(hosts.len(), 2, "{hosts:?}");
    // Replicas reach each other by service name on the app network: checked via Docker's DNS
    // aliases (scratch images have no resolver tools).
    let web = get("web")[0]["container_id"].as_str().unwrap().to_string();
    // Its network (and so its aliases) is its network holder's (docs/runtime.md).
    let holder = network_container(&web);
    let aliases = std::process::Command::new("docker")
        .args([
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.Aliases}}{{end}}",
            &holder,
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&aliases.stdout).contains("web"));
    server.ok(&["rm", "--app", "pol"]);
}

#[test]
fn restart_counts_survive_a_server_restart() {
    let run = TestRun::new("restarts");
    let image = testapp_image(&run);
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&run, dir.path());
    let (api, gw) = (server.api.clone(), server.gateway.clone());
    let file = compose(
        dir.path(),
        "compose.yaml",
        &format!(
            r#"
services:
  flaky:
    image: {image}
    restart: on-failure:2
    environment: {{ EXIT_CODE: "3", RUN_MS: "50" }}
"#
        ),
    );
    // The apply fails or not depending on timing; the end state is what counts.
    let _ = server.cli(&["apply", "-f", file.to_str().unwrap(), "--app", "rs"]);
    let flaky = |server: &Server| {
        server
            .ps("rs")
            .into_iter()
            .find(|i| i["service"] == "flaky")
    };
    // Given up: exited with its 2 restarts counted, and still so a second later. (The count is
    // committed before the engine is asked to restart, so "exited, 2" is also briefly seen while
    // the second restart is on its way; a kill -9 then would not stop the engine's restart.)
    let mut since: Option<std::time::Instant> = None;
    wait_for(Duration::from_secs(20), "flaky gives up", || {
        let f = flaky(&server)?;
        if f["state"] == "exited" && f["restarts"] == 2 {
            let t = *since.get_or_insert_with(std::time::Instant::now);
            (t.elapsed() >= Duration::from_secs(1)).then_some(())
        } else {
            since = None;
            None
        }
    });

    // After a kill -9 and a restart, the count is still 2: `on-failure:2` is spent, so the
    // replica is not started again (a count lost with the process would start it twice more).
    server.kill9();
    server = Server::start_on(&run, dir.path(), &api, &gw);
    for _ in 0..12 {
        let f = flaky(&server).expect("flaky is listed");
        assert_eq!(f["restarts"], 2, "{f}");
        assert_eq!(f["state"], "exited", "{f}");
        assert_eq!(f["exit_code"], 3, "{f}");
        std::thread::sleep(Duration::from_millis(250));
    }
    server.ok(&["rm", "--app", "rs"]);
}

/// `(action, unix nanoseconds)` of this run's container start and die events so far.
fn start_die_events(run: &TestRun, since: u64) -> Vec<(String, u128)> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    let out = std::process::Command::new("docker")
        .args([
            "events",
            "--since",
            &since.to_string(),
            "--until",
            &now.to_string(),
            "--filter",
            &format!("label=berth.test={}", run.id),
            "--filter",
            "type=container",
            "--filter",
            "event=start",
            "--filter",
            "event=die",
            "--format",
            "{{.Action}} {{.TimeNano}} {{index .Actor.Attributes \"berth.role\"}}",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        // The replicas' own: not their network holders'.
        .filter(|l| !l.trim_end().ends_with(" holder"))
        .filter_map(|l| {
            let (a, t) = l.split_once(' ')?;
            let t = t.split_whitespace().next()?;
            Some((a.to_string(), t.trim().parse().ok()?))
        })
        .collect()
}

#[test]
fn restart_policy_delay_holds_back_each_restart() {
    let run = TestRun::new("rdelay");
    let image = testapp_image(&run);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&run, dir.path());
    let file = compose(
        dir.path(),
        "compose.yaml",
        &format!(
            r#"
services:
  flaky:
    image: {image}
    environment: {{ EXIT_CODE: "3", RUN_MS: "50" }}
    deploy:
      restart_policy: {{condition: on-failure, max_attempts: 2, delay: 1500ms}}
"#
        ),
    );
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 1;
    let _ = server.cli(&["apply", "-f", file.to_str().unwrap(), "--app", "rd"]);
    wait_for(Duration::from_secs(30), "flaky is restarted twice", || {
        let f = server
            .ps("rd")
            .into_iter()
            .find(|i| i["service"] == "flaky")?;
        (f["restarts"] == 2 && f["state"] == "exited").then_some(())
    });
    // Docker's own record: every start after a die comes at least the delay later.
    let events = start_die_events(&run, since);
    let mut gaps = Vec::new();
    let mut died: Option<u128> = None;
    for (action, t) in &events {
        match action.as_str() {
            "die" => died = Some(*t),
            "start" => {
                if let Some(d) = died.take() {
                    gaps.push(Duration::from_nanos(u64::try_from(t - d).unwrap()));
                }
            }
            _ => {}
        }
    }
    assert_eq!(gaps.len(), 2, "two restarts: {events:?}");
    for g in &gaps {
        assert!(
            *g >= Duration::from_millis(1500),
            "restarted {g:?} after its exit: {events:?}"
        );
        assert!(
            *g < Duration::from_secs(10),
            "restarted {g:?} after its exit: {events:?}"
        );
    }
    server.ok(&["rm", "--app", "rd"]);
}

#[test]
fn the_crash_loop_backoff_survives_a_server_restart() {
    let run = TestRun::new("rbackoff");
    let image = testapp_image(&run);
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&run, dir.path());
    let (api, gw) = (server.api.clone(), server.gateway.clone());
    let file = compose(
        dir.path(),
        "compose.yaml",
        &format!(
            r#"
services:
  crashy:
    image: {image}
    environment: {{ EXIT_CODE: "3", RUN_MS: "50" }}
"#
        ),
    );
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 1;
    // A first deploy that keeps exiting fails; the replica is restarted all the same.
    let _ = server.cli(&["apply", "-f", file.to_str().unwrap(), "--app", "rb"]);
    // After its 6th restart the next waits 8 s (250 ms doubling).
    wait_for(
        Duration::from_secs(40),
        "crashy is restarted 6 times",
        || {
            let f = server
                .ps("rb")
                .into_iter()
                .find(|i| i["service"] == "crashy")?;
            (f["restarts"] == 6).then_some(())
        },
    );
    server.kill9();
    server = Server::start_on(&run, dir.path(), &api, &gw);
    wait_for(
        Duration::from_secs(30),
        "crashy is restarted a 7th time",
        || {
            let f = server
                .ps("rb")
                .into_iter()
                .find(|i| i["service"] == "crashy")?;
            (f["restarts"] == 7).then_some(())
        },
    );
    // Docker's record: the first start, 6 restarts before the server restart, one after it,
    // and that one came its backoff after the 6th (a server that forgot the backoff restarts
    // the replica at its first pass, a second or two later).
    std::thread::sleep(Duration::from_millis(500));
    let starts: Vec<u128> = start_die_events(&run, since)
        .into_iter()
        .filter(|(a, _)| a == "start")
        .map(|(_, t)| t)
        .collect();
    assert!(starts.len() >= 8, "{starts:?}");
    let gap = Duration::from_nanos(u64::try_from(starts[7] - starts[6]).unwrap());
    // The backoff counts from when Berth restarted the replica, Docker's `start` event comes
    // after that by the engine's start time (up to a second on a busy machine): 8 s less that is
    // still far from the 1-2 s of a server that forgot.
    assert!(
        gap >= Duration::from_millis(6_000),
        "restarted {gap:?} after the 6th restart, across a server restart"
    );
    assert!(gap < Duration::from_secs(20), "{gap:?}");
    server.ok(&["rm", "--app", "rb"]);
}

#[test]
fn a_memory_reservation_reaches_the_container_and_a_cpu_reservation_is_noted_as_swarm_only() {
    let run = TestRun::new("reserve");
    let image = testapp_image(&run);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&run, dir.path());
    let file = compose(
        dir.path(),
        "compose.yaml",
        &format!(
            "services:\n  web:\n    image: {image}\n    deploy:\n      resources:\n        limits: {{memory: 128M}}\n        reservations: {{memory: 64M}}\n"
        ),
    );
    server.ok(&["apply", "-f", file.to_str().unwrap(), "--app", "res"]);
    let id = wait_for(Duration::from_secs(30), "web runs", || {
        server
            .ps("res")
            .into_iter()
            .find(|i| i["service"] == "web" && i["state"] == "running")
            .and_then(|i| i["container_id"].as_str().map(str::to_string))
    });
    let out = std::process::Command::new("docker")
        .args([
            "inspect",
            "-f",
            "{{.HostConfig.Memory}} {{.HostConfig.MemoryReservation}}",
            &id,
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{} {}", 128 << 20, 64 << 20)
    );

    // CPU reservations have no equivalent on one engine (Swarm schedules by them): accepted,
    // said at apply to apply only to Swarm, by key path, and nothing of them reaches the
    // container.
    let cpu = compose(
        dir.path(),
        "cpu.yaml",
        &format!(
            "services:\n  web:\n    image: {image}\n    deploy:\n      resources:\n        reservations: {{cpus: '0.5'}}\n"
        ),
    );
    let out = server.ok(&["apply", "-f", cpu.to_str().unwrap(), "--app", "res"]);
    assert!(
        out.lines().any(|l| l.starts_with("note: ")
            && l.contains("services.web.deploy.resources.reservations.cpus applies only to Swarm")),
        "{out}"
    );
    let id = wait_for(Duration::from_secs(30), "web runs the new revision", || {
        server
            .ps("res")
            .into_iter()
            .find(|i| i["service"] == "web" && i["state"] == "running" && i["revision"] == 2)
            .and_then(|i| i["container_id"].as_str().map(str::to_string))
    });
    let out = std::process::Command::new("docker")
        .args([
            "inspect",
            "-f",
            "{{.HostConfig.NanoCpus}} {{.HostConfig.CpuShares}}",
            &id,
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0 0");
    server.ok(&["rm", "--app", "res"]);
}

#[test]
fn a_failed_job_fails_the_deploy_and_blocks_its_dependents() {
    let run = TestRun::new("jobs");
    let image = testapp_image(&run);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&run, dir.path());
    let file = compose(
        dir.path(),
        "compose.yaml",
        &format!(
            r#"
services:
  broken:
    image: {image}
    restart: "no"
    environment: {{ EXIT_CODE: "3", RUN_MS: "0" }}
  after:
    image: {image}
    depends_on:
      broken: {{ condition: service_completed_successfully }}
"#
        ),
    );
    let out = server.cli(&[
        "apply",
        "-f",
        file.to_str().unwrap(),
        "--app",
        "jobs",
        "--timeout",
        "60",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("broken") && err.contains("code 3"), "{err}");
    let ps = server.ps("jobs");
    assert_eq!(ps.len(), 1, "the dependent service must not start: {ps:?}");
    assert_eq!(ps[0]["exit_code"], 3);
    let st = berth_testkit::http_get(
        &server.api,
        "/api/v1/apps/jobs",
        None,
        Duration::from_secs(5),
    )
    .unwrap()
    .1;
    assert!(
        st.contains("broken (service_completed_successfully)"),
        "{st}"
    );
    server.ok(&["rm", "--app", "jobs"]);
}

#[test]
fn two_servers_on_one_engine_do_not_touch_each_other() {
    let run = TestRun::new("twoservers");
    let image = testapp_image(&run);
    let dir = tempfile::tempdir().unwrap();
    let (da, db) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&da).unwrap();
    std::fs::create_dir_all(&db).unwrap();
    let a = Server::start(&run, &da);
    let b = Server::start(&run, &db);
    let file = compose(
        dir.path(),
        "compose.yaml",
        &format!("services:\n  web:\n    image: {image}\n    expose: [\"8080\"]\n    x-berth:\n      route: {{ path_prefix: / }}\n"),
    );
    let f = file.to_str().unwrap();
    a.ok(&["apply", "-f", f, "--app", "same"]);
    b.ok(&["apply", "-f", f, "--app", "same"]);
    // Within one server a route belongs to one application: 409 naming the holder.
    let out = a.cli(&["apply", "-f", f, "--app", "other"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("route_conflict") && err.contains("\"same\""),
        "{err}"
    );
    assert_eq!(docker_count(&run, "replica"), 2);
    let b_ids: Vec<String> = b
        .ps("same")
        .iter()
        .map(|i| i["container_id"].as_str().unwrap().to_string())
        .collect();
    a.ok(&["rm", "--app", "same"]);
    // Give B's resync a chance to misbehave; its container must be untouched.
    std::thread::sleep(Duration::from_secs(3));
    let after: Vec<String> = b
        .ps("same")
        .iter()
        .map(|i| i["container_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(b_ids, after);
    assert_eq!(docker_count(&run, "replica"), 1);
    assert_eq!(b.get("/").unwrap().0, 200);
    b.ok(&["rm", "--app", "same"]);
}

#[test]
fn server_and_api_errors_are_clear() {
    let run = TestRun::new("errors");
    let dir = tempfile::tempdir().unwrap();
    // A malformed API address refused, saying why.
    let out = std::process::Command::new(bin())
        .args(["server", "--api-listen", "0.0.0.0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("expected IP:PORT"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Unreachable Docker engine: one line naming the socket and DOCKER_HOST.
    let out = std::process::Command::new(bin())
        .args([
            "server",
            "--api-listen",
            &format!("127.0.0.1:{}", free_port()),
            "--gateway-listen",
            &format!("127.0.0.1:{}", free_port()),
            "--data-dir",
        ])
        .arg(dir.path())
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/docker.sock") && err.contains("DOCKER_HOST"),
        "{err}"
    );
    // CLI without a server: one line.
    let out = std::process::Command::new(bin())
        .args(["apps"])
        .env("BERTH_SERVER", format!("http://127.0.0.1:{}", free_port()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the Berth server"));

    // API error shapes.
    let server = Server::start(&run, dir.path());
    let post = |path: &str, body: &str| -> (u16, serde_json::Value) {
        let (code, _, json) = raw_request(&server.api, "POST", path, &[], body);
        (
            code,
            serde_json::from_str(&json).unwrap_or(serde_json::Value::Null),
        )
    };
    let (code, body) = post("/api/v1/apps/x/apply", "{not json");
    assert_eq!(code, 400);
    assert_eq!(body["code"], "invalid_json");
    assert!(!body["request_id"].as_str().unwrap().is_empty());
    let (code, body) = post("/api/v1/apps/x/scale", r#"{"replicas": {}, "surprise": 1}"#);
    assert_eq!(
        (code, body["code"].as_str()),
        (400, Some("invalid_json")),
        "{body}"
    );
    let (code, body) = post("/api/v1/apps/ghost/scale", r#"{"replicas": {"a": 1}}"#);
    assert_eq!(
        (code, body["code"].as_str()),
        (404, Some("app_not_found")),
        "{body}"
    );
    let (code, body) = post("/api/v1/nothing", "{}");
    assert_eq!(
        (code, body["code"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    let (code, body) = berth_testkit::http_get(
        &server.api,
        "/api/v1/apps/x/services/y/logs?follow=maybe",
        None,
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("invalid_query"), "{body}");
    let (code, body) = berth_testkit::http_get(
        &server.api,
        "/api/v1/openapi.json",
        None,
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("\"/api/v1/apps/{app}/apply\""));
    let (code, body) = server.get("/nowhere").unwrap();
    assert_eq!(code, 404);
    assert!(body.contains("no_route"), "{body}");
}
