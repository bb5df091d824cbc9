//! The router against the OpenAPI table: every documented operation is routed (it may answer a
//! domain error like `app_not_found`, never the router's `not_found` / `method_not_allowed`),
//! and error answers carry the request id. Uses the real Docker engine only to construct the
//! control plane (nothing is created).

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
async fn every_documented_operation_is_routed() {
    let (app, _dir) = router().await;
    for (method, path, id, ..) in berth_api::openapi::OPERATIONS {
        let path = path
            .replace("{app}", "ghost")
            .replace("{service}", "web")
            .replace("{name}", "nobody")
            .replace("{secret}", "S")
            .replace("{id}", "999")
            .replace("{version}", "v1")
            .replace("{name}", "nobody")
            .replace("{secret}", "S")
            .replace("{id}", "999")
            .replace("{version}", "v1");
        let body = match *id {
            "scale" => r#"{"replicas": {"web": 1}}"#,
            "apply" => r#"{"compose_files": [], "files": {}}"#,
            "issueToken" => r#"{"subject": "x"}"#,
            "addIssuer" => r#"{"name": "x", "issuer": "y"}"#,
            "createService" => r#"{"name": "Bad Name"}"#,
            "webhook" => r#"{"ref": "refs/heads/main"}"#,
            _ => "{}",
        };
        let resp = app
            .clone()
            .oneshot(request(
                &method.to_uppercase(),
                &path,
                body,
                "127.0.0.1:5000",
            ))
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("\"not_found\"") && !text.contains("\"method_not_allowed\""),
            "{method} {path} is not routed: {status} {text}"
        );
    }
    let doc = berth_api::openapi::document();
    assert!(
        doc["paths"]["/api/v1/apps/{app}/apply"]["post"]["responses"]["201"].is_object(),
        "{doc}"
    );
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
