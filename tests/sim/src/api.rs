//! The simulated Kubernetes API server over HTTPS on 127.0.0.1: discovery, `/version`, and
//! GET/LIST/CREATE/UPDATE/PATCH/DELETE on every stored resource, answering with Kubernetes
//! shapes (`List`, `Status`) so kubectl and kube-rs can talk to it. TLS and who is calling
//! come from `tls`; a connection without a valid client certificate gets 401 for everything.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::pki::Pki;
use crate::selector::{FieldSelector, Selector};
use crate::store::{ApiError, Request, Resource, Store};
use crate::tls::ServerTls;

pub type Shared = Arc<Mutex<Store>>;
pub type SharedKnobs = Arc<std::sync::RwLock<crate::knobs::Knobs>>;

#[derive(Clone)]
struct AppState {
    store: Shared,
    knobs: SharedKnobs,
    openapi: Arc<crate::openapi::Cache>,
}

/// Kubernetes version the sim reports.
pub const GIT_VERSION: &str = "v1.33.4+k3s1";

/// Serve the API over TLS on `listener` until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    store: Shared,
    knobs: SharedKnobs,
    tls: ServerTls,
    cluster: String,
) -> std::io::Result<()> {
    let forward = crate::portforward::Target {
        cluster,
        store: store.clone(),
    };
    let app = Router::new()
        .route(
            "/api/v1/namespaces/{ns}/pods/{name}/portforward",
            axum::routing::any(crate::portforward::handle).with_state(forward),
        )
        .fallback(handle)
        .with_state(AppState {
            store,
            knobs,
            openapi: Arc::default(),
        });
    let anonymous = Router::new().fallback(unauthorized);
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(_) => {
                // Out of file descriptors and the like: wait, as axum::serve does.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        // As Go's net package (and so kube-apiserver) does: TLS writes a response in several
        // records, which Nagle's algorithm would hold back for the client's delayed ACK.
        let _ = tcp.set_nodelay(true);
        let (tls, app, anonymous) = (tls.clone(), app.clone(), anonymous.clone());
        tokio::spawn(async move {
            let Ok(stream) = tls.acceptor.accept(tcp).await else {
                return;
            };
            let router = if tls.authenticated(stream.get_ref().1) {
                app
            } else {
                anonymous
            };
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(
                    hyper_util::rt::TokioIo::new(stream),
                    hyper_util::service::TowerToHyperService::new(router),
                )
                .with_upgrades()
                .await;
        });
    }
}

/// What k3s answers a request without valid credentials (anonymous auth is off).
async fn unauthorized() -> Response {
    error(&ApiError::new(401, "Unauthorized", "Unauthorized"))
}

fn json_response(code: StatusCode, v: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn error(e: &ApiError) -> Response {
    json_response(
        StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &e.status(),
    )
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn handle(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let (down, delay) = {
        let k = match state.knobs.read() {
            Ok(k) => k,
            Err(p) => p.into_inner(),
        };
        (
            k.api_down_until_ms > now_ms(),
            k.slow_verbs.get(method.as_str()).copied().unwrap_or(0),
        )
    };
    if down {
        return error(&ApiError::new(
            503,
            "ServiceUnavailable",
            "the server is currently unable to handle the request",
        ));
    }
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    if path == "/sim/requests" && method == Method::GET {
        let s = match state.store.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        let mutating: Vec<String> = s
            .requests
            .iter()
            .filter(|r| r.is_mutating())
            .map(|r| format!("{} {}", r.verb, r.path))
            .collect();
        return json_response(
            StatusCode::OK,
            &json!({"total": s.requests.len(), "mutating": mutating}),
        );
    }
    if path == "/sim/helm" && method == Method::POST {
        let req = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let mut s = match state.store.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        return json_response(StatusCode::OK, &crate::helm::serve(&mut s, &req));
    }
    let mut s = match state.store.lock() {
        Ok(s) => s,
        Err(p) => p.into_inner(),
    };
    s.requests.push(Request {
        verb: method.to_string(),
        path: path.clone(),
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
    });
    let segs: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    match segs.as_slice() {
        ["version"] => json_response(
            StatusCode::OK,
            &json!({
                "major": "1", "minor": "33", "gitVersion": GIT_VERSION, "platform": "linux/amd64",
                "gitCommit": "sim", "gitTreeState": "clean", "buildDate": "2025-08-01T00:00:00Z",
                "goVersion": "go1.24", "compiler": "gc",
            }),
        ),
        ["api"] => json_response(
            StatusCode::OK,
            &json!({
                "kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
            }),
        ),
        ["apis"] => json_response(StatusCode::OK, &group_list(&s)),
        ["openapi", rest @ ..] if method == Method::GET => {
            crate::openapi::respond(&s, &state.openapi, rest, &query, &headers)
        }
        ["api", "v1"] => json_response(StatusCode::OK, &resource_list(&s, "", "v1")),
        ["apis", g, v] => json_response(StatusCode::OK, &resource_list(&s, g, v)),
        ["api", "v1", rest @ ..] => {
            objects(&mut s, &method, "", "v1", rest, &query, &headers, &body)
        }
        ["apis", g, v, rest @ ..] => objects(&mut s, &method, g, v, rest, &query, &headers, &body),
        _ => error(&ApiError::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )),
    }
}

fn group_list(s: &Store) -> Value {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for r in s.resources.iter().filter(|r| !r.group.is_empty()) {
        match groups.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, vs)) if !vs.contains(&r.version) => vs.push(r.version.clone()),
            Some(_) => {}
            None => groups.push((r.group.clone(), vec![r.version.clone()])),
        }
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(g, vs)| {
            let versions: Vec<Value> = vs
                .iter()
                .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                .collect();
            let preferred = versions[0].clone();
            json!({"name": g, "versions": versions, "preferredVersion": preferred})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn resource_list(s: &Store, group: &str, version: &str) -> Value {
    let mut resources = Vec::new();
    for r in s
        .resources
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        resources.push(json!({
            "name": r.plural, "singularName": r.kind.to_lowercase(), "namespaced": r.namespaced, "kind": r.kind,
            "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
            "shortNames": r.short_names,
        }));
        if r.plural == "pods" {
            resources.push(json!({"name": "pods/eviction", "singularName": "", "namespaced": true, "group": "policy", "version": "v1", "kind": "Eviction", "verbs": ["create"]}));
        }
        resources.push(json!({"name": format!("{}/status", r.plural), "singularName": "", "namespaced": r.namespaced, "kind": r.kind, "verbs": ["get", "patch", "update"]}));
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})
}

#[allow(clippy::too_many_arguments)]
fn objects(
    s: &mut Store,
    method: &Method,
    group: &str,
    version: &str,
    rest: &[&str],
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    // [plural], [plural, name], [namespaces, ns, plural], [namespaces, ns, plural, name, sub?]
    let (ns, plural, name, sub) = match rest {
        [plural] => ("", *plural, None, None),
        ["namespaces", ns, plural] => (*ns, *plural, None, None),
        ["namespaces", ns, plural, name] => (*ns, *plural, Some(*name), None),
        ["namespaces", ns, plural, name, sub] => (*ns, *plural, Some(*name), Some(*sub)),
        [plural, name] => ("", *plural, Some(*name), None),
        [plural, name, sub] => ("", *plural, Some(*name), Some(*sub)),
        _ => {
            return error(&ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ));
        }
    };
    let Some(res) = s.resource(group, version, plural) else {
        return error(&ApiError::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({plural})"),
        ));
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let parsed = match crate::protobuf::request_body(&res, method.as_str(), sub, content_type, body)
    {
        Ok(p) => p,
        Err(e) => return error(&e),
    };
    let watching = query.get("watch").is_some_and(|w| w == "1" || w == "true");
    if watching && method == Method::GET && name.is_none() {
        return match watch(s, &res, ns, query) {
            Ok(r) => r,
            Err(e) => error(&e),
        };
    }
    let manager = crate::ssa::manager_of(
        query.get("fieldManager").map(String::as_str),
        headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok()),
    );
    // Unknown and repeated fields of a create, update or patch (`fieldValidation`).
    let checker = match crate::validation::for_request(s, &res, method.as_str(), sub, query) {
        Ok(c) => c,
        Err(e) => return error(&e),
    };
    let (parsed, mut warnings) = match crate::validation::admit_body(checker.as_ref(), body, parsed)
    {
        Ok(admitted) => admitted,
        Err(e) => return error(&e),
    };
    let target = |n| crate::ssa::Target {
        res: &res,
        namespace: ns,
        name: n,
        subresource: sub,
    };
    let result = match (method.as_str(), name, sub) {
        ("GET", None, _) => list(s, &res, ns, query),
        ("GET", Some(n), None | Some("status")) => s.get(&res, ns, n).map(|o| (StatusCode::OK, o)),
        ("POST", None, _) => match parsed {
            Some(obj) => {
                crate::ssa::create(s, &res, ns, obj, &manager).map(|o| (StatusCode::CREATED, o))
            }
            None => Err(ApiError::new(
                400,
                "BadRequest",
                "the request body is not a JSON object",
            )),
        },
        ("PUT", Some(n), None | Some("status")) => match parsed {
            Some(obj) => {
                crate::ssa::replace(s, &target(n), obj, &manager).map(|o| (StatusCode::OK, o))
            }
            None => Err(ApiError::new(
                400,
                "BadRequest",
                "the request body is not a JSON object",
            )),
        },
        ("PATCH", Some(n), None | Some("status")) => {
            let checks = (checker.as_ref(), &body[..], &mut warnings);
            patch(s, &target(n), headers, parsed, query, &manager, checks)
        }
        ("POST", Some(n), Some("eviction")) if res.plural == "pods" && res.group.is_empty() => {
            crate::controllers::evict(s, ns, n).map(|o| (StatusCode::CREATED, o))
        }
        ("DELETE", Some(n), None) => {
            // DeleteOptions come as a body (kube-rs, kubectl) or query parameters.
            let grace = query
                .get("gracePeriodSeconds")
                .and_then(|g| g.parse().ok())
                .or_else(|| {
                    parsed
                        .as_ref()
                        .and_then(|b| b.get("gracePeriodSeconds"))
                        .and_then(Value::as_i64)
                });
            s.delete_with(&res, ns, n, grace)
                .map(|o| (StatusCode::OK, o))
        }
        _ => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!("{method} is not supported on this path"),
        )),
    };
    let response = match result {
        Ok((code, v)) => json_response(code, &v),
        Err(e) => error(&e),
    };
    crate::validation::with_warnings(response, &warnings)
}

/// A watch stream: one JSON event per line, replaying changes after `resourceVersion` (or
/// every current object as ADDED when none is given), then live changes, until
/// `timeoutSeconds` passes.
fn watch(
    s: &Store,
    res: &Resource,
    ns: &str,
    query: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let (labels, fields) = selectors(query)?;
    let from: u64 = query
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let oldest = s
        .history
        .front()
        .map(|e| e.revision)
        .unwrap_or(s.revision());
    if from != 0 && from + 1 < oldest {
        return Err(ApiError::new(
            410,
            "Expired",
            format!("too old resource version: {from} ({oldest})"),
        ));
    }
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(1800);
    let (group, plural, ns) = (res.group.clone(), res.plural.clone(), ns.to_string());
    let wanted = move |e: &crate::store::Event| {
        e.group == group
            && e.plural == plural
            && (ns.is_empty()
                || e.object
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    == Some(ns.as_str()))
            && labels.matches(&crate::selector::labels_of(&e.object))
            && fields.matches(&e.object)
    };
    let initial_events = query.get("sendInitialEvents").is_some_and(|v| v == "true");
    let mut initial: Vec<String> = if from == 0 || initial_events {
        s.list(res, "", &Selector::default(), &FieldSelector::default())
            .into_iter()
            .map(|o| crate::store::Event {
                revision: 0,
                kind: "ADDED",
                group: res.group.clone(),
                plural: res.plural.clone(),
                object: o,
            })
            .filter(|e| wanted(e))
            .map(|e| line(&e))
            .collect()
    } else {
        s.history
            .iter()
            .filter(|e| e.revision > from && wanted(e))
            .map(line)
            .collect()
    };
    if initial_events {
        // The watch-list protocol: a bookmark marks the end of the initial state.
        let bookmark = json!({"type": "BOOKMARK", "object": {
            "kind": res.kind, "apiVersion": res.api_version(),
            "metadata": {"resourceVersion": s.revision().to_string(),
                "annotations": {"k8s.io/initial-events-end": "true"}}}});
        initial.push(format!("{bookmark}\n"));
    }
    initial.reverse();
    let rx = s.events.subscribe();
    let last = s.revision();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(timeout);
    let stream = futures_util::stream::unfold((initial, rx), move |(mut pending, mut rx)| {
        let wanted = wanted.clone();
        async move {
            if let Some(l) = pending.pop() {
                return Some((Ok::<_, std::convert::Infallible>(l), (pending, rx)));
            }
            loop {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Ok(e)) if e.revision > last && wanted(&e) => {
                        return Some((Ok(line(&e)), (pending, rx)));
                    }
                    Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {
                        continue;
                    }
                    _ => return None,
                }
            }
        }
    });
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(axum::body::Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()))
}

fn line(e: &crate::store::Event) -> String {
    format!("{}\n", json!({"type": e.kind, "object": e.object}))
}

/// The `labelSelector` and `fieldSelector` query parameters; malformed ones are a 400.
fn selectors(query: &HashMap<String, String>) -> Result<(Selector, FieldSelector), ApiError> {
    let param = |k: &str| query.get(k).map(String::as_str).unwrap_or("");
    let labels =
        Selector::parse(param("labelSelector")).map_err(|e| ApiError::new(400, "BadRequest", e))?;
    let fields = FieldSelector::parse(param("fieldSelector"))
        .map_err(|e| ApiError::new(400, "BadRequest", e))?;
    Ok((labels, fields))
}

fn list(
    s: &Store,
    res: &Resource,
    ns: &str,
    query: &HashMap<String, String>,
) -> Result<(StatusCode, Value), ApiError> {
    let (labels, fields) = selectors(query)?;
    let items = s.list(res, ns, &labels, &fields);
    Ok((
        StatusCode::OK,
        json!({
            "kind": format!("{}List", res.kind), "apiVersion": res.api_version(),
            "metadata": {"resourceVersion": s.revision().to_string()}, "items": items,
        }),
    ))
}

/// A patch's field checks: the checker (none for a kind without schema), the raw body, and
/// the warnings to answer with.
type PatchChecks<'a> = (
    Option<&'a crate::validation::Checker>,
    &'a [u8],
    &'a mut Vec<String>,
);

fn patch(
    s: &mut Store,
    target: &crate::ssa::Target,
    headers: &HeaderMap,
    body: Option<Value>,
    query: &HashMap<String, String>,
    manager: &str,
    (checker, raw, warnings): PatchChecks,
) -> Result<(StatusCode, Value), ApiError> {
    let Some(body) = body else {
        return Err(ApiError::new(
            400,
            "BadRequest",
            "the patch body is not JSON",
        ));
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or("")
        .trim();
    let kind = match content_type {
        "application/apply-patch+yaml" | "application/apply-patch+json" => {
            if query.get("fieldManager").is_none_or(String::is_empty) {
                return Err(ApiError::new(
                    400,
                    "BadRequest",
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                ));
            }
            if let Some(c) = checker {
                warnings.extend(c.apply(target.namespace, target.name, raw, &body)?);
            }
            let force = query.get("force").is_some_and(|f| f == "true");
            return crate::ssa::apply(s, target, body, manager, force).map(|a| {
                let code = if a.created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                };
                (code, a.object)
            });
        }
        "application/json-patch+json" => crate::ssa::PatchType::Json,
        "application/strategic-merge-patch+json" => crate::ssa::PatchType::Strategic,
        _ => crate::ssa::PatchType::Merge,
    };
    let raw = if kind == crate::ssa::PatchType::Json {
        &[][..]
    } else {
        raw
    };
    let admit = |obj| match checker {
        Some(c) => c.patched(raw, obj).map(|(o, w)| {
            warnings.extend(w);
            o
        }),
        None => Ok(obj),
    };
    crate::ssa::patch(s, target, kind, &body, manager, admit).map(|o| (StatusCode::OK, o))
}

/// A kubeconfig as k3d writes it (client-go's key order) for a cluster served at `server`:
/// context and cluster `k3d-NAME`, user `admin@k3d-NAME`, the server CA, and the admin's client
/// certificate and key unless `client_cert` is false (a hand-edited or broken kubeconfig).
pub fn kubeconfig(cluster: &str, server: &str, pki: &Pki, client_cert: bool) -> String {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let user = if client_cert {
        format!(
            "  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
            b64(&pki.admin_cert),
            b64(&pki.admin_key)
        )
    } else {
        "  user: {}\n".to_string()
    };
    format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: {server}\n  name: k3d-{cluster}\ncontexts:\n- context:\n    cluster: k3d-{cluster}\n    user: admin@k3d-{cluster}\n  name: k3d-{cluster}\ncurrent-context: k3d-{cluster}\nkind: Config\npreferences: {{}}\nusers:\n- name: admin@k3d-{cluster}\n{user}",
        b64(&pki.server_ca)
    )
}
