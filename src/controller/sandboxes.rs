//! The sandboxes the controller reconciles, watched as raw objects and read one by one: a sandbox
//! this version cannot read (stored before the CRD bounded a field, or by a newer operator) is
//! reported and left out, and every other sandbox is served. kube-runtime's typed watcher would fail
//! the whole list on that one object, and no sandbox of any tenant would be reconciled.

use futures::{Stream, StreamExt};
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use tracing::warn;

use crate::crd::DockerSandbox;

/// A stored sandbox that could not be read, and why.
#[derive(Clone, Debug)]
pub struct Unreadable {
    /// Its metadata, with an empty spec (for an Event on it).
    pub sandbox: DockerSandbox,
    /// What the parser said.
    pub error: String,
}

/// The raw API for sandboxes in one scope.
pub fn raw_api(client: &Client, namespace: Option<&str>) -> Api<DynamicObject> {
    let ar = ApiResource::erase::<DockerSandbox>(&());
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    }
}

/// `events` of raw sandboxes as typed ones. One that cannot be read goes to `report` and is left
/// out; if it was readable before, it leaves the cache (as if deleted) so nothing acts on the stale
/// copy. Deletions need only the object's name, so they always pass.
pub fn typed(
    events: impl Stream<Item = watcher::Result<Event<DynamicObject>>> + Send + 'static,
    report: impl Fn(Unreadable) + Send + Sync + 'static,
) -> impl Stream<Item = watcher::Result<Event<DockerSandbox>>> + Send + 'static {
    events.filter_map(move |event| {
        let out = event.map(|e| read(e, &report)).transpose();
        futures::future::ready(out)
    })
}

fn read(event: Event<DynamicObject>, report: &impl Fn(Unreadable)) -> Option<Event<DockerSandbox>> {
    Some(match event {
        Event::Init => Event::Init,
        Event::InitDone => Event::InitDone,
        Event::InitApply(o) => Event::InitApply(parse(o, report).ok()?),
        Event::Apply(o) => match parse(o, report) {
            Ok(dsb) => Event::Apply(dsb),
            Err(stub) => Event::Delete(*stub),
        },
        Event::Delete(o) => Event::Delete(stub(&o)),
    })
}

/// The sandbox in `o`; one that cannot be read is reported, and its stub (metadata only) returned.
fn parse(o: DynamicObject, report: &impl Fn(Unreadable)) -> Result<DockerSandbox, Box<DockerSandbox>> {
    let meta = o.metadata.clone();
    o.try_parse::<DockerSandbox>().map_err(|e| {
        let mut sandbox = DockerSandbox::new(meta.name.as_deref().unwrap_or_default(), Default::default());
        sandbox.metadata = meta;
        let error = e.to_string();
        let (namespace, name) = (sandbox.namespace().unwrap_or_default(), sandbox.name_any());
        warn!(%namespace, sandbox = %name, %error, "cannot read this DockerSandbox; it is not reconciled until fixed");
        report(Unreadable { sandbox: sandbox.clone(), error });
        Box::new(sandbox)
    })
}

/// kubectl's copy of the object it last applied (client-side apply): the spec again, as JSON.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops what the reconciler never reads from a sandbox before it is cached: its managedFields and
/// kubectl's last-applied copy.
pub fn slim(o: &mut DynamicObject) {
    o.metadata.managed_fields = None;
    if let Some(a) = o.metadata.annotations.as_mut() {
        a.remove(LAST_APPLIED);
    }
}

/// A sandbox with `o`'s metadata and an empty spec: enough for the cache to find and drop it.
fn stub(o: &DynamicObject) -> DockerSandbox {
    let mut dsb = DockerSandbox::new(&o.name_any(), Default::default());
    dsb.metadata = o.metadata.clone();
    dsb
}

#[cfg(test)]
mod tests {
    use futures::stream;
    use serde_json::json;

    use super::*;

    #[test]
    fn a_cached_sandbox_keeps_neither_managed_fields_nor_kubectls_copy() {
        let mut o: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "dockersandbox.dev/v1alpha1", "kind": "DockerSandbox",
            "metadata": {"name": "web", "namespace": "team-a", "annotations": {LAST_APPLIED: "{}", "team": "a"},
                         "managedFields": [{"manager": "kubectl", "operation": "Update"}]},
            "spec": {}
        }))
        .expect("raw");
        slim(&mut o);
        assert!(o.metadata.managed_fields.is_none());
        assert_eq!(o.metadata.annotations.expect("annotations").into_keys().collect::<Vec<_>>(), ["team"]);
    }

    fn raw(name: &str, weight: i64) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "dockersandbox.dev/v1alpha1", "kind": "DockerSandbox",
            "metadata": {"name": name, "namespace": "team-a", "uid": format!("uid-{name}")},
            "spec": {"affinity": {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": weight, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname"}}]}}}
        }))
        .expect("raw object")
    }

    fn names(events: &[watcher::Result<Event<DockerSandbox>>]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                Ok(Event::Init) => "init".into(),
                Ok(Event::InitDone) => "done".into(),
                Ok(Event::InitApply(d)) => format!("init-apply {}", d.name_any()),
                Ok(Event::Apply(d)) => format!("apply {}", d.name_any()),
                Ok(Event::Delete(d)) => format!("delete {}", d.name_any()),
                Err(e) => format!("error {e}"),
            })
            .collect()
    }

    #[tokio::test]
    async fn one_unreadable_sandbox_is_reported_and_the_others_are_served() {
        let reports = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let r = reports.clone();
        let events = stream::iter(vec![
            Ok(Event::Init),
            Ok(Event::InitApply(raw("good", 50))),
            // 2^40 does not fit the affinity weight (int32): an API server before 1.36 stored it.
            Ok(Event::InitApply(raw("bad", 1 << 40))),
            Ok(Event::InitApply(raw("also-good", 1))),
            Ok(Event::InitDone),
            Ok(Event::Apply(raw("good", 1 << 40))),
            Ok(Event::Delete(raw("bad", 1 << 40))),
        ]);
        let out: Vec<_> = typed(events, move |u| r.lock().expect("lock").push(u)).collect().await;
        assert_eq!(
            names(&out),
            ["init", "init-apply good", "init-apply also-good", "done", "delete good", "delete bad"],
            "the bad one is left out; one that turns unreadable leaves the cache; a deletion always passes"
        );
        let reports = reports.lock().expect("lock");
        let named: Vec<_> = reports.iter().map(|u| u.sandbox.name_any()).collect();
        assert_eq!(named, ["bad", "good"]);
        assert!(reports[0].error.contains("invalid value"), "{}", reports[0].error);
        assert_eq!(reports[0].sandbox.metadata.uid.as_deref(), Some("uid-bad"), "the Event goes on the very object");
    }
}
