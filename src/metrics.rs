//! Prometheus metrics: reconcile counts, errors, durations, sandboxes by phase, operator memory,
//! and per engine what its status says is inside it (labelled by namespace, name and class only).

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use kube::runtime::reflector::Store;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::crd::{DockerSandbox, Phase};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CategoryLabel {
    category: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabel {
    cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    namespace: String,
    pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: &'static str,
}

/// A sandbox's series: bounded labels only (a sandbox's namespace, name and class; nothing an
/// engine reports).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EngineLabels {
    namespace: String,
    name: String,
    class: String,
}

/// Per-engine gauges, rebuilt from the sandboxes' status at every scrape (a deleted sandbox's
/// series go with it).
#[derive(Default)]
struct EngineGauges {
    up: Family<EngineLabels, Gauge>,
    containers_running: Family<EngineLabels, Gauge>,
    containers: Family<EngineLabels, Gauge>,
    images: Family<EngineLabels, Gauge>,
    disk_used: Family<EngineLabels, Gauge>,
    disk_capacity: Family<EngineLabels, Gauge>,
    last_activity: Family<EngineLabels, Gauge>,
    gc_runs: Family<EngineLabels, Counter>,
    gc_freed: Family<EngineLabels, Counter>,
}

impl EngineGauges {
    fn register(&self, registry: &mut Registry) {
        let engine = registry.sub_registry_with_prefix("engine");
        engine.register(
            "up",
            "1 while the sandbox is Ready (dockerd answers over mutual TLS), else 0",
            self.up.clone(),
        );
        engine.register("containers_running", "Containers running in the engine", self.containers_running.clone());
        engine.register("containers", "Containers in the engine, in any state", self.containers.clone());
        engine.register("images", "Images in the engine", self.images.clone());
        engine.register(
            "disk_used_bytes",
            "Bytes of the engine's volume held by images, containers, volumes and build cache (docker system df)",
            self.disk_used.clone(),
        );
        engine.register("disk_capacity_bytes", "Size of the engine's volume", self.disk_capacity.clone());
        engine.register(
            "last_activity_timestamp_seconds",
            "Unix time of the last container, image, build, volume or network event of the engine",
            self.last_activity.clone(),
        );
        engine.register("gc_runs", "Disk garbage collection runs in the engine", self.gc_runs.clone());
        engine.register("gc_freed_bytes", "Bytes disk garbage collection freed in the engine", self.gc_freed.clone());
    }

    fn refresh<'a>(&self, sandboxes: impl Iterator<Item = &'a DockerSandbox>) {
        let gauges = [
            &self.up,
            &self.containers_running,
            &self.containers,
            &self.images,
            &self.disk_used,
            &self.disk_capacity,
            &self.last_activity,
        ];
        gauges.iter().for_each(|f| f.clear());
        [&self.gc_runs, &self.gc_freed].iter().for_each(|f| f.clear());
        for dsb in sandboxes {
            let status = dsb.status.as_ref();
            let labels = EngineLabels {
                namespace: dsb.metadata.namespace.clone().unwrap_or_default(),
                name: dsb.metadata.name.clone().unwrap_or_default(),
                class: status.and_then(|s| s.class_name.clone()).unwrap_or_default(),
            };
            self.up.get_or_create(&labels).set(i64::from(status.and_then(|s| s.phase) == Some(Phase::Ready)));
            let Some(e) = status.and_then(|s| s.engine.as_ref()) else { continue };
            self.containers_running.get_or_create(&labels).set(e.containers_running);
            self.containers.get_or_create(&labels).set(e.containers);
            self.images.get_or_create(&labels).set(e.images);
            if let Some(d) = &e.disk {
                self.disk_used.get_or_create(&labels).set(d.used_bytes);
                if let Some(c) = d.capacity_bytes {
                    self.disk_capacity.get_or_create(&labels).set(c);
                }
            }
            if let Some(gc) = &e.gc {
                // Counters kept in status: they survive an operator restart and a failover.
                self.gc_runs.get_or_create(&labels).inc_by(gc.runs.max(0).unsigned_abs());
                self.gc_freed.get_or_create(&labels).inc_by(gc.freed_bytes.max(0).unsigned_abs());
            }
            let activity = e.last_activity.as_deref().and_then(|t| t.parse::<jiff::Timestamp>().ok());
            if let Some(t) = activity {
                self.last_activity.get_or_create(&labels).set(t.as_second());
            }
        }
    }
}

/// The operator's metrics and their registry.
pub struct Metrics {
    registry: Registry,
    engines: EngineGauges,
    /// One scrape at a time: the per-engine families are cleared and refilled for each.
    rendering: std::sync::Mutex<()>,
    reconciles: Family<ResultLabel, Counter>,
    errors: Family<CategoryLabel, Counter>,
    duration: Histogram,
    sandboxes: Family<PhaseLabel, Gauge>,
    suspensions: Family<CauseLabel, Counter>,
    expiry_deletions: Counter,
    claims: Family<OutcomeLabel, Counter>,
    claim_ready: Family<OutcomeLabel, Histogram>,
    /// Claimants whose time to Ready was observed (each once).
    claims_timed: std::sync::Mutex<std::collections::HashSet<String>>,
    pool_ready: Family<PoolLabels, Gauge>,
    pool_desired: Family<PoolLabels, Gauge>,
    /// The pool controllers' stores, once they run (per-pool gauges are refreshed from them).
    pub pool_stores: std::sync::OnceLock<Vec<Store<crate::crd::DockerSandboxPool>>>,
    rss: Gauge<u64, AtomicU64>,
    peak_rss: Gauge<u64, AtomicU64>,
    leader: Gauge<i64>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("dockersandbox");
        let reconciles = Family::<ResultLabel, Counter>::default();
        let errors = Family::<CategoryLabel, Counter>::default();
        // Reconciles from the caches take about a millisecond; the TLS check and writes take longer.
        let duration =
            Histogram::new([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]);
        let sandboxes = Family::<PhaseLabel, Gauge>::default();
        let rss = Gauge::<u64, AtomicU64>::default();
        let peak_rss = Gauge::<u64, AtomicU64>::default();
        let leader = Gauge::<i64>::default();
        registry.register(
            "leader",
            "1 while this replica holds the Lease and reconciles, 0 on standby",
            leader.clone(),
        );
        registry.register("reconciles", "Reconciles by result", reconciles.clone());
        registry.register("reconcile_errors", "Failed reconciles by error category", errors.clone());
        registry.register("reconcile_duration_seconds", "Time one reconcile took", duration.clone());
        registry.register("sandboxes", "DockerSandboxes by phase", sandboxes.clone());
        let suspensions = Family::<CauseLabel, Counter>::default();
        registry.register(
            "suspensions",
            "Engines this replica stopped, by cause: Spec (spec.suspend), Idle, Expiry",
            suspensions.clone(),
        );
        let expiry_deletions = Counter::default();
        registry.register(
            "expiry_deletions",
            "Sandboxes this replica deleted because they expired with onExpiry: Delete",
            expiry_deletions.clone(),
        );
        let claims = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "claims",
            "Sandboxes with spec.poolRef given an engine, by outcome: warm (a ready engine of the pool), cold (one \
             started for it)",
            claims.clone(),
        );
        let claim_ready = Family::<OutcomeLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0])
        });
        registry.register(
            "claim_ready_seconds",
            "From a claimant's creation to its first Ready, by outcome (warm, cold)",
            claim_ready.clone(),
        );
        let pool_ready = Family::<PoolLabels, Gauge>::default();
        registry.register("pool_ready", "Ready, unclaimed engines of each DockerSandboxPool", pool_ready.clone());
        let pool_desired = Family::<PoolLabels, Gauge>::default();
        registry.register("pool_desired", "spec.replicas of each DockerSandboxPool", pool_desired.clone());
        registry.register("process_resident_memory_bytes", "Resident memory of the operator", rss.clone());
        registry.register(
            "process_peak_resident_memory_bytes",
            "Peak resident memory of the operator",
            peak_rss.clone(),
        );
        let engines = EngineGauges::default();
        engines.register(&mut registry);
        registry.register(
            "engine_requests",
            "HTTP requests this replica sent to engines (health checks, facts, garbage collection)",
            crate::controller::probe::REQUESTS.clone(),
        );
        Self {
            registry,
            engines,
            rendering: std::sync::Mutex::default(),
            reconciles,
            errors,
            duration,
            sandboxes,
            suspensions,
            expiry_deletions,
            claims,
            claim_ready,
            claims_timed: std::sync::Mutex::default(),
            pool_ready,
            pool_desired,
            pool_stores: std::sync::OnceLock::new(),
            rss,
            peak_rss,
            leader,
        }
    }
}

fn outcome(from: crate::crd::StartedFrom) -> &'static str {
    match from {
        crate::crd::StartedFrom::Pool => "warm",
        crate::crd::StartedFrom::Cold => "cold",
    }
}

impl Metrics {
    /// Records whether this replica leads.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Records an engine stopped for `cause`.
    pub fn suspended(&self, cause: crate::crd::SuspendCause) {
        self.suspensions.get_or_create(&CauseLabel { cause: cause.as_str() }).inc();
    }

    /// Records a claim served warm (from the pool) or cold.
    pub fn claimed(&self, from: crate::crd::StartedFrom) {
        self.claims.get_or_create(&OutcomeLabel { outcome: outcome(from) }).inc();
    }

    /// Records a claimant's first Ready, `created` being its creation time (once per claimant
    /// this replica saw become Ready, `key` its namespace/name, forgotten when it goes: a creation
    /// time is whole seconds, so the figure is too).
    pub fn claim_ready(&self, from: crate::crd::StartedFrom, key: &str, created: Option<jiff::Timestamp>) {
        let Some(created) = created else { return };
        if !self.claims_timed.lock().unwrap_or_else(|e| e.into_inner()).insert(key.to_string()) {
            return;
        }
        let took = jiff::Timestamp::now().duration_since(created).as_secs_f64().max(0.0);
        self.claim_ready.get_or_create(&OutcomeLabel { outcome: outcome(from) }).observe(took);
    }

    /// Forgets claimant `key` (it is gone).
    pub fn forget_claim(&self, key: &str) {
        self.claims_timed.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }

    /// Records a sandbox deleted at expiry.
    pub fn expiry_deleted(&self) {
        self.expiry_deletions.inc();
    }

    /// Records one reconcile.
    pub fn reconciled(&self, error_category: Option<&'static str>, took: Duration) {
        let result = if error_category.is_some() { "error" } else { "ok" };
        self.reconciles.get_or_create(&ResultLabel { result }).inc();
        if let Some(category) = error_category {
            self.errors.get_or_create(&CategoryLabel { category }).inc();
        }
        self.duration.observe(took.as_secs_f64());
    }

    /// Renders the text exposition, refreshing the gauges derived from the watch caches and /proc.
    pub fn render(&self, stores: &[Store<DockerSandbox>]) -> String {
        let _one_at_a_time = self.rendering.lock().unwrap_or_else(|e| e.into_inner());
        let sandboxes: Vec<_> = stores.iter().flat_map(|s| s.state()).collect();
        self.engines.refresh(sandboxes.iter().map(|d| &**d));
        for phase in Phase::ALL {
            let count = sandboxes.iter().filter(|d| d.status.as_ref().and_then(|s| s.phase) == Some(phase)).count();
            self.sandboxes.get_or_create(&PhaseLabel { phase: phase.as_str() }).set(count as i64);
        }
        self.pool_ready.clear();
        self.pool_desired.clear();
        for pool in self.pool_stores.get().into_iter().flatten().flat_map(|s| s.state()) {
            let labels = PoolLabels {
                namespace: pool.metadata.namespace.clone().unwrap_or_default(),
                pool: pool.metadata.name.clone().unwrap_or_default(),
            };
            self.pool_ready.get_or_create(&labels).set(i64::from(pool.status.as_ref().map_or(0, |s| s.ready)));
            self.pool_desired.get_or_create(&labels).set(i64::from(pool.spec.replicas));
        }
        let (rss, peak) = memory();
        self.rss.set(rss);
        self.peak_rss.set(peak);
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// (VmRSS, VmHWM) of this process in bytes, from /proc/self/status.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_memory() {
        let m = Metrics::default();
        m.reconciled(None, Duration::from_millis(20));
        m.reconciled(Some("kube"), Duration::from_millis(20));
        let text = m.render(&[]);
        assert!(text.contains("dockersandbox_reconciles_total{result=\"ok\"} 1"), "{text}");
        assert!(text.contains("dockersandbox_reconcile_errors_total{category=\"kube\"} 1"), "{text}");
        assert!(text.contains("dockersandbox_sandboxes{phase=\"Ready\"} 0"), "{text}");
        assert!(text.contains("# TYPE dockersandbox_engine_requests counter"), "{text}");
        assert!(!text.contains("dockersandbox_process_resident_memory_bytes 0\n"), "{text}");
    }

    /// A Ready sandbox's status in class `class` whose engine runs `n` containers of `n + 1`, has
    /// `n + 2` images and `n` GC runs, and `used` of `capacity` bytes.
    fn ready(class: &str, n: i64, used: i64, capacity: i64) -> serde_json::Value {
        serde_json::json!({"phase": "Ready", "className": class, "engine": {
            "containersRunning": n, "containers": n + 1, "images": n + 2, "observedAt": "2026-12-05T10:00:00Z",
            "gc": {"runs": n, "freedBytes": 5000, "lastRun": "2026-12-05T09:00:00Z", "lastResult": "freed"},
            "lastActivity": "2026-12-05T09:59:00Z",
            "disk": {"imagesBytes": used, "containersBytes": 0, "volumesBytes": 0, "buildCacheBytes": 0,
                     "usedBytes": used, "capacityBytes": capacity, "usedPercent": used * 100 / capacity}}})
    }

    /// A store holding `sandboxes`, and its writer.
    fn store(
        sandboxes: Vec<DockerSandbox>,
    ) -> (Store<DockerSandbox>, kube::runtime::reflector::store::Writer<DockerSandbox>) {
        use kube::runtime::watcher::Event;
        let (store, mut writer) = kube::runtime::reflector::store::<DockerSandbox>();
        writer.apply_watcher_event(&Event::Init);
        for s in sandboxes {
            writer.apply_watcher_event(&Event::InitApply(s));
        }
        writer.apply_watcher_event(&Event::InitDone);
        (store, writer)
    }

    fn sandbox(name: &str, status: serde_json::Value) -> DockerSandbox {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "dockersandbox.dev/v1alpha1", "kind": "DockerSandbox",
            "metadata": {"name": name, "namespace": "team-a"}, "spec": {}, "status": status
        }))
        .expect("sandbox")
    }

    /// The chart's Grafana dashboard queries only metrics the operator exports: every
    /// `dockersandbox_*` name in its queries and variables is a family on /metrics (a counter's
    /// `_total` and a histogram's `_bucket`, `_sum`, `_count` series included), and it is JSON.
    #[test]
    fn the_dashboard_uses_only_exported_metrics() {
        let text = include_str!("../charts/dockersandbox-operator/dashboards/dockersandbox-engines.json");
        let dashboard: serde_json::Value = serde_json::from_str(text).expect("the dashboard is JSON");
        fn queries(v: &serde_json::Value, out: &mut Vec<String>) {
            match v {
                serde_json::Value::Object(m) => {
                    for (k, v) in m {
                        match (k.as_str(), v) {
                            ("expr" | "query" | "definition", serde_json::Value::String(q)) => out.push(q.clone()),
                            _ => queries(v, out),
                        }
                    }
                }
                serde_json::Value::Array(a) => a.iter().for_each(|v| queries(v, out)),
                _ => {}
            }
        }
        let mut all = vec![];
        queries(&dashboard, &mut all);
        assert!(all.len() >= 10, "the dashboard has its queries: {all:?}");
        let (store, _writer) = store(vec![sandbox("web", ready("c", 1, 1, 2))]);
        let m = Metrics::default();
        m.reconciled(None, Duration::from_millis(1));
        let exported = m.render(std::slice::from_ref(&store));
        let families: Vec<&str> =
            exported.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.split_whitespace().next()).collect();
        let mut used = 0;
        for q in &all {
            let mut rest = q.as_str();
            while let Some(at) = rest.find("dockersandbox_") {
                let name: String = rest[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                rest = &rest[at + name.len()..];
                let known = families.iter().any(|f| {
                    name == *f || ["_total", "_bucket", "_sum", "_count"].iter().any(|s| name == format!("{f}{s}"))
                });
                assert!(known, "the dashboard queries {name}, which the operator does not export ({families:?})");
                used += 1;
            }
        }
        assert!(used >= 10, "the dashboard names the operator's metrics");
    }

    #[test]
    fn each_engine_has_its_series_from_status_and_they_go_with_the_sandbox() {
        use kube::runtime::watcher::Event;
        let web = sandbox("web", ready("standard", 2, 10, 100));
        let new = sandbox("new", serde_json::json!({"phase": "Provisioning", "className": "standard"}));
        let (store, mut writer) = store(vec![web.clone(), new]);
        let m = Metrics::default();
        let text = m.render(std::slice::from_ref(&store));
        let labels = r#"{namespace="team-a",name="web",class="standard"}"#;
        for line in [
            format!("dockersandbox_engine_up{labels} 1"),
            format!("dockersandbox_engine_containers_running{labels} 2"),
            format!("dockersandbox_engine_containers{labels} 3"),
            format!("dockersandbox_engine_images{labels} 4"),
            format!("dockersandbox_engine_disk_used_bytes{labels} 10"),
            format!("dockersandbox_engine_disk_capacity_bytes{labels} 100"),
            format!("dockersandbox_engine_last_activity_timestamp_seconds{labels} 1796464740"),
            format!("dockersandbox_engine_gc_runs_total{labels} 2"),
            format!("dockersandbox_engine_gc_freed_bytes_total{labels} 5000"),
            r#"dockersandbox_engine_up{namespace="team-a",name="new",class="standard"} 0"#.to_string(),
        ] {
            assert!(text.contains(&line), "{line} in\n{text}");
        }
        assert!(!text.contains(r#"dockersandbox_engine_images{namespace="team-a",name="new""#), "no facts, no series");
        writer.apply_watcher_event(&Event::Delete(web));
        let text = m.render(std::slice::from_ref(&store));
        assert!(!text.contains(r#"name="web""#), "a deleted sandbox's series are gone:\n{text}");
    }
}
