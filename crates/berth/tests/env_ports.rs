//! Host ports as leases and environment quotas (docs/environments.md), against real Docker:
//! a `ports:` entry without a host port gets one from the range and keeps it; the inventory
//! (`berth ports`, `GET /api/v1/ports`) shows every held port; a fixed port held by another
//! application or by a process outside Berth is refused with `port_conflict`; two applies
//! racing for an environment's last free port: exactly one wins, the other gets
//! `no_free_port`; a revision over its environment's quota is refused with `quota_exceeded`.

mod common;

use berth_testkit::{testapp_image, wait_for, TestRun};
use common::*;
use std::time::Duration;

fn file(dir: &std::path::Path, name: &str, image: &str, ports: &str, extra: &str) -> String {
    compose(
        dir,
        name,
        &format!(
            "services:\n  web:\n    image: {image}\n    environment: {{ VERSION: {name} }}\n    ports: [{ports}]\n{extra}"
        ),
    )
    .to_str()
    .unwrap()
    .to_string()
}

/// A block of host ports below Linux's ephemeral range that nothing on this host listens on,
/// `len` long (other test processes pick theirs the same way; the server probes each port
/// again before it leases it).
fn free_block(len: u16) -> (u16, u16) {
    let seed = u16::try_from(std::process::id() % 90).unwrap();
    for i in 0..90 {
        let lo = 21_000 + ((seed + i) % 90) * 100;
        if (lo..lo + len).all(|p| std::net::TcpListener::bind(("0.0.0.0", p)).is_ok()) {
            return (lo, lo + len - 1);
        }
    }
    panic!("no free block of {len} ports");
}

fn leases(server: &Server, env: Option<&str>) -> Vec<serde_json::Value> {
    let mut args = vec!["ports", "-o", "json"];
    if let Some(e) = env {
        args.splice(0..0, ["--env", e]);
    }
    json(&server.ok(&args)).as_array().unwrap().clone()
}

#[test]
fn ports_are_leased_listed_and_never_held_twice() {
    let run = TestRun::new("env-ports");
    let image = testapp_image(&run);
    let dir = tempfile::tempdir().unwrap();
    let (lo, hi) = free_block(100);
    let range = format!("{lo}-{hi}");
    let api = format!("127.0.0.1:{}", free_port());
    let gateway = format!("127.0.0.1:{}", free_port());
    let server = Server::start_with(&run, dir.path(), &api, &gateway, &["--port-range", &range]);

    // Leased from the range; the same file again keeps the port (no new revision).
    let leased = file(dir.path(), "leased", &image, "\"8080\"", "");
    server.ok(&["apply", "-f", &leased, "--app", "a"]);
    let l = leases(&server, None);
    assert_eq!(l.len(), 1, "{l:?}");
    assert_eq!(l[0]["app"], "a");
    assert_eq!(l[0]["service"], "web");
    assert_eq!(l[0]["target"], 8080);
    assert_eq!(l[0]["env"], "dev");
    assert_eq!(l[0]["fixed"], false);
    let port = u16::try_from(l[0]["port"].as_u64().unwrap()).unwrap();
    assert!((lo..=hi).contains(&port), "{port} in {range}");
    let again = server.ok(&["apply", "-f", &leased, "--app", "a"]);
    assert!(again.contains("no change"), "{again}");
    // It is served there.
    let addr = format!("127.0.0.1:{port}");
    wait_for(Duration::from_secs(60), "the leased port answers", || {
        let (status, body) =
            berth_testkit::http_get(&addr, "/", None, Duration::from_secs(2)).ok()?;
        (status == 200 && body.starts_with("leased")).then_some(())
    });
    // The API answers the same inventory.
    let token = server.token();
    let (status, _, body) = call(&server.api, "GET", "/api/v1/ports", Some(&token), None);
    assert_eq!(status, 200);
    assert_eq!(body[0]["port"], u64::from(port));

    // A fixed port another application holds: refused, naming the holder.
    let taken = file(dir.path(), "taken", &image, &format!("\"{port}:8080\""), "");
    let out = server.cli(&["apply", "-f", &taken, "--app", "b"]);
    let err = failed_with(&out, "port_conflict");
    assert!(
        err.contains(&port.to_string()) && err.contains("\"a\""),
        "{err}"
    );
    // A fixed port a process outside Berth holds: refused at apply (not retried and degraded).
    let foreign = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let fport = foreign.local_addr().unwrap().port();
    let held = file(dir.path(), "held", &image, &format!("\"{fport}:8080\""), "");
    let out = server.cli(&["apply", "-f", &held, "--app", "b"]);
    let err = failed_with(&out, "port_conflict");
    assert!(
        err.contains(&fport.to_string()) && err.contains("another process"),
        "{err}"
    );
    assert!(
        !server.ok(&["apps"]).contains("\nb "),
        "nothing was created"
    );
    drop(foreign);

    // An environment with a block of two ports: the last free port goes to exactly one of
    // two applies racing for it.
    let block = format!("{}-{}", hi - 1, hi);
    server.ok(&["env", "create", "small", "--ports", &block]);
    server.ok(&[
        "--env", "small", "apply", "-f", &leased, "--app", "first", "--detach",
    ]);
    let outs: Vec<std::process::Output> = std::thread::scope(|scope| {
        let racers: Vec<_> = ["second", "third"]
            .into_iter()
            .map(|app| {
                let (server, f) = (&server, &leased);
                scope.spawn(move || {
                    server.cli(&["--env", "small", "apply", "-f", f, "--app", app, "--detach"])
                })
            })
            .collect();
        racers.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let won = outs.iter().filter(|o| o.status.success()).count();
    assert_eq!(won, 1, "exactly one wins: {outs:?}");
    let lost = outs.iter().find(|o| !o.status.success()).unwrap();
    let err = failed_with(lost, "no_free_port");
    assert!(err.contains(&block), "{err}");
    let small = leases(&server, Some("small"));
    let mut ports: Vec<u64> = small.iter().map(|l| l["port"].as_u64().unwrap()).collect();
    ports.sort_unstable();
    assert_eq!(ports, vec![u64::from(hi - 1), u64::from(hi)], "{small:?}");
    // The environment's block is not leased to dev.
    let dev = file(dir.path(), "dev2", &image, "\"8080\", \"9090\"", "");
    server.ok(&["apply", "-f", &dev, "--app", "c", "--detach"]);
    for l in leases(&server, None).iter().filter(|l| l["app"] == "c") {
        let p = l["port"].as_u64().unwrap();
        assert!(p < u64::from(hi - 1), "{l}");
    }

    // A clone re-leases fixed host ports from the new environment's block.
    let fixed_port = free_port();
    let fixed = file(
        dir.path(),
        "fixed",
        &image,
        &format!("\"{fixed_port}:8080\""),
        "",
    );
    server.ok(&["apply", "-f", &fixed, "--app", "d", "--detach"]);
    // (A block holding a port another environment's application leases is refused.)
    let out = server.cli(&[
        "env",
        "create",
        "copy",
        "--ports",
        &format!("{port}-{}", port + 9),
    ]);
    let err = failed_with(&out, "port_conflict");
    assert!(err.contains("\"a\""), "{err}");
    let (lo, hi) = (hi - 20, hi - 11);
    let out = server.ok(&[
        "env",
        "create",
        "copy",
        "--from",
        "dev",
        "--ports",
        &format!("{lo}-{hi}"),
    ]);
    assert!(
        out.contains("cloned from dev:") && out.contains('d'),
        "{out}"
    );
    let copy = leases(&server, Some("copy"));
    let d = copy.iter().find(|l| l["app"] == "d").unwrap();
    assert_eq!(d["fixed"], false, "{d}");
    let p = d["port"].as_u64().unwrap();
    assert!((u64::from(lo)..=u64::from(hi)).contains(&p), "{d}");
    assert!(leases(&server, None)
        .iter()
        .any(|l| l["app"] == "d" && l["port"] == u64::from(fixed_port)));
    server.ok(&["env", "rm", "copy"]);
    server.ok(&["rm", "--app", "d"]);

    // Leases go with their application.
    server.ok(&["rm", "--app", "a"]);
    wait_for(Duration::from_secs(60), "a's lease freed", || {
        (!leases(&server, None).iter().any(|l| l["app"] == "a")).then_some(())
    });
    server.ok(&["env", "rm", "small"]);
    server.ok(&["rm", "--app", "c"]);
    wait_all_removed(&run);
}

#[test]
fn a_revision_over_its_environments_quota_is_refused_before_anything_starts() {
    let run = TestRun::new("env-quota");
    let image = testapp_image(&run);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&run, dir.path());
    server.ok(&["env", "create", "tight", "--cpus", "1", "--memory", "512M"]);
    let shown = json(&server.ok(&["env", "show", "tight", "-o", "json"]));
    assert_eq!(shown["cpus"], 1.0, "{shown}");
    assert_eq!(shown["memory_bytes"], 512 * 1024 * 1024, "{shown}");
    // Three replicas without limits count the default half CPU each: 1.5 > 1.
    let big = compose(
        dir.path(),
        "big.yaml",
        &format!("services:\n  web:\n    image: {image}\n    expose: [\"8080\"]\n    deploy: {{ replicas: 3 }}\n"),
    );
    let out = server.cli(&[
        "--env",
        "tight",
        "apply",
        "-f",
        big.to_str().unwrap(),
        "--app",
        "shop",
    ]);
    let err = failed_with(&out, "quota_exceeded");
    assert!(
        err.contains("services.web") && err.contains("1.5 CPU") && err.contains("quota of 1 CPU"),
        "{err}"
    );
    assert!(!server.ok(&["--env", "tight", "apps"]).contains("shop"));
    assert_eq!(docker_count(&run, "container"), 0, "nothing started");
    // Memory: 2 × 300M > 512M.
    let fat = compose(
        dir.path(),
        "fat.yaml",
        &format!("services:\n  web:\n    image: {image}\n    expose: [\"8080\"]\n    deploy:\n      replicas: 2\n      resources: {{ limits: {{ cpus: \"0.25\", memory: 300M }} }}\n"),
    );
    let out = server.cli(&[
        "--env",
        "tight",
        "apply",
        "-f",
        fat.to_str().unwrap(),
        "--app",
        "shop",
    ]);
    let err = failed_with(&out, "quota_exceeded");
    assert!(err.contains("600MiB") && err.contains("512MiB"), "{err}");
    // What fits is applied; scaling past the quota is refused too.
    let fits = compose(
        dir.path(),
        "fits.yaml",
        &format!("services:\n  web:\n    image: {image}\n    expose: [\"8080\"]\n    deploy:\n      replicas: 2\n      resources: {{ limits: {{ cpus: \"0.25\", memory: 128M }} }}\n"),
    );
    server.ok(&[
        "--env",
        "tight",
        "apply",
        "-f",
        fits.to_str().unwrap(),
        "--app",
        "shop",
        "--detach",
    ]);
    let out = server.cli(&["--env", "tight", "scale", "--app", "shop", "web=5"]);
    failed_with(&out, "quota_exceeded");
    // Bad quotas are named.
    let out = server.cli(&["env", "create", "bad", "--memory", "lots"]);
    failed_with(&out, "invalid_argument");
    server.ok(&["env", "rm", "tight"]);
    wait_all_removed(&run);
}
