//! Step: the Service's EndpointSlice. The Service has no selector; this names the engine pod the
//! sandbox owns (by its address, once it has one, ready as its Ready condition says), and nothing
//! else. A Service that had a selector (made by an operator before this one) keeps its ClusterIP:
//! the stale slices Kubernetes' controller made for it are deleted once the selector is gone.

use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
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

/// Deletes what Kubernetes made for the sandbox's Service while it had a selector: the EndpointSlice
/// controller's slices, which it leaves as they were once the selector is gone, and the Endpoints
/// object of its Endpoints controller, which the mirroring controller then copies into slices. Left
/// alone, kube-proxy would route to every address they name (a pod gone, or one that copied the
/// engine's labels).
async fn stale(t: &Target<'_>) -> Result<()> {
    let Some(svc) = Child::<Service>::of(t, &t.names.service).observed()? else { return Ok(()) };
    if svc.spec.as_ref().and_then(|s| s.selector.as_ref()).is_some_and(|s| !s.is_empty()) {
        return Ok(());
    }
    let ns = t.names.namespace.as_str();
    let theirs: Vec<_> = t
        .ctx
        .caches
        .all::<EndpointSlice>()
        .into_iter()
        .filter(|s| s.namespace().as_deref() == Some(ns))
        .filter_map(|s| endpoints::made_by_kubernetes_for(&s, &t.names.service).map(|by| (s, by)))
        .collect();
    if theirs.iter().any(|(_, by)| *by == endpoints::MIRRORING_MANAGED_BY) {
        let params = kube::api::DeleteParams::default();
        match t.api::<Endpoints>().delete(&t.names.service, &params).await {
            Ok(_) => tracing::info!("deleted the Endpoints object Kubernetes made while the Service had a selector"),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(crate::error::Error::kube("delete", "Endpoints", &t.names.service)(e)),
        }
    }
    for (slice, by) in theirs {
        let name = slice.name_any();
        let child = Child::<EndpointSlice>::owned_by(t, ns, &name, Box::new(|_| Ok(())));
        child.delete(&slice).await?;
        tracing::info!(slice = %name, managed_by = by, "deleted an EndpointSlice Kubernetes made while the Service had a selector");
    }
    Ok(())
}
