//! `berth-testkit`: helpers for Berth's tests that run against a real Docker engine.
//!
//! Rules it keeps:
//! - Everything a test creates carries the label `berth.test=<run id>`, unique per [`TestRun`];
//!   cleanup finds objects by that label only, so it never touches anything else on the host
//!   (other tests, other engineers, the machine's own containers).
//! - Cleanup happens in `Drop`, which also runs while a failing test unwinds; it is
//!   best-effort and never panics (a panic inside a panic would abort the test binary).
//! - The test workload is `berth-testapp`, built statically by cargo and packaged `FROM scratch`
//!   locally: no image is ever pulled.
//! - Blocking helpers only (std + the `docker` CLI): usable from sync and async tests alike.
//!
//! Modules: `run` ([`TestRun`]), `image` (the test-app image), `http` ([`http_get`]), `wait`
//! ([`wait_for`]), `swarm` (a Swarm of several nodes on this machine, [`swarm::Lab`]).

mod http;
mod image;
mod run;
pub mod swarm;
mod wait;

pub use http::{api_token, http_get, register_api_token};
pub use image::{busybox_image, testapp_binary, testapp_image, testapp_image_tagged};
pub use run::{docker_cli, TestRun, LABEL_KEY};
pub use wait::wait_for;
