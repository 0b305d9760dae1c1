//! The OpenAPI documents the API server publishes, which kubectl and helm read before they
//! write: `/openapi/v3` (the list of group-versions, each with a `?hash=` URL),
//! `/openapi/v3/<group-version>` (one OpenAPI 3.0 document), and `/openapi/v2` (Swagger 2.0,
//! JSON only). kubectl looks for `fieldValidation` among a PATCH's parameters in the v3
//! document of the kind it writes and, finding it, leaves field validation to the server
//! (`validation`) instead of downloading schemas to validate itself; `kubectl explain` and
//! client-side apply's strategic merge read the schemas.
//!
//! Caching as the API server does it: a document's hash is the SHA-512 of its JSON; asked for
//! with the current `?hash=` it is `Cache-Control: public, immutable`, with an old hash it
//! redirects (301) to the current URL; every answer has an `ETag` and honours
//! `If-None-Match`. Built-in documents are made once per process; the CRDs' documents once per
//! change of the CRDs (`Cache`, one per API server).
//!
//! Caveats: no protobuf forms (a client asking only for protobuf gets `406 Not Acceptable`, what
//! the API server answers an Accept it cannot serve), no `apis/<group>` or `version` documents,
//! and no `watch/` paths.

mod builtin;
mod crd;
mod document;
mod swagger;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, Mutex};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha512};

pub use builtin::{BUILTIN, Builtin, Kind, OBJECT_META, REF_PREFIX, referenced};
pub use crd::kind_schema;

use crate::store::{Store, builtin_resources, res};

/// A document as served: its JSON and the hash clients cache it by.
#[derive(Debug)]
pub struct Doc {
    pub body: Bytes,
    pub hash: String,
}

impl Doc {
    fn new(v: &Value) -> Self {
        let body = Bytes::from(serde_json::to_vec(v).unwrap_or_default());
        Self {
            hash: hash(&body),
            body,
        }
    }
}

/// Upper-case hex SHA-512, as kube-openapi names a document's version.
fn hash(data: &[u8]) -> String {
    Sha512::digest(data)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

/// The built-in group-versions' documents (`api/v1`, `apis/apps/v1`, ...).
static BUILTIN_DOCS: LazyLock<BTreeMap<String, Arc<Doc>>> = LazyLock::new(|| {
    let mut by_gv: BTreeMap<String, Vec<document::Served>> = BTreeMap::new();
    for r in builtin_resources() {
        let Some(k) = BUILTIN.kind(&r.group, &r.version, &r.kind) else {
            continue;
        };
        let core_pods = r.group.is_empty() && r.plural == "pods";
        by_gv
            .entry(gv_path(&r.group, &r.version))
            .or_default()
            .push(document::Served {
                group: r.group.clone(),
                version: r.version.clone(),
                plural: r.plural.clone(),
                kind: r.kind.clone(),
                namespaced: r.namespaced,
                definition: k.definition.clone(),
                list_definition: k.list_definition(),
                status: true,
                eviction: core_pods.then(|| "io.k8s.api.policy.v1.Eviction".to_string()),
                strategic: true,
            });
    }
    by_gv
        .into_iter()
        .map(|(path, served)| {
            let doc = document::group_version(
                &served,
                &[&BUILTIN.definitions],
                "Kubernetes",
                crate::api::GIT_VERSION,
            );
            (path, Arc::new(Doc::new(&doc)))
        })
        .collect()
});

/// `api/v1`, `apis/apps/v1`: a group-version's path under `/openapi/v3/`.
pub fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// Documents by group-version path.
type Docs = BTreeMap<String, Arc<Doc>>;

/// One API server's documents of its CRDs and its Swagger document, made again only when a
/// CRD changes.
#[derive(Debug, Default)]
pub struct Cache {
    crds: Mutex<Option<(Vec<String>, Arc<Docs>)>>,
    v2: Mutex<Option<(Vec<String>, Arc<Doc>)>>,
}

impl Cache {
    /// Every group-version document of the cluster: built-in ones and the CRDs'.
    pub fn documents(&self, s: &Store) -> BTreeMap<String, Arc<Doc>> {
        let mut all = BUILTIN_DOCS.clone();
        for (path, doc) in self.crd_documents(s).1.iter() {
            all.entry(path.clone()).or_insert_with(|| doc.clone());
        }
        all
    }

    fn crd_documents(&self, s: &Store) -> (Vec<String>, Arc<Docs>) {
        let crd_res = res("customresourcedefinitions");
        let fingerprint: Vec<String> = s
            .each(&crd_res)
            .map(|c| {
                let t = |p: &str| c.pointer(p).and_then(Value::as_str).unwrap_or_default();
                format!(
                    "{} {} {}",
                    t("/metadata/name"),
                    t("/metadata/uid"),
                    t("/metadata/resourceVersion")
                )
            })
            .collect();
        let mut cached = lock(&self.crds);
        if let Some((f, docs)) = cached.as_ref()
            && *f == fingerprint
        {
            return (f.clone(), docs.clone());
        }
        let crds: Vec<&Value> = s.each(&crd_res).collect();
        let docs: BTreeMap<String, Arc<Doc>> = crd::group_versions(&crds)
            .into_iter()
            .map(|(path, gv)| {
                let doc = document::group_version(
                    &gv.served,
                    &[&gv.definitions, &BUILTIN.definitions],
                    "Kubernetes CRD Swagger",
                    "v0.1.0",
                );
                (path, Arc::new(Doc::new(&doc)))
            })
            .collect();
        let docs = Arc::new(docs);
        *cached = Some((fingerprint.clone(), docs.clone()));
        (fingerprint, docs)
    }

    /// The Swagger 2.0 document of everything the cluster serves.
    pub fn swagger(&self, s: &Store) -> Arc<Doc> {
        let (fingerprint, crd_docs) = self.crd_documents(s);
        let mut cached = lock(&self.v2);
        if let Some((f, doc)) = cached.as_ref()
            && *f == fingerprint
        {
            return doc.clone();
        }
        let parsed: Vec<Value> = BUILTIN_DOCS
            .values()
            .chain(crd_docs.values())
            .filter_map(|d| serde_json::from_slice(&d.body).ok())
            .collect();
        let doc = Arc::new(Doc::new(&swagger::from_v3(
            parsed.iter(),
            crate::api::GIT_VERSION,
        )));
        *cached = Some((fingerprint, doc.clone()));
        doc
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// The root `/openapi/v3` document: each group-version and the URL of its current version.
pub fn root(docs: &BTreeMap<String, Arc<Doc>>) -> Value {
    let paths: Map<String, Value> = docs
        .iter()
        .map(|(path, d)| {
            (
                path.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={}", d.hash)}),
            )
        })
        .collect();
    json!({"paths": paths})
}

/// Answer `GET /openapi/<rest>`.
pub fn respond(
    s: &Store,
    cache: &Cache,
    rest: &[&str],
    query: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("*/*");
    match rest {
        ["v3"] => {
            let doc = Doc::new(&root(&cache.documents(s)));
            serve(&doc, "application/json", headers, false)
        }
        ["v3", gv @ ..] => {
            let path = gv.join("/");
            let Some(doc) = cache.documents(s).get(&path).cloned() else {
                return plain(StatusCode::NOT_FOUND, format!("404 page not found: {path}"));
            };
            if negotiate(accept, &["application/json"]).is_none() {
                return not_acceptable();
            }
            match query.get("hash") {
                Some(h) if !h.is_empty() && *h != doc.hash => {
                    let to = format!("/openapi/v3/{path}?hash={}", doc.hash);
                    Response::builder()
                        .status(StatusCode::MOVED_PERMANENTLY)
                        .header(header::LOCATION, to)
                        .body(Body::empty())
                        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
                }
                Some(h) if !h.is_empty() => serve(&doc, "application/json", headers, true),
                _ => serve(&doc, "application/json", headers, false),
            }
        }
        ["v2"] => {
            if negotiate(accept, &["application/json"]).is_none() {
                return not_acceptable();
            }
            serve(&cache.swagger(s), "application/json", headers, false)
        }
        _ => plain(StatusCode::NOT_FOUND, "404 page not found".into()),
    }
}

fn plain(code: StatusCode, text: String) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

/// What kube-openapi answers an Accept it has no format for: 406 and nothing else.
fn not_acceptable() -> Response {
    Response::builder()
        .status(StatusCode::NOT_ACCEPTABLE)
        .header(header::VARY, "Accept")
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn serve(doc: &Doc, content_type: &str, headers: &HeaderMap, immutable: bool) -> Response {
    let etag = format!("\"{}\"", doc.hash);
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut b = Response::builder()
        .header(header::ETAG, etag)
        .header(header::VARY, "Accept");
    if immutable {
        let expires = httpdate::fmt_http_date(
            std::time::SystemTime::now() + std::time::Duration::from_secs(365 * 86_400),
        );
        b = b
            .header(header::CACHE_CONTROL, "public, immutable")
            .header(header::EXPIRES, expires);
    }
    let r = if unchanged {
        b.status(StatusCode::NOT_MODIFIED).body(Body::empty())
    } else {
        b.status(StatusCode::OK)
            .header(
                header::CONTENT_TYPE,
                HeaderValue::from_str(content_type)
                    .unwrap_or(HeaderValue::from_static("application/json")),
            )
            .body(Body::from(doc.body.clone()))
    };
    r.unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// The first of `offered` the Accept header takes, its clauses in order of preference
/// (`q`, then as written); `*/*` and `application/*` take anything.
fn negotiate<'a>(accept: &str, offered: &[&'a str]) -> Option<&'a str> {
    let mut clauses: Vec<(f32, usize, &str)> = accept
        .split(',')
        .enumerate()
        .filter_map(|(i, c)| {
            let mut parts = c.split(';');
            let media = parts.next()?.trim();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            (q > 0.0 && !media.is_empty()).then_some((q, i, media))
        })
        .collect();
    clauses.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    clauses.iter().find_map(|(_, _, media)| {
        offered.iter().copied().find(|o| {
            let (t, st) = o.split_once('/').unwrap_or((o, ""));
            let (ct, cst) = media.split_once('/').unwrap_or((media, ""));
            (ct == "*" || ct == t) && (cst == "*" || cst == st)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_headers_pick_json_or_nothing() {
        assert_eq!(
            negotiate("application/json, */*", &["application/json"]),
            Some("application/json")
        );
        assert_eq!(
            negotiate("*/*", &["application/json"]),
            Some("application/json")
        );
        assert_eq!(
            negotiate(
                "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
                &["application/json"]
            ),
            None
        );
        assert_eq!(
            negotiate(
                "application/com.github.proto-openapi.spec.v2@v1.0+protobuf, application/json;q=0.5",
                &["application/json"]
            ),
            Some("application/json")
        );
    }

    #[test]
    fn every_builtin_group_version_has_a_document_with_field_validation_on_patch() {
        let docs = &*BUILTIN_DOCS;
        for gv in [
            "api/v1",
            "apis/apps/v1",
            "apis/batch/v1",
            "apis/autoscaling/v2",
        ] {
            assert!(docs.contains_key(gv), "{gv}");
        }
        let apps: Value = serde_json::from_slice(&docs["apis/apps/v1"].body).expect("json");
        let patch =
            &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"],
            json!({"group": "apps", "kind": "Deployment", "version": "v1"})
        );
        let names: Vec<&str> = patch["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert_eq!(
            names,
            ["dryRun", "fieldManager", "fieldValidation", "force"]
        );
        assert!(apps["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"].is_object());
        assert!(apps["components"]["schemas"]["io.k8s.api.core.v1.Pod"].is_null());
        assert_eq!(docs["apis/apps/v1"].hash.len(), 128);
    }
}
