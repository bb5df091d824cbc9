//! The OpenAPI 3.1 document served at `/api/v1/openapi.json`, written by hand from one table of
//! operations ([`OPERATIONS`]) so that the document and the router cannot drift apart unnoticed
//! (a test calls every operation in the table and checks none is unknown to the router).

use serde_json::{json, Value};

/// One documented operation: (method, path, operation id, summary, request schema, response schema).
pub type Operation = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    &'static str,
);

/// Every operation of the API.
pub const OPERATIONS: &[Operation] = &[
    (
        "get",
        "/api/v1/health",
        "health",
        "Berth is up",
        None,
        "Health",
    ),
    (
        "get",
        "/api/v1/openapi.json",
        "openapi",
        "This document",
        None,
        "Object",
    ),
    (
        "get",
        "/api/v1/apps",
        "listApps",
        "Every application with its revision and health (`berth apps`)",
        None,
        "AppSummaryList",
    ),
    (
        "get",
        "/api/v1/apps/{app}",
        "appStatus",
        "An application's rollout progress per service",
        None,
        "AppStatus",
    ),
    (
        "delete",
        "/api/v1/apps/{app}",
        "removeApp",
        "Remove an application (`berth rm`; `?volumes=true` removes named volumes)",
        None,
        "Object",
    ),
    (
        "post",
        "/api/v1/apps/{app}/apply",
        "apply",
        "Deploy a Compose bundle as a new revision (`berth apply`)",
        Some("ApplyRequest"),
        "RevisionCreated",
    ),
    (
        "post",
        "/api/v1/contexts",
        "uploadContext",
        "Upload a build context (a tar, `Content-Type: application/x-tar`, at most 512 MiB) for a Compose service with `build:`; name its id in the apply's `build_contexts`",
        Some("ContextTar"),
        "ContextUploaded",
    ),
    (
        "post",
        "/api/v1/apps/{app}/scale",
        "scale",
        "Set replica counts (`berth scale`)",
        Some("ScaleRequest"),
        "RevisionCreated",
    ),
    (
        "post",
        "/api/v1/apps/{app}/rollback",
        "rollback",
        "Roll back to a revision (`berth rollback`)",
        Some("RollbackRequest"),
        "RevisionCreated",
    ),
    (
        "get",
        "/api/v1/apps/{app}/revisions",
        "history",
        "Revisions, newest first (`berth history`)",
        None,
        "RevisionList",
    ),
    (
        "get",
        "/api/v1/apps/{app}/ps",
        "ps",
        "Every replica (`berth ps`)",
        None,
        "InstanceList",
    ),
    (
        "get",
        "/api/v1/apps/{app}/services/{service}/instances",
        "instances",
        "Discovery: each replica's address, health and revision",
        None,
        "InstanceList",
    ),
    (
        "get",
        "/api/v1/apps/{app}/services/{service}/logs",
        "logs",
        "Logs of the service's replicas (`berth logs`; `?follow=true&tail=N`)",
        None,
        "Text",
    ),
    (
        "get",
        "/api/v1/routes",
        "routes",
        "The routing table the gateway serves",
        None,
        "Object",
    ),
    (
        "get",
        "/api/v1/images",
        "listImages",
        "Images of services built from source: size, state, deployed, rollback target (`berth images`; `?service=NAME`)",
        None,
        "ImageList",
    ),
    (
        "get",
        "/api/v1/images/{name}/{version}/archive",
        "archiveImage",
        "A version's image as a `docker save` tar (`berth image archive`)",
        None,
        "Binary",
    ),
    (
        "post",
        "/api/v1/images/restore",
        "restoreImage",
        "Load an archived image (body: the tar) and mark its version present (`berth image restore`)",
        None,
        "Object",
    ),
    (
        "get",
        "/api/v1/events",
        "listEvents",
        "Recent platform events, newest last: image removals, alerts, janitor work (`berth events`; `?after=ID&limit=N`)",
        None,
        "EventList",
    ),
];

fn schemas() -> Value {
    let s = |props: Value| json!({"type": "object", "properties": props});
    let string = json!({"type": "string"});
    let int = json!({"type": "integer"});
    json!({
        "Error": s(json!({"code": string, "message": string, "request_id": string})),
        "Object": {"type": "object"},
        "Text": {"type": "string"},
        "Health": s(json!({"status": string, "version": string, "instance": string, "docker_api": string})),
        "ApplyRequest": {
            "type": "object",
            "required": ["compose_files", "files"],
            "additionalProperties": false,
            "properties": {
                "compose_files": {"type": "array", "items": string},
                "files": {"type": "object", "additionalProperties": string},
                "env": {"type": "object", "additionalProperties": string},
                "profiles": {"type": "array", "items": string},
                "project_dir": string,
                "build_contexts": {"type": "object", "additionalProperties": string,
                    "description": "service name -> id of its uploaded build context (POST /api/v1/contexts)"}
            }
        },
        "ContextTar": {"type": "string", "format": "binary"},
        "ContextUploaded": s(json!({"id": string, "size": int})),
        "ScaleRequest": {"type": "object", "required": ["replicas"], "additionalProperties": false,
            "properties": {"replicas": {"type": "object", "additionalProperties": int}}},
        "RollbackRequest": {"type": "object", "additionalProperties": false, "properties": {"to": int}},
        "RevisionCreated": s(json!({"app": string, "revision": int, "changed": {"type": "boolean"}, "change": string})),
        "AppSummary": s(json!({"name": string, "revision": int, "revision_status": string, "health": string, "services": int, "created_at": string, "problem": string})),
        "AppSummaryList": {"type": "array", "items": {"$ref": "#/components/schemas/AppSummary"}},
        "ServiceStatus": s(json!({"name": string, "desired": int, "created": int, "healthy": int, "in_rotation": int, "old": int,
            "completed": {"type": "boolean"}, "waiting_for": {"type": "array", "items": string}, "problem": string})),
        "AppStatus": s(json!({"name": string, "revision": int, "revision_status": string, "message": string, "health": string,
            "converged": {"type": "boolean"}, "services": {"type": "array", "items": {"$ref": "#/components/schemas/ServiceStatus"}}})),
        "Instance": s(json!({"service": string, "slot": int, "container_id": string, "name": string, "image": string, "state": string,
            "health": {"type": "string", "enum": ["starting", "healthy", "unhealthy", "none"]}, "address": string, "revision": int,
            "restarts": int, "exit_code": int, "in_rotation": {"type": "boolean"}, "draining": {"type": "boolean"}})),
        "InstanceList": {"type": "array", "items": {"$ref": "#/components/schemas/Instance"}},
        "RevisionView": s(json!({"revision": int, "created_at": string, "source": string, "change": string, "status": string, "message": string, "finished_at": string})),
        "RevisionList": {"type": "array", "items": {"$ref": "#/components/schemas/RevisionView"}},
        "TokenRequest": {"type": "object", "required": ["subject"], "additionalProperties": false,
            "properties": {"subject": string, "audiences": {"type": "array", "items": string}, "ttl_secs": int, "claims": {"type": "object"}}},
        "TokenIssued": s(json!({"token": string, "expires_at": int})),
        "IssuerRequest": {"type": "object", "required": ["name", "issuer"], "additionalProperties": false,
            "properties": {"name": string, "issuer": string, "jwks_url": string, "jwks": string, "hs256_secret": string}},
        "IssuerView": s(json!({"name": string, "issuer": string, "kind": string, "jwks_url": string, "keys": int})),
        "ServiceRequest": {"type": "object", "required": ["name"], "additionalProperties": false,
            "properties": {"name": string, "git": string, "branch": string, "path": string, "svn": string}},
        "ServiceView": s(json!({"name": string, "source": {"type": "object"}, "created_at": string})),
        "BuildStart": {"type": "object", "additionalProperties": false, "properties": {"ref": string}},
        "BuildView": s(json!({"id": int, "service": string, "ref": string, "status": string, "reason": string, "version": string, "created_at": string, "finished_at": string})),
        "ImageView": s(json!({"service": string, "version": string, "tag": string, "digest": string, "size": int, "created_at": string,
            "deployed": {"type": "boolean"}, "rollback_target": {"type": "boolean"},
            "state": {"type": "string", "enum": ["present", "removed", "archived", "missing"]}})),
        "ImageList": {"type": "array", "items": {"$ref": "#/components/schemas/ImageView"}},
        "Binary": {"type": "string", "format": "binary"},
        "EventView": s(json!({"id": int, "time": string, "kind": string, "level": {"type": "string", "enum": ["info", "warn"]}, "message": string, "subject": string})),
        "EventList": {"type": "array", "items": {"$ref": "#/components/schemas/EventView"}},
        "IssuerList": {"type": "array", "items": {"$ref": "#/components/schemas/IssuerView"}},
    })
}

/// The whole document.
#[must_use]
pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for (method, path, id, summary, req, resp) in OPERATIONS {
        let mut params = Vec::new();
        for p in ["app", "service", "name", "secret", "id", "version"] {
            if path.contains(&format!("{{{p}}}")) {
                params.push(json!({"name": p, "in": "path", "required": true, "schema": {"type": "string"}}));
            }
        }
        let content = if *resp == "Text" {
            json!({"text/plain": {"schema": {"type": "string"}}})
        } else if *resp == "Binary" {
            json!({"application/x-tar": {"schema": {"type": "string", "format": "binary"}}})
        } else {
            json!({"application/json": {"schema": {"$ref": format!("#/components/schemas/{resp}")}}})
        };
        let ok = match *id {
            "apply" | "issueToken" | "addIssuer" | "createService" | "uploadContext" => "201",
            "startBuild" | "webhook" => "202",
            "removeApp" => "202",
            _ => "200",
        };
        let mut op = json!({
            "operationId": id,
            "summary": summary,
            "parameters": params,
            "responses": {
                ok: {"description": if ok == "201" { "a new revision was committed (200 when nothing changed)" } else { "success" }, "content": content},
                "default": {"description": "error (see docs/errors.md)",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            }
        });
        if let Some(req) = req {
            let media = if *req == "ContextTar" {
                "application/x-tar"
            } else {
                "application/json"
            };
            op["requestBody"] = json!({"required": true, "content": {media: {"schema": {"$ref": format!("#/components/schemas/{req}")}}}});
        }
        let entry = paths
            .entry((*path).to_string())
            .or_insert_with(|| json!({}));
        entry[*method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Berth API", "version": "1", "description": "Berth's control-plane API. Errors: HTTP status + {code, message, request_id}; codes in docs/errors.md."},
        "paths": paths,
        "components": {"schemas": schemas()}
    })
}
