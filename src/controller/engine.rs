//! Step: the engine. Keeps the engine pod in place, then asks dockerd itself over mutual TLS
//! whether it answers: pod readiness alone is not what a client sees.

use std::time::Duration;

use super::certs::Material;
use super::context::Target;
use super::pods::{self, PodState};
use super::probe::{self, Route};
use super::status::Engine;
use crate::crd::Phase;
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
pub async fn ensure(t: &Target<'_>, plan: &Plan, tls: &Material) -> Result<(Engine, Wait)> {
    let desired = pod::build(t.dsb, plan, &tls.server.cert);
    Ok(match pods::ensure(t, &desired).await? {
        PodState::Ready { ip } => check(t, ip, tls).await,
        PodState::Waiting(why) => (Engine::NotAnswering(why), Wait::ForEvents),
        PodState::Unschedulable(why) => (Engine::Unschedulable(why), Wait::ForEvents),
        PodState::Broken { reason, message } => (Engine::Broken { reason, message }, Wait::ForEvents),
    })
}

/// How long a reconcile waits for a free engine-check slot before it keeps what it last knew.
const SLOT_WAIT: Duration = Duration::from_secs(1);

/// Asks dockerd in the owned pod (at `ip`) over TLS, in one of the fixed engine-check slots. When
/// none is free (slow engines hold them all), the engine's last known state stands and it is
/// checked again soon: a slow engine never holds the reconciles of the others.
async fn check(t: &Target<'_>, ip: String, tls: &Material) -> (Engine, Wait) {
    let Ok(Ok(_slot)) = tokio::time::timeout(SLOT_WAIT, t.ctx.engine_checks.acquire()).await else {
        let last =
            t.dsb.status.as_ref().filter(|s| s.phase == Some(Phase::Ready)).and_then(|s| s.docker_version.clone());
        let engine = last.map_or_else(
            || Engine::NotAnswering("the engine pod is ready; waiting for a free engine-check slot".into()),
            Engine::Answering,
        );
        return (engine, Wait::ForDockerd);
    };
    let route =
        if t.ctx.dial_pod { Route::Direct(ip) } else { Route::PortForward(Box::new(t.api()), t.names.pod.clone()) };
    match probe::probe(route, &t.names.server_name(), &tls.ca.cert, &tls.client).await {
        Ok(version) => (Engine::Answering(version), Wait::ForEvents),
        Err(why) => (
            Engine::NotAnswering(format!("the engine pod is ready but dockerd does not answer over TLS: {why}")),
            Wait::ForDockerd,
        ),
    }
}
