//! Located YAML: a document parsed into a `serde_json::Value` plus the source position of every
//! node, so later stages (typed deserialization, merging, semantic checks) can point at the exact
//! file, line and column of the field they reject.
//!
//! Scalars follow YAML 1.2's core schema with strict booleans: only `true`/`false` are booleans,
//! so Helm values such as `no` or `on` stay strings.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use serde_saphyr::Spanned;

/// A position in a source file, 1-based. Line 0 means "unknown".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
}

/// Where one node of a document came from: the file, and the positions of the value and, for a
/// map entry, of its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: String,
    pub value: Pos,
    pub key: Option<Pos>,
}

/// A path into a document: map keys and sequence indexes from the root.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct FieldPath(pub Vec<Segment>);

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Segment {
    Key(String),
    Index(usize),
}

impl FieldPath {
    pub fn root() -> Self {
        Self(Vec::new())
    }

    /// Parse a dotted path such as `istio.gateways[0].values`. Keys containing dots or brackets
    /// cannot be written this way; build such paths with [`FieldPath::key`].
    pub fn parse(dotted: &str) -> Self {
        let mut out = Vec::new();
        for part in dotted.split('.').filter(|p| !p.is_empty()) {
            let (name, rest) = match part.find('[') {
                Some(i) => (&part[..i], &part[i..]),
                None => (part, ""),
            };
            if !name.is_empty() {
                out.push(Segment::Key(name.to_string()));
            }
            for idx in rest.split('[').filter(|s| !s.is_empty()) {
                match idx.trim_end_matches(']').parse() {
                    Ok(i) => out.push(Segment::Index(i)),
                    Err(_) => out.push(Segment::Key(idx.trim_end_matches(']').to_string())),
                }
            }
        }
        Self(out)
    }

    pub fn key(&self, key: impl Into<String>) -> Self {
        let mut next = self.clone();
        next.0.push(Segment::Key(key.into()));
        next
    }

    pub fn index(&self, index: usize) -> Self {
        let mut next = self.clone();
        next.0.push(Segment::Index(index));
        next
    }

    pub fn parent(&self) -> Option<Self> {
        let mut p = self.clone();
        p.0.pop().map(|_| p)
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// Convert an RFC 6901 JSON pointer (as reported by JSON Schema validators).
    pub fn from_pointer(pointer: &str) -> Self {
        let mut out = Vec::new();
        for raw in pointer.split('/').skip(1) {
            let part = raw.replace("~1", "/").replace("~0", "~");
            match part.parse::<usize>() {
                Ok(i) if !part.starts_with('+') => out.push(Segment::Index(i)),
                _ => out.push(Segment::Key(part)),
            }
        }
        Self(out)
    }

    /// The path with a prefix prepended.
    pub fn under(&self, prefix: &FieldPath) -> Self {
        let mut segs = prefix.0.clone();
        segs.extend(self.0.iter().cloned());
        Self(segs)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(document)");
        }
        let mut first = true;
        for seg in &self.0 {
            match seg {
                Segment::Key(k) => {
                    let plain = !k.is_empty()
                        && k.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-_/".contains(c));
                    match (first, plain) {
                        (true, true) => write!(f, "{k}")?,
                        (false, true) => write!(f, ".{k}")?,
                        (_, false) => write!(f, "[{k:?}]")?,
                    }
                }
                Segment::Index(i) => write!(f, "[{i}]")?,
            }
            first = false;
        }
        Ok(())
    }
}

/// A parsed document: its value and where each node came from.
#[derive(Debug, Clone)]
pub struct Located {
    pub value: Value,
    pub origins: BTreeMap<FieldPath, Origin>,
}

impl Located {
    /// Where a path came from, falling back to the nearest ancestor that has an origin (a
    /// missing field is reported at the map that should contain it).
    pub fn origin(&self, path: &FieldPath) -> Option<&Origin> {
        let mut p = path.clone();
        loop {
            if let Some(o) = self.origins.get(&p) {
                return Some(o);
            }
            p = p.parent()?;
        }
    }

    /// Look up a value by path.
    pub fn get(&self, path: &FieldPath) -> Option<&Value> {
        let mut cur = &self.value;
        for seg in &path.0 {
            cur = match (seg, cur) {
                (Segment::Key(k), Value::Object(m)) => m.get(k)?,
                (Segment::Index(i), Value::Array(a)) => a.get(*i)?,
                _ => return None,
            };
        }
        Some(cur)
    }

    /// Remove a top-level key, returning its value and the origins below it (re-rooted).
    pub fn take_key(&mut self, key: &str) -> Option<Located> {
        let value = self.value.as_object_mut()?.remove(key)?;
        let prefix = FieldPath::root().key(key);
        let mut origins = BTreeMap::new();
        let moved: Vec<FieldPath> = self
            .origins
            .keys()
            .filter(|p| p.0.starts_with(&prefix.0))
            .cloned()
            .collect();
        for p in moved {
            if let Some(o) = self.origins.remove(&p) {
                origins.insert(FieldPath(p.0[1..].to_vec()), o);
            }
        }
        Some(Located { value, origins })
    }

    /// A document built in code (the embedded defaults), positioned at its file's start.
    pub fn synthetic(file: &str, value: Value) -> Self {
        let mut origins = BTreeMap::new();
        origins.insert(
            FieldPath::root(),
            Origin {
                file: file.to_string(),
                value: Pos { line: 1, column: 1 },
                key: None,
            },
        );
        Self { value, origins }
    }
}

/// A YAML syntax error, positioned.
#[derive(Debug, Clone)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

/// Parse one YAML document. An empty document is an empty map.
pub fn parse(file: &str, text: &str) -> Result<Located, SyntaxError> {
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    options.with_snippet = false;
    if text.trim().is_empty() {
        return Ok(Located::synthetic(file, Value::Object(Map::new())));
    }
    let root: Spanned<Node> =
        serde_saphyr::from_str_with_options(text, options).map_err(|e| SyntaxError {
            pos: e
                .location()
                .map(|l| Pos {
                    line: l.line(),
                    column: l.column(),
                })
                .unwrap_or_default(),
            message: first_line(&e.to_string()),
        })?;
    let mut origins = BTreeMap::new();
    let value = flatten(file, root, None, FieldPath::root(), &mut origins)?;
    Ok(Located { value, origins })
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).trim().to_string()
}

fn pos_of(loc: &serde_saphyr::Location) -> Pos {
    Pos {
        line: loc.line(),
        column: loc.column(),
    }
}

fn flatten(
    file: &str,
    node: Spanned<Node>,
    key: Option<Pos>,
    path: FieldPath,
    origins: &mut BTreeMap<FieldPath, Origin>,
) -> Result<Value, SyntaxError> {
    let here = pos_of(&node.referenced);
    origins.insert(
        path.clone(),
        Origin {
            file: file.to_string(),
            value: here,
            key,
        },
    );
    Ok(match node.value {
        Node::Null => Value::Null,
        Node::Bool(b) => Value::Bool(b),
        Node::Int(i) => Value::from(i),
        Node::UInt(u) => Value::from(u),
        Node::Float(x) => serde_json::Number::from_f64(x)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(x.to_string())),
        Node::Str(s) => Value::String(s),
        Node::Seq(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                out.push(flatten(file, item, None, path.index(i), origins)?);
            }
            Value::Array(out)
        }
        Node::Map(entries) => {
            let mut out = Map::new();
            for (k, v) in entries {
                let key_pos = pos_of(&k.referenced);
                let name = match k.value {
                    Node::Str(s) => s,
                    Node::Int(i) => i.to_string(),
                    Node::UInt(u) => u.to_string(),
                    Node::Bool(b) => b.to_string(),
                    Node::Float(x) => x.to_string(),
                    Node::Null | Node::Seq(_) | Node::Map(_) => {
                        return Err(SyntaxError {
                            pos: key_pos,
                            message: "map keys must be plain scalars (strings or numbers)"
                                .to_string(),
                        });
                    }
                };
                let child = path.key(name.clone());
                let value = flatten(file, v, Some(key_pos), child, origins)?;
                out.insert(name, value);
            }
            Value::Object(out)
        }
    })
}

/// The untyped YAML tree with a span on every node.
#[derive(Debug)]
enum Node {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(Spanned<Node>, Spanned<Node>)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::UInt(v))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Node, E> {
        Ok(Node::Str(v.to_string()))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Node, E> {
        Ok(Node::Str(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Node, E> {
        Ok(Node::Str(String::from_utf8_lossy(v).into_owned()))
    }
    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(k) = map.next_key::<Spanned<Node>>()? {
            let v = map.next_value::<Spanned<Node>>()?;
            entries.push((k, v));
        }
        Ok(Node::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_point_at_keys_and_values() {
        let doc = parse("f.yaml", "a: 1\nb:\n  c: [x, y]\n  d: no\n").expect("parses");
        let c = doc.origins.get(&FieldPath::parse("b.c")).expect("b.c");
        assert_eq!(c.key, Some(Pos { line: 3, column: 3 }));
        let y = doc
            .origins
            .get(&FieldPath::parse("b.c[1]"))
            .expect("b.c[1]");
        assert_eq!(y.value.line, 3);
        assert_eq!(doc.get(&FieldPath::parse("b.d")), Some(&Value::from("no")));
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let err = parse("f.yaml", "a: 1\na: 2\n").expect_err("duplicate");
        assert_eq!(err.pos.line, 2);
    }

    #[test]
    fn field_paths_round_trip_through_display() {
        let p = FieldPath::parse("istio.gateways[0].values");
        assert_eq!(p.to_string(), "istio.gateways[0].values");
        assert_eq!(
            FieldPath::from_pointer("/istio/gateways/0").to_string(),
            "istio.gateways[0]"
        );
    }
}
