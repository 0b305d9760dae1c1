//! How a cluster is reached from the host and what runs in it: the kubeconfig paddock keeps,
//! its context, the ingress URLs and the versions. `up` reports it; `kubeconfig` prints,
//! exports or merges the kubeconfig.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::drivers::k3d::parse_port;
use crate::drivers::toolchain::Toolchain;
use crate::spec::ClusterSpec;

/// Where a cluster is reached from the host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Urls {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingress: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingress_tls: Option<String>,
}

impl Urls {
    /// (name as in the JSON, URL) of each URL there is.
    pub fn entries(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("ingress", &self.ingress),
            ("ingressTls", &self.ingress_tls),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v.as_deref()?)))
    }

    /// The URLs the spec's load-balancer ports publish for the gateway's 80 and 443.
    pub fn of_spec(k3d: &serde_json::Map<String, Value>) -> Self {
        let published = |container: u16| -> Option<String> {
            let ports = k3d.get("ports")?.as_array()?;
            ports.iter().find_map(|p| {
                let on_lb = p
                    .get("nodeFilters")
                    .and_then(Value::as_array)
                    .is_some_and(|f| {
                        f.iter()
                            .filter_map(Value::as_str)
                            .any(|n| n.starts_with("loadbalancer"))
                    });
                let m = parse_port(p.get("port")?.as_str()?).ok()?;
                let i = m.container_ports.iter().position(|c| *c == container)?;
                let host = *m.host_ports.get(i)?;
                let ip = match m.host_ip.as_deref() {
                    None | Some("0.0.0.0") | Some("") => "127.0.0.1",
                    Some(ip) => ip,
                };
                on_lb.then(|| format!("{ip}:{host}"))
            })
        };
        Self {
            ingress: published(80).map(|a| format!("http://{a}/")),
            ingress_tls: published(443).map(|a| format!("https://{a}/")),
        }
    }
}

/// What runs in a cluster, as its spec pins it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Versions {
    /// The k3s node image (`rancher/k3s:v1.33.4-k3s1`), when the spec names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub k3s: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub istio: Option<String>,
    /// Addon name → chart version.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub addons: BTreeMap<String, String>,
}

/// Everything a pipeline needs to use a cluster `up` brought up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Access {
    pub kubeconfig: PathBuf,
    pub context: String,
    pub urls: Urls,
    pub versions: Versions,
}

/// The kubeconfig context k3d names for a cluster.
pub fn context_name(cluster: &str) -> String {
    format!("k3d-{cluster}")
}

/// The kubeconfig file paddock keeps for a cluster (mode 600, rewritten by every `up`).
pub fn kubeconfig_path(tools: &Toolchain, cluster: &str) -> PathBuf {
    tools.cluster_dir(cluster).join("kubeconfig")
}

impl Access {
    pub fn of_spec(tools: &Toolchain, spec: &ClusterSpec) -> Self {
        Self {
            kubeconfig: kubeconfig_path(tools, &spec.name),
            context: context_name(&spec.name),
            urls: Urls::of_spec(&spec.body.k3d),
            versions: Versions {
                k3s: spec
                    .body
                    .k3d
                    .get("image")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                istio: spec.body.istio.as_ref().map(|i| i.version.clone()),
                addons: spec
                    .addons
                    .iter()
                    .map(|a| (a.name.clone(), a.chart.version.clone()))
                    .collect(),
            },
        }
    }

    /// The lines `up` prints under its result.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![
            format!("  kubeconfig: {}", self.kubeconfig.display()),
            format!("  context:    {}", self.context),
        ];
        for (name, url) in self.urls.entries() {
            out.push(format!("  {:<11} {url}", format!("{name}:")));
        }
        let v = &self.versions;
        let mut versions: Vec<String> = Vec::new();
        if let Some(k3s) = &v.k3s {
            versions.push(format!("k3s {}", k3s.rsplit(':').next().unwrap_or(k3s)));
        }
        if let Some(istio) = &v.istio {
            versions.push(format!("Istio {istio}"));
        }
        versions.extend(v.addons.iter().map(|(a, ver)| format!("{a} {ver}")));
        if !versions.is_empty() {
            out.push(format!("  versions:   {}", versions.join(", ")));
        }
        out
    }
}

/// The shell line that points `kubectl` (and helm, k9s…) at a kubeconfig.
pub fn export_line(path: &Path) -> String {
    format!(
        "export KUBECONFIG={}",
        shell_quote(&path.display().to_string())
    )
}

/// Quote for POSIX shells when needed.
fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:@%,=".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Fetch a running cluster's kubeconfig from k3d and keep it (mode 600) where `up` keeps it.
pub async fn fetch(
    tools: &Toolchain,
    cluster: &str,
) -> Result<(PathBuf, String), crate::ops::up::Error> {
    use crate::ops::up::Error;
    let k3d = crate::drivers::k3d::cli::K3d::new(tools.need_k3d()?);
    let info = crate::ops::up::find_existing(&k3d, cluster).await?;
    if !info.running() {
        return Err(Error::Stopped {
            cluster: cluster.to_string(),
        });
    }
    let text = k3d
        .run(k3d.kubeconfig_cmd(cluster))
        .await
        .map_err(|source| Error::Kubeconfig {
            cluster: cluster.to_string(),
            source,
        })?;
    let path = kubeconfig_path(tools, cluster);
    crate::ops::up::steps::write_kubeconfig(&path, &text).map_err(|source| {
        Error::SaveKubeconfig {
            cluster: cluster.to_string(),
            path: path.clone(),
            source,
        }
    })?;
    Ok((path, text))
}

/// The kubeconfig `kubectl` uses by default: the first file `KUBECONFIG` lists, else
/// `~/.kube/config`.
pub fn default_kubeconfig() -> Option<PathBuf> {
    if let Some(list) = std::env::var_os("KUBECONFIG")
        && let Some(first) = std::env::split_paths(&list).find(|p| !p.as_os_str().is_empty())
    {
        return Some(first);
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".kube").join("config"))
}

/// Why a kubeconfig could not be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a kubeconfig paddock can merge into: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Merge `cluster_config` (one cluster, user and context, as k3d writes it) into the
/// kubeconfig at `target`: entries of the same names are replaced, others kept; the current
/// context is set only when there is none. Written as a whole (mode 600) and renamed into
/// place. Returns whether the current context was set.
pub fn merge_into(target: &Path, cluster_config: &str) -> Result<bool, MergeError> {
    let parse = |path: &Path, text: &str| -> Result<Value, MergeError> {
        let v: Value = if text.trim().is_empty() {
            Value::Object(Default::default())
        } else {
            serde_saphyr::from_str(text).map_err(|e| MergeError::Parse {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?
        };
        match v {
            Value::Object(_) => Ok(v),
            Value::Null => Ok(Value::Object(Default::default())),
            _ => Err(MergeError::Parse {
                path: path.to_path_buf(),
                message: "its top level is not a mapping".into(),
            }),
        }
    };
    let existing = match std::fs::read_to_string(target) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(MergeError::Read {
                path: target.to_path_buf(),
                source,
            });
        }
    };
    let mut into = parse(target, &existing)?;
    let from = parse(Path::new("(k3d kubeconfig get)"), cluster_config)?;
    let set_current = merge_values(&mut into, &from);
    let text = serde_saphyr::to_string(&into).map_err(|e| MergeError::Parse {
        path: target.to_path_buf(),
        message: e.to_string(),
    })?;
    crate::ops::up::steps::write_kubeconfig(target, &text).map_err(|source| MergeError::Write {
        path: target.to_path_buf(),
        source,
    })?;
    Ok(set_current)
}

/// kubectl's merge for named lists: `from`'s entries replace `into`'s of the same name.
fn merge_values(into: &mut Value, from: &Value) -> bool {
    let Some(obj) = into.as_object_mut() else {
        return false;
    };
    obj.entry("apiVersion").or_insert_with(|| "v1".into());
    obj.entry("kind").or_insert_with(|| "Config".into());
    for key in ["clusters", "users", "contexts"] {
        let incoming: Vec<Value> = from
            .get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let list = obj.entry(key).or_insert_with(|| Value::Array(Vec::new()));
        if !list.is_array() {
            *list = Value::Array(Vec::new());
        }
        if let Value::Array(items) = list {
            let name = |v: &Value| v.get("name").and_then(Value::as_str).map(str::to_string);
            items.retain(|old| !incoming.iter().any(|new| name(new) == name(old)));
            items.extend(incoming);
        }
    }
    let unset = obj
        .get("current-context")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty);
    match from.get("current-context") {
        Some(ctx) if unset => {
            obj.insert("current-context".into(), ctx.clone());
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn k3d(ports: Value) -> serde_json::Map<String, Value> {
        json!({ "ports": ports })
            .as_object()
            .cloned()
            .unwrap_or_default()
    }

    #[test]
    fn urls_come_from_the_load_balancer_ports_for_80_and_443() {
        let urls = Urls::of_spec(&k3d(json!([
            {"port": "127.0.0.1:9080:80", "nodeFilters": ["loadbalancer"]},
            {"port": "0.0.0.0:9443:443/tcp", "nodeFilters": ["loadbalancer"]},
            {"port": "127.0.0.1:7000:80", "nodeFilters": ["server:0"]},
        ])));
        assert_eq!(urls.ingress.as_deref(), Some("http://127.0.0.1:9080/"));
        assert_eq!(urls.ingress_tls.as_deref(), Some("https://127.0.0.1:9443/"));
    }

    #[test]
    fn a_port_only_on_a_server_node_or_without_a_host_port_gives_no_url() {
        let urls = Urls::of_spec(&k3d(json!([
            {"port": "127.0.0.1:7000:80", "nodeFilters": ["server:0"]},
            {"port": "443", "nodeFilters": ["loadbalancer"]},
        ])));
        assert_eq!(urls, Urls::default());
    }

    #[test]
    fn export_lines_quote_paths_a_shell_would_split() {
        assert_eq!(
            export_line(Path::new(
                "/home/a/.local/state/paddock/clusters/ci/kubeconfig"
            )),
            "export KUBECONFIG=/home/a/.local/state/paddock/clusters/ci/kubeconfig"
        );
        assert_eq!(
            export_line(Path::new("/tmp/my state/it's")),
            r"export KUBECONFIG='/tmp/my state/it'\''s'"
        );
    }

    const K3D: &str = "apiVersion: v1\nkind: Config\nclusters:\n- name: k3d-ci\n  cluster:\n    server: https://0.0.0.0:6550\nusers:\n- name: admin@k3d-ci\n  user:\n    token: t\ncontexts:\n- name: k3d-ci\n  context:\n    cluster: k3d-ci\n    user: admin@k3d-ci\ncurrent-context: k3d-ci\n";

    #[test]
    fn merging_replaces_same_named_entries_keeps_others_and_the_current_context()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let target = dir.path().join("config");
        std::fs::write(
            &target,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: prod\n  cluster: {server: https://prod:6443}\n- name: k3d-ci\n  cluster: {server: https://0.0.0.0:1}\ncontexts:\n- name: prod\n  context: {cluster: prod, user: me}\nusers:\n- name: me\n  user: {token: x}\ncurrent-context: prod\npreferences: {}\n",
        )?;
        assert!(!merge_into(&target, K3D)?);
        let merged: Value = serde_saphyr::from_str(&std::fs::read_to_string(&target)?)?;
        let names = |k: &str| -> Vec<String> {
            merged[k]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["name"].as_str().map(str::to_string))
                .collect()
        };
        assert_eq!(names("clusters"), ["prod", "k3d-ci"]);
        assert_eq!(names("users"), ["me", "admin@k3d-ci"]);
        assert_eq!(names("contexts"), ["prod", "k3d-ci"]);
        assert_eq!(
            merged["clusters"][1]["cluster"]["server"],
            "https://0.0.0.0:6550"
        );
        assert_eq!(merged["current-context"], "prod");
        assert_eq!(merged["preferences"], json!({}));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&target)?.permissions().mode() & 0o777,
            0o600
        );
        Ok(())
    }

    #[test]
    fn merging_into_no_file_makes_one_with_the_cluster_current()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let target = dir.path().join(".kube/config");
        assert!(merge_into(&target, K3D)?);
        let merged: Value = serde_saphyr::from_str(&std::fs::read_to_string(&target)?)?;
        assert_eq!(merged["current-context"], "k3d-ci");
        assert_eq!(merged["contexts"][0]["context"]["user"], "admin@k3d-ci");
        Ok(())
    }

    #[test]
    fn a_kubeconfig_that_is_not_a_mapping_is_refused_and_left_alone()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let target = dir.path().join("config");
        std::fs::write(&target, "- just\n- a list\n")?;
        let e = merge_into(&target, K3D)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("not a kubeconfig") && e.contains("not a mapping"),
            "{e}"
        );
        assert_eq!(std::fs::read_to_string(&target)?, "- just\n- a list\n");
        Ok(())
    }
}
