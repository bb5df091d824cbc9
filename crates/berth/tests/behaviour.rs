//! The runtime behaviour suite: what every runtime must do for Berth, written once against the
//! server's public surface (CLI, API, gateway, published ports) and run per runtime
//! (docs/runtime.md). Each case gets a server from the runtime's constructor, so a second
//! runtime (Swarm mode) runs the same cases with one more `behaviour_suite!` line.
//!
//! Cases: deploy, ps, routes, published ports, logs; scale up and down; heal a killed replica;
//! rolling update and rollback; `depends_on` ordering; rm leaving nothing.
//!
//! `swarm_lab` runs them on a Swarm lab (docs/swarm.md) as far as the Swarm runtime goes today:
//! without traffic (routes, published ports and Berth's probes need gateways on the nodes), so a
//! case's traffic assertions run only where [`Case::traffic`] says so, and `depends_on` (which
//! reads containers' times on the local engine) only on the local runtime.

mod common;

use berth_testkit::swarm::Lab;
use berth_testkit::{testapp_image, wait_for, TestRun};
use common::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

/// Starts a `berth server` on the runtime under test (given the run, its data directory and
/// the test image), with the Swarm lab it drives if it drives one; `None` when the runtime
/// cannot run on this machine.
type Start = fn(&TestRun, &Path, &str) -> Option<(Server, Option<Lab>)>;

/// The local runtime: the host's engine.
#[allow(clippy::unnecessary_wraps)] // a `Start`
fn local(run: &TestRun, dir: &Path, _image: &str) -> Option<(Server, Option<Lab>)> {
    Some((Server::start(run, dir), None))
}

/// The Swarm runtime on a two-node lab of its own, the test image loaded on every node.
fn swarm(run: &TestRun, dir: &Path, image: &str) -> Option<(Server, Option<Lab>)> {
    if let Some(why) = Lab::unavailable() {
        eprintln!("skipped: {why}");
        return None;
    }
    let lab = Lab::up(run, 2, &[image]).unwrap();
    let manager = format!("unix://{}", lab.socket(1).display());
    let server = Server::start_with_env(
        run,
        dir,
        &format!("127.0.0.1:{}", free_port()),
        &format!("127.0.0.1:{}", free_port()),
        &["--runtime", "swarm"],
        &[
            ("DOCKER_HOST", manager.as_str()),
            ("BERTH_ADMIN_PASSWORD", TEST_ADMIN_PASSWORD),
        ],
    );
    Some((server, Some(lab)))
}

/// One server of the runtime under test, with the test image, and an application's file.
struct Case {
    run: TestRun,
    image: String,
    dir: tempfile::TempDir,
    server: Server,
    /// Dropped after the server: the Swarm lab it drives.
    lab: Option<Lab>,
}

impl Case {
    /// A case, or `None` when the runtime cannot run on this machine (a Swarm lab needs root
    /// and `ip netns`).
    fn new(name: &str, start: Start) -> Option<Case> {
        let run = TestRun::new(name);
        let image = testapp_image(&run);
        let dir = tempfile::tempdir().unwrap();
        let (server, lab) = start(&run, dir.path(), &image)?;
        Some(Case {
            run,
            image,
            dir,
            server,
            lab,
        })
    }

    /// The runtime serves traffic (routes, published ports, Berth's probes): not the Swarm
    /// runtime yet.
    fn traffic(&self) -> bool {
        self.lab.is_none()
    }

    /// The `web` service of [`web`], as this runtime can carry it.
    fn web(&self, version: &str, replicas: u32, port: Option<u16>) -> String {
        if self.traffic() {
            web(&self.image, version, replicas, port)
        } else {
            format!(
                "services:\n  web:\n    image: {}\n    environment: {{ VERSION: {version} }}\n    deploy: {{ replicas: {replicas} }}\n",
                self.image
            )
        }
    }

    /// The run's containers (on every node of a lab: running ones, as Swarm keeps the
    /// containers of ended tasks for a while), or its networks; `replica`: containers that are
    /// not network holders (a lab has none).
    fn count(&self, kind: &str) -> usize {
        let Some(lab) = &self.lab else {
            return docker_count(&self.run, kind);
        };
        let filter = format!("label=berth.test={}", self.run.id);
        // Each row names its `berth.role`: Berth's own gateway on a node (docs/swarm.md) is
        // not the application's.
        let args: Vec<&str> = match kind {
            "container" | "replica" => vec![
                "ps",
                "--filter",
                &filter,
                "--format",
                "{{.ID}} {{.Label \"berth.role\"}}",
            ],
            "network" => vec!["network", "ls", "-q", "--filter", &filter],
            _ => unreachable!(),
        };
        let nodes = if kind == "network" { 1 } else { lab.nodes };
        (1..=nodes)
            .map(|i| {
                lab.docker(i, &args)
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| !l.trim().is_empty() && !l.trim_end().ends_with(" gateway"))
                    .count()
            })
            .sum()
    }

    /// Kill the container of replica `id` (a container, or a Swarm task on one of the nodes).
    fn kill(&self, id: &str) {
        let Some(lab) = &self.lab else {
            let killed = std::process::Command::new("docker")
                .args(["kill", id])
                .output()
                .unwrap();
            assert!(killed.status.success());
            return;
        };
        let filter = format!("label=com.docker.swarm.task.id={id}");
        for i in 1..=lab.nodes {
            let c = lab.docker(i, &["ps", "-q", "--filter", &filter]).unwrap();
            if let Some(c) = c.lines().next() {
                lab.docker(i, &["kill", c]).unwrap();
                return;
            }
        }
        panic!("no container of task {id} on the lab");
    }

    /// Write `content` as the file and apply it to `app`, waiting for convergence.
    fn apply(&self, app: &str, content: &str) -> String {
        let file = compose(self.dir.path(), "compose.yaml", content);
        self.server
            .ok(&["apply", "-f", file.to_str().unwrap(), "--app", app])
    }

    fn ids(&self, app: &str, service: &str) -> BTreeSet<String> {
        self.server
            .ps(app)
            .iter()
            .filter(|i| i["service"] == service)
            .map(|i| i["container_id"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Hostnames (replicas) that answered `n` requests on `addr` with `version`.
    fn answering(&self, addr: &str, path: &str, version: &str, n: usize) -> BTreeSet<String> {
        let mut hosts = BTreeSet::new();
        for _ in 0..n {
            let (code, body) =
                berth_testkit::http_get(addr, path, None, Duration::from_secs(5)).unwrap();
            assert_eq!(code, 200, "{addr}{path}: {body}");
            let mut words = body.split_whitespace();
            assert_eq!(words.next(), Some(version), "{addr}{path}: {body}");
            hosts.insert(words.next().unwrap_or_default().to_string());
        }
        hosts
    }

    /// `docker inspect -f format id`.
    fn inspect(id: &str, format: &str) -> String {
        let out = std::process::Command::new("docker")
            .args(["inspect", "-f", format, id])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

fn web(image: &str, version: &str, replicas: u32, port: Option<u16>) -> String {
    let ports = port.map_or(String::new(), |p| {
        format!("    ports: [\"127.0.0.1:{p}:8080\"]\n")
    });
    format!(
        r#"
services:
  web:
    image: {image}
    environment: {{ VERSION: {version} }}
    expose: ["8080"]
{ports}    deploy:
      replicas: {replicas}
      update_config: {{ monitor: 8s }}
    x-berth:
      route: {{ path_prefix: / }}
      health: {{ http: /healthz, interval: 500ms }}
"#
    )
}

/// Deploy: converged, `ps` tells each replica's state, health and address, the route and the
/// published port balance over every replica, and the service's logs are readable.
fn deploy_ps_routes_ports_and_logs(start: Start) {
    let Some(c) = Case::new("suite-deploy", start) else {
        return;
    };
    let port = free_port();
    let out = c.apply("shop", &c.web("v1", 2, Some(port)));
    assert!(out.contains("converged"), "{out}");

    let ps = c.server.ps("shop");
    assert_eq!(ps.len(), 2, "{ps:?}");
    for i in &ps {
        assert_eq!(i["state"], "running", "{i}");
        assert_eq!(i["revision"], 1, "{i}");
        if c.lab.is_some() {
            assert!(
                i["node"].as_str().is_some_and(|n| n.starts_with("node")),
                "each replica names its node: {i}"
            );
        }
    }
    if !c.traffic() {
        c.server.ok(&["rm", "--app", "shop"]);
        return;
    }
    for i in &ps {
        assert_eq!(i["health"], "healthy", "{i}");
        assert!(i["address"].as_str().unwrap().ends_with(":8080"), "{i}");
    }
    assert_eq!(c.answering(&c.server.gateway, "/", "v1", 20).len(), 2);
    assert_eq!(
        c.answering(&format!("127.0.0.1:{port}"), "/", "v1", 20)
            .len(),
        2
    );
    let logs = c.server.ok(&["logs", "--app", "shop", "web"]);
    assert!(logs.contains("listening on port 8080"), "{logs}");
    c.server.ok(&["rm", "--app", "shop"]);
}

/// Scale up and down without restarting the survivors; a killed replica is replaced, counted
/// as a restart, and serves again.
fn scale_and_heal(start: Start) {
    let Some(c) = Case::new("suite-scale", start) else {
        return;
    };
    c.apply("shop", &c.web("v1", 2, None));
    let before = c.ids("shop", "web");
    c.server.ok(&["scale", "--app", "shop", "web=3"]);
    let after = if c.traffic() {
        c.ids("shop", "web")
    } else {
        // Swarm starts the third task after scale returns (Berth does not wait on its tasks
        // for a scale).
        wait_for(Duration::from_secs(30), "three replicas", || {
            let ids = c.ids("shop", "web");
            (ids.len() == 3).then_some(ids)
        })
    };
    assert_eq!(after.len(), 3);
    assert!(before.is_subset(&after), "scaling up restarted {before:?}");
    if c.traffic() {
        assert_eq!(c.answering(&c.server.gateway, "/", "v1", 30).len(), 3);
    }

    c.server.ok(&["scale", "--app", "shop", "web=1"]);
    wait_for(Duration::from_secs(30), "scaled down to 1", || {
        (c.count("replica") == 1 && c.ids("shop", "web").len() == 1).then_some(())
    });
    let survivor = c.ids("shop", "web");
    assert!(
        survivor.is_subset(&after),
        "scaling down restarted {survivor:?}"
    );

    let victim = survivor.into_iter().next().unwrap();
    c.kill(&victim);
    if !c.traffic() {
        // Swarm replaces the task: a new one, in the same slot, runs.
        wait_for(Duration::from_secs(60), "a new task runs", || {
            let ps = c.server.ps("shop");
            let ok = ps.len() == 1
                && ps[0]["state"] == "running"
                && ps[0]["container_id"] != victim.as_str()
                && ps[0]["slot"] == 0;
            ok.then_some(())
        });
        c.server.ok(&["rm", "--app", "shop"]);
        return;
    }
    wait_for(Duration::from_secs(20), "healed and serving", || {
        let ps = c.server.ps("shop");
        let ok = ps.len() == 1
            && ps[0]["health"] == "healthy"
            && ps[0]["restarts"].as_u64().unwrap_or(0) >= 1
            && c.server.get("/").is_ok_and(|(code, _)| code == 200);
        ok.then_some(())
    });
    c.server.ok(&["rm", "--app", "shop"]);
}

/// A new version replaces every replica (nothing else runs afterwards), and a rollback brings
/// the old one back.
fn rolling_update_and_rollback(start: Start) {
    let Some(c) = Case::new("suite-roll", start) else {
        return;
    };
    c.apply("shop", &c.web("v1", 2, None));
    let v1 = c.ids("shop", "web");
    let out = c.apply("shop", &c.web("v2", 2, None));
    assert!(out.contains("converged"), "{out}");
    let v2 = c.ids("shop", "web");
    assert_eq!(v2.len(), 2);
    assert!(v1.is_disjoint(&v2), "{v1:?} survived the update");
    if c.traffic() {
        assert_eq!(c.answering(&c.server.gateway, "/", "v2", 20).len(), 2);
    } else {
        let ps = c.server.ps("shop");
        assert!(ps.iter().all(|i| i["revision"] == 2), "{ps:?}");
    }

    c.server.ok(&["rollback", "--app", "shop", "--to", "1"]);
    wait_for(Duration::from_secs(60), "rolled back", || {
        let ps = c.server.ps("shop");
        (ps.len() == 2
            && ps.iter().all(|i| {
                i["revision"] == 3
                    && i["state"] == "running"
                    && (!c.traffic() || i["health"] == "healthy")
            }))
        .then_some(())
    });
    if c.traffic() {
        assert_eq!(c.answering(&c.server.gateway, "/", "v1", 20).len(), 2);
    }
    c.server.ok(&["rm", "--app", "shop"]);
}

/// `depends_on`: a service is created only after its job completed successfully and its
/// dependency runs and is healthy.
fn depends_on_orders_start_up(start: Start) {
    let Some(c) = Case::new("suite-deps", start) else {
        return;
    };
    let image = &c.image;
    c.apply(
        "deps",
        &format!(
            r#"
services:
  migrate:
    image: {image}
    restart: "no"
    environment: {{ EXIT_CODE: "0", RUN_MS: "1500" }}
  db:
    image: {image}
    environment: {{ VERSION: db, STARTUP_DELAY_MS: "1500" }}
    expose: ["8080"]
    x-berth:
      health: {{ http: /healthz, interval: 200ms }}
  web:
    image: {image}
    expose: ["8080"]
    depends_on:
      migrate: {{ condition: service_completed_successfully }}
      db: {{ condition: service_healthy }}
"#
        ),
    );
    let one = |svc: &str| c.ids("deps", svc).into_iter().next().unwrap();
    let (migrate, db, web) = (one("migrate"), one("db"), one("web"));
    let time = |id: &str, format: &str| {
        let t = Case::inspect(id, format);
        time::OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|e| panic!("{t}: {e}"))
    };
    let web_created = time(&web, "{{.Created}}");
    let migrated = time(&migrate, "{{.State.FinishedAt}}");
    let db_started = time(&db, "{{.State.StartedAt}}");
    assert!(
        web_created >= migrated,
        "web {web_created} before the job ended {migrated}"
    );
    // db listens 1.5 s after it starts: healthy no sooner.
    assert!(
        web_created >= db_started + Duration::from_millis(1_500),
        "web {web_created} before db could be healthy (started {db_started})"
    );
    c.server.ok(&["rm", "--app", "deps"]);
}

/// `rm --volumes` leaves nothing of the application, and its routes are gone.
fn rm_leaves_nothing(start: Start) {
    let Some(c) = Case::new("suite-rm", start) else {
        return;
    };
    c.apply("shop", &c.web("v1", 2, None));
    assert_eq!(c.count("replica"), 2);
    c.server.ok(&["rm", "--app", "shop", "--volumes"]);
    if c.traffic() {
        assert_eq!(c.count("container"), 0);
        assert_eq!(c.count("network"), 0);
        let (code, body) = c.server.get("/").unwrap();
        assert_eq!(code, 404, "{body}");
    } else {
        // rm returns once the service is removed; Swarm stops its tasks after.
        wait_for(Duration::from_secs(60), "no task or network left", || {
            (c.count("container") == 0 && c.count("network") == 0).then_some(())
        });
    }
    let ps = c.server.cli(&["ps", "--app", "shop"]);
    assert!(!ps.status.success(), "the application is still listed");
    assert!(
        String::from_utf8_lossy(&ps.stderr).contains("app_not_found"),
        "{}",
        String::from_utf8_lossy(&ps.stderr)
    );
}

/// Every case of the suite as a test of the runtime `$start` constructs. Cases after the runtime's constructor run only where named (all take a `Start`).
macro_rules! behaviour_suite {
    ($runtime:ident, $start:expr $(, $extra:ident)*) => {
        mod $runtime {
            use super::*;
            #[test]
            fn deploy_ps_routes_ports_and_logs() {
                super::deploy_ps_routes_ports_and_logs($start);
            }
            #[test]
            fn scale_and_heal() {
                super::scale_and_heal($start);
            }
            #[test]
            fn rolling_update_and_rollback() {
                super::rolling_update_and_rollback($start);
            }
$(
            #[test]
            fn $extra() {
                super::$extra($start);
            }
)*
            #[test]
            fn rm_leaves_nothing() {
                super::rm_leaves_nothing($start);
            }
        }
    };
}

behaviour_suite!(local_docker, local, depends_on_orders_start_up);
// Not `depends_on_orders_start_up`: it reads the containers' times on the local engine.
behaviour_suite!(swarm_lab, swarm);
