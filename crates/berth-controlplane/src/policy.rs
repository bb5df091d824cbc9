//! From a service's `x-berth` settings to the traffic policy the gateway enforces on a route,
//! and to the protocol it speaks upstream (`x-berth.route.protocol`). Validation happened at
//! apply (the Compose parser names any bad key, e.g. an unknown protocol); this is a pure mapping.
//!
//! The only defaults decided here are the ones the parser cannot know: a JWT route with no
//! issuers accepts Berth's own (`berth`), and one with no audiences wants the application's name.

use berth_compose::{
    AuthSpec, CircuitBreakerSpec, ConcurrencySpec, RateLimitKey, RateLimitSpec, RetrySpec,
    RouteProtocol, RouteSpec, Service, TimeoutSpec,
};
use berth_core::policy::{
    AuthPolicy, Bulkhead, CircuitBreaker, RateKey, RateLimit, Retries, RoutePolicy, SlowCall,
    Timeouts,
};
use berth_core::UpstreamProtocol;

/// The name of Berth's own JWT issuer in `AuthPolicy::issuers`.
pub const BERTH_ISSUER: &str = "berth";

/// The protocol the gateway speaks to a route's replicas (`x-berth.route.protocol`).
#[must_use]
pub fn route_protocol(route: &RouteSpec) -> UpstreamProtocol {
    match route.protocol {
        RouteProtocol::Http1 => UpstreamProtocol::Http1,
        RouteProtocol::H2c => UpstreamProtocol::H2c,
    }
}

/// The policy of one route of a service.
#[must_use]
pub fn route_policy(app: &str, svc: &Service, route: &RouteSpec) -> RoutePolicy {
    let ext = &svc.berth;
    RoutePolicy {
        auth: route.auth.as_ref().map(|a| auth(app, a)),
        rate_limit: route.rate_limit.as_ref().map(rate_limit),
        redirect_https: route.redirect_https,
        circuit_breaker: ext.circuit_breaker.as_ref().map(circuit_breaker),
        max_concurrency: ext.max_concurrency.as_ref().map(bulkhead),
        timeout: timeouts(&ext.timeout),
        retries: ext.retries.as_ref().map(retries),
    }
}

fn auth(app: &str, a: &AuthSpec) -> AuthPolicy {
    let team = berth_core::team::team_of(app);
    match a {
        AuthSpec::Jwt(jwt) => AuthPolicy {
            // The Compose file names the team's issuers (and `berth`): the table holds their
            // global names, so a team cannot accept another team's issuer.
            issuers: if jwt.issuers.is_empty() {
                vec![BERTH_ISSUER.to_owned()]
            } else {
                jwt.issuers.iter().map(|i| issuer_global(team, i)).collect()
            },
            audiences: if jwt.audiences.is_empty() {
                vec![app.to_owned()]
            } else {
                jwt.audiences.clone()
            },
            team: (team != berth_core::team::DEFAULT_TEAM).then(|| team.to_owned()),
            subscribers: None,
        },
        // Berth's own tokens for the market entry the route serves, from its subscribers only:
        // the table publisher fills in the entry's audience and subscribers
        // (`subscriptions::fill_table`). Until then the route admits nobody.
        AuthSpec::Subscribers => AuthPolicy {
            issuers: vec![BERTH_ISSUER.to_owned()],
            audiences: Vec::new(),
            team: None,
            subscribers: Some(Vec::new()),
        },
    }
}

/// The global name of the issuer a route of `team` names: `berth` is Berth's own (one for
/// every team), any other name is the team's (`berth_core::team::global_name`).
#[must_use]
pub fn issuer_global(team: &str, name: &str) -> String {
    if name == BERTH_ISSUER {
        name.to_owned()
    } else {
        berth_core::team::global_name(team, name)
    }
}

fn rate_limit(r: &RateLimitSpec) -> RateLimit {
    RateLimit {
        per_second: r.per_second,
        burst: r.burst,
        key: match r.key {
            RateLimitKey::Route => RateKey::Route,
            RateLimitKey::Consumer => RateKey::Consumer,
            RateLimitKey::Ip => RateKey::Ip,
        },
    }
}

fn circuit_breaker(c: &CircuitBreakerSpec) -> CircuitBreaker {
    CircuitBreaker {
        failure_ratio: c.failure_ratio,
        min_requests: c.min_requests,
        window_ms: c.window_ms,
        open_for_ms: c.open_for_ms,
        half_open_probes: c.half_open_probes,
        slow_call: c.slow_call.map(|s| SlowCall {
            threshold_ms: s.threshold_ms,
            ratio: s.ratio,
        }),
    }
}

fn bulkhead(c: &ConcurrencySpec) -> Bulkhead {
    Bulkhead {
        limit: c.limit,
        queue: c.queue,
        queue_timeout_ms: c.queue_timeout_ms,
    }
}

fn timeouts(t: &TimeoutSpec) -> Timeouts {
    Timeouts {
        connect_ms: t.connect_ms,
        per_try_ms: t.per_try_ms,
        total_ms: t.total_ms,
    }
}

fn retries(r: &RetrySpec) -> Retries {
    Retries {
        attempts: r.attempts,
        budget_percent: r.budget_percent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_compose::{Bundle, JwtSpec, SlowCallSpec};

    /// The service `web` of a Compose file whose `web` has this `x-berth` body, parsed the way
    /// apply parses it.
    fn service(x_berth: &str) -> Service {
        let indented: String = x_berth.lines().map(|l| format!("      {l}\n")).collect();
        let compose = format!("services:\n  web:\n    image: a\n    x-berth:\n{indented}");
        let mut b = Bundle {
            compose_files: vec!["compose.yaml".into()],
            ..Bundle::default()
        };
        b.files.insert("compose.yaml".into(), compose);
        let mut p = berth_compose::load(&b).unwrap_or_else(|e| panic!("{x_berth}: {e}"));
        p.services.remove("web").expect("web")
    }

    /// The policy of the first route of `web`, in application `shop`.
    fn policy(x_berth: &str) -> RoutePolicy {
        let svc = service(x_berth);
        route_policy("shop", &svc, &svc.berth.routes[0])
    }

    fn jwt(issuers: &[&str], audiences: &[&str]) -> Option<AuthPolicy> {
        Some(AuthPolicy {
            issuers: issuers.iter().map(|s| (*s).to_owned()).collect(),
            audiences: audiences.iter().map(|s| (*s).to_owned()).collect(),
            team: None,
            subscribers: None,
        })
    }

    #[test]
    fn another_teams_route_names_its_own_issuers_and_its_team() {
        let svc = service("route: {auth: {jwt: {issuers: [corp, berth]}}}");
        let p = route_policy("shop/web", &svc, &svc.berth.routes[0]);
        let want = AuthPolicy {
            issuers: vec!["shop/corp".into(), "berth".into()],
            audiences: vec!["shop/web".into()],
            team: Some("shop".into()),
            subscribers: None,
        };
        assert_eq!(p.auth, Some(want));
        let svc = service("route: {auth: jwt}");
        let p = route_policy("web", &svc, &svc.berth.routes[0]);
        assert_eq!(p.auth, jwt(&["berth"], &["web"]), "team default: no team");
    }

    #[test]
    fn no_policy_is_the_default_policy() {
        assert_eq!(policy("route: {}"), RoutePolicy::default());
        assert_eq!(
            route_policy("shop", &service("route: {}"), &RouteSpec::default()),
            RoutePolicy::default()
        );
    }

    #[test]
    fn auth_forms() {
        let cases: &[(&str, Option<AuthPolicy>)] = &[
            ("route: {auth: jwt}", jwt(&["berth"], &["shop"])),
            ("route: {auth: {jwt: {}}}", jwt(&["berth"], &["shop"])),
            ("route: {auth: {jwt: ~}}", jwt(&["berth"], &["shop"])),
            (
                "route: {auth: {jwt: {issuers: [corp, berth], audiences: [api, web]}}}",
                jwt(&["corp", "berth"], &["api", "web"]),
            ),
            (
                "route: {auth: {jwt: {issuers: [corp]}}}",
                jwt(&["corp"], &["shop"]),
            ),
            (
                "route: {auth: {jwt: {audiences: [mobile]}}}",
                jwt(&["berth"], &["mobile"]),
            ),
            (
                "route: {auth: {jwt: {issuers: [], audiences: []}}}",
                jwt(&["berth"], &["shop"]),
            ),
        ];
        for (body, want) in cases {
            assert_eq!(policy(body).auth, *want, "{body}");
        }
        // The application name is the caller's, not the parser's.
        let svc = service("route: {auth: jwt}");
        let other = route_policy("blog", &svc, &svc.berth.routes[0]);
        assert_eq!(other.auth, jwt(&["berth"], &["blog"]));
        // Built by hand too (the model is public).
        let route = RouteSpec {
            auth: Some(AuthSpec::Jwt(JwtSpec {
                issuers: vec!["x".into()],
                audiences: vec![],
            })),
            ..RouteSpec::default()
        };
        assert_eq!(route_policy("a", &svc, &route).auth, jwt(&["x"], &["a"]));
    }

    #[test]
    fn route_level() {
        let p = policy(
            "route:\n  auth: jwt\n  rate_limit: {per_second: 10, burst: 30, key: consumer}\n  redirect_https: true",
        );
        assert_eq!(
            p.rate_limit,
            Some(RateLimit {
                per_second: 10,
                burst: 30,
                key: RateKey::Consumer
            })
        );
        assert!(p.redirect_https);
        let cases: &[(&str, RateLimit)] = &[
            (
                "route: {rate_limit: {per_second: 5}}",
                RateLimit {
                    per_second: 5,
                    burst: 5,
                    key: RateKey::Route,
                },
            ),
            (
                "route: {rate_limit: {per_second: 1, burst: 2, key: ip}}",
                RateLimit {
                    per_second: 1,
                    burst: 2,
                    key: RateKey::Ip,
                },
            ),
        ];
        for (body, want) in cases {
            assert_eq!(policy(body).rate_limit.as_ref(), Some(want), "{body}");
        }
    }

    #[test]
    fn route_level_settings_stay_on_their_route() {
        let svc = service(
            "route:\n  - {path_prefix: /api, auth: jwt, rate_limit: {per_second: 3}, redirect_https: true}\n  - {path_prefix: /}",
        );
        let api = route_policy("shop", &svc, &svc.berth.routes[0]);
        let root = route_policy("shop", &svc, &svc.berth.routes[1]);
        assert!(api.auth.is_some() && api.rate_limit.is_some() && api.redirect_https);
        assert_eq!(root, RoutePolicy::default());
    }

    #[test]
    fn service_level_applies_to_every_route() {
        let svc = service(
            "route: [{path_prefix: /a}, {path_prefix: /b}]\n\
             circuit_breaker:\n  failure_ratio: 0.25\n  min_requests: 5\n  window: 30s\n  open_for: 1m\n  half_open_probes: 1\n  slow_call: {threshold: 800ms, ratio: 0.9}\n\
             max_concurrency: {limit: 64, queue: 16, queue_timeout: 250ms}\n\
             timeout: {connect: 500ms, per_try: 2s, total: 5s}\n\
             retries: {attempts: 3, budget_percent: 10}",
        );
        let want = RoutePolicy {
            circuit_breaker: Some(CircuitBreaker {
                failure_ratio: 0.25,
                min_requests: 5,
                window_ms: 30_000,
                open_for_ms: 60_000,
                half_open_probes: 1,
                slow_call: Some(SlowCall {
                    threshold_ms: 800,
                    ratio: 0.9,
                }),
            }),
            max_concurrency: Some(Bulkhead {
                limit: 64,
                queue: 16,
                queue_timeout_ms: 250,
            }),
            timeout: Timeouts {
                connect_ms: Some(500),
                per_try_ms: Some(2_000),
                total_ms: Some(5_000),
            },
            retries: Some(Retries {
                attempts: 3,
                budget_percent: 10,
            }),
            ..RoutePolicy::default()
        };
        for r in &svc.berth.routes {
            assert_eq!(route_policy("shop", &svc, r), want, "{}", r.path_prefix);
        }
    }

    #[test]
    fn service_level_defaults() {
        let p = policy(
            "route: {}\ncircuit_breaker: {}\nmax_concurrency: {limit: 1}\ntimeout: {total: 3s}\nretries: {}",
        );
        assert_eq!(
            p.circuit_breaker,
            Some(CircuitBreaker {
                failure_ratio: 0.5,
                min_requests: 20,
                window_ms: 10_000,
                open_for_ms: 5_000,
                half_open_probes: 3,
                slow_call: None,
            })
        );
        assert_eq!(
            p.max_concurrency,
            Some(Bulkhead {
                limit: 1,
                queue: 0,
                queue_timeout_ms: 1_000,
            })
        );
        assert_eq!(
            p.timeout,
            Timeouts {
                connect_ms: None,
                per_try_ms: None,
                total_ms: Some(3_000),
            }
        );
        assert_eq!(
            p.retries,
            Some(Retries {
                attempts: 2,
                budget_percent: 20,
            })
        );
        assert!(p.auth.is_none() && p.rate_limit.is_none() && !p.redirect_https);
    }

    #[test]
    fn protocol_per_route() {
        let svc = service(
            "route:\n  - {path_prefix: /grpc, protocol: h2c}\n  - {path_prefix: /, protocol: http1}\n  - {path_prefix: /x}",
        );
        let protocols: Vec<_> = svc.berth.routes.iter().map(route_protocol).collect();
        assert_eq!(
            protocols,
            [
                UpstreamProtocol::H2c,
                UpstreamProtocol::Http1,
                UpstreamProtocol::Http1
            ]
        );
        // The protocol is not a policy: the route's policy stays off.
        assert_eq!(
            route_policy("shop", &svc, &svc.berth.routes[0]),
            RoutePolicy::default()
        );
    }

    #[test]
    fn every_field_is_carried_over() {
        // Field by field, so a new field in the model or in core that is not mapped shows up.
        let cb = CircuitBreakerSpec {
            failure_ratio: 0.1,
            min_requests: 2,
            window_ms: 3,
            open_for_ms: 4,
            half_open_probes: 5,
            slow_call: Some(SlowCallSpec {
                threshold_ms: 6,
                ratio: 0.7,
            }),
        };
        let CircuitBreaker {
            failure_ratio,
            min_requests,
            window_ms,
            open_for_ms,
            half_open_probes,
            slow_call,
        } = circuit_breaker(&cb);
        assert_eq!(
            (
                failure_ratio,
                min_requests,
                window_ms,
                open_for_ms,
                half_open_probes
            ),
            (0.1, 2, 3, 4, 5)
        );
        assert_eq!(
            slow_call,
            Some(SlowCall {
                threshold_ms: 6,
                ratio: 0.7
            })
        );
        let Bulkhead {
            limit,
            queue,
            queue_timeout_ms,
        } = bulkhead(&ConcurrencySpec {
            limit: 7,
            queue: 8,
            queue_timeout_ms: 9,
        });
        assert_eq!((limit, queue, queue_timeout_ms), (7, 8, 9));
        let Retries {
            attempts,
            budget_percent,
        } = retries(&RetrySpec {
            attempts: 0,
            budget_percent: 100,
        });
        assert_eq!((attempts, budget_percent), (0, 100));
    }
}
