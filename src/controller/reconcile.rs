//! The reconcile loop, read top to bottom as the pipeline: facts → plan → Service and certificates,
//! volume and NetworkPolicy (at once) → engine → status. Each step lives in its own file under
//! `controller/` and returns what status needs; this is the only module that calls them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use tracing::{debug, instrument, warn};

use super::context::{Context, Target};
use super::engine::Wait;
use super::facts::Source;
use super::publish::publish_status;
use super::status::{Engine, Observed, Outcome};
use super::{certs, endpoints, engine, facts, network, pods, service, storage};
use crate::crd::conditions::reason;
use crate::crd::{CertificateStatus, DockerSandbox, Phase, SuspendCause};
use crate::error::{Error, Result};
use crate::plan;
use crate::plan::lifecycle::{self, Run};

/// Reconciles one sandbox and records the outcome in metrics (and an event on failure).
#[instrument(skip_all, fields(sandbox = %dsb.name_any(), namespace = dsb.namespace().unwrap_or_default()))]
pub async fn reconcile(dsb: Arc<DockerSandbox>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let result = run(&dsb, &ctx).await;
    ctx.metrics.reconciled(result.as_ref().err().map(|e| e.category().as_str()), started.elapsed());
    match &result {
        Ok(action) => {
            ctx.succeeded(&dsb);
            debug!(?action, "reconciled");
        }
        Err(e) => {
            warn!(error = %e, "reconcile failed");
            ctx.event(&dsb, EventType::Warning, reason::RECONCILE_FAILED, e.to_string()).await;
        }
    }
    result
}

/// Decides when to retry a failed reconcile: back off per sandbox, slower for errors that only a
/// change can fix.
pub fn error_policy(dsb: Arc<DockerSandbox>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff(&dsb);
    Action::requeue(if error.is_permanent() { delay.max(Duration::from_secs(60)) } else { delay })
}

async fn run(cached: &DockerSandbox, ctx: &Context) -> Result<Action> {
    // The sandbox with the status this process last wrote, if the cache has not shown it yet.
    let newest = ctx.newest(cached);
    let dsb: &DockerSandbox = &newest;
    let t = Target::new(dsb, ctx).ok_or_else(|| Error::NoNamespace(dsb.name_any()))?;
    // Until every watch has listed once, "not in the cache" would be mistaken for "does not exist".
    ctx.caches.synced().await;
    if dsb.metadata.deletion_timestamp.is_some() {
        // The API server deletes the children through their owner references (a Retain volume has
        // none and stays); the operator only says so.
        publish_status(&t, &Outcome::Terminating).await?;
        return Ok(Action::await_change());
    }
    // A claimant runs no engine of its own: its engine is a pooled sandbox's (`claims`).
    if let Some(pool) = dsb.spec.pool_ref.as_deref() {
        return super::claims::reconcile(&t, pool).await;
    }
    let plan = match planned(&t, Source::Cache).await? {
        Planned::Plan(plan) => plan,
        // The namespace is being deleted: creating children would only be refused.
        Planned::NamespaceGone => return Ok(Action::await_change()),
        Planned::Refused(refusal, life) => return refused(&t, refusal, life).await,
    };
    let mode = plan.mode.clone();
    let now = jiff::Timestamp::now();
    let wake = lifecycle::wake_request(dsb);
    let suspension = dsb.status.as_ref().and_then(|s| s.suspension.as_ref());
    let run = lifecycle::decide(&plan.lifecycle, now, suspension, wake.as_deref());
    if run == Run::Delete {
        super::lifecycle::expire(&t, plan.lifecycle.expires_at).await?;
        return Ok(Action::await_change());
    }
    let life = plan.lifecycle.clone();
    match place(&t, *plan, run).await {
        Ok((seen, wait)) => {
            let idle_since = seen.idle_since.as_deref().and_then(|s| s.parse().ok());
            let phase = publish_status(&t, &Outcome::Placed(Box::new(seen))).await?;
            let due = lifecycle::next_due(&life, idle_since, jiff::Timestamp::now());
            Ok(requeue_after(ctx, dsb, phase, wait, due))
        }
        Err(e @ Error::Foreign { .. }) => {
            // Someone else's object is in the way: nothing of it is changed; say so (on the step it
            // blocks) and look again.
            let condition = match &e {
                Error::Foreign { kind, .. } => blocked_condition(kind),
                _ => None,
            };
            let refusal = plan::Refusal { reason: reason::CONFLICT, message: e.to_string(), spec_error: false };
            publish_status(&t, &Outcome::Blocked { refusal, condition, mode }).await?;
            Ok(Action::requeue(recheck_after(ctx.still_waiting(dsb))))
        }
        Err(e) => Err(e),
    }
}

/// The condition of the step a foreign object of `kind` blocks: the certificates (a Secret), the
/// volume, the engine; a Service or NetworkPolicy has none (Ready says it).
fn blocked_condition(kind: &str) -> Option<&'static str> {
    use crate::crd::conditions::{ENGINE_READY, STORAGE_BOUND, TLS_READY};
    match kind {
        "Secret" => Some(TLS_READY),
        "PersistentVolumeClaim" => Some(STORAGE_BOUND),
        "Pod" => Some(ENGINE_READY),
        _ => None,
    }
}

/// What facts and plan say.
enum Planned {
    Plan(Box<plan::Plan>),
    NamespaceGone,
    /// Refused; with the sandbox's lifecycle when its class could be read (a refused sandbox may
    /// still have an engine running from before, and it expires all the same).
    Refused(plan::Refusal, Option<lifecycle::Lifecycle>),
}

async fn planned(t: &Target<'_>, source: Source) -> Result<Planned> {
    Ok(match facts::gather(t, source).await? {
        facts::Gathered::Facts(facts) => match plan::resolve(t.dsb, &facts, &t.ctx.config) {
            Ok(plan) => Planned::Plan(Box::new(plan)),
            Err(refusal) => {
                let created = t.dsb.metadata.creation_timestamp.as_ref().map_or(jiff::Timestamp::UNIX_EPOCH, |c| c.0);
                Planned::Refused(refusal, lifecycle::resolve(&t.dsb.spec, created, &facts.class).ok())
            }
        },
        facts::Gathered::NamespaceGone => Planned::NamespaceGone,
        // Nothing is changed or stopped: the class may come back (it is watched).
        facts::Gathered::NoClass(refusal) => Planned::Refused(refusal, None),
    })
}

/// A sandbox the plan refuses. A policy refusal stops its engine (the volume keeps the data), and
/// so does a class refusal when the engine runs privileged (policy was tightened under it), but
/// only once the live cluster confirms it: a cache that is behind must never stop an engine.
async fn refused(t: &Target<'_>, mut refusal: plan::Refusal, life: Option<lifecycle::Lifecycle>) -> Result<Action> {
    let now = jiff::Timestamp::now();
    let running = t.cached::<Pod>(&t.names.pod).is_some_and(|p| p.metadata.deletion_timestamp.is_none());
    // Expiry holds for a refused sandbox too: an engine kept from before its spec went wrong must
    // not outlive its lifetime.
    match life.as_ref().map(|lc| lifecycle::decide(lc, now, None, None)) {
        Some(Run::Delete) => {
            super::lifecycle::expire(t, life.as_ref().and_then(|lc| lc.expires_at)).await?;
            return Ok(Action::await_change());
        }
        Some(Run::Suspend(SuspendCause::Expiry)) if running => {
            pods::suspend(t).await?;
            let at = life.as_ref().and_then(|lc| lc.expires_at).map(|t| t.to_string()).unwrap_or_default();
            t.warning(
                reason::EXPIRED,
                format!("the sandbox expired at {at}: its engine is stopped (the volume stays)"),
            )
            .await;
        }
        _ => {}
    }
    let due = life.as_ref().and_then(|lc| lifecycle::next_due(lc, None, now));
    if running && (plan::is_policy_refusal(&refusal) || plan::is_class_refusal(&refusal)) {
        match planned(t, Source::Live).await? {
            Planned::Refused(live, _) if plan::is_policy_refusal(&live) => {
                pods::stop(t, &live.message).await?;
                refusal = live;
            }
            Planned::Refused(live, _) if plan::is_class_refusal(&live) && pods::runs_privileged(t).await? => {
                pods::stop(t, &format!("the engine ran privileged and {}", live.message)).await?;
                refusal = live;
            }
            Planned::Refused(live, _) => refusal = live,
            // The cache was behind; the next reconcile (its watch event is on the way) places it.
            Planned::Plan(_) | Planned::NamespaceGone => return Ok(Action::requeue(Duration::from_secs(1))),
        }
    }
    // Never held for at the activator: its Service names the engine kept from before, if any.
    endpoints::ensure(t, None, Run::Engine).await?;
    let spec_error = refusal.spec_error;
    publish_status(t, &Outcome::Refused(refusal)).await?;
    // A spec error waits for a spec change; a cluster problem (class, RuntimeClass, policy) is
    // watched, and re-checked ever more rarely.
    Ok(if spec_error {
        t.ctx.done_waiting(t.dsb);
        due.map_or_else(Action::await_change, Action::requeue)
    } else {
        let later = recheck_after(t.ctx.still_waiting(t.dsb));
        Action::requeue(due.map_or(later, |d| d.min(later)))
    })
}

/// The children. What does not depend on another is written at once: the Service and the CA, then
/// the certificates (the server's names the Service's address); the volume and the NetworkPolicy
/// meanwhile. The engine pod, which needs all of them, comes last, so the NetworkPolicy is in
/// place before the engine can serve. When several steps fail, the error told is that of the
/// first in this order (Service, CA, certificates, volume, NetworkPolicy), as when they ran one
/// after the other; every step runs to its end (none is cancelled half-written).
async fn place(t: &Target<'_>, plan: plan::Plan, run: Run) -> Result<(Observed, Wait)> {
    let tls = async {
        let (svc, ca) = futures::join!(service::ensure(t, &plan), certs::authority(t, &plan));
        let (svc, ca) = (svc?, ca?);
        certs::leaves(t, &plan, &svc, ca).await
    };
    let (tls, storage, network) = futures::join!(tls, storage::ensure(t, &plan), network::ensure(t, &plan));
    let (tls, storage, network) = (tls?, storage?, network?);
    let engine::Checked { mut engine, wait, facts, disk_pressure } = engine::ensure(t, &plan, &tls, run).await?;
    let now = jiff::Timestamp::now();
    let mut idle = match engine {
        Engine::Answering(_) => super::lifecycle::idle_since(t, facts.as_ref(), now),
        _ => None,
    };
    // Idleness is decided on what was read this time only, never on figures from before.
    let mut run = run;
    if facts.is_some() && lifecycle::idle_due(&plan.lifecycle, idle, now) {
        engine = engine::suspend(t, &plan, SuspendCause::Idle).await?.engine;
        idle = None;
        run = Run::Suspend(SuspendCause::Idle);
    }
    endpoints::ensure(t, Some(&plan), run).await?;
    let certificates = revocation(t, tls.status, &engine).await;
    let life = &plan.lifecycle;
    let observed = Observed {
        idle_since: idle.map(|t| t.to_string()),
        expires_at: life.expires_at.map(|t| t.to_string()),
        expiring: lifecycle::expiring(life, now),
        mode: plan.mode,
        class: plan.class,
        certificates,
        storage,
        engine,
        network,
        resources: plan.resources,
        facts,
        disk_pressure,
    };
    Ok((observed, wait))
}

/// `status.certificates.generation` moves to a raised `spec.credentials.generation` only once the
/// engine answers with a certificate of the new CA (the check verifies the server against it): until
/// then the status says the old generation, and when it moves, a Warning Event says so.
async fn revocation(t: &Target<'_>, mut certificates: CertificateStatus, engine: &Engine) -> CertificateStatus {
    let Some(before) = t.dsb.status.clone().and_then(|s| s.certificates).map(|c| c.generation) else {
        return certificates;
    };
    if before == certificates.generation {
        return certificates;
    }
    if matches!(engine, Engine::Answering(_)) {
        let note = format!(
            "the engine answers with a certificate of the new CA (spec.credentials.generation {}): certificates \
             issued before no longer work; clients must fetch the new client Secret {}",
            certificates.generation, t.names.client_secret
        );
        t.warning(reason::CREDENTIALS_REVOKED, note).await;
    } else {
        certificates.generation = before;
    }
    certificates
}

/// When to look again at a sandbox that reconciled fine. Ready: when what is inside its engine is
/// next read (`--engine-facts-interval`), which asks dockerd whether it still answers too (its
/// pod's readiness is watched besides). Waiting
/// for its pod, volume or the scheduler: their watch events wake it; the timer is only a fallback
/// that backs off to 5 minutes. A pod that is ready while dockerd does not answer TLS yet: its own
/// short, bounded backoff, since no watch event says when dockerd starts answering; so does a Ready
/// engine whose check found no free slot (its last known state stands until it is checked).
/// A suspended engine waits for a change (its watch events), or for what is `due` next (its
/// expiry), else an hour as a fallback; a sandbox that expires is looked at again when it is due.
pub fn requeue_after(ctx: &Context, dsb: &DockerSandbox, phase: Phase, wait: Wait, due: Option<Duration>) -> Action {
    let at_most = |d: Duration| Action::requeue(due.map_or(d, |due| due.max(Duration::from_secs(1)).min(d)));
    if phase == Phase::Suspended {
        ctx.done_waiting(dsb);
        return at_most(Duration::from_secs(3600));
    }
    if phase == Phase::Ready && wait == Wait::ForEvents {
        ctx.done_waiting(dsb);
        return at_most(ready_recheck(ctx.facts_interval(), dsb.metadata.uid.as_deref().unwrap_or_default()));
    }
    at_most(match wait {
        // Only unanswered checks count here: waits for the pod or the volume said nothing about
        // dockerd, and a pod that just turned ready is checked at once (its watch event).
        Wait::ForDockerd => probe_after(ctx.unanswered(dsb)),
        Wait::ForEvents => {
            ctx.not_probing(dsb);
            recheck_after(ctx.still_waiting(dsb))
        }
    })
}

/// When a Ready sandbox is looked at again: the facts interval plus up to a tenth of it, the same
/// share for the same sandbox (from its uid). Sandboxes that became Ready together (an operator
/// restart reconciles them all at once) drift apart instead of asking their engines together.
pub fn ready_recheck(interval: Duration, uid: &str) -> Duration {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    uid.hash(&mut h);
    let share = (h.finish() % 1000) as f64 / 10_000.0;
    interval + interval.mul_f64(share)
}

/// Fallback re-check after the `n`th reconcile in a row that found the sandbox waiting: 5 s,
/// doubling, at most 5 min.
pub fn recheck_after(n: u32) -> Duration {
    super::context::backoff_after(n)
}

/// Next TLS probe after the `n`th unanswered one while the pod is ready: 1 s, doubling, at most 30 s.
pub fn probe_after(n: u32) -> Duration {
    Duration::from_secs((1u64 << n.saturating_sub(1).min(5)).min(30))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_sandboxes_are_looked_at_again_within_a_tenth_past_the_interval_spread_by_uid() {
        let interval = Duration::from_secs(180);
        let delays: Vec<Duration> = (0..200).map(|i| ready_recheck(interval, &format!("uid-{i}"))).collect();
        assert!(delays.iter().all(|d| *d >= interval && *d < interval + interval / 10), "{delays:?}");
        assert_eq!(ready_recheck(interval, "uid-7"), ready_recheck(interval, "uid-7"), "the same share each time");
        let (min, max) = (delays.iter().min().copied(), delays.iter().max().copied());
        let spread = max.zip(min).map(|(a, b)| a - b).unwrap_or_default();
        assert!(spread > interval / 20, "sandboxes drift apart: {spread:?}");
    }
}
