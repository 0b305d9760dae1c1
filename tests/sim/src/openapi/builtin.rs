//! The schemas of the built-in kinds as the API server publishes them. k8s-openapi's
//! `JsonSchema` definitions carry Kubernetes' names (`io.k8s.api.apps.v1.Deployment`), property
//! names, types, formats and descriptions; what its generator leaves out is put back here:
//! `x-kubernetes-group-version-kind` on each kind, the v3 forms of `IntOrString` and `Quantity`,
//! the list kinds, and the patch and list extensions kubectl's strategic merge reads
//! (`x-kubernetes-patch-merge-key`, `-patch-strategy`, `-list-type`, `-list-map-keys`,
//! `-map-type`) — taken from the `ssa` table, so that kubectl's client-side apply and the sim's
//! server-side apply agree on every list.

use std::sync::LazyLock;

use k8s_openapi::api::{
    admissionregistration, apps, autoscaling, batch, coordination, core, discovery, networking,
    policy, rbac, scheduling, storage,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions;
use k8s_openapi::apimachinery::pkg::apis::meta;
use schemars::JsonSchema;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};

use crate::ssa::{ListType, MapType, Schema};

/// Where v3 documents keep their schemas; `$ref`s point here.
pub const REF_PREFIX: &str = "#/components/schemas/";

/// A kind with a published schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kind {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// Its definition's name (`io.k8s.api.apps.v1.Deployment`).
    pub definition: String,
}

impl Kind {
    /// The definition of its list (`io.k8s.api.apps.v1.DeploymentList`).
    pub fn list_definition(&self) -> String {
        format!("{}List", self.definition)
    }
}

/// Every built-in definition (v3 form) and the kinds they describe.
#[derive(Debug)]
pub struct Builtin {
    pub definitions: Map<String, Value>,
    pub kinds: Vec<Kind>,
}

impl Builtin {
    /// The kind `group/version, Kind=kind`, if it has a schema.
    pub fn kind(&self, group: &str, version: &str, kind: &str) -> Option<&Kind> {
        self.kinds
            .iter()
            .find(|k| k.group == group && k.version == version && k.kind == kind)
    }
}

/// Generated once per process, on first use (with the documents: about 90 ms optimised, half a
/// second in a debug build).
pub static BUILTIN: LazyLock<Builtin> = LazyLock::new(generate);

/// The meta definitions every document carries for its operations.
pub const OPERATION_DEFINITIONS: [&str; 3] = [
    "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
    "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
    "io.k8s.apimachinery.pkg.apis.meta.v1.Patch",
];

pub const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
pub const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";

macro_rules! kinds {
    ($generator:ident; $($t:ty),* $(,)?) => {
        vec![$({
            let _ = $generator.subschema_for::<$t>();
            Kind {
                group: <$t as k8s_openapi::Resource>::GROUP,
                version: <$t as k8s_openapi::Resource>::VERSION,
                kind: <$t as k8s_openapi::Resource>::KIND,
                definition: <$t as JsonSchema>::schema_name().into_owned(),
            }
        }),*]
    };
}

fn generate() -> Builtin {
    let mut generator = SchemaGenerator::new(SchemaSettings::openapi3().with(|s| {
        s.meta_schema = None;
        s.transforms.clear();
    }));
    let kinds = kinds![generator;
        core::v1::Namespace,
        core::v1::Node,
        core::v1::Pod,
        core::v1::Service,
        core::v1::Endpoints,
        core::v1::ConfigMap,
        core::v1::Secret,
        core::v1::ServiceAccount,
        core::v1::Event,
        apps::v1::Deployment,
        apps::v1::StatefulSet,
        apps::v1::DaemonSet,
        apps::v1::ReplicaSet,
        batch::v1::Job,
        discovery::v1::EndpointSlice,
        policy::v1::PodDisruptionBudget,
        policy::v1::Eviction,
        admissionregistration::v1::MutatingWebhookConfiguration,
        admissionregistration::v1::ValidatingWebhookConfiguration,
        rbac::v1::ClusterRole,
        rbac::v1::ClusterRoleBinding,
        rbac::v1::Role,
        rbac::v1::RoleBinding,
        autoscaling::v2::HorizontalPodAutoscaler,
        apiextensions::v1::CustomResourceDefinition,
        core::v1::PersistentVolumeClaim,
        core::v1::PersistentVolume,
        core::v1::ResourceQuota,
        core::v1::LimitRange,
        batch::v1::CronJob,
        networking::v1::NetworkPolicy,
        networking::v1::Ingress,
        networking::v1::IngressClass,
        storage::v1::StorageClass,
        scheduling::v1::PriorityClass,
        coordination::v1::Lease,
    ];
    let _ = generator.subschema_for::<meta::v1::DeleteOptions>();
    let _ = generator.subschema_for::<meta::v1::Status>();
    let _ = generator.subschema_for::<meta::v1::Patch>();
    let mut definitions = generator.take_definitions(false);
    for def in definitions.values_mut() {
        to_v3_refs(def);
    }
    set_v3_forms(&mut definitions);
    for k in &kinds {
        if let Some(Value::Object(d)) = definitions.get_mut(&k.definition) {
            d.insert("x-kubernetes-group-version-kind".into(), json!([gvk(k)]));
        }
        if k.kind != "Eviction" {
            let list = list_schema(k.kind, &k.definition, LIST_META);
            let mut list = list;
            list["x-kubernetes-group-version-kind"] = json!([{
                "group": k.group, "kind": format!("{}List", k.kind), "version": k.version,
            }]);
            definitions.insert(k.list_definition(), list);
        }
        let schema = Schema::new(k.kind, true);
        annotate(
            &schema,
            k.kind,
            &mut definitions,
            &k.definition,
            &mut Vec::new(),
            &mut Vec::new(),
        );
    }
    if let Some(Value::Object(d)) =
        definitions.get_mut("io.k8s.apimachinery.pkg.apis.meta.v1.Status")
    {
        d.insert(
            "x-kubernetes-group-version-kind".into(),
            json!([{"group": "", "kind": "Status", "version": "v1"}]),
        );
    }
    Builtin { definitions, kinds }
}

fn gvk(k: &Kind) -> Value {
    json!({"group": k.group, "kind": k.kind, "version": k.version})
}

/// A list kind's schema, as the API server writes them for every kind.
pub fn list_schema(kind: &str, item_definition: &str, list_meta: &str) -> Value {
    json!({
        "description": format!("{kind}List is a list of {kind} objects."),
        "type": "object",
        "properties": {
            "apiVersion": {"description": API_VERSION_DESCRIPTION, "type": "string"},
            "items": {
                "description": format!("List of {kind} objects."),
                "type": "array",
                "items": {"allOf": [{"$ref": format!("{REF_PREFIX}{item_definition}")}], "default": {}},
            },
            "kind": {"description": KIND_DESCRIPTION, "type": "string"},
            "metadata": {
                "description": "Standard list metadata.",
                "allOf": [{"$ref": format!("{REF_PREFIX}{list_meta}")}],
                "default": {},
            },
        },
        "required": ["items"],
    })
}

pub const API_VERSION_DESCRIPTION: &str = "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values.";
pub const KIND_DESCRIPTION: &str = "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase.";

/// OpenAPI 3.0 ignores what sits beside a `$ref`: a reference with a description becomes
/// `allOf: [{$ref}]`, as Kubernetes publishes it.
fn to_v3_refs(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, c) in m.iter_mut() {
                match (k.as_str(), c) {
                    // Names, not schemas: JSONSchemaProps has properties called `$ref`.
                    ("properties", Value::Object(props)) => {
                        props.values_mut().for_each(to_v3_refs);
                    }
                    (_, c) => to_v3_refs(c),
                }
            }
            if m.len() > 1
                && let Some(r) = m.remove("$ref")
            {
                m.insert("allOf".into(), json!([{"$ref": r}]));
            }
        }
        Value::Array(items) => items.iter_mut().for_each(to_v3_refs),
        _ => {}
    }
}

/// `IntOrString` and `Quantity` are published as `oneOf` their JSON types.
fn set_v3_forms(definitions: &mut Map<String, Value>) {
    let forms = [
        (
            "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
            json!({"format": "int-or-string", "oneOf": [{"type": "integer"}, {"type": "string"}]}),
        ),
        (
            "io.k8s.apimachinery.pkg.api.resource.Quantity",
            json!({"oneOf": [{"type": "string"}, {"type": "number"}]}),
        ),
    ];
    for (name, form) in forms {
        if let Some(Value::Object(d)) = definitions.get_mut(name) {
            d.remove("x-kubernetes-int-or-string");
            if let Value::Object(f) = form {
                d.extend(f);
            }
        }
    }
}

/// The definition a property's schema refers to, if any.
pub fn referenced(schema: &Value) -> Option<&str> {
    let r = schema.get("$ref").or_else(|| {
        schema
            .get("allOf")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(|s| s.get("$ref"))
    })?;
    r.as_str()?.strip_prefix(REF_PREFIX)
}

/// Walk the definitions reachable from `def` with the field names from the kind's root
/// (`names`), and mark each list and atomic struct as the `ssa` table says. A definition
/// shared by several kinds is marked by the first that reaches it; `stack` stops recursion.
fn annotate(
    schema: &Schema,
    kind: &str,
    definitions: &mut Map<String, Value>,
    def: &str,
    names: &mut Vec<String>,
    stack: &mut Vec<String>,
) {
    if stack.iter().any(|d| d == def) || names.len() > 16 {
        return;
    }
    let Some(Value::Object(d)) = definitions.get(def) else {
        return;
    };
    let props: Vec<(String, Value)> = d
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    stack.push(def.to_string());
    for (name, prop) in props {
        names.push(name.clone());
        let path: Vec<&str> = names.iter().map(String::as_str).collect();
        if prop.get("type").and_then(Value::as_str) == Some("array") {
            let marks = list_marks(schema.list_type(&path), &name);
            if let Some(Value::Object(p)) = definitions
                .get_mut(def)
                .and_then(|d| d.get_mut("properties"))
                .and_then(|p| p.get_mut(&name))
            {
                for (k, v) in marks {
                    p.entry(k).or_insert(v);
                }
            }
            if let Some(item) = prop.get("items").and_then(referenced) {
                let item = item.to_string();
                mark_map_type(schema, definitions, &item, &path);
                annotate(schema, kind, definitions, &item, names, stack);
            }
        } else if let Some(child) = referenced(&prop) {
            let child = child.to_string();
            mark_map_type(schema, definitions, &child, &path);
            // A Deployment's strategy drops `rollingUpdate` when its type changes.
            if kind == "Deployment"
                && path == ["spec", "strategy"]
                && let Some(Value::Object(p)) = definitions
                    .get_mut(def)
                    .and_then(|d| d.get_mut("properties"))
                    .and_then(|p| p.get_mut(&name))
            {
                p.entry("x-kubernetes-patch-strategy")
                    .or_insert(json!("retainKeys"));
            }
            annotate(schema, kind, definitions, &child, names, stack);
        }
        names.pop();
    }
    stack.pop();
}

fn mark_map_type(schema: &Schema, definitions: &mut Map<String, Value>, def: &str, path: &[&str]) {
    if schema.map_type(path) != MapType::Atomic {
        return;
    }
    if let Some(Value::Object(d)) = definitions.get_mut(def)
        && d.contains_key("properties")
    {
        d.entry("x-kubernetes-map-type").or_insert(json!("atomic"));
    }
}

/// The extensions of a list property of the given semantics.
fn list_marks(list: ListType, name: &str) -> Vec<(String, Value)> {
    let mark = |k: &str, v: Value| (k.to_string(), v);
    match list {
        ListType::Atomic => Vec::new(),
        ListType::Set => vec![
            mark("x-kubernetes-list-type", json!("set")),
            mark("x-kubernetes-patch-strategy", json!("merge")),
        ],
        ListType::Map(keys) => {
            // Volumes also drop the fields of a source no longer given (`retainKeys`).
            let strategy = if name == "volumes" {
                "merge,retainKeys"
            } else {
                "merge"
            };
            vec![
                mark(
                    "x-kubernetes-list-map-keys",
                    json!(keys.iter().map(|k| k.name).collect::<Vec<_>>()),
                ),
                mark("x-kubernetes-list-type", json!("map")),
                mark("x-kubernetes-patch-merge-key", json!(keys[0].name)),
                mark("x-kubernetes-patch-strategy", json!(strategy)),
            ]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_resource_has_a_schema() {
        for r in crate::store::builtin_resources() {
            assert!(
                BUILTIN.kind(&r.group, &r.version, &r.kind).is_some(),
                "{} has no schema",
                r.kind
            );
        }
    }

    #[test]
    fn kinds_carry_their_group_version_kind_and_lists_exist() {
        let d = &BUILTIN.definitions["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            d["x-kubernetes-group-version-kind"],
            json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
        );
        assert_eq!(
            BUILTIN.definitions["io.k8s.api.apps.v1.DeploymentList"]["properties"]["items"]["items"]
                ["allOf"][0]["$ref"],
            json!("#/components/schemas/io.k8s.api.apps.v1.Deployment")
        );
        assert_eq!(
            d["properties"]["spec"]["allOf"][0]["$ref"],
            json!("#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec")
        );
    }

    #[test]
    fn lists_carry_the_patch_extensions_kubectl_reads() {
        let pod_spec = &BUILTIN.definitions["io.k8s.api.core.v1.PodSpec"]["properties"];
        assert_eq!(
            pod_spec["containers"]["x-kubernetes-patch-merge-key"],
            "name"
        );
        assert_eq!(
            pod_spec["containers"]["x-kubernetes-patch-strategy"],
            "merge"
        );
        assert_eq!(
            pod_spec["containers"]["x-kubernetes-list-map-keys"],
            json!(["name"])
        );
        assert_eq!(
            pod_spec["volumes"]["x-kubernetes-patch-strategy"],
            "merge,retainKeys"
        );
        assert!(
            pod_spec["tolerations"]
                .get("x-kubernetes-patch-strategy")
                .is_none()
        );
        let container = &BUILTIN.definitions["io.k8s.api.core.v1.Container"]["properties"];
        assert_eq!(container["env"]["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(
            container["ports"]["x-kubernetes-list-map-keys"],
            json!(["containerPort", "protocol"])
        );
        let service = &BUILTIN.definitions["io.k8s.api.core.v1.ServiceSpec"]["properties"];
        assert_eq!(service["ports"]["x-kubernetes-patch-merge-key"], "port");
        let meta = &BUILTIN.definitions[OBJECT_META]["properties"];
        assert_eq!(meta["finalizers"]["x-kubernetes-list-type"], "set");
        assert_eq!(
            meta["ownerReferences"]["x-kubernetes-patch-merge-key"],
            "uid"
        );
        let spec = &BUILTIN.definitions["io.k8s.api.apps.v1.DeploymentSpec"]["properties"];
        assert_eq!(
            spec["strategy"]["x-kubernetes-patch-strategy"],
            "retainKeys"
        );
        assert_eq!(
            BUILTIN.definitions["io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"]["x-kubernetes-map-type"],
            "atomic"
        );
    }

    /// Where kube-openapi's `spec.Schema` expects a schema, there is an object (kubectl's
    /// query-parameter check decodes the whole document into those types).
    fn schemas_are_objects(v: &Value, path: &str) -> Result<(), String> {
        let Value::Object(m) = v else {
            return Err(format!("{path} is not a schema object"));
        };
        for key in ["properties", "patternProperties"] {
            for (n, c) in m.get(key).and_then(Value::as_object).into_iter().flatten() {
                schemas_are_objects(c, &format!("{path}/{key}/{n}"))?;
            }
        }
        for key in ["allOf", "oneOf", "anyOf"] {
            for (i, c) in m
                .get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                schemas_are_objects(c, &format!("{path}/{key}/{i}"))?;
            }
        }
        match m.get("items") {
            Some(Value::Array(items)) => {
                for (i, c) in items.iter().enumerate() {
                    schemas_are_objects(c, &format!("{path}/items/{i}"))?;
                }
            }
            Some(c) => schemas_are_objects(c, &format!("{path}/items"))?,
            None => {}
        }
        match m.get("additionalProperties") {
            Some(c @ Value::Object(_)) => {
                schemas_are_objects(c, &format!("{path}/additionalProperties"))
            }
            Some(Value::Bool(_)) | None => Ok(()),
            Some(_) => Err(format!(
                "{path}/additionalProperties is neither schema nor bool"
            )),
        }
    }

    #[test]
    fn every_schema_position_holds_a_schema_object() {
        for (name, def) in &BUILTIN.definitions {
            schemas_are_objects(def, name).unwrap_or_else(|e| panic!("{e}"));
        }
        let props = &BUILTIN.definitions["io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps"]
            ["properties"];
        assert_eq!(props["$ref"]["type"], "string");
    }

    #[test]
    fn int_or_string_is_one_of_integer_and_string() {
        let d = &BUILTIN.definitions["io.k8s.apimachinery.pkg.util.intstr.IntOrString"];
        assert_eq!(d["format"], "int-or-string");
        assert_eq!(d["oneOf"], json!([{"type": "integer"}, {"type": "string"}]));
    }
}
