//! Berth's pure domain types, shared by every other crate.
//!
//! Rules this crate keeps: no IO, no async runtime, no dependency on any other Berth crate.
//! Types here are the contracts between the layers: the routing table the control plane
//! publishes and the gateway reads ([`routing`]), the one error shape every HTTP answer
//! Berth generates uses ([`error`]), and records the store keeps that other layers read too
//! (a service's [`source`]).

pub mod admission;
pub mod api;
pub mod auth;
pub mod contract;
pub mod error;
pub mod graph;
pub mod lifecycle;
pub mod policy;
pub mod routing;
pub mod source;
pub mod team;

pub use error::{ErrorBody, ErrorCode};
pub use routing::{
    Endpoint, EndpointProbe, HttpRoute, PortForward, Protocol, RoutingTable, UpstreamProtocol,
    MARKET_HOST,
};
