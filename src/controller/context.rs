//! What every reconcile shares: the client, the settings, one event recorder, metrics, and the
//! per-sandbox failure counts that drive back-off (kube has none of its own for reconcile errors).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, Resource};
use tracing::warn;

use crate::config::{Config, EngineProbe};
use crate::crd::DockerSandbox;
use crate::metrics::Metrics;

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
    /// Whether to reach engines through their ClusterIP (in cluster) or a port-forward.
    pub dial_service: bool,
    failures: Mutex<HashMap<ObjectRef<DockerSandbox>, u32>>,
}

impl Context {
    /// A context for `client` and `config`.
    pub fn new(client: Client, config: Config, metrics: Arc<Metrics>) -> Self {
        let instance = std::env::var("POD_NAME").ok();
        let reporter = Reporter { controller: "dockersandbox-operator".into(), instance };
        let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
        let dial_service = match config.engine_probe {
            EngineProbe::Service => true,
            EngineProbe::PortForward => false,
            EngineProbe::Auto => in_cluster,
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            config,
            metrics,
            dial_service,
            failures: Mutex::default(),
        }
    }

    /// Publishes an event on `dsb`; a failure to publish is logged, never fatal.
    pub async fn event(&self, dsb: &DockerSandbox, warning: bool, reason: &str, note: String) {
        let event = Event {
            type_: if warning { EventType::Warning } else { EventType::Normal },
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
        let n = failures.entry(ObjectRef::from_obj(dsb)).or_insert(0);
        *n = n.saturating_add(1);
        Duration::from_secs(5u64.saturating_mul(1 << (*n - 1).min(6)).min(300))
    }

    /// Forgets failures of `dsb` after a successful reconcile.
    pub fn succeeded(&self, dsb: &DockerSandbox) {
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).remove(&ObjectRef::from_obj(dsb));
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}
