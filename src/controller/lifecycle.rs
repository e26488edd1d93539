//! Step: the sandbox's lifecycle around the engine. Deletes a sandbox that expired with
//! `onExpiry: Delete`, and tells, after a check that read the engine, since when it is idle.

use jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{DeleteParams, Preconditions};

use super::context::Target;
use crate::crd::conditions::{self, reason};
use crate::crd::{DockerSandbox, EngineStatus, Phase, ReclaimPolicy, StorageType};
use crate::error::{Error, Result};
use crate::plan::lifecycle;

/// Deletes the sandbox, which expired with `onExpiry: Delete`; its children go through their owner
/// references, a Retain volume (which has none) stays. A Warning Event says so first.
pub async fn expire(t: &Target<'_>, expires_at: Option<Timestamp>) -> Result<()> {
    let at = expires_at.map(|t| t.to_string()).unwrap_or_default();
    let storage = &t.dsb.spec.storage;
    let volume = if storage.kind == StorageType::Ephemeral {
        "its ephemeral volume goes with it".to_string()
    } else if storage.reclaim_policy == ReclaimPolicy::Retain {
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

/// Since when an engine that answers is idle: from what was read this time (`fresh`), with the
/// last activity on record when that is later (the window read may have been short); else as last
/// published. `None` while it runs a container. (The status's own `lastActivity` moves only by
/// more than a minute; the read's is exact.)
pub fn idle_since(t: &Target<'_>, fresh: Option<&EngineStatus>, now: Timestamp) -> Option<Timestamp> {
    let old = t.dsb.status.as_ref();
    let Some(fresh) = fresh else {
        return old?.idle_since.as_deref()?.parse().ok();
    };
    let secs = |e: Option<&EngineStatus>| e?.last_activity.as_deref()?.parse::<Timestamp>().ok();
    let last = secs(Some(fresh)).max(secs(old.and_then(|s| s.engine.as_ref())));
    let seen = EngineStatus { last_activity: last.map(|t| t.to_string()), ..fresh.clone() };
    let ready_since = old
        .filter(|s| s.phase == Some(Phase::Ready))
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == conditions::READY && c.status == "True"))
        .map_or_else(|| whole_seconds(now), |c| c.last_transition_time.0);
    lifecycle::idle_since(Some(&seen), ready_since, now)
}

/// `t` as the API server keeps a condition's time: whole seconds. The reconcile that makes a
/// sandbox Ready takes `now` for its Ready time; the next reads the Ready condition's, and both
/// must give the same `idleSince`, or every new sandbox gets one status write for nothing.
fn whole_seconds(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ready_time_taken_from_the_clock_is_the_one_the_condition_keeps() {
        let now: Timestamp = "2026-12-06T01:16:33.005003183Z".parse().expect("time");
        let kept: Timestamp = "2026-12-06T01:16:33Z".parse().expect("time");
        assert_eq!(whole_seconds(now), kept);
        assert_eq!(whole_seconds(kept), kept);
        let engine = EngineStatus::default();
        assert_eq!(
            lifecycle::idle_since(Some(&engine), whole_seconds(now), now),
            lifecycle::idle_since(Some(&engine), kept, now),
            "the reconcile after Ready publishes the same idleSince"
        );
    }
}
