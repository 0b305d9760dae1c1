//! The typed shape of paddock's three kinds of file. Unknown fields are rejected everywhere
//! except inside sections that belong to another tool (k3d's config, Helm values), which are
//! kept as JSON values and checked against that tool's own schema.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Everything a profile declares; a cluster file carries the same sections as overrides.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Body {
    /// k3d's own `k3d.io/v1alpha5` `Simple` config. paddock fills in the name, its runtime
    /// labels and `--disable=traefik`.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub k3d: Map<String, Value>,
    /// The Istio control plane; absent means a plain k3s cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub istio: Option<IstioSpec>,
    /// Names of addons (files in `addons/`) to install.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addons: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<NamespaceSpec>,
    /// Manifest files (relative to the repository root) applied after Istio is ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workloads: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<Schedule>,
    /// Pull-through registry caches shared by every cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caches: Option<Caches>,
    /// Local images loaded into the nodes with `k3d image import` after creation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
}

/// Pull-through caches: one standalone k3d registry per upstream, created once, outliving
/// clusters, and used by every cluster that enables them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Caches {
    #[serde(default)]
    pub enabled: bool,
    /// Registry names are `<prefix>-<upstream>` (containers `k3d-<prefix>-<upstream>`).
    #[serde(default = "default_cache_prefix")]
    pub prefix: String,
    /// Host ports on 127.0.0.1: `portBase` for docker.io, then one more per upstream.
    #[serde(default = "default_cache_port")]
    pub port_base: u16,
}

fn default_cache_prefix() -> String {
    "paddock-cache".into()
}

fn default_cache_port() -> u16 {
    5100
}

/// The upstreams a cache is made for: (short name, registry host, remote URL).
pub const CACHE_UPSTREAMS: &[(&str, &str, &str)] = &[
    ("docker-io", "docker.io", "https://registry-1.docker.io"),
    ("quay-io", "quay.io", "https://quay.io"),
    ("gcr-io", "gcr.io", "https://gcr.io"),
    ("ghcr-io", "ghcr.io", "https://ghcr.io"),
    (
        "registry-k8s-io",
        "registry.k8s.io",
        "https://registry.k8s.io",
    ),
];

/// One cache registry as created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CacheRegistry {
    /// Name given to `k3d registry create` (container `k3d-<name>`).
    pub name: String,
    pub host: String,
    pub remote: String,
    pub port: u16,
}

impl Caches {
    pub fn registries(&self) -> Vec<CacheRegistry> {
        if !self.enabled {
            return Vec::new();
        }
        CACHE_UPSTREAMS
            .iter()
            .enumerate()
            .map(|(i, (short, host, remote))| CacheRegistry {
                name: format!("{}-{short}", self.prefix),
                host: host.to_string(),
                remote: remote.to_string(),
                port: self.port_base.saturating_add(i as u16),
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IstioSpec {
    /// Istio release, e.g. `1.30.3`; the revision is derived from it (`1-30-3`).
    pub version: String,
    /// Helm repository of the Istio charts.
    #[serde(default = "default_istio_repo")]
    pub repo: String,
    /// Revision tags pointing at the current revision. `default` always exists in addition.
    #[serde(default = "default_tags")]
    pub tags: Vec<String>,
    #[serde(default)]
    pub values: IstioValues,
    #[serde(default)]
    pub gateways: Vec<GatewaySpec>,
    #[serde(default)]
    pub upgrade: UpgradeSpec,
}

pub const ISTIO_REPO: &str = "https://istio-release.storage.googleapis.com/charts";

fn default_istio_repo() -> String {
    ISTIO_REPO.to_string()
}

fn default_tags() -> Vec<String> {
    vec!["stable".to_string(), "canary".to_string()]
}

/// Helm values per Istio chart; paddock owns `revision`, `revisionTags` and `defaultRevision`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IstioValues {
    #[serde(default)]
    pub base: Map<String, Value>,
    #[serde(default)]
    pub istiod: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GatewaySpec {
    /// Helm release name, e.g. `istio-ingress`.
    pub name: String,
    #[serde(default = "default_gateway_namespace")]
    pub namespace: String,
    /// Values for Istio's `gateway` chart, checked against its `values.schema.json`.
    #[serde(default)]
    pub values: Map<String, Value>,
}

fn default_gateway_namespace() -> String {
    "istio-ingress".to_string()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpgradeSpec {
    #[serde(default)]
    pub strategy: Strategy,
    /// How long the old revision must stay unused before it is removed.
    #[serde(default = "default_grace")]
    pub grace_period: String,
}

impl Default for UpgradeSpec {
    fn default() -> Self {
        Self {
            strategy: Strategy::default(),
            grace_period: default_grace(),
        }
    }
}

fn default_grace() -> String {
    "2m".to_string()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    #[default]
    Canary,
    InPlace,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NamespaceSpec {
    pub name: String,
    /// Revision tag selecting this namespace's control plane (`istio.io/rev=<tag>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// `enabled` (`istio-injection=enabled`, served by tag `default`) or `disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injection: Option<Injection>,
    /// Canary namespaces are restarted first during a canary upgrade.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub canary: bool,
    /// Extra labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// The tag canary namespaces select.
pub const CANARY_TAG: &str = "canary";

impl NamespaceSpec {
    /// The tag the namespace is labelled with: its `tag`, or `canary` for canary namespaces.
    pub fn effective_tag(&self) -> Option<&str> {
        match (&self.tag, self.canary) {
            (Some(t), _) => Some(t),
            (None, true) if self.injection.is_none() => Some(CANARY_TAG),
            (None, _) => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Injection {
    Enabled,
    Disabled,
}

/// A recurring operation run by `paddock serve`. The daemon reads these through
/// `daemon::schedule`, which documents how instants, time zones, missed runs and windows behave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Schedule {
    pub name: String,
    /// Five-field crontab expression (minute hour day-of-month month day-of-week, Sunday = 0
    /// or 7), read on the wall clock of `time_zone`.
    pub cron: String,
    pub action: ScheduleAction,
    /// IANA time zone of the cron fields, e.g. `Europe/Berlin`; UTC when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Instants missed while the daemon was down get one run when it starts, instead of only
    /// being reported.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub catch_up: bool,
    /// How late after its instant a run may still start, e.g. `30m`; [`DEFAULT_WINDOW`] when
    /// absent. A run that cannot start in time is reported as missed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// For `action: upgrade`: which Istio version to upgrade to. Absent: the spec's
    /// `istio.version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track: Option<Track>,
}

/// How late a scheduled run may start when the schedule sets no `window`.
pub const DEFAULT_WINDOW: &str = "1h";

/// The version a scheduled upgrade moves to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Track {
    /// The newest patch release of the minor that `istio.version` pins, read from the chart
    /// repository's `index.yaml` (pre-releases ignored, never lower than `istio.version`).
    Patch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScheduleAction {
    /// Run `up`: converge the cluster to its spec.
    Reconcile,
    /// Upgrade Istio to the spec's version with the spec's strategy.
    Upgrade,
    /// Restart workloads whose proxies are stale.
    Restart,
    /// Replace the cluster blue-green.
    Switchover,
}

/// A profile file (`profiles/NAME.yaml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProfileHeader {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Another profile this one starts from (deep merge, lists replace).
    #[serde(default)]
    pub extends: Option<String>,
}

/// A cluster file (`clusters/NAME.yaml`): a name, a profile, and overrides of its sections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClusterHeader {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default = "default_profile_name")]
    pub profile: String,
}

pub const DEFAULT_PROFILE: &str = "default";

fn default_profile_name() -> String {
    DEFAULT_PROFILE.to_string()
}

/// An addon file (`addons/NAME.yaml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Addon {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub chart: ChartRef,
    #[serde(default = "default_addon_namespace")]
    pub namespace: String,
    /// Helm release name; defaults to the addon name.
    #[serde(default)]
    pub release: Option<String>,
    /// Addons that must be installed and ready first.
    #[serde(default)]
    pub needs: Vec<String>,
    /// Insecure defaults (anonymous access): meant for local development only.
    #[serde(default)]
    pub dev_only: bool,
    #[serde(default)]
    pub values: Map<String, Value>,
    /// Workloads whose readiness means the addon is up.
    #[serde(default)]
    pub ready: Vec<Readiness>,
    /// Values merged into the istiod release when this addon is enabled (e.g. tracing).
    #[serde(default)]
    pub istiod_values: Map<String, Value>,
    /// Kubernetes objects applied after the addon is installed (e.g. an Istio Telemetry).
    #[serde(default)]
    pub manifests: Vec<Value>,
}

impl Addon {
    pub fn release_name(&self) -> &str {
        self.release.as_deref().unwrap_or(&self.name)
    }
}

fn default_addon_namespace() -> String {
    "istio-system".to_string()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ChartRef {
    pub repo: String,
    pub name: String,
    /// Exact chart version; ranges are not allowed so every install is repeatable.
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Readiness {
    pub kind: WorkloadKind,
    pub name: String,
    #[serde(default = "default_ready_timeout")]
    pub timeout: String,
}

fn default_ready_timeout() -> String {
    "5m".to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
}

/// The repository's own settings (`paddock.yaml` at the root).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RepoConfig {
    /// Cluster used when a command is given none.
    #[serde(default)]
    pub default_cluster: Option<String>,
    /// Specific binaries to drive instead of those on `PATH`.
    #[serde(default)]
    pub tools: ToolPaths,
    /// Settings of the daemon, `paddock serve` (flags and `PADDOCK_*` variables override them).
    #[serde(default, skip_serializing_if = "ServeSettings::is_empty")]
    pub serve: ServeSettings,
}

/// `paddock.yaml` `serve:`: every field optional; the daemon's defaults fill the rest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServeSettings {
    /// A git remote to follow (instead of the repository folder itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// The branch of `repo` to follow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// How often `repo` is fetched (`30s`, `5m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_interval: Option<String>,
    /// `apply` changes `up` can make in place, or only `report` them as drift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// The API's unix socket (default: `paddock.sock` in the state directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<std::path::PathBuf>,
    /// A loopback address to serve `/metrics` on as well (`127.0.0.1:9464`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_address: Option<String>,
}

/// Whether the daemon applies what `up` would change, or only reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServeMode {
    Apply,
    Report,
}

impl ServeSettings {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// The tools paddock drives (`paddock.yaml` `tools`): specific binaries, and whether and what
/// to download when one is missing or too old.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolPaths {
    #[serde(default)]
    pub k3d: Option<std::path::PathBuf>,
    #[serde(default)]
    pub helm: Option<std::path::PathBuf>,
    /// Download missing or too old tools into paddock's cache (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download: Option<bool>,
    /// The versions downloaded (default: the pinned ones).
    #[serde(default, skip_serializing_if = "PerTool::is_empty")]
    pub versions: PerTool,
    /// The base URLs downloaded from (default: the tools' release sites).
    #[serde(default, skip_serializing_if = "PerTool::is_empty")]
    pub mirrors: PerTool,
}

/// A text per downloadable tool (`tools.versions`, `tools.mirrors`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerTool {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k3d: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helm: Option<String>,
}

impl PerTool {
    pub fn is_empty(&self) -> bool {
        self.k3d.is_none() && self.helm.is_none()
    }
}
