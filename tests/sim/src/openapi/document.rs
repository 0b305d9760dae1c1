//! One group-version's OpenAPI v3 document as the API server builds it: a path per collection,
//! object and subresource the sim serves, each operation with the query parameters real
//! servers declare (kubectl reads `fieldValidation` among a PATCH's parameters to decide that
//! the server validates fields itself), `x-kubernetes-action` and
//! `x-kubernetes-group-version-kind`, and the schemas the kinds reach.

use serde_json::{Map, Value, json};

use super::builtin::{OPERATION_DEFINITIONS, REF_PREFIX};

/// A served resource and the definitions of its kind and list.
#[derive(Debug, Clone)]
pub struct Served {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub kind: String,
    pub namespaced: bool,
    pub definition: String,
    pub list_definition: String,
    pub status: bool,
    /// `pods/eviction` (policy/v1 Eviction).
    pub eviction: Option<String>,
    /// Whether PATCH takes strategic merge patches (built-in kinds only); kubectl reads this
    /// to choose between a strategic and a JSON merge patch for client-side apply.
    pub strategic: bool,
}

/// The document of a group-version serving `served`, its schemas looked up in `sources`
/// (first match wins).
pub fn group_version(
    served: &[Served],
    sources: &[&Map<String, Value>],
    title: &str,
    info_version: &str,
) -> Value {
    let mut paths = Map::new();
    let mut roots: Vec<String> = OPERATION_DEFINITIONS
        .iter()
        .map(|d| d.to_string())
        .collect();
    for r in served {
        roots.push(r.definition.clone());
        roots.push(r.list_definition.clone());
        roots.extend(r.eviction.clone());
        resource_paths(&mut paths, r);
    }
    let schemas = closure(&roots, sources);
    json!({
        "components": {
            "schemas": schemas,
            "securitySchemes": {"BearerToken": {
                "description": "Bearer Token authentication", "in": "header",
                "name": "authorization", "type": "apiKey",
            }},
        },
        "info": {"title": title, "version": info_version},
        "openapi": "3.0.0",
        "paths": paths,
    })
}

/// `roots` and every definition they reach, in name order.
fn closure(roots: &[String], sources: &[&Map<String, Value>]) -> Map<String, Value> {
    let mut found: std::collections::BTreeMap<String, Value> = std::collections::BTreeMap::new();
    let mut todo: Vec<String> = roots.to_vec();
    while let Some(name) = todo.pop() {
        if found.contains_key(&name) {
            continue;
        }
        let Some(def) = sources.iter().find_map(|s| s.get(&name)) else {
            continue;
        };
        refs(def, &mut todo);
        found.insert(name, def.clone());
    }
    found.into_iter().collect()
}

fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(r) = m.get("$ref").and_then(Value::as_str)
                && let Some(name) = r.strip_prefix(REF_PREFIX)
            {
                out.push(name.to_string());
            }
            m.values().for_each(|c| refs(c, out));
        }
        Value::Array(items) => items.iter().for_each(|c| refs(c, out)),
        _ => {}
    }
}

/// `apps` → `Apps`, `rbac.authorization.k8s.io` → `RbacAuthorization`, the core group →
/// `Core`, `networking.istio.io` → `NetworkingIstioIo`: how operation ids name a group.
fn group_word(group: &str) -> String {
    if group.is_empty() {
        return "Core".into();
    }
    group
        .trim_end_matches(".k8s.io")
        .split(['.', '-'])
        .map(capitalize)
        .collect()
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn tag(group: &str, version: &str) -> String {
    let g = group_word(group);
    let mut c = g.chars();
    let lower: String = match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    };
    format!("{lower}_{version}")
}

fn param(name: &str, location: &str, ty: &str, description: &str) -> Value {
    let mut p = json!({
        "description": description, "in": location, "name": name,
        "schema": {"type": ty, "uniqueItems": true},
    });
    if location == "path" {
        p["required"] = json!(true);
    }
    p
}

fn dry_run() -> Value {
    param(
        "dryRun",
        "query",
        "string",
        "When present, modifications are not persisted. The only valid value is All (every dry-run stage is processed); an unknown directive fails the request.",
    )
}

fn field_manager(patch: bool) -> Value {
    let extra = if patch {
        " It is required for apply patches (application/apply-patch) and optional for the other patch types."
    } else {
        ""
    };
    param(
        "fieldManager",
        "query",
        "string",
        &format!(
            "fieldManager names the actor making these changes: at most 128 printable characters.{extra}"
        ),
    )
}

fn field_validation() -> Value {
    param(
        "fieldValidation",
        "query",
        "string",
        "fieldValidation says how the server treats unknown and duplicate fields in the object of a POST, PUT or PATCH: Ignore drops them silently; Warn (the default) drops them and sends a warning header for each; Strict fails the request with a BadRequest naming every one.",
    )
}

fn force() -> Value {
    param(
        "force",
        "query",
        "boolean",
        "force makes an apply take the fields other managers own that it conflicts with. It must be unset for other patch types.",
    )
}

fn pretty() -> Value {
    param(
        "pretty",
        "query",
        "string",
        "If 'true', the output is pretty printed.",
    )
}

fn list_params() -> Vec<Value> {
    vec![
        param(
            "allowWatchBookmarks",
            "query",
            "boolean",
            "allowWatchBookmarks asks a watch for BOOKMARK events.",
        ),
        param(
            "continue",
            "query",
            "string",
            "continue resumes a list from the token a previous, limited list returned.",
        ),
        param(
            "fieldSelector",
            "query",
            "string",
            "A selector on the objects' fields. Defaults to everything.",
        ),
        param(
            "labelSelector",
            "query",
            "string",
            "A selector on the objects' labels. Defaults to everything.",
        ),
        param(
            "limit",
            "query",
            "integer",
            "limit is the most objects a list returns; the list metadata's continue token fetches the rest.",
        ),
        param(
            "resourceVersion",
            "query",
            "string",
            "resourceVersion constrains which resource versions a request may be served from.",
        ),
        param(
            "resourceVersionMatch",
            "query",
            "string",
            "resourceVersionMatch says how resourceVersion applies to a list.",
        ),
        param(
            "sendInitialEvents",
            "query",
            "boolean",
            "sendInitialEvents starts a watch with synthetic events for the current state, ended by a bookmark.",
        ),
        param(
            "timeoutSeconds",
            "query",
            "integer",
            "Timeout of the list or watch call.",
        ),
        param(
            "watch",
            "query",
            "boolean",
            "Watch for changes to the described resources, as a stream of add, update and remove notifications.",
        ),
    ]
}

fn delete_params() -> Vec<Value> {
    vec![
        dry_run(),
        param(
            "gracePeriodSeconds",
            "query",
            "integer",
            "The seconds before the object is deleted: a non-negative integer, zero meaning at once. Defaults to a per-object value.",
        ),
        param(
            "ignoreStoreReadErrorWithClusterBreakingPotential",
            "query",
            "boolean",
            "Deletes a corrupt object that cannot be read from storage. Dangerous: use only when it cannot be repaired otherwise.",
        ),
        param(
            "orphanDependents",
            "query",
            "boolean",
            "Deprecated: use propagationPolicy. Whether dependents are orphaned.",
        ),
        param(
            "propagationPolicy",
            "query",
            "string",
            "Whether and how garbage collection runs: Orphan, Background or Foreground.",
        ),
    ]
}

fn content(reference: &str, stream: bool) -> Value {
    let schema = json!({"schema": {"$ref": format!("{REF_PREFIX}{reference}")}});
    let mut c = json!({
        "application/json": schema,
        "application/vnd.kubernetes.protobuf": schema,
        "application/yaml": schema,
    });
    if stream {
        c["application/json;stream=watch"] = schema.clone();
        c["application/vnd.kubernetes.protobuf;stream=watch"] = schema;
    }
    c
}

fn responses(codes: &[(&str, &str)], reference: &str, stream: bool) -> Value {
    let mut r = Map::new();
    for (code, description) in codes {
        r.insert(
            code.to_string(),
            json!({"content": content(reference, stream), "description": description}),
        );
    }
    r.insert("401".into(), json!({"description": "Unauthorized"}));
    Value::Object(r)
}

/// What an operation is, for `operation`.
struct Op<'a> {
    action: &'a str,
    id: String,
    description: String,
    gvk: Value,
    tag: &'a str,
}

fn operation(op: Op, parameters: Vec<Value>, body: Option<Value>, responses: Value) -> Value {
    let mut o = json!({
        "description": op.description,
        "operationId": op.id,
        "responses": responses,
        "tags": [op.tag],
        "x-kubernetes-action": op.action,
        "x-kubernetes-group-version-kind": op.gvk,
    });
    if !parameters.is_empty() {
        o["parameters"] = json!(parameters);
    }
    if let Some(b) = body {
        o["requestBody"] = json!({"content": b});
    }
    o
}

fn body_of(reference: &str) -> Value {
    json!({"*/*": {"schema": {"$ref": format!("{REF_PREFIX}{reference}")}}})
}

fn patch_body(strategic: bool) -> Value {
    let patch = json!({"schema": {"$ref": format!("{REF_PREFIX}io.k8s.apimachinery.pkg.apis.meta.v1.Patch")}});
    let mut body = json!({
        "application/apply-patch+yaml": patch,
        "application/json-patch+json": patch,
        "application/merge-patch+json": patch,
    });
    if strategic {
        body["application/strategic-merge-patch+json"] = patch;
    }
    body
}

const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";

fn resource_paths(paths: &mut Map<String, Value>, r: &Served) {
    let prefix = if r.group.is_empty() {
        format!("/api/{}", r.version)
    } else {
        format!("/apis/{}/{}", r.group, r.version)
    };
    let words = format!("{}{}", group_word(&r.group), capitalize(&r.version));
    let tag = tag(&r.group, &r.version);
    let gvk = json!({"group": r.group, "kind": r.kind, "version": r.version});
    let scoped = if r.namespaced { "Namespaced" } else { "" };
    let op =
        |action: &'static str, verb: &str, what: String, suffix: &str, description: String| Op {
            action,
            id: format!("{verb}{words}{what}{}{suffix}", r.kind),
            description,
            gvk: gvk.clone(),
            tag: &tag,
        };
    let kind = &r.kind;
    let (collection, object) = if r.namespaced {
        (
            format!("{prefix}/namespaces/{{namespace}}/{}", r.plural),
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", r.plural),
        )
    } else {
        (
            format!("{prefix}/{}", r.plural),
            format!("{prefix}/{}/{{name}}", r.plural),
        )
    };
    let namespace = param(
        "namespace",
        "path",
        "string",
        "object name and auth scope, such as for teams and projects",
    );
    let mut scope_params = Vec::new();
    if r.namespaced {
        scope_params.push(namespace.clone());
    }
    scope_params.push(pretty());
    let mut delete_collection = delete_params();
    delete_collection.extend(list_params());
    delete_collection.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    delete_collection.dedup_by(|a, b| a["name"] == b["name"]);
    paths.insert(
        collection,
        json!({
            "delete": operation(
                op("deletecollection", "delete", format!("Collection{scoped}"), "", format!("delete collection of {kind}")),
                delete_collection,
                Some(body_of(DELETE_OPTIONS)),
                responses(&[("200", "OK")], STATUS, false),
            ),
            "get": operation(
                op("list", "list", scoped.into(), "", format!("list or watch objects of kind {kind}")),
                list_params(),
                None,
                responses(&[("200", "OK")], &r.list_definition, true),
            ),
            "parameters": scope_params,
            "post": operation(
                op("post", "create", scoped.into(), "", format!("create a {kind}")),
                vec![dry_run(), field_manager(false), field_validation()],
                Some(body_of(&r.definition)),
                responses(&[("200", "OK"), ("201", "Created"), ("202", "Accepted")], &r.definition, false),
            ),
        }),
    );
    if r.namespaced {
        let mut all = list_params();
        all.push(pretty());
        all.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        paths.insert(
            format!("{prefix}/{}", r.plural),
            json!({
                "get": operation(
                    op("list", "list", String::new(), "ForAllNamespaces", format!("list or watch objects of kind {kind}")),
                    Vec::new(),
                    None,
                    responses(&[("200", "OK")], &r.list_definition, true),
                ),
                "parameters": all,
            }),
        );
    }
    let mut object_params = vec![param(
        "name",
        "path",
        "string",
        &format!("name of the {kind}"),
    )];
    if r.namespaced {
        object_params.push(namespace.clone());
    }
    object_params.push(pretty());
    let object_ops = |suffix: &str, what: &str| {
        json!({
            "get": operation(
                op("get", "read", scoped.into(), suffix, format!("read {what}the specified {kind}")),
                Vec::new(),
                None,
                responses(&[("200", "OK")], &r.definition, false),
            ),
            "parameters": object_params,
            "patch": operation(
                op("patch", "patch", scoped.into(), suffix, format!("partially update {what}the specified {kind}")),
                vec![dry_run(), field_manager(true), field_validation(), force()],
                Some(patch_body(r.strategic)),
                responses(&[("200", "OK"), ("201", "Created")], &r.definition, false),
            ),
            "put": operation(
                op("put", "replace", scoped.into(), suffix, format!("replace {what}the specified {kind}")),
                vec![dry_run(), field_manager(false), field_validation()],
                Some(body_of(&r.definition)),
                responses(&[("200", "OK"), ("201", "Created")], &r.definition, false),
            ),
        })
    };
    let mut item = object_ops("", "");
    item["delete"] = operation(
        op(
            "delete",
            "delete",
            scoped.into(),
            "",
            format!("delete a {kind}"),
        ),
        delete_params(),
        Some(body_of(DELETE_OPTIONS)),
        responses(&[("200", "OK"), ("202", "Accepted")], STATUS, false),
    );
    paths.insert(object.clone(), item);
    if r.status {
        paths.insert(
            format!("{object}/status"),
            object_ops("Status", "status of "),
        );
    }
    if let Some(eviction) = &r.eviction {
        let mut params = vec![param("name", "path", "string", "name of the Eviction")];
        params.push(namespace);
        params.push(pretty());
        paths.insert(
            format!("{object}/eviction"),
            json!({
                "parameters": params,
                "post": operation(
                    Op {
                        action: "post",
                        id: format!("create{words}{scoped}{kind}Eviction"),
                        description: format!("create eviction of a {kind}"),
                        gvk: json!({"group": "policy", "kind": "Eviction", "version": "v1"}),
                        tag: &tag,
                    },
                    vec![dry_run(), field_manager(false), field_validation()],
                    Some(body_of(eviction)),
                    responses(&[("200", "OK"), ("201", "Created"), ("202", "Accepted")], eviction, false),
                ),
            }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_named_as_operation_ids_name_them() {
        assert_eq!(group_word(""), "Core");
        assert_eq!(group_word("apps"), "Apps");
        assert_eq!(group_word("rbac.authorization.k8s.io"), "RbacAuthorization");
        assert_eq!(group_word("networking.istio.io"), "NetworkingIstioIo");
        assert_eq!(
            tag("rbac.authorization.k8s.io", "v1"),
            "rbacAuthorization_v1"
        );
    }
}
