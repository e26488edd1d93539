//! Server-side apply helpers: one field manager, forced, full objects with apiVersion and kind.

use std::fmt::Debug;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::core::NamespaceResourceScope;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::cache::Cached;
use super::context::Target;
use crate::crd::FIELD_MANAGER;
use crate::error::{Error, Result};
use crate::quantity::parse as quantity;
use crate::resources::claim;

/// Applies `obj` (a child of the target) with server-side apply and returns what the server stored.
pub async fn apply<K>(t: &Target<'_>, obj: &K) -> Result<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Serialize + DeserializeOwned + Clone + Debug,
{
    apply_in(t, &t.names.namespace, obj).await
}

/// `apply` in `namespace` (the operator's own, for the CA key).
pub async fn apply_in<K>(t: &Target<'_>, namespace: &str, obj: &K) -> Result<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Serialize + DeserializeOwned + Clone + Debug,
{
    let api = Api::<K>::namespaced(t.ctx.client.clone(), namespace);
    let name = obj.name_any();
    // Remembered before the request: if it times out, it may still have happened.
    t.ctx.recent.wrote(&K::kind(&()), namespace, &name);
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

/// The sandbox's child `name` as the cache has it; when `writes(cached)` says that would lead to a
/// write (the cache may be behind the operator's own last write), as the API server has it now.
/// `None` when it does not exist; an object of that name that is not the sandbox's (see
/// `resources::claim`) is `Error::Foreign`, and the caller changes nothing.
pub async fn current<K: Cached + Resource<Scope = NamespaceResourceScope>>(
    t: &Target<'_>,
    name: &str,
    adoptable: bool,
    writes: impl Fn(Option<&K>) -> bool,
) -> Result<Option<K>> {
    current_in(t, &t.names.namespace, name, |meta| claim(t.dsb, meta, adoptable), writes).await
}

/// `current` in `namespace`, with `owned` deciding whether an object found is the sandbox's.
pub async fn current_in<K: Cached + Resource<Scope = NamespaceResourceScope>>(
    t: &Target<'_>,
    namespace: &str,
    name: &str,
    owned: impl Fn(&ObjectMeta) -> std::result::Result<(), String>,
    writes: impl Fn(Option<&K>) -> bool,
) -> Result<Option<K>> {
    let cached = t.ctx.caches.get::<K>(Some(namespace), name).map(|o| (*o).clone());
    // The cache holds only labelled children: an object of that name without our labels (someone
    // else's) is invisible to it, so "missing" is confirmed live before anything is created. An object
    // it does hold can be newer than cached only if this process wrote it lately.
    let behind = || t.ctx.recent.has(&K::kind(&()), namespace, name);
    let live = writes(cached.as_ref()) && (cached.is_none() || behind());
    let found = if live { get(&Api::<K>::namespaced(t.ctx.client.clone(), namespace), name).await? } else { cached };
    if let Some(obj) = &found {
        owned(obj.meta()).map_err(|why| Error::Foreign {
            kind: K::kind(&()).to_string(),
            name: name.to_string(),
            why,
        })?;
    }
    Ok(found)
}

/// `current` for a child that is wanted as `desired` (built for what the cache holds): re-read
/// live only when the cached one is missing or differs.
pub async fn current_for<K: Cached + Resource<Scope = NamespaceResourceScope> + Serialize>(
    t: &Target<'_>,
    name: &str,
    adoptable: bool,
    desired: impl Fn(Option<&K>) -> K,
) -> Result<Option<K>> {
    current(t, name, adoptable, |c: Option<&K>| c.is_none_or(|c| !up_to_date(&desired(Some(c)), c))).await
}

/// The sandbox's child `name` as the API server has it now (for a write that is already decided).
pub async fn live<K: Cached + Resource<Scope = NamespaceResourceScope>>(
    t: &Target<'_>,
    name: &str,
    adoptable: bool,
) -> Result<Option<K>> {
    let found = get(&t.api::<K>(), name).await?;
    if let Some(obj) = &found {
        claim(t.dsb, obj.meta(), adoptable).map_err(|why| Error::Foreign {
            kind: K::kind(&()).to_string(),
            name: name.to_string(),
            why,
        })?;
    }
    Ok(found)
}

/// Applies `desired` (built `stamped`) unless `current` already has it (then `current` is the
/// answer): a sandbox whose children are as wanted costs no write.
pub async fn ensure<K>(t: &Target<'_>, desired: &K, current: Option<K>) -> Result<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Serialize + DeserializeOwned + Clone + Debug,
{
    match current {
        Some(c) if up_to_date(desired, &c) => Ok(c),
        _ => apply(t, desired).await,
    }
}

/// Annotation on applied children: a hash of what the operator last applied, so a field it stops
/// setting is noticed (a plain "is what we want there" check cannot see a removal).
pub const APPLIED_HASH_ANNOTATION: &str = "dockersandbox.dev/applied-hash";

/// `obj` with `APPLIED_HASH_ANNOTATION` set to the hash of the rest of it.
pub fn stamped<K: Resource + Serialize + Clone>(obj: &K) -> K {
    let mut out = obj.clone();
    out.annotations_mut().remove(APPLIED_HASH_ANNOTATION);
    let bytes = serde_json::to_vec(&out).unwrap_or_default();
    let hash = format!("{:x}", Sha256::digest(&bytes));
    out.annotations_mut().insert(APPLIED_HASH_ANNOTATION.to_string(), hash[..16].to_string());
    out
}

/// Whether `current` has everything `desired` sets (the API server adds defaults and status, so
/// `current` may hold more); quantities compare by value (`1024Mi` is stored as `1Gi`).
pub fn up_to_date<K: Serialize>(desired: &K, current: &K) -> bool {
    match (serde_json::to_value(desired), serde_json::to_value(current)) {
        (Ok(d), Ok(c)) => contains(&c, &d),
        _ => false,
    }
}

fn contains(have: &Value, want: &Value) -> bool {
    match (have, want) {
        (Value::Object(h), Value::Object(w)) => w.iter().all(|(k, v)| h.get(k).is_some_and(|hv| contains(hv, v))),
        (Value::Array(h), Value::Array(w)) => h.len() == w.len() && h.iter().zip(w).all(|(hv, wv)| contains(hv, wv)),
        (Value::String(h), Value::String(w)) => {
            h == w
                || (looks_like_quantity(h)
                    && looks_like_quantity(w)
                    && quantity(h).is_some_and(|a| quantity(w) == Some(a)))
        }
        _ => have == want,
    }
}

/// Quantities start with a digit (so `e3` or `Mi` alone are never taken for one).
fn looks_like_quantity(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_digit())
}

/// Deletes the child `obj` of the target, that very object: the request carries its UID as a
/// precondition, so an object that took its name meanwhile (someone else's) is never deleted. One
/// that is already gone, or replaced, is fine: the next reconcile looks again.
pub async fn delete<K>(t: &Target<'_>, obj: &K) -> Result<()>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + DeserializeOwned + Clone + Debug,
{
    let name = obj.name_any();
    t.ctx.recent.wrote(&K::kind(&()), &t.names.namespace, &name);
    let params = DeleteParams {
        preconditions: obj.uid().map(|uid| Preconditions { uid: Some(uid), resource_version: None }),
        ..DeleteParams::background()
    };
    match t.api::<K>().delete(&name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => Err(Error::kube("delete", K::kind(&()), &name)(e)),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Service;
    use serde_json::json;

    use super::*;

    fn svc(v: Value) -> Service {
        serde_json::from_value(v).expect("service")
    }

    #[test]
    fn defaults_added_by_the_server_do_not_count_as_a_difference() {
        let desired = svc(json!({"metadata": {"name": "web", "labels": {"a": "1"}},
            "spec": {"ports": [{"name": "docker-tls", "port": 2376}], "selector": {"x": "y"}}}));
        let stored = svc(json!({"metadata": {"name": "web", "labels": {"a": "1"}, "uid": "u", "resourceVersion": "7"},
            "spec": {"ports": [{"name": "docker-tls", "port": 2376, "protocol": "TCP", "targetPort": 2376}],
                     "selector": {"x": "y"}, "clusterIP": "10.96.0.10", "sessionAffinity": "None"},
            "status": {"loadBalancer": {}}}));
        assert!(up_to_date(&desired, &stored));
    }

    #[test]
    fn an_edited_or_missing_field_is_a_difference() {
        let desired =
            svc(json!({"metadata": {"name": "web", "labels": {"a": "1"}}, "spec": {"ports": [{"port": 2376}]}}));
        let edited =
            svc(json!({"metadata": {"name": "web", "labels": {"a": "2"}}, "spec": {"ports": [{"port": 2376}]}}));
        let missing = svc(json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 2376}]}}));
        let extra_port = svc(json!({"metadata": {"name": "web", "labels": {"a": "1"}},
            "spec": {"ports": [{"port": 2376}, {"port": 1}]}}));
        assert!(!up_to_date(&desired, &edited));
        assert!(!up_to_date(&desired, &missing));
        assert!(!up_to_date(&desired, &extra_port), "a list must match entry by entry");
    }

    #[test]
    fn quantities_compare_by_value_only_when_both_are_quantities() {
        assert!(contains(&json!("1Gi"), &json!("1024Mi")));
        assert!(!contains(&json!("2Gi"), &json!("1024Mi")));
        assert!(!contains(&json!("Mi"), &json!("Mi ")));
    }

    #[test]
    fn the_stamp_changes_when_a_field_is_dropped_and_is_stable_otherwise() {
        let with = svc(json!({"metadata": {"name": "web", "annotations": {"team": "a"}}}));
        let without = svc(json!({"metadata": {"name": "web"}}));
        let (a, b) = (stamped(&with), stamped(&without));
        assert_eq!(stamped(&a).annotations(), a.annotations(), "stamping twice changes nothing");
        assert_ne!(a.annotations()[APPLIED_HASH_ANNOTATION], b.annotations()[APPLIED_HASH_ANNOTATION]);
        // What was applied with the annotation no longer satisfies the smaller wish.
        assert!(!up_to_date(&b, &a));
        assert!(up_to_date(&a, &a));
    }
}
