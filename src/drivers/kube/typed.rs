//! Typed reads and writes over `kube::Api<K>` for the k8s-openapi objects operations use,
//! converted here at the driver boundary.

use super::*;

impl Kube {
    /// Every object of kind `K`: all of a cluster-scoped kind, or a namespaced kind across
    /// every namespace.
    pub async fn list<K>(&self) -> Result<Vec<K>, Error>
    where
        K: Resource + Clone + DeserializeOwned + Debug,
        K::DynamicType: Default,
    {
        let api: Api<K> = Api::all(self.client.clone());
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|e| self.api_err(e))?;
        Ok(list.items)
    }

    /// Every object of the namespaced kind `K` in `namespace`.
    pub async fn list_in<K>(&self, namespace: &str) -> Result<Vec<K>, Error>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
        K::DynamicType: Default,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), namespace);
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|e| self.api_err(e))?;
        Ok(list.items)
    }

    /// The object `namespace/name` of the namespaced kind `K`, `None` when it does not exist.
    pub async fn get_in<K>(&self, namespace: &str, name: &str) -> Result<Option<K>, Error>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
        K::DynamicType: Default,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), namespace);
        api.get_opt(name).await.map_err(|e| self.api_err(e))
    }

    /// Create an object of the namespaced kind `K` in `namespace`; the API's answer is the
    /// object as created.
    pub async fn create_in<K>(&self, namespace: &str, obj: &K) -> Result<K, Error>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + serde::Serialize
            + Debug,
        K::DynamicType: Default,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), namespace);
        api.create(&post_params(), obj)
            .await
            .map_err(|e| self.api_err(e))
    }

    /// One cluster-scoped object of a typed kind, `None` when it does not exist.
    pub async fn get_cluster_scoped<K>(&self, name: &str) -> Result<Option<K>, Error>
    where
        K: Resource<DynamicType = (), Scope = ClusterResourceScope>
            + Clone
            + DeserializeOwned
            + Debug,
    {
        let api: Api<K> = Api::all(self.client.clone());
        api.get_opt(name).await.map_err(|e| self.api_err(e))
    }

    /// Delete a cluster-scoped object of a typed kind; one already gone is fine.
    pub async fn delete_cluster_scoped<K>(&self, name: &str) -> Result<(), Error>
    where
        K: Resource<DynamicType = (), Scope = ClusterResourceScope>
            + Clone
            + DeserializeOwned
            + Debug,
    {
        let api: Api<K> = Api::all(self.client.clone());
        match api.delete(name, &kube::api::DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(self.api_err(e)),
        }
    }

    /// Create a namespaced object of a typed kind; `Ok(None)` when one of its name exists
    /// (409 AlreadyExists).
    pub async fn create_namespaced<K>(&self, namespace: &str, obj: &K) -> Result<Option<K>, Error>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + serde::Serialize
            + Debug,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), namespace);
        match api.create(&post_params(), obj).await {
            Ok(created) => Ok(Some(created)),
            Err(kube::Error::Api(e)) if e.code == 409 && e.reason == "AlreadyExists" => Ok(None),
            Err(e) => Err(self.api_err(e)),
        }
    }

    /// The Eviction API: `Ok(false)` when a PodDisruptionBudget refuses it for now (429).
    pub async fn evict(&self, namespace: &str, name: &str) -> Result<bool, Error> {
        let api: Api<k8s_openapi::api::core::v1::Pod> =
            Api::namespaced(self.client.clone(), namespace);
        match api.evict(name, &kube::api::EvictParams::default()).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 429 => Ok(false),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(true),
            Err(e) => Err(self.api_err(e)),
        }
    }
}
