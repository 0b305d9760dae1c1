//! `open`: reach an addon's web UI from the host. The addon's UI Service (a table per known
//! addon, from the charts paddock pins and the values it sets) selects the pods; a Ready pod
//! that is not terminating, and the Service port's `targetPort` (a number, or a name resolved
//! on that pod's containers), are what every accepted connection on 127.0.0.1 is forwarded to,
//! through the API server's `pods/portforward`. A connection after that pod went away resolves
//! a pod anew.

mod serve;

pub use serve::Forward;

use k8s_openapi::api::core::v1::{Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::drivers::k3d::cli::K3d;
use crate::drivers::kube::{self as driver, Kube};
use crate::ops::up;
use crate::spec::ClusterSpec;

/// Where a known addon's web UI is: its Service, the Service port, the path the UI lives under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ui {
    pub addon: &'static str,
    pub service: &'static str,
    /// The Service port (also the local port `open` tries first).
    pub port: u16,
    pub path: &'static str,
}

/// The addons whose UI paddock knows, as the pinned charts render them with paddock's values:
/// kiali-server's Service `kiali` port 20001 (web root `/kiali`); grafana's `grafana` port 3000
/// (`service.port`) → targetPort `grafana`; jaeger's `jaeger-query` port 16686; prometheus'
/// `prometheus` (`server.fullnameOverride`) port 9090.
pub const UIS: &[Ui] = &[
    Ui {
        addon: "kiali",
        service: "kiali",
        port: 20001,
        path: "/kiali/",
    },
    Ui {
        addon: "grafana",
        service: "grafana",
        port: 3000,
        path: "/",
    },
    Ui {
        addon: "jaeger",
        service: "jaeger-query",
        port: 16686,
        path: "/",
    },
    Ui {
        addon: "prometheus",
        service: "prometheus",
        port: 9090,
        path: "/",
    },
];

/// The UI of an addon, when paddock knows it.
pub fn ui(addon: &str) -> Option<&'static Ui> {
    UIS.iter().find(|u| u.addon == addon)
}

/// Why an addon cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    MissingTool(#[from] crate::drivers::toolchain::Missing),
    /// Finding the cluster or connecting to it failed (an absent cluster included).
    #[error(transparent)]
    Connect(Box<up::Error>),
    #[error("cluster {cluster} is stopped")]
    Stopped { cluster: String },
    #[error(
        "addon {addon} is not enabled in cluster {cluster}'s spec (enabled: {})",
        list(enabled)
    )]
    NotEnabled {
        cluster: String,
        addon: String,
        enabled: Vec<String>,
    },
    #[error("paddock does not know where addon {addon}'s web UI is (it knows {})", UIS.iter().map(|u| u.addon).collect::<Vec<_>>().join(", "))]
    NoUi { addon: String },
    #[error(
        "addon {addon} is not installed in cluster {cluster}: no Service {namespace}/{service}"
    )]
    NotInstalled {
        cluster: String,
        addon: String,
        namespace: String,
        service: String,
    },
    #[error(
        "addon {addon} has no ready pod in cluster {cluster} ({pods} pod(s) selected by Service {namespace}/{service}, none Ready and running on)"
    )]
    NoReadyPod {
        cluster: String,
        addon: String,
        namespace: String,
        service: String,
        pods: usize,
    },
    #[error("Service {namespace}/{service} has no port {port}")]
    NoServicePort {
        namespace: String,
        service: String,
        port: u16,
    },
    #[error(
        "pod {namespace}/{pod} has no container port named {name} (targetPort of Service {service})"
    )]
    NoNamedPort {
        namespace: String,
        pod: String,
        service: String,
        name: String,
    },
    #[error("failed to read {what}")]
    Read {
        what: String,
        #[source]
        source: driver::Error,
    },
    #[error("cannot listen on 127.0.0.1:{port}")]
    Listen {
        port: u16,
        #[source]
        source: std::io::Error,
    },
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

impl Error {
    /// What the user can do about it.
    pub fn what_to_do(&self) -> Option<String> {
        Some(match self {
            Error::Connect(e) => return e.what_to_do(),
            Error::Stopped { cluster } => format!("`paddock up {cluster}` starts it"),
            Error::NotEnabled { addon, .. } => {
                format!("add `{addon}` to `addons:` in the cluster's spec and run `paddock up`")
            }
            Error::NotInstalled { cluster, .. } => {
                format!("`paddock up {cluster}` installs it")
            }
            Error::NoReadyPod { cluster, .. } => format!(
                "`paddock status {cluster}` shows the addon's pods; `paddock up {cluster}` waits for them"
            ),
            Error::Listen { .. } => {
                "pick another port with --port, or leave --port out for a free one".to_string()
            }
            _ => return None,
        })
    }

    /// A problem with what was asked, not with the cluster: nothing was tried.
    pub fn bad_input(&self) -> bool {
        matches!(self, Error::NotEnabled { .. } | Error::NoUi { .. })
    }
}

/// What to open.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub addon: String,
    /// The local port; `None`: the addon's usual one, or a free one when that is taken.
    pub port: Option<u16>,
}

/// Check the addon, connect, find a pod to forward to and listen: the forward, ready to serve.
pub async fn prepare(
    cx: &crate::ops::Context,
    spec: &ClusterSpec,
    req: &Request,
) -> Result<Forward, Error> {
    let (ui, namespace) = addon_ui(spec, &req.addon)?;
    let k3d = K3d::new(cx.tools.need_k3d()?);
    let info = up::find_existing(&k3d, &spec.name)
        .await
        .map_err(|e| Error::Connect(Box::new(e)))?;
    if !info.running() {
        return Err(Error::Stopped {
            cluster: spec.name.clone(),
        });
    }
    let c = up::connect(&k3d, &cx.tools, info)
        .await
        .map_err(|e| Error::Connect(Box::new(e)))?;
    let resolver = Resolver {
        kube: c.kube,
        cluster: spec.name.clone(),
        namespace,
        ui: *ui,
    };
    let target = resolver.resolve().await?;
    serve::listen(resolver, target, req.port).await
}

/// The UI of an addon the spec enables, and the namespace it is installed in.
fn addon_ui(spec: &ClusterSpec, addon: &str) -> Result<(&'static Ui, String), Error> {
    let Some(enabled) = spec.addons.iter().find(|a| a.name == addon) else {
        return Err(Error::NotEnabled {
            cluster: spec.name.clone(),
            addon: addon.to_string(),
            enabled: spec.addons.iter().map(|a| a.name.clone()).collect(),
        });
    };
    let ui = ui(addon).ok_or_else(|| Error::NoUi {
        addon: addon.to_string(),
    })?;
    Ok((ui, enabled.namespace.clone()))
}

/// A pod and port to forward to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub pod: String,
    pub port: u16,
}

/// Finds what the addon's Service points at, again whenever asked.
#[derive(Debug, Clone)]
struct Resolver {
    kube: Kube,
    cluster: String,
    namespace: String,
    ui: Ui,
}

impl Resolver {
    async fn resolve(&self) -> Result<Target, Error> {
        let (ns, ui) = (&self.namespace, &self.ui);
        let read = |what: String| move |source| Error::Read { what, source };
        let service = self
            .kube
            .get_in::<Service>(ns, ui.service)
            .await
            .map_err(read(format!("Service {ns}/{}", ui.service)))?
            .ok_or_else(|| Error::NotInstalled {
                cluster: self.cluster.clone(),
                addon: ui.addon.to_string(),
                namespace: ns.clone(),
                service: ui.service.to_string(),
            })?;
        let spec = service.spec.unwrap_or_default();
        let selector = spec.selector.unwrap_or_default();
        let pods = self
            .kube
            .pods_selected(ns, &selector)
            .await
            .map_err(read(format!("the pods of Service {ns}/{}", ui.service)))?;
        let pod = pick_pod(&pods).ok_or_else(|| Error::NoReadyPod {
            cluster: self.cluster.clone(),
            addon: ui.addon.to_string(),
            namespace: ns.clone(),
            service: ui.service.to_string(),
            pods: pods.len(),
        })?;
        let port =
            service_port(spec.ports.as_deref().unwrap_or_default(), ui.port).ok_or_else(|| {
                Error::NoServicePort {
                    namespace: ns.clone(),
                    service: ui.service.to_string(),
                    port: ui.port,
                }
            })?;
        Ok(Target {
            pod: pod.metadata.name.clone().unwrap_or_default(),
            port: target_port(port, pod, ui.service)?,
        })
    }

    /// Is the pod forwarded to still one to use (there, Ready, not terminating)?
    async fn still_good(&self, target: &Target) -> bool {
        matches!(
            self.kube.get_in::<Pod>(&self.namespace, &target.pod).await,
            Ok(Some(p)) if usable(&p)
        )
    }
}

fn usable(pod: &Pod) -> bool {
    crate::ops::restart::ready(pod) && !crate::mesh::terminating(pod)
}

/// The pod to forward to: the first (by name) that is Ready and not terminating.
pub fn pick_pod(pods: &[Pod]) -> Option<&Pod> {
    let mut good: Vec<&Pod> = pods.iter().filter(|p| usable(p)).collect();
    good.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    good.into_iter().next()
}

fn service_port(ports: &[ServicePort], port: u16) -> Option<&ServicePort> {
    ports.iter().find(|p| p.port == i32::from(port))
}

/// The pod port a Service port leads to: its `targetPort` (by number, or by name among the
/// pod's container ports), or the Service port itself when it names none.
pub fn target_port(port: &ServicePort, pod: &Pod, service: &str) -> Result<u16, Error> {
    let number = |n: i32| u16::try_from(n).unwrap_or_default();
    match &port.target_port {
        None => Ok(number(port.port)),
        Some(IntOrString::Int(0)) => Ok(number(port.port)),
        Some(IntOrString::Int(n)) => Ok(number(*n)),
        Some(IntOrString::String(name)) => pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| number(p.container_port))
            .ok_or_else(|| Error::NoNamedPort {
                namespace: pod.metadata.namespace.clone().unwrap_or_default(),
                pod: pod.metadata.name.clone().unwrap_or_default(),
                service: service.to_string(),
                name: name.clone(),
            }),
    }
}

#[cfg(test)]
mod tests;
