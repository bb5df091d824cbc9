//! `berth-docker`: the only crate in Berth that talks to the Docker Engine.
//!
//! A small typed client for the Engine REST API over a unix socket (or plain TCP), written on
//! `hyper` 1 rather than bollard so Berth controls exactly which calls exist, how errors map and
//! how streams end.
//!
//! Rules this crate keeps:
//! - Only this crate speaks the Engine API; everyone else uses [`Docker`] and the plain types
//!   re-exported here.
//! - The API version is negotiated at connect: `min(engine, 1.45)`, refusing engines older than
//!   1.41 (Docker 20.10).
//! - Errors are one typed enum, [`DockerError`], whose variants the control plane can branch
//!   on (`NotFound`, `Conflict`, `Unreachable`) and whose messages tell an operator what to do.
//! - Nothing here retries, caches or acts on its own: callers (reconcilers) own the policy.
//!
//! Modules: `transport` (endpoints and connections), `client` (the calls), `build` (image
//! builds and their output),
//! `spec` (the create request), `types` (answers), `stream` (events and logs), `swarm` (Swarm
//! nodes, services and tasks, on `bollard-stubs`' models), `error`.

mod build;
mod client;
mod error;
mod images;
mod spec;
mod stream;
pub mod swarm;
mod transport;
mod types;

pub use build::{BuildMessage, BuildParams, BuildStream};
pub use client::{Docker, ExecOutcome, LogsOf, MAX_API_VERSION, MIN_API_VERSION};
pub use error::DockerError;
pub use images::ImageSummary;
pub use spec::{ContainerSpec, HealthConfig, HostSpec, MountSpec, START_INTERVAL_API};
pub use stream::{EventStream, LogChunk, LogSource, LogStream};
pub use types::{
    ContainerInspect, ContainerState, ContainerSummary, Event, ImageInspect, IpamConfig,
    NetworkEndpoint, NetworkIpam, NetworkSummary, VolumeSummary,
};
