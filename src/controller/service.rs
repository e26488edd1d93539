//! Step: the Service in front of dockerd, keeping its ClusterIP. The address is in the server
//! certificate, so a Service deleted by hand comes back with the address it had (when it is still
//! free) and the engine keeps running with its certificate.

use k8s_openapi::api::core::v1::Service;

use super::apply::{apply, get_child};
use super::certs;
use super::context::Target;
use crate::error::Result;
use crate::plan::Plan;
use crate::resources::service;

/// Applies the Service; returns it as stored (with its ClusterIP), for the certificate's SANs.
pub async fn ensure(t: &Target<'_>, plan: &Plan) -> Result<Service> {
    let api = t.api::<Service>();
    let mut desired = service::build(t.dsb, plan);
    let current = get_child(&api, t.dsb, &t.names.service, false).await?;
    let ip = match current.as_ref().and_then(|s| s.spec.as_ref()?.cluster_ip.clone()) {
        Some(ip) => Some(ip),
        None => certs::previous_cluster_ip(t, plan).await?,
    };
    let reused = current.is_none() && ip.is_some();
    set_cluster_ip(&mut desired, ip);
    match apply(&api, &desired).await {
        Err(e) if reused && e.is_permanent() => {
            // The old address is taken or outside the range: take a new one (and a new certificate).
            set_cluster_ip(&mut desired, None);
            apply(&api, &desired).await
        }
        other => other,
    }
}

fn set_cluster_ip(svc: &mut Service, ip: Option<String>) {
    if let Some(spec) = svc.spec.as_mut() {
        spec.cluster_ip = ip;
    }
}
