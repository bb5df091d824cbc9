//! End-to-end: the API on a network (issue 11). `--api-listen 0.0.0.0:PORT` answers on every
//! address of the machine; `--api-tls-cert` serves it over TLS (verified against a CA generated
//! here, with `curl`); `--metrics-listen` serves Prometheus text without a token, on the server
//! and on `berth gateway`; `berth gateway --token-file` sends its token to the control plane and
//! refuses a missing or empty token file in one line.

mod common;

use berth_testkit::{http_get, testapp_image, wait_for, TestRun};
use common::*;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed when the test ends, passed or failed.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// This machine's first IPv4 address that is not loopback (`ip -4 -o addr`), if any.
fn non_loopback_ipv4() -> Option<String> {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let mut words = l.split_whitespace();
        words.find(|w| *w == "inet")?;
        let ip = words.next()?.split('/').next()?.to_string();
        (!ip.starts_with("127.")).then_some(ip)
    })
}

#[test]
fn api_on_all_addresses_answers_on_each_of_them() {
    let run = TestRun::new("apinet");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let metrics = format!("127.0.0.1:{}", free_port());
    let gw = format!("127.0.0.1:{}", free_port());
    let server = Server::start_with(
        &run,
        dir.path(),
        &format!("0.0.0.0:{port}"),
        &gw,
        &["--metrics-listen", &metrics],
    );
    let t = Duration::from_secs(5);
    let local = format!("127.0.0.1:{port}");
    let (code, body) = http_get(&local, "/api/v1/health", None, t).unwrap();
    assert_eq!(code, 200, "{body}");
    // A name the API was not told about is still refused (DNS rebinding).
    let (code, body) = http_get(&local, "/api/v1/health", Some("evil.example"), t).unwrap();
    assert_eq!(code, 421, "{body}");
    match non_loopback_ipv4() {
        Some(ip) => {
            let addr = format!("{ip}:{port}");
            let (code, body) = http_get(&addr, "/api/v1/health", None, t).unwrap();
            assert_eq!(code, 200, "{addr}: {body}\n{}", server.log_tail());
            assert!(body.contains("\"status\""), "{body}");
            let (code, _) = http_get(&addr, "/api/v1/health", Some("evil.example"), t).unwrap();
            assert_eq!(code, 421);
        }
        None => eprintln!(
            "note: this machine has no non-loopback IPv4 address; only 127.0.0.1 was tried"
        ),
    }

    // The metrics listener: Prometheus text, no token, nothing else served there.
    let (code, head, body) = raw_request(&metrics, "GET", "/metrics", &[], "");
    assert_eq!(code, 200, "{head}\n{body}");
    assert!(
        head.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(body.contains("berth_gateway_unrouted_total"), "{body}");
    let (code, _, body) = raw_request(&metrics, "GET", "/api/v1/apps", &[], "");
    assert_eq!(code, 404, "{body}");
    assert_eq!(error_code(&body), "not_found");
}

/// A CA, and a certificate it signed for `localhost` and 127.0.0.1: (ca.pem, cert.pem, key.pem).
fn generate_ca_and_certificate(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "berth test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("api.pem"),
        dir.join("api-key.pem"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    (paths.0, paths.1, paths.2)
}

/// `curl` over HTTPS trusting `ca`: (exit ok, stdout, stderr).
fn curl(ca: &Path, url: &str) -> (bool, String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(ca)
        .args(["-w", "\n%{http_code}", url])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn api_over_tls_with_a_private_ca() {
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("curl is not installed; skipping");
        return;
    }
    let run = TestRun::new("apitls");
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = generate_ca_and_certificate(dir.path());
    let port = free_port();
    let api = format!("127.0.0.1:{port}");
    let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
    let child = Command::new(bin())
        .args(["server", "--api-listen", &api, "--no-gateway"])
        .args(["--gateway-listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--label", &format!("berth.test={}", run.id)])
        .arg("--api-tls-cert")
        .arg(format!("{}:{}", cert.display(), key.display()))
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let child = KillOnDrop(child);
    let health = format!("https://localhost:{port}/api/v1/health");
    let up = Instant::now();
    let answer = loop {
        let (ok, out, err) = curl(&ca, &health);
        if ok {
            break out;
        }
        assert!(
            up.elapsed() < Duration::from_secs(20),
            "HTTPS health never answered: {err}\n{}",
            std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(answer.ends_with("\n200"), "{answer}");
    assert!(answer.contains("\"status\""), "{answer}");
    // By address too (the certificate names 127.0.0.1).
    let (ok, out, err) = curl(&ca, &format!("https://127.0.0.1:{port}/api/v1/health"));
    assert!(ok && out.ends_with("\n200"), "{out}{err}");

    // A connection that never starts its handshake does not hold up anyone else.
    let mut silent = std::net::TcpStream::connect(&api).unwrap();
    let started = Instant::now();
    let (ok, out, err) = curl(&ca, &health);
    assert!(ok && out.ends_with("\n200"), "{out}{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a silent connection delayed another client by {:?}",
        started.elapsed()
    );

    // The dashboard on the TLS listener marks its cookies Secure (docs/dashboard.md).
    let out = Command::new("curl")
        .args([
            "-sS",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "--max-time",
            "10",
            "--cacert",
        ])
        .arg(&ca)
        .arg(format!("https://localhost:{port}/login"))
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    let cookie = head
        .lines()
        .find(|l| l.starts_with("set-cookie: berth_login_csrf="))
        .unwrap_or_else(|| panic!("no login cookie: {head}"));
    assert!(
        cookie.contains("; secure")
            && cookie.contains("httponly")
            && cookie.contains("samesite=strict"),
        "{cookie}"
    );

    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = http_get(&api, "/api/v1/health", None, Duration::from_secs(5));
    assert!(plain.is_err(), "plain HTTP answered: {plain:?}");
    // Nor does a client that does not trust the CA.
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", &health])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "an untrusted certificate was accepted"
    );

    // Tokens Berth issues name the https:// API as their issuer.
    let (ok, out, err) = curl(&ca, &format!("https://localhost:{port}/api/v1/issuers"));
    if out.ends_with("\n200") {
        assert!(out.contains(&format!("https://127.0.0.1:{port}")), "{out}");
    } else {
        // With authentication on, listing issuers needs a token: read the local one.
        let token = std::fs::read_to_string(dir.path().join("admin.token")).unwrap_or_default();
        let o = Command::new("curl")
            .args(["-sS", "--max-time", "10", "--cacert"])
            .arg(&ca)
            .args(["-H", &format!("Authorization: Bearer {}", token.trim())])
            .arg(format!("https://localhost:{port}/api/v1/issuers"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            text.contains(&format!("https://127.0.0.1:{port}")),
            "{ok} {out} {err} / {text}"
        );
    }

    // A separate gateway follows the https:// control plane, trusting the CA with --ca-file
    // (and fails to without it).
    let token = dir.path().join("admin.token");
    let token = if token.exists() {
        token
    } else {
        let placeholder = dir.path().join("placeholder.token");
        std::fs::write(&placeholder, "berth_placeholder\n").unwrap();
        placeholder
    };
    let follow = |ca_file: Option<&Path>, name: &str| {
        let log = dir.path().join(name);
        let mut cmd = Command::new(bin());
        cmd.args(["gateway", "--control", &format!("https://localhost:{port}")])
            .args(["--listen", &format!("127.0.0.1:{}", free_port())])
            .arg("--token-file")
            .arg(&token)
            .env("BERTH_LOG", "debug")
            .env_remove("BERTH_CA_FILE")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        if let Some(ca) = ca_file {
            cmd.arg("--ca-file").arg(ca);
        }
        (KillOnDrop(cmd.spawn().unwrap()), log)
    };
    let (trusted, log) = follow(Some(&ca), "gateway-trusted.log");
    wait_for(
        Duration::from_secs(15),
        "the gateway gets its table over https",
        || {
            std::fs::read_to_string(&log)
                .ok()
                .filter(|l| l.contains("new routing table"))
        },
    );
    drop(trusted);
    let (untrusted, log) = follow(None, "gateway-untrusted.log");
    wait_for(
        Duration::from_secs(15),
        "the gateway refuses the unknown CA",
        || {
            std::fs::read_to_string(&log)
                .ok()
                .filter(|l| l.contains("lost the control plane"))
        },
    );
    drop(untrusted);
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!logged.contains("new routing table"), "{logged}");

    let _ = silent.write_all(b"");
    let _ = silent.read(&mut [0u8; 1]);
    drop(child);
}

#[test]
fn api_tls_cert_errors_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    for (value, expect) in [
        ("nocolon.pem".to_string(), "expected CERT.pem:KEY.pem"),
        (
            format!("{0}/missing.pem:{0}/missing-key.pem", dir.path().display()),
            "missing.pem",
        ),
    ] {
        let out = Command::new(bin())
            .args([
                "server",
                "--api-listen",
                &format!("127.0.0.1:{}", free_port()),
            ])
            .args(["--api-tls-cert", &value, "--data-dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains(expect), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

/// A fake control plane: answers one table stream request with an empty table and records the
/// request's head (lowercase).
fn fake_control_plane() -> (String, std::sync::mpsc::Receiver<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match conn.read(&mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            let line = "{\"version\":1,\"routes\":[]}\n";
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{line}",
                line.len()
            );
            if tx
                .send(String::from_utf8_lossy(&head).into_owned())
                .is_err()
            {
                return;
            }
        }
    });
    (addr, rx)
}

#[test]
fn gateway_sends_its_token_and_serves_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    let secret = "berth_gatewaytesttoken0123456789";
    std::fs::write(&token_file, format!("  {secret}\n")).unwrap();
    let (control, heads) = fake_control_plane();
    let listen = format!("127.0.0.1:{}", free_port());
    let metrics = format!("127.0.0.1:{}", free_port());
    let log = dir.path().join("gateway.log");
    let gateway = Command::new(bin())
        .args(["gateway", "--control", &format!("http://{control}")])
        .args(["--listen", &listen, "--metrics-listen", &metrics])
        .env("BERTH_TOKEN_FILE", &token_file)
        .env("BERTH_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let gateway = KillOnDrop(gateway);
    let head = heads
        .recv_timeout(Duration::from_secs(20))
        .expect("the gateway never called the control plane");
    assert!(
        head.starts_with("GET /api/v1/gateway/table?watch=true "),
        "{head}"
    );
    let auth = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("authorization:"))
        .unwrap_or_else(|| panic!("no Authorization header: {head}"));
    assert_eq!(auth.trim(), format!("authorization: Bearer {secret}"));
    // It reconnects (the fake closes each stream) and sends the token every time, read again
    // from the file: a rotated token (a restarted server's new admin.token) is picked up.
    let again = heads.recv_timeout(Duration::from_secs(20)).unwrap();
    assert!(again.contains(&format!("Bearer {secret}")), "{again}");
    let rotated = "berth_rotatedtoken9876543210";
    std::fs::write(&token_file, format!("{rotated}\n")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let head = heads.recv_timeout(Duration::from_secs(20)).unwrap();
        if head.contains(&format!("Bearer {rotated}")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rotated token was never sent"
        );
    }
    // Emptied meanwhile: the last good token is kept.
    std::fs::write(&token_file, "").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    while heads.try_recv().is_ok() {}
    let head = heads.recv_timeout(Duration::from_secs(20)).unwrap();
    assert!(head.contains(&format!("Bearer {rotated}")), "{head}");

    wait_for(Duration::from_secs(10), "gateway metrics listener", || {
        raw_request_ok(&metrics)
    });
    let (code, head, body) = raw_request(&metrics, "GET", "/metrics", &[], "");
    assert_eq!(code, 200, "{body}");
    assert!(
        head.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(body.contains("berth_gateway_unrouted_total"), "{body}");
    drop(gateway);
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !logged.contains(secret) && !logged.contains(rotated),
        "the token reached the log"
    );
}

fn raw_request_ok(addr: &str) -> Option<()> {
    std::net::TcpStream::connect(addr).ok().map(|_| ())
}

#[test]
fn gateway_refuses_a_missing_or_empty_token_file_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "  \n").unwrap();
    let spaced = dir.path().join("spaced");
    std::fs::write(&spaced, "secret with spaces\n").unwrap();
    for (file, expect) in [
        (dir.path().join("missing"), "cannot read"),
        (empty, "empty"),
        (spaced, "not a token"),
    ] {
        let out = Command::new(bin())
            .args(["gateway", "--control", "http://127.0.0.1:9"])
            .args(["--listen", &format!("127.0.0.1:{}", free_port())])
            .arg("--token-file")
            .arg(&file)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{file:?}: {err}");
        assert!(
            err.contains("--token-file") && err.contains(expect),
            "{err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(!err.contains("secret"), "{err}");
    }
}

#[test]
fn standalone_gateway_with_a_token_routes_a_deployed_app() {
    let run = TestRun::new("gwtoken");
    let image = testapp_image(&run);
    let dir = tempfile::tempdir().unwrap();
    let api = format!("127.0.0.1:{}", free_port());
    let unused = format!("127.0.0.1:{}", free_port());
    let server = Server::start_with(&run, dir.path(), &api, &unused, &["--no-gateway"]);
    let auth_on = dir.path().join("admin.token").exists();
    if !auth_on {
        // Authentication is not in this build: the control plane ignores the token, but the
        // gateway still reads and sends it.
        eprintln!(
            "note: no admin.token (authentication off); the gateway sends a placeholder token"
        );
        std::fs::write(dir.path().join("placeholder.token"), "berth_placeholder\n").unwrap();
    }
    let gw_addr = format!("127.0.0.1:{}", free_port());
    let metrics = format!("127.0.0.1:{}", free_port());
    let token_args: Vec<String> = if auth_on {
        Vec::new() // spawn_gateway passes --token-file admin.token
    } else {
        vec![
            "--token-file".into(),
            dir.path().join("placeholder.token").display().to_string(),
        ]
    };
    let mut extra: Vec<&str> = token_args.iter().map(String::as_str).collect();
    extra.extend(["--metrics-listen", &metrics]);
    let gateway = KillOnDrop(spawn_gateway(&api, dir.path(), &gw_addr, &extra));
    let file = compose(
        dir.path(),
        "compose.yaml",
        &format!("services:\n  web:\n    image: {image}\n    expose: [\"8080\"]\n    x-berth:\n      route: {{ path_prefix: / }}\n"),
    );
    server.ok(&["apply", "-f", file.to_str().unwrap(), "--app", "tok"]);
    wait_for(
        Duration::from_secs(20),
        "the token-carrying gateway routes",
        || {
            http_get(&gw_addr, "/", None, Duration::from_secs(2))
                .ok()
                .filter(|(c, _)| *c == 200)
        },
    );
    let (code, _, body) = raw_request(&metrics, "GET", "/metrics", &[], "");
    assert_eq!(code, 200);
    assert!(body.contains("berth_gateway_"), "{body}");
    if auth_on {
        // A gateway with a wrong token gets no table, so it routes nothing.
        let bad = dir.path().join("bad.token");
        std::fs::write(&bad, "berth_not-a-valid-token\n").unwrap();
        let bad_addr = format!("127.0.0.1:{}", free_port());
        let intruder = Command::new(bin())
            .args([
                "gateway",
                "--control",
                &format!("http://{api}"),
                "--listen",
                &bad_addr,
            ])
            .arg("--token-file")
            .arg(&bad)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let intruder = KillOnDrop(intruder);
        wait_for(
            Duration::from_secs(10),
            "the second gateway listens",
            || http_get(&bad_addr, "/", None, Duration::from_secs(2)).ok(),
        );
        std::thread::sleep(Duration::from_secs(2));
        let (code, _) = http_get(&bad_addr, "/", None, Duration::from_secs(2)).unwrap();
        assert_eq!(
            code, 404,
            "a gateway with a bad token got the routing table"
        );
        drop(intruder);
    }
    server.ok(&["rm", "--app", "tok"]);
    drop(gateway);
}
