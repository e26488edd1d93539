//! The sandbox watch against a mock API server whose list holds one sandbox this version cannot
//! read: that one is reported and left out, the others reach the cache, and the watch goes on.

use std::sync::{Arc, Mutex};

use dockersandbox_operator::controller::sandboxes;
use futures::StreamExt;
use http::{Request, Response};
use kube::client::Body;
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use serde_json::json;

fn item(name: &str, weight: i64) -> serde_json::Value {
    json!({
        "apiVersion": "dockersandbox.dev/v1alpha1", "kind": "DockerSandbox",
        "metadata": {"name": name, "namespace": "team-a", "uid": format!("uid-{name}"), "resourceVersion": "5"},
        "spec": {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": weight, "preference": {"matchExpressions": [{"key": "a", "operator": "Exists"}]}}]}}}
    })
}

#[tokio::test]
async fn a_list_with_an_unparseable_sandbox_still_fills_the_cache_with_the_others() {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some((req, send)) = handle.next_request().await {
            let uri = req.uri().to_string();
            seen.lock().expect("lock").push(uri.clone());
            if uri.contains("watch=true") {
                // The watch stays open and quiet.
                held.push(send);
                continue;
            }
            let list = json!({
                "apiVersion": "dockersandbox.dev/v1alpha1", "kind": "DockerSandboxList",
                "metadata": {"resourceVersion": "7"},
                "items": [item("good", 10), item("bad", 1_i64 << 40), item("other", 100)]
            });
            let body = Body::from(serde_json::to_vec(&list).expect("json"));
            send.send_response(Response::builder().status(200).body(body).expect("response"));
        }
    });
    let client = Client::new(service, "team-a");
    let reports = Arc::new(Mutex::new(Vec::new()));
    let r = reports.clone();
    let raw = watcher(sandboxes::raw_api(&client, None), watcher::Config::default());
    let mut typed = Box::pin(sandboxes::typed(raw, move |u| r.lock().expect("lock").push(u.sandbox.name_any())));
    let mut applied = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, typed.next()).await {
        match event.expect("the watch does not fail on the bad object") {
            Event::InitApply(d) => applied.push(d.name_any()),
            Event::InitDone => break,
            _ => {}
        }
    }
    assert_eq!(applied, ["good", "other"]);
    assert_eq!(*reports.lock().expect("lock"), ["bad"]);
    // After the list, the watch was opened from the list's resourceVersion: the watch goes on.
    tokio::time::timeout(std::time::Duration::from_millis(200), typed.next()).await.expect_err("quiet watch");
    assert!(requests.lock().expect("lock").iter().any(|u| u.contains("watch=true")), "{requests:?}");
}

fn watcher(
    api: kube::Api<kube::api::DynamicObject>,
    config: watcher::Config,
) -> impl futures::Stream<Item = watcher::Result<Event<kube::api::DynamicObject>>> + Send + 'static {
    kube::runtime::watcher(api, config)
}
