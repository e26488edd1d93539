//! Step: the Service's EndpointSlice. The Service has no selector; this names the engine pod the
//! sandbox owns (by its address, once it has one, ready as its Ready condition says), and nothing
//! else. A Service that had a selector (made by an operator before this one) keeps its ClusterIP:
//! the stale slices Kubernetes' controller made for it are deleted once the selector is gone.

use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::apply::{APPLIED_HASH_ANNOTATION, Child, stamped};
use super::context::Target;
use crate::error::Result;
use crate::plan::Plan;
use crate::plan::lifecycle::Run;
use crate::resources::activator::{self, Route};
use crate::resources::endpoints::{self, EnginePod};
use crate::resources::secret::SANDBOX_UID_LABEL;

/// Ensures the EndpointSlice names the engine pod as it is now (none while it has no address), or
/// the activator while connections wait for the engine (`run`, what the engine is doing now). A
/// sandbox without a `plan` (refused) is never held for: it names its engine pod, if one runs.
pub async fn ensure(t: &Target<'_>, plan: Option<&Plan>, run: Run) -> Result<()> {
    let engine = Child::<Pod>::of(t, &t.names.pod).observed()?.and_then(|p| engine_pod(&p));
    let child = Child::<EndpointSlice>::of(t, &t.names.service);
    let current = child.observed()?;
    let route = route(t, plan, run, engine, current.as_ref());
    let desired = match &route {
        // Nothing to route to yet: the slice comes with the pod's address (one write fewer per sandbox).
        Route::Engine(engine) => {
            (current.is_some() || engine.is_some()).then(|| endpoints::build(t.dsb, engine.as_ref()))
        }
        Route::Activator { addresses, port } => {
            Some(activator::to_activator(endpoints::build(t.dsb, None), addresses, *port))
        }
    };
    // The policy of an activator port is in place before the slice routes to it, and goes after
    // the slice no longer does.
    if let (Route::Activator { port, .. }, Some(plan)) = (&route, plan) {
        activator_policy(t, Some((plan, *port))).await?;
    }
    if let Some(desired) = desired {
        child.ensure(&stamped(&desired), current).await?;
    }
    if let Route::Engine(_) = &route {
        activator_policy(t, None).await?;
    }
    stale(t).await
}

/// Where the sandbox's Service sends connections now.
fn route(
    t: &Target<'_>,
    plan: Option<&Plan>,
    run: Run,
    engine: Option<EnginePod>,
    current: Option<&EndpointSlice>,
) -> Route {
    let key = (t.names.namespace.clone(), t.names.service.clone());
    let idles = plan.is_some_and(|p| p.lifecycle.idle_after.is_some());
    if t.ctx.activator.get().is_none() || !activator::holds(run, idles, engine.as_ref()) {
        t.ctx.release_activator_port(&key);
        return Route::Engine(engine);
    }
    // No activator pod is ready: as without an activator (refused at once, not left hanging).
    let addresses = t.ctx.activator_addresses();
    if addresses.is_empty() {
        return Route::Engine(engine);
    }
    let uid = t.dsb.uid().unwrap_or_default();
    match t.ctx.activator_port(key, &uid, current.and_then(activator::routed_port)) {
        Some(port) => Route::Activator { addresses, port },
        None => {
            tracing::warn!(
                "every activator port is taken (--activator-ports): connections are not held for this sandbox"
            );
            Route::Engine(engine)
        }
    }
}

/// The NetworkPolicy that admits the engine's peers (`plan`) to the sandbox's activator `port`, in
/// the operator's namespace; deleted when there is no port.
async fn activator_policy(t: &Target<'_>, port: Option<(&Plan, u16)>) -> Result<()> {
    if t.ctx.activator.get().is_none() {
        return Ok(());
    }
    let ns = t.ctx.config.ca_namespace();
    let name = activator::policy_name(t.dsb);
    let uid = t.dsb.uid().unwrap_or_default();
    let ours = move |meta: &ObjectMeta| match meta.labels.as_ref().and_then(|l| l.get(SANDBOX_UID_LABEL)) {
        Some(u) if *u == uid => Ok(()),
        _ => Err("its labels name another sandbox".to_string()),
    };
    let child = Child::<NetworkPolicy>::owned_by(t, ns, &name, Box::new(ours));
    let current = child.observed()?;
    match (port, current) {
        (Some((plan, port)), current) => {
            // The caches keep no spec of a policy without an owner (tenants can label anything
            // alike): in the operator's namespace, where tenants cannot write, its stamp says
            // whether it is as wanted.
            let desired = stamped(&activator::policy(t.dsb, &plan.network, port, ns));
            let stamp = |p: &NetworkPolicy| p.annotations().get(APPLIED_HASH_ANNOTATION).cloned();
            child.ensure_if(&desired, current, |c| stamp(c) == stamp(&desired)).await?;
        }
        (None, Some(current)) => child.delete(&current).await?,
        (None, None) => {}
    }
    Ok(())
}

/// The engine pod as an endpoint: while it is not stopping and has an address.
pub(crate) fn engine_pod(pod: &Pod) -> Option<EnginePod> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.as_ref()?;
    let ip = status.pod_ip.clone().filter(|ip| !ip.is_empty())?;
    let ready = status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True");
    Some(EnginePod { ip, uid: pod.uid(), ready })
}

/// Deletes what Kubernetes made for the sandbox's Service while it had a selector: the EndpointSlice
/// controller's slices, which it leaves as they were once the selector is gone, and the Endpoints
/// object of its Endpoints controller, which the mirroring controller then copies into slices. Left
/// alone, kube-proxy would route to every address they name (a pod gone, or one that copied the
/// engine's labels).
async fn stale(t: &Target<'_>) -> Result<()> {
    let Some(svc) = Child::<Service>::of(t, &t.names.service).observed()? else { return Ok(()) };
    if svc.spec.as_ref().and_then(|s| s.selector.as_ref()).is_some_and(|s| !s.is_empty()) {
        return Ok(());
    }
    let ns = t.names.namespace.as_str();
    // Only slices with the names Kubernetes gives them are decoded: this runs at every reconcile,
    // and a namespace may hold a thousand sandboxes' slices.
    let prefix = endpoints::generated_name_prefix(&t.names.service);
    let theirs: Vec<_> = t
        .ctx
        .caches
        .all_in::<EndpointSlice>(ns, |name| name.starts_with(&prefix))
        .into_iter()
        .filter_map(|s| endpoints::made_by_kubernetes_for(&s, &t.names.service).map(|by| (s, by)))
        .collect();
    if theirs.iter().any(|(_, by)| *by == endpoints::MIRRORING_MANAGED_BY) {
        let params = kube::api::DeleteParams::default();
        match t.api::<Endpoints>().delete(&t.names.service, &params).await {
            Ok(_) => tracing::info!("deleted the Endpoints object Kubernetes made while the Service had a selector"),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(crate::error::Error::kube("delete", "Endpoints", &t.names.service)(e)),
        }
    }
    for (slice, by) in theirs {
        let name = slice.name_any();
        let child = Child::<EndpointSlice>::owned_by(t, ns, &name, Box::new(|_| Ok(())));
        child.delete(&slice).await?;
        tracing::info!(slice = %name, managed_by = by, "deleted an EndpointSlice Kubernetes made while the Service had a selector");
    }
    Ok(())
}
