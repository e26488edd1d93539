//! What every reconcile shares (the client, the settings, one event recorder, metrics, and the
//! per-sandbox failure counts that drive back-off, which kube has none of for reconcile errors), and
//! the `Target` every step of one reconcile works on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::core::NamespaceResourceScope;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, Resource, ResourceExt};
use tracing::warn;

use crate::config::{Config, EngineProbe};
use crate::crd::DockerSandbox;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::resources::Names;

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
        let n = failures.entry(ObjectRef::from_obj(dsb)).or_insert(0);
        *n = n.saturating_add(1);
        Duration::from_secs(5u64.saturating_mul(1 << (*n - 1).min(6)).min(300))
    }

    /// Forgets failures of `dsb` after a successful reconcile.
    pub fn succeeded(&self, dsb: &DockerSandbox) {
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).remove(&ObjectRef::from_obj(dsb));
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
    /// The target for `dsb`; a sandbox without a namespace (never served by the API) is an error.
    pub fn new(dsb: &'a DockerSandbox, ctx: &'a Context) -> Result<Self> {
        if dsb.namespace().is_none() {
            return Err(Error::NoNamespace(dsb.name_any()));
        }
        Ok(Self { dsb, names: Names::of(dsb), ctx })
    }

    /// An API handle for `K` in the sandbox's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.ctx.client.clone(), &self.names.namespace)
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
