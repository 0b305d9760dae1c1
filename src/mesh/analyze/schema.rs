//! Istio objects against the CRD schemas of the cluster's Istio version, as the API server
//! checks them when they are applied: types, enums, required fields, fields the schema does
//! not declare (server-side apply refuses them), bounds, and Istio's "one of" groups. The
//! schemas are the base chart's (`crds/MINOR.json`, held equal to the chart by
//! tests/istio_crds.rs).

use std::collections::BTreeSet;
use std::sync::OnceLock;

use serde_json::Value;

use super::routes::finding;
use crate::spec::Diagnostic;
use crate::spec::error::Anchor;
use crate::spec::manifests::Manifest;

/// The embedded schemas: (Istio minor, JSON).
const SCHEMAS: &[((u64, u64), &str)] = &[
    ((1, 28), include_str!("crds/1.28.json")),
    ((1, 29), include_str!("crds/1.29.json")),
    ((1, 30), include_str!("crds/1.30.json")),
];

/// The schemas of the minor closest to `version` (the same one when embedded), parsed once
/// per process.
fn schemas(version: &semver::Version) -> Option<(&'static Value, (u64, u64))> {
    static PARSED: [OnceLock<Option<Value>>; SCHEMAS.len()] =
        [const { OnceLock::new() }; SCHEMAS.len()];
    let want = (version.major, version.minor);
    let (i, (minor, text)) = SCHEMAS
        .iter()
        .enumerate()
        .min_by_key(|(_, (m, _))| m.1.abs_diff(want.1) + 100 * m.0.abs_diff(want.0))?;
    let parsed = PARSED[i].get_or_init(|| serde_json::from_str(text).ok());
    Some((parsed.as_ref()?, *minor))
}

pub(super) fn check(model: &super::Model, out: &mut Vec<Diagnostic>) {
    let Some(version) = &model.version else {
        return;
    };
    let Some((all, minor)) = schemas(version) else {
        return;
    };
    for m in model.objects {
        let (Some(kind), Some(api_version)) = (m.kind(), m.api_version()) else {
            continue;
        };
        let Some(entry) = all.get(kind) else {
            continue;
        };
        let Some((group, v)) = api_version.split_once('/') else {
            continue;
        };
        if entry["group"] != group {
            continue;
        }
        let Some(schema) = entry["versions"].get(v) else {
            let served: Vec<&String> = entry["versions"]
                .as_object()
                .map(|o| o.keys().collect())
                .unwrap_or_default();
            out.push(
                finding(
                    m,
                    "apiVersion",
                    Anchor::Value,
                    "IST0106",
                    format!(
                        "Istio {}.{} does not serve {kind} in `{api_version}`",
                        minor.0, minor.1
                    ),
                )
                .with_help(format!(
                    "use `{group}/v1`; served: {}",
                    served
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            );
            continue;
        };
        if let Some(spec) = m.doc.value.get("spec") {
            let mut cx = Walk { m, minor, out };
            cx.value(spec, schema, "spec");
        }
    }
}

struct Walk<'a, 'o> {
    m: &'a Manifest,
    minor: (u64, u64),
    out: &'o mut Vec<Diagnostic>,
}

impl Walk<'_, '_> {
    fn report(&mut self, path: &str, anchor: Anchor, message: String, help: &str) {
        let (major, minor) = self.minor;
        self.out.push(
            finding(
                self.m,
                path,
                anchor,
                "IST0106",
                format!(
                    "{message} (the {} schema of Istio {major}.{minor})",
                    self.m.kind().unwrap_or("object")
                ),
            )
            .with_help(help.to_string()),
        );
    }

    fn value(&mut self, v: &Value, schema: &Value, path: &str) {
        if v.is_null() && schema.get("nullable") == Some(&Value::Bool(true)) {
            return;
        }
        if let Some(t) = schema.get("type").and_then(Value::as_str)
            && !type_ok(t, v)
        {
            self.report(
                path,
                Anchor::Value,
                format!("`{path}` must be {}, not {}", article(t), describe(v)),
                "fix the value's type",
            );
            return;
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
            && !allowed.contains(v)
        {
            let list: Vec<String> = allowed
                .iter()
                .map(|a| a.as_str().map_or(a.to_string(), str::to_string))
                .collect();
            self.report(
                path,
                Anchor::Value,
                format!("`{path}` is {v}, not one of {}", list.join(", ")),
                "use one of the listed values",
            );
        }
        self.bounds(v, schema, path);
        match v {
            Value::Object(map) => self.object(map, schema, path),
            Value::Array(items) => {
                if let Some(item) = schema.get("items") {
                    for (i, x) in items.iter().enumerate() {
                        self.value(x, item, &format!("{path}[{i}]"));
                    }
                }
            }
            _ => {}
        }
    }

    fn bounds(&mut self, v: &Value, schema: &Value, path: &str) {
        let num = |k: &str| schema.get(k).and_then(Value::as_f64);
        if let Some(x) = v.as_f64()
            && (num("minimum").is_some_and(|min| x < min)
                || num("maximum").is_some_and(|max| x > max))
        {
            {
                self.report(
                    path,
                    Anchor::Value,
                    format!(
                        "`{path}` is {x}, outside {}..{}",
                        num("minimum").unwrap_or(f64::MIN),
                        num("maximum").unwrap_or(f64::MAX)
                    ),
                    "use a value in range",
                );
            }
        }
        if let Some(a) = v.as_array() {
            let n = a.len() as f64;
            if num("minItems").is_some_and(|min| n < min)
                || num("maxItems").is_some_and(|max| n > max)
            {
                self.report(
                    path,
                    Anchor::Value,
                    format!(
                        "`{path}` has {n} items, outside {}..{}",
                        num("minItems").unwrap_or(0.0),
                        num("maxItems").unwrap_or(f64::MAX)
                    ),
                    "add or remove items",
                );
            }
        }
        if let Some(s) = v.as_str()
            && num("maxLength").is_some_and(|max| s.chars().count() as f64 > max)
        {
            self.report(
                path,
                Anchor::Value,
                format!(
                    "`{path}` is longer than {} characters",
                    num("maxLength").unwrap_or(0.0)
                ),
                "shorten it",
            );
        }
    }

    fn object(&mut self, map: &serde_json::Map<String, Value>, schema: &Value, path: &str) {
        let props = schema.get("properties").and_then(Value::as_object);
        let additional = schema.get("additionalProperties");
        let preserve =
            schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
        for (k, x) in map {
            let here = format!("{path}.{k}");
            match (props.and_then(|p| p.get(k)), additional) {
                (Some(s), _) => self.value(x, s, &here),
                (None, Some(s)) if s.is_object() => self.value(x, s, &here),
                (None, Some(Value::Bool(true))) => {}
                _ if preserve => {}
                _ => {
                    let known: Vec<&str> = props
                        .map(|p| p.keys().map(String::as_str).collect())
                        .unwrap_or_default();
                    let help = crate::spec::error::did_you_mean(k, known.iter().copied())
                        .map_or_else(
                            || format!("remove it; `{path}` takes {}", known.join(", ")),
                            |m| format!("did you mean `{m}`?"),
                        );
                    self.report(
                        &here,
                        Anchor::Key,
                        format!("unknown field `{k}`: the API server refuses the object"),
                        &help,
                    );
                }
            }
        }
        for r in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !map.contains_key(r) {
                self.report(
                    path,
                    Anchor::Value,
                    format!("`{path}` needs `{r}`"),
                    "add the missing field",
                );
            }
        }
        // Istio's "at most one of": a `oneOf` of `required` alternatives.
        if let Some(branches) = schema.get("oneOf").and_then(Value::as_array) {
            let group: BTreeSet<&str> = branches
                .iter()
                .filter_map(|b| b.get("required").and_then(Value::as_array))
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let set: Vec<&str> = group
                .iter()
                .copied()
                .filter(|f| map.contains_key(*f))
                .collect();
            if set.len() > 1 {
                self.report(
                    path,
                    Anchor::Value,
                    format!(
                        "`{path}` sets {} together; only one of them may be set",
                        set.join(" and ")
                    ),
                    "keep one of them",
                );
            }
        }
    }
}

fn type_ok(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "integer" => v.as_i64().is_some() || v.as_u64().is_some(),
        "number" => v.is_number(),
        _ => true,
    }
}

fn article(t: &str) -> String {
    match t {
        "object" => "a mapping".into(),
        "array" => "a list".into(),
        "integer" => "an integer".into(),
        other => format!("a {other}"),
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a mapping".into(),
    }
}
