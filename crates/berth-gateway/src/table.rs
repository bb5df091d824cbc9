//! The routing snapshot the request path reads, and the registry of endpoint states behind it.
//!
//! Rules this module keeps:
//! * Route matching is `berth_core::RoutingTable::find` — one definition of host + longest
//!   prefix for the whole system; the snapshot only attaches per-route balancing state.
//! * A snapshot is immutable once published; the request path reads it lock-free through the
//!   gateway's `ArcSwap` and never waits on the updater.
//! * The registry keeps one [`EndpointState`] per endpoint id while the endpoint is in the table,
//!   so pools survive unrelated table changes. An endpoint that leaves the table (or changes
//!   address) is closed at once and kept as *retired* until its in-flight count reaches 0, so
//!   `Gateway::in_flight` stays exact for a draining replica.
//! * Policy state survives table swaps too: per route identity (app, service, host, prefix) the
//!   counters and the rate limiter, per (app, service) the counters, breaker, bulkhead and retry
//!   budget. A part is rebuilt only when its policy changed; a route without policy gets only
//!   its counters (no limiter, no breaker, no task).

use crate::breaker::Breaker;
use crate::bulkhead::Bulkhead;
use crate::metrics::{RouteMetrics, ServiceMetrics};
use crate::pool::EndpointState;
use crate::ratelimit::RateLimiter;
use crate::retry::RetryBudget;
use berth_core::policy::RoutePolicy;
use berth_core::{HttpRoute, RoutingTable};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A routing table ready to be served.
pub struct Snapshot {
    /// The table as published by the control plane.
    pub table: Arc<RoutingTable>,
    /// Balancing state of `table.routes[i]`, same index.
    pub routes: Vec<RouteState>,
    /// Unique among this process's snapshots (the table's own `version` comes from the control
    /// plane and may repeat, e.g. after it restarts): what per-worker memos are keyed by.
    pub generation: u64,
}

/// The next [`Snapshot::generation`].
static GENERATION: AtomicU64 = AtomicU64::new(1);

/// The balancing state of one route.
pub struct RouteState {
    /// The route's endpoints, in the table's order. Shared so a request can hold them across
    /// awaits with one reference-count increment.
    pub endpoints: Arc<[Arc<EndpointState>]>,
    next: AtomicUsize,
    /// Counters and policy state of the route, kept across swaps.
    pub shared: Arc<RouteShared>,
}

/// A route's state that outlives table swaps.
pub struct RouteShared {
    pub metrics: Arc<RouteMetrics>,
    pub limiter: Option<Arc<RateLimiter>>,
    /// `auth: subscribers` plans: each subscriber's own bucket at its plan's rate.
    pub plans: Vec<PlanLimiter>,
    pub service: Arc<ServiceState>,
}

/// One plan of a subscribers-only route (docs/market.md#plans).
pub struct PlanLimiter {
    pub name: String,
    /// Per-consumer buckets at the plan's rate; kept across swaps while the rate is the same.
    pub limiter: Arc<RateLimiter>,
    /// The applications subscribed with it, sorted.
    pub subscribers: Vec<String>,
}

impl RouteShared {
    /// The limiter of the plan `subject` subscribed with, if any.
    #[must_use]
    pub fn plan_of(&self, subject: &str) -> Option<&Arc<RateLimiter>> {
        self.plans
            .iter()
            .find(|p| {
                p.subscribers
                    .binary_search_by(|s| s.as_str().cmp(subject))
                    .is_ok()
            })
            .map(|p| &p.limiter)
    }

    fn same_plans(&self, plans: &[berth_core::policy::Plan]) -> bool {
        self.plans.len() == plans.len()
            && self.plans.iter().zip(plans).all(|(have, want)| {
                have.name == want.name
                    && have.limiter.config == want.limit()
                    && have.subscribers == want.subscribers
            })
    }
}

/// A service's state that outlives table swaps, shared by all its routes.
pub struct ServiceState {
    pub metrics: Arc<ServiceMetrics>,
    pub breaker: Option<Arc<Breaker>>,
    pub bulkhead: Option<Arc<Bulkhead>>,
    pub budget: Option<Arc<RetryBudget>>,
    /// The route has no `retries` policy: the budget is [`DEFAULT_RETRIES`], used only for
    /// requests whose exchange failed before any answer (as nginx's `proxy_next_upstream
    /// error timeout`) beyond the one budget-free rescue of a broken exchange (see
    /// [`crate::retry`]), never to retry a service's own 5xx answer.
    pub default_retries: bool,
}

/// Without a `retries` policy: one retry of an idempotent bodiless request whose exchange broke
/// before any answer (e.g. the replica died mid-request), within 20 % of recent traffic.
pub static DEFAULT_RETRIES: berth_core::policy::Retries = berth_core::policy::Retries {
    attempts: 1,
    budget_percent: 20,
};

impl ServiceState {
    fn matches(&self, p: &RoutePolicy) -> bool {
        same(
            self.breaker.as_deref().map(|b| &b.config),
            p.circuit_breaker.as_ref(),
        ) && same(
            self.bulkhead.as_deref().map(|b| &b.config),
            p.max_concurrency.as_ref(),
        ) && same(
            self.budget.as_deref().map(|b| &b.config),
            Some(p.retries.as_ref().unwrap_or(&DEFAULT_RETRIES)),
        ) && self.default_retries == p.retries.is_none()
    }

    fn build(old: Option<&ServiceState>, app: &str, service: &str, p: &RoutePolicy) -> Self {
        fn keep<T, C: PartialEq + Clone>(
            old: Option<&Arc<T>>,
            want: Option<&C>,
            config: impl Fn(&T) -> &C,
            new: impl Fn(C) -> T,
        ) -> Option<Arc<T>> {
            let want = want?;
            match old {
                Some(o) if config(o) == want => Some(o.clone()),
                _ => Some(Arc::new(new(want.clone()))),
            }
        }
        Self {
            metrics: old.map_or_else(
                || Arc::new(ServiceMetrics::new(app, service)),
                |o| o.metrics.clone(),
            ),
            breaker: keep(
                old.and_then(|o| o.breaker.as_ref()),
                p.circuit_breaker.as_ref(),
                |b| &b.config,
                Breaker::new,
            ),
            bulkhead: keep(
                old.and_then(|o| o.bulkhead.as_ref()),
                p.max_concurrency.as_ref(),
                |b| &b.config,
                Bulkhead::new,
            ),
            budget: keep(
                old.and_then(|o| o.budget.as_ref()),
                Some(p.retries.as_ref().unwrap_or(&DEFAULT_RETRIES)),
                |b| &b.config,
                |c| {
                    if p.retries.is_none() {
                        RetryBudget::with_reserve(c)
                    } else {
                        RetryBudget::new(c)
                    }
                },
            ),
            default_retries: p.retries.is_none(),
        }
    }
}

fn same<T: PartialEq>(a: Option<&T>, b: Option<&T>) -> bool {
    a == b
}

/// A route's identity: what a route "is" across tables.
type RouteId = (String, String, Option<String>, String);

fn route_id(r: &HttpRoute) -> RouteId {
    (
        r.app.clone(),
        r.service.clone(),
        r.host.as_ref().map(|h| h.to_ascii_lowercase()),
        r.path_prefix.clone(),
    )
}

impl RouteState {
    /// The index to start the round robin at for the next request.
    pub fn next_start(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed)
    }
}

impl Snapshot {
    /// The route for `host` and `path`, with its balancing state.
    #[must_use]
    pub fn find(&self, host: Option<&str>, path: &str) -> Option<(&HttpRoute, &RouteState)> {
        let index = self.find_index(host, path)?;
        Some((&self.table.routes[index], &self.routes[index]))
    }

    /// The index (in `table.routes` and `routes`) of the route for `host` and `path`.
    #[must_use]
    pub fn find_index(&self, host: Option<&str>, path: &str) -> Option<usize> {
        let route = self.table.find(host, path)?;
        self.table
            .routes
            .iter()
            .position(|r| std::ptr::eq(r, route))
    }
}

/// Endpoint states by id; owned by the gateway behind a mutex that only the updater task and
/// the in-flight/idle queries take.
#[derive(Default)]
pub struct Registry {
    active: HashMap<Box<str>, Arc<EndpointState>>,
    retired: Vec<Arc<EndpointState>>,
    routes: HashMap<RouteId, Arc<RouteShared>>,
    services: HashMap<(String, String), Arc<ServiceState>>,
}

impl Registry {
    /// Build the snapshot for `table`, reusing the states of endpoints that stay and closing
    /// the pools of endpoints that left.
    pub fn build(&mut self, table: Arc<RoutingTable>) -> Snapshot {
        let mut next: HashMap<Box<str>, Arc<EndpointState>> = HashMap::new();
        let mut next_routes: HashMap<RouteId, Arc<RouteShared>> = HashMap::new();
        let mut next_services: HashMap<(String, String), Arc<ServiceState>> = HashMap::new();
        let routes = table
            .routes
            .iter()
            .map(|route| {
                let endpoints: Vec<Arc<EndpointState>> = route
                    .endpoints
                    .iter()
                    .map(|e| {
                        if let Some(state) = next.get(e.id.as_str()) {
                            if state.addr == e.addr {
                                return state.clone();
                            }
                            // Same id at two addresses in one table: serve it, pool it apart.
                            return Arc::new(EndpointState::new(&e.id, e.addr));
                        }
                        let state = match self.active.get(e.id.as_str()) {
                            Some(s) if s.addr == e.addr => s.clone(),
                            _ => Arc::new(EndpointState::new(&e.id, e.addr)),
                        };
                        next.insert(e.id.as_str().into(), state.clone());
                        state
                    })
                    .collect();
                let shared = self.route_shared(route, &mut next_routes, &mut next_services);
                RouteState {
                    endpoints: endpoints.into(),
                    next: AtomicUsize::new(0),
                    shared,
                }
            })
            .collect();
        for (id, old) in self.active.drain() {
            let kept = next.get(&id).is_some_and(|n| Arc::ptr_eq(n, &old));
            if !kept {
                old.close();
                self.retired.push(old);
            }
        }
        self.retired.retain(|s| s.in_flight() > 0);
        self.active = next;
        self.routes = next_routes;
        self.services = next_services;
        Snapshot {
            table,
            routes,
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The shared state of `route`, reused from the previous table when its policy is the same.
    fn route_shared(
        &self,
        route: &HttpRoute,
        next_routes: &mut HashMap<RouteId, Arc<RouteShared>>,
        next_services: &mut HashMap<(String, String), Arc<ServiceState>>,
    ) -> Arc<RouteShared> {
        let service_key = (route.app.clone(), route.service.clone());
        // The first route of a service in the table decides its service-level policy.
        let service = match next_services.get(&service_key) {
            Some(s) => s.clone(),
            None => {
                let old = self.services.get(&service_key);
                let s = match old {
                    Some(o) if o.matches(&route.policy) => o.clone(),
                    _ => Arc::new(ServiceState::build(
                        old.map(AsRef::as_ref),
                        &route.app,
                        &route.service,
                        &route.policy,
                    )),
                };
                next_services.insert(service_key, s.clone());
                s
            }
        };
        let id = route_id(route);
        if let Some(s) = next_routes.get(&id) {
            return s.clone(); // The same route twice in one table: share its state.
        }
        let old = self.routes.get(&id);
        let shared = match old {
            Some(o)
                if Arc::ptr_eq(&o.service, &service)
                    && o.limiter.as_ref().map(|l| &l.config)
                        == route.policy.rate_limit.as_ref()
                    && o.same_plans(&route.policy.plans) =>
            {
                o.clone()
            }
            _ => {
                // Counters carry over; only a changed limit starts a fresh limiter.
                let metrics = old.map_or_else(
                    || {
                        Arc::new(RouteMetrics::new(
                            &route.app,
                            &route.service,
                            route.host.as_deref(),
                            &route.path_prefix,
                        ))
                    },
                    |o| o.metrics.clone(),
                );
                let limiter = match (
                    old.and_then(|o| o.limiter.as_ref()),
                    &route.policy.rate_limit,
                ) {
                    (_, None) => None,
                    (Some(l), Some(rl)) if &l.config == rl => Some(l.clone()),
                    (_, Some(rl)) => Some(Arc::new(RateLimiter::new(rl.clone()))),
                };
                // A plan keeps its buckets while its rate stays (subscribers come and go).
                let plans = route
                    .policy
                    .plans
                    .iter()
                    .map(|p| {
                        let limit = p.limit();
                        let limiter = old
                            .and_then(|o| {
                                o.plans.iter().find(|have| {
                                    have.name == p.name && have.limiter.config == limit
                                })
                            })
                            .map_or_else(
                                || Arc::new(RateLimiter::new(limit.clone())),
                                |have| have.limiter.clone(),
                            );
                        PlanLimiter {
                            name: p.name.clone(),
                            limiter,
                            subscribers: p.subscribers.clone(),
                        }
                    })
                    .collect();
                Arc::new(RouteShared {
                    metrics,
                    limiter,
                    plans,
                    service,
                })
            }
        };
        next_routes.insert(id, shared.clone());
        shared
    }

    /// Every service's cumulative counters (docs/market.md: the control plane's figures).
    #[must_use]
    pub fn service_counters(&self) -> Vec<berth_core::api::ServiceCounters> {
        let mut out: Vec<_> = self
            .services
            .iter()
            .map(|((app, service), s)| berth_core::api::ServiceCounters {
                app: app.clone(),
                service: service.clone(),
                responses: s.metrics.responses.counts(),
                latency_buckets: s.metrics.latency.per_bucket(),
            })
            .collect();
        out.sort_by(|a, b| (&a.app, &a.service).cmp(&(&b.app, &b.service)));
        out
    }

    /// Render the counters of every route and service in the table (Prometheus text format).
    #[must_use]
    pub fn render_metrics(&self, unrouted: u64) -> String {
        let mut routes: Vec<_> = self.routes.iter().collect();
        routes.sort_by(|a, b| a.0.cmp(b.0));
        let mut services: Vec<_> = self.services.iter().collect();
        services.sort_by(|a, b| a.0.cmp(b.0));
        let routes: Vec<&RouteMetrics> = routes.iter().map(|(_, r)| &*r.metrics).collect();
        let services: Vec<_> = services
            .iter()
            .map(|(_, s)| (&*s.metrics, s.breaker.as_ref().map(|b| b.state())))
            .collect();
        crate::metrics::render(&routes, &services, unrouted)
    }

    /// Requests in flight to endpoint `id`, whether in the table or retired.
    pub fn in_flight(&mut self, id: &str) -> usize {
        self.retired.retain(|s| s.in_flight() > 0);
        let active = self.active.get(id).map_or(0, |s| s.in_flight());
        let retired: usize = self
            .retired
            .iter()
            .filter(|s| &*s.id == id)
            .map(|s| s.in_flight())
            .sum();
        active + retired
    }

    /// Idle pooled connections of endpoint `id`.
    #[must_use]
    pub fn idle_connections(&self, id: &str) -> usize {
        let active = self.active.get(id).map_or(0, |s| s.idle_count());
        let retired: usize = self
            .retired
            .iter()
            .filter(|s| &*s.id == id)
            .map(|s| s.idle_count())
            .sum();
        active + retired
    }

    /// Expire idle connections of every endpoint in the table.
    pub fn sweep_idle(&mut self, idle_timeout: Duration) {
        for state in self.active.values() {
            state.sweep(idle_timeout);
        }
        for route in self.routes.values() {
            if let Some(limiter) = &route.limiter {
                limiter.evict_idle();
            }
            for plan in &route.plans {
                plan.limiter.evict_idle();
            }
        }
        self.retired.retain(|s| s.in_flight() > 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::Endpoint;

    fn table(version: u64, eps: &[(&str, u16)]) -> Arc<RoutingTable> {
        Arc::new(RoutingTable {
            version,
            routes: vec![HttpRoute {
                app: "a".into(),
                service: "s".into(),
                host: None,
                path_prefix: "/".into(),
                strip_prefix: false,
                endpoints: eps
                    .iter()
                    .map(|(id, port)| Endpoint {
                        id: (*id).into(),
                        addr: std::net::SocketAddr::from(([127, 0, 0, 1], *port)),
                    })
                    .collect(),
                policy: Default::default(),
                protocol: Default::default(),
                upstream_prefix: None,
                probe: None,
            }],
            ports: vec![],
            issuers: vec![],
        })
    }

    #[test]
    fn states_survive_swaps_and_retire_with_in_flight() {
        let mut reg = Registry::default();
        let s1 = reg.build(table(1, &[("a", 1), ("b", 2)]));
        let a1 = s1.routes[0].endpoints[0].clone();
        let guard = s1.routes[0].endpoints[1].try_acquire().unwrap();
        let s2 = reg.build(table(2, &[("a", 1), ("c", 3)]));
        assert!(
            Arc::ptr_eq(&a1, &s2.routes[0].endpoints[0]),
            "kept endpoint keeps its state"
        );
        assert_eq!(reg.in_flight("b"), 1, "retired endpoint still counted");
        drop(guard);
        assert_eq!(reg.in_flight("b"), 0);
        // A request still holding the old snapshot cannot start on the removed endpoint.
        assert!(s1.routes[0].endpoints[1].try_acquire().is_none());
        assert_eq!(s1.routes[0].endpoints[1].in_flight(), 0);
        // Address change: a new state, the old one retired.
        let s3 = reg.build(table(3, &[("a", 9)]));
        assert!(!Arc::ptr_eq(&a1, &s3.routes[0].endpoints[0]));
    }

    #[test]
    fn find_returns_matching_state() {
        let mut reg = Registry::default();
        let s = reg.build(table(1, &[("a", 1)]));
        let (route, state) = s.find(Some("x"), "/p").unwrap();
        assert_eq!(route.service, "s");
        assert_eq!(state.endpoints.len(), 1);
        assert_eq!(state.next_start(), 0);
        assert_eq!(state.next_start(), 1);
    }
}
