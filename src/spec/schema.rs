//! The other tools' own schemas, embedded: k3d's `v1alpha5` config schema and Istio's gateway
//! chart `values.schema.json`. Copies of the vendored files; a test keeps them identical.

use std::sync::LazyLock;

use jsonschema::Validator;
use jsonschema::error::ValidationErrorKind;
use serde_json::Value;

use super::error::{Anchor, Diagnostic, did_you_mean};
use super::yaml::{FieldPath, Located};

pub const K3D_SCHEMA: &str = include_str!("schemas/k3d-v1alpha5.schema.json");
pub const GATEWAY_SCHEMA: &str = include_str!("schemas/istio-gateway-values.schema.json");

static K3D_JSON: LazyLock<Value> =
    LazyLock::new(|| serde_json::from_str(K3D_SCHEMA).unwrap_or(Value::Null));
static GATEWAY_JSON: LazyLock<Value> =
    LazyLock::new(|| serde_json::from_str(GATEWAY_SCHEMA).unwrap_or(Value::Null));
static K3D: LazyLock<Option<Validator>> =
    LazyLock::new(|| jsonschema::validator_for(&K3D_JSON).ok());
static GATEWAY: LazyLock<Option<Validator>> =
    LazyLock::new(|| jsonschema::validator_for(&GATEWAY_JSON).ok());

/// Which schema to check against.
#[derive(Debug, Clone, Copy)]
pub enum Schema {
    K3d,
    GatewayValues,
}

impl Schema {
    fn validator(self) -> Option<&'static Validator> {
        match self {
            Schema::K3d => K3D.as_ref(),
            Schema::GatewayValues => GATEWAY.as_ref(),
        }
    }

    fn json(self) -> &'static Value {
        match self {
            Schema::K3d => &K3D_JSON,
            Schema::GatewayValues => &GATEWAY_JSON,
        }
    }

    fn what(self) -> &'static str {
        match self {
            Schema::K3d => "k3d's config schema (k3d.io/v1alpha5 Simple)",
            Schema::GatewayValues => "the Istio gateway chart's values schema",
        }
    }
}

/// A schema violation: where it is inside the checked value, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub path: FieldPath,
    pub message: String,
    pub help: String,
    pub anchor_is_key: bool,
}

/// Check `value` against `schema`. An empty list means valid.
pub fn check(schema: Schema, value: &Value) -> Vec<Violation> {
    let Some(validator) = schema.validator() else {
        return vec![Violation {
            path: FieldPath::root(),
            message: format!("{} failed to compile", schema.what()),
            help: "this is a bug in paddock; please report it".to_string(),
            anchor_is_key: false,
        }];
    };
    let mut out = Vec::new();
    for err in validator.iter_errors(value) {
        let path = FieldPath::from_pointer(err.instance_path().as_str());
        match err.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                let allowed = allowed_keys(schema, err.schema_path().as_str());
                for key in unexpected {
                    let help = match did_you_mean(key, allowed.iter().map(String::as_str)) {
                        Some(best) => format!(
                            "did you mean `{best}`? ({} rejects unknown keys)",
                            schema.what()
                        ),
                        None => {
                            format!("remove it: {} does not allow this key here", schema.what())
                        }
                    };
                    out.push(Violation {
                        path: path.key(key.clone()),
                        message: format!("unknown field `{key}`"),
                        help,
                        anchor_is_key: true,
                    });
                }
            }
            _ => out.push(Violation {
                path,
                message: format!(
                    "{} ({})",
                    err.masked(),
                    schema_keyword(err.schema_path().as_str())
                ),
                help: format!("fix the value to satisfy {}", schema.what()),
                anchor_is_key: false,
            }),
        }
    }
    out
}

/// Check the value at `at` of a located document; violations become diagnostics there.
pub fn check_located(
    schema: Schema,
    doc: &Located,
    at: &FieldPath,
    value: &Value,
) -> Vec<Diagnostic> {
    check(schema, value)
        .into_iter()
        .map(|v| {
            let anchor = if v.anchor_is_key {
                Anchor::Key
            } else {
                Anchor::Value
            };
            Diagnostic::at(doc, &v.path.under(at), anchor, v.message).with_help(v.help)
        })
        .collect()
}

fn schema_keyword(schema_path: &str) -> &str {
    schema_path.rsplit('/').next().unwrap_or(schema_path)
}

/// The property names the schema allows at the object whose `additionalProperties` failed.
fn allowed_keys(schema: Schema, schema_path: &str) -> Vec<String> {
    let root = schema.json();
    let parent = schema_path.trim_end_matches("/additionalProperties");
    let node = if parent.is_empty() {
        Some(root)
    } else {
        root.pointer(parent)
    };
    // `$ref` to `$defs/values` is where the gateway schema keeps its properties.
    let node = match node.and_then(|n| n.get("$ref")).and_then(Value::as_str) {
        Some(r) => root.pointer(r.trim_start_matches('#')),
        None => node,
    };
    node.and_then(|n| n.get("properties"))
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}
