//! The Docker driver (bollard, honouring `DOCKER_HOST`): engine reachability and version for
//! `doctor`, and k3d's containers found by k3d's labels, with their published ports.

use std::collections::HashMap;

use bollard::Docker;
use bollard::query_parameters::ListContainersOptionsBuilder;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach the Docker engine ({endpoint}): {source}")]
    Unreachable {
        endpoint: String,
        #[source]
        source: bollard::errors::Error,
    },
}

fn endpoint() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
}

fn connect() -> Result<Docker, Error> {
    Docker::connect_with_defaults().map_err(|source| Error::Unreachable {
        endpoint: endpoint(),
        source,
    })
}

/// Ping the engine and read its version.
pub async fn version() -> Result<String, Error> {
    let d = connect()?;
    let unreachable = |source| Error::Unreachable {
        endpoint: endpoint(),
        source,
    };
    d.ping().await.map_err(unreachable)?;
    let v = d.version().await.map_err(unreachable)?;
    Ok(v.version.unwrap_or_else(|| "unknown".into()))
}

/// A k3d container: name, k3d role, cluster, and published (host port, container port) pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct K3dContainer {
    pub name: String,
    pub role: String,
    pub cluster: String,
    pub ports: Vec<(u16, u16)>,
}

/// Every container k3d made (label `app=k3d`), clusters' nodes and registries alike.
pub async fn k3d_containers() -> Result<Vec<K3dContainer>, Error> {
    let d = connect()?;
    let mut filters = HashMap::new();
    filters.insert("label", vec!["app=k3d"]);
    let opts = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    let list = d
        .list_containers(Some(opts))
        .await
        .map_err(|source| Error::Unreachable {
            endpoint: endpoint(),
            source,
        })?;
    Ok(list
        .into_iter()
        .map(|c| {
            let labels = c.labels.unwrap_or_default();
            K3dContainer {
                name: c
                    .names
                    .and_then(|n| n.first().cloned())
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_string(),
                role: labels.get("k3d.role").cloned().unwrap_or_default(),
                cluster: labels.get("k3d.cluster").cloned().unwrap_or_default(),
                ports: c
                    .ports
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|p| Some((p.public_port?, p.private_port)))
                    .collect(),
            }
        })
        .collect())
}
