//! The generator of `src/protobuf/schema.txt`, the table the sim's API uses to decode
//! `application/vnd.kubernetes.protobuf` request bodies, and the test that the committed table is
//! what the generator makes from the crates the workspace locks.
//!
//! It reads two crates' sources from cargo's registry (found with `cargo metadata`):
//! - `k8s-pb` (prost structs): every message's field numbers and wire types, and which kinds
//!   exist (`impl crate::Resource for X` with `API_VERSION` and `KIND`);
//! - `k8s-openapi` (serde impls): each field's exact JSON name (`externalIPs`, `$ref`,
//!   `x-kubernetes-list-type`, which snake_case loses) and whether the field is required (not an
//!   `Option`), matched to k8s-pb's field by its name with case, `_`, `-`, `$` and `r#` ignored.
//!
//! Only the messages reachable from the kinds the sim serves (`store::builtin_resources`),
//! `DeleteOptions` and `Eviction` are written. Regenerate after bumping either crate:
//!
//! ```sh
//! PADDOCK_SIM_REGEN_PROTO=1 cargo test -p paddock-sim --test protobuf_table
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// Numbers and bools that are Go value fields (not pointers) tagged `omitempty`: Go's protobuf
/// marshaller writes them even when zero, its JSON leaves a zero out, so the decoder drops their
/// zero (flag `omitempty`). A pointer's explicit zero (`replicas: 0`) is kept. Neither k8s-pb nor
/// k8s-openapi carries pointer-ness, so this list is of facts read from Kubernetes' Go types
/// (`k8s.io/api`, `k8s.io/apimachinery`, `k8s.io/apiextensions-apiserver` `types.go`, v1.35):
/// every non-pointer `int32`/`int64`/`bool`/`float64` field whose json tag has `omitempty`, in
/// the messages this table holds. Check it again when bumping k8s-pb.
const GO_VALUE_FIELDS: &[(&str, &[&str])] = &[
    (
        "apiextensions.v1.CustomResourceColumnDefinition",
        &["priority"],
    ),
    (
        "apiextensions.v1.CustomResourceDefinitionCondition",
        &["observedGeneration"],
    ),
    (
        "apiextensions.v1.CustomResourceDefinitionSpec",
        &["preserveUnknownFields"],
    ),
    (
        "apiextensions.v1.CustomResourceDefinitionStatus",
        &["observedGeneration"],
    ),
    (
        "apiextensions.v1.CustomResourceDefinitionVersion",
        &["deprecated"],
    ),
    (
        "apiextensions.v1.JSONSchemaProps",
        &[
            "exclusiveMaximum",
            "exclusiveMinimum",
            "nullable",
            "uniqueItems",
            "x-kubernetes-embedded-resource",
            "x-kubernetes-int-or-string",
        ],
    ),
    ("apps.v1.DaemonSetSpec", &["minReadySeconds"]),
    (
        "apps.v1.DaemonSetStatus",
        &[
            "numberAvailable",
            "numberUnavailable",
            "observedGeneration",
            "updatedNumberScheduled",
        ],
    ),
    ("apps.v1.DeploymentSpec", &["minReadySeconds", "paused"]),
    (
        "apps.v1.DeploymentStatus",
        &[
            "availableReplicas",
            "observedGeneration",
            "readyReplicas",
            "replicas",
            "unavailableReplicas",
            "updatedReplicas",
        ],
    ),
    ("apps.v1.ReplicaSetSpec", &["minReadySeconds"]),
    (
        "apps.v1.ReplicaSetStatus",
        &[
            "availableReplicas",
            "fullyLabeledReplicas",
            "observedGeneration",
            "readyReplicas",
        ],
    ),
    ("apps.v1.StatefulSetSpec", &["minReadySeconds"]),
    (
        "apps.v1.StatefulSetStatus",
        &[
            "currentReplicas",
            "observedGeneration",
            "readyReplicas",
            "updatedReplicas",
        ],
    ),
    (
        "autoscaling.v2.HorizontalPodAutoscalerStatus",
        &["currentReplicas"],
    ),
    ("batch.v1.JobStatus", &["active", "failed", "succeeded"]),
    (
        "core.v1.AWSElasticBlockStoreVolumeSource",
        &["partition", "readOnly"],
    ),
    ("core.v1.AzureFileVolumeSource", &["readOnly"]),
    ("core.v1.CephFSVolumeSource", &["readOnly"]),
    ("core.v1.CinderVolumeSource", &["readOnly"]),
    ("core.v1.Container", &["stdin", "stdinOnce", "tty"]),
    ("core.v1.ContainerImage", &["sizeBytes"]),
    ("core.v1.ContainerPort", &["hostPort"]),
    ("core.v1.ContainerStateTerminated", &["signal"]),
    (
        "core.v1.EphemeralContainerCommon",
        &["stdin", "stdinOnce", "tty"],
    ),
    ("core.v1.Event", &["count"]),
    ("core.v1.EventSeries", &["count"]),
    ("core.v1.FCVolumeSource", &["readOnly"]),
    ("core.v1.FlexVolumeSource", &["readOnly"]),
    (
        "core.v1.GCEPersistentDiskVolumeSource",
        &["partition", "readOnly"],
    ),
    ("core.v1.GlusterfsVolumeSource", &["readOnly"]),
    (
        "core.v1.ISCSIVolumeSource",
        &["chapAuthDiscovery", "chapAuthSession", "readOnly"],
    ),
    ("core.v1.NFSVolumeSource", &["readOnly"]),
    ("core.v1.NodeSpec", &["unschedulable"]),
    ("core.v1.PersistentVolumeClaimVolumeSource", &["readOnly"]),
    ("core.v1.PodCondition", &["observedGeneration"]),
    ("core.v1.PodSpec", &["hostIPC", "hostNetwork", "hostPID"]),
    ("core.v1.PodStatus", &["observedGeneration"]),
    ("core.v1.PortworxVolumeSource", &["readOnly"]),
    (
        "core.v1.Probe",
        &[
            "failureThreshold",
            "initialDelaySeconds",
            "periodSeconds",
            "successThreshold",
            "timeoutSeconds",
        ],
    ),
    ("core.v1.QuobyteVolumeSource", &["readOnly"]),
    ("core.v1.RBDVolumeSource", &["readOnly"]),
    ("core.v1.ScaleIOVolumeSource", &["readOnly", "sslEnabled"]),
    ("core.v1.ServicePort", &["nodePort"]),
    (
        "core.v1.ServiceSpec",
        &["healthCheckNodePort", "publishNotReadyAddresses"],
    ),
    ("core.v1.StorageOSVolumeSource", &["readOnly"]),
    ("core.v1.VolumeMount", &["readOnly"]),
    ("core.v1.VolumeMountStatus", &["readOnly"]),
    ("meta.v1.Condition", &["observedGeneration"]),
    ("meta.v1.ObjectMeta", &["generation"]),
    (
        "policy.v1.PodDisruptionBudgetStatus",
        &["observedGeneration"],
    ),
];

const TABLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/protobuf/schema.txt");

/// A field of a k8s-pb message.
#[derive(Debug, Clone)]
struct PbField {
    tag: u32,
    rust: String,
    /// `string`, `bytes`, `bool`, `int32`, `int64`, `double`, or a message's full name.
    ty: String,
    repeated: bool,
    map: bool,
}

#[derive(Debug, Default)]
struct PbMessage {
    /// Module path under k8s-pb's `src/` (`api/core/v1`).
    module: String,
    name: String,
    fields: Vec<PbField>,
}

/// A k8s-openapi struct: JSON name and requiredness by normalized field name.
#[derive(Debug, Default, Clone)]
struct OaStruct {
    name: String,
    fields: HashMap<String, (String, bool)>,
}

fn norm(s: &str) -> String {
    s.trim_start_matches("r#")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn crate_dirs() -> (PathBuf, String, PathBuf, String) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(&manifest)
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let find = |name: &str| {
        let p = meta["packages"]
            .as_array()
            .expect("packages")
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name} is in the workspace's dependency graph"));
        let dir = Path::new(p["manifest_path"].as_str().expect("manifest_path"))
            .parent()
            .expect("crate dir")
            .join("src");
        (dir, p["version"].as_str().expect("version").to_string())
    };
    let (pb, pbv) = find("k8s-pb");
    let (oa, oav) = find("k8s-openapi");
    (pb, pbv, oa, oav)
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// Module path of a k8s-pb `mod.rs` or a k8s-openapi `x.rs` relative to `root`.
fn module_of(root: &Path, file: &Path) -> String {
    let dir = file.parent().expect("parent");
    dir.strip_prefix(root)
        .expect("under root")
        .to_string_lossy()
        .replace('\\', "/")
}

/// The message a k8s-pb field type names, resolved to `module/Name`.
fn resolve(module: &str, ty: &str) -> String {
    let mut t = ty.to_string();
    for w in [
        "::core::option::Option<",
        "::prost::alloc::vec::Vec<",
        "::prost::alloc::boxed::Box<",
    ] {
        if let Some(rest) = t.strip_prefix(w) {
            t = rest.to_string();
        }
    }
    if let Some(rest) = t.strip_prefix("::prost::alloc::collections::BTreeMap<") {
        t = rest
            .split_once(',')
            .expect("map value")
            .1
            .trim_start()
            .to_string();
    }
    let t = t.trim_end_matches(['>', ',']);
    let mut segs: Vec<&str> = module.split('/').filter(|s| !s.is_empty()).collect();
    let parts: Vec<&str> = t.split("::").collect();
    let mut rest = &parts[..];
    while let Some(("super", r)) = rest.split_first().map(|(a, b)| (*a, b)) {
        segs.pop();
        rest = r;
    }
    let (name, mods) = rest.split_last().expect("type name");
    segs.extend(mods.iter());
    format!("{}/{}", segs.join("/"), name)
}

/// (message path, apiVersion, kind) of a k8s-pb `impl crate::Resource`.
type Kind = (String, String, String);

fn parse_pb(root: &Path) -> (BTreeMap<String, PbMessage>, Vec<Kind>) {
    let mut files = Vec::new();
    rs_files(root, &mut files);
    let mut messages = BTreeMap::new();
    let mut kinds = Vec::new();
    for file in files {
        let module = module_of(root, &file);
        let text = std::fs::read_to_string(&file).expect("read k8s-pb source");
        let lines: Vec<&str> = text.lines().collect();
        let mut i = 0;
        let mut current: Option<PbMessage> = None;
        let mut resource: Option<Kind> = None;
        while i < lines.len() {
            let line = lines[i].trim();
            if let Some(name) = line
                .strip_prefix("pub struct ")
                .and_then(|r| r.strip_suffix(" {}"))
            {
                let key = format!("{module}/{name}");
                messages.insert(
                    key,
                    PbMessage {
                        module: module.clone(),
                        name: name.to_string(),
                        fields: Vec::new(),
                    },
                );
            } else if let Some(name) = line
                .strip_prefix("pub struct ")
                .and_then(|r| r.strip_suffix(" {"))
            {
                current = Some(PbMessage {
                    module: module.clone(),
                    name: name.to_string(),
                    fields: Vec::new(),
                });
            } else if let Some(name) = line
                .strip_prefix("impl crate::Resource for ")
                .and_then(|r| r.strip_suffix(" {"))
            {
                resource = Some((format!("{module}/{name}"), String::new(), String::new()));
            } else if let Some(r) = resource.as_mut()
                && let Some(v) = line.strip_prefix("const API_VERSION: &'static str = ")
            {
                r.1 = v.trim_end_matches(';').trim_matches('"').to_string();
            } else if let Some(r) = resource.as_mut()
                && let Some(v) = line.strip_prefix("const KIND: &'static str = ")
            {
                r.2 = v.trim_end_matches(';').trim_matches('"').to_string();
            } else if line == "}" && lines[i].starts_with('}') {
                if let Some(m) = current.take() {
                    messages.insert(format!("{}/{}", m.module, m.name), m);
                }
                if let Some(r) = resource.take() {
                    kinds.push(r);
                }
            } else if let Some(attr) = line
                .strip_prefix("#[prost(")
                .and_then(|r| r.strip_suffix(")]"))
                && let Some(m) = current.as_mut()
            {
                // The field: `pub name: Type,` possibly over several lines.
                let mut decl = String::new();
                let mut depth = 0i32;
                loop {
                    i += 1;
                    let l = lines[i].trim();
                    for c in l.chars() {
                        match c {
                            '<' => depth += 1,
                            '>' => depth -= 1,
                            _ => {}
                        }
                    }
                    decl.push_str(l);
                    if depth == 0 && l.ends_with(',') {
                        break;
                    }
                }
                let decl = decl.strip_prefix("pub ").expect("pub field");
                let (rust, ty) = decl.split_once(':').expect("field type");
                let tag: u32 = attr
                    .split("tag = \"")
                    .nth(1)
                    .and_then(|t| t.split('"').next())
                    .and_then(|t| t.parse().ok())
                    .expect("tag");
                let kind = match attr.strip_prefix("btree_map = \"") {
                    Some(r) => format!("btree_map = \"{}\"", r.split('"').next().expect("map")),
                    None => attr.split(',').next().expect("kind").trim().to_string(),
                };
                let kind = kind.as_str();
                let repeated = attr.contains("repeated");
                let (ty, map) = if let Some(map) = kind.strip_prefix("btree_map = \"string, ") {
                    let v = map.trim_end_matches('"');
                    let v = if v == "message" {
                        resolve(&m.module, ty.trim())
                    } else {
                        v.to_string()
                    };
                    (v, true)
                } else if kind == "message" {
                    (resolve(&m.module, ty.trim()), false)
                } else if kind.starts_with("bytes") {
                    ("bytes".to_string(), false)
                } else {
                    (kind.to_string(), false)
                };
                assert!(
                    ["string", "bytes", "bool", "int32", "int64", "double"].contains(&ty.as_str())
                        || ty.contains('/'),
                    "unexpected prost kind {attr} in {}",
                    m.name
                );
                m.fields.push(PbField {
                    tag,
                    rust: rust.trim().to_string(),
                    ty,
                    repeated,
                    map,
                });
            }
            i += 1;
        }
    }
    (messages, kinds)
}

fn parse_openapi(root: &Path) -> HashMap<String, OaStruct> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir(root)
        .expect("k8s-openapi src")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("v1_"))
        })
        .collect();
    // Newest first: a struct is taken from the newest version that has it.
    versions.sort_by_key(|p| {
        std::cmp::Reverse(
            p.file_name()
                .and_then(|n| n.to_string_lossy()[3..].parse::<u32>().ok())
                .unwrap_or(0),
        )
    });
    let mut out: HashMap<String, OaStruct> = HashMap::new();
    for v in versions {
        let mut files = Vec::new();
        rs_files(&v, &mut files);
        for file in files {
            let text = std::fs::read_to_string(&file).expect("read k8s-openapi source");
            // `pub struct X {`, or a newtype `pub struct X(…);` / `pub enum X {` whose JSON is
            // not an object (JSON, JSONSchemaPropsOrBool, ...): only its name is used.
            let Some(name) = text
                .lines()
                .find_map(|l| {
                    l.strip_prefix("pub struct ")
                        .or_else(|| l.strip_prefix("pub enum "))
                })
                .and_then(|r| r.split([' ', '(', '{']).next())
            else {
                continue;
            };
            let key = format!("{}/{}", module_of(&v, &file), norm(name));
            if out.contains_key(&key) {
                continue;
            }
            // Field types from the struct, JSON names from the Deserialize impl.
            let mut optional: HashMap<String, bool> = HashMap::new();
            let mut in_struct = false;
            for l in text.lines() {
                if l.starts_with("pub struct ") {
                    in_struct = true;
                } else if in_struct && l.starts_with('}') {
                    break;
                } else if in_struct
                    && let Some(decl) = l.trim().strip_prefix("pub ")
                    && let Some((rust, ty)) = decl.split_once(':')
                {
                    optional.insert(rust.to_string(), ty.trim().starts_with("Option<"));
                }
            }
            let mut fields = HashMap::new();
            for l in text.lines() {
                let l = l.trim();
                if let Some((json, rest)) = l
                    .strip_prefix('"')
                    .and_then(|r| r.split_once("\" => Field::Key_"))
                {
                    let rust = rest.trim_end_matches(',');
                    let required = optional.get(rust).is_some_and(|o| !o);
                    fields.insert(norm(json), (json.to_string(), required));
                }
            }
            out.insert(
                key,
                OaStruct {
                    name: name.to_string(),
                    fields,
                },
            );
        }
    }
    out
}

/// A short, unique name for a k8s-pb module: `api/core/v1` → `core.v1`,
/// `apimachinery/pkg/apis/meta/v1` → `meta.v1`, `apimachinery/pkg/util/intstr` → `intstr`.
fn short_module(module: &str) -> String {
    let segs: Vec<&str> = module.split('/').collect();
    let skip = [
        "api",
        "apimachinery",
        "apiextensions_apiserver",
        "pkg",
        "apis",
        "util",
    ];
    let mut i = 0;
    while i < segs.len() && skip.contains(&segs[i]) {
        i += 1;
    }
    segs[i..].join(".")
}

fn generate() -> String {
    let (pb_root, pb_version, oa_root, oa_version) = crate_dirs();
    let (messages, kinds) = parse_pb(&pb_root);
    let openapi = parse_openapi(&oa_root);

    // Roots: the kinds the sim serves, Eviction and DeleteOptions.
    let mut roots: Vec<(String, String, String)> = Vec::new();
    for r in paddock_sim::store::builtin_resources() {
        let api_version = r.api_version();
        let found = kinds
            .iter()
            .find(|(_, av, k)| *av == api_version && *k == r.kind)
            .unwrap_or_else(|| panic!("k8s-pb has no {api_version} {}", r.kind));
        roots.push((api_version, r.kind.clone(), found.0.clone()));
    }
    roots.push((
        "policy/v1".into(),
        "Eviction".into(),
        "api/policy/v1/Eviction".into(),
    ));
    roots.push((
        "*".into(),
        "DeleteOptions".into(),
        "apimachinery/pkg/apis/meta/v1/DeleteOptions".into(),
    ));

    // Every message reachable from the roots.
    let mut reachable = BTreeSet::new();
    let mut todo: Vec<String> = roots.iter().map(|r| r.2.clone()).collect();
    while let Some(m) = todo.pop() {
        if !reachable.insert(m.clone()) {
            continue;
        }
        let msg = messages
            .get(&m)
            .unwrap_or_else(|| panic!("k8s-pb has no message {m}"));
        for f in &msg.fields {
            if f.ty.contains('/') {
                todo.push(f.ty.clone());
            }
        }
    }

    // Names: the short module and Kubernetes' own type name (k8s-openapi's) where known.
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for m in &reachable {
        let msg = &messages[m];
        let oa = openapi.get(&format!("{}/{}", msg.module, norm(&msg.name)));
        let ty = oa
            .map(|o| o.name.clone())
            .unwrap_or_else(|| msg.name.clone());
        names.insert(m.clone(), format!("{}.{ty}", short_module(&msg.module)));
    }
    let unique: BTreeSet<&String> = names.values().collect();
    assert_eq!(unique.len(), names.len(), "message short names collide");

    let mut out = String::new();
    out.push_str(&format!(
        "# The protobuf messages the sim's API decodes (application/vnd.kubernetes.protobuf).\n\
         # Generated by tests/sim/tests/protobuf_table.rs from k8s-pb {pb_version} (field numbers,\n\
         # wire types, kinds) and k8s-openapi {oa_version} (JSON names, required fields). Do not edit;\n\
         # regenerate: PADDOCK_SIM_REGEN_PROTO=1 cargo test -p paddock-sim --test protobuf_table\n\
         #\n\
         # kind APIVERSION KIND MESSAGE      a body the server accepts (APIVERSION * = any)\n\
         # message NAME                      then one line per field:\n\
         # TAG JSONNAME TYPE [FLAGS]         TYPE: string bytes bool int32 int64 double or a\n\
         #                                   message; []TYPE repeated, {{}}TYPE map from string;\n\
         #                                   JSONNAME * = a Go struct inlined in its parent's JSON\n\
         #   required: not omitempty in Go (an empty string is kept)\n\
         #   omitempty: a Go value field (not a pointer): a zero is left out, as Go's JSON does\n"
    ));
    let mut guessed = Vec::new();
    let value_field = |msg: &str, json: &str| {
        GO_VALUE_FIELDS
            .iter()
            .any(|(m, fs)| *m == msg && fs.contains(&json))
    };
    let mut used_value_fields = 0;
    for (av, kind, m) in &roots {
        out.push_str(&format!("kind {av} {kind} {}\n", names[m]));
    }
    let mut order: Vec<&String> = reachable.iter().collect();
    order.sort_by_key(|m| &names[*m]);
    for m in order {
        let msg = &messages[m];
        let oa = openapi.get(&format!("{}/{}", msg.module, norm(&msg.name)));
        out.push_str(&format!("message {}\n", names[m]));
        let mut fields = msg.fields.clone();
        fields.sort_by_key(|f| f.tag);
        for f in fields {
            let (json, required) = match oa.and_then(|o| o.fields.get(&norm(&f.rust))) {
                Some((j, r)) => (j.clone(), *r),
                None => {
                    // Not in k8s-openapi: the special types (Time, IntOrString, ...) whose
                    // JSON the decoder writes itself, or a field newer than k8s-openapi.
                    let rust = f.rust.trim_start_matches("r#");
                    let mut j = String::new();
                    let mut up = false;
                    for c in rust.chars() {
                        if c == '_' {
                            up = true;
                        } else if up {
                            j.push(c.to_ascii_uppercase());
                            up = false;
                        } else {
                            j.push(c);
                        }
                    }
                    let inline = oa.is_some_and(|o| {
                        messages.get(&f.ty).is_some_and(|inner| {
                            !inner.fields.is_empty()
                                && inner
                                    .fields
                                    .iter()
                                    .all(|g| o.fields.contains_key(&norm(&g.rust)))
                        })
                    });
                    if inline {
                        // A Go struct embedded with `json:",inline"`: its fields are the
                        // parent's in JSON.
                        ("*".to_string(), false)
                    } else {
                        // (Special types, whose JSON is not an object, have no fields there.)
                        if oa.is_some_and(|o| !o.fields.is_empty()) {
                            guessed.push(format!("{}.{j}", names[m]));
                        }
                        (j, false)
                    }
                }
            };
            let ty = if f.ty.contains('/') {
                names[&f.ty].clone()
            } else {
                f.ty.clone()
            };
            let prefix = if f.map {
                "{}"
            } else if f.repeated {
                "[]"
            } else {
                ""
            };
            let req = if required { " required" } else { "" };
            let omit = if value_field(&names[m], &json) {
                used_value_fields += 1;
                " omitempty"
            } else {
                ""
            };
            out.push_str(&format!("{} {json} {prefix}{ty}{req}{omit}\n", f.tag));
        }
    }
    let listed: usize = GO_VALUE_FIELDS.iter().map(|(_, fs)| fs.len()).sum();
    assert_eq!(
        used_value_fields, listed,
        "every GO_VALUE_FIELDS entry names a field of the table"
    );
    if !guessed.is_empty() {
        // Fields newer than k8s-openapi's newest version: their camelCase is guessed.
        out.push_str(&format!(
            "# JSON names guessed from snake_case (not in k8s-openapi): {}\n",
            guessed.join(" ")
        ));
    }
    out
}

#[test]
fn committed_table_is_what_k8s_pb_and_k8s_openapi_give() {
    let table = generate();
    if std::env::var_os("PADDOCK_SIM_REGEN_PROTO").is_some() {
        std::fs::write(TABLE, &table).expect("write the table");
        return;
    }
    let committed = std::fs::read_to_string(TABLE).unwrap_or_default();
    assert!(
        committed == table,
        "src/protobuf/schema.txt is stale: run \
         PADDOCK_SIM_REGEN_PROTO=1 cargo test -p paddock-sim --test protobuf_table"
    );
}
