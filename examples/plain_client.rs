//! The baseline of `e2e/bench-scale.sh`: a plain client that creates, with CONCURRENCY requests
//! in flight, the very objects the operator made for the benchmark's sandboxes (read from FILE, one
//! JSON object a line, as `kubectl get -o json` printed them: every Service, Secret, NetworkPolicy
//! and Pod, and the CA key Secrets of the operator's namespace) in namespace NS, with a create
//! request each, as the operator makes a new child. Each object keeps its spec, data and labels
//! (but `app.kubernetes.io/managed-by`: the operator's watches must not see these); what the API
//! server sets (uid, resourceVersion, status, a Service's address) and what cannot cross
//! namespaces (owner references) are dropped. No certificate is issued, no status written, nothing
//! watched: it is the lower bound of what creating those objects costs the API server. Prints the
//! seconds it took.
//!
//!   plain_client NS FILE CONCURRENCY

use std::time::Instant;

use futures::StreamExt;
use kube::Client;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::Value;

/// `object` made ready to be created in `ns`: server-set fields and owner references dropped.
fn prepared(mut object: Value, ns: &str) -> Option<(ApiResource, DynamicObject)> {
    let (group, version) = match object["apiVersion"].as_str()?.split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), object["apiVersion"].as_str()?.to_string()),
    };
    let kind = object["kind"].as_str()?.to_string();
    let meta = object["metadata"].as_object_mut()?;
    for field in ["uid", "resourceVersion", "creationTimestamp", "managedFields", "ownerReferences", "generation"] {
        meta.remove(field);
    }
    meta.insert("namespace".into(), Value::String(ns.to_string()));
    // Out of the operator's sight: its watches select its own label; the time is the plain client's.
    if let Some(labels) = meta.get_mut("labels").and_then(Value::as_object_mut) {
        labels.insert("app.kubernetes.io/managed-by".into(), Value::String("plain-client".into()));
    }
    if let Some(o) = object.as_object_mut() {
        o.remove("status");
    }
    if kind == "Service" {
        for field in ["clusterIP", "clusterIPs"] {
            object["spec"].as_object_mut().map(|s| s.remove(field));
        }
    }
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(&group, &version, &kind));
    Some((ar, serde_json::from_value(object).ok()?))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: plain_client NS FILE CONCURRENCY";
    let ns = args.get(1).ok_or(usage)?.clone();
    let file = std::fs::read_to_string(args.get(2).ok_or(usage)?)?;
    let concurrency: usize = args.get(3).ok_or(usage)?.parse()?;
    let client = Client::try_default().await?;
    let work: Vec<(ApiResource, DynamicObject)> = file
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Value>(l).map_err(|e| format!("{}: {e}", args[2])))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .filter_map(|o| prepared(o, &ns))
        .collect();
    let total = work.len();
    let started = Instant::now();
    let failures = futures::stream::iter(work)
        .map(|(ar, object)| {
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar);
            async move {
                let result = api.create(&PostParams::default(), &object).await;
                if let Err(e) = &result {
                    eprintln!("plain_client: {} {}: {e}", ar.kind, object.metadata.name.as_deref().unwrap_or_default());
                }
                result.is_err()
            }
        })
        .buffer_unordered(concurrency.max(1))
        .filter(|failed| futures::future::ready(*failed))
        .count()
        .await;
    let took = started.elapsed().as_secs_f64();
    println!("{took:.2}");
    eprintln!("plain_client: {total} objects, {failures} failed, {took:.1}s at concurrency {concurrency}");
    if failures > 0 {
        return Err(format!("{failures} of {total} creates failed").into());
    }
    Ok(())
}
