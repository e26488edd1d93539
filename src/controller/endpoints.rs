//! Step: the Service's EndpointSlice. The Service has no selector; this names the engine pod the
//! sandbox owns (by its address, once it has one, ready as its Ready condition says), and nothing
//! else. A Service that had a selector (made by an operator before this one) keeps its ClusterIP:
//! the stale slices Kubernetes' controller made for it are deleted once the selector is gone.

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;

use super::apply::{Child, stamped};
use super::context::Target;
use crate::error::Result;
use crate::resources::endpoints::{self, EnginePod};

/// Ensures the EndpointSlice names the engine pod as it is now (none while it has no address).
pub async fn ensure(t: &Target<'_>) -> Result<()> {
    let engine = Child::<Pod>::of(t, &t.names.pod).observed()?.and_then(|p| engine_pod(&p));
    let child = Child::<EndpointSlice>::of(t, &t.names.service);
    let current = child.observed()?;
    // Nothing to route to yet: the slice comes with the pod's address (one write fewer per sandbox).
    if current.is_some() || engine.is_some() {
        child.ensure(&stamped(&endpoints::build(t.dsb, engine.as_ref())), current).await?;
    }
    stale(t).await
}

/// The engine pod as an endpoint: while it is not stopping and has an address.
fn engine_pod(pod: &Pod) -> Option<EnginePod> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.as_ref()?;
    let ip = status.pod_ip.clone().filter(|ip| !ip.is_empty())?;
    let ready = status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True");
    Some(EnginePod { ip, uid: pod.uid(), ready })
}

/// Deletes the slices Kubernetes' EndpointSlice controller made for the sandbox's Service while it
/// had a selector: without one the controller leaves them as they were, and kube-proxy would keep
/// routing to the address of a pod that is gone.
async fn stale(t: &Target<'_>) -> Result<()> {
    let Some(svc) = Child::<Service>::of(t, &t.names.service).observed()? else { return Ok(()) };
    if svc.spec.as_ref().and_then(|s| s.selector.as_ref()).is_some_and(|s| !s.is_empty()) {
        return Ok(());
    }
    let ns = t.names.namespace.as_str();
    let theirs = t.ctx.caches.all::<EndpointSlice>().into_iter().filter(|s| {
        s.namespace().as_deref() == Some(ns)
            && endpoints::made_by_the_controller_for(s, &t.names.service)
            && s.owner_references().iter().any(|o| o.kind == "Service" && Some(&o.uid) == svc.uid().as_ref())
    });
    for slice in theirs.collect::<Vec<_>>() {
        let name = slice.name_any();
        let child = Child::<EndpointSlice>::owned_by(t, ns, &name, Box::new(|_| Ok(())));
        child.delete(&slice).await?;
        tracing::info!(slice = %name, "deleted an EndpointSlice Kubernetes made while the Service had a selector");
    }
    Ok(())
}
