//! What the sim knows of a kind's shape, in place of Kubernetes' OpenAPI schemas: which lists
//! merge by key (`x-kubernetes-list-type: map` and its keys), which are sets, which maps and
//! structs are atomic, and which maps are maps rather than structs — and the walks over
//! objects that server-side apply needs (field sets, comparison, merge, removal).
//!
//! The table covers the built-in fields paddock, its charts and kubectl touch, from
//! `k8s.io/api`'s markers. Custom kinds have no table: their lists are atomic (what a CRD
//! without `x-kubernetes-list-type` gets) and their objects structs with named fields (what a
//! structural schema gives); `metadata` is the same everywhere.

use serde_json::{Map, Value};

use super::fieldset::{Element, FieldSet};

/// A field of a list item's key, with the default Kubernetes fills in when it is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyField {
    pub name: &'static str,
    pub default: Option<&'static str>,
}

const fn key(name: &'static str) -> KeyField {
    KeyField {
        name,
        default: None,
    }
}

const NAME: &[KeyField] = &[key("name")];
const UID: &[KeyField] = &[key("uid")];
const TYPE: &[KeyField] = &[key("type")];
const IP: &[KeyField] = &[key("ip")];
const MOUNT_PATH: &[KeyField] = &[key("mountPath")];
const DEVICE_PATH: &[KeyField] = &[key("devicePath")];
const TCP: Option<&str> = Some("TCP");
const CONTAINER_PORT: &[KeyField] = &[
    key("containerPort"),
    KeyField {
        name: "protocol",
        default: TCP,
    },
];
const SERVICE_PORT: &[KeyField] = &[
    key("port"),
    KeyField {
        name: "protocol",
        default: TCP,
    },
];
const TOPOLOGY_SPREAD: &[KeyField] = &[key("topologyKey"), key("whenUnsatisfiable")];

/// How a list is owned and merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListType {
    /// Owned and replaced as a whole.
    Atomic,
    /// Scalars merged by value (`v:` elements).
    Set,
    /// Items merged by their key fields (`k:` elements), sorted by name.
    Map(&'static [KeyField]),
}

/// How an object is owned and merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapType {
    /// Named fields, each owned separately.
    Struct,
    /// Free keys (labels, data), each owned separately.
    Granular,
    /// Owned and replaced as a whole (label selectors, references).
    Atomic,
}

/// The shape of one kind.
#[derive(Debug, Clone, Copy)]
pub struct Schema<'a> {
    kind: &'a str,
    builtin: bool,
}

const CONTAINER_LISTS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];

impl<'a> Schema<'a> {
    pub fn new(kind: &'a str, builtin: bool) -> Self {
        Self { kind, builtin }
    }

    pub fn builtin(&self) -> bool {
        self.builtin
    }

    /// The list at `names` (field names from the root; list items add none).
    pub fn list_type(&self, names: &[&str]) -> ListType {
        match names {
            [.., "metadata", "finalizers"] => return ListType::Set,
            [.., "metadata", "ownerReferences"] => return ListType::Map(UID),
            _ if !self.builtin => return ListType::Atomic,
            _ => {}
        }
        let in_container = names.len() >= 2 && CONTAINER_LISTS.contains(&names[names.len() - 2]);
        match names {
            [.., "ports"] if in_container => ListType::Map(CONTAINER_PORT),
            [.., "env"] if in_container => ListType::Map(NAME),
            [.., "volumeMounts"] if in_container => ListType::Map(MOUNT_PATH),
            [.., "volumeDevices"] if in_container => ListType::Map(DEVICE_PATH),
            [
                ..,
                "spec",
                "containers" | "initContainers" | "ephemeralContainers",
            ] => ListType::Map(NAME),
            [
                ..,
                "spec",
                "volumes" | "imagePullSecrets" | "schedulingGates" | "resourceClaims",
            ] => ListType::Map(NAME),
            [.., "spec", "hostAliases"] => ListType::Map(IP),
            [.., "spec", "topologySpreadConstraints"] => ListType::Map(TOPOLOGY_SPREAD),
            ["spec", "ports"] if self.kind == "Service" => ListType::Map(SERVICE_PORT),
            ["spec", "podCIDRs"] if self.kind == "Node" => ListType::Set,
            ["webhooks"] if self.kind.ends_with("WebhookConfiguration") => ListType::Map(NAME),
            ["webhooks", "matchConditions"] => ListType::Map(NAME),
            ["secrets"] if self.kind == "ServiceAccount" => ListType::Map(NAME),
            ["status", "conditions"] => ListType::Map(TYPE),
            ["status", "addresses"] if self.kind == "Node" => ListType::Map(TYPE),
            ["status", "podIPs"] => ListType::Map(IP),
            _ => ListType::Atomic,
        }
    }

    /// The object at `names` (for a list item: the list's names).
    pub fn map_type(&self, names: &[&str]) -> MapType {
        match names {
            [.., "metadata", "labels" | "annotations"] => MapType::Granular,
            _ if !self.builtin => MapType::Struct,
            ["data" | "binaryData" | "stringData"] => MapType::Granular,
            [.., "resources", "limits" | "requests"] => MapType::Granular,
            ["status", "capacity" | "allocatable"] => MapType::Granular,
            [
                ..,
                "selector" | "namespaceSelector" | "objectSelector" | "labelSelector"
                | "nodeSelector" | "roleRef" | "secretKeyRef" | "configMapKeyRef" | "fieldRef"
                | "resourceFieldRef" | "imagePullSecrets",
            ] => MapType::Atomic,
            _ => MapType::Struct,
        }
    }

    /// The element that names a list item.
    pub fn item_element(list: ListType, item: &Value) -> Element {
        match list {
            ListType::Map(keys) => {
                Element::key(
                    keys.iter()
                        .filter_map(|k| match (item.get(k.name), k.default) {
                            (Some(v), _) => Some((k.name, v.clone())),
                            (None, Some(d)) => Some((k.name, Value::String(d.into()))),
                            (None, None) => None,
                        }),
                )
            }
            ListType::Set | ListType::Atomic => Element::Value(item.to_string()),
        }
    }

    /// Every field path an object sets (structured-merge-diff's `ToFieldSet`): leaves, every
    /// item of a merged list, and every key of a map; a struct that has fields below it is not
    /// a member itself.
    pub fn field_set(&self, v: &Value) -> FieldSet {
        let mut out = FieldSet::default();
        self.collect(&mut Vec::new(), &mut Vec::new(), v, &mut out);
        out
    }

    /// Collect the members below `v`; true when `v` is a leaf (a member by itself).
    fn collect<'v>(
        &self,
        names: &mut Vec<&'v str>,
        path: &mut Vec<Element>,
        v: &'v Value,
        out: &mut FieldSet,
    ) -> bool {
        match v {
            Value::Object(m) if m.is_empty() => true,
            Value::Object(m) => {
                let t = self.map_type(names);
                if t == MapType::Atomic {
                    return true;
                }
                for (k, c) in m {
                    names.push(k);
                    path.push(Element::Field(k.clone()));
                    if self.collect(names, path, c, out) || t == MapType::Granular {
                        out.insert(path);
                    }
                    path.pop();
                    names.pop();
                }
                false
            }
            Value::Array(items) => {
                let list = self.list_type(names);
                if list == ListType::Atomic {
                    return true;
                }
                for item in items {
                    path.push(Self::item_element(list, item));
                    if list != ListType::Set {
                        self.collect(names, path, item, out);
                    }
                    out.insert(path);
                    path.pop();
                }
                false
            }
            _ => true,
        }
    }

    /// What changed from `old` to `new` (the object absent on either side is `{}`).
    pub fn compare(&self, old: &Value, new: &Value) -> Comparison {
        let mut c = Comparison::default();
        self.diff(
            &mut Vec::new(),
            &mut Vec::new(),
            Some(old),
            Some(new),
            false,
            &mut c,
        );
        c
    }

    fn diff<'v>(
        &self,
        names: &mut Vec<&'v str>,
        path: &mut Vec<Element>,
        old: Option<&'v Value>,
        new: Option<&'v Value>,
        item: bool,
        c: &mut Comparison,
    ) {
        let shape = match (Shape::of(old), Shape::of(new)) {
            (Some(a), Some(b)) if a != b => Shape::Leaf,
            (Some(a), _) | (None, Some(a)) => a,
            (None, None) => Shape::Leaf,
        };
        let empty = is_empty(old) && is_empty(new);
        match shape {
            Shape::Object if !empty && self.map_type(names) != MapType::Atomic => {
                let (om, nm) = (as_map(old), as_map(new));
                for (k, v) in om.into_iter().flatten() {
                    names.push(k);
                    path.push(Element::Field(k.clone()));
                    self.diff(names, path, Some(v), nm.and_then(|m| m.get(k)), false, c);
                    path.pop();
                    names.pop();
                }
                for (k, v) in nm.into_iter().flatten() {
                    if om.is_some_and(|m| m.contains_key(k)) {
                        continue;
                    }
                    names.push(k);
                    path.push(Element::Field(k.clone()));
                    self.diff(names, path, None, Some(v), false, c);
                    path.pop();
                    names.pop();
                }
                // A new struct is not recorded for itself (Go's zero values mean Kubernetes
                // finds most structs already there); new list items and maps are.
                match (old, new) {
                    (None, _) if item || self.map_type(names) == MapType::Granular => {
                        c.added.insert(path)
                    }
                    (_, None) => c.removed.insert(path),
                    _ => {}
                }
            }
            Shape::Array if !empty && self.list_type(names) != ListType::Atomic => {
                let list = self.list_type(names);
                let index = |v: Option<&'v Value>| -> Vec<(Element, &'v Value)> {
                    let mut seen: Vec<(Element, &'v Value)> = Vec::new();
                    for item in v.and_then(Value::as_array).into_iter().flatten() {
                        let e = Self::item_element(list, item);
                        if !seen.iter().any(|(s, _)| *s == e) {
                            seen.push((e, item));
                        }
                    }
                    seen
                };
                let (oi, ni) = (index(old), index(new));
                let find = |items: &[(Element, &'v Value)], e: &Element| {
                    items.iter().find(|(k, _)| k == e).map(|(_, v)| *v)
                };
                for (e, v) in &oi {
                    path.push(e.clone());
                    self.diff(names, path, Some(v), find(&ni, e), true, c);
                    path.pop();
                }
                for (e, v) in &ni {
                    if find(&oi, e).is_none() {
                        path.push(e.clone());
                        self.diff(names, path, None, Some(v), true, c);
                        path.pop();
                    }
                }
            }
            _ => match (old, new) {
                (None, Some(_)) => c.added.insert(path),
                (Some(_), None) => c.removed.insert(path),
                (Some(a), Some(b)) if a != b => c.modified.insert(path),
                _ => {}
            },
        }
    }

    /// The object an apply produces: `config` set over `live` — maps and structs merged key by
    /// key, keyed lists item by item, sets by value; atomic values and everything else
    /// replaced. A null in the configuration removes the field.
    pub fn merge(&self, live: &Value, config: &Value) -> Value {
        self.merge_at(&mut Vec::new(), Some(live), config)
            .unwrap_or(Value::Object(Map::new()))
    }

    fn merge_at<'v>(
        &self,
        names: &mut Vec<&'v str>,
        live: Option<&Value>,
        config: &'v Value,
    ) -> Option<Value> {
        match config {
            Value::Null => None,
            Value::Object(c) if self.map_type(names) != MapType::Atomic => {
                let mut out = match live {
                    Some(Value::Object(l)) => l.clone(),
                    _ => Map::new(),
                };
                for (k, cv) in c {
                    names.push(k);
                    match self.merge_at(names, out.get(k), cv) {
                        Some(v) => {
                            out.insert(k.clone(), v);
                        }
                        None => {
                            out.remove(k);
                        }
                    }
                    names.pop();
                }
                Some(Value::Object(out))
            }
            Value::Array(c) => match (self.list_type(names), live) {
                (ListType::Atomic, _) | (_, None | Some(Value::Null)) => Some(Value::Array(
                    self.merge_items(names, ListType::Atomic, &[], c),
                )),
                (list, Some(Value::Array(l))) => {
                    Some(Value::Array(self.merge_items(names, list, l, c)))
                }
                _ => Some(config.clone()),
            },
            _ => Some(config.clone()),
        }
    }

    /// Merge the items of a keyed list or set. Items only the live list has stay where they
    /// are; the configuration's items follow the configuration's order, the live position of
    /// an item both have being where the configuration's run of items is placed.
    fn merge_items<'v>(
        &self,
        names: &mut Vec<&'v str>,
        list: ListType,
        live: &[Value],
        config: &'v [Value],
    ) -> Vec<Value> {
        if list == ListType::Atomic {
            return config
                .iter()
                .map(|v| {
                    if v.is_object() {
                        self.merge_at(names, None, v).unwrap_or(Value::Null)
                    } else {
                        v.clone()
                    }
                })
                .collect();
        }
        let lk: Vec<Element> = live.iter().map(|v| Self::item_element(list, v)).collect();
        let ck: Vec<Element> = config.iter().map(|v| Self::item_element(list, v)).collect();
        let live_item = |e: &Element| lk.iter().position(|k| k == e).map(|i| &live[i]);
        let in_config = |e: &Element| ck.contains(e);
        // The items both lists have, in the configuration's order: the points the merge
        // lines the two lists up at.
        let mut shared = ck.iter().filter(|e| lk.contains(e)).peekable();
        let mut done: Vec<&Element> = Vec::new();
        let mut out = Vec::with_capacity(live.len().max(config.len()));
        let (mut li, mut ci) = (0, 0);
        while li < lk.len() || ci < ck.len() {
            if li < lk.len() {
                let e = &lk[li];
                if !in_config(e) {
                    out.push(live[li].clone());
                    li += 1;
                    continue;
                }
                if done.contains(&e) || shared.peek().is_some_and(|next| *next != e) {
                    li += 1;
                    continue;
                }
            }
            if ci >= ck.len() {
                li += 1;
                continue;
            }
            let e = &ck[ci];
            let merged = if list == ListType::Set {
                Some(config[ci].clone())
            } else {
                self.merge_at(names, live_item(e), &config[ci])
            };
            out.extend(merged);
            done.push(e);
            if shared.peek() == Some(&e) {
                shared.next();
            }
            ci += 1;
        }
        out
    }

    /// `v` without the paths of `set` (a member path goes with everything below it).
    pub fn remove(&self, v: &Value, set: &FieldSet) -> Value {
        self.remove_at(&mut Vec::new(), v, set)
    }

    fn remove_at<'v>(&self, names: &mut Vec<&'v str>, v: &'v Value, set: &FieldSet) -> Value {
        match v {
            Value::Object(m) => {
                let mut out = Map::new();
                for (k, c) in m {
                    let e = Element::Field(k.clone());
                    if set.has_member(&e) {
                        continue;
                    }
                    let kept = match set.child(&e) {
                        Some(sub) => {
                            names.push(k);
                            let r = self.remove_at(names, c, sub);
                            names.pop();
                            r
                        }
                        None => c.clone(),
                    };
                    out.insert(k.clone(), kept);
                }
                Value::Object(out)
            }
            Value::Array(items) => {
                let list = self.list_type(names);
                if list == ListType::Atomic {
                    return v.clone();
                }
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    let e = Self::item_element(list, item);
                    if set.has_member(&e) {
                        continue;
                    }
                    out.push(match set.child(&e) {
                        Some(sub) => self.remove_at(names, item, sub),
                        None => item.clone(),
                    });
                }
                Value::Array(out)
            }
            _ => v.clone(),
        }
    }

    /// `set` with every named field on its paths a member too (structured-merge-diff's
    /// `EnsureNamedFieldsAreMembers`), so that removing what only one manager owned removes
    /// the structs that held it, but not a map or list some of whose items others own.
    pub fn with_named_fields(&self, set: &FieldSet) -> FieldSet {
        self.named_at(&mut Vec::new(), set)
    }

    fn named_at<'s>(&self, names: &mut Vec<&'s str>, set: &'s FieldSet) -> FieldSet {
        let mut out = FieldSet::default();
        for m in set.members() {
            out.add_member(m.clone());
        }
        let is_struct = self.map_type(names) == MapType::Struct;
        for (e, child) in set.children() {
            let sub = match e {
                Element::Field(name) => {
                    if is_struct {
                        out.add_member(e.clone());
                    }
                    names.push(name);
                    let s = self.named_at(names, child);
                    names.pop();
                    s
                }
                _ => self.named_at(names, child),
            };
            out.set_child(e.clone(), sub);
        }
        out
    }
}

fn as_map(v: Option<&Value>) -> Option<&Map<String, Value>> {
    v.and_then(Value::as_object)
}

fn is_empty(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::Object(m)) => m.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        _ => false,
    }
}

/// What a value is, for walking two of them side by side (null counts as absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Object,
    Array,
    Leaf,
}

impl Shape {
    fn of(v: Option<&Value>) -> Option<Shape> {
        match v? {
            Value::Null => None,
            Value::Object(_) => Some(Shape::Object),
            Value::Array(_) => Some(Shape::Array),
            _ => Some(Shape::Leaf),
        }
    }
}

/// The paths a write added, changed and removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Comparison {
    pub added: FieldSet,
    pub modified: FieldSet,
    pub removed: FieldSet,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Schema<'static> {
        Schema::new("Deployment", true)
    }

    #[test]
    fn field_sets_hold_leaves_map_keys_and_list_items() {
        let d = json!({
            "metadata": {"labels": {"app": "a"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "a"}},
                "template": {"spec": {
                    "containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}],
                        "args": ["x", "y"], "resources": {}}],
                    "tolerations": [{"key": "k"}]}}},
        });
        assert_eq!(
            deployment().field_set(&d).to_fields_v1(),
            json!({
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:replicas": {},
                    "f:selector": {},
                    "f:template": {"f:spec": {
                        "f:containers": {"k:{\"name\":\"c\"}": {
                            ".": {}, "f:args": {}, "f:image": {}, "f:name": {},
                            "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}},
                            "f:resources": {},
                        }},
                        "f:tolerations": {},
                    }},
                },
            })
        );
    }

    #[test]
    fn custom_kinds_have_atomic_lists_and_struct_objects() {
        let s = Schema::new("Gateway", false);
        let g = json!({"metadata": {"finalizers": ["a"]}, "spec": {"servers": [{"port": {"number": 80}}], "selector": {"istio": "ingress"}}});
        assert_eq!(
            s.field_set(&g).to_fields_v1(),
            json!({
                "f:metadata": {"f:finalizers": {"v:\"a\"": {}}},
                "f:spec": {"f:selector": {"f:istio": {}}, "f:servers": {}},
            })
        );
    }

    #[test]
    fn comparison_sees_added_changed_and_removed_paths() {
        let old = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "data": {"k": "v"}});
        let new = json!({"metadata": {"labels": {"a": "9", "c": "3"}}, "data": {"k": "v"}, "binaryData": {"x": "eA=="}});
        let c = Schema::new("ConfigMap", true).compare(&old, &new);
        let f = |p: &[&str]| -> Vec<Element> {
            p.iter().map(|s| Element::Field(s.to_string())).collect()
        };
        assert_eq!(c.modified.paths(), vec![f(&["metadata", "labels", "a"])]);
        assert_eq!(c.removed.paths(), vec![f(&["metadata", "labels", "b"])]);
        assert_eq!(
            c.added.paths(),
            vec![
                f(&["binaryData"]),
                f(&["binaryData", "x"]),
                f(&["metadata", "labels", "c"])
            ]
        );
    }

    #[test]
    fn keyed_lists_merge_by_key_and_atomic_lists_are_replaced() {
        let live = json!({"spec": {"template": {"spec": {
            "containers": [{"name": "a", "image": "a:1"}, {"name": "sidecar", "image": "s:1"}],
            "tolerations": [{"key": "x"}, {"key": "y"}]}}}});
        let config = json!({"spec": {"template": {"spec": {
            "containers": [{"name": "a", "image": "a:2"}, {"name": "b", "image": "b:1"}],
            "tolerations": [{"key": "z"}]}}}});
        let merged = deployment().merge(&live, &config);
        assert_eq!(
            merged["spec"]["template"]["spec"],
            json!({
                "containers": [{"name": "a", "image": "a:2"}, {"name": "sidecar", "image": "s:1"}, {"name": "b", "image": "b:1"}],
                "tolerations": [{"key": "z"}],
            })
        );
    }

    #[test]
    fn merged_items_follow_the_configurations_order_around_live_only_items() {
        let s = deployment();
        let names = |v: &Value| -> Vec<String> {
            v["spec"]["template"]["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| c["name"].as_str().unwrap_or_default().to_string())
                .collect()
        };
        let list = |ns: &[&str]| json!({"spec": {"template": {"spec": {"containers": ns.iter().map(|n| json!({"name": n})).collect::<Vec<_>>()}}}});
        assert_eq!(
            names(&s.merge(&list(&["a", "b"]), &list(&["new", "a"]))),
            ["new", "a", "b"]
        );
        assert_eq!(
            names(&s.merge(&list(&["a", "b", "c"]), &list(&["c", "a"]))),
            ["b", "c", "a"]
        );
        assert_eq!(
            names(&s.merge(&list(&["a", "x", "b"]), &list(&["a", "b"]))),
            ["a", "x", "b"]
        );
    }

    #[test]
    fn removal_takes_whole_subtrees_and_single_items() {
        let s = deployment();
        let v = json!({"metadata": {"labels": {"a": "1", "b": "2"}},
            "spec": {"template": {"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}}});
        let mut set = FieldSet::default();
        set.insert(&[
            Element::Field("metadata".into()),
            Element::Field("labels".into()),
            Element::Field("a".into()),
        ]);
        set.insert(&[
            Element::Field("spec".into()),
            Element::Field("template".into()),
            Element::Field("spec".into()),
            Element::Field("containers".into()),
            Element::key([("name", json!("b"))]),
        ]);
        assert_eq!(
            s.remove(&v, &set),
            json!({"metadata": {"labels": {"b": "2"}},
                "spec": {"template": {"spec": {"containers": [{"name": "a"}]}}}})
        );
    }

    #[test]
    fn named_fields_become_members_but_map_keys_and_items_do_not_add_parents() {
        let s = deployment();
        let v = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        let named = s.with_named_fields(&s.field_set(&v));
        let f = |n: &str| Element::Field(n.into());
        assert!(named.contains(&[f("metadata")]));
        assert!(named.contains(&[f("metadata"), f("labels")]));
        assert!(named.contains(&[f("spec"), f("template"), f("spec"), f("containers")]));
        assert!(named.contains(&[
            f("spec"),
            f("template"),
            f("spec"),
            f("containers"),
            Element::key([("name", json!("c"))]),
            f("image")
        ]));
    }
}
