//! CA keys live in the operator's namespace, where owner references from a sandbox cannot reach
//! (they do not cross namespaces) and no finalizer holds the sandbox back. So the operator deletes
//! the key of a sandbox that is gone itself: every `SWEEP_EVERY`, a key whose sandbox uid no cached
//! sandbox has, older than `GRACE`, is deleted once the API server confirms that sandbox is gone.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{DeleteParams, Preconditions};
use kube::runtime::reflector::Store;
use kube::{Api, Resource, ResourceExt};
use tracing::{info, warn};

use super::context::Context;
use crate::crd::DockerSandbox;
use crate::resources::secret::{SANDBOX_NAMESPACE_LABEL, SANDBOX_UID_LABEL};
use crate::resources::{activator, label};

/// How often keys are looked at.
pub const SWEEP_EVERY: Duration = Duration::from_secs(20);
/// A key younger than this is never swept (its sandbox may not be in every cache yet).
pub const GRACE: Duration = Duration::from_secs(30);

/// A CA key whose sandbox no cached sandbox is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Orphan {
    /// The key Secret's name and uid.
    pub key: (String, String),
    /// The uid, namespace and name of the sandbox it was for.
    pub sandbox: (String, String, String),
}

/// The orphans among `keys` (CA key Secrets, or activator port policies): old enough, in a watched
/// namespace, for a uid no cached sandbox has.
pub fn orphans<K: Resource>(
    keys: &[Arc<K>],
    sandbox_uids: &HashSet<String>,
    watched: &[String],
    now: jiff::Timestamp,
) -> Vec<Orphan> {
    keys.iter()
        .filter_map(|k| {
            let labels = k.labels();
            let uid = labels.get(SANDBOX_UID_LABEL)?.clone();
            let namespace = labels.get(SANDBOX_NAMESPACE_LABEL)?.clone();
            let name = labels.get(crate::resources::label::INSTANCE)?.clone();
            let created = k.creation_timestamp()?.0;
            let old = now.duration_since(created).as_secs() >= GRACE.as_secs() as i64;
            let in_scope = watched.is_empty() || watched.contains(&namespace);
            let key = (k.name_any(), k.uid().unwrap_or_default());
            (old && in_scope && !sandbox_uids.contains(&uid)).then_some(Orphan { key, sandbox: (uid, namespace, name) })
        })
        .collect()
}

/// Sweeps forever (until the operator stops).
pub async fn sweep(ctx: Arc<Context>, stores: Vec<Store<DockerSandbox>>) {
    ctx.caches.synced().await;
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        let uids: HashSet<String> =
            stores.iter().flat_map(Store::state).filter_map(|d| d.metadata.uid.clone()).collect();
        let found = orphans(&ctx.caches.ca_keys(), &uids, &ctx.config.watched_namespaces(), jiff::Timestamp::now());
        for orphan in found {
            if let Err(e) = delete_if_gone::<Secret>(&ctx, &orphan).await {
                warn!(error = %e, key = orphan.key.0, "could not sweep a CA key");
            }
        }
    }
}

/// Sweeps the activator port policies of sandboxes that are gone, as `sweep` does CA keys: the
/// policy of a sandbox deleted while its Service routed to the activator (no owner reference
/// reaches it in the operator's namespace). Its port stays taken until then.
pub async fn sweep_activator_policies(ctx: Arc<Context>, stores: Vec<Store<DockerSandbox>>) {
    if ctx.activator.get().is_none() {
        return;
    }
    ctx.caches.synced().await;
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        let uids: HashSet<String> =
            stores.iter().flat_map(Store::state).filter_map(|d| d.metadata.uid.clone()).collect();
        let ns = ctx.config.ca_namespace();
        let policies: Vec<Arc<NetworkPolicy>> = ctx
            .caches
            .all_in::<NetworkPolicy>(ns, |_| true)
            .into_iter()
            .filter(|p| p.labels().get(label::COMPONENT).map(String::as_str) == Some(activator::POLICY_COMPONENT))
            .collect();
        for orphan in orphans(&policies, &uids, &ctx.config.watched_namespaces(), jiff::Timestamp::now()) {
            if let Err(e) = delete_if_gone::<NetworkPolicy>(&ctx, &orphan).await {
                warn!(error = %e, policy = orphan.key.0, "could not sweep an activator port policy");
            }
        }
    }
}

/// Deletes the orphan (that very object: its uid is a precondition) unless the API server still
/// has its sandbox.
async fn delete_if_gone<K>(ctx: &Context, orphan: &Orphan) -> kube::Result<()>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let (uid, namespace, name) = &orphan.sandbox;
    let sandboxes = Api::<DockerSandbox>::namespaced(ctx.client.clone(), namespace);
    if sandboxes.get_opt(name).await?.is_some_and(|d| d.metadata.uid.as_ref() == Some(uid)) {
        return Ok(()); // the cache is behind; it is there
    }
    let keys = Api::<K>::namespaced(ctx.client.clone(), ctx.config.ca_namespace());
    let (key, key_uid) = &orphan.key;
    let params = DeleteParams {
        preconditions: Some(Preconditions { uid: Some(key_uid.clone()), resource_version: None }),
        ..DeleteParams::background()
    };
    match keys.delete(key, &params).await {
        Ok(_) => {
            info!(kind = %K::kind(&()), name = key, sandbox = %format!("{namespace}/{name}"), "deleted what a sandbox that is gone left in the operator's namespace");
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn key(name: &str, uid: &str, ns: &str, created: &str) -> Arc<Secret> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "creationTimestamp": created, "labels": {
                SANDBOX_UID_LABEL: uid, SANDBOX_NAMESPACE_LABEL: ns, "app.kubernetes.io/instance": "web"}}}))
            .expect("secret"),
        )
    }

    #[test]
    fn only_old_keys_of_sandboxes_that_are_gone_are_swept() {
        let now: jiff::Timestamp = "2026-12-05T10:00:00Z".parse().expect("time");
        let keys = [
            key("ca-team-a-live", "live", "team-a", "2026-12-05T09:00:00Z"),
            key("ca-team-a-gone", "gone", "team-a", "2026-12-05T09:00:00Z"),
            key("ca-team-a-young", "young", "team-a", "2026-12-05T09:59:50Z"),
            key("ca-other-gone", "gone2", "other", "2026-12-05T09:00:00Z"),
        ];
        let uids: HashSet<String> = ["live".to_string()].into();
        let names = |w: &[String]| orphans(&keys, &uids, w, now).into_iter().map(|o| o.key.0).collect::<Vec<_>>();
        assert_eq!(names(&[]), ["ca-team-a-gone", "ca-other-gone"]);
        assert_eq!(names(&["team-a".to_string()]), ["ca-team-a-gone"], "only watched namespaces");
    }
}
