//! Server-side apply helpers: one field manager, forced, full objects with apiVersion and kind.

use std::fmt::Debug;

use kube::api::{DeleteParams, Patch, PatchParams};
use kube::core::NamespaceResourceScope;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::crd::{DockerSandbox, FIELD_MANAGER};
use crate::error::{Error, Result};
use crate::resources::claim;

/// Applies `obj` with server-side apply and returns what the server stored.
pub async fn apply<K>(api: &Api<K>, obj: &K) -> Result<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Serialize + DeserializeOwned + Clone + Debug,
{
    let name = obj.name_any();
    let mut body = serde_json::to_value(obj).map_err(|e| Error::Kube {
        action: "serialize",
        kind: K::kind(&()).to_string(),
        name: name.clone(),
        source: kube::Error::SerdeError(e),
    })?;
    body["apiVersion"] = K::api_version(&()).into();
    body["kind"] = K::kind(&()).into();
    api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body)).await.map_err(Error::kube(
        "apply",
        K::kind(&()),
        &name,
    ))
}

/// Gets an object, `None` when it does not exist.
pub async fn get<K>(api: &Api<K>, name: &str) -> Result<Option<K>>
where
    K: Resource + DeserializeOwned + Clone + Debug,
    K: Resource<DynamicType = ()>,
{
    api.get_opt(name).await.map_err(Error::kube("get", K::kind(&()), name))
}

/// Gets a child of `dsb`, `None` when it does not exist; an object of that name that is not the
/// sandbox's (see `resources::claim`) is `Error::Foreign`, and the caller changes nothing.
pub async fn get_child<K>(api: &Api<K>, dsb: &DockerSandbox, name: &str, adoptable: bool) -> Result<Option<K>>
where
    K: Resource<DynamicType = ()> + DeserializeOwned + Clone + Debug,
{
    let found = get(api, name).await?;
    if let Some(obj) = &found {
        claim(dsb, obj.meta(), adoptable).map_err(|why| Error::Foreign {
            kind: K::kind(&()).to_string(),
            name: name.to_string(),
            why,
        })?;
    }
    Ok(found)
}

/// Deletes an object; one that is already gone is fine.
pub async fn delete<K>(api: &Api<K>, name: &str) -> Result<()>
where
    K: Resource<DynamicType = ()> + DeserializeOwned + Clone + Debug,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(Error::kube("delete", K::kind(&()), name)(e)),
    }
}
