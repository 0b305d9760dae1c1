//! The Istio routing checks' table: a base app, and for each check a manifest that fails it
//! and one that passes (tests/istio_analysis.rs judges paddock's analysis by it, and
//! tests/istio_routing_sim.rs the sim's routing).

use std::path::Path;

use paddock::spec::{Diagnostic, Severity, validate_repo};

pub const PROFILE: &str = "name: p\nk3d:\n  servers: 1\nistio:\n  version: 1.30.3\n  gateways:\n    - name: istio-ingress\n";
pub const CLUSTER: &str = "name: c\nprofile: p\nnamespaces:\n  - name: shop\n    tag: stable\n  - name: plain\nworkloads:\n  - manifests/m.yaml\n";

/// Present in every case: a Service `web` (port 8080) with pods of `version: v1`, its
/// DestinationRule (subset v1) and a Gateway `shop` on paddock's ingress.
pub const BASE: &str = "\
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports:
    - {name: http, port: 8080}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web-v1, namespace: shop}
spec:
  selector:
    matchLabels: {app: web, version: v1}
  template:
    metadata:
      labels: {app: web, version: v1}
    spec:
      containers: [{name: web, image: web:1}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web, namespace: shop}
spec:
  host: web
  subsets:
    - {name: v1, labels: {version: v1}}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: shop, namespace: shop}
spec:
  selector: {istio: ingress}
  servers:
    - port: {number: 80, name: http, protocol: HTTP}
      hosts: [\"shop.example.com\"]
";

pub const VS_HEAD: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r, namespace: shop}\nspec:\n  hosts: [\"shop.example.com\"]\n  gateways: [shop]\n  http:\n";

pub struct Check {
    pub name: &'static str,
    pub code: &'static str,
    pub severity: Severity,
    /// Added after BASE: fails the check.
    pub failing: String,
    /// Line within `failing` (1-based) and the field the finding names.
    pub line: u64,
    pub field: &'static str,
    pub message: &'static str,
    /// Added after BASE: passes it.
    pub passing: String,
}

pub fn vs(routes: &str) -> String {
    format!("{VS_HEAD}{routes}")
}

pub fn checks() -> Vec<Check> {
    use Severity::{Error, Warning};
    let dest = |d: &str| vs(&format!("    - route:\n        - destination: {d}\n"));
    let split = |a: &str, b: &str| {
        vs(&format!(
            "    - route:\n        - destination: {{host: web, subset: v1, port: {{number: 8080}}}}\n          weight: {a}\n        - destination: {{host: web, subset: v1, port: {{number: 8080}}}}\n          weight: {b}\n"
        ))
    };
    let gateway = |selector: &str, port: u16| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: g2, namespace: shop}}\nspec:\n  selector:\n    {selector}\n  servers:\n    - port: {{number: {port}, name: http, protocol: HTTP}}\n      hosts: [\"b.example.com\"]\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: rb, namespace: shop}}\nspec:\n  hosts: [\"b.example.com\"]\n  gateways: [g2]\n  http:\n    - route:\n        - destination: {{host: web, port: {{number: 8080}}}}\n"
        )
    };
    let two_ports = "apiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: shop}\nspec:\n  selector: {app: web}\n  ports:\n    - {name: http, port: 8080}\n    - {name: grpc, port: 9090}\n---\n";
    let mesh_vs = |name: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  hosts: [web]\n  http:\n    - route:\n        - destination: {{host: web, port: {{number: 8080}}}}\n"
        )
    };
    let bound_vs = |name: &str, matched: bool| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  hosts: [\"shop.example.com\"]\n  gateways: [shop]\n  http:\n    - {}route:\n        - destination: {{host: web, port: {{number: 8080}}}}\n",
            if matched {
                "match: [{uri: {prefix: /api}}]\n      "
            } else {
                ""
            }
        )
    };
    let sticky = |hash: bool| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: web-lb, namespace: shop}}\nspec:\n  host: web.shop.svc.cluster.local\n  trafficPolicy:\n    loadBalancer:\n      {}\n---\n{}",
            if hash {
                "consistentHash: {httpCookie: {name: user, ttl: 0s}}"
            } else {
                "simple: LEAST_REQUEST"
            },
            split("90", "10")
        )
    };
    let plain = |kind: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: job, namespace: plain}}\nspec:\n  selector:\n    matchLabels: {{app: job}}\n  template:\n    metadata:\n      labels: {{app: job}}\n    spec:\n      containers: [{{name: job, image: job:1}}]\n---\n{kind}"
        )
    };
    let dr_in = |ns: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: job, namespace: {ns}}}\nspec:\n  host: web.shop.svc.cluster.local\n  trafficPolicy: {{tls: {{mode: ISTIO_MUTUAL}}}}\n"
        )
    };
    let strict = |ns: &str| {
        format!(
            "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: default, namespace: {ns}}}\nspec:\n  mtls:\n    mode: STRICT\n"
        )
    };
    let port_named = |name: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: db, namespace: shop}}\nspec:\n  selector: {{app: web}}\n  ports:\n    - name: {name}\n      port: 3306\n"
        )
    };
    let sidecar = |name: &str, selector: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n{selector}  egress:\n    - hosts: [\"./*\"]\n"
        )
    };
    let dr_tls = |mode: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: web-tls, namespace: shop}}\nspec:\n  host: web.shop.svc.cluster.local\n  trafficPolicy:\n    tls:\n      mode: {mode}\n"
        )
    };
    let uri = |m: &str| {
        vs(&format!(
            "    - match:\n        - uri: {m}\n      route:\n        - destination: {{host: web, port: {{number: 8080}}}}\n"
        ))
    };
    vec![
        Check { name: "field the CRD does not declare", code: "IST0106", severity: Error,
            failing: vs("    - rout:\n        - destination: {host: web, port: {number: 8080}}\n"), line: 8, field: "spec.http[0].rout",
            message: "unknown field `rout`", passing: dest("{host: web, port: {number: 8080}}") },
        Check { name: "value outside the CRD's enum", code: "IST0106", severity: Error,
            failing: dr_tls("MUTUAL_TLS"), line: 8, field: "spec.trafficPolicy.tls.mode",
            message: "not one of DISABLE, SIMPLE, MUTUAL, ISTIO_MUTUAL", passing: dr_tls("ISTIO_MUTUAL") },
        Check { name: "two fields of a one-of group", code: "IST0106", severity: Error,
            failing: uri("{exact: /, prefix: /}"), line: 9, field: "spec.http[0].match[0].uri",
            message: "sets exact and prefix together", passing: uri("{prefix: /}") },
        Check { name: "Gateway selecting no gateway pod", code: "IST0101", severity: Error,
            failing: gateway("istio: ingressgateway", 80), line: 6, field: "spec.selector",
            message: "no gateway pod has `istio: ingressgateway`", passing: gateway("istio: ingress", 80) },
        Check { name: "Gateway port not on the gateway's Service", code: "IST0162", severity: Error,
            failing: gateway("istio: ingress", 8080), line: 8, field: "spec.servers[0].port.number",
            message: "port 8080 is not a port of gateway istio-ingress's Service", passing: gateway("istio: ingress", 80) },
        Check { name: "VirtualService bound to a missing Gateway", code: "IST0101", severity: Error,
            failing: VS_HEAD.replace("[shop]", "[shopp]") + "    - route:\n        - destination: {host: web, port: {number: 8080}}\n",
            line: 6, field: "spec.gateways[0]", message: "Referenced gateway not found: `shop/shopp`",
            passing: dest("{host: web, port: {number: 8080}}") },
        Check { name: "subset no DestinationRule defines", code: "IST0101", severity: Error,
            failing: dest("{host: web, subset: v3, port: {number: 8080}}"), line: 9, field: "spec.http[0].route[0].destination.subset",
            message: "`web.shop.svc.cluster.local+v3`", passing: dest("{host: web, subset: v1, port: {number: 8080}}") },
        Check { name: "destination port the Service does not have", code: "IST0101", severity: Error,
            failing: dest("{host: web, port: {number: 80}}"), line: 9, field: "spec.http[0].route[0].destination.port.number",
            message: "has no port 80", passing: dest("{host: web, port: {number: 8080}}") },
        Check { name: "multi-port Service without a destination port", code: "IST0112", severity: Error,
            failing: format!("{two_ports}{}", dest("{host: api}")), line: 18, field: "spec.http[0].route[0].destination",
            message: "exposes several ports", passing: format!("{two_ports}{}", dest("{host: api, port: {number: 9090}}")) },
        Check { name: "weights adding up to 0", code: "PAD1001", severity: Error,
            failing: split("0", "0"), line: 8, field: "spec.http[0].route",
            message: "weights add up to 0", passing: split("90", "10") },
        Check { name: "weighted routes with consistent-hash load balancing", code: "PAD1002", severity: Warning,
            failing: sticky(true), line: 19, field: "spec.http[0].route[0].weight",
            message: "cannot both hold", passing: sticky(false) },
        Check { name: "host in two mesh VirtualServices", code: "IST0109", severity: Warning,
            failing: format!("{}---\n{}", mesh_vs("a"), mesh_vs("b")), line: 14, field: "spec.hosts",
            message: "is routed by VirtualService/a too", passing: mesh_vs("a") },
        Check { name: "two catch-all VirtualServices for one host on one gateway", code: "PAD1003", severity: Warning,
            failing: format!("{}---\n{}", bound_vs("a", false), bound_vs("b", false)), line: 17, field: "spec.http",
            message: "merge in creation order", passing: format!("{}---\n{}", bound_vs("a", false), bound_vs("b", true)) },
        Check { name: "subset selecting no pod", code: "PAD1004", severity: Warning,
            failing: "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: web2, namespace: shop}\nspec:\n  host: web.shop.svc.cluster.local\n  subsets:\n    - name: v2\n      labels: {version: v2}\n".into(),
            line: 8, field: "spec.subsets[0].labels", message: "subset `v2` selects no pod",
            passing: "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: web2, namespace: shop}\nspec:\n  host: web.shop.svc.cluster.local\n  subsets:\n    - name: v1\n      labels: {version: v1}\n".into() },
        Check { name: "destination host with a dot that is no Service", code: "IST0101", severity: Warning,
            failing: dest("{host: web.shop, port: {number: 8080}}"), line: 9, field: "spec.http[0].route[0].destination.host",
            message: "`web.shop` has a dot, so istiod takes it as written", passing: dest("{host: web.shop.svc.cluster.local, port: {number: 8080}}") },
        Check { name: "routing in a namespace without injection", code: "IST0102", severity: Warning,
            failing: plain(&dr_in("plain")), line: 15, field: "metadata",
            message: "namespace `plain` is not injected", passing: plain(&dr_in("shop")) },
        Check { name: "STRICT mTLS over workloads without a sidecar", code: "PAD1005", severity: Warning,
            failing: plain(&strict("plain")), line: 18, field: "spec.mtls.mode",
            message: "STRICT mTLS covers workloads without a sidecar (Deployment/job in plain)", passing: plain(&strict("shop")) },
        Check { name: "Service port without a protocol Istio can read", code: "IST0118", severity: Warning,
            failing: port_named("db"), line: 7, field: "spec.ports[0]",
            message: "has no protocol Istio can read", passing: port_named("mysql") },
        Check { name: "two Sidecars without a selector in a namespace", code: "IST0126", severity: Warning,
            failing: format!("{}---\n{}", sidecar("a", ""), sidecar("b", "")), line: 10, field: "metadata.name",
            message: "has another Sidecar without a workload selector", passing: sidecar("a", "") },
        Check { name: "Sidecar selecting no pod", code: "IST0131", severity: Warning,
            failing: sidecar("a", "  workloadSelector:\n    labels: {app: nope}\n"), line: 6, field: "spec.workloadSelector.labels",
            message: "selects no pod", passing: sidecar("a", "  workloadSelector:\n    labels: {app: web}\n") },
    ]
}

pub fn findings(manifest: &str) -> Vec<Diagnostic> {
    findings_on("1.30.3", manifest)
}

/// [`findings`] for a cluster on another Istio version.
pub fn findings_on(version: &str, manifest: &str) -> Vec<Diagnostic> {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    for (path, text) in [
        ("profiles/p.yaml", PROFILE.replace("1.30.3", version)),
        ("clusters/c.yaml", CLUSTER.to_string()),
        ("manifests/m.yaml", format!("{BASE}---\n{manifest}")),
    ] {
        let full = root.join(path);
        std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        std::fs::write(full, text).expect("write");
    }
    analyzed(root)
}

/// Errors and warnings of a repository.
pub fn analyzed(root: &Path) -> Vec<Diagnostic> {
    match validate_repo(root) {
        Ok(repo) => repo.warnings,
        Err(e) => e.0,
    }
}

/// The Host a request for a check's routes carries.
pub fn sim_host(c: &Check) -> &'static str {
    if c.failing.contains("b.example.com") {
        "b.example.com"
    } else {
        "shop.example.com"
    }
}

/// Error checks the sim cannot show: it refuses custom objects with undeclared fields, as the
/// API server does, but not values outside an enum or several fields of a one-of group (the
/// real API server refuses those too, 422 Invalid).
pub fn beyond_the_sim(c: &Check) -> bool {
    matches!(
        c.name,
        "value outside the CRD's enum" | "two fields of a one-of group"
    )
}
