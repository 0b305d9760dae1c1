//! Server-side field validation, as the API server does it for POST, PUT and PATCH
//! (`fieldValidation=Strict|Warn|Ignore`, `Warn` when absent): fields the kind's schema does
//! not declare, at any depth, and keys a JSON body repeats. Strict refuses the request with
//! a `400 BadRequest` naming every one (`strict decoding error: unknown field "spec.foo"`);
//! Warn sends a `Warning: 299 - "unknown field \"spec.foo\""` header for each; Ignore says
//! nothing. Whatever the directive, unknown fields are dropped before the object is stored,
//! as decoding into Go types (and pruning, for custom kinds) drops them.
//!
//! Server-side apply is different: structured-merge-diff refuses a configuration with a
//! field its schema does not declare whatever the directive, with a `500` and its own
//! wording (`.spec.foo: field not declared in schema`); the directive only governs repeated
//! keys there.
//!
//! Schemas: built-in kinds from `openapi`'s k8s-openapi definitions (an object without
//! declared properties, such as `RawExtension`, takes anything); custom kinds from their
//! CRD's `openAPIV3Schema` with structural pruning's rules (`x-kubernetes-preserve-unknown-
//! fields` keeps unknown fields, an object with neither `properties` nor
//! `additionalProperties` keeps none, `x-kubernetes-embedded-resource` allows `apiVersion`,
//! `kind` and `metadata`), `metadata` checked as `ObjectMeta`.
//!
//! Caveats: only unknown and repeated fields are checked, not types or values; repeated keys
//! only in JSON bodies (the sim cannot read a YAML body that repeats a key, whatever the
//! directive); `dryRun` is refused, not simulated.

use std::collections::HashMap;

use axum::http::{HeaderValue, header};
use axum::response::Response;
use serde_json::{Map, Value};

use crate::openapi::{BUILTIN, OBJECT_META, REF_PREFIX, kind_schema};
use crate::ssa::{ListType, Schema as Semantics};
use crate::store::{ApiError, Resource, Store, res};

/// What to do about unknown and repeated fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Directive {
    Ignore,
    Warn,
    Strict,
}

impl Directive {
    /// The request's `fieldValidation`: `Warn` when absent or empty; anything else but the
    /// three names is a 422 about the request's `options` kind (`CreateOptions`,
    /// `UpdateOptions`, `PatchOptions`).
    pub fn of(query: &HashMap<String, String>, options: &str) -> Result<Self, ApiError> {
        match query.get("fieldValidation").map(String::as_str) {
            None | Some("") | Some("Warn") => Ok(Self::Warn),
            Some("Ignore") => Ok(Self::Ignore),
            Some("Strict") => Ok(Self::Strict),
            Some(other) => Err(ApiError::new(
                422,
                "Invalid",
                format!(
                    "{options}.meta.k8s.io \"\" is invalid: fieldValidation: Unsupported value: \"{other}\": supported values: \"\", \"Ignore\", \"Strict\", \"Warn\""
                ),
            )),
        }
    }
}

/// The checker of a request that writes an object (POST to a collection, PUT or PATCH of an
/// object or its status), its directive read from the query; `None` for other requests. A
/// write with `dryRun` is refused: the sim does not implement dry runs.
pub fn for_request(
    s: &Store,
    res: &Resource,
    method: &str,
    subresource: Option<&str>,
    query: &HashMap<String, String>,
) -> Result<Option<Checker>, ApiError> {
    // Published (kubectl reads it to allow `--dry-run=server`) but not implemented: refused
    // rather than written for real.
    if matches!(method, "POST" | "PUT" | "PATCH" | "DELETE") && query.contains_key("dryRun") {
        return Err(ApiError::new(
            400,
            "BadRequest",
            "dryRun is not implemented by the simulated API server",
        ));
    }
    let options = match (method, subresource) {
        ("POST", None) => "CreateOptions",
        ("PUT", None | Some("status")) => "UpdateOptions",
        ("PATCH", None | Some("status")) => "PatchOptions",
        _ => return Ok(None),
    };
    let directive = Directive::of(query, options)?;
    let mut c = Checker::new(s, res, directive);
    c.whole_object = method != "PATCH";
    Ok(Some(c))
}

/// A create's or update's body checked (`raw` as sent, `parsed` as read), with the warnings
/// to answer with; a patch's body passes (it is checked once applied).
pub fn admit_body(
    checker: Option<&Checker>,
    raw: &[u8],
    parsed: Option<Value>,
) -> Result<(Option<Value>, Vec<String>), ApiError> {
    match (checker, parsed) {
        (Some(c), Some(obj)) if c.whole_object => {
            let (obj, warnings) = c.object(raw, obj)?;
            Ok((Some(obj), warnings))
        }
        (_, parsed) => Ok((parsed, Vec::new())),
    }
}

/// `response` with a `Warning: 299 - "..."` header per warning, as the API server sends them.
pub fn with_warnings(mut response: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let escaped: String = w
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
            response.headers_mut().append(header::WARNING, v);
        }
    }
    response
}

/// One unknown field: its path as Go's JSON decoder writes it (`spec.containers[0].foo`) and
/// as structured-merge-diff does (`.spec.containers[name="c"].foo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unknown {
    pub json: String,
    pub smd: String,
}

/// The schema of one kind, and what the checks say about a request's object.
#[derive(Debug)]
pub struct Checker {
    res: Resource,
    root: Option<Value>,
    custom: bool,
    /// POST and PUT carry the whole object; a PATCH's body is checked once applied.
    whole_object: bool,
    pub directive: Directive,
}

impl Checker {
    /// The checker for writes of `res` under `directive`. A kind with no schema (a custom
    /// kind whose CRD is gone) is not checked.
    pub fn new(s: &Store, res: &Resource, directive: Directive) -> Self {
        let (root, custom) = match BUILTIN.kind(&res.group, &res.version, &res.kind) {
            Some(k) => (BUILTIN.definitions.get(&k.definition).cloned(), false),
            None => (crd_schema(s, res), true),
        };
        Self {
            res: res.clone(),
            root,
            custom,
            whole_object: true,
            directive,
        }
    }

    /// The unknown fields of `obj`, which loses them.
    pub fn prune(&self, obj: &mut Value) -> Vec<Unknown> {
        let Some(root) = &self.root else {
            return Vec::new();
        };
        let mut walk = Walk {
            semantics: Semantics::new(&self.res.kind, !self.custom),
            names: Vec::new(),
            json: Vec::new(),
            smd: String::new(),
            found: Vec::new(),
        };
        walk.value(root, self.custom, obj);
        walk.found
    }

    /// A create's or update's body (`raw` as sent, `obj` parsed): its unknown fields dropped,
    /// with the warnings to send, or the 400 Strict asks for.
    pub fn object(&self, raw: &[u8], mut obj: Value) -> Result<(Value, Vec<String>), ApiError> {
        let mut problems = duplicates(raw);
        problems.extend(
            self.prune(&mut obj)
                .into_iter()
                .map(|u| format!("unknown field \"{}\"", u.json)),
        );
        let kind = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_string);
        let body_kind = kind("kind").unwrap_or_else(|| self.res.kind.clone());
        let version = kind("apiVersion")
            .map(|v| v.rsplit('/').next().unwrap_or_default().to_string())
            .unwrap_or_else(|| self.res.version.clone());
        let prefix = format!(
            "{body_kind} in version \"{version}\" cannot be handled as a {}: ",
            self.res.kind
        );
        self.outcome(problems, &prefix).map(|w| (obj, w))
    }

    /// A patched object: its unknown fields dropped (the patch `raw` is checked for repeated
    /// keys), with the warnings to send, or the 400 Strict asks for.
    pub fn patched(&self, raw: &[u8], mut obj: Value) -> Result<(Value, Vec<String>), ApiError> {
        let mut problems = duplicates(raw);
        problems.extend(
            self.prune(&mut obj)
                .into_iter()
                .map(|u| format!("unknown field \"{}\"", u.json)),
        );
        self.outcome(problems, "").map(|w| (obj, w))
    }

    /// A server-side apply configuration for `namespace/name`: any undeclared field is
    /// structured-merge-diff's 500; repeated keys follow the directive.
    pub fn apply(
        &self,
        namespace: &str,
        name: &str,
        raw: &[u8],
        config: &Value,
    ) -> Result<Vec<String>, ApiError> {
        let mut copy = config.clone();
        let unknown = self.prune(&mut copy);
        if !unknown.is_empty() {
            let errors: Vec<String> = unknown
                .iter()
                .map(|u| format!("{}: field not declared in schema", u.smd))
                .collect();
            let text = match errors.as_slice() {
                [one] => one.clone(),
                many => format!("errors:\n  {}", many.join("\n  ")),
            };
            let meta = |k: &str| {
                config
                    .pointer(&format!("/metadata/{k}"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let ns = match meta("namespace") {
                n if n.is_empty() && self.res.namespaced => namespace.to_string(),
                n => n,
            };
            let name = match meta("name") {
                n if n.is_empty() => name.to_string(),
                n => n,
            };
            return Err(ApiError::new(
                500,
                "",
                format!(
                    "failed to create typed patch object ({ns}/{name}; {}/{}, Kind={}): {text}",
                    self.res.group, self.res.version, self.res.kind
                ),
            ));
        }
        let lines = duplicate_lines(raw);
        match (self.directive, lines.first()) {
            (_, None) | (Directive::Ignore, _) => Ok(Vec::new()),
            (Directive::Warn, Some(_)) => Ok(lines
                .iter()
                .map(|l| yaml_duplicate(std::slice::from_ref(l)))
                .collect()),
            (Directive::Strict, Some(_)) => Err(ApiError::new(
                400,
                "BadRequest",
                format!("error strict decoding YAML: {}", yaml_duplicate(&lines)),
            )),
        }
    }

    fn outcome(&self, problems: Vec<String>, prefix: &str) -> Result<Vec<String>, ApiError> {
        match self.directive {
            _ if problems.is_empty() => Ok(Vec::new()),
            Directive::Ignore => Ok(Vec::new()),
            Directive::Warn => Ok(problems),
            Directive::Strict => Err(ApiError::new(
                400,
                "BadRequest",
                format!("{prefix}strict decoding error: {}", problems.join(", ")),
            )),
        }
    }
}

/// How yaml.v2 reports keys a mapping repeats, as sigs.k8s.io/yaml wraps it.
fn yaml_duplicate(lines: &[(usize, String)]) -> String {
    let each: Vec<String> = lines
        .iter()
        .map(|(line, key)| format!("  line {line}: key \"{key}\" already set in map"))
        .collect();
    format!(
        "error converting YAML to JSON: yaml: unmarshal errors:\n{}",
        each.join("\n")
    )
}

/// The kind's schema from its CRD, for the version `res` names.
fn crd_schema(s: &Store, r: &Resource) -> Option<Value> {
    let crd = s.peek(
        &res("customresourcedefinitions"),
        "",
        &format!("{}.{}", r.plural, r.group),
    )?;
    let v = crd
        .pointer("/spec/versions")?
        .as_array()?
        .iter()
        .find(|v| v.get("name").and_then(Value::as_str) == Some(r.version.as_str()))?;
    Some(kind_schema(&r.group, &r.version, &r.kind, v))
}

/// A walk of an object beside its schema, collecting (and dropping) undeclared fields.
struct Walk<'k> {
    semantics: Semantics<'k>,
    /// Field names from the root (list items add none): how the `ssa` table names a place.
    names: Vec<String>,
    json: Vec<String>,
    smd: String,
    found: Vec<Unknown>,
}

/// A schema with its references followed: the node to read, and whether it still follows
/// a custom kind's (structural) rules.
fn resolve(schema: &Value, custom: bool) -> (&Value, bool) {
    let mut node = schema;
    let mut custom = custom;
    for _ in 0..8 {
        let Some(name) = crate::openapi::referenced(node).or_else(|| {
            node.get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix(REF_PREFIX))
        }) else {
            break;
        };
        match BUILTIN.definitions.get(name) {
            Some(d) => {
                node = d;
                custom = false;
            }
            None => break,
        }
    }
    (node, custom)
}

/// For a value of the given shape, the `oneOf`/`anyOf` branch that describes it.
fn branch<'s>(node: &'s Value, v: &Value, custom: bool) -> (&'s Value, bool) {
    let alternatives = node
        .get("oneOf")
        .or_else(|| node.get("anyOf"))
        .and_then(Value::as_array);
    let Some(alts) = alternatives else {
        return (node, custom);
    };
    if node.get("properties").is_some() || node.get("type").is_some() {
        return (node, custom);
    }
    let wanted = match v {
        Value::Object(_) => "object",
        Value::Array(_) => "array",
        _ => return (node, custom),
    };
    for alt in alts {
        let (r, c) = resolve(alt, custom);
        let ty = r.get("type").and_then(Value::as_str);
        if ty == Some(wanted) || (wanted == "object" && r.get("properties").is_some()) {
            return (r, c);
        }
    }
    (node, custom)
}

impl Walk<'_> {
    fn value(&mut self, schema: &Value, custom: bool, v: &mut Value) {
        let (node, custom) = resolve(schema, custom);
        let (node, custom) = branch(node, v, custom);
        match v {
            Value::Object(m) => self.object(node, custom, m),
            Value::Array(items) => {
                let Some(item_schema) = node.get("items") else {
                    return;
                };
                let names: Vec<&str> = self.names.iter().map(String::as_str).collect();
                let list = self.semantics.list_type(&names);
                for (i, item) in items.iter_mut().enumerate() {
                    let smd = smd_item(list, i, item);
                    self.json.push(format!("[{i}]"));
                    let before = self.smd.len();
                    self.smd.push_str(&smd);
                    self.value(item_schema, custom, item);
                    self.smd.truncate(before);
                    self.json.pop();
                }
            }
            _ => {}
        }
    }

    fn object(&mut self, node: &Value, custom: bool, m: &mut Map<String, Value>) {
        let flag = |k: &str| node.get(k).and_then(Value::as_bool) == Some(true);
        let preserve = flag("x-kubernetes-preserve-unknown-fields");
        let embedded = custom && flag("x-kubernetes-embedded-resource");
        let props = node.get("properties").and_then(Value::as_object);
        let additional = node.get("additionalProperties");
        if props.is_none() && additional.is_none() && (!custom || preserve) && !embedded {
            // Free-form: RawExtension, FieldsV1, JSON, or a preserved custom subtree.
            return;
        }
        let object_meta = serde_json::json!({"$ref": format!("{REF_PREFIX}{OBJECT_META}")});
        let keys: Vec<String> = m.keys().cloned().collect();
        for k in keys {
            let declared = props.and_then(|p| p.get(&k));
            let child_schema = match declared {
                Some(s) => Some(s),
                None if embedded && (k == "apiVersion" || k == "kind") => continue,
                None if embedded && k == "metadata" => Some(&object_meta),
                None => match additional {
                    Some(Value::Bool(true)) => continue,
                    Some(s @ Value::Object(_)) => Some(s),
                    _ => None,
                },
            };
            self.json.push(format!(".{k}"));
            let before = self.smd.len();
            self.smd.push('.');
            self.smd.push_str(&k);
            match child_schema {
                Some(s) => {
                    if declared.is_some() {
                        self.names.push(k.clone());
                    }
                    if let Some(child) = m.get_mut(&k) {
                        self.value(s, custom, child);
                    }
                    if declared.is_some() {
                        self.names.pop();
                    }
                }
                None if preserve => {}
                None => {
                    let json: String = self.json.concat();
                    self.found.push(Unknown {
                        json: json.trim_start_matches('.').to_string(),
                        smd: self.smd.clone(),
                    });
                    m.remove(&k);
                }
            }
            self.smd.truncate(before);
            self.json.pop();
        }
    }
}

/// How structured-merge-diff names a list item: by its keys in a keyed list
/// (`[containerPort=80,protocol="TCP"]`), by value in a set (`[="a"]`), else by index.
fn smd_item(list: ListType, index: usize, item: &Value) -> String {
    match list {
        ListType::Map(keys) => {
            let mut parts: Vec<(String, String)> = keys
                .iter()
                .filter_map(|k| {
                    let v = item
                        .get(k.name)
                        .cloned()
                        .or_else(|| k.default.map(|d| Value::String(d.into())))?;
                    Some((k.name.to_string(), v.to_string()))
                })
                .collect();
            parts.sort();
            let parts: Vec<String> = parts.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("[{}]", parts.join(","))
        }
        ListType::Set => format!("[={item}]"),
        ListType::Atomic => format!("[{index}]"),
    }
}

/// Keys a JSON text repeats within one object, as Go's strict decoder names them
/// (`duplicate field "spec.replicas"`). Not JSON: none.
pub fn duplicates(raw: &[u8]) -> Vec<String> {
    scan(raw)
        .into_iter()
        .map(|d| format!("duplicate field \"{}\"", d.path))
        .collect()
}

/// Keys a JSON text repeats, with the line of the repetition and the bare key.
fn duplicate_lines(raw: &[u8]) -> Vec<(usize, String)> {
    scan(raw).into_iter().map(|d| (d.line, d.key)).collect()
}

struct Duplicate {
    path: String,
    key: String,
    line: usize,
}

/// A small JSON scanner: enough to find repeated keys and where they are in a text that
/// `serde_json` has already accepted (it keeps the last of repeated keys silently).
fn scan(raw: &[u8]) -> Vec<Duplicate> {
    let mut s = Scanner {
        raw,
        at: 0,
        line: 1,
        out: Vec::new(),
    };
    s.skip_ws();
    if !matches!(raw.get(s.at), Some(b'{' | b'[')) {
        return Vec::new();
    }
    s.value("");
    s.out
}

struct Scanner<'a> {
    raw: &'a [u8],
    at: usize,
    line: usize,
    out: Vec<Duplicate>,
}

impl Scanner<'_> {
    fn skip_ws(&mut self) {
        while let Some(c) = self.raw.get(self.at) {
            match c {
                b'\n' => self.line += 1,
                b' ' | b'\t' | b'\r' => {}
                _ => break,
            }
            self.at += 1;
        }
    }

    fn string(&mut self) -> String {
        let start = self.at;
        self.at += 1;
        while let Some(c) = self.raw.get(self.at) {
            match c {
                b'\\' => self.at += 2,
                b'"' => {
                    self.at += 1;
                    break;
                }
                _ => self.at += 1,
            }
        }
        let end = self.at.min(self.raw.len());
        serde_json::from_slice(&self.raw[start..end]).unwrap_or_default()
    }

    fn value(&mut self, path: &str) {
        self.skip_ws();
        match self.raw.get(self.at) {
            Some(b'{') => {
                self.at += 1;
                let mut seen = std::collections::HashSet::new();
                loop {
                    self.skip_ws();
                    match self.raw.get(self.at) {
                        Some(b'}') | None => {
                            self.at += 1;
                            return;
                        }
                        Some(b',') => {
                            self.at += 1;
                            continue;
                        }
                        _ => {}
                    }
                    let line = self.line;
                    let key = self.string();
                    let child = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    if !seen.insert(key.clone()) {
                        self.out.push(Duplicate {
                            path: child.clone(),
                            key,
                            line,
                        });
                    }
                    self.skip_ws();
                    self.at += 1; // ':'
                    self.value(&child);
                }
            }
            Some(b'[') => {
                self.at += 1;
                let mut i = 0;
                loop {
                    self.skip_ws();
                    match self.raw.get(self.at) {
                        Some(b']') | None => {
                            self.at += 1;
                            return;
                        }
                        Some(b',') => {
                            self.at += 1;
                            continue;
                        }
                        _ => {}
                    }
                    self.value(&format!("{path}[{i}]"));
                    i += 1;
                }
            }
            Some(b'"') => {
                self.string();
            }
            Some(_) => {
                while let Some(c) = self.raw.get(self.at) {
                    if matches!(c, b',' | b'}' | b']') || c.is_ascii_whitespace() {
                        break;
                    }
                    self.at += 1;
                }
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::res;
    use serde_json::json;

    fn deployment() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}})
    }

    fn checker(directive: Directive) -> Checker {
        Checker::new(&Store::new(), &res("deployments"), directive)
    }

    #[test]
    fn a_valid_object_has_no_unknown_fields() {
        let mut d = deployment();
        assert_eq!(checker(Directive::Strict).prune(&mut d), Vec::new());
        assert_eq!(d, deployment());
    }

    #[test]
    fn unknown_fields_are_found_at_any_depth_and_dropped() {
        let mut d = deployment();
        d["spec"]["foo"] = json!(1);
        d["metadata"]["bar"] = json!("x");
        d["spec"]["template"]["spec"]["containers"][0]["baz"] = json!(true);
        let found = checker(Directive::Strict).prune(&mut d);
        let json: Vec<&str> = found.iter().map(|u| u.json.as_str()).collect();
        // In the body's order, as the decoder meets them.
        assert_eq!(
            json,
            [
                "metadata.bar",
                "spec.template.spec.containers[0].baz",
                "spec.foo"
            ]
        );
        let smd: Vec<&str> = found.iter().map(|u| u.smd.as_str()).collect();
        assert_eq!(
            smd,
            [
                ".metadata.bar",
                ".spec.template.spec.containers[name=\"c\"].baz",
                ".spec.foo"
            ]
        );
        assert_eq!(d, deployment());
    }

    #[test]
    fn maps_and_free_form_objects_take_any_key() {
        let mut cm = json!({"metadata": {"name": "c", "labels": {"any": "x"}, "annotations": {"a/b": "y"}}, "data": {"k": "v"}});
        assert!(
            Checker::new(&Store::new(), &res("configmaps"), Directive::Strict)
                .prune(&mut cm)
                .is_empty()
        );
    }

    #[test]
    fn strict_refuses_a_create_with_the_decoders_words() {
        let mut d = deployment();
        d["spec"]["foo"] = json!(1);
        let raw = serde_json::to_vec(&d).expect("json");
        let e = checker(Directive::Strict)
            .object(&raw, d)
            .expect_err("strict");
        assert_eq!(e.code, 400);
        assert_eq!(
            e.message,
            "Deployment in version \"v1\" cannot be handled as a Deployment: strict decoding error: unknown field \"spec.foo\""
        );
    }

    #[test]
    fn warn_drops_and_warns_and_ignore_drops_silently() {
        let mut d = deployment();
        d["spec"]["foo"] = json!(1);
        let raw = serde_json::to_vec(&d).expect("json");
        let (obj, warnings) = checker(Directive::Warn)
            .object(&raw, d.clone())
            .expect("warn");
        assert_eq!(warnings, ["unknown field \"spec.foo\""]);
        assert_eq!(obj, deployment());
        let (obj, warnings) = checker(Directive::Ignore).object(&raw, d).expect("ignore");
        assert!(warnings.is_empty());
        assert_eq!(obj, deployment());
    }

    #[test]
    fn repeated_keys_in_json_are_duplicate_fields() {
        let raw =
            br#"{"kind":"Deployment","spec":{"replicas":1,"replicas":2},"items":[{"a":1,"a":2}]}"#;
        assert_eq!(
            duplicates(raw),
            [
                "duplicate field \"spec.replicas\"",
                "duplicate field \"items[0].a\""
            ]
        );
        assert!(duplicates(b"kind: x\nkind: y\n").is_empty());
    }

    #[test]
    fn apply_of_an_undeclared_field_is_structured_merge_diffs_500() {
        let mut d = deployment();
        d["metadata"]["namespace"] = json!("default");
        d["spec"]["foo"] = json!(1);
        let e = checker(Directive::Strict)
            .apply("default", "web", b"{}", &d)
            .expect_err("undeclared");
        assert_eq!(e.code, 500);
        assert_eq!(
            e.message,
            "failed to create typed patch object (default/web; apps/v1, Kind=Deployment): .spec.foo: field not declared in schema"
        );
    }

    #[test]
    fn repeated_keys_in_an_apply_follow_the_directive() {
        let raw = b"{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\n\"spec\":{\"replicas\":1,\"replicas\":2}}";
        let config: Value = serde_json::from_slice(raw).expect("json");
        let e = checker(Directive::Strict)
            .apply("default", "web", raw, &config)
            .expect_err("strict");
        assert_eq!(e.code, 400);
        assert_eq!(
            e.message,
            "error strict decoding YAML: error converting YAML to JSON: yaml: unmarshal errors:\n  line 2: key \"replicas\" already set in map"
        );
        let warned = checker(Directive::Warn)
            .apply("default", "web", raw, &config)
            .expect("warn");
        assert_eq!(warned.len(), 1);
        assert!(
            checker(Directive::Ignore)
                .apply("default", "web", raw, &config)
                .expect("ignore")
                .is_empty()
        );
    }

    #[test]
    fn dry_runs_are_refused_not_written() {
        let q = HashMap::from([("dryRun".to_string(), "All".to_string())]);
        for method in ["POST", "PUT", "PATCH", "DELETE"] {
            let e = for_request(&Store::new(), &res("configmaps"), method, None, &q)
                .expect_err("dry run");
            assert_eq!(e.code, 400, "{method}");
        }
        assert!(for_request(&Store::new(), &res("configmaps"), "GET", None, &q).is_ok());
    }

    #[test]
    fn unsupported_directives_are_invalid() {
        let q = HashMap::from([("fieldValidation".to_string(), "Loud".to_string())]);
        let e = Directive::of(&q, "CreateOptions").expect_err("invalid");
        assert_eq!(e.code, 422);
        assert!(e.message.starts_with("CreateOptions.meta.k8s.io \"\" is invalid: fieldValidation: Unsupported value: \"Loud\""));
    }

    #[test]
    fn custom_kinds_follow_structural_pruning() {
        let mut s = Store::new();
        s.create(
            &res("customresourcedefinitions"),
            "",
            json!({"metadata": {"name": "widgets.example.com"}, "spec": {
                "group": "example.com", "scope": "Namespaced",
                "names": {"kind": "Widget", "plural": "widgets"},
                "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                    "type": "object", "properties": {"spec": {"type": "object", "properties": {
                        "size": {"type": "integer"},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "closed": {"type": "object"},
                    }}}}}}]}}),
        )
        .expect("crd");
        let widget = s.resource("example.com", "v1", "widgets").expect("served");
        let c = Checker::new(&s, &widget, Directive::Strict);
        let mut w = json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "oops": 1},
            "spec": {"size": 1, "extra": 2, "free": {"anything": {"deep": 1}}, "closed": {"x": 1}}});
        let found: Vec<String> = c.prune(&mut w).into_iter().map(|u| u.json).collect();
        assert_eq!(found, ["metadata.oops", "spec.extra", "spec.closed.x"]);
        assert_eq!(w["spec"]["free"], json!({"anything": {"deep": 1}}));
    }
}
