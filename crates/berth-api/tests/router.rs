//! The router's middleware: loopback only, and error answers carry the request id. (The
//! document against the router is in `openapi.rs`.) Uses the real Docker engine only to
//! construct the control plane (nothing is created).

use axum::body::Body;
use axum::extract::ConnectInfo;
use berth_controlplane::{Config, ControlPlane, DataPlane};
use http_body_util::BodyExt;
use std::net::SocketAddr;
use std::sync::Arc;
use tower::ServiceExt;

struct NoDataPlane;
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

async fn router() -> (axum::Router, tempfile::TempDir) {
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
    (
        berth_api::router(berth_api::AppState {
            cp,
            version: "test".into(),
            metrics: Some(Arc::new(String::new)),
        }),
        dir,
    )
}

fn request(method: &str, path: &str, body: &str, peer: &str) -> http::Request<Body> {
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
    req
}

#[tokio::test]
async fn remote_peers_are_refused_and_errors_carry_the_request_id() {
    let (app, _dir) = router().await;
    let resp = app
        .clone()
        .oneshot(request("GET", "/api/v1/apps", "", "10.1.2.3:5000"))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let mut req = request("GET", "/api/v1/apps/ghost", "", "127.0.0.1:5000");
    req.headers_mut()
        .insert("x-request-id", "my-id-1".parse().unwrap());
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    assert_eq!(resp.headers()["x-request-id"], "my-id-1");
    let body: serde_json::Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["code"], "app_not_found");
    assert_eq!(body["request_id"], "my-id-1");
    // A malformed request id is replaced.
    let mut req = request("GET", "/api/v1/health", "", "127.0.0.1:5000");
    req.headers_mut()
        .insert("x-request-id", "bad id with spaces".parse().unwrap());
    let resp = app.oneshot(req).await.unwrap();
    assert_ne!(resp.headers()["x-request-id"], "bad id with spaces");
}
