//! How a cluster overrides its profile (and a profile the one it `extends`):
//! maps merge key by key, recursively; lists and scalars replace; `null` removes the key.
//! Origins follow the values, so an error in a merged value points at the file it came from.

use std::collections::BTreeMap;

use serde_json::Value;

use super::yaml::{FieldPath, Located, Origin};

/// Merge `over` onto `base`.
pub fn merge(base: &mut Located, over: &Located) {
    merge_at(
        &mut base.value,
        &over.value,
        &FieldPath::root(),
        &mut base.origins,
        &over.origins,
    );
}

/// Merge two plain values with the same rules (used for Helm values that have no origins).
pub fn merge_values(base: &mut Value, over: &Value) {
    let mut scratch = BTreeMap::new();
    merge_at(
        base,
        over,
        &FieldPath::root(),
        &mut scratch,
        &BTreeMap::new(),
    );
}

fn merge_at(
    base: &mut Value,
    over: &Value,
    path: &FieldPath,
    base_origins: &mut BTreeMap<FieldPath, Origin>,
    over_origins: &BTreeMap<FieldPath, Origin>,
) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                let child = path.key(k.clone());
                if v.is_null() {
                    b.remove(k);
                    drop_under(base_origins, &child);
                } else if let Some(bv) = b.get_mut(k) {
                    merge_at(bv, v, &child, base_origins, over_origins);
                } else {
                    b.insert(k.clone(), without_nulls(v));
                    copy_under(base_origins, over_origins, &child);
                }
            }
        }
        (b, o) => {
            *b = without_nulls(o);
            drop_under(base_origins, path);
            copy_under(base_origins, over_origins, path);
        }
    }
}

/// `null` in an override means "remove"; where nothing is below to remove, it just goes.
fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn under<'a>(
    origins: &'a BTreeMap<FieldPath, Origin>,
    prefix: &'a FieldPath,
) -> impl Iterator<Item = (&'a FieldPath, &'a Origin)> + 'a {
    origins
        .range(prefix.clone()..)
        .take_while(move |(p, _)| p.0.starts_with(&prefix.0))
}

fn drop_under(origins: &mut BTreeMap<FieldPath, Origin>, prefix: &FieldPath) {
    let doomed: Vec<FieldPath> = under(origins, prefix).map(|(p, _)| p.clone()).collect();
    for p in doomed {
        origins.remove(&p);
    }
}

fn copy_under(
    to: &mut BTreeMap<FieldPath, Origin>,
    from: &BTreeMap<FieldPath, Origin>,
    prefix: &FieldPath,
) {
    for (p, o) in under(from, prefix) {
        to.insert(p.clone(), o.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::yaml::parse;
    use serde_json::json;

    fn merged(base: &str, over: &str) -> Located {
        let mut b = parse("base.yaml", base).expect("base parses");
        let o = parse("over.yaml", over).expect("over parses");
        merge(&mut b, &o);
        b
    }

    #[test]
    fn table_of_merge_rules() {
        let cases = [
            // (base, override, expected)
            ("a: 1", "b: 2", json!({"a": 1, "b": 2})),
            ("a: 1", "a: 2", json!({"a": 2})),
            (
                "a: {x: 1, y: 2}",
                "a: {y: 3}",
                json!({"a": {"x": 1, "y": 3}}),
            ),
            ("a: [1, 2, 3]", "a: [4]", json!({"a": [4]})),
            ("a: {x: 1}", "a: null", json!({})),
            ("a: {x: 1}", "a: 5", json!({"a": 5})),
            ("a: 5", "a: {x: 1}", json!({"a": {"x": 1}})),
            (
                "a: {b: {c: 1, d: 2}}",
                "a: {b: {d: null}}",
                json!({"a": {"b": {"c": 1}}}),
            ),
            ("a: [{x: 1}]", "a: [{y: 2}]", json!({"a": [{"y": 2}]})),
            ("a: 1", "", json!({"a": 1})),
            ("a: 1", "b: {c: null, d: 1}", json!({"a": 1, "b": {"d": 1}})),
        ];
        for (base, over, want) in cases {
            assert_eq!(
                merged(base, over).value,
                want,
                "merging {over:?} onto {base:?}"
            );
        }
    }

    #[test]
    fn origins_follow_the_winning_value() {
        let m = merged("a:\n  x: 1\n  y: 2\n", "a:\n  y: 3\n");
        assert_eq!(m.origins[&FieldPath::parse("a.x")].file, "base.yaml");
        assert_eq!(m.origins[&FieldPath::parse("a.y")].file, "over.yaml");
        let m = merged("l: [1, 2, 3]\n", "l: [9]\n");
        assert!(!m.origins.contains_key(&FieldPath::parse("l[2]")));
        assert_eq!(m.origins[&FieldPath::parse("l[0]")].file, "over.yaml");
    }
}
