//! The reconcile loop: read → plan → build → apply → status. The only place that talks to the API
//! server (with its helpers in `apply`, `certs` and `engine`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Service};
use k8s_openapi::api::node::v1::RuntimeClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use tracing::{debug, info, instrument, warn};

use super::apply::{apply, get};
use super::context::Context;
use super::engine::{self, Route};
use super::status::{self, Engine, Observed, Storage};
use super::{certs, pods};
use crate::crd::{DockerSandbox, FIELD_MANAGER, Phase};
use crate::error::{Error, Result};
use crate::plan::{self, Facts};
use crate::resources::{Names, pod, pvc, service};

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
            ctx.event(&dsb, true, "ReconcileFailed", e.to_string()).await;
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
    let ns = dsb.namespace().ok_or_else(|| Error::NoNamespace(dsb.name_any()))?;
    let names = Names::of(dsb);
    if dsb.metadata.deletion_timestamp.is_some() {
        let seen = Observed::refused(plan::Refusal {
            reason: "Terminating",
            message: "the sandbox is being deleted".into(),
            spec_error: false,
        });
        publish_status(ctx, dsb, &seen).await?;
        return Ok(Action::await_change());
    }
    let Some(facts) = facts(ctx, &ns).await? else {
        // The namespace is being deleted: creating children would only be refused.
        return Ok(Action::await_change());
    };
    let plan = match plan::resolve(dsb, &facts, &ctx.config) {
        Ok(plan) => plan,
        Err(refusal) => {
            let spec_error = refusal.spec_error;
            publish_status(ctx, dsb, &Observed::refused(refusal)).await?;
            // A spec error waits for a spec change; a cluster problem (RuntimeClass, policy) is re-checked.
            return Ok(if spec_error { Action::await_change() } else { Action::requeue(Duration::from_secs(60)) });
        }
    };

    let svc = ensure_service(ctx, dsb, &names).await?;
    let tls = certs::ensure(ctx, dsb, &names, &svc).await?;
    let storage = match pvc::build(dsb, &plan) {
        None => Storage::Ephemeral,
        Some(claim) => {
            let claims = Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), &ns);
            match apply(&claims, &claim).await {
                Ok(applied) => storage_state(&applied),
                // e.g. a resize the StorageClass cannot do: keep the engine on the volume it has, and say so.
                Err(e) if e.is_permanent() && get(&claims, &names.pvc).await?.is_some() => Storage::Waiting(format!(
                    "PersistentVolumeClaim {} could not be updated to the spec: {}",
                    names.pvc,
                    e.api_message().unwrap_or_default()
                )),
                Err(e) => return Err(e),
            }
        }
    };
    let engine = match pods::ensure(ctx, dsb, &pod::build(dsb, &plan, &tls.server.cert)).await? {
        pods::PodState::Ready => {
            let route = if ctx.dial_service {
                let ip = svc.spec.as_ref().and_then(|s| s.cluster_ip.clone()).unwrap_or_default();
                Route::Direct(ip)
            } else {
                Route::PortForward(Box::new(Api::namespaced(ctx.client.clone(), &ns)), names.pod.clone())
            };
            match engine::probe(route, &names.server_name(), &tls.ca.cert, &tls.client).await {
                Ok(version) => Engine::Answering(version),
                Err(why) => {
                    Engine::NotAnswering(format!("the engine pod is ready but dockerd does not answer over TLS: {why}"))
                }
            }
        }
        pods::PodState::Waiting(why) => Engine::NotAnswering(why),
        pods::PodState::Broken { reason, message } => Engine::Broken { reason, message },
    };
    let seen = Observed {
        refusal: None,
        isolation: Some(plan.mode.as_str().to_string()),
        certificates: Some(tls.status),
        storage,
        engine,
    };
    let phase = publish_status(ctx, dsb, &seen).await?;
    Ok(Action::requeue(match phase {
        Phase::Ready => Duration::from_secs(120),
        Phase::Provisioning => Duration::from_secs(5),
        _ => Duration::from_secs(30),
    }))
}

/// Applies the Service, keeping its ClusterIP: the address is in the server certificate, so a
/// Service deleted by hand comes back with the address it had (when it is still free) and the
/// engine keeps running with its certificate.
async fn ensure_service(ctx: &Context, dsb: &DockerSandbox, names: &Names) -> Result<Service> {
    let api = Api::<Service>::namespaced(ctx.client.clone(), &names.namespace);
    let mut desired = service::build(dsb);
    let current = get(&api, &names.service).await?;
    let ip = match current.as_ref().and_then(|s| s.spec.as_ref()?.cluster_ip.clone()) {
        Some(ip) => Some(ip),
        None => certs::previous_cluster_ip(ctx, dsb, names).await?,
    };
    let reused = current.is_none() && ip.is_some();
    if let Some(spec) = desired.spec.as_mut() {
        spec.cluster_ip = ip;
    }
    match apply(&api, &desired).await {
        Err(e) if reused && e.is_permanent() => {
            // The old address is taken or outside the range: take a new one (and a new certificate).
            if let Some(spec) = desired.spec.as_mut() {
                spec.cluster_ip = None;
            }
            apply(&api, &desired).await
        }
        other => other,
    }
}

/// What decides where the engine may run; `None` when the namespace is terminating.
async fn facts(ctx: &Context, ns: &str) -> Result<Option<Facts>> {
    let namespace = get(&Api::<Namespace>::all(ctx.client.clone()), ns).await?;
    if namespace.as_ref().is_some_and(|n| n.metadata.deletion_timestamp.is_some()) {
        return Ok(None);
    }
    let rc_name = &ctx.config.sysbox_runtime_class;
    let rc = get(&Api::<RuntimeClass>::all(ctx.client.clone()), rc_name).await?;
    let pod_security_enforce = namespace.and_then(|n| n.labels().get("pod-security.kubernetes.io/enforce").cloned());
    Ok(Some(Facts { sysbox_runtime_class: rc.is_some(), pod_security_enforce }))
}

fn storage_state(claim: &PersistentVolumeClaim) -> Storage {
    let name = claim.name_any();
    match claim.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Bound") => Storage::Bound,
        Some("Lost") => Storage::Waiting(format!(
            "PersistentVolumeClaim {name} lost its volume; restore the PersistentVolume or delete the claim"
        )),
        _ if claim.metadata.deletion_timestamp.is_some() => {
            Storage::Waiting(format!("PersistentVolumeClaim {name} is being deleted; it is re-created once it is gone"))
        }
        _ => Storage::Waiting(format!(
            "waiting for PersistentVolumeClaim {name} to bind (a WaitForFirstConsumer class binds once the engine pod is scheduled); see kubectl describe pvc {name}"
        )),
    }
}

/// Computes the status, patches it only when it changed, and emits an event when the phase changes.
async fn publish_status(ctx: &Context, dsb: &DockerSandbox, seen: &Observed) -> Result<Phase> {
    let now = Time(jiff::Timestamp::now());
    let new = status::compute(dsb, seen, &now);
    let phase = new.phase.unwrap_or(Phase::Pending);
    if !status::changed(dsb.status.as_ref(), &new) {
        return Ok(phase);
    }
    let name = dsb.name_any();
    let api: Api<DockerSandbox> = Api::namespaced(ctx.client.clone(), &dsb.namespace().unwrap_or_default());
    let body = serde_json::json!({
        "apiVersion": DockerSandbox::api_version(&()),
        "kind": DockerSandbox::kind(&()),
        "status": new,
    });
    api.patch_status(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body))
        .await
        .map_err(Error::kube("patch status of", "DockerSandbox", &name))?;
    let old_phase = dsb.status.as_ref().and_then(|s| s.phase);
    if old_phase != Some(phase) {
        info!(from = ?old_phase, to = ?phase, "phase changed");
        let ready = new.conditions.iter().find(|c| c.type_ == crate::crd::conditions::READY);
        let (reason, message) = ready.map(|c| (c.reason.clone(), c.message.clone())).unwrap_or_default();
        match phase {
            Phase::Ready => {
                ctx.event(
                    dsb,
                    false,
                    "EngineReady",
                    format!("dockerd answers at {}", new.endpoint.clone().unwrap_or_default()),
                )
                .await
            }
            Phase::Failed | Phase::Pending => ctx.event(dsb, true, &reason, message).await,
            Phase::Provisioning if old_phase == Some(Phase::Ready) => {
                ctx.event(dsb, true, "EngineNotAnswering", message).await
            }
            Phase::Provisioning | Phase::Terminating => {}
        }
    }
    Ok(phase)
}
