//! Step: what the cluster says about where the engine may run (the namespace's PodSecurity level,
//! whether the sysbox RuntimeClass exists).

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::node::v1::RuntimeClass;
use kube::{Api, ResourceExt};

use super::apply::get;
use super::context::Target;
use crate::error::Result;
use crate::plan::Facts;

/// The PodSecurity label that decides which engine pods a namespace admits.
pub const POD_SECURITY_ENFORCE: &str = "pod-security.kubernetes.io/enforce";

/// Reads the facts; `None` when the namespace is being deleted (children would only be refused).
pub async fn gather(t: &Target<'_>) -> Result<Option<Facts>> {
    let client = &t.ctx.client;
    let namespace = get(&Api::<Namespace>::all(client.clone()), &t.names.namespace).await?;
    if namespace.as_ref().is_some_and(|n| n.metadata.deletion_timestamp.is_some()) {
        return Ok(None);
    }
    let rc = get(&Api::<RuntimeClass>::all(client.clone()), &t.ctx.config.sysbox_runtime_class).await?;
    let pod_security_enforce = namespace.and_then(|n| n.labels().get(POD_SECURITY_ENFORCE).cloned());
    Ok(Some(Facts { sysbox_runtime_class: rc.is_some(), pod_security_enforce }))
}
