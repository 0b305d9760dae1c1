//! The Kubernetes driver (kube-rs): a client from the cluster's kubeconfig, server-side apply
//! with the `paddock` field manager, paddock's in-cluster record, and waits that re-check on
//! watch events rather than sleeping.

mod forward;
mod typed;
mod wait;

pub use forward::Forwarded;
pub use wait::{Replicas, Rollout, WaitFailure, daemonset_done, deployment_done, statefulset_done};

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Namespace, Node};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ClusterResourceScope, GroupVersionKind, NamespaceResourceScope};
use kube::runtime::watcher;
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::plan::SYSTEM_NAMESPACE;
pub use crate::plan::observed::Record;

/// Field manager of everything paddock applies.
pub const FIELD_MANAGER: &str = "paddock";
/// ConfigMap (in `paddock-system`) holding the applied spec, its hash and what was installed.
pub const RECORD_NAME: &str = "paddock";
/// Record keys `release.<name>`: each release's fingerprint as installed.
const RELEASE_KEY: &str = "release.";
/// How long a namespace being deleted may take to go before paddock gives up on it.
const NAMESPACE_GONE_TIMEOUT: Duration = Duration::from_secs(300);
/// Label on paddock's namespace: the in-cluster ownership marker.
pub const MARKER_LABEL: &str = "dev.paddock.managed";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("could not read the kubeconfig of cluster {cluster}: {message}")]
    Kubeconfig { cluster: String, message: String },
    #[error("the Kubernetes API of cluster {cluster} failed: {source}")]
    Api {
        cluster: String,
        #[source]
        source: kube::Error,
    },
    /// A 401: the API server took the kubeconfig's credentials for nobody's.
    #[error(
        "the API server of cluster {cluster} refused paddock's credentials (401 Unauthorized): {}",
        unauthorized_hint(cluster, *client_cert)
    )]
    Unauthorized {
        cluster: String,
        /// Did the kubeconfig carry a client certificate at all?
        client_cert: bool,
        #[source]
        source: kube::Error,
    },
    #[error("timed out after {}s waiting for {what}", timeout.as_secs())]
    Timeout { what: String, timeout: Duration },
    /// A wait that stopped before its timeout: what it waited for will not come by itself.
    #[error("gave up waiting for {what}: {reason}")]
    Failed {
        what: String,
        #[source]
        reason: Box<WaitFailure>,
    },
    #[error("cannot apply {what}: {reason}")]
    BadObject { what: String, reason: String },
}

fn unauthorized_hint(cluster: &str, client_cert: bool) -> String {
    let what = if client_cert {
        "a client certificate the cluster does not accept (not signed by its client CA, or expired)"
    } else {
        "no client certificate"
    };
    format!(
        "the kubeconfig k3d gave has {what}; `k3d kubeconfig get {cluster}` should show client-certificate-data and client-key-data for user admin@k3d-{cluster} — recreate the kubeconfig or the cluster"
    )
}

/// A connected cluster.
#[derive(Clone)]
pub struct Kube {
    pub cluster: String,
    pub client: Client,
    /// The kubeconfig's user has a client certificate (for explaining a 401).
    client_cert: bool,
}

impl Debug for Kube {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kube")
            .field("cluster", &self.cluster)
            .finish()
    }
}

impl Kube {
    /// Connect with a kubeconfig's current context.
    pub async fn connect(cluster: &str, kubeconfig_yaml: &str) -> Result<Self, Error> {
        let bad = |message: String| Error::Kubeconfig {
            cluster: cluster.to_string(),
            message,
        };
        let kc =
            kube::config::Kubeconfig::from_yaml(kubeconfig_yaml).map_err(|e| bad(e.to_string()))?;
        let client_cert = current_user(&kc)
            .is_some_and(|u| u.client_certificate_data.is_some() || u.client_certificate.is_some());
        let mut config =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| bad(e.to_string()))?;
        config.connect_timeout = Some(Duration::from_secs(5));
        config.read_timeout = Some(Duration::from_secs(60));
        let client = Client::try_from(config).map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            cluster: cluster.to_string(),
            client,
            client_cert,
        })
    }

    fn api_err(&self, source: kube::Error) -> Error {
        match &source {
            kube::Error::Api(status) if status.code == 401 => Error::Unauthorized {
                cluster: self.cluster.clone(),
                client_cert: self.client_cert,
                source,
            },
            _ => Error::Api {
                cluster: self.cluster.clone(),
                source,
            },
        }
    }

    /// Create or label a namespace (server-side apply). A namespace of that name still
    /// terminating is waited out first: nothing can be created in it, and it will be gone.
    pub async fn apply_namespace(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<(), Error> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        self.wait_for(
            api.clone(),
            ListParams::default().fields(&format!("metadata.name={name}")),
            &format!("namespace {name}, which is being deleted, to be gone"),
            NAMESPACE_GONE_TIMEOUT,
            |items| {
                Ok(items
                    .first()
                    .is_none_or(|n| n.metadata.deletion_timestamp.is_none()))
            },
        )
        .await?;
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}});
        api.patch(name, &apply_params(), &Patch::Apply(&ns))
            .await
            .map_err(|e| self.api_err(e))?;
        Ok(())
    }

    /// Delete a namespace. One already gone, or already being deleted (the API answers 409
    /// while a namespace terminates), is fine.
    pub async fn delete_namespace(&self, name: &str) -> Result<(), Error> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        match api.delete(name, &kube::api::DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
            Err(e) => Err(self.api_err(e)),
        }
    }

    /// Every namespace: its labels, and the label keys paddock's field manager applied.
    pub async fn namespaces(&self) -> Result<Vec<NamespaceView>, Error> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|e| self.api_err(e))?;
        Ok(list
            .items
            .into_iter()
            .map(|n| {
                let applied = applied_label_keys(&n.metadata);
                NamespaceView {
                    name: n.metadata.name.unwrap_or_default(),
                    labels: n.metadata.labels.unwrap_or_default(),
                    applied_labels: applied,
                }
            })
            .collect())
    }

    /// Server-side apply of arbitrary objects; namespaced ones default to `default_ns`.
    pub async fn apply(&self, objects: &[Value], default_ns: &str) -> Result<(), Error> {
        for obj in objects {
            self.apply_object(obj, default_ns).await?;
        }
        Ok(())
    }

    /// Server-side apply of one object, fields checked strictly (an unknown field is refused,
    /// not dropped); namespaced ones default to `default_ns`.
    pub async fn apply_object(&self, obj: &Value, default_ns: &str) -> Result<(), Error> {
        {
            let api_version = obj["apiVersion"].as_str().unwrap_or_default();
            let kind = obj["kind"].as_str().unwrap_or_default();
            let name = obj["metadata"]["name"].as_str().unwrap_or_default();
            let what = format!("{kind} {name}");
            if api_version.is_empty() || kind.is_empty() || name.is_empty() {
                return Err(Error::BadObject {
                    what,
                    reason: "apiVersion, kind and metadata.name are required".into(),
                });
            }
            let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
            let gvk = GroupVersionKind::gvk(group, version, kind);
            let (ar, caps) = kube::discovery::pinned_kind(&self.client, &gvk)
                .await
                .map_err(|e| match e {
                    kube::Error::Api(ref s) if s.code == 401 => self.api_err(e),
                    e => Error::BadObject {
                        what: what.clone(),
                        reason: format!("the cluster does not serve {api_version} {kind} ({e})"),
                    },
                })?;
            let api: Api<DynamicObject> = if caps.scope == kube::discovery::Scope::Namespaced {
                let ns = obj["metadata"]["namespace"].as_str().unwrap_or(default_ns);
                Api::namespaced_with(self.client.clone(), ns, &ar)
            } else {
                Api::all_with(self.client.clone(), &ar)
            };
            api.patch(name, &apply_params(), &Patch::Apply(obj))
                .await
                .map_err(|e| self.api_err(e))?;
        }
        Ok(())
    }

    /// paddock's record, if the cluster has one.
    pub async fn record(&self) -> Result<Option<Record>, Error> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), SYSTEM_NAMESPACE);
        let Some(cm) = api
            .get_opt(RECORD_NAME)
            .await
            .map_err(|e| self.api_err(e))?
        else {
            return Ok(None);
        };
        let data = cm.data.unwrap_or_default();
        let get = |k: &str| data.get(k).cloned().unwrap_or_default();
        let json_of = |k: &str| serde_json::from_str::<Value>(&get(k)).unwrap_or(Value::Null);
        Ok(Some(Record {
            spec_hash: get("spec-hash"),
            releases: data
                .iter()
                .filter_map(|(k, v)| {
                    let name = k.strip_prefix(RELEASE_KEY)?;
                    Some((name.to_string(), serde_json::from_str(v).ok()?))
                })
                .collect(),
            k3d: json_of("k3d"),
            istio_version: get("istio-version"),
            istio_revision: get("istio-revision"),
            applied_hash: get("applied-hash"),
            images: serde_json::from_str(&get("images")).unwrap_or_default(),
        }))
    }

    /// Write the marker namespace and the record.
    pub async fn write_record(
        &self,
        cluster: &str,
        record: &Record,
        spec: &Value,
    ) -> Result<(), Error> {
        let mut labels = BTreeMap::new();
        labels.insert(MARKER_LABEL.to_string(), "true".to_string());
        self.apply_namespace(SYSTEM_NAMESPACE, &labels).await?;
        let mut cm = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": RECORD_NAME, "namespace": SYSTEM_NAMESPACE,
                "labels": {MARKER_LABEL: "true", "app.kubernetes.io/managed-by": "paddock"}},
            "data": {
                "cluster": cluster,
                "spec-hash": record.spec_hash,
                "spec": spec.to_string(),
                "k3d": record.k3d.to_string(),
                "istio-version": record.istio_version,
                "istio-revision": record.istio_revision,
                "applied-hash": record.applied_hash,
                "images": serde_json::to_string(&record.images).unwrap_or_default(),
                "paddock-version": env!("CARGO_PKG_VERSION"),
            },
        });
        for (name, fingerprint) in &record.releases {
            cm["data"][format!("{RELEASE_KEY}{name}")] = json!(fingerprint.to_string());
        }
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), SYSTEM_NAMESPACE);
        api.patch(RECORD_NAME, &apply_params(), &Patch::Apply(&cm))
            .await
            .map_err(|e| self.api_err(e))?;
        Ok(())
    }

    /// Note one release as installed, as soon as it is: an interrupted `up` then knows it need
    /// not install it again. A merge patch of one key, so parallel installs do not collide.
    pub async fn record_release(&self, name: &str, fingerprint: &Value) -> Result<(), Error> {
        let mut labels = BTreeMap::new();
        labels.insert(MARKER_LABEL.to_string(), "true".to_string());
        self.apply_namespace(SYSTEM_NAMESPACE, &labels).await?;
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), SYSTEM_NAMESPACE);
        let empty: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": RECORD_NAME, "namespace": SYSTEM_NAMESPACE,
                "labels": {MARKER_LABEL: "true", "app.kubernetes.io/managed-by": "paddock"}},
        }))
        .map_err(|e| Error::BadObject {
            what: RECORD_NAME.into(),
            reason: e.to_string(),
        })?;
        match api.create(&post_params(), &empty).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(self.api_err(e)),
        }
        let patch = json!({"data": {format!("{RELEASE_KEY}{name}"): fingerprint.to_string()}});
        self.patch_record(&patch).await
    }

    async fn patch_record(&self, patch: &Value) -> Result<(), Error> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), SYSTEM_NAMESPACE);
        api.patch(RECORD_NAME, &update_params(), &Patch::Merge(patch))
            .await
            .map_err(|e| self.api_err(e))?;
        Ok(())
    }

    /// After an upgrade: the Istio version and revision now serving, and its releases.
    pub async fn record_istio(
        &self,
        version: &str,
        revision: &str,
        releases: &[crate::drivers::helm::Release],
    ) -> Result<(), Error> {
        for r in releases {
            self.record_release(&r.name, &crate::plan::release_fingerprint(r))
                .await?;
        }
        self.patch_record(&json!({"data": {"istio-version": version, "istio-revision": revision}}))
            .await
    }

    /// The injectors the cluster's MutatingWebhookConfigurations describe.
    pub async fn injectors(&self) -> Result<crate::mesh::Injectors, Error> {
        let hooks = self.list::<MutatingWebhookConfiguration>().await?;
        Ok(crate::mesh::Injectors::from_webhooks(&hooks))
    }

    /// Any object as JSON, by API path (for status reads).
    pub async fn list_json(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
    ) -> Result<Vec<Value>, Error> {
        let api = self.dynamic(api_version, kind, namespace).await?;
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|e| self.api_err(e))?;
        Ok(list
            .items
            .into_iter()
            .filter_map(|o| serde_json::to_value(o).ok())
            .collect())
    }

    async fn dynamic(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
    ) -> Result<Api<DynamicObject>, Error> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (ar, caps) = kube::discovery::pinned_kind(&self.client, &gvk)
            .await
            .map_err(|e| self.api_err(e))?;
        Ok(match namespace {
            Some(ns) if caps.scope == kube::discovery::Scope::Namespaced => {
                Api::namespaced_with(self.client.clone(), ns, &ar)
            }
            _ => Api::all_with(self.client.clone(), &ar),
        })
    }

    /// One object as JSON, `None` when it does not exist.
    pub async fn get_json(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, Error> {
        let api = self.dynamic(api_version, kind, namespace).await?;
        let o = api.get_opt(name).await.map_err(|e| self.api_err(e))?;
        Ok(o.and_then(|o| serde_json::to_value(o).ok()))
    }

    /// A JSON merge patch.
    pub async fn merge_patch(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        patch: &Value,
    ) -> Result<(), Error> {
        let api = self.dynamic(api_version, kind, namespace).await?;
        api.patch(name, &update_params(), &Patch::Merge(patch))
            .await
            .map_err(|e| self.api_err(e))?;
        Ok(())
    }

    /// Create an object (an existing one is left as it is).
    pub async fn create_json(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        obj: &Value,
    ) -> Result<Value, Error> {
        let api = self.dynamic(api_version, kind, namespace).await?;
        let o: DynamicObject =
            serde_json::from_value(obj.clone()).map_err(|e| Error::BadObject {
                what: kind.to_string(),
                reason: e.to_string(),
            })?;
        let created = api
            .create(&post_params(), &o)
            .await
            .map_err(|e| self.api_err(e))?;
        Ok(serde_json::to_value(created).unwrap_or(Value::Null))
    }

    /// Delete an object; one already gone is fine.
    pub async fn delete_json(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<(), Error> {
        let api = self.dynamic(api_version, kind, namespace).await?;
        match api.delete(name, &kube::api::DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(self.api_err(e)),
        }
    }
}

/// Server-side apply as paddock: its field manager, taking over conflicting fields, unknown
/// fields refused.
fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER)
        .force()
        .validation_strict()
}

/// Updates (merge patches) recorded under paddock's field manager, not an anonymous one
/// (kube-rs sends no User-Agent the API server could name it by).
fn update_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    }
}

/// Creations recorded under paddock's field manager.
fn post_params() -> kube::api::PostParams {
    kube::api::PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..kube::api::PostParams::default()
    }
}

/// A namespace as `up` plans from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceView {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Label keys paddock's field manager owns through server-side apply.
    pub applied_labels: std::collections::BTreeSet<String>,
}

/// The label keys `FIELD_MANAGER` owns by server-side apply, from `metadata.managedFields`
/// (FieldsV1: `{"f:metadata": {"f:labels": {"f:<key>": {}}}}`).
pub fn applied_label_keys(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> std::collections::BTreeSet<String> {
    meta.managed_fields
        .iter()
        .flatten()
        .filter(|m| {
            m.manager.as_deref() == Some(FIELD_MANAGER) && m.operation.as_deref() == Some("Apply")
        })
        .filter_map(|m| m.fields_v1.as_ref())
        .filter_map(|f| f.0.pointer("/f:metadata/f:labels")?.as_object().cloned())
        .flat_map(|labels| {
            labels
                .keys()
                .filter_map(|k| k.strip_prefix("f:").map(str::to_string))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The auth info of the kubeconfig's current context, if it names one that exists.
fn current_user(kc: &kube::config::Kubeconfig) -> Option<&kube::config::AuthInfo> {
    let context = kc.current_context.as_deref()?;
    let user = kc
        .contexts
        .iter()
        .find(|c| c.name == context)?
        .context
        .as_ref()?
        .user
        .as_deref()?;
    kc.auth_infos
        .iter()
        .find(|a| a.name == user)?
        .auth_info
        .as_ref()
}

/// `Kind namespace/name` (or `Kind name`) of an object, for messages.
pub fn describe(obj: &Value) -> String {
    let kind = obj["kind"].as_str().unwrap_or("object");
    let name = obj["metadata"]["name"].as_str().unwrap_or("?");
    match obj["metadata"]["namespace"].as_str() {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}
