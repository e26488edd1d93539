//! `dockersandbox-operator activator`: what an idle-suspended engine's Service routes to.
//!
//! While a sandbox's engine is idle-suspended (or waking), the operator points its EndpointSlice
//! at the activator's pods, on a port that is that sandbox's alone (`resources::activator`). The
//! activator listens on every such port, and a connection that arrives on one:
//!
//! 1. is held (its bytes stay unread in the kernel: the activator never terminates TLS and has no
//!    certificate), within a cap per sandbox and in all;
//! 2. asks for the sandbox to be woken, once per wake: a new `dockersandbox.dev/wake` annotation,
//!    which lifts an idle suspension (and only that: `spec.suspend` and expiry ignore it);
//! 3. once the operator routes the Service to the engine pod again (it does so when the pod is
//!    ready), is spliced to that pod's port 2376, byte for byte in both directions.
//!
//! A connection whose engine is not Ready within `--wake-timeout`, whose sandbox is deleted, or
//! whose Service stops routing to the activator without an engine to go to (suspended by the spec
//! meanwhile) is closed. It shares nothing with the reconciler but the crate's types: it reads the
//! operator's port NetworkPolicies and EndpointSlices and writes one annotation and Events.
//!
//! What it trusts, and what not: which sandbox a port is for comes only from the port policies in
//! its own namespace (the operator's, where tenants write nothing). An EndpointSlice is read only
//! as the sandbox's own: in the sandbox's namespace, named like its Service, with the operator's
//! labels. A look-alike slice elsewhere (a tenant allowed to write slices in their namespace) opens
//! no port, maps no port to a sandbox and takes none from the operator's range.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::routing::get;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::config::ActivatorConfig;
use crate::crd::DockerSandbox;
use crate::resources::DOCKER_TLS_PORT;
use crate::resources::activator::{POLICY_COMPONENT, policy_port, routed_port};
use crate::resources::endpoints::{MANAGED_BY, MANAGED_BY_LABEL, SERVICE_NAME_LABEL};
use crate::resources::label;
use crate::resources::secret::SANDBOX_NAMESPACE_LABEL;

/// A sandbox: namespace and name.
pub type Key = (String, String);

/// Where a sandbox's Service routes, as its EndpointSlice says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Routed {
    /// To the activator, on this port.
    Activator(u16),
    /// To the engine pod at this address, ready.
    Engine(String),
    /// To nothing ready (suspended by the spec or by expiry, or starting without the activator).
    Nothing,
}

/// Where the sandbox `key` routes, from its own EndpointSlice only: in its namespace and named like
/// its Service, as the operator writes it (a look-alike slice is never looked up). One lookup, not a
/// pass over every slice: held connections ask again at every change of any slice.
pub fn route(slices: &Store<EndpointSlice>, key: &Key) -> Option<Routed> {
    let (ns, name) = key;
    let s = slices.get(&ObjectRef::new(name).within(ns))?;
    if s.labels().get(SERVICE_NAME_LABEL) != Some(name) {
        return None;
    }
    if let Some(port) = routed_port(&s) {
        return Some(Routed::Activator(port));
    }
    let ready = s
        .endpoints
        .iter()
        .flatten()
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
        .find_map(|e| e.addresses.first().cloned());
    Some(ready.map_or(Routed::Nothing, Routed::Engine))
}

/// Which sandbox each activator port is for, from the operator's port policies (in the activator's
/// own namespace: `policies` is that namespace's list). A port two policies claim is nobody's.
pub fn ports(policies: &[Arc<NetworkPolicy>]) -> HashMap<u16, Key> {
    let mut out: HashMap<u16, Option<Key>> = HashMap::new();
    for p in policies {
        let labels = p.labels();
        let (Some(port), Some(ns), Some(name)) =
            (policy_port(p), labels.get(SANDBOX_NAMESPACE_LABEL), labels.get(label::INSTANCE))
        else {
            continue;
        };
        let key = (ns.clone(), name.clone());
        out.entry(port).and_modify(|k| *k = k.take().filter(|k| *k == key)).or_insert(Some(key));
    }
    out.into_iter().filter_map(|(p, k)| Some((p, k?))).collect()
}

/// Whether `ip` is an address of `pod` as its status says (the kubelet writes it, no tenant does).
pub fn has_ip(pod: &Pod, ip: &str) -> bool {
    let status = pod.status.as_ref();
    status.and_then(|s| s.pod_ip.as_deref()) == Some(ip)
        || status.and_then(|s| s.pod_ips.as_ref()).is_some_and(|ips| ips.iter().any(|a| a.ip == ip))
}

/// What a held connection does next, given its sandbox's route now.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Keep waiting.
    Wait,
    /// Splice to the engine at this address.
    Splice(String),
    /// Close: the sandbox is gone, or will not be woken.
    Close(&'static str),
}

/// The next step for a connection held for a sandbox routed `now`.
pub fn next(now: Option<&Routed>) -> Next {
    match now {
        Some(Routed::Activator(_)) => Next::Wait,
        Some(Routed::Engine(ip)) => Next::Splice(ip.clone()),
        Some(Routed::Nothing) => Next::Close("refused"),
        None => Next::Close("gone"),
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: String,
}

/// The activator's metrics.
pub struct Metrics {
    registry: Registry,
    held: Gauge,
    ports: Gauge,
    wakes: Counter,
    connections: Family<Outcome, Counter>,
    wake_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("dockersandbox_activator");
        let held = Gauge::default();
        let ports = Gauge::default();
        let wakes = Counter::default();
        let connections = Family::<Outcome, Counter>::default();
        let wake_seconds = Histogram::new([0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0]);
        registry.register("held_connections", "Connections held while their engine wakes", held.clone());
        registry.register("ports", "Ports listened on: sandboxes routed to the activator", ports.clone());
        registry.register("wakes", "Wake requests sent for idle-suspended sandboxes", wakes.clone());
        registry.register(
            "connections",
            "Connections by outcome: spliced, timeout, refused (the sandbox is not to be woken), gone (the \
             sandbox was deleted), over_cap, failed",
            connections.clone(),
        );
        registry.register(
            "wake_duration_seconds",
            "From a connection's arrival to the first byte from its engine's dockerd",
            wake_seconds.clone(),
        );
        Self { registry, held, ports, wakes, connections, wake_seconds }
    }
}

impl Metrics {
    fn outcome(&self, outcome: &str) {
        self.connections.get_or_create(&Outcome { outcome: outcome.to_string() }).inc();
    }

    /// The metrics in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Connections held per sandbox and in all, within their caps.
#[derive(Default)]
pub struct Held {
    per: Mutex<HashMap<Key, u32>>,
}

/// One held connection; counted until dropped.
pub struct Slot<'a> {
    held: &'a Held,
    key: Key,
}

impl Held {
    /// A slot for a connection to `key`, if neither cap is reached.
    pub fn admit(&self, key: &Key, per_sandbox: u32, total: u32) -> Option<Slot<'_>> {
        let mut per = self.per.lock().unwrap_or_else(|e| e.into_inner());
        let all: u32 = per.values().sum();
        let mine = per.get(key).copied().unwrap_or(0);
        if all >= total || mine >= per_sandbox {
            return None;
        }
        per.insert(key.clone(), mine + 1);
        Some(Slot { held: self, key: key.clone() })
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut per = self.held.per.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = per.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                per.remove(&self.key);
            }
        }
    }
}

struct State {
    client: Client,
    config: ActivatorConfig,
    metrics: Metrics,
    recorder: Recorder,
    slices: Store<EndpointSlice>,
    /// The port policies in the activator's namespace: which sandbox a port is for.
    policies: Store<NetworkPolicy>,
    /// Bumped whenever the slices or the policies change.
    changed: watch::Receiver<u64>,
    held: Held,
    /// When a wake was last asked for, per sandbox (one request per wake).
    woken: Mutex<HashMap<Key, Instant>>,
}

impl State {
    fn route(&self, key: &Key) -> Option<Routed> {
        route(&self.slices, key)
    }

    /// Whether `ip`, where the sandbox's slice says its engine is, is its engine pod's address: the
    /// activator connects from the operator's namespace, which every engine admits, so it goes
    /// only to a pod of the sandbox's own namespace (someone allowed to rewrite that slice reaches
    /// nothing through the activator they could not reach themselves).
    async fn is_engine(&self, key: &Key, ip: &str) -> bool {
        let api = Api::<Pod>::namespaced(self.client.clone(), &key.0);
        let pod = tokio::time::timeout(Duration::from_secs(5), api.get_opt(&format!("{}-engine", key.1))).await;
        matches!(pod, Ok(Ok(Some(p))) if has_ip(&p, ip))
    }

    /// The sandbox `port` is for, as the operator's port policies say.
    fn owner(&self, port: u16) -> Option<Key> {
        ports(&self.policies.state()).remove(&port)
    }

    /// Asks for `key` to be woken, unless a connection waiting for this wake asked already; says
    /// so in an Event with the client's address.
    async fn wake(&self, key: &Key, peer: SocketAddr) {
        {
            let mut woken = self.woken.lock().unwrap_or_else(|e| e.into_inner());
            let timeout = Duration::from_secs(self.config.wake_timeout);
            woken.retain(|_, at| at.elapsed() < timeout);
            if woken.contains_key(key) {
                return;
            }
            woken.insert(key.clone(), Instant::now());
        }
        let (ns, name) = key;
        let api = Api::<DockerSandbox>::namespaced(self.client.clone(), ns);
        let token = format!("activator-{}", jiff::Timestamp::now().as_millisecond());
        let patch = serde_json::json!({"metadata": {"annotations": {crate::crd::WAKE_ANNOTATION: token}}});
        match api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(dsb) => {
                self.metrics.wakes.inc();
                info!(sandbox = %format!("{ns}/{name}"), client = %peer.ip(), "woken by a connection");
                let event = Event {
                    type_: EventType::Normal,
                    reason: "WokenByConnection".into(),
                    note: Some(format!(
                        "a connection from {} reached the activator: the engine is woken, and the connection goes \
                         to it once it is Ready",
                        peer.ip()
                    )),
                    action: "Wake".into(),
                    secondary: None,
                };
                if let Err(e) = self.recorder.publish(&event, &dsb.object_ref(&())).await {
                    warn!(error = %e, "could not publish an Event");
                }
            }
            Err(e) => {
                // Asked again by the next connection.
                self.woken.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
                warn!(sandbox = %format!("{ns}/{name}"), error = %e, "could not ask for a wake");
            }
        }
    }

    /// Waits until the connection for `key` can go somewhere: the engine's address, or why not.
    async fn wait(&self, key: &Key) -> Next {
        let mut changed = self.changed.clone();
        loop {
            match next(self.route(key).as_ref()) {
                Next::Wait => {}
                other => return other,
            }
            if changed.changed().await.is_err() {
                return Next::Close("failed");
            }
        }
    }
}

/// Holds `client` (arrived for `key` from `peer`), wakes the engine, splices once it is Ready. A
/// connection that arrives as the route goes back to a Ready engine (clients see the change a
/// little later than the activator) goes to the engine at once.
async fn hold(state: Arc<State>, key: Key, client: TcpStream, peer: SocketAddr) {
    let arrived = Instant::now();
    // Every connection counts against the caps while it lasts, spliced ones too: each keeps a
    // socket of the activator's.
    let Some(_slot) = state.held.admit(&key, state.config.max_held_per_sandbox, state.config.max_held) else {
        state.metrics.outcome("over_cap");
        debug!(sandbox = ?key, "over the cap of held connections: closed");
        return;
    };
    let ip = match next(state.route(&key).as_ref()) {
        Next::Splice(ip) => ip,
        Next::Close(why) => {
            state.metrics.outcome(why);
            return;
        }
        Next::Wait => {
            state.metrics.held.inc();
            let _gauge = scopeguard(&state.metrics.held);
            state.wake(&key, peer).await;
            let timeout = Duration::from_secs(state.config.wake_timeout);
            let waited = tokio::time::timeout(timeout, state.wait(&key)).await;
            // This wake is over (the engine is Ready, or it will not be): the next suspension's
            // first connection asks again.
            state.woken.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
            match waited {
                Ok(Next::Splice(ip)) => ip,
                Ok(Next::Close(why)) => {
                    state.metrics.outcome(why);
                    return;
                }
                Ok(Next::Wait) | Err(_) => {
                    state.metrics.outcome("timeout");
                    info!(sandbox = ?key, "the engine was not Ready within the wake timeout: connection closed");
                    return;
                }
            }
        }
    };
    if !state.is_engine(&key, &ip).await {
        state.metrics.outcome("failed");
        warn!(sandbox = ?key, %ip, "the sandbox's EndpointSlice names an address that is not its engine pod's: closed");
        return;
    }
    let addr = if ip.contains(':') { format!("[{ip}]:{DOCKER_TLS_PORT}") } else { format!("{ip}:{DOCKER_TLS_PORT}") };
    let engine = match tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(&addr)).await {
        Ok(Ok(s)) => s,
        _ => {
            state.metrics.outcome("failed");
            warn!(sandbox = ?key, %addr, "could not connect to the engine");
            return;
        }
    };
    state.metrics.outcome("spliced");
    splice(&state, client, engine, arrived).await;
}

/// Decrements `gauge` when dropped.
fn scopeguard(gauge: &Gauge) -> impl Drop + '_ {
    struct Guard<'a>(&'a Gauge);
    impl Drop for Guard<'_> {
        fn drop(&mut self) {
            self.0.dec();
        }
    }
    Guard(gauge)
}

/// Copies bytes both ways until either side closes; the first byte from dockerd ends the wake
/// (its latency is observed then).
async fn splice(state: &State, client: TcpStream, engine: TcpStream, arrived: Instant) {
    let _ = client.set_nodelay(true);
    let _ = engine.set_nodelay(true);
    let (mut cr, mut cw) = client.into_split();
    let (mut er, mut ew) = engine.into_split();
    let up = async move {
        let _ = tokio::io::copy(&mut cr, &mut ew).await;
        let _ = ew.shutdown().await;
    };
    let down = async {
        let mut first = [0u8; 16 * 1024];
        match er.read(&mut first).await {
            Ok(n) if n > 0 => {
                state.metrics.wake_seconds.observe(arrived.elapsed().as_secs_f64());
                if cw.write_all(&first[..n]).await.is_ok() {
                    let _ = tokio::io::copy(&mut er, &mut cw).await;
                }
            }
            _ => {}
        }
        let _ = cw.shutdown().await;
    };
    futures::join!(up, down);
}

/// Listens on `port` for the sandbox its policy names at accept time.
async fn listen(state: Arc<State>, port: u16) {
    let listener = match TcpListener::bind(("0.0.0.0", port)).await {
        Ok(l) => l,
        Err(e) => {
            warn!(port, error = %e, "cannot listen");
            return;
        }
    };
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, or the like: not a reason to spin.
                debug!(port, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match state.owner(port) {
            Some(key) => {
                tokio::spawn(hold(state.clone(), key, stream, peer));
            }
            // The port was just given up: a retry goes where the Service routes now.
            None => state.metrics.outcome("refused"),
        }
    }
}

/// Keeps a listener on every port a port policy gives a sandbox (the operator writes the policy
/// before it routes the sandbox's slice here, and deletes it after the route is gone), and none on
/// others. A listener that goes takes no held connection with it.
async fn listeners(state: Arc<State>) {
    let mut changed = state.changed.clone();
    let mut open: BTreeMap<u16, JoinHandle<()>> = BTreeMap::new();
    loop {
        let wanted: HashSet<u16> = ports(&state.policies.state()).into_keys().collect();
        open.retain(|port, task| {
            let keep = wanted.contains(port) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for port in wanted {
            open.entry(port).or_insert_with(|| tokio::spawn(listen(state.clone(), port)));
        }
        state.metrics.ports.set(open.len() as i64);
        if changed.changed().await.is_err() {
            return;
        }
    }
}

/// Runs the activator until SIGTERM.
pub async fn run(config: ActivatorConfig, client: Client) -> Result<(), Box<dyn std::error::Error>> {
    let (tx, rx) = watch::channel(0u64);
    let bump = move |tx: &watch::Sender<u64>| tx.send_modify(|n| *n += 1);
    let (slices, writer) = reflector::store::<EndpointSlice>();
    let selector = format!("{MANAGED_BY_LABEL}={MANAGED_BY}");
    let tx_slices = tx.clone();
    let slice_feed = reflector::reflector(
        writer,
        watcher(Api::<EndpointSlice>::all(client.clone()), watcher::Config::default().labels(&selector))
            .modify(|s| s.metadata.managed_fields = None)
            .default_backoff(),
    )
    .for_each(move |_| {
        bump(&tx_slices);
        futures::future::ready(())
    });
    let (policies, writer) = reflector::store::<NetworkPolicy>();
    let selector = format!("{}={POLICY_COMPONENT}", label::COMPONENT);
    let policy_feed = reflector::reflector(
        writer,
        watcher(
            Api::<NetworkPolicy>::namespaced(client.clone(), &config.namespace),
            watcher::Config::default().labels(&selector),
        )
        // Kept without managedFields (never read: at 1000 idle sandboxes, megabytes).
        .modify(|p| p.metadata.managed_fields = None)
        .default_backoff(),
    )
    .for_each(move |_| {
        bump(&tx);
        futures::future::ready(())
    });
    let reporter = Reporter { controller: "dockersandbox-activator".into(), instance: std::env::var("POD_NAME").ok() };
    let state = Arc::new(State {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        config,
        metrics: Metrics::default(),
        slices: slices.clone(),
        policies: policies.clone(),
        changed: rx,
        held: Held::default(),
        woken: Mutex::default(),
    });
    let ready = Arc::new(AtomicBool::new(false));
    let r = ready.clone();
    let synced = async move {
        let _ = futures::join!(slices.wait_until_ready(), policies.wait_until_ready());
        info!("the operator's EndpointSlices and port policies are listed: accepting connections");
        r.store(true, Ordering::Relaxed);
    };
    let http = serve(state.clone(), ready);
    tokio::select! {
        _ = futures::future::join(slice_feed, policy_feed) => {}
        _ = futures::future::join(synced, listeners(state.clone())) => {}
        res = http => res?,
        _ = shutdown() => info!("stopping: held connections are closed"),
    }
    Ok(())
}

async fn shutdown() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

async fn serve(state: Arc<State>, ready: Arc<AtomicBool>) -> std::io::Result<()> {
    let addr = state.config.serving.http_addr;
    let app =
        Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route(
                "/readyz",
                get(move || {
                    let ready = ready.load(Ordering::Relaxed);
                    async move {
                        if ready {
                            (StatusCode::OK, "ready")
                        } else {
                            (StatusCode::SERVICE_UNAVAILABLE, "listing the operator's EndpointSlices and port policies")
                        }
                    }
                }),
            )
            .route(
                "/metrics",
                get(move || {
                    let body = state.metrics.render();
                    async move {
                        ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body)
                    }
                }),
            );
    let listener = TcpListener::bind(addr).await?;
    axum::serve(listener, app).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::activator::{PORT_LABEL, ROUTE_LABEL, TO_ACTIVATOR};
    use serde_json::json;

    fn slice(ns: &str, svc: &str, route: Option<u16>, ready: Option<(&str, bool)>) -> Arc<EndpointSlice> {
        let mut labels = json!({SERVICE_NAME_LABEL: svc, MANAGED_BY_LABEL: MANAGED_BY});
        if route.is_some() {
            labels[ROUTE_LABEL] = json!(TO_ACTIVATOR);
        }
        let endpoints: Vec<_> =
            ready.map(|(ip, r)| json!({"addresses": [ip], "conditions": {"ready": r}})).into_iter().collect();
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": svc, "namespace": ns, "labels": labels},
                "addressType": "IPv4", "endpoints": endpoints,
                "ports": [{"name": "docker-tls", "port": route.unwrap_or(2376)}]}))
            .expect("slice"),
        )
    }

    /// A store holding `slices`, as the watch fills it.
    fn store(slices: &[Arc<EndpointSlice>]) -> Store<EndpointSlice> {
        let (reader, mut writer) = reflector::store::<EndpointSlice>();
        for s in slices {
            writer.apply_watcher_event(&watcher::Event::Apply((**s).clone()));
        }
        reader
    }

    fn key(ns: &str, name: &str) -> Key {
        (ns.to_string(), name.to_string())
    }

    #[test]
    fn a_held_connection_waits_for_the_engine_and_goes_nowhere_else() {
        let slices = store(&[
            slice("a", "idle", Some(20001), Some(("10.1.0.4", true))),
            slice("a", "up", None, Some(("10.0.0.7", true))),
            slice("a", "starting", None, Some(("10.0.0.8", false))),
            slice("b", "stopped", None, None),
        ]);
        let get = |ns: &str, n: &str| route(&slices, &key(ns, n));
        assert_eq!(get("a", "idle"), Some(Routed::Activator(20001)));
        assert_eq!(next(get("a", "idle").as_ref()), Next::Wait);
        assert_eq!(next(get("a", "up").as_ref()), Next::Splice("10.0.0.7".into()));
        assert_eq!(next(get("a", "starting").as_ref()), Next::Close("refused"), "not ready and not routed to us");
        assert_eq!(next(get("b", "stopped").as_ref()), Next::Close("refused"), "suspended by the spec");
        assert_eq!(next(get("b", "deleted").as_ref()), Next::Close("gone"));
    }

    fn policy(ns: &str, component: &str, labels: &[(&str, &str)]) -> Arc<NetworkPolicy> {
        let mut l = json!({label::COMPONENT: component});
        for (k, v) in labels {
            l[*k] = json!(v);
        }
        Arc::new(serde_json::from_value(json!({"metadata": {"name": "p", "namespace": ns, "labels": l}})).expect("np"))
    }

    #[test]
    fn only_the_operators_port_policies_say_which_sandbox_a_port_is_for() {
        let port = |p: &'static str, ns: &'static str, n: &'static str| {
            vec![(PORT_LABEL, p), (SANDBOX_NAMESPACE_LABEL, ns), (label::INSTANCE, n)]
        };
        let policies = [
            policy("dsb-system", POLICY_COMPONENT, &port("20001", "a", "idle")),
            policy("dsb-system", "engine", &port("20002", "a", "other")),
            policy("dsb-system", POLICY_COMPONENT, &port("20003", "a", "x")),
            policy("dsb-system", POLICY_COMPONENT, &port("20003", "b", "y")),
            policy("dsb-system", POLICY_COMPONENT, &port("nope", "a", "z")),
            policy("dsb-system", POLICY_COMPONENT, &[(PORT_LABEL, "20004")]),
        ];
        let map = ports(&policies);
        assert_eq!(map.get(&20001), Some(&("a".to_string(), "idle".to_string())));
        assert_eq!(map.get(&20002), None, "another component's policy");
        assert_eq!(map.get(&20003), None, "a port two policies claim is nobody's");
        assert_eq!(map.len(), 1, "unreadable or incomplete labels map nothing: {map:?}");
    }

    #[test]
    fn only_a_sandboxs_own_slice_says_where_it_routes() {
        // The sandbox's own slice routes to the activator; a look-alike in the same namespace
        // claims it routes to an engine at an address of the tenant's choosing.
        let mut forged = (*slice("a", "idle", None, Some(("10.0.0.66", true)))).clone();
        forged.metadata.name = Some("idle-forged".into());
        let both = store(&[slice("a", "idle", Some(20001), Some(("10.1.0.4", true))), Arc::new(forged.clone())]);
        assert_eq!(route(&both, &key("a", "idle")), Some(Routed::Activator(20001)));
        assert_eq!(route(&store(&[Arc::new(forged)]), &key("a", "idle")), None, "not named like its Service: not read");
        // Named like the Service, but labelled for another.
        let mut other = (*slice("a", "idle", None, Some(("10.0.0.66", true)))).clone();
        other.labels_mut().insert(SERVICE_NAME_LABEL.into(), "elsewhere".into());
        assert_eq!(route(&store(&[Arc::new(other)]), &key("a", "idle")), None);
    }

    #[test]
    fn an_engine_address_is_one_its_pod_status_gives() {
        let pod: Pod = serde_json::from_value(
            json!({"status": {"podIP": "10.0.0.7", "podIPs": [{"ip": "10.0.0.7"}, {"ip": "fd00::7"}]}}),
        )
        .expect("pod");
        assert!(has_ip(&pod, "10.0.0.7"));
        assert!(has_ip(&pod, "fd00::7"));
        assert!(!has_ip(&pod, "10.0.0.8"));
        assert!(!has_ip(&Pod::default(), "10.0.0.7"), "no status, no address");
    }

    #[test]
    fn held_connections_are_capped_per_sandbox_and_in_all() {
        let held = Held::default();
        let (a, b) = (("ns".to_string(), "a".to_string()), ("ns".to_string(), "b".to_string()));
        let first = held.admit(&a, 2, 3).expect("first");
        let _second = held.admit(&a, 2, 3).expect("second");
        assert!(held.admit(&a, 2, 3).is_none(), "per sandbox");
        let _third = held.admit(&b, 2, 3).expect("another sandbox");
        assert!(held.admit(&b, 2, 3).is_none(), "in all");
        drop(first);
        assert!(held.admit(&b, 2, 3).is_some(), "a slot comes back when its connection goes");
    }
}
