//! The reconciler against an in-memory API server (no cluster): which calls it makes, in which
//! order, and what it stores. Real-cluster behaviour is proven in e2e/.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dockersandbox_operator::config::Config;
use dockersandbox_operator::controller::expect::Expectations;
use dockersandbox_operator::controller::{Caches, Context, reconcile::reconcile};
use dockersandbox_operator::crd::DockerSandbox;
use dockersandbox_operator::metrics::Metrics;
use http::{Method, Request, Response};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Client;
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use serde_json::{Value, json};

/// What the fake API server holds and saw.
#[derive(Default)]
struct State {
    /// Objects by short path (`services/web`, `namespaces/team-a`, ...).
    objects: BTreeMap<String, Value>,
    /// Calls as `METHOD short-path`.
    calls: Vec<String>,
    /// Event reasons and types, in order.
    events: Vec<(String, String)>,
    /// Calls to refuse: `METHOD short-path` → (HTTP code, message).
    refuse: BTreeMap<String, (u16, String)>,
    /// Calls to refuse the next times they come, one answer each time.
    refuse_next: BTreeMap<String, Vec<(u16, String)>>,
    /// The ClusterIP a Service created without one gets (10.96.0.10 when unset).
    free_ip: Option<String>,
    /// What the operator's caches show instead of the stored object (`None`: not yet seen), as
    /// when a watch event is still on its way.
    behind: BTreeMap<String, Option<Value>>,
    /// Objects the caches cannot see (their labels do not match), every watch event delivered.
    hidden: Vec<String>,
    /// The last resourceVersion handed out.
    rv: u64,
}

impl State {
    /// `obj` stored under `key` as the API server would: a uid (kept from what was there) and the
    /// next resourceVersion.
    fn store(&mut self, key: &str, mut obj: Value) -> Value {
        self.rv += 1;
        let uid = self.objects.get(key).map_or_else(|| json!(format!("uid-{key}")), |o| o["metadata"]["uid"].clone());
        obj["metadata"]["uid"] = uid;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.objects.insert(key.to_string(), obj.clone());
        obj
    }
}

/// `patch` merged into `target` (RFC 7386).
fn merge_patch(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

/// `/api/v1/namespaces/team-a/services/web` → `services/web`; cluster-scoped paths keep their
/// last two segments (`runtimeclasses/sysbox-runc`, `namespaces/team-a`).
fn short(path: &str) -> String {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let rest = if parts[0] == "api" { &parts[2..] } else { &parts[3..] };
    match rest {
        ["namespaces", _, tail @ ..] if !tail.is_empty() => tail.join("/"),
        _ => rest.join("/"),
    }
}

fn status(code: u16, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "message": message,
           "reason": if code == 404 { "NotFound" } else { "Invalid" }})
}

fn respond(state: &mut State, method: &Method, key: &str, query: &str, merge: bool, body: &[u8]) -> (u16, Value) {
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    // A create names its object in the body; a dry run and a merge patch are told apart.
    let (key, note) = match *method {
        Method::POST if key != "events" => {
            let dry = if query.contains("dryRun") { " (dry run)" } else { "" };
            (format!("{key}/{}", parsed["metadata"]["name"].as_str().unwrap_or_default()), dry)
        }
        Method::PATCH if merge => (key.to_string(), " (merge)"),
        _ => (key.to_string(), ""),
    };
    let key = key.as_str();
    let call = if query.is_empty() || *method != Method::GET {
        format!("{method} {key}{note}")
    } else {
        format!("{method} {key}?{query}")
    };
    state.calls.push(call.clone());
    if let Some((code, message)) = state.refuse.get(&call) {
        return (*code, status(*code, message));
    }
    if let Some((code, message)) = state.refuse_next.get_mut(&call).and_then(|l| (!l.is_empty()).then(|| l.remove(0))) {
        return (code, status(code, &message));
    }
    let manager = query.split('&').find_map(|p| p.strip_prefix("fieldManager=")).unwrap_or("kube").to_string();
    let entry = |operation: &str| {
        json!([{"manager": manager, "operation": operation, "apiVersion": "v1",
                                          "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {}}}])
    };
    match *method {
        Method::GET if !key.contains('/') => {
            // a list: every stored object under `key/`
            let prefix = format!("{key}/");
            let items: Vec<Value> =
                state.objects.iter().filter(|(k, _)| k.starts_with(&prefix)).map(|(_, v)| v.clone()).collect();
            (200, json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": items}))
        }
        Method::GET => match state.objects.get(key) {
            Some(o) => (200, o.clone()),
            None => (404, status(404, "not found")),
        },
        Method::DELETE => match state.objects.remove(key) {
            Some(_) => (200, status(200, "deleted")),
            None => (404, status(404, "not found")),
        },
        Method::POST if key == "events" => {
            let reason = parsed["reason"].as_str().unwrap_or_default().to_string();
            state.events.push((reason, parsed["type"].as_str().unwrap_or_default().to_string()));
            (201, parsed)
        }
        Method::POST if state.objects.contains_key(key) => (
            409,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 409,
                                     "reason": "AlreadyExists", "message": "already exists"}),
        ),
        Method::POST if !note.is_empty() => (201, parsed),
        Method::POST | Method::PATCH if !merge && !key.ends_with("/status") => {
            let mut obj = parsed;
            let created = *method == Method::POST;
            obj["metadata"]["managedFields"] = entry(if created { "Update" } else { "Apply" });
            if key.starts_with("services/") {
                let asked = obj["spec"]["clusterIP"].as_str().map(str::to_string);
                let ip = asked.or_else(|| state.free_ip.clone()).unwrap_or_else(|| "10.96.0.10".into());
                obj["spec"]["clusterIP"] = json!(ip);
                obj["spec"]["clusterIPs"] = json!([ip]);
            }
            if key.starts_with("persistentvolumeclaims/") {
                obj["status"] = json!({"phase": "Bound"});
            }
            (if created { 201 } else { 200 }, state.store(key, obj))
        }
        Method::PATCH if key.ends_with("/status") => {
            let owner = key.trim_end_matches("/status").to_string();
            let mut obj = state.objects.get(&owner).cloned().unwrap_or_else(|| parsed.clone());
            obj["status"] = parsed["status"].clone();
            (200, state.store(&owner, obj))
        }
        Method::PATCH => match state.objects.get(key).cloned() {
            Some(mut obj) => {
                merge_patch(&mut obj, &parsed);
                (200, state.store(key, obj))
            }
            None => (404, status(404, "not found")),
        },
        _ => (405, status(405, "not allowed")),
    }
}

/// The resource of a kind, as in the fake's keys.
fn plural(kind: &str) -> String {
    match kind {
        "NetworkPolicy" => "networkpolicies".into(),
        "DockerSandbox" => "dockersandboxes".into(),
        k => format!("{}s", k.to_lowercase()),
    }
}

/// The default class: both isolation modes, any image.
fn default_class() -> Value {
    json!({"apiVersion": "dockersandbox.dev/v1alpha1", "kind": "DockerSandboxClass",
           "metadata": {"name": "standard", "generation": 3, "annotations": {"dockersandbox.dev/is-default-class": "true"}},
           "spec": {"isolation": ["sysbox", "privileged"], "image": {"allowed": ["*"]}}})
}

/// An in-memory API server for one reconcile at a time.
struct Fake {
    state: Arc<Mutex<State>>,
    /// What the operator wrote and its caches have not shown, across reconciles (one process).
    expect: Arc<Expectations>,
}

impl Fake {
    fn new(namespace_labels: Value) -> Self {
        let mut state = State::default();
        state.objects.insert(
            "namespaces/team-a".into(),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a", "labels": namespace_labels}}),
        );
        state.objects.insert("dockersandboxclasses/standard".into(), default_class());
        Self { state: Arc::new(Mutex::new(state)), expect: Arc::default() }
    }

    fn with(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.state.lock().expect("state"));
    }

    fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut self.state.lock().expect("state").calls)
    }

    fn take_events(&self) -> Vec<(String, String)> {
        std::mem::take(&mut self.state.lock().expect("state").events)
    }

    /// Calls other than reads, taken.
    fn take_writes(&self) -> Vec<String> {
        self.take_calls().into_iter().filter(|c| !c.starts_with("GET ")).collect()
    }

    /// A first reconcile of `dsb` (privileged allowed), its calls and events forgotten; the
    /// sandbox with the status it got.
    async fn placed(&self, dsb: &DockerSandbox) -> DockerSandbox {
        self.reconcile(dsb, config(true)).await.expect("first reconcile");
        self.take_calls();
        self.take_events();
        self.refreshed(dsb)
    }

    fn object(&self, key: &str) -> Value {
        self.state.lock().expect("state").objects.get(key).cloned().unwrap_or(Value::Null)
    }

    /// Runs one reconcile of `dsb` with `config` against this server.
    async fn reconcile(&self, dsb: &DockerSandbox, config: Config) -> Result<Action, String> {
        let config_activator = config.activator_service.clone();
        let mut stored = serde_json::to_value(dsb).expect("sandbox json");
        self.with(|s| {
            // The sandbox as the test gives it; the API server's resourceVersion if it has none.
            if stored["metadata"]["resourceVersion"].is_null() {
                let rv = s.objects.get("dockersandboxes/web").map(|o| o["metadata"]["resourceVersion"].clone());
                stored["metadata"]["resourceVersion"] = rv.unwrap_or(Value::Null);
            }
            s.objects.insert("dockersandboxes/web".into(), stored);
        });
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let state = self.state.clone();
        let server = tokio::spawn(async move {
            while let Some((req, send)) = handle.next_request().await {
                let (method, path) = (req.method().clone(), req.uri().path().to_string());
                let query = req.uri().query().unwrap_or_default().to_string();
                let merge = req.headers().get("content-type").is_some_and(|v| v == "application/merge-patch+json");
                let body = req.into_body().collect_bytes().await.expect("body");
                let (code, value) =
                    respond(&mut state.lock().expect("state"), &method, &short(&path), &query, merge, &body);
                let res = Response::builder().status(code).body(Body::from(serde_json::to_vec(&value).expect("json")));
                send.send_response(res.expect("response"));
            }
        });
        // The caches hold what the server holds when the reconcile starts (as if every watch
        // event had arrived).
        let snapshot: Vec<Value> = {
            let state = self.state.lock().expect("state");
            let mut seen = state.objects.clone();
            for (key, view) in &state.behind {
                match view {
                    Some(v) => seen.insert(key.clone(), v.clone()),
                    None => seen.remove(key),
                };
            }
            for key in &state.hidden {
                seen.remove(key);
            }
            seen.into_values().collect()
        };
        let caches = Caches::snapshot(snapshot);
        // Every watch event has arrived but those `behind` holds back: only their writes are
        // still expected.
        let behind: Vec<String> = self.state.lock().expect("state").behind.keys().cloned().collect();
        self.expect.retain(|kind, _, name| behind.contains(&format!("{}/{name}", plural(kind))));
        let ctx = Context::new(Client::new(service, "team-a"), config, Arc::new(Metrics::default()), caches);
        let ctx = ctx.with_expectations(self.expect.clone());
        if !config_activator.is_empty() {
            // The activator's Service's slice: its pods' ready addresses.
            let (reader, mut writer) = kube::runtime::reflector::store::<EndpointSlice>();
            let slice: EndpointSlice =
                serde_json::from_value(json!({"metadata": {"name": "act-x", "namespace": "dsb-system"},
                "addressType": "IPv4", "endpoints": [{"addresses": ["10.9.0.1"], "conditions": {"ready": true}}]}))
                .expect("slice");
            writer.apply_watcher_event(&watcher::Event::Init);
            writer.apply_watcher_event(&watcher::Event::InitApply(slice));
            writer.apply_watcher_event(&watcher::Event::InitDone);
            let _ = ctx.activator.set(reader);
        }
        let ctx = Arc::new(ctx);
        let result = reconcile(Arc::new(dsb.clone()), ctx).await.map_err(|e| e.to_string());
        server.await.expect("api server");
        result
    }

    /// The sandbox with the status the server holds for it.
    fn refreshed(&self, dsb: &DockerSandbox) -> DockerSandbox {
        let mut dsb = dsb.clone();
        let stored = self.object("dockersandboxes/web");
        dsb.status = serde_json::from_value(stored["status"].clone()).ok();
        dsb.metadata.resource_version = stored["metadata"]["resourceVersion"].as_str().map(str::to_string);
        dsb
    }
}

fn sandbox(spec: &str) -> DockerSandbox {
    let yaml = format!(
        "apiVersion: dockersandbox.dev/v1alpha1\nkind: DockerSandbox\nmetadata: {{name: web, namespace: team-a, uid: u1, generation: 2}}\nspec: {spec}\n"
    );
    serde_saphyr::from_str(&yaml).expect("fixture")
}

fn config(allow_privileged: bool) -> Config {
    Config { allow_privileged, ..Config::for_tests() }
}

fn calls(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn events(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(r, t)| (r.to_string(), t.to_string())).collect()
}

/// Namespace labels that allow privileged engines.
fn opted_in() -> Value {
    json!({"pod-security.kubernetes.io/enforce": "privileged"})
}

#[tokio::test]
async fn first_reconcile_creates_every_child_once_and_the_engine_last() {
    let api = Fake::new(opted_in());
    let dsb = sandbox("{}");
    let action = api.reconcile(&dsb, config(true)).await.expect("reconcile");
    assert_eq!(action, Action::requeue(Duration::from_secs(5)), "the fallback re-check starts at 5 s");
    // The facts (namespace, class, RuntimeClass) come from the caches. A child the cache does not
    // have is created with a create request, nothing read before (someone else's object of that
    // name makes the create fail: see the planted Secret below). One request per child and one
    // status: a new ephemeral sandbox costs 8 requests, and no Event (its phase is Provisioning).
    let made = api.take_calls();
    let mut sorted = made.clone();
    sorted.sort();
    let expected = calls(&[
        "PATCH dockersandboxes/web/status",
        "POST networkpolicies/web-engine",
        "POST persistentvolumeclaims/web-docker",
        "POST pods/web-engine",
        "POST secrets/ca-team-a-u1",
        "POST secrets/web-ca",
        "POST secrets/web-client",
        "POST secrets/web-server",
        "POST services/web",
    ]);
    assert_eq!(sorted, expected, "each child once, and the status");
    // Independent children are written at once; what depends on another comes after it.
    let at = |call: &str| made.iter().position(|m| m == call).expect(call);
    assert!(at("POST services/web") < at("POST secrets/web-server"), "the Service's address is in the certificate");
    for leaf in ["POST secrets/web-ca", "POST secrets/web-server", "POST secrets/web-client"] {
        assert!(at("POST secrets/ca-team-a-u1") < at(leaf), "{leaf} comes after the CA that signs it");
    }
    // The engine needs every other child (the NetworkPolicy is in place before it can serve).
    assert_eq!(made[made.len() - 2..], calls(&["POST pods/web-engine", "PATCH dockersandboxes/web/status"]));
    assert_eq!(api.take_events(), events(&[]), "creating children is routine: no Event");

    let pod = api.object("pods/web-engine");
    assert_eq!(pod["spec"]["containers"][0]["securityContext"]["privileged"], true, "no sysbox: privileged is allowed");
    assert_eq!(pod["metadata"]["ownerReferences"][0]["uid"], "u1");
    let server_keys = api.object("secrets/web-server")["data"].as_object().map(|d| d.len());
    assert_eq!(server_keys, Some(3), "ca.pem, cert.pem, key.pem and no CA key");
    assert!(api.object("secrets/web-ca")["data"].get("ca-key.pem").is_none(), "the tenant's NAME-ca has no key");
    let key = api.object("secrets/ca-team-a-u1");
    assert!(key["data"].get("ca-key.pem").is_some());
    assert_eq!(key["metadata"]["namespace"], "dockersandbox-system");
    assert_eq!(key["data"]["ca.pem"], api.object("secrets/web-ca")["data"]["ca.pem"]);
    assert!(api.object("persistentvolumeclaims/web-docker")["metadata"].get("ownerReferences").is_none(), "Retain");

    let status = &api.object("dockersandboxes/web")["status"];
    assert_eq!(status["phase"], "Provisioning");
    assert_eq!(status["observedGeneration"], 2);
    assert_eq!(status["clientSecretName"], "web-client");
    assert_eq!(status["conditions"].as_array().map(Vec::len), Some(5));
}

#[tokio::test]
async fn a_converged_sandbox_costs_no_request() {
    let api = Fake::new(opted_in());
    let dsb = sandbox("{}");
    let placed = api.placed(&dsb).await;
    let action = api.reconcile(&placed, config(true)).await.expect("second");
    assert_eq!(action, Action::requeue(Duration::from_secs(5)));
    // Nothing is read (the caches have it) and nothing is written: the status says what the
    // created pod said.
    assert_eq!(api.take_calls(), Vec::<String>::new());
    assert_eq!(api.take_events(), events(&[]));
    api.reconcile(&api.refreshed(&dsb), config(true)).await.expect("third");
    assert_eq!(api.take_calls(), Vec::<String>::new(), "no change, no request");
}

#[tokio::test]
async fn a_ready_pod_whose_dockerd_does_not_answer_yet_costs_no_request_and_is_asked_again_soon() {
    let api = Fake::new(opted_in());
    let dsb = sandbox("{}");
    api.placed(&dsb).await;
    api.with(|s| {
        let pod = s.objects.get_mut("pods/web-engine").expect("pod");
        // nothing listens there: the TLS probe fails at once
        pod["status"] =
            json!({"phase": "Running", "podIP": "127.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]});
    });
    let probing = Config { engine_probe: dockersandbox_operator::config::EngineProbe::Pod, ..config(true) };
    api.reconcile(&api.refreshed(&dsb), probing.clone()).await.expect("second");
    api.take_calls();
    let action = api.reconcile(&api.refreshed(&dsb), probing).await.expect("third");
    assert_eq!(action, Action::requeue(Duration::from_secs(1)), "the probe's own short backoff");
    assert_eq!(api.take_calls(), Vec::<String>::new(), "the probe goes to the engine, not the API server");
}

#[tokio::test]
async fn a_lagging_watch_after_create_neither_issues_again_nor_creates_again_nor_reads_live() {
    let api = Fake::new(opted_in());
    let dsb = sandbox("{}");
    api.placed(&dsb).await;
    let keys =
        ["secrets/ca-team-a-u1", "secrets/web-ca", "secrets/web-server", "secrets/web-client", "pods/web-engine"];
    let before: Vec<Value> = keys.iter().map(|k| api.object(k)).collect();
    api.with(|s| {
        for key in keys.iter().chain(&["services/web", "dockersandboxes/web"]) {
            s.behind.insert(key.to_string(), None);
        }
    });
    // The sandbox as the cache has it: the status write is on its way too.
    api.reconcile(&dsb, config(true)).await.expect("second");
    assert_eq!(api.take_calls(), Vec::<String>::new(), "what was written stands in for the cache: no request");
    assert_eq!(api.take_events(), events(&[]), "no certificate issued, no engine created");
    let after: Vec<Value> = keys.iter().map(|k| api.object(k)).collect();
    assert_eq!(before, after);
}

#[tokio::test]
async fn a_lagging_watch_after_update_does_not_put_the_secret_back_twice() {
    let api = Fake::new(opted_in());
    let dsb = sandbox("{}");
    let placed = api.placed(&dsb).await;
    let client = api.object("secrets/web-client");
    api.with(|s| {
        let mut tampered = client.clone();
        tampered["data"]["ca.pem"] = json!("dGFtcGVyZWQ=");
        s.store("secrets/web-client", tampered);
    });
    api.reconcile(&placed, config(true)).await.expect("restore");
    // Created with a create request, so its fields move to the operator's apply entry before the
    // first apply (else a field it stops setting would stay forever).
    let writes: Vec<String> = api.take_writes().into_iter().filter(|w| w.contains("secrets/")).collect();
    assert_eq!(
        writes,
        calls(&["PATCH secrets/web-client (merge)", "PATCH secrets/web-client"]),
        "the tampered Secret is put back"
    );
    let restored = api.object("secrets/web-client");
    assert_eq!(restored["data"], client["data"]);
    assert_eq!(restored["metadata"]["managedFields"][0]["operation"], "Apply");
    assert_eq!(api.take_events(), events(&[("SecretRestored", "Normal")]));
    // The cache still shows the tampered Secret: the restore is on its way, not done again.
    let tampered = {
        let mut t = restored.clone();
        t["data"]["ca.pem"] = json!("dGFtcGVyZWQ=");
        t["metadata"]["resourceVersion"] = json!("1");
        t
    };
    api.with(|s| {
        s.behind.insert("secrets/web-client".into(), Some(tampered));
    });
    api.reconcile(&api.refreshed(&placed), config(true)).await.expect("lagging");
    assert_eq!(api.take_calls(), Vec::<String>::new());
    assert_eq!(api.take_events(), events(&[]));
    // Once the watch shows the restore, the cache is the truth again: nothing to do.
    api.with(|s| s.behind.clear());
    api.reconcile(&api.refreshed(&placed), config(true)).await.expect("caught up");
    assert_eq!(api.take_calls(), Vec::<String>::new());
}

#[tokio::test]
async fn a_lagging_watch_after_delete_neither_deletes_again_nor_waits_for_the_old_pod() {
    let api = Fake::new(opted_in());
    let dsb = sandbox("{}");
    let mut changed = api.placed(&dsb).await;
    let old = api.object("pods/web-engine");
    changed.spec.daemon.mtu = Some(1400);
    api.reconcile(&changed, config(true)).await.expect("roll");
    let writes = api.take_writes();
    assert!(writes.contains(&"DELETE pods/web-engine".to_string()), "{writes:?}");
    api.take_events();
    // The cache still shows the old pod: it is gone all the same (the delete said so), and the new
    // one is created at once, once.
    api.with(|s| {
        s.behind.insert("pods/web-engine".into(), Some(old.clone()));
    });
    api.reconcile(&api.refreshed(&changed), config(true)).await.expect("lagging");
    let pod_writes: Vec<String> = api.take_writes().into_iter().filter(|w| w.contains("pods/")).collect();
    assert_eq!(pod_writes, calls(&["POST pods/web-engine"]), "no second delete");
    assert_ne!(api.object("pods/web-engine")["metadata"]["annotations"], old["metadata"]["annotations"]);
    api.reconcile(&api.refreshed(&changed), config(true)).await.expect("lagging still");
    assert!(!api.take_writes().iter().any(|w| w.contains("pods/")), "the new pod is what was written");
}

#[tokio::test]
async fn a_lagging_sandbox_watch_never_writes_an_old_status_back() {
    let api = Fake::new(opted_in());
    let dsb = sandbox("{}");
    let first = api.placed(&dsb).await;
    api.reconcile(&first, config(true)).await.expect("converge");
    api.take_calls();
    // The status changed again; the cache still has the sandbox with the first one.
    api.with(|s| {
        s.behind.insert("dockersandboxes/web".into(), None);
    });
    api.reconcile(&first, config(true)).await.expect("lagging");
    assert_eq!(api.take_calls(), Vec::<String>::new(), "the status written is the newest: not written again");
    // Someone else wrote the status after the operator (the cache shows their newer version): the
    // operator's own status is the truth, and it is put back.
    let mut theirs = api.refreshed(&dsb);
    theirs.status.as_mut().expect("status").phase = Some(dockersandbox_operator::crd::Phase::Ready);
    theirs.metadata.resource_version = Some("999".into());
    api.with(|s| s.behind.clear());
    api.reconcile(&theirs, config(true)).await.expect("theirs");
    assert_eq!(api.take_calls().first().map(String::as_str), Some("PATCH dockersandboxes/web/status"));
    assert_eq!(api.object("dockersandboxes/web")["status"]["phase"], "Provisioning");
}

#[tokio::test]
async fn the_sandboxes_own_pod_without_its_labels_is_relabelled_not_replaced() {
    let api = Fake::new(opted_in());
    let dsb = sandbox("{}");
    let placed = api.placed(&dsb).await;
    api.with(|s| {
        let mut pod = s.objects["pods/web-engine"].clone();
        pod["metadata"]["labels"] = json!({});
        s.store("pods/web-engine", pod.clone());
        // the label-selected cache no longer sees it
        s.hidden.push("pods/web-engine".into());
    });
    api.reconcile(&placed, config(true)).await.expect("relabel");
    let pod_calls: Vec<String> = api.take_calls().into_iter().filter(|c| c.contains("pods/")).collect();
    assert_eq!(
        pod_calls,
        calls(&["POST pods/web-engine", "GET pods/web-engine", "PATCH pods/web-engine (merge)"]),
        "the create finds the sandbox's own pod, which keeps running"
    );
    assert_eq!(api.object("pods/web-engine")["metadata"]["labels"]["app.kubernetes.io/instance"], "web");
    assert_eq!(api.take_events(), events(&[("EngineRelabelled", "Warning")]));
}

#[tokio::test]
async fn a_cache_behind_on_the_namespace_label_never_stops_an_engine() {
    let api = Fake::new(opted_in());
    let dsb = sandbox("{}");
    let placed = api.placed(&dsb).await;
    api.with(|s| {
        let stale = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}});
        s.behind.insert("namespaces/team-a".into(), Some(stale));
    });
    api.reconcile(&placed, config(true)).await.expect("second");
    assert!(api.object("pods/web-engine").is_object(), "the engine keeps running");
    let writes = api.take_writes();
    assert!(!writes.iter().any(|w| w.contains("pods/")), "{writes:?}");
    assert_eq!(api.take_events(), events(&[]));
}

#[tokio::test]
async fn a_spec_change_recreates_the_engine_pod_and_keeps_the_certificates() {
    let api = Fake::new(opted_in());
    let dsb = sandbox("{}");
    let mut changed = api.placed(&dsb).await;
    let ca = api.object("secrets/web-ca");
    changed.spec.daemon.mtu = Some(1400);
    api.reconcile(&changed, config(true)).await.expect("second");
    let writes = api.take_writes();
    assert!(writes.contains(&"DELETE pods/web-engine".to_string()), "{writes:?}");
    assert!(!writes.iter().any(|w| w.contains("secrets/")), "{writes:?}");
    assert_eq!(api.take_events(), events(&[("EngineRecreating", "Normal")]));
    assert_eq!(api.object("secrets/web-ca"), ca);
}

#[tokio::test]
async fn a_refused_pod_is_a_failed_sandbox_with_the_api_servers_message() {
    let api = Fake::new(opted_in());
    api.with(|s| {
        s.refuse.insert("POST pods/web-engine".into(), (422, "pods \"web-engine\" is forbidden: quota".into()));
    });
    let action = api.reconcile(&sandbox("{}"), config(true)).await.expect("reconcile");
    assert_eq!(action, Action::requeue(Duration::from_secs(5)), "re-checked, backing off");
    let status = &api.object("dockersandboxes/web")["status"];
    assert_eq!(status["phase"], "Failed");
    let ready = &status["conditions"][0];
    assert_eq!(ready["reason"], "PodRejected");
    assert_eq!(ready["message"], "the API server refused the engine pod: pods \"web-engine\" is forbidden: quota");
    assert_eq!(api.take_events().last(), Some(&("PodRejected".to_string(), "Warning".to_string())));
}

#[tokio::test]
async fn missing_runtime_class_is_reported_without_creating_anything() {
    let api = Fake::new(json!({}));
    let action = api.reconcile(&sandbox("{isolation: sysbox}"), config(true)).await.expect("reconcile");
    assert_eq!(action, Action::requeue(Duration::from_secs(5)), "a cluster problem is re-checked, backing off");
    assert_eq!(api.take_calls(), calls(&["PATCH dockersandboxes/web/status", "POST events"]));
    assert_eq!(api.take_events(), events(&[("RuntimeClassMissing", "Warning")]));
    let status = &api.object("dockersandboxes/web")["status"];
    assert_eq!(status["phase"], "Pending");
    assert_eq!(status["observedGeneration"], 2);
    assert!(status["conditions"][0]["message"].as_str().is_some_and(|m| m.contains("sysbox-runc")));
}

#[tokio::test]
async fn privileged_forbidden_by_policy_is_reported() {
    let api = Fake::new(opted_in());
    api.reconcile(&sandbox("{}"), config(false)).await.expect("reconcile");
    assert_eq!(api.take_events(), events(&[("PrivilegedForbidden", "Warning")]));
    assert!(!api.take_writes().iter().any(|c| c.contains("pods/")), "no pod written");
}

#[tokio::test]
async fn pod_security_baseline_refuses_a_privileged_engine() {
    let api = Fake::new(json!({"pod-security.kubernetes.io/enforce": "baseline"}));
    api.reconcile(&sandbox("{}"), config(true)).await.expect("reconcile");
    assert_eq!(api.take_events(), events(&[("PodSecurityRejected", "Warning")]));
    assert_eq!(api.object("dockersandboxes/web")["status"]["phase"], "Pending");
}

#[tokio::test]
async fn api_errors_surface_as_errors_for_backoff() {
    let api = Fake::new(opted_in());
    api.with(|s| {
        s.refuse.insert("POST services/web".into(), (403, "services is forbidden".into()));
    });
    let err = api.reconcile(&sandbox("{}"), config(true)).await.expect_err("forbidden");
    assert!(err.contains("services is forbidden"), "{err}");
    assert_eq!(api.take_events(), events(&[("ReconcileFailed", "Warning")]));
}

#[tokio::test]
async fn terminating_namespace_creates_nothing() {
    let api = Fake::new(json!({}));
    api.with(|s| {
        s.objects.get_mut("namespaces/team-a").expect("ns")["metadata"]["deletionTimestamp"] =
            json!("2026-11-22T10:00:00Z");
    });
    let action = api.reconcile(&sandbox("{}"), config(true)).await.expect("reconcile");
    assert_eq!(action, Action::await_change());
    assert_eq!(api.take_calls(), Vec::<String>::new());
}

#[tokio::test]
async fn a_sandbox_being_deleted_only_says_so() {
    let api = Fake::new(opted_in());
    let dsb = sandbox("{}");
    let mut deleting = api.placed(&dsb).await;
    deleting.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH));
    let action = api.reconcile(&deleting, config(true)).await.expect("reconcile");
    assert_eq!(action, Action::await_change());
    assert_eq!(api.take_calls(), calls(&["PATCH dockersandboxes/web/status"]), "no child is read or written");
    let status = &api.object("dockersandboxes/web")["status"];
    assert_eq!(status["phase"], "Terminating");
    assert_eq!(status["conditions"][0]["reason"], "Terminating");
    assert_eq!(api.take_events(), events(&[]));
}

/// A sysbox RuntimeClass scheduling onto `sysbox-runtime=running` nodes, and one such node.
fn sysbox_cluster(api: &Fake, runtime: &str) {
    api.with(|s| {
        s.objects.insert(
            "runtimeclasses/sysbox-runc".into(),
            json!({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "sysbox-runc"},
                   "handler": "sysbox-runc", "scheduling": {"nodeSelector": {"sysbox-runtime": "running"}}}),
        );
        s.objects.insert(
            "nodes/n1".into(),
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "labels": {"sysbox-runtime": "running"}},
                   "status": {"nodeInfo": {"containerRuntimeVersion": runtime, "architecture": "amd64",
                     "bootID": "", "kernelVersion": "", "kubeProxyVersion": "", "kubeletVersion": "",
                     "machineID": "", "operatingSystem": "linux", "osImage": "", "systemUUID": ""}}}),
        );
    });
}

#[tokio::test]
async fn sysbox_on_containerd_nodes_gets_host_users_and_says_why() {
    let api = Fake::new(json!({}));
    sysbox_cluster(&api, "containerd://2.1.9");
    api.reconcile(&sandbox("{}"), config(true)).await.expect("reconcile");
    let calls = api.take_calls();
    assert!(!calls.iter().any(|c| c.starts_with("GET nodes")), "nodes come from the cache: {calls:?}");
    let pod = api.object("pods/web-engine");
    assert_eq!(pod["spec"]["runtimeClassName"], "sysbox-runc");
    assert_eq!(pod["spec"]["hostUsers"], false);
    assert!(pod["spec"]["containers"][0].get("securityContext").is_none(), "not privileged");
    let status = &api.object("dockersandboxes/web")["status"];
    assert_eq!(status["isolation"], "sysbox");
    assert_eq!(status["sysboxUserNamespace"], "hostUsers");
    let resolved = &status["conditions"][1];
    assert_eq!(resolved["type"], "IsolationResolved");
    assert!(
        resolved["message"].as_str().is_some_and(|m| m.contains("run containerd (containerd://2.1.9)")),
        "{resolved}"
    );
}

#[tokio::test]
async fn sysbox_on_cri_o_nodes_gets_the_annotation_and_no_host_users() {
    let api = Fake::new(json!({}));
    sysbox_cluster(&api, "cri-o://1.33.2");
    api.reconcile(&sandbox("{isolation: sysbox}"), config(true)).await.expect("reconcile");
    let pod = api.object("pods/web-engine");
    assert!(pod["spec"].get("hostUsers").is_none(), "{}", pod["spec"]);
    assert_eq!(pod["metadata"]["annotations"]["io.kubernetes.cri-o.userns-mode"], "auto:size=65536");
    assert_eq!(api.object("dockersandboxes/web")["status"]["sysboxUserNamespace"], "crioAnnotation");
}

#[tokio::test]
async fn sysbox_with_no_matching_node_is_pending_never_privileged() {
    let api = Fake::new(json!({}));
    sysbox_cluster(&api, "containerd://2.1.9");
    api.with(|s| {
        s.objects.insert(
            "nodes/n2".into(),
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n2"},
                   "status": {"nodeInfo": {"containerRuntimeVersion": "containerd://2.1.9", "architecture": "amd64",
                     "bootID": "", "kernelVersion": "", "kubeProxyVersion": "", "kubeletVersion": "",
                     "machineID": "", "operatingSystem": "linux", "osImage": "", "systemUUID": ""}}}),
        );
        s.objects.remove("nodes/n1");
    });
    api.reconcile(&sandbox("{}"), config(true)).await.expect("reconcile");
    assert!(!api.take_calls().iter().any(|c| c.contains("pods/")), "no pod");
    assert_eq!(api.take_events(), events(&[("SysboxUserNamespaceUnknown", "Warning")]));
    assert_eq!(api.object("dockersandboxes/web")["status"]["phase"], "Pending");
}

#[tokio::test]
async fn an_explicit_user_namespace_setting_does_not_list_nodes() {
    let api = Fake::new(json!({}));
    sysbox_cluster(&api, "containerd://2.1.9");
    let config = Config {
        sysbox_user_namespace: dockersandbox_operator::config::SysboxUserNamespace::CrioAnnotation,
        ..config(true)
    };
    api.reconcile(&sandbox("{}"), config).await.expect("reconcile");
    assert!(!api.take_calls().iter().any(|c| c.starts_with("GET nodes")));
    let pod = api.object("pods/web-engine");
    assert_eq!(pod["metadata"]["annotations"]["io.kubernetes.cri-o.userns-mode"], "auto:size=65536");
    assert!(pod["spec"].get("hostUsers").is_none());
}

#[tokio::test]
async fn a_new_refusal_reason_in_the_same_phase_is_announced() {
    let api = Fake::new(json!({}));
    let dsb = sandbox("{isolation: sysbox}");
    api.reconcile(&dsb, config(true)).await.expect("first");
    assert_eq!(api.take_events(), events(&[("RuntimeClassMissing", "Warning")]));
    sysbox_cluster(&api, "containerd://2.1.9");
    api.with(|s| {
        s.objects.remove("nodes/n1");
    });
    api.reconcile(&api.refreshed(&dsb), config(true)).await.expect("second");
    assert_eq!(
        api.take_events(),
        events(&[("SysboxUserNamespaceUnknown", "Warning")]),
        "Pending → Pending, new reason"
    );
    api.reconcile(&api.refreshed(&dsb), config(true)).await.expect("third");
    assert_eq!(api.take_events(), events(&[]), "same reason again: no new event");
}

#[tokio::test]
async fn an_unlabelled_namespace_gets_no_privileged_engine() {
    let api = Fake::new(json!({}));
    let action = api.reconcile(&sandbox("{}"), config(true)).await.expect("reconcile");
    assert_eq!(action, Action::requeue(Duration::from_secs(5)), "re-checked (and woken by a label change)");
    let writes = api.take_writes();
    assert!(!writes.iter().any(|c| c.contains("pods/") || c.contains("secrets/")), "nothing created: {writes:?}");
    assert_eq!(api.take_events(), events(&[("PrivilegedNotOptedIn", "Warning")]));
    let message = api.object("dockersandboxes/web")["status"]["conditions"][0]["message"].clone();
    assert!(message.as_str().is_some_and(|m| m.contains("kubectl label namespace team-a")), "{message}");
}

#[tokio::test]
async fn a_planted_secret_is_a_conflict_and_is_left_untouched() {
    let api = Fake::new(opted_in());
    let planted = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "web-ca", "namespace": "team-a"},
                         "data": {"ca.pem": "cGxhbnRlZA==", "ca-key.pem": "cGxhbnRlZA=="}});
    api.with(|s| {
        s.objects.insert("secrets/web-ca".into(), planted.clone());
        // unlabelled: the operator's label-selected cache never sees it
        s.hidden.push("secrets/web-ca".into());
    });
    let action = api.reconcile(&sandbox("{}"), config(true)).await.expect("reconcile");
    assert_eq!(action, Action::requeue(Duration::from_secs(5)));
    let calls = api.take_calls();
    // The create fails (AlreadyExists), the object is read to tell whose it is, nothing is written.
    assert!(calls.contains(&"POST secrets/web-ca".to_string()), "{calls:?}");
    assert!(!calls.iter().any(|c| c.contains("secrets/web-ca") && (c.starts_with("PATCH") || c.starts_with("DELETE"))));
    assert!(!calls.iter().any(|c| c.contains("pods/")), "no engine on a CA someone else holds: {calls:?}");
    assert_eq!(api.object("secrets/web-ca"), planted);
    let status = &api.object("dockersandboxes/web")["status"];
    assert_eq!(status["phase"], "Pending");
    assert_eq!(status["conditions"][0]["reason"], "Conflict");
    let message = status["conditions"][0]["message"].as_str().unwrap_or_default().to_string();
    assert!(message.starts_with("Secret web-ca already exists and it was not created for this sandbox"), "{message}");
    // The certificates are what is blocked; the isolation is resolved.
    let of = |t: &str| status["conditions"].as_array().and_then(|c| c.iter().find(|c| c["type"] == t).cloned());
    assert_eq!(of("TLSReady").map(|c| c["reason"].clone()), Some(json!("Conflict")));
    assert_eq!(of("IsolationResolved").map(|c| c["reason"].clone()), Some(json!("Resolved")));
    assert_eq!(api.take_events().last(), Some(&("Conflict".to_string(), "Warning".to_string())));
}

#[tokio::test]
async fn a_tampered_client_bundle_is_put_back_without_a_new_ca() {
    let api = Fake::new(opted_in());
    let dsb = sandbox("{}");
    api.reconcile(&dsb, config(true)).await.expect("first");
    let (ca, client) = (api.object("secrets/web-ca"), api.object("secrets/web-client"));
    api.with(|s| {
        s.objects.get_mut("secrets/web-client").expect("client")["data"]["ca.pem"] = json!("dGFtcGVyZWQ=");
    });
    api.take_events();
    api.reconcile(&api.refreshed(&dsb), config(true)).await.expect("second");
    assert_eq!(api.object("secrets/web-client")["data"], client["data"], "content put back");
    assert_eq!(api.object("secrets/web-ca"), ca, "same CA");
    assert_eq!(api.take_events(), events(&[("SecretRestored", "Normal")]));
}

#[tokio::test]
async fn a_running_privileged_engine_is_stopped_when_policy_forbids_it_and_its_volume_stays() {
    let api = Fake::new(opted_in());
    let dsb = sandbox("{}");
    api.reconcile(&dsb, config(true)).await.expect("first");
    assert!(api.object("pods/web-engine").is_object());
    api.take_events();
    api.reconcile(&api.refreshed(&dsb), config(false)).await.expect("policy changed");
    assert!(api.object("pods/web-engine").is_null(), "engine stopped");
    assert!(api.object("persistentvolumeclaims/web-docker").is_object(), "volume kept");
    assert_eq!(api.take_events(), events(&[("EngineStopped", "Warning"), ("PrivilegedForbidden", "Warning")]));
    let status = &api.object("dockersandboxes/web")["status"];
    assert_eq!(status["phase"], "Pending");
    assert_eq!(status["isolation"], "privileged", "the resolved isolation stays on record");
}

#[tokio::test]
async fn a_vanished_runtime_class_never_makes_a_sysbox_engine_privileged() {
    let api = Fake::new(opted_in());
    sysbox_cluster(&api, "containerd://2.1.9");
    let dsb = sandbox("{}");
    api.reconcile(&dsb, config(true)).await.expect("first");
    assert_eq!(api.object("dockersandboxes/web")["status"]["isolation"], "sysbox");
    api.with(|s| {
        s.objects.remove("runtimeclasses/sysbox-runc");
    });
    api.take_calls();
    api.reconcile(&api.refreshed(&dsb), config(true)).await.expect("second");
    let writes: Vec<String> =
        api.take_calls().into_iter().filter(|c| c.contains("pods/") && !c.starts_with("GET")).collect();
    assert_eq!(writes, Vec::<String>::new(), "the sysbox pod is neither replaced nor stopped");
    assert_eq!(api.object("pods/web-engine")["spec"]["runtimeClassName"], "sysbox-runc");
    let status = &api.object("dockersandboxes/web")["status"];
    assert_eq!(status["conditions"][0]["reason"], "RuntimeClassMissing");
    assert_eq!(status["isolation"], "sysbox");
}

#[tokio::test]
async fn raising_the_credentials_generation_reissues_everything_and_rolls_the_engine() {
    let api = Fake::new(opted_in());
    let dsb = sandbox("{}");
    api.reconcile(&dsb, config(true)).await.expect("first");
    let (ca, client, pod_hash) = (
        api.object("secrets/web-ca"),
        api.object("secrets/web-client"),
        api.object("pods/web-engine")["metadata"]["annotations"]["dockersandbox.dev/spec-hash"].clone(),
    );
    api.take_events();
    let mut revoked = api.refreshed(&dsb);
    revoked.spec.credentials.generation = 1;
    api.reconcile(&revoked, config(true)).await.expect("revoke");
    assert_ne!(api.object("secrets/web-ca")["data"], ca["data"], "new CA");
    assert_eq!(
        api.object("secrets/web-ca")["metadata"]["annotations"]["dockersandbox.dev/credentials-generation"],
        "1"
    );
    assert_ne!(
        api.object("secrets/web-client")["data"]["cert.pem"],
        client["data"]["cert.pem"],
        "new client certificate"
    );
    let reasons: Vec<String> = api.take_events().into_iter().map(|(r, _)| r).collect();
    assert_eq!(
        reasons,
        ["CredentialsRotating", "ServerCertificateIssued", "ClientCertificateIssued", "EngineRecreating"]
    );
    assert!(api.object("pods/web-engine").is_null(), "the old engine (old server certificate) goes; a new one follows");
    // the next reconcile creates the engine with the new certificate and keeps the new CA
    let ca1 = api.object("secrets/web-ca");
    api.reconcile(&api.refreshed(&revoked), config(true)).await.expect("after");
    assert_ne!(api.object("pods/web-engine")["metadata"]["annotations"]["dockersandbox.dev/spec-hash"], pod_hash);
    assert_eq!(api.object("secrets/web-ca"), ca1, "revoked once, not on every reconcile");
    assert_eq!(
        api.object("dockersandboxes/web")["status"]["certificates"]["generation"],
        0,
        "revoked only once the engine answers with a certificate of the new CA (none answers here)"
    );
    assert!(!api.take_events().iter().any(|(r, _)| r == "CredentialsRevoked"));
}

#[tokio::test]
async fn revocation_stops_the_old_engine_even_when_no_new_pod_can_be_admitted() {
    let api = Fake::new(opted_in());
    let dsb = sandbox("{}");
    let placed = api.placed(&dsb).await;
    api.with(|s| {
        // the dry run and the create alike: the quota is full
        let quota = (403, "pods \"web-engine\" is forbidden: exceeded quota: pods=1".to_string());
        s.refuse.insert("POST pods/web-engine (dry run)".into(), quota.clone());
        s.refuse.insert("POST pods/web-engine".into(), quota);
    });
    let mut revoked = placed;
    revoked.spec.credentials.generation = 1;
    api.take_calls();
    api.reconcile(&revoked, config(true)).await.expect("revoke");
    let pod_calls: Vec<String> = api.take_calls().into_iter().filter(|c| c.contains("pods")).collect();
    assert!(pod_calls.iter().any(|c| c == "DELETE pods/web-engine"), "{pod_calls:?}");
    assert!(!pod_calls.iter().any(|c| c.ends_with("(dry run)")), "no dry run decides a revocation: {pod_calls:?}");
    assert!(api.object("pods/web-engine").is_null(), "the engine trusting the revoked CA is gone");
    // The new pod is refused by the quota: the reconcile fails (and is retried with backoff), and
    // no engine trusting the old CA serves meanwhile.
    let err = api.reconcile(&api.refreshed(&revoked), config(true)).await.expect_err("quota");
    assert!(err.contains("exceeded quota"), "{err}");
    assert!(api.object("pods/web-engine").is_null());
}

#[tokio::test]
async fn a_ca_key_kept_in_the_tenants_namespace_is_moved_without_changing_the_ca() {
    let api = Fake::new(opted_in());
    let dsb = sandbox("{}");
    let placed = api.placed(&dsb).await;
    let (ca_cert, client) = (api.object("secrets/web-ca")["data"]["ca.pem"].clone(), api.object("secrets/web-client"));
    // As an operator before the move left it: the key in NAME-ca, nothing in its own namespace.
    api.with(|s| {
        let key = s.objects.remove("secrets/ca-team-a-u1").expect("key");
        s.objects.get_mut("secrets/web-ca").expect("ca")["data"]["ca-key.pem"] = key["data"]["ca-key.pem"].clone();
    });
    api.take_events();
    api.reconcile(&api.refreshed(&placed), config(true)).await.expect("migrate");
    let key = api.object("secrets/ca-team-a-u1");
    assert_eq!(key["data"]["ca.pem"], ca_cert, "the same CA, now in the operator's namespace");
    assert!(api.object("secrets/web-ca")["data"].get("ca-key.pem").is_none(), "the key is gone from NAME-ca");
    assert_eq!(api.object("secrets/web-ca")["data"]["ca.pem"], ca_cert);
    assert_eq!(api.object("secrets/web-client"), client, "the tenant's client certificate still works");
    assert_eq!(api.take_events(), events(&[("CAKeyMoved", "Normal")]), "no CARegenerated, nothing reissued");
}

#[tokio::test]
async fn a_spec_change_the_api_server_would_refuse_keeps_the_running_engine() {
    let api = Fake::new(opted_in());
    let dsb = sandbox("{}");
    let mut changed = api.placed(&dsb).await;
    let pod = api.object("pods/web-engine");
    api.with(|s| {
        s.refuse.insert(
            "POST pods/web-engine (dry run)".into(),
            (403, "pods \"web-engine\" is forbidden: maximum memory usage per Container is 2Gi".into()),
        );
    });
    changed.spec.daemon.mtu = Some(1400);
    api.reconcile(&changed, config(true)).await.expect("second");
    let pod_calls: Vec<String> = api.take_calls().into_iter().filter(|c| c.contains("pods")).collect();
    assert_eq!(pod_calls, calls(&["POST pods/web-engine (dry run)"]), "a dry run, no delete");
    assert_eq!(api.object("pods/web-engine"), pod, "the running engine is kept");
    let ready = &api.object("dockersandboxes/web")["status"]["conditions"][0];
    assert_eq!(ready["reason"], "RollRefused");
    assert!(
        ready["message"]
            .as_str()
            .is_some_and(|m| m.contains("maximum memory usage") && m.contains("running engine is kept"))
    );
    assert_eq!(api.take_events(), events(&[("RollRefused", "Warning")]));
}

#[tokio::test]
async fn no_default_class_creates_nothing_and_says_how_to_fix_it() {
    let api = Fake::new(opted_in());
    api.with(|s| {
        s.objects.remove("dockersandboxclasses/standard");
    });
    let action = api.reconcile(&sandbox("{}"), config(true)).await.expect("reconcile");
    assert_eq!(action, Action::requeue(Duration::from_secs(5)));
    assert_eq!(api.take_calls(), calls(&["PATCH dockersandboxes/web/status", "POST events"]));
    let ready = &api.object("dockersandboxes/web")["status"]["conditions"][0];
    assert_eq!(ready["reason"], "ClassNotFound");
    assert!(ready["message"].as_str().is_some_and(|m| m.contains("no DockerSandboxClass is marked default")));
}

#[tokio::test]
async fn the_class_in_use_is_recorded_and_its_loss_stops_a_privileged_engine_but_keeps_its_volume() {
    let api = Fake::new(opted_in());
    let dsb = sandbox("{}");
    api.reconcile(&dsb, config(true)).await.expect("first");
    let status = api.object("dockersandboxes/web")["status"].clone();
    assert_eq!((status["className"].as_str(), status["classGeneration"].as_i64()), (Some("standard"), Some(3)));
    assert_eq!(status["isolation"], "privileged");
    api.with(|s| {
        s.objects.remove("dockersandboxclasses/standard");
    });
    api.take_events();
    api.reconcile(&api.refreshed(&dsb), config(true)).await.expect("class gone");
    assert!(api.object("pods/web-engine").is_null(), "a privileged engine whose class is gone is stopped");
    assert!(api.object("persistentvolumeclaims/web-docker").is_object(), "volume kept");
    assert_eq!(api.take_events(), events(&[("EngineStopped", "Warning"), ("ClassNotFound", "Warning")]));
    assert_eq!(api.object("dockersandboxes/web")["status"]["className"], "standard");
}

#[tokio::test]
async fn a_lost_class_stops_nothing_of_a_sysbox_engine() {
    let api = Fake::new(opted_in());
    sysbox_cluster(&api, "containerd://2.1.9");
    let dsb = sandbox("{}");
    api.reconcile(&dsb, config(true)).await.expect("first");
    assert_eq!(api.object("dockersandboxes/web")["status"]["isolation"], "sysbox");
    let pod = api.object("pods/web-engine");
    api.with(|s| {
        s.objects.remove("dockersandboxclasses/standard");
    });
    api.take_events();
    api.reconcile(&api.refreshed(&dsb), config(true)).await.expect("class gone");
    assert_eq!(api.object("pods/web-engine"), pod, "the sysbox engine keeps running: the class may come back");
    assert_eq!(api.take_events(), events(&[("ClassNotFound", "Warning")]));
}

#[tokio::test]
async fn a_class_that_drops_privileged_stops_the_privileged_engine() {
    let api = Fake::new(opted_in());
    let dsb = sandbox("{}");
    api.reconcile(&dsb, config(true)).await.expect("first");
    api.with(|s| {
        s.objects.get_mut("dockersandboxclasses/standard").expect("class")["spec"]["isolation"] = json!(["sysbox"]);
    });
    api.take_events();
    api.reconcile(&api.refreshed(&dsb), config(true)).await.expect("class tightened");
    assert!(api.object("pods/web-engine").is_null(), "engine stopped");
    assert!(api.object("persistentvolumeclaims/web-docker").is_object(), "volume kept");
    assert_eq!(api.take_events(), events(&[("EngineStopped", "Warning"), ("IsolationNotAllowed", "Warning")]));
}

#[tokio::test]
async fn an_image_the_class_does_not_allow_is_refused_before_anything_is_made() {
    let api = Fake::new(opted_in());
    api.with(|s| {
        s.objects.get_mut("dockersandboxclasses/standard").expect("class")["spec"]["image"] =
            json!({"allowed": ["docker:*-dind"]});
    });
    api.reconcile(&sandbox("{image: 'evil/miner:1'}"), config(true)).await.expect("reconcile");
    let status = &api.object("dockersandboxes/web")["status"];
    assert_eq!(status["phase"], "Failed", "a spec the class refuses waits for a spec change");
    assert_eq!(status["conditions"][0]["reason"], "ImageNotAllowed");
    assert!(!api.take_calls().iter().any(|c| c.contains("services/") || c.contains("secrets/")));
}

#[tokio::test]
async fn the_engine_gets_a_network_policy_that_is_put_back_when_edited() {
    let api = Fake::new(opted_in());
    let dsb = sandbox("{network: {allowFrom: [{namespaceSelector: {matchLabels: {team: ci}}}]}}");
    let placed = api.placed(&dsb).await;
    let np = api.object("networkpolicies/web-engine");
    let from = &np["spec"]["ingress"][0]["from"];
    assert_eq!(from[0], json!({"podSelector": {}}), "the sandbox's own namespace");
    assert_eq!(from[1], json!({"namespaceSelector": {"matchLabels": {"team": "ci"}}}));
    assert_eq!(np["spec"]["egress"][0]["to"][0]["ipBlock"]["except"], json!(["169.254.0.0/16"]));
    let status = &api.object("dockersandboxes/web")["status"]["network"];
    assert_eq!(status["egress"], "everywhere except 169.254.0.0/16, fe80::/10, fd00:ec2::254/128, fd20:ce::254/128");
    api.with(|s| {
        s.objects.get_mut("networkpolicies/web-engine").expect("np")["spec"]["ingress"][0]["from"] =
            json!([{"namespaceSelector": {}}]);
    });
    api.reconcile(&placed, config(true)).await.expect("second");
    assert!(api.take_writes().contains(&"PATCH networkpolicies/web-engine".to_string()));
    assert_eq!(api.object("networkpolicies/web-engine")["spec"]["ingress"][0]["from"][1], from[1], "put back");
}

#[tokio::test]
async fn a_class_that_forbids_more_peers_refuses_allow_from_before_anything_is_made() {
    let api = Fake::new(opted_in());
    api.with(|s| {
        s.objects.get_mut("dockersandboxclasses/standard").expect("class")["spec"]["network"] =
            json!({"allowTenantPeers": false});
    });
    api.reconcile(&sandbox("{network: {allowFrom: [{namespaceSelector: {}}]}}"), config(true))
        .await
        .expect("reconcile");
    let status = &api.object("dockersandboxes/web")["status"];
    assert_eq!(status["phase"], "Failed");
    assert_eq!(status["conditions"][0]["reason"], "NetworkNotAllowed");
    assert!(!api.take_calls().iter().any(|c| c.contains("networkpolicies/") || c.contains("pods/")));
}

/// The API server's answer while a deleted Service still holds its address.
fn address_held(ip: &str) -> (u16, String) {
    (
        422,
        format!(
            "Service \"web\" is invalid: spec.clusterIPs: Invalid value: [\"{ip}\"]: failed to allocate IP {ip}: provided IP is already allocated"
        ),
    )
}

#[tokio::test]
async fn a_deleted_service_comes_back_with_its_address_once_the_api_server_frees_it() {
    let api = Fake::new(opted_in());
    let dsb = sandbox("{}");
    let placed = api.placed(&dsb).await;
    let pod = api.object("pods/web-engine");
    api.with(|s| {
        s.objects.remove("services/web");
        s.refuse_next.insert("POST services/web".into(), vec![address_held("10.96.0.10"); 2]);
        s.free_ip = Some("10.96.0.99".into());
    });
    api.reconcile(&placed, config(true)).await.expect("second");
    assert_eq!(api.object("services/web")["spec"]["clusterIP"], json!("10.96.0.10"));
    let writes: Vec<String> =
        api.take_writes().into_iter().filter(|w| !w.contains("/status") && w != "POST events").collect();
    assert_eq!(writes, calls(&["POST services/web"; 3]), "asked again, nothing else written");
    assert_eq!(api.object("pods/web-engine"), pod, "the engine keeps its certificate and keeps running");
    assert!(!api.take_events().iter().any(|(r, _)| r == "ServerCertificateIssued"));
}

#[tokio::test]
async fn a_service_whose_address_stays_taken_gets_a_new_one_and_a_new_certificate() {
    let api = Fake::new(opted_in());
    let dsb = sandbox("{}");
    let placed = api.placed(&dsb).await;
    api.with(|s| {
        s.objects.remove("services/web");
        s.refuse_next.insert("POST services/web".into(), vec![address_held("10.96.0.10"); 7]);
        s.free_ip = Some("10.96.0.99".into());
    });
    api.reconcile(&placed, config(true)).await.expect("second");
    assert_eq!(api.object("services/web")["spec"]["clusterIP"], json!("10.96.0.99"));
    assert!(
        api.take_events().iter().any(|(r, _)| r == "ServerCertificateIssued"),
        "the certificate follows the address"
    );
}

#[tokio::test]
async fn suspending_stops_only_the_engine_pod_and_says_so() {
    let api = Fake::new(opted_in());
    let dsb = sandbox("{}");
    let mut suspended = api.placed(&dsb).await;
    suspended.spec.suspend = true;
    let action = api.reconcile(&suspended, config(true)).await.expect("suspend");
    let writes = api.take_writes();
    assert_eq!(
        writes.iter().filter(|w| w.starts_with("DELETE")).collect::<Vec<_>>(),
        ["DELETE pods/web-engine"],
        "the volume, Service, certificates and policy stay: {writes:?}"
    );
    let status = &api.object("dockersandboxes/web")["status"];
    assert_eq!(status["phase"], "Suspended");
    assert_eq!(status["suspension"]["cause"], "Spec");
    assert_eq!(api.take_events(), events(&[("Suspended", "Normal")]));
    assert_eq!(action, Action::requeue(Duration::from_secs(3600)), "nothing is due: its watch events wake it");
    // suspended again: nothing more to do, nothing written
    api.reconcile(&api.refreshed(&suspended), config(true)).await.expect("again");
    assert!(api.take_writes().iter().all(|w| !w.starts_with("DELETE")), "the pod is deleted once");
}

#[tokio::test]
async fn an_expired_sandbox_with_on_expiry_delete_is_deleted_after_a_warning() {
    let api = Fake::new(opted_in());
    // no creationTimestamp in the fixture: created at the epoch, long expired
    let dsb = sandbox("{lifetime: 1h, onExpiry: Delete, suspend: true}");
    let action = api.reconcile(&dsb, config(true)).await.expect("reconcile");
    assert_eq!(action, Action::await_change());
    assert_eq!(
        api.take_calls(),
        calls(&["POST events", "DELETE dockersandboxes/web"]),
        "the Event first; nothing is made"
    );
    assert_eq!(api.take_events(), events(&[("Expired", "Warning")]));
}

#[tokio::test]
async fn the_ready_engine_pod_is_the_services_one_endpoint_and_the_controllers_stale_slices_go() {
    let api = Fake::new(opted_in());
    let dsb = sandbox("{}");
    api.placed(&dsb).await;
    assert_eq!(api.object("services/web")["spec"].get("selector"), None, "the Service selects no pod");
    assert_eq!(api.object("endpointslices/web"), Value::Null, "no address yet: no slice, no request");
    let mut theirs = api.object("services/web")["metadata"]["labels"].clone();
    theirs["kubernetes.io/service-name"] = json!("web");
    theirs["endpointslice.kubernetes.io/managed-by"] = json!("endpointslice-controller.k8s.io");
    api.with(|s| {
        s.objects.get_mut("services/web").expect("svc")["metadata"]["uid"] = json!("svc1");
        let pod = s.objects.get_mut("pods/web-engine").expect("pod");
        pod["metadata"]["uid"] = json!("pod1");
        pod["status"] =
            json!({"phase": "Running", "podIP": "127.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]});
        // what Kubernetes' controller made while an earlier operator's Service had a selector
        s.objects.insert(
            "endpointslices/web-x7k2p".into(),
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                   "metadata": {"name": "web-x7k2p", "namespace": "team-a", "uid": "old1", "labels": theirs,
                                "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": "web", "uid": "svc1"}]},
                   "addressType": "IPv4", "endpoints": [{"addresses": ["10.244.9.9"]}]}),
        );
    });
    let probing = Config { engine_probe: dockersandbox_operator::config::EngineProbe::Pod, ..config(true) };
    api.reconcile(&api.refreshed(&dsb), probing).await.expect("reconcile");
    let writes = api.take_writes();
    assert!(writes.contains(&"POST endpointslices/web".to_string()), "{writes:?}");
    assert!(writes.contains(&"DELETE endpointslices/web-x7k2p".to_string()), "{writes:?}");
    let slice = api.object("endpointslices/web");
    assert_eq!(
        slice["endpoints"],
        json!([{"addresses": ["127.0.0.1"],
        "conditions": {"ready": true, "serving": true, "terminating": false},
        "targetRef": {"kind": "Pod", "name": "web-engine", "namespace": "team-a", "uid": "pod1"}}])
    );
    assert_eq!(slice["metadata"]["labels"]["kubernetes.io/service-name"], "web");
}

#[tokio::test]
async fn a_refused_sandbox_still_expires_its_engine_from_before_stops() {
    let api = Fake::new(opted_in());
    // placed while its class had no lifetimes; then the class caps them and the tenant's spec goes wrong
    let placed = api.placed(&sandbox("{}")).await;
    api.with(|s| {
        let class = s.objects.get_mut("dockersandboxclasses/standard").expect("class");
        class["spec"]["image"] = json!({"allowed": ["docker:*-dind"]});
        class["spec"]["lifecycle"] = json!({"expiry": {"maxLifetime": "1h"}});
    });
    let mut wrong = placed.clone();
    wrong.spec.image = Some("evil/miner:1".into());
    // no creationTimestamp in the fixture: created at the epoch, long past its hour
    api.reconcile(&wrong, config(true)).await.expect("reconcile");
    let writes = api.take_writes();
    assert!(writes.contains(&"DELETE pods/web-engine".to_string()), "the engine kept from before stops: {writes:?}");
    assert_eq!(api.object("dockersandboxes/web")["status"]["conditions"][0]["reason"], "ImageNotAllowed");
    assert!(api.take_events().contains(&("Expired".to_string(), "Warning".to_string())));
}

/// The operator's config with the activator on (its Service `act` in `dsb-system`).
fn with_activator() -> Config {
    Config { activator_service: "act".into(), operator_namespace: Some("dsb-system".into()), ..config(true) }
}

#[tokio::test]
async fn an_engine_that_may_idle_is_held_for_at_the_activator_and_that_costs_nothing_once_in_place() {
    let api = Fake::new(opted_in());
    let dsb = sandbox("{idle: {suspendAfter: 1h}}");
    let config = with_activator();
    api.reconcile(&dsb, config.clone()).await.expect("first");
    let writes = api.take_writes();
    // The port's policy is in place before the slice routes to it (the pod has no address yet).
    let policy = writes.iter().position(|w| w == "POST networkpolicies/activator-u1").expect("the port policy");
    let slice = writes.iter().position(|w| w == "POST endpointslices/web").expect("the slice");
    assert!(policy < slice, "{writes:?}");
    let stored = api.object("endpointslices/web");
    assert_eq!(stored["metadata"]["labels"]["dockersandbox.dev/route"], "activator");
    assert_eq!(stored["endpoints"][0]["addresses"][0], "10.9.0.1");
    let port = stored["ports"][0]["port"].clone();
    let policy = api.object("networkpolicies/activator-u1");
    assert_eq!(policy["metadata"]["namespace"], "dsb-system");
    assert_eq!(policy["spec"]["ingress"][0]["ports"][0]["port"], port);
    assert_eq!(policy["metadata"]["labels"]["dockersandbox.dev/activator-port"], json!(port.to_string()));
    // The caches keep no spec of the policy (it has no owner): as wanted all the same, no request.
    api.reconcile(&api.refreshed(&dsb), config.clone()).await.expect("second");
    api.reconcile(&api.refreshed(&dsb), config.clone()).await.expect("third");
    assert_eq!(api.take_writes(), Vec::<String>::new(), "in place: no write");
    // The engine pod ready: the slice names it, then the port's policy goes.
    api.with(|s| {
        let pod = s.objects.get_mut("pods/web-engine").expect("pod");
        pod["status"] = json!({"podIP": "10.244.0.9", "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}]});
    });
    api.reconcile(&api.refreshed(&dsb), config).await.expect("ready");
    let writes = api.take_writes();
    let slice = writes.iter().position(|w| w == "PATCH endpointslices/web").expect("the slice back on the engine");
    let gone = writes.iter().position(|w| w == "DELETE networkpolicies/activator-u1").expect("the policy deleted");
    assert!(slice < gone, "{writes:?}");
    assert_eq!(api.object("endpointslices/web")["endpoints"][0]["addresses"][0], "10.244.0.9");
}

#[tokio::test]
async fn a_sandbox_refused_while_routed_to_the_activator_is_routed_away_and_its_port_policy_goes() {
    let api = Fake::new(opted_in());
    let dsb = sandbox("{idle: {suspendAfter: 1h}}");
    let config = with_activator();
    api.reconcile(&dsb, config.clone()).await.expect("first");
    assert_eq!(api.object("endpointslices/web")["metadata"]["labels"]["dockersandbox.dev/route"], "activator");
    api.take_calls();
    // A class that does not exist: refused; no wake would be acted on, so no connection is held.
    let refused = sandbox("{className: nope, idle: {suspendAfter: 1h}}");
    api.reconcile(&api.refreshed(&refused), config).await.expect("refused");
    let writes = api.take_writes();
    assert!(writes.contains(&"PATCH endpointslices/web".to_string()), "{writes:?}");
    assert!(writes.contains(&"DELETE networkpolicies/activator-u1".to_string()), "{writes:?}");
    assert!(api.object("endpointslices/web")["metadata"]["labels"]["dockersandbox.dev/route"].is_null());
}

#[tokio::test]
async fn look_alike_slices_in_tenant_namespaces_take_no_activator_port() {
    use dockersandbox_operator::config::Ports;
    let api = Fake::new(opted_in());
    // A tenant allowed to write EndpointSlices in their namespace forges the operator's labels on
    // slices claiming every port of the range, and a look-alike port policy there too.
    api.with(|s| {
        for port in [20000, 20001] {
            s.objects.insert(
                format!("endpointslices/fake-{port}"),
                json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"name": format!("fake-{port}"), "namespace": "tenant-b", "uid": format!("f{port}"),
                        // Owned by the tenant's own sandbox, as far as the reference says.
                        "ownerReferences": [{"apiVersion": "dockersandbox.dev/v1alpha1", "kind": "DockerSandbox",
                            "name": "mine", "uid": "t1", "controller": true}],
                        "labels": {"kubernetes.io/service-name": format!("fake-{port}"),
                            "endpointslice.kubernetes.io/managed-by": "dockersandbox.dev-operator",
                            "dockersandbox.dev/route": "activator"}},
                    "addressType": "IPv4", "endpoints": [],
                    "ports": [{"name": "docker-tls", "port": port}]}),
            );
        }
        s.objects.insert(
            "networkpolicies/activator-forged".into(),
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": "activator-forged", "namespace": "tenant-b", "uid": "np1",
                    "labels": {"app.kubernetes.io/component": "activator-ingress",
                        "dockersandbox.dev/activator-port": "20000"}}}),
        );
    });
    let dsb = sandbox("{idle: {suspendAfter: 1h}}");
    let config = Config { activator_ports: Ports { first: 20000, last: 20001 }, ..with_activator() };
    api.reconcile(&dsb, config).await.expect("first");
    let stored = api.object("endpointslices/web");
    assert_eq!(stored["metadata"]["labels"]["dockersandbox.dev/route"], "activator", "not refused for want of a port");
    let port = stored["ports"][0]["port"].as_u64().expect("a port");
    assert!((20000..=20001).contains(&port), "{port}");
    let policy = api.object("networkpolicies/activator-u1");
    assert_eq!(policy["metadata"]["namespace"], "dsb-system");
}
