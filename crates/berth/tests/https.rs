//! End-to-end: `--gateway-tls-listen` serves routed applications over HTTPS (HTTP/1.1 and HTTP/2
//! by ALPN) with a generated development certificate, and the service sees
//! `X-Forwarded-Proto: https`. Uses the `curl` client.

mod common;

use berth_testkit::{testapp_image, TestRun};
use common::*;
use std::process::Command;

#[test]
fn https_listener_with_a_self_signed_certificate() {
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("curl is not installed; skipping");
        return;
    }
    let run = TestRun::new("https");
    let image = testapp_image(&run);
    let dir = tempfile::tempdir().unwrap();
    let api = format!("127.0.0.1:{}", free_port());
    let gw = format!("127.0.0.1:{}", free_port());
    let tls_port = free_port();
    let tls = format!("127.0.0.1:{tls_port}");
    let server = Server::start_with(&run, dir.path(), &api, &gw, &["--gateway-tls-listen", &tls]);
    let file = compose(
        dir.path(),
        "compose.yaml",
        &format!("services:\n  web:\n    image: {image}\n    expose: [\"8080\"]\n    x-berth:\n      route: {{ path_prefix: / }}\n"),
    );
    server.ok(&["apply", "-f", file.to_str().unwrap(), "--app", "tls"]);
    let cert = dir.path().join("gateway-selfsigned.pem");
    assert!(cert.exists(), "the development certificate was not written");
    for http in ["--http1.1", "--http2"] {
        let out = Command::new("curl")
            .args(["-sS", http, "--cacert"])
            .arg(&cert)
            .args(["--resolve", &format!("localhost:{tls_port}:127.0.0.1")])
            .args([
                "-w",
                "\n%{http_version}",
                &format!("https://localhost:{tls_port}/headers"),
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{http}: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("x-forwarded-proto: https"), "{text}");
        let version = text.lines().last().unwrap_or_default();
        assert_eq!(
            version,
            if http == "--http2" { "2" } else { "1.1" },
            "{text}"
        );
    }
    server.ok(&["rm", "--app", "tls"]);
}
