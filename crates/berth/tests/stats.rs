//! The gateway's figures reach the control plane (docs/market.md): requests through the
//! in-process gateway appear, within seconds, in `GET /api/v1/routes/{app}/{service}/stats` —
//! by minute, with 5xx counted as errors and latency percentiles. Real Docker.

mod common;

use berth_testkit::{testapp_image, wait_for, TestRun};
use common::*;
use std::time::Duration;

#[test]
fn requests_through_the_gateway_are_counted_per_minute() {
    let run = TestRun::new("stats");
    let image = testapp_image(&run);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&run, dir.path());
    let file = compose(
        dir.path(),
        "compose.yaml",
        &format!("services:\n  web:\n    image: {image}\n    environment: {{ HEALTHY: \"0\" }}\n    expose: [\"8080\"]\n    x-berth:\n      route: {{ path_prefix: / }}\n"),
    );
    server.ok(&["apply", "-f", file.to_str().unwrap(), "--app", "shop"]);
    for _ in 0..40 {
        assert_eq!(server.get("/").unwrap().0, 200);
    }
    // HEALTHY=0: the test app answers `/healthz` with 503, an error.
    for _ in 0..10 {
        assert_eq!(server.get("/healthz").unwrap().0, 503);
    }
    let token = server.token();
    let stats = wait_for(
        Duration::from_secs(10),
        "the requests in the figures",
        || {
            let (status, _, body) = call(
                &server.api,
                "GET",
                "/api/v1/routes/shop/web/stats",
                Some(&token),
                None,
            );
            assert_eq!(status, 200, "{body}");
            let minutes = body["minutes"].as_array()?;
            let requests: u64 = minutes
                .iter()
                .map(|m| m["requests"].as_u64().unwrap())
                .sum();
            let errors: u64 = minutes.iter().map(|m| m["errors"].as_u64().unwrap()).sum();
            (requests >= 50 && errors >= 10).then_some(body)
        },
    );
    assert_eq!(stats["app"], "shop");
    let minutes = stats["minutes"].as_array().unwrap();
    let requests: u64 = minutes
        .iter()
        .map(|m| m["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(requests, 50, "{stats}");
    assert!(
        minutes.iter().any(|m| m["p95_ms"].as_f64().is_some()),
        "{stats}"
    );
    // Unknown names are 404s, as everywhere.
    let (status, _, body) = call(
        &server.api,
        "GET",
        "/api/v1/routes/shop/nope/stats",
        Some(&token),
        None,
    );
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("service_not_found"))
    );
    let (status, _, body) = call(
        &server.api,
        "GET",
        "/api/v1/routes/nope/web/stats",
        Some(&token),
        None,
    );
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("app_not_found"))
    );
    server.ok(&["rm", "--app", "shop"]);
}
