//! End-to-end: `berth gateway` as its own process, fed by `berth server --no-gateway`. A
//! `kill -9` of the control plane under load fails no request through the gateway, which keeps
//! serving its last routing table and picks up the restarted control plane's stream.

mod common;

use berth_testkit::{testapp_image, wait_for, TestRun};
use common::*;
use std::process::Command;
use std::time::Duration;

#[test]
fn separate_gateway_survives_kill_9_of_the_control_plane() {
    let run = TestRun::new("gwproc");
    let image = testapp_image(&run);
    let dir = tempfile::tempdir().unwrap();
    let api = format!("127.0.0.1:{}", free_port());
    let unused = format!("127.0.0.1:{}", free_port());
    let gw_addr = format!("127.0.0.1:{}", free_port());
    let start_server = || {
        let log =
            std::fs::File::create(dir.path().join(format!("server-{}.log", free_port()))).unwrap();
        let child = Command::new(bin())
            .args([
                "server",
                "--no-gateway",
                "--api-listen",
                &api,
                "--gateway-listen",
                &unused,
            ])
            .args(["--label", &format!("berth.test={}", run.id), "--data-dir"])
            .arg(dir.path())
            .env("BERTH_ADMIN_PASSWORD", TEST_ADMIN_PASSWORD)
            .stderr(log)
            .spawn()
            .unwrap();
        wait_for(Duration::from_secs(20), "control plane up", || {
            berth_testkit::http_get(&api, "/api/v1/health", None, Duration::from_secs(1))
                .ok()
                .filter(|(c, _)| *c == 200)
        });
        child
    };
    let mut server = start_server();
    let mut gateway = spawn_gateway(&api, dir.path(), &gw_addr, &[]);
    let file = compose(
        dir.path(),
        "compose.yaml",
        &format!(
            "services:\n  web:\n    image: {image}\n    expose: [\"8080\"]\n    deploy: {{ replicas: 2 }}\n    x-berth:\n      route: {{ path_prefix: / }}\n      health: {{ http: /healthz }}\n"
        ),
    );
    let cli = |args: &[&str]| {
        Command::new(bin())
            .args(args)
            .env("BERTH_SERVER", format!("http://{api}"))
            .env(
                "BERTH_TOKEN",
                std::fs::read_to_string(dir.path().join("admin.token")).unwrap(),
            )
            .output()
            .unwrap()
    };
    let out = cli(&["apply", "-f", file.to_str().unwrap(), "--app", "gw"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(
        Duration::from_secs(20),
        "the separate gateway routes",
        || {
            berth_testkit::http_get(&gw_addr, "/", None, Duration::from_secs(2))
                .ok()
                .filter(|(c, _)| *c == 200)
        },
    );

    let load = Load::start(&gw_addr, "/x", 3);
    std::thread::sleep(Duration::from_millis(500));
    let _ = server.kill();
    let _ = server.wait();
    std::thread::sleep(Duration::from_secs(2));
    server = start_server();
    std::thread::sleep(Duration::from_secs(1));
    let r = load.finish();
    assert!(
        r.failures.is_empty(),
        "requests failed through the gateway: {:?}",
        &r.failures[..r.failures.len().min(5)]
    );
    assert!(r.ok > 100, "too little load: {}", r.ok);

    // The separate gateway's figures reach the (restarted) control plane: its first report
    // there is the baseline, so count requests sent after it.
    std::thread::sleep(Duration::from_millis(1500));
    for _ in 0..20 {
        let _ = berth_testkit::http_get(&gw_addr, "/", None, Duration::from_secs(2));
    }
    let token = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
    wait_for(
        Duration::from_secs(10),
        "the separate gateway's figures",
        || {
            let (status, _, body) = call(
                &api,
                "GET",
                "/api/v1/routes/gw/web/stats",
                Some(token.trim()),
                None,
            );
            assert_eq!(status, 200, "{body}");
            let requests: u64 = body["minutes"]
                .as_array()?
                .iter()
                .map(|m| m["requests"].as_u64().unwrap())
                .sum();
            (requests >= 20).then_some(())
        },
    );

    let out = cli(&["rm", "--app", "gw"]);
    assert!(out.status.success());
    wait_for(
        Duration::from_secs(10),
        "route gone from the separate gateway",
        || {
            berth_testkit::http_get(&gw_addr, "/", None, Duration::from_secs(2))
                .ok()
                .filter(|(c, _)| *c == 404)
        },
    );
    let _ = gateway.kill();
    let _ = gateway.wait();
    let _ = server.kill();
    let _ = server.wait();
}
