//! Shared by the API's test files: a router over a control plane with a fresh store and the
//! real Docker engine (nothing is created on it).
#![allow(dead_code)]

use berth_controlplane::{Config, ControlPlane, DataPlane};
use std::net::SocketAddr;
use std::sync::Arc;

/// A data plane with nothing in flight, serving every table.
pub struct NoDataPlane;
impl DataPlane for NoDataPlane {
    fn in_flight(&self, _: &str) -> usize {
        0
    }
    fn port_errors(&self) -> Vec<(SocketAddr, String)> {
        vec![]
    }
    fn table_version(&self) -> u64 {
        u64::MAX
    }
}

/// The API router answering the default hosts, over a fresh control plane.
pub async fn router() -> (axum::Router, tempfile::TempDir) {
    router_with(berth_api::guard::Access::default()).await
}

/// The API router answering the hosts of `access`, over a fresh control plane.
pub async fn router_with(access: berth_api::guard::Access) -> (axum::Router, tempfile::TempDir) {
    let (cp, dir) = control_plane().await;
    (
        berth_api::router_with(
            berth_api::AppState {
                cp,
                version: "test".into(),
                metrics: Some(Arc::new(String::new)),
            },
            access,
        ),
        dir,
    )
}

/// A control plane on a fresh store; it uses the real engine only to connect.
pub async fn control_plane() -> (ControlPlane, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = berth_store::Store::open(dir.path()).unwrap();
    let docker = berth_docker::Docker::connect().await.unwrap();
    let (tx, _rx) = tokio::sync::watch::channel(Arc::new(berth_core::RoutingTable::default()));
    let cp = ControlPlane::start(
        store,
        docker,
        Config::default(),
        tx,
        Arc::new(NoDataPlane),
        Default::default(),
    )
    .unwrap();
    cp.enable_backups(dir.path().to_path_buf());
    (cp, dir)
}
