//! Wiring: one Controller per watched namespace (or one for all), owning the sandbox's children.

mod apply;
mod ca_keys;
pub mod cache;
mod certs;
mod claims;
pub mod context;
mod endpoints;
mod engine;
pub mod expect;
mod facts;
pub mod gc;
mod lifecycle;
mod network;
pub mod pods;
mod pools;
pub mod probe;
mod publish;
pub mod reconcile;
pub mod sandboxes;
mod service;
pub mod status;
pub mod storage;

use std::sync::Arc;

use futures::{FutureExt, Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::node::v1::RuntimeClass;
use kube::core::PartialObjectMeta;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store, reflector};
use kube::runtime::{Controller, WatchStreamExt, controller, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use cache::{Cached, PackedWriter};
pub use cache::{Caches, Feeds};
pub use context::Context;
use expect::Expectations;

use crate::config::SysboxUserNamespace;
use crate::crd::conditions::reason;
use crate::crd::{DockerSandbox, DockerSandboxClass, Phase};
use crate::resources::{MANAGED_SELECTOR, secret};

/// Secrets per list page: at most this many large Secrets are in memory at once while listing.
const SECRET_PAGE: u32 = 16;

/// Sandboxes and other children per list page. A list is parsed whole before its objects are
/// slimmed and packed: 1000 sandboxes in one list (as the API server's watch cache answers a list
/// at any resourceVersion, unpaged) took 15 MiB of heap at once when the operator started, which
/// its RSS kept. Paged, a list is read consistently, a page at a time.
const LIST_PAGE: u32 = 100;

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

/// Builds the controllers and the watches that feed `feeds` (the context's caches); returns the
/// sandbox caches (for readiness and metrics) and a future that runs everything until `shutdown`
/// is cancelled.
pub fn controllers(
    ctx: Arc<Context>,
    feeds: Feeds,
    shutdown: CancellationToken,
) -> (Vec<Store<DockerSandbox>>, impl std::future::Future<Output = ()>) {
    let namespaces = ctx.config.watched_namespaces();
    let c = &ctx.client;
    // Children: full objects (the reconciler reads them), without managedFields (never read), in
    // pages.
    let children = watcher::Config::default().labels(MANAGED_SELECTOR).page_size(LIST_PAGE);
    let secrets = watcher::Config::default().labels(MANAGED_SELECTOR).page_size(SECRET_PAGE);
    let Feeds { scopes: scope_feeds, runtime_classes, classes, nodes, ca_keys, synced } = feeds;
    let mut stores = Vec::new();
    let mut runs = Vec::new();
    let mut wakes = Vec::new();
    let mut pool_stores = Vec::new();
    for (scope, f) in scopes(&namespaces).into_iter().zip(scope_feeds) {
        let (wake, woken) = futures::channel::mpsc::unbounded();
        // Sandboxes are read one by one: one this version cannot read is reported, not fatal.
        let (reader, writer) = kube::runtime::reflector::store::<DockerSandbox>();
        // Cached without what the reconciler never reads (managedFields, kubectl's copy of the last
        // applied object): at 1000 sandboxes that is megabytes.
        let raw = watcher(sandboxes::raw_api(c, scope), watcher::Config::default().page_size(LIST_PAGE))
            .modify(sandboxes::slim)
            .backoff(watch_backoff());
        let typed = sandboxes::typed(raw, report_unreadable(ctx.clone()));
        let expect = ctx.expect.clone();
        // A claimed engine sandbox's changes (its phase, its certificates) wake its claimant, and a
        // pooled one's its pool; after the store has the change.
        let (claimants, to_claimant) = (reader.clone(), wake.clone());
        let (to_pool, pool_woken) = futures::channel::mpsc::unbounded();
        let typed = reflector(writer, typed).inspect(move |event| {
            saw(&expect, event);
            if let Ok(event) = event {
                claimant_of(&claimants, &to_claimant, event);
                if let Some(pool) = touched(event).and_then(pools::pool_of) {
                    let _ = to_pool.unbounded_send(pool);
                }
            }
        });
        let controller = Controller::for_stream(typed.applied_objects(), reader);
        let sandboxes = controller.store();
        wakes.push((controller.store(), wake));
        let namespace_watch = match scope {
            Some(ns) => watcher::Config::default().fields(&format!("metadata.name={ns}")),
            None => watcher::Config::default(),
        };
        let controller = controller
            // Children are matched by a label anyone can set: each is bounded before it is cached
            // (cache::slim_*). Pods also lose their spec: only metadata and status are read.
            .owns_stream(feed(
                ctx.expect.clone(),
                f.pods,
                watcher(api::<Pod>(c, scope), children.clone()).modify(cache::slim_pod),
            ))
            .owns_stream(feed(
                ctx.expect.clone(),
                f.services,
                watcher(api::<Service>(c, scope), children.clone()).modify(cache::slim_service),
            ))
            // Secrets are listed in small pages from the API server (not all at once from its watch
            // cache): a namespace full of large labelled Secrets never has to fit in memory at once.
            .owns_stream(feed(
                ctx.expect.clone(),
                f.secrets,
                watcher(api::<Secret>(c, scope), secrets.clone()).modify(cache::slim_secret),
            ))
            // A Retain claim has no owner reference (it outlives the sandbox): it is mapped by its
            // labels, so a claim that binds, is lost or goes still wakes its sandbox.
            .watches_stream(
                feed(
                    ctx.expect.clone(),
                    f.claims,
                    watcher(api::<PersistentVolumeClaim>(c, scope), children.clone()).modify(cache::slim_claim),
                ),
                |claim| labelled_owner(&claim),
            )
            // The Services' EndpointSlices, mapped by their labels: the operator's own, and the
            // stale ones Kubernetes' controller made while a Service had a selector (they carry
            // the Service's labels), which the sandbox deletes.
            .watches_stream(
                feed(
                    ctx.expect.clone(),
                    f.endpoint_slices,
                    watcher(api::<EndpointSlice>(c, scope), children.clone()).modify(cache::slim_endpoint_slice),
                ),
                |slice| labelled_owner(&slice),
            )
            .owns_stream(feed(
                ctx.expect.clone(),
                f.policies,
                watcher(api::<NetworkPolicy>(c, scope), children.clone()).modify(cache::slim_policy),
            ))
            // A namespace's labels decide privileged opt-in: a change re-plans its sandboxes.
            .watches_stream(
                feed(
                    ctx.expect.clone(),
                    f.namespaces,
                    watcher(Api::<PartialObjectMeta<Namespace>>::all(c.clone()), namespace_watch),
                ),
                move |ns| in_namespace(&sandboxes, &ns.name_any()),
            )
            // Cluster-scoped changes, mapped to sandboxes below.
            .reconcile_on(woken)
            .with_config(controller::Config::default().concurrency(ctx.config.concurrency))
            .trigger_backoff(EachWatchBacksOff)
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
        runs.push(run.boxed());
        let sandboxes = stores[stores.len() - 1].clone();
        let (pools, run) = pools::controller(ctx.clone(), scope, sandboxes, pool_woken, shutdown.clone());
        pool_stores.push(pools);
        runs.push(run);
    }
    let _ = ctx.metrics.pool_stores.set(pool_stores.clone());
    let _ = ctx.stores.set((stores.clone(), pool_stores));
    let wakes = Arc::new(wakes);
    let w = wakes.clone();
    // A RuntimeClass appearing (or going) changes where waiting sandboxes can run.
    let rcs = feed(
        ctx.expect.clone(),
        runtime_classes,
        watcher(Api::<RuntimeClass>::all(c.clone()), watcher::Config::default()),
    )
    .for_each(move |_| {
        wake(&w, waiting);
        futures::future::ready(())
    });
    // A class change (or a class appearing, going, becoming default) re-plans its sandboxes.
    let w = wakes.clone();
    let class_changes = feed(
        ctx.expect.clone(),
        classes,
        watcher(Api::<DockerSandboxClass>::all(c.clone()), watcher::Config::default()),
    )
    .for_each(move |class| {
        if let Ok(class) = class {
            wake(&w, |store| using(store, &class.name_any()));
        }
        futures::future::ready(())
    });
    // Nodes wake nobody (their status changes all the time); they are read when a sandbox is planned.
    let node_feed = if ctx.config.sysbox_user_namespace == SysboxUserNamespace::Auto {
        feed(
            ctx.expect.clone(),
            nodes,
            watcher(Api::<Node>::all(c.clone()), watcher::Config::default()).modify(cache::slim_node),
        )
        .for_each(|_| futures::future::ready(()))
        .boxed()
    } else {
        cache::empty(nodes);
        futures::future::ready(()).boxed()
    };
    // CA keys in the operator's namespace (only the operator writes there): a change wakes the
    // sandbox whose uid it carries; keys of sandboxes that are gone are swept.
    let w = wakes.clone();
    let ca_selector = format!("{MANAGED_SELECTOR},app.kubernetes.io/component={}", secret::CA_KEY_COMPONENT);
    let ca_api = Api::<Secret>::namespaced(c.clone(), ctx.config.ca_namespace());
    let ca_feed = feed(ctx.expect.clone(), ca_keys, watcher(ca_api, watcher::Config::default().labels(&ca_selector)))
        .for_each(move |key| {
            if let Ok(key) = key
                && let Some(uid) = key.labels().get(secret::SANDBOX_UID_LABEL).cloned()
            {
                wake(&w, |store| with_uid(store, &uid));
            }
            futures::future::ready(())
        });
    let sweep = ca_keys::sweep(ctx.clone(), stores.clone());
    // The activator's pods, from the EndpointSlices of its Service: a change re-routes the
    // sandboxes whose connections wait for their engine (they are not Ready).
    let (activator_feed, activator_ready) = if Context::activator_enabled(&ctx.config) {
        let (reader, writer) = kube::runtime::reflector::store::<EndpointSlice>();
        let _ = ctx.activator.set(reader.clone());
        let w = wakes.clone();
        let api = Api::<EndpointSlice>::namespaced(c.clone(), ctx.config.ca_namespace());
        let config = watcher::Config::default().labels(&format!(
            "{}={}",
            crate::resources::endpoints::SERVICE_NAME_LABEL,
            ctx.config.activator_service
        ));
        let feed =
            reflector(writer, watcher(api, config).backoff(watch_backoff())).touched_objects().for_each(move |_| {
                wake(&w, waiting);
                futures::future::ready(())
            });
        (feed.boxed(), Some(reader))
    } else {
        if !ctx.config.activator_service.is_empty() {
            warn!(
                namespace = ctx.config.ca_namespace(),
                "the activator is off: the operator's own namespace is not among the watched ones, where the policies of \
                 its ports live"
            );
        }
        (futures::future::ready(()).boxed(), None)
    };
    let caches = ctx.caches.clone();
    // Nothing is reconciled before the activator's pods are known too: a route decided on an
    // empty list would turn every waiting sandbox away from the activator and back.
    let announce = async move {
        if let Some(reader) = activator_ready {
            let _ = reader.wait_until_ready().await;
        }
        cache::announce_synced(caches, synced).await;
    };
    let sweep_policies = ca_keys::sweep_activator_policies(ctx.clone(), stores.clone());
    let feeders = async move {
        futures::join!(rcs, class_changes, node_feed, ca_feed, sweep, sweep_policies, activator_feed, announce);
    };
    (stores, async move {
        // The feeders end when the controllers do (they are watches: they never end by themselves).
        futures::future::select(Box::pin(futures::future::join_all(runs)), Box::pin(feeders)).await;
    })
}

/// A watch that fills `writer` (without managedFields) and yields what it touched; retried with
/// backoff when the API server is away.
fn feed<K: Cached>(
    expect: Arc<Expectations>,
    mut writer: PackedWriter<K>,
    watch: impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send + 'static,
) -> impl Stream<Item = watcher::Result<K>> + Send + 'static {
    let watch = watch.modify(|o: &mut K| o.meta_mut().managed_fields = None).backoff(watch_backoff());
    // The store keeps each object packed; the watch goes on with it as it came. Once the store has
    // an event, the writes it shows are no longer expected.
    watch.inspect_ok(move |event| writer.apply(event)).inspect(move |event| saw(&expect, event)).touched_objects()
}

/// How a failed watch is retried: 0.5 s doubling to 2 s, plus up to as much jitter (so at most 4 s
/// between tries), from 0.5 s again after 2 minutes without a failure. After an API server restart
/// every watch fails a few times in a row (refused while it is down, then "too old resource
/// version" before it lists again), and each failure waits: kube's default waits up to 30 s plus
/// jitter per try, a 10 s cap up to 20 s (the controller's joint pause, `EachWatchBacksOff`, came
/// on top). A dozen watches of the operator's own labelled objects retried every few seconds is
/// little load for an API server.
fn watch_backoff() -> impl kube::runtime::utils::Backoff {
    let exponential = backon::ExponentialBuilder::default()
        .with_min_delay(std::time::Duration::from_millis(500))
        .with_max_delay(std::time::Duration::from_secs(2))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times();
    kube::runtime::utils::ResetTimerBackoff::new(
        kube::runtime::watcher::ExponentialBackoff::from(exponential),
        std::time::Duration::from_secs(120),
    )
}

/// The controller's backoff over all its trigger streams together: none. kube's default pauses
/// every trigger (the sandboxes' watch and all the children's, unread meanwhile) for 0.8 s doubling
/// to 30 s plus jitter after an error from *any* of them. After an API server restart every watch
/// errs a few times, and the operator saw nothing for 83 s (e2e 20: the audit log shows every
/// child watch listing again at one instant, long after their own backoff had ended). Each watch
/// backs off on its own (`watch_backoff`): the errors it passes on need no second pause.
struct EachWatchBacksOff;

impl Iterator for EachWatchBacksOff {
    type Item = std::time::Duration;

    fn next(&mut self) -> Option<std::time::Duration> {
        Some(std::time::Duration::ZERO)
    }
}

impl kube::runtime::utils::Backoff for EachWatchBacksOff {
    fn reset(&mut self) {}
}

/// Tells `expect` what a watch event brought (after the store has it).
fn saw<K: Resource<DynamicType = ()>>(expect: &Expectations, event: &watcher::Result<watcher::Event<K>>) {
    if let Ok(event) = event {
        expect.saw(event);
    }
}

/// Reports a sandbox that cannot be read: a Warning Event on it that says what to fix.
fn report_unreadable(ctx: Arc<Context>) -> impl Fn(sandboxes::Unreadable) + Send + Sync + 'static {
    move |u| {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let note = format!(
                "the operator cannot read this DockerSandbox and does not reconcile it until it is fixed (edit or \
                 recreate it; other sandboxes are not affected): {}",
                u.error
            );
            ctx.event(&u.sandbox, EventType::Warning, reason::UNREADABLE, note).await;
        });
    }
}

/// A controller's sandbox cache and the channel that queues its sandboxes.
type Wake = (Store<DockerSandbox>, futures::channel::mpsc::UnboundedSender<ObjectRef<DockerSandbox>>);

/// Queues the sandboxes `pick` chooses in every controller.
fn wake(wakes: &[Wake], pick: impl Fn(&Store<DockerSandbox>) -> Vec<ObjectRef<DockerSandbox>>) {
    for (store, tx) in wakes {
        for obj in pick(store) {
            let _ = tx.unbounded_send(obj);
        }
    }
}

/// Wakes the claimant of every claimed engine sandbox in `event`.
fn claimant_of(
    store: &Store<DockerSandbox>,
    wake: &futures::channel::mpsc::UnboundedSender<ObjectRef<DockerSandbox>>,
    event: &watcher::Event<DockerSandbox>,
) {
    if let Some(uid) = touched(event).and_then(|d| d.labels().get(crate::crd::CLAIMED_BY_LABEL)) {
        for claimant in with_uid(store, uid) {
            let _ = wake.unbounded_send(claimant);
        }
    }
}

/// The sandbox a watch event carries, if any.
fn touched(event: &watcher::Event<DockerSandbox>) -> Option<&DockerSandbox> {
    match event {
        watcher::Event::Apply(d) | watcher::Event::Delete(d) | watcher::Event::InitApply(d) => Some(d),
        watcher::Event::Init | watcher::Event::InitDone => None,
    }
}

/// The sandbox a child names in its `app.kubernetes.io/instance` label (every child carries it).
fn labelled_owner<K: Resource>(child: &K) -> Option<ObjectRef<DockerSandbox>> {
    let name = child.labels().get(crate::resources::label::INSTANCE)?;
    Some(ObjectRef::new(name).within(&child.namespace()?))
}

/// Sandboxes in namespace `ns`.
fn in_namespace(cache: &Store<DockerSandbox>, ns: &str) -> Vec<ObjectRef<DockerSandbox>> {
    cache
        .state()
        .iter()
        .filter(|d| d.namespace().as_deref() == Some(ns))
        .map(|d| ObjectRef::from_obj(d.as_ref()))
        .collect()
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

/// The sandbox with `uid`, if cached.
fn with_uid(cache: &Store<DockerSandbox>, uid: &str) -> Vec<ObjectRef<DockerSandbox>> {
    cache
        .state()
        .iter()
        .filter(|d| d.metadata.uid.as_deref() == Some(uid))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_without_owner_reference_maps_to_its_sandbox_by_label() {
        let mut claim = PersistentVolumeClaim::default();
        claim.metadata.namespace = Some("team-a".into());
        assert_eq!(labelled_owner(&claim), None, "no label, no sandbox");
        claim.metadata.labels = Some([("app.kubernetes.io/instance".to_string(), "web".to_string())].into());
        assert_eq!(labelled_owner(&claim), Some(ObjectRef::new("web").within("team-a")));
    }
}
