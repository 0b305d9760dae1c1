//! Waiting for the cluster: watch-driven waits for nodes, rollouts, webhook CA bundles and
//! Service endpoints, each with a timeout and an error naming what it waited for. A rollout
//! wait reports how far it is (replicas rolled out of those desired) to a callback the caller
//! passes, so operations can show it without the driver knowing who listens.

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
        mut check: impl FnMut(&[K]) -> Result<bool, WaitFailure>,
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
                        reason: Box::new(reason),
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
        self.wait_rollout_reporting(kind, namespace, name, timeout, &|_, _| {})
            .await
    }

    /// [`Kube::wait_rollout`], calling `progress(done, total)` with the workload's replicas
    /// rolled out of those it wants ([`Rollout::progress`]) from the first check that finds it
    /// not rolled out, then on every check whose counts differ: a workload rolled out at the
    /// first look had nothing to wait for, and a watch event that changes nothing in the
    /// counts calls nothing.
    pub async fn wait_rollout_reporting(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        timeout: Duration,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<(), Error> {
        match kind {
            "StatefulSet" => {
                self.wait_one::<StatefulSet>(namespace, name, timeout, progress)
                    .await
            }
            "DaemonSet" => {
                self.wait_one::<DaemonSet>(namespace, name, timeout, progress)
                    .await
            }
            _ => {
                self.wait_one::<Deployment>(namespace, name, timeout, progress)
                    .await
            }
        }
    }

    async fn wait_one<K>(
        &self,
        namespace: &str,
        name: &str,
        timeout: Duration,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<(), Error>
    where
        K: Rollout
            + Resource<Scope = k8s_openapi::NamespaceResourceScope>
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
        let mut reported = None;
        self.wait_for(api, params, &what, timeout, |items| {
            let Some(k) = items.first() else {
                return Ok(false);
            };
            let done = k.done();
            let now = k.progress();
            let waited = reported.is_some() || done != Ok(true);
            if waited && reported != Some(now) {
                reported = Some(now);
                progress(now.done, now.total);
            }
            done
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

/// Why a wait stopped before its timeout: what it waits for will not come by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitFailure {
    /// A Deployment's `Progressing` condition says `ProgressDeadlineExceeded`: its rollout made
    /// no progress within `spec.progressDeadlineSeconds`, where kubectl's rollout status gives
    /// up too.
    ProgressDeadlineExceeded {
        namespace: String,
        name: String,
        /// `spec.progressDeadlineSeconds`, if the Deployment has one.
        deadline_secs: Option<i32>,
        /// What the condition says (`ReplicaSet "web-5d4f" has timed out progressing.`).
        message: Option<String>,
    },
}

impl std::fmt::Display for WaitFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WaitFailure::ProgressDeadlineExceeded {
                namespace,
                name,
                deadline_secs,
                message,
            } => {
                f.write_str("its rollout made no progress within its progress deadline")?;
                if let Some(secs) = deadline_secs {
                    write!(f, " ({secs}s)")?;
                }
                // Kubernetes' messages are sentences; this one goes inside a longer line.
                if let Some(m) = message.as_deref().map(|m| m.trim().trim_end_matches('.'))
                    && !m.is_empty()
                {
                    write!(f, ": {m}")?;
                }
                write!(
                    f,
                    "; `kubectl -n {namespace} describe deployment {name}` and the events of its pods say why"
                )
            }
        }
    }
}

impl std::error::Error for WaitFailure {}

/// How far a rollout is: `done` of the `total` replicas the workload wants have the current
/// template and are available (ready, for a StatefulSet). `done == total` once the counts say
/// so, which is when kubectl's rule holds unless old replicas are still going away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replicas {
    pub done: u64,
    pub total: u64,
}

/// A workload kubectl's rollout status knows: whether it is rolled out, and how far it is.
pub trait Rollout {
    /// Rolled out by kubectl's rule; `Err` when it never will be by itself.
    fn done(&self) -> Result<bool, WaitFailure>;
    /// The replicas rolled out of those wanted.
    fn progress(&self) -> Replicas;
}

impl Rollout for Deployment {
    fn done(&self) -> Result<bool, WaitFailure> {
        deployment_done(self)
    }

    fn progress(&self) -> Replicas {
        let total = count(self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1));
        let done = match &self.status {
            Some(st) if observed(&self.metadata, st.observed_generation) => updated_available(
                st.updated_replicas.unwrap_or(0),
                st.replicas.unwrap_or(0),
                st.available_replicas.unwrap_or(0),
            ),
            _ => 0,
        };
        Replicas {
            done: done.min(total),
            total,
        }
    }
}

impl Rollout for StatefulSet {
    fn done(&self) -> Result<bool, WaitFailure> {
        Ok(statefulset_done(self))
    }

    /// Replicas below the partition keep their template and count once ready, as in
    /// kubectl's rule.
    fn progress(&self) -> Replicas {
        let spec = self.spec.as_ref();
        let total = count(spec.and_then(|s| s.replicas).unwrap_or(1));
        let partition = count(partition(self));
        let done = match &self.status {
            Some(st) if observed(&self.metadata, st.observed_generation) => {
                let updated = (count(st.updated_replicas.unwrap_or(0)) + partition).min(total);
                let not_ready =
                    count(st.replicas).saturating_sub(count(st.ready_replicas.unwrap_or(0)));
                updated.saturating_sub(not_ready)
            }
            _ => 0,
        };
        Replicas {
            done: done.min(total),
            total,
        }
    }
}

impl Rollout for DaemonSet {
    fn done(&self) -> Result<bool, WaitFailure> {
        Ok(daemonset_done(self))
    }

    /// Of `desiredNumberScheduled`: the nodes that run an updated, available pod.
    fn progress(&self) -> Replicas {
        let Some(st) = &self.status else {
            return Replicas { done: 0, total: 0 };
        };
        let total = count(st.desired_number_scheduled);
        let done = if observed(&self.metadata, st.observed_generation) {
            updated_available(
                st.updated_number_scheduled.unwrap_or(0),
                st.current_number_scheduled,
                st.number_available.unwrap_or(0),
            )
        } else {
            0
        };
        Replicas {
            done: done.min(total),
            total,
        }
    }
}

/// A count from the API (an `i32` that is never negative in practice).
fn count(n: i32) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Has the controller seen the latest spec? Counts from before say nothing about it.
fn observed(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    observed_generation: Option<i64>,
) -> bool {
    observed_generation.unwrap_or(0) >= meta.generation.unwrap_or(0)
}

/// Replicas that are updated and available, at least: the status counts updated and available
/// replicas apart, so each one that is not available is taken to be an updated one (the old
/// ones were available before the rollout began).
fn updated_available(updated: i32, replicas: i32, available: i32) -> u64 {
    let unavailable = count(replicas).saturating_sub(count(available));
    count(updated).saturating_sub(unavailable)
}

/// A StatefulSet's RollingUpdate partition: replicas below it keep their template.
fn partition(s: &StatefulSet) -> i32 {
    s.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.rolling_update.as_ref())
        .and_then(|r| r.partition)
        .unwrap_or(0)
}

/// kubectl's Deployment rule; `Err` when the rollout exceeded its progress deadline.
pub fn deployment_done(d: &Deployment) -> Result<bool, WaitFailure> {
    let generation = d.metadata.generation.unwrap_or(0);
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(st) = &d.status else {
        return Ok(false);
    };
    if let Some(c) = st.conditions.iter().flatten().find(|c| {
        c.type_ == "Progressing" && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    }) {
        return Err(WaitFailure::ProgressDeadlineExceeded {
            namespace: d.metadata.namespace.clone().unwrap_or_default(),
            name: d.metadata.name.clone().unwrap_or_default(),
            deadline_secs: d.spec.as_ref().and_then(|s| s.progress_deadline_seconds),
            message: c.message.clone(),
        });
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
    let want = s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(st) = &s.status else {
        return false;
    };
    st.observed_generation.unwrap_or(0) >= generation
        && st.ready_replicas.unwrap_or(0) >= want
        && st.updated_replicas.unwrap_or(0) >= want - partition(s)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(replicas: i32, generation: i64, status: Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "generation": generation},
            "spec": {"replicas": replicas, "progressDeadlineSeconds": 600,
                "selector": {}, "template": {}},
            "status": status,
        }))
        .expect("a Deployment")
    }

    fn progress(done: u64, total: u64) -> Replicas {
        Replicas { done, total }
    }

    #[test]
    fn a_deployment_counts_replicas_updated_and_available_of_those_it_wants() {
        let cases = [
            (
                "not seen by its controller yet",
                2,
                json!(null),
                progress(0, 3),
                false,
            ),
            (
                "a status of the spec before",
                2,
                json!({"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}),
                progress(0, 3),
                false,
            ),
            (
                "one surge replica starting beside three old ones",
                2,
                json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 1, "availableReplicas": 3}),
                progress(0, 3),
                false,
            ),
            (
                "one new replica available, an old one going",
                2,
                json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 1, "availableReplicas": 4}),
                progress(1, 3),
                false,
            ),
            (
                "all new, the last old one still there",
                2,
                json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 3, "availableReplicas": 4}),
                progress(3, 3),
                false,
            ),
            (
                "rolled out",
                2,
                json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}),
                progress(3, 3),
                true,
            ),
        ];
        for (case, generation, status, want, done) in cases {
            let d = deployment(3, generation, status);
            assert_eq!(d.progress(), want, "{case}");
            assert_eq!(d.done(), Ok(done), "{case}");
        }
    }

    #[test]
    fn a_deployment_past_its_progress_deadline_fails_saying_where_to_look() {
        let d = deployment(
            1,
            1,
            json!({"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1,
                "conditions": [{"type": "Progressing", "status": "False",
                    "reason": "ProgressDeadlineExceeded",
                    "message": "ReplicaSet \"web-5d4f\" has timed out progressing."}]}),
        );
        let failure = d.done().expect_err("past its deadline");
        assert_eq!(
            failure,
            WaitFailure::ProgressDeadlineExceeded {
                namespace: "shop".into(),
                name: "web".into(),
                deadline_secs: Some(600),
                message: Some("ReplicaSet \"web-5d4f\" has timed out progressing.".into()),
            }
        );
        let error = Error::Failed {
            what: "Deployment shop/web to roll out".into(),
            reason: Box::new(failure),
        };
        assert_eq!(
            error.to_string(),
            "gave up waiting for Deployment shop/web to roll out: its rollout made no progress within its progress deadline (600s): ReplicaSet \"web-5d4f\" has timed out progressing; `kubectl -n shop describe deployment web` and the events of its pods say why"
        );
    }

    #[test]
    fn a_statefulset_counts_replicas_below_its_partition_once_ready() {
        let sts = |partition: i32, status: Value| -> StatefulSet {
            serde_json::from_value(json!({
                "metadata": {"name": "db", "generation": 1},
                "spec": {"replicas": 3, "serviceName": "db", "selector": {}, "template": {},
                    "updateStrategy": {"rollingUpdate": {"partition": partition}}},
                "status": status,
            }))
            .expect("a StatefulSet")
        };
        let cases = [
            (
                "the highest ordinal updated, not ready yet",
                0,
                json!({"observedGeneration": 1, "replicas": 3, "readyReplicas": 2, "updatedReplicas": 1}),
                progress(0, 3),
                false,
            ),
            (
                "two updated and ready",
                0,
                json!({"observedGeneration": 1, "replicas": 3, "readyReplicas": 3, "updatedReplicas": 2}),
                progress(2, 3),
                false,
            ),
            (
                "updated down to the partition",
                1,
                json!({"observedGeneration": 1, "replicas": 3, "readyReplicas": 3, "updatedReplicas": 2}),
                progress(3, 3),
                true,
            ),
        ];
        for (case, partition, status, want, done) in cases {
            let s = sts(partition, status);
            assert_eq!(s.progress(), want, "{case}");
            assert_eq!(s.done(), Ok(done), "{case}");
        }
    }

    #[test]
    fn a_daemonset_counts_nodes_with_an_updated_available_pod_of_those_desired() {
        let ds = |status: Value| -> DaemonSet {
            serde_json::from_value(json!({
                "metadata": {"name": "ztunnel", "generation": 2},
                "spec": {"selector": {}, "template": {}},
                "status": status,
            }))
            .expect("a DaemonSet")
        };
        let status = |updated: i32, available: i32| {
            json!({"observedGeneration": 2, "desiredNumberScheduled": 2,
                "currentNumberScheduled": 2, "numberMisscheduled": 0, "numberReady": available,
                "updatedNumberScheduled": updated, "numberAvailable": available})
        };
        let cases = [
            ("no status yet", json!(null), progress(0, 0), false),
            (
                "one node's new pod starting",
                status(1, 1),
                progress(0, 2),
                false,
            ),
            (
                "one node's new pod available",
                status(1, 2),
                progress(1, 2),
                false,
            ),
            ("rolled out", status(2, 2), progress(2, 2), true),
        ];
        for (case, status, want, done) in cases {
            let d = ds(status);
            assert_eq!(d.progress(), want, "{case}");
            assert_eq!(d.done(), Ok(done), "{case}");
        }
    }
}
