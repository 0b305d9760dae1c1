//! The plan of a cluster built from nothing: every step, in the order they are added, with
//! what each needs. `up` trims it to what an existing cluster still lacks (`converge`).

use std::collections::BTreeMap;

use serde_json::Value;

use super::{
    Action, Plan, Step, WorkloadRef, addon_layers, layers, namespace_labels, objects_hash,
    release_fingerprint, spec_hash,
};
use crate::drivers::helm::{self, Release};
use crate::drivers::k3d;
use crate::mesh::istio;
use crate::plan::observed::{ClusterState, Record};
use crate::spec::ClusterSpec;
use crate::spec::types::WorkloadKind;

struct Builder {
    steps: Vec<Step>,
}

/// What "installed" waits for after a release.
#[derive(Default)]
struct Readiness {
    workloads: Vec<WorkloadRef>,
    checks: Vec<String>,
    ca_bundles: Vec<String>,
    endpoints: Vec<String>,
    timeout_secs: u64,
}

impl Builder {
    /// `helm.install/NAME` after `after`, then `kube.wait/NAME` after the install; returns the
    /// wait step's id.
    fn install_and_wait(&mut self, release: Release, after: &[&str], ready: Readiness) -> String {
        let Readiness {
            workloads,
            checks,
            ca_bundles,
            endpoints,
            timeout_secs,
        } = ready;
        let name = release.name.clone();
        let namespace = release.namespace.clone();
        let install = self.add(
            format!("helm.install/{name}"),
            after,
            Action::HelmInstall { release },
        );
        self.add(
            format!("kube.wait/{name}"),
            &[&install],
            Action::WaitReady {
                namespace,
                workloads,
                checks,
                ca_bundles,
                endpoints,
                timeout_secs,
            },
        )
    }

    fn add(&mut self, id: String, needs: &[&str], action: Action) -> String {
        self.steps.push(Step {
            id: id.clone(),
            needs: needs.iter().map(|s| s.to_string()).collect(),
            action,
        });
        id
    }
}

/// Everything a cluster built from nothing needs, in the order the steps are added.
pub(super) fn from_nothing(spec: &ClusterSpec, observed: &ClusterState, applied: &[Value]) -> Plan {
    let mut b = Builder { steps: Vec::new() };
    let (nodes, dns) = cluster_steps(&mut b, spec);
    let mut finals = vec![dns.clone()];
    if !spec.body.images.is_empty() {
        finals.push(b.add(
            "k3d.import".into(),
            &[&nodes],
            Action::ImportImages {
                images: spec.body.images.clone(),
            },
        ));
    }
    let namespace_steps = namespace_steps(&mut b, spec, &dns);
    let mesh = mesh_steps(&mut b, spec, &dns);
    finals.extend(namespace_steps.iter().cloned());
    finals.extend(mesh.istiod_ready.iter().cloned());
    finals.extend(mesh.gateway_ready.iter().cloned());
    let notes = addon_steps(&mut b, spec, &dns, mesh.base.as_deref(), &mut finals);
    if !spec.body.workloads.is_empty() {
        let mut deps: Vec<&str> = namespace_steps.iter().map(String::as_str).collect();
        deps.extend(mesh.istiod_ready.iter().map(String::as_str));
        deps.extend(mesh.gateway_ready.iter().map(String::as_str));
        if deps.is_empty() {
            deps.push(&dns);
        }
        let id = b.add(
            "kube.apply/workloads".into(),
            &deps,
            Action::Apply {
                source: spec.body.workloads.join(", "),
                objects: applied.to_vec(),
                origins: Vec::new(),
            },
        );
        finals.push(id);
    }
    if !mesh.gateway_ready.is_empty()
        && let Some(port) = k3d::published_port(&spec.body.k3d, 80)
    {
        let deps: Vec<&str> = finals.iter().map(String::as_str).collect();
        let id = b.add(
            "verify/ingress".into(),
            &deps,
            Action::VerifyIngress {
                url: format!("http://127.0.0.1:{port}/"),
                host: istio::PROBE_HOST.into(),
            },
        );
        finals = vec![id];
    }
    let hash = record_step(&mut b, spec, &finals);
    let groups = layers(&b.steps);
    let addon_groups = addon_layers(spec);
    Plan {
        cluster: spec.name.clone(),
        profile: spec.profile.clone(),
        observed: observed.clone(),
        spec_hash: hash,
        steps: b.steps,
        groups,
        addon_groups,
        notes,
    }
}

/// The cache registries, the cluster, its nodes and CoreDNS: returns the ids of the nodes'
/// and CoreDNS's waits.
fn cluster_steps(b: &mut Builder, spec: &ClusterSpec) -> (String, String) {
    let caches: Vec<String> = spec
        .body
        .caches
        .as_ref()
        .map(|c| c.registries())
        .unwrap_or_default()
        .into_iter()
        .map(|registry| {
            b.add(
                format!("k3d.registry/{}", registry.name),
                &[],
                Action::EnsureRegistry { registry },
            )
        })
        .collect();
    let cache_refs: Vec<&str> = caches.iter().map(String::as_str).collect();
    let create = b.add(
        format!("k3d.create/{}", spec.name),
        &cache_refs,
        Action::CreateCluster {
            config: k3d::config(spec),
        },
    );
    let nodes = b.add("kube.wait/nodes".into(), &[&create], Action::WaitNodesReady);
    let dns = b.add("kube.wait/coredns".into(), &[&nodes], Action::WaitCoreDns);
    (nodes, dns)
}

/// The spec's namespaces, each created or labelled once CoreDNS runs.
fn namespace_steps(b: &mut Builder, spec: &ClusterSpec, dns: &str) -> Vec<String> {
    spec.body
        .namespaces
        .iter()
        .map(|ns| {
            b.add(
                format!("kube.namespace/{}", ns.name),
                &[dns],
                Action::Namespace {
                    name: ns.name.clone(),
                    labels: namespace_labels(ns),
                },
            )
        })
        .collect()
}

/// The ids of the Istio releases' steps that later steps wait on.
#[derive(Default)]
struct MeshSteps {
    /// `istio-base` installed.
    base: Option<String>,
    /// istiod ready and the tags on its revision.
    istiod_ready: Option<String>,
    /// Each gateway ready with its probe route.
    gateway_ready: Vec<String>,
}

/// The Istio releases, in install order: base, istiod and its tags, the gateways.
fn mesh_steps(b: &mut Builder, spec: &ClusterSpec, dns: &str) -> MeshSteps {
    let mut mesh = MeshSteps::default();
    for rel in istio::releases(spec) {
        match rel.chart.as_str() {
            "base" => {
                mesh.base = Some(b.add(
                    format!("helm.install/{}", rel.name),
                    &[dns],
                    Action::HelmInstall { release: rel },
                ));
            }
            "istiod" => {
                let after = mesh.base.clone().unwrap_or_else(|| dns.to_string());
                mesh.istiod_ready = Some(istiod_steps(b, spec, rel, &after));
            }
            _ => {
                let after = mesh.istiod_ready.clone().unwrap_or_else(|| dns.to_string());
                mesh.gateway_ready.push(gateway_steps(b, spec, rel, &after));
            }
        }
    }
    mesh
}

/// istiod installed and serving, then the revision tags on it: returns the tags' step id.
fn istiod_steps(b: &mut Builder, spec: &ClusterSpec, rel: Release, after: &str) -> String {
    let name = rel.name.clone();
    let revision = name.trim_start_matches("istiod-").to_string();
    let checks = vec![
        format!("Service {name} has ready endpoints"),
        format!("MutatingWebhookConfiguration istio-sidecar-injector-{revision} has a caBundle"),
    ];
    let tags = spec
        .body
        .istio
        .as_ref()
        .map(istio::tags_of)
        .unwrap_or_default();
    let ca_bundles = vec![format!("istio-sidecar-injector-{revision}")];
    let (repo, version) = (rel.repo.clone(), rel.version.clone());
    let workloads = vec![WorkloadRef {
        kind: WorkloadKind::Deployment,
        name: name.clone(),
    }];
    let ready = b.install_and_wait(
        rel,
        &[after],
        Readiness {
            workloads,
            checks,
            ca_bundles,
            endpoints: vec![name],
            timeout_secs: 300,
        },
    );
    b.add(
        format!("kube.tags/{revision}"),
        &[&ready],
        Action::ApplyTags {
            repo,
            version,
            revision,
            tags,
        },
    )
}

/// A gateway installed and ready, then paddock's probe route through it: returns the route's
/// step id.
fn gateway_steps(b: &mut Builder, spec: &ClusterSpec, rel: Release, after: &str) -> String {
    let workloads = vec![WorkloadRef {
        kind: WorkloadKind::Deployment,
        name: rel.name.clone(),
    }];
    let checks = vec!["pods run the proxy image of the revision tag `default` points at".into()];
    let (name, namespace) = (rel.name.clone(), rel.namespace.clone());
    let ready = b.install_and_wait(
        rel,
        &[after],
        Readiness {
            workloads,
            checks,
            timeout_secs: 300,
            ..Readiness::default()
        },
    );
    b.add(
        format!("kube.apply/probe-{name}"),
        &[&ready],
        Action::Apply {
            source: format!("paddock's probe route through gateway {name}"),
            objects: istio::probe_route(&spec.name, &name, &namespace),
            origins: Vec::new(),
        },
    )
}

/// Each addon installed and ready after what it needs, then its manifests (after `base`, whose
/// CRDs they may use); each addon's last step joins `finals`. Returns the notes on dev-only
/// addons.
fn addon_steps(
    b: &mut Builder,
    spec: &ClusterSpec,
    dns: &str,
    base: Option<&str>,
    finals: &mut Vec<String>,
) -> Vec<String> {
    let mut addon_ready: BTreeMap<String, String> = BTreeMap::new();
    let mut notes = Vec::new();
    for addon in &spec.addons {
        if addon.dev_only {
            notes.push(format!(
                "addon `{}` is dev-only and insecure by default: expose it only on localhost",
                addon.name
            ));
        }
        let mut needs = vec![dns.to_string()];
        needs.extend(
            addon
                .needs
                .iter()
                .filter_map(|n| addon_ready.get(n).cloned()),
        );
        let needs_ref: Vec<&str> = needs.iter().map(String::as_str).collect();
        let workloads = addon
            .ready
            .iter()
            .map(|r| WorkloadRef {
                kind: r.kind,
                name: r.name.clone(),
            })
            .collect();
        let timeout = addon
            .ready
            .iter()
            .filter_map(|r| crate::spec::validate::parse_duration(&r.timeout).ok())
            .map(|d| d.as_secs().max(1) as u64)
            .max()
            .unwrap_or(300);
        let ready = b.install_and_wait(
            helm::addon_release(addon),
            &needs_ref,
            Readiness {
                workloads,
                timeout_secs: timeout,
                ..Readiness::default()
            },
        );
        let mut last = ready.clone();
        if !addon.manifests.is_empty() {
            let mut deps = vec![ready.as_str()];
            deps.extend(base);
            last = b.add(
                format!("kube.apply/addon-{}", addon.name),
                &deps,
                Action::Apply {
                    source: format!("addons/{}.yaml manifests", addon.name),
                    objects: addon.manifests.clone(),
                    origins: Vec::new(),
                },
            );
        }
        addon_ready.insert(addon.name.clone(), ready);
        finals.push(last);
    }
    notes
}

/// The record of what was applied, after everything else: returns the spec's hash.
fn record_step(b: &mut Builder, spec: &ClusterSpec, finals: &[String]) -> String {
    let hash = spec_hash(spec);
    let deps: Vec<&str> = finals.iter().map(String::as_str).collect();
    let mut releases = BTreeMap::new();
    let mut applied_objects: Vec<&Value> = Vec::new();
    for step in &b.steps {
        match &step.action {
            Action::HelmInstall { release } => {
                releases.insert(release.name.clone(), release_fingerprint(release));
            }
            Action::Apply { objects, .. } => applied_objects.extend(objects.iter()),
            _ => {}
        }
    }
    let istio_spec = spec.body.istio.as_ref();
    let record = Record {
        spec_hash: hash.clone(),
        releases,
        k3d: k3d::config(spec),
        istio_version: istio_spec.map(|i| i.version.clone()).unwrap_or_default(),
        applied_hash: objects_hash(&applied_objects),
        images: spec.body.images.clone(),
        istio_revision: istio_spec
            .and_then(|i| istio::parse_version(&i.version).ok())
            .map(|v| istio::revision_for(&v))
            .unwrap_or_default(),
    };
    b.add(
        "paddock.record".into(),
        &deps,
        Action::RecordSpec { record },
    );
    hash
}
