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

use crate::pool::EndpointState;
use berth_core::{HttpRoute, RoutingTable};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A routing table ready to be served.
pub struct Snapshot {
    /// The table as published by the control plane.
    pub table: Arc<RoutingTable>,
    /// Balancing state of `table.routes[i]`, same index.
    pub routes: Vec<RouteState>,
}

/// The balancing state of one route.
pub struct RouteState {
    /// The route's endpoints, in the table's order. Shared so a request can hold them across
    /// awaits with one reference-count increment.
    pub endpoints: Arc<[Arc<EndpointState>]>,
    next: AtomicUsize,
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
        let route = self.table.find(host, path)?;
        let index = self
            .table
            .routes
            .iter()
            .position(|r| std::ptr::eq(r, route))?;
        Some((route, &self.routes[index]))
    }
}

/// Endpoint states by id; owned by the gateway behind a mutex that only the updater task and
/// the in-flight/idle queries take.
#[derive(Default)]
pub struct Registry {
    active: HashMap<Box<str>, Arc<EndpointState>>,
    retired: Vec<Arc<EndpointState>>,
}

impl Registry {
    /// Build the snapshot for `table`, reusing the states of endpoints that stay and closing
    /// the pools of endpoints that left.
    pub fn build(&mut self, table: Arc<RoutingTable>) -> Snapshot {
        let mut next: HashMap<Box<str>, Arc<EndpointState>> = HashMap::new();
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
                RouteState {
                    endpoints: endpoints.into(),
                    next: AtomicUsize::new(0),
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
        Snapshot { table, routes }
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
