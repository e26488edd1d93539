//! What one sandbox costs the operator's caches, object by object, without a cluster run: the heap
//! each object takes once the watch has slimmed it (the same functions the operator's watches use)
//! and a reflector store holds it, measured by a counting allocator over N copies of it. A fast
//! loop for work on the operator's memory (`make bench-scale` takes 17 minutes to say the same in
//! one figure).
//!
//!   cache_heap DIR [N]
//!
//! DIR holds `kubectl get -o json` output (single objects or lists) of one real sandbox, e.g.:
//!
//!   kubectl get dsb -n NS NAME -o json > DIR/sandbox.json
//!   kubectl get pods,services,secrets,pvc,networkpolicies,endpointslices -n NS \
//!     -l app.kubernetes.io/instance=NAME -o json > DIR/children.json
//!   kubectl get secrets -n OPERATOR_NS -l dockersandbox.dev/sandbox-uid=UID -o json > DIR/ca-key.json
//!
//! Prints, per object: KiB with malloc's own overhead (16 bytes an allocation, an average), KiB
//! asked for, allocations; then the sum: the cache's cost of one sandbox.

use std::alloc::System;

use dockersandbox_operator::controller::cache::{self, Cached};
use dockersandbox_operator::controller::sandboxes;
use dockersandbox_operator::crd::DockerSandbox;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::DynamicObject;
use kube::runtime::reflector;
use kube::runtime::watcher::Event;
use serde::Deserialize;
use serde_json::Value;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// What glibc's malloc adds to each allocation, on average: its 8-byte header and the rounding up
/// to 16-byte chunks (a figure, not a measurement: the counting allocator sees only the requests).
const MALLOC_OVERHEAD: f64 = 16.0;

/// `n` copies of `o`, each with its own name, uid and namespace (as n sandboxes' objects would).
fn copies(o: &Value, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let mut c = o.clone();
            let name = format!("{}-{i:05}", c["metadata"]["name"].as_str().unwrap_or("x"));
            c["metadata"]["name"] = Value::String(name);
            c["metadata"]["uid"] = Value::String(format!("{i:08}-0000-4000-8000-000000000000"));
            c["metadata"]["namespace"] = Value::String(format!("team-{i:05}"));
            c
        })
        .collect()
}

/// KiB per object that `keep` holds once it has kept `n` copies of `o` (as malloc hands them out).
fn measure<K>(what: &str, o: &Value, n: usize, mut keep: impl FnMut(K)) -> f64
where
    K: for<'de> Deserialize<'de>,
{
    let input = copies(o, n);
    let region = Region::new(GLOBAL);
    for v in &input {
        match K::deserialize(v) {
            Ok(k) => keep(k),
            Err(e) => {
                eprintln!("{what}: not read: {e}");
                return 0.0;
            }
        }
    }
    let s = region.change();
    // A realloc counts its growth in bytes_allocated, its shrinking in bytes_deallocated (and both
    // again in bytes_reallocated, not added here).
    let live_bytes = (s.bytes_allocated as f64 - s.bytes_deallocated as f64) / n as f64;
    let live_allocs = (s.allocations as f64 - s.deallocations as f64) / n as f64;
    let asked = live_bytes / 1024.0;
    let kib = (live_bytes + live_allocs * MALLOC_OVERHEAD) / 1024.0;
    println!("{what:<40} {kib:>7.2} {asked:>7.2} {live_allocs:>7.1}");
    kib
}

/// Keeps a child as the operator's caches do: slimmed by `slim`, in a packed store.
fn packed<K: Cached>(slim: fn(&mut K)) -> impl FnMut(K) {
    let (_, mut writer) = cache::packed::<K>();
    move |mut k| {
        slim(&mut k);
        writer.apply(&Event::Apply(k));
    }
}

/// Keeps a sandbox as the controller's own store does: slimmed (`sandboxes::slim` on the raw
/// object), as the API type.
fn sandboxes() -> impl FnMut(DockerSandbox) {
    let (_, mut writer) = reflector::store::<DockerSandbox>();
    move |dsb| writer.apply_watcher_event(&Event::Apply(sandbox(dsb)))
}

/// The objects in `dir`: each file a single object or a list.
fn objects(dir: &str) -> Vec<Value> {
    let mut out = vec![];
    let mut files: Vec<_> = std::fs::read_dir(dir).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    files.sort();
    for path in files {
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(o)) if o.get("items").is_some_and(Value::is_array) => {
                out.extend(o["items"].as_array().into_iter().flatten().cloned());
            }
            Ok(v @ Value::Object(_)) => out.push(v),
            _ => eprintln!("{}: not JSON of an object or a list", path.display()),
        }
    }
    out
}

/// A sandbox as the operator's watch keeps it (`sandboxes::slim` on the raw object).
fn sandbox(dsb: DockerSandbox) -> DockerSandbox {
    let raw = serde_json::to_value(&dsb).and_then(serde_json::from_value::<DynamicObject>);
    let Ok(mut raw) = raw else { return dsb };
    sandboxes::slim(&mut raw);
    serde_json::to_value(raw).and_then(serde_json::from_value).unwrap_or(dsb)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("usage: cache_heap DIR [N]");
        std::process::exit(2);
    };
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000).max(1);
    println!("{:<40} {:>7} {:>7} {:>7}", format!("object (x{n})"), "KiB", "asked", "allocs");
    let mut total = 0.0;
    for o in objects(&dir) {
        let kind = o["kind"].as_str().unwrap_or_default().to_string();
        let name: String = o["metadata"]["name"].as_str().unwrap_or_default().chars().take(28).collect();
        let what = format!("{kind} {name}");
        total += match kind.as_str() {
            "DockerSandbox" => measure(&what, &o, n, sandboxes()),
            "Pod" => measure(&what, &o, n, packed::<Pod>(cache::slim_pod)),
            "Service" => measure(&what, &o, n, packed::<Service>(cache::slim_service)),
            // The CA keys (no owner) keep their data, as their own watch does.
            "Secret" if o["metadata"]["ownerReferences"].is_null() => {
                measure(&what, &o, n, packed::<Secret>(|s: &mut Secret| cache::bound_meta(&mut s.metadata)))
            }
            "Secret" => measure(&what, &o, n, packed::<Secret>(cache::slim_secret)),
            "PersistentVolumeClaim" => measure(&what, &o, n, packed::<PersistentVolumeClaim>(cache::slim_claim)),
            "NetworkPolicy" => measure(&what, &o, n, packed::<NetworkPolicy>(cache::slim_policy)),
            "EndpointSlice" => measure(&what, &o, n, packed::<EndpointSlice>(cache::slim_endpoint_slice)),
            _ => {
                eprintln!("{what}: not a kind the operator caches");
                0.0
            }
        };
    }
    println!("{:<40} {total:>7.2} KiB: {:.1} MiB for {n} sandboxes", "one sandbox", total * n as f64 / 1024.0);
}
