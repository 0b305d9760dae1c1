//! The k3d driver: command lines as values and typed parses of k3d's JSON (K3D.md). "Could not
//! tell" (k3d failed, or printed something unparseable) is an error, never "absent".

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;

use super::{CLUSTER_LABEL, MANAGED_LABEL};
use crate::drivers::exec::{Cmd, ExecError, exec};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error("could not read the output of `{cmd}`: {source}")]
    Parse {
        cmd: String,
        #[source]
        source: serde_json::Error,
    },
}

/// The `k3d` executable paddock drives.
#[derive(Debug, Clone)]
pub struct K3d {
    pub bin: PathBuf,
}

/// One element of `k3d cluster list -o json`.
#[derive(Debug, Clone, Deserialize)]
pub struct ClusterInfo {
    pub name: String,
    #[serde(default)]
    pub nodes: Vec<NodeInfo>,
    #[serde(rename = "serversRunning", default)]
    pub servers_running: u32,
    #[serde(rename = "serversCount", default)]
    pub servers_count: u32,
    #[serde(rename = "agentsRunning", default)]
    pub agents_running: u32,
    #[serde(rename = "agentsCount", default)]
    pub agents_count: u32,
    #[serde(rename = "hasLoadbalancer", default)]
    pub has_loadbalancer: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NodeInfo {
    pub name: String,
    pub role: String,
    #[serde(default)]
    pub image: String,
    #[serde(rename = "runtimeLabels", default)]
    pub runtime_labels: BTreeMap<String, String>,
    #[serde(rename = "State", default)]
    pub state: NodeState,
    #[serde(rename = "portMappings", default)]
    pub port_mappings: BTreeMap<String, Vec<PortBinding>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct NodeState {
    #[serde(rename = "Running", default)]
    pub running: bool,
    #[serde(rename = "Status", default)]
    pub status: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PortBinding {
    #[serde(rename = "HostIp", default)]
    pub host_ip: String,
    #[serde(rename = "HostPort", default)]
    pub host_port: String,
}

impl ClusterInfo {
    /// Running means every server and agent runs (K3D.md).
    pub fn running(&self) -> bool {
        self.servers_running == self.servers_count && self.agents_running == self.agents_count
    }

    /// paddock made it: its server nodes carry paddock's runtime label.
    pub fn owned(&self) -> bool {
        let servers: Vec<&NodeInfo> = self.nodes.iter().filter(|n| n.role == "server").collect();
        !servers.is_empty()
            && servers.iter().all(|n| {
                n.runtime_labels.get(MANAGED_LABEL).map(String::as_str) == Some("true")
                    && n.runtime_labels.get(CLUSTER_LABEL) == Some(&self.name)
            })
    }

    /// Does the cluster's load balancer (or API) publish this host port?
    pub fn publishes(&self, host_port: u16) -> bool {
        self.nodes.iter().any(|n| {
            n.port_mappings
                .values()
                .flatten()
                .any(|b| b.host_port.parse::<u16>().ok() == Some(host_port))
        })
    }

    /// The host port the load balancer publishes for a container port.
    pub fn host_port(&self, container: u16) -> Option<u16> {
        self.nodes
            .iter()
            .filter(|n| n.role == "loadbalancer")
            .find_map(|n| n.port_mappings.get(&format!("{container}/tcp")))
            .and_then(|b| b.first())
            .and_then(|b| b.host_port.parse().ok())
    }
}

/// One element of `k3d registry list -o json`.
#[derive(Debug, Clone, Deserialize)]
pub struct RegistryInfo {
    pub name: String,
    #[serde(rename = "runtimeLabels", default)]
    pub runtime_labels: BTreeMap<String, String>,
}

impl K3d {
    pub fn new(bin: impl Into<PathBuf>) -> Self {
        Self { bin: bin.into() }
    }

    fn cmd(&self) -> Cmd {
        Cmd::new(&self.bin)
    }

    pub fn version_cmd(&self) -> Cmd {
        self.cmd().arg("version")
    }

    pub fn list_cmd(&self) -> Cmd {
        self.cmd().args(["cluster", "list", "-o", "json"])
    }

    /// `k3d cluster create NAME --config -`, the config on stdin (JSON is YAML).
    pub fn create_cmd(&self, name: &str, config: &Value) -> Cmd {
        self.cmd()
            .args(["cluster", "create", name, "--config", "-"])
            .stdin(config.to_string())
    }

    pub fn delete_cmd(&self, name: &str) -> Cmd {
        self.cmd().args(["cluster", "delete", name])
    }

    pub fn kubeconfig_cmd(&self, name: &str) -> Cmd {
        self.cmd().args(["kubeconfig", "get", name])
    }

    pub fn registry_list_cmd(&self) -> Cmd {
        self.cmd().args(["registry", "list", "-o", "json"])
    }

    /// A standalone pull-through cache registry that outlives clusters.
    pub fn registry_create_cmd(&self, name: &str, port: u16, remote: &str, volume: &str) -> Cmd {
        self.cmd().args([
            "registry".to_string(),
            "create".to_string(),
            name.to_string(),
            "-p".to_string(),
            format!("127.0.0.1:{port}"),
            "--proxy-remote-url".to_string(),
            remote.to_string(),
            "-v".to_string(),
            format!("{volume}:/var/lib/registry"),
        ])
    }

    pub fn image_import_cmd(&self, cluster: &str, images: &[String]) -> Cmd {
        self.cmd()
            .args(["image", "import"])
            .args(images.iter().cloned())
            .args(["-c", cluster])
    }

    /// Every k3d cluster on this machine.
    pub async fn list(&self) -> Result<Vec<ClusterInfo>, Error> {
        let cmd = self.list_cmd();
        let shown = cmd.to_string();
        let out = exec(cmd).await?;
        serde_json::from_str(&out.stdout).map_err(|source| Error::Parse { cmd: shown, source })
    }

    /// The cluster of that name, `None` only when k3d positively lists no such cluster.
    pub async fn find(&self, name: &str) -> Result<Option<ClusterInfo>, Error> {
        Ok(self.list().await?.into_iter().find(|c| c.name == name))
    }

    pub async fn registries(&self) -> Result<Vec<RegistryInfo>, Error> {
        let cmd = self.registry_list_cmd();
        let shown = cmd.to_string();
        let out = exec(cmd).await?;
        serde_json::from_str(&out.stdout).map_err(|source| Error::Parse { cmd: shown, source })
    }

    pub async fn run(&self, cmd: Cmd) -> Result<String, Error> {
        Ok(exec(cmd).await?.stdout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_json_parses_k3d_shapes() {
        let text = r#"[{"name":"dev","network":{"name":"k3d-dev"},"nodes":[
            {"name":"k3d-dev-server-0","role":"server","image":"rancher/k3s:v1.33.4-k3s1",
             "runtimeLabels":{"app":"k3d","dev.paddock.managed":"true","dev.paddock.cluster":"dev"},
             "State":{"Running":true,"Status":"running"},"IP":{"IP":"172.18.0.2"}},
            {"name":"k3d-dev-serverlb","role":"loadbalancer","State":{"Running":true,"Status":"running"},
             "portMappings":{"80/tcp":[{"HostIp":"127.0.0.1","HostPort":"8080"}]}}],
            "serversRunning":1,"serversCount":1,"agentsRunning":0,"agentsCount":0,"hasLoadbalancer":true}]"#;
        let list: Vec<ClusterInfo> = serde_json::from_str(text).expect("parses");
        assert_eq!(list[0].name, "dev");
        assert!(list[0].running());
        assert!(list[0].owned());
        assert_eq!(list[0].host_port(80), Some(8080));
        assert_eq!(list[0].host_port(443), None);
    }

    #[test]
    fn clusters_without_paddocks_label_are_not_owned() {
        let text = r#"{"name":"x","nodes":[{"name":"k3d-x-server-0","role":"server","runtimeLabels":{"app":"k3d"}}],
            "serversRunning":0,"serversCount":1,"agentsRunning":0,"agentsCount":0}"#;
        let c: ClusterInfo = serde_json::from_str(text).expect("parses");
        assert!(!c.owned());
        assert!(!c.running());
    }

    #[test]
    fn command_lines_are_k3ds() {
        let k = K3d::new("k3d");
        assert_eq!(
            k.create_cmd("dev", &serde_json::json!({})).to_string(),
            "k3d cluster create dev --config - < (generated input)"
        );
        assert_eq!(
            k.registry_create_cmd(
                "paddock-docker-io",
                5001,
                "https://registry-1.docker.io",
                "paddock-docker-io"
            )
            .to_string(),
            "k3d registry create paddock-docker-io -p 127.0.0.1:5001 --proxy-remote-url https://registry-1.docker.io -v paddock-docker-io:/var/lib/registry"
        );
    }
}
