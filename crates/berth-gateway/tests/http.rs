//! The HTTP gateway against real hyper upstreams on 127.0.0.1.

mod common;

use berth_gateway::GatewayConfig;
use bytes::Bytes;
use common::*;
use http_body_util::Full;
use std::collections::HashMap;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[tokio::test]
async fn routes_by_host_and_longest_prefix() {
    let root = Upstream::start("root").await;
    let api = Upstream::start("api").await;
    let shop = Upstream::start("shop").await;
    let gw = TestGateway::start(table(
        1,
        vec![
            route(None, "/", false, vec![root.endpoint()]),
            route(None, "/api", false, vec![api.endpoint()]),
            route(Some("shop.test"), "/", false, vec![shop.endpoint()]),
        ],
    ))
    .await;

    assert_eq!(gw.get(None, "/api/x").await.upstream(), "api");
    assert_eq!(gw.get(None, "/api").await.upstream(), "api");
    assert_eq!(gw.get(None, "/apiary").await.upstream(), "root");
    assert_eq!(gw.get(Some("shop.test"), "/api/x").await.upstream(), "shop");
    assert_eq!(gw.get(Some("SHOP.test:8080"), "/").await.upstream(), "shop");
    assert_eq!(gw.get(Some("other.test"), "/api").await.upstream(), "api");
    let r = gw.get(None, "/api/x?q=1").await;
    assert_eq!(
        r.header("x-seen-path"),
        Some("/api/x?q=1"),
        "no strip: path kept"
    );
}

#[tokio::test]
async fn strip_prefix_keeps_a_leading_slash_and_the_query() {
    let api = Upstream::start("api").await;
    let gw = TestGateway::start(table(
        1,
        vec![route(None, "/api", true, vec![api.endpoint()])],
    ))
    .await;
    assert_eq!(
        gw.get(None, "/api/x/y?q=1").await.header("x-seen-path"),
        Some("/x/y?q=1")
    );
    assert_eq!(gw.get(None, "/api").await.header("x-seen-path"), Some("/"));
    assert_eq!(
        gw.get(None, "/api?q=2").await.header("x-seen-path"),
        Some("/?q=2")
    );
}

#[tokio::test]
async fn round_robin_spreads_sequential_requests_evenly() {
    let ups = [
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    ];
    let gw = TestGateway::start(table(
        1,
        vec![route(
            None,
            "/",
            false,
            ups.iter().map(Upstream::endpoint).collect(),
        )],
    ))
    .await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..30 {
        *counts
            .entry(gw.get(None, "/").await.upstream().to_owned())
            .or_default() += 1;
    }
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(counts.values().all(|&c| c == 10), "{counts:?}");
}

#[tokio::test]
async fn forwarding_headers_and_request_ids() {
    let up = Upstream::start("up").await;
    let gw = TestGateway::start(table(1, vec![route(None, "/", false, vec![up.endpoint()])])).await;

    // A well-formed client id is kept, both upstream and in the answer.
    let req = gw
        .request("GET", Some("app.test"), "/h")
        .header("x-request-id", "client-id_1.2")
        .header("x-forwarded-for", "203.0.113.9")
        .header("connection", "keep-alive, x-secret")
        .header("x-secret", "hop")
        .body(Full::default())
        .unwrap();
    let r = gw.send(req).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-request-id"), Some("client-id_1.2"));
    assert_eq!(r.header("x-seen-x-request-id"), Some("client-id_1.2"));
    assert_eq!(r.header("x-seen-host"), Some("app.test"));
    assert_eq!(r.header("x-seen-x-forwarded-host"), Some("app.test"));
    assert_eq!(r.header("x-seen-x-forwarded-proto"), Some("http"));
    assert_eq!(
        r.header("x-seen-x-forwarded-for"),
        Some("203.0.113.9, 127.0.0.1")
    );
    assert_eq!(
        r.header("x-seen-x-secret"),
        None,
        "header named by Connection removed"
    );

    // A malformed id is replaced by a generated one, the same upstream and downstream.
    let req = gw
        .request("GET", None, "/h")
        .header("x-request-id", "bad id!")
        .body(Full::default())
        .unwrap();
    let r = gw.send(req).await;
    let id = r.header("x-request-id").unwrap().to_owned();
    assert_eq!(id.len(), 32);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(r.header("x-seen-x-request-id"), Some(id.as_str()));
    assert_eq!(r.header("x-seen-x-forwarded-for"), Some("127.0.0.1"));

    // None given: generated, and different per request.
    let a = gw.get(None, "/").await;
    let b = gw.get(None, "/").await;
    assert_ne!(a.header("x-request-id"), b.header("x-request-id"));
}

#[tokio::test]
async fn error_answers_have_the_berth_shape() {
    let refused = refusing_addr().await;
    // An upstream that reads the request and closes without answering.
    let broken = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let broken_addr = broken.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = broken.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.shutdown().await;
            });
        }
    });
    let hang = Upstream::start("hang").await;
    let config = GatewayConfig {
        request_timeout: Duration::from_millis(300),
        ..GatewayConfig::default()
    };
    let gw = TestGateway::start_with(
        table(
            1,
            vec![
                route(Some("app.test"), "/empty", false, vec![]),
                route(Some("app.test"), "/refused", false, vec![ep("r", refused)]),
                route(
                    Some("app.test"),
                    "/broken",
                    false,
                    vec![ep("b", broken_addr)],
                ),
                route(Some("app.test"), "/hang", false, vec![hang.endpoint()]),
            ],
        ),
        config,
    )
    .await;

    for (host, path, status, code) in [
        (Some("other.test"), "/", 404, "no_route"),
        (Some("app.test"), "/nothing", 404, "no_route"),
        (Some("app.test"), "/empty", 503, "no_healthy_upstream"),
        (Some("app.test"), "/refused", 502, "upstream_error"),
        (Some("app.test"), "/broken", 502, "upstream_error"),
        (Some("app.test"), "/hang", 504, "upstream_timeout"),
    ] {
        let req = gw
            .request("GET", host, path)
            .header("x-request-id", "rid-1")
            .body(Full::default())
            .unwrap();
        let r = gw.send(req).await;
        assert_eq!(r.status, status, "{path}: {r:?}");
        let body = r.error();
        assert_eq!(body.code, code, "{path}");
        assert!(!body.message.is_empty());
        assert_eq!(body.request_id, "rid-1");
        assert_eq!(r.header("x-request-id"), Some("rid-1"));
    }
    // The timed-out request no longer counts against the endpoint.
    let gateway = gw.gateway.clone();
    eventually("in-flight back to 0 after a timeout", || {
        gateway.in_flight("hang") == 0
    })
    .await;
}

#[tokio::test]
async fn get_is_retried_on_another_endpoint_when_one_refuses() {
    let good = Upstream::start("good").await;
    let refused = refusing_addr().await;
    let gw = TestGateway::start(table(
        1,
        vec![route(
            None,
            "/",
            false,
            vec![ep("dead", refused), good.endpoint()],
        )],
    ))
    .await;
    for _ in 0..20 {
        let r = gw.get(None, "/").await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.upstream(), "good");
    }
    assert_eq!(gw.gateway.in_flight("dead"), 0);
}

#[tokio::test]
async fn post_to_a_refusing_endpoint_is_retried_because_it_was_never_sent() {
    let good = Upstream::start("good").await;
    let refused = refusing_addr().await;
    let gw = TestGateway::start(table(
        1,
        vec![
            route(None, "/", false, vec![ep("dead", refused), good.endpoint()]),
            route(None, "/only-dead", false, vec![ep("dead", refused)]),
        ],
    ))
    .await;
    for i in 0..6 {
        let req = gw
            .request("POST", None, "/")
            .body(Full::new(Bytes::from(format!("payload-{i}"))))
            .unwrap();
        let r = gw.send(req).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body, format!("good:payload-{i}"), "body streamed intact");
        assert_eq!(r.header("x-seen-method"), Some("POST"));
    }
    let req = gw
        .request("POST", None, "/only-dead")
        .body(Full::new(Bytes::from_static(b"x")))
        .unwrap();
    let r = gw.send(req).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.error().code, "upstream_error");
}

#[tokio::test]
async fn upstream_connections_are_reused() {
    let up = Upstream::start("up").await;
    let gw = TestGateway::start(table(1, vec![route(None, "/", false, vec![up.endpoint()])])).await;
    for i in 0..100 {
        let r = if i % 2 == 0 {
            gw.get(None, "/x").await
        } else {
            let req = gw
                .request("POST", None, "/y")
                .body(Full::new(Bytes::from_static(b"body")))
                .unwrap();
            gw.send(req).await
        };
        assert_eq!(r.status, 200);
    }
    assert!(
        up.accepts() <= 2,
        "upstream accepted {} connections for 100 requests",
        up.accepts()
    );
    let gateway = gw.gateway.clone();
    eventually("one idle pooled connection", || {
        gateway.idle_connections("up") == 1
    })
    .await;
}

#[tokio::test]
async fn idle_pooled_connections_expire() {
    let up = Upstream::start("up").await;
    let config = GatewayConfig {
        pool_idle_timeout: Duration::from_millis(100),
        ..GatewayConfig::default()
    };
    let gw = TestGateway::start_with(
        table(1, vec![route(None, "/", false, vec![up.endpoint()])]),
        config,
    )
    .await;
    assert_eq!(gw.get(None, "/").await.status, 200);
    let gateway = gw.gateway.clone();
    eventually("expired connection dropped", || {
        gateway.idle_connections("up") == 0
    })
    .await;
    eventually("upstream sees it closed", || up.open() == 0).await;
    assert_eq!(gw.get(None, "/").await.status, 200);
}

#[tokio::test]
async fn h2c_clients_are_served_over_http1_upstreams() {
    let up = Upstream::start("up").await;
    let gw = TestGateway::start(table(
        1,
        vec![route(Some("app.test"), "/", true, vec![up.endpoint()])],
    ))
    .await;
    let req = http::Request::builder()
        .uri(format!("http://app.test:{}/p?q=1", gw.addr.port()))
        .body(Full::<Bytes>::default())
        .unwrap();
    // Prior-knowledge HTTP/2 over plain TCP: the host comes from the :authority pseudo-header.
    let stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
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
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["x-seen-host"],
        format!("app.test:{}", gw.addr.port()).as_str()
    );
    assert_eq!(response.headers()["x-seen-path"], "/p?q=1");
}

#[tokio::test]
async fn in_flight_counts_a_slow_request_until_its_body_is_done() {
    let up = Upstream::start("slow").await;
    let gw = TestGateway::start(table(1, vec![route(None, "/", false, vec![up.endpoint()])])).await;
    assert_eq!(gw.gateway.in_flight("slow"), 0);
    let req = gw
        .request("GET", None, "/wait")
        .body(Full::default())
        .unwrap();
    let client = gw.client.clone();
    let pending = tokio::spawn(async move { client.request(req).await });
    let gateway = gw.gateway.clone();
    eventually("the slow request is in flight", || {
        gateway.in_flight("slow") == 1
    })
    .await;
    up.release();
    let response = within("slow answer", pending).await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(&body[..], b"slow:");
    eventually("in-flight back to 0", || gateway.in_flight("slow") == 0).await;
}

#[tokio::test]
async fn a_new_table_takes_effect_without_restart() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let gw = TestGateway::start(table(1, vec![route(None, "/", false, vec![a.endpoint()])])).await;
    assert_eq!(gw.get(None, "/").await.upstream(), "a");
    gw.publish(table(2, vec![route(None, "/", false, vec![b.endpoint()])]))
        .await;
    assert_eq!(gw.get(None, "/").await.upstream(), "b");
    gw.publish(table(3, vec![])).await;
    assert_eq!(gw.get(None, "/").await.status, 404);
}

#[tokio::test]
async fn idle_connections_to_a_removed_endpoint_are_closed() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let gw = TestGateway::start(table(1, vec![route(None, "/", false, vec![a.endpoint()])])).await;
    for _ in 0..3 {
        assert_eq!(gw.get(None, "/").await.upstream(), "a");
    }
    let gateway = gw.gateway.clone();
    eventually("a pooled connection to a", || {
        gateway.idle_connections("a") == 1
    })
    .await;
    assert_eq!(a.open(), 1);

    gw.publish(table(2, vec![route(None, "/", false, vec![b.endpoint()])]))
        .await;
    assert_eq!(gw.gateway.idle_connections("a"), 0);
    eventually("a's connections closed", || a.open() == 0).await;
    assert_eq!(gw.get(None, "/").await.upstream(), "b");
    assert_eq!(a.accepts(), 1, "no new connection to the removed endpoint");
}

#[tokio::test]
async fn a_drained_endpoint_in_flight_is_counted_and_its_connection_not_reused() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let gw = TestGateway::start(table(1, vec![route(None, "/", false, vec![a.endpoint()])])).await;
    let req = gw
        .request("GET", None, "/wait")
        .body(Full::default())
        .unwrap();
    let client = gw.client.clone();
    let pending = tokio::spawn(async move { client.request(req).await });
    let gateway = gw.gateway.clone();
    eventually("request in flight to a", || gateway.in_flight("a") == 1).await;

    // a leaves rotation while its request runs: still counted.
    gw.publish(table(2, vec![route(None, "/", false, vec![b.endpoint()])]))
        .await;
    assert_eq!(gw.gateway.in_flight("a"), 1);
    a.release();
    let response = within("drained answer", pending).await.unwrap().unwrap();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(&body[..], b"a:");
    eventually("drained endpoint reaches 0", || gateway.in_flight("a") == 0).await;
    eventually("its connection is closed, not pooled", || a.open() == 0).await;
    assert_eq!(gw.gateway.idle_connections("a"), 0);
}

#[tokio::test]
async fn graceful_shutdown_lets_an_in_flight_request_finish() {
    let up = Upstream::start("slow").await;
    let mut gw =
        TestGateway::start(table(1, vec![route(None, "/", false, vec![up.endpoint()])])).await;
    let req = gw
        .request("GET", None, "/wait")
        .body(Full::default())
        .unwrap();
    let client = gw.client.clone();
    let pending = tokio::spawn(async move {
        let response = client.request(req).await.unwrap();
        let status = response.status();
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        (status, body)
    });
    let gateway = gw.gateway.clone();
    eventually("request in flight", || gateway.in_flight("slow") == 1).await;

    gw.shutdown.cancel();
    let mut server = gw.server.take().unwrap();
    // The server waits for the request: it has not returned after the listener closed.
    let addr = gw.addr;
    eventually("listener closed", || {
        std::net::TcpStream::connect(addr).is_err()
    })
    .await;
    assert!(
        !server.is_finished(),
        "serve_http returned with a request in flight"
    );

    up.release();
    let (status, body) = within("in-flight answer", pending).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(&body[..], b"slow:");
    within("serve_http returns", &mut server)
        .await
        .unwrap()
        .unwrap();
}

/// Without any `retries` policy, an idempotent bodiless request whose exchange broke before any
/// answer (the replica died mid-request) is retried once on another replica; a POST is not.
#[tokio::test]
async fn a_broken_exchange_is_retried_on_another_replica_by_default() {
    let broken = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let broken_addr = broken.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = broken.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.shutdown().await;
            });
        }
    });
    let good = Upstream::start("good").await;
    let gw = TestGateway::start(table(
        1,
        vec![route(
            Some("app.test"),
            "/",
            false,
            vec![ep("b", broken_addr), good.endpoint()],
        )],
    ))
    .await;
    for _ in 0..6 {
        let r = gw.get(Some("app.test"), "/x").await;
        assert_eq!(r.status, 200, "{r:?}");
    }
    let post = gw
        .request("POST", Some("app.test"), "/x")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let mut statuses = std::collections::BTreeSet::new();
    statuses.insert(gw.send(post).await.status);
    let post = gw
        .request("POST", Some("app.test"), "/x")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    statuses.insert(gw.send(post).await.status);
    assert!(
        statuses.contains(&502),
        "a POST that reached the broken replica must not be retried: {statuses:?}"
    );
}
