//! A service's API contract (an OpenAPI document) and the difference between two of them, for
//! the reviewer of a version (docs/lifecycle.md, "Evidence").
//!
//! Pure: the documents come in as JSON values (the build reads YAML or JSON). The comparison is
//! what a consumer of the service cares about:
//! - operations (`METHOD /path`, path parameters matched by position, not name) added, removed;
//! - parameters added, removed, made required, their type changed; the request body's fields
//!   likewise (a field is required when its object's `required` lists it);
//! - response codes added, removed; response body fields added, removed, their type changed.
//!
//! **Breaking** (flagged): a removed operation; a new required parameter or request body field,
//! or an optional one made required; a parameter's or request field's type narrowed or changed
//! (callers send what was valid); a removed success (2xx) response; a removed response field; a
//! response field's type widened or changed (callers read what was promised).
//!
//! `$ref`s to the document's own components are followed. A schema that refers back to one on
//! its own path (a recursive type) is not expanded again, and a document whose schemas expand to
//! more than [`MAX_FIELDS`] fields (references fanning out: thirty schemas each naming the next
//! twice make a billion paths) is refused with [`TooLarge`] rather than walked.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

/// How deep `$ref`s and nested fields are followed.
const MAX_DEPTH: usize = 8;

/// How many fields (parameters, request and response body fields) one document may expand to.
pub const MAX_FIELDS: usize = 10_000;

/// A document whose schemas expand to more than [`MAX_FIELDS`] fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooLarge;

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the contract's schemas expand to more than {MAX_FIELDS} fields (references fanning \
             out?): it is not compared"
        )
    }
}

impl std::error::Error for TooLarge {}

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
/// a `paths` object, whose schemas expand to at most [`MAX_FIELDS`] fields.
pub fn validate(doc: &Value) -> Result<(), String> {
    shape(doc)?;
    operations(doc).map_err(|e| e.to_string())?;
    Ok(())
}

fn shape(doc: &Value) -> Result<(), String> {
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

/// The number of operations in a contract (paths × methods; no schema is read).
#[must_use]
pub fn operation_count(doc: &Value) -> usize {
    let Some(paths) = doc.get("paths").and_then(Value::as_object) else {
        return 0;
    };
    paths
        .values()
        .map(|item| {
            let item = resolve(doc, item, 0);
            METHODS.iter().filter(|m| item.get(**m).is_some()).count()
        })
        .sum()
}

/// What changed from `old` to `new`, in a stable order (by operation, then kind); [`TooLarge`]
/// when either document expands to more than [`MAX_FIELDS`] fields.
pub fn diff(old: &Value, new: &Value) -> Result<Vec<Change>, TooLarge> {
    let before = operations(old)?;
    let after = operations(new)?;
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
    Ok(changes)
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
    /// (in, name) → (required, type). The request body is in `body`: `""` the body itself,
    /// else a field's path (`customer.id`, `lines[].sku`).
    params: BTreeMap<(String, String), (bool, Type)>,
    /// status code → fields of the response body (path → type); `""` is the body itself.
    responses: BTreeMap<String, BTreeMap<String, Type>>,
}

/// The walk over one document's schemas: what it may still visit, and the `$ref`s on the
/// current path (a recursive schema is not expanded again).
struct Walk<'a> {
    doc: &'a Value,
    left: usize,
    on_path: Vec<&'a str>,
}

impl<'a> Walk<'a> {
    fn count(&mut self) -> Result<(), TooLarge> {
        self.left = self.left.checked_sub(1).ok_or(TooLarge)?;
        Ok(())
    }

    /// Every field under `schema` (itself at `at`), with whether its object requires it.
    fn fields(
        &mut self,
        schema: &'a Value,
        at: String,
        required: bool,
        depth: usize,
        out: &mut BTreeMap<String, (bool, Type)>,
    ) -> Result<(), TooLarge> {
        if depth >= MAX_DEPTH {
            return Ok(());
        }
        self.count()?;
        let (schema, refs) = resolve_refs(self.doc, schema);
        out.insert(at.clone(), (required, Type::of(self.doc, schema)));
        if refs.iter().any(|r| self.on_path.contains(r)) {
            // A schema inside itself: its fields are the ones already listed above.
            return Ok(());
        }
        let pushed = refs.len();
        self.on_path.extend(refs);
        let result = self.children(schema, &at, depth, out);
        self.on_path.truncate(self.on_path.len() - pushed);
        result
    }

    fn children(
        &mut self,
        schema: &'a Value,
        at: &str,
        depth: usize,
        out: &mut BTreeMap<String, (bool, Type)>,
    ) -> Result<(), TooLarge> {
        let mut props: Vec<(&'a String, &'a Value)> = Vec::new();
        let mut required: BTreeSet<&'a str> = BTreeSet::new();
        let parts = std::iter::once(schema).chain(
            schema
                .get("allOf")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|part| resolve(self.doc, part, 0)),
        );
        for part in parts {
            if let Some(p) = part.get("properties").and_then(Value::as_object) {
                props.extend(p);
            }
            required.extend(
                part.get("required")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str),
            );
        }
        for (name, sub) in props {
            let path = if at.is_empty() {
                name.clone()
            } else {
                format!("{at}.{name}")
            };
            let req = required.contains(name.as_str());
            self.fields(sub, path, req, depth + 1, out)?;
        }
        if let Some(items) = schema.get("items") {
            self.fields(items, format!("{at}[]"), false, depth + 1, out)?;
        }
        Ok(())
    }
}

fn operations(doc: &Value) -> Result<BTreeMap<String, Operation>, TooLarge> {
    let mut ops = BTreeMap::new();
    let Some(paths) = doc.get("paths").and_then(Value::as_object) else {
        return Ok(ops);
    };
    let mut walk = Walk {
        doc,
        left: MAX_FIELDS,
        on_path: Vec::new(),
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
            let mut body: Option<(bool, &Value)> = None;
            for list in [shared, op.get("parameters")].into_iter().flatten() {
                for p in list.as_array().into_iter().flatten() {
                    walk.count()?;
                    let p = resolve(doc, p, 0);
                    let (Some(name), Some(place)) = (
                        p.get("name").and_then(Value::as_str),
                        p.get("in").and_then(Value::as_str),
                    ) else {
                        continue;
                    };
                    let required = place == "path"
                        || p.get("required").and_then(Value::as_bool).unwrap_or(false);
                    if place == "body" {
                        // Swagger 2.0's request body: compared like OpenAPI 3's.
                        if let Some(schema) = p.get("schema") {
                            body = Some((required, schema));
                        }
                        continue;
                    }
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
            if let Some(b) = op.get("requestBody") {
                let b = resolve(doc, b, 0);
                let required = b.get("required").and_then(Value::as_bool).unwrap_or(false);
                if let Some(schema) = first_schema(b) {
                    body = Some((required, schema));
                }
            }
            if let Some((required, schema)) = body {
                let mut fields = BTreeMap::new();
                walk.fields(schema, String::new(), required, 0, &mut fields)?;
                for (field, f) in fields {
                    o.params.insert(("body".into(), field), f);
                }
            }
            for (code, resp) in op
                .get("responses")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                walk.count()?;
                let resp = resolve(doc, resp, 0);
                let mut fields = BTreeMap::new();
                if let Some(schema) = first_schema(resp).or_else(|| resp.get("schema")) {
                    walk.fields(schema, String::new(), false, 0, &mut fields)?;
                }
                o.responses.insert(
                    code.clone(),
                    fields.into_iter().map(|(k, (_, t))| (k, t)).collect(),
                );
            }
            ops.insert(normalise_path(path, m), o);
        }
    }
    Ok(ops)
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

/// Follow local `$ref`s like [`resolve`], also answering the references passed through.
fn resolve_refs<'a>(doc: &'a Value, v: &'a Value) -> (&'a Value, Vec<&'a str>) {
    let mut cur = v;
    let mut refs = Vec::new();
    for _ in 0..MAX_DEPTH {
        match cur.get("$ref").and_then(Value::as_str) {
            Some(r) if r.starts_with("#/") => match doc.pointer(&r[1..]) {
                Some(target) => {
                    refs.push(r);
                    cur = target;
                }
                None => break,
            },
            _ => break,
        }
    }
    (cur, refs)
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
        "body" if name.is_empty() => "request body".into(),
        "body" => format!("request body field {name}"),
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
        assert!(diff(&base(), &base()).unwrap().is_empty());
    }

    #[test]
    fn a_removed_operation_breaks_and_an_added_one_does_not() {
        let mut new = base();
        new["paths"]["/orders/{id}"]
            .as_object_mut()
            .unwrap()
            .remove("delete");
        new["paths"]["/health"] = json!({"get": {"responses": {"200": {"description": "ok"}}}});
        let c = diff(&base(), &new).unwrap();
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
        assert!(
            diff(&base(), &new).unwrap().is_empty(),
            "{:?}",
            diff(&base(), &new).unwrap()
        );
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
        let c = kinds(&diff(&base(), &new).unwrap());
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
        let c = kinds(&diff(&new, &base()).unwrap());
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
        let c = diff(&base(), &new).unwrap();
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
        // The request body shares the schema: its type (object) did not move, and what moved in
        // its fields breaks no caller (a field gone, an enum grown).
        assert!(
            !k.iter()
                .any(|(kind, _, breaking)| kind.starts_with("parameter") && *breaking),
            "{k:?}"
        );
        assert!(
            k.contains(&(
                "parameter_removed".into(),
                "optional request body field amount removed".into(),
                false
            )),
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
        assert!(diff(&doc, &doc).unwrap().is_empty());
        let mut other = doc.clone();
        other["paths"]["/n"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] =
            json!({"$ref": "#/components/schemas/Loop"});
        let _ = diff(&doc, &other).unwrap();
    }

    #[test]
    fn a_recursive_schema_is_expanded_once() {
        let doc = json!({
            "openapi": "3.1.0",
            "paths": {"/n": {"get": {"responses": {"200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Node"}}}}}}}},
            "components": {"schemas": {
                "Node": {"type": "object", "properties": {"next": {"$ref": "#/components/schemas/Node"}, "v": {"type": "string"}}}
            }}
        });
        let ops = operations(&doc).unwrap();
        let fields: Vec<&String> = ops["GET /n"].responses["200"].keys().collect();
        assert_eq!(fields, ["", "next", "v"]);
    }

    /// `n` schemas, each with `fan` properties that all name the next one.
    fn fanning(n: usize, fan: usize) -> Value {
        let mut schemas = serde_json::Map::new();
        for i in 0..n {
            let props: serde_json::Map<String, Value> = (0..fan)
                .map(|j| {
                    let target = if i + 1 < n {
                        json!({"$ref": format!("#/components/schemas/S{}", i + 1)})
                    } else {
                        json!({"type": "string"})
                    };
                    (format!("f{j}"), target)
                })
                .collect();
            schemas.insert(
                format!("S{i}"),
                json!({"type": "object", "properties": props}),
            );
        }
        let body = json!({"content": {"application/json": {"schema": {"$ref": "#/components/schemas/S0"}}}});
        json!({
            "openapi": "3.0.3",
            "paths": {"/x": {"post": {"requestBody": body, "responses": {"200": body}}}},
            "components": {"schemas": schemas}
        })
    }

    #[test]
    fn references_fanning_out_are_refused_quickly() {
        let started = std::time::Instant::now();
        // Thirty schemas each naming the next twice: within the budget (depth ends it).
        let two = fanning(30, 2);
        assert!(validate(&two).is_ok());
        assert!(diff(&two, &two).unwrap().is_empty());
        // Twenty-fold: 20^8 paths unwalked, refused with a clear error.
        let wide = fanning(30, 20);
        assert_eq!(operation_count(&wide), 1);
        assert_eq!(diff(&two, &wide), Err(TooLarge));
        assert_eq!(diff(&wide, &two), Err(TooLarge));
        let err = validate(&wide).unwrap_err();
        assert!(err.contains("more than 10000 fields"), "{err}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn request_body_fields_required_added_and_typed() {
        let order = json!({"type": "object", "properties": {
            "note": {"type": "string"},
            "amount": {"type": "number"},
            "lines": {"type": "array", "items": {"type": "object", "properties": {"qty": {"type": "integer"}}}}
        }, "required": ["amount"]});
        let oas3 = |schema: &Value| {
            json!({"openapi": "3.0.3", "paths": {"/o": {"post": {
                "requestBody": {"content": {"application/json": {"schema": schema}}},
                "responses": {"201": {"description": "created"}}}}}})
        };
        let swagger2 = |schema: &Value| {
            json!({"swagger": "2.0", "paths": {"/o": {"post": {
                "parameters": [{"name": "order", "in": "body", "schema": schema}],
                "responses": {"201": {"description": "created"}}}}}})
        };
        type Edit = fn(&mut Value);
        type Want = Option<(&'static str, &'static str, bool)>;
        let cases: [(&str, Edit, Want); 7] = [
            (
                "a field made required",
                |o| o["required"] = json!(["amount", "note"]),
                Some((
                    "parameter_required",
                    "request body field note is now required",
                    true,
                )),
            ),
            (
                "a nested field made required",
                |o| o["properties"]["lines"]["items"]["required"] = json!(["qty"]),
                Some((
                    "parameter_required",
                    "request body field lines[].qty is now required",
                    true,
                )),
            ),
            (
                "a new required field",
                |o| {
                    o["properties"]["sku"] = json!({"type": "string"});
                    o["required"] = json!(["amount", "sku"]);
                },
                Some((
                    "parameter_added",
                    "required request body field sku added",
                    true,
                )),
            ),
            (
                "a new optional field",
                |o| o["properties"]["sku"] = json!({"type": "string"}),
                Some((
                    "parameter_added",
                    "optional request body field sku added",
                    false,
                )),
            ),
            (
                "a required field made optional",
                |o| o["required"] = json!([]),
                None,
            ),
            (
                "a field's type narrowed",
                |o| o["properties"]["amount"] = json!({"type": "integer"}),
                Some((
                    "parameter_type",
                    "request body field amount: type narrowed from number to integer",
                    true,
                )),
            ),
            (
                "a field removed",
                |o| {
                    o["properties"].as_object_mut().unwrap().remove("note");
                },
                Some((
                    "parameter_removed",
                    "optional request body field note removed",
                    false,
                )),
            ),
        ];
        for (doc, form) in [
            (&oas3 as &dyn Fn(&Value) -> Value, "openapi 3"),
            (&swagger2, "swagger 2"),
        ] {
            for (name, edit, want) in &cases {
                let mut new = order.clone();
                edit(&mut new);
                let got = kinds(&diff(&doc(&order), &doc(&new)).unwrap());
                let want: Vec<(String, String, bool)> = want
                    .iter()
                    .map(|(k, d, b)| ((*k).to_string(), (*d).to_string(), *b))
                    .collect();
                assert_eq!(got, want, "{form}: {name}");
            }
        }
    }
}
