//! The router's middleware: tokens, the audit log, and error answers carry the request id; who may call
//! (Host, Origin, content types, body limits: `guard.rs`) and the shape of every error answer.
//! (The document against the router is in `openapi.rs`.) Uses the real Docker engine only to
//! construct the control plane (nothing is created).

use axum::body::Body;
use axum::extract::ConnectInfo;

use http_body_util::BodyExt;
use std::net::SocketAddr;
use std::sync::Arc;
use tower::ServiceExt;

mod common;
use common::*;

fn request(method: &str, path: &str, body: &str, peer: &str) -> http::Request<Body> {
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "127.0.0.1:7400")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
    req
}

#[tokio::test]
async fn calls_need_a_token_from_any_peer_and_errors_carry_the_request_id() {
    let (app, _dir) = router().await;
    // Tokens replaced the loopback-only rule: a remote peer with the token is served...
    let resp = app
        .clone()
        .oneshot(request("GET", "/api/v1/health", "", "10.1.2.3:5000"))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    // ...and any peer without one is not (401, with the scheme to use).
    let mut req = request("GET", "/api/v1/apps", "", "127.0.0.1:5000");
    req.headers_mut().insert(ANONYMOUS, "1".parse().unwrap());
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer realm=\"berth\"");
    let mut req = request("GET", "/api/v1/apps/ghost", "", "127.0.0.1:5000");
    req.headers_mut()
        .insert("x-request-id", "my-id-1".parse().unwrap());
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    assert_eq!(resp.headers()["x-request-id"], "my-id-1");
    let body: serde_json::Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["code"], "app_not_found");
    assert_eq!(body["request_id"], "my-id-1");
    // A malformed request id is replaced.
    let mut req = request("GET", "/api/v1/health", "", "127.0.0.1:5000");
    req.headers_mut()
        .insert("x-request-id", "bad id with spaces".parse().unwrap());
    let resp = app.oneshot(req).await.unwrap();
    assert_ne!(resp.headers()["x-request-id"], "bad id with spaces");
}

#[tokio::test]
async fn public_routes_need_no_token_and_bad_tokens_are_401() {
    let (app, _dir) = router().await;
    let anon = |method: &str, path: &str, auth: Option<&str>| {
        let mut req = request(method, path, "", "127.0.0.1:5000");
        req.headers_mut().insert(ANONYMOUS, "1".parse().unwrap());
        if let Some(a) = auth {
            req.headers_mut()
                .insert("authorization", a.parse().unwrap());
        }
        req
    };
    for path in ["/api/v1/health", "/api/v1/openapi.json"] {
        let (status, _, _) = call(&app, anon("GET", path, None)).await;
        assert_eq!(status, 200, "{path}");
    }
    // Every documented operation but the public ones answers 401 without a token, so a new
    // route cannot forget authentication.
    let doc = berth_api::openapi::document();
    let mut checked = 0;
    for (template, item) in doc["paths"].as_object().unwrap() {
        // `{app}` → `x1`: a valid name for every path parameter.
        let mut path = String::new();
        let mut in_param = false;
        for c in template.chars() {
            match c {
                '{' => in_param = true,
                '}' => {
                    in_param = false;
                    path.push_str("x1");
                }
                _ if !in_param => path.push(c),
                _ => {}
            }
        }
        for method in item.as_object().unwrap().keys() {
            let method = method.to_ascii_uppercase();
            if !["GET", "POST", "PUT", "DELETE", "PATCH"].contains(&method.as_str())
                || berth_access::is_public(&method, template)
            {
                continue;
            }
            let (status, code, _) = call(&app, anon(&method, &path, None)).await;
            assert_eq!(
                (status, code.as_str()),
                (401, "unauthorized"),
                "{method} {template} without a token"
            );
            checked += 1;
        }
    }
    assert!(checked >= 40, "only {checked} operations checked");
    // (This router has no token issuer: the JWKS handler answers that, not the middleware.)
    let (_, code, _) = call(&app, anon("GET", "/.well-known/jwks.json", None)).await;
    assert_eq!(code, "invalid_argument");
    for (method, path) in [
        ("GET", "/metrics"),
        ("GET", "/api/v1/whoami"),
        ("POST", "/api/v1/keys/rotate"),
        ("GET", "/api/v1/gateway/table"),
    ] {
        for auth in [
            None,
            Some("Bearer berth_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
            Some("Basic YWRtaW46eA=="),
        ] {
            let (status, code, _) = call(&app, anon(method, path, auth)).await;
            assert_eq!(
                (status, code.as_str()),
                (401, "unauthorized"),
                "{method} {path} {auth:?}"
            );
        }
    }
    // A webhook's signature authenticates it, not a token: it reaches its handler, which
    // refuses an unknown service as it refuses a bad signature (not as a missing token).
    let (status, code, body) = call(&app, anon("POST", "/api/v1/hooks/ghost", None)).await;
    assert_eq!((status, code.as_str()), (401, "unauthorized"));
    assert_eq!(
        body["message"],
        berth_controlplane::webhooks::REFUSED,
        "{body}"
    );
    // A wrong login is a 401 with one message whatever was wrong.
    let login = |body: &str| {
        let mut req = request("POST", "/api/v1/login", body, "127.0.0.1:5000");
        req.headers_mut().insert(ANONYMOUS, "1".parse().unwrap());
        req
    };
    let (s1, c1, b1) = call(
        &app,
        login(r#"{"user":"admin","password":"wrong-password"}"#),
    )
    .await;
    let (s2, c2, b2) = call(
        &app,
        login(r#"{"user":"ghost","password":"wrong-password"}"#),
    )
    .await;
    assert_eq!((s1, c1.as_str()), (401, "unauthorized"));
    assert_eq!((s2, c2.as_str()), (401, "unauthorized"));
    assert_eq!(b1["message"], b2["message"]);
    let (status, _, body) = call(
        &app,
        login(r#"{"user":"admin","password":"test-admin-password"}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().unwrap().to_string();
    let mut req = anon("GET", "/api/v1/whoami", Some(&format!("Bearer {token}")));
    req.headers_mut().remove(ANONYMOUS);
    let (status, _, who) = call(&app, req).await;
    assert_eq!(
        (status, who["user"].as_str(), who["kind"].as_str()),
        (200, Some("admin"), Some("login"))
    );
}

#[tokio::test]
async fn state_changes_and_refusals_are_audited_without_secrets() {
    let (app, _dir) = router().await;
    // A refused call (no token), an allowed one, a failed and a successful login.
    let mut req = request("POST", "/api/v1/keys/rotate", "", "10.9.8.7:5000");
    req.headers_mut().insert(ANONYMOUS, "1".parse().unwrap());
    assert_eq!(call(&app, req).await.0, 401);
    assert_eq!(
        call(
            &app,
            request("POST", "/api/v1/keys/rotate", "", "127.0.0.1:5000")
        )
        .await
        .0,
        400
    );
    let login = |pw: &str| {
        let mut req = request(
            "POST",
            "/api/v1/login",
            &format!(r#"{{"user":"admin","password":"{pw}"}}"#),
            "127.0.0.1:5000",
        );
        req.headers_mut().insert(ANONYMOUS, "1".parse().unwrap());
        req
    };
    assert_eq!(call(&app, login("not-the-password")).await.0, 401);
    let (_, _, session) = call(&app, login("test-admin-password")).await;
    // Reads are not audited.
    call(&app, request("GET", "/api/v1/apps", "", "127.0.0.1:5000")).await;
    let (status, _, page) = call(&app, request("GET", "/api/v1/audit", "", "127.0.0.1:5000")).await;
    assert_eq!(status, 200, "{page}");
    let rows = page["entries"].as_array().unwrap();
    let summary: Vec<(String, String, u64, String)> = rows
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap().to_string(),
                r["user"].as_str().unwrap_or("-").to_string(),
                r["status"].as_u64().unwrap(),
                r["code"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect();
    let s = |a: &str, u: &str, st: u64, c: &str| (a.to_string(), u.to_string(), st, c.to_string());
    assert_eq!(
        summary,
        [
            s("POST /api/v1/keys/rotate", "-", 401, "unauthorized"),
            s("POST /api/v1/keys/rotate", "admin", 400, "invalid_argument"),
            s("login", "admin", 401, "unauthorized"),
            s("login", "admin", 200, "-"),
        ]
    );
    assert_eq!(rows[0]["source"], "10.9.8.7");
    assert_eq!(rows[0]["object"], "/api/v1/keys/rotate");
    assert_eq!(rows[3]["token"], session["name"]);
    let text = page.to_string();
    let token = session["token"].as_str().unwrap();
    for secret in ["not-the-password", "test-admin-password", token, "berth_"] {
        assert!(!text.contains(secret), "{secret} in the audit log: {text}");
    }
}

/// A request with explicit headers (no defaults), from a loopback peer.
fn raw(method: &str, path: &str, headers: &[(&str, &str)], body: Body) -> http::Request<Body> {
    let mut b = http::Request::builder().method(method).uri(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let mut req = b.body(body).unwrap();
    req.extensions_mut()
        .insert(ConnectInfo("127.0.0.1:5000".parse::<SocketAddr>().unwrap()));
    req
}

/// Send; (status, the Berth error code or "" for a success, the whole body).
async fn call(app: &axum::Router, req: http::Request<Body>) -> (u16, String, serde_json::Value) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        assert!(status < 400, "{status}: a non-JSON error body: {bytes:?}");
        serde_json::Value::Null
    });
    if status >= 400 {
        // Every error answer has the Berth shape, with the request id of the header.
        assert!(ct.starts_with("application/json"), "{status} {ct} {body}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
        assert_eq!(body["request_id"], id, "{body}");
    }
    let code = body["code"].as_str().unwrap_or_default().to_string();
    (status, code, body)
}

const H: (&str, &str) = ("host", "127.0.0.1:7400");
const JSON: (&str, &str) = ("content-type", "application/json");

#[tokio::test]
async fn hosts_the_api_does_not_answer_for_are_refused() {
    let (app, _dir) = router().await;
    for host in ["evil.example", "evil.example:7400", "127.0.0.1.nip.io:7400"] {
        let (status, code, _) = call(
            &app,
            raw("GET", "/api/v1/health", &[("host", host)], Body::empty()),
        )
        .await;
        assert_eq!((status, code.as_str()), (421, "bad_host"), "{host}");
    }
    // No Host at all, and an absolute URI naming another host.
    let (status, code, _) = call(&app, raw("GET", "/api/v1/health", &[], Body::empty())).await;
    assert_eq!((status, code.as_str()), (421, "bad_host"));
    let (status, code, _) = call(
        &app,
        raw(
            "GET",
            "http://evil.example/api/v1/health",
            &[H],
            Body::empty(),
        ),
    )
    .await;
    assert_eq!((status, code.as_str()), (421, "bad_host"));
    // Writes too (a rebinding page posting to /keys/rotate).
    let (status, code, _) = call(
        &app,
        raw(
            "POST",
            "/api/v1/keys/rotate",
            &[("host", "evil.example:7400"), JSON],
            Body::empty(),
        ),
    )
    .await;
    assert_eq!((status, code.as_str()), (421, "bad_host"));
    for host in ["127.0.0.1:7400", "LocalHost:7400", "localhost", "[::1]:9"] {
        let (status, _, _) = call(
            &app,
            raw("GET", "/api/v1/health", &[("host", host)], Body::empty()),
        )
        .await;
        assert_eq!(status, 200, "{host}");
    }
}

#[tokio::test]
async fn configured_hosts_compare_with_and_without_port() {
    let (_, _dir) = router().await;
    let access = berth_api::guard::Access::for_listen(
        "127.0.0.1:7400".parse().unwrap(),
        &["berth.lan".to_string(), "tunnel.example:8000".to_string()],
    )
    .unwrap();
    let (app, _dir2) = router_with(access).await;
    for (host, want) in [
        ("127.0.0.1:7400", 200),
        ("localhost:7400", 200),
        ("localhost:7401", 421),
        ("BERTH.LAN:1", 200),
        ("tunnel.example:8000", 200),
        ("tunnel.example:8001", 421),
        ("other.lan", 421),
    ] {
        let (status, _, _) = call(
            &app,
            raw("GET", "/api/v1/health", &[("host", host)], Body::empty()),
        )
        .await;
        assert_eq!(status, want, "{host}");
    }
}

#[tokio::test]
async fn requests_from_other_origins_are_refused() {
    let (app, _dir) = router().await;
    for (k, v) in [
        ("origin", "http://evil.example"),
        ("origin", "null"),
        ("origin", "https://127.0.0.1:7400"),
        ("origin", "http://127.0.0.1:7400.evil.example"),
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
    ] {
        for (method, path, ct, body) in [
            ("POST", "/api/v1/keys/rotate", "application/json", ""),
            ("POST", "/api/v1/images/restore", "application/x-tar", "x"),
            ("POST", "/api/v1/contexts", "application/x-tar", "x"),
            ("POST", "/api/v1/apps/shop/scale", "application/json", "{}"),
            ("DELETE", "/api/v1/apps/shop", "application/json", ""),
            ("GET", "/api/v1/gateway/table", "application/json", ""),
        ] {
            let (status, code, _) = call(
                &app,
                raw(
                    method,
                    path,
                    &[H, ("content-type", ct), (k, v)],
                    Body::from(body),
                ),
            )
            .await;
            assert_eq!(
                (status, code.as_str()),
                (403, "forbidden_origin"),
                "{method} {path} with {k}: {v}"
            );
        }
    }
    // The API's own origin, and a same-origin fetch, pass.
    for (k, v) in [
        ("origin", "http://127.0.0.1:7400"),
        ("sec-fetch-site", "same-origin"),
        ("sec-fetch-site", "none"),
    ] {
        let (status, code, _) = call(
            &app,
            raw(
                "POST",
                "/api/v1/apps/ghost/scale",
                &[H, JSON, (k, v)],
                Body::from(r#"{"replicas": {"web": 1}}"#),
            ),
        )
        .await;
        assert_eq!((status, code.as_str()), (404, "app_not_found"), "{k}: {v}");
    }
}

#[tokio::test]
async fn writes_need_their_declared_content_type() {
    let (app, _dir) = router().await;
    let refused = [
        // What a cross-origin <form> or a no-cors fetch can send without asking.
        ("POST", "/api/v1/images/restore", Some("text/plain")),
        ("POST", "/api/v1/images/restore", None),
        ("POST", "/api/v1/keys/rotate", Some("text/plain")),
        ("POST", "/api/v1/keys/rotate", None),
        ("POST", "/api/v1/contexts", Some("text/plain")),
        (
            "POST",
            "/api/v1/contexts",
            Some("multipart/form-data; boundary=x"),
        ),
        ("POST", "/api/v1/apps/shop/apply", Some("text/plain")),
        ("POST", "/api/v1/apps/shop/apply", None),
        (
            "POST",
            "/api/v1/apps/shop/rollback",
            Some("application/x-www-form-urlencoded"),
        ),
        ("POST", "/api/v1/builds/1/cancel", None),
        ("POST", "/api/v1/tokens", Some("text/plain;charset=utf-8")),
        (
            "POST",
            "/api/v1/hooks/web",
            Some("application/x-www-form-urlencoded"),
        ),
        (
            "PUT",
            "/api/v1/services/web/secrets/S",
            Some("application/x-www-form-urlencoded"),
        ),
        ("PUT", "/api/v1/services/web/webhook-secret", None),
    ];
    for (method, path, ct) in refused {
        let mut headers = vec![H];
        if let Some(ct) = ct {
            headers.push(("content-type", ct));
        }
        let (status, code, _) = call(&app, raw(method, path, &headers, Body::from("{}"))).await;
        assert_eq!(
            (status, code.as_str()),
            (415, "unsupported_media_type"),
            "{method} {path} {ct:?}"
        );
    }
    // The documented types get past the check (to the endpoint's own answer).
    let accepted = [
        ("POST", "/api/v1/keys/rotate", "application/json", ""),
        (
            "POST",
            "/api/v1/apps/ghost/rollback",
            "Application/JSON; charset=utf-8",
            "{}",
        ),
        (
            "POST",
            "/api/v1/images/restore",
            "application/x-tar",
            "not a tar",
        ),
        ("POST", "/api/v1/hooks/nobody", "application/json", "{}"),
        (
            "PUT",
            "/api/v1/services/nobody/secrets/S",
            "text/plain; charset=utf-8",
            "v",
        ),
        ("DELETE", "/api/v1/apps/ghost", "", ""),
    ];
    for (method, path, ct, body) in accepted {
        let mut headers = vec![H];
        if !ct.is_empty() {
            headers.push(("content-type", ct));
        }
        let (status, code, body) = call(&app, raw(method, path, &headers, Body::from(body))).await;
        assert!(
            status != 415 && status != 403,
            "{method} {path} {ct}: {status} {code} {body}"
        );
    }
}

/// A body that records whether anyone read it.
fn watched_body(size: usize, read: Arc<std::sync::atomic::AtomicBool>) -> Body {
    let chunk = bytes::Bytes::from(vec![b' '; 64 * 1024]);
    let n = size.div_ceil(chunk.len());
    Body::from_stream(futures_util::stream::iter((0..n).map(move |_| {
        read.store(true, std::sync::atomic::Ordering::SeqCst);
        Ok::<_, std::io::Error>(chunk.clone())
    })))
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused_before_they_are_read() {
    let (app, _dir) = router().await;
    // A Content-Length over the limit: 413 at once, the body untouched.
    for (path, ct, limit) in [
        ("/api/v1/apps/shop/apply", "application/json", 16u64 << 20),
        ("/api/v1/apps/shop/scale", "application/json", 1 << 20),
        ("/api/v1/keys/rotate", "application/json", 1 << 20),
        ("/api/v1/images/restore", "application/x-tar", 16 << 30),
        ("/api/v1/contexts", "application/x-tar", 512 << 20),
    ] {
        let read = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let len = (limit + 1).to_string();
        let (status, code, _) = call(
            &app,
            raw(
                "POST",
                path,
                &[H, ("content-type", ct), ("content-length", &len)],
                watched_body(1 << 20, read.clone()),
            ),
        )
        .await;
        assert_eq!(
            (status, code.as_str()),
            (413, "payload_too_large"),
            "{path}"
        );
        assert!(
            !read.load(std::sync::atomic::Ordering::SeqCst),
            "{path}: body was read"
        );
    }
    // No Content-Length (chunked): cut off at the limit.
    for (path, size) in [
        ("/api/v1/apps/shop/apply", (16 << 20) + 1),
        ("/api/v1/apps/shop/scale", (1 << 20) + 1),
        ("/api/v1/tokens", (1 << 20) + 1),
        ("/api/v1/hooks/web", (25 << 20) + 1),
    ] {
        let read = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (status, code, _) = call(
            &app,
            raw("POST", path, &[H, JSON], watched_body(size, read)),
        )
        .await;
        assert_eq!(
            (status, code.as_str()),
            (413, "payload_too_large"),
            "{path}"
        );
    }
    let read = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (status, code, _) = call(
        &app,
        raw(
            "PUT",
            "/api/v1/services/web/secrets/S",
            &[H, ("content-type", "text/plain")],
            watched_body((64 << 10) + 1, read),
        ),
    )
    .await;
    assert_eq!((status, code.as_str()), (413, "payload_too_large"));
    // Under the limit, an apply body of a few MiB is read (and judged on its content).
    let big = format!(
        r#"{{"compose_files": ["c.yaml"], "files": {{"c.yaml": "{}"}}}}"#,
        "x".repeat(4 << 20)
    );
    let (status, code, _) = call(
        &app,
        raw(
            "POST",
            "/api/v1/apps/shop/apply",
            &[H, JSON],
            Body::from(big),
        ),
    )
    .await;
    assert_ne!(status, 413, "{code}");
}

#[tokio::test]
async fn every_error_answer_has_the_berth_shape() {
    let (app, _dir) = router().await;
    let get = |path: String| raw("GET", &path, &[H], Body::empty());
    let cases: Vec<(http::Request<Body>, u16, &str)> = vec![
        (get("/api/v1/builds/abc".into()), 400, "invalid_argument"),
        (get("/api/v1/builds/-1".into()), 400, "invalid_argument"),
        (
            get("/api/v1/builds/9223372036854775808".into()),
            400,
            "invalid_argument",
        ),
        (
            get("/api/v1/builds/18446744073709551616".into()),
            400,
            "invalid_argument",
        ),
        (get("/api/v1/builds/999".into()), 404, "build_not_found"),
        (
            get("/api/v1/builds/999/logs".into()),
            404,
            "build_not_found",
        ),
        (
            get("/api/v1/builds/abc/logs".into()),
            400,
            "invalid_argument",
        ),
        (get("/api/v1/events?after=x".into()), 400, "invalid_query"),
        (get("/api/v1/events?limit=-1".into()), 400, "invalid_query"),
        (get("/api/v1/images?service=".into()), 400, "invalid_query"),
        (get("/api/v1/builds?service=".into()), 400, "invalid_query"),
        (
            get(format!("/api/v1/apps/{}", "a".repeat(9000))),
            414,
            "uri_too_long",
        ),
        (
            get(format!("/api/v1/apps?x={}", "a".repeat(9000))),
            414,
            "uri_too_long",
        ),
        (
            raw(
                "POST",
                "/api/v1/apps/ghost/rollback",
                &[H, JSON],
                Body::from(r#"{"to": 9223372036854775808}"#),
            ),
            400,
            "invalid_argument",
        ),
        (
            raw(
                "POST",
                "/api/v1/apps/ghost/rollback",
                &[H, JSON],
                Body::from(r#"{"to": 18446744073709551616}"#),
            ),
            400,
            "invalid_json",
        ),
        (
            raw(
                "POST",
                "/api/v1/builds/9223372036854775808/cancel",
                &[H, JSON],
                Body::empty(),
            ),
            400,
            "invalid_argument",
        ),
        (
            raw("POST", "/api/v1/builds/x/cancel", &[H, JSON], Body::empty()),
            400,
            "invalid_argument",
        ),
    ];
    for (req, want_status, want_code) in cases {
        let what = format!("{} {}", req.method(), req.uri());
        let (status, code, body) = call(&app, req).await;
        assert_eq!(
            (status, code.as_str()),
            (want_status, want_code),
            "{what}: {body}"
        );
    }
    // A restore is streamed to the engine; what is not an archive says so.
    let (status, code, body) = call(
        &app,
        raw(
            "POST",
            "/api/v1/images/restore",
            &[H, ("content-type", "application/x-tar")],
            Body::from("not a tar"),
        ),
    )
    .await;
    assert_eq!((status, code.as_str()), (400, "invalid_argument"), "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("not an image archive"),
        "{body}"
    );
    // Messages name what is missing, not an empty application.
    for (req, want) in [
        (get("/api/v1/images?service=nope".into()), "nope"),
        (get("/api/v1/services/nope/versions".into()), "nope"),
    ] {
        let what = req.uri().to_string();
        let (status, code, body) = call(&app, req).await;
        assert_eq!(
            (status, code.as_str()),
            (404, "service_not_found"),
            "{what}"
        );
        let msg = body["message"].as_str().unwrap();
        assert!(
            msg.contains(want) && !msg.contains("application \"\""),
            "{what}: {msg}"
        );
    }
}

#[tokio::test]
async fn an_image_restore_is_streamed_and_stops_at_its_limit() {
    let (cp, _dir) = control_plane().await;
    // 64 chunks of 64 KiB offered, a limit of 256 KiB: refused, and the rest never pulled.
    let pulled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = pulled.clone();
    let chunks = futures_util::stream::iter((0..64).map(move |_| {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok::<_, std::io::Error>(bytes::Bytes::from(vec![0u8; 64 * 1024]))
    }));
    let err = cp
        .restore_image_stream(chunks, 256 * 1024)
        .await
        .unwrap_err();
    assert_eq!(err.code(), berth_core::ErrorCode::PayloadTooLarge, "{err}");
    let n = pulled.load(std::sync::atomic::Ordering::SeqCst);
    assert!(n < 64, "the whole upload was read ({n} chunks)");
    // A broken-off upload is the client's fault, not the engine's.
    let broken = futures_util::stream::iter(vec![
        Ok(bytes::Bytes::from(vec![0u8; 1024])),
        Err(std::io::Error::other("connection reset")),
    ]);
    let err = cp.restore_image_stream(broken, 1 << 30).await.unwrap_err();
    assert_eq!(err.code(), berth_core::ErrorCode::InvalidArgument, "{err}");
    assert!(err.to_string().contains("broke off"), "{err}");
}

#[tokio::test]
async fn a_backup_is_a_tar_answered_to_an_empty_json_post() {
    let (app, _dir) = router().await;
    let resp = app
        .clone()
        .oneshot(raw(
            "POST",
            "/api/v1/admin/backup",
            &[H, JSON],
            Body::empty(),
        ))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-tar");
    let disposition = resp.headers()["content-disposition"].to_str().unwrap();
    assert!(
        disposition.starts_with("attachment; filename=\"berth-backup-"),
        "{disposition}"
    );
    let length: usize = resp.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(bytes.len(), length);
    // The manifest is the first entry, the database follows it (512-byte tar headers).
    assert!(bytes.starts_with(b"backup.json\0"), "{:?}", &bytes[..16]);
    let manifest_len = usize::from_str_radix(
        std::str::from_utf8(&bytes[124..135])
            .unwrap()
            .trim_matches('\0'),
        8,
    )
    .unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&bytes[512..512 + manifest_len]).unwrap();
    assert_eq!(manifest["format"], 1, "{manifest}");
    assert!(manifest["instance"].as_str().is_some_and(|i| !i.is_empty()));
    let next = 512 + manifest_len.div_ceil(512) * 512;
    assert!(bytes[next..].starts_with(b"berth.db\0"));

    // A body, or another content type, is refused.
    let (status, code, _) = call(
        &app,
        raw(
            "POST",
            "/api/v1/admin/backup",
            &[H, JSON, ("content-length", "2")],
            Body::from("{}"),
        ),
    )
    .await;
    assert_eq!((status, code.as_str()), (413, "payload_too_large"));
    let (status, code, _) = call(
        &app,
        raw(
            "POST",
            "/api/v1/admin/backup",
            &[H, ("content-type", "text/plain")],
            Body::empty(),
        ),
    )
    .await;
    assert_eq!((status, code.as_str()), (415, "unsupported_media_type"));
}

/// Every documented operation is public or has a row in the permission table
/// (`berth_access::policy::ROUTES`): a new route cannot be left unclassified.
#[test]
fn every_operation_is_in_the_permission_table() {
    let doc = berth_api::openapi::document();
    let mut documented = std::collections::BTreeSet::new();
    for (template, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let method = method.to_ascii_uppercase();
            if !["GET", "POST", "PUT", "DELETE", "PATCH"].contains(&method.as_str()) {
                continue;
            }
            documented.insert((method.clone(), template.clone()));
            if berth_access::is_public(&method, template) {
                continue;
            }
            assert!(
                berth_access::action(&method, template).is_some(),
                "{method} {template} is not in berth_access::policy::ROUTES"
            );
        }
    }
    assert!(!documented.is_empty());
}

/// `?team=` is the middleware's: the CLI sends it with every call, and handlers whose query
/// structs refuse unknown fields never see it (nor do calls that act in no team).
#[tokio::test]
async fn the_team_parameter_is_taken_by_the_middleware() {
    let (app, _dir) = router().await;
    for path in [
        "/api/v1/events?after=0&team=default",
        "/api/v1/builds?team=default",
        "/api/v1/apps?team=default",
        "/api/v1/audit?team=default&limit=5",
        "/api/v1/api-tokens?team=default",
        "/api/v1/whoami?team=default",
        "/api/v1/teams?team=default",
    ] {
        let (status, _, body) = call(&app, request("GET", path, "", "127.0.0.1:5000")).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    // Still an unknown parameter is refused, and a team that does not exist is not found.
    let (status, _, body) = call(
        &app,
        request(
            "GET",
            "/api/v1/events?team=default&nope=1",
            "",
            "127.0.0.1:5000",
        ),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, _, body) = call(
        &app,
        request("GET", "/api/v1/events?team=ghost", "", "127.0.0.1:5000"),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("team_not_found"))
    );
}
