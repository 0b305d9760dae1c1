//! Server-side apply and field ownership for the simulated API server, as Kubernetes does them
//! with structured-merge-diff. Every write through the API (`api`) or the fake helm (`helm`)
//! comes through here before the store: an update (POST, PUT, merge/strategic/JSON patch)
//! takes ownership of the fields it changes; an apply (PATCH `application/apply-patch+yaml`)
//! sets what its configuration says, removes what the same manager applied before and no
//! longer applies, and refuses with 409 to change another manager's field unless forced.
//! Owners are recorded in `metadata.managedFields` in Kubernetes' `FieldsV1` encoding.
//!
//! The controllers' own writes (status, pods of ReplicaSets, garbage collection) go straight
//! to the store and record no owner: they are the sim's hot path and nothing paddock does
//! depends on who owns what they write.
//!
//! Caveats: no OpenAPI schemas, so list and map semantics come from a table of built-in
//! fields ([`schema`]); no cap on the number of update managers (Kubernetes folds the oldest
//! into `ancient-changes`); kubectl's last-applied annotation is honoured for conflicts but
//! not rewritten by `kubectl apply --server-side`.

mod fieldset;
mod managed;
mod schema;
mod strategic;

use std::sync::LazyLock;

use serde_json::{Map, Value, json};

use crate::store::{ApiError, Resource, Store, builtin_resources, now_rfc3339};

pub use fieldset::{Element, FieldSet};
pub use managed::{Operation, Owner};
pub use schema::{KeyField, ListType, MapType, Schema};

/// The object a write is for.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub res: &'a Resource,
    pub namespace: &'a str,
    pub name: &'a str,
    /// `Some("status")` for the status subresource.
    pub subresource: Option<&'a str>,
}

/// How a PATCH body is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// RFC 7386 (`application/merge-patch+json`).
    Merge,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// RFC 6902 (`application/json-patch+json`).
    Json,
}

/// An apply's result: whether it created the object, and the object.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub created: bool,
    pub object: Value,
}

/// The manager Kubernetes records for a request: the `fieldManager` parameter, else the
/// User-Agent up to its first `/` (`kubectl/v1.35.2 (linux/amd64)` → `kubectl`), printable
/// characters only, at most 128.
pub fn manager_of(field_manager: Option<&str>, user_agent: Option<&str>) -> String {
    match field_manager {
        Some(m) if !m.is_empty() => m.to_string(),
        _ => user_agent
            .unwrap_or_default()
            .split('/')
            .next()
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_control())
            .take(128)
            .collect(),
    }
}

/// Create an object (POST): `manager` owns every field it sets.
pub fn create(
    s: &mut Store,
    res: &Resource,
    ns: &str,
    mut obj: Value,
    manager: &str,
) -> Result<Value, ApiError> {
    let schema = schema_of(res);
    let who = Owner::new(manager, Operation::Update, &res.api_version(), None);
    let entries = managed::owners_for_update(None, &obj);
    let entries = managed::update(
        &schema,
        &json!({}),
        &view(&obj, None),
        entries,
        &who,
        &now_rfc3339(),
    );
    set_managed(&mut obj, &entries);
    s.create(res, ns, obj)
}

/// Replace an object (PUT): `manager` takes the fields it changes.
pub fn replace(s: &mut Store, t: &Target, obj: Value, manager: &str) -> Result<Value, ApiError> {
    let live = s.get(t.res, t.namespace, t.name)?;
    write_update(s, t, live, obj, manager)
}

/// Patch an object with a merge, strategic merge or JSON patch: an update like a PUT of the
/// patched object, which `admit` sees (and may change or refuse) before it is written.
/// Strategic merge is refused for custom kinds, as the API server does.
pub fn patch(
    s: &mut Store,
    t: &Target,
    kind: PatchType,
    body: &Value,
    manager: &str,
    admit: impl FnOnce(Value) -> Result<Value, ApiError>,
) -> Result<Value, ApiError> {
    let live = s.get(t.res, t.namespace, t.name)?;
    let mut obj = live.clone();
    match kind {
        PatchType::Merge => crate::store::merge_patch(&mut obj, body),
        PatchType::Json => crate::store::apply_json_patch(&mut obj, body)
            .map_err(|e| ApiError::new(422, "Invalid", e))?,
        PatchType::Strategic => {
            let schema = schema_of(t.res);
            if !schema.builtin() {
                return Err(ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
                ));
            }
            strategic::patch(&schema, &mut obj, body)
                .map_err(|e| ApiError::new(422, "Invalid", e))?;
        }
    }
    let obj = admit(obj)?;
    write_update(s, t, live, obj, manager)
}

/// Server-side apply of `config` by `manager`: creates the object if it is missing (its
/// namespace must exist); otherwise merges, prunes what `manager` stopped applying, and
/// refuses with 409 to change fields other managers own unless `force`. Applying what is
/// already there writes nothing (no new resourceVersion, no watch event).
pub fn apply(
    s: &mut Store,
    t: &Target,
    config: Value,
    manager: &str,
    force: bool,
) -> Result<Applied, ApiError> {
    check_config(t, &config)?;
    let schema = schema_of(t.res);
    let api_version = t.res.api_version();
    let who = Owner::new(manager, Operation::Apply, &api_version, t.subresource);
    let now = now_rfc3339();
    let config_view = view(&config, t.subresource);
    let live = match s.get(t.res, t.namespace, t.name) {
        Ok(live) => live,
        Err(e) if e.code == 404 && t.subresource.is_none() => {
            let done = managed::apply(
                &schema,
                &json!({}),
                &config_view,
                Vec::new(),
                &managed::Applier {
                    who: &who,
                    force: true,
                    allowed: &FieldSet::default(),
                    now: &now,
                },
            )
            .map_err(conflict_error)?;
            let mut obj = join(done.object, &config, None);
            obj["metadata"]["name"] = json!(t.name);
            set_managed(&mut obj, &done.entries);
            let object = s.create(t.res, t.namespace, obj)?;
            return Ok(Applied {
                created: true,
                object,
            });
        }
        Err(e) => return Err(e),
    };
    if let Some(rv) = config
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .filter(|rv| !rv.is_empty())
        && Some(rv)
            != live
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
    {
        return Err(stale(t));
    }
    let live_view = view(&live, t.subresource);
    let entries = match managed::recorded(&live) {
        managed::Recorded::Entries(e) => e,
        // An object nobody owns yet (created before field management, or by the sim's
        // controllers): what is there belongs to `before-first-apply`.
        _ => managed::update(
            &schema,
            &json!({}),
            &live_view,
            Vec::new(),
            &Owner::new(
                "before-first-apply",
                Operation::Update,
                &api_version,
                t.subresource,
            ),
            &now,
        ),
    };
    let allowed = if manager == "kubectl" {
        last_applied(&schema, &live, &live_view)
    } else {
        FieldSet::default()
    };
    let done = managed::apply(
        &schema,
        &live_view,
        &config_view,
        entries,
        &managed::Applier {
            who: &who,
            force,
            allowed: &allowed,
            now: &now,
        },
    )
    .map_err(conflict_error)?;
    let mut obj = join(done.object, &live, t.subresource);
    set_managed(&mut obj, &done.entries);
    if unchanged(&live, &obj) {
        return Ok(Applied {
            created: false,
            object: live,
        });
    }
    let object = s.update(t.res, t.namespace, t.name, obj)?;
    Ok(Applied {
        created: false,
        object,
    })
}

/// What an apply body may not say (as the API server checks it).
fn check_config(t: &Target, config: &Value) -> Result<(), ApiError> {
    if !config.is_object() {
        return Err(ApiError::new(
            400,
            "BadRequest",
            "error decoding YAML: the apply configuration is not an object",
        ));
    }
    if config
        .pointer("/metadata/managedFields")
        .is_some_and(|m| !m.is_null())
    {
        return Err(ApiError::new(
            400,
            "BadRequest",
            "metadata.managedFields must be nil",
        ));
    }
    if let Some(n) = config.pointer("/metadata/name").and_then(Value::as_str)
        && !n.is_empty()
        && n != t.name
    {
        return Err(ApiError::new(
            400,
            "BadRequest",
            format!(
                "the name of the object ({n}) does not match the name on the URL ({})",
                t.name
            ),
        ));
    }
    if t.res.namespaced
        && let Some(n) = config
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
        && !n.is_empty()
        && n != t.namespace
    {
        return Err(ApiError::new(
            400,
            "BadRequest",
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    Ok(())
}

fn stale(t: &Target) -> ApiError {
    ApiError::new(
        409,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on {} \"{}\": the object has been modified; please apply your changes to the latest version and try again",
            t.res.qualified(),
            t.name
        ),
    )
}

/// The fields kubectl's client-side apply last set and that still hold its values: a
/// `kubectl apply --server-side` (manager `kubectl`) may take them over without `--force`.
fn last_applied(schema: &Schema, live: &Value, live_view: &Value) -> FieldSet {
    let Some(text) = live
        .pointer("/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration")
        .and_then(Value::as_str)
    else {
        return FieldSet::default();
    };
    let Ok(last) = serde_json::from_str::<Value>(text) else {
        return FieldSet::default();
    };
    let last = view(&last, None);
    let changed = schema.compare(&last, live_view).modified;
    schema.field_set(&last).difference(&changed)
}

/// An update's ownership, then the write (or nothing, when nothing changes).
fn write_update(
    s: &mut Store,
    t: &Target,
    live: Value,
    mut obj: Value,
    manager: &str,
) -> Result<Value, ApiError> {
    let rv = |o: &Value| {
        o.pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    if !rv(&obj).is_empty() && rv(&obj) != rv(&live) {
        // The store answers a stale resourceVersion with its 409.
        return s.update(t.res, t.namespace, t.name, obj);
    }
    let schema = schema_of(t.res);
    let who = Owner::new(
        manager,
        Operation::Update,
        &t.res.api_version(),
        t.subresource,
    );
    let entries = managed::owners_for_update(Some(&live), &obj);
    let entries = managed::update(
        &schema,
        &view(&live, t.subresource),
        &view(&obj, t.subresource),
        entries,
        &who,
        &now_rfc3339(),
    );
    set_managed(&mut obj, &entries);
    if unchanged(&live, &obj) {
        return Ok(live);
    }
    s.update(t.res, t.namespace, t.name, obj)
}

/// True when storing `new` would leave `live` as it is (the store keeps identity, status
/// and counters itself).
fn unchanged(live: &Value, new: &Value) -> bool {
    let mut n = new.clone();
    for k in [
        "uid",
        "creationTimestamp",
        "name",
        "namespace",
        "resourceVersion",
        "generation",
    ] {
        let kept = live.pointer(&format!("/metadata/{k}")).cloned();
        if let Some(m) = n.get_mut("metadata").and_then(Value::as_object_mut) {
            match kept {
                Some(v) => {
                    m.insert(k.to_string(), v);
                }
                None => {
                    m.remove(k);
                }
            }
        }
    }
    for k in ["apiVersion", "kind"] {
        if let Some(v) = live.get(k) {
            n[k] = v.clone();
        }
    }
    if n.get("status").is_none()
        && let Some(st) = live.get("status")
    {
        n["status"] = st.clone();
    }
    n == *live
}

fn set_managed(obj: &mut Value, entries: &[managed::Entry]) {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    let encoded = managed::encode(entries);
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if encoded.as_array().is_some_and(Vec::is_empty) {
            m.remove("managedFields");
        } else {
            m.insert("managedFields".into(), encoded);
        }
    }
}

/// Metadata the server sets, never owned by anyone (structured-merge-diff's stripped fields,
/// and the deletion markers the sim sets itself).
const SERVER_METADATA: [&str; 10] = [
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// The part of an object whose fields have owners: for the object itself everything but
/// `apiVersion`, `kind`, server-set metadata and `status` (the status subresource's); for
/// `/status`, the status.
fn view(obj: &Value, sub: Option<&str>) -> Value {
    let mut out = Map::new();
    let Some(m) = obj.as_object() else {
        return Value::Object(out);
    };
    if sub == Some("status") {
        if let Some(st) = m.get("status") {
            out.insert("status".into(), st.clone());
        }
        return Value::Object(out);
    }
    for (k, v) in m {
        match k.as_str() {
            "apiVersion" | "kind" | "status" => {}
            "metadata" => {
                let md: Map<String, Value> = v
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(k, _)| !SERVER_METADATA.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                if !md.is_empty() {
                    out.insert(k.clone(), Value::Object(md));
                }
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}

/// `view` put back into `base`: the inverse of [`view`].
fn join(view: Value, base: &Value, sub: Option<&str>) -> Value {
    let Value::Object(mut v) = view else {
        return base.clone();
    };
    if sub == Some("status") {
        let mut out = base.clone();
        match (v.remove("status"), out.as_object_mut()) {
            (Some(st), Some(o)) => {
                o.insert("status".into(), st);
            }
            (None, Some(o)) => {
                o.remove("status");
            }
            _ => {}
        }
        return out;
    }
    let mut out = Map::new();
    for k in ["apiVersion", "kind"] {
        if let Some(x) = base.get(k) {
            out.insert(k.into(), x.clone());
        }
    }
    let mut md = Map::new();
    for k in SERVER_METADATA {
        if let Some(x) = base.pointer(&format!("/metadata/{k}")) {
            md.insert(k.into(), x.clone());
        }
    }
    if let Some(Value::Object(m)) = v.remove("metadata") {
        md.extend(m);
    }
    out.insert("metadata".into(), Value::Object(md));
    out.extend(v);
    if let Some(st) = base.get("status") {
        out.insert("status".into(), st.clone());
    }
    Value::Object(out)
}

/// Built-in kinds have the schema table; custom kinds (from CRDs) do not.
fn schema_of(res: &Resource) -> Schema<'_> {
    static BUILTIN: LazyLock<Vec<(String, String)>> = LazyLock::new(|| {
        builtin_resources()
            .into_iter()
            .map(|r| (r.group, r.plural))
            .collect()
    });
    let builtin = BUILTIN
        .iter()
        .any(|(g, p)| *g == res.group && *p == res.plural);
    Schema::new(&res.kind, builtin)
}

/// The API server's answer to an apply that would change other managers' fields.
fn conflict_error(mut conflicts: Vec<managed::Conflict>) -> ApiError {
    let order = |o: &Owner| {
        (
            o.manager.clone(),
            o.operation,
            o.api_version.clone(),
            o.subresource.clone(),
        )
    };
    conflicts.sort_by(|a, b| {
        order(&a.owner)
            .cmp(&order(&b.owner))
            .then_with(|| a.path.cmp(&b.path))
    });
    let message = match conflicts.as_slice() {
        [one] => format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            one.owner.describe(),
            one.field()
        ),
        many => {
            let mut lines: Vec<String> = Vec::new();
            let mut previous: Option<&Owner> = None;
            for c in many {
                if previous != Some(&c.owner) {
                    lines.push(format!("conflicts with {}:", c.owner.describe()));
                    previous = Some(&c.owner);
                }
                lines.push(format!("- {}", c.field()));
            }
            format!(
                "Apply failed with {} conflicts: {}",
                many.len(),
                lines.join("\n")
            )
        }
    };
    let mut e = ApiError::new(409, "Conflict", message);
    e.causes = conflicts
        .iter()
        .map(|c| {
            json!({"reason": "FieldManagerConflict",
                "message": format!("conflict with {}", c.owner.describe()),
                "field": c.field()})
        })
        .collect();
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn managers_come_from_the_parameter_or_the_user_agent() {
        assert_eq!(manager_of(Some("paddock"), Some("kubectl/v1")), "paddock");
        assert_eq!(
            manager_of(
                None,
                Some("kubectl/v1.35.2 (linux/amd64) kubernetes/fdc9d74")
            ),
            "kubectl"
        );
        assert_eq!(manager_of(Some(""), Some("Helm/3.19.0")), "Helm");
        assert_eq!(manager_of(None, None), "");
    }

    #[test]
    fn the_view_leaves_out_what_the_server_sets_and_join_puts_it_back() {
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "n", "uid": "u", "resourceVersion": "7",
                "labels": {"a": "b"}, "managedFields": []},
            "data": {"k": "v"}, "status": {"x": 1}});
        let v = view(&obj, None);
        assert_eq!(
            v,
            json!({"metadata": {"labels": {"a": "b"}}, "data": {"k": "v"}})
        );
        assert_eq!(join(v, &obj, None), obj);
        assert_eq!(view(&obj, Some("status")), json!({"status": {"x": 1}}));
    }
}
