//! Step: writes the status computed by `status` (only when it changed, so steady state writes
//! nothing) and tells people about phase changes with an Event.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::{Resource, ResourceExt};
use tracing::info;

use super::context::Target;
use super::status::{self, Outcome};
use crate::crd::conditions::{self, reason};
use crate::crd::{DockerSandbox, DockerSandboxStatus, FIELD_MANAGER, Phase};
use crate::error::{Error, Result};

/// Computes and publishes the status after `outcome`; returns the phase.
pub async fn publish_status(t: &Target<'_>, outcome: &Outcome) -> Result<Phase> {
    // `t.dsb` has the status this process last wrote, even when the sandbox cache has not shown
    // that write yet (`Context::newest`).
    let new = status::compute(t.dsb, outcome, &Time(jiff::Timestamp::now()));
    publish(t, new).await
}

/// Publishes `new` as the sandbox's status (when it changed) with the Events of a phase change;
/// returns the phase.
pub async fn publish(t: &Target<'_>, new: DockerSandboxStatus) -> Result<Phase> {
    let dsb = t.dsb;
    let phase = new.phase.unwrap_or(Phase::Pending);
    if !status::changed(dsb.status.as_ref(), &new) {
        return Ok(phase);
    }
    let body = serde_json::json!({
        "apiVersion": DockerSandbox::api_version(&()),
        "kind": DockerSandbox::kind(&()),
        "status": new,
    });
    let name = t.dsb.name_any();
    let writing = t.ctx.expect.writing::<DockerSandbox>(Some(&t.names.namespace), &name);
    let written = t
        .api::<DockerSandbox>()
        .patch_status(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body))
        .await
        .map_err(Error::kube("patch status of", "DockerSandbox", &name))?;
    writing.wrote(&written);
    let old_phase = dsb.status.as_ref().and_then(|s| s.phase);
    if old_phase != Some(phase) {
        info!(from = ?old_phase, to = ?phase, "phase changed");
        announce(t, old_phase, &new).await;
    } else if matches!(phase, Phase::Pending | Phase::Failed | Phase::Suspended)
        && ready_reason(dsb.status.as_ref()) != ready_reason(Some(&new))
    {
        // Still stuck, but for another reason: that is news too.
        info!(phase = ?phase, reason = ?ready_reason(Some(&new)), "reason changed");
        announce(t, old_phase, &new).await;
    }
    if expiring_reason(Some(&new)) == Some(reason::EXPIRES_SOON)
        && expiring_reason(dsb.status.as_ref()) != Some(reason::EXPIRES_SOON)
    {
        let note = new.conditions.iter().find(|c| c.type_ == conditions::EXPIRING).map(|c| c.message.clone());
        t.warning(reason::EXPIRES_SOON, note.unwrap_or_default()).await;
    }
    Ok(phase)
}

fn expiring_reason(status: Option<&DockerSandboxStatus>) -> Option<&str> {
    status?.conditions.iter().find(|c| c.type_ == conditions::EXPIRING).map(|c| c.reason.as_str())
}

fn ready_reason(status: Option<&DockerSandboxStatus>) -> Option<&str> {
    status?.conditions.iter().find(|c| c.type_ == conditions::READY).map(|c| c.reason.as_str())
}

/// The Event for a phase change: Normal when the engine answers, Warning when it cannot run or
/// stopped answering; none for the steps in between.
async fn announce(t: &Target<'_>, old_phase: Option<Phase>, new: &DockerSandboxStatus) {
    let ready = new.conditions.iter().find(|c| c.type_ == conditions::READY);
    let (why, message) = ready.map(|c| (c.reason.clone(), c.message.clone())).unwrap_or_default();
    match new.phase.unwrap_or(Phase::Pending) {
        Phase::Ready => {
            let endpoint = new.endpoint.clone().unwrap_or_default();
            t.normal(reason::ENGINE_READY, format!("dockerd answers at {endpoint}")).await
        }
        Phase::Failed | Phase::Pending => t.warning(&why, message).await,
        Phase::Suspended => {
            let cause = new.suspension.as_ref().map(|s| s.cause).unwrap_or_default();
            let was = t.dsb.status.as_ref().and_then(|s| s.suspension.as_ref()).map(|s| s.cause);
            if was != Some(cause) {
                t.ctx.metrics.suspended(cause);
            }
            t.normal(&why, message).await
        }
        Phase::Provisioning if old_phase == Some(Phase::Suspended) => {
            let was = t.dsb.status.as_ref().and_then(|s| s.suspension.as_ref()).map(|s| s.cause);
            let note = match was {
                Some(crate::crd::SuspendCause::Idle) => "a client asked to wake the engine: starting it again",
                Some(crate::crd::SuspendCause::Expiry) => {
                    "the sandbox no longer expires now: starting its engine again"
                }
                _ => "spec.suspend is false: starting the engine again",
            };
            t.normal(reason::ENGINE_RESUMING, format!("{note}; its volume keeps images, volumes and containers")).await
        }
        Phase::Provisioning if old_phase == Some(Phase::Ready) => {
            t.warning(reason::ENGINE_NOT_ANSWERING, message).await
        }
        Phase::Provisioning | Phase::Terminating => {}
    }
}
