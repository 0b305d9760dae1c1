//! Helm's release logic, run inside the simulated cluster on behalf of the fake `helm`
//! executable: releases are Secrets `sh.helm.release.v1.NAME.vN` with labels `owner=helm`,
//! `name`, `status`, `version`, as Helm stores them; installs create the chart's objects with
//! Helm's ownership labels and annotations, refuse objects owned by another release, and
//! leave a `pending-*` release behind if interrupted.
//!
//! A mutating operation has two halves, as real Helm's does: the first checks, records the
//! release `pending-*` (or `uninstalling`) and applies the objects; the fake `helm` process
//! then works (its latency, `--wait`) and asks for the second half, which records the
//! outcome. A helm killed between them leaves the release pending, and another operation on
//! it meanwhile is refused with Helm's "another operation ... is in progress".
//!
//! The release record is stored as Helm stores it — JSON, gzipped, base64-encoded, as the
//! Secret's `release` bytes — so the real helm reads the fake's releases and the fake the
//! real one's.

use base64::Engine;
use serde_json::{Value, json};

use crate::ssa;
use crate::store::{ApiError, Resource, Store, res};

/// What the fake `helm` asks for.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Request {
    /// `upgrade`, `install`, `uninstall`, `rollback`, `list`, `status`, `get-values`,
    /// `history`, `ready`.
    pub op: String,
    pub release: String,
    pub chart: String,
    pub version: String,
    pub namespace: String,
    pub all_namespaces: bool,
    pub install: bool,
    pub create_namespace: bool,
    pub values: Value,
    pub reuse_values: bool,
    pub revision: Option<u64>,
    pub all: bool,
    pub keep_history: bool,
    pub take_ownership: bool,
    /// What an install or upgrade applies, as the real helm rendered it from the real chart.
    pub objects: Vec<Value>,
    /// `list` filters: statuses to show (empty: helm's default, deployed and failed).
    pub statuses: Vec<String>,
    /// Stop after recording the release as pending (a helm process killed mid-operation).
    pub die_pending: bool,
    /// For `finish`: what the first half left to record.
    pub finish: Option<Finish>,
    /// Helm 4's `--server-side`: `true`, `false` or `auto` (the release's previous method).
    /// Empty (Helm 3): client-side.
    pub server_side: String,
    /// Helm 4's `--force-conflicts`.
    pub force_conflicts: bool,
}

/// The second half of a mutating operation: what to record once the helm process is done.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Finish {
    /// `deploy` (install, upgrade, rollback) or `uninstall`.
    pub op: String,
    pub release: String,
    pub namespace: String,
    pub version: u64,
    pub description: String,
    pub keep_history: bool,
}

/// The field manager Helm writes objects with (the executable's name).
const MANAGER: &str = "helm";

/// How Helm writes a release's objects: Helm 3 (and Helm 4 with `--server-side=false`)
/// updates them, taking ownership of what it changes; Helm 4 applies them server-side, so
/// fields it stops rendering go and fields others own conflict unless `--force-conflicts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    ClientSide,
    ServerSide { force_conflicts: bool },
}

impl Method {
    /// What a request asks for, given the release's history (`auto` follows the last
    /// revision's method; a first install applies server-side).
    fn of(r: &Request, history: &[Value]) -> Self {
        let server_side = match r.server_side.as_str() {
            "true" => true,
            "auto" => history
                .last()
                .is_none_or(|last| last["apply_method"] == "ssa"),
            _ => false,
        };
        if server_side {
            Method::ServerSide {
                force_conflicts: r.force_conflicts,
            }
        } else {
            Method::ClientSide
        }
    }

    /// The release's `apply_method`.
    fn name(self) -> &'static str {
        match self {
            Method::ClientSide => "csa",
            Method::ServerSide { .. } => "ssa",
        }
    }
}

/// What the fake `helm` prints and how it exits.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Response {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// Set when the first half of a mutating operation succeeded: the client works, then
    /// sends this back as a `finish` request.
    pub finish: Option<Finish>,
}

fn ok(stdout: impl Into<String>) -> Response {
    Response {
        code: 0,
        stdout: stdout.into(),
        ..Response::default()
    }
}

fn fail(message: impl std::fmt::Display) -> Response {
    Response {
        code: 1,
        stderr: format!("Error: {message}\n"),
        ..Response::default()
    }
}

/// The first half succeeded: the client finishes with `finish` once it has worked.
fn started(stdout: impl Into<String>, finish: Finish) -> Response {
    Response {
        finish: Some(finish),
        ..ok(stdout)
    }
}

/// Handle one request against a cluster's store.
pub fn serve(s: &mut Store, req: &Value) -> Value {
    let resp = match serde_json::from_value::<Request>(req.clone()) {
        Ok(r) => handle(s, &r),
        Err(e) => fail(format!("bad request to the simulated helm: {e}")),
    };
    serde_json::to_value(resp).unwrap_or(Value::Null)
}

fn handle(s: &mut Store, r: &Request) -> Response {
    match r.op.as_str() {
        "upgrade" | "install" => install(s, r),
        "uninstall" => uninstall(s, r),
        "rollback" => rollback(s, r),
        "list" => list(s, r),
        "status" => with_latest(s, r, |rel| ok(status_json(rel).to_string())),
        "get-values" => with_latest(s, r, |rel| ok(rel["config"].to_string())),
        "history" => history(s, r),
        "ready" => ready(s, r),
        "finish" => match &r.finish {
            Some(f) => finish(s, f),
            None => fail("finish without what to finish"),
        },
        other => fail(format!("unknown command \"{other}\" for \"helm\"")),
    }
}

pub fn secret_name(release: &str, version: u64) -> String {
    format!("sh.helm.release.v1.{release}.v{version}")
}

fn now() -> String {
    crate::store::now_rfc3339()
}

/// Every stored revision of a release, oldest first.
fn revisions(s: &Store, ns: &str, release: &str) -> Vec<Value> {
    let sel =
        crate::selector::Selector::parse(&format!("owner=helm,name={release}")).unwrap_or_default();
    let mut out: Vec<Value> = s
        .list(&res("secrets"), ns, &sel, &Default::default())
        .iter()
        .filter_map(decode)
        .collect();
    out.sort_by_key(|r| r["version"].as_u64().unwrap_or(0));
    out
}

fn decode(secret: &Value) -> Option<Value> {
    use std::io::Read;
    let b64 = base64::engine::general_purpose::STANDARD;
    let data = secret.pointer("/data/release")?.as_str()?;
    let bytes = b64.decode(b64.decode(data).ok()?).ok()?;
    // Helm gzips its records, and reads plain JSON too.
    if bytes.starts_with(&[0x1f, 0x8b, 0x08]) {
        let mut text = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut text)
            .ok()?;
        return serde_json::from_slice(&text).ok();
    }
    serde_json::from_slice(&bytes).ok()
}

/// A release record as Helm writes it into its Secret: gzipped JSON, base64-encoded.
fn encode(rel: &Value) -> String {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let _ = gz.write_all(rel.to_string().as_bytes());
    let zipped = gz.finish().unwrap_or_default();
    base64::engine::general_purpose::STANDARD.encode(zipped)
}

fn store_release(s: &mut Store, rel: &Value) -> Result<(), ApiError> {
    let (ns, name, version) = (
        rel["namespace"].as_str().unwrap_or_default(),
        rel["name"].as_str().unwrap_or_default(),
        rel["version"].as_u64().unwrap_or(1),
    );
    let modified = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let b64 = base64::engine::general_purpose::STANDARD;
    let secret = json!({
        "metadata": {"name": secret_name(name, version), "labels": {
            "owner": "helm", "name": name, "status": rel["info"]["status"], "version": version.to_string(),
            "modifiedAt": modified.to_string()}},
        "type": "helm.sh/release.v1",
        "data": {"release": b64.encode(encode(rel))},
    });
    let secrets = res("secrets");
    match s.get(&secrets, ns, &secret_name(name, version)) {
        Ok(_) => s
            .update(&secrets, ns, &secret_name(name, version), secret)
            .map(|_| ()),
        Err(_) => s.create(&secrets, ns, secret).map(|_| ()),
    }
}

fn set_status(s: &mut Store, rel: &mut Value, status: &str, description: &str) {
    rel["info"]["status"] = json!(status);
    rel["info"]["description"] = json!(description);
    let _ = store_release(s, rel);
}

fn resource_for(s: &Store, obj: &Value) -> Option<Resource> {
    let api = obj["apiVersion"].as_str()?;
    let kind = obj["kind"].as_str()?;
    let (group, version) = api.split_once('/').unwrap_or(("", api));
    s.resources
        .iter()
        .find(|r| r.group == group && r.version == version && r.kind == kind)
        .cloned()
}

fn ref_of(obj: &Value, default_ns: &str) -> Value {
    json!({"apiVersion": obj["apiVersion"], "kind": obj["kind"],
        "namespace": obj.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or(default_ns),
        "name": obj["metadata"]["name"], "keep": obj.pointer("/metadata/annotations/helm.sh~1resource-policy") == Some(&json!("keep"))})
}

fn chart_version(r: &Request) -> String {
    if !r.version.is_empty() {
        return r.version.trim_start_matches('v').to_string();
    }
    match r.chart.as_str() {
        "base" | "istiod" | "gateway" => "1.30.3".into(),
        _ => "1.0.0".into(),
    }
}

fn install(s: &mut Store, r: &Request) -> Response {
    let history = revisions(s, &r.namespace, &r.release);
    let verb = if history.is_empty() {
        "INSTALLATION FAILED"
    } else {
        "UPGRADE FAILED"
    };
    if let Some(last) = history.last() {
        let st = last["info"]["status"].as_str().unwrap_or("");
        if st.starts_with("pending-") {
            return fail(format!(
                "{verb}: another operation (install/upgrade/rollback) is in progress"
            ));
        }
        if r.op == "install" && st != "uninstalled" {
            return fail("INSTALLATION FAILED: cannot re-use a name that is still in use");
        }
    } else if r.op == "upgrade" && !r.install {
        return fail(format!(
            "UPGRADE FAILED: \"{}\" has no deployed releases",
            r.release
        ));
    }
    let method = Method::of(r, &history);
    if s.get(&res("namespaces"), "", &r.namespace).is_err() {
        if r.create_namespace {
            create_namespace(s, &r.namespace, method);
        } else {
            return fail(format!(
                "{verb}: create: failed to create: namespaces \"{}\" not found",
                r.namespace
            ));
        }
    }
    let version = chart_version(r);
    let mut values = r.values.clone();
    if r.reuse_values
        && let Some(last) = history.last()
    {
        let mut merged = last["config"].clone();
        crate::store::merge_patch(&mut merged, &values);
        values = merged;
    }
    let objects = r.objects.clone();
    // Helm refuses objects it does not own (unless told to take ownership).
    for obj in &objects {
        let Some(rs) = resource_for(s, obj) else {
            if obj["kind"] == "CustomResourceDefinition" {
                continue;
            }
            return fail(format!(
                "{verb}: resource mapping not found for name: \"{}\" namespace: \"\" from \"\": no matches for kind \"{}\" in version \"{}\"\nensure CRDs are installed first",
                obj["metadata"]["name"].as_str().unwrap_or_default(),
                obj["kind"].as_str().unwrap_or_default(),
                obj["apiVersion"].as_str().unwrap_or_default()
            ));
        };
        let ns = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or(&r.namespace);
        let name = obj["metadata"]["name"].as_str().unwrap_or_default();
        if let Ok(existing) = s.get(&rs, ns, name) {
            let owner = existing
                .pointer("/metadata/annotations/meta.helm.sh~1release-name")
                .and_then(Value::as_str);
            let owner_ns = existing
                .pointer("/metadata/annotations/meta.helm.sh~1release-namespace")
                .and_then(Value::as_str);
            let managed = existing
                .pointer("/metadata/labels/app.kubernetes.io~1managed-by")
                .and_then(Value::as_str);
            if !r.take_ownership
                && (owner != Some(r.release.as_str())
                    || owner_ns != Some(r.namespace.as_str())
                    || managed != Some("Helm"))
            {
                let mut why = Vec::new();
                if managed != Some("Helm") {
                    why.push("label validation error: missing key \"app.kubernetes.io/managed-by\": must be set to \"Helm\"".to_string());
                }
                match owner {
                    Some(o) if o != r.release => why.push(format!("annotation validation error: key \"meta.helm.sh/release-name\" must equal \"{}\": current value is \"{o}\"", r.release)),
                    None => why.push(format!("annotation validation error: missing key \"meta.helm.sh/release-name\": must be set to \"{}\"", r.release)),
                    _ => {}
                }
                if owner_ns.is_none() {
                    why.push(format!("annotation validation error: missing key \"meta.helm.sh/release-namespace\": must be set to \"{}\"", r.namespace));
                }
                let in_ns = if rs.namespaced {
                    format!(" in namespace \"{ns}\"")
                } else {
                    String::new()
                };
                return fail(format!(
                    "{verb}: Unable to continue with {}: {} \"{name}\"{in_ns} exists and cannot be imported into the current release: invalid ownership metadata; {}",
                    if history.is_empty() {
                        "install"
                    } else {
                        "update"
                    },
                    rs.kind,
                    why.join("; ")
                ));
            }
        }
    }
    let version_n = history
        .last()
        .and_then(|l| l["version"].as_u64())
        .unwrap_or(0)
        + 1;
    let first = history
        .first()
        .map(|f| f["info"]["first_deployed"].clone())
        .unwrap_or(json!(now()));
    // helm's descriptions of a release it is working on.
    let (pending, underway) = if history.is_empty() {
        ("pending-install", "Initial install underway")
    } else {
        ("pending-upgrade", "Preparing upgrade")
    };
    let manifest: Vec<Value> = objects.iter().map(|o| ref_of(o, &r.namespace)).collect();
    let app_version = if matches!(r.chart.as_str(), "base" | "istiod" | "gateway") {
        version.clone()
    } else {
        String::new()
    };
    let mut rel = json!({
        "name": r.release, "namespace": r.namespace, "version": version_n,
        "info": {"first_deployed": first, "last_deployed": now(), "deleted": "", "description": underway, "status": pending},
        "chart": {"metadata": {"name": r.chart, "version": version, "appVersion": app_version}},
        "config": values, "manifest": manifest, "rendered": objects, "apply_method": method.name(),
    });
    if let Err(e) = store_release(s, &rel) {
        return fail(format!("{verb}: {}", e.message));
    }
    if r.die_pending {
        return Response {
            code: 137,
            ..Response::default()
        };
    }
    if let Err(e) = apply_objects(s, &r.release, &r.namespace, &objects, method) {
        set_status(
            s,
            &mut rel,
            "failed",
            &format!("Release \"{}\" failed: {}", r.release, e.message),
        );
        return fail(format!("{verb}: {}", e.message));
    }
    prune_previous(s, &history, &manifest, &r.namespace);
    let description = if history.is_empty() {
        "Install complete"
    } else {
        "Upgrade complete"
    };
    let head = if history.is_empty() && r.op == "upgrade" {
        format!(
            "Release \"{}\" does not exist. Installing it now.\n",
            r.release
        )
    } else if history.is_empty() {
        String::new()
    } else {
        format!(
            "Release \"{}\" has been upgraded. Happy Helming!\n",
            r.release
        )
    };
    started(
        format!(
            "{head}NAME: {}\nLAST DEPLOYED: {}\nNAMESPACE: {}\nSTATUS: deployed\nREVISION: {version_n}\nTEST SUITE: None\n",
            r.release,
            rel["info"]["last_deployed"].as_str().unwrap_or_default(),
            r.namespace
        ),
        Finish {
            op: "deploy".into(),
            release: r.release.clone(),
            namespace: r.namespace.clone(),
            version: version_n,
            description: description.into(),
            keep_history: false,
        },
    )
}

/// The second half: record the outcome of an operation whose first half left the release
/// pending. The release may have changed meanwhile (another client recovered it): what this
/// records then is what Helm would, the last writer winning.
fn finish(s: &mut Store, f: &Finish) -> Response {
    let history = revisions(s, &f.namespace, &f.release);
    match f.op.as_str() {
        "uninstall" => {
            if f.keep_history {
                if let Some(last) = history.last() {
                    let mut last = last.clone();
                    set_status(s, &mut last, "uninstalled", "Uninstallation complete");
                }
            } else {
                for h in &history {
                    let v = h["version"].as_u64().unwrap_or(0);
                    let _ = s.delete(&res("secrets"), &f.namespace, &secret_name(&f.release, v));
                }
            }
            ok("")
        }
        _ => {
            let Some(mut rel) = history
                .iter()
                .find(|h| h["version"].as_u64() == Some(f.version))
                .cloned()
            else {
                return fail(format!(
                    "failed to record release {} version {}: release: not found",
                    f.release, f.version
                ));
            };
            for h in &history {
                let earlier = h["version"].as_u64().unwrap_or(0) != f.version;
                if earlier && (h["info"]["status"] == "deployed" || h["info"]["status"] == "failed")
                {
                    // helm keeps a superseded revision's description.
                    let mut h = h.clone();
                    let description = h["info"]["description"].clone();
                    set_status(
                        s,
                        &mut h,
                        "superseded",
                        description.as_str().unwrap_or_default(),
                    );
                }
            }
            set_status(s, &mut rel, "deployed", &f.description);
            ok("")
        }
    }
}

/// After a new revision applied: remove what the last deployed revision had and the new one
/// does not (earlier revisions are marked superseded when the operation finishes).
fn prune_previous(s: &mut Store, history: &[Value], manifest: &[Value], namespace: &str) {
    if let Some(prev) = history
        .iter()
        .rev()
        .find(|h| h["info"]["status"] == "deployed")
    {
        prune(s, prev, manifest, namespace);
    }
}

/// `--create-namespace`: Helm creates the namespace labelled with its name.
fn create_namespace(s: &mut Store, ns: &str, method: Method) {
    let obj = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": ns, "labels": {"name": ns}}});
    let namespaces = res("namespaces");
    let _ = match method {
        Method::ClientSide => ssa::create(s, &namespaces, "", obj, MANAGER),
        Method::ServerSide { .. } => {
            let target = ssa::Target {
                res: &namespaces,
                namespace: "",
                name: ns,
                subresource: None,
            };
            ssa::apply(s, &target, obj, MANAGER, false).map(|a| a.object)
        }
    };
}

/// Create or replace each object, with Helm's ownership metadata; status is kept.
fn apply_objects(
    s: &mut Store,
    release: &str,
    ns: &str,
    objects: &[Value],
    method: Method,
) -> Result<(), ApiError> {
    // CRDs first, as Helm does, so custom objects of the same release can follow.
    let mut ordered: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == "CustomResourceDefinition")
        .collect();
    ordered.extend(
        objects
            .iter()
            .filter(|o| o["kind"] != "CustomResourceDefinition"),
    );
    for obj in ordered {
        let rs = resource_for(s, obj).ok_or_else(|| {
            ApiError::new(
                404,
                "NotFound",
                format!("no matches for kind \"{}\"", obj["kind"]),
            )
        })?;
        let mut obj = obj.clone();
        let obj_ns = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or(ns)
            .to_string();
        obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] = json!("Helm");
        obj["metadata"]["annotations"]["meta.helm.sh/release-name"] = json!(release);
        obj["metadata"]["annotations"]["meta.helm.sh/release-namespace"] = json!(ns);
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let target = ssa::Target {
            res: &rs,
            namespace: &obj_ns,
            name: &name,
            subresource: None,
        };
        if let Method::ServerSide { force_conflicts } = method {
            if rs.namespaced {
                obj["metadata"]["namespace"] = json!(obj_ns);
            }
            ssa::apply(s, &target, obj, MANAGER, force_conflicts).map_err(|mut e| {
                if e.code == 409 && !e.causes.is_empty() {
                    let shown_ns = if rs.namespaced { obj_ns.as_str() } else { "" };
                    e.message = format!(
                        "conflict occurred while applying object {shown_ns}/{name} {}/{}, Kind={}: {}",
                        rs.group, rs.version, rs.kind, e.message
                    );
                }
                e
            })?;
            continue;
        }
        match s.get(&rs, &obj_ns, &name) {
            Ok(existing) => {
                if let Some(st) = existing.get("status") {
                    obj["status"] = st.clone();
                }
                // Webhook caBundles are patched in by istiod; Helm's three-way merge keeps them.
                keep_ca_bundles(&existing, &mut obj);
                if strip(&existing) != strip(&obj) {
                    ssa::replace(s, &target, obj, MANAGER)?;
                }
            }
            Err(_) => {
                ssa::create(s, &rs, &obj_ns, obj, MANAGER)?;
            }
        }
    }
    Ok(())
}

fn keep_ca_bundles(existing: &Value, obj: &mut Value) {
    let (Some(old), Some(new)) = (
        existing.get("webhooks").and_then(Value::as_array),
        obj.get_mut("webhooks").and_then(Value::as_array_mut),
    ) else {
        return;
    };
    for w in new.iter_mut() {
        let same_target = old.iter().find(|o| {
            o["name"] == w["name"]
                && o.pointer("/clientConfig/service") == w.pointer("/clientConfig/service")
        });
        if let Some(o) = same_target
            && let Some(ca) = o.pointer("/clientConfig/caBundle")
        {
            w["clientConfig"]["caBundle"] = ca.clone();
        }
    }
}

/// An object without server-set fields, to tell whether an apply changes anything.
fn strip(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in ["resourceVersion", "uid", "creationTimestamp", "generation"] {
            m.remove(k);
        }
    }
    if let Some(m) = o.as_object_mut() {
        m.remove("status");
    }
    if let Some(spec) = o.get_mut("spec").and_then(Value::as_object_mut) {
        spec.remove("clusterIP");
        spec.remove("clusterIPs");
    }
    o
}

/// Delete what the previous release had and the new one does not (kept resources stay).
fn prune(s: &mut Store, prev: &Value, manifest: &[Value], default_ns: &str) {
    for old in prev["manifest"].as_array().into_iter().flatten() {
        let still = manifest.iter().any(|m| {
            m["kind"] == old["kind"]
                && m["name"] == old["name"]
                && m["namespace"] == old["namespace"]
        });
        if still || old["keep"] == true {
            continue;
        }
        delete_ref(s, old, default_ns);
    }
}

fn delete_ref(s: &mut Store, r: &Value, default_ns: &str) {
    if let Some(rs) = resource_for(s, r) {
        let ns = r["namespace"].as_str().unwrap_or(default_ns);
        let _ = s.delete(&rs, ns, r["name"].as_str().unwrap_or_default());
    }
}

fn uninstall(s: &mut Store, r: &Request) -> Response {
    let history = revisions(s, &r.namespace, &r.release);
    let Some(last) = history.last() else {
        return fail(format!(
            "uninstall: Release not loaded: {}: release: not found",
            r.release
        ));
    };
    let mut marked = last.clone();
    set_status(
        s,
        &mut marked,
        "uninstalling",
        "Deletion in progress (or silently failed)",
    );
    for obj in last["manifest"].as_array().into_iter().flatten() {
        if obj["keep"] != true {
            delete_ref(s, obj, &r.namespace);
        }
    }
    started(
        format!("release \"{}\" uninstalled\n", r.release),
        Finish {
            op: "uninstall".into(),
            release: r.release.clone(),
            namespace: r.namespace.clone(),
            version: last["version"].as_u64().unwrap_or(0),
            description: "Uninstallation complete".into(),
            keep_history: r.keep_history,
        },
    )
}

fn rollback(s: &mut Store, r: &Request) -> Response {
    let history = revisions(s, &r.namespace, &r.release);
    let Some(last) = history.last() else {
        return fail(format!("release: not found: {}", r.release));
    };
    let current = last["version"].as_u64().unwrap_or(0);
    let target_v = r
        .revision
        .filter(|v| *v > 0)
        .unwrap_or(current.saturating_sub(1));
    let Some(target) = history
        .iter()
        .find(|h| h["version"].as_u64() == Some(target_v))
    else {
        return fail(format!("release has no {target_v} version"));
    };
    // What that revision applied, as helm keeps its manifest (the fake keeps the objects; a
    // release the real helm made has its manifest as YAML).
    let objects: Vec<Value> = match (&target["rendered"], &target["manifest"]) {
        (Value::Array(objects), _) => objects.clone(),
        (_, Value::String(yaml)) => crate::render::parse(yaml).unwrap_or_default(),
        _ => Vec::new(),
    };
    let mut rel = target.clone();
    rel["version"] = json!(current + 1);
    rel["info"]["last_deployed"] = json!(now());
    let method = Method::of(r, &history);
    rel["apply_method"] = json!(method.name());
    set_status(s, &mut rel, "pending-rollback", "Rollback in progress");
    if let Err(e) = apply_objects(s, &r.release, &r.namespace, &objects, method) {
        set_status(s, &mut rel, "failed", &e.message);
        return fail(format!("ROLLBACK FAILED: {}", e.message));
    }
    let manifest: Vec<Value> = objects.iter().map(|o| ref_of(o, &r.namespace)).collect();
    prune_previous(s, &history, &manifest, &r.namespace);
    started(
        "Rollback was a success! Happy Helming!\n",
        Finish {
            op: "deploy".into(),
            release: r.release.clone(),
            namespace: r.namespace.clone(),
            version: current + 1,
            description: format!("Rollback to {target_v}"),
            keep_history: false,
        },
    )
}

fn all_releases(s: &Store, ns: &str) -> Vec<Value> {
    let sel = crate::selector::Selector::parse("owner=helm").unwrap_or_default();
    let mut latest: std::collections::BTreeMap<(String, String), Value> = Default::default();
    for rel in s
        .list(&res("secrets"), ns, &sel, &Default::default())
        .iter()
        .filter_map(decode)
    {
        let key = (
            rel["namespace"].as_str().unwrap_or_default().to_string(),
            rel["name"].as_str().unwrap_or_default().to_string(),
        );
        let newer = latest
            .get(&key)
            .is_none_or(|l| l["version"].as_u64() < rel["version"].as_u64());
        if newer {
            latest.insert(key, rel);
        }
    }
    latest.into_values().collect()
}

fn list(s: &Store, r: &Request) -> Response {
    let ns = if r.all_namespaces {
        ""
    } else {
        r.namespace.as_str()
    };
    let wanted: Vec<&str> = if r.statuses.is_empty() {
        vec!["deployed", "failed"]
    } else {
        r.statuses.iter().map(String::as_str).collect()
    };
    let rows: Vec<Value> = all_releases(s, ns)
        .into_iter()
        .filter(|rel| r.all || wanted.contains(&rel["info"]["status"].as_str().unwrap_or("")))
        .map(|rel| {
            json!({
                "name": rel["name"], "namespace": rel["namespace"],
                "revision": rel["version"].as_u64().unwrap_or(0).to_string(),
                "updated": helm_time(rel["info"]["last_deployed"].as_str().unwrap_or_default()),
                "status": rel["info"]["status"],
                "chart": format!("{}-{}", rel["chart"]["metadata"]["name"].as_str().unwrap_or_default(),
                    rel["chart"]["metadata"]["version"].as_str().unwrap_or_default()),
                "app_version": rel["chart"]["metadata"]["appVersion"],
            })
        })
        .collect();
    ok(Value::Array(rows).to_string())
}

/// Helm prints times as Go's `time.Time` string.
fn helm_time(rfc3339: &str) -> String {
    rfc3339
        .replace('T', " ")
        .replace('Z', ".000000000 +0000 UTC")
}

fn with_latest(s: &Store, r: &Request, f: impl Fn(&Value) -> Response) -> Response {
    match revisions(s, &r.namespace, &r.release).last() {
        Some(rel) => f(rel),
        None => fail("release: not found"),
    }
}

fn status_json(rel: &Value) -> Value {
    json!({"name": rel["name"], "info": rel["info"], "chart": rel["chart"], "config": rel["config"],
        "version": rel["version"], "namespace": rel["namespace"]})
}

fn history(s: &Store, r: &Request) -> Response {
    let revs = revisions(s, &r.namespace, &r.release);
    if revs.is_empty() {
        return fail("release: not found");
    }
    let rows: Vec<Value> = revs
        .iter()
        .map(|rel| {
            json!({"revision": rel["version"], "updated": rel["info"]["last_deployed"],
                "status": rel["info"]["status"],
                "chart": format!("{}-{}", rel["chart"]["metadata"]["name"].as_str().unwrap_or_default(),
                    rel["chart"]["metadata"]["version"].as_str().unwrap_or_default()),
                "app_version": rel["chart"]["metadata"]["appVersion"],
                "description": rel["info"]["description"]})
        })
        .collect();
    ok(Value::Array(rows).to_string())
}

/// For `--wait`: are the release's Deployments rolled out? stdout `true` or `false`.
fn ready(s: &Store, r: &Request) -> Response {
    let Some(rel) = revisions(s, &r.namespace, &r.release).pop() else {
        return fail("release: not found");
    };
    let done = rel["manifest"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["kind"] == "Deployment")
        .all(|m| {
            s.get(
                &res("deployments"),
                m["namespace"].as_str().unwrap_or_default(),
                m["name"].as_str().unwrap_or_default(),
            )
            .is_ok_and(|d| {
                let want = d
                    .pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(1);
                d.pointer("/status/readyReplicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(0)
                    >= want
                    && d.pointer("/status/updatedReplicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(0)
                        >= want
            })
        });
    ok(done.to_string())
}

/// `req` with the `objects` the fake helm's process would have rendered for it (the real
/// helm's `helm template` of the real chart), for tests that drive [`serve`] directly.
pub fn rendered(req: &Value) -> Result<Value, String> {
    let s = |k: &str| req[k].as_str().unwrap_or_default();
    let objects = crate::render::render(
        s("chart"),
        s("version"),
        "test",
        s("release"),
        s("namespace"),
        &req["values"],
    )?;
    let mut req = req.clone();
    req["objects"] = Value::Array(objects);
    Ok(req)
}
