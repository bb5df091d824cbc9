//! End-to-end against the real binary: the API answers only the hosts it is configured for
//! (`--api-host`), refuses what a web page can send (foreign `Origin`, `text/plain` posts), refuses
//! bodies over their limit before reading them, answers an over-long URI in the Berth shape, and
//! the CLI still sends what the server requires (bodiless posts, a missing build).

mod common;

use berth_testkit::TestRun;
use common::*;

#[test]
fn the_api_refuses_what_a_web_page_can_send() {
    let run = TestRun::new("api-guard");
    let dir = tempfile::tempdir().unwrap();
    let api = format!("127.0.0.1:{}", free_port());
    let gateway = format!("127.0.0.1:{}", free_port());
    let server = Server::start_with(
        &run,
        dir.path(),
        &api,
        &gateway,
        &[
            "--api-host",
            "berth.lan,Other.Lan:9",
            "--api-host",
            "third.lan",
        ],
    );
    let port = api.rsplit(':').next().unwrap();

    // Host allow-list (DNS rebinding): the listen address, localhost, --api-host names.
    for (host, want) in [
        (api.clone(), 200),
        (format!("localhost:{port}"), 200),
        (format!("BERTH.LAN:{port}"), 200),
        ("other.lan:9".to_string(), 200),
        ("third.lan".to_string(), 200),
        ("other.lan:10".to_string(), 421),
        (format!("rebind.evil.example:{port}"), 421),
    ] {
        let (status, body) = exact(
            &api,
            &format!("GET /api/v1/health HTTP/1.1\r\nHost: {host}"),
            b"",
        );
        assert_eq!(status, want, "Host: {host}: {body}");
        if want != 200 {
            assert_eq!(error_code(&body), "bad_host");
        }
    }

    // CSRF: a text/plain post (a form or a no-cors fetch) and a foreign Origin are refused.
    let (status, body) = exact(
        &api,
        &format!("POST /api/v1/keys/rotate HTTP/1.1\r\nHost: {api}\r\nContent-Type: text/plain\r\nContent-Length: 2"),
        b"{}",
    );
    assert_eq!(
        (status, error_code(&body).as_str()),
        (415, "unsupported_media_type"),
        "{body}"
    );
    let (status, body) = exact(
        &api,
        &format!("POST /api/v1/images/restore HTTP/1.1\r\nHost: {api}\r\nOrigin: http://evil.example\r\nContent-Type: application/x-tar\r\nContent-Length: 3"),
        b"tar",
    );
    assert_eq!(
        (status, error_code(&body).as_str()),
        (403, "forbidden_origin"),
        "{body}"
    );

    // A Content-Length over the apply limit is refused before the body is sent.
    let (status, body) = exact(
        &api,
        &format!("POST /api/v1/apps/big/apply HTTP/1.1\r\nHost: {api}\r\nContent-Type: application/json\r\nContent-Length: 1073741824"),
        b"{",
    );
    assert_eq!(
        (status, error_code(&body).as_str()),
        (413, "payload_too_large"),
        "{body}"
    );

    // URIs too long for the API, and too long for the HTTP parser: the Berth shape either way.
    for len in [9_000, 70_000] {
        let (status, body) = exact(
            &api,
            &format!(
                "GET /api/v1/apps/{} HTTP/1.1\r\nHost: {api}",
                "a".repeat(len)
            ),
            b"",
        );
        assert_eq!(
            (status, error_code(&body).as_str()),
            (414, "uri_too_long"),
            "{len}: {body}"
        );
    }

    // A Compose bundle over the apply limit: the CLI says so before sending it.
    let big = dir.path().join("big.yaml");
    std::fs::write(
        &big,
        format!("# {}\nservices: {{}}\n", "x".repeat(17 * 1024 * 1024)),
    )
    .unwrap();
    let out = server.cli(&["apply", "-f", big.to_str().unwrap(), "--app", "big"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("at most 16 MiB"), "{err}");

    // The CLI sends what the server requires: a bodiless post, a missing build.
    let out = server.ok(&["token", "rotate-key"]);
    assert!(!out.trim().is_empty(), "{out}");
    let out = server.cli(&["builds", "cancel", "424242"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("build_not_found"), "{err}");
    let out = server.cli(&["builds", "logs", "9223372036854775808"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid_argument"), "{err}");
}
