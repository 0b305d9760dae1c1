//! Request bodies as Kubernetes protobuf (`application/vnd.kubernetes.protobuf`), which client-go
//! typed clients send (kubectl's `create`/`run`, helm's release Secrets): the 4-byte magic
//! `k8s\0`, then a `runtime.Unknown` {typeMeta {apiVersion, kind}, raw, contentEncoding,
//! contentType} whose `raw` is the object. Decoded into the same `serde_json::Value` the JSON
//! path gives, by the table in `schema.txt` (field numbers and types from k8s-pb, JSON names from
//! k8s-openapi; made by `tests/protobuf_table.rs`).
//!
//! JSON conventions, as Kubernetes' JSON encoding writes the decoded Go object:
//! - bytes are base64 strings, maps objects, Go structs embedded inline have their fields in the
//!   parent; `meta/v1` Time is RFC 3339 in seconds (`2026-01-02T03:04:05Z`), MicroTime with six
//!   fractional digits, Duration a Go duration (`1m30s`), IntOrString a number or a string,
//!   Quantity a string; RawExtension, apiextensions JSON and FieldsV1 the JSON they hold;
//!   JSONSchemaPropsOrArray/OrBool/OrStringArray a schema, an array or a bool.
//! - Zero values. Go's marshaller writes every field that is not a pointer, set or not, and
//!   Go's JSON leaves out what is `omitempty` and zero, so the stored object is what the same
//!   object sent as JSON gives: an empty Time (Go writes a zero Time as an empty message) is
//!   absent; an empty string is absent unless the field is required (not `omitempty`;
//!   k8s-openapi has it non-`Option`); a zero number or `false` is absent for the Go value
//!   fields the table flags `omitempty` (`metadata.generation`, a container's `stdin`, a probe's
//!   `periodSeconds`...) and kept otherwise: a pointer's explicit zero (`replicas: 0`,
//!   `automountServiceAccountToken: false`, DeleteOptions' `gracePeriodSeconds: 0`) or a
//!   required number; empty lists and maps cannot be on the wire and are absent; messages are
//!   kept even when empty (`resources: {}`, as Go's JSON writes a struct).
//! - Unknown fields are skipped, as Go's unmarshaller does.

use std::collections::HashMap;
use std::sync::LazyLock;

use base64::Engine;
use serde_json::{Map, Value};

use crate::store::{ApiError, Resource};

/// The media type of Kubernetes protobuf.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";
const MAGIC: &[u8] = b"k8s\0";
/// Deepest nesting decoded (JSON schemas nest); beyond it the body is refused.
const MAX_DEPTH: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scalar {
    String,
    Bytes,
    Bool,
    Int32,
    Int64,
    Double,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Scalar(Scalar),
    Message(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Label {
    Single,
    Repeated,
    Map,
}

#[derive(Debug, Clone)]
struct Field {
    /// The JSON name; `None` for a Go struct inlined in its parent.
    json: Option<String>,
    ty: Ty,
    label: Label,
    required: bool,
    /// A Go value field with `omitempty`: its zero is left out.
    omitempty: bool,
}

/// Messages whose JSON is not an object of their fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Special {
    Time,
    MicroTime,
    Duration,
    IntOrString,
    Quantity,
    /// RawExtension, apiextensions JSON, FieldsV1: field 1 holds JSON.
    RawJson,
    OrArray,
    OrBool,
    OrStringArray,
}

#[derive(Debug)]
struct Message {
    name: String,
    special: Option<Special>,
    fields: HashMap<u32, Field>,
}

#[derive(Debug)]
struct Schema {
    messages: Vec<Message>,
    /// (apiVersion or `*`, kind) → message.
    kinds: HashMap<(String, String), usize>,
}

static SCHEMA: LazyLock<Schema> = LazyLock::new(|| Schema::parse(include_str!("schema.txt")));

impl Schema {
    /// The table is generated and checked by a test; a malformed one is a bug, so panic.
    fn parse(text: &str) -> Schema {
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .collect();
        let mut index: HashMap<&str, usize> = HashMap::new();
        let mut messages = Vec::new();
        for l in &lines {
            if let Some(name) = l.strip_prefix("message ") {
                index.insert(name, messages.len());
                messages.push(Message {
                    name: name.to_string(),
                    special: special(name),
                    fields: HashMap::new(),
                });
            }
        }
        let mut kinds = HashMap::new();
        let mut current = None;
        for l in &lines {
            let words: Vec<&str> = l.split(' ').collect();
            match words.as_slice() {
                ["kind", av, kind, msg] => {
                    kinds.insert((av.to_string(), kind.to_string()), index[msg]);
                }
                ["message", name] => current = Some(index[name]),
                [tag, json, ty, rest @ ..] => {
                    let (label, ty) = if let Some(t) = ty.strip_prefix("[]") {
                        (Label::Repeated, t)
                    } else if let Some(t) = ty.strip_prefix("{}") {
                        (Label::Map, t)
                    } else {
                        (Label::Single, *ty)
                    };
                    let ty = match ty {
                        "string" => Ty::Scalar(Scalar::String),
                        "bytes" => Ty::Scalar(Scalar::Bytes),
                        "bool" => Ty::Scalar(Scalar::Bool),
                        "int32" => Ty::Scalar(Scalar::Int32),
                        "int64" => Ty::Scalar(Scalar::Int64),
                        "double" => Ty::Scalar(Scalar::Double),
                        m => Ty::Message(index[m]),
                    };
                    let m = current.expect("a field follows a message line");
                    messages[m].fields.insert(
                        tag.parse().expect("field number"),
                        Field {
                            json: (*json != "*").then(|| json.to_string()),
                            ty,
                            label,
                            required: rest.contains(&"required"),
                            omitempty: rest.contains(&"omitempty"),
                        },
                    );
                }
                _ => panic!("schema.txt: unreadable line {l:?}"),
            }
        }
        Schema { messages, kinds }
    }
}

fn special(name: &str) -> Option<Special> {
    Some(match name {
        "meta.v1.Time" => Special::Time,
        "meta.v1.MicroTime" => Special::MicroTime,
        "meta.v1.Duration" => Special::Duration,
        "intstr.IntOrString" => Special::IntOrString,
        "resource.Quantity" => Special::Quantity,
        "runtime.RawExtension" | "apiextensions.v1.JSON" | "meta.v1.FieldsV1" => Special::RawJson,
        "apiextensions.v1.JSONSchemaPropsOrArray" => Special::OrArray,
        "apiextensions.v1.JSONSchemaPropsOrBool" => Special::OrBool,
        "apiextensions.v1.JSONSchemaPropsOrStringArray" => Special::OrStringArray,
        _ => return None,
    })
}

/// One field as it is on the wire.
#[derive(Debug, Clone, Copy)]
enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32,
}

fn varint(b: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos).ok_or("unexpected EOF")?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(v);
        }
    }
    Err("proto: integer overflow".into())
}

/// The fields of one message, in wire order.
fn wire_fields(b: &[u8]) -> Result<Vec<(u32, Wire<'_>)>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < b.len() {
        let key = varint(b, &mut pos)?;
        let (tag, wt) = (key >> 3, key & 7);
        if tag == 0 || tag > u64::from(u32::MAX >> 3) {
            return Err(format!("proto: illegal tag {tag} (wire type {wt})"));
        }
        let take = |pos: &mut usize, n: usize| -> Result<&[u8], String> {
            let end = pos.checked_add(n).filter(|e| *e <= b.len());
            let end = end.ok_or("unexpected EOF")?;
            let s = &b[*pos..end];
            *pos = end;
            Ok(s)
        };
        let w = match wt {
            0 => Wire::Varint(varint(b, &mut pos)?),
            1 => Wire::Fixed64(u64::from_le_bytes(
                take(&mut pos, 8)?.try_into().expect("8 bytes"),
            )),
            2 => {
                let n = usize::try_from(varint(b, &mut pos)?).map_err(|_| "unexpected EOF")?;
                Wire::Bytes(take(&mut pos, n)?)
            }
            5 => {
                take(&mut pos, 4)?;
                Wire::Fixed32
            }
            _ => return Err(format!("proto: illegal wireType {wt}")),
        };
        out.push((tag as u32, w));
    }
    Ok(out)
}

fn scalar(s: Scalar, w: Wire, what: &str) -> Result<Value, String> {
    let wrong = || format!("proto: wrong wireType for field {what}");
    Ok(match (s, w) {
        (Scalar::String, Wire::Bytes(b)) => Value::String(String::from_utf8_lossy(b).into_owned()),
        (Scalar::Bytes, Wire::Bytes(b)) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        (Scalar::Bool, Wire::Varint(v)) => Value::Bool(v != 0),
        (Scalar::Int32, Wire::Varint(v)) => Value::from(v as i64 as i32),
        (Scalar::Int64, Wire::Varint(v)) => Value::from(v as i64),
        (Scalar::Double, Wire::Fixed64(v)) => double(f64::from_bits(v)),
        _ => return Err(wrong()),
    })
}

/// A float64 as Go's JSON writes it: integral values without a fraction.
fn double(f: f64) -> Value {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
        Value::from(f as i64)
    } else {
        serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
    }
}

/// Elements of a repeated scalar: packed (one length-delimited run) or one per field.
fn repeated_scalars(s: Scalar, w: Wire, what: &str, out: &mut Vec<Value>) -> Result<(), String> {
    match (s, w) {
        (Scalar::Bool | Scalar::Int32 | Scalar::Int64, Wire::Bytes(b)) => {
            let mut pos = 0;
            while pos < b.len() {
                out.push(scalar(s, Wire::Varint(varint(b, &mut pos)?), what)?);
            }
        }
        (Scalar::Double, Wire::Bytes(b)) => {
            if b.len() % 8 != 0 {
                return Err("unexpected EOF".into());
            }
            for c in b.chunks(8) {
                let bits = u64::from_le_bytes(c.try_into().expect("8 bytes"));
                out.push(double(f64::from_bits(bits)));
            }
        }
        _ => out.push(scalar(s, w, what)?),
    }
    Ok(())
}

impl Schema {
    /// A message's JSON; `None` for what Go's JSON would write as `null` (a zero Time, an empty
    /// RawExtension, an OrArray with neither).
    fn message(&self, idx: usize, b: &[u8], depth: usize) -> Result<Option<Value>, String> {
        if depth > MAX_DEPTH {
            return Err("max depth exceeded".into());
        }
        let msg = &self.messages[idx];
        if let Some(sp) = msg.special {
            return self.special(sp, b, depth);
        }
        let wire = wire_fields(b)?;
        let mut obj = Map::new();
        // Fields by first appearance; a repeated occurrence of a singular message merges.
        let mut order: Vec<u32> = Vec::new();
        let mut by_tag: HashMap<u32, Vec<Wire>> = HashMap::new();
        for (tag, w) in wire {
            if !msg.fields.contains_key(&tag) {
                continue;
            }
            by_tag
                .entry(tag)
                .or_insert_with(|| {
                    order.push(tag);
                    Vec::new()
                })
                .push(w);
        }
        for tag in order {
            let f = &msg.fields[&tag];
            let ws = &by_tag[&tag];
            let what = format!("{}.{}", msg.name, f.json.as_deref().unwrap_or("(inline)"));
            let value = match (f.label, f.ty) {
                (Label::Single, Ty::Scalar(s)) => {
                    let v = scalar(s, *ws.last().expect("one occurrence"), &what)?;
                    let empty = v.as_str().is_some_and(str::is_empty);
                    let zero = v.as_f64() == Some(0.0) || v == false;
                    if (empty && !f.required) || (zero && f.omitempty) {
                        continue;
                    }
                    Some(v)
                }
                (Label::Single, Ty::Message(m)) => {
                    let mut all = Vec::new();
                    for w in ws {
                        match w {
                            Wire::Bytes(b) => all.extend_from_slice(b),
                            _ => return Err(format!("proto: wrong wireType for field {what}")),
                        }
                    }
                    self.message(m, &all, depth + 1)?
                }
                (Label::Repeated, Ty::Scalar(s)) => {
                    let mut items = Vec::new();
                    for w in ws {
                        repeated_scalars(s, *w, &what, &mut items)?;
                    }
                    Some(Value::Array(items))
                }
                (Label::Repeated, Ty::Message(m)) => {
                    let mut items = Vec::new();
                    for w in ws {
                        let Wire::Bytes(b) = w else {
                            return Err(format!("proto: wrong wireType for field {what}"));
                        };
                        items.push(self.message(m, b, depth + 1)?.unwrap_or(Value::Null));
                    }
                    Some(Value::Array(items))
                }
                (Label::Map, ty) => {
                    let mut map = Map::new();
                    for w in ws {
                        let Wire::Bytes(entry) = w else {
                            return Err(format!("proto: wrong wireType for field {what}"));
                        };
                        let (mut key, mut value) = (String::new(), None);
                        for (t, ew) in wire_fields(entry)? {
                            match (t, ew, ty) {
                                (1, Wire::Bytes(k), _) => {
                                    key = String::from_utf8_lossy(k).into_owned();
                                }
                                (2, Wire::Bytes(v), Ty::Message(m)) => {
                                    value = self.message(m, v, depth + 1)?;
                                }
                                (2, w, Ty::Scalar(s)) => value = Some(scalar(s, w, &what)?),
                                _ => return Err(format!("proto: bad map entry in {what}")),
                            }
                        }
                        // An entry without a value holds the type's zero.
                        let value = match (value, ty) {
                            (Some(v), _) => v,
                            (None, Ty::Message(m)) => {
                                self.message(m, &[], depth + 1)?.unwrap_or(Value::Null)
                            }
                            (None, Ty::Scalar(Scalar::String | Scalar::Bytes)) => {
                                Value::String(String::new())
                            }
                            (None, Ty::Scalar(Scalar::Bool)) => Value::Bool(false),
                            (None, Ty::Scalar(_)) => Value::from(0),
                        };
                        map.insert(key, value);
                    }
                    Some(Value::Object(map))
                }
            };
            match (&f.json, value) {
                (Some(name), Some(v)) => {
                    obj.insert(name.clone(), v);
                }
                (None, Some(Value::Object(inner))) => obj.extend(inner),
                _ => {}
            }
        }
        Ok(Some(Value::Object(obj)))
    }

    fn special(&self, sp: Special, b: &[u8], depth: usize) -> Result<Option<Value>, String> {
        let wire = wire_fields(b)?;
        let int = |tag: u32| {
            wire.iter().rev().find_map(|(t, w)| match (t, w) {
                (t, Wire::Varint(v)) if *t == tag => Some(*v),
                _ => None,
            })
        };
        let bytes = |tag: u32| {
            wire.iter().rev().find_map(|(t, w)| match (t, w) {
                (t, Wire::Bytes(v)) if *t == tag => Some(*v),
                _ => None,
            })
        };
        let text = |tag: u32| bytes(tag).map(|v| String::from_utf8_lossy(v).into_owned());
        // The JSONSchemaProps inside an Or* wrapper (its field `schema`).
        let props = |tag: u32| -> Result<Option<Value>, String> {
            let idx = SCHEMA_PROPS.ok_or("no JSONSchemaProps in the table")?;
            match bytes(tag) {
                Some(v) => self.message(idx, v, depth + 1),
                None => Ok(None),
            }
        };
        Ok(match sp {
            // Go marshals a zero Time as an empty message; its protobuf carries whole seconds
            // (a Time decoded from protobuf drops nanoseconds, as JSON's RFC 3339 does).
            Special::Time if b.is_empty() => None,
            Special::Time => Some(Value::String(rfc3339(int(1).unwrap_or(0) as i64, None))),
            Special::MicroTime if b.is_empty() => None,
            Special::MicroTime => {
                let nanos = int(2).unwrap_or(0) as i64 as i32;
                Some(Value::String(rfc3339(
                    int(1).unwrap_or(0) as i64,
                    Some(nanos / 1000),
                )))
            }
            Special::Duration => Some(Value::String(go_duration(int(1).unwrap_or(0) as i64))),
            Special::IntOrString => Some(if int(1) == Some(1) {
                Value::String(text(3).unwrap_or_default())
            } else {
                Value::from(int(2).unwrap_or(0) as i64 as i32)
            }),
            Special::Quantity => Some(Value::String(
                text(1)
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "0".into()),
            )),
            Special::RawJson => match bytes(1) {
                None | Some([]) => None,
                Some(raw) => Some(
                    serde_json::from_slice(raw)
                        .map_err(|e| format!("embedded JSON is not JSON: {e}"))?,
                ),
            },
            // JSONSchemaPropsOrArray {schema 1, jSONSchemas 2}: an array when it has items.
            Special::OrArray => {
                let idx = SCHEMA_PROPS.ok_or("no JSONSchemaProps in the table")?;
                let mut items = Vec::new();
                for (t, w) in &wire {
                    if let (2, Wire::Bytes(v)) = (t, w) {
                        items.push(self.message(idx, v, depth + 1)?.unwrap_or(Value::Null));
                    }
                }
                if items.is_empty() {
                    props(1)?
                } else {
                    Some(Value::Array(items))
                }
            }
            // JSONSchemaPropsOrBool {allows 1, schema 2}: the schema when there is one.
            Special::OrBool => match props(2)? {
                Some(s) => Some(s),
                None => Some(Value::Bool(int(1).is_some_and(|v| v != 0))),
            },
            // JSONSchemaPropsOrStringArray {schema 1, property 2}: the strings when any.
            Special::OrStringArray => {
                let items: Vec<Value> = wire
                    .iter()
                    .filter_map(|(t, w)| match (t, w) {
                        (2, Wire::Bytes(v)) => {
                            Some(Value::String(String::from_utf8_lossy(v).into_owned()))
                        }
                        _ => None,
                    })
                    .collect();
                if items.is_empty() {
                    props(1)?
                } else {
                    Some(Value::Array(items))
                }
            }
        })
    }
}

static SCHEMA_PROPS: LazyLock<Option<usize>> = LazyLock::new(|| {
    SCHEMA
        .messages
        .iter()
        .position(|m| m.name == "apiextensions.v1.JSONSchemaProps")
});

/// `2026-01-02T03:04:05Z`, or with six fractional digits when `micros` is given.
fn rfc3339(secs: i64, micros: Option<i32>) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = crate::store::civil_from_days(days);
    let base = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    match micros {
        Some(us) => format!("{base}.{:06}Z", us.clamp(0, 999_999)),
        None => format!("{base}Z"),
    }
}

/// Go's `time.Duration.String()`: `1h2m3.5s`, `1.5ms`, `0s`.
fn go_duration(ns: i64) -> String {
    let neg = ns < 0;
    let u = ns.unsigned_abs();
    let frac = |v: u64, digits: u32| -> String {
        // v in units of 10^-digits, printed with trailing zeros (and a bare point) removed.
        let p = 10u64.pow(digits);
        let (whole, rest) = (v / p, v % p);
        if rest == 0 {
            whole.to_string()
        } else {
            let f = format!("{rest:0width$}", width = digits as usize);
            format!("{whole}.{}", f.trim_end_matches('0'))
        }
    };
    let s = if u == 0 {
        "0s".to_string()
    } else if u < 1_000 {
        format!("{u}ns")
    } else if u < 1_000_000 {
        format!("{}µs", frac(u, 3))
    } else if u < 1_000_000_000 {
        format!("{}ms", frac(u, 6))
    } else {
        let (h, rem) = (u / 3_600_000_000_000, u % 3_600_000_000_000);
        let (m, rem) = (rem / 60_000_000_000, rem % 60_000_000_000);
        let secs = format!("{}s", frac(rem, 9));
        match (h, m) {
            (0, 0) => secs,
            (0, m) => format!("{m}m{secs}"),
            (h, m) => format!("{h}h{m}m{secs}"),
        }
    };
    if neg { format!("-{s}") } else { s }
}

/// Why a protobuf body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Not a Kubernetes protobuf envelope at all.
    Envelope(String),
    /// An envelope of `apiVersion`/`kind` whose object could not be read.
    Object {
        api_version: String,
        kind: String,
        error: String,
    },
}

/// Decode a whole body (magic, `runtime.Unknown`, object) into the object's JSON, with its
/// `apiVersion` and `kind`.
pub fn decode(body: &[u8]) -> Result<Value, DecodeError> {
    let env = |e: String| DecodeError::Envelope(e);
    let inner = body.strip_prefix(MAGIC).ok_or_else(|| {
        env("the body does not start with the protobuf magic prefix \"k8s\\x00\"".into())
    })?;
    // runtime.Unknown {typeMeta 1 {apiVersion 1, kind 2}, raw 2, contentEncoding 3,
    // contentType 4}.
    let (mut api_version, mut kind, mut raw, mut encoding) =
        (String::new(), String::new(), &[][..], String::new());
    for (tag, w) in wire_fields(inner).map_err(env)? {
        match (tag, w) {
            (1, Wire::Bytes(tm)) => {
                for (t, w) in wire_fields(tm).map_err(env)? {
                    match (t, w) {
                        (1, Wire::Bytes(v)) => api_version = String::from_utf8_lossy(v).into(),
                        (2, Wire::Bytes(v)) => kind = String::from_utf8_lossy(v).into(),
                        _ => {}
                    }
                }
            }
            (2, Wire::Bytes(v)) => raw = v,
            (3, Wire::Bytes(v)) => encoding = String::from_utf8_lossy(v).into(),
            _ => {}
        }
    }
    let object_error = |error: String| DecodeError::Object {
        api_version: api_version.clone(),
        kind: kind.clone(),
        error,
    };
    if kind.is_empty() {
        return Err(env("Object 'Kind' is missing in the envelope".into()));
    }
    if !encoding.is_empty() {
        return Err(object_error(format!(
            "unsupported content encoding {encoding:?}"
        )));
    }
    let schema = &*SCHEMA;
    let idx = schema
        .kinds
        .get(&(api_version.clone(), kind.clone()))
        .or_else(|| schema.kinds.get(&("*".to_string(), kind.clone())))
        .copied()
        .ok_or_else(|| {
            object_error(format!(
                "no kind {kind:?} is registered for version {api_version:?} in scheme \
                 \"pkg/api/legacyscheme/scheme.go:30\""
            ))
        })?;
    let obj = schema
        .message(idx, raw, 0)
        .map_err(object_error)?
        .unwrap_or_else(|| Value::Object(Map::new()));
    let mut out = Map::new();
    out.insert("apiVersion".into(), Value::String(api_version));
    out.insert("kind".into(), Value::String(kind));
    if let Value::Object(fields) = obj {
        out.extend(fields);
    }
    Ok(Value::Object(out))
}

/// Whether the sim decodes protobuf bodies of this kind (built-in kinds; not custom ones, as
/// Kubernetes serves custom resources as JSON and YAML only).
pub fn knows(api_version: &str, kind: &str) -> bool {
    SCHEMA
        .kinds
        .contains_key(&(api_version.to_string(), kind.to_string()))
}

/// The request body of a create, update, patch, delete or eviction as JSON, read by its
/// Content-Type: protobuf decoded here, anything else parsed as JSON, else YAML (server-side
/// apply bodies may be YAML). `Ok(None)` for an empty or unreadable non-protobuf body, which
/// the caller refuses as before.
pub fn request_body(
    res: &Resource,
    method: &str,
    subresource: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Option<Value>, ApiError> {
    if body.is_empty() {
        return Ok(None);
    }
    let media = content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if media != MEDIA_TYPE {
        return Ok(serde_json::from_slice(body).ok().or_else(|| {
            std::str::from_utf8(body)
                .ok()
                .and_then(|t| serde_saphyr::from_str(t).ok())
        }));
    }
    let unsupported = |accepted: &str| {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: {accepted}"
            ),
        )
    };
    if !matches!(subresource, None | Some("status" | "eviction")) {
        // A subresource the sim does not serve: its route answers.
        return Ok(None);
    }
    if method == "PATCH" {
        return Err(unsupported(
            "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
        ));
    }
    let expected = match (method, subresource) {
        ("DELETE", _) => "DeleteOptions",
        (_, Some("eviction")) => "Eviction",
        _ => res.kind.as_str(),
    };
    // DeleteOptions are meta/v1's, read as protobuf for custom kinds too.
    if expected != "DeleteOptions" && !knows(&res.api_version(), &res.kind) {
        return Err(unsupported("application/json, application/yaml"));
    }
    let bad = |m: String| Err(ApiError::new(400, "BadRequest", m));
    match decode(body) {
        Ok(v) => {
            let kind = v["kind"].as_str().unwrap_or_default();
            if kind != expected {
                let av = v["apiVersion"].as_str().unwrap_or_default();
                let version = av.rsplit('/').next().unwrap_or(av);
                return bad(format!(
                    "{kind} in version {version:?} cannot be handled as a {expected}: \
                     a {kind} is not a {expected}"
                ));
            }
            Ok(Some(v))
        }
        Err(DecodeError::Object {
            api_version,
            kind,
            error,
        }) => {
            let version = api_version.rsplit('/').next().unwrap_or(&api_version);
            bad(format!(
                "{kind} in version {version:?} cannot be handled as a {expected}: {error}"
            ))
        }
        Err(DecodeError::Envelope(error)) => {
            let head: String = body.iter().take(30).map(|b| format!("{b:02x}")).collect();
            let more = if body.len() > 30 { " ..." } else { "" };
            bad(format!(
                "the object provided is unrecognized (must be of type {expected}): {error} ({head}{more})"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_loads_and_knows_every_served_kind() {
        for r in crate::store::builtin_resources() {
            assert!(
                knows(&r.api_version(), &r.kind),
                "{} {}",
                r.api_version(),
                r.kind
            );
        }
        assert!(SCHEMA_PROPS.is_some());
    }

    #[test]
    fn go_durations() {
        let cases = [
            (0, "0s"),
            (1, "1ns"),
            (1_500, "1.5µs"),
            (1_500_000, "1.5ms"),
            (1_000_000_000, "1s"),
            (90_000_000_000, "1m30s"),
            (3_723_500_000_000, "1h2m3.5s"),
            (3_600_000_000_000, "1h0m0s"),
            (-2_000_000_000, "-2s"),
        ];
        for (ns, s) in cases {
            assert_eq!(go_duration(ns), s, "{ns}");
        }
    }

    #[test]
    fn times() {
        assert_eq!(rfc3339(1_767_323_045, None), "2026-01-02T03:04:05Z");
        assert_eq!(
            rfc3339(1_767_323_045, Some(123_456)),
            "2026-01-02T03:04:05.123456Z"
        );
        assert_eq!(rfc3339(0, None), "1970-01-01T00:00:00Z");
    }
}
