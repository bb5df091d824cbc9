//! The Swarm lab the Swarm runtime is tested on (docs/swarm.md#testing-on-several-nodes-on-one-machine):
//! three `dockerd`s in namespaces of their own form a Swarm that schedules a service's tasks on
//! every node and serves them at each node's address, and tearing the lab down leaves the host
//! as it was (its namespaces, its engine's Swarm state). `berth nodes` against a server whose
//! engine is the lab's manager lists the three nodes; against a worker's engine, or the host's
//! (never in a Swarm of ours), it is refused with `not_a_swarm_manager`. `berth server --runtime
//! swarm` on the manager runs an application's replicas on the nodes, scales and removes it;
//! its gateways on the nodes serve routes and published ports and run Berth's probes.

mod common;

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

/// `berth server --runtime swarm` on the lab's manager (as `DOCKER_HOST`), with `extra` flags.
fn swarm_server(run: &TestRun, lab: &Lab, dir: &std::path::Path, extra: &[&str]) -> common::Server {
    let api = format!("127.0.0.1:{}", common::free_port());
    let gateway = format!("127.0.0.1:{}", common::free_port());
    let manager = format!("unix://{}", lab.socket(1).display());
    let mut args = vec!["--runtime", "swarm"];
    args.extend_from_slice(extra);
    common::Server::start_with_env(
        run,
        dir,
        &api,
        &gateway,
        &args,
        &[
            ("DOCKER_HOST", manager.as_str()),
            ("BERTH_ADMIN_PASSWORD", common::TEST_ADMIN_PASSWORD),
        ],
    )
}

/// `berth server --runtime swarm` on a 2-node lab with a gateway on both nodes (chosen by a node
/// label; the worker's through its engine, `--node-engine`) on port 7480. The server runs
/// outside the lab; the nodes reach its API at the hub's address.
fn gateway_server(run: &TestRun, lab: &Lab, dir: &std::path::Path) -> common::Server {
    let api = format!("127.0.0.1:{}", common::free_port());
    let gateway = format!("127.0.0.1:{}", common::free_port());
    let advertised = lab.relay_from_hub(api.parse().unwrap()).unwrap();
    let manager = format!("unix://{}", lab.socket(1).display());
    for node in ["node1", "node2"] {
        lab.docker(1, &["node", "update", "--label-add", "gw=yes", node])
            .unwrap();
    }
    let worker = format!("node2=unix://{}", lab.socket(2).display());
    common::Server::start_with_env(
        run,
        dir,
        &api,
        &gateway,
        &[
            "--runtime",
            "swarm",
            "--advertise-url",
            &format!("http://{advertised}"),
            "--node-gateway-port",
            "7480",
            "--gateway-nodes",
            "node.labels.gw=yes",
            "--node-engine",
            &worker,
        ],
        &[
            ("DOCKER_HOST", manager.as_str()),
            ("BERTH_ADMIN_PASSWORD", common::TEST_ADMIN_PASSWORD),
        ],
    )
}

/// A `TestRun` named `name`, the test image and a lab of `nodes` nodes with it loaded; `None`
/// (the reason printed) where no lab can run here. Bind them in this order
/// (`let Some((run, image, lab)) = ...`): the lab goes first, the run's cleanup last.
fn lab_or_skip(name: &str, nodes: usize) -> Option<(TestRun, String, Lab)> {
    if let Some(why) = Lab::unavailable() {
        eprintln!("skipped: {why}");
        return None;
    }
    let run = TestRun::new(name);
    let image = testapp_image(&run);
    let lab = Lab::up(&run, nodes, &[&image]).unwrap();
    Some((run, image, lab))
}

/// `docker inspect` of `name` on node `i`: its ID and start time, or `None` when it is not there.
fn id_and_start(lab: &Lab, i: usize, name: &str) -> Option<String> {
    lab.docker(i, &["inspect", "-f", "{{.Id}} {{.State.StartedAt}}", name])
        .ok()
        .map(|s| s.trim().to_string())
}

/// The nodes the running replicas of `service` (all services: `None`) run on, sorted.
fn running_nodes(ps: &[serde_json::Value], service: Option<&str>) -> Vec<String> {
    let mut n: Vec<String> = ps
        .iter()
        .filter(|i| i["state"] == "running" && service.is_none_or(|s| i["service"] == s))
        .map(|i| i["node"].as_str().unwrap_or_default().to_string())
        .collect();
    n.sort();
    n
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

#[test]
fn berth_nodes_lists_a_managers_nodes_and_refuses_an_engine_not_in_a_swarm() {
    let Some((run, image, lab)) = lab_or_skip("swarm-nodes", 3) else {
        return;
    };
    // One service of 3 replicas, at most one per node: every node runs one task.
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
            &image,
        ],
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let api = format!("127.0.0.1:{}", common::free_port());
    let gateway = format!("127.0.0.1:{}", common::free_port());
    let manager = format!("unix://{}", lab.socket(1).display());
    let server = common::Server::start_with_env(
        &run,
        dir.path(),
        &api,
        &gateway,
        &[],
        &[
            ("DOCKER_HOST", manager.as_str()),
            ("BERTH_ADMIN_PASSWORD", common::TEST_ADMIN_PASSWORD),
        ],
    );
    let nodes = wait_for(Duration::from_secs(60), "a task on every node", || {
        let nodes = common::json(&server.ok(&["nodes", "-o", "json"]));
        let list = nodes.as_array()?.clone();
        list.iter().all(|n| n["tasks"] == 1).then_some(list)
    });
    let mut hosts: Vec<&str> = nodes
        .iter()
        .map(|n| n["hostname"].as_str().unwrap())
        .collect();
    hosts.sort_unstable();
    assert_eq!(hosts, ["node1", "node2", "node3"]);
    for n in &nodes {
        assert_eq!(n["state"], "ready", "{n}");
        assert_eq!(n["availability"], "active", "{n}");
        assert!(
            n["engine_version"].as_str().unwrap().starts_with("20.10"),
            "{n}"
        );
        assert!(
            n["address"].as_str().unwrap().starts_with("192.168.77."),
            "{n}"
        );
        let manager = n["hostname"] == "node1";
        assert_eq!(n["role"], if manager { "manager" } else { "worker" }, "{n}");
        assert_eq!(n["leader"], manager, "{n}");
    }
    let table = server.ok(&["nodes"]);
    let header = table.lines().next().unwrap();
    for column in ["HOSTNAME", "STATE", "AVAILABILITY", "ROLE", "TASKS"] {
        assert!(header.contains(column), "{table}");
    }
    assert!(table.contains("manager (leader)"), "{table}");
    assert_eq!(table.lines().count(), 4, "{table}");
    drop(server);

    // An engine that is not a manager is refused with the documented error, from the CLI (one
    // line) and the API: a worker of the lab, and the host's engine, never in a Swarm of ours.
    let worker = format!("unix://{}", lab.socket(2).display());
    let dir = tempfile::tempdir().unwrap();
    let on_worker = common::Server::start_with_env(
        &run,
        dir.path(),
        &format!("127.0.0.1:{}", common::free_port()),
        &format!("127.0.0.1:{}", common::free_port()),
        &[],
        &[
            ("DOCKER_HOST", worker.as_str()),
            ("BERTH_ADMIN_PASSWORD", common::TEST_ADMIN_PASSWORD),
        ],
    );
    refused(&on_worker);
    drop(on_worker);
    // Other engineers' tests on this machine may put the host's engine in a Swarm for a while
    // (seen: `active` on 127.0.0.1 for seconds): then there is nothing to check against it.
    if swarm_state() == "inactive" {
        let dir = tempfile::tempdir().unwrap();
        refused(&common::Server::start(&run, dir.path()));
    } else {
        eprintln!("NOTE: the host's engine is in a Swarm just now (not ours): its half skipped");
    }
}

/// `berth nodes` and `GET /api/v1/nodes` answer 409 `not_a_swarm_manager`.
fn refused(server: &common::Server) {
    let out = server.cli(&["nodes"]);
    let err = common::failed_with(&out, "not_a_swarm_manager");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let (status, body) =
        berth_testkit::http_get(&server.api, "/api/v1/nodes", None, Duration::from_secs(5))
            .unwrap();
    assert_eq!(status, 409, "{body}");
    assert_eq!(common::error_code(&body), "not_a_swarm_manager", "{body}");
}

#[test]
fn the_swarm_runtime_runs_an_application_on_the_nodes_updates_scales_and_removes_it() {
    let Some((run, image, lab)) = lab_or_skip("swarm-runtime", 3) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // No resync during the test: only the manager's events wake an application that has
    // converged (checked below with a change made behind Berth's back).
    let server = swarm_server(&run, &lab, dir.path(), &["--resync-secs", "600"]);
    // A service that needs no traffic, three replicas: apply returns once they run.
    let file = common::compose(
        dir.path(),
        "compose.yaml",
        &format!(
            "services:\n  web:\n    image: {image}\n    environment: {{VERSION: v1}}\n    deploy: {{replicas: 3}}\n"
        ),
    );
    // What the Swarm runtime cannot carry yet is refused at apply, by path; nothing is made.
    let ported = common::compose(
        dir.path(),
        "ported.yaml",
        &format!("services:\n  web:\n    image: {image}\n    ports: ['8080']\n"),
    );
    let out = server.cli(&["apply", "-f", ported.to_str().unwrap(), "--app", "shop"]);
    let err = common::failed_with(&out, "unsupported_key");
    assert!(err.contains("services.web.ports"), "{err}");
    server.ok(&["apply", "-f", file.to_str().unwrap(), "--app", "shop"]);
    let ps = server.ps("shop");
    let running: Vec<&serde_json::Value> = ps.iter().filter(|i| i["state"] == "running").collect();
    assert_eq!(running.len(), 3, "{ps:#?}");
    let nodes: std::collections::BTreeSet<&str> = running
        .iter()
        .map(|i| i["node"].as_str().unwrap_or_default())
        .collect();
    assert!(
        nodes
            .iter()
            .all(|n| ["node1", "node2", "node3"].contains(n)),
        "every replica names its node: {ps:#?}"
    );
    assert!(nodes.len() >= 2, "Swarm spread the replicas: {ps:#?}");
    let mut slots: Vec<u64> = running
        .iter()
        .map(|i| i["slot"].as_u64().unwrap())
        .collect();
    slots.sort_unstable();
    assert_eq!(slots, [0, 1, 2]);
    let table = server.ok(&["ps", "--app", "shop"]);
    assert!(table.lines().next().unwrap().contains("NODE"), "{table}");
    // Swarm runs one service of this server for it, in dnsrr mode, with 3 tasks.
    let services = lab
        .docker(
            1,
            &[
                "service",
                "ls",
                "--filter",
                &format!("label=berth.test={}", run.id),
                "--format",
                "{{.Name}} {{.Replicas}}",
            ],
        )
        .unwrap();
    assert_eq!(services.lines().count(), 1, "{services}");
    assert!(services.ends_with("3/3\n"), "{services}");

    // A new version: Swarm rolls it out (start-first), apply returns once only new tasks run.
    let v2 = common::compose(
        dir.path(),
        "compose.yaml",
        &format!(
            "services:\n  web:\n    image: {image}\n    environment: {{VERSION: v2}}\n    deploy: {{replicas: 3}}\n"
        ),
    );
    let out = server.ok(&["apply", "-f", v2.to_str().unwrap(), "--app", "shop"]);
    assert!(out.contains("converged"), "{out}");
    let ps = server.ps("shop");
    assert_eq!(ps.len(), 3, "old tasks are gone: {ps:#?}");
    assert!(
        ps.iter()
            .all(|i| i["revision"] == 2 && i["state"] == "running"),
        "{ps:#?}"
    );

    // Scaling reaches Swarm (the spec hash leaves replicas out).
    server.ok(&["scale", "--app", "shop", "web=1"]);
    let left = wait_for(Duration::from_secs(60), "one replica left", || {
        let ps = server.ps("shop");
        (ps.len() == 1).then_some(ps)
    });
    assert_eq!(left[0]["state"], "running");

    // Scaled behind Berth's back on the manager: the service's event wakes the application
    // (no resync comes for 600 s) and Berth puts its replicas back.
    let name = services.split_whitespace().next().unwrap().to_string();
    let replicas = || {
        lab.docker(
            1,
            &[
                "service",
                "inspect",
                "-f",
                "{{.Spec.Mode.Replicated.Replicas}}",
                &name,
            ],
        )
        .unwrap()
        .trim()
        .to_string()
    };
    let drifted = std::time::Instant::now();
    // Accepted by the manager (the spec says 3 until Berth's update: not read here, Berth may
    // already have put it back).
    lab.docker(1, &["service", "scale", "--detach", &format!("{name}=3")])
        .unwrap();
    wait_for(
        Duration::from_secs(20),
        "the replicas Berth wants, again",
        || (replicas() == "1").then_some(()),
    );
    eprintln!(
        "a hand scale undone in {} ms",
        drifted.elapsed().as_millis()
    );

    // `berth rm`: the service and its overlay network go.
    server.ok(&["rm", "--app", "shop"]);
    wait_for(
        Duration::from_secs(60),
        "nothing of the run left on the Swarm",
        || {
            let label = format!("label=berth.test={}", run.id);
            let s = lab
                .docker(1, &["service", "ls", "-q", "--filter", &label])
                .ok()?;
            let n = lab
                .docker(1, &["network", "ls", "-q", "--filter", &label])
                .ok()?;
            (s.trim().is_empty() && n.trim().is_empty()).then_some(())
        },
    );
    drop(server);
}

/// Swarm's scheduling keys reach Swarm: a `mode: global` service runs one task on every node
/// and converges on as many tasks as Swarm wants; `placement.constraints` keeps a service's
/// replicas on the manager.
#[test]
fn a_global_service_runs_on_every_node_and_a_constraint_keeps_replicas_on_the_manager() {
    let Some((run, image, lab)) = lab_or_skip("swarm-placement", 3) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = swarm_server(&run, &lab, dir.path(), &[]);
    let file = common::compose(
        dir.path(),
        "compose.yaml",
        &format!(
            "services:\n  agent:\n    image: {image}\n    deploy: {{mode: global}}\n  web:\n    image: {image}\n    deploy:\n      replicas: 2\n      placement: {{constraints: ['node.role == manager']}}\n"
        ),
    );
    let out = server.ok(&["apply", "-f", file.to_str().unwrap(), "--app", "shop"]);
    assert!(out.contains("converged"), "{out}");
    assert!(!out.contains("note:"), "no note on Swarm: {out}");
    let ps = server.ps("shop");
    assert_eq!(
        running_nodes(&ps, Some("agent")),
        ["node1", "node2", "node3"],
        "{ps:#?}"
    );
    assert_eq!(
        running_nodes(&ps, Some("web")),
        ["node1", "node1"],
        "{ps:#?}"
    );
    let (_, body) = berth_testkit::http_get(
        &server.api,
        "/api/v1/apps/shop",
        None,
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(common::json(&body)["converged"], true, "{body}");

    server.ok(&["rm", "--app", "shop"]);
    let label = format!("label=berth.test={}", run.id);
    wait_for(Duration::from_secs(60), "the services gone", || {
        let s = lab
            .docker(1, &["service", "ls", "-q", "--filter", &label])
            .ok()?;
        s.trim().is_empty().then_some(())
    });
    drop(server);
}

/// Secrets, configs and volumes on Swarm: the task reads its secret and config at their
/// targets and writes to its volume; a new secret content is a new Swarm secret the service
/// moves to; `berth rm --volumes` leaves no secret, config or (manager's) volume behind.
#[test]
fn secrets_configs_and_volumes_reach_a_swarm_task() {
    let Some((run, image, lab)) = lab_or_skip("swarm-files", 2) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = swarm_server(&run, &lab, dir.path(), &[]);
    std::fs::write(dir.path().join("token.txt"), "one").unwrap();
    std::fs::write(dir.path().join("app.conf"), "setting=1\n").unwrap();
    let file = common::compose(
        dir.path(),
        "compose.yaml",
        &format!(
            "services:\n  web:\n    image: {image}\n    secrets: [token]\n    configs: [{{source: conf, target: /etc/app.conf}}]\n    volumes: [data:/data]\n    deploy:\n      placement: {{constraints: ['node.role == manager']}}\nvolumes: {{data: {{}}}}\nsecrets: {{token: {{file: ./token.txt}}}}\nconfigs: {{conf: {{file: ./app.conf}}}}\n"
        ),
    );
    let f = file.to_str().unwrap();
    server.ok(&["apply", "-f", f, "--app", "shop"]);
    let container = || {
        lab.docker(
            1,
            &[
                "ps",
                "-q",
                "--filter",
                "label=berth.service=web",
                "--filter",
                "status=running",
            ],
        )
        .unwrap()
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
    };
    let probe = |c: &str, path: &str| {
        lab.docker(1, &["exec", c, "/berth-testapp", "probe", "8080", path])
            .is_ok()
    };
    let c = container();
    assert!(!c.is_empty(), "the task runs on the manager");
    assert!(probe(&c, "/file?path=/run/secrets/token"), "the secret");
    assert!(probe(&c, "/file?path=/etc/app.conf"), "the config");
    assert!(
        !probe(&c, "/file?path=/run/secrets/nothing"),
        "the probe tells"
    );
    assert!(
        probe(&c, "/write?path=/data/x&text=kept"),
        "the volume is writable"
    );
    assert!(probe(&c, "/file?path=/data/x"));
    let volumes = lab
        .docker(
            1,
            &["volume", "ls", "-q", "--filter", "label=berth.volume=data"],
        )
        .unwrap();
    assert_eq!(volumes.lines().count(), 1, "{volumes}");

    let label = format!("label=berth.test={}", run.id);
    let secret_names = || {
        lab.docker(
            1,
            &["secret", "ls", "--filter", &label, "--format", "{{.Name}}"],
        )
        .unwrap()
    };
    let before = secret_names();
    assert_eq!(before.lines().count(), 1, "{before}");
    // A new content: a new secret, and the service's tasks move to it.
    std::fs::write(dir.path().join("token.txt"), "two").unwrap();
    let out = server.ok(&["apply", "-f", f, "--app", "shop"]);
    assert!(out.contains("converged"), "{out}");
    let service = lab
        .docker(1, &["service", "ls", "-q", "--filter", &label])
        .unwrap();
    let used = lab
        .docker(
            1,
            &[
                "service",
                "inspect",
                "-f",
                "{{range .Spec.TaskTemplate.ContainerSpec.Secrets}}{{.SecretName}}{{end}}",
                service.trim(),
            ],
        )
        .unwrap();
    assert!(!before.contains(used.trim()), "{before} vs {used}");
    assert!(secret_names().contains(used.trim()));
    let c2 = container();
    assert_ne!(c, c2, "the task was replaced");
    assert!(
        probe(&c2, "/file?path=/data/x"),
        "the volume kept its data on the node"
    );

    server.ok(&["rm", "--app", "shop", "--volumes"]);
    wait_for(
        Duration::from_secs(60),
        "no secret, config or volume left",
        || {
            let s = secret_names();
            let c = lab
                .docker(1, &["config", "ls", "-q", "--filter", &label])
                .ok()?;
            let v = lab
                .docker(
                    1,
                    &["volume", "ls", "-q", "--filter", "label=berth.volume=data"],
                )
                .ok()?;
            (s.trim().is_empty() && c.trim().is_empty() && v.trim().is_empty()).then_some(())
        },
    );
    drop(server);
}

/// Swarm holds a task with a healthcheck in `starting` until its container is healthy: Berth
/// shows it started with its health starting, the application not converged and a service that
/// depends on it with `condition: service_healthy` not made yet; then healthy, and the
/// dependent service follows. That one asks for a VIP, which apply notes on a kernel without
/// IPVS (and Swarm still runs).
#[test]
fn a_tasks_healthcheck_gates_its_readiness_and_its_dependents() {
    let Some((run, image, lab)) = lab_or_skip("swarm-health", 1) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = swarm_server(&run, &lab, dir.path(), &[]);
    // The first check runs 4 s after the container starts: a window to see it starting.
    let file = common::compose(
        dir.path(),
        "compose.yaml",
        &format!(
            "services:\n  web:\n    image: {image}\n    healthcheck: {{test: [CMD, /berth-testapp, probe], interval: 4s, retries: 2}}\n  api:\n    image: {image}\n    depends_on: {{web: {{condition: service_healthy}}}}\n    deploy: {{endpoint_mode: vip}}\n"
        ),
    );
    let out = server.ok(&[
        "apply",
        "-f",
        file.to_str().unwrap(),
        "--app",
        "shop",
        "--detach",
    ]);
    // This kernel has no IPVS (docs/swarm.md): a VIP asked for is noted at apply.
    if !berth_controlplane::swarm_kernel_has_ipvs() {
        assert!(
            out.contains("note: services.api.deploy.endpoint_mode: vip needs IPVS"),
            "{out}"
        );
    }
    let status = || {
        let (_, body) = berth_testkit::http_get(
            &server.api,
            "/api/v1/apps/shop",
            None,
            Duration::from_secs(5),
        )
        .unwrap();
        common::json(&body)
    };
    let starting = wait_for(Duration::from_secs(30), "web's task started", || {
        let ps = server.ps("shop");
        ps.iter()
            .any(|i| i["service"] == "web" && i["health"] == "starting")
            .then_some(ps)
    });
    assert!(
        starting.iter().all(|i| i["service"] == "web"),
        "api waits for web to be healthy: {starting:#?}"
    );
    assert_eq!(status()["converged"], false);
    // Healthy: the dependent service is made and the application converges.
    wait_for(Duration::from_secs(60), "converged", || {
        (status()["converged"] == true).then_some(())
    });
    let ps = server.ps("shop");
    let web: Vec<_> = ps.iter().filter(|i| i["service"] == "web").collect();
    assert!(
        web.iter()
            .all(|i| i["state"] == "running" && i["health"] == "healthy"),
        "{ps:#?}"
    );
    assert_eq!(running_nodes(&ps, Some("api")), ["node1"], "{ps:#?}");

    // The nodes' gateways get a token that reads the table and reports traffic, nothing else.
    let token = std::fs::read_to_string(dir.path().join("gateway.token")).unwrap();
    let token = token.trim();
    let (code, _, _) = common::call(
        &server.api,
        "GET",
        "/api/v1/gateway/table",
        Some(token),
        None,
    );
    assert_eq!(code, 200);
    let (code, _, body) = common::call(&server.api, "GET", "/api/v1/apps", Some(token), None);
    assert_eq!(
        (code, body["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    server.ok(&["rm", "--app", "shop"]);
}

/// Without a registry, `--node-engine NAME=URL` brings a service's image from the manager's
/// engine to the other nodes' before Swarm schedules tasks there: a lab whose workers lack the
/// image runs one replica on every node.
#[test]
fn node_engines_receive_the_image_from_the_manager() {
    if let Some(why) = Lab::unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let run = TestRun::new("swarm-images");
    let image = testapp_image(&run);
    // Only the manager has the image.
    let lab = Lab::up(&run, 3, &[]).unwrap();
    let tar = tempfile::NamedTempFile::new().unwrap();
    let path = tar.path().to_str().unwrap();
    berth_testkit::docker_cli(&["save", "-o", path, &image]).unwrap();
    lab.docker(1, &["load", "-q", "-i", path]).unwrap();
    assert!(lab.docker(2, &["image", "inspect", &image]).is_err());
    let dir = tempfile::tempdir().unwrap();
    let engines = format!(
        "node2=unix://{},node3=unix://{}",
        lab.socket(2).display(),
        lab.socket(3).display()
    );
    let server = swarm_server(&run, &lab, dir.path(), &["--node-engine", &engines]);
    let file = common::compose(
        dir.path(),
        "compose.yaml",
        &format!(
            "services:\n  web:\n    image: {image}\n    deploy:\n      replicas: 3\n      placement: {{max_replicas_per_node: 1}}\n"
        ),
    );
    let out = server.ok(&["apply", "-f", file.to_str().unwrap(), "--app", "shop"]);
    assert!(out.contains("converged"), "{out}");
    let ps = server.ps("shop");
    assert_eq!(
        running_nodes(&ps, None),
        ["node1", "node2", "node3"],
        "{ps:#?}"
    );
    // Services run images by ID: the nodes have it under that ID.
    let id = berth_testkit::docker_cli(&["image", "inspect", "-f", "{{.Id}}", &image]).unwrap();
    for i in [2, 3] {
        assert!(
            lab.docker(i, &["image", "inspect", id.trim()]).is_ok(),
            "node{i}"
        );
    }
    server.ok(&["rm", "--app", "shop"]);
    drop(server);

    // A value that is not NAME=URL is refused at start, in one line.
    let out = std::process::Command::new(common::bin())
        .args(["server", "--runtime", "swarm", "--node-engine", "node2"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("expected NAME=URL"), "{err}");
}

/// With `--registry HOST:PORT` a service's image is pushed there and the service names it by
/// digest: nodes that lack the image pull it (Debian's `docker-registry` in the lab's hub,
/// nodes trusting it as an insecure registry).
#[test]
fn a_registry_carries_the_image_to_the_nodes_by_digest() {
    if let Some(why) = Lab::unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let run = TestRun::new("swarm-registry");
    let image = testapp_image(&run);
    let lab = Lab::up_with(&run, 2, &[], "--insecure-registry 192.168.77.254:5000").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let Some(registry) = lab.registry(dir.path()).unwrap() else {
        eprintln!("skipped: docker-registry is not installed");
        return;
    };
    // Only the manager has the image.
    let tar = dir.path().join("image.tar");
    let path = tar.to_str().unwrap();
    berth_testkit::docker_cli(&["save", "-o", path, &image]).unwrap();
    lab.docker(1, &["load", "-q", "-i", path]).unwrap();
    let server = swarm_server(&run, &lab, dir.path(), &["--registry", &registry.addr]);
    let file = common::compose(
        dir.path(),
        "compose.yaml",
        &format!(
            "services:\n  web:\n    image: {image}\n    deploy:\n      replicas: 2\n      placement: {{max_replicas_per_node: 1}}\n"
        ),
    );
    let out = server.ok(&["apply", "-f", file.to_str().unwrap(), "--app", "shop"]);
    assert!(out.contains("converged"), "{out}");
    let ps = server.ps("shop");
    assert_eq!(running_nodes(&ps, None), ["node1", "node2"], "{ps:#?}");
    let label = format!("label=berth.test={}", run.id);
    let service = lab
        .docker(1, &["service", "ls", "-q", "--filter", &label])
        .unwrap();
    let reference = lab
        .docker(
            1,
            &[
                "service",
                "inspect",
                "-f",
                "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
                service.trim(),
            ],
        )
        .unwrap();
    assert!(
        reference.starts_with(&format!("{}/berth/shop/web@sha256:", registry.addr)),
        "{reference}"
    );
    server.ok(&["rm", "--app", "shop"]);
    drop(server);
    drop(registry);
}

#[test]
fn a_route_answers_through_the_nodes_gateways_across_a_rolling_update_and_rm_disconnects_them() {
    let Some((run, image, lab)) = lab_or_skip("swarm-gateway", 2) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = gateway_server(&run, &lab, dir.path());
    let file = |version: &str| {
        common::compose(
            dir.path(),
            "compose.yaml",
            &format!(
                "services:\n  web:\n    image: {image}\n    environment: {{VERSION: {version}}}\n    expose: ['8080']\n    deploy: {{replicas: 2}}\n    x-berth:\n      route: {{path_prefix: /}}\n"
            ),
        )
    };
    server.ok(&["apply", "-f", file("v1").to_str().unwrap(), "--app", "shop"]);
    // The manager's gateway (node1:7480), as a client in the lab reaches it.
    let node_gw = lab
        .relay_to_hub(format!("{}:7480", lab.addr(1)).parse().unwrap())
        .unwrap()
        .to_string();
    let get = |path: &str| berth_testkit::http_get(&node_gw, path, None, Duration::from_secs(5));
    let started = std::time::Instant::now();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let last = get("/");
        if last
            .as_ref()
            .is_ok_and(|(s, b)| *s == 200 && b.starts_with("v1 "))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the route never answered on node1: {last:?}\nserver log:\n{}\ngateway: {:?}\n{:?}",
            server.log_tail(),
            lab.docker(1, &["ps", "-a", "--filter", "label=berth.role=gateway"]),
            gateway_logs(&lab),
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "first answer through the node's gateway {} ms after apply returned",
        started.elapsed().as_millis()
    );
    // The worker's gateway too.
    let node2_gw = lab
        .relay_to_hub(format!("{}:7480", lab.addr(2)).parse().unwrap())
        .unwrap()
        .to_string();
    wait_for(
        Duration::from_secs(60),
        "the route answers on node2",
        || {
            berth_testkit::http_get(&node2_gw, "/", None, Duration::from_secs(5))
                .ok()
                .filter(|(s, b)| *s == 200 && b.starts_with("v1 "))
        },
    );
    let log = std::fs::read_to_string(&server.log).unwrap_or_default();
    for line in log
        .lines()
        .filter(|l| l.contains("gateway image") || l.contains("gateway container"))
    {
        eprintln!("{line}");
    }
    // From the hub's own shell too (what a client on the nodes' network sees).
    assert_hub_gets_v1(&lab, &format!("http://{}:7480/", lab.addr(1)));
    // The gateway is a plain container on the manager, on the application's overlay network.
    let gw = lab
        .docker(
            1,
            &[
                "ps",
                "--filter",
                "label=berth.role=gateway",
                "--format",
                "{{.Names}} {{.Networks}}",
            ],
        )
        .unwrap();
    assert_eq!(gw.lines().count(), 1, "{gw}");
    let (gw_name, gw_nets) = gw.trim().split_once(' ').unwrap();
    let network = lab
        .docker(
            1,
            &[
                "network",
                "ls",
                "--filter",
                &format!("label=berth.test={}", run.id),
                "--format",
                "{{.Name}}",
            ],
        )
        .unwrap()
        .trim()
        .to_string();
    assert!(gw_nets.split(',').any(|n| n == network), "{gw} / {network}");
    // Both replicas answer (tasks on both nodes: the gateway reaches them over the overlay).
    let ps = server.ps("shop");
    let addresses: std::collections::BTreeSet<String> = ps
        .iter()
        .filter_map(|i| i["address"].as_str().map(str::to_string))
        .collect();
    assert_eq!(addresses.len(), 2, "{ps:#?}");

    // A rolling update under load: no request fails.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        // Through the worker's gateway.
        let (stop, node_gw) = (stop.clone(), node2_gw.clone());
        std::thread::spawn(move || {
            let (mut ok, mut failed, mut v2) = (0u32, Vec::new(), 0u32);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match berth_testkit::http_get(&node_gw, "/", None, Duration::from_secs(5)) {
                    Ok((200, body)) => {
                        ok += 1;
                        if body.starts_with("v2 ") {
                            v2 += 1;
                        }
                    }
                    other => failed.push(format!("{other:?}")),
                }
            }
            (ok, failed, v2)
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    server.ok(&["apply", "-f", file("v2").to_str().unwrap(), "--app", "shop"]);
    wait_for(Duration::from_secs(60), "only v2 answers", || {
        (0..6)
            .all(|_| get("/").is_ok_and(|(s, b)| s == 200 && b.starts_with("v2 ")))
            .then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed, v2) = load.join().unwrap();
    eprintln!(
        "rolling update on the Swarm through the node's gateway: {ok} answered, {} failed",
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "{} of {} failed: {failed:?}",
        failed.len(),
        ok as usize + failed.len()
    );
    assert!(ok > 20 && v2 > 0, "{ok} answered, {v2} by v2");

    // A published port: served on the node by the port relay, through the gateway's port
    // forwarder, reaching the tasks over the overlay.
    let ported = common::compose(
        dir.path(),
        "compose.yaml",
        &format!(
            "services:\n  web:\n    image: {image}\n    environment: {{VERSION: v3}}\n    expose: ['8080']\n    ports: ['18080:8080']\n    deploy: {{replicas: 2}}\n    x-berth:\n      route: {{path_prefix: /}}\n"
        ),
    );
    server.ok(&["apply", "-f", ported.to_str().unwrap(), "--app", "shop"]);
    let node_port = lab
        .relay_to_hub(format!("{}:18080", lab.addr(1)).parse().unwrap())
        .unwrap()
        .to_string();
    let published = std::time::Instant::now();
    wait_for(
        Duration::from_secs(60),
        "the published port answers on node1",
        || {
            berth_testkit::http_get(&node_port, "/", None, Duration::from_secs(5))
                .ok()
                .filter(|(s, b)| *s == 200 && b.starts_with("v3 "))
        },
    );
    eprintln!(
        "published port answering {} ms after apply returned",
        published.elapsed().as_millis()
    );
    wait_for(Duration::from_secs(30), "the route answers again", || {
        get("/")
            .ok()
            .filter(|(s, b)| *s == 200 && b.starts_with("v3 "))
    });

    // `berth rm`: the gateway leaves the network, the network and the service go; the gateway
    // stays for the next application.
    server.ok(&["rm", "--app", "shop"]);
    wait_for(
        Duration::from_secs(60),
        "nothing of the application left on the Swarm",
        || {
            let label = format!("label=berth.test={}", run.id);
            let s = lab
                .docker(1, &["service", "ls", "-q", "--filter", &label])
                .ok()?;
            let n = lab
                .docker(
                    1,
                    &[
                        "network",
                        "ls",
                        "-q",
                        "--filter",
                        &label,
                        "--filter",
                        "driver=overlay",
                    ],
                )
                .ok()?;
            (s.trim().is_empty() && n.trim().is_empty()).then_some(())
        },
    );
    for node in [1, 2] {
        wait_for(
            Duration::from_secs(30),
            "the gateways on bridge only",
            || {
                let nets = lab
                    .docker(
                        node,
                        &[
                            "inspect",
                            "-f",
                            "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
                            gw_name,
                        ],
                    )
                    .ok()?;
                (nets.trim() == "bridge").then_some(())
            },
        );
    }
    // The gateways apply the table without the route within moments of `rm`.
    wait_for(Duration::from_secs(10), "no route any more", || {
        get("/")
            .is_ok_and(|(s, _)| s == 404 || s == 503)
            .then_some(())
    });
    // A node no longer chosen keeps no gateway (it would serve its last table); the chosen
    // one keeps its own.
    lab.docker(1, &["node", "update", "--label-rm", "gw", "node2"])
        .unwrap();
    wait_for(Duration::from_secs(30), "node2's gateway removed", || {
        lab.docker(2, &["inspect", gw_name]).is_err().then_some(())
    });
    assert!(lab.docker(1, &["inspect", gw_name]).is_ok());
    drop(server);
}

/// `x-berth.health` on Swarm: the gateways on the nodes probe the tasks (the control plane
/// cannot reach their overlay addresses) and report what they see. A task whose health path
/// fails gets no traffic through either node's gateway and `berth ps` shows it unhealthy and
/// out of rotation; once its health path answers again it is healthy and serves again.
#[test]
fn the_nodes_gateways_probe_tasks_and_a_failing_one_leaves_rotation_until_healthy() {
    let Some((run, image, lab)) = lab_or_skip("swarm-probes", 2) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = gateway_server(&run, &lab, dir.path());
    // Refused on Swarm until the gateways probed: now accepted.
    let file = common::compose(
        dir.path(),
        "compose.yaml",
        &format!(
            "services:\n  web:\n    image: {image}\n    environment: {{VERSION: v1}}\n    expose: ['8080']\n    deploy: {{replicas: 2, placement: {{max_replicas_per_node: 1}}}}\n    x-berth:\n      route: {{path_prefix: /}}\n      health: {{http: /healthz, interval: 300ms}}\n"
        ),
    );
    let applied = std::time::Instant::now();
    // Returns once converged: each task ready by a gateway's report.
    server.ok(&["apply", "-f", file.to_str().unwrap(), "--app", "shop"]);
    eprintln!(
        "converged {} ms after apply (gateways made, tasks probed from the nodes)",
        applied.elapsed().as_millis()
    );
    let state = |server: &common::Server| -> Vec<(String, String, bool)> {
        let mut v: Vec<(String, String, bool)> = server
            .ps("shop")
            .iter()
            .filter(|i| i["state"] == "running")
            .map(|i| {
                (
                    i["container_id"].as_str().unwrap_or_default().to_string(),
                    i["health"].as_str().unwrap_or_default().to_string(),
                    i["in_rotation"].as_bool().unwrap_or(false),
                )
            })
            .collect();
        v.sort();
        v
    };
    let ps = state(&server);
    assert_eq!(ps.len(), 2, "{ps:?}");
    assert!(
        ps.iter().all(|(_, h, r)| h == "healthy" && *r),
        "both tasks healthy and in rotation by the gateways' word: {ps:?}"
    );
    let log = std::fs::read_to_string(&server.log).unwrap_or_default();
    assert!(
        !log.contains("no gateway reports"),
        "readiness came from the gateways, not the fallback:\n{}",
        server.log_tail()
    );
    let gws: Vec<String> = [1, 2]
        .iter()
        .map(|i| {
            lab.relay_to_hub(format!("{}:7480", lab.addr(*i)).parse().unwrap())
                .unwrap()
                .to_string()
        })
        .collect();
    let host_of = |gw: &str, path: &str| -> Option<String> {
        let (status, body) =
            berth_testkit::http_get(gw, path, None, Duration::from_secs(5)).ok()?;
        (status == 200).then(|| {
            body.split_whitespace()
                .skip_while(|w| *w != "v1")
                .nth(1)
                .unwrap_or_default()
                .to_string()
        })
    };
    let answering = |gw: &str| -> std::collections::BTreeSet<String> {
        (0..12).filter_map(|_| host_of(gw, "/")).collect()
    };
    for gw in &gws {
        wait_for(Duration::from_secs(30), "both tasks answer", || {
            (answering(gw).len() == 2).then_some(())
        });
    }
    // One task's health path fails for 15 s.
    let sick = host_of(&gws[0], "/unhealthy?ms=15000").expect("a task answered");
    let failed_at = std::time::Instant::now();
    // The gateways take it out at its first failed probe; after three it is unhealthy.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let ps = loop {
        let ps = state(&server);
        if ps.iter().filter(|(_, h, r)| h == "unhealthy" && !r).count() == 1
            && ps.iter().filter(|(_, h, r)| h == "healthy" && *r).count() == 1
        {
            break ps;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "one task unhealthy and out of rotation, not {ps:?} ({sick} made to fail; its health: {:?})\nserver log:\n{}\ngateways:\n{}",
            (0..4).map(|_| host_of(&gws[0], "/healthz")).collect::<Vec<_>>(),
            server.log_tail(),
            gateway_logs(&lab),
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!(
        "unhealthy in `berth ps` {} ms after its health path failed: {ps:?}",
        failed_at.elapsed().as_millis()
    );
    for gw in &gws {
        let hosts: Vec<String> = (0..20).filter_map(|_| host_of(gw, "/")).collect();
        assert_eq!(
            hosts.len(),
            20,
            "every request answered through {gw}: {hosts:?}"
        );
        assert!(
            !hosts.contains(&sick),
            "no traffic to the failing task {sick} through {gw}: {hosts:?}"
        );
    }
    // Its health path answers again: healthy, and back in rotation on both nodes.
    let healthy = wait_for(Duration::from_secs(40), "both tasks healthy again", || {
        let ps = state(&server);
        ps.iter()
            .all(|(_, h, r)| h == "healthy" && *r)
            .then_some(ps)
    });
    eprintln!(
        "healthy again {} ms after its health path failed (15 s): {healthy:?}",
        failed_at.elapsed().as_millis()
    );
    for gw in &gws {
        wait_for(Duration::from_secs(10), "the task serves again", || {
            answering(gw).contains(&sick).then_some(())
        });
    }
    server.ok(&["rm", "--app", "shop"]);
    drop(server);
}

/// Published ports on Swarm without the gateways made again (docs/swarm.md#published-ports-on-swarm-the-port-relay):
/// a deploy that adds a published port serves it on both nodes' addresses, one that removes it
/// stops serving it, and the gateway containers keep their ID and start time throughout while a
/// route answers every request through them. A gateway moved to another bridge address gets
/// its relay made again pointed there. Then the same server started again with
/// `--runtime local` removes the gateways and port relays it made on both nodes.
#[test]
fn a_published_port_comes_and_goes_without_the_gateways_made_again_and_a_local_start_removes_them()
{
    let Some((run, image, lab)) = lab_or_skip("swarm-ports", 2) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut server = gateway_server(&run, &lab, dir.path());
    let file = |ports: &str| {
        common::compose(
            dir.path(),
            "compose.yaml",
            &format!(
                "services:\n  web:\n    image: {image}\n    environment: {{VERSION: v1}}\n    expose: ['8080']\n{ports}    deploy: {{replicas: 2}}\n    x-berth:\n      route: {{path_prefix: /}}\n"
            ),
        )
    };
    server.ok(&["apply", "-f", file("").to_str().unwrap(), "--app", "shop"]);
    let node_gw = lab
        .relay_to_hub(format!("{}:7480", lab.addr(1)).parse().unwrap())
        .unwrap()
        .to_string();
    let get = |addr: &str| berth_testkit::http_get(addr, "/", None, Duration::from_secs(5));
    wait_for(
        Duration::from_secs(120),
        "the route answers on node1",
        || {
            get(&node_gw)
                .ok()
                .filter(|(s, b)| *s == 200 && b.starts_with("v1 "))
        },
    );
    let gw_name = lab
        .docker(
            1,
            &[
                "ps",
                "--filter",
                "label=berth.role=gateway",
                "--format",
                "{{.Names}}",
            ],
        )
        .unwrap()
        .trim()
        .to_string();
    let relay_name = gw_name.replace("berth-gateway-", "berth-relay-");
    // Both nodes run a gateway and a relay (host-networked).
    let mut before = Vec::new();
    for node in [1, 2] {
        let gw = wait_for(Duration::from_secs(60), "the gateway runs", || {
            id_and_start(&lab, node, &gw_name)
        });
        before.push(gw);
        let relay = wait_for(Duration::from_secs(60), "the port relay runs", || {
            lab.docker(
                node,
                &[
                    "inspect",
                    "-f",
                    "{{.State.Running}} {{.HostConfig.NetworkMode}}",
                    &relay_name,
                ],
            )
            .ok()
            .filter(|s| s.trim() == "true host")
        });
        eprintln!(
            "node{node}: gateway {} / relay {}",
            before[node - 1],
            relay.trim()
        );
    }
    // A route answers every request through the manager's gateway all along.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (stop, node_gw) = (stop.clone(), node_gw.clone());
        std::thread::spawn(move || {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match berth_testkit::http_get(&node_gw, "/", None, Duration::from_secs(5)) {
                    Ok((200, _)) => ok += 1,
                    other => failed.push(format!("{other:?}")),
                }
            }
            (ok, failed)
        })
    };
    // Add a published port: served on both nodes' addresses.
    let added = std::time::Instant::now();
    server.ok(&[
        "apply",
        "-f",
        file("    ports: ['18080:8080']\n").to_str().unwrap(),
        "--app",
        "shop",
    ]);
    let ports: Vec<String> = [1, 2]
        .iter()
        .map(|&n| {
            lab.relay_to_hub(format!("{}:18080", lab.addr(n)).parse().unwrap())
                .unwrap()
                .to_string()
        })
        .collect();
    for (n, port) in ports.iter().enumerate() {
        wait_for(
            Duration::from_secs(60),
            &format!("the published port answers on node{}", n + 1),
            || {
                get(port)
                    .ok()
                    .filter(|(s, b)| *s == 200 && b.starts_with("v1 "))
            },
        );
    }
    eprintln!(
        "published port answering on both nodes {} ms after apply was sent",
        added.elapsed().as_millis()
    );
    // From the hub's own shell too: the node's address, not a relay of the test's.
    assert_hub_gets_v1(&lab, &format!("http://{}:18080/", lab.addr(2)));
    // Remove it: no longer served on either node.
    let removed = std::time::Instant::now();
    server.ok(&["apply", "-f", file("").to_str().unwrap(), "--app", "shop"]);
    for (n, port) in ports.iter().enumerate() {
        wait_for(
            Duration::from_secs(60),
            &format!("the published port closed on node{}", n + 1),
            || get(port).is_err().then_some(()),
        );
    }
    eprintln!(
        "published port closed on both nodes {} ms after apply was sent",
        removed.elapsed().as_millis()
    );
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = load.join().unwrap();
    eprintln!(
        "route through the gateway meanwhile: {ok} answered, {} failed",
        failed.len()
    );
    assert!(
        failed.is_empty() && ok > 20,
        "{} of {} failed: {failed:?}",
        failed.len(),
        ok as usize + failed.len()
    );
    // The gateways were never made again nor restarted.
    for node in [1, 2] {
        assert_eq!(
            id_and_start(&lab, node, &gw_name).as_ref(),
            Some(&before[node - 1]),
            "node{node}'s gateway\nserver log:\n{}",
            server.log_tail()
        );
    }

    // The gateway at another address on the bridge (stopped, its address taken meanwhile by
    // another container, started again): the relay is made again pointed at it, and the
    // published port answers through it.
    server.ok(&[
        "apply",
        "-f",
        file("    ports: ['18080:8080']\n").to_str().unwrap(),
        "--app",
        "shop",
    ]);
    wait_for(Duration::from_secs(60), "the port answers again", || {
        get(&ports[0])
            .ok()
            .filter(|(s, b)| *s == 200 && b.starts_with("v1 "))
    });
    let gw_ip = || {
        lab.docker(
            1,
            &[
                "inspect",
                "-f",
                "{{.NetworkSettings.Networks.bridge.IPAddress}}",
                &gw_name,
            ],
        )
        .unwrap()
        .trim()
        .to_string()
    };
    let relay_id = || {
        lab.docker(1, &["inspect", "-f", "{{.Id}}", &relay_name])
            .ok()
            .map(|s| s.trim().to_string())
    };
    let (old_ip, old_relay) = (gw_ip(), relay_id().unwrap());
    let label = format!("berth.test={}", run.id);
    for _ in 0..3 {
        // (Berth's loop may start the gateway again before the filler runs: then again.)
        lab.docker(1, &["stop", "-t", "0", &gw_name]).unwrap();
        lab.docker(1, &["run", "-d", "--label", &label, &image])
            .unwrap();
        lab.docker(1, &["start", &gw_name]).unwrap();
        if gw_ip() != old_ip {
            break;
        }
    }
    let new_ip = gw_ip();
    assert_ne!(new_ip, old_ip, "the gateway kept its address");
    let moved = std::time::Instant::now();
    wait_for(
        Duration::from_secs(30),
        "the relay made again for the gateway's new address",
        || {
            let cmd = lab
                .docker(1, &["inspect", "-f", "{{json .Args}}", &relay_name])
                .ok()?;
            (relay_id()? != old_relay && cmd.contains(&format!("\"{new_ip}\""))).then_some(())
        },
    );
    wait_for(
        Duration::from_secs(30),
        "the port answers through the new relay",
        || {
            get(&ports[0])
                .ok()
                .filter(|(s, b)| *s == 200 && b.starts_with("v1 "))
        },
    );
    eprintln!(
        "gateway moved {old_ip} -> {new_ip}: port answering again {} ms later",
        moved.elapsed().as_millis()
    );

    // The same server (data directory, instance) started again on the local runtime: the
    // gateways and relays it made on both nodes go (the application first, so the local
    // runtime has nothing to run).
    server.ok(&["rm", "--app", "shop"]);
    server.stop();
    let manager = format!("unix://{}", lab.socket(1).display());
    let worker = format!("node2=unix://{}", lab.socket(2).display());
    let local = common::Server::start_with_env(
        &run,
        dir.path(),
        &format!("127.0.0.1:{}", common::free_port()),
        &format!("127.0.0.1:{}", common::free_port()),
        &["--runtime", "local", "--node-engine", &worker],
        &[
            ("DOCKER_HOST", manager.as_str()),
            ("BERTH_ADMIN_PASSWORD", common::TEST_ADMIN_PASSWORD),
        ],
    );
    for node in [1, 2] {
        wait_for(
            Duration::from_secs(30),
            &format!("no gateway or relay left on node{node}"),
            || {
                lab.docker(node, &["ps", "-aq", "--filter", "label=berth.role"])
                    .ok()
                    .filter(|s| s.trim().is_empty())
            },
        );
    }
    drop(local);
}

/// The last lines of the gateway containers' logs on node 1.
fn gateway_logs(lab: &Lab) -> String {
    let ids = lab
        .docker(1, &["ps", "-aq", "--filter", "label=berth.role=gateway"])
        .unwrap_or_default();
    ids.split_whitespace()
        .map(|id| {
            let out = std::process::Command::new("docker")
                .arg("-H")
                .arg(format!("unix://{}", lab.socket(1).display()))
                .args(["logs", "--tail", "30", id])
                .output()
                .map(|o| {
                    format!(
                        "{}{}",
                        String::from_utf8_lossy(&o.stdout),
                        String::from_utf8_lossy(&o.stderr)
                    )
                })
                .unwrap_or_default();
            format!("{id}:\n{out}")
        })
        .collect()
}

/// A task whose log cannot be read (here: its service's log driver changed to `none` behind
/// Berth's back; the manager answers such a task's logs with an empty 200, its node only
/// writes "logs call failed" to its own log): `berth logs` fails with one line,
/// `docker_unavailable`, with and without `-f`, never an empty success.
#[test]
fn a_task_log_its_node_cannot_read_is_an_error_not_an_empty_answer() {
    if let Some(why) = Lab::unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let run = TestRun::new("swarm-logs");
    let image = testapp_image(&run);
    let lab = Lab::up(&run, 1, &[&image]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = swarm_server(&run, &lab, dir.path(), &[]);
    let file = common::compose(
        dir.path(),
        "compose.yaml",
        &format!("services:\n  web:\n    image: {image}\n    deploy: {{replicas: 1}}\n"),
    );
    server.ok(&["apply", "-f", file.to_str().unwrap(), "--app", "shop"]);
    wait_for(Duration::from_secs(30), "the task's first line", || {
        let out = server.cli(&["logs", "--app", "shop", "web"]);
        String::from_utf8_lossy(&out.stdout)
            .contains("listening on port 8080")
            .then_some(())
    });
    let service = lab
        .docker(
            1,
            &[
                "service",
                "ls",
                "-q",
                "--filter",
                &format!("label=berth.test={}", run.id),
            ],
        )
        .unwrap();
    lab.docker(
        1,
        &[
            "service",
            "update",
            "--detach",
            "--log-driver",
            "none",
            service.trim(),
        ],
    )
    .unwrap();
    // Once the new task runs, its log cannot be read.
    let out = wait_for(Duration::from_secs(60), "logs refused", || {
        let out = server.cli(&["logs", "--app", "shop", "web"]);
        (!out.status.success()).then_some(out)
    });
    let err = common::failed_with(&out, "docker_unavailable");
    eprintln!("berth logs: {err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).is_empty());
    // Following: the same answer, not a stream that never says anything.
    let mut follow = std::process::Command::new(common::bin())
        .args(["logs", "--app", "shop", "web", "-f"])
        .env("BERTH_SERVER", format!("http://{}", server.api))
        .env_remove("BERTH_TOKEN")
        .env("BERTH_DATA_DIR", &server.data_dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_for(Duration::from_secs(20), "logs -f ends", || {
        follow.try_wait().unwrap()
    });
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut follow.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("(docker_unavailable)"), "{stderr}");
    server.ok(&["rm", "--app", "shop"]);
}

/// `curl URL` from the lab's hub namespace (where a client on the nodes' network stands)
/// answers the test app's first version.
fn assert_hub_gets_v1(lab: &Lab, url: &str) {
    let out = lab
        .in_hub("curl")
        .args(["-s", "--max-time", "5", url])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("v1 "),
        "{url}: {out:?}"
    );
}
