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
//! that lost it), after `EXPIRY`. The watch can also outrun the answer to the request: a write is
//! announced (`writing`) before it is sent, the events for that object meanwhile are noted, and an
//! answer whose version already came by leaves no expectation.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::Resource;
use kube::runtime::watcher::Event;
use tracing::{debug, warn};

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
    /// Writes sent and not answered yet, with the events their objects had meanwhile.
    in_flight: HashMap<Key, InFlight>,
}

/// The most events noted for one object while a write to it is in flight.
const MAX_NOTED: usize = 64;

#[derive(Default)]
struct InFlight {
    /// How many writes to the object are in flight.
    writers: usize,
    /// (resourceVersion, uid, deleted) of each event that came meanwhile.
    seen: Vec<(Option<String>, Option<String>, bool)>,
}

/// A write to one object, announced before it is sent; says what the API server answered.
#[must_use = "a write announced is ended by wrote, deleted or drop"]
pub struct Writing<'a> {
    expect: &'a Expectations,
    key: Key,
}

impl Writing<'_> {
    /// The API server stored `obj` (created, updated, or marked for deletion).
    pub fn wrote<K>(self, obj: &K)
    where
        K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    {
        let (Some(uid), Some(rv)) = (obj.meta().uid.clone(), obj.meta().resource_version.clone()) else { return };
        let came = |(v, _, _): &(Option<String>, Option<String>, bool)| v.as_ref() == Some(&rv);
        self.expect.settle(&self.key, came, || Wrote::Version {
            uid: uid.clone(),
            rv: rv.clone(),
            object: Arc::new(obj.clone()),
        });
    }

    /// The API server deleted the object with `uid`.
    pub fn deleted(self, uid: &str) {
        let came = |(_, u, deleted): &(Option<String>, Option<String>, bool)| *deleted && u.as_deref() == Some(uid);
        self.expect.settle(&self.key, came, || Wrote::Gone { uid: uid.to_string() });
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        let mut inner = self.expect.lock();
        if let Some(f) = inner.in_flight.get_mut(&self.key) {
            f.writers -= 1;
            if f.writers == 0 {
                inner.in_flight.remove(&self.key);
            }
        }
    }
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

    /// Ends a write announced for `key`: if an event that `came` (the watch was faster than the
    /// answer) was noted meanwhile, the cache has it and nothing is expected; otherwise `wrote` is.
    /// One lock for both: an event that `saw` notes between the check and the record would
    /// otherwise pass unseen, and the expectation would hide the cache until `EXPIRY`.
    fn settle(
        &self,
        key: &Key,
        came: impl Fn(&(Option<String>, Option<String>, bool)) -> bool,
        wrote: impl FnOnce() -> Wrote,
    ) {
        let mut inner = self.lock();
        if inner.in_flight.get(key).is_some_and(|f| f.seen.iter().any(came)) {
            inner.pending.remove(key);
            return;
        }
        let wrote = wrote();
        let (kind, namespace, name) = key;
        match &wrote {
            Wrote::Version { rv, .. } => debug!(kind, namespace, name, rv, "waiting for the watch to show our write"),
            Wrote::Gone { uid } => debug!(kind, namespace, name, uid, "waiting for the watch to show our delete"),
        }
        inner.seq += 1;
        let seq = inner.seq;
        inner.pending.retain(|_, p| p.at.elapsed() < EXPIRY);
        inner.pending.insert(key.clone(), Pending { wrote, at: Instant::now(), seq });
    }

    /// Announces a write to the object `namespace`/`name` of kind `K`, before it is sent.
    pub fn writing<K: Resource<DynamicType = ()>>(&self, namespace: Option<&str>, name: &str) -> Writing<'_> {
        let key = key_of::<K>(namespace, name);
        self.lock().in_flight.entry(key.clone()).or_default().writers += 1;
        Writing { expect: self, key }
    }

    /// Records `obj` as the API server answered a write of it, for tests (writes announce
    /// themselves with `writing`: only that can tell that the watch was faster).
    #[cfg(test)]
    pub(crate) fn wrote<K>(&self, obj: &K)
    where
        K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    {
        let Some(name) = obj.meta().name.as_deref() else { return };
        self.writing::<K>(obj.meta().namespace.as_deref(), name).wrote(obj);
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
        let expired = pending.at.elapsed() >= EXPIRY;
        if expired {
            let (kind, namespace, name) = &key;
            warn!(
                kind,
                namespace,
                name,
                "the watch never showed our write in 5 minutes (an event lost?): the cache is taken again"
            );
        }
        let seen = expired
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
        if let Event::Apply(obj) | Event::InitApply(obj) | Event::Delete(obj) = event
            && let Some(key) = key_of_obj(obj)
            && let Some(f) = inner.in_flight.get_mut(&key)
            && f.seen.len() < MAX_NOTED
        {
            let meta = obj.meta();
            f.seen.push((meta.resource_version.clone(), meta.uid.clone(), matches!(event, Event::Delete(_))));
        }
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
                    let (kind, namespace, name) = &key;
                    debug!(kind, namespace, name, "the watch showed our write");
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
    fn an_event_racing_the_answer_on_another_thread_never_leaves_an_expectation() {
        // The watch event of a write and its answer arrive on two threads, in any order and as
        // close together as they come: once both are through, nothing is expected (an event seen
        // between the check for it and the record of the write used to be missed, and the
        // expectation then hid the cache for 5 minutes).
        for i in 0..2000 {
            let e = Arc::new(Expectations::default());
            let created = secret("u", &i.to_string(), "v");
            let writing = e.writing::<Secret>(Some("team-a"), "web-ca");
            let (watch, event) = (e.clone(), created.clone());
            let start = Arc::new(std::sync::Barrier::new(2));
            let go = start.clone();
            let tap = std::thread::spawn(move || {
                go.wait();
                watch.saw(&Event::Apply(event));
            });
            start.wait();
            writing.wrote(&created);
            tap.join().expect("watch thread");
            assert!(
                !e.pending::<Secret>(Some("team-a"), "web-ca"),
                "iteration {i}: the event came, nothing is expected"
            );
        }
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
        e.writing::<Secret>(Some("team-a"), "web-ca").deleted("u");
        assert_eq!(observed(&e, Some(gone.clone())), None, "the cache still has it: it is gone all the same");
        e.saw(&Event::Delete(gone));
        assert!(e.is_empty());
        e.writing::<Secret>(Some("team-a"), "web-ca").deleted("u");
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
    fn a_watch_faster_than_the_answer_leaves_no_expectation() {
        let e = Expectations::default();
        // Created: the watch brings rv 9, then 10 (the scheduler), before the create's answer.
        let writing = e.writing::<Secret>(Some("team-a"), "web-ca");
        e.saw(&Event::Apply(secret("u", "9", "ours")));
        e.saw(&Event::Apply(secret("u", "10", "theirs")));
        writing.wrote(&secret("u", "9", "ours"));
        assert!(e.is_empty(), "the cache is past our write");
        let newer = secret("u", "10", "theirs");
        assert_eq!(observed(&e, Some(newer.clone())), Some(newer));
        // Deleted: the watch says so before the answer.
        let writing = e.writing::<Secret>(Some("team-a"), "web-ca");
        e.saw(&Event::Delete(secret("u", "11", "x")));
        writing.deleted("u");
        assert!(e.is_empty());
        // An answer the watch has not brought yet is expected as before, and nothing stays in flight.
        e.writing::<Secret>(Some("team-a"), "web-ca").wrote(&secret("u2", "12", "y"));
        assert!(e.pending::<Secret>(Some("team-a"), "web-ca"));
        assert!(e.lock().in_flight.is_empty());
        // A request that failed leaves nothing behind.
        drop(e.writing::<Secret>(Some("team-a"), "web-ca"));
        assert!(e.lock().in_flight.is_empty());
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
