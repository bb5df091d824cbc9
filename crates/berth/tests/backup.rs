//! End-to-end with the real Docker engine: `berth admin backup` while the server keeps taking
//! writes, the server killed, `berth server --restore` into a fresh data directory: the
//! application, its revisions, the issuers, a service built from source and the signing keys are
//! back (a gateway token the old server issued still passes), and the restored server
//! adopts the running replicas (same containers, routed, none created). A non-empty target and
//! an archive with `../x` are refused with one line and nothing changed.

mod common;

use berth_testkit::{testapp_image, wait_for, TestRun};
use common::*;
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const COMPOSE: &str = r#"
services:
  web:
    image: IMAGE
    environment:
      VERSION: v1
    expose: ["8080"]
    deploy:
      replicas: 2
    x-berth:
      route: { path_prefix: /, auth: jwt }
      health: { http: /healthz, interval: 500ms }
"#;

fn json(server: &Server, args: &[&str]) -> serde_json::Value {
    let out = server.ok(args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

fn kids(server: &Server) -> BTreeSet<String> {
    let (code, body) = berth_testkit::http_get(
        &server.api,
        "/.well-known/jwks.json",
        None,
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

fn instance(server: &Server) -> String {
    let (_, body) =
        berth_testkit::http_get(&server.api, "/api/v1/health", None, Duration::from_secs(5))
            .unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["instance"].as_str().unwrap().to_string()
}

/// Replica container ids of this run, all states (network holders left out: counted apart).
fn container_ids(run: &TestRun) -> BTreeSet<String> {
    replica_ids(true, &[run.label_filter()])
        .into_iter()
        .collect()
}

fn running_ids(server: &Server) -> BTreeSet<String> {
    server
        .ps("shop")
        .iter()
        .filter(|i| i["state"] == "running")
        .map(|i| i["container_id"].as_str().unwrap().to_string())
        .collect()
}

/// `berth server --data-dir DIR --restore FILE` that must fail at once: its stderr.
fn refused_restore(data_dir: &Path, file: &Path) -> String {
    let stderr = tempfile::NamedTempFile::new().unwrap();
    let mut child = std::process::Command::new(bin())
        .arg("server")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--restore")
        .arg(file)
        .args(["--api-listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--gateway-listen", &format!("127.0.0.1:{}", free_port())])
        .stdout(std::process::Stdio::null())
        .stderr(stderr.reopen().unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the restore into {} was not refused: the server started",
                data_dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let err = std::fs::read_to_string(stderr.path()).unwrap();
    assert!(!status.success(), "the restore was not refused: {err}");
    assert_eq!(err.trim().lines().count(), 1, "not one line: {err}");
    err
}

/// A writer's call: when it started and ended, and whether it succeeded.
type Call = (Instant, Instant, Result<(), String>);

#[test]
fn backup_under_writes_then_restore_adopts_the_running_containers() {
    let run = TestRun::new("backup");
    let image = testapp_image(&run);
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let server = Server::start(&run, &data);

    // State worth restoring: an application with three revisions, an issuer, two signing keys.
    let file = compose(
        work.path(),
        "compose.yaml",
        &COMPOSE.replace("IMAGE", &image),
    );
    server.ok(&["apply", "-f", file.to_str().unwrap(), "--app", "shop"]);
    server.ok(&["scale", "--app", "shop", "web=3"]);
    server.ok(&["scale", "--app", "shop", "web=2"]);
    let secret = work.path().join("hs256");
    std::fs::write(&secret, "a-shared-secret-of-at-least-32-bytes!!").unwrap();
    server.ok(&[
        "issuer",
        "add",
        "corp",
        "--issuer",
        "https://id.corp.example",
        "--hs256-secret-file",
        secret.to_str().unwrap(),
    ]);
    server.ok(&["token", "rotate-key"]);
    // Identity: a user with a password and an API token, and the audit rows of their making.
    let admin = server.token();
    let made = call(
        &server.api,
        "POST",
        "/api/v1/users",
        Some(&admin),
        Some(serde_json::json!({"name": "dana", "password": "dana-password-1"})),
    );
    assert_eq!(made.0, 201, "{:?}", made.2);
    let (status, _, session) = call(
        &server.api,
        "POST",
        "/api/v1/login",
        None,
        Some(serde_json::json!({"user": "dana", "password": "dana-password-1"})),
    );
    assert_eq!(status, 200);
    let (status, _, created) = call(
        &server.api,
        "POST",
        "/api/v1/api-tokens",
        session["token"].as_str(),
        Some(serde_json::json!({"name": "ci"})),
    );
    assert_eq!(status, 201, "{created}");
    let dana_token = created["token"].as_str().unwrap().to_string();
    // A gateway token signed by the current key: the restored gateway must accept it.
    let token = server
        .ok(&["token", "issue", "--subject", "alice", "--audience", "shop"])
        .trim()
        .to_string();
    // A service built from source (registered; no build needed).
    let repo = work.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    std::fs::write(repo.join("Dockerfile"), "FROM scratch\n").unwrap();
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["add", "."],
        &[
            "-c",
            "user.name=Ada",
            "-c",
            "user.email=ada@example.com",
            "commit",
            "-q",
            "-m",
            "first",
        ],
    ] {
        let out = std::process::Command::new("git")
            .current_dir(&repo)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    server.ok(&["service", "create", "api", "--git", repo.to_str().unwrap()]);
    let keys_before = kids(&server);
    assert_eq!(keys_before.len(), 2, "{keys_before:?}");
    let history_before = json(&server, &["history", "--app", "shop", "-o", "json"]);
    let revisions_before = history_before.as_array().unwrap().len();
    assert_eq!(revisions_before, 3, "{history_before}");
    let id_before = instance(&server);
    let running_before = wait_for(Duration::from_secs(30), "2 running replicas", || {
        Some(running_ids(&server)).filter(|ids| ids.len() == 2)
    });
    let all_before = wait_for(
        Duration::from_secs(30),
        "the scaled-down replica is removed",
        || Some(container_ids(&run)).filter(|ids| *ids == running_before),
    );

    // Writers: four threads adding and removing issuers for as long as backups are made.
    let stop = Arc::new(AtomicBool::new(false));
    let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
    let server = Arc::new(server);
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (stop, calls, server) = (stop.clone(), calls.clone(), server.clone());
            let secret = secret.clone();
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let name = format!("churn-{w}-{i}");
                    let add = [
                        "issuer",
                        "add",
                        &name,
                        "--issuer",
                        "https://churn.example",
                        "--hs256-secret-file",
                        secret.to_str().unwrap(),
                    ];
                    for args in [&add[..], &["issuer", "rm", &name][..]] {
                        let t = Instant::now();
                        let out = server.cli(args);
                        let result = if out.status.success() {
                            Ok(())
                        } else {
                            Err(format!(
                                "{args:?}: {}",
                                String::from_utf8_lossy(&out.stderr)
                            ))
                        };
                        calls.lock().unwrap().push((t, Instant::now(), result));
                    }
                    i += 1;
                }
            })
        })
        .collect();

    // Backups until at least 10 writes overlapped one of them (it is the one restored below);
    // every backup succeeds.
    let backup = work.path().join("out/berth.tar");
    std::fs::create_dir(work.path().join("out")).unwrap();
    let mut overlapping = 0;
    let mut backups = 0;
    while overlapping < 10 {
        assert!(
            backups < 100,
            "no backup of {backups} was overlapped by 10 writes"
        );
        std::thread::sleep(Duration::from_millis(50));
        let t = Instant::now();
        let out = server.ok(&["admin", "backup", "-o", backup.to_str().unwrap()]);
        let end = Instant::now();
        backups += 1;
        assert!(
            out.starts_with("backup written to ") && out.trim().lines().count() == 1,
            "{out}"
        );
        overlapping = calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(s, e, r)| r.is_ok() && *s < end && *e > t)
            .count();
    }
    eprintln!("{backups} backup(s); {overlapping} writes overlapped the last");
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let calls = calls.lock().unwrap();
    let failed: Vec<_> = calls.iter().filter_map(|c| c.2.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "writes failed during backups: {failed:?}"
    );
    assert!(calls.len() >= 10, "{} writes", calls.len());
    let mode = std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the backup file is {mode:o}");
    // Nothing but the backup in its directory (the temporary file was renamed).
    assert_eq!(
        std::fs::read_dir(work.path().join("out")).unwrap().count(),
        1
    );
    // `-o -` writes the tar to stdout, its first entry the manifest.
    let out = server.cli(&["admin", "backup", "-o", "-"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.starts_with(b"backup.json\0"));

    // The old server dies; its replicas keep running.
    let mut server = Arc::try_unwrap(server).unwrap_or_else(|_| panic!("server still shared"));
    let (api, gateway) = (server.api.clone(), server.gateway.clone());
    server.kill9();

    // Refused: a non-empty directory (left as it was), an archive that climbs out.
    let err = refused_restore(&data, &backup);
    assert!(err.contains("not empty"), "{err}");
    assert!(data.join("berth.db").exists());
    let evil = work.path().join("evil.tar");
    {
        let mut b = tar::Builder::new(std::fs::File::create(&evil).unwrap());
        let manifest = br#"{"format":1,"berth_version":"0","created_at":"x","instance":"x","schema_version":1}"#;
        for (name, body) in [("backup.json", &manifest[..]), ("../x", b"escaped")] {
            let mut h = tar::Header::new_gnu();
            h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_size(body.len() as u64);
            h.set_mode(0o600);
            h.set_cksum();
            b.append(&h, body).unwrap();
        }
        b.finish().unwrap();
    }
    let target = work.path().join("evil/data");
    let err = refused_restore(&target, &evil);
    assert!(err.contains("\"../x\""), "{err}");
    assert!(
        !target.exists() && !work.path().join("evil/x").exists() && !work.path().join("x").exists()
    );

    // Restore into a fresh directory, on the old addresses: the server starts from the backup.
    let restored_dir = work.path().join("restored");
    let log = work.path().join("restored.log");
    let restored = Server::start_logging_to(
        &run,
        &restored_dir,
        &log,
        &api,
        &gateway,
        &["--restore", backup.to_str().unwrap()],
    );
    assert_eq!(instance(&restored), id_before, "the instance id changed");
    // Users, their API tokens and the audit log came along; the local token is the new one.
    let (status, _, me) = call(
        &restored.api,
        "GET",
        "/api/v1/whoami",
        Some(&dana_token),
        None,
    );
    assert_eq!((status, me["user"].as_str()), (200, Some("dana")), "{me}");
    let (status, _, _) = call(
        &restored.api,
        "POST",
        "/api/v1/login",
        None,
        Some(serde_json::json!({"user": "dana", "password": "dana-password-1"})),
    );
    assert_eq!(status, 200, "dana cannot log in to the restored server");
    let (status, _, audit) = call(
        &restored.api,
        "GET",
        "/api/v1/audit?user=dana&limit=1000",
        Some(&restored.token()),
        None,
    );
    assert_eq!(status, 200);
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(
        actions.contains(&"login") && actions.contains(&"POST /api/v1/api-tokens"),
        "audit rows from before the backup: {actions:?}"
    );
    assert_ne!(restored.token(), admin, "admin.token is written anew");
    assert!(!restored_dir.join("out").exists());
    let key_mode = std::fs::metadata(restored_dir.join("keys"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o700);
    assert_eq!(kids(&restored), keys_before, "the signing keys differ");
    let issuers = restored.ok(&["issuer", "ls", "-o", "json"]);
    assert!(issuers.contains("\"corp\""), "{issuers}");
    let churn = issuers.matches("churn-").count();
    assert!(churn <= 4, "more churn issuers than writers: {issuers}");
    let history = json(&restored, &["history", "--app", "shop", "-o", "json"]);
    assert_eq!(
        history.as_array().unwrap().len(),
        revisions_before,
        "{history}"
    );
    assert_eq!(history, history_before);

    // Adopted: the same two containers run, the gateway routes to them, and no container is
    // created across a few resyncs.
    let ids = wait_for(
        Duration::from_secs(30),
        "the restored server lists the replicas",
        || Some(running_ids(&restored)).filter(|ids| ids.len() == 2),
    );
    assert_eq!(
        ids, running_before,
        "the replicas are not the same containers"
    );
    let bearer = format!("Bearer {token}");
    let hosts = wait_for(
        Duration::from_secs(20),
        "the gateway routes to both replicas",
        || {
            let mut hosts = BTreeSet::new();
            for _ in 0..20 {
                match raw_request(
                    &restored.gateway,
                    "GET",
                    "/",
                    &[("Authorization", &bearer)],
                    "",
                ) {
                    (200, _, body) => {
                        hosts.insert(
                            body.split_whitespace()
                                .nth(1)
                                .unwrap_or_default()
                                .to_string(),
                        );
                    }
                    _ => return None,
                }
            }
            Some(hosts).filter(|h| h.len() == 2)
        },
    );
    for h in &hosts {
        assert!(
            running_before.iter().any(|id| id.starts_with(h.as_str())),
            "{h} is not one of {running_before:?}"
        );
    }
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        container_ids(&run),
        all_before,
        "containers were created or removed"
    );
    assert_eq!(
        docker_count(&run, "holder"),
        all_before.len(),
        "network holders"
    );
    assert_eq!(running_ids(&restored), running_before);
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        log.contains("data directory restored from a backup"),
        "{log}"
    );
}
