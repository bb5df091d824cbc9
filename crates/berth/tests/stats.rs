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
    // Another team's application answers as if absent: 404 in the caller's own team, and
    // `team_not_found` for a team the caller is not a member of.
    let outsider = team_member(&server, "other", "otto", "owner");
    let (status, _, body) = call(
        &server.api,
        "GET",
        "/api/v1/routes/shop/web/stats",
        Some(&outsider),
        None,
    );
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("app_not_found")),
        "{body}"
    );
    let out = cli_as(
        &server,
        &outsider,
        &["--team", "default", "app", "protect", "shop"],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("(team_not_found)"),
        "{out:?}"
    );
    let out = cli_as(&server, &outsider, &["app", "protect", "shop"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("(app_not_found)"),
        "{out:?}"
    );

    // A report is what a gateway sends: its 12 latency buckets, not more.
    let counters = |buckets: usize| {
        serde_json::json!({"gateway": "gw-test", "services": [{"app": "x", "service": "y",
            "responses": [0, 1, 0, 0, 0], "latency_buckets": vec![1; buckets]}]})
    };
    let (status, _, _) = call(
        &server.api,
        "POST",
        "/api/v1/gateway/stats",
        Some(&token),
        Some(counters(12)),
    );
    assert_eq!(status, 204);
    let (status, _, body) = call(
        &server.api,
        "POST",
        "/api/v1/gateway/stats",
        Some(&token),
        Some(counters(13)),
    );
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_argument")),
        "{body}"
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("13 latency buckets, not 12"),
        "{body}"
    );
    // The body limit fits the largest report: 10 000 services pass, more do not.
    let many = |n: usize| {
        let s: Vec<serde_json::Value> = (0..n)
            .map(|i| {
                serde_json::json!({"app": format!("app-{i}"), "service": "web",
                    "responses": vec![u64::MAX; 5], "latency_buckets": vec![u64::MAX; 12]})
            })
            .collect();
        serde_json::json!({"gateway": "gw-many", "services": s})
    };
    let (status, _, body) = call(
        &server.api,
        "POST",
        "/api/v1/gateway/stats",
        Some(&token),
        Some(many(10_000)),
    );
    assert_eq!(status, 204, "{body}");
    let (status, _, body) = call(
        &server.api,
        "POST",
        "/api/v1/gateway/stats",
        Some(&token),
        Some(many(10_001)),
    );
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_argument")),
        "{body}"
    );
    // A gateway that probes (Swarm) adds its endpoints' readiness: accepted, within the same
    // bounds as names.
    let probed = |id: String| {
        serde_json::json!({"gateway": "gw-probes", "services": [],
            "readiness": [{"app": "shop", "id": id, "state": "ready"}]})
    };
    let (status, _, body) = call(
        &server.api,
        "POST",
        "/api/v1/gateway/stats",
        Some(&token),
        Some(probed("t1".into())),
    );
    assert_eq!(status, 204, "{body}");
    let (status, _, body) = call(
        &server.api,
        "POST",
        "/api/v1/gateway/stats",
        Some(&token),
        Some(probed("t".repeat(201))),
    );
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_argument")),
        "{body}"
    );
    server.ok(&["rm", "--app", "shop"]);
}
