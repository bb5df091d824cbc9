//! The runtime behaviour suite: what every runtime must do for Berth, written once against the
//! server's public surface (CLI, API, gateway, published ports) and run per runtime
//! (docs/runtime.md). Each case gets a server from the runtime's constructor, so a second
//! runtime (Swarm mode) runs the same cases with one more `behaviour_suite!` line.
//!
//! Cases: deploy, ps, routes, published ports, logs; scale up and down; heal a killed replica;
//! rolling update and rollback; `depends_on` ordering; rm leaving nothing.
//!
//! `swarm_lab` runs them on a Swarm lab (docs/swarm.md) as far as the Swarm runtime goes today:
//! routes and published ports through Berth's gateway on the manager node (reached through the
//! lab's hub), Berth's probes run by that gateway, `berth logs` (`-f` too) of each task read
//! through the manager from its node; not Berth's restart counts (Swarm replaces a task), which
//! [`Case::local`] keeps to the local runtime, nor `depends_on` (it reads containers' times on the
//! local engine).

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
    // The gateway on the manager node calls the API at the hub's address.
    let api = format!("127.0.0.1:{}", free_port());
    let advertised = format!(
        "http://{}",
        lab.relay_from_hub(api.parse().unwrap()).unwrap()
    );
    let server = Server::start_with_env(
        run,
        dir,
        &api,
        &format!("127.0.0.1:{}", free_port()),
        &[
            "--runtime",
            "swarm",
            "--advertise-url",
            &advertised,
            "--node-gateway-port",
            &NODE_GATEWAY_PORT.to_string(),
        ],
        &[
            ("DOCKER_HOST", manager.as_str()),
            ("BERTH_ADMIN_PASSWORD", TEST_ADMIN_PASSWORD),
        ],
    );
    Some((server, Some(lab)))
}

/// The port of Berth's gateway on a lab's manager node.
const NODE_GATEWAY_PORT: u16 = 7480;

/// One server of the runtime under test, with the test image, and an application's file.
struct Case {
    run: TestRun,
    image: String,
    dir: tempfile::TempDir,
    server: Server,
    /// Dropped after the server: the Swarm lab it drives.
    lab: Option<Lab>,
    /// Where the case's client reaches the routes: the server's gateway, or the one on the
    /// lab's manager node.
    gateway: String,
}

impl Case {
    /// A case, or `None` when the runtime cannot run on this machine (a Swarm lab needs root
    /// and `ip netns`).
    fn new(name: &str, start: Start) -> Option<Case> {
        let run = TestRun::new(name);
        let image = testapp_image(&run);
        let dir = tempfile::tempdir().unwrap();
        let (server, lab) = start(&run, dir.path(), &image)?;
        let gateway = match &lab {
            None => server.gateway.clone(),
            Some(lab) => lab
                .relay_to_hub(
                    format!("{}:{NODE_GATEWAY_PORT}", lab.addr(1))
                        .parse()
                        .unwrap(),
                )
                .unwrap()
                .to_string(),
        };
        Some(Case {
            run,
            image,
            dir,
            server,
            lab,
            gateway,
        })
    }

    /// The local runtime (no lab): for what differs on Swarm, e.g. Berth's restart counts
    /// (Swarm replaces a task rather than restart it).
    fn local(&self) -> bool {
        self.lab.is_none()
    }

    /// Where a published port is reached: the host's loopback, or the manager node (its
    /// gateway's port forwarder).
    fn published(&self, port: u16) -> String {
        match &self.lab {
            None => format!("127.0.0.1:{port}"),
            Some(lab) => lab
                .relay_to_hub(format!("{}:{port}", lab.addr(1)).parse().unwrap())
                .unwrap()
                .to_string(),
        }
    }

    /// `GET path` through the route.
    fn get(&self, path: &str) -> Result<(u16, String), String> {
        berth_testkit::http_get(&self.gateway, path, None, Duration::from_secs(5))
    }

    /// The `web` service of [`web`], as this runtime can carry it: on Swarm a published port
    /// is a fixed port on every address of the nodes with a gateway.
    fn web(&self, version: &str, replicas: u32, port: Option<u16>) -> String {
        web(&self.image, version, replicas, port, self.local())
    }

    /// Until `addr` answers 200 with `version` (a gateway on a node may be made again to
    /// publish a port: its routes pause meanwhile).
    fn until_answering(&self, addr: &str, version: &str) {
        wait_for(Duration::from_secs(60), &format!("{addr} answers"), || {
            berth_testkit::http_get(addr, "/", None, Duration::from_secs(5))
                .ok()
                .filter(|(code, body)| *code == 200 && body.starts_with(&format!("{version} ")))
        });
    }

    /// The run's containers (on every node of a lab: running ones, as Swarm keeps the
    /// containers of ended tasks for a while), or its networks; `replica`: containers that are
    /// not network holders (a lab has none).
    fn count(&self, kind: &str) -> usize {
        let Some(lab) = &self.lab else {
            return docker_count(&self.run, kind);
        };
        let filter = format!("label=berth.test={}", self.run.id);
        // Each row names its `berth.role`: Berth's own gateway and port relay on a node
        // (docs/swarm.md) are not the application's.
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
                    .filter(|l| {
                        let l = l.trim_end();
                        !l.trim().is_empty()
                            && !l.ends_with(" gateway")
                            && !l.ends_with(" port-relay")
                    })
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

fn web(image: &str, version: &str, replicas: u32, port: Option<u16>, local: bool) -> String {
    let host = if local { "127.0.0.1:" } else { "" };
    let ports = port.map_or(String::new(), |p| {
        format!("    ports: [\"{host}{p}:8080\"]\n")
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
    for i in &ps {
        assert_eq!(i["health"], "healthy", "{i}");
        assert!(i["address"].as_str().unwrap().ends_with(":8080"), "{i}");
    }
    let published = c.published(port);
    c.until_answering(&published, "v1");
    c.until_answering(&c.gateway, "v1");
    assert_eq!(c.answering(&c.gateway, "/", "v1", 20).len(), 2);
    assert_eq!(c.answering(&published, "/", "v1", 20).len(), 2);
    // Logs: every replica's (on Swarm each task's, read through the manager from its node),
    // each line prefixed with its slot; `--tail` and `--timestamps` reach the engine.
    let logs = c.server.ok(&["logs", "--app", "shop", "web"]);
    for slot in 0..2 {
        assert!(
            logs.lines()
                .any(|l| l.starts_with(&format!("web.{slot} | "))
                    && l.ends_with("berth-testapp v1 listening on port 8080")),
            "slot {slot}: {logs}"
        );
    }
    let last = c.server.ok(&[
        "logs",
        "--app",
        "shop",
        "web",
        "--tail",
        "1",
        "--timestamps",
    ]);
    assert_eq!(last.lines().count(), 2, "{last}");
    for l in last.lines() {
        let (_, rest) = l.split_once(" | ").unwrap_or_default();
        assert!(
            rest.starts_with("20") && rest.contains("Z berth-testapp v1 listening"),
            "{l}"
        );
    }
    follow_sees_a_new_line(&c);
    c.server.ok(&["rm", "--app", "shop"]);
}

/// `berth logs -f` streams: a line a replica writes after the request started arrives.
fn follow_sees_a_new_line(c: &Case) {
    let mut follow = std::process::Command::new(bin())
        .args(["logs", "--app", "shop", "web", "-f", "--tail", "0"])
        .env("BERTH_SERVER", format!("http://{}", c.server.api))
        .env_remove("BERTH_TOKEN")
        .env("BERTH_DATA_DIR", &c.server.data_dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The replica writes the line itself (the test app's `/write` to its own stdout), again
    // until it arrives: the first may be written before the follow request has begun.
    let marker = format!("followed-{}", c.run.id);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    let found = 'wait: loop {
        let _ = c.get(&format!("/write?path=/dev/stdout&text={marker}%0A"));
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
            let hit = line.contains(&marker);
            seen.push(line);
            if hit {
                break 'wait true;
            }
        }
        if std::time::Instant::now() > deadline {
            break false;
        }
    };
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(found, "no {marker} line while following: {seen:?}");
    assert!(
        seen.iter()
            .any(|l| l.starts_with("web.") && l.ends_with(&marker)),
        "{seen:?}"
    );
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
    let after = if c.local() {
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
    // (On Swarm the third task serves once the gateway's probe passed.)
    wait_for(Duration::from_secs(30), "three replicas answer", || {
        (c.answering(&c.gateway, "/", "v1", 30).len() == 3).then_some(())
    });

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
    if !c.local() {
        // Swarm replaces the task: a new one, in the same slot, runs, and serves once the
        // gateway's probe passed.
        wait_for(
            Duration::from_secs(60),
            "a new task runs and serves",
            || {
                let ps = c.server.ps("shop");
                let ok = ps.len() == 1
                    && ps[0]["state"] == "running"
                    && ps[0]["health"] == "healthy"
                    && ps[0]["container_id"] != victim.as_str()
                    && ps[0]["slot"] == 0
                    && c.get("/").is_ok_and(|(code, _)| code == 200);
                ok.then_some(())
            },
        );
        c.server.ok(&["rm", "--app", "shop"]);
        return;
    }
    wait_for(Duration::from_secs(20), "healed and serving", || {
        let ps = c.server.ps("shop");
        let ok = ps.len() == 1
            && ps[0]["health"] == "healthy"
            && ps[0]["restarts"].as_u64().unwrap_or(0) >= 1
            && c.get("/").is_ok_and(|(code, _)| code == 200);
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
    assert_eq!(c.answering(&c.gateway, "/", "v2", 20).len(), 2);
    let ps = c.server.ps("shop");
    assert!(ps.iter().all(|i| i["revision"] == 2), "{ps:?}");

    c.server.ok(&["rollback", "--app", "shop", "--to", "1"]);
    wait_for(Duration::from_secs(60), "rolled back", || {
        let ps = c.server.ps("shop");
        (ps.len() == 2
            && ps
                .iter()
                .all(|i| i["revision"] == 3 && i["state"] == "running" && i["health"] == "healthy"))
        .then_some(())
    });
    assert_eq!(c.answering(&c.gateway, "/", "v1", 20).len(), 2);
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
    if c.local() {
        assert_eq!(c.count("container"), 0);
        assert_eq!(c.count("network"), 0);
        let (code, body) = c.get("/").unwrap();
        assert_eq!(code, 404, "{body}");
    } else {
        // The gateway on the node applies the table without the route within moments.
        wait_for(Duration::from_secs(10), "no route any more", || {
            c.get("/").is_ok_and(|(code, _)| code == 404).then_some(())
        });
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
