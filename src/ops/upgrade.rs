//! Istio upgrades, exactly as ISTIO.md lays them out: the revision canary with tags (steps
//! 1–11, each with its wait and its undo) and the in-place upgrade. Every step is journaled
//! before and after it runs; a killed upgrade continues on the next `paddock upgrade` (done
//! steps are re-verified, not redone); a step whose check fails or times out rolls back the
//! completed steps in reverse.

use std::time::Duration;

use serde_json::{Value, json};

use crate::cli::output::Reporter;
use crate::drivers::exec::Cmd;
use crate::drivers::helm::Release;
use crate::drivers::helm::cli::Helm;
use crate::drivers::kube::Kube;
use crate::engine::journal::Journal;
use crate::mesh::istio;
use crate::ops::restart::{self, Mesh};
use crate::spec::ClusterSpec;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    Canary,
    InPlace,
}

/// What an upgrade is: persisted in the journal when it starts.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Params {
    pub strategy: Strategy,
    pub from: String,
    pub to: String,
    pub from_rev: String,
    /// The revision serving afterwards (= `from_rev` in place).
    pub to_rev: String,
    pub grace_secs: u64,
}

/// The steps of a strategy, in order.
pub fn steps(strategy: Strategy, canary_namespaces: bool) -> Vec<&'static str> {
    match strategy {
        Strategy::Canary => {
            let mut v = vec!["base", "istiod", "smoke"];
            if canary_namespaces {
                v.extend(["tag-canary", "restart-canary"]);
            }
            v.extend([
                "tags",
                "restart",
                "gateways",
                "old-unused",
                "default-revision",
                "remove-old",
            ]);
            v
        }
        Strategy::InPlace => vec![
            "save-values",
            "base",
            "istiod",
            "gateways",
            "restart",
            "verify",
        ],
    }
}

/// What each step does and how it is undone, for `--dry-run` and the docs.
pub fn describe(step: &str, p: &Params) -> String {
    let (old, new) = (&p.from_rev, &p.to_rev);
    match (p.strategy, step) {
        (Strategy::Canary, "base") => format!(
            "helm upgrade istio-base to {} keeping defaultRevision={old}; wait: CRDs Established",
            p.to
        ),
        (Strategy::Canary, "istiod") => format!(
            "helm install istiod-{new} (revision {new}); wait: rollout, injector caBundle; undo: helm uninstall istiod-{new}"
        ),
        (_, "smoke") => format!(
            "probe pod in a throwaway namespace on revision {new}: injected by {new} with the new proxy image; undo: delete the namespace"
        ),
        (_, "tag-canary") => format!(
            "tag canary → {new} (helm template revision-tags, server-side apply); wait: label and caBundle; undo: tag back to {old}"
        ),
        (_, "restart-canary") => format!(
            "restart workloads in canary namespaces onto {new}; undo: tag canary back to {old} and restart them again"
        ),
        (_, "tags") => {
            format!("tags stable/default (and the rest) → {new}; undo: move them back to {old}")
        }
        (Strategy::Canary, "restart") => format!(
            "restart every remaining workload whose proxy is stale; undo: tags back to {old}, restart again"
        ),
        (_, "gateways") => format!(
            "helm upgrade the gateways to {}; wait: rollout, new proxy image; undo: helm rollback",
            p.to
        ),
        (_, "old-unused") => format!(
            "revision {old} provably unused (no namespace, tag or live pod), then a {}s grace period",
            p.grace_secs
        ),
        (_, "default-revision") => format!(
            "helm upgrade istio-base --set defaultRevision={new}; wait: istiod-default-validator calls istiod-{new}; undo: back to {old}"
        ),
        (_, "remove-old") => format!(
            "helm uninstall istiod-{old}, delete tag objects still on {old} (no undo past here)"
        ),
        (Strategy::InPlace, "save-values") => {
            "save every release's values (helm get values) in the journal".into()
        }
        (Strategy::InPlace, "base") => format!("helm upgrade istio-base to {}", p.to),
        (Strategy::InPlace, "istiod") => format!(
            "helm upgrade istiod-{old} to {} (same revision); wait: rollout, new injector image, caBundle; undo: helm rollback, restart again",
            p.to
        ),
        (Strategy::InPlace, "restart") => {
            "restart workloads whose proxy image differs from the injector's".into()
        }
        (Strategy::InPlace, "verify") => "no pod runs an old proxy image".into(),
        _ => step.to_string(),
    }
}

/// How an upgrade ended.
#[derive(Debug)]
pub enum Outcome {
    Done,
    Paused(String),
    /// A step failed; what was done is undone. (step, error, undone steps)
    RolledBack(String, String, Vec<String>),
    /// A step failed and could not be (fully) undone.
    Failed(String, String),
}

/// Everything the steps need.
#[derive(Debug)]
pub struct Ctx<'a> {
    pub cluster: &'a str,
    pub spec: &'a ClusterSpec,
    pub kube: &'a Kube,
    pub helm: &'a Helm,
    pub kubeconfig: &'a std::path::Path,
    pub reporter: &'a Reporter,
    pub journal: &'a Journal,
    pub params: Params,
    pub step_timeout: Duration,
    pub max_concurrent: usize,
}

fn repo(spec: &ClusterSpec) -> String {
    spec.body
        .istio
        .as_ref()
        .map(|i| i.repo.clone())
        .unwrap_or_else(|| "https://istio-release.storage.googleapis.com/charts".into())
}

fn tags(spec: &ClusterSpec) -> Vec<String> {
    spec.body
        .istio
        .as_ref()
        .map(istio::tags_of)
        .unwrap_or_default()
}

/// Namespaces the spec marks as canaries (on tag `canary`).
pub fn canary_namespaces(spec: &ClusterSpec) -> Vec<String> {
    spec.body
        .namespaces
        .iter()
        .filter(|n| n.effective_tag() == Some("canary"))
        .map(|n| n.name.clone())
        .collect()
}

fn release<'r>(releases: &'r [Release], chart: &str) -> Option<&'r Release> {
    releases.iter().find(|r| r.chart == chart)
}

impl Ctx<'_> {
    fn desired(&self, version: &str, rev: &str) -> Vec<Release> {
        istio::releases_for(self.spec, version, rev)
    }

    async fn helm_install(&self, r: &Release) -> Result<(), String> {
        let cmd = self.helm.upgrade_install_cmd(r, self.kubeconfig);
        self.reporter.command(&cmd.to_string());
        self.helm
            .run(cmd)
            .await
            .map(|_| ())
            .map_err(|e| format!("failed to install {}: {e}", r.name))
    }

    async fn helm(&self, args: &[&str]) -> Result<String, String> {
        let cmd = Cmd::new(&self.helm.bin)
            .args([
                "--kubeconfig".to_string(),
                self.kubeconfig.display().to_string(),
            ])
            .args(args.iter().copied());
        self.reporter.command(&cmd.to_string());
        self.helm.run(cmd).await.map_err(|e| e.to_string())
    }

    async fn release_chart(&self, name: &str) -> Result<Option<(String, String)>, String> {
        let list = self
            .helm
            .list(self.kubeconfig)
            .await
            .map_err(|e| e.to_string())?;
        Ok(list
            .into_iter()
            .find(|r| r.name == name)
            .map(|r| (r.chart.clone(), r.status)))
    }

    /// Point tags at a revision (rendered from the chart of `version`, applied, waited for).
    async fn point_tags(
        &self,
        tag_names: &[String],
        version: &str,
        rev: &str,
    ) -> Result<(), String> {
        crate::ops::tags::point(
            self.helm,
            self.kubeconfig,
            self.kube,
            &repo(self.spec),
            version,
            rev,
            tag_names,
            self.step_timeout,
        )
        .await
    }

    async fn restart(&self, namespaces: Vec<String>) -> Result<(), String> {
        let opts = restart::Options {
            namespaces,
            stale_only: true,
            max_concurrent: self.max_concurrent,
            timeout: self.step_timeout,
        };
        restart::run(self.kube, &opts, self.reporter)
            .await
            .map(|_| ())
    }

    async fn stale(&self, namespaces: Vec<String>) -> Result<usize, String> {
        let opts = restart::Options {
            namespaces,
            stale_only: true,
            max_concurrent: 1,
            timeout: self.step_timeout,
        };
        let (_, targets) = restart::targets(self.kube, &opts).await?;
        Ok(targets
            .iter()
            .filter(|t| !t.stale.is_empty() && t.method != restart::Method::Job)
            .count())
    }

    async fn wait_istiod(&self, rev: &str, version: &str) -> Result<(), String> {
        let name = if rev.is_empty() {
            "istiod".to_string()
        } else {
            format!("istiod-{rev}")
        };
        self.kube
            .wait_rollout("Deployment", "istio-system", &name, self.step_timeout)
            .await
            .map_err(|e| e.to_string())?;
        // Injection calls istiod through its Service: endpoints lag behind ready pods.
        self.kube
            .wait_endpoints("istio-system", &name, self.step_timeout)
            .await
            .map_err(|e| e.to_string())?;
        let hook = if rev.is_empty() {
            "istio-sidecar-injector".to_string()
        } else {
            format!("istio-sidecar-injector-{rev}")
        };
        self.kube
            .wait_webhook_ca(&hook, self.step_timeout)
            .await
            .map_err(|e| e.to_string())?;
        let mesh = Mesh::read(self.kube).await?;
        let image = mesh.images.get(rev).cloned().unwrap_or_default();
        if crate::mesh::image_tag(&image) != version {
            return Err(format!(
                "revision {rev} injects {image}, not version {version}"
            ));
        }
        Ok(())
    }

    /// Run one step forward.
    pub async fn run_step(&self, step: &str) -> Result<Value, String> {
        let p = &self.params;
        let (old, new) = (p.from_rev.as_str(), p.to_rev.as_str());
        let new_rels = self.desired(&p.to, new);
        let all_tags = tags(self.spec);
        match (p.strategy, step) {
            (Strategy::Canary, "base") => {
                let mut base = release(&new_rels, "base")
                    .cloned()
                    .ok_or("no base release")?;
                base.values["defaultRevision"] = json!(old);
                self.helm_install(&base).await?;
                Ok(Value::Null)
            }
            (Strategy::Canary, "istiod") => {
                let istiod = release(&new_rels, "istiod")
                    .cloned()
                    .ok_or("no istiod release")?;
                self.helm_install(&istiod).await?;
                self.wait_istiod(new, &p.to).await?;
                Ok(Value::Null)
            }
            (_, "smoke") => self.smoke(new).await,
            (_, "tag-canary") => self
                .point_tags(&["canary".to_string()], &p.to, new)
                .await
                .map(|_| Value::Null),
            (_, "restart-canary") => {
                self.restart(canary_namespaces(self.spec)).await?;
                let left = self.stale(canary_namespaces(self.spec)).await?;
                if left > 0 {
                    return Err(format!("{left} canary workload(s) still not on {new}"));
                }
                Ok(Value::Null)
            }
            (_, "tags") => {
                let rest: Vec<String> = all_tags
                    .iter()
                    .filter(|t| *t != "canary")
                    .cloned()
                    .collect();
                self.point_tags(&rest, &p.to, new)
                    .await
                    .map(|_| Value::Null)
            }
            (Strategy::Canary, "restart") | (Strategy::InPlace, "restart") => {
                self.restart(Vec::new()).await?;
                Ok(Value::Null)
            }
            (_, "gateways") => {
                for gw in new_rels.iter().filter(|r| r.chart == "gateway") {
                    self.helm_install(gw).await?;
                    self.kube
                        .wait_rollout("Deployment", &gw.namespace, &gw.name, self.step_timeout)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                let left = self
                    .stale(
                        new_rels
                            .iter()
                            .filter(|r| r.chart == "gateway")
                            .map(|r| r.namespace.clone())
                            .collect(),
                    )
                    .await?;
                if left > 0 {
                    return Err(format!(
                        "{left} gateway workload(s) do not run the new proxy"
                    ));
                }
                Ok(Value::Null)
            }
            (_, "old-unused") => {
                self.old_unused(old).await?;
                tokio::time::sleep(Duration::from_secs(p.grace_secs)).await;
                self.old_unused(old).await?;
                Ok(Value::Null)
            }
            (_, "default-revision") => {
                let base = release(&new_rels, "base")
                    .cloned()
                    .ok_or("no base release")?;
                self.helm_install(&base).await?;
                let vwc = self
                    .kube
                    .get_json(
                        "admissionregistration.k8s.io/v1",
                        "ValidatingWebhookConfiguration",
                        None,
                        "istiod-default-validator",
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                let svc = vwc
                    .as_ref()
                    .and_then(|v| v["webhooks"][0]["clientConfig"]["service"]["name"].as_str())
                    .unwrap_or_default()
                    .to_string();
                if svc != format!("istiod-{new}") {
                    return Err(format!(
                        "istiod-default-validator calls {svc:?}, not istiod-{new}"
                    ));
                }
                Ok(Value::Null)
            }
            (_, "remove-old") => {
                match self
                    .helm(&["uninstall", &format!("istiod-{old}"), "-n", "istio-system"])
                    .await
                {
                    Ok(_) => {}
                    Err(e) if e.contains("not found") => {}
                    Err(e) => return Err(e),
                }
                for kind in [
                    "MutatingWebhookConfiguration",
                    "ValidatingWebhookConfiguration",
                ] {
                    let objs = self
                        .kube
                        .list_json("admissionregistration.k8s.io/v1", kind, None)
                        .await
                        .map_err(|e| e.to_string())?;
                    for o in objs {
                        if o["metadata"]["labels"]["istio.io/rev"] == old {
                            let name = o["metadata"]["name"]
                                .as_str()
                                .unwrap_or_default()
                                .to_string();
                            self.kube
                                .delete_json("admissionregistration.k8s.io/v1", kind, None, &name)
                                .await
                                .map_err(|e| e.to_string())?;
                        }
                    }
                }
                Ok(Value::Null)
            }
            (Strategy::InPlace, "save-values") => {
                let mut saved = serde_json::Map::new();
                for r in self.desired(&p.from, old) {
                    let v = self
                        .helm(&["get", "values", &r.name, "-n", &r.namespace, "-o", "json"])
                        .await?;
                    saved.insert(
                        r.name.clone(),
                        serde_json::from_str(&v).unwrap_or(Value::Null),
                    );
                }
                Ok(Value::Object(saved))
            }
            (Strategy::InPlace, "base") => {
                let base = release(&new_rels, "base")
                    .cloned()
                    .ok_or("no base release")?;
                self.helm_install(&base).await.map(|_| Value::Null)
            }
            (Strategy::InPlace, "istiod") => {
                let istiod = release(&new_rels, "istiod")
                    .cloned()
                    .ok_or("no istiod release")?;
                self.helm_install(&istiod).await?;
                self.wait_istiod(old, &p.to).await.map(|_| Value::Null)
            }
            (Strategy::InPlace, "verify") => {
                let left = self.stale(Vec::new()).await?;
                if left > 0 {
                    return Err(format!("{left} workload(s) still run an old proxy"));
                }
                Ok(Value::Null)
            }
            _ => Err(format!("unknown step {step}")),
        }
    }

    /// Is a done step still done? (A killed upgrade re-verifies instead of redoing.)
    pub async fn still_done(&self, step: &str) -> bool {
        let p = &self.params;
        let new = p.to_rev.as_str();
        match step {
            "base" | "gateways" => {
                let names: Vec<String> = self
                    .desired(&p.to, new)
                    .into_iter()
                    .filter(|r| {
                        (step == "base" && r.chart == "base")
                            || (step == "gateways" && r.chart == "gateway")
                    })
                    .map(|r| r.name)
                    .collect();
                for n in names {
                    let chart = format!(
                        "{}-{}",
                        if step == "base" { "base" } else { "gateway" },
                        p.to
                    );
                    match self.release_chart(&n).await {
                        Ok(Some((c, st))) if c == chart && st == "deployed" => {}
                        _ => return false,
                    }
                }
                true
            }
            "istiod" => {
                let name = format!(
                    "istiod-{}",
                    if p.strategy == Strategy::Canary {
                        new
                    } else {
                        &p.from_rev
                    }
                );
                matches!(self.release_chart(&name).await, Ok(Some((c, st))) if c == format!("istiod-{}", p.to) && st == "deployed")
                    && self
                        .wait_istiod(
                            if p.strategy == Strategy::Canary {
                                new
                            } else {
                                &p.from_rev
                            },
                            &p.to,
                        )
                        .await
                        .is_ok()
            }
            "tag-canary" | "tags" => {
                let mesh = match Mesh::read(self.kube).await {
                    Ok(m) => m,
                    Err(_) => return false,
                };
                let names: Vec<String> = if step == "tag-canary" {
                    vec!["canary".into()]
                } else {
                    tags(self.spec)
                        .into_iter()
                        .filter(|t| t != "canary")
                        .collect()
                };
                names
                    .iter()
                    .all(|t| mesh.injectors.tags.get(t).map(String::as_str) == Some(new))
            }
            "restart-canary" => self
                .stale(canary_namespaces(self.spec))
                .await
                .is_ok_and(|n| n == 0),
            "restart" | "verify" => self.stale(Vec::new()).await.is_ok_and(|n| n == 0),
            "remove-old" => matches!(
                self.release_chart(&format!("istiod-{}", p.from_rev)).await,
                Ok(None)
            ),
            // Checks that change nothing, or already proven: trust the journal.
            _ => true,
        }
    }

    /// Undo a completed step. `Ok(false)` when the step has no undo.
    pub async fn undo_step(&self, step: &str) -> Result<bool, String> {
        let p = &self.params;
        let (old, new) = (p.from_rev.as_str(), p.to_rev.as_str());
        let old_rels = self.desired(&p.from, old);
        let all_tags = tags(self.spec);
        match (p.strategy, step) {
            (Strategy::Canary, "istiod") => {
                match self
                    .helm(&["uninstall", &format!("istiod-{new}"), "-n", "istio-system"])
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(e) if e.contains("not found") => Ok(true),
                    Err(e) => Err(e),
                }
            }
            (_, "smoke") => {
                self.kube
                    .delete_namespace(&smoke_namespace(new))
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(true)
            }
            (_, "tag-canary") => self
                .point_tags(&["canary".to_string()], &p.from, old)
                .await
                .map(|_| true),
            (_, "restart-canary") => {
                self.point_tags(&["canary".to_string()], &p.from, old)
                    .await?;
                self.restart(canary_namespaces(self.spec))
                    .await
                    .map(|_| true)
            }
            (_, "tags") => {
                let rest: Vec<String> = all_tags
                    .iter()
                    .filter(|t| *t != "canary")
                    .cloned()
                    .collect();
                self.point_tags(&rest, &p.from, old).await.map(|_| true)
            }
            (Strategy::Canary, "restart") => {
                let rest: Vec<String> = all_tags
                    .iter()
                    .filter(|t| *t != "canary")
                    .cloned()
                    .collect();
                self.point_tags(&rest, &p.from, old).await?;
                self.restart(Vec::new()).await.map(|_| true)
            }
            (_, "gateways") => {
                for gw in old_rels.iter().filter(|r| r.chart == "gateway") {
                    // Only a gateway that did move is rolled back.
                    let moved = self
                        .release_chart(&gw.name)
                        .await?
                        .is_some_and(|(chart, _)| chart == format!("gateway-{}", p.to));
                    if !moved {
                        continue;
                    }
                    self.helm(&["rollback", &gw.name, "-n", &gw.namespace])
                        .await?;
                    self.kube
                        .wait_rollout("Deployment", &gw.namespace, &gw.name, self.step_timeout)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Ok(true)
            }
            (_, "default-revision") => {
                let mut base = release(&self.desired(&p.to, new), "base")
                    .cloned()
                    .ok_or("no base release")?;
                base.values["defaultRevision"] = json!(old);
                self.helm_install(&base).await.map(|_| true)
            }
            (Strategy::InPlace, "istiod") => {
                let moved = self
                    .release_chart(&format!("istiod-{old}"))
                    .await?
                    .is_some_and(|(chart, _)| chart == format!("istiod-{}", p.to));
                if !moved {
                    return Ok(false);
                }
                self.helm(&["rollback", &format!("istiod-{old}"), "-n", "istio-system"])
                    .await?;
                self.wait_istiod(old, &p.from).await?;
                self.restart(Vec::new()).await.map(|_| true)
            }
            (Strategy::InPlace, "restart") => self.restart(Vec::new()).await.map(|_| true),
            _ => Ok(false),
        }
    }

    async fn old_unused(&self, old: &str) -> Result<(), String> {
        let mesh = Mesh::read(self.kube).await?;
        if let Some((n, _)) = mesh
            .namespaces
            .iter()
            .find(|(_, l)| l.get("istio.io/rev").map(String::as_str) == Some(old))
        {
            return Err(format!("namespace {n} still selects revision {old}"));
        }
        if let Some((t, _)) = mesh.injectors.tags.iter().find(|(_, r)| r.as_str() == old) {
            return Err(format!("tag {t} still points at revision {old}"));
        }
        // A pod still terminating runs the old proxy until it exits: wait it out.
        let deadline = std::time::Instant::now() + self.step_timeout;
        loop {
            let pods = self
                .kube
                .list_json("v1", "Pod", None)
                .await
                .map_err(|e| e.to_string())?;
            let on_old: Vec<&Value> = pods
                .iter()
                .filter(|p| {
                    p["metadata"]["annotations"]["istio.io/rev"] == old
                        && p["status"]["phase"] != "Succeeded"
                        && p["status"]["phase"] != "Failed"
                })
                .collect();
            let id = |p: &Value| {
                format!(
                    "{}/{}",
                    p["metadata"]["namespace"].as_str().unwrap_or_default(),
                    p["metadata"]["name"].as_str().unwrap_or_default()
                )
            };
            if let Some(p) = on_old.iter().find(|p| !crate::mesh::terminating(p)) {
                return Err(format!(
                    "pod {} still runs a proxy of revision {old}",
                    id(p)
                ));
            }
            let Some(p) = on_old.first() else {
                return Ok(());
            };
            if std::time::Instant::now() > deadline {
                return Err(format!(
                    "pod {} still runs a proxy of revision {old}: it has been terminating for longer than {}s",
                    id(p),
                    self.step_timeout.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn smoke(&self, rev: &str) -> Result<Value, String> {
        let ns = smoke_namespace(rev);
        let mut labels = std::collections::BTreeMap::new();
        labels.insert("istio.io/rev".to_string(), rev.to_string());
        labels.insert("dev.paddock.smoke".to_string(), "true".to_string());
        self.kube
            .apply_namespace(&ns, &labels)
            .await
            .map_err(|e| e.to_string())?;
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "probe", "namespace": ns, "labels": {"app": "paddock-smoke"}},
            "spec": {"containers": [{"name": "probe", "image": format!("docker.io/istio/proxyv2:{}", self.params.to),
                "command": ["sleep", "3600"]}]}});
        let result = async {
            let created = match self.kube.create_json("v1", "Pod", Some(&ns), &pod).await {
                Ok(p) => p,
                Err(e) if e.to_string().contains("already exists") => self
                    .kube
                    .get_json("v1", "Pod", Some(&ns), "probe")
                    .await
                    .map_err(|e| e.to_string())?
                    .unwrap_or(Value::Null),
                Err(e) => return Err(format!("the probe pod was refused: {e}")),
            };
            let proxy = crate::mesh::proxy_of(&created);
            let mesh = Mesh::read(self.kube).await?;
            let want = mesh.images.get(rev).cloned();
            if proxy.revision.as_deref() != Some(rev) || proxy.image != want {
                return Err(format!(
                    "the probe pod was injected by {:?} with {:?}, not by {rev} with {:?}",
                    proxy.revision, proxy.image, want
                ));
            }
            Ok(json!({"injectedBy": rev, "image": proxy.image}))
        }
        .await;
        // The throwaway namespace goes whatever the result.
        self.kube
            .delete_namespace(&ns)
            .await
            .map_err(|e| e.to_string())?;
        result
    }
}

pub fn smoke_namespace(rev: &str) -> String {
    format!("paddock-smoke-{rev}")
}

/// Check the jump and the cluster before anything changes. Each refusal says what to do.
pub async fn preflight(ctx: &Ctx<'_>) -> Result<(), Vec<String>> {
    let p = &ctx.params;
    let mut problems = Vec::new();
    let (from, to) = match (istio::parse_version(&p.from), istio::parse_version(&p.to)) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => return Err(vec![e]),
    };
    let jump = (to.minor as i64 - from.minor as i64).unsigned_abs();
    let limit = if p.strategy == Strategy::Canary { 2 } else { 1 };
    if jump > limit {
        problems.push(format!(
            "{} → {} jumps {jump} minor versions; {} allows at most {limit}: upgrade in steps (e.g. to 1.{}.x first){}",
            p.from, p.to,
            if p.strategy == Strategy::Canary { "a canary upgrade" } else { "an in-place upgrade" },
            from.minor + limit,
            if p.strategy == Strategy::InPlace && jump <= 2 { ", or use --strategy canary" } else { "" }
        ));
    }
    if from == to {
        problems.push(format!("Istio is already at {}", p.to));
    }
    // Kubernetes minimum (istioctl precheck).
    let need = match to.minor {
        30.. => 32,
        26..=29 => 29,
        24..=25 => 28,
        _ => 0,
    };
    let server = ctx
        .kube
        .client
        .apiserver_version()
        .await
        .map_err(|e| vec![e.to_string()])?;
    let minor: u64 = server.minor.trim_end_matches('+').parse().unwrap_or(0);
    if minor < need {
        problems.push(format!("Istio {} needs Kubernetes 1.{need} or newer; the cluster runs {}: replace the cluster first (`paddock switchover`)", p.to, server.git_version));
    }
    match ctx.helm.list(ctx.kubeconfig).await {
        Ok(list) => {
            for r in list
                .iter()
                .filter(|r| r.status != "deployed" && r.status != "superseded")
            {
                problems.push(format!(
                    "release {}/{} is `{}`: finish or roll it back first (`helm rollback {} -n {}` or `helm history {} -n {}`)",
                    r.namespace, r.name, r.status, r.name, r.namespace, r.name, r.namespace
                ));
            }
        }
        Err(e) => problems.push(format!("could not list Helm releases: {e}")),
    }
    match Mesh::read(ctx.kube).await {
        Ok(mesh) => {
            for (n, l) in &mesh.namespaces {
                if l.contains_key("istio-injection") && l.contains_key("istio.io/rev") {
                    problems.push(format!(
                        "namespace {n} has both istio-injection and istio.io/rev: remove one (`kubectl label ns {n} istio-injection-`)"
                    ));
                }
            }
        }
        Err(e) => problems.push(e),
    }
    match ctx
        .kube
        .list_json(
            "admissionregistration.k8s.io/v1",
            "MutatingWebhookConfiguration",
            None,
        )
        .await
    {
        Ok(hooks) => problems.extend(crate::mesh::overlaps(&hooks)),
        Err(e) => problems.push(e.to_string()),
    }
    if from.minor <= 23 && to.minor >= 24 {
        ctx.reporter.note(
            "crossing 1.23 → 1.24: existing Istio CRDs will be adopted by the istio-base release",
        );
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Recover the Istio releases an interrupted run of this upgrade left `pending-*` (its helm
/// killed with it; we hold the cluster lock and waited for any helm it left working): roll a
/// pending upgrade back, remove a pending install, so the step that ran it can run again
/// instead of failing on helm's "another operation is in progress".
pub async fn recover_pending(ctx: &Ctx<'_>) -> Result<(), String> {
    let p = &ctx.params;
    let ours: Vec<Release> = ctx
        .desired(&p.from, &p.from_rev)
        .into_iter()
        .chain(ctx.desired(&p.to, &p.to_rev))
        .collect();
    let list = ctx
        .helm
        .list(ctx.kubeconfig)
        .await
        .map_err(|e| format!("could not list Helm releases: {e}"))?;
    for r in list.iter().filter(|r| {
        r.status.starts_with("pending-")
            && ours
                .iter()
                .any(|o| o.name == r.name && o.namespace == r.namespace)
    }) {
        let cmd = if r.status == "pending-install" {
            ctx.helm
                .uninstall_cmd(&r.name, &r.namespace, ctx.kubeconfig)
        } else {
            ctx.helm.rollback_cmd(&r.name, &r.namespace, ctx.kubeconfig)
        };
        ctx.reporter.note(&format!(
            "release {} was left {} by an interrupted run; recovering with `{cmd}`",
            r.name, r.status
        ));
        ctx.helm
            .run(cmd)
            .await
            .map_err(|e| format!("failed to recover release {}: {e}", r.name))?;
    }
    Ok(())
}

/// A journal write failed: stop where the journal says the cluster is, so a rerun continues.
fn unjournaled(step: &str, e: &crate::engine::journal::Error) -> Outcome {
    let mut msg = e.to_string();
    if let Some(cause) = std::error::Error::source(e) {
        msg.push_str(&format!(": {cause}"));
    }
    Outcome::Failed(
        step.to_string(),
        format!(
            "{msg}; stopped so nothing happens that the journal does not know; fix the state directory and run `paddock upgrade` again to continue"
        ),
    )
}

/// Run (or continue) an upgrade. `op` is the journal operation id.
pub async fn run(ctx: &Ctx<'_>, op: &str, pause_after: Option<&str>) -> Outcome {
    let p = &ctx.params;
    let steps = steps(p.strategy, !canary_namespaces(ctx.spec).is_empty());
    let done_before = match ctx.journal.done_steps(op) {
        Ok(d) => d,
        Err(e) => return unjournaled("journal", &e),
    };
    let mut completed: Vec<&str> = Vec::new();
    for step in &steps {
        if done_before.iter().any(|d| d == step) && ctx.still_done(step).await {
            ctx.reporter
                .note(&format!("step {step} was done and still is; not redone"));
            completed.push(step);
            continue;
        }
        let id = format!("upgrade/{step}");
        ctx.reporter.step_started(&id);
        if let Err(e) = ctx
            .journal
            .record(op, "step-started", Some(step), Value::Null)
        {
            return unjournaled(step, &e);
        }
        let t = std::time::Instant::now();
        match ctx.run_step(step).await {
            Ok(detail) => {
                if let Err(e) = ctx.journal.record(op, "step-done", Some(step), detail) {
                    return unjournaled(step, &e);
                }
                ctx.reporter.step_done(&id, t.elapsed());
                completed.push(step);
                if pause_after == Some(*step) && completed.len() < steps.len() {
                    if let Err(e) =
                        ctx.journal
                            .record(op, "op-paused", None, json!({"after": step}))
                    {
                        return unjournaled(step, &e);
                    }
                    return Outcome::Paused(step.to_string());
                }
            }
            Err(e) => {
                // Best effort from here on: the undo must run whatever the journal says, and
                // its records only describe it.
                let _ = ctx
                    .journal
                    .record(op, "step-failed", Some(step), json!({"error": e}));
                ctx.reporter.step_failed(&id, t.elapsed(), &e);
                if *step == "remove-old" {
                    let _ = ctx.journal.record(
                        op,
                        "op-failed",
                        None,
                        json!({"step": step, "error": e}),
                    );
                    return Outcome::Failed(
                        step.to_string(),
                        format!(
                            "{e}; past this point rollback means reinstalling revision {}",
                            p.from_rev
                        ),
                    );
                }
                // Undo the failed step's partial effects too, then the completed ones, in reverse.
                let mut undone = Vec::new();
                let mut to_undo: Vec<&str> = completed.clone();
                to_undo.push(step);
                for s in to_undo.iter().rev() {
                    let uid = format!("undo/{s}");
                    let t = std::time::Instant::now();
                    match ctx.undo_step(s).await {
                        Ok(true) => {
                            let _ = ctx.journal.record(op, "step-undone", Some(s), Value::Null);
                            ctx.reporter.step_done(&uid, t.elapsed());
                            undone.push(s.to_string());
                        }
                        Ok(false) => {}
                        Err(ue) => {
                            ctx.reporter.step_failed(&uid, t.elapsed(), &ue);
                            let _ = ctx.journal.record(
                                op,
                                "op-failed",
                                None,
                                json!({"step": step, "error": e, "undoFailed": s, "undoError": ue}),
                            );
                            return Outcome::Failed(
                                step.to_string(),
                                format!("{e}; undoing {s} failed too: {ue}"),
                            );
                        }
                    }
                }
                let _ = ctx.journal.record(
                    op,
                    "op-rolled-back",
                    None,
                    json!({"step": step, "error": e, "undone": undone}),
                );
                return Outcome::RolledBack(step.to_string(), e, undone);
            }
        }
    }
    if let Err(e) = ctx.journal.record(op, "op-done", None, Value::Null) {
        return unjournaled("op-done", &e);
    }
    Outcome::Done
}
