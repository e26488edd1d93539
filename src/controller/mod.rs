//! Wiring: one Controller per watched namespace (or one for all), owning the sandbox's children.

mod apply;
mod certs;
pub mod context;
mod engine;
mod facts;
pub mod pods;
mod probe;
mod publish;
pub mod reconcile;
mod service;
pub mod status;
pub mod storage;

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::node::v1::RuntimeClass;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::reflector::Store;
use kube::runtime::{Controller, controller, watcher};
use kube::{Api, Client, ResourceExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

pub use context::Context;

use crate::crd::{DockerSandbox, DockerSandboxClass, Phase};
use crate::resources::MANAGED_SELECTOR;

/// The watched scopes: one per namespace, or `None` for all namespaces.
pub fn scopes(namespaces: &[String]) -> Vec<Option<&str>> {
    if namespaces.is_empty() { vec![None] } else { namespaces.iter().map(|n| Some(n.as_str())).collect() }
}

/// An API handle for `K` in one scope.
pub fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Builds the controllers; returns their caches (for readiness and metrics) and a future that runs
/// them until `shutdown` is cancelled.
pub fn controllers(
    ctx: Arc<Context>,
    shutdown: CancellationToken,
) -> (Vec<Store<DockerSandbox>>, impl std::future::Future<Output = ()>) {
    let namespaces = ctx.config.watched_namespaces();
    let children = watcher::Config::default().labels(MANAGED_SELECTOR);
    let mut stores = Vec::new();
    let mut runs = Vec::new();
    for scope in scopes(&namespaces) {
        let c = &ctx.client;
        let controller = Controller::new(api::<DockerSandbox>(c, scope), watcher::Config::default().any_semantic());
        let cache = controller.store();
        let users = controller.store();
        let controller = controller
            // A RuntimeClass appearing (or going) changes where waiting sandboxes can run.
            .watches(Api::<RuntimeClass>::all(c.clone()), watcher::Config::default(), move |_| waiting(&cache))
            // A class change (or a class appearing, going, becoming default) re-plans its sandboxes.
            .watches(Api::<DockerSandboxClass>::all(c.clone()), watcher::Config::default(), move |class| {
                using(&users, &class.name_any())
            })
            .owns(api::<Pod>(c, scope), children.clone())
            .owns(api::<Service>(c, scope), children.clone())
            .owns(api::<Secret>(c, scope), children.clone())
            .owns(api::<PersistentVolumeClaim>(c, scope), children.clone())
            .with_config(controller::Config::default().concurrency(ctx.config.concurrency))
            .graceful_shutdown_on(shutdown.clone().cancelled_owned());
        stores.push(controller.store());
        let gone = ctx.clone();
        let run = controller.run(reconcile::reconcile, reconcile::error_policy, ctx.clone()).for_each(move |res| {
            match res {
                Ok((obj, _)) => debug!(sandbox = %obj.name, "reconcile done"),
                Err(controller::Error::ObjectNotFound(obj)) => {
                    debug!(sandbox = %obj.name, "sandbox gone");
                    gone.forget(&obj);
                }
                Err(e) => warn!(error = %e, "controller"),
            }
            futures::future::ready(())
        });
        runs.push(run);
    }
    (stores, async move {
        futures::future::join_all(runs).await;
    })
}

/// Sandboxes that use class `name`, or have none yet (a class may just have become the default).
fn using(cache: &Store<DockerSandbox>, name: &str) -> Vec<ObjectRef<DockerSandbox>> {
    cache
        .state()
        .iter()
        .filter(|d| {
            let class = d.spec.class_name.as_deref().or(d.status.as_ref().and_then(|s| s.class_name.as_deref()));
            class.is_none_or(|c| c == name)
        })
        .map(|d| ObjectRef::from_obj(d.as_ref()))
        .collect()
}

/// Sandboxes that are not Ready: the ones a cluster change may unblock.
fn waiting(cache: &Store<DockerSandbox>) -> Vec<ObjectRef<DockerSandbox>> {
    cache
        .state()
        .iter()
        .filter(|d| d.status.as_ref().and_then(|s| s.phase) != Some(Phase::Ready))
        .map(|d| ObjectRef::from_obj(d.as_ref()))
        .collect()
}
