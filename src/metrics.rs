//! Prometheus metrics: reconcile counts, errors, durations, sandboxes by phase, operator memory.

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
struct PhaseLabel {
    phase: &'static str,
}

/// The operator's metrics and their registry.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ResultLabel, Counter>,
    errors: Family<CategoryLabel, Counter>,
    duration: Histogram,
    sandboxes: Family<PhaseLabel, Gauge>,
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
        registry.register("process_resident_memory_bytes", "Resident memory of the operator", rss.clone());
        registry.register(
            "process_peak_resident_memory_bytes",
            "Peak resident memory of the operator",
            peak_rss.clone(),
        );
        Self { registry, reconciles, errors, duration, sandboxes, rss, peak_rss, leader }
    }
}

impl Metrics {
    /// Records whether this replica leads.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
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
        for phase in Phase::ALL {
            let count = stores
                .iter()
                .flat_map(|s| s.state())
                .filter(|d| d.status.as_ref().and_then(|s| s.phase) == Some(phase))
                .count();
            self.sandboxes.get_or_create(&PhaseLabel { phase: phase.as_str() }).set(count as i64);
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
        assert!(!text.contains("dockersandbox_process_resident_memory_bytes 0\n"), "{text}");
    }
}
