//! Reconciler call order against a mocked API server (no cluster): what the operator reads and
//! writes for a sandbox that cannot be placed. Real-cluster behaviour is proven in e2e/.

use std::sync::Arc;

use dockersandbox_operator::config::Config;
use dockersandbox_operator::controller::{Context, reconcile::reconcile};
use dockersandbox_operator::crd::DockerSandbox;
use dockersandbox_operator::metrics::Metrics;
use http::{Method, Request, Response};
use kube::Client;
use kube::client::Body;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn sandbox(spec: &str) -> DockerSandbox {
    let yaml = format!(
        "apiVersion: dockersandbox.dev/v1alpha1\nkind: DockerSandbox\nmetadata: {{name: web, namespace: team-a, uid: u1, generation: 2}}\nspec: {spec}\n"
    );
    serde_saphyr::from_str(&yaml).expect("fixture")
}

fn json(status: u16, body: serde_json::Value) -> Response<Body> {
    Response::builder().status(status).body(Body::from(serde_json::to_vec(&body).expect("json"))).expect("response")
}

fn not_found() -> Response<Body> {
    json(
        404,
        serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}),
    )
}

async fn expect(
    handle: &mut Handle,
    method: Method,
    path_suffix: &str,
) -> (String, tower_test::mock::SendResponse<Response<Body>>) {
    let (req, send) = handle.next_request().await.expect("a request");
    assert_eq!(req.method(), method, "{}", req.uri());
    assert!(req.uri().path().ends_with(path_suffix), "expected …{path_suffix}, got {}", req.uri());
    let body = req.into_body().collect_bytes().await.expect("body");
    (String::from_utf8_lossy(&body).into_owned(), send)
}

/// Answers the reconciler's first call: the sandbox's namespace, terminating or not.
async fn answer_namespace(handle: &mut Handle, deleting: bool) {
    let (_, send) = expect(handle, Method::GET, "/api/v1/namespaces/team-a").await;
    let mut ns = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}});
    if deleting {
        ns["metadata"]["deletionTimestamp"] = "2026-11-22T10:00:00Z".into();
    }
    send.send_response(json(200, ns));
}

fn context(client: Client, allow_privileged: bool) -> Arc<Context> {
    let config = Config { allow_privileged, ..Config::for_tests() };
    Arc::new(Context::new(client, config, Arc::new(Metrics::default())))
}

#[tokio::test]
async fn missing_runtime_class_is_reported_without_creating_anything() {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let ctx = context(Client::new(service, "team-a"), true);
    let dsb = sandbox("{isolation: sysbox}");
    let api_server = tokio::spawn(async move {
        answer_namespace(&mut handle, false).await;
        let (_, send) = expect(&mut handle, Method::GET, "/apis/node.k8s.io/v1/runtimeclasses/sysbox-runc").await;
        send.send_response(not_found());
        let (body, send) = expect(&mut handle, Method::PATCH, "/namespaces/team-a/dockersandboxes/web/status").await;
        assert!(body.contains("RuntimeClassMissing"), "{body}");
        assert!(body.contains("\"phase\":\"Pending\""), "{body}");
        assert!(body.contains("\"observedGeneration\":2"), "{body}");
        send.send_response(json(200, serde_json::json!({"apiVersion": "dockersandbox.dev/v1alpha1", "kind": "DockerSandbox", "metadata": {"name": "web", "namespace": "team-a"}, "spec": {}})));
        let (body, send) = expect(&mut handle, Method::POST, "/apis/events.k8s.io/v1/namespaces/team-a/events").await;
        assert!(body.contains("RuntimeClassMissing") && body.contains("Warning"), "{body}");
        send.send_response(json(201, serde_json::from_str(&body).expect("event json")));
    });
    // The mock answers exactly these calls; any further request (a pod, service or secret) fails the reconcile.
    let action = reconcile(Arc::new(dsb), ctx).await.expect("reconcile succeeds");
    api_server.await.expect("api server");
    assert!(format!("{action:?}").contains("60s"), "re-checked later: {action:?}");
}

#[tokio::test]
async fn privileged_forbidden_by_policy_is_reported() {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let ctx = context(Client::new(service, "team-a"), false);
    let api_server = tokio::spawn(async move {
        answer_namespace(&mut handle, false).await;
        let (_, send) = expect(&mut handle, Method::GET, "/runtimeclasses/sysbox-runc").await;
        send.send_response(not_found());
        let (body, send) = expect(&mut handle, Method::PATCH, "/dockersandboxes/web/status").await;
        assert!(body.contains("PrivilegedForbidden"), "{body}");
        send.send_response(json(200, serde_json::json!({"apiVersion": "dockersandbox.dev/v1alpha1", "kind": "DockerSandbox", "metadata": {"name": "web", "namespace": "team-a"}, "spec": {}})));
        let (_, send) = expect(&mut handle, Method::POST, "/events").await;
        send.send_response(json(201, serde_json::json!({})));
    });
    reconcile(Arc::new(sandbox("{}")), ctx).await.expect("reconcile succeeds");
    api_server.await.expect("api server");
}

#[tokio::test]
async fn api_errors_surface_as_errors_for_backoff() {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let ctx = context(Client::new(service, "team-a"), true);
    let api_server = tokio::spawn(async move {
        let (_, send) = expect(&mut handle, Method::GET, "/api/v1/namespaces/team-a").await;
        send.send_response(json(403, serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403, "message": "namespaces is forbidden"})));
        let (body, send) = expect(&mut handle, Method::POST, "/events").await;
        assert!(body.contains("ReconcileFailed"), "{body}");
        send.send_response(json(201, serde_json::json!({})));
    });
    let err = reconcile(Arc::new(sandbox("{}")), ctx).await.expect_err("forbidden");
    assert_eq!(err.category(), "forbidden");
    assert!(err.is_permanent());
    api_server.await.expect("api server");
}

#[tokio::test]
async fn terminating_namespace_creates_nothing() {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let ctx = context(Client::new(service, "team-a"), true);
    let api_server = tokio::spawn(async move { answer_namespace(&mut handle, true).await });
    let action = reconcile(Arc::new(sandbox("{}")), ctx).await.expect("reconcile succeeds");
    api_server.await.expect("api server");
    assert!(format!("{action:?}").contains("None"), "waits for a change: {action:?}");
}
