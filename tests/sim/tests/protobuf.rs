//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`).
//!
//! The decoder against real encodings: typed objects built with k8s-pb and encoded by prost
//! (as client-go's generated marshallers would, in Kubernetes' `k8s\0` + `runtime.Unknown`
//! envelope) must decode to the JSON written here by hand, field for field. Then the API's
//! answers to bad bodies, and the real kubectl and helm against an in-process cluster.

use std::collections::BTreeMap;

use k8s_pb::api::admissionregistration::v1 as admission;
use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::core::v1 as core;
use k8s_pb::api::policy::v1 as policy;
use k8s_pb::apiextensions_apiserver::pkg::apis::apiextensions::v1 as ext;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use paddock_sim::protobuf::decode;
use prost::Message;
use serde_json::{Value, json};

const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// 2026-01-02T03:04:05Z.
const T: i64 = 1_767_323_045;

fn time(secs: i64) -> Option<meta::Time> {
    Some(meta::Time {
        seconds: Some(secs),
        nanos: Some(0),
    })
}

fn quantity(q: &str) -> Quantity {
    Quantity { string: s(q) }
}

fn int_or_string_int(i: i32) -> Option<IntOrString> {
    Some(IntOrString {
        r#type: Some(0),
        int_val: Some(i),
        str_val: s(""),
    })
}

fn int_or_string_str(v: &str) -> Option<IntOrString> {
    Some(IntOrString {
        r#type: Some(1),
        int_val: Some(0),
        str_val: s(v),
    })
}

/// A body as client-go sends it: magic, then `runtime.Unknown` with the object in `raw` (Go
/// writes the empty contentEncoding and contentType too).
fn envelope(api_version: &str, kind: &str, object: &impl Message) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: s(api_version),
            kind: s(kind),
        }),
        raw: Some(object.encode_to_vec()),
        content_encoding: s(""),
        content_type: s(""),
    };
    let mut body = b"k8s\0".to_vec();
    body.extend(unknown.encode_to_vec());
    body
}

fn assert_decodes(body: &[u8], expected: Value) {
    let got = decode(body).expect("decodes");
    if got != expected {
        panic!(
            "decoded JSON differs\n got: {}\nwant: {}",
            serde_json::to_string_pretty(&got).unwrap_or_default(),
            serde_json::to_string_pretty(&expected).unwrap_or_default()
        );
    }
}

fn object_meta(name: &str, namespace: &str) -> Option<meta::ObjectMeta> {
    Some(meta::ObjectMeta {
        name: s(name),
        namespace: s(namespace),
        // What Go writes for fields the client left unset: empty strings, a zero generation,
        // a zero creationTimestamp (an empty Time message).
        generate_name: s(""),
        uid: s(""),
        resource_version: s(""),
        generation: Some(0),
        creation_timestamp: Some(meta::Time::default()),
        ..Default::default()
    })
}

#[test]
fn a_pod_with_containers_ports_probes_resources_env_and_volumes() {
    let container = core::Container {
        name: s("web"),
        image: s("nginx:1.27"),
        command: strings(&["sh"]),
        args: strings(&["-c", "exec nginx"]),
        working_dir: s(""),
        ports: vec![core::ContainerPort {
            name: s("http"),
            container_port: Some(8080),
            protocol: s("TCP"),
            host_port: Some(0),
            host_ip: s(""),
        }],
        env: vec![
            core::EnvVar {
                name: s("PLAIN"),
                value: s("1"),
                value_from: None,
            },
            core::EnvVar {
                name: s("EMPTY"),
                value: s(""),
                value_from: None,
            },
            core::EnvVar {
                name: s("TOKEN"),
                value: s(""),
                value_from: Some(core::EnvVarSource {
                    secret_key_ref: Some(core::SecretKeySelector {
                        local_object_reference: Some(core::LocalObjectReference {
                            name: s("creds"),
                        }),
                        key: s("token"),
                        optional: Some(false),
                    }),
                    ..Default::default()
                }),
            },
        ],
        resources: Some(core::ResourceRequirements {
            limits: [
                ("cpu".to_string(), quantity("500m")),
                ("memory".to_string(), quantity("128Mi")),
            ]
            .into(),
            requests: [("cpu".to_string(), quantity("250m"))].into(),
            claims: vec![],
        }),
        volume_mounts: vec![
            core::VolumeMount {
                name: s("data"),
                mount_path: s("/data"),
                read_only: Some(true),
                sub_path: s(""),
                ..Default::default()
            },
            core::VolumeMount {
                name: s("cfg"),
                mount_path: s("/cfg"),
                read_only: Some(false),
                ..Default::default()
            },
        ],
        liveness_probe: Some(core::Probe {
            handler: Some(core::ProbeHandler {
                http_get: Some(core::HttpGetAction {
                    path: s("/healthz"),
                    port: int_or_string_str("http"),
                    host: s(""),
                    scheme: s("HTTP"),
                    http_headers: vec![core::HttpHeader {
                        name: s("X-Probe"),
                        value: s("1"),
                    }],
                }),
                ..Default::default()
            }),
            initial_delay_seconds: Some(5),
            timeout_seconds: Some(0),
            period_seconds: Some(10),
            success_threshold: Some(0),
            failure_threshold: Some(3),
            termination_grace_period_seconds: None,
        }),
        readiness_probe: Some(core::Probe {
            handler: Some(core::ProbeHandler {
                tcp_socket: Some(core::TcpSocketAction {
                    port: int_or_string_int(8080),
                    host: s(""),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        security_context: Some(core::SecurityContext {
            run_as_non_root: Some(false),
            allow_privilege_escalation: Some(false),
            capabilities: Some(core::Capabilities {
                add: vec![],
                drop: strings(&["ALL"]),
            }),
            ..Default::default()
        }),
        image_pull_policy: s("IfNotPresent"),
        stdin: Some(false),
        stdin_once: Some(false),
        tty: Some(false),
        ..Default::default()
    };
    let pod = core::Pod {
        metadata: Some(meta::ObjectMeta {
            labels: map(&[("app", "web")]),
            annotations: map(&[("example.com/note", "")]),
            creation_timestamp: time(T),
            uid: s("u-1"),
            owner_references: vec![meta::OwnerReference {
                api_version: s("apps/v1"),
                kind: s("ReplicaSet"),
                name: s("web-5d4f"),
                uid: s("u-0"),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }],
            finalizers: strings(&["example.com/keep"]),
            managed_fields: vec![meta::ManagedFieldsEntry {
                manager: s("kubectl"),
                operation: s("Update"),
                api_version: s("v1"),
                time: time(T),
                fields_type: s("FieldsV1"),
                fields_v1: Some(meta::FieldsV1 {
                    raw: Some(br#"{"f:metadata":{"f:labels":{".":{},"f:app":{}}}}"#.to_vec()),
                }),
                subresource: s(""),
            }],
            ..object_meta("web", "apps").expect("meta")
        }),
        spec: Some(core::PodSpec {
            containers: vec![container],
            init_containers: vec![core::Container {
                name: s("proxy"),
                image: s("istio/proxyv2:1.29.0"),
                restart_policy: s("Always"),
                ..Default::default()
            }],
            volumes: vec![
                core::Volume {
                    name: s("data"),
                    volume_source: Some(core::VolumeSource {
                        empty_dir: Some(core::EmptyDirVolumeSource {
                            medium: s(""),
                            size_limit: Some(quantity("1Gi")),
                        }),
                        ..Default::default()
                    }),
                },
                core::Volume {
                    name: s("cfg"),
                    volume_source: Some(core::VolumeSource {
                        config_map: Some(core::ConfigMapVolumeSource {
                            local_object_reference: Some(core::LocalObjectReference {
                                name: s("web-config"),
                            }),
                            items: vec![core::KeyToPath {
                                key: s("a"),
                                path: s("a.txt"),
                                mode: None,
                            }],
                            default_mode: Some(420),
                            optional: None,
                        }),
                        ..Default::default()
                    }),
                },
                core::Volume {
                    name: s("sec"),
                    volume_source: Some(core::VolumeSource {
                        secret: Some(core::SecretVolumeSource {
                            secret_name: s("creds"),
                            optional: Some(true),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                },
            ],
            restart_policy: s("Always"),
            termination_grace_period_seconds: Some(0),
            dns_policy: s("ClusterFirst"),
            node_selector: map(&[("kubernetes.io/os", "linux")]),
            service_account_name: s("default"),
            automount_service_account_token: Some(false),
            host_network: Some(false),
            host_pid: Some(false),
            host_ipc: Some(false),
            security_context: Some(core::PodSecurityContext {
                run_as_user: Some(1000),
                fs_group: Some(2000),
                ..Default::default()
            }),
            tolerations: vec![core::Toleration {
                key: s("node.kubernetes.io/not-ready"),
                operator: s("Exists"),
                value: s(""),
                effect: s("NoExecute"),
                toleration_seconds: Some(300),
            }],
            host_aliases: vec![core::HostAlias {
                ip: s("10.1.2.3"),
                hostnames: strings(&["db.local"]),
            }],
            ..Default::default()
        }),
        status: Some(core::PodStatus {
            phase: s("Pending"),
            host_ip: s("172.18.0.2"),
            pod_ips: vec![core::PodIp { ip: s("10.42.0.5") }],
            start_time: Some(meta::Time {
                seconds: Some(0),
                nanos: None,
            }),
            conditions: vec![core::PodCondition {
                r#type: s("PodScheduled"),
                status: s("True"),
                last_probe_time: Some(meta::Time::default()),
                last_transition_time: time(T),
                observed_generation: Some(0),
                ..Default::default()
            }],
            ..Default::default()
        }),
    };
    assert_decodes(
        &envelope("v1", "Pod", &pod),
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "web", "namespace": "apps", "uid": "u-1",
                "creationTimestamp": "2026-01-02T03:04:05Z",
                "labels": {"app": "web"},
                "annotations": {"example.com/note": ""},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "web-5d4f", "uid": "u-0", "controller": true,
                    "blockOwnerDeletion": true}],
                "finalizers": ["example.com/keep"],
                "managedFields": [{"manager": "kubectl", "operation": "Update",
                    "apiVersion": "v1", "time": "2026-01-02T03:04:05Z",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}}}],
            },
            "spec": {
                "volumes": [
                    {"name": "data", "emptyDir": {"sizeLimit": "1Gi"}},
                    {"name": "cfg", "configMap": {"name": "web-config",
                        "items": [{"key": "a", "path": "a.txt"}], "defaultMode": 420}},
                    {"name": "sec", "secret": {"secretName": "creds", "optional": true}},
                ],
                "initContainers": [{"name": "proxy", "image": "istio/proxyv2:1.29.0",
                    "restartPolicy": "Always"}],
                "containers": [{
                    "name": "web", "image": "nginx:1.27",
                    "command": ["sh"], "args": ["-c", "exec nginx"],
                    "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                    "env": [
                        {"name": "PLAIN", "value": "1"},
                        {"name": "EMPTY"},
                        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds",
                            "key": "token", "optional": false}}},
                    ],
                    "resources": {"limits": {"cpu": "500m", "memory": "128Mi"},
                        "requests": {"cpu": "250m"}},
                    "volumeMounts": [
                        {"name": "data", "mountPath": "/data", "readOnly": true},
                        {"name": "cfg", "mountPath": "/cfg"},
                    ],
                    "livenessProbe": {
                        "httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP",
                            "httpHeaders": [{"name": "X-Probe", "value": "1"}]},
                        "initialDelaySeconds": 5, "periodSeconds": 10, "failureThreshold": 3,
                    },
                    "readinessProbe": {"tcpSocket": {"port": 8080}},
                    "imagePullPolicy": "IfNotPresent",
                    "securityContext": {"capabilities": {"drop": ["ALL"]},
                        "runAsNonRoot": false, "allowPrivilegeEscalation": false},
                }],
                "restartPolicy": "Always",
                "terminationGracePeriodSeconds": 0,
                "dnsPolicy": "ClusterFirst",
                "nodeSelector": {"kubernetes.io/os": "linux"},
                "serviceAccountName": "default",
                "automountServiceAccountToken": false,
                "securityContext": {"runAsUser": 1000, "fsGroup": 2000},
                "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                    "effect": "NoExecute", "tolerationSeconds": 300}],
                "hostAliases": [{"ip": "10.1.2.3", "hostnames": ["db.local"]}],
            },
            "status": {
                "phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "True",
                    "lastTransitionTime": "2026-01-02T03:04:05Z"}],
                "hostIP": "172.18.0.2",
                "podIPs": [{"ip": "10.42.0.5"}],
                "startTime": "1970-01-01T00:00:00Z",
            },
        }),
    );
}

#[test]
fn a_deployment_keeps_explicit_zeros_of_pointers_and_drops_go_value_zeros() {
    let labels = map(&[("app", "web")]);
    let deployment = apps::Deployment {
        metadata: object_meta("web", "apps"),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(0),
            selector: Some(meta::LabelSelector {
                match_labels: labels.clone(),
                match_expressions: vec![meta::LabelSelectorRequirement {
                    key: s("tier"),
                    operator: s("In"),
                    values: strings(&["a", "b"]),
                }],
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(meta::ObjectMeta {
                    labels,
                    ..object_meta("", "").expect("meta")
                }),
                spec: Some(core::PodSpec {
                    containers: vec![core::Container {
                        name: s("web"),
                        image: s("nginx"),
                        resources: Some(core::ResourceRequirements::default()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            }),
            strategy: Some(apps::DeploymentStrategy {
                r#type: s("RollingUpdate"),
                rolling_update: Some(apps::RollingUpdateDeployment {
                    max_unavailable: int_or_string_int(0),
                    max_surge: int_or_string_str("25%"),
                }),
            }),
            min_ready_seconds: Some(0),
            revision_history_limit: Some(0),
            paused: Some(false),
            progress_deadline_seconds: Some(600),
        }),
        status: Some(apps::DeploymentStatus {
            observed_generation: Some(0),
            replicas: Some(0),
            updated_replicas: Some(0),
            ready_replicas: Some(0),
            available_replicas: Some(0),
            unavailable_replicas: Some(0),
            ..Default::default()
        }),
    };
    assert_decodes(
        &envelope("apps/v1", "Deployment", &deployment),
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "apps"},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "web"},
                    "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx", "resources": {}}]}},
                "strategy": {"type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}},
                "revisionHistoryLimit": 0,
                "progressDeadlineSeconds": 600,
            },
            "status": {},
        }),
    );
}

#[test]
fn a_secret_with_binary_data_and_a_config_map() {
    let secret = core::Secret {
        metadata: object_meta("creds", "apps"),
        data: [
            ("bin".to_string(), vec![0u8, 1, 2, 0xff, 0xfe]),
            ("txt".to_string(), b"hello".to_vec()),
            ("empty".to_string(), vec![]),
        ]
        .into(),
        string_data: map(&[("plain", "v")]),
        r#type: s("Opaque"),
        immutable: Some(true),
    };
    assert_decodes(
        &envelope("v1", "Secret", &secret),
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "creds", "namespace": "apps"},
            "data": {"bin": "AAEC//4=", "empty": "", "txt": "aGVsbG8="},
            "stringData": {"plain": "v"},
            "type": "Opaque",
            "immutable": true,
        }),
    );
    let config_map = core::ConfigMap {
        metadata: object_meta("cfg", "apps"),
        data: map(&[("a", "1"), ("empty", "")]),
        binary_data: [("b".to_string(), vec![0xde, 0xad])].into(),
        immutable: None,
    };
    assert_decodes(
        &envelope("v1", "ConfigMap", &config_map),
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cfg", "namespace": "apps"},
            "data": {"a": "1", "empty": ""},
            "binaryData": {"b": "3q0="},
        }),
    );
}

fn props(ty: &str) -> ext::JsonSchemaProps {
    ext::JsonSchemaProps {
        r#type: s(ty),
        ..Default::default()
    }
}

fn raw_json(v: Value) -> ext::Json {
    ext::Json {
        raw: Some(v.to_string().into_bytes()),
    }
}

#[test]
fn a_crd_with_a_schema() {
    let spec_props: BTreeMap<String, ext::JsonSchemaProps> = [
        (
            "size".to_string(),
            ext::JsonSchemaProps {
                minimum: Some(1.0),
                maximum: Some(2.5),
                exclusive_maximum: Some(false),
                ..props("integer")
            },
        ),
        (
            "mode".to_string(),
            ext::JsonSchemaProps {
                r#enum: vec![raw_json(json!("a")), raw_json(json!("b"))],
                default: Some(raw_json(json!("a"))),
                ..props("string")
            },
        ),
        (
            "ports".to_string(),
            ext::JsonSchemaProps {
                items: Some(Box::new(ext::JsonSchemaPropsOrArray {
                    schema: Some(Box::new(props("integer"))),
                    j_son_schemas: vec![],
                })),
                x_kubernetes_list_type: s("set"),
                ..props("array")
            },
        ),
        (
            "pair".to_string(),
            ext::JsonSchemaProps {
                items: Some(Box::new(ext::JsonSchemaPropsOrArray {
                    schema: None,
                    j_son_schemas: vec![props("string"), props("integer")],
                })),
                ..props("array")
            },
        ),
        (
            "port".to_string(),
            ext::JsonSchemaProps {
                x_kubernetes_int_or_string: Some(true),
                any_of: vec![props("integer"), props("string")],
                ..Default::default()
            },
        ),
        (
            "labels".to_string(),
            ext::JsonSchemaProps {
                additional_properties: Some(Box::new(ext::JsonSchemaPropsOrBool {
                    allows: Some(true),
                    schema: Some(Box::new(props("string"))),
                })),
                ..props("object")
            },
        ),
        (
            "closed".to_string(),
            ext::JsonSchemaProps {
                additional_properties: Some(Box::new(ext::JsonSchemaPropsOrBool {
                    allows: Some(false),
                    schema: None,
                })),
                ..props("object")
            },
        ),
        (
            "items".to_string(),
            ext::JsonSchemaProps {
                x_kubernetes_list_type: s("map"),
                x_kubernetes_list_map_keys: strings(&["name"]),
                items: Some(Box::new(ext::JsonSchemaPropsOrArray {
                    schema: Some(Box::new(ext::JsonSchemaProps {
                        required: strings(&["name"]),
                        properties: [("name".to_string(), props("string"))].into(),
                        ..props("object")
                    })),
                    j_son_schemas: vec![],
                })),
                ..props("array")
            },
        ),
    ]
    .into();
    let schema = ext::JsonSchemaProps {
        schema: s("http://json-schema.org/draft-04/schema#"),
        properties: [
            (
                "spec".to_string(),
                ext::JsonSchemaProps {
                    required: strings(&["size"]),
                    properties: spec_props,
                    dependencies: [(
                        "a".to_string(),
                        ext::JsonSchemaPropsOrStringArray {
                            schema: None,
                            property: strings(&["b"]),
                        },
                    )]
                    .into(),
                    x_kubernetes_validations: vec![ext::ValidationRule {
                        rule: s("self.size > 0"),
                        message: s("size must be positive"),
                        ..Default::default()
                    }],
                    nullable: Some(false),
                    ..props("object")
                },
            ),
            (
                "status".to_string(),
                ext::JsonSchemaProps {
                    x_kubernetes_preserve_unknown_fields: Some(true),
                    x_kubernetes_embedded_resource: Some(false),
                    ..props("object")
                },
            ),
            (
                "ref".to_string(),
                ext::JsonSchemaProps {
                    r#ref: s("#/definitions/x"),
                    ..Default::default()
                },
            ),
        ]
        .into(),
        ..props("object")
    };
    let crd = ext::CustomResourceDefinition {
        metadata: object_meta("widgets.example.com", ""),
        spec: Some(ext::CustomResourceDefinitionSpec {
            group: s("example.com"),
            names: Some(ext::CustomResourceDefinitionNames {
                plural: s("widgets"),
                singular: s("widget"),
                short_names: strings(&["wg"]),
                kind: s("Widget"),
                list_kind: s("WidgetList"),
                categories: strings(&["all"]),
            }),
            scope: s("Namespaced"),
            versions: vec![ext::CustomResourceDefinitionVersion {
                name: s("v1"),
                served: Some(true),
                storage: Some(true),
                deprecated: Some(false),
                schema: Some(ext::CustomResourceValidation {
                    open_apiv3_schema: Some(schema),
                }),
                subresources: Some(ext::CustomResourceSubresources {
                    status: Some(ext::CustomResourceSubresourceStatus {}),
                    scale: None,
                }),
                additional_printer_columns: vec![ext::CustomResourceColumnDefinition {
                    name: s("Size"),
                    r#type: s("integer"),
                    json_path: s(".spec.size"),
                    priority: Some(0),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            conversion: Some(ext::CustomResourceConversion {
                strategy: s("None"),
                webhook: None,
            }),
            preserve_unknown_fields: Some(false),
        }),
        status: Some(ext::CustomResourceDefinitionStatus {
            conditions: vec![ext::CustomResourceDefinitionCondition {
                r#type: s("Established"),
                status: s("True"),
                last_transition_time: time(T),
                reason: s("InitialNamesAccepted"),
                message: s("the initial names have been accepted"),
                observed_generation: Some(0),
            }],
            accepted_names: Some(ext::CustomResourceDefinitionNames {
                plural: s("widgets"),
                kind: s("Widget"),
                ..Default::default()
            }),
            stored_versions: strings(&["v1"]),
            observed_generation: Some(0),
        }),
    };
    assert_decodes(
        &envelope("apiextensions.k8s.io/v1", "CustomResourceDefinition", &crd),
        json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "names": {"plural": "widgets", "singular": "widget", "shortNames": ["wg"],
                    "kind": "Widget", "listKind": "WidgetList", "categories": ["all"]},
                "scope": "Namespaced",
                "versions": [{
                    "name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {
                        "$schema": "http://json-schema.org/draft-04/schema#",
                        "type": "object",
                        "properties": {
                            "ref": {"$ref": "#/definitions/x"},
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {
                                    "closed": {"type": "object", "additionalProperties": false},
                                    "items": {"type": "array",
                                        "items": {"type": "object", "required": ["name"],
                                            "properties": {"name": {"type": "string"}}},
                                        "x-kubernetes-list-map-keys": ["name"],
                                        "x-kubernetes-list-type": "map"},
                                    "labels": {"type": "object",
                                        "additionalProperties": {"type": "string"}},
                                    "mode": {"type": "string", "default": "a", "enum": ["a", "b"]},
                                    "pair": {"type": "array",
                                        "items": [{"type": "string"}, {"type": "integer"}]},
                                    "port": {"anyOf": [{"type": "integer"}, {"type": "string"}],
                                        "x-kubernetes-int-or-string": true},
                                    "ports": {"type": "array", "items": {"type": "integer"},
                                        "x-kubernetes-list-type": "set"},
                                    "size": {"type": "integer", "minimum": 1, "maximum": 2.5},
                                },
                                "dependencies": {"a": ["b"]},
                                "x-kubernetes-validations": [{"rule": "self.size > 0",
                                    "message": "size must be positive"}],
                            },
                            "status": {"type": "object",
                                "x-kubernetes-preserve-unknown-fields": true},
                        },
                    }},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [{"name": "Size", "type": "integer",
                        "jsonPath": ".spec.size"}],
                }],
                "conversion": {"strategy": "None"},
            },
            "status": {
                "conditions": [{"type": "Established", "status": "True",
                    "lastTransitionTime": "2026-01-02T03:04:05Z",
                    "reason": "InitialNamesAccepted",
                    "message": "the initial names have been accepted"}],
                "acceptedNames": {"plural": "widgets", "kind": "Widget"},
                "storedVersions": ["v1"],
            },
        }),
    );
}

#[test]
fn a_mutating_webhook_configuration() {
    let config = admission::MutatingWebhookConfiguration {
        metadata: Some(meta::ObjectMeta {
            labels: map(&[("istio.io/rev", "default")]),
            ..object_meta("istio-sidecar-injector", "").expect("meta")
        }),
        webhooks: vec![admission::MutatingWebhook {
            name: s("rev.namespace.sidecar-injector.istio.io"),
            client_config: Some(admission::WebhookClientConfig {
                url: None,
                service: Some(admission::ServiceReference {
                    namespace: s("istio-system"),
                    name: s("istiod"),
                    path: s("/inject"),
                    port: Some(443),
                }),
                ca_bundle: Some(b"-----BEGIN CERTIFICATE-----\n".to_vec()),
            }),
            rules: vec![admission::RuleWithOperations {
                operations: strings(&["CREATE"]),
                rule: Some(admission::Rule {
                    api_groups: strings(&[""]),
                    api_versions: strings(&["v1"]),
                    resources: strings(&["pods"]),
                    scope: s("*"),
                }),
            }],
            failure_policy: s("Fail"),
            match_policy: s("Equivalent"),
            namespace_selector: Some(meta::LabelSelector {
                match_labels: BTreeMap::new(),
                match_expressions: vec![meta::LabelSelectorRequirement {
                    key: s("istio-injection"),
                    operator: s("DoesNotExist"),
                    values: vec![],
                }],
            }),
            object_selector: Some(meta::LabelSelector::default()),
            side_effects: s("None"),
            timeout_seconds: Some(10),
            admission_review_versions: strings(&["v1beta1", "v1"]),
            reinvocation_policy: s("Never"),
            match_conditions: vec![admission::MatchCondition {
                name: s("not-a-node"),
                expression: s("true"),
            }],
        }],
    };
    assert_decodes(
        &envelope(
            "admissionregistration.k8s.io/v1",
            "MutatingWebhookConfiguration",
            &config,
        ),
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "istio-sidecar-injector", "labels": {"istio.io/rev": "default"}},
            "webhooks": [{
                "name": "rev.namespace.sidecar-injector.istio.io",
                "clientConfig": {"service": {"namespace": "istio-system", "name": "istiod",
                    "path": "/inject", "port": 443},
                    "caBundle": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="},
                "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                    "resources": ["pods"], "scope": "*"}],
                "failurePolicy": "Fail",
                "matchPolicy": "Equivalent",
                "namespaceSelector": {"matchExpressions": [{"key": "istio-injection",
                    "operator": "DoesNotExist"}]},
                "objectSelector": {},
                "sideEffects": "None",
                "timeoutSeconds": 10,
                "admissionReviewVersions": ["v1beta1", "v1"],
                "reinvocationPolicy": "Never",
                "matchConditions": [{"name": "not-a-node", "expression": "true"}],
            }],
        }),
    );
}

#[test]
fn an_event_with_micro_times_and_a_service_with_acronym_fields() {
    let micro = |nanos| {
        Some(meta::MicroTime {
            seconds: Some(T),
            nanos: Some(nanos),
        })
    };
    let event = core::Event {
        metadata: object_meta("web.1", "apps"),
        involved_object: Some(core::ObjectReference {
            kind: s("Pod"),
            namespace: s("apps"),
            name: s("web"),
            uid: s("u-1"),
            api_version: s("v1"),
            resource_version: s("5"),
            field_path: s("spec.containers{web}"),
        }),
        reason: s("Started"),
        message: s("Started container web"),
        source: Some(core::EventSource {
            component: s("kubelet"),
            host: s("node-1"),
        }),
        first_timestamp: time(T),
        last_timestamp: time(T + 60),
        count: Some(2),
        r#type: s("Normal"),
        event_time: micro(123_456_789),
        series: Some(core::EventSeries {
            count: Some(2),
            last_observed_time: micro(0),
        }),
        action: s(""),
        related: None,
        reporting_component: s("kubelet"),
        reporting_instance: s("node-1"),
    };
    assert_decodes(
        &envelope("v1", "Event", &event),
        json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "web.1", "namespace": "apps"},
            "involvedObject": {"kind": "Pod", "namespace": "apps", "name": "web", "uid": "u-1",
                "apiVersion": "v1", "resourceVersion": "5", "fieldPath": "spec.containers{web}"},
            "reason": "Started",
            "message": "Started container web",
            "source": {"component": "kubelet", "host": "node-1"},
            "firstTimestamp": "2026-01-02T03:04:05Z",
            "lastTimestamp": "2026-01-02T03:05:05Z",
            "count": 2,
            "type": "Normal",
            "eventTime": "2026-01-02T03:04:05.123456Z",
            "series": {"count": 2, "lastObservedTime": "2026-01-02T03:04:05.000000Z"},
            "reportingComponent": "kubelet",
            "reportingInstance": "node-1",
        }),
    );
    let service = core::Service {
        metadata: object_meta("web", "apps"),
        spec: Some(core::ServiceSpec {
            ports: vec![core::ServicePort {
                name: s("http"),
                protocol: s("TCP"),
                port: Some(80),
                target_port: int_or_string_str("http"),
                node_port: Some(0),
                app_protocol: None,
            }],
            selector: map(&[("app", "web")]),
            cluster_ip: s("10.43.0.10"),
            cluster_ips: strings(&["10.43.0.10"]),
            r#type: s("ClusterIP"),
            external_ips: strings(&["192.0.2.1"]),
            session_affinity: s("None"),
            ip_families: strings(&["IPv4"]),
            ip_family_policy: s("SingleStack"),
            internal_traffic_policy: s("Cluster"),
            health_check_node_port: Some(0),
            publish_not_ready_addresses: Some(false),
            ..Default::default()
        }),
        status: Some(core::ServiceStatus {
            load_balancer: Some(core::LoadBalancerStatus::default()),
            conditions: vec![],
        }),
    };
    assert_decodes(
        &envelope("v1", "Service", &service),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "apps"},
            "spec": {
                "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": "http"}],
                "selector": {"app": "web"},
                "clusterIP": "10.43.0.10",
                "clusterIPs": ["10.43.0.10"],
                "type": "ClusterIP",
                "externalIPs": ["192.0.2.1"],
                "sessionAffinity": "None",
                "ipFamilies": ["IPv4"],
                "ipFamilyPolicy": "SingleStack",
                "internalTrafficPolicy": "Cluster",
            },
            "status": {"loadBalancer": {}},
        }),
    );
}

#[test]
fn delete_options_and_an_eviction() {
    let options = meta::DeleteOptions {
        grace_period_seconds: Some(0),
        preconditions: Some(meta::Preconditions {
            uid: s("u-1"),
            resource_version: None,
        }),
        orphan_dependents: None,
        propagation_policy: s("Background"),
        dry_run: strings(&["All"]),
        ignore_store_read_error_with_cluster_breaking_potential: None,
    };
    // client-go types DeleteOptions in the group version of the client that sends them.
    assert_decodes(
        &envelope("apps/v1", "DeleteOptions", &options),
        json!({"apiVersion": "apps/v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
            "preconditions": {"uid": "u-1"}, "propagationPolicy": "Background",
            "dryRun": ["All"]}),
    );
    let eviction = policy::Eviction {
        metadata: object_meta("web", "apps"),
        delete_options: Some(meta::DeleteOptions {
            grace_period_seconds: Some(5),
            ..Default::default()
        }),
    };
    assert_decodes(
        &envelope("policy/v1", "Eviction", &eviction),
        json!({"apiVersion": "policy/v1", "kind": "Eviction",
            "metadata": {"name": "web", "namespace": "apps"},
            "deleteOptions": {"gracePeriodSeconds": 5}}),
    );
}

// ---- The API server ----

use paddock_sim::Cluster;
use paddock_sim::client::{Client, Response};
use paddock_sim::store::res;

fn post(client: &Client, path: &str, body: &[u8]) -> Response {
    client
        .request("POST", path, PROTOBUF, body)
        .expect("the API answers")
}

fn assert_status(r: &Response, code: u16, reason: &str, message: &str) {
    let v = r.json();
    assert_eq!(
        (r.code, v["kind"].as_str(), v["reason"].as_str()),
        (code, Some("Status"), Some(reason)),
        "{}",
        r.body
    );
    assert_eq!(v["message"].as_str(), Some(message), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_stores_protobuf_bodies_and_refuses_bad_ones() {
    let cluster = Cluster::start("proto-api").await.expect("sim starts");
    let client = cluster.client().expect("client");
    let c = client.clone();
    tokio::task::spawn_blocking(move || {
        let ns = core::Namespace {
            metadata: object_meta("apps", ""),
            spec: Some(core::NamespaceSpec::default()),
            status: Some(core::NamespaceStatus::default()),
        };
        let r = post(&c, "/api/v1/namespaces", &envelope("v1", "Namespace", &ns));
        assert_eq!(r.code, 201, "{}", r.body);

        let cm = core::ConfigMap {
            metadata: object_meta("cfg", "apps"),
            data: map(&[("a", "1")]),
            ..Default::default()
        };
        let path = "/api/v1/namespaces/apps/configmaps";
        let r = post(&c, path, &envelope("v1", "ConfigMap", &cm));
        assert_eq!(r.code, 201, "{}", r.body);
        assert_eq!(r.json()["data"], json!({"a": "1"}));

        // An update as protobuf.
        let mut cm2 = cm.clone();
        cm2.data = map(&[("a", "2")]);
        let r = c
            .request(
                "PUT",
                &format!("{path}/cfg"),
                PROTOBUF,
                &envelope("v1", "ConfigMap", &cm2),
            )
            .expect("PUT");
        assert_eq!((r.code, &r.json()["data"]), (200, &json!({"a": "2"})));

        // A kind the server does not know.
        let r = post(&c, path, &envelope("v1", "Widget", &cm));
        assert_status(
            &r,
            400,
            "BadRequest",
            "Widget in version \"v1\" cannot be handled as a ConfigMap: no kind \"Widget\" is \
             registered for version \"v1\" in scheme \"pkg/api/legacyscheme/scheme.go:30\"",
        );
        // Another kind than the resource's.
        let r = post(&c, path, &envelope("v1", "Secret", &core::Secret::default()));
        assert_status(
            &r,
            400,
            "BadRequest",
            "Secret in version \"v1\" cannot be handled as a ConfigMap: a Secret is not a ConfigMap",
        );
        // An object cut short inside a valid envelope.
        let whole = cm.encode_to_vec();
        let unknown = Unknown {
            type_meta: Some(TypeMeta {
                api_version: s("v1"),
                kind: s("ConfigMap"),
            }),
            raw: Some(whole[..whole.len() - 3].to_vec()),
            ..Default::default()
        };
        let mut cut = b"k8s\0".to_vec();
        cut.extend(unknown.encode_to_vec());
        let r = post(&c, path, &cut);
        assert_status(
            &r,
            400,
            "BadRequest",
            "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: unexpected EOF",
        );
        // Not protobuf at all.
        let r = post(&c, path, br#"{"kind":"ConfigMap"}"#);
        assert_status(
            &r,
            400,
            "BadRequest",
            "the object provided is unrecognized (must be of type ConfigMap): the body does not \
             start with the protobuf magic prefix \"k8s\\x00\" (7b226b696e64223a22436f6e6669674d6170227d)",
        );

        // Custom resources are JSON and YAML only, as in Kubernetes.
        let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object",
                        "x-kubernetes-preserve-unknown-fields": true}}}]}});
        let r = c
            .post_json(
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                &crd.to_string(),
            )
            .expect("CRD");
        assert_eq!(r.code, 201, "{}", r.body);
        let r = post(
            &c,
            "/apis/example.com/v1/namespaces/apps/widgets",
            &envelope("example.com/v1", "Widget", &cm),
        );
        assert_status(
            &r,
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: \
             application/json, application/yaml",
        );

        // Deleting a custom object with protobuf DeleteOptions is fine.
        let r = c
            .post_json(
                "/apis/example.com/v1/namespaces/apps/widgets",
                r#"{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w"}}"#,
            )
            .expect("widget");
        assert_eq!(r.code, 201, "{}", r.body);
        let r = c
            .request(
                "DELETE",
                "/apis/example.com/v1/namespaces/apps/widgets/w",
                PROTOBUF,
                &envelope("example.com/v1", "DeleteOptions", &meta::DeleteOptions::default()),
            )
            .expect("DELETE");
        assert_eq!(r.code, 200, "{}", r.body);

        // DeleteOptions as protobuf: grace period 0 removes a pod at once.
        let pod = core::Pod {
            metadata: object_meta("p", "apps"),
            spec: Some(core::PodSpec {
                containers: vec![core::Container {
                    name: s("c"),
                    image: s("busybox"),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: None,
        };
        let r = post(
            &c,
            "/api/v1/namespaces/apps/pods",
            &envelope("v1", "Pod", &pod),
        );
        assert_eq!(r.code, 201, "{}", r.body);
        let options = meta::DeleteOptions {
            grace_period_seconds: Some(0),
            ..Default::default()
        };
        let r = c
            .request(
                "DELETE",
                "/api/v1/namespaces/apps/pods/p",
                PROTOBUF,
                &envelope("v1", "DeleteOptions", &options),
            )
            .expect("DELETE");
        assert_eq!(r.code, 200, "{}", r.body);
    })
    .await
    .expect("requests");

    cluster.with_store(|s| {
        assert!(
            s.get(&res("pods"), "apps", "p").is_err(),
            "pod deleted at once"
        );
        let cm = s.get(&res("configmaps"), "apps", "cfg").expect("stored");
        assert_eq!(cm["data"], json!({"a": "2"}));
        let protobuf_writes = s
            .requests
            .iter()
            .filter(|r| r.content_type == PROTOBUF)
            .count();
        assert_eq!(
            protobuf_writes, 11,
            "every protobuf request is logged with its type"
        );
    });
}

// ---- The real kubectl and helm ----

use std::path::Path;
use std::process::Command;

fn run(tool: &Path, home: &Path, args: &[&str]) -> String {
    let out = Command::new(tool)
        .args(args)
        .env("HOME", home)
        .env_remove("KUBECONFIG")
        .output()
        .expect("the tool runs");
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}",
        tool.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The Content-Type of the last request of `verb` on `path`.
fn sent(cluster: &Cluster, verb: &str, path: &str) -> String {
    cluster.with_store(|s| {
        s.requests
            .iter()
            .rev()
            .find(|r| r.verb == verb && r.path == path)
            .map(|r| r.content_type.clone())
            .unwrap_or_else(|| panic!("no {verb} {path} was seen"))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_kubectl_creates_typed_objects_as_protobuf() {
    let Some(kubectl) = paddock_sim::real_tools::kubectl() else {
        return;
    };
    let cluster = Cluster::start("proto-kubectl").await.expect("sim starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, cluster.kubeconfig()).expect("kubeconfig");
    let (kc, home) = (kubectl.clone(), dir.path().to_path_buf());
    let k = kubeconfig.to_str().expect("utf-8 path").to_string();
    // Each typed command, then the same one with `--dry-run=client -o json`: the object as
    // kubectl writes it in JSON, which the stored one must match.
    let dry = tokio::task::spawn_blocking(move || {
        let kubectl = |args: &[&str]| {
            let mut all = vec!["--kubeconfig", k.as_str()];
            all.extend(args);
            run(&kc, &home, &all)
        };
        kubectl(&["create", "ns", "x"]);
        let commands: [&[&str]; 4] = [
            &[
                "create",
                "configmap",
                "c",
                "-n",
                "x",
                "--from-literal=a=b",
                "--from-literal=empty=",
            ],
            &[
                "create",
                "secret",
                "generic",
                "s",
                "-n",
                "x",
                "--from-literal=k=v",
            ],
            &["run", "p", "-n", "x", "--image=i", "--labels=app=p,tier=t"],
            &[
                "create",
                "deployment",
                "d",
                "-n",
                "x",
                "--image=nginx",
                "--port=80",
                "--replicas=0",
            ],
        ];
        let mut dry = Vec::new();
        for c in commands {
            kubectl(c);
            let mut dry_run = c.to_vec();
            dry_run.extend(["--dry-run=client", "-o", "json"]);
            dry.push(serde_json::from_str::<Value>(&kubectl(&dry_run)).expect("JSON"));
        }
        dry
    })
    .await
    .expect("kubectl");

    // What kubectl 1.35 really sends: typed `create` commands protobuf, `run` JSON.
    for path in [
        "/api/v1/namespaces",
        "/api/v1/namespaces/x/configmaps",
        "/api/v1/namespaces/x/secrets",
        "/apis/apps/v1/namespaces/x/deployments",
    ] {
        assert_eq!(sent(&cluster, "POST", path), PROTOBUF, "POST {path}");
    }
    assert_eq!(
        sent(&cluster, "POST", "/api/v1/namespaces/x/pods"),
        "application/json"
    );
    cluster.with_store(|s| {
        let ns = s.get(&res("namespaces"), "", "x").expect("namespace");
        assert_eq!(ns["status"]["phase"], "Active");
        let cm = s.get(&res("configmaps"), "x", "c").expect("configmap");
        assert_eq!(cm["data"], json!({"a": "b", "empty": ""}));
        assert_eq!(cm["data"], dry[0]["data"]);
        let secret = s.get(&res("secrets"), "x", "s").expect("secret");
        assert_eq!(secret["data"], json!({"k": "dg=="}));
        assert_eq!(secret["data"], dry[1]["data"]);
        // kubectl leaves `type` empty (Kubernetes would default it to Opaque).
        assert_eq!(secret.get("type"), dry[1].get("type"));
        let pod = s.get(&res("pods"), "x", "p").expect("pod");
        assert_eq!(pod["metadata"]["labels"], json!({"app": "p", "tier": "t"}));
        assert_eq!(pod["spec"]["containers"], dry[2]["spec"]["containers"]);
        let d = s.get(&res("deployments"), "x", "d").expect("deployment");
        assert_eq!(
            d["spec"], dry[3]["spec"],
            "the protobuf Deployment is the JSON one"
        );
        assert_eq!(d["metadata"]["labels"], dry[3]["metadata"]["labels"]);
        assert!(d["metadata"].get("creationTimestamp").is_some());
    });

    let (kc, home) = (kubectl.clone(), dir.path().to_path_buf());
    let k = kubeconfig.clone();
    tokio::task::spawn_blocking(move || {
        let k = k.to_str().expect("utf-8 path");
        run(
            &kc,
            &home,
            &["--kubeconfig", k, "delete", "ns", "x", "--wait=false"],
        )
    })
    .await
    .expect("kubectl delete");
    // kubectl deletes with JSON DeleteOptions.
    assert_eq!(
        sent(&cluster, "DELETE", "/api/v1/namespaces/x"),
        "application/json"
    );
    assert!(
        cluster
            .holds_within(std::time::Duration::from_secs(10), |s| s
                .get(&res("namespaces"), "", "x")
                .is_err())
            .await,
        "namespace x is removed"
    );
}

fn chart(dir: &Path, templates: &[(&str, &str)]) {
    std::fs::create_dir_all(dir.join("templates")).expect("chart dir");
    std::fs::write(
        dir.join("Chart.yaml"),
        "apiVersion: v2\nname: tiny\nversion: 0.1.0\n",
    )
    .expect("Chart.yaml");
    for (name, text) in templates {
        std::fs::write(dir.join("templates").join(name), text).expect("template");
    }
}

fn assert_release_secret(cluster: &Cluster, ns: &str, name: &str) {
    let secret_name = format!("sh.helm.release.v1.{name}.v1");
    let path = format!("/api/v1/namespaces/{ns}/secrets");
    assert_eq!(sent(cluster, "POST", &path), PROTOBUF);
    assert_eq!(
        sent(cluster, "PUT", &format!("{path}/{secret_name}")),
        PROTOBUF
    );
    cluster.with_store(|s| {
        let secret = s.get(&res("secrets"), ns, &secret_name).expect("release");
        assert_eq!(secret["type"], "helm.sh/release.v1");
        let labels = &secret["metadata"]["labels"];
        assert_eq!(
            (
                &labels["owner"],
                &labels["name"],
                &labels["status"],
                &labels["version"]
            ),
            (
                &json!("helm"),
                &json!(name),
                &json!("deployed"),
                &json!("1")
            ),
            "{labels}"
        );
        assert!(
            secret["data"]["release"]
                .as_str()
                .is_some_and(|r| r.len() > 100),
            "the release payload is stored"
        );
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_helm_stores_its_release_secret_as_protobuf() {
    let (Some(kubectl), Some(helm)) = (
        paddock_sim::real_tools::kubectl(),
        paddock_sim::real_tools::helm(),
    ) else {
        return;
    };
    let cluster = Cluster::start("proto-helm").await.expect("sim starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, cluster.kubeconfig()).expect("kubeconfig");
    // A chart without objects: helm 4 validates objects against /openapi/v3 first.
    chart(&dir.path().join("chart"), &[]);
    let home = dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let k = kubeconfig.to_str().expect("utf-8 path");
        let chart = home.join("chart");
        run(&kubectl, &home, &["--kubeconfig", k, "create", "ns", "hx"]);
        run(
            &helm,
            &home,
            &[
                "install",
                "t",
                chart.to_str().expect("utf-8 path"),
                "-n",
                "hx",
                "--kubeconfig",
                k,
            ],
        );
    })
    .await
    .expect("helm");
    assert_release_secret(&cluster, "hx", "t");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_helm_installs_a_chart_into_a_new_namespace() {
    let Some(helm) = paddock_sim::real_tools::helm() else {
        return;
    };
    let cluster = Cluster::start("proto-helm-ns").await.expect("sim starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, cluster.kubeconfig()).expect("kubeconfig");
    chart(
        &dir.path().join("chart"),
        &[(
            "cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: tiny\ndata:\n  a: \"1\"\n",
        )],
    );
    let home = dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let k = kubeconfig.to_str().expect("utf-8 path");
        let chart = home.join("chart");
        run(
            &helm,
            &home,
            &[
                "install",
                "t",
                chart.to_str().expect("utf-8 path"),
                "-n",
                "hy",
                "--create-namespace",
                "--kubeconfig",
                k,
            ],
        );
    })
    .await
    .expect("helm");
    assert_release_secret(&cluster, "hy", "t");
    cluster.with_store(|s| {
        let cm = s
            .get(&res("configmaps"), "hy", "tiny")
            .expect("chart object");
        assert_eq!(cm["data"], json!({"a": "1"}));
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_kubectl_typed_creates_store_what_its_json_would() {
    let Some(kubectl) = paddock_sim::real_tools::kubectl() else {
        return;
    };
    let cluster = Cluster::start("proto-kubectl-kinds")
        .await
        .expect("sim starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, cluster.kubeconfig()).expect("kubeconfig");
    let home = dir.path().to_path_buf();
    let k = kubeconfig.to_str().expect("utf-8 path").to_string();
    let commands: Vec<(&str, Vec<&'static str>)> = vec![
        (
            "/api/v1/namespaces/z/serviceaccounts",
            vec!["create", "serviceaccount", "sa1"],
        ),
        (
            "/apis/rbac.authorization.k8s.io/v1/namespaces/z/roles",
            vec![
                "create",
                "role",
                "r1",
                "--verb=get,list",
                "--resource=pods,deployments.apps",
            ],
        ),
        (
            "/apis/rbac.authorization.k8s.io/v1/namespaces/z/rolebindings",
            vec![
                "create",
                "rolebinding",
                "rb1",
                "--role=r1",
                "--serviceaccount=z:sa1",
                "--user=u",
            ],
        ),
        (
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            vec![
                "create",
                "clusterrole",
                "cr1",
                "--verb=get",
                "--non-resource-url=/healthz",
            ],
        ),
        (
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            vec![
                "create",
                "clusterrolebinding",
                "crb1",
                "--clusterrole=cr1",
                "--group=g",
            ],
        ),
        (
            "/api/v1/namespaces/z/services",
            vec![
                "create",
                "service",
                "nodeport",
                "s1",
                "--tcp=80:http",
                "--node-port=30080",
            ],
        ),
        (
            "/apis/batch/v1/namespaces/z/jobs",
            vec!["create", "job", "j1", "--image=busybox", "--", "echo", "hi"],
        ),
        (
            "/apis/policy/v1/namespaces/z/poddisruptionbudgets",
            vec![
                "create",
                "poddisruptionbudget",
                "pdb1",
                "--selector=app=x",
                "--min-available=50%",
            ],
        ),
    ];
    let paths: Vec<&str> = commands.iter().map(|(p, _)| *p).collect();
    let pairs = tokio::task::spawn_blocking(move || {
        let kubectl = |args: &[&str]| {
            let mut all = vec!["--kubeconfig", k.as_str(), "-n", "z"];
            all.extend(args);
            run(&kubectl, &home, &all)
        };
        kubectl(&["create", "ns", "z"]);
        let mut pairs = Vec::new();
        for (_, c) in commands {
            // `-o json` prints what the server stored; the dry run what kubectl's JSON is.
            let split = c.iter().position(|a| *a == "--").unwrap_or(c.len());
            let with = |extra: &[&'static str]| -> Vec<&'static str> {
                let mut a = c[..split].to_vec();
                a.extend(extra);
                a.extend(&c[split..]);
                a
            };
            let stored: Value =
                serde_json::from_str(&kubectl(&with(&["-o", "json"]))).expect("JSON");
            let json: Value =
                serde_json::from_str(&kubectl(&with(&["--dry-run=client", "-o", "json"])))
                    .expect("JSON");
            pairs.push((stored, json));
        }
        pairs
    })
    .await
    .expect("kubectl");
    for path in paths {
        assert_eq!(sent(&cluster, "POST", path), PROTOBUF, "POST {path}");
    }
    for (stored, json) in pairs {
        let kind = &json["kind"];
        for (key, value) in json.as_object().expect("object") {
            if key != "metadata" {
                assert_eq!(&stored[key], value, "{kind} {key}");
            }
        }
        for (key, value) in json["metadata"].as_object().expect("metadata") {
            if key != "creationTimestamp" {
                assert_eq!(&stored["metadata"][key], value, "{kind} metadata.{key}");
            }
        }
    }
}
