//! The reconcile loop, read top to bottom as the pipeline: facts → plan → Service → certificates
//! → storage → engine → status. Each step lives in its own file under `controller/` and returns
//! what status needs; this is the only module that calls them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use tracing::{debug, instrument, warn};

use super::context::{Context, Target};
use super::publish::publish_status;
use super::status::{Observed, Outcome};
use super::{certs, engine, facts, pods, service, storage};
use crate::crd::conditions::reason;
use crate::crd::{DockerSandbox, Phase};
use crate::error::{Error, Result};
use crate::plan;

/// Reconciles one sandbox and records the outcome in metrics (and an event on failure).
#[instrument(skip_all, fields(sandbox = %dsb.name_any(), namespace = dsb.namespace().unwrap_or_default()))]
pub async fn reconcile(dsb: Arc<DockerSandbox>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let result = run(&dsb, &ctx).await;
    ctx.metrics.reconciled(result.as_ref().err().map(Error::category), started.elapsed());
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

async fn run(dsb: &DockerSandbox, ctx: &Context) -> Result<Action> {
    let t = Target::new(dsb, ctx).ok_or_else(|| Error::NoNamespace(dsb.name_any()))?;
    if dsb.metadata.deletion_timestamp.is_some() {
        // The API server deletes the children through their owner references (a Retain volume has
        // none and stays); the operator only says so.
        publish_status(&t, &Outcome::Terminating).await?;
        return Ok(Action::await_change());
    }
    let facts = match facts::gather(&t).await? {
        facts::Gathered::Facts(facts) => facts,
        // The namespace is being deleted: creating children would only be refused.
        facts::Gathered::NamespaceGone => return Ok(Action::await_change()),
        facts::Gathered::NoClass(refusal) => {
            // Nothing is changed or stopped: the class may come back (it is watched).
            publish_status(&t, &Outcome::Refused(refusal)).await?;
            return Ok(Action::requeue(Duration::from_secs(60)));
        }
    };
    let plan = match plan::resolve(dsb, &facts, &ctx.config) {
        Ok(plan) => plan,
        Err(refusal) => {
            let spec_error = refusal.spec_error;
            if plan::is_policy_refusal(&refusal) {
                // Policy no longer allows this engine: stop it; the volume keeps the data.
                pods::stop(&t, &refusal.message).await?;
            }
            publish_status(&t, &Outcome::Refused(refusal)).await?;
            // A spec error waits for a spec change; a cluster problem (RuntimeClass, policy) is re-checked.
            return Ok(if spec_error { Action::await_change() } else { Action::requeue(Duration::from_secs(60)) });
        }
    };
    match place(&t, plan).await {
        Ok(seen) => Ok(requeue_after(publish_status(&t, &Outcome::Placed(seen)).await?)),
        Err(e @ Error::Foreign { .. }) => {
            // Someone else's object is in the way: nothing of it is changed; say so and look again.
            let refusal = plan::Refusal { reason: reason::CONFLICT, message: e.to_string(), spec_error: false };
            publish_status(&t, &Outcome::Refused(refusal)).await?;
            Ok(Action::requeue(Duration::from_secs(60)))
        }
        Err(e) => Err(e),
    }
}

/// The children, in order: the Service (its address goes into the server certificate), the
/// certificates, the volume, then the engine pod, which needs all of them.
async fn place(t: &Target<'_>, plan: plan::Plan) -> Result<Observed> {
    let svc = service::ensure(t, &plan).await?;
    let tls = certs::ensure(t, &plan, &svc).await?;
    let storage = storage::ensure(t, &plan).await?;
    let engine = engine::ensure(t, &plan, &tls, &svc).await?;
    Ok(Observed { mode: plan.mode, class: plan.class, certificates: tls.status, storage, engine })
}

/// When to look again at a sandbox that reconciled fine: soon while it starts, rarely once Ready.
pub fn requeue_after(phase: Phase) -> Action {
    Action::requeue(match phase {
        Phase::Ready => Duration::from_secs(120),
        Phase::Provisioning => Duration::from_secs(5),
        _ => Duration::from_secs(30),
    })
}
