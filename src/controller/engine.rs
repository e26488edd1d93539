//! Step: the engine. Keeps the engine pod in place, then asks dockerd itself over mutual TLS
//! whether it answers: pod readiness alone is not what a client sees.

use k8s_openapi::api::core::v1::Service;

use super::certs::Material;
use super::context::Target;
use super::pods::{self, PodState};
use super::probe::{self, Route};
use super::status::Engine;
use crate::error::Result;
use crate::plan::Plan;
use crate::resources::pod;

/// What a sandbox that is not Ready waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Something a watch reports: the pod, the volume, the scheduler, a spec change.
    ForEvents,
    /// dockerd to answer TLS in a pod that is ready: nothing reports that but asking.
    ForDockerd,
}

/// Ensures the engine pod and reports whether dockerd answers.
pub async fn ensure(t: &Target<'_>, plan: &Plan, tls: &Material, svc: &Service) -> Result<(Engine, Wait)> {
    let desired = pod::build(t.dsb, plan, &tls.server.cert);
    Ok(match pods::ensure(t, &desired).await? {
        PodState::Ready => match probe::probe(route(t, svc), &t.names.server_name(), &tls.ca.cert, &tls.client).await {
            Ok(version) => (Engine::Answering(version), Wait::ForEvents),
            Err(why) => (
                Engine::NotAnswering(format!("the engine pod is ready but dockerd does not answer over TLS: {why}")),
                Wait::ForDockerd,
            ),
        },
        PodState::Waiting(why) => (Engine::NotAnswering(why), Wait::ForEvents),
        PodState::Broken { reason, message } => (Engine::Broken { reason, message }, Wait::ForEvents),
    })
}

/// In the cluster the operator dials the ClusterIP; outside it tunnels through the API server.
fn route(t: &Target<'_>, svc: &Service) -> Route {
    if t.ctx.dial_service {
        Route::Direct(svc.spec.as_ref().and_then(|s| s.cluster_ip.clone()).unwrap_or_default())
    } else {
        Route::PortForward(Box::new(t.api()), t.names.pod.clone())
    }
}
