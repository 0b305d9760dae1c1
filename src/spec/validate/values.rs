//! Spec values with a syntax of their own or that must be unique, beyond the shapes serde
//! checks: workload files listed once, namespace labels Kubernetes accepts, image references a
//! runtime can pull.

use std::collections::BTreeSet;

use super::syntax;
use crate::spec::ClusterSpec;
use crate::spec::error::{Anchor, Diagnostic};
use crate::spec::yaml::FieldPath;

fn at(spec: &ClusterSpec, path: &str, anchor: Anchor, message: impl Into<String>) -> Diagnostic {
    Diagnostic::at(&spec.doc, &FieldPath::parse(path), anchor, message)
}

pub fn check(spec: &ClusterSpec, problems: &mut Vec<Diagnostic>) {
    let body = &spec.body;
    let mut files = BTreeSet::new();
    for (i, w) in body.workloads.iter().enumerate() {
        if !files.insert(w) {
            problems.push(
                at(
                    spec,
                    &format!("workloads[{i}]"),
                    Anchor::Value,
                    format!("manifest `{w}` is listed twice"),
                )
                .with_help("list each manifest file once; its objects are applied once"),
            );
        }
    }
    for (i, ns) in body.namespaces.iter().enumerate() {
        for (k, v) in &ns.labels {
            let here = format!("namespaces[{i}].labels.{k}");
            if let Some(p) = syntax::key_problem(k) {
                problems.push(at(spec, &here, Anchor::Key, p).with_help("fix the label key"));
            }
            if let Some(p) = syntax::label_value_problem(v) {
                problems.push(
                    at(spec, &here, Anchor::Value, p).with_help("shorten or simplify the value"),
                );
            }
        }
    }
    for (i, image) in body.images.iter().enumerate() {
        if let Some(p) = syntax::image_problem(image) {
            problems.push(
                at(spec, &format!("images[{i}]"), Anchor::Value, p)
                    .with_help("write it as `docker images` lists it: `[registry/]repository[:tag]`, lowercase"),
            );
        }
    }
    if let Some(image) = body.k3d.get("image").and_then(serde_json::Value::as_str)
        && let Some(p) = syntax::image_problem(image)
    {
        problems.push(
            at(spec, "k3d.image", Anchor::Value, p)
                .with_help("a k3s image such as `rancher/k3s:v1.33.4-k3s1`"),
        );
    }
}
