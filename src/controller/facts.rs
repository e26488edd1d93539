//! Step: what the cluster says about where the engine may run: the namespace's PodSecurity level,
//! whether the sysbox RuntimeClass exists, and which container runtime its nodes run.

use k8s_openapi::api::core::v1::{Namespace, Node};
use k8s_openapi::api::node::v1::RuntimeClass;
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use super::apply::get;
use super::context::Target;
use crate::config::SysboxUserNamespace;
use crate::error::{Error, Result};
use crate::plan::{Facts, NodeRuntime};

/// The PodSecurity label that decides which engine pods a namespace admits.
pub const POD_SECURITY_ENFORCE: &str = "pod-security.kubernetes.io/enforce";

/// Reads the facts; `None` when the namespace is being deleted (children would only be refused).
pub async fn gather(t: &Target<'_>) -> Result<Option<Facts>> {
    let client = &t.ctx.client;
    let config = &t.ctx.config;
    let namespace = get(&Api::<Namespace>::all(client.clone()), &t.names.namespace).await?;
    if namespace.as_ref().is_some_and(|n| n.metadata.deletion_timestamp.is_some()) {
        return Ok(None);
    }
    let rc = get(&Api::<RuntimeClass>::all(client.clone()), &config.sysbox_runtime_class).await?;
    let sysbox_nodes = match &rc {
        Some(rc) if config.sysbox_user_namespace == SysboxUserNamespace::Auto => Some(nodes_of(t, rc).await?),
        _ => None,
    };
    let pod_security_enforce = namespace.and_then(|n| n.labels().get(POD_SECURITY_ENFORCE).cloned());
    Ok(Some(Facts {
        namespace: t.names.namespace.clone(),
        sysbox_runtime_class: rc.is_some(),
        pod_security_enforce,
        sysbox_nodes,
    }))
}

/// The nodes `rc` schedules onto (its `scheduling.nodeSelector`, or every node) and their runtimes.
async fn nodes_of(t: &Target<'_>, rc: &RuntimeClass) -> Result<Vec<NodeRuntime>> {
    let selector = rc.scheduling.as_ref().and_then(|s| s.node_selector.as_ref());
    let labels: Vec<String> = selector.into_iter().flatten().map(|(k, v)| format!("{k}={v}")).collect();
    let nodes = Api::<Node>::all(t.ctx.client.clone())
        .list(&ListParams::default().labels(&labels.join(",")))
        .await
        .map_err(Error::kube("list", "Node", labels.join(",")))?;
    Ok(nodes
        .items
        .iter()
        .map(|n| NodeRuntime {
            node: n.name_any(),
            runtime: n
                .status
                .as_ref()
                .and_then(|s| s.node_info.as_ref())
                .map(|i| i.container_runtime_version.clone())
                .unwrap_or_default(),
        })
        .collect())
}
