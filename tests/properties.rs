//! Property tests: the loader never panics on arbitrary input, merging obeys its laws, and
//! revision names are derived faithfully from versions.

use paddock::mesh::istio::{parse_version, revision_for};
use paddock::spec::load::parse_doc;
use paddock::spec::merge::merge;
use paddock::spec::typed::typed;
use paddock::spec::types::{Addon, Body};
use paddock::spec::yaml::{FieldPath, Located, parse};
use proptest::prelude::*;
use serde_json::{Map, Value};

/// YAML-looking text: keys paddock knows, indentation, flow syntax, scalars of every kind.
fn yamlish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("istio:".to_string()),
        Just("version:".to_string()),
        Just("k3d:".to_string()),
        Just("servers:".to_string()),
        Just("addons:".to_string()),
        Just("namespaces:".to_string()),
        Just("- ".to_string()),
        Just("  ".to_string()),
        Just("\n".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just("{".to_string()),
        Just("}".to_string()),
        Just(",".to_string()),
        Just("&a ".to_string()),
        Just("*a".to_string()),
        Just("<<: ".to_string()),
        Just("\"".to_string()),
        Just("'".to_string()),
        Just("!!str ".to_string()),
        Just("~".to_string()),
        Just("1.30.3".to_string()),
        Just("no".to_string()),
        Just("true".to_string()),
        Just("-1e99".to_string()),
        Just("? ".to_string()),
        Just("#".to_string()),
        Just("|".to_string()),
        Just("\t".to_string()),
        "[a-z0-9 :.-]{0,8}",
    ];
    prop::collection::vec(token, 0..60).prop_map(|t| t.concat())
}

/// Arbitrary JSON-like trees for merge laws.
fn tree() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i32>().prop_map(Value::from),
        "[a-z]{0,4}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-c]", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn doc(v: Value) -> Located {
    Located::synthetic("t.yaml", v)
}

fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_loader_never_panics(text in yamlish()) {
        let mut problems = Vec::new();
        if let Some(d) = parse_doc("fuzz.yaml", &text, &mut problems) {
            let _ = typed::<Body>(&d, &FieldPath::root(), &[]);
            let _ = typed::<Addon>(&d, &FieldPath::root(), &[]);
        }
        for p in problems {
            prop_assert_eq!(p.file, "fuzz.yaml");
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse("fuzz.yaml", &text);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn merging_an_empty_override_changes_nothing(base in tree()) {
        let base = Value::Object(Map::from_iter([("root".to_string(), base)]));
        let mut merged = doc(base.clone());
        merge(&mut merged, &doc(Value::Object(Map::new())));
        prop_assert_eq!(merged.value, base);
    }

    #[test]
    fn merging_twice_is_merging_once(base in tree(), over in tree()) {
        let wrap = |v: Value| Value::Object(Map::from_iter([("root".to_string(), v)]));
        let mut once = doc(wrap(base.clone()));
        merge(&mut once, &doc(wrap(over.clone())));
        let mut twice = once.clone();
        merge(&mut twice, &doc(wrap(over)));
        prop_assert_eq!(twice.value, once.value);
    }

    #[test]
    fn an_override_of_a_non_map_wins_outright(base in tree(), over in tree()) {
        prop_assume!(!over.is_object() && !over.is_null());
        let mut merged = doc(Value::Object(Map::from_iter([("k".to_string(), base)])));
        merge(&mut merged, &doc(Value::Object(Map::from_iter([("k".to_string(), over.clone())]))));
        prop_assert_eq!(&merged.value["k"], &strip_nulls(&over));
    }

    #[test]
    fn revision_names_have_no_dots_and_map_back_to_the_version(minor in 20u64..100, patch in 0u64..100) {
        let text = format!("1.{minor}.{patch}");
        let v = parse_version(&text).expect("valid version");
        let rev = revision_for(&v);
        prop_assert!(!rev.contains('.'));
        prop_assert_eq!(rev.replace('-', "."), text);
    }
}
