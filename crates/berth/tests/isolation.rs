//! End-to-end: applications do not share Docker names or networks, and one engine holds more
//! application networks than Docker's default address pools.

mod common;

use berth_testkit::{testapp_image, wait_for, TestRun};
use common::*;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

fn converged(server: &Server, app: &str) -> bool {
    berth_testkit::http_get(
        &server.api,
        &format!("/api/v1/apps/{app}"),
        None,
        Duration::from_secs(5),
    )
    .ok()
    .filter(|(c, _)| *c == 200)
    .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
    .is_some_and(|v| v["converged"] == true)
}

/// IDs a `docker ... -q` listing (`ps -aq`, `network ls -q`) gives for this run's label.
fn labelled_ids(run: &TestRun, list: &[&str]) -> Vec<String> {
    let filter = format!("label=berth.test={}", run.id);
    let out = Command::new("docker")
        .args(list)
        .args(["--filter", &filter])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn docker_json(args: &[&str]) -> serde_json::Value {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// App `a-b` with service `c`, and app `a` with service `b-c` and a network `b-default`: under
/// the old `-`-joined names both services got one container name (app `a` never converged) and
/// app `a`'s `b-default` network was app `a-b`'s default network.
#[test]
fn look_alike_applications_get_their_own_containers_and_networks() {
    let run = TestRun::new("isolation-names");
    let image = testapp_image(&run);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&run, dir.path());
    let ab = compose(
        dir.path(),
        "ab.yaml",
        &format!("services:\n  c:\n    image: {image}\n    expose: [\"8080\"]\n"),
    );
    let a = compose(
        dir.path(),
        "a.yaml",
        &format!(
            "services:\n  b-c:\n    image: {image}\n    expose: [\"8080\"]\n  x:\n    image: {image}\n    networks: [b-default]\nnetworks:\n  b-default: {{}}\n"
        ),
    );
    server.ok(&[
        "apply",
        "--detach",
        "-f",
        ab.to_str().unwrap(),
        "--app",
        "a-b",
    ]);
    server.ok(&["apply", "--detach", "-f", a.to_str().unwrap(), "--app", "a"]);
    wait_for(
        Duration::from_secs(60),
        "both applications converge",
        || (converged(&server, "a-b") && converged(&server, "a")).then_some(()),
    );

    // Three containers, three names, each in its own application.
    // Replicas only: their network holders (`berth.role=holder`) carry the same labels.
    let ids: Vec<String> = labelled_ids(
        &run,
        &["ps", "-a", "--format", "{{.ID}} {{.Label \"berth.role\"}}"],
    )
    .into_iter()
    .filter(|l| !l.ends_with(" holder"))
    .map(|l| l.trim().to_string())
    .collect();
    assert_eq!(ids.len(), 3, "{:?}", containers(&run));
    assert_eq!(
        docker_count(&run, "holder"),
        3,
        "one network holder per replica"
    );
    let mut args = vec!["inspect"];
    args.extend(ids.iter().map(String::as_str));
    let inspected = docker_json(&args);
    let mut names = Vec::new();
    for c in inspected.as_array().unwrap() {
        let app = c["Config"]["Labels"]["berth.app"]
            .as_str()
            .unwrap()
            .to_string();
        names.push(c["Name"].as_str().unwrap().to_string());
        // Every network a container is on (through its network holder) carries its own
        // application's label.
        let holder = docker_json(&["inspect", &network_container(c["Id"].as_str().unwrap())]);
        let nets = holder[0]["NetworkSettings"]["Networks"]
            .as_object()
            .unwrap();
        assert!(!nets.is_empty(), "{}", c["Name"]);
        for (net, ep) in nets {
            let n = docker_json(&["network", "inspect", ep["NetworkID"].as_str().unwrap()]);
            let owner = n[0]["Labels"]["berth.app"].as_str().unwrap_or("");
            assert_eq!(
                owner, app,
                "container {} of app {app} is on network {net}, which belongs to {owner:?}",
                c["Name"]
            );
        }
    }
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 3, "{names:?}");

    // Two applications, three networks (a-b: default; a: default and b-default), all distinct.
    let nets: BTreeMap<String, String> = String::from_utf8_lossy(
        &Command::new("docker")
            .args([
                "network",
                "ls",
                "--filter",
                &format!("label=berth.test={}", run.id),
                "--format",
                "{{.Name}} {{.Label \"berth.app\"}}",
            ])
            .output()
            .unwrap()
            .stdout,
    )
    .lines()
    .filter_map(|l| l.split_once(' '))
    .map(|(n, a)| (n.to_string(), a.to_string()))
    .collect();
    assert_eq!(nets.len(), 3, "{nets:?}");

    server.ok(&["rm", "--app", "a"]);
    server.ok(&["rm", "--app", "a-b"]);
    assert_eq!(docker_count(&run, "container"), 0);
    assert_eq!(docker_count(&run, "network"), 0);
}

/// Docker's default address pools hold about 30 bridge networks; Berth gives its networks
/// subnets from its own pool, so 40 applications (one network each) all converge. Before, the
/// 31st stayed pending while the server logged "could not find an available, non-overlapping
/// IPv4 address pool".
#[test]
fn more_applications_than_dockers_default_pools_hold_all_converge() {
    const APPS: usize = 40;
    let run = TestRun::new("isolation-pool");
    let image = testapp_image(&run);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&run, dir.path());
    let file = compose(
        dir.path(),
        "one.yaml",
        &format!("services:\n  web:\n    image: {image}\n    expose: [\"8080\"]\n"),
    );
    let f = file.to_str().unwrap();
    let apps: Vec<String> = (0..APPS).map(|i| format!("many-{i}")).collect();
    for app in &apps {
        server.ok(&["apply", "--detach", "-f", f, "--app", app]);
    }
    wait_for(
        Duration::from_secs(240),
        "every application converges",
        || apps.iter().all(|a| converged(&server, a)).then_some(()),
    );

    // One network per application, each on its own subnet from Berth's pool (10.200.0.0/14).
    let ids = labelled_ids(&run, &["network", "ls", "-q"]);
    assert_eq!(ids.len(), APPS);
    let mut args = vec!["network", "inspect"];
    args.extend(ids.iter().map(String::as_str));
    let mut subnets: Vec<String> = docker_json(&args)
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            n["IPAM"]["Config"][0]["Subnet"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    for s in &subnets {
        let second: u8 = s.split('.').nth(1).unwrap().parse().unwrap();
        assert!(
            s.starts_with("10.") && (200..204).contains(&second) && s.ends_with("/24"),
            "{s} is not from the pool"
        );
    }
    subnets.sort();
    subnets.dedup();
    assert_eq!(subnets.len(), APPS, "a subnet was handed out twice");

    for app in &apps {
        server.ok(&["rm", "--detach", "--app", app]);
    }
    wait_for(
        Duration::from_secs(120),
        "every application removed",
        || {
            (docker_count(&run, "container") == 0 && docker_count(&run, "network") == 0)
                .then_some(())
        },
    );
}

/// Bad pool flags stop the server at once with a one-line error.
#[test]
fn bad_network_pool_flags_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (extra, says) in [
        (["--network-pool", "10.200.0.0"], "--network-pool"),
        (["--network-pool", "10.200.1.0/14"], "--network-pool"),
        (["--network-prefix", "12"], "shorter than the pool's /14"),
        (["--network-prefix", "30"], "at most 29"),
    ] {
        let out = Command::new(bin())
            .args(["server", "--api-listen"])
            .arg(format!("127.0.0.1:{}", free_port()))
            .arg("--gateway-listen")
            .arg(format!("127.0.0.1:{}", free_port()))
            .arg("--data-dir")
            .arg(dir.path())
            .args(extra)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{extra:?} was accepted");
        assert!(err.contains(says), "{extra:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{extra:?}: {err}");
    }
}

/// A server upgraded from the `-`-joined names keeps using the network and volume it made under
/// them (found by labels): the application is not split over two networks and its data stays.
#[test]
fn networks_and_volumes_under_the_old_names_are_kept() {
    let run = TestRun::new("isolation-upgrade");
    let image = testapp_image(&run);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&run, dir.path());
    let (_, health) =
        berth_testkit::http_get(&server.api, "/api/v1/health", None, Duration::from_secs(5))
            .unwrap();
    let instance = serde_json::from_str::<serde_json::Value>(&health).unwrap()["instance"]
        .as_str()
        .unwrap()
        .to_string();
    let short = &instance[..6];
    let old_net = format!("berth-{short}-legacy-app-default");
    let old_vol = format!("berth-{short}-legacy-app-data");
    let test_label = format!("berth.test={}", run.id);
    let own = [
        test_label.clone(),
        format!("berth.instance={instance}"),
        "berth.app=legacy-app".to_string(),
    ];
    let mut args: Vec<String> = vec!["network".into(), "create".into()];
    for l in own
        .iter()
        .chain(std::iter::once(&"berth.network=default".to_string()))
    {
        args.extend(["--label".into(), l.clone()]);
    }
    args.push(old_net.clone());
    assert!(Command::new("docker")
        .args(&args)
        .status()
        .unwrap()
        .success());
    let mut args: Vec<String> = vec!["volume".into(), "create".into()];
    for l in own
        .iter()
        .chain(std::iter::once(&"berth.volume=data".to_string()))
    {
        args.extend(["--label".into(), l.clone()]);
    }
    args.push(old_vol.clone());
    assert!(Command::new("docker")
        .args(&args)
        .status()
        .unwrap()
        .success());

    let file = compose(
        dir.path(),
        "legacy.yaml",
        &format!(
            "services:\n  web:\n    image: {image}\n    expose: [\"8080\"]\n    volumes: [\"data:/data\"]\nvolumes:\n  data: {{}}\n"
        ),
    );
    server.ok(&["apply", "-f", file.to_str().unwrap(), "--app", "legacy-app"]);
    let ps = server.ps("legacy-app");
    assert_eq!(ps.len(), 1, "{ps:?}");
    let c = docker_json(&["inspect", ps[0]["container_id"].as_str().unwrap()]);
    // The replica's network is its network holder's (docs/runtime.md).
    let h = docker_json(&[
        "inspect",
        &network_container(ps[0]["container_id"].as_str().unwrap()),
    ]);
    let nets: Vec<&String> = h[0]["NetworkSettings"]["Networks"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(nets, vec![&old_net]);
    let mounts: Vec<&str> = c[0]["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["Name"].as_str())
        .collect();
    assert_eq!(mounts, vec![old_vol.as_str()]);
    assert_eq!(docker_count(&run, "network"), 1, "no second network");
    assert_eq!(docker_count(&run, "volume"), 1, "no second volume");

    server.ok(&["rm", "--app", "legacy-app", "--volumes"]);
    assert_eq!(docker_count(&run, "network"), 0);
    assert_eq!(docker_count(&run, "volume"), 0);
}

/// A network of this server's for an application that no longer exists (a create step still in
/// flight when the application was removed made it after the teardown) is removed by the next
/// resync; a network with another server's instance label is left alone.
#[test]
fn a_network_left_by_a_removed_application_is_swept_by_the_resync() {
    let run = TestRun::new("isolation-sweep");
    let dir = tempfile::tempdir().unwrap();
    let api = format!("127.0.0.1:{}", free_port());
    let gateway = format!("127.0.0.1:{}", free_port());
    let server = Server::start_with_env(
        &run,
        dir.path(),
        &api,
        &gateway,
        &["--resync-secs", "1"],
        &[],
    );
    let (_, health) =
        berth_testkit::http_get(&server.api, "/api/v1/health", None, Duration::from_secs(5))
            .unwrap();
    let instance = serde_json::from_str::<serde_json::Value>(&health).unwrap()["instance"]
        .as_str()
        .unwrap()
        .to_string();
    let make = |name: &str, instance: &str| {
        let out = Command::new("docker")
            .args(["network", "create"])
            .args(["--label", &format!("berth.test={}", run.id)])
            .args(["--label", &format!("berth.instance={instance}")])
            .args(["--label", "berth.app=gone-app"])
            .args(["--label", "berth.network=default"])
            .arg(name)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    };
    let ours = format!("berth-sweep-ours-{}", &run.id[run.id.len() - 8..]);
    let theirs = format!("berth-sweep-theirs-{}", &run.id[run.id.len() - 8..]);
    make(&ours, &instance);
    make(&theirs, "another-server");
    let exists = |name: &str| {
        Command::new("docker")
            .args(["network", "inspect", name])
            .output()
            .unwrap()
            .status
            .success()
    };
    wait_for(Duration::from_secs(20), "the orphan network swept", || {
        (!exists(&ours)).then_some(())
    });
    assert!(exists(&theirs), "another server's network was touched");
    assert!(!server.ok(&["apps"]).contains("gone-app"));
}
