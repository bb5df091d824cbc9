//! Request paths and Host on every protocol path: dot-segments and their encoded forms never
//! carry a request past a route's policy (the path is normalised before routing and forwarded
//! normalised, or refused), and HTTP/1.1 heads need exactly one valid Host.
//!
//! Each case runs over raw HTTP/1.1 on the fast path, raw HTTP/1.1 on the general path (fast
//! path off), raw HTTP/1.0, absolute-form HTTP/1.1, and h2c with prior knowledge.

mod common;

use berth_core::auth::{AuthFailure, TokenVerifier, VerifiedToken};
use berth_core::policy::{AuthPolicy, Issuer, RoutePolicy};
use berth_gateway::GatewayConfig;
use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Accepts the token `good`.
struct Good;

impl TokenVerifier for Good {
    fn verify(
        &self,
        token: &str,
        _policy: &AuthPolicy,
        _issuers: &[Issuer],
    ) -> Result<VerifiedToken, AuthFailure> {
        if token == "good" {
            Ok(VerifiedToken {
                subject: "alice".into(),
                issuer: "berth".into(),
                claims_json: r#"{"sub":"alice"}"#.into(),
                valid: None,
            })
        } else {
            Err(AuthFailure {
                reason: "bad token".into(),
            })
        }
    }
}

/// How a request reaches the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// HTTP/1.1, origin form, fast path on.
    FastPath,
    /// HTTP/1.1, origin form, fast path off (hyper behind the guard).
    GeneralPath,
    /// HTTP/1.0 (always the general path).
    Http10,
    /// HTTP/1.1 with an absolute-form target (always the general path).
    AbsoluteForm,
    /// HTTP/2 with prior knowledge.
    H2c,
}

const ALL: [Via; 5] = [
    Via::FastPath,
    Via::GeneralPath,
    Via::Http10,
    Via::AbsoluteForm,
    Via::H2c,
];

/// One service routed twice: `/pub` open, `/priv` with `auth`; and `/api` with strip_prefix.
struct Setup {
    up: Upstream,
    fast: TestGateway,
    general: TestGateway,
}

async fn setup() -> Setup {
    let up = Upstream::start("svc").await;
    let mut private = route(None, "/priv", false, vec![up.endpoint()]);
    private.policy = RoutePolicy {
        auth: Some(AuthPolicy {
            issuers: vec!["berth".into()],
            audiences: vec![],
            team: None,
            subscribers: None,
        }),
        ..Default::default()
    };
    let routes = vec![
        route(None, "/pub", false, vec![up.endpoint()]),
        private,
        route(None, "/api", true, vec![up.endpoint()]),
    ];
    let config = |fast_path| GatewayConfig {
        fast_path,
        ..GatewayConfig::default().with_verifier(Arc::new(Good))
    };
    let fast = TestGateway::start_with(table(1, routes.clone()), config(true)).await;
    let general = TestGateway::start_with(table(1, routes), config(false)).await;
    Setup { up, fast, general }
}

/// An answer: status, the path the replica saw (if it was reached), the error code (if any).
#[derive(Debug)]
struct Seen {
    status: u16,
    path: Option<String>,
    code: Option<String>,
}

impl Setup {
    /// Send `GET path` via `via`, with a bearer token when `token` is set.
    async fn get(&self, via: Via, path: &str, token: Option<&str>) -> Seen {
        let gw = if via == Via::FastPath {
            &self.fast
        } else {
            &self.general
        };
        if via == Via::H2c {
            return h2c_get(gw, path, token).await;
        }
        let (target, version, host) = match via {
            Via::Http10 => (path.to_owned(), "1.0", ""),
            Via::AbsoluteForm => (
                format!("http://app.test{path}"),
                "1.1",
                "Host: app.test\r\n",
            ),
            _ => (path.to_owned(), "1.1", "Host: app.test\r\n"),
        };
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        let head = format!("GET {target} HTTP/{version}\r\n{host}{auth}Connection: close\r\n\r\n");
        raw(gw, head.as_bytes()).await
    }
}

/// Write `request` on a new connection and read the answer until the gateway closes.
async fn raw(gw: &TestGateway, request: &[u8]) -> Seen {
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    within("the answer", s.read_to_end(&mut answer))
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"));
    let path = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("x-seen-path")
            .then(|| value.trim().to_owned())
    });
    Seen {
        status,
        path,
        code: code_of(status, body),
    }
}

fn code_of(status: u16, body: &str) -> Option<String> {
    (status >= 400).then(|| {
        let e: berth_core::ErrorBody = serde_json::from_str(body)
            .unwrap_or_else(|e| panic!("not the Berth error shape: {body:?}: {e}"));
        e.code
    })
}

async fn h2c_get(gw: &TestGateway, path: &str, token: Option<&str>) -> Seen {
    let mut req = http::Request::builder().uri(format!("http://app.test{path}"));
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    h2c_send(gw, req.body(Full::<Bytes>::default()).unwrap()).await
}

async fn h2c_send(gw: &TestGateway, req: http::Request<Full<Bytes>>) -> Seen {
    let stream = TcpStream::connect(gw.addr).await.unwrap();
    let (mut sender, conn) = within(
        "h2 handshake",
        hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        ),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let response = within("h2 answer", sender.send_request(req)).await.unwrap();
    let status = response.status().as_u16();
    let path = response
        .headers()
        .get("x-seen-path")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = within("h2 body", response.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    Seen {
        status,
        path,
        code: code_of(status, &String::from_utf8_lossy(&body)),
    }
}

#[tokio::test]
async fn traversal_forms_never_reach_an_auth_route_without_a_token() {
    let s = setup().await;
    // (path, what the gateway answers without a token): 401 when it normalises to /priv, 400
    // when it is refused as ambiguous.
    let cases: &[(&str, u16)] = &[
        ("/pub/../priv/x", 401),
        ("/pub/../priv", 401),
        ("/pub/../priv/", 401),
        ("/pub/%2e%2e/priv/x", 401),
        ("/pub/%2E%2E/priv/x", 401),
        ("/pub/.%2E/priv/x", 401),
        ("/pub/%2e./priv/x", 401),
        ("/./priv/x", 401),
        ("/%2e/priv/x", 401),
        ("/pub/a/../../priv/x", 401),
        ("/../priv/x", 401),
        ("//priv/x", 401),
        ("/pub//../priv/x", 401),
        ("/%70riv/x", 401),
        ("/%70%72%69%76/x", 401),
        ("/priv/./x", 401),
        ("/priv/x/.", 401),
        ("/pub/../priv/x?next=/pub/../pub", 401),
        // Path parameters, which Java servers strip: `/priv;x/a` is their `/priv/a`.
        ("/priv;jsessionid=1/x", 401),
        ("/priv;x", 401),
        ("/pub/../priv;x/y", 401),
        ("/;x/priv/y", 401),
        ("/;/priv", 401),
        ("/pub/..;/priv/x", 400),
        ("/pub/..;x=1/priv/x", 400),
        ("/pub/.;/priv/x", 400),
        ("/pub/%2e%2e;/priv/x", 400),
        ("/pub/..%3B/priv/x", 400),
        ("/pub/..%2Fpriv/x", 400),
        ("/pub/..%2f..%2fpriv/x", 400),
        ("/pub/..%5Cpriv/x", 400),
        ("/priv%2Fx", 400),
        ("/priv%5cx", 400),
        ("/pub/.../priv/x", 400),
        ("/pub/..%20/priv/x", 400),
        ("/pub/%2E%2e%2E/priv/x", 400),
        ("/priv%00/x", 400),
        ("/pub/%2/priv", 400),
    ];
    for via in ALL {
        for (path, want) in cases {
            let seen = s.get(via, path, None).await;
            let code = if *want == 401 {
                "unauthorized"
            } else {
                "bad_request"
            };
            assert_eq!(
                (seen.status, seen.code.as_deref()),
                (*want, Some(code)),
                "{via:?} {path}: {seen:?}"
            );
        }
    }
    let reached = s.up.paths.lock().unwrap().clone();
    assert!(
        reached.is_empty(),
        "the replica was reached without a token: {reached:?}"
    );
}

#[tokio::test]
async fn the_normalised_path_is_what_is_routed_and_forwarded() {
    let s = setup().await;
    let cases: &[(&str, Option<&str>, &str)] = &[
        // (sent, token, what the replica sees)
        ("/pub/x.y?z=1", None, "/pub/x.y?z=1"),
        (
            "/pub/a/./b/../c?q=../x&r=%2e",
            None,
            "/pub/a/c?q=../x&r=%2e",
        ),
        ("/pub/%7Euser/a%3bb", None, "/pub/~user/a%3Bb"),
        ("/pub//x//", None, "/pub/x/"),
        ("/pub;v=1/../pub/y", None, "/pub/y"),
        ("/priv/../pub/z", None, "/pub/z"),
        ("/pub/../priv/x", Some("good"), "/priv/x"),
        ("/pub/%2e%2e/priv/", Some("good"), "/priv/"),
        // strip_prefix works on the normalised path.
        ("/api/./x/../y?q=1", None, "/y?q=1"),
        ("/pub/../api/z", None, "/z"),
        ("/api/%2e%2e/api", None, "/"),
    ];
    for via in ALL {
        for (path, token, want) in cases {
            let seen = s.get(via, path, *token).await;
            assert_eq!(
                (seen.status, seen.path.as_deref()),
                (200, Some(*want)),
                "{via:?} {path}: {seen:?}"
            );
        }
    }
    // Without a prefix that matches once normalised: no route.
    let seen = s.get(Via::FastPath, "/pub/../other", None).await;
    assert_eq!(seen.code.as_deref(), Some("no_route"), "{seen:?}");
}

/// HTTP/2 requests skip the HTTP/1 framing guard: the pipeline checks their Host headers.
#[tokio::test]
async fn h2_requests_carry_at_most_one_valid_host() {
    let s = setup().await;
    let request = |hosts: &[&str]| {
        let mut req = http::Request::builder().uri("http://app.test/pub/x");
        for h in hosts {
            req = req.header("host", *h);
        }
        req.body(Full::<Bytes>::default()).unwrap()
    };
    for gw in [&s.fast, &s.general] {
        assert_eq!(h2c_send(gw, request(&["app.test"])).await.status, 200);
        let two = h2c_send(gw, request(&["open.test", "admin.test"])).await;
        assert_eq!(
            (two.status, two.code.as_deref()),
            (400, Some("bad_request"))
        );
        let bad = h2c_send(gw, request(&["a b"])).await;
        assert_eq!(bad.status, 400, "{bad:?}");
    }
}

#[tokio::test]
async fn http11_heads_need_exactly_one_valid_host() {
    let s = setup().await;
    for gw in [&s.fast, &s.general] {
        for (head, want) in [
            ("GET /pub/x HTTP/1.1\r\nConnection: close\r\n\r\n", 400),
            (
                "GET /pub/x HTTP/1.1\r\nHost: a.test\r\nHost: a.test\r\nConnection: close\r\n\r\n",
                400,
            ),
            (
                "GET /pub/x HTTP/1.1\r\nHost: a.test\r\nhost: b.test\r\nConnection: close\r\n\r\n",
                400,
            ),
            (
                "GET /pub/x HTTP/1.1\r\nHost: a.test/priv\r\nConnection: close\r\n\r\n",
                400,
            ),
            (
                "GET /pub/x HTTP/1.0\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
                400,
            ),
            (
                "GET http://a.test/pub/x HTTP/1.1\r\nConnection: close\r\n\r\n",
                400,
            ),
            ("GET /pub/x HTTP/1.0\r\n\r\n", 200),
            (
                "GET /pub/x HTTP/1.1\r\nHost: a.test:8080\r\nConnection: close\r\n\r\n",
                200,
            ),
        ] {
            let seen = raw(gw, head.as_bytes()).await;
            assert_eq!(seen.status, want, "{head:?}: {seen:?}");
            if want == 400 {
                assert_eq!(seen.code.as_deref(), Some("bad_request"), "{head:?}");
            }
        }
    }
    assert_eq!(
        s.up.requests(),
        4,
        "only the good heads reached the replica"
    );
}
