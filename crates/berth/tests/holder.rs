//! The local runtime's per-replica network holder (`holder.rs`, docs/runtime.md): a killed
//! replica is started again in the namespace its holder kept (same address, same holder), a
//! killed holder is replaced, and holders go with a scale down and with `berth rm`.

mod common;

use berth_testkit::{docker_cli, testapp_image, wait_for, TestRun};
use common::*;
use std::collections::BTreeSet;
use std::time::Duration;

fn compose_file(image: &str, replicas: u32) -> String {
    format!(
        r#"
services:
  web:
    image: {image}
    environment:
      VERSION: v1
    expose: ["8080"]
    deploy:
      replicas: {replicas}
    x-berth:
      route: {{ path_prefix: / }}
      health: {{ http: /healthz, interval: 500ms }}
"#
    )
}

/// The holder of replica `id`: (holder id, running).
fn holder_of(run: &TestRun, id: &str) -> Option<(String, bool)> {
    let out = docker_cli(&[
        "ps",
        "-a",
        "--no-trunc",
        "--filter",
        &format!("label=berth.test={}", run.id),
        "--filter",
        &format!("label=berth.replica={id}"),
        "--format",
        "{{.ID}} {{.State}}",
    ])
    .unwrap();
    let line = out.lines().next()?;
    let (hid, state) = line.split_once(' ')?;
    Some((hid.to_string(), state == "running"))
}

/// (container id, address, started at) of slot `slot`'s replica when it runs and is healthy.
fn healthy_replica(server: &Server, slot: u64) -> Option<(String, String, String)> {
    let ps = server.ps("shop");
    let r = ps.iter().find(|i| i["slot"] == slot)?;
    if r["state"] != "running" || r["health"] != "healthy" || r["in_rotation"] != true {
        return None;
    }
    let id = r["container_id"].as_str()?.to_string();
    let started = docker_cli(&["inspect", "-f", "{{.State.StartedAt}}", &id]).ok()?;
    Some((
        id,
        r["address"].as_str()?.to_string(),
        started.trim().into(),
    ))
}

/// Hostnames answering through the gateway in 30 requests.
fn answering(server: &Server) -> BTreeSet<String> {
    (0..30)
        .filter_map(|_| server.get("/").ok())
        .filter(|(code, _)| *code == 200)
        .filter_map(|(_, body)| body.split_whitespace().nth(1).map(str::to_string))
        .collect()
}

#[test]
fn a_replica_keeps_its_address_across_a_heal_and_a_killed_holder_is_replaced() {
    let run = TestRun::new("holder");
    let image = testapp_image(&run);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&run, dir.path());
    let file = compose(dir.path(), "compose.yaml", &compose_file(&image, 2));
    let f = file.to_str().unwrap();
    server.ok(&["apply", "-f", f, "--app", "shop"]);

    // One holder per replica; `ps` lists replicas only.
    assert_eq!(docker_count(&run, "replica"), 2);
    assert_eq!(docker_count(&run, "holder"), 2);
    let ps = server.ps("shop");
    assert_eq!(ps.len(), 2, "{ps:?}");
    let (id, address, started) = wait_for(Duration::from_secs(20), "slot 0 healthy", || {
        healthy_replica(&server, 0)
    });
    let (holder, running) = holder_of(&run, &id).expect("slot 0 has a network holder");
    assert!(running);
    // The replica runs in its holder's network namespace, under its own short id as hostname.
    let mode = docker_cli(&["inspect", "-f", "{{.HostConfig.NetworkMode}}", &id]).unwrap();
    assert!(mode.trim().starts_with("container:"), "{mode}");
    wait_for(Duration::from_secs(20), "both replicas answer", || {
        let hosts = answering(&server);
        (hosts.len() == 2 && hosts.contains(&id[..12])).then_some(())
    });

    // Kill the replica: Berth starts it again in the namespace its holder kept.
    docker_cli(&["kill", &id]).unwrap();
    let (id2, address2, started2) = wait_for(Duration::from_secs(30), "slot 0 healed", || {
        healthy_replica(&server, 0).filter(|(_, _, s)| *s != started)
    });
    assert_eq!(id2, id, "the same replica was started again");
    assert_eq!(address2, address, "its address stayed");
    assert_eq!(
        holder_of(&run, &id),
        Some((holder.clone(), true)),
        "its holder stayed"
    );

    // Kill the holder: the replica is cut off, Berth makes the holder again and starts the
    // replica in it.
    docker_cli(&["kill", &holder]).unwrap();
    wait_for(Duration::from_secs(30), "the holder replaced", || {
        let (h, running) = holder_of(&run, &id)?;
        (h != holder && running).then_some(())
    });
    wait_for(Duration::from_secs(30), "slot 0 serves again", || {
        healthy_replica(&server, 0).filter(|(_, _, s)| *s != started2)
    });
    wait_for(
        Duration::from_secs(20),
        "both replicas answer again",
        || {
            let hosts = answering(&server);
            (hosts.len() == 2 && hosts.contains(&id[..12])).then_some(())
        },
    );
    assert_eq!(docker_count(&run, "holder"), 2, "the old holder is gone");

    // A holder restarted behind Berth's back has a new namespace, the replica the old, empty
    // one: the replica is started again in the new one.
    let (_, _, started3) = wait_for(Duration::from_secs(30), "slot 0 healthy", || {
        healthy_replica(&server, 0)
    });
    let (holder3, _) = holder_of(&run, &id).unwrap();
    docker_cli(&["restart", &holder3]).unwrap();
    wait_for(
        Duration::from_secs(30),
        "slot 0 serves in the new namespace",
        || healthy_replica(&server, 0).filter(|(_, _, s)| *s != started3),
    );
    wait_for(
        Duration::from_secs(20),
        "both replicas answer after the restart",
        || {
            let hosts = answering(&server);
            (hosts.len() == 2 && hosts.contains(&id[..12])).then_some(())
        },
    );

    // A holder left without its replica (removed behind Berth's back) is swept.
    let ps = server.ps("shop");
    let other = ps.iter().find(|i| i["slot"] == 1).unwrap()["container_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (other_holder, _) = holder_of(&run, &other).unwrap();
    docker_cli(&["rm", "-f", &other]).unwrap();
    wait_for(Duration::from_secs(30), "slot 1 replaced", || {
        (healthy_replica(&server, 1).is_some_and(|(i, _, _)| i != other)
            && docker_count(&run, "holder") == 2)
            .then_some(())
    });
    assert!(
        docker_cli(&["inspect", &other_holder]).is_err(),
        "the orphaned holder was removed"
    );

    // Scale down: the surplus replica's holder goes with it.
    server.ok(&["scale", "--app", "shop", "web=1"]);
    wait_for(Duration::from_secs(30), "scaled down to 1", || {
        (docker_count(&run, "replica") == 1 && docker_count(&run, "holder") == 1).then_some(())
    });

    // `rm`: nothing is left, holders included.
    server.ok(&["rm", "--app", "shop"]);
    wait_for(Duration::from_secs(30), "nothing left", || {
        (docker_count(&run, "container") == 0 && docker_count(&run, "network") == 0).then_some(())
    });
}
