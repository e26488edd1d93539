//! Step: the sandbox's lifecycle around the engine. Deletes a sandbox that expired with
//! `onExpiry: Delete`, and tells, after a check that read the engine, since when it is idle.

use jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{DeleteParams, Preconditions};

use super::context::Target;
use super::status;
use crate::crd::conditions::{self, reason};
use crate::crd::{DockerSandbox, EngineStatus, Phase};
use crate::error::{Error, Result};
use crate::plan::{Plan, lifecycle};

/// Deletes the sandbox, which expired with `onExpiry: Delete`; its children go through their owner
/// references, a Retain volume (which has none) stays. A Warning Event says so first.
pub async fn expire(t: &Target<'_>, plan: &Plan) -> Result<()> {
    let at = plan.lifecycle.expires_at.map(|t| t.to_string()).unwrap_or_default();
    let volume = if plan.storage.ephemeral {
        "its ephemeral volume goes with it".to_string()
    } else if plan.storage.retain {
        format!("its volume {} stays (storage.reclaimPolicy Retain)", t.names.pvc)
    } else {
        "its volume goes with it (storage.reclaimPolicy Delete)".to_string()
    };
    t.warning(reason::EXPIRED, format!("the sandbox expired at {at} (onExpiry: Delete): deleting it; {volume}")).await;
    let name = t.dsb.name_any();
    let params = DeleteParams {
        preconditions: t.dsb.uid().map(|uid| Preconditions { uid: Some(uid), resource_version: None }),
        ..DeleteParams::background()
    };
    match t.api::<DockerSandbox>().delete(&name, &params).await {
        Ok(_) => t.ctx.metrics.expiry_deleted(),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
        Err(e) => return Err(Error::kube("delete", "DockerSandbox", &name)(e)),
    }
    Ok(())
}

/// Since when an engine that answers is idle: from what was read this time (`fresh`), settled
/// against the status as `status` will publish it, else as last published; `None` while it runs a
/// container.
pub fn idle_since(t: &Target<'_>, fresh: Option<&EngineStatus>, now: Timestamp) -> Option<Timestamp> {
    let old = t.dsb.status.as_ref();
    let Some(fresh) = fresh else {
        return old?.idle_since.as_deref()?.parse().ok();
    };
    let settled = status::settle(old.and_then(|s| s.engine.as_ref()), fresh.clone());
    let ready_since = old
        .filter(|s| s.phase == Some(Phase::Ready))
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == conditions::READY && c.status == "True"))
        .map_or(now, |c| c.last_transition_time.0);
    lifecycle::idle_since(Some(&settled), ready_since, now)
}
