//! End-to-end with the real Docker engine: a Compose application with a JWT-protected,
//! rate-limited route. Tokens come from `berth token issue`; the gateway verifies them, passes
//! the verified identity upstream (stripping client-sent `X-Berth-*`), limits per consumer with
//! 429 + `Retry-After`, keeps old tokens valid across `berth token rotate-key`, and counts it all
//! in `/metrics`.

mod common;

use berth_testkit::{testapp_image, TestRun};
use common::*;
use std::time::Duration;

/// A GET through the gateway with headers: (status, lowercase head, body).
fn raw(addr: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
    raw_request(addr, "GET", path, headers, "")
}

#[test]
fn jwt_protected_rate_limited_route() {
    let run = TestRun::new("auth");
    let image = testapp_image(&run);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&run, dir.path());
    let file = compose(
        dir.path(),
        "compose.yaml",
        &format!(
            r#"
services:
  api:
    image: {image}
    expose: ["8080"]
    x-berth:
      route:
        path_prefix: /api
        strip_prefix: true
        auth: jwt
        rate_limit: {{ per_second: 1, burst: 3, key: consumer }}
      health: {{ http: /healthz }}
  open:
    image: {image}
    expose: ["8080"]
    x-berth:
      route: {{ path_prefix: /open, strip_prefix: true }}
  partner:
    image: {image}
    expose: ["8080"]
    x-berth:
      route:
        path_prefix: /partner
        strip_prefix: true
        auth: {{ jwt: {{ issuers: [berth], audiences: [partners] }} }}
"#
        ),
    );
    server.ok(&["apply", "-f", file.to_str().unwrap(), "--app", "shop"]);

    // No token, a garbage token, a token for another audience: 401, never reaching upstream.
    let (code, head, body) = raw(&server.gateway, "/api/headers", &[]);
    assert_eq!(code, 401, "{head}{body}");
    assert!(head.contains("www-authenticate: bearer"), "{head}");
    assert!(body.contains("\"unauthorized\""), "{body}");
    let (code, head, _) = raw(
        &server.gateway,
        "/api/headers",
        &[("Authorization", "Bearer not.a.token")],
    );
    assert_eq!(code, 401);
    assert!(head.contains("error=\"invalid_token\""), "{head}");
    let other = server
        .ok(&[
            "token",
            "issue",
            "--subject",
            "eve",
            "--audience",
            "elsewhere",
        ])
        .trim()
        .to_string();
    assert_eq!(
        raw(
            &server.gateway,
            "/api/headers",
            &[("Authorization", &format!("Bearer {other}"))]
        )
        .0,
        401
    );

    // A valid token: the upstream sees the verified identity, not what the client claimed.
    let token = server
        .ok(&[
            "token",
            "issue",
            "--subject",
            "alice",
            "--audience",
            "shop",
            "--ttl",
            "10m",
            "--claim",
            "tier=\"gold\"",
        ])
        .trim()
        .to_string();
    let bearer = format!("Bearer {token}");
    let (code, _, body) = raw(
        &server.gateway,
        "/api/headers",
        &[("Authorization", &bearer), ("X-Berth-Subject", "mallory")],
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("x-berth-subject: alice"), "{body}");
    assert!(
        !body.contains("mallory"),
        "client-sent X-Berth-Subject reached the upstream: {body}"
    );
    assert!(
        body.contains("x-berth-claims:") && body.contains("gold"),
        "{body}"
    );
    assert!(
        !body.to_ascii_lowercase().contains("authorization: bearer")
            || body.contains("authorization"),
        "{body}"
    );

    // Accepted (and remembered by the gateway's workers) on /api, the same token is still
    // refused on a route that wants another audience.
    for _ in 0..4 {
        let (code, _, body) = raw(
            &server.gateway,
            "/partner/headers",
            &[("Authorization", &bearer)],
        );
        assert_eq!(
            code, 401,
            "a token for `shop` passed a `partners` route: {body}"
        );
    }
    // A remembered token stops working when it expires (1 s, plus the 5 s leeway).
    let short = server
        .ok(&[
            "token",
            "issue",
            "--subject",
            "frank",
            "--audience",
            "partners",
            "--ttl",
            "1s",
        ])
        .trim()
        .to_string();
    let short = format!("Bearer {short}");
    for _ in 0..4 {
        assert_eq!(
            raw(&server.gateway, "/partner/x", &[("Authorization", &short)]).0,
            200
        );
    }
    std::thread::sleep(Duration::from_millis(7_000));
    for _ in 0..4 {
        assert_eq!(
            raw(&server.gateway, "/partner/x", &[("Authorization", &short)]).0,
            401,
            "an expired token was still accepted"
        );
    }

    // Per-consumer rate limit: burst 3, then 429 with Retry-After; another consumer is unaffected.
    let mut limited = None;
    for _ in 0..6 {
        let (code, head, body) = raw(&server.gateway, "/api/x", &[("Authorization", &bearer)]);
        if code == 429 {
            limited = Some((head, body));
            break;
        }
        assert_eq!(code, 200);
    }
    let (head, body) = limited.expect("the rate limit never answered 429");
    assert!(
        head.contains("retry-after:") && head.contains("ratelimit-policy:"),
        "{head}"
    );
    assert!(body.contains("\"rate_limited\""), "{body}");
    let bob = server
        .ok(&["token", "issue", "--subject", "bob", "--audience", "shop"])
        .trim()
        .to_string();
    assert_eq!(
        raw(
            &server.gateway,
            "/api/x",
            &[("Authorization", &format!("Bearer {bob}"))]
        )
        .0,
        200
    );

    // Key rotation: old tokens keep working until they expire; new ones use the new key.
    server.ok(&["token", "rotate-key"]);
    std::thread::sleep(Duration::from_millis(300));
    let carol_old = raw(
        &server.gateway,
        "/api/x",
        &[("Authorization", &format!("Bearer {bob}"))],
    )
    .0;
    assert_eq!(
        carol_old, 200,
        "a token signed by the previous key was refused after rotation"
    );
    let fresh = server
        .ok(&["token", "issue", "--subject", "dave", "--audience", "shop"])
        .trim()
        .to_string();
    assert_eq!(
        raw(
            &server.gateway,
            "/api/x",
            &[("Authorization", &format!("Bearer {fresh}"))]
        )
        .0,
        200
    );
    let (code, jwks) = berth_testkit::http_get(
        &server.api,
        "/.well-known/jwks.json",
        None,
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(code, 200);
    assert_eq!(jwks.matches("\"kid\"").count(), 2, "{jwks}");

    // The open route needs nothing; a route naming an unknown issuer is refused at apply.
    assert_eq!(raw(&server.gateway, "/open/x", &[]).0, 200);
    let bad = compose(
        dir.path(),
        "bad.yaml",
        &format!("services:\n  a:\n    image: {image}\n    expose: [\"8080\"]\n    x-berth:\n      route: {{ path_prefix: /b, auth: {{ jwt: {{ issuers: [nobody] }} }} }}\n"),
    );
    let out = server.cli(&["apply", "-f", bad.to_str().unwrap(), "--app", "bad"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown issuer \"nobody\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // External HS256 issuer through the CLI.
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "0123456789abcdef0123456789abcdef-test\n").unwrap();
    server.ok(&[
        "issuer",
        "add",
        "corp",
        "--issuer",
        "https://id.corp.example",
        "--hs256-secret-file",
        secret.to_str().unwrap(),
    ]);
    let list = server.ok(&["issuer", "ls", "--output", "json"]);
    assert!(
        list.contains("\"corp\"") && list.contains("hs256") && !list.contains("0123456789abcdef"),
        "{list}"
    );

    // Metrics count what happened; tokens never reach the log.
    let (code, metrics) =
        berth_testkit::http_get(&server.api, "/metrics", None, Duration::from_secs(5)).unwrap();
    assert_eq!(code, 200);
    assert!(
        metrics.contains("berth_gateway_route_rate_limited_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("berth_gateway_route_unauthorized_total"),
        "{metrics}"
    );
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(
        !log.contains(&token) && !log.contains("0123456789abcdef0123"),
        "a secret reached the log"
    );
    server.ok(&["rm", "--app", "shop"]);
}
