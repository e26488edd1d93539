//! The baseline of `e2e/bench-scale.sh`: a plain client that creates, with server-side apply and
//! CONCURRENCY requests in flight, the children the operator makes for N ephemeral sandboxes (a
//! Service, three Secrets of certificate size, a NetworkPolicy and a Pod) in namespace NS. Prints
//! the seconds it took. No certificates are issued, no status is written: it is the lower bound of
//! what creating that many objects costs the API server.
//!
//!   plain_client NS N CONCURRENCY [NODE_SELECTOR_KEY=VALUE]

use std::time::Instant;

use futures::StreamExt;
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

fn objects(ns: &str, name: &str, selector: &Value) -> Vec<(ApiResource, Value)> {
    let labels = json!({"app.kubernetes.io/instance": name, "app.kubernetes.io/managed-by": "plain-client"});
    let pem = "A".repeat(800);
    let secret = |suffix: &str| {
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": format!("{name}-{suffix}"), "namespace": ns,
            "labels": labels}, "type": "Opaque",
            "data": {"ca.pem": pem, "cert.pem": pem, "key.pem": pem}})
    };
    let gvk = |g: &str, v: &str, k: &str| ApiResource::from_gvk(&GroupVersionKind::gvk(g, v, k));
    vec![
        (
            gvk("", "v1", "Service"),
            json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"selector": labels, "ports": [{"name": "docker-tls", "port": 2376}]}}),
        ),
        (gvk("", "v1", "Secret"), secret("ca")),
        (gvk("", "v1", "Secret"), secret("server")),
        (gvk("", "v1", "Secret"), secret("client")),
        (
            gvk("networking.k8s.io", "v1", "NetworkPolicy"),
            json!({"apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy", "metadata": {"name": format!("{name}-engine"), "namespace": ns, "labels": labels},
            "spec": {"podSelector": {"matchLabels": labels}, "policyTypes": ["Ingress"],
                     "ingress": [{"ports": [{"port": 2376}], "from": [{"podSelector": {}}]}]}}),
        ),
        (
            gvk("", "v1", "Pod"),
            json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("{name}-engine"), "namespace": ns, "labels": labels},
            "spec": {"nodeSelector": selector, "tolerations": [{"operator": "Exists"}],
                     "containers": [{"name": "dockerd", "image": "localhost/dockersandbox/dind:e2e",
                                     "ports": [{"containerPort": 2376}]}]}}),
        ),
    ]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: plain_client NS N CONCURRENCY [NODE_SELECTOR_KEY=VALUE]";
    let ns = args.get(1).ok_or(usage)?.clone();
    let n: usize = args.get(2).ok_or(usage)?.parse()?;
    let concurrency: usize = args.get(3).ok_or(usage)?.parse()?;
    let selector = match args.get(4).and_then(|s| s.split_once('=')) {
        Some((k, v)) => json!({ k: v }),
        None => json!({"dockersandbox.dev/bench": "nowhere"}),
    };
    let client = Client::try_default().await?;
    let params = PatchParams::apply("plain-client").force();
    let work: Vec<(ApiResource, Value)> = (0..n).flat_map(|i| objects(&ns, &format!("plain-{i}"), &selector)).collect();
    let total = work.len();
    let started = Instant::now();
    let failures = futures::stream::iter(work)
        .map(|(ar, body)| {
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar);
            let params = params.clone();
            async move {
                let name = body["metadata"]["name"].as_str().unwrap_or_default().to_string();
                api.patch(&name, &params, &Patch::Apply(&body)).await.is_err()
            }
        })
        .buffer_unordered(concurrency.max(1))
        .filter(|failed| futures::future::ready(*failed))
        .count()
        .await;
    let took = started.elapsed().as_secs_f64();
    println!("{took:.2}");
    eprintln!(
        "plain_client: {total} objects ({n} sandboxes' worth), {failures} failed, {took:.1}s at concurrency {concurrency}"
    );
    Ok(())
}
