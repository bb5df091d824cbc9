//! The OpenAPI document against the router it is derived from.
//!
//! Routed ⇒ documented holds by construction (`openapi::routes` registers each handler with its
//! `#[utoipa::path]`); these tests keep it so and check the other direction on the real router:
//! every documented operation is answered by its handler (possibly with a domain error such as
//! `app_not_found`), never by the router's fallback (`not_found` "no such API path") or
//! `method_not_allowed`, and no undocumented method is answered on a documented path.
//! Uses the real Docker engine only to construct the control plane (nothing is created).

use axum::body::Body;
use axum::extract::ConnectInfo;

use http_body_util::BodyExt;
use serde_json::Value;
use std::net::SocketAddr;
use tower::ServiceExt;

mod common;
use common::router;

async fn call(
    app: &axum::Router,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
) -> (u16, String, String) {
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "127.0.0.1")
        .header("content-type", content_type)
        .body(Body::from(body.to_string()))
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo("127.0.0.1:5000".parse::<SocketAddr>().unwrap()));
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, ctype, String::from_utf8_lossy(&bytes).into_owned())
}

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

/// Every (method, path) the document lists.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in METHODS {
            if let Some(op) = item.get(m) {
                ops.push((m.to_string(), path.clone(), op.clone()));
            }
        }
    }
    ops
}

fn concrete(path: &str) -> String {
    path.replace("{app}", "ghost")
        .replace("{service}", "web")
        .replace("{name}", "nobody")
        .replace("{secret}", "S")
        .replace("{id}", "999")
        .replace("{version}", "v1")
        .replace("{team}", "ghost")
        .replace("{key}", "privileged")
}

/// A body the handler accepts far enough to reach the control plane (which then answers a
/// domain error: nothing named here exists).
fn body_for(op_id: &str) -> (&'static str, &'static str) {
    let json = "application/json";
    match op_id {
        "scale" => (json, r#"{"replicas": {"web": 1}}"#),
        "apply" => (json, r#"{"compose_files": [], "files": {}}"#),
        "issueToken" => (json, r#"{"subject": "x"}"#),
        "addIssuer" => (json, r#"{"name": "x", "issuer": "y"}"#),
        "createService" => (json, r#"{"name": "Bad Name"}"#),
        "webhook" => (json, r#"{"ref": "refs/heads/main"}"#),
        "login" => (json, r#"{"user": "nobody", "password": "not-it"}"#),
        "createApiToken" => (json, r#"{"name": "Bad Name"}"#),
        "addUser" => (json, r#"{"name": "Bad Name"}"#),
        "grantAdmission" => (json, r#"{"key": "privileged"}"#),
        "setPassword" => (json, r#"{"password": "long-enough-password"}"#),
        "setSecret" | "setWebhookSecret" => ("text/plain", "s3cret"),
        "uploadContext" | "restoreImage" => ("application/x-tar", "not a tar"),
        _ => (json, "{}"),
    }
}

fn is_router_refusal(status: u16, text: &str) -> bool {
    status == 405 || text.contains("no such API path") || text.contains("\"method_not_allowed\"")
}

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let (app, _dir) = router().await;
    let doc = berth_api::openapi::document();
    let mut ops = operations(&doc);
    assert_eq!(ops.len(), 88, "operations documented: {ops:?}");
    // Logging out revokes the token the calls carry: last.
    ops.sort_by_key(|(_, path, _)| path == "/api/v1/logout");
    for (method, path, op) in &ops {
        let id = op["operationId"].as_str().unwrap();
        let (ctype, body) = body_for(id);
        let (status, answer_type, text) =
            call(&app, &method.to_uppercase(), &concrete(path), ctype, body).await;
        assert!(
            !is_router_refusal(status, &text),
            "{method} {path} ({id}) is documented but not routed: {status} {text}"
        );
        assert_answer_is_documented(op, &format!("{method} {path}"), status, &answer_type, &text);
    }
}

/// The status is one the operation documents; an error is in the error shape.
fn assert_answer_is_documented(op: &Value, what: &str, status: u16, ctype: &str, text: &str) {
    let documented = &op["responses"][status.to_string()];
    assert!(
        documented.is_object(),
        "{what} answered {status}, which it does not document: {text}"
    );
    if status >= 400 {
        assert!(ctype.starts_with("application/json"), "{what}: {ctype}");
        let body: Value = serde_json::from_str(text).unwrap();
        let mut keys: Vec<_> = body.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(keys, ["code", "message", "request_id"], "{what}: {text}");
        assert!(!body["request_id"].as_str().unwrap().is_empty(), "{what}");
    }
}

/// Found by scripts/contract: `?service=` naming no service is a 404 `service_not_found`, which
/// the image listing did not document.
#[tokio::test]
async fn a_filter_naming_no_service_is_a_documented_404() {
    let (app, _dir) = router().await;
    let doc = berth_api::openapi::document();
    for path in ["/api/v1/images"] {
        let (status, ctype, text) = call(
            &app,
            "GET",
            &format!("{path}?service=ghost"),
            "application/json",
            "",
        )
        .await;
        assert_eq!(status, 404, "{path}: {text}");
        assert!(text.contains("\"service_not_found\""), "{path}: {text}");
        assert_answer_is_documented(&doc["paths"][path]["get"], path, status, &ctype, &text);
    }
}

#[tokio::test]
async fn no_undocumented_method_is_answered_on_a_documented_path() {
    let (app, _dir) = router().await;
    let doc = berth_api::openapi::document();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in METHODS {
            if item.get(m).is_some() {
                continue;
            }
            let (status, _, text) = call(
                &app,
                &m.to_uppercase(),
                &concrete(path),
                "application/json",
                "{}",
            )
            .await;
            assert_eq!(
                status, 405,
                "{m} {path} is answered but not documented: {status} {text}"
            );
        }
    }
}

/// Routed ⇒ documented holds because the router's routes all come from `openapi::routes`. Keep
/// it so: `lib.rs` adds no route of its own. The one merge is the dashboard's pages, which are
/// not API routes (berth-web checks that none of them is under `/api`).
#[test]
fn the_router_adds_no_route_outside_the_document() {
    let lib = include_str!("../src/lib.rs").replacen(".merge(pages)", "", 1);
    for call in [
        ".route(",
        ".route_service(",
        ".nest(",
        ".nest_service(",
        ".merge(",
    ] {
        assert!(
            !lib.contains(call),
            "lib.rs calls {call}: register the handler in openapi::routes with a #[utoipa::path]"
        );
    }
}

#[test]
fn every_operation_documents_its_errors_with_the_error_shape() {
    let doc = berth_api::openapi::document();
    assert_eq!(doc["openapi"], "3.1.0");
    let error = &doc["components"]["schemas"]["ErrorBody"];
    let mut props: Vec<_> = error["properties"].as_object().unwrap().keys().collect();
    props.sort();
    assert_eq!(props, ["code", "message", "request_id"], "{error}");
    assert_eq!(
        error["required"],
        serde_json::json!(["code", "message", "request_id"]),
        "{error}"
    );
    for (method, path, op) in operations(&doc) {
        let responses = op["responses"].as_object().unwrap();
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{method} {path}: no success answer documented"
        );
        for status in ["403", "500"] {
            assert!(
                responses.contains_key(status),
                "{method} {path}: {status} not documented"
            );
        }
        for (status, resp) in responses {
            if status == "204" {
                // No Content: no body, by definition.
                assert!(
                    resp["content"].is_null(),
                    "{method} {path}: 204 with content"
                );
                continue;
            }
            if status.starts_with('2') {
                assert!(
                    resp["content"].as_object().is_some_and(|c| !c.is_empty()),
                    "{method} {path}: {status} has no content type"
                );
                continue;
            }
            assert_eq!(
                resp["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/ErrorBody",
                "{method} {path}: {status} is not in the error shape"
            );
        }
    }
}

#[test]
fn non_json_answers_are_documented_with_their_content_types() {
    let doc = berth_api::openapi::document();
    let content = |path: &str, method: &str, status: &str| -> Vec<String> {
        let mut types: Vec<String> = doc["paths"][path][method]["responses"][status]["content"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path} {status}"))
            .keys()
            .cloned()
            .collect();
        types.sort();
        types
    };
    assert_eq!(
        content("/api/v1/apps/{app}/services/{service}/logs", "get", "200"),
        ["text/plain"]
    );
    assert_eq!(
        content("/api/v1/images/{name}/{version}/archive", "get", "200"),
        ["application/x-tar"]
    );
    assert_eq!(content("/metrics", "get", "200"), ["text/plain"]);
    assert_eq!(
        content("/api/v1/admin/backup", "post", "200"),
        ["application/x-tar"]
    );
    assert_eq!(
        content("/api/v1/builds/{id}/logs", "get", "200"),
        ["text/event-stream", "text/plain"]
    );
    assert_eq!(
        content("/api/v1/gateway/table", "get", "200"),
        ["application/json", "application/x-ndjson"]
    );
    assert_eq!(
        content("/.well-known/jwks.json", "get", "200"),
        ["application/json"]
    );
    assert_eq!(
        doc["paths"]["/api/v1/contexts"]["post"]["requestBody"]["content"]["application/x-tar"]
            ["schema"]["format"],
        "binary"
    );
    assert!(doc["paths"]["/api/v1/apps/{app}/apply"]["post"]["responses"]["201"].is_object());
}

#[tokio::test]
async fn the_served_document_is_the_generated_one() {
    let (app, _dir) = router().await;
    let (status, ctype, text) =
        call(&app, "GET", "/api/v1/openapi.json", "application/json", "").await;
    assert_eq!(status, 200);
    assert!(ctype.starts_with("application/json"), "{ctype}");
    let served: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(served, berth_api::openapi::document());
}

/// Found by scripts/contract: `?team=` naming no team (or empty) is a 404 `team_not_found` on
/// every operation that takes it, which the document must say.
#[tokio::test]
async fn a_team_naming_no_team_is_a_documented_404() {
    let (app, _dir) = router().await;
    let doc = berth_api::openapi::document();
    let mut checked = 0;
    for (m, path, op) in operations(&doc) {
        let takes_team = op["parameters"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["name"] == "team" && p["in"] == "query"));
        if !takes_team {
            continue;
        }
        for team in ["ghost", ""] {
            let uri = format!("{}?team={team}", concrete(&path));
            let (status, ctype, text) =
                call(&app, &m.to_uppercase(), &uri, "application/json", "{}").await;
            assert_eq!(status, 404, "{m} {uri}: {text}");
            assert!(text.contains("\"team_not_found\""), "{m} {uri}: {text}");
            assert_answer_is_documented(&op, &format!("{m} {uri}"), status, &ctype, &text);
        }
        checked += 1;
    }
    assert!(checked > 20, "only {checked} operations take ?team=");
}
