//! Fixture builders for the objects the mesh rules read, for unit tests here and in `ops`:
//! `pod("apps", "web-1").owned_by("ReplicaSet", "web-5d9c").injected("1-30-3", IMAGE)`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};

/// A pod `namespace/name` with one app container, owned by nothing, not injected.
pub(crate) fn pod(namespace: &str, name: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            namespace: Some(namespace.into()),
            name: Some(name.into()),
            uid: Some(format!("uid-{namespace}-{name}")),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![container("app", "example/app:1")],
            ..PodSpec::default()
        }),
        status: None,
    }
}

pub(crate) fn container(name: &str, image: &str) -> Container {
    Container {
        name: name.into(),
        image: Some(image.into()),
        ..Container::default()
    }
}

pub(crate) fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Changes to a fixture pod, chained.
pub(crate) trait PodFixture {
    /// Its first owner reference is `kind/name`.
    fn owned_by(self, kind: &str, name: &str) -> Self;
    /// An `istio-proxy` container with `image` and the revision annotation, as injection
    /// leaves a pod.
    fn injected(self, revision: &str, image: &str) -> Self;
    fn labelled(self, key: &str, value: &str) -> Self;
    /// A deletion timestamp: asked to stop.
    fn terminating(self) -> Self;
}

impl PodFixture for Pod {
    fn owned_by(mut self, kind: &str, name: &str) -> Self {
        self.metadata.owner_references = Some(vec![OwnerReference {
            kind: kind.into(),
            name: name.into(),
            ..OwnerReference::default()
        }]);
        self
    }

    fn injected(mut self, revision: &str, image: &str) -> Self {
        if let Some(spec) = &mut self.spec {
            spec.containers.push(container("istio-proxy", image));
        }
        self.metadata
            .annotations
            .get_or_insert_default()
            .insert("istio.io/rev".into(), revision.into());
        self
    }

    fn labelled(mut self, key: &str, value: &str) -> Self {
        self.metadata
            .labels
            .get_or_insert_default()
            .insert(key.into(), value.into());
        self
    }

    fn terminating(mut self) -> Self {
        self.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        self
    }
}
