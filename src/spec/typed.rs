//! Typed views of located documents: serde errors become diagnostics that name the field, its
//! position and the fix.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::error::{Anchor, Diagnostic, suggest_with};
use super::yaml::{FieldPath, Located, Segment};

/// Deserialize the value at `at` in `doc` as `T`. A missing value reads as an empty map.
/// `extra_fields` are other names valid at that level (suggested for typos).
#[allow(clippy::result_large_err)] // one per bad field, built once
pub fn typed<T: DeserializeOwned>(
    doc: &Located,
    at: &FieldPath,
    extra_fields: &[&str],
) -> Result<T, Diagnostic> {
    let empty = Value::Object(Map::new());
    let value = doc.get(at).unwrap_or(&empty);
    serde_path_to_error::deserialize(value).map_err(|err| {
        let mut path = at.clone();
        for seg in err.path().iter() {
            match seg {
                serde_path_to_error::Segment::Seq { index } => path = path.index(*index),
                serde_path_to_error::Segment::Map { key } => path = path.key(key.clone()),
                serde_path_to_error::Segment::Enum { .. }
                | serde_path_to_error::Segment::Unknown => {}
            }
        }
        explain(doc, path, &err.into_inner().to_string(), extra_fields)
    })
}

/// Turn serde's message into one that says what to do.
fn explain(doc: &Located, mut path: FieldPath, raw: &str, extra_fields: &[&str]) -> Diagnostic {
    if let Some(rest) = raw.strip_prefix("unknown field `") {
        let (field, expected) = split_backticked(rest);
        // serde reports the unknown key's path as its parent on some shapes; point at the key.
        if path.0.last() != Some(&Segment::Key(field.clone())) {
            path = path.key(field.clone());
        }
        let mut candidates = expected;
        if path.0.len() == 1 {
            candidates.extend(extra_fields.iter().map(|s| s.to_string()));
        }
        let candidates: Vec<&str> = candidates.iter().map(String::as_str).collect();
        let help = suggest_with(&field, &candidates, |list| {
            if list.is_empty() {
                "remove this field".to_string()
            } else {
                format!("remove it; fields allowed here: {list}")
            }
        });
        return Diagnostic::at(doc, &path, Anchor::Key, format!("unknown field `{field}`"))
            .with_help(help);
    }
    if let Some(rest) = raw.strip_prefix("missing field `") {
        let (field, _) = split_backticked(rest);
        return Diagnostic::at(
            doc,
            &path,
            Anchor::Key,
            format!("missing required field `{field}`"),
        )
        .with_help(format!("add `{field}:` here"));
    }
    if let Some(rest) = raw.strip_prefix("unknown variant `") {
        let (variant, expected) = split_backticked(rest);
        let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
        let help = suggest_with(&variant, &expected, |list| format!("use one of: {list}"));
        return Diagnostic::at(
            doc,
            &path,
            Anchor::Value,
            format!("unknown value `{variant}`"),
        )
        .with_help(help);
    }
    if let Some(rest) = raw.strip_prefix("invalid type: ") {
        let (found, expected) = rest
            .split_once(", expected ")
            .unwrap_or((rest, "another type"));
        let expected = plain_type(expected);
        let help = if expected == "a string"
            && (found.starts_with("floating point") || found.starts_with("integer"))
        {
            "put the value in quotes so YAML reads it as text, e.g. `version: \"1.30.3\"`"
                .to_string()
        } else {
            format!("write {expected} here")
        };
        return Diagnostic::at(
            doc,
            &path,
            Anchor::Value,
            format!("wrong type: expected {expected}, found {found}"),
        )
        .with_help(help);
    }
    Diagnostic::at(doc, &path, Anchor::Value, raw.to_string())
}

/// `name`, expected one of `a`, `b` → ("name", ["a", "b"])
fn split_backticked(rest: &str) -> (String, Vec<String>) {
    let (name, tail) = rest.split_once('`').unwrap_or((rest, ""));
    let expected = tail
        .split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_string())
        .collect();
    (name.to_string(), expected)
}

fn plain_type(serde_name: &str) -> String {
    let t = serde_name.trim();
    match t {
        "u8" | "u16" | "u32" | "u64" | "usize" | "i8" | "i16" | "i32" | "i64" | "isize" => {
            "an integer".to_string()
        }
        "f32" | "f64" => "a number".to_string(),
        "a boolean" | "a string" | "a map" => t.to_string(),
        "a sequence" => "a list".to_string(),
        _ if t.starts_with("struct ") => "a map".to_string(),
        _ if t.starts_with("enum ") => "one of the allowed names".to_string(),
        _ => t.to_string(),
    }
}
