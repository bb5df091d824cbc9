//! A Docker engine restart is survived: the replicas (stopped by the engine going down) are
//! started again and routable, with no duplicates. This test restarts `dockerd` itself, which
//! disturbs everything else on the engine, so it is `#[ignore]`d: run it alone, as root, on a
//! machine where dockerd runs as `/usr/sbin/dockerd` without a service manager:
//! `cargo test -p berth --test engine_restart -- --ignored`.

mod common;

use berth_testkit::{testapp_image, wait_for, TestRun};
use common::*;
use std::process::Command;
use std::time::Duration;

fn wait_for_opt(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn docker_up() -> bool {
    Command::new("docker")
        .arg("info")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
#[ignore = "restarts the Docker engine"]
fn survives_a_docker_engine_restart() {
    let run = TestRun::new("engine");
    let image = testapp_image(&run);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&run, dir.path());
    let file = compose(
        dir.path(),
        "compose.yaml",
        &format!("services:\n  web:\n    image: {image}\n    expose: [\"8080\"]\n    deploy: {{ replicas: 2 }}\n    x-berth:\n      route: {{ path_prefix: / }}\n      health: {{ http: /healthz }}\n"),
    );
    server.ok(&["apply", "-f", file.to_str().unwrap(), "--app", "eng"]);
    assert_eq!(server.get("/").unwrap().0, 200);

    let pid = String::from_utf8(
        Command::new("pidof")
            .arg("dockerd")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let pid = pid.trim().to_string();
    assert!(!pid.is_empty(), "dockerd is not running as a plain process");
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    wait_for(Duration::from_secs(60), "dockerd stopped", || {
        (!docker_up()).then_some(())
    });
    // A stale pid file (its process gone or a zombie) would stop the new daemon.
    let pidfile = std::path::Path::new("/var/run/docker.pid");
    let _ = wait_for_opt(Duration::from_secs(20), || !pidfile.exists());
    if let Ok(old) = std::fs::read_to_string(pidfile) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", old.trim())).unwrap_or_default();
        if status.is_empty() || status.contains("State:\tZ") {
            let _ = std::fs::remove_file(pidfile);
        }
    }
    // In its own session, so it outlives this test process.
    let log = std::env::temp_dir().join("berth-test-dockerd.log");
    let started = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "setsid /usr/sbin/dockerd >{} 2>&1 &",
            log.display()
        ))
        .status()
        .unwrap();
    assert!(started.success());
    wait_for(Duration::from_secs(60), "dockerd back", || {
        docker_up().then_some(())
    });

    wait_for(
        Duration::from_secs(60),
        "replicas running and routable again",
        || {
            let ps = server.ps("eng");
            let ok = ps.len() == 2
                && ps
                    .iter()
                    .all(|i| i["state"] == "running" && i["health"] == "healthy");
            (ok && server.get("/").is_ok_and(|(c, _)| c == 200)).then_some(())
        },
    );
    assert_eq!(containers(&run).len(), 2, "{:#?}", containers(&run));
    server.ok(&["rm", "--app", "eng"]);
}
