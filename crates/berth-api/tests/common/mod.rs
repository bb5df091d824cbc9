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

/// A request carrying this header is sent as is; any other without an `Authorization` gets the
/// local administrator token of the router's data directory.
pub const ANONYMOUS: &str = "x-test-anonymous";

/// The API router answering the hosts of `access`, over a fresh control plane. Requests are
/// sent as the local administrator (see [`ANONYMOUS`]); the token is in `<dir>/admin.token`.
pub async fn router_with(access: berth_api::guard::Access) -> (axum::Router, tempfile::TempDir) {
    let (cp, store, dir) = control_plane_and_store().await;
    let identity =
        berth_access::Access::open(store, berth_access::AccessConfig::default()).unwrap();
    identity
        .bootstrap(Some("test-admin-password".into()))
        .await
        .unwrap();
    identity.write_local_token(dir.path()).unwrap();
    let token = std::fs::read_to_string(dir.path().join("admin.token"))
        .unwrap()
        .trim()
        .to_string();
    let router = berth_api::router_with(
        berth_api::AppState {
            cp,
            version: "test".into(),
            metrics: Some(Arc::new(String::new)),
            access: identity,
        },
        access,
    );
    let bearer = http::HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
    let with_token =
        axum::Router::new()
            .fallback_service(router)
            .layer(axum::middleware::map_request(
                move |mut req: axum::extract::Request| {
                    let bearer = bearer.clone();
                    async move {
                        let h = req.headers_mut();
                        if h.remove(ANONYMOUS).is_none()
                            && !h.contains_key(http::header::AUTHORIZATION)
                        {
                            h.insert(http::header::AUTHORIZATION, bearer);
                        }
                        req
                    }
                },
            ));
    (with_token, dir)
}

/// A control plane on a fresh store; it uses the real engine only to connect.
pub async fn control_plane() -> (ControlPlane, tempfile::TempDir) {
    let (cp, _, dir) = control_plane_and_store().await;
    (cp, dir)
}

/// A control plane on a fresh store, and the store (shared, as the server shares it).
pub async fn control_plane_and_store() -> (ControlPlane, berth_store::Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = berth_store::Store::open(dir.path()).unwrap();
    let docker = berth_docker::Docker::connect().await.unwrap();
    let (tx, _rx) = tokio::sync::watch::channel(Arc::new(berth_core::RoutingTable::default()));
    let cp = ControlPlane::start(
        store.clone(),
        docker,
        Config::default(),
        tx,
        Arc::new(NoDataPlane),
        Default::default(),
    )
    .unwrap();
    cp.enable_backups(dir.path().to_path_buf());
    (cp, store, dir)
}
