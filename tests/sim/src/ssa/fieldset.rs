//! Sets of field paths, the unit of ownership in server-side apply, and their `FieldsV1`
//! encoding in `metadata.managedFields` (`f:name`, `k:{"name":"app"}`, `v:"x"`, `i:0`, with
//! `.` marking a path that is itself a member when it also has members below it).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

/// One step of a field path. The derived order (fields, keys, values, indexes) is the order
/// Kubernetes writes `FieldsV1` in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Element {
    /// A field of an object, or a key of a map.
    Field(String),
    /// An item of a list with merge keys: the key fields as compact JSON, sorted by name.
    Key(String),
    /// An item of a set (a list of scalars merged by value): the value as JSON.
    Value(String),
    /// An item of a list by position (not produced by the sim's schema, but decoded).
    Index(usize),
}

impl Element {
    /// The `FieldsV1` spelling: `f:name`, `k:{...}`, `v:...`, `i:N`.
    pub fn encode(&self) -> String {
        match self {
            Element::Field(f) => format!("f:{f}"),
            Element::Key(k) => format!("k:{k}"),
            Element::Value(v) => format!("v:{v}"),
            Element::Index(i) => format!("i:{i}"),
        }
    }

    /// Parse a `FieldsV1` key; keys and values are re-encoded canonically.
    pub fn decode(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid FieldsV1 path element {s:?}");
        let (prefix, rest) = s.split_once(':').ok_or_else(bad)?;
        match prefix {
            "f" => Ok(Element::Field(rest.to_string())),
            "k" => {
                let v: Value = serde_json::from_str(rest).map_err(|_| bad())?;
                let m = v.as_object().ok_or_else(bad)?;
                Ok(Element::key(m.iter().map(|(k, v)| (k.as_str(), v.clone()))))
            }
            "v" => {
                let v: Value = serde_json::from_str(rest).map_err(|_| bad())?;
                Ok(Element::Value(v.to_string()))
            }
            "i" => rest.parse().map(Element::Index).map_err(|_| bad()),
            _ => Err(bad()),
        }
    }

    /// A list item's key from its key fields, in any order.
    pub fn key<'a>(fields: impl IntoIterator<Item = (&'a str, Value)>) -> Self {
        let mut fields: Vec<(&str, Value)> = fields.into_iter().collect();
        fields.sort_by(|a, b| a.0.cmp(b.0));
        let m: Map<String, Value> = fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        Element::Key(Value::Object(m).to_string())
    }
}

/// How Kubernetes prints a path element in conflict messages: `.name`,
/// `[name="app",protocol="TCP"]`, `[="x"]`, `[0]`.
impl fmt::Display for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Element::Field(name) => write!(f, ".{name}"),
            Element::Key(k) => {
                let fields: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
                let parts: Vec<String> = fields
                    .iter()
                    .map(|(name, v)| format!("{name}={v}"))
                    .collect();
                write!(f, "[{}]", parts.join(","))
            }
            Element::Value(v) => write!(f, "[={v}]"),
            Element::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// A path as Kubernetes prints it: `.metadata.labels.team`.
pub fn display_path(path: &[Element]) -> String {
    path.iter().map(Element::to_string).collect()
}

/// A set of paths, as a tree: `members` are the paths that end here, `children` the subtrees
/// of paths that go on. Children are never empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    members: BTreeSet<Element>,
    children: BTreeMap<Element, FieldSet>,
}

impl FieldSet {
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.is_empty()
    }

    /// Add a path; the empty path (the object itself) is never a member.
    pub fn insert(&mut self, path: &[Element]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    pub fn contains(&self, path: &[Element]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.contains(rest)),
        }
    }

    pub(crate) fn has_member(&self, e: &Element) -> bool {
        self.members.contains(e)
    }

    pub(crate) fn child(&self, e: &Element) -> Option<&FieldSet> {
        self.children.get(e)
    }

    pub(crate) fn add_member(&mut self, e: Element) {
        self.members.insert(e);
    }

    pub(crate) fn remove_member(&mut self, e: &Element) {
        self.members.remove(e);
    }

    /// Set the subtree under `e` (nothing when it is empty).
    pub(crate) fn set_child(&mut self, e: Element, child: FieldSet) {
        if child.is_empty() {
            self.children.remove(&e);
        } else {
            self.children.insert(e, child);
        }
    }

    pub(crate) fn members(&self) -> impl Iterator<Item = &Element> {
        self.members.iter()
    }

    pub(crate) fn children(&self) -> impl Iterator<Item = (&Element, &FieldSet)> {
        self.children.iter()
    }

    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.members.extend(other.members.iter().cloned());
        for (e, c) in &other.children {
            let merged = match out.children.get(e) {
                Some(mine) => mine.union(c),
                None => c.clone(),
            };
            out.children.insert(e.clone(), merged);
        }
        out
    }

    /// The paths of `self` that are not in `other`. Not recursive: a member of `other` does not
    /// take away the paths of `self` below it (as structured-merge-diff's `Difference`).
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            members: self.members.difference(&other.members).cloned().collect(),
            children: BTreeMap::new(),
        };
        for (e, c) in &self.children {
            let rest = match other.children.get(e) {
                Some(o) => c.difference(o),
                None => c.clone(),
            };
            out.set_child(e.clone(), rest);
        }
        out
    }

    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            members: self.members.intersection(&other.members).cloned().collect(),
            children: BTreeMap::new(),
        };
        for (e, c) in &self.children {
            if let Some(o) = other.children.get(e) {
                out.set_child(e.clone(), c.intersection(o));
            }
        }
        out
    }

    /// Every member path, in `FieldsV1` order.
    pub fn paths(&self) -> Vec<Vec<Element>> {
        let mut out = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Vec<Element>, out: &mut Vec<Vec<Element>>) {
        let mut keys: BTreeSet<&Element> = self.members.iter().collect();
        keys.extend(self.children.keys());
        for e in keys {
            prefix.push(e.clone());
            if self.members.contains(e) {
                out.push(prefix.clone());
            }
            if let Some(c) = self.children.get(e) {
                c.collect_paths(prefix, out);
            }
            prefix.pop();
        }
    }

    /// The `fieldsV1` object of a managedFields entry.
    pub fn to_fields_v1(&self) -> Value {
        Value::Object(self.emit(false))
    }

    fn emit(&self, include_self: bool) -> Map<String, Value> {
        let mut m = Map::new();
        if include_self && !self.is_empty() {
            m.insert(".".into(), Value::Object(Map::new()));
        }
        let mut keys: BTreeSet<&Element> = self.members.iter().collect();
        keys.extend(self.children.keys());
        for e in keys {
            let inner = match self.children.get(e) {
                Some(c) => c.emit(self.members.contains(e)),
                None => Map::new(),
            };
            m.insert(e.encode(), Value::Object(inner));
        }
        m
    }

    /// Read a `fieldsV1` object.
    pub fn from_fields_v1(v: &Value) -> Result<FieldSet, String> {
        let m = v
            .as_object()
            .ok_or("fieldsV1 is not a JSON object".to_string())?;
        let mut out = FieldSet::default();
        for (k, inner) in m {
            if k == "." {
                continue;
            }
            let e = Element::decode(k)?;
            let inner_map = inner
                .as_object()
                .ok_or_else(|| format!("fieldsV1 entry {k:?} is not an object"))?;
            if inner_map.is_empty() || inner_map.contains_key(".") {
                out.members.insert(e.clone());
            }
            out.set_child(e, FieldSet::from_fields_v1(inner)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(s: &str) -> Element {
        Element::Field(s.into())
    }

    #[test]
    fn members_with_children_get_a_dot_and_leaves_an_empty_object() {
        let mut s = FieldSet::default();
        s.insert(&[f("metadata"), f("labels")]);
        s.insert(&[f("metadata"), f("labels"), f("app")]);
        s.insert(&[f("data"), f("k")]);
        let name = Element::key([("name", json!("nginx"))]);
        s.insert(&[f("spec"), f("containers"), name.clone()]);
        s.insert(&[f("spec"), f("containers"), name, f("image")]);
        s.insert(&[
            f("metadata"),
            f("finalizers"),
            Element::Value(json!("x").to_string()),
        ]);
        assert_eq!(
            s.to_fields_v1(),
            json!({
                "f:data": {"f:k": {}},
                "f:metadata": {
                    "f:finalizers": {"v:\"x\"": {}},
                    "f:labels": {".": {}, "f:app": {}},
                },
                "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}}}},
            })
        );
        // Kubernetes writes fields before keys before values, each sorted.
        let text = s.to_fields_v1().to_string();
        assert!(
            text.find("f:data") < text.find("f:metadata")
                && text.find("f:metadata") < text.find("f:spec"),
            "{text}"
        );
    }

    #[test]
    fn fields_v1_round_trips_and_canonicalises_keys() {
        let v = json!({
            "f:spec": {"f:ports": {"k:{\"protocol\":\"TCP\",\"containerPort\":80}": {".": {}, "f:name": {}}}},
            "f:metadata": {"f:labels": {"f:a": {}}},
        });
        let s = FieldSet::from_fields_v1(&v).expect("decodes");
        let key = Element::key([("containerPort", json!(80)), ("protocol", json!("TCP"))]);
        assert!(s.contains(&[f("spec"), f("ports"), key.clone()]));
        assert!(s.contains(&[f("spec"), f("ports"), key.clone(), f("name")]));
        assert!(!s.contains(&[f("metadata"), f("labels")]));
        assert_eq!(
            key.encode(),
            "k:{\"containerPort\":80,\"protocol\":\"TCP\"}",
            "key fields sorted by name"
        );
        assert_eq!(FieldSet::from_fields_v1(&s.to_fields_v1()), Ok(s));
        assert!(FieldSet::from_fields_v1(&json!({"x:nope": {}})).is_err());
    }

    #[test]
    fn set_algebra_is_per_path() {
        let mut a = FieldSet::default();
        a.insert(&[f("a"), f("b")]);
        a.insert(&[f("a"), f("c")]);
        let mut b = FieldSet::default();
        b.insert(&[f("a"), f("c")]);
        b.insert(&[f("a")]);
        let d = a.difference(&b);
        assert_eq!(d.paths(), vec![vec![f("a"), f("b")]]);
        assert_eq!(a.intersection(&b).paths(), vec![vec![f("a"), f("c")]]);
        assert_eq!(a.union(&b).paths().len(), 3);
        assert!(a.difference(&a).is_empty());
    }

    #[test]
    fn paths_print_as_kubernetes_prints_them() {
        let path = [
            f("spec"),
            f("template"),
            f("spec"),
            f("containers"),
            Element::key([("name", json!("app"))]),
            f("ports"),
            Element::key([("containerPort", json!(80)), ("protocol", json!("TCP"))]),
        ];
        assert_eq!(
            display_path(&path),
            ".spec.template.spec.containers[name=\"app\"].ports[containerPort=80,protocol=\"TCP\"]"
        );
        assert_eq!(
            display_path(&[
                f("metadata"),
                f("finalizers"),
                Element::Value("\"x\"".into())
            ]),
            ".metadata.finalizers[=\"x\"]"
        );
    }
}
