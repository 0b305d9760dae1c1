//! Generic object storage for the simulated API server: any resource, namespaced or not, with
//! resourceVersion, uid, generation and optimistic-concurrency conflicts, and a log of every
//! request so tests can count mutating calls.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use crate::selector::{FieldSelector, Selector, labels_of};

/// A kind of object the server serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
}

impl Resource {
    pub fn new(
        group: &str,
        version: &str,
        plural: &str,
        kind: &str,
        namespaced: bool,
        short: &[&str],
    ) -> Self {
        Self {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
            kind: kind.into(),
            namespaced,
            short_names: short.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// `plural.group` as the API server names a resource in messages (`deployments.apps`).
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// The built-in resources paddock touches.
pub fn builtin_resources() -> Vec<Resource> {
    vec![
        Resource::new("", "v1", "namespaces", "Namespace", false, &["ns"]),
        Resource::new("", "v1", "nodes", "Node", false, &["no"]),
        Resource::new("", "v1", "pods", "Pod", true, &["po"]),
        Resource::new("", "v1", "services", "Service", true, &["svc"]),
        Resource::new("", "v1", "endpoints", "Endpoints", true, &["ep"]),
        Resource::new("", "v1", "configmaps", "ConfigMap", true, &["cm"]),
        Resource::new("", "v1", "secrets", "Secret", true, &[]),
        Resource::new("", "v1", "serviceaccounts", "ServiceAccount", true, &["sa"]),
        Resource::new("", "v1", "events", "Event", true, &["ev"]),
        Resource::new("apps", "v1", "deployments", "Deployment", true, &["deploy"]),
        Resource::new("apps", "v1", "statefulsets", "StatefulSet", true, &["sts"]),
        Resource::new("apps", "v1", "daemonsets", "DaemonSet", true, &["ds"]),
        Resource::new("apps", "v1", "replicasets", "ReplicaSet", true, &["rs"]),
        Resource::new("batch", "v1", "jobs", "Job", true, &[]),
        Resource::new(
            "discovery.k8s.io",
            "v1",
            "endpointslices",
            "EndpointSlice",
            true,
            &[],
        ),
        Resource::new(
            "policy",
            "v1",
            "poddisruptionbudgets",
            "PodDisruptionBudget",
            true,
            &["pdb"],
        ),
        Resource::new(
            "admissionregistration.k8s.io",
            "v1",
            "mutatingwebhookconfigurations",
            "MutatingWebhookConfiguration",
            false,
            &[],
        ),
        Resource::new(
            "admissionregistration.k8s.io",
            "v1",
            "validatingwebhookconfigurations",
            "ValidatingWebhookConfiguration",
            false,
            &[],
        ),
        Resource::new(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterroles",
            "ClusterRole",
            false,
            &[],
        ),
        Resource::new(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterrolebindings",
            "ClusterRoleBinding",
            false,
            &[],
        ),
        Resource::new(
            "rbac.authorization.k8s.io",
            "v1",
            "roles",
            "Role",
            true,
            &[],
        ),
        Resource::new(
            "rbac.authorization.k8s.io",
            "v1",
            "rolebindings",
            "RoleBinding",
            true,
            &[],
        ),
        Resource::new(
            "autoscaling",
            "v2",
            "horizontalpodautoscalers",
            "HorizontalPodAutoscaler",
            true,
            &["hpa"],
        ),
        Resource::new(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
            &["crd", "crds"],
        ),
        // Kinds the real charts render or users' manifests commonly hold, stored as they are.
        Resource::new(
            "",
            "v1",
            "persistentvolumeclaims",
            "PersistentVolumeClaim",
            true,
            &["pvc"],
        ),
        Resource::new(
            "",
            "v1",
            "persistentvolumes",
            "PersistentVolume",
            false,
            &["pv"],
        ),
        Resource::new(
            "",
            "v1",
            "resourcequotas",
            "ResourceQuota",
            true,
            &["quota"],
        ),
        Resource::new("", "v1", "limitranges", "LimitRange", true, &["limits"]),
        Resource::new("batch", "v1", "cronjobs", "CronJob", true, &["cj"]),
        Resource::new(
            "networking.k8s.io",
            "v1",
            "networkpolicies",
            "NetworkPolicy",
            true,
            &["netpol"],
        ),
        Resource::new(
            "networking.k8s.io",
            "v1",
            "ingresses",
            "Ingress",
            true,
            &["ing"],
        ),
        Resource::new(
            "networking.k8s.io",
            "v1",
            "ingressclasses",
            "IngressClass",
            false,
            &[],
        ),
        Resource::new(
            "storage.k8s.io",
            "v1",
            "storageclasses",
            "StorageClass",
            false,
            &["sc"],
        ),
        Resource::new(
            "scheduling.k8s.io",
            "v1",
            "priorityclasses",
            "PriorityClass",
            false,
            &["pc"],
        ),
        Resource::new("coordination.k8s.io", "v1", "leases", "Lease", true, &[]),
    ]
}

static BUILTIN: std::sync::LazyLock<Vec<Resource>> = std::sync::LazyLock::new(builtin_resources);

/// A built-in resource by plural name (`"pods"`, `"deployments"`, ...).
///
/// # Panics
/// On a plural the sim does not serve: a programming error in the sim itself.
pub fn res(plural: &str) -> Resource {
    BUILTIN
        .iter()
        .find(|r| r.plural == plural)
        .cloned()
        .unwrap_or_else(|| panic!("the sim serves no built-in resource {plural:?}"))
}

/// An API error, rendered as a Kubernetes `Status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub causes: Vec<Value>,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            causes: Vec::new(),
        }
    }

    pub fn not_found(res: &Resource, name: &str) -> Self {
        let what = res.qualified();
        Self::new(404, "NotFound", format!("{what} \"{name}\" not found"))
    }

    pub fn status(&self) -> Value {
        let mut v = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": self.message, "reason": self.reason, "code": self.code,
        });
        if !self.causes.is_empty() {
            v["details"] = json!({"causes": self.causes});
        }
        // An error that is not a Status (a 500) has no reason, and Go omits the empty field.
        if self.reason.is_empty()
            && let Some(m) = v.as_object_mut()
        {
            m.remove("reason");
        }
        v
    }
}

/// Where an object lives.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub group: String,
    pub plural: String,
    pub namespace: String,
    pub name: String,
}

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub verb: String,
    pub path: String,
    /// The request's `Content-Type` (empty when it had none).
    pub content_type: String,
}

impl Request {
    pub fn is_mutating(&self) -> bool {
        matches!(self.verb.as_str(), "POST" | "PUT" | "PATCH" | "DELETE")
    }
}

/// A change, for watchers.
#[derive(Debug, Clone)]
pub struct Event {
    /// The store revision this change produced.
    pub revision: u64,
    pub kind: &'static str,
    pub group: String,
    pub plural: String,
    pub object: Value,
}

/// All objects of one simulated cluster.
#[derive(Debug)]
pub struct Store {
    pub resources: Vec<Resource>,
    objects: BTreeMap<Key, Value>,
    revision: u64,
    uid: u64,
    pub requests: Vec<Request>,
    pub events: tokio::sync::broadcast::Sender<Event>,
    /// Recent changes, so a watch from an older resourceVersion misses nothing.
    pub history: std::collections::VecDeque<Event>,
}

/// How many past changes a watch can resume from.
const HISTORY: usize = 20_000;

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

pub fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn meta(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    match obj.get_mut("metadata") {
        Some(Value::Object(m)) => m,
        _ => unreachable!("metadata was just made an object"),
    }
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

impl Store {
    pub fn new() -> Self {
        let (events, _) = tokio::sync::broadcast::channel(4096);
        Self {
            resources: builtin_resources(),
            objects: BTreeMap::new(),
            revision: 1,
            uid: 0,
            requests: Vec::new(),
            events,
            history: std::collections::VecDeque::new(),
        }
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Find a resource by group and plural.
    pub fn resource(&self, group: &str, version: &str, plural: &str) -> Option<Resource> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.plural == plural && r.version == version)
            .cloned()
    }

    fn key(res: &Resource, ns: &str, name: &str) -> Key {
        Key {
            group: res.group.clone(),
            plural: res.plural.clone(),
            namespace: if res.namespaced {
                ns.to_string()
            } else {
                String::new()
            },
            name: name.to_string(),
        }
    }

    fn notify(&mut self, kind: &'static str, res: &Resource, object: &Value) {
        let event = Event {
            revision: self.revision,
            kind,
            group: res.group.clone(),
            plural: res.plural.clone(),
            object: object.clone(),
        };
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(event.clone());
        let _ = self.events.send(event);
    }

    pub fn get(&self, res: &Resource, ns: &str, name: &str) -> Result<Value, ApiError> {
        self.objects
            .get(&Self::key(res, ns, name))
            .cloned()
            .ok_or_else(|| ApiError::not_found(res, name))
    }

    /// An object without copying it (large ones, such as CRDs, are read on hot paths).
    pub fn peek(&self, res: &Resource, ns: &str, name: &str) -> Option<&Value> {
        self.objects.get(&Self::key(res, ns, name))
    }

    /// Every object of a resource, in all namespaces, without copying them.
    pub fn each<'a>(&'a self, res: &'a Resource) -> impl Iterator<Item = &'a Value> + 'a {
        let start = Key {
            group: res.group.clone(),
            plural: res.plural.clone(),
            namespace: String::new(),
            name: String::new(),
        };
        self.objects
            .range(start..)
            .take_while(|(k, _)| k.group == res.group && k.plural == res.plural)
            .map(|(_, o)| o)
    }

    /// List objects of a resource, in one namespace or all (`ns` empty), filtered by selectors.
    pub fn list(
        &self,
        res: &Resource,
        ns: &str,
        labels: &Selector,
        fields: &FieldSelector,
    ) -> Vec<Value> {
        // Keys sort by group, plural, namespace, name: read only the range that can match.
        let key = |namespace: &str| Key {
            group: res.group.clone(),
            plural: res.plural.clone(),
            namespace: namespace.to_string(),
            name: String::new(),
        };
        let start = key(if res.namespaced { ns } else { "" });
        self.objects
            .range(start..)
            .take_while(|(k, _)| {
                k.group == res.group
                    && k.plural == res.plural
                    && (ns.is_empty() || !res.namespaced || k.namespace == ns)
            })
            .filter(|(_, o)| labels.matches(&labels_of(o)) && fields.matches(o))
            .map(|(_, o)| o.clone())
            .collect()
    }

    pub fn create(&mut self, res: &Resource, ns: &str, mut obj: Value) -> Result<Value, ApiError> {
        let name = match obj.pointer("/metadata/name").and_then(Value::as_str) {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => match obj
                .pointer("/metadata/generateName")
                .and_then(Value::as_str)
            {
                Some(prefix) => format!("{prefix}{:05x}", self.uid + 1),
                None => {
                    return Err(ApiError::new(
                        422,
                        "Invalid",
                        format!(
                            "{} is invalid: metadata.name: Required value: name or generateName is required",
                            res.kind
                        ),
                    ));
                }
            },
        };
        if res.namespaced {
            if ns.is_empty() {
                return Err(ApiError::new(
                    400,
                    "BadRequest",
                    "the namespace of the object is required",
                ));
            }
            match self
                .objects
                .get(&Self::key(&self::res("namespaces"), "", ns))
            {
                None => {
                    return Err(ApiError::new(
                        404,
                        "NotFound",
                        format!("namespaces \"{ns}\" not found"),
                    ));
                }
                Some(n) if n.pointer("/metadata/deletionTimestamp").is_some() => {
                    return Err(ApiError::new(
                        403,
                        "Forbidden",
                        format!(
                            "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                            res.plural
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        if res.plural == "pods" && res.group.is_empty() {
            crate::webhook::admit_pod(self, ns, &mut obj)?;
        }
        let key = Self::key(res, ns, &name);
        if self.objects.contains_key(&key) {
            let what = res.qualified();
            return Err(ApiError::new(
                409,
                "AlreadyExists",
                format!("{what} \"{name}\" already exists"),
            ));
        }
        self.revision += 1;
        self.uid += 1;
        obj["apiVersion"] = json!(res.api_version());
        obj["kind"] = json!(res.kind);
        let rv = self.revision.to_string();
        let uid = format!("00000000-0000-4000-8000-{:012x}", self.uid);
        let m = meta(&mut obj);
        m.insert("name".into(), json!(name));
        if res.namespaced {
            m.insert("namespace".into(), json!(ns));
        }
        m.insert("uid".into(), json!(uid));
        m.insert("resourceVersion".into(), json!(rv));
        m.insert("creationTimestamp".into(), json!(now_rfc3339()));
        m.insert("generation".into(), json!(1));
        if res.plural == "customresourcedefinitions" {
            self.register_crd(&obj);
            obj["status"] = json!({"conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts"},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted"},
            ], "acceptedNames": obj.pointer("/spec/names").cloned().unwrap_or(Value::Null)});
        }
        if res.plural == "namespaces" {
            obj["status"] = json!({"phase": "Active"});
        }
        self.objects.insert(key, obj.clone());
        self.notify("ADDED", res, &obj);
        Ok(obj)
    }

    /// Replace an object. A stale `resourceVersion` is a 409 Conflict, as on a real server.
    pub fn update(
        &mut self,
        res: &Resource,
        ns: &str,
        name: &str,
        mut obj: Value,
    ) -> Result<Value, ApiError> {
        let key = Self::key(res, ns, name);
        let Some(old) = self.objects.get(&key) else {
            return Err(ApiError::not_found(res, name));
        };
        if let Some(rv) = obj
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
        {
            let current = old
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .unwrap_or("");
            if !rv.is_empty() && rv != current {
                let what = res.qualified();
                return Err(ApiError::new(
                    409,
                    "Conflict",
                    format!(
                        "Operation cannot be fulfilled on {what} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
                    ),
                ));
            }
        }
        let spec_changed = old.get("spec") != obj.get("spec");
        let mut generation = old
            .pointer("/metadata/generation")
            .and_then(Value::as_u64)
            .unwrap_or(1);
        if spec_changed {
            generation += 1;
        }
        // Immutable, and set only by deletion: an update cannot clear a deletionTimestamp.
        let keep: Vec<(&str, Value)> = [
            "uid",
            "creationTimestamp",
            "name",
            "namespace",
            "deletionTimestamp",
        ]
        .iter()
        .filter_map(|k| {
            old.pointer(&format!("/metadata/{k}"))
                .map(|v| (*k, v.clone()))
        })
        .collect();
        if obj.get("status").is_none()
            && let Some(st) = old.get("status")
        {
            obj["status"] = st.clone();
        }
        if obj
            .pointer("/metadata/deletionGracePeriodSeconds")
            .is_none()
            && let Some(g) = old.pointer("/metadata/deletionGracePeriodSeconds")
        {
            obj["metadata"]["deletionGracePeriodSeconds"] = g.clone();
        }
        self.revision += 1;
        obj["apiVersion"] = json!(res.api_version());
        obj["kind"] = json!(res.kind);
        let rv = self.revision.to_string();
        let m = meta(&mut obj);
        for (k, v) in keep {
            m.insert(k.into(), v);
        }
        m.insert("resourceVersion".into(), json!(rv));
        m.insert("generation".into(), json!(generation));
        self.objects.insert(key, obj.clone());
        self.notify("MODIFIED", res, &obj);
        Ok(obj)
    }

    /// Apply a JSON merge patch (also used for strategic-merge and apply patches on the fields
    /// paddock sends, which are maps).
    pub fn patch(
        &mut self,
        res: &Resource,
        ns: &str,
        name: &str,
        patch: &Value,
    ) -> Result<Value, ApiError> {
        let mut obj = self.get(res, ns, name)?;
        merge_patch(&mut obj, patch);
        if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
        }
        self.update(res, ns, name, obj)
    }

    /// Delete as the API server does with default options: see [`Store::delete_with`].
    pub fn delete(&mut self, res: &Resource, ns: &str, name: &str) -> Result<Value, ApiError> {
        self.delete_with(res, ns, name, None)
    }

    /// Delete an object as the API server does (KUBERNETES.md, "Deletion is not instant"):
    ///
    /// - A pod on a node gets `metadata.deletionTimestamp` and `deletionGracePeriodSeconds`
    ///   (`grace`, else `spec.terminationGracePeriodSeconds`, else 30) and stays until the
    ///   kubelet (the sim's pod controller) has stopped it and calls [`Store::remove`]. Grace 0,
    ///   a pod never scheduled, or one whose containers already exited goes at once. Deleting a
    ///   terminating pod again only ever shortens its grace period.
    /// - A namespace turns `Terminating` (finalizer `kubernetes`); the namespace controller
    ///   empties it, then removes it. Deleting it again is `409 Conflict`.
    /// - Anything else goes at once; the garbage collector deletes what it owned.
    pub fn delete_with(
        &mut self,
        res: &Resource,
        ns: &str,
        name: &str,
        grace: Option<i64>,
    ) -> Result<Value, ApiError> {
        let key = Self::key(res, ns, name);
        let Some(old) = self.objects.get(&key).cloned() else {
            return Err(ApiError::not_found(res, name));
        };
        let core = res.group.is_empty();
        let terminating = old.pointer("/metadata/deletionTimestamp").is_some();
        if core && res.plural == "namespaces" {
            if terminating {
                return Err(ApiError::new(
                    409,
                    "Conflict",
                    format!(
                        "Operation cannot be fulfilled on namespaces \"{name}\": The system is ensuring all content is removed from this namespace.  Upon completion, this namespace will automatically be purged by the system."
                    ),
                ));
            }
            let mut obj = old;
            obj["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
            obj["spec"]["finalizers"] = json!(["kubernetes"]);
            obj["status"]["phase"] = json!("Terminating");
            return self.update(res, ns, name, obj);
        }
        if core && res.plural == "pods" {
            let phase = old.pointer("/status/phase").and_then(Value::as_str);
            let scheduled = old
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty());
            let grace = match grace {
                _ if !scheduled || matches!(phase, Some("Succeeded" | "Failed")) => 0,
                Some(g) => g.max(0),
                None => old
                    .pointer("/spec/terminationGracePeriodSeconds")
                    .and_then(Value::as_i64)
                    .unwrap_or(30),
            };
            if grace == 0 {
                return self.remove(res, ns, name);
            }
            let current = old
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64);
            if terminating && current.is_some_and(|c| c <= grace) {
                return Ok(old);
            }
            let mut obj = old;
            if !terminating {
                obj["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
            }
            obj["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
            return self.update(res, ns, name, obj);
        }
        self.remove(res, ns, name)
    }

    /// The object leaves storage now (a kubelet done with a pod, a namespace emptied, or any
    /// object without finalizers).
    pub fn remove(&mut self, res: &Resource, ns: &str, name: &str) -> Result<Value, ApiError> {
        let key = Self::key(res, ns, name);
        let Some(mut obj) = self.objects.remove(&key) else {
            return Err(ApiError::not_found(res, name));
        };
        self.revision += 1;
        obj["metadata"]["resourceVersion"] = json!(self.revision.to_string());
        self.notify("DELETED", res, &obj);
        Ok(obj)
    }

    /// Every stored object in a namespace: (resource, name).
    pub fn contents(&self, ns: &str) -> Vec<(Resource, String)> {
        self.objects
            .keys()
            .filter(|k| k.namespace == ns)
            .filter_map(|k| {
                let r = self
                    .resources
                    .iter()
                    .find(|r| r.group == k.group && r.plural == k.plural)?;
                Some((r.clone(), k.name.clone()))
            })
            .collect()
    }

    fn register_crd(&mut self, crd: &Value) {
        let group = crd
            .pointer("/spec/group")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let plural = crd
            .pointer("/spec/names/plural")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind = crd
            .pointer("/spec/names/kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let namespaced = crd.pointer("/spec/scope").and_then(Value::as_str) != Some("Cluster");
        for v in crd
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(version) = v.get("name").and_then(Value::as_str)
                && self.resource(group, version, plural).is_none()
            {
                self.resources
                    .push(Resource::new(group, version, plural, kind, namespaced, &[]));
            }
        }
    }

    /// Apply an RFC 6902 JSON patch.
    pub fn json_patch(
        &mut self,
        res: &Resource,
        ns: &str,
        name: &str,
        ops: &Value,
    ) -> Result<Value, ApiError> {
        let mut obj = self.get(res, ns, name)?;
        apply_json_patch(&mut obj, ops).map_err(|e| ApiError::new(422, "Invalid", e))?;
        self.update(res, ns, name, obj)
    }

    /// Every stored object of a resource in a namespace (all namespaces when empty).
    pub fn all(&self, res: &Resource, ns: &str) -> Vec<Value> {
        self.list(res, ns, &Selector::default(), &FieldSelector::default())
    }

    /// Every object and the counters, to survive a stop and start.
    pub fn snapshot(&self) -> Value {
        let objects: Vec<Value> = self
            .objects
            .iter()
            .map(|(k, v)| json!({"group": k.group, "plural": k.plural, "object": v}))
            .collect();
        json!({"revision": self.revision, "uid": self.uid, "objects": objects})
    }

    /// Load a snapshot into an empty store.
    pub fn restore(&mut self, snap: &Value) {
        self.revision = snap["revision"].as_u64().unwrap_or(1);
        self.uid = snap["uid"].as_u64().unwrap_or(0);
        let entries = snap["objects"].as_array().cloned().unwrap_or_default();
        for e in &entries {
            if e["plural"] == "customresourcedefinitions" {
                self.register_crd(&e["object"]);
            }
        }
        for e in entries {
            let (group, plural) = (
                e["group"].as_str().unwrap_or_default(),
                e["plural"].as_str().unwrap_or_default(),
            );
            let obj = &e["object"];
            let namespaced = self
                .resources
                .iter()
                .find(|r| r.group == group && r.plural == plural)
                .is_some_and(|r| r.namespaced);
            let key = Key {
                group: group.to_string(),
                plural: plural.to_string(),
                namespace: if namespaced {
                    obj.pointer("/metadata/namespace")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                } else {
                    String::new()
                },
                name: obj
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            };
            self.objects.insert(key, obj.clone());
        }
    }

    /// Count of mutating requests seen so far.
    pub fn mutating_requests(&self) -> usize {
        self.requests.iter().filter(|r| r.is_mutating()).count()
    }
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

/// The parent of a JSON pointer's target and the last token.
fn split_pointer(path: &str) -> Result<(String, String), String> {
    let (parent, last) = path
        .rsplit_once('/')
        .ok_or_else(|| format!("invalid JSON pointer {path:?}"))?;
    Ok((parent.to_string(), unescape(last)))
}

fn pointer_add(doc: &mut Value, path: &str, value: Value) -> Result<(), String> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, last) = split_pointer(path)?;
    match doc.pointer_mut(&parent) {
        Some(Value::Object(m)) => {
            m.insert(last, value);
            Ok(())
        }
        Some(Value::Array(a)) => {
            let i = if last == "-" {
                a.len()
            } else {
                last.parse::<usize>()
                    .map_err(|_| format!("invalid array index {last:?}"))?
            };
            if i > a.len() {
                return Err(format!("array index {i} out of bounds"));
            }
            a.insert(i, value);
            Ok(())
        }
        _ => Err(format!("doc is missing path: {path:?}")),
    }
}

fn pointer_remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = split_pointer(path)?;
    let missing = || format!("unable to remove nonexistent key: {last}: missing value");
    match doc.pointer_mut(&parent) {
        Some(Value::Object(m)) => m.remove(&last).ok_or_else(missing),
        Some(Value::Array(a)) => {
            let i: usize = last.parse().map_err(|_| missing())?;
            if i < a.len() {
                Ok(a.remove(i))
            } else {
                Err(missing())
            }
        }
        _ => Err(missing()),
    }
}

/// RFC 6902 JSON patch: add, remove, replace, move, copy, test.
pub fn apply_json_patch(doc: &mut Value, ops: &Value) -> Result<(), String> {
    let ops = ops
        .as_array()
        .ok_or("a JSON patch is an array of operations")?;
    for op in ops {
        let path = op.get("path").and_then(Value::as_str).unwrap_or("");
        let value = || op.get("value").cloned().ok_or("missing value");
        match op.get("op").and_then(Value::as_str).unwrap_or("") {
            "add" => pointer_add(doc, path, value()?)?,
            "remove" => {
                pointer_remove(doc, path)?;
            }
            "replace" => {
                let v = value()?;
                let slot = doc.pointer_mut(path).ok_or_else(|| {
                    format!("replace operation does not apply: doc is missing key: {path}")
                })?;
                *slot = v;
            }
            "move" | "copy" => {
                let from = op
                    .get("from")
                    .and_then(Value::as_str)
                    .ok_or("missing from")?;
                let v = if op["op"] == "move" {
                    pointer_remove(doc, from)?
                } else {
                    doc.pointer(from).cloned().ok_or("missing from path")?
                };
                pointer_add(doc, path, v)?;
            }
            "test" => {
                if doc.pointer(path) != Some(&value()?) {
                    return Err(format!("testing value {path} failed"));
                }
            }
            other => return Err(format!("unexpected kind of patch operation {other:?}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns_res() -> Resource {
        Resource::new("", "v1", "namespaces", "Namespace", false, &[])
    }
    fn cm_res() -> Resource {
        Resource::new("", "v1", "configmaps", "ConfigMap", true, &[])
    }

    #[test]
    fn stale_resource_versions_conflict() {
        let mut s = Store::new();
        s.create(&ns_res(), "", json!({"metadata": {"name": "a"}}))
            .expect("ns");
        let cm = s
            .create(
                &cm_res(),
                "a",
                json!({"metadata": {"name": "c"}, "data": {"k": "1"}}),
            )
            .expect("cm");
        let mut fresh = cm.clone();
        fresh["data"]["k"] = json!("2");
        s.update(&cm_res(), "a", "c", fresh)
            .expect("first update wins");
        let mut stale = cm;
        stale["data"]["k"] = json!("3");
        let err = s
            .update(&cm_res(), "a", "c", stale)
            .expect_err("stale update");
        assert_eq!((err.code, err.reason), (409, "Conflict"));
    }

    #[test]
    fn objects_need_their_namespace_and_go_with_it() {
        let mut s = Store::new();
        assert_eq!(
            s.create(&cm_res(), "x", json!({"metadata": {"name": "c"}}))
                .expect_err("no ns")
                .code,
            404
        );
        s.create(&ns_res(), "", json!({"metadata": {"name": "x"}}))
            .expect("ns");
        s.create(&cm_res(), "x", json!({"metadata": {"name": "c"}}))
            .expect("cm");
        assert_eq!(
            s.create(&cm_res(), "x", json!({"metadata": {"name": "c"}}))
                .expect_err("dup")
                .code,
            409
        );
        let ns = s.delete(&ns_res(), "", "x").expect("delete ns");
        assert_eq!(ns["status"]["phase"], "Terminating");
        assert!(ns["metadata"]["deletionTimestamp"].is_string());
        let again = s.delete(&ns_res(), "", "x").expect_err("deleting twice");
        assert_eq!((again.code, again.reason), (409, "Conflict"));
        assert!(again.message.contains("ensuring all content is removed"));
        let refused = s
            .create(&cm_res(), "x", json!({"metadata": {"name": "d"}}))
            .expect_err("new content");
        assert_eq!(refused.code, 403);
        assert!(refused.message.contains("because it is being terminated"));
        let same = s
            .create(&ns_res(), "", json!({"metadata": {"name": "x"}}))
            .expect_err("same name");
        assert_eq!((same.code, same.reason), (409, "AlreadyExists"));
        // Its content goes with it through the namespace controller (controllers' tests).
        assert_eq!(s.contents("x").len(), 1);
    }

    #[test]
    fn pods_terminate_gracefully_unless_told_otherwise() {
        let mut s = Store::new();
        s.create(&ns_res(), "", json!({"metadata": {"name": "x"}}))
            .expect("ns");
        let pods = res("pods");
        let pod = |name: &str, grace: Option<i64>| {
            let mut p = json!({"metadata": {"name": name}, "spec": {"nodeName": "n"}});
            if let Some(g) = grace {
                p["spec"]["terminationGracePeriodSeconds"] = json!(g);
            }
            p
        };
        s.create(&pods, "x", pod("a", None)).expect("a");
        let a = s.delete(&pods, "x", "a").expect("delete a");
        assert_eq!(a["metadata"]["deletionGracePeriodSeconds"], 30);
        assert!(s.get(&pods, "x", "a").is_ok(), "still there, terminating");
        let a = s.delete_with(&pods, "x", "a", Some(5)).expect("shorter");
        assert_eq!(a["metadata"]["deletionGracePeriodSeconds"], 5);
        let a = s.delete_with(&pods, "x", "a", Some(60)).expect("longer");
        assert_eq!(
            a["metadata"]["deletionGracePeriodSeconds"], 5,
            "never longer"
        );
        s.create(&pods, "x", pod("b", Some(7))).expect("b");
        let b = s.delete(&pods, "x", "b").expect("delete b");
        assert_eq!(b["metadata"]["deletionGracePeriodSeconds"], 7);
        s.create(&pods, "x", pod("c", None)).expect("c");
        s.delete_with(&pods, "x", "c", Some(0)).expect("force");
        assert_eq!(s.get(&pods, "x", "c").expect_err("gone").code, 404);
        s.create(&pods, "x", json!({"metadata": {"name": "d"}}))
            .expect("d");
        s.delete(&pods, "x", "d").expect("unscheduled");
        assert_eq!(s.get(&pods, "x", "d").expect_err("gone").code, 404);
    }

    #[test]
    fn generation_counts_spec_changes_only() {
        let mut s = Store::new();
        s.create(&ns_res(), "", json!({"metadata": {"name": "x"}}))
            .expect("ns");
        let d = Resource::new("apps", "v1", "deployments", "Deployment", true, &[]);
        s.create(
            &d,
            "x",
            json!({"metadata": {"name": "d"}, "spec": {"replicas": 1}}),
        )
        .expect("d");
        let o = s
            .patch(&d, "x", "d", &json!({"metadata": {"labels": {"a": "b"}}}))
            .expect("label");
        assert_eq!(o["metadata"]["generation"], 1);
        let o = s
            .patch(&d, "x", "d", &json!({"spec": {"replicas": 2}}))
            .expect("scale");
        assert_eq!(o["metadata"]["generation"], 2);
    }

    #[test]
    fn json_patch_follows_rfc_6902() {
        let mut doc = json!({"a": {"b": [1, 2]}, "c": "x"});
        apply_json_patch(
            &mut doc,
            &json!([
                {"op": "add", "path": "/a/b/1", "value": 9},
                {"op": "add", "path": "/a/b/-", "value": 3},
                {"op": "replace", "path": "/c", "value": "y"},
                {"op": "copy", "from": "/c", "path": "/d"},
                {"op": "move", "from": "/d", "path": "/a/e~1f"},
                {"op": "remove", "path": "/a/b/0"},
                {"op": "test", "path": "/c", "value": "y"},
            ]),
        )
        .expect("patch applies");
        assert_eq!(doc, json!({"a": {"b": [9, 2, 3], "e/f": "y"}, "c": "y"}));
        let err = apply_json_patch(
            &mut doc,
            &json!([{"op": "test", "path": "/c", "value": "z"}]),
        )
        .expect_err("test fails");
        assert!(err.contains("/c"), "{err}");
        assert!(apply_json_patch(&mut doc, &json!([{"op": "remove", "path": "/nope"}])).is_err());
    }

    #[test]
    fn dates_are_civil() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_420), (2025, 11, 28));
    }
}
