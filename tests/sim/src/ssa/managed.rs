//! `metadata.managedFields`: who owns which fields, and how an apply or an update moves that
//! ownership (structured-merge-diff's `Updater` over the sim's [`Schema`]). Pure functions of
//! the objects involved; the store is written by the caller.

use serde_json::{Map, Value, json};

use super::fieldset::{Element, FieldSet, display_path};
use super::schema::Schema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// Who a managedFields entry belongs to. Appliers are one entry whatever API version they
/// use; updaters one per API version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub manager: String,
    pub operation: Operation,
    pub api_version: String,
    pub subresource: String,
}

impl Owner {
    pub fn new(manager: &str, operation: Operation, api_version: &str, sub: Option<&str>) -> Self {
        Self {
            manager: manager.to_string(),
            operation,
            api_version: api_version.to_string(),
            subresource: sub.unwrap_or_default().to_string(),
        }
    }

    fn same(&self, other: &Owner) -> bool {
        self.manager == other.manager
            && self.operation == other.operation
            && self.subresource == other.subresource
            && (self.operation == Operation::Apply || self.api_version == other.api_version)
    }

    /// How the API server names a manager in a conflict: `"helm"`, `"kubectl-edit" using
    /// apps/v1`, `"k" with subresource "status"`.
    pub fn describe(&self) -> String {
        let mut s = json!(self.manager).to_string();
        if !self.subresource.is_empty() {
            s.push_str(&format!(" with subresource {}", json!(self.subresource)));
        }
        if self.operation == Operation::Update {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }
}

/// One managedFields entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub owner: Owner,
    pub time: Option<String>,
    pub fields: FieldSet,
}

impl Entry {
    fn to_json(&self) -> Value {
        let mut m = Map::new();
        if !self.owner.manager.is_empty() {
            m.insert("manager".into(), json!(self.owner.manager));
        }
        m.insert("operation".into(), json!(self.owner.operation.as_str()));
        m.insert("apiVersion".into(), json!(self.owner.api_version));
        if let Some(t) = &self.time {
            m.insert("time".into(), json!(t));
        }
        m.insert("fieldsType".into(), json!("FieldsV1"));
        m.insert("fieldsV1".into(), self.fields.to_fields_v1());
        if !self.owner.subresource.is_empty() {
            m.insert("subresource".into(), json!(self.owner.subresource));
        }
        Value::Object(m)
    }

    fn from_json(v: &Value) -> Result<Entry, String> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default();
        let operation = match s("operation") {
            "Apply" => Operation::Apply,
            "Update" => Operation::Update,
            other => return Err(format!("unknown managedFields operation {other:?}")),
        };
        if s("fieldsType") != "FieldsV1" {
            return Err(format!("unknown fieldsType {:?}", s("fieldsType")));
        }
        let fields = match v.get("fieldsV1") {
            Some(f) => FieldSet::from_fields_v1(f)?,
            None => FieldSet::default(),
        };
        Ok(Entry {
            owner: Owner {
                manager: s("manager").to_string(),
                operation,
                api_version: s("apiVersion").to_string(),
                subresource: s("subresource").to_string(),
            },
            time: v.get("time").and_then(Value::as_str).map(str::to_string),
            fields,
        })
    }
}

/// What an object's `metadata.managedFields` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// No managedFields at all (or unreadable ones).
    Nothing,
    /// `[]` or `[{}]`: a writer asking to forget every owner.
    Reset,
    Entries(Vec<Entry>),
}

/// Read an object's managedFields.
pub fn recorded(obj: &Value) -> Recorded {
    let Some(list) = obj.pointer("/metadata/managedFields") else {
        return Recorded::Nothing;
    };
    match list.as_array().map(Vec::as_slice) {
        Some([]) => return Recorded::Reset,
        Some([only]) if only.as_object().is_some_and(Map::is_empty) => return Recorded::Reset,
        _ => {}
    }
    let entries: Result<Vec<Entry>, String> = list
        .as_array()
        .into_iter()
        .flatten()
        .map(Entry::from_json)
        .collect();
    match entries {
        Ok(e) if !e.is_empty() => Recorded::Entries(e),
        _ => Recorded::Nothing,
    }
}

/// The owners a write starts from: those the request carries if it carries any (a client that
/// read the object and sends it back unchanged keeps them), else the stored object's.
pub fn owners_for_update(live: Option<&Value>, new: &Value) -> Vec<Entry> {
    match recorded(new) {
        Recorded::Reset => Vec::new(),
        Recorded::Entries(e) => e,
        Recorded::Nothing => match live.map(recorded) {
            Some(Recorded::Entries(e)) => e,
            _ => Vec::new(),
        },
    }
}

/// managedFields as Kubernetes writes them: appliers first, then by time, manager, version.
pub fn encode(entries: &[Entry]) -> Value {
    let mut sorted: Vec<&Entry> = entries.iter().filter(|e| !e.fields.is_empty()).collect();
    sorted.sort_by(|a, b| {
        (
            a.owner.operation,
            &a.time,
            &a.owner.manager,
            &a.owner.api_version,
        )
            .cmp(&(
                b.owner.operation,
                &b.time,
                &b.owner.manager,
                &b.owner.api_version,
            ))
            .then(a.owner.subresource.cmp(&b.owner.subresource))
    });
    Value::Array(sorted.into_iter().map(Entry::to_json).collect())
}

/// A field another manager owns that an apply would change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub owner: Owner,
    pub path: Vec<Element>,
}

impl Conflict {
    pub fn field(&self) -> String {
        display_path(&self.path)
    }
}

/// An update (create, replace, merge/strategic/JSON patch) by `who` from `old` to `new`:
/// every owner of a changed or removed field loses it, and `who` owns what it changed.
pub fn update(
    schema: &Schema,
    old: &Value,
    new: &Value,
    mut entries: Vec<Entry>,
    who: &Owner,
    now: &str,
) -> Vec<Entry> {
    let c = schema.compare(old, new);
    let touched = c.modified.union(&c.added);
    for e in &mut entries {
        e.fields = e.fields.difference(&touched).difference(&c.removed);
    }
    if !touched.is_empty() {
        match entries.iter_mut().find(|e| e.owner.same(who)) {
            Some(e) => {
                e.fields = e.fields.union(&touched);
                e.time = Some(now.to_string());
            }
            None => entries.push(Entry {
                owner: who.clone(),
                time: Some(now.to_string()),
                fields: touched,
            }),
        }
    }
    entries.retain(|e| !e.fields.is_empty());
    entries
}

/// The outcome of an apply: the new object and its owners.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub object: Value,
    pub entries: Vec<Entry>,
}

/// Who applies, and how.
#[derive(Debug, Clone, Copy)]
pub struct Applier<'a> {
    pub who: &'a Owner,
    /// Take fields from their owners instead of failing.
    pub force: bool,
    /// Fields that change hands without `force` (kubectl's last-applied configuration,
    /// which `kubectl apply --server-side` may take over).
    pub allowed: &'a FieldSet,
    pub now: &'a str,
}

/// An apply of `config` over `live` (both without the fields the server manages).
///
/// The object gets the configuration's values; what the applier applied last time and no
/// longer does is removed unless another manager owns it; the applier then owns exactly what
/// the configuration sets. Changing a field another manager owns is a conflict, unless
/// forced (the field changes hands) or allowed.
pub fn apply(
    schema: &Schema,
    live: &Value,
    config: &Value,
    mut entries: Vec<Entry>,
    by: &Applier,
) -> Result<Applied, Vec<Conflict>> {
    let Applier {
        who,
        force,
        allowed,
        now,
    } = *by;
    let merged = schema.merge(live, config);
    let applied = schema.field_set(config);
    let last = match entries.iter_mut().find(|e| e.owner.same(who)) {
        Some(e) => std::mem::replace(&mut e.fields, applied),
        None => {
            entries.push(Entry {
                owner: who.clone(),
                time: None,
                fields: applied,
            });
            FieldSet::default()
        }
    };
    let object = if last.is_empty() {
        merged
    } else {
        let owned = entries
            .iter()
            .fold(FieldSet::default(), |acc, e| acc.union(&e.fields));
        let mut gone = schema
            .with_named_fields(&last)
            .difference(&schema.with_named_fields(&owned));
        // metadata goes field by field, never whole: what controllers set there (finalizers,
        // owner references) has no owner and stays.
        gone.remove_member(&Element::Field("metadata".into()));
        schema.remove(&merged, &gone)
    };
    let c = schema.compare(live, &object);
    let touched = c.modified.union(&c.added);
    let mut conflicts = Vec::new();
    for e in entries.iter().filter(|e| !e.owner.same(who)) {
        for path in e.fields.intersection(&touched).paths() {
            conflicts.push(Conflict {
                owner: e.owner.clone(),
                path,
            });
        }
    }
    let refused: Vec<Conflict> = conflicts
        .iter()
        .filter(|c| !allowed.contains(&c.path))
        .cloned()
        .collect();
    if !force && !refused.is_empty() {
        return Err(refused);
    }
    for e in entries.iter_mut().filter(|e| !e.owner.same(who)) {
        e.fields = e.fields.difference(&touched).difference(&c.removed);
    }
    if object != *live
        && let Some(e) = entries.iter_mut().find(|e| e.owner.same(who))
    {
        e.time = Some(now.to_string());
    }
    entries.retain(|e| !e.fields.is_empty());
    Ok(Applied { object, entries })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm() -> Schema<'static> {
        Schema::new("ConfigMap", true)
    }

    fn applier(m: &str) -> Owner {
        Owner::new(m, Operation::Apply, "v1", None)
    }

    fn by<'a>(who: &'a Owner, force: bool, allowed: &'a FieldSet) -> Applier<'a> {
        Applier {
            who,
            force,
            allowed,
            now: "t",
        }
    }

    fn apply_ok(live: &Value, config: &Value, entries: Vec<Entry>, who: &str) -> Applied {
        let none = FieldSet::default();
        apply(
            &cm(),
            live,
            config,
            entries,
            &by(&applier(who), false, &none),
        )
        .expect("no conflict")
    }

    #[test]
    fn an_omitted_field_is_removed_unless_someone_else_owns_it() {
        let first = json!({"data": {"a": "1", "b": "2"}});
        let one = apply_ok(&json!({}), &first, vec![], "x");
        let both = apply_ok(&one.object, &first, one.entries, "y");
        let x_drops_b = apply_ok(
            &both.object,
            &json!({"data": {"a": "1"}}),
            both.entries,
            "x",
        );
        assert_eq!(x_drops_b.object, first, "y still owns b");
        let y_drops_b = apply_ok(
            &x_drops_b.object,
            &json!({"data": {"a": "1"}}),
            x_drops_b.entries,
            "y",
        );
        assert_eq!(y_drops_b.object, json!({"data": {"a": "1"}}));
    }

    #[test]
    fn dropping_all_metadata_keeps_what_nobody_owns_there() {
        let live = json!({"metadata": {"labels": {"a": "1"}, "finalizers": ["x"]}});
        let mut labels = FieldSet::default();
        labels.insert(&[
            Element::Field("metadata".into()),
            Element::Field("labels".into()),
            Element::Field("a".into()),
        ]);
        let entries = vec![Entry {
            owner: applier("a"),
            time: None,
            fields: labels,
        }];
        let done = apply_ok(&live, &json!({"data": {"k": "v"}}), entries, "a");
        assert_eq!(
            done.object,
            json!({"metadata": {"finalizers": ["x"]}, "data": {"k": "v"}})
        );
    }

    #[test]
    fn changing_anothers_field_conflicts_unless_forced() {
        let a = apply_ok(&json!({}), &json!({"data": {"k": "1"}}), vec![], "a");
        let none = FieldSet::default();
        let b = applier("b");
        let err = apply(
            &cm(),
            &a.object,
            &json!({"data": {"k": "2"}}),
            a.entries.clone(),
            &by(&b, false, &none),
        )
        .expect_err("conflict");
        assert_eq!(err.len(), 1);
        assert_eq!(err[0].field(), ".data.k");
        assert_eq!(err[0].owner.describe(), "\"a\"");
        let forced = apply(
            &cm(),
            &a.object,
            &json!({"data": {"k": "2"}}),
            a.entries,
            &by(&b, true, &none),
        )
        .expect("forced");
        assert_eq!(forced.object, json!({"data": {"k": "2"}}));
        assert_eq!(forced.entries.len(), 1, "a lost its only field");
        assert_eq!(forced.entries[0].owner.manager, "b");
    }

    #[test]
    fn updates_take_what_they_change_from_everyone() {
        let a = apply_ok(
            &json!({}),
            &json!({"data": {"k": "1", "j": "1"}}),
            vec![],
            "a",
        );
        let edited = json!({"data": {"k": "2", "j": "1"}});
        let editor = Owner::new("kubectl-edit", Operation::Update, "v1", None);
        let entries = update(&cm(), &a.object, &edited, a.entries, &editor, "t");
        let of = |m: &str| {
            entries
                .iter()
                .find(|e| e.owner.manager == m)
                .map(|e| e.fields.to_fields_v1())
        };
        assert_eq!(of("a"), Some(json!({"f:data": {"f:j": {}}})));
        assert_eq!(of("kubectl-edit"), Some(json!({"f:data": {"f:k": {}}})));
        assert_eq!(editor.describe(), "\"kubectl-edit\" using v1");
    }

    #[test]
    fn managed_fields_round_trip_sorted_appliers_first() {
        let mut f = FieldSet::default();
        f.insert(&[Element::Field("data".into())]);
        let entries = vec![
            Entry {
                owner: Owner::new("u", Operation::Update, "v1", None),
                time: Some("2026-01-01T00:00:00Z".into()),
                fields: f.clone(),
            },
            Entry {
                owner: Owner::new("s", Operation::Update, "v1", Some("status")),
                time: None,
                fields: f.clone(),
            },
            Entry {
                owner: Owner::new("a", Operation::Apply, "v1", None),
                time: Some("2026-01-02T00:00:00Z".into()),
                fields: f,
            },
        ];
        let v = encode(&entries);
        assert_eq!(v[0]["manager"], "a");
        assert_eq!(v[0]["operation"], "Apply");
        assert_eq!(v[1]["manager"], "s");
        assert_eq!(v[1]["subresource"], "status");
        assert_eq!(v[2]["fieldsType"], "FieldsV1");
        let Recorded::Entries(back) = recorded(&json!({"metadata": {"managedFields": v}})) else {
            panic!("entries");
        };
        assert_eq!(back.len(), 3);
        assert_eq!(
            recorded(&json!({"metadata": {"managedFields": [{}]}})),
            Recorded::Reset
        );
        assert_eq!(
            recorded(&json!({"metadata": {"managedFields": []}})),
            Recorded::Reset
        );
        assert_eq!(recorded(&json!({"metadata": {}})), Recorded::Nothing);
    }
}
