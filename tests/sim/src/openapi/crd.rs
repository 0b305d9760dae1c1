//! The schemas of custom kinds, as the apiextensions server publishes them: each served
//! version's `schema.openAPIV3Schema`, with `apiVersion`, `kind` and `metadata` (a reference to
//! `ObjectMeta`) put in, `x-kubernetes-group-version-kind`, and a list kind. Definitions are
//! named by the reversed group: `networking.istio.io/v1 Gateway` → `io.istio.networking.v1.Gateway`.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::builtin::{
    API_VERSION_DESCRIPTION, KIND_DESCRIPTION, LIST_META, OBJECT_META, REF_PREFIX, list_schema,
};
use super::document::Served;

/// One group-version some CRDs serve.
#[derive(Debug, Clone, Default)]
pub struct GroupVersion {
    pub served: Vec<Served>,
    pub definitions: Map<String, Value>,
    /// Names, uids and resourceVersions of the CRDs behind it: the document changes only
    /// when one of them does.
    pub fingerprint: Vec<String>,
}

/// `networking.istio.io` → `io.istio.networking`.
pub fn reversed_group(group: &str) -> String {
    group.split('.').rev().collect::<Vec<_>>().join(".")
}

/// The group-versions `crds` serve, by document path (`apis/networking.istio.io/v1`).
pub fn group_versions(crds: &[&Value]) -> BTreeMap<String, GroupVersion> {
    let mut out: BTreeMap<String, GroupVersion> = BTreeMap::new();
    for crd in crds {
        let text = |p: &str| crd.pointer(p).and_then(Value::as_str).unwrap_or_default();
        let (group, kind, plural) = (
            text("/spec/group"),
            text("/spec/names/kind"),
            text("/spec/names/plural"),
        );
        let namespaced = text("/spec/scope") != "Cluster";
        let fingerprint = format!(
            "{} {} {}",
            text("/metadata/name"),
            text("/metadata/uid"),
            text("/metadata/resourceVersion")
        );
        for v in crd
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|v| v.get("served").and_then(Value::as_bool) != Some(false))
        {
            let Some(version) = v.get("name").and_then(Value::as_str) else {
                continue;
            };
            let gv = out.entry(format!("apis/{group}/{version}")).or_default();
            let definition = format!("{}.{version}.{kind}", reversed_group(group));
            gv.definitions
                .insert(definition.clone(), kind_schema(group, version, kind, v));
            let mut list = list_schema(kind, &definition, LIST_META);
            list["x-kubernetes-group-version-kind"] =
                json!([{"group": group, "kind": format!("{kind}List"), "version": version}]);
            gv.definitions.insert(format!("{definition}List"), list);
            gv.served.push(Served {
                group: group.into(),
                version: version.into(),
                plural: plural.into(),
                kind: kind.into(),
                namespaced,
                list_definition: format!("{definition}List"),
                definition,
                status: v.pointer("/subresources/status").is_some(),
                eviction: None,
                strategic: false,
            });
            gv.fingerprint.push(fingerprint.clone());
        }
    }
    out
}

/// The published schema of one CRD version (`v` is an item of `spec.versions`).
pub fn kind_schema(group: &str, version: &str, kind: &str, v: &Value) -> Value {
    let mut schema = v
        .pointer("/schema/openAPIV3Schema")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
    if !schema.get("properties").is_some_and(Value::is_object) {
        schema["properties"] = json!({});
    }
    let props = &mut schema["properties"];
    props["apiVersion"] = json!({"description": API_VERSION_DESCRIPTION, "type": "string"});
    props["kind"] = json!({"description": KIND_DESCRIPTION, "type": "string"});
    props["metadata"] = json!({
        "allOf": [{"$ref": format!("{REF_PREFIX}{OBJECT_META}")}],
        "description": "Standard object's metadata.",
    });
    schema["type"] = json!("object");
    schema["x-kubernetes-group-version-kind"] =
        json!([{"group": group, "kind": kind, "version": version}]);
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd() -> Value {
        json!({
            "metadata": {"name": "gateways.networking.istio.io", "uid": "u1", "resourceVersion": "7"},
            "spec": {"group": "networking.istio.io", "scope": "Namespaced",
                "names": {"kind": "Gateway", "plural": "gateways"},
                "versions": [
                    {"name": "v1", "served": true, "subresources": {"status": {}},
                     "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                        "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}},
                    {"name": "v1alpha3", "served": false},
                ]},
        })
    }

    #[test]
    fn each_served_version_is_a_group_version_with_its_kind_and_list() {
        let gvs = group_versions(&[&crd()]);
        assert_eq!(
            gvs.keys().collect::<Vec<_>>(),
            ["apis/networking.istio.io/v1"]
        );
        let gv = &gvs["apis/networking.istio.io/v1"];
        let gateway = &gv.definitions["io.istio.networking.v1.Gateway"];
        assert_eq!(
            gateway["x-kubernetes-group-version-kind"],
            json!([{"group": "networking.istio.io", "kind": "Gateway", "version": "v1"}])
        );
        assert_eq!(
            gateway["properties"]["metadata"]["allOf"][0]["$ref"],
            json!("#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
        );
        assert_eq!(
            gateway["properties"]["spec"]["x-kubernetes-preserve-unknown-fields"],
            json!(true)
        );
        assert!(
            gv.definitions
                .contains_key("io.istio.networking.v1.GatewayList")
        );
        assert!(gv.served[0].status);
        assert_eq!(gv.fingerprint, ["gateways.networking.istio.io u1 7"]);
    }
}
