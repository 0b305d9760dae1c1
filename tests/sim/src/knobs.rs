//! Latencies and faults, set per test. A cluster reads them from `knobs.json` in the sim's home
//! directory (reloaded when the file changes) or, in-process, from `Cluster::set_knobs`. The
//! fake `k3d` and `helm` read the same file on every invocation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Every knob, with defaults that keep tests fast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Knobs {
    /// Nodes turn Ready this long after the cluster starts.
    pub node_ready_ms: u64,
    /// A scheduled pod's containers start and turn Ready after this long.
    pub pod_start_ms: u64,
    /// How long a pod's containers take to exit after SIGTERM (capped by its grace period).
    pub termination_ms: u64,
    /// How long an Istio proxy drains after SIGTERM (`terminationDrainDuration`): a pod with
    /// an `istio-proxy` container is gone no sooner than this (capped by its grace period).
    pub termination_drain_ms: u64,
    /// How long a pod change takes to show in its Services' Endpoints (and so in what
    /// proxies and webhooks reach).
    pub endpoint_lag_ms: u64,
    /// Extra start time for pods whose images (or injected revision) contain `matches`.
    pub slow_pods: Vec<SlowPods>,
    /// Pods with an image (or injected revision) containing one of these crash-loop, never Ready.
    pub crashloop: Vec<String>,
    /// Revisions whose istiod never patches a caBundle into its webhooks.
    pub stall_ca_bundle: Vec<String>,
    /// The API server answers 503 to every request until this Unix time (milliseconds).
    pub api_down_until_ms: u64,
    /// Extra latency per HTTP verb (`GET`, `PATCH`, ...), in milliseconds.
    pub slow_verbs: BTreeMap<String, u64>,
    /// How long a fake tool invocation takes, per tool (`k3d`, `helm`) or per tool and
    /// command (`helm upgrade`, which wins over `helm`). A mutating helm spends it with its
    /// release pending; any other invocation before it acts.
    pub tool_latency_ms: BTreeMap<String, u64>,
    /// Fail or hang chosen tool invocations.
    pub tool_faults: Vec<ToolFault>,
    /// Which Helm the fake `helm` is: 3 or 4 (flag sets and `helm version` differ).
    pub helm_major: u8,
    /// How long an application pod behind the ingress gateway takes to answer a request.
    pub app_latency_ms: u64,
    /// `k3d kubeconfig get/write` leave out the client certificate and key (a broken or
    /// hand-edited kubeconfig): the API server answers such a client 401.
    pub kubeconfig_without_client_cert: bool,
}

impl Default for Knobs {
    fn default() -> Self {
        Self {
            node_ready_ms: 40,
            pod_start_ms: 15,
            termination_ms: 30,
            termination_drain_ms: 40,
            endpoint_lag_ms: 10,
            slow_pods: Vec::new(),
            crashloop: Vec::new(),
            stall_ca_bundle: Vec::new(),
            api_down_until_ms: 0,
            slow_verbs: BTreeMap::new(),
            tool_latency_ms: BTreeMap::new(),
            tool_faults: Vec::new(),
            helm_major: 4,
            app_latency_ms: 2,
            kubeconfig_without_client_cert: false,
        }
    }
}

impl Knobs {
    /// Latencies close to a real k3d cluster on a laptop, with images already cached: for
    /// benchmarks that must show what runs in parallel.
    pub fn realistic() -> Self {
        Self {
            node_ready_ms: 2_500,
            pod_start_ms: 1_200,
            termination_ms: 2_000,
            termination_drain_ms: 5_000,
            endpoint_lag_ms: 1_000,
            tool_latency_ms: [("k3d".to_string(), 1_500), ("helm".to_string(), 400)].into(),
            app_latency_ms: 20,
            ..Self::default()
        }
    }

    /// The knobs file under a sim home.
    pub fn path(home: &Path) -> PathBuf {
        home.join("knobs.json")
    }

    /// Read the knobs of a sim home; absent file → defaults (or `PADDOCK_SIM_PROFILE=realistic`).
    pub fn load(home: &Path) -> Result<Self, String> {
        let base = || match std::env::var("PADDOCK_SIM_PROFILE").as_deref() {
            Ok("realistic") => Self::realistic(),
            _ => Self::default(),
        };
        match std::fs::read_to_string(Self::path(home)) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| format!("{}: {e}", Self::path(home).display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(base()),
            Err(e) => Err(format!("{}: {e}", Self::path(home).display())),
        }
    }

    /// Write the knobs of a sim home.
    pub fn save(&self, home: &Path) -> std::io::Result<()> {
        let tmp = home.join("knobs.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(tmp, Self::path(home))
    }

    /// How long an invocation of `tool` running `command` (its first positional argument)
    /// takes: the command's entry, else the tool's.
    pub fn latency_ms(&self, tool: &str, command: Option<&str>) -> u64 {
        command
            .and_then(|c| self.tool_latency_ms.get(&format!("{tool} {c}")))
            .or_else(|| self.tool_latency_ms.get(tool))
            .copied()
            .unwrap_or(0)
    }

    /// Extra start delay for a pod with these images and injected revision.
    pub fn extra_start_ms(&self, images: &[&str], revision: &str) -> u64 {
        self.slow_pods
            .iter()
            .filter(|s| matches_pod(&s.matches, images, revision))
            .map(|s| s.ms)
            .max()
            .unwrap_or(0)
    }

    pub fn crashes(&self, images: &[&str], revision: &str) -> bool {
        self.crashloop
            .iter()
            .any(|m| matches_pod(m, images, revision))
    }
}

fn matches_pod(pattern: &str, images: &[&str], revision: &str) -> bool {
    (!revision.is_empty() && revision == pattern) || images.iter().any(|i| i.contains(pattern))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SlowPods {
    pub matches: String,
    pub ms: u64,
}

/// Make matching invocations of a fake tool fail or hang.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolFault {
    /// `k3d` or `helm`.
    pub tool: String,
    /// Every one of these words must appear among the arguments.
    #[serde(default)]
    pub args: Vec<String>,
    pub action: FaultAction,
    /// Let this many matching invocations through first (counted from when the knobs file
    /// was last written).
    #[serde(default)]
    pub after: usize,
    /// Affect at most this many matching invocations (all when absent).
    #[serde(default)]
    pub times: Option<usize>,
    /// Text printed on stderr when failing.
    #[serde(default)]
    pub stderr: Option<String>,
    /// Exit code when failing (1 unless set).
    #[serde(default)]
    pub exit_code: Option<i32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FaultAction {
    /// Exit with an error before doing anything.
    Fail,
    /// Do the work, then exit with an error (a tool that half-succeeded).
    FailAfter,
    /// Sleep until killed.
    Hang,
    /// helm only: record the release as `pending-*` and exit 137, as a helm killed mid-way.
    DiePending,
}

impl ToolFault {
    pub fn matches(&self, tool: &str, args: &[String]) -> bool {
        self.tool == tool && self.args.iter().all(|w| args.iter().any(|a| a == w))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knobs_round_trip_and_reject_typos() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(Knobs::load(dir.path()).expect("defaults"), Knobs::default());
        let k = Knobs {
            crashloop: vec!["1.30.3".into()],
            ..Knobs::default()
        };
        k.save(dir.path()).expect("save");
        assert_eq!(Knobs::load(dir.path()).expect("load"), k);
        std::fs::write(Knobs::path(dir.path()), r#"{"podStartMS": 3}"#).expect("write");
        let err = Knobs::load(dir.path()).expect_err("typo");
        assert!(err.contains("podStartMS"), "{err}");
    }

    #[test]
    fn pods_match_by_image_or_revision() {
        let k = Knobs {
            crashloop: vec!["proxyv2:1.30.3".into(), "1-29-6".into()],
            ..Knobs::default()
        };
        assert!(k.crashes(&["app", "docker.io/istio/proxyv2:1.30.3"], ""));
        assert!(k.crashes(&["app"], "1-29-6"));
        assert!(!k.crashes(&["app", "docker.io/istio/proxyv2:1.29.6"], "1-30-3"));
    }
}
