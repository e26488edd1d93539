//! The reconciler's view of the cluster: stores fed by the same watches that wake the controller.
//! A reconcile reads its children, the namespace, the class, RuntimeClasses and nodes from here, so
//! a sandbox whose children are as wanted costs no API request at all.
//!
//! Stores keep objects packed (`Packed`): under `namespace/name`, as compressed JSON, decoded on
//! each read. In the API types and kube's reflector store an object took 3 to 6 KiB of heap;
//! packed, 0.8 to 2.3 KiB (a sandbox's children: 12 KiB instead of 40).
//!
//! A store can be behind the operator's own last write (the watch event is still on its way): the
//! steps read children through `apply::Child`, which overlays what this process wrote and the
//! stores have not shown yet (`expect`). Writes stay exact, idle costs nothing.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::marker::PhantomData;
use std::sync::{Arc, RwLock};

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, Namespace, Node,
    PersistentVolumeClaim, Pod, PodCondition, PodStatus, Secret, Service,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::node::v1::RuntimeClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher::Event;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::crd::DockerSandboxClass;

/// The one list of cached kinds. Each line is a kind, the field that names its stores and writers,
/// and what is dropped before an object of it is kept (in a store, or as a write the stores have
/// not shown yet). Namespaced kinds have a store per watched scope, cluster-wide kinds one. From
/// it come the stores (`Caches`), the writers the watches feed (`Feeds`, `ScopeFeeds`), the sync
/// signal (`announce_synced`) and the test snapshots (`Caches::snapshot`).
macro_rules! cached_kinds {
    (
        namespaced { $($(#[$sdoc:meta])* $skind:ty => $sfield:ident, $sslim:expr;)* }
        cluster { $($(#[$cdoc:meta])* $ckind:ty => $cfield:ident, $cslim:expr;)* }
    ) => {
        /// The stores, one per watched scope for namespaced kinds (a lookup asks each; only the one
        /// of the object's namespace can hold it).
        #[derive(Clone)]
        pub struct Caches {
            $($sfield: Vec<Packed<$skind>>,)*
            $($cfield: Vec<Packed<$ckind>>,)*
            synced: watch::Receiver<bool>,
        }

        /// The writers behind `Caches`, handed to the watches that feed them.
        pub struct Feeds {
            /// Per scope, in the order of `controller::scopes`.
            pub scopes: Vec<ScopeFeeds>,
            $($(#[$cdoc])* pub $cfield: PackedWriter<$ckind>,)*
            /// CA key Secrets in the operator's namespace (first among the Secret stores: the scope
            /// stores may hold the same objects without their data).
            pub ca_keys: PackedWriter<Secret>,
            /// Set once every store has its first full list.
            pub synced: watch::Sender<bool>,
        }

        /// The writers of one scope's namespaced stores.
        pub struct ScopeFeeds {
            $($(#[$sdoc])* pub $sfield: PackedWriter<$skind>,)*
        }

        $(impl Cached for $skind {
            fn stores(c: &Caches) -> &[Packed<Self>] {
                &c.$sfield
            }
            fn slim(&mut self) {
                let slim: fn(&mut Self) = $sslim;
                slim(self)
            }
        })*
        $(impl Cached for $ckind {
            fn stores(c: &Caches) -> &[Packed<Self>] {
                &c.$cfield
            }
            fn slim(&mut self) {
                let slim: fn(&mut Self) = $cslim;
                slim(self)
            }
        })*

        impl Caches {
            /// Empty stores for `scopes` watched scopes, and the writers that fill them.
            pub fn new(scopes: usize) -> (Self, Feeds) {
                let (synced_tx, synced) = watch::channel(false);
                let mut caches = Self { $($sfield: vec![],)* $($cfield: vec![],)* synced };
                let ca_keys = pair(&mut caches.secrets);
                let scopes = (0..scopes.max(1))
                    .map(|_| ScopeFeeds { $($sfield: pair(&mut caches.$sfield),)* })
                    .collect();
                let feeds = Feeds { scopes, $($cfield: pair(&mut caches.$cfield),)* ca_keys, synced: synced_tx };
                (caches, feeds)
            }

            /// Caches holding exactly `objects` (a snapshot, already synced): for tests of the
            /// reconciler. Objects are told apart by their `kind`; other kinds are ignored.
            #[doc(hidden)]
            pub fn snapshot(objects: impl IntoIterator<Item = serde_json::Value>) -> Self {
                let (caches, feeds) = Self::new(1);
                let Feeds { mut scopes, $(mut $cfield,)* mut ca_keys, synced } = feeds;
                let ScopeFeeds { $(mut $sfield,)* } = scopes.remove(0);
                // By kind; the CA key store is filled by no kind (its Secrets go to the scope's).
                let mut writers: Vec<(Option<String>, &mut dyn Init)> = vec![
                    $((Some(<$skind as Resource>::kind(&()).into_owned()), &mut $sfield),)*
                    $((Some(<$ckind as Resource>::kind(&()).into_owned()), &mut $cfield),)*
                    (None, &mut ca_keys),
                ];
                writers.iter_mut().for_each(|(_, w)| w.begin());
                for o in objects {
                    let kind = o["kind"].as_str().unwrap_or_default();
                    if let Some((_, w)) = writers.iter_mut().find(|(k, _)| k.as_deref() == Some(kind)) {
                        w.add(o);
                    }
                }
                writers.iter_mut().for_each(|(_, w)| w.end());
                let _ = synced.send(true);
                // The stores keep their content when their writers go.
                caches
            }
        }

        /// Waits for every store of `caches` to be filled, then says so on `synced`.
        pub async fn announce_synced(caches: Caches, synced: watch::Sender<bool>) {
            // Each store has exactly this one waiter (kube's readiness future wakes one waiter only).
            async fn all<K: Cached>(c: &Caches) {
                for s in K::stores(c) {
                    let _ = s.wait_until_ready().await;
                }
            }
            $(all::<$skind>(&caches).await;)*
            $(all::<$ckind>(&caches).await;)*
            tracing::info!("caches synced: reconciling");
            let _ = synced.send(true);
        }
    };
}

/// A kind the caches hold.
pub trait Cached:
    Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + Debug + Send + Sync + 'static
{
    /// Its stores.
    fn stores(c: &Caches) -> &[Packed<Self>];
    /// Drops what the reconciler never reads, before an object is kept (in a store, or as a write
    /// the stores have not shown yet).
    fn slim(&mut self);
}

cached_kinds! {
    namespaced {
        /// Engine pods.
        Pod => pods, slim_pod;
        /// Services.
        Service => services, slim_service;
        /// Secrets. The operator's own are small and kept whole when it writes them (the watch
        /// bounds the others with `slim_secret`; CA keys, which have no owner, are not slimmed
        /// there either).
        Secret => secrets, |s| bound_meta(&mut s.metadata);
        /// Claims.
        PersistentVolumeClaim => claims, slim_claim;
        /// NetworkPolicies.
        NetworkPolicy => policies, slim_policy;
        /// EndpointSlices of the sandboxes' Services (the operator's, and those Kubernetes'
        /// controller made while a Service still had a selector).
        EndpointSlice => endpoint_slices, slim_endpoint_slice;
        /// The scope's namespaces (metadata only: labels and deletion).
        PartialObjectMeta<Namespace> => namespaces, |_| {};
    }
    cluster {
        /// RuntimeClasses.
        RuntimeClass => runtime_classes, |_| {};
        /// DockerSandboxClasses.
        DockerSandboxClass => classes, |_| {};
        /// Nodes.
        Node => nodes, slim_node;
    }
}

impl Caches {
    /// Waits until every store has had its first full list; a reconcile before that would take
    /// "not in the cache" for "does not exist" (and issue a new CA over an existing one).
    pub async fn synced(&self) {
        let mut rx = self.synced.clone();
        // The sender lives as long as the controllers; if it is gone, nothing reconciles anyway.
        let _ = rx.wait_for(|synced| *synced).await;
    }

    /// The object `name` of kind `K` in `namespace` (ignored for cluster-scoped kinds), if cached.
    pub fn get<K: Cached>(&self, namespace: Option<&str>, name: &str) -> Option<Arc<K>> {
        // A cluster-scoped object has no namespace in its key.
        let keys = [key(namespace, name), key(None, name)];
        K::stores(self).iter().find_map(|s| keys.iter().find_map(|k| s.get(k))).map(Arc::new)
    }

    /// The cached CA key Secrets (the operator's namespace).
    pub fn ca_keys(&self) -> Vec<Arc<Secret>> {
        self.secrets.first().map(|s| s.matching(|_, _| true)).unwrap_or_default()
    }

    /// Every cached object of kind `K`.
    pub fn all<K: Cached>(&self) -> Vec<Arc<K>> {
        K::stores(self).iter().flat_map(|s| s.matching(|_, _| true)).collect()
    }

    /// Every cached object of kind `K` in `namespace` whose name `named` accepts (only those are
    /// decoded: names and namespaces are kept in the clear).
    pub fn all_in<K: Cached>(&self, namespace: &str, named: impl Fn(&str) -> bool) -> Vec<Arc<K>> {
        K::stores(self).iter().flat_map(|s| s.matching(|ns, name| ns == namespace && named(name))).collect()
    }
}

/// A store's key: `namespace/name`, or the name of a cluster-scoped object.
fn key(namespace: Option<&str>, name: &str) -> Box<str> {
    match namespace {
        Some(ns) => format!("{ns}/{name}").into_boxed_str(),
        None => name.into(),
    }
}

/// The key of `obj` in its store.
fn key_of<K: Cached>(obj: &K) -> Box<str> {
    let meta = obj.meta();
    key(meta.namespace.as_deref(), meta.name.as_deref().unwrap_or_default())
}

type Map = HashMap<Box<str>, Box<[u8]>>;

/// The objects of one kind a watch shows: per object its key (`namespace/name`) and the object
/// packed, i.e. its JSON (slimmed before) compressed with LZ4, decoded on each read. In the API
/// types and kube's reflector store an object cost 3 to 6 KiB of heap: every optional field takes
/// its room, every map node and string is an allocation of its own, and the store keeps the name,
/// namespace, uid and resourceVersion again in its key. Packed it costs its compressed JSON (0.7 to
/// 2.2 KiB) and about 150 bytes. A reconcile reads about ten objects; decoding one takes
/// microseconds.
pub struct Packed<K> {
    map: Arc<RwLock<Map>>,
    ready: watch::Receiver<bool>,
    kind: PhantomData<fn() -> K>,
}

impl<K> Clone for Packed<K> {
    fn clone(&self) -> Self {
        Self { map: self.map.clone(), ready: self.ready.clone(), kind: PhantomData }
    }
}

/// What fills a `Packed` store from a watch's events, as kube's reflector writer does: a re-list
/// (`Init` .. `InitDone`) replaces the whole content at its end; the store is ready after the first.
pub struct PackedWriter<K> {
    map: Arc<RwLock<Map>>,
    relisting: Option<Map>,
    ready: watch::Sender<bool>,
    kind: PhantomData<fn() -> K>,
}

/// An empty store of `K` and its writer.
pub fn packed<K: Cached>() -> (Packed<K>, PackedWriter<K>) {
    let map = Arc::new(RwLock::new(Map::new()));
    let (tx, rx) = watch::channel(false);
    (
        Packed { map: map.clone(), ready: rx, kind: PhantomData },
        PackedWriter { map, relisting: None, ready: tx, kind: PhantomData },
    )
}

/// `obj` packed.
pub fn pack<K: Cached>(obj: &K) -> Box<[u8]> {
    // The API types always serialize (their maps have string keys).
    let json = serde_json::to_vec(obj).unwrap_or_default();
    lz4_flex::compress_prepend_size(&json).into_boxed_slice()
}

/// A packed object again. `None` only if this process packed something it cannot read back, which
/// the API types never do (a unit test round-trips every kind).
pub fn unpack<K: Cached>(bytes: &[u8]) -> Option<K> {
    let json = lz4_flex::decompress_size_prepended(bytes).ok()?;
    match serde_json::from_slice(&json) {
        Ok(obj) => Some(obj),
        Err(e) => {
            tracing::error!(error = %e, kind = %K::kind(&()), "a cached object does not decode");
            None
        }
    }
}

impl<K: Cached> Packed<K> {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Map> {
        self.map.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The object under `key`, decoded.
    fn get(&self, key: &str) -> Option<K> {
        self.read().get(key).and_then(|b| unpack(b))
    }

    /// The objects whose namespace ("" when cluster-scoped) and name `pick` accepts, decoded.
    fn matching(&self, pick: impl Fn(&str, &str) -> bool) -> Vec<Arc<K>> {
        self.read()
            .iter()
            .filter(|(k, _)| {
                let (ns, name) = k.split_once('/').unwrap_or(("", k));
                pick(ns, name)
            })
            .filter_map(|(_, b)| unpack(b).map(Arc::new))
            .collect()
    }

    /// Waits until the store has had its first full list.
    pub async fn wait_until_ready(&self) {
        let mut ready = self.ready.clone();
        // The writer lives as long as its watch; if it is gone, nothing waits on this anyway.
        let _ = ready.wait_for(|r| *r).await;
    }

    /// How many objects it holds.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.read().len()
    }
}

impl<K: Cached> PackedWriter<K> {
    /// Applies one watch event.
    pub fn apply(&mut self, event: &Event<K>) {
        let write = || self.map.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        match event {
            Event::Apply(o) => {
                write().insert(key_of(o), pack(o));
            }
            Event::Delete(o) => {
                write().remove(&key_of(o));
            }
            Event::Init => self.relisting = Some(Map::new()),
            Event::InitApply(o) => {
                self.relisting.get_or_insert_default().insert(key_of(o), pack(o));
            }
            Event::InitDone => {
                let mut listed = self.relisting.take().unwrap_or_default();
                listed.shrink_to_fit();
                *write() = listed;
                self.ready.send_replace(true);
            }
        }
    }
}

fn pair<K: Cached>(stores: &mut Vec<Packed<K>>) -> PackedWriter<K> {
    let (reader, writer) = packed();
    stores.push(reader);
    writer
}

/// A writer filled by hand (tests): a full list in three steps.
trait Init {
    fn begin(&mut self);
    fn add(&mut self, obj: serde_json::Value);
    fn end(&mut self);
}

impl<K: Cached> Init for PackedWriter<K> {
    fn begin(&mut self) {
        self.apply(&Event::Init);
    }

    fn add(&mut self, obj: serde_json::Value) {
        match serde_json::from_value::<K>(obj) {
            // As the watches keep it.
            Ok(o) => self.apply(&Event::InitApply(super::apply::slim(&o))),
            Err(e) => tracing::warn!(error = %e, "snapshot object skipped"),
        }
    }

    fn end(&mut self) {
        self.apply(&Event::InitDone);
    }
}

/// Drops what the operator never reads from a node (the image list is most of its size).
pub fn slim_node(node: &mut Node) {
    node.metadata.managed_fields = None;
    if let Some(status) = node.status.as_mut() {
        status.images = None;
        status.conditions = None;
        status.volumes_attached = None;
        status.volumes_in_use = None;
    }
}

/// The most a cached child keeps of what its writers can fill freely: labels, annotations, a
/// Secret's data. Children are watched cluster-wide by one label any tenant can set, so these
/// bounds, not the tenant, decide what the caches cost. The operator's own children stay well below.
pub const MAX_CACHED_BYTES: usize = 16 * 1024;

/// Whether a DockerSandbox owns the object (tenants can write such a reference too: it only
/// decides what is kept in the cache; `resources::claim` decides what is the sandbox's).
fn sandbox_owned(meta: &ObjectMeta) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|o| o.kind == "DockerSandbox" && o.api_version.starts_with("dockersandbox.dev/"))
}

fn size(map: Option<&BTreeMap<String, String>>) -> usize {
    map.into_iter().flatten().map(|(k, v)| k.len() + v.len()).sum()
}

/// Labels and annotations beyond `MAX_CACHED_BYTES` are cut down to the operator's own keys.
pub fn bound_meta(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    let ours = |k: &String| k.starts_with("dockersandbox.dev/") || k.starts_with("app.kubernetes.io/");
    for map in [&mut meta.labels, &mut meta.annotations] {
        if size(map.as_ref()) > MAX_CACHED_BYTES {
            if let Some(m) = map.as_mut() {
                m.retain(|k, _| ours(k));
            }
            if size(map.as_ref()) > MAX_CACHED_BYTES {
                *map = None;
            }
        }
    }
}

/// A Secret is cached with its data only when a DockerSandbox owns it and the data is small (the
/// operator's own hold a certificate, a key and a CA: a few KiB). Anything else is cached as
/// metadata: a reconcile that needs more reads it live, and a tenant's large labelled Secrets cost
/// the operator no memory.
pub fn slim_secret(secret: &mut Secret) {
    bound_meta(&mut secret.metadata);
    let data: usize = secret.data.iter().flatten().map(|(k, v)| k.len() + v.0.len()).sum::<usize>()
        + secret.string_data.iter().flatten().map(|(k, v)| k.len() + v.len()).sum::<usize>();
    if data > MAX_CACHED_BYTES || !sandbox_owned(&secret.metadata) {
        secret.data = None;
        secret.string_data = None;
    }
}

/// A Service no sandbox owns is cached as metadata (the reconciler only needs to see that it is
/// there and whose it is).
pub fn slim_service(svc: &mut Service) {
    bound_meta(&mut svc.metadata);
    if !sandbox_owned(&svc.metadata) {
        svc.spec = None;
        svc.status = None;
    }
}

/// A NetworkPolicy no sandbox owns is cached as metadata.
pub fn slim_policy(policy: &mut NetworkPolicy) {
    bound_meta(&mut policy.metadata);
    if !sandbox_owned(&policy.metadata) {
        policy.spec = None;
    }
}

/// An EndpointSlice no sandbox owns is cached as metadata (its labels say whose it is).
pub fn slim_endpoint_slice(slice: &mut EndpointSlice) {
    bound_meta(&mut slice.metadata);
    if !sandbox_owned(&slice.metadata) {
        slice.endpoints = None;
        slice.ports = None;
    }
}

/// Claims are kept whole (a Retain claim has no owner, and its status matters); their labels and
/// annotations are bounded.
pub fn slim_claim(claim: &mut PersistentVolumeClaim) {
    bound_meta(&mut claim.metadata);
}

/// Drops what the reconciler never reads from a cached engine pod: its spec (containers, volumes,
/// probes, tolerations: most of a pod's size, and at 1000 sandboxes a good part of the operator's
/// memory). Whether the pod is the one wanted is read from its spec-hash annotation, its state from
/// its status; a decision to replace or stop it reads the pod live. A pod no sandbox owns keeps
/// only its metadata.
pub fn slim_pod(pod: &mut Pod) {
    bound_meta(&mut pod.metadata);
    pod.spec = None;
    match pod.status.take() {
        Some(status) if sandbox_owned(&pod.metadata) => pod.status = Some(slim_pod_status(status)),
        _ => {}
    }
}

/// What `pods::state` and `pods::decide` read of a pod's status: its phase and reason, its IP, the
/// Ready and PodScheduled conditions (without their times), and each container's name, state and
/// last termination message. Times, images, IDs, resources and the rest are dropped.
fn slim_pod_status(status: PodStatus) -> PodStatus {
    let conditions = status.conditions.map(|cs| {
        cs.into_iter()
            .filter(|c| c.type_ == "Ready" || c.type_ == "PodScheduled")
            .map(|c| PodCondition { type_: c.type_, status: c.status, message: c.message, ..PodCondition::default() })
            .collect()
    });
    let waiting = |state: Option<ContainerState>| {
        let waiting = state?.waiting?;
        Some(ContainerState {
            waiting: Some(ContainerStateWaiting { reason: waiting.reason, message: waiting.message }),
            ..ContainerState::default()
        })
    };
    let terminated = |state: Option<ContainerState>| {
        let message = state?.terminated?.message;
        Some(ContainerState {
            terminated: Some(ContainerStateTerminated { message, ..ContainerStateTerminated::default() }),
            ..ContainerState::default()
        })
    };
    let container_statuses = status.container_statuses.map(|cs| {
        cs.into_iter()
            .map(|c| ContainerStatus {
                name: c.name,
                ready: c.ready,
                state: waiting(c.state),
                last_state: terminated(c.last_state),
                ..ContainerStatus::default()
            })
            .collect()
    });
    PodStatus {
        phase: status.phase,
        reason: status.reason,
        pod_ip: status.pod_ip,
        conditions,
        container_statuses,
        ..PodStatus::default()
    }
}

/// Marks a store that is not watched as filled (and empty).
pub fn empty<K: Cached>(mut writer: PackedWriter<K>) {
    writer.begin();
    writer.end();
}

#[cfg(test)]
mod tests {
    use kube::ResourceExt;
    use serde_json::json;

    use super::*;
    use crate::controller::apply::APPLIED_HASH_ANNOTATION as APPLIED;

    #[test]
    fn a_slim_pod_decides_and_reads_as_the_full_pod() {
        use crate::controller::pods::{decide, state};
        use crate::crd::SPEC_HASH_ANNOTATION;
        let time = "2026-12-05T10:00:00Z";
        let statuses = [
            json!({"phase": "Running", "podIP": "10.0.0.7", "podIPs": [{"ip": "10.0.0.7"}], "hostIP": "192.0.2.2",
                   "startTime": time, "qosClass": "Burstable",
                   "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": time},
                                  {"type": "Initialized", "status": "True"}]}),
            json!({"phase": "Running", "podIP": "10.0.0.7", "conditions": [{"type": "Ready", "status": "False"}],
                   "containerStatuses": [{"name": "dockerd", "image": "docker:dind", "imageID": "sha256:x", "ready": false,
                     "restartCount": 4, "containerID": "containerd://abc",
                     "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
                     "lastState": {"terminated": {"exitCode": 1, "message": "failed to start daemon", "startedAt": time}}}]}),
            json!({"phase": "Pending", "containerStatuses": [{"name": "dockerd", "image": "d", "imageID": "", "ready": false,
                     "restartCount": 0, "state": {"waiting": {"reason": "CreateContainerConfigError", "message": "no secret"}}}]}),
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                     "message": "0/1 nodes are available: 1 Insufficient cpu.", "lastProbeTime": null}]}),
            json!({"phase": "Failed", "reason": "Evicted", "message": "the node was low on resource: ephemeral-storage"}),
            json!({"phase": "Running", "containerStatuses": [{"name": "dockerd", "image": "d", "imageID": "", "ready": false,
                     "restartCount": 1, "state": {"running": {"startedAt": time}}}]}),
        ];
        for status in statuses {
            let mut full: Pod = serde_json::from_value(json!({
                "metadata": {"name": "web-engine", "ownerReferences": [{"apiVersion": "dockersandbox.dev/v1alpha1",
                    "kind": "DockerSandbox", "name": "web", "uid": "u", "controller": true}]},
                "spec": {"containers": [{"name": "dockerd", "image": "docker:dind", "args": ["--tlsverify"]}],
                         "volumes": [{"name": "data", "emptyDir": {}}]},
                "status": status.clone()
            }))
            .expect("pod");
            full.annotations_mut().insert(SPEC_HASH_ANNOTATION.into(), "abc".into());
            let mut slim = full.clone();
            slim_pod(&mut slim);
            assert!(slim.spec.is_none());
            assert_eq!(state(&slim), state(&full), "{status}");
            let kept = serde_json::to_string(&slim.status).expect("json");
            for dropped in [time, "192.0.2.2", "podIPs", "sha256:x", "containerd://abc", "Burstable", "Initialized"] {
                assert!(!kept.contains(dropped), "{dropped} is dropped: {kept}");
            }
            for wanted in ["abc", "other"] {
                let mut desired = full.clone();
                desired.annotations_mut().insert(SPEC_HASH_ANNOTATION.into(), wanted.into());
                assert_eq!(decide(&slim, &desired), decide(&full, &desired), "wanted hash {wanted}, {status}");
            }
        }
    }

    #[tokio::test]
    async fn snapshot_serves_objects_by_kind_namespace_and_name() {
        let c = Caches::snapshot([
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "team-a"}}),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a", "labels": {"a": "b"}}}),
            json!({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "sysbox-runc"}, "handler": "sysbox-runc"}),
        ]);
        c.synced().await;
        assert!(c.get::<Service>(Some("team-a"), "web").is_some());
        assert!(c.get::<Service>(Some("team-b"), "web").is_none(), "another namespace's name is not ours");
        assert!(c.get::<Pod>(Some("team-a"), "web").is_none());
        let ns = c.get::<PartialObjectMeta<Namespace>>(None, "team-a").expect("namespace");
        assert_eq!(ns.labels().get("a").map(String::as_str), Some("b"));
        assert!(c.get::<RuntimeClass>(None, "sysbox-runc").is_some());
        assert_eq!(c.all::<RuntimeClass>().len(), 1);
    }

    /// `v` as `K`, packed and read back: the same JSON.
    fn round_trip<K: Cached>(v: serde_json::Value) {
        let obj: K = serde_json::from_value(v).expect("object");
        let back: K = unpack(&pack(&obj)).expect("unpacks");
        assert_eq!(serde_json::to_value(&back).ok(), serde_json::to_value(&obj).ok(), "{}", K::kind(&()));
    }

    #[tokio::test]
    async fn a_packed_store_follows_its_watch_and_a_relist_replaces_it_whole() {
        let svc = |name: &str, rv: &str| -> Service {
            serde_json::from_value(json!({"metadata": {"name": name, "namespace": "team-a", "resourceVersion": rv}}))
                .expect("service")
        };
        let (store, mut writer) = packed::<Service>();
        let ready = store.clone();
        let waiting = tokio::spawn(async move { ready.wait_until_ready().await });
        writer.apply(&Event::Init);
        writer.apply(&Event::InitApply(svc("web", "1")));
        writer.apply(&Event::InitApply(svc("old", "1")));
        assert_eq!(store.len(), 0, "a list shows once it is complete");
        assert!(!waiting.is_finished());
        writer.apply(&Event::InitDone);
        waiting.await.expect("ready after the first list");
        writer.apply(&Event::Apply(svc("web", "2")));
        assert_eq!(store.get("team-a/web").and_then(|s| s.metadata.resource_version), Some("2".into()));
        writer.apply(&Event::Delete(svc("web", "3")));
        assert!(store.get("team-a/web").is_none());
        // A relist: what it does not list is gone at its end.
        writer.apply(&Event::Init);
        writer.apply(&Event::InitApply(svc("new", "4")));
        assert!(store.get("team-a/old").is_some(), "kept until the relist ends");
        writer.apply(&Event::InitDone);
        assert!(store.get("team-a/old").is_none());
        assert!(store.get("team-a/new").is_some());
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn every_cached_kind_reads_back_from_its_packed_form() {
        let meta = json!({"name": "web", "namespace": "team-a", "uid": "u-1", "resourceVersion": "42",
            "creationTimestamp": "2026-12-06T03:20:34Z", "labels": {"app.kubernetes.io/instance": "web"},
            "annotations": {APPLIED: "7217c94c33496b01"},
            "ownerReferences": [{"apiVersion": "dockersandbox.dev/v1alpha1", "kind": "DockerSandbox", "name": "web",
                "uid": "s-1", "controller": true}]});
        round_trip::<Pod>(json!({"metadata": meta, "status": {"phase": "Running", "podIP": "10.244.0.7",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "dockerd", "ready": true, "restartCount": 0, "image": "d", "imageID": "",
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "m"}}}]}}));
        round_trip::<Service>(json!({"metadata": meta, "spec": {"clusterIP": "10.96.0.10",
            "ports": [{"name": "docker-tls", "port": 2376, "targetPort": "docker-tls", "protocol": "TCP"}]}}));
        // Bytes that are not text come back as they were.
        round_trip::<Secret>(json!({"metadata": meta, "type": "kubernetes.io/tls",
            "data": {"tls.crt": "LS0tLS1CRUdJTg==", "raw": "AP8Q/w=="}}));
        round_trip::<PersistentVolumeClaim>(json!({"metadata": meta, "spec": {"accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}}}, "status": {"phase": "Bound", "capacity": {"storage": "1024Mi"}}}));
        round_trip::<NetworkPolicy>(json!({"metadata": meta, "spec": {"podSelector": {"matchLabels": {"a": "b"}},
            "policyTypes": ["Ingress"], "ingress": [{"ports": [{"port": 2376, "protocol": "TCP"}],
                "from": [{"namespaceSelector": {}, "podSelector": {"matchExpressions": [{"key": "k", "operator": "Exists"}]}}]}]}}));
        round_trip::<EndpointSlice>(json!({"metadata": meta, "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.244.0.7"], "conditions": {"ready": true}}],
            "ports": [{"name": "docker-tls", "port": 2376, "protocol": "TCP"}]}));
        round_trip::<PartialObjectMeta<Namespace>>(
            json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
            "metadata": {"name": "team-a", "labels": {"pod-security.kubernetes.io/enforce": "privileged"}}}),
        );
        round_trip::<RuntimeClass>(json!({"metadata": {"name": "sysbox-runc"}, "handler": "sysbox-runc"}));
        round_trip::<Node>(json!({"metadata": {"name": "n1", "labels": {"a": "b"}},
            "status": {"nodeInfo": {"containerRuntimeVersion": "containerd://2.1", "architecture": "amd64",
                "bootID": "", "kernelVersion": "", "kubeProxyVersion": "", "kubeletVersion": "", "machineID": "",
                "operatingSystem": "linux", "osImage": "", "systemUUID": ""}}}));
        round_trip::<DockerSandboxClass>(
            json!({"apiVersion": "dockersandbox.dev/v1alpha1", "kind": "DockerSandboxClass",
            "metadata": {"name": "default"}, "spec": {}}),
        );
    }

    #[tokio::test]
    async fn all_in_decodes_only_the_named_objects_of_one_namespace() {
        let svc = |ns: &str, name: &str| json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns}});
        let c = Caches::snapshot([svc("team-a", "web"), svc("team-a", "db"), svc("team-b", "web")]);
        c.synced().await;
        let mut names: Vec<_> = c.all_in::<Service>("team-a", |_| true).iter().map(|s| s.name_any()).collect();
        names.sort();
        assert_eq!(names, ["db", "web"]);
        assert_eq!(c.all::<Service>().len(), 3);
        assert!(c.all_in::<Service>("team-c", |_| true).is_empty());
        let named = c.all_in::<Service>("team-a", |n| n.starts_with('w'));
        assert_eq!(named.iter().map(|s| s.name_any()).collect::<Vec<_>>(), ["web"]);
    }

    #[test]
    fn a_tenants_large_labelled_secret_costs_only_its_bounded_metadata() {
        let big = "A".repeat(1 << 20);
        let mut planted: Secret = serde_json::from_value(json!({
            "metadata": {"name": "junk", "namespace": "team-a",
                         "labels": {"app.kubernetes.io/managed-by": "dockersandbox-operator"},
                         "annotations": {"junk": big}},
            "stringData": {"x": big}
        }))
        .expect("secret");
        planted.data = Some([("y".to_string(), k8s_openapi::ByteString(vec![0; 1 << 20]))].into());
        slim_secret(&mut planted);
        assert!(planted.data.is_none() && planted.string_data.is_none());
        assert!(planted.metadata.annotations.is_none_or(|a| a.is_empty()), "oversized annotations are cut");
        assert_eq!(planted.metadata.labels.expect("labels").len(), 1, "its small labels stay");

        // The operator's own Secret (owned by a sandbox, a few KiB) keeps its data.
        let owner = json!([{"apiVersion": "dockersandbox.dev/v1alpha1", "kind": "DockerSandbox", "name": "web",
                            "uid": "u", "controller": true}]);
        let mut ours: Secret = serde_json::from_value(json!({
            "metadata": {"name": "web-client", "ownerReferences": owner},
            "data": {"cert.pem": "QUJD"}
        }))
        .expect("secret");
        slim_secret(&mut ours);
        assert!(ours.data.is_some());
        // Owned but filled with a megabyte: metadata only (the reconciler reads it live and restores it).
        ours.data = Some([("cert.pem".to_string(), k8s_openapi::ByteString(vec![0; 1 << 20]))].into());
        slim_secret(&mut ours);
        assert!(ours.data.is_none());
    }

    #[test]
    fn children_no_sandbox_owns_are_cached_as_metadata() {
        let mut svc: Service =
            serde_json::from_value(json!({"metadata": {"name": "x"}, "spec": {"ports": [{"port": 1}]}})).expect("svc");
        slim_service(&mut svc);
        assert!(svc.spec.is_none());
        let mut pod: Pod =
            serde_json::from_value(json!({"metadata": {"name": "x"}, "status": {"phase": "Running"}})).expect("pod");
        slim_pod(&mut pod);
        assert!(pod.spec.is_none() && pod.status.is_none());
        let mut np: NetworkPolicy =
            serde_json::from_value(json!({"metadata": {"name": "x"}, "spec": {"podSelector": {}}})).expect("np");
        slim_policy(&mut np);
        assert!(np.spec.is_none());
    }

    #[test]
    fn slim_node_keeps_the_runtime_and_labels() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "n1", "labels": {"k": "v"}, "managedFields": [{"manager": "kubelet"}]},
            "status": {"images": [{"names": ["a"]}], "nodeInfo": {"containerRuntimeVersion": "containerd://2.1",
              "architecture": "", "bootID": "", "kernelVersion": "", "kubeProxyVersion": "", "kubeletVersion": "",
              "machineID": "", "operatingSystem": "", "osImage": "", "systemUUID": ""}}
        }))
        .expect("node");
        let mut n = node;
        slim_node(&mut n);
        assert!(n.metadata.managed_fields.as_ref().is_none_or(Vec::is_empty));
        let status = n.status.expect("status");
        assert!(status.images.is_none());
        assert_eq!(status.node_info.expect("info").container_runtime_version, "containerd://2.1");
        assert_eq!(n.metadata.labels.expect("labels")["k"], "v");
    }
}
