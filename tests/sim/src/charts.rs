//! What each chart creates, as the real charts render it (checked against
//! `charts/istio-<version>.yaml`, copies of `shared/vendor/istio-charts-rendered/`): Istio's
//! `base`, `istiod` and `gateway`, and the addon charts paddock ships (prometheus, grafana,
//! kiali-server, jaeger), each reduced to the objects and fields paddock and the sim read.

use serde_json::{Map, Value, json};

/// The repository Istio's charts come from.
pub const ISTIO_REPO: &str = "https://istio-release.storage.googleapis.com/charts";

/// Charts the sim knows, by repository.
pub const KNOWN: &[(&str, &str)] = &[
    (ISTIO_REPO, "base"),
    (ISTIO_REPO, "istiod"),
    (ISTIO_REPO, "gateway"),
    (
        "https://prometheus-community.github.io/helm-charts",
        "prometheus",
    ),
    ("https://grafana.github.io/helm-charts", "grafana"),
    ("https://kiali.org/helm-charts", "kiali-server"),
    ("https://jaegertracing.github.io/helm-charts", "jaeger"),
];

/// Istio's CRDs as the base chart of a version installs them: (plural.group, Kind).
pub fn istio_crds(version: &semver_lite::Version) -> Vec<(&'static str, &'static str)> {
    let mut crds = vec![
        (
            "authorizationpolicies.security.istio.io",
            "AuthorizationPolicy",
        ),
        ("destinationrules.networking.istio.io", "DestinationRule"),
        ("envoyfilters.networking.istio.io", "EnvoyFilter"),
        ("gateways.networking.istio.io", "Gateway"),
        (
            "peerauthentications.security.istio.io",
            "PeerAuthentication",
        ),
        ("proxyconfigs.networking.istio.io", "ProxyConfig"),
        (
            "requestauthentications.security.istio.io",
            "RequestAuthentication",
        ),
        ("serviceentries.networking.istio.io", "ServiceEntry"),
        ("sidecars.networking.istio.io", "Sidecar"),
        ("telemetries.telemetry.istio.io", "Telemetry"),
        ("virtualservices.networking.istio.io", "VirtualService"),
        ("wasmplugins.extensions.istio.io", "WasmPlugin"),
        ("workloadentries.networking.istio.io", "WorkloadEntry"),
        ("workloadgroups.networking.istio.io", "WorkloadGroup"),
    ];
    if version.minor >= 30 {
        crds.push(("trafficextensions.extensions.istio.io", "TrafficExtension"));
        crds.sort();
    }
    crds
}

/// A tiny version type, so the sim needs no semver dependency.
pub mod semver_lite {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    pub struct Version {
        pub major: u64,
        pub minor: u64,
        pub patch: u64,
    }

    impl Version {
        pub fn parse(text: &str) -> Option<Self> {
            let mut it = text.trim_start_matches('v').split('.');
            let v = Self {
                major: it.next()?.parse().ok()?,
                minor: it.next()?.parse().ok()?,
                patch: it.next()?.split(['-', '+']).next()?.parse().ok()?,
            };
            it.next().is_none().then_some(v)
        }
    }

    impl std::fmt::Display for Version {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
        }
    }
}

use semver_lite::Version;

fn get<'a>(values: &'a Value, path: &str) -> Option<&'a Value> {
    let mut v = values;
    for part in path.split('.') {
        v = v.get(part)?;
    }
    Some(v)
}

fn get_str<'a>(values: &'a Value, path: &str) -> Option<&'a str> {
    get(values, path).and_then(Value::as_str)
}

fn labels(pairs: &[(&str, &str)]) -> Value {
    Value::Object(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect::<Map<String, Value>>(),
    )
}

fn object(api: &str, kind: &str, name: &str, ns: Option<&str>, l: Value) -> Value {
    let mut meta = json!({"name": name, "labels": l});
    if let Some(ns) = ns {
        meta["namespace"] = json!(ns);
    }
    json!({"apiVersion": api, "kind": kind, "metadata": meta})
}

/// Render a chart: the objects it creates, or the error helm prints.
pub fn render(
    chart: &str,
    version: &str,
    release: &str,
    namespace: &str,
    values: &Value,
) -> Result<Vec<Value>, String> {
    match chart {
        "base" | "istiod" | "gateway" => {
            let v = Version::parse(version).ok_or_else(|| {
                format!(
                    "chart \"{chart}\" version \"{version}\" not found in {ISTIO_REPO} repository"
                )
            })?;
            if v.major != 1 || !(20..=31).contains(&v.minor) {
                return Err(format!(
                    "chart \"{chart}\" version \"{version}\" not found in {ISTIO_REPO} repository"
                ));
            }
            Ok(match chart {
                "base" => base(&v, values),
                "istiod" => istiod(&v, release, values),
                _ => gateway(&v, release, namespace, values)?,
            })
        }
        "prometheus" | "grafana" | "kiali-server" | "jaeger" => {
            Ok(addon(chart, version, release, namespace, values))
        }
        other => Err(format!("chart \"{other}\" not found in repository")),
    }
}

fn rev_label(rev: &str) -> &str {
    if rev.is_empty() { "default" } else { rev }
}

fn suffix(rev: &str) -> String {
    if rev.is_empty() {
        String::new()
    } else {
        format!("-{rev}")
    }
}

fn base(v: &Version, values: &Value) -> Vec<Value> {
    let default_rev = get_str(values, "defaultRevision").unwrap_or("");
    let mut out = vec![object(
        "v1",
        "ServiceAccount",
        "istio-reader-service-account",
        Some("istio-system"),
        labels(&[("app", "istio-reader"), ("release", "istio-base")]),
    )];
    for (full, kind) in istio_crds(v) {
        let (plural, group) = full.split_once('.').unwrap_or((full, ""));
        let mut crd = object(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            full,
            None,
            labels(&[
                ("app.kubernetes.io/part-of", "istio"),
                ("app.kubernetes.io/version", &v.to_string()),
            ]),
        );
        crd["metadata"]["annotations"] = json!({"helm.sh/resource-policy": "keep"});
        let versions = if group == "telemetry.istio.io" || group == "extensions.istio.io" {
            json!([{"name": "v1", "served": true, "storage": true}, {"name": "v1alpha1", "served": true, "storage": false}])
        } else {
            json!([{"name": "v1", "served": true, "storage": true}, {"name": "v1beta1", "served": true, "storage": false}, {"name": "v1alpha3", "served": true, "storage": false}])
        };
        crd["spec"] = json!({"group": group, "scope": "Namespaced", "versions": versions,
            "names": {"plural": plural, "kind": kind, "singular": kind.to_lowercase(), "listKind": format!("{kind}List")}});
        out.push(crd);
    }
    let service = if default_rev.is_empty() || default_rev == "default" {
        "istiod".to_string()
    } else {
        format!("istiod-{default_rev}")
    };
    let mut vwc = object(
        "admissionregistration.k8s.io/v1",
        "ValidatingWebhookConfiguration",
        "istiod-default-validator",
        None,
        labels(&[
            ("app", "istiod"),
            ("release", "istio-base"),
            ("istio", "istiod"),
            ("istio.io/rev", rev_label(default_rev)),
        ]),
    );
    vwc["webhooks"] = json!([webhook(
        "validation.istio.io",
        "Ignore",
        &service,
        "/validate",
        None,
        None
    )]);
    out.push(vwc);
    out
}

fn webhook(
    name: &str,
    failure: &str,
    service: &str,
    path: &str,
    ns_sel: Option<Value>,
    obj_sel: Option<Value>,
) -> Value {
    let mut w = json!({
        "name": name, "failurePolicy": failure, "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        // No caBundle: the chart leaves it to istiod, which patches it in once serving.
        "clientConfig": {"service": {"name": service, "namespace": "istio-system", "path": path, "port": 443}},
    });
    if let Some(s) = ns_sel {
        w["namespaceSelector"] = s;
    }
    if let Some(s) = obj_sel {
        w["objectSelector"] = s;
    }
    w
}

fn expr(key: &str, op: &str, values: &[&str]) -> Value {
    if values.is_empty() {
        json!({"key": key, "operator": op})
    } else {
        json!({"key": key, "operator": op, "values": values})
    }
}

/// The injection webhooks of a revision webhook (`name_value` = revision or tag name), with
/// the two extra default-injector webhooks for revision "" and tag `default`.
fn injection_webhooks(name_value: &str, service: &str, default_injector: bool) -> Value {
    let not_false =
        json!({"matchExpressions": [expr("sidecar.istio.io/inject", "NotIn", &["false"])]});
    let path = "/inject";
    let mut hooks = vec![
        webhook(
            "rev.namespace.sidecar-injector.istio.io",
            "Fail",
            service,
            path,
            Some(
                json!({"matchExpressions": [expr("istio.io/rev", "In", &[name_value]), expr("istio-injection", "DoesNotExist", &[])]}),
            ),
            Some(not_false.clone()),
        ),
        webhook(
            "rev.object.sidecar-injector.istio.io",
            "Fail",
            service,
            path,
            Some(
                json!({"matchExpressions": [expr("istio.io/rev", "DoesNotExist", &[]), expr("istio-injection", "DoesNotExist", &[])]}),
            ),
            Some(
                json!({"matchExpressions": [expr("sidecar.istio.io/inject", "NotIn", &["false"]), expr("istio.io/rev", "In", &[name_value])]}),
            ),
        ),
    ];
    if default_injector {
        hooks.push(webhook(
            "namespace.sidecar-injector.istio.io",
            "Fail",
            service,
            path,
            Some(json!({"matchExpressions": [expr("istio-injection", "In", &["enabled"])]})),
            Some(not_false),
        ));
        hooks.push(webhook(
            "object.sidecar-injector.istio.io",
            "Fail",
            service,
            path,
            Some(json!({"matchExpressions": [expr("istio-injection", "DoesNotExist", &[]), expr("istio.io/rev", "DoesNotExist", &[])]})),
            Some(json!({"matchExpressions": [expr("sidecar.istio.io/inject", "In", &["true"]), expr("istio.io/rev", "DoesNotExist", &[])]})),
        ));
    }
    for h in &mut hooks {
        h["rules"] = json!([{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]);
    }
    Value::Array(hooks)
}

fn service_ports() -> Value {
    json!([
        {"name": "grpc-xds", "port": 15010, "protocol": "TCP"},
        {"name": "https-dns", "port": 15012, "protocol": "TCP"},
        {"name": "https-webhook", "port": 443, "targetPort": 15017, "protocol": "TCP"},
        {"name": "http-monitoring", "port": 15014, "protocol": "TCP"},
    ])
}

/// The revision tag objects of the istiod chart: `templates/revision-tags-mwc.yaml` and, from
/// 1.28, `templates/revision-tags-svc.yaml`.
pub fn revision_tags(v: &Version, release: &str, rev: &str, tags: &[String]) -> Vec<Value> {
    let mut out = Vec::new();
    let service = format!("istiod{}", suffix(rev));
    for tag in tags {
        if v.minor >= 28 {
            let mut svc = object(
                "v1",
                "Service",
                &format!("istiod-revision-tag-{tag}"),
                Some("istio-system"),
                labels(&[
                    ("istio.io/rev", rev_label(rev)),
                    ("istio.io/tag", tag),
                    ("app", "istiod"),
                    ("istio", "pilot"),
                    ("release", release),
                ]),
            );
            svc["spec"] = json!({"type": "ClusterIP", "ports": service_ports(),
                "selector": {"app": "istiod", "istio.io/rev": rev_label(rev)}});
            out.push(svc);
        }
    }
    for tag in tags {
        let mut mwc = object(
            "admissionregistration.k8s.io/v1",
            "MutatingWebhookConfiguration",
            &format!("istio-revision-tag-{tag}"),
            None,
            labels(&[
                ("istio.io/tag", tag),
                ("istio.io/rev", rev_label(rev)),
                ("app", "sidecar-injector"),
                ("release", release),
            ]),
        );
        mwc["webhooks"] = injection_webhooks(tag, &service, tag == "default");
        out.push(mwc);
    }
    out
}

fn image(values: &Value, v: &Version, name: &str) -> String {
    let hub = get_str(values, "hub")
        .or(get_str(values, "global.hub"))
        .unwrap_or("docker.io/istio");
    let tag = get(values, "tag")
        .or(get(values, "global.tag"))
        .map(|t| match t {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .unwrap_or_else(|| v.to_string());
    format!("{hub}/{name}:{tag}")
}

fn istiod(v: &Version, release: &str, values: &Value) -> Vec<Value> {
    let rev = get_str(values, "revision").unwrap_or("");
    let sfx = suffix(rev);
    let rl = rev_label(rev);
    let name = format!("istiod{sfx}");
    let tags: Vec<String> = get(values, "revisionTags")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let app = |a: &str| labels(&[("app", a), ("release", release)]);
    let rev_release = labels(&[("istio.io/rev", rl), ("release", release)]);
    let mut out = vec![object(
        "v1",
        "ServiceAccount",
        &name,
        Some("istio-system"),
        app("istiod"),
    )];
    let hub_tag = image(values, v, "proxyv2");
    let (hub, tag) = hub_tag
        .rsplit_once(':')
        .map(|(h, t)| (h.trim_end_matches("/proxyv2").to_string(), t.to_string()))
        .unwrap_or_default();
    let proxy_image = get_str(values, "global.proxy.image").unwrap_or("proxyv2");
    let injector_values = json!({"global": {"hub": hub, "tag": tag, "proxy": {"image": proxy_image}}, "revision": rev});
    let mut cm_values = object(
        "v1",
        "ConfigMap",
        &format!("values{sfx}"),
        Some("istio-system"),
        rev_release.clone(),
    );
    cm_values["data"] =
        json!({"original-values": values.to_string(), "merged-values": values.to_string()});
    out.push(cm_values);
    let mut mesh = object(
        "v1",
        "ConfigMap",
        &format!("istio{sfx}"),
        Some("istio-system"),
        rev_release.clone(),
    );
    mesh["data"] = json!({"mesh": get(values, "meshConfig").cloned().unwrap_or(json!({})).to_string(), "meshNetworks": "networks: {}"});
    out.push(mesh);
    let mut injector = object(
        "v1",
        "ConfigMap",
        &format!("istio-sidecar-injector{sfx}"),
        Some("istio-system"),
        rev_release.clone(),
    );
    injector["data"] =
        json!({"values": injector_values.to_string(), "config": "policy: enabled\n"});
    out.push(injector);
    for (kind, api) in [
        ("ClusterRole", "rbac.authorization.k8s.io/v1"),
        ("ClusterRoleBinding", "rbac.authorization.k8s.io/v1"),
    ] {
        for (prefix, a) in [
            ("istiod-clusterrole", "istiod"),
            ("istiod-gateway-controller", "istiod"),
            ("istio-reader-clusterrole", "istio-reader"),
        ] {
            out.push(object(
                api,
                kind,
                &format!("{prefix}{sfx}-istio-system"),
                None,
                app(a),
            ));
        }
    }
    for kind in ["Role", "RoleBinding"] {
        out.push(object(
            "rbac.authorization.k8s.io/v1",
            kind,
            &name,
            Some("istio-system"),
            app("istiod"),
        ));
    }
    out.extend(
        revision_tags(v, release, rev, &tags)
            .into_iter()
            .filter(|o| o["kind"] == "Service"),
    );
    let mut svc = object(
        "v1",
        "Service",
        &name,
        Some("istio-system"),
        labels(&[
            ("istio.io/rev", rl),
            ("app", "istiod"),
            ("istio", "pilot"),
            ("release", release),
        ]),
    );
    let selector = if rev.is_empty() {
        json!({"app": "istiod", "istio": "pilot"})
    } else {
        json!({"app": "istiod", "istio.io/rev": rev})
    };
    svc["spec"] = json!({"type": "ClusterIP", "ports": service_ports(), "selector": selector});
    out.push(svc);
    let mut deploy = object(
        "apps/v1",
        "Deployment",
        &name,
        Some("istio-system"),
        labels(&[
            ("app", "istiod"),
            ("istio.io/rev", rl),
            ("istio", "pilot"),
            ("release", release),
        ]),
    );
    let istio_label = if rev.is_empty() { "pilot" } else { "istiod" };
    let version = v.to_string();
    let pod_labels = labels(&[
        ("app", "istiod"),
        ("istio.io/rev", rl),
        ("sidecar.istio.io/inject", "false"),
        ("istio", istio_label),
        ("istio.io/dataplane-mode", "none"),
        ("app.kubernetes.io/name", "istiod"),
        ("app.kubernetes.io/managed-by", "Helm"),
        ("app.kubernetes.io/instance", release),
        ("app.kubernetes.io/part-of", "istio"),
        ("app.kubernetes.io/version", &version),
    ]);
    let match_labels = if rev.is_empty() {
        json!({"istio": "pilot"})
    } else {
        json!({"app": "istiod", "istio.io/rev": rev})
    };
    deploy["spec"] = json!({
        "replicas": get(values, "replicaCount").and_then(Value::as_i64).unwrap_or(1),
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "100%", "maxUnavailable": "25%"}},
        "selector": {"matchLabels": match_labels},
        "template": {"metadata": {"labels": pod_labels, "annotations": {"sidecar.istio.io/inject": "false"}},
            "spec": {"serviceAccountName": name, "containers": [{"name": "discovery", "image": image(values, v, "pilot")}]}},
    });
    out.push(deploy);
    let mut hpa = object(
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
        &name,
        Some("istio-system"),
        labels(&[
            ("app", "istiod"),
            ("release", release),
            ("istio.io/rev", rl),
        ]),
    );
    hpa["spec"] = json!({"minReplicas": 1, "maxReplicas": 5,
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}});
    out.push(hpa);
    let mut mwc = object(
        "admissionregistration.k8s.io/v1",
        "MutatingWebhookConfiguration",
        &format!("istio-sidecar-injector{sfx}"),
        None,
        labels(&[
            ("istio.io/rev", rl),
            ("app", "sidecar-injector"),
            ("release", release),
        ]),
    );
    mwc["webhooks"] = injection_webhooks(rl, &name, rev.is_empty());
    out.push(mwc);
    out.extend(
        revision_tags(v, release, rev, &tags)
            .into_iter()
            .filter(|o| o["kind"] == "MutatingWebhookConfiguration"),
    );
    let mut vwc = object(
        "admissionregistration.k8s.io/v1",
        "ValidatingWebhookConfiguration",
        &format!("istio-validator{sfx}-istio-system"),
        None,
        labels(&[
            ("app", "istiod"),
            ("release", release),
            ("istio", "istiod"),
            ("istio.io/rev", rl),
        ]),
    );
    let mut vw = webhook(
        "rev.validation.istio.io",
        "Ignore",
        &name,
        "/validate",
        None,
        Some(json!({"matchExpressions": [expr("istio.io/rev", "In", &[rl])]})),
    );
    vw["rules"] = json!([{"operations": ["CREATE", "UPDATE"], "apiGroups": ["security.istio.io", "networking.istio.io", "telemetry.istio.io", "extensions.istio.io"], "apiVersions": ["*"], "resources": ["*"]}]);
    vwc["webhooks"] = json!([vw]);
    out.push(vwc);
    out
}

static GATEWAY_SCHEMA: std::sync::LazyLock<Option<jsonschema::Validator>> =
    std::sync::LazyLock::new(|| {
        let v: Value = serde_json::from_str(include_str!(
            "../../../src/schemas/istio-gateway-values.schema.json"
        ))
        .ok()?;
        jsonschema::validator_for(&v).ok()
    });

fn gateway(v: &Version, release: &str, ns: &str, values: &Value) -> Result<Vec<Value>, String> {
    if let Some(schema) = GATEWAY_SCHEMA.as_ref() {
        let errors: Vec<String> = schema
            .iter_errors(values)
            .map(|e| {
                let at = e.instance_path().to_string();
                format!(
                    "- {}: {e}",
                    if at.is_empty() { "(root)".into() } else { at }
                )
            })
            .collect();
        if !errors.is_empty() {
            return Err(format!(
                "values don't meet the specifications of the schema(s) in the following chart(s):\ngateway:\n{}",
                errors.join("\n")
            ));
        }
    }
    let name = get_str(values, "name")
        .filter(|n| !n.is_empty())
        .unwrap_or(release)
        .to_string();
    let istio = name.trim_start_matches("istio-").to_string();
    let version = v.to_string();
    let base_labels = labels(&[
        ("app", &name),
        ("istio", &istio),
        ("istio.io/dataplane-mode", "none"),
    ]);
    let mut out = Vec::new();
    for (api, kind) in [
        ("v1", "ServiceAccount"),
        ("rbac.authorization.k8s.io/v1", "Role"),
        ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ] {
        out.push(object(api, kind, &name, Some(ns), base_labels.clone()));
    }
    let mut svc = object("v1", "Service", &name, Some(ns), base_labels.clone());
    let svc_type = get_str(values, "service.type").unwrap_or("LoadBalancer");
    let ports = get(values, "service.ports").cloned().unwrap_or(json!([
        {"name": "status-port", "port": 15021, "protocol": "TCP", "targetPort": 15021},
        {"name": "http2", "port": 80, "protocol": "TCP", "targetPort": 80},
        {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 443},
    ]));
    svc["spec"] =
        json!({"type": svc_type, "ports": ports, "selector": {"app": name, "istio": istio}});
    out.push(svc);
    let mut pod_labels = json!({"sidecar.istio.io/inject": "true"});
    if let Some(rev) = get_str(values, "revision").filter(|r| !r.is_empty()) {
        pod_labels["istio.io/rev"] = json!(rev);
    }
    for (k, val) in [
        ("app", name.as_str()),
        ("istio", istio.as_str()),
        ("app.kubernetes.io/name", name.as_str()),
        ("app.kubernetes.io/managed-by", "Helm"),
        ("app.kubernetes.io/instance", release),
        ("app.kubernetes.io/part-of", "istio"),
        ("app.kubernetes.io/version", version.as_str()),
        ("istio.io/dataplane-mode", "none"),
    ] {
        pod_labels[k] = json!(val);
    }
    if let Some(extra) = get(values, "labels").and_then(Value::as_object) {
        for (k, val) in extra {
            pod_labels[k] = val.clone();
        }
    }
    let mut deploy = object(
        "apps/v1",
        "Deployment",
        &name,
        Some(ns),
        base_labels.clone(),
    );
    deploy["spec"] = json!({
        "replicas": get(values, "replicaCount").and_then(Value::as_i64).unwrap_or(1),
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "100%", "maxUnavailable": "25%"}},
        "selector": {"matchLabels": {"app": name, "istio": istio}},
        "template": {"metadata": {"labels": pod_labels,
                "annotations": {"inject.istio.io/templates": "gateway", "sidecar.istio.io/inject": "true"}},
            "spec": {"serviceAccountName": name, "containers": [{"name": "istio-proxy", "image": "auto",
                "ports": [{"containerPort": 15021, "name": "status-port"}, {"containerPort": 80, "name": "http2"}, {"containerPort": 443, "name": "https"}]}]}},
    });
    out.push(deploy);
    if get(values, "autoscaling.enabled").and_then(Value::as_bool) != Some(false) {
        let mut hpa = object(
            "autoscaling/v2",
            "HorizontalPodAutoscaler",
            &name,
            Some(ns),
            base_labels,
        );
        hpa["spec"] = json!({"minReplicas": 1, "maxReplicas": 5,
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}});
        out.push(hpa);
    }
    Ok(out)
}

/// Addon charts: the workload and Service each creates, named as the real chart names them
/// with the values paddock passes, honouring their pod-label values.
fn addon(chart: &str, version: &str, release: &str, ns: &str, values: &Value) -> Vec<Value> {
    let (name, port, pod_labels_at) = match chart {
        "prometheus" => (
            get_str(values, "server.fullnameOverride")
                .map(str::to_string)
                .unwrap_or(format!("{release}-server")),
            get(values, "server.service.servicePort")
                .and_then(Value::as_i64)
                .unwrap_or(80),
            "server.podLabels",
        ),
        "grafana" => (
            get_str(values, "fullnameOverride")
                .map(str::to_string)
                .unwrap_or(release.to_string()),
            get(values, "service.port")
                .and_then(Value::as_i64)
                .unwrap_or(80),
            "podLabels",
        ),
        "kiali-server" => ("kiali".to_string(), 20001, "deployment.pod_labels"),
        _ => (release.to_string(), 16686, "allInOne.podLabels"),
    };
    let l = labels(&[
        ("app.kubernetes.io/name", &name),
        ("app.kubernetes.io/instance", release),
        ("app.kubernetes.io/managed-by", "Helm"),
        ("helm.sh/chart", &format!("{chart}-{version}")),
    ]);
    let selector = labels(&[
        ("app.kubernetes.io/name", &name),
        ("app.kubernetes.io/instance", release),
    ]);
    let mut pod_labels = selector.clone();
    if let Some(extra) = get(values, pod_labels_at).and_then(Value::as_object) {
        for (k, v) in extra {
            pod_labels[k] = v.clone();
        }
    }
    let mut deploy = object("apps/v1", "Deployment", &name, Some(ns), l.clone());
    deploy["spec"] = json!({"replicas": 1, "selector": {"matchLabels": selector},
        "template": {"metadata": {"labels": pod_labels},
            "spec": {"containers": [{"name": chart, "image": format!("sim/{chart}:{version}")}]}}});
    let mut svc = object("v1", "Service", &name, Some(ns), l);
    svc["spec"] = json!({"type": "ClusterIP", "selector": selector,
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}]});
    let mut out = vec![deploy, svc];
    if chart == "jaeger" {
        for (svc_name, port) in [("jaeger-collector", 4317), ("jaeger-query", 16685)] {
            let mut extra = object(
                "v1",
                "Service",
                svc_name,
                Some(ns),
                out[1]["metadata"]["labels"].clone(),
            );
            extra["spec"] = json!({"type": "ClusterIP", "selector": selector,
                "ports": [{"name": "grpc", "port": port, "protocol": "TCP"}]});
            out.push(extra);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        let v = Version::parse("1.30.3").expect("version");
        assert_eq!((v.major, v.minor, v.patch), (1, 30, 3));
        assert!(Version::parse("1.30").is_none());
        assert!(Version::parse("1.30.x").is_none());
    }

    #[test]
    fn unknown_charts_and_versions_are_errors() {
        assert!(render("nope", "1.0.0", "r", "ns", &json!({})).is_err());
        assert!(render("istiod", "9.9.9", "r", "ns", &json!({})).is_err());
    }

    #[test]
    fn gateway_values_are_schema_checked() {
        let err = render(
            "gateway",
            "1.30.3",
            "istio-ingress",
            "istio-ingress",
            &json!({"bogus": 1}),
        )
        .expect_err("unknown key");
        assert!(
            err.contains("values don't meet the specifications"),
            "{err}"
        );
        assert!(err.contains("bogus"), "{err}");
    }
}
