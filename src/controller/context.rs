//! What every reconcile shares (the client, the settings, one event recorder, metrics, and the
//! per-sandbox failure counts that drive back-off, which kube has none of for reconcile errors), and
//! the `Target` every step of one reconcile works on.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::core::{DynamicObject, NamespaceResourceScope};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::warn;

use super::cache::{Cached, Caches};
use super::expect::Expectations;
use crate::config::{Config, EngineProbe};
use crate::crd::{DockerSandbox, DockerSandboxPool};
use crate::metrics::Metrics;
use crate::resources::Names;
use crate::tls::Pem;

/// The controllers' stores of sandboxes and of pools, one of each per watched scope.
pub type Stores = (Vec<Store<DockerSandbox>>, Vec<Store<DockerSandboxPool>>);

/// Shared state of the reconciler.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Operator settings.
    pub config: Config,
    /// The one event recorder (its cache aggregates repeated events into series).
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Whether to reach engines at their pod's IP (in cluster) or through a port-forward.
    pub dial_pod: bool,
    /// What the watches show of the cluster; reconciles read from here.
    pub caches: Caches,
    /// Failures in a row per sandbox (namespace, name); entries go with success or the sandbox.
    failures: Mutex<HashMap<(String, String), u32>>,
    /// Per sandbox still waiting (not Ready), for the re-check delay: how many times its wait's
    /// delay has grown, and since when the current delay runs.
    waits: Mutex<HashMap<(String, String), (u32, tokio::time::Instant)>>,
    /// TLS checks in a row that dockerd did not answer while its pod was ready, for the probe delay
    /// (only these count: a pod that just turned ready is checked at once).
    unanswered: Mutex<HashMap<(String, String), u32>>,
    /// Per Ready sandbox: when what is inside its engine was last read, and where that read's
    /// window of engine events ended.
    facts: Mutex<HashMap<(String, String), (tokio::time::Instant, i64)>>,
    /// Slots for engine checks (`--engine-checks`): a fixed number of TLS calls to engines at once.
    pub engine_checks: Arc<tokio::sync::Semaphore>,
    /// What this process wrote (children and statuses) that the caches have not shown yet.
    pub expect: Arc<Expectations>,
    /// The activator's pods, as the EndpointSlices of its Service show them (`--activator-service`;
    /// set when the activator is on).
    pub activator: std::sync::OnceLock<Store<EndpointSlice>>,
    /// Activator ports this process gave sandboxes (namespace, name), so that two reconciles at
    /// once never give out the same one before the caches show either.
    activator_ports: Mutex<HashMap<(String, String), u16>>,
    /// Per pooled sandbox (namespace, name): the client certificate the operator checks its engine
    /// with, kept in memory only (no client certificate of a pooled engine exists anywhere a tenant
    /// can read before a claim), with the CA certificate it was issued by.
    pooled_clients: Mutex<HashMap<(String, String), (String, Pem)>>,
    /// The controllers' stores of sandboxes and of pools, one per watched scope (for claims).
    pub stores: std::sync::OnceLock<Stores>,
    /// Per claimant uid: the engine sandbox this process claimed or started for it, and when, while
    /// the cache does not show it yet (so a second reconcile never claims another).
    pub claims: Mutex<HashMap<String, (String, std::time::Instant)>>,
}

impl Context {
    /// A context for `client` and `config`.
    pub fn new(client: Client, config: Config, metrics: Arc<Metrics>, caches: Caches) -> Self {
        let instance = std::env::var("POD_NAME").ok();
        let reporter = Reporter { controller: "dockersandbox-operator".into(), instance };
        let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
        let engine_checks = Arc::new(tokio::sync::Semaphore::new(usize::from(config.engine_checks)));
        let dial_pod = match config.engine_probe {
            EngineProbe::Pod => true,
            EngineProbe::PortForward => false,
            EngineProbe::Auto => in_cluster,
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            config,
            metrics,
            dial_pod,
            caches,
            failures: Mutex::default(),
            waits: Mutex::default(),
            unanswered: Mutex::default(),
            facts: Mutex::default(),
            engine_checks,
            expect: Arc::default(),
            activator_ports: Mutex::default(),
            activator: std::sync::OnceLock::new(),
            pooled_clients: Mutex::default(),
            stores: std::sync::OnceLock::new(),
            claims: Mutex::default(),
        }
    }

    /// Whether the activator is on: its Service is named, and the operator's namespace (where the
    /// policies of its ports live) is watched, so that every such policy is seen, kept and swept.
    pub fn activator_enabled(config: &Config) -> bool {
        let watched = config.watched_namespaces();
        !config.activator_service.is_empty()
            && (watched.is_empty() || watched.iter().any(|n| n == config.ca_namespace()))
    }

    /// The ready addresses of the activator's pods (none while it is off or not up).
    pub fn activator_addresses(&self) -> Vec<String> {
        let Some(store) = self.activator.get() else { return vec![] };
        let mut out: Vec<String> = store
            .state()
            .iter()
            .flat_map(|s| s.endpoints.clone().unwrap_or_default())
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
            .flat_map(|e| e.addresses)
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The activator port of the sandbox `key` (namespace, name) with `uid`: the one it has
    /// (`current`, or given by this process) while no other sandbox's activator policy names it and
    /// this process gave it to no other, else a free one. `None` when the range is full. Only the
    /// policies count: they are written before a slice routes to their port and deleted after, and
    /// they live in the operator's namespace, so a tenant's look-alike slice takes no port.
    pub fn activator_port(&self, key: (String, String), uid: &str, current: Option<u16>) -> Option<u16> {
        use crate::resources::secret::SANDBOX_UID_LABEL;
        let mut given = self.activator_ports.lock().unwrap_or_else(|e| e.into_inner());
        let mine = given.get(&key).copied().or(current);
        let mut taken: std::collections::HashSet<u16> =
            given.iter().filter(|(k, _)| **k != key).map(|(_, p)| *p).collect();
        // Only the operator's namespace holds port policies (a tenant's look-alike takes no port).
        let ours = self.config.ca_namespace();
        for policy in self.caches.all_in::<NetworkPolicy>(ours, |_| true) {
            if policy.labels().get(SANDBOX_UID_LABEL).map(String::as_str) == Some(uid) {
                continue;
            }
            taken.extend(crate::resources::activator::policy_port(&policy));
        }
        let port =
            crate::resources::activator::pick_port(uid, mine, self.config.activator_ports, |p| taken.contains(&p))?;
        given.insert(key, port);
        Some(port)
    }

    /// The sandbox `key` no longer routes to the activator: its port is free again once the
    /// caches show its EndpointSlice and policy without it.
    pub fn release_activator_port(&self, key: &(String, String)) {
        self.activator_ports.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }

    /// This context, with the writes not yet seen kept in `expect` (tests that run one context per
    /// reconcile share it, as one long-running process would).
    #[doc(hidden)]
    pub fn with_expectations(mut self, expect: Arc<Expectations>) -> Self {
        self.expect = expect;
        self
    }

    /// Publishes an event on `dsb`; a failure to publish is logged, never fatal.
    pub async fn event(&self, dsb: &DockerSandbox, type_: EventType, reason: &str, note: String) {
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: Some(truncate(note, 1024)),
            action: reason.to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &dsb.object_ref(&())).await {
            warn!(error = %e, reason, "could not publish event");
        }
    }

    /// Delay before retrying a failed reconcile of `dsb`: 5 s doubling to 5 min.
    pub fn backoff(&self, dsb: &DockerSandbox) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(key(&ObjectRef::from_obj(dsb).erase())).or_insert(0);
        *n = n.saturating_add(1);
        backoff_after(*n)
    }

    /// Forgets failures of `dsb` after a successful reconcile. Only failures: the waits (the
    /// re-check and probe backoff) outlive a success.
    pub fn succeeded(&self, dsb: &DockerSandbox) {
        let k = key(&ObjectRef::from_obj(dsb).erase());
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).remove(&k);
    }

    /// Forgets everything kept about a sandbox that is gone (the controller found no object to
    /// reconcile).
    pub fn forget(&self, obj: &ObjectRef<DynamicObject>) {
        let k = key(obj);
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).remove(&k);
        self.waits.lock().unwrap_or_else(|e| e.into_inner()).remove(&k);
        self.unanswered.lock().unwrap_or_else(|e| e.into_inner()).remove(&k);
        self.facts.lock().unwrap_or_else(|e| e.into_inner()).remove(&k);
        self.release_activator_port(&k);
        self.pooled_clients.lock().unwrap_or_else(|e| e.into_inner()).remove(&k);
        self.metrics.forget_claim(&format!("{}/{}", k.0, k.1));
    }

    /// The in-memory client certificate for pooled sandbox `key` signed by `ca`: the one kept while
    /// `keep` accepts it, else a new one from `issue`.
    pub fn pooled_client<E>(
        &self,
        key: (String, String),
        ca: &str,
        keep: impl Fn(&Pem) -> bool,
        issue: impl FnOnce() -> Result<Pem, E>,
    ) -> Result<Pem, E> {
        let mut kept = self.pooled_clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((of, pem)) = kept.get(&key)
            && of == ca
            && keep(pem)
        {
            return Ok(pem.clone());
        }
        let pem = issue()?;
        kept.insert(key, (ca.to_string(), pem.clone()));
        Ok(pem)
    }

    /// How often what is inside a Ready engine is read.
    pub fn facts_interval(&self) -> Duration {
        Duration::from_secs(self.config.engine_facts_interval)
    }

    /// Whether the engine of `dsb` is due for a read of what is inside it (a tenth of the interval
    /// early, so that the requeue timer's own slack does not skip a round); the events since when.
    /// An engine not read since this process started is due; its events are read from an hour
    /// back (dockerd keeps only its last 256 anyway).
    pub fn facts_due(&self, dsb: &DockerSandbox) -> Option<i64> {
        let facts = self.facts.lock().unwrap_or_else(|e| e.into_inner());
        match facts.get(&key(&ObjectRef::from_obj(dsb).erase())) {
            Some((at, _)) if at.elapsed() < self.facts_interval().mul_f64(0.9) => None,
            Some((_, until)) => Some(*until),
            None => Some(jiff::Timestamp::now().as_second() - 3600),
        }
    }

    /// Records a read of what is inside the engine of `dsb` (a failed one too: the next try waits
    /// its turn); its events were read up to `until`, if they were.
    pub fn facts_read(&self, dsb: &DockerSandbox, until: Option<i64>) {
        let mut facts = self.facts.lock().unwrap_or_else(|e| e.into_inner());
        let entry = facts.entry(key(&ObjectRef::from_obj(dsb).erase()));
        let now = tokio::time::Instant::now();
        let hour_ago = jiff::Timestamp::now().as_second() - 3600;
        entry
            .and_modify(|(at, old)| (*at, *old) = (now, until.unwrap_or(*old)))
            .or_insert((now, until.unwrap_or(hour_ago)));
    }

    /// A reconcile found `dsb` waiting: how many re-check delays its wait has grown by (the
    /// fallback is `backoff_after` of it).
    pub fn still_waiting(&self, dsb: &DockerSandbox) -> u32 {
        let mut waits = self.waits.lock().unwrap_or_else(|e| e.into_inner());
        let now = tokio::time::Instant::now();
        let (n, since) = waits.entry(key(&ObjectRef::from_obj(dsb).erase())).or_insert((0, now));
        // The delay grows once the last one has run out, not with every reconcile: a new sandbox's
        // children wake it seven times in a second, which used to take its fallback from 5 s to
        // 5 minutes at once (and a watch event missed then cost 5 minutes).
        if *n == 0 || since.elapsed() >= backoff_after(*n) {
            *n = n.saturating_add(1);
            *since = now;
        }
        *n
    }

    /// Counts one more TLS check that dockerd did not answer; returns how many in a row.
    pub fn unanswered(&self, dsb: &DockerSandbox) -> u32 {
        let mut unanswered = self.unanswered.lock().unwrap_or_else(|e| e.into_inner());
        let n = unanswered.entry(key(&ObjectRef::from_obj(dsb).erase())).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    /// `dsb` waits for something other than dockerd (its pod is not ready): when the pod is ready
    /// again, its first TLS check comes at once and the probe delay starts over.
    pub fn not_probing(&self, dsb: &DockerSandbox) {
        self.unanswered.lock().unwrap_or_else(|e| e.into_inner()).remove(&key(&ObjectRef::from_obj(dsb).erase()));
    }

    /// `dsb` is Ready (or waits for a change, not for time): the next wait starts over.
    pub fn done_waiting(&self, dsb: &DockerSandbox) {
        self.waits.lock().unwrap_or_else(|e| e.into_inner()).remove(&key(&ObjectRef::from_obj(dsb).erase()));
        self.not_probing(dsb);
    }

    /// `dsb` as this process last wrote it (its status), while the sandbox cache has not shown that
    /// write yet; else as cached (borrowed: no copy on the usual path). Only this operator writes
    /// the status.
    pub fn newest<'d>(&self, dsb: &'d DockerSandbox) -> Cow<'d, DockerSandbox> {
        let (namespace, name) = (dsb.metadata.namespace.as_deref(), dsb.name_any());
        if !self.expect.pending::<DockerSandbox>(namespace, &name) {
            return Cow::Borrowed(dsb);
        }
        match self.expect.observed(namespace, &name, Some(Arc::new(dsb.clone()))) {
            Some(n) if n.metadata.uid == dsb.metadata.uid => Cow::Owned((*n).clone()),
            _ => Cow::Borrowed(dsb),
        }
    }

    /// How many sandboxes have anything on record (failures, waits, statuses).
    #[cfg(test)]
    pub fn remembered(&self) -> usize {
        self.waits.lock().unwrap_or_else(|e| e.into_inner()).len()
            + self.unanswered.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// How many sandboxes have failures on record.
    #[cfg(test)]
    pub fn failing(&self) -> usize {
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// The sandbox one reconcile works on: the object, its children's names (the one source of its
/// namespace) and the shared context.
pub struct Target<'a> {
    /// The sandbox as the controller's cache has it.
    pub dsb: &'a DockerSandbox,
    /// Names of its children, and its namespace.
    pub names: Names,
    /// Shared state.
    pub ctx: &'a Context,
}

impl<'a> Target<'a> {
    /// The target for `dsb`; `None` for a sandbox without a namespace (never served by the API).
    pub fn new(dsb: &'a DockerSandbox, ctx: &'a Context) -> Option<Self> {
        dsb.namespace()?;
        Some(Self { dsb, names: Names::of(dsb), ctx })
    }

    /// An API handle for `K` in the sandbox's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.ctx.client.clone(), &self.names.namespace)
    }

    /// The child `name` of kind `K` as the cache has it.
    pub fn cached<K: Cached>(&self, name: &str) -> Option<Arc<K>> {
        self.ctx.caches.get::<K>(Some(&self.names.namespace), name)
    }

    /// A Normal event on the sandbox.
    pub async fn normal(&self, reason: &str, note: impl Into<String>) {
        self.ctx.event(self.dsb, EventType::Normal, reason, note.into()).await;
    }

    /// A Warning event on the sandbox.
    pub async fn warning(&self, reason: &str, note: impl Into<String>) {
        self.ctx.event(self.dsb, EventType::Warning, reason, note.into()).await;
    }
}

fn key(obj: &ObjectRef<DynamicObject>) -> (String, String) {
    (obj.namespace.clone().unwrap_or_default(), obj.name.clone())
}

/// Delay after the `n`th failure in a row (n ≥ 1): 5 s, doubling, at most 5 min.
pub fn backoff_after(n: u32) -> Duration {
    Duration::from_secs(5u64.saturating_mul(1 << n.saturating_sub(1).min(6)).min(300))
}

/// `s` cut to at most `max` bytes, on a character boundary.
pub(crate) fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

#[cfg(test)]
mod tests {
    use http::{Request, Response};
    use kube::client::Body;

    use super::*;
    use crate::resources::testing::{minimal, sandbox};

    fn context() -> Context {
        // The mock is never answered: these tests make no request.
        let (service, _handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        Context::new(
            Client::new(service, "team-a"),
            Config::for_tests(),
            Arc::new(Metrics::default()),
            Caches::snapshot([]),
        )
    }

    #[test]
    fn backoff_doubles_from_5s_and_stops_at_5min() {
        let secs: Vec<u64> = (1..=9).map(|n| backoff_after(n).as_secs()).collect();
        assert_eq!(secs, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(backoff_after(u32::MAX).as_secs(), 300);
        assert_eq!(backoff_after(0).as_secs(), 5, "never shorter than the first delay");
    }

    #[tokio::test]
    async fn backoff_is_counted_per_sandbox_and_reset_by_success() {
        let ctx = context();
        let (a, b) = (
            minimal(),
            sandbox("apiVersion: dockersandbox.dev/v1alpha1\nkind: DockerSandbox\nmetadata: {name: other}\nspec: {}\n"),
        );
        assert_eq!(ctx.backoff(&a).as_secs(), 5);
        assert_eq!(ctx.backoff(&a).as_secs(), 10);
        assert_eq!(ctx.backoff(&b).as_secs(), 5, "another sandbox's failures do not count");
        ctx.succeeded(&a);
        assert_eq!(ctx.backoff(&a).as_secs(), 5, "a success starts over");
    }

    #[tokio::test(start_paused = true)]
    async fn a_successful_reconcile_keeps_the_wait_count() {
        // Every reconcile of a waiting sandbox succeeds; its re-check delay must still grow (when
        // a success reset it, 1000 engines whose dockerd did not answer were probed every second).
        let ctx = context();
        let dsb = minimal();
        let mut waits = vec![];
        for _ in 0..4 {
            let n = ctx.still_waiting(&dsb);
            ctx.succeeded(&dsb);
            waits.push(n);
            tokio::time::advance(backoff_after(n)).await;
        }
        assert_eq!(waits, [1, 2, 3, 4]);
        ctx.done_waiting(&dsb);
        assert_eq!(ctx.still_waiting(&dsb), 1, "Ready starts the next wait over");
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_grows_with_time_not_with_the_events_meanwhile() {
        let ctx = context();
        let dsb = minimal();
        // A new sandbox: its seven children's watch events wake it within a second.
        let burst: Vec<u32> = (0..8).map(|_| ctx.still_waiting(&dsb)).collect();
        assert_eq!(burst, [1; 8], "the fallback stays at 5 s");
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(ctx.still_waiting(&dsb), 1, "woken early: still 5 s");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(ctx.still_waiting(&dsb), 2, "the 5 s ran out: 10 s next");
        assert_eq!(ctx.still_waiting(&dsb), 2);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(ctx.still_waiting(&dsb), 3);
    }

    #[tokio::test]
    async fn the_newest_sandbox_is_the_status_written_until_the_cache_shows_it() {
        let ctx = context();
        let mut cached = minimal();
        cached.metadata.resource_version = Some("4".into());
        assert_eq!(ctx.newest(&cached).status, None);
        let mut written = cached.clone();
        written.metadata.resource_version = Some("5".into());
        written.status = Some(crate::crd::DockerSandboxStatus { observed_generation: Some(1), ..Default::default() });
        ctx.expect.wrote(&written);
        assert_eq!(ctx.newest(&cached).status, written.status, "the cache is behind our write");
        let mut recreated = cached.clone();
        recreated.metadata.uid = Some("another".into());
        assert_eq!(ctx.newest(&recreated).status, None, "another sandbox of that name is not what we wrote");
        assert_eq!(ctx.newest(&written).status, written.status);
        assert!(ctx.expect.is_empty(), "the cache caught up");
    }

    #[tokio::test]
    async fn a_deleted_sandbox_leaves_no_backoff_entry() {
        let ctx = context();
        let dsb = minimal();
        ctx.backoff(&dsb);
        ctx.still_waiting(&dsb);
        assert_eq!((ctx.failing(), ctx.remembered()), (1, 1));
        // what the controller reports when a requeue finds the sandbox gone
        ctx.forget(&ObjectRef::<DockerSandbox>::new("web").within("team-a").erase());
        assert_eq!((ctx.failing(), ctx.remembered()), (0, 0));
    }

    #[tokio::test]
    async fn target_needs_a_namespace_and_scopes_its_api_to_it() {
        let ctx = context();
        let mut dsb = minimal();
        let t = Target::new(&dsb, &ctx).expect("target");
        assert_eq!(t.names.namespace, "team-a");
        assert_eq!(t.api::<k8s_openapi::api::core::v1::Pod>().resource_url(), "/api/v1/namespaces/team-a/pods");
        dsb.metadata.namespace = None;
        assert!(Target::new(&dsb, &ctx).is_none());
    }

    #[test]
    fn truncate_keeps_whole_characters() {
        assert_eq!(truncate("héllo".into(), 2), "h", "é is two bytes: cut before it");
        assert_eq!(truncate("short".into(), 1024), "short");
    }
}
