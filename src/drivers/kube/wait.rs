//! Waiting for the cluster: watch-driven waits for nodes, rollouts, webhook CA bundles and
//! Service endpoints, each with a timeout and an error naming what it waited for.

use super::*;

impl Kube {
    /// Re-check `check` on every watch event of `api` (after an initial check) until it holds,
    /// fails, or `timeout` passes.
    pub(super) async fn wait_for<K>(
        &self,
        api: Api<K>,
        params: ListParams,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&[K]) -> Result<bool, String>,
    ) -> Result<(), Error>
    where
        K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut cfg = watcher::Config::default();
        if let Some(f) = &params.field_selector {
            cfg = cfg.fields(f);
        }
        let mut events = watcher(api.clone(), cfg).boxed();
        loop {
            let items = api.list(&params).await.map_err(|e| self.api_err(e))?.items;
            match check(&items) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(reason) => {
                    return Err(Error::Failed {
                        what: what.to_string(),
                        reason,
                    });
                }
            }
            tokio::select! {
                _ = events.next() => {}
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(Error::Timeout { what: what.to_string(), timeout });
                }
            }
        }
    }

    /// Every node reports Ready.
    pub async fn wait_nodes_ready(&self, timeout: Duration) -> Result<(), Error> {
        let api: Api<Node> = Api::all(self.client.clone());
        self.wait_for(
            api,
            ListParams::default(),
            "nodes to be Ready",
            timeout,
            |nodes| {
                Ok(!nodes.is_empty()
                    && nodes.iter().all(|n| {
                        n.status
                            .as_ref()
                            .and_then(|s| s.conditions.as_ref())
                            .is_some_and(|cs| {
                                cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                            })
                    }))
            },
        )
        .await
    }

    /// A workload is rolled out by kubectl's rules (ISTIO.md, Restarts).
    pub async fn wait_rollout(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        timeout: Duration,
    ) -> Result<(), Error> {
        match kind {
            "StatefulSet" => {
                self.wait_one::<StatefulSet>(namespace, name, timeout, |s| Ok(statefulset_done(s)))
                    .await
            }
            "DaemonSet" => {
                self.wait_one::<DaemonSet>(namespace, name, timeout, |d| Ok(daemonset_done(d)))
                    .await
            }
            _ => {
                self.wait_one::<Deployment>(namespace, name, timeout, deployment_done)
                    .await
            }
        }
    }

    pub(super) async fn wait_one<K>(
        &self,
        namespace: &str,
        name: &str,
        timeout: Duration,
        done: fn(&K) -> Result<bool, String>,
    ) -> Result<(), Error>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Debug
            + Send
            + 'static,
        K::DynamicType: Default,
    {
        let what = format!(
            "{} {namespace}/{name} to roll out",
            K::kind(&K::DynamicType::default())
        );
        let params = ListParams::default().fields(&format!("metadata.name={name}"));
        let api = Api::<K>::namespaced(self.client.clone(), namespace);
        self.wait_for(api, params, &what, timeout, |items| match items.first() {
            Some(k) => done(k),
            None => Ok(false),
        })
        .await
    }

    /// A webhook configuration has a caBundle in every webhook (istiod patched it in).
    pub async fn wait_webhook_ca(&self, name: &str, timeout: Duration) -> Result<(), Error> {
        let api: Api<MutatingWebhookConfiguration> = Api::all(self.client.clone());
        let params = ListParams::default().fields(&format!("metadata.name={name}"));
        self.wait_for(
            api,
            params,
            &format!("a caBundle in {name}"),
            timeout,
            |items| {
                Ok(items.first().is_some_and(|h| {
                    h.webhooks.as_ref().is_some_and(|ws| {
                        !ws.is_empty()
                            && ws.iter().all(|w| {
                                w.client_config
                                    .ca_bundle
                                    .as_ref()
                                    .is_some_and(|b| !b.0.is_empty())
                            })
                    })
                }))
            },
        )
        .await
    }

    /// A Service has at least one ready endpoint: what webhooks and proxies reach.
    pub async fn wait_endpoints(
        &self,
        namespace: &str,
        service: &str,
        timeout: Duration,
    ) -> Result<(), Error> {
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), namespace);
        self.wait_for(
            api,
            ListParams::default().fields(&format!("metadata.name={service}")),
            &format!("a ready endpoint of Service {namespace}/{service}"),
            timeout,
            |items| {
                Ok(items.first().is_some_and(|e| {
                    e.subsets
                        .iter()
                        .flatten()
                        .any(|s| s.addresses.as_ref().is_some_and(|a| !a.is_empty()))
                }))
            },
        )
        .await
    }
}

/// kubectl's Deployment rule; `Err` when the rollout exceeded its progress deadline.
pub fn deployment_done(d: &Deployment) -> Result<bool, String> {
    let generation = d.metadata.generation.unwrap_or(0);
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(st) = &d.status else {
        return Ok(false);
    };
    if let Some(c) = st.conditions.iter().flatten().find(|c| {
        c.type_ == "Progressing" && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    }) {
        return Err(c
            .message
            .clone()
            .unwrap_or_else(|| "progress deadline exceeded".into()));
    }
    let updated = st.updated_replicas.unwrap_or(0);
    Ok(st.observed_generation.unwrap_or(0) >= generation
        && updated >= want
        && st.replicas.unwrap_or(0) <= updated
        && st.available_replicas.unwrap_or(0) >= updated)
}

/// kubectl's StatefulSet rule (RollingUpdate).
pub fn statefulset_done(s: &StatefulSet) -> bool {
    let generation = s.metadata.generation.unwrap_or(0);
    let spec = s.spec.as_ref();
    let want = spec.and_then(|s| s.replicas).unwrap_or(1);
    let partition = spec
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.rolling_update.as_ref())
        .and_then(|r| r.partition)
        .unwrap_or(0);
    let Some(st) = &s.status else {
        return false;
    };
    st.observed_generation.unwrap_or(0) >= generation
        && st.ready_replicas.unwrap_or(0) >= want
        && st.updated_replicas.unwrap_or(0) >= want - partition
}

/// kubectl's DaemonSet rule (RollingUpdate).
pub fn daemonset_done(d: &DaemonSet) -> bool {
    let generation = d.metadata.generation.unwrap_or(0);
    let Some(st) = &d.status else {
        return false;
    };
    st.observed_generation.unwrap_or(0) >= generation
        && st.updated_number_scheduled.unwrap_or(0) >= st.desired_number_scheduled
        && st.number_available.unwrap_or(0) >= st.desired_number_scheduled
}
