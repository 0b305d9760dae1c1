//! `/openapi/v2`: the Swagger 2.0 form of every group-version's v3 document merged into one,
//! as the API server also publishes it: `#/definitions/` references (with their descriptions
//! beside them), body parameters, `consumes`/`produces`, and the v2 forms of the types v3
//! writes with `oneOf`.

use serde_json::{Map, Value, json};

/// One Swagger 2.0 document from the v3 documents `docs`.
pub fn from_v3<'a>(docs: impl Iterator<Item = &'a Value>, info_version: &str) -> Value {
    let mut definitions = std::collections::BTreeMap::new();
    let mut paths = std::collections::BTreeMap::new();
    for doc in docs {
        if let Some(schemas) = doc
            .pointer("/components/schemas")
            .and_then(Value::as_object)
        {
            for (name, schema) in schemas {
                definitions
                    .entry(name.clone())
                    .or_insert_with(|| definition(name, schema));
            }
        }
        if let Some(p) = doc.get("paths").and_then(Value::as_object) {
            for (path, item) in p {
                paths.insert(path.clone(), path_item(item));
            }
        }
    }
    json!({
        "definitions": definitions,
        "info": {"title": "Kubernetes", "version": info_version},
        "paths": paths,
        "security": [{"BearerToken": []}],
        "securityDefinitions": {"BearerToken": {
            "description": "Bearer Token authentication", "in": "header",
            "name": "authorization", "type": "apiKey",
        }},
        "swagger": "2.0",
    })
}

fn definition(name: &str, schema: &Value) -> Value {
    match name {
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString" => json!({
            "description": schema.get("description"), "format": "int-or-string", "type": "string",
        }),
        "io.k8s.apimachinery.pkg.api.resource.Quantity" => json!({
            "description": schema.get("description"), "type": "string",
        }),
        _ => to_v2(schema),
    }
}

/// A v3 schema in v2 form: `allOf: [{$ref}]` back to a `$ref`, references to
/// `#/definitions/`, and what v2 cannot say (`oneOf`, `anyOf`, `not`, `nullable`) left out.
pub fn to_v2(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, c) in m {
                match k.as_str() {
                    "oneOf" | "anyOf" | "not" | "nullable" => {}
                    "$ref" => {
                        out.insert(k.clone(), reference(c));
                    }
                    "allOf" => match c.as_array().map(Vec::as_slice) {
                        Some([single]) if single.get("$ref").is_some() => {
                            out.insert("$ref".into(), reference(&single["$ref"]));
                        }
                        _ => {
                            out.insert(k.clone(), to_v2(c));
                        }
                    },
                    "properties" | "patternProperties" => {
                        let props = c
                            .as_object()
                            .map(|p| p.iter().map(|(n, s)| (n.clone(), to_v2(s))).collect())
                            .unwrap_or_default();
                        out.insert(k.clone(), Value::Object(props));
                    }
                    // Examples, defaults and enums are values, not schemas.
                    "default" | "example" | "enum" => {
                        out.insert(k.clone(), c.clone());
                    }
                    _ => {
                        out.insert(k.clone(), to_v2(c));
                    }
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(to_v2).collect()),
        other => other.clone(),
    }
}

fn reference(r: &Value) -> Value {
    match r.as_str() {
        Some(s) => json!(s.replace("#/components/schemas/", "#/definitions/")),
        None => r.clone(),
    }
}

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

fn path_item(item: &Value) -> Value {
    let mut out = Map::new();
    if let Some(params) = item.get("parameters").and_then(Value::as_array) {
        out.insert(
            "parameters".into(),
            Value::Array(params.iter().map(parameter).collect()),
        );
    }
    for m in METHODS {
        if let Some(op) = item.get(m) {
            out.insert(m.into(), operation(op));
        }
    }
    Value::Object(out)
}

fn parameter(p: &Value) -> Value {
    let mut out = json!({
        "description": p.get("description"), "in": p.get("in"), "name": p.get("name"),
        "type": p.pointer("/schema/type"), "uniqueItems": true,
    });
    if p.get("required") == Some(&json!(true)) {
        out["required"] = json!(true);
    }
    out
}

fn operation(op: &Value) -> Value {
    let mut out = Map::new();
    let mut params: Vec<Value> = Vec::new();
    let mut consumes: Vec<Value> = Vec::new();
    if let Some(body) = op
        .pointer("/requestBody/content")
        .and_then(Value::as_object)
    {
        consumes = body.keys().map(|k| json!(k)).collect();
        if let Some(schema) = body.values().next().and_then(|c| c.get("schema")) {
            params.push(
                json!({"in": "body", "name": "body", "required": true, "schema": to_v2(schema)}),
            );
        }
    }
    if let Some(p) = op.get("parameters").and_then(Value::as_array) {
        params.extend(p.iter().map(parameter));
    }
    let mut produces: Vec<Value> = Vec::new();
    let mut responses = Map::new();
    for (code, r) in op
        .get("responses")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let mut resp = json!({"description": r.get("description")});
        if let Some(content) = r.get("content").and_then(Value::as_object) {
            for t in content.keys() {
                if !produces.contains(&json!(t)) {
                    produces.push(json!(t));
                }
            }
            if let Some(schema) = content.values().next().and_then(|c| c.get("schema")) {
                resp["schema"] = to_v2(schema);
            }
        }
        responses.insert(code.clone(), resp);
    }
    for (k, v) in op.as_object().into_iter().flatten() {
        match k.as_str() {
            "requestBody" | "parameters" | "responses" => {}
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    if !consumes.is_empty() {
        out.insert("consumes".into(), Value::Array(consumes));
    }
    if !params.is_empty() {
        out.insert("parameters".into(), Value::Array(params));
    }
    out.insert("produces".into(), Value::Array(produces));
    out.insert("responses".into(), Value::Object(responses));
    out.insert("schemes".into(), json!(["https"]));
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_with_descriptions_become_plain_references() {
        let v3 = json!({"properties": {"spec": {
            "allOf": [{"$ref": "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"}],
            "description": "d",
        }}});
        assert_eq!(
            to_v2(&v3),
            json!({"properties": {"spec": {
                "$ref": "#/definitions/io.k8s.api.apps.v1.DeploymentSpec", "description": "d",
            }}})
        );
    }

    #[test]
    fn request_bodies_become_body_parameters() {
        let op = json!({
            "operationId": "createAppsV1NamespacedDeployment",
            "parameters": [{"in": "query", "name": "fieldValidation", "schema": {"type": "string", "uniqueItems": true}}],
            "requestBody": {"content": {"*/*": {"schema": {"$ref": "#/components/schemas/D"}}}},
            "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/D"}}}}},
        });
        let v2 = operation(&op);
        assert_eq!(v2["parameters"][0]["in"], "body");
        assert_eq!(v2["parameters"][0]["schema"]["$ref"], "#/definitions/D");
        assert_eq!(v2["parameters"][1]["name"], "fieldValidation");
        assert_eq!(v2["parameters"][1]["type"], "string");
        assert_eq!(v2["responses"]["200"]["schema"]["$ref"], "#/definitions/D");
        assert_eq!(v2["consumes"], json!(["*/*"]));
    }
}
