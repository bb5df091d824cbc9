//! The gateway's policy layers against real hyper upstreams on 127.0.0.1: rate limits,
//! authentication, bulkheads, circuit breakers, timeouts, retries, passive health, redirects,
//! request hardening and metrics.

mod common;

use berth_core::auth::{AuthFailure, TokenVerifier, VerifiedToken};
use berth_core::policy::{
    AuthPolicy, Bulkhead, CircuitBreaker, Issuer, RateKey, RateLimit, Retries, RoutePolicy,
    Timeouts,
};
use berth_core::HttpRoute;
use berth_gateway::GatewayConfig;
use bytes::Bytes;
use common::*;
use http_body_util::Full;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn with_policy(mut r: HttpRoute, policy: RoutePolicy) -> HttpRoute {
    r.policy = policy;
    r
}

/// Accepts `good-<subject>`; refuses anything else.
struct FakeVerifier;

impl TokenVerifier for FakeVerifier {
    fn verify(
        &self,
        token: &str,
        _policy: &AuthPolicy,
        _issuers: &[Issuer],
    ) -> Result<VerifiedToken, AuthFailure> {
        match token.strip_prefix("good-") {
            Some(sub) => Ok(VerifiedToken {
                subject: sub.to_owned(),
                issuer: "berth".into(),
                claims_json: format!(r#"{{"sub":"{sub}","name":"Zoë"}}"#),
                valid: None,
            }),
            None => Err(AuthFailure {
                reason: "bad signature".into(),
            }),
        }
    }
}

fn verifier_config() -> GatewayConfig {
    GatewayConfig::default().with_verifier(Arc::new(FakeVerifier))
}

async fn get_with(gw: &TestGateway, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut b = gw.request("GET", None, path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    gw.send(b.body(Full::default()).unwrap()).await
}

#[tokio::test]
async fn rate_limit_answers_429_with_headers_and_survives_table_swaps() {
    let up = Upstream::start("up").await;
    let limited = |version| {
        table(
            version,
            vec![with_policy(
                route(None, "/", false, vec![up.endpoint()]),
                RoutePolicy {
                    rate_limit: Some(RateLimit {
                        per_second: 1,
                        burst: 2,
                        key: RateKey::Route,
                    }),
                    ..Default::default()
                },
            )],
        )
    };
    let gw = TestGateway::start(limited(1)).await;
    assert_eq!(gw.get(None, "/").await.status, 200);
    assert_eq!(gw.get(None, "/").await.status, 200);
    let r = gw.get(None, "/").await;
    assert_eq!(r.status, 429, "{r:?}");
    assert_eq!(r.error().code, "rate_limited");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.header("ratelimit-policy"), Some(r#""route";q=1;w=1"#));
    assert!(
        r.header("ratelimit")
            .unwrap()
            .starts_with(r#""route";r=0;t="#),
        "{r:?}"
    );
    assert!(r.header("x-request-id").is_some());
    // A new table with the same route keeps the bucket: still limited.
    gw.publish(limited(2)).await;
    assert_eq!(gw.get(None, "/").await.status, 429);
    assert_eq!(up.requests(), 2);
    // The bucket refills.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(gw.get(None, "/").await.status, 200);
    let text = gw.gateway.render_metrics();
    assert!(
        text.contains(r#"berth_gateway_route_rate_limited_total{app="app",service="svc",host="",prefix="/"} 2"#),
        "{text}"
    );
}

/// Allowed requests on a limited route carry the IETF fields too (remaining quota, seconds
/// until the bucket is full); an unlimited route gets none.
#[tokio::test]
async fn rate_limit_fields_are_on_successful_answers_of_limited_routes_only() {
    let up = Upstream::start("up").await;
    let limit = |key| RoutePolicy {
        rate_limit: Some(RateLimit {
            per_second: 1,
            burst: 3,
            key,
        }),
        ..Default::default()
    };
    let gw = TestGateway::start(table(
        1,
        vec![
            with_policy(
                route(None, "/limited", false, vec![up.endpoint()]),
                limit(RateKey::Route),
            ),
            with_policy(
                route(None, "/by-ip", false, vec![up.endpoint()]),
                limit(RateKey::Ip),
            ),
            route(None, "/free", false, vec![up.endpoint()]),
        ],
    ))
    .await;
    for remaining in [2, 1, 0] {
        let r = gw.get(None, "/limited").await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.header("ratelimit-policy"), Some(r#""route";q=1;w=1"#));
        assert_eq!(
            r.header("ratelimit"),
            Some(format!(r#""route";r={remaining};t={}"#, 3 - remaining).as_str()),
            "{r:?}"
        );
    }
    let r = gw.get(None, "/limited").await;
    assert_eq!(r.status, 429);
    assert!(r
        .header("ratelimit")
        .unwrap()
        .starts_with(r#""route";r=0;"#));
    // The service's own answer (here a 503) carries them as well, with the key named.
    up.fail_with(503);
    let r = gw.get(None, "/by-ip").await;
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.body, "failing");
    assert_eq!(r.header("ratelimit-policy"), Some(r#""ip";q=1;w=1"#));
    assert_eq!(r.header("ratelimit"), Some(r#""ip";r=2;t=1"#));
    up.fail_with(0);
    let r = gw.get(None, "/free").await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("ratelimit-policy").is_none() && r.header("ratelimit").is_none(),
        "{r:?}"
    );
}

#[tokio::test]
async fn consumer_limits_count_per_subject_and_ip_limits_before_auth() {
    let up = Upstream::start("up").await;
    let auth = Some(AuthPolicy::default());
    let gw = TestGateway::start_with(
        table(
            1,
            vec![
                with_policy(
                    route(None, "/consumer", false, vec![up.endpoint()]),
                    RoutePolicy {
                        auth: auth.clone(),
                        rate_limit: Some(RateLimit {
                            per_second: 1,
                            burst: 1,
                            key: RateKey::Consumer,
                        }),
                        ..Default::default()
                    },
                ),
                with_policy(
                    route(None, "/ip", false, vec![up.endpoint()]),
                    RoutePolicy {
                        auth,
                        rate_limit: Some(RateLimit {
                            per_second: 1,
                            burst: 1,
                            key: RateKey::Ip,
                        }),
                        ..Default::default()
                    },
                ),
            ],
        ),
        verifier_config(),
    )
    .await;
    let alice = [("authorization", "Bearer good-alice")];
    let bob = [("authorization", "Bearer good-bob")];
    assert_eq!(get_with(&gw, "/consumer", &alice).await.status, 200);
    let r = get_with(&gw, "/consumer", &alice).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("ratelimit-policy"), Some(r#""consumer";q=1;w=1"#));
    assert_eq!(
        get_with(&gw, "/consumer", &bob).await.status,
        200,
        "own bucket"
    );
    // Unauthenticated requests never reach (or spend) a consumer bucket.
    assert_eq!(get_with(&gw, "/consumer", &[]).await.status, 401);

    // By IP: counted before authentication, so even bad tokens spend it.
    assert_eq!(
        get_with(&gw, "/ip", &[("authorization", "Bearer nope")])
            .await
            .status,
        401
    );
    assert_eq!(get_with(&gw, "/ip", &alice).await.status, 429);
}

#[tokio::test]
async fn auth_hook_refuses_bad_tokens_and_passes_identity_upstream() {
    let up = Upstream::start("up").await;
    let auth_route = |prefix| {
        with_policy(
            route(None, prefix, false, vec![up.endpoint()]),
            RoutePolicy {
                auth: Some(AuthPolicy {
                    issuers: vec!["berth".into()],
                    audiences: vec![],
                    team: None,
                    subscribers: None,
                }),
                ..Default::default()
            },
        )
    };
    let gw = TestGateway::start_with(
        table(
            1,
            vec![
                auth_route("/private"),
                route(None, "/public", false, vec![up.endpoint()]),
            ],
        ),
        verifier_config(),
    )
    .await;

    let r = get_with(&gw, "/private", &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.error().code, "unauthorized");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let r = get_with(&gw, "/private", &[("authorization", "Bearer forged")]).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer error="invalid_token""#)
    );
    assert!(!r.body.contains("bad signature"), "reason stays in the log");
    assert_eq!(up.requests(), 0);

    let r = get_with(
        &gw,
        "/private",
        &[
            ("authorization", "Bearer good-alice"),
            ("x-berth-subject", "root"),
            ("X-Berth-Evil", "1"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-seen-x-berth-subject"), Some("alice"));
    assert_eq!(r.header("x-seen-x-berth-issuer"), Some("berth"));
    assert_eq!(
        r.header("x-seen-x-berth-claims"),
        Some(r#"{"sub":"alice","name":"Zo\u00eb"}"#)
    );
    assert_eq!(r.header("x-seen-x-berth-evil"), None);

    // Spoofed identity headers are stripped on routes without auth too.
    let r = get_with(
        &gw,
        "/public",
        &[("x-berth-subject", "root"), ("x-berth-evil", "1")],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-seen-x-berth-subject"), None);
    assert_eq!(r.header("x-seen-x-berth-evil"), None);

    // Without a verifier an auth route fails closed.
    let closed = TestGateway::start(table(1, vec![auth_route("/private")])).await;
    let r = get_with(
        &closed,
        "/private",
        &[("authorization", "Bearer good-alice")],
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.error().code, "unauthorized");
}

/// Accepts `good-<subject>` when the issuer `berth` is configured and the route accepts
/// audience `a`; says the result may be remembered for an hour; counts its calls.
struct Remembered(std::sync::atomic::AtomicUsize);

impl TokenVerifier for Remembered {
    fn verify(
        &self,
        token: &str,
        policy: &AuthPolicy,
        issuers: &[Issuer],
    ) -> Result<VerifiedToken, AuthFailure> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let refuse = |reason: &str| AuthFailure {
            reason: reason.into(),
        };
        let sub = token.strip_prefix("good-").ok_or_else(|| refuse("bad"))?;
        if !issuers.iter().any(|i| i.name == "berth") {
            return Err(refuse("unknown issuer"));
        }
        if !policy.audiences.iter().any(|a| a == "a") {
            return Err(refuse("audience"));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        Ok(VerifiedToken {
            subject: sub.into(),
            issuer: "berth".into(),
            claims_json: "{}".into(),
            valid: Some(now - 60..now + 3600),
        })
    }
}

#[tokio::test]
async fn a_remembered_token_is_checked_again_on_another_route_and_after_a_table_change() {
    let up = Upstream::start("up").await;
    let auth_route = |prefix, audience: &str| {
        with_policy(
            route(None, prefix, false, vec![up.endpoint()]),
            RoutePolicy {
                auth: Some(AuthPolicy {
                    issuers: vec!["berth".into()],
                    audiences: vec![audience.into()],
                    team: None,
                    subscribers: None,
                }),
                ..Default::default()
            },
        )
    };
    let with_issuers = |version, issuers: Vec<Issuer>| {
        Arc::new(berth_core::RoutingTable {
            issuers,
            ..(*table(version, vec![auth_route("/a", "a"), auth_route("/b", "b")])).clone()
        })
    };
    let berth = Issuer {
        name: "berth".into(),
        issuer: "https://berth.local".into(),
        jwks: None,
        hs256_secret: None,
    };
    let verifier = Arc::new(Remembered(std::sync::atomic::AtomicUsize::new(0)));
    let gw = TestGateway::start_with(
        with_issuers(1, vec![berth]),
        GatewayConfig::default().with_verifier(verifier.clone()),
    )
    .await;
    let calls = || verifier.0.load(std::sync::atomic::Ordering::Relaxed);
    let token = [("authorization", "Bearer good-alice")];
    for _ in 0..3 {
        assert_eq!(get_with(&gw, "/a", &token).await.status, 200);
    }
    assert_eq!(calls(), 1, "the verified token was not remembered");
    // Another route (another audience): verified again, and refused.
    for _ in 0..2 {
        assert_eq!(get_with(&gw, "/b", &token).await.status, 401);
    }
    assert_eq!(calls(), 3);
    // A new table without the issuer: what was remembered under the old one does not count.
    gw.publish(with_issuers(2, vec![])).await;
    assert_eq!(get_with(&gw, "/a", &token).await.status, 401);
    assert_eq!(up.requests(), 3);
}

#[tokio::test]
async fn bulkhead_refuses_at_once_when_full_and_after_the_queue_timeout() {
    let up = Upstream::start("up").await;
    let gw = Arc::new(
        TestGateway::start(table(
            1,
            vec![with_policy(
                route(None, "/", false, vec![up.endpoint()]),
                RoutePolicy {
                    max_concurrency: Some(Bulkhead {
                        limit: 1,
                        queue: 1,
                        queue_timeout_ms: 300,
                    }),
                    ..Default::default()
                },
            )],
        ))
        .await,
    );
    let first = tokio::spawn({
        let gw = gw.clone();
        async move { gw.get(None, "/wait/1").await }
    });
    eventually("first request reaches the upstream", || up.requests() == 1).await;
    let queued = tokio::spawn({
        let gw = gw.clone();
        async move { gw.get(None, "/wait/2").await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = std::time::Instant::now();
    let r = gw.get(None, "/third").await;
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.error().code, "over_capacity");
    assert!(started.elapsed() < Duration::from_millis(200), "at once");
    let r = queued.await.unwrap();
    assert_eq!(r.status, 503, "queued past its timeout: {r:?}");
    assert_eq!(r.error().code, "over_capacity");
    up.release();
    assert_eq!(first.await.unwrap().status, 200);
    assert_eq!(
        up.requests(),
        1,
        "refused requests never reached the service"
    );
    // Free again once the first answer was relayed.
    up.release();
    assert_eq!(gw.get(None, "/wait/3").await.status, 200);
    let text = gw.gateway.render_metrics();
    assert!(
        text.contains(
            r#"berth_gateway_service_bulkhead_rejected_total{app="app",service="svc"} 2"#
        ),
        "{text}"
    );
}

fn breaker_policy() -> RoutePolicy {
    RoutePolicy {
        circuit_breaker: Some(CircuitBreaker {
            failure_ratio: 0.5,
            min_requests: 4,
            window_ms: 10_000,
            open_for_ms: 300,
            half_open_probes: 2,
            slow_call: None,
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn breaker_opens_fails_fast_then_half_open_probes_close_it() {
    let up = Upstream::start("up").await;
    let gw = TestGateway::start(table(
        1,
        vec![with_policy(
            route(None, "/", false, vec![up.endpoint()]),
            breaker_policy(),
        )],
    ))
    .await;
    let state = |gw: &TestGateway| {
        let text = gw.gateway.render_metrics();
        text.lines()
            .find(|l| l.starts_with("berth_gateway_service_circuit_state{"))
            .and_then(|l| l.rsplit(' ').next())
            .map(str::to_owned)
            .unwrap_or_default()
    };
    assert_eq!(gw.get(None, "/").await.status, 200);
    up.fail_with(503);
    for _ in 0..3 {
        let r = gw.get(None, "/").await;
        assert_eq!(r.status, 503);
        assert_eq!(r.body, "failing", "the service's own answer is relayed");
    }
    eventually("breaker open", || state(&gw) == "1").await;
    let seen = up.requests();
    let r = gw.get(None, "/").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.error().code, "circuit_open");
    assert_eq!(
        up.requests(),
        seen,
        "open breaker does not call the service"
    );

    // Half-open: a failing probe opens again.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(state(&gw), "2");
    assert_eq!(gw.get(None, "/").await.body, "failing");
    eventually("breaker open again", || state(&gw) == "1").await;
    assert_eq!(gw.get(None, "/").await.error().code, "circuit_open");

    // Half-open again, the service recovered: both probes succeed and it closes.
    up.fail_with(0);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(gw.get(None, "/").await.status, 200);
    assert_eq!(gw.get(None, "/").await.status, 200);
    eventually("breaker closed", || state(&gw) == "0").await;
    for _ in 0..5 {
        assert_eq!(gw.get(None, "/").await.status, 200);
    }
    let text = gw.gateway.render_metrics();
    assert!(
        text.contains(r#"berth_gateway_service_circuit_rejected_total{app="app",service="svc"} 2"#),
        "{text}"
    );
}

#[tokio::test]
async fn breaker_counts_connect_failures_and_timeouts() {
    let refused = refusing_addr().await;
    let hang = Upstream::start("hang").await;
    let policy = |mut p: RoutePolicy| {
        p.timeout = Timeouts {
            per_try_ms: Some(100),
            ..Default::default()
        };
        p
    };
    let mut r1 = route(None, "/refused", false, vec![ep("r", refused)]);
    r1.service = "dead".into();
    let mut r2 = route(None, "/hang", false, vec![hang.endpoint()]);
    r2.service = "slow".into();
    let gw = TestGateway::start(table(
        1,
        vec![
            with_policy(r1, policy(breaker_policy())),
            with_policy(r2, policy(breaker_policy())),
        ],
    ))
    .await;
    for _ in 0..4 {
        assert_eq!(gw.get(None, "/refused").await.status, 502);
        let started = std::time::Instant::now();
        let r = gw.get(None, "/hang").await;
        assert_eq!(r.status, 504, "per-try timeout overrides the default");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    let gateway = gw.gateway.clone();
    eventually("both breakers open", || {
        let t = gateway.render_metrics();
        t.contains(r#"berth_gateway_service_circuit_state{app="app",service="dead"} 1"#)
            && t.contains(r#"berth_gateway_service_circuit_state{app="app",service="slow"} 1"#)
    })
    .await;
    assert_eq!(gw.get(None, "/hang").await.error().code, "circuit_open");
}

#[tokio::test]
async fn retries_are_budgeted_and_only_for_bodiless_idempotent_requests() {
    let up = Upstream::start("up").await;
    up.fail_with(503);
    let config = GatewayConfig {
        eject_after_failures: 0,
        ..GatewayConfig::default()
    };
    let gw = TestGateway::start_with(
        table(
            1,
            vec![with_policy(
                route(None, "/", false, vec![up.endpoint()]),
                RoutePolicy {
                    retries: Some(Retries {
                        attempts: 3,
                        budget_percent: 10,
                    }),
                    ..Default::default()
                },
            )],
        ),
        config,
    )
    .await;
    for _ in 0..20 {
        assert_eq!(gw.get(None, "/").await.status, 503);
    }
    assert_eq!(up.requests(), 22, "20 requests at 10% buy 2 retries");
    // A POST is never retried, even with budget left.
    for _ in 0..20 {
        let _ = gw.get(None, "/").await;
    }
    let before = up.requests();
    let r = gw
        .send(
            gw.request("POST", None, "/")
                .body(Full::new(Bytes::from_static(b"x")))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, 503);
    assert_eq!(up.requests(), before + 1);
    let text = gw.gateway.render_metrics();
    assert!(
        text.contains(r#"berth_gateway_service_retries_total{app="app",service="svc"} 4"#),
        "{text}"
    );
}

#[tokio::test]
async fn a_retry_goes_to_another_replica() {
    let bad = Upstream::start("bad").await;
    let good = Upstream::start("good").await;
    bad.fail_with(502);
    let gw = TestGateway::start(table(
        1,
        vec![with_policy(
            route(None, "/", false, vec![bad.endpoint(), good.endpoint()]),
            RoutePolicy {
                retries: Some(Retries {
                    attempts: 1,
                    budget_percent: 100,
                }),
                ..Default::default()
            },
        )],
    ))
    .await;
    // Request 1 goes to `bad` first (round robin from 0) and is retried on `good`.
    let r = gw.get(None, "/").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream(), "good");
    assert_eq!(bad.requests(), 1);
}

/// A small explicit retries policy whose budget starts empty (10 requests buy 1 retry).
fn stingy_retries() -> RoutePolicy {
    RoutePolicy {
        retries: Some(Retries {
            attempts: 1,
            budget_percent: 10,
        }),
        ..Default::default()
    }
}

/// Send `GET path` from `clients` concurrent loops until `stop`; every status seen, in order.
fn load(
    gw: &Arc<TestGateway>,
    clients: usize,
    path: &'static str,
    stop: &tokio_util::sync::CancellationToken,
) -> Vec<tokio::task::JoinHandle<Vec<(u16, String)>>> {
    (0..clients)
        .map(|_| {
            let (gw, stop) = (gw.clone(), stop.clone());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while !stop.is_cancelled() {
                    let r = gw.get(None, path).await;
                    seen.push((r.status, r.body));
                }
                seen
            })
        })
        .collect()
}

async fn statuses(tasks: Vec<tokio::task::JoinHandle<Vec<(u16, String)>>>) -> Vec<(u16, String)> {
    let mut all = Vec::new();
    for t in tasks {
        all.extend(within("load task", t).await.unwrap());
    }
    all
}

/// An HTTP/1.1 upstream that answers `NAME:` after `delay`, and whose process can be "killed":
/// the listener and every open connection are dropped at once, mid-exchange.
struct Killable {
    addr: std::net::SocketAddr,
    kill: tokio_util::sync::CancellationToken,
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
}

async fn killable(name: &'static str, delay: Duration) -> Killable {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let kill = tokio_util::sync::CancellationToken::new();
    let in_flight = Arc::new(AtomicUsize::new(0));
    tokio::spawn({
        let (kill, in_flight) = (kill.clone(), in_flight.clone());
        async move {
            loop {
                let stream = tokio::select! {
                    () = kill.cancelled() => return,
                    a = listener.accept() => match a { Ok((s, _)) => s, Err(_) => return },
                };
                let (kill, in_flight) = (kill.clone(), in_flight.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_req| {
                        let in_flight = in_flight.clone();
                        async move {
                            in_flight.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(delay).await;
                            in_flight.fetch_sub(1, Ordering::SeqCst);
                            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                                Bytes::from(format!("{name}:")),
                            )))
                        }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                    tokio::select! {
                        () = kill.cancelled() => {}
                        _ = conn => {}
                    }
                });
            }
        }
    });
    Killable {
        addr,
        kill,
        in_flight,
    }
}

/// The issue's promise, with an explicit `retries` policy whose budget is empty at first: when
/// one of two replicas is killed under load (its in-flight exchanges cut, then its port
/// refusing), no idempotent request fails.
#[tokio::test]
async fn killing_one_of_two_replicas_under_load_fails_no_get_with_a_retries_policy() {
    let victim = killable("victim", Duration::from_millis(20)).await;
    let survivor = killable("survivor", Duration::from_millis(20)).await;
    let gw = Arc::new(
        TestGateway::start(table(
            1,
            vec![with_policy(
                route(
                    None,
                    "/",
                    false,
                    vec![ep("victim", victim.addr), ep("survivor", survivor.addr)],
                ),
                stingy_retries(),
            )],
        ))
        .await,
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let tasks = load(&gw, 16, "/", &stop);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let busy = victim.in_flight.clone();
    eventually("requests in flight on the victim", || {
        busy.load(std::sync::atomic::Ordering::SeqCst) >= 3
    })
    .await;
    victim.kill.cancel();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.cancel();
    let seen = statuses(tasks).await;
    let failed: Vec<_> = seen.iter().filter(|(s, _)| *s != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} failed: {failed:?}",
        failed.len(),
        seen.len()
    );
    assert!(seen.iter().any(|(_, b)| b == "victim:"));
    assert!(seen.last().is_some_and(|(_, b)| b == "survivor:"));
    let text = gw.gateway.render_metrics();
    assert!(
        !text.contains(r#"berth_gateway_service_retries_total{app="app",service="svc"} 0"#),
        "the cut exchanges were retried: {text}"
    );
}

/// A replica that reads each request and closes the connection without answering, under
/// concurrent load, with an explicit `retries` policy and passive ejection off: every GET is
/// rescued on the other replica, far beyond what the policy's budget holds; a POST is not.
#[tokio::test]
async fn a_replica_closing_connections_mid_exchange_fails_no_get_with_a_retries_policy() {
    let broken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let broken_addr = broken.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = broken.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                drop(s);
            });
        }
    });
    let good = Upstream::start("good").await;
    let config = GatewayConfig {
        eject_after_failures: 0,
        ..GatewayConfig::default()
    };
    let gw = Arc::new(
        TestGateway::start_with(
            table(
                1,
                vec![with_policy(
                    route(
                        None,
                        "/",
                        false,
                        vec![ep("broken", broken_addr), good.endpoint()],
                    ),
                    stingy_retries(),
                )],
            ),
            config,
        )
        .await,
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let tasks = load(&gw, 8, "/x", &stop);
    let requests = good.requests.clone();
    eventually("200 requests served", || {
        requests.load(std::sync::atomic::Ordering::SeqCst) >= 200
    })
    .await;
    stop.cancel();
    let seen = statuses(tasks).await;
    let failed: Vec<_> = seen.iter().filter(|(s, _)| *s != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} failed: {failed:?}",
        failed.len(),
        seen.len()
    );
    // Half the requests went to the broken replica first: many more rescues than budget.
    assert!(good.requests() >= 200);
    let post = |gw: &TestGateway| {
        gw.request("POST", None, "/x")
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap()
    };
    let (a, b) = (gw.send(post(&gw)).await, gw.send(post(&gw)).await);
    assert!(
        a.status == 502 || b.status == 502,
        "a POST that reached the broken replica is not retried: {a:?} {b:?}"
    );
}

#[tokio::test]
async fn failing_endpoints_are_ejected_for_a_while_but_never_the_last() {
    let bad = Upstream::start("bad").await;
    let good = Upstream::start("good").await;
    bad.fail_with(503);
    let config = GatewayConfig {
        eject_after_failures: 2,
        eject_for: Duration::from_millis(300),
        ..GatewayConfig::default()
    };
    let gw = TestGateway::start_with(
        table(
            1,
            vec![
                route(None, "/", false, vec![bad.endpoint(), good.endpoint()]),
                route(None, "/only-bad", false, vec![bad.endpoint()]),
            ],
        ),
        config,
    )
    .await;
    for _ in 0..10 {
        let _ = gw.get(None, "/").await;
    }
    assert_eq!(bad.requests(), 2, "ejected after 2 consecutive failures");
    tokio::time::sleep(Duration::from_millis(350)).await;
    for _ in 0..6 {
        let _ = gw.get(None, "/").await;
    }
    assert_eq!(
        bad.requests(),
        3,
        "one probe after the cool-off, then ejected again"
    );
    // The last endpoint of a route is never skipped.
    for _ in 0..3 {
        assert_eq!(gw.get(None, "/only-bad").await.status, 503);
    }
    assert_eq!(bad.requests(), 6);
    let text = gw.gateway.render_metrics();
    assert!(text.contains("berth_gateway_service_ejections_total{app=\"app\",service=\"svc\"}"));
}

#[tokio::test]
async fn redirect_https_sends_308_to_the_same_host_and_path() {
    let up = Upstream::start("up").await;
    let gw = TestGateway::start(table(
        1,
        vec![with_policy(
            route(None, "/", false, vec![up.endpoint()]),
            RoutePolicy {
                redirect_https: true,
                ..Default::default()
            },
        )],
    ))
    .await;
    let r = gw.get(Some("shop.test:8080"), "/a/b?q=1").await;
    assert_eq!(r.status, 308);
    assert_eq!(r.header("location"), Some("https://shop.test/a/b?q=1"));
    assert!(r.header("x-request-id").is_some());
    assert_eq!(up.requests(), 0);
}

/// Send raw bytes, read the whole answer until the gateway closes the connection.
async fn raw(gw: &TestGateway, request: &[u8]) -> String {
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    within("the gateway closes the connection", s.read_to_end(&mut out))
        .await
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn smuggling_and_oversized_requests_are_refused() {
    let up = Upstream::start("up").await;
    let config = GatewayConfig {
        max_body_bytes: 1024,
        ..GatewayConfig::default()
    };
    let gw = TestGateway::start_with(
        table(1, vec![route(None, "/", false, vec![up.endpoint()])]),
        config,
    )
    .await;

    // Content-Length and Transfer-Encoding together (either order), after a good request on
    // the same connection: the good one is answered, then 400 in the Berth shape, the
    // connection closed, and nothing after the refused head reaches the upstream.
    for (first, second) in [
        ("Content-Length: 6", "Transfer-Encoding: chunked"),
        ("Transfer-Encoding: chunked", "Content-Length: 6"),
    ] {
        let before = up.requests();
        let out = raw(
            &gw,
            format!(
                "GET /ok HTTP/1.1\r\nHost: a\r\n\r\n\
                 POST /first HTTP/1.1\r\nHost: a\r\n{first}\r\n{second}\r\n\r\n0\r\n\r\n\
                 GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert_eq!(out.matches("HTTP/1.1 ").count(), 2, "{out}");
        let refused = &out[out.rfind("HTTP/1.1 ").unwrap()..];
        assert!(refused.starts_with("HTTP/1.1 400"), "{out}");
        assert!(refused.contains("\"code\":\"bad_request\""), "{out}");
        assert!(
            refused.to_ascii_lowercase().contains("connection: close"),
            "{out}"
        );
        assert_eq!(up.requests(), before + 1, "only GET /ok went upstream");
    }
    assert!(!up
        .paths
        .lock()
        .unwrap()
        .iter()
        .any(|p| p.contains("smuggled") || p.contains("first")));

    // Two different Content-Lengths, a non-numeric one, a non-chunked Transfer-Encoding, a
    // head that does not parse: 400 in the Berth shape, connection closed.
    for bad in [
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x4\r\n\r\nabcd",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nabcd",
        "GET / HTTP/1.1\r\nBad Header: a\r\n\r\n",
    ] {
        let out = raw(&gw, bad.as_bytes()).await;
        assert!(out.starts_with("HTTP/1.1 400"), "{bad:?}: {out}");
        assert!(out.contains("\"code\":\"bad_request\""), "{bad:?}: {out}");
    }

    // Malformed chunking: 400 in the Berth shape, connection closed.
    let out = raw(
        &gw,
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert!(out.contains("\"code\":\"bad_request\""), "{out}");

    // A declared body over the limit: 413 before anything is sent upstream.
    let before = up.requests();
    let out = raw(
        &gw,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4096\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");
    assert!(out.contains("\"code\":\"payload_too_large\""), "{out}");
    assert_eq!(up.requests(), before);

    // A chunked body that grows over the limit: 413 too.
    let mut req = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        req.extend_from_slice(b"200\r\n");
        req.extend_from_slice(&[b'x'; 512]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let out = raw(&gw, &req).await;
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");
    assert!(out.contains("\"code\":\"payload_too_large\""), "{out}");

    // Headers over the limit, or too many of them: 431 in the Berth shape.
    let big = "a".repeat(70 * 1024);
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    for head in [
        format!("GET / HTTP/1.1\r\nHost: a\r\nX-Big: {big}\r\n\r\n"),
        format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n"),
    ] {
        let out = raw(&gw, head.as_bytes()).await;
        assert!(out.starts_with("HTTP/1.1 431"), "{out}");
        assert!(out.contains("\"code\":\"headers_too_large\""), "{out}");
    }
}

#[tokio::test]
async fn slow_clients_are_cut_off_after_the_header_read_timeout() {
    let up = Upstream::start("up").await;
    let config = GatewayConfig {
        header_read_timeout: Duration::from_millis(300),
        ..GatewayConfig::default()
    };
    let gw = TestGateway::start_with(
        table(1, vec![route(None, "/", false, vec![up.endpoint()])]),
        config,
    )
    .await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n").await.unwrap();
    let mut out = Vec::new();
    let started = std::time::Instant::now();
    within("slow client cut off", s.read_to_end(&mut out))
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(up.requests(), 0);
}

#[tokio::test]
async fn metrics_count_requests_per_route_and_service() {
    let up = Upstream::start("up").await;
    let gw = TestGateway::start(table(
        1,
        vec![
            route(Some("a.test"), "/api", false, vec![up.endpoint()]),
            route(Some("a.test"), "/empty", false, vec![]),
        ],
    ))
    .await;
    for _ in 0..3 {
        assert_eq!(gw.get(Some("a.test"), "/api/x").await.status, 200);
    }
    assert_eq!(gw.get(Some("a.test"), "/empty").await.status, 503);
    assert_eq!(gw.get(Some("nope.test"), "/").await.status, 404);
    let text = gw.gateway.render_metrics();
    for line in [
        r#"berth_gateway_route_requests_total{app="app",service="svc",host="a.test",prefix="/api",class="2xx"} 3"#,
        r#"berth_gateway_route_requests_total{app="app",service="svc",host="a.test",prefix="/empty",class="5xx"} 1"#,
        r#"berth_gateway_service_requests_total{app="app",service="svc",class="2xx"} 3"#,
        r#"berth_gateway_route_request_duration_seconds_count{app="app",service="svc",host="a.test",prefix="/api"} 3"#,
        r#"berth_gateway_route_request_duration_seconds_bucket{app="app",service="svc",host="a.test",prefix="/api",le="+Inf"} 3"#,
        "# TYPE berth_gateway_route_request_duration_seconds histogram",
        "berth_gateway_unrouted_total 1",
    ] {
        assert!(text.contains(line), "missing {line}\n{text}");
    }
    assert!(
        !text.contains("berth_gateway_service_circuit_state{"),
        "no breaker, no gauge"
    );
}
