//! A service's API contract (an OpenAPI document) and the difference between two of them, for
//! the reviewer of a version (docs/lifecycle.md, "Evidence").
//!
//! Pure: the documents come in as JSON values (the build reads YAML or JSON). The comparison is
//! what a consumer of the service cares about:
//! - operations (`METHOD /path`, path parameters matched by position, not name) added, removed;
//! - parameters added, removed, made required, their type changed;
//! - response codes added, removed; response body fields added, removed, their type changed.
//!
//! **Breaking** (flagged): a removed operation; a new required parameter or an optional one made
//! required; a parameter's type narrowed or changed (callers send what was valid); a removed
//! success (2xx) response; a removed response field; a response field's type widened or changed
//! (callers read what was promised). `$ref`s to the document's own components are followed.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

/// How deep `$ref`s and nested fields are followed (cycles end here).
const MAX_DEPTH: usize = 8;

/// One difference between two contracts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Change {
    /// `operation_added`, `operation_removed`, `parameter_added`, `parameter_removed`,
    /// `parameter_required`, `parameter_type`, `response_added`, `response_removed`,
    /// `field_added`, `field_removed`, `field_type`.
    pub kind: String,
    /// `METHOD /path` as the newer contract (or, when removed, the older) writes it.
    pub operation: String,
    /// What changed, in words.
    pub detail: String,
    /// The change breaks existing consumers.
    pub breaking: bool,
}

/// Check that a document looks like an OpenAPI (3.x) or Swagger (2.0) document: an object with
/// a `paths` object.
pub fn validate(doc: &Value) -> Result<(), String> {
    let obj = doc
        .as_object()
        .ok_or("the contract is not an object (an OpenAPI document is)")?;
    if !obj.contains_key("openapi") && !obj.contains_key("swagger") {
        return Err("the contract has neither `openapi` nor `swagger` at its top".into());
    }
    match obj.get("paths") {
        Some(Value::Object(_)) => Ok(()),
        Some(_) => Err("the contract's `paths` is not an object".into()),
        None => Err("the contract has no `paths`".into()),
    }
}

/// The number of operations in a contract.
#[must_use]
pub fn operation_count(doc: &Value) -> usize {
    operations(doc).len()
}

/// What changed from `old` to `new`, in a stable order (by operation, then kind).
#[must_use]
pub fn diff(old: &Value, new: &Value) -> Vec<Change> {
    let before = operations(old);
    let after = operations(new);
    let mut changes = Vec::new();
    for (key, op) in &before {
        if !after.contains_key(key) {
            changes.push(change(
                "operation_removed",
                &op.display,
                "the operation is gone".into(),
                true,
            ));
        }
    }
    for (key, op) in &after {
        let Some(was) = before.get(key) else {
            changes.push(change(
                "operation_added",
                &op.display,
                "a new operation".into(),
                false,
            ));
            continue;
        };
        compare_operation(was, op, &mut changes);
    }
    changes.sort_by(|a, b| {
        (&a.operation, &a.kind, &a.detail).cmp(&(&b.operation, &b.kind, &b.detail))
    });
    changes
}

fn change(kind: &str, operation: &str, detail: String, breaking: bool) -> Change {
    Change {
        kind: kind.into(),
        operation: operation.into(),
        detail,
        breaking,
    }
}

/// One operation, reduced to what consumers depend on.
#[derive(Debug, Default)]
struct Operation {
    display: String,
    /// (in, name) → (required, type)
    params: BTreeMap<(String, String), (bool, Type)>,
    /// status code → fields of the response body (path → type); `""` is the body itself.
    responses: BTreeMap<String, BTreeMap<String, Type>>,
}

fn operations(doc: &Value) -> BTreeMap<String, Operation> {
    let mut ops = BTreeMap::new();
    let Some(paths) = doc.get("paths").and_then(Value::as_object) else {
        return ops;
    };
    for (path, item) in paths {
        let item = resolve(doc, item, 0);
        let shared = item.get("parameters");
        for m in METHODS {
            let Some(op) = item.get(m) else { continue };
            let op = resolve(doc, op, 0);
            let display = format!("{} {path}", m.to_uppercase());
            let mut o = Operation {
                display,
                ..Operation::default()
            };
            for list in [shared, op.get("parameters")].into_iter().flatten() {
                for p in list.as_array().into_iter().flatten() {
                    let p = resolve(doc, p, 0);
                    let (Some(name), Some(place)) = (
                        p.get("name").and_then(Value::as_str),
                        p.get("in").and_then(Value::as_str),
                    ) else {
                        continue;
                    };
                    let required = place == "path"
                        || p.get("required").and_then(Value::as_bool).unwrap_or(false);
                    let ty = p
                        .get("schema")
                        .map(|s| Type::of(doc, s))
                        .unwrap_or_else(|| Type::of(doc, p));
                    // Path parameters match by position: renaming `{id}` to `{key}` changes nothing.
                    let name = if place == "path" {
                        path_position(path, name)
                    } else {
                        name.to_string()
                    };
                    o.params.insert((place.to_string(), name), (required, ty));
                }
            }
            if let Some(body) = op.get("requestBody") {
                let body = resolve(doc, body, 0);
                let required = body
                    .get("required")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                if let Some(schema) = first_schema(body) {
                    o.params.insert(
                        ("body".into(), String::new()),
                        (required, Type::of(doc, schema)),
                    );
                }
            }
            for (code, resp) in op
                .get("responses")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                let resp = resolve(doc, resp, 0);
                let mut fields = BTreeMap::new();
                if let Some(schema) = first_schema(resp).or_else(|| resp.get("schema")) {
                    collect_fields(doc, schema, String::new(), 0, &mut fields);
                }
                o.responses.insert(code.clone(), fields);
            }
            ops.insert(normalise_path(path, m), o);
        }
    }
    ops
}

/// `get /items/{id}` → `GET /items/{}`: the key two contracts' operations are matched by.
fn normalise_path(path: &str, method: &str) -> String {
    let mut out = format!("{} ", method.to_uppercase());
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push_str("{}");
            }
            '}' => in_param = false,
            _ if in_param => {}
            _ => out.push(c),
        }
    }
    out
}

/// The position of `{name}` among the path's parameters, as `#N` (`#?` if it is not there).
fn path_position(path: &str, name: &str) -> String {
    let needle = format!("{{{name}}}");
    path.split('/')
        .filter(|seg| seg.contains('{'))
        .position(|seg| seg.contains(&needle))
        .map_or_else(|| format!("#? {name}"), |i| format!("#{i}"))
}

/// The schema of a request body or response: `application/json` first, else the first.
fn first_schema(v: &Value) -> Option<&Value> {
    let content = v.get("content")?.as_object()?;
    content
        .get("application/json")
        .or_else(|| content.values().next())?
        .get("schema")
}

/// Follow a local `$ref` (`#/components/...`, `#/definitions/...`), a few levels deep.
fn resolve<'a>(doc: &'a Value, v: &'a Value, depth: usize) -> &'a Value {
    let mut cur = v;
    for _ in depth..MAX_DEPTH {
        match cur.get("$ref").and_then(Value::as_str) {
            Some(r) if r.starts_with("#/") => match doc.pointer(&r[1..]) {
                Some(target) => cur = target,
                None => return cur,
            },
            _ => return cur,
        }
    }
    cur
}

fn collect_fields(
    doc: &Value,
    schema: &Value,
    at: String,
    depth: usize,
    out: &mut BTreeMap<String, Type>,
) {
    if depth >= MAX_DEPTH {
        return;
    }
    let schema = resolve(doc, schema, 0);
    out.insert(at.clone(), Type::of(doc, schema));
    let mut props: Vec<(&String, &Value)> = Vec::new();
    if let Some(p) = schema.get("properties").and_then(Value::as_object) {
        props.extend(p);
    }
    for part in schema
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let part = resolve(doc, part, 0);
        if let Some(p) = part.get("properties").and_then(Value::as_object) {
            props.extend(p);
        }
    }
    for (name, sub) in props {
        let path = if at.is_empty() {
            name.clone()
        } else {
            format!("{at}.{name}")
        };
        collect_fields(doc, sub, path, depth + 1, out);
    }
    if let Some(items) = schema.get("items") {
        collect_fields(doc, items, format!("{at}[]"), depth + 1, out);
    }
}

/// What values a schema admits, as far as the comparison needs: its JSON types (`integer` is
/// inside `number`), `null`, and an enumeration.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Type {
    /// Empty: any type.
    types: BTreeSet<String>,
    enumeration: Option<BTreeSet<String>>,
}

impl Type {
    fn of(doc: &Value, schema: &Value) -> Type {
        let schema = resolve(doc, schema, 0);
        let mut types = BTreeSet::new();
        match schema.get("type") {
            Some(Value::String(t)) => {
                types.insert(t.clone());
            }
            Some(Value::Array(ts)) => {
                types.extend(ts.iter().filter_map(Value::as_str).map(str::to_string));
            }
            _ => {}
        }
        if !types.is_empty() && schema.get("nullable").and_then(Value::as_bool) == Some(true) {
            types.insert("null".into());
        }
        let enumeration = schema
            .get("enum")
            .and_then(Value::as_array)
            .map(|vs| vs.iter().map(Value::to_string).collect());
        Type { types, enumeration }
    }

    /// Every value `self` admits, `other` admits too.
    fn within(&self, other: &Type) -> bool {
        let types_within = other.types.is_empty()
            || (!self.types.is_empty()
                && self.types.iter().all(|t| {
                    other.types.contains(t) || (t == "integer" && other.types.contains("number"))
                }));
        let enum_within = match (&self.enumeration, &other.enumeration) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(a), Some(b)) => a.is_subset(b),
        };
        types_within && enum_within
    }

    fn describe(&self) -> String {
        let mut s = if self.types.is_empty() {
            "any".to_string()
        } else {
            self.types.iter().cloned().collect::<Vec<_>>().join("|")
        };
        if let Some(e) = &self.enumeration {
            s.push_str(&format!(
                " enum [{}]",
                e.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        s
    }
}

/// How a type moved: `None` if it did not.
fn type_move(was: &Type, now: &Type) -> Option<&'static str> {
    if was == now {
        return None;
    }
    Some(match (now.within(was), was.within(now)) {
        (true, true) => return None,
        (true, false) => "narrowed",
        (false, true) => "widened",
        (false, false) => "changed",
    })
}

fn compare_operation(was: &Operation, now: &Operation, out: &mut Vec<Change>) {
    let op = &now.display;
    for ((place, name), (required, _)) in &was.params {
        if !now.params.contains_key(&(place.clone(), name.clone())) {
            let what = param_name(place, name);
            let detail = if *required {
                format!("{what} removed")
            } else {
                format!("optional {what} removed")
            };
            out.push(change("parameter_removed", op, detail, false));
        }
    }
    for ((place, name), (required, ty)) in &now.params {
        let what = param_name(place, name);
        match was.params.get(&(place.clone(), name.clone())) {
            None => {
                let detail = if *required {
                    format!("required {what} added")
                } else {
                    format!("optional {what} added")
                };
                out.push(change("parameter_added", op, detail, *required));
            }
            Some((was_required, was_ty)) => {
                if *required && !was_required {
                    out.push(change(
                        "parameter_required",
                        op,
                        format!("{what} is now required"),
                        true,
                    ));
                }
                if let Some(how) = type_move(was_ty, ty) {
                    out.push(change(
                        "parameter_type",
                        op,
                        format!(
                            "{what}: type {how} from {} to {}",
                            was_ty.describe(),
                            ty.describe()
                        ),
                        how != "widened",
                    ));
                }
            }
        }
    }
    for code in was.responses.keys() {
        if !now.responses.contains_key(code) {
            out.push(change(
                "response_removed",
                op,
                format!("response {code} removed"),
                code.starts_with('2'),
            ));
        }
    }
    for (code, fields) in &now.responses {
        let Some(was_fields) = was.responses.get(code) else {
            out.push(change(
                "response_added",
                op,
                format!("response {code} added"),
                false,
            ));
            continue;
        };
        for (field, ty) in was_fields {
            if field.is_empty() {
                continue;
            }
            match fields.get(field) {
                None => out.push(change(
                    "field_removed",
                    op,
                    format!("response {code}: field {field} removed"),
                    true,
                )),
                Some(now_ty) => {
                    if let Some(how) = type_move(ty, now_ty) {
                        out.push(change(
                            "field_type",
                            op,
                            format!(
                                "response {code}: field {field} type {how} from {} to {}",
                                ty.describe(),
                                now_ty.describe()
                            ),
                            how != "narrowed",
                        ));
                    }
                }
            }
        }
        if let (Some(was_body), Some(now_body)) = (was_fields.get(""), fields.get("")) {
            if let Some(how) = type_move(was_body, now_body) {
                out.push(change(
                    "field_type",
                    op,
                    format!(
                        "response {code}: body type {how} from {} to {}",
                        was_body.describe(),
                        now_body.describe()
                    ),
                    how != "narrowed",
                ));
            }
        }
        for field in fields.keys() {
            if !field.is_empty() && !was_fields.contains_key(field) {
                out.push(change(
                    "field_added",
                    op,
                    format!("response {code}: field {field} added"),
                    false,
                ));
            }
        }
    }
}

fn param_name(place: &str, name: &str) -> String {
    match place {
        "body" => "request body".into(),
        "path" => format!("path parameter {}", name.trim_start_matches('#')),
        _ => format!("{place} parameter {name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({
            "openapi": "3.0.3",
            "info": {"title": "orders", "version": "1"},
            "paths": {
                "/orders": {
                    "get": {
                        "parameters": [{"name": "limit", "in": "query", "schema": {"type": "integer"}}],
                        "responses": {"200": {"description": "ok", "content": {"application/json": {
                            "schema": {"type": "array", "items": {"$ref": "#/components/schemas/Order"}}}}}}
                    },
                    "post": {
                        "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Order"}}}},
                        "responses": {"201": {"description": "created"}, "400": {"description": "bad"}}
                    }
                },
                "/orders/{id}": {
                    "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                    "get": {"responses": {"200": {"description": "ok", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Order"}}}}}},
                    "delete": {"responses": {"204": {"description": "gone"}}}
                }
            },
            "components": {"schemas": {"Order": {"type": "object", "properties": {
                "id": {"type": "string"},
                "amount": {"type": "number"},
                "status": {"type": "string", "enum": ["open", "paid"]}
            }}}}
        })
    }

    fn kinds(changes: &[Change]) -> Vec<(String, String, bool)> {
        changes
            .iter()
            .map(|c| (c.kind.clone(), c.detail.clone(), c.breaking))
            .collect()
    }

    #[test]
    fn the_same_contract_has_no_changes() {
        assert!(validate(&base()).is_ok());
        assert_eq!(operation_count(&base()), 4);
        assert!(diff(&base(), &base()).is_empty());
    }

    #[test]
    fn a_removed_operation_breaks_and_an_added_one_does_not() {
        let mut new = base();
        new["paths"]["/orders/{id}"]
            .as_object_mut()
            .unwrap()
            .remove("delete");
        new["paths"]["/health"] = json!({"get": {"responses": {"200": {"description": "ok"}}}});
        let c = diff(&base(), &new);
        assert_eq!(
            kinds(&c),
            [
                (
                    "operation_removed".into(),
                    "the operation is gone".into(),
                    true
                ),
                ("operation_added".into(), "a new operation".into(), false),
            ]
        );
        assert_eq!(c[0].operation, "DELETE /orders/{id}");
        assert_eq!(c[1].operation, "GET /health");
    }

    #[test]
    fn renaming_a_path_parameter_changes_nothing() {
        let text = base().to_string().replace("{id}", "{order}");
        let mut new: Value = serde_json::from_str(&text).unwrap();
        new["paths"]["/orders/{order}"]["parameters"][0]["name"] = json!("order");
        assert!(diff(&base(), &new).is_empty(), "{:?}", diff(&base(), &new));
    }

    #[test]
    fn parameters_required_and_types() {
        let mut new = base();
        let get = &mut new["paths"]["/orders"]["get"];
        get["parameters"] = json!([
            {"name": "limit", "in": "query", "required": true, "schema": {"type": "number"}},
            {"name": "since", "in": "query", "required": true, "schema": {"type": "string"}},
            {"name": "sort", "in": "query", "schema": {"type": "string"}}
        ]);
        let c = kinds(&diff(&base(), &new));
        assert!(
            c.contains(&(
                "parameter_added".into(),
                "required query parameter since added".into(),
                true
            )),
            "{c:?}"
        );
        assert!(
            c.contains(&(
                "parameter_added".into(),
                "optional query parameter sort added".into(),
                false
            )),
            "{c:?}"
        );
        assert!(
            c.contains(&(
                "parameter_required".into(),
                "query parameter limit is now required".into(),
                true
            )),
            "{c:?}"
        );
        // integer → number widens what a caller may send: not breaking.
        assert!(
            c.contains(&(
                "parameter_type".into(),
                "query parameter limit: type widened from integer to number".into(),
                false
            )),
            "{c:?}"
        );
        // The reverse narrows: breaking.
        let c = kinds(&diff(&new, &base()));
        assert!(
            c.contains(&(
                "parameter_type".into(),
                "query parameter limit: type narrowed from number to integer".into(),
                true
            )),
            "{c:?}"
        );
        assert!(
            c.contains(&(
                "parameter_removed".into(),
                "query parameter since removed".into(),
                false
            )),
            "{c:?}"
        );
    }

    #[test]
    fn response_fields_and_codes() {
        let mut new = base();
        let order = &mut new["components"]["schemas"]["Order"]["properties"];
        order.as_object_mut().unwrap().remove("amount");
        order["status"]["enum"] = json!(["open", "paid", "refunded"]);
        order["note"] = json!({"type": "string"});
        new["paths"]["/orders"]["post"]["responses"]
            .as_object_mut()
            .unwrap()
            .remove("400");
        new["paths"]["/orders"]["post"]["responses"]
            .as_object_mut()
            .unwrap()
            .remove("201");
        new["paths"]["/orders"]["post"]["responses"]["202"] = json!({"description": "accepted"});
        let c = diff(&base(), &new);
        let k = kinds(&c);
        assert!(
            k.contains(&(
                "field_removed".into(),
                "response 200: field [].amount removed".into(),
                true
            )),
            "{k:?}"
        );
        assert!(
            k.contains(&(
                "field_removed".into(),
                "response 200: field amount removed".into(),
                true
            )),
            "{k:?}"
        );
        assert!(
            k.contains(&(
                "field_added".into(),
                "response 200: field note added".into(),
                false
            )),
            "{k:?}"
        );
        // A response enum that grows is a widening: a consumer may meet a value it cannot read.
        assert!(k.contains(&("field_type".into(), "response 200: field status type widened from string enum [\"open\", \"paid\"] to string enum [\"open\", \"paid\", \"refunded\"]".into(), true)), "{k:?}");
        assert!(
            k.contains(&(
                "response_removed".into(),
                "response 201 removed".into(),
                true
            )),
            "{k:?}"
        );
        assert!(
            k.contains(&(
                "response_removed".into(),
                "response 400 removed".into(),
                false
            )),
            "{k:?}"
        );
        assert!(
            k.contains(&("response_added".into(), "response 202 added".into(), false)),
            "{k:?}"
        );
        // The request body shares the schema: its type (object) did not move.
        assert!(
            !k.iter().any(|(kind, _, _)| kind == "parameter_type"),
            "{k:?}"
        );
    }

    #[test]
    fn documents_that_are_not_contracts_are_refused() {
        assert!(validate(&json!([])).is_err());
        assert!(validate(&json!({"paths": {}})).is_err());
        assert!(validate(&json!({"openapi": "3.1.0"})).is_err());
        assert!(validate(&json!({"swagger": "2.0", "paths": {}})).is_ok());
    }

    #[test]
    fn reference_cycles_end() {
        let doc = json!({
            "openapi": "3.1.0",
            "paths": {"/n": {"get": {"responses": {"200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Node"}}}}}}}},
            "components": {"schemas": {
                "Node": {"type": "object", "properties": {"next": {"$ref": "#/components/schemas/Node"}}},
                "Loop": {"$ref": "#/components/schemas/Loop"}
            }}
        });
        assert!(diff(&doc, &doc).is_empty());
        let mut other = doc.clone();
        other["paths"]["/n"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] =
            json!({"$ref": "#/components/schemas/Loop"});
        let _ = diff(&doc, &other);
    }
}
