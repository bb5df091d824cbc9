//! End-to-end: admission (docs/teams.md#admission) against a live server and the real Docker
//! engine. A fresh data directory grants nothing: keys that reach the host are refused with
//! 403 `admission_denied`, each named by its path, before anything is created; a grant admits
//! exactly its key; a revoked grant refuses the next revision (scale) of an admitted app; the
//! grants are the administrator's alone (CLI and API).

mod common;

use berth_testkit::{testapp_image, wait_for, TestRun};
use common::*;
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;

/// `POST /api/v1/apps/{app}/apply` of one Compose file as the local administrator.
fn apply(server: &Server, app: &str, compose: &str) -> (u16, Value) {
    let (status, _, body) = call(
        &server.api,
        "POST",
        &format!("/api/v1/apps/{app}/apply"),
        Some(&server.token()),
        Some(json!({
            "compose_files": ["compose.yaml"],
            "files": {"compose.yaml": compose},
            "project_dir": "/nonexistent/project",
        })),
    );
    (status, body)
}

fn api(server: &Server, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let (status, _, body) = call(&server.api, method, path, Some(&server.token()), body);
    (status, body)
}

/// The one running replica of `app`'s service `web`, once it runs.
fn running_web(server: &Server, app: &str) -> String {
    wait_for(Duration::from_secs(60), "web replica running", || {
        server
            .ps(app)
            .into_iter()
            .find(|i| i["service"] == "web" && i["state"] == "running")
            .and_then(|i| i["container_id"].as_str().map(str::to_string))
    })
}

fn inspect(id: &str, format: &str) -> String {
    let out = Command::new("docker")
        .args(["inspect", "-f", format, id])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Docker objects carrying `app`'s label (and this run's): containers and networks.
fn app_objects(run: &TestRun, app: &str) -> usize {
    ["ps", "network"]
        .iter()
        .map(|kind| {
            let mut args = vec![*kind];
            if *kind == "ps" {
                args.push("-a");
            } else {
                args.push("ls");
            }
            let run_label = format!("label=berth.test={}", run.id);
            let app_label = format!("label=berth.app={app}");
            args.extend(["-q", "--filter", &run_label, "--filter", &app_label]);
            let out = Command::new("docker").args(&args).output().unwrap();
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| !l.trim().is_empty())
                .count()
        })
        .sum()
}

#[test]
fn refusals_name_their_keys_and_grants_admit_exactly_their_key() {
    let run = TestRun::new("admission");
    let image = testapp_image(&run);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&run, dir.path());

    // (a) privileged + the Docker socket: refused, both named, nothing created or committed.
    let (status, body) = apply(
        &server,
        "rooted",
        &format!(
            "services:\n  web:\n    image: {image}\n    privileged: true\n    volumes: [/var/run/docker.sock:/var/run/docker.sock]\n"
        ),
    );
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("admission_denied")),
        "{body}"
    );
    let msg = body["message"].as_str().unwrap();
    assert!(msg.contains("team \"default\""), "{msg}");
    assert!(
        msg.contains("services.web.privileged (needs grant privileged)"),
        "{msg}"
    );
    assert!(
        msg.contains("services.web.volumes[0]: /var/run/docker.sock (needs grant docker_socket)"),
        "{msg}"
    );
    let (status, body) = api(&server, "GET", "/api/v1/apps/rooted/revisions", None);
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("app_not_found")),
        "{body}"
    );
    std::thread::sleep(Duration::from_secs(3)); // a reconcile pass would have acted by now
    assert_eq!(app_objects(&run, "rooted"), 0);

    // (b) cap_add:NET_ADMIN admits NET_ADMIN, which the container really gets; pid: host is
    // still refused, and only it is named.
    server.ok(&["admission", "grant", "default", "cap_add:NET_ADMIN"]);
    let caps = format!(
        "services:\n  web:\n    image: {image}\n    expose: [\"8080\"]\n    cap_add: [NET_ADMIN, CHOWN]\n"
    );
    let (status, body) = apply(&server, "caps", &caps);
    assert_eq!(status, 201, "{body}");
    let id = running_web(&server, "caps");
    let cap_add = inspect(&id, "{{json .HostConfig.CapAdd}}");
    assert!(cap_add.contains("NET_ADMIN"), "{cap_add}");
    let (status, body) = apply(&server, "caps", &format!("{caps}    pid: host\n"));
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("admission_denied")),
        "{body}"
    );
    let msg = body["message"].as_str().unwrap();
    assert!(
        msg.contains("services.web.pid: host (needs grant pid:host)"),
        "{msg}"
    );
    assert!(!msg.contains("cap_add"), "{msg}");
    let (_, history) = api(&server, "GET", "/api/v1/apps/caps/revisions", None);
    assert_eq!(history.as_array().map(Vec::len), Some(1), "{history}");

    // (c) exactly bind:/tmp/<unique>: that directory is admitted and mounted; /etc is not.
    let host_dir = tempfile::Builder::new()
        .prefix(&format!("berth-admission-{}-", run.id))
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::write(host_dir.path().join("hello.txt"), "from the host\n").unwrap();
    let host = host_dir.path().to_str().unwrap().to_string();
    server.ok(&["admission", "grant", "default", &format!("bind:{host}")]);
    let (status, body) = apply(
        &server,
        "binds",
        &format!(
            "services:\n  web:\n    image: {image}\n    expose: [\"8080\"]\n    volumes: [\"{host}:/host:ro\"]\n"
        ),
    );
    assert_eq!(status, 201, "{body}");
    let id = running_web(&server, "binds");
    let mounts = inspect(&id, "{{json .Mounts}}");
    assert!(mounts.contains(&host), "{mounts}");
    let (status, body) = apply(
        &server,
        "etc",
        &format!("services:\n  web:\n    image: {image}\n    volumes: [\"/etc:/host-etc:ro\"]\n"),
    );
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("admission_denied")),
        "{body}"
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("services.web.volumes[0]: /etc (needs grant bind:/etc)"),
        "{body}"
    );
    assert_eq!(app_objects(&run, "etc"), 0);
    // A second revision of the admitted app (scaled), so there is one to roll back to.
    let (status, body) = api(
        &server,
        "POST",
        "/api/v1/apps/binds/scale",
        Some(json!({"replicas": {"web": 2}})),
    );
    assert_eq!(status, 200, "{body}");

    // (d) revoke: what runs is not touched, but scaling or rolling back the app (a new
    // revision) is refused.
    let out = server.ok(&["admission", "revoke", "default", &format!("bind:{host}")]);
    assert!(out.contains("no longer"), "{out}");
    let (status, body) = api(
        &server,
        "POST",
        "/api/v1/apps/binds/scale",
        Some(json!({"replicas": {"web": 3}})),
    );
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("admission_denied")),
        "{body}"
    );
    assert!(body["message"].as_str().unwrap().contains(&host), "{body}");
    let (status, body) = api(
        &server,
        "POST",
        "/api/v1/apps/binds/rollback",
        Some(json!({"to": 1})),
    );
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("admission_denied")),
        "{body}"
    );
    let out = server.cli(&["scale", "--app", "binds", "web=1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("admission") && err.contains("services.web.volumes[0]"),
        "{err}"
    );
    let (_, history) = api(&server, "GET", "/api/v1/apps/binds/revisions", None);
    assert_eq!(history.as_array().map(Vec::len), Some(2), "{history}");
    assert!(
        server
            .ps("binds")
            .iter()
            .any(|i| i["container_id"] == id.as_str() && i["state"] == "running"),
        "the replica admitted before the revocation still runs"
    );

    // network_mode: host, once granted, runs on the host's network: attached to no
    // application network, readiness from Docker (no address to probe), reachable on the host.
    let port = free_port();
    let hostnet = format!(
        "services:\n  web:\n    image: {image}\n    network_mode: host\n    environment: {{PORT: \"{port}\"}}\n"
    );
    let (status, body) = apply(&server, "hostnet", &hostnet);
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("admission_denied")),
        "{body}"
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("services.web.network_mode: host (needs grant network_mode:host)"),
        "{body}"
    );
    server.ok(&["admission", "grant", "default", "network_mode:host"]);
    let (status, body) = apply(&server, "hostnet", &hostnet);
    assert_eq!(status, 201, "{body}");
    let id = running_web(&server, "hostnet");
    assert_eq!(inspect(&id, "{{.HostConfig.NetworkMode}}"), "host");
    let nets = inspect(&id, "{{json .NetworkSettings.Networks}}");
    assert!(nets.starts_with("{\"host\""), "{nets}");
    let (code, _) = wait_for(
        Duration::from_secs(20),
        "the app answers on the host",
        || {
            berth_testkit::http_get(
                &format!("127.0.0.1:{port}"),
                "/healthz",
                None,
                Duration::from_secs(1),
            )
            .ok()
        },
    );
    assert_eq!(code, 200);
    let status = wait_for(Duration::from_secs(30), "hostnet converged", || {
        let (_, history) = api(&server, "GET", "/api/v1/apps/hostnet/revisions", None);
        let s = history[0]["status"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        (s != "pending" && s != "in_progress" && s != "rolling_out").then_some(s)
    });
    assert_eq!(status, "converged");

    for app in ["caps", "binds", "hostnet"] {
        server.ok(&["rm", "--app", app]);
    }
}

#[test]
fn admission_cli_is_the_administrators() {
    let run = TestRun::new("admission-cli");
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&run, dir.path());

    // A fresh data directory: team default holds no grant.
    let ls = server.ok(&["admission", "ls", "default", "-o", "json"]);
    assert_eq!(
        serde_json::from_str::<Value>(&ls).unwrap(),
        json!([]),
        "{ls}"
    );

    let out = server.ok(&["admission", "grant", "default", "bind:/srv//data/"]);
    assert!(out.contains("bind:/srv/data"), "{out}");
    server.ok(&["admission", "grant", "default", "cap_add:*"]);
    let ls = server.ok(&["admission", "ls", "default", "-o", "json"]);
    let grants: Value = serde_json::from_str(&ls).unwrap();
    let keys: Vec<&str> = grants
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["bind:/srv/data", "cap_add:*"], "{ls}");
    assert_eq!(grants[0]["granted_by"], "admin", "{ls}");
    let table = server.ok(&["admission", "ls", "default"]);
    assert!(table.starts_with("KEY"), "{table}");

    // Revoke by the key's text; a key with `/` and `*` travels as one path segment.
    server.ok(&["admission", "revoke", "default", "bind:/srv/data"]);
    server.ok(&["admission", "revoke", "default", "cap_add:*"]);
    let ls = server.ok(&["admission", "ls", "default", "-o", "json"]);
    assert_eq!(
        serde_json::from_str::<Value>(&ls).unwrap(),
        json!([]),
        "{ls}"
    );

    // Errors: one line, non-zero exit, the right code.
    let one_line_failure = |args: &[&str], want: &str| {
        let out = server.cli(args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains(want), "{args:?}: {err}");
    };
    one_line_failure(
        &["admission", "revoke", "default", "privileged"],
        "not_found",
    );
    one_line_failure(
        &["admission", "grant", "default", "root"],
        "unknown admission key",
    );
    one_line_failure(
        &["admission", "grant", "default", "bind:/a/../b"],
        "invalid_argument",
    );
    one_line_failure(
        &["admission", "grant", "nosuchteam", "privileged"],
        "team_not_found",
    );
    one_line_failure(&["admission", "ls", "nosuchteam"], "team_not_found");

    // The API's answers.
    let (status, body) = api(
        &server,
        "POST",
        "/api/v1/teams/default/admission",
        Some(json!({"key": "pid:host"})),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        (body["team"].as_str(), body["key"].as_str()),
        (Some("default"), Some("pid:host"))
    );
    let (status, body) = api(
        &server,
        "DELETE",
        "/api/v1/teams/default/admission/pid%3Ahost",
        None,
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = api(
        &server,
        "DELETE",
        "/api/v1/teams/default/admission/pid%3Ahost",
        None,
    );
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    let (status, body) = api(
        &server,
        "POST",
        "/api/v1/teams/default/admission",
        Some(json!({"key": "cap_add:"})),
    );
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_argument")),
        "{body}"
    );

    // A user who is not the administrator may neither read nor change grants.
    let (status, _, body) = call(
        &server.api,
        "POST",
        "/api/v1/users",
        Some(&server.token()),
        Some(json!({"name": "bob", "password": "bobs-own-password"})),
    );
    assert_eq!(status, 201, "{body}");
    let (status, _, session) = call(
        &server.api,
        "POST",
        "/api/v1/login",
        None,
        Some(json!({"user": "bob", "password": "bobs-own-password"})),
    );
    assert_eq!(status, 200, "{session}");
    let bob = session["token"].as_str().unwrap().to_string();
    // Not a member of team default: its grants are not even there for bob.
    let (status, _, answer) = call(
        &server.api,
        "GET",
        "/api/v1/teams/default/admission",
        Some(&bob),
        None,
    );
    assert_eq!(
        (status, answer["code"].as_str()),
        (404, Some("team_not_found")),
        "{answer}"
    );
    // A member may list the team's grants, but granting and revoking stay the administrator's.
    let (status, _, answer) = call(
        &server.api,
        "POST",
        "/api/v1/teams/default/members",
        Some(&server.token()),
        Some(json!({"user": "bob", "role": "developer"})),
    );
    assert_eq!(status, 201, "{answer}");
    let (status, _, answer) = call(
        &server.api,
        "GET",
        "/api/v1/teams/default/admission",
        Some(&bob),
        None,
    );
    assert_eq!(status, 200, "{answer}");
    for (method, path, body) in [
        (
            "POST",
            "/api/v1/teams/default/admission",
            Some(json!({"key": "privileged"})),
        ),
        ("DELETE", "/api/v1/teams/default/admission/privileged", None),
    ] {
        let (status, _, answer) = call(&server.api, method, path, Some(&bob), body);
        assert_eq!(
            (status, answer["code"].as_str()),
            (403, Some("forbidden")),
            "{method} {path}: {answer}"
        );
    }
    let out = Command::new(bin())
        .args(["admission", "grant", "default", "privileged"])
        .env("BERTH_SERVER", format!("http://{}", server.api))
        .env("BERTH_TOKEN", &bob)
        .env_remove("BERTH_DATA_DIR")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("forbidden"));
    let ls = server.ok(&["admission", "ls", "default", "-o", "json"]);
    assert_eq!(
        serde_json::from_str::<Value>(&ls).unwrap(),
        json!([]),
        "{ls}"
    );

    // Grants and revocations are audited, refused ones too.
    let (_, page) = api(&server, "GET", "/api/v1/audit?limit=1000", None);
    let entries = page["entries"].as_array().unwrap();
    let audited = |user: &str, status: u64| {
        entries.iter().any(|e| {
            e["user"] == user
                && e["action"]
                    .as_str()
                    .is_some_and(|a| a.contains("/api/v1/teams/{team}/admission"))
                && e["status"] == status
        })
    };
    assert!(audited("admin", 201), "{page}");
    assert!(audited("bob", 403), "{page}");
}

#[test]
fn an_external_volume_and_host_reaching_options_need_their_grants() {
    let run = TestRun::new("admission-ext");
    let image = testapp_image(&run);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&run, dir.path());
    // security_opt is an allowlist; containerd's socket and /proc reach the host like Docker's
    // socket: refused even with bind:/.
    server.ok(&["admission", "grant", "default", "bind:/"]);
    let (status, body) = apply(
        &server,
        "host",
        &format!(
            "services:\n  web:\n    image: {image}\n    security_opt: [no-new-privileges, 'label=type:spc_t']\n    volumes: [/proc/1/root:/host, /run/containerd/containerd.sock:/c.sock]\n"
        ),
    );
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("admission_denied")),
        "{body}"
    );
    let msg = body["message"].as_str().unwrap();
    for want in [
        "services.web.security_opt[1]: label=type:spc_t (needs grant security_opt)",
        "services.web.volumes[0]: /proc/1/root (needs grant docker_socket)",
        "services.web.volumes[1]: /run/containerd/containerd.sock (needs grant docker_socket)",
    ] {
        assert!(msg.contains(want), "{msg}");
    }
    assert!(!msg.contains("security_opt[0]"), "{msg}");
    server.ok(&["admission", "revoke", "default", "bind:/"]);
    // A volume made outside Berth (labelled for this run's cleanup): another team's, or the host's.
    let volume = run.name("outside");
    let out = Command::new("docker")
        .args([
            "volume",
            "create",
            "--label",
            &format!("berth.test={}", run.id),
            &volume,
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let file = format!(
        "services:\n  web:\n    image: {image}\n    expose: [\"8080\"]\n    volumes: [shared:/shared]\nvolumes:\n  shared: {{external: true, name: {volume}}}\n"
    );
    let (status, body) = apply(&server, "ext", &file);
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("admission_denied")),
        "{body}"
    );
    let msg = body["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!(
            "volumes.shared.external: {volume} (needs grant external)"
        )),
        "{msg}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(app_objects(&run, "ext"), 0);

    // Granted, the same file runs, with the external volume mounted.
    server.ok(&["admission", "grant", "default", "external"]);
    let (status, body) = apply(&server, "ext", &file);
    assert_eq!(status, 201, "{body}");
    let id = running_web(&server, "ext");
    let mounts = inspect(&id, "{{json .Mounts}}");
    assert!(mounts.contains(&volume), "{mounts}");
    server.ok(&["rm", "--app", "ext"]);
}

/// `web` routed at `/api`, probed, rolling back on failure after 3 s; `extra` is more keys of
/// the service.
fn rolling(image: &str, version: &str, healthy: bool, extra: &str) -> String {
    format!(
        "services:\n  web:\n    image: {image}\n    environment: {{VERSION: {version}, HEALTHY: \"{h}\"}}\n    expose: [\"8080\"]\n{extra}    deploy:\n      update_config: {{order: start-first, monitor: 3s, failure_action: rollback}}\n    x-berth:\n      route: {{ path_prefix: /api, strip_prefix: true }}\n      health: {{ http: /healthz, interval: 500ms }}\n",
        h = u8::from(healthy)
    )
}

#[test]
fn an_automatic_rollback_the_grants_no_longer_admit_pauses_instead() {
    let run = TestRun::new("admission-rb");
    let image = testapp_image(&run);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&run, dir.path());
    server.ok(&["admission", "grant", "default", "cap_add:NET_ADMIN"]);
    let v1 = compose(
        dir.path(),
        "v1.yaml",
        &rolling(&image, "v1", true, "    cap_add: [NET_ADMIN]\n"),
    );
    server.ok(&["apply", "-f", v1.to_str().unwrap(), "--app", "rb"]);
    assert!(server.get("/api/x").unwrap().1.starts_with("v1 "));

    // The grant goes; v2 (admitted: no cap_add) never becomes healthy. Rolling back to v1
    // would need the revoked grant: no revision is made, and v1 keeps serving.
    server.ok(&["admission", "revoke", "default", "cap_add:NET_ADMIN"]);
    let v2 = compose(dir.path(), "v2.yaml", &rolling(&image, "v2", false, ""));
    let out = server.cli(&["apply", "-f", v2.to_str().unwrap(), "--app", "rb"]);
    assert!(
        !out.status.success(),
        "apply of an unhealthy version succeeded"
    );
    let hist: Value = wait_for(Duration::from_secs(30), "revision 2 failed", || {
        let h: Value =
            serde_json::from_str(&server.ok(&["history", "--app", "rb", "--output", "json"]))
                .ok()?;
        (h[0]["revision"] == 2 && h[0]["status"] == "failed").then_some(h)
    });
    let message = hist[0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("automatic rollback to revision 1 refused")
            && message
                .contains("services.web.cap_add[0]: NET_ADMIN (needs grant cap_add:NET_ADMIN)")
            && message.contains("rollout paused"),
        "{hist}"
    );
    let (_, events) = api(&server, "GET", "/api/v1/events", None);
    assert!(
        events
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["kind"] == "rollback.refused")),
        "{events}"
    );
    // Paused: still no rollback revision, and v1 still answers, a while later.
    std::thread::sleep(Duration::from_secs(4));
    let h: Value =
        serde_json::from_str(&server.ok(&["history", "--app", "rb", "--output", "json"])).unwrap();
    assert_eq!(h.as_array().map(Vec::len), Some(2), "{h}");
    for _ in 0..10 {
        let (code, body) = server.get("/api/x").unwrap();
        assert!(code == 200 && body.starts_with("v1 "), "{code} {body}");
    }

    // With the grant back, a manual rollback restores v1 as the current revision.
    server.ok(&["admission", "grant", "default", "cap_add:NET_ADMIN"]);
    server.ok(&["rollback", "--app", "rb", "--to", "1"]);
    server.ok(&["rm", "--app", "rb"]);
}
