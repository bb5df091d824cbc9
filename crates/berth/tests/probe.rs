//! The outside probe, replayed: every defect the hardening issue reported, sent again against a
//! live server and gateway in the probe's own words, so that none of them returns. Each defect
//! also has a focused test elsewhere (`berth-gateway/tests/paths.rs`, `api_guard.rs`,
//! `lifecycle.rs`, `isolation.rs`, `cli_output.rs`, `berth-api/tests/router.rs`); this file is
//! the short, whole replay, one test per part of the probe (the CLI's closed pipe is replayed in
//! `cli_output.rs`, which needs no server). docs/security.md says what Berth
//! defends against.

mod common;

use berth_testkit::{testapp_image, wait_for, TestRun};
use common::*;
use std::process::Command;
use std::time::Duration;

/// The status of one request sent exactly as written (`HTTP/1.0` and missing or doubled `Host`
/// headers included).
fn status_of(addr: &str, head: &str) -> u16 {
    exact(addr, head, b"").0
}

/// Defect 1 (dot-segments bypass route authentication) and the gateway's `Host` rule.
#[test]
fn probe_gateway_paths_and_hosts() {
    let run = TestRun::new("probe-gw");
    let image = testapp_image(&run);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&run, dir.path());
    let file = compose(
        dir.path(),
        "compose.yaml",
        &format!(
            r#"
services:
  pub:
    image: {image}
    expose: ["8080"]
    x-berth:
      route: {{ path_prefix: /pub }}
  priv:
    image: {image}
    expose: ["8080"]
    x-berth:
      route: {{ path_prefix: /priv, auth: jwt }}
"#
        ),
    );
    server.ok(&["apply", "-f", file.to_str().unwrap(), "--app", "probe"]);
    let gw = &server.gateway;
    assert_eq!(status_of(gw, "GET /pub/x HTTP/1.1\r\nHost: probe"), 200);
    assert_eq!(status_of(gw, "GET /priv/x HTTP/1.1\r\nHost: probe"), 401);
    for path in [
        "/pub/../priv/x",
        "/pub/%2e%2e/priv/x",
        "/pub/.%2E/priv/x",
        "/pub/%2E%2e/priv/x",
        "/./priv/x",
        "/pub/..;/priv/x",
        "/pub/..;x=1/priv/x",
        "/pub/x/../../priv/x",
        "/pub/.../priv/x",
        "/pub/../priv/x/.",
        "//priv/x",
        "/pub/..%2fpriv/x",
    ] {
        for version in ["HTTP/1.1", "HTTP/1.0"] {
            let status = status_of(gw, &format!("GET {path} {version}\r\nHost: probe"));
            assert!(
                status == 401 || status == 400,
                "{path} over {version} answered {status}: it must reach /priv's auth or be refused"
            );
        }
    }
    // HTTP/1.1 needs exactly one Host (RFC 9112 §3.2); HTTP/1.0 may go without.
    assert_eq!(status_of(gw, "GET /pub/x HTTP/1.1"), 400);
    assert_eq!(
        status_of(gw, "GET /pub/x HTTP/1.1\r\nHost: a\r\nHost: b"),
        400
    );
    assert_eq!(status_of(gw, "GET /pub/x HTTP/1.0"), 200);
}

/// Defects 2 (CSRF, DNS rebinding) and 5 (no body limit), and the API's smaller answers.
#[test]
fn probe_api_boundary_and_error_shapes() {
    let run = TestRun::new("probe-api");
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&run, dir.path());
    let api = &server.api;
    let jwks = || {
        berth_testkit::http_get(api, "/.well-known/jwks.json", None, Duration::from_secs(5))
            .unwrap()
            .1
    };
    let keys_before = jwks();
    // A page's form or no-cors fetch: text/plain, to each endpoint the probe used.
    for path in [
        "/api/v1/images/restore",
        "/api/v1/keys/rotate",
        "/api/v1/contexts",
    ] {
        let (status, body) = exact(
            api,
            &format!("POST {path} HTTP/1.1\r\nHost: {api}\r\nContent-Type: text/plain\r\nContent-Length: 2"),
            b"{}",
        );
        assert_eq!(
            (status, error_code(&body).as_str()),
            (415, "unsupported_media_type"),
            "{path}"
        );
    }
    // A page of another origin sending what the endpoint accepts.
    let (status, body) = exact(
        api,
        &format!("POST /api/v1/keys/rotate HTTP/1.1\r\nHost: {api}\r\nOrigin: http://evil.example\r\nContent-Type: application/json\r\nContent-Length: 0"),
        b"",
    );
    assert_eq!(
        (status, error_code(&body).as_str()),
        (403, "forbidden_origin")
    );
    // DNS rebinding: the page's own host name pointing at 127.0.0.1.
    let (status, body) = exact(
        api,
        "POST /api/v1/keys/rotate HTTP/1.1\r\nHost: rebind.evil.example\r\nContent-Type: application/json\r\nContent-Length: 0",
        b"",
    );
    assert_eq!((status, error_code(&body).as_str()), (421, "bad_host"));
    assert_eq!(jwks(), keys_before, "a refused request rotated the keys");

    // A 1 GiB apply is refused on its Content-Length, before the body is read.
    let (status, body) = exact(
        api,
        &format!("POST /api/v1/apps/big/apply HTTP/1.1\r\nHost: {api}\r\nContent-Type: application/json\r\nContent-Length: 1073741824"),
        b"{",
    );
    assert_eq!(
        (status, error_code(&body).as_str()),
        (413, "payload_too_large")
    );

    // Smaller ones: every answer in the Berth shape, with the right status.
    for (method, path, body, want) in [
        ("GET", "/api/v1/builds/9223372036854775808", "", 400),
        ("GET", "/api/v1/builds/abc", "", 400),
        ("GET", "/api/v1/builds/424242", "", 404),
        (
            "POST",
            "/api/v1/apps/x/rollback",
            r#"{"to": 9223372036854775808}"#,
            400,
        ),
        (
            "GET",
            &format!("/api/v1/apps/{}", "a".repeat(70_000)),
            "",
            414,
        ),
    ] {
        let (status, answer) = exact(
            api,
            &format!(
                "{method} {path} HTTP/1.1\r\nHost: {api}\r\nContent-Type: application/json\r\nContent-Length: {}",
                body.len()
            ),
            body.as_bytes(),
        );
        assert_eq!(status, want, "{method} {:.60}: {answer}", path);
        error_code(&answer);
    }
    for path in ["/api/v1/hooks/nope", "/api/v1/images?service="] {
        let method = if path.contains("hooks") {
            "POST"
        } else {
            "GET"
        };
        let (_, answer) = exact(
            api,
            &format!("{method} {path} HTTP/1.1\r\nHost: {api}\r\nContent-Type: application/json\r\nContent-Length: 2"),
            b"{}",
        );
        error_code(&answer);
        assert!(!answer.contains("\"\""), "{path}: {answer}");
    }
}

/// Defects 3 (a failing create loops silently), 4 (names collide) and 6 (networks run out
/// silently), on one engine.
#[test]
fn probe_runtime_failures_are_bounded_reported_and_isolated() {
    let run = TestRun::new("probe-rt");
    let image = testapp_image(&run);
    let nocmd = image_without_command(&run);
    let dir = tempfile::tempdir().unwrap();
    // A pool of four subnets: `nocmd`, `a-b`, `a` and `fill` take them, `third` finds none.
    let pool = format!("10.209.{}.0/27", std::process::id() % 250);
    let server = Server::start_with(
        &run,
        dir.path(),
        &format!("127.0.0.1:{}", free_port()),
        &format!("127.0.0.1:{}", free_port()),
        &["--network-pool", &pool, "--network-prefix", "29"],
    );
    let apply = |app: &str, yaml: &str| {
        let file = compose(dir.path(), &format!("{app}.yaml"), yaml);
        server.cli(&["apply", "-f", file.to_str().unwrap(), "--app", app])
    };

    // 3: an image without a command: the apply fails with Docker's reason, the attempts stay
    // few, and `apps` shows the cause.
    let before = failed_attempts(&server);
    let out = apply(
        "nocmd",
        &format!(
            "services:\n  job:\n    image: {nocmd}\n    deploy: {{ update_config: {{ monitor: 3s }} }}\n"
        ),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("No command specified"),
        "{err}"
    );
    std::thread::sleep(Duration::from_secs(3));
    let attempts = failed_attempts(&server) - before;
    assert!(attempts <= 10, "{attempts} failed attempts in ~6 s");
    wait_for(Duration::from_secs(10), "apps shows the cause", || {
        server
            .ok(&["apps"])
            .contains("No command specified")
            .then_some(())
    });

    // 4: app `a-b` with service `c`, app `a` with service `b-c`: both converge, apart.
    let svc = |name: &str| format!("services:\n  {name}:\n    image: {image}\n");
    for (app, service) in [("a-b", "c"), ("a", "b-c")] {
        let out = apply(app, &svc(service));
        assert!(
            out.status.success(),
            "{app}: {out:?}\n{}",
            server.log_tail()
        );
    }
    let networks_of = |app: &str| -> Vec<String> {
        server.ps(app)[0]["container_id"]
            .as_str()
            .map(|id| {
                let out = Command::new("docker")
                    .args([
                        "inspect",
                        "--format",
                        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
                        &network_container(id),
                    ])
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let (na, nab) = (networks_of("a"), networks_of("a-b"));
    assert!(!na.is_empty() && !nab.is_empty());
    assert!(na.iter().all(|n| !nab.contains(n)), "{na:?} / {nab:?}");

    let out = apply("fill", &svc("web"));
    assert!(out.status.success(), "fill: {out:?}");

    // 6: the pool is spent; the third application says why and the apply fails.
    let out = apply(
        "third",
        &format!(
            "{}    deploy: {{ update_config: {{ monitor: 3s }} }}\n",
            svc("web")
        ),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("subnet"), "the cause is named: {err}");
}
