//! Step: the Service in front of dockerd, keeping its ClusterIP. The address is in the server
//! certificate, so a Service deleted by hand comes back with the address it had (when it is still
//! free) and the engine keeps running with its certificate.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use k8s_openapi::api::core::v1::Service;

use super::apply::{Child, Made, stamped};
use super::certs;
use super::context::Target;
use crate::error::Result;
use crate::plan::Plan;
use crate::resources::service;

/// Applies the Service (when it is not as wanted); returns it as stored (with its ClusterIP), for
/// the certificate's SANs.
pub async fn ensure(t: &Target<'_>, plan: &Plan) -> Result<Service> {
    // The stamp covers what the operator decides; the address is the Service's own.
    let base = stamped(&service::build(t.dsb, plan));
    let with_ip = |ip: Option<String>| {
        let mut svc = base.clone();
        if let Some(spec) = svc.spec.as_mut() {
            spec.cluster_ip = ip;
        }
        svc
    };
    let child = Child::<Service>::of(t, &t.names.service);
    let current = child.observed()?;
    let ip = match current.as_ref().and_then(ip_of) {
        Some(ip) => Some(ip),
        None => certs::previous_cluster_ip(t, plan)?,
    };
    let reused = current.is_none() && ip.is_some();
    if !reused {
        let svc = child.ensure(&with_ip(ip), current).await?;
        return unselect(t, svc).await;
    }
    // The API server announces a deleted Service before it frees its address (by tens of
    // milliseconds), and the operator answers the announcement at once: the address it asks for
    // back can still be held by the Service it replaces. Asked again for about 3 s.
    let again = ExponentialBuilder::default().with_min_delay(Duration::from_millis(50)).with_max_times(6);
    let asked = with_ip(ip.clone());
    let created = (|| child.create(&asked)).retry(again).when(address_held).await;
    let made = match created {
        Err(e) if e.is_permanent() => {
            // The old address is taken or outside the range: take a new one (and a new certificate).
            tracing::info!(address = ip.as_deref().unwrap_or_default(), reason = %e, "the Service gets a new address");
            child.create(&with_ip(None)).await?
        }
        other => other?,
    };
    match made {
        Made::Created(svc) => Ok(svc),
        // Ours, with its labels removed: put back as wanted, at the address it has.
        Made::Found(svc) => {
            let ip = ip_of(&svc);
            child.ensure(&with_ip(ip), Some(svc)).await
        }
    }
}

/// Removes a selector someone added to the Service (an earlier operator's own goes with its
/// server-side apply): with one, Kubernetes would make every pod carrying those labels an endpoint
/// of the engine. A merge patch removes it whoever set it; the ClusterIP stays.
async fn unselect(t: &Target<'_>, svc: Service) -> Result<Service> {
    use kube::api::{Patch, PatchParams};
    if svc.spec.as_ref().and_then(|s| s.selector.as_ref()).is_none_or(|s| s.is_empty()) {
        return Ok(svc);
    }
    let name = &t.names.service;
    let writing = t.ctx.expect.writing::<Service>(Some(&t.names.namespace), name);
    let patch = serde_json::json!({ "spec": { "selector": null } });
    let patched = t
        .api::<Service>()
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(crate::error::Error::kube("remove the selector of", "Service", name))?;
    writing.wrote(&super::apply::slim(&patched));
    let note = format!(
        "the Service {name} had a selector, which would make any pod with those labels an endpoint of the engine; it \
         was removed (the operator names the engine pod in the EndpointSlice {name})"
    );
    t.warning(crate::crd::conditions::reason::SERVICE_SELECTOR_REMOVED, note).await;
    Ok(patched)
}

/// Whether the API server refused a ClusterIP because a Service still holds it.
fn address_held(e: &crate::error::Error) -> bool {
    e.api_message().is_some_and(|m| m.contains("already allocated"))
}

fn ip_of(svc: &Service) -> Option<String> {
    svc.spec.as_ref()?.cluster_ip.clone()
}
