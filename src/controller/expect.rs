//! What the operator wrote and its caches have not shown yet: kube-controller-manager's
//! ControllerExpectations, per object.
//!
//! Every write records what the API server answered (the object with its resourceVersion, or that
//! it is gone). Until the watch delivers that very version, the cache is behind *for that object*,
//! and the reconciler reads what it wrote instead: it never decides from a stale object (a second
//! certificate, a second create, a status written back over a newer one), and never reads live to
//! find out. The watch event that ends an expectation is on its way and wakes the sandbox again.
//!
//! An expectation ends when the cache holds the written version (or, for a delete, no longer holds
//! that object), when the watch delivers it (even if someone wrote after it), when the watch lists
//! everything again after the write, or, as a safety net for an event that never comes (a watch
//! that lost it), after `EXPIRY`.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::Resource;
use kube::runtime::watcher::Event;

/// How long an expectation waits for its watch event at most (kube-controller-manager: 5 min).
pub const EXPIRY: Duration = Duration::from_secs(300);

/// Kind, namespace ("" for cluster-scoped), name.
type Key = (String, String, String);

/// What a write left behind.
#[derive(Clone)]
enum Wrote {
    /// The object as the API server stored it (type-erased; always the kind of the key).
    Version { uid: String, rv: String, object: Arc<dyn Any + Send + Sync> },
    /// The object with this uid was deleted.
    Gone { uid: String },
}

struct Pending {
    wrote: Wrote,
    /// When it was written (for `EXPIRY`).
    at: Instant,
    /// Order of writes, to tell which ones a re-list has seen.
    seq: u64,
}

/// The operator's writes not yet seen by its caches.
#[derive(Default)]
pub struct Expectations {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    pending: HashMap<Key, Pending>,
    seq: u64,
    /// Per kind: the write sequence when its watch started a re-list.
    relisting: HashMap<String, u64>,
}

fn key_of<K: Resource<DynamicType = ()>>(namespace: Option<&str>, name: &str) -> Key {
    (K::kind(&()).to_string(), namespace.unwrap_or_default().to_string(), name.to_string())
}

fn key_of_obj<K: Resource<DynamicType = ()>>(obj: &K) -> Option<Key> {
    let meta = obj.meta();
    Some(key_of::<K>(meta.namespace.as_deref(), meta.name.as_deref()?))
}

impl Expectations {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, key: Key, wrote: Wrote) {
        let mut inner = self.lock();
        inner.seq += 1;
        let seq = inner.seq;
        inner.pending.retain(|_, p| p.at.elapsed() < EXPIRY);
        inner.pending.insert(key, Pending { wrote, at: Instant::now(), seq });
    }

    /// Records `obj` as the API server answered a create or an update of it.
    pub fn wrote<K>(&self, obj: &K)
    where
        K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    {
        let (Some(key), Some(uid), Some(rv)) =
            (key_of_obj(obj), obj.meta().uid.clone(), obj.meta().resource_version.clone())
        else {
            return;
        };
        self.record(key, Wrote::Version { uid, rv, object: Arc::new(obj.clone()) });
    }

    /// Records that the object `namespace`/`name` with `uid` was deleted.
    pub fn deleted<K: Resource<DynamicType = ()>>(&self, namespace: Option<&str>, name: &str, uid: &str) {
        self.record(key_of::<K>(namespace, name), Wrote::Gone { uid: uid.to_string() });
    }

    /// What to take for the object `namespace`/`name`, given what the cache has: what this process
    /// wrote while the cache has not shown it yet, else the cache's.
    pub fn observed<K>(&self, namespace: Option<&str>, name: &str, cached: Option<Arc<K>>) -> Option<Arc<K>>
    where
        K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    {
        let key = key_of::<K>(namespace, name);
        let mut inner = self.lock();
        let Some(pending) = inner.pending.get(&key) else { return cached };
        let meta = cached.as_ref().map(|c| c.meta());
        let seen = pending.at.elapsed() >= EXPIRY
            || match &pending.wrote {
                // The cache has this very version (resourceVersions are compared for equality only).
                Wrote::Version { rv, .. } => meta.is_some_and(|m| m.resource_version.as_ref() == Some(rv)),
                // The cache has no such object any more (an older one it still shows is not the truth).
                Wrote::Gone { .. } => meta.is_none(),
            };
        if seen {
            inner.pending.remove(&key);
            return cached;
        }
        match &pending.wrote {
            Wrote::Version { object, .. } => object.clone().downcast::<K>().ok().or(cached),
            Wrote::Gone { .. } => None,
        }
    }

    /// Keeps only the expectations `keep(kind, namespace, name)` chooses: for tests that play the
    /// watches (every other event has arrived).
    #[doc(hidden)]
    pub fn retain(&self, keep: impl Fn(&str, &str, &str) -> bool) {
        self.lock().pending.retain(|(k, ns, n), _| keep(k, ns, n));
    }

    /// Whether a write to the object is still unseen (for tests and metrics).
    pub fn pending<K: Resource<DynamicType = ()>>(&self, namespace: Option<&str>, name: &str) -> bool {
        self.lock().pending.contains_key(&key_of::<K>(namespace, name))
    }

    /// How many writes the caches have not shown yet.
    pub fn len(&self) -> usize {
        self.lock().pending.len()
    }

    /// Whether every write has been seen.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ends the expectations a watch event of kind `K` fulfils. Called after the event reached the
    /// cache, so the cache already shows what ends them.
    pub fn saw<K: Resource<DynamicType = ()>>(&self, event: &Event<K>) {
        let kind = K::kind(&()).to_string();
        let mut inner = self.lock();
        match event {
            Event::Apply(obj) | Event::InitApply(obj) => {
                let Some(key) = key_of_obj(obj) else { return };
                let meta = obj.meta();
                // The watch delivers every version in order: once ours came, the cache is at least there.
                let done = inner.pending.get(&key).is_some_and(|p| match &p.wrote {
                    Wrote::Version { rv, .. } => meta.resource_version.as_ref() == Some(rv),
                    Wrote::Gone { .. } => false,
                });
                if done {
                    inner.pending.remove(&key);
                }
            }
            Event::Delete(obj) => {
                let Some(key) = key_of_obj(obj) else { return };
                let uid = obj.meta().uid.clone();
                let done = inner.pending.get(&key).is_some_and(|p| match &p.wrote {
                    // Our version (or an older one) went: nothing newer of ours can still come.
                    Wrote::Version { uid: ours, .. } | Wrote::Gone { uid: ours } => uid.as_ref() == Some(ours),
                });
                if done {
                    inner.pending.remove(&key);
                }
            }
            Event::Init => {
                let seq = inner.seq;
                inner.relisting.insert(kind, seq);
            }
            Event::InitDone => {
                // The list began after every write up to `seq` had returned: it shows them all.
                if let Some(seq) = inner.relisting.remove(&kind) {
                    inner.pending.retain(|(k, _, _), p| *k != kind || p.seq > seq);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Secret;
    use serde_json::json;

    use super::*;

    fn secret(uid: &str, rv: &str, data: &str) -> Secret {
        serde_json::from_value(json!({"metadata": {"name": "web-ca", "namespace": "team-a", "uid": uid,
            "resourceVersion": rv}, "stringData": {"x": data}}))
        .expect("secret")
    }

    fn observed(e: &Expectations, cached: Option<Secret>) -> Option<Secret> {
        e.observed::<Secret>(Some("team-a"), "web-ca", cached.map(Arc::new)).map(|s| (*s).clone())
    }

    #[test]
    fn a_write_stands_for_the_cache_until_the_cache_shows_that_version() {
        let e = Expectations::default();
        let old = secret("u", "5", "old");
        assert_eq!(observed(&e, Some(old.clone())), Some(old.clone()), "nothing written: the cache");
        e.wrote(&secret("u", "9", "new"));
        assert_eq!(observed(&e, Some(old.clone())).and_then(|s| s.string_data), secret("u", "9", "new").string_data);
        assert_eq!(
            observed(&e, None).map(|s| s.metadata.resource_version),
            Some(Some("9".into())),
            "a create not seen"
        );
        assert!(e.pending::<Secret>(Some("team-a"), "web-ca"));
        assert_eq!(
            observed(&e, Some(secret("u", "9", "new"))).map(|s| s.metadata.resource_version),
            Some(Some("9".into()))
        );
        assert!(e.is_empty(), "the cache caught up: it is the truth again");
        assert_eq!(observed(&e, Some(old.clone())), Some(old), "and stays so");
    }

    #[test]
    fn the_watch_event_ends_it_even_when_someone_wrote_after_us() {
        let e = Expectations::default();
        e.wrote(&secret("u", "9", "ours"));
        e.saw(&Event::Apply(secret("u", "8", "before")));
        assert!(!e.is_empty(), "an older version says nothing");
        e.saw(&Event::Apply(secret("u", "9", "ours")));
        assert!(e.is_empty());
        // Someone edits it after us: once our version came by, the cache (rv 10) is the truth.
        let theirs = secret("u", "10", "theirs");
        assert_eq!(observed(&e, Some(theirs.clone())), Some(theirs));
    }

    #[test]
    fn a_delete_hides_the_object_until_the_cache_lets_it_go() {
        let e = Expectations::default();
        let gone = secret("u", "9", "x");
        e.deleted::<Secret>(Some("team-a"), "web-ca", "u");
        assert_eq!(observed(&e, Some(gone.clone())), None, "the cache still has it: it is gone all the same");
        e.saw(&Event::Delete(gone));
        assert!(e.is_empty());
        e.deleted::<Secret>(Some("team-a"), "web-ca", "u");
        assert_eq!(observed(&e, None), None);
        assert!(e.is_empty(), "the cache has no such object: it caught up");
    }

    #[test]
    fn a_relist_after_the_write_ends_it_one_during_the_write_does_not() {
        let e = Expectations::default();
        e.wrote(&secret("u", "9", "x"));
        e.saw::<Secret>(&Event::Init);
        e.wrote(&Secret { metadata: secret("v", "11", "y").metadata, ..Default::default() });
        // two writes: web-ca (before the list began) and, same key, a newer one after it
        e.saw::<Secret>(&Event::InitDone);
        assert!(e.pending::<Secret>(Some("team-a"), "web-ca"), "written after the list began: still on its way");
        e.saw::<Secret>(&Event::Init);
        e.saw::<Secret>(&Event::InitDone);
        assert!(e.is_empty());
    }

    #[test]
    fn kinds_and_namespaces_are_kept_apart() {
        let e = Expectations::default();
        e.wrote(&secret("u", "9", "x"));
        assert!(!e.pending::<k8s_openapi::api::core::v1::Pod>(Some("team-a"), "web-ca"));
        assert!(!e.pending::<Secret>(Some("team-b"), "web-ca"));
        e.saw::<k8s_openapi::api::core::v1::Pod>(&Event::Init);
        e.saw::<k8s_openapi::api::core::v1::Pod>(&Event::InitDone);
        assert!(!e.is_empty(), "another kind's re-list");
    }
}
