//! `cargo bench --bench analyze`: the Istio routing analysis of 200 manifest objects (40 apps,
//! each a Service, two Deployments, a DestinationRule and a VirtualService through one
//! Gateway), alone and as part of `validate` (reading and parsing the files, every check).
//!
//! Prints numbers; asserts nothing.

use std::time::{Duration, Instant};

use paddock::spec::{manifests, validate_repo};

const APPS: usize = 40;

fn app(i: usize) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: app{i}, namespace: shop}}\nspec:\n  selector: {{app: app{i}}}\n  ports:\n    - {{name: http, port: 8080}}\n---\n\
apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: app{i}-v1, namespace: shop}}\nspec:\n  selector:\n    matchLabels: {{app: app{i}, version: v1}}\n  template:\n    metadata:\n      labels: {{app: app{i}, version: v1}}\n    spec:\n      containers: [{{name: app, image: \"registry.example.com/app{i}:1\"}}]\n---\n\
apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: app{i}-v2, namespace: shop}}\nspec:\n  selector:\n    matchLabels: {{app: app{i}, version: v2}}\n  template:\n    metadata:\n      labels: {{app: app{i}, version: v2}}\n    spec:\n      containers: [{{name: app, image: \"registry.example.com/app{i}:2\"}}]\n---\n\
apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: app{i}, namespace: shop}}\nspec:\n  host: app{i}\n  subsets:\n    - {{name: v1, labels: {{version: v1}}}}\n    - {{name: v2, labels: {{version: v2}}}}\n---\n\
apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: app{i}, namespace: shop}}\nspec:\n  hosts: [\"app{i}.example.com\"]\n  gateways: [shop]\n  http:\n    - route:\n        - destination: {{host: app{i}, subset: v1, port: {{number: 8080}}}}\n          weight: 90\n        - destination: {{host: app{i}, subset: v2, port: {{number: 8080}}}}\n          weight: 10\n"
    )
}

fn median(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (ms(v[v.len() / 2]), ms(v[v.len() * 9 / 10]))
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    for d in ["profiles", "clusters", "manifests"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    std::fs::write(root.join("profiles/p.yaml"), "name: p\nk3d:\n  servers: 1\nistio:\n  version: 1.30.3\n  gateways:\n    - name: istio-ingress\n").expect("write");
    std::fs::write(root.join("clusters/c.yaml"), "name: c\nprofile: p\nnamespaces:\n  - name: shop\n    tag: stable\nworkloads:\n  - manifests/apps.yaml\n").expect("write");
    let mut text = String::from(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: shop, namespace: shop}\nspec:\n  selector: {istio: ingress}\n  servers:\n    - port: {number: 80, name: http, protocol: HTTP}\n      hosts: [\"*.example.com\"]\n",
    );
    for i in 0..APPS {
        text.push_str("---\n");
        text.push_str(&app(i));
    }
    std::fs::write(root.join("manifests/apps.yaml"), &text).expect("write");
    let repo =
        validate_repo(root).unwrap_or_else(|e| panic!("the generated repository is valid:\n{e}"));
    assert!(repo.warnings.is_empty(), "{:?}", repo.warnings);
    let spec = repo.resolve("c").expect("cluster");
    let objects = manifests::parse("manifests/apps.yaml", &text).expect("parse");
    let n = objects.len();
    let runs = 50;
    let mut analysis = Vec::new();
    let mut parse_and_analyze = Vec::new();
    let mut validate = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let found = paddock::mesh::analyze::analyze(&spec, &objects);
        analysis.push(t.elapsed());
        assert!(found.is_empty());
        let t = Instant::now();
        let parsed = manifests::parse("manifests/apps.yaml", &text).expect("parse");
        let _ = paddock::mesh::analyze::analyze(&spec, &parsed);
        parse_and_analyze.push(t.elapsed());
        let t = Instant::now();
        let _ = validate_repo(root).expect("valid");
        validate.push(t.elapsed());
    }
    let (a, a90) = median(analysis);
    let (p, p90) = median(parse_and_analyze);
    let (v, v90) = median(validate);
    println!("Istio routing analysis of {n} manifest objects ({runs} runs):");
    println!("  analysis alone:            median {a:.2} ms, p90 {a90:.2} ms");
    println!("  parsing + analysis:        median {p:.2} ms, p90 {p90:.2} ms");
    println!(
        "  whole `validate` (1 cluster, every check, files read): median {v:.2} ms, p90 {v90:.2} ms"
    );
}
