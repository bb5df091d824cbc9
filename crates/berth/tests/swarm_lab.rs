//! The Swarm lab the Swarm runtime is tested on (docs/swarm.md#testing-on-several-nodes-on-one-machine):
//! three `dockerd`s in namespaces of their own form a Swarm that schedules a service's tasks on
//! every node and serves them at each node's address, and tearing the lab down leaves the host
//! as it was (its namespaces, its engine's Swarm state).

use berth_testkit::swarm::Lab;
use berth_testkit::{testapp_image, wait_for, TestRun};
use std::time::Duration;

fn netns() -> String {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn swarm_state() -> String {
    berth_testkit::docker_cli(&["info", "--format", "{{.Swarm.LocalNodeState}}"])
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn a_three_node_lab_runs_a_service_on_every_node_and_leaves_the_host_as_it_was() {
    if let Some(why) = Lab::unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let run = TestRun::new("swarm-lab");
    let image = testapp_image(&run);
    let host_swarm = swarm_state();
    let hub = {
        let lab = Lab::up(&run, 3, &[&image]).unwrap();
        let nodes = lab
            .docker(1, &["node", "ls", "--format", "{{.Hostname}} {{.Status}}"])
            .unwrap();
        assert_eq!(
            nodes.lines().filter(|l| l.ends_with("Ready")).count(),
            3,
            "{nodes}"
        );
        lab.docker(
            1,
            &[
                "service",
                "create",
                "--detach",
                "--no-resolve-image",
                "--name",
                "web",
                "--replicas",
                "3",
                "--replicas-max-per-node",
                "1",
                "--endpoint-mode",
                "dnsrr",
                "--publish",
                "mode=host,target=8080,published=18080",
                "--env",
                "VERSION=lab",
                &image,
            ],
        )
        .unwrap();
        let placed = wait_for(Duration::from_secs(60), "three running tasks", || {
            let ps = lab
                .docker(
                    1,
                    &[
                        "service",
                        "ps",
                        "web",
                        "--filter",
                        "desired-state=running",
                        "--format",
                        "{{.Node}} {{.CurrentState}}",
                    ],
                )
                .ok()?;
            let running: std::collections::BTreeSet<String> = ps
                .lines()
                .filter(|l| l.contains("Running"))
                .filter_map(|l| l.split_whitespace().next().map(str::to_string))
                .collect();
            (running.len() == 3).then_some(running)
        });
        assert_eq!(placed.len(), 3, "one task per node: {placed:?}");
        // Every node serves its task at its own address, reachable from the hub.
        for i in 1..=3 {
            let addr = lab.addr(i);
            let body = wait_for(
                Duration::from_secs(30),
                &format!("node {i} answers"),
                || {
                    let out = lab
                    .in_hub("bash")
                    .args([
                        "-c",
                        &format!("exec 3<>/dev/tcp/{addr}/18080 && printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3 && timeout 5 cat <&3"),
                    ])
                    .output()
                    .ok()?;
                    let text = String::from_utf8_lossy(&out.stdout).into_owned();
                    text.contains("\r\n\r\nlab ").then_some(text)
                },
            );
            assert!(body.starts_with("HTTP/1."), "{body}");
        }
        assert!(netns().contains(&lab.hub()));
        lab.hub()
    };
    // Dropped: the lab is gone, the host's engine is as it was.
    assert!(!netns().contains(&hub), "{}", netns());
    assert_eq!(swarm_state(), host_swarm);
}
