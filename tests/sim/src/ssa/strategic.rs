//! Strategic merge patch (`application/strategic-merge-patch+json`, what kubectl `patch`,
//! `label` and client-side `apply` send): a JSON merge patch whose lists with a merge key
//! merge item by item, with the directives kubectl writes (`$patch`, `$setElementOrder/…`,
//! `$retainKeys`, `$deleteFromPrimitiveList/…`). The merge keys are the schema's list keys
//! (the first one, as `patchMergeKey` names one field).

use serde_json::{Map, Value};

use super::schema::{ListType, Schema};

/// Apply a strategic merge patch to `target`.
pub fn patch(schema: &Schema, target: &mut Value, patch: &Value) -> Result<(), String> {
    merge_object(schema, &mut Vec::new(), target, patch)
}

fn merge_object<'p>(
    schema: &Schema,
    names: &mut Vec<&'p str>,
    target: &mut Value,
    patch: &'p Value,
) -> Result<(), String> {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return Ok(());
    };
    match p.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            *target = without_directives(patch);
            return Ok(());
        }
        Some("delete") => {
            *target = Value::Null;
            return Ok(());
        }
        Some("merge") | None => {}
        Some(other) => return Err(format!("unknown patch type: {other}")),
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else {
        return Ok(());
    };
    for (k, v) in p {
        if k.starts_with('$') {
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        names.push(k);
        let slot = t.entry(k.clone()).or_insert(Value::Null);
        match v {
            Value::Array(items) => merge_list(schema, names, slot, items)?,
            Value::Object(_) => {
                merge_object(schema, names, slot, v)?;
                if slot.is_null() {
                    t.remove(k);
                }
            }
            _ => *slot = v.clone(),
        }
        names.pop();
    }
    for (k, v) in p {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/")
            && let Some(Value::Array(list)) = t.get_mut(field)
        {
            let doomed = v.as_array().cloned().unwrap_or_default();
            list.retain(|x| !doomed.contains(x));
        }
        if let Some(field) = k.strip_prefix("$setElementOrder/")
            && let (Some(Value::Array(list)), Some(order)) = (t.get_mut(field), v.as_array())
        {
            names.push(field);
            reorder(schema.list_type(names), list, order);
            names.pop();
        }
    }
    if let Some(Value::Array(keep)) = p.get("$retainKeys") {
        t.retain(|k, _| keep.iter().any(|x| x.as_str() == Some(k)));
    }
    Ok(())
}

fn merge_list<'p>(
    schema: &Schema,
    names: &mut Vec<&'p str>,
    slot: &mut Value,
    items: &'p [Value],
) -> Result<(), String> {
    let list = schema.list_type(names);
    let replace_all = items
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"));
    let current = match slot {
        Value::Array(a) if !replace_all => std::mem::take(a),
        _ => Vec::new(),
    };
    let merged = match list {
        _ if replace_all => items
            .iter()
            .filter(|i| i.get("$patch").is_none())
            .cloned()
            .collect(),
        ListType::Set => {
            let mut out = current;
            for i in items {
                if !out.contains(i) {
                    out.push(i.clone());
                }
            }
            out
        }
        ListType::Map(keys) => {
            let key = keys[0].name;
            let mut out = current;
            for item in items {
                let at = out.iter().position(|o| o.get(key) == item.get(key));
                let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                match (at, delete) {
                    (Some(i), true) => {
                        out.remove(i);
                    }
                    (None, true) => {}
                    (Some(i), false) => merge_object(schema, names, &mut out[i], item)?,
                    (None, false) => out.push(without_directives(item)),
                }
            }
            out
        }
        ListType::Atomic => items.to_vec(),
    };
    *slot = Value::Array(merged);
    Ok(())
}

/// `$setElementOrder`: the listed items first, in that order, then the rest as they were.
fn reorder(list: ListType, items: &mut Vec<Value>, order: &[Value]) {
    let same = |a: &Value, b: &Value| match list {
        ListType::Map(keys) => a.get(keys[0].name) == b.get(keys[0].name),
        _ => a == b,
    };
    let mut rest = std::mem::take(items);
    for o in order {
        if let Some(i) = rest.iter().position(|x| same(x, o)) {
            items.push(rest.remove(i));
        }
    }
    items.extend(rest);
}

fn without_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), without_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_directives).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn apply(target: Value, p: Value) -> Value {
        let mut t = target;
        patch(&Schema::new("Deployment", true), &mut t, &p).expect("patch applies");
        t
    }

    #[test]
    fn lists_with_a_merge_key_merge_by_it_and_others_are_replaced() {
        let d = json!({"spec": {"template": {"spec": {
            "containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}],
            "tolerations": [{"key": "x"}]}}}});
        let out = apply(
            d,
            json!({"spec": {"template": {"spec": {
                "containers": [{"name": "b", "image": "b:2"}, {"name": "a", "$patch": "delete"}],
                "tolerations": [{"key": "y"}]}}}}),
        );
        assert_eq!(
            out["spec"]["template"]["spec"],
            json!({"containers": [{"name": "b", "image": "b:2"}], "tolerations": [{"key": "y"}]})
        );
    }

    #[test]
    fn kubectl_directives_are_obeyed_and_never_stored() {
        let d = json!({"metadata": {"finalizers": ["a", "b"], "labels": {"x": "1"}},
            "spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
                "template": {"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}}});
        let out = apply(
            d,
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"], "labels": {"x": null, "y": "2"}},
                "spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"},
                    "template": {"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
                        "containers": [{"name": "a", "image": "new"}]}}}}),
        );
        assert_eq!(
            out,
            json!({"metadata": {"finalizers": ["b"], "labels": {"y": "2"}},
                "spec": {"strategy": {"type": "Recreate"},
                    "template": {"spec": {"containers": [{"name": "b"}, {"name": "a", "image": "new"}]}}}})
        );
    }
}
