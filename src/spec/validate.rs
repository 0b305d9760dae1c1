//! Semantic checks on merged specs: the rules serde's shapes cannot express. Each check appends
//! diagnostics that point at the offending field in the file it came from.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use serde_json::Value;

use super::ClusterSpec;
use super::error::{Anchor, Diagnostic, suggest};
use super::load::{AddonDoc, Repo};
use super::schema::{self, Schema};
use super::types::{Addon, Body, CANARY_TAG, Injection};
use super::yaml::{FieldPath, Located};
use crate::drivers::k3d;
use crate::mesh::istio;

mod manifests;
mod schedules;
pub mod serve;
pub mod syntax;
pub mod tools;
mod values;

use schedules::schedules;
pub use schedules::{parse_cron, parse_time_zone, parse_window};

fn at(doc: &Located, path: &str, anchor: Anchor, message: impl Into<String>) -> Diagnostic {
    Diagnostic::at(doc, &FieldPath::parse(path), anchor, message)
}

/// A Kubernetes name that must be a DNS-1123 label (namespaces, tags, releases).
pub fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Parse a duration such as `90s`, `5m` or `1h30m`.
pub fn parse_duration(text: &str) -> Result<jiff::SignedDuration, String> {
    jiff::SignedDuration::from_str(text)
        .ok()
        .filter(|d| !d.is_negative())
        .ok_or_else(|| format!("`{text}` is not a duration; write e.g. `90s`, `5m` or `1h30m`"))
}

pub fn cluster(repo: &Repo, spec: &ClusterSpec, problems: &mut Vec<Diagnostic>) {
    let doc = &spec.doc;
    let body = &spec.body;
    if !spec.name.starts_with("profile-") {
        cluster_name(repo, spec, problems);
    }
    k3d_section(spec, problems);
    let tags = istio_section(body, doc, problems);
    namespaces(body, doc, &tags, problems);
    for (i, w) in body.workloads.iter().enumerate() {
        if !repo.root.join(w).is_file() {
            problems.push(
                at(
                    doc,
                    &format!("workloads[{i}]"),
                    Anchor::Value,
                    format!("manifest `{w}` not found"),
                )
                .with_help(
                    "paths are relative to the repository root; create the file or fix the path",
                ),
            );
        }
    }
    manifests::check(repo, spec, problems);
    values::check(spec, problems);
    schedules(body, doc, problems);
    let mut seen: BTreeMap<u16, FieldPath> = BTreeMap::new();
    for claim in k3d::host_port_claims(&body.k3d) {
        let path = claim.field.under(&FieldPath::parse("k3d"));
        if let Some(first) = seen.get(&claim.port) {
            problems.push(
                Diagnostic::at(
                    doc,
                    &path,
                    Anchor::Value,
                    format!("host port {} is published twice", claim.port),
                )
                .with_help(format!(
                    "{first} already publishes it; pick another host port"
                )),
            );
        } else {
            seen.insert(claim.port, path);
        }
    }
}

fn cluster_name(repo: &Repo, spec: &ClusterSpec, problems: &mut Vec<Diagnostic>) {
    let name = &spec.name;
    if is_dns_label(name) && name.len() <= 32 {
        return;
    }
    let d = match repo.clusters.get(name) {
        Some(c) => Diagnostic::at(
            &c.header_doc,
            &FieldPath::parse("name"),
            Anchor::Value,
            format!("invalid cluster name `{name}`"),
        ),
        None => Diagnostic::file("clusters", format!("invalid cluster name `{name}`")),
    };
    problems.push(d.with_help(
        "k3d cluster names are hostnames: lowercase letters, digits and `-`, at most 32 characters",
    ));
}

fn k3d_section(spec: &ClusterSpec, problems: &mut Vec<Diagnostic>) {
    let doc = &spec.doc;
    let k3d_cfg = &spec.body.k3d;
    if k3d_cfg
        .get("metadata")
        .and_then(|m| m.get("name"))
        .is_some()
    {
        problems.push(
            at(
                doc,
                "k3d.metadata.name",
                Anchor::Key,
                "paddock sets the k3d cluster name",
            )
            .with_help("remove `metadata.name`; the name comes from the cluster file's `name`"),
        );
    }
    for (key, want) in [("apiVersion", k3d::API_VERSION), ("kind", k3d::KIND)] {
        if let Some(v) = k3d_cfg.get(key)
            && v.as_str() != Some(want)
        {
            problems.push(
                at(
                    doc,
                    &format!("k3d.{key}"),
                    Anchor::Value,
                    format!("k3d `{key}` must be `{want}`"),
                )
                .with_help(format!(
                    "paddock speaks k3d's `{}` `{}` config; set `{key}: {want}` or remove it",
                    k3d::API_VERSION,
                    k3d::KIND
                )),
            );
        }
    }
    let mut user = Value::Object(k3d_cfg.clone());
    if let Value::Object(m) = &mut user {
        m.insert("apiVersion".into(), Value::from(k3d::API_VERSION));
        m.insert("kind".into(), Value::from(k3d::KIND));
        if let Some(Value::Object(meta)) = m.get_mut("metadata") {
            meta.remove("name");
        }
    }
    problems.extend(schema::check_located(
        Schema::K3d,
        doc,
        &FieldPath::parse("k3d"),
        &user,
    ));
    if let Some(ports) = k3d_cfg.get("ports").and_then(Value::as_array) {
        for (i, p) in ports.iter().enumerate() {
            if let Some(Err(e)) = p.get("port").and_then(Value::as_str).map(k3d::parse_port) {
                problems.push(
                    at(
                        doc,
                        &format!("k3d.ports[{i}].port"),
                        Anchor::Value,
                        format!("invalid port mapping: {e}"),
                    )
                    .with_help(
                        "write `[HOST:][HOSTPORT:]CONTAINERPORT[/PROTO]`, e.g. `127.0.0.1:8080:80`",
                    ),
                );
            }
        }
    }
}

/// Check the Istio section; returns the tag names namespaces may use.
fn istio_section(body: &Body, doc: &Located, problems: &mut Vec<Diagnostic>) -> BTreeSet<String> {
    let mut tags = BTreeSet::new();
    let Some(spec) = &body.istio else { return tags };
    let revision = match istio::parse_version(&spec.version) {
        Ok(v) => Some(istio::revision_for(&v)),
        Err(e) => {
            problems.push(
                at(
                    doc,
                    "istio.version",
                    Anchor::Value,
                    format!("invalid Istio version `{}`", spec.version),
                )
                .with_help(e.to_string()),
            );
            None
        }
    };
    if !spec.repo.starts_with("https://")
        && !spec.repo.starts_with("http://")
        && !spec.repo.starts_with("oci://")
    {
        problems.push(
            at(
                doc,
                "istio.repo",
                Anchor::Value,
                format!("`{}` is not a chart repository URL", spec.repo),
            )
            .with_help(format!(
                "use an https:// or oci:// URL, e.g. `{}`",
                super::types::ISTIO_REPO
            )),
        );
    }
    if let Err(e) = parse_duration(&spec.upgrade.grace_period) {
        problems.push(
            at(
                doc,
                "istio.upgrade.gracePeriod",
                Anchor::Value,
                "invalid duration",
            )
            .with_help(e),
        );
    }
    tags.insert("default".to_string());
    for (i, tag) in spec.tags.iter().enumerate() {
        let path = format!("istio.tags[{i}]");
        if !is_dns_label(tag) {
            problems.push(
                at(
                    doc,
                    &path,
                    Anchor::Value,
                    format!("invalid tag name `{tag}`"),
                )
                .with_help("tags are DNS labels: lowercase letters, digits and `-`"),
            );
        } else if revision.as_deref() == Some(tag.as_str()) || istio::looks_like_revision(tag) {
            problems.push(at(doc, &path, Anchor::Value, format!("tag `{tag}` clashes with a revision name"))
                .with_help("revisions are named after versions (`1-30-3`); give the tag a name like `stable` or `canary`"));
        } else if !tags.insert(tag.clone()) && tag != "default" {
            problems.push(
                at(doc, &path, Anchor::Value, format!("duplicate tag `{tag}`"))
                    .with_help("list each tag once"),
            );
        }
    }
    for (key, owned) in [
        (
            "istiod",
            &[
                "revision",
                "revisionTags",
                "defaults",
                "_internal_defaults_do_not_set",
            ][..],
        ),
        (
            "base",
            &[
                "defaultRevision",
                "defaults",
                "_internal_defaults_do_not_set",
            ][..],
        ),
    ] {
        let values = if key == "istiod" {
            &spec.values.istiod
        } else {
            &spec.values.base
        };
        for field in owned {
            if values.contains_key(*field) {
                let help = if field.contains("defaults") {
                    "chart defaults are internal since Istio 1.24; set the value at the top level instead".to_string()
                } else {
                    format!(
                        "remove it: paddock sets `{field}` from `istio.version` and `istio.tags`"
                    )
                };
                problems.push(
                    at(
                        doc,
                        &format!("istio.values.{key}.{field}"),
                        Anchor::Key,
                        format!("`{field}` is managed by paddock"),
                    )
                    .with_help(help),
                );
            }
        }
    }
    let mut names = BTreeSet::new();
    for (i, gw) in spec.gateways.iter().enumerate() {
        let base = format!("istio.gateways[{i}]");
        if !names.insert(&gw.name) {
            problems.push(
                at(
                    doc,
                    &format!("{base}.name"),
                    Anchor::Value,
                    format!("duplicate gateway `{}`", gw.name),
                )
                .with_help("gateway names are Helm release names and must be unique"),
            );
        }
        for (field, v) in [("name", &gw.name), ("namespace", &gw.namespace)] {
            if !is_dns_label(v) {
                problems.push(
                    at(
                        doc,
                        &format!("{base}.{field}"),
                        Anchor::Value,
                        format!("invalid {field} `{v}`"),
                    )
                    .with_help("use lowercase letters, digits and `-`"),
                );
            }
        }
        if gw.values.contains_key("revision") {
            problems.push(at(doc, &format!("{base}.values.revision"), Anchor::Key, "gateways follow the `default` tag")
                .with_help("remove `revision`: paddock moves gateways between revisions with the `default` tag"));
        }
        let path = FieldPath::parse(&format!("{base}.values"));
        problems.extend(schema::check_located(
            Schema::GatewayValues,
            doc,
            &path,
            &Value::Object(gw.values.clone()),
        ));
    }
    tags
}

fn namespaces(body: &Body, doc: &Located, tags: &BTreeSet<String>, problems: &mut Vec<Diagnostic>) {
    let mut names = BTreeSet::new();
    for (i, ns) in body.namespaces.iter().enumerate() {
        let base = format!("namespaces[{i}]");
        if !is_dns_label(&ns.name) {
            problems.push(
                at(
                    doc,
                    &format!("{base}.name"),
                    Anchor::Value,
                    format!("invalid namespace name `{}`", ns.name),
                )
                .with_help("use lowercase letters, digits and `-`, at most 63 characters"),
            );
        }
        if !names.insert(&ns.name) {
            problems.push(
                at(
                    doc,
                    &format!("{base}.name"),
                    Anchor::Value,
                    format!("duplicate namespace `{}`", ns.name),
                )
                .with_help("list each namespace once"),
            );
        }
        if ns.tag.is_some() && ns.injection == Some(Injection::Enabled) {
            problems.push(at(doc, &format!("{base}.injection"), Anchor::Key, "a namespace cannot have both `tag` and `injection: enabled`")
                .with_help("`istio-injection=enabled` beats `istio.io/rev` and breaks revision upgrades; keep only `tag`"));
        }
        for key in ["istio-injection", "istio.io/rev"] {
            if ns.labels.contains_key(key) {
                problems.push(
                    at(
                        doc,
                        &format!("{base}.labels"),
                        Anchor::Value,
                        format!("label `{key}` is managed by paddock"),
                    )
                    .with_help("use the namespace's `tag` or `injection` field instead"),
                );
            }
        }
        let wants_istio = ns.effective_tag().is_some() || ns.injection == Some(Injection::Enabled);
        if wants_istio && body.istio.is_none() {
            problems.push(
                at(
                    doc,
                    &base,
                    Anchor::Value,
                    format!(
                        "namespace `{}` asks for injection but the cluster has no Istio",
                        ns.name
                    ),
                )
                .with_help("add an `istio` section or drop the namespace's `tag`/`injection`"),
            );
        }
        if ns.canary
            && (ns.tag.as_deref().is_some_and(|t| t != CANARY_TAG) || ns.injection.is_some())
        {
            problems.push(
                at(
                    doc,
                    &format!("{base}.canary"),
                    Anchor::Key,
                    "canary namespaces select the `canary` tag",
                )
                .with_help("drop `tag`/`injection` from this namespace, or drop `canary: true`"),
            );
        }
        if let Some(tag) = ns.effective_tag()
            && body.istio.is_some()
            && !tags.contains(tag)
        {
            let list: Vec<&str> = tags.iter().map(String::as_str).collect();
            problems.push(
                at(
                    doc,
                    &format!("{base}.tag"),
                    Anchor::Value,
                    format!("unknown tag `{tag}`"),
                )
                .with_help(format!(
                    "{}; declare it in `istio.tags`",
                    suggest(tag, "tags", &list)
                )),
            );
        }
    }
}

/// Resolve the enabled addons and order them so each comes after what it needs.
pub fn addons_in_order(
    repo: &Repo,
    body: &Body,
    doc: &Located,
    problems: &mut Vec<Diagnostic>,
) -> Vec<Addon> {
    let known: Vec<&str> = repo.addons.keys().map(String::as_str).collect();
    // In the order the spec lists them, so plans read like the spec.
    let mut enabled: Vec<(&str, &Addon)> = Vec::new();
    for (i, name) in body.addons.iter().enumerate() {
        match repo.addons.get(name) {
            Some(_) if enabled.iter().any(|(n, _)| n == name) => {
                problems.push(
                    at(
                        doc,
                        &format!("addons[{i}]"),
                        Anchor::Value,
                        format!("addon `{name}` is listed twice"),
                    )
                    .with_help("list each addon once"),
                );
            }
            Some(a) => enabled.push((name, &a.addon)),
            None => problems.push(
                at(
                    doc,
                    &format!("addons[{i}]"),
                    Anchor::Value,
                    format!("unknown addon `{name}`"),
                )
                .with_help(format!(
                    "{}; addons live in addons/NAME.yaml",
                    suggest(name, "addons", &known)
                )),
            ),
        }
    }
    let is_enabled = |n: &str| enabled.iter().any(|(e, _)| *e == n);
    for (i, name) in body.addons.iter().enumerate() {
        let Some(addon) = repo.addons.get(name) else {
            continue;
        };
        for need in &addon.addon.needs {
            if repo.addons.contains_key(need) && !is_enabled(need) {
                problems.push(
                    at(
                        doc,
                        &format!("addons[{i}]"),
                        Anchor::Value,
                        format!("addon `{name}` needs `{need}`, which is not enabled"),
                    )
                    .with_help(format!("add `{need}` to `addons`")),
                );
            }
        }
    }
    // Kahn's algorithm; cycles are reported per addon file by `addon_cycles`.
    let mut order: Vec<Addon> = Vec::new();
    let done = |order: &[Addon], n: &str| order.iter().any(|a| a.name == n);
    loop {
        let ready: Vec<&Addon> = enabled
            .iter()
            .filter(|(n, a)| {
                !done(&order, n) && a.needs.iter().all(|d| done(&order, d) || !is_enabled(d))
            })
            .map(|(_, a)| *a)
            .collect();
        if ready.is_empty() {
            break;
        }
        order.extend(ready.into_iter().cloned());
    }
    order
}

/// Dependency cycles among addon files.
pub fn addon_cycles(repo: &Repo, problems: &mut Vec<Diagnostic>) {
    fn visit<'a>(
        repo: &'a Repo,
        name: &'a str,
        stack: &mut Vec<&'a str>,
        reported: &mut BTreeSet<String>,
        problems: &mut Vec<Diagnostic>,
    ) {
        if let Some(pos) = stack.iter().position(|n| *n == name) {
            let cycle: Vec<&str> = stack[pos..].iter().copied().chain([name]).collect();
            let mut key: Vec<&str> = stack[pos..].to_vec();
            key.sort();
            if reported.insert(key.join(",")) {
                let from = stack[stack.len() - 1];
                if let Some(a) = repo.addons.get(from) {
                    let i = a.addon.needs.iter().position(|n| n == name).unwrap_or(0);
                    problems.push(
                        at(
                            &a.doc,
                            &format!("needs[{i}]"),
                            Anchor::Value,
                            format!("addon dependency cycle: {}", cycle.join(" → ")),
                        )
                        .with_help(
                            "remove one of these `needs` so the addons can be installed in order",
                        ),
                    );
                }
            }
            return;
        }
        let Some(a) = repo.addons.get(name) else {
            return;
        };
        stack.push(name);
        for need in &a.addon.needs {
            visit(repo, need, stack, reported, problems);
        }
        stack.pop();
    }
    let mut reported = BTreeSet::new();
    for name in repo.addons.keys() {
        visit(repo, name, &mut Vec::new(), &mut reported, problems);
    }
}

/// Checks of one addon file on its own.
pub fn addon_file(a: &AddonDoc, problems: &mut Vec<Diagnostic>) {
    let (doc, addon) = (&a.doc, &a.addon);
    if !is_dns_label(&addon.name) {
        problems.push(
            at(
                doc,
                "name",
                Anchor::Value,
                format!("invalid addon name `{}`", addon.name),
            )
            .with_help("use lowercase letters, digits and `-`"),
        );
    }
    if !is_dns_label(&addon.namespace) {
        problems.push(
            at(
                doc,
                "namespace",
                Anchor::Value,
                format!("invalid namespace `{}`", addon.namespace),
            )
            .with_help("use lowercase letters, digits and `-`"),
        );
    }
    if semver::Version::parse(&addon.chart.version).is_err() {
        problems.push(at(doc, "chart.version", Anchor::Value, format!("chart version `{}` is not pinned", addon.chart.version))
            .with_help("pin an exact chart version such as `27.39.0`; ranges and `latest` make installs unrepeatable"));
    }
    if !["https://", "http://", "oci://"]
        .iter()
        .any(|p| addon.chart.repo.starts_with(p))
    {
        problems.push(
            at(
                doc,
                "chart.repo",
                Anchor::Value,
                format!("`{}` is not a chart repository URL", addon.chart.repo),
            )
            .with_help("use the repository's https:// or oci:// URL"),
        );
    }
    for (i, need) in addon.needs.iter().enumerate() {
        if need == &addon.name {
            problems.push(
                at(
                    doc,
                    &format!("needs[{i}]"),
                    Anchor::Value,
                    "an addon cannot need itself",
                )
                .with_help("remove this entry"),
            );
        }
    }
    for (i, r) in addon.ready.iter().enumerate() {
        if let Err(e) = parse_duration(&r.timeout) {
            problems.push(
                at(
                    doc,
                    &format!("ready[{i}].timeout"),
                    Anchor::Value,
                    "invalid duration",
                )
                .with_help(e),
            );
        }
    }
    for (i, m) in addon.manifests.iter().enumerate() {
        if m.get("apiVersion").and_then(Value::as_str).is_none()
            || m.get("kind").and_then(Value::as_str).is_none()
        {
            problems.push(
                at(
                    doc,
                    &format!("manifests[{i}]"),
                    Anchor::Value,
                    "manifest lacks `apiVersion` or `kind`",
                )
                .with_help(
                    "each manifest is a Kubernetes object with apiVersion, kind and metadata",
                ),
            );
        }
    }
}

/// Two clusters publishing the same host port cannot run side by side.
pub fn shared_host_ports(specs: &[ClusterSpec], problems: &mut Vec<Diagnostic>) {
    let mut owners: BTreeMap<u16, &ClusterSpec> = BTreeMap::new();
    for spec in specs {
        let mut own = BTreeSet::new();
        for claim in k3d::host_port_claims(&spec.body.k3d) {
            if !own.insert(claim.port) {
                continue;
            }
            match owners.get(&claim.port) {
                Some(first) if first.name != spec.name => {
                    let path = claim.field.under(&FieldPath::parse("k3d"));
                    problems.push(
                        Diagnostic::at(
                            &spec.doc,
                            &path,
                            Anchor::Value,
                            format!(
                                "host port {} is also claimed by cluster `{}`",
                                claim.port, first.name
                            ),
                        )
                        .with_help(
                            "give each cluster its own host ports so they can run side by side",
                        ),
                    );
                }
                Some(_) => {}
                None => {
                    owners.insert(claim.port, spec);
                }
            }
        }
    }
}
