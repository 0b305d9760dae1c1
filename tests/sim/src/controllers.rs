//! The controllers of a simulated cluster: node readiness, the pod lifecycle, Deployments (via
//! ReplicaSets), StatefulSets, DaemonSets and Jobs rolling pods by their strategies, Service
//! addresses and Endpoints, PodDisruptionBudget status, garbage collection of owned objects,
//! and istiod patching the caBundle into its webhooks.
//!
//! Status fields follow what kubectl's rollout-status rules read (ISTIO.md, Restarts).
//! Controllers write only when something changed, so a settled cluster makes no events.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::knobs::Knobs;
use crate::selector::labels_of;
use crate::store::{ApiError, Resource, Store, res};

/// The fake CA bundle istiod patches into its webhooks.
pub const CA_BUNDLE: &str =
    "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCnNpbQotLS0tLUVORCBDRVJUSUZJQ0FURS0tLS0tCg==";

/// How long a controller waits before retrying a pod it could not create.
const CREATE_BACKOFF: Duration = Duration::from_millis(200);
/// How often a crash-looping container restarts in the sim.
const CRASH_PERIOD: Duration = Duration::from_secs(2);

fn s_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn name_of(v: &Value) -> &str {
    s_at(v, "/metadata/name")
}

fn ns_of(v: &Value) -> &str {
    s_at(v, "/metadata/namespace")
}

fn uid_of(v: &Value) -> &str {
    s_at(v, "/metadata/uid")
}

/// The uid of the controller that owns an object, if any.
fn owner_uid(v: &Value) -> Option<&str> {
    v.pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
        .and_then(|o| o.get("uid")?.as_str())
}

fn owner_kind(v: &Value) -> &str {
    v.pointer("/metadata/ownerReferences/0/kind")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Has a pod been asked to stop? It stays, not Ready, until its containers have exited.
pub fn terminating(pod: &Value) -> bool {
    pod.pointer("/metadata/deletionTimestamp").is_some()
}

/// Is a pod Ready (condition `Ready=True`)?
pub fn pod_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

fn replicas(obj: &Value) -> i64 {
    obj.pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

/// A short, stable hash of a pod template (what `pod-template-hash` is to Kubernetes).
pub fn template_hash(template: &Value) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in template.to_string().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // Kubernetes' safe alphabet: no vowels, no digits that look like letters.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..10)
        .map(|i| ALPHABET[((h >> (i * 6)) % ALPHABET.len() as u64) as usize] as char)
        .collect()
}

/// `maxSurge`/`maxUnavailable`: an integer or a percentage of `total`.
pub fn int_or_percent(v: Option<&Value>, default: &str, total: i64, round_up: bool) -> i64 {
    let text = match v {
        Some(Value::Number(n)) => return n.as_i64().unwrap_or(0),
        Some(Value::String(s)) => s.as_str(),
        _ => default,
    };
    match text.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) {
        Some(p) if round_up => (p * total + 99) / 100,
        Some(p) => p * total / 100,
        None => text.parse().unwrap_or(0),
    }
}

/// The InternalIP of the `i`th node (servers first), on k3d's network; the API's serving
/// certificate lists the servers' (`pki`).
pub fn node_ip(i: usize) -> String {
    format!("172.18.0.{}", i + 2)
}

/// Controller state that is not part of any object.
#[derive(Debug)]
pub struct Controllers {
    boot: Instant,
    /// When each pod (by uid) was scheduled.
    scheduled: HashMap<String, Instant>,
    /// When the kubelet began stopping each terminating pod (by uid).
    stopping: HashMap<String, Instant>,
    /// Per Service (namespace, name): Endpoints changes not yet propagated, oldest first.
    endpoint_changes: HashMap<(String, String), std::collections::VecDeque<(Instant, Value)>>,
    /// Per workload uid: last progress signature and when it changed.
    progress: HashMap<String, (String, Instant)>,
    /// Per owner uid: no pod creation before this instant.
    backoff: HashMap<String, Instant>,
    next_node: usize,
    next_ip: u32,
    next_suffix: u64,
    /// Node names to create at start, servers first.
    nodes: Vec<(String, &'static str)>,
    wake: Option<Instant>,
}

impl Controllers {
    /// Controllers for a cluster whose nodes are `servers` servers and `agents` agents.
    pub fn new(cluster: &str, servers: usize, agents: usize) -> Self {
        let mut nodes = Vec::new();
        for i in 0..servers.max(1) {
            nodes.push((format!("k3d-{cluster}-server-{i}"), "server"));
        }
        for i in 0..agents {
            nodes.push((format!("k3d-{cluster}-agent-{i}"), "agent"));
        }
        Self {
            boot: Instant::now(),
            scheduled: HashMap::new(),
            stopping: HashMap::new(),
            endpoint_changes: HashMap::new(),
            progress: HashMap::new(),
            backoff: HashMap::new(),
            next_node: 0,
            next_ip: 0,
            next_suffix: 0,
            nodes,
            wake: None,
        }
    }

    fn wake_at(&mut self, at: Instant) {
        self.wake = Some(self.wake.map_or(at, |w| w.min(at)));
    }

    /// Run every controller once; returns when they next need to run without any change.
    pub fn reconcile(&mut self, s: &mut Store, k: &Knobs) -> Option<Instant> {
        let now = Instant::now();
        self.wake = None;
        self.nodes(s, k, now);
        self.namespaces(s);
        self.deployments(s);
        self.replicasets(s, now);
        self.statefulsets(s, now);
        self.daemonsets(s, now);
        self.jobs(s, now);
        self.gc(s);
        self.pods(s, k, now);
        self.workload_status(s, now);
        self.services(s, k, now);
        self.pdbs(s);
        self.ca_bundles(s, k);
        self.wake
    }

    /// The k3s system namespaces and deployments a new cluster has.
    pub fn bootstrap(&mut self, s: &mut Store) {
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let _ = s.create(&res("namespaces"), "", json!({"metadata": {"name": ns}}));
        }
        for (name, app) in [
            ("coredns", "kube-dns"),
            ("local-path-provisioner", "local-path-provisioner"),
            ("metrics-server", "metrics-server"),
        ] {
            let labels = json!({"k8s-app": app});
            let _ = s.create(
                &res("deployments"),
                "kube-system",
                json!({
                    "metadata": {"name": name, "labels": labels},
                    "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                        "template": {"metadata": {"labels": labels},
                            "spec": {"containers": [{"name": name, "image": format!("rancher/mirrored-{name}:sim")}]}}},
                }),
            );
        }
        let _ = s.create(
            &res("services"),
            "kube-system",
            json!({"metadata": {"name": "kube-dns", "labels": {"k8s-app": "kube-dns"}},
                "spec": {"selector": {"k8s-app": "kube-dns"}, "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}}),
        );
    }

    fn nodes(&mut self, s: &mut Store, k: &Knobs, now: Instant) {
        let ready_at = self.boot + Duration::from_millis(k.node_ready_ms);
        let ready = now >= ready_at;
        if !ready {
            self.wake_at(ready_at);
        }
        let nodes = self.nodes.clone();
        for (i, (name, role)) in nodes.iter().enumerate() {
            let status = if ready { "True" } else { "False" };
            let reason = if ready {
                "KubeletReady"
            } else {
                "KubeletNotReady"
            };
            let mut labels = json!({"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"});
            if *role == "server" {
                labels["node-role.kubernetes.io/control-plane"] = json!("true");
                labels["node-role.kubernetes.io/master"] = json!("true");
            }
            let node = json!({
                "metadata": {"name": name, "labels": labels},
                "spec": {"podCIDR": format!("10.42.{i}.0/24")},
                "status": {
                    "conditions": [{"type": "Ready", "status": status, "reason": reason}],
                    "addresses": [{"type": "InternalIP", "address": node_ip(i)},
                        {"type": "Hostname", "address": name}],
                    "nodeInfo": {"kubeletVersion": crate::api::GIT_VERSION, "containerRuntimeVersion": "containerd://2.0.5-k3s2",
                        "osImage": "K3s v1.33.4+k3s1", "architecture": "amd64", "operatingSystem": "linux"},
                },
            });
            match s.get(&res("nodes"), "", name) {
                Err(_) => {
                    let _ = s.create(&res("nodes"), "", node);
                }
                Ok(old) if old.pointer("/status/conditions/0/status") != Some(&json!(status)) => {
                    let mut new = old.clone();
                    new["status"] = node["status"].clone();
                    let _ = s.update(&res("nodes"), "", name, new);
                }
                Ok(_) => {}
            }
        }
    }

    /// The namespace controller: a `Terminating` namespace is emptied (its pods stop
    /// gracefully), then removed.
    fn namespaces(&mut self, s: &mut Store) {
        for ns in s.all(&res("namespaces"), "") {
            if ns.pointer("/metadata/deletionTimestamp").is_none() {
                continue;
            }
            let name = name_of(&ns).to_string();
            let contents = s.contents(&name);
            if contents.is_empty() {
                let _ = s.remove(&res("namespaces"), "", &name);
                continue;
            }
            for (r, n) in contents {
                let _ = s.delete(&r, &name, &n);
            }
        }
    }

    fn ready_nodes(s: &Store) -> Vec<String> {
        s.all(&res("nodes"), "")
            .iter()
            .filter(|n| {
                n.pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
            })
            .map(|n| name_of(n).to_string())
            .collect()
    }

    /// Create one pod from a template for an owner; on refusal, record a `FailedCreate` event.
    #[allow(clippy::too_many_arguments)]
    fn create_pod(
        &mut self,
        s: &mut Store,
        now: Instant,
        owner: &Value,
        template: &Value,
        name: Option<String>,
        extra_labels: &[(&str, String)],
        node: Option<&str>,
    ) -> bool {
        let owner_id = uid_of(owner).to_string();
        if self.backoff.get(&owner_id).is_some_and(|t| *t > now) {
            return false;
        }
        let ns = ns_of(owner).to_string();
        let mut pod = json!({"metadata": template.get("metadata").cloned().unwrap_or(json!({})),
            "spec": template.get("spec").cloned().unwrap_or(json!({}))});
        self.next_suffix += 1;
        let generated = format!(
            "{}-{}",
            name_of(owner),
            &template_hash(&json!(self.next_suffix))[..5]
        );
        pod["metadata"]["name"] = json!(name.unwrap_or(generated));
        for (k, v) in extra_labels {
            pod["metadata"]["labels"][*k] = json!(v);
        }
        pod["metadata"]["ownerReferences"] = json!([{
            "apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": name_of(owner),
            "uid": owner_id, "controller": true, "blockOwnerDeletion": true,
        }]);
        if let Some(n) = node {
            pod["spec"]["nodeName"] = json!(n);
        }
        match s.create(&res("pods"), &ns, pod) {
            Ok(_) => {
                self.backoff.remove(&owner_id);
                true
            }
            Err(e) => {
                self.backoff.insert(owner_id, now + CREATE_BACKOFF);
                self.wake_at(now + CREATE_BACKOFF);
                record_failure(s, owner, &e);
                false
            }
        }
    }

    fn owned<'a>(pods: &'a [Value], owner: &Value) -> Vec<&'a Value> {
        let uid = uid_of(owner);
        pods.iter().filter(|p| owner_uid(p) == Some(uid)).collect()
    }

    /// An owner's pods that are not terminating: what ReplicaSets, DaemonSets and status
    /// counts count (Kubernetes leaves terminating pods out).
    fn active<'a>(pods: &'a [Value], owner: &Value) -> Vec<&'a Value> {
        let mut v = Self::owned(pods, owner);
        v.retain(|p| !terminating(p));
        v
    }

    fn deployments(&mut self, s: &mut Store) {
        let rs_res = res("replicasets");
        for d in s.all(&res("deployments"), "") {
            if d.pointer("/spec/paused").and_then(Value::as_bool) == Some(true) {
                continue;
            }
            let (ns, name) = (ns_of(&d).to_string(), name_of(&d).to_string());
            let want = replicas(&d);
            let template = d.pointer("/spec/template").cloned().unwrap_or(json!({}));
            let hash = template_hash(&template);
            let all_rs = s.all(&rs_res, &ns);
            let mut rss: Vec<Value> = Self::owned(&all_rs, &d).into_iter().cloned().collect();
            let new_name = format!("{name}-{hash}");
            let new = match rss.iter().position(|r| name_of(r) == new_name) {
                Some(i) => rss.remove(i),
                None => {
                    let mut tpl = template.clone();
                    tpl["metadata"]["labels"]["pod-template-hash"] = json!(hash);
                    let mut selector = d.pointer("/spec/selector").cloned().unwrap_or(json!({}));
                    selector["matchLabels"]["pod-template-hash"] = json!(hash);
                    let revision = rss.len() + 1;
                    let rs = json!({
                        "metadata": {"name": new_name, "labels": tpl["metadata"]["labels"],
                            "annotations": {"deployment.kubernetes.io/revision": revision.to_string()},
                            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name,
                                "uid": uid_of(&d), "controller": true, "blockOwnerDeletion": true}]},
                        "spec": {"replicas": 0, "selector": selector, "template": tpl},
                    });
                    match s.create(&rs_res, &ns, rs) {
                        Ok(rs) => rs,
                        Err(_) => continue,
                    }
                }
            };
            let pods = s.all(&res("pods"), &ns);
            let ready_of = |rs: &Value| {
                Self::owned(&pods, rs)
                    .iter()
                    .filter(|p| pod_ready(p))
                    .count() as i64
            };
            let mut sizes: Vec<(Value, i64)> = Vec::new();
            let recreate = s_at(&d, "/spec/strategy/type") == "Recreate";
            let mut new_size = replicas(&new);
            if recreate {
                for old in &rss {
                    sizes.push((old.clone(), 0));
                }
                let old_pods = rss
                    .iter()
                    .map(|r| Self::owned(&pods, r).len())
                    .sum::<usize>();
                new_size = if old_pods == 0 { want } else { 0 };
            } else {
                let ru = d.pointer("/spec/strategy/rollingUpdate");
                let surge = int_or_percent(ru.and_then(|r| r.get("maxSurge")), "25%", want, true);
                let mut unav =
                    int_or_percent(ru.and_then(|r| r.get("maxUnavailable")), "25%", want, false);
                if surge == 0 && unav == 0 {
                    unav = 1;
                }
                let old_total: i64 = rss.iter().map(replicas).sum();
                if new_size > want {
                    new_size = want;
                } else if new_size < want {
                    let room = want + surge - old_total - new_size;
                    if room > 0 {
                        new_size += room.min(want - new_size);
                    }
                }
                let ready_total: i64 = ready_of(&new) + rss.iter().map(ready_of).sum::<i64>();
                let mut budget = (ready_total - (want - unav)).max(0);
                for old in &rss {
                    let size = replicas(old);
                    let unhealthy = (size - ready_of(old)).max(0);
                    let cut = unhealthy + budget.min(size - unhealthy);
                    budget -= cut - unhealthy;
                    sizes.push((old.clone(), size - cut));
                }
            }
            sizes.push((new, new_size));
            for (rs, size) in sizes {
                if replicas(&rs) != size {
                    let mut rs = rs;
                    rs["spec"]["replicas"] = json!(size);
                    let n = name_of(&rs).to_string();
                    let _ = s.update(&rs_res, &ns, &n, rs);
                }
            }
        }
    }

    fn replicasets(&mut self, s: &mut Store, now: Instant) {
        for rs in s.all(&res("replicasets"), "") {
            let ns = ns_of(&rs).to_string();
            let pods = s.all(&res("pods"), &ns);
            let mut mine: Vec<Value> = Self::active(&pods, &rs).into_iter().cloned().collect();
            let want = replicas(&rs) as usize;
            let template = rs.pointer("/spec/template").cloned().unwrap_or(json!({}));
            for _ in mine.len()..want {
                if !self.create_pod(s, now, &rs, &template, None, &[], None) {
                    break;
                }
            }
            if mine.len() > want {
                // Unready pods go first, then the newest.
                mine.sort_by_key(|p| (pod_ready(p), std::cmp::Reverse(rv(p))));
                for p in mine.iter().take(mine.len() - want) {
                    let _ = s.delete(&res("pods"), &ns, name_of(p));
                }
            }
        }
    }

    fn statefulsets(&mut self, s: &mut Store, now: Instant) {
        for sts in s.all(&res("statefulsets"), "") {
            let (ns, name) = (ns_of(&sts).to_string(), name_of(&sts).to_string());
            let want = replicas(&sts);
            let template = sts.pointer("/spec/template").cloned().unwrap_or(json!({}));
            let update_rev = format!("{name}-{}", template_hash(&template));
            let pods = s.all(&res("pods"), &ns);
            let mine = Self::owned(&pods, &sts);
            let by_ordinal: BTreeMap<i64, &Value> = mine
                .iter()
                .filter_map(|p| {
                    let o = name_of(p).rsplit('-').next()?.parse().ok()?;
                    Some((o, *p))
                })
                .collect();
            let ordered = s_at(&sts, "/spec/podManagementPolicy") != "Parallel";
            // Scale down from the highest ordinal.
            for (o, p) in by_ordinal.iter().rev() {
                if *o >= want {
                    let _ = s.delete(&res("pods"), &ns, name_of(p));
                    if ordered {
                        break;
                    }
                }
            }
            // Create missing ordinals; ordered: only when every lower one is Ready.
            for o in 0..want {
                if by_ordinal.contains_key(&o) {
                    continue;
                }
                if ordered && (0..o).any(|lo| !by_ordinal.get(&lo).is_some_and(|p| pod_ready(p))) {
                    break;
                }
                let pod_name = format!("{name}-{o}");
                let labels = [
                    ("controller-revision-hash", update_rev.clone()),
                    ("statefulset.kubernetes.io/pod-name", pod_name.clone()),
                    ("apps.kubernetes.io/pod-index", o.to_string()),
                ];
                if !self.create_pod(s, now, &sts, &template, Some(pod_name), &labels, None)
                    || ordered
                {
                    break;
                }
            }
            // Rolling update: replace the highest outdated ordinal ≥ partition, one at a time,
            // only while every pod is Ready.
            if s_at(&sts, "/spec/updateStrategy/type") != "OnDelete" {
                let partition = sts
                    .pointer("/spec/updateStrategy/rollingUpdate/partition")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                let all_ready =
                    by_ordinal.len() as i64 >= want && by_ordinal.values().all(|p| pod_ready(p));
                if all_ready
                    && let Some((_, p)) = by_ordinal.iter().rev().find(|(o, p)| {
                        **o >= partition && **o < want && pod_revision(p) != update_rev
                    })
                {
                    let _ = s.delete(&res("pods"), &ns, name_of(p));
                }
            }
        }
    }

    fn daemonsets(&mut self, s: &mut Store, now: Instant) {
        let nodes = Self::ready_nodes(s);
        for ds in s.all(&res("daemonsets"), "") {
            let ns = ns_of(&ds).to_string();
            let template = ds.pointer("/spec/template").cloned().unwrap_or(json!({}));
            let hash = template_hash(&template);
            let pods = s.all(&res("pods"), &ns);
            // A node whose pod is terminating gets its new pod at once, as Kubernetes does.
            let mine = Self::active(&pods, &ds);
            for node in &nodes {
                if !mine.iter().any(|p| s_at(p, "/spec/nodeName") == node) {
                    let labels = [("controller-revision-hash", hash.clone())];
                    if !self.create_pod(s, now, &ds, &template, None, &labels, Some(node)) {
                        break;
                    }
                }
            }
            if s_at(&ds, "/spec/updateStrategy/type") == "OnDelete" {
                continue;
            }
            let max_unav = int_or_percent(
                ds.pointer("/spec/updateStrategy/rollingUpdate/maxUnavailable"),
                "1",
                nodes.len() as i64,
                true,
            )
            .max(1);
            let unavailable = nodes.len() as i64
                - mine
                    .iter()
                    .filter(|p| pod_ready(p) && pod_revision(p) == hash)
                    .count() as i64
                - mine
                    .iter()
                    .filter(|p| pod_ready(p) && pod_revision(p) != hash)
                    .count() as i64;
            let mut can = max_unav - unavailable.max(0);
            let mut old: Vec<&&Value> = mine.iter().filter(|p| pod_revision(p) != hash).collect();
            old.sort_by_key(|p| pod_ready(p));
            for p in old {
                if can <= 0 && pod_ready(p) {
                    break;
                }
                let _ = s.delete(&res("pods"), &ns, name_of(p));
                if pod_ready(p) {
                    can -= 1;
                }
            }
        }
    }

    fn jobs(&mut self, s: &mut Store, now: Instant) {
        for job in s.all(&res("jobs"), "") {
            let ns = ns_of(&job).to_string();
            let pods = s.all(&res("pods"), &ns);
            let mine = Self::owned(&pods, &job);
            let succeeded = mine
                .iter()
                .filter(|p| s_at(p, "/status/phase") == "Succeeded")
                .count();
            if mine.is_empty() && job.pointer("/status/succeeded").is_none() {
                let mut template = job.pointer("/spec/template").cloned().unwrap_or(json!({}));
                if template.pointer("/spec/restartPolicy").is_none() {
                    template["spec"]["restartPolicy"] = json!("Never");
                }
                let labels = [("job-name", name_of(&job).to_string())];
                self.create_pod(s, now, &job, &template, None, &labels, None);
            }
            let active = mine.len() - succeeded;
            let mut status = json!({"active": active});
            if succeeded > 0 {
                status = json!({"succeeded": succeeded, "conditions": [{"type": "Complete", "status": "True"}]});
            }
            set_status(s, &res("jobs"), &job, status);
        }
    }

    /// Delete objects whose controlling owner is gone (background cascading deletion).
    fn gc(&mut self, s: &mut Store) {
        let mut live: HashSet<String> = HashSet::new();
        for plural in [
            "deployments",
            "replicasets",
            "statefulsets",
            "daemonsets",
            "jobs",
        ] {
            live.extend(
                s.all(&res(plural), "")
                    .iter()
                    .map(|o| uid_of(o).to_string()),
            );
        }
        for plural in ["replicasets", "pods"] {
            for o in s.all(&res(plural), "") {
                if let Some(owner) = owner_uid(&o)
                    && !live.contains(owner)
                {
                    let _ = s.delete(&res(plural), ns_of(&o), name_of(&o));
                }
            }
        }
        let known: HashSet<String> = s
            .all(&res("pods"), "")
            .iter()
            .map(|p| uid_of(p).to_string())
            .collect();
        self.scheduled.retain(|uid, _| known.contains(uid));
        self.stopping.retain(|uid, _| known.contains(uid));
    }

    fn pods(&mut self, s: &mut Store, k: &Knobs, now: Instant) {
        let nodes = Self::ready_nodes(s);
        for mut pod in s.all(&res("pods"), "") {
            let before = pod.clone();
            let uid = uid_of(&pod).to_string();
            if terminating(&pod) {
                self.stop(s, k, now, &pod);
                continue;
            }
            if s_at(&pod, "/status/phase") == "Succeeded" {
                continue;
            }
            if s_at(&pod, "/spec/nodeName").is_empty() {
                if nodes.is_empty() {
                    pod["status"] = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                        "reason": "Unschedulable", "message": "0/1 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }."}]});
                    put(s, &res("pods"), &before, pod);
                    continue;
                }
                self.next_node += 1;
                pod["spec"]["nodeName"] = json!(nodes[self.next_node % nodes.len()]);
            }
            let started = *self.scheduled.entry(uid).or_insert(now);
            let images: Vec<String> = containers(&pod)
                .map(|c| s_at(c, "/image").to_string())
                .collect();
            let image_refs: Vec<&str> = images.iter().map(String::as_str).collect();
            let revision = s_at(&pod, "/metadata/annotations/istio.io~1rev").to_string();
            let start_at = started
                + Duration::from_millis(k.pod_start_ms + k.extra_start_ms(&image_refs, &revision));
            let ip = match pod.pointer("/status/podIP").and_then(Value::as_str) {
                Some(ip) => ip.to_string(),
                None => {
                    self.next_ip += 1;
                    format!("10.42.{}.{}", self.next_ip / 250, self.next_ip % 250 + 2)
                }
            };
            let job_like =
                s_at(&pod, "/spec/restartPolicy") == "Never" || owner_kind(&pod) == "Job";
            // A pod whose containers started stays started: a slower start (knobs changed
            // meanwhile) never takes a running pod back to Pending.
            let started_already = s_at(&before, "/status/phase") == "Running";
            let status = if now < start_at && !started_already {
                self.wake_at(start_at);
                pod_status(&pod, "Pending", &ip, |_| ContainerState::Creating)
            } else if k.crashes(&image_refs, &revision) {
                let restarts = (now - start_at).as_secs() / CRASH_PERIOD.as_secs() + 1;
                self.wake_at(start_at + CRASH_PERIOD * restarts as u32);
                let crashing = images
                    .iter()
                    .position(|i| k.crashloop.iter().any(|m| i.contains(m.as_str())))
                    .unwrap_or(0);
                pod_status(&pod, "Running", &ip, |i| {
                    if i == crashing {
                        ContainerState::Crashing(restarts)
                    } else {
                        ContainerState::Running
                    }
                })
            } else if job_like {
                pod_status(&pod, "Succeeded", &ip, |_| ContainerState::Completed)
            } else {
                pod_status(&pod, "Running", &ip, |_| ContainerState::Running)
            };
            let keep_start = before.pointer("/status/startTime").cloned();
            pod["status"] = status;
            if let Some(t) = keep_start {
                pod["status"]["startTime"] = t;
            }
            put(s, &res("pods"), &before, pod);
        }
    }

    /// The kubelet stopping a terminating pod: not Ready at once, then gone once its
    /// containers have exited (`terminationMs`; a pod with an Istio proxy lives at least as
    /// long as the proxy drains), and never later than its grace period.
    fn stop(&mut self, s: &mut Store, k: &Knobs, now: Instant, pod: &Value) {
        let since = *self.stopping.entry(uid_of(pod).to_string()).or_insert(now);
        let grace_ms = pod
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_u64)
            .unwrap_or(30)
            * 1000;
        let proxy = containers(pod).any(|c| c["name"] == "istio-proxy");
        let exit_ms = if proxy {
            k.termination_ms.max(k.termination_drain_ms)
        } else {
            k.termination_ms
        };
        let gone_at = since + Duration::from_millis(exit_ms.min(grace_ms));
        if now >= gone_at {
            let _ = s.remove(&res("pods"), ns_of(pod), name_of(pod));
            return;
        }
        self.wake_at(gone_at);
        let mut new = pod.clone();
        if let Some(cs) = new
            .pointer_mut("/status/conditions")
            .and_then(Value::as_array_mut)
        {
            for c in cs.iter_mut() {
                if c["type"] == "Ready" || c["type"] == "ContainersReady" {
                    c["status"] = json!("False");
                }
            }
        }
        put(s, &res("pods"), pod, new);
    }

    fn progressed(&mut self, obj: &Value, signature: String, now: Instant) -> Instant {
        let uid = uid_of(obj).to_string();
        match self.progress.get(&uid) {
            Some((sig, at)) if *sig == signature => *at,
            _ => {
                self.progress.insert(uid, (signature, now));
                now
            }
        }
    }

    fn workload_status(&mut self, s: &mut Store, now: Instant) {
        let all_pods = s.all(&res("pods"), "");
        let rss = s.all(&res("replicasets"), "");
        // Index once: owner uid → what it owns.
        let mut pods_of: HashMap<&str, Vec<&Value>> = HashMap::new();
        for p in all_pods.iter().filter(|p| !terminating(p)) {
            if let Some(o) = owner_uid(p) {
                pods_of.entry(o).or_default().push(p);
            }
        }
        let mut rss_of: HashMap<&str, Vec<&Value>> = HashMap::new();
        for r in &rss {
            if let Some(o) = owner_uid(r) {
                rss_of.entry(o).or_default().push(r);
            }
        }
        let owned = |o: &Value| pods_of.get(uid_of(o)).cloned().unwrap_or_default();
        for rs in &rss {
            let mine = owned(rs);
            let ready = mine.iter().filter(|p| pod_ready(p)).count();
            let mut status = json!({"replicas": mine.len(), "fullyLabeledReplicas": mine.len(),
                "readyReplicas": ready, "availableReplicas": ready,
                "observedGeneration": rs["metadata"]["generation"]});
            if let Some(failure) = last_failure(s, rs) {
                status["conditions"] = json!([{"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": failure}]);
            }
            set_status(s, &res("replicasets"), rs, status);
        }
        for d in s.all(&res("deployments"), "") {
            let want = replicas(&d);
            let hash = template_hash(d.pointer("/spec/template").unwrap_or(&Value::Null));
            let new_name = format!("{}-{hash}", name_of(&d));
            let mine: Vec<&Value> = rss_of.get(uid_of(&d)).cloned().unwrap_or_default();
            let pods: Vec<&Value> = mine.iter().flat_map(|r| owned(r)).collect();
            let updated = mine
                .iter()
                .filter(|r| name_of(r) == new_name)
                .map(|r| owned(r).len())
                .sum::<usize>() as i64;
            let ready = pods.iter().filter(|p| pod_ready(p)).count() as i64;
            let total = pods.len() as i64;
            let unav = int_or_percent(
                d.pointer("/spec/strategy/rollingUpdate/maxUnavailable"),
                "25%",
                want,
                false,
            );
            let complete = updated >= want && total <= want && ready >= want;
            let deadline = Duration::from_secs(
                d.pointer("/spec/progressDeadlineSeconds")
                    .and_then(Value::as_u64)
                    .unwrap_or(600),
            );
            let since = self.progressed(
                &d,
                format!("{updated}/{ready}/{total}/{}", d["metadata"]["generation"]),
                now,
            );
            let progressing = if complete {
                json!({"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                    "message": format!("ReplicaSet \"{new_name}\" has successfully progressed.")})
            } else if now.duration_since(since) >= deadline {
                json!({"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                    "message": format!("ReplicaSet \"{new_name}\" has timed out progressing.")})
            } else {
                self.wake_at(since + deadline);
                json!({"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
                    "message": format!("ReplicaSet \"{new_name}\" is progressing.")})
            };
            let available = if ready >= want - unav {
                json!({"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                    "message": "Deployment has minimum availability."})
            } else {
                json!({"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable",
                    "message": "Deployment does not have minimum availability."})
            };
            let mut conditions = vec![available, progressing];
            if let Some(msg) = mine.iter().find_map(|r| last_failure(s, r)) {
                conditions.push(json!({"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": msg}));
            }
            let status = json!({
                "observedGeneration": d["metadata"]["generation"], "replicas": total,
                "updatedReplicas": updated, "readyReplicas": ready, "availableReplicas": ready,
                "unavailableReplicas": (want - ready).max(0), "conditions": conditions,
            });
            set_status(s, &res("deployments"), &d, status);
        }
        for sts in s.all(&res("statefulsets"), "") {
            let template = sts.pointer("/spec/template").unwrap_or(&Value::Null);
            let update_rev = format!("{}-{}", name_of(&sts), template_hash(template));
            let mine = owned(&sts);
            let ready = mine.iter().filter(|p| pod_ready(p)).count();
            let updated = mine
                .iter()
                .filter(|p| pod_revision(p) == update_rev)
                .count();
            let old_current = s_at(&sts, "/status/currentRevision").to_string();
            let current_rev = if updated == mine.len() && mine.len() as i64 >= replicas(&sts)
                || old_current.is_empty()
            {
                update_rev.clone()
            } else {
                old_current
            };
            let current = mine
                .iter()
                .filter(|p| pod_revision(p) == current_rev)
                .count();
            let status = json!({
                "observedGeneration": sts["metadata"]["generation"], "replicas": mine.len(),
                "readyReplicas": ready, "availableReplicas": ready, "currentReplicas": current,
                "updatedReplicas": updated, "currentRevision": current_rev, "updateRevision": update_rev,
            });
            set_status(s, &res("statefulsets"), &sts, status);
        }
        let nodes = Self::ready_nodes(s).len();
        for ds in s.all(&res("daemonsets"), "") {
            let hash = template_hash(ds.pointer("/spec/template").unwrap_or(&Value::Null));
            let mine = owned(&ds);
            let ready = mine.iter().filter(|p| pod_ready(p)).count();
            let updated = mine.iter().filter(|p| pod_revision(p) == hash).count();
            let status = json!({
                "observedGeneration": ds["metadata"]["generation"], "desiredNumberScheduled": nodes,
                "currentNumberScheduled": mine.len(), "updatedNumberScheduled": updated,
                "numberReady": ready, "numberAvailable": ready,
                "numberUnavailable": nodes.saturating_sub(ready), "numberMisscheduled": 0,
            });
            set_status(s, &res("daemonsets"), &ds, status);
        }
    }

    /// Cluster IPs, load-balancer addresses (k3s ServiceLB) and Endpoints from ready pods.
    fn services(&mut self, s: &mut Store, k: &Knobs, now: Instant) {
        let svcs = s.all(&res("services"), "");
        for (i, svc) in svcs.iter().enumerate() {
            let ns = ns_of(svc).to_string();
            let name = name_of(svc).to_string();
            let mut new = svc.clone();
            if svc.pointer("/spec/clusterIP").is_none() {
                let ip = format!("10.43.{}.{}", (i + 1) / 250, (i + 1) % 250 + 1);
                new["spec"]["clusterIP"] = json!(ip);
                new["spec"]["clusterIPs"] = json!([ip]);
            }
            if s_at(svc, "/spec/type") == "LoadBalancer"
                && svc.pointer("/status/loadBalancer/ingress").is_none()
            {
                new["status"] =
                    json!({"loadBalancer": {"ingress": [{"ip": "172.18.0.2", "ipMode": "VIP"}]}});
            }
            put(s, &res("services"), svc, new);
            let Some(selector) = svc.pointer("/spec/selector").and_then(Value::as_object) else {
                continue;
            };
            if selector.is_empty() {
                continue;
            }
            let mut ready = Vec::new();
            let mut not_ready = Vec::new();
            for p in s.all(&res("pods"), &ns) {
                let labels = labels_of(&p);
                if !selector
                    .iter()
                    .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str())
                    || s_at(&p, "/status/podIP").is_empty()
                    || terminating(&p)
                {
                    // Endpoints (v1) leave terminating pods out altogether.
                    continue;
                }
                let addr = json!({"ip": s_at(&p, "/status/podIP"), "nodeName": s_at(&p, "/spec/nodeName"),
                    "targetRef": {"kind": "Pod", "name": name_of(&p), "namespace": ns, "uid": uid_of(&p)}});
                if pod_ready(&p) {
                    ready.push(addr);
                } else {
                    not_ready.push(addr);
                }
            }
            let ports: Vec<Value> = svc
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|p| json!({"name": p.get("name").cloned().unwrap_or(json!("")),
                    "port": p.get("targetPort").filter(|t| t.is_number()).or(p.get("port")).cloned().unwrap_or(json!(0)),
                    "protocol": p.get("protocol").cloned().unwrap_or(json!("TCP"))}))
                .collect();
            let mut subset = json!({"ports": ports});
            if !ready.is_empty() {
                subset["addresses"] = json!(ready);
            }
            if !not_ready.is_empty() {
                subset["notReadyAddresses"] = json!(not_ready);
            }
            let subsets = if ready.is_empty() && not_ready.is_empty() {
                json!([])
            } else {
                json!([subset])
            };
            let ep_res = res("endpoints");
            let existing = s.get(&ep_res, &ns, &name).ok();
            // The change shows `endpointLagMs` later, in order, as it reaches every proxy.
            let queue = self
                .endpoint_changes
                .entry((ns.clone(), name.clone()))
                .or_default();
            let latest = queue
                .back()
                .map(|(_, v)| v)
                .or(existing.as_ref().map(|e| &e["subsets"]));
            if latest != Some(&subsets) {
                queue.push_back((now + Duration::from_millis(k.endpoint_lag_ms), subsets));
            }
            let mut due = None;
            while queue.front().is_some_and(|(at, _)| *at <= now) {
                due = queue.pop_front().map(|(_, v)| v);
            }
            let next = queue.front().map(|(at, _)| *at);
            if let Some(at) = next {
                self.wake_at(at);
            }
            let Some(subsets) = due else {
                continue;
            };
            match existing {
                Some(ep) => {
                    let mut new = ep.clone();
                    new["subsets"] = subsets;
                    put(s, &ep_res, &ep, new);
                }
                None => {
                    let _ = s.create(
                        &ep_res,
                        &ns,
                        json!({"metadata": {"name": name, "labels": svc["metadata"]["labels"]}, "subsets": subsets}),
                    );
                }
            }
        }
        let live: HashSet<(String, String)> = svcs
            .iter()
            .map(|s| (ns_of(s).to_string(), name_of(s).to_string()))
            .collect();
        self.endpoint_changes.retain(|k, _| live.contains(k));
        for ep in s.all(&res("endpoints"), "") {
            if !live.contains(&(ns_of(&ep).to_string(), name_of(&ep).to_string())) {
                let _ = s.delete(&res("endpoints"), ns_of(&ep), name_of(&ep));
            }
        }
    }

    fn pdbs(&mut self, s: &mut Store) {
        for pdb in s.all(&res("poddisruptionbudgets"), "") {
            let b = budget(s, &pdb);
            let status = json!({"observedGeneration": pdb["metadata"]["generation"],
                "expectedPods": b.expected, "currentHealthy": b.healthy, "desiredHealthy": b.desired,
                "disruptionsAllowed": (b.healthy - b.desired).max(0)});
            set_status(s, &res("poddisruptionbudgets"), &pdb, status);
        }
    }

    /// istiod patches its CA bundle into every webhook that calls its Service, once ready.
    fn ca_bundles(&mut self, s: &mut Store, k: &Knobs) {
        let deployments = res("deployments");
        for plural in [
            "mutatingwebhookconfigurations",
            "validatingwebhookconfigurations",
        ] {
            for hook in s.all(&res(plural), "") {
                let rev = labels_of(&hook)
                    .get("istio.io/rev")
                    .cloned()
                    .unwrap_or_default();
                if k.stall_ca_bundle.contains(&rev) {
                    continue;
                }
                let mut new = hook.clone();
                let Some(list) = new.get_mut("webhooks").and_then(Value::as_array_mut) else {
                    continue;
                };
                for wh in list.iter_mut() {
                    if !s_at(wh, "/clientConfig/caBundle").is_empty() {
                        continue;
                    }
                    let svc = s_at(wh, "/clientConfig/service/name").to_string();
                    let ns = s_at(wh, "/clientConfig/service/namespace").to_string();
                    let serving = s
                        .get(&deployments, &ns, &svc)
                        .ok()
                        .and_then(|d| d.pointer("/status/readyReplicas").and_then(Value::as_u64))
                        .unwrap_or(0)
                        > 0;
                    if serving {
                        wh["clientConfig"]["caBundle"] = json!(CA_BUNDLE);
                    }
                }
                put(s, &res(plural), &hook, new);
            }
        }
    }
}

fn rv(obj: &Value) -> u64 {
    s_at(obj, "/metadata/resourceVersion").parse().unwrap_or(0)
}

/// The template revision a pod was made from.
fn pod_revision(pod: &Value) -> String {
    let l = labels_of(pod);
    l.get("controller-revision-hash")
        .or(l.get("pod-template-hash"))
        .cloned()
        .unwrap_or_default()
}

/// Every container of a pod: init containers first.
pub fn containers(pod: &Value) -> impl Iterator<Item = &Value> {
    ["/spec/initContainers", "/spec/containers"]
        .into_iter()
        .filter_map(|p| pod.pointer(p).and_then(Value::as_array))
        .flatten()
}

enum ContainerState {
    Creating,
    Running,
    Completed,
    Crashing(u64),
}

fn pod_status(
    pod: &Value,
    phase: &str,
    ip: &str,
    state: impl Fn(usize) -> ContainerState,
) -> Value {
    let mut index = 0;
    let mut all_ready = true;
    let mut lists = BTreeMap::new();
    for (key, ptr) in [
        ("initContainerStatuses", "/spec/initContainers"),
        ("containerStatuses", "/spec/containers"),
    ] {
        let mut out = Vec::new();
        for c in pod
            .pointer(ptr)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let sidecar = key == "containerStatuses" || s_at(c, "/restartPolicy") == "Always";
            let st = state(index);
            index += 1;
            let (ready, restarts, st) = match st {
                ContainerState::Creating => (
                    false,
                    0,
                    json!({"waiting": {"reason": "ContainerCreating"}}),
                ),
                ContainerState::Running if sidecar => (
                    true,
                    0,
                    json!({"running": {"startedAt": "2026-01-01T00:00:00Z"}}),
                ),
                ContainerState::Running | ContainerState::Completed => (
                    !sidecar || phase == "Succeeded",
                    0,
                    json!({"terminated": {"exitCode": 0, "reason": "Completed"}}),
                ),
                ContainerState::Crashing(n) => (
                    false,
                    n,
                    json!({"waiting": {"reason": "CrashLoopBackOff",
                        "message": format!("back-off 10s restarting failed container={} pod={}", s_at(c, "/name"), name_of(pod))}}),
                ),
            };
            if sidecar && !ready {
                all_ready = false;
            }
            out.push(
                json!({"name": c["name"], "image": c["image"], "imageID": "", "ready": ready,
                "started": ready, "restartCount": restarts, "state": st}),
            );
        }
        if !out.is_empty() {
            lists.insert(key, Value::Array(out));
        }
    }
    let ready = all_ready && phase == "Running";
    let cond = |t: &str, ok: bool| json!({"type": t, "status": if ok { "True" } else { "False" }});
    let mut status = json!({
        "phase": phase, "hostIP": "172.18.0.2", "podIP": ip, "podIPs": [{"ip": ip}],
        "startTime": "2026-01-01T00:00:00Z",
        "conditions": [cond("PodScheduled", true), cond("Initialized", phase != "Pending"),
            cond("ContainersReady", ready), cond("Ready", ready)],
    });
    for (k, v) in lists {
        status[k] = v;
    }
    status
}

/// Replace an object if it changed (compared with `before`).
fn put(s: &mut Store, r: &Resource, before: &Value, after: Value) {
    if *before != after {
        let _ = s.update(r, ns_of(before), name_of(before), after);
    }
}

fn set_status(s: &mut Store, r: &Resource, obj: &Value, status: Value) {
    if obj.get("status") != Some(&status) {
        let mut new = obj.clone();
        new["status"] = status;
        put(s, r, obj, new);
    }
}

/// The most recent `FailedCreate` message recorded for an owner, if its latest attempt failed.
fn last_failure(s: &Store, owner: &Value) -> Option<String> {
    let name = format!("{}.failedcreate", name_of(owner));
    let ev = s.get(&res("events"), ns_of(owner), &name).ok()?;
    (s_at(&ev, "/involvedObject/uid") == uid_of(owner) && ev["count"].as_u64().unwrap_or(0) > 0)
        .then(|| s_at(&ev, "/message").to_string())
}

/// Record why a pod could not be created, as a Warning event on the owner.
fn record_failure(s: &mut Store, owner: &Value, e: &ApiError) {
    let ns = ns_of(owner).to_string();
    let name = format!("{}.failedcreate", name_of(owner));
    let message = format!("Error creating: {}", e.message);
    let ev = json!({
        "metadata": {"name": name},
        "involvedObject": {"kind": owner["kind"], "name": name_of(owner), "namespace": ns, "uid": uid_of(owner)},
        "reason": "FailedCreate", "type": "Warning", "message": message, "count": 1,
        "source": {"component": "controller"},
    });
    match s.get(&res("events"), &ns, &name) {
        Ok(old)
            if old["message"] == ev["message"] && old["involvedObject"] == ev["involvedObject"] => {
        }
        Ok(_) => {
            let _ = s.update(&res("events"), &ns, &name, ev);
        }
        Err(_) => {
            let _ = s.create(&res("events"), &ns, ev);
        }
    }
}

/// A disruption budget's arithmetic at this moment.
#[derive(Debug)]
pub struct Budget {
    pub expected: i64,
    pub healthy: i64,
    pub desired: i64,
}

fn pdb_matches(pdb: &Value, pod: &Value) -> bool {
    let labels = labels_of(pod);
    pdb.pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .is_some_and(|m| {
            m.iter()
                .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str())
        })
}

pub fn budget(s: &Store, pdb: &Value) -> Budget {
    let pods: Vec<Value> = s
        .all(&res("pods"), ns_of(pdb))
        .into_iter()
        .filter(|p| pdb_matches(pdb, p))
        .collect();
    let expected = pods.len() as i64;
    let healthy = pods.iter().filter(|p| pod_ready(p)).count() as i64;
    let desired = match (
        pdb.pointer("/spec/minAvailable"),
        pdb.pointer("/spec/maxUnavailable"),
    ) {
        (Some(m), _) => int_or_percent(Some(m), "0", expected, true),
        (None, Some(m)) => (expected - int_or_percent(Some(m), "0", expected, true)).max(0),
        (None, None) => 0,
    };
    Budget {
        expected,
        healthy,
        desired,
    }
}

/// The Eviction API: delete a pod unless a PodDisruptionBudget forbids it (429).
pub fn evict(s: &mut Store, ns: &str, name: &str) -> Result<Value, ApiError> {
    let pod = s.get(&res("pods"), ns, name)?;
    for pdb in s.all(&res("poddisruptionbudgets"), ns) {
        if !pdb_matches(&pdb, &pod) {
            continue;
        }
        let b = budget(s, &pdb);
        let allowed = if pod_ready(&pod) {
            b.healthy > b.desired
        } else {
            b.healthy >= b.desired
        };
        if !allowed {
            let mut e = ApiError::new(
                429,
                "TooManyRequests",
                "Cannot evict pod as it would violate the pod's disruption budget.",
            );
            e.causes = vec![json!({"reason": "DisruptionBudget", "message": format!(
                "The disruption budget {} needs {} healthy pods and has {} currently",
                name_of(&pdb), b.desired, b.healthy)})];
            return Err(e);
        }
    }
    s.delete(&res("pods"), ns, name)?;
    Ok(
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    )
}
